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
#include "client/takeover.h"
#include "xlators/lklog.h"

/* One generation of the client graph (graphs.c). The newest is c->cur;
 * older ones are "retired" and finalised once nothing runs on them. */
typedef struct kbc_graph {
    kbc_t *c;
    kb_graph_t *g;
    char *volfile;               /* the text it was built from (NULL: unknown) */
    unsigned inflight;           /* winds not yet unwound, user and internal */
    unsigned nfds;               /* handles whose fd lives on this graph */
    bool retired, fini_queued;
    struct event *stuck_ev;      /* retired and still alive: log what holds it (graphs.c) */
    uint64_t retired_ms;         /*   when it stopped being current (kb_now_ms) */
    struct kbc_graph *next;      /* c->graphs list */
} kbc_graph_t;

/* A handle: what users hold as an fd (kbc_fd_t.fd, FUSE's fi->fh). It names
 * a file opened on some graph; a graph switch reopens it (by gfid) on the new
 * graph, so handles outlive graphs. Loop thread only. */
typedef struct kbc_handle {
    kbc_graph_t *graph;          /* where gfd lives */
    uint64_t gfd;                /* the graph top's fd */
    kb_gfid_t gfid;
    uint32_t flags;              /* open flags (O_CREAT/O_EXCL/O_TRUNC dropped) */
    bool is_dir;
    bool reopening;              /* ops wait in `waiting` until the reopen is done */
    bool closing;                /* a RELEASE is under way: never reopened again */
    bool closed;                 /* released; freed once no call uses it */
    kbc_graph_t *old_graph;      /* after a reopen: the previous fd, released when */
    uint64_t old_gfd;            /*   the calls still running on it (old_busy) are done */
    unsigned old_busy;
    kbc_graph_t *failed_on;      /* the reopen on this graph failed: stay where we are */
    bool restored;               /* made by kbc_handles_restore: graph is NULL until its reopen,
                                    and stays NULL if that failed (lk_lost says why) */
    unsigned busy;               /* ops in flight on gfd */
    uint16_t tag;                /* reuse tag in the handle value */
    uint32_t slot;               /* its index in c->handles */
    struct kbc_sub *waiting, **waiting_tail;
    kbc_lkown_t *lkown;          /* lock owners seen on this handle (hlocks.c) */
    uint32_t nlkown, lkown_cap;
    kb_lklog_t lklog;            /* granted LK requests, in order: taken again after a switch */
    int lk_lost;                 /* 0, or -EBADFD: a lock could not be taken again */
} kbc_handle_t;

struct kbc {
    kb_loop_t *loop;
    kb_graph_t *graph;           /* loop thread; the current graph (cur->g), NULL until init */
    kbc_graph_t *cur;            /* loop thread: the graph new calls go to */
    kbc_graph_t *pending;        /* loop thread: built from a newer volfile, not up yet */
    struct event *pending_timer; /* bounds the wait for `pending` to come up */
    kbc_graph_t *graphs;         /* loop thread: every live generation */
    kbc_handle_t **handles;      /* loop thread: slot i holds handle value i+1 (low 32 bits) */
    uint32_t nhandles, handles_cap;
    uint32_t *free_slots, nfree;
    uint16_t next_tag;
    bool closing;                /* loop thread: kbc_free is finalising the graphs */
    kbc_handle_put_fn hwatch_put;       /* loop thread: kbc_handles_watch (client/takeover.h) */
    kbc_handle_closed_fn hwatch_closed;
    void *hwatch_arg;
    char *volume;                /* "" when built from a volfile text */
    kbc_opts_t opts;
    char *tls_dir;               /* owned copy of opts.tls_dir */
    struct ssl_ctx_st *tls;      /* volfile fetch over TLS; NULL = plain */

    pthread_mutex_t mu;
    pthread_cond_t cv;           /* signalled on up changes and inflight == 0 */
    bool up;                     /* (mu) */
    unsigned inflight;           /* (mu) submitted, cbk not yet returned */
    kb_cred_t cred;              /* (mu) default credentials of the sync API */

