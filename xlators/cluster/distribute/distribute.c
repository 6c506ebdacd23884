/*
 * distribute.c — cluster/distribute: spread the files of one namespace over
 * several replica sets (DESIGN §7). This file holds the type, the
 * dispatcher, notify, the caches, the fan-out machinery and the layout
 * fetch/heal; the ops live in entry.c, inode.c and dir.c (map in
 * distribute.h), the hash and layout arithmetic in layout.c.
 *
 * What it promises
 *  - With one child it is a pure pass-through (kb_pass for every op).
 *  - Directories exist on every set with one gfid; a file lives on one set,
 *    normally the one its name hashes to in its directory's layout.
 *  - Every call completes exactly once; fan-outs arm their count before
 *    the first wind (+1 guard) and finish on the last reply (STYLE 4).
 *
 * Choices (and what was rejected)
 *  - Rename of a file whose new name hashes to another set renames it in
 *    place on its set (option (b) of the design discussion): the name is
 *    then "misplaced", found by the lookup fallback (a miss on the hashed
 *    set looks on every set) and remembered in a small hint cache; a later
 *    rebalance moves it home. Linkto pointer files (GlusterFS) were
 *    rejected: they make the hashed set authoritative for misses, but need
 *    a second object per rename, unlink of both, and their own heal. With
 *    the fallback a file is never duplicated or lost by a rename: it is
 *    renamed by one brick operation on one set.
 *  - A negative lookup while some set is unreachable answers -ENOTCONN, not
 *    -ENOENT: the name might live misplaced on the missing set, and a
 *    create after a false ENOENT would duplicate it.
 *  - Layouts: each set's copy of a directory stores that set's own range
 *    (layout.h). mkdir writes an even layout over the sets where the
 *    directory was made; a set that was down gets no range there until a
 *    fix-layout. A layout found incomplete while every set is up is healed
 *    (re-laid out keeping names in place) and written back.
 *  - Directory metadata ops go to every up set; reads of a directory to the
 *    lowest up set; locks on a directory (inodelk, entrylk, xattrop, ipc)
 *    always to set 0, so every client serialises on the same brick.
 *  - notify: CHILD_UP once every set is up, or once at least one is up and
 *    every set has reported (up or down), or up-wait after the first set
 *    came up (a set that never answers must not block the mount). Ops that
 *    need a missing set fail alone with -ENOTCONN. CHILD_DOWN when no set
 *    is up.
 */
#include <stdio.h>
#include <event2/event.h>

#include "lib/log.h"
#include "xlators/cluster/distribute/distribute.h"

static const kb_option_def_t dist_options[] = {
    { "up-wait", NULL, KB_OPT_TIME, "3", 0, 600000, NULL,
      "after the first replica set is up, how long to wait for the others before reporting the "
      "volume up anyway (a set that is down fails only the ops that need it)" },
    { "drain-sets", NULL, KB_OPT_STR, "", 0, 0, NULL,
      "Replica sets being removed (comma-separated indices, set by `volume remove-brick`): new "
      "and healed directory layouts give them no range, so no new file lands there" },
    { NULL },
};

static const kb_cred_t dist_root_cred;   /* uid 0: internal upkeep (heal, layouts) */

#define ICTX_SLOTS 16384
#define LCACHE_SLOTS 1024
#define HINT_SLOTS 4096

/* ---------------- caches ---------------- */

static size_t gslot(const kb_gfid_t *g, size_t n) { return kb_gfid_hash(g) % n; }

bool dist_ictx_get(dist_priv_t *p, const kb_gfid_t *g, int *set, bool *is_dir)
{
    dist_ictx_t *e = &p->ictx[gslot(g, p->nictx)];
    if (!e->valid || !kb_gfid_eq(&e->gfid, g) || e->set >= p->n)
        return false;
    *set = e->set;
    *is_dir = e->is_dir;
    return true;
}

void dist_ictx_put(dist_priv_t *p, const kb_gfid_t *g, int set, bool is_dir)
{
    if (kb_gfid_is_null(g) || set < 0)
        return;
    p->ictx[gslot(g, p->nictx)] = (dist_ictx_t){ .gfid = *g, .set = (int16_t)set, .is_dir = is_dir, .valid = 1 };
}

