/*
 * read.c — reads and lookups of cluster/replicate.
 *
 * A read goes to ONE child: up, a source of the op's changelog column (no
 * copy blames it), never the arbiter; files are spread over the readable
 * copies by gfid hash (read-hash-mode 1). The changelog view comes from the
 * per-inode cache, fetched (XATTROP GET on every up child) when stale: after
 * any CHILD_UP, or never fetched. Lookup and open always refresh it; our own
 * pre-ops, marks and post-ops update it from their replies. A disconnect or
 * -EIO from the chosen child retries on the next readable one; the
 * application sees an error only when no readable copy answers.
 *
 * File data (READ, LSEEK, RCHECKSUM) is only served from a copy that a view
 * fetched AFTER the read began calls a source. The cache cannot promise
 * that: another client that has a copy down (while we have it up) writes to
 * the others and blames it there — before it acknowledges the write — and
 * nothing tells us; a cached view, however young, may predate that blame
 * (thrash run r6: mount B wrote and fsynced record 40 with node 1 down to it,
 * mount A, node 1 up to it, took the lock next and read record 39 from node
 * 1). So such a read winds the XATTROP GET on every up child ALONGSIDE the
 * read to the copy the cache picks (one round trip, not two), and the
 * answer waits for the check: served if the fresh view still calls that
 * copy a source, else dropped and read again from a source of the fresh
 * view (which, fetched after the read began, serves any retry). Any write
 * acknowledged before the read began is then seen: its copies hold it, or
 * the survivors' blame is in the view. Not done for STAT and the rest:
 * attributes are cached by the kernel anyway, and they would pay it on
 * every getattr. Rejected: a shorter TTL (any TTL leaves the window), a
 * refresh before each read (two round trips), trusting the cache while we
 * hold the eager data lock (right, as no one else can write then, but the
 * hold's state is private to txn.c; a later optimisation).
 *
 * No check rides with a read of a copy that every quorum includes
 * (repl_always_written: replica 2 with quorum auto, child 0): no write that
 * missed it was acknowledged, so no blame the check could find concerns an
 * acknowledged write (one applied short of quorum failed; its data may be
 * read either way). This holds while every client applies the same quorum
 * to the same child order; lowering cluster.quorum-type while a client is
 * cut off from child 0 opens a window until the other clients have switched
 * graphs (as it opens split-brain). The decision is made at the pick, so a
 * read that fails over to another copy sends its check then.
 *
 * With cluster.choose-local, data reads prefer copies on this host, and
 * among several local ones (a volume on one host) the one read unchecked
 * (repl_read_prefer). STAT and LOOKUP keep the first readable copy (below).
 *
 * Concurrent reads of one inode share checks (4 KiB random reads at queue
 * depth 16 would otherwise pay 2-3 extra RPCs each): per inode at most one
 * check is in flight. A read that begins with none out sends one alongside
 * its read, as above. A read that begins while one is out does NOT use it:
 * it was sent before the read began and may predate the blame. It joins the
 * NEXT check, sent the moment the one out comes back, and one next check
 * answers every read that joined it. The reads' own RPCs still go at once
 * to the cached pick; only their answers wait, for at most two checks.
 * Rejected: answering a joiner from the check out (the stale read again),
 * and a check per read (the cost above).
 *
 * LOOKUP goes to every up child (cheap) so that copies holding different
 * objects under one name (gfid or type mismatch) give -EIO, and a name that
 * exists on some copies only is settled by the parent directory's entry
 * changelog (repl_lookup_merge). A nameless LOOKUP (by gfid) has no parent
 * to ask: it finds the object on the copies that hold it. The attributes
 * returned come from a readable copy of the object.
 *
 * READDIR cookies are per brick: a listing continues on the child that gave
 * them (offset != 0); if that child is lost mid-listing the READDIR fails
 * (it cannot be resumed elsewhere).
 */
#include <sys/stat.h>
#include "lib/log.h"
#include "xlators/cluster/replicate/replicate.h"

