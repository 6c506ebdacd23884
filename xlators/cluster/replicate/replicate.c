/*
 * replicate.c — cluster/replicate: synchronous mirroring (DESIGN §5).
 *
 * This file holds the translator descriptor, its options, CHILD_UP/DOWN
 * handling, the per-inode cache of changelog views, the fd table, and the
 * one fan-out shape every other replicate file uses. The fops themselves are
 * in {txn,write,read,fd}.c; every decision is in policy.c.
 *
 * Promises
 *  - Every call completes exactly once (repl_op_reply is the only exit).
 *  - A modification reaches every up child with the same args (same newgfid)
 *    and is acknowledged when all answered, if the quorum of successes holds;
 *    survivors carry changelog marks against every child that missed it
 *    before the application sees success (txn.c).
 *  - Reads go to one copy nobody blames, never to the arbiter, and retry on
 *    another copy on disconnect / EIO (read.c).
 *  - Split-brain (copies blaming each other, differing gfids) gives -EIO.
 *  - Sends CHILD_UP upward when quorum holds with the children up (any child
 *    with quorum-type none), CHILD_DOWN when no child is up.
 */
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <event2/event.h>
#include "lib/log.h"
#include "rpc/wire.h"
#include "xlators/cluster/replicate/replicate.h"
#include "xlators/cluster/replicate/heal.h"

const kb_option_def_t repl_option_defs[] = {
    { "quorum-type", "cluster.quorum-type", KB_OPT_ENUM, "auto", 0, 0, "none|auto|fixed",
      "Successes a modification needs: auto = majority (replica 2: both, or the first), "
      "fixed = quorum-count, none = any one (replica 2 allowed to diverge: split-brain risk)" },
    { "quorum-count", "cluster.quorum-count", KB_OPT_INT, "0", 0, KB_CL_MAX_REPLICA, NULL,
      "Successes needed with quorum-type fixed" },
    { "arbiter-count", NULL, KB_OPT_INT, "0", 0, 1, NULL,
      "1: the last brick of the set is an arbiter (names, metadata and marks; no data)" },
    { "eager-lock", "cluster.eager-lock", KB_OPT_BOOL, "on", 0, 0, NULL,
      "Keep the data lock and dirty mark while this client keeps writing a file, so "
      "steady writes cost no extra lock or changelog round trip" },
    { "eager-lock-idle-ms", "cluster.eager-lock-idle", KB_OPT_INT, "100", 0, 60000, NULL,
      "Milliseconds without writes after which an eager data lock is released" },
    { "favorite-child-policy", "cluster.favorite-child-policy", KB_OPT_ENUM, "none", 0, 0,
      "none|latest-mtime|bigger-file|majority",
      "How heal resolves a split-brain by itself (none: never, report it)" },
    { "read-hash-mode", "cluster.read-hash-mode", KB_OPT_INT, "1", 0, 1, NULL,
      "Read child: 0 = first readable copy, 1 = spread files over copies by gfid hash" },
    { "choose-local", "cluster.choose-local", KB_OPT_BOOL, "on", 0, 0, NULL,
      "Read file data from a copy on this host when it is readable (read-hash-mode then "
      "chooses among the local copies only)" },
    /* self-heal daemon graphs (heal.h) */
    { "self-heal-daemon", NULL, KB_OPT_BOOL, "off", 0, 0, NULL,
      "This replicate is kembard's heal daemon: sweep the index, heal" },
    { "heal-children", NULL, KB_OPT_STR, "", 0, 0, NULL,
      "Comma list of child indices whose index this daemon sweeps (empty: all)" },
    { "heal-interval", "cluster.heal-interval", KB_OPT_TIME, "60", 1000, 86400000, NULL,
      "Seconds between periodic heal sweeps" },
    { "heal-parallel", "cluster.heal-parallel", KB_OPT_INT, "4", 1, 64, NULL,
      "Files healed at once by the heal daemon" },
    { NULL },
};

/* ---------------- fan-out ---------------- */

