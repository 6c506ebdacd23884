/*
 * write_behind.c — performance/write-behind: buffered writes acknowledged
 * before the bricks answer (issue 7).
 *
 * Why. kembar-fuse runs without the kernel's writeback cache (qemu's
 * cache=none needs every O_DIRECT write on all replicas before its ack), so
 * each buffered write(2) is one FUSE WRITE that waits for both replicas, and
 * a single stream runs at record size / round trip. This translator sits on
 * top of the client graph and acknowledges a buffered WRITE at once, keeping
 * a reference on its payload, while the write travels on; several writes of
 * one file are then in flight. GlusterFS's write-behind does the same.
 *
 * Which writes. Only WRITEs on an fd this translator saw opened, with a
 * payload, and synchronous in no way: not O_DIRECT (args.flags, per write),
 * not on an fd opened O_SYNC / O_DSYNC. Every other WRITE, and every write
 * while write-behind is off, goes through synchronously as before.
 *
 * On by default. Off (option write-behind off, `volume set NAME
 * performance.write-behind off`) still keeps the translator in the graph and
 * every call still waits for writes outstanding on its inode: there are none
 * of this graph's, but a mounted client switching to the "off" graph may
 * still have the previous graph's (see "Several graphs" below). So volgen
 * always emits the stanza.
 *
 * Promises (per inode, keyed by gfid):
 *  - A write is acknowledged (status = its length, attr zeroed: nothing
 *    above reads WRITE attrs) while the bytes acknowledged and not yet
 *    completed stay within window-size, and at most WB_MAX_WRITES writes;
 *    beyond that the WRITE waits, queued, unacknowledged (backpressure, never
 *    a failure). A write larger than the window is admitted when nothing
 *    else is outstanding.
 *  - With aggregate-size set, contiguous writes queued behind one in flight
 *    are sent as one (see "Aggregation" below). Off by default for now:
 *    it changes how many WRITEs the bricks see, which 70-ops asserts.
 *  - Writes reach the child in submission order wherever they overlap: a
 *    write overlapping an earlier outstanding one is wound only once that one
 *    completed. A write on an fd opened O_APPEND lands wherever the end of
 *    the file is (the brick opens it O_APPEND too, and Linux's pwrite then
 *    ignores the offset), so it counts as overlapping everything.
 *  - Every other op naming the inode (args.gfid: READ, STAT, SETATTR,
 *    TRUNCATE, FALLOCATE, LSEEK, FSYNC, FLUSH, RELEASE, LK, xattrs, OPEN,
 *    LINK, synchronous WRITEs ...) waits until every write acknowledged
 *    before it has completed: a read sees the data, a stat the size, an
 *    unlock (LK) publishes the data first, a close (FLUSH, RELEASE) never
 *    loses it. Waiting calls form one FIFO per inode with the queued writes:
 *    nothing overtakes anything queued before it.
 *  - Ops that name the inode only through a parent and a name (LOOKUP,
 *    READDIRPLUS; entry ops) cannot wait in advance. A LOOKUP whose answer
 *    is an inode with writes outstanding waits for them and is asked again,
 *    once: the first answer could carry a stale size, which the kernel would
 *    believe (the writes were acknowledged before the lookup began, so its
 *    attr_version check does not catch it). READDIRPLUS entries of such
 *    inodes go up without attributes (the kernel then just lists the name).
 *  - Errors. A behind write that fails (or writes short: -EIO) is remembered
 *    on its inode, as Linux's errseq does for writeback errors: the next
 *    FSYNC and FLUSH of every fd of the inode then fail with it, once per fd
 *    (an error nobody has seen yet is also reported to an fd opened after it,
 *    as Linux does); and the next behind-eligible WRITE of each fd fails with
 *    it once, without being sent, so a streaming writer learns early. FSYNC
 *    and FLUSH still run (FLUSH drops POSIX locks). An error remembered on an
 *    inode is forgotten when its last fd is released. An fd whose write
 *    failed writes through (not behind) until one succeeds; one that failed
 *    with EBADFD (replicate: its lock was lost) fails every later write.
 *  - What is NOT promised: another client sees a behind write once it
 *    completed, i.e. at the latest after this client's fsync or close (the
 *    close-to-open consistency every NFS-like system gives). A client that
 *    dies loses what it acknowledged and had not completed, like a page
 *    cache: fsync is the durability point, as on a local disk.
 *
 * Several graphs, one order. A mounted client switching to a new graph
 * (`volume set`, add-brick ...) reopens its files there while the old
 * graph's writes may still be outstanding (client/graphs.c). A read on the
 * new graph must not overtake them, nor a new write overlapping them. So
 * the per-inode state lives in a domain shared by every write-behind
 * instance on one event loop (one thread: no locks on the data path), found
 * in a small registry keyed by the graph's kb_loop; a graph without a loop
 * (unit tests) has a domain of its own. Sharing across volumes on one loop
 * is harmless: gfids are unique, and directories (the fixed root gfid) never
 * have writes. The registry is this file's one static, guarded by a mutex
 * (graphs of different loops init and fini on their own threads).
 *   Consequence, by design: a write the old graph never completes holds
 * every later call on that inode, on either graph (the reopen on the new
 * graph first of all), as it would hold its writer without write-behind;
 * the old graph stays alive meanwhile (client/graphs.c logs such a graph
 * with what holds it). That is how a livelock in replicate's nameless
 * LOOKUP showed up as "the old graph is never finalised" (56-rebalance);
 * the order itself was sound.
 *   Rejected: client/ draining the old graph's writes at the switch, per
 * handle (a FLUSH on the old fd before the reopen) with a domain per graph.
 * Calls that name the inode without a handle (LOOKUP, GETXATTR, a GETATTR
 * without a file, the STAT kembar-fuse pairs with each OPEN), wound on the
 * new graph at once, would overtake the old graph's writes unless every call
 * of every file stalled during the switch; and it costs a round trip per
 * open file at every switch.
 *
 * Fds. This translator does not translate fds: the child's fd goes up as it
 * is. It keeps, per fd, the open flags, its inode and what errors it has
 * seen (created on the OPEN / CREATE reply, dropped when RELEASE is wound).
 * An fd it never saw opened gets synchronous writes.
 *
 * Teardown. A graph is finalised (client/graphs.c) only when no fd is open
 * on it, so no write is outstanding then: every RELEASE waited. Should one
 * be (a forced unmount), PARENT_DOWN has made the child fail it, or fini
 * drops what is queued (logged as lost) and orphans what is still wound: an
 * orphan's late completion frees only itself, touching no freed state.
 *
 * Threading: everything runs on the graph's loop thread. Completions may
 * come back inside a wind (a child failing at once), and acknowledgements
 * may make the caller wind again at once: the per-inode state is changed
 * only by wb_process, which a busy flag keeps from nesting (a nested call
 * just asks it to run once more).
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include "lib/log.h"
#include "xlators/xlator.h"

#define WB_BUCKETS 256
#define WB_ALL UINT64_MAX              /* an appending write's end */
/* Writes outstanding per inode, besides the byte window. A payload may pin
 * more memory than its length: kembar-fuse hands over large writes inside
 * their 2 MiB receive buffer (fuse/file.c), so 32 of them hold at most 64 MiB
 * per file, and 32 in flight is more than a stream needs. */
