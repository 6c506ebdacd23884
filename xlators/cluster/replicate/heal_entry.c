/*
 * heal_entry.c — entry heal of a directory: the names a copy
 * missed (created, removed, renamed while it was away), settled by gfid.
 *
 *   lock      ENTRYLK REPL_DOM_ENTRY on the whole directory, every copy
 *             present (replicate's entry ops lock a name of it: they wait)
 *   snapshot  LOOKUP + XATTROP GET; heal_plan(KB_CL_ENTRY)
 *   list      READDIR (plus: gfids) of every copy taking part
 *   per sink  1. names the sink has and the source has not (or has with
 *                another gfid): if that gfid still lives on the source
 *                with a name, it was renamed: RENAME it on the sink to
 *                where the source has it (GFID_PATH on the source, resolved
 *                on the sink); else it was deleted (absent, or open and
 *                unlinked there: nlink 0): UNLINK, or remove the tree.
 *             2. names the source has and the sink lacks: if the sink holds
 *                that gfid under another name, LINK it (files; a file open
 *                and unlinked on the sink is refused, -ENOENT, so the name
 *                stays pending there until its last close) or RENAME it
 *                here (directories: GFID_PATH on the sink); else create it
 *                with the SAME gfid, mode and owner (MKDIR, MKNOD — regular
 *                files too, empty —, SYMLINK with the source's target),
 *                then mark the new object on the source as pending against
 *                the sink (data / entry / metadata) and queue it: its
 *                contents, times and xattrs are healed by its own heal, in
 *                this sweep, and by the next one should this daemon stop.
 *   clear     take back the marks of the snapshot; unlock
 *
 * Deletions go first so that a name reused for another object (deleted and
 * created again during the outage) is free when it is created, and so that
 * a rename within the directory becomes one RENAME on the sink (not a copy).
 *
 * "Merge" (copies marked dirty that nobody blames, or heal full): nothing
 * says which copy is right, so nothing is removed; every copy gets the
 * names the others have (GlusterFS's conservative merge).
 */
#include <stdio.h>
#include <sys/stat.h>
#include "lib/log.h"
#include "xlators/cluster/replicate/heal_internal.h"

struct rmframe { kb_gfid_t dir, parent; char *name; hlist_t list; size_t idx; bool listed; };

typedef struct hentry {
    hobj_t *h;
    hkind_done_fn done;
    hlock_t lk;
    hplan_t pl;
    kb_cl_matrix_t m[KB_CL_MAX_REPLICA];
    repl_mask_t P, failed;
    bool merge;
    hlist_t list[KB_CL_MAX_REPLICA];
    hlistdir_t ld;
    repl_mask_t lmask;
    int npairs, pair;
    struct { int8_t s, k; } pairs[KB_CL_MAX_REPLICA * KB_CL_MAX_REPLICA];
    int phase;                  /* 0: the sink's names (removals), 1: the source's (creations) */
    size_t idx;
    hent_t *e;                  /* the name being settled */
    kb_iatt_t sattr;            /* its attributes on the source (fresh) */
    /* path resolution on one copy */
    char *path, *cur;
    kb_gfid_t rparent;
    void (*rcont)(struct hentry *he, int err);
    /* recursive removal on one copy */
    struct rmframe *rm;
    int nrm, caprm, rmerr;
    void (*rmcont)(struct hentry *he, int err);
    int err;
} hentry_t;

static void he_pairs_next(hentry_t *he);
static void he_name_next(hentry_t *he);

static int psrc(const hentry_t *he) { return he->pairs[he->pair].s; }
static int psnk(const hentry_t *he) { return he->pairs[he->pair].k; }

static void rm_clear(hentry_t *he)
{
    for (int i = 0; i < he->nrm; i++) {
        free(he->rm[i].name);
        hlist_clear(&he->rm[i].list);
    }
    he->nrm = 0;
}

static void he_free(void *ctx)
{
    hentry_t *he = ctx;
    for (int i = 0; i < KB_CL_MAX_REPLICA; i++)
        hlist_clear(&he->list[i]);
    rm_clear(he);
    free(he->rm);
    free(he->path);
    free(he);
}

