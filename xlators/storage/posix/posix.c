/*
 * posix.c — storage/posix: a brick directory as the bottom translator.
 *
 * What it promises (DESIGN §4, §8):
 *   - every fop of fops.def on a local directory, each completed exactly
 *     once; data I/O (read, write, fsync, fallocate, rchecksum reads) goes
 *     through io_uring joined to the graph's event loop, everything else runs
 *     synchronously on the loop thread;
 *   - nothing outside the brick is ever touched and trusted.kembar.* is
 *     invisible to clients (see internal.h for the confinement rule);
 *   - an fd on the wire is a number looked up in the brick's fd table, never
 *     a pointer; a stale or foreign number reads as -EBADF;
 *   - a client that goes away (ctl KB_CTL_CLIENT_GONE) loses all its fds;
 *   - a regular file unlinked while open here stays reachable by gfid until
 *     the brick's last fd on it is closed, and for a grace after a restart
 *     or its client's connection went, to be reopened (orphan.c).
 *
 * This file holds the descriptor, init/fini, the fd table and the reply
 * helpers; the ops live in entry.c, inode.c, io.c and changelog.c.
 */
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>
#include <sys/xattr.h>
#include "lib/log.h"
#include "xlators/storage/posix/internal.h"

static const kb_option_def_t posix_options[] = {
    { "directory", NULL, KB_OPT_PATH, NULL, 0, 0, NULL, "brick directory (absolute path)" },
    { "volume-id", NULL, KB_OPT_STR, NULL, 0, 0, NULL,
      "uuid of the volume; when set, init refuses a directory not stamped for it" },
    { "dir-cache-size", NULL, KB_OPT_INT, "1024", 16, 65536, NULL,
      "directory fds kept open to resolve gfids without reading handle chains" },
    { "region-cache-size", NULL, KB_OPT_INT, "64", 1, 65536, NULL,
      "dirty-region maps kept in memory" },
    { "io-uring", NULL, KB_OPT_BOOL, "on", 0, 0, NULL,
      "data I/O through io_uring (off: synchronous on the loop thread)" },
    { "ring-size", NULL, KB_OPT_INT, "256", 8, 4096, NULL, "io_uring submission queue entries" },
    { "flush-behind", "storage.flush-behind", KB_OPT_SIZE, "4MiB", 0, 1ull << 40, NULL,
      "Start writing a file's dirty pages to disk after this many bytes of buffered writes "
      "(0: leave it to the kernel's writeback), so an fsync finds little left to write; "
      "bricks read it when they start (volume stop/start)" },
    { "orphan-grace", "storage.orphan-grace", KB_OPT_TIME, "120", 0, 3600000, NULL,
      "Seconds a brick keeps a file that was open and unlinked when the brick stopped or crashed, or "
      "when the connection of the client holding it went, so the client can reopen it when it "
      "reconnects (as long as the longest lock lease); then it is removed unless reopened; bricks "
      "read it when they start" },
    { NULL },
};

/* ---------------- fd table ---------------- */

static size_t ft_slot(const posix_priv_t *p, uint64_t num)
{
    return (size_t)(num * 0x9e3779b97f4a7c15ull >> 20) & (p->ft_nb - 1);
}

static void ft_grow(posix_priv_t *p)
{
    size_t nb = p->ft_nb * 2;
    posix_fd_t **t = calloc(nb, sizeof(*t));
    if (!t)
        return;               /* keep the old table: longer chains, still right */
    posix_fd_t **old = p->ft_tab;
    size_t onb = p->ft_nb;
    p->ft_tab = t;
    p->ft_nb = nb;
    for (size_t i = 0; i < onb; i++)
        for (posix_fd_t *f = old[i], *n; f; f = n) {
            n = f->hnext;
            size_t s = ft_slot(p, f->num);
            f->hnext = t[s];
            t[s] = f;
        }
    free(old);
}

