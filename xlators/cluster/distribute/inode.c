/*
 * inode.c — distribute's ops that name an inode (by gfid) or an open
 * file (by fd): they go to the set that holds the object.
 *
 * Where a gfid lives comes from the inode cache (filled by lookup, create,
 * readdirplus) or, on a miss, from a nameless LOOKUP on every up set
 * ("discover"). The cache is a hint: a file answer of ENOENT/ESTALE from the
 * cached set (rebalance moved it) drops the entry and discovers once more.
 *
 * Directories exist on every set: reads go to the lowest up set, metadata
 * changes to every up set, locks (inodelk, entrylk, xattrop, ipc) to set 0
 * only, so every client serialises on one brick.
 *
 * Forwarded ops use the call's local block (no frame, no reply copy): the
 * child's reply is unwound as it is, with our fd in place of the child's.
 */
#include <fcntl.h>

#include "lib/log.h"
#include "xlators/cluster/distribute/distribute.h"

static bool is_miss(int st) { return st == -ENOENT || st == -ESTALE; }

static void discover(kb_call_t *call);
static void dir_modify(kb_call_t *call, dist_fd_t *fd);

/* Complete CALL with ERR, dropping the fd an OPEN made or a RELEASE ends. */
static void local_fail(kb_call_t *call, int err)
{
    dist_local_t *l = call->local;
    if (l->fd && (call->op == KB_FOP_OPEN || call->op == KB_FOP_RELEASE))
        dist_fd_free(call->xl->priv, l->fd);
    kb_unwind_err(call, err);
}

static void fwd_cbk(void *cookie, const kb_reply_t *r)
{
    kb_call_t *call = cookie;
    dist_local_t *l = call->local;
    dist_priv_t *p = call->xl->priv;
    if (l->locked) {
        l->locked = 0;
        dist_mig_unlock_async(call->xl, l->set, &l->args.gfid, l->lk_owner);
    }
    if (l->lk_nb && r->status == -EAGAIN) {
        l->lk_nb = 0;
        l->args.flags = call->args->flags;   /* it must wait: now blocking, without the migration lock */
        l->mig_retry = 1;
        dist_forward(call, l->set);
        return;
    }
    if (is_miss(r->status) && l->from_cache && !l->retried) {
        l->retried = 1;
        l->from_cache = 0;
        dist_ictx_del(p, &l->args.gfid);
        discover(call);
        return;
    }
    if (dist_mig_check(call, r))
        return;
    switch (call->op) {
    case KB_FOP_OPEN:
        if (r->status >= 0) {
            l->fd->set = l->set;
            l->fd->cfd = r->fd;
            l->fd->flags = l->args.flags & ~(uint32_t)(O_CREAT | O_EXCL | O_TRUNC);
            kb_reply_t out = *r;
            out.fd = (uint64_t)(uintptr_t)l->fd;
            kb_unwind(call, &out);
            return;
        }
        dist_fd_free(p, l->fd);
        break;
    case KB_FOP_RELEASE:
        dist_fd_free(p, l->fd);
        break;
    case KB_FOP_LINK:
        if (r->status >= 0) {
            dist_hint_put(p, &l->args.gfid2, l->args.name2, l->set);
            dist_ictx_put(p, &l->args.gfid, l->set, false);
        }
        break;
    default:
        break;
    }
    dist_unwind(call, r);
}

void dist_forward(kb_call_t *call, int set)
{
    dist_local_t *l = call->local;
    if (!dist_is_up(call->xl->priv, set)) {
        local_fail(call, -ENOTCONN);
        return;
    }
    l->set = set;
    kb_wind_from(call, call->xl->children[set], &l->args, fwd_cbk, call);
}

/* A lock request (LK taking a lock, not an unlock or a query). */
static bool lk_takes(const kb_call_t *call, const kb_args_t *a)
{
    uint32_t cmd = a->flags & KB_LK_CMD_MASK;
    return call->op == KB_FOP_LK && a->lock.type != KB_LK_UNLCK && (cmd == KB_LK_SETLK || cmd == KB_LK_SETLKW);
}

