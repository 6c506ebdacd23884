/*
 * rpc_test.c — rpc/wire and rpc/conn over real loopback TCP, in process.
 *
 * Client and server share one event_base driven by RUN_UNTIL (a 1 ms
 * heartbeat keeps EVLOOP_ONCE returning). Covered: header codec, pipelined
 * calls answered out of order, bulk integrity both ways, garbage and
 * oversized frames closing only their connection, a silent server declared
 * dead after ping_timeout and reconnection once a server is back, per-call
 * timeout while PINGs keep the link up, close from inside a callback, and
 * mutual TLS (accepted with certs, refused without).
 */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <openssl/sha.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lib/common.h"
#include "lib/log.h"
#include "rpc/conn.h"
#include "rpc/tls.h"
#include "rpc/wire.h"

static struct event_base *base;
static struct event *heartbeat;

static void noop_cb(evutil_socket_t fd, short what, void *arg) {}

static void setup(void)
{
    kb_log_level = getenv("KB_TEST_LOG") ? KB_LOG_DEBUG : KB_LOG_ERROR;
    base = event_base_new();
    heartbeat = event_new(base, -1, EV_PERSIST, noop_cb, NULL);
    struct timeval tv = { 0, 1000 };
    event_add(heartbeat, &tv);
}

static void teardown(void)
{
    /* Let deferred frees run, then drop the base. */
    for (int i = 0; i < 5; i++)
        event_base_loop(base, EVLOOP_NONBLOCK);
    event_free(heartbeat);
    event_base_free(base);
}

#define RUN_UNTIL(cond, ms) ({                                        \
    uint64_t end_ = kb_now_ms() + (ms);                               \
    while (!(cond) && kb_now_ms() < end_)                             \
        event_base_loop(base, EVLOOP_ONCE);                           \
    (cond); })

/* ---------------- a test server ---------------- */

enum srv_mode { SRV_ECHO, SRV_HOLD };

struct srv {
    rpc_listener_t *l;
    enum srv_mode mode;
    int accepted, downs, requests;
    rpc_conn_t *last;
    rpc_conn_t *live[32];             /* accepted and not yet down */
    rpc_conn_t *held_conn[256];
    rpc_msg_t *held[256];
    int nheld;
};

/* Echo: payload "R<proc>:" + request payload, bulk echoed by reference,
 * status = -(request count) so the client can see it is the server's. */
static void echo(rpc_conn_t *c, rpc_msg_t *m)
{
    char out[4200];
    int n = snprintf(out, sizeof(out), "R%u:", m->hdr.proc);
    uint32_t plen = KB_MIN(m->hdr.plen, (uint32_t)(sizeof(out) - (size_t)n));
    memcpy(out + n, m->payload, plen);
    cr_assert_eq(rpc_reply(c, m->hdr.xid, m->hdr.proc, 0, out, (uint32_t)n + plen, m->bulk), 0);
}

static void srv_request(void *arg, rpc_conn_t *c, rpc_msg_t *m)
{
    struct srv *s = arg;
    s->requests++;
    cr_assert_eq(m->payload[m->hdr.plen], '\0', "payload is NUL-terminated");
    if (m->bulk)
        cr_assert_eq((uintptr_t)m->bulk->data % 4096, 0, "received bulk is aligned");
    if (s->mode == SRV_HOLD && s->nheld < 256) {
        s->held_conn[s->nheld] = c;
        s->held[s->nheld++] = m;
        return;
    }
    echo(c, m);
    rpc_msg_free(m);
    free(m);
}

static void srv_event(void *arg, rpc_conn_t *c, int ev)
{
    struct srv *s = arg;
    if (ev == RPC_EV_DOWN) {
        s->downs++;
        for (int i = 0; i < s->nheld; i++)     /* its held requests are ours to free */
            if (s->held_conn[i] == c)
                s->held_conn[i] = NULL;
        if (s->last == c)
            s->last = NULL;
        for (int i = 0; i < 32; i++)
            if (s->live[i] == c)
                s->live[i] = NULL;
    }
}

static int srv_accept(void *arg, rpc_conn_t *c)
{
    struct srv *s = arg;
    s->accepted++;
    s->last = c;
    for (int i = 0; i < 32; i++) {
        if (!s->live[i]) {
            s->live[i] = c;
            break;
        }
    }
    rpc_conn_set_handlers(c, srv_request, srv_event, s);
    return 0;
}

static void srv_start_on(struct srv *s, const char *host, uint16_t port, SSL_CTX *tls)
{
    char err[256] = "";
    s->l = rpc_listen(base, host, port, tls, srv_accept, s, err, sizeof(err));
    cr_assert_not_null(s->l, "listen: %s", err);
    cr_assert_neq(rpc_listener_port(s->l), 0);
}

static void srv_stop(struct srv *s)
{
    rpc_listener_free(s->l);
    s->l = NULL;
    for (int i = 0; i < s->nheld; i++) {
        rpc_msg_free(s->held[i]);
        free(s->held[i]);
    }
    s->nheld = 0;
    for (int i = 0; i < 32; i++)       /* no callback may reach s after this */
        if (s->live[i])
            rpc_conn_close(s->live[i]);
}

