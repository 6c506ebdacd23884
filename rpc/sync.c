/*
 * sync.c — blocking RPC client (see sync.h). poll() bounds every wait.
 */
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include "lib/common.h"
#include "lib/codec.h"
#include "rpc/auth.h"
#include "rpc/sync.h"
#include <openssl/err.h>
#include <openssl/ssl.h>

struct rpc_sync {
    int fd;
    SSL *ssl;                 /* NULL: plain TCP */
    uint64_t next_xid;
};

/* Process-wide TLS context for blocking calls (CLI, management thread). */
static SSL_CTX *sync_tls;

void rpc_sync_set_tls(struct ssl_ctx_st *ctx) { sync_tls = ctx; }

/* Process-wide cluster key that signs argv calls (rpc/auth.h); none: unsigned. */
static pthread_mutex_t sync_key_mu = PTHREAD_MUTEX_INITIALIZER;
static uint8_t sync_key[KB_AUTH_KEY_LEN];
static bool sync_key_set;

void rpc_sync_set_auth_key(const uint8_t *key)
{
    pthread_mutex_lock(&sync_key_mu);
    sync_key_set = key != NULL;
    if (key)
        memcpy(sync_key, key, KB_AUTH_KEY_LEN);
    pthread_mutex_unlock(&sync_key_mu);
}

bool rpc_sync_sign(uint32_t proc, kb_enc_t *e)
{
    pthread_mutex_lock(&sync_key_mu);
    bool set = sync_key_set;
    if (set)
        kb_auth_sign(sync_key, proc, e);
    pthread_mutex_unlock(&sync_key_mu);
    return set;
}

/* "unix:/path" names a local socket (the node's own kembard.sock). */
static int unix_connect(const char *path, uint64_t deadline, char *err, size_t errlen)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    if (strlen(path) >= sizeof(sa.sun_path)) {
        snprintf(err, errlen, "socket path too long: %s", path);
        return -1;
    }
    strcpy(sa.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
        return fd;
    int e = errno;
    if (fd >= 0)
        close(fd);
    snprintf(err, errlen, "cannot connect to %s: %s%s", path, strerror(e),
             e == EACCES ? " (the local socket is root's: run as root)" : "");
    (void)deadline;
    return -1;
}

static int wait_fd(int fd, short ev, uint64_t deadline_ms)
{
    for (;;) {
        uint64_t now = kb_now_ms();
        if (now >= deadline_ms)
            return -ETIMEDOUT;
        struct pollfd p = { .fd = fd, .events = ev };
        int n = poll(&p, 1, (int)(deadline_ms - now));
        if (n > 0)
            return 0;
        if (n < 0 && errno != EINTR)
            return -errno;
    }
}

static int tls_handshake(rpc_sync_t *s, SSL_CTX *ctx, uint64_t deadline, char *err, size_t errlen)
{
    s->ssl = SSL_new(ctx);
    if (!s->ssl || !SSL_set_fd(s->ssl, s->fd)) {
        snprintf(err, errlen, "TLS: out of memory");
        return -ENOMEM;
    }
    for (;;) {
        int n = SSL_connect(s->ssl);
        if (n == 1)
            return 0;
        int e = SSL_get_error(s->ssl, n);
        short ev = e == SSL_ERROR_WANT_READ ? POLLIN : e == SSL_ERROR_WANT_WRITE ? POLLOUT : 0;
        if (!ev || wait_fd(s->fd, ev, deadline)) {
            char why[200] = "handshake failed";
            unsigned long le = ERR_get_error();
            if (le)
                ERR_error_string_n(le, why, sizeof(why));
            snprintf(err, errlen, "TLS: %s", ev ? "handshake timed out" : why);
            return -ECONNREFUSED;
        }
    }
}

rpc_sync_t *rpc_sync_connect(const char *host, uint16_t port, uint32_t timeout_ms, char *err, size_t errlen)
{
    return rpc_sync_connect_ctx(host, port, timeout_ms, sync_tls, err, errlen);
}

