/*
 * serve.c — protocol/server: kembard's listener and its connections.
 *
 * One listener serves every started brick of every volume on this node and
 * the management procedures. A connection is bound to one brick by
 * KB_PROC_HANDSHAKE; after that its fop calls are decoded and wound into
 * that brick's graph, and each reply is encoded and sent back (bulk data by
 * reference). Every fd a connection opens is recorded; a fd not opened by
 * this connection is refused (-EBADF), and when the connection goes away its
 * fds are released and its locks dropped (KB_CTL_CLIENT_GONE).
 *
 * Malformed calls get -EBADMSG (the frame itself was sound, rpc/conn.c
 * closes connections whose framing is not). Nothing a client sends can
 * crash the daemon or reach another brick.
 */
#include <stdio.h>
#include <unistd.h>
#include <event2/event.h>
#include "lib/log.h"
#include "rpc/argv.h"
#include "rpc/tls.h"
#include "rpc/wire.h"
#include "server/kembard.h"
#include "server/stats.h"
#include "server/trust.h"

/* Open-addressed set of fd numbers (0 = empty slot; fds are never 0). */
typedef struct fdset { uint64_t *slot; uint8_t *dir; size_t cap, n; } fdset_t;

typedef struct kbd_conn {
    kbd_t *d;
    rpc_conn_t *rc;
    uint64_t id;
    kbd_brick_rt_t *brick;
    char *volume;          /* set with brick by the handshake */
    char who[64];          /* the client translator's name, e.g. "vm-client-1" */
    uint32_t version;      /* volume definition version of the client's graph (0: unknown) */
    uint32_t proto;        /* negotiated protocol (rpc/wire.h) */
    uint64_t features;     /* the client's KB_FEAT_* (0 before protocol 2) */
    uint64_t lk_client;    /* the client instance's lock identity (0: this connection's id) */
    uint32_t lease_ms;     /* how long its locks outlive its last connection */
    bool member;           /* a cluster node's own client (signed handshake): auth.allow does not apply */
    char sw[32];           /* the client's software version */
    fdset_t fds;
    int uid;               /* owner of the far end when on this node (-1: not, -2: not asked yet) */
    int refs;              /* 1 while connected + 1 per call in flight */
    bool gone;
    struct kbd_conn *prev, *next;
} kbd_conn_t;

typedef struct srv_req {
    kbd_conn_t *c;
    kbd_brick_rt_t *brick;   /* stats; valid while the connection holds it */
    uint64_t start_ns;
    uint64_t xid;
    kb_op_t op;
    kb_args_t args;
} srv_req_t;

/* ---------------- fd set ---------------- */

static size_t fd_hash(uint64_t v, size_t cap) { return (size_t)((v * 0x9E3779B97F4A7C15ull) >> 20) & (cap - 1); }

static int fdset_grow(fdset_t *s)
{
    size_t cap = s->cap ? s->cap * 2 : 16;
    uint64_t *slot = calloc(cap, sizeof(uint64_t));
    uint8_t *dir = calloc(cap, 1);
    if (!slot || !dir) {
        free(slot);
        free(dir);
        return -ENOMEM;
    }
    for (size_t i = 0; i < s->cap; i++) {
        if (!s->slot[i] || s->slot[i] == UINT64_MAX)
            continue;
        size_t h = fd_hash(s->slot[i], cap);
        while (slot[h])
            h = (h + 1) & (cap - 1);
        slot[h] = s->slot[i];
        dir[h] = s->dir[i];
    }
    free(s->slot);
    free(s->dir);
    s->slot = slot;
    s->dir = dir;
    s->cap = cap;
    return 0;
}

static ssize_t fdset_find(const fdset_t *s, uint64_t v)
{
    if (!s->cap || !v || v == UINT64_MAX)
        return -1;
    for (size_t h = fd_hash(v, s->cap), k = 0; k < s->cap && s->slot[h]; h = (h + 1) & (s->cap - 1), k++)
        if (s->slot[h] == v)
            return (ssize_t)h;
    return -1;
}

