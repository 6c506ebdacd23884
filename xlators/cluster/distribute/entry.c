/*
 * entry.c — distribute's namespace ops: lookup (locate), mkdir,
 * create / mknod / symlink, unlink, rmdir, rename.
 *
 * Every op here is a frame that runs steps; each step ends in exactly one
 * fan-out, sub-flow or unwind, so a step never continues after handing the
 * frame on (the next step may already have run and freed it).
 *
 * Locate (the heart of lookup, and of every op that needs to know where a
 * name lives): the parent's layout gives the hashed set; ask the set a hint
 * names, else the hashed set; a file there is the answer. A directory, or a
 * miss, asks every other up set: a directory must exist on all of them
 * (missing copies are made with the same gfid, mode and owner); a miss
 * finds files that were renamed in place or placed under an older layout.
 */
#include <fcntl.h>
#include <stdio.h>

#include "lib/log.h"
#include "xlators/cluster/distribute/distribute.h"

static bool is_miss(int st) { return st == -ENOENT || st == -ESTALE; }

static dist_loc_t *cur_loc(dist_frame_t *f) { return &f->loc[f->cur]; }

/* Move sub[i]'s reply into L. */
static void loc_take(dist_frame_t *f, dist_loc_t *l, int i)
{
    kb_reply_clear(&l->reply);
    l->reply = f->sub[i].reply;
    memset(&f->sub[i].reply, 0, sizeof(f->sub[i].reply));
    l->status = 0;
    l->set = i;
}

/* ---------------- locate ---------------- */

static void locate_have_layout(dist_frame_t *f);
static void locate_first_done(dist_frame_t *f);
static void locate_merge(dist_frame_t *f);
static void locate_heal_made(dist_frame_t *f);
static void locate_heal_done(dist_frame_t *f);

void dist_locate(dist_frame_t *f, int slot, const kb_gfid_t *parent, const char *name, dist_step_fn then)
{
    f->cur = slot;
    f->loc_then = then;
    dist_loc_t *l = &f->loc[slot];
    kb_reply_clear(&l->reply);
    *l = (dist_loc_t){ .status = -ENOENT, .set = -1, .hashed = -1, .parent = *parent, .name = name };
    dist_layout_fetch(f, parent, locate_have_layout);
}

static void locate_ask(dist_frame_t *f, uint64_t mask, dist_step_fn next)
{
    dist_loc_t *l = cur_loc(f);
    kb_args_t a = { .gfid = l->parent, .name = (char *)l->name };
    l->asked |= mask;
    dist_sub_args(f, mask, &a);
    dist_fan(f, KB_FOP_LOOKUP, mask, next);
}

static void locate_have_layout(dist_frame_t *f)
{
    dist_priv_t *p = f->p;
    dist_loc_t *l = cur_loc(f);
    if (f->lay_status == 0)
        l->hashed = dist_layout_search(&f->lay, dist_hash_str(l->name));
    int first = dist_hint_get(p, &l->parent, l->name);
    if (!dist_is_up(p, first))
        first = l->hashed;
    if (!dist_is_up(p, first))
        locate_ask(f, dist_up_mask(p), locate_merge);
    else
        locate_ask(f, dist_bit(first), locate_first_done);
}

static void locate_first_done(dist_frame_t *f)
{
    dist_loc_t *l = cur_loc(f);
    int first = dist_first(l->asked);
    const kb_reply_t *r = &f->sub[first].reply;
    if (r->status == 0 && !S_ISDIR(r->attr.mode) && !dist_is_linkto(&r->attr)) {
        loc_take(f, l, first);
        l->have = dist_bit(first);
        f->loc_then(f);
        return;
    }
    if (r->status < 0 && !is_miss(r->status) && r->status != -ENOTCONN) {
        l->status = r->status;
        f->loc_then(f);
        return;
    }
    if (r->status < 0)
        f->p->n_fallback++;
    /* A directory (check every copy) or a miss (look everywhere). */
    locate_ask(f, dist_up_mask(f->p) & ~l->asked, locate_merge);
}

/* Heal a directory: make it where it is missing, fix mode/owner where they
 * differ from the reference copy (the hashed set's, else the lowest). */
