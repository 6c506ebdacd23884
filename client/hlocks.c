/*
 * hlocks.c — the record locks a handle holds, and what its release owes them.
 *
 * Why: the kernel has three kinds of file locks and tells a FUSE server only
 * part of their lifetime (fs/fuse/file.c, fs/locks.c):
 *   POSIX  owner = the process (its files_struct). Any close(2) of any fd of
 *          the file drops them: the kernel sends FLUSH with that owner, and
 *          the bricks' features/locks drops the owner's locks (lk_flush).
 *   flock  owner = the open file description. Its last close sends RELEASE
 *          with FUSE_RELEASE_FLOCK_UNLOCK and the owner (kembar-fuse unlocks).
 *   OFD    owner = the open file description too (F_OFD_SETLK, what qemu
 *          uses for its image locks). Its last close sends a plain RELEASE:
 *          the kernel does not name the owner, and keeps no local record
 *          to unlock, because a FUSE server that does POSIX locks is trusted
 *          to hold them all. Without more, an OFD lock outlived its file
 *          description on the bricks, and a VM could not be started again.
 *
 * What we know: every LK names its owner and arrives on the handle of the
 * description it was taken through (one FUSE open = one description = one
 * handle). An OFD owner is seen on no other handle and never in a FLUSH: a
 * FLUSH names a process. A POSIX owner that locked through a handle has an
 * fd on that description, and the close of that fd — which comes before the
 * description's last close — FLUSHes the handle with the owner's name.
 *
 * So: a handle records each owner granted a record lock through it (LK
 * SETLK/SETLKW of a read or write lock, not flock), and marks an owner seen
 * in a FLUSH of the handle as a process. At RELEASE, the owners never seen
 * in a FLUSH — the description's own — are unlocked on the whole file
 * (every brick the handle's fd lives on), all at once, and only then is the
 * RELEASE wound: once it is answered, a GETLK from anyone sees the locks
 * gone. A process owner is never unlocked here: its locks through another
 * description of the same file must stay (the kinds are never confused).
 *
 * For libkembar's own users the rule reads: closing a handle drops the
 * locks taken through it, except those of an owner that FLUSHed it (whose
 * locks the FLUSH already dropped).
 *
 * Rejected: dropping, at RELEASE, every owner that took a lock through the
 * handle — that drops a process's POSIX locks held through another
 * descriptor. Keeping it on the bricks (locks bound to the brick fd they
 * came through) — the brick cannot tell the kinds apart either, and
 * replicate's fds are per client, so the record would be kept N times.
 *
 * The same handle also keeps the log of its granted LK requests
 * (xlators/lklog.h), taken again on a new graph when a switch reopens the
 * handle (kbc_hlocks_replay), before any call goes there: on bricks the two
 * graphs share, the client instance already holds them and the requests
 * are granted again; on new bricks they are taken for the first time; one
 * that is refused (another client holds it there) fails the handle.
 *
 * Loop thread only, like the handles.
 */
#include "client/internal.h"
#include "lib/log.h"

static const kb_cred_t hl_cred;   /* uid 0: the unlocks are ours */

static kbc_lkown_t *owner_find(kbc_handle_t *h, uint64_t owner)
{
    for (uint32_t i = 0; i < h->nlkown; i++)
        if (h->lkown[i].owner == owner)
            return &h->lkown[i];
    return NULL;
}

static kbc_lkown_t *owner_add(kbc_handle_t *h, uint64_t owner)
{
    kbc_lkown_t *o = owner_find(h, owner);
    if (o)
        return o;
    if (h->nlkown == h->lkown_cap) {
        uint32_t cap = h->lkown_cap ? 2 * h->lkown_cap : 2;
        kbc_lkown_t *n = realloc(h->lkown, cap * sizeof(*n));
        if (!n)
            return NULL;
        h->lkown = n;
        h->lkown_cap = cap;
    }
    o = &h->lkown[h->nlkown++];
    *o = (kbc_lkown_t){ .owner = owner };
    return o;
}

void kbc_hlocks_note(kbc_handle_t *h, kb_op_t op, const kb_args_t *a, int status)
{
    if (op == KB_FOP_LK && status >= 0 && !kb_lklog_note(&h->lklog, a)) {
        char gs[KB_GFID_STRLEN];
        kb_warn("client", "more than %d lock requests through one handle of %s: its locks cannot be "
                "carried to a new graph", KB_LKLOG_MAX, kb_gfid_str(&h->gfid, gs));
    }
    if (op == KB_FOP_FLUSH) {
        kb_lklog_flush(&h->lklog, a->lock.owner);
        kbc_lkown_t *o = owner_find(h, a->lock.owner);
        if (o)
            o->process = true;
        else if ((o = owner_add(h, a->lock.owner)))
            o->process = true;
        return;
    }
    if (op != KB_FOP_LK || status < 0 || a->lock.flock || a->lock.type == KB_LK_UNLCK ||
        (a->flags != KB_LK_SETLK && a->flags != KB_LK_SETLKW))
        return;
    if (!owner_add(h, a->lock.owner)) {
        char gs[KB_GFID_STRLEN];
        kb_warn("client", "out of memory recording a lock owner of %s: its locks may outlive its close",
                kb_gfid_str(&h->gfid, gs));
    }
}

unsigned kbc_hlocks_desc_owners(const kbc_handle_t *h)
{
    unsigned n = 0;
    for (uint32_t i = 0; i < h->nlkown; i++)
        n += !h->lkown[i].process;
    return n;
}

