/*
 * graphs.c — libkembar's live graph switch: calls routed through fd
 * handles that outlive graphs, the volfile watch, and the retirement of
 * old graph generations.
 *
 * Why: `volume add-brick`, `replace-brick`, `remove-brick` and `volume set`
 * change the volume definition, hence the client volfile, while VMs have
 * their images open. A mounted client must move to the new graph without
 * failing a single call and without the VM noticing.
 *
 * How
 *  - A thread re-fetches the volfile (GETSPEC) every volfile_check_ms. A
 *    changed text goes to the loop thread, which builds and inits a new
 *    graph beside the current one ("pending"). When it reports CHILD_UP it
 *    becomes current: every new call goes to it. If it is not up within
 *    KBC_SWITCH_UP_MS it is dropped and the next check tries again.
 *  - Users never see a graph's fd: OPEN/CREATE/OPENDIR replies carry a
 *    handle (slot + reuse tag) that maps to (graph, fd). At the switch every
 *    open handle is reopened by gfid on the new graph; calls on a handle
 *    being reopened wait in its queue (a round trip), then go to the new
 *    fd. Calls already in flight on the old fd finish there; the old fd is
 *    released once the last of them returned.
 *  - An old graph is finalised once no call runs on it and no handle lives
 *    on it. A handle whose reopen fails (e.g. the file was unlinked while
 *    open) stays on the old graph, which then stays up for it. An old graph
 *    still alive KBC_STUCK_REPORT_S after the switch is logged with what
 *    holds it (handles; stuck calls and its translators' status).
 *
 * Not carried over: POSIX/flock locks (LK) held through an fd are not moved
 * to the new graph; they are dropped with the old fd. A handle's RELEASE
 * first unlocks the OFD locks of its open file description (hlocks.c). Directory read
 * cursors are kept as numbers, which stays right as long as the sets a
 * directory is spread over keep their order (add-brick appends).
 *
 * Everything here runs on the loop thread, except the watch thread and
 * kbc_submit's hand-over, which touch only fields guarded by c->mu.
 */
#include <fcntl.h>
#include <stdio.h>
#include <time.h>

#include <event2/event.h>

#include "client/internal.h"
#include "lib/log.h"
#include "rpc/sync.h"
#include "rpc/wire.h"

#define KBC_VOLFILE_CHECK_MS 2000
#define KBC_SWITCH_UP_MS 15000
#define KBC_HANDLE_TAG_SHIFT 32
#define KBC_STUCK_REPORT_S 10     /* a retired graph alive this long is logged ... */
#define KBC_STUCK_REPEAT_S 300    /* ... and again every 5 minutes while it lives */

static const kb_cred_t internal_cred;     /* uid 0: reopen and release are ours */

/* ---------------- graph generations ---------------- */

static void retire_check(kbc_t *c, kbc_graph_t *gr);

static void graph_free(kbc_graph_t *gr)
{
    if (gr->stuck_ev)
        event_free(gr->stuck_ev);
    if (gr->g)
        kb_graph_fini(gr->g);
    free(gr->volfile);
    free(gr);
}

static void graph_unlink(kbc_t *c, kbc_graph_t *gr)
{
    for (kbc_graph_t **pp = &c->graphs; *pp; pp = &(*pp)->next)
        if (*pp == gr) {
            *pp = gr->next;
            return;
        }
}

static void graph_fini_job(void *arg)
{
    kbc_graph_t *gr = arg;
    kbc_t *c = gr->c;
    if (c->closing)
        return;                  /* kbc_graphs_fini frees it */
    graph_unlink(c, gr);
    for (uint32_t i = 0; i < c->nhandles; i++)   /* a later graph may reuse the address */
        if (c->handles[i] && c->handles[i]->failed_on == gr)
            c->handles[i]->failed_on = NULL;
    kb_info("client", "volume '%s': an old graph generation is finalised", c->volume);
    graph_free(gr);
}

/* A retired graph still alive long after its switch: log what holds it,
 * so that a client keeping an old graph (which makes `rebalance start` wait
 * for it) is explained by its own log: the handles on it, and when calls
 * are stuck there, those calls and every translator's status (e.g.
 * write-behind's queues). A handle whose reopen failed (a file unlinked
 * while open) keeps its graph by design; it is listed as such. */
static void stuck_report(evutil_socket_t fd, short what, void *arg)
{
    kbc_graph_t *gr = arg;
    kbc_t *c = gr->c;
    char gs[KB_GFID_STRLEN];
    (void)fd;
    (void)what;
    kb_warn("client", "volume '%s': an old graph generation is still alive %llu s after its switch: "
            "%u calls in flight, %u handles on it", c->volume,
            (unsigned long long)((kb_now_ms() - gr->retired_ms) / 1000), gr->inflight, gr->nfds);
    for (uint32_t i = 0; i < c->nhandles; i++) {
        const kbc_handle_t *h = c->handles[i];
        if (h && (h->graph == gr || h->old_graph == gr))
            kb_warn("client", "  handle %u (%s): %s fd, %u calls on it%s%s%s%s", i + 1, kb_gfid_str(&h->gfid, gs),
                    h->graph == gr ? "its" : "its previous", h->graph == gr ? h->busy : h->old_busy,
                    h->reopening ? ", being reopened" : "", h->closing ? ", being released" : "",
                    h->closed ? ", released" : "", h->failed_on ? ", its reopen failed" : "");
    }
    if (gr->inflight) {
        kb_graph_dump_inflight(gr->g);
        struct kb_ctl_status st = { 0 };
        kb_graph_ctl(gr->g, KB_CTL_STATUS, &st);
        if (st.text)
            kb_warn("client", "  its translators:\n%s", st.text);
        free(st.text);
    }
    struct timeval tv = { KBC_STUCK_REPEAT_S, 0 };
    evtimer_add(gr->stuck_ev, &tv);
}

