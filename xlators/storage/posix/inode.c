/*
 * inode.c — inode ops of storage/posix: stat, setattr, truncate,
 * readlink, open and the fd lifetime ops, statfs, the xattr ops and lseek.
 *
 * Objects are reached by fd (fd table) or by gfid (posix_resolve); both
 * paths end in a posix_obj_t so each op is written once. Only regular files
 * are ever opened for I/O: opening a device node or a FIFO on the brick
 * would reach the server's own hardware or block the loop.
 *
 * trusted.kembar.* is the brick's: GETXATTR answers -ENODATA, SETXATTR and
 * REMOVEXATTR -EPERM, LISTXATTR leaves those names out.
 */
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>
#include "lib/log.h"
#include "xlators/storage/posix/internal.h"

/* Resolve the object of CALL: by fd when USE_FD, else by args.gfid.
 * *F is set (and must be put) in the fd case. */
static int obj_of(posix_priv_t *p, const kb_args_t *a, bool use_fd, posix_obj_t *o, posix_fd_t **f)
{
    *f = NULL;
    if (!use_fd)
        return posix_resolve(p, &a->gfid, o);
    memset(o, 0, sizeof(*o));
    *f = posix_fd_get(p, a->fd, &a->gfid);
    if (!*f)
        return -EBADF;
    o->dfd = (*f)->fd;
    o->gfid = (*f)->gfid;
    return posix_obj_stat(o);
}

static void obj_done(posix_priv_t *p, posix_obj_t *o, posix_fd_t *f)
{
    posix_obj_put(p, o);
    posix_fd_put(p, f);
}

/* ---------------- stat / setattr / truncate ---------------- */

void posix_op_stat(kb_call_t *call)
{
    posix_priv_t *p = posix_priv(call);
    posix_obj_t o;
    posix_fd_t *f;
    int rc = obj_of(p, call->args, call->args->fd_valid, &o, &f);
    posix_unwind_attr(call, rc, &o.st, &o.gfid);
    obj_done(p, &o, f);
}

static int obj_truncate(posix_obj_t *o, uint64_t size)
{
    if (S_ISDIR(o->st.st_mode))
        return -EISDIR;
    if (!S_ISREG(o->st.st_mode))
        return -EINVAL;
    if ((int64_t)size < 0)
        return -EFBIG;
    int rc = 0;
    if (!o->name[0]) {        /* an fd of the table, perhaps read-only: go through the inode */
        if (ftruncate(o->dfd, (off_t)size) == 0)
            return 0;
        char path[64];
        posix_obj_procpath(o, path, sizeof(path));
        return truncate(path, (off_t)size) ? -errno : 0;
    }
    int fd = posix_obj_open(o, O_WRONLY);
    if (fd < 0)
        return fd;
    struct stat st;
    if (fstat(fd, &st) || st.st_ino != o->st.st_ino)
        rc = -ESTALE;
    else if (ftruncate(fd, (off_t)size))
        rc = -errno;
    close(fd);
    return rc;
}

static int obj_chown(posix_obj_t *o, uid_t uid, gid_t gid)
{
    int rc = o->name[0] ? fchownat(o->dfd, o->name, uid, gid, AT_SYMLINK_NOFOLLOW) : fchown(o->dfd, uid, gid);
    return rc ? -errno : 0;
}

static int obj_chmod(posix_obj_t *o, mode_t mode)
{
    if (S_ISLNK(o->st.st_mode))
        return 0;             /* a symlink's mode means nothing on Linux */
    int rc = o->name[0] ? fchmodat(o->dfd, o->name, mode, AT_SYMLINK_NOFOLLOW) : fchmod(o->dfd, mode);
    return rc ? -errno : 0;
}

static struct timespec ts_of(int64_t sec, uint32_t nsec, bool set, bool now)
{
    struct timespec t = { .tv_sec = 0, .tv_nsec = UTIME_OMIT };
    if (now)
        t.tv_nsec = UTIME_NOW;
    else if (set) {
        t.tv_sec = sec;
        t.tv_nsec = nsec;
    }
    return t;
}

