/*
 * replicate_heal_data.c — data heal: copy what differs, only what differs,
 * in chunks under range locks, so the file stays in use.
 *
 *   1. whole-file INODELK (REPL_DOM_DATA, the writers' domain): writers
 *      holding an eager lock see the contention and release; under our
 *      lock nobody is mid-write, so the snapshot is exact: marks (LOOKUP +
 *      XATTROP GET) and every copy's region map (KB_IPC_REGIONS_GET).
 *      heal_plan picks the source and the sinks; OPEN on both by gfid;
 *      unlock.
 *   2. region path, when the map is known complete — no source is dirty
 *      (replicate.h: a source's map names every byte written while a copy
 *      was away unless its dirty mark says a writer died mid-hold) and
 *      every source that blames a sink has one: for each HEAL_CHUNK window
 *      holding set bits, lock that range, READ each run of set regions
 *      from the source, WRITE it to the sinks, unlock.
 *      checksum path otherwise (no map, dirty source, full heal, resolve):
 *      for each HEAL_CSUM_WINDOW, lock it, RCHECKSUM on source and sinks
 *      (SHA-256 per HEAL_CSUM_BLOCK, by the bricks), copy the blocks that
 *      differ, unlock.
 *      Holes stay holes: a block the brick reports as a hole (all-zero
 *      digest) or data that reads as all zeros is punched on the sink
 *      (FALLOCATE PUNCH_HOLE|KEEP_SIZE), never written.
 *   3. whole-file lock again: sinks truncated to the source's size now,
 *      times copied, the marks of the snapshot taken back, and the region
 *      bits of the snapshot cleared (exactly those: bits set since stay)
 *      — only when nothing else stays blamed and no new accusation or
 *      dirty mark appeared meanwhile (a sink lost again mid-heal: its
 *      regions must survive for the next heal). Unlock, RELEASE.
 *
 * Writers keep running throughout: between windows they take the file
 * again (their writes go to every copy now), and whatever they change in a
 * window already copied is on both copies; heal converges on a file that
 * is being written.
 *
 * Arithmetic: 16 MiB of random 64 KiB writes on a 1 GiB image dirty at
 * most 512 regions (one bit per 64 KiB): heal reads and writes those ~16 MiB
 * in at most 256 windows of 1 MiB (lock, read, write, unlock each), instead
 * of the 1 GiB GlusterFS's full algorithm copies.
 */
#include <fcntl.h>
#include <sys/stat.h>
#include "lib/log.h"
#include "xlators/replicate_heal.h"

#define RM_G ((uint64_t)KB_RM_GRANULARITY)
#define DIGEST 32

typedef struct hdata {
    hobj_t *h;
    hkind_done_fn done;
    hlock_t lk;                 /* whole file */
    hlock_t rlk;                /* the window */
    hplan_t pl;
    repl_mask_t snapmask;       /* copies whose marks the snapshot read */
    repl_mask_t K, failed;
    kb_cl_matrix_t m[KB_CL_MAX_REPLICA];
    kb_buf_t *map[KB_CL_MAX_REPLICA];   /* each copy's map as read (header included) */
    uint8_t *bits;              /* union of the sources' maps */
    uint64_t nbits;
    bool use_map, changed, eof;
    uint64_t size;
    uint64_t fd[KB_CL_MAX_REPLICA];
    repl_mask_t opened;
    uint64_t pos;               /* next offset to look at */
    uint64_t w, wlen, wend;     /* the locked window */
    uint64_t cur;               /* map path: cursor in the window */
    uint64_t roff, rlen;        /* the block / run being copied */
    repl_mask_t rto;            /* ... to these sinks */
    hbatch_t *csum;             /* checksum path: digests of the window */
    uint32_t blk;
    int slot;
    int err;
} hdata_t;

static void hd_window(hdata_t *hd);
static void hd_finish(hdata_t *hd);

static void hd_free(void *ctx)
{
    hdata_t *hd = ctx;
    for (int i = 0; i < KB_CL_MAX_REPLICA; i++)
        kb_buf_unref(hd->map[i]);
    free(hd->bits);
    hb_free(hd->csum);
    free(hd);
}

static bool bit(const hdata_t *hd, uint64_t r)
{
    return r < hd->nbits && (hd->bits[r / 8] >> (r % 8) & 1);
}

