/*
 * rand.c — random block I/O at a queue depth, the VM-image pattern: QD
 * requests of BS bytes (4 KiB) at uniformly random aligned offsets of one
 * preallocated file, O_DIRECT, kept in flight for a fixed time through
 * io_uring; IOPS and completion-latency percentiles. A libkembar target has
 * no descriptor for io_uring: there QD threads each keep one blocking call
 * in flight, which is the same queue depth as seen by the volume.
 *
 * Latency is measured per request from the moment its submission entry is
 * prepared to the moment its completion is reaped (what a guest sees).
 * Completions reaped together share one clock read. Up to SAMPLE_CAP
 * latencies are kept (exact percentiles, no histogram error); a run longer
 * than that still counts every operation for IOPS.
 */
#include "bench/bench.h"

#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define SAMPLE_CAP (8u << 20)
#define PREP_CHUNK (1u << 20)

typedef struct slot {
    void *buf;
    uint64_t t0;
} slot_t;

typedef struct rand_ctx {
    const bench_rand_opts_t *o;
    struct io_uring ring;
    slot_t *slots;
    uint64_t rng, nblocks;
    uint64_t *lat;
    size_t nlat, caplat;
    uint64_t ops;
    int fd;
    volatile int abort;          /* workers stop: a sibling could not start */
} rand_ctx_t;

static uint64_t next_rand(uint64_t *x)
{
    *x ^= *x << 13, *x ^= *x >> 7, *x ^= *x << 17;
    return *x;
}

int bench_rand_prepare(bench_target_t *t, const char *name, uint64_t size, char *err, size_t errlen)
{
    bench_file_t *f = NULL;
    char *buf = malloc(PREP_CHUNK);
    if (!buf) {
        snprintf(err, errlen, "%s", strerror(ENOMEM));
        return -ENOMEM;
    }
    uint64_t x = 0x853c49e6748fea9bull;
    for (size_t i = 0; i + 8 <= PREP_CHUNK; i += 8) {
        next_rand(&x);
        memcpy(buf + i, &x, 8);
    }
    int rc = bench_unlink(t, name);
    if (rc == 0)
        rc = bench_open(t, name, O_CREAT | O_EXCL | O_WRONLY, &f);
    for (uint64_t off = 0; rc == 0 && off < size; off += PREP_CHUNK) {
        size_t n = size - off < PREP_CHUNK ? (size_t)(size - off) : PREP_CHUNK;
        ssize_t w = bench_stop ? -EINTR : bench_pwrite(f, buf, n, (off_t)off);
        rc = w < 0 ? (int)w : 0;
    }
    if (rc == 0)
        rc = bench_fsync(f);
    bench_close(f);
    free(buf);
    if (rc < 0)
        snprintf(err, errlen, "creating %s (%llu bytes): %s", name, (unsigned long long)size,
                 strerror(-rc));
    return rc;
}

static void record(rand_ctx_t *c, uint64_t ns)
{
    c->ops++;
    if (c->nlat == c->caplat) {
        if (c->caplat >= SAMPLE_CAP)
            return;
        size_t cap = c->caplat ? c->caplat * 2 : 65536;
        uint64_t *lat = realloc(c->lat, cap * sizeof(*lat));
        if (!lat)
            return;       /* fewer samples; IOPS still counted */
        c->lat = lat;
        c->caplat = cap;
    }
    c->lat[c->nlat++] = ns;
}

static void submit_one(rand_ctx_t *c, unsigned i)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&c->ring);  /* never NULL: QD entries, QD slots */
    off_t off = (off_t)(next_rand(&c->rng) % c->nblocks * c->o->bs);
    if (c->o->write)
        io_uring_prep_write(sqe, c->fd, c->slots[i].buf, c->o->bs, off);
    else
        io_uring_prep_read(sqe, c->fd, c->slots[i].buf, c->o->bs, off);
    io_uring_sqe_set_data64(sqe, i);
    c->slots[i].t0 = bench_now_ns();
}

/* Keep QD in flight until the deadline, then drain. 0 or -errno. */
static int run_loop(rand_ctx_t *c, uint64_t *elapsed)
{
    int qd = c->o->qd, inflight = qd, rc = 0;
    uint64_t start = bench_now_ns(), end = start + (uint64_t)(c->o->secs * 1e9), now = start;
    for (int i = 0; i < qd; i++)
        submit_one(c, (unsigned)i);
    int s = io_uring_submit(&c->ring);
    if (s < 0)
        return s;
    while (inflight > 0) {
        struct io_uring_cqe *cqe;
        int w = io_uring_wait_cqe(&c->ring, &cqe);
        if (w == -EINTR)
            continue;
        if (w < 0)
            return w;
        now = bench_now_ns();
        unsigned head, seen = 0;
        io_uring_for_each_cqe(&c->ring, head, cqe) {
            unsigned i = (unsigned)io_uring_cqe_get_data64(cqe);
            seen++;
            inflight--;
            if (cqe->res != (int)c->o->bs) {
                rc = rc ? rc : cqe->res < 0 ? cqe->res : -EIO;
                continue;
            }
            record(c, now - c->slots[i].t0);
            if (rc == 0 && !bench_stop && now < end) {
                submit_one(c, i);
                inflight++;
            }
        }
        io_uring_cq_advance(&c->ring, seen);
        if (inflight > 0 && io_uring_sq_ready(&c->ring) > 0 && (s = io_uring_submit(&c->ring)) < 0)
            return s;
    }
    *elapsed = now - start;
    return rc ? rc : bench_stop ? -EINTR : 0;
}

