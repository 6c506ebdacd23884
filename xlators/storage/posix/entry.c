/*
 * entry.c — entry ops of storage/posix: lookup, the four creates,
 * unlink, rmdir, rename, link, opendir and readdir.
 *
 * Creation order (each step undoable, a crash leaves at worst an object
 * without a gfid that lookup reports with a null gfid):
 *   create the object private (0600/0700) -> set its gfid (XATTR_CREATE) ->
 *   chown to the caller -> chmod to the final mode -> handle (hard link or
 *   directory record) -> parent hint.
 * The brick runs as root: ownership comes from call->cred; the group is the
 * parent's when the parent is setgid, and new directories inherit setgid.
 *
 * Handles follow the user-visible links: the last unlink of a non-directory
 * (st_nlink == 2: user link + handle) removes the handle, a rename that
 * replaces a target does the same for the target, rmdir removes the record.
 * Except for a regular file the brick holds open: it becomes an orphan,
 * handle kept until the last close (orphan.c), its marker made durable
 * before the name goes.
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include "lib/log.h"
#include "xlators/storage/posix/internal.h"

#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE (1 << 0)
#endif
#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1 << 1)
#endif

/* ---------------- lookup ---------------- */

void posix_op_lookup(kb_call_t *call)
{
    posix_priv_t *p = posix_priv(call);
    const kb_args_t *a = call->args;
    posix_obj_t o;
    int rc = a->name ? posix_resolve_entry(p, &a->gfid, a->name, &o) : posix_resolve(p, &a->gfid, &o);
    if (rc) {
        posix_obj_put(p, &o);
        posix_unwind_status(call, rc);
        return;
    }
    /* A named non-directory with one link has lost its handle (a crash
     * between create and link): put it back so it can be opened by gfid. */
    if (a->name && !S_ISDIR(o.st.st_mode) && o.st.st_nlink == 1 && !kb_gfid_is_null(&o.gfid) &&
        posix_handle_link(p, &o.gfid, o.dfd, o.name) == 0)
        posix_obj_stat(&o);
    posix_unwind_attr(call, 0, &o.st, &o.gfid);
    posix_obj_put(p, &o);
}

/* ---------------- create helpers ---------------- */

struct newobj {
    uid_t uid;
    gid_t gid;
    mode_t mode;              /* final permission bits incl. setgid inheritance */
};

/* Resolve the (free) entry and compute ownership; 0 with O pinned. */
static int create_prep(posix_priv_t *p, kb_call_t *call, posix_obj_t *o, struct newobj *n, bool is_dir)
{
    const kb_args_t *a = call->args;
    memset(o, 0, sizeof(*o));
    if (kb_gfid_is_null(&a->newgfid) || kb_gfid_is_root(&a->newgfid))
        return -EINVAL;
    int rc = posix_resolve_entry(p, &a->gfid, a->name, o);
    if (rc == 0)
        rc = -EEXIST;
    if (rc != -ENOENT)
        return rc;
    posix_obj_t other;        /* the gfid must not belong to a live object */
    if (posix_resolve(p, &a->newgfid, &other) == 0) {
        posix_obj_put(p, &other);
        return -EEXIST;
    }
    struct stat pst;
    if (fstat(o->dfd, &pst))
        return -errno;
    n->uid = call->cred.uid;
    n->gid = call->cred.gid;
    n->mode = a->mode & 07777;
    if (pst.st_mode & S_ISGID) {
        n->gid = pst.st_gid;
        if (is_dir)
            n->mode |= S_ISGID;
    }
    return 0;
}

