/*
 * locks.c — features/locks: the brick's lock server (DESIGN §5).
 *
 * Three kinds of locks, all kept in memory, per gfid:
 *   INODELK  byte ranges per (gfid, domain = args.name); owner =
 *            (cred.client_id, args.lock.owner). Replicate orders writes
 *            with it; heal takes it in chunks.
 *   ENTRYLK  names per (parent gfid, domain = args.name, basename =
 *            args.name2, NULL = the whole directory); always exclusive;
 *            owner = (cred.client_id, cred.lk_owner).
 *   LK       POSIX record locks (fcntl semantics) and BSD flock (whole file,
 *            lock.flock) for applications; owner = (lk_client, lock.owner):
 *            the client PROCESS's identity, not its connection's, so the
 *            connections of a new graph (a graph switch) hold the same locks
 *            as the old graph's, and a client that reconnects within its
 *            lease finds them still its own (cred.lk_client, set by the
 *            server from the handshake; the connection's id for clients
 *            that send none). Never kernel locks: the brick's fds are
 *            shared by clients.
 *
 * Semantics of range locks (INODELK and LK alike): two locks conflict when
 * their owners differ, their ranges overlap and one is a write lock. A
 * granted request of an owner replaces that owner's own locks on its range
 * and merges with adjacent ones of the same type (POSIX upgrade, downgrade,
 * split on partial unlock).
 *
 * Fairness: SETLKW requests wait in FIFO order. A newcomer also waits behind
 * queued requests it conflicts with, so a stream of readers cannot starve a
 * writer — except when its owner already holds a lock on the range (an
 * upgrade waiting behind a request that waits for it would deadlock).
 * Non-blocking INODELK/ENTRYLK requests fail with -EAGAIN in the same cases;
 * F_SETLK (LK) checks granted locks only, as fcntl does.
 *
 * Contention: while any request waits on an inode, every reply of every fop
 * on that gfid that passes through here carries KB_RF_CONTENDED, so an
 * eager-lock holder (replicate) knows to release.
 *
 * XATTROP KB_XOP_ADD_LOCKED (changelog.h §5): applied (passed down as a
 * plain KB_XOP_ADD) only while the caller's connection holds, with the
 * owner it names, a granted INODELK / ENTRYLK on the object; else -ENOLCK,
 * nothing changed. Replicate sends it right behind a non-blocking lock on
 * the same connection, so it sees that lock already decided.
 *
 * Completion: a waiting call completes when granted, or with -ENOTCONN when
 * its connection goes (ctl KB_CTL_CLIENT_GONE, which also drops the
 * connection's inodelk/entrylk locks; its LK locks stay with its client
 * instance until KB_CTL_LK_CLIENT_GONE says the instance is gone for good),
 * or -EAGAIN when its owner unlocks the range meanwhile.
 * Granted waiters are completed from a queue drained after the state
 * changes, so callbacks that wind new lock calls find consistent state.
 */
#include <stdio.h>
#include "lib/log.h"
#include "xlators/changelog.h"
#include "xlators/xlator.h"

#define LK_END UINT64_MAX
#define LK_TOMBS 1024

typedef struct lk_owner { uint64_t client, owner; } lk_owner_t;

/* One lock or one waiting request (ranges inclusive). */
typedef struct lk_lock {
    struct lk_lock *next;
    lk_owner_t own;
    uint32_t type;            /* KB_LK_RDLCK / WRLCK / UNLCK */
    uint64_t start, end;
    uint32_t pid;
    char *base;               /* ENTRYLK: basename, NULL = whole directory */
    kb_call_t *call;          /* waiting request */
    int status;               /* done queue: the status to complete with */
    struct lk_set *set;       /* waiting request: the set it waits in */
} lk_lock_t;

typedef struct lk_set {
    lk_lock_t *granted;
    lk_lock_t *waiting;       /* FIFO */
    bool entry;               /* ENTRYLK set: names, not ranges */
} lk_set_t;

typedef struct lk_domain {
    struct lk_domain *next;
    char *name;
    lk_set_t set;
} lk_domain_t;