static void he_end2(void *ctx, int err)
{
    hentry_t *he = ctx;
    hobj_t *h = he->h;
    hkind_done_fn done = he->done;
    int rc = he->err;
    h->kctx = NULL;
    he_free(he);
    done(h, rc);
}

static void he_end(hentry_t *he, int err)
{
    if (err && !he->err)
        he->err = err;
    hlock_drop(&he->lk, he_end2, he);
}

static hbatch_t *he_batch(hentry_t *he, int cap)
{
    hbatch_t *b = hb_new(he->h->hs, cap, he->h->req, he->h->owner);
    if (!b)
        he_end(he, -ENOMEM);
    return b;
}

static int st0(const hbatch_t *b) { return b->err ? b->err : b->n ? b->q[0].r.status : -EIO; }
static bool absent(int st) { return st == -ENOENT || st == -ESTALE; }

/* One call on one child, continuing in CONT. */
static void he_call(hentry_t *he, int child, kb_op_t op, const kb_args_t *a, hb_fn cont)
{
    hbatch_t *b = he_batch(he, 1);
    if (!b)
        return;
    hb_add(b, child, op, a);
    hb_go(b, cont, he);
}

/* The name failed on this sink: the directory stays pending there. */
static void he_name_failed(hentry_t *he, int err)
{
    char gs[KB_GFID_STRLEN];
    he->failed |= REPL_BIT(psnk(he));
    kb_warn(hp(he->h)->xl->name, "entry heal of %s: '%s' on child %d: %s", kb_gfid_str(&he->h->gfid, gs),
            he->e ? he->e->name : "?", psnk(he), strerror(-err));
    he_name_next(he);
}

/* ---------------- path resolution on a copy ----------------
 * "/a/b/c" -> LOOKUP a, LOOKUP b from the root -> (gfid of b, "c"). */

static void res_step(hentry_t *he);

static void res_got(void *ctx, hbatch_t *b)
{
    hentry_t *he = ctx;
    int st = st0(b);
    if (st >= 0)
        he->rparent = b->q[0].r.attr.gfid;
    hb_free(b);
    if (st < 0) {
        he->rcont(he, st);
        return;
    }
    res_step(he);
}

static void res_step(hentry_t *he)
{
    char *slash = strchr(he->cur, '/');
    if (!slash) {
        he->rcont(he, *he->cur ? 0 : -EINVAL);
        return;
    }
    *slash = 0;
    kb_args_t a = { .gfid = he->rparent, .name = he->cur };
    he->cur = slash + 1;
    he_call(he, psnk(he), KB_FOP_LOOKUP, &a, res_got);
}

static void resolve(hentry_t *he, const kb_reply_t *r, void (*cont)(hentry_t *, int))
{
    free(he->path);
    he->path = NULL;
    he->rcont = cont;
    size_t n = r->data ? r->data->len : 0;
    if (r->status < 0 || n < 2 || r->data->data[0] != '/' || !(he->path = strndup(r->data->data, n))) {
        cont(he, r->status < 0 ? r->status : -ENOENT);     /* "<gfid:...>": no name known */
        return;
    }
    he->cur = he->path + 1;
    he->rparent = kb_gfid_root;
    res_step(he);
}

/* ---------------- recursive removal on a copy ---------------- */

static void rm_step(hentry_t *he);

static int rm_push(hentry_t *he, const kb_gfid_t *dir, const kb_gfid_t *parent, const char *name)
{
    if (he->nrm == he->caprm) {
        int cap = he->caprm ? he->caprm * 2 : 8;
        struct rmframe *f = realloc(he->rm, (size_t)cap * sizeof(*f));
        if (!f)
            return -ENOMEM;
        he->rm = f;
        he->caprm = cap;
    }
    struct rmframe *f = &he->rm[he->nrm];
    memset(f, 0, sizeof(*f));
    f->dir = *dir;
    f->parent = *parent;
    if (!(f->name = strdup(name)))
        return -ENOMEM;
    he->nrm++;
    return 0;
}