/* Finish a non-directory created at O (not a regular file: no fd). */
static int finish_special(posix_priv_t *p, posix_obj_t *o, const kb_gfid_t *g, const kb_gfid_t *parent,
                          const struct newobj *n, bool is_link)
{
    char hint[POSIX_RECORD_MAX], ps[KB_GFID_STRLEN];
    int rc = posix_obj_setxattr(o, KB_XATTR_GFID, g->b, 16, XATTR_CREATE);
    if (!rc && fchownat(o->dfd, o->name, n->uid, n->gid, AT_SYMLINK_NOFOLLOW))
        rc = -errno;
    if (!rc && !is_link && fchmodat(o->dfd, o->name, n->mode, AT_SYMLINK_NOFOLLOW))
        rc = -errno;
    if (!rc)
        rc = posix_handle_link(p, g, o->dfd, o->name);
    if (!rc) {
        int len = snprintf(hint, sizeof(hint), "%s/%s", kb_gfid_str(parent, ps), o->name);
        posix_obj_setxattr(o, POSIX_XATTR_PARENT, hint, (size_t)len, 0);
        rc = posix_obj_stat(o);
    }
    if (rc)
        unlinkat(o->dfd, o->name, 0);
    return rc;
}

/* The one reply of an entry op that worked in the directory PARENT, open
 * at o->dfd: on success with that directory's attributes; O is put. */
static void entry_unwind(kb_call_t *call, kb_reply_t *r, posix_obj_t *o, const kb_gfid_t *parent)
{
    posix_reply_parent(r, o->dfd, parent);
    posix_obj_put(posix_priv(call), o);
    kb_unwind(call, r);
}

static void create_reply(kb_call_t *call, posix_obj_t *o, int rc, const kb_gfid_t *g)
{
    kb_reply_t r = { .status = rc };
    if (rc >= 0)
        posix_iatt(&r.attr, &o->st, g);
    entry_unwind(call, &r, o, &call->args->gfid);
}

/* ---------------- mkdir / mknod / symlink / create ---------------- */

void posix_op_mkdir(kb_call_t *call)
{
    posix_priv_t *p = posix_priv(call);
    const kb_args_t *a = call->args;
    posix_obj_t o;
    struct newobj n;
    int rc = create_prep(p, call, &o, &n, true);
    if (rc)
        goto out;
    if (mkdirat(o.dfd, o.name, 0700)) {
        rc = -errno;
        goto out;
    }
    int fd = posix_openat(o.dfd, o.name, O_RDONLY | O_DIRECTORY, 0);
    if (fd < 0) {
        rc = fd;
    } else if (fsetxattr(fd, KB_XATTR_GFID, a->newgfid.b, 16, XATTR_CREATE) ||
               fchown(fd, n.uid, n.gid) || fchmod(fd, n.mode) || fstat(fd, &o.st)) {
        rc = -errno;
    } else {
        rc = posix_dirrec_write(p, &a->newgfid, &a->gfid, o.name);
    }
    if (rc) {
        if (fd >= 0)
            close(fd);
        unlinkat(o.dfd, o.name, AT_REMOVEDIR);
        goto out;
    }
    posix_dir_adopt(p, &a->newgfid, fd);
out:
    create_reply(call, &o, rc, &a->newgfid);
}

void posix_op_mknod(kb_call_t *call)
{
    posix_priv_t *p = posix_priv(call);
    const kb_args_t *a = call->args;
    posix_obj_t o;
    struct newobj n;
    mode_t type = a->mode & S_IFMT;
    int rc = -EINVAL;
    if (type && !S_ISREG(a->mode) && !S_ISFIFO(a->mode) && !S_ISSOCK(a->mode) && !S_ISCHR(a->mode) &&
        !S_ISBLK(a->mode))
        goto out0;
    if ((rc = create_prep(p, call, &o, &n, false)))
        goto out;
    if (mknodat(o.dfd, o.name, (type ? type : S_IFREG) | 0600, (dev_t)a->rdev)) {
        rc = -errno;
        goto out;
    }
    rc = finish_special(p, &o, &a->newgfid, &a->gfid, &n, false);
out:
    create_reply(call, &o, rc, &a->newgfid);
    return;
out0:
    posix_unwind_status(call, rc);
}