void dist_ictx_del(dist_priv_t *p, const kb_gfid_t *g)
{
    dist_ictx_t *e = &p->ictx[gslot(g, p->nictx)];
    if (kb_gfid_eq(&e->gfid, g))
        e->valid = 0;
}

static size_t hslot(const kb_gfid_t *parent, uint32_t h, size_t n) { return (kb_gfid_hash(parent) ^ h) % n; }

int dist_hint_get(dist_priv_t *p, const kb_gfid_t *parent, const char *name)
{
    uint32_t h = dist_hash_str(name);
    dist_hint_t *e = &p->hints[hslot(parent, h, p->nhints)];
    if (!e->valid || e->hash != h || !kb_gfid_eq(&e->parent, parent) || e->set >= p->n)
        return -1;
    return e->set;
}

void dist_hint_put(dist_priv_t *p, const kb_gfid_t *parent, const char *name, int set)
{
    uint32_t h = dist_hash_str(name);
    p->hints[hslot(parent, h, p->nhints)] = (dist_hint_t){ .parent = *parent, .hash = h, .set = (int16_t)set, .valid = 1 };
}

void dist_hint_del(dist_priv_t *p, const kb_gfid_t *parent, const char *name)
{
    uint32_t h = dist_hash_str(name);
    dist_hint_t *e = &p->hints[hslot(parent, h, p->nhints)];
    if (e->hash == h && kb_gfid_eq(&e->parent, parent))
        e->valid = 0;
}

static bool lcache_get(dist_priv_t *p, const kb_gfid_t *g, dist_layout_t *out)
{
    dist_lcache_t *e = &p->lc[gslot(g, p->nlc)];
    if (!e->valid || !kb_gfid_eq(&e->gfid, g) || kb_now_ms() - e->at_ms > DIST_LAYOUT_TTL_MS)
        return false;
    *out = e->l;
    return true;
}

void dist_lcache_put(dist_priv_t *p, const kb_gfid_t *g, const dist_layout_t *l)
{
    dist_lcache_t *e = &p->lc[gslot(g, p->nlc)];
    e->gfid = *g;
    e->at_ms = kb_now_ms();
    e->l = *l;
    e->valid = true;
}

void dist_lcache_del(dist_priv_t *p, const kb_gfid_t *g)
{
    dist_lcache_t *e = &p->lc[gslot(g, p->nlc)];
    if (kb_gfid_eq(&e->gfid, g))
        e->valid = false;
}

/* ---------------- frames and fan-out ---------------- */

uint64_t dist_up_mask(const dist_priv_t *p)
{
    uint64_t m = 0;
    for (int i = 0; i < p->n; i++)
        if (p->xl->children[i]->up)
            m |= dist_bit(i);
    return m;
}

static dist_frame_t *frame_alloc(kb_xlator_t *xl)
{
    dist_priv_t *p = xl->priv;
    dist_frame_t *f = kb_zalloc(sizeof(*f) + (size_t)p->n * sizeof(dist_sub_t));
    if (!f)
        return NULL;
    f->xl = xl;
    f->p = p;
    f->n = p->n;
    f->loc[0].set = f->loc[1].set = -1;
    for (int i = 0; i < f->n; i++) {
        f->sub[i].f = f;
        f->sub[i].idx = i;
    }
    return f;
}

dist_frame_t *dist_frame_new(kb_call_t *call)
{
    dist_frame_t *f = frame_alloc(call->xl);
    if (f) {
        f->call = call;
        f->args = *call->args;
    }
    return f;
}

dist_frame_t *dist_frame_new_internal(kb_xlator_t *xl)
{
    dist_frame_t *f = frame_alloc(xl);
    if (f)
        f->as_root = true;
    return f;
}

static void frame_free(dist_frame_t *f)
{
    for (int i = 0; i < f->n; i++) {
        kb_reply_clear(&f->sub[i].reply);
        kb_buf_unref(f->sub[i].buf);
    }
    kb_reply_clear(&f->loc[0].reply);
    kb_reply_clear(&f->loc[1].reply);
    kb_reply_clear(&f->out);
    free(f);
}

