/*
 * write_behind_test.c — performance/write-behind over "test/mock" (held
 * replies, injected errors) and over "test/store", a child defined here that
 * keeps one file's bytes and applies a WRITE only when the test completes it,
 * in whatever order the test picks: acknowledgement before the child
 * answers, the window, submission order of overlapping writes, reads and
 * every other op waiting for earlier writes, errors reported by write /
 * fsync / flush, synchronous writes, LOOKUP asked again, READDIRPLUS without
 * stale attributes, two graphs on one loop sharing one order, teardown, and
 * the final content after thousands of writes completed out of order.
 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <dirent.h>
#include <stdio.h>
#include <sys/stat.h>
#include "tests/unit/mock_child.h"
#include "lib/log.h"

static const kb_xlator_type_t *wb_type(void)
{
    const kb_xlator_type_t *t = kb_xlator_type_find("performance/write-behind");
    cr_assert_not_null(t, "performance/write-behind is registered");
    return t;
}

static const kb_cred_t cred = { .uid = 0, .gid = 0, .pid = 1 };

static kb_gfid_t gf(uint8_t k)
{
    kb_gfid_t x = { { 0 } };
    x.b[0] = 0x57;
    x.b[15] = k;
    return x;
}

/* Wind OP on G's top; the result lands in *X (which must outlive the call). */
static void go(kb_graph_t *g, kb_op_t op, const kb_args_t *a, mock_res_t *x)
{
    memset(x, 0, sizeof(*x));
    kb_wind(g->top, op, a, &cred, 7, mock_res_cbk, x);
}

static uint64_t open_fd(kb_graph_t *g, const kb_gfid_t *f, uint32_t flags)
{
    kb_args_t a = { .gfid = *f, .flags = flags };
    mock_res_t x;
    go(g, KB_FOP_OPEN, &a, &x);
    cr_assert_eq(x.n, 1);
    cr_assert_eq(x.r.status, 0);
    uint64_t fd = x.r.fd;
    kb_reply_clear(&x.r);
    return fd;
}

/* A WRITE's args (payload of LEN bytes of BYTE); kb_args_clear drops it. */
static kb_args_t wargs(const kb_gfid_t *f, uint64_t fd, uint64_t off, size_t len, char byte)
{
    kb_args_t a = { .gfid = *f, .fd = fd, .off = off };
    a.data = kb_buf_new(len);
    cr_assert_not_null(a.data);
    memset(a.data->data, byte, len);
    a.data->len = len;
    return a;
}

/* A WRITE in flight: its args must live until it completes. */
typedef struct wr {
    kb_args_t a;
    mock_res_t x;
} wr_t;

static void wr_go(kb_graph_t *g, wr_t *w, const kb_gfid_t *f, uint64_t fd, uint64_t off, size_t len,
                  char byte)
{
    w->a = wargs(f, fd, off, len, byte);
    go(g, KB_FOP_WRITE, &w->a, &w->x);
}

static void wr_clear(wr_t *w)
{
    kb_args_clear(&w->a);
    kb_reply_clear(&w->x.r);
}

/* ---------------- over test/mock ---------------- */

static kb_graph_t *g;
static mock_child_t *m;

/* Aggregation off unless asked for: most tests count the writes the child gets. */
static kb_graph_t *wb_graph(const char *const *opts)
{
    const char *o[8] = { "aggregate-size", "0" };   /* write-behind itself: on by default */
    for (int i = 2; opts && opts[i - 2] && i < 6; i += 2) {
        o[i] = opts[i - 2];
        o[i + 1] = opts[i - 1];
    }
    kb_graph_t *gr = mock_graph_new(wb_type(), 1, o, NULL);
    cr_assert_not_null(gr);
    mock_up(mock_of(gr->all[0]));
    return gr;
}

static void start_opts(const char *const *opts)
{
    kb_log_level = KB_LOG_ERROR;
    g = wb_graph(opts);
    m = mock_of(g->all[0]);
}

static void start(void) { start_opts(NULL); }

/* Start with OPTS, open file 1 (in *F) read-write and hold every WRITE at
 * the mock child; the fd. */
static uint64_t start_held(const char *const *opts, kb_gfid_t *f)
{
    start_opts(opts);
    *f = gf(1);
    uint64_t fd = open_fd(g, f, O_RDWR);
    m->hold[KB_FOP_WRITE] = true;
    return fd;
}

static void stop(void)
{
    kb_graph_fini(g);
    g = NULL;
}

static const kb_args_t *nth_write(size_t k)
{
    size_t seen = 0;
    for (size_t i = 0; i < m->nrec; i++)
        if (m->rec[i].op == KB_FOP_WRITE && seen++ == k)
            return &m->rec[i].args;
    return NULL;
}

/* (start: no write-behind option, i.e. the default: on) */
Test(write_behind, acknowledged_before_the_child_answers, .init = start, .fini = stop)
{
    kb_gfid_t f = gf(1);
    uint64_t fd = open_fd(g, &f, O_RDWR);
    m->hold[KB_FOP_WRITE] = true;
    wr_t w;
    wr_go(g, &w, &f, fd, 0, 128 << 10, 'x');
    cr_assert_eq(w.x.n, 1, "a buffered write is acknowledged at once");
    cr_assert_eq(w.x.r.status, 128 << 10);
    cr_assert_eq(mock_nheld(m), 1, "and is on its way to the child");
    cr_assert_eq(nth_write(0)->off, 0);
    cr_assert_eq(nth_write(0)->data->len, 128u << 10);
    mock_complete(m, 0, 0);
    cr_assert_eq(w.x.n, 1, "completed exactly once");
    wr_clear(&w);
}

Test(write_behind, off_is_a_pass_through)
{
    const char *opts[] = { "write-behind", "off", NULL };
    kb_gfid_t f;
    uint64_t fd = start_held(opts, &f);
    wr_t w;
    wr_go(g, &w, &f, fd, 0, 4096, 'x');
    cr_assert_eq(w.x.n, 0, "off: the write waits for the child");
    mock_complete(m, 0, 0);
    cr_assert_eq(w.x.n, 1);
    cr_assert_eq(w.x.r.status, 4096);
    wr_clear(&w);
    stop();
}