static int obj_setattr(posix_obj_t *o, const kb_args_t *a)
{
    uint32_t v = a->flags;
    int rc = 0;
    if (v & KB_SET_SIZE)
        rc = obj_truncate(o, a->attr.size);
    /* chown before chmod: chown clears setuid/setgid on executables */
    if (!rc && (v & (KB_SET_UID | KB_SET_GID)))
        rc = obj_chown(o, (v & KB_SET_UID) ? a->attr.uid : (uid_t)-1, (v & KB_SET_GID) ? a->attr.gid : (gid_t)-1);
    if (!rc && (v & KB_SET_MODE))
        rc = obj_chmod(o, a->attr.mode & 07777);
    if (!rc && (v & (KB_SET_ATIME | KB_SET_MTIME | KB_SET_ATIME_NOW | KB_SET_MTIME_NOW))) {
        struct timespec ts[2] = {
            ts_of(a->attr.atime_sec, a->attr.atime_nsec, v & KB_SET_ATIME, v & KB_SET_ATIME_NOW),
            ts_of(a->attr.mtime_sec, a->attr.mtime_nsec, v & KB_SET_MTIME, v & KB_SET_MTIME_NOW),
        };
        int r = o->name[0] ? utimensat(o->dfd, o->name, ts, AT_SYMLINK_NOFOLLOW) : futimens(o->dfd, ts);
        if (r)
            rc = -errno;
    }
    return rc ? rc : posix_obj_stat(o);
}

void posix_op_setattr(kb_call_t *call)
{
    posix_priv_t *p = posix_priv(call);
    posix_obj_t o;
    posix_fd_t *f;
    int rc = obj_of(p, call->args, call->args->fd_valid, &o, &f);
    if (!rc)
        rc = obj_setattr(&o, call->args);
    posix_unwind_attr(call, rc, &o.st, &o.gfid);
    obj_done(p, &o, f);
}

void posix_op_truncate(kb_call_t *call)
{
    posix_priv_t *p = posix_priv(call);
    const kb_args_t *a = call->args;
    posix_obj_t o;
    posix_fd_t *f;
    int rc = obj_of(p, a, a->fd_valid, &o, &f);
    if (!rc && S_ISREG(o.st.st_mode) && (a->flags & KB_WF_TRACK_REGIONS)) {
        uint64_t old = (uint64_t)o.st.st_size, lo = KB_MIN(old, a->off), hi = KB_MAX(old, a->off);
        if (hi > lo)
            rc = posix_regions_track(p, &o.gfid, lo, hi - lo);
    }
    if (!rc)
        rc = obj_truncate(&o, a->off);
    if (!rc && (a->flags & KB_WF_KILL_SUIDGID)) {
        mode_t m = posix_kill_suidgid(o.st.st_mode & 07777, o.st.st_gid, &call->cred);
        if (m != (o.st.st_mode & 07777))
            rc = obj_chmod(&o, m);
    }
    if (!rc)
        rc = posix_obj_stat(&o);
    posix_unwind_attr(call, rc, &o.st, &o.gfid);
    obj_done(p, &o, f);
}

/* ---------------- readlink / open / fd lifetime ---------------- */

void posix_op_readlink(kb_call_t *call)
{
    posix_priv_t *p = posix_priv(call);
    posix_obj_t o;
    int rc = posix_resolve(p, &call->args->gfid, &o);
    kb_reply_t r = { 0 };
    if (!rc && !S_ISLNK(o.st.st_mode))
        rc = -EINVAL;
    if (!rc) {
        char buf[KB_PATH_MAX];
        ssize_t n = readlinkat(o.dfd, o.name, buf, sizeof(buf));
        if (n < 0)
            rc = -errno;
        else if (n >= (ssize_t)sizeof(buf))
            rc = -ENAMETOOLONG;
        else if (!(r.data = kb_buf_copy(buf, (size_t)n)))
            rc = -ENOMEM;
        else
            rc = (int)n;
    }
    posix_obj_put(p, &o);
    r.status = rc;
    kb_unwind(call, &r);
    kb_buf_unref(r.data);
}

