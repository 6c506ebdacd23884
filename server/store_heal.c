/*
 * store_heal.c — the heal peer operations of this node (loop thread): start
 * a sweep or a full heal in the heal daemons of its replica sets, report
 * heal info for its bricks, and resolve a split-brain file by policy
 * (kbd_peer_op in store.c dispatches them here).
 *
 * Promises
 *  - heal info changes nothing: it reads each local brick's index and asks
 *    the set's heal daemon what it is doing.
 *  - A resolution names a path beneath a local brick of the set (no ".."
 *    component) and runs in that set's heal daemon; its answer waits under a
 *    token until collected. At most 16 at a time; answers nobody collects
 *    are recycled oldest first.
 */
#include <dirent.h>
#include <stdio.h>
#include <sys/xattr.h>
#include "server/heal_index.h"
#include "server/store.h"
#include "xlators/changelog.h"
#include "xlators/cluster/replicate/heal.h"
#include "xlators/storage/posix/posix.h"

/* ---------------- heal: trigger and info ---------------- */

static int op_heal(kbd_t *d, int argc, char **argv, char **out)
{
    struct kbd_vol_entry *e = kbd_vol_find(d, argv[2]);
    if (!e)
        return kbd_reply_text(out, -ENOENT, "volume '%s' does not exist", argv[2]);
    bool full = argc > 3 && strcmp(argv[3], "full") == 0;
    int n = 0;
    for (int s = 0; s < e->v->nbricks / kbd_set_size(e->v); s++)
        if (e->shd[s] && kb_graph_ctl(e->shd[s], full ? KB_CTL_HEAL_FULL : KB_CTL_HEAL_SWEEP, NULL) == 0)
            n++;
    return kbd_reply_text(out, 0, "%d", n);
}

typedef struct ipc_wait { bool done; kb_reply_t r; } ipc_wait_t;

static void ipc_cbk(void *cookie, const kb_reply_t *r)
{
    ipc_wait_t *w = cookie;
    w->done = true;
    if (kb_reply_copy(&w->r, r))
        w->r.status = -ENOMEM;
}

/* Path of GFID on a running local brick, when the brick answers at once
 * (storage/posix runs IPC synchronously on the loop thread). */
static void gfid_path(kbd_brick_rt_t *b, const kb_gfid_t *g, char *buf, size_t len)
{
    char gs[KB_GFID_STRLEN];
    snprintf(buf, len, "<gfid:%s>", kb_gfid_str(g, gs));
    if (!b || !b->graph)
        return;
    kb_args_t a = { .gfid = *g, .flags = KB_IPC_GFID_PATH };
    ipc_wait_t w = { 0 };
    kb_cred_t cred = { 0 };
    kb_wind(b->graph->top, KB_FOP_IPC, &a, &cred, 0, ipc_cbk, &w);
    if (w.done && w.r.status >= 0 && w.r.data && w.r.data->len)
        snprintf(buf, len, "%.*s", (int)KB_MIN(w.r.data->len, len - 1), w.r.data->data);
    if (w.done)
        kb_reply_clear(&w.r);
}

/* heal-info NAME: for each local brick
 *   B <idx> <entries>                               (entries that need heal: not "writing")
 *   E <idx> <status> <bytes-left> <gfid> <path>     status: pending|healing|split-brain|writing
 *                                                   (writing: in sync, being written; heal_index.c)
 *   S <idx> <healed> <bytes-written> <sweeps> <split>
 */
