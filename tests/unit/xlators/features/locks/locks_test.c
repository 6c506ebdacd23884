/*
 * locks_test.c — features/locks over a real storage/posix brick: range
 * conflicts and splits, blocking requests granted in FIFO order without
 * starvation, the contention flag, client-gone release, entrylk, POSIX LK.
 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include "tests/unit/brick_harness.h"
#include "xlators/changelog.h"

static char *dir;
static bh_t *h;
static kb_gfid_t file;

static void setup(void)
{
    char vol[1024], err[512] = "";
    dir = bh_tmpdir("locks");
    cr_assert(dir);
    snprintf(vol, sizeof(vol),
             "volume b-posix\n type storage/posix\n option directory %s\nend-volume\n"
             "volume b-locks\n type features/locks\n subvolumes b-posix\nend-volume\n", dir);
    h = bh_start(vol, err, sizeof(err));
    cr_assert(h, "graph: %s", err);
    cr_assert_eq(bh_create(h, &kb_gfid_root, "f", 0644, O_RDWR, &file, NULL), 0);
}

static void teardown(void)
{
    bh_stop(h);
    bh_rmrf(dir);
    free(dir);
}

TestSuite(locks, .init = setup, .fini = teardown, .timeout = 30);

static kb_cred_t client(uint64_t id) { return (kb_cred_t){ .client_id = id, .lk_owner = 100 + id }; }

static kb_args_t lk_args(uint32_t cmd, uint32_t type, uint64_t start, uint64_t len, uint64_t owner)
{
    return (kb_args_t){ .gfid = file, .name = "repl", .flags = cmd,
                        .lock = { .type = type, .start = start, .len = len, .owner = owner } };
}

static int inodelk(uint64_t cid, uint32_t cmd, uint32_t type, uint64_t start, uint64_t len)
{
    kb_args_t a = lk_args(cmd, type, start, len, 1);
    kb_cred_t c = client(cid);
    return bh_call_xl(h, bh_xl(h, NULL), KB_FOP_INODELK, &a, &c, NULL);
}

static void inodelk_async(uint64_t cid, uint32_t type, uint64_t start, uint64_t len, bh_pending_t *p)
{
    kb_args_t a = lk_args(KB_LK_SETLKW, type, start, len, 1);
    kb_cred_t c = client(cid);
    bh_start_call(h, bh_xl(h, NULL), KB_FOP_INODELK, &a, &c, p);
}

static uint32_t stat_flags(uint64_t cid, const kb_gfid_t *g)
{
    kb_args_t a = { .gfid = *g };
    kb_cred_t c = client(cid);
    kb_reply_t r;
    cr_assert_eq(bh_call_xl(h, bh_xl(h, NULL), KB_FOP_STAT, &a, &c, &r), 0);
    uint32_t f = r.rflags;
    kb_reply_clear(&r);
    return f;
}

Test(locks, conflicting_ranges_and_split)
{
    cr_assert_eq(inodelk(1, KB_LK_SETLK, KB_LK_WRLCK, 0, 100), 0);
    cr_assert_eq(inodelk(2, KB_LK_SETLK, KB_LK_WRLCK, 50, 100), -EAGAIN);
    cr_assert_eq(inodelk(2, KB_LK_SETLK, KB_LK_RDLCK, 99, 1), -EAGAIN);
    cr_assert_eq(inodelk(2, KB_LK_SETLK, KB_LK_RDLCK, 100, 100), 0, "adjacent, no overlap");
    cr_assert_eq(inodelk(3, KB_LK_SETLK, KB_LK_RDLCK, 150, 10), 0, "readers share");
    cr_assert_eq(inodelk(1, KB_LK_SETLK, KB_LK_WRLCK, 0, 100), 0, "own lock again");
    /* another domain is another lock space */
    kb_args_t a = lk_args(KB_LK_SETLK, KB_LK_WRLCK, 0, 0, 1);
    a.name = "heal";
    kb_cred_t c2 = client(2);
    cr_assert_eq(bh_call_xl(h, bh_xl(h, NULL), KB_FOP_INODELK, &a, &c2, NULL), 0);
    /* same client, another lock owner: a different owner */
    a = lk_args(KB_LK_SETLK, KB_LK_WRLCK, 10, 1, 2);
    kb_cred_t c1 = client(1);
    cr_assert_eq(bh_call_xl(h, bh_xl(h, NULL), KB_FOP_INODELK, &a, &c1, NULL), -EAGAIN);
    /* GETLK reports the holder */
    a = lk_args(KB_LK_GETLK, KB_LK_WRLCK, 20, 5, 9);
    kb_reply_t r;
    cr_assert_eq(bh_call_xl(h, bh_xl(h, NULL), KB_FOP_INODELK, &a, &c2, &r), 0);
    cr_assert_eq(r.lock.type, KB_LK_WRLCK);
    cr_assert_eq(r.lock.start, 0);
    cr_assert_eq(r.lock.len, 100);
    kb_reply_clear(&r);
    /* partial unlock splits: [0,40) and [60,100) stay */
    cr_assert_eq(inodelk(1, KB_LK_SETLK, KB_LK_UNLCK, 40, 20), 0);
    cr_assert_eq(inodelk(2, KB_LK_SETLK, KB_LK_WRLCK, 40, 20), 0);
    cr_assert_eq(inodelk(3, KB_LK_SETLK, KB_LK_RDLCK, 39, 1), -EAGAIN);
    cr_assert_eq(inodelk(3, KB_LK_SETLK, KB_LK_RDLCK, 60, 1), -EAGAIN);
    cr_assert_eq(inodelk(2, KB_LK_SETLK, KB_LK_UNLCK, 0, 0), 0);
    cr_assert_eq(inodelk(1, KB_LK_SETLK, KB_LK_UNLCK, 0, 0), 0);
    cr_assert_eq(inodelk(3, KB_LK_SETLK, KB_LK_UNLCK, 0, 0), 0);
    cr_assert_eq(inodelk(4, KB_LK_SETLK, KB_LK_WRLCK, 0, 0), 0, "everything released");
    cr_assert_eq(inodelk(4, KB_LK_SETLK, 7, 0, 0), -EINVAL);
    cr_assert_eq(inodelk(4, 9, KB_LK_WRLCK, 0, 0), -EINVAL);
}

