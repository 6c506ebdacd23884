/*
 * conn.c — framed, pipelined RPC connections on libevent bufferevents
 * (rpc/conn.h, DESIGN §8).
 *
 * What this file promises:
 *  - Every rpc_call's reply_fn runs exactly once: with the reply, or with
 *    -ENOTCONN (not up, or the connection died / was closed), -ETIMEDOUT
 *    (older than call_timeout_ms), -ENOMEM or -EMSGSIZE. It may run before
 *    rpc_call returns.
 *  - A header is validated (rpc/wire.c) before a byte is allocated for its
 *    frame; a bad frame closes only that connection, with a logged reason.
 *  - Bulk data is never copied into the output: the kb_buf is referenced by
 *    the output evbuffer and unreferenced when the kernel has taken it.
 *    Received bulk lands in a fresh aligned kb_buf, allocated once the
 *    header passed its checks and the payload is in: whatever of it was
 *    already buffered is copied in once, the rest is read from the socket
 *    straight into it (plain TCP; TLS copies once out of OpenSSL's output).
 *  - A connection touched by one of its own callbacks cannot vanish under
 *    it: every entry from libevent holds a reference (conn_hold/release), and
 *    rpc_conn_close from inside a callback only tears the socket down and
 *    drops the owner's reference; the memory goes when the stack unwinds
 *    (Redis' connhelpers pattern).
 *
 * Lifetime. refs starts at 1, the owner's reference, dropped exactly once
 * (owner_gone): by rpc_conn_close, or — for server-side connections only —
 * by the transport right after it delivered RPC_EV_DOWN. A client-side
 * connection outlives its socket (it may reconnect) until rpc_conn_close.
 *
 * Pending calls live in a hash table keyed by xid (replies come in any
 * order) and on a list in issue order. call_timeout_ms is fixed per
 * connection, so issue order is deadline order: one timer aimed at the
 * oldest call covers them all, and nothing scans the pending set per reply.
 *
 * Reading. Plain TCP reads with its own event (on_sock_read): libevent
 * 2.1's bufferevent reads 4 KiB per loop pass, which capped a connection at
 * ~500 MB/s. The bufferevent still connects and writes (writev of the output
 * chains, bulk by reference). TLS keeps the bufferevent's reading, with
 * watermarks set to what the next step needs (want()), so a header or
 * payload costs one callback however many records it took and bulk is taken
 * in 256 KiB pieces. TLS measured ~300 MB/s on loopback against ~1.3 GB/s
 * plain: OpenSSL writes one 16 KiB record per write(2) through libevent's
 * socket BIO.
 *
 * Name resolution is getaddrinfo on the loop thread: instant for numeric
 * addresses and /etc/hosts, but a dead DNS server would stall the loop.
 *
 * Liveness (client side): a tick every min(ping_interval, ping_timeout/4)
 * sends a PING when ping_interval has passed and declares the peer dead when
 * no byte at all arrived for ping_timeout. Bytes that do not yet make a whole
 * frame count too (every read stamps last_rx_ms; for TLS the tick sees the
 * input buffer grow), so a 4 MiB reply on a slow link does not look like
 * silence.
 *
 * SIGPIPE: writing to a socket the peer reset raises it, and libevent uses
 * writev. The first connection or listener sets SIGPIPE to ignored when it
 * is still at its default (a process that installed a handler keeps it).
 *
 * Threading: a connection and its callbacks belong to the thread running
 * its event_base; nothing here may be called from another thread.
 */
#include "rpc/conn.h"
#include "rpc/tls.h"
#include "lib/common.h"
#include "lib/log.h"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

#define LOG_CTX "rpc"
#define CALL_TBL_MIN 64
#define IO_CHUNK (4u << 20)        /* max bytes per read/write syscall on a socket */

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

struct rpc_listener {
    struct evconnlistener *lev;
    struct event_base *base;
    struct ssl_ctx_st *tls;
    struct sniff *sniffs;         /* TLS listeners: accepted, first byte not seen yet */
    rpc_accept_fn accept_fn;
    void *arg;
    uint16_t port;
};

static uint64_t conn_ids;
static pthread_once_t sigpipe_once = PTHREAD_ONCE_INIT;

static void ignore_sigpipe(void)
{
    struct sigaction old;
    if (sigaction(SIGPIPE, NULL, &old) == 0 && old.sa_handler == SIG_DFL)
        signal(SIGPIPE, SIG_IGN);
}

static void conn_down(rpc_conn_t *c, int level, const char *why);
static void start_connect(rpc_conn_t *c);
static void on_call_timer(evutil_socket_t fd, short what, void *arg);

/* ------------------------------------------------------------------ */
/* messages                                                             */

void rpc_msg_free(rpc_msg_t *m)
{
    if (!m)
        return;
    free(m->payload);
    kb_buf_unref(m->bulk);
    m->payload = NULL;
    m->bulk = NULL;
}

/* ------------------------------------------------------------------ */
/* lifetime                                                             */

static void conn_hold(rpc_conn_t *c)
{
    c->refs++;
}

static void conn_free(rpc_conn_t *c)
{
    assert(!c->bev && !c->rd_ev && c->ncalls == 0);
    if (c->tick_ev)
        event_free(c->tick_ev);
    if (c->retry_ev)
        event_free(c->retry_ev);
    if (c->call_ev)
        event_free(c->call_ev);
    if (c->scratch)
        evbuffer_free(c->scratch);
    if (c->in)
        evbuffer_free(c->in);
    free(c->rx_payload);
    kb_buf_unref(c->rx_bulk);
    free(c->tbl);
    free(c->host);
    free(c);
}

static void conn_release(rpc_conn_t *c)
{
    assert(c->refs > 0);
    if (--c->refs == 0)
        conn_free(c);
}

