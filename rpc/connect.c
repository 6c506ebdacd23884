/*
 * connect.c — the client side of a connection (rpc/conn.h,
 * conn_internal.h): connecting, reconnecting with backoff, liveness.
 *
 * What it promises: with `reconnect` set a client connection keeps trying
 * (backoff_min_ms, doubling up to backoff_max_ms) until rpc_conn_close; a
 * connect that is not done within connect_timeout_ms has failed; a peer
 * from which nothing at all arrived for ping_timeout_ms is declared dead
 * (rpc_conn_down: pending calls fail with -ENOTCONN, then RPC_EV_DOWN).
 *
 * Name resolution is getaddrinfo on the loop thread: instant for numeric
 * addresses and /etc/hosts, but a dead DNS server would stall the loop.
 *
 * Liveness (client side): a tick every min(ping_interval, ping_timeout/20)
 * sends a PING when ping_interval has passed and declares the peer dead when
 * no byte at all arrived for ping_timeout. The tick is what bounds how late
 * past ping_timeout a frozen brick is noticed — a writer's worst stall is
 * ping_timeout + one tick (5.25 s at the default 5 s; it was ping_timeout/4,
 * which let a stall reach 6.2 s); four timer wake-ups a second per
 * connection cost nothing measurable. Bytes that do not yet make a whole
 * frame count too (every read stamps last_rx_ms; for TLS the tick sees the
 * input buffer grow), so a 4 MiB reply on a slow link does not look like
 * silence.
 */
#include "rpc/conn_internal.h"
#include "lib/common.h"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <netdb.h>
#include <stdio.h>
#include <sys/socket.h>

static void start_connect(rpc_conn_t *c);

void rpc_schedule_retry(rpc_conn_t *c)
{
    uint32_t ms = c->backoff_ms;
    c->backoff_ms = KB_MIN(c->backoff_ms * 2, c->backoff_max_ms);
    struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
    evtimer_add(c->retry_ev, &tv);
}

static uint32_t tick_period(const rpc_conn_t *c)
{
    uint32_t p = KB_MIN(c->ping_interval_ms, c->ping_timeout_ms / 20);
    return KB_MAX(p, 10u);
}

void rpc_arm_tick(rpc_conn_t *c)
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
    rpc_conn_hold(c);
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
        rpc_conn_down(c, KB_LOG_WARN, why);
    } else if (now - c->last_ping_ms >= c->ping_interval_ms) {
        c->last_ping_ms = now;
        rpc_send_frame(c, KB_MSG_PING, ++c->ping_xid, 0, 0, NULL, 0, NULL);
    }
    rpc_conn_release(c);
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
    rpc_conn_t *c = arg;
    rpc_conn_hold(c);
    if (c->state == CS_CONNECTING) {
        char why[64];
        snprintf(why, sizeof(why), "connect timed out after %u ms", c->connect_timeout_ms);
        rpc_conn_down(c, KB_LOG_INFO, why);
    } else if (c->state == CS_IDLE && !c->owner_gone) {
        start_connect(c);
    }
    rpc_conn_release(c);
}

rpc_conn_t *rpc_client_new(struct event_base *base, const rpc_client_opts_t *o,
                           rpc_event_fn ev, void *ev_arg)
{
    if (!o || !o->host)
        return NULL;
    rpc_conn_t *c = rpc_conn_alloc(base, false);
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
        rpc_conn_free(c);
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
        c->bev = rpc_bev_new(c, -1, false);
        rc = c->bev ? 0 : -ENOMEM;
        why = "out of memory";
    }
    if (rc == 0 && bufferevent_socket_connect(c->bev, (struct sockaddr *)&ss, (int)sl) < 0) {
        rc = errno ? -errno : -ECONNREFUSED;
        why = "connect failed";
    }
    if (rc == 0) {
        c->state = CS_CONNECTING;
        /* Plain TCP reads with its own event once connected (rpc_own_reader). */
        bufferevent_enable(c->bev, c->tls ? EV_READ | EV_WRITE : EV_WRITE);
        uint32_t ms = c->connect_timeout_ms;
        struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
        evtimer_add(c->retry_ev, &tv);
        return 0;
    }
    rpc_drop_socket(c);
    if (kb_ratelimit_ok(&c->connect_rl))
        kb_info(LOG_CTX, "connect to %s:%u: %s", c->host, c->port, why);
    if (!c->reconnect)
        return rc;
    rpc_schedule_retry(c);
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

void rpc_conn_set_ping_timeout(rpc_conn_t *c, uint32_t ms)
{
    if (!c || c->server || !ms)
        return;
    c->ping_timeout_ms = ms;
    c->ping_interval_ms = KB_MIN(c->ping_interval_ms, KB_MAX(ms / 2, 10u));
    if (c->state == CS_UP)
        rpc_arm_tick(c);
}