Test(locks, setlkw_fifo_and_contention)
{
    kb_gfid_t other;
    cr_assert_eq(bh_create(h, &kb_gfid_root, "g", 0644, O_RDWR, &other, NULL), 0);
    cr_assert_eq(inodelk(1, KB_LK_SETLK, KB_LK_WRLCK, 0, 0), 0);
    cr_assert_eq(stat_flags(1, &file) & KB_RF_CONTENDED, 0);
    bh_pending_t p2, p3, p4;
    inodelk_async(2, KB_LK_WRLCK, 0, 10, &p2);
    inodelk_async(3, KB_LK_WRLCK, 5, 10, &p3);
    inodelk_async(4, KB_LK_RDLCK, 0, 10, &p4);
    bh_pump(h, 20);
    cr_assert(!p2.done && !p3.done && !p4.done);
    cr_assert(stat_flags(1, &file) & KB_RF_CONTENDED, "a waiter exists: holder is told");
    cr_assert_eq(stat_flags(1, &other) & KB_RF_CONTENDED, 0, "only that inode");
    /* fd ops carry the flag too (args.gfid rides along) */
    uint64_t fd;
    cr_assert_eq(bh_open(h, &file, O_RDWR, &fd), 0);
    kb_args_t w = { .gfid = file, .fd = fd, .off = 0, .data = kb_buf_copy("abc", 3) };
    kb_reply_t r;
    cr_assert_eq(bh_call(h, KB_FOP_WRITE, &w, &r), 3);
    cr_assert(r.rflags & KB_RF_CONTENDED);
    cr_assert_eq(r.attr.size, 3, "the reply is otherwise intact");
    kb_reply_clear(&r);
    kb_buf_unref(w.data);

    cr_assert_eq(inodelk(1, KB_LK_SETLK, KB_LK_UNLCK, 0, 0), 0);
    cr_assert(bh_wait(h, &p2, 2000) == 0 && p2.reply.status == 0);
    cr_assert(p2.reply.rflags & KB_RF_CONTENDED, "3 and 4 still wait");
    bh_pump(h, 20);
    cr_assert(!p3.done && !p4.done, "FIFO: 3 overlaps 2; 4 must not overtake 3");
    cr_assert_eq(inodelk(2, KB_LK_SETLK, KB_LK_UNLCK, 0, 0), 0);
    cr_assert(bh_wait(h, &p3, 2000) == 0 && p3.reply.status == 0);
    bh_pump(h, 20);
    cr_assert(!p4.done);
    cr_assert_eq(inodelk(3, KB_LK_SETLK, KB_LK_UNLCK, 0, 0), 0);
    cr_assert(bh_wait(h, &p4, 2000) == 0 && p4.reply.status == 0);
    cr_assert_eq(p4.reply.rflags & KB_RF_CONTENDED, 0, "nobody waits any more");
    cr_assert_eq(stat_flags(1, &file) & KB_RF_CONTENDED, 0);
    bh_pending_clear(&p2);
    bh_pending_clear(&p3);
    bh_pending_clear(&p4);
    bh_release(h, &file, fd);
}