static int fdset_add(fdset_t *s, uint64_t v, bool isdir)
{
    if ((s->n + 1) * 2 > s->cap && fdset_grow(s))
        return -ENOMEM;
    size_t h = fd_hash(v, s->cap);
    while (s->slot[h] && s->slot[h] != UINT64_MAX)
        h = (h + 1) & (s->cap - 1);
    s->slot[h] = v;
    s->dir[h] = isdir;
    s->n++;
    return 0;
}

static void fdset_del(fdset_t *s, uint64_t v)
{
    ssize_t i = fdset_find(s, v);
    if (i >= 0) {
        s->slot[i] = UINT64_MAX;   /* tombstone */
        s->n--;
    }
}

/* ---------------- connection lifetime ---------------- */

static void conn_unref(kbd_conn_t *c)
{
    if (--c->refs > 0)
        return;
    free(c->fds.slot);
    free(c->fds.dir);
    free(c->volume);
    free(c);
}

static void release_cbk(void *cookie, const kb_reply_t *r)
{
    kb_args_t *a = cookie;
    free(a);
}

/* ---------------- lock leases ----------------
 *
 * A client instance's application locks (features/locks, keyed by
 * lk_client) stay while any of its connections to the brick lives (a graph
 * switch opens new ones before the old go). When the last one goes, they
 * are kept for the lease the client asked for (its ping-timeout, at most
 * KB_LEASE_MAX_MS): a client that only blipped reconnects, finds them still
 * its own, and its re-acquisition is a no-op. When the lease runs out, they
 * are dropped (KB_CTL_LK_CLIENT_GONE), so a VM whose host died can start
 * elsewhere; a client that comes back later must take them again, and if
 * another client holds them meanwhile, its handle fails (replicate). */
typedef struct kbd_lease {
    kbd_t *d;
    kbd_brick_rt_t *brick;
    uint64_t lk_client;
    struct event *ev;
    struct kbd_lease *next;
} kbd_lease_t;

static bool instance_connected(kbd_t *d, kbd_brick_rt_t *b, uint64_t lk_client, const kbd_conn_t *except)
{
    for (kbd_conn_t *c = d->conns; c; c = c->next)
        if (c != except && !c->gone && c->brick == b && c->lk_client == lk_client)
            return true;
    return false;
}

static void lease_free(kbd_lease_t *l)
{
    for (kbd_lease_t **pp = &l->d->leases; *pp; pp = &(*pp)->next)
        if (*pp == l) {
            *pp = l->next;
            break;
        }
    event_free(l->ev);
    free(l);
}

static void lease_drop_locks(kbd_brick_rt_t *b, uint64_t lk_client)
{
    kb_graph_t *g = kbd_brick_graph(b);
    if (g)
        kb_graph_ctl(g, KB_CTL_LK_CLIENT_GONE, &lk_client);
}

static void lease_expired(evutil_socket_t fd, short what, void *arg)
{
    kbd_lease_t *l = arg;
    if (!instance_connected(l->d, l->brick, l->lk_client, NULL)) {
        kb_info("serve", "lock lease of client %016llx ran out: its locks are released",
                (unsigned long long)l->lk_client);
        lease_drop_locks(l->brick, l->lk_client);
    }
    lease_free(l);
}

/* The last connection of C's instance to its brick is going. */
static void lease_start(kbd_conn_t *c)
{
    if (!c->lk_client || instance_connected(c->d, c->brick, c->lk_client, c))
        return;
    for (kbd_lease_t *l = c->d->leases; l; l = l->next)
        if (l->brick == c->brick && l->lk_client == c->lk_client)
            return;              /* already running */
    kbd_lease_t *l = c->lease_ms ? kb_zalloc(sizeof(*l)) : NULL;
    if (l && !(l->ev = evtimer_new(kb_loop_base(c->d->loop), lease_expired, l))) {
        free(l);
        l = NULL;
    }
    if (!l) {                    /* no lease asked (or no memory): at once */
        lease_drop_locks(c->brick, c->lk_client);
        return;
    }
    *l = (kbd_lease_t){ .d = c->d, .brick = c->brick, .lk_client = c->lk_client, .ev = l->ev,
                        .next = c->d->leases };
    c->d->leases = l;
    struct timeval tv = { c->lease_ms / 1000, (c->lease_ms % 1000) * 1000 };
    evtimer_add(l->ev, &tv);
}

