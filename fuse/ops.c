/*
 * ops.c — the FUSE low-level bridge: request -> fop, result -> one reply.
 *
 * Contract (written once, kept by every op below):
 *  - Each request gets exactly one fuse_reply_* (fuse_reply_none for
 *    forget), either at once on the FUSE worker thread (bad argument, out
 *    of memory, answered locally) or later from the fop's completion
 *    callback on the libkembar loop thread. Handlers never wait for a fop,
 *    so a FUSE worker never blocks and the loop thread never blocks either.
 *  - Errors are negative errno inside; the sign flips only at fuse_reply_err.
 *  - A kbf_req_t owns its kb_args_t (strings, write payload) from the
 *    handler until the reply; req_free releases both.
 *  - Every reply that hands the kernel a node id (entry, create, readdirplus)
 *    takes its lookup reference just before replying and gives it back if the
 *    reply fails (the request was interrupted: the kernel never saw it).
 *    Likewise an fd whose open reply failed is released.
 *  - No lock is held across a fuse_reply_* or a kbc_submit.
 */
#include "fuse/kbfuse.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>
#include <time.h>

#include "lib/log.h"

typedef struct kbf_req kbf_req_t;
typedef void (*kbf_done_fn)(kbf_req_t *r, const kb_reply_t *rep);

struct kbf_req {
    kbf_t *fs;
    fuse_req_t req;              /* NULL: internal call, nobody to reply to */
    kb_args_t a;                 /* owned: name, name2, data freed by req_free */
    kb_cred_t cred;
    kbf_done_fn done;
    struct fuse_file_info fi;    /* open/create/opendir: what we reply with */
    int to_set;                  /* setattr: FUSE_SET_ATTR_* still to apply */
    size_t size;                 /* readdir buffer / xattr size asked */
    bool plus;                   /* readdirplus */
    bool release_after;          /* release: flock unlock first, then RELEASE */
    bool by_inode;               /* names its object by node id: ENOENT means stale */
    /* OPEN (with a STAT in parallel, see kbf_open): loop thread only. */
    fuse_ino_t ino;
    int pending;                 /* fops still to complete before the reply */
    int open_status;
    uint64_t open_fd;
    bool have_cver;
    kbf_cver_t cver;             /* content version the STAT saw */
    kbf_req_t *parent;           /* the STAT's: the OPEN request it serves */
    /* SETLKW / blocking flock only: the kernel may interrupt the wait. */
    bool intr_armed;
    pthread_mutex_t imu;
    bool kill_notify;            /* write: drop the kernel's mode once done (KILLPRIV_V2) */
    bool replied;                /* (imu) the one reply has been sent */
};

/* ---------------- request plumbing ---------------- */

static void inflight_add(kbf_t *fs, int d)
{
    pthread_mutex_lock(&fs->mu);
    fs->inflight += (unsigned)d;
    if (fs->inflight == 0)
        pthread_cond_broadcast(&fs->cv);
    pthread_mutex_unlock(&fs->mu);
}

bool kbf_drain(kbf_t *fs, unsigned timeout_ms)
{
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += timeout_ms / 1000;
    int rc = 0;
    pthread_mutex_lock(&fs->mu);
    while (fs->inflight && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&fs->cv, &fs->mu, &dl);
    bool ok = fs->inflight == 0;
    pthread_mutex_unlock(&fs->mu);
    return ok;
}

static void cred_from_req(kb_cred_t *c, fuse_req_t req, bool groups)
{
    const struct fuse_ctx *ctx = fuse_req_ctx(req);
    memset(c, 0, sizeof(*c));
    c->uid = ctx->uid;
    c->gid = ctx->gid;
    c->pid = (uint32_t)ctx->pid;
    if (groups) {                 /* reads /proc/PID/status: only when it matters */
        gid_t g[16];
        int n = fuse_req_getgroups(req, 16, g);
        for (int i = 0; i < n && i < 16; i++)
            c->groups[i] = g[i];
        c->ngroups = n > 0 ? (uint32_t)KB_MIN(n, 16) : 0;
    }
}

/* New request on inode INO (0: none). Replies ENOMEM itself on failure. */
static kbf_req_t *req_new(fuse_req_t req, fuse_ino_t ino, bool groups)
{
    kbf_t *fs = fuse_req_userdata(req);
    kbf_req_t *r = kb_zalloc(sizeof(*r));
    if (!r) {
        fuse_reply_err(req, ENOMEM);
        return NULL;
    }
    r->fs = fs;
    r->req = req;
    /* Supplementary groups matter only where the bricks judge permissions;
     * with default_permissions the kernel already did, from the mode bits. */
    cred_from_req(&r->cred, req, groups && !fs->default_permissions);
    if (ino)
        r->a.gfid = *kbf_itable_gfid(fs->it, ino);
    r->ino = ino;
    inflight_add(fs, 1);
    return r;
}

/* A request on the object INO itself (not on a name in it). */
static kbf_req_t *req_inode(fuse_req_t req, fuse_ino_t ino, bool groups)
{
    kbf_req_t *r = req_new(req, ino, groups);
    if (r)
        r->by_inode = true;
    return r;
}

/* An internal follow-up (release of an fd the kernel never got, unlock of a
 * lock nobody waits for): no FUSE request to answer. */
static kbf_req_t *req_internal(kbf_t *fs, const kb_gfid_t *gfid)
{
    kbf_req_t *r = kb_zalloc(sizeof(*r));
    if (!r)
        return NULL;
    r->fs = fs;
    r->a.gfid = *gfid;
    inflight_add(fs, 1);
    return r;
}

static void req_free(kbf_req_t *r)
{
    kbf_t *fs = r->fs;
    kb_args_clear(&r->a);
    if (r->intr_armed)
        pthread_mutex_destroy(&r->imu);
    free(r);
    inflight_add(fs, -1);
}

static void req_cbk(void *cookie, const kb_reply_t *rep)
{
    kbf_req_t *r = cookie;
    r->done(r, rep);
}