static rpc_conn_t *conn_alloc(struct event_base *base, bool server)
{
    pthread_once(&sigpipe_once, ignore_sigpipe);
    rpc_conn_t *c = kb_zalloc(sizeof(*c));
    if (!c)
        return NULL;
    c->id = __atomic_add_fetch(&conn_ids, 1, __ATOMIC_RELAXED);
    c->base = base;
    c->server = server;
    c->refs = 1;
    c->tbl = calloc(CALL_TBL_MIN, sizeof(*c->tbl));
    c->tbl_mask = CALL_TBL_MIN - 1;
    c->scratch = evbuffer_new();
    c->in = evbuffer_new();
    c->call_ev = evtimer_new(base, on_call_timer, c);
    c->call_timeout_ms = 120000;
    if (!c->tbl || !c->scratch || !c->in || !c->call_ev) {
        conn_free(c);
        return NULL;
    }
    return c;
}

/* ------------------------------------------------------------------ */
/* pending calls                                                        */

static int tbl_grow(rpc_conn_t *c)
{
    uint32_t ncap = (c->tbl_mask + 1) * 2;
    struct pcall **nt = calloc(ncap, sizeof(*nt));
    if (!nt)
        return -ENOMEM;
    for (uint32_t i = 0; i <= c->tbl_mask; i++) {
        for (struct pcall *p = c->tbl[i], *next; p; p = next) {
            next = p->hnext;
            p->hnext = nt[p->xid & (ncap - 1)];
            nt[p->xid & (ncap - 1)] = p;
        }
    }
    free(c->tbl);
    c->tbl = nt;
    c->tbl_mask = ncap - 1;
    return 0;
}

static void pcall_insert(rpc_conn_t *c, struct pcall *p)
{
    if (c->ncalls >= c->tbl_mask + 1)
        (void)tbl_grow(c);     /* on failure the chains just get longer */
    struct pcall **head = &c->tbl[p->xid & c->tbl_mask];
    p->hnext = *head;
    *head = p;
    p->next = NULL;
    p->prev = c->newest;
    if (c->newest)
        c->newest->next = p;
    else
        c->oldest = p;
    c->newest = p;
    c->ncalls++;
}

static void pcall_unlink(rpc_conn_t *c, struct pcall *p)
{
    struct pcall **pp = &c->tbl[p->xid & c->tbl_mask];
    while (*pp != p)
        pp = &(*pp)->hnext;
    *pp = p->hnext;
    if (p->prev)
        p->prev->next = p->next;
    else
        c->oldest = p->next;
    if (p->next)
        p->next->prev = p->prev;
    else
        c->newest = p->prev;
    c->ncalls--;
}

/* Find and unlink the call waiting for XID (NULL: unknown or timed out). */
static struct pcall *pcall_take(rpc_conn_t *c, uint64_t xid)
{
    for (struct pcall *p = c->tbl[xid & c->tbl_mask]; p; p = p->hnext) {
        if (p->xid == xid) {
            pcall_unlink(c, p);
            return p;
        }
    }
    return NULL;
}

/* Complete P with an error and free it. The callback may re-enter. */
static void pcall_fail(struct pcall *p, int err)
{
    rpc_reply_fn fn = p->fn;
    void *cookie = p->cookie;
    free(p);
    fn(cookie, err, NULL);
}

/* Fail every pending call. Callbacks may issue new calls (they fail at once:
 * the caller made sure the state is no longer CS_UP) or close C. */
static void fail_all(rpc_conn_t *c, int err)
{
    evtimer_del(c->call_ev);
    while (c->oldest) {
        struct pcall *p = c->oldest;
        pcall_unlink(c, p);
        pcall_fail(p, err);
    }
}