typedef struct lk_inode {
    struct lk_inode *hnext;
    kb_gfid_t gfid;
    lk_domain_t *domains;     /* INODELK */
    lk_domain_t *edomains;    /* ENTRYLK */
    lk_set_t posix, flock;
    unsigned nwaiting;
} lk_inode_t;

typedef struct lk_priv {
    lk_inode_t **tab;
    size_t nb, count;
    unsigned nwaiting;        /* all inodes: skip lookups when zero */
    lk_lock_t *done, **done_tail;
    bool draining;
    uint64_t tomb[LK_TOMBS];  /* client instances whose lease ran out (tombstoned) */
    unsigned ntomb;
} lk_priv_t;

/* ---------------- inode table ---------------- */

static size_t slot(const lk_priv_t *p, const kb_gfid_t *g) { return kb_gfid_hash(g) & (p->nb - 1); }

static lk_inode_t *inode_find(lk_priv_t *p, const kb_gfid_t *g)
{
    for (lk_inode_t *i = p->tab[slot(p, g)]; i; i = i->hnext)
        if (kb_gfid_eq(&i->gfid, g))
            return i;
    return NULL;
}

static void tab_grow(lk_priv_t *p)
{
    size_t nb = p->nb * 2;
    lk_inode_t **t = calloc(nb, sizeof(*t));
    if (!t)
        return;
    lk_inode_t **old = p->tab;
    size_t onb = p->nb;
    p->tab = t;
    p->nb = nb;
    for (size_t s = 0; s < onb; s++)
        for (lk_inode_t *i = old[s], *n; i; i = n) {
            n = i->hnext;
            i->hnext = t[slot(p, &i->gfid)];
            t[slot(p, &i->gfid)] = i;
        }
    free(old);
}

static lk_inode_t *inode_get(lk_priv_t *p, const kb_gfid_t *g)
{
    lk_inode_t *i = inode_find(p, g);
    if (i || !(i = kb_zalloc(sizeof(*i))))
        return i;
    i->gfid = *g;
    if (p->count >= 2 * p->nb)
        tab_grow(p);
    i->hnext = p->tab[slot(p, g)];
    p->tab[slot(p, g)] = i;
    p->count++;
    return i;
}

static bool set_empty(const lk_set_t *s) { return !s->granted && !s->waiting; }

static void domains_gc(lk_domain_t **dp)
{
    while (*dp) {
        lk_domain_t *d = *dp;
        if (set_empty(&d->set)) {
            *dp = d->next;
            free(d->name);
            free(d);
        } else {
            dp = &d->next;
        }
    }
}

/* Free the inode when it holds nothing any more. */
static void inode_gc(lk_priv_t *p, lk_inode_t *i)
{
    if (!i)
        return;
    domains_gc(&i->domains);
    domains_gc(&i->edomains);
    if (i->domains || i->edomains || !set_empty(&i->posix) || !set_empty(&i->flock))
        return;
    lk_inode_t **pp = &p->tab[slot(p, &i->gfid)];
    while (*pp != i)
        pp = &(*pp)->hnext;
    *pp = i->hnext;
    p->count--;
    free(i);
}

static lk_domain_t *domain_get(lk_domain_t **head, const char *name, bool entry, bool create)
{
    name = name ? name : "";
    for (lk_domain_t *d = *head; d; d = d->next)
        if (strcmp(d->name, name) == 0)
            return d;
    if (!create)
        return NULL;
    lk_domain_t *d = kb_zalloc(sizeof(*d));
    if (!d || !(d->name = strdup(name))) {
        free(d);
        return NULL;
    }
    d->set.entry = entry;
    d->next = *head;
    *head = d;
    return d;
}

/* ---------------- lock records ---------------- */

static void lock_free(lk_lock_t *l)
{
    if (l) {
        free(l->base);
        free(l);
    }
}

static bool same_owner(const lk_lock_t *a, const lk_lock_t *b)
{
    return a->own.client == b->own.client && a->own.owner == b->own.owner;
}

static bool overlap(const lk_lock_t *a, const lk_lock_t *b)
{
    return a->start <= b->end && b->start <= a->end;
}

