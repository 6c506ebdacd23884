/*
 * rebalance.c — a rebalance run of one volume on this node (DESIGN §7).
 *
 * `volume rebalance NAME start` and `remove-brick ... start` end here, on
 * the node that received the command (peer rebalance-start, loop thread).
 * A run is a thread of its own with a client graph of the volume
 * (libkembar, the volfile fetched from this node), so it never touches the
 * loop thread's state and blocks only itself. It crawls the tree top-down:
 *
 *   for each directory D (the root first):
 *     LOOKUP D in its parent        distribute creates D on sets that lack
 *                                   it (new sets after add-brick)
 *     IPC DIST_FIX_LAYOUT D, drain  D's hash ranges over the sets that are
 *                                   not drained, names kept in place where
 *                                   the arithmetic allows
 *     READDIRP D to the end         the listing is taken whole before any
 *                                   move: a move during a listing could make
 *                                   it show a name twice or miss one
 *     IPC DIST_MIGRATE D/name       each regular file to its hashed set,
 *                                   online (xlators/cluster/distribute/migrate.c);
 *                                   reply.off = bytes copied, 0 = home already
 *     then D's subdirectories, depth first
 *
 * Counts: files scanned (regular files met), moved (a migration that copied
 * bytes — an empty file that moves copies none and is not counted), bytes,
 * skipped (hard links -EMLINK, files another migration holds -EBUSY and
 * files a client holds a lock on -ETXTBSY — a running VM's image — left
 * in place by design; in a drain, a locked file is a failure: the set must
 * be emptied), failures (any other error; logged, the crawl
 * goes on: a failure is not fatal, but remove-brick commit refuses a drain
 * that had any).
 *
 * Promises
 *  - One run per volume per node at a time (-EBUSY); any number of volumes.
 *  - The result of the last run stays in memory and in
 *    <state-dir>/rebalance/<volume> (one status line), so `status` answers
 *    after completion and after a restart of kembard.
 *  - stop is honoured between two files (a migration in flight finishes or
 *    undoes itself: xlators/cluster/distribute/migrate.c never leaves half
 *    a move).
 *
 * Every brick of every set must be up in the run's own graph: fix-layout
 * and migrate answer -ENOTCONN otherwise (all_whole in
 * xlators/cluster/distribute/migrate.c), so the run waits for that at its
 * start (REB_UP_WAIT_MS, then fails) and ends, failed, when a brick goes
 * away during it: a file moved onto a set with a brick away would arrive
 * with one copy.
 *
 * Who waits for whom: the management thread checks, before it starts a run,
 * that every client attached to the volume's bricks runs a graph of the
 * current definition (mgmt_bricks.c, wait_clients): a client still on the old
 * graph does not know the new sets, and a file moved under it would lose
 * its writes. The run itself trusts that check.
 */
#include <dirent.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/stat.h>
#include <time.h>
#include "client/kembar.h"
#include "lib/log.h"
#include "server/kembard.h"
#include "xlators/changelog.h"
#include "xlators/storage/posix/posix.h"

#define REB_UP_WAIT_MS 20000     /* every set of the client graph up, at the start */
#define REB_STOP_WAIT_MS 5000    /* shutdown: how long to wait for a run to end */

enum reb_state { REB_NONE = 0, REB_RUNNING, REB_COMPLETED, REB_FAILED, REB_STOPPED };

static const char *state_name(int s)
{
    switch (s) {
    case REB_RUNNING: return "running";
    case REB_COMPLETED: return "completed";
    case REB_FAILED: return "failed";
    case REB_STOPPED: return "stopped";
    default: return "not-started";
    }
}

typedef struct reb_run {
    char volume[72];
    char *spec;              /* "host:port:/volume" of this node */
    char *tls_dir;           /* the node's --tls-dir: volumes with transport.tls on need it */
    char *state_file;
    uint64_t drain;
    uint32_t version;
    pthread_t thread;
    bool joinable;
    /* under kbd_rebal.lock: */
    int state;
    bool stop;
    uint64_t scanned, moved, bytes, skipped, failures, dirs;
    uint64_t start_ms, end_ms;
    char where[256];         /* directory being crawled, or the reason of a failure */
    struct reb_run *next;
} reb_run_t;