/* ---------------- a test client ---------------- */

struct cli {
    rpc_conn_t *c;
    int ups, downs;
};

static void cli_event(void *arg, rpc_conn_t *c, int ev)
{
    struct cli *k = arg;
    if (ev == RPC_EV_UP)
        k->ups++;
    else if (ev == RPC_EV_DOWN)
        k->downs++;
}

static void cli_open(struct cli *k, uint16_t port, rpc_client_opts_t *o)
{
    rpc_client_opts_t dflt = { .host = "127.0.0.1" };
    if (!o)
        o = &dflt;
    o->port = port;
    if (!o->host)
        o->host = "127.0.0.1";
    k->c = rpc_client_new(base, o, cli_event, k);
    cr_assert_not_null(k->c);
    cr_assert_eq(rpc_client_connect(k->c), 0);
}

/* A call's outcome, recorded once. */
struct res {
    int calls;          /* times the reply fn ran: must end at exactly 1 */
    int status;
    char payload[4200];
    uint32_t plen;
    kb_buf_t *bulk;     /* a reference taken from the borrowed reply */
};

static void on_reply(void *cookie, int status, const rpc_msg_t *m)
{
    struct res *r = cookie;
    r->calls++;
    r->status = status;
    if (m) {
        r->plen = m->hdr.plen;
        memcpy(r->payload, m->payload, KB_MIN(m->hdr.plen, sizeof(r->payload)));
        r->bulk = kb_buf_ref(m->bulk);
    }
}

/* ---------------- wire ---------------- */

Test(wire, header_round_trip_and_checks)
{
    kb_wire_hdr_t h = { KB_WIRE_MAGIC, KB_WIRE_VERSION, KB_MSG_REPLY, 0, 0x1122334455667788ull,
                        1002, -EIO, 17, 4096 }, g;
    uint8_t b[KB_WIRE_HDR_LEN];
    kb_wire_hdr_encode(b, &h);
    cr_assert_eq(memcmp(b, "KMBR", 4), 0, "magic reads KMBR on the wire");
    cr_assert_eq(b[4], KB_WIRE_VERSION);
    cr_assert_eq(b[8], 0x88, "xid little-endian");
    const char *why;
    cr_assert_eq(kb_wire_hdr_decode(b, &g, &why), 0);
    cr_assert_eq(g.xid, h.xid);
    cr_assert_eq(g.proc, 1002);
    cr_assert_eq(g.status, -EIO);
    cr_assert_eq(g.plen, 17);
    cr_assert_eq(g.blen, 4096);
    cr_assert_eq(g.type, KB_MSG_REPLY);

    uint8_t bad[KB_WIRE_HDR_LEN];
    memcpy(bad, b, sizeof(b));
    bad[0] = 'X';
    cr_assert_eq(kb_wire_hdr_decode(bad, &g, &why), -EBADMSG);
    cr_assert_not_null(why);
    memcpy(bad, b, sizeof(b));
    bad[4] = 9;
    cr_assert_eq(kb_wire_hdr_decode(bad, &g, &why), -EBADMSG);
    memcpy(bad, b, sizeof(b));
    bad[5] = 0;
    cr_assert_eq(kb_wire_hdr_decode(bad, &g, &why), -EBADMSG);
    bad[5] = 5;
    cr_assert_eq(kb_wire_hdr_decode(bad, &g, &why), -EBADMSG);
    h.plen = KB_WIRE_PLEN_MAX + 1;
    kb_wire_hdr_encode(bad, &h);
    cr_assert_eq(kb_wire_hdr_decode(bad, &g, &why), -EMSGSIZE);
    h.plen = KB_WIRE_PLEN_MAX;
    h.blen = KB_WIRE_BLEN_MAX + 1;
    kb_wire_hdr_encode(bad, &h);
    cr_assert_eq(kb_wire_hdr_decode(bad, &g, &why), -EMSGSIZE);
    h.blen = KB_WIRE_BLEN_MAX;
    kb_wire_hdr_encode(bad, &h);
    cr_assert_eq(kb_wire_hdr_decode(bad, &g, &why), 0, "limits are inclusive");
}

/* ---------------- basic calls ---------------- */

Test(rpc, not_connected_fails_at_once, .init = setup, .fini = teardown)
{
    rpc_client_opts_t o = { .host = "127.0.0.1", .port = 1 };
    rpc_conn_t *c = rpc_client_new(base, &o, NULL, NULL);
    struct res r = { 0 };
    rpc_call(c, 7, "x", 1, NULL, on_reply, &r);
    cr_assert_eq(r.calls, 1, "reply fn ran before rpc_call returned");
    cr_assert_eq(r.status, -ENOTCONN);
    cr_assert_not(rpc_conn_is_up(c));
    rpc_conn_close(c);
}