static void req_submit(kbf_req_t *r, kb_op_t op, kbf_done_fn done)
{
    r->done = done;
    kbc_submit(r->fs->kbc, op, &r->a, &r->cred, req_cbk, r);
}

/*
 * An op on a node id whose object is gone answers ESTALE, not ENOENT: the
 * kernel then drops its cached dentry and looks the name up again (another
 * client renamed over it or removed it); ENOENT would reach the application
 * although the name exists. Ops by name keep ENOENT ("no such name").
 */
static void reply_err(kbf_req_t *r, int status)
{
    if (r->by_inode && status == -ENOENT)
        status = -ESTALE;
    if (r->req)
        fuse_reply_err(r->req, status < 0 ? -status : 0);
    req_free(r);
}

/* Copy a string into the args (owned); false after replying ENOMEM. */
static bool arg_str(kbf_req_t *r, char **dst, const char *s)
{
    *dst = strdup(s);
    if (*dst)
        return true;
    reply_err(r, -ENOMEM);
    return false;
}

/* Names longer than a brick stores are refused here, as a local file
 * system would (the kernel lets FUSE names reach 1024 bytes). */
static bool name_fits(fuse_req_t req, const char *name)
{
    if (strlen(name) <= KB_NAME_MAX)
        return true;
    fuse_reply_err(req, ENAMETOOLONG);
    return false;
}

static void done_status(kbf_req_t *r, const kb_reply_t *rep)
{
    reply_err(r, rep->status < 0 ? rep->status : 0);
}

static void done_drop(kbf_req_t *r, const kb_reply_t *rep)
{
    req_free(r);
}

static void release_fd(kbf_t *fs, const kb_gfid_t *gfid, uint64_t fd, bool dir)
{
    kbf_req_t *r = req_internal(fs, gfid);
    if (!r)
        return;                  /* the brick drops it when we disconnect */
    r->a.fd = fd;
    req_submit(r, dir ? KB_FOP_RELEASEDIR : KB_FOP_RELEASE, done_drop);
}

/* ---------------- attributes and entries ---------------- */

static void iatt_stat(const kb_iatt_t *ia, const kb_gfid_t *fallback, struct stat *st)
{
    kb_iatt_t tmp = *ia;
    if (kb_gfid_is_null(&tmp.gfid) && fallback)
        tmp.gfid = *fallback;
    kb_iatt_to_stat(&tmp, st);
}

/* Fill E for IA and take its lookup reference. 0 or -errno. */
static int entry_fill(kbf_t *fs, const kb_iatt_t *ia, const kb_gfid_t *fallback,
                      struct fuse_entry_param *e)
{
    memset(e, 0, sizeof(*e));
    const kb_gfid_t *g = kb_gfid_is_null(&ia->gfid) ? fallback : &ia->gfid;
    if (!g || kb_gfid_is_null(g))
        return -EIO;
    iatt_stat(ia, g, &e->attr);
    e->attr_timeout = fs->attr_timeout;
    e->entry_timeout = fs->entry_timeout;
    e->ino = kbf_itable_ref(fs->it, g);
    if (e->ino)
        kbf_itable_note_mode(fs->it, e->ino, ia->mode);
    return e->ino ? 0 : -ENOMEM;
}

static void done_entry(kbf_req_t *r, const kb_reply_t *rep)
{
    kbf_t *fs = r->fs;
    struct fuse_entry_param e;
    if (rep->status == -ENOENT && fs->negative_timeout > 0) {
        memset(&e, 0, sizeof(e));            /* ino 0: a cacheable "no such name" */
        e.entry_timeout = fs->negative_timeout;
        fuse_reply_entry(r->req, &e);
        req_free(r);
        return;
    }
    if (rep->status < 0) {
        reply_err(r, rep->status);
        return;
    }
    int rc = entry_fill(fs, &rep->attr, &r->a.newgfid, &e);
    if (rc < 0) {
        reply_err(r, rc);
        return;
    }
    if (fuse_reply_entry(r->req, &e) != 0)
        kbf_itable_forget(fs->it, e.ino, 1);
    req_free(r);
}

static void done_attr(kbf_req_t *r, const kb_reply_t *rep)
{
    if (rep->status < 0) {
        reply_err(r, rep->status);
        return;
    }
    struct stat st;
    iatt_stat(&rep->attr, &r->a.gfid, &st);
    if (r->ino)
        kbf_itable_note_mode(r->fs->it, r->ino, st.st_mode);
    fuse_reply_attr(r->req, &st, r->fs->attr_timeout);
    req_free(r);
}

static void kbf_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    if (!name_fits(req, name))
        return;
    kbf_req_t *r = req_new(req, parent, false);
    if (r && arg_str(r, &r->a.name, name))
        req_submit(r, KB_FOP_LOOKUP, done_entry);
}

static void kbf_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
    kbf_t *fs = fuse_req_userdata(req);
    kbf_itable_forget(fs->it, ino, nlookup);
    fuse_reply_none(req);
}

static void kbf_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
    kbf_t *fs = fuse_req_userdata(req);
    for (size_t i = 0; i < count; i++)
        kbf_itable_forget(fs->it, forgets[i].ino, forgets[i].nlookup);
    fuse_reply_none(req);
}

static void use_fd(kbf_req_t *r, struct fuse_file_info *fi)
{
    if (fi) {
        r->a.fd = fi->fh;
        r->a.fd_valid = 1;
    }
}

static void kbf_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    kbf_req_t *r = req_inode(req, ino, false);
    if (!r)
        return;
    use_fd(r, fi);
    req_submit(r, KB_FOP_STAT, done_attr);
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
    req_submit(r, r->a.flags ? KB_FOP_SETATTR : KB_FOP_STAT, done_attr);
}

static void done_truncate(kbf_req_t *r, const kb_reply_t *rep)
{
    if (rep->status < 0 || !setattr_mask(r->to_set)) {
        done_attr(r, rep);
        return;
    }
    setattr_meta(r);             /* size first, then mode/owner/times */
}

