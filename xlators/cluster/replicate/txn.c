/*
 * txn.c — locks and transactions of cluster/replicate (DESIGN §5).
 *
 * A modification runs inside a transaction on its object (data, metadata)
 * or on its parent directory (entry ops):
 *
 *   lock      inodelk (REPL_DOM_DATA / REPL_DOM_META, whole file) or entrylk
 *             (REPL_DOM_ENTRY on parent + basename; RENAME takes both, in
 *             (gfid, name) order) on every up child — non-blocking on all
 *             at once, and on any conflict: release, then blocking in child
 *             index order. Every client takes a contended lock in the same
 *             order, so two clients never deadlock and their modifications
 *             reach every replica in the same order.
 *   pre-op    XATTROP ADD on the locked children: dirty +1 in the op's
 *             column, and pending +1 against every child already absent
 *             (down, or lock failed) — one round trip for both. When the
             bricks take KB_XOP_ADD_LOCKED (changelog.h §5) and there is one
             lock target, the pre-op goes out with the non-blocking lock,
             applied by each brick only if it granted that lock: lock and
             pre-op in one round trip (see "lock and pre-op in one round
             trip" below for what happens when not everything is granted).
 *   op        the fop on the members (write.c).
 *   post-op   XATTROP ADD on the members that have every op of the hold:
 *             dirty -1, pending +1 against the children that missed an op
 *             and are not marked yet. Members that missed an op get nothing:
 *             their dirty mark stays for heal.
 *   unlock
 *
 * Data transactions are EAGER (option eager-lock): the transaction stays
 * open while this client keeps writing the file — later writes run at once
 * under the same lock and dirty mark, so steady writes cost no lock and no
 * XATTROP. It closes (post-op + unlock) after eager-lock-idle-ms without
 * writes, when a reply carries KB_RF_CONTENDED (another client waits), on
 * FLUSH and last RELEASE, and when a child comes back up (so it joins the
 * next hold). FSYNC does not close it: the dirty mark only says "writes
 * were in flight", and closing on every guest flush would cost a lock + two
 * XATTROPs per fsync.
 *
 * Children missing during a hold. A child that misses a write must be
 * blamed on the survivors BEFORE that write is acknowledged, and the bytes
 * it missed must be in the survivors' dirty-region maps (changelog.h):
 *  - absent at pre-op: blamed by the pre-op itself; every write then goes
 *    out with KB_WF_TRACK_REGIONS (the brick records the range durably
 *    first; only the first write into a region pays);
 *  - lost during the hold (an in-flight write failed, -ENOTCONN): the write
 *    was not tracked, so it is re-sent with the flag to the survivors
 *    (idempotent: we hold the lock), then one extra XATTROP marks the loser,
 *    once per hold (later writes wait for that mark, and are tracked);
 *  - a TRUNCATE / size-changing SETATTR that cannot be tracked leaves the
 *    survivors' dirty mark set at post-op: heal then compares checksums.
 * The application therefore never sees an error for a child that died
 * while quorum holds.
 *
 * Rejected: marking pending only at post-op (as GlusterFS does with its
 * delayed post-op) — a client crash before the post-op would leave no record
 * of which replica missed acknowledged writes.
 */
#include <stdio.h>
#include <event2/event.h>
#include "lib/log.h"
#include "xlators/cluster/replicate/replicate.h"

enum { TX_IDLE, TX_LOCKING, TX_OPEN, TX_CLOSING };

struct repl_txn {
    repl_priv_t *priv;
    int col;
    bool eager;
    int state;
    int pin;                      /* > 0: a loop over this txn is running; do not free */
    int ntgt;                     /* lock targets */
    struct repl_tgt { kb_gfid_t gfid; char *name; } tgt[2]; /* name: entrylk basename */
    repl_mask_t lk_mask[2];       /* children holding target k's lock */
    int nmark;                    /* inodes carrying the marks (1, or 2 for a cross-dir rename) */
    repl_inode_t *mino[2];
    repl_inode_t *slot_ino;       /* data txn: the inode whose data_txn points here */
    uint64_t owner;
    repl_mask_t members;          /* locked + pre-op done (cleared as children go down) */
    repl_mask_t absent;           /* candidates blamed by the pre-op */
    repl_mask_t marked, marking;  /* pending marks on the survivors: done / in flight */
    repl_mask_t missed;           /* children that missed an op of this hold */
    bool applied;                 /* some op of the hold changed some copy */
    bool keep_dirty;
    bool close_wanted;
    int active;                   /* ops winding under the txn */
    int err;                      /* why acquisition failed */
    int phase;
    repl_op_t *q_head, *q_tail;   /* waiting for the txn to open */
    repl_op_t *wait_mark;         /* waiting for a mark before they unwind */
    repl_op_t *wait_post;         /* non-eager: unwind after the post-op */
    struct event *idle_ev;
    repl_txn_t *tnext, *tprev;
    repl_lk_t lk;
};

static void tx_acquire(repl_txn_t *t);
static void tx_close(repl_txn_t *t);
static void tx_run(repl_txn_t *t, repl_op_t *op);
static void tx_settle(repl_txn_t *t);

