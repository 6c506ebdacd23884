/*
 * ops.c — the FUSE low-level bridge: request -> fop, result -> one reply.
 *
 * This file holds what every op shares: the request plumbing (fuse/ops.h),
 * the entry replies' helpers, init (each capability with its reason) and
 * the ops table. The ops are in files named for what they handle:
 * fuse/dir.c (lookup, names, directories), fuse/file.c (open files),
 * fuse/attr.c (attributes, statfs), fuse/xattr.c, fuse/lock.c (fcntl and
 * flock locks, interrupted waits).
 *
 * Contract (written once, kept by every op in those files):
 *  - Each request gets exactly one fuse_reply_* (fuse_reply_none for
 *    forget), either at once on the FUSE worker thread (bad argument, out
 *    of memory, answered locally) or later from the fop's completion
 *    callback on the libkembar loop thread. Handlers never wait for a fop,
 *    so a FUSE worker never blocks and the loop thread never blocks either.
 *  - Errors are negative errno inside; the sign flips only at fuse_reply_err.
 *  - A kbf_req_t owns its kb_args_t (strings, write payload) from the
 *    handler until the reply; kbf_req_free releases both.
 *  - Every reply that hands the kernel a node id (entry, create, readdirplus)
 *    takes its lookup reference just before replying and gives it back if the
 *    reply fails (the request was interrupted: the kernel never saw it).
 *    Likewise an fd whose open reply failed is released.
 *  - No lock is held across a fuse_reply_* or a kbc_submit.
 */
#include "fuse/ops.h"
#include "fuse/journal.h"
#include "fuse/resend.h"

#include <time.h>

#include "lib/log.h"

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

void kbf_cred_from_req(kb_cred_t *c, fuse_req_t req, bool groups)
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
kbf_req_t *kbf_req_new(fuse_req_t req, fuse_ino_t ino, bool groups)
{
    kbf_t *fs = fuse_req_userdata(req);
    kbf_req_t *r = kb_zalloc(sizeof(*r));
    if (!r) {
        fuse_reply_err(req, ENOMEM);
        return NULL;
    }
    r->fs = fs;
    r->req = req;
    r->unique = kbf_rq_unique;
    /* Supplementary groups matter only where the bricks judge permissions;
     * with default_permissions the kernel already did, from the mode bits. */
    kbf_cred_from_req(&r->cred, req, groups && !fs->default_permissions);
    if (ino)
        r->a.gfid = *kbf_itable_gfid(fs->it, ino);
    r->ino = ino;
    inflight_add(fs, 1);
    return r;
}

/* A request on the object INO itself (not on a name in it). */
kbf_req_t *kbf_req_inode(fuse_req_t req, fuse_ino_t ino, bool groups)
{
    kbf_req_t *r = kbf_req_new(req, ino, groups);
    if (r)
        r->by_inode = true;
    return r;
}

/* An internal follow-up (release of an fd the kernel never got, unlock of a
 * lock nobody waits for): no FUSE request to answer. */
kbf_req_t *kbf_req_internal(kbf_t *fs, const kb_gfid_t *gfid)
{
    kbf_req_t *r = kb_zalloc(sizeof(*r));
    if (!r)
        return NULL;
    r->fs = fs;
    r->a.gfid = *gfid;
    inflight_add(fs, 1);
    return r;
}

void kbf_req_free(kbf_req_t *r)
{
    kbf_t *fs = r->fs;
    kb_args_clear(&r->a);
    kb_buf_unref(r->rs_value);
    if (r->intr_armed)
        pthread_mutex_destroy(&r->imu);
    free(r);
    inflight_add(fs, -1);
}

/* ---- attributes kept for the next GETATTR (fuse/recent.h) ---- */

/* Ops after which kept attributes of their inode are stale: modifications,
 * and reads, which may move the atime on the brick (relatime). */
static bool modifies(kb_op_t op)
{
    enum kb_fop_class c = kb_fop_info[op].cls;
    return c == KB_C_DATA || c == KB_C_META || c == KB_C_ENTRY || op == KB_FOP_READ || op == KB_FOP_READDIR ||
           op == KB_FOP_READLINK;
}