static bool all_zero(const char *p, size_t n)
{
    return n == 0 || (p[0] == 0 && memcmp(p, p + 1, n - 1) == 0);
}

static repl_mask_t live_sinks(const hdata_t *hd)
{
    return hd->K & ~hd->failed & hp(hd->h)->up;
}

/* ---------------- the end ---------------- */

static void hd_released(void *ctx, hbatch_t *b)
{
    hdata_t *hd = ctx;
    hobj_t *h = hd->h;
    hb_free(b);
    heal_act_end(h->hs, hd->slot);
    hkind_done_fn done = hd->done;
    int err = hd->err;
    if (hd->changed)
        h->did = true;
    h->kctx = NULL;
    hd_free(hd);
    done(h, err);
}

static void hd_unlocked(void *ctx, int err)
{
    hdata_t *hd = ctx;
    hobj_t *h = hd->h;
    hbatch_t *b = hb_new(h->hs, hp(h)->n, h->req, h->owner);
    if (!b) {       /* the fds go with the connection */
        hd->err = hd->err ? hd->err : -ENOMEM;
        hd->opened = 0;
        hd_released(hd, hb_new(h->hs, 0, 0, 0));
        return;
    }
    for (int i = 0; i < hp(h)->n; i++)
        if (hd->opened & REPL_BIT(i)) {
            kb_args_t a = { .gfid = h->gfid, .fd = hd->fd[i] };
            hb_add(b, i, KB_FOP_RELEASE, &a);
        }
    hd->opened = 0;
    hb_go(b, hd_released, hd);
}

static void hd_window_dropped(void *ctx, int err)
{
    hdata_t *hd = ctx;
    hlock_drop(&hd->lk, hd_unlocked, hd);
}

/* Stop (error or done): drop what is held, release the fds. */
static void hd_end(hdata_t *hd, int err)
{
    if (err && !hd->err)
        hd->err = err;
    hlock_drop(&hd->rlk, hd_window_dropped, hd);
}

/* Sinks whose call in B failed leave the heal (the others go on). */
static void note_failures(hdata_t *hd, hbatch_t *b)
{
    for (int k = 0; k < b->n; k++) {
        int st = b->err ? b->err : b->q[k].r.status;
        if (st < 0 && b->q[k].child != hd->pl.src) {
            hd->failed |= REPL_BIT(b->q[k].child);
            kb_warn(hp(hd->h)->xl->name, "data heal: %s on child %d: %s", kb_fop_name(b->q[k].op),
                    b->q[k].child, strerror(-st));
        }
    }
    if (b->err)
        hd->failed |= hd->K;
}

/* ---------------- copying one run / block ---------------- */

static void hd_copied(void *ctx, hbatch_t *b);
static void hd_next_run(hdata_t *hd);
static void hd_next_block(hdata_t *hd);

static void hd_after_copy(hdata_t *hd)
{
    if (hd->use_map)
        hd_next_run(hd);
    else
        hd_next_block(hd);
}

static void hd_punch(hdata_t *hd, uint64_t off, uint64_t len, repl_mask_t to)
{
    hobj_t *h = hd->h;
    hbatch_t *b = hb_new(h->hs, hp(h)->n, h->req, h->owner);
    if (!b) {
        hd_end(hd, -ENOMEM);
        return;
    }
    for (int k = 0; k < hp(h)->n; k++)
        if (to & REPL_BIT(k)) {
            kb_args_t a = { .gfid = h->gfid, .fd = hd->fd[k], .off = off, .size = len,
                            .flags = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE };
            hb_add(b, k, KB_FOP_FALLOCATE, &a);
        }
    hd->changed = true;
    hb_go(b, hd_copied, hd);
}

static void hd_copied(void *ctx, hbatch_t *b)
{
    hdata_t *hd = ctx;
    note_failures(hd, b);
    hb_free(b);
    if (hd->use_map)            /* (the checksum path counts what it compared) */
        heal_act_add(hd->h->hs, hd->slot, hd->rlen);
    hd_after_copy(hd);
}