static void kbf_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
                        struct fuse_file_info *fi)
{
    kbf_req_t *r = req_inode(req, ino, true);
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
         * req_inode has read the groups already. */
        if (kbf_rq_kill_suidgid && r->fs->default_permissions && kbf_itable_sxid(r->fs->it, ino))
            cred_from_req(&r->cred, req, true);
        req_submit(r, KB_FOP_TRUNCATE, done_truncate);
        return;
    }
    setattr_meta(r);
}

static void done_readlink(kbf_req_t *r, const kb_reply_t *rep)
{
    if (rep->status < 0 || !rep->data) {
        reply_err(r, rep->status < 0 ? rep->status : -EIO);
        return;
    }
    char *s = strndup(rep->data->data, rep->data->len);
    if (!s) {
        reply_err(r, -ENOMEM);
        return;
    }
    fuse_reply_readlink(r->req, s);
    free(s);
    req_free(r);
}

static void kbf_readlink(fuse_req_t req, fuse_ino_t ino)
{
    kbf_req_t *r = req_inode(req, ino, false);
    if (r)
        req_submit(r, KB_FOP_READLINK, done_readlink);
}

/* ---------------- names ---------------- */

/* An entry-creating op: NAME in PARENT, with a client-chosen gfid. */
static kbf_req_t *req_create_in(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    if (!name_fits(req, name))
        return NULL;
    kbf_req_t *r = req_new(req, parent, true);
    if (!r || !arg_str(r, &r->a.name, name))
        return NULL;
    kb_gfid_generate(&r->a.newgfid);
    return r;
}

static void kbf_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
    kbf_req_t *r = req_create_in(req, parent, name);
    if (!r)
        return;
    r->a.mode = mode;
    r->a.rdev = rdev;
    req_submit(r, KB_FOP_MKNOD, done_entry);
}

static void kbf_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
    kbf_req_t *r = req_create_in(req, parent, name);
    if (!r)
        return;
    r->a.mode = (mode & 07777) | S_IFDIR;
    req_submit(r, KB_FOP_MKDIR, done_entry);
}

static void kbf_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
    if (strlen(link) >= KB_PATH_MAX) {
        fuse_reply_err(req, ENAMETOOLONG);
        return;
    }
    kbf_req_t *r = req_create_in(req, parent, name);
    if (r && arg_str(r, &r->a.name2, link))
        req_submit(r, KB_FOP_SYMLINK, done_entry);
}

static void kbf_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    if (!name_fits(req, name))
        return;
    kbf_req_t *r = req_new(req, parent, true);
    if (r && arg_str(r, &r->a.name, name))
        req_submit(r, KB_FOP_UNLINK, done_status);
}

static void kbf_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    if (!name_fits(req, name))
        return;
    kbf_req_t *r = req_new(req, parent, true);
    if (r && arg_str(r, &r->a.name, name))
        req_submit(r, KB_FOP_RMDIR, done_status);
}

static void kbf_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
                       const char *newname, unsigned int flags)
{
    if (!name_fits(req, name) || !name_fits(req, newname))
        return;
    kbf_req_t *r = req_new(req, parent, true);
    if (!r || !arg_str(r, &r->a.name, name) || !arg_str(r, &r->a.name2, newname))
        return;
    r->a.gfid2 = *kbf_itable_gfid(r->fs->it, newparent);
    r->a.flags = flags;          /* RENAME_NOREPLACE / RENAME_EXCHANGE */
    req_submit(r, KB_FOP_RENAME, done_status);
}

static void kbf_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
    if (!name_fits(req, newname))
        return;
    kbf_req_t *r = req_inode(req, ino, true);
    if (!r || !arg_str(r, &r->a.name2, newname))
        return;
    r->a.gfid2 = *kbf_itable_gfid(r->fs->it, newparent);
    r->a.newgfid = r->a.gfid;    /* fallback for the entry: the same inode */
    req_submit(r, KB_FOP_LINK, done_entry);
}

/* ---------------- files ---------------- */

static void open_reply_flags(struct fuse_file_info *fi, bool keep_cache)
{
    /* O_DIRECT opens bypass the page cache end to end (qemu cache=none);
     * others go through it, kept only when the file is known unchanged
     * (see open_finish), so a second client's writes are seen at the next
     * open (close-to-open consistency). */
    fi->direct_io = (fi->flags & O_DIRECT) ? 1 : 0;
    fi->keep_cache = keep_cache && !fi->direct_io;
}

/*
 * keep_cache: an OPEN is answered once it and a STAT of the same inode,
 * wound together (no extra round trip), have both completed. The kernel may
 * keep the file's cached pages iff the STAT's content version (size, mtime,
 * ctime) equals the one the previous open's STAT recorded: every cached page
 * was read after that STAT (the open that recorded it either dropped the
 * cache or was itself verified), and nothing has changed the data since.
 * Our own writes move ctime too, so an open after them drops the cache:
 * conservative, never stale. A failed STAT forgets the record and drops.
 * When the version changed, the kernel's attributes are dropped as well.
 * (Bricks keep nanosecond ctimes; the kernel's multigrain timestamps give a
 * change right after a STAT a ctime of its own.)
 */
static void open_finish(kbf_req_t *r)
{
    if (--r->pending > 0)
        return;
    if (r->open_status < 0) {
        reply_err(r, r->open_status);
        return;
    }
    kbf_t *fs = r->fs;
    enum kbf_cver_cmp c = kbf_itable_cver_swap(fs->it, r->ino, r->have_cver ? &r->cver : NULL);
    /* Changed under us: the kernel's cached size may be as old as its
     * pages; without this a read could stop at the old EOF for up to
     * attr_timeout (the first read then fetches fresh attributes). */
    if (c == KBF_CVER_CHANGED && fs->se)
        fuse_lowlevel_notify_inval_inode(fs->se, r->ino, -1, 0);
    bool keep = c == KBF_CVER_SAME;
    r->fi.fh = r->open_fd;
    open_reply_flags(&r->fi, keep);
    if (fuse_reply_open(r->req, &r->fi) != 0)
        release_fd(fs, &r->a.gfid, r->open_fd, false);
    req_free(r);
}

