/*
 * mgmt_peers.c — the management thread's calls to the nodes of a volume
 * (mgmt.h): one PEER call, the nodes a definition names, and the steps that
 * reach every node: store a definition, check that all answer, prepare and
 * unprepare bricks.
 *
 * Promises
 *  - A PEER call blocks for at most PEER_TIMEOUT_MS; when it fails, *out
 *    says why (the node's reason, or the transport's).
 *  - prepare is all or nothing: the nodes already prepared are rolled back
 *    when one fails ("nothing half-made").
 *  - A store reaches every node of the volume and this one; without force
 *    each of them must take it.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include "lib/version.h"
#include "rpc/sync.h"
#include "rpc/wire.h"
#include "server/mgmt.h"

#define PEER_TIMEOUT_MS 15000

static int peerv(const char *host, uint16_t port, char **out, int argc, char **argv)
{
    char err[512] = "";
    int rc = rpc_sync_argv(host, port, KB_PROC_PEER, argc, argv, PEER_TIMEOUT_MS, out, err, sizeof(err));
    if (rc && !*out)
        *out = strdup(err);
    return rc;
}

/* "0.2" for op-version 2 (messages). */
static const char *release_name(uint32_t ov)
{
    const char *r = kb_op_version_release(ov);
    return r ? r : "a newer release";
}

int mgmt_peer(const char *host, uint16_t port, char **out, int argc, ...)
{
    char *argv[32];
    va_list ap;
    va_start(ap, argc);
    for (int i = 0; i < argc && i < 32; i++)
        argv[i] = va_arg(ap, char *);
    va_end(ap);
    return peerv(host, port, out, KB_MIN(argc, 32), argv);
}

/* Is brick B of V served by node N? */
bool mgmt_brick_on(const kbd_volume_t *v, int b, const node_t *n)
{
    return v->bricks[b].port == n->port && strcmp(v->bricks[b].host, n->host) == 0;
}

/* Unique nodes of a volume, in brick order. */
int mgmt_volume_nodes(const kbd_volume_t *v, node_t **nodes)
{
    node_t *n = calloc((size_t)v->nbricks, sizeof(node_t));
    int cnt = 0;
    if (!n)
        return -ENOMEM;
    for (int i = 0; i < v->nbricks; i++) {
        int j;
        for (j = 0; j < cnt; j++)
            if (mgmt_brick_on(v, i, &n[j]))
                break;
        if (j == cnt) {
            n[cnt].host = v->bricks[i].host;
            n[cnt++].port = v->bricks[i].port;
        }
    }
    *nodes = n;
    return cnt;
}

bool mgmt_is_self(const ctx_t *c, const node_t *n)
{
    return n->port == c->self_port && strcmp(n->host, c->self_host) == 0;
}

/* The definition as this node knows it. */
kbd_volume_t *mgmt_get_volume(const ctx_t *c, const char *name, char **out)
{
    char *text = NULL, err[256];
    int rc = mgmt_peer(c->self_host, c->self_port, &text, 3, "peer", "get", (char *)name);
    if (rc) {
        free(text);
        mgmt_fail(out, rc, rc == -ENOENT ? "volume '%s' does not exist" : "cannot read volume '%s'", name);
        return NULL;
    }
    kbd_volume_t *v = kbd_volume_parse(text, err, sizeof(err));
    free(text);
    if (!v)
        mgmt_fail(out, -EIO, "volume '%s': %s", name, err);
    return v;
}

/* Local brick indices of NODE as "i,j,k". */
void mgmt_local_csv(const kbd_volume_t *v, const node_t *n, char *buf, size_t len)
{
    buf[0] = 0;
    size_t off = 0;
    for (int i = 0; i < v->nbricks && off + 8 < len; i++)
        if (mgmt_brick_on(v, i, n))
            off += (size_t)snprintf(buf + off, len - off, "%s%d", off ? "," : "", i);
}

/* Store V on every node of the volume and on this one. With !force every
 * node must take it; with force unreachable nodes are skipped (they catch
 * up... by a later store). */