Test(locks, readers_do_not_starve_a_writer)
{
    cr_assert_eq(inodelk(1, KB_LK_SETLK, KB_LK_RDLCK, 0, 0), 0);
    bh_pending_t pw, pr;
    inodelk_async(2, KB_LK_WRLCK, 0, 0, &pw);
    bh_pump(h, 10);
    cr_assert(!pw.done);
    cr_assert_eq(inodelk(3, KB_LK_SETLK, KB_LK_RDLCK, 0, 10), -EAGAIN, "a reader may not overtake a writer");
    inodelk_async(3, KB_LK_RDLCK, 0, 10, &pr);
    bh_pump(h, 10);
    cr_assert(!pr.done);
    /* the holder itself may still change its own lock (no self-deadlock) */
    cr_assert_eq(inodelk(1, KB_LK_SETLK, KB_LK_RDLCK, 0, 100), 0);
    cr_assert_eq(inodelk(1, KB_LK_SETLK, KB_LK_UNLCK, 0, 0), 0);
    cr_assert(bh_wait(h, &pw, 2000) == 0 && pw.reply.status == 0);
    bh_pump(h, 10);
    cr_assert(!pr.done);
    cr_assert_eq(inodelk(2, KB_LK_SETLK, KB_LK_UNLCK, 0, 0), 0);
    cr_assert(bh_wait(h, &pr, 2000) == 0 && pr.reply.status == 0);
    bh_pending_clear(&pw);
    bh_pending_clear(&pr);
}

Test(locks, client_gone_releases_and_grants)
{
    cr_assert_eq(inodelk(1, KB_LK_SETLK, KB_LK_WRLCK, 0, 0), 0);
    bh_pending_t p1b, p2;
    inodelk_async(2, KB_LK_WRLCK, 0, 0, &p2);
    /* client 1 also waits, in another domain, for client 3 */
    kb_args_t a = lk_args(KB_LK_SETLK, KB_LK_WRLCK, 1000, 10, 1);
    a.name = "other";
    kb_cred_t c3 = client(3);
    cr_assert_eq(bh_call_xl(h, bh_xl(h, NULL), KB_FOP_INODELK, &a, &c3, NULL), 0);
    a = lk_args(KB_LK_SETLKW, KB_LK_WRLCK, 1000, 1, 5);
    a.name = "other";
    kb_cred_t c1 = client(1);
    bh_start_call(h, bh_xl(h, NULL), KB_FOP_INODELK, &a, &c1, &p1b);
    bh_pump(h, 10);
    cr_assert(!p2.done && !p1b.done);
    uint64_t id = 1;
    cr_assert_eq(kb_graph_ctl(h->graph, KB_CTL_CLIENT_GONE, &id), 0);
    cr_assert(p1b.done, "the gone client's waiter completes");
    cr_assert_eq(p1b.reply.status, -ENOTCONN);
    cr_assert(bh_wait(h, &p2, 2000) == 0 && p2.reply.status == 0, "its locks are released");
    struct kb_ctl_status st = { 0 };
    kb_graph_ctl(h->graph, KB_CTL_STATUS, &st);
    cr_assert(st.text && strstr(st.text, "0 waiting"), "%s", st.text);
    free(st.text);
    bh_pending_clear(&p1b);
    bh_pending_clear(&p2);
}

static int entrylk(uint64_t cid, uint32_t cmd, const char *base)
{
    kb_args_t a = { .gfid = kb_gfid_root, .name = "dom", .name2 = (char *)base, .flags = cmd };
    kb_cred_t c = client(cid);
    return bh_call_xl(h, bh_xl(h, NULL), KB_FOP_ENTRYLK, &a, &c, NULL);
}

Test(locks, entrylk)
{
    cr_assert_eq(entrylk(1, KB_ELK_LOCK, "a"), 0);
    cr_assert_eq(entrylk(2, KB_ELK_LOCK_NB, "a"), -EAGAIN);
    cr_assert_eq(entrylk(2, KB_ELK_LOCK_NB, "b"), 0);
    cr_assert_eq(entrylk(3, KB_ELK_LOCK_NB, NULL), -EAGAIN, "whole directory vs a name");
    cr_assert_eq(entrylk(2, KB_ELK_UNLOCK, "zzz"), -EINVAL, "not held");
    bh_pending_t p;
    kb_args_t a = { .gfid = kb_gfid_root, .name = "dom", .name2 = "a", .flags = KB_ELK_LOCK };
    kb_cred_t c3 = client(3);
    bh_start_call(h, bh_xl(h, NULL), KB_FOP_ENTRYLK, &a, &c3, &p);
    bh_pump(h, 10);
    cr_assert(!p.done);
    cr_assert(stat_flags(1, &kb_gfid_root) & KB_RF_CONTENDED);
    cr_assert_eq(entrylk(1, KB_ELK_UNLOCK, "a"), 0);
    cr_assert(bh_wait(h, &p, 2000) == 0 && p.reply.status == 0);
    cr_assert_eq(entrylk(1, KB_ELK_LOCK_NB, "a"), -EAGAIN, "now client 3 holds it");
    cr_assert_eq(entrylk(3, KB_ELK_UNLOCK, "a"), 0);
    cr_assert_eq(entrylk(2, KB_ELK_UNLOCK, "b"), 0);
    cr_assert_eq(entrylk(4, KB_ELK_LOCK_NB, NULL), 0, "all free: whole directory");
    cr_assert_eq(entrylk(5, KB_ELK_LOCK_NB, "x"), -EAGAIN);
    bh_pending_clear(&p);
}

