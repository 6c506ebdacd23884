/*
 * xlator.h — translators and the graph (DESIGN §3, STYLE 1-4).
 *
 * A translator type is a descriptor (kb_xlator_type_t) with an ops table, a
 * per-call local size, init/fini/notify and an option table. A translator
 * instance (kb_xlator_t) is one node of a graph built from a volfile; its
 * children and private state live in the instance, never in file statics.
 *
 * Calls are asynchronous and complete exactly once:
 *
 *   kb_wind(child, op, args, cred, req_id, cbk, cookie)
 *      creates a kb_call_t for CHILD and runs child->type->ops[op] (or the
 *      pass-through default: wind to the single child and unwind its reply).
 *      ARGS is borrowed: the winder keeps it alive and unchanged until CBK
 *      has run. CBK may run before kb_wind returns.
 *   kb_unwind(call, reply)
 *      runs the winder's cbk(cookie, reply) exactly once, then frees CALL
 *      (and its local block). REPLY is borrowed for the duration of cbk.
 *   kb_unwind_err(call, -errno) is kb_unwind with a reply holding only status.
 *
 * Threading: a graph belongs to one event loop thread (its kb_loop). Every
 * wind, unwind and notify of a graph happens on that thread. Other threads
 * enter through kb_loop_run_in() (client/ does that for FUSE threads).
 *
 * An allocation failure while winding completes the call with -ENOMEM via
 * cbk; nothing is ever dropped (STYLE 3).
 */
#ifndef KB_XLATOR_H
#define KB_XLATOR_H

#include "xlators/fop.h"
#include "xlators/options.h"

struct event_base;
typedef struct kb_xlator kb_xlator_t;
typedef struct kb_xlator_type kb_xlator_type_t;
typedef struct kb_call kb_call_t;
typedef struct kb_graph kb_graph_t;

typedef void (*kb_cbk_fn)(void *cookie, const kb_reply_t *reply);
typedef void (*kb_fop_fn)(kb_call_t *call);

struct kb_call {
    kb_xlator_t *xl;          /* translator handling this call */
    kb_op_t op;
    const kb_args_t *args;    /* borrowed from the winder */
    kb_cred_t cred;
    uint64_t req_id;
    uint64_t start_ns;        /* for latency stats and the in-flight dump */
    kb_cbk_fn cbk;
    void *cookie;
    void *local;              /* xl->type->local_size bytes, zeroed; freed at unwind */
    struct kb_call *inflight_prev, *inflight_next; /* graph's in-flight list (debug dump) */
#ifndef NDEBUG
    int completed;
#endif
};

/* notify events travelling up the graph */
enum kb_event { KB_EV_CHILD_UP = 1, KB_EV_CHILD_DOWN, KB_EV_CHILD_CONNECTING, KB_EV_PARENT_UP, KB_EV_PARENT_DOWN };

struct kb_xlator_type {
    const char *name;          /* "cluster/replicate" */
    kb_fop_fn ops[KB_FOP_MAX]; /* NULL = pass through to the single child */
    size_t local_size;         /* per-call local block */
    int (*init)(kb_xlator_t *xl);   /* 0 or -errno; options already parsed */
    void (*fini)(kb_xlator_t *xl);
    /* Events from a child (child != NULL) or from the parent (PARENT_UP/DOWN,
     * child == NULL). The default propagates to the parents unchanged. */
    void (*notify)(kb_xlator_t *xl, int event, kb_xlator_t *child);
    const kb_option_def_t *options; /* terminated by {NULL} */
    /* Escape hatch for typed queries that are not fops (status, counters). */
    int (*ctl)(kb_xlator_t *xl, int code, void *arg);
};

#define KB_MAX_CHILDREN 64

/* ctl codes (kb_xlator_type.ctl) — typed queries that are not fops. */
#define KB_CTL_CLIENT_GONE 1  /* arg: uint64_t *client_id; drop that connection's fds, its
                                 inodelk/entrylk locks and waiting calls, and the LK locks it
                                 holds under its own id (clients without an instance id) */
#define KB_CTL_LK_CLIENT_GONE 3 /* arg: uint64_t *lk_client; a client instance gone for good
                                   (its lease ran out): drop its POSIX/OFD/flock locks */
#define KB_CTL_STATUS      2  /* arg: struct kb_ctl_status *; per-translator status text */
#define KB_CTL_FEATURES    4  /* arg: uint64_t *; protocol/client: the brick's KB_FEAT_* bits
                                 (rpc/wire.h) on the current connection (0 while down). Asked
                                 of one child directly (kb_xlator_features), not of a graph */