int repl_op_col(kb_op_t op, const kb_args_t *a)
{
    switch (op) {
    case KB_FOP_WRITE: case KB_FOP_TRUNCATE: case KB_FOP_FALLOCATE:
        return KB_CL_DATA;
    case KB_FOP_SETATTR:
        return (a->flags & KB_SET_SIZE) ? KB_CL_DATA : KB_CL_META;
    case KB_FOP_SETXATTR: case KB_FOP_REMOVEXATTR:
        return KB_CL_META;
    default:
        return KB_CL_ENTRY;
    }
}

/* ================= lock engine ================= */

enum { LK_NB, LK_BLOCK, LK_UNLOCK };

static bool lk_conflict(int st) { return st == -EAGAIN || st == -EBUSY; }

static void lk_snap(repl_lk_t *lk)
{
    memcpy(lk->gen, lk->priv->child_gen, sizeof(lk->gen));
}

/* Does child I's "granted" still hold? INODELK and ENTRYLK locks die with
 * the connection they were taken on (features/locks), so not when the child
 * went down, or down and up again, since the request went out (its reply can
 * arrive before the disconnect is noticed). LK locks outlive a connection
 * for the lease (they are replayed). */
static bool lk_held(const repl_lk_t *lk, int i)
{
    const repl_priv_t *p = lk->priv;
    return lk->op == KB_FOP_LK || ((p->up & REPL_BIT(i)) && p->child_gen[i] == lk->gen[i]);
}

static void lk_args(repl_lk_t *lk, kb_args_t *a, int i, int kind)
{
    *a = lk->args;
    if (lk->fd)
        a->fd = lk->fd->cfd[i];
    if (lk->op == KB_FOP_ENTRYLK) {
        a->flags = kind == LK_NB ? KB_ELK_LOCK_NB : kind == LK_BLOCK ? KB_ELK_LOCK : KB_ELK_UNLOCK;
    } else {
        a->flags = kind == LK_BLOCK ? KB_LK_SETLKW : KB_LK_SETLK;
        a->lock.type = kind == LK_UNLOCK ? KB_LK_UNLCK : lk->ltype;
    }
}

static repl_fan_t *lk_fan(repl_lk_t *lk, repl_mask_t mask, int kind, repl_fan_fn fin)
{
    repl_priv_t *p = lk->priv;
    repl_fan_t *f = repl_fan_new(p, 1, lk->op, NULL, &lk->cred, lk->req, fin, lk);
    if (!f)
        return NULL;
    for (int i = 0; i < p->n; i++)
        if (mask & REPL_BIT(i)) {
            lk_args(lk, &f->args[i], i, kind);
            repl_fan_wind(f, i);
        }
    return f;
}

static void lk_unlock_done(repl_fan_t *f)
{
    repl_lk_t *lk = f->ctx;
    lk->ucont(lk);
}

void repl_lk_unlock(repl_lk_t *lk, repl_mask_t mask, repl_lk_fn cont)
{
    lk->ucont = cont;
    mask &= lk->priv->up;
    repl_fan_t *f = mask ? lk_fan(lk, mask, LK_UNLOCK, lk_unlock_done) : NULL;
    if (!f) {
        cont(lk);       /* nothing to unlock (or ENOMEM: the child drops it on disconnect) */
        return;
    }
    repl_fan_go(f);
}

static void lk_seq_next(repl_lk_t *lk);

static void lk_seq_done(repl_fan_t *f)
{
    repl_lk_t *lk = f->ctx;
    int i = lk->next - 1, st = f->status[i];
    if (st >= 0 && lk_held(lk, i))
        lk->granted |= REPL_BIT(i);
    else if (!repl_err_is_disconnect(st) && !lk->err)
        lk->err = st;
    lk_seq_next(lk);
}

/* Blocking phase: one child at a time, in index order. */
static void lk_seq_next(repl_lk_t *lk)
{
    repl_priv_t *p = lk->priv;
    while (lk->next < p->n && !(lk->seq_want & p->up & REPL_BIT(lk->next)))
        lk->next++;
    if (lk->next >= p->n) {
        lk->done(lk);
        return;
    }
    lk_snap(lk);
    repl_fan_t *f = lk_fan(lk, REPL_BIT(lk->next), LK_BLOCK, lk_seq_done);
    lk->next++;
    if (!f) {
        lk->err = lk->err ? lk->err : -ENOMEM;
        lk->done(lk);
        return;
    }
    repl_fan_go(f);
}

static void lk_seq_start(repl_lk_t *lk)
{
    lk->seq_want = lk->granted | lk->conflict;
    lk->granted = 0;
    lk->next = 0;
    lk_seq_next(lk);
}

static void lk_rollback_done(repl_lk_t *lk)
{
    lk->granted = 0;
    lk->err = -EAGAIN;
    lk->done(lk);
}