/* A brick going away takes its leases with it (its locks go with its graph). */
static void leases_drop_brick(kbd_t *d, kbd_brick_rt_t *b)
{
    for (kbd_lease_t *l = d->leases, *n; l; l = n) {
        n = l->next;
        if (l->brick == b)
            lease_free(l);
    }
}

/* Release every fd the connection still holds and drop its locks. */
static void conn_cleanup_brick(kbd_conn_t *c)
{
    kbd_brick_rt_t *b = c->brick;
    if (!b)
        return;
    kb_graph_t *g = kbd_brick_graph(b);
    if (g) {
        for (size_t i = 0; i < c->fds.cap; i++) {
            uint64_t fd = c->fds.slot[i];
            if (!fd || fd == UINT64_MAX)
                continue;
            kb_args_t *a = kb_zalloc(sizeof(*a));
            if (!a)
                continue;
            a->fd = fd;
            a->flags = KB_REL_CONN_GONE;   /* not its close: it may reconnect and reopen */
            kb_cred_t cred = { .client_id = c->id };
            kb_wind(g->top, c->fds.dir[i] ? KB_FOP_RELEASEDIR : KB_FOP_RELEASE, a, &cred, 0, release_cbk, a);
        }
        uint64_t id = c->id;
        kb_graph_ctl(g, KB_CTL_CLIENT_GONE, &id);
        lease_start(c);
    }
    kbd_brick_conn_ref(b, -1);
    c->brick = NULL;
}

static void conn_gone(kbd_conn_t *c)
{
    if (c->gone)
        return;
    c->gone = true;
    conn_cleanup_brick(c);
    kbd_t *d = c->d;
    if (c->prev)
        c->prev->next = c->next;
    else
        d->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    conn_unref(c);
}

static void conn_event(void *arg, rpc_conn_t *rc, int event)
{
    if (event == RPC_EV_DOWN)
        conn_gone(arg);
}

/* Called by store.c before a brick goes away. */
void kbd_serve_drop_brick(kbd_t *d, kbd_brick_rt_t *b)
{
    for (kbd_conn_t *c = d->conns, *next; c; c = next) {
        next = c->next;
        if (c->brick == b) {
            conn_cleanup_brick(c);
            rpc_conn_close(c->rc);
            conn_gone(c);
        }
    }
    leases_drop_brick(d, b);
}

/* A client that holds locks and went silent (its host lost, its cable cut)
 * is not noticed by TCP while a reply to it is unacknowledged: keepalive
 * does not run then, and retransmission gives up after ~15 minutes. Clients
 * ping every ping-timeout/4, so one silent for its whole lease (its
 * ping-timeout) has declared this brick dead already; the brick does the
 * same: the connection is closed and, the lease having passed in silence,
 * its locks go at once, so another host can take over the VM. */
#define SILENCE_CHECK_MS 500
#define SILENCE_STALL_MS 2000   /* a tick this late: we were the silent one */

static void silence_watch(evutil_socket_t fd, short what, void *arg)
{
    kbd_t *d = arg;
    uint64_t now = kb_now_ms();
    /* A tick long overdue: this process was stopped (SIGSTOP, a frozen VM)
     * or starved, and has not read its sockets either. Its clients were not
     * silent; what they sent meanwhile waits unread. Count silence from
     * now: a client gets a whole lease to be heard again. */
    if (d->silence_tick_ms && now - d->silence_tick_ms > SILENCE_STALL_MS)
        d->silence_resumed_ms = now;
    d->silence_tick_ms = now;
    for (kbd_conn_t *c = d->conns, *next; c; c = next) {
        next = c->next;
        if (c->gone || !c->brick || !c->lk_client || !c->lease_ms)
            continue;
        uint64_t quiet = now - KB_MAX(rpc_conn_last_rx_ms(c->rc), d->silence_resumed_ms);
        if (quiet <= c->lease_ms)
            continue;
        kb_warn("serve", "client %s (%s) silent for %llu ms, past its lock lease of %u ms: disconnected, its "
                "locks released", rpc_conn_peer(c->rc), c->who, (unsigned long long)quiet, c->lease_ms);
        c->lease_ms = 0;
        conn_cleanup_brick(c);
        rpc_conn_close(c->rc);
        conn_gone(c);
    }
}