/* Column whose sources may serve OP on INO (-1: any data copy). */
static int read_col(kb_op_t op, const repl_inode_t *ino)
{
    switch (op) {
    case KB_FOP_READ: case KB_FOP_LSEEK: case KB_FOP_RCHECKSUM:
        return KB_CL_DATA;
    case KB_FOP_STAT:
        return !ino->type || S_ISREG(ino->type) ? KB_CL_DATA : KB_CL_META;
    case KB_FOP_READDIR:
        return KB_CL_ENTRY;
    case KB_FOP_STATFS:
        return -1;
    default:
        return KB_CL_META;
    }
}

static void read_pick(repl_op_t *op);

/* Ops that return file data: checked against a view fetched alongside (top). */
static bool read_needs_check(const repl_priv_t *p, kb_op_t fop)
{
    return p->n > 1 && (fop == KB_FOP_READ || fop == KB_FOP_LSEEK || fop == KB_FOP_RCHECKSUM);
}

/* Does the view (fresh, once the check is back) still call child I a source? */
static bool read_still_source(repl_op_t *op, int i)
{
    repl_priv_t *p = op->priv;
    int col = read_col(op->fop, op->ino);
    repl_blame_t b;
    repl_inode_blame(p, op->ino, col, &b);
    return repl_readable(&p->cfg, col, p->up, &b) & REPL_BIT(i);
}

/* What op->reply holds while the check is out. */
enum read_park {
    READ_PARK_NONE,
    READ_PARK_CHILD,   /* op->child's answer: served if the check keeps it a source */
    READ_PARK_PICK,    /* nothing readable in the cached view: pick again with the fresh one */
    READ_PARK_FINAL,   /* -ENOMEM keeping an answer: given as is */
};

/* Complete OP with R, or keep R until the check comes back (OP is on its
 * inode's chk_cur or chk_next list, so OP must live until then). */
static void read_end(repl_op_t *op, const kb_reply_t *r, int park)
{
    if (!op->checking) {
        repl_op_reply(op, r);
        return;
    }
    kb_reply_clear(&op->reply);
    if (kb_reply_copy(&op->reply, r)) {
        memset(&op->reply, 0, sizeof(op->reply));
        op->reply.status = -ENOMEM;
        park = READ_PARK_FINAL;
    }
    op->parked = park;
}

/* OP's check came back: the view postdates the read's start. */
static void check_landed(repl_op_t *op)
{
    op->checking = false;
    op->checked = true;
    int park = op->parked;
    op->parked = READ_PARK_NONE;
    if (park == READ_PARK_NONE)
        return;                   /* the read is still out: read_cbk decides */
    if (park == READ_PARK_FINAL || (park == READ_PARK_CHILD && read_still_source(op, op->child))) {
        repl_op_reply(op, &op->reply);
        return;
    }
    kb_log_req(KB_LOG_DEBUG, op->priv->xl->name, op->req,
               "%s: child %d is no source any more (another client's mark), reading again",
               kb_fop_name(op->fop), op->child);
    kb_reply_clear(&op->reply);
    read_pick(op);
}

/* Send F, the check of INO, for the reads on ino->chk_cur. Takes a ref on
 * INO, dropped by check_done. F may finish before this returns. */
static void check_send(repl_priv_t *p, repl_inode_t *ino, repl_fan_t *f)
{
    f->req = ino->chk_cur->req;   /* logs name the first read's request */
    p->st.checks++;
    repl_inode_ref(ino);
    repl_fan_send(f, p->up);
}

