/*
 * mock.c — the in-memory brick of mock.h ("test/dist_mock").
 *
 * Small and linear (tests hold at most a few thousand objects). Each op is
 * a function of (mock state, args) -> reply, run when the call arrives or,
 * while held, when the test releases it, so held calls change the
 * namespace in the order they are completed.
 */
#include <dirent.h>
#include <stdio.h>
#include <sys/stat.h>

#include "tests/unit/xlators/cluster/distribute/mock.h"
#include "xlators/changelog.h"

typedef struct mobj {
    kb_gfid_t gfid;
    uint32_t mode, uid, gid, nlink;
    uint64_t size;
    uint8_t *data;
    char *target;
    uint8_t layout[64];
    size_t layout_len;
    bool used;
} mobj_t;

typedef struct ment {
    kb_gfid_t parent, gfid;
    char *name;
    uint64_t seq;             /* readdir cookie: insertion order, unique per brick */
    bool used;
} ment_t;

typedef struct mfd { kb_gfid_t gfid; bool used, is_dir; } mfd_t;

/* INODELK: whole-file locks per (gfid, domain), owner = args.lock.owner. */
typedef struct mlock {
    kb_gfid_t gfid;
    char domain[64];
    uint64_t owner;
    uint32_t type;
    kb_call_t *waiter;        /* NULL: granted */
    struct mlock *next;
} mlock_t;

struct dist_mock {
    mobj_t *objs;
    size_t nobjs;
    ment_t *ents;
    size_t nents;
    mfd_t fds[256];
    uint64_t next_seq;
    unsigned calls[KB_FOP_MAX];
    int fail[KB_FOP_MAX];
    bool down, hold, big_off;
    unsigned batch;
    kb_call_t **held;
    size_t nheld, capheld;
    kb_gfid_t *index;         /* KB_IPC_INDEX_LIST answer, sorted by the test */
    size_t nindex;
    mlock_t *locks;           /* granted first-come, then waiters, in order */
    dist_mock_hook_fn hook;
    void *hook_arg;
};

/* ---------------- namespace ---------------- */

static mobj_t *obj_get(const dist_mock_t *m, const kb_gfid_t *g)
{
    for (size_t i = 0; i < m->nobjs; i++)
        if (m->objs[i].used && kb_gfid_eq(&m->objs[i].gfid, g))
            return &m->objs[i];
    return NULL;
}

static mobj_t *obj_new(dist_mock_t *m, const kb_gfid_t *g, uint32_t mode)
{
    mobj_t *o = NULL;
    for (size_t i = 0; i < m->nobjs && !o; i++)
        if (!m->objs[i].used)
            o = &m->objs[i];
    if (!o) {
        mobj_t *a = realloc(m->objs, (m->nobjs + 1) * sizeof(*a));
        if (!a)
            return NULL;
        m->objs = a;
        o = &m->objs[m->nobjs++];
    }
    *o = (mobj_t){ .gfid = *g, .mode = mode, .nlink = 1, .used = true };
    return o;
}

static void obj_free(mobj_t *o)
{
    free(o->data);
    free(o->target);
    memset(o, 0, sizeof(*o));
}

static ment_t *ent_get(const dist_mock_t *m, const kb_gfid_t *parent, const char *name)
{
    for (size_t i = 0; i < m->nents; i++) {
        ment_t *e = &m->ents[i];
        if (e->used && kb_gfid_eq(&e->parent, parent) && strcmp(e->name, name) == 0)
            return e;
    }
    return NULL;
}

static int ent_add(dist_mock_t *m, const kb_gfid_t *parent, const char *name, const kb_gfid_t *g)
{
    ment_t *e = NULL;
    for (size_t i = 0; i < m->nents && !e; i++)
        if (!m->ents[i].used)
            e = &m->ents[i];
    if (!e) {
        ment_t *a = realloc(m->ents, (m->nents + 1) * sizeof(*a));
        if (!a)
            return -ENOMEM;
        m->ents = a;
        e = &m->ents[m->nents++];
    }
    *e = (ment_t){ .parent = *parent, .gfid = *g, .name = strdup(name), .seq = ++m->next_seq, .used = true };
    return e->name ? 0 : -ENOMEM;
}

static void ent_del(ment_t *e)
{
    free(e->name);
    memset(e, 0, sizeof(*e));
}