static int lk(uint64_t owner, uint32_t cmd, uint32_t type, uint64_t start, uint64_t len, uint32_t flock,
              kb_lock_t *out)
{
    kb_args_t a = { .gfid = file, .flags = cmd,
                    .lock = { .type = type, .start = start, .len = len, .owner = owner, .pid = (uint32_t)owner,
                              .flock = flock } };
    kb_cred_t c = client(1);
    kb_reply_t r;
    int rc = bh_call_xl(h, bh_xl(h, NULL), KB_FOP_LK, &a, &c, &r);
    if (out)
        *out = r.lock;
    kb_reply_clear(&r);
    return rc;
}

Test(locks, posix_lk_semantics)
{
    kb_lock_t l;
    cr_assert_eq(lk(10, KB_LK_SETLK, KB_LK_RDLCK, 0, 100, 0, NULL), 0);
    cr_assert_eq(lk(10, KB_LK_SETLK, KB_LK_WRLCK, 0, 50, 0, NULL), 0, "upgrade part of it");
    cr_assert_eq(lk(20, KB_LK_GETLK, KB_LK_WRLCK, 60, 10, 0, &l), 0);
    cr_assert_eq(l.type, KB_LK_RDLCK);
    cr_assert_eq(l.start, 50);
    cr_assert_eq(l.len, 50);
    cr_assert_eq(l.owner, 10);
    cr_assert_eq(l.pid, 10);
    cr_assert_eq(lk(20, KB_LK_SETLK, KB_LK_RDLCK, 60, 10, 0, NULL), 0, "read shares the read part");
    cr_assert_eq(lk(20, KB_LK_SETLK, KB_LK_RDLCK, 10, 10, 0, NULL), -EAGAIN, "the write part excludes");
    cr_assert_eq(lk(20, KB_LK_GETLK, KB_LK_RDLCK, 200, 10, 0, &l), 0);
    cr_assert_eq(l.type, KB_LK_UNLCK);
    /* merge then split */
    cr_assert_eq(lk(30, KB_LK_SETLK, KB_LK_WRLCK, 1000, 10, 0, NULL), 0);
    cr_assert_eq(lk(30, KB_LK_SETLK, KB_LK_WRLCK, 1010, 10, 0, NULL), 0);
    cr_assert_eq(lk(40, KB_LK_GETLK, KB_LK_RDLCK, 1000, 20, 0, &l), 0);
    cr_assert(l.start == 1000 && l.len == 20, "adjacent locks merged (%llu+%llu)", (unsigned long long)l.start,
              (unsigned long long)l.len);
    cr_assert_eq(lk(30, KB_LK_SETLK, KB_LK_UNLCK, 1005, 10, 0, NULL), 0);
    cr_assert_eq(lk(40, KB_LK_SETLK, KB_LK_WRLCK, 1005, 10, 0, NULL), 0);
    cr_assert_eq(lk(40, KB_LK_GETLK, KB_LK_WRLCK, 1015, 100, 0, &l), 0);
    cr_assert(l.start == 1015 && l.len == 5 && l.owner == 30);
    /* flock is its own namespace, whole file */
    cr_assert_eq(lk(50, KB_LK_SETLK, KB_LK_WRLCK, 0, 0, 1, NULL), 0);
    cr_assert_eq(lk(60, KB_LK_SETLK, KB_LK_RDLCK, 5000, 1, 1, NULL), -EAGAIN);
    cr_assert_eq(lk(50, KB_LK_SETLK, KB_LK_UNLCK, 0, 0, 1, NULL), 0);
    cr_assert_eq(lk(60, KB_LK_SETLK, KB_LK_RDLCK, 5000, 1, 1, NULL), 0);
    /* close (FLUSH) drops the owner's record locks */
    kb_args_t fl = { .gfid = file, .lock = { .owner = 10 } };
    kb_cred_t c = client(1);
    cr_assert_eq(bh_call_xl(h, bh_xl(h, NULL), KB_FOP_FLUSH, &fl, &c, NULL), -EBADF, "posix: no such fd");
    cr_assert_eq(lk(20, KB_LK_SETLK, KB_LK_WRLCK, 0, 50, 0, NULL), 0, "owner 10's locks are gone");
}

