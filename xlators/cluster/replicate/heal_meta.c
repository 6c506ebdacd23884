/*
 * heal_meta.c — metadata heal: mode, owner, times and extended
 * attributes from a source copy to the copies that missed changes.
 *
 *   lock       INODELK REPL_DOM_META, whole object, on every copy present
 *              (metadata writers take the same lock: nothing changes under us)
 *   snapshot   LOOKUP + XATTROP GET; heal_plan(KB_CL_META)
 *   lists      LISTXATTR on the source and the sinks, GETXATTR of each
 *              source name (internal trusted.kembar.* names are invisible:
 *              the bricks filter them)
 *   apply      per sink: SETATTR (mode — not on symlinks —, uid, gid, atime,
 *              mtime), SETXATTR of every source name, REMOVEXATTR of names
 *              the source lacks
 *   clear      take back the marks the snapshot showed; unlock
 *
 * In "compare" mode (heal full, or dirty marks nobody explains) only the
 * copies whose mode, owner, mtime or xattr names differ are written.
 */
#include <sys/stat.h>
#include "lib/log.h"
#include "xlators/cluster/replicate/heal_internal.h"

typedef struct hmeta {
    hobj_t *h;
    hkind_done_fn done;
    hlock_t lk;
    hplan_t pl;
    kb_cl_matrix_t m[KB_CL_MAX_REPLICA];
    repl_mask_t K, failed, in_sync;
    hbatch_t *lists;            /* LISTXATTR replies */
    hbatch_t *vals;             /* GETXATTR replies (source) */
    int err;
} hmeta_t;

static void hm_free(void *ctx)
{
    hmeta_t *mm = ctx;
    hb_free(mm->lists);
    hb_free(mm->vals);
    free(mm);
}

static void hm_end2(void *ctx, int err)
{
    hmeta_t *mm = ctx;
    hobj_t *h = mm->h;
    hkind_done_fn done = mm->done;
    int rc = mm->err;
    h->kctx = NULL;
    hm_free(mm);
    done(h, rc);
}

static void hm_end(hmeta_t *mm, int err)
{
    if (err && !mm->err)
        mm->err = err;
    hlock_drop(&mm->lk, hm_end2, mm);
}

/* The NUL-separated list of Q's reply (empty when none / unsupported). */
static const char *xlist(const hreq_t *q, size_t *len)
{
    *len = q && q->r.status > 0 && q->r.data ? KB_MIN((size_t)q->r.status, q->r.data->len) : 0;
    return *len ? q->r.data->data : "";
}

static bool xlist_has(const char *l, size_t len, const char *name)
{
    for (size_t i = 0; i < len;) {
        size_t n = strnlen(l + i, len - i);
        if (n && strncmp(l + i, name, n) == 0 && name[n] == 0)
            return true;
        i += n + 1;
    }
    return false;
}

static bool xlist_same(const char *a, size_t al, const char *b, size_t bl)
{
    for (size_t i = 0; i < al;) {
        size_t n = strnlen(a + i, al - i);
        if (n && !xlist_has(b, bl, a + i))
            return false;
        i += n + 1;
    }
    for (size_t i = 0; i < bl;) {
        size_t n = strnlen(b + i, bl - i);
        if (n && !xlist_has(a, al, b + i))
            return false;
        i += n + 1;
    }
    return true;
}

static void hm_cleared(void *ctx, hbatch_t *b)
{
    hmeta_t *mm = ctx;
    int err = b->err;
    for (int k = 0; k < b->n && !err; k++)
        if (b->q[k].r.status < 0)
            err = b->q[k].r.status;
    hb_free(b);
    hm_end(mm, err);
}

static void hm_clear(hmeta_t *mm)
{
    hobj_t *h = mm->h;
    repl_priv_t *p = hp(h);
    repl_mask_t H = mm->pl.S | REPL_BIT(mm->pl.src) | mm->in_sync | (mm->K & ~mm->failed);
    hbatch_t *b = hb_new(h->hs, p->n, h->req, h->owner);
    if (!b) {
        hm_end(mm, -ENOMEM);
        return;
    }
    heal_clear_add(h, b, KB_CL_META, H, mm->m, mm->pl.R);
    if (mm->failed && !mm->err)
        mm->err = -EIO;
    hb_go(b, hm_cleared, mm);
}