#define WB_MAX_WRITES 32

static const kb_option_def_t wb_options[] = {
    { "write-behind", "performance.write-behind", KB_OPT_BOOL, "on", 0, 0, NULL,
      "Acknowledge buffered writes before the bricks answer, several in flight per file; errors are "
      "reported by the next write, fsync and close. O_DIRECT and O_SYNC writes always wait" },
    { "window-size", "performance.write-behind-window-size", KB_OPT_SIZE, "4MiB", 4096,
      1024ll << 20, NULL,
      "Bytes per file acknowledged by write-behind and not yet written on the bricks; "
      "a write beyond it waits" },
    { "aggregate-size", "performance.aggregate-size", KB_OPT_SIZE, "0", 0, KB_DATA_MAX, NULL,
      "Contiguous buffered writes queued behind one in flight are sent as one write of up to this "
      "size, e.g. 1MiB (0: each write on its own)" },
    { NULL },
};

typedef struct wb_domain wb_domain_t;
typedef struct wb_inode wb_inode_t;

enum wb_state { WB_QUEUED, WB_WOUND, WB_DONE };

/* A write acknowledged and not yet completed. Owned by its inode's list;
 * an orphan (ino == NULL) by its own wind, freed in its completion. */
typedef struct wb_write {
    struct wb_write *next;        /* inode's writes, in submission order */
    wb_inode_t *ino;
    kb_xlator_t *xl;              /* the instance that acknowledged it */
    kb_args_t args;               /* deep copy: holds a payload reference */
    kb_cred_t cred;
    uint64_t req_id;
    uint64_t start, end;          /* bytes it may touch: [start, end) */
    uint64_t len;
    enum wb_state state;
    bool merged;                  /* args.data is our own buffer of aggregate-size */
} wb_write_t;

/* Per call (local block): a call waiting in its inode's FIFO. */
typedef struct wb_local {
    struct wb_local *next;
    kb_call_t *call;
    wb_write_t *w;                /* a WRITE to write behind; NULL: waits, then passes */
    bool relooked;                /* LOOKUP: asked again already */
} wb_local_t;

