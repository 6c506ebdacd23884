/*
 * mail.c — the mail-server-like small-file workload of issue 16, after
 * PostMark (J. Katcher, NetApp TR3022, 1997): many small files, created,
 * read, appended to and deleted at random, which is what a mail spool, a
 * container's root file system or a build tree does to a volume: metadata
 * round trips (LOOKUP, CREATE, UNLINK, GETATTR) more than bytes.
 *
 * One pass, three timed phases:
 *   creation     FILES files of MIN..MAX bytes (uniform), spread round-robin
 *                over DIRS directories                    -> creates/s
 *   transactions TX transactions; each first creates a file or deletes a
 *                random one (even odds), then reads a random file whole or
 *                appends MIN..MAX bytes to one (even odds) -> transactions/s
 *   deletion     every file left is deleted                -> deletes/s
 * A create is open(O_CREAT|O_EXCL) + one write of the whole file (+ fsync
 * with o->fsync) + close, and its latency is that sum; creates of both the
 * creation and the transaction phase make the percentiles. Like PostMark,
 * nothing is fsync'ed by default: the figures are the file system's own
 * metadata and small-write path, not the disk's flush latency.
 *
 * Promises: the same seed gives every target the same operations on the same
 * names with the same sizes; everything is created under DIR (made here) and
 * removed again, also after an error or Ctrl-C; an error stops the pass with
 * the operation and name that failed.
 */
#include "bench/bench.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>

#define MAIL_NAME 96
#define MAIL_READ_BUF (64u << 10)

typedef struct mail_ctx {
    bench_target_t *t;
    const bench_mail_opts_t *o;
    const char *dir;
    uint64_t rng;
    uint32_t *live;            /* ids of the files that exist now, in no order; name:
                                  DIR/d<id % dirs>/m<id>; room for files + tx */
    size_t nlive;
    uint32_t next_id;
    char *wbuf, *rbuf;         /* o->max bytes of content; a read buffer */
    uint64_t *clat;            /* create latencies; room for files + tx */
    size_t nclat;
    uint64_t *txlat;           /* transaction latencies; room for tx */
    bool made_dir;             /* DIR is ours: it did not exist */
    unsigned made_subdirs;     /* d00 .. d<made_subdirs - 1> are ours */
    char *err;
    size_t errlen;
} mail_ctx_t;

static uint64_t mail_rand(mail_ctx_t *c)
{
    c->rng ^= c->rng << 13, c->rng ^= c->rng >> 7, c->rng ^= c->rng << 17;
    return c->rng;
}

static uint32_t mail_size(mail_ctx_t *c)
{
    return c->o->min + (uint32_t)(mail_rand(c) % ((uint64_t)c->o->max - c->o->min + 1));
}

static void mail_name(const mail_ctx_t *c, uint32_t id, char *buf)
{
    snprintf(buf, MAIL_NAME, "%s/d%02u/m%07u", c->dir, id % c->o->dirs, id);
}

static void subdir_name(const mail_ctx_t *c, unsigned d, char *buf)
{
    snprintf(buf, MAIL_NAME, "%s/d%02u", c->dir, d);
}

static int fail(mail_ctx_t *c, const char *what, const char *name, int rc)
{
    snprintf(c->err, c->errlen, "%s %s: %s", what, name, strerror(-rc));
    return rc;
}

static int create_one(mail_ctx_t *c)
{
    char name[MAIL_NAME];
    bench_file_t *f;
    uint32_t id = c->next_id++, size = mail_size(c);
    mail_name(c, id, name);
    uint64_t t0 = bench_now_ns();
    int rc = bench_open(c->t, name, O_CREAT | O_EXCL | O_WRONLY, &f);
    if (rc < 0)
        return fail(c, "create", name, rc);
    ssize_t w = bench_pwrite(f, c->wbuf, size, 0);
    rc = w < 0 ? (int)w : 0;
    if (rc == 0 && c->o->fsync)
        rc = bench_fsync(f);
    int cr = bench_close(f);
    rc = rc ? rc : cr;
    if (rc < 0) {
        bench_unlink(c->t, name);      /* not in the list: cleanup() would miss it */
        return fail(c, "write", name, rc);
    }
    c->clat[c->nclat++] = bench_now_ns() - t0;
    c->live[c->nlive++] = id;
    return 0;
}

/* Delete live file I (swap-remove from the list). */
static int delete_at(mail_ctx_t *c, size_t i)
{
    char name[MAIL_NAME];
    mail_name(c, c->live[i], name);
    int rc = bench_unlink(c->t, name);
    if (rc < 0)
        return fail(c, "unlink", name, rc);
    c->live[i] = c->live[--c->nlive];
    return 0;
}

static int read_one(mail_ctx_t *c, size_t i)
{
    char name[MAIL_NAME];
    bench_file_t *f;
    mail_name(c, c->live[i], name);
    int rc = bench_open(c->t, name, O_RDONLY, &f);
    if (rc < 0)
        return fail(c, "open", name, rc);
    for (off_t off = 0;;) {
        ssize_t r = bench_pread(f, c->rbuf, MAIL_READ_BUF, off);
        if (r < 0) {
            rc = (int)r;
            break;
        }
        if (r < (ssize_t)MAIL_READ_BUF)
            break;
        off += r;
    }
    int cr = bench_close(f);
    rc = rc ? rc : cr;
    return rc < 0 ? fail(c, "read", name, rc) : 0;
}

