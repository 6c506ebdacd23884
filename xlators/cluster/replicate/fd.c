/*
 * fd.c — fds, locks from above and pass-through ops of
 * cluster/replicate.
 *
 * fd map. The fd replicate hands up is a pointer to a repl_fd (checked by a
 * magic on use) holding the gfid (through its inode), the open flags and
 * each child's own fd. OPEN / OPENDIR / CREATE go to every up child; a child
 * that was down, or lost its fds in a reconnect (CHILD_DOWN clears them), is
 * reopened — OPEN by gfid with the saved flags, without O_CREAT / O_EXCL /
 * O_TRUNC — when it comes up (file fds: repl_fd_child_up), else by the first
 * op that needs it there (directory fds, failed reopens). Concurrent ops
 * share one reopen; a reopen that fails is retried after
 * REPL_REOPEN_BACKOFF_MS, or at once after that child's next CHILD_UP. O_TRUNC on open becomes a TRUNCATE to 0 inside a data
 * transaction, so it is marked like any other write.
 *
 * FLUSH, FSYNC: every up child holding the fd (FSYNC: data children);
 * FLUSH (and the last RELEASE of an inode) also closes its eager lock.
 *
 * Posix locks (LK): on ALL up children, like GlusterFS's AFR, so a lock
 * survives the loss of one replica (and is taken again on a child that
 * returns without it, before the child serves the fd: lklog.c): non-blocking on all at once; on a
 * conflict the granted ones are released and, for SETLKW, the lock is taken
 * child by child in index order (two clients never deadlock); for SETLK the
 * answer is -EAGAIN. GETLK asks the first up child holding the fd. INODELK /
 * ENTRYLK from above are handled the same way (without fds).
 */
#include <fcntl.h>
#include "lib/log.h"
#include "xlators/cluster/replicate/replicate.h"

/* ================= lazy reopen ================= */

static void reopen_reply(repl_fan_t *f, int slot, const kb_reply_t *r)
{
    repl_fd_t *fd = f->ctx;
    repl_priv_t *p = fd->priv;
    if (r->status >= 0) {
        fd->cfd[slot] = r->fd;
        fd->opened |= REPL_BIT(slot);
    } else {
        fd->fail_gen[slot] = p->child_gen[slot];
        fd->retry_ms[slot] = kb_now_ms() + REPL_REOPEN_BACKOFF_MS;
    }
}

/* What is left of a reopen once its fan is gone: the children it was for. */
struct reopen_end { repl_fd_t *fd; repl_mask_t sent; };

static void reopen_wake(repl_fd_t *fd, repl_mask_t sent)
{
    fd->reopening &= ~sent;
    /* Wake the waiters: each looks again (another reopen may be needed). */
    repl_op_t *w = fd->reopen_wait;
    fd->reopen_wait = NULL;
    while (w) {
        repl_op_t *next = w->fd_next;
        w->fd_next = NULL;
        repl_fd_ensure(w, fd, w->fd_want, w->fd_cont);
        w = next;
    }
}

static void reopen_finish(void *ctx)
{
    struct reopen_end *e = ctx;
    repl_fd_t *fd = e->fd;
    repl_mask_t sent = e->sent;
    free(e);
    reopen_wake(fd, sent);
}

/* Reopened: the fd's locks are taken again there before anything else
 * runs on it (lklog.c), then the waiters go. */
static void reopen_done(repl_fan_t *f)
{
    repl_fd_t *fd = f->ctx;
    struct reopen_end *e = kb_zalloc(sizeof(*e));
    if (!e) {                            /* not served without its locks: reopened later */
        repl_mask_t lockless = f->sent[0] & fd->opened & (fd->lk.n ? ~(repl_mask_t)0 : 0);
        for (int i = 0; i < fd->priv->n; i++)
            if (lockless & REPL_BIT(i)) {
                fd->fail_gen[i] = fd->priv->child_gen[i];
                fd->retry_ms[i] = kb_now_ms() + REPL_REOPEN_BACKOFF_MS;
            }
        fd->opened &= ~lockless;
        reopen_wake(fd, f->sent[0]);
        return;
    }
    *e = (struct reopen_end){ fd, f->sent[0] };
    repl_lklog_replay(fd, f->sent[0] & fd->opened, 0, reopen_finish, e);
}