struct kbd_rebal {
    pthread_mutex_t lock;
    reb_run_t *runs;
};

static struct kbd_rebal *rebal_of(kbd_t *d)
{
    if (!d->rebal) {
        struct kbd_rebal *r = kb_zalloc(sizeof(*r));
        if (!r)
            return NULL;
        pthread_mutex_init(&r->lock, NULL);
        d->rebal = r;
    }
    return d->rebal;
}

static reb_run_t *run_find(struct kbd_rebal *rb, const char *volume)
{
    for (reb_run_t *r = rb->runs; r; r = r->next)
        if (strcmp(r->volume, volume) == 0)
            return r;
    return NULL;
}

/* "STATE SCANNED MOVED BYTES SKIPPED FAILURES DIRS ELAPSED_MS DRAIN_HEX VERSION\tWHERE" */
static int status_line(const reb_run_t *r, char *buf, size_t len)
{
    uint64_t end = r->state == REB_RUNNING ? kb_now_ms() : r->end_ms;
    return snprintf(buf, len, "%s %llu %llu %llu %llu %llu %llu %llu %llx %u\t%s\n", state_name(r->state),
                    (unsigned long long)r->scanned, (unsigned long long)r->moved, (unsigned long long)r->bytes,
                    (unsigned long long)r->skipped, (unsigned long long)r->failures, (unsigned long long)r->dirs,
                    (unsigned long long)(end - KB_MIN(end, r->start_ms)), (unsigned long long)r->drain,
                    r->version, r->where);
}

/* ---------------- the crawl (run thread) ---------------- */

typedef struct crawl {
    reb_run_t *r;
    struct kbd_rebal *rb;
    kbc_t *c;
    bool lost;               /* a brick went away: the run ends, failed */
    struct { kb_gfid_t gfid; char *path; } *stack;
    size_t n, cap;
} crawl_t;

static bool stopped(crawl_t *cr)
{
    pthread_mutex_lock(&cr->rb->lock);
    bool s = cr->r->stop;
    pthread_mutex_unlock(&cr->rb->lock);
    return s;
}

static void count(crawl_t *cr, uint64_t *field, uint64_t n)
{
    pthread_mutex_lock(&cr->rb->lock);
    *field += n;
    pthread_mutex_unlock(&cr->rb->lock);
}

static int push(crawl_t *cr, const kb_gfid_t *g, const char *parent, const char *name)
{
    if (cr->n == cr->cap) {
        size_t cap = cr->cap ? cr->cap * 2 : 64;
        void *p = realloc(cr->stack, cap * sizeof(*cr->stack));
        if (!p)
            return -ENOMEM;
        cr->stack = p;
        cr->cap = cap;
    }
    char *path = NULL;                  /* parent NULL: NAME is the root, "/" */
    if (asprintf(&path, "%s%s%s", parent ? parent : "", parent && strcmp(parent, "/") ? "/" : "", name) < 0)
        return -ENOMEM;
    cr->stack[cr->n].gfid = *g;
    cr->stack[cr->n++].path = path;
    return 0;
}

static int ipc(kbc_t *c, uint32_t code, const kb_gfid_t *g, const char *name, uint64_t size, uint64_t *off)
{
    kb_args_t a = { .gfid = *g, .name = (char *)name, .flags = code, .size = size };
    kb_reply_t rep;
    int rc = kbc_call(c, KB_FOP_IPC, &a, &rep);
    if (off)
        *off = rc >= 0 ? rep.off : 0;
    kb_reply_clear(&rep);
    return rc < 0 ? rc : 0;
}

typedef struct entry { char *name; bool dir, reg; } entry_t;

/* The whole listing of DIR (names, and whether each is a directory or a
 * regular file). */