posix_fd_t *posix_fd_add(posix_priv_t *p, int fd, const kb_gfid_t *g, uint32_t flags, bool is_dir,
                         uint64_t client_id)
{
    posix_fd_t *f = kb_zalloc(sizeof(*f));
    if (!f || (!is_dir && posix_held_ref(p, g))) {
        free(f);
        return NULL;
    }
    f->num = p->ft_next++;
    f->fd = fd;
    f->bfd = -1;
    f->gfid = *g;
    f->flags = flags;
    f->is_dir = is_dir;
    f->client_id = client_id;
    f->refs = 1;
    if (p->ft_count >= 2 * p->ft_nb)
        ft_grow(p);
    size_t s = ft_slot(p, f->num);
    f->hnext = p->ft_tab[s];
    p->ft_tab[s] = f;
    p->ft_count++;
    return f;
}

static posix_fd_t *ft_find(posix_priv_t *p, uint64_t num)
{
    for (posix_fd_t *f = p->ft_tab[ft_slot(p, num)]; f; f = f->hnext)
        if (f->num == num)
            return f;
    return NULL;
}

posix_fd_t *posix_fd_get(posix_priv_t *p, uint64_t num, const kb_gfid_t *g)
{
    posix_fd_t *f = num ? ft_find(p, num) : NULL;
    /* args.gfid rides along with every fd op; a mismatch is a confused or
     * hostile caller. */
    if (!f || (g && !kb_gfid_is_null(g) && !kb_gfid_eq(g, &f->gfid)))
        return NULL;
    f->refs++;
    return f;
}

void posix_fd_put(posix_priv_t *p, posix_fd_t *f)
{
    if (!f || --f->refs > 0)
        return;
    close(f->fd);
    if (f->bfd >= 0)
        close(f->bfd);
    free(f);
}

static void ft_unhash(posix_priv_t *p, posix_fd_t *f, bool conn_gone)
{
    posix_fd_t **pp = &p->ft_tab[ft_slot(p, f->num)];
    while (*pp && *pp != f)
        pp = &(*pp)->hnext;
    if (*pp) {
        *pp = f->hnext;
        p->ft_count--;
        if (!f->is_dir)
            posix_held_unref(p, &f->gfid, conn_gone);   /* the last of an orphan removes it */
    }
}

int posix_fd_release(posix_priv_t *p, uint64_t num, bool want_dir, bool conn_gone)
{
    posix_fd_t *f = num ? ft_find(p, num) : NULL;
    if (!f || f->is_dir != want_dir)
        return -EBADF;
    ft_unhash(p, f, conn_gone);
    posix_fd_put(p, f);       /* in-flight I/O keeps the real fd open */
    return 0;
}

/* Close every fd of CLIENT (or all when all == true). */
static unsigned ft_drop(posix_priv_t *p, uint64_t client, bool all)
{
    unsigned n = 0;
    for (size_t i = 0; i < p->ft_nb; i++)
        for (posix_fd_t *f = p->ft_tab[i], *nx; f; f = nx) {
            nx = f->hnext;
            if (all || f->client_id == client) {
                ft_unhash(p, f, true);
                posix_fd_put(p, f);
                n++;
            }
        }
    return n;
}

/* ---------------- replies ---------------- */

void posix_unwind_attr(kb_call_t *call, int status, const struct stat *st, const kb_gfid_t *g)
{
    kb_reply_t r = { .status = status };
    if (status >= 0 && st)
        posix_iatt(&r.attr, st, g);
    kb_unwind(call, &r);
}

void posix_unwind_status(kb_call_t *call, int status)
{
    kb_reply_t r = { .status = status };
    kb_unwind(call, &r);
}

void posix_reply_parent(kb_reply_t *r, int dfd, const kb_gfid_t *parent)
{
    struct stat st;
    if (r->status < 0 || dfd < 0 || fstat(dfd, &st))
        return;
    posix_iatt(&r->pattr, &st, parent);     /* what STAT of the directory answers */
    r->rflags |= KB_RF_PATTR;
}