static void locate_heal(dist_frame_t *f, uint64_t missing)
{
    dist_loc_t *l = cur_loc(f);
    const kb_iatt_t *ref = &l->reply.attr;
    kb_args_t a = { .gfid = l->parent, .name = (char *)l->name, .newgfid = ref->gfid, .mode = ref->mode & 07777 };
    f->mask = missing;
    dist_sub_args(f, missing, &a);
    dist_fan_root(f, KB_FOP_MKDIR, missing, locate_heal_made);
}

static void locate_heal_made(dist_frame_t *f)
{
    dist_loc_t *l = cur_loc(f);
    uint64_t made = 0;
    for (int i = 0; i < f->n; i++) {
        if (!(f->mask & dist_bit(i)))
            continue;
        int st = f->sub[i].reply.status;
        if (st == 0 || st == -EEXIST)
            made |= dist_bit(i);
        else
            dist_flog(f, KB_LOG_WARN, "cannot heal directory '%s' on set %d: %s", l->name, i, strerror(-st));
        if (st == 0)
            f->p->n_dir_heals++;
    }
    if (made)
        dist_flog(f, KB_LOG_INFO, "healed directory '%s' on sets %llx", l->name, (unsigned long long)made);
    l->have |= made;
    uint64_t fix = made | l->heal_fix;
    const kb_iatt_t *ref = &l->reply.attr;
    kb_args_t a = { .gfid = ref->gfid, .flags = KB_SET_MODE | KB_SET_UID | KB_SET_GID, .attr = *ref };
    f->mask = fix;
    dist_sub_args(f, fix, &a);
    dist_fan_root(f, KB_FOP_SETATTR, fix, locate_heal_done);
}

static void locate_heal_done(dist_frame_t *f)
{
    dist_loc_t *l = cur_loc(f);
    for (int i = 0; i < f->n; i++)
        if ((f->mask & dist_bit(i)) && f->sub[i].reply.status < 0)
            dist_flog(f, KB_LOG_WARN, "cannot fix mode/owner of directory '%s' on set %d: %s", l->name, i,
                    strerror(-f->sub[i].reply.status));
    /* The new copies have no layout range: the next entry op re-reads it. */
    dist_lcache_del(f->p, &l->reply.attr.gfid);
    f->loc_then(f);
}

static int pick(uint64_t mask, int preferred)
{
    return preferred >= 0 && (mask & dist_bit(preferred)) ? preferred : dist_first(mask);
}

static void locate_merge_dir(dist_frame_t *f, uint64_t dirs, uint64_t files, uint64_t missing)
{
    dist_loc_t *l = cur_loc(f);
    loc_take(f, l, pick(dirs, l->hashed));
    l->is_dir = true;
    l->have = dirs;
    const kb_iatt_t *ref = &l->reply.attr;
    for (int i = 0; i < f->n; i++) {
        const kb_reply_t *r = &f->sub[i].reply;
        if (!(dirs & dist_bit(i)) || i == l->set)
            continue;
        if (!kb_gfid_eq(&r->attr.gfid, &ref->gfid))
            dist_flog(f, KB_LOG_ERROR, "directory '%s' has another gfid on set %d than on set %d", l->name, i, l->set);
        else if ((r->attr.mode & 07777) != (ref->mode & 07777) || r->attr.uid != ref->uid ||
                 r->attr.gid != ref->gid)
            l->heal_fix |= dist_bit(i);
    }
    if (files)
        dist_flog(f, KB_LOG_ERROR, "'%s' is a directory on sets %llx but a file on sets %llx", l->name,
               (unsigned long long)dirs, (unsigned long long)files);
    if (missing || l->heal_fix)
        locate_heal(f, missing);
    else
        f->loc_then(f);
}

static void locate_targets_dropped(dist_frame_t *f)
{
    cur_loc(f)->status = -ENOENT;
    f->loc_then(f);
}

/* Still only targets after the migration lock was free: their migrator is
 * gone (or is undoing a migration whose source a user removed). They hold
 * the name on their sets and would make a create fail: remove them. */
