/*
 * common.c — small helpers shared by every module (lib/common.h).
 *
 * Promises: no abort on allocation failure (NULL / -ENOMEM instead); every
 * error is one negative errno; file writes are crash-atomic (tmp + fsync +
 * rename + fsync of the directory), so a reader sees the old or the new file,
 * never a torn one.
 */
#include "lib/common.h"

#include <fcntl.h>
#include <pthread.h>
#include <uuid/uuid.h>
#include <limits.h>
#include <stdio.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

uint64_t kb_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

char *kb_strdup0(const char *s)
{
    return s ? strdup(s) : NULL;
}

/* "65535" -> 65535; refuses empty, signs, junk, 0 and > 65535. */
static int parse_port(const char *s, uint16_t *port)
{
    unsigned long v = 0;
    if (!*s)
        return -EINVAL;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return -EINVAL;
        v = v * 10 + (unsigned long)(*s - '0');
        if (v > 65535)
            return -EINVAL;
    }
    if (v == 0)
        return -EINVAL;
    *port = (uint16_t)v;
    return 0;
}

/*
 * Forms: "host", "host:port", "[v6]", "[v6]:port". A bare string with more
 * than one ':' is taken as an IPv6 address without a port ("::1").
 */
int kb_parse_hostport(const char *s, char **host, uint16_t *port, uint16_t dflt)
{
    const char *hb, *he, *ps = NULL;

    if (!s || !*s || !host || !port)
        return -EINVAL;
    if (s[0] == '[') {
        hb = s + 1;
        he = strchr(hb, ']');
        if (!he || he == hb)
            return -EINVAL;
        if (he[1] == ':')
            ps = he + 2;
        else if (he[1] != '\0')
            return -EINVAL;
    } else {
        const char *c = strchr(s, ':');
        hb = s;
        if (c && strchr(c + 1, ':')) {          /* bare IPv6, no port */
            he = s + strlen(s);
        } else if (c) {
            he = c;
            ps = c + 1;
        } else {
            he = s + strlen(s);
        }
        if (he == hb)
            return -EINVAL;
    }
    uint16_t p = dflt;
    if (ps && parse_port(ps, &p) < 0)
        return -EINVAL;
    char *h = strndup(hb, (size_t)(he - hb));
    if (!h)
        return -ENOMEM;
    *host = h;
    *port = p;
    return 0;
}

static int write_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* fsync the directory holding PATH so the rename itself is durable. */
static int fsync_parent(const char *path)
{
    char dir[PATH_MAX];
    const char *slash = strrchr(path, '/');
    if (!slash)
        strcpy(dir, ".");
    else if (slash == path)
        strcpy(dir, "/");
    else {
        size_t n = (size_t)(slash - path);
        if (n >= sizeof(dir))
            return -ENAMETOOLONG;
        memcpy(dir, path, n);
        dir[n] = '\0';
    }
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = fsync(fd) < 0 ? -errno : 0;
    close(fd);
    return rc;
}

int kb_write_file_atomic(const char *path, const void *data, size_t len)
{
    /* pid + a counter: concurrent writers (threads, processes) never share
     * a temporary file; the last rename wins whole. */
    static unsigned seq;
    char tmp[PATH_MAX];
    int n = snprintf(tmp, sizeof(tmp), "%s.tmp.%ld.%u", path, (long)getpid(),
                     __atomic_add_fetch(&seq, 1, __ATOMIC_RELAXED));
    if (n < 0 || (size_t)n >= sizeof(tmp))
        return -ENAMETOOLONG;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    int rc = write_all(fd, data, len);
    if (rc == 0 && fsync(fd) < 0)
        rc = -errno;
    if (close(fd) < 0 && rc == 0)
        rc = -errno;
    if (rc == 0 && rename(tmp, path) < 0)
        rc = -errno;
    if (rc < 0) {
        unlink(tmp);
        return rc;
    }
    return fsync_parent(path);
}

int kb_read_file(const char *path, char **data, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    int rc = buf ? 0 : -ENOMEM;
    while (rc == 0) {
        if (n + 1 >= cap) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                rc = -ENOMEM;
                break;
            }
            buf = nb;
            cap *= 2;
        }
        ssize_t r = read(fd, buf + n, cap - n - 1);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            rc = -errno;
        } else if (r == 0) {
            break;
        } else {
            n += (size_t)r;
        }
    }
    close(fd);
    if (rc < 0) {
        free(buf);
        return rc;
    }
    buf[n] = '\0';
    *data = buf;
    if (len)
        *len = n;
    return 0;
}

int kb_mkdir_p(const char *path, unsigned mode)
{
    char p[PATH_MAX];
    size_t n = strlen(path);
    if (n == 0)
        return -EINVAL;
    if (n >= sizeof(p))
        return -ENAMETOOLONG;
    memcpy(p, path, n + 1);
    /* Create each prefix in turn; EEXIST is fine if it is a directory. */
    for (char *s = p + 1;; s++) {
        if (*s != '/' && *s != '\0')
            continue;
        char saved = *s;
        *s = '\0';
        if (mkdir(p, (mode_t)mode) < 0 && errno != EEXIST)
            return -errno;
        *s = saved;
        if (saved == '\0')
            break;
    }
    struct stat st;
    if (stat(path, &st) < 0)
        return -errno;
    return S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
}

/* ---- the client instance id ---- */

static uint8_t instance[16];
static pthread_once_t instance_once = PTHREAD_ONCE_INIT;

static void instance_init(void)
{
    const char *env = getenv("KB_INSTANCE_ID");
    if (env && strlen(env) == 32) {
        bool ok = true;
        for (int i = 0; i < 16 && ok; i++) {
            unsigned v;
            ok = sscanf(env + 2 * i, "%2x", &v) == 1;
            instance[i] = (uint8_t)v;
        }
        if (ok)
            return;
    }
    uuid_generate(instance);
}

void kb_instance_id(uint8_t out[16])
{
    pthread_once(&instance_once, instance_init);
    memcpy(out, instance, 16);
}