static void done_open(kbf_req_t *r, const kb_reply_t *rep)
{
    r->open_status = rep->status < 0 ? rep->status : 0;
    r->open_fd = rep->fd;
    open_finish(r);
}

static void done_open_stat(kbf_req_t *s, const kb_reply_t *rep)
{
    kbf_req_t *r = s->parent;
    if (rep->status == 0) {
        const kb_iatt_t *a = &rep->attr;
        r->cver = (kbf_cver_t){ .size = a->size, .mtime_sec = a->mtime_sec,
                                .mtime_nsec = a->mtime_nsec, .ctime_sec = a->ctime_sec,
                                .ctime_nsec = a->ctime_nsec };
        r->have_cver = true;
    }
    req_free(s);
    open_finish(r);
}

static void kbf_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    kbf_req_t *r = req_inode(req, ino, true);
    if (!r)
        return;
    r->fi = *fi;
    r->ino = ino;
    /* O_TRUNC never reaches us (atomic_o_trunc is off): truncation comes as
     * a setattr, i.e. a TRUNCATE fop. Strip it anyway, and the create bits. */
    r->a.flags = (uint32_t)(fi->flags & ~(O_CREAT | O_EXCL | O_NOCTTY | O_TRUNC));
    /* Both counted before either is wound: a completion may come first. */
    kbf_req_t *s = (fi->flags & O_DIRECT) ? NULL : req_internal(r->fs, &r->a.gfid);
    r->pending = s ? 2 : 1;
    if (s) {
        s->parent = r;
        s->cred = r->cred;
        req_submit(s, KB_FOP_STAT, done_open_stat);
    }
    req_submit(r, KB_FOP_OPEN, done_open);
}

static void done_create(kbf_req_t *r, const kb_reply_t *rep)
{
    kbf_t *fs = r->fs;
    if (rep->status < 0) {
        reply_err(r, rep->status);
        return;
    }
    struct fuse_entry_param e;
    int rc = entry_fill(fs, &rep->attr, &r->a.newgfid, &e);
    if (rc < 0) {
        release_fd(fs, &r->a.newgfid, rep->fd, false);
        reply_err(r, rc);
        return;
    }
    r->fi.fh = rep->fd;
    open_reply_flags(&r->fi, false);
    if (fuse_reply_create(r->req, &e, &r->fi) != 0) {
        kb_gfid_t g = *kbf_itable_gfid(fs->it, e.ino);
        kbf_itable_forget(fs->it, e.ino, 1);
        release_fd(fs, &g, rep->fd, false);
    }
    req_free(r);
}

static void kbf_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                       struct fuse_file_info *fi)
{
    kbf_req_t *r = req_create_in(req, parent, name);
    if (!r)
        return;
    r->fi = *fi;
    r->a.mode = (mode & 07777) | S_IFREG;
    r->a.flags = (uint32_t)(fi->flags | O_CREAT);
    req_submit(r, KB_FOP_CREATE, done_create);
}

static void done_read(kbf_req_t *r, const kb_reply_t *rep)
{
    if (rep->status < 0) {
        reply_err(r, rep->status);
        return;
    }
    size_t n = KB_MIN((size_t)rep->status, rep->data ? rep->data->len : 0);
    n = KB_MIN(n, r->a.size);
    fuse_reply_buf(r->req, n ? rep->data->data : NULL, n);
    req_free(r);
}

static void kbf_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                     struct fuse_file_info *fi)
{
    kbf_req_t *r = req_inode(req, ino, false);
    if (!r)
        return;
    r->a.fd = fi->fh;
    r->a.off = (uint64_t)off;
    r->a.size = KB_MIN(size, (size_t)KB_DATA_MAX);
    r->a.flags = (uint32_t)(fi->flags & O_DIRECT);
    req_submit(r, KB_FOP_READ, done_read);
}

static void done_write(kbf_req_t *r, const kb_reply_t *rep)
{
    if (rep->status < 0) {
        reply_err(r, rep->status);
        return;
    }
    /* The bricks cleared setuid/setgid (or will have, before any call that
     * follows: write-behind orders them); the kernel's cached mode is stale. */
    if (r->kill_notify && r->fs->se)
        fuse_lowlevel_notify_inval_inode(r->fs->se, r->ino, -1, 0);
    fuse_reply_write(r->req, (size_t)rep->status);
    req_free(r);
}

static void rx_unref(void *opaque, void *data)
{
    (void)data;
    kb_buf_unref(opaque);
}

/*
 * No copy at all when the loop-thread reader received the request into a
 * kb_buf of its own (fs->rx_cur, fuse/main.c): the payload is wrapped where
 * it lies, holding a reference on that receive buffer, which the reader then
 * leaves to us. Only for large writes: a small one is copied, cheaply, and
 * leaves the receive buffer to the next request (a 4 KiB write at queue
 * depth 16 would otherwise hold 16 receive buffers). NULL: copy it (small,
 * worker threads, splice, another libfuse).
 */
#define KBF_INPLACE_MIN (32u << 10)

static kb_buf_t *payload_in_place(kbf_t *fs, const struct fuse_bufvec *in, size_t len)
{
    kb_buf_t *rx = fs->rx_cur;
    if (!rx || len < KBF_INPLACE_MIN || in->count != 1 || in->idx != 0 || in->off != 0 ||
        (in->buf[0].flags & FUSE_BUF_IS_FD) || in->buf[0].size != len)
        return NULL;
    char *m = in->buf[0].mem;
    if (m < rx->data || len > rx->cap || m > rx->data + (rx->cap - len))
        return NULL;
    kb_buf_t *b = kb_buf_wrap(m, len, rx_unref, kb_buf_ref(rx));
    if (!b)
        kb_buf_unref(rx);
    return b;
}