/* Arm GR's report (a diagnostic: without memory there is none). */
static void stuck_watch(kbc_t *c, kbc_graph_t *gr)
{
    gr->retired_ms = kb_now_ms();
    if (!gr->stuck_ev && !(gr->stuck_ev = evtimer_new(kb_loop_base(c->loop), stuck_report, gr)))
        return;
    struct timeval tv = { KBC_STUCK_REPORT_S, 0 };
    evtimer_add(gr->stuck_ev, &tv);
}

/* GR is no longer current: finalise it once nothing uses it. Deferred to a
 * fresh loop turn: we may be inside one of its own callbacks. */
static void retire_check(kbc_t *c, kbc_graph_t *gr)
{
    if (c->closing || gr == c->cur || gr == c->pending || gr->fini_queued || gr->inflight || gr->nfds)
        return;
    gr->fini_queued = true;
    if (kb_loop_run_in(c->loop, graph_fini_job, gr) < 0)
        gr->fini_queued = false;     /* retried at its next event */
}

static kbc_graph_t *graph_new(kbc_t *c, kb_graph_t *g, const char *volfile)
{
    kbc_graph_t *gr = kb_zalloc(sizeof(*gr));
    if (!gr)
        return NULL;
    gr->c = c;
    gr->g = g;
    gr->volfile = volfile ? strdup(volfile) : NULL;
    gr->next = c->graphs;
    c->graphs = gr;
    return gr;
}

/* ---------------- handles ---------------- */

static kbc_handle_t *handle_get(kbc_t *c, uint64_t v)
{
    uint32_t slot = (uint32_t)v;
    if (slot == 0 || slot > c->nhandles || (v >> (KBC_HANDLE_TAG_SHIFT + 16)))
        return NULL;
    kbc_handle_t *h = c->handles[slot - 1];
    return h && h->tag == (uint16_t)(v >> KBC_HANDLE_TAG_SHIFT) && !h->closed ? h : NULL;
}

/* A handle for GFD on GR; 0 on ENOMEM (values are never 0). */
static uint64_t handle_new(kbc_t *c, kbc_graph_t *gr, uint64_t gfd, const kb_gfid_t *gfid,
                           uint32_t flags, bool dir)
{
    uint32_t slot;
    if (c->nfree) {
        slot = c->free_slots[--c->nfree];
    } else {
        if (c->nhandles == c->handles_cap) {
            uint32_t cap = c->handles_cap ? 2 * c->handles_cap : 64;
            kbc_handle_t **hs = realloc(c->handles, cap * sizeof(*hs));
            uint32_t *fs = hs ? realloc(c->free_slots, cap * sizeof(*fs)) : NULL;
            if (hs)
                c->handles = hs;
            if (!fs)
                return 0;
            c->free_slots = fs;
            c->handles_cap = cap;
        }
        slot = c->nhandles++;
        c->handles[slot] = NULL;
    }
    kbc_handle_t *h = kb_zalloc(sizeof(*h));
    if (!h) {
        c->free_slots[c->nfree++] = slot;
        return 0;
    }
    if (++c->next_tag == 0)
        c->next_tag = 1;
    *h = (kbc_handle_t){ .graph = gr, .gfd = gfd, .gfid = *gfid, .is_dir = dir, .tag = c->next_tag, .slot = slot,
                         .flags = flags & ~(uint32_t)(O_CREAT | O_EXCL | O_TRUNC) };
    h->waiting_tail = &h->waiting;
    c->handles[slot] = h;
    gr->nfds++;
    return ((uint64_t)h->tag << KBC_HANDLE_TAG_SHIFT) | (slot + 1);
}

static void handle_free(kbc_t *c, kbc_handle_t *h)
{
    kbc_hlocks_free(h);
    c->handles[h->slot] = NULL;
    c->free_slots[c->nfree++] = h->slot;
    free(h);
}

/* ---- releasing a graph fd (internal: old fds after a reopen) ---- */

struct release {
    kbc_graph_t *gr;
    kb_args_t a;
};

static void release_done(void *cookie, const kb_reply_t *r)
{
    struct release *rel = cookie;
    kbc_graph_t *gr = rel->gr;
    (void)r;
    gr->inflight--;
    gr->nfds--;
    free(rel);
    retire_check(gr->c, gr);
}