/* Record the replies of a non-blocking lock (part 0 of F). */
static void lk_nb_tally(repl_lk_t *lk, const repl_fan_t *f)
{
    repl_priv_t *p = lk->priv;
    for (int i = 0; i < p->n; i++) {
        if (!(f->sent[0] & REPL_BIT(i)))
            continue;
        int st = f->status[i];
        if (st >= 0) {
            if (lk_held(lk, i))
                lk->granted |= REPL_BIT(i);
        } else if (lk_conflict(st))
            lk->conflict |= REPL_BIT(i);
        else if (!repl_err_is_disconnect(st) && !lk->err)
            lk->err = st;
    }
}

/* After the non-blocking round: done, or release and go blocking (or fail). */
static void lk_nb_next(repl_lk_t *lk)
{
    if (!lk->conflict)
        lk->done(lk);
    else
        repl_lk_unlock(lk, lk->granted, lk->blocking ? lk_seq_start : lk_rollback_done);
}

static void lk_nb_done(repl_fan_t *f)
{
    lk_nb_tally(f->ctx, f);
    lk_nb_next(f->ctx);
}

void repl_lk_start(repl_lk_t *lk)
{
    repl_priv_t *p = lk->priv;
    lk->granted = lk->conflict = 0;
    lk->err = 0;
    repl_mask_t want = lk->want & p->up;
    if (!want) {
        lk->done(lk);
        return;
    }
    lk_snap(lk);
    repl_fan_t *f = lk_fan(lk, want, LK_NB, lk_nb_done);
    if (!f) {
        lk->err = -ENOMEM;
        lk->done(lk);
        return;
    }
    repl_fan_go(f);
}

/* ================= transaction lifetime ================= */

/* Drop what T holds (not its place in p->txns). */
static void tx_release(repl_txn_t *t)
{
    repl_priv_t *p = t->priv;
    if (t->slot_ino) {
        t->slot_ino->data_txn = NULL;
        repl_inode_unref(p, t->slot_ino);
    }
    for (int k = 0; k < t->nmark; k++)
        repl_inode_unref(p, t->mino[k]);
    for (int k = 0; k < t->ntgt; k++)
        free(t->tgt[k].name);
    if (t->idle_ev)
        event_free(t->idle_ev);
    free(t);
}

static void tx_free(repl_txn_t *t)
{
    repl_priv_t *p = t->priv;
    if (t->tprev)
        t->tprev->tnext = t->tnext;
    else
        p->txns = t->tnext;
    if (t->tnext)
        t->tnext->tprev = t->tprev;
    tx_release(t);
}

static void tx_maybe_free(repl_txn_t *t)
{
    if (t->state == TX_IDLE && !t->q_head && !t->active && !t->pin)
        tx_free(t);
}

static int tgt_cmp(const struct repl_tgt *a, const struct repl_tgt *b)
{
    int c = memcmp(a->gfid.b, b->gfid.b, 16);
    return c ? c : strcmp(a->name ? a->name : "", b->name ? b->name : "");
}

/* A data or metadata transaction locks and marks its one inode. */
static void tx_target_inode(repl_txn_t *t, repl_inode_t *ino)
{
    t->ntgt = t->nmark = 1;
    t->tgt[0].gfid = ino->gfid;
    t->mino[0] = repl_inode_ref(ino);
}

/* Lock targets and marked inodes of OP's transaction. */
static int tx_targets(repl_txn_t *t, repl_op_t *op)
{
    repl_priv_t *p = t->priv;
    const kb_args_t *a = op->args;
    if (op->col != KB_CL_ENTRY) {
        tx_target_inode(t, op->ino);
        return 0;
    }
    bool link = op->fop == KB_FOP_LINK;
    t->tgt[0].gfid = link ? a->gfid2 : a->gfid;
    t->tgt[0].name = kb_strdup0(link ? a->name2 : a->name);
    t->ntgt = 1;
    if (op->fop == KB_FOP_RENAME) {
        t->tgt[1].gfid = a->gfid2;
        t->tgt[1].name = kb_strdup0(a->name2);
        t->ntgt = 2;
        int c = tgt_cmp(&t->tgt[0], &t->tgt[1]);
        if (c > 0) {
            struct repl_tgt x = t->tgt[0];
            t->tgt[0] = t->tgt[1];
            t->tgt[1] = x;
        } else if (c == 0) {
            free(t->tgt[1].name);
            t->tgt[1].name = NULL;
            t->ntgt = 1;
        }
    }
    for (int k = 0; k < t->ntgt; k++)
        if (!t->tgt[k].name)
            return -ENOMEM;         /* entry ops always carry names */
    t->mino[0] = repl_inode_ref(op->ino);
    t->nmark = 1;
    if (op->ino2 && !kb_gfid_eq(&op->ino2->gfid, &op->ino->gfid))
        t->mino[t->nmark++] = repl_inode_ref(op->ino2);
    (void)p;
    return 0;
}

static repl_txn_t *tx_alloc(repl_priv_t *p, int col, bool eager)
{
    repl_txn_t *t = kb_zalloc(sizeof(*t));
    if (!t)
        return NULL;
    t->priv = p;
    t->col = col;
    t->eager = eager;
    t->owner = p->owner_base ^ ++p->owner_seq;
    return t;
}