static int list_dir(kbc_t *c, const kb_gfid_t *dir, bool root, entry_t **out, size_t *nout)
{
    kbc_fd_t *fd;
    int rc = kbc_opendir(c, dir, &fd);
    if (rc < 0)
        return rc;
    entry_t *v = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        kb_dirent_t *ents;
        uint32_t k;
        if ((rc = kbc_readdir(fd, true, &ents, &k)) < 0 || k == 0)
            break;
        for (uint32_t i = 0; i < k && !rc; i++) {
            const char *nm = ents[i].name;
            if (!nm || !strcmp(nm, ".") || !strcmp(nm, "..") || (root && !strcmp(nm, KB_INTERNAL_DIR)))
                continue;
            uint32_t t = ents[i].type;
            if (t == DT_UNKNOWN && ents[i].has_attr)
                t = S_ISDIR(ents[i].attr.mode) ? DT_DIR : S_ISREG(ents[i].attr.mode) ? DT_REG : DT_UNKNOWN;
            if (n == cap) {
                cap = cap ? cap * 2 : 256;
                entry_t *nv = realloc(v, cap * sizeof(*v));
                if (!nv) {
                    rc = -ENOMEM;
                    break;
                }
                v = nv;
            }
            if (!(v[n].name = strdup(nm))) {
                rc = -ENOMEM;
                break;
            }
            v[n].dir = t == DT_DIR;
            v[n++].reg = t == DT_REG;
        }
        kb_dirents_free(ents, k);
        if (rc)
            break;
    }
    kbc_close(fd);
    if (rc < 0) {
        for (size_t i = 0; i < n; i++)
            free(v[i].name);
        free(v);
        return rc;
    }
    *out = v;
    *nout = n;
    return 0;
}

static void failure(crawl_t *cr, const char *path, const char *name, const char *what, int rc)
{
    count(cr, &cr->r->failures, 1);
    kb_warn("rebalance", "%s: %s%s%s: %s: %s", cr->r->volume, path, name && strcmp(path, "/") ? "/" : "",
            name ? name : "", what, strerror(-rc));
}

/* One directory: fix its layout, move its files, queue its subdirectories. */
static void crawl_dir(crawl_t *cr, const kb_gfid_t *dir, const char *path)
{
    reb_run_t *r = cr->r;
    pthread_mutex_lock(&cr->rb->lock);
    snprintf(r->where, sizeof(r->where), "%s", path);
    for (char *c = r->where; *c; c++)          /* the status line is one line, tab-separated */
        if ((unsigned char)*c < 0x20 || *c == 0x7f)
            *c = '?';
    r->dirs++;
    pthread_mutex_unlock(&cr->rb->lock);
    int rc = ipc(cr->c, KB_IPC_DIST_FIX_LAYOUT, dir, NULL, r->drain, NULL);
    bool layout_ok = rc == 0;
    if (rc == -ENOTCONN) {
        cr->lost = true;
        return;
    }
    if (rc)
        failure(cr, path, NULL, "fix-layout", rc);   /* its files stay; its subdirectories are still visited */
    entry_t *ents = NULL;
    size_t n = 0;
    if ((rc = list_dir(cr->c, dir, strcmp(path, "/") == 0, &ents, &n)) < 0) {
        failure(cr, path, NULL, "readdir", rc);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        if (stopped(cr))
            break;
        if (ents[i].dir) {
            kb_iatt_t ia;
            rc = kbc_lookup(cr->c, dir, ents[i].name, &ia);   /* creates it on sets that lack it */
            if (rc == 0 && S_ISDIR(ia.mode))
                rc = push(cr, &ia.gfid, path, ents[i].name);
            if (rc < 0 && rc != -ENOENT)                      /* ENOENT: removed meanwhile */
                failure(cr, path, ents[i].name, "lookup", rc);
        } else if (ents[i].reg && layout_ok) {
            uint64_t copied = 0;
            count(cr, &r->scanned, 1);
            rc = ipc(cr->c, KB_IPC_DIST_MIGRATE, dir, ents[i].name, 0, &copied);
            if (rc == -ENOTCONN) {
                cr->lost = true;
                break;
            }
            if (rc == -ETXTBSY && r->drain) {
                /* a drained set must be emptied: a file left there would go with it */
                failure(cr, path, ents[i].name, "migrate (in use: a client holds a lock on it; stop "
                        "the VM or release the lock, then run the drain again)", rc);
            } else if (rc == -EMLINK || rc == -EBUSY || rc == -ETXTBSY) {
                count(cr, &r->skipped, 1);
                kb_info("rebalance", "%s: %s/%s left in place: %s", r->volume, path, ents[i].name,
                        rc == -EMLINK ? "hard links"
                        : rc == -EBUSY ? "another migration holds it"
                                       : "in use: a client holds a lock on it (moved by a later rebalance)");
            } else if (rc < 0 && rc != -ENOENT) {
                failure(cr, path, ents[i].name, "migrate", rc);
            } else if (copied) {
                pthread_mutex_lock(&cr->rb->lock);
                r->moved++;
                r->bytes += copied;
                pthread_mutex_unlock(&cr->rb->lock);
            }
        } else if (ents[i].reg) {
            count(cr, &r->scanned, 1);
        }
    }
    for (size_t i = 0; i < n; i++)
        free(ents[i].name);
    free(ents);
}

