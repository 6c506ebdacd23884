/*
 * client.c — protocol/client: one brick, reached over one rpc connection.
 *
 * Promises:
 *  - Sends CHILD_UP once connected AND the brick accepted our handshake;
 *    CHILD_DOWN when the connection is lost (closed, or silent for
 *    ping-timeout). Every call in flight then fails at once with -ENOTCONN
 *    (rpc/conn.c), so replicate fails over without waiting.
 *  - Reconnects by itself, with backoff; a brick that is not served yet
 *    (volume stopped, node restarting) is retried every second.
 *  - fds handed up are tagged with the connection generation: an fd opened
 *    before a reconnect is never sent on the new connection (the brick may
 *    have reused the number); it fails with -EBADF so the parent reopens.
 *
 *  - Reads file data of a brick on this host from its files itself
 *    (local_read.c, option local-read), handing back to the brick any
 *    read it cannot serve whole.
 *
 * fd encoding: bits 63..48 = generation (16 bits), 47..0 = the brick's fd
 * number (bricks hand out numbers < 2^48).
 */
#include <stdio.h>
#include <event2/event.h>
#include "lib/log.h"
#include <openssl/ssl.h>
#include "rpc/conn.h"
#include "rpc/sync.h"
#include "rpc/wire.h"
#include "rpc/tls.h"
#include "xlators/xlator.h"
#include "xlators/protocol/client/local_read.h"

#define FD_GEN_SHIFT 48
#define FD_NUM_MASK ((1ull << FD_GEN_SHIFT) - 1)

static const kb_option_def_t client_options[] = {
    { "remote-host", NULL, KB_OPT_STR, "127.0.0.1", 0, 0, NULL, "Node holding the brick" },
    { "remote-port", NULL, KB_OPT_INT, "24800", 1, 65535, NULL, "kembard port of that node" },
    { "remote-subvolume", NULL, KB_OPT_PATH, NULL, 0, 0, NULL, "Brick path on that node" },
    { "volume", NULL, KB_OPT_STR, "", 0, 0, NULL, "Volume name (sent in the handshake)" },
    { "volume-version", NULL, KB_OPT_INT, "0", 0, 4294967295LL, NULL,
      "Version of the volume definition this graph was made from (sent in the handshake, so "
      "kembard can tell which clients still run an older graph); 0 = hand-written volfile" },
    { "ping-timeout", "network.ping-timeout", KB_OPT_TIME, "5", 500, 600000, NULL,
      "Seconds of silence after which a brick is declared down and its calls fail over "
      "(keep well under guest disk timeouts of 30 s)" },
    { "call-timeout", "network.frame-timeout", KB_OPT_TIME, "120", 1000, 3600000, NULL,
      "Seconds after which a single call is failed with ETIMEDOUT" },
    { "lock-lease", "network.lock-lease", KB_OPT_TIME, NULL, 0, KB_LEASE_MAX_MS, NULL,
      "Seconds a brick keeps a client's application locks (a VM's image lock) after its last "
      "connection to the brick went: a client back within it still holds them, one that died frees "
      "them for another host after it (0: at once; unset: the ping-timeout; at most 120)" },
    { "tls", "transport.tls", KB_OPT_BOOL, "off", 0, 0, NULL,
      "Encrypt client-brick traffic with TLS and check certificates both ways; bricks refuse "
      "plain connections to the volume" },
    { "tls-dir", NULL, KB_OPT_PATH, "/etc/kembar/tls", 0, 0, NULL,
      "Directory holding this client's cert.pem, key.pem and the CA's ca.pem" },
    { "local-read", "performance.local-read", KB_OPT_BOOL, "on", 0, 0, NULL,
      "Read file data of a brick on this host from its files, without a round trip to its "
      "kembard (root clients only; the brick's id is checked on its directory)" },
    { NULL },
};

typedef struct client_priv {
    kb_xlator_t *xl;
    rpc_conn_t *conn;
    struct event *retry;        /* handshake retry timer */
    uint16_t gen;               /* connection generation (fd tags) */
    bool handshaken;
    bool fini;
    char *host, *brick, *volume;
    uint16_t port;
    uint32_t version;           /* volume-version, sent in the handshake */
    uint32_t lease_ms;          /* lock lease asked of the brick: the ping-timeout */
    uint32_t proto;             /* negotiated with the brick (1: an old brick) */
    uint64_t features;          /* the brick's KB_FEAT_* on this connection (0: an old brick) */
    bool local;                 /* this connection's ends share a network stack (KB_CTL_LOCAL) */
    lread_t *lr;                /* local reads (local_read.c); NULL: option off */
    struct kb_ratelimit rl;
    struct ssl_ctx_st *tls;     /* owned; NULL = plain TCP */
} client_priv_t;