Test(rpc, echo_and_peer, .init = setup, .fini = teardown)
{
    struct srv s = { 0 };
    srv_start_on(&s, "127.0.0.1", 0, NULL);
    struct cli k = { 0 };
    cli_open(&k, rpc_listener_port(s.l), NULL);
    cr_assert(RUN_UNTIL(k.ups == 1, 1000));
    cr_assert(rpc_conn_is_up(k.c));
    struct res r = { 0 };
    rpc_call(k.c, 42, "hello", 5, NULL, on_reply, &r);
    cr_assert(RUN_UNTIL(r.calls == 1, 1000));
    cr_assert_eq(r.status, 0);
    cr_assert_eq(r.plen, 9);
    cr_assert_arr_eq(r.payload, "R42:hello", 9);
    cr_assert_null(r.bulk);
    cr_assert_str_eq(rpc_conn_peer(s.last), "127.0.0.1");
    cr_assert_str_eq(rpc_conn_peer(k.c), "127.0.0.1");
    cr_assert_neq(rpc_conn_id(s.last), rpc_conn_id(k.c));
    cr_assert(rpc_conn_same_host(k.c), "loopback is this host");
    cr_assert(rpc_conn_same_host(s.last));
    int x;
    rpc_conn_set_user(s.last, &x);
    cr_assert_eq(rpc_conn_user(s.last), &x);

    /* The server sees the client leave. */
    rpc_conn_close(k.c);
    cr_assert(RUN_UNTIL(s.downs == 1, 1000));
    cr_assert_eq(k.downs, 0, "no DOWN after an explicit close");
    srv_stop(&s);
}

static struct sockaddr_storage sa(const char *ip)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    if (strchr(ip, ':')) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
        s6->sin6_family = AF_INET6;
        cr_assert_eq(inet_pton(AF_INET6, ip, &s6->sin6_addr), 1, "%s", ip);
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
        s4->sin_family = AF_INET;
        cr_assert_eq(inet_pton(AF_INET, ip, &s4->sin_addr), 1, "%s", ip);
    }
    return ss;
}

/* Which connections never leave this host: a brick there is "local" to
 * replicate (cluster.choose-local). */
Test(rpc, same_host_by_address)
{
    static const struct { const char *me, *peer; bool same; } rows[] = {
        { "127.0.0.1", "127.0.0.1", true },
        { "127.0.0.1", "127.0.0.2", true },       /* all of 127/8 is loopback */
        { "::1", "::1", true },
        { "::ffff:127.0.0.1", "127.0.0.1", true },
        { "10.0.0.1", "10.0.0.1", true },         /* to one of our own addresses */
        { "fd00::5", "fd00::5", true },
        { "10.0.0.1", "10.0.0.2", false },        /* another node */
        { "10.0.0.1", "127.0.0.1", false },
        { "fd00::5", "fd00::6", false },
        { "::ffff:10.0.0.1", "10.0.0.1", true },
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct sockaddr_storage a = sa(rows[i].me), b = sa(rows[i].peer);
        cr_assert_eq(rpc_addr_same_host(&a, &b), rows[i].same, "%s -> %s", rows[i].me, rows[i].peer);
    }
    struct sockaddr_storage u = { .ss_family = AF_UNIX }, x = sa("10.0.0.2");
    cr_assert(rpc_addr_same_host(&u, &x), "a local socket");
    cr_assert_not(rpc_conn_same_host(NULL));
}

Test(rpc, pipelined_out_of_order, .init = setup, .fini = teardown)
{
    enum { N = 64 };
    struct srv s = { .mode = SRV_HOLD };
    srv_start_on(&s, NULL, 0, NULL);
    struct cli k = { 0 };
    cli_open(&k, rpc_listener_port(s.l), NULL);
    cr_assert(RUN_UNTIL(k.ups == 1, 1000));
    static struct res r[N];
    memset(r, 0, sizeof(r));
    for (int i = 0; i < N; i++) {
        char p[16];
        int n = snprintf(p, sizeof(p), "call%d", i);
        rpc_call(k.c, (uint32_t)i, p, (uint32_t)n, NULL, on_reply, &r[i]);
    }
    cr_assert(RUN_UNTIL(s.nheld == N, 1000), "all %d calls arrived before any reply", N);
    /* Answer in a scrambled order: odd ones backwards, then even ones. */
    for (int pass = 0; pass < 2; pass++) {
        for (int i = N - 1; i >= 0; i--) {
            if ((i & 1) == pass)
                continue;
            echo(s.held_conn[i], s.held[i]);
        }
    }
    cr_assert(RUN_UNTIL(({ int done = 0; for (int i = 0; i < N; i++) done += r[i].calls; done == N; }), 2000));
    for (int i = 0; i < N; i++) {
        char want[32];
        int n = snprintf(want, sizeof(want), "R%d:call%d", i, i);
        cr_assert_eq(r[i].calls, 1);
        cr_assert_eq(r[i].status, 0);
        cr_assert_eq(r[i].plen, (uint32_t)n);
        cr_assert_arr_eq(r[i].payload, want, (size_t)n, "reply %d matched by xid", i);
    }
    rpc_conn_close(k.c);
    srv_stop(&s);
}

static void sha(const kb_buf_t *b, uint8_t out[32])
{
    SHA256((const unsigned char *)b->data, b->len, out);
}