static void locate_drop_targets(dist_frame_t *f, uint64_t links)
{
    dist_loc_t *l = cur_loc(f);
    dist_flog(f, KB_LOG_WARN, "removing a stale migration target of '%s' (sets %llx)", l->name,
              (unsigned long long)links);
    kb_args_t a = { .gfid = l->parent, .name = (char *)l->name };
    dist_sub_args(f, links, &a);
    dist_fan_root(f, KB_FOP_UNLINK, links, locate_targets_dropped);
}

/* Only a migration target answered: the file is between its two homes
 * (migrate.c step 5). Wait for the migrator's lock, then look again. */
static void locate_rewait(dist_frame_t *f)
{
    dist_mig_release(f);
    dist_loc_t *l = cur_loc(f);
    kb_gfid_t parent = l->parent;
    dist_locate(f, f->cur, &parent, l->name, f->loc_then);
}

static void locate_merge(dist_frame_t *f)
{
    dist_priv_t *p = f->p;
    dist_loc_t *l = cur_loc(f);
    uint64_t dirs = 0, files = 0, marked = 0, links = 0, missing = 0, unreach = p->all & ~l->asked;
    int err = 0;
    for (int i = 0; i < f->n; i++) {
        if (!(l->asked & dist_bit(i)))
            continue;
        const kb_reply_t *r = &f->sub[i].reply;
        if (r->status == 0 && S_ISDIR(r->attr.mode))
            dirs |= dist_bit(i);
        else if (r->status == 0 && dist_is_linkto(&r->attr))
            links |= dist_bit(i);     /* a migration target is not the file */
        else if (r->status == 0)
            *(dist_is_migrating(&r->attr) ? &marked : &files) |= dist_bit(i);
        else if (is_miss(r->status))
            missing |= dist_bit(i);
        else if (r->status == -ENOTCONN)
            unreach |= dist_bit(i);
        else if (!err)
            err = r->status;
    }
    if (dirs) {
        locate_merge_dir(f, dirs, files | marked, missing | links);
        return;
    }
    if (!files && !marked && links && !f->linkto_waits++) {
        int t = dist_first(links);
        kb_gfid_t g = f->sub[t].reply.attr.gfid;
        dist_mig_wait(f, t, &g, locate_rewait);
        return;
    }
    if (!files && !marked && links) {
        locate_drop_targets(f, links);
        return;
    }
    if (!files)
        files = marked;               /* a source being migrated is still the file */
    if (files) {
        int s = pick(files, l->hashed);
        if (files != dist_bit(s))
            dist_flog(f, KB_LOG_ERROR, "file '%s' exists on several sets (%llx); using set %d", l->name,
                   (unsigned long long)files, s);
        if (s != l->hashed)
            p->n_found_elsewhere++;
        loc_take(f, l, s);
        l->have = files;
    } else {
        l->status = err ? err : unreach ? -ENOTCONN : -ENOENT;
    }
    f->loc_then(f);
}

/* ---------------- lookup ---------------- */

static void lookup_located(dist_frame_t *f)
{
    dist_loc_t *l = &f->loc[0];
    if (l->status < 0) {
        if (l->status == -ENOENT)
            dist_hint_del(f->p, &l->parent, l->name);
        dist_frame_fail(f, l->status);
        return;
    }
    dist_ictx_put(f->p, &l->reply.attr.gfid, l->set, l->is_dir);
    if (!l->is_dir && l->set != l->hashed)
        dist_hint_put(f->p, &l->parent, l->name, l->set);
    dist_frame_unwind(f, &l->reply);
}

void dist_lookup(kb_call_t *call)
{
    if (!call->args->name) {
        dist_nameless_lookup(call);
        return;
    }
    dist_frame_t *f = dist_frame_new(call);
    if (!f) {
        kb_unwind_err(call, -ENOMEM);
        return;
    }
    dist_locate(f, 0, &call->args->gfid, call->args->name, lookup_located);
}