/* Complete the call (or the internal frame's owner) with R, then free F.
 * R may point into F. */
void dist_unwind(kb_call_t *call, const kb_reply_t *r)
{
    if (!(r->rflags & KB_RF_PATTR)) {
        kb_unwind(call, r);
        return;
    }
    kb_reply_t out = *r;
    out.rflags &= ~(uint32_t)KB_RF_PATTR;
    kb_unwind(call, &out);
}

void dist_frame_unwind(dist_frame_t *f, const kb_reply_t *r)
{
    if (f->call)
        dist_unwind(f->call, r);
    else if (f->done)
        f->done(f, r);
    frame_free(f);
}

/* Free F without completing anything: its call goes on elsewhere. */
void dist_frame_drop(dist_frame_t *f)
{
    frame_free(f);
}

void dist_frame_fail(dist_frame_t *f, int err)
{
    kb_reply_t r = { .status = err < 0 ? err : -EIO };
    dist_frame_unwind(f, &r);
}

void dist_sub_args(dist_frame_t *f, uint64_t mask, const kb_args_t *a)
{
    for (int i = 0; i < f->n; i++)
        if (mask & dist_bit(i))
            f->sub[i].args = *a;
}

static void sub_cbk(void *cookie, const kb_reply_t *r)
{
    dist_sub_t *s = cookie;
    dist_frame_t *f = s->f;
    if (kb_reply_copy(&s->reply, r) < 0)
        s->reply = (kb_reply_t){ .status = -ENOMEM };   /* a failed copy holds no reference */
    if (--f->pending == 0)
        f->next(f);
}

static void fan(dist_frame_t *f, kb_op_t op, uint64_t mask, dist_step_fn next, bool root)
{
    f->next = next;
    f->pending = 1;                     /* guard: NEXT cannot run inside the loop */
    for (int i = 0; i < f->n; i++)
        if (mask & dist_bit(i)) {
            kb_reply_clear(&f->sub[i].reply);
            f->pending++;
        }
    /* kb_wind copies the credentials: the pointer need not outlive it. */
    const kb_cred_t *cred = root || f->as_root || !f->call ? &dist_root_cred : &f->call->cred;
    uint64_t req = f->call ? f->call->req_id : 0;
    for (int i = 0; i < f->n; i++)
        if (mask & dist_bit(i))
            kb_wind(f->xl->children[i], op, &f->sub[i].args, cred, req, sub_cbk, &f->sub[i]);
    if (--f->pending == 0)
        next(f);
}

/* Wind OP with sub[i].args to every set i of MASK; NEXT(f) runs once, after
 * the last reply (or at once for an empty mask). Replies land in sub[i].reply. */
void dist_fan(dist_frame_t *f, kb_op_t op, uint64_t mask, dist_step_fn next)
{
    fan(f, op, mask, next, false);
}

/* The same with root credentials (internal upkeep: heal, layouts). */
void dist_fan_root(dist_frame_t *f, kb_op_t op, uint64_t mask, dist_step_fn next)
{
    fan(f, op, mask, next, true);
}

/* ---------------- layouts ---------------- */

static void layout_fetched(dist_frame_t *f);
static void layout_healed(dist_frame_t *f);

void dist_layout_fetch(dist_frame_t *f, const kb_gfid_t *dir, dist_step_fn then)
{
    f->lay_then = then;
    f->lay_gfid = *dir;
    dist_layout_clear(&f->lay, f->n);
    if (lcache_get(f->p, dir, &f->lay)) {
        f->lay_status = 0;
        then(f);
        return;
    }
    uint64_t up = dist_up_mask(f->p);
    if (!up) {
        f->lay_status = -ENOTCONN;
        then(f);
        return;
    }
    kb_args_t a = { .gfid = *dir, .flags = KB_IPC_LAYOUT_GET };
    dist_sub_args(f, up, &a);
    f->lay_mask = up;
    dist_fan_root(f, KB_FOP_IPC, up, layout_fetched);
}

static bool no_ranges(const dist_layout_t *l)
{
    for (int i = 0; i < l->n; i++)
        if (l->r[i].state == DIST_RS_RANGE)
            return false;
    return true;
}