void posix_op_symlink(kb_call_t *call)
{
    posix_priv_t *p = posix_priv(call);
    const kb_args_t *a = call->args;
    posix_obj_t o;
    struct newobj n;
    if (!a->name2 || !*a->name2 || strnlen(a->name2, KB_PATH_MAX) >= KB_PATH_MAX) {
        posix_unwind_status(call, a->name2 && *a->name2 ? -ENAMETOOLONG : -EINVAL);
        return;
    }
    /* The target is data: the brick stores it and never follows it. */
    int rc = create_prep(p, call, &o, &n, false);
    if (!rc && symlinkat(a->name2, o.dfd, o.name))
        rc = -errno;
    if (!rc)
        rc = finish_special(p, &o, &a->newgfid, &a->gfid, &n, true);
    create_reply(call, &o, rc, &a->newgfid);
}

static int create_file(posix_priv_t *p, kb_call_t *call, posix_obj_t *o, const struct newobj *n, int *fdp)
{
    const kb_args_t *a = call->args;
    char hint[POSIX_RECORD_MAX], ps[KB_GFID_STRLEN];
    int flags = (int)(a->flags & POSIX_OPEN_FLAGS & ~O_TRUNC) | O_CREAT | O_EXCL;
    int fd = posix_openat(o->dfd, o->name, flags, 0600);
    if (fd < 0)
        return fd;
    int rc = 0;
    if (fsetxattr(fd, KB_XATTR_GFID, a->newgfid.b, 16, XATTR_CREATE) || fchown(fd, n->uid, n->gid) ||
        fchmod(fd, n->mode))
        rc = -errno;
    if (!rc)
        rc = posix_handle_link(p, &a->newgfid, o->dfd, o->name);
    if (!rc) {
        int len = snprintf(hint, sizeof(hint), "%s/%s", kb_gfid_str(&a->gfid, ps), o->name);
        fsetxattr(fd, POSIX_XATTR_PARENT, hint, (size_t)len, 0);
        if (fstat(fd, &o->st))
            rc = -errno;
    }
    if (rc) {
        close(fd);
        unlinkat(o->dfd, o->name, 0);
        posix_handle_unlink(p, &a->newgfid, 0);
        return rc;
    }
    *fdp = fd;
    return 0;
}

void posix_op_create(kb_call_t *call)
{
    posix_priv_t *p = posix_priv(call);
    const kb_args_t *a = call->args;
    posix_obj_t o;
    struct newobj n;
    int fd = -1;
    int rc = create_prep(p, call, &o, &n, false);
    if (!rc)
        rc = create_file(p, call, &o, &n, &fd);
    if (rc) {
        create_reply(call, &o, rc, &a->newgfid);
        return;
    }
    posix_fd_t *f = posix_fd_add(p, fd, &a->newgfid, a->flags & POSIX_OPEN_FLAGS, false,
                                 call->cred.client_id);
    if (!f) {                 /* the file stays; the caller sees the error and may retry */
        close(fd);
        create_reply(call, &o, -ENOMEM, &a->newgfid);
        return;
    }
    kb_reply_t r = { .status = 0, .fd = f->num };
    posix_iatt(&r.attr, &o.st, &a->newgfid);
    entry_unwind(call, &r, &o, &a->gfid);
}

/* ---------------- unlink / rmdir ---------------- */

void posix_op_unlink(kb_call_t *call)
{
    posix_priv_t *p = posix_priv(call);
    const kb_args_t *a = call->args;
    posix_obj_t o;
    int rc = posix_resolve_entry(p, &a->gfid, a->name, &o);
    if (!rc && S_ISDIR(o.st.st_mode))
        rc = -EISDIR;
    /* nlink counts the handle: 2 means this is the last user link. Open
     * here, the object stays reachable by gfid (an orphan); otherwise it is
     * gone for new lookups, and open fds elsewhere keep only the inode. */
    bool last = !rc && !kb_gfid_is_null(&o.gfid) && o.st.st_nlink <= 2;
    int kept = last && S_ISREG(o.st.st_mode) && o.st.st_nlink == 2 ? posix_orphan_mark(p, &o.gfid) : 0;
    if (!rc && unlinkat(o.dfd, o.name, 0)) {
        rc = -errno;
        if (kept > 0)
            posix_orphan_unmark(p, &o.gfid);
    }
    if (!rc && last && kept <= 0 && posix_handle_unlink(p, &o.gfid, o.st.st_ino))
        posix_cl_forget(p, &o.gfid);
    kb_reply_t r = { .status = rc };
    entry_unwind(call, &r, &o, &a->gfid);
}

