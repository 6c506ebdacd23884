/*
 * internal.h — libkembar's private state, shared by the client/ sources only.
 *
 * Lock rules: c->mu guards the fields marked (mu). The graph belongs to the
 * loop thread alone. No lock is held across a wind or a
 * completion callback.
 */
#ifndef KB_CLIENT_INTERNAL_H
#define KB_CLIENT_INTERNAL_H

#include <pthread.h>

#include "client/kembar.h"

struct kbc {
    kb_loop_t *loop;
    kb_graph_t *graph;           /* loop thread; NULL until init succeeded */
    char *volume;                /* "" when built from a volfile text */
    kbc_opts_t opts;
    char *tls_dir;               /* owned copy of opts.tls_dir */
    struct ssl_ctx_st *tls;      /* volfile fetch over TLS; NULL = plain */

    pthread_mutex_t mu;
    pthread_cond_t cv;           /* signalled on up changes and inflight == 0 */
    bool up;                     /* (mu) */
    unsigned inflight;           /* (mu) submitted, cbk not yet returned */
    kb_cred_t cred;              /* (mu) default credentials of the sync API */
};

struct kbc_fd {
    kbc_t *c;
    kb_gfid_t gfid;
    uint64_t fd;                 /* the graph top's fd */
    int flags;
    bool is_dir;
    uint64_t dir_off;            /* readdir cursor */
    bool dir_eof;
};

/* Absolute deadline NOW + MS for pthread_cond_timedwait (CLOCK_REALTIME). */
struct timespec;
void kbc_deadline(struct timespec *ts, uint32_t ms);

#endif
