/*
 * mgmt_trust.c — the peer verbs: who is in the cluster (trust.c has the
 * rules and the responder's side of the key exchange).
 *
 *   kembar peer token                   this node: a one-time join token
 *   kembar peer probe HOST[:PORT] TOKEN  hand the cluster key to HOST, which
 *                                        issued TOKEN; then check it answers
 *   kembar peer probe HOST[:PORT]        only check: does HOST accept us?
 *   kembar peer detach HOST[:PORT]       a new cluster key for every other
 *                                        member: HOST is out
 *   kembar peer list                     the members this node knows of and
 *                                        the release each runs
 *
 * Promises: a probe or detach that fails says which node and why, in one
 * line; detach refuses a node that still holds bricks; a member that cannot
 * be reached during a detach is named (it keeps the old key and must join
 * again with a token).
 */
#include <stdio.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "lib/version.h"
#include "server/mgmt.h"
#include "server/trust.h"

#define TOKEN_LEN 16

/* The initiator's side of a key exchange with HOST:PORT proved by SECRET:
 * hands KEY over. 0, or -errno with the reason in *out. */
static int kx_run(const char *host, uint16_t port, const char *purpose, const uint8_t *secret, size_t slen,
                  const uint8_t key[KB_AUTH_KEY_LEN], char **out)
{
    kb_kx_t mine;
    if (kb_kx_new(&mine))
        return mgmt_fail(out, -EIO, "key exchange: no key");
    char pub[2 * KB_KX_PUB + 1], nonce[2 * KB_KX_NONCE + 1];
    kb_hex(mine.pub, KB_KX_PUB, pub);
    kb_hex(mine.nonce, KB_KX_NONCE, nonce);
    char *reply = NULL;
    int rc = mgmt_peer(host, port, &reply, 5, "peer", "kx-offer", (char *)purpose, pub, nonce);
    char rpub_s[80] = "", rnonce_s[48] = "", proof_s[80] = "";
    uint8_t rpub[KB_KX_PUB], rnonce[KB_KX_NONCE], proof[32], t[KB_KX_TRANSCRIPT], sealed[KB_KX_SEALED];
    if (rc) {
        rc = mgmt_fail(out, rc, "%s:%u: %s", host, port, reply ? reply : strerror(-rc));
    } else if (!reply || sscanf(reply, "%79s %47s %79s", rpub_s, rnonce_s, proof_s) != 3 ||
               kb_unhex(rpub_s, rpub, sizeof(rpub)) || kb_unhex(rnonce_s, rnonce, sizeof(rnonce)) ||
               kb_unhex(proof_s, proof, sizeof(proof))) {
        rc = mgmt_fail(out, -EBADMSG, "%s:%u: malformed key exchange answer", host, port);
    } else {
        kb_kx_transcript(t, purpose, mine.pub, mine.nonce, rpub, rnonce);
        if (!kb_kx_proof_ok(secret, slen, "kx-offer", t, sizeof(t), NULL, 0, proof))
            rc = mgmt_fail(out, -EACCES, "%s:%u does not know the %s: refused", host, port,
                           strcmp(purpose, "join") == 0 ? "token (a typo, or another node's?)" : "cluster key");
        else if (kb_kx_seal(&mine, rpub, t, key, sealed))
            rc = mgmt_fail(out, -EIO, "key exchange: cannot seal the key");
    }
    free(reply);
    reply = NULL;
    if (!rc) {
        char sealed_s[2 * KB_KX_SEALED + 1], mine_proof[65];
        uint8_t p[32];
        kb_kx_proof(secret, slen, "kx-install", t, sizeof(t), sealed, sizeof(sealed), p);
        kb_hex(sealed, sizeof(sealed), sealed_s);
        kb_hex(p, 32, mine_proof);
        rc = mgmt_peer(host, port, &reply, 5, "peer", "kx-install", rnonce_s, sealed_s, mine_proof);
        if (rc)
            rc = mgmt_fail(out, rc, "%s:%u: %s", host, port, reply ? reply : strerror(-rc));
        free(reply);
    }
    kb_kx_free(&mine);
    return rc;
}