void posix_op_open(kb_call_t *call)
{
    posix_priv_t *p = posix_priv(call);
    const kb_args_t *a = call->args;
    posix_obj_t o;
    int rc = posix_resolve(p, &a->gfid, &o);
    if (!rc)
        rc = S_ISDIR(o.st.st_mode) ? -EISDIR : S_ISLNK(o.st.st_mode) ? -ELOOP : !S_ISREG(o.st.st_mode) ? -EINVAL : 0;
    int flags = (int)(a->flags & POSIX_OPEN_FLAGS);
    int fd = rc ? rc : posix_obj_open(&o, flags);
    if (fd >= 0) {
        struct stat st;
        if (fstat(fd, &st) || !S_ISREG(st.st_mode) || st.st_ino != o.st.st_ino) {
            close(fd);
            fd = -ESTALE;
        }
    }
    posix_obj_put(p, &o);
    if (fd < 0) {
        posix_unwind_status(call, fd);
        return;
    }
    posix_fd_t *f = posix_fd_add(p, fd, &a->gfid, (uint32_t)flags, false, call->cred.client_id);
    if (!f) {
        close(fd);
        posix_unwind_status(call, -ENOMEM);
        return;
    }
    kb_reply_t r = { .status = 0, .fd = f->num };
    kb_unwind(call, &r);
}

void posix_op_flush(kb_call_t *call)
{
    posix_priv_t *p = posix_priv(call);
    posix_fd_t *f = posix_fd_get(p, call->args->fd, &call->args->gfid);
    posix_unwind_status(call, f ? 0 : -EBADF);
    posix_fd_put(p, f);
}

void posix_op_release(kb_call_t *call)
{
    bool gone = call->args->flags & KB_REL_CONN_GONE;
    posix_unwind_status(call, posix_fd_release(posix_priv(call), call->args->fd, false, gone));
}

void posix_op_releasedir(kb_call_t *call)
{
    bool gone = call->args->flags & KB_REL_CONN_GONE;
    posix_unwind_status(call, posix_fd_release(posix_priv(call), call->args->fd, true, gone));
}

void posix_op_fsyncdir(kb_call_t *call)
{
    posix_priv_t *p = posix_priv(call);
    posix_fd_t *f = posix_fd_get(p, call->args->fd, &call->args->gfid);
    int rc = -EBADF;
    if (f && f->is_dir)
        rc = (call->args->flags ? fdatasync(f->fd) : fsync(f->fd)) ? -errno : 0;
    posix_fd_put(p, f);
    posix_unwind_status(call, rc);
}

void posix_op_statfs(kb_call_t *call)
{
    posix_priv_t *p = posix_priv(call);
    struct statvfs sv;
    kb_reply_t r = { 0 };
    if (fstatvfs(p->root_fd, &sv)) {
        posix_unwind_status(call, -errno);
        return;
    }
    r.statfs = (kb_statfs_t){
        .bsize = sv.f_bsize, .frsize = sv.f_frsize, .blocks = sv.f_blocks, .bfree = sv.f_bfree,
        .bavail = sv.f_bavail, .files = sv.f_files, .ffree = sv.f_ffree, .favail = sv.f_favail,
        .namemax = sv.f_namemax,
    };
    kb_unwind(call, &r);
}

/* ---------------- xattrs ---------------- */

void posix_op_setxattr(kb_call_t *call)
{
    posix_priv_t *p = posix_priv(call);
    const kb_args_t *a = call->args;
    size_t len = a->data ? a->data->len : 0;
    int rc = 0;
    if (!a->name || !*a->name || strlen(a->name) > KB_XATTR_NAME_MAX)
        rc = -EINVAL;
    else if (posix_is_internal_xattr(a->name))
        rc = -EPERM;
    else if (len > KB_XATTR_VALUE_MAX)
        rc = -E2BIG;
    posix_obj_t o;
    if (!rc && !(rc = posix_resolve(p, &a->gfid, &o))) {
        rc = posix_obj_setxattr(&o, a->name, len ? a->data->data : "", len,
                                (int)(a->flags & (XATTR_CREATE | XATTR_REPLACE)));
        posix_obj_put(p, &o);
    }
    posix_unwind_status(call, rc);
}