static void arm_call_timer(rpc_conn_t *c)
{
    if (!c->oldest || evtimer_pending(c->call_ev, NULL))
        return;
    uint64_t now = kb_now_ms();
    uint64_t ms = c->oldest->deadline_ms > now ? c->oldest->deadline_ms - now : 0;
    struct timeval tv = { (time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000 };
    evtimer_add(c->call_ev, &tv);
}

static void on_call_timer(evutil_socket_t fd, short what, void *arg)
{
    rpc_conn_t *c = arg;
    conn_hold(c);
    uint64_t now = kb_now_ms();
    while (c->oldest && c->oldest->deadline_ms <= now) {
        struct pcall *p = c->oldest;
        pcall_unlink(c, p);
        kb_debug(LOG_CTX, "call xid %llu to %s timed out", (unsigned long long)p->xid, c->peer);
        pcall_fail(p, -ETIMEDOUT);
    }
    arm_call_timer(c);
    conn_release(c);
}

/* ------------------------------------------------------------------ */
/* output                                                               */

static void bulk_cleanup(const void *data, size_t len, void *arg)
{
    kb_buf_unref(arg);
}

/*
 * Queue one frame, all or nothing: a failure never leaves half a frame in
 * the stream. Without bulk, header and payload are written into one
 * contiguous reservation at the end of the output (usually no allocation at
 * all). With bulk, the frame is assembled in c->scratch — header and payload
 * copied, BULK referenced until libevent has written it — and moved to the
 * output in one step.
 */
static int send_frame(rpc_conn_t *c, uint8_t type, uint64_t xid, uint32_t proc, int32_t status,
                      const void *payload, uint32_t plen, kb_buf_t *bulk)
{
    size_t blen = bulk ? bulk->len : 0;
    if (plen > KB_WIRE_PLEN_MAX || blen > KB_WIRE_BLEN_MAX)
        return -EMSGSIZE;
    if (!c->bev || c->state != CS_UP)
        return -ENOTCONN;
    kb_wire_hdr_t h = {
        .magic = KB_WIRE_MAGIC, .version = KB_WIRE_VERSION, .type = type,
        .xid = xid, .proc = proc, .status = status, .plen = plen, .blen = (uint32_t)blen,
    };
    struct evbuffer *out = bufferevent_get_output(c->bev);
    if (!blen) {
        struct evbuffer_iovec v;
        if (evbuffer_reserve_space(out, KB_WIRE_HDR_LEN + (ev_ssize_t)plen, &v, 1) != 1)
            return -ENOMEM;
        kb_wire_hdr_encode(v.iov_base, &h);
        if (plen)
            memcpy((uint8_t *)v.iov_base + KB_WIRE_HDR_LEN, payload, plen);
        v.iov_len = KB_WIRE_HDR_LEN + (size_t)plen;
        return evbuffer_commit_space(out, &v, 1) == 0 ? 0 : -ENOMEM;
    }
    uint8_t hb[KB_WIRE_HDR_LEN];
    kb_wire_hdr_encode(hb, &h);
    struct evbuffer *s = c->scratch;
    int rc = evbuffer_add(s, hb, sizeof(hb));
    if (rc == 0 && plen)
        rc = evbuffer_add(s, payload, plen);
    if (rc == 0) {
        kb_buf_ref(bulk);
        rc = evbuffer_add_reference(s, bulk->data, blen, bulk_cleanup, bulk);
        if (rc != 0)
            kb_buf_unref(bulk);
    }
    if (rc == 0)
        rc = evbuffer_add_buffer(out, s);
    if (rc != 0) {
        evbuffer_drain(s, evbuffer_get_length(s));   /* runs bulk_cleanup if queued */
        return -ENOMEM;
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* input                                                                */

/* The buffer frames are parsed from: our own for plain TCP, the
 * bufferevent's for TLS (OpenSSL decrypts into it). */
static struct evbuffer *input_of(rpc_conn_t *c)
{
    return c->rd_ev ? c->in : bufferevent_get_input(c->bev);
}

/*
 * TLS: tell libevent when to call back. NEED bytes must be buffered before
 * the frame can advance; USEFUL (<= NEED) is when a callback is worth it
 * (bulk is consumed piecemeal). The high watermark matters too: libevent's
 * TLS reader asks OpenSSL for (high - buffered) bytes per pass, 4 KiB when
 * there is none. Plain TCP reads by itself (on_sock_read) and ignores this.
 */
#define TLS_RD_USEFUL (256u << 10)
#define TLS_RD_HIGH (1u << 20)

static void want(rpc_conn_t *c, size_t need, size_t useful)
{
    if (!c->rd_ev)
        bufferevent_setwatermark(c->bev, EV_READ, useful, KB_MAX(need, (size_t)TLS_RD_HIGH));
}

static void rx_reset(rpc_conn_t *c)
{
    free(c->rx_payload);
    kb_buf_unref(c->rx_bulk);
    c->rx_payload = NULL;
    c->rx_bulk = NULL;
    c->rx = RX_HDR;
    c->rx_got = 0;
    c->rx_err = 0;
}

static void dispatch_reply(rpc_conn_t *c, rpc_msg_t *m)
{
    struct pcall *p = pcall_take(c, m->hdr.xid);
    if (!p) {          /* timed out earlier, or a confused peer: skip it */
        kb_debug(LOG_CTX, "reply xid %llu from %s matches no call",
                 (unsigned long long)m->hdr.xid, c->peer);
        return;
    }
    rpc_reply_fn fn = p->fn;
    void *cookie = p->cookie;
    free(p);
    fn(cookie, m->hdr.status, m);      /* borrowed: the caller frees it after */
}

static void dispatch_call(rpc_conn_t *c, rpc_msg_t *in)
{
    if (!c->req_fn) {
        send_frame(c, KB_MSG_REPLY, in->hdr.xid, in->hdr.proc, -EOPNOTSUPP, NULL, 0, NULL);
        return;
    }
    rpc_msg_t *m = malloc(sizeof(*m));
    if (!m) {
        send_frame(c, KB_MSG_REPLY, in->hdr.xid, in->hdr.proc, -ENOMEM, NULL, 0, NULL);
        return;
    }
    *m = *in;
    in->payload = NULL;                /* moved: the handler owns m now */
    in->bulk = NULL;
    c->req_fn(c->cb_arg, c, m);
}

/* A whole frame is in c->rx_*: detach it from the connection first (the
 * handlers may close c), then act on it. */
static void frame_done(rpc_conn_t *c)
{
    rpc_msg_t m = { .hdr = c->hdr, .payload = c->rx_payload, .bulk = c->rx_bulk };
    int err = c->rx_err;
    c->rx_payload = NULL;
    c->rx_bulk = NULL;
    rx_reset(c);
    if (err) {                         /* no memory for it: it was skipped */
        if (m.hdr.type == KB_MSG_CALL) {
            send_frame(c, KB_MSG_REPLY, m.hdr.xid, m.hdr.proc, err, NULL, 0, NULL);
        } else if (m.hdr.type == KB_MSG_REPLY) {
            struct pcall *p = pcall_take(c, m.hdr.xid);
            if (p)
                pcall_fail(p, err);
        }
    } else if (m.hdr.type == KB_MSG_PING) {
        /* Answered here, before any request behind it is looked at. */
        send_frame(c, KB_MSG_PONG, m.hdr.xid, 0, 0, NULL, 0, NULL);
    } else if (m.hdr.type == KB_MSG_REPLY) {
        dispatch_reply(c, &m);
    } else if (m.hdr.type == KB_MSG_CALL) {
        dispatch_call(c, &m);
    }                                  /* PONG: its arrival was the point */
    rpc_msg_free(&m);
}

/* Out of memory for a frame body: consume its remaining N bytes unread,
 * then answer it with -ENOMEM (frame_done). The connection lives on. */
static void rx_skip(rpc_conn_t *c, size_t n)
{
    free(c->rx_payload);
    c->rx_payload = NULL;
    c->rx_err = -ENOMEM;
    c->rx = RX_SKIP;
    c->rx_got = 0;
    c->rx_skip = n;
}

/* A protocol violation: log why and drop only this connection. */
static void conn_kill(rpc_conn_t *c, const char *why)
{
    kb_warn(LOG_CTX, "closing connection %llu with %s: %s", (unsigned long long)c->id, c->peer, why);
    conn_down(c, KB_LOG_NONE, NULL);
}

/*
 * Advance the frame state machine over what is buffered. Allocation happens
 * only after the header passed its limit checks: the payload when all of it
 * is buffered, the bulk buffer when the payload is done. Bulk bytes are
 * copied once, into the kb_buf (plain TCP then reads the rest of the bulk
 * straight from the socket into it: on_sock_read).
 */
static void process_input(rpc_conn_t *c)
{
    while (c->bev && c->state == CS_UP) {
        struct evbuffer *in = input_of(c);
        size_t avail = evbuffer_get_length(in);
        switch (c->rx) {
        case RX_HDR: {
            if (avail < KB_WIRE_HDR_LEN) {
                want(c, KB_WIRE_HDR_LEN, KB_WIRE_HDR_LEN);
                return;
            }
            uint8_t hb[KB_WIRE_HDR_LEN];
            const char *why;
            evbuffer_remove(in, hb, sizeof(hb));
            if (kb_wire_hdr_decode(hb, &c->hdr, &why) < 0) {
                conn_kill(c, why);
                return;
            }
            c->rx = RX_PAYLOAD;
            break;
        }
        case RX_PAYLOAD: {
            uint32_t plen = c->hdr.plen, blen = c->hdr.blen;
            if (avail < plen) {
                want(c, plen, plen);
                return;
            }
            c->rx_payload = malloc((size_t)plen + 1);
            if (!c->rx_payload) {
                rx_skip(c, (size_t)plen + blen);
                break;
            }
            evbuffer_remove(in, c->rx_payload, plen);
            c->rx_payload[plen] = '\0';
            if (blen == 0) {
                frame_done(c);
                break;
            }
            c->rx_bulk = kb_buf_new(blen);
            if (!c->rx_bulk) {
                rx_skip(c, blen);
                break;
            }
            c->rx = RX_BULK;
            c->rx_got = 0;
            break;
        }
        case RX_BULK: {
            size_t left = c->hdr.blen - c->rx_got;
            size_t n = KB_MIN(avail, left);
            if (n)
                evbuffer_remove(in, c->rx_bulk->data + c->rx_got, n);
            c->rx_got += n;
            c->rx_bulk->len = c->rx_got;
            if (n < left) {
                want(c, left - n, KB_MIN(left - n, (size_t)TLS_RD_USEFUL));
                return;
            }
            frame_done(c);
            break;
        }
        case RX_SKIP: {
            size_t n = KB_MIN(avail, c->rx_skip - c->rx_got);
            evbuffer_drain(in, n);
            c->rx_got += n;
            if (c->rx_got < c->rx_skip) {
                size_t rest = c->rx_skip - c->rx_got;
                want(c, rest, KB_MIN(rest, (size_t)TLS_RD_USEFUL));
                return;
            }
            frame_done(c);
            break;
        }
        }
    }
}

/* TLS: OpenSSL has put plaintext into the bufferevent's input. */
static void on_read(struct bufferevent *bev, void *arg)
{
    rpc_conn_t *c = arg;
    conn_hold(c);
    c->last_rx_ms = kb_now_ms();
    process_input(c);
    if (c->bev && !c->rd_ev)
        c->last_inlen = evbuffer_get_length(bufferevent_get_input(c->bev));
    conn_release(c);
}

/* Read up to N bytes from FD into the end of IN. */
static ssize_t read_into(struct evbuffer *in, evutil_socket_t fd, size_t n)
{
    struct evbuffer_iovec v[2];
    int nv = evbuffer_reserve_space(in, (ev_ssize_t)n, v, 2);
    if (nv <= 0) {
        errno = ENOMEM;
        return -1;
    }
    struct iovec iov[2];
    for (int i = 0; i < nv; i++) {
        iov[i].iov_base = v[i].iov_base;
        iov[i].iov_len = v[i].iov_len;
    }
    ssize_t r = readv(fd, iov, nv);
    size_t left = r > 0 ? (size_t)r : 0;
    for (int i = 0; i < nv; i++) {
        v[i].iov_len = KB_MIN(v[i].iov_len, left);
        left -= v[i].iov_len;
    }
    evbuffer_commit_space(in, v, nv);
    return r;
}

/*
 * Plain TCP reader. libevent 2.1's bufferevent reads at most 4 KiB per
 * event-loop pass (EVBUFFER_MAX_READ), which caps a connection at a few
 * hundred MB/s; we read ourselves instead: headers and payloads in 64 KiB
 * gulps into c->in, and the rest of a bulk body straight into its kb_buf
 * (no copy at all). A pass stops after RD_BUDGET bytes so one busy
 * connection cannot starve the others on the loop.
 */
#define RD_CHUNK (64u << 10)
#define RD_BUDGET (16u << 20)

static void on_sock_read(evutil_socket_t fd, short what, void *arg)
{
    rpc_conn_t *c = arg;
    conn_hold(c);
    size_t budget = RD_BUDGET;
    while (c->rd_ev && budget) {
        ssize_t n;
        if (c->rx == RX_BULK && evbuffer_get_length(c->in) == 0) {
            n = read(fd, c->rx_bulk->data + c->rx_got, c->hdr.blen - c->rx_got);
            if (n > 0) {
                c->rx_got += (size_t)n;
                c->rx_bulk->len = c->rx_got;
            }
        } else {
            n = read_into(c->in, fd, RD_CHUNK);
        }
        if (n > 0) {
            c->last_rx_ms = kb_now_ms();
            budget -= KB_MIN(budget, (size_t)n);
            process_input(c);
            continue;
        }
        if (n == 0) {
            conn_down(c, KB_LOG_INFO, "closed by peer");
        } else if (errno == EINTR) {
            continue;
        } else if (errno != EAGAIN && errno != EWOULDBLOCK) {
            char why[128];
            snprintf(why, sizeof(why), "read: %s", strerror(errno));
            conn_down(c, c->state == CS_UP ? KB_LOG_WARN : KB_LOG_INFO, why);
        }
        break;
    }
    conn_release(c);
}

/* Plain TCP: take reading over from the bufferevent (which keeps writing). */
static int own_reader(rpc_conn_t *c)
{
    if (c->tls)
        return 0;
    evutil_socket_t fd = bufferevent_getfd(c->bev);
    bufferevent_disable(c->bev, EV_READ);
    c->rd_ev = event_new(c->base, fd, EV_READ | EV_PERSIST, on_sock_read, c);
    if (!c->rd_ev || event_add(c->rd_ev, NULL) < 0)
        return -ENOMEM;
    /* Anything the bufferevent read already comes first. */
    evbuffer_add_buffer(c->in, bufferevent_get_input(c->bev));
    return 0;
}

/* ------------------------------------------------------------------ */
/* socket state                                                          */

static void set_sockopts(evutil_socket_t fd, bool server)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (server) {
        /* Notice clients that vanished without a FIN (their locks and fds
         * must be released); clients have their own PINGs. */
        int idle = 10, intvl = 5, cnt = 3;
        setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
    }
}

static void tune_bev(struct bufferevent *bev)
{
    bufferevent_set_max_single_read(bev, IO_CHUNK);
    bufferevent_set_max_single_write(bev, IO_CHUNK);
    bufferevent_setwatermark(bev, EV_READ, KB_WIRE_HDR_LEN, TLS_RD_HIGH);
}

/* Free the socket; forget partial input. Timers of the socket stop. */
static void drop_socket(rpc_conn_t *c)
{
    if (c->rd_ev) {                   /* before the bufferevent closes the fd */
        event_free(c->rd_ev);         /* safe inside its own callback */
        c->rd_ev = NULL;
    }
    if (c->bev) {
        SSL *ssl = c->tls ? bufferevent_openssl_get_ssl(c->bev) : NULL;
        if (ssl && c->state == CS_UP)
            SSL_shutdown(ssl);        /* best effort close_notify: a clean EOF for the peer */
        bufferevent_free(c->bev);     /* likewise */
        c->bev = NULL;
    }
    evbuffer_drain(c->in, evbuffer_get_length(c->in));
    rx_reset(c);
    if (c->tick_ev)
        evtimer_del(c->tick_ev);
    if (c->retry_ev)
        evtimer_del(c->retry_ev);
}

static void deliver_event(rpc_conn_t *c, int event)
{
    if (c->ev_fn && !c->owner_gone)
        c->ev_fn(c->cb_arg, c, event);
}

static void schedule_retry(rpc_conn_t *c)
{
    uint32_t ms = c->backoff_ms;
    c->backoff_ms = KB_MIN(c->backoff_ms * 2, c->backoff_max_ms);
    struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
    evtimer_add(c->retry_ev, &tv);
}

/*
 * The socket is gone (error, EOF, timeout, protocol violation). Pending calls
 * fail with -ENOTCONN, then RPC_EV_DOWN is reported (client: when it had been
 * up, or when no reconnect follows; server: always, after which the transport
 * lets go of the connection). WHY, when set, is logged.
 */
static void conn_down(rpc_conn_t *c, int level, const char *why)
{
    if (c->state == CS_CLOSED || c->state == CS_IDLE)
        return;
    conn_hold(c);
    bool was_up = c->state == CS_UP;
    if (why && (was_up || kb_ratelimit_ok(&c->connect_rl))) {
        if (c->server)
            kb_log(level, LOG_CTX, "connection %llu from %s: %s", (unsigned long long)c->id,
                   c->peer, why);
        else
            kb_log(level, LOG_CTX, "connection %llu to %s:%u: %s", (unsigned long long)c->id,
                   c->host, c->port, why);
    }
    drop_socket(c);
    c->state = c->server ? CS_CLOSED : CS_IDLE;
    fail_all(c, -ENOTCONN);
    if (c->server) {
        deliver_event(c, RPC_EV_DOWN);
        if (!c->owner_gone) {
            c->owner_gone = true;
            conn_release(c);
        }
    } else if (!c->owner_gone) {
        if (was_up || !c->reconnect)
            deliver_event(c, RPC_EV_DOWN);
        if (c->reconnect && !c->owner_gone && c->state == CS_IDLE && !evtimer_pending(c->retry_ev, NULL))
            schedule_retry(c);
    }
    conn_release(c);
}

static uint32_t tick_period(const rpc_conn_t *c)
{
    uint32_t p = KB_MIN(c->ping_interval_ms, c->ping_timeout_ms / 4);
    return KB_MAX(p, 10u);
}

static void arm_tick(rpc_conn_t *c)
{
    uint32_t ms = tick_period(c);
    struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
    evtimer_del(c->tick_ev);
    evtimer_add(c->tick_ev, &tv);    /* persistent: tv is the period */
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    rpc_conn_t *c = arg;
    if (c->state != CS_UP || !c->bev)
        return;
    conn_hold(c);
    uint64_t now = kb_now_ms();
    if (!c->rd_ev) {                   /* TLS: part of a frame arrived? */
        size_t inlen = evbuffer_get_length(bufferevent_get_input(c->bev));
        if (inlen != c->last_inlen) {
            c->last_inlen = inlen;
            c->last_rx_ms = now;
        }
    }
    if (now - c->last_rx_ms >= c->ping_timeout_ms) {
        char why[96];
        snprintf(why, sizeof(why), "peer silent for %llu ms (ping timeout %u ms): declared dead",
                 (unsigned long long)(now - c->last_rx_ms), c->ping_timeout_ms);
        conn_down(c, KB_LOG_WARN, why);
    } else if (now - c->last_ping_ms >= c->ping_interval_ms) {
        c->last_ping_ms = now;
        send_frame(c, KB_MSG_PING, ++c->ping_xid, 0, 0, NULL, 0, NULL);
    }
    conn_release(c);
}

/* The reason an error event closed the socket, for the log. */
static const char *event_reason(rpc_conn_t *c, short what, char *buf, size_t n)
{
    unsigned long ssl_err = c->tls && c->bev ? bufferevent_get_openssl_error(c->bev) : 0;
    if (ssl_err) {
        char e[200];
        ERR_error_string_n(ssl_err, e, sizeof(e));
        snprintf(buf, n, "TLS: %s", e);
    } else if (what & BEV_EVENT_EOF) {
        snprintf(buf, n, "closed by peer");
    } else if (what & BEV_EVENT_TIMEOUT) {
        snprintf(buf, n, "timed out");
    } else {
        int err = EVUTIL_SOCKET_ERROR();
        snprintf(buf, n, "%s", err ? strerror(err) : "error");
    }
    return buf;
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    rpc_conn_t *c = arg;
    conn_hold(c);
    if (what & BEV_EVENT_CONNECTED) {
        if (!c->server && c->state == CS_CONNECTING) {
            evtimer_del(c->retry_ev);
            set_sockopts(bufferevent_getfd(bev), false);
            if (own_reader(c) < 0) {
                conn_down(c, KB_LOG_WARN, "out of memory");
                conn_release(c);
                return;
            }
            c->state = CS_UP;
            c->backoff_ms = c->backoff_min_ms;
            c->last_rx_ms = c->last_ping_ms = kb_now_ms();
            c->last_inlen = 0;
            arm_tick(c);
            kb_debug(LOG_CTX, "connection %llu up to %s:%u", (unsigned long long)c->id, c->host, c->port);
            deliver_event(c, RPC_EV_UP);
        }
    } else if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT)) {
        char buf[256];
        /* A peer hanging up is routine (clients unmount); the rest is not. */
        int level = c->state == CS_UP && !(what & BEV_EVENT_EOF) ? KB_LOG_WARN : KB_LOG_INFO;
        conn_down(c, level, event_reason(c, what, buf, sizeof(buf)));
    }
    conn_release(c);
}

