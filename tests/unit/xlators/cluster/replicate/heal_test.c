/*
 * heal_test.c — self-heal of cluster/replicate (heal.h) over two or three
 * real bricks (storage/posix + features/locks) in one process. The same
 * replicate instance serves the writes and is the heal daemon
 * (self-heal-daemon on); a brick "goes away" when its locks translator
 * tells replicate CHILD_DOWN, and comes back with CHILD_UP.
 *
 * Checked on the brick directories themselves: byte-identical copies,
 * empty indexes, marks taken back, sparse files staying sparse, names
 * created / removed / renamed with the same gfids and inodes; and on the
 * heal counters: bytes moved equal the dirty bytes (region path), only the
 * differing blocks (checksum path).
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include "tests/unit/brick_harness.h"
#include "xlators/cluster/replicate/replicate.h"
#include "xlators/cluster/replicate/heal.h"
#include "xlators/storage/posix/posix.h"
#include "lib/log.h"

extern const kb_xlator_type_t kb_xl_posix, kb_xl_locks, kb_xl_replicate;

#define MiB (1024u * 1024)
#define KiB 1024u

static char *bdir[3];
static int nb;
static char extra_opts[512];

static char *volfile(void)
{
    static char v[4096];
    int n = 0;
    for (int i = 0; i < nb; i++)
        n += snprintf(v + n, sizeof(v) - (size_t)n,
                      "volume p%d\n type storage/posix\n option directory %s\n%send-volume\n"
                      "volume l%d\n type features/locks\n subvolumes p%d\nend-volume\n", i, bdir[i],
                      getenv("KB_SYNCIO") ? " option io-uring off\n" : "", i, i);
    n += snprintf(v + n, sizeof(v) - (size_t)n,
                  "volume r\n type cluster/replicate\n option self-heal-daemon on\n"
                  " option heal-interval 3600\n%s subvolumes", extra_opts);
    for (int i = 0; i < nb; i++)
        n += snprintf(v + n, sizeof(v) - (size_t)n, " l%d", i);
    snprintf(v + n, sizeof(v) - (size_t)n, "\nend-volume\n");
    return v;
}

static bh_t *graph_up(void)
{
    char err[256] = "";
    bh_t *h = bh_start(volfile(), err, sizeof(err));
    cr_assert_not_null(h, "graph: %s", err);
    return h;
}

static bh_t *start(int n, const char *opts)
{
    kb_log_level = getenv("KB_LOG") ? atoi(getenv("KB_LOG")) : KB_LOG_ERROR;
    cr_assert_str_eq(kb_xl_posix.name, "storage/posix");   /* link them in */
    cr_assert_str_eq(kb_xl_locks.name, "features/locks");
    cr_assert_str_eq(kb_xl_replicate.name, "cluster/replicate");
    nb = n;
    snprintf(extra_opts, sizeof(extra_opts), "%s", opts ? opts : "");
    for (int i = 0; i < n; i++)
        cr_assert_not_null(bdir[i] = bh_tmpdir("heal"));
    return graph_up();
}

static void stop(bh_t *h)
{
    bh_stop(h);
    for (int i = 0; i < nb; i++) {
        bh_rmrf(bdir[i]);
        free(bdir[i]);
        bdir[i] = NULL;
    }
}

static void child(bh_t *h, int i, int ev)
{
    char name[8];
    snprintf(name, sizeof(name), "l%d", i);
    kb_notify_parents(bh_xl(h, name), ev);
}

static struct kb_heal_stats stats(bh_t *h)
{
    struct kb_heal_stats st;
    memset(&st, 0, sizeof(st));
    cr_assert_eq(kb_graph_ctl(h->graph, KB_CTL_HEAL_STATS, &st), 0);
    return st;
}

/* Ask for a sweep and pump until one more has completed. */
static struct kb_heal_stats heal_now(bh_t *h, int code)
{
    uint64_t s0 = stats(h).sweeps;
    cr_assert_eq(kb_graph_ctl(h->graph, code, NULL), 0);
    for (int t = 0; t < 1000 && stats(h).sweeps <= s0; t++)
        bh_pump(h, 10);
    struct kb_heal_stats st = stats(h);
    if (st.sweeps <= s0)
        kb_graph_dump_inflight(h->graph);
    cr_assert_gt(st.sweeps, s0, "no sweep completed within 10 s");
    return st;
}

/* Sweep until a brick index is empty everywhere (entry heal queues what it
 * creates; a couple of sweeps at most). */
static int index_count(int i)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/.kembar/index", bdir[i]);
    DIR *d = opendir(path);
    int n = 0;
    for (struct dirent *de; d && (de = readdir(d));)
        n += de->d_name[0] != '.';
    if (d)
        closedir(d);
    return n;
}

static struct kb_heal_stats heal_all(bh_t *h)
{
    struct kb_heal_stats st;
    for (int round = 0; round < 4; round++) {
        st = heal_now(h, KB_CTL_HEAL_SWEEP);
        int left = 0;
        for (int i = 0; i < nb; i++)
            left += index_count(i);
        if (!left)
            return st;
    }
    return st;
}

static char *slurp(int i, const char *rel, size_t *len)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", bdir[i], rel);
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    *len = fread(buf, 1, (size_t)n, f);
    fclose(f);
    return buf;
}