static int op_heal_info(kbd_t *d, const char *name, char **out)
{
    struct kbd_vol_entry *e = kbd_vol_find(d, name);
    if (!e)
        return kbd_reply_text(out, -ENOENT, "volume '%s' does not exist", name);
    kb_enc_t enc;
    kb_enc_init(&enc);
    char line[KB_PATH_MAX + 256];
#define LINE(...) do { int n_ = snprintf(line, sizeof(line), __VA_ARGS__); \
                       kb_enc_bytes(&enc, line, (size_t)KB_MIN(n_, (int)sizeof(line) - 1)); } while (0)
    int k = kbd_set_size(e->v);
    for (int i = 0; i < e->v->nbricks; i++) {
        if (!e->local[i])
            continue;
        struct kb_heal_stats st = { 0 };
        kb_graph_t *shd = e->shd[i / k];
        if (shd)
            kb_graph_ctl(shd, KB_CTL_HEAL_STATS, &st);
        char *idx = NULL;
        DIR *dh = NULL;
        if (asprintf(&idx, "%s/.kembar/index", e->v->bricks[i].path) >= 0)
            dh = opendir(idx);
        free(idx);
        int count = 0;
        kb_enc_t ents;
        kb_enc_init(&ents);
        for (struct dirent *de; dh && (de = readdir(dh));) {
            kb_gfid_t g;
            if (kb_gfid_parse(de->d_name, &g))
                continue;
            kbd_index_kind_t kind = kbd_index_classify(e->v->bricks[i].path, de->d_name);
            const char *status = kind == KBD_INDEX_WRITING ? "writing" : "pending";
            uint64_t left = 0;
            for (uint32_t a = 0; a < st.nactive; a++)
                if (kb_gfid_eq(&st.active[a].gfid, &g)) {
                    status = "healing";
                    left = st.active[a].bytes_total - KB_MIN(st.active[a].bytes_done, st.active[a].bytes_total);
                }
            for (uint32_t sb = 0; sb < st.nsplit; sb++)
                if (kb_gfid_eq(&st.split[sb], &g))
                    status = "split-brain";
            if (kind == KBD_INDEX_CLEAN && strcmp(status, "pending") == 0)
                continue;                /* counters all zero: nothing to heal */
            count += strcmp(status, "writing") != 0;   /* in sync, being written: shown apart */
            char path[KB_PATH_MAX];
            gfid_path(e->rt[i], &g, path, sizeof(path));
            int n = snprintf(line, sizeof(line), "E %d %s %llu %s %s\n", i, status, (unsigned long long)left,
                             de->d_name, path);
            kb_enc_bytes(&ents, line, (size_t)KB_MIN(n, (int)sizeof(line) - 1));
        }
        if (dh)
            closedir(dh);
        LINE("B %d %d\n", i, count);
        kb_enc_bytes(&enc, ents.p, ents.len);
        kb_enc_free(&ents);
        LINE("S %d %llu %llu %llu %u %u\n", i, (unsigned long long)st.healed,
             (unsigned long long)st.data_bytes_written, (unsigned long long)st.sweeps, st.nsplit, shd ? 1 : 0);
    }
#undef LINE
    if (!(*out = kbd_enc_text(&enc)))
        return kbd_reply_text(out, -ENOMEM, "out of memory");
    return 0;
}

int kbd_peer_heal(kbd_t *d, int argc, char **argv, char **out)
{
    if (strcmp(argv[1], "heal") == 0)
        return op_heal(d, argc, argv, out);
    return op_heal_info(d, argv[2], out);
}

/* ---------------- heal: split-brain resolution (issue 5) ----------------
 * heal-resolve NAME SET POLICY CHILD PATH
 *   PATH (from the volume root) is looked up on this node's bricks of replica
 *   set SET (its gfid: trusted.kembar.gfid of <brick>/<PATH>); the set's heal
 *   daemon resolves it (KB_CTL_HEAL_RESOLVE) by POLICY: latest-mtime,
 *   bigger-file, or source-brick with CHILD = the source's index in the set.
 *   The resolution runs on this loop and a peer call answers at once, so the
 *   reply is a token; -ENOENT when PATH is on none of those bricks.
 * heal-resolve-status TOKEN
 *   "running", or once the result (status and one line), after which the
 *   token is forgotten. Results nobody collects are recycled oldest first. */
struct resolve_slot { uint64_t token; bool used, done; int status; char msg[256]; };
static struct resolve_slot resolve_slots[16];
static uint64_t resolve_next;

static void resolve_done(void *cookie, int status, const char *msg)
{
    struct resolve_slot *sl = cookie;
    sl->done = true;
    sl->status = status;
    snprintf(sl->msg, sizeof(sl->msg), "%s", msg ? msg : "");
}

