/*
 * file.c — open files: open and create, read, write, flush, release, fsync,
 * fallocate and lseek.
 *
 * Promises, besides the contract in fuse/ops.c:
 *  - Close-to-open consistency: an open lets the kernel keep the file's
 *    cached pages only when nothing changed the file since they were read
 *    (open_finish); O_DIRECT opens bypass the page cache end to end.
 *  - An fd whose open or create reply failed is released, and a create's
 *    lookup reference given back.
 *  - A write's payload is copied at most once, and not at all when it is
 *    large and lies in the loop-thread reader's receive buffer.
 *  - A write carries the kernel's "clear setuid/setgid" (KILLPRIV_V2,
 *    fuse/rawio.c) to the bricks, then drops the kernel's cached mode.
 *  - close() (flush) drops its lock owner's POSIX locks; the release of an
 *    fd that holds flock locks unlocks them before the fd goes.
 */
#include "fuse/ops.h"
#include "fuse/handover.h"
#include "fuse/journal.h"

#include <fcntl.h>
#include <sys/stat.h>

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
        kbf_reply_err(r, r->open_status);
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
    kbf_ho_opened(fs, r->unique, r->open_fd);
    if (fuse_reply_open(r->req, &r->fi) != 0)
        kbf_release_fd(fs, &r->a.gfid, r->open_fd, false);
    kbf_req_free(r);
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
        /* Fresh: the kernel's GETATTR that often follows an open (its
         * attributes were dropped by our own writes) is answered with it. */
        kbf_recent_put(r->fs->recent, r->ino, s->rc_snap, s->rc_epoch, a, kb_now_ns());
        r->cver = (kbf_cver_t){ .size = a->size, .mtime_sec = a->mtime_sec,
                                .mtime_nsec = a->mtime_nsec, .ctime_sec = a->ctime_sec,
                                .ctime_nsec = a->ctime_nsec };
        r->have_cver = true;
    }
    kbf_req_free(s);
    open_finish(r);
}

void kbf_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    kbf_req_t *r = kbf_req_inode(req, ino, true);
    if (!r)
        return;
    kbf_ho_resent_open(r->fs, r->unique);
    r->fi = *fi;
    r->ino = ino;
    /* O_TRUNC never reaches us (atomic_o_trunc is off): truncation comes as
     * a setattr, i.e. a TRUNCATE fop. Strip it anyway, and the create bits. */
    r->a.flags = (uint32_t)(fi->flags & ~(O_CREAT | O_EXCL | O_NOCTTY | O_TRUNC));
    /* Both counted before either is wound: a completion may come first. */
    kbf_req_t *s = (fi->flags & O_DIRECT) ? NULL : kbf_req_internal(r->fs, &r->a.gfid);
    r->pending = s ? 2 : 1;
    if (s) {
        s->parent = r;
        s->cred = r->cred;
        s->rc_snap = kbf_recent_snap(r->fs->recent, ino);
        s->rc_epoch = kbf_recent_epoch(r->fs->recent);
        kbf_req_submit(s, KB_FOP_STAT, done_open_stat);
    }
    kbf_req_submit(r, KB_FOP_OPEN, done_open);
}

static void done_create(kbf_req_t *r, const kb_reply_t *rep)
{
    kbf_t *fs = r->fs;
    if (rep->status < 0) {
        kbf_reply_err(r, rep->status);
        return;
    }
    struct fuse_entry_param e;
    int rc = kbf_entry_fill(fs, &rep->attr, &r->a.newgfid, &e);
    if (rc < 0) {
        kbf_release_fd(fs, &r->a.newgfid, rep->fd, false);
        kbf_reply_err(r, rc);
        return;
    }
    r->fi.fh = rep->fd;
    open_reply_flags(&r->fi, false);
    kbf_ho_opened(fs, r->unique, rep->fd);
    if (fuse_reply_create(r->req, &e, &r->fi) != 0) {
        kb_gfid_t g = *kbf_itable_gfid(fs->it, e.ino);
        kbf_itable_forget(fs->it, e.ino, 1);
        kbf_release_fd(fs, &g, rep->fd, false);
    }
    kbf_req_free(r);
}

void kbf_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                struct fuse_file_info *fi)
{
    kbf_req_t *r = kbf_req_create_in(req, parent, name);
    if (!r)
        return;
    kbf_ho_resent_open(r->fs, r->unique);
    r->fi = *fi;
    r->a.mode = (mode & 07777) | S_IFREG;
    r->a.flags = (uint32_t)(fi->flags | O_CREAT);
    kbf_req_submit(r, KB_FOP_CREATE, done_create);
}

static void done_read(kbf_req_t *r, const kb_reply_t *rep)
{
    if (rep->status < 0) {
        kbf_reply_err(r, rep->status);
        return;
    }
    size_t n = KB_MIN((size_t)rep->status, rep->data ? rep->data->len : 0);
    n = KB_MIN(n, r->a.size);
    fuse_reply_buf(r->req, n ? rep->data->data : NULL, n);
    kbf_req_free(r);
}

