/*
 * fop.c — the generated parts of the fop list: names and field masks,
 * copy/free helpers and the wire codec of arguments and replies.
 *
 * The codec writes exactly the fields fops.def names for an op, in one fixed
 * order (the bit order of KB_A_* / KB_R_*), so adding a field to an op is a
 * one-line change in fops.def. Bulk data (args.data / reply.data) is not
 * encoded here: it travels as the frame's bulk iovec (rpc/wire.h).
 */
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include "xlators/fop.h"

const struct kb_fop_info kb_fop_info[KB_FOP_MAX] = {
#define FOP(NAME, name, A, R, C) [KB_FOP_##NAME] = { #name, (A), (R), (C) },
#include "xlators/fops.def"
#undef FOP
};

/* STAT/SETATTR/TRUNCATE name their object by fd only when fd_valid; every
 * other op with KB_A_FD always uses its fd. */
bool kb_args_uses_fd(kb_op_t op, const kb_args_t *a)
{
    if ((unsigned)op >= KB_FOP_MAX || !(kb_fop_info[op].args & KB_A_FD))
        return false;
    if (op == KB_FOP_STAT || op == KB_FOP_SETATTR || op == KB_FOP_TRUNCATE)
        return a->fd_valid;
    return true;
}

/* ---------------- copy / free ---------------- */

int kb_args_copy(kb_args_t *dst, const kb_args_t *src)
{
    *dst = *src;
    dst->name = dst->name2 = NULL;
    if ((src->name && !(dst->name = strdup(src->name))) ||
        (src->name2 && !(dst->name2 = strdup(src->name2)))) {
        free(dst->name);
        dst->data = NULL;
        return -ENOMEM;
    }
    dst->data = kb_buf_ref(src->data);
    return 0;
}

void kb_args_clear(kb_args_t *a)
{
    free(a->name);
    free(a->name2);
    kb_buf_unref(a->data);
    memset(a, 0, sizeof(*a));
}

void kb_dirents_free(kb_dirent_t *d, uint32_t n)
{
    if (!d)
        return;
    for (uint32_t i = 0; i < n; i++)
        free(d[i].name);
    free(d);
}

int kb_reply_copy(kb_reply_t *dst, const kb_reply_t *src)
{
    *dst = *src;
    dst->dirents = NULL;
    dst->ndirents = 0;
    if (src->ndirents) {
        dst->dirents = calloc(src->ndirents, sizeof(kb_dirent_t));
        if (!dst->dirents)
            return -ENOMEM;
        for (uint32_t i = 0; i < src->ndirents; i++) {
            dst->dirents[i] = src->dirents[i];
            dst->dirents[i].name = kb_strdup0(src->dirents[i].name);
            if (src->dirents[i].name && !dst->dirents[i].name) {
                kb_dirents_free(dst->dirents, i);
                dst->dirents = NULL;
                return -ENOMEM;
            }
        }
        dst->ndirents = src->ndirents;
    }
    dst->data = kb_buf_ref(src->data);
    return 0;
}

void kb_reply_clear(kb_reply_t *r)
{
    kb_buf_unref(r->data);
    kb_dirents_free(r->dirents, r->ndirents);
    memset(r, 0, sizeof(*r));
}

/* ---------------- pieces ---------------- */

static void enc_gfid(kb_enc_t *e, const kb_gfid_t *g) { kb_enc_bytes(e, g->b, 16); }
static void dec_gfid(kb_dec_t *d, kb_gfid_t *g) { kb_dec_bytes(d, g->b, 16); }

void kb_iatt_encode(kb_enc_t *e, const kb_iatt_t *a)
{
    enc_gfid(e, &a->gfid);
    kb_enc_u64(e, a->ino);
    kb_enc_u32(e, a->mode);
    kb_enc_u32(e, a->nlink);
    kb_enc_u32(e, a->uid);
    kb_enc_u32(e, a->gid);
    kb_enc_u64(e, a->rdev);
    kb_enc_u64(e, a->size);
    kb_enc_u64(e, a->blocks);
    kb_enc_u32(e, a->blksize);
    kb_enc_u64(e, (uint64_t)a->atime_sec);
    kb_enc_u64(e, (uint64_t)a->mtime_sec);
    kb_enc_u64(e, (uint64_t)a->ctime_sec);
    kb_enc_u32(e, a->atime_nsec);
    kb_enc_u32(e, a->mtime_nsec);
    kb_enc_u32(e, a->ctime_nsec);
}