int mgmt_store_everywhere(const ctx_t *c, const kbd_volume_t *v, bool force, char **out)
{
    node_t *nodes;
    int n = mgmt_volume_nodes(v, &nodes), rc = 0;
    char *text = kbd_volume_format(v);
    if (n < 0 || !text) {
        free(text);
        return mgmt_fail(out, -ENOMEM, "out of memory");
    }
    bool self_done = false;
    /* A volume that needs a newer release than 0.1 goes to no node below it
     * (a kembar 0.1 node would take it and ignore what it cannot honour). */
    char what[64];
    snprintf(what, sizeof(what), "volume '%s' (op-version %u) needs", v->name, v->op_version);
    for (int i = 0; i < n && !rc && v->op_version > 1; i++) {
        node_ver_t nv;
        int r = mgmt_node_version(nodes[i].host, nodes[i].port, &nv, out);
        if (r && !(force && (r == -ENOTCONN || r == -ETIMEDOUT || r == -ECONNREFUSED)))
            rc = r;
        else if (!r && nv.op_version < v->op_version)
            rc = mgmt_fail(out, -EPROTONOSUPPORT, "node %s:%u runs kembar %s, which %s >= %s", nodes[i].host,
                           nodes[i].port, nv.version, what, release_name(v->op_version));
    }
    for (int i = 0; i < n && !rc; i++) {
        char csv[1024], *reply = NULL;
        mgmt_local_csv(v, &nodes[i], csv, sizeof(csv));
        int r = mgmt_peer(nodes[i].host, nodes[i].port, &reply, 4, "peer", "store", csv, text);
        if (r && !(force && (r == -ENOTCONN || r == -ETIMEDOUT)))
            rc = mgmt_fail(out, r, "node %s:%u: %s", nodes[i].host, nodes[i].port, reply ? reply : strerror(-r));
        free(reply);
        self_done |= mgmt_is_self(c, &nodes[i]);
    }
    if (!rc && !self_done) {
        char *reply = NULL;
        int r = mgmt_peer(c->self_host, c->self_port, &reply, 4, "peer", "store", "", text);
        if (r)
            rc = mgmt_fail(out, r, "this node: %s", reply ? reply : strerror(-r));
        free(reply);
    }
    free(text);
    free(nodes);
    return rc;
}

int mgmt_unreachable(char **out, const char *host, uint16_t port, int r, const char *reply)
{
    if (r == -EACCES)
        return mgmt_fail(out, -EACCES, "node %s:%u does not take this node's commands (%s): it is not a member of "
                         "this cluster; on %s:%u run 'kembar peer token', then here 'kembar peer probe %s:%u TOKEN'",
                         host, port, reply ? reply : "refused", host, port, host, port);
    return mgmt_fail(out, -EHOSTUNREACH, "node %s:%u is unreachable%s%s", host, port, reply ? ": " : "",
                     reply ? reply : "");
}

/* Every node must answer a ping (used before changes). */
int mgmt_check_nodes(const kbd_volume_t *v, char **out)
{
    node_t *nodes;
    int n = mgmt_volume_nodes(v, &nodes), rc = 0;
    if (n < 0)
        return mgmt_fail(out, -ENOMEM, "out of memory");
    for (int i = 0; i < n && !rc; i++) {
        char *reply = NULL;
        int r = mgmt_peer(nodes[i].host, nodes[i].port, &reply, 2, "peer", "ping");
        if (r)
            rc = mgmt_unreachable(out, nodes[i].host, nodes[i].port, r, reply);
        free(reply);
    }
    free(nodes);
    return rc;
}

/* ---------------- versions (lib/version.h) ---------------- */

