/*
 * heal_obj.c — heal of one object (one gfid): who is healed from
 * whom, and the marks taken back afterwards.
 *
 *   heal lock   INODELK in HEAL_DOM on every up copy: non-blocking for a
 *               sweep (another healer has it: skip, it is being healed),
 *               blocking for a resolve. Held until the end.
 *   survey      nameless LOOKUP + XATTROP GET everywhere up: which copies
 *               hold the object, their type and marks.
 *   kinds       entry (directories), metadata, data (regular files), each
 *               under its own lock in replicate's domain, each deciding
 *               again from its own snapshot taken under that lock.
 *
 * Decisions come from repl_policy (sources, sinks, split-brain, favourite
 * child); heal_plan only adds what heal needs on top: which source to copy
 * from, and the "compare" case (full heal, or copies marked dirty that
 * nobody blames: a writer died mid-operation and no copy is known good).
 *
 * Clearing takes back exactly what the snapshot showed (XATTROP ADD of the
 * negated counts), never a zeroing: marks added by writers meanwhile stay,
 * and the next sweep heals what they name. Dirty counts are taken back only
 * when no copy outside the healed set stays blamed — a dirty mark tells a
 * later heal that a region map may be incomplete, and that still matters
 * for a copy that is still away.
 */
#include <stdio.h>
#include <sys/stat.h>
#include "lib/log.h"
#include "xlators/cluster/replicate/heal_internal.h"

/* ---------------- snapshot ---------------- */

void heal_snap_add(hobj_t *h, hbatch_t *b, repl_mask_t mask)
{
    repl_priv_t *p = hp(h);
    for (int i = 0; i < p->n; i++) {
        if (!(mask & REPL_BIT(i)))
            continue;
        kb_args_t a = { .gfid = h->gfid };
        hb_add(b, i, KB_FOP_LOOKUP, &a);
        kb_args_t x = { .gfid = h->gfid, .name = (char *)KB_CL_XATTR, .flags = KB_XOP_GET,
                        .data = p->zero_cl };
        hb_add(b, i, KB_FOP_XATTROP, &x);
    }
}

static bool absent(int st) { return st == -ENOENT || st == -ESTALE; }

int heal_snap_read(hobj_t *h, hbatch_t *b, repl_mask_t mask)
{
    repl_priv_t *p = hp(h);
    int rc = b->err;
    h->present = h->have = 0;
    h->type = 0;
    for (int i = 0; i < p->n && !rc; i++) {
        if (!(mask & REPL_BIT(i)))
            continue;
        hreq_t *ql = hb_find(b, i, KB_FOP_LOOKUP, 0), *qx = hb_find(b, i, KB_FOP_XATTROP, 0);
        if (!ql || !qx)
            return -EINVAL;
        int st = ql->r.status;
        if (absent(st))
            continue;
        if (st < 0)
            return st;
        h->attr[i] = ql->r.attr;
        h->present |= REPL_BIT(i);
        st = qx->r.status;
        if (st >= 0 && qx->r.data && qx->r.data->len >= KB_CL_MATRIX_BYTES) {
            kb_cl_decode((const uint8_t *)qx->r.data->data, &h->m[i]);
            h->have |= REPL_BIT(i);
        } else if (absent(st)) {
            h->present &= ~REPL_BIT(i);       /* removed in between */
        } else {
            rc = st < 0 ? st : -EIO;
        }
    }
    for (int i = 0; i < p->n && !rc; i++) {
        if (!(h->present & REPL_BIT(i)))
            continue;
        uint32_t t = h->attr[i].mode & S_IFMT;
        if (!h->type)
            h->type = t;
        else if (t != h->type)
            rc = -EIO;       /* one gfid, two kinds of object: nothing safe to do */
    }
    return rc;
}

/* ---------------- plan ---------------- */

int heal_fav_pick(hobj_t *h, int policy, repl_mask_t cand)
{
    repl_fav_attr_t fa[KB_CL_MAX_REPLICA];
    memset(fa, 0, sizeof(fa));
    for (int i = 0; i < hp(h)->n; i++)
        fa[i] = (repl_fav_attr_t){ h->attr[i].size, h->attr[i].mtime_sec, h->attr[i].mtime_nsec };
    return repl_favorite_child(policy, cand, fa);
}

