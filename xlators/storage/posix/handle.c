/*
 * handle.c — names, gfid handles and object resolution of storage/posix.
 *
 * Layout (DESIGN §4): every object carries its gfid in trusted.kembar.gfid
 * and has a handle <brick>/.kembar/handles/xx/yy/<gfid-string>:
 *   - a non-directory's handle is a hard link to it, so it can be opened by
 *     gfid and an open-unlinked object keeps its data;
 *   - a directory's handle is a symlink whose TEXT is the record
 *     "<parent-gfid-string>/<name>". It is never followed by the kernel: we
 *     read the chain in user space. That avoids the kernel's 40-symlink
 *     limit (GlusterFS's "../../xx/yy/<pgfid>/<name>" chains hit ELOOP in
 *     deep trees) and never builds a path, so PATH_MAX does not apply either.
 *     A directory rename rewrites only its own record.
 *
 * Resolved directories are kept in a bounded LRU cache of O_RDONLY directory
 * fds keyed by gfid. An fd follows its directory through renames, so a cached
 * entry stays right; a removed directory makes lookups below it fail with
 * ENOENT, which is the truth. (O_PATH fds were rejected: fgetxattr and
 * fchmod refuse them, and directory fds cost the same.)
 *
 * A handle that is a symlink with one link is ambiguous between a directory
 * record and an orphaned user symlink; resolution tries the record and checks
 * the gfid of what it finds, so a wrong guess reads as ENOENT, never as
 * another object.
 */
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <linux/openat2.h>
#include "lib/log.h"
#include "xlators/storage/posix/internal.h"

#define POSIX_MAX_DEPTH 4096   /* directory levels followed through records */

/* ---------------- names and paths ---------------- */

