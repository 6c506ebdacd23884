/*
 * changelog.c — the replicate changelog on the brick (changelog.h): XATTROP
 * on trusted.kembar.cl, the heal index, dirty-region maps, and IPC.
 *
 * XATTROP is atomic with respect to other XATTROPs because the whole graph
 * runs on one thread and the read-modify-write below never yields.
 *
 * Index ordering (crash safety): when counters become non-zero the index
 * entry is created BEFORE the xattr is written; when they return to zero it
 * is removed AFTER. A crash can leave an extra entry (heal finds nothing to
 * do and drops it), never a missing one.
 *
 * Region maps: held in a small MRU cache per gfid (fd + bitmap). A tracked
 * op checks its bits in memory; only when a bit is new does it write the
 * changed bitmap bytes and fdatasync the map (and fsync the regions
 * directory once when the map file is created) — before the op runs.
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>
#include <sys/xattr.h>
#include "lib/log.h"
#include "xlators/storage/posix/internal.h"

#define RM_MAX_REGIONS (1ull << 28)   /* 16 TiB at 64 KiB: the ext4 file limit */
#define INDEX_LIST_MAX 65536

/* ---------------- index ---------------- */

/* An index entry is a hard link to one empty file, .kembar/POSIX_INDEX_BASE,
 * not an empty file of its own: a link allocates no inode. Every pre-op that
 * dirties a clean object adds an entry and its post-op removes it, so with
 * an inode each, a small-file workload made ext4 allocate and free two
 * inodes per create on every brick, and each inode allocation then scans
 * past the recently freed ones (ext4's recently_deleted): ~1 ms per create
 * on the brick's disk (BENCHMARKS.md). The entries are only names, so any
 * link failure (EMLINK after 65,000 entries on ext4, a base file removed
 * by hand) falls back to an empty file, which readers treat the same. */
