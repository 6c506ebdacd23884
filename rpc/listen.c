/*
 * listen.c — the server side of the transport (rpc/conn.h,
 * conn_internal.h): a listening socket, accepted connections, TLS and
 * plain TCP on one port.
 *
 * What it promises: an accepted socket becomes a connection only when the
 * accept callback keeps it (a refusal is logged and the socket closed);
 * with a TLS context the first byte tells TLS from plain TCP, and a client
 * that sends nothing within SNIFF_TIMEOUT_S is dropped; accepted sockets
 * get TCP keepalive (rpc_set_sockopts), so a client that vanished without a
 * FIN is noticed. No host (or "") listens on both IPv6 and IPv4 where the
 * machine has IPv6.
 */
#include "rpc/conn_internal.h"
#include "lib/common.h"

#include <arpa/inet.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netdb.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

struct rpc_listener {
    struct evconnlistener *lev;
    struct event_base *base;
    struct ssl_ctx_st *tls;
    struct sniff *sniffs;         /* TLS listeners: accepted, first byte not seen yet */
    rpc_accept_fn accept_fn;
    void *arg;
    uint16_t port;
};

static void format_peer(const struct sockaddr *sa, char *out, size_t n)
{
    out[0] = '\0';
    if (sa->sa_family == AF_UNIX) {
        snprintf(out, n, "local");
    } else if (sa->sa_family == AF_INET) {
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
    rpc_conn_t *c = rpc_conn_alloc(l->base, true);
    if (c) {
        c->tls = tls;
        snprintf(c->peer, sizeof(c->peer), "%s", peer);
        c->bev = rpc_bev_new(c, fd, true);
    }
    if (!c || !c->bev) {
        kb_warn(LOG_CTX, "refusing a connection: out of memory");
        if (c)
            rpc_conn_free(c);
        close(fd);
        return;
    }
    c->state = CS_UP;
    rpc_conn_hold(c);
    int rc = l->accept_fn ? l->accept_fn(l->arg, c) : 0;
    if (rc < 0) {
        kb_info(LOG_CTX, "connection from %s refused: %s", c->peer, strerror(-rc));
        rpc_conn_close(c);
    } else if (c->bev) {
        bufferevent_enable(c->bev, c->tls ? EV_READ | EV_WRITE : EV_WRITE);
        if (rpc_own_reader(c) < 0) {
            kb_warn(LOG_CTX, "dropping connection from %s: out of memory", c->peer);
            rpc_conn_close(c);
        }
    }
    rpc_conn_release(c);
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
    rpc_set_sockopts(fd, true);
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

/* "unix:/path": the node's local socket, root's alone (mode 0600). A stale
 * socket file left by a crash is replaced. */
static evutil_socket_t listen_unix(const char *path, char *err, size_t errlen)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    if (strlen(path) >= sizeof(sa.sun_path)) {
        snprintf(err, errlen, "cannot listen on %s: path too long", path);
        return -1;
    }
    strcpy(sa.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    unlink(path);
    mode_t old = umask(0177);
    int rc = fd < 0 ? -1 : bind(fd, (struct sockaddr *)&sa, sizeof(sa));
    umask(old);
    if (rc < 0 || chmod(path, 0600) < 0 || listen(fd, 64) < 0) {
        snprintf(err, errlen, "cannot listen on %s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

static evutil_socket_t listen_socket(const char *host, uint16_t port, char *err, size_t errlen)
{
    if (host && strncmp(host, "unix:", 5) == 0)
        return listen_unix(host + 5, err, errlen);
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
    pthread_once(&rpc_sigpipe_once, rpc_ignore_sigpipe);
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
    l->port = ss.ss_family == AF_UNIX ? 0
            : ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
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
