/*
 * store.c — what one node knows and runs (loop thread only).
 *
 * For each volume it knows: the definition (volume.c), which of its bricks
 * are local to this node, and the running brick graphs. Everything is kept
 * under <state-dir>/vols/<name>/ (info = the definition, local = indices of
 * the local bricks) and written atomically, so a node that restarts serves
 * its bricks again by itself (reconcile on load).
 *
 * The PEER operations are the only way the management thread changes
 * anything here; each is local, quick and idempotent. Those of heal (heal,
 * heal-info, heal-resolve) are in store_heal.c; the table both files use is
 * in store.h.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>
#include <unistd.h>
#include "lib/log.h"
#include "lib/version.h"
#include "rpc/wire.h"
#include "server/heal_index.h"
#include "server/store.h"
#include "server/trust.h"
#include "xlators/changelog.h"
#include "xlators/cluster/replicate/heal.h"
#include "xlators/storage/posix/posix.h"

struct kbd_vol_entry *kbd_vol_find(kbd_t *d, const char *name)
{
    for (struct kbd_vol_entry *e = d->vols; e; e = e->next)
        if (strcmp(e->v->name, name) == 0)
            return e;
    return NULL;
}

static char *vol_dir(kbd_t *d, const char *name)
{
    char *p = NULL;
    return asprintf(&p, "%s/vols/%s", d->state_dir, name) < 0 ? NULL : p;
}

/* A definition this node cannot serve: its op-version is newer than ours
 * (written by a newer kembar, lib/version.h). 0, or -EPROTONOSUPPORT with
 * the reason in ERR. */
static int op_version_ok(const kbd_volume_t *v, char *err, size_t errlen)
{
    if (v->op_version <= KB_OP_VERSION)
        return 0;
    snprintf(err, errlen, "volume '%s' has op-version %u, which this node (kembar %s, op-version %u) does not reach: "
             "upgrade it", v->name, v->op_version, KB_VERSION, KB_OP_VERSION);
    return -EPROTONOSUPPORT;
}

/* ---------------- the state dir's format ---------------- */

int kbd_state_format(const char *dir, char *err, size_t errlen)
{
    char *path = NULL, *text = NULL;
    size_t len;
    if (asprintf(&path, "%s/%s", dir, KBD_STATE_FORMAT_FILE) < 0) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    int rc = kb_read_file(path, &text, &len);
    unsigned long have = 0;
    if (rc == 0) {
        char *end;
        errno = 0;
        have = strtoul(text, &end, 10);
        if (errno || end == text || (*end && *end != '\n') || have < 1 || have > UINT32_MAX) {
            snprintf(err, errlen, "%s: not a format number: refusing to touch this state dir", path);
            rc = -EINVAL;
        }
    } else if (rc == -ENOENT) {
        have = 1;                      /* kembar 0.1.0 stamped none */
        rc = 0;
    } else {
        snprintf(err, errlen, "cannot read %s: %s", path, strerror(-rc));
    }
    if (!rc && have > KBD_STATE_FORMAT) {
        snprintf(err, errlen, "state dir %s has format %lu; this kembard (%s) knows up to %u: a newer kembard wrote "
                 "it; run that (nothing was changed)", dir, have, KB_VERSION, KBD_STATE_FORMAT);
        rc = -EPROTONOSUPPORT;
    }
    /* Older: the steps from each format to the next would run here, each
     * safe to run twice (a crash before the stamp repeats them). None yet. */
    if (!rc && (!text || have < KBD_STATE_FORMAT)) {
        char stamp[16];
        int n = snprintf(stamp, sizeof(stamp), "%u\n", KBD_STATE_FORMAT);
        if ((rc = kb_write_file_atomic(path, stamp, (size_t)n)))
            snprintf(err, errlen, "cannot write %s: %s", path, strerror(-rc));
        else if (text)
            kb_info("store", "state dir %s: format %lu -> %u", dir, have, KBD_STATE_FORMAT);
    }
    free(text);
    free(path);
    return rc;
}

/* ---------------- bricks ---------------- */

kb_graph_t *kbd_brick_graph(kbd_brick_rt_t *b) { return b->graph; }
kbd_stats_t *kbd_brick_stats(kbd_brick_rt_t *b) { return &b->stats; }
void kbd_brick_conn_ref(kbd_brick_rt_t *b, int delta) { b->nconns += delta; }

bool kbd_brick_id(kbd_brick_rt_t *b, kb_gfid_t *id)
{
    struct kbd_vol_entry *e = b ? kbd_vol_find(b->d, b->volume) : NULL;
    if (!e || b->idx < 0 || b->idx >= e->v->nbricks)
        return false;
    *id = e->v->bricks[b->idx].id;
    return true;
}

static void brick_stop(kbd_t *d, struct kbd_vol_entry *e, int i);

