/*
 * ops.h — the bridge's internals, shared by fuse/ops.c and the files that
 * hold the ops (fuse/dir.c, file.c, attr.c, xattr.c, lock.c): the request
 * every op carries from its handler to its one reply, the plumbing around
 * it, and the handlers the ops table (fuse/ops.c) names. The contract every
 * op keeps is written once, at the top of fuse/ops.c. fuse/main.c does not
 * include this; it sees only fuse/kbfuse.h.
 */
#ifndef KB_FUSE_OPS_H
#define KB_FUSE_OPS_H

#include "fuse/kbfuse.h"
#include "fuse/recent.h"

typedef struct kbf_req kbf_req_t;
typedef void (*kbf_done_fn)(kbf_req_t *r, const kb_reply_t *rep);

struct kbf_req {
    kbf_t *fs;
    fuse_req_t req;              /* NULL: internal call, nobody to reply to */
    kb_args_t a;                 /* owned: name, name2, data freed by kbf_req_free */
    kb_cred_t cred;
    kbf_done_fn done;
    struct fuse_file_info fi;    /* open/create/opendir: what we reply with */
    int to_set;                  /* setattr: FUSE_SET_ATTR_* still to apply */
    size_t size;                 /* readdir buffer / xattr size asked */
    bool plus;                   /* readdirplus */
    bool release_after;          /* release: flock unlock first, then RELEASE */
    bool by_inode;               /* names its object by node id: ENOENT means stale */
    /* OPEN (with a STAT in parallel, see kbf_open): loop thread only. */
    fuse_ino_t ino;
    int pending;                 /* fops still to complete before the reply */
    int open_status;
    uint64_t open_fd;
    bool have_cver;
    kbf_cver_t cver;             /* content version the STAT saw */
    kbf_req_t *parent;           /* the STAT's: the OPEN request it serves */
    /* SETLKW / blocking flock only: the kernel may interrupt the wait. */
    bool intr_armed;
    bool lk_sent;                /* (imu) on its way to the bricks: an interrupt leaves an orphan,
                                    counted (false again when it could not be) */
    pthread_mutex_t imu;
    bool kill_notify;            /* write: drop the kernel's mode once done (KILLPRIV_V2) */
    bool journaled;              /* write: its bytes are in the journal (fuse/journal.c) */
    uint64_t jseq;               /* the journal's sequence number when it was submitted */
    uint64_t unique;             /* the kernel's (KBF_UNIQUE_RESEND: sent again after a takeover) */
    kb_op_t op;                  /* the fop submitted last */
    /* Attributes kept for the next GETATTR (fuse/recent.h). */
    fuse_ino_t ino2;             /* LINK: the new parent; RENAME: the new parent */
    uint64_t rc_snap, rc_snap2;  /* the generations of ino, ino2 when the fop went out */
    struct kbf_recent_ep rc_epoch;
    /* A resent request that finds its own earlier work (fuse/resend.c). */
    kbf_done_fn rs_done;         /* its completion, called with the answer; NULL: not recovering */
    kb_op_t rs_op;
    int rs_status, rs_src_status;
    kb_gfid_t rs_want;
    kb_iatt_t rs_attr;
    kb_buf_t *rs_value;          /* owned */
    bool replied;                /* (imu) the one reply has been sent */
};

/* ---- request plumbing (fuse/ops.c) ---- */

/* The caller's uid/gid/pid; with GROUPS also its supplementary groups. */
void kbf_cred_from_req(kb_cred_t *c, fuse_req_t req, bool groups);
/* New requests. NULL once the error is replied (ENOMEM; ENAMETOOLONG for a
 * name); an internal request has nobody to reply to. */
kbf_req_t *kbf_req_new(fuse_req_t req, fuse_ino_t ino, bool groups);
kbf_req_t *kbf_req_inode(fuse_req_t req, fuse_ino_t ino, bool groups);
kbf_req_t *kbf_req_internal(kbf_t *fs, const kb_gfid_t *gfid);
kbf_req_t *kbf_req_create_in(fuse_req_t req, fuse_ino_t parent, const char *name);
void kbf_req_free(kbf_req_t *r);
/* Wind OP with r->a; DONE runs once, on the loop thread (maybe before this returns). */
void kbf_req_submit(kbf_req_t *r, kb_op_t op, kbf_done_fn done);
/* The one reply for STATUS (-errno, or 0: success without data), then free R;
 * ENOENT on a request by node id becomes ESTALE. */
void kbf_reply_err(kbf_req_t *r, int status);
bool kbf_arg_str(kbf_req_t *r, char **dst, const char *s);
bool kbf_name_fits(fuse_req_t req, const char *name);
/* Completions shared by several ops: reply the status only / reply nothing. */
void kbf_done_status(kbf_req_t *r, const kb_reply_t *rep);
void kbf_done_drop(kbf_req_t *r, const kb_reply_t *rep);
/* Release an fd (or directory handle) the kernel never got. */
void kbf_release_fd(kbf_t *fs, const kb_gfid_t *gfid, uint64_t fd, bool dir);
/* Attributes and entries for replies. */
void kbf_iatt_stat(const kb_iatt_t *ia, const kb_gfid_t *fallback, struct stat *st);
int kbf_entry_fill(kbf_t *fs, const kb_iatt_t *ia, const kb_gfid_t *fallback,
                   struct fuse_entry_param *e);

/* ---- the ops, for the table in fuse/ops.c ---- */

/* fuse/dir.c */
void kbf_lookup(fuse_req_t req, fuse_ino_t parent, const char *name);
void kbf_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup);
void kbf_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets);
void kbf_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev);
void kbf_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode);
void kbf_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name);
void kbf_readlink(fuse_req_t req, fuse_ino_t ino);
void kbf_unlink(fuse_req_t req, fuse_ino_t parent, const char *name);
void kbf_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name);
void kbf_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
                const char *newname, unsigned int flags);
void kbf_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname);
void kbf_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void kbf_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                 struct fuse_file_info *fi);
void kbf_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                     struct fuse_file_info *fi);
void kbf_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void kbf_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi);

/* fuse/file.c */
void kbf_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void kbf_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                struct fuse_file_info *fi);
void kbf_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
              struct fuse_file_info *fi);
void kbf_write_buf(fuse_req_t req, fuse_ino_t ino, struct fuse_bufvec *in, off_t off,
                   struct fuse_file_info *fi);
void kbf_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void kbf_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
/* A release's completion (flock unlock first, then RELEASE); releasedir's too. */
void kbf_done_release(kbf_req_t *r, const kb_reply_t *rep);
void kbf_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi);
void kbf_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off, off_t len,
                   struct fuse_file_info *fi);
void kbf_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence,
               struct fuse_file_info *fi);

/* fuse/attr.c */
void kbf_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void kbf_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
                 struct fuse_file_info *fi);
void kbf_statfs(fuse_req_t req, fuse_ino_t ino);

/* fuse/xattr.c */
void kbf_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
                  size_t size, int flags);
void kbf_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size);
void kbf_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size);
void kbf_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name);

/* fuse/lock.c */
void kbf_getlk(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi, struct flock *lock);
void kbf_setlk(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi,
               struct flock *lock, int sleep);
void kbf_flock(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi, int op);

#endif