Test(write_behind, window_bounds_what_is_acknowledged)
{
    const char *opts[] = { "window-size", "256KiB", NULL };
    kb_gfid_t f;
    uint64_t fd = start_held(opts, &f);
    wr_t w[4];
    for (int i = 0; i < 4; i++)
        wr_go(g, &w[i], &f, fd, (uint64_t)i << 17, 128 << 10, 'a' + i);
    cr_assert_eq(w[0].x.n + w[1].x.n, 2, "two fit the window");
    cr_assert_eq(w[2].x.n + w[3].x.n, 0, "the others wait, unacknowledged, not failed");
    cr_assert_eq(mock_nheld(m), 2);
    mock_complete(m, 1, 0);
    cr_assert_eq(w[2].x.n, 1, "a completion makes room for the next");
    cr_assert_eq(w[2].x.r.status, 128 << 10);
    cr_assert_eq(w[3].x.n, 0);
    cr_assert_eq(mock_nheld(m), 2);
    cr_assert_eq(nth_write(2)->off, 2u << 17);
    mock_complete_all(m, false);
    cr_assert_eq(w[3].x.n, 1);
    mock_complete_all(m, false);
    cr_assert_eq(mock_count(m, KB_FOP_WRITE), 4);
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(w[i].x.n, 1);
        wr_clear(&w[i]);
    }
    stop();
}

Test(write_behind, overlapping_writes_reach_the_child_in_order, .init = start, .fini = stop)
{
    kb_gfid_t f = gf(1);
    uint64_t fd = open_fd(g, &f, O_RDWR);
    m->hold[KB_FOP_WRITE] = true;
    wr_t w1, w2, w3;
    wr_go(g, &w1, &f, fd, 0, 64 << 10, '1');
    wr_go(g, &w2, &f, fd, 32 << 10, 64 << 10, '2');   /* overlaps w1 */
    wr_go(g, &w3, &f, fd, 1 << 20, 64 << 10, '3');    /* overlaps nothing */
    cr_assert_eq(w1.x.n + w2.x.n + w3.x.n, 3, "all acknowledged");
    cr_assert_eq(mock_nheld(m), 2, "the overlapping one is held back");
    cr_assert_eq(nth_write(0)->data->data[0], '1');
    cr_assert_eq(nth_write(1)->data->data[0], '3');
    mock_complete(m, 1, 0);                           /* w3 first: changes nothing */
    cr_assert_eq(mock_count(m, KB_FOP_WRITE), 2);
    mock_complete(m, 0, 0);                           /* w1: now w2 */
    cr_assert_eq(mock_count(m, KB_FOP_WRITE), 3);
    cr_assert_eq(nth_write(2)->off, 32u << 10);
    cr_assert_eq(nth_write(2)->data->data[0], '2');
    mock_complete_all(m, false);
    wr_clear(&w1);
    wr_clear(&w2);
    wr_clear(&w3);
}

Test(write_behind, appending_writes_go_one_at_a_time, .init = start, .fini = stop)
{
    kb_gfid_t f = gf(1);
    uint64_t fd = open_fd(g, &f, O_WRONLY | O_APPEND);
    m->hold[KB_FOP_WRITE] = true;
    wr_t w1, w2;
    wr_go(g, &w1, &f, fd, 0, 100, 'a');
    wr_go(g, &w2, &f, fd, 100, 100, 'b');             /* the brick appends wherever EOF is */
    cr_assert_eq(w1.x.n + w2.x.n, 2);
    cr_assert_eq(mock_nheld(m), 1, "O_APPEND: one in flight, in order");
    mock_complete(m, 0, 0);
    cr_assert_eq(mock_nheld(m), 1);
    cr_assert_eq(nth_write(1)->data->data[0], 'b');
    mock_complete_all(m, false);
    wr_clear(&w1);
    wr_clear(&w2);
}

Test(write_behind, read_and_other_ops_wait_for_earlier_writes, .init = start, .fini = stop)
{
    kb_gfid_t f = gf(1), other = gf(2);
    uint64_t fd = open_fd(g, &f, O_RDWR);
    m->hold[KB_FOP_WRITE] = true;
    wr_t w;
    wr_go(g, &w, &f, fd, 0, 4096, 'x');
    kb_args_t rd = { .gfid = f, .fd = fd, .off = 0, .size = 4096 };
    kb_args_t st = { .gfid = f };
    kb_args_t tr = { .gfid = f, .off = 10 };
    kb_args_t lk = { .gfid = f, .fd = fd, .lock = { .type = KB_LK_UNLCK }, .flags = KB_LK_SETLK };
    kb_args_t ord = { .gfid = other, .size = 10 };
    mock_res_t xr, xs, xt, xl, xo;
    go(g, KB_FOP_READ, &rd, &xr);
    go(g, KB_FOP_STAT, &st, &xs);
    go(g, KB_FOP_TRUNCATE, &tr, &xt);
    go(g, KB_FOP_LK, &lk, &xl);
    go(g, KB_FOP_READ, &ord, &xo);
    cr_assert_eq(xo.n, 1, "another inode is not held up");
    cr_assert_eq(xr.n + xs.n + xt.n + xl.n, 0, "ops on the inode wait for its writes");
    cr_assert_eq(mock_count(m, KB_FOP_READ), 1);
    cr_assert_eq(mock_count(m, KB_FOP_STAT) + mock_count(m, KB_FOP_TRUNCATE) + mock_count(m, KB_FOP_LK), 0);
    mock_complete(m, 0, 0);
    cr_assert_eq(xr.n + xs.n + xt.n + xl.n, 4, "all go once the write completed");
    cr_assert_eq(mock_count(m, KB_FOP_READ), 2);
    cr_assert_eq(xr.r.status, 4096);
    /* and in their order: read, stat, truncate, lk */
    kb_op_t seen[4];
    int k = 0;
    for (size_t i = 0; i < m->nrec && k < 4; i++)
        if (m->rec[i].op != KB_FOP_WRITE && m->rec[i].op != KB_FOP_OPEN && kb_gfid_eq(&m->rec[i].args.gfid, &f))
            seen[k++] = m->rec[i].op;
    cr_assert_eq(k, 4);
    cr_assert(seen[0] == KB_FOP_READ && seen[1] == KB_FOP_STAT && seen[2] == KB_FOP_TRUNCATE && seen[3] == KB_FOP_LK);
    kb_reply_clear(&xr.r);
    kb_reply_clear(&xs.r);
    kb_reply_clear(&xt.r);
    kb_reply_clear(&xl.r);
    kb_reply_clear(&xo.r);
    wr_clear(&w);
}

