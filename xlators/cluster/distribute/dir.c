/*
 * dir.c — distribute's directory streams and statfs.
 *
 * opendir opens the directory on every up set; our fd holds one child fd
 * per set. readdir walks the sets in index order, each to its end: files
 * come from whichever set holds them, subdirectories (present on every
 * set) only from the first set of the fd, migration targets and the hidden
 * name of a migrating source (layout.h section 5) never. To tell
 * those apart the sets are always asked for attributes (readdirplus); they
 * are dropped again when the caller did not ask. Each entry's offset names (set, that set's offset)
 * (distribute.h), so a continuation resumes exactly where the caller
 * stopped, in the middle of a set or at the next one. A reply is empty
 * only at the true end: a batch whose entries were all filtered out is
 * followed by the next one before replying.
 */
#include <dirent.h>

#include "lib/log.h"
#include "xlators/cluster/distribute/distribute.h"

/* ---------------- opendir ---------------- */

static void opendir_done(dist_frame_t *f)
{
    dist_fd_t *fd = f->fd;
    uint64_t ok = 0;
    int err = 0;
    for (int i = 0; i < f->n; i++) {
        if (!(f->mask & dist_bit(i)))
            continue;
        const kb_reply_t *r = &f->sub[i].reply;
        if (r->status >= 0) {
            ok |= dist_bit(i);
            fd->cfds[i] = r->fd;
        } else if (!err || err == -ENOENT) {
            err = r->status;
        }
    }
    if (!ok) {
        dist_fd_free(f->p, fd);
        dist_frame_fail(f, err ? err : -ENOTCONN);
        return;
    }
    fd->mask = ok;
    kb_reply_t out = { .status = 0, .fd = (uint64_t)(uintptr_t)fd };
    dist_frame_unwind(f, &out);
}

void dist_opendir(kb_call_t *call)
{
    dist_frame_t *f = dist_frame_new(call);
    if (!f) {
        kb_unwind_err(call, -ENOMEM);
        return;
    }
    uint64_t up = dist_up_mask(f->p);
    if (!up) {
        dist_frame_fail(f, -ENOTCONN);
        return;
    }
    if (!(f->fd = dist_fd_new(f->p, true, &call->args->gfid))) {
        dist_frame_fail(f, -ENOMEM);
        return;
    }
    f->mask = up;
    dist_sub_args(f, up, &f->args);
    dist_fan(f, KB_FOP_OPENDIR, up, opendir_done);
}

/* ---------------- readdir ---------------- */

static void readdir_from(dist_frame_t *f, int set, uint64_t coff);

static bool is_dir_entry(const kb_dirent_t *e)
{
    return e->type == DT_DIR || (e->has_attr && S_ISDIR(e->attr.mode));
}

static void readdir_done(dist_frame_t *f)
{
    dist_fd_t *fd = f->fd;
    int set = f->set;
    kb_reply_t *r = &f->sub[set].reply;
    if (r->status < 0) {
        dist_frame_unwind(f, r);
        return;
    }
    if (r->ndirents == 0) {
        readdir_from(f, set + 1, 0);
        return;
    }
    bool first = set == dist_first(fd->mask), plus = f->args.flags & 1;
    kb_dirent_t *out = calloc(r->ndirents, sizeof(*out));
    if (!out) {
        dist_frame_fail(f, -ENOMEM);
        return;
    }
    uint32_t kept = 0;
    for (uint32_t k = 0; k < r->ndirents; k++) {
        const kb_dirent_t *e = &r->dirents[k];
        bool dir = is_dir_entry(e);
        if ((dir && !first) || (e->has_attr && dist_is_linkto(&e->attr)) ||
            (e->name && strncmp(e->name, DIST_MIG_PREFIX, strlen(DIST_MIG_PREFIX)) == 0))
            continue;
        out[kept] = *e;                  /* borrows the name: r lives until F is freed */
        if (!plus) {
            out[kept].has_attr = 0;
            memset(&out[kept].attr, 0, sizeof(out[kept].attr));
        }
        if (dist_doff_encode(fd, f->n, set, e->off, &out[kept].off) < 0) {
            free(out);
            dist_frame_fail(f, -ENOMEM);
            return;
        }
        if (e->has_attr && !kb_gfid_is_null(&e->gfid))
            dist_ictx_put(f->p, &e->gfid, set, dir);
        kept++;
    }
    if (!kept) {                         /* all filtered: read on, never reply empty early */
        uint64_t next = r->dirents[r->ndirents - 1].off;
        free(out);
        readdir_from(f, set, next);
        return;
    }
    kb_reply_t rep = { .status = (int32_t)kept, .dirents = out, .ndirents = kept };
    dist_frame_unwind(f, &rep);
    free(out);
}