/* A file's op: a chmod, and a lock request, run under the migration lock
 * (read; migrate.c). A lock is then granted either before a migration
 * looks for holders (which leaves the file in place) or after it ended, on
 * the copy that is the file (the fd moves there first): never on a copy
 * being dropped. A blocking request is sent non-blocking under the lock;
 * if it must wait, it waits without it (fwd_cbk), so a lock queue never
 * holds a migration up — a lock granted later goes to a holder queued
 * behind one the migration saw, and the file stayed. */
static void forward_file(kb_call_t *call, int set)
{
    dist_local_t *l = call->local;
    if (!l->mig_retry && ((call->op == KB_FOP_SETATTR && (l->args.flags & KB_SET_MODE)) || lk_takes(call, &l->args))) {
        if (call->op == KB_FOP_LK && (l->args.flags & KB_LK_CMD_MASK) == KB_LK_SETLKW) {
            l->args.flags = (l->args.flags & ~KB_LK_CMD_MASK) | KB_LK_SETLK;
            l->lk_nb = 1;
        }
        dist_mig_modelock(call, set);
    } else {
        dist_forward(call, set);
    }
}

static void route(kb_call_t *call, int set, bool is_dir)
{
    dist_local_t *l = call->local;
    if (!is_dir) {
        forward_file(call, set);
        return;
    }
    switch (l->kind) {
    case DK_READ:
        dist_forward(call, dist_first(dist_up_mask(call->xl->priv)));
        break;
    case DK_LOCK:
        dist_forward(call, 0);
        break;
    case DK_MODIFY:
        dir_modify(call, NULL);
        break;
    }
}

/* ---------------- discover: where does a gfid live ---------------- */

static void discover_done(dist_frame_t *f)
{
    uint64_t dirs = 0, files = 0, marked = 0, links = 0, unreach = f->p->all & ~f->mask;
    int miss = 0, err = 0;
    for (int i = 0; i < f->n; i++) {
        if (!(f->mask & dist_bit(i)))
            continue;
        const kb_reply_t *r = &f->sub[i].reply;
        if (r->status == 0)
            *(S_ISDIR(r->attr.mode)             ? &dirs
              : dist_is_linkto(&r->attr)         ? &links
              : dist_is_migrating(&r->attr)      ? &marked
                                                 : &files) |= dist_bit(i);
        else if (r->status == -ENOTCONN)
            unreach |= dist_bit(i);
        else if (is_miss(r->status))
            miss = miss ? miss : r->status;
        else
            err = err ? err : r->status;
    }
    /* A migration target under construction is never the file. */
    uint64_t found = dirs ? dirs : files ? files : marked;
    (void)links;
    kb_call_t *call = f->call;
    if (!found) {
        dist_frame_drop(f);
        local_fail(call, err ? err : unreach ? -ENOTCONN : miss ? miss : -ESTALE);
        return;
    }
    int set = dist_first(found);
    dist_ictx_put(f->p, &f->args.gfid, set, dirs != 0);
    if (call->op == KB_FOP_LOOKUP) {     /* a nameless lookup: this is its answer */
        dist_frame_unwind(f, &f->sub[set].reply);
        return;
    }
    dist_frame_drop(f);
    route(call, set, dirs != 0);
}

static void discover(kb_call_t *call)
{
    dist_local_t *l = call->local;
    dist_frame_t *f = dist_frame_new(call);
    if (!f) {
        local_fail(call, -ENOMEM);
        return;
    }
    uint64_t up = dist_up_mask(f->p);
    kb_args_t a = { .gfid = l->args.gfid };
    f->mask = up;
    dist_sub_args(f, up, &a);
    dist_fan(f, KB_FOP_LOOKUP, up, discover_done);
}

/* ---------------- directory metadata: every up set ---------------- */

static void dir_modify_done(dist_frame_t *f)
{
    int ok = -1, err = -1, other = -1;
    for (int i = 0; i < f->n; i++) {
        if (!(f->mask & dist_bit(i)))
            continue;
        int st = f->sub[i].reply.status;
        if (st >= 0 && ok < 0)
            ok = i;
        else if (st < 0 && st != -ENOENT && st != -ENOTCONN && err < 0)
            err = i;
        else if (st < 0 && other < 0)
            other = i;
    }
    /* A real refusal wins (EPERM, ENOSPC...); a copy missing on one set does not. */
    int pick = err >= 0 ? err : ok >= 0 ? ok : other;
    if (pick < 0) {
        dist_frame_fail(f, -ENOTCONN);
        return;
    }
    dist_frame_unwind(f, &f->sub[pick].reply);
}