Test(rpc, bulk_integrity_both_ways, .init = setup, .fini = teardown)
{
    struct srv s = { 0 };
    srv_start_on(&s, "127.0.0.1", 0, NULL);
    struct cli k = { 0 };
    cli_open(&k, rpc_listener_port(s.l), NULL);
    cr_assert(RUN_UNTIL(k.ups == 1, 1000));
    size_t sizes[] = { 1, 4095, 65537, 1 << 20, KB_WIRE_BLEN_MAX };
    enum { NS = KB_ARRAY_SIZE(sizes) };
    kb_buf_t *out[NS];
    struct res r[NS];
    memset(r, 0, sizeof(r));
    unsigned seed = 7;
    for (size_t i = 0; i < NS; i++) {
        out[i] = kb_buf_new(sizes[i]);
        for (size_t j = 0; j < sizes[i]; j++)
            out[i]->data[j] = (char)rand_r(&seed);
        out[i]->len = sizes[i];
        rpc_call(k.c, 9, "w", 1, out[i], on_reply, &r[i]);
        cr_assert_eq(out[i]->refs, 2, "bulk referenced by the output, not copied");
    }
    cr_assert_gt(rpc_conn_outq(k.c), sizes[NS - 1], "queued by reference");
    cr_assert(RUN_UNTIL(({ int d = 0; for (size_t i = 0; i < NS; i++) d += r[i].calls; d == NS; }), 5000));
    for (size_t i = 0; i < NS; i++) {
        uint8_t a[32], b[32];
        cr_assert_eq(r[i].status, 0);
        cr_assert_not_null(r[i].bulk);
        cr_assert_eq(r[i].bulk->len, sizes[i]);
        cr_assert_eq((uintptr_t)r[i].bulk->data % 4096, 0);
        sha(out[i], a);
        sha(r[i].bulk, b);
        cr_assert_arr_eq(a, b, 32, "bulk %zu intact", sizes[i]);
        cr_assert_eq(out[i]->refs, 1, "the transport released its reference");
        kb_buf_unref(r[i].bulk);
        kb_buf_unref(out[i]);
    }
    /* Over the limit: refused locally, nothing sent. */
    kb_buf_t *big = kb_buf_new(KB_WIRE_BLEN_MAX + 1);
    big->len = KB_WIRE_BLEN_MAX + 1;
    struct res rb = { 0 };
    rpc_call(k.c, 9, NULL, 0, big, on_reply, &rb);
    cr_assert_eq(rb.calls, 1);
    cr_assert_eq(rb.status, -EMSGSIZE);
    cr_assert_eq(big->refs, 1);
    kb_buf_unref(big);
    cr_assert(rpc_conn_is_up(k.c));
    rpc_conn_close(k.c);
    srv_stop(&s);
}

/* ---------------- hostile input ---------------- */

static int raw_connect(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    return fd;
}

/* Drive the loop until FD reads EOF (or an error): the server closed it. */
static bool closed_by_server(int fd, int ms)
{
    uint64_t end = kb_now_ms() + (uint64_t)ms;
    while (kb_now_ms() < end) {
        event_base_loop(base, EVLOOP_ONCE);
        struct pollfd p = { fd, POLLIN, 0 };
        if (poll(&p, 1, 0) == 1) {
            char b[64];
            ssize_t n = recv(fd, b, sizeof(b), MSG_DONTWAIT);
            if (n <= 0)
                return true;
        }
    }
    return false;
}

Test(rpc, garbage_closes_only_that_connection, .init = setup, .fini = teardown)
{
    struct srv s = { 0 };
    srv_start_on(&s, "127.0.0.1", 0, NULL);
    uint16_t port = rpc_listener_port(s.l);
    struct cli k = { 0 };
    cli_open(&k, port, NULL);
    cr_assert(RUN_UNTIL(k.ups == 1 && s.accepted == 1, 1000));

    int fd = raw_connect(port);
    char junk[64];
    memset(junk, 'G', sizeof(junk));
    cr_assert_eq(send(fd, junk, sizeof(junk), 0), (ssize_t)sizeof(junk));
    cr_assert(closed_by_server(fd, 1000), "garbage connection closed");
    close(fd);
    cr_assert_eq(s.requests, 0);
    cr_assert_eq(s.downs, 1);

    struct res r = { 0 };
    rpc_call(k.c, 1, "still", 5, NULL, on_reply, &r);
    cr_assert(RUN_UNTIL(r.calls == 1, 1000));
    cr_assert_eq(r.status, 0, "the other client is still served");
    cr_assert_eq(k.downs, 0);
    rpc_conn_close(k.c);
    srv_stop(&s);
}

Test(rpc, oversized_plen_closed_before_body, .init = setup, .fini = teardown)
{
    struct srv s = { 0 };
    srv_start_on(&s, "127.0.0.1", 0, NULL);
    int fd = raw_connect(rpc_listener_port(s.l));
    kb_wire_hdr_t h = { .magic = KB_WIRE_MAGIC, .version = KB_WIRE_VERSION, .type = KB_MSG_CALL,
                        .xid = 1, .proc = 1, .plen = 0xfffffff0u };
    uint8_t b[KB_WIRE_HDR_LEN];
    kb_wire_hdr_encode(b, &h);
    cr_assert_eq(send(fd, b, sizeof(b), 0), (ssize_t)sizeof(b));
    /* Only the header was sent: closing now proves the length was judged
     * from the header, before waiting for (or allocating) any body. */
    cr_assert(closed_by_server(fd, 1000));
    close(fd);
    cr_assert_eq(s.requests, 0);

    fd = raw_connect(rpc_listener_port(s.l));
    h.plen = 0;
    h.blen = KB_WIRE_BLEN_MAX + 1;
    kb_wire_hdr_encode(b, &h);
    send(fd, b, sizeof(b), 0);
    cr_assert(closed_by_server(fd, 1000));
    close(fd);
    cr_assert_eq(s.requests, 0);
    srv_stop(&s);
}