static void rm_did(void *ctx, hbatch_t *b)
{
    hentry_t *he = ctx;
    int st = st0(b);
    if (st < 0 && !absent(st) && !he->rmerr)
        he->rmerr = st;
    bool rmdir = b->n && b->q[0].op == KB_FOP_RMDIR;
    hb_free(b);
    if (rmdir) {
        struct rmframe *f = &he->rm[--he->nrm];
        free(f->name);
        hlist_clear(&f->list);
        if (!he->nrm) {
            he->rmcont(he, he->rmerr);
            return;
        }
    }
    rm_step(he);
}

static void rm_listed(void *ctx, int err)
{
    hentry_t *he = ctx;
    struct rmframe *f = &he->rm[he->nrm - 1];
    f->listed = true;
    if (err && !absent(err) && !he->rmerr)
        he->rmerr = err;
    rm_step(he);
}

static void rm_step(hentry_t *he)
{
    struct rmframe *f = &he->rm[he->nrm - 1];
    if (he->rmerr) {            /* give up: the directory stays pending */
        int err = he->rmerr;
        rm_clear(he);
        he->rmcont(he, err);
        return;
    }
    if (!f->listed) {
        he->ld = (hlistdir_t){ .hs = he->h->hs, .child = psnk(he), .gfid = f->dir, .req = he->h->req,
                               .out = &f->list, .cont = rm_listed, .ctx = he };
        heal_listdir(&he->ld);
        return;
    }
    if (f->idx < f->list.n) {
        hent_t *e = &f->list.e[f->idx++];
        if (S_ISDIR(e->type) && !kb_gfid_is_null(&e->gfid)) {
            kb_gfid_t dir = f->dir;     /* (the push may move the frames) */
            he->rmerr = rm_push(he, &e->gfid, &dir, e->name);
            rm_step(he);
            return;
        }
        kb_args_t a = { .gfid = f->dir, .name = e->name };
        he_call(he, psnk(he), KB_FOP_UNLINK, &a, rm_did);
        return;
    }
    kb_args_t a = { .gfid = f->parent, .name = f->name };
    he_call(he, psnk(he), KB_FOP_RMDIR, &a, rm_did);
}

static void rm_tree(hentry_t *he, const kb_gfid_t *dir, const char *name, const kb_gfid_t *g,
                    void (*cont)(hentry_t *, int))
{
    he->rmcont = cont;
    he->rmerr = rm_push(he, g, dir, name);
    if (he->rmerr) {
        cont(he, he->rmerr);
        return;
    }
    rm_step(he);
}

/* ---------------- removals: names the source lacks ---------------- */

static void del_done(void *ctx, hbatch_t *b)
{
    hentry_t *he = ctx;
    int st = st0(b);
    hb_free(b);
    if (st < 0 && !absent(st)) {
        he_name_failed(he, st);
        return;
    }
    he->e->gone = true;
    he->h->did = true;
    he_name_next(he);
}

static void del_rm_done(hentry_t *he, int err)
{
    if (err) {
        he_name_failed(he, err);
        return;
    }
    he->e->gone = true;
    he->h->did = true;
    he_name_next(he);
}

static void del_rmdir_checked(void *ctx, hbatch_t *b)
{
    hentry_t *he = ctx;
    int st = st0(b);
    bool same = st >= 0 && kb_gfid_eq(&b->q[0].r.attr.gfid, &he->e->gfid);
    hb_free(b);
    if (absent(st)) {           /* moved away meanwhile (another heal renamed it) */
        he->e->gone = true;
        he_name_next(he);
    } else if (!same) {
        he_name_failed(he, st < 0 ? st : -ESTALE);
    } else {
        rm_tree(he, &he->h->gfid, he->e->name, &he->e->gfid, del_rm_done);
    }
}

static void del_remove(hentry_t *he)
{
    hent_t *e = he->e;
    kb_args_t a = { .gfid = he->h->gfid, .name = e->name };
    if (S_ISDIR(e->type)) {
        /* The tree is removed by gfid: first make sure that name still is
         * that directory here (a parallel heal may have moved it). */
        he_call(he, psnk(he), KB_FOP_LOOKUP, &a, del_rmdir_checked);
        return;
    }
    he_call(he, psnk(he), KB_FOP_UNLINK, &a, del_done);
}