/* Wait until the graph reaches every brick of every set: fix-layout of the
 * root answers -ENOTCONN while one is missing. */
static int wait_all_sets(crawl_t *cr)
{
    uint64_t until = kb_now_ms() + REB_UP_WAIT_MS;
    for (;;) {
        int rc = ipc(cr->c, KB_IPC_DIST_FIX_LAYOUT, &kb_gfid_root, NULL, cr->r->drain, NULL);
        if (rc != -ENOTCONN || kb_now_ms() > until || stopped(cr))
            return rc;
        struct timespec ts = { 0, 200 * 1000000L };
        nanosleep(&ts, NULL);
    }
}

static void save_result(reb_run_t *r)
{
    char line[512];
    int n = status_line(r, line, sizeof(line));
    char *dir = strdup(r->state_file);
    char *slash = dir ? strrchr(dir, '/') : NULL;
    if (slash) {
        *slash = 0;
        kb_mkdir_p(dir, 0700);
    }
    free(dir);
    if (kb_write_file_atomic(r->state_file, line, (size_t)KB_MIN(n, (int)sizeof(line) - 1)))
        kb_warn("rebalance", "%s: cannot save the result in %s", r->volume, r->state_file);
}

static void finish(crawl_t *cr, int state, const char *why)
{
    reb_run_t *r = cr->r;
    pthread_mutex_lock(&cr->rb->lock);
    r->state = r->stop && state == REB_COMPLETED ? REB_STOPPED : state;
    r->end_ms = kb_now_ms();
    snprintf(r->where, sizeof(r->where), "%s", why);
    double secs = (double)(r->end_ms - r->start_ms) / 1000.0;
    kb_info("rebalance", "%s: %s after %.1f s: %llu files scanned, %llu moved (%llu bytes, %.1f MiB/s), "
            "%llu skipped, %llu failures, %llu directories", r->volume, state_name(r->state), secs,
            (unsigned long long)r->scanned, (unsigned long long)r->moved, (unsigned long long)r->bytes,
            secs > 0 ? (double)r->bytes / 1048576.0 / secs : 0.0, (unsigned long long)r->skipped,
            (unsigned long long)r->failures, (unsigned long long)r->dirs);
    save_result(r);
    pthread_mutex_unlock(&cr->rb->lock);
}

typedef struct run_arg { reb_run_t *r; struct kbd_rebal *rb; } run_arg_t;

