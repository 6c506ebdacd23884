/*
 * heal.c — the self-heal daemon inside cluster/replicate
 * (DESIGN §6, heal.h): sweeps, heal full's crawl, the bounded queue of
 * objects being healed, timers, stats, and the KB_CTL_HEAL_* codes.
 *
 * A sweep lists the index (KB_IPC_INDEX_LIST, paged) of every child in
 * heal-children that is up, and heals each gfid found, at most
 * heal-parallel at once, while the listing goes on. heal full also crawls
 * the tree from the root (READDIR on every up child) and heals every object
 * met, comparing copies even where no mark says they differ. A gfid is
 * healed once per sweep, unless entry heal creates it on a copy during the
 * sweep (then it is queued again, so a file created during an outage gets
 * its data in the same sweep).
 *
 * Whose index: normally the children of heal-children (kembard passes the
 * bricks local to its node, so two nodes' daemons do not walk the same
 * index all the time). But a daemon that just started, or whose local brick
 * just came back, lists EVERY child's index once (until a sweep has seen
 * them all up): the node that returns from an outage heals its own bricks
 * at once, without waiting for the survivors' daemons to notice it (their
 * reconnect backoff can take seconds). Two daemons healing the same object
 * exclude each other (HEAL_DOM); the second one skips it.
 *
 * Triggers (self-heal-daemon on): a child came up (after HEAL_KICK_MS, so
 * the children of a restarting node come up together), every
 * heal-interval, KB_CTL_HEAL_SWEEP / FULL. A request during a sweep runs
 * another sweep right after it. A sweep that had failures is retried after
 * 1 s, 2 s, 4 s ... up to heal-interval.
 *
 * Promises
 *  - Never blocks the loop; every step is a wind and a continuation.
 *  - At most heal-parallel objects of a sweep in flight (resolves extra).
 *  - A resolve's done() runs exactly once (status 0 or -errno, and a line
 *    for the user), also when the translator is torn down first.
 *  - Stats are counters of this daemon since it started; active[] and
 *    split[] reflect what is being healed / what was found in split-brain
 *    and not yet resolved.
 */
#include <stdio.h>
#include <sys/stat.h>
#include <event2/event.h>
#include "lib/log.h"
#include "xlators/cluster/replicate/heal_internal.h"

struct hcrawl {
    kb_gfid_t *dirs;            /* directories to list (FIFO) */
    size_t head, n, cap;
    hlist_t list;
    hlistdir_t ld;
    repl_mask_t mask;
    int child;
    bool paused;
    hlater_t later;
};

#define CRAWL_HIGH 4096         /* queued objects that pause the crawl ... */
#define CRAWL_LOW  1024         /* ... until the queue drains to this */

static void sweep_request(heal_t *hs, bool full);
static void pump(heal_t *hs);
static void crawl_next(void *arg);

static void pump_later(void *arg)
{
    heal_t *hs = arg;
    hs->pump_queued = false;
    pump(hs);
}

/* ---------------- the set of gfids queued this sweep ---------------- */

static size_t set_slot(const heal_t *hs, const kb_gfid_t *g)
{
    return kb_gfid_hash(g) & (hs->setcap - 1);
}

/* Insert G; 1 when new, 0 when already there, -ENOMEM. */
static int set_add(heal_t *hs, const kb_gfid_t *g)
{
    if ((hs->setn + 1) * 2 > hs->setcap) {
        size_t cap = hs->setcap ? hs->setcap * 2 : 1024;
        kb_gfid_t *old = hs->set, *nw = calloc(cap, sizeof(*nw));
        if (!nw)
            return -ENOMEM;
        size_t oldcap = hs->setcap;
        hs->set = nw;
        hs->setcap = cap;
        for (size_t i = 0; i < oldcap; i++) {
            if (kb_gfid_is_null(&old[i]))
                continue;
            size_t s = set_slot(hs, &old[i]);
            while (!kb_gfid_is_null(&hs->set[s]))
                s = (s + 1) & (cap - 1);
            hs->set[s] = old[i];
        }
        free(old);
    }
    size_t s = set_slot(hs, g);
    for (; !kb_gfid_is_null(&hs->set[s]); s = (s + 1) & (hs->setcap - 1))
        if (kb_gfid_eq(&hs->set[s], g))
            return 0;
    hs->set[s] = *g;
    hs->setn++;
    return 1;
}

