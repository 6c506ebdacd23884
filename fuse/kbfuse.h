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
#include "fuse/state.h"

typedef struct kbf kbf_t;
struct kbf {
    kbc_t *kbc;
    kbf_itable_t *it;
    struct kbf_recent *recent;   /* attributes for the next GETATTR (fuse/recent.h); NULL: none */
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

    /* Handover (issue 15, fuse/handover.c). */
    kbf_state_t st;              /* the mount's shared state (st.hdr NULL: none, no handover) */
    int ctl;                     /* the supervisor's control socket, -1 */
    bool takeover;               /* this process took a previous one's mount over */
    bool handover;               /* it can itself be replaced (hooks in, resend works) */
    bool threads;                /* -o threads: libfuse's workers read /dev/fuse */
    const kbf_st_conn_t *init_conn;  /* a takeover's INIT: what kbf_init chooses again */
    kbf_st_conn_t conn_chosen;   /* what kbf_init chose */
    uint64_t swallow_unique;     /* replies with this unique are the synthetic INIT's: not sent */
    int swallowed;               /*   and their error, once one was (1: none yet) */
    int stopping;                /* (atomic) a restart: no more requests are read */
    bool unmounted;              /* reading /dev/fuse said ENODEV */
    void (*stop_reading)(kbf_t *fs);  /* loop thread: detach /dev/fuse (fuse/main.c) */
    void *reader;                /*   its argument */
    struct kbf_journal *journal; /* writes acknowledged early (fuse/journal.c); NULL: none */
    struct kbf_stale *stale;     /* (mu) handles a takeover found, by the request that made them */
    uint32_t nstale;             /* (mu) */

    pthread_mutex_t mu;
    pthread_cond_t cv;
    unsigned inflight;           /* (mu) requests whose fop has not completed */
};

/* The low-level ops table (fuse/ops.c); userdata is the kbf_t. */
extern const struct fuse_lowlevel_ops kbf_ops;

/* Wait (bounded) until no fop of the bridge is in flight; false on timeout. */
bool kbf_drain(kbf_t *fs, unsigned timeout_ms);

#endif