Test(rpc, raw_ping_answered, .init = setup, .fini = teardown)
{
    struct srv s = { .mode = SRV_HOLD };
    srv_start_on(&s, "127.0.0.1", 0, NULL);
    int fd = raw_connect(rpc_listener_port(s.l));
    kb_wire_hdr_t h = { .magic = KB_WIRE_MAGIC, .version = KB_WIRE_VERSION, .type = KB_MSG_PING, .xid = 77 };
    uint8_t b[KB_WIRE_HDR_LEN];
    kb_wire_hdr_encode(b, &h);
    send(fd, b, sizeof(b), 0);
    uint8_t got[KB_WIRE_HDR_LEN];
    size_t n = 0;
    uint64_t end = kb_now_ms() + 1000;
    while (n < sizeof(got) && kb_now_ms() < end) {
        event_base_loop(base, EVLOOP_ONCE);
        ssize_t k = recv(fd, got + n, sizeof(got) - n, MSG_DONTWAIT);
        if (k > 0)
            n += (size_t)k;
    }
    cr_assert_eq(n, sizeof(got));
    kb_wire_hdr_t g;
    cr_assert_eq(kb_wire_hdr_decode(got, &g, NULL), 0);
    cr_assert_eq(g.type, KB_MSG_PONG);
    cr_assert_eq(g.xid, 77);
    close(fd);
    srv_stop(&s);
}

/* ---------------- liveness ---------------- */

/* A "server" that the kernel accepts for but that never reads or answers:
 * exactly what a SIGSTOPped or wedged kembard looks like from outside. */
static int silent_listener(uint16_t *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(*port) };
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    cr_assert_eq(listen(fd, 8), 0);
    socklen_t l = sizeof(a);
    getsockname(fd, (struct sockaddr *)&a, &l);
    *port = ntohs(a.sin_port);
    return fd;
}

Test(rpc, silent_server_declared_dead_then_reconnect, .init = setup, .fini = teardown)
{
    uint16_t port = 0;
    int lfd = silent_listener(&port);
    struct cli k = { 0 };
    rpc_client_opts_t o = { .reconnect = true, .ping_interval_ms = 50, .ping_timeout_ms = 300,
                            .backoff_min_ms = 50, .backoff_max_ms = 200 };
    cli_open(&k, port, &o);
    cr_assert(RUN_UNTIL(k.ups == 1, 1000));
    struct res r1 = { 0 }, r2 = { 0 };
    uint64_t t0 = kb_now_ms();
    rpc_call(k.c, 1, "a", 1, NULL, on_reply, &r1);
    rpc_call(k.c, 2, "b", 1, NULL, on_reply, &r2);
    cr_assert(RUN_UNTIL(k.downs == 1, 1500), "declared dead");
    uint64_t took = kb_now_ms() - t0;
    cr_assert_geq(took, 250, "not before the ping timeout (%llu ms)", (unsigned long long)took);
    cr_assert_leq(took, 700, "soon after the ping timeout (%llu ms)", (unsigned long long)took);
    cr_assert_eq(r1.calls, 1);
    cr_assert_eq(r2.calls, 1);
    cr_assert_eq(r1.status, -ENOTCONN);
    cr_assert_eq(r2.status, -ENOTCONN);
    cr_assert_not(rpc_conn_is_up(k.c));

    /* The real server comes back on the same port. */
    close(lfd);
    struct srv s = { 0 };
    srv_start_on(&s, "127.0.0.1", port, NULL);
    cr_assert(RUN_UNTIL(k.ups == 2, 1500), "reconnected");
    struct res r3 = { 0 };
    rpc_call(k.c, 3, "c", 1, NULL, on_reply, &r3);
    cr_assert(RUN_UNTIL(r3.calls == 1, 1000));
    cr_assert_eq(r3.status, 0);
    cr_assert_eq(r1.calls + r2.calls, 2, "exactly once");
    rpc_conn_close(k.c);
    srv_stop(&s);
}

