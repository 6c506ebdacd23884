/*
 * takeover_test.c — libkembar's handles as data (client/takeover.h, the
 * handle part of client/graphs.c): the watch hears every handle made, every
 * lock change and every release before the caller does; handles restored
 * with their values in a new client are reopened by gfid and their locks
 * taken again before any call runs on them; a lock another owner holds now,
 * an incomplete log or a file that is gone fails that handle with EBADFD,
 * and its release still works.
 *
 * A second client on the same brick directory stands for the next serving
 * process (its own features/locks: the locks it holds are the ones it took
 * again).
 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>

#include "client/internal.h"
#include "client/takeover.h"

static char dir[64];

static kbc_t *locks_client(void)
{
    if (!kb_xlator_type_find("storage/posix") || !kb_xlator_type_find("features/locks"))
        cr_skip_test("storage/posix or features/locks is not linked in");
    if (!dir[0]) {
        strcpy(dir, "/var/tmp/kbc-takeover-XXXXXX");
        cr_assert_not_null(mkdtemp(dir));
    }
    char vf[512], err[256] = "";
    snprintf(vf, sizeof(vf),
             "volume b0\n  type storage/posix\n  option directory %s\nend-volume\n\n"
             "volume l0\n  type features/locks\n  subvolumes b0\nend-volume\n", dir);
    kbc_t *c = kbc_new_from_volfile(vf, NULL, err, sizeof(err));
    cr_assert_not_null(c, "%s", err);
    return c;
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *f)
{
    (void)st; (void)flag; (void)f;
    return remove(p);
}

static void cleanup(void)
{
    if (dir[0])
        nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    dir[0] = 0;
}

/* ---- the watch: a deep copy of what it last heard ---- */

static pthread_mutex_t wmu = PTHREAD_MUTEX_INITIALIZER;
static struct {
    unsigned puts;
    uint64_t closed;
    kbc_handle_info_t h;
    kbc_lkown_t own[16];
    kb_lkreq_t req[64];
    kb_lklog_t log;
} w;

static void w_put(void *arg, const kbc_handle_info_t *h)
{
    (void)arg;
    pthread_mutex_lock(&wmu);
    w.puts++;
    w.h = *h;
    if (h->nowners)
        memcpy(w.own, h->owners, KB_MIN(h->nowners, 16u) * sizeof(w.own[0]));
    w.h.owners = w.own;
    w.log = *h->locks;
    if (h->locks->n)
        memcpy(w.req, h->locks->req, KB_MIN(h->locks->n, 64u) * sizeof(w.req[0]));
    w.log.req = w.req;
    w.h.locks = &w.log;
    pthread_mutex_unlock(&wmu);
}

static void w_closed(void *arg, uint64_t value)
{
    (void)arg;
    pthread_mutex_lock(&wmu);
    w.closed = value;
    pthread_mutex_unlock(&wmu);
}

static int lk(kbc_t *c, const kb_gfid_t *g, uint64_t fd, uint32_t cmd, uint32_t type, uint64_t owner,
              uint64_t start, kb_lock_t *out)
{
    kb_args_t a = { .gfid = *g, .fd = fd, .flags = cmd,
                    .lock = { .type = type, .start = start, .len = 10, .owner = owner, .pid = 77 } };
    kb_reply_t r;
    int rc = kbc_call(c, KB_FOP_LK, &a, &r);
    if (out)
        *out = r.lock;
    kb_reply_clear(&r);
    return rc;
}

static int on_handle(kbc_t *c, kb_op_t op, const kb_gfid_t *g, uint64_t fd)
{
    static char byte = 'x';
    kb_args_t a = { .gfid = *g, .fd = fd, .size = 1 };
    if (op == KB_FOP_WRITE)
        a.data = kb_buf_copy(&byte, 1);
    kb_reply_t r;
    int rc = kbc_call(c, op, &a, &r);
    kb_reply_clear(&r);
    kb_buf_unref(a.data);
    return rc;
}

/* Who holds [START, START+10) as owner 0x2222 sees it through FD. */
static uint32_t held(kbc_t *c, const kb_gfid_t *g, uint64_t fd, uint64_t start)
{
    kb_lock_t l;
    cr_assert_eq(lk(c, g, fd, KB_LK_GETLK, KB_LK_WRLCK, 0x2222, start, &l), 0);
    return l.type;
}