/* ------------------------------------------------------------------ */
/* client                                                               */

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
    rpc_conn_t *c = arg;
    conn_hold(c);
    if (c->state == CS_CONNECTING) {
        char why[64];
        snprintf(why, sizeof(why), "connect timed out after %u ms", c->connect_timeout_ms);
        conn_down(c, KB_LOG_INFO, why);
    } else if (c->state == CS_IDLE && !c->owner_gone) {
        start_connect(c);
    }
    conn_release(c);
}

rpc_conn_t *rpc_client_new(struct event_base *base, const rpc_client_opts_t *o,
                           rpc_event_fn ev, void *ev_arg)
{
    if (!o || !o->host)
        return NULL;
    rpc_conn_t *c = conn_alloc(base, false);
    if (!c)
        return NULL;
    c->host = strdup(o->host);
    c->port = o->port;
    c->reconnect = o->reconnect;
    c->ping_interval_ms = o->ping_interval_ms ? o->ping_interval_ms : 1000;
    c->ping_timeout_ms = o->ping_timeout_ms ? o->ping_timeout_ms : 5000;
    c->call_timeout_ms = o->call_timeout_ms ? o->call_timeout_ms : 120000;
    c->connect_timeout_ms = o->connect_timeout_ms ? o->connect_timeout_ms : 3000;
    c->backoff_min_ms = o->backoff_min_ms ? o->backoff_min_ms : 100;
    c->backoff_max_ms = KB_MAX(o->backoff_max_ms ? o->backoff_max_ms : 3000, c->backoff_min_ms);
    c->backoff_ms = c->backoff_min_ms;
    c->tls = o->tls;
    c->ev_fn = ev;
    c->cb_arg = ev_arg;
    c->connect_rl.interval_ms = 10000;
    snprintf(c->peer, sizeof(c->peer), "%s", o->host);
    c->tick_ev = event_new(base, -1, EV_PERSIST, on_tick, c);
    c->retry_ev = evtimer_new(base, on_retry, c);
    if (!c->host || !c->tick_ev || !c->retry_ev) {
        conn_free(c);
        return NULL;
    }
    return c;
}

