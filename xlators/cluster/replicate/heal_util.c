/*
 * heal_util.c — the asynchronous building blocks of self-heal
 * (heal_internal.h): deferred work, batches of calls to children, lock
 * sets, directory listings.
 *
 * Promises
 *  - A batch's continuation runs exactly once, from the loop (never inside
 *    the wind that completed it), after every call of the batch answered.
 *  - A lock set either holds every child it was asked for, or nothing.
 *  - Nothing here touches replicate's own state but the configuration and
 *    the up mask: heal's calls never go through replicate's fan-outs, so a
 *    reply arriving after replicate's fini only finds heal's own (kept)
 *    state.
 */
#include <dirent.h>
#include <sys/stat.h>
#include <event2/event.h>
#include "lib/log.h"
#include "xlators/cluster/replicate/heal_internal.h"

/* ---------------- deferred work ---------------- */

void heal_later_cb(int fd, short what, void *arg)
{
    heal_t *hs = arg;
    /* Run what is queued now; work queued meanwhile waits for the next
     * pass (the event is activated again), so the loop keeps serving I/O
     * between steps. Invariant: an item's storage outlives its turn (an
     * object has at most one continuation queued). */
    hlater_t *l = hs->lhead;
    hs->lhead = hs->ltail = NULL;
    while (l) {
        hlater_t *next = l->next;
        l->next = NULL;
        l->fn(l->arg);
        l = next;
    }
}

void heal_later(heal_t *hs, hlater_t *l, void (*fn)(void *), void *arg)
{
    l->fn = fn;
    l->arg = arg;
    l->next = NULL;
    if (!hs->later_ev) {        /* no loop (cannot happen in a graph): run now */
        fn(arg);
        return;
    }
    bool was_empty = !hs->lhead;
    if (hs->ltail)
        hs->ltail->next = l;
    else
        hs->lhead = l;
    hs->ltail = l;
    if (was_empty)
        event_active(hs->later_ev, EV_TIMEOUT, 0);
}

/* ---------------- batches ---------------- */

hbatch_t *hb_new(heal_t *hs, int cap, uint64_t req_id, uint64_t lk_owner)
{
    hbatch_t *b = kb_zalloc(sizeof(*b) + (size_t)(cap > 0 ? cap : 1) * sizeof(hreq_t));
    if (!b)
        return NULL;
    b->hs = hs;
    b->cap = cap;
    b->cred = hs->cred;
    b->cred.lk_owner = lk_owner;
    b->req_id = req_id;
    b->next = hs->batches;
    if (hs->batches)
        hs->batches->prev = b;
    hs->batches = b;
    return b;
}

hreq_t *hb_add(hbatch_t *b, int child, kb_op_t op, const kb_args_t *a)
{
    if (b->err)
        return NULL;
    assert(b->n < b->cap);
    if (b->n >= b->cap) {
        b->err = -EOVERFLOW;
        return NULL;
    }
    hreq_t *q = &b->q[b->n];
    if (kb_args_copy(&q->a, a)) {
        b->err = -ENOMEM;
        return NULL;
    }
    q->child = child;
    q->op = op;
    q->b = b;
    q->r.status = -EINPROGRESS;
    b->n++;
    return q;
}

void hb_free(hbatch_t *b)
{
    if (!b)
        return;
    heal_t *hs = b->hs;
    if (b->prev)
        b->prev->next = b->next;
    else
        hs->batches = b->next;
    if (b->next)
        b->next->prev = b->prev;
    for (int i = 0; i < b->n; i++) {
        kb_args_clear(&b->q[i].a);
        kb_reply_clear(&b->q[i].r);
    }
    free(b);
}

hreq_t *hb_find(hbatch_t *b, int child, kb_op_t op, int from)
{
    for (int i = from; i < b->n; i++)
        if (b->q[i].child == child && b->q[i].op == op)
            return &b->q[i];
    return NULL;
}

static void hb_fire(void *arg)
{
    hbatch_t *b = arg;
    b->cont(b->ctx, b);
}

static void hb_put(hbatch_t *b)
{
    if (--b->pending > 0)
        return;
    heal_t *hs = b->hs;
    if (hs->dead) {             /* repl_heal_fini ran: nobody continues */
        hb_free(b);
        if (!hs->nwind)
            heal_free_all(hs);
        return;
    }
    heal_later(hs, &b->later, hb_fire, b);
}

static void hb_cbk(void *cookie, const kb_reply_t *r)
{
    hreq_t *q = cookie;
    hbatch_t *b = q->b;
    b->hs->nwind--;
    if (!b->hs->dead && kb_reply_copy(&q->r, r))
        q->r = (kb_reply_t){ .status = -ENOMEM };
    else if (b->hs->dead)
        q->r = (kb_reply_t){ .status = r->status };
    hb_put(b);
}

