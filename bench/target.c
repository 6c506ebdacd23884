/*
 * target.c — where kembar-bench's bytes go: a directory through POSIX calls
 * (a kembar mount, a GlusterFS mount, a local disk), or a kembar volume
 * through libkembar without FUSE ("kembar://host[:port]/volume[/dir]").
 *
 * Promises: every file the benchmark touches is a plain name inside the
 * target directory, or inside a directory the benchmark made there itself
 * (the mail workload's "DIR/dNN/NAME"). POSIX files are opened relative to a
 * directory descriptor taken once (openat, O_NOFOLLOW), so a symlink or a
 * rename of the path during the run cannot make it write elsewhere;
 * libkembar files are "DIR/NAME" paths resolved by the volume's own
 * LOOKUPs. Writes are complete or fail (short writes are continued here);
 * reads are short only at end of file.
 *
 * The libkembar target uses the sync API (client/kembar.h): every call
 * blocks its thread while the library's loop thread runs the fop, so the
 * random test runs QD threads to keep QD fops in flight.
 */
#include "bench/bench.h"
#include "client/kembar.h"
#include "lib/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>


struct bench_target {
    int dirfd;          /* POSIX targets; -1 for libkembar */
    kbc_t *kbc;         /* libkembar targets */
    char *dir;          /* libkembar: "/" or "/DIR" inside the volume */
};

