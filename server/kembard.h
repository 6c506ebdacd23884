/*
 * kembard.h — the node daemon's internal interfaces.
 *
 * Threads: the loop thread owns everything below (volumes, running bricks,
 * connections). The management thread (mgmt.c) runs CLI commands, which are
 * multi-node dialogues: it never touches loop state, it talks to every node
 * — this one included — with KB_PROC_PEER calls over TCP, so one code path
 * serves the local and the remote case and no lock is needed.
 */
#ifndef KB_KEMBARD_H
#define KB_KEMBARD_H

#include <stdbool.h>
#include <stdint.h>
#include "lib/gfid.h"
#include "lib/loop.h"
#include "rpc/conn.h"
#include "xlators/xlator.h"

enum kbd_vol_status { KBD_VOL_CREATED = 0, KBD_VOL_STARTED = 1, KBD_VOL_STOPPED = 2 };

typedef struct kbd_brick {
    char *host;
    uint16_t port;
    char *path;
    kb_gfid_t id;
} kbd_brick_t;

/* A volume definition: identical on every node (versioned), see volume.c
 * for the text format. */
typedef struct kbd_volume {
    char *name;
    kb_gfid_t id;
    uint32_t version;
    int status;
    int replica;          /* data copies per set */
    int arbiter;          /* 0 or 1: an extra metadata-only brick per set */
    int nbricks;
    kbd_brick_t *bricks;
    kb_option_set_t *opts; /* `volume set` values, by volume key */
    uint64_t drain;       /* replica sets being drained by remove-brick (bit i = set i) */
    uint32_t op_version;  /* the oldest op-version that must serve it (lib/version.h); >= 1 */
} kbd_volume_t;

#define KBD_MAX_SETS 64   /* drain masks and distribute's set masks are 64 bits */
_Static_assert(KBD_MAX_SETS <= KB_MAX_CHILDREN, "distribute takes one subvolume per set");

static inline int kbd_set_size(const kbd_volume_t *v) { return v->replica + v->arbiter; }
static inline int kbd_nsets(const kbd_volume_t *v) { return v->nbricks / kbd_set_size(v); }

/* volume.c */
/* NUL-terminate E and hand its buffer over as text; NULL (E freed) on error. */
char *kbd_enc_text(kb_enc_t *e);
kbd_volume_t *kbd_volume_parse(const char *text, char *err, size_t errlen);
char *kbd_volume_format(const kbd_volume_t *v);         /* malloc'd text */
void kbd_volume_free(kbd_volume_t *v);
int kbd_brick_parse(const char *spec, kbd_brick_t *b, char *err, size_t errlen); /* HOST[:PORT]:/path */
char *kbd_brick_str(const kbd_brick_t *b);               /* "host:port:/path", malloc'd */
bool kbd_volname_ok(const char *name);
const char *kbd_status_name(int status);
/* Set mask <-> "1,3" (set indices, ascending). The parser refuses indices
 * >= KBD_MAX_SETS, junk and an empty list (-EINVAL). */
void kbd_mask_csv(uint64_t mask, char *buf, size_t len);
int kbd_mask_parse(const char *csv, uint64_t *mask);
/* Client volfile (protocol/client per brick, replicate per set, distribute over sets). */
char *kbd_volgen_client(const kbd_volume_t *v);
/* Heal daemon volfile for replica set SET: protocol/client per brick of the
 * set + replicate (self-heal-daemon on, heal-children = HEAL_CHILDREN). */
char *kbd_volgen_shd(const kbd_volume_t *v, int set, const char *heal_children);
/* Brick volfile for brick index i. */
char *kbd_volgen_brick(const kbd_volume_t *v, int i);
/* Find the option definition for a `volume set` key across all translator
 * types; NULL if unknown. */
const kb_option_def_t *kbd_option_find(const char *volume_key, const char **xl_type);
/* The options of the volume itself (auth.allow, auth.reject,
 * cluster.op-version), NULL-key terminated. */
const kb_option_def_t *kbd_volume_options(void);
/* The `volume set` key of the volume's op-version (not stored as an option). */
#define KBD_OP_VERSION_KEY "cluster.op-version"
/* The op-version V's settings need: the highest kb_opt_since of its options. */
uint32_t kbd_volume_needs(const kbd_volume_t *v);

/* A running brick (serve.c). */
typedef struct kbd_brick_rt kbd_brick_rt_t;

typedef struct kbd {
    kb_loop_t *loop;
    rpc_listener_t *listener;
    rpc_listener_t *local;         /* <state-dir>/kembard.sock: root's CLI on this node */
    char *listen_host;     /* as given (may be 0.0.0.0) */
    char *self_host;       /* how this node reaches itself (127.0.0.1 for a wildcard) */
    uint16_t port;
    char *state_dir;
    struct kbd_vol_entry *vols;    /* loaded volume definitions + local state */
    struct kbd_conn *conns;        /* live server connections */
    struct kbd_lease *leases;      /* lock leases of clients gone (serve.c) */
    struct event *silence_watch;   /* clients silent past their lease are cut off (serve.c) */
    uint64_t silence_tick_ms, silence_resumed_ms; /* its last tick; when it found itself stalled */
    struct kbd_mgmt *mgmt;
    uint64_t started_ms;
    struct ssl_ctx_st *tls_server; /* --tls-dir: listener accepts TLS (and plain) */
    struct ssl_ctx_st *tls_client; /* --tls-dir: this node's peer calls use TLS */
    const char *tls_dir;           /* --tls-dir as given (rebalance's client graph uses it) */
    struct event *tls_watch;       /* --tls-dir: CA/CRL changes re-check connected peers (serve.c) */
    uint64_t tls_stamp;
    bool tls_mgmt;                 /* --tls-mgmt: CLI and peer calls must come over TLS */
    struct evhttp *metrics;        /* --metrics: Prometheus endpoint */
    struct kbd_rebal *rebal;       /* rebalance runs started here (rebalance.c) */
} kbd_t;