/* After VOLUME's auth.allow / auth.reject / transport.tls changed: every
 * connected client that would be refused now is cut off (its fds released,
 * its locks dropped); it cannot come back, since the handshake and GETSPEC
 * check the same rules. The ones still allowed see nothing. */
void kbd_serve_recheck_auth(kbd_t *d, const char *volume)
{
    for (kbd_conn_t *c = d->conns, *next; c; c = next) {
        next = c->next;
        if (!c->brick || c->gone || c->member || strcmp(c->volume, volume) != 0)
            continue;            /* a member's own client (heal daemon, rebalance) stays */
        const char *why = kbd_volume_wants_tls(d, volume) && !rpc_conn_is_tls(c->rc) ? "transport.tls is on"
                        : kbd_auth_check(d, volume, rpc_conn_peer(c->rc)) == -EACCES ? "auth.allow/auth.reject"
                                                                                      : NULL;
        if (!why)
            continue;
        kb_warn("serve", "client %s (%s) of volume %s disconnected: no longer allowed (%s)", rpc_conn_peer(c->rc),
                c->who, volume, why);
        c->lease_ms = 0;         /* its locks go at once */
        conn_cleanup_brick(c);
        rpc_conn_close(c->rc);
        conn_gone(c);
    }
}

/* ---------------- certificate revocation ----------------
 * Every TLS_CHECK_MS the node looks at its --tls-dir's ca.pem and crl.pem;
 * when they changed it loads them for the connections to come and checks
 * the certificate of every connection it has (clients and management)
 * against them again: one revoked, or no longer signed by a listed CA, is
 * cut off at once (its locks go with it). */
#define TLS_CHECK_MS 2000

static void tls_recheck(kbd_t *d)
{
    char err[256] = "";
    if (rpc_tls_reload(d->tls_server, d->tls_dir, err, sizeof(err)) ||
        (d->tls_client && rpc_tls_reload(d->tls_client, d->tls_dir, err, sizeof(err)))) {
        kb_err("serve", "TLS files of %s changed but cannot be used (%s): the old ones stay", d->tls_dir, err);
        return;
    }
    kb_info("serve", "TLS: CA and revocation list of %s reloaded; checking connected peers", d->tls_dir);
    for (kbd_conn_t *c = d->conns, *next; c; c = next) {
        next = c->next;
        char why[160];
        if (c->gone || !rpc_conn_is_tls(c->rc) || rpc_tls_peer_ok(d->tls_server, rpc_conn_ssl(c->rc), why, sizeof(why)))
            continue;
        kb_warn("serve", "TLS peer %s (%s) disconnected: its certificate is no longer valid (%s)", rpc_conn_peer(c->rc),
                c->brick ? c->who : "management", why);
        c->lease_ms = 0;
        conn_cleanup_brick(c);
        rpc_conn_close(c->rc);
        conn_gone(c);
    }
}

static void tls_watch(evutil_socket_t fd, short what, void *arg)
{
    kbd_t *d = arg;
    uint64_t stamp = rpc_tls_dir_stamp(d->tls_dir);
    if (stamp != d->tls_stamp) {
        d->tls_stamp = stamp;
        tls_recheck(d);
    }
}

static kbd_conn_t *conn_by_id(kbd_t *d, uint64_t id)
{
    for (kbd_conn_t *c = d->conns; c; c = c->next)
        if (c->id == id)
            return c;
    return NULL;
}

void kbd_conn_reply_text(kbd_t *d, uint64_t conn_id, uint64_t xid, uint32_t proc, int status, const char *text)
{
    kbd_conn_t *c = conn_by_id(d, conn_id);
    if (!c)
        return;
    kb_enc_t e;
    kb_enc_init(&e);
    kb_enc_str(&e, text ? text : "");
    if (!e.err)
        rpc_reply(c->rc, xid, proc, status, e.p, (uint32_t)e.len, NULL);
    kb_enc_free(&e);
}

/* ---------------- fops ---------------- */