int heal_plan(hobj_t *h, int col, hplan_t *pl)
{
    repl_priv_t *p = hp(h);
    memset(pl, 0, sizeof(*pl));
    pl->src = -1;
    repl_mask_t cand = repl_candidates(&p->cfg, col);
    repl_mask_t P = h->present & p->up & cand;    /* copies that can take part */
    repl_blame_t b;
    repl_blame_analyze(&p->cfg, h->m, h->have, col, &b);
    pl->R = h->have;
    if (h->force_src >= 0) {
        if (!(P & REPL_BIT(h->force_src)))
            return -ENOTCONN;
        pl->src = h->force_src;
        pl->S = REPL_BIT(pl->src);
        pl->K = P & ~pl->S;
        pl->forced = true;
        return 0;
    }
    if (b.split_brain) {
        int fav = p->fav_policy != REPL_FAV_NONE ? heal_fav_pick(h, p->fav_policy, P) : -1;
        if (fav < 0) {
            h->split = true;
            return -EIO;
        }
        kb_info(p->xl->name, "split-brain resolved by favorite-child-policy: copy %d wins", fav);
        pl->src = fav;
        pl->S = REPL_BIT(fav);
        pl->K = P & ~pl->S;
        pl->forced = true;
        return 0;
    }
    repl_mask_t S = b.sources & P, K = b.sinks & P, dirty = b.dirty & h->have;
    if (!S)
        return K || (dirty & P) ? -ENOTCONN : 0;
    pl->S = S;
    if (!K) {
        /* Nobody blamed: a writer died mid-operation (dirty), or heal full.
         * Compare; with more than one source there is nothing to choose
         * between, take the first. */
        if (!(dirty & P) && !h->full) {
            /* A dirty mark on a copy outside the column's candidates (an
             * arbiter killed mid-write): nobody blames anybody, so the
             * mark only says a write was in flight there. The caller holds
             * the column's lock: no write is in flight now. */
            for (int j = 0; j < p->n; j++)
                for (int i = 0; i < p->n && (dirty & REPL_BIT(j)); i++)
                    if (i != j && h->m[j].v[1 + i][col] > 0)
                        dirty = 0;
            pl->clear_only = (dirty & ~P) != 0;
            return 0;
        }
        pl->cmp = true;
        pl->src = repl_first(S & ~dirty) >= 0 ? repl_first(S & ~dirty) : repl_first(S);
        pl->K = P & ~REPL_BIT(pl->src);
        pl->S = REPL_BIT(pl->src);
        if (!pl->K)
            pl->src = -1;
        return 0;
    }
    pl->src = repl_first(S & ~dirty) >= 0 ? repl_first(S & ~dirty) : repl_first(S);
    pl->K = K;
    return 0;
}

/* ---------------- marks ---------------- */

static void add_xop(hobj_t *h, hbatch_t *b, int child, const kb_gfid_t *g, const kb_cl_matrix_t *d)
{
    kb_buf_t *buf = kb_buf_new(KB_CL_MATRIX_BYTES);
    if (!buf) {
        b->err = -ENOMEM;
        return;
    }
    kb_cl_encode(d, (uint8_t *)buf->data);
    buf->len = KB_CL_MATRIX_BYTES;
    kb_args_t a = { .gfid = *g, .name = (char *)KB_CL_XATTR, .flags = KB_XOP_ADD, .data = buf };
    hb_add(b, child, KB_FOP_XATTROP, &a);
    kb_buf_unref(buf);
}