Test(write_behind, a_write_after_a_waiting_op_waits_behind_it, .init = start, .fini = stop)
{
    kb_gfid_t f = gf(1);
    uint64_t fd = open_fd(g, &f, O_RDWR);
    m->hold[KB_FOP_WRITE] = true;
    m->hold[KB_FOP_TRUNCATE] = true;
    wr_t w1, w2;
    wr_go(g, &w1, &f, fd, 0, 4096, '1');
    kb_args_t tr = { .gfid = f, .off = 0 };
    mock_res_t xt;
    go(g, KB_FOP_TRUNCATE, &tr, &xt);
    wr_go(g, &w2, &f, fd, 8192, 4096, '2');
    cr_assert_eq(w2.x.n, 0, "nothing overtakes a call queued before it");
    mock_complete(m, 0, 0);                           /* w1: truncate goes, then w2 */
    cr_assert_eq(mock_count(m, KB_FOP_TRUNCATE), 1);
    cr_assert_eq(w2.x.n, 1);
    cr_assert_eq(mock_count(m, KB_FOP_WRITE), 2);
    mock_complete_all(m, false);
    cr_assert_eq(xt.n, 1);
    kb_reply_clear(&xt.r);
    wr_clear(&w1);
    wr_clear(&w2);
}

Test(write_behind, fsync_and_flush_wait_and_report_a_failed_write, .init = start, .fini = stop)
{
    kb_gfid_t f = gf(1);
    uint64_t fd = open_fd(g, &f, O_RDWR), fd2 = open_fd(g, &f, O_RDONLY);
    m->hold[KB_FOP_WRITE] = true;
    wr_t w1;
    wr_go(g, &w1, &f, fd, 0, 4096, 'x');
    kb_args_t fs = { .gfid = f, .fd = fd };
    mock_res_t x;
    go(g, KB_FOP_FSYNC, &fs, &x);
    cr_assert_eq(x.n, 0, "fsync waits for the write");
    cr_assert_eq(mock_count(m, KB_FOP_FSYNC), 0);
    mock_complete(m, 0, -ENOSPC);
    cr_assert_eq(x.n, 1);
    cr_assert_eq(mock_count(m, KB_FOP_FSYNC), 1, "and still runs");
    cr_assert_eq(x.r.status, -ENOSPC, "reporting the failed write");
    kb_reply_clear(&x.r);
    go(g, KB_FOP_FSYNC, &fs, &x);
    cr_assert_eq(x.r.status, 0, "once");
    kb_reply_clear(&x.r);
    /* the other fd of the inode sees it at its own flush (errseq) */
    kb_args_t fl2 = { .gfid = f, .fd = fd2 };
    go(g, KB_FOP_FLUSH, &fl2, &x);
    cr_assert_eq(x.r.status, -ENOSPC);
    kb_reply_clear(&x.r);
    /* the next behind write of the writer's fd fails with it, unsent, once */
    m->hold[KB_FOP_WRITE] = false;
    wr_t w2, w3;
    wr_go(g, &w2, &f, fd, 4096, 4096, 'y');
    cr_assert_eq(w2.x.n, 1);
    cr_assert_eq(w2.x.r.status, -ENOSPC);
    cr_assert_eq(mock_count(m, KB_FOP_WRITE), 1);
    wr_go(g, &w3, &f, fd, 4096, 4096, 'y');
    cr_assert_eq(w3.x.r.status, 4096);
    /* a new failure: reported by FLUSH (close) */
    mock_fail(m, KB_FOP_WRITE, -EIO, 1);
    wr_t w4;
    wr_go(g, &w4, &f, fd, 0, 4096, 'z');
    cr_assert_eq(w4.x.r.status, 4096, "acknowledged before it failed");
    kb_args_t fl = { .gfid = f, .fd = fd };
    go(g, KB_FOP_FLUSH, &fl, &x);
    cr_assert_eq(x.r.status, -EIO);
    cr_assert_eq(mock_count(m, KB_FOP_FLUSH), 2, "the flush itself ran");
    kb_reply_clear(&x.r);
    /* an fd opened after the error was reported does not inherit it */
    uint64_t fd3 = open_fd(g, &f, O_RDWR);
    kb_args_t fs3 = { .gfid = f, .fd = fd3 };
    go(g, KB_FOP_FSYNC, &fs3, &x);
    cr_assert_eq(x.r.status, 0);
    kb_reply_clear(&x.r);
    wr_clear(&w1);
    wr_clear(&w2);
    wr_clear(&w3);
    wr_clear(&w4);
}

/* A lock holder whose lock was lost (replicate fails its fd with EBADFD)
 * must not be told a later write succeeded: after any failed write the fd
 * writes through until one succeeds, and after EBADFD it fails at once. */
Test(write_behind, a_failed_fd_is_not_written_behind, .init = start, .fini = stop)
{
    kb_gfid_t f = gf(1);
    uint64_t fd = open_fd(g, &f, O_RDWR);
    m->hold[KB_FOP_WRITE] = true;
    wr_t w1, w2, w3, w4;
    wr_go(g, &w1, &f, fd, 0, 4096, 'a');
    cr_assert_eq(w1.x.r.status, 4096, "behind");
    mock_complete(m, 0, -ENOTCONN);             /* the bricks were away */
    wr_go(g, &w2, &f, fd, 4096, 4096, 'b');
    cr_assert_eq(w2.x.r.status, -ENOTCONN, "the failure, once (errseq)");
    wr_go(g, &w3, &f, fd, 4096, 4096, 'b');
    cr_assert_eq(w3.x.n, 0, "then through: not acknowledged before the child answers");
    mock_complete(m, 0, -EBADFD);               /* back, and the lock was lost */
    cr_assert_eq(w3.x.r.status, -EBADFD);
    int sent = mock_count(m, KB_FOP_WRITE);
    for (int i = 0; i < 3; i++) {
        wr_t w;
        wr_go(g, &w, &f, fd, 0, 4096, 'c');
        cr_assert_eq(w.x.n, 1);
        cr_assert_eq(w.x.r.status, -EBADFD, "every later write fails at once");
        wr_clear(&w);
    }
    cr_assert_eq(mock_count(m, KB_FOP_WRITE), sent, "and none is sent");
    /* a write through that succeeds makes an fd trusted again (another file) */
    f = gf(2);
    uint64_t fd2 = open_fd(g, &f, O_RDWR);
    m->hold[KB_FOP_WRITE] = false;
    mock_fail(m, KB_FOP_WRITE, -EIO, 1);
    wr_go(g, &w4, &f, fd2, 0, 4096, 'd');
    cr_assert_eq(w4.x.r.status, 4096, "behind, then failed");
    wr_t w5, w6;
    wr_go(g, &w5, &f, fd2, 0, 4096, 'e');
    cr_assert_eq(w5.x.r.status, -EIO, "reported once");
    m->hold[KB_FOP_WRITE] = true;
    wr_go(g, &w6, &f, fd2, 0, 4096, 'e');
    cr_assert_eq(w6.x.n, 0, "through: it waits for the brick");
    mock_complete_all(m, false);
    cr_assert_eq(w6.x.n, 1);
    cr_assert_eq(w6.x.r.status, 4096, "through, succeeded");
    wr_t w7;
    wr_go(g, &w7, &f, fd2, 0, 4096, 'f');
    cr_assert_eq(w7.x.n, 1, "behind again: acknowledged while the brick holds it");
    cr_assert_eq(w7.x.r.status, 4096, "behind again");
    mock_complete_all(m, false);
    wr_clear(&w1);
    wr_clear(&w2);
    wr_clear(&w3);
    wr_clear(&w4);
    wr_clear(&w5);
    wr_clear(&w6);
    wr_clear(&w7);
}