static void del_renamed(void *ctx, hbatch_t *b)
{
    hentry_t *he = ctx;
    int st = st0(b);
    hb_free(b);
    if (st < 0) {
        del_remove(he);         /* could not move it: the other name is created from the source */
        return;
    }
    char gs[KB_GFID_STRLEN];
    kb_debug(hp(he->h)->xl->name, "entry heal of %s: '%s' renamed on child %d", kb_gfid_str(&he->h->gfid, gs),
             he->e->name, psnk(he));
    he->e->gone = true;
    he->h->did = true;
    he_name_next(he);
}

static void del_target(void *ctx, hbatch_t *b)
{
    hentry_t *he = ctx;
    int st = st0(b);
    bool there = st >= 0 && kb_gfid_eq(&b->q[0].r.attr.gfid, &he->e->gfid);
    hb_free(b);
    if (there && S_ISDIR(he->e->type)) {   /* already moved there: this name is history */
        he->e->gone = true;
        he_name_next(he);
        return;
    }
    if (!absent(st)) {          /* the new name is taken (or this is an extra link): drop ours */
        del_remove(he);
        return;
    }
    kb_args_t a = { .gfid = he->h->gfid, .name = he->e->name, .gfid2 = he->rparent, .name2 = he->cur };
    he_call(he, psnk(he), KB_FOP_RENAME, &a, del_renamed);
}

static void del_resolved(hentry_t *he, int err)
{
    if (err) {
        del_remove(he);
        return;
    }
    kb_args_t a = { .gfid = he->rparent, .name = he->cur };
    he_call(he, psnk(he), KB_FOP_LOOKUP, &a, del_target);
}

static void del_path(void *ctx, hbatch_t *b)
{
    hentry_t *he = ctx;
    kb_reply_t r = b->err ? (kb_reply_t){ .status = b->err } : b->q[0].r;
    resolve(he, &r, del_resolved);
    hb_free(b);
}

static void del_looked(void *ctx, hbatch_t *b)
{
    hentry_t *he = ctx;
    int st = st0(b);
    /* A file unlinked on the source while open there is kept by gfid,
     * nameless, for the clients holding it (nlink 0; storage/posix
     * orphan.c): deleted, not renamed. */
    bool unlinked = st >= 0 && !S_ISDIR(b->q[0].r.attr.mode) && b->q[0].r.attr.nlink == 0;
    hb_free(b);
    if (absent(st) || unlinked) {   /* deleted on the source */
        del_remove(he);
        return;
    }
    if (st < 0) {
        he_name_failed(he, st);
        return;
    }
    kb_args_t a = { .gfid = he->e->gfid, .flags = KB_IPC_GFID_PATH };   /* renamed: where to? */
    he_call(he, psrc(he), KB_FOP_IPC, &a, del_path);
}

static void del_start(hentry_t *he)
{
    if (kb_gfid_is_null(&he->e->gfid)) {
        del_remove(he);
        return;
    }
    kb_args_t a = { .gfid = he->e->gfid };
    he_call(he, psrc(he), KB_FOP_LOOKUP, &a, del_looked);
}

/* ---------------- creations: names the sink lacks ---------------- */

static void cre_ok(hentry_t *he)
{
    he->h->did = true;
    he_name_next(he);
}

static void cre_check(void *ctx, hbatch_t *b)
{
    hentry_t *he = ctx;
    int st = st0(b);
    bool same = st >= 0 && kb_gfid_eq(&b->q[0].r.attr.gfid, &he->e->gfid);
    hb_free(b);
    if (same)
        cre_ok(he);             /* someone (another healer, a rename) put it there */
    else
        he_name_failed(he, st < 0 ? st : -EEXIST);
}

static void cre_linked(void *ctx, hbatch_t *b)
{
    hentry_t *he = ctx;
    int st = st0(b);
    hb_free(b);
    if (st == -EEXIST) {
        kb_args_t a = { .gfid = he->h->gfid, .name = he->e->name };
        he_call(he, psnk(he), KB_FOP_LOOKUP, &a, cre_check);
        return;
    }
    if (st < 0) {
        he_name_failed(he, st);
        return;
    }
    cre_ok(he);
}