static void kbf_write_buf(fuse_req_t req, fuse_ino_t ino, struct fuse_bufvec *in, off_t off,
                          struct fuse_file_info *fi)
{
    size_t len = fuse_buf_size(in);
    if (len == 0) {
        fuse_reply_write(req, 0);
        return;
    }
    if (len > KB_DATA_MAX) {
        fuse_reply_err(req, EINVAL);
        return;
    }
    kbf_req_t *r = req_inode(req, ino, false);
    if (!r)
        return;
    kb_buf_t *b = payload_in_place(r->fs, in, len);
    if (!b) {
        /* The one copy: libfuse reuses its request buffer once we return. */
        b = kb_buf_new(len);
        if (!b) {
            reply_err(r, -ENOMEM);
            return;
        }
        struct fuse_bufvec dst = FUSE_BUFVEC_INIT(len);
        dst.buf[0].mem = b->data;
        ssize_t n = fuse_buf_copy(&dst, in, 0);
        if (n < 0) {
            kb_buf_unref(b);
            reply_err(r, (int)n);
            return;
        }
        b->len = (size_t)n;
    }
    r->a.data = b;               /* owned by the request: kb_args_clear unrefs */
    r->a.fd = fi->fh;
    r->a.off = (uint64_t)off;
    r->a.flags = (uint32_t)(fi->flags & O_DIRECT) | (kbf_rq_kill_suidgid ? KB_WF_KILL_SUIDGID : 0);
    r->kill_notify = kbf_rq_kill_suidgid && kbf_itable_sxid(r->fs->it, ino);
    if (r->kill_notify)          /* the bricks' setgid rule asks whether the writer is in the group */
        cred_from_req(&r->cred, req, true);
    req_submit(r, KB_FOP_WRITE, done_write);
}

static void kbf_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    kbf_req_t *r = req_inode(req, ino, false);
    if (!r)
        return;
    /* close() of any fd drops the POSIX locks of its owner (fcntl rules). */
    r->a.fd = fi->fh;
    r->a.lock = (kb_lock_t){ .type = KB_LK_UNLCK, .owner = fi->lock_owner, .pid = r->cred.pid };
    r->cred.lk_owner = fi->lock_owner;
    req_submit(r, KB_FOP_FLUSH, done_status);
}

static void done_release(kbf_req_t *r, const kb_reply_t *rep)
{
    if (r->release_after) {      /* flock locks dropped; now the fd itself */
        r->release_after = false;
        req_submit(r, KB_FOP_RELEASE, done_release);
        return;
    }
    reply_err(r, 0);             /* nobody waits on a release's result */
}

static void kbf_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    kbf_req_t *r = req_inode(req, ino, false);
    if (!r)
        return;
    r->a.fd = fi->fh;
    if (fi->flock_release) {
        r->a.lock = (kb_lock_t){ .type = KB_LK_UNLCK, .owner = fi->lock_owner, .flock = 1 };
        r->a.flags = KB_LK_SETLK;
        r->cred.lk_owner = fi->lock_owner;
        r->release_after = true;
        req_submit(r, KB_FOP_LK, done_release);
        return;
    }
    req_submit(r, KB_FOP_RELEASE, done_release);
}

static void kbf_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
    kbf_req_t *r = req_inode(req, ino, false);
    if (!r)
        return;
    r->a.fd = fi->fh;
    r->a.flags = datasync ? 1 : 0;
    req_submit(r, KB_FOP_FSYNC, done_status);
}

static void kbf_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off, off_t len,
                          struct fuse_file_info *fi)
{
    kbf_req_t *r = req_inode(req, ino, false);
    if (!r)
        return;
    r->a.fd = fi->fh;
    r->a.off = (uint64_t)off;
    r->a.size = (uint64_t)len;
    r->a.flags = (uint32_t)mode; /* every mode passes through: the brick decides */
    req_submit(r, KB_FOP_FALLOCATE, done_status);
}

static void done_lseek(kbf_req_t *r, const kb_reply_t *rep)
{
    if (rep->status < 0) {
        reply_err(r, rep->status);
        return;
    }
    fuse_reply_lseek(r->req, (off_t)rep->off);
    req_free(r);
}

static void kbf_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence,
                      struct fuse_file_info *fi)
{
    kbf_req_t *r = req_inode(req, ino, false);
    if (!r)
        return;
    r->a.fd = fi->fh;
    r->a.off = (uint64_t)off;
    r->a.flags = (uint32_t)whence;   /* SEEK_DATA / SEEK_HOLE (the kernel does SET/CUR/END) */
    req_submit(r, KB_FOP_LSEEK, done_lseek);
}

/* ---------------- directories ---------------- */

static void done_opendir(kbf_req_t *r, const kb_reply_t *rep)
{
    if (rep->status < 0) {
        reply_err(r, rep->status);
        return;
    }
    r->fi.fh = rep->fd;
    r->fi.cache_readdir = 0;     /* another client may change it any time */
    if (fuse_reply_open(r->req, &r->fi) != 0)
        release_fd(r->fs, &r->a.gfid, rep->fd, true);
    req_free(r);
}

static void kbf_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    kbf_req_t *r = req_inode(req, ino, true);
    if (!r)
        return;
    r->fi = *fi;
    req_submit(r, KB_FOP_OPENDIR, done_opendir);
}

static bool is_dot(const char *n)
{
    return n[0] == '.' && (n[1] == 0 || (n[1] == '.' && n[2] == 0));
}

static uint64_t dirent_ino(const kb_dirent_t *d)
{
    const kb_gfid_t *g = d->has_attr && !kb_gfid_is_null(&d->attr.gfid) ? &d->attr.gfid : &d->gfid;
    return kb_gfid_to_ino(g);
}

/* Add one readdirplus entry; *counted receives the node id whose lookup
 * reference it took (0: none). Returns the size it needs (> rem: not added). */
