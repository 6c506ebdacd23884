/*
 * mgmt.h — what the management files share; private to server/mgmt*.c
 * (kembard.h declares what the rest of kembard calls: kbd_mgmt_*,
 * kbd_cli_run).
 *
 * A CLI command runs on the management thread, one at a time (mgmt.c), as a
 * dialogue with the nodes of a volume over blocking PEER calls
 * (mgmt_peers.c). A verb writes its answer (a human table, or JSON with
 * --json) into an outbuf_t and returns 0, or returns -errno with a one-line
 * reason in *out (mgmt_fail). The verbs, by file:
 *   mgmt_volume.c  create, start, stop, delete, set, get, info, list
 *   mgmt_report.c  status, profile, top, heal (launch, info, split-brain)
 *   mgmt_bricks.c  add-brick, rebalance, remove-brick, replace-brick
 *   mgmt_trust.c   peer token, probe, detach, list (who is in the cluster)
 *
 * Threading: the management thread only (or a test calling kbd_cli_run);
 * nothing here touches the loop thread's state.
 */
#ifndef KB_MGMT_H
#define KB_MGMT_H

#include "server/kembard.h"

/* A command's answer, growing as it is written (mgmt_outf). */
typedef struct outbuf { char *p; size_t len, cap; } outbuf_t;

/* A node (a kembard) as the bricks of a definition name it. */
typedef struct node { char *host; uint16_t port; } node_t;

/* The node running the command, and how it answers. */
typedef struct ctx {
    const char *self_host;
    uint16_t self_port;
    bool json;
} ctx_t;

/* ---- output (mgmt.c) ---- */
void mgmt_outf(outbuf_t *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void mgmt_outj(outbuf_t *o, const char *s);
/* Replace *OUT with the formatted reason; returns RC. */
int mgmt_fail(char **out, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void mgmt_human_bytes(unsigned long long b, char *buf, size_t len);

/* ---- the nodes (mgmt_peers.c) ---- */
/* One PEER call (ARGC strings follow): 0 with the answer in *OUT, or -errno
 * with the reason in *OUT. */
int mgmt_peer(const char *host, uint16_t port, char **out, int argc, ...);
bool mgmt_brick_on(const kbd_volume_t *v, int b, const node_t *n);
/* Fail with why HOST:PORT could not be used (R, its REPLY): unreachable, or
 * not a member (then: how to add it). */
int mgmt_unreachable(char **out, const char *host, uint16_t port, int r, const char *reply);
int mgmt_volume_nodes(const kbd_volume_t *v, node_t **nodes);
bool mgmt_is_self(const ctx_t *c, const node_t *n);
kbd_volume_t *mgmt_get_volume(const ctx_t *c, const char *name, char **out);
/* This node's volume names (a NULL-terminated array; the caller frees each
 * and the array). Returns the count or -errno (reason in *OUT). */
int mgmt_list_names(const ctx_t *c, char ***names, char **out);
void mgmt_local_csv(const kbd_volume_t *v, const node_t *n, char *buf, size_t len);
int mgmt_store_everywhere(const ctx_t *c, const kbd_volume_t *v, bool force, char **out);
int mgmt_check_nodes(const kbd_volume_t *v, char **out);

/* What a node runs, as its PEER "version" says (rpc/wire.h); a kembar 0.1
 * node, which refuses the operation (-EINVAL), is 0.1.0 / protocol 1-1 /
 * op-version 1. */
typedef struct node_ver {
    char version[32];
    uint32_t proto_min, proto_max, op_version;
    uint64_t features;
} node_ver_t;
/* 0 with *NV filled, or -errno with why in *OUT (unreachable, refused). */
int mgmt_node_version(const char *host, uint16_t port, node_ver_t *nv, char **out);
/* The lowest op-version among the nodes of V: 0 with it in *MIN (and its
 * node's release in MIN_WHO, "host:port runs kembar X"), or -errno with the
 * reason in *OUT (a node did not answer). */
int mgmt_min_op_version(const kbd_volume_t *v, uint32_t *min, char *min_who, size_t wholen, char **out);
/* Refuse (-EPROTONOSUPPORT, one line in *OUT naming WHAT) unless every node
 * of V — and with CLIENTS every client attached to one of its bricks — runs
 * a release of op-version NEED or later. */
int mgmt_need_op_version(const kbd_volume_t *v, uint32_t need, bool clients, const char *what, char **out);
int mgmt_prepare_bricks(const kbd_volume_t *v, const bool *want, bool force, char **out);
void mgmt_unprepare_bricks(const kbd_volume_t *v, const bool *want);

/* ---- the verbs: ARGV[0] is the verb; 0, or -errno with the reason in *OUT ---- */
/* mgmt_volume.c */
int mgmt_cmd_create(const ctx_t *c, int argc, char **argv, char **out, outbuf_t *o);
int mgmt_cmd_state(const ctx_t *c, int argc, char **argv, int want, char **out, outbuf_t *o);
int mgmt_cmd_delete(const ctx_t *c, int argc, char **argv, char **out, outbuf_t *o);
int mgmt_cmd_set(const ctx_t *c, int argc, char **argv, char **out, outbuf_t *o);
int mgmt_cmd_set_help(const ctx_t *c, outbuf_t *o);
int mgmt_cmd_get(const ctx_t *c, int argc, char **argv, char **out, outbuf_t *o);
int mgmt_cmd_info(const ctx_t *c, int argc, char **argv, char **out, outbuf_t *o, bool list_only);
/* mgmt_report.c */
int mgmt_cmd_status(const ctx_t *c, int argc, char **argv, char **out, outbuf_t *o);
int mgmt_cmd_profile(const ctx_t *c, int argc, char **argv, char **out, outbuf_t *o, bool top);
int mgmt_cmd_heal(const ctx_t *c, int argc, char **argv, char **out, outbuf_t *o);
/* mgmt_bricks.c */
int mgmt_cmd_add_brick(const ctx_t *c, int argc, char **argv, char **out, outbuf_t *o);
int mgmt_cmd_rebalance(const ctx_t *c, int argc, char **argv, char **out, outbuf_t *o);
int mgmt_cmd_remove_brick(const ctx_t *c, int argc, char **argv, char **out, outbuf_t *o);
int mgmt_cmd_replace_brick(const ctx_t *c, int argc, char **argv, char **out, outbuf_t *o);
/* mgmt_trust.c: ARGV[0] is "peer", ARGV[1] the verb */
int mgmt_cmd_peer(const ctx_t *c, int argc, char **argv, char **out, outbuf_t *o);

#endif