static void cre_marked(void *ctx, hbatch_t *b)
{
    hentry_t *he = ctx;
    int st = st0(b);
    hb_free(b);
    if (st < 0) {
        he_name_failed(he, st);
        return;
    }
    /* Full: the new copy is empty, whatever the source's region map says. */
    heal_enqueue(he->h->hs, &he->e->gfid, HQ_FORCE | (S_ISREG(he->sattr.mode) ? HQ_FULL : 0));
    cre_ok(he);
}

static void cre_made(void *ctx, hbatch_t *b)
{
    hentry_t *he = ctx;
    int st = st0(b);
    hb_free(b);
    if (st == -EEXIST) {
        kb_args_t a = { .gfid = he->h->gfid, .name = he->e->name };
        he_call(he, psnk(he), KB_FOP_LOOKUP, &a, cre_check);
        return;
    }
    if (st < 0) {
        he_name_failed(he, st);
        return;
    }
    /* The new copy is empty / bare: the source now blames it, so its own
     * heal (queued here, or the next sweep's) fills it in. */
    uint32_t t = he->sattr.mode & S_IFMT, cols = REPL_COL(KB_CL_META);
    if (S_ISDIR(t))
        cols |= REPL_COL(KB_CL_ENTRY);
    else if (S_ISREG(t) && he->sattr.size > 0 &&
             (repl_data_children(&hp(he->h)->cfg) & REPL_BIT(psnk(he))))
        cols |= REPL_COL(KB_CL_DATA);       /* (an arbiter holds no data: nothing to owe it) */
    hbatch_t *mb = he_batch(he, 1);
    if (!mb)
        return;
    heal_mark_add(he->h, mb, psrc(he), &he->e->gfid, cols, REPL_BIT(psnk(he)));
    hb_go(mb, cre_marked, he);
}

static void cre_new(hentry_t *he, kb_op_t op, const char *target)
{
    const kb_iatt_t *sa = &he->sattr;
    uint32_t t = sa->mode & S_IFMT;
    kb_args_t a = { .gfid = he->h->gfid, .name = he->e->name, .newgfid = he->e->gfid,
                    .mode = sa->mode & 07777 };
    if (op == KB_FOP_MKNOD) {
        a.mode |= t;
        a.rdev = sa->rdev;
    } else if (op == KB_FOP_SYMLINK) {
        a.name2 = (char *)target;
    }
    hbatch_t *b = he_batch(he, 1);
    if (!b)
        return;
    b->cred.uid = sa->uid;      /* the brick gives the caller's ownership */
    b->cred.gid = sa->gid;
    hb_add(b, psnk(he), op, &a);
    hb_go(b, cre_made, he);
}

static void cre_target(void *ctx, hbatch_t *b)
{
    hentry_t *he = ctx;
    int st = st0(b);
    if (st < 0 || !b->q[0].r.data) {
        hb_free(b);
        he_name_failed(he, st < 0 ? st : -EIO);
        return;
    }
    const kb_buf_t *d = b->q[0].r.data;
    char *target = strndup(d->data, d->len);
    hb_free(b);
    if (!target) {
        he_name_failed(he, -ENOMEM);
        return;
    }
    cre_new(he, KB_FOP_SYMLINK, target);
    free(target);
}

static void cre_dir_moved(void *ctx, hbatch_t *b)
{
    hentry_t *he = ctx;
    int st = st0(b);
    hb_free(b);
    if (st < 0) {
        he_name_failed(he, st);
        return;
    }
    cre_ok(he);
}

static void cre_dir_resolved(hentry_t *he, int err)
{
    if (err) {
        he_name_failed(he, err);
        return;
    }
    kb_args_t a = { .gfid = he->rparent, .name = he->cur, .gfid2 = he->h->gfid, .name2 = he->e->name };
    he_call(he, psnk(he), KB_FOP_RENAME, &a, cre_dir_moved);
}

static void cre_dir_path(void *ctx, hbatch_t *b)
{
    hentry_t *he = ctx;
    kb_reply_t r = b->err ? (kb_reply_t){ .status = b->err } : b->q[0].r;
    resolve(he, &r, cre_dir_resolved);
    hb_free(b);
}