static void dir_modify(kb_call_t *call, dist_fd_t *fd)
{
    dist_local_t *l = call->local;
    dist_frame_t *f = dist_frame_new(call);
    if (!f) {
        kb_unwind_err(call, -ENOMEM);
        return;
    }
    uint64_t m = dist_up_mask(f->p) & (fd ? fd->mask : ~UINT64_C(0));
    f->mask = m;
    dist_sub_args(f, m, &l->args);
    for (int i = 0; fd && i < f->n; i++)
        f->sub[i].args.fd = fd->cfds[i];
    dist_fan(f, call->op, m, dir_modify_done);
}

/* ---------------- entry points ---------------- */

void dist_by_gfid(kb_call_t *call, enum dist_kind kind)
{
    dist_local_t *l = call->local;
    dist_priv_t *p = call->xl->priv;
    l->args = *call->args;
    l->kind = (uint8_t)kind;
    int set;
    bool is_dir;
    if (kb_gfid_is_root(&l->args.gfid)) {
        route(call, 0, true);
    } else if (kb_gfid_is_null(&l->args.gfid)) {
        dist_forward(call, 0);               /* not about an object (IPC listings) */
    } else if (dist_ictx_get(p, &l->args.gfid, &set, &is_dir)) {
        l->from_cache = 1;
        route(call, set, is_dir);
    } else {
        discover(call);
    }
}

void dist_nameless_lookup(kb_call_t *call)
{
    dist_by_gfid(call, DK_READ);
}

/* An op on an open file or directory of ours. */
static void by_fd(kb_call_t *call, enum dist_kind kind)
{
    dist_local_t *l = call->local;
    dist_priv_t *p = call->xl->priv;
    dist_fd_t *fd = dist_fd_of(p, call->args->fd);
    l->args = *call->args;
    l->kind = (uint8_t)kind;
    if (!fd) {
        kb_unwind_err(call, -EBADF);
        return;
    }
    if (!fd->is_dir) {
        l->fd = fd;
        l->args.fd = fd->cfd;
        forward_file(call, fd->set);
        return;
    }
    if (kind == DK_MODIFY) {
        dir_modify(call, fd);
        return;
    }
    int set = dist_first(fd->mask & dist_up_mask(p));
    if (set < 0) {
        kb_unwind_err(call, -ENOTCONN);
        return;
    }
    l->args.fd = fd->cfds[set];
    dist_forward(call, set);
}

void dist_inode_read(kb_call_t *call)
{
    if (kb_args_uses_fd(call->op, call->args))
        by_fd(call, DK_READ);
    else
        dist_by_gfid(call, DK_READ);
}

void dist_inode_modify(kb_call_t *call)
{
    if (kb_args_uses_fd(call->op, call->args))
        by_fd(call, DK_MODIFY);
    else
        dist_by_gfid(call, DK_MODIFY);
}

/* KB_IPC_INDEX_LIST (replicate stacked over distribute: its heal asks for
 * the index of a whole distributed volume): every set's listing, in set
 * order, sliced as one listing; reply.off = the sum of the totals. */