/* Does HOST:PORT take our signed calls? 0, or -errno with the reason. */
static int ping(const char *host, uint16_t port, char **why)
{
    *why = NULL;
    return mgmt_peer(host, port, why, 2, "peer", "ping");
}

static int parse_node(const char *spec, char **host, uint16_t *port, char **out)
{
    if (kb_parse_hostport(spec, host, port, KB_DEFAULT_PORT))
        return mgmt_fail(out, -EINVAL, "bad node '%s' (HOST[:PORT])", spec);
    return 0;
}

static int cmd_probe(const ctx_t *c, int argc, char **argv, char **out, outbuf_t *o)
{
    if (argc < 3 || argc > 4)
        return mgmt_fail(out, -EINVAL, "usage: kembar peer probe HOST[:PORT] [TOKEN]");
    char *host = NULL, *why = NULL, hp[300];
    uint16_t port;
    int rc = parse_node(argv[2], &host, &port, out);
    if (rc)
        return rc;
    snprintf(hp, sizeof(hp), "%s:%u", host, port);
    if (argc == 4) {
        uint8_t tok[TOKEN_LEN], key[KB_AUTH_KEY_LEN];
        if (kb_unhex(argv[3], tok, sizeof(tok))) {
            free(host);
            return mgmt_fail(out, -EINVAL, "a join token is %d hex digits (from 'kembar peer token' on %s)",
                             2 * TOKEN_LEN, hp);
        }
        kbd_trust_key(key);
        rc = kx_run(host, port, "join", tok, sizeof(tok), key, out);
        OPENSSL_cleanse(key, sizeof(key));
        OPENSSL_cleanse(tok, sizeof(tok));
    }
    if (!rc && (rc = ping(host, port, &why)) != 0) {
        rc = mgmt_fail(out, rc, "%s does not accept this cluster's key (%s): on %s run 'kembar peer token', "
                                "then here 'kembar peer probe %s TOKEN'",
                       hp, why ? why : strerror(-rc), hp, hp);
    }
    free(why);
    free(host);
    if (rc)
        return rc;
    kbd_trust_peers_edit(hp, true);
    if (c->json)
        mgmt_outf(o, "{\"peer\":\"%s\",\"member\":true}\n", hp);
    else
        mgmt_outf(o, "peer probe: %s %s\n", hp, argc == 4 ? "joined the cluster" : "is a member");
    return 0;
}

/* Every node this one knows of: the peers file and the nodes of its volumes. */
static int known_nodes(const ctx_t *c, node_t **nodes, char **out)
{
    int n = 0, cap = 16;
    node_t *v = calloc((size_t)cap, sizeof(*v));
    if (!v)
        return mgmt_fail(out, -ENOMEM, "out of memory");
    char **lines = NULL, **names = NULL;
    int np = kbd_trust_peers(&lines);
    int nv = mgmt_list_names(c, &names, out);
    for (int i = 0; i < np + (nv > 0 ? nv : 0); i++) {
        node_t add[64];
        int na = 0;
        if (i < np) {
            if (!kb_parse_hostport(lines[i], &add[0].host, &add[0].port, KB_DEFAULT_PORT))
                na = 1;
        } else {
            kbd_volume_t *vol = mgmt_get_volume(c, names[i - np], out);
            node_t *vn = NULL;
            int k = vol ? mgmt_volume_nodes(vol, &vn) : 0;
            for (int j = 0; j < k && na < 64; j++)   /* vn's hosts are the definition's */
                add[na++] = (node_t){ strdup(vn[j].host), vn[j].port };
            free(vn);
            kbd_volume_free(vol);
        }
        for (int a = 0; a < na; a++) {
            bool dup = mgmt_is_self(c, &add[a]);
            for (int j = 0; j < n && !dup; j++)
                dup = v[j].port == add[a].port && strcmp(v[j].host, add[a].host) == 0;
            if (dup || !add[a].host) {
                free(add[a].host);
                continue;
            }
            if (n == cap) {
                node_t *nv2 = realloc(v, (size_t)(cap *= 2) * sizeof(*v));
                if (!nv2) {
                    free(add[a].host);
                    continue;
                }
                v = nv2;
            }
            v[n++] = add[a];
        }
    }
    for (int i = 0; i < np; i++)
        free(lines[i]);
    free(lines);
    for (int i = 0; nv > 0 && i < nv; i++)
        free(names[i]);
    free(names);
    free(*out);
    *out = NULL;
    *nodes = v;
    return n;
}

