/*
 * sys.c — what kembar-bench asks of the machine: a clock, dropping the page
 * cache, the CPU time of a set of processes, and the progress line.
 *
 * CPU time of a process is the sum over all its threads (user + system),
 * which is what "CPU of the FUSE client" means. It is read from the kernel's
 * per-process CPU clock (clock_getcpuclockid: scheduler run time, nanosecond
 * resolution); where that is refused, from /proc/PID/stat (utime + stime,
 * fields 14 and 15, in clock ticks of 10 ms, so per-GiB figures are then
 * only meaningful for tests that move tens of megabytes or more).
 */
#include "bench/bench.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

uint64_t bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int bench_drop_caches(void)
{
    sync();
    int fd = open("/proc/sys/vm/drop_caches", O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = write(fd, "3\n", 2) == 2 ? 0 : -errno;
    close(fd);
    return rc;
}

/* utime + stime of one process, in ticks. */
static int proc_ticks(pid_t pid, unsigned long long *ticks)
{
    char path[64], buf[1024];
    if (pid)
        snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
    else
        snprintf(path, sizeof(path), "/proc/self/stat");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    int e = errno;
    close(fd);
    if (n <= 0)
        return n < 0 ? -e : -EIO;
    buf[n] = '\0';
    /* The command name (field 2) may hold spaces and ')': skip to the last ')'. */
    char *p = strrchr(buf, ')');
    unsigned long long ut, st;
    if (!p || sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
                     &ut, &st) != 2)
        return -EIO;
    *ticks = ut + st;
    return 0;
}

static int proc_seconds(pid_t pid, double *out)
{
    clockid_t clk;
    struct timespec ts;
    if (clock_getcpuclockid(pid, &clk) == 0 && clock_gettime(clk, &ts) == 0) {
        *out = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
        return 0;
    }
    unsigned long long t;
    long hz = sysconf(_SC_CLK_TCK);
    int rc = proc_ticks(pid, &t);
    if (rc < 0)
        return rc;
    *out = (double)t / (double)(hz > 0 ? hz : 100);
    return 0;
}

int bench_cpu_seconds(const pid_t *pids, int n, double *out)
{
    double sum = 0;
    for (int i = 0; i < n; i++) {
        double s;
        int rc = proc_seconds(pids[i], &s);
        if (rc < 0)
            return rc;
        sum += s;
    }
    *out = sum;
    return 0;
}

static bool progress_on;
static int progress_len;

void bench_progress_enable(bool on)
{
    progress_on = on && isatty(STDERR_FILENO);
}

void bench_progress(const char *fmt, ...)
{
    char line[160];
    va_list ap;
    if (!progress_on)
        return;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    n = n >= (int)sizeof(line) ? (int)sizeof(line) - 1 : n;
    /* Pad over the rest of a longer previous line. */
    fprintf(stderr, "\r%s%*s", line, progress_len > n ? progress_len - n : 0, "");
    fflush(stderr);
    progress_len = n;
}

void bench_progress_done(void)
{
    if (!progress_on || progress_len == 0)
        return;
    fprintf(stderr, "\r%*s\r", progress_len, "");
    fflush(stderr);
    progress_len = 0;
}