repl_fan_t *repl_fan_new(repl_priv_t *p, int parts, kb_op_t op, const kb_args_t *tmpl,
                         const kb_cred_t *cred, uint64_t req, repl_fan_fn finish, void *ctx)
{
    int ns = parts * p->n;
    repl_fan_t *f = kb_zalloc(sizeof(*f) + (size_t)ns * sizeof(kb_args_t));
    if (!f)
        return NULL;
    f->priv = p;
    f->pending = 1;                 /* the guard: dropped by repl_fan_go */
    f->nslots = ns;
    f->op[0] = f->op[1] = op;
    f->finish = finish;
    f->ctx = ctx;
    f->cred = cred ? cred : &p->icred;
    f->req = req;
    for (int s = 0; s < ns; s++) {
        f->slot[s].fan = f;
        f->slot[s].slot = s;
        f->status[s] = -ENOTCONN;
        if (tmpl)
            f->args[s] = *tmpl;
    }
    return f;
}

static void fan_put(repl_fan_t *f)
{
    if (--f->pending > 0)
        return;
    f->finish(f);
    kb_buf_unref(f->hold[0]);
    kb_buf_unref(f->hold[1]);
    free(f);
}

static void fan_cbk(void *cookie, const kb_reply_t *r)
{
    struct repl_fan_slot *sl = cookie;
    repl_fan_t *f = sl->fan;
    int part = sl->slot / f->priv->n, i = sl->slot % f->priv->n;
    f->status[sl->slot] = r->status;
    f->rflags |= r->rflags;
    if (f->op[part] == KB_FOP_XATTROP && f->cl_ino[part])
        repl_inode_set_cl(f->priv, f->cl_ino[part], i, r);
    if (f->on_reply)
        f->on_reply(f, sl->slot, r);
    fan_put(f);
}

void repl_fan_wind(repl_fan_t *f, int slot)
{
    repl_priv_t *p = f->priv;
    int part = slot / p->n, i = slot % p->n;
    f->sent[part] |= REPL_BIT(i);
    f->pending++;
    kb_wind(p->xl->children[i], f->op[part], &f->args[slot], f->cred, f->req, fan_cbk,
            &f->slot[slot]);
}

void repl_fan_go(repl_fan_t *f)
{
    fan_put(f);
}

void repl_fan_send(repl_fan_t *f, repl_mask_t mask)
{
    for (int i = 0; i < f->priv->n; i++)
        if (mask & REPL_BIT(i))
            repl_fan_wind(f, i);
    repl_fan_go(f);
}

void repl_fan_drop(repl_fan_t *f)
{
    if (!f)
        return;
    kb_buf_unref(f->hold[0]);
    kb_buf_unref(f->hold[1]);
    free(f);
}

repl_mask_t repl_fan_ok(const repl_fan_t *f, int part)
{
    repl_mask_t ok = 0;
    int n = f->priv->n;
    for (int i = 0; i < n; i++)
        if ((f->sent[part] & REPL_BIT(i)) && f->status[part * n + i] >= 0)
            ok |= REPL_BIT(i);
    return ok;
}

/* ---------------- changelog fans ---------------- */

void repl_fan_set_xop(repl_fan_t *f, int part, repl_inode_t *ino, kb_buf_t *payload, uint32_t flags)
{
    repl_priv_t *p = f->priv;
    kb_buf_unref(f->hold[part]);
    f->hold[part] = payload;
    f->op[part] = KB_FOP_XATTROP;
    f->cl_ino[part] = ino;
    for (int i = 0; i < p->n; i++) {
        kb_args_t *a = &f->args[part * p->n + i];
        memset(a, 0, sizeof(*a));
        a->gfid = ino->gfid;
        a->name = (char *)KB_CL_XATTR;      /* borrowed; never freed by a shallow copy */
        a->flags = flags;
        a->data = payload;
    }
}