void posix_op_rmdir(kb_call_t *call)
{
    posix_priv_t *p = posix_priv(call);
    const kb_args_t *a = call->args;
    posix_obj_t o;
    int rc = posix_resolve_entry(p, &a->gfid, a->name, &o);
    if (!rc && !S_ISDIR(o.st.st_mode))
        rc = -ENOTDIR;
    if (!rc && unlinkat(o.dfd, o.name, AT_REMOVEDIR))
        rc = -errno;
    if (!rc && !kb_gfid_is_null(&o.gfid)) {
        posix_handle_unlink(p, &o.gfid, 0);
        posix_dir_forget(p, &o.gfid);
        posix_cl_forget(p, &o.gfid);
    }
    kb_reply_t r = { .status = rc };
    entry_unwind(call, &r, &o, &a->gfid);
}

/* ---------------- rename / link ---------------- */

static void set_parent_hint(posix_obj_t *o, const kb_gfid_t *parent)
{
    char hint[POSIX_RECORD_MAX], ps[KB_GFID_STRLEN];
    int len = snprintf(hint, sizeof(hint), "%s/%s", kb_gfid_str(parent, ps), o->name);
    posix_obj_setxattr(o, POSIX_XATTR_PARENT, hint, (size_t)len, 0);
}

/* The object now named (PARENT, O->name) moved there: fix its handle record. */
static void moved(posix_priv_t *p, posix_obj_t *o, const kb_gfid_t *g, bool is_dir, const kb_gfid_t *parent)
{
    if (kb_gfid_is_null(g))
        return;
    if (!is_dir) {
        set_parent_hint(o, parent);
        return;
    }
    int rc = posix_dirrec_write(p, g, parent, o->name);
    if (rc)
        kb_err(p->xl->name, "rename: rewriting the record of a directory failed: %s", strerror(-rc));
}

/* A rename replaced the object DST described (stat before the rename);
 * ORPHANED: it was open here and its marker is on disk: its handle stays. */
static void replaced(posix_priv_t *p, const posix_obj_t *dst, bool orphaned)
{
    if (kb_gfid_is_null(&dst->gfid) || orphaned)
        return;
    if (S_ISDIR(dst->st.st_mode)) {
        posix_handle_unlink(p, &dst->gfid, 0);
        posix_dir_forget(p, &dst->gfid);
    } else if (dst->st.st_nlink > 2 || !posix_handle_unlink(p, &dst->gfid, dst->st.st_ino)) {
        return;               /* other links (or no handle) remain: the object lives on */
    }
    posix_cl_forget(p, &dst->gfid);
}

static int rename_do(posix_priv_t *p, const kb_args_t *a, posix_obj_t *src, posix_obj_t *dst, bool dst_exists)
{
    unsigned flags = a->flags;
    if (flags & ~(unsigned)(RENAME_NOREPLACE | RENAME_EXCHANGE))
        return -EINVAL;
    if ((flags & RENAME_EXCHANGE) && !dst_exists)
        return -ENOENT;
    bool same = dst_exists && src->st.st_ino == dst->st.st_ino && src->st.st_dev == dst->st.st_dev;
    if (same && !(flags & RENAME_EXCHANGE))
        return (flags & RENAME_NOREPLACE) ? -EEXIST : 0;   /* POSIX: links of one file, no-op */
    /* Renamed over the last name of a file open here: an orphan. */
    bool over = dst_exists && !(flags & (RENAME_EXCHANGE | RENAME_NOREPLACE)) && S_ISREG(dst->st.st_mode) &&
                dst->st.st_nlink == 2 && !kb_gfid_is_null(&dst->gfid);
    int kept = over ? posix_orphan_mark(p, &dst->gfid) : 0;
    if (syscall(SYS_renameat2, src->dfd, src->name, dst->dfd, dst->name, flags)) {
        int rc = -errno;
        if (kept > 0)
            posix_orphan_unmark(p, &dst->gfid);
        return rc;
    }
    bool src_dir = S_ISDIR(src->st.st_mode);
    if (flags & RENAME_EXCHANGE) {
        bool dst_dir = S_ISDIR(dst->st.st_mode);
        moved(p, dst, &src->gfid, src_dir, &a->gfid2);   /* src now lives at dst's name */
        moved(p, src, &dst->gfid, dst_dir, &a->gfid);
        return 0;
    }
    if (dst_exists)
        replaced(p, dst, kept > 0);
    moved(p, dst, &src->gfid, src_dir, &a->gfid2);
    return 0;
}