/* ---------------- the name is free on the other sets ----------------
 * A new name (mkdir, create, mknod, symlink) is made on its hashed set, whose
 * brick refuses a name it already holds. But a file renamed in place lives
 * off its hashed set (rename below), and a directory may lack its hashed
 * copy until a lookup heals it: the hashed set alone would say "free" and a
 * second object of that name would appear (listed twice, one hiding the
 * other). The kernel looks a name up before making it, which hides this
 * from a single mount, but not from API callers nor from a client that
 * looked it up just before another client's rename. So the other up sets
 * are asked first: one LOOKUP round trip more per new name on a volume of
 * several sets. A set that does not answer is not waited for (it may be
 * down; its names come back with it, as they would anyway). Not atomic: a
 * rename into the name by another client between the check and the create
 * can still make a duplicate; closing that needs an entry lock on the
 * hashed set taken by both sides. A migration target (layout.h
 * section 5) is not the file: its source is found where it is. */

static void new_name_checked(dist_frame_t *f);
static void mkdir_hashed(dist_frame_t *f);
static void create_hashed(dist_frame_t *f);

/* Ask every up set but F->set (the hashed one) for the call's name; then
 * make it there (mkdir_hashed / create_hashed by the call's op), or fail
 * with -EEXIST when another set holds it. */
static void new_name_check(dist_frame_t *f)
{
    uint64_t others = dist_up_mask(f->p) & ~dist_bit(f->set);
    f->mask = others;
    kb_args_t a = { .gfid = f->args.gfid, .name = f->args.name };
    dist_sub_args(f, others, &a);
    dist_fan(f, KB_FOP_LOOKUP, others, new_name_checked);
}

static void new_name_checked(dist_frame_t *f)
{
    for (int i = 0; i < f->n; i++) {
        const kb_reply_t *r = &f->sub[i].reply;
        if ((f->mask & dist_bit(i)) && r->status == 0 && !dist_is_linkto(&r->attr)) {
            dist_flog(f, KB_LOG_DEBUG, "'%s' exists on set %d (hashed: %d)", f->args.name, i, f->set);
            dist_frame_fail(f, -EEXIST);
            return;
        }
    }
    if (f->call->op == KB_FOP_MKDIR)
        mkdir_hashed(f);
    else
        create_hashed(f);
}

/* ---------------- mkdir ---------------- */

static void mkdir_hashed_done(dist_frame_t *f);
static void mkdir_others_done(dist_frame_t *f);
static void mkdir_layout_done(dist_frame_t *f);

/* The hashed set first: two clients making one name meet there, and the
 * loser gets EEXIST before touching any other set. */
static void mkdir_have_layout(dist_frame_t *f)
{
    if (f->lay_status < 0) {
        dist_frame_fail(f, f->lay_status);
        return;
    }
    int h = dist_layout_search(&f->lay, dist_hash_str(f->args.name));
    if (h < 0)
        h = dist_first(dist_up_mask(f->p));
    if (!dist_is_up(f->p, h)) {
        dist_frame_fail(f, -ENOTCONN);
        return;
    }
    f->set = h;
    new_name_check(f);
}

static void mkdir_hashed(dist_frame_t *f)
{
    dist_sub_args(f, dist_bit(f->set), &f->args);
    dist_fan(f, KB_FOP_MKDIR, dist_bit(f->set), mkdir_hashed_done);
}

static void mkdir_hashed_done(dist_frame_t *f)
{
    kb_reply_t *r = &f->sub[f->set].reply;
    if (r->status < 0) {
        dist_frame_unwind(f, r);
        return;
    }
    f->out = *r;
    memset(r, 0, sizeof(*r));
    f->mask = dist_up_mask(f->p) & ~dist_bit(f->set);
    dist_sub_args(f, f->mask, &f->args);
    dist_fan(f, KB_FOP_MKDIR, f->mask, mkdir_others_done);
}

static void mkdir_others_done(dist_frame_t *f)
{
    uint64_t made = dist_bit(f->set);
    for (int i = 0; i < f->n; i++) {
        if (!(f->mask & dist_bit(i)))
            continue;
        int st = f->sub[i].reply.status;
        if (st == 0)
            made |= dist_bit(i);
        else
            dist_flog(f, KB_LOG_WARN, "mkdir '%s' on set %d: %s; that set gets no range there", f->args.name, i,
                    strerror(-st));
    }
    f->mask2 = made;
    dist_layout_even(&f->lay, f->n, dist_undrained(f->p, made), 1);
    dist_layout_store(f, &f->args.newgfid, &f->lay, made, mkdir_layout_done);
}