int repl_fan_set_cl(repl_fan_t *f, int part, repl_inode_t *ino, const kb_cl_matrix_t *delta)
{
    repl_priv_t *p = f->priv;
    kb_buf_t *b;
    if (delta) {
        if (!(b = kb_buf_new(KB_CL_MATRIX_BYTES)))
            return -ENOMEM;
        kb_cl_encode(delta, (uint8_t *)b->data);
        b->len = KB_CL_MATRIX_BYTES;
    } else {
        b = kb_buf_ref(p->zero_cl);
    }
    repl_fan_set_xop(f, part, ino, b, delta ? KB_XOP_ADD : KB_XOP_GET);
    return 0;
}

repl_fan_t *repl_cl_fan(repl_priv_t *p, repl_inode_t *ino, const kb_cl_matrix_t *delta,
                        repl_fan_fn finish, void *ctx)
{
    repl_fan_t *f = repl_fan_new(p, 1, KB_FOP_XATTROP, NULL, &p->icred, 0, finish, ctx);
    if (f && repl_fan_set_cl(f, 0, ino, delta)) {
        free(f);
        return NULL;
    }
    return f;
}

static void refresh_done(repl_fan_t *f)
{
    repl_op_t *op = f->ctx;
    repl_inode_fetched(f->priv, op->rino);
    op->cont(op);
}

void repl_refresh(repl_op_t *op, repl_inode_t *ino, repl_mask_t mask, repl_op_fn cont)
{
    repl_priv_t *p = op->priv;
    op->rino = ino;
    op->cont = cont;
    repl_fan_t *f = repl_cl_fan(p, ino, NULL, refresh_done, op);
    if (!f) {
        repl_op_fail(op, -ENOMEM);
        return;
    }
    f->req = op->req;
    mask &= p->up;
    repl_fan_send(f, mask);
}

/* ---------------- inodes ---------------- */

static size_t ino_bucket(const repl_priv_t *p, const kb_gfid_t *g)
{
    return kb_gfid_hash(g) % p->nbuckets;
}

static void lru_del(repl_priv_t *p, repl_inode_t *ino)
{
    if (!ino->in_lru)
        return;
    if (ino->lru_prev)
        ino->lru_prev->lru_next = ino->lru_next;
    else
        p->lru_head = ino->lru_next;
    if (ino->lru_next)
        ino->lru_next->lru_prev = ino->lru_prev;
    else
        p->lru_tail = ino->lru_prev;
    ino->lru_prev = ino->lru_next = NULL;
    ino->in_lru = false;
    p->nlru--;
}

static void ino_unhash_free(repl_priv_t *p, repl_inode_t *ino)
{
    repl_inode_t **pp = &p->buckets[ino_bucket(p, &ino->gfid)];
    while (*pp && *pp != ino)
        pp = &(*pp)->hnext;
    if (*pp)
        *pp = ino->hnext;
    p->ninodes--;
    assert(!ino->chk_cur && !ino->chk_fan);   /* each holds a ref (read.c) */
    free(ino);
}

repl_inode_t *repl_inode_get(repl_priv_t *p, const kb_gfid_t *g)
{
    size_t b = ino_bucket(p, g);
    for (repl_inode_t *ino = p->buckets[b]; ino; ino = ino->hnext)
        if (kb_gfid_eq(&ino->gfid, g)) {
            lru_del(p, ino);
            ino->refs++;
            return ino;
        }
    repl_inode_t *ino = kb_zalloc(sizeof(*ino) + (size_t)p->n * sizeof(kb_cl_matrix_t));
    if (!ino)
        return NULL;
    ino->gfid = *g;
    ino->refs = 1;
    ino->hnext = p->buckets[b];
    p->buckets[b] = ino;
    p->ninodes++;
    return ino;
}

repl_inode_t *repl_inode_ref(repl_inode_t *ino)
{
    if (ino)
        ino->refs++;
    return ino;
}

void repl_inode_unref(repl_priv_t *p, repl_inode_t *ino)
{
    if (!ino || --ino->refs > 0)
        return;
    /* Unreferenced: keep the cached view (LRU), evict the oldest beyond the cap. */
    ino->in_lru = true;
    ino->lru_prev = p->lru_tail;
    ino->lru_next = NULL;
    if (p->lru_tail)
        p->lru_tail->lru_next = ino;
    else
        p->lru_head = ino;
    p->lru_tail = ino;
    p->nlru++;
    while (p->nlru > REPL_INODE_CACHE) {
        repl_inode_t *old = p->lru_head;
        lru_del(p, old);
        ino_unhash_free(p, old);
    }
}