static int append_one(mail_ctx_t *c, size_t i)
{
    char name[MAIL_NAME];
    bench_file_t *f;
    uint32_t size = mail_size(c);
    mail_name(c, c->live[i], name);
    int rc = bench_open(c->t, name, O_WRONLY | O_APPEND, &f);
    if (rc < 0)
        return fail(c, "open", name, rc);
    ssize_t w = bench_append(f, c->wbuf, size);
    rc = w < 0 ? (int)w : 0;
    if (rc == 0 && c->o->fsync)
        rc = bench_fsync(f);
    int cr = bench_close(f);
    rc = rc ? rc : cr;
    return rc < 0 ? fail(c, "append", name, rc) : 0;
}

/* One transaction. With no file left, a delete becomes a create and a
 * read/append is skipped (PostMark does the same). */
static int transaction(mail_ctx_t *c, bench_mail_result_t *res)
{
    int rc;
    if (mail_rand(c) & 1 || c->nlive == 0) {
        rc = create_one(c);
        res->tx_create++;
    } else {
        rc = delete_at(c, (size_t)(mail_rand(c) % c->nlive));
        res->tx_delete++;
    }
    if (rc < 0 || c->nlive == 0)
        return rc;
    size_t i = (size_t)(mail_rand(c) % c->nlive);
    if (mail_rand(c) & 1) {
        res->tx_read++;
        return read_one(c, i);
    }
    res->tx_append++;
    return append_one(c, i);
}

/* Remove what this pass made and is left (after an error too): its files,
 * its subdirectories, DIR. Nothing it did not make. */
static void cleanup(mail_ctx_t *c)
{
    char name[MAIL_NAME];
    for (size_t i = 0; i < c->nlive; i++) {
        mail_name(c, c->live[i], name);
        bench_unlink(c->t, name);
    }
    c->nlive = 0;
    for (unsigned d = 0; d < c->made_subdirs; d++) {
        subdir_name(c, d, name);
        bench_rmdir(c->t, name);
    }
    c->made_subdirs = 0;
    if (c->made_dir)
        bench_rmdir(c->t, c->dir);
    c->made_dir = false;
}

static int run_phases(mail_ctx_t *c, bench_mail_result_t *res)
{
    char name[MAIL_NAME];
    int rc = bench_mkdir(c->t, c->dir);
    if (rc < 0)
        return fail(c, "mkdir", c->dir, rc);
    c->made_dir = true;
    for (unsigned d = 0; d < c->o->dirs; d++) {
        subdir_name(c, d, name);
        if ((rc = bench_mkdir(c->t, name)) < 0)
            return fail(c, "mkdir", name, rc);
        c->made_subdirs++;
    }

    uint64_t t0 = bench_now_ns();
    for (unsigned i = 0; i < c->o->files && rc == 0; i++)
        rc = bench_stop ? -EINTR : create_one(c);
    res->create_ns = bench_now_ns() - t0;
    res->created = c->o->files;
    if (rc < 0)
        return rc;

    size_t ntx = 0;
    t0 = bench_now_ns();
    for (unsigned i = 0; i < c->o->tx && rc == 0; i++) {
        uint64_t s = bench_now_ns();
        rc = bench_stop ? -EINTR : transaction(c, res);
        if (rc == 0)
            c->txlat[ntx++] = bench_now_ns() - s;
    }
    res->tx_ns = bench_now_ns() - t0;
    bench_sort_u64(c->txlat, ntx);
    res->tx_p99_ns = bench_percentile(c->txlat, ntx, 99);
    if (rc < 0)
        return rc;

    res->deleted = (unsigned)c->nlive;
    t0 = bench_now_ns();
    while (c->nlive > 0 && rc == 0)
        rc = bench_stop ? -EINTR : delete_at(c, c->nlive - 1);
    res->delete_ns = bench_now_ns() - t0;
    return rc;
}

int bench_mail_run(bench_target_t *t, const char *dir, const bench_mail_opts_t *o,
                   bench_mail_result_t *res, char *err, size_t errlen)
{
    mail_ctx_t c = {
        .t = t, .o = o, .dir = dir, .err = err, .errlen = errlen,
        .rng = 0x9e3779b97f4a7c15ull ^ ((uint64_t)o->seed << 17 | 1),
    };
    memset(res, 0, sizeof(*res));
    if (o->files == 0 || o->dirs == 0 || o->min == 0 || o->min > o->max) {
        snprintf(err, errlen, "mail: bad parameters");
        return -EINVAL;
    }
    size_t most = (size_t)o->files + o->tx;   /* files alive, creates: at most one per tx more */
    c.wbuf = malloc(o->max);
    c.rbuf = malloc(MAIL_READ_BUF);
    c.live = calloc(most, sizeof(*c.live));
    c.clat = calloc(most, sizeof(*c.clat));
    c.txlat = calloc(o->tx ? o->tx : 1, sizeof(*c.txlat));
    int rc = -ENOMEM;
    if (c.wbuf && c.rbuf && c.live && c.clat && c.txlat) {
        for (uint32_t i = 0; i < o->max; i++)
            c.wbuf[i] = (char)('a' + i % 26);        /* text, like mail */
        rc = run_phases(&c, res);
    } else {
        snprintf(err, errlen, "mail: %s", strerror(ENOMEM));
    }
    if (rc == 0) {
        bench_sort_u64(c.clat, c.nclat);
        res->create_p50_ns = bench_percentile(c.clat, c.nclat, 50);
        res->create_p99_ns = bench_percentile(c.clat, c.nclat, 99);
    } else if (rc == -EINTR) {
        snprintf(err, errlen, "interrupted");
    }
    cleanup(&c);
    free(c.live);
    free(c.clat);
    free(c.txlat);
    free(c.wbuf);
    free(c.rbuf);
    return rc;
}