static void layout_fetched(dist_frame_t *f)
{
    dist_priv_t *p = f->p;
    uint64_t answered = 0, errs = 0, absent = 0;
    int first_err = 0;
    for (int i = 0; i < f->n; i++) {
        if (!(f->lay_mask & dist_bit(i)))
            continue;
        const kb_reply_t *r = &f->sub[i].reply;
        if (r->status == -ENOENT || r->status == -ENOTDIR || r->status == -ENOTCONN) {
            errs |= dist_bit(i);
            if (r->status != -ENOTCONN)
                absent |= dist_bit(i);
            first_err = first_err ? first_err : r->status;
            continue;
        }
        answered |= dist_bit(i);
        /* Any other error: the brick cannot keep layouts (yet); treat as "none
         * stored", so a heal computes the same even layout on every client. */
        if (r->status >= 0 && r->data &&
            dist_layout_decode(&f->lay, i, (const uint8_t *)r->data->data, r->data->len) < 0)
            dist_flog(f, KB_LOG_WARN, "set %d: unreadable layout on a directory; will rewrite", i);
    }
    if (!answered) {
        f->lay_status = first_err ? first_err : -ENOTCONN;
        f->lay_then(f);
        return;
    }
    f->lay_status = 0;
    if (dist_layout_check(&f->lay) == 0) {
        dist_lcache_put(p, &f->lay_gfid, &f->lay);
        f->lay_then(f);
        return;
    }
    if (absent && (answered | absent) == p->all && no_ranges(&f->lay)) {
        /* Every set answered, the directory is missing on some and has no
         * range anywhere: made before those sets were added (add-brick; a
         * one-set volume stores no layouts). Its files are where it is:
         * spread over those copies for this call only, without storing or
         * caching; a lookup of the directory heals it onto the new sets,
         * and rebalance fixes its layout. */
        dist_layout_t none = f->lay;
        dist_layout_rebuild(&none, f->n, dist_undrained(p, answered), 1, &f->lay);
        f->lay_then(f);
        return;
    }
    if (answered != p->all) {
        /* Some set is missing: what it holds is unknown; use what we have
         * (names in holes fail with -ENOTCONN) and do not cache it. */
        f->lay_then(f);
        return;
    }
    /* Heal: every set answered and the layout is not complete. Sets with an
     * explicit EMPTY stay empty (drained); the others share the space. */
    uint64_t active = 0;
    for (int i = 0; i < f->n; i++)
        if (f->lay.r[i].state != DIST_RS_EMPTY)
            active |= dist_bit(i);
    active = dist_undrained(p, active ? active : p->all);
    dist_layout_t old = f->lay;
    dist_layout_rebuild(&old, f->n, active, old.epoch + 1, &f->lay);
    p->n_layout_heals++;
    dist_flog(f, KB_LOG_INFO, "healing an incomplete directory layout (anomalies %d, epoch %u)",
            dist_layout_check(&old), f->lay.epoch);
    dist_layout_store(f, &f->lay_gfid, &f->lay, p->all, layout_healed);
}

static void layout_healed(dist_frame_t *f)
{
    /* Use the healed layout even where the write failed: every client that
     * heals computes the same one from the same stored ranges. */
    dist_lcache_put(f->p, &f->lay_gfid, &f->lay);
    f->lay_then(f);
}

void dist_layout_store(dist_frame_t *f, const kb_gfid_t *dir, const dist_layout_t *l, uint64_t mask,
                       dist_step_fn then)
{
    uint64_t ok = 0;
    for (int i = 0; i < f->n; i++) {
        if (!(mask & dist_bit(i)))
            continue;
        dist_sub_t *s = &f->sub[i];
        kb_buf_unref(s->buf);
        s->buf = kb_buf_new(KB_LAYOUT_DISK_BYTES);
        if (!s->buf)
            continue;                   /* that set keeps its old value; healed later */
        dist_layout_encode(l, i, (uint8_t *)s->buf->data);
        s->buf->len = KB_LAYOUT_DISK_BYTES;
        s->args = (kb_args_t){ .gfid = *dir, .flags = KB_IPC_LAYOUT_SET, .data = s->buf };
        ok |= dist_bit(i);
    }
    f->lay_mask = ok;
    dist_fan_root(f, KB_FOP_IPC, ok, then);
}