bool repl_inode_fresh(const repl_priv_t *p, const repl_inode_t *ino)
{
    return ino->state_gen == p->state_gen && kb_now_ms() - ino->fetched_ms < REPL_STATE_TTL_MS;
}

void repl_inode_fetched(repl_priv_t *p, repl_inode_t *ino)
{
    ino->state_gen = p->state_gen;
    ino->fetched_ms = kb_now_ms();
}

void repl_inode_set_cl(repl_priv_t *p, repl_inode_t *ino, int i, const kb_reply_t *r)
{
    if (r->status >= 0 && r->data && r->data->len >= KB_CL_MATRIX_BYTES) {
        kb_cl_decode((const uint8_t *)r->data->data, &ino->m[i]);
        ino->have |= REPL_BIT(i);
    } else if (r->status == -ENOENT || r->status == -ESTALE) {
        ino->have &= ~REPL_BIT(i);      /* the object is not there: not a copy */
    }
}

void repl_inode_blame(const repl_priv_t *p, const repl_inode_t *ino, int col, repl_blame_t *b)
{
    repl_blame_analyze(&p->cfg, ino->m, ino->have, col, b);
}

void repl_inode_set_new(repl_priv_t *p, repl_inode_t *ino, repl_mask_t ok, uint32_t type)
{
    for (int i = 0; i < p->n; i++)
        if (ok & REPL_BIT(i))
            memset(&ino->m[i], 0, sizeof(ino->m[i]));
    ino->have = ok;
    ino->type = type & S_IFMT;
    repl_inode_fetched(p, ino);
}

/* ---------------- fds ---------------- */

repl_fd_t *repl_fd_new(repl_priv_t *p, repl_inode_t *ino, uint32_t flags, bool dir)
{
    repl_fd_t *fd = kb_zalloc(sizeof(*fd));
    if (!fd)
        return NULL;
    fd->magic = REPL_FD_MAGIC;
    fd->priv = p;
    fd->ino = repl_inode_ref(ino);
    ino->nfds++;
    fd->flags = flags & ~(uint32_t)(O_CREAT | O_EXCL | O_TRUNC);
    fd->dir = dir;
    fd->rd_child = -1;
    fd->next = p->fds;
    if (p->fds)
        p->fds->prev = fd;
    p->fds = fd;
    return fd;
}

repl_fd_t *repl_fd_from(repl_priv_t *p, uint64_t num)
{
    repl_fd_t *fd = (repl_fd_t *)(uintptr_t)num;
    if (!fd || ((uintptr_t)fd & 7) || fd->magic != REPL_FD_MAGIC || fd->priv != p)
        return NULL;
    return fd;
}

void repl_fd_free(repl_fd_t *fd)
{
    repl_priv_t *p = fd->priv;
    if (fd->prev)
        fd->prev->next = fd->next;
    else
        p->fds = fd->next;
    if (fd->next)
        fd->next->prev = fd->prev;
    fd->ino->nfds--;
    repl_inode_unref(p, fd->ino);
    kb_lklog_free(&fd->lk);
    fd->magic = 0;
    free(fd);
}

/* ---------------- ops ---------------- */

repl_op_t *repl_op_new(repl_priv_t *p, kb_call_t *call)
{
    repl_op_t *op = kb_zalloc(sizeof(*op));
    if (!op)
        return NULL;
    op->priv = p;
    op->call = call;
    op->keep_idx = -1;
    op->child = -1;
    if (call) {
        op->fop = call->op;
        op->args = call->args;
        op->cred = call->cred;
        op->req = call->req_id;
    } else {
        op->args = &op->own;
        op->cred = p->icred;
    }
    return op;
}