static void *run_main(void *arg)
{
    run_arg_t *ra = arg;
    crawl_t cr = { .r = ra->r, .rb = ra->rb };
    free(ra);
    char err[512] = "";
    kbc_opts_t o = { .up_timeout_ms = REB_UP_WAIT_MS, .tls_dir = cr.r->tls_dir };
    cr.c = kbc_new(cr.r->spec, &o, err, sizeof(err));
    if (!cr.c) {
        finish(&cr, REB_FAILED, err[0] ? err : "cannot build a client graph");
        return NULL;
    }
    int rc = wait_all_sets(&cr);
    if (rc) {
        char why[256];
        snprintf(why, sizeof(why), "%s", rc == -ENOTCONN ? "some brick is unreachable from this node "
                                                         "(a rebalance needs every brick up)"
                                       : rc == -EINVAL ? "the client graph has no distribute (one replica set?)"
                                       : strerror(-rc));
        kbc_free(cr.c);
        finish(&cr, REB_FAILED, why);
        return NULL;
    }
    rc = push(&cr, &kb_gfid_root, NULL, "/");
    while (!rc && cr.n && !cr.lost && !stopped(&cr)) {
        cr.n--;
        kb_gfid_t g = cr.stack[cr.n].gfid;
        char *path = cr.stack[cr.n].path;
        crawl_dir(&cr, &g, path);
        free(path);
    }
    while (cr.n)
        free(cr.stack[--cr.n].path);
    free(cr.stack);
    kbc_free(cr.c);
    if (cr.lost)
        finish(&cr, REB_FAILED, "a brick became unreachable during the run; start it again when every brick is up");
    else
        finish(&cr, rc ? REB_FAILED : REB_COMPLETED, rc ? strerror(-rc) : "");
    return NULL;
}

/* ---------------- peer operations (loop thread) ---------------- */