struct wb_inode {
    wb_inode_t *hnext;
    wb_domain_t *dom;
    kb_gfid_t gfid;
    unsigned refs;                /* fd contexts */
    wb_write_t *writes, **wtail;
    unsigned nwrites, nqueued;    /* listed; of which not wound yet */
    unsigned nwound;              /* listed and at the child */
    uint64_t bytes;               /* sum of the listed writes' lengths */
    wb_local_t *waiters, **qtail; /* FIFO of calls not let through yet */
    int err;                      /* last write error (errseq-like, see above) */
    uint32_t err_gen;             /* bumped by every error; 0 = none yet */
    bool err_seen;                /* an FSYNC / FLUSH reported err_gen */
    bool busy, again;             /* wb_process running / asked to rerun */
    wb_inode_t *fini_next;        /* fini: inodes it took something out of */
};

struct wb_domain {
    wb_domain_t *next;
    const void *key;
    unsigned users;               /* instances bound to it */
    unsigned nwriting;            /* inodes with writes listed */
    wb_inode_t *buckets[WB_BUCKETS];
};

typedef struct wb_fd {
    struct wb_fd *hnext;
    uint64_t fd;
    uint32_t flags;               /* open flags */
    wb_inode_t *ino;              /* referenced */
    uint32_t wr_gen, sync_gen;    /* errors reported to WRITE / FSYNC+FLUSH */
    int dead;                     /* the fd itself failed (-EBADFD: its lock was lost): every write fails */
    bool wary;                    /* a write of this fd failed: write through until one succeeds */
} wb_fd_t;

typedef struct wb_priv {
    bool enabled;
    uint64_t window;
    uint64_t aggregate;
    wb_domain_t *dom;             /* bound at first use (the loop is known then) */
    wb_fd_t *fds[WB_BUCKETS];
    struct kb_ratelimit rl;
} wb_priv_t;

static void wb_process(wb_inode_t *ino);
static void write_free(wb_write_t *w);
static void fd_failed(wb_fd_t *f, int st);

/* ---------------- domains (registry shared by the loops' threads) ---------------- */

static pthread_mutex_t wb_reg_mu = PTHREAD_MUTEX_INITIALIZER;
static wb_domain_t *wb_domains;   /* guarded by wb_reg_mu; contents by their loop */

static wb_domain_t *dom_bind(kb_xlator_t *xl)
{
    wb_priv_t *p = xl->priv;
    if (p->dom)
        return p->dom;
    const void *key = xl->graph && xl->graph->loop ? (const void *)xl->graph->loop : (const void *)xl->graph;
    pthread_mutex_lock(&wb_reg_mu);
    wb_domain_t *d = wb_domains;
    while (d && d->key != key)
        d = d->next;
    if (!d && (d = kb_zalloc(sizeof(*d)))) {
        d->key = key;
        d->next = wb_domains;
        wb_domains = d;
    }
    if (d)
        d->users++;
    pthread_mutex_unlock(&wb_reg_mu);
    p->dom = d;
    return d;
}

/* The last user's fini took its calls, writes and fds out, so no inode is
 * left; should one be (a leak elsewhere), it goes, and a write still wound
 * becomes an orphan. */
static void dom_free(wb_domain_t *d)
{
    for (int b = 0; b < WB_BUCKETS; b++)
        while (d->buckets[b]) {
            wb_inode_t *ino = d->buckets[b];
            d->buckets[b] = ino->hnext;
            while (ino->writes) {
                wb_write_t *w = ino->writes;
                ino->writes = w->next;
                if (w->state == WB_WOUND)
                    w->ino = NULL;
                else
                    write_free(w);
            }
            free(ino);
        }
    free(d);
}

static void dom_unbind(wb_domain_t *d)
{
    pthread_mutex_lock(&wb_reg_mu);
    bool last = --d->users == 0;
    if (last)
        for (wb_domain_t **pp = &wb_domains; *pp; pp = &(*pp)->next)
            if (*pp == d) {
                *pp = d->next;
                break;
            }
    pthread_mutex_unlock(&wb_reg_mu);
    if (last)
        dom_free(d);
}

/* ---------------- inodes ---------------- */

static wb_inode_t **ino_slot(wb_domain_t *d, const kb_gfid_t *g)
{
    wb_inode_t **pp = &d->buckets[kb_gfid_hash(g) % WB_BUCKETS];
    while (*pp && !kb_gfid_eq(&(*pp)->gfid, g))
        pp = &(*pp)->hnext;
    return pp;
}

static wb_inode_t *ino_find(wb_domain_t *d, const kb_gfid_t *g)
{
    return d ? *ino_slot(d, g) : NULL;
}

static wb_inode_t *ino_get(wb_domain_t *d, const kb_gfid_t *g)
{
    wb_inode_t **pp = ino_slot(d, g);
    if (*pp)
        return *pp;
    wb_inode_t *ino = kb_zalloc(sizeof(*ino));
    if (!ino)
        return NULL;
    ino->dom = d;
    ino->gfid = *g;
    ino->wtail = &ino->writes;
    ino->qtail = &ino->waiters;
    *pp = ino;
    return ino;
}

/* Nothing to order: calls on it pass at once. Not while wb_process runs:
 * it may be between acknowledging a write and listing it. */