bool heal_clear_add(hobj_t *h, hbatch_t *b, int col, repl_mask_t H, const kb_cl_matrix_t *m,
                    repl_mask_t R)
{
    repl_priv_t *p = hp(h);
    bool consistent = true;
    for (int j = 0; j < p->n; j++)
        for (int i = 0; i < p->n && (R & REPL_BIT(j)); i++)
            if (i != j && !(H & REPL_BIT(i)) && m[j].v[1 + i][col] > 0)
                consistent = false;
    for (int j = 0; j < p->n; j++) {
        if (!(R & REPL_BIT(j)))
            continue;
        kb_cl_matrix_t d;
        memset(&d, 0, sizeof(d));
        bool any = false;
        for (int i = 0; i < p->n; i++)
            if (i != j && (H & REPL_BIT(i)) && m[j].v[1 + i][col] > 0) {
                d.v[1 + i][col] = -m[j].v[1 + i][col];
                any = true;
            }
        if (consistent && m[j].v[KB_CL_DIRTY_ROW][col] > 0) {
            d.v[KB_CL_DIRTY_ROW][col] = -m[j].v[KB_CL_DIRTY_ROW][col];
            any = true;
        }
        if (any)
            add_xop(h, b, j, &h->gfid, &d);
    }
    return consistent;
}

void heal_mark_add(hobj_t *h, hbatch_t *b, int src, const kb_gfid_t *g, uint32_t cols, repl_mask_t k)
{
    kb_cl_matrix_t d;
    repl_cl_delta(&d, cols, 0, k);
    add_xop(h, b, src, g, &d);
}

/* ---------------- the object ---------------- */

hobj_t *heal_obj_new(heal_t *hs, const kb_gfid_t *g, uint8_t flags)
{
    repl_priv_t *p = hs->p;
    hobj_t *h = kb_zalloc(sizeof(*h));
    if (!h)
        return NULL;
    h->hs = hs;
    h->gfid = *g;
    h->full = flags & HQ_FULL;
    h->force_src = -1;
    h->policy = -1;
    h->req = p->xl->graph ? kb_graph_next_req_id(p->xl->graph) : 0;
    h->owner = p->owner_base ^ ++p->owner_seq;
    h->next = hs->objs;
    if (hs->objs)
        hs->objs->prev = h;
    hs->objs = h;
    return h;
}

void heal_obj_free(hobj_t *h)
{
    heal_t *hs = h->hs;
    if (h->prev)
        h->prev->next = h->next;
    else
        hs->objs = h->next;
    if (h->next)
        h->next->prev = h->prev;
    if (h->kctx && h->kfree)
        h->kfree(h->kctx);
    free(h);
}

static void obj_end(hobj_t *h)
{
    heal_obj_done(h->hs, h);
}

static void obj_released(void *ctx, int err)
{
    obj_end(ctx);
}

static void obj_release(hobj_t *h)
{
    hlock_drop(&h->hlk, obj_released, h);
}

static void obj_next_kind(hobj_t *h);

static void kind_done(hobj_t *h, int err)
{
    if (err && !h->err)
        h->err = err;
    if (err == -ENOTCONN || err == -ENOMEM) {   /* a copy left, or no memory: stop here */
        obj_release(h);
        return;
    }
    h->kind++;
    obj_next_kind(h);
}

/* Does the survey say column COL may need work? (Each kind decides for
 * real under its lock; this only spares a lock round trip.) */
static bool col_needs(hobj_t *h, int col)
{
    repl_priv_t *p = hp(h);
    if (h->full || h->force_src >= 0)
        return true;
    repl_blame_t b;
    repl_blame_analyze(&p->cfg, h->m, h->have, col, &b);
    return (b.sinks & h->present & p->up) || (b.dirty & h->present) || b.split_brain;
}

static void obj_next_kind(hobj_t *h)
{
    bool dir = S_ISDIR(h->type), reg = S_ISREG(h->type);
    for (; h->kind < HK_NKINDS; h->kind++) {
        if (h->kind == HK_ENTRY && dir && col_needs(h, KB_CL_ENTRY)) {
            heal_entry(h, kind_done);
            return;
        }
        if (h->kind == HK_META && col_needs(h, KB_CL_META)) {
            heal_meta(h, kind_done);
            return;
        }
        if (h->kind == HK_DATA && reg && col_needs(h, KB_CL_DATA)) {
            heal_data(h, kind_done);
            return;
        }
    }
    obj_release(h);
}

/* An index entry whose counters are all zero (a crash between the brick's
 * index update and its xattr write): one dirty +1 / -1 makes the brick drop
 * it (atomic adds: a writer's concurrent marks are unaffected). */
