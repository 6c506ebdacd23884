/*
 * kbfuse.h — kembar-fuse internals shared by fuse/main.c and the bridge
 * (fuse/ops.c and the files that hold its ops, fuse/ops.h).
 *
 * The bridge is thin (STYLE 8): a FUSE request becomes one fop (two for
 * setattr with a size, release with flock locks), the fop's completion
 * becomes exactly one fuse_reply_*, sent from the loop thread.
 */
#ifndef KB_FUSE_KBFUSE_H
#define KB_FUSE_KBFUSE_H

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>
#include <pthread.h>
#include <stdbool.h>

#include "client/kembar.h"
#include "fuse/inode.h"
#include "fuse/rawio.h"

typedef struct kbf {
    kbc_t *kbc;
    kbf_itable_t *it;
    struct fuse_session *se;
    double attr_timeout;         /* seconds the kernel may cache attributes */
    double entry_timeout;        /* ... and names */
    double negative_timeout;     /* ... and "no such name" (0: not cached) */
    bool default_permissions;    /* the kernel checks permissions (mode bits) */
    bool security_xattrs;        /* pass security.* xattrs to the bricks */
    bool acl;                    /* pass system.posix_acl_* xattrs to the bricks */
    bool splice;                 /* splice read/write with /dev/fuse */
    /* Loop-thread reader only, while it dispatches a request: the kb_buf
     * holding that request, so a WRITE can keep its payload where it lies
     * (kbf_write_buf) instead of copying it. NULL otherwise. */
    kb_buf_t *rx_cur;
    kbf_raw_t raw;               /* raw /dev/fuse traffic (fuse/rawio.c) */

    pthread_mutex_t mu;
    pthread_cond_t cv;
    unsigned inflight;           /* (mu) requests whose fop has not completed */
} kbf_t;

/* The low-level ops table (fuse/ops.c); userdata is the kbf_t. */
extern const struct fuse_lowlevel_ops kbf_ops;

/* Wait (bounded) until no fop of the bridge is in flight; false on timeout. */
bool kbf_drain(kbf_t *fs, unsigned timeout_ms);

#endif