rpc_sync_t *rpc_sync_connect_ctx(const char *host, uint16_t port, uint32_t timeout_ms,
                                 struct ssl_ctx_st *tls, char *err, size_t errlen)
{
    if (strncmp(host, "unix:", 5) == 0) {
        int ufd = unix_connect(host + 5, kb_now_ms() + timeout_ms, err, errlen);
        rpc_sync_t *us = ufd >= 0 ? kb_zalloc(sizeof(*us)) : NULL;
        if (!us) {
            if (ufd >= 0)
                close(ufd);
            return NULL;
        }
        us->fd = ufd;
        us->next_xid = 1;
        return us;
    }
    struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res = NULL;
    char ports[8];
    snprintf(ports, sizeof(ports), "%u", port);
    int rc = getaddrinfo(host, ports, &hints, &res);
    if (rc) {
        snprintf(err, errlen, "cannot resolve %s: %s", host, gai_strerror(rc));
        return NULL;
    }
    uint64_t deadline = kb_now_ms() + timeout_ms;
    int fd = -1, last = ECONNREFUSED;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
            continue;
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
            break;
        if (errno == EINPROGRESS && wait_fd(fd, POLLOUT, deadline) == 0) {
            int soerr = 0;
            socklen_t l = sizeof(soerr);
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &l);
            if (soerr == 0)
                break;
            last = soerr;
        } else {
            last = errno == EINPROGRESS ? ETIMEDOUT : errno;
        }
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        snprintf(err, errlen, "cannot connect to %s:%u: %s", host, port, strerror(last));
        return NULL;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    rpc_sync_t *s = kb_zalloc(sizeof(*s));
    if (!s) {
        close(fd);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    s->fd = fd;
    s->next_xid = 1;
    if (tls && tls_handshake(s, tls, deadline, err, errlen)) {
        rpc_sync_close(s);
        return NULL;
    }
    return s;
}

/* One TLS read/write step: >0 bytes, 0 EOF, -EAGAIN with *ev set to the
 * poll event to wait for, or -errno. */
static ssize_t ssl_io(SSL *ssl, void *p, size_t len, bool wr, short *ev)
{
    int n = wr ? SSL_write(ssl, p, (int)KB_MIN(len, (size_t)INT32_MAX)) : SSL_read(ssl, p, (int)KB_MIN(len, (size_t)INT32_MAX));
    if (n > 0)
        return n;
    switch (SSL_get_error(ssl, n)) {
    case SSL_ERROR_WANT_READ: *ev = POLLIN; return -EAGAIN;
    case SSL_ERROR_WANT_WRITE: *ev = POLLOUT; return -EAGAIN;
    case SSL_ERROR_ZERO_RETURN: return 0;
    default: return -ECONNRESET;
    }
}

static int io_all(rpc_sync_t *s, void *buf, size_t len, bool wr, uint64_t deadline)
{
    int fd = s->fd;
    char *p = buf;
    while (len) {
        if (s->ssl) {
            short ev = 0;
            ssize_t n = ssl_io(s->ssl, p, len, wr, &ev);
            if (n > 0) {
                p += n;
                len -= (size_t)n;
            } else if (n == -EAGAIN) {
                int rc = wait_fd(fd, ev, deadline);
                if (rc)
                    return rc;
            } else {
                return n == 0 ? -ECONNRESET : (int)n;
            }
            continue;
        }
        ssize_t n = wr ? send(fd, p, len, MSG_NOSIGNAL) : recv(fd, p, len, 0);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
            continue;
        }
        if (n == 0)
            return -ECONNRESET;
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return -errno;
        int rc = wait_fd(fd, wr ? POLLOUT : POLLIN, deadline);
        if (rc)
            return rc;
    }
    return 0;
}

