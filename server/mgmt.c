/*
 * mgmt.c — CLI commands, run on kembard's management thread.
 *
 * A CLI command is a dialogue with several nodes (check, prepare bricks,
 * store the definition, report). It runs here, one command at a time, with
 * blocking PEER calls to every node involved — this node included, over TCP,
 * so there is one code path and the loop thread's state is never shared.
 *
 * "Nothing half-created": create checks every node first, prepares the
 * bricks (rolled back on any failure), and only then stores the definition.
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <unistd.h>
#include "lib/log.h"
#include "rpc/sync.h"
#include "server/kembard.h"

#define PEER_TIMEOUT_MS 15000

/* ---------------- output buffer ---------------- */

typedef struct outbuf { char *p; size_t len, cap; } outbuf_t;

static void outf(outbuf_t *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void outf(outbuf_t *o, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    int n = vasprintf(&s, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if (o->len + (size_t)n + 1 > o->cap) {
        size_t cap = KB_MAX(o->cap * 2, o->len + (size_t)n + 256);
        char *p = realloc(o->p, cap);
        if (!p) {
            free(s);
            return;
        }
        o->p = p;
        o->cap = cap;
    }
    memcpy(o->p + o->len, s, (size_t)n + 1);
    o->len += (size_t)n;
    free(s);
}

/* JSON string (quoted, escaped). */
static void outj(outbuf_t *o, const char *s)
{
    outf(o, "\"");
    for (; s && *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            outf(o, "\\%c", ch);
        else if (ch < 0x20)
            outf(o, "\\u%04x", ch);
        else
            outf(o, "%c", ch);
    }
    outf(o, "\"");
}

static int fail(char **out, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char **out, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    free(*out);
    if (vasprintf(out, fmt, ap) < 0)
        *out = NULL;
    va_end(ap);
    return rc;
}

/* ---------------- peers ---------------- */

typedef struct node { char *host; uint16_t port; } node_t;

typedef struct ctx {
    const char *self_host;
    uint16_t self_port;
    bool json;
} ctx_t;

static int peerv(const char *host, uint16_t port, char **out, int argc, char **argv)
{
    char err[512] = "";
    int rc = rpc_sync_argv(host, port, KB_PROC_PEER, argc, argv, PEER_TIMEOUT_MS, out, err, sizeof(err));
    if (rc && !*out)
        *out = strdup(err);
    return rc;
}

static int peer(const char *host, uint16_t port, char **out, int argc, ...)
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
static bool brick_on(const kbd_volume_t *v, int b, const node_t *n)
{
    return v->bricks[b].port == n->port && strcmp(v->bricks[b].host, n->host) == 0;
}

/* Unique nodes of a volume, in brick order. */
static int volume_nodes(const kbd_volume_t *v, node_t **nodes)
{
    node_t *n = calloc((size_t)v->nbricks, sizeof(node_t));
    int cnt = 0;
    if (!n)
        return -ENOMEM;
    for (int i = 0; i < v->nbricks; i++) {
        int j;
        for (j = 0; j < cnt; j++)
            if (brick_on(v, i, &n[j]))
                break;
        if (j == cnt) {
            n[cnt].host = v->bricks[i].host;
            n[cnt++].port = v->bricks[i].port;
        }
    }
    *nodes = n;
    return cnt;
}

static bool is_self(const ctx_t *c, const node_t *n)
{
    return n->port == c->self_port && strcmp(n->host, c->self_host) == 0;
}

/* The definition as this node knows it. */
static kbd_volume_t *get_volume(const ctx_t *c, const char *name, char **out)
{
    char *text = NULL, err[256];
    int rc = peer(c->self_host, c->self_port, &text, 3, "peer", "get", (char *)name);
    if (rc) {
        free(text);
        fail(out, rc, rc == -ENOENT ? "volume '%s' does not exist" : "cannot read volume '%s'", name);
        return NULL;
    }
    kbd_volume_t *v = kbd_volume_parse(text, err, sizeof(err));
    free(text);
    if (!v)
        fail(out, -EIO, "volume '%s': %s", name, err);
    return v;
}

/* Local brick indices of NODE as "i,j,k". */
static void local_csv(const kbd_volume_t *v, const node_t *n, char *buf, size_t len)
{
    buf[0] = 0;
    size_t off = 0;
    for (int i = 0; i < v->nbricks && off + 8 < len; i++)
        if (brick_on(v, i, n))
            off += (size_t)snprintf(buf + off, len - off, "%s%d", off ? "," : "", i);
}

/* Store V on every node of the volume and on this one. With !force every
 * node must take it; with force unreachable nodes are skipped (they catch
 * up... by a later store). */
static int store_everywhere(const ctx_t *c, const kbd_volume_t *v, bool force, char **out)
{
    node_t *nodes;
    int n = volume_nodes(v, &nodes), rc = 0;
    char *text = kbd_volume_format(v);
    if (n < 0 || !text) {
        free(text);
        return fail(out, -ENOMEM, "out of memory");
    }
    bool self_done = false;
    for (int i = 0; i < n && !rc; i++) {
        char csv[1024], *reply = NULL;
        local_csv(v, &nodes[i], csv, sizeof(csv));
        int r = peer(nodes[i].host, nodes[i].port, &reply, 4, "peer", "store", csv, text);
        if (r && !(force && (r == -ENOTCONN || r == -ETIMEDOUT)))
            rc = fail(out, r, "node %s:%u: %s", nodes[i].host, nodes[i].port, reply ? reply : strerror(-r));
        free(reply);
        self_done |= is_self(c, &nodes[i]);
    }
    if (!rc && !self_done) {
        char *reply = NULL;
        int r = peer(c->self_host, c->self_port, &reply, 4, "peer", "store", "", text);
        if (r)
            rc = fail(out, r, "this node: %s", reply ? reply : strerror(-r));
        free(reply);
    }
    free(text);
    free(nodes);
    return rc;
}

/* Every node must answer a ping (used before changes). */
static int check_nodes(const kbd_volume_t *v, char **out)
{
    node_t *nodes;
    int n = volume_nodes(v, &nodes), rc = 0;
    if (n < 0)
        return fail(out, -ENOMEM, "out of memory");
    for (int i = 0; i < n && !rc; i++) {
        char *reply = NULL;
        if (peer(nodes[i].host, nodes[i].port, &reply, 2, "peer", "ping"))
            rc = fail(out, -EHOSTUNREACH, "node %s:%u is unreachable", nodes[i].host, nodes[i].port);
        free(reply);
    }
    free(nodes);
    return rc;
}

/* Prepare the bricks of V flagged in WANT (NULL: all), node by node; on a
 * failure the nodes already prepared are rolled back ("nothing half-made"). */
static int prepare_bricks(const kbd_volume_t *v, const bool *want, bool force, char **out)
{
    node_t *nodes;
    int nn = volume_nodes(v, &nodes), rc = 0, prepared;
    if (nn < 0)
        return fail(out, -ENOMEM, "out of memory");
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
            if ((!want || want[b]) && brick_on(v, b, &nodes[prepared])) {
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
            rc = fail(out, r, "node %s:%u: %s", nodes[prepared].host, nodes[prepared].port, reply ? reply : strerror(-r));
        free(reply);
        if (r)
            break;
    }
    for (int k = 0; rc && k < prepared; k++)
        for (int b = 0; b < v->nbricks; b++)
            if ((!want || want[b]) && brick_on(v, b, &nodes[k])) {
                char *reply = NULL;
                peer(nodes[k].host, nodes[k].port, &reply, 3, "peer", "unprepare", v->bricks[b].path);
                free(reply);
            }
    free(nodes);
    return rc;
}

/* Undo prepare_bricks (the definition could not be stored). */
static void unprepare_bricks(const kbd_volume_t *v, const bool *want)
{
    for (int b = 0; b < v->nbricks; b++)
        if (!want || want[b]) {
            char *reply = NULL;
            peer(v->bricks[b].host, v->bricks[b].port, &reply, 3, "peer", "unprepare", v->bricks[b].path);
            free(reply);
        }
}

/* ---------------- volume create ---------------- */

static int cmd_create(const ctx_t *c, int argc, char **argv, char **out, outbuf_t *o)
{
    /* create NAME [replica N [arbiter 1]] BRICK... [force] */
    if (argc < 2)
        return fail(out, -EINVAL, "usage: volume create NAME [replica N [arbiter 1]] HOST[:PORT]:/PATH... [force]");
    const char *name = argv[1];
    if (!kbd_volname_ok(name))
        return fail(out, -EINVAL, "invalid volume name '%s' (letters, digits, - and _, at most 64)", name);
    int i = 2, replica = 1, arbiter = 0;
    bool force = false, replica_given = false;
    if (i < argc && strcmp(argv[i], "replica") == 0) {
        char *end;
        if (i + 1 >= argc || (replica = (int)strtol(argv[i + 1], &end, 10)) < 1 || *end || replica > 16)
            return fail(out, -EINVAL, "replica count must be a number from 1 to %d", 16);
        replica_given = true;
        i += 2;
        if (i < argc && strcmp(argv[i], "arbiter") == 0) {
            if (i + 1 >= argc || strcmp(argv[i + 1], "1") != 0)
                return fail(out, -EINVAL, "arbiter count must be 1");
            if (replica != 2)
                return fail(out, -EINVAL, "an arbiter goes with replica 2 (replica 2 arbiter 1)");
            arbiter = 1;
            i += 2;
        }
    }
    if (argc > i && strcmp(argv[argc - 1], "force") == 0) {
        force = true;
        argc--;
    }
    int nb = argc - i;
    int setsz = replica + arbiter;
    if (nb < 1)
        return fail(out, -EINVAL, "no bricks given");
    if (nb % setsz)
        return fail(out, -EINVAL, "%d bricks do not make whole replica sets of %d%s", nb, setsz,
                    arbiter ? " (replica 2 + arbiter 1)" : "");
    kbd_volume_t *v = kb_zalloc(sizeof(*v));
    if (!v || !(v->opts = kb_opts_new()) || !(v->bricks = calloc((size_t)nb, sizeof(kbd_brick_t))) ||
        !(v->name = strdup(name))) {
        kbd_volume_free(v);
        return fail(out, -ENOMEM, "out of memory");
    }
    v->replica = replica;
    v->arbiter = arbiter;
    v->version = 1;
    v->status = KBD_VOL_CREATED;
    kb_gfid_generate(&v->id);
    int rc = 0;
    char err[512];
    for (int b = 0; b < nb && !rc; b++) {
        if (kbd_brick_parse(argv[i + b], &v->bricks[b], err, sizeof(err))) {
            rc = fail(out, -EINVAL, "%s", err);
            break;
        }
        v->nbricks++;
        kb_gfid_generate(&v->bricks[b].id);
        for (int k = 0; k < b; k++)
            if (v->bricks[k].port == v->bricks[b].port && strcmp(v->bricks[k].host, v->bricks[b].host) == 0 &&
                strcmp(v->bricks[k].path, v->bricks[b].path) == 0)
                rc = fail(out, -EINVAL, "brick %s is given twice", argv[i + b]);
    }
    if (!rc) {
        char *reply = NULL;
        if (peer(c->self_host, c->self_port, &reply, 3, "peer", "get", (char *)name) == 0)
            rc = fail(out, -EEXIST, "volume '%s' already exists", name);
        free(reply);
    }
    node_t *nodes = NULL;
    int nn = rc ? 0 : volume_nodes(v, &nodes);
    /* Every node reachable, and none knows the name yet. */
    for (int k = 0; k < nn && !rc; k++) {
        char *reply = NULL;
        int r = peer(nodes[k].host, nodes[k].port, &reply, 3, "peer", "get", (char *)name);
        if (r == 0)
            rc = fail(out, -EEXIST, "volume '%s' already exists", name);
        else if (r != -ENOENT)
            rc = fail(out, -EHOSTUNREACH, "node %s:%u is unreachable", nodes[k].host, nodes[k].port);
        free(reply);
    }
    char volid[KB_GFID_STRLEN];
    kb_gfid_str(&v->id, volid);
    if (!rc)
        rc = prepare_bricks(v, NULL, force, out);
    if (!rc && (rc = store_everywhere(c, v, false, out)))
        unprepare_bricks(v, NULL);
    if (rc) {
    } else {
        if (replica == 2 && !arbiter && !force && !c->json)
            outf(o, "warning: replica 2 without an arbiter can split-brain; consider 'replica 2 arbiter 1'\n");
        if (c->json) {
            outf(o, "{\"volume\":");
            outj(o, name);
            outf(o, ",\"id\":\"%s\",\"created\":true}\n", volid);
        } else {
            outf(o, "volume create: %s: success%s\n", name, replica_given ? "" : "");
        }
    }
    free(nodes);
    kbd_volume_free(v);
    return rc;
}

/* ---------------- start / stop / delete / set ---------------- */

static int cmd_state(const ctx_t *c, int argc, char **argv, int want, char **out, outbuf_t *o)
{
    if (argc < 2)
        return fail(out, -EINVAL, "usage: volume %s NAME [force]", argv[0]);
    bool force = argc > 2 && strcmp(argv[2], "force") == 0;
    kbd_volume_t *v = get_volume(c, argv[1], out);
    if (!v)
        return -ENOENT;
    int rc = 0;
    if (v->status == want && !force)
        rc = fail(out, -EALREADY, "volume '%s' is already %s", v->name, kbd_status_name(want));
    else if (!force)
        rc = check_nodes(v, out);
    if (!rc) {
        v->status = want;
        v->version++;
        rc = store_everywhere(c, v, force, out);
    }
    if (!rc) {
        if (c->json) {
            outf(o, "{\"volume\":");
            outj(o, v->name);
            outf(o, ",\"status\":\"%s\"}\n", kbd_status_name(want));
        } else {
            outf(o, "volume %s: %s: success\n", argv[0], v->name);
        }
    }
    kbd_volume_free(v);
    return rc;
}

static int cmd_delete(const ctx_t *c, int argc, char **argv, char **out, outbuf_t *o)
{
    if (argc < 2)
        return fail(out, -EINVAL, "usage: volume delete NAME");
    kbd_volume_t *v = get_volume(c, argv[1], out);
    if (!v)
        return -ENOENT;
    int rc = 0;
    if (v->status == KBD_VOL_STARTED)
        rc = fail(out, -EBUSY, "volume '%s' is started; stop it first", v->name);
    if (!rc)
        rc = check_nodes(v, out);
    if (!rc) {
        node_t *nodes;
        int n = volume_nodes(v, &nodes);
        bool self_done = false;
        for (int i = 0; i < n; i++) {
            char *reply = NULL;
            int r = peer(nodes[i].host, nodes[i].port, &reply, 3, "peer", "delete", v->name);
            if (r && !rc)
                rc = fail(out, r, "node %s:%u: %s", nodes[i].host, nodes[i].port, reply ? reply : strerror(-r));
            free(reply);
            self_done |= is_self(c, &nodes[i]);
        }
        if (!self_done) {
            char *reply = NULL;
            peer(c->self_host, c->self_port, &reply, 3, "peer", "delete", v->name);
            free(reply);
        }
        free(nodes);
    }
    if (!rc)
        outf(o, c->json ? "{\"volume\":\"%s\",\"deleted\":true}\n" : "volume delete: %s: success\n", v->name);
    kbd_volume_free(v);
    return rc;
}

static int cmd_set(const ctx_t *c, int argc, char **argv, char **out, outbuf_t *o)
{
    if (argc < 4)
        return fail(out, -EINVAL, "usage: volume set NAME KEY VALUE");
    const char *type = NULL;
    const kb_option_def_t *def = kbd_option_find(argv[2], &type);
    if (!def)
        return fail(out, -EINVAL, "unknown option '%s' (see 'kembar volume set help')", argv[2]);
    char err[256];
    if (kb_opt_check(def, argv[3], err, sizeof(err)))
        return fail(out, -EINVAL, "%s", err);
    kbd_volume_t *v = get_volume(c, argv[1], out);
    if (!v)
        return -ENOENT;
    int rc = kb_opts_set(v->opts, argv[2], argv[3]);
    if (!rc) {
        v->version++;
        rc = store_everywhere(c, v, false, out);
    } else {
        rc = fail(out, rc, "out of memory");
    }
    if (!rc)
        outf(o, c->json ? "{\"volume\":\"%s\",\"set\":true}\n" : "volume set: %s: success\n", v->name);
    kbd_volume_free(v);
    return rc;
}

static int cmd_set_help(const ctx_t *c, outbuf_t *o)
{
    for (size_t i = 0; i < kb_xlator_ntypes; i++) {
        const kb_xlator_type_t *t = kb_xlator_types[i];
        for (const kb_option_def_t *d = t ? t->options : NULL; d && d->key; d++)
            if (d->volume_key)
                outf(o, "%s\t%s\t%s\t%s\n", d->volume_key, d->dflt ? d->dflt : "-", t->name, d->description);
    }
    for (const char *k = "auth.allow"; k; k = strcmp(k, "auth.allow") == 0 ? "auth.reject" : NULL) {
        const kb_option_def_t *d = kbd_option_find(k, NULL);
        if (d)
            outf(o, "%s\t%s\t%s\t%s\n", d->volume_key, d->dflt ? d->dflt : "-", "volume", d->description);
    }
    return 0;
}

static int cmd_get(const ctx_t *c, int argc, char **argv, char **out, outbuf_t *o)
{
    if (argc < 2)
        return fail(out, -EINVAL, "usage: volume get NAME [KEY]");
    kbd_volume_t *v = get_volume(c, argv[1], out);
    if (!v)
        return -ENOENT;
    int rc = 0;
    if (argc > 2) {
        const kb_option_def_t *def = kbd_option_find(argv[2], NULL);
        if (!def) {
            rc = fail(out, -EINVAL, "unknown option '%s'", argv[2]);
        } else {
            const char *val = kb_opts_raw(v->opts, argv[2]);
            if (c->json) {
                outf(o, "{");
                outj(o, argv[2]);
                outf(o, ":");
                outj(o, val ? val : def->dflt ? def->dflt : "");
                outf(o, "}\n");
            } else {
                outf(o, "%s %s\n", argv[2], val ? val : def->dflt ? def->dflt : "");
            }
        }
    } else {
        outf(o, c->json ? "{" : "");
        for (size_t i = 0; i < kb_opts_count(v->opts); i++) {
            const char *k, *val;
            kb_opts_at(v->opts, i, &k, &val);
            if (c->json) {
                outf(o, i ? "," : "");
                outj(o, k);
                outf(o, ":");
                outj(o, val);
            } else {
                outf(o, "%s %s\n", k, val);
            }
        }
        outf(o, c->json ? "}\n" : "");
    }
    kbd_volume_free(v);
    return rc;
}

/* ---------------- info / list / status ---------------- */

static const char *vol_type(const kbd_volume_t *v)
{
    int sets = v->nbricks / kbd_set_size(v);
    if (kbd_set_size(v) == 1)
        return sets > 1 ? "Distribute" : "Plain";
    return sets > 1 ? "Distributed-Replicate" : "Replicate";
}

static void info_one(const ctx_t *c, const kbd_volume_t *v, outbuf_t *o, bool first)
{
    char id[KB_GFID_STRLEN];
    kb_gfid_str(&v->id, id);
    int k = kbd_set_size(v);
    if (c->json) {
        outf(o, "%s{\"name\":", first ? "" : ",");
        outj(o, v->name);
        outf(o, ",\"id\":\"%s\",\"type\":\"%s\",\"status\":\"%s\",\"replica\":%d,\"arbiter\":%d,"
                "\"sets\":%d,\"version\":%u,\"bricks\":[",
             id, vol_type(v), kbd_status_name(v->status), v->replica, v->arbiter, v->nbricks / k, v->version);
        for (int i = 0; i < v->nbricks; i++) {
            char *bs = kbd_brick_str(&v->bricks[i]);
            outf(o, "%s{\"brick\":", i ? "," : "");
            outj(o, bs);
            outf(o, ",\"arbiter\":%s}", v->arbiter && i % k == k - 1 ? "true" : "false");
            free(bs);
        }
        outf(o, "],\"options\":{");
        for (size_t i = 0; i < kb_opts_count(v->opts); i++) {
            const char *key, *val;
            kb_opts_at(v->opts, i, &key, &val);
            outf(o, i ? "," : "");
            outj(o, key);
            outf(o, ":");
            outj(o, val);
        }
        outf(o, "}}");
        return;
    }
    outf(o, "%sVolume Name: %s\nType: %s\nVolume ID: %s\nStatus: %s\n", first ? "" : "\n", v->name,
         vol_type(v), id, kbd_status_name(v->status));
    if (k > 1)
        outf(o, "Number of Bricks: %d x (%d%s) = %d\n", v->nbricks / k, v->replica, v->arbiter ? " + 1 arbiter" : "",
             v->nbricks);
    else
        outf(o, "Number of Bricks: %d\n", v->nbricks);
    outf(o, "Bricks:\n");
    for (int i = 0; i < v->nbricks; i++) {
        char *bs = kbd_brick_str(&v->bricks[i]);
        outf(o, "Brick%d: %s%s\n", i + 1, bs ? bs : "?", v->arbiter && i % k == k - 1 ? " (arbiter)" : "");
        free(bs);
    }
    if (kb_opts_count(v->opts)) {
        outf(o, "Options Reconfigured:\n");
        for (size_t i = 0; i < kb_opts_count(v->opts); i++) {
            const char *key, *val;
            kb_opts_at(v->opts, i, &key, &val);
            outf(o, "%s: %s\n", key, val);
        }
    }
}

static int list_names(const ctx_t *c, char ***names, char **out)
{
    char *text = NULL;
    int rc = peer(c->self_host, c->self_port, &text, 2, "peer", "list");
    if (rc) {
        fail(out, rc, "%s", text ? text : "cannot list volumes");
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

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int cmd_info(const ctx_t *c, int argc, char **argv, char **out, outbuf_t *o, bool list_only)
{
    if (argc >= 2 && !list_only) {
        kbd_volume_t *v = get_volume(c, argv[1], out);
        if (!v)
            return -ENOENT;
        if (c->json)
            outf(o, "[");
        info_one(c, v, o, true);
        if (c->json)
            outf(o, "]\n");
        kbd_volume_free(v);
        return 0;
    }
    char **names;
    int n = list_names(c, &names, out);
    if (n < 0)
        return n;
    qsort(names, (size_t)n, sizeof(char *), cmp_str);
    if (c->json)
        outf(o, "[");
    else if (n == 0)
        outf(o, list_only ? "No volumes present\n" : "No volumes present\n");
    for (int i = 0; i < n; i++) {
        if (list_only) {
            if (c->json) {
                outf(o, i ? "," : "");
                outj(o, names[i]);
            } else {
                outf(o, "%s\n", names[i]);
            }
        } else {
            char *why = NULL;
            kbd_volume_t *v = get_volume(c, names[i], &why);
            if (v)
                info_one(c, v, o, i == 0);
            kbd_volume_free(v);
            free(why);
        }
        free(names[i]);
    }
    free(names);
    if (c->json)
        outf(o, "]\n");
    return 0;
}

typedef struct brick_state {
    bool online;
    int pid, clients, pending;
    unsigned port;
    unsigned long long total, avail, inodes, ifree;
    char reason[256];
} brick_state_t;

/* Ask brick I's node how the brick is (peer brick-status). */
static void brick_state(const kbd_volume_t *v, int i, brick_state_t *bs)
{
    memset(bs, 0, sizeof(*bs));
    bs->port = v->bricks[i].port;
    char *reply = NULL;
    if (peer(v->bricks[i].host, v->bricks[i].port, &reply, 3, "peer", "brick-status", v->name) || !reply) {
        snprintf(bs->reason, sizeof(bs->reason), "node unreachable");
        free(reply);
        return;
    }
    char *save = NULL;
    for (char *l = strtok_r(reply, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        int idx, p, cl, pend;
        unsigned pt;
        unsigned long long t, av, in, fr;
        char st[16];
        if (sscanf(l, "%d %15s %d %u %d %llu %llu %llu %llu %d", &idx, st, &p, &pt, &cl, &t, &av, &in, &fr, &pend) == 10 &&
            idx == i) {
            bs->online = strcmp(st, "online") == 0;
            bs->pid = p;
            bs->port = pt;
            bs->clients = cl;
            bs->total = t;
            bs->avail = av;
            bs->inodes = in;
            bs->ifree = fr;
            bs->pending = pend;
            char *tab = strchr(l, '\t');
            snprintf(bs->reason, sizeof(bs->reason), "%s", tab ? tab + 1 : "");
        }
    }
    free(reply);
}

static void human_bytes(unsigned long long b, char *buf, size_t len)
{
    const char *u[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB" };
    double x = (double)b;
    int k = 0;
    while (x >= 1024 && k < 5) {
        x /= 1024;
        k++;
    }
    snprintf(buf, len, "%.1f %s", x, u[k]);
}

static void status_brick(const ctx_t *c, const kbd_volume_t *v, int i, bool detail, outbuf_t *o)
{
    brick_state_t st;
    brick_state(v, i, &st);
    char *bs = kbd_brick_str(&v->bricks[i]);
    bool arb = v->arbiter && i % kbd_set_size(v) == kbd_set_size(v) - 1;
    if (c->json) {
        outf(o, "%s{\"brick\":", i ? "," : "");
        outj(o, bs);
        outf(o, ",\"port\":%u,\"online\":%s,\"pid\":%d,\"clients\":%d,\"arbiter\":%s,\"disk_total\":%llu,"
                "\"disk_free\":%llu,\"inodes\":%llu,\"inodes_free\":%llu,\"heal_pending\":%d,\"reason\":",
             st.port, st.online ? "true" : "false", st.online ? st.pid : 0, st.clients, arb ? "true" : "false",
             st.total, st.avail, st.inodes, st.ifree, st.pending);
        outj(o, st.online ? "" : st.reason);
        outf(o, "}");
    } else if (detail) {
        char tot[32], fr[32];
        human_bytes(st.total, tot, sizeof(tot));
        human_bytes(st.avail, fr, sizeof(fr));
        outf(o, "Brick                : %s%s\nOnline               : %s%s%s\nPid                  : %d\n"
                "Port                 : %u\nTotal Disk Space     : %s\nDisk Space Free      : %s\n"
                "Inode Count          : %llu\nFree Inodes          : %llu\nConnected Clients    : %d\n"
                "Heal Pending         : %d\n\n",
             bs ? bs : "?", arb ? " (arbiter)" : "", st.online ? "Y" : "N", st.online || !st.reason[0] ? "" : " - ",
             st.online ? "" : st.reason, st.online ? st.pid : 0, st.port, tot, fr, st.inodes, st.ifree, st.clients,
             st.pending);
    } else {
        char pidstr[16] = "N/A";
        if (st.online)
            snprintf(pidstr, sizeof(pidstr), "%d", st.pid);
        outf(o, "%-48s %-6u %-6s %-8s %-7d %d%s%s\n", bs ? bs : "?", st.port, st.online ? "Y" : "N", pidstr,
             st.clients, st.pending, st.online || !st.reason[0] ? "" : "  ", st.online ? "" : st.reason);
    }
    free(bs);
}

static int cmd_status(const ctx_t *c, int argc, char **argv, char **out, outbuf_t *o)
{
    char **names = NULL;
    int n;
    bool detail = argc >= 3 && strcmp(argv[2], "detail") == 0;
    if (argc >= 2 && strcmp(argv[1], "all") != 0) {
        names = calloc(2, sizeof(char *));
        if (!names)
            return fail(out, -ENOMEM, "out of memory");
        names[0] = strdup(argv[1]);
        n = 1;
    } else if ((n = list_names(c, &names, out)) < 0) {
        return n;
    }
    int rc = 0;
    if (c->json)
        outf(o, "[");
    for (int vi = 0; vi < n; vi++) {
        kbd_volume_t *v = get_volume(c, names[vi], out);
        if (!v) {
            rc = -ENOENT;
            break;
        }
        if (c->json) {
            outf(o, "%s{\"volume\":", vi ? "," : "");
            outj(o, v->name);
            outf(o, ",\"status\":\"%s\",\"bricks\":[", kbd_status_name(v->status));
        } else if (detail) {
            outf(o, "%sStatus of volume: %s (%s)\n", vi ? "\n" : "", v->name, kbd_status_name(v->status));
            outf(o, "------------------------------------------------------------------------------\n");
        } else {
            outf(o, "%sStatus of volume: %s (%s)\n%-48s %-6s %-6s %-8s %-7s %s\n", vi ? "\n" : "", v->name,
                 kbd_status_name(v->status), "Brick", "Port", "Online", "Pid", "Clients", "Heal");
            outf(o, "------------------------------------------------------------------------------------\n");
        }
        for (int i = 0; i < v->nbricks; i++)
            status_brick(c, v, i, detail, o);
        if (c->json)
            outf(o, "]}");
        kbd_volume_free(v);
    }
    if (c->json && !rc)
        outf(o, "]\n");
    for (int i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return rc;
}

/* ---------------- profile / top ---------------- */

/* volume profile NAME [info|clear]: per brick, per fop: calls, errors, average
 * and p50/p99/p99.9 latency; bytes read/written. volume top NAME: the same
 * fops summed over the bricks, busiest first. */
static int cmd_profile(const ctx_t *c, int argc, char **argv, char **out, outbuf_t *o, bool top)
{
    if (argc < 2)
        return fail(out, -EINVAL, "usage: volume %s NAME%s", top ? "top" : "profile", top ? "" : " [info|clear]");
    kbd_volume_t *v = get_volume(c, argv[1], out);
    if (!v)
        return -ENOENT;
    bool clear = !top && argc > 2 && strcmp(argv[2], "clear") == 0;
    node_t *nodes;
    int nn = volume_nodes(v, &nodes);
    struct agg { char op[24]; unsigned long long count, errors, avg, p50, p99, p999; } tot[64];
    int ntot = 0;
    if (c->json)
        outf(o, "{\"volume\":\"%s\",\"bricks\":[", v->name);
    int nb = 0;
    for (int k = 0; k < nn; k++) {
        char *reply = NULL;
        if (peer(nodes[k].host, nodes[k].port, &reply, clear ? 4 : 3, "peer", "profile", v->name, "clear") || !reply) {
            free(reply);
            continue;
        }
        int cur = -1, nops = 0;
        char *save = NULL;
        for (char *l = strtok_r(reply, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
            int idx;
            char op[24];
            unsigned long long cnt, err, avg, p50, p99, p999;
            double secs;
            if (sscanf(l, "P %d %23s %llu %llu %llu %llu %llu %llu", &idx, op, &cnt, &err, &avg, &p50, &p99, &p999) == 8 &&
                idx >= 0 && idx < v->nbricks) {
                if (idx != cur) {
                    char *bs = kbd_brick_str(&v->bricks[idx]);
                    if (c->json) {
                        outf(o, "%s{\"brick\":", nb++ ? "," : "");
                        outj(o, bs);
                        outf(o, ",\"fops\":[");
                    } else if (!top) {
                        outf(o, "Brick: %s\n%-12s %10s %8s %10s %10s %10s %10s\n", bs ? bs : "?", "Fop", "Calls",
                             "Errors", "Avg(us)", "p50(us)", "p99(us)", "p99.9(us)");
                    }
                    free(bs);
                    cur = idx;
                    nops = 0;
                }
                if (c->json)
                    outf(o, "%s{\"fop\":\"%s\",\"calls\":%llu,\"errors\":%llu,\"avg_us\":%llu,\"p50_us\":%llu,"
                            "\"p99_us\":%llu,\"p999_us\":%llu}", nops++ ? "," : "", op, cnt, err, avg, p50, p99, p999);
                else if (!top)
                    outf(o, "%-12s %10llu %8llu %10llu %10llu %10llu %10llu\n", op, cnt, err, avg, p50, p99, p999);
                int t;
                for (t = 0; t < ntot && strcmp(tot[t].op, op); t++)
                    ;
                if (t == ntot && ntot < 64)
                    snprintf(tot[ntot++].op, sizeof(tot[0].op), "%s", op);
                if (t < 64) {
                    tot[t].avg = (tot[t].avg * tot[t].count + avg * cnt) / (tot[t].count + cnt ? tot[t].count + cnt : 1);
                    tot[t].count += cnt;
                    tot[t].errors += err;
                    tot[t].p99 = KB_MAX(tot[t].p99, p99);
                }
            } else if (sscanf(l, "T %d %llu %llu %lf", &idx, &cnt, &err, &secs) == 4) {
                if (idx != cur && c->json) {
                    char *bs = idx >= 0 && idx < v->nbricks ? kbd_brick_str(&v->bricks[idx]) : NULL;
                    outf(o, "%s{\"brick\":", nb++ ? "," : "");
                    outj(o, bs);
                    outf(o, ",\"fops\":[");
                    free(bs);
                }
                if (c->json)
                    outf(o, "],\"bytes_read\":%llu,\"bytes_written\":%llu,\"seconds\":%.1f}", cnt, err, secs);
                else if (!top)
                    outf(o, "Bytes read: %llu  written: %llu  over %.1f s\n\n", cnt, err, secs);
                cur = -1;
            }
        }
        free(reply);
    }
    free(nodes);
    if (c->json) {
        outf(o, "]}\n");
    } else if (top) {
        for (int a = 0; a < ntot; a++)          /* busiest first */
            for (int b2 = a + 1; b2 < ntot; b2++)
                if (tot[b2].count > tot[a].count) {
                    struct agg t = tot[a];
                    tot[a] = tot[b2];
                    tot[b2] = t;
                }
        outf(o, "Volume %s, all bricks\n%-12s %12s %8s %10s %12s\n", v->name, "Fop", "Calls", "Errors", "Avg(us)",
             "max p99(us)");
        for (int a = 0; a < ntot; a++)
            outf(o, "%-12s %12llu %8llu %10llu %12llu\n", tot[a].op, tot[a].count, tot[a].errors, tot[a].avg, tot[a].p99);
    } else if (clear) {
        outf(o, "profile counters of %s cleared\n", v->name);
    }
    kbd_volume_free(v);
    return 0;
}

/* ---------------- heal ---------------- */

typedef struct heal_brick {
    bool reached, daemon;
    int entries, split;
    unsigned long long healed, written, sweeps, left;
    outbuf_t list;          /* human lines or JSON objects */
    int nlist;
} heal_brick_t;

static void heal_collect(const ctx_t *c, const kbd_volume_t *v, heal_brick_t *hb, bool only_split)
{
    node_t *nodes;
    int n = volume_nodes(v, &nodes);
    for (int k = 0; k < n; k++) {
        char *reply = NULL;
        if (peer(nodes[k].host, nodes[k].port, &reply, 3, "peer", "heal-info", v->name) || !reply) {
            free(reply);
            continue;
        }
        char *save = NULL;
        for (char *l = strtok_r(reply, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
            int idx = -1, cnt, sb, dm;
            unsigned long long left, a, b, cc;
            char status[16], gfid[40];
            int pos = 0;
            if (sscanf(l, "B %d %d", &idx, &cnt) == 2 && idx >= 0 && idx < v->nbricks) {
                hb[idx].reached = true;
                hb[idx].entries = cnt;
            } else if (sscanf(l, "S %d %llu %llu %llu %d %d", &idx, &a, &b, &cc, &sb, &dm) == 6 &&
                       idx >= 0 && idx < v->nbricks) {
                hb[idx].healed = a;
                hb[idx].written = b;
                hb[idx].sweeps = cc;
                hb[idx].daemon = dm;
            } else if (sscanf(l, "E %d %15s %llu %39s %n", &idx, status, &left, gfid, &pos) == 4 && pos > 0 &&
                       idx >= 0 && idx < v->nbricks) {
                heal_brick_t *h = &hb[idx];
                bool split = strcmp(status, "split-brain") == 0;
                h->split += split;
                h->left += left;
                if (only_split && !split)
                    continue;
                const char *path = l + pos;
                if (c->json) {
                    outf(&h->list, "%s{\"path\":", h->nlist ? "," : "");
                    outj(&h->list, path);
                    outf(&h->list, ",\"gfid\":\"%s\",\"status\":\"%s\",\"bytes_left\":%llu}", gfid, status, left);
                } else if (strcmp(status, "healing") == 0) {
                    outf(&h->list, "%s  (healing, %.1f MiB left)\n", path, (double)left / 1048576.0);
                } else if (split) {
                    outf(&h->list, "%s  - Is in split-brain\n", path);
                } else {
                    outf(&h->list, "%s\n", path);
                }
                h->nlist++;
            }
        }
        free(reply);
    }
    free(nodes);
}

/* ---------------- heal split-brain (issue 5) ----------------
 *   volume heal NAME split-brain latest-mtime|bigger-file PATH
 *   volume heal NAME split-brain source-brick HOST:PORT:/BRICK PATH
 * For each replica set (only the named brick's for source-brick), the first
 * node holding a brick of it that finds PATH there starts the resolution in
 * its heal daemon (peer heal-resolve) and is polled until it is done (peer
 * heal-resolve-status). Sets where PATH is absent are skipped; PATH found in
 * no set is an error. */
#define RESOLVE_POLL_MS 100
#define RESOLVE_WAIT_MS 110000      /* the CLI waits 120 s for an answer */

static int resolve_wait(const kbd_brick_t *b, const char *token, const char *path, int set, char **out,
                        outbuf_t *o, const ctx_t *c)
{
    for (int waited = 0; waited < RESOLVE_WAIT_MS; waited += RESOLVE_POLL_MS) {
        char *reply = NULL;
        int r = peer(b->host, b->port, &reply, 3, "peer", "heal-resolve-status", (char *)token);
        if (r == 0 && reply && strcmp(reply, "running") == 0) {
            free(reply);
            usleep(RESOLVE_POLL_MS * 1000);
            continue;
        }
        if (r)
            r = fail(out, r, "split-brain of %s (replica set %d): %s", path, set, reply ? reply : strerror(-r));
        else if (!c->json)
            outf(o, "volume heal: split-brain of %s resolved (replica set %d): %s\n", path, set, reply ? reply : "");
        free(reply);
        return r;
    }
    return fail(out, -ETIMEDOUT, "split-brain of %s (replica set %d): still resolving in the background", path, set);
}

static int cmd_heal_split_brain(const ctx_t *c, const kbd_volume_t *v, int argc, char **argv, char **out,
                                outbuf_t *o)
{
    const char *pol = argc > 3 ? argv[3] : "";
    bool by_brick = strcmp(pol, "source-brick") == 0;
    if (argc != (by_brick ? 6 : 5) || (!by_brick && strcmp(pol, "latest-mtime") && strcmp(pol, "bigger-file")))
        return fail(out, -EINVAL, "usage: volume heal NAME split-brain latest-mtime|bigger-file PATH | "
                                  "split-brain source-brick HOST:PORT:/BRICK PATH");
    const char *path = argv[argc - 1];
    int k = kbd_set_size(v), only = -1, child = -1, done = 0, rc = 0;
    if (by_brick) {
        kbd_brick_t sb;
        char err[256];
        if (kbd_brick_parse(argv[4], &sb, err, sizeof(err)))
            return fail(out, -EINVAL, "%s", err);
        for (int i = 0; i < v->nbricks && only < 0; i++)
            if (v->bricks[i].port == sb.port && !strcmp(v->bricks[i].host, sb.host) && !strcmp(v->bricks[i].path, sb.path)) {
                only = i / k;
                child = i % k;
            }
        free(sb.host);
        free(sb.path);
        if (only < 0)
            return fail(out, -EINVAL, "%s is not a brick of volume '%s'", argv[4], v->name);
    }
    for (int s = 0; s < v->nbricks / k && !rc; s++) {
        if (only >= 0 && s != only)
            continue;
        char sset[16], schild[16], token[32] = "";
        snprintf(sset, sizeof(sset), "%d", s);
        snprintf(schild, sizeof(schild), "%d", child);
        const kbd_brick_t *at = NULL;
        for (int i = s * k; i < (s + 1) * k && !at && !rc; i++) {
            char *reply = NULL;
            int r = peer(v->bricks[i].host, v->bricks[i].port, &reply, 7, "peer", "heal-resolve", v->name, sset,
                         (char *)pol, schild, (char *)path);
            if (r == 0 && reply) {
                snprintf(token, sizeof(token), "%s", reply);
                at = &v->bricks[i];
            } else if (r == -EINVAL || r == -EBUSY) {
                rc = fail(out, r, "node %s:%u: %s", v->bricks[i].host, v->bricks[i].port, reply ? reply : strerror(-r));
            }
            free(reply);
        }
        if (!at)
            continue;
        rc = resolve_wait(at, token, path, s, out, o, c);
        done += !rc;
    }
    if (!rc && !done)
        rc = fail(out, -ENOENT, "%s: not found on any reachable brick of volume '%s'", path, v->name);
    if (!rc && c->json) {
        outf(o, "{\"volume\":");
        outj(o, v->name);
        outf(o, ",\"path\":");
        outj(o, path);
        outf(o, ",\"resolved_sets\":%d}\n", done);
    }
    return rc;
}

static int cmd_heal(const ctx_t *c, int argc, char **argv, char **out, outbuf_t *o)
{
    if (argc < 2)
        return fail(out, -EINVAL, "usage: volume heal NAME [info [split-brain]|full]");
    kbd_volume_t *v = get_volume(c, argv[1], out);
    if (!v)
        return -ENOENT;
    int rc = 0;
    if (kbd_set_size(v) < 2) {
        rc = fail(out, -EINVAL, "volume '%s' is not replicated: nothing to heal", v->name);
    } else if (v->status != KBD_VOL_STARTED) {
        rc = fail(out, -EINVAL, "volume '%s' is not started", v->name);
    } else if (argc == 2 || strcmp(argv[2], "full") == 0) {
        bool full = argc > 2;
        node_t *nodes;
        int n = volume_nodes(v, &nodes), launched = 0;
        for (int k = 0; k < n; k++) {
            char *reply = NULL;
            if (peer(nodes[k].host, nodes[k].port, &reply, full ? 4 : 3, "peer", "heal", v->name, "full") == 0)
                launched += reply ? atoi(reply) : 0;
            free(reply);
        }
        free(nodes);
        if (!launched)
            rc = fail(out, -EHOSTUNREACH, "no heal daemon of volume '%s' could be reached", v->name);
        else if (c->json)
            outf(o, "{\"volume\":\"%s\",\"heal\":\"%s\",\"daemons\":%d}\n", v->name, full ? "full" : "index", launched);
        else
            outf(o, "Launching heal operation to perform %s self heal on volume %s has been successful\n",
                 full ? "full" : "index", v->name);
    } else if (strcmp(argv[2], "info") == 0) {
        bool only_split = argc > 3 && strcmp(argv[3], "split-brain") == 0;
        heal_brick_t *hb = calloc((size_t)v->nbricks, sizeof(*hb));
        if (!hb) {
            kbd_volume_free(v);
            return fail(out, -ENOMEM, "out of memory");
        }
        heal_collect(c, v, hb, only_split);
        unsigned long long total = 0, left = 0, split = 0, written = 0, healed = 0;
        if (c->json)
            outf(o, "{\"volume\":\"%s\",\"bricks\":[", v->name);
        for (int i = 0; i < v->nbricks; i++) {
            char *bs = kbd_brick_str(&v->bricks[i]);
            heal_brick_t *h = &hb[i];
            total += (unsigned long long)h->entries;
            left += h->left;
            split += (unsigned long long)h->split;
            written += h->written;
            healed += h->healed;
            if (c->json) {
                outf(o, "%s{\"brick\":", i ? "," : "");
                outj(o, bs);
                outf(o, ",\"connected\":%s,\"entries\":%d,\"split_brain\":%d,\"bytes_left\":%llu,"
                        "\"healed\":%llu,\"bytes_healed\":%llu,\"list\":[%s]}",
                     h->reached ? "true" : "false", h->entries, h->split, h->left, h->healed, h->written,
                     h->list.p ? h->list.p : "");
            } else {
                outf(o, "Brick %s\nStatus: %s\n%sNumber of entries%s: %d\n\n", bs ? bs : "?",
                     h->reached ? "Connected" : "Transport endpoint is not connected", h->list.p ? h->list.p : "",
                     only_split ? " in split-brain" : "", only_split ? h->split : h->entries);
            }
            free(bs);
            free(h->list.p);
        }
        if (c->json)
            outf(o, "],\"total_entries\":%llu,\"split_brain\":%llu,\"bytes_left\":%llu,\"healed\":%llu,"
                    "\"bytes_healed\":%llu}\n", total, split, left, healed, written);
        free(hb);
    } else if (strcmp(argv[2], "split-brain") == 0) {
        rc = cmd_heal_split_brain(c, v, argc, argv, out, o);
    } else {
        rc = fail(out, -EINVAL, "unknown heal command '%s' (info, full, split-brain)", argv[2]);
    }
    kbd_volume_free(v);
    return rc;
}

/* ---------------- add-brick / rebalance / remove-brick / replace-brick (issue 6) ----------------
 *
 * add-brick appends whole replica sets: existing bricks keep their indices,
 * so their brick graphs (and connections) stay as they are, and mounts pick
 * the new definition up by themselves (they poll their volfile server and
 * switch graphs). Files stay where they are until a rebalance moves those
 * whose hashed set changed.
 *
 * A rebalance runs in a thread of the node that received the command
 * (rebalance.c). Before it starts, every client attached to a brick of the
 * volume must run a graph of the current definition (wait_clients): a
 * client still on the old graph does not know the new sets, and a file
 * moved under it would lose its writes.
 *
 * remove-brick drains whole sets: start records them in the definition
 * (drain=, distribute then gives them no range in new directories) and runs
 * a rebalance that takes their ranges away and moves their files; commit
 * drops them once that run completed cleanly and their bricks hold no file.
 *
 * replace-brick puts a new, empty brick in an old one's place (same index
 * in its replica set; the old node need not answer) and starts a full heal
 * of that set in a heal daemon that has the new brick and a good one up. */

#define CLIENT_WAIT_MS 30000
#define HEAL_READY_WAIT_MS 20000

/* How long a rebalance start waits for clients on an older graph: 30 s;
 * tests shorten it with KEMBARD_CLIENT_WAIT_MS in kembard's environment. */
static int client_wait_ms(void)
{
    const char *e = getenv("KEMBARD_CLIENT_WAIT_MS");
    int ms = e ? atoi(e) : 0;
    return ms > 0 && ms <= 600000 ? ms : CLIENT_WAIT_MS;
}

/* Fill V's brick I from SPEC with a fresh brick id; refuse a brick V has. */
static int new_brick(kbd_volume_t *v, int i, const char *spec, char **out)
{
    char err[512];
    if (kbd_brick_parse(spec, &v->bricks[i], err, sizeof(err)))
        return fail(out, -EINVAL, "%s", err);
    kb_gfid_generate(&v->bricks[i].id);
    for (int k = 0; k < v->nbricks; k++)
        if (k != i && v->bricks[k].port == v->bricks[i].port && !strcmp(v->bricks[k].host, v->bricks[i].host) &&
            !strcmp(v->bricks[k].path, v->bricks[i].path))
            return fail(out, -EINVAL, "brick %s is already a brick of volume '%s'", spec, v->name);
    return 0;
}

/* Index of brick SPEC in V, or -1 (out says why). */
static int find_brick(const kbd_volume_t *v, const char *spec, char **out)
{
    kbd_brick_t b;
    char err[512];
    if (kbd_brick_parse(spec, &b, err, sizeof(err))) {
        fail(out, -EINVAL, "%s", err);
        return -1;
    }
    int idx = -1;
    for (int i = 0; i < v->nbricks && idx < 0; i++)
        if (v->bricks[i].port == b.port && !strcmp(v->bricks[i].host, b.host) && !strcmp(v->bricks[i].path, b.path))
            idx = i;
    free(b.host);
    free(b.path);
    if (idx < 0)
        fail(out, -EINVAL, "%s is not a brick of volume '%s'", spec, v->name);
    return idx;
}

/* Nodes of V flagged in WANT must answer, and must not hold another volume
 * of V's name (a store there would be refused half-way through). */
static int check_new_nodes(const kbd_volume_t *v, const bool *want, char **out)
{
    node_t *nodes;
    int n = volume_nodes(v, &nodes), rc = 0;
    if (n < 0)
        return fail(out, -ENOMEM, "out of memory");
    for (int k = 0; k < n && !rc; k++) {
        bool mine = false;
        for (int b = 0; b < v->nbricks; b++)
            mine |= want[b] && brick_on(v, b, &nodes[k]);
        if (!mine)
            continue;
        char *reply = NULL, err[256];
        int r = peer(nodes[k].host, nodes[k].port, &reply, 3, "peer", "get", v->name);
        if (r == 0) {
            kbd_volume_t *there = reply ? kbd_volume_parse(reply, err, sizeof(err)) : NULL;
            if (!there || !kb_gfid_eq(&there->id, &v->id))
                rc = fail(out, -EEXIST, "node %s:%u has another volume named '%s'", nodes[k].host, nodes[k].port,
                          v->name);
            kbd_volume_free(there);
        } else if (r != -ENOENT) {
            rc = fail(out, -EHOSTUNREACH, "node %s:%u is unreachable", nodes[k].host, nodes[k].port);
        }
        free(reply);
    }
    free(nodes);
    return rc;
}

/* Store V everywhere, and also on the nodes of OLD that V no longer has (so
 * they stop the bricks they lost); those may be unreachable. */
static int store_with_old(const ctx_t *c, const kbd_volume_t *v, const kbd_volume_t *old, bool force, char **out)
{
    int rc = store_everywhere(c, v, force, out);
    node_t *nodes;
    int n = rc ? 0 : volume_nodes(old, &nodes);
    char *text = n > 0 ? kbd_volume_format(v) : NULL;
    for (int k = 0; k < n && text; k++) {
        bool kept = is_self(c, &nodes[k]);
        for (int b = 0; b < v->nbricks && !kept; b++)
            kept = brick_on(v, b, &nodes[k]);
        if (kept)
            continue;
        char *reply = NULL;
        if (peer(nodes[k].host, nodes[k].port, &reply, 4, "peer", "store", "", text))
            kb_warn("mgmt", "node %s:%u did not take the new definition of %s: %s", nodes[k].host, nodes[k].port,
                    v->name, reply ? reply : "?");
        free(reply);
    }
    free(text);
    if (n > 0)
        free(nodes);
    return rc;
}

static int cmd_add_brick(const ctx_t *c, int argc, char **argv, char **out, outbuf_t *o)
{
    if (argc < 3)
        return fail(out, -EINVAL, "usage: volume add-brick NAME HOST[:PORT]:/PATH... [force]");
    bool force = strcmp(argv[argc - 1], "force") == 0;
    int nb = argc - 2 - force;
    kbd_volume_t *v = get_volume(c, argv[1], out);
    if (!v)
        return -ENOENT;
    int k = kbd_set_size(v), old_n = v->nbricks, rc = 0;
    bool *want = NULL;
    kbd_brick_t *nbr = NULL;
    if (nb < 1 || nb % k)
        rc = fail(out, -EINVAL, "%d bricks do not make whole replica sets of %d (replica %d%s)", nb, k, v->replica,
                  v->arbiter ? " + arbiter 1" : "");
    else if ((old_n + nb) / k > KBD_MAX_SETS)
        rc = fail(out, -EINVAL, "a volume has at most %d replica sets", KBD_MAX_SETS);
    else if (!(nbr = realloc(v->bricks, (size_t)(old_n + nb) * sizeof(*nbr))) ||
             !(want = calloc((size_t)(old_n + nb), sizeof(bool))))
        rc = fail(out, -ENOMEM, "out of memory");
    if (nbr)
        v->bricks = nbr;
    for (int i = 0; i < nb && !rc; i++) {
        memset(&v->bricks[old_n + i], 0, sizeof(kbd_brick_t));
        v->nbricks++;                           /* counted before parsing: freed with v */
        want[old_n + i] = true;
        rc = new_brick(v, old_n + i, argv[2 + i], out);
    }
    if (!rc)
        rc = check_nodes(v, out);
    if (!rc)
        rc = check_new_nodes(v, want, out);
    if (!rc)
        rc = prepare_bricks(v, want, force, out);
    if (!rc) {
        v->version++;
        if ((rc = store_everywhere(c, v, false, out)))
            unprepare_bricks(v, want);
    }
    if (!rc && c->json) {
        outf(o, "{\"volume\":");
        outj(o, v->name);
        outf(o, ",\"added\":%d,\"bricks\":%d,\"sets\":%d,\"version\":%u}\n", nb, v->nbricks, kbd_nsets(v), v->version);
    } else if (!rc) {
        outf(o, "volume add-brick: %s: success (%d x %d = %d bricks); 'kembar volume rebalance %s start' spreads "
                "the existing files\n", v->name, kbd_nsets(v), k, v->nbricks, v->name);
    }
    free(want);
    kbd_volume_free(v);
    return rc;
}

/* Wait (at most WAIT_MS) until no client attached to a brick of V runs a
 * graph older than V's definition. Heal daemons (their graphs are rebuilt
 * by every store) are left out. */
static int wait_clients(const kbd_volume_t *v, int wait_ms, char **out)
{
    node_t *nodes;
    int n = volume_nodes(v, &nodes);
    if (n < 0)
        return fail(out, -ENOMEM, "out of memory");
    uint64_t until = kb_now_ms() + (uint64_t)wait_ms;
    int rc = 0;
    for (;;) {
        int stale = 0;
        outbuf_t hosts = { 0 };
        for (int k = 0; k < n; k++) {
            char *reply = NULL, *save = NULL;
            if (peer(nodes[k].host, nodes[k].port, &reply, 3, "peer", "clients", v->name) || !reply) {
                free(reply);
                continue;                       /* an unreachable node has no clients to wait for */
            }
            for (char *l = strtok_r(reply, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
                char addr[64], who[128];
                unsigned ver;
                if (sscanf(l, "%63s %u %127s", addr, &ver, who) != 3 || strstr(who, "-shd-client-") ||
                    ver >= v->version)
                    continue;
                stale++;
                char key[80];
                snprintf(key, sizeof(key), " %s,", addr);
                if (!hosts.p || !strstr(hosts.p, key))
                    outf(&hosts, " %s,", addr);
            }
            free(reply);
        }
        if (!stale || kb_now_ms() >= until) {
            if (stale) {
                hosts.p[hosts.len - 1] = 0;     /* the last comma */
                rc = fail(out, -EAGAIN, "%d client connection%s still run%s an older graph of '%s' (from%s); retry "
                          "when they have switched", stale, stale > 1 ? "s" : "", stale > 1 ? "" : "s", v->name, hosts.p);
            }
            free(hosts.p);
            break;
        }
        free(hosts.p);
        usleep(300 * 1000);
    }
    free(nodes);
    return rc;
}

/* Start a run on this node (the clients checked first unless FORCE). */
static int rebalance_start(const ctx_t *c, const kbd_volume_t *v, bool force, char **out)
{
    if (kbd_nsets(v) < 2)
        return fail(out, -EINVAL, "volume '%s' has one replica set: nothing to rebalance", v->name);
    if (v->status != KBD_VOL_STARTED)
        return fail(out, -EINVAL, "volume '%s' is not started", v->name);
    int rc = force ? 0 : wait_clients(v, client_wait_ms(), out);
    if (rc)
        return rc;
    char mask[256] = "-", *reply = NULL;
    if (v->drain)
        kbd_mask_csv(v->drain, mask, sizeof(mask));
    rc = peer(c->self_host, c->self_port, &reply, 4, "peer", "rebalance-start", v->name, mask);
    if (rc)
        fail(out, rc, "%s", reply ? reply : strerror(-rc));
    free(reply);
    return rc;
}

typedef struct reb_node {
    char state[16], where[256];
    unsigned long long scanned, moved, bytes, skipped, failures, dirs, ms, drain;
    unsigned version;
    bool reached;
} reb_node_t;

static void reb_parse(const char *line, reb_node_t *r)
{
    memset(r, 0, sizeof(*r));
    snprintf(r->state, sizeof(r->state), "unreachable");
    if (!line || sscanf(line, "%15s %llu %llu %llu %llu %llu %llu %llu %llx %u", r->state, &r->scanned, &r->moved,
                        &r->bytes, &r->skipped, &r->failures, &r->dirs, &r->ms, &r->drain, &r->version) != 10)
        return;
    r->reached = true;
    const char *tab = strchr(line, '\t');
    snprintf(r->where, sizeof(r->where), "%.*s", tab ? (int)strcspn(tab + 1, "\n") : 0, tab ? tab + 1 : "");
}

/* Every node of V and this one: the state of their last run. Returns the
 * count; *nodes and *st are the caller's. */
static int reb_collect(const ctx_t *c, const kbd_volume_t *v, node_t **nodesp, reb_node_t **stp)
{
    node_t *nodes;
    int n = volume_nodes(v, &nodes);
    if (n < 0)
        return n;
    bool self = false;
    for (int k = 0; k < n; k++)
        self |= is_self(c, &nodes[k]);
    node_t *more = self ? nodes : realloc(nodes, (size_t)(n + 1) * sizeof(*nodes));
    if (!more) {
        free(nodes);
        return -ENOMEM;
    }
    nodes = more;
    if (!self)
        nodes[n++] = (node_t){ .host = (char *)c->self_host, .port = c->self_port };
    reb_node_t *st = calloc((size_t)n, sizeof(*st));
    if (!st) {
        free(nodes);
        return -ENOMEM;
    }
    for (int k = 0; k < n; k++) {
        char *reply = NULL;
        int r = peer(nodes[k].host, nodes[k].port, &reply, 3, "peer", "rebalance-status", v->name);
        reb_parse(r ? NULL : reply, &st[k]);
        free(reply);
    }
    *nodesp = nodes;
    *stp = st;
    return n;
}

static void rebalance_report(const ctx_t *c, const kbd_volume_t *v, const node_t *nodes, const reb_node_t *st, int n,
                             outbuf_t *o)
{
    unsigned long long scanned = 0, moved = 0, bytes = 0, skipped = 0, failures = 0, ms = 0;
    const char *overall = "not-started", *rank[] = { "running", "failed", "stopped", "completed" };
    const reb_node_t *run = NULL;
    for (int r = 3; r >= 0; r--)
        for (int k = 0; k < n; k++)
            if (!strcmp(st[k].state, rank[r])) {
                overall = rank[r];
                run = &st[k];
            }
    for (int k = 0; k < n; k++) {
        scanned += st[k].scanned;
        moved += st[k].moved;
        bytes += st[k].bytes;
        skipped += st[k].skipped;
        failures += st[k].failures;
        ms = KB_MAX(ms, st[k].ms);
    }
    double secs = (double)ms / 1000.0, rate = secs > 0 ? (double)bytes / secs : 0;
    char drain[256] = "";
    kbd_mask_csv(v->drain, drain, sizeof(drain));
    if (c->json) {
        outf(o, "{\"volume\":");
        outj(o, v->name);
        outf(o, ",\"status\":\"%s\",\"draining\":[%s],\"nodes\":[", overall, drain);
        for (int k = 0; k < n; k++) {
            outf(o, "%s{\"node\":\"%s:%u\",\"status\":\"%s\",\"scanned\":%llu,\"moved\":%llu,\"bytes\":%llu,"
                    "\"skipped\":%llu,\"failures\":%llu,\"directories\":%llu,\"seconds\":%.1f,\"drain\":%llu,"
                    "\"version\":%u,\"where\":", k ? "," : "", nodes[k].host, nodes[k].port, st[k].state,
                 st[k].scanned, st[k].moved, st[k].bytes, st[k].skipped, st[k].failures, st[k].dirs,
                 (double)st[k].ms / 1000.0, st[k].drain, st[k].version);
            outj(o, st[k].where);
            outf(o, "}");
        }
        outf(o, "],\"scanned\":%llu,\"moved\":%llu,\"bytes\":%llu,\"skipped\":%llu,\"failures\":%llu,"
                "\"seconds\":%.1f,\"bytes_per_second\":%.0f}\n", scanned, moved, bytes, skipped, failures, secs, rate);
        return;
    }
    outf(o, "%-28s %-12s %9s %9s %12s %8s %9s %10s\n", "Node", "Status", "Scanned", "Moved", "Size", "Skipped",
         "Failures", "Run time");
    for (int k = 0; k < n; k++) {
        char node[300], size[32];
        snprintf(node, sizeof(node), "%s:%u", nodes[k].host, nodes[k].port);
        human_bytes(st[k].bytes, size, sizeof(size));
        outf(o, "%-28s %-12s %9llu %9llu %12s %8llu %9llu %8.1f s\n", node, st[k].state, st[k].scanned,
             st[k].moved, size, st[k].skipped, st[k].failures, (double)st[k].ms / 1000.0);
    }
    char size[32], rs[32];
    human_bytes(bytes, size, sizeof(size));
    human_bytes((unsigned long long)rate, rs, sizeof(rs));
    if (!run)
        outf(o, "Progress: no rebalance has run for %s\n", v->name);
    else if (!strcmp(overall, "running"))
        outf(o, "Progress: running for %.0f s: %llu files scanned in %llu directories, %llu moved (%s, %s/s), "
                "now in %s\n", secs, scanned, run->dirs, moved, size, rs, run->where);
    else
        outf(o, "Progress: %s: %llu files scanned, %llu moved (%s in %.1f s, %s/s), %llu skipped, %llu failures%s%s\n",
             overall, scanned, moved, size, secs, rs, skipped, failures, run->where[0] ? ": " : "", run->where);
    if (v->drain)
        outf(o, "Draining replica sets: %s\n", drain);
}

static int rebalance_status(const ctx_t *c, const kbd_volume_t *v, outbuf_t *o, char **out)
{
    node_t *nodes;
    reb_node_t *st;
    int n = reb_collect(c, v, &nodes, &st);
    if (n < 0)
        return fail(out, n, "out of memory");
    rebalance_report(c, v, nodes, st, n, o);
    free(nodes);
    free(st);
    return 0;
}

static void rebalance_stop_all(const ctx_t *c, const kbd_volume_t *v)
{
    node_t *nodes;
    reb_node_t *st;
    int n = reb_collect(c, v, &nodes, &st);
    for (int k = 0; k < n; k++) {
        char *reply = NULL;
        if (!strcmp(st[k].state, "running"))
            peer(nodes[k].host, nodes[k].port, &reply, 3, "peer", "rebalance-stop", v->name);
        free(reply);
    }
    if (n >= 0) {
        free(nodes);
        free(st);
    }
}

static int cmd_rebalance(const ctx_t *c, int argc, char **argv, char **out, outbuf_t *o)
{
    const char *act = argc > 2 ? argv[2] : "";
    bool force = argc == 4 && !strcmp(act, "start") && !strcmp(argv[3], "force");
    if ((argc != 3 && !force) || (strcmp(act, "start") && strcmp(act, "status") && strcmp(act, "stop")))
        return fail(out, -EINVAL, "usage: volume rebalance NAME start [force] | status | stop");
    kbd_volume_t *v = get_volume(c, argv[1], out);
    if (!v)
        return -ENOENT;
    int rc = 0;
    if (!strcmp(act, "status")) {
        rc = rebalance_status(c, v, o, out);
    } else if (!strcmp(act, "stop")) {
        rebalance_stop_all(c, v);
        outf(o, c->json ? "{\"volume\":\"%s\",\"stopping\":true}\n" : "volume rebalance: %s: stopping\n", v->name);
    } else if (!(rc = rebalance_start(c, v, force, out))) {
        if (c->json)
            outf(o, "{\"volume\":\"%s\",\"started\":true,\"node\":\"%s:%u\"}\n", v->name, c->self_host, c->self_port);
        else
            outf(o, "volume rebalance: %s: started on %s:%u; 'kembar volume rebalance %s status' shows progress\n",
                 v->name, c->self_host, c->self_port, v->name);
    }
    kbd_volume_free(v);
    return rc;
}

/* The sets named by BRICKS (each set given whole): a mask, or 0 (out says why). */
static uint64_t sets_of(const kbd_volume_t *v, int nb, char **bricks, char **out)
{
    int k = kbd_set_size(v);
    uint64_t mask = 0;
    bool *given = calloc((size_t)v->nbricks, sizeof(bool));
    if (!given) {
        fail(out, -ENOMEM, "out of memory");
        return 0;
    }
    for (int i = 0; i < nb; i++) {
        int idx = find_brick(v, bricks[i], out);
        if (idx < 0 || given[idx]) {
            if (idx >= 0)
                fail(out, -EINVAL, "brick %s is given twice", bricks[i]);
            free(given);
            return 0;
        }
        given[idx] = true;
        mask |= 1ull << (idx / k);
    }
    for (int i = 0; i < v->nbricks; i++)
        if ((mask & (1ull << (i / k))) && !given[i]) {
            char *bs = kbd_brick_str(&v->bricks[i]);
            fail(out, -EINVAL, "remove-brick takes whole replica sets: %s (set %d) is missing", bs ? bs : "?", i / k);
            free(bs);
            mask = 0;
            break;
        }
    free(given);
    return mask;
}

/* A drain of MASK may be committed: some node's last run drained exactly
 * MASK and completed without failures, and the drained bricks hold no file. */
static int drain_done(const ctx_t *c, const kbd_volume_t *v, uint64_t mask, char **out)
{
    node_t *nodes;
    reb_node_t *st;
    int n = reb_collect(c, v, &nodes, &st), ok = 0;
    if (n < 0)
        return fail(out, -ENOMEM, "out of memory");
    for (int k = 0; k < n; k++) {
        if (st[k].drain == mask && !strcmp(st[k].state, "running")) {
            ok = -1;
            break;
        }
        ok |= st[k].drain == mask && !strcmp(st[k].state, "completed") && !st[k].failures;
    }
    free(nodes);
    free(st);
    if (ok <= 0)
        return fail(out, -EBUSY, ok < 0 ? "the drain of '%s' is still running; see 'remove-brick ... status'"
                                        : "no drain of these bricks of '%s' completed without failures; run "
                                          "'remove-brick ... start' again (or commit force to drop what they hold)",
                    v->name);
    int k = kbd_set_size(v), rc = 0;
    for (int b = 0; b < v->nbricks && !rc; b++) {
        if (!(mask & (1ull << (b / k))))
            continue;
        char *reply = NULL, *save = NULL;
        int files = -1, r = peer(v->bricks[b].host, v->bricks[b].port, &reply, 3, "peer", "brick-files", v->name);
        for (char *l = r || !reply ? NULL : strtok_r(reply, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
            int idx, cnt;
            if (sscanf(l, "%d %d", &idx, &cnt) == 2 && idx == b)
                files = cnt;
        }
        free(reply);
        char *bs = kbd_brick_str(&v->bricks[b]);
        if (files < 0)
            rc = fail(out, -EHOSTUNREACH, "cannot count the files left on %s (node unreachable or brick unreadable); "
                      "commit force drops it anyway", bs ? bs : "?");
        else if (files > 0)
            rc = fail(out, -ENOTEMPTY, "%s still holds %d%s file%s; run 'remove-brick ... start' again (or commit "
                      "force)", bs ? bs : "?", files, files >= 1000 ? "+" : "", files > 1 ? "s" : "");
        free(bs);
    }
    return rc;
}

/* V without the bricks of the sets in MASK (drain cleared). */
static void drop_sets(kbd_volume_t *v, uint64_t mask)
{
    int k = kbd_set_size(v), j = 0;
    for (int i = 0; i < v->nbricks; i++) {
        if (mask & (1ull << (i / k))) {
            free(v->bricks[i].host);
            free(v->bricks[i].path);
        } else {
            v->bricks[j++] = v->bricks[i];
        }
    }
    v->nbricks = j;
    v->drain = 0;
}

static int remove_commit(const ctx_t *c, kbd_volume_t *v, uint64_t mask, bool force, char **out)
{
    int rc = 0;
    if (v->drain && v->drain != mask)
        return fail(out, -EBUSY, "other replica sets of '%s' are being drained: commit or stop that first", v->name);
    if (!force && v->drain != mask)
        return fail(out, -EINVAL, "these bricks of '%s' are not being drained: 'remove-brick ... start' first",
                    v->name);
    if (!force && (rc = drain_done(c, v, mask, out)))
        return rc;
    if (!force && (rc = check_nodes(v, out)))
        return rc;
    rebalance_stop_all(c, v);
    char *text = kbd_volume_format(v), err[256];
    kbd_volume_t *old = text ? kbd_volume_parse(text, err, sizeof(err)) : NULL;
    free(text);
    if (!old)
        return fail(out, -ENOMEM, "out of memory");
    drop_sets(v, mask);
    v->version++;
    rc = store_with_old(c, v, old, force, out);
    kbd_volume_free(old);
    return rc;
}

static int cmd_remove_brick(const ctx_t *c, int argc, char **argv, char **out, outbuf_t *o)
{
    bool force = argc > 2 && strcmp(argv[argc - 1], "force") == 0;
    int last = argc - 1 - force;
    const char *act = last >= 3 ? argv[last] : "";
    if (strcmp(act, "start") && strcmp(act, "status") && strcmp(act, "commit") && strcmp(act, "stop"))
        return fail(out, -EINVAL, "usage: volume remove-brick NAME HOST[:PORT]:/PATH... start|status|stop|commit [force]");
    kbd_volume_t *v = get_volume(c, argv[1], out);
    if (!v)
        return -ENOENT;
    int rc = 0;
    uint64_t mask = sets_of(v, last - 2, argv + 2, out);
    int nsets = kbd_nsets(v);
    uint64_t all = nsets >= KBD_MAX_SETS ? ~0ull : (1ull << nsets) - 1;
    char csv[256];
    kbd_mask_csv(mask, csv, sizeof(csv));
    if (!mask)
        rc = -EINVAL;
    else if (mask == all)
        rc = fail(out, -EINVAL, "remove-brick cannot remove every replica set of '%s' (delete the volume)", v->name);
    else if (!strcmp(act, "status"))
        rc = rebalance_status(c, v, o, out);
    else if (!strcmp(act, "commit"))
        rc = remove_commit(c, v, mask, force, out);
    else if (!strcmp(act, "stop") && v->drain != mask)
        rc = fail(out, -EINVAL, "these bricks of '%s' are not being drained", v->name);
    else if (!strcmp(act, "stop")) {
        rebalance_stop_all(c, v);
        v->drain = 0;
        v->version++;
        if (!(rc = check_nodes(v, out)))
            rc = store_everywhere(c, v, false, out);
    } else if (v->drain && v->drain != mask) {
        char cur[256];
        kbd_mask_csv(v->drain, cur, sizeof(cur));
        rc = fail(out, -EBUSY, "replica sets %s of '%s' are being drained: commit or stop that first", cur, v->name);
    } else {
        if (v->drain != mask) {               /* a repeated start only runs the drain again */
            v->drain = mask;
            v->version++;
            if (!(rc = check_nodes(v, out)))
                rc = store_everywhere(c, v, false, out);
        }
        if (!rc)
            rc = rebalance_start(c, v, force, out);
    }
    if (!rc && strcmp(act, "status")) {
        if (c->json)
            outf(o, "{\"volume\":\"%s\",\"remove_brick\":\"%s\",\"sets\":[%s]}\n", v->name, act, csv);
        else if (!strcmp(act, "start"))
            outf(o, "volume remove-brick start: %s: draining replica set%s %s on %s:%u; 'kembar volume remove-brick "
                    "%s ... status' shows progress, then commit\n", v->name, strchr(csv, ',') ? "s" : "", csv,
                 c->self_host, c->self_port, v->name);
        else
            outf(o, "volume remove-brick %s: %s: success%s\n", act, v->name,
                 !strcmp(act, "commit") ? "; the removed bricks' directories are left as they are" : "");
    }
    kbd_volume_free(v);
    return rc;
}

/* After replace-brick: start heal full of set SET (the new brick is child
 * CHILD) in a heal daemon where the new brick and another are up. Returns
 * the node that took it, or NULL. */
static const kbd_brick_t *heal_new_brick(const kbd_volume_t *v, int set, int child)
{
    int k = kbd_set_size(v);
    char sset[16], schild[16];
    snprintf(sset, sizeof(sset), "%d", set);
    snprintf(schild, sizeof(schild), "%d", child);
    uint64_t until = kb_now_ms() + HEAL_READY_WAIT_MS;
    do {
        for (int i = set * k; i < (set + 1) * k; i++) {
            char *reply = NULL;
            int r = peer(v->bricks[i].host, v->bricks[i].port, &reply, 5, "peer", "heal-full-ready", v->name, sset,
                         schild);
            free(reply);
            if (r == 0)
                return &v->bricks[i];
        }
        usleep(300 * 1000);
    } while (kb_now_ms() < until);
    return NULL;
}

static int cmd_replace_brick(const ctx_t *c, int argc, char **argv, char **out, outbuf_t *o)
{
    bool force = argc == 5 && strcmp(argv[4], "force") == 0;
    if (argc != 4 && !force)
        return fail(out, -EINVAL, "usage: volume replace-brick NAME OLD-BRICK NEW-BRICK [force]");
    kbd_volume_t *v = get_volume(c, argv[1], out);
    if (!v)
        return -ENOENT;
    int k = kbd_set_size(v), idx = find_brick(v, argv[2], out), rc = idx < 0 ? -EINVAL : 0;
    kbd_brick_t oldb = { 0 };
    bool *want = calloc((size_t)v->nbricks, sizeof(bool));
    kbd_volume_t *old = NULL;
    if (!rc && !want)
        rc = fail(out, -ENOMEM, "out of memory");
    if (!rc && k < 2 && !force)
        rc = fail(out, -EINVAL, "volume '%s' is not replicated: the new brick would start empty (force to do it "
                  "anyway)", v->name);
    if (!rc) {
        char *text = kbd_volume_format(v), err[256];
        old = text ? kbd_volume_parse(text, err, sizeof(err)) : NULL;
        free(text);
        if (!old)
            rc = fail(out, -ENOMEM, "out of memory");
    }
    if (!rc) {
        oldb = v->bricks[idx];
        want[idx] = true;
        memset(&v->bricks[idx], 0, sizeof(kbd_brick_t));
        rc = new_brick(v, idx, argv[3], out);
    }
    if (!rc)
        rc = check_new_nodes(v, want, out);     /* the new brick's node must answer; the old one need not */
    if (!rc)
        rc = prepare_bricks(v, want, force, out);
    if (!rc) {
        v->version++;
        if ((rc = store_with_old(c, v, old, true, out)))
            unprepare_bricks(v, want);
    }
    const kbd_brick_t *healer = NULL;
    if (!rc && k > 1 && v->status == KBD_VOL_STARTED)
        healer = heal_new_brick(v, idx / k, idx % k);
    if (!rc) {
        char *ob = kbd_brick_str(&oldb), *nb = kbd_brick_str(&v->bricks[idx]);
        if (c->json) {
            outf(o, "{\"volume\":");
            outj(o, v->name);
            outf(o, ",\"old\":");
            outj(o, ob);
            outf(o, ",\"new\":");
            outj(o, nb);
            outf(o, ",\"heal_started\":%s}\n", healer ? "true" : "false");
        } else {
            if (!healer && k > 1 && v->status == KBD_VOL_STARTED)
                outf(o, "warning: no heal daemon had the new brick and a good one up within %d s: run 'kembar volume "
                        "heal %s full'\n", HEAL_READY_WAIT_MS / 1000, v->name);
            outf(o, "volume replace-brick: %s: %s replaced by %s", v->name, ob ? ob : "?", nb ? nb : "?");
            if (healer)
                outf(o, "; full heal of replica set %d started on %s:%u ('kembar volume heal %s info')", idx / k,
                     healer->host, healer->port, v->name);
            outf(o, "\n");
        }
        free(ob);
        free(nb);
    }
    free(oldb.host);
    free(oldb.path);
    free(want);
    kbd_volume_free(old);
    kbd_volume_free(v);
    return rc;
}

/* ---------------- dispatcher ---------------- */

int kbd_cli_run(const char *self_host, uint16_t self_port, int argc, char **argv, char **out)
{
    ctx_t c = { .self_host = self_host, .self_port = self_port };
    outbuf_t o = { 0 };
    *out = NULL;
    while (argc > 0 && strcmp(argv[0], "--json") == 0) {
        c.json = true;
        argc--;
        argv++;
    }
    if (argc < 2 || strcmp(argv[0], "volume") != 0)
        return fail(out, -EINVAL, "usage: kembar volume <create|start|stop|delete|info|status|list|set|get|heal|"
                                  "add-brick|remove-brick|replace-brick|rebalance> ...");
    argc--;
    argv++;
    const char *verb = argv[0];
    int rc;
    if (strcmp(verb, "create") == 0)
        rc = cmd_create(&c, argc, argv, out, &o);
    else if (strcmp(verb, "start") == 0)
        rc = cmd_state(&c, argc, argv, KBD_VOL_STARTED, out, &o);
    else if (strcmp(verb, "stop") == 0)
        rc = cmd_state(&c, argc, argv, KBD_VOL_STOPPED, out, &o);
    else if (strcmp(verb, "delete") == 0)
        rc = cmd_delete(&c, argc, argv, out, &o);
    else if (strcmp(verb, "info") == 0)
        rc = cmd_info(&c, argc, argv, out, &o, false);
    else if (strcmp(verb, "list") == 0)
        rc = cmd_info(&c, argc, argv, out, &o, true);
    else if (strcmp(verb, "status") == 0)
        rc = cmd_status(&c, argc, argv, out, &o);
    else if (strcmp(verb, "set") == 0 && argc == 2 && strcmp(argv[1], "help") == 0)
        rc = cmd_set_help(&c, &o);
    else if (strcmp(verb, "set") == 0)
        rc = cmd_set(&c, argc, argv, out, &o);
    else if (strcmp(verb, "get") == 0)
        rc = cmd_get(&c, argc, argv, out, &o);
    else if (strcmp(verb, "heal") == 0)
        rc = cmd_heal(&c, argc, argv, out, &o);
    else if (strcmp(verb, "add-brick") == 0)
        rc = cmd_add_brick(&c, argc, argv, out, &o);
    else if (strcmp(verb, "rebalance") == 0)
        rc = cmd_rebalance(&c, argc, argv, out, &o);
    else if (strcmp(verb, "remove-brick") == 0)
        rc = cmd_remove_brick(&c, argc, argv, out, &o);
    else if (strcmp(verb, "replace-brick") == 0)
        rc = cmd_replace_brick(&c, argc, argv, out, &o);
    else if (strcmp(verb, "profile") == 0)
        rc = cmd_profile(&c, argc, argv, out, &o, false);
    else if (strcmp(verb, "top") == 0)
        rc = cmd_profile(&c, argc, argv, out, &o, true);
    else
        rc = fail(out, -EINVAL, "unknown command 'volume %s'", verb);
    if (rc) {
        free(o.p);
        if (!*out)
            *out = strdup(strerror(-rc));
        return rc;
    }
    free(*out);
    *out = o.p ? o.p : strdup("");
    return 0;
}

/* ---------------- the management thread ---------------- */

typedef struct job {
    uint64_t conn_id, xid;
    int argc;
    char **argv;
    int status;
    char *out;
    kbd_t *d;
    struct job *next;
} job_t;

/* ---------------- catching up with a missed change ---------------- */

/* A node that was down while a definition changed (replace-brick, remove-brick
 * commit, set, stop) comes back with the old one and would serve a brick
 * that left the volume, or hand out an old volfile. So, at start and every
 * CATCH_UP_MS, each volume this node knows is compared with what the other
 * nodes of the volume hold, and a newer definition of the same volume is
 * stored here (which starts or stops local bricks as it says). */
#define CATCH_UP_MS 15000

static void catch_up_one(const ctx_t *c, const char *name)
{
    char *ignore = NULL;
    kbd_volume_t *v = get_volume(c, name, &ignore), *best = NULL;
    free(ignore);
    if (!v)
        return;
    node_t *nodes;
    int n = volume_nodes(v, &nodes);
    for (int k = 0; k < n; k++) {
        char *text = NULL, err[256];
        char *argv[] = { "peer", "get", (char *)name };
        /* a short deadline: a hung node must not hold the CLI queue behind us */
        if (is_self(c, &nodes[k]) ||
            rpc_sync_argv(nodes[k].host, nodes[k].port, KB_PROC_PEER, 3, argv, 2000, &text, err, sizeof(err))) {
            free(text);
            continue;
        }
        kbd_volume_t *nv = text ? kbd_volume_parse(text, err, sizeof(err)) : NULL;
        free(text);
        if (nv && kb_gfid_eq(&nv->id, &v->id) && nv->version > (best ? best : v)->version) {
            kbd_volume_free(best);
            best = nv;
        } else {
            kbd_volume_free(nv);
        }
    }
    if (best) {
        node_t self = { (char *)c->self_host, c->self_port };
        char csv[1024], *text = kbd_volume_format(best), *reply = NULL;
        local_csv(best, &self, csv, sizeof(csv));
        int rc = text ? peer(c->self_host, c->self_port, &reply, 4, "peer", "store", csv, text) : -ENOMEM;
        if (rc)
            kb_warn("mgmt", "volume '%s': cannot take the newer definition (version %u): %s", name, best->version,
                    reply ? reply : strerror(-rc));
        else
            kb_info("mgmt", "volume '%s' changed while this node was away: definition version %u -> %u", name,
                    v->version, best->version);
        free(reply);
        free(text);
        kbd_volume_free(best);
    }
    free(nodes);
    kbd_volume_free(v);
}

static void catch_up(kbd_t *d)
{
    ctx_t c = { .self_host = d->self_host, .self_port = d->port };
    char *list = NULL, *save = NULL;
    if (peer(c.self_host, c.self_port, &list, 2, "peer", "list") == 0 && list)
        for (char *name = strtok_r(list, "\n", &save); name; name = strtok_r(NULL, "\n", &save))
            catch_up_one(&c, name);
    free(list);
}

struct kbd_mgmt {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    job_t *head, *tail;
    int queued;
    bool stop, started;
};

static void job_reply(void *arg)
{
    job_t *j = arg;
    kbd_conn_reply_text(j->d, j->conn_id, j->xid, KB_PROC_CLI, j->status, j->out);
    for (int i = 0; i < j->argc; i++)
        free(j->argv[i]);
    free(j->argv);
    free(j->out);
    free(j);
}

static void *mgmt_main(void *arg)
{
    kbd_t *d = arg;
    struct kbd_mgmt *m = d->mgmt;
    uint64_t next_catch_up = kb_now_ms() + 1000;     /* once the node is serving */
    pthread_mutex_lock(&m->lock);
    while (!m->stop) {
        job_t *j = m->head;
        if (!j && kb_now_ms() >= next_catch_up) {
            pthread_mutex_unlock(&m->lock);
            catch_up(d);
            next_catch_up = kb_now_ms() + CATCH_UP_MS;
            pthread_mutex_lock(&m->lock);
            continue;
        }
        if (!j) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            uint64_t ms = next_catch_up - KB_MIN(kb_now_ms(), next_catch_up);
            ts.tv_sec += (time_t)(ms / 1000);
            ts.tv_nsec += (long)(ms % 1000) * 1000000L;
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&m->cond, &m->lock, &ts);
            continue;
        }
        m->head = j->next;
        if (!m->head)
            m->tail = NULL;
        m->queued--;
        pthread_mutex_unlock(&m->lock);
        j->status = kbd_cli_run(d->self_host, d->port, j->argc, j->argv, &j->out);
        if (kb_loop_run_in(d->loop, job_reply, j))
            kb_err("mgmt", "cannot post a reply");
        pthread_mutex_lock(&m->lock);
    }
    pthread_mutex_unlock(&m->lock);
    return NULL;
}

int kbd_mgmt_start(kbd_t *d)
{
    struct kbd_mgmt *m = kb_zalloc(sizeof(*m));
    if (!m)
        return -ENOMEM;
    pthread_mutex_init(&m->lock, NULL);
    pthread_cond_init(&m->cond, NULL);
    d->mgmt = m;
    if (pthread_create(&m->thread, NULL, mgmt_main, d))
        return -errno;
    m->started = true;
    return 0;
}

void kbd_mgmt_stop(kbd_t *d)
{
    struct kbd_mgmt *m = d->mgmt;
    if (!m)
        return;
    pthread_mutex_lock(&m->lock);
    m->stop = true;
    pthread_cond_signal(&m->cond);
    pthread_mutex_unlock(&m->lock);
    if (m->started)
        pthread_join(m->thread, NULL);
    kbd_rebal_shutdown(d);
    while (m->head) {
        job_t *j = m->head;
        m->head = j->next;
        for (int i = 0; i < j->argc; i++)
            free(j->argv[i]);
        free(j->argv);
        free(j);
    }
    free(m);
    d->mgmt = NULL;
}

int kbd_mgmt_submit(kbd_t *d, uint64_t conn_id, uint64_t xid, int argc, char **argv)
{
    struct kbd_mgmt *m = d->mgmt;
    job_t *j = kb_zalloc(sizeof(*j));
    if (!j)
        return -ENOMEM;
    j->conn_id = conn_id;
    j->xid = xid;
    j->argc = argc;
    j->argv = argv;
    j->d = d;
    pthread_mutex_lock(&m->lock);
    if (m->queued >= 64) {
        pthread_mutex_unlock(&m->lock);
        free(j);
        return -EBUSY;
    }
    if (m->tail)
        m->tail->next = j;
    else
        m->head = j;
    m->tail = j;
    m->queued++;
    pthread_cond_signal(&m->cond);
    pthread_mutex_unlock(&m->lock);
    return 0;
}
