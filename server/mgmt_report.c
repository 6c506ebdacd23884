/*
 * mgmt_report.c — the reporting verbs: status (bricks online, clients,
 * disk, heal backlog), profile and top (per-fop counters and latencies),
 * and heal: launch a sweep or a full heal, heal info, split-brain
 * resolution (mgmt.h).
 *
 * Promises
 *  - status, profile, top and heal info change nothing (profile clear
 *    resets the counters, nothing else). A node that does not answer fails
 *    none of them: status and heal info show its bricks as not reached,
 *    profile and top leave it out.
 *  - A split-brain is resolved only as the command names it (a policy, or
 *    a source brick), one replica set after the other, by the heal daemon of
 *    the first node of the set that finds the file; the command waits for
 *    each answer (at most RESOLVE_WAIT_MS).
 */
#include <stdio.h>
#include <unistd.h>
#include "server/mgmt.h"

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
    if (mgmt_peer(v->bricks[i].host, v->bricks[i].port, &reply, 3, "peer", "brick-status", v->name) || !reply) {
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

static void status_brick(const ctx_t *c, const kbd_volume_t *v, int i, bool detail, outbuf_t *o)
{
    brick_state_t st;
    brick_state(v, i, &st);
    char *bs = kbd_brick_str(&v->bricks[i]);
    bool arb = v->arbiter && i % kbd_set_size(v) == kbd_set_size(v) - 1;
    if (c->json) {
        mgmt_outf(o, "%s{\"brick\":", i ? "," : "");
        mgmt_outj(o, bs);
        mgmt_outf(o, ",\"port\":%u,\"online\":%s,\"pid\":%d,\"clients\":%d,\"arbiter\":%s,\"disk_total\":%llu,"
                "\"disk_free\":%llu,\"inodes\":%llu,\"inodes_free\":%llu,\"heal_pending\":%d,\"reason\":",
             st.port, st.online ? "true" : "false", st.online ? st.pid : 0, st.clients, arb ? "true" : "false",
             st.total, st.avail, st.inodes, st.ifree, st.pending);
        mgmt_outj(o, st.online ? "" : st.reason);
        mgmt_outf(o, "}");
    } else if (detail) {
        char tot[32], fr[32];
        mgmt_human_bytes(st.total, tot, sizeof(tot));
        mgmt_human_bytes(st.avail, fr, sizeof(fr));
        mgmt_outf(o, "Brick                : %s%s\nOnline               : %s%s%s\nPid                  : %d\n"
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
        mgmt_outf(o, "%-48s %-6u %-6s %-8s %-7d %d%s%s\n", bs ? bs : "?", st.port, st.online ? "Y" : "N", pidstr,
             st.clients, st.pending, st.online || !st.reason[0] ? "" : "  ", st.online ? "" : st.reason);
    }
    free(bs);
}

int mgmt_cmd_status(const ctx_t *c, int argc, char **argv, char **out, outbuf_t *o)
{
    char **names = NULL;
    int n;
    bool detail = argc >= 3 && strcmp(argv[2], "detail") == 0;
    if (argc >= 2 && strcmp(argv[1], "all") != 0) {
        names = calloc(2, sizeof(char *));
        if (!names)
            return mgmt_fail(out, -ENOMEM, "out of memory");
        names[0] = strdup(argv[1]);
        n = 1;
    } else if ((n = mgmt_list_names(c, &names, out)) < 0) {
        return n;
    }
    int rc = 0;
    if (c->json)
        mgmt_outf(o, "[");
    for (int vi = 0; vi < n; vi++) {
        kbd_volume_t *v = mgmt_get_volume(c, names[vi], out);
        if (!v) {
            rc = -ENOENT;
            break;
        }
        if (c->json) {
            mgmt_outf(o, "%s{\"volume\":", vi ? "," : "");
            mgmt_outj(o, v->name);
            mgmt_outf(o, ",\"status\":\"%s\",\"bricks\":[", kbd_status_name(v->status));
        } else if (detail) {
            mgmt_outf(o, "%sStatus of volume: %s (%s)\n", vi ? "\n" : "", v->name, kbd_status_name(v->status));
            mgmt_outf(o, "------------------------------------------------------------------------------\n");
        } else {
            mgmt_outf(o, "%sStatus of volume: %s (%s)\n%-48s %-6s %-6s %-8s %-7s %s\n", vi ? "\n" : "", v->name,
                 kbd_status_name(v->status), "Brick", "Port", "Online", "Pid", "Clients", "Heal");
            mgmt_outf(o, "------------------------------------------------------------------------------------\n");
        }
        for (int i = 0; i < v->nbricks; i++)
            status_brick(c, v, i, detail, o);
        if (c->json)
            mgmt_outf(o, "]}");
        kbd_volume_free(v);
    }
    if (c->json && !rc)
        mgmt_outf(o, "]\n");
    for (int i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return rc;
}

/* ---------------- profile / top ---------------- */

/* volume profile NAME [info|clear]: per brick, per fop: calls, errors, average
 * and p50/p99/p99.9 latency; bytes read/written. volume top NAME: the same
 * fops summed over the bricks, busiest first. */
int mgmt_cmd_profile(const ctx_t *c, int argc, char **argv, char **out, outbuf_t *o, bool top)
{
    if (argc < 2)
        return mgmt_fail(out, -EINVAL, "usage: volume %s NAME%s", top ? "top" : "profile", top ? "" : " [info|clear]");
    kbd_volume_t *v = mgmt_get_volume(c, argv[1], out);
    if (!v)
        return -ENOENT;
    bool clear = !top && argc > 2 && strcmp(argv[2], "clear") == 0;
    node_t *nodes;
    int nn = mgmt_volume_nodes(v, &nodes);
    struct agg { char op[24]; unsigned long long count, errors, avg, p50, p99, p999; } tot[64];
    int ntot = 0;
    if (c->json)
        mgmt_outf(o, "{\"volume\":\"%s\",\"bricks\":[", v->name);
    int nb = 0;
    for (int k = 0; k < nn; k++) {
        char *reply = NULL;
        if (mgmt_peer(nodes[k].host, nodes[k].port, &reply, clear ? 4 : 3, "peer", "profile", v->name, "clear") || !reply) {
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
                        mgmt_outf(o, "%s{\"brick\":", nb++ ? "," : "");
                        mgmt_outj(o, bs);
                        mgmt_outf(o, ",\"fops\":[");
                    } else if (!top) {
                        mgmt_outf(o, "Brick: %s\n%-12s %10s %8s %10s %10s %10s %10s\n", bs ? bs : "?", "Fop", "Calls",
                             "Errors", "Avg(us)", "p50(us)", "p99(us)", "p99.9(us)");
                    }
                    free(bs);
                    cur = idx;
                    nops = 0;
                }
                if (c->json)
                    mgmt_outf(o, "%s{\"fop\":\"%s\",\"calls\":%llu,\"errors\":%llu,\"avg_us\":%llu,\"p50_us\":%llu,"
                            "\"p99_us\":%llu,\"p999_us\":%llu}", nops++ ? "," : "", op, cnt, err, avg, p50, p99, p999);
                else if (!top)
                    mgmt_outf(o, "%-12s %10llu %8llu %10llu %10llu %10llu %10llu\n", op, cnt, err, avg, p50, p99, p999);
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
                    mgmt_outf(o, "%s{\"brick\":", nb++ ? "," : "");
                    mgmt_outj(o, bs);
                    mgmt_outf(o, ",\"fops\":[");
                    free(bs);
                }
                if (c->json)
                    mgmt_outf(o, "],\"bytes_read\":%llu,\"bytes_written\":%llu,\"seconds\":%.1f}", cnt, err, secs);
                else if (!top)
                    mgmt_outf(o, "Bytes read: %llu  written: %llu  over %.1f s\n\n", cnt, err, secs);
                cur = -1;
            }
        }
        free(reply);
    }
    free(nodes);
    if (c->json) {
        mgmt_outf(o, "]}\n");
    } else if (top) {
        for (int a = 0; a < ntot; a++)          /* busiest first */
            for (int b2 = a + 1; b2 < ntot; b2++)
                if (tot[b2].count > tot[a].count) {
                    struct agg t = tot[a];
                    tot[a] = tot[b2];
                    tot[b2] = t;
                }
        mgmt_outf(o, "Volume %s, all bricks\n%-12s %12s %8s %10s %12s\n", v->name, "Fop", "Calls", "Errors", "Avg(us)",
             "max p99(us)");
        for (int a = 0; a < ntot; a++)
            mgmt_outf(o, "%-12s %12llu %8llu %10llu %12llu\n", tot[a].op, tot[a].count, tot[a].errors, tot[a].avg, tot[a].p99);
    } else if (clear) {
        mgmt_outf(o, "profile counters of %s cleared\n", v->name);
    }
    kbd_volume_free(v);
    return 0;
}

