/*
 * local_read_test.c — protocol/client's local reads over a real
 * storage/posix brick under /var/tmp: the brick's id is checked on its
 * directory, files are read through the brick's own gfid handles with what
 * the brick wrote, O_DIRECT rules and EOF hold, and every read it cannot
 * serve whole is handed back (not attempted, or res < 0), never failed —
 * one the disk does not answer in time too. The checks and opens are
 * asynchronous: the loop runs until they are done.
 */
#include <criterion/criterion.h>
#include <event2/event.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>
#include <poll.h>
#include "lib/common.h"
#include "lib/log.h"
#include "tests/unit/brick_harness.h"
#include "xlators/fop.h"
#include "xlators/protocol/client/local_read.h"
#include "xlators/storage/posix/posix.h"

static const kb_gfid_t root_gfid = { { [15] = 1 } };

static bh_t *h;
static char *dir;
static kb_gfid_t vol_id, brick_id;
static lread_t *lr;

static void setup(void)
{
    kb_log_level = KB_LOG_ERROR;
    dir = bh_tmpdir("lread");
    cr_assert_not_null(dir);
    kb_gfid_generate(&vol_id);
    kb_gfid_generate(&brick_id);
    char err[256];
    cr_assert_eq(posix_brick_prepare(dir, &vol_id, &brick_id, true, err, sizeof(err)), 0, "%s", err);
    h = bh_posix_start(dir, NULL, err, sizeof(err));
    cr_assert_not_null(h, "%s", err);
    lr = lread_new(kb_loop_base(h->loop), "test", 300);
    cr_assert_not_null(lr);
}

static void teardown(void)
{
    lread_free(lr);
    bh_stop(h);
    bh_rmrf(dir);
    free(dir);
}

/* A file written through the brick: LEN bytes of a pattern keyed by K. */
static kb_gfid_t make_file(const char *name, size_t len, uint8_t k, char *data)
{
    kb_gfid_t g;
    uint64_t fd;
    cr_assert_eq(bh_create(h, &root_gfid, name, 0644, O_RDWR, &g, &fd), 0);
    for (size_t i = 0; i < len; i++)
        data[i] = (char)(k + i * 7 + i / 4096);
    cr_assert_eq(bh_write(h, &g, fd, 0, data, len, 0), (int)len);
    cr_assert_eq(bh_release(h, &g, fd), 0);
    return g;
}

struct done { int n, res; char data[65536]; };

static void pump_ms(int ms)
{
    uint64_t end = kb_now_ms() + (uint64_t)ms;
    while (kb_now_ms() < end)
        event_base_loop(kb_loop_base(h->loop), EVLOOP_ONCE | EVLOOP_NONBLOCK), poll(NULL, 0, 1);
}

/* Enable with ID and let the check run: whether reads are served here now. */
static bool enable(const char *path, const kb_gfid_t *id)
{
    cr_assert_eq(lread_enable(lr, path, id), 0, "the check starts");
    cr_assert_not(lread_enabled(lr), "not before the check answered");
    for (int i = 0; i < 200 && !lread_enabled(lr); i++)
        pump_ms(5);
    pump_ms(20);
    return lread_enabled(lr);
}

/* The first read of FD starts opening its file and goes to the brick: let the open end. */
static void open_here(uint64_t fd)
{
    struct done d = { 0 };
    cr_assert_eq(lread_read(lr, fd, 0, 4096, NULL, &d), -EAGAIN, "the first read goes to the brick");
    cr_assert_eq(lread_read(lr, fd, 0, 4096, NULL, &d), -EAGAIN, "and so do the ones while it opens");
    pump_ms(50);
}

static void on_done(void *cookie, int res, kb_buf_t *buf)
{
    struct done *d = cookie;
    d->n++;
    d->res = res;
    if (res > 0)
        memcpy(d->data, buf->data, (size_t)res);
}