/* Resolve c->host (blocking getaddrinfo: numeric hosts and /etc/hosts are
 * instant; the volfile names hosts the admin typed). Picks one address,
 * rotating over the list across attempts. */
static int resolve(rpc_conn_t *c, struct sockaddr_storage *ss, socklen_t *len)
{
    struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_family = AF_UNSPEC };
    struct addrinfo *res = NULL;
    char port[8];
    snprintf(port, sizeof(port), "%u", c->port);
    int rc = getaddrinfo(c->host, port, &hints, &res);
    if (rc != 0 || !res)
        return -EHOSTUNREACH;
    unsigned n = 0;
    for (struct addrinfo *a = res; a; a = a->ai_next)
        n++;
    struct addrinfo *a = res;
    for (unsigned i = c->attempt++ % n; i; i--)
        a = a->ai_next;
    memcpy(ss, a->ai_addr, a->ai_addrlen);
    *len = (socklen_t)a->ai_addrlen;
    const void *ip = ss->ss_family == AF_INET6 ? (const void *)&((struct sockaddr_in6 *)ss)->sin6_addr
                                               : (const void *)&((struct sockaddr_in *)ss)->sin_addr;
    inet_ntop(ss->ss_family, ip, c->peer, sizeof(c->peer));
    freeaddrinfo(res);
    return 0;
}