static void hd_read_done(void *ctx, hbatch_t *b)
{
    hdata_t *hd = ctx;
    hobj_t *h = hd->h;
    heal_t *hs = h->hs;
    const kb_reply_t *r = b->err ? NULL : &b->q[0].r;
    int st = r ? r->status : b->err;
    if (st < 0) {
        hb_free(b);
        hd_end(hd, st);
        return;
    }
    size_t n = r->data ? KB_MIN((size_t)st, r->data->len) : 0;
    hs->st.data_bytes_read += n;
    repl_mask_t to = hd->rto & live_sinks(hd);
    if (n == 0 || !to) {        /* past the source's end now: the final truncate fixes it */
        hb_free(b);
        if (hd->use_map)
            heal_act_add(hs, hd->slot, hd->rlen);
        hd_after_copy(hd);
        return;
    }
    if (all_zero(r->data->data, n)) {
        hb_free(b);
        hd_punch(hd, hd->roff, n, to);
        return;
    }
    hbatch_t *wb = hb_new(hs, hp(h)->n, h->req, h->owner);
    if (!wb) {
        hb_free(b);
        hd_end(hd, -ENOMEM);
        return;
    }
    /* One buffer for every sink (each WRITE holds a reference); a reply
     * whose payload is longer than its status is trimmed by a copy. */
    kb_buf_t *data = r->data->len == n ? kb_buf_ref(r->data) : kb_buf_copy(r->data->data, n);
    hb_free(b);
    if (!data) {
        hb_free(wb);
        hd_end(hd, -ENOMEM);
        return;
    }
    for (int k = 0; k < hp(h)->n; k++)
        if (to & REPL_BIT(k)) {
            kb_args_t a = { .gfid = h->gfid, .fd = hd->fd[k], .off = hd->roff, .data = data };
            hb_add(wb, k, KB_FOP_WRITE, &a);
            hs->st.data_bytes_written += n;
        }
    kb_buf_unref(data);
    hd->changed = true;
    hb_go(wb, hd_copied, hd);
}

static void hd_read(hdata_t *hd, uint64_t off, uint64_t len, repl_mask_t to)
{
    hobj_t *h = hd->h;
    hd->roff = off;
    hd->rlen = len;
    hd->rto = to;
    hbatch_t *b = hb_new(h->hs, 1, h->req, h->owner);
    if (!b) {
        hd_end(hd, -ENOMEM);
        return;
    }
    kb_args_t a = { .gfid = h->gfid, .fd = hd->fd[hd->pl.src], .off = off, .size = len };
    hb_add(b, hd->pl.src, KB_FOP_READ, &a);
    hb_go(b, hd_read_done, hd);
}

/* ---------------- windows ---------------- */

static void hd_window_done(void *ctx, int err)
{
    hdata_t *hd = ctx;
    hd->pos = hd->eof ? hd->size : hd->w + hd->wlen;
    hd_window(hd);
}

static void hd_close_window(hdata_t *hd)
{
    hb_free(hd->csum);
    hd->csum = NULL;
    hlock_drop(&hd->rlk, hd_window_done, hd);
}

/* Map path: the next run of set regions in the window. */
static void hd_next_run(hdata_t *hd)
{
    if (!live_sinks(hd)) {
        hd_close_window(hd);
        return;
    }
    /* cur is region-aligned except at the end of the file */
    uint64_t r = (hd->cur + RM_G - 1) / RM_G, end = hd->wend;
    while (r * RM_G < end && !bit(hd, r))
        r++;
    if (r * RM_G >= end) {
        hd_close_window(hd);
        return;
    }
    uint64_t r1 = r;
    while (r1 * RM_G < end && bit(hd, r1))
        r1++;
    uint64_t off = r * RM_G, stop = KB_MIN(r1 * RM_G, end);
    hd->cur = stop;
    hd_read(hd, off, stop - off, live_sinks(hd));
}

static const uint8_t *digest(const hreq_t *q, uint32_t blk)
{
    if (!q || q->r.status < 0 || !q->r.data || (uint64_t)(blk + 1) * DIGEST > q->r.data->len)
        return NULL;
    return (const uint8_t *)q->r.data->data + (size_t)blk * DIGEST;
}

static bool is_hole(const uint8_t *d)
{
    static const uint8_t zero[DIGEST];
    return memcmp(d, zero, DIGEST) == 0;
}

