/*
 * mgmt_bricks.c — the verbs that grow and shrink a volume: add-brick,
 * rebalance, remove-brick and replace-brick (mgmt.h).
 *
 * Promises
 *  - Whole replica sets only: add-brick and remove-brick refuse anything
 *    else. add-brick appends, so existing bricks keep their indices.
 *  - A rebalance starts only when every client attached to the volume (heal
 *    daemons aside) runs a graph of the current definition, or with force,
 *    so no file moves under a client that does not know its new place.
 *  - remove-brick commit drops sets only after a drain of exactly those
 *    sets completed without failures and their bricks hold no file (or with
 *    force).
 *  - replace-brick needs the new brick's node only. When the volume is
 *    replicated and started it starts a full heal of the brick's set, or
 *    says (a warning) that no heal daemon could within HEAL_READY_WAIT_MS.
 */
#include <stdio.h>
#include <unistd.h>
#include "lib/log.h"
#include "server/mgmt.h"

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
        return mgmt_fail(out, -EINVAL, "%s", err);
    kb_gfid_generate(&v->bricks[i].id);
    for (int k = 0; k < v->nbricks; k++)
        if (k != i && v->bricks[k].port == v->bricks[i].port && !strcmp(v->bricks[k].host, v->bricks[i].host) &&
            !strcmp(v->bricks[k].path, v->bricks[i].path))
            return mgmt_fail(out, -EINVAL, "brick %s is already a brick of volume '%s'", spec, v->name);
    return 0;
}

/* Index of brick SPEC in V, or -1 (out says why). */
static int find_brick(const kbd_volume_t *v, const char *spec, char **out)
{
    kbd_brick_t b;
    char err[512];
    if (kbd_brick_parse(spec, &b, err, sizeof(err))) {
        mgmt_fail(out, -EINVAL, "%s", err);
        return -1;
    }
    int idx = -1;
    for (int i = 0; i < v->nbricks && idx < 0; i++)
        if (v->bricks[i].port == b.port && !strcmp(v->bricks[i].host, b.host) && !strcmp(v->bricks[i].path, b.path))
            idx = i;
    free(b.host);
    free(b.path);
    if (idx < 0)
        mgmt_fail(out, -EINVAL, "%s is not a brick of volume '%s'", spec, v->name);
    return idx;
}

/* Nodes of V flagged in WANT must answer, and must not hold another volume
 * of V's name (a store there would be refused half-way through). */