static void tx_link(repl_txn_t *t)
{
    repl_priv_t *p = t->priv;
    t->tnext = p->txns;
    if (p->txns)
        p->txns->tprev = t;
    p->txns = t;
}

/* T becomes INO's data transaction (the eager slot holds a ref). */
static void tx_take_slot(repl_txn_t *t, repl_inode_t *ino)
{
    ino->data_txn = t;
    t->slot_ino = repl_inode_ref(ino);
}

static repl_txn_t *tx_new(repl_priv_t *p, repl_op_t *op, bool eager)
{
    repl_txn_t *t = tx_alloc(p, op->col, eager);
    if (!t)
        return NULL;
    if (tx_targets(t, op)) {
        t->ntgt = 2;                 /* free whichever names were made */
        tx_release(t);
        return NULL;
    }
    tx_link(t);
    return t;
}

/* Complete a modification that never ran (its fd, if any, is cleaned up). */
static void tx_fail_op(repl_op_t *op, int err)
{
    op->out = (repl_outcome_t){ .status = err, .reply_idx = -1 };
    repl_mod_reply(op);
}

static void enqueue(repl_txn_t *t, repl_op_t *op)
{
    op->next = NULL;
    if (t->q_tail)
        t->q_tail->next = op;
    else
        t->q_head = op;
    t->q_tail = op;
}

void repl_txn_submit(repl_op_t *op)
{
    repl_priv_t *p = op->priv;
    repl_txn_t *t = NULL;
    bool eager = op->col == KB_CL_DATA && p->eager;
    if (eager)
        t = op->ino->data_txn;
    if (!t) {
        /* tx_new links the txn into p->txns before it can be freed, so a
         * failure here leaves nothing behind. */
        if (!(t = tx_new(p, op, eager))) {
            tx_fail_op(op, -ENOMEM);
            return;
        }
        if (eager)
            tx_take_slot(t, op->ino);
    }
    op->txn = t;
    if (t->state == TX_OPEN && !t->close_wanted) {
        tx_run(t, op);
        return;
    }
    enqueue(t, op);
    if (t->state == TX_IDLE)
        tx_acquire(t);
}

/*
 * A regular file this client is creating to write: its eager data
 * transaction starts now, its lock and pre-op wound right behind the
 * CREATE on every connection. A brick runs one connection's calls in order
 * (the CREATE before them), so the first WRITE, which the kernel sends only
 * once the create is answered, finds the lock held and the mark taken
 * instead of paying their round trip (a create + first write: 5 round trips
 * to 4). If the CREATE failed somewhere, the pre-op fails there too and
 * the transaction ends the ordinary way, with nothing marked where the file
 * is missing. If the file is never written, the idle timer, FLUSH or
 * RELEASE closes it: a post-op and an unlock for nothing, the price of a
 * create-for-writing that writes nothing.
 * Only with every child up: a pre-op against an absent child could cross
 * the CREATE's own "every copy is clean" view of the new inode.
 */
void repl_txn_prime(repl_priv_t *p, repl_inode_t *ino)
{
    if (!p->eager || ino->data_txn || p->up != repl_all(&p->cfg))
        return;
    repl_txn_t *t = tx_alloc(p, KB_CL_DATA, true);
    if (!t)
        return;                      /* the first write takes its lock itself */
    tx_target_inode(t, ino);
    tx_link(t);
    tx_take_slot(t, ino);
    p->st.primed++;
    t->pin++;
    tx_acquire(t);
    t->pin--;
    tx_maybe_free(t);
}

void repl_txn_contended(repl_txn_t *t)
{
    t->close_wanted = true;     /* later ops queue for the next hold */
}

repl_mask_t repl_txn_members(const repl_txn_t *t)
{
    return t->members & t->priv->up;
}

/* ================= lock + pre-op ================= */

static void tx_lock_target(repl_txn_t *t);
static void tx_preop_target(repl_txn_t *t);
static void tx_open(repl_txn_t *t);

static void tx_lk_setup(repl_txn_t *t, int k)
{
    repl_priv_t *p = t->priv;
    repl_lk_t *lk = &t->lk;
    memset(lk, 0, sizeof(*lk));
    lk->priv = p;
    lk->ctx = t;
    lk->cred = p->icred;
    lk->cred.lk_owner = t->owner;
    lk->blocking = true;
    lk->args.gfid = t->tgt[k].gfid;
    if (t->tgt[k].name) {
        lk->op = KB_FOP_ENTRYLK;
        lk->args.name = (char *)REPL_DOM_ENTRY;
        lk->args.name2 = t->tgt[k].name;
    } else {
        lk->op = KB_FOP_INODELK;
        lk->args.name = (char *)(t->col == KB_CL_DATA ? REPL_DOM_DATA : REPL_DOM_META);
        lk->ltype = KB_LK_WRLCK;
        lk->args.lock = (kb_lock_t){ .type = KB_LK_WRLCK, .start = 0, .len = 0, .owner = t->owner };
    }
}