static void set_reset(heal_t *hs)
{
    if (hs->set)
        memset(hs->set, 0, hs->setcap * sizeof(*hs->set));
    hs->setn = 0;
}

/* ---------------- queue ---------------- */

static int q_push(heal_t *hs, const kb_gfid_t *g, uint8_t flags, uint8_t round)
{
    if (hs->qhead == hs->qlen)
        hs->qhead = hs->qlen = 0;
    if (hs->qlen == hs->qcap) {
        if (hs->qhead > hs->qcap / 2) {         /* reuse the consumed front */
            memmove(hs->q, hs->q + hs->qhead, (hs->qlen - hs->qhead) * sizeof(*hs->q));
            hs->qlen -= hs->qhead;
            hs->qhead = 0;
        } else {
            size_t cap = hs->qcap ? hs->qcap * 2 : 256;
            struct hq_ent *q = realloc(hs->q, cap * sizeof(*q));
            if (!q)
                return -ENOMEM;
            hs->q = q;
            hs->qcap = cap;
        }
    }
    hs->q[hs->qlen++] = (struct hq_ent){ .gfid = *g, .flags = flags, .round = round };
    return 0;
}

/* 1 queued, 0 already healed / queued in this sweep, < 0 error. */
static int enqueue(heal_t *hs, const kb_gfid_t *g, uint8_t flags)
{
    if (kb_gfid_is_null(g))
        return 0;
    int rc = set_add(hs, g);
    if (rc < 0 || (rc == 0 && !(flags & HQ_FORCE)))
        return rc;
    int qrc = q_push(hs, g, flags & ~HQ_FORCE, 0);
    return qrc ? qrc : 1;
}

void heal_enqueue(heal_t *hs, const kb_gfid_t *g, uint8_t flags)
{
    if (!hs->sweeping) {        /* the marks entry heal left name it: the next sweep finds it */
        sweep_request(hs, false);
        return;
    }
    if (enqueue(hs, g, flags) < 0)
        hs->sweep_failed++;
    if (!hs->pump_queued) {
        hs->pump_queued = true;
        heal_later(hs, &hs->lpump, pump_later, hs);
    }
}

/* ---------------- progress and split-brain lists ---------------- */

int heal_act_begin(heal_t *hs, const kb_gfid_t *g, uint64_t total)
{
    for (int i = 0; i < KB_HEAL_MAX_ACTIVE; i++)
        if (!hs->act[i].used) {
            hs->act[i] = (struct heal_act){ .used = true, .gfid = *g, .total = total };
            return i;
        }
    return -1;
}

void heal_act_add(heal_t *hs, int slot, uint64_t done)
{
    if (slot >= 0)
        hs->act[slot].done += done;
}

void heal_act_end(heal_t *hs, int slot)
{
    if (slot >= 0)
        hs->act[slot].used = false;
}

void heal_split_note(heal_t *hs, const kb_gfid_t *g, bool split)
{
    for (uint32_t i = 0; i < hs->nsplit; i++) {
        if (!kb_gfid_eq(&hs->split[i], g))
            continue;
        if (split) {
            hs->split_seen[i] = true;
        } else {
            hs->nsplit--;
            hs->split[i] = hs->split[hs->nsplit];
            hs->split_seen[i] = hs->split_seen[hs->nsplit];
        }
        return;
    }
    if (split && hs->nsplit < KB_HEAL_MAX_SPLIT) {
        hs->split[hs->nsplit] = *g;
        hs->split_seen[hs->nsplit++] = true;
        kb_warn(hs->p->xl->name, "%s is in split-brain: not healed (resolve it with "
                "'kembar volume heal VOLUME split-brain ...')", kb_gfid_str(g, (char[KB_GFID_STRLEN]){ 0 }));
    }
}

/* ---------------- sweep ---------------- */

static void arm(struct event *ev, uint64_t ms)
{
    if (!ev)
        return;
    struct timeval tv = { .tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)(ms % 1000) * 1000 };
    evtimer_add(ev, &tv);
}