Test(client_takeover, the_watch_hears_opens_locks_flushes_and_releases, .fini = cleanup)
{
    kbc_t *c = locks_client();
    memset(&w, 0, sizeof(w));
    kbc_handles_watch(c, w_put, w_closed, NULL);
    kbc_fd_t *d;
    cr_assert_eq(kbc_open_path(c, "/img", O_CREAT | O_RDWR, 0644, &d), 0);
    uint64_t v = kbc_fd_handle(d);
    kb_gfid_t g = *kbc_fd_gfid(d);
    cr_assert_eq(w.puts, 1, "the open");
    cr_assert_eq(w.h.value, v);
    cr_assert(kb_gfid_eq(&w.h.gfid, &g));
    cr_assert_eq(w.h.flags & O_ACCMODE, O_RDWR);
    cr_assert_eq(w.h.flags & (O_CREAT | O_TRUNC | O_EXCL), 0);
    cr_assert_eq(lk(c, &g, v, KB_LK_SETLK, KB_LK_WRLCK, 0xA, 0, NULL), 0);
    cr_assert_eq(w.puts, 2, "the lock");
    cr_assert_eq(w.h.locks->n, 1);
    cr_assert_eq(w.h.locks->req[0].owner, 0xA);
    cr_assert_eq(w.h.nowners, 1);
    kb_args_t f = { .gfid = g, .fd = v, .lock = { .type = KB_LK_UNLCK, .owner = 0xB } };
    kb_reply_t r;
    kbc_call(c, KB_FOP_FLUSH, &f, &r);
    kb_reply_clear(&r);
    cr_assert_eq(w.puts, 3, "the flush");
    cr_assert_eq(w.h.nowners, 2);
    cr_assert(w.h.owners[1].process, "a FLUSH names a process");
    cr_assert_eq(w.closed, 0);
    cr_assert_eq(kbc_close(d), 0);
    cr_assert_eq(w.closed, v, "the release");
    kbc_free(c);
}

static unsigned fail_count;
static bool fail_done;
static void restored_count(void *arg, unsigned nfailed)
{
    (void)arg;
    fail_count = nfailed;
    __atomic_store_n(&fail_done, true, __ATOMIC_RELEASE);
}

static void restore_wait(kbc_t *c, const kbc_handle_info_t *hs, uint32_t n)
{
    fail_done = false;
    cr_assert_eq(kbc_handles_restore(c, hs, n, restored_count, NULL), 0);
    for (int i = 0; i < 200 && !__atomic_load_n(&fail_done, __ATOMIC_ACQUIRE); i++)
        usleep(10000);
    cr_assert(fail_done);
}

Test(client_takeover, restored_handles_are_reopened_with_their_locks, .fini = cleanup)
{
    /* The first process: a file open, an OFD lock on it, then it dies. */
    kbc_t *c1 = locks_client();
    memset(&w, 0, sizeof(w));
    kbc_handles_watch(c1, w_put, w_closed, NULL);
    kbc_fd_t *d1;
    cr_assert_eq(kbc_open_path(c1, "/img", O_CREAT | O_RDWR, 0644, &d1), 0);
    kb_gfid_t g = *kbc_fd_gfid(d1);
    uint64_t v = kbc_fd_handle(d1);
    cr_assert_eq(lk(c1, &g, v, KB_LK_SETLK, KB_LK_WRLCK, 0xA, 0, NULL), 0);
    kbc_lkown_t own[16];
    kb_lkreq_t req[64];
    kb_lklog_t log;
    kbc_handle_info_t saved;
    pthread_mutex_lock(&wmu);
    saved = w.h;
    memcpy(own, w.own, sizeof(own));
    memcpy(req, w.req, sizeof(req));
    log = w.log;
    log.req = req;
    saved.owners = own;
    saved.locks = &log;
    pthread_mutex_unlock(&wmu);
    cr_assert_eq(saved.value, v);
    cr_assert_eq(log.n, 1);

    /* The next process restores it with the same value. */
    kbc_t *c2 = locks_client();
    kbc_handles_watch(c2, w_put, w_closed, NULL);
    restore_wait(c2, &saved, 1);
    cr_assert_eq(fail_count, 0);
    cr_assert_eq(on_handle(c2, KB_FOP_WRITE, &g, v), 1, "the kernel's fh works in the new process");
    kbc_fd_t *d2;
    cr_assert_eq(kbc_open_path(c2, "/img", O_RDWR, 0, &d2), 0);
    cr_assert_neq(kbc_fd_handle(d2), v, "new handles take other values");
    cr_assert_eq(held(c2, &g, kbc_fd_handle(d2), 0), KB_LK_WRLCK, "its lock was taken again");
    cr_assert_eq(lk(c2, &g, kbc_fd_handle(d2), KB_LK_SETLK, KB_LK_WRLCK, 0xC, 0, NULL), -EAGAIN);
    /* Its release drops its description's locks, as before. */
    cr_assert_eq(on_handle(c2, KB_FOP_RELEASE, &g, v), 0);
    cr_assert_eq(w.closed, v);
    cr_assert_eq(held(c2, &g, kbc_fd_handle(d2), 0), KB_LK_UNLCK, "released with its handle");
    cr_assert_eq(kbc_close(d2), 0);
    kbc_close(d1);
    kbc_free(c2);
    kbc_free(c1);
}

