/*
 * sync.c — blocking RPC client (see sync.h). poll() bounds every wait.
 */
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>
#include "lib/common.h"
#include "lib/codec.h"
#include "rpc/sync.h"

struct rpc_sync {
    int fd;
    uint64_t next_xid;
};

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

rpc_sync_t *rpc_sync_connect(const char *host, uint16_t port, uint32_t timeout_ms, char *err, size_t errlen)
{
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
    return s;
}

static int io_all(int fd, void *buf, size_t len, bool wr, uint64_t deadline)
{
    char *p = buf;
    while (len) {
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
    int rc = io_all(s->fd, hb, sizeof(hb), true, deadline);
    if (!rc && plen)
        rc = io_all(s->fd, (void *)payload, plen, true, deadline);
    for (;;) {
        if (!rc)
            rc = io_all(s->fd, hb, sizeof(hb), false, deadline);
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
        rc = io_all(s->fd, reply->payload, pl, false, deadline);
        reply->payload[pl] = 0;
        if (!rc && bl) {
            rc = io_all(s->fd, reply->bulk->data, bl, false, deadline);
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