static bool conflicts(const lk_set_t *s, const lk_lock_t *a, const lk_lock_t *b)
{
    if (same_owner(a, b))
        return false;
    if (s->entry)
        return !a->base || !b->base || strcmp(a->base, b->base) == 0;
    return overlap(a, b) && (a->type == KB_LK_WRLCK || b->type == KB_LK_WRLCK);
}

static lk_lock_t *conflict_granted(const lk_set_t *s, const lk_lock_t *req)
{
    for (lk_lock_t *l = s->granted; l; l = l->next)
        if (conflicts(s, l, req))
            return l;
    return NULL;
}

/* Does REQ hold a lock touching its own range already (an upgrade)? */
static bool holds_overlap(const lk_set_t *s, const lk_lock_t *req)
{
    for (lk_lock_t *l = s->granted; l; l = l->next)
        if (same_owner(l, req) && (s->entry || overlap(l, req)))
            return true;
    return false;
}

/* A queued request before UPTO (NULL: any) that REQ must not overtake. */
static bool blocked_by_queue(const lk_set_t *s, const lk_lock_t *req, const lk_lock_t *upto)
{
    if (holds_overlap(s, req))
        return false;
    for (lk_lock_t *w = s->waiting; w && w != upto; w = w->next)
        if (conflicts(s, w, req))
            return true;
    return false;
}

static void list_remove(lk_lock_t **head, lk_lock_t *l)
{
    while (*head && *head != l)
        head = &(*head)->next;
    if (*head)
        *head = l->next;
    l->next = NULL;
}

static void list_append(lk_lock_t **head, lk_lock_t *l)
{
    while (*head)
        head = &(*head)->next;
    l->next = NULL;
    *head = l;
}

static lk_lock_t *lock_dup(const lk_lock_t *r)
{
    lk_lock_t *l = kb_zalloc(sizeof(*l));
    if (!l)
        return NULL;
    l->own = r->own;
    l->type = r->type;
    l->start = r->start;
    l->end = r->end;
    l->pid = r->pid;
    return l;
}

/* Apply REQ (RD/WR/UNLCK) for its owner in a range set: carve the owner's
 * locks out of the range, insert the new one, merge same-type neighbours.
 * Allocates everything first: on -ENOMEM nothing changed. */
static int range_apply(lk_set_t *s, const lk_lock_t *req)
{
    lk_lock_t *spare = lock_dup(req), *nl = req->type == KB_LK_UNLCK ? NULL : lock_dup(req);
    if (!spare || (req->type != KB_LK_UNLCK && !nl)) {
        lock_free(spare);
        lock_free(nl);
        return -ENOMEM;
    }
    for (lk_lock_t **pp = &s->granted; *pp;) {
        lk_lock_t *l = *pp;
        if (!same_owner(l, req) || !overlap(l, req)) {
            pp = &l->next;
            continue;
        }
        if (l->start < req->start && l->end > req->end) {   /* split: at most once */
            *spare = *l;
            spare->start = req->end + 1;
            l->end = req->start - 1;
            spare->next = l->next;
            l->next = spare;
            spare = NULL;
            pp = &l->next->next;
        } else if (l->start < req->start) {
            l->end = req->start - 1;
            pp = &l->next;
        } else if (l->end > req->end) {
            l->start = req->end + 1;
            pp = &l->next;
        } else {
            *pp = l->next;
            lock_free(l);
        }
    }
    lock_free(spare);
    if (!nl)
        return 0;
    for (lk_lock_t **pp = &s->granted; *pp;) {   /* merge adjacent, same owner and type */
        lk_lock_t *l = *pp;
        bool adj = (l->end != LK_END && l->end + 1 == nl->start) || (nl->end != LK_END && nl->end + 1 == l->start);
        if (same_owner(l, nl) && l->type == nl->type && adj) {
            nl->start = KB_MIN(nl->start, l->start);
            nl->end = KB_MAX(nl->end, l->end);
            *pp = l->next;
            lock_free(l);
        } else {
            pp = &l->next;
        }
    }
    nl->next = s->granted;
    s->granted = nl;
    return 0;
}