static void hm_applied(void *ctx, hbatch_t *b)
{
    hmeta_t *mm = ctx;
    for (int k = 0; k < b->n; k++)
        if (b->err || (b->q[k].r.status < 0 && b->q[k].r.status != -ENODATA)) {
            mm->failed |= REPL_BIT(b->q[k].child);
            kb_warn(hp(mm->h)->xl->name, "metadata heal: %s on child %d: %s", kb_fop_name(b->q[k].op),
                    b->q[k].child, strerror(-(b->err ? b->err : b->q[k].r.status)));
        }
    if (b->err)
        mm->failed = mm->K;
    hb_free(b);
    hm_clear(mm);
}

static void hm_apply(hmeta_t *mm)
{
    hobj_t *h = mm->h;
    int src = mm->pl.src;
    const kb_iatt_t *sa = &h->attr[src];
    size_t sl;
    const char *sn = xlist(hb_find(mm->lists, src, KB_FOP_LISTXATTR, 0), &sl);
    int cap = 0;
    for (int k = 0; k < hp(h)->n; k++)
        if (mm->K & REPL_BIT(k)) {
            size_t kl;
            xlist(hb_find(mm->lists, k, KB_FOP_LISTXATTR, 0), &kl);
            cap += 1 + (mm->vals ? mm->vals->n : 0) + (int)kl;   /* kl >= number of names */
        }
    hbatch_t *b = hb_new(h->hs, cap > 0 ? cap : 1, h->req, h->owner);
    if (!b) {
        hm_end(mm, -ENOMEM);
        return;
    }
    for (int k = 0; k < hp(h)->n; k++) {
        if (!(mm->K & REPL_BIT(k)))
            continue;
        kb_args_t a = { .gfid = h->gfid, .attr = *sa,
                        .flags = KB_SET_UID | KB_SET_GID | KB_SET_ATIME | KB_SET_MTIME };
        if (!S_ISLNK(h->type))
            a.flags |= KB_SET_MODE;
        hb_add(b, k, KB_FOP_SETATTR, &a);
        for (int v = 0; mm->vals && v < mm->vals->n; v++) {
            hreq_t *q = &mm->vals->q[v];
            if (q->r.status < 0)
                continue;       /* removed meanwhile: the source lacks it now */
            kb_args_t x = { .gfid = h->gfid, .name = q->a.name, .data = q->r.data };
            hb_add(b, k, KB_FOP_SETXATTR, &x);
        }
        size_t kl;
        const char *kn = xlist(hb_find(mm->lists, k, KB_FOP_LISTXATTR, 0), &kl);
        for (size_t i = 0; i < kl;) {
            size_t n = strnlen(kn + i, kl - i);
            if (n && !xlist_has(sn, sl, kn + i)) {
                kb_args_t r = { .gfid = h->gfid, .name = (char *)kn + i };
                hb_add(b, k, KB_FOP_REMOVEXATTR, &r);
            }
            i += n + 1;
        }
    }
    h->did = true;
    hb_go(b, hm_applied, mm);
}

static void hm_got_vals(void *ctx, hbatch_t *b)
{
    hmeta_t *mm = ctx;
    mm->vals = b;
    if (b->err) {
        hm_end(mm, b->err);
        return;
    }
    hm_apply(mm);
}

/* Compare mode: keep only the copies that differ from the source. */
static void hm_filter(hmeta_t *mm)
{
    hobj_t *h = mm->h;
    const kb_iatt_t *sa = &h->attr[mm->pl.src];
    size_t sl;
    const char *sn = xlist(hb_find(mm->lists, mm->pl.src, KB_FOP_LISTXATTR, 0), &sl);
    for (int k = 0; k < hp(h)->n; k++) {
        if (!(mm->K & REPL_BIT(k)))
            continue;
        const kb_iatt_t *ka = &h->attr[k];
        size_t kl;
        const char *kn = xlist(hb_find(mm->lists, k, KB_FOP_LISTXATTR, 0), &kl);
        bool same = ka->mode == sa->mode && ka->uid == sa->uid && ka->gid == sa->gid &&
                    (S_ISDIR(h->type) || (ka->mtime_sec == sa->mtime_sec && ka->mtime_nsec == sa->mtime_nsec)) &&
                    xlist_same(sn, sl, kn, kl);
        if (same) {
            mm->K &= ~REPL_BIT(k);
            mm->in_sync |= REPL_BIT(k);
        }
    }
}