static void brick_start(kbd_t *d, struct kbd_vol_entry *e, int i)
{
    if (e->rt[i] && e->rt[i]->graph)
        return;
    kbd_brick_rt_t *b = e->rt[i];
    if (!b) {
        b = kb_zalloc(sizeof(*b));
        if (!b)
            return;
        b->d = d;
        b->idx = i;
        b->volume = strdup(e->v->name);
        b->path = strdup(e->v->bricks[i].path);
        e->rt[i] = b;
    }
    char *text = kbd_volgen_brick(e->v, i);
    char err[512] = "";
    kb_graph_t *g = text ? kb_graph_parse(text, err, sizeof(err)) : NULL;
    free(text);
    if (g) {
        g->owner = b;
        if (kb_graph_init(g, kb_loop_base(d->loop), err, sizeof(err))) {
            kb_graph_fini(g);
            g = NULL;
        }
    }
    if (!g) {
        /* The usual cause is the brick directory itself (missing, disk not
         * mounted, another volume's): say that rather than an errno. */
        char why[400] = "";
        if (posix_brick_check(b->path, &e->v->id, why, sizeof(why)) && why[0])
            snprintf(err, sizeof(err), "%s", why);
        snprintf(b->error, sizeof(b->error), "%s", err[0] ? err : "cannot build the brick graph");
        kb_err("store", "brick %s of volume %s not started: %s", b->path, b->volume, b->error);
        return;
    }
    b->graph = g;
    b->error[0] = 0;
    memset(&b->stats, 0, sizeof(b->stats));
    b->stats.since_ms = kb_now_ms();
    kb_info("store", "brick %s of volume %s is online", b->path, b->volume);
}

/* serve.c closes the connections bound to a brick before it goes away. */
void kbd_serve_drop_brick(kbd_t *d, kbd_brick_rt_t *b);

static void brick_stop(kbd_t *d, struct kbd_vol_entry *e, int i)
{
    kbd_brick_rt_t *b = e->rt[i];
    if (!b)
        return;
    kbd_serve_drop_brick(d, b);
    if (b->graph) {
        kb_graph_fini(b->graph);
        kb_info("store", "brick %s of volume %s stopped", b->path, b->volume);
    }
    free(b->volume);
    free(b->path);
    free(b);
    e->rt[i] = NULL;
}

/* ---------------- heal daemon ---------------- */

/* One heal daemon graph per replica set that has a brick on this node; it
 * sweeps the indexes of those local bricks (heal-children). */
static void shd_start(kbd_t *d, struct kbd_vol_entry *e, int set)
{
    int k = kbd_set_size(e->v);
    if (e->shd[set] || k < 2)
        return;
    char csv[256] = "";
    size_t off = 0;
    for (int i = 0; i < k; i++)
        if (e->local[set * k + i])
            off += (size_t)snprintf(csv + off, sizeof(csv) - off, "%s%d", off ? "," : "", i);
    if (!off)
        return;
    char *text = kbd_volgen_shd(e->v, set, csv), err[512] = "";
    kb_graph_t *g = text ? kb_graph_parse(text, err, sizeof(err)) : NULL;
    free(text);
    if (g && kb_graph_init(g, kb_loop_base(d->loop), err, sizeof(err))) {
        kb_graph_fini(g);
        g = NULL;
    }
    if (!g) {
        kb_err("shd", "heal daemon for %s set %d not started: %s", e->v->name, set, err);
        return;
    }
    e->shd[set] = g;
    kb_info("shd", "heal daemon for %s set %d started (bricks %s of the set)", e->v->name, set, csv);
}

static void shd_stop(struct kbd_vol_entry *e, int set)
{
    if (!e->shd[set])
        return;
    kb_graph_fini(e->shd[set]);
    e->shd[set] = NULL;
}

static void reconcile(kbd_t *d, struct kbd_vol_entry *e)
{
    for (int i = 0; i < e->v->nbricks; i++) {
        if (e->local[i] && e->v->status == KBD_VOL_STARTED)
            brick_start(d, e, i);
        else
            brick_stop(d, e, i);
    }
    for (int s = 0; s < e->v->nbricks / kbd_set_size(e->v); s++) {
        if (e->v->status == KBD_VOL_STARTED)
            shd_start(d, e, s);
        else
            shd_stop(e, s);
    }
}

kbd_brick_rt_t *kbd_brick_find(kbd_t *d, const char *volume, const char *path, char *why, size_t whylen)
{
    struct kbd_vol_entry *e = kbd_vol_find(d, volume);
    if (!e) {
        snprintf(why, whylen, "volume '%s' does not exist on this node", volume);
        return NULL;
    }
    for (int i = 0; i < e->v->nbricks; i++) {
        if (!e->local[i] || strcmp(e->v->bricks[i].path, path) != 0)
            continue;
        if (e->rt[i] && e->rt[i]->graph)
            return e->rt[i];
        snprintf(why, whylen, "brick %s is not online: %s", path,
                 e->v->status != KBD_VOL_STARTED ? "volume not started" : e->rt[i] ? e->rt[i]->error : "not started");
        return NULL;
    }
    snprintf(why, whylen, "brick %s is not a brick of volume '%s' on this node", path, volume);
    return NULL;
}

/* ---------------- persistence ---------------- */