void repl_fd_ensure(repl_op_t *op, repl_fd_t *fd, repl_mask_t want, repl_op_fn cont)
{
    repl_priv_t *p = fd->priv;
    /* A lock it held went to another client: never write under it. Its
     * unlocks still go wherever it is (or can be) open, or the locks it kept
     * on the other children would stay there until this client's connection
     * goes; a reopen of a lost fd takes none of them again (lklog.c). */
    if (fd->lk_lost && !op->lost_ok) {
        if (op->fd_lost)
            op->fd_lost(op);
        else
            repl_op_fail(op, fd->lk_lost);
        return;
    }
    repl_mask_t need = want & p->up & ~fd->opened;
    uint64_t now = need ? kb_now_ms() : 0;
    for (int i = 0; i < p->n; i++)
        if (fd->retry_ms[i] > now && fd->fail_gen[i] == p->child_gen[i])
            need &= ~REPL_BIT(i);       /* failed lately, and it has not come back since */
    if (!need) {
        cont(op);
        return;
    }
    op->fd_want = want;
    op->fd_cont = cont;
    op->fd_next = fd->reopen_wait;
    fd->reopen_wait = op;
    repl_mask_t start = need & ~fd->reopening;
    if (!start)
        return;                         /* a reopen in flight covers it */
    kb_args_t a = { .gfid = fd->ino->gfid, .flags = fd->flags };
    repl_fan_t *f = repl_fan_new(p, 1, fd->dir ? KB_FOP_OPENDIR : KB_FOP_OPEN, &a, &p->icred,
                                 op->req, reopen_done, fd);
    if (!f) {
        for (int i = 0; i < p->n; i++)
            if (start & REPL_BIT(i)) {
                fd->fail_gen[i] = p->child_gen[i];
                fd->retry_ms[i] = kb_now_ms() + REPL_REOPEN_BACKOFF_MS;
            }
        if (!fd->reopening) {
            fd->reopen_wait = op->fd_next;   /* nothing else to wait for */
            op->fd_next = NULL;
            cont(op);
        }
        return;
    }
    f->on_reply = reopen_reply;
    fd->reopening |= start;
    p->st.reopens++;
    kb_log_req(KB_LOG_DEBUG, p->xl->name, op->req, "reopening fd on children 0x%x", start);
    repl_fan_send(f, start);
}

/* ================= a child came back ================= */

static void up_done(repl_op_t *op, const kb_reply_t *r) { (void)op; (void)r; }
static void up_reopened(repl_op_t *op) { repl_op_fail(op, 0); }

/* Child I is up again: every file fd reopens there now, not at its next op.
 *  - An fd holding locks takes them again (lklog.c): a VM that holds its
 *    image lock and does no I/O for a while must not leave the lock missing
 *    on a brick.
 *  - A brick back from a restart keeps the open-unlinked files it had open
 *    only for its orphan-grace (storage/posix orphan.c): an idle fd on one of
 *    them must reopen before that runs out, or that copy is gone for good.
 * One OPEN per open file per returning child, as lazily it would cost at the
 * file's next op; directory fds stay lazy (nothing on the brick waits). */
void repl_fd_child_up(repl_priv_t *p, int i)
{
    for (repl_fd_t *fd = p->fds; fd; fd = fd->next) {
        if (fd->dir || fd->lk_lost || (fd->opened & REPL_BIT(i)))
            continue;
        repl_op_t *t = repl_op_new(p, NULL);
        if (!t)
            return;              /* the fd's next op reopens it */
        t->done = up_done;
        repl_fd_ensure(t, fd, REPL_BIT(i), up_reopened);
    }
}

static void release_done(repl_fan_t *f) { (void)f; }

