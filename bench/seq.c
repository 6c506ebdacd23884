/*
 * seq.c — iozone's four sequential tests on one file: write (a new file),
 * re-write (the same file again, blocks already allocated), read (cold when
 * caches are dropped in between), re-read (warm).
 *
 * Timing follows iozone: the clock runs from the first record to the last;
 * opening is outside it; with -e the fsync and the close are inside it.
 *
 * Every record carries a 16-byte stamp (pass, offset) so both reads check
 * that they got the re-written data at the right place: a benchmark that
 * returns wrong bytes fast must not win. The stamp is cheap: 16 bytes of a
 * record of typically 128 KiB.
 */
#include "bench/bench.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char *const bench_seq_names[BENCH_SEQ_NTESTS] = { "write", "rewrite", "read", "reread" };

typedef struct stamp {
    uint64_t tag;       /* seed << 8 | pass */
    uint64_t off;
} stamp_t;

typedef struct pass_ctx {
    bench_target_t *t;
    const char *name;
    const bench_seq_opts_t *o;
    const bench_seq_hooks_t *h;
    char *buf;
    char *err;
    size_t errlen;
} pass_ctx_t;

static void fill_random(char *buf, size_t n, uint64_t seed)
{
    uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
    for (size_t i = 0; i + 8 <= n; i += 8) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        memcpy(buf + i, &x, 8);
    }
}

static int fail(pass_ctx_t *c, int rc, const char *what, uint64_t off)
{
    snprintf(c->err, c->errlen, "%s %s at offset %llu: %s", what,
             c->name, (unsigned long long)off, strerror(-rc));
    return rc;
}

static void timing_start(pass_ctx_t *c, int test, uint64_t *t0)
{
    if (c->h && c->h->before)
        c->h->before(c->h->cookie, test);
    *t0 = bench_now_ns();
}

static uint64_t timing_stop(pass_ctx_t *c, int test, uint64_t t0)
{
    uint64_t ns = bench_now_ns() - t0;
    if (c->h && c->h->after)
        c->h->after(c->h->cookie, test, ns);
    return ns;
}

static int do_write(pass_ctx_t *c, int test, uint64_t *ns)
{
    const bench_seq_opts_t *o = c->o;
    bench_file_t *f;
    int flags = O_WRONLY | (o->direct ? O_DIRECT : 0);
    flags |= test == BENCH_WRITE ? O_CREAT | O_EXCL : 0;
    int rc = bench_open(c->t, c->name, flags, &f);
    if (rc < 0)
        return fail(c, rc, "open", 0);
    stamp_t st = { .tag = (uint64_t)o->seed << 8 | (uint64_t)(test + 1) };
    uint64_t t0;
    timing_start(c, test, &t0);
    for (uint64_t off = 0; off < o->size && rc == 0; off += o->rec) {
        if (bench_stop) {
            rc = -EINTR;
            break;
        }
        st.off = off;
        memcpy(c->buf, &st, sizeof(st));
        ssize_t w = bench_pwrite(f, c->buf, o->rec, (off_t)off);
        if (w < 0)
            rc = fail(c, (int)w, "write", off);
    }
    if (rc == 0 && o->fsync_in_timing) {
        rc = bench_fsync(f);
        if (rc < 0)
            fail(c, rc, "fsync", 0);
        int cl = bench_close(f);
        f = NULL;
        if (rc == 0 && cl < 0)
            rc = fail(c, cl, "close", 0);
    }
    *ns = timing_stop(c, test, t0);
    int cl = bench_close(f);
    if (rc == 0 && cl < 0)
        rc = fail(c, cl, "close", 0);
    return rc;
}

static int check_stamp(pass_ctx_t *c, uint64_t off)
{
    stamp_t want = { .tag = (uint64_t)c->o->seed << 8 | (uint64_t)(BENCH_REWRITE + 1), .off = off };
    if (memcmp(c->buf, &want, sizeof(want)) == 0)
        return 0;
    snprintf(c->err, c->errlen, "read %s: wrong data at offset %llu (not what was written)",
             c->name, (unsigned long long)off);
    return -EIO;
}

static int do_read(pass_ctx_t *c, int test, uint64_t *ns)
{
    const bench_seq_opts_t *o = c->o;
    bench_file_t *f;
    int rc = bench_open(c->t, c->name, O_RDONLY | (o->direct ? O_DIRECT : 0), &f);
    if (rc < 0)
        return fail(c, rc, "open", 0);
    uint64_t t0;
    timing_start(c, test, &t0);
    for (uint64_t off = 0; off < o->size && rc == 0; off += o->rec) {
        if (bench_stop) {
            rc = -EINTR;
            break;
        }
        ssize_t r = bench_pread(f, c->buf, o->rec, (off_t)off);
        if (r < 0) {
            rc = fail(c, (int)r, "read", off);
        } else if ((uint64_t)r != o->rec) {
            snprintf(c->err, c->errlen, "read %s: file ends at %llu, expected %llu bytes",
                     c->name, (unsigned long long)(off + (uint64_t)r),
                     (unsigned long long)o->size);
            rc = -EIO;
        } else {
            rc = check_stamp(c, off);
        }
    }
    if (rc == 0 && o->fsync_in_timing) {
        int cl = bench_close(f);
        f = NULL;
        if (cl < 0)
            rc = fail(c, cl, "close", 0);
    }
    *ns = timing_stop(c, test, t0);
    bench_close(f);
    return rc;
}

int bench_seq_pass(bench_target_t *t, const char *name, const bench_seq_opts_t *o,
                   const bench_seq_hooks_t *h, uint64_t ns[BENCH_SEQ_NTESTS],
                   char *err, size_t errlen)
{
    pass_ctx_t c = { .t = t, .name = name, .o = o, .h = h, .err = err, .errlen = errlen };
    void *buf;
    if (o->rec < sizeof(stamp_t) || o->size % o->rec) {
        snprintf(err, errlen, "record %llu does not fit file size %llu",
                 (unsigned long long)o->rec, (unsigned long long)o->size);
        return -EINVAL;
    }
    if (posix_memalign(&buf, 4096, o->rec)) {
        snprintf(err, errlen, "%s", strerror(ENOMEM));
        return -ENOMEM;
    }
    c.buf = buf;
    fill_random(c.buf, o->rec, o->seed);
    int rc = bench_unlink(t, name);
    if (rc < 0)
        fail(&c, rc, "unlink", 0);
    if (rc == 0)
        rc = do_write(&c, BENCH_WRITE, &ns[BENCH_WRITE]);
    if (rc == 0)
        rc = do_write(&c, BENCH_REWRITE, &ns[BENCH_REWRITE]);
    if (rc == 0 && o->drop_caches) {
        rc = bench_drop_caches();
        if (rc < 0)
            snprintf(err, errlen, "dropping caches: %s", strerror(-rc));
    }
    if (rc == 0)
        rc = do_read(&c, BENCH_READ, &ns[BENCH_READ]);
    if (rc == 0)
        rc = do_read(&c, BENCH_REREAD, &ns[BENCH_REREAD]);
    int u = bench_unlink(t, name);
    if (rc == 0 && u < 0)
        rc = fail(&c, u, "unlink", 0);
    free(buf);
    return rc;
}
