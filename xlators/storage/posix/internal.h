/*
 * internal.h — shared state of the storage/posix files (private).
 *
 * storage/posix is split by concern:
 *   posix.c         descriptor, init/fini/notify/ctl, fd table, reply helpers
 *   handle.c     names, gfid handles, directory fd cache, object resolution
 *   entry.c      entry ops (lookup, create, mkdir, rename, readdir, ...)
 *   inode.c      inode ops (stat, setattr, xattrs, open, lseek, ...)
 *   io.c         data I/O through io_uring joined to the graph's loop
 *   changelog.c  XATTROP, heal index, dirty-region maps, IPC
 *   orphan.c     open-unlinked files: kept by gfid until the last close
 *   brick.c      brick stamping (posix.h)
 *
 * Threading: everything here runs on the graph's loop thread; no locks.
 *
 * Confinement invariant: user objects are only ever reached by a single
 * validated name (posix_name_check) relative to a directory fd that lies in
 * the brick, with O_NOFOLLOW / AT_SYMLINK_NOFOLLOW, or through the brick's
 * own handle tree. No absolute path into the brick is ever built, so depth
 * and PATH_MAX do not matter and nothing outside the brick is touched.
 */
#ifndef KB_POSIX_INTERNAL_H
#define KB_POSIX_INTERNAL_H

#include <fcntl.h>
#include <sys/stat.h>
#include "xlators/xlator.h"
#include "xlators/storage/posix/posix.h"
#include "xlators/changelog.h"

#define POSIX_XL "posix"
/* Parent record kept on non-directories: "<parent-gfid>/<name>" of the
 * latest link, a hint for KB_IPC_GFID_PATH (heal info). */
#define POSIX_XATTR_PARENT "trusted.kembar.parent"
/* Open flags a client may ask for; anything else (O_CREAT, O_PATH,
 * O_DIRECTORY, O_TMPFILE...) is dropped. */
#define POSIX_OPEN_FLAGS (O_ACCMODE | O_APPEND | O_DIRECT | O_SYNC | O_DSYNC | O_NOATIME | O_TRUNC)
#define POSIX_RECORD_MAX (KB_GFID_STRLEN + KB_NAME_MAX + 2)

/* A cached directory: an O_RDONLY|O_DIRECTORY fd keyed by gfid. The fd
 * follows the directory through renames, so an entry never goes stale; a
 * removed directory makes every *at() below it fail with ENOENT. */
typedef struct posix_dent {
    kb_gfid_t gfid;
    int fd;
    int pins;                 /* users inside the current op; never evicted while > 0 */
    bool dead;                /* removed from the table; closed at last unpin */
    struct posix_dent *hnext;
    struct posix_dent *lru_prev, *lru_next;
} posix_dent_t;

/* An fd of the brick's fd table. NUM is what travels on the wire; it is a
 * counter, never a pointer. */
typedef struct posix_fd {
    uint64_t num;
    int fd;
    int bfd;                  /* buffered twin of an O_DIRECT fd, -1 until needed */
    kb_gfid_t gfid;
    uint32_t flags;
    bool is_dir;
    uint64_t client_id;
    int refs;                 /* 1 for the table + 1 per in-flight I/O */
    uint64_t fb_lo, fb_hi;    /* span of the buffered writes since the last flush-behind, */
    uint64_t fb_bytes;        /* and their bytes (0: none; io.c) */
    struct posix_fd *hnext;
} posix_fd_t;

/* A regular file the brick holds open, by gfid (orphan.c): its fds in the
 * table, and whether it lost its last name meanwhile (an orphan: its handle
 * stays, .kembar/unlinked/<gfid> records it). */
typedef struct posix_held {
    kb_gfid_t gfid;
    uint32_t nfds;
    bool orphan;
    uint64_t keep_until;      /* orphan held by nobody: kept until then (kb_now_ms) */
    struct posix_held *next;
} posix_held_t;