static bool ino_idle(const wb_inode_t *ino)
{
    return !ino || (!ino->busy && !ino->nwrites && !ino->waiters);
}

static void ino_maybe_free(wb_inode_t *ino)
{
    if (ino->busy || ino->refs || ino->nwrites || ino->waiters)
        return;
    wb_inode_t **pp = ino_slot(ino->dom, &ino->gfid);
    if (*pp == ino)
        *pp = ino->hnext;
    free(ino);
}

static void ino_error(wb_inode_t *ino, int err)
{
    ino->err = err;
    if (++ino->err_gen == 0)
        ino->err_gen = 1;
    ino->err_seen = false;
}

/* The error FD has not been told about by its FSYNC / FLUSH yet (0: none). */
static int fd_sync_error(wb_fd_t *f)
{
    wb_inode_t *ino = f->ino;
    if (f->sync_gen == ino->err_gen)
        return 0;
    f->sync_gen = ino->err_gen;
    ino->err_seen = true;
    return ino->err < 0 ? ino->err : -EIO;
}

/* ---------------- fd contexts ---------------- */

static wb_fd_t **fd_slot(wb_priv_t *p, uint64_t fd)
{
    wb_fd_t **pp = &p->fds[(fd ^ (fd >> 17) ^ (fd >> 32)) % WB_BUCKETS];
    while (*pp && (*pp)->fd != fd)
        pp = &(*pp)->hnext;
    return pp;
}

static wb_fd_t *fd_find(wb_priv_t *p, uint64_t fd)
{
    return *fd_slot(p, fd);
}

static void fd_free(wb_fd_t *f)
{
    wb_inode_t *ino = f->ino;
    free(f);
    ino->refs--;
    ino_maybe_free(ino);
}

static void fd_forget(wb_priv_t *p, uint64_t fd)
{
    wb_fd_t **pp = fd_slot(p, fd), *f = *pp;
    if (f) {
        *pp = f->hnext;
        fd_free(f);
    }
}

/* Remember FD (from an OPEN / CREATE reply). Without memory it stays
 * unknown, and unknown fds get synchronous writes: nothing is lost. */
static void fd_remember(kb_xlator_t *xl, uint64_t fd, uint32_t flags, const kb_gfid_t *gfid)
{
    wb_priv_t *p = xl->priv;
    wb_domain_t *d = dom_bind(xl);
    if (!d)
        return;
    fd_forget(p, fd);             /* a number the child reused: the old one is gone */
    wb_inode_t *ino = kb_gfid_is_null(gfid) ? NULL : ino_get(d, gfid);
    if (!ino)
        return;
    wb_fd_t *f = kb_zalloc(sizeof(*f));
    if (!f) {
        ino_maybe_free(ino);
        return;
    }
    f->fd = fd;
    f->flags = flags;
    f->ino = ino;
    ino->refs++;
    /* errseq: an error nobody was told about yet is this fd's to report */
    f->wr_gen = f->sync_gen = ino->err_seen ? ino->err_gen : 0;
    wb_fd_t **pp = fd_slot(p, fd);
    *pp = f;
}

/* ---------------- writes ---------------- */

static void write_free(wb_write_t *w)
{
    kb_args_clear(&w->args);
    free(w);
}

static bool overlap(const wb_write_t *a, const wb_write_t *b)
{
    return a->start < b->end && b->start < a->end;
}

static void write_link(wb_inode_t *ino, wb_write_t *w)
{
    w->ino = ino;
    w->next = NULL;
    *ino->wtail = w;
    ino->wtail = &w->next;
    if (ino->nwrites++ == 0)
        ino->dom->nwriting++;
    ino->nqueued++;
    ino->bytes += w->len;
}

/* Remove *PP (a write of INO's list) and return it. */
static wb_write_t *write_unlink(wb_inode_t *ino, wb_write_t **pp)
{
    wb_write_t *w = *pp;
    *pp = w->next;
    if (ino->wtail == &w->next)
        ino->wtail = pp;
    if (--ino->nwrites == 0)
        ino->dom->nwriting--;
    if (w->state == WB_QUEUED)
        ino->nqueued--;
    else if (w->state == WB_WOUND)
        ino->nwound--;
    ino->bytes -= w->len;
    w->next = NULL;
    return w;
}

static void write_done(void *cookie, const kb_reply_t *r)
{
    wb_write_t *w = cookie;
    wb_inode_t *ino = w->ino;
    if (!ino) {                   /* orphaned by fini */
        write_free(w);
        return;
    }
    int st = r->status;
    if (st >= 0 && (uint64_t)st < w->len)
        st = -EIO;                /* the brick absorbs short writes: a short one is a failure */
    if (st < 0) {
        ino_error(ino, st);
        wb_priv_t *p = w->xl->priv;
        fd_failed(p->dom ? fd_find(p, w->args.fd) : NULL, st);
        char gs[KB_GFID_STRLEN];
        if (kb_ratelimit_ok(&p->rl))
            kb_log_req(KB_LOG_WARN, w->xl->name, w->req_id,
                       "WRITE %s %llu+%llu written behind failed: %s (reported by the next write, fsync "
                       "and close)", kb_gfid_str(&ino->gfid, gs), (unsigned long long)w->args.off,
                       (unsigned long long)w->len, strerror(-st));
    }
    w->state = WB_DONE;
    ino->nwound--;
    wb_process(ino);
}