static struct resolve_slot *resolve_slot_new(void)
{
    struct resolve_slot *pick = NULL;
    for (size_t i = 0; i < KB_ARRAY_SIZE(resolve_slots) && !pick; i++)
        if (!resolve_slots[i].used)
            pick = &resolve_slots[i];
    for (size_t i = 0; i < KB_ARRAY_SIZE(resolve_slots) && !pick; i++)
        if (resolve_slots[i].done && (!pick || resolve_slots[i].token < pick->token))
            pick = &resolve_slots[i];
    if (pick)
        *pick = (struct resolve_slot){ .token = ++resolve_next, .used = true };
    return pick;
}

/* The gfid of PATH on a local brick of set SET (root: the fixed gfid). */
static int resolve_gfid(struct kbd_vol_entry *e, int set, const char *path, kb_gfid_t *g)
{
    while (*path == '/')
        path++;
    for (const char *c = path; *c;) {           /* no ".." component: stay in the brick */
        size_t n = strcspn(c, "/");
        if (n == 2 && c[0] == '.' && c[1] == '.')
            return -EINVAL;
        c += n + (c[n] == '/');
    }
    if (!*path) {
        *g = kb_gfid_root;
        return 0;
    }
    int k = kbd_set_size(e->v);
    for (int i = set * k; i < (set + 1) * k && i < e->v->nbricks; i++) {
        char *full = NULL;
        if (!e->local[i] || asprintf(&full, "%s/%s", e->v->bricks[i].path, path) < 0)
            continue;
        ssize_t n = lgetxattr(full, KB_XATTR_GFID, g->b, 16);
        free(full);
        if (n == 16)
            return 0;
    }
    return -ENOENT;
}

int kbd_peer_heal_resolve(kbd_t *d, int argc, char **argv, char **out)
{
    if (strcmp(argv[1], "heal-resolve-status") == 0) {
        uint64_t tok = strtoull(argv[2], NULL, 10);
        for (size_t i = 0; i < KB_ARRAY_SIZE(resolve_slots); i++) {
            struct resolve_slot *sl = &resolve_slots[i];
            if (!sl->used || sl->token != tok)
                continue;
            if (!sl->done)
                return kbd_reply_text(out, 0, "running");
            sl->used = false;
            return kbd_reply_text(out, sl->status, "%s", sl->msg);
        }
        return kbd_reply_text(out, -ENOENT, "no such resolution");
    }
    if (argc != 7)
        return kbd_reply_text(out, -EINVAL, "heal-resolve: bad arguments");
    struct kbd_vol_entry *e = kbd_vol_find(d, argv[2]);
    if (!e)
        return kbd_reply_text(out, -ENOENT, "volume '%s' does not exist", argv[2]);
    int set = atoi(argv[3]), child = atoi(argv[5]), k = kbd_set_size(e->v);
    const char *pol = argv[4];
    int policy = !strcmp(pol, "latest-mtime") ? KB_HEAL_POL_MTIME : !strcmp(pol, "bigger-file") ? KB_HEAL_POL_SIZE
               : !strcmp(pol, "source-brick") ? KB_HEAL_POL_SOURCE : -1;
    if (policy < 0 || set < 0 || set >= e->v->nbricks / k || child < -1 || child >= k)
        return kbd_reply_text(out, -EINVAL, "heal-resolve: bad arguments");
    kb_gfid_t g;
    int rc = resolve_gfid(e, set, argv[6], &g);
    if (rc)
        return kbd_reply_text(out, rc, rc == -ENOENT ? "%s is not on this node's bricks of replica set %d"
                                                 : "bad path '%s'", argv[6], set);
    if (!e->shd[set])
        return kbd_reply_text(out, -ENOTCONN, "no heal daemon runs for replica set %d here", set);
    struct resolve_slot *sl = resolve_slot_new();
    if (!sl)
        return kbd_reply_text(out, -EBUSY, "too many resolutions in progress");
    struct kb_heal_resolve r = { .gfid = g, .policy = policy, .source = child, .done = resolve_done, .cookie = sl };
    rc = kb_graph_ctl(e->shd[set], KB_CTL_HEAL_RESOLVE, &r);
    if (rc) {
        sl->used = false;
        return kbd_reply_text(out, rc, "cannot resolve %s: %s", argv[6], strerror(-rc));
    }
    return kbd_reply_text(out, 0, "%llu", (unsigned long long)sl->token);
}