    /* volfile watch (graphs.c): a thread re-fetches the volfile every
     * opts.volfile_check_ms and hands a changed text to the loop thread. */
    char *spec;                  /* "h1,h2:/vol"; NULL for kbc_new_from_volfile */
    char *volfile;               /* (mu) text of the newest graph built or tried */
    bool switching;              /* (mu) a switch is under way: the watcher waits */
    bool watch_stop;             /* (mu) */
    bool watch_running;
    pthread_cond_t watch_cv;     /* the watcher's own: signalled only by kbc_watch_stop, so a
                                  * completion's broadcast on cv (inflight == 0, after every
                                  * call at queue depth 1) does not wake it each time */
    pthread_t watch_thread;
    unsigned switches;           /* (mu) graph switches done, for tests and logs */
};

/* One submitted call, alive from kbc_submit until the user cbk returned. */
struct kbc_sub {
    kbc_t *c;
    kb_op_t op;
    const kb_args_t *args;       /* the caller's */
    kb_args_t a;                 /* copy with the graph fd in place of the handle */
    kb_cred_t cred;
    kb_cbk_fn cbk;
    void *cookie;
    kbc_graph_t *graph;          /* wound on */
    kbc_handle_t *h;             /* fd calls: the handle, busy counted */
    uint64_t gfd;                /* fd calls: the graph fd used */
    kbc_handle_t *opened;        /* OPEN/CREATE/OPENDIR: the handle made for the reply */
    uint64_t opened_fd;          /*   and its value (the user may release it in the cbk) */
    struct kbc_sub *next;        /* in h->waiting */
    kb_args_t by_handle;         /* an object gone by gfid, asked again through an open handle */
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

/* graphs.c (loop thread unless said otherwise) */
int kbc_graphs_start(kbc_t *c, kb_graph_t *g, const char *volfile, char *err, size_t errlen);
void kbc_graphs_fini(kbc_t *c);             /* every generation, every handle */
void kbc_sub_run(void *sub);                 /* route through handles, wind, or queue */
void kbc_sub_done(void *sub, const kb_reply_t *reply);  /* client.c: the wind's callback */
void kbc_sub_unwound(struct kbc_sub *s, const kb_reply_t *in, kb_reply_t *out);
void kbc_sub_retire(struct kbc_sub *s);      /* after the user cbk: handle and graph upkeep */
/* STAT/SETATTR/TRUNCATE by gfid that found no object: true when it was sent
 * again through an open handle of that gfid (open-unlinked files). */
bool kbc_sub_retry_open(struct kbc_sub *s, const kb_reply_t *r);
int kbc_watch_start(kbc_t *c);               /* any thread but the loop's */
void kbc_watch_stop(kbc_t *c);

/* hlocks.c (loop thread): the record locks a handle holds, and the unlock of
 * its open file description's own owners before its RELEASE. */
typedef void (*kbc_hlocks_then_fn)(struct kbc_sub *s, kbc_graph_t *gr);
void kbc_hlocks_note(kbc_handle_t *h, kb_op_t op, const kb_args_t *a, int status);
unsigned kbc_hlocks_desc_owners(const kbc_handle_t *h);   /* owners a RELEASE unlocks */
/* Unlocks them on GR, then calls THEN(S, GR); false (THEN not called) when
 * there is nothing to unlock. */
bool kbc_hlocks_drop(struct kbc_sub *s, kbc_handle_t *h, kbc_graph_t *gr, kbc_hlocks_then_fn then);
void kbc_hlocks_free(kbc_handle_t *h);
/* Take H's locks again on GR (its fd there is h->gfd), then THEN(CTX); false
 * (THEN not called) when there is nothing to take. A refusal fails H. */
bool kbc_hlocks_replay(kbc_handle_t *h, kbc_graph_t *gr, void (*then)(void *ctx), void *ctx);

/* graphs.c: tell the handle watch (if any) what H holds now. */
void kbc_handle_changed(kbc_t *c, const kbc_handle_t *h);

/* Absolute deadline NOW + MS for pthread_cond_timedwait (CLOCK_REALTIME). */
struct timespec;
void kbc_deadline(struct timespec *ts, uint32_t ms);

#endif