static void mkdir_layout_done(dist_frame_t *f)
{
    bool ok = f->lay_mask == f->mask2;
    for (int i = 0; i < f->n; i++)
        if ((f->lay_mask & dist_bit(i)) && f->sub[i].reply.status < 0) {
            dist_flog(f, KB_LOG_WARN, "cannot store the layout of '%s' on set %d: %s", f->args.name, i,
                    strerror(-f->sub[i].reply.status));
            ok = false;
        }
    if (ok)
        dist_lcache_put(f->p, &f->args.newgfid, &f->lay);
    dist_ictx_put(f->p, &f->args.newgfid, f->set, true);
    dist_frame_unwind(f, &f->out);
}

void dist_mkdir(kb_call_t *call)
{
    dist_frame_t *f = dist_frame_new(call);
    if (!f) {
        kb_unwind_err(call, -ENOMEM);
        return;
    }
    dist_layout_fetch(f, &call->args->gfid, mkdir_have_layout);
}

/* ---------------- create / mknod / symlink ---------------- */

static void create_done(dist_frame_t *f)
{
    kb_reply_t *r = &f->sub[f->set].reply;
    if (r->status < 0) {
        dist_fd_free(f->p, f->fd);
        dist_frame_unwind(f, r);
        return;
    }
    const kb_gfid_t *g = kb_gfid_is_null(&r->attr.gfid) ? &f->args.newgfid : &r->attr.gfid;
    dist_ictx_put(f->p, g, f->set, false);
    dist_hint_del(f->p, &f->args.gfid, f->args.name);
    if (!f->fd) {
        dist_frame_unwind(f, r);
        return;
    }
    f->fd->set = f->set;
    f->fd->cfd = r->fd;
    f->fd->gfid = *g;
    f->fd->flags = f->args.flags & ~(uint32_t)(O_CREAT | O_EXCL | O_TRUNC);
    kb_reply_t out = *r;                 /* shares r's buffers: r is freed once, with F */
    out.fd = (uint64_t)(uintptr_t)f->fd;
    dist_frame_unwind(f, &out);
}

static void create_have_layout(dist_frame_t *f)
{
    if (f->lay_status < 0) {
        dist_frame_fail(f, f->lay_status);
        return;
    }
    int h = dist_layout_search(&f->lay, dist_hash_str(f->args.name));
    if (!dist_is_up(f->p, h)) {          /* its set is down, or in a hole a missing set holds */
        dist_frame_fail(f, -ENOTCONN);
        return;
    }
    f->set = h;
    new_name_check(f);
}

static void create_hashed(dist_frame_t *f)
{
    if (f->call->op == KB_FOP_CREATE && !(f->fd = dist_fd_new(f->p, false, &f->args.newgfid))) {
        dist_frame_fail(f, -ENOMEM);
        return;
    }
    dist_sub_args(f, dist_bit(f->set), &f->args);
    dist_fan(f, f->call->op, dist_bit(f->set), create_done);
}

void dist_create(kb_call_t *call)
{
    dist_frame_t *f = dist_frame_new(call);
    if (!f) {
        kb_unwind_err(call, -ENOMEM);
        return;
    }
    dist_layout_fetch(f, &call->args->gfid, create_have_layout);
}

/* ---------------- unlink ---------------- */

static void unlink_done(dist_frame_t *f)
{
    kb_reply_t *r = &f->sub[f->set].reply;
    if (r->status == 0)
        dist_hint_del(f->p, &f->args.gfid, f->args.name);
    dist_frame_unwind(f, r);
}

static void unlink_located(dist_frame_t *f)
{
    dist_loc_t *l = &f->loc[0];
    if (l->status < 0 || l->is_dir) {
        dist_frame_fail(f, l->status < 0 ? l->status : -EISDIR);
        return;
    }
    f->set = l->set;
    dist_sub_args(f, dist_bit(l->set), &f->args);
    dist_fan(f, KB_FOP_UNLINK, dist_bit(l->set), unlink_done);
}