static void release_send(kbc_graph_t *gr, uint64_t gfd, const kb_gfid_t *gfid, bool dir)
{
    struct release *rel = kb_zalloc(sizeof(*rel));
    if (!rel) {
        gr->nfds--;              /* the brick drops it when the graph goes */
        retire_check(gr->c, gr);
        return;
    }
    rel->gr = gr;
    rel->a.gfid = *gfid;
    rel->a.fd = gfd;
    gr->inflight++;
    kb_wind(gr->g->top, dir ? KB_FOP_RELEASEDIR : KB_FOP_RELEASE, &rel->a, &internal_cred,
            kb_graph_next_req_id(gr->g), release_done, rel);
}

/* ---- reopening a handle on the current graph ---- */

struct reopen {
    kbc_t *c;
    kbc_handle_t *h;
    kbc_graph_t *to;
    kb_args_t a;
};

static void requeue(kbc_t *c, kbc_handle_t *h)
{
    struct kbc_sub *s = h->waiting;
    h->waiting = NULL;
    h->waiting_tail = &h->waiting;
    while (s) {
        struct kbc_sub *next = s->next;
        s->next = NULL;
        if (kb_loop_run_in(c->loop, kbc_sub_run, s) < 0)
            kbc_sub_run(s);      /* no memory to defer: run it from here */
        s = next;
    }
}

static void reopen_resume(void *cookie)
{
    struct reopen *ro = cookie;
    kbc_t *c = ro->c;
    kbc_handle_t *h = ro->h;
    kbc_graph_t *to = ro->to;
    h->reopening = false;
    free(ro);
    requeue(c, h);
    retire_check(c, to);
}

static void reopen_done(void *cookie, const kb_reply_t *r)
{
    struct reopen *ro = cookie;
    kbc_t *c = ro->c;
    kbc_handle_t *h = ro->h;
    kbc_graph_t *to = ro->to;
    char gs[KB_GFID_STRLEN];
    to->inflight--;
    if (r->status == 0) {
        to->nfds++;
        h->old_graph = h->graph;
        h->old_gfd = h->gfd;
        h->old_busy = h->busy;
        h->graph = to;
        h->gfd = r->fd;
        h->busy = 0;
        if (h->old_busy == 0) {
            release_send(h->old_graph, h->old_gfd, &h->gfid, h->is_dir);
            h->old_graph = NULL;
        }
        /* Its locks are taken on the new graph before any call goes there
         * (the bricks they share see the same instance: a no-op there). */
        if (kbc_hlocks_replay(h, to, reopen_resume, ro))
            return;
    } else {
        h->failed_on = to;
        kb_warn("client", "volume '%s': cannot reopen %s on the new graph (%s); it stays on the old one",
                c->volume, kb_gfid_str(&h->gfid, gs), strerror(-r->status));
    }
    reopen_resume(ro);
}

static void reopen_begin(kbc_t *c, kbc_handle_t *h)
{
    struct reopen *ro = kb_zalloc(sizeof(*ro));
    if (!ro)
        return;                  /* stays where it is; tried again at its next call */
    *ro = (struct reopen){ .c = c, .h = h, .to = c->cur };
    ro->a.gfid = h->gfid;
    ro->a.flags = h->flags;
    h->reopening = true;
    c->cur->inflight++;
    kb_wind(c->cur->g->top, h->is_dir ? KB_FOP_OPENDIR : KB_FOP_OPEN, &ro->a, &internal_cred,
            kb_graph_next_req_id(c->cur->g), reopen_done, ro);
}

static bool handle_wants_reopen(const kbc_t *c, const kbc_handle_t *h)
{
    return c->cur && h->graph && h->graph != c->cur && h->failed_on != c->cur && !h->reopening &&
           !h->old_graph && !h->closing && !h->closed;
}

/* ---------------- handles as data (client/takeover.h) ---------------- */

static uint64_t handle_value(const kbc_handle_t *h)
{
    return ((uint64_t)h->tag << KBC_HANDLE_TAG_SHIFT) | (h->slot + 1);
}

void kbc_handle_changed(kbc_t *c, const kbc_handle_t *h)
{
    if (!c->hwatch_put)
        return;
    kbc_handle_info_t info = { .value = handle_value(h), .gfid = h->gfid, .flags = h->flags,
                               .is_dir = h->is_dir, .lk_lost = h->lk_lost, .nowners = h->nlkown,
                               .owners = h->lkown, .locks = &h->lklog };
    c->hwatch_put(c->hwatch_arg, &info);
}

void kbc_handles_watch(kbc_t *c, kbc_handle_put_fn put, kbc_handle_closed_fn closed, void *arg)
{
    c->hwatch_arg = arg;
    c->hwatch_put = put;
    c->hwatch_closed = closed;
}

struct restore_sync {            /* on the caller's stack */
    int rc;
    bool placed;                 /* (c->mu) the handles exist: the caller may go on */
};

struct restore {
    kbc_t *c;
    const kbc_handle_info_t *hs; /* the caller's, until sync->placed */
    uint32_t n;
    struct restore_sync *sync;   /* the caller's, until placed */
    unsigned pending, failed;    /* loop thread: reopens not yet settled (+1 guard) */
    void (*done)(void *arg, unsigned failed);
    void *arg;
};

struct restore_one {
    struct restore *r;
    kbc_handle_t *h;
    kbc_graph_t *gr;
    kb_args_t a;
};