int rpc_sync_call(rpc_sync_t *s, uint32_t proc, const void *payload, uint32_t plen,
                  uint32_t timeout_ms, rpc_msg_t *reply, char *err, size_t errlen)
{
    uint64_t deadline = kb_now_ms() + timeout_ms;
    memset(reply, 0, sizeof(*reply));
    kb_wire_hdr_t h = { .magic = KB_WIRE_MAGIC, .version = KB_WIRE_VERSION, .type = KB_MSG_CALL,
                        .xid = s->next_xid++, .proc = proc, .plen = plen };
    uint8_t hb[KB_WIRE_HDR_LEN];
    kb_wire_hdr_encode(hb, &h);
    /* header and payload in one write: one TCP segment, one TLS record */
    uint8_t *frame = malloc(sizeof(hb) + plen);
    if (!frame) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    memcpy(frame, hb, sizeof(hb));
    if (plen)
        memcpy(frame + sizeof(hb), payload, plen);
    int rc = io_all(s, frame, sizeof(hb) + plen, true, deadline);
    free(frame);
    for (;;) {
        if (!rc)
            rc = io_all(s, hb, sizeof(hb), false, deadline);
        const char *why = "";
        if (!rc && (rc = kb_wire_hdr_decode(hb, &reply->hdr, &why))) {
            snprintf(err, errlen, "bad reply frame: %s", why);
            return rc;
        }
        if (rc) {
            snprintf(err, errlen, "%s", rc == -ETIMEDOUT ? "no answer in time" : strerror(-rc));
            return rc;
        }
        uint32_t pl = reply->hdr.plen, bl = reply->hdr.blen;
        reply->payload = malloc(pl + 1);
        reply->bulk = bl ? kb_buf_new(bl) : NULL;
        if (!reply->payload || (bl && !reply->bulk)) {
            rpc_msg_free(reply);
            snprintf(err, errlen, "out of memory");
            return -ENOMEM;
        }
        rc = io_all(s, reply->payload, pl, false, deadline);
        reply->payload[pl] = 0;
        if (!rc && bl) {
            rc = io_all(s, reply->bulk->data, bl, false, deadline);
            reply->bulk->len = bl;
        }
        if (rc) {
            rpc_msg_free(reply);
            snprintf(err, errlen, "%s", strerror(-rc));
            return rc;
        }
        if (reply->hdr.type == KB_MSG_REPLY && reply->hdr.xid == h.xid)
            return 0;
        rpc_msg_free(reply);   /* a PING from the peer or a stale reply: skip it */
    }
}

void rpc_sync_close(rpc_sync_t *s)
{
    if (!s)
        return;
    if (s->ssl) {
        SSL_shutdown(s->ssl);
        SSL_free(s->ssl);
    }
    close(s->fd);
    free(s);
}

int rpc_sync_argv(const char *host, uint16_t port, uint32_t proc, int argc, char *const argv[],
                  uint32_t timeout_ms, char **out, char *err, size_t errlen)
{
    *out = NULL;
    rpc_sync_t *s = rpc_sync_connect(host, port, KB_MIN(timeout_ms, 5000u), err, errlen);
    if (!s)
        return -ENOTCONN;
    kb_enc_t e;
    kb_enc_init(&e);
    kb_enc_u32(&e, (uint32_t)argc);
    for (int i = 0; i < argc; i++)
        kb_enc_str(&e, argv[i]);
    rpc_sync_sign(proc, &e);
    int rc = e.err;
    rpc_msg_t r;
    if (!rc)
        rc = rpc_sync_call(s, proc, e.p, (uint32_t)e.len, timeout_ms, &r, err, errlen);
    kb_enc_free(&e);
    rpc_sync_close(s);
    if (rc)
        return rc;
    kb_dec_t d;
    kb_dec_init(&d, r.payload, r.hdr.plen);
    char *text = NULL;
    kb_dec_str(&d, &text, KB_WIRE_PLEN_MAX);
    rc = r.hdr.status;
    rpc_msg_free(&r);
    if (d.err) {
        free(text);
        snprintf(err, errlen, "malformed reply from %s:%u", host, port);
        return -EBADMSG;
    }
    if (rc < 0) {
        snprintf(err, errlen, "%s", text ? text : strerror(-rc));
        free(text);
        return rc;
    }
    *out = text;
    return 0;
}
