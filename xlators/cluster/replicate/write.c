/*
 * write.c — modifications (KB_C_DATA, KB_C_META, KB_C_ENTRY).
 *
 * repl_modify gates the op (quorum with the children up, known split-brain:
 * nothing is sent when it is already lost), then hands it to its
 * transaction (txn.c), which calls repl_mod_wind under the lock.
 * repl_mod_wind sends the same args to every member of the transaction —
 * except file data to an arbiter — with each child's own fd, and with
 * KB_WF_TRACK_REGIONS when a data child is missing. The last reply runs
 * mod_done, which asks repl_fanout_outcome (policy.c) for the verdict
 * and gives the op back to the transaction for marks and unwinding.
 */
#include <fcntl.h>
#include <sys/stat.h>
#include "lib/log.h"
#include "xlators/cluster/replicate/replicate.h"

static bool creates_object(kb_op_t op)
{
    return op == KB_FOP_CREATE || op == KB_FOP_MKDIR || op == KB_FOP_MKNOD || op == KB_FOP_SYMLINK;
}

static bool trackable(kb_op_t op)
{
    return op == KB_FOP_WRITE || op == KB_FOP_TRUNCATE || op == KB_FOP_FALLOCATE;
}

/* The args child I gets: its own fd, and the region-tracking flag. */
static void child_args(repl_op_t *op, kb_args_t *a, int i, bool track)
{
    *a = *op->args;
    if (op->fd && kb_args_uses_fd(op->fop, a))
        a->fd = op->fd->cfd[i];
    if (track && trackable(op->fop))
        a->flags |= KB_WF_TRACK_REGIONS;
}

static void mod_reply(repl_fan_t *f, int slot, const kb_reply_t *r)
{
    repl_op_t *op = f->ctx;
    repl_op_keep(op, slot, r);
    if (r->rflags & KB_RF_CONTENDED)
        repl_txn_contended(op->txn);
    if (op->newfd && r->status >= 0) {
        op->newfd->cfd[slot] = r->fd;
        op->newfd->opened |= REPL_BIT(slot);
    }
}

static void mod_done(repl_fan_t *f)
{
    repl_op_t *op = f->ctx;
    repl_priv_t *p = op->priv;
    repl_mask_t extra = 0;
    int arb = p->cfg.arbiter;
    /* The arbiter takes no data, but holds the lock and the marks: it
     * counts toward the quorum of a data op. */
    if (op->col == KB_CL_DATA && arb >= 0 && (repl_txn_members(op->txn) & REPL_BIT(arb)))
        extra = REPL_BIT(arb);
    op->rflags = f->rflags;
    repl_fanout_outcome(&p->cfg, repl_candidates(&p->cfg, op->col), op->sent, f->status, extra,
                        &op->out);
    if (op->out.status < 0 && kb_log_level >= KB_LOG_DEBUG)
        kb_log_req(KB_LOG_DEBUG, p->xl->name, op->req, "%s: %s (ok 0x%x, blame 0x%x)",
                   kb_fop_name(op->fop), strerror(-op->out.status), op->out.ok, op->out.blame);
    repl_txn_op_done(op);
}

static void mod_wind_now(repl_op_t *op)
{
    repl_priv_t *p = op->priv;
    repl_mask_t send = repl_txn_members(op->txn) & repl_candidates(&p->cfg, op->col);
    if (op->fd)
        send &= op->fd->opened;
    bool missing = op->col == KB_CL_DATA && (repl_data_children(&p->cfg) & ~send);
    op->tracked = missing && trackable(op->fop);
    op->untrackable = missing && !trackable(op->fop);
    op->sent = send;
    repl_fan_t *f = repl_fan_new(p, 1, op->fop, NULL, &op->cred, op->req, mod_done, op);
    if (!f) {
        op->sent = 0;
        op->out = (repl_outcome_t){ .status = -ENOMEM, .reply_idx = -1 };
        repl_txn_op_done(op);
        return;
    }
    f->on_reply = mod_reply;
    for (int i = 0; i < p->n; i++)
        if (send & REPL_BIT(i)) {
            child_args(op, &f->args[i], i, op->tracked);
            repl_fan_wind(f, i);
        }
    /* A file created to be written: its first write's lock and pre-op go
     * right behind the CREATE (repl_txn_prime). Before repl_fan_go: the
     * fan's guard keeps the op, and so its new fd's inode, until then. */
    if (op->fop == KB_FOP_CREATE && (op->args->flags & O_ACCMODE) != O_RDONLY && send == p->up)
        repl_txn_prime(p, op->newfd->ino);
    repl_fan_go(f);
}

/* The op's fd was lost (lklog.c) after repl_modify let it in: while it
 * queued for the transaction's lock, or waited for a reopen. Nothing is
 * sent, and the op still ends through its transaction: failing it directly
 * (repl_op_fail) left the transaction active for good — its inodelk held on
 * the bricks and its dirty mark set, so no other client could write the
 * file and heal timed out on the lock. Sent to nobody, it blames nobody and
 * applies nothing: the post-op takes the marks back. */