static void wait_done(struct done *d)
{
    uint64_t end = kb_now_ms() + 5000;
    while (!d->n && kb_now_ms() < end)
        event_base_loop(kb_loop_base(h->loop), EVLOOP_ONCE);
    cr_assert_eq(d->n, 1, "the read completed once");
}

Test(local_read, the_brick_id_is_checked_on_its_directory, .init = setup, .fini = teardown)
{
    kb_gfid_t other;
    kb_gfid_generate(&other);
    cr_assert_not(enable(dir, &other), "another brick's directory");
    char *plain = bh_tmpdir("lread-plain");
    cr_assert_not(enable(plain, &brick_id), "a directory that is no brick");
    bh_rmrf(plain);
    free(plain);
    cr_assert_not(enable("/var/tmp/kb-no-such-brick", &brick_id));
    cr_assert(enable(dir, &brick_id));
    /* a check that answers after a disable (the connection went) counts for nothing */
    cr_assert_eq(lread_enable(lr, dir, &brick_id), 0);
    lread_disable(lr);
    pump_ms(100);
    cr_assert_not(lread_enabled(lr));
    /* no read is attempted while off */
    lread_disable(lr);
    struct done d = { 0 };
    lread_opened(lr, 5, &root_gfid, O_RDONLY);
    cr_assert_eq(lread_read(lr, 5, 0, 4096, on_done, &d), -ENOTCONN);
}

Test(local_read, reads_what_the_brick_wrote, .init = setup, .fini = teardown)
{
    static char want[40000];
    kb_gfid_t g = make_file("f", sizeof(want), 3, want);
    cr_assert(enable(dir, &brick_id));
    struct done d = { 0 };
    cr_assert_eq(lread_read(lr, 9, 0, 4096, on_done, &d), -EBADF, "an fd it was not told of");
    lread_opened(lr, 9, &g, O_RDONLY);
    open_here(9);
    cr_assert_eq(lread_read(lr, 9, 1000, 5000, on_done, &d), 0);
    cr_assert_eq(d.n, 0, "completes from the loop, never inside the call");
    wait_done(&d);
    cr_assert_eq(d.res, 5000);
    cr_assert_arr_eq(d.data, want + 1000, 5000);
    /* past the end: what is there, then EOF */
    struct done e = { 0 }, z = { 0 };
    cr_assert_eq(lread_read(lr, 9, 36864, 8192, on_done, &e), 0);
    wait_done(&e);
    cr_assert_eq(e.res, 40000 - 36864);
    cr_assert_arr_eq(e.data, want + 36864, 40000 - 36864);
    cr_assert_eq(lread_read(lr, 9, 1 << 20, 4096, on_done, &z), 0);
    wait_done(&z);
    cr_assert_eq(z.res, 0, "EOF");
    struct lread_counts c;
    lread_counts(lr, &c);
    cr_assert_eq(c.served, 3);
    cr_assert_eq(c.handed_back, 0);
    /* a write through the brick is what the next read sees */
    uint64_t fd;
    cr_assert_eq(bh_open(h, &g, O_RDWR, &fd), 0);
    cr_assert_eq(bh_write(h, &g, fd, 2000, "NEW", 3, 0), 3);
    struct done n = { 0 };
    cr_assert_eq(lread_read(lr, 9, 2000, 3, on_done, &n), 0);
    wait_done(&n);
    cr_assert_arr_eq(n.data, "NEW", 3);
    bh_release(h, &g, fd);
    /* released: not read here any more */
    lread_released(lr, 9);
    struct done r = { 0 };
    cr_assert_eq(lread_read(lr, 9, 0, 4096, on_done, &r), -EBADF);
}