void repl_fd_release_children(repl_priv_t *p, repl_fd_t *fd, repl_mask_t mask)
{
    mask &= p->up & fd->opened;
    if (!mask)
        return;
    kb_args_t a = { .gfid = fd->ino->gfid };
    repl_fan_t *f = repl_fan_new(p, 1, fd->dir ? KB_FOP_RELEASEDIR : KB_FOP_RELEASE, &a,
                                 &p->icred, 0, release_done, NULL);
    if (!f)
        return;              /* the brick closes it when the connection goes */
    for (int i = 0; i < p->n; i++)
        if (mask & REPL_BIT(i)) {
            f->args[i].fd = fd->cfd[i];
            repl_fan_wind(f, i);
        }
    fd->opened &= ~mask;
    repl_fan_go(f);
}

/* ================= open ================= */

static void open_reply(repl_fan_t *f, int slot, const kb_reply_t *r)
{
    repl_op_t *op = f->ctx;
    if (slot < op->priv->n && r->status >= 0) {
        op->newfd->cfd[slot] = r->fd;
        op->newfd->opened |= REPL_BIT(slot);
    }
}

static void open_fail(repl_op_t *op, int err)
{
    repl_fd_release_children(op->priv, op->newfd, op->newfd->opened);
    repl_fd_free(op->newfd);
    op->newfd = NULL;
    repl_op_fail(op, err);
}

static void open_reply_up(repl_op_t *op)
{
    kb_reply_t r = { .status = 0, .fd = repl_fd_num(op->newfd) };
    op->newfd = NULL;
    repl_op_reply(op, &r);
}

static void open_trunc_done(repl_op_t *top, const kb_reply_t *r)
{
    repl_op_t *op = top->done_ctx;
    if (r->status < 0)
        open_fail(op, r->status);
    else
        open_reply_up(op);
}

/* open(O_TRUNC): truncate through a data transaction, so it is marked. */
static void open_truncate(repl_op_t *op)
{
    repl_priv_t *p = op->priv;
    repl_op_t *t = repl_op_new(p, NULL);
    if (!t) {
        open_fail(op, -ENOMEM);
        return;
    }
    t->fop = KB_FOP_TRUNCATE;
    t->req = op->req;
    t->cred = op->cred;
    t->own = (kb_args_t){ .gfid = op->ino->gfid, .fd = repl_fd_num(op->newfd), .fd_valid = 1 };
    t->col = KB_CL_DATA;
    t->fd = op->newfd;
    t->ino = repl_inode_ref(op->ino);
    t->done = open_trunc_done;
    t->done_ctx = op;
    int err = repl_modify_check(&p->cfg, KB_CL_DATA, p->up, NULL);
    if (err) {
        repl_op_fail(t, err);
        return;
    }
    repl_txn_submit(t);
}

static void open_done(repl_fan_t *f)
{
    repl_op_t *op = f->ctx;
    repl_priv_t *p = op->priv;
    repl_inode_fetched(p, op->ino);          /* changelog fetched alongside */
    repl_mask_t ok = repl_fan_ok(f, 0);
    if (!(ok & repl_data_children(&p->cfg))) {
        int err = -ENOTCONN;
        for (int i = 0; i < p->n; i++)
            if ((f->sent[0] & REPL_BIT(i)) && f->status[i] < 0 && !repl_err_is_disconnect(f->status[i])) {
                err = f->status[i];
                break;
            }
        open_fail(op, err);
        return;
    }
    uint32_t fl = op->args->flags;
    if (op->fop == KB_FOP_OPEN && (fl & O_TRUNC) && (fl & O_ACCMODE) != O_RDONLY)
        open_truncate(op);
    else
        open_reply_up(op);
}