static void check_done(repl_fan_t *f)
{
    repl_priv_t *p = f->priv;
    repl_inode_t *ino = f->ctx;
    repl_inode_fetched(p, ino);
    repl_op_t *done = ino->chk_cur;
    ino->chk_cur = NULL;
    if (ino->chk_next) {          /* reads that began while F was out: their own check */
        repl_op_t *rev = NULL;    /* pushed newest first: answer oldest first */
        for (repl_op_t *o = ino->chk_next, *nx; o; o = nx) {
            nx = o->chk_link;
            o->chk_link = rev;
            rev = o;
        }
        repl_fan_t *nf = ino->chk_fan;
        ino->chk_fan = NULL;
        ino->chk_next = NULL;
        ino->chk_cur = rev;
        check_send(p, ino, nf);
    }
    /* Each answer may unwind, and the caller may read INO again meanwhile:
     * it finds the state above consistent (that read joins or starts a
     * check). Nothing of F is used past this point but INO's ref. */
    for (repl_op_t *o = done, *nx; o; o = nx) {
        nx = o->chk_link;
        o->chk_link = NULL;
        check_landed(o);
    }
    repl_inode_unref(p, ino);
}

/* OP's answer must wait for a view fetched after it began (top). Per inode
 * one check is in flight at most: with none, OP sends one now (alongside
 * its read); else the one out was sent before OP began and says nothing
 * about it, so OP joins the next, sent when that one comes back, which
 * answers every read that joined it. Under load that is one check per
 * batch of reads instead of one per read; alone (QD1) nothing changes. */
static int read_check(repl_op_t *op)
{
    repl_priv_t *p = op->priv;
    repl_inode_t *ino = op->ino;
    if (!ino->chk_fan && !(ino->chk_fan = repl_cl_fan(p, ino, NULL, check_done, ino)))
        return -ENOMEM;
    op->checking = true;
    if (ino->chk_cur) {           /* a check is out: join the next */
        op->chk_link = ino->chk_next;
        ino->chk_next = op;
        return 0;
    }
    repl_fan_t *f = ino->chk_fan;
    ino->chk_fan = NULL;
    op->chk_link = NULL;
    ino->chk_cur = op;
    check_send(p, ino, f);
    return 0;
}

static void read_cbk(void *cookie, const kb_reply_t *r)
{
    repl_op_t *op = cookie;
    repl_priv_t *p = op->priv;
    int i = op->child;
    if (r->status < 0 && repl_read_retryable(r->status)) {
        op->tried |= REPL_BIT(i);
        op->last_err = r->status;
        p->st.retries++;
        kb_log_req(KB_LOG_DEBUG, p->xl->name, op->req, "%s on child %d: %s, trying another copy",
                   kb_fop_name(op->fop), i, strerror(-r->status));
        read_pick(op);
        return;
    }
    if (op->checked && !read_still_source(op, i)) {
        kb_log_req(KB_LOG_DEBUG, p->xl->name, op->req,
                   "%s: child %d is no source any more (another client's mark), reading again",
                   kb_fop_name(op->fop), i);
        read_pick(op);            /* the view is fresh: the pick avoids it */
        return;
    }
    if (op->fop == KB_FOP_READDIR && op->fd && r->status >= 0)
        op->fd->rd_child = i;
    read_end(op, r, READ_PARK_CHILD);
}

static void read_wind(repl_op_t *op)
{
    repl_priv_t *p = op->priv;
    int i = op->child;
    if (op->fd && !(op->fd->opened & REPL_BIT(i))) {
        op->tried |= REPL_BIT(i);         /* could not (re)open it there */
        op->last_err = op->last_err ? op->last_err : -EBADF;
        read_pick(op);
        return;
    }
    op->own = *op->args;
    if (op->fd)
        op->own.fd = op->fd->cfd[i];
    kb_wind(p->xl->children[i], op->fop, &op->own, &op->cred, op->req, read_cbk, op);
}

/* Attributes (LOOKUP, STAT) come from the FIRST readable copy, like the
 * attributes in modification replies (the lowest child that applied it):
 * each brick keeps its own ctime, and two mounts (a VM's source and
 * destination host during live migration) must see the same one. Data reads
 * still spread over the copies by gfid hash. */
static bool attr_fop(kb_op_t fop)
{
    return fop == KB_FOP_STAT || fop == KB_FOP_LOOKUP;
}

static int attr_mode(const repl_priv_t *p, kb_op_t fop)
{
    return attr_fop(fop) ? 0 : p->read_mode;
}