/* Unlink, rmdir and rename change the link count (and ctime) of an inode
 * the request does not name: the kinds of inode whose kept attributes go
 * (KBF_RECENT_*; 0: none). Rename's reply brings no parent. */
static unsigned removes_name(kb_op_t op)
{
    return op == KB_FOP_UNLINK ? KBF_RECENT_OTHERS : op == KB_FOP_RMDIR ? KBF_RECENT_DIRS
         : op == KB_FOP_RENAME ? KBF_RECENT_DIRS | KBF_RECENT_OTHERS : 0;
}

/* R's modification is being sent: what is kept of the inodes it changes is
 * stale from now on; note their generations for its reply. */
static void recent_sent(kbf_req_t *r)
{
    if (modifies(r->op))
        kbf_recent_change(r->fs->recent, r->ino, r->ino2, removes_name(r->op), &r->rc_snap, &r->rc_snap2,
                          &r->rc_epoch);
}

/* R's modification came back: stale again (it may have landed after a read
 * of the attributes that was sent before it), except the parent directory
 * of a successful entry op, whose attributes after the op came with the
 * reply: kept, if nothing else changed it meanwhile. */
static void recent_done(kbf_req_t *r, const kb_reply_t *rep)
{
    kbf_recent_t *rc = r->fs->recent;
    if (!rc || !modifies(r->op))
        return;
    bool link = r->op == KB_FOP_LINK;
    fuse_ino_t parent = link ? r->ino2 : r->ino;
    bool keep = rep->status >= 0 && (rep->rflags & KB_RF_PATTR) && kb_fop_info[r->op].cls == KB_C_ENTRY &&
                parent && r->op != KB_FOP_RENAME;
    if (!keep) {
        kbf_recent_change(rc, r->ino, r->ino2, removes_name(r->op), NULL, NULL, NULL);
        return;
    }
    kbf_recent_bump(rc, link ? r->ino : r->ino2);     /* the other inode it changed (LINK: the file) */
    kbf_recent_settle(rc, parent, link ? r->rc_snap2 : r->rc_snap, r->rc_epoch, removes_name(r->op),
                      &rep->pattr, kb_now_ns());
}

static void req_cbk(void *cookie, const kb_reply_t *rep)
{
    kbf_req_t *r = cookie;
    recent_done(r, rep);
    /* Write-behind ordered this call after the writes of its gfid acknowledged
     * before it: those are on the bricks now (fuse/journal.c). Only if it
     * succeeded: a call failed before write-behind (no memory, no graph, a
     * handle lost at a takeover) was ordered after nothing. */
    if (!r->journaled && rep->status >= 0)
        kbf_journal_barrier(r->fs, &r->a.gfid, r->jseq);
    /* Sent again after a takeover: it may have done its work before. */
    if ((r->unique & KBF_UNIQUE_RESEND) && rep->status < 0 && kbf_resend_recover(r, rep))
        return;
    r->done(r, rep);
}

void kbf_req_submit(kbf_req_t *r, kb_op_t op, kbf_done_fn done)
{
    kbf_t *fs = r->fs;
    r->done = done;
    r->op = op;
    recent_sent(r);
    if (!fs->journal) {
        kbc_submit(fs->kbc, op, &r->a, &r->cred, req_cbk, r);
        return;
    }
    r->jseq = kbf_journal_enter(fs);
    kbc_submit(fs->kbc, op, &r->a, &r->cred, req_cbk, r);
    kbf_journal_leave(fs);
}

/*
 * An op on a node id whose object is gone answers ESTALE, not ENOENT: the
 * kernel then drops its cached dentry and looks the name up again (another
 * client renamed over it or removed it); ENOENT would reach the application
 * although the name exists. Ops by name keep ENOENT ("no such name").
 */
void kbf_reply_err(kbf_req_t *r, int status)
{
    if (r->by_inode && status == -ENOENT)
        status = -ESTALE;
    if (r->req)
        fuse_reply_err(r->req, status < 0 ? -status : 0);
    kbf_req_free(r);
}

/* Copy a string into the args (owned); false after replying ENOMEM. */
bool kbf_arg_str(kbf_req_t *r, char **dst, const char *s)
{
    *dst = strdup(s);
    if (*dst)
        return true;
    kbf_reply_err(r, -ENOMEM);
    return false;
}