int mgmt_node_version(const char *host, uint16_t port, node_ver_t *nv, char **out)
{
    char *reply = NULL;
    *nv = (node_ver_t){ .proto_min = 1, .proto_max = 1, .op_version = 1 };
    snprintf(nv->version, sizeof(nv->version), "0.1.0");
    int rc = mgmt_peer(host, port, &reply, 2, "peer", KB_PEER_VERSION_OP);
    if (rc == -EINVAL) {
        free(reply);                    /* kembar 0.1 ("peer version: missing argument"): the defaults above */
        return 0;
    }
    if (rc) {
        mgmt_unreachable(out, host, port, rc, reply);
        free(reply);
        return rc;
    }
    char *save = NULL;
    for (char *t = reply ? strtok_r(reply, " \n", &save) : NULL; t; t = strtok_r(NULL, " \n", &save)) {
        char *eq = strchr(t, '=');
        if (!eq)
            continue;
        *eq++ = 0;
        if (strcmp(t, "version") == 0)
            snprintf(nv->version, sizeof(nv->version), "%s", eq);
        else if (strcmp(t, "proto-min") == 0)
            nv->proto_min = (uint32_t)strtoul(eq, NULL, 10);
        else if (strcmp(t, "proto-max") == 0)
            nv->proto_max = (uint32_t)strtoul(eq, NULL, 10);
        else if (strcmp(t, "features") == 0)
            nv->features = strtoull(eq, NULL, 16);
        else if (strcmp(t, "op-version") == 0)
            nv->op_version = (uint32_t)strtoul(eq, NULL, 10);
    }
    free(reply);
    nv->op_version = KB_MAX(nv->op_version, 1u);
    return 0;
}

int mgmt_min_op_version(const kbd_volume_t *v, uint32_t *min, char *min_who, size_t wholen, char **out)
{
    node_t *nodes;
    int n = mgmt_volume_nodes(v, &nodes), rc = 0;
    if (n < 0)
        return mgmt_fail(out, -ENOMEM, "out of memory");
    *min = UINT32_MAX;
    for (int i = 0; i < n && !rc; i++) {
        node_ver_t nv;
        if ((rc = mgmt_node_version(nodes[i].host, nodes[i].port, &nv, out)))
            break;
        if (nv.op_version < *min) {
            *min = nv.op_version;
            snprintf(min_who, wholen, "node %s:%u runs kembar %s", nodes[i].host, nodes[i].port, nv.version);
        }
    }
    free(nodes);
    return rc;
}

/* The clients attached to the bricks of V on node N: each line of PEER
 * "clients" is "ADDR VERSION WHO PROTO SW" (PROTO and SW since kembar 0.2;
 * server/serve.c). The first whose release is below NEED fails. */
static int clients_need(const node_t *n, const kbd_volume_t *v, uint32_t need, const char *what, char **out)
{
    char *reply = NULL, *save = NULL;
    int rc = mgmt_peer(n->host, n->port, &reply, 3, "peer", "clients", v->name);
    if (rc) {
        rc = mgmt_unreachable(out, n->host, n->port, rc, reply);
        free(reply);
        return rc;
    }
    for (char *l = reply ? strtok_r(reply, "\n", &save) : NULL; l && !rc; l = strtok_r(NULL, "\n", &save)) {
        char addr[64], who[128], sw[32] = "?";
        unsigned ver, proto = 1;
        if (sscanf(l, "%63s %u %127s %u %31s", addr, &ver, who, &proto, sw) < 3)
            continue;
        if (kb_op_version_of(sw) >= need)
            continue;
        rc = mgmt_fail(out, -EPROTONOSUPPORT, "client %s (%s, on %s:%u) runs kembar %s, which %s >= %s: upgrade it "
                       "or unmount it first", addr, who, n->host, n->port, strcmp(sw, "?") ? sw : "0.1",
                       what, release_name(need));
    }
    free(reply);
    return rc;
}