/* A write of F failed with ST. A failed fd (its lock lost while this
 * client was away: -EBADFD from replicate, for good) fails every later
 * write at once: acknowledging one would be a silent success on a
 * descriptor that can never write again. Any other failure (the bricks
 * unreachable, a full disk) makes the fd write through until a write
 * succeeds, so the next write learns the truth before it is acknowledged
 * (after a cut, the first write on a descriptor whose lock was lost fails
 * itself, not only the fsync after it). */
static void fd_failed(wb_fd_t *f, int st)
{
    if (!f)
        return;
    f->wary = true;
    if (st == -EBADFD)
        f->dead = st;
}

static wb_write_t *write_new(kb_call_t *call, const wb_fd_t *f)
{
    wb_write_t *w = kb_zalloc(sizeof(*w));
    if (!w || kb_args_copy(&w->args, call->args) < 0) {
        free(w);
        return NULL;
    }
    w->xl = call->xl;
    w->cred = call->cred;
    w->req_id = call->req_id;
    w->len = w->args.data->len;
    w->start = w->args.off;
    w->end = w->start + w->len < w->start ? WB_ALL : w->start + w->len;
    if (f->flags & O_APPEND) {
        w->start = 0;
        w->end = WB_ALL;
    }
    w->state = WB_QUEUED;
    return w;
}

/* ---------------- the per-inode order ---------------- */

static void wb_wind(kb_call_t *call);

/*
 * Aggregation. While a write of the inode is at the child, the last queued
 * write stays queued and contiguous writes that follow are copied onto its
 * end (merge): a stream of 128 KiB writes reaches the bricks as 1 MiB ones,
 * a fraction of the per-request work on the client and both bricks. It is
 * self-clocked, no timer: the completion of the write in flight sends it,
 * as does any op waiting on the inode, a following write it cannot absorb,
 * or its reaching aggregate-size. Only the LAST write grows, so list order,
 * hence every overlap rule above, is unchanged.
 */
static bool growing(const wb_inode_t *ino, const wb_write_t *w)
{
    const wb_priv_t *p = w->xl->priv;
    return !w->next && ino->nwound && !ino->waiters && w->len < p->aggregate && w->end != WB_ALL;
}

static wb_write_t *last_write(wb_inode_t *ino)
{
    return ino->writes ? kb_container_of(ino->wtail, wb_write_t, next) : NULL;
}

/* May W be copied onto the end of the inode's last write? */
static bool mergeable(wb_inode_t *ino, const wb_write_t *w)
{
    const wb_write_t *t = last_write(ino);
    uint64_t max = ((const wb_priv_t *)w->xl->priv)->aggregate;
    return t && t->state == WB_QUEUED && t->xl == w->xl && t->args.fd == w->args.fd && t->end == w->start &&
           t->end != WB_ALL && w->end != WB_ALL && t->len + w->len <= max && t->cred.uid == w->cred.uid &&
           t->cred.gid == w->cred.gid && t->args.flags == w->args.flags;
}

/* Copy W onto the end of the inode's last write if that one may grow. */
static bool merge(wb_inode_t *ino, wb_write_t *w)
{
    wb_write_t *t = last_write(ino);
    uint64_t max = ((const wb_priv_t *)w->xl->priv)->aggregate;
    if (!mergeable(ino, w))
        return false;
    if (!t->merged) {
        kb_buf_t *b = kb_buf_new(max);
        if (!b)
            return false;
        memcpy(b->data, t->args.data->data, t->len);
        b->len = t->len;
        kb_buf_unref(t->args.data);   /* frees the sender's (e.g. FUSE receive) buffer early */
        t->args.data = b;
        t->merged = true;
    }
    memcpy(t->args.data->data + t->len, w->args.data->data, w->len);
    t->args.data->len += w->len;
    t->len += w->len;
    t->end += w->len;
    ino->bytes += w->len;
    write_free(w);
    return true;
}

/* Drop completed writes. */
static void reap(wb_inode_t *ino)
{
    for (wb_write_t **pp = &ino->writes; *pp;) {
        if ((*pp)->state == WB_DONE)
            write_free(write_unlink(ino, pp));
        else
            pp = &(*pp)->next;
    }
}

static wb_local_t *waiter_pop(wb_inode_t *ino)
{
    wb_local_t *l = ino->waiters;
    ino->waiters = l->next;
    if (!ino->waiters)
        ino->qtail = &ino->waiters;
    l->next = NULL;
    return l;
}