struct bench_file {
    bench_target_t *t;
    int fd;             /* POSIX, else -1 */
    kbc_fd_t *kfd;      /* libkembar */
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

static bench_target_t *open_lib(const char *url, char *err, size_t errlen)
{
    char *spec, *dir, why[256] = "";
    kb_iatt_t ia;
    bench_target_t *t = NULL;
    int rc = bench_split_url(url, &spec, &dir);
    if (rc < 0) {
        snprintf(err, errlen, "%s: %s", url, rc == -EINVAL
                 ? "expected kembar://HOST[:PORT][,HOST[:PORT]...]/VOLUME[/DIR]" : strerror(-rc));
        return NULL;
    }
    if (kb_log_level > KB_LOG_WARN)
        kb_log_level = KB_LOG_WARN;     /* the library's info lines would break the table */
    kbc_t *c = kbc_new(spec, NULL, why, sizeof(why));
    if (!c)
        snprintf(err, errlen, "%s: %s", url, why[0] ? why : "cannot connect");
    else if ((rc = kbc_resolve(c, dir, &ia)) < 0)
        snprintf(err, errlen, "%s: %s: %s", url, dir, strerror(-rc));
    else if (!S_ISDIR(ia.mode))
        snprintf(err, errlen, "%s: %s: not a directory", url, dir);
    else if (!(t = calloc(1, sizeof(*t))))
        snprintf(err, errlen, "%s: %s", url, strerror(ENOMEM));
    if (!t) {
        kbc_free(c);
        free(spec);
        free(dir);
        return NULL;
    }
    free(spec);
    t->dirfd = -1;
    t->kbc = c;
    t->dir = dir;
    return t;
}

bench_target_t *bench_target_open(const char *path, char *err, size_t errlen)
{
    if (strncmp(path, BENCH_LIB_PREFIX, strlen(BENCH_LIB_PREFIX)) == 0)
        return open_lib(path, err, errlen);
    return open_dir(path, err, errlen);
}

void bench_target_close(bench_target_t *t)
{
    if (!t)
        return;
    if (t->dirfd >= 0)
        close(t->dirfd);
    kbc_free(t->kbc);
    free(t->dir);
    free(t);
}

bool bench_target_is_lib(const bench_target_t *t)
{
    return t->dirfd < 0;
}

/* libkembar: "DIR/NAME" inside the volume. NULL on ENOMEM. */
static char *lib_path(const bench_target_t *t, const char *name)
{
    char *p;
    bool root = strcmp(t->dir, "/") == 0;
    return asprintf(&p, "%s/%s", root ? "" : t->dir, name) < 0 ? NULL : p;
}

int bench_open(bench_target_t *t, const char *name, int flags, bench_file_t **out)
{
    bench_file_t *f = calloc(1, sizeof(*f));
    if (!f)
        return -ENOMEM;
    f->t = t;
    f->fd = -1;
    if (t->kbc) {
        /* O_APPEND is done here (bench_append), not handed to the volume. */
        char *path = lib_path(t, name);
        int rc = path ? kbc_open_path(t->kbc, path, flags & ~O_APPEND, 0644, &f->kfd) : -ENOMEM;
        free(path);
        if (rc < 0) {
            free(f);
            return rc;
        }
        *out = f;
        return 0;
    }
    f->fd = openat(t->dirfd, name, flags | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (f->fd < 0) {
        int e = errno;
        free(f);
        return -e;
    }
    *out = f;
    return 0;
}

static ssize_t io_write(bench_file_t *f, const void *buf, size_t n, off_t off)
{
    if (f->kfd)
        return kbc_pwrite(f->kfd, buf, n, off);
    ssize_t w = pwrite(f->fd, buf, n, off);
    return w < 0 ? -errno : w;
}

static ssize_t io_read(bench_file_t *f, void *buf, size_t n, off_t off)
{
    if (f->kfd)
        return kbc_pread(f->kfd, buf, n, off);
    ssize_t r = pread(f->fd, buf, n, off);
    return r < 0 ? -errno : r;
}

ssize_t bench_pwrite(bench_file_t *f, const void *buf, size_t n, off_t off)
{
    size_t done = 0;
    while (done < n) {
        ssize_t w = io_write(f, (const char *)buf + done, n - done, off + (off_t)done);
        if (w == -EINTR && !bench_stop)
            continue;
        if (w < 0)
            return w;
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
        ssize_t r = io_read(f, (char *)buf + done, n - done, off + (off_t)done);
        if (r == -EINTR && !bench_stop)
            continue;
        if (r < 0)
            return r;
        if (r == 0)
            break;
        done += (size_t)r;
    }
    return (ssize_t)done;
}

ssize_t bench_append(bench_file_t *f, const void *buf, size_t n)
{
    if (f->kfd) {
        /* One writer per file in the benchmark, so "at the size fstat gives"
         * is what O_APPEND would do. */
        kb_iatt_t ia;
        int rc = kbc_fstat(f->kfd, &ia);
        return rc < 0 ? rc : bench_pwrite(f, buf, n, (off_t)ia.size);
    }
    size_t done = 0;
    while (done < n) {
        ssize_t w = write(f->fd, (const char *)buf + done, n - done);
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

int bench_fsync(bench_file_t *f)
{
    if (f->kfd)
        return kbc_fsync(f->kfd, false);
    return fsync(f->fd) < 0 ? -errno : 0;
}

int bench_close(bench_file_t *f)
{
    if (!f)
        return 0;
    int rc;
    if (f->kfd)
        rc = kbc_close(f->kfd);
    else
        rc = close(f->fd) < 0 ? -errno : 0;
    free(f);
    return rc;
}

int bench_unlink(bench_target_t *t, const char *name)
{
    int rc = 0;
    if (t->kbc) {
        char *path = lib_path(t, name);
        rc = path ? kbc_unlink_path(t->kbc, path) : -ENOMEM;
        free(path);
    } else if (unlinkat(t->dirfd, name, 0) < 0) {
        rc = -errno;
    }
    return rc == -ENOENT ? 0 : rc;
}

int bench_mkdir(bench_target_t *t, const char *name)
{
    if (t->kbc) {
        char *path = lib_path(t, name);
        int rc = path ? kbc_mkdir_path(t->kbc, path, 0755) : -ENOMEM;
        free(path);
        return rc;
    }
    return mkdirat(t->dirfd, name, 0755) < 0 ? -errno : 0;
}

int bench_rmdir(bench_target_t *t, const char *name)
{
    int rc = 0;
    if (t->kbc) {
        char *path = lib_path(t, name);
        rc = path ? kbc_rmdir_path(t->kbc, path) : -ENOMEM;
        free(path);
    } else if (unlinkat(t->dirfd, name, AT_REMOVEDIR) < 0) {
        rc = -errno;
    }
    return rc == -ENOENT ? 0 : rc;
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