static void tx_locked(repl_lk_t *lk)
{
    repl_txn_t *t = lk->ctx;
    t->lk_mask[t->phase] = lk->granted;
    if (lk->err && !t->err)
        t->err = lk->err;
    if (++t->phase < t->ntgt && lk->granted) {
        tx_lock_target(t);
        return;
    }
    t->members = t->phase == t->ntgt ? lk->granted : 0;
    t->phase = 0;
    tx_preop_target(t);
}

/* ---- lock and pre-op in one round trip (changelog.h §5) ----
 * When the transaction has one lock target, which is also the one inode it
 * marks, and every up child's brick takes KB_XOP_ADD_LOCKED, the
 * non-blocking lock and the pre-op go out together: the brick applies the
 * pre-op only if it granted the lock just before, so no mark is ever taken
 * without the lock. If anything differs from "granted and marked on every
 * child", the marks that were taken are taken back (a plain ADD of the
 * opposite, on the same connections, so before any unlock) and the
 * transaction goes on as if only the lock had been sent: blocking
 * acquisition on a conflict, then the ordinary pre-op. */

static bool tx_combine_ok(const repl_txn_t *t)
{
    const repl_priv_t *p = t->priv;
    return t->phase == 0 && t->ntgt == 1 && t->nmark == 1 && p->up && !(p->up & ~p->xop_locked) &&
           kb_gfid_eq(&t->tgt[0].gfid, &t->mino[0]->gfid);
}

static void tx_undo_done(repl_fan_t *f)
{
    repl_inode_unref(f->priv, f->ctx);
}

/* Take back DELTA on MASK (fire and forget: the connections keep the order). */
static void tx_undo_marks(repl_txn_t *t, const kb_cl_matrix_t *delta, repl_mask_t mask)
{
    repl_priv_t *p = t->priv;
    kb_cl_matrix_t neg;
    for (int r = 0; r < KB_CL_ROWS; r++)
        for (int c = 0; c < KB_CL_COLS; c++)
            neg.v[r][c] = -delta->v[r][c];
    repl_inode_t *ino = repl_inode_ref(t->mino[0]);
    repl_fan_t *f = repl_cl_fan(p, ino, &neg, tx_undo_done, ino);
    if (!f) {
        repl_inode_unref(p, ino);   /* the extra mark stays: heal finds the copies equal */
        return;
    }
    repl_fan_send(f, mask);
}

static void tx_combined_done(repl_fan_t *f)
{
    repl_txn_t *t = f->ctx;
    repl_priv_t *p = t->priv;
    repl_lk_t *lk = &t->lk;
    lk_nb_tally(lk, f);
    /* A child whose connection went meanwhile lost the lock; its mark (if
     * taken) stays, as a dirty mark heal checks: it cannot be taken back
     * without the lock. */
    repl_mask_t marked = repl_fan_ok(f, 1) & lk->granted;
    for (int i = 0; i < p->n; i++) {
        int st = f->status[p->n + i];
        if ((f->sent[1] & REPL_BIT(i)) && (st == -EOPNOTSUPP || st == -EINVAL))
            p->xop_locked &= ~REPL_BIT(i);     /* it cannot after all: lock first there */
    }
    if (!lk->conflict && lk->granted == lk->want && marked == lk->want) {
        p->st.combined++;
        t->lk_mask[0] = t->members = lk->granted;
        t->phase = 0;
        tx_open(t);
        return;
    }
    if (marked) {
        kb_cl_matrix_t d;
        repl_cl_delta(&d, REPL_COL(t->col), 1, t->absent);
        tx_undo_marks(t, &d, marked);
    }
    lk_nb_next(lk);
}

/* False when it could not be sent (nothing was): lock the ordinary way. */
static bool tx_lock_combined(repl_txn_t *t)
{
    repl_priv_t *p = t->priv;
    repl_lk_t *lk = &t->lk;
    t->absent = repl_candidates(&p->cfg, t->col) & ~lk->want;
    kb_cl_matrix_t d;
    repl_cl_delta(&d, REPL_COL(t->col), 1, t->absent);
    kb_cl_cond_t c = { .kind = lk->op == KB_FOP_ENTRYLK ? KB_CL_COND_ENTRYLK : KB_CL_COND_INODELK,
                       .owner = t->owner };
    snprintf(c.domain, sizeof(c.domain), "%s", lk->args.name);
    snprintf(c.base, sizeof(c.base), "%s", t->tgt[0].name ? t->tgt[0].name : "");
    kb_buf_t *pl = kb_cl_cond_payload(&d, &c);
    repl_fan_t *f = pl ? repl_fan_new(p, 2, lk->op, NULL, &lk->cred, lk->req, tx_combined_done, t) : NULL;
    if (!f) {
        kb_buf_unref(pl);
        return false;
    }
    repl_fan_set_xop(f, 1, t->mino[0], pl, KB_XOP_ADD_LOCKED);
    lk->granted = lk->conflict = 0;
    lk->err = 0;
    lk_snap(lk);
    p->st.preops++;
    for (int i = 0; i < p->n; i++)
        if (lk->want & REPL_BIT(i)) {
            lk_args(lk, &f->args[i], i, LK_NB);
            repl_fan_wind(f, i);             /* the lock first: the brick checks it */
            repl_fan_wind(f, p->n + i);
        }
    repl_fan_go(f);
    return true;
}