static void cre_looked(void *ctx, hbatch_t *b)
{
    hentry_t *he = ctx;
    hreq_t *qs = hb_find(b, psrc(he), KB_FOP_LOOKUP, 0), *qk = hb_find(b, psnk(he), KB_FOP_LOOKUP, 0);
    int ss = b->err ? b->err : qs ? qs->r.status : -EIO, ks = b->err ? b->err : qk ? qk->r.status : -EIO;
    if (ss >= 0)
        he->sattr = qs->r.attr;
    hb_free(b);
    if (absent(ss)) {           /* gone from the source meanwhile: nothing to create */
        he_name_next(he);
        return;
    }
    if (ss < 0 || (ks < 0 && !absent(ks))) {
        he_name_failed(he, ss < 0 ? ss : ks);
        return;
    }
    uint32_t t = he->sattr.mode & S_IFMT;
    if (ks >= 0) {              /* the sink has it under another name */
        if (S_ISDIR(t)) {
            kb_args_t a = { .gfid = he->e->gfid, .flags = KB_IPC_GFID_PATH };
            he_call(he, psnk(he), KB_FOP_IPC, &a, cre_dir_path);
        } else {
            kb_args_t a = { .gfid = he->e->gfid, .gfid2 = he->h->gfid, .name2 = he->e->name };
            he_call(he, psnk(he), KB_FOP_LINK, &a, cre_linked);
        }
        return;
    }
    if (S_ISDIR(t)) {
        cre_new(he, KB_FOP_MKDIR, NULL);
    } else if (S_ISLNK(t)) {
        kb_args_t a = { .gfid = he->e->gfid };
        he_call(he, psrc(he), KB_FOP_READLINK, &a, cre_target);
    } else {
        cre_new(he, KB_FOP_MKNOD, NULL);
    }
}

static void cre_start(hentry_t *he)
{
    hbatch_t *b = he_batch(he, 2);
    if (!b)
        return;
    kb_args_t a = { .gfid = he->e->gfid };
    hb_add(b, psrc(he), KB_FOP_LOOKUP, &a);
    hb_add(b, psnk(he), KB_FOP_LOOKUP, &a);
    hb_go(b, cre_looked, he);
}

/* ---------------- walking the names ---------------- */

static void he_name_step(void *arg)
{
    hentry_t *he = arg;
    int s = psrc(he), k = psnk(he);
    hlist_t *src = &he->list[s], *snk = &he->list[k];
    if (he->phase == 0) {
        while (he->idx < snk->n) {
            hent_t *e = &snk->e[he->idx++];
            if (e->gone)
                continue;
            hent_t *se = hlist_find(src, e->name);
            if (se && !se->gone && kb_gfid_eq(&se->gfid, &e->gfid))
                continue;
            he->e = e;
            del_start(he);
            return;
        }
        he->phase = 1;
        he->idx = 0;
    }
    while (he->idx < src->n) {
        hent_t *e = &src->e[he->idx++];
        if (e->gone || kb_gfid_is_null(&e->gfid))
            continue;
        hent_t *ke = hlist_find(snk, e->name);
        if (ke && !ke->gone) {
            if (!kb_gfid_eq(&ke->gfid, &e->gfid) && he->merge)
                kb_warn(hp(he->h)->xl->name, "entry heal: '%s' names different objects on children %d "
                        "and %d; left as is", e->name, s, k);
            continue;
        }
        he->e = e;
        cre_start(he);
        return;
    }
    he->pair++;
    he_pairs_next(he);
}

/* Every caller is a batch continuation: this never nests deeper. */
static void he_name_next(hentry_t *he)
{
    he->e = NULL;
    he_name_step(he);
}

static void he_cleared(void *ctx, hbatch_t *b)
{
    hentry_t *he = ctx;
    int err = b->err;
    for (int k = 0; k < b->n && !err; k++)
        if (b->q[k].r.status < 0)
            err = b->q[k].r.status;
    hb_free(b);
    he_end(he, err ? err : he->failed ? -EIO : 0);
}