static void fop_done(void *cookie, const kb_reply_t *r)
{
    srv_req_t *q = cookie;
    kbd_conn_t *c = q->c;
    if (!c->gone && c->brick == q->brick) {
        uint64_t bytes = q->op == KB_FOP_WRITE ? (q->args.data ? q->args.data->len : 0)
                         : q->op == KB_FOP_READ && r->data ? r->data->len : 0;
        kbd_stats_record(kbd_brick_stats(q->brick), q->op, r->status, kb_now_ns() - q->start_ns, bytes);
    }
    if (!c->gone) {
        if (r->status >= 0 && (kb_fop_info[q->op].reply & KB_R_FD) && c->brick) {
            if (fdset_add(&c->fds, r->fd, q->op == KB_FOP_OPENDIR))
                kb_warn("serve", "out of memory tracking an fd");
        }
        kb_reply_t stripped;
        if ((r->rflags & KB_RF_PATTR) && !(c->features & KB_FEAT_PATTR)) {
            stripped = *r;           /* an older client decodes no parent attributes */
            stripped.rflags &= ~(uint32_t)KB_RF_PATTR;
            r = &stripped;
        }
        kb_enc_t e;
        kb_enc_init(&e);
        kb_reply_encode(&e, q->op, r);
        kb_buf_t *bulk = (r->status >= 0 && (kb_fop_info[q->op].reply & KB_R_DATA)) ? r->data : NULL;
        if (e.err)
            rpc_reply(c->rc, q->xid, q->op, -ENOMEM, NULL, 0, NULL);
        else
            rpc_reply(c->rc, q->xid, q->op, r->status, e.p, (uint32_t)e.len, bulk);
        kb_enc_free(&e);
    }
    /* Known gap: an OPEN/CREATE that completes after its client left (the
     * CLIENT_GONE sweep already ran) leaves that brick fd open until the
     * brick stops. */
    kb_args_clear(&q->args);
    conn_unref(c);
    free(q);
}

static void handle_fop(kbd_conn_t *c, rpc_msg_t *m)
{
    kb_op_t op = (kb_op_t)m->hdr.proc;
    if (!c->brick || !kbd_brick_graph(c->brick)) {
        rpc_reply(c->rc, m->hdr.xid, m->hdr.proc, -ENOTCONN, NULL, 0, NULL);
        return;
    }
    srv_req_t *q = kb_zalloc(sizeof(*q));
    if (!q) {
        rpc_reply(c->rc, m->hdr.xid, m->hdr.proc, -ENOMEM, NULL, 0, NULL);
        return;
    }
    kb_dec_t dec;
    kb_cred_t cred;
    kb_dec_init(&dec, m->payload, m->hdr.plen);
    kb_cred_decode(&dec, &cred);
    int rc = dec.err ? dec.err : kb_args_decode(&dec, op, &q->args, m->bulk);
    if (rc) {
        free(q);
        rpc_reply(c->rc, m->hdr.xid, m->hdr.proc, rc == -ENOMEM ? -ENOMEM : -EBADMSG, NULL, 0, NULL);
        return;
    }
    cred.client_id = c->id;        /* never trusted from the wire */
    cred.lk_client = c->lk_client;
    if (kb_args_uses_fd(op, &q->args) && fdset_find(&c->fds, q->args.fd) < 0) {
        kb_args_clear(&q->args);
        free(q);
        rpc_reply(c->rc, m->hdr.xid, m->hdr.proc, -EBADF, NULL, 0, NULL);
        return;
    }
    if (op == KB_FOP_RELEASE || op == KB_FOP_RELEASEDIR)
        fdset_del(&c->fds, q->args.fd);
    q->c = c;
    q->brick = c->brick;
    q->start_ns = kb_now_ns();
    q->xid = m->hdr.xid;
    q->op = op;
    c->refs++;
    kb_graph_t *g = kbd_brick_graph(c->brick);
    kb_wind(g->top, op, &q->args, &cred, m->hdr.xid, fop_done, q);
}

/* ---------------- management procedures ---------------- */

static void reply_text(kbd_conn_t *c, rpc_msg_t *m, int status, const char *text)
{
    kbd_conn_reply_text(c->d, c->id, m->hdr.xid, m->hdr.proc, status, text);
}

/* The handshake's fields since protocol 2 (rpc/wire.h). */
typedef struct hs_extra {
    uint32_t pmin, pmax;
    uint64_t features, lk_client;
    uint32_t lease_ms;
    char sw[32];
} hs_extra_t;