Test(locks, pass_through)
{
    kb_iatt_t ia;
    cr_assert_eq(bh_lookup(h, &kb_gfid_root, "f", &ia), 0);
    cr_assert(kb_gfid_eq(&ia.gfid, &file));
    kb_gfid_t d;
    cr_assert_eq(bh_mkdir(h, &kb_gfid_root, "d", 0755, &d), 0);
    cr_assert_eq(bh_lookup(h, &kb_gfid_root, "d", &ia), 0);
    cr_assert(S_ISDIR(ia.mode));
}

/* ---- application locks belong to the client instance (lk_client) ---- */

static int app_lk(uint64_t conn, uint64_t inst, uint32_t cmd, uint32_t type, uint64_t start, uint64_t owner)
{
    kb_args_t a = { .gfid = file, .flags = cmd, .lock = { .type = type, .start = start, .len = 10, .owner = owner } };
    kb_cred_t c = { .client_id = conn, .lk_client = inst, .lk_owner = owner };
    return bh_call_xl(h, bh_xl(h, NULL), KB_FOP_LK, &a, &c, NULL);
}

Test(locks, lk_locks_outlive_a_connection_of_their_instance)
{
    const uint64_t inst = 1ull << 63 | 77, other = 1ull << 63 | 88;
    /* connection 1 of the instance takes it; connection 2 (a new graph) is the same owner */
    cr_assert_eq(app_lk(1, inst, KB_LK_SETLK, KB_LK_WRLCK, 0, 5), 0);
    cr_assert_eq(app_lk(2, inst, KB_LK_SETLK, KB_LK_WRLCK, 0, 5), 0, "the same instance's other connection");
    cr_assert_eq(app_lk(3, other, KB_LK_SETLK, KB_LK_WRLCK, 0, 9), -EAGAIN);
    /* another client waits for it */
    bh_pending_t w;
    kb_args_t a = { .gfid = file, .flags = KB_LK_SETLKW, .lock = { .type = KB_LK_WRLCK, .start = 0, .len = 10, .owner = 9 } };
    kb_cred_t c = { .client_id = 3, .lk_client = other, .lk_owner = 9 };
    bh_start_call(h, bh_xl(h, NULL), KB_FOP_LK, &a, &c, &w);
    bh_pump(h, 10);
    cr_assert(!w.done);
    /* both connections of the instance go: the lock stays (the lease is the server's) */
    uint64_t id = 1;
    cr_assert_eq(kb_graph_ctl(h->graph, KB_CTL_CLIENT_GONE, &id), 0);
    id = 2;
    cr_assert_eq(kb_graph_ctl(h->graph, KB_CTL_CLIENT_GONE, &id), 0);
    bh_pump(h, 10);
    cr_assert(!w.done, "a connection going does not hand the instance's lock to another client");
    /* the instance is gone for good: now the waiter gets it */
    id = inst;
    cr_assert_eq(kb_graph_ctl(h->graph, KB_CTL_LK_CLIENT_GONE, &id), 0);
    cr_assert(bh_wait(h, &w, 2000) == 0 && w.reply.status == 0, "granted once the lease ran out");
    bh_pending_clear(&w);
    cr_assert_eq(app_lk(4, inst, KB_LK_SETLK, KB_LK_WRLCK, 0, 5), -EAGAIN, "the old holder cannot take it back");
}

Test(locks, a_waiting_lk_call_dies_with_its_connection)
{
    const uint64_t inst = 1ull << 63 | 5, other = 1ull << 63 | 6;
    cr_assert_eq(app_lk(1, other, KB_LK_SETLK, KB_LK_WRLCK, 0, 1), 0);
    bh_pending_t w;
    kb_args_t a = { .gfid = file, .flags = KB_LK_SETLKW, .lock = { .type = KB_LK_WRLCK, .start = 0, .len = 10, .owner = 2 } };
    kb_cred_t c = { .client_id = 7, .lk_client = inst, .lk_owner = 2 };
    bh_start_call(h, bh_xl(h, NULL), KB_FOP_LK, &a, &c, &w);
    bh_pump(h, 10);
    uint64_t id = 7;
    cr_assert_eq(kb_graph_ctl(h->graph, KB_CTL_CLIENT_GONE, &id), 0);
    cr_assert(w.done && w.reply.status == -ENOTCONN, "nobody would hold the lock it waits for");
    bh_pending_clear(&w);
    id = other;
    cr_assert_eq(kb_graph_ctl(h->graph, KB_CTL_LK_CLIENT_GONE, &id), 0);
    cr_assert_eq(app_lk(8, inst, KB_LK_SETLK, KB_LK_WRLCK, 0, 2), 0, "and it was not granted behind our back");
}