int mgmt_need_op_version(const kbd_volume_t *v, uint32_t need, bool clients, const char *what, char **out)
{
    if (need <= 1)
        return 0;
    node_t *nodes;
    int n = mgmt_volume_nodes(v, &nodes), rc = 0;
    if (n < 0)
        return mgmt_fail(out, -ENOMEM, "out of memory");
    for (int i = 0; i < n && !rc; i++) {
        node_ver_t nv;
        if ((rc = mgmt_node_version(nodes[i].host, nodes[i].port, &nv, out)))
            break;
        if (nv.op_version < need)
            rc = mgmt_fail(out, -EPROTONOSUPPORT, "node %s:%u runs kembar %s, which %s >= %s", nodes[i].host,
                           nodes[i].port, nv.version, what, release_name(need));
    }
    for (int i = 0; i < n && !rc && clients; i++)
        rc = clients_need(&nodes[i], v, need, what, out);
    free(nodes);
    return rc;
}

/* Prepare the bricks of V flagged in WANT (NULL: all), node by node; on a
 * failure the nodes already prepared are rolled back ("nothing half-made"). */
int mgmt_prepare_bricks(const kbd_volume_t *v, const bool *want, bool force, char **out)
{
    node_t *nodes;
    int nn = mgmt_volume_nodes(v, &nodes), rc = 0, prepared;
    if (nn < 0)
        return mgmt_fail(out, -ENOMEM, "out of memory");
    char volid[KB_GFID_STRLEN];
    kb_gfid_str(&v->id, volid);
    for (prepared = 0; prepared < nn && !rc; prepared++) {
        char *pargv[4 + 3 * 64], bidx[64][12], bids[64][KB_GFID_STRLEN], *reply = NULL;
        int pc = 0, m = 0;
        pargv[pc++] = "peer";
        pargv[pc++] = "prepare";
        pargv[pc++] = volid;
        pargv[pc++] = force ? "1" : "0";
        for (int b = 0; b < v->nbricks && m < 64; b++)
            if ((!want || want[b]) && mgmt_brick_on(v, b, &nodes[prepared])) {
                snprintf(bidx[m], sizeof(bidx[m]), "%d", b);
                pargv[pc++] = bidx[m];
                pargv[pc++] = kb_gfid_str(&v->bricks[b].id, bids[m]);
                pargv[pc++] = v->bricks[b].path;
                m++;
            }
        if (!m)
            continue;
        int r = peerv(nodes[prepared].host, nodes[prepared].port, &reply, pc, pargv);
        if (r)
            rc = mgmt_fail(out, r, "node %s:%u: %s", nodes[prepared].host, nodes[prepared].port, reply ? reply : strerror(-r));
        free(reply);
        if (r)
            break;
    }
    for (int k = 0; rc && k < prepared; k++)
        for (int b = 0; b < v->nbricks; b++)
            if ((!want || want[b]) && mgmt_brick_on(v, b, &nodes[k])) {
                char *reply = NULL;
                mgmt_peer(nodes[k].host, nodes[k].port, &reply, 3, "peer", "unprepare", v->bricks[b].path);
                free(reply);
            }
    free(nodes);
    return rc;
}

/* Undo mgmt_prepare_bricks (the definition could not be stored). */
void mgmt_unprepare_bricks(const kbd_volume_t *v, const bool *want)
{
    for (int b = 0; b < v->nbricks; b++)
        if (!want || want[b]) {
            char *reply = NULL;
            mgmt_peer(v->bricks[b].host, v->bricks[b].port, &reply, 3, "peer", "unprepare", v->bricks[b].path);
            free(reply);
        }
}

int mgmt_list_names(const ctx_t *c, char ***names, char **out)
{
    char *text = NULL;
    int rc = mgmt_peer(c->self_host, c->self_port, &text, 2, "peer", "list");
    if (rc) {
        mgmt_fail(out, rc, "%s", text ? text : "cannot list volumes");
        free(text);
        return rc;
    }
    int n = 0;
    char **v = calloc(1, sizeof(char *));
    char *save = NULL;
    for (char *t = strtok_r(text, "\n", &save); t && v; t = strtok_r(NULL, "\n", &save)) {
        char **nv = realloc(v, (size_t)(n + 2) * sizeof(char *));
        if (!nv)
            break;
        v = nv;
        v[n++] = strdup(t);
        v[n] = NULL;
    }
    free(text);
    *names = v;
    return n;
}