static int reply(char **out, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int reply(char **out, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (vasprintf(out, fmt, ap) < 0)
        *out = NULL;
    va_end(ap);
    return rc;
}

int kbd_rebal_start(kbd_t *d, const char *volume, uint64_t drain, uint32_t version, char **out)
{
    struct kbd_rebal *rb = rebal_of(d);
    if (!rb || strlen(volume) >= sizeof(((reb_run_t *)0)->volume))
        return reply(out, rb ? -EINVAL : -ENOMEM, "cannot start a rebalance of '%s'", volume);
    pthread_mutex_lock(&rb->lock);
    reb_run_t *r = run_find(rb, volume);
    if (r && r->state == REB_RUNNING) {
        pthread_mutex_unlock(&rb->lock);
        return reply(out, -EBUSY, "a rebalance of '%s' is already running on this node", volume);
    }
    pthread_mutex_unlock(&rb->lock);
    if (r && r->joinable) {              /* finished: the join is immediate */
        pthread_join(r->thread, NULL);
        r->joinable = false;
    }
    if (!r) {
        if (!(r = kb_zalloc(sizeof(*r))))
            return reply(out, -ENOMEM, "out of memory");
        snprintf(r->volume, sizeof(r->volume), "%s", volume);
        bool v6 = strchr(d->self_host, ':') != NULL;
        if (asprintf(&r->spec, "%s%s%s:%u:/%s", v6 ? "[" : "", d->self_host, v6 ? "]" : "", d->port, volume) < 0 ||
            asprintf(&r->state_file, "%s/rebalance/%s", d->state_dir, volume) < 0 ||
            (d->tls_dir && !(r->tls_dir = strdup(d->tls_dir)))) {
            free(r->spec);
            free(r->state_file);
            free(r);
            return reply(out, -ENOMEM, "out of memory");
        }
        pthread_mutex_lock(&rb->lock);
        r->next = rb->runs;
        rb->runs = r;
        pthread_mutex_unlock(&rb->lock);
    }
    run_arg_t *ra = kb_zalloc(sizeof(*ra));
    if (!ra)
        return reply(out, -ENOMEM, "out of memory");
    pthread_mutex_lock(&rb->lock);
    r->drain = drain;
    r->version = version;
    r->state = REB_RUNNING;
    r->stop = false;
    r->scanned = r->moved = r->bytes = r->skipped = r->failures = r->dirs = 0;
    r->start_ms = kb_now_ms();
    r->end_ms = 0;
    snprintf(r->where, sizeof(r->where), "starting");
    pthread_mutex_unlock(&rb->lock);
    *ra = (run_arg_t){ .r = r, .rb = rb };
    int rc = pthread_create(&r->thread, NULL, run_main, ra);
    if (rc) {
        free(ra);
        pthread_mutex_lock(&rb->lock);
        r->state = REB_FAILED;
        r->end_ms = kb_now_ms();
        snprintf(r->where, sizeof(r->where), "cannot start a thread");
        pthread_mutex_unlock(&rb->lock);
        return reply(out, -rc, "cannot start a rebalance thread for '%s'", volume);
    }
    r->joinable = true;
    char mask[256];
    kbd_mask_csv(drain, mask, sizeof(mask));
    kb_info("rebalance", "%s: started (definition version %u%s%s)", volume, version, drain ? ", draining sets " : "",
            drain ? mask : "");
    return reply(out, 0, "started");
}

int kbd_rebal_status(kbd_t *d, const char *volume, char **out)
{
    struct kbd_rebal *rb = rebal_of(d);
    if (!rb)
        return reply(out, -ENOMEM, "out of memory");
    char line[512];
    pthread_mutex_lock(&rb->lock);
    reb_run_t *r = run_find(rb, volume);
    if (r)
        status_line(r, line, sizeof(line));
    pthread_mutex_unlock(&rb->lock);
    if (r)
        return reply(out, 0, "%s", line);
    /* Not run since kembard started: the last saved result, if any. */
    char *path = NULL, *text = NULL;
    size_t len = 0;
    if (asprintf(&path, "%s/rebalance/%s", d->state_dir, volume) >= 0 && kb_read_file(path, &text, &len) == 0 &&
        len && text[len - 1] == '\n') {
        char *st = strchr(text, ' ');
        bool was_running = st && (size_t)(st - text) == 7 && strncmp(text, "running", 7) == 0;
        int rc = reply(out, 0, was_running ? "stopped%s" : "%s", was_running ? st : text);
        free(path);
        free(text);
        return rc;
    }
    free(path);
    free(text);
    return reply(out, 0, "not-started 0 0 0 0 0 0 0 0 0\t\n");
}

int kbd_rebal_stop(kbd_t *d, const char *volume, char **out)
{
    struct kbd_rebal *rb = rebal_of(d);
    if (!rb)
        return reply(out, -ENOMEM, "out of memory");
    pthread_mutex_lock(&rb->lock);
    reb_run_t *r = run_find(rb, volume);
    bool running = r && r->state == REB_RUNNING;
    if (running)
        r->stop = true;
    pthread_mutex_unlock(&rb->lock);
    return reply(out, 0, "%s", running ? "stopping" : "not running");
}

void kbd_rebal_shutdown(kbd_t *d)
{
    struct kbd_rebal *rb = d->rebal;
    if (!rb)
        return;
    pthread_mutex_lock(&rb->lock);
    for (reb_run_t *r = rb->runs; r; r = r->next)
        r->stop = true;
    pthread_mutex_unlock(&rb->lock);
    /* A run ends at the next file; one whose graph cannot reach its bricks
     * any more (the loop is stopped) fails over after the ping timeout.
     * Past REB_STOP_WAIT_MS it is left to the process exit (detached, its
     * state not freed: it may still write to it). */
    bool leaked = false;
    uint64_t until = kb_now_ms() + REB_STOP_WAIT_MS;
    for (reb_run_t *r = rb->runs; r; r = r->next) {
        if (!r->joinable)
            continue;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t left = until > kb_now_ms() ? until - kb_now_ms() : 0;
        ts.tv_sec += (time_t)(left / 1000);
        ts.tv_nsec += (long)(left % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        if (pthread_timedjoin_np(r->thread, NULL, &ts) == 0) {
            r->joinable = false;
        } else {
            kb_warn("rebalance", "%s: the run did not stop in time; left to the exit", r->volume);
            pthread_detach(r->thread);
            leaked = true;
        }
    }
    if (leaked)
        return;
    while (rb->runs) {
        reb_run_t *r = rb->runs;
        rb->runs = r->next;
        free(r->spec);
        free(r->state_file);
        free(r->tls_dir);
        free(r);
    }
    pthread_mutex_destroy(&rb->lock);
    free(rb);
    d->rebal = NULL;
}