Test(locks, a_client_whose_lease_ran_out_cannot_reclaim)
{
    const uint64_t inst = 1ull << 63 | 99;
    cr_assert_eq(app_lk(1, inst, KB_LK_SETLK, KB_LK_RDLCK, 0, 3), 0);     /* qemu's shared locks */
    cr_assert_eq(app_lk(1, inst, KB_LK_SETLK | KB_LK_RECLAIM, KB_LK_RDLCK, 0, 3), 0,
                 "a reclaim while the lease holds (a blip, a brick that restarted) is granted");
    uint64_t id = inst;
    cr_assert_eq(kb_graph_ctl(h->graph, KB_CTL_LK_CLIENT_GONE, &id), 0);
    /* Another host took the VM and let it go again: nothing conflicts now,
     * but the old holder must not silently get its lock back. */
    cr_assert_eq(app_lk(2, inst, KB_LK_SETLK | KB_LK_RECLAIM, KB_LK_RDLCK, 0, 3), -ESTALE);
    cr_assert_eq(app_lk(2, inst, KB_LK_SETLK, KB_LK_RDLCK, 0, 4), 0, "a new lock of that client is its right");
}

/* Start LK request A of C, which must wait (WHAT says for whom). */
static void lk_wait(const kb_args_t *a, const kb_cred_t *c, bh_pending_t *w, const char *what)
{
    bh_start_call(h, bh_xl(h, NULL), KB_FOP_LK, a, c, w);
    bh_pump(h, 10);
    cr_assert(!w->done, "%s", what);
}

/* Withdraw C's waiting request A (KB_LK_CANCEL). */
static void lk_cancel(const kb_args_t *a, const kb_cred_t *c)
{
    kb_args_t cancel = *a;
    cancel.flags = KB_LK_SETLK | KB_LK_CANCEL;
    cancel.lock.type = KB_LK_UNLCK;
    cr_assert_eq(bh_call_xl(h, bh_xl(h, NULL), KB_FOP_LK, &cancel, c, NULL), 0);
}

/* An interrupted F_SETLKW is withdrawn (KB_LK_CANCEL): the owner's waiting
 * request ends (-EAGAIN) and is never granted later, while the locks that
 * owner holds stay; a cancel is never a lock nor an unlock. */
Test(locks, a_cancel_withdraws_only_the_waiting_request)
{
    const uint64_t x = 1ull << 63 | 11, y = 1ull << 63 | 12;
    cr_assert_eq(app_lk(1, x, KB_LK_SETLK, KB_LK_WRLCK, 0, 1), 0);          /* X holds [0,100) */
    cr_assert_eq(app_lk(2, y, KB_LK_SETLK, KB_LK_RDLCK, 200, 1), 0);        /* Y holds [200,300) */
    for (uint32_t flock = 0; flock < 2; flock++) {
        if (flock)
            cr_assert_eq(lk(1, KB_LK_SETLK, KB_LK_WRLCK, 0, 0, 1, NULL), 0);  /* flock held (client 1) */
        bh_pending_t w;
        kb_args_t a = { .gfid = file, .flags = KB_LK_SETLKW,
                        .lock = { .type = KB_LK_WRLCK, .start = 0, .len = 100, .owner = 2, .flock = flock } };
        kb_cred_t c = { .client_id = 2, .lk_client = y, .lk_owner = 2 };
        lk_wait(&a, &c, &w, "Y waits");
        lk_cancel(&a, &c);
        cr_assert(w.done && w.reply.status == -EAGAIN, "the wait is withdrawn");
        bh_pending_clear(&w);
        if (flock)
            cr_assert_eq(lk(1, KB_LK_SETLK, KB_LK_UNLCK, 0, 0, 1, NULL), 0);
    }
    /* Y's read lock is still Y's: X may not write-lock it */
    cr_assert_eq(app_lk(3, x, KB_LK_SETLK, KB_LK_WRLCK, 200, 1), -EAGAIN, "Y's own lock stays");
    /* and nothing was granted to Y behind X: once X lets go, a third owner gets [0,100) */
    cr_assert_eq(app_lk(1, x, KB_LK_SETLK, KB_LK_UNLCK, 0, 1), 0);
    cr_assert_eq(app_lk(4, 1ull << 63 | 13, KB_LK_SETLK, KB_LK_WRLCK, 0, 4), 0, "no late grant to Y");
}

/* A waiter queued only behind the withdrawn one (fair order, no conflict with
 * what is held) is granted at the cancel, not at some later unlock. */