Test(write_behind, a_short_write_is_an_error, .init = start, .fini = stop)
{
    kb_gfid_t f = gf(1);
    uint64_t fd = open_fd(g, &f, O_RDWR);
    m->hold[KB_FOP_WRITE] = true;
    wr_t w;
    wr_go(g, &w, &f, fd, 0, 4096, 'x');
    /* answer with fewer bytes than asked: swap the payload the mock sees */
    kb_call_t *c = m->held[0];
    kb_buf_t *half = kb_buf_new(100);
    half->len = 100;
    kb_args_t *ca = (kb_args_t *)c->args;  /* write-behind's copy: it unrefs what it holds */
    kb_buf_t *orig = ca->data;
    ca->data = half;
    mock_complete(m, 0, 0);
    kb_buf_unref(orig);
    kb_args_t fs = { .gfid = f, .fd = fd };
    mock_res_t x;
    go(g, KB_FOP_FSYNC, &fs, &x);
    cr_assert_eq(x.r.status, -EIO);
    kb_reply_clear(&x.r);
    wr_clear(&w);
}

Test(write_behind, release_waits_for_the_writes, .init = start, .fini = stop)
{
    kb_gfid_t f = gf(1);
    uint64_t fd = open_fd(g, &f, O_RDWR);
    m->hold[KB_FOP_WRITE] = true;
    wr_t w;
    wr_go(g, &w, &f, fd, 0, 4096, 'x');
    kb_args_t rel = { .gfid = f, .fd = fd };
    mock_res_t x;
    go(g, KB_FOP_RELEASE, &rel, &x);
    cr_assert_eq(x.n, 0);
    cr_assert_eq(mock_count(m, KB_FOP_RELEASE), 0, "a close never drops a write");
    mock_complete(m, 0, 0);
    cr_assert_eq(x.n, 1);
    cr_assert_eq(mock_count(m, KB_FOP_RELEASE), 1);
    /* after its release the fd is unknown: a write on that number is synchronous */
    wr_t w2;
    wr_go(g, &w2, &f, fd, 0, 4096, 'y');
    cr_assert_eq(w2.x.n, 0);
    mock_complete(m, 0, 0);
    cr_assert_eq(w2.x.n, 1);
    kb_reply_clear(&x.r);
    wr_clear(&w);
    wr_clear(&w2);
}

Test(write_behind, direct_and_sync_writes_are_synchronous, .init = start, .fini = stop)
{
    kb_gfid_t f = gf(1);
    uint64_t fd = open_fd(g, &f, O_RDWR | O_DIRECT);
    uint64_t fs = open_fd(g, &f, O_RDWR | O_SYNC), fds = open_fd(g, &f, O_WRONLY | O_DSYNC);
    m->hold[KB_FOP_WRITE] = true;
    wr_t w1, w2, w3;
    w1.a = wargs(&f, fd, 0, 4096, 'd');
    w1.a.flags = O_DIRECT;                 /* per write, as kembar-fuse passes it */
    go(g, KB_FOP_WRITE, &w1.a, &w1.x);
    wr_go(g, &w2, &f, fs, 8192, 4096, 's');
    wr_go(g, &w3, &f, fds, 16384, 4096, 'd');
    cr_assert_eq(w1.x.n + w2.x.n + w3.x.n, 0, "O_DIRECT, O_SYNC and O_DSYNC writes wait for the child");
    cr_assert_eq(mock_nheld(m), 3);
    mock_complete_all(m, false);
    cr_assert_eq(w1.x.n + w2.x.n + w3.x.n, 3);
    cr_assert_eq(w1.x.r.status, 4096);
    /* and a synchronous write waits for the behind writes before it */
    uint64_t fb = open_fd(g, &f, O_RDWR);
    wr_t wb, wd;
    wr_go(g, &wb, &f, fb, 0, 4096, 'b');
    wd.a = wargs(&f, fd, 0, 4096, 'D');
    wd.a.flags = O_DIRECT;
    go(g, KB_FOP_WRITE, &wd.a, &wd.x);
    cr_assert_eq(mock_nheld(m), 1, "the O_DIRECT write waits for the behind one");
    mock_complete(m, 0, 0);
    cr_assert_eq(mock_nheld(m), 1);
    cr_assert_eq(m->held[0]->args->data->data[0], 'D');
    mock_complete(m, 0, 0);
    cr_assert_eq(wd.x.n, 1);
    wr_clear(&w1);
    wr_clear(&w2);
    wr_clear(&w3);
    wr_clear(&wb);
    wr_clear(&wd);
}

Test(write_behind, lookup_of_a_written_file_is_asked_again, .init = start, .fini = stop)
{
    kb_gfid_t f = gf(1);
    mock_add_entry(m, "f", &f, S_IFREG | 0644);
    uint64_t fd = open_fd(g, &f, O_RDWR);
    m->hold[KB_FOP_WRITE] = true;
    wr_t w;
    wr_go(g, &w, &f, fd, 0, 4096, 'x');
    kb_args_t lk = { .gfid = kb_gfid_root, .name = "f" };
    mock_res_t x;
    go(g, KB_FOP_LOOKUP, &lk, &x);
    cr_assert_eq(mock_count(m, KB_FOP_LOOKUP), 1);
    cr_assert_eq(x.n, 0, "its answer could carry a stale size: it waits");
    mock_complete(m, 0, 0);
    cr_assert_eq(mock_count(m, KB_FOP_LOOKUP), 2, "asked again after the write");
    cr_assert_eq(x.n, 1);
    cr_assert(kb_gfid_eq(&x.r.attr.gfid, &f));
    kb_reply_clear(&x.r);
    /* nothing outstanding: one lookup */
    go(g, KB_FOP_LOOKUP, &lk, &x);
    cr_assert_eq(mock_count(m, KB_FOP_LOOKUP), 3);
    cr_assert_eq(x.n, 1);
    kb_reply_clear(&x.r);
    wr_clear(&w);
}