/* Names longer than a brick stores are refused here, as a local file
 * system would (the kernel lets FUSE names reach 1024 bytes). */
bool kbf_name_fits(fuse_req_t req, const char *name)
{
    if (strlen(name) <= KB_NAME_MAX)
        return true;
    fuse_reply_err(req, ENAMETOOLONG);
    return false;
}

void kbf_done_status(kbf_req_t *r, const kb_reply_t *rep)
{
    kbf_reply_err(r, rep->status < 0 ? rep->status : 0);
}

void kbf_done_drop(kbf_req_t *r, const kb_reply_t *rep)
{
    kbf_req_free(r);
}

void kbf_release_fd(kbf_t *fs, const kb_gfid_t *gfid, uint64_t fd, bool dir)
{
    kbf_req_t *r = kbf_req_internal(fs, gfid);
    if (!r)
        return;                  /* the brick drops it when we disconnect */
    r->a.fd = fd;
    kbf_req_submit(r, dir ? KB_FOP_RELEASEDIR : KB_FOP_RELEASE, kbf_done_drop);
}

/* ---------------- entries ---------------- */

void kbf_iatt_stat(const kb_iatt_t *ia, const kb_gfid_t *fallback, struct stat *st)
{
    kb_iatt_t tmp = *ia;
    if (kb_gfid_is_null(&tmp.gfid) && fallback)
        tmp.gfid = *fallback;
    kb_iatt_to_stat(&tmp, st);
}

/* Fill E for IA and take its lookup reference. 0 or -errno. */
int kbf_entry_fill(kbf_t *fs, const kb_iatt_t *ia, const kb_gfid_t *fallback,
                   struct fuse_entry_param *e)
{
    memset(e, 0, sizeof(*e));
    const kb_gfid_t *g = kb_gfid_is_null(&ia->gfid) ? fallback : &ia->gfid;
    if (!g || kb_gfid_is_null(g))
        return -EIO;
    kbf_iatt_stat(ia, g, &e->attr);
    e->attr_timeout = fs->attr_timeout;
    e->entry_timeout = fs->entry_timeout;
    e->ino = kbf_itable_ref(fs->it, g);
    if (e->ino)
        kbf_itable_note_mode(fs->it, e->ino, ia->mode);
    return e->ino ? 0 : -ENOMEM;
}

/* An entry-creating op: NAME in PARENT, with a client-chosen gfid. */
kbf_req_t *kbf_req_create_in(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    if (!kbf_name_fits(req, name))
        return NULL;
    kbf_req_t *r = kbf_req_new(req, parent, true);
    if (!r || !kbf_arg_str(r, &r->a.name, name))
        return NULL;
    /* The same request sent again after a takeover chooses the same gfid
     * and so knows its own entry (fuse/resend.c). */
    if (r->fs->st.hdr && r->unique)
        kbf_state_gfid_for(r->fs->st.hdr->salt, r->unique & ~KBF_UNIQUE_RESEND, &r->a.newgfid);
    else
        kb_gfid_generate(&r->a.newgfid);
    return r;
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
    /* A takeover (fuse/handover.c): the kernel keeps what the first INIT
     * told it, whatever this binary would choose now. */
    const kbf_st_conn_t *was = fs->init_conn;
    if (was) {
        conn->want = was->want & conn->capable;
        conn->max_write = was->max_write;
        conn->max_readahead = was->max_readahead;
        conn->max_background = was->max_background;
        conn->congestion_threshold = was->congestion_threshold;
        conn->time_gran = was->time_gran;
    }
    fs->conn_chosen = (kbf_st_conn_t){ .want = conn->want, .max_write = conn->max_write,
                                       .max_readahead = conn->max_readahead,
                                       .max_background = conn->max_background,
                                       .congestion_threshold = conn->congestion_threshold,
                                       .time_gran = conn->time_gran, .proto_minor = conn->proto_minor };
    kb_info("fuse", "kernel protocol %u.%u, max_write %u, capabilities 0x%x of 0x%x%s",
            conn->proto_major, conn->proto_minor, conn->max_write, conn->want, conn->capable,
            was ? " (as negotiated by the first serving process)" : "");
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