static int save_entry(kbd_t *d, struct kbd_vol_entry *e)
{
    char *dir = vol_dir(d, e->v->name), *path = NULL, *text = kbd_volume_format(e->v);
    int rc = -ENOMEM;
    if (!dir || !text)
        goto out;
    if ((rc = kb_mkdir_p(dir, 0700)))
        goto out;
    if (asprintf(&path, "%s/info", dir) < 0) {
        rc = -ENOMEM;
        goto out;
    }
    if ((rc = kb_write_file_atomic(path, text, strlen(text))))
        goto out;
    free(path);
    path = NULL;
    kb_enc_t enc;
    kb_enc_init(&enc);
    for (int i = 0; i < e->v->nbricks; i++)
        if (e->local[i]) {
            char n[16];
            int len = snprintf(n, sizeof(n), "%d\n", i);
            kb_enc_bytes(&enc, n, (size_t)len);
        }
    if (asprintf(&path, "%s/local", dir) < 0)
        rc = -ENOMEM;
    else
        rc = enc.err ? enc.err : kb_write_file_atomic(path, enc.len ? (char *)enc.p : "", enc.len);
    kb_enc_free(&enc);
out:
    if (rc)
        kb_err("store", "cannot save volume %s: %s", e->v->name, strerror(-rc));
    free(dir);
    free(path);
    free(text);
    return rc;
}

static struct kbd_vol_entry *entry_new(kbd_volume_t *v)
{
    struct kbd_vol_entry *e = kb_zalloc(sizeof(*e));
    if (!e)
        return NULL;
    e->v = v;
    e->local = calloc((size_t)v->nbricks, sizeof(bool));
    e->rt = calloc((size_t)v->nbricks, sizeof(kbd_brick_rt_t *));
    e->shd = calloc((size_t)(v->nbricks / kbd_set_size(v)), sizeof(kb_graph_t *));
    if (!e->local || !e->rt || !e->shd) {
        free(e->local);
        free(e->rt);
        free(e->shd);
        free(e);
        return NULL;
    }
    return e;
}

static void shd_stop(struct kbd_vol_entry *e, int set);

static void entry_free(struct kbd_vol_entry *e)
{
    for (int s = 0; s < e->v->nbricks / kbd_set_size(e->v); s++)
        shd_stop(e, s);
    free(e->shd);
    kbd_volume_free(e->v);
    free(e->local);
    free(e->rt);
    free(e);
}

static void load_one(kbd_t *d, const char *name)
{
    char *dir = vol_dir(d, name), *path = NULL, *text = NULL, err[256];
    size_t len;
    if (!dir || asprintf(&path, "%s/info", dir) < 0 || kb_read_file(path, &text, &len)) {
        kb_warn("store", "volume %s: cannot read %s", name, path ? path : dir);
        goto out;
    }
    kbd_volume_t *v = kbd_volume_parse(text, err, sizeof(err));
    if (!v) {
        kb_err("store", "volume %s: bad definition: %s", name, err);
        goto out;
    }
    if (op_version_ok(v, err, sizeof(err))) {
        /* left on disk as it is: the kembar that wrote it serves it again */
        kb_err("store", "not serving %s", err);
        kbd_volume_free(v);
        goto out;
    }
    struct kbd_vol_entry *e = entry_new(v);
    if (!e) {
        kbd_volume_free(v);
        goto out;
    }
    free(path);
    free(text);
    text = NULL;
    if (asprintf(&path, "%s/local", dir) >= 0 && kb_read_file(path, &text, &len) == 0) {
        char *save = NULL;
        for (char *t = strtok_r(text, "\n", &save); t; t = strtok_r(NULL, "\n", &save)) {
            int i = atoi(t);
            if (i >= 0 && i < v->nbricks)
                e->local[i] = true;
        }
    }
    e->next = d->vols;
    d->vols = e;
    reconcile(d, e);
out:
    free(dir);
    free(path);
    free(text);
}

int kbd_store_load(kbd_t *d)
{
    char *dir = NULL;
    if (asprintf(&dir, "%s/vols", d->state_dir) < 0)
        return -ENOMEM;
    int rc = kb_mkdir_p(dir, 0700);
    DIR *dh = rc ? NULL : opendir(dir);
    if (!dh) {
        rc = rc ? rc : -errno;
        kb_err("store", "cannot open state dir %s: %s", dir, strerror(-rc));
        free(dir);
        return rc;
    }
    for (struct dirent *de; (de = readdir(dh));)
        if (de->d_name[0] != '.' && kbd_volname_ok(de->d_name))
            load_one(d, de->d_name);
    closedir(dh);
    free(dir);
    return 0;
}

void kbd_store_shutdown(kbd_t *d)
{
    while (d->vols) {
        struct kbd_vol_entry *e = d->vols;
        d->vols = e->next;
        for (int i = 0; i < e->v->nbricks; i++)
            brick_stop(d, e, i);
        entry_free(e);
    }
}

int kbd_getspec(kbd_t *d, const char *volume, char **volfile)
{
    struct kbd_vol_entry *e = kbd_vol_find(d, volume);
    if (!e)
        return -ENOENT;
    if (e->v->status != KBD_VOL_STARTED)
        return -EAGAIN;
    *volfile = kbd_volgen_client(e->v);
    return *volfile ? 0 : -ENOMEM;
}