static void tidy_done(void *ctx, hbatch_t *b)
{
    hobj_t *h = ctx;
    hb_free(b);
    if (h->tidied) {
        obj_release(h);
        return;
    }
    h->tidied = true;
    hbatch_t *nb = hb_new(h->hs, hp(h)->n, h->req, h->owner);
    if (!nb) {
        obj_release(h);
        return;
    }
    kb_cl_matrix_t d;
    repl_cl_delta(&d, REPL_COL(KB_CL_DATA), -1, 0);
    for (int i = 0; i < hp(h)->n; i++)
        if (h->present & REPL_BIT(i))
            add_xop(h, nb, i, &h->gfid, &d);
    hb_go(nb, tidy_done, h);
}

static bool all_clean(const hobj_t *h)
{
    static const kb_cl_matrix_t zero;
    for (int i = 0; i < hp(h)->n; i++)
        if ((h->have & REPL_BIT(i)) && memcmp(&h->m[i], &zero, sizeof(zero)))
            return false;
    return true;
}

static void obj_surveyed(void *ctx, hbatch_t *b)
{
    hobj_t *h = ctx;
    repl_priv_t *p = hp(h);
    int rc = heal_snap_read(h, b, p->up);
    hb_free(b);
    if (rc) {
        h->err = rc;
        obj_release(h);
        return;
    }
    if (!h->present) {          /* gone everywhere: nothing to heal */
        obj_release(h);
        return;
    }
    if (h->policy >= 0) {
        int pol = h->policy == KB_HEAL_POL_MTIME ? REPL_FAV_MTIME : REPL_FAV_SIZE;
        repl_mask_t cand = h->present & p->up &
                           (S_ISREG(h->type) ? repl_data_children(&p->cfg) : repl_all(&p->cfg));
        h->force_src = heal_fav_pick(h, pol, cand);
        if (h->force_src < 0) {
            h->err = -EINVAL;
            snprintf(h->msg, sizeof(h->msg), "no single copy has the %s: choose a source brick",
                     pol == REPL_FAV_MTIME ? "latest mtime" : "biggest size");
            obj_release(h);
            return;
        }
    }
    if (h->force_src >= 0 && !(h->present & p->up & REPL_BIT(h->force_src))) {
        h->err = -ENOENT;
        snprintf(h->msg, sizeof(h->msg), "the chosen brick holds no copy of it (or is down)");
        obj_release(h);
        return;
    }
    if (h->force_src < 0 && !h->full && all_clean(h) && h->present == p->up) {
        hbatch_t *nb = hb_new(h->hs, p->n, h->req, h->owner);
        if (!nb) {
            obj_release(h);
            return;
        }
        kb_cl_matrix_t d;
        repl_cl_delta(&d, REPL_COL(KB_CL_DATA), 1, 0);
        for (int i = 0; i < p->n; i++)
            if (h->present & REPL_BIT(i))
                add_xop(h, nb, i, &h->gfid, &d);
        hb_go(nb, tidy_done, h);
        return;
    }
    h->kind = HK_ENTRY;
    obj_next_kind(h);
}

static void obj_locked(void *ctx, int err)
{
    hobj_t *h = ctx;
    if (err == -EAGAIN) {       /* another healer has it */
        h->skipped = true;
        obj_end(h);
        return;
    }
    if (err) {
        h->err = err;
        obj_end(h);
        return;
    }
    repl_priv_t *p = hp(h);
    hbatch_t *b = hb_new(h->hs, 2 * p->n, h->req, h->owner);
    if (!b) {
        h->err = -ENOMEM;
        obj_release(h);
        return;
    }
    heal_snap_add(h, b, p->up);
    hb_go(b, obj_surveyed, h);
}

void heal_obj_start(hobj_t *h)
{
    repl_priv_t *p = hp(h);
    h->hlk = (hlock_t){
        .hs = h->hs, .op = KB_FOP_INODELK, .gfid = h->gfid, .dom = HEAL_DOM,
        .owner = h->owner, .req = h->req, .blocking = h->has_res, .want = p->up,
        .cont = obj_locked, .ctx = h,
    };
    hlock_take(&h->hlk);
}