Test(local_read, o_direct_reads_aligned_requests_only, .init = setup, .fini = teardown)
{
    static char want[3 * 4096 + 100];
    kb_gfid_t g = make_file("d", sizeof(want), 11, want);
    cr_assert(enable(dir, &brick_id));
    lread_opened(lr, 4, &g, O_RDONLY | O_DIRECT);
    open_here(4);
    struct done d = { 0 };
    cr_assert_eq(lread_read(lr, 4, 100, 4096, on_done, &d), -EINVAL, "an unaligned offset goes to the brick");
    cr_assert_eq(lread_read(lr, 4, 0, 1000, on_done, &d), -EINVAL, "an unaligned length too");
    cr_assert_eq(lread_read(lr, 4, 4096, 8192, on_done, &d), 0);
    wait_done(&d);
    cr_assert_eq(d.res, 8192);
    cr_assert_arr_eq(d.data, want + 4096, 8192);
    struct done t = { 0 };
    cr_assert_eq(lread_read(lr, 4, 3 * 4096, 4096, on_done, &t), 0);
    wait_done(&t);
    cr_assert_eq(t.res, 100, "the last, partial block: a short read is EOF");
    cr_assert_arr_eq(t.data, want + 3 * 4096, 100);
}

Test(local_read, objects_it_cannot_read_are_left_to_the_brick, .init = setup, .fini = teardown)
{
    cr_assert(enable(dir, &brick_id));
    /* no handle: an object this brick does not hold */
    kb_gfid_t none;
    kb_gfid_generate(&none);
    lread_opened(lr, 1, &none, O_RDONLY);
    open_here(1);
    struct done d = { 0 };
    cr_assert_eq(lread_read(lr, 1, 0, 4096, on_done, &d), -ENOENT);
    cr_assert_eq(lread_read(lr, 1, 0, 4096, on_done, &d), -ENOENT, "and not looked for again");
    /* a directory's handle is a symlink record: never followed */
    kb_gfid_t sub;
    cr_assert_eq(bh_mkdir(h, &root_gfid, "sub", 0755, &sub), 0);
    lread_opened(lr, 2, &sub, O_RDONLY);
    open_here(2);
    cr_assert_eq(lread_read(lr, 2, 0, 4096, on_done, &d), -ENOENT);
    /* a handle whose object carries another gfid */
    static char want[4096];
    kb_gfid_t g = make_file("w", sizeof(want), 5, want);
    char rel[POSIX_HANDLE_REL_LEN], path[4096];
    posix_handle_rel(&g, rel);
    snprintf(path, sizeof(path), "%s/.kembar/handles/%s", dir, rel);
    cr_assert_eq(setxattr(path, KB_XATTR_GFID, none.b, sizeof(none.b), 0), 0);
    lread_opened(lr, 3, &g, O_RDONLY);
    open_here(3);
    cr_assert_eq(lread_read(lr, 3, 0, 4096, on_done, &d), -ENOENT, "a handle of another object");
    cr_assert_eq(d.n, 0, "nothing completed");
    /* too big, or nothing to read */
    lread_opened(lr, 6, &g, O_RDONLY);
    cr_assert_eq(lread_read(lr, 6, 0, 0, on_done, &d), -EINVAL);
    cr_assert_eq(lread_read(lr, 6, 0, (size_t)KB_DATA_MAX + 4096, on_done, &d), -EINVAL);
}

/* A read in flight keeps its file open through RELEASE, disable and free. */
Test(local_read, reads_in_flight_outlive_release_and_free, .init = setup, .fini = teardown)
{
    static char want[16384];
    kb_gfid_t g = make_file("r", sizeof(want), 9, want);
    cr_assert(enable(dir, &brick_id));
    lread_opened(lr, 8, &g, O_RDONLY);
    open_here(8);
    struct done a = { 0 }, b = { 0 };
    cr_assert_eq(lread_read(lr, 8, 0, 8192, on_done, &a), 0);
    lread_released(lr, 8);
    wait_done(&a);
    cr_assert_eq(a.res, 8192);
    cr_assert_arr_eq(a.data, want, 8192);
    lread_opened(lr, 8, &g, O_RDONLY);
    open_here(8);
    cr_assert_eq(lread_read(lr, 8, 8192, 8192, on_done, &b), 0);
    lread_free(lr);                  /* drains: B completes before free returns */
    lr = NULL;
    cr_assert_eq(b.n, 1);
    cr_assert_eq(b.res, 8192);
    cr_assert_arr_eq(b.data, want + 8192, 8192);
}