static size_t add_plus(kbf_req_t *r, char *p, size_t rem, const kb_dirent_t *d, uint64_t *counted)
{
    struct fuse_entry_param e;
    *counted = 0;
    if (!is_dot(d->name) && d->has_attr &&
        entry_fill(r->fs, &d->attr, &d->gfid, &e) == 0) {
        *counted = e.ino;
    } else {
        /* ino 0: the kernel just lists the name ("." and "..", or no attrs) */
        memset(&e, 0, sizeof(e));
        e.attr.st_ino = dirent_ino(d);
        e.attr.st_mode = DTTOIF(d->type);
    }
    size_t n = fuse_add_direntry_plus(r->req, p, rem, d->name, &e, (off_t)d->off);
    if (n > rem && *counted) {
        kbf_itable_forget(r->fs->it, *counted, 1);
        *counted = 0;
    }
    return n;
}

static void done_readdir(kbf_req_t *r, const kb_reply_t *rep)
{
    if (rep->status < 0) {
        reply_err(r, rep->status);
        return;
    }
    char *buf = calloc(1, r->size ? r->size : 1);
    uint64_t *ids = r->plus ? calloc(rep->ndirents + 1, sizeof(*ids)) : NULL;
    if (!buf || (r->plus && !ids)) {
        free(buf);
        free(ids);
        reply_err(r, -ENOMEM);
        return;
    }
    size_t used = 0;
    uint32_t i;
    for (i = 0; i < rep->ndirents; i++) {
        const kb_dirent_t *d = &rep->dirents[i];
        size_t rem = r->size - used, n;
        if (r->plus) {
            n = add_plus(r, buf + used, rem, d, &ids[i]);
        } else {
            struct stat st = { .st_ino = dirent_ino(d), .st_mode = DTTOIF(d->type) };
            n = fuse_add_direntry(r->req, buf + used, rem, d->name, &st, (off_t)d->off);
        }
        if (n > rem)
            break;               /* the rest comes with the next readdir at d->off */
        used += n;
    }
    if (fuse_reply_buf(r->req, buf, used) != 0 && ids)
        for (uint32_t k = 0; k < i; k++)       /* the kernel never saw these */
            kbf_itable_forget(r->fs->it, ids[k], 1);
    free(buf);
    free(ids);
    req_free(r);
}

static void readdir_common(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                           struct fuse_file_info *fi, bool plus)
{
    kbf_req_t *r = req_inode(req, ino, false);
    if (!r)
        return;
    r->a.fd = fi->fh;
    r->a.off = (uint64_t)off;
    r->a.size = size;
    r->a.flags = plus ? 1 : 0;
    r->size = size;
    r->plus = plus;
    req_submit(r, KB_FOP_READDIR, done_readdir);
}

static void kbf_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                        struct fuse_file_info *fi)
{
    readdir_common(req, ino, size, off, fi, false);
}

static void kbf_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                            struct fuse_file_info *fi)
{
    readdir_common(req, ino, size, off, fi, true);
}

static void kbf_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    kbf_req_t *r = req_inode(req, ino, false);
    if (!r)
        return;
    r->a.fd = fi->fh;
    req_submit(r, KB_FOP_RELEASEDIR, done_release);
}

static void kbf_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
    kbf_req_t *r = req_inode(req, ino, false);
    if (!r)
        return;
    r->a.fd = fi->fh;
    r->a.flags = datasync ? 1 : 0;
    req_submit(r, KB_FOP_FSYNCDIR, done_status);
}

/* ---------------- statfs ---------------- */

static void done_statfs(kbf_req_t *r, const kb_reply_t *rep)
{
    if (rep->status < 0) {
        reply_err(r, rep->status);
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
    req_free(r);
}

static void kbf_statfs(fuse_req_t req, fuse_ino_t ino)
{
    kbf_req_t *r = req_new(req, ino ? ino : KBF_ROOT_ID, false);
    if (r)
        req_submit(r, KB_FOP_STATFS, done_statfs);
}

/* ---------------- xattrs ---------------- */

/*
 * The kernel asks for security.capability before EVERY write to a file (to
 * clear file capabilities), which would cost a brick round trip per write.
 * Like GlusterFS without SELinux, security.* is answered here as absent
 * unless -o security_xattrs; POSIX ACL xattrs likewise unless -o acl (the
 * kernel checks permissions from the mode bits with default_permissions).
 * Returns 0 to pass NAME through, else the -errno to reply.
 */
static int xattr_local(const kbf_t *fs, const char *name, bool set)
{
    if (strlen(name) > KB_XATTR_NAME_MAX)
        return -ERANGE;
    if (!fs->security_xattrs && strncmp(name, "security.", 9) == 0)
        return set ? -EOPNOTSUPP : -ENODATA;
    if (!fs->acl && strncmp(name, "system.posix_acl_", 17) == 0)
        return -EOPNOTSUPP;
    return 0;
}

static void kbf_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
                         size_t size, int flags)
{
    kbf_t *fs = fuse_req_userdata(req);
    int rc = xattr_local(fs, name, true);
    if (rc < 0 || size > KB_XATTR_VALUE_MAX) {
        fuse_reply_err(req, rc < 0 ? -rc : E2BIG);
        return;
    }
    kbf_req_t *r = req_inode(req, ino, true);
    if (!r || !arg_str(r, &r->a.name, name))
        return;
    r->a.data = kb_buf_copy(value, size);
    if (!r->a.data) {
        reply_err(r, -ENOMEM);
        return;
    }
    r->a.flags = (uint32_t)flags;   /* XATTR_CREATE / XATTR_REPLACE */
    req_submit(r, KB_FOP_SETXATTR, done_status);
}