static void hs_extra_decode(kb_dec_t *dec, hs_extra_t *x)
{
    uint8_t inst[16];
    char *sw = NULL;
    x->pmin = kb_dec_u32(dec);
    x->pmax = kb_dec_u32(dec);
    x->features = kb_dec_u64(dec);
    kb_dec_bytes(dec, inst, sizeof(inst));
    x->lease_ms = kb_dec_u32(dec);
    kb_dec_str(dec, &sw, sizeof(x->sw) - 1);
    snprintf(x->sw, sizeof(x->sw), "%s", sw ? sw : "?");
    free(sw);
    /* The instance's lock identity: 64 bits of its id, bit 63 set (connection ids never have it). */
    uint64_t h = 0;
    for (int i = 0; i < 16; i++)
        h = h * 1099511628211ull ^ inst[i];
    x->lk_client = dec->err ? 0 : h | (1ull << 63);
    if (dec->err) {              /* a malformed tail: treat the client as protocol 1 */
        dec->err = 0;
        *x = (hs_extra_t){ .pmin = 1, .pmax = 1 };
        snprintf(x->sw, sizeof(x->sw), "?");
    }
}

static void hs_reply(kbd_conn_t *c, rpc_msg_t *m, uint32_t proto)
{
    kb_enc_t e;
    kb_enc_init(&e);
    kb_enc_str(&e, "ok");
    kb_enc_u32(&e, proto);
    kb_enc_u64(&e, KB_FEATURES);
    kb_enc_str(&e, KB_VERSION);
    kb_gfid_t id;
    if (kbd_brick_id(c->brick, &id))
        kb_enc_bytes(&e, id.b, sizeof(id.b));   /* since 0.2: a client on this host may read its files */
    if (!e.err)
        rpc_reply(c->rc, m->hdr.xid, m->hdr.proc, 0, e.p, (uint32_t)e.len, NULL);
    kb_enc_free(&e);
}

static void handle_handshake(kbd_conn_t *c, rpc_msg_t *m)
{
    kb_dec_t dec;
    char *vol = NULL, *path = NULL, *who = NULL, why[512] = "";
    kb_dec_init(&dec, m->payload, m->hdr.plen);
    kb_dec_str(&dec, &vol, 64);
    kb_dec_str(&dec, &path, KB_PATH_MAX);
    kb_dec_str(&dec, &who, 256);
    uint32_t version = kb_dec_u32(&dec);
    hs_extra_t x = { .pmin = 1, .pmax = 1, .sw = "?" };   /* protocol 1: a client of kembar 0.1 */
    if (!dec.err && kb_dec_left(&dec) > 0)
        hs_extra_decode(&dec, &x);
    uint32_t proto = KB_MIN(x.pmax, (uint32_t)KB_PROTO_MAX);
    if (dec.err || !vol || !path) {
        reply_text(c, m, -EBADMSG, "malformed handshake");
    } else if (proto < KB_MAX(x.pmin, (uint32_t)KB_PROTO_MIN)) {
        char msg[160];
        snprintf(msg, sizeof(msg), "this brick speaks protocol %d-%d (kembar %s), the client %u-%u (kembar %s): "
                 "upgrade the older side", KB_PROTO_MIN, KB_PROTO_MAX, KB_VERSION, x.pmin, x.pmax, x.sw);
        reply_text(c, m, -EPROTONOSUPPORT, msg);
    } else if (c->brick) {
        reply_text(c, m, -EISCONN, "connection already bound to a brick");
    } else if (kbd_volume_wants_tls(c->d, vol) && !rpc_conn_is_tls(c->rc)) {
        reply_text(c, m, -EACCES, "this volume requires TLS (transport.tls on)");
    } else if (!(c->member = kbd_trust_signed(KB_PROC_HANDSHAKE, m->payload, m->hdr.plen)) &&
               kbd_auth_check(c->d, vol, rpc_conn_peer(c->rc)) == -EACCES) {
        kb_warn("serve", "client %s refused for volume %s by auth.allow/auth.reject", rpc_conn_peer(c->rc), vol);
        reply_text(c, m, -EACCES, "access to this volume is not allowed from this address");
    } else {
        kbd_brick_rt_t *b = kbd_brick_find(c->d, vol, path, why, sizeof(why));
        if (!b) {
            reply_text(c, m, -ENOENT, why);
        } else {
            c->brick = b;
            c->volume = vol;
            vol = NULL;
            c->version = version;
            c->proto = proto;
            c->features = proto >= 2 ? x.features : 0;
            snprintf(c->who, sizeof(c->who), "%s", who ? who : "?");
            snprintf(c->sw, sizeof(c->sw), "%s", x.sw);
            if (proto >= 2 && (x.features & KB_FEAT_LK_LEASE) && x.lk_client) {
                c->lk_client = x.lk_client;
                c->lease_ms = KB_MIN(x.lease_ms, (uint32_t)KB_LEASE_MAX_MS);
            }
            kbd_brick_conn_ref(b, 1);
            kb_info("serve", "client %s (%s, version %u) attached to %s:%s (kembar %s, protocol %u)",
                    rpc_conn_peer(c->rc), c->who, version, c->volume, path, c->sw, proto);
            hs_reply(c, m, proto);
        }
    }
    free(vol);
    free(path);
    free(who);
}