static void restore_settled(struct restore *r)
{
    if (--r->pending)
        return;
    void (*done)(void *, unsigned) = r->done;
    void *arg = r->arg;
    unsigned failed = r->failed;
    free(r);
    done(arg, failed);
}

static void restore_resume(void *cookie)
{
    struct restore_one *o = cookie;
    struct restore *r = o->r;
    kbc_handle_t *h = o->h;
    h->reopening = false;
    if (h->lk_lost)
        r->failed++;
    requeue(r->c, h);
    free(o);
    restore_settled(r);
}

static void restore_reopened(void *cookie, const kb_reply_t *rep)
{
    struct restore_one *o = cookie;
    kbc_t *c = o->r->c;
    kbc_handle_t *h = o->h;
    char gs[KB_GFID_STRLEN];
    o->gr->inflight--;
    if (rep->status == 0) {
        h->graph = o->gr;
        h->gfd = rep->fd;
        o->gr->nfds++;
        /* Its locks before any call (the bricks keep them for this instance:
         * a no-op there, unless the lease ran out and someone took them). */
        if (!h->lk_lost && kbc_hlocks_replay(h, o->gr, restore_resume, o))
            return;
    } else {
        h->lk_lost = -EBADFD;
        kb_err("client", "volume '%s': cannot reopen %s taken over from the previous process (%s): "
               "its calls fail from now on", c->volume, kb_gfid_str(&h->gfid, gs), strerror(-rep->status));
        kbc_handle_changed(c, h);
    }
    restore_resume(o);
}

/* Make the handle at its value's slot and tag (loop thread). */
static int restore_place(kbc_t *c, const kbc_handle_info_t *in, kbc_handle_t **out)
{
    uint32_t slot = (uint32_t)in->value - 1;
    uint16_t tag = (uint16_t)(in->value >> KBC_HANDLE_TAG_SHIFT);
    if ((uint32_t)in->value == 0 || !tag || (in->value >> (KBC_HANDLE_TAG_SHIFT + 16)))
        return -EINVAL;
    if (slot >= c->handles_cap) {
        uint32_t cap = c->handles_cap ? c->handles_cap : 64;
        while (cap <= slot)
            cap *= 2;
        kbc_handle_t **hs = realloc(c->handles, cap * sizeof(*hs));
        if (hs)
            c->handles = hs;
        uint32_t *fs = hs ? realloc(c->free_slots, cap * sizeof(*fs)) : NULL;
        if (!fs)
            return -ENOMEM;
        c->free_slots = fs;
        c->handles_cap = cap;
    }
    while (c->nhandles <= slot)
        c->handles[c->nhandles++] = NULL;
    if (c->handles[slot])
        return -EEXIST;
    kbc_handle_t *h = kb_zalloc(sizeof(*h));
    kbc_lkown_t *own = in->nowners ? malloc(in->nowners * sizeof(*own)) : NULL;
    uint32_t nl = in->locks ? in->locks->n : 0;
    kb_lkreq_t *req = nl ? malloc(nl * sizeof(*req)) : NULL;
    if (!h || (in->nowners && !own) || (nl && !req)) {
        free(h);
        free(own);
        free(req);
        return -ENOMEM;
    }
    if (own)
        memcpy(own, in->owners, in->nowners * sizeof(*own));
    if (req)
        memcpy(req, in->locks->req, nl * sizeof(*req));
    *h = (kbc_handle_t){ .gfid = in->gfid, .flags = in->flags, .is_dir = in->is_dir, .tag = tag,
                         .slot = slot, .restored = true, .reopening = true, .lk_lost = in->lk_lost,
                         .lkown = own, .nlkown = in->nowners, .lkown_cap = in->nowners,
                         .lklog = { .req = req, .n = nl, .cap = nl,
                                    .incomplete = in->locks && in->locks->incomplete } };
    h->waiting_tail = &h->waiting;
    c->handles[slot] = h;
    if ((uint16_t)(tag - c->next_tag) < 0x8000)
        c->next_tag = tag;       /* new handles' tags follow the newest restored */
    *out = h;
    return 0;
}

static void restore_job(void *arg)
{
    struct restore *r = arg;
    kbc_t *c = r->c;
    kbc_handle_t **made = r->n ? calloc(r->n, sizeof(*made)) : NULL;
    int rc = r->n && !made ? -ENOMEM : 0;
    for (uint32_t i = 0; i < r->n && rc == 0; i++)
        rc = restore_place(c, &r->hs[i], &made[i]);
    if (rc == 0) {
        c->nfree = 0;            /* the free slots are the holes between restored ones */
        for (uint32_t i = c->nhandles; i-- > 0;)
            if (!c->handles[i])
                c->free_slots[c->nfree++] = i;
    } else {
        for (uint32_t i = 0; i < r->n && made; i++)
            if (made[i]) {
                c->handles[made[i]->slot] = NULL;
                kbc_hlocks_free(made[i]);
                free(made[i]);
            }
    }
    pthread_mutex_lock(&c->mu);
    r->sync->rc = rc;
    r->sync->placed = true;      /* r->hs and r->sync belong to the caller again */
    r->sync = NULL;
    r->hs = NULL;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
    if (rc < 0) {
        free(made);
        free(r);
        return;
    }
    r->pending = r->n + 1;
    for (uint32_t i = 0; i < r->n; i++) {
        kbc_handle_t *h = made[i];
        struct restore_one *o = c->cur ? kb_zalloc(sizeof(*o)) : NULL;
        if (!o) {
            h->reopening = false;
            h->lk_lost = -EBADFD;
            r->failed++;
            restore_settled(r);
            continue;
        }
        *o = (struct restore_one){ .r = r, .h = h, .gr = c->cur };
        o->a.gfid = h->gfid;
        o->a.flags = h->flags;
        c->cur->inflight++;
        kb_wind(c->cur->g->top, h->is_dir ? KB_FOP_OPENDIR : KB_FOP_OPEN, &o->a, &internal_cred,
                kb_graph_next_req_id(c->cur->g), restore_reopened, o);
    }
    free(made);
    restore_settled(r);          /* the guard */
}