void repl_open(kb_call_t *call)
{
    repl_priv_t *p = call->xl->priv;
    repl_op_t *op = repl_op_new(p, call);
    if (!op) {
        kb_unwind_err(call, -ENOMEM);
        return;
    }
    bool dir = call->op == KB_FOP_OPENDIR;
    op->ino = repl_inode_get(p, &call->args->gfid);
    op->newfd = op->ino ? repl_fd_new(p, op->ino, call->args->flags, dir) : NULL;
    op->own = *call->args;
    op->own.flags &= ~(uint32_t)O_TRUNC;     /* done as a marked TRUNCATE */
    repl_fan_t *f = op->newfd ? repl_fan_new(p, 2, call->op, &op->own, &op->cred, op->req,
                                             open_done, op) : NULL;
    if (f && repl_fan_set_cl(f, 1, op->ino, NULL)) {
        free(f);
        f = NULL;
    }
    if (!f) {
        if (op->newfd)
            repl_fd_free(op->newfd);
        op->newfd = NULL;
        repl_op_fail(op, -ENOMEM);
        return;
    }
    f->on_reply = open_reply;
    for (int i = 0; i < p->n; i++)
        if (p->up & REPL_BIT(i)) {
            repl_fan_wind(f, i);
            repl_fan_wind(f, p->n + i);
        }
    repl_fan_go(f);
}

/* ================= flush / fsync / release ================= */

static void flush_done(repl_fan_t *f)
{
    repl_op_t *op = f->ctx;
    repl_priv_t *p = op->priv;
    /* FLUSH/FSYNC change nothing: they need no quorum, only that every copy
     * that answered did it. With replica 2 + arbiter and one data brick down,
     * FSYNC goes to one data brick (the arbiter holds no data), which can
     * never be a majority: applying the write quorum here failed every fsync
     * with EROFS although the writes themselves had quorum. */
    repl_cfg_t any = p->cfg;
    any.quorum_type = REPL_Q_NONE;
    repl_outcome_t o;
    repl_fanout_outcome(&any, f->sent[0], f->sent[0], f->status, 0, &o);
    repl_op_fail(op, o.status < 0 ? o.status : 0);
}

static void flush_wind(repl_op_t *op)
{
    repl_priv_t *p = op->priv;
    repl_mask_t to = p->up & op->fd->opened;
    if (op->fop == KB_FOP_FSYNC)
        to &= repl_data_children(&p->cfg);
    repl_fan_t *f = repl_fan_new(p, 1, op->fop, op->args, &op->cred, op->req, flush_done, op);
    if (!f) {
        repl_op_fail(op, -ENOMEM);
        return;
    }
    for (int i = 0; i < p->n; i++)
        if (to & REPL_BIT(i)) {
            f->args[i].fd = op->fd->cfd[i];
            repl_fan_wind(f, i);
        }
    repl_fan_go(f);
}

void repl_flush(kb_call_t *call)
{
    repl_priv_t *p = call->xl->priv;
    repl_op_t *op = repl_op_new(p, call);
    if (!op) {
        kb_unwind_err(call, -ENOMEM);
        return;
    }
    if (!(op->fd = repl_fd_from(p, call->args->fd))) {
        repl_op_fail(op, -EBADF);
        return;
    }
    op->ino = repl_inode_ref(op->fd->ino);
    if (call->op == KB_FOP_FLUSH) {
        repl_txn_flush(p, op->ino);
        kb_lklog_flush(&op->fd->lk, call->args->lock.owner);   /* the close rule: its POSIX locks go */
        if (op->fd->lk_lost) {
            /* It drops the owner's POSIX locks on the bricks that kept them:
             * everywhere the fd can be. (FSYNC goes where the fd is, as before:
             * write-behind reports the writes that failed.) */
            op->lost_ok = true;
            repl_fd_ensure(op, op->fd, p->up, flush_wind);
            return;
        }
        if (!op->ino->lk_posix) {
            /* A brick's FLUSH only applies the close rule (features/locks
             * drops the owner's POSIX locks; storage/posix does nothing).
             * No POSIX lock was ever asked for on this inode through this
             * client, so there is nothing to drop: answered here, one round
             * trip less per close(2). (So close(2) succeeds with no brick
             * up, where it said ENOTCONN: it has nothing to report; write
             * errors come from the writes and fsync, write-behind's from
             * its own FLUSH above.) */
            repl_op_fail(op, 0);
            return;
        }
    }
    flush_wind(op);
}