static void read_pick(repl_op_t *op)
{
    repl_priv_t *p = op->priv;
    repl_blame_t b;
    int col = read_col(op->fop, op->ino);
    if (col >= 0)
        repl_inode_blame(p, op->ino, col, &b);
    repl_mask_t r = repl_readable(&p->cfg, col >= 0 ? col : KB_CL_DATA, p->up, col >= 0 ? &b : NULL);
    if (op->fop == KB_FOP_READDIR && op->fd && op->args->off && op->fd->rd_child >= 0)
        r &= REPL_BIT(op->fd->rd_child);
    r &= ~op->tried;
    if (!attr_fop(op->fop))
        r = repl_read_prefer(r, p->local, p->nocheck);
    int i = repl_read_pick(r, kb_gfid_hash(&op->ino->gfid), attr_mode(p, op->fop));
    /* A view fetched after the read began must back the copy read (top):
     * send the check alongside, unless that copy is one no acknowledged
     * write missed, or nothing is readable in the cached view (the fresh
     * one may find a copy). */
    if (read_needs_check(p, op->fop) && !op->checking && !op->checked &&
        (i < 0 || !(p->nocheck & REPL_BIT(i))) && read_check(op)) {
        kb_reply_t e = { .status = -ENOMEM };
        read_end(op, &e, READ_PARK_FINAL);
        return;
    }
    if (i < 0) {
        kb_reply_t e = { .status = op->last_err ? op->last_err : repl_unreadable_err(col >= 0 ? &b : NULL) };
        read_end(op, &e, READ_PARK_PICK);
        return;
    }
    op->child = i;
    if (op->fd && !(op->fd->opened & REPL_BIT(i))) {
        repl_fd_ensure(op, op->fd, REPL_BIT(i), read_wind);
        return;
    }
    read_wind(op);
}

void repl_read(kb_call_t *call)
{
    repl_priv_t *p = call->xl->priv;
    repl_op_t *op = repl_op_new(p, call);
    if (!op) {
        kb_unwind_err(call, -ENOMEM);
        return;
    }
    const kb_args_t *a = call->args;
    if (kb_args_uses_fd(op->fop, a)) {
        if (!(op->fd = repl_fd_from(p, a->fd)) || op->fd->lk_lost) {
            repl_op_fail(op, op->fd ? op->fd->lk_lost : -EBADF);   /* lk_lost: lklog.c */
            return;
        }
        op->ino = repl_inode_ref(op->fd->ino);
    } else if (!(op->ino = repl_inode_get(p, &a->gfid))) {
        repl_op_fail(op, -ENOMEM);
        return;
    }
    if (read_needs_check(p, op->fop))
        p->st.dreads++;
    if (op->fop != KB_FOP_STATFS && !repl_inode_fresh(p, op->ino)) {
        op->checked = read_needs_check(p, op->fop);   /* this refresh postdates the start */
        repl_refresh(op, op->ino, repl_all(&p->cfg), read_pick);
        return;
    }
    read_pick(op);
}

/* ================= lookup ================= */

static void lookup_merge(repl_op_t *op);

static void lookup_reply(repl_fan_t *f, int slot, const kb_reply_t *r)
{
    repl_op_t *op = f->ctx;
    if (slot >= op->priv->n)
        return;                       /* changelog part: stored by the fan */
    op->lst[slot] = r->status;
    if (r->status >= 0) {
        op->lgfid[slot] = r->attr.gfid;
        op->lattr[slot] = r->attr;
    }
}

static void lookup_done(repl_fan_t *f)
{
    repl_op_t *op = f->ctx;
    op->sent = f->sent[0];
    if (f->sent[1])
        repl_inode_fetched(op->priv, op->ino);   /* nameless: refreshed alongside */
    lookup_merge(op);
}