static void assert_same(const char *rel)
{
    size_t l0 = 0, l1 = 0;
    char *a = slurp(0, rel, &l0);
    for (int i = 1; i < nb; i++) {
        char *b = slurp(i, rel, &l1);
        cr_assert_not_null(a, "%s missing on brick 0", rel);
        cr_assert_not_null(b, "%s missing on brick %d", rel, i);
        cr_assert_eq(l0, l1, "%s: %zu bytes on brick 0, %zu on brick %d", rel, l0, l1, i);
        cr_assert(memcmp(a, b, l0) == 0, "%s differs between bricks 0 and %d", rel, i);
        free(b);
    }
    free(a);
}

static struct stat bstat(int i, const char *rel)
{
    char path[512];
    struct stat st;
    snprintf(path, sizeof(path), "%s/%s", bdir[i], rel);
    cr_assert_eq(lstat(path, &st), 0, "stat %s: %s", path, strerror(errno));
    return st;
}

static bool bexists(int i, const char *rel)
{
    char path[512];
    struct stat st;
    snprintf(path, sizeof(path), "%s/%s", bdir[i], rel);
    return lstat(path, &st) == 0;
}

static kb_cl_matrix_t bmarks(int i, const char *rel)
{
    char path[512];
    uint8_t raw[KB_CL_DISK_BYTES];
    kb_cl_matrix_t m;
    memset(&m, 0, sizeof(m));
    snprintf(path, sizeof(path), "%s/%s", bdir[i], rel);
    if (lgetxattr(path, KB_CL_XATTR, raw, sizeof(raw)) == KB_CL_DISK_BYTES)
        kb_cl_decode(raw + 8, &m);
    return m;
}

static void assert_clean(const char *rel)
{
    static const kb_cl_matrix_t zero;
    for (int i = 0; i < nb; i++) {
        kb_cl_matrix_t m = bmarks(i, rel);
        cr_assert(memcmp(&m, &zero, sizeof(m)) == 0, "%s: marks left on brick %d (data pending %d/%d, dirty %d)",
                  rel, i, m.v[1][KB_CL_DATA], m.v[2][KB_CL_DATA], m.v[0][KB_CL_DATA]);
    }
}

static kb_gfid_t bgfid(int i, const char *rel)
{
    char path[512];
    kb_gfid_t g = kb_gfid_null;
    snprintf(path, sizeof(path), "%s/%s", bdir[i], rel);
    lgetxattr(path, KB_XATTR_GFID, g.b, 16);
    return g;
}

static void pattern(char *buf, size_t n, unsigned seed)
{
    for (size_t k = 0; k < n; k++)
        buf[k] = (char)((k * 2654435761u + seed * 40503u) >> 11);
}

static uint64_t mkfile(bh_t *h, const kb_gfid_t *dir, const char *name, size_t size, unsigned seed, kb_gfid_t *g)
{
    uint64_t fd;
    cr_assert_eq(bh_create(h, dir, name, 0644, O_RDWR, g, &fd), 0, "create %s", name);
    char *buf = malloc(MiB);
    for (size_t off = 0; off < size; off += MiB) {
        size_t n = KB_MIN((size_t)MiB, size - off);
        pattern(buf, n, seed + (unsigned)(off / MiB));
        cr_assert_eq(bh_write(h, g, fd, off, buf, n, 0), (int)n);
    }
    free(buf);
    return fd;
}

static void write_blk(bh_t *h, const kb_gfid_t *g, uint64_t fd, uint64_t off, size_t n, char c)
{
    char *buf = malloc(n);
    memset(buf, c, n);
    buf[0] = (char)(c + 1);
    cr_assert_eq(bh_write(h, g, fd, off, buf, n, 0), (int)n, "write at %llu", (unsigned long long)off);
    free(buf);
}

static void settle(bh_t *h) { bh_pump(h, 250); }   /* eager locks idle out: post-ops done */

/* ================= data: region maps ================= */

Test(heal, region_map_heals_exactly_the_dirty_bytes)
{
    bh_t *h = start(2, NULL);
    kb_gfid_t g;
    uint64_t fd = mkfile(h, &kb_gfid_root, "vm.img", 8 * MiB, 1, &g);
    settle(h);
    child(h, 1, KB_EV_CHILD_DOWN);
    static const uint64_t offs[] = { 3 * 64 * KiB, MiB + 5 * 64 * KiB, 2 * MiB, 2 * MiB + 64 * KiB,
                                     6 * MiB + 7 * 64 * KiB, 8 * MiB - 64 * KiB };
    for (size_t k = 0; k < KB_ARRAY_SIZE(offs); k++)
        write_blk(h, &g, fd, offs[k], 64 * KiB, (char)('a' + k));
    settle(h);
    cr_assert_eq(bh_release(h, &g, fd), 0);
    kb_cl_matrix_t m0 = bmarks(0, "vm.img");
    cr_assert_gt(m0.v[1 + 1][KB_CL_DATA], 0, "brick 0 blames brick 1");
    cr_assert_eq(index_count(0), 1);
    char gs[KB_GFID_STRLEN], rm[128];
    snprintf(rm, sizeof(rm), ".kembar/regions/%s", kb_gfid_str(&g, gs));
    cr_assert(bexists(0, rm), "region map on brick 0");

    child(h, 1, KB_EV_CHILD_UP);
    struct kb_heal_stats st = heal_all(h);
    assert_same("vm.img");
    assert_clean("vm.img");
    cr_assert_eq(index_count(0) + index_count(1), 0, "indexes empty");
    cr_assert(!bexists(0, rm), "region map cleared");
    uint64_t dirty = KB_ARRAY_SIZE(offs) * 64 * KiB;
    cr_assert_eq(st.data_bytes_written, dirty, "wrote %llu bytes, dirty %llu",
                 (unsigned long long)st.data_bytes_written, (unsigned long long)dirty);
    cr_assert_eq(st.data_bytes_read, dirty);
    cr_assert_eq(st.checksum_blocks, 0, "no checksum needed with a map");
    cr_assert_geq(st.healed, 1);
    cr_assert_eq(st.failed, 0);
    cr_assert_eq(st.nsplit, 0);
    cr_assert_eq(st.nactive, 0);
    /* times follow the source */
    struct stat s0 = bstat(0, "vm.img"), s1 = bstat(1, "vm.img");
    cr_assert_eq(s0.st_mtim.tv_sec, s1.st_mtim.tv_sec);
    cr_assert_eq(s0.st_mtim.tv_nsec, s1.st_mtim.tv_nsec);
    stop(h);
}