/* A disk that does not answer must not hold a read (nor the loop): at the
 * timeout the read is handed back, once; the kernel's late answer is
 * dropped. A pipe nobody writes to stands in for the hung disk. */
Test(local_read, a_read_the_disk_does_not_answer_is_handed_back, .init = setup, .fini = teardown)
{
    static char want[4096];
    kb_gfid_t g = make_file("t", sizeof(want), 1, want);
    cr_assert(enable(dir, &brick_id));
    lread_opened(lr, 7, &g, O_RDONLY);
    int p[2];
    cr_assert_eq(pipe(p), 0);
    cr_assert_eq(lread_test_use_fd(lr, 7, p[0]), 0);
    struct done d = { 0 };
    uint64_t t0 = kb_now_ms();
    cr_assert_eq(lread_read(lr, 7, 0, 4096, on_done, &d), 0);
    wait_done(&d);
    uint64_t took = kb_now_ms() - t0;
    cr_assert_eq(d.res, -ETIMEDOUT, "handed back: %d", d.res);
    cr_assert(took >= 300 && took < 3000, "after the 300 ms timeout: %llu ms", (unsigned long long)took);
    struct lread_counts c;
    lread_counts(lr, &c);
    cr_assert_eq(c.timeouts, 1);
    cr_assert_eq(c.handed_back, 1);
    cr_assert_eq(write(p[1], "late", 4), 4);   /* the disk answers after all */
    pump_ms(100);
    cr_assert_eq(d.n, 1, "the late answer is dropped");
    lread_counts(lr, &c);
    cr_assert_eq(c.served, 0);
    close(p[1]);
}

/* The brick's file system is touched off the loop: the first read of a file
 * whose handle is a FIFO (an open(2) of it waits for a writer forever, as
 * on a hung disk) answers at once and hands the read to the brick; the open
 * is the kernel's to finish (io_uring opens it without waiting) and the
 * object is then refused. An open on the loop thread would hang this test
 * until its timeout. */
Test(local_read, a_handle_open_never_holds_the_loop, .init = setup, .fini = teardown, .timeout = 30)
{
    cr_assert(enable(dir, &brick_id));
    kb_gfid_t g;
    kb_gfid_generate(&g);
    char rel[POSIX_HANDLE_REL_LEN], path[4096];
    posix_handle_rel(&g, rel);
    for (int depth = 2; depth <= 5; depth += 3) {   /* the xx/ and xx/yy/ directories */
        snprintf(path, sizeof(path), "%s/.kembar/handles/%.*s", dir, depth, rel);
        cr_assert(mkdir(path, 0700) == 0 || errno == EEXIST, "%s: %s", path, strerror(errno));
    }
    snprintf(path, sizeof(path), "%s/.kembar/handles/%s", dir, rel);
    cr_assert_eq(mkfifo(path, 0600), 0);
    lread_opened(lr, 12, &g, O_RDONLY);
    struct done d = { 0 };
    cr_assert_eq(lread_read(lr, 12, 0, 4096, on_done, &d), -EAGAIN, "the open is started, the read goes to the brick");
    int rc = -EAGAIN;
    for (int i = 0; i < 500 && rc == -EAGAIN; i++) {
        pump_ms(10);
        rc = lread_read(lr, 12, 0, 4096, on_done, &d);
    }
    cr_assert_eq(rc, -ENOENT, "once open, refused: a FIFO is no file with its gfid (%d)", rc);
    cr_assert_eq(d.n, 0, "nothing completed here");
}