void posix_op_getxattr(kb_call_t *call)
{
    posix_priv_t *p = posix_priv(call);
    const kb_args_t *a = call->args;
    kb_reply_t r = { 0 };
    posix_obj_t o;
    int rc = 0;
    if (!a->name || !*a->name)
        rc = -EINVAL;
    else if (posix_is_internal_xattr(a->name))
        rc = -ENODATA;        /* invisible, as if absent */
    if (!rc && !(rc = posix_resolve(p, &a->gfid, &o))) {
        size_t want = KB_MIN(a->size, (uint64_t)KB_XATTR_VALUE_MAX);
        if (want == 0) {
            rc = (int)posix_obj_getxattr(&o, a->name, NULL, 0);
        } else if (!(r.data = kb_buf_new(want))) {
            rc = -ENOMEM;
        } else {
            ssize_t n = posix_obj_getxattr(&o, a->name, r.data->data, want);
            rc = (int)n;
            r.data->len = n > 0 ? (size_t)n : 0;
        }
        posix_obj_put(p, &o);
    }
    r.status = rc;
    if (rc < 0) {
        kb_buf_unref(r.data);
        r.data = NULL;
    }
    kb_unwind(call, &r);
    kb_buf_unref(r.data);
}

/* Drop trusted.kembar.* names from a NUL-separated list, in place. */
static size_t filter_names(char *list, size_t n)
{
    size_t out = 0;
    for (size_t i = 0; i < n;) {
        size_t l = strnlen(list + i, n - i);
        if (!posix_is_internal_xattr(list + i) && l > 0) {
            memmove(list + out, list + i, l);
            list[out + l] = 0;
            out += l + 1;
        }
        i += l + 1;
    }
    return out;
}

static ssize_t list_filtered(posix_obj_t *o, char **out)
{
    for (int attempt = 0; attempt < 4; attempt++) {
        ssize_t n = posix_obj_listxattr(o, NULL, 0);
        if (n <= 0)
            return n;
        char *buf = malloc((size_t)n + 1);
        if (!buf)
            return -ENOMEM;
        ssize_t m = posix_obj_listxattr(o, buf, (size_t)n);
        if (m == -ERANGE) {   /* grew meanwhile */
            free(buf);
            continue;
        }
        if (m < 0) {
            free(buf);
            return m;
        }
        *out = buf;
        return (ssize_t)filter_names(buf, (size_t)m);
    }
    return -ERANGE;
}

void posix_op_listxattr(kb_call_t *call)
{
    posix_priv_t *p = posix_priv(call);
    const kb_args_t *a = call->args;
    kb_reply_t r = { 0 };
    posix_obj_t o;
    char *list = NULL;
    int rc = posix_resolve(p, &a->gfid, &o);
    if (!rc) {
        ssize_t n = list_filtered(&o, &list);
        posix_obj_put(p, &o);
        if (n < 0)
            rc = (int)n;
        else if (a->size == 0)
            rc = (int)n;
        else if ((uint64_t)n > a->size)
            rc = -ERANGE;
        else if (n > 0 && !(r.data = kb_buf_copy(list, (size_t)n)))
            rc = -ENOMEM;
        else
            rc = (int)n;
    }
    free(list);
    r.status = rc;
    kb_unwind(call, &r);
    kb_buf_unref(r.data);
}

void posix_op_removexattr(kb_call_t *call)
{
    posix_priv_t *p = posix_priv(call);
    const kb_args_t *a = call->args;
    posix_obj_t o;
    int rc = 0;
    if (!a->name || !*a->name)
        rc = -EINVAL;
    else if (posix_is_internal_xattr(a->name))
        rc = -EPERM;
    if (!rc && !(rc = posix_resolve(p, &a->gfid, &o))) {
        rc = posix_obj_removexattr(&o, a->name);
        posix_obj_put(p, &o);
    }
    posix_unwind_status(call, rc);
}

/* ---------------- lseek ---------------- */

void posix_op_lseek(kb_call_t *call)
{
    posix_priv_t *p = posix_priv(call);
    const kb_args_t *a = call->args;
    posix_fd_t *f = posix_fd_get(p, a->fd, &a->gfid);
    kb_reply_t r = { 0 };
    if (!f || f->is_dir) {
        r.status = -EBADF;
    } else if (a->flags != SEEK_SET && a->flags != SEEK_END && a->flags != SEEK_DATA && a->flags != SEEK_HOLE) {
        r.status = -EINVAL;
    } else {
        off_t off = lseek(f->fd, (off_t)a->off, (int)a->flags);
        if (off < 0)
            r.status = -errno;
        else
            r.off = (uint64_t)off;
    }
    posix_fd_put(p, f);
    kb_unwind(call, &r);
}