/* May this connection run a management procedure? (trust.c has the rules.) */
static int mgmt_allowed(kbd_conn_t *c, rpc_msg_t *m, const char **why)
{
    if (c->uid == -2)
        c->uid = rpc_conn_peer_uid(c->rc);
    bool local_root = c->uid == 0, tls = rpc_conn_is_tls(c->rc);
    bool local_socket = strcmp(rpc_conn_peer(c->rc), "local") == 0;
    if (c->d->tls_mgmt && !tls && !local_socket) {   /* --tls-mgmt: no plain TCP at all */
        *why = "this node accepts management commands over TLS only (kembar --tls-dir)";
        return -EACCES;
    }
    kbd_trust_req_t q = { .peer = rpc_conn_peer(c->rc), .local_root = local_root, .tls_member = tls,
                          .proc = m->hdr.proc, .payload = m->payload, .plen = m->hdr.plen };
    return kbd_trust_check(&q, why);
}

static void on_request(void *arg, rpc_conn_t *rc, rpc_msg_t *m)
{
    kbd_conn_t *c = arg;
    uint32_t proc = m->hdr.proc;
    int argc = 0;
    char **argv = NULL, *out = NULL;
    if (proc < KB_FOP_MAX) {
        handle_fop(c, m);
    } else if (proc == KB_PROC_HANDSHAKE) {
        handle_handshake(c, m);
    } else if (proc == KB_PROC_GETSPEC) {
        kb_dec_t dec;
        char *vol = NULL;
        kb_dec_init(&dec, m->payload, m->hdr.plen);
        kb_dec_str(&dec, &vol, 64);
        int st = dec.err || !vol ? -EBADMSG : kbd_auth_check(c->d, vol, rpc_conn_peer(c->rc));
        if (st == 0 && kbd_volume_wants_tls(c->d, vol) && !rpc_conn_is_tls(c->rc))
            st = -EPROTO;
        if (st == 0)
            st = kbd_getspec(c->d, vol, &out);
        reply_text(c, m, st, st == 0 ? out : st == -ENOENT ? "no such volume"
                             : st == -EAGAIN ? "volume is not started"
                             : st == -EACCES ? "access to this volume is not allowed from this address"
                             : st == -EPROTO ? "this volume requires TLS (transport.tls on)" : "bad request");
        free(vol);
    } else if (proc == KB_PROC_PEER || proc == KB_PROC_CLI) {
        const char *why = NULL;
        int st = mgmt_allowed(c, m, &why);
        if (st == 0)
            st = rpc_argv_decode(m->payload, m->hdr.plen, &argc, &argv);
        else
            why = why ? why : "not allowed";
        if (why) {
            reply_text(c, m, st, why);
        } else if (st) {
            reply_text(c, m, st, "malformed request");
        } else if (proc == KB_PROC_PEER) {
            st = kbd_peer_op(c->d, argc, argv, &out);
            reply_text(c, m, st, out);
            rpc_argv_free(argc, argv);
        } else if ((st = kbd_mgmt_submit(c->d, c->id, m->hdr.xid, argc, argv))) {
            reply_text(c, m, st, "management queue full");
            rpc_argv_free(argc, argv);
        }
    } else {
        reply_text(c, m, -EPROTONOSUPPORT, "unknown procedure");
    }
    free(out);
    rpc_msg_free(m);
    free(m);
}