/* Checksum path: the next block of the window that differs on a sink. */
static void hd_next_block(hdata_t *hd)
{
    hobj_t *h = hd->h;
    hbatch_t *cb = hd->csum;
    hreq_t *sq = hb_find(cb, hd->pl.src, KB_FOP_RCHECKSUM, 0);
    uint64_t cov = sq->r.off;
    uint32_t nb = (uint32_t)((cov + HEAL_CSUM_BLOCK - 1) / HEAL_CSUM_BLOCK);
    for (; hd->blk < nb; hd->blk++) {
        const uint8_t *sd = digest(sq, hd->blk);
        if (!sd)
            break;
        repl_mask_t differ = 0;
        for (int k = 0; k < hp(h)->n; k++) {
            if (!(live_sinks(hd) & REPL_BIT(k)))
                continue;
            hreq_t *kq = hb_find(cb, k, KB_FOP_RCHECKSUM, 0);
            const uint8_t *kd = digest(kq, hd->blk);
            uint64_t kcov = kq ? kq->r.off : 0;
            uint64_t bstart = (uint64_t)hd->blk * HEAL_CSUM_BLOCK;
            uint64_t slen = KB_MIN((uint64_t)HEAL_CSUM_BLOCK, cov - bstart);
            uint64_t klen = kcov > bstart ? KB_MIN((uint64_t)HEAL_CSUM_BLOCK, kcov - bstart) : 0;
            if (!kd || klen != slen || memcmp(kd, sd, DIGEST))
                differ |= REPL_BIT(k);
        }
        if (!differ)
            continue;
        uint64_t off = hd->w + (uint64_t)hd->blk * HEAL_CSUM_BLOCK;
        uint64_t len = KB_MIN((uint64_t)HEAL_CSUM_BLOCK, cov - (uint64_t)hd->blk * HEAL_CSUM_BLOCK);
        hd->blk++;
        hd->roff = off;
        hd->rlen = len;
        if (is_hole(sd))
            hd_punch(hd, off, len, differ);
        else
            hd_read(hd, off, len, differ);
        return;
    }
    /* the bytes compared count as done */
    hd_close_window(hd);
}

static void hd_summed(void *ctx, hbatch_t *b)
{
    hdata_t *hd = ctx;
    heal_t *hs = hd->h->hs;
    hreq_t *sq = b->err ? NULL : hb_find(b, hd->pl.src, KB_FOP_RCHECKSUM, 0);
    if (!sq || sq->r.status < 0) {
        int st = b->err ? b->err : sq ? sq->r.status : -EIO;
        hb_free(b);
        hd_end(hd, st);
        return;
    }
    note_failures(hd, b);
    hd->csum = b;
    hd->blk = 0;
    uint64_t cov = sq->r.off;
    hs->st.checksum_blocks += (cov + HEAL_CSUM_BLOCK - 1) / HEAL_CSUM_BLOCK;
    heal_act_add(hs, hd->slot, cov);
    if (cov < hd->wlen)
        hd->eof = true;         /* the source ends in this window */
    hd_next_block(hd);
}

static void hd_window_locked(void *ctx, int err)
{
    hdata_t *hd = ctx;
    hobj_t *h = hd->h;
    if (err) {
        hd_end(hd, err);
        return;
    }
    if (hd->use_map) {
        hd->cur = hd->w;
        hd_next_run(hd);
        return;
    }
    hbatch_t *b = hb_new(h->hs, hp(h)->n, h->req, h->owner);
    if (!b) {
        hd_end(hd, -ENOMEM);
        return;
    }
    repl_mask_t who = live_sinks(hd) | REPL_BIT(hd->pl.src);
    for (int i = 0; i < hp(h)->n; i++)
        if (who & REPL_BIT(i)) {
            kb_args_t a = { .gfid = h->gfid, .fd = hd->fd[i], .off = hd->w, .size = hd->wlen,
                            .flags = HEAL_CSUM_BLOCK };
            hb_add(b, i, KB_FOP_RCHECKSUM, &a);
        }
    hb_go(b, hd_summed, hd);
}