/* Let waiters through from the head of the FIFO while they may go. */
static void admit(wb_inode_t *ino)
{
    while (ino->waiters) {
        wb_local_t *l = ino->waiters;
        if (l->w) {
            wb_priv_t *p = l->call->xl->priv;
            if (ino->nwrites && (ino->bytes + l->w->len > p->window ||
                                 (ino->nwrites >= WB_MAX_WRITES && !mergeable(ino, l->w))))
                return;
            waiter_pop(ino);
            wb_write_t *w = l->w;
            kb_reply_t r = { .status = (int32_t)w->len };
            /* Acknowledge first: the writer copies its next record while we
             * merge and send this one. A call its callback makes queues
             * behind W, which is linked before this loop goes on. */
            kb_unwind(l->call, &r);   /* frees l */
            if (!merge(ino, w))
                write_link(ino, w);
        } else {
            if (ino->nwrites)
                return;
            waiter_pop(ino);
            wb_wind(l->call);
        }
    }
}

/* Wind queued writes that overlap no earlier outstanding one. */
static void wind_writes(wb_inode_t *ino)
{
    if (!ino->nqueued)
        return;
    for (wb_write_t *w = ino->writes; w; w = w->next) {
        if (w->state != WB_QUEUED)
            continue;
        bool blocked = false;
        for (const wb_write_t *e = ino->writes; e != w && !blocked; e = e->next)
            blocked = e->state != WB_DONE && overlap(e, w);
        if (blocked || growing(ino, w))
            continue;
        w->state = WB_WOUND;
        ino->nqueued--;
        ino->nwound++;
        /* may complete inside: write_done only marks it done (we are busy) */
        kb_wind(w->xl->children[0], KB_FOP_WRITE, &w->args, &w->cred, w->req_id, write_done, w);
    }
}

static void wb_process(wb_inode_t *ino)
{
    if (ino->busy) {
        ino->again = true;
        return;
    }
    ino->busy = true;
    do {
        ino->again = false;
        reap(ino);
        admit(ino);
        wind_writes(ino);
    } while (ino->again);
    ino->busy = false;
    ino_maybe_free(ino);
}

static void enqueue(wb_inode_t *ino, wb_local_t *l)
{
    l->next = NULL;
    *ino->qtail = l;
    ino->qtail = &l->next;
    wb_process(ino);
}

/* ---------------- replies of calls let through ---------------- */

/* The object of a LOOKUP answer has writes outstanding: wait, ask again. */
static bool relookup(kb_call_t *call, const kb_reply_t *r)
{
    wb_local_t *l = call->local;
    wb_priv_t *p = call->xl->priv;
    if (l->relooked || r->status < 0 || !p->dom || !p->dom->nwriting)
        return false;
    wb_inode_t *ino = ino_find(p->dom, &r->attr.gfid);
    if (!ino || !ino->nwrites)
        return false;
    l->relooked = true;
    l->call = call;
    enqueue(ino, l);
    return true;
}

/* READDIRPLUS: entries whose inode has writes outstanding lose their
 * attributes (a stale size would reach the kernel). */
static void readdir_reply(kb_call_t *call, const kb_reply_t *r)
{
    wb_priv_t *p = call->xl->priv;
    if (r->status < 0 || !r->ndirents || !p->dom || !p->dom->nwriting) {
        kb_unwind(call, r);
        return;
    }
    kb_dirent_t *d = NULL;
    for (uint32_t i = 0; i < r->ndirents; i++) {
        const kb_dirent_t *e = &r->dirents[i];
        wb_inode_t *ino = e->has_attr ? ino_find(p->dom, &e->attr.gfid) : NULL;
        if (!ino || !ino->nwrites)
            continue;
        if (!d) {
            if (!(d = malloc(r->ndirents * sizeof(*d)))) {
                kb_unwind_err(call, -ENOMEM);
                return;
            }
            memcpy(d, r->dirents, r->ndirents * sizeof(*d));   /* names stay borrowed */
        }
        if (kb_gfid_is_null(&d[i].gfid))
            d[i].gfid = d[i].attr.gfid;
        d[i].has_attr = 0;
    }
    kb_reply_t out = *r;
    if (d)
        out.dirents = d;
    kb_unwind(call, &out);
    free(d);
}