void hb_go(hbatch_t *b, hb_fn cont, void *ctx)
{
    heal_t *hs = b->hs;
    b->cont = cont;
    b->ctx = ctx;
    b->pending = 1;             /* the guard */
    if (!b->err) {
        kb_xlator_t *xl = hs->p->xl;
        b->pending += b->n;
        for (int i = 0; i < b->n; i++) {
            hreq_t *q = &b->q[i];
            hs->nwind++;
            kb_wind(xl->children[q->child], q->op, &q->a, &b->cred, b->req_id, hb_cbk, q);
        }
    }
    hb_put(b);
}

/* ---------------- lock sets ---------------- */

enum { LK_NB, LK_BLOCK, LK_UNLOCK };

static void lk_args(const hlock_t *l, kb_args_t *a, int kind)
{
    memset(a, 0, sizeof(*a));
    a->gfid = l->gfid;
    a->name = (char *)l->dom;
    if (l->op == KB_FOP_ENTRYLK) {
        a->flags = kind == LK_NB ? KB_ELK_LOCK_NB : kind == LK_BLOCK ? KB_ELK_LOCK : KB_ELK_UNLOCK;
        return;
    }
    a->flags = kind == LK_BLOCK ? KB_LK_SETLKW : KB_LK_SETLK;
    a->lock = (kb_lock_t){ .type = kind == LK_UNLOCK ? KB_LK_UNLCK : KB_LK_WRLCK, .start = l->start,
                           .len = l->len, .owner = l->owner };
}

static hbatch_t *lk_batch(hlock_t *l, repl_mask_t mask, int kind)
{
    heal_t *hs = l->hs;
    hbatch_t *b = hb_new(hs, hs->p->n, l->req, l->owner);
    if (!b)
        return NULL;
    for (int i = 0; i < hs->p->n; i++)
        if (mask & REPL_BIT(i)) {
            kb_args_t a;
            lk_args(l, &a, kind);
            hb_add(b, i, l->op, &a);
        }
    return b;
}

static bool lk_conflict(int st) { return st == -EAGAIN || st == -EBUSY; }

static void lk_finish(void *arg)
{
    hlock_t *l = arg;
    l->cont(l->ctx, l->err);
}

static void lk_dropped_fail(void *ctx, int err)
{
    hlock_t *l = ctx;
    lk_finish(l);
}

/* Give up: release what is held, then report l->err. */
static void lk_fail(hlock_t *l, int err)
{
    l->err = err;
    hlock_drop(l, lk_dropped_fail, l);
}

static void lk_seq_next(hlock_t *l);

static void lk_seq_done(void *ctx, hbatch_t *b)
{
    hlock_t *l = ctx;
    int st = b->err ? b->err : b->q[0].r.status;
    int i = b->err ? -1 : b->q[0].child;
    hb_free(b);
    if (st < 0) {
        lk_fail(l, st);
        return;
    }
    l->granted |= REPL_BIT(i);
    lk_seq_next(l);
}

/* Blocking phase: one child at a time, in index order (as replicate). */
static void lk_seq_next(hlock_t *l)
{
    repl_priv_t *p = l->hs->p;
    while (l->next < p->n && !(l->want & REPL_BIT(l->next)))
        l->next++;
    if (l->next >= p->n) {
        l->err = 0;
        lk_finish(l);
        return;
    }
    if (!(p->up & REPL_BIT(l->next))) {
        lk_fail(l, -ENOTCONN);
        return;
    }
    hbatch_t *b = lk_batch(l, REPL_BIT(l->next), LK_BLOCK);
    l->next++;
    if (!b) {
        lk_fail(l, -ENOMEM);
        return;
    }
    hb_go(b, lk_seq_done, l);
}

static void lk_seq_start(void *ctx, int err)
{
    hlock_t *l = ctx;
    l->next = 0;
    lk_seq_next(l);
}

static void lk_nb_done(void *ctx, hbatch_t *b)
{
    hlock_t *l = ctx;
    repl_mask_t conflict = 0;
    int err = b->err;
    for (int k = 0; k < b->n && !b->err; k++) {
        int st = b->q[k].r.status;
        if (st >= 0)
            l->granted |= REPL_BIT(b->q[k].child);
        else if (lk_conflict(st))
            conflict |= REPL_BIT(b->q[k].child);
        else if (!err)
            err = st;
    }
    hb_free(b);
    if (err)
        lk_fail(l, err);
    else if (!conflict)
        lk_finish(l);
    else if (!l->blocking)
        lk_fail(l, -EAGAIN);
    else
        hlock_drop(l, lk_seq_start, l);
}

void hlock_take(hlock_t *l)
{
    repl_priv_t *p = l->hs->p;
    l->granted = 0;
    l->err = 0;
    if (l->want & ~p->up) {     /* every copy we mean to touch must be held */
        l->err = -ENOTCONN;
        heal_later(l->hs, &l->later, lk_finish, l);
        return;
    }
    hbatch_t *b = l->want ? lk_batch(l, l->want, LK_NB) : NULL;
    if (!b) {
        l->err = l->want ? -ENOMEM : 0;
        heal_later(l->hs, &l->later, lk_finish, l);
        return;
    }
    hb_go(b, lk_nb_done, l);
}