static int check_new_nodes(const kbd_volume_t *v, const bool *want, char **out)
{
    node_t *nodes;
    int n = mgmt_volume_nodes(v, &nodes), rc = 0;
    if (n < 0)
        return mgmt_fail(out, -ENOMEM, "out of memory");
    for (int k = 0; k < n && !rc; k++) {
        bool mine = false;
        for (int b = 0; b < v->nbricks; b++)
            mine |= want[b] && mgmt_brick_on(v, b, &nodes[k]);
        if (!mine)
            continue;
        char *reply = NULL, err[256];
        int r = mgmt_peer(nodes[k].host, nodes[k].port, &reply, 3, "peer", "get", v->name);
        if (r == 0) {
            kbd_volume_t *there = reply ? kbd_volume_parse(reply, err, sizeof(err)) : NULL;
            if (!there || !kb_gfid_eq(&there->id, &v->id))
                rc = mgmt_fail(out, -EEXIST, "node %s:%u has another volume named '%s'", nodes[k].host, nodes[k].port,
                          v->name);
            kbd_volume_free(there);
        } else if (r != -ENOENT) {
            rc = mgmt_unreachable(out, nodes[k].host, nodes[k].port, r, reply);
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
    int rc = mgmt_store_everywhere(c, v, force, out);
    node_t *nodes;
    int n = rc ? 0 : mgmt_volume_nodes(old, &nodes);
    char *text = n > 0 ? kbd_volume_format(v) : NULL;
    for (int k = 0; k < n && text; k++) {
        bool kept = mgmt_is_self(c, &nodes[k]);
        for (int b = 0; b < v->nbricks && !kept; b++)
            kept = mgmt_brick_on(v, b, &nodes[k]);
        if (kept)
            continue;
        char *reply = NULL;
        if (mgmt_peer(nodes[k].host, nodes[k].port, &reply, 4, "peer", "store", "", text))
            kb_warn("mgmt", "node %s:%u did not take the new definition of %s: %s", nodes[k].host, nodes[k].port,
                    v->name, reply ? reply : "?");
        free(reply);
    }
    free(text);
    if (n > 0)
        free(nodes);
    return rc;
}

int mgmt_cmd_add_brick(const ctx_t *c, int argc, char **argv, char **out, outbuf_t *o)
{
    if (argc < 3)
        return mgmt_fail(out, -EINVAL, "usage: volume add-brick NAME HOST[:PORT]:/PATH... [force]");
    bool force = strcmp(argv[argc - 1], "force") == 0;
    int nb = argc - 2 - force;
    kbd_volume_t *v = mgmt_get_volume(c, argv[1], out);
    if (!v)
        return -ENOENT;
    int k = kbd_set_size(v), old_n = v->nbricks, rc = 0;
    bool *want = NULL;
    kbd_brick_t *nbr = NULL;
    if (nb < 1 || nb % k)
        rc = mgmt_fail(out, -EINVAL, "%d bricks do not make whole replica sets of %d (replica %d%s)", nb, k, v->replica,
                  v->arbiter ? " + arbiter 1" : "");
    else if ((old_n + nb) / k > KBD_MAX_SETS)
        rc = mgmt_fail(out, -EINVAL, "a volume has at most %d replica sets", KBD_MAX_SETS);
    else if (!(nbr = realloc(v->bricks, (size_t)(old_n + nb) * sizeof(*nbr))) ||
             !(want = calloc((size_t)(old_n + nb), sizeof(bool))))
        rc = mgmt_fail(out, -ENOMEM, "out of memory");
    if (nbr)
        v->bricks = nbr;
    for (int i = 0; i < nb && !rc; i++) {
        memset(&v->bricks[old_n + i], 0, sizeof(kbd_brick_t));
        v->nbricks++;                           /* counted before parsing: freed with v */
        want[old_n + i] = true;
        rc = new_brick(v, old_n + i, argv[2 + i], out);
    }
    if (!rc)
        rc = mgmt_check_nodes(v, out);
    if (!rc)
        rc = check_new_nodes(v, want, out);
    if (!rc)
        rc = mgmt_prepare_bricks(v, want, force, out);
    if (!rc) {
        v->version++;
        if ((rc = mgmt_store_everywhere(c, v, false, out)))
            mgmt_unprepare_bricks(v, want);
    }
    if (!rc && c->json) {
        mgmt_outf(o, "{\"volume\":");
        mgmt_outj(o, v->name);
        mgmt_outf(o, ",\"added\":%d,\"bricks\":%d,\"sets\":%d,\"version\":%u}\n", nb, v->nbricks, kbd_nsets(v), v->version);
    } else if (!rc) {
        mgmt_outf(o, "volume add-brick: %s: success (%d x %d = %d bricks); 'kembar volume rebalance %s start' spreads "
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
    int n = mgmt_volume_nodes(v, &nodes);
    if (n < 0)
        return mgmt_fail(out, -ENOMEM, "out of memory");
    uint64_t until = kb_now_ms() + (uint64_t)wait_ms;
    int rc = 0;
    for (;;) {
        int stale = 0;
        outbuf_t hosts = { 0 };
        for (int k = 0; k < n; k++) {
            char *reply = NULL, *save = NULL;
            if (mgmt_peer(nodes[k].host, nodes[k].port, &reply, 3, "peer", "clients", v->name) || !reply) {
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
                    mgmt_outf(&hosts, " %s,", addr);
            }
            free(reply);
        }
        if (!stale || kb_now_ms() >= until) {
            if (stale) {
                hosts.p[hosts.len - 1] = 0;     /* the last comma */
                rc = mgmt_fail(out, -EAGAIN, "%d client connection%s still run%s an older graph of '%s' (from%s); retry "
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
        return mgmt_fail(out, -EINVAL, "volume '%s' has one replica set: nothing to rebalance", v->name);
    if (v->status != KBD_VOL_STARTED)
        return mgmt_fail(out, -EINVAL, "volume '%s' is not started", v->name);
    int rc = force ? 0 : wait_clients(v, client_wait_ms(), out);
    if (rc)
        return rc;
    char mask[256] = "-", *reply = NULL;
    if (v->drain)
        kbd_mask_csv(v->drain, mask, sizeof(mask));
    rc = mgmt_peer(c->self_host, c->self_port, &reply, 4, "peer", "rebalance-start", v->name, mask);
    if (rc)
        mgmt_fail(out, rc, "%s", reply ? reply : strerror(-rc));
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
    int n = mgmt_volume_nodes(v, &nodes);
    if (n < 0)
        return n;
    bool self = false;
    for (int k = 0; k < n; k++)
        self |= mgmt_is_self(c, &nodes[k]);
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
        int r = mgmt_peer(nodes[k].host, nodes[k].port, &reply, 3, "peer", "rebalance-status", v->name);
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
        mgmt_outf(o, "{\"volume\":");
        mgmt_outj(o, v->name);
        mgmt_outf(o, ",\"status\":\"%s\",\"draining\":[%s],\"nodes\":[", overall, drain);
        for (int k = 0; k < n; k++) {
            mgmt_outf(o, "%s{\"node\":\"%s:%u\",\"status\":\"%s\",\"scanned\":%llu,\"moved\":%llu,\"bytes\":%llu,"
                    "\"skipped\":%llu,\"failures\":%llu,\"directories\":%llu,\"seconds\":%.1f,\"drain\":%llu,"
                    "\"version\":%u,\"where\":", k ? "," : "", nodes[k].host, nodes[k].port, st[k].state,
                 st[k].scanned, st[k].moved, st[k].bytes, st[k].skipped, st[k].failures, st[k].dirs,
                 (double)st[k].ms / 1000.0, st[k].drain, st[k].version);
            mgmt_outj(o, st[k].where);
            mgmt_outf(o, "}");
        }
        mgmt_outf(o, "],\"scanned\":%llu,\"moved\":%llu,\"bytes\":%llu,\"skipped\":%llu,\"failures\":%llu,"
                "\"seconds\":%.1f,\"bytes_per_second\":%.0f}\n", scanned, moved, bytes, skipped, failures, secs, rate);
        return;
    }
    mgmt_outf(o, "%-28s %-12s %9s %9s %12s %8s %9s %10s\n", "Node", "Status", "Scanned", "Moved", "Size", "Skipped",
         "Failures", "Run time");
    for (int k = 0; k < n; k++) {
        char node[300], size[32];
        snprintf(node, sizeof(node), "%s:%u", nodes[k].host, nodes[k].port);
        mgmt_human_bytes(st[k].bytes, size, sizeof(size));
        mgmt_outf(o, "%-28s %-12s %9llu %9llu %12s %8llu %9llu %8.1f s\n", node, st[k].state, st[k].scanned,
             st[k].moved, size, st[k].skipped, st[k].failures, (double)st[k].ms / 1000.0);
    }
    char size[32], rs[32];
    mgmt_human_bytes(bytes, size, sizeof(size));
    mgmt_human_bytes((unsigned long long)rate, rs, sizeof(rs));
    if (!run)
        mgmt_outf(o, "Progress: no rebalance has run for %s\n", v->name);
    else if (!strcmp(overall, "running"))
        mgmt_outf(o, "Progress: running for %.0f s: %llu files scanned in %llu directories, %llu moved (%s, %s/s), "
                "now in %s\n", secs, scanned, run->dirs, moved, size, rs, run->where);
    else
        mgmt_outf(o, "Progress: %s: %llu files scanned, %llu moved (%s in %.1f s, %s/s), %llu skipped, %llu failures%s%s\n",
             overall, scanned, moved, size, secs, rs, skipped, failures, run->where[0] ? ": " : "", run->where);
    if (v->drain)
        mgmt_outf(o, "Draining replica sets: %s\n", drain);
}

static int rebalance_status(const ctx_t *c, const kbd_volume_t *v, outbuf_t *o, char **out)
{
    node_t *nodes;
    reb_node_t *st;
    int n = reb_collect(c, v, &nodes, &st);
    if (n < 0)
        return mgmt_fail(out, n, "out of memory");
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
            mgmt_peer(nodes[k].host, nodes[k].port, &reply, 3, "peer", "rebalance-stop", v->name);
        free(reply);
    }
    if (n >= 0) {
        free(nodes);
        free(st);
    }
}

int mgmt_cmd_rebalance(const ctx_t *c, int argc, char **argv, char **out, outbuf_t *o)
{
    const char *act = argc > 2 ? argv[2] : "";
    bool force = argc == 4 && !strcmp(act, "start") && !strcmp(argv[3], "force");
    if ((argc != 3 && !force) || (strcmp(act, "start") && strcmp(act, "status") && strcmp(act, "stop")))
        return mgmt_fail(out, -EINVAL, "usage: volume rebalance NAME start [force] | status | stop");
    kbd_volume_t *v = mgmt_get_volume(c, argv[1], out);
    if (!v)
        return -ENOENT;
    int rc = 0;
    if (!strcmp(act, "status")) {
        rc = rebalance_status(c, v, o, out);
    } else if (!strcmp(act, "stop")) {
        rebalance_stop_all(c, v);
        mgmt_outf(o, c->json ? "{\"volume\":\"%s\",\"stopping\":true}\n" : "volume rebalance: %s: stopping\n", v->name);
    } else if (!(rc = rebalance_start(c, v, force, out))) {
        if (c->json)
            mgmt_outf(o, "{\"volume\":\"%s\",\"started\":true,\"node\":\"%s:%u\"}\n", v->name, c->self_host, c->self_port);
        else
            mgmt_outf(o, "volume rebalance: %s: started on %s:%u; 'kembar volume rebalance %s status' shows progress\n",
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
        mgmt_fail(out, -ENOMEM, "out of memory");
        return 0;
    }
    for (int i = 0; i < nb; i++) {
        int idx = find_brick(v, bricks[i], out);
        if (idx < 0 || given[idx]) {
            if (idx >= 0)
                mgmt_fail(out, -EINVAL, "brick %s is given twice", bricks[i]);
            free(given);
            return 0;
        }
        given[idx] = true;
        mask |= 1ull << (idx / k);
    }
    for (int i = 0; i < v->nbricks; i++)
        if ((mask & (1ull << (i / k))) && !given[i]) {
            char *bs = kbd_brick_str(&v->bricks[i]);
            mgmt_fail(out, -EINVAL, "remove-brick takes whole replica sets: %s (set %d) is missing", bs ? bs : "?", i / k);
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
        return mgmt_fail(out, -ENOMEM, "out of memory");
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
        return mgmt_fail(out, -EBUSY, ok < 0 ? "the drain of '%s' is still running; see 'remove-brick ... status'"
                                        : "no drain of these bricks of '%s' completed without failures; run "
                                          "'remove-brick ... start' again (or commit force to drop what they hold)",
                    v->name);
    int k = kbd_set_size(v), rc = 0;
    for (int b = 0; b < v->nbricks && !rc; b++) {
        if (!(mask & (1ull << (b / k))))
            continue;
        char *reply = NULL, *save = NULL;
        int files = -1, r = mgmt_peer(v->bricks[b].host, v->bricks[b].port, &reply, 3, "peer", "brick-files", v->name);
        for (char *l = r || !reply ? NULL : strtok_r(reply, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
            int idx, cnt;
            if (sscanf(l, "%d %d", &idx, &cnt) == 2 && idx == b)
                files = cnt;
        }
        free(reply);
        char *bs = kbd_brick_str(&v->bricks[b]);
        if (files < 0)
            rc = mgmt_fail(out, -EHOSTUNREACH, "cannot count the files left on %s (node unreachable or brick unreadable); "
                      "commit force drops it anyway", bs ? bs : "?");
        else if (files > 0)
            rc = mgmt_fail(out, -ENOTEMPTY, "%s still holds %d%s file%s; run 'remove-brick ... start' again (or commit "
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
        return mgmt_fail(out, -EBUSY, "other replica sets of '%s' are being drained: commit or stop that first", v->name);
    if (!force && v->drain != mask)
        return mgmt_fail(out, -EINVAL, "these bricks of '%s' are not being drained: 'remove-brick ... start' first",
                    v->name);
    if (!force && (rc = drain_done(c, v, mask, out)))
        return rc;
    if (!force && (rc = mgmt_check_nodes(v, out)))
        return rc;
    rebalance_stop_all(c, v);
    char *text = kbd_volume_format(v), err[256];
    kbd_volume_t *old = text ? kbd_volume_parse(text, err, sizeof(err)) : NULL;
    free(text);
    if (!old)
        return mgmt_fail(out, -ENOMEM, "out of memory");
    drop_sets(v, mask);
    v->version++;
    rc = store_with_old(c, v, old, force, out);
    kbd_volume_free(old);
    return rc;
}

int mgmt_cmd_remove_brick(const ctx_t *c, int argc, char **argv, char **out, outbuf_t *o)
{
    bool force = argc > 2 && strcmp(argv[argc - 1], "force") == 0;
    int last = argc - 1 - force;
    const char *act = last >= 3 ? argv[last] : "";
    if (strcmp(act, "start") && strcmp(act, "status") && strcmp(act, "commit") && strcmp(act, "stop"))
        return mgmt_fail(out, -EINVAL, "usage: volume remove-brick NAME HOST[:PORT]:/PATH... start|status|stop|commit [force]");
    kbd_volume_t *v = mgmt_get_volume(c, argv[1], out);
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
        rc = mgmt_fail(out, -EINVAL, "remove-brick cannot remove every replica set of '%s' (delete the volume)", v->name);
    else if (!strcmp(act, "status"))
        rc = rebalance_status(c, v, o, out);
    else if (!strcmp(act, "commit"))
        rc = remove_commit(c, v, mask, force, out);
    else if (!strcmp(act, "stop") && v->drain != mask)
        rc = mgmt_fail(out, -EINVAL, "these bricks of '%s' are not being drained", v->name);
    else if (!strcmp(act, "stop")) {
        rebalance_stop_all(c, v);
        v->drain = 0;
        v->version++;
        if (!(rc = mgmt_check_nodes(v, out)))
            rc = mgmt_store_everywhere(c, v, false, out);
    } else if (v->drain && v->drain != mask) {
        char cur[256];
        kbd_mask_csv(v->drain, cur, sizeof(cur));
        rc = mgmt_fail(out, -EBUSY, "replica sets %s of '%s' are being drained: commit or stop that first", cur, v->name);
    } else {
        if (v->drain != mask) {               /* a repeated start only runs the drain again */
            v->drain = mask;
            v->version++;
            if (!(rc = mgmt_check_nodes(v, out)))
                rc = mgmt_store_everywhere(c, v, false, out);
        }
        if (!rc)
            rc = rebalance_start(c, v, force, out);
    }
    if (!rc && strcmp(act, "status")) {
        if (c->json)
            mgmt_outf(o, "{\"volume\":\"%s\",\"remove_brick\":\"%s\",\"sets\":[%s]}\n", v->name, act, csv);
        else if (!strcmp(act, "start"))
            mgmt_outf(o, "volume remove-brick start: %s: draining replica set%s %s on %s:%u; 'kembar volume remove-brick "
                    "%s ... status' shows progress, then commit\n", v->name, strchr(csv, ',') ? "s" : "", csv,
                 c->self_host, c->self_port, v->name);
        else
            mgmt_outf(o, "volume remove-brick %s: %s: success%s\n", act, v->name,
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
            int r = mgmt_peer(v->bricks[i].host, v->bricks[i].port, &reply, 5, "peer", "heal-full-ready", v->name, sset,
                         schild);
            free(reply);
            if (r == 0)
                return &v->bricks[i];
        }
        usleep(300 * 1000);
    } while (kb_now_ms() < until);
    return NULL;
}

int mgmt_cmd_replace_brick(const ctx_t *c, int argc, char **argv, char **out, outbuf_t *o)
{
    bool force = argc == 5 && strcmp(argv[4], "force") == 0;
    if (argc != 4 && !force)
        return mgmt_fail(out, -EINVAL, "usage: volume replace-brick NAME OLD-BRICK NEW-BRICK [force]");
    kbd_volume_t *v = mgmt_get_volume(c, argv[1], out);
    if (!v)
        return -ENOENT;
    int k = kbd_set_size(v), idx = find_brick(v, argv[2], out), rc = idx < 0 ? -EINVAL : 0;
    kbd_brick_t oldb = { 0 };
    bool *want = calloc((size_t)v->nbricks, sizeof(bool));
    kbd_volume_t *old = NULL;
    if (!rc && !want)
        rc = mgmt_fail(out, -ENOMEM, "out of memory");
    if (!rc && k < 2 && !force)
        rc = mgmt_fail(out, -EINVAL, "volume '%s' is not replicated: the new brick would start empty (force to do it "
                  "anyway)", v->name);
    if (!rc) {
        char *text = kbd_volume_format(v), err[256];
        old = text ? kbd_volume_parse(text, err, sizeof(err)) : NULL;
        free(text);
        if (!old)
            rc = mgmt_fail(out, -ENOMEM, "out of memory");
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
        rc = mgmt_prepare_bricks(v, want, force, out);
    if (!rc) {
        v->version++;
        if ((rc = store_with_old(c, v, old, true, out)))
            mgmt_unprepare_bricks(v, want);
    }
    const kbd_brick_t *healer = NULL;
    if (!rc && k > 1 && v->status == KBD_VOL_STARTED)
        healer = heal_new_brick(v, idx / k, idx % k);
    if (!rc) {
        char *ob = kbd_brick_str(&oldb), *nb = kbd_brick_str(&v->bricks[idx]);
        if (c->json) {
            mgmt_outf(o, "{\"volume\":");
            mgmt_outj(o, v->name);
            mgmt_outf(o, ",\"old\":");
            mgmt_outj(o, ob);
            mgmt_outf(o, ",\"new\":");
            mgmt_outj(o, nb);
            mgmt_outf(o, ",\"heal_started\":%s}\n", healer ? "true" : "false");
        } else {
            if (!healer && k > 1 && v->status == KBD_VOL_STARTED)
                mgmt_outf(o, "warning: no heal daemon had the new brick and a good one up within %d s: run 'kembar volume "
                        "heal %s full'\n", HEAL_READY_WAIT_MS / 1000, v->name);
            mgmt_outf(o, "volume replace-brick: %s: %s replaced by %s", v->name, ob ? ob : "?", nb ? nb : "?");
            if (healer)
                mgmt_outf(o, "; full heal of replica set %d started on %s:%u ('kembar volume heal %s info')", idx / k,
                     healer->host, healer->port, v->name);
            mgmt_outf(o, "\n");
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