/* Grant REQ in S (a copy is kept; REQ stays the caller's). */
static int set_grant(lk_set_t *s, const lk_lock_t *req)
{
    if (!s->entry)
        return range_apply(s, req);
    lk_lock_t *l = lock_dup(req);
    if (!l || (req->base && !(l->base = strdup(req->base)))) {
        lock_free(l);
        return -ENOMEM;
    }
    l->next = s->granted;
    s->granted = l;
    return 0;
}

/* ---------------- completion queue ---------------- */

static void done_push(lk_priv_t *p, lk_lock_t *w, int status)
{
    w->status = status;
    w->next = NULL;
    *p->done_tail = w;
    p->done_tail = &w->next;
}

static void reply_flags(lk_priv_t *p, const kb_call_t *call, kb_reply_t *r)
{
    if (p->nwaiting) {
        lk_inode_t *i = inode_find(p, &call->args->gfid);
        if (i && i->nwaiting)
            r->rflags |= KB_RF_CONTENDED;
    }
}

/* Complete queued waiters; re-entrant calls only append. */
static void done_drain(lk_priv_t *p)
{
    if (p->draining)
        return;
    p->draining = true;
    while (p->done) {
        lk_lock_t *w = p->done;
        p->done = w->next;
        if (!p->done)
            p->done_tail = &p->done;
        kb_reply_t r = { .status = w->status };
        reply_flags(p, w->call, &r);
        kb_unwind(w->call, &r);
        lock_free(w);
    }
    p->draining = false;
}

static void waiter_remove(lk_priv_t *p, lk_inode_t *i, lk_lock_t *w)
{
    list_remove(&w->set->waiting, w);
    i->nwaiting--;
    p->nwaiting--;
}

/* Grant every waiter of S that can go now, in FIFO order. */
static void grant_waiters(lk_priv_t *p, lk_inode_t *i, lk_set_t *s)
{
    for (lk_lock_t *w = s->waiting, *n; w; w = n) {
        n = w->next;
        if (conflict_granted(s, w) || blocked_by_queue(s, w, w))
            continue;
        waiter_remove(p, i, w);
        done_push(p, w, set_grant(s, w));
    }
}

static void enqueue(lk_priv_t *p, lk_inode_t *i, lk_set_t *s, lk_lock_t *w)
{
    w->set = s;
    list_append(&s->waiting, w);
    i->nwaiting++;
    p->nwaiting++;
}

/* ---------------- pass-through with the contention flag ---------------- */

static void lk_pass_cbk(void *cookie, const kb_reply_t *reply)
{
    kb_call_t *call = cookie;
    lk_priv_t *p = call->xl->priv;
    kb_reply_t r = *reply;    /* shallow: the child's reply lives through our unwind */
    reply_flags(p, call, &r);
    kb_unwind(call, r.rflags == reply->rflags ? reply : &r);
}

static void lk_pass(kb_call_t *call)
{
    kb_wind_from(call, call->xl->children[0], call->args, lk_pass_cbk, call);
}

/* ---------------- request building ---------------- */

static int range_of(const kb_lock_t *l, lk_lock_t *r)
{
    if (l->type > KB_LK_UNLCK)
        return -EINVAL;
    r->type = l->type;
    r->start = l->start;
    r->pid = l->pid;
    if (l->len == 0)
        r->end = LK_END;
    else if (l->len - 1 > LK_END - l->start)
        return -EINVAL;
    else
        r->end = l->start + l->len - 1;
    return 0;
}

static void lock_out(const lk_lock_t *l, kb_lock_t *out)
{
    out->type = l->type;
    out->start = l->start;
    out->len = l->end == LK_END ? 0 : l->end - l->start + 1;
    out->owner = l->own.owner;
    out->pid = l->pid;
}

static void finish(lk_priv_t *p, kb_call_t *call, lk_inode_t *i, kb_reply_t *r)
{
    inode_gc(p, i);
    reply_flags(p, call, r);
    kb_unwind(call, r);
    done_drain(p);
}

/* Cancel waiting requests of REQ's owner that overlap it (they were
 * unlocked before being granted). */