static void tx_lock_target(repl_txn_t *t)
{
    repl_priv_t *p = t->priv;
    int k = t->phase;
    tx_lk_setup(t, k);
    t->lk.want = k == 0 ? p->up : t->lk_mask[k - 1];
    t->lk.done = tx_locked;
    p->st.locks++;
    if (tx_combine_ok(t) && tx_lock_combined(t))
        return;
    repl_lk_start(&t->lk);
}

static void tx_acquire(repl_txn_t *t)
{
    t->state = TX_LOCKING;
    t->phase = 0;
    t->members = t->absent = t->marked = t->marking = t->missed = 0;
    t->lk_mask[0] = t->lk_mask[1] = 0;
    t->applied = t->keep_dirty = t->close_wanted = false;
    t->err = 0;
    tx_lock_target(t);
}

static void tx_preop_done(repl_fan_t *f)
{
    repl_txn_t *t = f->ctx;
    repl_mask_t ok = repl_fan_ok(f, 0);
    for (int i = 0; i < t->priv->n; i++)
        if ((f->sent[0] & REPL_BIT(i)) && f->status[i] < 0 && !t->err &&
            !repl_err_is_disconnect(f->status[i]))
            t->err = f->status[i];
    t->members &= ok;
    if (++t->phase < t->nmark && t->members) {
        tx_preop_target(t);
        return;
    }
    tx_open(t);
}

static void tx_preop_target(repl_txn_t *t)
{
    repl_priv_t *p = t->priv;
    if (!t->members) {
        tx_open(t);
        return;
    }
    if (t->phase == 0)
        t->absent = repl_candidates(&p->cfg, t->col) & ~t->members;
    kb_cl_matrix_t d;
    repl_cl_delta(&d, REPL_COL(t->col), 1, t->absent);
    repl_fan_t *f = repl_cl_fan(p, t->mino[t->phase], &d, tx_preop_done, t);
    if (!f) {
        t->err = -ENOMEM;
        t->members = 0;
        tx_open(t);
        return;
    }
    p->st.preops++;
    repl_fan_send(f, t->members);
}

/* May modifications go ahead on the members? Judged on the counters as they
 * were before our own pre-op (its accusations against the absent are ours,
 * not evidence). */
static int tx_check(repl_txn_t *t)
{
    repl_priv_t *p = t->priv;
    if (!t->members)
        return t->err ? t->err : -ENOTCONN;
    for (int k = 0; k < t->nmark; k++) {
        repl_inode_t *ino = t->mino[k];
        kb_cl_matrix_t m[KB_CL_MAX_REPLICA];
        memcpy(m, ino->m, (size_t)p->n * sizeof(m[0]));
        for (int j = 0; j < p->n; j++)
            for (int i = 0; i < p->n; i++)
                if ((t->members & REPL_BIT(j)) && (t->absent & REPL_BIT(i)))
                    m[j].v[1 + i][t->col]--;
        repl_blame_t b;
        repl_blame_analyze(&p->cfg, m, ino->have, t->col, &b);
        int err = repl_modify_check(&p->cfg, t->col, t->members, &b);
        if (err)
            return err;
    }
    return 0;
}

static void tx_fail_queue(repl_txn_t *t, int err)
{
    repl_op_t *q = t->q_head;
    t->q_head = t->q_tail = NULL;
    while (q) {
        repl_op_t *next = q->next;
        tx_fail_op(q, err);
        q = next;
    }
}

static void tx_open(repl_txn_t *t)
{
    int err = tx_check(t);
    t->pin++;
    t->state = TX_OPEN;
    if (t->members)
        t->marked = t->missed = t->absent;
    if (err) {
        kb_log_req(KB_LOG_DEBUG, t->priv->xl->name, 0, "transaction refused: %s", strerror(-err));
        t->close_wanted = true;      /* ops arriving meanwhile wait for a new hold */
        tx_fail_queue(t, err);
        tx_close(t);
    } else {
        /* Run what was queued until now; ops arriving meanwhile either run
         * directly (txn open) or queue for the next hold (close wanted). */
        repl_op_t *q = t->q_head;
        t->q_head = t->q_tail = NULL;
        while (q) {
            repl_op_t *next = q->next;
            tx_run(t, q);
            q = next;
        }
        tx_settle(t);          /* e.g. every op was refused by tx_run */
    }
    t->pin--;
    tx_maybe_free(t);
}

/* ================= running ops ================= */

static void idle_cb(evutil_socket_t fd, short what, void *arg)
{
    repl_txn_t *t = arg;
    if (t->state == TX_OPEN && !t->active)
        tx_close(t);
}

/* Close T after MS idle milliseconds; false when no timer can be armed. */
static bool tx_arm_idle(repl_txn_t *t, uint32_t ms)
{
    repl_priv_t *p = t->priv;
    struct event_base *base = p->xl->graph ? p->xl->graph->base : NULL;
    if (!base || (!t->idle_ev && !(t->idle_ev = evtimer_new(base, idle_cb, t))))
        return false;
    struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };
    return evtimer_add(t->idle_ev, &tv) == 0;
}