Test(write_behind, child_down_fails_everything_exactly_once)
{
    const char *opts[] = { "window-size", "4KiB", NULL };
    kb_gfid_t f;
    uint64_t fd = start_held(opts, &f);
    wr_t w1, w2;
    wr_go(g, &w1, &f, fd, 0, 4096, '1');
    wr_go(g, &w2, &f, fd, 4096, 4096, '2');
    kb_args_t rd = { .gfid = f, .fd = fd, .size = 10 };
    mock_res_t xr;
    go(g, KB_FOP_READ, &rd, &xr);
    cr_assert_eq(w1.x.n, 1);
    cr_assert_eq(w2.x.n + xr.n, 0);
    mock_down(m);
    cr_assert_eq(w2.x.n, 1, "admitted once the first failed");
    cr_assert_eq(xr.n, 1);
    cr_assert_eq(xr.r.status, -ENOTCONN);
    kb_args_t fs = { .gfid = f, .fd = fd };
    mock_res_t x;
    go(g, KB_FOP_FSYNC, &fs, &x);
    cr_assert_eq(x.n, 1);
    cr_assert_lt(x.r.status, 0);
    kb_reply_clear(&x.r);
    kb_reply_clear(&xr.r);
    wr_clear(&w1);
    wr_clear(&w2);
    stop();
}

/* Two graphs on one (fake) loop, as a mounted client has while it switches
 * from A to B; B with OPTS_B. Logs quiet: lost writes are warnings. */
static void two_graphs(const char *const *opts_b, kb_graph_t **a, kb_graph_t **b, mock_child_t **ma,
                       mock_child_t **mb)
{
    static int fake_loop;
    kb_log_level = KB_LOG_ERROR;
    *a = wb_graph(NULL);
    *b = wb_graph(opts_b);
    (*a)->loop = (*b)->loop = (struct kb_loop *)&fake_loop;
    *ma = mock_of((*a)->all[0]);
    *mb = mock_of((*b)->all[0]);
}

/* Two graphs on one loop (a mounted client switching graphs): the new
 * graph's calls wait for the old graph's writes. */
Test(write_behind, graphs_on_one_loop_share_one_order)
{
    kb_graph_t *a, *b;
    mock_child_t *ma, *mb;
    two_graphs(NULL, &a, &b, &ma, &mb);
    kb_gfid_t f = gf(1);
    uint64_t fa = open_fd(a, &f, O_RDWR), fb = open_fd(b, &f, O_RDWR);
    ma->hold[KB_FOP_WRITE] = true;
    wr_t w1, w2;
    wr_go(a, &w1, &f, fa, 0, 4096, '1');
    kb_args_t rd = { .gfid = f, .fd = fb, .size = 4096 };
    mock_res_t xr;
    go(b, KB_FOP_READ, &rd, &xr);
    wr_go(b, &w2, &f, fb, 0, 4096, '2');
    cr_assert_eq(xr.n, 0, "the new graph's read waits for the old graph's write");
    cr_assert_eq(mock_count(mb, KB_FOP_READ) + mock_count(mb, KB_FOP_WRITE), 0);
    mock_complete(ma, 0, 0);
    cr_assert_eq(xr.n, 1);
    cr_assert_eq(w2.x.n, 1);
    cr_assert_eq(mock_count(mb, KB_FOP_WRITE), 1, "then the overlapping write");
    kb_graph_fini(a);
    /* b works on alone */
    wr_t w3;
    wr_go(b, &w3, &f, fb, 0, 4096, '3');
    cr_assert_eq(w3.x.r.status, 4096);
    kb_graph_fini(b);
    kb_reply_clear(&xr.r);
    wr_clear(&w1);
    wr_clear(&w2);
    wr_clear(&w3);
}

/* The old graph of a switch goes (a forced unmount: its child fails what it
 * holds, as protocol/client does at PARENT_DOWN) while its write is at the
 * child and the new graph's reopen and STAT wait behind it: they go then,
 * and the lost write is reported once to the reopened file, by its next
 * write and by its fsync (errseq: nobody had seen it). */
Test(write_behind, an_old_graph_going_with_a_write_lets_the_new_graph_go_and_reports_it)
{
    kb_graph_t *a, *b;
    mock_child_t *ma, *mb;
    two_graphs(NULL, &a, &b, &ma, &mb);
    kb_gfid_t f = gf(2);
    uint64_t fa = open_fd(a, &f, O_RDWR);
    ma->hold[KB_FOP_WRITE] = true;
    wr_t w1;
    wr_go(a, &w1, &f, fa, 0, 4096, '1');
    cr_assert_eq(w1.x.n, 1, "acknowledged");
    kb_args_t oa = { .gfid = f, .flags = O_RDWR }, sa = { .gfid = f };
    mock_res_t xo, xs;
    go(b, KB_FOP_OPEN, &oa, &xo);
    go(b, KB_FOP_STAT, &sa, &xs);
    cr_assert_eq(xo.n + xs.n, 0, "the new graph waits for the old graph's write");
    cr_assert_eq(mock_count(mb, KB_FOP_OPEN) + mock_count(mb, KB_FOP_STAT), 0);
    mock_down(ma);
    kb_graph_fini(a);
    cr_assert_eq(xo.n, 1, "the reopen goes once the old graph's write is over");
    cr_assert_eq(xo.r.status, 0);
    cr_assert_eq(xs.n, 1);
    cr_assert_eq(mock_count(mb, KB_FOP_OPEN), 1);
    wr_t w2, w3;
    wr_go(b, &w2, &f, xo.r.fd, 0, 4096, '2');
    cr_assert_eq(w2.x.r.status, -ENOTCONN, "the lost write, reported by the next write");
    wr_go(b, &w3, &f, xo.r.fd, 0, 4096, '3');
    cr_assert_eq(w3.x.r.status, 4096, "once");
    cr_assert_eq(mock_count(mb, KB_FOP_WRITE), 1);
    kb_args_t fs = { .gfid = f, .fd = xo.r.fd };
    mock_res_t xf, xf2;
    go(b, KB_FOP_FSYNC, &fs, &xf);
    cr_assert_eq(xf.n, 1);
    cr_assert_eq(xf.r.status, -ENOTCONN, "and by the fsync");
    go(b, KB_FOP_FSYNC, &fs, &xf2);
    cr_assert_eq(xf2.r.status, 0, "once");
    kb_graph_fini(b);
    kb_reply_clear(&xo.r);
    kb_reply_clear(&xs.r);
    kb_reply_clear(&xf.r);
    kb_reply_clear(&xf2.r);
    wr_clear(&w1);
    wr_clear(&w2);
    wr_clear(&w3);
}