/* A sink whose copy is gone (a replaced brick, a lost disk): entry heal
 * makes it anew, empty; the source's region map names only what the old
 * copy missed, so the data heal must copy everything, not the map. */
Test(heal, a_sink_made_anew_gets_the_whole_file_not_the_map)
{
    bh_t *h = start(2, NULL);
    kb_gfid_t g;
    uint64_t fd = mkfile(h, &kb_gfid_root, "vm.img", 4 * MiB, 3, &g);
    settle(h);
    child(h, 1, KB_EV_CHILD_DOWN);
    write_blk(h, &g, fd, MiB, 64 * KiB, 'x');
    settle(h);
    cr_assert_eq(bh_release(h, &g, fd), 0);
    char gs[KB_GFID_STRLEN], rm[128], path[512];
    snprintf(rm, sizeof(rm), ".kembar/regions/%s", kb_gfid_str(&g, gs));
    cr_assert(bexists(0, rm), "region map on brick 0");
    snprintf(path, sizeof(path), "%s/vm.img", bdir[1]);
    cr_assert_eq(unlink(path), 0);          /* brick 1 lost the file */
    child(h, 1, KB_EV_CHILD_UP);
    heal_all(h);                            /* the index alone cannot know the file is gone */
    cr_assert(!bexists(1, "vm.img"));
    heal_now(h, KB_CTL_HEAL_FULL);
    heal_all(h);
    assert_same("vm.img");
    stop(h);
}

/* The same through the index alone: the root is owed an entry heal (a file
 * made during the outage), which recreates the lost file empty on the
 * sink, and that file's own index entry (its region map names 64 KiB) is
 * healed next: with an empty sink, the map does not describe the gap. */
Test(heal, an_empty_sink_copy_is_not_healed_from_the_region_map)
{
    bh_t *h = start(2, NULL);
    kb_gfid_t g, g2;
    uint64_t fd = mkfile(h, &kb_gfid_root, "vm.img", 4 * MiB, 5, &g);
    settle(h);
    child(h, 1, KB_EV_CHILD_DOWN);
    write_blk(h, &g, fd, MiB, 64 * KiB, 'y');
    uint64_t fd2 = mkfile(h, &kb_gfid_root, "new.img", 64 * KiB, 6, &g2);
    settle(h);
    cr_assert_eq(bh_release(h, &g, fd), 0);
    cr_assert_eq(bh_release(h, &g2, fd2), 0);
    char path[512];
    snprintf(path, sizeof(path), "%s/vm.img", bdir[1]);
    cr_assert_eq(unlink(path), 0);          /* brick 1 lost the file */
    child(h, 1, KB_EV_CHILD_UP);
    heal_all(h);
    assert_same("new.img");
    assert_same("vm.img");
    stop(h);
}

/* ================= data: checksums when the map is lost ================= */

Test(heal, without_a_map_only_differing_blocks_are_copied)
{
    bh_t *h = start(2, NULL);
    kb_gfid_t g;
    uint64_t fd = mkfile(h, &kb_gfid_root, "disk.raw", 8 * MiB, 7, &g);
    settle(h);
    child(h, 1, KB_EV_CHILD_DOWN);
    write_blk(h, &g, fd, MiB + 4096, 8192, 'x');          /* block 1 */
    write_blk(h, &g, fd, 5 * MiB + 100 * KiB, 64 * KiB, 'y');   /* block 5 */
    settle(h);
    bh_release(h, &g, fd);
    bh_stop(h);
    /* the map is lost (the brick's cache goes with the process) */
    char gs[KB_GFID_STRLEN], path[512];
    snprintf(path, sizeof(path), "%s/.kembar/regions/%s", bdir[0], kb_gfid_str(&g, gs));
    cr_assert_eq(unlink(path), 0, "map file %s", path);
    h = graph_up();
    struct kb_heal_stats st = heal_all(h);
    assert_same("disk.raw");
    assert_clean("disk.raw");
    cr_assert_eq(index_count(0) + index_count(1), 0);
    cr_assert_eq(st.checksum_blocks, 8, "8 blocks of 1 MiB compared (%llu)", (unsigned long long)st.checksum_blocks);
    cr_assert_eq(st.data_bytes_written, 2 * MiB, "only the 2 differing blocks copied (%llu)",
                 (unsigned long long)st.data_bytes_written);
    stop(h);
}