/* ---------------- peer operations ---------------- */

int kbd_reply_text(char **out, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (vasprintf(out, fmt, ap) < 0)
        *out = NULL;
    va_end(ap);
    return rc;
}

/* prepare NAME VOLID FORCE {IDX BRICKID PATH}... */
static int op_prepare(kbd_t *d, int argc, char **argv, char **out)
{
    if (argc < 4 || (argc - 4) % 3)
        return kbd_reply_text(out, -EINVAL, "prepare: bad arguments");
    kb_gfid_t volid;
    if (kb_gfid_parse(argv[2], &volid))
        return kbd_reply_text(out, -EINVAL, "prepare: bad volume id");
    bool force = strcmp(argv[3], "1") == 0;
    int i;
    char err[512] = "";
    for (i = 4; i < argc; i += 3) {
        kb_gfid_t bid;
        if (kb_gfid_parse(argv[i + 1], &bid)) {
            snprintf(err, sizeof(err), "bad brick id");
            break;
        }
        /* A path already used by another volume of this node is refused too. */
        for (struct kbd_vol_entry *e = d->vols; e; e = e->next)
            for (int b = 0; b < e->v->nbricks; b++)
                if (e->local[b] && strcmp(e->v->bricks[b].path, argv[i + 2]) == 0 &&
                    !kb_gfid_eq(&e->v->id, &volid))
                    snprintf(err, sizeof(err), "brick %s is already used by volume '%s'", argv[i + 2], e->v->name);
        if (err[0] || posix_brick_prepare(argv[i + 2], &volid, &bid, force, err, sizeof(err)))
            break;
    }
    if (i < argc) {
        for (int j = 4; j < i; j += 3)
            posix_brick_unstamp(argv[j + 2]);
        return kbd_reply_text(out, -EINVAL, "%s", err[0] ? err : "cannot prepare brick");
    }
    return kbd_reply_text(out, 0, "ok");
}

/* A running brick survives a definition change that leaves its own volfile
 * as it was (e.g. `volume set` of a client-side option): no reconnects.
 * Brick I of OLD is matched in NEW by its id, not its index (remove-brick
 * commit renumbers the bricks after the removed sets): its index there, or
 * -1 when it is gone, no longer local, or its volfile changed. */
static int kept_brick(const struct kbd_vol_entry *old, int i, const struct kbd_vol_entry *e)
{
    if (!old->local[i])
        return -1;
    for (int j = 0; j < e->v->nbricks; j++) {
        if (!e->local[j] || e->rt[j] || !kb_gfid_eq(&e->v->bricks[j].id, &old->v->bricks[i].id))
            continue;
        char *x = kbd_volgen_brick(old->v, i), *y = kbd_volgen_brick(e->v, j);
        bool same = x && y && strcmp(x, y) == 0;
        free(x);
        free(y);
        return same ? j : -1;
    }
    return -1;
}

/* store LOCAL_CSV INFO_TEXT */
static int op_store(kbd_t *d, int argc, char **argv, char **out)
{
    char err[256];
    if (argc != 4)
        return kbd_reply_text(out, -EINVAL, "store: bad arguments");
    kbd_volume_t *v = kbd_volume_parse(argv[3], err, sizeof(err));
    if (!v)
        return kbd_reply_text(out, -EINVAL, "store: %s", err);
    int rc = op_version_ok(v, err, sizeof(err));
    if (rc) {
        kbd_volume_free(v);
        return kbd_reply_text(out, rc, "%s", err);
    }
    struct kbd_vol_entry *old = kbd_vol_find(d, v->name);
    if (old && !kb_gfid_eq(&old->v->id, &v->id)) {
        kbd_volume_free(v);
        return kbd_reply_text(out, -EEXIST, "a different volume '%s' exists on this node", old->v->name);
    }
    if (old && old->v->version > v->version) {
        kbd_volume_free(v);
        return kbd_reply_text(out, -ESTALE, "this node has a newer definition of '%s'", old->v->name);
    }
    struct kbd_vol_entry *e = entry_new(v);
    if (!e) {
        kbd_volume_free(v);
        return kbd_reply_text(out, -ENOMEM, "out of memory");
    }
    for (char *p = argv[2]; *p;) {
        int i = (int)strtol(p, &p, 10);
        if (i >= 0 && i < v->nbricks)
            e->local[i] = true;
        while (*p == ',')
            p++;
        if (*p && (*p < '0' || *p > '9'))
            break;
    }
    if (old) {
        /* Keep running bricks that stay the same; stop the others. */
        for (int i = 0; i < old->v->nbricks; i++) {
            int j = v->status == KBD_VOL_STARTED && old->rt[i] ? kept_brick(old, i, e) : -1;
            if (j >= 0) {
                e->rt[j] = old->rt[i];
                e->rt[j]->idx = j;
            } else {
                brick_stop(d, old, i);
            }
            old->rt[i] = NULL;
        }
        struct kbd_vol_entry **pp = &d->vols;
        while (*pp != old)
            pp = &(*pp)->next;
        *pp = old->next;
        entry_free(old);
    }
    e->next = d->vols;
    d->vols = e;
    rc = save_entry(d, e);
    reconcile(d, e);
    kbd_serve_recheck_auth(d, e->v->name);
    return rc ? kbd_reply_text(out, rc, "cannot save the volume: %s", strerror(-rc)) : kbd_reply_text(out, 0, "ok");
}