/* ---------------- fds ---------------- */

dist_fd_t *dist_fd_new(dist_priv_t *p, bool is_dir, const kb_gfid_t *g)
{
    dist_fd_t *fd = kb_zalloc(sizeof(*fd));
    if (!fd)
        return NULL;
    if (is_dir && !(fd->cfds = calloc((size_t)p->n, sizeof(uint64_t)))) {
        free(fd);
        return NULL;
    }
    fd->magic = DIST_FD_MAGIC;
    fd->is_dir = is_dir;
    fd->gfid = *g;
    fd->set = -1;
    fd->next = p->fds.next;
    fd->prev = &p->fds;
    p->fds.next->prev = fd;
    p->fds.next = fd;
    p->nfds++;
    return fd;
}

dist_fd_t *dist_fd_of(dist_priv_t *p, uint64_t v)
{
    dist_fd_t *fd = (dist_fd_t *)(uintptr_t)v;
    if (!fd || ((uintptr_t)fd & (_Alignof(dist_fd_t) - 1)) || fd->magic != DIST_FD_MAGIC)
        return NULL;
    return fd;
}

void dist_fd_free(dist_priv_t *p, dist_fd_t *fd)
{
    if (!fd)
        return;
    fd->prev->next = fd->next;
    fd->next->prev = fd->prev;
    p->nfds--;
    fd->magic = 0;
    free(fd->cfds);
    free(fd->ck.e);
    free(fd);
}

int dist_doff_encode(dist_fd_t *fd, int n, int set, uint64_t child_off, uint64_t *out)
{
    if (dist_doff_fits(n, child_off)) {
        *out = dist_doff_pack(n, set, child_off);
        return 0;
    }
    dist_cookies_t *c = &fd->ck;
    if (c->len == DIST_COOKIES_MAX) {   /* drop the older half */
        uint32_t keep = DIST_COOKIES_MAX / 2;
        memmove(c->e, c->e + (c->len - keep), keep * sizeof(*c->e));
        c->base += c->len - keep;
        c->len = keep;
    }
    if (c->len == c->cap) {
        uint32_t cap = c->cap ? KB_MIN(c->cap * 2, (uint32_t)DIST_COOKIES_MAX) : 256;
        dist_cookie_t *e = realloc(c->e, cap * sizeof(*e));
        if (!e)
            return -ENOMEM;
        c->e = e;
        c->cap = cap;
    }
    c->e[c->len] = (dist_cookie_t){ .off = child_off, .set = set };
    *out = DIST_DOFF_COOKIE | (c->base + c->len);
    c->len++;
    return 0;
}

int dist_doff_decode(const dist_fd_t *fd, int n, uint64_t off, int *set, uint64_t *child_off)
{
    if (!(off & DIST_DOFF_COOKIE)) {
        dist_doff_unpack(n, off, set, child_off);
        return *set < n ? 0 : -EINVAL;
    }
    uint64_t seq = off & ~DIST_DOFF_COOKIE;
    if (seq < fd->ck.base || seq - fd->ck.base >= fd->ck.len)
        return -EINVAL;
    *set = fd->ck.e[seq - fd->ck.base].set;
    *child_off = fd->ck.e[seq - fd->ck.base].off;
    return 0;
}

/* ---------------- dispatch ---------------- */