Test(client_takeover, a_lock_it_cannot_take_again_fails_the_handle, .fini = cleanup)
{
    kbc_t *c = locks_client();
    kbc_fd_t *d;
    cr_assert_eq(kbc_open_path(c, "/img", O_CREAT | O_RDWR, 0644, &d), 0);
    kb_gfid_t g = *kbc_fd_gfid(d);
    /* Another owner took the range meanwhile (the lease ran out). */
    cr_assert_eq(lk(c, &g, kbc_fd_handle(d), KB_LK_SETLK, KB_LK_WRLCK, 0xD, 0, NULL), 0);
    kb_lkreq_t req = { .owner = 0xA, .type = KB_LK_WRLCK, .start = 0, .len = 10 };
    kb_lklog_t log = { .req = &req, .n = 1, .cap = 1 };
    kbc_lkown_t own = { .owner = 0xA };
    uint64_t v = (3ull << 32) | 9;
    kbc_handle_info_t h = { .value = v, .gfid = g, .flags = O_RDWR, .nowners = 1, .owners = &own, .locks = &log };
    restore_wait(c, &h, 1);
    cr_assert_eq(fail_count, 1);
    cr_assert_eq(on_handle(c, KB_FOP_WRITE, &g, v), -EBADFD, "never two writers under one lock");
    cr_assert_eq(lk(c, &g, v, KB_LK_SETLK, KB_LK_RDLCK, 0xA, 20, NULL), -EBADFD, "nor a new lock");
    cr_assert_eq(lk(c, &g, v, KB_LK_SETLK, KB_LK_UNLCK, 0xA, 0, NULL), 0, "an unlock still goes");
    cr_assert_eq(on_handle(c, KB_FOP_FLUSH, &g, v), 0, "so does a flush (close(2))");
    cr_assert_eq(on_handle(c, KB_FOP_RELEASE, &g, v), 0, "its release still works");
    cr_assert_eq(on_handle(c, KB_FOP_WRITE, &g, v), -EBADF, "and it is gone");

    /* An incomplete log, and a file that is gone, fail the same way. */
    log.incomplete = true;
    h.value = (4ull << 32) | 10;
    kbc_handle_info_t gone = { .value = (5ull << 32) | 11, .gfid = { { 9, 9, 9 } }, .flags = O_RDWR };
    kbc_handle_info_t two[2] = { h, gone };
    restore_wait(c, two, 2);
    cr_assert_eq(fail_count, 2);
    cr_assert_eq(on_handle(c, KB_FOP_READ, &g, two[0].value), -EBADFD);
    cr_assert_eq(on_handle(c, KB_FOP_READ, &gone.gfid, gone.value), -EBADFD);
    cr_assert_eq(on_handle(c, KB_FOP_RELEASE, &gone.gfid, gone.value), 0, "no fd anywhere: nothing to release");
    cr_assert_eq(on_handle(c, KB_FOP_RELEASE, &g, two[0].value), 0);
    /* Values already in use are refused. */
    kbc_handle_info_t dup = { .value = kbc_fd_handle(d), .gfid = g };
    cr_assert_eq(kbc_handles_restore(c, &dup, 1, restored_count, NULL), -EEXIST);
    cr_assert_eq(kbc_close(d), 0);
    kbc_free(c);
}