/* Find the next window with work and lock it; or finish. */
static void hd_window(hdata_t *hd)
{
    hobj_t *h = hd->h;
    if (!live_sinks(hd) || hd->pos >= hd->size) {
        hd_finish(hd);
        return;
    }
    if (hd->use_map) {
        uint64_t r = hd->pos / RM_G;
        while (r < hd->nbits && r * RM_G < hd->size && !bit(hd, r))
            r++;
        if (r >= hd->nbits || r * RM_G >= hd->size) {
            hd_finish(hd);
            return;
        }
        hd->w = r * RM_G / HEAL_CHUNK * HEAL_CHUNK;
        hd->wlen = HEAL_CHUNK;
    } else {
        hd->w = hd->pos;
        hd->wlen = HEAL_CSUM_WINDOW;
    }
    hd->wend = KB_MIN(hd->w + hd->wlen, hd->size);
    hd->rlk = (hlock_t){
        .hs = h->hs, .op = KB_FOP_INODELK, .gfid = h->gfid, .dom = REPL_DOM_DATA,
        .start = hd->w, .len = hd->wlen, .owner = h->owner, .req = h->req, .blocking = true,
        .want = live_sinks(hd) | REPL_BIT(hd->pl.src), .cont = hd_window_locked, .ctx = hd,
    };
    hlock_take(&hd->rlk);
}

/* ---------------- finish: sizes, times, marks, maps ---------------- */

static void hd_fin_cleared(void *ctx, hbatch_t *b)
{
    hdata_t *hd = ctx;
    int err = b->err;
    for (int k = 0; k < b->n && !err; k++)
        if (b->q[k].r.status < 0 && b->q[k].op != KB_FOP_SETATTR)
            err = b->q[k].r.status;
    hb_free(b);
    if (hd->failed && !err)
        err = -EIO;
    if (err && !hd->err)
        hd->err = err;
    hlock_drop(&hd->lk, hd_unlocked, hd);
}

/* New accusations or dirty marks since the snapshot (a sink lost again
 * mid-heal, a writer died): the region bits must stay. */
static bool changed_since(const hdata_t *hd, const kb_cl_matrix_t *now, repl_mask_t R)
{
    int n = hp(hd->h)->n;
    for (int j = 0; j < n; j++) {
        if (!(R & REPL_BIT(j)))
            continue;
        for (int i = 0; i < 1 + n; i++)
            if (now[j].v[i][KB_CL_DATA] > hd->m[j].v[i][KB_CL_DATA])
                return true;
    }
    return false;
}

static void hd_fin_truncated(void *ctx, hbatch_t *b)
{
    hdata_t *hd = ctx;
    hobj_t *h = hd->h;
    repl_priv_t *p = hp(h);
    note_failures(hd, b);
    hb_free(b);
    repl_mask_t H = hd->pl.S | REPL_BIT(hd->pl.src) | (hd->K & ~hd->failed);
    hbatch_t *cb = hb_new(h->hs, 3 * p->n, h->req, h->owner);
    if (!cb) {
        hd_end(hd, -ENOMEM);
        return;
    }
    const kb_iatt_t *sa = &h->attr[hd->pl.src];
    if (hd->changed)
        for (int k = 0; k < p->n; k++)
            if (hd->K & ~hd->failed & REPL_BIT(k)) {
                kb_args_t a = { .gfid = h->gfid, .attr = *sa, .flags = KB_SET_ATIME | KB_SET_MTIME };
                hb_add(cb, k, KB_FOP_SETATTR, &a);
            }
    bool consistent = heal_clear_add(h, cb, KB_CL_DATA, H, hd->m, hd->pl.R);
    bool changed = changed_since(hd, h->m, hd->pl.R & h->have);
    if (changed)
        h->again = true;        /* a writer missed a sink during the heal: once more */
    if (consistent && !changed)
        for (int i = 0; i < p->n; i++)
            if (hd->map[i] && (h->present & REPL_BIT(i))) {
                kb_args_t a = { .gfid = h->gfid, .flags = KB_IPC_REGIONS_CLEAR, .data = hd->map[i] };
                hb_add(cb, i, KB_FOP_IPC, &a);
            }
    hb_go(cb, hd_fin_cleared, hd);
}