void kb_iatt_decode(kb_dec_t *d, kb_iatt_t *a)
{
    dec_gfid(d, &a->gfid);
    a->ino = kb_dec_u64(d);
    a->mode = kb_dec_u32(d);
    a->nlink = kb_dec_u32(d);
    a->uid = kb_dec_u32(d);
    a->gid = kb_dec_u32(d);
    a->rdev = kb_dec_u64(d);
    a->size = kb_dec_u64(d);
    a->blocks = kb_dec_u64(d);
    a->blksize = kb_dec_u32(d);
    a->atime_sec = (int64_t)kb_dec_u64(d);
    a->mtime_sec = (int64_t)kb_dec_u64(d);
    a->ctime_sec = (int64_t)kb_dec_u64(d);
    a->atime_nsec = kb_dec_u32(d);
    a->mtime_nsec = kb_dec_u32(d);
    a->ctime_nsec = kb_dec_u32(d);
}

static void enc_lock(kb_enc_t *e, const kb_lock_t *l)
{
    kb_enc_u32(e, l->type);
    kb_enc_u64(e, l->start);
    kb_enc_u64(e, l->len);
    kb_enc_u64(e, l->owner);
    kb_enc_u32(e, l->pid);
    kb_enc_u32(e, l->flock);
}

static void dec_lock(kb_dec_t *d, kb_lock_t *l)
{
    l->type = kb_dec_u32(d);
    l->start = kb_dec_u64(d);
    l->len = kb_dec_u64(d);
    l->owner = kb_dec_u64(d);
    l->pid = kb_dec_u32(d);
    l->flock = kb_dec_u32(d);
    if (l->type > KB_LK_UNLCK)
        d->err = -EBADMSG;
}

void kb_cred_encode(kb_enc_t *e, const kb_cred_t *c)
{
    uint32_t n = KB_MIN(c->ngroups, (uint32_t)KB_ARRAY_SIZE(c->groups));
    kb_enc_u32(e, c->uid);
    kb_enc_u32(e, c->gid);
    kb_enc_u32(e, c->pid);
    kb_enc_u64(e, c->lk_owner);
    kb_enc_u32(e, n);
    for (uint32_t i = 0; i < n; i++)
        kb_enc_u32(e, c->groups[i]);
}

void kb_cred_decode(kb_dec_t *d, kb_cred_t *c)
{
    memset(c, 0, sizeof(*c));
    c->uid = kb_dec_u32(d);
    c->gid = kb_dec_u32(d);
    c->pid = kb_dec_u32(d);
    c->lk_owner = kb_dec_u64(d);
    c->ngroups = kb_dec_u32(d);
    if (c->ngroups > KB_ARRAY_SIZE(c->groups)) {
        d->err = -EBADMSG;
        c->ngroups = 0;
        return;
    }
    for (uint32_t i = 0; i < c->ngroups; i++)
        c->groups[i] = kb_dec_u32(d);
}

/* ---------------- arguments ---------------- */

void kb_args_encode(kb_enc_t *e, kb_op_t op, const kb_args_t *a)
{
    uint32_t m = kb_fop_info[op].args;
    if (m & KB_A_GFID) enc_gfid(e, &a->gfid);
    if (m & KB_A_NAME) kb_enc_str(e, a->name);
    if (m & KB_A_GFID2) enc_gfid(e, &a->gfid2);
    if (m & KB_A_NAME2) kb_enc_str(e, a->name2);
    if (m & KB_A_NEWGFID) enc_gfid(e, &a->newgfid);
    if (m & KB_A_FD) { kb_enc_u64(e, a->fd); kb_enc_u8(e, a->fd_valid); }
    if (m & KB_A_OFF) kb_enc_u64(e, a->off);
    if (m & KB_A_SIZE) kb_enc_u64(e, a->size);
    if (m & KB_A_FLAGS) kb_enc_u32(e, a->flags);
    if (m & KB_A_MODE) kb_enc_u32(e, a->mode);
    if (m & KB_A_RDEV) kb_enc_u64(e, a->rdev);
    if (m & KB_A_ATTR) kb_iatt_encode(e, &a->attr);
    if (m & KB_A_LOCK) enc_lock(e, &a->lock);
}

/* Name limits per op: entry names are NAME_MAX; name2 is a path for
 * SYMLINK (target) and a name elsewhere. */
static uint32_t name2_max(kb_op_t op) { return op == KB_FOP_SYMLINK ? KB_PATH_MAX : KB_NAME_MAX; }