static int op_delete(kbd_t *d, const char *name, char **out)
{
    struct kbd_vol_entry *e = kbd_vol_find(d, name);
    if (!e)
        return kbd_reply_text(out, 0, "ok");
    for (int i = 0; i < e->v->nbricks; i++) {
        brick_stop(d, e, i);
        if (e->local[i])
            posix_brick_unstamp(e->v->bricks[i].path);
    }
    char *dir = vol_dir(d, name), *p = NULL;
    if (dir) {
        if (asprintf(&p, "%s/info", dir) >= 0) { unlink(p); free(p); }
        if (asprintf(&p, "%s/local", dir) >= 0) { unlink(p); free(p); }
        rmdir(dir);
        free(dir);
    }
    struct kbd_vol_entry **pp = &d->vols;
    while (*pp != e)
        pp = &(*pp)->next;
    *pp = e->next;
    entry_free(e);
    return kbd_reply_text(out, 0, "ok");
}

/* Entries in a brick's heal index (objects with pending marks). */
/* brick-status NAME, one line per local brick:
 * "IDX STATE PID PORT CLIENTS TOTAL_BYTES FREE_BYTES INODES FREE_INODES HEAL_PENDING PATH\tREASON" */
static int op_brick_status(kbd_t *d, const char *name, char **out)
{
    struct kbd_vol_entry *e = kbd_vol_find(d, name);
    if (!e)
        return kbd_reply_text(out, -ENOENT, "volume '%s' does not exist", name);
    kb_enc_t enc;
    kb_enc_init(&enc);
    for (int i = 0; i < e->v->nbricks; i++) {
        if (!e->local[i])
            continue;
        kbd_brick_rt_t *b = e->rt[i];
        struct statvfs sv = { 0 };
        bool online = b && b->graph;
        if (statvfs(e->v->bricks[i].path, &sv))
            memset(&sv, 0, sizeof(sv));
        char line[KB_PATH_MAX + 768];
        int n = snprintf(line, sizeof(line), "%d %s %d %u %d %llu %llu %llu %llu %d %s\t%s\n", i,
                         online ? "online" : "offline", (int)getpid(), d->port, b ? b->nconns : 0,
                         (unsigned long long)sv.f_blocks * sv.f_frsize, (unsigned long long)sv.f_bavail * sv.f_frsize,
                         (unsigned long long)sv.f_files, (unsigned long long)sv.f_ffree,
                         online ? kbd_index_count(e->v->bricks[i].path, NULL) : 0, e->v->bricks[i].path,
                         b && !b->graph ? b->error : "");
        kb_enc_bytes(&enc, line, (size_t)KB_MIN(n, (int)sizeof(line) - 1));
    }
    if (!(*out = kbd_enc_text(&enc)))
        return kbd_reply_text(out, -ENOMEM, "out of memory");
    return 0;
}

/* profile NAME [clear]: per local brick, per fop that ran:
 * "P IDX OP COUNT ERRORS AVG_US P50_US P99_US P999_US" and
 * "T IDX BYTES_READ BYTES_WRITTEN SECONDS" */
static int op_profile(kbd_t *d, int argc, char **argv, char **out)
{
    struct kbd_vol_entry *e = kbd_vol_find(d, argv[2]);
    if (!e)
        return kbd_reply_text(out, -ENOENT, "volume '%s' does not exist", argv[2]);
    bool clear = argc > 3 && strcmp(argv[3], "clear") == 0;
    kb_enc_t enc;
    kb_enc_init(&enc);
    char line[256];
    for (int i = 0; i < e->v->nbricks; i++) {
        kbd_brick_rt_t *b = e->local[i] ? e->rt[i] : NULL;
        if (!b)
            continue;
        kbd_stats_t *st = &b->stats;
        for (int op = 0; op < KB_FOP_MAX; op++) {
            kbd_fop_stats_t *f = &st->fop[op];
            if (!f->count)
                continue;
            int n = snprintf(line, sizeof(line), "P %d %s %llu %llu %llu %llu %llu %llu\n", i, kb_fop_name((kb_op_t)op),
                             (unsigned long long)f->count, (unsigned long long)f->errors,
                             (unsigned long long)(f->lat_sum_us / f->count),
                             (unsigned long long)kbd_stats_percentile(f, 0.5),
                             (unsigned long long)kbd_stats_percentile(f, 0.99),
                             (unsigned long long)kbd_stats_percentile(f, 0.999));
            kb_enc_bytes(&enc, line, (size_t)n);
        }
        int n = snprintf(line, sizeof(line), "T %d %llu %llu %.1f\n", i, (unsigned long long)st->bytes_read,
                         (unsigned long long)st->bytes_written, (double)(kb_now_ms() - st->since_ms) / 1000.0);
        kb_enc_bytes(&enc, line, (size_t)n);
        if (clear) {
            memset(st, 0, sizeof(*st));
            st->since_ms = kb_now_ms();
        }
    }
    if (!(*out = kbd_enc_text(&enc)))
        return kbd_reply_text(out, -ENOMEM, "out of memory");
    return 0;
}