static struct bufferevent *bev_new(rpc_conn_t *c, evutil_socket_t fd, bool accepting)
{
    struct bufferevent *bev;
    if (c->tls) {
        SSL *ssl = SSL_new(c->tls);
        if (!ssl)
            return NULL;
        /* libevent 2.1 continues with the next chunk after a partial
         * SSL_write, reordering the stream: never allow partial writes,
         * whoever built the context. */
        SSL_clear_mode(ssl, SSL_MODE_ENABLE_PARTIAL_WRITE);
        bev = bufferevent_openssl_socket_new(c->base, fd, ssl,
                                             accepting ? BUFFEREVENT_SSL_ACCEPTING
                                                       : BUFFEREVENT_SSL_CONNECTING,
                                             BEV_OPT_CLOSE_ON_FREE);
        if (!bev) {
            SSL_free(ssl);
            return NULL;
        }
        bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    } else {
        bev = bufferevent_socket_new(c->base, fd, BEV_OPT_CLOSE_ON_FREE);
        if (!bev)
            return NULL;
    }
    tune_bev(bev);
    bufferevent_setcb(bev, on_read, NULL, on_event, c);
    return bev;
}

/* Idle client: open a socket and start connecting. Failures before the
 * connect is under way are handled like a failed connect. Returns 0 or the
 * failure (-errno) when no retry follows. */