static void lookup_final(repl_op_t *op)
{
    repl_priv_t *p = op->priv;
    repl_inode_t *obj = op->ino2 ? op->ino2 : op->ino;
    repl_mask_t found = op->out.ok;
    int col = S_ISREG(obj->type) ? KB_CL_DATA : KB_CL_META;
    repl_blame_t b;
    repl_inode_blame(p, obj, col, &b);
    repl_mask_t r = repl_readable(&p->cfg, col, p->up, &b) & found;
    int i = repl_read_pick(r, kb_gfid_hash(&obj->gfid), attr_mode(p, KB_FOP_LOOKUP));
    if (i < 0)      /* split-brain or only sinks up: name it anyway; reads will say EIO */
        i = repl_first(found & repl_data_children(&p->cfg));
    if (i < 0)
        i = repl_first(found);
    kb_reply_t rep = { .status = 0, .attr = op->lattr[i] };
    repl_op_reply(op, &rep);
}

static void lookup_merge(repl_op_t *op)
{
    repl_priv_t *p = op->priv;
    bool named = op->args->name != NULL;
    uint32_t type[KB_CL_MAX_REPLICA];
    for (int i = 0; i < p->n; i++)
        type[i] = op->lattr[i].mode & S_IFMT;
    /* The parent's view is fetched afresh when the copies disagree (rare),
     * never taken from the cache: another client may have marked it. */
    repl_blame_t pb;
    bool pknown = named && op->stage == 1;
    if (pknown)
        repl_inode_blame(p, op->ino, KB_CL_ENTRY, &pb);
    repl_mask_t found;
    bool need;
    int st = repl_lookup_merge(&p->cfg, op->sent, op->lst, op->lgfid, type, pknown ? &pb : NULL,
                               &found, &need);
    if (need && !named) {
        /* Nameless (by gfid): no parent to settle it, and asking the
         * object's own changelog again never would (that looped for ever).
         * The object is where it is found, as a gfid lookup in GlusterFS:
         * a copy that lacks it is being created or unlinked (a migration's
         * old copy goes brick by brick) or missed it, which entry heal of
         * its parent settles. */
        need = false;
        st = 0;
        for (int i = 0; i < p->n; i++)
            if ((op->sent & REPL_BIT(i)) && op->lst[i] >= 0)
                found |= REPL_BIT(i);
    }
    if (need) {                       /* copies disagree on the name: ask the parent */
        op->stage = 1;
        repl_refresh(op, op->ino, repl_all(&p->cfg), lookup_merge);
        return;
    }
    if (st < 0) {
        if (st == -EIO)
            kb_warn(p->xl->name, "lookup %s: copies disagree (gfid/type/entry split-brain)",
                    named ? op->args->name : "(nameless)");
        repl_op_fail(op, st);
        return;
    }
    op->out.ok = found;
    int f0 = repl_first(found);
    if (!named) {
        op->ino->type = type[f0];
        lookup_final(op);
        return;
    }
    if (!(op->ino2 = repl_inode_get(p, &op->lgfid[f0]))) {
        repl_op_fail(op, -ENOMEM);
        return;
    }
    op->ino2->type = type[f0];
    repl_refresh(op, op->ino2, found, lookup_final);
}

void repl_lookup(kb_call_t *call)
{
    repl_priv_t *p = call->xl->priv;
    repl_op_t *op = repl_op_new(p, call);
    if (!op) {
        kb_unwind_err(call, -ENOMEM);
        return;
    }
    bool named = call->args->name != NULL;
    op->ino = repl_inode_get(p, &call->args->gfid);
    op->lattr = calloc((size_t)p->n, sizeof(kb_iatt_t));
    repl_fan_t *f = op->ino && op->lattr
        ? repl_fan_new(p, named ? 1 : 2, KB_FOP_LOOKUP, call->args, &op->cred, op->req, lookup_done, op)
        : NULL;
    if (f && !named && repl_fan_set_cl(f, 1, op->ino, NULL)) {
        free(f);
        f = NULL;
    }
    if (!f) {
        repl_op_fail(op, -ENOMEM);
        return;
    }
    f->on_reply = lookup_reply;
    for (int i = 0; i < p->n; i++)
        if (p->up & REPL_BIT(i)) {
            repl_fan_wind(f, i);
            if (!named)
                repl_fan_wind(f, p->n + i);
        }
    repl_fan_go(f);
}