void dist_unlink(kb_call_t *call)
{
    dist_frame_t *f = dist_frame_new(call);
    if (!f) {
        kb_unwind_err(call, -ENOMEM);
        return;
    }
    dist_locate(f, 0, &call->args->gfid, call->args->name, unlink_located);
}

/* ---------------- rmdir ----------------
 * Every set must be up: a copy left on a missing set would come back by
 * heal. The other sets first, the hashed one last, so a concurrent lookup
 * that reaches the hashed set still sees the directory while it goes. When
 * another set refuses (ENOTEMPTY: it holds files), the copies already
 * removed are made again with the same gfid, owner and layout range. */

static void rmdir_hashed(dist_frame_t *f);
static void rmdir_others_done(dist_frame_t *f);
static void rmdir_restore_attr(dist_frame_t *f);
static void rmdir_restore_layout(dist_frame_t *f);
static void rmdir_restored(dist_frame_t *f);
static void rmdir_undo(dist_frame_t *f, int err);

static void rmdir_have_layout(dist_frame_t *f)
{
    dist_loc_t *l = &f->loc[0];
    f->set = pick(l->have, l->hashed);
    f->mask = l->have & ~dist_bit(f->set);
    dist_sub_args(f, f->mask, &f->args);
    dist_fan(f, KB_FOP_RMDIR, f->mask, rmdir_others_done);
}

static void rmdir_located(dist_frame_t *f)
{
    dist_loc_t *l = &f->loc[0];
    if (l->status < 0 || !l->is_dir) {
        dist_frame_fail(f, l->status < 0 ? l->status : -ENOTDIR);
        return;
    }
    /* Its own layout, to restore exactly what a failed rmdir removed. */
    dist_layout_fetch(f, &l->reply.attr.gfid, rmdir_have_layout);
}

static void rmdir_others_done(dist_frame_t *f)
{
    uint64_t removed = 0;
    int err = 0;
    for (int i = 0; i < f->n; i++) {
        if (!(f->mask & dist_bit(i)))
            continue;
        int st = f->sub[i].reply.status;
        if (st == 0)
            removed |= dist_bit(i);
        else if (st != -ENOENT && !err)
            err = st;
    }
    f->mask2 = removed;
    if (!err)
        rmdir_hashed(f);
    else
        rmdir_undo(f, err);
}

/* Make again the copies of F->mask2 that were removed, then fail with ERR. */
static void rmdir_undo(dist_frame_t *f, int err)
{
    f->status = err;
    uint64_t removed = f->mask2;
    if (!removed) {
        dist_frame_fail(f, err);
        return;
    }
    const kb_iatt_t *ref = &f->loc[0].reply.attr;
    kb_args_t a = { .gfid = f->args.gfid, .name = f->args.name, .newgfid = ref->gfid, .mode = ref->mode & 07777 };
    dist_sub_args(f, removed, &a);
    dist_fan_root(f, KB_FOP_MKDIR, removed, rmdir_restore_attr);
}

static void rmdir_restore_attr(dist_frame_t *f)
{
    const kb_iatt_t *ref = &f->loc[0].reply.attr;
    kb_args_t a = { .gfid = ref->gfid, .flags = KB_SET_MODE | KB_SET_UID | KB_SET_GID, .attr = *ref };
    dist_sub_args(f, f->mask2, &a);
    dist_fan_root(f, KB_FOP_SETATTR, f->mask2, rmdir_restore_layout);
}

static void rmdir_restore_layout(dist_frame_t *f)
{
    uint64_t m = f->lay_status == 0 ? f->mask2 & dist_layout_stored_mask(&f->lay) : 0;
    dist_layout_store(f, &f->loc[0].reply.attr.gfid, &f->lay, m, rmdir_restored);
}

static void rmdir_restored(dist_frame_t *f)
{
    dist_flog(f, KB_LOG_WARN, "rmdir '%s' refused on a set (%s); restored it on sets %llx", f->args.name,
            strerror(-f->status), (unsigned long long)f->mask2);
    dist_frame_fail(f, f->status);
}

