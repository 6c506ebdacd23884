/*
 * mgmt_volume.c — the volume lifecycle verbs: create, start, stop, delete,
 * set (and set help), get, info and list (mgmt.h).
 *
 * Promises
 *  - create checks every node first (reachable, name unknown everywhere),
 *    prepares the bricks (rolled back on any failure) and only then stores
 *    the definition: nothing half-created.
 *  - start, stop, delete and set need every node to answer (start and stop
 *    take force to skip the unreachable ones); start, stop and set bump the
 *    definition's version.
 *  - A value given to set is checked against the option's typed table
 *    before anything is stored; an option a later release introduced is
 *    refused while a node or client of the volume runs an older one, and
 *    raises the volume's op-version when it is stored (lib/version.h).
 *  - A new volume's op-version is the lowest its nodes run; it never goes
 *    down (set cluster.op-version max|N raises it).
 *  - info and list read this node's definitions only; they change nothing.
 */
#include <stdio.h>
#include "lib/version.h"
#include "server/mgmt.h"

/* ---------------- volume create ---------------- */

int mgmt_cmd_create(const ctx_t *c, int argc, char **argv, char **out, outbuf_t *o)
{
    /* create NAME [replica N [arbiter 1]] BRICK... [force] */
    if (argc < 2)
        return mgmt_fail(out, -EINVAL, "usage: volume create NAME [replica N [arbiter 1]] HOST[:PORT]:/PATH... [force]");
    const char *name = argv[1];
    if (!kbd_volname_ok(name))
        return mgmt_fail(out, -EINVAL, "invalid volume name '%s' (letters, digits, - and _, at most 64)", name);
    int i = 2, replica = 1, arbiter = 0;
    bool force = false, replica_given = false;
    if (i < argc && strcmp(argv[i], "replica") == 0) {
        char *end;
        if (i + 1 >= argc || (replica = (int)strtol(argv[i + 1], &end, 10)) < 1 || *end || replica > 16)
            return mgmt_fail(out, -EINVAL, "replica count must be a number from 1 to %d", 16);
        replica_given = true;
        i += 2;
        if (i < argc && strcmp(argv[i], "arbiter") == 0) {
            if (i + 1 >= argc || strcmp(argv[i + 1], "1") != 0)
                return mgmt_fail(out, -EINVAL, "arbiter count must be 1");
            if (replica != 2)
                return mgmt_fail(out, -EINVAL, "an arbiter goes with replica 2 (replica 2 arbiter 1)");
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
        return mgmt_fail(out, -EINVAL, "no bricks given");
    if (nb % setsz)
        return mgmt_fail(out, -EINVAL, "%d bricks do not make whole replica sets of %d%s", nb, setsz,
                    arbiter ? " (replica 2 + arbiter 1)" : "");
    if (nb / setsz > KBD_MAX_SETS)
        return mgmt_fail(out, -EINVAL, "a volume has at most %d replica sets", KBD_MAX_SETS);
    kbd_volume_t *v = kb_zalloc(sizeof(*v));
    if (!v || !(v->opts = kb_opts_new()) || !(v->bricks = calloc((size_t)nb, sizeof(kbd_brick_t))) ||
        !(v->name = strdup(name))) {
        kbd_volume_free(v);
        return mgmt_fail(out, -ENOMEM, "out of memory");
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
            rc = mgmt_fail(out, -EINVAL, "%s", err);
            break;
        }
        v->nbricks++;
        kb_gfid_generate(&v->bricks[b].id);
        for (int k = 0; k < b; k++)
            if (v->bricks[k].port == v->bricks[b].port && strcmp(v->bricks[k].host, v->bricks[b].host) == 0 &&
                strcmp(v->bricks[k].path, v->bricks[b].path) == 0)
                rc = mgmt_fail(out, -EINVAL, "brick %s is given twice", argv[i + b]);
    }
    if (!rc) {
        char *reply = NULL;
        if (mgmt_peer(c->self_host, c->self_port, &reply, 3, "peer", "get", (char *)name) == 0)
            rc = mgmt_fail(out, -EEXIST, "volume '%s' already exists", name);
        free(reply);
    }
    node_t *nodes = NULL;
    int nn = rc ? 0 : mgmt_volume_nodes(v, &nodes);
    /* Every node reachable, and none knows the name yet. */
    for (int k = 0; k < nn && !rc; k++) {
        char *reply = NULL;
        int r = mgmt_peer(nodes[k].host, nodes[k].port, &reply, 3, "peer", "get", (char *)name);
        if (r == 0)
            rc = mgmt_fail(out, -EEXIST, "volume '%s' already exists", name);
        else if (r != -ENOENT)
            rc = mgmt_unreachable(out, nodes[k].host, nodes[k].port, r, reply);
        free(reply);
    }
    char volid[KB_GFID_STRLEN];
    kb_gfid_str(&v->id, volid);
    /* op-version: the lowest release among its nodes (lib/version.h) */
    char who[320];
    if (!rc && (rc = mgmt_min_op_version(v, &v->op_version, who, sizeof(who), out)) == 0)
        v->op_version = KB_MIN(v->op_version, KB_OP_VERSION);
    if (!rc)
        rc = mgmt_prepare_bricks(v, NULL, force, out);
    if (!rc && (rc = mgmt_store_everywhere(c, v, false, out)))
        mgmt_unprepare_bricks(v, NULL);
    if (rc) {
    } else {
        if (replica == 2 && !arbiter && !force && !c->json)
            mgmt_outf(o, "warning: replica 2 without an arbiter can split-brain; consider 'replica 2 arbiter 1'\n");
        if (c->json) {
            mgmt_outf(o, "{\"volume\":");
            mgmt_outj(o, name);
            mgmt_outf(o, ",\"id\":\"%s\",\"created\":true}\n", volid);
        } else {
            mgmt_outf(o, "volume create: %s: success%s\n", name, replica_given ? "" : "");
        }
    }
    free(nodes);
    kbd_volume_free(v);
    return rc;
}

/* ---------------- start / stop / delete / set ---------------- */

int mgmt_cmd_state(const ctx_t *c, int argc, char **argv, int want, char **out, outbuf_t *o)
{
    if (argc < 2)
        return mgmt_fail(out, -EINVAL, "usage: volume %s NAME [force]", argv[0]);
    bool force = argc > 2 && strcmp(argv[2], "force") == 0;
    kbd_volume_t *v = mgmt_get_volume(c, argv[1], out);
    if (!v)
        return -ENOENT;
    int rc = 0;
    if (v->status == want && !force)
        rc = mgmt_fail(out, -EALREADY, "volume '%s' is already %s", v->name, kbd_status_name(want));
    else if (!force)
        rc = mgmt_check_nodes(v, out);
    if (!rc) {
        v->status = want;
        v->version++;
        rc = mgmt_store_everywhere(c, v, force, out);
    }
    if (!rc) {
        if (c->json) {
            mgmt_outf(o, "{\"volume\":");
            mgmt_outj(o, v->name);
            mgmt_outf(o, ",\"status\":\"%s\"}\n", kbd_status_name(want));
        } else {
            mgmt_outf(o, "volume %s: %s: success\n", argv[0], v->name);
        }
    }
    kbd_volume_free(v);
    return rc;
}

int mgmt_cmd_delete(const ctx_t *c, int argc, char **argv, char **out, outbuf_t *o)
{
    if (argc < 2)
        return mgmt_fail(out, -EINVAL, "usage: volume delete NAME");
    kbd_volume_t *v = mgmt_get_volume(c, argv[1], out);
    if (!v)
        return -ENOENT;
    int rc = 0;
    if (v->status == KBD_VOL_STARTED)
        rc = mgmt_fail(out, -EBUSY, "volume '%s' is started; stop it first", v->name);
    if (!rc)
        rc = mgmt_check_nodes(v, out);
    if (!rc) {
        node_t *nodes;
        int n = mgmt_volume_nodes(v, &nodes);
        bool self_done = false;
        for (int i = 0; i < n; i++) {
            char *reply = NULL;
            int r = mgmt_peer(nodes[i].host, nodes[i].port, &reply, 3, "peer", "delete", v->name);
            if (r && !rc)
                rc = mgmt_fail(out, r, "node %s:%u: %s", nodes[i].host, nodes[i].port, reply ? reply : strerror(-r));
            free(reply);
            self_done |= mgmt_is_self(c, &nodes[i]);
        }
        if (!self_done) {
            char *reply = NULL;
            mgmt_peer(c->self_host, c->self_port, &reply, 3, "peer", "delete", v->name);
            free(reply);
        }
        free(nodes);
    }
    if (!rc)
        mgmt_outf(o, c->json ? "{\"volume\":\"%s\",\"deleted\":true}\n" : "volume delete: %s: success\n", v->name);
    kbd_volume_free(v);
    return rc;
}

/* volume set NAME cluster.op-version max|N: the definition's op-version,
 * raised to N (max: the lowest release among the nodes of the volume) once
 * every node runs it; never lowered. */
static int set_op_version(const ctx_t *c, const char *name, const char *arg, char **out, outbuf_t *o)
{
    char *end;
    unsigned long want = strtoul(arg, &end, 10);
    bool max = strcmp(arg, "max") == 0;
    if (!max && (end == arg || *end || want < 1 || want > UINT32_MAX))
        return mgmt_fail(out, -EINVAL, "%s: 'max' or a number from 1 (1 = kembar 0.1, %u = this release, %s)",
                         KBD_OP_VERSION_KEY, KB_OP_VERSION, KB_VERSION);
    kbd_volume_t *v = mgmt_get_volume(c, name, out);
    if (!v)
        return -ENOENT;
    uint32_t min = 0;
    char who[320] = "";
    int rc = mgmt_min_op_version(v, &min, who, sizeof(who), out);
    if (!rc && max)
        want = KB_MIN(min, KB_OP_VERSION);
    const char *rel = kb_op_version_release((uint32_t)want);
    if (rc) {
    } else if (want < v->op_version) {
        rc = mgmt_fail(out, -EINVAL, "volume '%s' has op-version %u: it never goes down", v->name, v->op_version);
    } else if (want > KB_OP_VERSION || want > min) {
        if (want <= min)
            snprintf(who, sizeof(who), "this node runs kembar %s", KB_VERSION);
        rc = mgmt_fail(out, -EPROTONOSUPPORT, "%s, which op-version %lu needs >= %s", who, want,
                       rel ? rel : "a newer release");
    } else if (want > v->op_version) {
        v->op_version = (uint32_t)want;
        v->version++;
        rc = mgmt_store_everywhere(c, v, false, out);
    }
    if (!rc && c->json)
        mgmt_outf(o, "{\"volume\":\"%s\",\"set\":true,\"op_version\":%u}\n", v->name, v->op_version);
    else if (!rc)
        mgmt_outf(o, "volume set: %s: success (op-version %u, kembar %s and later)\n", v->name, v->op_version,
                  kb_op_version_release(v->op_version));
    kbd_volume_free(v);
    return rc;
}

int mgmt_cmd_set(const ctx_t *c, int argc, char **argv, char **out, outbuf_t *o)
{
    if (argc < 4)
        return mgmt_fail(out, -EINVAL, "usage: volume set NAME KEY VALUE");
    if (strcmp(argv[2], KBD_OP_VERSION_KEY) == 0)
        return set_op_version(c, argv[1], argv[3], out, o);
    const char *type = NULL;
    const kb_option_def_t *def = kbd_option_find(argv[2], &type);
    if (!def)
        return mgmt_fail(out, -EINVAL, "unknown option '%s' (see 'kembar volume set help')", argv[2]);
    char err[256];
    if (kb_opt_check(def, argv[3], err, sizeof(err)))
        return mgmt_fail(out, -EINVAL, "%s", err);
    kbd_volume_t *v = mgmt_get_volume(c, argv[1], out);
    if (!v)
        return -ENOENT;
    /* an option a later release introduced: every node and client must run it */
    uint32_t since = kb_opt_since(argv[2]);
    char what[128];
    snprintf(what, sizeof(what), "%s needs", argv[2]);
    int rc = mgmt_need_op_version(v, since, true, what, out);
    if (rc) {
        kbd_volume_free(v);
        return rc;
    }
    v->op_version = KB_MAX(v->op_version, since);
    rc = kb_opts_set(v->opts, argv[2], argv[3]);
    if (!rc) {
        v->version++;
        rc = mgmt_store_everywhere(c, v, false, out);
    } else {
        rc = mgmt_fail(out, rc, "out of memory");
    }
    if (!rc)
        mgmt_outf(o, c->json ? "{\"volume\":\"%s\",\"set\":true}\n" : "volume set: %s: success\n", v->name);
    kbd_volume_free(v);
    return rc;
}

int mgmt_cmd_set_help(const ctx_t *c, outbuf_t *o)
{
    for (size_t i = 0; i < kb_xlator_ntypes; i++) {
        const kb_xlator_type_t *t = kb_xlator_types[i];
        for (const kb_option_def_t *d = t ? t->options : NULL; d && d->key; d++)
            if (d->volume_key)
                mgmt_outf(o, "%s\t%s\t%s\t%s\n", d->volume_key, d->dflt ? d->dflt : "-", t->name, d->description);
    }
    for (const kb_option_def_t *d = kbd_volume_options(); d->key; d++)
        mgmt_outf(o, "%s\t%s\t%s\t%s\n", d->volume_key, d->dflt ? d->dflt : "-", "volume", d->description);
    return 0;
}

int mgmt_cmd_get(const ctx_t *c, int argc, char **argv, char **out, outbuf_t *o)
{
    if (argc < 2)
        return mgmt_fail(out, -EINVAL, "usage: volume get NAME [KEY]");
    kbd_volume_t *v = mgmt_get_volume(c, argv[1], out);
    if (!v)
        return -ENOENT;
    int rc = 0;
    if (argc > 2) {
        const kb_option_def_t *def = kbd_option_find(argv[2], NULL);
        char ov[16];
        snprintf(ov, sizeof(ov), "%u", v->op_version);
        if (!def) {
            rc = mgmt_fail(out, -EINVAL, "unknown option '%s'", argv[2]);
        } else {
            const char *val = strcmp(argv[2], KBD_OP_VERSION_KEY) == 0 ? ov : kb_opts_raw(v->opts, argv[2]);
            if (c->json) {
                mgmt_outf(o, "{");
                mgmt_outj(o, argv[2]);
                mgmt_outf(o, ":");
                mgmt_outj(o, val ? val : def->dflt ? def->dflt : "");
                mgmt_outf(o, "}\n");
            } else {
                mgmt_outf(o, "%s %s\n", argv[2], val ? val : def->dflt ? def->dflt : "");
            }
        }
    } else {
        mgmt_outf(o, c->json ? "{" : "");
        for (size_t i = 0; i < kb_opts_count(v->opts); i++) {
            const char *k, *val;
            kb_opts_at(v->opts, i, &k, &val);
            if (c->json) {
                mgmt_outf(o, i ? "," : "");
                mgmt_outj(o, k);
                mgmt_outf(o, ":");
                mgmt_outj(o, val);
            } else {
                mgmt_outf(o, "%s %s\n", k, val);
            }
        }
        mgmt_outf(o, c->json ? "}\n" : "");
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
        mgmt_outf(o, "%s{\"name\":", first ? "" : ",");
        mgmt_outj(o, v->name);
        mgmt_outf(o, ",\"id\":\"%s\",\"type\":\"%s\",\"status\":\"%s\",\"replica\":%d,\"arbiter\":%d,"
                "\"sets\":%d,\"version\":%u,\"op_version\":%u,\"bricks\":[",
             id, vol_type(v), kbd_status_name(v->status), v->replica, v->arbiter, v->nbricks / k, v->version,
             v->op_version);
        for (int i = 0; i < v->nbricks; i++) {
            char *bs = kbd_brick_str(&v->bricks[i]);
            mgmt_outf(o, "%s{\"brick\":", i ? "," : "");
            mgmt_outj(o, bs);
            mgmt_outf(o, ",\"arbiter\":%s}", v->arbiter && i % k == k - 1 ? "true" : "false");
            free(bs);
        }
        mgmt_outf(o, "],\"options\":{");
        for (size_t i = 0; i < kb_opts_count(v->opts); i++) {
            const char *key, *val;
            kb_opts_at(v->opts, i, &key, &val);
            mgmt_outf(o, i ? "," : "");
            mgmt_outj(o, key);
            mgmt_outf(o, ":");
            mgmt_outj(o, val);
        }
        mgmt_outf(o, "}}");
        return;
    }
    const char *rel = kb_op_version_release(v->op_version);
    mgmt_outf(o, "%sVolume Name: %s\nType: %s\nVolume ID: %s\nStatus: %s\nOp-version: %u (kembar %s and later)\n",
              first ? "" : "\n", v->name, vol_type(v), id, kbd_status_name(v->status), v->op_version,
              rel ? rel : "?");
    if (k > 1)
        mgmt_outf(o, "Number of Bricks: %d x (%d%s) = %d\n", v->nbricks / k, v->replica, v->arbiter ? " + 1 arbiter" : "",
             v->nbricks);
    else
        mgmt_outf(o, "Number of Bricks: %d\n", v->nbricks);
    mgmt_outf(o, "Bricks:\n");
    for (int i = 0; i < v->nbricks; i++) {
        char *bs = kbd_brick_str(&v->bricks[i]);
        mgmt_outf(o, "Brick%d: %s%s\n", i + 1, bs ? bs : "?", v->arbiter && i % k == k - 1 ? " (arbiter)" : "");
        free(bs);
    }
    if (kb_opts_count(v->opts)) {
        mgmt_outf(o, "Options Reconfigured:\n");
        for (size_t i = 0; i < kb_opts_count(v->opts); i++) {
            const char *key, *val;
            kb_opts_at(v->opts, i, &key, &val);
            mgmt_outf(o, "%s: %s\n", key, val);
        }
    }
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int mgmt_cmd_info(const ctx_t *c, int argc, char **argv, char **out, outbuf_t *o, bool list_only)
{
    if (argc >= 2 && !list_only) {
        kbd_volume_t *v = mgmt_get_volume(c, argv[1], out);
        if (!v)
            return -ENOENT;
        if (c->json)
            mgmt_outf(o, "[");
        info_one(c, v, o, true);
        if (c->json)
            mgmt_outf(o, "]\n");
        kbd_volume_free(v);
        return 0;
    }
    char **names;
    int n = mgmt_list_names(c, &names, out);
    if (n < 0)
        return n;
    qsort(names, (size_t)n, sizeof(char *), cmp_str);
    if (c->json)
        mgmt_outf(o, "[");
    else if (n == 0)
        mgmt_outf(o, list_only ? "No volumes present\n" : "No volumes present\n");
    for (int i = 0; i < n; i++) {
        if (list_only) {
            if (c->json) {
                mgmt_outf(o, i ? "," : "");
                mgmt_outj(o, names[i]);
            } else {
                mgmt_outf(o, "%s\n", names[i]);
            }
        } else {
            char *why = NULL;
            kbd_volume_t *v = mgmt_get_volume(c, names[i], &why);
            if (v)
                info_one(c, v, o, i == 0);
            kbd_volume_free(v);
            free(why);
        }
        free(names[i]);
    }
    free(names);
    if (c->json)
        mgmt_outf(o, "]\n");
    return 0;
}