int kbc_handles_restore(kbc_t *c, const kbc_handle_info_t *hs, uint32_t n,
                        void (*done)(void *arg, unsigned failed), void *arg)
{
    struct restore_sync sync = { 0 };
    struct restore *r = kb_zalloc(sizeof(*r));
    if (!r)
        return -ENOMEM;
    *r = (struct restore){ .c = c, .hs = hs, .n = n, .sync = &sync, .done = done, .arg = arg };
    if (kb_loop_run_in(c->loop, restore_job, r) < 0) {
        free(r);
        return -ENOMEM;
    }
    pthread_mutex_lock(&c->mu);
    while (!sync.placed)
        pthread_cond_wait(&c->cv, &c->mu);
    pthread_mutex_unlock(&c->mu);
    return sync.rc;
}

/* ---------------- calls ---------------- */

static bool opens_fd(kb_op_t op)
{
    return op == KB_FOP_OPEN || op == KB_FOP_CREATE || op == KB_FOP_OPENDIR;
}

static bool closes_fd(kb_op_t op)
{
    return op == KB_FOP_RELEASE || op == KB_FOP_RELEASEDIR;
}

/* Lets go of what the fd holds: these still run on a handle whose lock
 * was lost (they go where the fd is, and succeed), so the locks it kept on
 * the bricks that still had them do not outlive it. */
static bool lets_go(kb_op_t op, const kb_args_t *a)
{
    return closes_fd(op) || op == KB_FOP_FLUSH || (op == KB_FOP_LK && a->lock.type == KB_LK_UNLCK);
}

static void sub_fail(struct kbc_sub *s, int status)
{
    kb_reply_t r = { .status = status };
    kbc_sub_done(s, &r);
}

static void sub_wind(struct kbc_sub *s, kbc_graph_t *gr)
{
    s->graph = gr;
    gr->inflight++;
    kb_wind(gr->g->top, s->op, &s->a, &s->cred, kb_graph_next_req_id(gr->g), kbc_sub_done, s);
}

void kbc_sub_run(void *arg)
{
    struct kbc_sub *s = arg;
    kbc_t *c = s->c;
    kbc_graph_t *gr = c->cur;
    s->a = *s->args;
    if (kb_args_uses_fd(s->op, s->args)) {
        kbc_handle_t *h = handle_get(c, s->args->fd);
        if (!h) {
            sub_fail(s, -EBADF);
            return;
        }
        /* stays: goes where the fd is, lost or not (a release; the unlocks and
         * FLUSH of a lost handle, which takes nothing again anywhere) */
        bool stays = closes_fd(s->op) || (h->lk_lost && lets_go(s->op, s->args));
        if (h->lk_lost && !stays) {   /* a lock of it went to another client */
            sub_fail(s, h->lk_lost);
            return;
        }
        if (!stays && handle_wants_reopen(c, h))
            reopen_begin(c, h);
        if (h->reopening) {
            *h->waiting_tail = s;
            h->waiting_tail = &s->next;
            return;
        }
        /* From here the fd must stay where it is: a reopen starting while
         * the release is under way would release this fd a second time and
         * leak the new one. */
        if (closes_fd(s->op))
            h->closing = true;
        s->h = h;
        s->gfd = h->gfd;
        s->a.fd = h->gfd;
        h->busy++;
        gr = h->graph;
        if (!gr) {               /* restored, and its reopen failed: no fd anywhere to release */
            sub_fail(s, stays ? 0 : -EBADFD);
            return;
        }
    }
    if (!gr || !gr->g->top) {
        if (s->h)
            s->h->busy--;
        s->h = NULL;
        sub_fail(s, -ENOTCONN);
        return;
    }
    /* The last close of an open file description: its OFD locks go first. */
    if (s->op == KB_FOP_RELEASE && kbc_hlocks_drop(s, s->h, gr, sub_wind))
        return;
    sub_wind(s, gr);
}

/*
 * Open-unlinked files: a file unlinked (or renamed over) while open has no
 * name and, on the bricks, no gfid handle any more, but its open fds still
 * work — as on ext4, fstat must give st_nlink 0, and a truncate or chmod of
 * the open file must work. The kernel asks those by inode (fstat is a
 * GETATTR without a file handle), so a STAT/SETATTR/TRUNCATE by gfid that
 * finds nothing is asked again through an open handle of that gfid, if this
 * client has one. Only on that error path: the handle table is scanned.
 */