static void sweep_end(heal_t *hs)
{
    hs->sweeping = false;
    hs->st.sweeps++;
    hs->st.pending = hs->found;
    /* split-brain entries this sweep did not meet again are gone */
    for (uint32_t i = 0; i < hs->nsplit;) {
        if (hs->split_seen[i]) {
            i++;
            continue;
        }
        hs->nsplit--;
        hs->split[i] = hs->split[hs->nsplit];
        hs->split_seen[i] = hs->split_seen[hs->nsplit];
    }
    kb_log(hs->sweep_failed ? KB_LOG_INFO : KB_LOG_DEBUG, hs->p->xl->name,
           "heal sweep %llu done: %u entries, %u failed, %u in split-brain",
           (unsigned long long)hs->st.sweeps, hs->found, hs->sweep_failed, hs->nsplit);
    if ((hs->sweep_failed || hs->sweep_again) && hs->p->shd) {
        /* The object may sit in the index of a child outside heal-children
         * only (the source's): the retry lists every index. */
        uint64_t max = hs->p->heal_interval_ms;
        hs->retry_ms = hs->retry_ms ? KB_MIN(hs->retry_ms * 2, max) : KB_MIN((uint64_t)HEAL_RETRY_MIN_MS, max);
        hs->sweep_all = true;
        /* jitter: two daemons that collided must not collide again in step */
        arm(hs->kick_ev, hs->retry_ms + (uint64_t)(kb_now_ns() % (hs->retry_ms / 2 + 1)));
    } else {
        hs->retry_ms = 0;
    }
    hs->sweep_again = false;
    if (hs->want_sweep) {
        bool full = hs->want_full;
        hs->want_sweep = hs->want_full = false;
        sweep_request(hs, full);
    }
}

static bool listing(const heal_t *hs) { return hs->list_child >= 0; }

static void pump(heal_t *hs)
{
    if (!hs->sweeping)
        return;
    repl_priv_t *p = hs->p;
    int par = p->heal_parallel > 0 ? p->heal_parallel : 4;
    while (hs->inflight < par && hs->qhead < hs->qlen) {
        struct hq_ent e = hs->q[hs->qhead++];
        hobj_t *h = heal_obj_new(hs, &e.gfid, e.flags);
        if (!h) {
            hs->sweep_failed++;
            continue;
        }
        h->round = e.round;
        hs->inflight++;
        heal_obj_start(h);
    }
    struct hcrawl *c = hs->crawl;
    if (c && c->paused && hs->qlen - hs->qhead < CRAWL_LOW) {
        c->paused = false;
        heal_later(hs, &c->later, crawl_next, hs);
    }
    if (!listing(hs) && !hs->crawl && hs->qhead == hs->qlen && !hs->inflight)
        sweep_end(hs);
}

static void list_next(heal_t *hs);

static void list_got(void *ctx, hbatch_t *b)
{
    heal_t *hs = ctx;
    const kb_reply_t *r = b->err ? NULL : &b->q[0].r;
    int st = r ? r->status : b->err;
    bool more = false;
    if (st < 0) {
        kb_warn(hs->p->xl->name, "heal: index of child %d not listed: %s", hs->list_child, strerror(-st));
        hs->sweep_failed++;
    } else {
        size_t n = r->data ? r->data->len / 16 : 0;
        for (size_t i = 0; i < n; i++) {
            kb_gfid_t g;
            memcpy(g.b, r->data->data + 16 * i, 16);
            int rc = enqueue(hs, &g, hs->cur_full ? HQ_FULL : 0);
            if (rc > 0)
                hs->found++;
            else if (rc < 0)
                hs->sweep_failed++;
        }
        hs->list_off += n;
        more = n > 0 && hs->list_off < r->off;
        /* Pages are offsets into a listing that shrinks as entries are
         * healed: a later page can miss some. Sweep again after this one. */
        if (more)
            hs->sweep_again = true;
    }
    hb_free(b);
    if (!more)
        hs->list_mask &= ~REPL_BIT(hs->list_child);
    list_next(hs);
    pump(hs);
}

