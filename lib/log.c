/*
 * log.c — level-checked log lines (lib/log.h).
 *
 * Line format (one write(2) per line, so lines from threads never interleave):
 *   2025-01-31T12:34:56.789Z I kembard:24800 [posix] req=42 message
 * (req= only when a request id is given; [ctx] only when ctx is set).
 *
 * Reopen: kb_log_request_reopen only sets a sig_atomic_t flag (safe from a
 * SIGHUP handler); the next kb_log_write reopens the file under the lock, so
 * logrotate's "move, then HUP" works without losing lines.
 */
#include "lib/log.h"
#include "lib/common.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

int kb_log_level = KB_LOG_INFO;

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static int log_fd = STDERR_FILENO;     /* guarded by log_lock */
static char *log_path;                 /* NULL = stderr; guarded by log_lock */
static char log_ident[64] = "kembar";  /* guarded by log_lock */
static volatile sig_atomic_t log_reopen_wanted;

static const char level_chars[] = { '-', 'E', 'W', 'I', 'D', 'T' };

static int open_path_locked(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    if (log_fd != STDERR_FILENO)
        close(log_fd);
    log_fd = fd;
    return 0;
}

int kb_log_open(const char *path)
{
    int rc = 0;
    pthread_mutex_lock(&log_lock);
    if (!path || strcmp(path, "-") == 0) {
        if (log_fd != STDERR_FILENO)
            close(log_fd);
        log_fd = STDERR_FILENO;
        free(log_path);
        log_path = NULL;
    } else {
        char *dup = strdup(path);
        if (!dup)
            rc = -ENOMEM;
        else if ((rc = open_path_locked(path)) == 0) {
            free(log_path);
            log_path = dup;
        } else {
            free(dup);
        }
    }
    pthread_mutex_unlock(&log_lock);
    return rc;
}

void kb_log_request_reopen(void)
{
    log_reopen_wanted = 1;
}

int kb_log_parse_level(const char *s)
{
    static const char *const names[] = { "none", "error", "warn", "info", "debug", "trace" };
    if (!s)
        return -1;
    for (size_t i = 0; i < KB_ARRAY_SIZE(names); i++)
        if (strcasecmp(s, names[i]) == 0)
            return (int)i;
    if (strcasecmp(s, "warning") == 0)
        return KB_LOG_WARN;
    return -1;
}

void kb_log_set_ident(const char *ident)
{
    pthread_mutex_lock(&log_lock);
    snprintf(log_ident, sizeof(log_ident), "%s", ident ? ident : "");
    pthread_mutex_unlock(&log_lock);
}

/* ISO-8601 UTC with milliseconds into buf; returns length. */
static size_t format_time(char *buf, size_t n)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t l = strftime(buf, n, "%Y-%m-%dT%H:%M:%S", &tm);
    int k = snprintf(buf + l, n - l, ".%03ldZ", ts.tv_nsec / 1000000);
    return l + (k > 0 ? (size_t)k : 0);
}

void kb_log_write(int level, const char *ctx, uint64_t req_id, const char *fmt, ...)
{
    char line[2048];
    size_t n = format_time(line, sizeof(line));
    int lv = level < 0 ? 0 : level >= (int)sizeof(level_chars) ? (int)sizeof(level_chars) - 1 : level;

    pthread_mutex_lock(&log_lock);
    if (log_reopen_wanted) {
        log_reopen_wanted = 0;
        if (log_path)
            (void)open_path_locked(log_path);  /* keep the old fd on failure */
    }
    int k = snprintf(line + n, sizeof(line) - n, " %c %s", level_chars[lv], log_ident);
    n += k > 0 ? (size_t)k : 0;
    if (ctx && *ctx && n < sizeof(line)) {
        k = snprintf(line + n, sizeof(line) - n, " [%s]", ctx);
        n += k > 0 ? (size_t)k : 0;
    }
    if (req_id && n < sizeof(line)) {
        k = snprintf(line + n, sizeof(line) - n, " req=%llu", (unsigned long long)req_id);
        n += k > 0 ? (size_t)k : 0;
    }
    if (n < sizeof(line) - 1)
        line[n++] = ' ';
    if (n < sizeof(line)) {
        va_list ap;
        va_start(ap, fmt);
        k = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
        va_end(ap);
        n += k > 0 ? (size_t)k : 0;
    }
    if (n > sizeof(line) - 2)
        n = sizeof(line) - 2;           /* truncated: keep room for '\n' */
    while (n && line[n - 1] == '\n')
        n--;
    line[n++] = '\n';
    ssize_t w = write(log_fd, line, n);
    (void)w;                            /* nowhere left to report a log failure */
    pthread_mutex_unlock(&log_lock);
}

int kb_ratelimit_ok(struct kb_ratelimit *rl)
{
    uint64_t now = kb_now_ms();
    uint32_t iv = rl->interval_ms ? rl->interval_ms : 1000;
    if (rl->last_ms == 0 || now - rl->last_ms >= iv) {
        rl->last_ms = now ? now : 1;
        return 1;
    }
    rl->suppressed++;
    return 0;
}