static int connect_now(rpc_conn_t *c)
{
    struct sockaddr_storage ss;
    socklen_t sl;
    int rc = resolve(c, &ss, &sl);
    const char *why = "cannot resolve host";
    if (rc == 0) {
        c->bev = bev_new(c, -1, false);
        rc = c->bev ? 0 : -ENOMEM;
        why = "out of memory";
    }
    if (rc == 0 && bufferevent_socket_connect(c->bev, (struct sockaddr *)&ss, (int)sl) < 0) {
        rc = errno ? -errno : -ECONNREFUSED;
        why = "connect failed";
    }
    if (rc == 0) {
        c->state = CS_CONNECTING;
        /* Plain TCP reads with its own event once connected (own_reader). */
        bufferevent_enable(c->bev, c->tls ? EV_READ | EV_WRITE : EV_WRITE);
        uint32_t ms = c->connect_timeout_ms;
        struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
        evtimer_add(c->retry_ev, &tv);
        return 0;
    }
    drop_socket(c);
    if (kb_ratelimit_ok(&c->connect_rl))
        kb_info(LOG_CTX, "connect to %s:%u: %s", c->host, c->port, why);
    if (!c->reconnect)
        return rc;
    schedule_retry(c);
    return 0;
}

static void start_connect(rpc_conn_t *c)
{
    (void)connect_now(c);
}

int rpc_client_connect(rpc_conn_t *c)
{
    if (!c || c->server || c->owner_gone)
        return -EINVAL;
    if (c->state != CS_IDLE)
        return 0;                       /* connecting or up already */
    evtimer_del(c->retry_ev);
    return connect_now(c);
}

bool rpc_conn_is_up(const rpc_conn_t *c)
{
    return c && c->state == CS_UP && c->bev;
}

void rpc_call(rpc_conn_t *c, uint32_t proc, const void *payload, uint32_t plen,
              kb_buf_t *bulk, rpc_reply_fn fn, void *cookie)
{
    if (!rpc_conn_is_up(c)) {
        fn(cookie, -ENOTCONN, NULL);
        return;
    }
    struct pcall *p = malloc(sizeof(*p));
    if (!p) {
        fn(cookie, -ENOMEM, NULL);
        return;
    }
    p->xid = ++c->next_xid;
    int rc = send_frame(c, KB_MSG_CALL, p->xid, proc, 0, payload, plen, bulk);
    if (rc < 0) {
        free(p);
        fn(cookie, rc, NULL);
        return;
    }
    p->fn = fn;
    p->cookie = cookie;
    p->deadline_ms = kb_now_ms() + c->call_timeout_ms;
    pcall_insert(c, p);
    arm_call_timer(c);
}

void rpc_conn_set_ping_timeout(rpc_conn_t *c, uint32_t ms)
{
    if (!c || c->server || !ms)
        return;
    c->ping_timeout_ms = ms;
    c->ping_interval_ms = KB_MIN(c->ping_interval_ms, KB_MAX(ms / 2, 10u));
    if (c->state == CS_UP)
        arm_tick(c);
}

/* ------------------------------------------------------------------ */
/* server                                                               */

static void format_peer(const struct sockaddr *sa, char *out, size_t n)
{
    out[0] = '\0';
    if (sa->sa_family == AF_INET) {
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, out, (socklen_t)n);
    } else if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(a))       /* dual-stack listener: show the v4 address */
            inet_ntop(AF_INET, &a->s6_addr[12], out, (socklen_t)n);
        else
            inet_ntop(AF_INET6, a, out, (socklen_t)n);
    }
}

/* An accepted socket becomes a connection; TLS = the listener's context or NULL. */
static void accept_ready(rpc_listener_t *l, evutil_socket_t fd, const char *peer, struct ssl_ctx_st *tls)
{
    rpc_conn_t *c = conn_alloc(l->base, true);
    if (c) {
        c->tls = tls;
        snprintf(c->peer, sizeof(c->peer), "%s", peer);
        c->bev = bev_new(c, fd, true);
    }
    if (!c || !c->bev) {
        kb_warn(LOG_CTX, "refusing a connection: out of memory");
        if (c)
            conn_free(c);
        close(fd);
        return;
    }
    c->state = CS_UP;
    conn_hold(c);
    int rc = l->accept_fn ? l->accept_fn(l->arg, c) : 0;
    if (rc < 0) {
        kb_info(LOG_CTX, "connection from %s refused: %s", c->peer, strerror(-rc));
        rpc_conn_close(c);
    } else if (c->bev) {
        bufferevent_enable(c->bev, c->tls ? EV_READ | EV_WRITE : EV_WRITE);
        if (own_reader(c) < 0) {
            kb_warn(LOG_CTX, "dropping connection from %s: out of memory", c->peer);
            rpc_conn_close(c);
        }
    }
    conn_release(c);
}

/* A listener with a TLS context serves TLS and plain TCP on one port: the
 * first byte tells them apart (a TLS record starts with 0x16 "handshake", a
 * kembar frame with 'K'), so volumes with and without transport.tls share a
 * node. Which volumes demand TLS is the server's business (rpc_conn_is_tls).
 * A client that sends nothing within SNIFF_TIMEOUT_S is dropped. */
#define SNIFF_TIMEOUT_S 10
struct sniff {
    rpc_listener_t *l;
    evutil_socket_t fd;
    struct event *ev;
    char peer[INET6_ADDRSTRLEN];
    struct sniff *next;
};

static void sniff_unlink(struct sniff *s)
{
    for (struct sniff **pp = &s->l->sniffs; *pp; pp = &(*pp)->next)
        if (*pp == s) {
            *pp = s->next;
            break;
        }
    event_free(s->ev);
}

static void sniff_cb(evutil_socket_t fd, short what, void *arg)
{
    struct sniff *s = arg;
    unsigned char b = 0;
    ssize_t n = (what & EV_READ) ? recv(fd, &b, 1, MSG_PEEK) : -1;
    if (n < 0 && (what & EV_READ) && (errno == EAGAIN || errno == EINTR)) {
        struct timeval tv = { SNIFF_TIMEOUT_S, 0 };
        event_add(s->ev, &tv);
        return;
    }
    rpc_listener_t *l = s->l;
    sniff_unlink(s);
    if (n == 1)
        accept_ready(l, fd, s->peer, b == 0x16 ? l->tls : NULL);
    else
        close(fd);
    free(s);
}