void kbf_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
              struct fuse_file_info *fi)
{
    kbf_req_t *r = kbf_req_inode(req, ino, false);
    if (!r)
        return;
    r->a.fd = fi->fh;
    r->a.off = (uint64_t)off;
    r->a.size = KB_MIN(size, (size_t)KB_DATA_MAX);
    r->a.flags = (uint32_t)(fi->flags & O_DIRECT);
    kbf_req_submit(r, KB_FOP_READ, done_read);
}

static void done_write(kbf_req_t *r, const kb_reply_t *rep)
{
    if (rep->status < 0) {
        kbf_reply_err(r, rep->status);
        return;
    }
    /* The bricks cleared setuid/setgid (or will have, before any call that
     * follows: write-behind orders them); the kernel's cached mode is stale. */
    if (r->kill_notify && r->fs->se)
        fuse_lowlevel_notify_inval_inode(r->fs->se, r->ino, -1, 0);
    fuse_reply_write(r->req, (size_t)rep->status);
    kbf_req_free(r);
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

void kbf_write_buf(fuse_req_t req, fuse_ino_t ino, struct fuse_bufvec *in, off_t off,
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
    kbf_req_t *r = kbf_req_inode(req, ino, false);
    if (!r)
        return;
    kb_buf_t *b = payload_in_place(r->fs, in, len);
    if (!b) {
        /* The one copy: libfuse reuses its request buffer once we return. */
        b = kb_buf_new(len);
        if (!b) {
            kbf_reply_err(r, -ENOMEM);
            return;
        }
        struct fuse_bufvec dst = FUSE_BUFVEC_INIT(len);
        dst.buf[0].mem = b->data;
        ssize_t n = fuse_buf_copy(&dst, in, 0);
        if (n < 0) {
            kb_buf_unref(b);
            kbf_reply_err(r, (int)n);
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
        kbf_cred_from_req(&r->cred, req, true);
    if (kbf_journal_wants(r->fs, fi->flags))
        kbf_journal_submit_write(r, done_write);   /* write-behind may acknowledge it early */
    else
        kbf_req_submit(r, KB_FOP_WRITE, done_write);
}

void kbf_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    kbf_req_t *r = kbf_req_inode(req, ino, false);
    if (!r)
        return;
    /* close() of any fd drops the POSIX locks of its owner (fcntl rules). */
    r->a.fd = fi->fh;
    r->a.lock = (kb_lock_t){ .type = KB_LK_UNLCK, .owner = fi->lock_owner, .pid = r->cred.pid };
    r->cred.lk_owner = fi->lock_owner;
    kbf_req_submit(r, KB_FOP_FLUSH, kbf_done_status);
}

void kbf_done_release(kbf_req_t *r, const kb_reply_t *rep)
{
    if (r->release_after) {      /* flock locks dropped; now the fd itself */
        r->release_after = false;
        kbf_req_submit(r, KB_FOP_RELEASE, kbf_done_release);
        return;
    }
    kbf_reply_err(r, 0);             /* nobody waits on a release's result */
}

void kbf_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    kbf_req_t *r = kbf_req_inode(req, ino, false);
    if (!r)
        return;
    r->a.fd = fi->fh;
    if (fi->flock_release) {
        r->a.lock = (kb_lock_t){ .type = KB_LK_UNLCK, .owner = fi->lock_owner, .flock = 1 };
        r->a.flags = KB_LK_SETLK;
        r->cred.lk_owner = fi->lock_owner;
        r->release_after = true;
        kbf_req_submit(r, KB_FOP_LK, kbf_done_release);
        return;
    }
    kbf_req_submit(r, KB_FOP_RELEASE, kbf_done_release);
}

void kbf_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
    kbf_req_t *r = kbf_req_inode(req, ino, false);
    if (!r)
        return;
    r->a.fd = fi->fh;
    r->a.flags = datasync ? 1 : 0;
    kbf_req_submit(r, KB_FOP_FSYNC, kbf_done_status);
}

void kbf_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off, off_t len,
                   struct fuse_file_info *fi)
{
    kbf_req_t *r = kbf_req_inode(req, ino, false);
    if (!r)
        return;
    r->a.fd = fi->fh;
    r->a.off = (uint64_t)off;
    r->a.size = (uint64_t)len;
    r->a.flags = (uint32_t)mode; /* every mode passes through: the brick decides */
    kbf_req_submit(r, KB_FOP_FALLOCATE, kbf_done_status);
}

static void done_lseek(kbf_req_t *r, const kb_reply_t *rep)
{
    if (rep->status < 0) {
        kbf_reply_err(r, rep->status);
        return;
    }
    fuse_reply_lseek(r->req, (off_t)rep->off);
    kbf_req_free(r);
}

void kbf_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence,
               struct fuse_file_info *fi)
{
    kbf_req_t *r = kbf_req_inode(req, ino, false);
    if (!r)
        return;
    r->a.fd = fi->fh;
    r->a.off = (uint64_t)off;
    r->a.flags = (uint32_t)whence;   /* SEEK_DATA / SEEK_HOLE (the kernel does SET/CUR/END) */
    kbf_req_submit(r, KB_FOP_LSEEK, done_lseek);
}