/* ---------------- heal ---------------- */

typedef struct heal_brick {
    bool reached, daemon;
    int entries, split;
    int writing;            /* files in sync, being written: not entries (heal_index.c) */
    unsigned long long healed, written, sweeps, left;
    outbuf_t list;          /* human lines or JSON objects */
    outbuf_t wlist;         /* the files being written, apart */
    int nlist, nwlist;
} heal_brick_t;

static void heal_collect(const ctx_t *c, const kbd_volume_t *v, heal_brick_t *hb, bool only_split)
{
    node_t *nodes;
    int n = mgmt_volume_nodes(v, &nodes);
    for (int k = 0; k < n; k++) {
        char *reply = NULL;
        if (mgmt_peer(nodes[k].host, nodes[k].port, &reply, 3, "peer", "heal-info", v->name) || !reply) {
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
                const char *path = l + pos;
                h->split += split;
                h->left += left;
                if (strcmp(status, "writing") == 0) {
                    h->writing++;
                    if (c->json) {
                        mgmt_outf(&h->wlist, "%s", h->nwlist ? "," : "");
                        mgmt_outj(&h->wlist, path);
                    } else {
                        mgmt_outf(&h->wlist, "%s\n", path);
                    }
                    h->nwlist++;
                    continue;
                }
                if (only_split && !split)
                    continue;
                if (c->json) {
                    mgmt_outf(&h->list, "%s{\"path\":", h->nlist ? "," : "");
                    mgmt_outj(&h->list, path);
                    mgmt_outf(&h->list, ",\"gfid\":\"%s\",\"status\":\"%s\",\"bytes_left\":%llu}", gfid, status, left);
                } else if (strcmp(status, "healing") == 0) {
                    mgmt_outf(&h->list, "%s  (healing, %.1f MiB left)\n", path, (double)left / 1048576.0);
                } else if (split) {
                    mgmt_outf(&h->list, "%s  - Is in split-brain\n", path);
                } else {
                    mgmt_outf(&h->list, "%s\n", path);
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
        int r = mgmt_peer(b->host, b->port, &reply, 3, "peer", "heal-resolve-status", (char *)token);
        if (r == 0 && reply && strcmp(reply, "running") == 0) {
            free(reply);
            usleep(RESOLVE_POLL_MS * 1000);
            continue;
        }
        if (r)
            r = mgmt_fail(out, r, "split-brain of %s (replica set %d): %s", path, set, reply ? reply : strerror(-r));
        else if (!c->json)
            mgmt_outf(o, "volume heal: split-brain of %s resolved (replica set %d): %s\n", path, set, reply ? reply : "");
        free(reply);
        return r;
    }
    return mgmt_fail(out, -ETIMEDOUT, "split-brain of %s (replica set %d): still resolving in the background", path, set);
}

static int cmd_heal_split_brain(const ctx_t *c, const kbd_volume_t *v, int argc, char **argv, char **out,
                                outbuf_t *o)
{
    const char *pol = argc > 3 ? argv[3] : "";
    bool by_brick = strcmp(pol, "source-brick") == 0;
    if (argc != (by_brick ? 6 : 5) || (!by_brick && strcmp(pol, "latest-mtime") && strcmp(pol, "bigger-file")))
        return mgmt_fail(out, -EINVAL, "usage: volume heal NAME split-brain latest-mtime|bigger-file PATH | "
                                  "split-brain source-brick HOST:PORT:/BRICK PATH");
    const char *path = argv[argc - 1];
    int k = kbd_set_size(v), only = -1, child = -1, done = 0, rc = 0;
    if (by_brick) {
        kbd_brick_t sb;
        char err[256];
        if (kbd_brick_parse(argv[4], &sb, err, sizeof(err)))
            return mgmt_fail(out, -EINVAL, "%s", err);
        for (int i = 0; i < v->nbricks && only < 0; i++)
            if (v->bricks[i].port == sb.port && !strcmp(v->bricks[i].host, sb.host) && !strcmp(v->bricks[i].path, sb.path)) {
                only = i / k;
                child = i % k;
            }
        free(sb.host);
        free(sb.path);
        if (only < 0)
            return mgmt_fail(out, -EINVAL, "%s is not a brick of volume '%s'", argv[4], v->name);
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
            int r = mgmt_peer(v->bricks[i].host, v->bricks[i].port, &reply, 7, "peer", "heal-resolve", v->name, sset,
                         (char *)pol, schild, (char *)path);
            if (r == 0 && reply) {
                snprintf(token, sizeof(token), "%s", reply);
                at = &v->bricks[i];
            } else if (r == -EINVAL || r == -EBUSY) {
                rc = mgmt_fail(out, r, "node %s:%u: %s", v->bricks[i].host, v->bricks[i].port, reply ? reply : strerror(-r));
            }
            free(reply);
        }
        if (!at)
            continue;
        rc = resolve_wait(at, token, path, s, out, o, c);
        done += !rc;
    }
    if (!rc && !done)
        rc = mgmt_fail(out, -ENOENT, "%s: not found on any reachable brick of volume '%s'", path, v->name);
    if (!rc && c->json) {
        mgmt_outf(o, "{\"volume\":");
        mgmt_outj(o, v->name);
        mgmt_outf(o, ",\"path\":");
        mgmt_outj(o, path);
        mgmt_outf(o, ",\"resolved_sets\":%d}\n", done);
    }
    return rc;
}

int mgmt_cmd_heal(const ctx_t *c, int argc, char **argv, char **out, outbuf_t *o)
{
    if (argc < 2)
        return mgmt_fail(out, -EINVAL, "usage: volume heal NAME [info [split-brain]|full]");
    kbd_volume_t *v = mgmt_get_volume(c, argv[1], out);
    if (!v)
        return -ENOENT;
    int rc = 0;
    if (kbd_set_size(v) < 2) {
        rc = mgmt_fail(out, -EINVAL, "volume '%s' is not replicated: nothing to heal", v->name);
    } else if (v->status != KBD_VOL_STARTED) {
        rc = mgmt_fail(out, -EINVAL, "volume '%s' is not started", v->name);
    } else if (argc == 2 || strcmp(argv[2], "full") == 0) {
        bool full = argc > 2;
        node_t *nodes;
        int n = mgmt_volume_nodes(v, &nodes), launched = 0;
        for (int k = 0; k < n; k++) {
            char *reply = NULL;
            if (mgmt_peer(nodes[k].host, nodes[k].port, &reply, full ? 4 : 3, "peer", "heal", v->name, "full") == 0)
                launched += reply ? atoi(reply) : 0;
            free(reply);
        }
        free(nodes);
        if (!launched)
            rc = mgmt_fail(out, -EHOSTUNREACH, "no heal daemon of volume '%s' could be reached", v->name);
        else if (c->json)
            mgmt_outf(o, "{\"volume\":\"%s\",\"heal\":\"%s\",\"daemons\":%d}\n", v->name, full ? "full" : "index", launched);
        else
            mgmt_outf(o, "Launching heal operation to perform %s self heal on volume %s has been successful\n",
                 full ? "full" : "index", v->name);
    } else if (strcmp(argv[2], "info") == 0) {
        bool only_split = argc > 3 && strcmp(argv[3], "split-brain") == 0;
        heal_brick_t *hb = calloc((size_t)v->nbricks, sizeof(*hb));
        if (!hb) {
            kbd_volume_free(v);
            return mgmt_fail(out, -ENOMEM, "out of memory");
        }
        heal_collect(c, v, hb, only_split);
        unsigned long long total = 0, left = 0, split = 0, written = 0, healed = 0, writing = 0;
        if (c->json)
            mgmt_outf(o, "{\"volume\":\"%s\",\"bricks\":[", v->name);
        for (int i = 0; i < v->nbricks; i++) {
            char *bs = kbd_brick_str(&v->bricks[i]);
            heal_brick_t *h = &hb[i];
            total += (unsigned long long)h->entries;
            left += h->left;
            split += (unsigned long long)h->split;
            writing += (unsigned long long)h->writing;
            written += h->written;
            healed += h->healed;
            if (c->json) {
                mgmt_outf(o, "%s{\"brick\":", i ? "," : "");
                mgmt_outj(o, bs);
                mgmt_outf(o, ",\"connected\":%s,\"entries\":%d,\"split_brain\":%d,\"bytes_left\":%llu,"
                        "\"healed\":%llu,\"bytes_healed\":%llu,\"list\":[%s],\"writing\":%d,\"writing_list\":[%s]}",
                     h->reached ? "true" : "false", h->entries, h->split, h->left, h->healed, h->written,
                     h->list.p ? h->list.p : "", h->writing, h->wlist.p ? h->wlist.p : "");
            } else {
                mgmt_outf(o, "Brick %s\nStatus: %s\n%sNumber of entries%s: %d\n", bs ? bs : "?",
                     h->reached ? "Connected" : "Transport endpoint is not connected", h->list.p ? h->list.p : "",
                     only_split ? " in split-brain" : "", only_split ? h->split : h->entries);
                if (h->writing && !only_split)
                    mgmt_outf(o, "Being written, all copies in sync (not entries): %d\n%s", h->writing,
                              h->wlist.p ? h->wlist.p : "");
                mgmt_outf(o, "\n");
            }
            free(bs);
            free(h->list.p);
            free(h->wlist.p);
        }
        if (c->json)
            mgmt_outf(o, "],\"total_entries\":%llu,\"split_brain\":%llu,\"bytes_left\":%llu,\"healed\":%llu,"
                    "\"bytes_healed\":%llu,\"total_writing\":%llu}\n", total, split, left, healed, written, writing);
        free(hb);
    } else if (strcmp(argv[2], "split-brain") == 0) {
        rc = cmd_heal_split_brain(c, v, argc, argv, out, o);
    } else {
        rc = mgmt_fail(out, -EINVAL, "unknown heal command '%s' (info, full, split-brain)", argv[2]);
    }
    kbd_volume_free(v);
    return rc;
}