/* ================= holes ================= */

Test(heal, sparse_files_stay_sparse)
{
    bh_t *h = start(2, NULL);
    kb_gfid_t g, g2;
    uint64_t fd2 = mkfile(h, &kb_gfid_root, "punched.img", 2 * MiB, 3, &g2);
    settle(h);
    child(h, 1, KB_EV_CHILD_DOWN);
    /* created during the outage: 64 KiB at 0 and at 32 MiB, a hole between */
    uint64_t fd;
    cr_assert_eq(bh_create(h, &kb_gfid_root, "sparse.img", 0640, O_RDWR, &g, &fd), 0);
    write_blk(h, &g, fd, 0, 64 * KiB, 's');
    write_blk(h, &g, fd, 32 * MiB, 64 * KiB, 't');
    /* a hole punched into data during the outage */
    kb_args_t fa = { .gfid = g2, .fd = fd2, .off = 256 * KiB, .size = 512 * KiB,
                     .flags = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE };
    cr_assert_eq(bh_call(h, KB_FOP_FALLOCATE, &fa, NULL), 0);
    settle(h);
    bh_release(h, &g, fd);
    bh_release(h, &g2, fd2);
    cr_assert(!bexists(1, "sparse.img"));
    child(h, 1, KB_EV_CHILD_UP);
    struct kb_heal_stats st = heal_all(h);
    assert_same("sparse.img");
    assert_same("punched.img");
    assert_clean("sparse.img");
    assert_clean("punched.img");
    kb_gfid_t g1 = bgfid(1, "sparse.img");
    cr_assert(kb_gfid_eq(&g1, &g), "created with the same gfid");
    struct stat s0 = bstat(0, "sparse.img"), s1 = bstat(1, "sparse.img");
    cr_assert_eq(s1.st_size, 32 * MiB + 64 * KiB);
    cr_assert_eq(s1.st_mode & 07777, 0640, "mode %o", s1.st_mode & 07777);
    cr_assert_leq(s1.st_blocks, s0.st_blocks, "sink %lld blocks, source %lld", (long long)s1.st_blocks,
                  (long long)s0.st_blocks);
    cr_assert_lt(s1.st_blocks * 512, 2 * MiB, "the hole stayed a hole");
    s0 = bstat(0, "punched.img");
    s1 = bstat(1, "punched.img");
    cr_assert_leq(s1.st_blocks, s0.st_blocks, "punched region punched on the sink too (%lld vs %lld)",
                  (long long)s1.st_blocks, (long long)s0.st_blocks);
    cr_assert_eq(st.data_bytes_written, 128 * KiB, "the 2 written regions only (%llu)",
                 (unsigned long long)st.data_bytes_written);
    stop(h);
}

/* ================= entries ================= */

static int entry_op(bh_t *h, kb_op_t op, kb_args_t *a)
{
    return bh_call(h, op, a, NULL);
}

/* Both bricks hold the same tree (names, types, gfids, contents). */
static void assert_tree(const char *rel)
{
    char p0[512], p1[512];
    snprintf(p0, sizeof(p0), "%s/%s", bdir[0], rel);
    snprintf(p1, sizeof(p1), "%s/%s", bdir[1], rel);
    DIR *d0 = opendir(p0);
    cr_assert_not_null(d0, "%s", p0);
    int n0 = 0, n1 = 0;
    for (struct dirent *de; (de = readdir(d0));) {
        if (de->d_name[0] == '.')
            continue;
        n0++;
        char sub[512];
        snprintf(sub, sizeof(sub), "%s/%s", rel, de->d_name);
        cr_assert(bexists(1, sub), "%s missing on brick 1", sub);
        struct stat a = bstat(0, sub), b = bstat(1, sub);
        cr_assert_eq(a.st_mode, b.st_mode, "%s: mode %o vs %o", sub, a.st_mode, b.st_mode);
        cr_assert_eq(a.st_uid, b.st_uid);
        kb_gfid_t ga = bgfid(0, sub), gb = bgfid(1, sub);
        cr_assert(kb_gfid_eq(&ga, &gb), "%s: gfids differ", sub);
        if (S_ISDIR(a.st_mode))
            assert_tree(sub);
        else if (S_ISREG(a.st_mode))
            assert_same(sub);
        else if (S_ISLNK(a.st_mode)) {
            char t0[256] = "", t1[256] = "", q0[600], q1[600];
            snprintf(q0, sizeof(q0), "%s/%s", bdir[0], sub);
            snprintf(q1, sizeof(q1), "%s/%s", bdir[1], sub);
            cr_assert_gt(readlink(q0, t0, sizeof(t0) - 1), 0);
            cr_assert_gt(readlink(q1, t1, sizeof(t1) - 1), 0);
            cr_assert_str_eq(t0, t1);
        }
    }
    closedir(d0);
    DIR *d1 = opendir(p1);
    cr_assert_not_null(d1, "%s", p1);
    for (struct dirent *de; (de = readdir(d1));)
        n1 += de->d_name[0] != '.';
    closedir(d1);
    cr_assert_eq(n0, n1, "%s: %d names on brick 0, %d on brick 1", rel, n0, n1);
}