int kb_args_decode(kb_dec_t *d, kb_op_t op, kb_args_t *a, kb_buf_t *bulk)
{
    memset(a, 0, sizeof(*a));
    if ((unsigned)op >= KB_FOP_MAX)
        return -EBADMSG;
    uint32_t m = kb_fop_info[op].args;
    if (m & KB_A_GFID) dec_gfid(d, &a->gfid);
    if (m & KB_A_NAME) kb_dec_str(d, &a->name, KB_NAME_MAX);
    if (m & KB_A_GFID2) dec_gfid(d, &a->gfid2);
    if (m & KB_A_NAME2) kb_dec_str(d, &a->name2, name2_max(op));
    if (m & KB_A_NEWGFID) dec_gfid(d, &a->newgfid);
    if (m & KB_A_FD) { a->fd = kb_dec_u64(d); a->fd_valid = kb_dec_u8(d); }
    if (m & KB_A_OFF) a->off = kb_dec_u64(d);
    if (m & KB_A_SIZE) a->size = kb_dec_u64(d);
    if (m & KB_A_FLAGS) a->flags = kb_dec_u32(d);
    if (m & KB_A_MODE) a->mode = kb_dec_u32(d);
    if (m & KB_A_RDEV) a->rdev = kb_dec_u64(d);
    if (m & KB_A_ATTR) kb_iatt_decode(d, &a->attr);
    if (m & KB_A_LOCK) dec_lock(d, &a->lock);
    if (!d->err && kb_dec_left(d) != 0)
        d->err = -EBADMSG;            /* trailing garbage */
    if (!d->err && bulk && !(m & KB_A_DATA))
        d->err = -EBADMSG;            /* bulk on an op that takes none */
    if (!d->err && (m & KB_A_SIZE) && a->size > KB_DATA_MAX &&
        (op == KB_FOP_READ || op == KB_FOP_READDIR || op == KB_FOP_GETXATTR || op == KB_FOP_LISTXATTR))
        d->err = -EMSGSIZE;           /* would make the brick allocate too much */
    if (d->err) {
        free(a->name);
        free(a->name2);
        memset(a, 0, sizeof(*a));
        return d->err;
    }
    a->data = kb_buf_ref(bulk);
    return 0;
}

/* ---------------- replies ---------------- */

static void enc_dirents(kb_enc_t *e, const kb_reply_t *r)
{
    kb_enc_u32(e, r->ndirents);
    for (uint32_t i = 0; i < r->ndirents; i++) {
        const kb_dirent_t *de = &r->dirents[i];
        kb_enc_u64(e, de->off);
        kb_enc_u32(e, de->type);
        enc_gfid(e, &de->gfid);
        kb_enc_str(e, de->name);
        kb_enc_u8(e, de->has_attr);
        if (de->has_attr)
            kb_iatt_encode(e, &de->attr);
    }
}

static void dec_dirents(kb_dec_t *d, kb_reply_t *r)
{
    uint32_t n = kb_dec_u32(d);
    /* Each entry takes at least 34 bytes: refuse counts the input cannot hold
     * before allocating. */
    if (d->err || n > KB_DIRENTS_MAX || (uint64_t)n * 34 > kb_dec_left(d)) {
        d->err = -EBADMSG;
        return;
    }
    r->dirents = calloc(n ? n : 1, sizeof(kb_dirent_t));
    if (!r->dirents) {
        d->err = -ENOMEM;
        return;
    }
    for (uint32_t i = 0; i < n && !d->err; i++) {
        kb_dirent_t *de = &r->dirents[i];
        de->off = kb_dec_u64(d);
        de->type = kb_dec_u32(d);
        dec_gfid(d, &de->gfid);
        kb_dec_str(d, &de->name, KB_NAME_MAX);
        de->has_attr = kb_dec_u8(d);
        if (de->has_attr)
            kb_iatt_decode(d, &de->attr);
        if (!d->err && !de->name)
            d->err = -EBADMSG;
        r->ndirents = i + 1;
    }
}

static void enc_statfs(kb_enc_t *e, const kb_statfs_t *s)
{
    kb_enc_u64(e, s->bsize); kb_enc_u64(e, s->frsize); kb_enc_u64(e, s->blocks);
    kb_enc_u64(e, s->bfree); kb_enc_u64(e, s->bavail); kb_enc_u64(e, s->files);
    kb_enc_u64(e, s->ffree); kb_enc_u64(e, s->favail); kb_enc_u64(e, s->namemax);
}

static void dec_statfs(kb_dec_t *d, kb_statfs_t *s)
{
    s->bsize = kb_dec_u64(d); s->frsize = kb_dec_u64(d); s->blocks = kb_dec_u64(d);
    s->bfree = kb_dec_u64(d); s->bavail = kb_dec_u64(d); s->files = kb_dec_u64(d);
    s->ffree = kb_dec_u64(d); s->favail = kb_dec_u64(d); s->namemax = kb_dec_u64(d);
}