void posix_op_rename(kb_call_t *call)
{
    posix_priv_t *p = posix_priv(call);
    const kb_args_t *a = call->args;
    posix_obj_t src, dst;
    memset(&dst, 0, sizeof(dst));
    int rc = posix_resolve_entry(p, &a->gfid, a->name, &src);
    if (rc) {
        posix_obj_put(p, &src);
        posix_unwind_status(call, rc);
        return;
    }
    int drc = posix_resolve_entry(p, &a->gfid2, a->name2, &dst);
    if (drc && drc != -ENOENT) {
        rc = drc;
    } else {
        rc = rename_do(p, a, &src, &dst, drc == 0);
        /* reply: the renamed object at its new name */
        if (!rc)
            rc = posix_obj_stat(&dst);
    }
    posix_unwind_attr(call, rc, &dst.st, &src.gfid);
    posix_obj_put(p, &src);
    posix_obj_put(p, &dst);
}

void posix_op_link(kb_call_t *call)
{
    posix_priv_t *p = posix_priv(call);
    const kb_args_t *a = call->args;
    posix_obj_t o, d;
    memset(&d, 0, sizeof(d));
    int rc = posix_resolve(p, &a->gfid, &o);
    if (!rc && S_ISDIR(o.st.st_mode))
        rc = -EPERM;
    /* An open-unlinked file has no name to come back to (ext4 refuses to
     * link an unlinked inode too): no heal resurrects it. */
    if (!rc && posix_orphan_is(p, &a->gfid))
        rc = -ENOENT;
    if (!rc) {
        rc = posix_resolve_entry(p, &a->gfid2, a->name2, &d);
        rc = rc == 0 ? -EEXIST : rc == -ENOENT ? 0 : rc;
    }
    /* o names the handle: linking it links the object itself (a symlink
     * object stays a symlink: linkat does not follow). */
    if (!rc && linkat(o.dfd, o.name, d.dfd, d.name, 0))
        rc = -errno;
    if (!rc) {
        set_parent_hint(&d, &a->gfid2);
        rc = posix_obj_stat(&d);
    }
    kb_reply_t r = { .status = rc };
    if (!rc)
        posix_iatt(&r.attr, &d.st, &a->gfid);
    posix_obj_put(p, &o);
    entry_unwind(call, &r, &d, &a->gfid2);
}

/* ---------------- opendir / readdir ---------------- */

void posix_op_opendir(kb_call_t *call)
{
    posix_priv_t *p = posix_priv(call);
    const kb_args_t *a = call->args;
    posix_obj_t o;
    int rc = posix_resolve(p, &a->gfid, &o);
    if (!rc && !S_ISDIR(o.st.st_mode))
        rc = -ENOTDIR;
    int fd = rc ? rc : posix_obj_open(&o, O_RDONLY | O_DIRECTORY);
    posix_obj_put(p, &o);
    if (fd < 0) {
        posix_unwind_status(call, fd);
        return;
    }
    posix_fd_t *f = posix_fd_add(p, fd, &a->gfid, O_RDONLY, true, call->cred.client_id);
    if (!f) {
        close(fd);
        posix_unwind_status(call, -ENOMEM);
        return;
    }
    kb_reply_t r = { .status = 0, .fd = f->num };
    kb_unwind(call, &r);
}

struct linux_dirent64 {
    uint64_t d_ino;
    int64_t d_off;
    unsigned short d_reclen;
    unsigned char d_type;
    char d_name[];
};