int posix_name_check(const kb_gfid_t *parent, const char *name)
{
    if (!name || !*name)
        return -EINVAL;
    if (strnlen(name, KB_NAME_MAX + 1) > KB_NAME_MAX)
        return -ENAMETOOLONG;
    if (strchr(name, '/') || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
        return -EINVAL;
    if (parent && kb_gfid_is_root(parent) && strcmp(name, KB_INTERNAL_DIR) == 0)
        return -EPERM;
    return 0;
}

bool posix_is_internal_xattr(const char *name)
{
    return name && strncmp(name, KB_XATTR_PREFIX, sizeof(KB_XATTR_PREFIX) - 1) == 0;
}

void posix_handle_rel(const kb_gfid_t *g, char out[POSIX_HANDLE_REL_LEN])
{
    char s[KB_GFID_STRLEN];
    kb_gfid_str(g, s);
    snprintf(out, POSIX_HANDLE_REL_LEN, "%.2s/%.2s/%s", s, s + 2, s);
}

int posix_openat(int dfd, const char *name, int flags, mode_t mode)
{
    struct open_how how = {
        .flags = (uint64_t)(flags | O_NOFOLLOW | O_CLOEXEC),
        .mode = (flags & O_CREAT) ? mode : 0,
        .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
    };
    int fd = (int)syscall(SYS_openat2, dfd, name, &how, sizeof(how));
    if (fd < 0 && errno == ENOSYS)
        fd = openat(dfd, name, flags | O_NOFOLLOW | O_CLOEXEC, mode);
    return fd < 0 ? -errno : fd;
}

void posix_obj_procpath(const posix_obj_t *o, char *buf, size_t len)
{
    if (o->name[0])
        snprintf(buf, len, "/proc/self/fd/%d/%s", o->dfd, o->name);
    else
        snprintf(buf, len, "/proc/self/fd/%d", o->dfd);
}

void posix_iatt(kb_iatt_t *ia, const struct stat *st, const kb_gfid_t *g)
{
    kb_iatt_from_stat(ia, st, g);
    if (!S_ISDIR(st->st_mode) && g && !kb_gfid_is_null(g) && ia->nlink > 0)
        ia->nlink--;          /* the handle link is the brick's, not the user's */
}

/* ---------------- directory fd cache ---------------- */

static size_t dc_slot(const posix_priv_t *p, const kb_gfid_t *g)
{
    return kb_gfid_hash(g) & (p->dc_nb - 1);
}

static posix_dent_t *dc_find(posix_priv_t *p, const kb_gfid_t *g)
{
    for (posix_dent_t *d = p->dc_tab[dc_slot(p, g)]; d; d = d->hnext)
        if (kb_gfid_eq(&d->gfid, g))
            return d;
    return NULL;
}

static void lru_unlink(posix_dent_t *d)
{
    d->lru_prev->lru_next = d->lru_next;
    d->lru_next->lru_prev = d->lru_prev;
    d->lru_prev = d->lru_next = d;
}

static void lru_front(posix_priv_t *p, posix_dent_t *d)
{
    lru_unlink(d);
    d->lru_next = p->dc_lru.lru_next;
    d->lru_prev = &p->dc_lru;
    p->dc_lru.lru_next->lru_prev = d;
    p->dc_lru.lru_next = d;
}

static void dc_unhash(posix_priv_t *p, posix_dent_t *d)
{
    posix_dent_t **pp = &p->dc_tab[dc_slot(p, &d->gfid)];
    while (*pp && *pp != d)
        pp = &(*pp)->hnext;
    if (*pp)
        *pp = d->hnext;
    lru_unlink(d);
    p->dc_count--;
}

static void dent_free(posix_dent_t *d)
{
    close(d->fd);
    free(d);
}

/* Evict least recently used unpinned entries down to dc_max. */
static void dc_trim(posix_priv_t *p)
{
    posix_dent_t *d = p->dc_lru.lru_prev;
    while (p->dc_count > p->dc_max && d != &p->dc_lru) {
        posix_dent_t *prev = d->lru_prev;
        if (d->pins == 0) {
            dc_unhash(p, d);
            dent_free(d);
        }
        d = prev;
    }
}

/* Insert FD for G, pinned once. Takes ownership of FD. */
static posix_dent_t *dc_insert(posix_priv_t *p, const kb_gfid_t *g, int fd)
{
    posix_dent_t *d = dc_find(p, g);
    if (d) {                  /* raced in through another path of this op */
        close(fd);
        d->pins++;
        lru_front(p, d);
        return d;
    }
    d = kb_zalloc(sizeof(*d));
    if (!d) {
        close(fd);
        return NULL;
    }
    d->gfid = *g;
    d->fd = fd;
    d->pins = 1;
    d->lru_prev = d->lru_next = d;
    size_t s = dc_slot(p, g);
    d->hnext = p->dc_tab[s];
    p->dc_tab[s] = d;
    p->dc_count++;
    lru_front(p, d);
    dc_trim(p);
    return d;
}

int posix_dc_init(posix_priv_t *p, size_t max)
{
    p->dc_max = max < 8 ? 8 : max;
    p->dc_nb = 64;
    while (p->dc_nb < 2 * p->dc_max)
        p->dc_nb <<= 1;
    p->dc_tab = calloc(p->dc_nb, sizeof(*p->dc_tab));
    p->dc_root = kb_zalloc(sizeof(*p->dc_root));
    if (!p->dc_tab || !p->dc_root)
        return -ENOMEM;
    p->dc_lru.lru_next = p->dc_lru.lru_prev = &p->dc_lru;
    p->dc_root->gfid = kb_gfid_root;
    p->dc_root->fd = p->root_fd;   /* owned by priv, not by the cache */
    p->dc_root->pins = 1;          /* permanent */
    p->dc_root->lru_prev = p->dc_root->lru_next = p->dc_root;
    return 0;
}

void posix_dc_fini(posix_priv_t *p)
{
    if (p->dc_tab) {
        for (size_t i = 0; i < p->dc_nb; i++)
            for (posix_dent_t *d = p->dc_tab[i], *n; d; d = n) {
                n = d->hnext;
                dent_free(d);
            }
        free(p->dc_tab);
        p->dc_tab = NULL;
    }
    free(p->dc_root);
    p->dc_root = NULL;
    p->dc_count = 0;
}

void posix_dir_put(posix_priv_t *p, posix_dent_t *d)
{
    if (!d)
        return;
    assert(d->pins > 0);
    if (--d->pins == 0) {
        if (d->dead)
            dent_free(d);
        else if (p->dc_count > p->dc_max)
            dc_trim(p);
    }
}

void posix_dir_adopt(posix_priv_t *p, const kb_gfid_t *g, int fd)
{
    posix_dir_put(p, dc_insert(p, g, fd));
}

void posix_dir_forget(posix_priv_t *p, const kb_gfid_t *g)
{
    posix_dent_t *d = dc_find(p, g);
    if (!d)
        return;
    dc_unhash(p, d);
    if (d->pins == 0)
        dent_free(d);
    else
        d->dead = true;
}

/* ---------------- directory records ---------------- */

static int ensure_leaf(posix_priv_t *p, const char rel[POSIX_HANDLE_REL_LEN])
{
    char dir[8];
    memcpy(dir, rel, 2);
    dir[2] = 0;
    if (mkdirat(p->handles_fd, dir, 0700) && errno != EEXIST)
        return -errno;
    memcpy(dir, rel, 5);
    dir[5] = 0;
    if (mkdirat(p->handles_fd, dir, 0700) && errno != EEXIST)
        return -errno;
    return 0;
}

int posix_dirrec_write(posix_priv_t *p, const kb_gfid_t *g, const kb_gfid_t *parent, const char *name)
{
    char rel[POSIX_HANDLE_REL_LEN], tmp[POSIX_HANDLE_REL_LEN + 8], text[POSIX_RECORD_MAX];
    char ps[KB_GFID_STRLEN];
    posix_handle_rel(g, rel);
    snprintf(text, sizeof(text), "%s/%s", kb_gfid_str(parent, ps), name);
    if (symlinkat(text, p->handles_fd, rel) == 0)
        return 0;
    if (errno == ENOENT) {
        int rc = ensure_leaf(p, rel);
        if (rc)
            return rc;
        if (symlinkat(text, p->handles_fd, rel) == 0)
            return 0;
    }
    if (errno != EEXIST)
        return -errno;
    /* Replace atomically: a crash leaves the old record or the new one. */
    snprintf(tmp, sizeof(tmp), "%s.tmp", rel);
    unlinkat(p->handles_fd, tmp, 0);
    if (symlinkat(text, p->handles_fd, tmp) || renameat(p->handles_fd, tmp, p->handles_fd, rel)) {
        int rc = -errno;
        unlinkat(p->handles_fd, tmp, 0);
        return rc;
    }
    return 0;
}

int posix_dirrec_read(posix_priv_t *p, const kb_gfid_t *g, kb_gfid_t *parent, char *name, size_t len)
{
    char rel[POSIX_HANDLE_REL_LEN], text[POSIX_RECORD_MAX + 1], ps[KB_GFID_STRLEN];
    posix_handle_rel(g, rel);
    ssize_t n = readlinkat(p->handles_fd, rel, text, sizeof(text) - 1);
    if (n < 0)
        return errno == EINVAL ? -ENOTDIR : -errno;   /* EINVAL: a file's hard link */
    text[n] = 0;
    if (n < KB_GFID_STRLEN + 1 || text[KB_GFID_STRLEN - 1] != '/')
        return -ENOTDIR;
    memcpy(ps, text, KB_GFID_STRLEN - 1);
    ps[KB_GFID_STRLEN - 1] = 0;
    const char *nm = text + KB_GFID_STRLEN;
    if (kb_gfid_parse(ps, parent) || posix_name_check(parent, nm) || strlen(nm) >= len)
        return -ENOTDIR;
    strcpy(name, nm);
    return 0;
}

/* ---------------- directory resolution ---------------- */

struct chain_ent { kb_gfid_t g; char name[KB_NAME_MAX + 1]; };

static int fd_gfid_is(int fd, const kb_gfid_t *g)
{
    kb_gfid_t have;
    ssize_t n = fgetxattr(fd, KB_XATTR_GFID, have.b, sizeof(have.b));
    return n == 16 && kb_gfid_eq(&have, g);
}

/* Climb the records from G up to a cached (or root) ancestor. Fills CH and N
 * (G first) and pins the ancestor into *BASE. */
static int dir_climb(posix_priv_t *p, const kb_gfid_t *g, struct chain_ent **ch, size_t *n,
                     posix_dent_t **base)
{
    size_t cap = 0;
    kb_gfid_t cur = *g, parent;
    for (;;) {
        if (*n == POSIX_MAX_DEPTH)
            return -ELOOP;
        if (*n == cap) {
            cap = cap ? cap * 2 : 16;
            struct chain_ent *c = realloc(*ch, cap * sizeof(**ch));
            if (!c)
                return -ENOMEM;
            *ch = c;
        }
        int rc = posix_dirrec_read(p, &cur, &parent, (*ch)[*n].name, sizeof((*ch)[*n].name));
        if (rc)
            return rc;
        (*ch)[(*n)++].g = cur;
        posix_dent_t *d = kb_gfid_is_root(&parent) ? p->dc_root : dc_find(p, &parent);
        if (d) {
            d->pins++;
            *base = d;
            return 0;
        }
        cur = parent;
    }
}

int posix_dir_get(posix_priv_t *p, const kb_gfid_t *g, posix_dent_t **out)
{
    posix_dent_t *d = kb_gfid_is_root(g) ? p->dc_root : dc_find(p, g);
    if (d) {
        d->pins++;
        if (d != p->dc_root)
            lru_front(p, d);
        *out = d;
        return 0;
    }
    struct chain_ent *ch = NULL;
    size_t n = 0;
    posix_dent_t *base = NULL;
    int rc = dir_climb(p, g, &ch, &n, &base);
    while (!rc && n > 0) {
        struct chain_ent *e = &ch[--n];
        int fd = posix_openat(base->fd, e->name, O_RDONLY | O_DIRECTORY, 0);
        if (fd < 0) {
            rc = fd == -ELOOP ? -ENOENT : fd;
            break;
        }
        if (!fd_gfid_is(fd, &e->g)) {   /* stale record: the name now holds another dir */
            close(fd);
            rc = -ENOENT;
            break;
        }
        d = dc_insert(p, &e->g, fd);
        if (!d) {
            rc = -ENOMEM;
            break;
        }
        posix_dir_put(p, base);
        base = d;
    }
    if (!rc) {
        *out = base;
        base = NULL;
    }
    posix_dir_put(p, base);
    free(ch);
    return rc;
}

/* ---------------- objects ---------------- */

void posix_obj_put(posix_priv_t *p, posix_obj_t *o)
{
    posix_dir_put(p, o->pin);
    o->pin = NULL;
}

int posix_obj_stat(posix_obj_t *o)
{
    int rc = o->name[0] ? fstatat(o->dfd, o->name, &o->st, AT_SYMLINK_NOFOLLOW) : fstat(o->dfd, &o->st);
    return rc ? -errno : 0;
}

ssize_t posix_obj_getxattr(posix_obj_t *o, const char *key, void *val, size_t size)
{
    ssize_t n;
    if (o->name[0]) {
        char path[KB_NAME_MAX + 64];
        posix_obj_procpath(o, path, sizeof(path));
        n = lgetxattr(path, key, val, size);
    } else {
        n = fgetxattr(o->dfd, key, val, size);
    }
    return n < 0 ? -errno : n;
}

int posix_obj_setxattr(posix_obj_t *o, const char *key, const void *val, size_t size, int flags)
{
    int rc;
    if (o->name[0]) {
        char path[KB_NAME_MAX + 64];
        posix_obj_procpath(o, path, sizeof(path));
        rc = lsetxattr(path, key, val, size, flags);
    } else {
        rc = fsetxattr(o->dfd, key, val, size, flags);
    }
    return rc < 0 ? -errno : 0;
}

ssize_t posix_obj_listxattr(posix_obj_t *o, char *list, size_t size)
{
    ssize_t n;
    if (o->name[0]) {
        char path[KB_NAME_MAX + 64];
        posix_obj_procpath(o, path, sizeof(path));
        n = llistxattr(path, list, size);
    } else {
        n = flistxattr(o->dfd, list, size);
    }
    return n < 0 ? -errno : n;
}

int posix_obj_removexattr(posix_obj_t *o, const char *key)
{
    int rc;
    if (o->name[0]) {
        char path[KB_NAME_MAX + 64];
        posix_obj_procpath(o, path, sizeof(path));
        rc = lremovexattr(path, key);
    } else {
        rc = fremovexattr(o->dfd, key);
    }
    return rc < 0 ? -errno : 0;
}

int posix_obj_read_gfid(posix_obj_t *o)
{
    ssize_t n = posix_obj_getxattr(o, KB_XATTR_GFID, o->gfid.b, sizeof(o->gfid.b));
    if (n != 16) {
        o->gfid = kb_gfid_null;
        return n == -ENODATA || n >= 0 ? 0 : (int)n;
    }
    return 0;
}

int posix_obj_open(posix_obj_t *o, int flags)
{
    return posix_openat(o->dfd, o->name[0] ? o->name : ".", flags, 0);
}

static int obj_from_dir(posix_priv_t *p, const kb_gfid_t *g, posix_dent_t *d, posix_obj_t *o)
{
    o->pin = d;
    o->dfd = d->fd;
    o->name[0] = 0;
    o->gfid = *g;
    int rc = posix_obj_stat(o);
    if (rc)
        posix_obj_put(p, o);
    return rc;
}

int posix_resolve(posix_priv_t *p, const kb_gfid_t *g, posix_obj_t *o)
{
    memset(o, 0, sizeof(*o));
    o->dfd = -1;
    if (kb_gfid_is_null(g))
        return -EINVAL;
    posix_dent_t *d;
    if (kb_gfid_is_root(g) || dc_find(p, g)) {
        int rc = posix_dir_get(p, g, &d);
        return rc ? rc : obj_from_dir(p, g, d, o);
    }
    char rel[POSIX_HANDLE_REL_LEN];
    posix_handle_rel(g, rel);
    struct stat st;
    if (fstatat(p->handles_fd, rel, &st, AT_SYMLINK_NOFOLLOW))
        return -errno;
    bool ambiguous = S_ISLNK(st.st_mode) && st.st_nlink == 1;
    if (ambiguous) {
        int rc = posix_dir_get(p, g, &d);
        if (rc == 0)
            return obj_from_dir(p, g, d, o);
        if (rc != -ENOENT && rc != -ENOTDIR)
            return rc;
    }
    o->dfd = p->handles_fd;
    memcpy(o->name, rel, sizeof(rel));
    o->st = st;
    o->gfid = *g;
    if (ambiguous) {   /* an orphaned symlink or a dead record: believe only the xattr */
        if (posix_obj_read_gfid(o) || !kb_gfid_eq(&o->gfid, g))
            return -ENOENT;
    }
    return 0;
}

int posix_resolve_entry(posix_priv_t *p, const kb_gfid_t *parent, const char *name, posix_obj_t *o)
{
    memset(o, 0, sizeof(*o));
    o->dfd = -1;
    int rc = posix_name_check(parent, name);
    if (rc)
        return rc;
    posix_dent_t *d;
    if ((rc = posix_dir_get(p, parent, &d)))
        return rc;
    o->pin = d;
    o->dfd = d->fd;
    strcpy(o->name, name);
    if (fstatat(o->dfd, name, &o->st, AT_SYMLINK_NOFOLLOW)) {
        rc = -errno;
        if (rc != -ENOENT)
            posix_obj_put(p, o);
        return rc;
    }
    if ((rc = posix_obj_read_gfid(o)))
        posix_obj_put(p, o);
    return rc;
}

/* ---------------- file handles ---------------- */

int posix_handle_link(posix_priv_t *p, const kb_gfid_t *g, int dfd, const char *name)
{
    char rel[POSIX_HANDLE_REL_LEN];
    posix_handle_rel(g, rel);
    for (int attempt = 0; attempt < 3; attempt++) {
        if (linkat(dfd, name, p->handles_fd, rel, 0) == 0)
            return 0;
        int rc = -errno;
        if (rc == -ENOENT) {
            if ((rc = ensure_leaf(p, rel)))
                return rc;
            continue;
        }
        if (rc != -EEXIST)
            return rc;
        struct stat a, b;
        if (fstatat(dfd, name, &a, AT_SYMLINK_NOFOLLOW) ||
            fstatat(p->handles_fd, rel, &b, AT_SYMLINK_NOFOLLOW))
            return -errno;
        if (a.st_ino == b.st_ino && a.st_dev == b.st_dev)
            return 0;
        if (b.st_nlink > 1 || S_ISDIR(a.st_mode))
            return -EEXIST;       /* a live object already owns this gfid */
        unlinkat(p->handles_fd, rel, 0);   /* an orphan (crash leftover): replace */
    }
    return -EEXIST;
}

bool posix_handle_unlink(posix_priv_t *p, const kb_gfid_t *g, ino_t ino)
{
    char rel[POSIX_HANDLE_REL_LEN];
    posix_handle_rel(g, rel);
    if (ino) {
        struct stat st;
        if (fstatat(p->handles_fd, rel, &st, AT_SYMLINK_NOFOLLOW) || st.st_ino != ino)
            return false;
    }
    if (unlinkat(p->handles_fd, rel, 0) == 0)
        return true;
    if (errno != ENOENT)
        kb_warn(POSIX_XL, "removing handle %s: %s", rel, strerror(errno));
    return false;
}