typedef struct client_local {
    kb_call_t *call;
    uint16_t gen;
    bool no_local;              /* a local read handed it back: send it to the brick */
} client_local_t;

/* ---------------- handshake ---------------- */

static void handshake(client_priv_t *p);

static void retry_cb(evutil_socket_t fd, short ev, void *arg)
{
    client_priv_t *p = arg;
    if (rpc_conn_is_up(p->conn) && !p->handshaken)
        handshake(p);
}

static void handshake_cbk(void *cookie, int status, const rpc_msg_t *reply)
{
    client_priv_t *p = cookie;
    if (p->fini)
        return;
    if (status == 0) {
        /* "ok", then (protocol 2) the brick's choice and version; an old brick sends "ok" alone. */
        kb_dec_t d;
        char *ok = NULL, *sw = NULL;
        kb_dec_init(&d, reply ? reply->payload : NULL, reply ? reply->hdr.plen : 0);
        kb_dec_str(&d, &ok, 16);
        p->proto = 1;
        p->features = 0;
        kb_gfid_t brick_id;
        bool has_id = false;
        if (!d.err && kb_dec_left(&d) > 0) {
            uint32_t proto = kb_dec_u32(&d);
            uint64_t features = kb_dec_u64(&d);
            kb_dec_str(&d, &sw, 64);
            if (!d.err && proto >= KB_PROTO_MIN && proto <= KB_PROTO_MAX) {
                p->proto = proto;
                p->features = proto >= 2 ? features & KB_FEATURES : 0;
            }
            if (!d.err && kb_dec_left(&d) >= sizeof(brick_id.b)) {   /* since kembar 0.2 */
                kb_dec_bytes(&d, brick_id.b, sizeof(brick_id.b));
                has_id = !d.err;
            }
        }
        p->handshaken = true;
        p->local = rpc_conn_same_host(p->conn);
        kb_info(p->xl->name, "connected to %s:%u:%s (kembar %s, protocol %u%s)", p->host, p->port, p->brick,
                sw ? sw : "0.1", p->proto, p->local ? ", on this host" : "");
        int rc = p->lr && p->local && has_id ? lread_enable(p->lr, p->brick, &brick_id) : 0;
        if (rc)   /* the check itself logs what it finds */
            kb_info(p->xl->name, "brick %s is on this host, but read through kembard: %s", p->brick, strerror(-rc));
        free(ok);
        free(sw);
        kb_notify_parents(p->xl, KB_EV_CHILD_UP);
        return;
    }
    if (kb_ratelimit_ok(&p->rl))
        kb_warn(p->xl->name, "brick %s:%u:%s refused the handshake: %s (retrying)", p->host, p->port,
                p->brick, strerror(-status));
    if (status != -ENOTCONN) {
        struct timeval tv = { 1, 0 };
        evtimer_add(p->retry, &tv);
    }
}

static void handshake(client_priv_t *p)
{
    kb_enc_t e;
    kb_enc_init(&e);
    kb_enc_str(&e, p->volume);
    kb_enc_str(&e, p->brick);
    kb_enc_str(&e, p->xl->name);
    kb_enc_u32(&e, p->version);
    /* protocol 2 (rpc/wire.h): versions, features, our instance and its lease */
    uint8_t inst[16];
    kb_instance_id(inst);
    kb_enc_u32(&e, KB_PROTO_MIN);
    kb_enc_u32(&e, KB_PROTO_MAX);
    kb_enc_u64(&e, KB_FEATURES);
    kb_enc_bytes(&e, inst, sizeof(inst));
    kb_enc_u32(&e, p->lease_ms);
    kb_enc_str(&e, KB_VERSION);
    rpc_sync_sign(KB_PROC_HANDSHAKE, &e);   /* a node's own client (heal, rebalance) says so */
    if (e.err) {
        kb_enc_free(&e);
        struct timeval tv = { 1, 0 };
        evtimer_add(p->retry, &tv);
        return;
    }
    rpc_call(p->conn, KB_PROC_HANDSHAKE, e.p, (uint32_t)e.len, NULL, handshake_cbk, p);
    kb_enc_free(&e);
}

static void conn_event(void *arg, rpc_conn_t *c, int event)
{
    client_priv_t *p = arg;
    if (p->fini)
        return;
    if (event == RPC_EV_UP) {
        p->gen++;
        p->handshaken = false;
        handshake(p);
    } else if (event == RPC_EV_DOWN) {
        bool was = p->handshaken;
        p->handshaken = false;
        lread_disable(p->lr);
        evtimer_del(p->retry);
        if (was) {
            kb_warn(p->xl->name, "disconnected from %s:%u:%s", p->host, p->port, p->brick);
            kb_notify_parents(p->xl, KB_EV_CHILD_DOWN);
        }
    }
}

