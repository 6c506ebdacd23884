/*
 * peercred.c — is the far end of an accepted connection root on this node?
 * (rpc_conn_peer_uid, conn.h). kembard trusts management commands from
 * there (server/trust.c).
 *
 *  - a local (AF_UNIX) socket: the kernel's SO_PEERCRED;
 *  - TCP over loopback: the connecting socket is on this host, in this
 *    network namespace (another namespace's 127.0.0.1 is its own). The
 *    kernel's socket table (/proc/net/tcp, tcp6) names the owner uid of the
 *    socket whose local address is our peer's and whose remote address is
 *    ours — the identd idea, without trusting anything the peer says.
 *    A privileged source port alone was rejected: the old release's nodes
 *    and most tools connect from ephemeral ports.
 *  - anything else: unknown (-1).
 *
 * rpc_conn_same_host: are both ends in this network stack? A local socket,
 * loopback on both ends, or a peer whose address is our own (a connection to
 * one of this host's addresses never leaves it). Replicate prefers such a
 * brick for reads (cluster.choose-local).
 */
#include "rpc/conn_internal.h"

#include <arpa/inet.h>
#include <event2/bufferevent.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

/* An address as /proc/net/tcp6 prints it: 16 bytes (IPv4 v4-mapped) + port. */
typedef struct sockname { uint8_t a[16]; uint16_t port; } sockname_t;

static bool to_name(const struct sockaddr_storage *ss, sockname_t *n)
{
    memset(n, 0, sizeof(*n));
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)ss;
        n->a[10] = n->a[11] = 0xff;
        memcpy(n->a + 12, &s4->sin_addr, 4);
        n->port = ntohs(s4->sin_port);
        return true;
    }
    if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)ss;
        memcpy(n->a, &s6->sin6_addr, 16);
        n->port = ntohs(s6->sin6_port);
        return true;
    }
    return false;
}

static bool loopback(const sockname_t *n)
{
    static const uint8_t v6lo[16] = { [15] = 1 };
    static const uint8_t mapped[12] = { [10] = 0xff, [11] = 0xff };
    return memcmp(n->a, v6lo, 16) == 0 || (memcmp(n->a, mapped, 12) == 0 && n->a[12] == 127);
}

/* "0100007F:1F90" (tcp: one host-order u32) or 32 hex digits (tcp6: four). */
static bool parse_proc(const char *s, bool v6, sockname_t *n)
{
    memset(n, 0, sizeof(*n));
    unsigned words = v6 ? 4 : 1;
    for (unsigned w = 0; w < words; w++) {
        unsigned x;
        if (sscanf(s + 8 * w, "%8x", &x) != 1)
            return false;
        uint8_t *dst = v6 ? n->a + 4 * w : n->a + 12;
        memcpy(dst, &x, 4);                      /* the kernel printed its host-order u32 */
    }
    if (!v6)
        n->a[10] = n->a[11] = 0xff;
    unsigned port;
    if (s[8 * words] != ':' || sscanf(s + 8 * words + 1, "%4x", &port) != 1)
        return false;
    n->port = (uint16_t)port;
    return true;
}

static int table_uid(const char *file, bool v6, const sockname_t *peer, const sockname_t *self)
{
    FILE *f = fopen(file, "r");
    if (!f)
        return -1;
    char line[512], la[64], ra[64];
    int uid = -1;
    unsigned u;
    while (uid < 0 && fgets(line, sizeof(line), f)) {
        /* sl local rem st tx:rx tr:when retr uid ... */
        if (sscanf(line, " %*s %63s %63s %*s %*s %*s %*s %u", la, ra, &u) != 3)
            continue;
        sockname_t l, r;
        if (parse_proc(la, v6, &l) && parse_proc(ra, v6, &r) && memcmp(&l, peer, sizeof(l)) == 0 &&
            memcmp(&r, self, sizeof(r)) == 0)
            uid = (int)u;
    }
    fclose(f);
    return uid;
}

int rpc_conn_peer_uid(const rpc_conn_t *c)
{
    int fd = c && c->bev ? (int)bufferevent_getfd(c->bev) : -1;
    if (fd < 0)
        return -1;
    struct sockaddr_storage me, peer;
    socklen_t ml = sizeof(me), pl = sizeof(peer);
    if (getsockname(fd, (struct sockaddr *)&me, &ml) < 0)
        return -1;
    if (me.ss_family == AF_UNIX) {
        struct ucred cr;
        socklen_t cl = sizeof(cr);
        return getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &cl) == 0 ? (int)cr.uid : -1;
    }
    sockname_t self, them;
    if (getpeername(fd, (struct sockaddr *)&peer, &pl) < 0 || !to_name(&me, &self) || !to_name(&peer, &them) ||
        !loopback(&them))
        return -1;
    int uid = table_uid("/proc/net/tcp", false, &them, &self);
    if (uid < 0)
        uid = table_uid("/proc/net/tcp6", true, &them, &self);
    return uid;
}

bool rpc_addr_same_host(const struct sockaddr_storage *me, const struct sockaddr_storage *peer)
{
    if (me->ss_family == AF_UNIX)
        return true;
    sockname_t self, them;
    if (!to_name(me, &self) || !to_name(peer, &them))
        return false;
    return (loopback(&self) && loopback(&them)) || memcmp(self.a, them.a, sizeof(self.a)) == 0;
}

bool rpc_conn_same_host(const rpc_conn_t *c)
{
    int fd = c && c->bev ? (int)bufferevent_getfd(c->bev) : -1;
    if (fd < 0)
        return false;
    struct sockaddr_storage me, peer;
    socklen_t ml = sizeof(me), pl = sizeof(peer);
    memset(&peer, 0, sizeof(peer));
    if (getsockname(fd, (struct sockaddr *)&me, &ml) < 0)
        return false;
    if (me.ss_family != AF_UNIX && getpeername(fd, (struct sockaddr *)&peer, &pl) < 0)
        return false;
    return rpc_addr_same_host(&me, &peer);
}