static void index_add(posix_priv_t *p, const kb_gfid_t *g)
{
    char s[KB_GFID_STRLEN];
    kb_gfid_str(g, s);
    if (!linkat(p->internal_fd, POSIX_INDEX_BASE, p->index_fd, s, 0) || errno == EEXIST)
        return;
    if (errno == ENOENT) {   /* the base is gone: make it again, once */
        int bfd = openat(p->internal_fd, POSIX_INDEX_BASE, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
        if (bfd >= 0) {
            close(bfd);
            if (!linkat(p->internal_fd, POSIX_INDEX_BASE, p->index_fd, s, 0) || errno == EEXIST)
                return;
        }
    }
    int fd = openat(p->index_fd, s, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
    if (fd >= 0)
        close(fd);
    else if (errno != EEXIST)
        kb_warn(p->xl->name, "index add %s: %s", s, strerror(errno));
}

static void index_del(posix_priv_t *p, const kb_gfid_t *g)
{
    char s[KB_GFID_STRLEN];
    if (unlinkat(p->index_fd, kb_gfid_str(g, s), 0) && errno != ENOENT)
        kb_warn(p->xl->name, "index del %s: %s", s, strerror(errno));
}

/* ---------------- XATTROP ---------------- */

static bool cl_zero(const kb_cl_matrix_t *m)
{
    for (int r = 0; r < KB_CL_ROWS; r++)
        for (int c = 0; c < KB_CL_COLS; c++)
            if (m->v[r][c])
                return false;
    return true;
}

static int cl_read(posix_obj_t *o, kb_cl_matrix_t *m)
{
    uint8_t raw[KB_CL_DISK_BYTES];
    ssize_t n = posix_obj_getxattr(o, KB_CL_XATTR, raw, sizeof(raw));
    memset(m, 0, sizeof(*m));
    if (n == -ENODATA)
        return 0;             /* absent reads as zeros */
    if (n < 0)
        return (int)n;
    uint32_t magic = (uint32_t)raw[0] << 24 | (uint32_t)raw[1] << 16 | (uint32_t)raw[2] << 8 | raw[3];
    uint32_t ver = (uint32_t)raw[4] << 24 | (uint32_t)raw[5] << 16 | (uint32_t)raw[6] << 8 | raw[7];
    if (n != KB_CL_DISK_BYTES || magic != KB_CL_MAGIC || ver != KB_CL_VERSION)
        return -EIO;          /* never treat a damaged changelog as clean */
    kb_cl_decode(raw + 8, m);
    return 0;
}

static int cl_write(posix_obj_t *o, const kb_cl_matrix_t *m)
{
    uint8_t raw[KB_CL_DISK_BYTES];
    uint32_t hdr[2] = { KB_CL_MAGIC, KB_CL_VERSION };
    for (int i = 0; i < 2; i++)
        for (int b = 0; b < 4; b++)
            raw[i * 4 + b] = (uint8_t)(hdr[i] >> (24 - 8 * b));
    kb_cl_encode(m, raw + 8);
    return posix_obj_setxattr(o, KB_CL_XATTR, raw, sizeof(raw), 0);
}

static int32_t add_clamped(int32_t v, int32_t d)
{
    int64_t s = (int64_t)v + d;
    return s < 0 ? 0 : s > INT32_MAX ? INT32_MAX : (int32_t)s;
}

static int xattrop_do(posix_priv_t *p, const kb_args_t *a, kb_cl_matrix_t *now)
{
    posix_obj_t o;
    kb_cl_matrix_t old = { 0 }, delta;
    int rc = posix_resolve(p, &a->gfid, &o);
    if (!rc)
        rc = cl_read(&o, &old);
    if (rc || a->flags == KB_XOP_GET) {
        *now = old;
        posix_obj_put(p, &o);
        return rc;
    }
    kb_cl_decode((const uint8_t *)a->data->data, &delta);
    for (int r = 0; r < KB_CL_ROWS; r++)
        for (int c = 0; c < KB_CL_COLS; c++)
            now->v[r][c] = add_clamped(old.v[r][c], delta.v[r][c]);
    bool was = !cl_zero(&old), is = !cl_zero(now);
    if (is && !was)
        index_add(p, &a->gfid);
    rc = cl_write(&o, now);
    if (!rc && was && !is)
        index_del(p, &a->gfid);
    posix_obj_put(p, &o);
    return rc;
}

void posix_op_xattrop(kb_call_t *call)
{
    const kb_args_t *a = call->args;
    int rc = 0;
    if (!a->name || strcmp(a->name, KB_CL_XATTR) != 0)
        rc = -EINVAL;
    else if (a->flags != KB_XOP_ADD && a->flags != KB_XOP_GET)
        rc = -EINVAL;
    else if (a->flags == KB_XOP_ADD && (!a->data || a->data->len != KB_CL_MATRIX_BYTES))
        rc = -EINVAL;
    kb_cl_matrix_t now;
    if (!rc)
        rc = xattrop_do(posix_priv(call), a, &now);
    kb_reply_t r = { .status = rc };
    if (!rc) {
        if (!(r.data = kb_buf_new(KB_CL_MATRIX_BYTES))) {
            r.status = -ENOMEM;
        } else {
            kb_cl_encode(&now, (uint8_t *)r.data->data);
            r.data->len = KB_CL_MATRIX_BYTES;
        }
    }
    kb_unwind(call, &r);
    kb_buf_unref(r.data);
}

/* ---------------- region maps ---------------- */

static void rm_free(posix_rmap_t *m)
{
    if (m->fd >= 0)
        close(m->fd);
    free(m->bits);
    free(m);
}

static posix_rmap_t *rm_find(posix_priv_t *p, const kb_gfid_t *g, bool unlink_it)
{
    for (posix_rmap_t **pp = &p->rm_head; *pp; pp = &(*pp)->next) {
        posix_rmap_t *m = *pp;
        if (!kb_gfid_eq(&m->gfid, g))
            continue;
        *pp = m->next;        /* unlink; caller re-inserts at the front */
        if (unlink_it) {
            p->rm_count--;
            rm_free(m);
            return NULL;
        }
        m->next = p->rm_head;
        p->rm_head = m;
        return m;
    }
    return NULL;
}

static void rm_insert(posix_priv_t *p, posix_rmap_t *m)
{
    m->next = p->rm_head;
    p->rm_head = m;
    if (++p->rm_count <= p->rm_max)
        return;
    posix_rmap_t **pp = &p->rm_head;   /* evict the least recently used */
    while ((*pp)->next)
        pp = &(*pp)->next;
    rm_free(*pp);
    *pp = NULL;
    p->rm_count--;
}

static void rm_header(uint8_t h[KB_RM_HDR_BYTES])
{
    memset(h, 0, KB_RM_HDR_BYTES);
    kb_put_le32(h, KB_RM_MAGIC);
    kb_put_le32(h + 4, KB_RM_VERSION);
    kb_put_le32(h + 8, KB_RM_GRANULARITY);
}

static int rm_check_header(const uint8_t *h, size_t len)
{
    if (len < KB_RM_HDR_BYTES || kb_get_le32(h) != KB_RM_MAGIC || kb_get_le32(h + 4) != KB_RM_VERSION ||
        kb_get_le32(h + 8) != KB_RM_GRANULARITY)
        return -EIO;
    return 0;
}

/* Load the map of G from disk (CREATE: make it when missing). */
static int rm_load(posix_priv_t *p, const kb_gfid_t *g, bool create, posix_rmap_t **out)
{
    char s[KB_GFID_STRLEN];
    kb_gfid_str(g, s);
    int fd = openat(p->regions_fd, s, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
    bool fresh = false;
    if (fd < 0 && errno == ENOENT && create) {
        fd = openat(p->regions_fd, s, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
        fresh = true;
    }
    if (fd < 0)
        return -errno;
    posix_rmap_t *m = kb_zalloc(sizeof(*m));
    struct stat st;
    int rc = !m ? -ENOMEM : fstat(fd, &st) ? -errno : 0;
    if (!rc && fresh) {
        uint8_t h[KB_RM_HDR_BYTES];
        rm_header(h);
        ssize_t w = pwrite(fd, h, sizeof(h), 0);
        if (w != (ssize_t)sizeof(h))
            rc = w < 0 ? -errno : -EIO;
        else if (fdatasync(fd) || fsync(p->regions_fd))
            rc = -errno;
        st.st_size = KB_RM_HDR_BYTES;
    }
    if (!rc) {
        size_t n = (size_t)st.st_size;
        uint8_t *all = malloc(n ? n : 1);
        if (!all || pread(fd, all, n, 0) != (ssize_t)n)
            rc = all ? -EIO : -ENOMEM;
        else if (!(rc = rm_check_header(all, n))) {
            m->nbytes = n - KB_RM_HDR_BYTES;
            memmove(all, all + KB_RM_HDR_BYTES, m->nbytes);
            m->bits = all;
            all = NULL;
        }
        free(all);
    }
    if (rc) {
        close(fd);
        free(m);
        return rc;
    }
    m->fd = fd;
    m->gfid = *g;
    rm_insert(p, m);
    *out = m;
    return 0;
}

static bool rm_bit(const posix_rmap_t *m, uint64_t r)
{
    return r / 8 < m->nbytes && (m->bits[r / 8] >> (r % 8) & 1);
}

int posix_regions_track(posix_priv_t *p, const kb_gfid_t *g, uint64_t off, uint64_t len)
{
    if (len == 0)
        return 0;
    uint64_t end = off + len < off ? UINT64_MAX : off + len;
    uint64_t first = off / KB_RM_GRANULARITY, last = (end - 1) / KB_RM_GRANULARITY;
    if (last >= RM_MAX_REGIONS)
        return -EFBIG;
    posix_rmap_t *m = rm_find(p, g, false);
    int rc = m ? 0 : rm_load(p, g, true, &m);
    if (rc)
        return rc;
    uint64_t r = first;
    while (r <= last && rm_bit(m, r))
        r++;
    if (r > last)
        return 0;             /* the common case: nothing new, no I/O */
    size_t need = (size_t)(last / 8 + 1);
    if (need > m->nbytes) {
        uint8_t *b = realloc(m->bits, need);
        if (!b)
            return -ENOMEM;
        memset(b + m->nbytes, 0, need - m->nbytes);
        m->bits = b;
        m->nbytes = need;
    }
    for (uint64_t i = r; i <= last; i++)
        m->bits[i / 8] |= (uint8_t)(1u << (i % 8));
    size_t b0 = (size_t)(r / 8), b1 = (size_t)(last / 8);
    ssize_t w = pwrite(m->fd, m->bits + b0, b1 - b0 + 1, (off_t)(KB_RM_HDR_BYTES + b0));
    if (w != (ssize_t)(b1 - b0 + 1))
        rc = w < 0 ? -errno : -EIO;
    else if (fdatasync(m->fd))
        rc = -errno;
    if (rc)
        rm_find(p, g, true);  /* memory may now claim more than the disk: reload next time */
    return rc;
}

void posix_rm_fini(posix_priv_t *p)
{
    while (p->rm_head) {
        posix_rmap_t *m = p->rm_head;
        p->rm_head = m->next;
        rm_free(m);
    }
    p->rm_count = 0;
}

void posix_cl_forget(posix_priv_t *p, const kb_gfid_t *g)
{
    char s[KB_GFID_STRLEN];
    rm_find(p, g, true);
    unlinkat(p->regions_fd, kb_gfid_str(g, s), 0);
    index_del(p, g);
}

static int regions_get(posix_priv_t *p, const kb_gfid_t *g, kb_reply_t *r)
{
    posix_rmap_t *m = rm_find(p, g, false);
    int rc = m ? 0 : rm_load(p, g, false, &m);
    if (rc == -ENOENT)
        return 0;             /* no map: empty reply */
    if (rc)
        return rc;
    if (!(r->data = kb_buf_new(KB_RM_HDR_BYTES + m->nbytes)))
        return -ENOMEM;
    rm_header((uint8_t *)r->data->data);
    memcpy(r->data->data + KB_RM_HDR_BYTES, m->bits, m->nbytes);
    r->data->len = KB_RM_HDR_BYTES + m->nbytes;
    return 0;
}

static int regions_clear(posix_priv_t *p, const kb_gfid_t *g, const kb_buf_t *clr)
{
    if (!clr || rm_check_header((const uint8_t *)clr->data, clr->len))
        return -EINVAL;
    posix_rmap_t *m = rm_find(p, g, false);
    int rc = m ? 0 : rm_load(p, g, false, &m);
    if (rc)
        return rc == -ENOENT ? 0 : rc;
    const uint8_t *c = (const uint8_t *)clr->data + KB_RM_HDR_BYTES;
    size_t n = KB_MIN(clr->len - KB_RM_HDR_BYTES, m->nbytes);
    bool any = false;
    for (size_t i = 0; i < n; i++)
        m->bits[i] &= (uint8_t)~c[i];
    for (size_t i = 0; i < m->nbytes && !any; i++)
        any = m->bits[i] != 0;
    if (!any) {               /* nothing left: the map goes away */
        char s[KB_GFID_STRLEN];
        rm_find(p, g, true);
        return unlinkat(p->regions_fd, kb_gfid_str(g, s), 0) && errno != ENOENT ? -errno : 0;
    }
    /* Losing a clear only makes heal copy more: no fdatasync here. */
    if (n && pwrite(m->fd, m->bits, n, KB_RM_HDR_BYTES) != (ssize_t)n) {
        rm_find(p, g, true);
        return -EIO;
    }
    return 0;
}

/* ---------------- IPC ---------------- */

static int gfid_cmp(const void *a, const void *b) { return memcmp(a, b, 16); }

static int index_list(posix_priv_t *p, const kb_args_t *a, kb_reply_t *r)
{
    int fd = openat(p->index_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = fd < 0 ? NULL : fdopendir(fd);
    if (!d) {
        if (fd >= 0)
            close(fd);
        return -errno;
    }
    kb_gfid_t *all = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    for (struct dirent *de; (de = readdir(d));) {
        kb_gfid_t g;
        if (kb_gfid_parse(de->d_name, &g))
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 256;
            kb_gfid_t *t = realloc(all, cap * sizeof(*t));
            if (!t) {
                rc = -ENOMEM;
                break;
            }
            all = t;
        }
        all[n++] = g;
    }
    closedir(d);
    if (!rc && n)
        qsort(all, n, sizeof(*all), gfid_cmp);   /* stable order for paging */
    size_t lim = a->size ? KB_MIN(a->size, (uint64_t)INDEX_LIST_MAX) : INDEX_LIST_MAX;
    size_t from = (size_t)KB_MIN(a->off, (uint64_t)n), cnt = KB_MIN(n - from, lim);
    if (!rc && cnt) {
        if (!(r->data = kb_buf_copy(all + from, cnt * 16)))
            rc = -ENOMEM;
    }
    r->off = n;
    free(all);
    return rc;
}

/* Path of directory G from the root by its records ("" for the root). */
static int dir_path(posix_priv_t *p, const kb_gfid_t *g, char **out)
{
    char *path = strdup("");
    kb_gfid_t cur = *g;
    for (int depth = 0; path && !kb_gfid_is_root(&cur); depth++) {
        char name[KB_NAME_MAX + 1];
        kb_gfid_t parent;
        int rc = depth > 4096 ? -ELOOP : posix_dirrec_read(p, &cur, &parent, name, sizeof(name));
        if (rc) {
            free(path);
            return rc;
        }
        char *np;
        if (asprintf(&np, "/%s%s", name, path) < 0)
            np = NULL;
        free(path);
        path = np;
        cur = parent;
    }
    *out = path;
    return path ? 0 : -ENOMEM;
}

static int gfid_path(posix_priv_t *p, const kb_gfid_t *g, kb_reply_t *r)
{
    posix_obj_t o;
    char *path = NULL, gs[KB_GFID_STRLEN];
    int rc = posix_resolve(p, g, &o);
    if (rc)
        return rc;
    if (S_ISDIR(o.st.st_mode)) {
        rc = kb_gfid_is_root(g) ? ((path = strdup("/")) ? 0 : -ENOMEM) : dir_path(p, g, &path);
    } else {
        /* the parent hint, believed only if that name still holds this inode */
        char hint[POSIX_RECORD_MAX + 1];
        ssize_t n = posix_obj_getxattr(&o, POSIX_XATTR_PARENT, hint, sizeof(hint) - 1);
        kb_gfid_t parent;
        posix_obj_t e;
        char *dp = NULL;
        memset(&e, 0, sizeof(e));
        rc = -ENOENT;
        if (n > KB_GFID_STRLEN && hint[KB_GFID_STRLEN - 1] == '/') {
            hint[n] = 0;
            hint[KB_GFID_STRLEN - 1] = 0;
            if (!kb_gfid_parse(hint, &parent) &&
                posix_resolve_entry(p, &parent, hint + KB_GFID_STRLEN, &e) == 0) {
                if (e.st.st_ino == o.st.st_ino && dir_path(p, &parent, &dp) == 0)
                    rc = asprintf(&path, "%s/%s", dp, hint + KB_GFID_STRLEN) < 0 ? -ENOMEM : 0;
                free(dp);
            }
            posix_obj_put(p, &e);
        }
    }
    posix_obj_put(p, &o);
    if (rc == -ENOENT) {      /* unknown name: heal info shows the gfid */
        rc = asprintf(&path, "<gfid:%s>", kb_gfid_str(g, gs)) < 0 ? -ENOMEM : 0;
        if (rc)
            path = NULL;
    }
    if (!rc && !(r->data = kb_buf_copy(path, strlen(path))))
        rc = -ENOMEM;
    free(path);
    return rc;
}

static int brick_info(posix_priv_t *p, kb_reply_t *r)
{
    kb_gfid_t vol = kb_gfid_null, brick = kb_gfid_null;
    char vs[KB_GFID_STRLEN], bs[KB_GFID_STRLEN], *text = NULL;
    fgetxattr(p->root_fd, KB_XATTR_VOLUME_ID, vol.b, 16);
    fgetxattr(p->root_fd, KB_XATTR_BRICK_ID, brick.b, 16);
    int n = asprintf(&text, "volume-id=%s\nbrick-id=%s\npath=%s\nopen-fds=%zu\ncached-dirs=%zu\nio=%s\n",
                     kb_gfid_str(&vol, vs), kb_gfid_str(&brick, bs), p->dir, p->ft_count, p->dc_count,
                     p->ring ? "io_uring" : "sync");
    if (n < 0)
        return -ENOMEM;
    r->data = kb_buf_copy(text, (size_t)n);
    free(text);
    return r->data ? 0 : -ENOMEM;
}

void posix_op_ipc(kb_call_t *call)
{
    posix_priv_t *p = posix_priv(call);
    const kb_args_t *a = call->args;
    kb_reply_t r = { 0 };
    int rc;
    switch (a->flags) {
    case KB_IPC_INDEX_LIST: rc = index_list(p, a, &r); break;
    case KB_IPC_REGIONS_GET: rc = regions_get(p, &a->gfid, &r); break;
    case KB_IPC_REGIONS_CLEAR: rc = regions_clear(p, &a->gfid, a->data); break;
    case KB_IPC_GFID_PATH: rc = gfid_path(p, &a->gfid, &r); break;
    case KB_IPC_BRICK_INFO: rc = brick_info(p, &r); break;
    case KB_IPC_LAYOUT_GET: /* fall through */
    case KB_IPC_LAYOUT_SET: rc = posix_layout_ipc(p, a, &r); break;   /* posix.c */
    default: rc = -EINVAL; break;
    }
    r.status = rc;
    if (rc) {
        kb_buf_unref(r.data);
        r.data = NULL;
    }
    kb_unwind(call, &r);
    kb_buf_unref(r.data);
}