/* ---------------- fops ---------------- */

static uint64_t fd_wrap(client_priv_t *p, uint64_t remote) { return (uint64_t)p->gen << FD_GEN_SHIFT | (remote & FD_NUM_MASK); }

static void fop_reply(void *cookie, int status, const rpc_msg_t *msg)
{
    kb_call_t *call = cookie;
    client_local_t *l = call->local;
    client_priv_t *p = call->xl->priv;
    if (!msg) {
        kb_unwind_err(call, status);
        return;
    }
    kb_reply_t r = { .status = msg->hdr.status };
    kb_dec_t d;
    kb_dec_init(&d, msg->payload, msg->hdr.plen);
    int rc = kb_reply_decode(&d, call->op, &r, msg->bulk);
    if (rc) {
        kb_err(call->xl->name, "malformed %s reply: %s", kb_fop_name(call->op), strerror(-rc));
        kb_unwind_err(call, -EIO);
        return;
    }
    if (r.status >= 0 && (kb_fop_info[call->op].reply & KB_R_FD)) {
        if (l->gen != p->gen) {
            /* Opened on a connection that is gone: the fd is useless. */
            kb_reply_clear(&r);
            kb_unwind_err(call, -ENOTCONN);
            return;
        }
        r.fd = fd_wrap(p, r.fd);
        if (call->op == KB_FOP_OPEN || call->op == KB_FOP_CREATE)
            lread_opened(p->lr, r.fd, call->op == KB_FOP_OPEN ? &call->args->gfid : &call->args->newgfid,
                         call->args->flags);
    }
    kb_unwind(call, &r);
    kb_reply_clear(&r);
}

static void client_fop(kb_call_t *call);

/* A local read's end (local_read.c): the data, or back to the brick. */
static void local_read_done(void *cookie, int res, kb_buf_t *buf)
{
    kb_call_t *call = cookie;
    if (res < 0) {
        ((client_local_t *)call->local)->no_local = true;
        client_fop(call);
        return;
    }
    kb_reply_t r = { .status = res, .data = buf };
    kb_unwind(call, &r);
}

static void client_fop(kb_call_t *call)
{
    client_priv_t *p = call->xl->priv;
    client_local_t *l = call->local;
    const kb_args_t *a = call->args;
    l->call = call;
    l->gen = p->gen;
    if (!p->handshaken) {
        kb_unwind_err(call, -ENOTCONN);
        return;
    }
    kb_args_t tmp;
    const kb_args_t *send = a;
    if (kb_args_uses_fd(call->op, a)) {
        if ((a->fd >> FD_GEN_SHIFT) != p->gen) {
            kb_unwind_err(call, -EBADF);   /* opened before a reconnect */
            return;
        }
        if (call->op == KB_FOP_READ && !l->no_local &&
            lread_read(p->lr, a->fd, a->off, (size_t)a->size, local_read_done, call) == 0)
            return;
        if (call->op == KB_FOP_RELEASE)
            lread_released(p->lr, a->fd);
        tmp = *a;
        tmp.fd = a->fd & FD_NUM_MASK;
        send = &tmp;
    }
    if (call->op == KB_FOP_XATTROP && a->flags == KB_XOP_ADD_LOCKED && !(p->features & KB_FEAT_XOP_LOCKED)) {
        kb_unwind_err(call, -EOPNOTSUPP);   /* an older brick: the caller locks first */
        return;
    }
    if (call->op == KB_FOP_LK && (a->flags & ~KB_LK_CMD_MASK) && p->proto < 2) {
        if (send != &tmp) {
            tmp = *a;
            send = &tmp;
        }
        tmp.flags &= KB_LK_CMD_MASK;   /* a protocol-1 brick knows the command alone */
    }
    kb_enc_t e;
    kb_enc_init(&e);
    kb_cred_encode(&e, &call->cred);
    kb_args_encode(&e, call->op, send);
    if (e.err) {
        kb_enc_free(&e);
        kb_unwind_err(call, -ENOMEM);
        return;
    }
    kb_buf_t *bulk = (kb_fop_info[call->op].args & KB_A_DATA) ? a->data : NULL;
    rpc_call(p->conn, (uint32_t)call->op, e.p, (uint32_t)e.len, bulk, fop_reply, call);
    kb_enc_free(&e);
}

/* ---------------- lifecycle ---------------- */