static void tx_run(repl_txn_t *t, repl_op_t *op)
{
    repl_priv_t *p = t->priv;
    op->txn = t;
    if (t->eager) {
        /* Children may have left since the pre-op: the rules still hold? */
        repl_blame_t b;
        repl_inode_blame(p, t->mino[0], t->col, &b);
        int err = repl_modify_check(&p->cfg, t->col, repl_txn_members(t), &b);
        if (err) {
            tx_fail_op(op, err);
            return;
        }
    }
    t->active++;
    if (t->idle_ev)
        evtimer_del(t->idle_ev);
    repl_mod_wind(op);
}

/* Nothing running under an open T: close it, or (eager) let it idle. */
static void tx_settle(repl_txn_t *t)
{
    if (t->active || t->state != TX_OPEN)
        return;
    if (t->close_wanted || !t->eager || !t->priv->idle_ms || !tx_arm_idle(t, t->priv->idle_ms))
        tx_close(t);           /* without a timer an eager lock behaves as a plain one */
}

static void tx_op_end(repl_txn_t *t)
{
    t->active--;
    tx_settle(t);
}

static void tx_finish_op(repl_op_t *op)
{
    repl_txn_t *t = op->txn;
    t->pin++;
    repl_mod_reply(op);
    tx_op_end(t);
    t->pin--;
    tx_maybe_free(t);
}

static void tx_wake_marked(repl_txn_t *t)
{
    repl_op_t **pp = &t->wait_mark;
    repl_op_t *ready = NULL, **rt = &ready;
    while (*pp) {
        repl_op_t *op = *pp;
        if (!(op->out.blame & t->marking)) {
            *pp = op->next;
            op->next = NULL;
            *rt = op;
            rt = &op->next;
        } else {
            pp = &op->next;
        }
    }
    while (ready) {
        repl_op_t *next = ready->next;
        if (ready->out.blame & ~t->marked)
            t->keep_dirty = true;      /* the mark failed: heal must not trust the map */
        tx_finish_op(ready);
        ready = next;
    }
}

static void tx_mark_done(repl_fan_t *f)
{
    repl_txn_t *t = f->ctx;
    repl_mask_t set = f->aux;       /* what this mark blamed */
    t->marking &= ~set;
    if (repl_fan_ok(f, 0))
        t->marked |= set;
    t->pin++;
    tx_wake_marked(t);
    t->pin--;
    tx_maybe_free(t);
}

/* Blame SET on the survivors, once per hold. */
static void tx_mark(repl_txn_t *t, repl_mask_t set, repl_mask_t fallback)
{
    repl_priv_t *p = t->priv;
    repl_mask_t holders = t->members & p->up & ~t->missed;
    if (!holders)
        holders = fallback;
    kb_cl_matrix_t d;
    repl_cl_delta(&d, REPL_COL(t->col), 0, set);
    repl_fan_t *f = repl_cl_fan(p, t->mino[0], &d, tx_mark_done, t);
    if (!f) {
        t->keep_dirty = true;
        tx_wake_marked(t);
        return;
    }
    f->aux = set;
    t->marking |= set;
    p->st.marks++;
    repl_fan_send(f, holders);
}

static void tx_after_resend(repl_op_t *op)
{
    repl_txn_t *t = op->txn;
    if (op->resend_failed)
        t->keep_dirty = true;
    repl_mask_t need = op->out.blame & ~t->marked;
    if (!need) {
        tx_finish_op(op);
        return;
    }
    op->next = t->wait_mark;
    t->wait_mark = op;
    repl_mask_t start = need & ~t->marking;
    t->pin++;
    if (start)
        tx_mark(t, start, op->out.ok);
    t->pin--;
    tx_maybe_free(t);
}

void repl_txn_op_done(repl_op_t *op)
{
    repl_txn_t *t = op->txn;
    if (op->out.ok)
        t->applied = true;
    if (op->rflags & KB_RF_CONTENDED)
        t->close_wanted = true;
    if (op->untrackable && op->out.blame)
        t->keep_dirty = true;
    t->missed |= op->out.blame;
    /* A child that failed an op of this hold gets no more of them: later ops
     * go out tracked, and it is blamed once (heal brings it back). */
    t->members &= ~(op->out.blame & op->sent);
    if (!t->eager) {
        /* One op per txn: its marks ride on the post-op, it unwinds after —
         * unless every member applied it and nobody is blamed: then the
         * post-op only takes back the dirty mark, which says nothing a reader
         * or heal needs before the reply (a crash before it leaves the mark,
         * and heal finds the copies equal), so the op unwinds first and the
         * post-op and unlock follow (one round trip less for a create, an
         * unlink, a chmod). The lock is still held until then: the next op on
         * the same entry or inode waits for it as before. */
        t->active--;
        if (!t->missed && !t->marked && !t->keep_dirty && t->members) {   /* missed has op's blame */
            t->pin++;
            tx_close(t);
            t->pin--;
            repl_mod_reply(op);
            tx_maybe_free(t);
            return;
        }
        op->next = t->wait_post;
        t->wait_post = op;
        tx_close(t);
        return;
    }
    bool lost_in_flight = op->out.blame & op->sent;
    if (op->col == KB_CL_DATA && lost_in_flight && !op->tracked && op->out.ok) {
        if (op->fop == KB_FOP_WRITE || op->fop == KB_FOP_FALLOCATE) {
            repl_mod_resend(op, op->out.ok, tx_after_resend);
            return;
        }
        t->keep_dirty = true;     /* TRUNCATE / SETATTR: the range is unknown */
    }
    tx_after_resend(op);
}

