/*
 * dir.c — names and directories: lookup and forget (the kernel's lookup
 * counts), the ops that make or remove a name (mknod, mkdir, symlink, link,
 * unlink, rmdir, rename), readlink, and open directories (opendir, readdir,
 * readdirplus, releasedir, fsyncdir).
 *
 * Promises, besides the contract in fuse/ops.c:
 *  - A name longer than a brick stores is refused here (ENAMETOOLONG), as
 *    a local file system would.
 *  - An entry reply (lookup, mknod, mkdir, symlink, link) and each
 *    readdirplus entry take their lookup reference just before the reply and
 *    give it back if the reply fails; an entry that does not fit the readdir
 *    buffer takes none. "No such name" is a cacheable negative entry when
 *    negative_timeout is set.
 *  - A directory handle whose opendir reply failed is released.
 *  - The kernel never caches a listing: another client may change it.
 */
#include "fuse/ops.h"
#include "fuse/handover.h"

#include <dirent.h>
#include <sys/stat.h>

/* ---------------- lookup ---------------- */

static void done_entry(kbf_req_t *r, const kb_reply_t *rep)
{
    kbf_t *fs = r->fs;
    struct fuse_entry_param e;
    if (rep->status == -ENOENT && fs->negative_timeout > 0) {
        memset(&e, 0, sizeof(e));            /* ino 0: a cacheable "no such name" */
        e.entry_timeout = fs->negative_timeout;
        fuse_reply_entry(r->req, &e);
        kbf_req_free(r);
        return;
    }
    if (rep->status < 0) {
        kbf_reply_err(r, rep->status);
        return;
    }
    int rc = kbf_entry_fill(fs, &rep->attr, &r->a.newgfid, &e);
    if (rc < 0) {
        kbf_reply_err(r, rc);
        return;
    }
    if (fuse_reply_entry(r->req, &e) != 0)
        kbf_itable_forget(fs->it, e.ino, 1);
    kbf_req_free(r);
}

void kbf_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    if (!kbf_name_fits(req, name))
        return;
    kbf_req_t *r = kbf_req_new(req, parent, false);
    if (r && kbf_arg_str(r, &r->a.name, name))
        kbf_req_submit(r, KB_FOP_LOOKUP, done_entry);
}

/* A forgotten node id may name another inode next: nothing kept for it
 * (fuse/recent.h) stays usable, whatever the gfid. */
void kbf_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
    kbf_t *fs = fuse_req_userdata(req);
    kbf_recent_bump(fs->recent, ino);
    kbf_itable_forget(fs->it, ino, nlookup);
    fuse_reply_none(req);
}

void kbf_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
    kbf_t *fs = fuse_req_userdata(req);
    for (size_t i = 0; i < count; i++) {
        kbf_recent_bump(fs->recent, forgets[i].ino);
        kbf_itable_forget(fs->it, forgets[i].ino, forgets[i].nlookup);
    }
    fuse_reply_none(req);
}

/* ---------------- names ---------------- */

void kbf_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
    kbf_req_t *r = kbf_req_create_in(req, parent, name);
    if (!r)
        return;
    r->a.mode = mode;
    r->a.rdev = rdev;
    kbf_req_submit(r, KB_FOP_MKNOD, done_entry);
}

void kbf_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
    kbf_req_t *r = kbf_req_create_in(req, parent, name);
    if (!r)
        return;
    r->a.mode = (mode & 07777) | S_IFDIR;
    kbf_req_submit(r, KB_FOP_MKDIR, done_entry);
}

void kbf_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
    if (strlen(link) >= KB_PATH_MAX) {
        fuse_reply_err(req, ENAMETOOLONG);
        return;
    }
    kbf_req_t *r = kbf_req_create_in(req, parent, name);
    if (r && kbf_arg_str(r, &r->a.name2, link))
        kbf_req_submit(r, KB_FOP_SYMLINK, done_entry);
}

static void done_readlink(kbf_req_t *r, const kb_reply_t *rep)
{
    if (rep->status < 0 || !rep->data) {
        kbf_reply_err(r, rep->status < 0 ? rep->status : -EIO);
        return;
    }
    char *s = strndup(rep->data->data, rep->data->len);
    if (!s) {
        kbf_reply_err(r, -ENOMEM);
        return;
    }
    fuse_reply_readlink(r->req, s);
    free(s);
    kbf_req_free(r);
}

void kbf_readlink(fuse_req_t req, fuse_ino_t ino)
{
    kbf_req_t *r = kbf_req_inode(req, ino, false);
    if (r)
        kbf_req_submit(r, KB_FOP_READLINK, done_readlink);
}

void kbf_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    if (!kbf_name_fits(req, name))
        return;
    kbf_req_t *r = kbf_req_new(req, parent, true);
    if (r && kbf_arg_str(r, &r->a.name, name))
        kbf_req_submit(r, KB_FOP_UNLINK, kbf_done_status);
}

void kbf_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    if (!kbf_name_fits(req, name))
        return;
    kbf_req_t *r = kbf_req_new(req, parent, true);
    if (r && kbf_arg_str(r, &r->a.name, name))
        kbf_req_submit(r, KB_FOP_RMDIR, kbf_done_status);
}

void kbf_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
                const char *newname, unsigned int flags)
{
    if (!kbf_name_fits(req, name) || !kbf_name_fits(req, newname))
        return;
    kbf_req_t *r = kbf_req_new(req, parent, true);
    if (!r || !kbf_arg_str(r, &r->a.name, name) || !kbf_arg_str(r, &r->a.name2, newname))
        return;
    r->a.gfid2 = *kbf_itable_gfid(r->fs->it, newparent);
    r->ino2 = newparent;
    r->a.flags = flags;          /* RENAME_NOREPLACE / RENAME_EXCHANGE */
    kbf_req_submit(r, KB_FOP_RENAME, kbf_done_status);
}