Test(locks, a_cancel_grants_the_waiters_queued_behind_it)
{
    const uint64_t x = 1ull << 63 | 21, y = 1ull << 63 | 22, z = 1ull << 63 | 23;
    cr_assert_eq(app_lk(1, x, KB_LK_SETLK, KB_LK_WRLCK, 0, 1), 0);             /* X holds [0,10) */
    bh_pending_t wy, wz;
    kb_args_t ay = { .gfid = file, .flags = KB_LK_SETLKW,
                     .lock = { .type = KB_LK_WRLCK, .start = 0, .len = 100, .owner = 2 } };
    kb_cred_t cy = { .client_id = 2, .lk_client = y, .lk_owner = 2 };
    lk_wait(&ay, &cy, &wy, "Y waits for X");
    kb_args_t az = { .gfid = file, .flags = KB_LK_SETLKW,
                     .lock = { .type = KB_LK_WRLCK, .start = 50, .len = 10, .owner = 3 } };
    kb_cred_t cz = { .client_id = 3, .lk_client = z, .lk_owner = 3 };
    lk_wait(&az, &cz, &wz, "Z waits behind Y (fair order)");
    lk_cancel(&ay, &cy);
    bh_pump(h, 10);
    cr_assert(wy.done && wy.reply.status == -EAGAIN, "Y's wait is withdrawn");
    cr_assert(wz.done && wz.reply.status == 0, "Z is granted at once");
    cr_assert_eq(app_lk(4, 1ull << 63 | 24, KB_LK_SETLK, KB_LK_WRLCK, 50, 5), -EAGAIN, "[50,60) is Z's");
    bh_pending_clear(&wy);
    bh_pending_clear(&wz);
}

/* ---------------- XATTROP under a lock (changelog.h §5) ---------------- */

/* XATTROP KB_XOP_ADD_LOCKED of dirty +1 in COL on G by client CID, under the
 * lock COND names; *DIRTY = the brick's dirty counter after (unchanged when
 * refused). */
static int xop_locked(uint64_t cid, const kb_gfid_t *g, const kb_cl_cond_t *cond, int col, int32_t *dirty)
{
    kb_cl_matrix_t d = { { { 0 } } }, now;
    d.v[KB_CL_DIRTY_ROW][col] = 1;
    kb_args_t a = { .gfid = *g, .name = KB_CL_XATTR, .flags = KB_XOP_ADD_LOCKED,
                    .data = kb_cl_cond_payload(&d, cond) };
    cr_assert_not_null(a.data);
    kb_cred_t c = client(cid);
    int rc = bh_call_xl(h, bh_xl(h, NULL), KB_FOP_XATTROP, &a, &c, NULL);
    kb_buf_unref(a.data);
    kb_args_t get = { .gfid = *g, .name = KB_CL_XATTR, .flags = KB_XOP_GET };
    kb_reply_t r;
    cr_assert_eq(bh_call_xl(h, bh_xl(h, NULL), KB_FOP_XATTROP, &get, &c, &r), 0);
    kb_cl_decode((const uint8_t *)r.data->data, &now);
    kb_reply_clear(&r);
    *dirty = now.v[KB_CL_DIRTY_ROW][col];
    return rc;
}

Test(locks, a_pre_op_under_an_inodelk_applies_only_while_its_owner_holds_it)
{
    kb_cl_cond_t c = { .kind = KB_CL_COND_INODELK, .owner = 1, .domain = "repl" };
    int32_t dirty;
    cr_assert_eq(xop_locked(1, &file, &c, KB_CL_DATA, &dirty), -ENOLCK, "no lock yet");
    cr_assert_eq(dirty, 0, "nothing applied");
    cr_assert_eq(inodelk(1, KB_LK_SETLK, KB_LK_WRLCK, 0, 0), 0);
    cr_assert_eq(xop_locked(2, &file, &c, KB_CL_DATA, &dirty), -ENOLCK, "another connection's lock");
    c.owner = 2;
    cr_assert_eq(xop_locked(1, &file, &c, KB_CL_DATA, &dirty), -ENOLCK, "another owner's");
    c.owner = 1;
    snprintf(c.domain, sizeof(c.domain), "other");
    cr_assert_eq(xop_locked(1, &file, &c, KB_CL_DATA, &dirty), -ENOLCK, "another domain's");
    snprintf(c.domain, sizeof(c.domain), "repl");
    cr_assert_eq(dirty, 0);
    cr_assert_eq(xop_locked(1, &file, &c, KB_CL_DATA, &dirty), 0, "the holder");
    cr_assert_eq(dirty, 1, "applied once");
    cr_assert_eq(inodelk(1, KB_LK_SETLK, KB_LK_UNLCK, 0, 0), 0);
    cr_assert_eq(xop_locked(1, &file, &c, KB_CL_DATA, &dirty), -ENOLCK, "released");
    cr_assert_eq(dirty, 1);
}