bool kbc_sub_retry_open(struct kbc_sub *s, const kb_reply_t *r)
{
    if ((r->status != -ESTALE && r->status != -ENOENT) || s->h || s->args == &s->by_handle ||
        (s->op != KB_FOP_STAT && s->op != KB_FOP_SETATTR && s->op != KB_FOP_TRUNCATE))
        return false;
    kbc_t *c = s->c;
    uint64_t v = 0;
    for (uint32_t i = 0; i < c->nhandles && !v; i++) {
        kbc_handle_t *h = c->handles[i];
        if (h && !h->is_dir && !h->closing && !h->closed && kb_gfid_eq(&h->gfid, &s->args->gfid))
            v = ((uint64_t)h->tag << KBC_HANDLE_TAG_SHIFT) | (i + 1);
    }
    if (!v)
        return false;
    if (s->graph)
        s->graph->inflight--;
    s->graph = NULL;
    s->by_handle = *s->args;
    s->by_handle.fd = v;
    s->by_handle.fd_valid = 1;
    s->args = &s->by_handle;
    /* From a completion: in a fresh loop turn, not inside the unwinding translators. */
    if (kb_loop_run_in(c->loop, kbc_sub_run, s) < 0)
        kbc_sub_run(s);
    return true;
}

/* The reply as the user sees it: a new graph fd becomes a handle. */
void kbc_sub_unwound(struct kbc_sub *s, const kb_reply_t *in, kb_reply_t *out)
{
    kbc_t *c = s->c;
    *out = *in;
    if (s->graph)
        s->graph->inflight--;
    if (s->h && (s->op == KB_FOP_LK || s->op == KB_FOP_FLUSH)) {
        kbc_hlocks_note(s->h, s->op, s->args, in->status);
        kbc_handle_changed(c, s->h);
    }
    /* The handle is gone for its user once its RELEASE is answered: the watch
     * hears it first (a RELEASE of a previous fd after a reopen is internal). */
    if (s->h && closes_fd(s->op) && s->graph == s->h->graph && s->gfd == s->h->gfd && c->hwatch_closed)
        c->hwatch_closed(c->hwatch_arg, ((uint64_t)s->h->tag << KBC_HANDLE_TAG_SHIFT) | (s->h->slot + 1));
    if (!opens_fd(s->op) || in->status < 0 || !s->graph)
        return;
    const kb_gfid_t *gfid = &s->args->gfid;
    if (s->op == KB_FOP_CREATE)
        gfid = kb_gfid_is_null(&s->args->newgfid) ? &in->attr.gfid : &s->args->newgfid;
    bool dir = s->op == KB_FOP_OPENDIR;
    out->fd = handle_new(c, s->graph, in->fd, gfid, s->args->flags, dir);
    if (out->fd) {
        s->opened = handle_get(c, out->fd);
        s->opened_fd = out->fd;
        kbc_handle_changed(c, s->opened);
    }
    if (!out->fd) {
        s->graph->nfds++;        /* release_send takes it back */
        release_send(s->graph, in->fd, gfid, dir);
        out->status = -ENOMEM;
    }
}

/* After the user's callback: the handle's and the graph's upkeep. */
void kbc_sub_retire(struct kbc_sub *s)
{
    kbc_t *c = s->c;
    kbc_handle_t *h = s->h;
    if (h) {
        bool on_current = s->graph == h->graph && s->gfd == h->gfd;
        if (on_current)
            h->busy--;
        else
            h->old_busy--;
        if (h->old_graph && h->old_busy == 0) {
            release_send(h->old_graph, h->old_gfd, &h->gfid, h->is_dir);
            h->old_graph = NULL;
        }
        if (closes_fd(s->op) && on_current) {
            h->closed = true;
            if (h->graph) {
                h->graph->nfds--;
                retire_check(c, h->graph);
            }
        }
        if (h->closed) {
            if (!h->old_graph && h->busy == 0)
                handle_free(c, h);
        } else if (handle_wants_reopen(c, h)) {
            reopen_begin(c, h);  /* an old fd just went: now move it */
        }
    }
    /* Opened on a graph that was replaced meanwhile: move it now, so the
     * old graph is not kept for a file nobody touches. */
    if (s->opened && handle_get(c, s->opened_fd) == s->opened && handle_wants_reopen(c, s->opened))
        reopen_begin(c, s->opened);
    if (s->graph)
        retire_check(c, s->graph);
}

/* ---------------- switching ---------------- */