/* `volume set ... performance.write-behind off` switches a client to a
 * graph whose write-behind is off: its calls still wait for the writes the
 * previous graph has outstanding. */
Test(write_behind, off_still_waits_for_another_graphs_writes)
{
    const char *off[] = { "write-behind", "off", NULL };
    kb_graph_t *a, *b;
    mock_child_t *ma, *mb;
    two_graphs(off, &a, &b, &ma, &mb);
    kb_gfid_t f = gf(1);
    uint64_t fa = open_fd(a, &f, O_RDWR), fb = open_fd(b, &f, O_RDWR);
    ma->hold[KB_FOP_WRITE] = true;
    mb->hold[KB_FOP_WRITE] = true;
    wr_t w1, w2;
    wr_go(a, &w1, &f, fa, 0, 4096, '1');
    kb_args_t rd = { .gfid = f, .fd = fb, .size = 4096 };
    mock_res_t xr;
    go(b, KB_FOP_READ, &rd, &xr);
    wr_go(b, &w2, &f, fb, 0, 4096, '2');
    cr_assert_eq(w1.x.n, 1);
    cr_assert_eq(xr.n + w2.x.n, 0);
    cr_assert_eq(mock_count(mb, KB_FOP_READ) + mock_count(mb, KB_FOP_WRITE), 0);
    mock_complete(ma, 0, 0);
    cr_assert_eq(xr.n, 1);
    cr_assert_eq(w2.x.n, 0, "off: the write waits for its child");
    cr_assert_eq(mock_nheld(mb), 1);
    mock_complete(mb, 0, 0);
    cr_assert_eq(w2.x.n, 1);
    kb_graph_fini(a);
    kb_graph_fini(b);
    kb_reply_clear(&xr.r);
    wr_clear(&w1);
    wr_clear(&w2);
}

/* ---------------- over test/store: content ---------------- */

#define ST_SIZE (512u << 10)

typedef struct store {
    char data[ST_SIZE];
    uint64_t size;
    bool hold;
    kb_call_t **held;
    size_t nheld, cap;
    unsigned overlaps;     /* writes that arrived overlapping one in flight */
    unsigned nwrites;
    uint64_t next_fd;
} store_t;

static store_t *st;        /* the one store of the current test */

static void st_answer(kb_call_t *c)
{
    const kb_args_t *a = c->args;
    kb_reply_t r = { 0 };
    kb_gfid_t f = gf(1);
    switch (c->op) {
    case KB_FOP_WRITE: {
        size_t n = a->data->len;
        cr_assert_leq(a->off + n, ST_SIZE);
        memcpy(st->data + a->off, a->data->data, n);
        st->size = KB_MAX(st->size, a->off + n);
        r.status = (int)n;
        break;
    }
    case KB_FOP_READ: {
        uint64_t end = KB_MIN(a->off + a->size, st->size);
        size_t n = end > a->off ? (size_t)(end - a->off) : 0;
        r.data = kb_buf_copy(st->data + a->off, n);
        r.status = (int)n;
        break;
    }
    case KB_FOP_OPEN:
        r.fd = ++st->next_fd;
        break;
    case KB_FOP_READDIR:
        if (a->off == 0) {
            r.dirents = calloc(1, sizeof(kb_dirent_t));
            r.dirents[0] = (kb_dirent_t){ .off = 1, .type = DT_REG, .name = strdup("f"), .has_attr = 1,
                                          .attr = { .gfid = f, .mode = S_IFREG | 0644, .size = st->size } };
            r.ndirents = 1;
        }
        break;
    default:
        r.attr.gfid = a->gfid;
        r.attr.size = st->size;
        break;
    }
    kb_unwind(c, &r);
    kb_reply_clear(&r);
}

static void st_fop(kb_call_t *c)
{
    if (c->op == KB_FOP_WRITE) {
        st->nwrites++;
        for (size_t i = 0; i < st->nheld; i++) {
            const kb_args_t *h = st->held[i]->args;
            if (st->held[i]->op == KB_FOP_WRITE && h->off < c->args->off + c->args->data->len &&
                c->args->off < h->off + h->data->len)
                st->overlaps++;
        }
    }
    if (!st->hold) {
        st_answer(c);
        return;
    }
    if (st->nheld == st->cap) {
        st->cap = st->cap ? 2 * st->cap : 64;
        st->held = realloc(st->held, st->cap * sizeof(*st->held));
        cr_assert_not_null(st->held);
    }
    st->held[st->nheld++] = c;
}

static void st_complete(size_t i)
{
    kb_call_t *c = st->held[i];
    st->held[i] = st->held[--st->nheld];   /* order does not matter: any is fine */
    st_answer(c);
}

static int st_init(kb_xlator_t *xl)
{
    st = calloc(1, sizeof(*st));
    xl->priv = st;
    return st ? 0 : -ENOMEM;
}

static void st_fini(kb_xlator_t *xl)
{
    store_t *s = xl->priv;
    free(s->held);
    free(s);
    st = NULL;
}

#define FOP(NAME, name, A, R, C) [KB_FOP_##NAME] = st_fop,
static const kb_xlator_type_t store_type = {
    .name = "test/store",
    .ops = {
#include "xlators/fops.def"
    },
    .init = st_init,
    .fini = st_fini,
};
#undef FOP

static kb_graph_t *store_graph(const char *window, const char *aggregate)
{
    kb_log_level = KB_LOG_ERROR;
    cr_assert_eq(kb_xlator_type_register(&store_type), 0);
    char vf[512], err[256];
    snprintf(vf, sizeof(vf),
             "volume s\n  type test/store\nend-volume\n"
             "volume wb\n  type performance/write-behind\n  option window-size %s\n"
             "  option aggregate-size %s\n  subvolumes s\nend-volume\n",
             window, aggregate);
    kb_graph_t *gr = kb_graph_parse(vf, err, sizeof(err));
    cr_assert_not_null(gr, "%s", err);
    cr_assert_eq(kb_graph_init(gr, NULL, err, sizeof(err)), 0, "%s", err);
    return gr;
}

/* Thousands of writes at random offsets and sizes, overlapping a lot; the
 * store holds every call and completes them in random order, interleaved
 * with new ones. The content must be what the writes in submission order
 * make, and no two overlapping writes may ever be at the store together. */