/* Next page of the index of the child being listed, or the next child. */
static void list_next(heal_t *hs)
{
    repl_priv_t *p = hs->p;
    hs->list_mask &= p->up;
    int c = hs->list_child >= 0 && (hs->list_mask & REPL_BIT(hs->list_child)) ? hs->list_child
                                                                               : repl_first(hs->list_mask);
    if (c != hs->list_child)
        hs->list_off = 0;
    hs->list_child = c;
    if (c < 0)
        return;
    hbatch_t *b = hb_new(hs, 1, 0, 0);
    if (!b) {
        hs->sweep_failed++;
        hs->list_mask = 0;
        hs->list_child = -1;
        return;
    }
    kb_args_t a = { .gfid = kb_gfid_root, .flags = KB_IPC_INDEX_LIST, .off = hs->list_off,
                    .size = HEAL_INDEX_PAGE };
    hb_add(b, c, KB_FOP_IPC, &a);
    hb_go(b, list_got, hs);
}

static void crawl_start(heal_t *hs);

static void sweep_begin(void *arg)
{
    heal_t *hs = arg;
    repl_priv_t *p = hs->p;
    hs->found = hs->sweep_failed = 0;
    hs->sweep_again = false;
    hs->qhead = hs->qlen = 0;
    set_reset(hs);
    for (uint32_t i = 0; i < hs->nsplit; i++)
        hs->split_seen[i] = false;
    repl_mask_t want = hs->sweep_all ? repl_all(&p->cfg) : p->heal_children;
    if (hs->sweep_all && (p->up & repl_all(&p->cfg)) == repl_all(&p->cfg))
        hs->sweep_all = false;  /* every index is listed this time */
    hs->list_mask = want & p->up;
    hs->list_child = -1;
    kb_debug(p->xl->name, "heal sweep%s of children 0x%x", hs->cur_full ? " (full)" : "", hs->list_mask);
    list_next(hs);
    if (hs->cur_full)
        crawl_start(hs);
    pump(hs);
}

static void sweep_request(heal_t *hs, bool full)
{
    if (hs->sweeping) {
        hs->want_sweep = true;
        hs->want_full |= full;
        return;
    }
    hs->sweeping = true;
    hs->cur_full = full;
    hs->list_child = 0;         /* "listing" until sweep_begin runs */
    heal_later(hs, &hs->lsweep, sweep_begin, hs);
}

/* ---------------- heal full: the crawl ---------------- */

static void crawl_free(heal_t *hs)
{
    struct hcrawl *c = hs->crawl;
    if (!c)
        return;
    hlist_clear(&c->list);
    free(c->dirs);
    free(c);
    hs->crawl = NULL;
}

static int crawl_push(struct hcrawl *c, const kb_gfid_t *g)
{
    if (c->n == c->cap) {
        if (c->head > c->cap / 2) {
            memmove(c->dirs, c->dirs + c->head, (c->n - c->head) * sizeof(*c->dirs));
            c->n -= c->head;
            c->head = 0;
        } else {
            size_t cap = c->cap ? c->cap * 2 : 64;
            kb_gfid_t *d = realloc(c->dirs, cap * sizeof(*d));
            if (!d)
                return -ENOMEM;
            c->dirs = d;
            c->cap = cap;
        }
    }
    c->dirs[c->n++] = *g;
    return 0;
}

static void crawl_child(heal_t *hs);

static void crawl_listed(void *ctx, int err)
{
    heal_t *hs = ctx;
    if (err && err != -ENOENT && err != -ESTALE)
        hs->sweep_failed++;
    crawl_child(hs);
}

/* List the current directory on the next up child; at the end queue the
 * union of what the children hold. */
static void crawl_child(heal_t *hs)
{
    struct hcrawl *c = hs->crawl;
    c->mask &= hs->p->up;
    c->child = repl_first(c->mask);
    if (c->child >= 0) {
        c->mask &= ~REPL_BIT(c->child);
        c->ld.child = c->child;
        c->ld.out = &c->list;
        c->ld.cont = crawl_listed;
        c->ld.ctx = hs;
        heal_listdir(&c->ld);
        return;
    }
    for (size_t i = 0; i < c->list.n; i++) {
        hent_t *e = &c->list.e[i];
        int rc = enqueue(hs, &e->gfid, HQ_FULL);
        if (rc > 0 && S_ISDIR(e->type) && crawl_push(c, &e->gfid))
            rc = -ENOMEM;
        if (rc < 0)
            hs->sweep_failed++;
    }
    hlist_clear(&c->list);
    pump(hs);
    if (hs->crawl)
        heal_later(hs, &c->later, crawl_next, hs);
}