static void hm_got_lists(void *ctx, hbatch_t *b)
{
    hmeta_t *mm = ctx;
    hobj_t *h = mm->h;
    mm->lists = b;
    for (int k = 0; k < b->n; k++) {
        int st = b->err ? b->err : b->q[k].r.status;
        if (st < 0 && st != -ENOTSUP && st != -EOPNOTSUPP && st != -ENODATA) {
            hm_end(mm, st);
            return;
        }
    }
    if (mm->pl.cmp)
        hm_filter(mm);
    if (!mm->K) {
        hm_clear(mm);           /* nothing differs: only the dirty marks go */
        return;
    }
    size_t sl;
    const char *sn = xlist(hb_find(b, mm->pl.src, KB_FOP_LISTXATTR, 0), &sl);
    int names = 0;
    for (size_t i = 0; i < sl; i += strnlen(sn + i, sl - i) + 1)
        names++;
    if (!names) {
        hm_apply(mm);
        return;
    }
    hbatch_t *vb = hb_new(h->hs, names, h->req, h->owner);
    if (!vb) {
        hm_end(mm, -ENOMEM);
        return;
    }
    for (size_t i = 0; i < sl;) {
        size_t n = strnlen(sn + i, sl - i);
        if (n) {
            kb_args_t a = { .gfid = h->gfid, .name = (char *)sn + i, .size = HEAL_XATTR_LIST };
            hb_add(vb, mm->pl.src, KB_FOP_GETXATTR, &a);
        }
        i += n + 1;
    }
    hb_go(vb, hm_got_vals, mm);
}

static void hm_snapped(void *ctx, hbatch_t *b)
{
    hmeta_t *mm = ctx;
    hobj_t *h = mm->h;
    repl_priv_t *p = hp(h);
    int rc = heal_snap_read(h, b, mm->lk.want);
    hb_free(b);
    if (!rc)
        rc = heal_plan(h, KB_CL_META, &mm->pl);
    if (rc == -EIO && h->split)
        rc = 0;                 /* recorded, not healed */
    if (rc || mm->pl.src < 0) {
        hm_end(mm, rc);
        return;
    }
    memcpy(mm->m, h->m, sizeof(mm->m));
    mm->K = mm->pl.K;
    hbatch_t *lb = hb_new(h->hs, p->n, h->req, h->owner);
    if (!lb) {
        hm_end(mm, -ENOMEM);
        return;
    }
    for (int i = 0; i < p->n; i++)
        if ((mm->K | REPL_BIT(mm->pl.src)) & REPL_BIT(i)) {
            kb_args_t a = { .gfid = h->gfid, .size = HEAL_XATTR_LIST };
            hb_add(lb, i, KB_FOP_LISTXATTR, &a);
        }
    hb_go(lb, hm_got_lists, mm);
}

static void hm_locked(void *ctx, int err)
{
    hmeta_t *mm = ctx;
    hobj_t *h = mm->h;
    if (err) {                  /* nothing is held */
        mm->err = err;
        hm_end2(mm, 0);
        return;
    }
    hbatch_t *b = hb_new(h->hs, 2 * hp(h)->n, h->req, h->owner);
    if (!b) {
        hm_end(mm, -ENOMEM);
        return;
    }
    heal_snap_add(h, b, mm->lk.want);
    hb_go(b, hm_snapped, mm);
}

void heal_meta(hobj_t *h, hkind_done_fn done)
{
    hmeta_t *mm = kb_zalloc(sizeof(*mm));
    if (!mm) {
        done(h, -ENOMEM);
        return;
    }
    mm->h = h;
    mm->done = done;
    h->kctx = mm;
    h->kfree = hm_free;
    mm->lk = (hlock_t){
        .hs = h->hs, .op = KB_FOP_INODELK, .gfid = h->gfid, .dom = REPL_DOM_META,
        .owner = h->owner, .req = h->req, .blocking = true, .want = h->present & hp(h)->up,
        .cont = hm_locked, .ctx = mm,
    };
    hlock_take(&mm->lk);
}