void kbc_hlocks_free(kbc_handle_t *h)
{
    kb_lklog_free(&h->lklog);
    free(h->lkown);
    h->lkown = NULL;
    h->nlkown = h->lkown_cap = 0;
}

/* ---- the unlocks before a RELEASE ---- */

struct hl_drop {
    struct kbc_sub *s;           /* the RELEASE, wound by `then` once every unlock is back */
    kbc_graph_t *gr;
    kbc_hlocks_then_fn then;
    unsigned pending;            /* unlocks in flight + 1 guard */
    struct hl_one { struct hl_drop *d; kb_args_t a; } one[];   /* one unlock per owner */
};

static void drop_one_done(struct hl_drop *d)
{
    if (--d->pending)
        return;
    struct kbc_sub *s = d->s;
    kbc_graph_t *gr = d->gr;
    kbc_hlocks_then_fn then = d->then;
    free(d);
    then(s, gr);
}

static void drop_cbk(void *cookie, const kb_reply_t *r)
{
    struct hl_one *one = cookie;
    struct hl_drop *d = one->d;
    const kb_args_t *a = &one->a;
    d->gr->inflight--;
    if (r->status < 0 && r->status != -ENOTCONN) {
        char gs[KB_GFID_STRLEN];
        kb_warn("client", "unlock of owner %#llx on %s at its close failed: %s",
                (unsigned long long)a->lock.owner, kb_gfid_str(&a->gfid, gs), strerror(-r->status));
    }
    drop_one_done(d);
}

bool kbc_hlocks_drop(struct kbc_sub *s, kbc_handle_t *h, kbc_graph_t *gr, kbc_hlocks_then_fn then)
{
    unsigned n = kbc_hlocks_desc_owners(h);
    if (!n)
        return false;
    struct hl_drop *d = kb_zalloc(sizeof(*d) + n * sizeof(d->one[0]));
    if (!d) {
        char gs[KB_GFID_STRLEN];
        kb_warn("client", "out of memory unlocking %s at its close: its locks go with the connection",
                kb_gfid_str(&h->gfid, gs));
        return false;
    }
    *d = (struct hl_drop){ .s = s, .gr = gr, .then = then, .pending = n + 1 };
    unsigned k = 0;
    for (uint32_t i = 0; i < h->nlkown; i++) {
        if (h->lkown[i].process)
            continue;
        d->one[k].d = d;
        kb_args_t *a = &d->one[k].a;
        a->gfid = h->gfid;
        a->fd = h->gfd;
        a->flags = KB_LK_SETLK;
        a->lock = (kb_lock_t){ .type = KB_LK_UNLCK, .start = 0, .len = 0, .owner = h->lkown[i].owner };
        k++;
    }
    for (k = 0; k < n; k++) {
        kb_cred_t cred = hl_cred;
        cred.lk_owner = d->one[k].a.lock.owner;
        gr->inflight++;
        kb_wind(gr->g->top, KB_FOP_LK, &d->one[k].a, &cred, kb_graph_next_req_id(gr->g), drop_cbk, &d->one[k]);
    }
    drop_one_done(d);            /* the guard */
    return true;
}

/* ---- carrying the locks to a new graph ---- */

struct hl_replay {
    kbc_handle_t *h;
    kbc_graph_t *gr;
    uint32_t idx;
    kb_args_t a;
    kb_cred_t cred;
    void (*then)(void *ctx);
    void *ctx;
};

static void replay_next(struct hl_replay *r);

static void replay_cbk(void *cookie, const kb_reply_t *rep)
{
    struct hl_replay *r = cookie;
    r->gr->inflight--;
    if (rep->status < 0) {
        char gs[KB_GFID_STRLEN];
        r->h->lk_lost = -EBADFD;
        kb_err("client", "%s: a lock held through an open file cannot be taken on the new graph (%s): the "
               "file fails from now on, so two clients never both write under it",
               kb_gfid_str(&r->h->gfid, gs), strerror(-rep->status));
        r->idx = r->h->lklog.n;  /* stop */
        kbc_handle_changed(r->gr->c, r->h);
    }
    replay_next(r);
}

static void replay_next(struct hl_replay *r)
{
    kbc_handle_t *h = r->h;
    if (r->idx >= h->lklog.n) {
        void (*then)(void *) = r->then;
        void *ctx = r->ctx;
        free(r);
        then(ctx);
        return;
    }
    kb_lklog_args(&h->lklog, r->idx++, &r->a);
    r->a.gfid = h->gfid;
    r->a.fd = h->gfd;
    r->cred = hl_cred;
    r->cred.lk_owner = r->a.lock.owner;
    r->gr->inflight++;
    kb_wind(r->gr->g->top, KB_FOP_LK, &r->a, &r->cred, kb_graph_next_req_id(r->gr->g), replay_cbk, r);
}

bool kbc_hlocks_replay(kbc_handle_t *h, kbc_graph_t *gr, void (*then)(void *ctx), void *ctx)
{
    if (!h->lklog.n)
        return false;
    char gs[KB_GFID_STRLEN];
    if (h->lklog.incomplete) {
        h->lk_lost = -EBADFD;
        kb_err("client", "%s: too many lock requests to carry to the new graph: the file fails from now on",
               kb_gfid_str(&h->gfid, gs));
        kbc_handle_changed(gr->c, h);
        return false;
    }
    struct hl_replay *r = kb_zalloc(sizeof(*r));
    if (!r) {
        h->lk_lost = -EBADFD;
        kbc_handle_changed(gr->c, h);
        return false;
    }
    *r = (struct hl_replay){ .h = h, .gr = gr, .then = then, .ctx = ctx };
    replay_next(r);
    return true;
}