static void rmdir_done(dist_frame_t *f)
{
    kb_reply_t *r = &f->sub[f->set].reply;
    if (r->status == -ENOENT && f->mask2)
        r->status = 0;                   /* it was gone there already; the others removed it */
    if (r->status < 0) {
        rmdir_undo(f, r->status);        /* ENOTEMPTY: files on the hashed set */
        return;
    }
    if (r->status == 0) {
        dist_ictx_del(f->p, &f->loc[0].reply.attr.gfid);
        dist_lcache_del(f->p, &f->loc[0].reply.attr.gfid);
    }
    dist_frame_unwind(f, r);
}

static void rmdir_hashed(dist_frame_t *f)
{
    dist_sub_args(f, dist_bit(f->set), &f->args);
    dist_fan(f, KB_FOP_RMDIR, dist_bit(f->set), rmdir_done);
}

void dist_rmdir(kb_call_t *call)
{
    dist_frame_t *f = dist_frame_new(call);
    if (!f) {
        kb_unwind_err(call, -ENOMEM);
        return;
    }
    if (dist_up_mask(f->p) != f->p->all) {
        dist_frame_fail(f, -ENOTCONN);
        return;
    }
    dist_locate(f, 0, &call->args->gfid, call->args->name, rmdir_located);
}

/* ---------------- rename ----------------
 * Files are renamed in place on the set that holds them (file header: no
 * copy, no pointer; the lookup fallback finds a name that now hashes
 * elsewhere). When the replaced name lives on another set, it is unlinked
 * there after the rename: the new name never stops referring to a file,
 * and a crash between the two leaves the old target visible (logged)
 * rather than losing the renamed file. Directories are renamed on every
 * set, the destination's hashed set first; if another set refuses, the
 * sets already renamed are renamed back. */

static void rfile_done(dist_frame_t *f);
static void rfile_unlinked(dist_frame_t *f);
static void rdir_first_done(dist_frame_t *f);
static void rdir_others_done(dist_frame_t *f);
static void rdir_reverted(dist_frame_t *f);

static void rename_dir(dist_frame_t *f, bool exists)
{
    dist_loc_t *dst = &f->loc[1];
    uint64_t up = dist_up_mask(f->p);
    if (exists && !dst->is_dir) {
        dist_frame_fail(f, (f->args.flags & DIST_RENAME_EXCHANGE) ? -EXDEV : -ENOTDIR);
        return;
    }
    if (up != f->p->all) {
        dist_frame_fail(f, -ENOTCONN);
        return;
    }
    f->set = pick(up, dst->hashed);
    dist_sub_args(f, dist_bit(f->set), &f->args);
    dist_fan(f, KB_FOP_RENAME, dist_bit(f->set), rdir_first_done);
}

static void rdir_first_done(dist_frame_t *f)
{
    kb_reply_t *r = &f->sub[f->set].reply;
    if (r->status < 0) {
        dist_frame_unwind(f, r);
        return;
    }
    f->out = *r;
    memset(r, 0, sizeof(*r));
    f->mask = f->p->all & ~dist_bit(f->set);
    dist_sub_args(f, f->mask, &f->args);
    dist_fan(f, KB_FOP_RENAME, f->mask, rdir_others_done);
}

static void rdir_others_done(dist_frame_t *f)
{
    uint64_t renamed = dist_bit(f->set);
    int err = 0;
    for (int i = 0; i < f->n; i++) {
        if (!(f->mask & dist_bit(i)))
            continue;
        int st = f->sub[i].reply.status;
        if (st == 0)
            renamed |= dist_bit(i);
        else if (st != -ENOENT && !err)
            err = st;
    }
    if (!err) {
        dist_frame_unwind(f, &f->out);
        return;
    }
    f->status = err;
    f->mask2 = renamed;
    kb_args_t back = { .gfid = f->args.gfid2, .name = f->args.name2, .gfid2 = f->args.gfid, .name2 = f->args.name,
                       .flags = f->args.flags & DIST_RENAME_EXCHANGE };
    dist_sub_args(f, renamed, &back);
    dist_fan_root(f, KB_FOP_RENAME, renamed, rdir_reverted);
}

