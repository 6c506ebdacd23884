/*
 * conn.c — framed, pipelined RPC connections on libevent bufferevents
 * (rpc/conn.h, DESIGN §8): one connection's lifetime, its frames out and
 * in, and the loss of its socket. The pending calls are in calls.c, the
 * client side in connect.c, the server side in listen.c (map in
 * conn_internal.h).
 *
 * What the transport promises:
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
 *    it: every entry from libevent holds a reference
 *    (rpc_conn_hold/release), and rpc_conn_close from inside a callback only
 *    tears the socket down and drops the owner's reference; the memory goes
 *    when the stack unwinds (Redis' connhelpers pattern).
 *
 * Lifetime. refs starts at 1, the owner's reference, dropped exactly once
 * (owner_gone): by rpc_conn_close, or — for server-side connections only —
 * by the transport right after it delivered RPC_EV_DOWN. A client-side
 * connection outlives its socket (it may reconnect) until rpc_conn_close.
 *
 * Writing. Plain TCP frames go to c->pend and a user event (flush_ev) is
 * made active; it runs once the callbacks of this loop pass are done and
 * writes everything queued in one writev, straight to the socket when the
 * bufferevent's output is empty. Only what the socket did not take goes to
 * the bufferevent, which then waits for EPOLLOUT. Before, every frame went to
 * the bufferevent's output: an epoll_ctl to add EPOLLOUT, a loop pass to be
 * told the socket is writable, the write, an epoll_ctl to remove EPOLLOUT —
 * on both the client and the brick, for every call. Frames of one pass (a
 * batch of FUSE requests, a fan-out to every child) still leave together.
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
 * SIGPIPE: writing to a socket the peer reset raises it, and libevent uses
 * writev. The first connection or listener sets SIGPIPE to ignored when it
 * is still at its default (a process that installed a handler keeps it).
 *
 * Threading: a connection and its callbacks belong to the thread running
 * its event_base; nothing here may be called from another thread.
 */
#include "rpc/conn_internal.h"
#include "rpc/tls.h"
#include "lib/common.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

#define CALL_TBL_MIN 64
#define IO_CHUNK (4u << 20)        /* max bytes per read/write syscall on a socket */

static uint64_t conn_ids;
static void on_flush(evutil_socket_t fd, short what, void *arg);
pthread_once_t rpc_sigpipe_once = PTHREAD_ONCE_INIT;

void rpc_ignore_sigpipe(void)
{
    struct sigaction old;
    if (sigaction(SIGPIPE, NULL, &old) == 0 && old.sa_handler == SIG_DFL)
        signal(SIGPIPE, SIG_IGN);
}

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

void rpc_conn_hold(rpc_conn_t *c)
{
    c->refs++;
}

void rpc_conn_free(rpc_conn_t *c)
{
    assert(!c->bev && !c->rd_ev && c->ncalls == 0);
    if (c->tick_ev)
        event_free(c->tick_ev);
    if (c->retry_ev)
        event_free(c->retry_ev);
    if (c->call_ev)
        event_free(c->call_ev);
    if (c->flush_ev)
        event_free(c->flush_ev);
    if (c->scratch)
        evbuffer_free(c->scratch);
    if (c->pend)
        evbuffer_free(c->pend);
    if (c->in)
        evbuffer_free(c->in);
    free(c->rx_payload);
    kb_buf_unref(c->rx_bulk);
    free(c->tbl);
    free(c->host);
    free(c);
}

void rpc_conn_release(rpc_conn_t *c)
{
    assert(c->refs > 0);
    if (--c->refs == 0)
        rpc_conn_free(c);
}

rpc_conn_t *rpc_conn_alloc(struct event_base *base, bool server)
{
    pthread_once(&rpc_sigpipe_once, rpc_ignore_sigpipe);
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
    c->pend = evbuffer_new();
    c->in = evbuffer_new();
    c->call_ev = evtimer_new(base, rpc_on_call_timer, c);
    c->flush_ev = event_new(base, -1, 0, on_flush, c);
    c->call_timeout_ms = 120000;
    if (!c->tbl || !c->scratch || !c->pend || !c->in || !c->call_ev || !c->flush_ev) {
        rpc_conn_free(c);
        return NULL;
    }
    return c;
}

/* ------------------------------------------------------------------ */
/* output                                                               */

/* flush_ev: the frames of this loop pass (see "Writing" above). A write
 * error is left to the bufferevent, which meets it on its own write and
 * reports it (on_event) as before. */
