/*
 * target.c — where kembar-bench's bytes go: a directory through POSIX calls
 * (a kembar mount, a GlusterFS mount, a local disk), or a kembar volume
 * through libkembar without FUSE ("kembar://host[:port]/volume[/dir]").
 *
 * Promises: every file the benchmark touches is a plain name inside the
 * target directory, opened relative to a directory descriptor taken once
 * (openat, O_NOFOLLOW), so a symlink or a rename of the path during the run
 * cannot make it write elsewhere. Writes are complete or fail (short writes
 * are continued here); reads are short only at end of file.
 */
#include "bench/bench.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define LIB_PREFIX "kembar://"

struct bench_target {
    int dirfd;          /* POSIX targets; -1 for libkembar */
    void *lib;          /* libkembar client (when the lib target exists) */
};

struct bench_file {
    bench_target_t *t;
    int fd;
};

static bench_target_t *open_dir(const char *path, char *err, size_t errlen)
{
    struct stat st;
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return NULL;
    }
    if (fstat(fd, &st) < 0 || !S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "%s: not a directory", path);
        close(fd);
        return NULL;
    }
    bench_target_t *t = calloc(1, sizeof(*t));
    if (!t) {
        snprintf(err, errlen, "%s: %s", path, strerror(ENOMEM));
        close(fd);
        return NULL;
    }
    t->dirfd = fd;
    return t;
}

bench_target_t *bench_target_open(const char *path, char *err, size_t errlen)
{
    if (strncmp(path, LIB_PREFIX, strlen(LIB_PREFIX)) == 0) {
        /* libkembar's public API (client/kembar.h) is not committed yet. */
        snprintf(err, errlen, "%s: the libkembar target is not yet available in this build "
                 "(benchmark the FUSE mount instead)", path);
        return NULL;
    }
    return open_dir(path, err, errlen);
}

void bench_target_close(bench_target_t *t)
{
    if (!t)
        return;
    if (t->dirfd >= 0)
        close(t->dirfd);
    free(t);
}

bool bench_target_is_lib(const bench_target_t *t)
{
    return t->dirfd < 0;
}

int bench_open(bench_target_t *t, const char *name, int flags, bench_file_t **out)
{
    bench_file_t *f = calloc(1, sizeof(*f));
    if (!f)
        return -ENOMEM;
    f->t = t;
    f->fd = openat(t->dirfd, name, flags | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (f->fd < 0) {
        int e = errno;
        free(f);
        return -e;
    }
    *out = f;
    return 0;
}

ssize_t bench_pwrite(bench_file_t *f, const void *buf, size_t n, off_t off)
{
    size_t done = 0;
    while (done < n) {
        ssize_t w = pwrite(f->fd, (const char *)buf + done, n - done, off + (off_t)done);
        if (w < 0 && errno == EINTR && !bench_stop)
            continue;
        if (w < 0)
            return -errno;
        if (w == 0)
            return -EIO;
        done += (size_t)w;
    }
    return (ssize_t)done;
}

ssize_t bench_pread(bench_file_t *f, void *buf, size_t n, off_t off)
{
    size_t done = 0;
    while (done < n) {
        ssize_t r = pread(f->fd, (char *)buf + done, n - done, off + (off_t)done);
        if (r < 0 && errno == EINTR && !bench_stop)
            continue;
        if (r < 0)
            return -errno;
        if (r == 0)
            break;
        done += (size_t)r;
    }
    return (ssize_t)done;
}

int bench_fsync(bench_file_t *f)
{
    return fsync(f->fd) < 0 ? -errno : 0;
}

int bench_close(bench_file_t *f)
{
    if (!f)
        return 0;
    int rc = close(f->fd) < 0 ? -errno : 0;
    free(f);
    return rc;
}

int bench_unlink(bench_target_t *t, const char *name)
{
    if (unlinkat(t->dirfd, name, 0) < 0 && errno != ENOENT)
        return -errno;
    return 0;
}

int bench_file_fd(const bench_file_t *f)
{
    return f->fd;
}

int bench_target_probe(bench_target_t *t, bool direct)
{
    char name[64];
    bench_file_t *f;
    void *buf;
    snprintf(name, sizeof(name), ".kembar-bench.%ld.probe", (long)getpid());
    if (posix_memalign(&buf, 4096, 4096))
        return -ENOMEM;
    memset(buf, 0x5a, 4096);
    int rc = bench_open(t, name, O_CREAT | O_EXCL | O_RDWR | (direct ? O_DIRECT : 0), &f);
    if (rc == 0) {
        ssize_t w = bench_pwrite(f, buf, 4096, 0);
        rc = w < 0 ? (int)w : 0;
        int c = bench_close(f);
        rc = rc ? rc : c;
        int u = bench_unlink(t, name);
        rc = rc ? rc : u;
    }
    free(buf);
    return rc;
}