static void he_pairs_next(hentry_t *he)
{
    repl_priv_t *p = hp(he->h);
    while (he->pair < he->npairs && !(p->up & REPL_BIT(psnk(he)) && p->up & REPL_BIT(psrc(he)))) {
        he->failed |= REPL_BIT(psnk(he));
        he->pair++;
    }
    if (he->pair < he->npairs) {
        he->phase = he->merge ? 1 : 0;
        he->idx = 0;
        he_name_step(he);
        return;
    }
    if (he->merge && he->failed) {      /* the copies still differ: the dirty marks stay */
        he_end(he, -EIO);
        return;
    }
    repl_mask_t H = he->merge ? he->P : he->pl.S | REPL_BIT(he->pl.src) | (he->pl.K & ~he->failed);
    hbatch_t *b = he_batch(he, p->n);
    if (!b)
        return;
    heal_clear_add(he->h, b, KB_CL_ENTRY, H, he->m, he->pl.R);
    hb_go(b, he_cleared, he);
}

/* ---------------- listing ---------------- */

static void he_list_next(hentry_t *he);

static void he_listed(void *ctx, int err)
{
    hentry_t *he = ctx;
    if (err) {
        he_end(he, err);
        return;
    }
    hlist_sort(&he->list[he->ld.child]);
    he_list_next(he);
}

static void he_list_next(hentry_t *he)
{
    int c = repl_first(he->lmask);
    if (c >= 0) {
        he->lmask &= ~REPL_BIT(c);
        he->ld = (hlistdir_t){ .hs = he->h->hs, .child = c, .gfid = he->h->gfid, .req = he->h->req,
                               .out = &he->list[c], .cont = he_listed, .ctx = he };
        heal_listdir(&he->ld);
        return;
    }
    he->pair = 0;
    he_pairs_next(he);
}

static void he_snapped(void *ctx, hbatch_t *b)
{
    hentry_t *he = ctx;
    hobj_t *h = he->h;
    int rc = heal_snap_read(h, b, he->lk.want);
    hb_free(b);
    if (!rc)
        rc = heal_plan(h, KB_CL_ENTRY, &he->pl);
    if (rc == -EIO && h->split)
        rc = 0;
    if (rc || he->pl.src < 0) {
        he_end(he, rc);
        return;
    }
    memcpy(he->m, h->m, sizeof(he->m));
    he->merge = he->pl.cmp;
    he->P = he->pl.K | REPL_BIT(he->pl.src);
    if (he->merge)
        he->P |= he->pl.S;
    for (int s = 0; s < hp(h)->n; s++)
        for (int k = 0; k < hp(h)->n; k++) {
            bool pair = he->merge ? s != k && (he->P & REPL_BIT(s)) && (he->P & REPL_BIT(k))
                                  : s == he->pl.src && (he->pl.K & REPL_BIT(k));
            if (pair) {
                he->pairs[he->npairs].s = (int8_t)s;
                he->pairs[he->npairs++].k = (int8_t)k;
            }
        }
    char gs[KB_GFID_STRLEN];
    kb_info(hp(h)->xl->name, "entry heal of %s from child %d to 0x%x%s", kb_gfid_str(&h->gfid, gs),
            he->pl.src, he->pl.K, he->merge ? " (merge: no removals)" : "");
    he->lmask = he->P;
    he_list_next(he);
}

static void he_locked(void *ctx, int err)
{
    hentry_t *he = ctx;
    hobj_t *h = he->h;
    if (err) {                  /* nothing is held */
        he->err = err;
        he_end2(he, 0);
        return;
    }
    hbatch_t *b = he_batch(he, 2 * hp(h)->n);
    if (!b)
        return;
    heal_snap_add(h, b, he->lk.want);
    hb_go(b, he_snapped, he);
}

void heal_entry(hobj_t *h, hkind_done_fn done)
{
    hentry_t *he = kb_zalloc(sizeof(*he));
    if (!he) {
        done(h, -ENOMEM);
        return;
    }
    he->h = h;
    he->done = done;
    h->kctx = he;
    h->kfree = he_free;
    he->lk = (hlock_t){
        .hs = h->hs, .op = KB_FOP_ENTRYLK, .gfid = h->gfid, .dom = REPL_DOM_ENTRY,
        .owner = h->owner, .req = h->req, .blocking = true, .want = h->present & hp(h)->up,
        .cont = he_locked, .ctx = he,
    };
    hlock_take(&he->lk);
}