static void mod_lost(repl_op_t *op)
{
    op->sent = 0;
    op->tracked = op->untrackable = false;
    op->out = (repl_outcome_t){ .status = op->fd->lk_lost, .reply_idx = -1 };
    repl_txn_op_done(op);
}

void repl_mod_wind(repl_op_t *op)
{
    repl_priv_t *p = op->priv;
    repl_mask_t want = repl_txn_members(op->txn) & repl_candidates(&p->cfg, op->col);
    if (op->fd && kb_args_uses_fd(op->fop, op->args)) {
        op->fd_lost = mod_lost;          /* lost already, or while it waits for a reopen */
        repl_fd_ensure(op, op->fd, want, mod_wind_now);
        return;
    }
    mod_wind_now(op);
}

/* ---- re-send with region tracking ---- */

static void resend_done(repl_fan_t *f)
{
    repl_op_t *op = f->ctx;
    if (repl_fan_ok(f, 0) != f->sent[0] || !f->sent[0])
        op->resend_failed = true;
    op->cont(op);
}

void repl_mod_resend(repl_op_t *op, repl_mask_t to, repl_op_fn cont)
{
    repl_priv_t *p = op->priv;
    op->cont = cont;
    if (op->fd)
        to &= op->fd->opened;
    repl_fan_t *f = repl_fan_new(p, 1, op->fop, NULL, &op->cred, op->req, resend_done, op);
    if (!f) {
        op->resend_failed = true;
        cont(op);
        return;
    }
    p->st.resends++;
    for (int i = 0; i < p->n; i++)
        if (to & REPL_BIT(i)) {
            child_args(op, &f->args[i], i, true);
            repl_fan_wind(f, i);
        }
    repl_fan_go(f);
}

/* ---- completion ---- */

void repl_mod_reply(repl_op_t *op)
{
    repl_priv_t *p = op->priv;
    if (op->out.status < 0) {
        if (op->newfd) {
            repl_fd_release_children(p, op->newfd, op->newfd->opened);
            repl_fd_free(op->newfd);
            op->newfd = NULL;
        }
        repl_op_fail(op, op->out.status);
        return;
    }
    kb_reply_t r = { 0 };
    if (op->keep_idx >= 0 && op->keep_idx == op->out.reply_idx)
        r = op->reply;              /* shallow: op->reply is cleared after the unwind */
    r.status = op->out.status;
    if (creates_object(op->fop)) {
        repl_inode_t *ino = repl_inode_get(p, &op->args->newgfid);
        if (ino) {
            uint32_t type = op->fop == KB_FOP_MKDIR ? S_IFDIR : op->fop == KB_FOP_SYMLINK ? S_IFLNK
                          : op->fop == KB_FOP_CREATE ? S_IFREG : (op->args->mode & S_IFMT);
            repl_inode_set_new(p, ino, op->out.ok, type);
            repl_inode_unref(p, ino);
        }
    }
    if (op->newfd) {
        r.fd = repl_fd_num(op->newfd);
        op->newfd = NULL;           /* handed up: freed by RELEASE */
    }
    repl_op_reply(op, &r);
}

/* ---- entry point ---- */

void repl_modify(kb_call_t *call)
{
    repl_priv_t *p = call->xl->priv;
    const kb_args_t *a = call->args;
    repl_op_t *op = repl_op_new(p, call);
    if (!op) {
        kb_unwind_err(call, -ENOMEM);
        return;
    }
    op->col = repl_op_col(op->fop, a);
    if (kb_args_uses_fd(op->fop, a)) {
        if (!(op->fd = repl_fd_from(p, a->fd)) || op->fd->lk_lost) {
            repl_op_fail(op, op->fd ? op->fd->lk_lost : -EBADF);   /* lk_lost: lklog.c */
            return;
        }
        op->ino = repl_inode_ref(op->fd->ino);
    } else {
        op->ino = repl_inode_get(p, op->fop == KB_FOP_LINK ? &a->gfid2 : &a->gfid);
    }
    if (op->fop == KB_FOP_RENAME)
        op->ino2 = repl_inode_get(p, &a->gfid2);
    if (!op->ino || (op->fop == KB_FOP_RENAME && !op->ino2)) {
        repl_op_fail(op, -ENOMEM);
        return;
    }
    /* Known lost already: send nothing. */
    repl_blame_t b;
    bool known = repl_inode_fresh(p, op->ino);
    if (known)
        repl_inode_blame(p, op->ino, op->col, &b);
    int err = repl_modify_check(&p->cfg, op->col, p->up, known ? &b : NULL);
    if (err) {
        repl_op_fail(op, err);
        return;
    }
    if (op->fop == KB_FOP_CREATE) {
        repl_inode_t *child = repl_inode_get(p, &a->newgfid);
        op->newfd = child ? repl_fd_new(p, child, a->flags, false) : NULL;
        repl_inode_unref(p, child);
        if (!op->newfd) {
            repl_op_fail(op, -ENOMEM);
            return;
        }
    }
    repl_txn_submit(op);
}