static size_t children_of(const dist_mock_t *m, const kb_gfid_t *dir)
{
    size_t n = 0;
    for (size_t i = 0; i < m->nents; i++)
        n += m->ents[i].used && kb_gfid_eq(&m->ents[i].parent, dir);
    return n;
}

static void unref_obj(dist_mock_t *m, const kb_gfid_t *g)
{
    mobj_t *o = obj_get(m, g);
    if (o && --o->nlink == 0)
        obj_free(o);
}

static void fill_attr(const mobj_t *o, kb_iatt_t *a)
{
    memset(a, 0, sizeof(*a));
    a->gfid = o->gfid;
    a->ino = kb_gfid_hash(&o->gfid);
    a->mode = o->mode;
    a->nlink = o->nlink;
    a->uid = o->uid;
    a->gid = o->gid;
    a->size = o->size;
    a->blksize = 4096;
}

/* ---------------- ops ---------------- */

static int reply_attr(const dist_mock_t *m, const kb_gfid_t *g, kb_reply_t *r)
{
    const mobj_t *o = obj_get(m, g);
    if (!o)
        return -ENOENT;
    fill_attr(o, &r->attr);
    return 0;
}

static int parent_dir(const dist_mock_t *m, const kb_gfid_t *g)
{
    const mobj_t *p = obj_get(m, g);
    return !p ? -ENOENT : !S_ISDIR(p->mode) ? -ENOTDIR : 0;
}

static int fd_new(dist_mock_t *m, const kb_gfid_t *g, bool is_dir, kb_reply_t *r)
{
    for (size_t i = 0; i < KB_ARRAY_SIZE(m->fds); i++)
        if (!m->fds[i].used) {
            m->fds[i] = (mfd_t){ .gfid = *g, .used = true, .is_dir = is_dir };
            r->fd = 1000 + i;
            return 0;
        }
    return -EMFILE;
}

static mfd_t *fd_get(dist_mock_t *m, uint64_t fd)
{
    if (fd < 1000 || fd - 1000 >= KB_ARRAY_SIZE(m->fds) || !m->fds[fd - 1000].used)
        return NULL;
    return &m->fds[fd - 1000];
}

static int op_make(dist_mock_t *m, kb_op_t op, const kb_args_t *a, kb_reply_t *r)
{
    int rc = parent_dir(m, &a->gfid);
    if (rc)
        return rc;
    if (ent_get(m, &a->gfid, a->name) || obj_get(m, &a->newgfid))
        return -EEXIST;
    uint32_t mode = op == KB_FOP_MKDIR ? S_IFDIR | (a->mode & 07777)
                  : op == KB_FOP_SYMLINK ? S_IFLNK | 0777
                  : op == KB_FOP_CREATE ? S_IFREG | (a->mode & 07777) : a->mode;
    mobj_t *o = obj_new(m, &a->newgfid, mode);
    if (!o)
        return -ENOMEM;
    if (op == KB_FOP_SYMLINK)
        o->target = strdup(a->name2 ? a->name2 : "");
    if ((rc = ent_add(m, &a->gfid, a->name, &a->newgfid)))
        return rc;
    fill_attr(o, &r->attr);
    return op == KB_FOP_CREATE ? fd_new(m, &a->newgfid, false, r) : 0;
}

static int op_lookup(dist_mock_t *m, const kb_args_t *a, kb_reply_t *r)
{
    if (!a->name)
        return reply_attr(m, &a->gfid, r);
    int rc = parent_dir(m, &a->gfid);
    if (rc)
        return rc;
    const ment_t *e = ent_get(m, &a->gfid, a->name);
    return e ? reply_attr(m, &e->gfid, r) : -ENOENT;
}

static int op_setattr(dist_mock_t *m, const kb_args_t *a, kb_reply_t *r)
{
    kb_gfid_t g = a->gfid;
    if (a->fd_valid) {
        mfd_t *f = fd_get(m, a->fd);
        if (!f)
            return -EBADF;
        g = f->gfid;
    }
    mobj_t *o = obj_get(m, &g);
    if (!o)
        return -ENOENT;
    if (a->flags & KB_SET_MODE)
        o->mode = (o->mode & S_IFMT) | (a->attr.mode & 07777);
    if (a->flags & KB_SET_UID)
        o->uid = a->attr.uid;
    if (a->flags & KB_SET_GID)
        o->gid = a->attr.gid;
    if (a->flags & KB_SET_SIZE)
        o->size = a->attr.size;
    fill_attr(o, &r->attr);
    return 0;
}