/* GETXATTR / LISTXATTR: size 0 asks for the length only. */
static void done_xattr(kbf_req_t *r, const kb_reply_t *rep)
{
    if (rep->status < 0) {
        reply_err(r, rep->status);
        return;
    }
    if (r->size == 0) {
        fuse_reply_xattr(r->req, (size_t)rep->status);
    } else {
        size_t n = rep->data ? rep->data->len : 0;
        if (n > r->size) {
            reply_err(r, -ERANGE);
            return;
        }
        fuse_reply_buf(r->req, n ? rep->data->data : NULL, n);
    }
    req_free(r);
}

static void kbf_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
    kbf_t *fs = fuse_req_userdata(req);
    int rc = xattr_local(fs, name, false);
    if (rc < 0) {
        fuse_reply_err(req, -rc);
        return;
    }
    kbf_req_t *r = req_inode(req, ino, true);
    if (!r || !arg_str(r, &r->a.name, name))
        return;
    r->a.size = r->size = size;
    req_submit(r, KB_FOP_GETXATTR, done_xattr);
}

static void kbf_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
    kbf_req_t *r = req_inode(req, ino, true);
    if (!r)
        return;
    r->a.size = r->size = size;
    req_submit(r, KB_FOP_LISTXATTR, done_xattr);
}

static void kbf_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
    kbf_t *fs = fuse_req_userdata(req);
    int rc = xattr_local(fs, name, true);
    if (rc < 0) {
        fuse_reply_err(req, -rc);
        return;
    }
    kbf_req_t *r = req_inode(req, ino, true);
    if (r && arg_str(r, &r->a.name, name))
        req_submit(r, KB_FOP_REMOVEXATTR, done_status);
}

/* ---------------- locks ---------------- */

static uint32_t lk_type(short t)
{
    return t == F_RDLCK ? KB_LK_RDLCK : t == F_WRLCK ? KB_LK_WRLCK : KB_LK_UNLCK;
}

static kbf_req_t *req_lock(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    kbf_req_t *r = req_inode(req, ino, false);
    if (!r)
        return NULL;
    r->a.fd = fi->fh;
    r->cred.lk_owner = fi->lock_owner;
    r->a.lock.owner = fi->lock_owner;
    r->a.lock.pid = r->cred.pid;
    return r;
}

static void done_getlk(kbf_req_t *r, const kb_reply_t *rep)
{
    if (rep->status < 0) {
        reply_err(r, rep->status);
        return;
    }
    const kb_lock_t *l = &rep->lock;
    struct flock fl = {
        .l_type = l->type == KB_LK_RDLCK ? F_RDLCK : l->type == KB_LK_WRLCK ? F_WRLCK : F_UNLCK,
        .l_whence = SEEK_SET, .l_start = (off_t)l->start, .l_len = (off_t)l->len,
        .l_pid = (pid_t)l->pid,
    };
    fuse_reply_lock(r->req, &fl);
    req_free(r);
}

static void kbf_getlk(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi, struct flock *lock)
{
    kbf_req_t *r = req_lock(req, ino, fi);
    if (!r)
        return;
    r->a.lock.type = lk_type(lock->l_type);
    r->a.lock.start = (uint64_t)lock->l_start;
    r->a.lock.len = (uint64_t)lock->l_len;
    r->a.flags = KB_LK_GETLK;
    req_submit(r, KB_FOP_LK, done_getlk);
}

/*
 * Blocking lock waits (F_SETLKW, flock without LOCK_NB) may be interrupted
 * by a signal. The wait then ends with EINTR at once (the kernel restarts
 * the syscall when the handler allows it), and a lock granted later for
 * that request is released again, since nobody holds it. imu decides who
 * sends the one reply: lk_interrupt (EINTR) or the completion.
 */
static void lk_interrupt(fuse_req_t req, void *data)
{
    kbf_req_t *r = data;
    pthread_mutex_lock(&r->imu);
    if (!r->replied) {
        r->replied = true;
        fuse_reply_err(req, EINTR);
    }
    pthread_mutex_unlock(&r->imu);
}

static void unlock_orphan(kbf_req_t *r)
{
    kbf_req_t *u = req_internal(r->fs, &r->a.gfid);
    if (!u)
        return;
    u->a.fd = r->a.fd;
    u->a.lock = r->a.lock;
    u->a.lock.type = KB_LK_UNLCK;
    u->a.flags = KB_LK_SETLK;
    u->cred = r->cred;
    req_submit(u, KB_FOP_LK, done_drop);
}

static void done_setlk(kbf_req_t *r, const kb_reply_t *rep)
{
    if (r->intr_armed) {
        pthread_mutex_lock(&r->imu);
        bool replied = r->replied;
        r->replied = true;
        pthread_mutex_unlock(&r->imu);
        if (replied) {           /* EINTR went out; the request is gone */
            if (rep->status == 0)
                unlock_orphan(r);
            r->req = NULL;
            req_free(r);
            return;
        }
        fuse_req_interrupt_func(r->req, NULL, NULL);  /* waits out a running lk_interrupt */
    }
    reply_err(r, rep->status < 0 ? rep->status : 0);
}

static void submit_setlk(kbf_req_t *r, bool wait)
{
    wait = wait && r->a.lock.type != KB_LK_UNLCK;
    r->a.flags = wait ? KB_LK_SETLKW : KB_LK_SETLK;
    if (wait) {
        pthread_mutex_init(&r->imu, NULL);
        r->intr_armed = true;
        fuse_req_interrupt_func(r->req, lk_interrupt, r);
        pthread_mutex_lock(&r->imu);
        bool gone = r->replied;  /* interrupted before we even asked */
        pthread_mutex_unlock(&r->imu);
        if (gone) {
            r->req = NULL;
            req_free(r);
            return;
        }
    }
    req_submit(r, KB_FOP_LK, done_setlk);
}

static void kbf_setlk(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi,
                      struct flock *lock, int sleep)
{
    kbf_req_t *r = req_lock(req, ino, fi);
    if (!r)
        return;
    r->a.lock.type = lk_type(lock->l_type);
    r->a.lock.start = (uint64_t)lock->l_start;
    r->a.lock.len = (uint64_t)lock->l_len;
    submit_setlk(r, sleep != 0);
}

