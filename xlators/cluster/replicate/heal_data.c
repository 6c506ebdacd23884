/*
 * heal_data.c — data heal: copy what differs, only what differs,
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
 *      Up to HEAL_WINDOWS windows of the file are in flight at once (they
 *      never overlap), so one round trip's latency is not paid per window.
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
#include "xlators/cluster/replicate/heal_internal.h"

#define RM_G ((uint64_t)KB_RM_GRANULARITY)
#define DIGEST 32

typedef struct hdata hdata_t;

/* One window being copied; up to HEAL_WINDOWS of a file at once (the
 * windows of a file never overlap, so their copies cannot interfere). */
typedef struct hwin {
    hdata_t *hd;
    hlock_t rlk;                /* the window's range lock */
    uint64_t w, wlen, wend;
    uint64_t cur;               /* map path: cursor in the window */
    uint64_t roff, rlen;        /* the run / block being copied ... */
    repl_mask_t rto;            /* ... to these sinks */
    hbatch_t *csum;             /* checksum path: digests of the window */
    uint32_t blk;
    bool busy;
} hwin_t;

struct hdata {
    hobj_t *h;
    hkind_done_fn done;
    hlock_t lk;                 /* whole file (snapshot, finish) */
    hplan_t pl;
    repl_mask_t snapmask;       /* copies whose marks the snapshot read */
    repl_mask_t K, failed;
    kb_cl_matrix_t m[KB_CL_MAX_REPLICA];
    kb_buf_t *map[KB_CL_MAX_REPLICA];   /* each copy's map as read (header included) */
    uint8_t *bits;              /* union of the sources' maps */
    uint64_t nbits;
    bool use_map, changed;
    uint64_t size;
    uint64_t fd[KB_CL_MAX_REPLICA];
    repl_mask_t opened;
    uint64_t pos;               /* next offset to look at for a window */
    hwin_t win[HEAL_WINDOWS];
    int nbusy;
    int slot;
    int err;
    uint64_t t0;                /* start (ms), for the log */
    uint64_t bytes0;            /* data_bytes_written at the start */
};

static void hd_fill(hdata_t *hd);
static void hd_finish(hdata_t *hd);