Test(locks, a_pre_op_under_an_entrylk_needs_that_name_locked)
{
    kb_cl_cond_t c = { .kind = KB_CL_COND_ENTRYLK, .owner = 101, .domain = "dom", .base = "a" };
    int32_t dirty;
    cr_assert_eq(entrylk(1, KB_ELK_LOCK_NB, "b"), 0);
    cr_assert_eq(xop_locked(1, &kb_gfid_root, &c, KB_CL_ENTRY, &dirty), -ENOLCK, "another name");
    cr_assert_eq(entrylk(1, KB_ELK_LOCK_NB, "a"), 0);   /* client 1: lk_owner 101 */
    cr_assert_eq(xop_locked(2, &kb_gfid_root, &c, KB_CL_ENTRY, &dirty), -ENOLCK, "another client");
    cr_assert_eq(dirty, 0);
    cr_assert_eq(xop_locked(1, &kb_gfid_root, &c, KB_CL_ENTRY, &dirty), 0);
    cr_assert_eq(dirty, 1);
    cr_assert_eq(entrylk(1, KB_ELK_UNLOCK, "a"), 0);
    cr_assert_eq(xop_locked(1, &kb_gfid_root, &c, KB_CL_ENTRY, &dirty), -ENOLCK);
    cr_assert_eq(dirty, 1);
    cr_assert_eq(entrylk(1, KB_ELK_UNLOCK, "b"), 0);
}

/* Whatever the bytes, a malformed condition is refused, never applied. */
Test(locks, a_malformed_condition_is_refused)
{
    cr_assert_eq(inodelk(1, KB_LK_SETLK, KB_LK_WRLCK, 0, 0), 0);
    kb_cl_matrix_t d = { { { 0 } } };
    d.v[KB_CL_DIRTY_ROW][KB_CL_DATA] = 1;
    kb_cl_cond_t c = { .kind = KB_CL_COND_INODELK, .owner = 1, .domain = "repl" };
    kb_buf_t *good = kb_cl_cond_payload(&d, &c);
    cr_assert_not_null(good);
    kb_cred_t cr = client(1);
    for (size_t cut = 0; cut <= good->len + 1; cut++) {
        kb_buf_t *b = kb_buf_new(good->len + 1);
        memcpy(b->data, good->data, good->len);
        ((uint8_t *)b->data)[good->len] = 0;
        b->len = cut;                        /* every truncation, and one trailing byte */
        kb_args_t a = { .gfid = file, .name = KB_CL_XATTR, .flags = KB_XOP_ADD_LOCKED, .data = b };
        int rc = bh_call_xl(h, bh_xl(h, NULL), KB_FOP_XATTROP, &a, &cr, NULL);
        cr_assert_eq(rc, cut == good->len ? 0 : -EINVAL, "length %zu of %zu: %d", cut, good->len, rc);
        kb_buf_unref(b);
    }
    kb_cl_matrix_t out;
    kb_cl_cond_t back;
    cr_assert_eq(kb_cl_cond_parse(good->data, good->len, &back), 0);
    cr_assert(back.kind == c.kind && back.owner == 1 && !strcmp(back.domain, "repl") && !back.base[0]);
    kb_cl_decode((const uint8_t *)good->data, &out);        /* the deltas lead the payload */
    cr_assert_eq(out.v[KB_CL_DIRTY_ROW][KB_CL_DATA], 1);
    ((uint8_t *)good->data)[KB_CL_MATRIX_BYTES] = 7;          /* no such kind */
    cr_assert_eq(kb_cl_cond_parse(good->data, good->len, &back), -EINVAL);
    kb_buf_unref(good);
    kb_cl_cond_t bad = { .kind = KB_CL_COND_INODELK, .owner = 1, .domain = "repl", .base = "x" };
    cr_assert_null(kb_cl_cond_payload(&d, &bad), "a basename on an inode lock");
    bad = (kb_cl_cond_t){ .kind = KB_CL_COND_ENTRYLK, .owner = 1, .domain = "dom" };
    cr_assert_null(kb_cl_cond_payload(&d, &bad), "an entry lock without its name");
    /* below features/locks, storage/posix refuses the flag */
    kb_cl_cond_t ok = { .kind = KB_CL_COND_INODELK, .owner = 1, .domain = "repl" };
    kb_args_t a = { .gfid = file, .name = KB_CL_XATTR, .flags = KB_XOP_ADD_LOCKED,
                    .data = kb_cl_cond_payload(&d, &ok) };
    cr_assert_eq(bh_call_xl(h, bh_xl(h, "b-posix"), KB_FOP_XATTROP, &a, &cr, NULL), -EINVAL);
    kb_buf_unref(a.data);
}