static void on_flush(evutil_socket_t fd, short what, void *arg)
{
    rpc_conn_t *c = arg;
    (void)fd;
    (void)what;
    if (!c->bev || !evbuffer_get_length(c->pend))
        return;
    struct evbuffer *out = bufferevent_get_output(c->bev);
    if (!evbuffer_get_length(out))
        evbuffer_write_atmost(c->pend, bufferevent_getfd(c->bev), IO_CHUNK);
    if (evbuffer_get_length(c->pend))
        evbuffer_add_buffer(out, c->pend);
}

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
int rpc_send_frame(rpc_conn_t *c, uint8_t type, uint64_t xid, uint32_t proc, int32_t status,
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
    /* rd_ev: plain TCP, once its own reader runs (see "Writing"). */
    struct evbuffer *out = c->rd_ev ? c->pend : bufferevent_get_output(c->bev);
    if (c->rd_ev && !evbuffer_get_length(out))
        event_active(c->flush_ev, EV_WRITE, 0);
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
    struct pcall *p = rpc_pcall_take(c, m->hdr.xid);
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
        rpc_send_frame(c, KB_MSG_REPLY, in->hdr.xid, in->hdr.proc, -EOPNOTSUPP, NULL, 0, NULL);
        return;
    }
    rpc_msg_t *m = malloc(sizeof(*m));
    if (!m) {
        rpc_send_frame(c, KB_MSG_REPLY, in->hdr.xid, in->hdr.proc, -ENOMEM, NULL, 0, NULL);
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
            rpc_send_frame(c, KB_MSG_REPLY, m.hdr.xid, m.hdr.proc, err, NULL, 0, NULL);
        } else if (m.hdr.type == KB_MSG_REPLY) {
            struct pcall *p = rpc_pcall_take(c, m.hdr.xid);
            if (p)
                rpc_pcall_fail(p, err);
        }
    } else if (m.hdr.type == KB_MSG_PING) {
        /* Answered here, before any request behind it is looked at. */
        rpc_send_frame(c, KB_MSG_PONG, m.hdr.xid, 0, 0, NULL, 0, NULL);
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
    rpc_conn_down(c, KB_LOG_NONE, NULL);
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
    rpc_conn_hold(c);
    c->last_rx_ms = kb_now_ms();
    process_input(c);
    if (c->bev && !c->rd_ev)
        c->last_inlen = evbuffer_get_length(bufferevent_get_input(c->bev));
    rpc_conn_release(c);
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
    rpc_conn_hold(c);
    size_t budget = RD_BUDGET;
    while (c->rd_ev && budget) {
        ssize_t n;
        size_t want;
        if (c->rx == RX_BULK && evbuffer_get_length(c->in) == 0) {
            want = c->hdr.blen - c->rx_got;
            n = read(fd, c->rx_bulk->data + c->rx_got, want);
            if (n > 0) {
                c->rx_got += (size_t)n;
                c->rx_bulk->len = c->rx_got;
            }
        } else {
            want = RD_CHUNK;     /* at least: read_into may offer more room */
            n = read_into(c->in, fd, RD_CHUNK);
        }
        if (n > 0) {
            c->last_rx_ms = kb_now_ms();
            budget -= KB_MIN(budget, (size_t)n);
            process_input(c);
            /* A short read took all the socket had: the next read would say
             * EAGAIN (one syscall per message, on every call's request and
             * reply). What arrives meanwhile is reported again (level-
             * triggered), and so is an EOF. */
            if ((size_t)n < want)
                break;
            continue;
        }
        if (n == 0) {
            rpc_conn_down(c, KB_LOG_INFO, "closed by peer");
        } else if (errno == EINTR) {
            continue;
        } else if (errno != EAGAIN && errno != EWOULDBLOCK) {
            char why[128];
            snprintf(why, sizeof(why), "read: %s", strerror(errno));
            rpc_conn_down(c, c->state == CS_UP ? KB_LOG_WARN : KB_LOG_INFO, why);
        }
        break;
    }
    rpc_conn_release(c);
}

/* Plain TCP: take reading over from the bufferevent (which keeps writing). */
int rpc_own_reader(rpc_conn_t *c)
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

void rpc_set_sockopts(evutil_socket_t fd, bool server)
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
void rpc_drop_socket(rpc_conn_t *c)
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
    evbuffer_drain(c->pend, evbuffer_get_length(c->pend));   /* runs bulk_cleanup if queued */
    event_del(c->flush_ev);
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