void repl_op_keep(repl_op_t *op, int i, const kb_reply_t *r)
{
    if (r->status < 0 || (op->keep_idx >= 0 && op->keep_idx <= i))
        return;
    kb_reply_clear(&op->reply);
    if (kb_reply_copy(&op->reply, r)) {
        memset(&op->reply, 0, sizeof(op->reply));
        op->keep_idx = -1;
        return;
    }
    op->keep_idx = i;
}

void repl_op_reply(repl_op_t *op, const kb_reply_t *r)
{
    if (op->call)
        kb_unwind(op->call, r);
    else if (op->done)
        op->done(op, r);
    repl_priv_t *p = op->priv;
    kb_reply_clear(&op->reply);
    repl_inode_unref(p, op->ino);
    repl_inode_unref(p, op->ino2);
    free(op->lattr);
    free(op);
}

void repl_op_fail(repl_op_t *op, int err)
{
    kb_reply_t r = { .status = err };
    repl_op_reply(op, &r);
}

/* ---------------- notify ---------------- */

static void child_event(repl_priv_t *p, int i, int event)
{
    repl_mask_t bit = REPL_BIT(i);
    if (event == KB_EV_CHILD_UP && !(p->up & bit)) {
        p->up |= bit;
        p->child_gen[i]++;
        p->state_gen++;          /* its opinion is unknown: every cached view is stale */
        if (kb_xlator_features(p->xl->children[i]) & KB_FEAT_XOP_LOCKED)
            p->xop_locked |= bit;
        else
            p->xop_locked &= ~bit;
        if (p->choose_local && kb_xlator_is_local(p->xl->children[i]))
            p->local |= bit;
        else
            p->local &= ~bit;
        repl_txn_child_event(p, i, true);
        kb_info(p->xl->name, "child %d (%s) is up", i, p->xl->children[i]->name);
    } else if (event == KB_EV_CHILD_DOWN && (p->up & bit)) {
        p->up &= ~bit;
        p->xop_locked &= ~bit;
        p->local &= ~bit;
        for (repl_fd_t *fd = p->fds; fd; fd = fd->next)
            fd->opened &= ~bit;  /* its fds died with the connection */
        repl_txn_child_event(p, i, false);
        kb_warn(p->xl->name, "child %d (%s) is down", i, p->xl->children[i]->name);
    }
}

static void repl_notify(kb_xlator_t *xl, int event, kb_xlator_t *child)
{
    repl_priv_t *p = xl->priv;
    if (!child || !p) {
        kb_notify_default(xl, event, child);
        return;
    }
    int i = kb_xlator_child_index(xl, child);
    if (i < 0)
        return;
    bool was_up = p->up & REPL_BIT(i);
    child_event(p, i, event);
    if (!was_up && (p->up & REPL_BIT(i))) {
        repl_fd_child_up(p, i);
        repl_heal_child_up(p, i);
    }
    bool serve = p->cfg.quorum_type == REPL_Q_NONE ? p->up != 0 : repl_quorum_met(&p->cfg, p->up);
    if (serve && !xl->up)
        kb_notify_parents(xl, KB_EV_CHILD_UP);
    else if (!p->up && xl->up)
        kb_notify_parents(xl, KB_EV_CHILD_DOWN);
}

/* ---------------- init / fini / ctl ---------------- */

static int quorum_type_of(const char *s)
{
    return !strcmp(s, "none") ? REPL_Q_NONE : !strcmp(s, "fixed") ? REPL_Q_FIXED : REPL_Q_AUTO;
}

static int fav_of(const char *s)
{
    return !strcmp(s, "latest-mtime") ? REPL_FAV_MTIME : !strcmp(s, "bigger-file") ? REPL_FAV_SIZE
         : !strcmp(s, "majority") ? REPL_FAV_MAJORITY : REPL_FAV_NONE;
}