Test(heal, entries_created_deleted_renamed_during_an_outage)
{
    bh_t *h = start(2, NULL);
    kb_gfid_t d, e, s, ga, gb, gx;
    cr_assert_eq(bh_mkdir(h, &kb_gfid_root, "d", 0755, &d), 0);
    cr_assert_eq(bh_mkdir(h, &kb_gfid_root, "e", 0750, &e), 0);
    cr_assert_eq(bh_mkdir(h, &d, "s", 0700, &s), 0);
    uint64_t f;
    f = mkfile(h, &d, "a", 100 * KiB, 11, &ga);
    bh_release(h, &ga, f);
    f = mkfile(h, &d, "b", 200 * KiB, 12, &gb);
    bh_release(h, &gb, f);
    f = mkfile(h, &s, "x", 300 * KiB, 13, &gx);
    bh_release(h, &gx, f);
    settle(h);
    ino_t b_ino = bstat(1, "d/b").st_ino, s_ino = bstat(1, "d/s").st_ino;

    child(h, 1, KB_EV_CHILD_DOWN);
    kb_args_t ua = { .gfid = d, .name = "a" };
    cr_assert_eq(entry_op(h, KB_FOP_UNLINK, &ua), 0);
    kb_args_t rb = { .gfid = d, .name = "b", .gfid2 = d, .name2 = "b2" };
    cr_assert_eq(entry_op(h, KB_FOP_RENAME, &rb), 0);
    kb_args_t rs = { .gfid = d, .name = "s", .gfid2 = e, .name2 = "s2" };
    cr_assert_eq(entry_op(h, KB_FOP_RENAME, &rs), 0);
    kb_gfid_t gn, nd, gf2, gl;
    f = mkfile(h, &d, "new", 150 * KiB, 14, &gn);
    bh_release(h, &gn, f);
    cr_assert_eq(bh_mkdir(h, &d, "nd", 0711, &nd), 0);
    f = mkfile(h, &nd, "f", 10 * KiB, 15, &gf2);
    bh_release(h, &gf2, f);
    kb_args_t sl = { .gfid = d, .name = "ln", .name2 = "../e/s2/x" };
    kb_gfid_generate(&sl.newgfid);
    gl = sl.newgfid;
    cr_assert_eq(entry_op(h, KB_FOP_SYMLINK, &sl), 0);
    kb_args_t xa = { .gfid = gn, .name = "user.color", .data = kb_buf_copy("blue", 4) };
    cr_assert_eq(entry_op(h, KB_FOP_SETXATTR, &xa), 0);
    kb_buf_unref(xa.data);
    settle(h);
    cr_assert(bexists(1, "d/a") && !bexists(1, "d/new"), "brick 1 missed it all");

    child(h, 1, KB_EV_CHILD_UP);
    struct kb_heal_stats st = heal_all(h);
    assert_tree("d");
    assert_tree("e");
    cr_assert(!bexists(1, "d/a"), "deleted");
    cr_assert(bexists(1, "d/b2") && !bexists(1, "d/b"), "renamed");
    cr_assert_eq(bstat(1, "d/b2").st_ino, b_ino, "renamed in place, not copied again");
    cr_assert_eq(bstat(1, "e/s2").st_ino, s_ino, "the directory moved, not rebuilt");
    kb_gfid_t g1 = bgfid(1, "d/new");
    cr_assert(kb_gfid_eq(&g1, &gn), "created with its gfid");
    g1 = bgfid(1, "d/ln");
    cr_assert(kb_gfid_eq(&g1, &gl));
    char val[16] = "";
    char path[512];
    snprintf(path, sizeof(path), "%s/d/new", bdir[1]);
    cr_assert_eq(lgetxattr(path, "user.color", val, sizeof(val)), 4, "user xattr healed");
    cr_assert_str_eq(val, "blue");
    cr_assert_eq(index_count(0) + index_count(1), 0, "indexes empty (%d, %d)", index_count(0), index_count(1));
    assert_clean("d");
    assert_clean("e");
    assert_clean("d/new");
    cr_assert_eq(st.failed, 0);
    stop(h);
}

/* A file open through replicate, unlinked and written while brick 1 was
 * away: brick 1 comes back still holding the name. The fd is reopened
 * there at CHILD_UP; entry heal removes the name (the source keeps the file
 * open and nameless: deleted, not renamed) and brick 1 keeps it as an
 * orphan too; data heal brings its content over by gfid. No name comes
 * back anywhere; the last close removes both copies. */
