/*
 * conn_internal.h — the inside of an rpc_conn, shared by the files of the
 * transport; private to rpc/ (rpc/conn.h is the interface).
 *
 *   conn.c     one connection: lifetime and references, frames out, frames
 *              in (readers and the frame state machine), losing the socket
 *   calls.c    the calls waiting for a reply: table by xid, deadline order,
 *              one timer (rpc_call)
 *   connect.c  the client side: connect, reconnect with backoff, liveness
 *   listen.c   the server side: listening socket, accept, TLS or plain TCP
 *              on one port
 *
 * Threading: a connection and its callbacks belong to the thread running
 * its event_base; nothing here may be called from another thread.
 */
#ifndef KB_RPC_CONN_INTERNAL_H
#define KB_RPC_CONN_INTERNAL_H

#include <netinet/in.h>
#include <pthread.h>
#include <event2/event.h>
#include "lib/log.h"
#include "rpc/conn.h"

#define LOG_CTX "rpc"

enum conn_state { CS_IDLE, CS_CONNECTING, CS_UP, CS_CLOSED };

/* One call waiting for its reply. */
struct pcall {
    uint64_t xid;
    uint64_t deadline_ms;
    rpc_reply_fn fn;
    void *cookie;
    struct pcall *hnext;          /* hash chain */
    struct pcall *prev, *next;    /* issue (= deadline) order */
};

struct rpc_conn {
    uint64_t id;
    struct event_base *base;
    struct bufferevent *bev;      /* NULL while no socket */
    struct evbuffer *scratch;     /* a frame is built here, then moved whole */
    struct evbuffer *pend;        /* plain TCP: frames of this loop pass, not yet written */
    struct event *flush_ev;       /* plain TCP: writes pend when this loop pass's callbacks end */
    struct ssl_ctx_st *tls;       /* not owned */
    bool server;
    enum conn_state state;
    int refs;
    bool owner_gone;              /* the owner's reference was dropped */

    rpc_event_fn ev_fn;
    rpc_request_fn req_fn;
    void *cb_arg;
    void *user;

    /* client side */
    char *host;
    uint16_t port;
    bool reconnect;
    uint32_t ping_interval_ms, ping_timeout_ms, call_timeout_ms, connect_timeout_ms;
    uint32_t backoff_min_ms, backoff_max_ms, backoff_ms;
    unsigned attempt;             /* rotates over the resolved addresses */
    struct event *tick_ev;        /* liveness + PING while up */
    struct event *retry_ev;       /* connect timeout while connecting, backoff while idle */
    uint64_t last_rx_ms, last_ping_ms;
    size_t last_inlen;
    uint64_t ping_xid;
    struct kb_ratelimit connect_rl;

    /* pending calls */
    struct event *call_ev;        /* aimed at the oldest call's deadline */
    struct pcall **tbl;
    uint32_t tbl_mask, ncalls;
    struct pcall *oldest, *newest;
    uint64_t next_xid;

    /* input: a frame under assembly (process_input) */
    struct evbuffer *in;          /* plain TCP: what was read, not yet parsed */
    struct event *rd_ev;          /* plain TCP: our own reader; NULL for TLS */
    kb_wire_hdr_t hdr;
    enum { RX_HDR, RX_PAYLOAD, RX_BULK, RX_SKIP } rx;
    uint8_t *rx_payload;
    kb_buf_t *rx_bulk;
    size_t rx_got;                /* bulk bytes filled / bytes skipped */
    size_t rx_skip;
    int rx_err;

    char peer[INET6_ADDRSTRLEN];
};

/* ---- conn.c ---- */
/* pthread_once(&rpc_sigpipe_once, rpc_ignore_sigpipe) before a first socket
 * (SIGPIPE: see conn.c). */
extern pthread_once_t rpc_sigpipe_once;
void rpc_ignore_sigpipe(void);
/* References: every entry from libevent holds one across its work. */
void rpc_conn_hold(rpc_conn_t *c);
void rpc_conn_release(rpc_conn_t *c);
void rpc_conn_free(rpc_conn_t *c);
rpc_conn_t *rpc_conn_alloc(struct event_base *base, bool server);
/* The socket is gone; WHY, when set, is logged at LEVEL. */
void rpc_conn_down(rpc_conn_t *c, int level, const char *why);
void rpc_drop_socket(rpc_conn_t *c);
struct bufferevent *rpc_bev_new(rpc_conn_t *c, evutil_socket_t fd, bool accepting);
int rpc_own_reader(rpc_conn_t *c);
void rpc_set_sockopts(evutil_socket_t fd, bool server);
int rpc_send_frame(rpc_conn_t *c, uint8_t type, uint64_t xid, uint32_t proc, int32_t status,
                   const void *payload, uint32_t plen, kb_buf_t *bulk);

/* ---- calls.c ---- */
struct pcall *rpc_pcall_take(rpc_conn_t *c, uint64_t xid);
void rpc_pcall_fail(struct pcall *p, int err);
void rpc_fail_all(rpc_conn_t *c, int err);
void rpc_on_call_timer(evutil_socket_t fd, short what, void *arg);

/* ---- connect.c ---- */
void rpc_schedule_retry(rpc_conn_t *c);
void rpc_arm_tick(rpc_conn_t *c);

#endif