static int on_accept(void *arg, rpc_conn_t *rc)
{
    kbd_t *d = arg;
    kbd_conn_t *c = kb_zalloc(sizeof(*c));
    if (!c)
        return -ENOMEM;
    c->d = d;
    c->rc = rc;
    c->id = rpc_conn_id(rc);
    c->uid = -2;
    c->refs = 1;
    c->next = d->conns;
    if (d->conns)
        d->conns->prev = c;
    d->conns = c;
    rpc_conn_set_handlers(rc, on_request, conn_event, c);
    return 0;
}

int kbd_serve_start(kbd_t *d, char *err, size_t errlen)
{
    d->listener = rpc_listen(kb_loop_base(d->loop), d->listen_host, d->port, d->tls_server, on_accept, d,
                             err, errlen);
    if (!d->listener)
        return -EADDRINUSE;
    d->port = rpc_listener_port(d->listener);
    /* The local socket: root's CLI reaches this node without a network. */
    char *path = NULL;
    if (asprintf(&path, "unix:%s/" KBD_LOCAL_SOCKET, d->state_dir) < 0)
        return -ENOMEM;
    d->local = rpc_listen(kb_loop_base(d->loop), path, 0, NULL, on_accept, d, err, errlen);
    free(path);
    if (!d->local)
        return -EADDRINUSE;
    d->silence_watch = event_new(kb_loop_base(d->loop), -1, EV_PERSIST, silence_watch, d);
    if (d->silence_watch) {
        struct timeval tv = { 0, SILENCE_CHECK_MS * 1000 };
        evtimer_add(d->silence_watch, &tv);
    }
    if (d->tls_server && d->tls_dir) {
        d->tls_stamp = rpc_tls_dir_stamp(d->tls_dir);
        d->tls_watch = event_new(kb_loop_base(d->loop), -1, EV_PERSIST, tls_watch, d);
        struct timeval tv = { TLS_CHECK_MS / 1000, (TLS_CHECK_MS % 1000) * 1000 };
        if (d->tls_watch)
            evtimer_add(d->tls_watch, &tv);
    }
    return 0;
}

void kbd_serve_stop(kbd_t *d)
{
    if (d->silence_watch)
        event_free(d->silence_watch);
    d->silence_watch = NULL;
    if (d->tls_watch)
        event_free(d->tls_watch);
    d->tls_watch = NULL;
    if (d->listener)
        rpc_listener_free(d->listener);
    d->listener = NULL;
    if (d->local) {
        char *path = NULL;
        if (asprintf(&path, "%s/" KBD_LOCAL_SOCKET, d->state_dir) >= 0)
            unlink(path);
        free(path);
        rpc_listener_free(d->local);
    }
    d->local = NULL;
    while (d->conns) {
        kbd_conn_t *c = d->conns;
        rpc_conn_close(c->rc);
        conn_gone(c);
    }
    while (d->leases) {          /* the bricks and their locks go with the node */
        lease_free(d->leases);
    }
}

char *kbd_serve_clients(kbd_t *d, const char *volume)
{
    kb_enc_t e;
    kb_enc_init(&e);
    for (kbd_conn_t *c = d->conns; c; c = c->next)
        if (c->brick && !c->gone && strcmp(c->volume, volume) == 0) {
            char line[256];
            int n = snprintf(line, sizeof(line), "%s %u %s %u %s\n", rpc_conn_peer(c->rc), c->version, c->who,
                             c->proto ? c->proto : 1, c->sw[0] ? c->sw : "?");
            kb_enc_bytes(&e, line, (size_t)KB_MIN(n, (int)sizeof(line) - 1));
        }
    return kbd_enc_text(&e);
}

void kbd_dump_inflight(kbd_t *d)
{
    for (kbd_conn_t *c = d->conns; c; c = c->next)
        if (c->brick && kbd_brick_graph(c->brick)) {
            kb_graph_dump_inflight(kbd_brick_graph(c->brick));
            break;
        }
}