static void cancel_own_waiters(lk_priv_t *p, lk_inode_t *i, lk_set_t *s, const lk_lock_t *req)
{
    for (lk_lock_t *w = s->waiting, *n; w; w = n) {
        n = w->next;
        if (same_owner(w, req) && (s->entry ? (!req->base || (w->base && !strcmp(w->base, req->base)))
                                            : overlap(w, req))) {
            waiter_remove(p, i, w);
            done_push(p, w, -EAGAIN);
        }
    }
}

/* The range-lock protocol shared by INODELK and LK. REQ is heap-allocated
 * and consumed (queued as the waiter or freed). */
static void range_lock(lk_priv_t *p, kb_call_t *call, lk_inode_t *i, lk_set_t *s, lk_lock_t *req,
                       uint32_t cmd, bool fair_nb)
{
    kb_reply_t r = { 0 };
    lk_lock_t *c;
    if (cmd > KB_LK_SETLKW) {
        r.status = -EINVAL;
    } else if (cmd == KB_LK_GETLK) {
        if ((c = conflict_granted(s, req)))
            lock_out(c, &r.lock);
        else
            r.lock.type = KB_LK_UNLCK;
    } else if (req->type == KB_LK_UNLCK) {
        r.status = range_apply(s, req);
        cancel_own_waiters(p, i, s, req);
        grant_waiters(p, i, s);
    } else if (!conflict_granted(s, req) && !((cmd == KB_LK_SETLKW || fair_nb) && blocked_by_queue(s, req, NULL))) {
        r.status = range_apply(s, req);
        lock_out(req, &r.lock);
    } else if (cmd == KB_LK_SETLK) {
        r.status = -EAGAIN;
    } else {
        req->call = call;
        enqueue(p, i, s, req);
        done_drain(p);
        return;               /* completes when granted */
    }
    lock_free(req);
    finish(p, call, i, &r);
}

/* Whose application locks a call's are (LK, FLUSH): the client instance. */
static uint64_t lk_client_of(const kb_cred_t *c) { return c->lk_client ? c->lk_client : c->client_id; }

static lk_lock_t *req_new(kb_call_t *call, uint64_t owner, const kb_lock_t *l, int *err)
{
    lk_lock_t *req = kb_zalloc(sizeof(*req));
    *err = req ? 0 : -ENOMEM;
    if (req) {
        req->own = (lk_owner_t){ call->op == KB_FOP_LK ? lk_client_of(&call->cred) : call->cred.client_id, owner };
        if (l && (*err = range_of(l, req))) {
            free(req);
            req = NULL;
        }
    }
    return req;
}

/* ---------------- INODELK / LK / ENTRYLK ---------------- */

static void lk_inodelk(kb_call_t *call)
{
    lk_priv_t *p = call->xl->priv;
    const kb_args_t *a = call->args;
    int err;
    lk_lock_t *req = req_new(call, a->lock.owner, &a->lock, &err);
    lk_inode_t *i = req ? inode_get(p, &a->gfid) : NULL;
    lk_domain_t *d = i ? domain_get(&i->domains, a->name, false, true) : NULL;
    if (!d) {
        lock_free(req);
        inode_gc(p, i);
        kb_unwind_err(call, err ? err : -ENOMEM);
        return;
    }
    range_lock(p, call, i, &d->set, req, a->flags, true);
}

/* Client instances whose locks were dropped when their lease ran out: their
 * reclaims are refused (KB_LK_RECLAIM). A ring: the oldest are forgotten,
 * which only matters for a client gone for longer than LK_TOMBS drops. */
static bool tombstoned(const lk_priv_t *p, uint64_t lk_client)
{
    if (!lk_client)              /* no identity (a graph without a server): nothing to refuse */
        return false;
    for (unsigned i = 0; i < LK_TOMBS; i++)
        if (p->tomb[i] == lk_client)
            return true;
    return false;
}