/* status travels in the frame header; an error reply carries rflags only. */
void kb_reply_encode(kb_enc_t *e, kb_op_t op, const kb_reply_t *r)
{
    kb_enc_u32(e, r->rflags);
    if (r->status < 0)
        return;
    uint32_t m = kb_fop_info[op].reply;
    if (m & KB_R_ATTR) kb_iatt_encode(e, &r->attr);
    if (m & KB_R_FD) kb_enc_u64(e, r->fd);
    if (m & KB_R_DIRENTS) enc_dirents(e, r);
    if (m & KB_R_STATFS) enc_statfs(e, &r->statfs);
    if (m & KB_R_OFF) kb_enc_u64(e, r->off);
    if (m & KB_R_LOCK) enc_lock(e, &r->lock);
    if (r->rflags & KB_RF_PATTR) kb_iatt_encode(e, &r->pattr);
}

int kb_reply_decode(kb_dec_t *d, kb_op_t op, kb_reply_t *r, kb_buf_t *bulk)
{
    int32_t status = r->status;   /* set by the caller from the header */
    memset(r, 0, sizeof(*r));
    r->status = status;
    if ((unsigned)op >= KB_FOP_MAX)
        return -EBADMSG;
    r->rflags = kb_dec_u32(d);
    uint32_t m = kb_fop_info[op].reply;
    if (status >= 0) {
        if (m & KB_R_ATTR) kb_iatt_decode(d, &r->attr);
        if (m & KB_R_FD) r->fd = kb_dec_u64(d);
        if (m & KB_R_DIRENTS) dec_dirents(d, r);
        if (m & KB_R_STATFS) dec_statfs(d, &r->statfs);
        if (m & KB_R_OFF) r->off = kb_dec_u64(d);
        if (m & KB_R_LOCK) dec_lock(d, &r->lock);
        if (r->rflags & KB_RF_PATTR) kb_iatt_decode(d, &r->pattr);
    }
    if (!d->err && kb_dec_left(d) != 0)
        d->err = -EBADMSG;
    if (!d->err && bulk && (!(m & KB_R_DATA) || status < 0))
        d->err = -EBADMSG;
    if (d->err) {
        int err = d->err;
        kb_dirents_free(r->dirents, r->ndirents);
        memset(r, 0, sizeof(*r));
        r->status = status;
        return err;
    }
    r->data = kb_buf_ref(bulk);
    return 0;
}

/* ---------------- stat ---------------- */

void kb_iatt_from_stat(kb_iatt_t *ia, const struct stat *st, const kb_gfid_t *gfid)
{
    memset(ia, 0, sizeof(*ia));
    if (gfid)
        ia->gfid = *gfid;
    ia->ino = st->st_ino;
    ia->mode = st->st_mode;
    ia->nlink = (uint32_t)st->st_nlink;
    ia->uid = st->st_uid;
    ia->gid = st->st_gid;
    ia->rdev = st->st_rdev;
    ia->size = (uint64_t)st->st_size;
    ia->blocks = (uint64_t)st->st_blocks;
    ia->blksize = (uint32_t)st->st_blksize;
    ia->atime_sec = st->st_atim.tv_sec; ia->atime_nsec = (uint32_t)st->st_atim.tv_nsec;
    ia->mtime_sec = st->st_mtim.tv_sec; ia->mtime_nsec = (uint32_t)st->st_mtim.tv_nsec;
    ia->ctime_sec = st->st_ctim.tv_sec; ia->ctime_nsec = (uint32_t)st->st_ctim.tv_nsec;
}

uint64_t kb_gfid_to_ino(const kb_gfid_t *g)
{
    if (kb_gfid_is_root(g))
        return 1;
    /* The last 8 bytes of a random uuid are random enough; never 0 or 1. */
    uint64_t v = 0;
    for (int i = 8; i < 16; i++)
        v = v << 8 | g->b[i];
    v ^= (uint64_t)g->b[0] << 56 | (uint64_t)g->b[1] << 48;
    return v < 2 ? v + 2 : v;
}

void kb_iatt_to_stat(const kb_iatt_t *ia, struct stat *st)
{
    memset(st, 0, sizeof(*st));
    st->st_ino = kb_gfid_to_ino(&ia->gfid);
    st->st_mode = ia->mode;
    st->st_nlink = ia->nlink;
    st->st_uid = ia->uid;
    st->st_gid = ia->gid;
    st->st_rdev = ia->rdev;
    st->st_size = (off_t)ia->size;
    st->st_blocks = (blkcnt_t)ia->blocks;
    st->st_blksize = ia->blksize ? ia->blksize : 4096;
    st->st_atim.tv_sec = ia->atime_sec; st->st_atim.tv_nsec = ia->atime_nsec;
    st->st_mtim.tv_sec = ia->mtime_sec; st->st_mtim.tv_nsec = ia->mtime_nsec;
    st->st_ctim.tv_sec = ia->ctime_sec; st->st_ctim.tv_nsec = ia->ctime_nsec;
}
