/*
 * attr.c — attributes: getattr, setattr and the volume's statfs.
 *
 * Promises, besides the contract in fuse/ops.c:
 *  - A size change is a TRUNCATE fop (replicate marks it as data), the rest
 *    of the setattr a SETATTR after it; the reply carries the attributes
 *    after both.
 *  - Every attribute reply notes the mode in the inode table, so a later
 *    write knows whether the kernel's cached setuid/setgid goes stale.
 *  - A truncate asks the bricks to clear setuid/setgid when the kernel says
 *    so (KILLPRIV_V2, fuse/rawio.c), as a write does (fuse/file.c).
 */
#include "fuse/ops.h"

#include <sys/statvfs.h>

/* The one reply of R: IA, which the kernel may keep for TIMEOUT seconds. */
static void reply_attr(kbf_req_t *r, const kb_iatt_t *ia, double timeout)
{
    struct stat st;
    kbf_iatt_stat(ia, &r->a.gfid, &st);
    if (r->ino)
        kbf_itable_note_mode(r->fs->it, r->ino, st.st_mode);
    fuse_reply_attr(r->req, &st, timeout);
    kbf_req_free(r);
}

static void done_attr(kbf_req_t *r, const kb_reply_t *rep)
{
    if (rep->status < 0) {
        kbf_reply_err(r, rep->status);
        return;
    }
    reply_attr(r, &rep->attr, r->fs->attr_timeout);
}

static void use_fd(kbf_req_t *r, struct fuse_file_info *fi)
{
    if (fi) {
        r->a.fd = fi->fh;
        r->a.fd_valid = 1;
    }
}

/* Attributes a reply brought moments ago (fuse/recent.h): the kernel may
 * keep them for what is left of attr_timeout since they were read. */
static bool getattr_recent(kbf_req_t *r)
{
    kbf_t *fs = r->fs;
    kb_iatt_t ia;
    uint64_t age;
    uint64_t max = (uint64_t)(fs->attr_timeout * 1e9);
    if (!kbf_recent_take(fs->recent, r->ino, &r->a.gfid, kb_now_ns(), max, &ia, &age))
        return false;
    reply_attr(r, &ia, fs->attr_timeout - (double)age / 1e9);
    return true;
}

void kbf_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    kbf_req_t *r = kbf_req_inode(req, ino, false);
    if (!r || getattr_recent(r))
        return;
    use_fd(r, fi);
    kbf_req_submit(r, KB_FOP_STAT, done_attr);
}

/* FUSE_SET_ATTR_* (all but size) -> KB_SET_*. */
static uint32_t setattr_mask(int to_set)
{
    uint32_t m = 0;
    if (to_set & FUSE_SET_ATTR_MODE)
        m |= KB_SET_MODE;
    if (to_set & FUSE_SET_ATTR_UID)
        m |= KB_SET_UID;
    if (to_set & FUSE_SET_ATTR_GID)
        m |= KB_SET_GID;
    if (to_set & FUSE_SET_ATTR_ATIME_NOW)
        m |= KB_SET_ATIME_NOW;
    else if (to_set & FUSE_SET_ATTR_ATIME)
        m |= KB_SET_ATIME;
    if (to_set & FUSE_SET_ATTR_MTIME_NOW)
        m |= KB_SET_MTIME_NOW;
    else if (to_set & FUSE_SET_ATTR_MTIME)
        m |= KB_SET_MTIME;
    if (to_set & FUSE_SET_ATTR_CTIME)
        m |= KB_SET_CTIME;
    return m;
}

/* The non-size part of a setattr (or a plain stat when nothing is left). */
static void setattr_meta(kbf_req_t *r)
{
    r->a.flags = setattr_mask(r->to_set);
    kbf_req_submit(r, r->a.flags ? KB_FOP_SETATTR : KB_FOP_STAT, done_attr);
}

static void done_truncate(kbf_req_t *r, const kb_reply_t *rep)
{
    if (rep->status < 0 || !setattr_mask(r->to_set)) {
        done_attr(r, rep);
        return;
    }
    setattr_meta(r);             /* size first, then mode/owner/times */
}

void kbf_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
                 struct fuse_file_info *fi)
{
    kbf_req_t *r = kbf_req_inode(req, ino, true);
    if (!r)
        return;
    use_fd(r, fi);
    r->to_set = to_set;
    kb_iatt_t *ia = &r->a.attr;
    ia->gfid = r->a.gfid;
    ia->mode = attr->st_mode & 07777;
    ia->uid = attr->st_uid;
    ia->gid = attr->st_gid;
    ia->atime_sec = attr->st_atim.tv_sec;
    ia->atime_nsec = (uint32_t)attr->st_atim.tv_nsec;
    ia->mtime_sec = attr->st_mtim.tv_sec;
    ia->mtime_nsec = (uint32_t)attr->st_mtim.tv_nsec;
    ia->ctime_sec = attr->st_ctim.tv_sec;
    ia->ctime_nsec = (uint32_t)attr->st_ctim.tv_nsec;
    if (to_set & FUSE_SET_ATTR_SIZE) {
        /* A TRUNCATE fop, not a SETATTR bit: replicate marks it as data. */
        r->a.off = (uint64_t)attr->st_size;
        r->a.flags = kbf_rq_kill_suidgid ? KB_WF_KILL_SUIDGID : 0;
        /* As for a write (kbf_write_buf); without default_permissions
         * kbf_req_inode has read the groups already. */
        if (kbf_rq_kill_suidgid && r->fs->default_permissions && kbf_itable_sxid(r->fs->it, ino))
            kbf_cred_from_req(&r->cred, req, true);
        kbf_req_submit(r, KB_FOP_TRUNCATE, done_truncate);
        return;
    }
    setattr_meta(r);
}

/* ---------------- statfs ---------------- */

static void done_statfs(kbf_req_t *r, const kb_reply_t *rep)
{
    if (rep->status < 0) {
        kbf_reply_err(r, rep->status);
        return;
    }
    const kb_statfs_t *s = &rep->statfs;
    struct statvfs v = {
        .f_bsize = s->bsize, .f_frsize = s->frsize ? s->frsize : s->bsize,
        .f_blocks = s->blocks, .f_bfree = s->bfree, .f_bavail = s->bavail,
        .f_files = s->files, .f_ffree = s->ffree, .f_favail = s->favail,
        .f_namemax = s->namemax ? s->namemax : KB_NAME_MAX,
    };
    fuse_reply_statfs(r->req, &v);
    kbf_req_free(r);
}

void kbf_statfs(fuse_req_t req, fuse_ino_t ino)
{
    kbf_req_t *r = kbf_req_new(req, ino ? ino : KBF_ROOT_ID, false);
    if (r)
        kbf_req_submit(r, KB_FOP_STATFS, done_statfs);
}