Test(rpc, call_timeout_while_pings_keep_it_up, .init = setup, .fini = teardown)
{
    struct srv s = { .mode = SRV_HOLD };
    srv_start_on(&s, "127.0.0.1", 0, NULL);
    struct cli k = { 0 };
    rpc_client_opts_t o = { .ping_interval_ms = 50, .ping_timeout_ms = 200, .call_timeout_ms = 500 };
    cli_open(&k, rpc_listener_port(s.l), &o);
    cr_assert(RUN_UNTIL(k.ups == 1, 1000));
    struct res r = { 0 };
    uint64_t t0 = kb_now_ms();
    rpc_call(k.c, 5, "slow", 4, NULL, on_reply, &r);
    cr_assert(RUN_UNTIL(r.calls == 1, 1500));
    uint64_t took = kb_now_ms() - t0;
    cr_assert_eq(r.status, -ETIMEDOUT);
    cr_assert_geq(took, 480);
    cr_assert_leq(took, 900);
    cr_assert(rpc_conn_is_up(k.c), "PINGs answered: the link outlived 2.5 ping timeouts");
    cr_assert_eq(k.downs, 0);
    /* A late reply is dropped; the callback does not run again. */
    cr_assert_eq(s.nheld, 1);
    echo(s.held_conn[0], s.held[0]);
    struct res r2 = { 0 };
    rpc_call(k.c, 6, "next", 4, NULL, on_reply, &r2);
    cr_assert(RUN_UNTIL(s.nheld == 2, 1000));
    echo(s.held_conn[1], s.held[1]);
    cr_assert(RUN_UNTIL(r2.calls == 1, 1000));
    cr_assert_eq(r2.status, 0);
    cr_assert_eq(r.calls, 1);
    rpc_conn_close(k.c);
    srv_stop(&s);
}

Test(rpc, connect_refused_without_reconnect_reports_down, .init = setup, .fini = teardown)
{
    uint16_t port = 0;
    int lfd = silent_listener(&port);
    close(lfd);                       /* nobody listens there now */
    struct cli k = { 0 };
    rpc_client_opts_t o = { .reconnect = false };
    cli_open(&k, port, &o);
    cr_assert(RUN_UNTIL(k.downs == 1, 1000));
    cr_assert_eq(k.ups, 0);
    rpc_conn_close(k.c);
}

Test(rpc, connect_timeout, .init = setup, .fini = teardown)
{
    /* A listener whose accept queue is full drops SYNs: connect hangs. */
    uint16_t port = 0;
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET };
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    cr_assert_eq(bind(lfd, (struct sockaddr *)&a, sizeof(a)), 0);
    cr_assert_eq(listen(lfd, 0), 0);
    socklen_t l = sizeof(a);
    getsockname(lfd, (struct sockaddr *)&a, &l);
    port = ntohs(a.sin_port);
    int fill[8], nfill = 0;
    for (; nfill < 8; nfill++) {
        fill[nfill] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        connect(fill[nfill], (struct sockaddr *)&a, sizeof(a));
        struct pollfd p = { fill[nfill], POLLOUT, 0 };
        if (poll(&p, 1, 100) == 0) {      /* this one hangs: the queue is full */
            nfill++;
            break;
        }
    }
    struct cli k = { 0 };
    rpc_client_opts_t o = { .reconnect = false, .connect_timeout_ms = 200 };
    uint64_t t0 = kb_now_ms();
    cli_open(&k, port, &o);
    cr_assert(RUN_UNTIL(k.downs == 1, 1500));
    uint64_t took = kb_now_ms() - t0;
    cr_assert_eq(k.ups, 0);
    cr_assert_geq(took, 180);
    cr_assert_leq(took, 600, "gave up after the connect timeout (%llu ms)", (unsigned long long)took);
    rpc_conn_close(k.c);
    for (int i = 0; i < nfill; i++)
        close(fill[i]);
    close(lfd);
}

/* ---------------- re-entrancy ---------------- */

struct closer { rpc_conn_t *c; int calls; int status; };

static void close_in_reply(void *cookie, int status, const rpc_msg_t *m)
{
    struct closer *x = cookie;
    x->calls++;
    x->status = status;
    rpc_conn_close(x->c);
    rpc_conn_close(x->c);         /* twice: harmless */
}

Test(rpc, close_from_inside_a_reply, .init = setup, .fini = teardown)
{
    struct srv s = { .mode = SRV_HOLD };
    srv_start_on(&s, "127.0.0.1", 0, NULL);
    struct cli k = { 0 };
    cli_open(&k, rpc_listener_port(s.l), NULL);
    cr_assert(RUN_UNTIL(k.ups == 1, 1000));
    struct closer x = { .c = k.c };
    struct res others[3] = { 0 };
    rpc_call(k.c, 1, "first", 5, NULL, close_in_reply, &x);
    for (int i = 0; i < 3; i++)
        rpc_call(k.c, 2, "more", 4, NULL, on_reply, &others[i]);
    cr_assert(RUN_UNTIL(s.nheld == 4, 1000));
    /* Reply to the first and, in the same burst, to another one. */
    echo(s.held_conn[0], s.held[0]);
    echo(s.held_conn[1], s.held[1]);
    cr_assert(RUN_UNTIL(x.calls == 1, 1000));
    cr_assert_eq(x.status, 0);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(others[i].calls, 1, "call %d completed once", i);
        cr_assert_eq(others[i].status, -ENOTCONN);
    }
    cr_assert(RUN_UNTIL(s.downs == 1, 1000));
    srv_stop(&s);
}

/* Both ends can call: the server asks the client something. */
static void client_side_request(void *arg, rpc_conn_t *c, rpc_msg_t *m)
{
    (*(int *)arg)++;
    rpc_reply(c, m->hdr.xid, m->hdr.proc, -EROFS, "no", 2, NULL);
    rpc_msg_free(m);
    free(m);
}