static void crawl_next(void *arg)
{
    heal_t *hs = arg;
    struct hcrawl *c = hs->crawl;
    if (!c)
        return;
    if (c->head == c->n) {
        crawl_free(hs);
        pump(hs);
        return;
    }
    if (hs->qlen - hs->qhead > CRAWL_HIGH) {
        c->paused = true;       /* pump resumes it */
        return;
    }
    c->ld = (hlistdir_t){ .hs = hs, .gfid = c->dirs[c->head++], .req = 0 };
    c->mask = hs->p->up;
    crawl_child(hs);
}

static void crawl_start(heal_t *hs)
{
    struct hcrawl *c = kb_zalloc(sizeof(*c));
    if (!c || crawl_push(c, &kb_gfid_root)) {
        free(c);
        hs->sweep_failed++;
        return;
    }
    hs->crawl = c;
    enqueue(hs, &kb_gfid_root, HQ_FULL);
    heal_later(hs, &c->later, crawl_next, hs);
}

/* ---------------- one object finished ---------------- */

void heal_obj_done(heal_t *hs, hobj_t *h)
{
    char gs[KB_GFID_STRLEN];
    /* Another healer held it. When two daemons were woken by the same
     * returning brick they can each hold it on some copies and both skip
     * it: look again soon (a jittered retry sweep), not at the next
     * periodic sweep a minute later. */
    if (h->skipped && !h->has_res)
        hs->sweep_again = true;
    if (!h->skipped) {
        if (h->err && !h->split) {
            hs->st.failed++;
            if (!h->has_res)
                hs->sweep_failed++;
            kb_log(KB_LOG_INFO, hs->p->xl->name, "heal of %s failed: %s (retried later)",
                   kb_gfid_str(&h->gfid, gs), strerror(-h->err));
        } else if (h->did) {
            hs->st.healed++;
        }
        heal_split_note(hs, &h->gfid, h->split);
    }
    if (h->has_res) {
        struct kb_heal_resolve r = h->res;
        int st = h->err ? h->err : h->split ? -EIO : 0;
        char msg[200];
        if (h->msg[0])
            snprintf(msg, sizeof(msg), "%s", h->msg);
        else if (st)
            snprintf(msg, sizeof(msg), "resolve failed: %s", strerror(-st));
        else
            snprintf(msg, sizeof(msg), "healed from copy %d%s", h->force_src,
                     h->did ? "" : " (the copies were already in sync)");
        h->has_res = false;
        heal_obj_free(h);
        r.done(r.cookie, st, msg);
        return;
    }
    /* Written again while it healed (a client could not reach the sink
     * for a while): heal it again now, a few times, then in a later sweep. */
    if (h->again && !h->err && hs->sweeping) {
        bool requeued = h->round + 1 < HEAL_AGAIN_ROUNDS &&
                        q_push(hs, &h->gfid, h->full ? HQ_FULL : 0, (uint8_t)(h->round + 1)) == 0;
        if (!requeued)
            hs->sweep_again = true;
    }
    heal_obj_free(h);
    hs->inflight--;
    pump(hs);
}

/* ---------------- resolve ---------------- */

static int heal_resolve(heal_t *hs, const struct kb_heal_resolve *r)
{
    repl_priv_t *p = hs->p;
    if (!r || !r->done || kb_gfid_is_null(&r->gfid))
        return -EINVAL;
    if (r->policy != KB_HEAL_POL_SOURCE && r->policy != KB_HEAL_POL_MTIME && r->policy != KB_HEAL_POL_SIZE)
        return -EINVAL;
    if (r->policy == KB_HEAL_POL_SOURCE && (r->source < 0 || r->source >= p->n))
        return -EINVAL;
    hobj_t *h = heal_obj_new(hs, &r->gfid, 0);
    if (!h)
        return -ENOMEM;
    h->has_res = true;
    h->res = *r;
    if (r->policy == KB_HEAL_POL_SOURCE)
        h->force_src = r->source;
    else
        h->policy = r->policy;
    heal_obj_start(h);
    return 0;
}