static const kb_fop_fn dist_ops[KB_FOP_MAX] = {
    [KB_FOP_LOOKUP] = dist_lookup,
    [KB_FOP_STAT] = dist_inode_read,
    [KB_FOP_SETATTR] = dist_inode_modify,
    [KB_FOP_TRUNCATE] = dist_inode_modify,
    [KB_FOP_READLINK] = dist_inode_read,
    [KB_FOP_MKNOD] = dist_create,
    [KB_FOP_MKDIR] = dist_mkdir,
    [KB_FOP_UNLINK] = dist_unlink,
    [KB_FOP_RMDIR] = dist_rmdir,
    [KB_FOP_SYMLINK] = dist_create,
    [KB_FOP_RENAME] = dist_rename,
    [KB_FOP_LINK] = dist_link,
    [KB_FOP_CREATE] = dist_create,
    [KB_FOP_OPEN] = dist_open,
    [KB_FOP_READ] = dist_fd_op,
    [KB_FOP_WRITE] = dist_fd_op,
    [KB_FOP_FLUSH] = dist_fd_op,
    [KB_FOP_FSYNC] = dist_fd_op,
    [KB_FOP_RELEASE] = dist_release,
    [KB_FOP_OPENDIR] = dist_opendir,
    [KB_FOP_READDIR] = dist_readdir,
    [KB_FOP_RELEASEDIR] = dist_releasedir,
    [KB_FOP_FSYNCDIR] = dist_fsyncdir,
    [KB_FOP_STATFS] = dist_statfs,
    [KB_FOP_SETXATTR] = dist_inode_modify,
    [KB_FOP_GETXATTR] = dist_inode_read,
    [KB_FOP_LISTXATTR] = dist_inode_read,
    [KB_FOP_REMOVEXATTR] = dist_inode_modify,
    [KB_FOP_FALLOCATE] = dist_fd_op,
    [KB_FOP_LSEEK] = dist_fd_op,
    [KB_FOP_INODELK] = dist_inode_lock,
    [KB_FOP_ENTRYLK] = dist_inode_lock,
    [KB_FOP_LK] = dist_fd_op,
    [KB_FOP_XATTROP] = dist_inode_lock,
    [KB_FOP_RCHECKSUM] = dist_fd_op,
    [KB_FOP_IPC] = dist_inode_lock,
};

/* Every op enters here: one child means pass-through, untouched. */
static void dist_dispatch(kb_call_t *call)
{
    if (call->xl->nchildren == 1 || !call->xl->priv) {
        kb_pass(call);
        return;
    }
    kb_fop_fn fn = dist_ops[call->op];
    if (!fn) {
        kb_unwind_err(call, -ENOSYS);
        return;
    }
    fn(call);
}

/* ---------------- lifecycle ---------------- */


int dist_parse_sets(const char *csv, int n, uint64_t *mask)
{
    *mask = 0;
    for (const char *p = csv ? csv : ""; *p;) {
        char *end;
        long i = strtol(p, &end, 10);
        if (end == p || i < 0 || i >= n || i >= 64)
            return -EINVAL;
        *mask |= dist_bit((int)i);
        p = end;
        while (*p == ',' || *p == ' ')
            p++;
    }
    return 0;
}

uint64_t dist_undrained(const dist_priv_t *p, uint64_t sets)
{
    uint64_t keep = sets & ~p->drain;
    return keep ? keep : sets;   /* draining all of them: better a range than none */
}

static int dist_init(kb_xlator_t *xl)
{
    if (xl->nchildren < 1) {
        kb_err(xl->name, "cluster/distribute needs at least one subvolume");
        return -EINVAL;
    }
    if (xl->nchildren == 1)
        return 0;                       /* pass-through: no state */
    dist_priv_t *p = kb_zalloc(sizeof(*p));
    if (!p)
        return -ENOMEM;
    p->xl = xl;
    p->n = xl->nchildren;
    p->all = p->n >= 64 ? ~UINT64_C(0) : dist_bit(p->n) - 1;
    p->up_wait_ms = kb_opt_time_ms(xl->opts, dist_options, "up-wait");
    if (dist_parse_sets(kb_opt_str(xl->opts, dist_options, "drain-sets"), p->n, &p->drain) < 0) {
        kb_err(xl->name, "drain-sets: expected set indices 0..%d separated by commas", p->n - 1);
        free(p);
        return -EINVAL;
    }
    p->rl.interval_ms = 1000;
    p->nictx = ICTX_SLOTS;
    p->nlc = LCACHE_SLOTS;
    p->nhints = HINT_SLOTS;
    p->ictx = calloc(p->nictx, sizeof(*p->ictx));
    p->lc = calloc(p->nlc, sizeof(*p->lc));
    p->hints = calloc(p->nhints, sizeof(*p->hints));
    p->fds.next = p->fds.prev = &p->fds;
    if (!p->ictx || !p->lc || !p->hints) {
        free(p->ictx);
        free(p->lc);
        free(p->hints);
        free(p);
        return -ENOMEM;
    }
    xl->priv = p;
    return 0;
}