static void free_nodes(node_t *v, int n)
{
    for (int i = 0; i < n; i++)
        free(v[i].host);
    free(v);
}

static int cmd_detach(const ctx_t *c, int argc, char **argv, char **out, outbuf_t *o)
{
    if (argc != 3)
        return mgmt_fail(out, -EINVAL, "usage: kembar peer detach HOST[:PORT]");
    char *host = NULL, hp[300];
    uint16_t port;
    int rc = parse_node(argv[2], &host, &port, out);
    if (rc)
        return rc;
    snprintf(hp, sizeof(hp), "%s:%u", host, port);
    node_t gone = { host, port };
    if (mgmt_is_self(c, &gone)) {
        free(host);
        return mgmt_fail(out, -EINVAL, "a node cannot detach itself: run this on another member");
    }
    /* A node that holds bricks stays: its volumes need it. */
    char **names = NULL;
    int nv = mgmt_list_names(c, &names, out);
    for (int i = 0; i < nv && !rc; i++) {
        kbd_volume_t *v = mgmt_get_volume(c, names[i], out);
        for (int b = 0; v && b < v->nbricks && !rc; b++)
            if (mgmt_brick_on(v, b, &gone))
                rc = mgmt_fail(out, -EBUSY, "%s holds bricks of volume '%s': remove or replace them first", hp,
                               v->name);
        kbd_volume_free(v);
    }
    for (int i = 0; i < nv; i++)
        free(names[i]);
    free(names);
    if (rc) {
        free(host);
        return rc;
    }
    node_t *nodes = NULL;
    int n = known_nodes(c, &nodes, out);
    uint8_t old[KB_AUTH_KEY_LEN], key[KB_AUTH_KEY_LEN];
    if (n < 0 || RAND_bytes(key, sizeof(key)) != 1) {
        free(host);
        return n < 0 ? n : mgmt_fail(out, -EIO, "no random bytes for a new key");
    }
    kbd_trust_key(old);
    int moved = 0;
    outbuf_t missed = { 0 };
    for (int i = 0; i < n; i++) {
        if (nodes[i].port == port && strcmp(nodes[i].host, host) == 0)
            continue;
        char *why = NULL;
        if (kx_run(nodes[i].host, nodes[i].port, "rotate", old, sizeof(old), key, &why) == 0)
            moved++;
        else
            mgmt_outf(&missed, "warning: %s:%u keeps the old key (%s): when it is back, on it run 'kembar peer "
                               "token', then here 'kembar peer probe %s:%u TOKEN'\n",
                      nodes[i].host, nodes[i].port, why ? why : "unreachable", nodes[i].host, nodes[i].port);
        free(why);
    }
    char err[256] = "";
    rc = kbd_trust_install_key(key, err, sizeof(err));
    OPENSSL_cleanse(key, sizeof(key));
    OPENSSL_cleanse(old, sizeof(old));
    free_nodes(nodes, n);
    free(host);
    if (rc) {
        free(missed.p);
        return mgmt_fail(out, rc, "%s", err);
    }
    kbd_trust_peers_edit(hp, false);
    if (missed.p)
        mgmt_outf(o, "%s", missed.p);
    free(missed.p);
    if (c->json)
        mgmt_outf(o, "{\"detached\":\"%s\",\"members_rekeyed\":%d}\n", hp, moved);
    else
        mgmt_outf(o, "peer detach: %s is out; a new cluster key is on this node and %d other member%s\n", hp,
                  moved, moved == 1 ? "" : "s");
    return 0;
}