/* ---------------- timers, init, fini, ctl ---------------- */

static void kick_cb(evutil_socket_t fd, short what, void *arg)
{
    heal_t *hs = arg;
    hs->kick_armed = false;
    sweep_request(hs, false);
}

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
    sweep_request(arg, false);
}

void repl_heal_child_up(repl_priv_t *p, int i)
{
    heal_t *hs = p->heal;
    if (!hs || !p->shd)
        return;
    if (p->heal_children & REPL_BIT(i))
        hs->sweep_all = true;   /* our own brick is back: pull what it missed */
    if (hs->kick_armed || !hs->kick_ev)
        return;
    hs->kick_armed = true;
    hs->retry_ms = 0;
    arm(hs->kick_ev, HEAL_KICK_MS);
}

int repl_heal_init(repl_priv_t *p)
{
    heal_t *hs = kb_zalloc(sizeof(*hs));
    if (!hs)
        return -ENOMEM;
    hs->p = p;
    hs->cred = p->icred;
    hs->list_child = -1;
    hs->sweep_all = true;       /* a daemon that just started: its bricks may have been away */
    struct event_base *base = p->xl->graph ? p->xl->graph->base : NULL;
    if (base) {
        hs->later_ev = event_new(base, -1, 0, heal_later_cb, hs);
        hs->kick_ev = evtimer_new(base, kick_cb, hs);
        hs->tick_ev = event_new(base, -1, EV_PERSIST, tick_cb, hs);
        if (!hs->later_ev || !hs->kick_ev || !hs->tick_ev) {
            p->heal = hs;
            repl_heal_fini(p);
            return -ENOMEM;
        }
        if (p->shd)
            arm(hs->tick_ev, p->heal_interval_ms);
    }
    p->heal = hs;
    return 0;
}

void heal_free_all(heal_t *hs)
{
    while (hs->objs)
        heal_obj_free(hs->objs);
    while (hs->batches)
        hb_free(hs->batches);
    crawl_free(hs);
    free(hs->q);
    free(hs->set);
    free(hs);
}

void repl_heal_fini(repl_priv_t *p)
{
    heal_t *hs = p->heal;
    if (!hs)
        return;
    p->heal = NULL;
    if (hs->later_ev)
        event_free(hs->later_ev);
    if (hs->kick_ev)
        event_free(hs->kick_ev);
    if (hs->tick_ev)
        event_free(hs->tick_ev);
    hs->later_ev = hs->kick_ev = hs->tick_ev = NULL;
    hs->lhead = hs->ltail = NULL;
    hs->dead = true;
    /* Resolves still running are answered now (exactly once). */
    for (hobj_t *h = hs->objs; h; h = h->next)
        if (h->has_res) {
            h->has_res = false;
            h->res.done(h->res.cookie, -ECANCELED, "heal daemon stopped");
        }
    if (!hs->nwind)
        heal_free_all(hs);
}

static void stats_fill(heal_t *hs, struct kb_heal_stats *o)
{
    *o = hs->st;
    o->nactive = 0;
    for (int i = 0; i < KB_HEAL_MAX_ACTIVE; i++)
        if (hs->act[i].used)
            o->active[o->nactive++] = (struct kb_heal_active){ hs->act[i].gfid, hs->act[i].total,
                                                              hs->act[i].done };
    o->nsplit = hs->nsplit;
    memcpy(o->split, hs->split, hs->nsplit * sizeof(kb_gfid_t));
}

int repl_heal_ctl(repl_priv_t *p, int code, void *arg)
{
    heal_t *hs = p->heal;
    if (!hs)
        return -ENOSYS;
    switch (code) {
    case KB_CTL_HEAL_SWEEP:
    case KB_CTL_HEAL_FULL:
        hs->retry_ms = 0;
        sweep_request(hs, code == KB_CTL_HEAL_FULL);
        return 0;
    case KB_CTL_HEAL_STATS:
        if (!arg)
            return -EINVAL;
        stats_fill(hs, arg);
        return 0;
    case KB_CTL_HEAL_RESOLVE:
        return heal_resolve(hs, arg);
    default:
        return -ENOSYS;
    }
}