static void lk_lk(kb_call_t *call)
{
    lk_priv_t *p = call->xl->priv;
    const kb_args_t *a = call->args;
    uint32_t cmd = a->flags & KB_LK_CMD_MASK;
    if ((a->flags & KB_LK_RECLAIM) && tombstoned(p, lk_client_of(&call->cred))) {
        kb_unwind_err(call, -ESTALE);
        return;
    }
    int err;
    lk_lock_t *req = req_new(call, a->lock.owner, &a->lock, &err);
    lk_inode_t *i = req ? inode_get(p, &a->gfid) : NULL;
    if (!i) {
        lock_free(req);
        kb_unwind_err(call, err ? err : -ENOMEM);
        return;
    }
    if (a->lock.flock) {      /* flock: whole file, its own namespace */
        req->start = 0;
        req->end = LK_END;
    }
    lk_set_t *set = a->lock.flock ? &i->flock : &i->posix;
    if (a->flags & KB_LK_CANCEL) {   /* only its waiting requests go (KB_LK_CANCEL) */
        cancel_own_waiters(p, i, set, req);
        grant_waiters(p, i, set);     /* those queued behind them only */
        lock_free(req);
        kb_reply_t r = { 0 };
        finish(p, call, i, &r);
        return;
    }
    range_lock(p, call, i, set, req, cmd, false);
}

static void lk_entrylk(kb_call_t *call)
{
    lk_priv_t *p = call->xl->priv;
    const kb_args_t *a = call->args;
    uint32_t cmd = a->flags & 0xff;
    int err;
    lk_lock_t *req = req_new(call, call->cred.lk_owner, NULL, &err);
    if (req && a->name2 && !(req->base = strdup(a->name2)))
        err = -ENOMEM;
    lk_inode_t *i = req && !err ? inode_get(p, &a->gfid) : NULL;
    lk_domain_t *d = i ? domain_get(&i->edomains, a->name, true, true) : NULL;
    if (!d || cmd > KB_ELK_UNLOCK) {
        lock_free(req);
        inode_gc(p, i);
        kb_unwind_err(call, !d ? (err ? err : -ENOMEM) : -EINVAL);
        return;
    }
    lk_set_t *s = &d->set;
    kb_reply_t r = { 0 };
    if (cmd == KB_ELK_UNLOCK) {
        lk_lock_t *l = s->granted;
        while (l && !(same_owner(l, req) && (l->base ? req->base && !strcmp(l->base, req->base) : !req->base)))
            l = l->next;
        if (l) {
            list_remove(&s->granted, l);
            lock_free(l);
            grant_waiters(p, i, s);
        } else {
            r.status = -EINVAL;
        }
    } else if (!conflict_granted(s, req) && !blocked_by_queue(s, req, NULL)) {
        r.status = set_grant(s, req);
    } else if (cmd == KB_ELK_LOCK_NB) {
        r.status = -EAGAIN;
    } else {
        req->call = call;
        enqueue(p, i, s, req);
        done_drain(p);
        return;
    }
    lock_free(req);
    finish(p, call, i, &r);
}

/* FLUSH: the POSIX rule — closing any fd drops the owner's record locks. */
static void lk_flush(kb_call_t *call)
{
    lk_priv_t *p = call->xl->priv;
    const kb_args_t *a = call->args;
    lk_inode_t *i = inode_find(p, &a->gfid);
    if (i && i->posix.granted) {
        lk_lock_t req = { .own = { lk_client_of(&call->cred), a->lock.owner }, .type = KB_LK_UNLCK,
                          .start = 0, .end = LK_END };
        if (range_apply(&i->posix, &req) == 0)
            grant_waiters(p, i, &i->posix);
        inode_gc(p, i);
    }
    lk_pass(call);
    done_drain(p);
}

/* ---------------- XATTROP under a lock (changelog.h §5) ---------------- */

/* Does (CLIENT, C->owner) hold a granted lock of C's kind on G? */
static bool holds(lk_priv_t *p, const kb_gfid_t *g, uint64_t client, const kb_cl_cond_t *c)
{
    lk_inode_t *i = inode_find(p, g);
    bool entry = c->kind == KB_CL_COND_ENTRYLK;
    lk_domain_t *d = i ? domain_get(entry ? &i->edomains : &i->domains, c->domain, entry, false) : NULL;
    for (lk_lock_t *l = d ? d->set.granted : NULL; l; l = l->next)
        if (l->own.client == client && l->own.owner == c->owner &&
            (!entry || (l->base && !strcmp(l->base, c->base))))
            return true;
    return false;
}