static void mirror_up(kbc_t *c, bool up)
{
    pthread_mutex_lock(&c->mu);
    c->up = up;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

static void switch_end(kbc_t *c, const char *keep_volfile)
{
    pthread_mutex_lock(&c->mu);
    if (keep_volfile) {
        free(c->volfile);
        c->volfile = strdup(keep_volfile);
    }
    c->switching = false;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

struct activate { kbc_t *c; kbc_graph_t *gr; };

static void activate_job(void *arg)
{
    struct activate *a = arg;
    kbc_t *c = a->c;
    kbc_graph_t *gr = a->gr;
    free(a);
    if (c->closing || c->pending != gr)
        return;                  /* given up meanwhile (and maybe freed) */
    kbc_graph_t *old = c->cur;
    c->pending = NULL;
    if (c->pending_timer)
        evtimer_del(c->pending_timer);
    c->cur = gr;
    c->graph = gr->g;
    pthread_mutex_lock(&c->mu);
    c->switches++;
    pthread_mutex_unlock(&c->mu);
    mirror_up(c, true);
    switch_end(c, NULL);
    kb_info("client", "volume '%s': switched to a new graph (the volume definition changed)", c->volume);
    for (uint32_t i = 0; i < c->nhandles; i++) {
        kbc_handle_t *h = c->handles[i];
        if (h && handle_wants_reopen(c, h))
            reopen_begin(c, h);
    }
    if (old) {
        old->retired = true;
        stuck_watch(c, old);
        retire_check(c, old);
    }
}

static void on_graph_event(kb_graph_t *g, int event)
{
    kbc_t *c = g->owner;
    if (c->cur && g == c->cur->g) {
        if (event != KB_EV_CHILD_UP && event != KB_EV_CHILD_DOWN)
            return;
        mirror_up(c, event == KB_EV_CHILD_UP);
        kb_info("client", "volume '%s' is %s", c->volume, event == KB_EV_CHILD_UP ? "up" : "down");
    } else if (c->pending && g == c->pending->g && event == KB_EV_CHILD_UP) {
        /* Not from inside the graph's own notify: in a fresh loop turn. */
        struct activate *a = malloc(sizeof(*a));
        if (a) {
            *a = (struct activate){ c, c->pending };
            if (kb_loop_run_in(c->loop, activate_job, a) < 0)
                free(a);
        }
    }
    /* Retired graphs: their ups and downs are nobody's business. */
}

static void pending_timeout(evutil_socket_t fd, short what, void *arg)
{
    kbc_t *c = arg;
    kbc_graph_t *gr = c->pending;
    (void)fd;
    (void)what;
    if (!gr)
        return;
    c->pending = NULL;
    kb_warn("client", "volume '%s': the new graph did not come up within %d s; keeping the current one "
            "(will try again)", c->volume, KBC_SWITCH_UP_MS / 1000);
    switch_end(c, c->cur ? c->cur->volfile : NULL);   /* the same text is tried again */
    gr->retired = true;
    retire_check(c, gr);
}

/* Graph G from VOLFILE: give protocol/client this client's TLS files. */
static void graph_prepare(kbc_t *c, kb_graph_t *g)
{
    g->loop = c->loop;
    g->owner = c;
    g->on_event = on_graph_event;
    for (int i = 0; c->tls_dir && i < g->nall; i++)
        if (strcmp(g->all[i]->type->name, "protocol/client") == 0)
            kb_opts_set(g->all[i]->opts, "tls-dir", c->tls_dir);
}

int kbc_graphs_start(kbc_t *c, kb_graph_t *g, const char *volfile, char *err, size_t errlen)
{
    graph_prepare(c, g);
    kbc_graph_t *gr = graph_new(c, g, volfile);
    if (!gr) {
        kb_graph_fini(g);
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    c->cur = gr;                 /* before init: CHILD_UP may arrive inside it */
    c->graph = g;
    int rc = kb_graph_init(g, kb_loop_base(c->loop), err, errlen);
    if (rc < 0) {
        /* As kembard does: fini tolerates translators that never initialised. */
        c->cur = NULL;
        c->graph = NULL;
        graph_unlink(c, gr);
        graph_free(gr);
    }
    return rc;
}

static void switch_start(void *arg)
{
    char *text = arg;
    kbc_t *c = *(kbc_t **)text;          /* see hand_over() */
    const char *volfile = text + sizeof(kbc_t *);
    char err[256] = "";
    if (c->closing || c->pending) {
        free(text);
        return;
    }
    kb_graph_t *g = kb_graph_parse(volfile, err, sizeof(err));
    if (!g) {
        kb_err("client", "volume '%s': the changed volfile is unusable, keeping the current graph: %s",
               c->volume, err);
        switch_end(c, NULL);             /* this text is not tried again */
        free(text);
        return;
    }
    graph_prepare(c, g);
    kbc_graph_t *gr = graph_new(c, g, volfile);
    free(text);
    if (!gr) {
        kb_graph_fini(g);
        switch_end(c, c->cur ? c->cur->volfile : NULL);
        return;
    }
    if (!c->pending_timer)
        c->pending_timer = evtimer_new(kb_loop_base(c->loop), pending_timeout, c);
    c->pending = gr;
    kb_info("client", "volume '%s': the volume definition changed; building the new graph", c->volume);
    if (kb_graph_init(g, kb_loop_base(c->loop), err, sizeof(err)) < 0 || !c->pending_timer) {
        kb_err("client", "volume '%s': cannot start the new graph, keeping the current one: %s",
               c->volume, err[0] ? err : "out of memory");
        if (c->pending == gr)
            c->pending = NULL;
        graph_unlink(c, gr);
        graph_free(gr);
        switch_end(c, NULL);
        return;
    }
    if (c->pending == gr) {
        struct timeval tv = { KBC_SWITCH_UP_MS / 1000, 0 };
        evtimer_add(c->pending_timer, &tv);
    }
}

void kbc_graphs_fini(kbc_t *c)
{
    c->closing = true;
    if (c->pending_timer)
        event_free(c->pending_timer);
    c->pending_timer = NULL;
    c->pending = NULL;
    c->cur = NULL;
    c->graph = NULL;
    /* Finalise every generation first (failed calls may still touch their
     * kbc_graph_t), then free the bookkeeping. */
    for (kbc_graph_t *gr = c->graphs; gr; gr = gr->next) {
        kb_graph_fini(gr->g);
        gr->g = NULL;
    }
    while (c->graphs) {
        kbc_graph_t *gr = c->graphs;
        c->graphs = gr->next;
        graph_free(gr);
    }
    for (uint32_t i = 0; i < c->nhandles; i++)
        free(c->handles[i]);
    free(c->handles);
    free(c->free_slots);
    c->handles = NULL;
    c->nhandles = c->handles_cap = c->nfree = 0;
}

/* ---------------- the volfile watch (its own thread) ---------------- */

/* GETSPEC from the first server that answers; NULL if none did or the volume
 * is gone (a stopped or deleted volume keeps its current graph). */
static char *fetch_volfile(kbc_t *c, const kbc_spec_t *spec)
{
    uint32_t ms = c->opts.connect_timeout_ms;
    for (int i = 0; i < spec->nservers; i++) {
        char err[256];
        rpc_sync_t *s = rpc_sync_connect_ctx(spec->servers[i].host, spec->servers[i].port, ms, c->tls,
                                             err, sizeof(err));
        if (!s)
            continue;
        kb_enc_t e;
        kb_enc_init(&e);
        kb_enc_str(&e, spec->volume);
        rpc_msg_t reply = { 0 };
        int rc = e.err ? e.err : rpc_sync_call(s, KB_PROC_GETSPEC, e.p, (uint32_t)e.len, ms, &reply, err, sizeof(err));
        kb_enc_free(&e);
        rpc_sync_close(s);
        char *text = NULL;
        if (rc == 0 && reply.hdr.status == 0) {
            kb_dec_t d;
            kb_dec_init(&d, reply.payload, reply.hdr.plen);
            kb_dec_str(&d, &text, KB_WIRE_PLEN_MAX);
            if (d.err) {
                free(text);
                text = NULL;
            }
        }
        int status = rc == 0 ? reply.hdr.status : rc;
        if (rc == 0)
            rpc_msg_free(&reply);
        if (text || (status < 0 && rc == 0))
            return text;         /* an answer (a refusal is an answer too) */
    }
    return NULL;
}

/* Give TEXT to the loop thread (c->mu held). */
static void hand_over(kbc_t *c, const char *text)
{
    size_t len = strlen(text);
    char *buf = malloc(sizeof(kbc_t *) + len + 1);
    if (!buf)
        return;
    memcpy(buf, &c, sizeof(c));
    memcpy(buf + sizeof(c), text, len + 1);
    free(c->volfile);
    c->volfile = strdup(text);
    c->switching = true;
    if (kb_loop_run_in(c->loop, switch_start, buf) < 0) {
        free(buf);
        c->switching = false;
    }
}

static void *watch_main(void *arg)
{
    kbc_t *c = arg;
    kbc_spec_t spec;
    char err[256];
    if (kbc_spec_parse(c->spec, &spec, err, sizeof(err)) < 0)
        return NULL;
    pthread_mutex_lock(&c->mu);
    while (!c->watch_stop) {
        struct timespec dl;
        kbc_deadline(&dl, c->opts.volfile_check_ms);
        int rc = 0;
        while (!c->watch_stop && rc != ETIMEDOUT)
            rc = pthread_cond_timedwait(&c->watch_cv, &c->mu, &dl);
        if (c->watch_stop || c->switching)
            continue;
        pthread_mutex_unlock(&c->mu);
        char *text = fetch_volfile(c, &spec);
        pthread_mutex_lock(&c->mu);
        if (text && !c->watch_stop && !c->switching && (!c->volfile || strcmp(text, c->volfile) != 0))
            hand_over(c, text);
        free(text);
    }
    pthread_mutex_unlock(&c->mu);
    kbc_spec_clear(&spec);
    return NULL;
}

int kbc_watch_start(kbc_t *c)
{
    if (!c->spec || c->opts.volfile_check_ms == UINT32_MAX)
        return 0;
    if (!c->opts.volfile_check_ms)
        c->opts.volfile_check_ms = KBC_VOLFILE_CHECK_MS;
    if (pthread_create(&c->watch_thread, NULL, watch_main, c) != 0)
        return -EAGAIN;
    c->watch_running = true;
    return 0;
}

void kbc_watch_stop(kbc_t *c)
{
    if (!c->watch_running)
        return;
    pthread_mutex_lock(&c->mu);
    c->watch_stop = true;
    pthread_cond_broadcast(&c->watch_cv);
    pthread_mutex_unlock(&c->mu);
    pthread_join(c->watch_thread, NULL);
    c->watch_running = false;
}

unsigned kbc_graph_switches(const kbc_t *c)
{
    kbc_t *m = (kbc_t *)c;
    pthread_mutex_lock(&m->mu);
    unsigned n = m->switches;
    pthread_mutex_unlock(&m->mu);
    return n;
}