/*
 * The socket is gone (error, EOF, timeout, protocol violation). Pending calls
 * fail with -ENOTCONN, then RPC_EV_DOWN is reported (client: when it had been
 * up, or when no reconnect follows; server: always, after which the transport
 * lets go of the connection). WHY, when set, is logged.
 */
void rpc_conn_down(rpc_conn_t *c, int level, const char *why)
{
    if (c->state == CS_CLOSED || c->state == CS_IDLE)
        return;
    rpc_conn_hold(c);
    bool was_up = c->state == CS_UP;
    if (why && (was_up || kb_ratelimit_ok(&c->connect_rl))) {
        if (c->server)
            kb_log(level, LOG_CTX, "connection %llu from %s: %s", (unsigned long long)c->id,
                   c->peer, why);
        else
            kb_log(level, LOG_CTX, "connection %llu to %s:%u: %s", (unsigned long long)c->id,
                   c->host, c->port, why);
    }
    rpc_drop_socket(c);
    c->state = c->server ? CS_CLOSED : CS_IDLE;
    rpc_fail_all(c, -ENOTCONN);
    if (c->server) {
        deliver_event(c, RPC_EV_DOWN);
        if (!c->owner_gone) {
            c->owner_gone = true;
            rpc_conn_release(c);
        }
    } else if (!c->owner_gone) {
        if (was_up || !c->reconnect)
            deliver_event(c, RPC_EV_DOWN);
        if (c->reconnect && !c->owner_gone && c->state == CS_IDLE && !evtimer_pending(c->retry_ev, NULL))
            rpc_schedule_retry(c);
    }
    rpc_conn_release(c);
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
    rpc_conn_hold(c);
    if (what & BEV_EVENT_CONNECTED) {
        if (!c->server && c->state == CS_CONNECTING) {
            evtimer_del(c->retry_ev);
            rpc_set_sockopts(bufferevent_getfd(bev), false);
            if (rpc_own_reader(c) < 0) {
                rpc_conn_down(c, KB_LOG_WARN, "out of memory");
                rpc_conn_release(c);
                return;
            }
            c->state = CS_UP;
            c->backoff_ms = c->backoff_min_ms;
            c->last_rx_ms = c->last_ping_ms = kb_now_ms();
            c->last_inlen = 0;
            rpc_arm_tick(c);
            kb_debug(LOG_CTX, "connection %llu up to %s:%u", (unsigned long long)c->id, c->host, c->port);
            deliver_event(c, RPC_EV_UP);
        }
    } else if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT)) {
        char buf[256];
        /* A peer hanging up is routine (clients unmount); the rest is not. */
        int level = c->state == CS_UP && !(what & BEV_EVENT_EOF) ? KB_LOG_WARN : KB_LOG_INFO;
        rpc_conn_down(c, level, event_reason(c, what, buf, sizeof(buf)));
    }
    rpc_conn_release(c);
}

struct bufferevent *rpc_bev_new(rpc_conn_t *c, evutil_socket_t fd, bool accepting)
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

bool rpc_conn_is_up(const rpc_conn_t *c)
{
    return c && c->state == CS_UP && c->bev;
}

int rpc_reply(rpc_conn_t *c, uint64_t xid, uint32_t proc, int32_t status,
              const void *payload, uint32_t plen, kb_buf_t *bulk)
{
    if (!rpc_conn_is_up(c))
        return -ENOTCONN;
    return rpc_send_frame(c, KB_MSG_REPLY, xid, proc, status, payload, plen, bulk);
}

/* ------------------------------------------------------------------ */
/* both                                                                 */

uint64_t rpc_conn_last_rx_ms(const rpc_conn_t *c)
{
    return c->last_rx_ms;
}

struct ssl_st *rpc_conn_ssl(const rpc_conn_t *c)
{
    return c && c->tls && c->bev ? bufferevent_openssl_get_ssl(c->bev) : NULL;
}

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
    rpc_conn_hold(c);
    c->owner_gone = true;          /* from here on no event reaches the owner */
    c->ev_fn = NULL;
    c->req_fn = NULL;
    rpc_drop_socket(c);
    c->state = CS_CLOSED;
    rpc_fail_all(c, -ENOTCONN);
    rpc_conn_release(c);               /* the owner's reference */
    rpc_conn_release(c);               /* ours: frees now unless a callback holds c */
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
    return c->bev ? evbuffer_get_length(bufferevent_get_output(c->bev)) + evbuffer_get_length(c->pend)
                  : 0;
}