static int client_init(kb_xlator_t *xl)
{
    client_priv_t *p = kb_zalloc(sizeof(*p));
    if (!p)
        return -ENOMEM;
    p->xl = xl;
    p->host = kb_strdup0(kb_opt_str(xl->opts, client_options, "remote-host"));
    p->brick = kb_strdup0(kb_opt_str(xl->opts, client_options, "remote-subvolume"));
    p->volume = kb_strdup0(kb_opt_str(xl->opts, client_options, "volume"));
    p->port = (uint16_t)kb_opt_int(xl->opts, client_options, "remote-port");
    p->version = (uint32_t)kb_opt_int(xl->opts, client_options, "volume-version");
    p->rl.interval_ms = 10000;
    xl->priv = p;
    if (!p->host || !p->brick || !p->volume)
        return -EINVAL;
    rpc_client_opts_t o = {
        .host = p->host, .port = p->port, .reconnect = true,
        .ping_timeout_ms = (uint32_t)kb_opt_time_ms(xl->opts, client_options, "ping-timeout"),
        .call_timeout_ms = (uint32_t)kb_opt_time_ms(xl->opts, client_options, "call-timeout"),
    };
    o.ping_interval_ms = KB_MAX(o.ping_timeout_ms / 4, 100u);
    /* the lease asked of the bricks: network.lock-lease, else the ping-timeout */
    p->lease_ms = kb_opts_raw(xl->opts, "lock-lease") ? (uint32_t)kb_opt_time_ms(xl->opts, client_options, "lock-lease")
                                                      : o.ping_timeout_ms;
    if (kb_opt_bool(xl->opts, client_options, "tls")) {
        char err[256] = "";
        p->tls = rpc_tls_ctx_from_dir(false, kb_opt_str(xl->opts, client_options, "tls-dir"), err, sizeof(err));
        if (!p->tls) {
            kb_err(xl->name, "TLS: %s", err);
            return -EINVAL;
        }
        o.tls = p->tls;
    }
    if (kb_opt_bool(xl->opts, client_options, "local-read") &&
        !(p->lr = lread_new(xl->graph->base, xl->name, o.ping_timeout_ms)))
        return -ENOMEM;
    p->conn = rpc_client_new(xl->graph->base, &o, conn_event, p);
    p->retry = evtimer_new(xl->graph->base, retry_cb, p);
    if (!p->conn || !p->retry)
        return -ENOMEM;
    return 0;
}

static void client_fini(kb_xlator_t *xl)
{
    client_priv_t *p = xl->priv;
    if (!p)
        return;
    p->fini = true;
    p->handshaken = false;
    if (p->retry)
        event_free(p->retry);
    if (p->conn)
        rpc_conn_close(p->conn);
    lread_free(p->lr);         /* its reads in flight complete (to the closed brick: -ENOTCONN) */
    free(p->host);
    free(p->brick);
    free(p->volume);
    if (p->tls)
        SSL_CTX_free(p->tls);   /* the connection is closed: nothing uses it any more */
    free(p);
    xl->priv = NULL;
}

static void client_notify(kb_xlator_t *xl, int event, kb_xlator_t *child)
{
    client_priv_t *p = xl->priv;
    if (!p)
        return;
    if (event == KB_EV_PARENT_UP && p->conn) {
        rpc_client_connect(p->conn);
    } else if (event == KB_EV_PARENT_DOWN && p->conn) {
        /* Teardown: no new calls go out, the ones in flight fail now. */
        p->handshaken = false;
        p->fini = true;
        evtimer_del(p->retry);
        rpc_conn_t *c = p->conn;
        p->conn = NULL;
        rpc_conn_close(c);
    }
}

static int client_ctl(kb_xlator_t *xl, int code, void *arg)
{
    client_priv_t *p = xl->priv;
    if (code == KB_CTL_STATUS) {
        struct lread_counts n;
        lread_counts(p->lr, &n);
        kb_ctl_printf(arg, "%s %s:%u:%s %s, local reads %s: %llu served here, %llu sent on to the brick "
                      "(%llu timed out)\n", xl->name, p->host, p->port, p->brick, p->handshaken ? "up" : "down",
                      lread_enabled(p->lr) ? "on" : "off", (unsigned long long)n.served,
                      (unsigned long long)n.handed_back, (unsigned long long)n.timeouts);
        return 0;
    }
    if (code == KB_CTL_FEATURES) {
        *(uint64_t *)arg = p->handshaken ? p->features : 0;
        return 0;
    }
    if (code == KB_CTL_LOCAL) {
        *(bool *)arg = p->handshaken && p->local;
        return 0;
    }
    return -ENOSYS;
}

const kb_xlator_type_t kb_xl_client = {
    .name = "protocol/client",
    .ops = {
#define FOP(NAME, name, A, R, C) [KB_FOP_##NAME] = client_fop,
#include "xlators/fops.def"
#undef FOP
    },
    .local_size = sizeof(client_local_t),
    .init = client_init,
    .fini = client_fini,
    .notify = client_notify,
    .options = client_options,
    .ctl = client_ctl,
};