static void lk_drop_done(void *ctx, hbatch_t *b)
{
    hlock_t *l = ctx;
    hb_free(b);
    l->dcont(l->dctx, 0);
}

static void lk_drop_now(void *arg)
{
    hlock_t *l = arg;
    l->dcont(l->dctx, 0);
}

void hlock_drop(hlock_t *l, void (*cont)(void *ctx, int err), void *ctx)
{
    repl_mask_t mask = l->granted & l->hs->p->up;
    l->granted = 0;
    l->dcont = cont;
    l->dctx = ctx;
    hbatch_t *b = mask ? lk_batch(l, mask, LK_UNLOCK) : NULL;
    if (b)
        hb_go(b, lk_drop_done, l);
    else        /* nothing held (or ENOMEM: the brick drops them when we disconnect) */
        heal_later(l->hs, &l->later, lk_drop_now, l);
}

/* ---------------- directory listings ---------------- */

void hlist_clear(hlist_t *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->e[i].name);
    free(l->e);
    memset(l, 0, sizeof(*l));
}

static int hent_cmp(const void *a, const void *b)
{
    return strcmp(((const hent_t *)a)->name, ((const hent_t *)b)->name);
}

void hlist_sort(hlist_t *l)
{
    if (l->n > 1)
        qsort(l->e, l->n, sizeof(hent_t), hent_cmp);
}

hent_t *hlist_find(const hlist_t *l, const char *name)
{
    hent_t key = { .name = (char *)name };
    return l->n ? bsearch(&key, l->e, l->n, sizeof(hent_t), hent_cmp) : NULL;
}

static int hlist_add(hlist_t *l, const kb_dirent_t *d)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        hent_t *e = realloc(l->e, cap * sizeof(*e));
        if (!e)
            return -ENOMEM;
        l->e = e;
        l->cap = cap;
    }
    hent_t *e = &l->e[l->n];
    memset(e, 0, sizeof(*e));
    if (!(e->name = strdup(d->name)))
        return -ENOMEM;
    e->gfid = d->gfid;
    if (d->has_attr) {
        e->attr = d->attr;
        e->type = d->attr.mode & S_IFMT;
    } else {
        e->type = DTTOIF(d->type) & S_IFMT;
    }
    l->n++;
    return 0;
}

static void ld_step(hlistdir_t *ld, kb_op_t op);

static void ld_closed(void *ctx, hbatch_t *b)
{
    hlistdir_t *ld = ctx;
    hb_free(b);
    ld->cont(ld->ctx, ld->err);
}

static void ld_got(void *ctx, hbatch_t *b)
{
    hlistdir_t *ld = ctx;
    const kb_reply_t *r = b->err ? NULL : &b->q[0].r;
    int st = r ? r->status : b->err;
    kb_op_t op = b->err ? KB_FOP_READDIR : b->q[0].op;
    if (st < 0) {
        ld->err = st;
    } else if (op == KB_FOP_OPENDIR) {
        ld->fd = r->fd;
        ld->opened = true;
    } else if (r->ndirents == 0) {
        op = KB_FOP_RELEASEDIR;           /* the end */
    } else {
        for (uint32_t i = 0; i < r->ndirents && !ld->err; i++) {
            const char *nm = r->dirents[i].name;
            if (nm && strcmp(nm, ".") && strcmp(nm, ".."))
                ld->err = hlist_add(ld->out, &r->dirents[i]);
        }
        ld->off = r->dirents[r->ndirents - 1].off;
    }
    hb_free(b);
    if (ld->err || op == KB_FOP_RELEASEDIR) {
        if (!ld->opened) {
            ld->cont(ld->ctx, ld->err);
            return;
        }
        ld_step(ld, KB_FOP_RELEASEDIR);
        return;
    }
    ld_step(ld, KB_FOP_READDIR);
}

static void ld_step(hlistdir_t *ld, kb_op_t op)
{
    hbatch_t *b = hb_new(ld->hs, 1, ld->req, 0);
    if (!b) {
        ld->err = ld->err ? ld->err : -ENOMEM;
        ld->cont(ld->ctx, ld->err);     /* (an fd left open is released on disconnect) */
        return;
    }
    kb_args_t a = { .gfid = ld->gfid };
    if (op != KB_FOP_OPENDIR)
        a.fd = ld->fd;
    if (op == KB_FOP_READDIR) {
        a.off = ld->off;
        a.size = HEAL_READDIR_SIZE;
        a.flags = 1;                      /* plus: gfids and attributes */
    }
    hb_add(b, ld->child, op, &a);
    hb_go(b, op == KB_FOP_RELEASEDIR ? ld_closed : ld_got, ld);
}

void heal_listdir(hlistdir_t *ld)
{
    ld->err = 0;
    ld->off = 0;
    ld->opened = false;
    ld_step(ld, KB_FOP_OPENDIR);
}