/* A dirty-region map held in memory (changelog.c). */
typedef struct posix_rmap {
    kb_gfid_t gfid;
    int fd;
    uint8_t *bits;
    size_t nbytes;            /* bitmap bytes held (the file may be shorter) */
    struct posix_rmap *next;  /* MRU first */
} posix_rmap_t;

struct posix_ring;
struct event;

/* In .kembar/: the empty file every heal index entry is a hard link to
 * (changelog.c, index_add). Older releases ignore it. */
#define POSIX_INDEX_BASE "index-base"

typedef struct posix_priv {
    kb_xlator_t *xl;
    char *dir;
    int root_fd, internal_fd, handles_fd, index_fd, regions_fd, unlinked_fd;

    /* directory fd cache: hash + LRU (head = most recent) */
    posix_dent_t **dc_tab;
    size_t dc_nb, dc_count, dc_max;
    posix_dent_t dc_lru;      /* sentinel */
    posix_dent_t *dc_root;    /* permanently pinned */

    /* fd table */
    posix_fd_t **ft_tab;
    size_t ft_nb, ft_count;
    uint64_t ft_next;

    /* held files and orphans (orphan.c) */
    posix_held_t **hd_tab;
    size_t hd_nb, hd_count, orphans;
    uint64_t grace_ms;        /* orphan-grace: how long an orphan waits for its client */
    struct event *sweep_ev;   /* removes the kept orphans nobody came back for */
    uint64_t sweep_at;        /* when it is armed for (kb_now_ms), 0: not armed */

    /* region maps */
    posix_rmap_t *rm_head;
    unsigned rm_count, rm_max;

    struct posix_ring *ring;  /* NULL: synchronous I/O fallback */
    uint64_t flush_behind;    /* bytes; 0: off (io.c) */
} posix_priv_t;

/* An object being operated on: NAME relative to DFD, or DFD itself when
 * name[0] == 0 (a directory). Non-directories found by gfid are named by
 * their handle ("xx/yy/<gfid>" relative to handles_fd). */
typedef struct posix_obj {
    int dfd;
    char name[KB_NAME_MAX + 1];
    posix_dent_t *pin;        /* released by posix_obj_put */
    struct stat st;
    kb_gfid_t gfid;
} posix_obj_t;

static inline posix_priv_t *posix_priv(kb_call_t *call) { return call->xl->priv; }

/* The mode after a write or truncate by caller C, who lacks CAP_FSETID
 * (KB_WF_KILL_SUIDGID), as the VFS has it (setattr_should_drop_sgid):
 * setuid goes; setgid too when the file is group-executable or C is not in
 * its group. C's supplementary groups are known only where the mount sends
 * them (without default_permissions); otherwise only its gid counts. */
static inline mode_t posix_kill_suidgid(mode_t m, gid_t file_gid, const kb_cred_t *c)
{
    m &= ~(mode_t)S_ISUID;
    bool in_group = c->gid == file_gid;
    for (uint32_t i = 0; i < c->ngroups && i < KB_ARRAY_SIZE(c->groups) && !in_group; i++)
        in_group = c->groups[i] == file_gid;
    if ((m & S_IXGRP) || !in_group)
        m &= ~(mode_t)S_ISGID;
    return m;
}

/* ---- handle.c ---- */
/* openat2(RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS|RESOLVE_NO_MAGICLINKS) with
 * O_NOFOLLOW|O_CLOEXEC added; fd or -errno. */