/* "0,2" -> bits 0 and 2; empty or malformed entries: every child. */
static repl_mask_t heal_children_of(const char *s, int n)
{
    repl_mask_t m = 0;
    for (const char *c = s; c && *c;) {
        char *end;
        long i = strtol(c, &end, 10);
        if (end == c || i < 0 || i >= n)
            return (repl_mask_t)(REPL_BIT(n) - 1);
        m |= REPL_BIT(i);
        c = *end == ',' ? end + 1 : end;
        if (*end && *end != ',')
            return (repl_mask_t)(REPL_BIT(n) - 1);
    }
    return m ? m : (repl_mask_t)(REPL_BIT(n) - 1);
}

static int repl_init(kb_xlator_t *xl)
{
    const kb_option_set_t *o = xl->opts;
    int n = xl->nchildren;
    int arb = (int)kb_opt_int(o, repl_option_defs, "arbiter-count");
    if (n < 1 || n > KB_CL_MAX_REPLICA || (arb && n < 3)) {
        kb_err(xl->name, "needs 1..%d subvolumes (an arbiter needs 2 more), has %d",
               KB_CL_MAX_REPLICA, n);
        return -EINVAL;
    }
    repl_priv_t *p = kb_zalloc(sizeof(*p));
    if (!p)
        return -ENOMEM;
    p->xl = xl;
    p->n = n;
    p->cfg = (repl_cfg_t){
        .n = n, .arbiter = arb ? n - 1 : -1,
        .quorum_type = quorum_type_of(kb_opt_str(o, repl_option_defs, "quorum-type")),
        .quorum_count = (int)kb_opt_int(o, repl_option_defs, "quorum-count"),
    };
    p->eager = kb_opt_bool(o, repl_option_defs, "eager-lock");
    p->idle_ms = (uint32_t)kb_opt_int(o, repl_option_defs, "eager-lock-idle-ms");
    p->read_mode = (int)kb_opt_int(o, repl_option_defs, "read-hash-mode");
    p->choose_local = kb_opt_bool(o, repl_option_defs, "choose-local");
    p->nocheck = repl_always_written(&p->cfg);
    p->fav_policy = fav_of(kb_opt_str(o, repl_option_defs, "favorite-child-policy"));
    p->shd = kb_opt_bool(o, repl_option_defs, "self-heal-daemon");
    p->heal_interval_ms = (uint32_t)kb_opt_time_ms(o, repl_option_defs, "heal-interval");
    p->heal_parallel = (int)kb_opt_int(o, repl_option_defs, "heal-parallel");
    p->heal_children = heal_children_of(kb_opt_str(o, repl_option_defs, "heal-children"), n);
    p->state_gen = 1;
    p->nbuckets = 1024;
    p->buckets = calloc(p->nbuckets, sizeof(*p->buckets));
    p->zero_cl = kb_buf_new(KB_CL_MATRIX_BYTES);
    kb_gfid_t seed;
    kb_gfid_generate(&seed);
    memcpy(&p->owner_base, seed.b, sizeof(p->owner_base));
    if (!p->buckets || !p->zero_cl) {
        free(p->buckets);
        kb_buf_unref(p->zero_cl);
        free(p);
        return -ENOMEM;
    }
    memset(p->zero_cl->data, 0, KB_CL_MATRIX_BYTES);
    p->zero_cl->len = KB_CL_MATRIX_BYTES;
    xl->priv = p;
    int rc = repl_heal_init(p);
    if (rc) {
        xl->priv = NULL;
        free(p->buckets);
        kb_buf_unref(p->zero_cl);
        free(p);
    }
    return rc;
}

static void repl_fini(kb_xlator_t *xl)
{
    repl_priv_t *p = xl->priv;
    if (!p)
        return;
    repl_heal_fini(p);
    repl_txn_fini(p);
    while (p->fds)
        repl_fd_free(p->fds);
    for (size_t b = 0; b < p->nbuckets; b++)
        while (p->buckets[b]) {
            repl_inode_t *ino = p->buckets[b];
            p->buckets[b] = ino->hnext;
            repl_fan_drop(ino->chk_fan);    /* only if torn down with reads in flight */
            free(ino);
        }
    free(p->buckets);
    kb_buf_unref(p->zero_cl);
    free(p);
    xl->priv = NULL;
}