static void hd_free(void *ctx)
{
    hdata_t *hd = ctx;
    for (int i = 0; i < KB_CL_MAX_REPLICA; i++)
        kb_buf_unref(hd->map[i]);
    for (int i = 0; i < HEAL_WINDOWS; i++)
        hb_free(hd->win[i].csum);
    free(hd->bits);
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

/* Narrow [*lo, *hi) of P by the all-zero 4 KiB pages at either end (it is
 * not all zero: the caller punched that case). */
static void trim_zero_pages(const char *p, uint64_t *lo, uint64_t *hi)
{
    const uint64_t pg = 4096;
    while (*lo + pg < *hi && all_zero(p + *lo, pg))
        *lo += pg;
    for (;;) {
        uint64_t last = *lo + (*hi - *lo - 1) / pg * pg;   /* start of the last page */
        if (last == *lo || !all_zero(p + last, (size_t)(*hi - last)))
            break;
        *hi = last;
    }
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
    if (hd->pl.src >= 0 && hd->t0) {
        char gs[KB_GFID_STRLEN];
        kb_info(hp(h)->xl->name, "data heal of %s %s: %llu bytes written in %llu ms",
                kb_gfid_str(&h->gfid, gs), hd->err ? "failed" : "done",
                (unsigned long long)(h->hs->st.data_bytes_written - hd->bytes0),
                (unsigned long long)(kb_now_ms() - hd->t0));
    }
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

/* Stop (error or done) once no window is busy: drop the whole-file lock
 * (a no-op when not held), release the fds. */
static void hd_end(hdata_t *hd, int err)
{
    if (err && !hd->err)
        hd->err = err;
    if (hd->nbusy)
        return;                 /* the last window to close comes back here */
    hlock_drop(&hd->lk, hd_unlocked, hd);
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

/* ---------------- windows ---------------- */

static void win_closed(void *ctx, int err)
{
    hwin_t *win = ctx;
    hdata_t *hd = win->hd;
    win->busy = false;
    hd->nbusy--;
    hd_fill(hd);
}

static void win_close(hwin_t *win)
{
    hb_free(win->csum);
    win->csum = NULL;
    hlock_drop(&win->rlk, win_closed, win);
}

static void win_fail(hwin_t *win, int err)
{
    if (!win->hd->err)
        win->hd->err = err;
    win_close(win);
}

static hbatch_t *win_batch(hwin_t *win, int cap)
{
    hobj_t *h = win->hd->h;
    hbatch_t *b = hb_new(h->hs, cap, h->req, h->owner);
    if (!b)
        win_fail(win, -ENOMEM);
    return b;
}

/* ---------------- copying one run / block ---------------- */

static void win_next_run(hwin_t *win);
static void win_next_block(hwin_t *win);

static void win_after_copy(hwin_t *win)
{
    if (win->hd->err || !live_sinks(win->hd))
        win_close(win);
    else if (win->hd->use_map)
        win_next_run(win);
    else
        win_next_block(win);
}

static void win_copied(void *ctx, hbatch_t *b)
{
    hwin_t *win = ctx;
    hdata_t *hd = win->hd;
    note_failures(hd, b);
    hb_free(b);
    if (hd->use_map)            /* (the checksum path counts what it compared) */
        heal_act_add(hd->h->hs, hd->slot, win->rlen);
    win_after_copy(win);
}

static void win_punch(hwin_t *win, uint64_t off, uint64_t len, repl_mask_t to)
{
    hdata_t *hd = win->hd;
    hobj_t *h = hd->h;
    hbatch_t *b = win_batch(win, hp(h)->n);
    if (!b)
        return;
    for (int k = 0; k < hp(h)->n; k++)
        if (to & REPL_BIT(k)) {
            kb_args_t a = { .gfid = h->gfid, .fd = hd->fd[k], .off = off, .size = len,
                            .flags = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE };
            hb_add(b, k, KB_FOP_FALLOCATE, &a);
        }
    hd->changed = true;
    hb_go(b, win_copied, win);
}

static void win_read_done(void *ctx, hbatch_t *b)
{
    hwin_t *win = ctx;
    hdata_t *hd = win->hd;
    hobj_t *h = hd->h;
    heal_t *hs = h->hs;
    const kb_reply_t *r = b->err ? NULL : &b->q[0].r;
    int st = r ? r->status : b->err;
    if (st < 0) {
        hb_free(b);
        win_fail(win, st);
        return;
    }
    size_t n = r->data ? KB_MIN((size_t)st, r->data->len) : 0;
    hs->st.data_bytes_read += n;
    repl_mask_t to = win->rto & live_sinks(hd);
    if (n == 0 || !to) {        /* past the source's end now: the final truncate fixes it */
        hb_free(b);
        if (hd->use_map)
            heal_act_add(hs, hd->slot, win->rlen);
        win_after_copy(win);
        return;
    }
    if (all_zero(r->data->data, n)) {
        hb_free(b);
        win_punch(win, win->roff, n, to);
        return;
    }
    /* Past every sink's end (a copy made anew, a file that grew while it
     * was away) zero pages at either end of the run are left as holes: the
     * final truncate extends the sink with zeros there anyway. */
    uint64_t lo = 0, hi = n;
    bool past_end = true;
    for (int k = 0; k < hp(h)->n; k++)
        if ((to & REPL_BIT(k)) && h->attr[k].size > win->roff)
            past_end = false;
    if (past_end)
        trim_zero_pages(r->data->data, &lo, &hi);
    /* One buffer for every sink (each WRITE holds a reference); a reply
     * whose payload is longer than its status, or a trimmed run, is copied. */
    kb_buf_t *data = r->data->len == n && lo == 0 && hi == n ? kb_buf_ref(r->data)
                                                            : kb_buf_copy(r->data->data + lo, hi - lo);
    hb_free(b);
    hbatch_t *wb = data ? win_batch(win, hp(h)->n) : NULL;
    if (!wb) {
        if (!data)
            win_fail(win, -ENOMEM);
        kb_buf_unref(data);
        return;
    }
    for (int k = 0; k < hp(h)->n; k++)
        if (to & REPL_BIT(k)) {
            kb_args_t a = { .gfid = h->gfid, .fd = hd->fd[k], .off = win->roff + lo, .data = data };
            hb_add(wb, k, KB_FOP_WRITE, &a);
            hs->st.data_bytes_written += hi - lo;
        }
    kb_buf_unref(data);
    hd->changed = true;
    hb_go(wb, win_copied, win);
}

static void win_read(hwin_t *win, uint64_t off, uint64_t len, repl_mask_t to)
{
    hdata_t *hd = win->hd;
    win->roff = off;
    win->rlen = len;
    win->rto = to;
    hbatch_t *b = win_batch(win, 1);
    if (!b)
        return;
    kb_args_t a = { .gfid = hd->h->gfid, .fd = hd->fd[hd->pl.src], .off = off, .size = len };
    hb_add(b, hd->pl.src, KB_FOP_READ, &a);
    hb_go(b, win_read_done, win);
}

/* Map path: the next run of set regions in the window. */
static void win_next_run(hwin_t *win)
{
    hdata_t *hd = win->hd;
    /* cur is region-aligned except at the end of the file */
    uint64_t r = (win->cur + RM_G - 1) / RM_G, end = win->wend;
    while (r * RM_G < end && !bit(hd, r))
        r++;
    if (r * RM_G >= end) {
        win_close(win);
        return;
    }
    uint64_t r1 = r;
    while (r1 * RM_G < end && bit(hd, r1))
        r1++;
    uint64_t off = r * RM_G, stop = KB_MIN(r1 * RM_G, end);
    win->cur = stop;
    win_read(win, off, stop - off, live_sinks(hd));
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
static void win_next_block(hwin_t *win)
{
    hdata_t *hd = win->hd;
    hobj_t *h = hd->h;
    hbatch_t *cb = win->csum;
    hreq_t *sq = hb_find(cb, hd->pl.src, KB_FOP_RCHECKSUM, 0);
    uint64_t cov = sq->r.off;
    uint32_t nb = (uint32_t)((cov + HEAL_CSUM_BLOCK - 1) / HEAL_CSUM_BLOCK);
    for (; win->blk < nb; win->blk++) {
        const uint8_t *sd = digest(sq, win->blk);
        if (!sd)
            break;
        uint64_t bstart = (uint64_t)win->blk * HEAL_CSUM_BLOCK;
        uint64_t slen = KB_MIN((uint64_t)HEAL_CSUM_BLOCK, cov - bstart);
        repl_mask_t differ = 0;
        for (int k = 0; k < hp(h)->n; k++) {
            if (!(live_sinks(hd) & REPL_BIT(k)))
                continue;
            hreq_t *kq = hb_find(cb, k, KB_FOP_RCHECKSUM, 0);
            const uint8_t *kd = digest(kq, win->blk);
            uint64_t kcov = kq ? kq->r.off : 0;
            uint64_t klen = kcov > bstart ? KB_MIN((uint64_t)HEAL_CSUM_BLOCK, kcov - bstart) : 0;
            if (!kd || klen != slen || memcmp(kd, sd, DIGEST))
                differ |= REPL_BIT(k);
        }
        if (!differ)
            continue;
        win->blk++;
        win->roff = win->w + bstart;
        win->rlen = slen;
        if (is_hole(sd))
            win_punch(win, win->w + bstart, slen, differ);
        else
            win_read(win, win->w + bstart, slen, differ);
        return;
    }
    win_close(win);
}

static void win_summed(void *ctx, hbatch_t *b)
{
    hwin_t *win = ctx;
    hdata_t *hd = win->hd;
    heal_t *hs = hd->h->hs;
    hreq_t *sq = b->err ? NULL : hb_find(b, hd->pl.src, KB_FOP_RCHECKSUM, 0);
    if (!sq || sq->r.status < 0) {
        int st = b->err ? b->err : sq ? sq->r.status : -EIO;
        hb_free(b);
        win_fail(win, st);
        return;
    }
    note_failures(hd, b);
    win->csum = b;
    win->blk = 0;
    uint64_t cov = sq->r.off;
    hs->st.checksum_blocks += (cov + HEAL_CSUM_BLOCK - 1) / HEAL_CSUM_BLOCK;
    heal_act_add(hs, hd->slot, cov);
    if (cov < win->wlen)
        hd->pos = KB_MAX(hd->pos, hd->size);    /* the source ends here: no window beyond */
    win_next_block(win);
}

static void win_locked(void *ctx, int err)
{
    hwin_t *win = ctx;
    hdata_t *hd = win->hd;
    hobj_t *h = hd->h;
    if (err) {                  /* nothing is held */
        if (!hd->err)
            hd->err = err;
        win_closed(win, 0);
        return;
    }
    if (hd->use_map) {
        win->cur = win->w;
        win_next_run(win);
        return;
    }
    hbatch_t *b = win_batch(win, hp(h)->n);
    if (!b)
        return;
    repl_mask_t who = live_sinks(hd) | REPL_BIT(hd->pl.src);
    for (int i = 0; i < hp(h)->n; i++)
        if (who & REPL_BIT(i)) {
            kb_args_t a = { .gfid = h->gfid, .fd = hd->fd[i], .off = win->w, .size = win->wlen,
                            .flags = HEAL_CSUM_BLOCK };
            hb_add(b, i, KB_FOP_RCHECKSUM, &a);
        }
    hb_go(b, win_summed, win);
}

/* The next window with work, from hd->pos; false when there is none. */
static bool next_window(hdata_t *hd, uint64_t *w, uint64_t *wlen)
{
    if (hd->pos >= hd->size)
        return false;
    if (!hd->use_map) {
        *w = hd->pos;
        *wlen = HEAL_CSUM_WINDOW;
        hd->pos += HEAL_CSUM_WINDOW;
        return true;
    }
    uint64_t r = hd->pos / RM_G;
    while (r < hd->nbits && r * RM_G < hd->size && !bit(hd, r))
        r++;
    if (r >= hd->nbits || r * RM_G >= hd->size) {
        hd->pos = hd->size;
        return false;
    }
    *w = r * RM_G / HEAL_CHUNK * HEAL_CHUNK;
    *wlen = HEAL_CHUNK;
    hd->pos = *w + HEAL_CHUNK;
    return true;
}

/* Keep HEAL_WINDOWS windows busy; when all are done, finish. */
static void hd_fill(hdata_t *hd)
{
    hobj_t *h = hd->h;
    if (hd->err || !live_sinks(hd)) {
        if (!hd->nbusy)
            hd->err ? hd_end(hd, 0) : hd_finish(hd);
        return;
    }
    for (int i = 0; i < HEAL_WINDOWS && !hd->err; i++) {
        hwin_t *win = &hd->win[i];
        uint64_t w, wlen;
        if (win->busy || !next_window(hd, &w, &wlen))
            continue;
        win->hd = hd;
        win->busy = true;
        hd->nbusy++;
        win->w = w;
        win->wlen = wlen;
        win->wend = KB_MIN(w + wlen, hd->size);
        win->rlk = (hlock_t){
            .hs = h->hs, .op = KB_FOP_INODELK, .gfid = h->gfid, .dom = REPL_DOM_DATA,
            .start = w, .len = wlen, .owner = h->owner, .req = h->req, .blocking = true,
            .want = live_sinks(hd) | REPL_BIT(hd->pl.src), .cont = win_locked, .ctx = win,
        };
        hlock_take(&win->rlk);
    }
    if (!hd->nbusy)
        hd->err ? hd_end(hd, 0) : hd_finish(hd);
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
    hd_fill(hd);
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
    /* An empty sink of a non-empty file was made anew (entry heal onto a
     * replaced brick, a lost file): the sources' maps name what an older
     * copy missed, not the whole gap. */
    for (int k = 0; k < n; k++)
        if ((hd->K & REPL_BIT(k)) && h->attr[k].size == 0 && h->attr[hd->pl.src].size > 0)
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
    if (!rc && hd->pl.clear_only) {
        hbatch_t *cb = hb_new(h->hs, p->n, h->req, h->owner);
        if (!cb) {
            hd_end(hd, -ENOMEM);
            return;
        }
        heal_clear_add(h, cb, KB_CL_DATA, repl_all(&p->cfg), h->m, hd->pl.R);
        h->did = true;
        hb_go(cb, hd_fin_cleared, hd);
        return;
    }
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
    hd->t0 = kb_now_ms();
    hd->bytes0 = h->hs->st.data_bytes_written;
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
    hlock_take(&hd->lk);
}