static void index_list_done(dist_frame_t *f)
{
    uint64_t total = 0;
    size_t bytes = 0;
    for (int i = 0; i < f->n; i++) {
        const kb_reply_t *r = &f->sub[i].reply;
        if (!(f->mask & dist_bit(i)))
            continue;
        if (r->status < 0) {
            dist_frame_unwind(f, r);
            return;
        }
        total += r->off;
        bytes += r->data ? r->data->len : 0;
    }
    kb_buf_t *all = kb_buf_new(bytes ? bytes : 1);
    if (!all) {
        dist_frame_fail(f, -ENOMEM);
        return;
    }
    for (int i = 0; i < f->n; i++) {
        const kb_buf_t *d = f->sub[i].reply.data;
        if ((f->mask & dist_bit(i)) && d && d->len) {
            memcpy(all->data + all->len, d->data, d->len);
            all->len += d->len;
        }
    }
    size_t n = all->len / 16, from = (size_t)KB_MIN(f->args.off, (uint64_t)n);
    size_t cnt = f->args.size ? (size_t)KB_MIN(f->args.size, (uint64_t)(n - from)) : n - from;
    kb_reply_t out = { .status = 0, .off = total, .data = cnt ? kb_buf_copy(all->data + from * 16, cnt * 16) : NULL };
    kb_buf_unref(all);
    if (cnt && !out.data) {
        dist_frame_fail(f, -ENOMEM);
        return;
    }
    dist_frame_unwind(f, &out);
    kb_buf_unref(out.data);
}

static void index_list(kb_call_t *call)
{
    dist_frame_t *f = dist_frame_new(call);
    if (!f) {
        kb_unwind_err(call, -ENOMEM);
        return;
    }
    uint64_t up = dist_up_mask(f->p);
    if (up != f->p->all) {
        dist_frame_fail(f, -ENOTCONN);  /* a partial index would look complete */
        return;
    }
    kb_args_t a = f->args;
    a.off = 0;
    a.size = f->args.size ? f->args.off + f->args.size : 0;
    f->mask = up;
    dist_sub_args(f, up, &a);
    dist_fan(f, KB_FOP_IPC, up, index_list_done);
}

void dist_inode_lock(kb_call_t *call)
{
    uint32_t code = call->op == KB_FOP_IPC ? call->args->flags : 0;
    if (code == KB_IPC_INDEX_LIST)
        index_list(call);
    else if (code == KB_IPC_DIST_FIX_LAYOUT)
        dist_fix_layout(call);
    else if (code == KB_IPC_DIST_MIGRATE)
        dist_migrate(call);
    else
        dist_by_gfid(call, DK_LOCK);
}

void dist_fd_op(kb_call_t *call)
{
    by_fd(call, call->op == KB_FOP_FALLOCATE ? DK_MODIFY : DK_READ);
}

void dist_open(kb_call_t *call)
{
    dist_local_t *l = call->local;
    l->fd = dist_fd_new(call->xl->priv, false, &call->args->gfid);
    if (!l->fd) {
        kb_unwind_err(call, -ENOMEM);
        return;
    }
    dist_by_gfid(call, DK_READ);
}

/* LINK: a hard link lives beside its inode, on the set holding it, whatever
 * set its new name hashes to (found by the lookup fallback, like a name
 * renamed in place). That set's brick refuses a name it holds; the new name
 * may also live on another set, so every up set is asked first, as for
 * every new name (entry.c, "the name is free on the other sets"). */
static void link_checked(dist_frame_t *f)
{
    for (int i = 0; i < f->n; i++) {
        const kb_reply_t *r = &f->sub[i].reply;
        if ((f->mask & dist_bit(i)) && r->status == 0 && !dist_is_linkto(&r->attr)) {
            dist_frame_fail(f, -EEXIST);
            return;
        }
    }
    kb_call_t *call = f->call;
    dist_frame_drop(f);
    dist_by_gfid(call, DK_READ);
}

void dist_link(kb_call_t *call)
{
    dist_frame_t *f = dist_frame_new(call);
    if (!f) {
        kb_unwind_err(call, -ENOMEM);
        return;
    }
    f->mask = dist_up_mask(f->p);
    kb_args_t a = { .gfid = call->args->gfid2, .name = call->args->name2 };
    dist_sub_args(f, f->mask, &a);
    dist_fan(f, KB_FOP_LOOKUP, f->mask, link_checked);
}

void dist_release(kb_call_t *call)
{
    dist_local_t *l = call->local;
    dist_fd_t *fd = dist_fd_of(call->xl->priv, call->args->fd);
    if (!fd || fd->is_dir) {
        kb_unwind_err(call, -EBADF);
        return;
    }
    l->args = *call->args;
    l->fd = fd;
    l->args.fd = fd->cfd;
    dist_forward(call, fd->set);
}