static void content_check(const char *window, const char *aggregate)
{
    kb_graph_t *gr = store_graph(window, aggregate);
    kb_gfid_t f = gf(1);
    uint64_t fd = open_fd(gr, &f, O_RDWR);
    st->hold = true;
    static char want[ST_SIZE];
    memset(want, 0, sizeof(want));
    uint64_t want_size = 0, prev_end = 0;
    enum { N = 3000 };
    wr_t *w = calloc(N, sizeof(*w));
    cr_assert_not_null(w);
    srand(7);
    for (int i = 0; i < N; i++) {
        size_t len = 1 + (size_t)rand() % (i % 10 == 0 ? 64 << 10 : 8 << 10);
        uint64_t off = (uint64_t)rand() % (ST_SIZE - len);
        if (i % 7 == 0)
            off = want_size < ST_SIZE - len ? want_size : off;     /* some appends */
        else if (i % 3 == 0)
            off = prev_end < ST_SIZE - len ? prev_end : off;       /* some runs (aggregated) */
        prev_end = off + len;
        char byte = (char)('A' + i % 50);
        w[i].a = wargs(&f, fd, off, len, byte);
        memset(w[i].a.data->data, byte, len);
        w[i].a.data->data[0] = (char)(i & 0x7f);                   /* tell writes apart */
        go(gr, KB_FOP_WRITE, &w[i].a, &w[i].x);
        memcpy(want + off, w[i].a.data->data, len);
        want_size = KB_MAX(want_size, off + len);
        for (int k = rand() % 3; k > 0 && st->nheld; k--)
            st_complete((size_t)rand() % st->nheld);
        /* a write waiting for the window must be acknowledged eventually */
        while (st->nheld && i > 0 && !w[i].x.n && rand() % 2)
            st_complete((size_t)rand() % st->nheld);
    }
    while (st->nheld)
        st_complete((size_t)rand() % st->nheld);
    for (int i = 0; i < N; i++) {
        cr_assert_eq(w[i].x.n, 1, "write %d completed once", i);
        cr_assert_eq(w[i].x.r.status, (int)w[i].a.data->len);
    }
    cr_assert_eq(st->overlaps, 0, "overlapping writes were at the store together");
    if (strcmp(aggregate, "0") == 0)
        cr_assert_eq(st->nwrites, N);
    else
        cr_assert_lt(st->nwrites, N, "some writes were aggregated");
    cr_assert_eq(st->size, want_size);
    cr_assert(memcmp(st->data, want, ST_SIZE) == 0, "the store holds the writes in submission order");
    /* and a read through write-behind sees the same */
    st->hold = false;
    kb_args_t rd = { .gfid = f, .fd = fd, .off = 0, .size = ST_SIZE };
    mock_res_t xr;
    go(gr, KB_FOP_READ, &rd, &xr);
    cr_assert_eq(xr.r.status, (int)want_size);
    cr_assert(memcmp(xr.r.data->data, want, want_size) == 0);
    kb_reply_clear(&xr.r);
    for (int i = 0; i < N; i++)
        wr_clear(&w[i]);
    free(w);
    kb_graph_fini(gr);
}

Test(write_behind, out_of_order_completions_keep_the_content_right)
{
    content_check("256KiB", "0");
}

Test(write_behind, out_of_order_completions_keep_the_content_right_aggregated)
{
    content_check("256KiB", "64KiB");
    content_check("4MiB", "1MiB");
}

Test(write_behind, a_read_sees_the_writes_before_it)
{
    kb_graph_t *gr = store_graph("4MiB", "1MiB");
    kb_gfid_t f = gf(1);
    uint64_t fd = open_fd(gr, &f, O_RDWR);
    st->hold = true;
    wr_t w[8];
    for (int i = 0; i < 8; i++)
        wr_go(gr, &w[i], &f, fd, (uint64_t)i * 1000, 1500, (char)('a' + i));   /* overlapping chain */
    kb_args_t rd = { .gfid = f, .fd = fd, .off = 0, .size = 16384 };
    mock_res_t xr;
    go(gr, KB_FOP_READ, &rd, &xr);
    while (st->nheld)
        st_complete(st->nheld - 1);        /* newest first */
    cr_assert_eq(xr.n, 1);
    cr_assert_eq(xr.r.status, 7 * 1000 + 1500);
    for (int i = 0; i < 8; i++)
        cr_assert_eq(xr.r.data->data[i * 1000 + 999], (char)('a' + i), "byte %d", i * 1000 + 999);
    cr_assert_eq(xr.r.data->data[8499], 'h');
    kb_reply_clear(&xr.r);
    for (int i = 0; i < 8; i++)
        wr_clear(&w[i]);
    kb_graph_fini(gr);
}

Test(write_behind, readdirplus_hides_the_attributes_of_files_being_written)
{
    kb_graph_t *gr = store_graph("4MiB", "1MiB");
    kb_gfid_t f = gf(1);
    uint64_t fd = open_fd(gr, &f, O_RDWR);
    st->hold = true;
    wr_t w;
    wr_go(gr, &w, &f, fd, 0, 4096, 'x');
    st->hold = false;
    kb_args_t rd = { .gfid = kb_gfid_root, .fd = 99, .size = 4096, .flags = 1 };
    mock_res_t x;
    go(gr, KB_FOP_READDIR, &rd, &x);
    cr_assert_eq(x.n, 1);
    cr_assert_eq(x.r.ndirents, 1);
    cr_assert_str_eq(x.r.dirents[0].name, "f");
    cr_assert_eq(x.r.dirents[0].has_attr, 0, "a stale size must not reach the kernel");
    cr_assert(kb_gfid_eq(&x.r.dirents[0].gfid, &f), "the entry keeps its identity");
    kb_reply_clear(&x.r);
    st_complete(0);
    go(gr, KB_FOP_READDIR, &rd, &x);
    cr_assert_eq(x.r.dirents[0].has_attr, 1);
    cr_assert_eq(x.r.dirents[0].attr.size, 4096);
    kb_reply_clear(&x.r);
    wr_clear(&w);
    kb_graph_fini(gr);
}

/* ---------------- aggregation ---------------- */