static int repl_ctl(kb_xlator_t *xl, int code, void *arg)
{
    repl_priv_t *p = xl->priv;
    if (!p)
        return -ENOSYS;
    if (code >= KB_CTL_HEAL_SWEEP && code <= KB_CTL_HEAL_RESOLVE)
        return repl_heal_ctl(p, code, arg);
    if (code != KB_CTL_STATUS)
        return -ENOSYS;
    struct kb_ctl_status *st = arg;
    kb_ctl_printf(st, "%s: replicate %d%s, up 0x%x, quorum %s\n", xl->name, p->n,
                  p->cfg.arbiter >= 0 ? " (arbiter)" : "", p->up,
                  repl_quorum_met(&p->cfg, p->up) ? "met" : "LOST");
    kb_ctl_printf(st, "  locks %llu (%llu with their pre-op, %llu with their create), pre-ops %llu, post-ops %llu, "
                  "marks %llu, unlocks %llu, resends %llu, reopens %llu, read retries %llu, cached inodes %zu\n",
                  (unsigned long long)p->st.locks, (unsigned long long)p->st.combined,
                  (unsigned long long)p->st.primed,
                  (unsigned long long)p->st.preops,
                  (unsigned long long)p->st.postops, (unsigned long long)p->st.marks,
                  (unsigned long long)p->st.unlocks, (unsigned long long)p->st.resends,
                  (unsigned long long)p->st.reopens, (unsigned long long)p->st.retries, p->ninodes);
    kb_ctl_printf(st, "  data reads %llu, checks %llu, local 0x%x, read unchecked 0x%x\n",
                  (unsigned long long)p->st.dreads, (unsigned long long)p->st.checks, p->local, p->nocheck);
    return 0;
}

const kb_xlator_type_t kb_xl_replicate = {
    .name = "cluster/replicate",
    .ops = {
        [KB_FOP_LOOKUP] = repl_lookup,
        [KB_FOP_STAT] = repl_read,
        [KB_FOP_READLINK] = repl_read,
        [KB_FOP_READ] = repl_read,
        [KB_FOP_READDIR] = repl_read,
        [KB_FOP_STATFS] = repl_read,
        [KB_FOP_GETXATTR] = repl_read,
        [KB_FOP_LISTXATTR] = repl_read,
        [KB_FOP_LSEEK] = repl_read,
        [KB_FOP_RCHECKSUM] = repl_read,
        [KB_FOP_SETATTR] = repl_modify,
        [KB_FOP_TRUNCATE] = repl_modify,
        [KB_FOP_MKNOD] = repl_modify,
        [KB_FOP_MKDIR] = repl_modify,
        [KB_FOP_UNLINK] = repl_modify,
        [KB_FOP_RMDIR] = repl_modify,
        [KB_FOP_SYMLINK] = repl_modify,
        [KB_FOP_RENAME] = repl_modify,
        [KB_FOP_LINK] = repl_modify,
        [KB_FOP_CREATE] = repl_modify,
        [KB_FOP_WRITE] = repl_modify,
        [KB_FOP_SETXATTR] = repl_modify,
        [KB_FOP_REMOVEXATTR] = repl_modify,
        [KB_FOP_FALLOCATE] = repl_modify,
        [KB_FOP_OPEN] = repl_open,
        [KB_FOP_OPENDIR] = repl_open,
        [KB_FOP_FLUSH] = repl_flush,
        [KB_FOP_FSYNC] = repl_flush,
        [KB_FOP_FSYNCDIR] = repl_flush,
        [KB_FOP_RELEASE] = repl_release,
        [KB_FOP_RELEASEDIR] = repl_release,
        [KB_FOP_INODELK] = repl_lk,
        [KB_FOP_ENTRYLK] = repl_lk,
        [KB_FOP_LK] = repl_lk,
        [KB_FOP_XATTROP] = repl_xattrop,
        [KB_FOP_IPC] = repl_xattrop,
    },
    .local_size = 0,
    .init = repl_init,
    .fini = repl_fini,
    .notify = repl_notify,
    .options = repl_option_defs,
    .ctl = repl_ctl,
};