static void wb_reply(void *cookie, const kb_reply_t *r)
{
    kb_call_t *call = cookie;
    const kb_args_t *a = call->args;
    wb_priv_t *p = call->xl->priv;
    wb_fd_t *f;
    kb_reply_t out;
    switch (call->op) {
    case KB_FOP_OPEN:
    case KB_FOP_CREATE:
        if (r->status >= 0)
            fd_remember(call->xl, r->fd, a->flags,
                        call->op == KB_FOP_OPEN ? &a->gfid
                        : kb_gfid_is_null(&a->newgfid) ? &r->attr.gfid : &a->newgfid);
        break;
    case KB_FOP_FSYNC:
    case KB_FOP_FLUSH:
        if (r->status >= 0 && p->dom && (f = fd_find(p, a->fd)) && f->sync_gen != f->ino->err_gen) {
            out = *r;
            out.status = fd_sync_error(f);
            kb_unwind(call, &out);
            return;
        }
        break;
    case KB_FOP_WRITE:            /* written through: what it says of the fd */
        if (p->dom && (f = fd_find(p, a->fd))) {
            if (r->status < 0)
                fd_failed(f, r->status);
            else
                f->wary = false;
        }
        break;
    case KB_FOP_LOOKUP:
        if (a->name && relookup(call, r))
            return;
        break;
    case KB_FOP_READDIR:
        if (a->flags & 1) {
            readdir_reply(call, r);
            return;
        }
        break;
    default:
        break;
    }
    kb_unwind(call, r);
}

/* Let CALL through to the child. */
static void wb_wind(kb_call_t *call)
{
    wb_priv_t *p = call->xl->priv;
    if (call->op == KB_FOP_RELEASE && p->dom)
        fd_forget(p, call->args->fd);   /* nothing can use the fd after its release */
    kb_wind_from(call, call->xl->children[0], call->args, wb_reply, call);
}

/* ---------------- ops ---------------- */

/* Through once the inode's earlier writes are done (every op but a behind WRITE). */
static void wb_ordered(kb_call_t *call)
{
    wb_local_t *l = call->local;
    l->call = call;
    wb_inode_t *ino = ino_find(dom_bind(call->xl), &call->args->gfid);
    if (ino_idle(ino))
        wb_wind(call);
    else
        enqueue(ino, l);
}

static void wb_write(kb_call_t *call)
{
    wb_priv_t *p = call->xl->priv;
    const kb_args_t *a = call->args;
    wb_fd_t *f = p->enabled && dom_bind(call->xl) ? fd_find(p, a->fd) : NULL;
    if (f && f->dead) {
        kb_unwind_err(call, f->dead);
        return;
    }
    if (!f || !a->data || !a->data->len || (a->flags & O_DIRECT) || (f->flags & (O_DSYNC | O_SYNC))) {
        wb_ordered(call);         /* a synchronous write */
        return;
    }
    wb_inode_t *ino = f->ino;
    if (f->wr_gen != ino->err_gen) {
        f->wr_gen = ino->err_gen;
        kb_unwind_err(call, ino->err);
        return;
    }
    if (f->wary) {
        wb_ordered(call);         /* after a failure: through, until one succeeds */
        return;
    }
    wb_local_t *l = call->local;
    l->call = call;
    if (!(l->w = write_new(call, f))) {
        wb_ordered(call);         /* no memory to hold it: write it through */
        return;
    }
    enqueue(ino, l);
}

static void wb_op(kb_call_t *call)
{
    if (call->op == KB_FOP_WRITE)
        wb_write(call);
    else
        wb_ordered(call);
}

/* ---------------- life ---------------- */

static int wb_init(kb_xlator_t *xl)
{
    if (xl->nchildren != 1) {
        kb_err(xl->name, "performance/write-behind needs exactly one subvolume");
        return -EINVAL;
    }
    wb_priv_t *p = kb_zalloc(sizeof(*p));
    if (!p)
        return -ENOMEM;
    p->enabled = kb_opt_bool(xl->opts, wb_options, "write-behind");
    p->window = kb_opt_size(xl->opts, wb_options, "window-size");
    p->aggregate = kb_opt_size(xl->opts, wb_options, "aggregate-size");
    p->rl.interval_ms = 5000;
    xl->priv = p;
    return 0;
}

/* Take XL's waiting calls (onto *FAIL) and writes out of INO. Runs no
 * callback: the caller walks the domain meanwhile. Returns whether it took
 * anything (INO is then the caller's to process). */
static bool detach_inode(kb_xlator_t *xl, wb_inode_t *ino, wb_local_t ***ftail)
{
    bool took = false;
    unsigned lost = 0;
    for (wb_local_t **pp = &ino->waiters; *pp;) {
        wb_local_t *l = *pp;
        if (l->call->xl != xl) {
            pp = &l->next;
            continue;
        }
        *pp = l->next;
        l->next = NULL;
        **ftail = l;
        *ftail = &l->next;
        took = true;
    }
    for (ino->qtail = &ino->waiters; *ino->qtail;)
        ino->qtail = &(*ino->qtail)->next;
    for (wb_write_t **pp = &ino->writes; *pp;) {
        if ((*pp)->xl != xl) {
            pp = &(*pp)->next;
            continue;
        }
        wb_write_t *w = write_unlink(ino, pp);
        took = true;
        if (w->state == WB_WOUND) {
            w->ino = NULL;        /* an orphan: its completion frees it */
            continue;
        }
        lost += w->state == WB_QUEUED;
        write_free(w);
    }
    if (lost) {
        char gs[KB_GFID_STRLEN];
        kb_err(xl->name, "graph teardown: %u acknowledged writes to %s were never sent", lost,
               kb_gfid_str(&ino->gfid, gs));
        ino_error(ino, -EIO);
    }
    return took;
}