#define KB_CTL_LOCAL       5  /* arg: bool *; protocol/client: its brick is on this host (the
                                 connection's ends share a network stack, rpc_conn_same_host);
                                 false while down. Asked of one child (kb_xlator_is_local) */

struct kb_ctl_status { char *text; size_t len, cap; }; /* appended with kb_ctl_printf */
void kb_ctl_printf(struct kb_ctl_status *st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Send CODE to every translator of the graph that has a ctl; returns the first error. */
int kb_graph_ctl(kb_graph_t *g, int code, void *arg);
/* KB_CTL_FEATURES of XL: 0 when it has no ctl or does not answer. */
uint64_t kb_xlator_features(kb_xlator_t *xl);
/* KB_CTL_LOCAL of XL: false when it has no ctl or does not answer. */
bool kb_xlator_is_local(kb_xlator_t *xl);

struct kb_xlator {
    char *name;                /* instance name from the volfile */
    const kb_xlator_type_t *type;
    kb_graph_t *graph;
    kb_xlator_t **children;
    int nchildren;
    kb_xlator_t **parents;
    int nparents;
    int child_index_in_parent; /* index of this xl in its first parent's children */
    kb_option_set_t *opts;     /* parsed options */
    void *priv;                /* instance state */
    bool up;                   /* last CHILD_UP/DOWN this xl sent upward */
    bool inited;               /* init succeeded and fini has not run: fini runs at most once */
};

/* Events leaving the top of the graph (CHILD_UP / CHILD_DOWN of the top). */
typedef void (*kb_graph_event_fn)(kb_graph_t *g, int event);

struct kb_graph {
    kb_xlator_t *top;
    kb_graph_event_fn on_event; /* set by the owner before kb_graph_init */
    kb_xlator_t **all;
    int nall;
    struct event_base *base;   /* the loop owning this graph */
    struct kb_loop *loop;
    void *owner;               /* embedding object (client/, server/) */
    uint64_t next_req_id;
    kb_call_t inflight;        /* list head (sentinel) */
    unsigned ninflight;
};

/* ---- calls ---- */
void kb_wind(kb_xlator_t *child, kb_op_t op, const kb_args_t *args, const kb_cred_t *cred,
             uint64_t req_id, kb_cbk_fn cbk, void *cookie);
/* Wind with the same op/cred/req_id as CALL (the usual case inside a fop). */
static inline void kb_wind_from(kb_call_t *call, kb_xlator_t *child, const kb_args_t *args,
                                kb_cbk_fn cbk, void *cookie) {
    kb_wind(child, call->op, args, &call->cred, call->req_id, cbk, cookie);
}
void kb_unwind(kb_call_t *call, const kb_reply_t *reply);
void kb_unwind_err(kb_call_t *call, int err);
/* Pass CALL to the single child and unwind with its reply (the default op). */
void kb_pass(kb_call_t *call);

/* ---- registry ---- */
const kb_xlator_type_t *kb_xlator_type_find(const char *name);
/* Add a type at run time (tests' mock translators). 0, or -ENOSPC past 32. */
int kb_xlator_type_register(const kb_xlator_type_t *t);
/* All built-in types (entries may be NULL: not linked in); xlators/registry.c */
extern const kb_xlator_type_t *const kb_xlator_types[];
extern const size_t kb_xlator_ntypes;

/* ---- notify ---- */
void kb_notify_parents(kb_xlator_t *xl, int event);    /* xl tells its parents */
void kb_notify_default(kb_xlator_t *xl, int event, kb_xlator_t *child);

/* ---- graph ---- */
/* Parse a volfile (text) into a graph; the last stanza is the top. On error
 * returns NULL and writes a one-line reason into err. Does not init. */
kb_graph_t *kb_graph_parse(const char *text, char *err, size_t errlen);
/* init every translator bottom-up, then send PARENT_UP top-down. */
int kb_graph_init(kb_graph_t *g, struct event_base *base, char *err, size_t errlen);
void kb_graph_fini(kb_graph_t *g);   /* fini top-down, free everything */
kb_xlator_t *kb_graph_find(kb_graph_t *g, const char *name);
uint64_t kb_graph_next_req_id(kb_graph_t *g);

/* Dump the in-flight calls with their ages (signal handler path posts this). */
void kb_graph_dump_inflight(kb_graph_t *g);

/* Child index of CHILD in XL's children, or -1. */
int kb_xlator_child_index(const kb_xlator_t *xl, const kb_xlator_t *child);

#endif