static void kbf_flock(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi, int op)
{
    kbf_req_t *r = req_lock(req, ino, fi);
    if (!r)
        return;
    int kind = op & (LOCK_SH | LOCK_EX | LOCK_UN);
    r->a.lock.type = kind == LOCK_SH ? KB_LK_RDLCK : kind == LOCK_EX ? KB_LK_WRLCK : KB_LK_UNLCK;
    r->a.lock.flock = 1;         /* whole file, BSD semantics */
    submit_setlk(r, !(op & LOCK_NB));
}

/* ---------------- init ---------------- */

static void want(struct fuse_conn_info *conn, unsigned cap, bool on)
{
    if (on)
        conn->want |= cap & conn->capable;
    else
        conn->want &= ~cap;
}

static void kbf_init(void *userdata, struct fuse_conn_info *conn)
{
    kbf_t *fs = userdata;
    /* 1 MiB requests: VM images, dd and cp stream large blocks; libfuse's
     * buffer (256 pages + header) makes 1 MiB its ceiling as well. */
    conn->max_write = 1u << 20;
    /* The kernel takes the smaller of this and the bdi's readahead. */
    conn->max_readahead = 1u << 20;
    /* Queue depth for async requests (readahead, async direct I/O): a
     * guest's disk queue should reach the bricks in parallel. */
    conn->max_background = 64;
    conn->congestion_threshold = 48;
    conn->time_gran = 1;         /* bricks keep nanosecond times */

    /* Several reads of one file in flight (readahead, qemu's aio). */
    want(conn, FUSE_CAP_ASYNC_READ, true);
    /* O_DIRECT I/O split into parallel requests (qemu cache=none). */
    want(conn, FUSE_CAP_ASYNC_DIO, true);
    /* fcntl and flock locks are cluster-wide: bricks hold them (LK fop). */
    want(conn, FUSE_CAP_POSIX_LOCKS, true);
    want(conn, FUSE_CAP_FLOCK_LOCKS, true);
    /* Lookups and readdirs in one directory need not serialise in the
     * kernel: bricks order entry operations with their own locks. */
    want(conn, FUSE_CAP_PARALLEL_DIROPS, true);
    /* Attributes come with the listing (one round trip for ls -l). */
    want(conn, FUSE_CAP_READDIRPLUS, true);
    want(conn, FUSE_CAP_READDIRPLUS_AUTO, true);
    /* A changed mtime/size seen at getattr drops cached pages: another
     * client's writes show up within attr_timeout. */
    want(conn, FUSE_CAP_AUTO_INVAL_DATA, true);
    /* Symlink targets never change: the kernel may cache them. */
    want(conn, FUSE_CAP_CACHE_SYMLINKS, true);
    /* OFF: with writeback caching the kernel would hold and merge writes in
     * the page cache; qemu cache=none must reach every replica before the
     * guest sees its write acknowledged. */
    want(conn, FUSE_CAP_WRITEBACK_CACHE, false);
    /* OFF: truncation must be a TRUNCATE fop (replicate marks it as data);
     * an OPEN with O_TRUNC is not a modification to replicate. */
    want(conn, FUSE_CAP_ATOMIC_O_TRUNC, false);
    /* OFF: no NFS re-export; lookups of "." / ".." by node id are not served. */
    want(conn, FUSE_CAP_EXPORT_SUPPORT, false);
    /* OFF (v1): the filesystem would have to clear suid/sgid on every write.
     * FUSE_HANDLE_KILLPRIV_V2, which libfuse 3.14 cannot ask for, is added to
     * the INIT reply by fuse/rawio.c: no security.capability GETXATTR per
     * write, and the kernel says when to clear suid/sgid. */
    want(conn, FUSE_CAP_HANDLE_KILLPRIV, false);
    /* OFF: the kernel applies the umask; bricks store the mode as given. */
    want(conn, FUSE_CAP_DONT_MASK, false);
    want(conn, FUSE_CAP_POSIX_ACL, false);
    /* Splice moves pages through a pipe instead of one copy into libfuse's
     * buffer; it pays for large reads/writes only, so it is an option. */
    want(conn, FUSE_CAP_SPLICE_READ, fs->splice);
    want(conn, FUSE_CAP_SPLICE_WRITE, fs->splice);
    want(conn, FUSE_CAP_SPLICE_MOVE, false);
    kb_info("fuse", "kernel protocol %u.%u, max_write %u, capabilities 0x%x of 0x%x",
            conn->proto_major, conn->proto_minor, conn->max_write, conn->want, conn->capable);
}

const struct fuse_lowlevel_ops kbf_ops = {
    .init = kbf_init,
    .lookup = kbf_lookup,
    .forget = kbf_forget,
    .forget_multi = kbf_forget_multi,
    .getattr = kbf_getattr,
    .setattr = kbf_setattr,
    .readlink = kbf_readlink,
    .mknod = kbf_mknod,
    .mkdir = kbf_mkdir,
    .unlink = kbf_unlink,
    .rmdir = kbf_rmdir,
    .symlink = kbf_symlink,
    .rename = kbf_rename,
    .link = kbf_link,
    .open = kbf_open,
    .read = kbf_read,
    .write_buf = kbf_write_buf,
    .flush = kbf_flush,
    .release = kbf_release,
    .fsync = kbf_fsync,
    .opendir = kbf_opendir,
    .readdir = kbf_readdir,
    .readdirplus = kbf_readdirplus,
    .releasedir = kbf_releasedir,
    .fsyncdir = kbf_fsyncdir,
    .statfs = kbf_statfs,
    .setxattr = kbf_setxattr,
    .getxattr = kbf_getxattr,
    .listxattr = kbf_listxattr,
    .removexattr = kbf_removexattr,
    .create = kbf_create,
    .getlk = kbf_getlk,
    .setlk = kbf_setlk,
    .flock = kbf_flock,
    .fallocate = kbf_fallocate,
    .lseek = kbf_lseek,
};