/* Teardown with calls or writes still here (see the file comment): take
 * ours out of every inode first, pinning those touched; then fail our
 * waiting calls; then let other graphs' waiters on those inodes go. The
 * callbacks of the last two steps may change the domain at will. */
static void detach_all(kb_xlator_t *xl, wb_domain_t *d)
{
    wb_local_t *fail = NULL, **ftail = &fail;
    wb_inode_t *touched = NULL;
    for (int b = 0; b < WB_BUCKETS; b++)
        for (wb_inode_t *ino = d->buckets[b]; ino; ino = ino->hnext)
            if (detach_inode(xl, ino, &ftail)) {
                ino->refs++;
                ino->fini_next = touched;
                touched = ino;
            }
    while (fail) {
        wb_local_t *l = fail;
        fail = l->next;
        if (l->w)
            write_free(l->w);
        l->w = NULL;
        kb_unwind_err(l->call, -ENOTCONN);
    }
    while (touched) {
        wb_inode_t *ino = touched;
        touched = ino->fini_next;
        ino->refs--;
        wb_process(ino);          /* frees it when nothing is left */
    }
}

static void wb_fini(kb_xlator_t *xl)
{
    wb_priv_t *p = xl->priv;
    if (!p)
        return;
    wb_domain_t *d = p->dom;
    if (d) {
        detach_all(xl, d);
        for (int b = 0; b < WB_BUCKETS; b++)
            while (p->fds[b]) {
                wb_fd_t *f = p->fds[b];
                p->fds[b] = f->hnext;
                fd_free(f);
            }
        dom_unbind(d);
    }
    free(p);
    xl->priv = NULL;
}

/* Status detail: the first inodes with writes or waiting calls, each write
 * and waiter marked as this instance's or another's (another graph's). */
static void ctl_inodes(kb_xlator_t *xl, struct kb_ctl_status *st)
{
    wb_priv_t *p = xl->priv;
    unsigned shown = 0;
    char gs[KB_GFID_STRLEN];
    for (int b = 0; p->dom && b < WB_BUCKETS && shown < 16; b++)
        for (wb_inode_t *ino = p->dom->buckets[b]; ino && shown < 16; ino = ino->hnext) {
            if (!ino->nwrites && !ino->waiters)
                continue;
            shown++;
            kb_ctl_printf(st, "  %s: %u writes (%u queued, %u wound), %u fds%s\n", kb_gfid_str(&ino->gfid, gs),
                          ino->nwrites, ino->nqueued, ino->nwound, ino->refs, ino->busy ? ", busy" : "");
            for (const wb_write_t *w = ino->writes; w; w = w->next)
                kb_ctl_printf(st, "    write %llu+%llu %s, %s\n", (unsigned long long)w->args.off,
                              (unsigned long long)w->len,
                              w->state == WB_QUEUED ? "queued" : w->state == WB_WOUND ? "wound" : "done",
                              w->xl == xl ? "mine" : "another graph's");
            for (const wb_local_t *l = ino->waiters; l; l = l->next)
                kb_ctl_printf(st, "    waiting: %s req %llu, %s\n", kb_fop_name(l->call->op),
                              (unsigned long long)l->call->req_id, l->call->xl == xl ? "mine" : "another graph's");
        }
}

static int wb_ctl(kb_xlator_t *xl, int code, void *arg)
{
    wb_priv_t *p = xl->priv;
    if (code != KB_CTL_STATUS || !p)
        return -ENOSYS;
    unsigned inodes = 0, writes = 0;
    uint64_t bytes = 0;
    for (int b = 0; p->dom && b < WB_BUCKETS; b++)
        for (wb_inode_t *ino = p->dom->buckets[b]; ino; ino = ino->hnext) {
            inodes += ino->nwrites > 0;
            writes += ino->nwrites;
            bytes += ino->bytes;
        }
    kb_ctl_printf(arg, "%s: write-behind %s, window %llu bytes; %u writes (%llu bytes) outstanding on %u files\n",
                  xl->name, p->enabled ? "on" : "off", (unsigned long long)p->window, writes,
                  (unsigned long long)bytes, inodes);
    ctl_inodes(xl, arg);
    return 0;
}

#define FOP(NAME, name, A, R, C) [KB_FOP_##NAME] = wb_op,
const kb_xlator_type_t kb_xl_write_behind = {
    .name = "performance/write-behind",
    .ops = {
#include "xlators/fops.def"
    },
    .local_size = sizeof(wb_local_t),
    .init = wb_init,
    .fini = wb_fini,
    .options = wb_options,
    .ctl = wb_ctl,
};
#undef FOP