static void rdir_reverted(dist_frame_t *f)
{
    for (int i = 0; i < f->n; i++)
        if ((f->mask2 & dist_bit(i)) && f->sub[i].reply.status < 0)
            dist_flog(f, KB_LOG_ERROR, "rename of directory '%s' failed on a set (%s) and cannot be undone on set %d: %s",
                   f->args.name, strerror(-f->status), i, strerror(-f->sub[i].reply.status));
    dist_frame_fail(f, f->status);
}

static void rename_file(dist_frame_t *f, bool exists)
{
    dist_loc_t *src = &f->loc[0], *dst = &f->loc[1];
    if (exists && dst->is_dir) {
        dist_frame_fail(f, (f->args.flags & DIST_RENAME_EXCHANGE) ? -EXDEV : -EISDIR);
        return;
    }
    if ((f->args.flags & DIST_RENAME_EXCHANGE) && dst->set != src->set) {
        dist_frame_fail(f, -EXDEV);
        return;
    }
    f->set = src->set;
    dist_sub_args(f, dist_bit(f->set), &f->args);
    dist_fan(f, KB_FOP_RENAME, dist_bit(f->set), rfile_done);
}

static void rfile_done(dist_frame_t *f)
{
    dist_loc_t *src = &f->loc[0], *dst = &f->loc[1];
    kb_reply_t *r = &f->sub[f->set].reply;
    if (r->status < 0) {
        dist_frame_unwind(f, r);
        return;
    }
    f->out = *r;
    memset(r, 0, sizeof(*r));
    dist_priv_t *p = f->p;
    dist_hint_del(p, &f->args.gfid, f->args.name);
    if (f->set != dst->hashed) {
        dist_hint_put(p, &f->args.gfid2, f->args.name2, f->set);
        p->n_renames_cross++;
    } else {
        dist_hint_del(p, &f->args.gfid2, f->args.name2);
    }
    bool replaced_elsewhere = dst->status == 0 && !(f->args.flags & DIST_RENAME_EXCHANGE) &&
                              dst->set != f->set && !kb_gfid_eq(&dst->reply.attr.gfid, &src->reply.attr.gfid);
    if (!replaced_elsewhere) {
        dist_frame_unwind(f, &f->out);
        return;
    }
    kb_args_t a = { .gfid = f->args.gfid2, .name = f->args.name2 };
    f->mask = dist_bit(dst->set);
    dist_sub_args(f, f->mask, &a);
    dist_fan(f, KB_FOP_UNLINK, f->mask, rfile_unlinked);
}

static void rfile_unlinked(dist_frame_t *f)
{
    int t = dist_first(f->mask), st = f->sub[t].reply.status;
    if (st < 0 && st != -ENOENT)
        dist_flog(f, KB_LOG_ERROR, "rename onto '%s' left the replaced file on set %d: %s", f->args.name2, t,
               strerror(-st));
    dist_frame_unwind(f, &f->out);
}

static void rename_dst_located(dist_frame_t *f)
{
    dist_loc_t *src = &f->loc[0], *dst = &f->loc[1];
    if (dst->status < 0 && dst->status != -ENOENT) {
        dist_frame_fail(f, dst->status);
        return;
    }
    bool exists = dst->status == 0;
    if ((f->args.flags & DIST_RENAME_NOREPLACE) && exists) {
        dist_frame_fail(f, -EEXIST);
        return;
    }
    if ((f->args.flags & DIST_RENAME_EXCHANGE) && !exists) {
        dist_frame_fail(f, -ENOENT);
        return;
    }
    if (src->is_dir)
        rename_dir(f, exists);
    else
        rename_file(f, exists);
}

static void rename_src_located(dist_frame_t *f)
{
    if (f->loc[0].status < 0) {
        dist_frame_fail(f, f->loc[0].status);
        return;
    }
    dist_locate(f, 1, &f->args.gfid2, f->args.name2, rename_dst_located);
}

void dist_rename(kb_call_t *call)
{
    dist_frame_t *f = dist_frame_new(call);
    if (!f) {
        kb_unwind_err(call, -ENOMEM);
        return;
    }
    dist_locate(f, 0, &call->args->gfid, call->args->name, rename_src_located);
}