Test(heal, an_open_unlinked_file_is_healed_by_gfid_never_named_again)
{
    bh_t *h = start(2, NULL);
    kb_gfid_t d, g;
    cr_assert_eq(bh_mkdir(h, &kb_gfid_root, "d", 0755, &d), 0);
    uint64_t f = mkfile(h, &d, "f", 64 * KiB, 21, &g);
    settle(h);
    char gs[KB_GFID_STRLEN], hrel[128], mrel[128];
    kb_gfid_str(&g, gs);
    snprintf(hrel, sizeof(hrel), ".kembar/handles/%.2s/%.2s/%s", gs, gs + 2, gs);
    snprintf(mrel, sizeof(mrel), ".kembar/unlinked/%s", gs);

    child(h, 1, KB_EV_CHILD_DOWN);
    kb_xlator_t *p1 = bh_xl(h, "p1");
    uint64_t client = h->cred.client_id;   /* its connection went: brick 1 closed our fds */
    cr_assert_eq(p1->type->ctl(p1, KB_CTL_CLIENT_GONE, &client), 0);
    kb_args_t ua = { .gfid = d, .name = "f" };
    cr_assert_eq(entry_op(h, KB_FOP_UNLINK, &ua), 0);
    write_blk(h, &g, f, 8 * KiB, 4 * KiB, 'u');
    settle(h);
    cr_assert(!bexists(0, "d/f") && bexists(0, hrel) && bexists(0, mrel), "brick 0: open, nameless");
    cr_assert(bexists(1, "d/f") && !bexists(1, mrel), "brick 1 missed the unlink");

    child(h, 1, KB_EV_CHILD_UP);
    bh_pump(h, 20);
    heal_all(h);
    cr_assert(!bexists(0, "d/f") && !bexists(1, "d/f"), "no name on either brick");
    cr_assert(bexists(1, hrel) && bexists(1, mrel), "brick 1 keeps it for the reopened fd");
    assert_same(hrel);
    assert_clean(hrel);
    cr_assert_eq(index_count(0) + index_count(1), 0);
    /* the descriptor still works on both copies */
    write_blk(h, &g, f, 0, 4 * KiB, 'w');
    settle(h);
    assert_same(hrel);
    cr_assert_eq(bh_release(h, &g, f), 0);
    bh_pump(h, 20);
    for (int i = 0; i < 2; i++)
        cr_assert(!bexists(i, hrel) && !bexists(i, mrel), "brick %d: gone at the last close", i);
    stop(h);
}

/* ================= metadata ================= */

Test(heal, metadata_mode_owner_xattrs)
{
    bh_t *h = start(2, NULL);
    kb_gfid_t g;
    uint64_t fd = mkfile(h, &kb_gfid_root, "conf", 4 * KiB, 21, &g);
    bh_release(h, &g, fd);
    kb_args_t x1 = { .gfid = g, .name = "user.old", .data = kb_buf_copy("1", 1) };
    cr_assert_eq(entry_op(h, KB_FOP_SETXATTR, &x1), 0);
    kb_buf_unref(x1.data);
    settle(h);
    child(h, 1, KB_EV_CHILD_DOWN);
    kb_args_t sa = { .gfid = g, .flags = KB_SET_MODE | KB_SET_UID | KB_SET_GID,
                     .attr = { .mode = 0600, .uid = 1234, .gid = 5678 } };
    cr_assert_eq(entry_op(h, KB_FOP_SETATTR, &sa), 0);
    kb_args_t rx = { .gfid = g, .name = "user.old" };
    cr_assert_eq(entry_op(h, KB_FOP_REMOVEXATTR, &rx), 0);
    kb_args_t x2 = { .gfid = g, .name = "user.new", .data = kb_buf_copy("22", 2) };
    cr_assert_eq(entry_op(h, KB_FOP_SETXATTR, &x2), 0);
    kb_buf_unref(x2.data);
    settle(h);
    child(h, 1, KB_EV_CHILD_UP);
    struct kb_heal_stats st = heal_all(h);
    struct stat s1 = bstat(1, "conf");
    cr_assert_eq(s1.st_mode & 07777, 0600);
    cr_assert_eq(s1.st_uid, 1234);
    cr_assert_eq(s1.st_gid, 5678);
    char path[512], v[8] = "";
    snprintf(path, sizeof(path), "%s/conf", bdir[1]);
    cr_assert_eq(lgetxattr(path, "user.new", v, sizeof(v)), 2);
    cr_assert_lt(lgetxattr(path, "user.old", v, sizeof(v)), 0, "removed on the sink too");
    assert_clean("conf");
    cr_assert_eq(st.data_bytes_written, 0, "metadata only");
    stop(h);
}

/* ================= split-brain ================= */

static int res_status = 1;
static char res_msg[200];
static void res_done(void *cookie, int status, const char *msg)
{
    res_status = status;
    snprintf(res_msg, sizeof(res_msg), "%s", msg);
    ++*(int *)cookie;
}

/* Each copy written while the other was away: copy 0 gets 'A' at 0, copy
 * 1 (later, and past the end) 'B' at 64 KiB and 'C' at 256 KiB. Replicate
 * refuses to write a copy it knows is blamed, so the second half runs in a
 * fresh graph that has not met copy 0 (as a client restarted meanwhile). */
static kb_gfid_t split_file(bh_t **hp)
{
    bh_t *h = *hp;
    kb_gfid_t g;
    uint64_t fd = mkfile(h, &kb_gfid_root, "sb.img", 256 * KiB, 31, &g);
    bh_release(h, &g, fd);
    settle(h);
    child(h, 1, KB_EV_CHILD_DOWN);
    cr_assert_eq(bh_open(h, &g, O_RDWR, &fd), 0);
    write_blk(h, &g, fd, 0, 64 * KiB, 'A');
    settle(h);
    bh_release(h, &g, fd);
    settle(h);
    bh_stop(h);
    *hp = h = graph_up();
    child(h, 0, KB_EV_CHILD_DOWN);
    usleep(20000);                  /* a later mtime on copy 1 */
    cr_assert_eq(bh_open(h, &g, O_RDWR, &fd), 0);
    write_blk(h, &g, fd, 64 * KiB, 64 * KiB, 'B');
    write_blk(h, &g, fd, 256 * KiB, 64 * KiB, 'C');
    settle(h);
    bh_release(h, &g, fd);
    settle(h);
    child(h, 0, KB_EV_CHILD_UP);
    kb_cl_matrix_t m0 = bmarks(0, "sb.img"), m1 = bmarks(1, "sb.img");
    cr_assert_gt(m0.v[1 + 1][KB_CL_DATA], 0);
    cr_assert_gt(m1.v[1 + 0][KB_CL_DATA], 0, "each copy blames the other");
    return g;
}