static void hd_fin_snapped(void *ctx, hbatch_t *b)
{
    hdata_t *hd = ctx;
    hobj_t *h = hd->h;
    repl_priv_t *p = hp(h);
    int rc = heal_snap_read(h, b, hd->snapmask);
    hb_free(b);
    if (!rc && !(h->present & REPL_BIT(hd->pl.src)))
        rc = -ENOENT;           /* unlinked meanwhile: nothing left to heal */
    if (rc) {
        hd_end(hd, rc == -ENOENT ? 0 : rc);
        return;
    }
    uint64_t size = h->attr[hd->pl.src].size;
    hbatch_t *tb = hb_new(h->hs, p->n, h->req, h->owner);
    if (!tb) {
        hd_end(hd, -ENOMEM);
        return;
    }
    for (int k = 0; k < p->n; k++)
        if ((hd->K & ~hd->failed & h->present & REPL_BIT(k)) && h->attr[k].size != size) {
            kb_args_t a = { .gfid = h->gfid, .off = size };
            hb_add(tb, k, KB_FOP_TRUNCATE, &a);
            hd->changed = true;
        }
    hb_go(tb, hd_fin_truncated, hd);
}

static void hd_fin_locked(void *ctx, int err)
{
    hdata_t *hd = ctx;
    hobj_t *h = hd->h;
    if (err) {
        hd_end(hd, err);
        return;
    }
    hbatch_t *b = hb_new(h->hs, 2 * hp(h)->n, h->req, h->owner);
    if (!b) {
        hd_end(hd, -ENOMEM);
        return;
    }
    heal_snap_add(h, b, hd->snapmask);
    hb_go(b, hd_fin_snapped, hd);
}

static void hd_finish(hdata_t *hd)
{
    if (hd->K && !live_sinks(hd)) {     /* every sink failed or left */
        hd_end(hd, hd->err ? hd->err : -EIO);
        return;
    }
    hd->lk.want = live_sinks(hd) | REPL_BIT(hd->pl.src);
    hd->lk.start = hd->lk.len = 0;
    hd->lk.cont = hd_fin_locked;
    hlock_take(&hd->lk);
}

/* ---------------- start: snapshot, plan, open ---------------- */

static void hd_copy_start(void *ctx, int err)
{
    hdata_t *hd = ctx;
    hd->pos = 0;
    hd_window(hd);
}

static void hd_opened(void *ctx, hbatch_t *b)
{
    hdata_t *hd = ctx;
    for (int k = 0; k < b->n; k++) {
        int i = b->q[k].child, st = b->err ? b->err : b->q[k].r.status;
        if (st >= 0) {
            hd->fd[i] = b->q[k].r.fd;
            hd->opened |= REPL_BIT(i);
        }
    }
    bool src_ok = hd->opened & REPL_BIT(hd->pl.src);
    note_failures(hd, b);
    hb_free(b);
    if (!src_ok) {
        hd_end(hd, -EIO);
        return;
    }
    hlock_drop(&hd->lk, hd_copy_start, hd);     /* writers go on while we copy */
}

/* Union the maps of the sources; true when the map path may be used. */
static bool hd_pick_map(hdata_t *hd)
{
    hobj_t *h = hd->h;
    int n = hp(h)->n;
    if (hd->pl.cmp || h->full)
        return false;
    /* forced (resolve, favourite child): each side's map names what it
     * wrote while the other was away; the union is everything that differs */
    repl_mask_t srcs = hd->pl.forced ? (hd->pl.S | hd->K) : hd->pl.S;
    size_t nbytes = 0;
    for (int i = 0; i < n; i++) {
        if (!(srcs & REPL_BIT(i)))
            continue;
        if (hd->m[i].v[KB_CL_DIRTY_ROW][KB_CL_DATA] > 0)
            return false;       /* a writer died mid-hold there: its map may miss bytes */
        bool blames = false;
        for (int k = 0; k < n; k++)
            blames |= k != i && hd->m[i].v[1 + k][KB_CL_DATA] > 0;
        bool has = hd->map[i] && hd->map[i]->len > KB_RM_HDR_BYTES;
        if (blames && !has)
            return false;
        if (has)
            nbytes = KB_MAX(nbytes, hd->map[i]->len - KB_RM_HDR_BYTES);
    }
    if (!nbytes || !(hd->bits = calloc(1, nbytes)))
        return false;
    hd->nbits = (uint64_t)nbytes * 8;
    for (int i = 0; i < n; i++)
        if ((srcs & REPL_BIT(i)) && hd->map[i])
            for (size_t k = 0; k + KB_RM_HDR_BYTES < hd->map[i]->len; k++)
                hd->bits[k] |= (uint8_t)hd->map[i]->data[KB_RM_HDR_BYTES + k];
    return true;
}

