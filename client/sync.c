/*
 * sync.c — libkembar's blocking API over kbc_submit (client/kembar.h).
 *
 * Each call parks the calling thread on a condvar of its own until the fop's
 * callback (loop thread) has copied the reply. Promises: one fop per call
 * except where noted (data split into KB_DATA_MAX pieces, open with O_TRUNC
 * = OPEN + TRUNCATE, close = FLUSH + RELEASE); gfids of new objects are
 * chosen here (kb_gfid_generate); never called from the loop thread
 * (-EDEADLK instead of a deadlock).
 */
#include "client/internal.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#define KBC_READDIR_BYTES (64 * 1024)

struct waiter {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
    kb_reply_t *out;
};

static void waiter_cbk(void *cookie, const kb_reply_t *reply)
{
    struct waiter *w = cookie;
    int rc = kb_reply_copy(w->out, reply);
    if (rc < 0) {                /* copy freed its partial dirents; data not yet ref'd */
        memset(w->out, 0, sizeof(*w->out));
        w->out->status = rc;
    }
    pthread_mutex_lock(&w->mu);
    w->done = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

int kbc_call(kbc_t *c, kb_op_t op, const kb_args_t *args, kb_reply_t *reply)
{
    memset(reply, 0, sizeof(*reply));
    if (kb_loop_in_thread(c->loop))
        return reply->status = -EDEADLK;
    kb_cred_t cred;
    pthread_mutex_lock(&c->mu);
    cred = c->cred;
    pthread_mutex_unlock(&c->mu);

    struct waiter w = { .done = false, .out = reply };
    pthread_mutex_init(&w.mu, NULL);
    pthread_cond_init(&w.cv, NULL);
    kbc_submit(c, op, args, &cred, waiter_cbk, &w);
    pthread_mutex_lock(&w.mu);
    while (!w.done)
        pthread_cond_wait(&w.cv, &w.mu);
    pthread_mutex_unlock(&w.mu);
    pthread_cond_destroy(&w.cv);
    pthread_mutex_destroy(&w.mu);
    return reply->status;
}

/* Run a fop whose only interesting result is status and maybe attr. */
static int call_attr(kbc_t *c, kb_op_t op, const kb_args_t *a, kb_iatt_t *out)
{
    kb_reply_t r;
    int rc = kbc_call(c, op, a, &r);
    if (rc >= 0 && out)
        *out = r.attr;
    kb_reply_clear(&r);
    return rc;
}

static int name_ok(const char *name)
{
    if (!name || !*name || strchr(name, '/'))
        return -EINVAL;
    return strlen(name) > KB_NAME_MAX ? -ENAMETOOLONG : 0;
}

/* ---- inodes by gfid ---- */

int kbc_lookup(kbc_t *c, const kb_gfid_t *parent, const char *name, kb_iatt_t *out)
{
    int rc = name ? name_ok(name) : 0;
    if (rc < 0)
        return rc;
    kb_args_t a = { .gfid = *parent, .name = (char *)name };
    return call_attr(c, KB_FOP_LOOKUP, &a, out);
}

int kbc_stat(kbc_t *c, const kb_gfid_t *gfid, kb_iatt_t *out)
{
    kb_args_t a = { .gfid = *gfid };
    return call_attr(c, KB_FOP_STAT, &a, out);
}

int kbc_mkdir(kbc_t *c, const kb_gfid_t *parent, const char *name, mode_t mode, kb_iatt_t *out)
{
    int nrc = name_ok(name);
    if (nrc < 0)
        return nrc;
    kb_args_t a = { .gfid = *parent, .name = (char *)name, .mode = (mode & 07777) | S_IFDIR };
    kb_gfid_generate(&a.newgfid);
    return call_attr(c, KB_FOP_MKDIR, &a, out);
}

int kbc_rmdir(kbc_t *c, const kb_gfid_t *parent, const char *name)
{
    int nrc = name_ok(name);
    if (nrc < 0)
        return nrc;
    kb_args_t a = { .gfid = *parent, .name = (char *)name };
    return call_attr(c, KB_FOP_RMDIR, &a, NULL);
}

int kbc_unlink(kbc_t *c, const kb_gfid_t *parent, const char *name)
{
    int nrc = name_ok(name);
    if (nrc < 0)
        return nrc;
    kb_args_t a = { .gfid = *parent, .name = (char *)name };
    return call_attr(c, KB_FOP_UNLINK, &a, NULL);
}

int kbc_rename(kbc_t *c, const kb_gfid_t *oldparent, const char *oldname,
               const kb_gfid_t *newparent, const char *newname, unsigned flags)
{
    int nrc = name_ok(oldname);
    if (nrc == 0)
        nrc = name_ok(newname);
    if (nrc < 0)
        return nrc;
    kb_args_t a = { .gfid = *oldparent, .name = (char *)oldname, .gfid2 = *newparent,
                    .name2 = (char *)newname, .flags = flags };
    return call_attr(c, KB_FOP_RENAME, &a, NULL);
}

int kbc_symlink(kbc_t *c, const kb_gfid_t *parent, const char *name, const char *target,
                kb_iatt_t *out)
{
    int nrc = name_ok(name);
    if (nrc < 0)
        return nrc;
    if (!target || !*target || strlen(target) >= KB_PATH_MAX)
        return -EINVAL;
    kb_args_t a = { .gfid = *parent, .name = (char *)name, .name2 = (char *)target };
    kb_gfid_generate(&a.newgfid);
    return call_attr(c, KB_FOP_SYMLINK, &a, out);
}

int kbc_statfs(kbc_t *c, kb_statfs_t *out)
{
    kb_args_t a = { .gfid = kb_gfid_root };
    kb_reply_t r;
    int rc = kbc_call(c, KB_FOP_STATFS, &a, &r);
    if (rc >= 0)
        *out = r.statfs;
    kb_reply_clear(&r);
    return rc;
}

int kbc_setxattr(kbc_t *c, const kb_gfid_t *gfid, const char *name, const void *value,
                 size_t size, int flags)
{
    if (!name || !*name || strlen(name) > KB_XATTR_NAME_MAX || size > KB_XATTR_VALUE_MAX)
        return -EINVAL;
    kb_buf_t *b = kb_buf_copy(value, size);
    if (!b)
        return -ENOMEM;
    kb_args_t a = { .gfid = *gfid, .name = (char *)name, .data = b, .flags = (uint32_t)flags };
    int rc = call_attr(c, KB_FOP_SETXATTR, &a, NULL);
    kb_buf_unref(b);
    return rc;
}

ssize_t kbc_getxattr(kbc_t *c, const kb_gfid_t *gfid, const char *name, void *value, size_t size)
{
    if (!name || !*name || strlen(name) > KB_XATTR_NAME_MAX)
        return -EINVAL;
    kb_args_t a = { .gfid = *gfid, .name = (char *)name, .size = size };
    kb_reply_t r;
    ssize_t rc = kbc_call(c, KB_FOP_GETXATTR, &a, &r);
    if (rc > 0 && size) {
        size_t have = r.data ? r.data->len : 0;
        if (have > size)
            rc = -ERANGE;
        else
            memcpy(value, r.data->data, have), rc = (ssize_t)have;
    }
    kb_reply_clear(&r);
    return rc;
}

/* ---- open files ---- */

static kbc_fd_t *fd_new(kbc_t *c, const kb_gfid_t *gfid, uint64_t fd, int flags, bool dir)
{
    kbc_fd_t *f = kb_zalloc(sizeof(*f));
    if (f)
        *f = (kbc_fd_t){ .c = c, .gfid = *gfid, .fd = fd, .flags = flags, .is_dir = dir };
    return f;
}

/* The graph fd is already open: give it back (used when we cannot keep it). */
static void fd_release(kbc_t *c, const kb_gfid_t *gfid, uint64_t fd, bool dir)
{
    kb_args_t a = { .gfid = *gfid, .fd = fd };
    kb_reply_t r;
    kbc_call(c, dir ? KB_FOP_RELEASEDIR : KB_FOP_RELEASE, &a, &r);
    kb_reply_clear(&r);
}

static int fd_truncate(kbc_t *c, const kb_gfid_t *gfid, uint64_t fd, off_t size)
{
    kb_args_t a = { .gfid = *gfid, .fd = fd, .fd_valid = 1, .off = (uint64_t)size };
    return call_attr(c, KB_FOP_TRUNCATE, &a, NULL);
}

int kbc_open(kbc_t *c, const kb_gfid_t *gfid, int flags, kbc_fd_t **out)
{
    /* Truncation is a TRUNCATE fop so replicate sees a data change. */
    int oflags = flags & ~(O_CREAT | O_EXCL | O_TRUNC | O_NOCTTY);
    kb_args_t a = { .gfid = *gfid, .flags = (uint32_t)oflags };
    kb_reply_t r;
    int rc = kbc_call(c, KB_FOP_OPEN, &a, &r);
    uint64_t fd = r.fd;
    kb_reply_clear(&r);
    if (rc < 0)
        return rc;
    if ((flags & O_TRUNC) && (flags & O_ACCMODE) != O_RDONLY) {
        rc = fd_truncate(c, gfid, fd, 0);
        if (rc < 0) {
            fd_release(c, gfid, fd, false);
            return rc;
        }
    }
    *out = fd_new(c, gfid, fd, oflags, false);
    if (!*out) {
        fd_release(c, gfid, fd, false);
        return -ENOMEM;
    }
    return 0;
}

int kbc_create(kbc_t *c, const kb_gfid_t *parent, const char *name, int flags, mode_t mode,
               kbc_fd_t **out, kb_iatt_t *attr)
{
    int nrc = name_ok(name);
    if (nrc < 0)
        return nrc;
    kb_args_t a = { .gfid = *parent, .name = (char *)name, .mode = (mode & 07777) | S_IFREG,
                    .flags = (uint32_t)(flags | O_CREAT) };
    kb_gfid_generate(&a.newgfid);
    kb_reply_t r;
    int rc = kbc_call(c, KB_FOP_CREATE, &a, &r);
    kb_iatt_t ia = r.attr;
    uint64_t fd = r.fd;
    kb_reply_clear(&r);
    if (rc < 0)
        return rc;
    if (kb_gfid_is_null(&ia.gfid))
        ia.gfid = a.newgfid;
    if (attr)
        *attr = ia;
    *out = fd_new(c, &ia.gfid, fd, flags & ~(O_CREAT | O_EXCL | O_TRUNC), false);
    if (!*out) {
        fd_release(c, &ia.gfid, fd, false);
        return -ENOMEM;
    }
    return 0;
}

int kbc_close(kbc_fd_t *f)
{
    if (!f)
        return -EBADF;
    kbc_t *c = f->c;
    int rc = 0;
    kb_reply_t r;
    if (!f->is_dir) {
        kb_cred_t cred;
        pthread_mutex_lock(&c->mu);
        cred = c->cred;
        pthread_mutex_unlock(&c->mu);
        kb_args_t a = { .gfid = f->gfid, .fd = f->fd,
                        .lock = { .type = KB_LK_UNLCK, .owner = cred.lk_owner, .pid = cred.pid } };
        rc = kbc_call(c, KB_FOP_FLUSH, &a, &r);
        kb_reply_clear(&r);
    }
    fd_release(c, &f->gfid, f->fd, f->is_dir);
    free(f);
    return rc < 0 ? rc : 0;
}

const kb_gfid_t *kbc_fd_gfid(const kbc_fd_t *fd) { return &fd->gfid; }
uint64_t kbc_fd_handle(const kbc_fd_t *fd) { return fd->fd; }
kbc_t *kbc_fd_client(const kbc_fd_t *fd) { return fd->c; }

/* ---- data ---- */

static ssize_t read_chunk(kbc_fd_t *f, char *dst, size_t count, off_t off)
{
    kb_args_t a = { .gfid = f->gfid, .fd = f->fd, .off = (uint64_t)off, .size = count,
                    .flags = (uint32_t)(f->flags & O_DIRECT) };
    kb_reply_t r;
    ssize_t rc = kbc_call(f->c, KB_FOP_READ, &a, &r);
    if (rc > 0) {
        size_t n = KB_MIN((size_t)rc, r.data ? r.data->len : 0);
        n = KB_MIN(n, count);
        if (n)
            memcpy(dst, r.data->data, n);
        rc = (ssize_t)n;
    }
    kb_reply_clear(&r);
    return rc;
}

ssize_t kbc_pread(kbc_fd_t *f, void *buf, size_t count, off_t off)
{
    size_t done = 0;
    while (done < count) {
        size_t n = KB_MIN(count - done, (size_t)KB_DATA_MAX);
        ssize_t rc = read_chunk(f, (char *)buf + done, n, off + (off_t)done);
        if (rc < 0)
            return done ? (ssize_t)done : rc;
        done += (size_t)rc;
        if ((size_t)rc < n)
            break;               /* end of file */
    }
    return (ssize_t)done;
}

/* Write one buffer (at most KB_DATA_MAX). */
static ssize_t write_buf(kbc_fd_t *f, kb_buf_t *b, off_t off)
{
    kb_args_t a = { .gfid = f->gfid, .fd = f->fd, .off = (uint64_t)off, .data = b,
                    .flags = (uint32_t)(f->flags & O_DIRECT) };
    return call_attr(f->c, KB_FOP_WRITE, &a, NULL);
}

ssize_t kbc_pwrite(kbc_fd_t *f, const void *buf, size_t count, off_t off)
{
    size_t done = 0;
    while (done < count) {
        size_t n = KB_MIN(count - done, (size_t)KB_DATA_MAX);
        /* A copy: the buffer is shared with lower layers that may hold it
         * past our return (a send still queued), and it is 4096-aligned. */
        kb_buf_t *b = kb_buf_copy((const char *)buf + done, n);
        if (!b)
            return done ? (ssize_t)done : -ENOMEM;
        ssize_t rc = write_buf(f, b, off + (off_t)done);
        kb_buf_unref(b);
        if (rc < 0)
            return done ? (ssize_t)done : rc;
        if (rc == 0)
            break;
        done += (size_t)rc;
    }
    return (ssize_t)done;
}

static size_t iov_total(const struct iovec *iov, int iovcnt)
{
    size_t t = 0;
    for (int i = 0; i < iovcnt; i++)
        t += iov[i].iov_len;
    return t;
}

ssize_t kbc_preadv(kbc_fd_t *f, const struct iovec *iov, int iovcnt, off_t off)
{
    size_t total = iov_total(iov, iovcnt);
    if (iovcnt == 1)
        return kbc_pread(f, iov[0].iov_base, iov[0].iov_len, off);
    char *tmp = malloc(total ? total : 1);
    if (!tmp)
        return -ENOMEM;
    ssize_t rc = kbc_pread(f, tmp, total, off);
    for (size_t pos = 0, i = 0; rc > 0 && pos < (size_t)rc; i++) {
        size_t n = KB_MIN(iov[i].iov_len, (size_t)rc - pos);
        memcpy(iov[i].iov_base, tmp + pos, n);
        pos += n;
    }
    free(tmp);
    return rc;
}

ssize_t kbc_pwritev(kbc_fd_t *f, const struct iovec *iov, int iovcnt, off_t off)
{
    size_t total = iov_total(iov, iovcnt);
    if (total > KB_DATA_MAX) {   /* rare: gather then write in pieces */
        char *tmp = malloc(total);
        if (!tmp)
            return -ENOMEM;
        for (size_t pos = 0, i = 0; i < (size_t)iovcnt; pos += iov[i].iov_len, i++)
            memcpy(tmp + pos, iov[i].iov_base, iov[i].iov_len);
        ssize_t rc = kbc_pwrite(f, tmp, total, off);
        free(tmp);
        return rc;
    }
    kb_buf_t *b = kb_buf_new(total);   /* gather straight into the payload */
    if (!b)
        return -ENOMEM;
    for (int i = 0; i < iovcnt; i++) {
        memcpy(b->data + b->len, iov[i].iov_base, iov[i].iov_len);
        b->len += iov[i].iov_len;
    }
    ssize_t rc = write_buf(f, b, off);
    kb_buf_unref(b);
    return rc;
}

int kbc_fstat(kbc_fd_t *f, kb_iatt_t *out)
{
    kb_args_t a = { .gfid = f->gfid, .fd = f->fd, .fd_valid = 1 };
    return call_attr(f->c, KB_FOP_STAT, &a, out);
}

int kbc_fsync(kbc_fd_t *f, bool datasync)
{
    kb_args_t a = { .gfid = f->gfid, .fd = f->fd, .flags = datasync ? 1 : 0 };
    return call_attr(f->c, KB_FOP_FSYNC, &a, NULL);
}

int kbc_ftruncate(kbc_fd_t *f, off_t size)
{
    if (size < 0)
        return -EINVAL;
    return fd_truncate(f->c, &f->gfid, f->fd, size);
}

int kbc_fallocate(kbc_fd_t *f, int mode, off_t off, off_t len)
{
    if (off < 0 || len <= 0)
        return -EINVAL;
    kb_args_t a = { .gfid = f->gfid, .fd = f->fd, .off = (uint64_t)off, .size = (uint64_t)len,
                    .flags = (uint32_t)mode };
    return call_attr(f->c, KB_FOP_FALLOCATE, &a, NULL);
}

off_t kbc_lseek(kbc_fd_t *f, off_t off, int whence)
{
    kb_args_t a = { .gfid = f->gfid, .fd = f->fd, .off = (uint64_t)off, .flags = (uint32_t)whence };
    kb_reply_t r;
    int rc = kbc_call(f->c, KB_FOP_LSEEK, &a, &r);
    off_t res = rc < 0 ? rc : (off_t)r.off;
    kb_reply_clear(&r);
    return res;
}

/* ---- directories ---- */

int kbc_opendir(kbc_t *c, const kb_gfid_t *gfid, kbc_fd_t **out)
{
    kb_args_t a = { .gfid = *gfid };
    kb_reply_t r;
    int rc = kbc_call(c, KB_FOP_OPENDIR, &a, &r);
    uint64_t fd = r.fd;
    kb_reply_clear(&r);
    if (rc < 0)
        return rc;
    *out = fd_new(c, gfid, fd, O_RDONLY | O_DIRECTORY, true);
    if (!*out) {
        fd_release(c, gfid, fd, true);
        return -ENOMEM;
    }
    return 0;
}

int kbc_readdir(kbc_fd_t *dir, bool plus, kb_dirent_t **ents, uint32_t *n)
{
    *ents = NULL;
    *n = 0;
    if (!dir->is_dir)
        return -ENOTDIR;
    if (dir->dir_eof)
        return 0;
    kb_args_t a = { .gfid = dir->gfid, .fd = dir->fd, .off = dir->dir_off,
                    .size = KBC_READDIR_BYTES, .flags = plus ? 1 : 0 };
    kb_reply_t r;
    int rc = kbc_call(dir->c, KB_FOP_READDIR, &a, &r);
    if (rc < 0) {
        kb_reply_clear(&r);
        return rc;
    }
    if (r.ndirents == 0)
        dir->dir_eof = true;
    else
        dir->dir_off = r.dirents[r.ndirents - 1].off;
    *ents = r.dirents;           /* steal the batch from the reply */
    *n = r.ndirents;
    r.dirents = NULL;
    r.ndirents = 0;
    kb_reply_clear(&r);
    return 0;
}

/* ---- paths ---- */

/*
 * Resolve PATH's parent directory by LOOKUPs from the root, lexically
 * ("." skipped, ".." pops), and return the last component in LAST (empty
 * for "/"). Symlinks are not followed: a component that is one fails with
 * ENOTDIR, as a non-directory would. An empty LAST ("/", or a path ending
 * in "." or "..") means PARENT itself is the target.
 */
#define KBC_DEPTH_MAX 256
static int resolve_parent(kbc_t *c, const char *path, kb_gfid_t *parent, char last[KB_NAME_MAX + 1])
{
    if (!path || path[0] != '/' || strlen(path) >= KB_PATH_MAX)
        return -EINVAL;
    kb_gfid_t *stack = malloc(sizeof(kb_gfid_t) * KBC_DEPTH_MAX);
    char *copy = strdup(path);
    int rc = (!stack || !copy) ? -ENOMEM : 0;
    int depth = 0;
    char *save = NULL, *comp = copy ? strtok_r(copy, "/", &save) : NULL;
    last[0] = '\0';
    if (rc == 0)
        stack[0] = kb_gfid_root;
    while (rc == 0 && comp) {
        char *next = strtok_r(NULL, "/", &save);
        if (strcmp(comp, ".") == 0) {
            /* nothing */
        } else if (strcmp(comp, "..") == 0) {
            depth -= depth > 0;
        } else if (strlen(comp) > KB_NAME_MAX) {
            rc = -ENAMETOOLONG;
        } else if (!next) {
            strcpy(last, comp);
        } else if (depth + 1 >= KBC_DEPTH_MAX) {
            rc = -ELOOP;
        } else {
            kb_iatt_t ia;
            rc = kbc_lookup(c, &stack[depth], comp, &ia);
            if (rc == 0 && !S_ISDIR(ia.mode))
                rc = -ENOTDIR;
            if (rc == 0)
                stack[++depth] = ia.gfid;
        }
        comp = next;
    }
    if (rc == 0)
        *parent = stack[depth];
    free(stack);
    free(copy);
    return rc;
}

int kbc_resolve(kbc_t *c, const char *path, kb_iatt_t *out)
{
    kb_gfid_t parent;
    char last[KB_NAME_MAX + 1];
    int rc = resolve_parent(c, path, &parent, last);
    if (rc < 0)
        return rc;
    if (!last[0])                /* "/" or a path ending in "." / ".." */
        return kbc_stat(c, &parent, out);
    return kbc_lookup(c, &parent, last, out);
}

int kbc_open_path(kbc_t *c, const char *path, int flags, mode_t mode, kbc_fd_t **out)
{
    kb_gfid_t parent;
    char last[KB_NAME_MAX + 1];
    int rc = resolve_parent(c, path, &parent, last);
    if (rc < 0)
        return rc;
    if (!last[0])
        return -EISDIR;
    kb_iatt_t ia;
    rc = kbc_lookup(c, &parent, last, &ia);
    if (rc == -ENOENT && (flags & O_CREAT)) {
        rc = kbc_create(c, &parent, last, flags, mode, out, NULL);
        if (rc != -EEXIST || (flags & O_EXCL))
            return rc;
        rc = kbc_lookup(c, &parent, last, &ia);   /* lost a race with another creator */
    }
    if (rc < 0)
        return rc;
    if ((flags & (O_CREAT | O_EXCL)) == (O_CREAT | O_EXCL))
        return -EEXIST;
    if (S_ISDIR(ia.mode) && (flags & O_ACCMODE) != O_RDONLY)
        return -EISDIR;
    return kbc_open(c, &ia.gfid, flags, out);
}

int kbc_opendir_path(kbc_t *c, const char *path, kbc_fd_t **out)
{
    kb_iatt_t ia;
    int rc = kbc_resolve(c, path, &ia);
    if (rc < 0)
        return rc;
    if (!S_ISDIR(ia.mode))
        return -ENOTDIR;
    return kbc_opendir(c, &ia.gfid, out);
}

/* Resolve the parent of PATH and require a last component. */
static int split_path(kbc_t *c, const char *path, kb_gfid_t *parent, char last[KB_NAME_MAX + 1])
{
    int rc = resolve_parent(c, path, parent, last);
    if (rc == 0 && !last[0])
        rc = -EBUSY;             /* "/" or "." cannot be removed or replaced */
    return rc;
}

int kbc_mkdir_path(kbc_t *c, const char *path, mode_t mode)
{
    kb_gfid_t parent;
    char last[KB_NAME_MAX + 1];
    int rc = split_path(c, path, &parent, last);
    return rc < 0 ? (rc == -EBUSY ? -EEXIST : rc) : kbc_mkdir(c, &parent, last, mode, NULL);
}

int kbc_rmdir_path(kbc_t *c, const char *path)
{
    kb_gfid_t parent;
    char last[KB_NAME_MAX + 1];
    int rc = split_path(c, path, &parent, last);
    return rc < 0 ? rc : kbc_rmdir(c, &parent, last);
}

int kbc_unlink_path(kbc_t *c, const char *path)
{
    kb_gfid_t parent;
    char last[KB_NAME_MAX + 1];
    int rc = split_path(c, path, &parent, last);
    return rc < 0 ? (rc == -EBUSY ? -EISDIR : rc) : kbc_unlink(c, &parent, last);
}

int kbc_rename_path(kbc_t *c, const char *from, const char *to)
{
    kb_gfid_t p1, p2;
    char l1[KB_NAME_MAX + 1], l2[KB_NAME_MAX + 1];
    int rc = split_path(c, from, &p1, l1);
    if (rc == 0)
        rc = split_path(c, to, &p2, l2);
    return rc < 0 ? rc : kbc_rename(c, &p1, l1, &p2, l2, 0);
}