static void release_all_done(repl_fan_t *f)
{
    repl_op_t *op = f->ctx;
    repl_fd_free(op->fd);
    op->fd = NULL;
    repl_op_fail(op, 0);
}

void repl_release(kb_call_t *call)
{
    repl_priv_t *p = call->xl->priv;
    repl_op_t *op = repl_op_new(p, call);
    if (!op) {
        kb_unwind_err(call, -ENOMEM);
        return;
    }
    if (!(op->fd = repl_fd_from(p, call->args->fd))) {
        repl_op_fail(op, -EBADF);
        return;
    }
    if (op->fd->ino->nfds == 1)
        repl_txn_flush(p, op->fd->ino);
    repl_fan_t *f = repl_fan_new(p, 1, call->op, call->args, &op->cred, op->req, release_all_done, op);
    if (!f) {
        repl_fd_free(op->fd);    /* the bricks close theirs when the connection goes */
        repl_op_fail(op, 0);
        return;
    }
    repl_mask_t to = p->up & op->fd->opened;
    for (int i = 0; i < p->n; i++)
        if (to & REPL_BIT(i)) {
            f->args[i].fd = op->fd->cfd[i];
            repl_fan_wind(f, i);
        }
    repl_fan_go(f);
}

/* ================= locks from above ================= */

static void lk_done(repl_lk_t *lk);

static void lk_single_cbk(void *cookie, const kb_reply_t *r)
{
    repl_op_t *op = cookie;
    repl_op_reply(op, r);
}

static void lk_unlocked_reply(repl_lk_t *lk)
{
    repl_op_t *op = lk->ctx;
    int err = lk->err;
    free(lk);
    repl_op_fail(op, err);
}

static void lk_done(repl_lk_t *lk)
{
    repl_op_t *op = lk->ctx;
    repl_priv_t *p = op->priv;
    (void)p;
    /* Granted on an fd lost while the request waited (a replay on a
     * returning child was refused meanwhile): the fd no longer holds its
     * locks, so this one is no lock either. Failed, and given back. */
    if (lk->granted && !lk->err && op->fd && op->fd->lk_lost)
        lk->err = op->fd->lk_lost;
    if (lk->granted && !lk->err) {
        if (op->fop == KB_FOP_LK && op->fd)
            repl_lklog_note(op->fd, op->args);   /* lock heal: taken again on a child that returns */
        free(lk);
        repl_op_fail(op, 0);
        return;
    }
    /* Not held where it must be: give back what was granted. */
    if (!lk->err)
        lk->err = lk->granted ? -EROFS : -ENOTCONN;
    repl_lk_unlock(lk, lk->granted, lk_unlocked_reply);
}

static void unlock_all_done(repl_lk_t *lk)
{
    repl_op_t *op = lk->ctx;
    if (op->fop == KB_FOP_LK && op->fd)
        repl_lklog_note(op->fd, op->args);
    free(lk);
    repl_op_fail(op, 0);
}

static void lk_go(repl_op_t *op)
{
    repl_priv_t *p = op->priv;
    const kb_args_t *a = op->args;
    repl_lk_t *lk = kb_zalloc(sizeof(*lk));
    if (!lk) {
        repl_op_fail(op, -ENOMEM);
        return;
    }
    lk->priv = p;
    lk->op = op->fop;
    lk->args = *a;
    lk->cred = op->cred;
    lk->req = op->req;
    lk->fd = op->fd;
    lk->ctx = op;
    lk->ltype = a->lock.type;
    lk->want = p->up & (op->fd ? op->fd->opened : ~(repl_mask_t)0);
    bool unlock = op->fop == KB_FOP_ENTRYLK ? (a->flags & 0xff) == KB_ELK_UNLOCK
                                            : a->lock.type == KB_LK_UNLCK;
    if (unlock) {
        repl_lk_unlock(lk, lk->want, unlock_all_done);
        return;
    }
    lk->blocking = op->fop == KB_FOP_ENTRYLK ? (a->flags & 0xff) == KB_ELK_LOCK
                                             : a->flags == KB_LK_SETLKW;
    lk->done = lk_done;
    repl_lk_start(lk);
}