int posix_openat(int dfd, const char *name, int flags, mode_t mode);
int posix_name_check(const kb_gfid_t *parent, const char *name);
int posix_dc_init(posix_priv_t *p, size_t max);
void posix_dc_fini(posix_priv_t *p);
int posix_dir_get(posix_priv_t *p, const kb_gfid_t *g, posix_dent_t **out);
void posix_dir_put(posix_priv_t *p, posix_dent_t *d);
void posix_dir_forget(posix_priv_t *p, const kb_gfid_t *g);
/* Cache a directory fd just created (takes ownership of FD). */
void posix_dir_adopt(posix_priv_t *p, const kb_gfid_t *g, int fd);
/* Resolve a gfid to an object (stat filled, gfid set). */
int posix_resolve(posix_priv_t *p, const kb_gfid_t *g, posix_obj_t *o);
/* Resolve parent + validated NAME. Returns 0 (exists, stat + gfid filled),
 * -ENOENT with O VALID (parent pinned, name set) when the name is free, or
 * another -errno with O released. */
int posix_resolve_entry(posix_priv_t *p, const kb_gfid_t *parent, const char *name, posix_obj_t *o);
void posix_obj_put(posix_priv_t *p, posix_obj_t *o);
int posix_obj_stat(posix_obj_t *o);
/* Read the gfid xattr into o->gfid (null when absent). */
int posix_obj_read_gfid(posix_obj_t *o);
ssize_t posix_obj_getxattr(posix_obj_t *o, const char *key, void *val, size_t size);
int posix_obj_setxattr(posix_obj_t *o, const char *key, const void *val, size_t size, int flags);
ssize_t posix_obj_listxattr(posix_obj_t *o, char *list, size_t size);
int posix_obj_removexattr(posix_obj_t *o, const char *key);
/* open the object itself (never follows a symlink); returns fd or -errno */
int posix_obj_open(posix_obj_t *o, int flags);
/* "/proc/self/fd/N[/name]" for the *xattr and chmod calls */
void posix_obj_procpath(const posix_obj_t *o, char *buf, size_t len);
/* Directory handle record: write (create or replace) / remove. */
int posix_dirrec_write(posix_priv_t *p, const kb_gfid_t *g, const kb_gfid_t *parent, const char *name);
int posix_dirrec_read(posix_priv_t *p, const kb_gfid_t *g, kb_gfid_t *parent, char *name, size_t len);
/* Hard-link handle of a non-directory: link DFD/NAME as the handle of G. */
int posix_handle_link(posix_priv_t *p, const kb_gfid_t *g, int dfd, const char *name);
/* Remove the handle of G (file link or directory record) if it is INO (0:
 * any). True when a handle was removed: the object is gone for good. */
bool posix_handle_unlink(posix_priv_t *p, const kb_gfid_t *g, ino_t ino);
/* attributes for a reply: the handle link is excluded from nlink */
void posix_iatt(kb_iatt_t *ia, const struct stat *st, const kb_gfid_t *g);
bool posix_is_internal_xattr(const char *name);

/* ---- posix.c: fd table ---- */
posix_fd_t *posix_fd_add(posix_priv_t *p, int fd, const kb_gfid_t *g, uint32_t flags, bool is_dir,
                         uint64_t client_id);
/* Validated lookup of a wire fd number (takes a reference) or NULL. */
posix_fd_t *posix_fd_get(posix_priv_t *p, uint64_t num, const kb_gfid_t *g);
void posix_fd_put(posix_priv_t *p, posix_fd_t *f);
/* CONN_GONE: the fd goes with its client's connection (KB_REL_CONN_GONE). */
int posix_fd_release(posix_priv_t *p, uint64_t num, bool want_dir, bool conn_gone);
void posix_unwind_attr(kb_call_t *call, int status, const struct stat *st, const kb_gfid_t *g);
void posix_unwind_status(kb_call_t *call, int status);
/* After a successful entry op in the directory open at DFD (gfid PARENT):
 * R carries that directory's attributes (KB_RF_PATTR), so the client need
 * not ask for them again. Nothing when STATUS < 0 or the fstat fails. */
void posix_reply_parent(kb_reply_t *r, int dfd, const kb_gfid_t *parent);