/* ---------------- rebalance, remove-brick, replace-brick (issue 6) ---------------- */

/* Non-directory objects under DIR (at most LIMIT counted), the internal
 * directory of the brick root left out. -errno if DIR cannot be read. */
static int count_files(int fd, bool root, int limit)
{
    DIR *dh = fdopendir(fd);
    if (!dh) {
        close(fd);
        return -errno;
    }
    int n = 0;
    for (struct dirent *de; n < limit && (de = readdir(dh));) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..") || (root && !strcmp(de->d_name, KB_INTERNAL_DIR)))
            continue;
        struct stat st;
        if (fstatat(dirfd(dh), de->d_name, &st, AT_SYMLINK_NOFOLLOW))
            continue;
        if (!S_ISDIR(st.st_mode)) {
            n++;
            continue;
        }
        int sub = openat(dirfd(dh), de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        int k = sub >= 0 ? count_files(sub, false, limit - n) : 0;
        n += k > 0 ? k : 0;
    }
    closedir(dh);
    return n;
}

/* heal-full-ready NAME SET CHILD: start heal full in this node's heal daemon
 * of replica set SET once child CHILD (a brick just replaced) and another
 * child of the set are up in it; -EAGAIN until then. */
static int op_heal_full_ready(kbd_t *d, struct kbd_vol_entry *e, int argc, char **argv, char **out)
{
    int set = argc == 5 ? atoi(argv[3]) : -1, child = argc == 5 ? atoi(argv[4]) : -1, k = kbd_set_size(e->v);
    if (set < 0 || set >= e->v->nbricks / k || child < 0 || child >= k)
        return kbd_reply_text(out, -EINVAL, "heal-full-ready: bad arguments");
    kb_graph_t *g = e->shd[set];
    kb_xlator_t *top = g ? g->top : NULL;
    if (!top || top->nchildren != k)
        return kbd_reply_text(out, -ENOENT, "no heal daemon of set %d on this node", set);
    int others = 0;
    for (int i = 0; i < k; i++)
        others += i != child && top->children[i]->up;
    if (!top->children[child]->up || !others)
        return kbd_reply_text(out, -EAGAIN, "the bricks of set %d are not up in the heal daemon yet", set);
    int rc = kb_graph_ctl(g, KB_CTL_HEAL_FULL, NULL);
    return rc ? kbd_reply_text(out, rc, "heal full: %s", strerror(-rc)) : kbd_reply_text(out, 0, "1");
}

/* rebalance-start NAME DRAIN_CSV|-    rebalance-status NAME    rebalance-stop NAME
 * brick-files NAME: "IDX COUNT" per local brick (non-directories outside
 * .kembar/, counted up to 1000)       heal-full-ready NAME SET CHILD */