void repl_lk(kb_call_t *call)
{
    repl_priv_t *p = call->xl->priv;
    repl_op_t *op = repl_op_new(p, call);
    if (!op) {
        kb_unwind_err(call, -ENOMEM);
        return;
    }
    const kb_args_t *a = call->args;
    if (call->op == KB_FOP_LK && !(op->fd = repl_fd_from(p, a->fd))) {
        repl_op_fail(op, -EBADF);
        return;
    }
    if (call->op == KB_FOP_LK && (a->flags & KB_LK_CMD_MASK) != KB_LK_GETLK && a->lock.type != KB_LK_UNLCK && !a->lock.flock)
        op->fd->ino->lk_posix = true;   /* from now on FLUSH must reach the bricks (repl_flush) */
    if (call->op != KB_FOP_ENTRYLK && a->flags == KB_LK_GETLK) {
        repl_mask_t can = p->up & (op->fd ? op->fd->opened : ~(repl_mask_t)0);
        int i = repl_first(can & repl_data_children(&p->cfg));
        if (i < 0)
            i = repl_first(can);
        if (i < 0) {
            repl_op_fail(op, -ENOTCONN);
            return;
        }
        op->own = *a;
        if (op->fd)
            op->own.fd = op->fd->cfd[i];
        kb_wind(p->xl->children[i], call->op, &op->own, &op->cred, op->req, lk_single_cbk, op);
        return;
    }
    if (op->fd) {
        op->lost_ok = a->lock.type == KB_LK_UNLCK;   /* only acquisitions fail on a lost fd */
        repl_fd_ensure(op, op->fd, p->up, lk_go);
    } else {
        lk_go(op);
    }
}

/* ================= XATTROP / IPC from above ================= */

static void xop_reply(repl_fan_t *f, int slot, const kb_reply_t *r)
{
    repl_op_keep(f->ctx, slot, r);
}

static void xop_done(repl_fan_t *f)
{
    repl_op_t *op = f->ctx;
    repl_priv_t *p = op->priv;
    repl_cfg_t any = p->cfg;           /* a query through: no quorum (see flush_done) */
    any.quorum_type = REPL_Q_NONE;
    repl_outcome_t o;
    repl_fanout_outcome(&any, f->sent[0], f->sent[0], f->status, 0, &o);
    if (o.status >= 0 && op->keep_idx >= 0) {
        kb_reply_t r = op->reply;
        repl_op_reply(op, &r);
        return;
    }
    repl_op_fail(op, o.status < 0 ? o.status : -EIO);
}

static void ipc_cbk(void *cookie, const kb_reply_t *r)
{
    kb_unwind((kb_call_t *)cookie, r);
}

/* XATTROP from above goes to every up child (the caller sees the first
 * copy's counters); IPC is a per-brick query: the first up child answers. */
void repl_xattrop(kb_call_t *call)
{
    repl_priv_t *p = call->xl->priv;
    /* LAYOUT_SET changes every copy of a directory (distribute's layout):
     * it fans out like XATTROP. Other IPC codes are per-brick queries. */
    if (call->op == KB_FOP_IPC && call->args->flags != KB_IPC_LAYOUT_SET) {
        int i = repl_first(p->up);
        if (i < 0) {
            kb_unwind_err(call, -ENOTCONN);
            return;
        }
        kb_wind_from(call, p->xl->children[i], call->args, ipc_cbk, call);
        return;
    }
    repl_op_t *op = repl_op_new(p, call);
    repl_fan_t *f = op ? repl_fan_new(p, 1, call->op, call->args, &op->cred, op->req, xop_done, op) : NULL;
    if (!f) {
        if (op)
            repl_op_fail(op, -ENOMEM);
        else
            kb_unwind_err(call, -ENOMEM);
        return;
    }
    f->on_reply = xop_reply;
    repl_fan_send(f, p->up);
}