/* ---- entry.c ---- */
void posix_op_lookup(kb_call_t *call);
void posix_op_mknod(kb_call_t *call);
void posix_op_mkdir(kb_call_t *call);
void posix_op_symlink(kb_call_t *call);
void posix_op_create(kb_call_t *call);
void posix_op_unlink(kb_call_t *call);
void posix_op_rmdir(kb_call_t *call);
void posix_op_rename(kb_call_t *call);
void posix_op_link(kb_call_t *call);
void posix_op_opendir(kb_call_t *call);
void posix_op_readdir(kb_call_t *call);

/* ---- inode.c ---- */
void posix_op_stat(kb_call_t *call);
void posix_op_setattr(kb_call_t *call);
void posix_op_truncate(kb_call_t *call);
void posix_op_readlink(kb_call_t *call);
void posix_op_open(kb_call_t *call);
void posix_op_flush(kb_call_t *call);
void posix_op_release(kb_call_t *call);
void posix_op_releasedir(kb_call_t *call);
void posix_op_fsyncdir(kb_call_t *call);
void posix_op_statfs(kb_call_t *call);
void posix_op_setxattr(kb_call_t *call);
void posix_op_getxattr(kb_call_t *call);
void posix_op_listxattr(kb_call_t *call);
void posix_op_removexattr(kb_call_t *call);
void posix_op_lseek(kb_call_t *call);

/* ---- io.c ---- */
int posix_io_init(posix_priv_t *p, struct event_base *base, unsigned entries);
void posix_io_fini(posix_priv_t *p);
void posix_io_drain(posix_priv_t *p);   /* complete what the ring holds (teardown) */
void posix_op_read(kb_call_t *call);
void posix_op_write(kb_call_t *call);
void posix_op_fsync(kb_call_t *call);
void posix_op_fallocate(kb_call_t *call);
void posix_op_rchecksum(kb_call_t *call);

/* ---- changelog.c ---- */
void posix_op_xattrop(kb_call_t *call);
void posix_op_ipc(kb_call_t *call);
/* KB_IPC_LAYOUT_GET/SET for cluster/distribute (posix.c). */
int posix_layout_ipc(posix_priv_t *p, const kb_args_t *a, kb_reply_t *r);
/* Durably set the region bits of [off, off+len) before a tracked op. */
int posix_regions_track(posix_priv_t *p, const kb_gfid_t *g, uint64_t off, uint64_t len);
/* The object is gone: drop its index entry and region map. */
void posix_cl_forget(posix_priv_t *p, const kb_gfid_t *g);
void posix_rm_fini(posix_priv_t *p);

/* ---- orphan.c ---- */
/* Scan .kembar/unlinked (leftovers of the previous run) and keep them for
 * GRACE_MS (0, or no BASE: remove them at once). */
int posix_orphan_init(posix_priv_t *p, struct event_base *base, uint64_t grace_ms);
void posix_orphan_fini(posix_priv_t *p);
/* The fd table opens / closes an fd on regular file G. The last close of an
 * orphan removes it, unless it is kept (after posix_orphan_fini; a kept one; CONN_GONE:
 * the fd went with its client's connection, kept for the grace). */
int posix_held_ref(posix_priv_t *p, const kb_gfid_t *g);
void posix_held_unref(posix_priv_t *p, const kb_gfid_t *g, bool conn_gone);
/* Before the last name of regular file G goes: 1 when the brick holds it
 * open and its marker is now durable (keep the handle), 0 when it is not
 * open here, -errno when the marker could not be made (logged: remove the
 * handle as if not open). */
int posix_orphan_mark(posix_priv_t *p, const kb_gfid_t *g);
/* The name removal failed after posix_orphan_mark returned 1. */
void posix_orphan_unmark(posix_priv_t *p, const kb_gfid_t *g);
bool posix_orphan_is(const posix_priv_t *p, const kb_gfid_t *g);

/* ---- brick.c ---- */
int posix_rmtree_at(int dfd, const char *name, int depth);

#endif