typedef struct lk_xop {
    kb_call_t *call;
    kb_args_t args;           /* the caller's, as a plain KB_XOP_ADD of its deltas */
} lk_xop_t;

static void lk_xop_borrowed(void *opaque, void *data) { }   /* the caller's, until our unwind */

static void lk_xop_cbk(void *cookie, const kb_reply_t *reply)
{
    lk_xop_t *x = cookie;
    kb_buf_unref(x->args.data);
    kb_call_t *call = x->call;
    free(x);
    lk_pass_cbk(call, reply);
}

static void lk_xattrop(kb_call_t *call)
{
    lk_priv_t *p = call->xl->priv;
    const kb_args_t *a = call->args;
    if (a->flags != KB_XOP_ADD_LOCKED) {
        lk_pass(call);
        return;
    }
    kb_cl_cond_t c;
    kb_reply_t r = { 0 };
    lk_xop_t *x = NULL;
    kb_buf_t *deltas = NULL;
    if (!a->data || kb_cl_cond_parse(a->data->data, a->data->len, &c))
        r.status = -EINVAL;
    else if (!holds(p, &a->gfid, call->cred.client_id, &c))
        r.status = -ENOLCK;      /* the lock sent before it was not granted: nothing applied */
    else if (!(x = malloc(sizeof(*x))) ||
             !(deltas = kb_buf_wrap(a->data->data, KB_CL_MATRIX_BYTES, lk_xop_borrowed, NULL)))
        r.status = -ENOMEM;
    if (r.status) {
        free(x);
        reply_flags(p, call, &r);
        kb_unwind(call, &r);
        return;
    }
    x->call = call;
    x->args = *a;
    x->args.flags = KB_XOP_ADD;
    x->args.data = deltas;
    kb_wind_from(call, call->xl->children[0], &x->args, lk_xop_cbk, x);
}

/* ---------------- client gone ---------------- */

static void set_drop_client(lk_priv_t *p, lk_inode_t *i, lk_set_t *s, uint64_t client)
{
    for (lk_lock_t **pp = &s->granted; *pp;) {
        lk_lock_t *l = *pp;
        if (l->own.client == client) {
            *pp = l->next;
            lock_free(l);
        } else {
            pp = &l->next;
        }
    }
    for (lk_lock_t *w = s->waiting, *n; w; w = n) {
        n = w->next;
        /* A waiting call dies with its connection, whoever the lock is for. */
        if (w->own.client == client || (w->call && w->call->cred.client_id == client)) {
            waiter_remove(p, i, w);
            done_push(p, w, -ENOTCONN);
        }
    }
    grant_waiters(p, i, s);
}

/* A client instance gone for good: its application locks go, and it may
 * not reclaim them. */
static void drop_lk_client(lk_priv_t *p, uint64_t lk_client)
{
    if (!tombstoned(p, lk_client))
        p->tomb[p->ntomb++ % LK_TOMBS] = lk_client;
    for (size_t b = 0; b < p->nb; b++)
        for (lk_inode_t *i = p->tab[b], *n; i; i = n) {
            n = i->hnext;
            set_drop_client(p, i, &i->posix, lk_client);
            set_drop_client(p, i, &i->flock, lk_client);
            inode_gc(p, i);
        }
    done_drain(p);
}

static void drop_client(lk_priv_t *p, uint64_t client)
{
    for (size_t b = 0; b < p->nb; b++)
        for (lk_inode_t *i = p->tab[b], *n; i; i = n) {
            n = i->hnext;
            for (lk_domain_t *d = i->domains; d; d = d->next)
                set_drop_client(p, i, &d->set, client);
            for (lk_domain_t *d = i->edomains; d; d = d->next)
                set_drop_client(p, i, &d->set, client);
            set_drop_client(p, i, &i->posix, client);
            set_drop_client(p, i, &i->flock, client);
            inode_gc(p, i);
        }
    done_drain(p);
}