static int cmd_list(const ctx_t *c, char **out, outbuf_t *o)
{
    node_t *nodes = NULL;
    int n = known_nodes(c, &nodes, out);
    if (n < 0)
        return n;
    if (c->json)
        mgmt_outf(o, "{\"self\":\"%s:%u\",\"version\":\"%s\",\"op_version\":%u,\"peers\":[", c->self_host,
                  c->self_port, KB_VERSION, KB_OP_VERSION);
    else
        mgmt_outf(o, "%-32s %s\n%-32s this node (kembar %s)\n", "Node", "State", c->self_host, KB_VERSION);
    for (int i = 0; i < n; i++) {
        char *why = NULL;
        int rc = ping(nodes[i].host, nodes[i].port, &why);
        node_ver_t nv = { .version = "-" };
        if (!rc) {                       /* what it runs (a kembar 0.1 node: 0.1.0) */
            char *ignore = NULL;
            if (mgmt_node_version(nodes[i].host, nodes[i].port, &nv, &ignore))
                snprintf(nv.version, sizeof(nv.version), "?");
            free(ignore);
        }
        char hp[300];
        snprintf(hp, sizeof(hp), "%s:%u", nodes[i].host, nodes[i].port);
        if (c->json) {
            mgmt_outf(o, "%s{\"node\":", i ? "," : "");
            mgmt_outj(o, hp);
            mgmt_outf(o, ",\"member\":%s,\"version\":", rc ? "false" : "true");
            mgmt_outj(o, nv.version);
            mgmt_outf(o, ",\"op_version\":%u,\"protocol\":\"%u-%u\",\"reason\":", nv.op_version, nv.proto_min,
                      nv.proto_max);
            mgmt_outj(o, rc ? (why ? why : strerror(-rc)) : "");
            mgmt_outf(o, "}");
        } else {
            if (rc)
                mgmt_outf(o, "%-32s not reachable as a member: %s\n", hp, why ? why : strerror(-rc));
            else
                mgmt_outf(o, "%-32s member (kembar %s)\n", hp, nv.version);
        }
        free(why);
    }
    if (c->json)
        mgmt_outf(o, "]}\n");
    free_nodes(nodes, n);
    return 0;
}

int mgmt_cmd_peer(const ctx_t *c, int argc, char **argv, char **out, outbuf_t *o)
{
    const char *verb = argc > 1 ? argv[1] : "";
    if (strcmp(verb, "token") == 0) {
        char tok[2 * TOKEN_LEN + 1];
        if (kbd_trust_new_token(tok, sizeof(tok)))
            return mgmt_fail(out, -EIO, "cannot make a token");
        if (c->json)
            mgmt_outf(o, "{\"token\":\"%s\",\"valid_minutes\":15}\n", tok);
        else
            mgmt_outf(o, "%s\n(valid 15 minutes, once: on a member run 'kembar peer probe %s:%u %s')\n", tok,
                      c->self_host, c->self_port, tok);
        return 0;
    }
    if (strcmp(verb, "probe") == 0)
        return cmd_probe(c, argc, argv, out, o);
    if (strcmp(verb, "detach") == 0)
        return cmd_detach(c, argc, argv, out, o);
    if (strcmp(verb, "list") == 0 || strcmp(verb, "status") == 0)
        return cmd_list(c, out, o);
    return mgmt_fail(out, -EINVAL, "usage: kembar peer token | probe HOST[:PORT] [TOKEN] | detach HOST[:PORT] | list");
}