Test(heal, split_brain_is_reported_not_healed_then_resolved_by_policy)
{
    bh_t *h = start(2, " option quorum-type none\n");
    kb_gfid_t g = split_file(&h);
    struct kb_heal_stats st = heal_now(h, KB_CTL_HEAL_SWEEP);
    cr_assert_eq(st.nsplit, 1, "split-brain recorded");
    cr_assert(kb_gfid_eq(&st.split[0], &g));
    size_t l0, l1;
    char *a = slurp(0, "sb.img", &l0), *b = slurp(1, "sb.img", &l1);
    cr_assert(l0 != l1 || memcmp(a, b, l0), "not healed silently");
    free(a);
    free(b);
    cr_assert_gt(index_count(0), 0);
    int calls = 0;
    struct kb_heal_resolve r = { .gfid = g, .policy = KB_HEAL_POL_MTIME, .done = res_done, .cookie = &calls };
    cr_assert_eq(kb_graph_ctl(h->graph, KB_CTL_HEAL_RESOLVE, &r), 0);
    for (int t = 0; t < 500 && !calls; t++)
        bh_pump(h, 10);
    cr_assert_eq(calls, 1, "done called once");
    cr_assert_eq(res_status, 0, "resolve: %s", res_msg);
    assert_same("sb.img");
    assert_clean("sb.img");
    a = slurp(0, "sb.img", &l0);
    cr_assert_eq(l0, 320 * KiB, "copy 1 (latest mtime) won");
    cr_assert_eq(a[64 * KiB + 1], 'B');
    free(a);
    st = heal_now(h, KB_CTL_HEAL_SWEEP);
    cr_assert_eq(st.nsplit, 0);
    cr_assert_eq(index_count(0) + index_count(1), 0);
    stop(h);
}

Test(heal, split_brain_resolved_by_naming_the_source)
{
    bh_t *h = start(2, " option quorum-type none\n");
    kb_gfid_t g = split_file(&h);
    int calls = 0;
    struct kb_heal_resolve r = { .gfid = g, .policy = KB_HEAL_POL_SOURCE, .source = 0, .done = res_done,
                                 .cookie = &calls };
    cr_assert_eq(kb_graph_ctl(h->graph, KB_CTL_HEAL_RESOLVE, &r), 0);
    for (int t = 0; t < 500 && !calls; t++)
        bh_pump(h, 10);
    cr_assert_eq(calls, 1);
    cr_assert_eq(res_status, 0, "resolve: %s", res_msg);
    assert_same("sb.img");
    assert_clean("sb.img");
    size_t l0;
    char *a = slurp(1, "sb.img", &l0);
    cr_assert_eq(l0, 256 * KiB, "copy 0 won");
    cr_assert_eq(a[1], 'A');
    free(a);
    stop(h);
}

Test(heal, favorite_child_policy_heals_split_brain_by_itself)
{
    bh_t *h = start(2, " option quorum-type none\n option favorite-child-policy bigger-file\n");
    split_file(&h);
    struct kb_heal_stats st = heal_all(h);
    cr_assert_eq(st.nsplit, 0);
    assert_same("sb.img");
    assert_clean("sb.img");
    size_t l0;
    free(slurp(0, "sb.img", &l0));
    cr_assert_eq(l0, 320 * KiB, "the bigger copy won");
    stop(h);
}

/* ================= convergence under writes ================= */

Test(heal, converges_while_the_file_is_written)
{
    bh_t *h = start(2, NULL);
    kb_gfid_t g;
    uint64_t fd = mkfile(h, &kb_gfid_root, "busy.img", 8 * MiB, 41, &g);
    settle(h);
    child(h, 1, KB_EV_CHILD_DOWN);
    for (int k = 0; k < 64; k++)
        write_blk(h, &g, fd, (uint64_t)k * 128 * KiB, 64 * KiB, (char)('a' + k % 20));
    settle(h);
    child(h, 1, KB_EV_CHILD_UP);
    /* heal and writes interleave on the loop */
    cr_assert_eq(kb_graph_ctl(h->graph, KB_CTL_HEAL_SWEEP, NULL), 0);
    enum { NW = 40 };
    static bh_pending_t pend[NW];
    kb_buf_t *bufs[NW];
    for (int k = 0; k < NW; k++) {
        bufs[k] = kb_buf_new(32 * KiB);
        memset(bufs[k]->data, 'Q' + k % 8, 32 * KiB);
        bufs[k]->len = 32 * KiB;
        kb_args_t wa = { .gfid = g, .fd = fd, .off = (uint64_t)((k * 7919) % 250) * 32 * KiB, .data = bufs[k] };
        bh_start_call(h, h->graph->top, KB_FOP_WRITE, &wa, NULL, &pend[k]);
        bh_pump(h, 3);
    }
    for (int k = 0; k < NW; k++) {
        cr_assert_eq(bh_wait(h, &pend[k], 10000), 0, "write %d stuck", k);
        cr_assert_eq(pend[k].reply.status, 32 * KiB, "write %d: %d", k, pend[k].reply.status);
        bh_pending_clear(&pend[k]);
        kb_buf_unref(bufs[k]);
    }
    settle(h);
    bh_release(h, &g, fd);
    settle(h);
    heal_all(h);
    assert_same("busy.img");
    assert_clean("busy.img");
    cr_assert_eq(index_count(0) + index_count(1), 0);
    stop(h);
}