void kbf_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
    if (!kbf_name_fits(req, newname))
        return;
    kbf_req_t *r = kbf_req_inode(req, ino, true);
    if (!r || !kbf_arg_str(r, &r->a.name2, newname))
        return;
    r->a.gfid2 = *kbf_itable_gfid(r->fs->it, newparent);
    r->ino2 = newparent;
    r->a.newgfid = r->a.gfid;    /* fallback for the entry: the same inode */
    kbf_req_submit(r, KB_FOP_LINK, done_entry);
}

/* ---------------- directories ---------------- */

static void done_opendir(kbf_req_t *r, const kb_reply_t *rep)
{
    if (rep->status < 0) {
        kbf_reply_err(r, rep->status);
        return;
    }
    r->fi.fh = rep->fd;
    r->fi.cache_readdir = 0;     /* another client may change it any time */
    kbf_ho_opened(r->fs, r->unique, rep->fd);
    if (fuse_reply_open(r->req, &r->fi) != 0)
        kbf_release_fd(r->fs, &r->a.gfid, rep->fd, true);
    kbf_req_free(r);
}

void kbf_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    kbf_req_t *r = kbf_req_inode(req, ino, true);
    if (!r)
        return;
    kbf_ho_resent_open(r->fs, r->unique);
    r->fi = *fi;
    kbf_req_submit(r, KB_FOP_OPENDIR, done_opendir);
}

static bool is_dot(const char *n)
{
    return n[0] == '.' && (n[1] == 0 || (n[1] == '.' && n[2] == 0));
}

static uint64_t dirent_ino(const kb_dirent_t *d)
{
    const kb_gfid_t *g = d->has_attr && !kb_gfid_is_null(&d->attr.gfid) ? &d->attr.gfid : &d->gfid;
    return kb_gfid_to_ino(g);
}

/* Add one readdirplus entry; *counted receives the node id whose lookup
 * reference it took (0: none). Returns the size it needs (> rem: not added). */
static size_t add_plus(kbf_req_t *r, char *p, size_t rem, const kb_dirent_t *d, uint64_t *counted)
{
    struct fuse_entry_param e;
    *counted = 0;
    if (!is_dot(d->name) && d->has_attr &&
        kbf_entry_fill(r->fs, &d->attr, &d->gfid, &e) == 0) {
        *counted = e.ino;
    } else {
        /* ino 0: the kernel just lists the name ("." and "..", or no attrs) */
        memset(&e, 0, sizeof(e));
        e.attr.st_ino = dirent_ino(d);
        e.attr.st_mode = DTTOIF(d->type);
    }
    size_t n = fuse_add_direntry_plus(r->req, p, rem, d->name, &e, (off_t)d->off);
    if (n > rem && *counted) {
        kbf_itable_forget(r->fs->it, *counted, 1);
        *counted = 0;
    }
    return n;
}

static void done_readdir(kbf_req_t *r, const kb_reply_t *rep)
{
    if (rep->status < 0) {
        kbf_reply_err(r, rep->status);
        return;
    }
    char *buf = calloc(1, r->size ? r->size : 1);
    uint64_t *ids = r->plus ? calloc(rep->ndirents + 1, sizeof(*ids)) : NULL;
    if (!buf || (r->plus && !ids)) {
        free(buf);
        free(ids);
        kbf_reply_err(r, -ENOMEM);
        return;
    }
    size_t used = 0;
    uint32_t i;
    for (i = 0; i < rep->ndirents; i++) {
        const kb_dirent_t *d = &rep->dirents[i];
        size_t rem = r->size - used, n;
        if (r->plus) {
            n = add_plus(r, buf + used, rem, d, &ids[i]);
        } else {
            struct stat st = { .st_ino = dirent_ino(d), .st_mode = DTTOIF(d->type) };
            n = fuse_add_direntry(r->req, buf + used, rem, d->name, &st, (off_t)d->off);
        }
        if (n > rem)
            break;               /* the rest comes with the next readdir at d->off */
        used += n;
    }
    if (fuse_reply_buf(r->req, buf, used) != 0 && ids)
        for (uint32_t k = 0; k < i; k++)       /* the kernel never saw these */
            kbf_itable_forget(r->fs->it, ids[k], 1);
    free(buf);
    free(ids);
    kbf_req_free(r);
}

static void readdir_common(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                           struct fuse_file_info *fi, bool plus)
{
    kbf_req_t *r = kbf_req_inode(req, ino, false);
    if (!r)
        return;
    r->a.fd = fi->fh;
    r->a.off = (uint64_t)off;
    r->a.size = size;
    r->a.flags = plus ? 1 : 0;
    r->size = size;
    r->plus = plus;
    kbf_req_submit(r, KB_FOP_READDIR, done_readdir);
}

void kbf_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                 struct fuse_file_info *fi)
{
    readdir_common(req, ino, size, off, fi, false);
}

void kbf_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                     struct fuse_file_info *fi)
{
    readdir_common(req, ino, size, off, fi, true);
}

void kbf_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    kbf_req_t *r = kbf_req_inode(req, ino, false);
    if (!r)
        return;
    r->a.fd = fi->fh;
    kbf_req_submit(r, KB_FOP_RELEASEDIR, kbf_done_release);
}

void kbf_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
    kbf_req_t *r = kbf_req_inode(req, ino, false);
    if (!r)
        return;
    r->a.fd = fi->fh;
    r->a.flags = datasync ? 1 : 0;
    kbf_req_submit(r, KB_FOP_FSYNCDIR, kbf_done_status);
}