/* ---------------- translator ---------------- */

static int lk_init(kb_xlator_t *xl)
{
    if (xl->nchildren != 1) {
        kb_err(xl->name, "features/locks needs exactly one subvolume");
        return -EINVAL;
    }
    lk_priv_t *p = kb_zalloc(sizeof(*p));
    if (!p)
        return -ENOMEM;
    p->nb = 256;
    if (!(p->tab = calloc(p->nb, sizeof(*p->tab)))) {
        free(p);
        return -ENOMEM;
    }
    p->done_tail = &p->done;
    xl->priv = p;
    return 0;
}

static void set_free(lk_set_t *s)
{
    for (lk_lock_t *l = s->granted, *n; l; l = n) {
        n = l->next;
        lock_free(l);
    }
    /* Waiters at fini: the graph is going away with calls in flight;
     * complete them so nobody leaks. */
    for (lk_lock_t *w = s->waiting, *n; w; w = n) {
        n = w->next;
        kb_unwind_err(w->call, -ENOTCONN);
        lock_free(w);
    }
}

static void domains_free(lk_domain_t *d)
{
    for (lk_domain_t *n; d; d = n) {
        n = d->next;
        set_free(&d->set);
        free(d->name);
        free(d);
    }
}

static void lk_fini(kb_xlator_t *xl)
{
    lk_priv_t *p = xl->priv;
    if (!p)
        return;
    for (size_t b = 0; b < p->nb; b++)
        for (lk_inode_t *i = p->tab[b], *n; i; i = n) {
            n = i->hnext;
            domains_free(i->domains);
            domains_free(i->edomains);
            set_free(&i->posix);
            set_free(&i->flock);
            free(i);
        }
    free(p->tab);
    free(p);
    xl->priv = NULL;
}

static unsigned count_locks(const lk_set_t *s)
{
    unsigned n = 0;
    for (lk_lock_t *l = s->granted; l; l = l->next)
        n++;
    return n;
}

static int lk_ctl(kb_xlator_t *xl, int code, void *arg)
{
    lk_priv_t *p = xl->priv;
    if (!p)
        return -ENOSYS;
    if (code == KB_CTL_CLIENT_GONE) {
        drop_client(p, *(const uint64_t *)arg);
        return 0;
    }
    if (code == KB_CTL_LK_CLIENT_GONE) {
        drop_lk_client(p, *(const uint64_t *)arg);
        return 0;
    }
    if (code == KB_CTL_STATUS) {
        unsigned locks = 0;
        for (size_t b = 0; b < p->nb; b++)
            for (lk_inode_t *i = p->tab[b]; i; i = i->hnext) {
                for (lk_domain_t *d = i->domains; d; d = d->next)
                    locks += count_locks(&d->set);
                for (lk_domain_t *d = i->edomains; d; d = d->next)
                    locks += count_locks(&d->set);
                locks += count_locks(&i->posix) + count_locks(&i->flock);
            }
        kb_ctl_printf(arg, "%s: %zu inodes with locks, %u locks held, %u waiting\n", xl->name, p->count,
                      locks, p->nwaiting);
        return 0;
    }
    return -ENOSYS;
}

/* Every fop goes through lk_pass (for the contention flag), then the lock
 * ops override their slots: the second initialiser of a slot is meant. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Woverride-init"
const kb_xlator_type_t kb_xl_locks = {
    .name = "features/locks",
    .ops = {
#define FOP(NAME, name, A, R, C) [KB_FOP_##NAME] = lk_pass,
#include "xlators/fops.def"
#undef FOP
        [KB_FOP_INODELK] = lk_inodelk,
        [KB_FOP_ENTRYLK] = lk_entrylk,
        [KB_FOP_LK] = lk_lk,
        [KB_FOP_FLUSH] = lk_flush,
        [KB_FOP_XATTROP] = lk_xattrop,
    },
    .init = lk_init,
    .fini = lk_fini,
    .ctl = lk_ctl,
};
#pragma GCC diagnostic pop
