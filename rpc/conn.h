/*
 * conn.h — framed, pipelined RPC connections over libevent (DESIGN §8).
 *
 * One rpc_conn is one TCP (optionally TLS) connection owned by one loop
 * thread. Both ends can issue calls; replies come back in any order and are
 * matched by xid. Bulk data (kb_buf) is sent by reference (no copy into the
 * output buffer) and received into a fresh aligned kb_buf.
 *
 * Client side (rpc_client_new): connects, reconnects with exponential
 * backoff (backoff_min_ms .. backoff_max_ms) while `reconnect` is set,
 * sends a PING every ping_interval_ms and declares the peer dead when nothing
 * at all has arrived for ping_timeout_ms (a silent hang, SIGSTOP, a dead
 * link). A dead or closed connection fails every pending call at once with
 * -ENOTCONN, then reports RPC_EV_DOWN. A call older than call_timeout_ms
 * fails with -ETIMEDOUT.
 *
 * Server side (rpc_listen): accepts connections; requests are delivered to
 * the connection's request handler; PINGs are answered by the transport
 * itself, on the loop thread, before any request is looked at — so
 * heartbeats are answered even when the brick's disk is saturated.
 *
 * Exactly-once: every rpc_call's reply_fn runs exactly once — with the reply,
 * or with -ENOTCONN / -ETIMEDOUT / -ENOMEM — possibly before rpc_call returns
 * (e.g. when not connected). A connection closed from inside one of its own
 * callbacks is only marked; it is freed when the callback returns (as Redis'
 * connection helpers do).
 *
 * Malformed input (bad magic, version, oversized lengths) closes only that
 * connection, with a logged reason.
 */
#ifndef KB_RPC_CONN_H
#define KB_RPC_CONN_H

#include <stdint.h>
#include <stdbool.h>
#include "lib/buf.h"
#include "rpc/wire.h"

struct event_base;
struct ssl_ctx_st;
typedef struct rpc_conn rpc_conn_t;
typedef struct rpc_listener rpc_listener_t;

/* A received message. payload points into memory owned by the message;
 * bulk is one reference owned by the message. rpc_msg_free releases the
 * CONTENTS only (payload, bulk), never the struct itself. */
typedef struct rpc_msg {
    kb_wire_hdr_t hdr;
    uint8_t *payload;
    kb_buf_t *bulk;
} rpc_msg_t;
void rpc_msg_free(rpc_msg_t *m);

/* RPC_EV_DOWN, client side: after the connection had been up, or after a
 * failed attempt when `reconnect` is off. Server side: the peer left or was
 * dropped; the transport frees the rpc_conn right after the handler returns
 * (do not use it afterwards; no rpc_conn_close needed). */
enum rpc_event { RPC_EV_UP = 1, RPC_EV_DOWN = 2 };

/* status: hdr.status of the reply, or a transport error (-ENOTCONN,
 * -ETIMEDOUT, -ENOMEM) with reply == NULL. The reply is borrowed. */
typedef void (*rpc_reply_fn)(void *cookie, int status, const rpc_msg_t *reply);
typedef void (*rpc_event_fn)(void *arg, rpc_conn_t *c, int event);
/* A request arrived; the handler takes ownership of REQ, which is
 * heap-allocated (malloc): it releases it with rpc_msg_free(req); free(req). */
typedef void (*rpc_request_fn)(void *arg, rpc_conn_t *c, rpc_msg_t *req);
/* A server-side connection was accepted. Return 0 to keep it (set handlers
 * with rpc_conn_set_handlers), < 0 to refuse it. */
typedef int (*rpc_accept_fn)(void *arg, rpc_conn_t *c);