/* ---- QD threads, for files without a descriptor (libkembar) ---- */

typedef struct worker {
    rand_ctx_t *c;
    bench_file_t *f;
    pthread_t th;
    unsigned idx;
    uint64_t rng, end, last, ops;
    uint64_t *lat;
    size_t nlat, caplat;
    int rc;
} worker_t;

static void *worker_main(void *arg)
{
    worker_t *w = arg;
    const bench_rand_opts_t *o = w->c->o;
    void *buf = w->c->slots[w->idx].buf;
    for (;;) {
        uint64_t t0 = bench_now_ns();
        if (t0 >= w->end || bench_stop || w->c->abort)
            break;
        off_t off = (off_t)(next_rand(&w->rng) % w->c->nblocks * o->bs);
        ssize_t r = o->write ? bench_pwrite(w->f, buf, o->bs, off) : bench_pread(w->f, buf, o->bs, off);
        w->last = bench_now_ns();
        if (r != (ssize_t)o->bs) {
            w->rc = r < 0 ? (int)r : -EIO;
            break;
        }
        w->ops++;
        if (w->nlat < w->caplat)
            w->lat[w->nlat++] = w->last - t0;
    }
    return NULL;
}

static int run_threads(rand_ctx_t *c, bench_file_t *f, uint64_t *elapsed)
{
    int qd = c->o->qd, started = 0, rc = 0;
    worker_t *w = calloc((size_t)qd, sizeof(*w));
    uint64_t start = bench_now_ns(), last = start;
    if (!w)
        return -ENOMEM;
    for (int i = 0; i < qd; i++) {
        w[i] = (worker_t){ .c = c, .f = f, .idx = (unsigned)i, .end = start + (uint64_t)(c->o->secs * 1e9),
                           .rng = c->rng ^ ((uint64_t)i * 0x9e3779b97f4a7c15ull),
                           .caplat = SAMPLE_CAP / (size_t)qd };
        w[i].lat = malloc(w[i].caplat * sizeof(uint64_t));
        if (!w[i].lat || pthread_create(&w[i].th, NULL, worker_main, &w[i]) != 0) {
            free(w[i].lat);
            rc = -ENOMEM;
            break;
        }
        started++;
    }
    if (rc < 0)
        c->abort = 1;
    for (int i = 0; i < started; i++) {
        pthread_join(w[i].th, NULL);
        rc = rc ? rc : w[i].rc;
        last = w[i].last > last ? w[i].last : last;
        for (size_t k = 0; k < w[i].nlat; k++)
            record(c, w[i].lat[k]);
        c->ops += w[i].ops - w[i].nlat;        /* record() counted the sampled ones */
        free(w[i].lat);
    }
    free(w);
    *elapsed = last - start;
    return rc ? rc : bench_stop ? -EINTR : 0;
}

static int setup(rand_ctx_t *c, bench_target_t *t, const char *name, bench_file_t **f)
{
    int rc = bench_open(t, name, O_RDWR | O_DIRECT, f);
    if (rc < 0)
        return rc;
    c->fd = bench_file_fd(*f);
    c->slots = calloc((size_t)c->o->qd, sizeof(*c->slots));
    if (!c->slots)
        return -ENOMEM;
    for (int i = 0; i < c->o->qd; i++) {
        if (posix_memalign(&c->slots[i].buf, 4096, c->o->bs))
            return -ENOMEM;
        memset(c->slots[i].buf, 0xa5 ^ i, c->o->bs);
    }
    return c->fd < 0 ? 0 : io_uring_queue_init((unsigned)c->o->qd, &c->ring, 0);
}

int bench_rand_run(bench_target_t *t, const char *name, const bench_rand_opts_t *o,
                   bench_rand_result_t *res, char *err, size_t errlen)
{
    rand_ctx_t c = { .o = o, .rng = 0x2545f4914f6cdd1dull ^ o->seed, .fd = -1 };
    bench_file_t *f = NULL;
    uint64_t elapsed = 0;
    const char *stage = "open (O_DIRECT)";
    memset(res, 0, sizeof(*res));
    c.nblocks = o->size / o->bs;
    int rc = c.nblocks ? setup(&c, t, name, &f) : -EINVAL;
    if (rc == 0 && c.fd < 0) {
        stage = o->write ? "random write" : "random read";
        rc = run_threads(&c, f, &elapsed);
    } else if (rc == 0) {
        stage = o->write ? "random write" : "random read";
        rc = run_loop(&c, &elapsed);
        io_uring_queue_exit(&c.ring);
    } else if (f) {
        stage = "io_uring setup";
    }
    if (rc == 0) {
        bench_sort_u64(c.lat, c.nlat);
        res->ops = c.ops;
        res->ns = elapsed;
        res->p50_ns = bench_percentile(c.lat, c.nlat, 50);
        res->p99_ns = bench_percentile(c.lat, c.nlat, 99);
        res->p999_ns = bench_percentile(c.lat, c.nlat, 99.9);
    } else {
        snprintf(err, errlen, "%s %s: %s", stage, name, strerror(-rc));
    }
    for (int i = 0; c.slots && i < o->qd; i++)
        free(c.slots[i].buf);
    free(c.slots);
    free(c.lat);
    bench_close(f);
    return rc;
}