static int peer_rebalance(kbd_t *d, int argc, char **argv, char **out)
{
    const char *op = argv[1];
    struct kbd_vol_entry *e = kbd_vol_find(d, argv[2]);
    if (strcmp(op, "rebalance-status") == 0)
        return kbd_rebal_status(d, argv[2], out);
    if (strcmp(op, "rebalance-stop") == 0)
        return kbd_rebal_stop(d, argv[2], out);
    if (!e)
        return kbd_reply_text(out, -ENOENT, "volume '%s' does not exist", argv[2]);
    if (strcmp(op, "rebalance-start") == 0) {
        uint64_t drain = 0;
        if (argc != 4 || (strcmp(argv[3], "-") && kbd_mask_parse(argv[3], &drain)))
            return kbd_reply_text(out, -EINVAL, "rebalance-start: bad arguments");
        if (e->v->status != KBD_VOL_STARTED)
            return kbd_reply_text(out, -EINVAL, "volume '%s' is not started", argv[2]);
        return kbd_rebal_start(d, argv[2], drain, e->v->version, out);
    }
    if (strcmp(op, "heal-full-ready") == 0)
        return op_heal_full_ready(d, e, argc, argv, out);
    if (strcmp(op, "brick-files") != 0)
        return kbd_reply_text(out, -EINVAL, "peer: unknown operation '%s'", op);
    kb_enc_t enc;
    kb_enc_init(&enc);
    for (int i = 0; i < e->v->nbricks; i++) {
        if (!e->local[i])
            continue;
        int fd = open(e->v->bricks[i].path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        int n = fd >= 0 ? count_files(fd, true, 1000) : -errno;
        char line[64];
        int len = snprintf(line, sizeof(line), "%d %d\n", i, n);
        kb_enc_bytes(&enc, line, (size_t)len);
    }
    if (!(*out = kbd_enc_text(&enc)))
        return kbd_reply_text(out, -ENOMEM, "out of memory");
    return 0;
}

int kbd_peer_op(kbd_t *d, int argc, char **argv, char **out)
{
    *out = NULL;
    if (argc < 2)
        return kbd_reply_text(out, -EINVAL, "peer: no operation");
    const char *op = argv[1];
    if (strcmp(op, "kx-offer") == 0 || strcmp(op, "kx-install") == 0)
        return kbd_trust_peer_op(d, argc, argv, out);
    if (strcmp(op, "ping") == 0)
        return kbd_reply_text(out, 0, "ok %s:%u", d->self_host, d->port);
    if (strcmp(op, KB_PEER_VERSION_OP) == 0)     /* rpc/wire.h: what this node runs */
        return kbd_reply_text(out, 0, "version=%s proto-min=%d proto-max=%d features=0x%llx op-version=%u "
                              "brick-format=%u state-format=%u", KB_VERSION, KB_PROTO_MIN, KB_PROTO_MAX,
                              (unsigned long long)KB_FEATURES, KB_OP_VERSION, KB_BRICK_FORMAT, KBD_STATE_FORMAT);
    if (strcmp(op, "list") == 0) {
        kb_enc_t enc;
        kb_enc_init(&enc);
        for (struct kbd_vol_entry *e = d->vols; e; e = e->next) {
            kb_enc_bytes(&enc, e->v->name, strlen(e->v->name));
            kb_enc_u8(&enc, '\n');
        }
        if (!(*out = kbd_enc_text(&enc)))
            return kbd_reply_text(out, -ENOMEM, "out of memory");
        return 0;
    }
    if (argc < 3)
        return kbd_reply_text(out, -EINVAL, "peer %s: missing argument", op);
    if (strcmp(op, "get") == 0) {
        struct kbd_vol_entry *e = kbd_vol_find(d, argv[2]);
        if (!e)
            return kbd_reply_text(out, -ENOENT, "volume '%s' does not exist", argv[2]);
        *out = kbd_volume_format(e->v);
        return *out ? 0 : -ENOMEM;
    }
    if (strcmp(op, "prepare") == 0)
        return op_prepare(d, argc, argv, out);
    if (strcmp(op, "unprepare") == 0) {
        for (int i = 2; i < argc; i++)
            posix_brick_unstamp(argv[i]);
        return kbd_reply_text(out, 0, "ok");
    }
    if (strcmp(op, "store") == 0)
        return op_store(d, argc, argv, out);
    if (strcmp(op, "delete") == 0)
        return op_delete(d, argv[2], out);
    if (strcmp(op, "clients") == 0 && argc == 3) {
        *out = kbd_serve_clients(d, argv[2]);
        return *out ? 0 : -ENOMEM;
    }
    if (strcmp(op, "brick-status") == 0)
        return op_brick_status(d, argv[2], out);
    if (strcmp(op, "profile") == 0)
        return op_profile(d, argc, argv, out);
    if (strcmp(op, "heal") == 0 || strcmp(op, "heal-info") == 0)
        return kbd_peer_heal(d, argc, argv, out);
    if (strcmp(op, "heal-resolve") == 0 || strcmp(op, "heal-resolve-status") == 0)
        return kbd_peer_heal_resolve(d, argc, argv, out);
    if (strncmp(op, "rebalance-", 10) == 0 || strcmp(op, "brick-files") == 0 || strcmp(op, "heal-full-ready") == 0)
        return peer_rebalance(d, argc, argv, out);
    return kbd_reply_text(out, -EINVAL, "peer: unknown operation '%s'", op);
}

/* ---------------- access control ---------------- */

/* Does ADDR match one entry: "*", a glob ("10.1.*"), or a CIDR ("10.0.0.0/8",
 * "fd00::/8")? */
static bool addr_match(const char *pat, const char *addr)
{
    const char *slash = strchr(pat, '/');
    if (!slash)
        return fnmatch(pat, addr, 0) == 0;
    char net[64];
    size_t nl = (size_t)(slash - pat);
    if (nl >= sizeof(net))
        return false;
    memcpy(net, pat, nl);
    net[nl] = 0;
    int bits = atoi(slash + 1);
    unsigned char a[16], n[16];
    int fam = strchr(net, ':') ? AF_INET6 : AF_INET, len = fam == AF_INET ? 4 : 16;
    if (inet_pton(fam, net, n) != 1 || inet_pton(fam, addr, a) != 1 || bits < 0 || bits > len * 8)
        return false;
    for (int i = 0; i < len && bits > 0; i++, bits -= 8) {
        unsigned char mask = bits >= 8 ? 0xff : (unsigned char)(0xff << (8 - bits));
        if ((a[i] & mask) != (n[i] & mask))
            return false;
    }
    return true;
}

static bool list_match(const char *list, const char *addr)
{
    char *copy = strdup(list ? list : ""), *save = NULL;
    bool hit = false;
    for (char *t = copy ? strtok_r(copy, ", ", &save) : NULL; t && !hit; t = strtok_r(NULL, ", ", &save))
        hit = addr_match(t, addr);
    free(copy);
    return hit;
}

bool kbd_volume_wants_tls(kbd_t *d, const char *volume)
{
    struct kbd_vol_entry *e = kbd_vol_find(d, volume);
    const char *v = e ? kb_opts_raw(e->v->opts, "transport.tls") : NULL;
    bool on = false;
    return v && kb_parse_bool(v, &on) == 0 && on;
}

int kbd_auth_check(kbd_t *d, const char *volume, const char *addr)
{
    struct kbd_vol_entry *e = kbd_vol_find(d, volume);
    if (!e)
        return -ENOENT;
    const char *reject = kb_opts_raw(e->v->opts, "auth.reject");
    const char *allow = kb_opts_raw(e->v->opts, "auth.allow");
    /* IPv4 clients may show up as ::ffff:a.b.c.d on a dual-stack socket. */
    if (strncmp(addr, "::ffff:", 7) == 0 && strchr(addr + 7, '.'))
        addr += 7;
    if (reject && *reject && list_match(reject, addr))
        return -EACCES;
    if (allow && *allow && !list_match(allow, addr))
        return -EACCES;
    return 0;
}

/* ---------------- Prometheus text ---------------- */

static void prom(kb_enc_t *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void prom(kb_enc_t *e, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    kb_enc_bytes(e, line, (size_t)KB_MIN(n, (int)sizeof(line) - 1));
}

/* The node's metrics in the Prometheus text format (version 0.0.4). */
char *kbd_metrics_text(kbd_t *d)
{
    kb_enc_t e;
    kb_enc_init(&e);
    prom(&e, "# HELP kembar_up kembard is running\n# TYPE kembar_up gauge\nkembar_up 1\n");
    prom(&e, "# HELP kembar_uptime_seconds seconds since kembard started\n# TYPE kembar_uptime_seconds gauge\n"
             "kembar_uptime_seconds %.1f\n", (double)(kb_now_ms() - d->started_ms) / 1000.0);
    prom(&e, "# TYPE kembar_brick_online gauge\n# TYPE kembar_brick_clients gauge\n"
             "# TYPE kembar_heal_pending gauge\n# TYPE kembar_fop_total counter\n"
             "# TYPE kembar_fop_errors_total counter\n# TYPE kembar_fop_latency_seconds histogram\n"
             "# TYPE kembar_read_bytes_total counter\n# TYPE kembar_written_bytes_total counter\n");
    for (struct kbd_vol_entry *v = d->vols; v; v = v->next) {
        for (int i = 0; i < v->v->nbricks; i++) {
            if (!v->local[i])
                continue;
            kbd_brick_rt_t *b = v->rt[i];
            char lbl[KB_PATH_MAX + 128];
            snprintf(lbl, sizeof(lbl), "volume=\"%s\",brick=\"%s\"", v->v->name, v->v->bricks[i].path);
            bool online = b && b->graph;
            prom(&e, "kembar_brick_online{%s} %d\n", lbl, online);
            prom(&e, "kembar_brick_clients{%s} %d\n", lbl, b ? b->nconns : 0);
            prom(&e, "kembar_heal_pending{%s} %d\n", lbl, online ? kbd_index_count(v->v->bricks[i].path, NULL) : 0);
            if (!b)
                continue;
            prom(&e, "kembar_read_bytes_total{%s} %llu\n", lbl, (unsigned long long)b->stats.bytes_read);
            prom(&e, "kembar_written_bytes_total{%s} %llu\n", lbl, (unsigned long long)b->stats.bytes_written);
            for (int op = 0; op < KB_FOP_MAX; op++) {
                const kbd_fop_stats_t *f = &b->stats.fop[op];
                if (!f->count)
                    continue;
                const char *name = kb_fop_name((kb_op_t)op);
                prom(&e, "kembar_fop_total{%s,op=\"%s\"} %llu\n", lbl, name, (unsigned long long)f->count);
                prom(&e, "kembar_fop_errors_total{%s,op=\"%s\"} %llu\n", lbl, name, (unsigned long long)f->errors);
                uint64_t cum = 0;
                for (int k = 0; k < KBD_LAT_BUCKETS - 1; k++) {
                    cum += f->lat[k];
                    prom(&e, "kembar_fop_latency_seconds_bucket{%s,op=\"%s\",le=\"%g\"} %llu\n", lbl, name,
                         (double)kbd_stats_bucket_le(k) / 1e6, (unsigned long long)cum);
                }
                prom(&e, "kembar_fop_latency_seconds_bucket{%s,op=\"%s\",le=\"+Inf\"} %llu\n", lbl, name,
                     (unsigned long long)f->count);
                prom(&e, "kembar_fop_latency_seconds_sum{%s,op=\"%s\"} %g\n", lbl, name, (double)f->lat_sum_us / 1e6);
                prom(&e, "kembar_fop_latency_seconds_count{%s,op=\"%s\"} %llu\n", lbl, name,
                     (unsigned long long)f->count);
            }
        }
    }
    return kbd_enc_text(&e);
}