static void on_accept(struct evconnlistener *lev, evutil_socket_t fd, struct sockaddr *sa,
                      int socklen, void *arg)
{
    rpc_listener_t *l = arg;
    set_sockopts(fd, true);
    char peer[INET6_ADDRSTRLEN];
    format_peer(sa, peer, sizeof(peer));
    if (!l->tls) {
        accept_ready(l, fd, peer, NULL);
        return;
    }
    struct sniff *s = kb_zalloc(sizeof(*s));
    if (s && !(s->ev = event_new(l->base, fd, EV_READ, sniff_cb, s))) {
        free(s);
        s = NULL;
    }
    if (!s) {
        close(fd);
        return;
    }
    s->l = l;
    s->fd = fd;
    snprintf(s->peer, sizeof(s->peer), "%s", peer);
    s->next = l->sniffs;
    l->sniffs = s;
    struct timeval tv = { SNIFF_TIMEOUT_S, 0 };
    event_add(s->ev, &tv);
}

static void on_accept_error(struct evconnlistener *lev, void *arg)
{
    static struct kb_ratelimit rl = { .interval_ms = 10000 };
    int err = EVUTIL_SOCKET_ERROR();
    if (kb_ratelimit_ok(&rl))
        kb_err(LOG_CTX, "accept: %s", strerror(err));
}

static evutil_socket_t listen_socket(const char *host, uint16_t port, char *err, size_t errlen)
{
    struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
    struct addrinfo *res = NULL;
    char ps[8];
    snprintf(ps, sizeof(ps), "%u", port);
    bool any = !host || !*host;
    int rc = getaddrinfo(any ? "::" : host, ps, &hints, &res);
    if (rc != 0 && any)
        rc = getaddrinfo("0.0.0.0", ps, &hints, &res);
    if (rc != 0) {
        snprintf(err, errlen, "cannot listen on %s:%u: %s", host ? host : "*", port, gai_strerror(rc));
        return -1;
    }
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 && any) {                   /* no IPv6 here: plain IPv4 any */
        freeaddrinfo(res);
        res = NULL;
        if (getaddrinfo("0.0.0.0", ps, &hints, &res) == 0)
            fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    }
    int one = 1, zero = 0;
    if (fd >= 0) {
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (res->ai_family == AF_INET6 && (any || strcmp(host, "::") == 0))
            setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));   /* dual stack */
    }
    if (fd < 0 || bind(fd, res->ai_addr, res->ai_addrlen) < 0 || listen(fd, 512) < 0) {
        int e = errno;
        if (e == EADDRINUSE)
            snprintf(err, errlen, "cannot listen on %s:%u: address already in use "
                     "(another kembard on this port?)", host ? host : "*", port);
        else
            snprintf(err, errlen, "cannot listen on %s:%u: %s", host ? host : "*", port, strerror(e));
        if (fd >= 0)
            close(fd);
        fd = -1;
    }
    if (res)
        freeaddrinfo(res);
    return fd;
}

rpc_listener_t *rpc_listen(struct event_base *base, const char *host, uint16_t port,
                           struct ssl_ctx_st *tls, rpc_accept_fn fn, void *arg,
                           char *err, size_t errlen)
{
    char dummy[8];
    if (!err) {
        err = dummy;
        errlen = sizeof(dummy);
    }
    pthread_once(&sigpipe_once, ignore_sigpipe);
    rpc_listener_t *l = kb_zalloc(sizeof(*l));
    if (!l) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    evutil_socket_t fd = listen_socket(host, port, err, errlen);
    if (fd < 0) {
        free(l);
        return NULL;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    getsockname(fd, (struct sockaddr *)&ss, &sl);
    l->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                             : ((struct sockaddr_in *)&ss)->sin_port);
    l->base = base;
    l->tls = tls;
    l->accept_fn = fn;
    l->arg = arg;
    /* backlog 0: the socket is listening already. */
    l->lev = evconnlistener_new(base, on_accept, l, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC,
                                0, fd);
    if (!l->lev) {
        snprintf(err, errlen, "cannot listen on port %u: out of memory", port);
        close(fd);
        free(l);
        return NULL;
    }
    evconnlistener_set_error_cb(l->lev, on_accept_error);
    return l;
}

void rpc_listener_free(rpc_listener_t *l)
{
    if (!l)
        return;
    while (l->sniffs) {
        struct sniff *s = l->sniffs;
        sniff_unlink(s);
        close(s->fd);
        free(s);
    }
    evconnlistener_free(l->lev);
    free(l);
}

uint16_t rpc_listener_port(const rpc_listener_t *l)
{
    return l ? l->port : 0;
}

void rpc_conn_set_handlers(rpc_conn_t *c, rpc_request_fn req, rpc_event_fn ev, void *arg)
{
    c->req_fn = req;
    c->ev_fn = ev;
    c->cb_arg = arg;
}

int rpc_reply(rpc_conn_t *c, uint64_t xid, uint32_t proc, int32_t status,
              const void *payload, uint32_t plen, kb_buf_t *bulk)
{
    if (!rpc_conn_is_up(c))
        return -ENOTCONN;
    return send_frame(c, KB_MSG_REPLY, xid, proc, status, payload, plen, bulk);
}

/* ------------------------------------------------------------------ */
/* both                                                                 */

bool rpc_conn_is_tls(const rpc_conn_t *c)
{
    return c->tls != NULL;
}

const char *rpc_conn_peer(const rpc_conn_t *c)
{
    return c->peer;
}

uint64_t rpc_conn_id(const rpc_conn_t *c)
{
    return c->id;
}

void rpc_conn_close(rpc_conn_t *c)
{
    if (!c || c->owner_gone)
        return;
    conn_hold(c);
    c->owner_gone = true;          /* from here on no event reaches the owner */
    c->ev_fn = NULL;
    c->req_fn = NULL;
    drop_socket(c);
    c->state = CS_CLOSED;
    fail_all(c, -ENOTCONN);
    conn_release(c);               /* the owner's reference */
    conn_release(c);               /* ours: frees now unless a callback holds c */
}

void rpc_conn_set_user(rpc_conn_t *c, void *user)
{
    c->user = user;
}

void *rpc_conn_user(const rpc_conn_t *c)
{
    return c->user;
}

size_t rpc_conn_outq(const rpc_conn_t *c)
{
    return c->bev ? evbuffer_get_length(bufferevent_get_output(c->bev)) : 0;
}