static uint64_t map_bytes(const hdata_t *hd)
{
    uint64_t total = 0;
    for (uint64_t r = 0; r < hd->nbits && r * RM_G < hd->size; r++)
        if (bit(hd, r))
            total += KB_MIN(RM_G, hd->size - r * RM_G);
    return total;
}

static void hd_snapped(void *ctx, hbatch_t *b)
{
    hdata_t *hd = ctx;
    hobj_t *h = hd->h;
    repl_priv_t *p = hp(h);
    int rc = heal_snap_read(h, b, hd->snapmask);
    for (int k = 0; !rc && k < b->n; k++) {
        hreq_t *q = &b->q[k];
        if (q->op != KB_FOP_IPC || q->r.status < 0 || !q->r.data || !q->r.data->len)
            continue;
        if (q->r.data->len >= KB_RM_HDR_BYTES)
            hd->map[q->child] = kb_buf_ref(q->r.data);
    }
    hb_free(b);
    if (!rc)
        rc = heal_plan(h, KB_CL_DATA, &hd->pl);
    if (rc == -EIO && h->split)
        rc = 0;
    if (rc || hd->pl.src < 0) {
        hd_end(hd, rc);
        return;
    }
    memcpy(hd->m, h->m, sizeof(hd->m));
    hd->K = hd->pl.K;
    hd->size = h->attr[hd->pl.src].size;
    hd->use_map = hd_pick_map(hd);
    uint64_t total = hd->use_map ? map_bytes(hd) : hd->size;
    hd->slot = heal_act_begin(h->hs, &h->gfid, total);
    char gs[KB_GFID_STRLEN];
    kb_info(p->xl->name, "data heal of %s from child %d to 0x%x: %s, %llu bytes to %s",
            kb_gfid_str(&h->gfid, gs), hd->pl.src, hd->K,
            hd->use_map ? "dirty regions" : "block checksums", (unsigned long long)total,
            hd->use_map ? "copy" : "compare");
    hbatch_t *ob = hb_new(h->hs, p->n, h->req, h->owner);
    if (!ob) {
        hd_end(hd, -ENOMEM);
        return;
    }
    for (int i = 0; i < p->n; i++)
        if ((hd->K | REPL_BIT(hd->pl.src)) & REPL_BIT(i)) {
            kb_args_t a = { .gfid = h->gfid, .flags = i == hd->pl.src ? O_RDONLY : O_RDWR };
            hb_add(ob, i, KB_FOP_OPEN, &a);
        }
    hb_go(ob, hd_opened, hd);
}

static void hd_locked(void *ctx, int err)
{
    hdata_t *hd = ctx;
    hobj_t *h = hd->h;
    repl_priv_t *p = hp(h);
    if (err) {
        hd_end(hd, err);
        return;
    }
    hbatch_t *b = hb_new(h->hs, 3 * p->n, h->req, h->owner);
    if (!b) {
        hd_end(hd, -ENOMEM);
        return;
    }
    heal_snap_add(h, b, hd->snapmask);
    for (int i = 0; i < p->n; i++)
        if (hd->lk.want & REPL_BIT(i)) {
            kb_args_t a = { .gfid = h->gfid, .flags = KB_IPC_REGIONS_GET };
            hb_add(b, i, KB_FOP_IPC, &a);
        }
    hb_go(b, hd_snapped, hd);
}

void heal_data(hobj_t *h, hkind_done_fn done)
{
    repl_priv_t *p = hp(h);
    hdata_t *hd = kb_zalloc(sizeof(*hd));
    if (!hd) {
        done(h, -ENOMEM);
        return;
    }
    hd->h = h;
    hd->done = done;
    hd->slot = -1;
    h->kctx = hd;
    h->kfree = hd_free;
    hd->snapmask = h->present & p->up;
    hd->lk = (hlock_t){
        .hs = h->hs, .op = KB_FOP_INODELK, .gfid = h->gfid, .dom = REPL_DOM_DATA,
        .owner = h->owner, .req = h->req, .blocking = true,
        .want = h->present & p->up & repl_data_children(&p->cfg), .cont = hd_locked, .ctx = hd,
    };
    hd->rlk = (hlock_t){ .hs = h->hs, .op = KB_FOP_INODELK, .dom = REPL_DOM_DATA };
    hlock_take(&hd->lk);
}