static int op_unlink(dist_mock_t *m, const kb_args_t *a, bool dir)
{
    ment_t *e = ent_get(m, &a->gfid, a->name);
    if (!e)
        return -ENOENT;
    mobj_t *o = obj_get(m, &e->gfid);
    if (o && S_ISDIR(o->mode) != dir)
        return dir ? -ENOTDIR : -EISDIR;
    if (dir && children_of(m, &e->gfid))
        return -ENOTEMPTY;
    kb_gfid_t g = e->gfid;
    ent_del(e);
    unref_obj(m, &g);
    return 0;
}

static int op_rename(dist_mock_t *m, const kb_args_t *a, kb_reply_t *r)
{
    ment_t *s = ent_get(m, &a->gfid, a->name);
    if (!s)
        return -ENOENT;
    int rc = parent_dir(m, &a->gfid2);
    if (rc)
        return rc;
    ment_t *d = ent_get(m, &a->gfid2, a->name2);
    mobj_t *so = obj_get(m, &s->gfid);
    if (d && d != s) {
        if (a->flags & 1)
            return -EEXIST;
        if (a->flags & 2) {                   /* exchange */
            kb_gfid_t t = s->gfid;
            s->gfid = d->gfid;
            d->gfid = t;
            return reply_attr(m, &d->gfid, r);
        }
        mobj_t *dobj = obj_get(m, &d->gfid);
        bool sdir = so && S_ISDIR(so->mode), ddir = dobj && S_ISDIR(dobj->mode);
        if (sdir && !ddir)
            return -ENOTDIR;
        if (!sdir && ddir)
            return -EISDIR;
        if (ddir && children_of(m, &d->gfid))
            return -ENOTEMPTY;
        kb_gfid_t dg = d->gfid;
        ent_del(d);
        unref_obj(m, &dg);
    } else if (a->flags & 2) {
        return -ENOENT;
    }
    kb_gfid_t g = s->gfid;
    ent_del(s);
    if ((rc = ent_add(m, &a->gfid2, a->name2, &g)))
        return rc;
    return reply_attr(m, &g, r);
}

static int op_link(dist_mock_t *m, const kb_args_t *a, kb_reply_t *r)
{
    mobj_t *o = obj_get(m, &a->gfid);
    if (!o)
        return -ENOENT;
    if (S_ISDIR(o->mode))
        return -EPERM;
    int rc = parent_dir(m, &a->gfid2);
    if (rc)
        return rc;
    if (ent_get(m, &a->gfid2, a->name2))
        return -EEXIST;
    if ((rc = ent_add(m, &a->gfid2, a->name2, &a->gfid)))
        return rc;
    o->nlink++;
    fill_attr(o, &r->attr);
    return 0;
}

static uint64_t cookie_of(const dist_mock_t *m, uint64_t seq)
{
    return m->big_off ? (UINT64_C(1) << 62) | seq : seq;
}

static int op_readdir(dist_mock_t *m, const kb_args_t *a, kb_reply_t *r)
{
    mfd_t *f = fd_get(m, a->fd);
    if (!f || !f->is_dir)
        return -EBADF;
    uint64_t from = a->off & ((UINT64_C(1) << 62) - 1);
    unsigned cap = m->batch ? m->batch : 1000;
    r->dirents = calloc(cap, sizeof(kb_dirent_t));
    if (!r->dirents)
        return -ENOMEM;
    uint64_t last = from;
    while (r->ndirents < cap) {
        const ment_t *best = NULL;     /* smallest seq above LAST in this dir */
        for (size_t i = 0; i < m->nents; i++) {
            const ment_t *e = &m->ents[i];
            if (e->used && kb_gfid_eq(&e->parent, &f->gfid) && e->seq > last && (!best || e->seq < best->seq))
                best = e;
        }
        if (!best)
            break;
        kb_dirent_t *d = &r->dirents[r->ndirents++];
        const mobj_t *o = obj_get(m, &best->gfid);
        d->name = strdup(best->name);
        d->off = cookie_of(m, best->seq);
        d->gfid = best->gfid;
        d->type = o ? IFTODT(o->mode) : DT_UNKNOWN;
        if ((a->flags & 1) && o) {
            fill_attr(o, &d->attr);
            d->has_attr = 1;
        }
        last = best->seq;
    }
    return (int)r->ndirents;
}