/* ================= replica 3, heal full ================= */

Test(heal, replica3_two_sinks_and_heal_full)
{
    bh_t *h = start(3, " option quorum-type none\n");
    kb_gfid_t g;
    uint64_t fd = mkfile(h, &kb_gfid_root, "r3.img", 2 * MiB, 51, &g);
    settle(h);
    child(h, 2, KB_EV_CHILD_DOWN);
    write_blk(h, &g, fd, 64 * KiB, 64 * KiB, 'm');
    settle(h);
    child(h, 1, KB_EV_CHILD_DOWN);
    write_blk(h, &g, fd, MiB, 64 * KiB, 'n');
    settle(h);
    bh_release(h, &g, fd);
    child(h, 1, KB_EV_CHILD_UP);
    child(h, 2, KB_EV_CHILD_UP);
    struct kb_heal_stats st = heal_all(h);
    assert_same("r3.img");
    assert_clean("r3.img");
    /* the map is per file (changelog.h): each sink gets the union of the regions */
    cr_assert_eq(st.data_bytes_written, 2 * 2 * 64 * KiB, "2 regions to each of 2 sinks (%llu)",
                 (unsigned long long)st.data_bytes_written);
    cr_assert_eq(st.data_bytes_read, 2 * 64 * KiB, "read once for both sinks");
    /* heal full finds a copy changed behind our back (no marks) */
    char path[512];
    snprintf(path, sizeof(path), "%s/r3.img", bdir[2]);
    FILE *f = fopen(path, "r+b");
    cr_assert_not_null(f);
    fseek(f, 3 * 4096, SEEK_SET);
    fputs("corrupt", f);
    fclose(f);
    st = heal_now(h, KB_CTL_HEAL_FULL);
    assert_same("r3.img");
    cr_assert_gt(st.checksum_blocks, 0);
    stop(h);
}

/* ================= arbiter ================= */

Test(heal, arbiter_gets_names_and_marks_never_data)
{
    bh_t *h = start(3, " option arbiter-count 1\n");
    kb_gfid_t d, g;
    cr_assert_eq(bh_mkdir(h, &kb_gfid_root, "vms", 0755, &d), 0);
    settle(h);
    child(h, 1, KB_EV_CHILD_DOWN);
    uint64_t fd = mkfile(h, &d, "new.img", 3 * MiB, 61, &g);
    write_blk(h, &g, fd, MiB, 64 * KiB, 'z');
    settle(h);
    bh_release(h, &g, fd);
    settle(h);
    cr_assert(!bexists(1, "vms/new.img"));
    child(h, 1, KB_EV_CHILD_UP);
    struct kb_heal_stats st = heal_all(h);
    cr_assert_eq(st.failed, 0);
    size_t l0, l1;
    char *a = slurp(0, "vms/new.img", &l0), *b = slurp(1, "vms/new.img", &l1);
    cr_assert_eq(l0, 3 * MiB);
    cr_assert_eq(l1, l0, "data child healed (%zu bytes)", l1);
    cr_assert(memcmp(a, b, l0) == 0);
    free(a);
    free(b);
    cr_assert(bexists(2, "vms/new.img"), "the arbiter has the name");
    cr_assert_eq(bstat(2, "vms/new.img").st_size, 0, "and no data");
    kb_gfid_t g2 = bgfid(1, "vms/new.img");
    cr_assert(kb_gfid_eq(&g2, &g));
    assert_clean("vms/new.img");
    assert_clean("vms");
    cr_assert_eq(index_count(0) + index_count(1) + index_count(2), 0, "indexes empty (%d %d %d)",
                 index_count(0), index_count(1), index_count(2));
    stop(h);
}

Test(heal, a_stale_dirty_mark_on_the_arbiter_is_taken_back)
{
    bh_t *h = start(3, " option arbiter-count 1\n");
    kb_gfid_t g;
    uint64_t fd = mkfile(h, &kb_gfid_root, "a.img", 256 * KiB, 71, &g);
    bh_release(h, &g, fd);
    settle(h);
    /* the arbiter was killed between a writer's pre-op and post-op */
    kb_cl_matrix_t d;
    memset(&d, 0, sizeof(d));
    d.v[KB_CL_DIRTY_ROW][KB_CL_DATA] = 1;
    kb_buf_t *buf = kb_buf_new(KB_CL_MATRIX_BYTES);
    kb_cl_encode(&d, (uint8_t *)buf->data);
    buf->len = KB_CL_MATRIX_BYTES;
    kb_args_t x = { .gfid = g, .name = (char *)KB_CL_XATTR, .flags = KB_XOP_ADD, .data = buf };
    cr_assert_eq(bh_call_xl(h, bh_xl(h, "l2"), KB_FOP_XATTROP, &x, NULL, NULL), 0);
    kb_buf_unref(buf);
    cr_assert_eq(index_count(2), 1);
    heal_all(h);
    assert_clean("a.img");
    cr_assert_eq(index_count(0) + index_count(1) + index_count(2), 0);
    stop(h);
}