/* Read set SET (or the next one the fd has) from its offset COFF. */
static void readdir_from(dist_frame_t *f, int set, uint64_t coff)
{
    dist_fd_t *fd = f->fd;
    while (set < f->n && !(fd->mask & dist_bit(set))) {
        set++;
        coff = 0;
    }
    if (set >= f->n) {
        kb_reply_t eof = { .status = 0 };
        dist_frame_unwind(f, &eof);
        return;
    }
    f->set = set;
    dist_sub_t *s = &f->sub[set];
    s->args = f->args;
    s->args.fd = fd->cfds[set];
    s->args.off = coff;
    s->args.flags |= 1;                  /* attributes: see the file header */
    dist_fan(f, KB_FOP_READDIR, dist_bit(set), readdir_done);
}

void dist_readdir(kb_call_t *call)
{
    dist_priv_t *p = call->xl->priv;
    dist_fd_t *fd = dist_fd_of(p, call->args->fd);
    if (!fd || !fd->is_dir) {
        kb_unwind_err(call, -EBADF);
        return;
    }
    int set = 0;
    uint64_t coff = 0;
    if (call->args->off && dist_doff_decode(fd, p->n, call->args->off, &set, &coff) < 0) {
        kb_unwind_err(call, -EINVAL);
        return;
    }
    dist_frame_t *f = dist_frame_new(call);
    if (!f) {
        kb_unwind_err(call, -ENOMEM);
        return;
    }
    f->fd = fd;
    readdir_from(f, set, coff);
}

/* ---------------- releasedir / fsyncdir ---------------- */

static void releasedir_done(dist_frame_t *f)
{
    dist_fd_free(f->p, f->fd);
    kb_reply_t r = { .status = 0 };
    dist_frame_unwind(f, &r);
}

static void fsyncdir_done(dist_frame_t *f)
{
    int err = 0;
    for (int i = 0; i < f->n; i++)
        if ((f->mask & dist_bit(i)) && f->sub[i].reply.status < 0 && !err)
            err = f->sub[i].reply.status;
    kb_reply_t r = { .status = err };
    dist_frame_unwind(f, &r);
}

/* Wind OP to every up set of the fd with that set's child fd. */
static void dir_fd_fan(kb_call_t *call, dist_step_fn next)
{
    dist_fd_t *fd = dist_fd_of(call->xl->priv, call->args->fd);
    if (!fd || !fd->is_dir) {
        kb_unwind_err(call, -EBADF);
        return;
    }
    dist_frame_t *f = dist_frame_new(call);
    if (!f) {
        if (call->op == KB_FOP_RELEASEDIR)
            dist_fd_free(call->xl->priv, fd);
        kb_unwind_err(call, -ENOMEM);
        return;
    }
    f->fd = fd;
    f->mask = fd->mask & dist_up_mask(f->p);
    dist_sub_args(f, f->mask, &f->args);
    for (int i = 0; i < f->n; i++)
        f->sub[i].args.fd = fd->cfds[i];
    dist_fan(f, call->op, f->mask, next);
}

void dist_releasedir(kb_call_t *call)
{
    dir_fd_fan(call, releasedir_done);
}

void dist_fsyncdir(kb_call_t *call)
{
    dir_fd_fan(call, fsyncdir_done);
}

/* ---------------- statfs: the sum of the sets ---------------- */

static void statfs_done(dist_frame_t *f)
{
    kb_statfs_t sum = { 0 };
    int err = 0, n = 0;
    for (int i = 0; i < f->n; i++) {
        if (!(f->mask & dist_bit(i)))
            continue;
        const kb_reply_t *r = &f->sub[i].reply;
        if (r->status < 0) {
            err = err ? err : r->status;
            continue;
        }
        const kb_statfs_t *s = &r->statfs;
        if (!n++) {
            sum.bsize = s->bsize;
            sum.frsize = s->frsize ? s->frsize : s->bsize;
            sum.namemax = s->namemax;
        }
        /* Blocks in the first set's fragment size. */
        uint64_t fr = s->frsize ? s->frsize : s->bsize;
        uint64_t scale_num = fr ? fr : 1, scale_den = sum.frsize ? sum.frsize : 1;
        sum.blocks += s->blocks * scale_num / scale_den;
        sum.bfree += s->bfree * scale_num / scale_den;
        sum.bavail += s->bavail * scale_num / scale_den;
        sum.files += s->files;
        sum.ffree += s->ffree;
        sum.favail += s->favail;
        sum.namemax = KB_MIN(sum.namemax, s->namemax);
    }
    if (!n) {
        dist_frame_fail(f, err ? err : -ENOTCONN);
        return;
    }
    kb_reply_t r = { .status = 0, .statfs = sum };
    dist_frame_unwind(f, &r);
}

void dist_statfs(kb_call_t *call)
{
    dist_frame_t *f = dist_frame_new(call);
    if (!f) {
        kb_unwind_err(call, -ENOMEM);
        return;
    }
    f->mask = dist_up_mask(f->p);
    kb_args_t a = *call->args;
    if (!kb_gfid_is_root(&a.gfid))
        a.gfid = kb_gfid_root;           /* a file's gfid lives on one set only */
    dist_sub_args(f, f->mask, &a);
    dist_fan(f, KB_FOP_STATFS, f->mask, statfs_done);
}