static int op_io(dist_mock_t *m, kb_op_t op, const kb_args_t *a, kb_reply_t *r)
{
    mfd_t *f = fd_get(m, a->fd);
    mobj_t *o = f ? obj_get(m, &f->gfid) : NULL;
    if (!o)
        return -EBADF;
    if (op == KB_FOP_WRITE) {
        size_t len = a->data ? a->data->len : 0;
        uint64_t end = a->off + len;
        if (end > o->size) {
            uint8_t *d = realloc(o->data, end);
            if (!d)
                return -ENOMEM;
            memset(d + o->size, 0, end - o->size);
            o->data = d;
            o->size = end;
        }
        if (len)
            memcpy(o->data + a->off, a->data->data, len);
        fill_attr(o, &r->attr);
        return (int)len;
    }
    uint64_t n = a->off >= o->size ? 0 : KB_MIN(a->size, o->size - a->off);
    r->data = kb_buf_copy(o->data ? o->data + a->off : (const uint8_t *)"", n);
    return r->data ? (int)n : -ENOMEM;
}

static int op_ipc(dist_mock_t *m, const kb_args_t *a, kb_reply_t *r)
{
    mobj_t *o = obj_get(m, &a->gfid);
    if (a->flags == KB_IPC_INDEX_LIST) {
        size_t from = (size_t)KB_MIN(a->off, (uint64_t)m->nindex);
        size_t cnt = a->size ? (size_t)KB_MIN(a->size, (uint64_t)(m->nindex - from)) : m->nindex - from;
        r->off = m->nindex;
        if (cnt && !(r->data = kb_buf_copy(m->index + from, cnt * 16)))
            return -ENOMEM;
        return 0;
    }
    if (a->flags != KB_IPC_LAYOUT_GET && a->flags != KB_IPC_LAYOUT_SET)
        return -ENOSYS;
    if (!o)
        return -ENOENT;
    if (!S_ISDIR(o->mode))
        return -ENOTDIR;
    if (a->flags == KB_IPC_LAYOUT_GET) {
        r->data = kb_buf_copy(o->layout, o->layout_len);
        return r->data ? 0 : -ENOMEM;
    }
    if (!a->data || a->data->len != KB_LAYOUT_DISK_BYTES)
        return -EINVAL;
    memcpy(o->layout, a->data->data, a->data->len);
    o->layout_len = a->data->len;
    return 0;
}

static bool lock_conflicts(const dist_mock_t *m, const mlock_t *req, const mlock_t *upto)
{
    for (const mlock_t *k = m->locks; k && k != upto; k = k->next)
        if (kb_gfid_eq(&k->gfid, &req->gfid) && strcmp(k->domain, req->domain) == 0 && k->owner != req->owner &&
            (k->type == KB_LK_WRLCK || req->type == KB_LK_WRLCK))
            return true;
    return false;
}

static void answer_with(kb_call_t *call, int status)
{
    kb_reply_t r = { .status = status };
    kb_unwind(call, &r);
}

/* After an unlock: grant the waiters that no longer conflict, in order. */
static void locks_wake(dist_mock_t *m)
{
    for (bool again = true; again;) {
        again = false;
        for (mlock_t *k = m->locks; k; k = k->next)
            if (k->waiter && !lock_conflicts(m, k, k)) {
                kb_call_t *c = k->waiter;
                k->waiter = NULL;
                answer_with(c, 0);
                again = true;
                break;                 /* the callback may have changed the list */
            }
    }
}

/* Returns 1 when CALL now waits (answered later). */
static int op_inodelk(dist_mock_t *m, kb_call_t *call, int *status)
{
    const kb_args_t *a = call->args;
    const char *dom = a->name ? a->name : "";
    if (a->lock.type == KB_LK_UNLCK) {
        for (mlock_t **pp = &m->locks; *pp;) {
            mlock_t *k = *pp;
            if (!k->waiter && kb_gfid_eq(&k->gfid, &a->gfid) && strcmp(k->domain, dom) == 0 &&
                k->owner == a->lock.owner) {
                *pp = k->next;
                free(k);
            } else {
                pp = &k->next;
            }
        }
        *status = 0;
        locks_wake(m);
        return 0;
    }
    mlock_t *req = kb_zalloc(sizeof(*req));
    if (!req) {
        *status = -ENOMEM;
        return 0;
    }
    req->gfid = a->gfid;
    snprintf(req->domain, sizeof(req->domain), "%s", dom);
    req->owner = a->lock.owner;
    req->type = a->lock.type;
    bool busy = lock_conflicts(m, req, NULL);
    if (busy && a->flags != KB_LK_SETLKW) {
        free(req);
        *status = -EAGAIN;
        return 0;
    }
    mlock_t **pp = &m->locks;
    while (*pp)
        pp = &(*pp)->next;
    *pp = req;
    if (busy) {
        req->waiter = call;
        return 1;
    }
    *status = 0;
    return 0;
}