/* The local socket's name in the state dir (the CLI's default way in). */
#define KBD_LOCAL_SOCKET "kembard.sock"

/* metrics.c */
int kbd_metrics_start(kbd_t *d, const char *addr, char *err, size_t errlen);
void kbd_metrics_stop(kbd_t *d);

/* Certificate files inside a --tls-dir / tls-dir: */
#define KB_TLS_CERT "cert.pem"
#define KB_TLS_KEY  "key.pem"
#define KB_TLS_CA   "ca.pem"
/* Does VOLUME demand TLS (volume set transport.tls on)? */
bool kbd_volume_wants_tls(kbd_t *d, const char *volume);

/* serve.c */
int kbd_serve_start(kbd_t *d, char *err, size_t errlen);
void kbd_serve_stop(kbd_t *d);
void kbd_dump_inflight(kbd_t *d);
/* Cut off the clients of VOLUME that its access rules refuse now. */
void kbd_serve_recheck_auth(kbd_t *d, const char *volume);
/* Clients attached to local bricks of VOLUME, one line each:
 * "ADDR VERSION WHO PROTO SW\n" (VERSION: the definition version their graph
 * was made from, 0 = unknown; PROTO the protocol spoken, SW the client's
 * release, "?" when it did not say: kembar 0.1). kembar 0.1 nodes send the
 * first three fields only. Malloc'd text; NULL on ENOMEM. */
char *kbd_serve_clients(kbd_t *d, const char *volume);

/* kembard's state dir carries its format (lib/version.h, the rule) in
 * <state-dir>/format: the number in decimal and a newline. 1: kembar 0.1.0's
 * layout (vols/<name>/{info,local}, rebalance/), which wrote no such file;
 * kembar 0.2 added cluster.key, peers and kembard.sock, which 0.1.0 ignores,
 * so the format stayed 1. */
#define KBD_STATE_FORMAT 1u
#define KBD_STATE_FORMAT_FILE "format"
/* Check DIR's format before anything in it is touched: newer than
 * KBD_STATE_FORMAT is refused (-EPROTONOSUPPORT, one line in err, nothing
 * written); older or absent is upgraded in place and stamped. 0 or -errno. */
int kbd_state_format(const char *dir, char *err, size_t errlen);

/* store.c: per-node state (loop thread) */
int kbd_store_load(kbd_t *d);                 /* load all volumes, start started ones */
/* PEER op dispatcher: argv -> text output; returns 0 or -errno (out = reason). */
int kbd_peer_op(kbd_t *d, int argc, char **argv, char **out);
/* auth.allow / auth.reject of VOLUME for a client at ADDR: 0, -EACCES, -ENOENT. */
int kbd_auth_check(kbd_t *d, const char *volume, const char *addr);
/* GETSPEC */
int kbd_getspec(kbd_t *d, const char *volume, char **volfile);
/* Find a running local brick for a handshake. */
kbd_brick_rt_t *kbd_brick_find(kbd_t *d, const char *volume, const char *path, char *why, size_t whylen);
kb_graph_t *kbd_brick_graph(kbd_brick_rt_t *b);
/* The brick's id (its root's trusted.kembar.brick-id) from the volume definition. */
bool kbd_brick_id(kbd_brick_rt_t *b, kb_gfid_t *id);
struct kbd_stats *kbd_brick_stats(kbd_brick_rt_t *b);
void kbd_brick_conn_ref(kbd_brick_rt_t *b, int delta);
void kbd_store_shutdown(kbd_t *d);

/* rebalance.c: one run per volume at a time, in a thread of its own with a
 * client graph of the volume (fetched from this node). Start, status and stop
 * are peer operations (loop thread); the result of the last run outlives it
 * (memory and <state-dir>/rebalance/<volume>). Status is one line:
 * "STATE SCANNED MOVED BYTES SKIPPED FAILURES DIRS ELAPSED_MS DRAIN_HEX VERSION\tWHERE"
 * STATE: not-started | running | completed | failed | stopped; WHERE is the
 * directory being crawled, or why the run failed. */
int kbd_rebal_start(kbd_t *d, const char *volume, uint64_t drain, uint32_t version, char **out);
int kbd_rebal_status(kbd_t *d, const char *volume, char **out);
int kbd_rebal_stop(kbd_t *d, const char *volume, char **out);
void kbd_rebal_shutdown(kbd_t *d);     /* stop every run and wait (bounded) */

/* mgmt.c: CLI commands run on the management thread (the verbs: mgmt*.c, map in mgmt.h). */
int kbd_mgmt_start(kbd_t *d);
void kbd_mgmt_stop(kbd_t *d);
/* Queue a CLI request (loop thread); the reply is sent on CONN_ID/XID when done. */
int kbd_mgmt_submit(kbd_t *d, uint64_t conn_id, uint64_t xid, int argc, char **argv);
/* Run one CLI command synchronously (mgmt thread, or tests). */
int kbd_cli_run(const char *self_host, uint16_t self_port, int argc, char **argv, char **out);
/* Send a reply for a connection that may be gone (loop thread). */
void kbd_conn_reply_text(kbd_t *d, uint64_t conn_id, uint64_t xid, uint32_t proc, int status, const char *text);

#endif