/* ---------------- init / fini ---------------- */

static int open_internal(int dfd, const char *name, int *out)
{
    if (mkdirat(dfd, name, 0700) && errno != EEXIST)
        return -errno;
    int fd = posix_openat(dfd, name, O_RDONLY | O_DIRECTORY, 0);
    if (fd < 0)
        return fd;
    *out = fd;
    return 0;
}

/* The root carries the fixed root gfid; an unstamped root gets it. */
static int root_gfid_check(posix_priv_t *p)
{
    kb_gfid_t g;
    ssize_t n = fgetxattr(p->root_fd, KB_XATTR_GFID, g.b, sizeof(g.b));
    if (n < 0 && errno == ENODATA)
        return fsetxattr(p->root_fd, KB_XATTR_GFID, kb_gfid_root.b, 16, XATTR_CREATE) ? -errno : 0;
    if (n < 0)
        return -errno;
    if (n != 16 || !kb_gfid_is_root(&g)) {
        kb_err(p->xl->name, "%s: root carries a non-root gfid (a subdirectory of another brick?)", p->dir);
        return -EINVAL;
    }
    return 0;
}

static int posix_open_brick(posix_priv_t *p)
{
    p->root_fd = open(p->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (p->root_fd < 0) {
        int rc = -errno;
        kb_err(p->xl->name, "cannot open brick %s: %s", p->dir, strerror(-rc));
        return rc;
    }
    int rc = root_gfid_check(p);
    if (!rc)
        rc = open_internal(p->root_fd, KB_INTERNAL_DIR, &p->internal_fd);
    if (!rc)
        rc = open_internal(p->internal_fd, "handles", &p->handles_fd);
    if (!rc)
        rc = open_internal(p->internal_fd, "index", &p->index_fd);
    if (!rc)
        rc = open_internal(p->internal_fd, "regions", &p->regions_fd);
    if (!rc)
        rc = open_internal(p->internal_fd, "unlinked", &p->unlinked_fd);
    if (rc)
        kb_err(p->xl->name, "%s: preparing %s/: %s", p->dir, KB_INTERNAL_DIR, strerror(-rc));
    return rc;
}

static void posix_free(posix_priv_t *p)
{
    if (!p)
        return;
    posix_io_fini(p);
    posix_orphan_fini(p);     /* first: the fds closing below leave the orphans for the next start */
    if (p->ft_tab) {
        ft_drop(p, 0, true);
        free(p->ft_tab);
    }
    posix_rm_fini(p);
    posix_dc_fini(p);
    int *fds[] = { &p->unlinked_fd, &p->regions_fd, &p->index_fd, &p->handles_fd, &p->internal_fd,
                   &p->root_fd };
    for (size_t i = 0; i < KB_ARRAY_SIZE(fds); i++)
        if (*fds[i] >= 0)
            close(*fds[i]);
    free(p->dir);
    free(p);
}

/* Before anything on the brick is written: its identity (when the volfile
 * names the volume), then its on-disk format, upgraded when older (brick.c). */
static int posix_check_volume(kb_xlator_t *xl, const char *dir)
{
    const char *vol = kb_opt_str(xl->opts, posix_options, "volume-id");
    char why[512] = "";
    int rc = 0;
    if (vol && *vol) {
        kb_gfid_t v;
        if (kb_gfid_parse(vol, &v)) {
            kb_err(xl->name, "option volume-id: '%s' is not a uuid", vol);
            return -EINVAL;
        }
        rc = posix_brick_check(dir, &v, why, sizeof(why));
    }
    if (!rc)
        rc = posix_brick_upgrade(dir, why, sizeof(why));
    if (rc)
        kb_err(xl->name, "refusing brick: %s", why);
    return rc;
}

static int posix_init(kb_xlator_t *xl)
{
    const char *dir = kb_opt_str(xl->opts, posix_options, "directory");
    if (!dir || dir[0] != '/') {
        kb_err(xl->name, "option 'directory' must be an absolute path");
        return -EINVAL;
    }
    int rc = posix_check_volume(xl, dir);
    if (rc)
        return rc;
    posix_priv_t *p = kb_zalloc(sizeof(*p));
    if (!p)
        return -ENOMEM;
    p->xl = xl;
    p->root_fd = p->internal_fd = p->handles_fd = p->index_fd = p->regions_fd = p->unlinked_fd = -1;
    p->ft_nb = 256;
    p->ft_next = 1;
    p->rm_max = (unsigned)kb_opt_int(xl->opts, posix_options, "region-cache-size");
    p->flush_behind = kb_opt_size(xl->opts, posix_options, "flush-behind");
    if (!(p->dir = strdup(dir)) || !(p->ft_tab = calloc(p->ft_nb, sizeof(*p->ft_tab)))) {
        posix_free(p);
        return -ENOMEM;
    }
    struct event_base *base = xl->graph ? xl->graph->base : NULL;
    if ((rc = posix_open_brick(p)) ||
        (rc = posix_dc_init(p, (size_t)kb_opt_int(xl->opts, posix_options, "dir-cache-size"))) ||
        (rc = posix_orphan_init(p, base, kb_opt_time_ms(xl->opts, posix_options, "orphan-grace")))) {
        posix_free(p);
        return rc;
    }
    if (kb_opt_bool(xl->opts, posix_options, "io-uring") && base) {
        rc = posix_io_init(p, base, (unsigned)kb_opt_int(xl->opts, posix_options, "ring-size"));
        if (rc)
            kb_warn(xl->name, "io_uring unavailable (%s): synchronous I/O on the loop thread",
                    strerror(-rc));
    }
    xl->priv = p;
    kb_info(xl->name, "brick %s ready (%s I/O)", p->dir, p->ring ? "io_uring" : "synchronous");
    return 0;
}

static void posix_fini(kb_xlator_t *xl)
{
    posix_free(xl->priv);
    xl->priv = NULL;
}

/* ---------------- distribute's layout IPC ----------------
 * KB_IPC_LAYOUT_GET / KB_IPC_LAYOUT_SET (changelog.h section 4), added by
 * cluster/distribute: the directory's KB_LAYOUT_XATTR value, opaque here
 * (its format belongs to xlators/cluster/distribute/layout.h). Clients
 * cannot reach trusted.kembar.* through the xattr fops; this is the only
 * way in. */
int posix_layout_ipc(posix_priv_t *p, const kb_args_t *a, kb_reply_t *r)
{
    posix_obj_t o;
    int rc = posix_resolve(p, &a->gfid, &o);
    if (rc)
        return rc;
    if (!S_ISDIR(o.st.st_mode)) {
        rc = -ENOTDIR;
    } else if (a->flags == KB_IPC_LAYOUT_SET) {
        rc = !a->data || a->data->len != KB_LAYOUT_DISK_BYTES
                 ? -EINVAL
                 : posix_obj_setxattr(&o, KB_LAYOUT_XATTR, a->data->data, a->data->len, 0);
    } else {
        uint8_t v[KB_LAYOUT_DISK_BYTES];
        ssize_t n = posix_obj_getxattr(&o, KB_LAYOUT_XATTR, v, sizeof(v));
        if (n == -ENODATA)
            n = 0;                    /* none stored: an empty value */
        if (n < 0)
            rc = n == -ERANGE ? -EINVAL : (int)n;
        else if (!(r->data = kb_buf_copy(v, (size_t)n)))
            rc = -ENOMEM;
    }
    posix_obj_put(p, &o);
    return rc;
}

/* The brick is up as soon as its parent is: there is nothing to connect. */
static void posix_notify(kb_xlator_t *xl, int event, kb_xlator_t *child)
{
    if (event == KB_EV_PARENT_UP)
        kb_notify_parents(xl, KB_EV_CHILD_UP);
    else if (event == KB_EV_PARENT_DOWN) {
        /* Teardown: finish the I/O in flight now, while locks and the
         * server above can still take its completions (a late one reached
         * a finalised features/locks on SIGTERM). */
        if (xl->priv)
            posix_io_drain(xl->priv);
        kb_notify_parents(xl, KB_EV_CHILD_DOWN);
    }
}

static int posix_ctl(kb_xlator_t *xl, int code, void *arg)
{
    posix_priv_t *p = xl->priv;
    if (!p)
        return -ENOSYS;
    switch (code) {
    case KB_CTL_CLIENT_GONE: {
        unsigned n = ft_drop(p, *(const uint64_t *)arg, false);
        if (n)
            kb_info(xl->name, "client %llx gone: closed %u fds",
                    (unsigned long long)*(const uint64_t *)arg, n);
        return 0;
    }
    case KB_CTL_STATUS:
        kb_ctl_printf(arg, "%s: brick %s, %zu open fds, %zu/%zu cached dirs, %zu open-unlinked, %s I/O\n",
                      xl->name, p->dir, p->ft_count, p->dc_count, p->dc_max, p->orphans,
                      p->ring ? "io_uring" : "synchronous");
        return 0;
    default:
        return -ENOSYS;
    }
}

const kb_xlator_type_t kb_xl_posix = {
    .name = "storage/posix",
    .ops = {
        [KB_FOP_LOOKUP] = posix_op_lookup,       [KB_FOP_STAT] = posix_op_stat,
        [KB_FOP_SETATTR] = posix_op_setattr,     [KB_FOP_TRUNCATE] = posix_op_truncate,
        [KB_FOP_READLINK] = posix_op_readlink,   [KB_FOP_MKNOD] = posix_op_mknod,
        [KB_FOP_MKDIR] = posix_op_mkdir,         [KB_FOP_UNLINK] = posix_op_unlink,
        [KB_FOP_RMDIR] = posix_op_rmdir,         [KB_FOP_SYMLINK] = posix_op_symlink,
        [KB_FOP_RENAME] = posix_op_rename,       [KB_FOP_LINK] = posix_op_link,
        [KB_FOP_CREATE] = posix_op_create,       [KB_FOP_OPEN] = posix_op_open,
        [KB_FOP_READ] = posix_op_read,           [KB_FOP_WRITE] = posix_op_write,
        [KB_FOP_FLUSH] = posix_op_flush,         [KB_FOP_FSYNC] = posix_op_fsync,
        [KB_FOP_RELEASE] = posix_op_release,     [KB_FOP_OPENDIR] = posix_op_opendir,
        [KB_FOP_READDIR] = posix_op_readdir,     [KB_FOP_RELEASEDIR] = posix_op_releasedir,
        [KB_FOP_FSYNCDIR] = posix_op_fsyncdir,   [KB_FOP_STATFS] = posix_op_statfs,
        [KB_FOP_SETXATTR] = posix_op_setxattr,   [KB_FOP_GETXATTR] = posix_op_getxattr,
        [KB_FOP_LISTXATTR] = posix_op_listxattr, [KB_FOP_REMOVEXATTR] = posix_op_removexattr,
        [KB_FOP_FALLOCATE] = posix_op_fallocate, [KB_FOP_LSEEK] = posix_op_lseek,
        [KB_FOP_XATTROP] = posix_op_xattrop,     [KB_FOP_RCHECKSUM] = posix_op_rchecksum,
        [KB_FOP_IPC] = posix_op_ipc,
        /* INODELK / ENTRYLK / LK: features/locks above; alone, the default
         * pass-through answers -ENOSYS (no child). */
    },
    .init = posix_init,
    .fini = posix_fini,
    .notify = posix_notify,
    .options = posix_options,
    .ctl = posix_ctl,
};