typedef struct rpc_client_opts {
    const char *host;
    uint16_t port;
    bool reconnect;
    uint32_t ping_interval_ms;    /* 0 = default 1000 */
    uint32_t ping_timeout_ms;     /* 0 = default 5000 */
    uint32_t call_timeout_ms;     /* 0 = default 120000 */
    uint32_t connect_timeout_ms;  /* 0 = default 3000 */
    uint32_t backoff_min_ms, backoff_max_ms; /* 0 = 100 / 3000 */
    struct ssl_ctx_st *tls;       /* NULL = plain TCP */
} rpc_client_opts_t;

rpc_conn_t *rpc_client_new(struct event_base *base, const rpc_client_opts_t *o,
                           rpc_event_fn ev, void *ev_arg);
/* Starts connecting; RPC_EV_UP when done. 0, or -errno (no event) only when
 * `reconnect` is off and the attempt could not even start (unresolvable host). */
int rpc_client_connect(rpc_conn_t *c);
bool rpc_conn_is_up(const rpc_conn_t *c);
/* Issue a call. PAYLOAD is copied; BULK is referenced (the caller keeps its own ref). */
void rpc_call(rpc_conn_t *c, uint32_t proc, const void *payload, uint32_t plen,
              kb_buf_t *bulk, rpc_reply_fn fn, void *cookie);
/* Change the ping timeout at run time (volume set network.ping-timeout). */
void rpc_conn_set_ping_timeout(rpc_conn_t *c, uint32_t ms);

/* With TLS set, the listener serves TLS AND plain TCP on the same port. */
rpc_listener_t *rpc_listen(struct event_base *base, const char *host, uint16_t port,
                           struct ssl_ctx_st *tls, rpc_accept_fn fn, void *arg,
                           char *err, size_t errlen);
void rpc_listener_free(rpc_listener_t *l);
uint16_t rpc_listener_port(const rpc_listener_t *l);  /* actual port (after port 0) */

void rpc_conn_set_handlers(rpc_conn_t *c, rpc_request_fn req, rpc_event_fn ev, void *arg);
/* Send a reply to request XID. PAYLOAD copied, BULK referenced. 0 or -errno
 * (-ENOTCONN if the connection is gone: the reply is dropped silently then). */
int rpc_reply(rpc_conn_t *c, uint64_t xid, uint32_t proc, int32_t status,
              const void *payload, uint32_t plen, kb_buf_t *bulk);
/* Whether this connection runs TLS (a TLS listener also accepts plain TCP:
 * the first byte tells; the server decides what each side may reach). */
bool rpc_conn_is_tls(const rpc_conn_t *c);
/* The peer's address, "1.2.3.4" or "::1" (no port). */
const char *rpc_conn_peer(const rpc_conn_t *c);
/* Accepted connections: the uid owning the far end when it is on this node
 * (a local socket, or TCP over loopback); -1 when unknown (peercred.c). */
int rpc_conn_peer_uid(const rpc_conn_t *c);
/* Both ends in this host's network stack (peercred.c): a local socket,
 * loopback, or a peer at one of our own addresses. False while down. */
bool rpc_conn_same_host(const rpc_conn_t *c);
struct sockaddr_storage;
bool rpc_addr_same_host(const struct sockaddr_storage *me, const struct sockaddr_storage *peer);
/* The connection's TLS session (NULL: plain TCP, or not up). */
struct ssl_st *rpc_conn_ssl(const rpc_conn_t *c);
uint64_t rpc_conn_id(const rpc_conn_t *c);      /* unique per process */
uint64_t rpc_conn_last_rx_ms(const rpc_conn_t *c); /* kb_now_ms() of the last byte read */
/* Close: pending calls fail with -ENOTCONN, no reconnect, RPC_EV_DOWN is not
 * delivered, freed when safe. Usable from inside the conn's own callbacks. */
void rpc_conn_close(rpc_conn_t *c);
/* Server side: user pointer attached to a connection. */
void rpc_conn_set_user(rpc_conn_t *c, void *user);
void *rpc_conn_user(const rpc_conn_t *c);
/* Bytes queued for output (back-pressure). */
size_t rpc_conn_outq(const rpc_conn_t *c);

#endif