Test(rpc, server_calls_client, .init = setup, .fini = teardown)
{
    struct srv s = { 0 };
    srv_start_on(&s, "127.0.0.1", 0, NULL);
    struct cli k = { 0 };
    cli_open(&k, rpc_listener_port(s.l), NULL);
    cr_assert(RUN_UNTIL(k.ups == 1 && s.last, 1000));
    int asked = 0;
    rpc_conn_set_handlers(k.c, client_side_request, cli_event, &k);
    rpc_conn_set_handlers(k.c, client_side_request, NULL, &asked);
    struct res r = { 0 };
    rpc_call(s.last, 77, "q", 1, NULL, on_reply, &r);
    cr_assert(RUN_UNTIL(r.calls == 1, 1000));
    cr_assert_eq(asked, 1);
    cr_assert_eq(r.status, -EROFS);
    cr_assert_arr_eq(r.payload, "no", 2);
    rpc_conn_close(k.c);
    srv_stop(&s);
}

static int refuse_accept(void *arg, rpc_conn_t *c)
{
    (*(int *)arg)++;
    return -EACCES;
}

Test(rpc, accept_refused, .init = setup, .fini = teardown)
{
    int n = 0;
    char err[128];
    rpc_listener_t *l = rpc_listen(base, "127.0.0.1", 0, NULL, refuse_accept, &n, err, sizeof(err));
    cr_assert_not_null(l);
    struct cli k = { 0 };
    rpc_client_opts_t o = { .reconnect = false };
    cli_open(&k, rpc_listener_port(l), &o);
    cr_assert(RUN_UNTIL(n == 1 && k.downs == 1, 1000));
    rpc_conn_close(k.c);
    rpc_listener_free(l);
}

Test(rpc, listen_errors_and_ipv6, .init = setup, .fini = teardown)
{
    struct srv s = { 0 };
    srv_start_on(&s, "0.0.0.0", 0, NULL);
    uint16_t port = rpc_listener_port(s.l);
    char err[256] = "";
    rpc_listener_t *l2 = rpc_listen(base, "0.0.0.0", port, NULL, srv_accept, &s, err, sizeof(err));
    cr_assert_null(l2);
    cr_assert_not_null(strstr(err, "address already in use"), "%s", err);
    srv_stop(&s);

    struct srv s6 = { 0 };
    char e6[256];
    s6.l = rpc_listen(base, "::", 0, NULL, srv_accept, &s6, e6, sizeof(e6));
    if (!s6.l)
        return;                          /* no IPv6 on this host */
    struct cli k = { 0 };
    rpc_client_opts_t o = { .host = "::1" };
    cli_open(&k, rpc_listener_port(s6.l), &o);
    struct cli k4 = { 0 };
    cli_open(&k4, rpc_listener_port(s6.l), NULL);   /* v4 into the dual-stack listener */
    cr_assert(RUN_UNTIL(k.ups == 1 && k4.ups == 1 && s6.accepted == 2, 1000));
    struct res r = { 0 };
    rpc_call(k.c, 3, "six", 3, NULL, on_reply, &r);
    cr_assert(RUN_UNTIL(r.calls == 1, 1000));
    cr_assert_eq(r.status, 0);
    cr_assert_str_eq(rpc_conn_peer(s6.last), "127.0.0.1", "v4-mapped shown as v4");
    rpc_conn_close(k.c);
    rpc_conn_close(k4.c);
    srv_stop(&s6);
}

/* ---------------- TLS ---------------- */

static char tlsdir[] = "/var/tmp/kb_tls_XXXXXX";

static void make_certs(void)
{
    cr_assert_not_null(mkdtemp(tlsdir));
    char cmd[2048];
    snprintf(cmd, sizeof(cmd),
             "cd %s && "
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
             "  -keyout ca.key -out ca.crt -subj /CN=kb-test-ca -days 1 && "
             "for n in server client; do "
             "  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
             "    -keyout $n.key -out $n.csr -subj /CN=$n && "
             "  openssl x509 -req -in $n.csr -CA ca.crt -CAkey ca.key -CAcreateserial "
             "    -out $n.crt -days 1 || exit 1; "
             "done >/dev/null 2>&1",
             tlsdir);
    cr_assert_eq(system(cmd), 0, "openssl CLI made the test certificates");
}

static void rm_certs(void)
{
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", tlsdir);
    if (system(cmd) != 0)
        cr_log_warn("could not remove %s", tlsdir);
}

static SSL_CTX *ctx_for(bool server, const char *who)
{
    char cert[300], key[300], ca[300], err[256] = "";
    snprintf(cert, sizeof(cert), "%s/%s.crt", tlsdir, who);
    snprintf(key, sizeof(key), "%s/%s.key", tlsdir, who);
    snprintf(ca, sizeof(ca), "%s/ca.crt", tlsdir);
    SSL_CTX *ctx = rpc_tls_ctx_new(server, who ? cert : NULL, who ? key : NULL, ca, err, sizeof(err));
    cr_assert_not_null(ctx, "tls ctx: %s", err);
    return ctx;
}