/* ================= post-op + unlock ================= */

static void tx_postop_target(repl_txn_t *t);
static void tx_unlock_target(repl_txn_t *t);

static void tx_postop_done(repl_fan_t *f)
{
    repl_txn_t *t = f->ctx;
    t->phase++;
    tx_postop_target(t);
}

static void tx_unwind_post(repl_txn_t *t)
{
    repl_op_t *q = t->wait_post;
    t->wait_post = NULL;
    while (q) {
        repl_op_t *next = q->next;
        repl_mod_reply(q);
        q = next;
    }
}

static void tx_postop_target(repl_txn_t *t)
{
    repl_priv_t *p = t->priv;
    if (t->phase >= t->nmark || !t->members) {
        tx_unwind_post(t);
        t->phase = 0;
        tx_unlock_target(t);
        return;
    }
    repl_mask_t holders = t->members & p->up & ~t->missed;
    kb_cl_matrix_t d;
    repl_cl_delta(&d, REPL_COL(t->col), t->keep_dirty ? 0 : -1,
                  t->applied ? t->missed & ~t->marked : 0);
    if (!t->applied)       /* nothing changed anywhere: take back the pre-op's blame */
        for (int i = 0; i < p->n; i++)
            if (t->marked & REPL_BIT(i))
                d.v[1 + i][t->col] = -1;
    static const kb_cl_matrix_t zero;
    repl_fan_t *f = NULL;
    if (holders && memcmp(&d, &zero, sizeof(d)))
        f = repl_cl_fan(p, t->mino[t->phase], &d, tx_postop_done, t);
    if (!f) {
        t->phase++;
        tx_postop_target(t);
        return;
    }
    p->st.postops++;
    repl_fan_send(f, holders);
}

static void tx_unlocked(repl_lk_t *lk)
{
    repl_txn_t *t = lk->ctx;
    t->phase++;
    tx_unlock_target(t);
}

static void tx_unlock_target(repl_txn_t *t)
{
    repl_priv_t *p = t->priv;
    int k = t->phase;
    if (k >= t->ntgt) {
        t->state = TX_IDLE;
        t->members = 0;
        t->lk_mask[0] = t->lk_mask[1] = 0;
        t->pin++;                  /* tx_acquire may run a whole hold synchronously */
        if (t->q_head)
            tx_acquire(t);         /* ops arrived while closing: next hold */
        t->pin--;
        tx_maybe_free(t);
        return;
    }
    tx_lk_setup(t, k);
    if (t->lk_mask[k] & p->up)
        p->st.unlocks++;
    repl_lk_unlock(&t->lk, t->lk_mask[k], tx_unlocked);
}

static void tx_close(repl_txn_t *t)
{
    if (t->state == TX_CLOSING || t->state == TX_IDLE)
        return;
    t->state = TX_CLOSING;
    if (t->idle_ev)
        evtimer_del(t->idle_ev);
    t->pin++;
    t->phase = 0;
    tx_postop_target(t);
    t->pin--;
    tx_maybe_free(t);
}

/* ================= events ================= */

void repl_txn_flush(repl_priv_t *p, repl_inode_t *ino)
{
    repl_txn_t *t = ino->data_txn;
    if (!t || t->state == TX_IDLE || t->state == TX_CLOSING)
        return;
    t->close_wanted = true;
    if (t->state == TX_OPEN && !t->active)
        tx_close(t);
}

void repl_txn_child_event(repl_priv_t *p, int i, bool up)
{
    repl_mask_t bit = REPL_BIT(i);
    for (repl_txn_t *t = p->txns; t; t = t->tnext) {
        if (!up) {
            /* Its locks died with the connection; it gets no more ops. */
            t->members &= ~bit;
            t->lk_mask[0] &= ~bit;
            t->lk_mask[1] &= ~bit;
        } else if (t->eager && (t->state == TX_OPEN || t->state == TX_LOCKING)) {
            /* Close soon (from the loop, never from inside notify) so the
             * returning child is locked and written by the next hold. */
            t->close_wanted = true;
            if (t->state == TX_OPEN && !t->active)
                tx_arm_idle(t, 0);
        }
    }
}

void repl_txn_fini(repl_priv_t *p)
{
    while (p->txns) {
        repl_txn_t *t = p->txns;
        t->pin = 0;
        t->state = TX_IDLE;
        t->q_head = NULL;
        t->active = 0;
        tx_free(t);
    }
}