static void dist_fini(kb_xlator_t *xl)
{
    dist_priv_t *p = xl->priv;
    if (!p)
        return;
    if (p->up_timer)
        event_free(p->up_timer);
    while (p->fds.next != &p->fds)
        dist_fd_free(p, p->fds.next);
    free(p->ictx);
    free(p->lc);
    free(p->hints);
    free(p);
    xl->priv = NULL;
}

static void up_timer_cb(evutil_socket_t fd, short ev, void *arg)
{
    kb_xlator_t *xl = arg;
    dist_priv_t *p = xl->priv;
    uint64_t up = dist_up_mask(p);
    if (!xl->up && up) {
        kb_warn(xl->name, "reporting up with sets missing (up mask %llx of %llx)",
                (unsigned long long)up, (unsigned long long)p->all);
        kb_notify_parents(xl, KB_EV_CHILD_UP);
    }
}

static void dist_notify(kb_xlator_t *xl, int event, kb_xlator_t *child)
{
    dist_priv_t *p = xl->priv;
    if (!p) {
        kb_notify_default(xl, event, child);
        return;
    }
    int i = child ? kb_xlator_child_index(xl, child) : -1;
    if (i < 0 || (event != KB_EV_CHILD_UP && event != KB_EV_CHILD_DOWN))
        return;
    p->reported |= dist_bit(i);
    uint64_t up = dist_up_mask(p);
    kb_info(xl->name, "set %d (%s) is %s; %d of %d sets up", i, child->name,
            event == KB_EV_CHILD_UP ? "up" : "down", __builtin_popcountll(up), p->n);
    if (!xl->up) {
        if (up == p->all || (up && p->reported == p->all)) {
            if (p->up_timer)
                evtimer_del(p->up_timer);
            kb_notify_parents(xl, KB_EV_CHILD_UP);
        } else if (up && xl->graph && xl->graph->base) {
            if (!p->up_timer)
                p->up_timer = evtimer_new(xl->graph->base, up_timer_cb, xl);
            if (p->up_timer && !evtimer_pending(p->up_timer, NULL)) {
                struct timeval tv = { (time_t)(p->up_wait_ms / 1000), (suseconds_t)(p->up_wait_ms % 1000 * 1000) };
                evtimer_add(p->up_timer, &tv);
            }
        }
    } else if (!up) {
        kb_notify_parents(xl, KB_EV_CHILD_DOWN);
    }
}

static int dist_ctl(kb_xlator_t *xl, int code, void *arg)
{
    dist_priv_t *p = xl->priv;
    if (code != KB_CTL_STATUS)
        return -ENOSYS;
    if (!p) {
        kb_ctl_printf(arg, "%s: one set, pass-through\n", xl->name);
        return 0;
    }
    uint64_t up = dist_up_mask(p);
    kb_ctl_printf(arg, "%s: %d sets, %d up, %u open fds\n", xl->name, p->n, __builtin_popcountll(up), p->nfds);
    for (int i = 0; i < p->n; i++)
        kb_ctl_printf(arg, "  set %d %s %s\n", i, xl->children[i]->name, up & dist_bit(i) ? "up" : "down");
    kb_ctl_printf(arg, "  lookups falling back %llu (found elsewhere %llu), dirs healed %llu, layouts healed %llu, "
                  "renames across sets %llu\n", (unsigned long long)p->n_fallback,
                  (unsigned long long)p->n_found_elsewhere, (unsigned long long)p->n_dir_heals,
                  (unsigned long long)p->n_layout_heals, (unsigned long long)p->n_renames_cross);
    return 0;
}

const kb_xlator_type_t kb_xl_distribute = {
    .name = "cluster/distribute",
    .ops = {
#define FOP(NAME, name, A, R, C) [KB_FOP_##NAME] = dist_dispatch,
#include "xlators/fops.def"
#undef FOP
    },
    .local_size = sizeof(dist_local_t),
    .init = dist_init,
    .fini = dist_fini,
    .notify = dist_notify,
    .options = dist_options,
    .ctl = dist_ctl,
};