Test(write_behind, contiguous_writes_queued_behind_one_in_flight_go_as_one)
{
    const char *opts[] = { "aggregate-size", "256KiB", NULL };
    kb_gfid_t f;
    uint64_t fd = start_held(opts, &f);
    wr_t w[6];
    for (int i = 0; i < 6; i++)
        wr_go(g, &w[i], &f, fd, (uint64_t)i << 16, 64 << 10, (char)('a' + i));
    for (int i = 0; i < 6; i++)
        cr_assert_eq(w[i].x.r.status, 64 << 10, "each acknowledged for its own length");
    cr_assert_eq(mock_nheld(m), 2, "the first alone, the next four as one; the sixth waits to grow");
    const kb_args_t *a = nth_write(1);
    cr_assert_eq(a->off, 64u << 10);
    cr_assert_eq(a->data->len, 256u << 10);
    for (int i = 0; i < 4; i++)
        cr_assert_eq(a->data->data[(i << 16) + 100], (char)('b' + i), "piece %d in place", i);
    mock_complete(m, 0, 0);
    cr_assert_eq(mock_nheld(m), 1, "still one in flight: the sixth keeps waiting");
    mock_complete(m, 0, 0);
    cr_assert_eq(mock_nheld(m), 1, "nothing in flight: it goes");
    cr_assert_eq(nth_write(2)->off, 5u << 16);
    cr_assert_eq(nth_write(2)->data->len, 64u << 10);
    mock_complete_all(m, false);
    for (int i = 0; i < 6; i++)
        wr_clear(&w[i]);
    stop();
}

Test(write_behind, a_growing_write_goes_when_anything_waits_or_a_gap_follows)
{
    const char *opts[] = { "aggregate-size", "1MiB", NULL };
    kb_gfid_t f;
    uint64_t fd = start_held(opts, &f);
    wr_t w0, w1, w2;
    wr_go(g, &w0, &f, fd, 0, 4096, '0');
    wr_go(g, &w1, &f, fd, 4096, 4096, '1');
    cr_assert_eq(mock_nheld(m), 1, "the second grows behind the first");
    wr_go(g, &w2, &f, fd, 1 << 20, 4096, '2');       /* a gap: the second cannot grow any more */
    cr_assert_eq(mock_nheld(m), 2);
    cr_assert_eq(nth_write(1)->off, 4096u);
    kb_args_t rd = { .gfid = f, .fd = fd, .size = 10 };
    mock_res_t xr;
    go(g, KB_FOP_READ, &rd, &xr);                    /* a reader waits: nothing is held back */
    cr_assert_eq(mock_nheld(m), 3);
    cr_assert_eq(nth_write(2)->off, 1u << 20);
    cr_assert_eq(xr.n, 0);
    mock_complete_all(m, true);
    cr_assert_eq(xr.n, 1);
    kb_reply_clear(&xr.r);
    wr_clear(&w0);
    wr_clear(&w1);
    wr_clear(&w2);
    stop();
}

/* A write that asks the bricks for more (KB_WF_KILL_SUIDGID: the writer
 * lacks CAP_FSETID) is not folded into one that does not, nor the reverse:
 * the flag would be lost, or given to bytes of another writer. */
Test(write_behind, writes_with_other_flags_are_not_merged)
{
    const char *opts[] = { "aggregate-size", "1MiB", NULL };
    kb_gfid_t f;
    uint64_t fd = start_held(opts, &f);
    wr_t w[4];
    for (int i = 0; i < 4; i++) {
        w[i].a = wargs(&f, fd, (uint64_t)i << 12, 4096, (char)('a' + i));
        w[i].a.flags = i >= 2 ? KB_WF_KILL_SUIDGID : 0;
        go(g, KB_FOP_WRITE, &w[i].a, &w[i].x);
    }
    /* 0 in flight; 1 grows alone (2 has other flags); 2 goes and 3 grows on it. */
    mock_complete_all(m, true);
    mock_complete_all(m, true);
    cr_assert_eq(mock_count(m, KB_FOP_WRITE), 3);
    cr_assert_eq(nth_write(1)->data->len, 4096u);
    cr_assert_eq(nth_write(1)->flags, 0u);
    cr_assert_eq(nth_write(2)->off, 2u << 12);
    cr_assert_eq(nth_write(2)->data->len, 8192u);
    cr_assert_eq(nth_write(2)->flags, KB_WF_KILL_SUIDGID);
    for (int i = 0; i < 4; i++)
        wr_clear(&w[i]);
    stop();
}

/* A caller that winds again from inside the acknowledgement (allowed: a
 * callback may wind at once) must still see its write ordered first. */
static kb_args_t again_rd;
static mock_res_t again_x;

static void ack_then_read(void *cookie, const kb_reply_t *r)
{
    mock_res_cbk(cookie, r);
    go(g, KB_FOP_READ, &again_rd, &again_x);
}

Test(write_behind, a_call_wound_from_the_acknowledgement_waits_for_the_write, .init = start, .fini = stop)
{
    kb_gfid_t f = gf(1);
    uint64_t fd = open_fd(g, &f, O_RDWR);
    m->hold[KB_FOP_WRITE] = true;
    again_rd = (kb_args_t){ .gfid = f, .fd = fd, .size = 4096 };
    wr_t w;
    w.a = wargs(&f, fd, 0, 4096, 'x');
    memset(&w.x, 0, sizeof(w.x));
    kb_wind(g->top, KB_FOP_WRITE, &w.a, &cred, 7, ack_then_read, &w.x);
    cr_assert_eq(w.x.n, 1);
    cr_assert_eq(mock_count(m, KB_FOP_WRITE), 1);
    cr_assert_eq(mock_count(m, KB_FOP_READ), 0, "the read must not overtake the write it follows");
    cr_assert_eq(again_x.n, 0);
    mock_complete(m, 0, 0);
    cr_assert_eq(again_x.n, 1);
    cr_assert_eq(mock_count(m, KB_FOP_READ), 1);
    kb_reply_clear(&again_x.r);
    wr_clear(&w);
}

/* Besides bytes, at most 32 writes per file are outstanding (a payload may
 * pin a whole FUSE receive buffer). */
Test(write_behind, at_most_32_writes_outstanding, .init = start, .fini = stop)
{
    kb_gfid_t f = gf(1);
    uint64_t fd = open_fd(g, &f, O_RDWR);
    m->hold[KB_FOP_WRITE] = true;
    wr_t w[34];
    for (int i = 0; i < 34; i++)
        wr_go(g, &w[i], &f, fd, (uint64_t)i << 13, 4096, 'a');   /* with gaps: nothing merges */
    for (int i = 0; i < 32; i++)
        cr_assert_eq(w[i].x.n, 1);
    cr_assert_eq(w[32].x.n + w[33].x.n, 0, "well within the window, but 32 are outstanding");
    cr_assert_eq(mock_nheld(m), 32);
    mock_complete(m, 5, 0);
    cr_assert_eq(w[32].x.n, 1);
    cr_assert_eq(w[33].x.n, 0);
    mock_complete_all(m, false);
    mock_complete_all(m, false);
    for (int i = 0; i < 34; i++) {
        cr_assert_eq(w[i].x.n, 1);
        wr_clear(&w[i]);
    }
}