static uint64_t fnv64(const uint8_t *p, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

/* One 8-byte digest per block of args.flags bytes; reply.off = bytes covered. */
static int op_rchecksum(dist_mock_t *m, const kb_args_t *a, kb_reply_t *r)
{
    mfd_t *f = fd_get(m, a->fd);
    mobj_t *o = f ? obj_get(m, &f->gfid) : NULL;
    if (!o)
        return -EBADF;
    if (!a->flags)
        return -EINVAL;
    uint64_t cover = a->off >= o->size ? 0 : KB_MIN(a->size, o->size - a->off);
    size_t nb = (size_t)((cover + a->flags - 1) / a->flags);
    r->data = kb_buf_new(nb ? nb * 8 : 1);
    if (!r->data)
        return -ENOMEM;
    for (size_t i = 0; i < nb; i++) {
        uint64_t at = a->off + i * a->flags, len = KB_MIN((uint64_t)a->flags, a->off + cover - at);
        uint64_t h = fnv64(o->data + at, (size_t)len);
        memcpy(r->data->data + i * 8, &h, 8);
    }
    r->data->len = nb * 8;
    r->off = cover;
    return 0;
}

static int op_truncate(dist_mock_t *m, const kb_args_t *a, kb_reply_t *r)
{
    kb_gfid_t g = a->gfid;
    if (a->fd_valid) {
        mfd_t *f = fd_get(m, a->fd);
        if (!f)
            return -EBADF;
        g = f->gfid;
    }
    mobj_t *o = obj_get(m, &g);
    if (!o)
        return -ENOENT;
    if (a->off > o->size) {
        uint8_t *d = realloc(o->data, a->off);
        if (!d)
            return -ENOMEM;
        memset(d + o->size, 0, a->off - o->size);
        o->data = d;
    }
    o->size = a->off;
    fill_attr(o, &r->attr);
    return 0;
}

static int run_op(dist_mock_t *m, kb_op_t op, const kb_args_t *a, kb_reply_t *r)
{
    switch (op) {
    case KB_FOP_LOOKUP: return op_lookup(m, a, r);
    case KB_FOP_STAT: {
        if (!a->fd_valid)
            return reply_attr(m, &a->gfid, r);
        mfd_t *f = fd_get(m, a->fd);
        return f ? reply_attr(m, &f->gfid, r) : -EBADF;
    }
    case KB_FOP_SETATTR: return op_setattr(m, a, r);
    case KB_FOP_TRUNCATE: return op_truncate(m, a, r);
    case KB_FOP_RCHECKSUM: return op_rchecksum(m, a, r);
    case KB_FOP_MKDIR: case KB_FOP_CREATE: case KB_FOP_MKNOD: case KB_FOP_SYMLINK:
        return op_make(m, op, a, r);
    case KB_FOP_UNLINK: return op_unlink(m, a, false);
    case KB_FOP_RMDIR: return op_unlink(m, a, true);
    case KB_FOP_RENAME: return op_rename(m, a, r);
    case KB_FOP_LINK: return op_link(m, a, r);
    case KB_FOP_OPEN: case KB_FOP_OPENDIR: {
        const mobj_t *o = obj_get(m, &a->gfid);
        if (!o)
            return -ENOENT;
        if (op == KB_FOP_OPENDIR && !S_ISDIR(o->mode))
            return -ENOTDIR;
        return fd_new(m, &a->gfid, op == KB_FOP_OPENDIR, r);
    }
    case KB_FOP_RELEASE: case KB_FOP_RELEASEDIR: {
        mfd_t *f = fd_get(m, a->fd);
        if (!f)
            return -EBADF;
        f->used = false;
        return 0;
    }
    case KB_FOP_READDIR: return op_readdir(m, a, r);
    case KB_FOP_READ: case KB_FOP_WRITE: return op_io(m, op, a, r);
    case KB_FOP_FLUSH: case KB_FOP_FSYNC: case KB_FOP_FSYNCDIR:
        return fd_get(m, a->fd) ? 0 : -EBADF;
    case KB_FOP_STATFS:
        r->statfs = (kb_statfs_t){ .bsize = 4096, .frsize = 4096, .blocks = 1000, .bfree = 600, .bavail = 500,
                                   .files = 100, .ffree = 90, .favail = 90, .namemax = 255 };
        return 0;
    case KB_FOP_IPC: return op_ipc(m, a, r);
    case KB_FOP_SETXATTR: case KB_FOP_REMOVEXATTR: case KB_FOP_ENTRYLK:
        return obj_get(m, &a->gfid) ? 0 : -ENOENT;
    case KB_FOP_GETXATTR:
        return obj_get(m, &a->gfid) ? -ENODATA : -ENOENT;
    default:
        return -ENOSYS;
    }
}

static void answer(dist_mock_t *m, kb_call_t *call)
{
    kb_reply_t r = { 0 };
    int rc;
    if (m->down || m->fail[call->op])
        rc = m->down ? -ENOTCONN : m->fail[call->op];
    else if (call->op == KB_FOP_INODELK) {
        if (op_inodelk(m, call, &rc))
            return;                   /* answered when granted */
    } else
        rc = run_op(m, call->op, call->args, &r);
    if (m->hook)
        m->hook(m, m->hook_arg, call->op, call->args, rc < 0 ? rc : 0);
    /* As a brick does: an entry op brings its parent after it (KB_RF_PATTR). */
    kb_op_t op = call->op;
    if (rc >= 0 && kb_fop_info[op].cls == KB_C_ENTRY && op != KB_FOP_RENAME) {
        const mobj_t *dir = obj_get(m, op == KB_FOP_LINK ? &call->args->gfid2 : &call->args->gfid);
        if (dir) {
            fill_attr(dir, &r.pattr);
            r.rflags |= KB_RF_PATTR;
        }
    }
    if (rc < 0) {
        kb_reply_clear(&r);
        r.status = rc;
    } else {
        r.status = rc;
    }
    kb_unwind(call, &r);
    kb_reply_clear(&r);
}

static void mock_fop(kb_call_t *call)
{
    dist_mock_t *m = call->xl->priv;
    m->calls[call->op]++;
    if (m->hold) {
        if (m->nheld == m->capheld) {
            size_t cap = m->capheld ? m->capheld * 2 : 16;
            kb_call_t **h = realloc(m->held, cap * sizeof(*h));
            if (!h) {
                kb_unwind_err(call, -ENOMEM);
                return;
            }
            m->held = h;
            m->capheld = cap;
        }
        m->held[m->nheld++] = call;
        return;
    }
    answer(m, call);
}

/* ---------------- lifecycle and test API ---------------- */

static int mock_init(kb_xlator_t *xl)
{
    dist_mock_t *m = kb_zalloc(sizeof(*m));
    if (!m)
        return -ENOMEM;
    mobj_t *root = obj_new(m, &kb_gfid_root, S_IFDIR | 0755);
    if (!root) {
        free(m);
        return -ENOMEM;
    }
    xl->priv = m;
    return 0;
}

static void mock_fini(kb_xlator_t *xl)
{
    dist_mock_t *m = xl->priv;
    if (!m)
        return;
    for (size_t i = 0; i < m->nobjs; i++)
        obj_free(&m->objs[i]);
    for (size_t i = 0; i < m->nents; i++)
        ent_del(&m->ents[i]);
    free(m->objs);
    free(m->ents);
    while (m->locks) {
        mlock_t *k = m->locks;
        m->locks = k->next;
        free(k);
    }
    free(m->held);
    free(m->index);
    free(m);
    xl->priv = NULL;
}

const kb_xlator_type_t dist_mock_type = {
    .name = "test/dist_mock",
    .ops = {
#define FOP(NAME, name, A, R, C) [KB_FOP_##NAME] = mock_fop,
#include "xlators/fops.def"
#undef FOP
    },
    .init = mock_init,
    .fini = mock_fini,
};

void dist_mock_register(void) { kb_xlator_type_register(&dist_mock_type); }

dist_mock_t *dist_mock_of(kb_xlator_t *xl) { return xl->priv; }

void dist_mock_set_up(kb_xlator_t *xl, bool up)
{
    dist_mock_of(xl)->down = !up;
    kb_notify_parents(xl, up ? KB_EV_CHILD_UP : KB_EV_CHILD_DOWN);
}

void dist_mock_fail(dist_mock_t *m, kb_op_t op, int err) { m->fail[op] = err; }
void dist_mock_hold(dist_mock_t *m, bool hold) { m->hold = hold; }
unsigned dist_mock_calls(const dist_mock_t *m, kb_op_t op) { return m->calls[op]; }
void dist_mock_reset_calls(dist_mock_t *m) { memset(m->calls, 0, sizeof(m->calls)); }
void dist_mock_set_batch(dist_mock_t *m, unsigned n) { m->batch = n; }
void dist_mock_set_big_offsets(dist_mock_t *m, bool on) { m->big_off = on; }

int dist_mock_release(dist_mock_t *m, bool reverse)
{
    /* Answering may wind new calls into this mock: take the list first. */
    size_t n = m->nheld;
    kb_call_t **calls = m->held;
    m->held = NULL;
    m->nheld = m->capheld = 0;
    for (size_t k = 0; k < n; k++)
        answer(m, calls[reverse ? n - 1 - k : k]);
    free(calls);
    return (int)n;
}

int dist_mock_find(const dist_mock_t *m, const kb_gfid_t *parent, const char *name, kb_gfid_t *gfid, uint32_t *mode)
{
    const ment_t *e = ent_get(m, parent, name);
    if (!e)
        return -ENOENT;
    const mobj_t *o = obj_get(m, &e->gfid);
    if (gfid)
        *gfid = e->gfid;
    if (mode)
        *mode = o ? o->mode : 0;
    return 0;
}

int dist_mock_add(dist_mock_t *m, const kb_gfid_t *parent, const char *name, const kb_gfid_t *gfid, uint32_t mode)
{
    if (ent_get(m, parent, name))
        return -EEXIST;
    mobj_t *o = obj_get(m, gfid);
    if (o)
        o->nlink++;
    else if (!(o = obj_new(m, gfid, mode)))
        return -ENOMEM;
    return ent_add(m, parent, name, gfid);
}

int dist_mock_layout(const dist_mock_t *m, const kb_gfid_t *dir, uint8_t *out, size_t cap)
{
    const mobj_t *o = obj_get(m, dir);
    if (!o)
        return -ENOENT;
    memcpy(out, o->layout, KB_MIN(cap, o->layout_len));
    return (int)o->layout_len;
}

size_t dist_mock_count(const dist_mock_t *m, const kb_gfid_t *dir) { return children_of(m, dir); }

int dist_mock_attr(const dist_mock_t *m, const kb_gfid_t *g, kb_iatt_t *out)
{
    const mobj_t *o = obj_get(m, g);
    if (!o)
        return -ENOENT;
    fill_attr(o, out);
    return 0;
}

unsigned dist_mock_open_fds(const dist_mock_t *m)
{
    unsigned n = 0;
    for (size_t i = 0; i < KB_ARRAY_SIZE(m->fds); i++)
        n += m->fds[i].used;
    return n;
}

int dist_mock_set_index(dist_mock_t *m, const kb_gfid_t *g, size_t n)
{
    kb_gfid_t *c = n ? malloc(n * sizeof(*c)) : NULL;
    if (n && !c)
        return -ENOMEM;
    if (n)
        memcpy(c, g, n * sizeof(*c));
    free(m->index);
    m->index = c;
    m->nindex = n;
    return 0;
}

void dist_mock_set_hook(dist_mock_t *m, dist_mock_hook_fn fn, void *arg)
{
    m->hook = fn;
    m->hook_arg = arg;
}

int dist_mock_data(const dist_mock_t *m, const kb_gfid_t *g, const uint8_t **data, uint64_t *size)
{
    const mobj_t *o = obj_get(m, g);
    if (!o)
        return -ENOENT;
    *data = o->data;
    *size = o->size;
    return 0;
}

unsigned dist_mock_locks(const dist_mock_t *m)
{
    unsigned n = 0;
    for (const mlock_t *k = m->locks; k; k = k->next)
        n++;
    return n;
}