struct rd_state {
    kb_dirent_t *ents;
    uint32_t n, cap;
    size_t used, budget;
    bool plus, at_root;
};

/* Wire cost of one entry (fop.c enc_dirents): off, type, gfid, name, flag, attr. */
static size_t rd_cost(const char *name, bool plus)
{
    return 8 + 4 + 16 + 4 + strlen(name) + 1 + (plus ? 112 : 0);
}

/* Add one entry; returns 1 when the batch is full (entry not taken). */
static int rd_add(struct rd_state *s, int dfd, const struct linux_dirent64 *de)
{
    size_t cost = rd_cost(de->d_name, s->plus);
    if (s->n > 0 && (s->used + cost > s->budget || s->n >= KB_DIRENTS_MAX))
        return 1;
    if (s->n == s->cap) {
        uint32_t cap = s->cap ? s->cap * 2 : 64;
        kb_dirent_t *e = realloc(s->ents, cap * sizeof(*e));
        if (!e)
            return -ENOMEM;
        s->ents = e;
        s->cap = cap;
    }
    kb_dirent_t *e = &s->ents[s->n];
    memset(e, 0, sizeof(*e));
    if (!(e->name = strdup(de->d_name)))
        return -ENOMEM;
    e->off = (uint64_t)de->d_off;
    e->type = de->d_type;
    if (s->plus) {
        posix_obj_t o = { .dfd = dfd };
        strcpy(o.name, de->d_name);
        if (posix_obj_stat(&o) == 0 && posix_obj_read_gfid(&o) == 0) {
            e->gfid = o.gfid;
            posix_iatt(&e->attr, &o.st, &o.gfid);
            e->has_attr = 1;
            e->type = IFTODT(o.st.st_mode);
        }
    }
    s->n++;
    s->used += cost;
    return 0;
}

static bool rd_skip(const struct rd_state *s, const char *name)
{
    if (name[0] == '.' && (!name[1] || (name[1] == '.' && !name[2])))
        return true;
    return s->at_root && strcmp(name, KB_INTERNAL_DIR) == 0;
}

/* Fill S from the directory position OFF. The offsets are the
 * filesystem's own telldir cookies (d_off): stable across calls and
 * across entries added or removed elsewhere in the directory. */
static int rd_fill(struct rd_state *s, int dfd, uint64_t off)
{
    if (lseek(dfd, (off_t)off, SEEK_SET) < 0)
        return -errno;
    char buf[32768] __attribute__((aligned(8)));
    for (;;) {
        long n = syscall(SYS_getdents64, dfd, buf, sizeof(buf));
        if (n < 0)
            return -errno;
        if (n == 0)
            return 0;
        for (long pos = 0; pos < n;) {
            const struct linux_dirent64 *de = (const void *)(buf + pos);
            pos += de->d_reclen;
            if (rd_skip(s, de->d_name))
                continue;
            int rc = rd_add(s, dfd, de);
            if (rc)
                return rc > 0 ? 0 : rc;
        }
        if (s->n > 0 && s->used * 2 > s->budget)
            return 0;
    }
}

void posix_op_readdir(kb_call_t *call)
{
    posix_priv_t *p = posix_priv(call);
    const kb_args_t *a = call->args;
    posix_fd_t *f = posix_fd_get(p, a->fd, &a->gfid);
    if (!f || !f->is_dir) {
        posix_fd_put(p, f);
        posix_unwind_status(call, -EBADF);
        return;
    }
    struct rd_state s = {
        .budget = a->size ? KB_MIN(a->size, (uint64_t)1 << 20) : 64 * 1024,
        .plus = a->flags & 1,
        .at_root = kb_gfid_is_root(&f->gfid),
    };
    int rc = rd_fill(&s, f->fd, a->off);
    posix_fd_put(p, f);
    if (rc) {
        kb_dirents_free(s.ents, s.n);
        posix_unwind_status(call, rc);
        return;
    }
    kb_reply_t r = { .status = (int32_t)s.n, .dirents = s.ents, .ndirents = s.n };
    kb_unwind(call, &r);
    kb_dirents_free(s.ents, s.n);
}