static void tls_setup(void)
{
    setup();
    make_certs();
}

static void tls_teardown(void)
{
    teardown();
    rm_certs();
}

Test(tls, mutual_round_trip_with_bulk, .init = tls_setup, .fini = tls_teardown)
{
    SSL_CTX *sctx = ctx_for(true, "server"), *cctx = ctx_for(false, "client");
    struct srv s = { 0 };
    srv_start_on(&s, "127.0.0.1", 0, sctx);
    struct cli k = { 0 };
    rpc_client_opts_t o = { .tls = cctx };
    cli_open(&k, rpc_listener_port(s.l), &o);
    cr_assert(RUN_UNTIL(k.ups == 1, 2000));
    kb_buf_t *b = kb_buf_new(1 << 20);
    for (size_t i = 0; i < (1u << 20); i++)
        b->data[i] = (char)(i * 31 + 7);
    b->len = 1 << 20;
    /* Several in flight: libevent must not reorder TLS writes (it does
     * with SSL_MODE_ENABLE_PARTIAL_WRITE; this caught it). */
    enum { N = 6 };
    struct res r[N];
    memset(r, 0, sizeof(r));
    for (int i = 0; i < N; i++)
        rpc_call(k.c, 8, "tls", 3, b, on_reply, &r[i]);
    cr_assert(RUN_UNTIL(({ int d = 0; for (int i = 0; i < N; i++) d += r[i].calls; d == N; }), 5000));
    for (int i = 0; i < N; i++) {
        cr_assert_eq(r[i].status, 0);
        cr_assert_arr_eq(r[i].payload, "R8:tls", 6);
        cr_assert_not_null(r[i].bulk);
        cr_assert_eq(r[i].bulk->len, b->len);
        cr_assert_arr_eq(r[i].bulk->data, b->data, b->len);
        kb_buf_unref(r[i].bulk);
    }
    kb_buf_unref(b);
    cr_assert(s.last && rpc_conn_is_tls(s.last), "the server sees a TLS connection");
    rpc_conn_close(k.c);
    cr_assert(RUN_UNTIL(s.downs == 1, 1000));
    srv_stop(&s);
    SSL_CTX_free(sctx);
    SSL_CTX_free(cctx);
}

struct tls_refused { struct cli k; struct res r; bool called; };

static void refused_event(void *arg, rpc_conn_t *c, int ev)
{
    struct tls_refused *t = arg;
    cli_event(&t->k, c, ev);
    if (ev == RPC_EV_UP && !t->called) {   /* TLS 1.3: the client may finish first */
        t->called = true;
        rpc_call(c, 1, "let me in", 9, NULL, on_reply, &t->r);
    }
}

Test(tls, refused_without_client_cert, .init = tls_setup, .fini = tls_teardown)
{
    SSL_CTX *sctx = ctx_for(true, "server"), *cctx = ctx_for(false, NULL);
    struct srv s = { 0 };
    srv_start_on(&s, "127.0.0.1", 0, sctx);
    struct tls_refused t = { 0 };
    rpc_client_opts_t o = { .host = "127.0.0.1", .port = rpc_listener_port(s.l), .tls = cctx };
    t.k.c = rpc_client_new(base, &o, refused_event, &t);
    cr_assert_eq(rpc_client_connect(t.k.c), 0);
    cr_assert(RUN_UNTIL(t.k.downs == 1, 2000), "the client learns it was refused");
    cr_assert_eq(s.requests, 0, "no request got through");
    if (t.called) {
        cr_assert_eq(t.r.calls, 1);
        cr_assert_eq(t.r.status, -ENOTCONN);
    }
    /* The same port also serves plain TCP (the first byte tells), and the
     * server sees which kind each connection is, to decide what it may reach. */
    struct cli p = { 0 };
    rpc_client_opts_t po = { .reconnect = false, .ping_timeout_ms = 300, .ping_interval_ms = 50 };
    cli_open(&p, rpc_listener_port(s.l), &po);
    cr_assert(RUN_UNTIL(p.ups == 1, 1000));
    struct res pr = { 0 };
    rpc_call(p.c, 1, "plain", 5, NULL, on_reply, &pr);
    cr_assert(RUN_UNTIL(pr.calls == 1, 1500));
    cr_assert_eq(s.requests, 1, "the plain request reached the server");
    cr_assert_not_null(s.last);
    cr_assert_not(rpc_conn_is_tls(s.last), "and the server knows it is not TLS");
    rpc_conn_close(p.c);
    rpc_conn_close(t.k.c);
    srv_stop(&s);
    SSL_CTX_free(sctx);
    SSL_CTX_free(cctx);
}

Test(tls, ctx_errors)
{
    char err[256] = "";
    cr_assert_null(rpc_tls_ctx_new(true, "/nonexistent.crt", "/nonexistent.key", "/nonexistent.ca",
                                   err, sizeof(err)));
    cr_assert_not_null(strstr(err, "certificate"), "%s", err);
    cr_assert_null(rpc_tls_ctx_new(false, NULL, NULL, NULL, err, sizeof(err)));
    cr_assert_not_null(strstr(err, "CA"), "%s", err);
}
