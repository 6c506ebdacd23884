/*
 * posix_test.c — storage/posix on real bricks under /var/tmp, driven through
 * the graph (brick_harness): data round trips, handles and nlink, deep
 * trees, readdir cookies, confinement, xattr hiding, holes, O_DIRECT,
 * XATTROP + index, region maps, RCHECKSUM, brick identity, client-gone.
 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <openssl/evp.h>
#include "tests/unit/brick_harness.h"
#include "xlators/storage/posix/internal.h"

#define BRICK_FIXTURE_TAG "posix"
#include "tests/unit/xlators/storage/posix/brick_fixture.h"

static void fill(uint8_t *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)((i * 2654435761u + seed) >> 13);
}

TestSuite(posix, .init = setup, .fini = teardown, .timeout = 60);

/* ---------------- data ---------------- */

Test(posix, create_write_read)
{
    kb_gfid_t g;
    uint64_t fd;
    cr_assert_eq(bh_create(h, ROOT, "f", 0644, O_RDWR, &g, &fd), 0);
    size_t n = 1 << 20;
    uint8_t *src = malloc(n), *dst = malloc(n);
    fill(src, n, 7);
    cr_assert_eq(bh_write(h, &g, fd, 4096, src, n, 0), (int)n);
    memset(dst, 0, n);
    cr_assert_eq(bh_read(h, &g, fd, 4096, n, dst), (int)n);
    cr_assert(memcmp(src, dst, n) == 0, "content differs");
    /* a read past EOF is short, then 0 */
    cr_assert_eq(bh_read(h, &g, fd, 4096 + n - 100, 4096, dst), 100);
    cr_assert_eq(bh_read(h, &g, fd, 4096 + n, 4096, dst), 0);
    cr_assert_eq(bh_release(h, &g, fd), 0);
    cr_assert_eq(bh_release(h, &g, fd), -EBADF, "fd must be gone");

    kb_iatt_t ia;
    cr_assert_eq(bh_lookup(h, ROOT, "f", &ia), 0);
    cr_assert(kb_gfid_eq(&ia.gfid, &g));
    cr_assert_eq(ia.size, 4096 + n);
    cr_assert_eq(ia.nlink, 1, "handle link must not show");
    cr_assert_eq(ia.mode & 07777, 0644);
    /* reopen by gfid, read again; the file on disk holds the data too */
    cr_assert_eq(bh_open(h, &g, O_RDONLY, &fd), 0);
    memset(dst, 0, n);
    cr_assert_eq(bh_read(h, &g, fd, 4096, n, dst), (int)n);
    cr_assert(memcmp(src, dst, n) == 0);
    kb_args_t w = { .gfid = g, .fd = fd, .off = 0, .data = kb_buf_copy("x", 1) };
    cr_assert_lt(bh_call(h, KB_FOP_WRITE, &w, NULL), 0, "write on a read-only fd");
    kb_buf_unref(w.data);
    cr_assert_eq(bh_release(h, &g, fd), 0);
    /* a wrong gfid with a valid fd number is refused */
    cr_assert_eq(bh_open(h, &g, O_RDONLY, &fd), 0);
    kb_gfid_t other;
    kb_gfid_generate(&other);
    cr_assert_eq(bh_read(h, &other, fd, 0, 10, dst), -EBADF);
    cr_assert_eq(bh_read(h, &g, fd + 1000, 0, 10, dst), -EBADF);
    free(src);
    free(dst);
}

Test(posix, create_exclusive_and_owner)
{
    kb_gfid_t g, d;
    cr_assert_eq(bh_create(h, ROOT, "f", 0600, O_RDWR, &g, NULL), 0);
    cr_assert_eq(bh_create(h, ROOT, "f", 0600, O_RDWR, NULL, NULL), -EEXIST);
    /* a gfid already in use is refused too */
    kb_args_t a = { .gfid = kb_gfid_root, .name = "g", .mode = 0600, .newgfid = g };
    cr_assert_eq(bh_call(h, KB_FOP_CREATE, &a, NULL), -EEXIST);

    /* ownership from the caller's credentials; setgid directories */
    cr_assert_eq(bh_mkdir(h, ROOT, "sg", 02775, &d), 0);
    kb_args_t sa = { .gfid = d, .flags = KB_SET_GID, .attr = { .gid = 4242 } };
    cr_assert_eq(bh_call(h, KB_FOP_SETATTR, &sa, NULL), 0);
    kb_cred_t c = { .uid = 1000, .gid = 1000, .client_id = 1 };
    kb_args_t ca = { .gfid = d, .name = "sub", .mode = 0755 };
    kb_gfid_generate(&ca.newgfid);
    kb_reply_t r;
    cr_assert_eq(bh_call_xl(h, bh_xl(h, NULL), KB_FOP_MKDIR, &ca, &c, &r), 0);
    cr_assert_eq(r.attr.uid, 1000);
    cr_assert_eq(r.attr.gid, 4242, "setgid parent gives its group");
    cr_assert(r.attr.mode & S_ISGID, "new dir inherits setgid");
    cr_assert_eq(r.attr.mode & 0777, 0755);
    kb_reply_clear(&r);
    ca.name = "file";
    kb_gfid_generate(&ca.newgfid);
    ca.mode = 0640;
    cr_assert_eq(bh_call_xl(h, bh_xl(h, NULL), KB_FOP_CREATE, &ca, &c, &r), 0);
    cr_assert_eq(r.attr.uid, 1000);
    cr_assert_eq(r.attr.gid, 4242);
    cr_assert_eq(r.attr.mode & 07777, 0640);
    kb_args_t rel = { .gfid = ca.newgfid, .fd = r.fd };
    kb_reply_clear(&r);
    cr_assert_eq(bh_call(h, KB_FOP_RELEASE, &rel, NULL), 0);
    struct stat st;
    cr_assert_eq(brick_stat("sg/file", &st), 0);
    cr_assert_eq(st.st_uid, 1000);
    cr_assert_eq(st.st_gid, 4242);
}

/* An entry op's reply carries its parent directory as STAT of it answers
 * right after (KB_RF_PATTR): the client then need not ask. */
static void check_parent(const kb_reply_t *r, const kb_gfid_t *parent, const char *what)
{
    cr_assert(r->rflags & KB_RF_PATTR, "%s: no parent attributes", what);
    kb_args_t sa = { .gfid = *parent };
    kb_reply_t st;
    cr_assert_eq(bh_call(h, KB_FOP_STAT, &sa, &st), 0);
    cr_assert(kb_gfid_eq(&r->pattr.gfid, parent), "%s: parent gfid", what);
    cr_assert_eq(memcmp(&r->pattr, &st.attr, sizeof(st.attr)), 0, "%s: parent differs from its STAT", what);
    kb_reply_clear(&st);
}

Test(posix, entry_ops_bring_their_parent)
{
    kb_gfid_t d;
    cr_assert_eq(bh_mkdir(h, ROOT, "d", 0755, &d), 0);
    kb_reply_t r;
    struct { kb_op_t op; const char *name, *name2; uint32_t mode; } ops[] = {
        { KB_FOP_CREATE, "f", NULL, 0644 },
        { KB_FOP_MKDIR, "sub", NULL, 0755 },
        { KB_FOP_MKNOD, "fifo", NULL, S_IFIFO | 0600 },
        { KB_FOP_SYMLINK, "ln", "f", 0 },
    };
    kb_gfid_t made[4];
    for (int i = 0; i < 4; i++) {
        kb_args_t a = { .gfid = d, .name = (char *)ops[i].name, .name2 = (char *)ops[i].name2,
                        .mode = ops[i].mode, .flags = O_RDWR };
        kb_gfid_generate(&a.newgfid);
        made[i] = a.newgfid;
        cr_assert_eq(bh_call(h, ops[i].op, &a, &r), 0, "%s", kb_fop_name(ops[i].op));
        uint64_t fd = r.fd;
        check_parent(&r, &d, kb_fop_name(ops[i].op));
        cr_assert(kb_gfid_eq(&r.attr.gfid, &a.newgfid), "the object's own attributes stay");
        kb_reply_clear(&r);
        if (ops[i].op == KB_FOP_CREATE)
            cr_assert_eq(bh_release(h, &made[i], fd), 0);
    }
    kb_args_t l = { .gfid = made[0], .gfid2 = *ROOT, .name2 = "hard" };
    cr_assert_eq(bh_call(h, KB_FOP_LINK, &l, &r), 0);
    check_parent(&r, ROOT, "link");
    cr_assert_eq(r.attr.nlink, 2);
    kb_reply_clear(&r);
    kb_args_t u = { .gfid = d, .name = "f" };
    cr_assert_eq(bh_call(h, KB_FOP_UNLINK, &u, &r), 0);
    check_parent(&r, &d, "unlink");
    kb_reply_clear(&r);
    kb_args_t rd = { .gfid = d, .name = "sub" };
    cr_assert_eq(bh_call(h, KB_FOP_RMDIR, &rd, &r), 0);
    check_parent(&r, &d, "rmdir");
    cr_assert_eq(r.pattr.nlink, 2, "the parent lost its subdirectory");
    kb_reply_clear(&r);
    /* Failures carry nothing. */
    cr_assert_eq(bh_call(h, KB_FOP_UNLINK, &u, &r), -ENOENT);
    cr_assert_not(r.rflags & KB_RF_PATTR);
    kb_reply_clear(&r);
}

/* ---------------- handles and links ---------------- */

Test(posix, rename_over_hardlinked_file)
{
    kb_gfid_t ga, gb;
    uint64_t fa, fb;
    char rel[128];
    struct stat st;
    cr_assert_eq(bh_create(h, ROOT, "a", 0644, O_RDWR, &ga, &fa), 0);
    cr_assert_eq(bh_create(h, ROOT, "b", 0644, O_RDWR, &gb, &fb), 0);
    cr_assert_eq(bh_release(h, &ga, fa), 0);   /* not open: replaced, it goes at once (orphan_test.c) */
    cr_assert_eq(bh_release(h, &gb, fb), 0);
    kb_args_t la = { .gfid = gb, .gfid2 = kb_gfid_root, .name2 = "c" };
    kb_reply_t r;
    cr_assert_eq(bh_call(h, KB_FOP_LINK, &la, &r), 0);
    cr_assert_eq(r.attr.nlink, 2);
    cr_assert(kb_gfid_eq(&r.attr.gfid, &gb));
    kb_reply_clear(&r);

    kb_args_t ra = { .gfid = kb_gfid_root, .name = "a", .gfid2 = kb_gfid_root, .name2 = "b" };
    cr_assert_eq(bh_call(h, KB_FOP_RENAME, &ra, &r), 0);
    cr_assert(kb_gfid_eq(&r.attr.gfid, &ga));
    cr_assert_eq(r.attr.nlink, 1);
    kb_reply_clear(&r);
    kb_iatt_t ia;
    cr_assert_eq(bh_lookup(h, ROOT, "a", NULL), -ENOENT);
    cr_assert_eq(bh_lookup(h, ROOT, "b", &ia), 0);
    cr_assert(kb_gfid_eq(&ia.gfid, &ga));
    cr_assert_eq(ia.nlink, 1);
    cr_assert_eq(bh_lookup(h, ROOT, "c", &ia), 0);
    cr_assert(kb_gfid_eq(&ia.gfid, &gb));
    cr_assert_eq(ia.nlink, 1, "b's inode lost one user link, kept c");
    kb_args_t nl = { .gfid = gb };
    cr_assert_eq(bh_call(h, KB_FOP_LOOKUP, &nl, NULL), 0, "handle of the survivor stays");

    /* now replace the last link of ga: its handle must go */
    ra.name = "c";
    cr_assert_eq(bh_call(h, KB_FOP_RENAME, &ra, NULL), 0);
    nl.gfid = ga;
    cr_assert_eq(bh_call(h, KB_FOP_LOOKUP, &nl, NULL), -ENOENT);
    handle_rel(&ga, rel, sizeof(rel));
    cr_assert_eq(brick_stat(rel, &st), -ENOENT);
    handle_rel(&gb, rel, sizeof(rel));
    cr_assert_eq(brick_stat(rel, &st), 0);
    cr_assert_eq(bh_lookup(h, ROOT, "b", &ia), 0);
    cr_assert(kb_gfid_eq(&ia.gfid, &gb));
    cr_assert_eq(ia.nlink, 1);
}

Test(posix, unlink_keeps_open_fd)
{
    kb_gfid_t g;
    uint64_t fd;
    char rel[128], buf[16];
    struct stat st;
    cr_assert_eq(bh_create(h, ROOT, "f", 0644, O_RDWR, &g, &fd), 0);
    cr_assert_eq(bh_write(h, &g, fd, 0, "hello", 5, 0), 5);
    kb_args_t u = { .gfid = kb_gfid_root, .name = "f" };
    cr_assert_eq(bh_call(h, KB_FOP_UNLINK, &u, NULL), 0);
    handle_rel(&g, rel, sizeof(rel));
    cr_assert_eq(brick_stat(rel, &st), 0, "open here: the handle stays until the last close (orphan_test.c)");
    kb_args_t nl = { .gfid = g };
    cr_assert_eq(bh_call(h, KB_FOP_LOOKUP, &nl, NULL), 0);
    cr_assert_eq(bh_read(h, &g, fd, 0, sizeof(buf), buf), 5, "open fd keeps working");
    cr_assert(memcmp(buf, "hello", 5) == 0);
    kb_args_t sa = { .gfid = g, .fd = fd, .fd_valid = 1 };
    kb_reply_t r;
    cr_assert_eq(bh_call(h, KB_FOP_STAT, &sa, &r), 0);
    cr_assert_eq(r.attr.nlink, 0);
    kb_reply_clear(&r);
    cr_assert_eq(bh_release(h, &g, fd), 0);
    cr_assert_eq(brick_stat(rel, &st), -ENOENT, "the last close removes the handle");
    cr_assert_eq(bh_call(h, KB_FOP_LOOKUP, &nl, NULL), -ENOENT);
    cr_assert_eq(bh_call(h, KB_FOP_UNLINK, &u, NULL), -ENOENT);
}

Test(posix, rename_flags_and_dir_records)
{
    kb_gfid_t d1, d2, sub, f;
    cr_assert_eq(bh_mkdir(h, ROOT, "d1", 0755, &d1), 0);
    cr_assert_eq(bh_mkdir(h, ROOT, "d2", 0755, &d2), 0);
    cr_assert_eq(bh_mkdir(h, &d1, "sub", 0755, &sub), 0);
    cr_assert_eq(bh_create(h, &sub, "file", 0644, O_RDWR, &f, NULL), 0);
    cr_assert_eq(bh_mkdir(h, ROOT, "d1", 0755, NULL), -EEXIST);

    kb_args_t ra = { .gfid = kb_gfid_root, .name = "d1", .gfid2 = kb_gfid_root, .name2 = "d2",
                     .flags = RENAME_NOREPLACE };
    cr_assert_eq(bh_call(h, KB_FOP_RENAME, &ra, NULL), -EEXIST);
    ra.flags = 0;
    ra.gfid2 = d2;
    ra.name2 = "moved";
    cr_assert_eq(bh_call(h, KB_FOP_RENAME, &ra, NULL), 0);

    /* a cold cache must find sub through the rewritten record of d1 */
    restart(NULL);
    kb_args_t nl = { .gfid = sub };
    kb_reply_t r;
    cr_assert_eq(bh_call(h, KB_FOP_LOOKUP, &nl, &r), 0);
    cr_assert(S_ISDIR(r.attr.mode));
    kb_reply_clear(&r);
    kb_args_t ip = { .gfid = f, .flags = KB_IPC_GFID_PATH };
    cr_assert_eq(bh_call(h, KB_FOP_IPC, &ip, &r), 0);
    cr_assert(r.data);
    cr_assert_eq(r.data->len, strlen("/d2/moved/sub/file"));
    cr_assert(memcmp(r.data->data, "/d2/moved/sub/file", r.data->len) == 0, "%.*s", (int)r.data->len,
              r.data->data);
    kb_reply_clear(&r);

    /* exchange a directory with a file: both records follow */
    kb_gfid_t x;
    cr_assert_eq(bh_create(h, ROOT, "x", 0644, O_RDWR, &x, NULL), 0);
    kb_args_t ex = { .gfid = d2, .name = "moved", .gfid2 = kb_gfid_root, .name2 = "x", .flags = RENAME_EXCHANGE };
    cr_assert_eq(bh_call(h, KB_FOP_RENAME, &ex, NULL), 0);
    restart(NULL);
    ip.gfid = sub;
    cr_assert_eq(bh_call(h, KB_FOP_IPC, &ip, &r), 0);
    cr_assert(r.data && r.data->len == strlen("/x/sub") && memcmp(r.data->data, "/x/sub", 6) == 0);
    kb_reply_clear(&r);
    ip.gfid = x;
    cr_assert_eq(bh_call(h, KB_FOP_IPC, &ip, &r), 0);
    cr_assert(r.data && r.data->len == strlen("/d2/moved") && memcmp(r.data->data, "/d2/moved", 9) == 0);
    kb_reply_clear(&r);

    /* rmdir removes the record; a removed dir resolves to ENOENT */
    kb_args_t u = { .gfid = sub, .name = "file" };
    cr_assert_eq(bh_call(h, KB_FOP_UNLINK, &u, NULL), 0);
    kb_args_t rd = { .gfid = d1, .name = "sub" };
    cr_assert_eq(bh_call(h, KB_FOP_RMDIR, &rd, NULL), 0);
    nl.gfid = sub;
    cr_assert_eq(bh_call(h, KB_FOP_LOOKUP, &nl, NULL), -ENOENT);
    rd.gfid = kb_gfid_root;
    rd.name = "x";
    cr_assert_eq(bh_call(h, KB_FOP_RMDIR, &rd, NULL), 0);
    nl.gfid = d1;
    cr_assert_eq(bh_call(h, KB_FOP_LOOKUP, &nl, NULL), -ENOENT);
}

/* 200 levels of 200-character names: > 40 KB of path, far past PATH_MAX and
 * past the kernel's 40-symlink limit; a tiny dir cache forces chain reads. */
static void deep_name(char out[201], int i)
{
    memset(out, 'a' + i % 26, 200);
    out[200] = 0;
    out[0] = (char)('0' + i / 100);
    out[1] = (char)('0' + i / 10 % 10);
    out[2] = (char)('0' + i % 10);
    out[3] = '_';
}

Test(posix, deep_tree)
{
    restart("  option dir-cache-size 16\n");
    char name[201];
    kb_gfid_t cur = kb_gfid_root, dirs[200];
    for (int i = 0; i < 200; i++) {
        deep_name(name, i);
        cr_assert_eq(bh_mkdir(h, &cur, name, 0755, &dirs[i]), 0, "level %d", i);
        cur = dirs[i];
    }
    kb_gfid_t g;
    uint64_t fd;
    cr_assert_eq(bh_create(h, &cur, "leaf", 0644, O_RDWR, &g, &fd), 0);
    cr_assert_eq(bh_write(h, &g, fd, 0, "deep", 4, 0), 4);
    cr_assert_eq(bh_release(h, &g, fd), 0);

    restart("  option dir-cache-size 16\n");   /* cold: resolve through 200 records */
    kb_iatt_t ia;
    cr_assert_eq(bh_lookup(h, &dirs[199], "leaf", &ia), 0);
    cr_assert(kb_gfid_eq(&ia.gfid, &g));
    cr_assert_eq(ia.size, 4);
    kb_args_t nl = { .gfid = dirs[150] };
    cr_assert_eq(bh_call(h, KB_FOP_LOOKUP, &nl, NULL), 0);
    char buf[8];
    cr_assert_eq(bh_open(h, &g, O_RDONLY, &fd), 0);
    cr_assert_eq(bh_read(h, &g, fd, 0, 8, buf), 4);
    cr_assert(memcmp(buf, "deep", 4) == 0);
    cr_assert_eq(bh_release(h, &g, fd), 0);
    kb_args_t ip = { .gfid = g, .flags = KB_IPC_GFID_PATH };
    kb_reply_t r;
    cr_assert_eq(bh_call(h, KB_FOP_IPC, &ip, &r), 0);
    cr_assert_eq(r.data->len, 200 * 201 + 5);
    kb_reply_clear(&r);
    /* renaming a mid-level directory touches only its own record */
    kb_args_t ra = { .gfid = dirs[98], .gfid2 = dirs[98], .name2 = "renamed" };
    char n99[201];
    deep_name(n99, 99);
    ra.name = n99;
    cr_assert_eq(bh_call(h, KB_FOP_RENAME, &ra, NULL), 0);
    restart("  option dir-cache-size 16\n");
    cr_assert_eq(bh_lookup(h, &dirs[199], "leaf", &ia), 0);
    cr_assert_eq(bh_lookup(h, &dirs[98], "renamed", &ia), 0);
    cr_assert(kb_gfid_eq(&ia.gfid, &dirs[99]));
}

/* ---------------- readdir ---------------- */

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

Test(posix, readdir_10000_with_cookies)
{
    enum { N = 10000 };
    char name[32];
    /* A few through the fop, the bulk straight on disk (entries with a gfid
     * but no handle, as a brick may hold after a crash): creating 10,000
     * handles costs seconds on a slow disk and is not what this tests. */
    int bfd = open(dir, O_RDONLY | O_DIRECTORY);
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof(name), "entry-%05d", i);
        kb_gfid_t g;
        kb_gfid_generate(&g);
        if (i % 1000 == 0) {
            kb_args_t a = { .gfid = kb_gfid_root, .name = name, .mode = S_IFREG | 0644, .newgfid = g };
            cr_assert_eq(bh_call(h, KB_FOP_MKNOD, &a, NULL), 0, "%s", name);
            continue;
        }
        char path[64];
        cr_assert_eq(mknodat(bfd, name, S_IFREG | 0644, 0), 0);
        snprintf(path, sizeof(path), "/proc/self/fd/%d/%s", bfd, name);
        cr_assert_eq(setxattr(path, KB_XATTR_GFID, g.b, 16, 0), 0);
    }
    close(bfd);
    kb_args_t od = { .gfid = kb_gfid_root };
    kb_reply_t r;
    cr_assert_eq(bh_call(h, KB_FOP_OPENDIR, &od, &r), 0);
    uint64_t dfd = r.fd;
    kb_reply_clear(&r);
    char **seen = calloc(N + 16, sizeof(char *));
    int n = 0, calls = 0;
    uint64_t off = 0;
    for (;;) {
        kb_args_t ra = { .gfid = kb_gfid_root, .fd = dfd, .off = off, .size = 4096, .flags = calls % 2 };
        cr_assert_geq(bh_call(h, KB_FOP_READDIR, &ra, &r), 0);
        calls++;
        if (r.ndirents == 0) {
            kb_reply_clear(&r);
            break;
        }
        for (uint32_t i = 0; i < r.ndirents; i++) {
            cr_assert_lt(n, N, "more entries than files");
            cr_assert_neq(strcmp(r.dirents[i].name, ".kembar"), 0);
            cr_assert_neq(strcmp(r.dirents[i].name, "."), 0);
            cr_assert_neq(strcmp(r.dirents[i].name, ".."), 0);
            if (ra.flags & 1) {
                cr_assert(r.dirents[i].has_attr);
                cr_assert(!kb_gfid_is_null(&r.dirents[i].gfid));
                cr_assert(kb_gfid_eq(&r.dirents[i].attr.gfid, &r.dirents[i].gfid));
                cr_assert(S_ISREG(r.dirents[i].attr.mode));
            }
            seen[n++] = strdup(r.dirents[i].name);
        }
        off = r.dirents[r.ndirents - 1].off;
        kb_reply_clear(&r);
    }
    cr_assert_eq(n, N);
    cr_assert_gt(calls, 20, "batches must respect the size limit");
    qsort(seen, (size_t)n, sizeof(char *), cmp_str);
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof(name), "entry-%05d", i);
        cr_assert_str_eq(seen[i], name, "every name exactly once");
        free(seen[i]);
    }
    free(seen);
    kb_args_t rd = { .gfid = kb_gfid_root, .fd = dfd };
    cr_assert_eq(bh_call(h, KB_FOP_RELEASEDIR, &rd, NULL), 0);
}

/* ---------------- confinement ---------------- */

Test(posix, refuses_bad_names)
{
    struct { const char *name; int err; } bad[] = {
        { "..", -EINVAL }, { ".", -EINVAL }, { "a/b", -EINVAL }, { "", -EINVAL },
        { "/etc", -EINVAL }, { ".kembar", -EPERM },
    };
    for (size_t i = 0; i < KB_ARRAY_SIZE(bad); i++) {
        cr_assert_eq(bh_lookup(h, ROOT, bad[i].name, NULL), bad[i].err, "lookup %s", bad[i].name);
        cr_assert_eq(bh_create(h, ROOT, bad[i].name, 0644, O_RDWR, NULL, NULL), bad[i].err, "create %s",
                     bad[i].name);
        cr_assert_eq(bh_mkdir(h, ROOT, bad[i].name, 0755, NULL), bad[i].err, "mkdir %s", bad[i].name);
    }
    char longname[300];
    memset(longname, 'x', 256);
    longname[256] = 0;
    cr_assert_eq(bh_create(h, ROOT, longname, 0644, O_RDWR, NULL, NULL), -ENAMETOOLONG);
    kb_args_t nn = { .gfid = kb_gfid_root, .name = NULL };
    cr_assert_eq(bh_call(h, KB_FOP_MKDIR, &nn, NULL), -EINVAL);
    /* .kembar is only special at the root */
    kb_gfid_t d;
    cr_assert_eq(bh_mkdir(h, ROOT, "d", 0755, &d), 0);
    cr_assert_eq(bh_mkdir(h, &d, ".kembar", 0755, NULL), 0);
    kb_args_t ren = { .gfid = d, .name = ".kembar", .gfid2 = kb_gfid_root, .name2 = ".kembar" };
    cr_assert_eq(bh_call(h, KB_FOP_RENAME, &ren, NULL), -EPERM);
    kb_args_t rm = { .gfid = kb_gfid_root, .name = ".kembar" };
    cr_assert_eq(bh_call(h, KB_FOP_RMDIR, &rm, NULL), -EPERM);
    struct stat st;
    cr_assert_eq(brick_stat(".kembar/handles", &st), 0);
}

Test(posix, symlinks_are_never_followed)
{
    char *out = bh_tmpdir("outside");
    char victim[512], vdir[512];
    snprintf(victim, sizeof(victim), "%s/victim", out);
    snprintf(vdir, sizeof(vdir), "%s/vdir", out);
    FILE *fp = fopen(victim, "w");
    fputs("precious", fp);
    fclose(fp);
    mkdir(vdir, 0755);

    kb_args_t sl = { .gfid = kb_gfid_root, .name = "evil", .name2 = victim };
    kb_gfid_generate(&sl.newgfid);
    kb_reply_t r;
    cr_assert_eq(bh_call(h, KB_FOP_SYMLINK, &sl, &r), 0);
    cr_assert(S_ISLNK(r.attr.mode));
    kb_reply_clear(&r);
    kb_args_t sl2 = { .gfid = kb_gfid_root, .name = "evildir", .name2 = vdir };
    kb_gfid_generate(&sl2.newgfid);
    cr_assert_eq(bh_call(h, KB_FOP_SYMLINK, &sl2, NULL), 0);
    kb_args_t sl3 = { .gfid = kb_gfid_root, .name = "up", .name2 = "../../../../../../../../.." };
    kb_gfid_generate(&sl3.newgfid);
    cr_assert_eq(bh_call(h, KB_FOP_SYMLINK, &sl3, NULL), 0);

    uint64_t fd;
    cr_assert_lt(bh_open(h, &sl.newgfid, O_RDWR, &fd), 0, "open through a symlink");
    cr_assert_lt(bh_open(h, &sl.newgfid, O_WRONLY | O_TRUNC, &fd), 0);
    cr_assert_eq(bh_create(h, ROOT, "evil", 0644, O_RDWR, NULL, NULL), -EEXIST);
    kb_args_t tr = { .gfid = sl.newgfid, .off = 0 };
    cr_assert_lt(bh_call(h, KB_FOP_TRUNCATE, &tr, NULL), 0);
    kb_args_t sa = { .gfid = sl.newgfid, .flags = KB_SET_SIZE | KB_SET_MODE, .attr = { .size = 0, .mode = 0777 } };
    cr_assert_lt(bh_call(h, KB_FOP_SETATTR, &sa, NULL), 0);
    kb_args_t sx = { .gfid = sl.newgfid, .name = "trusted.evil", .data = kb_buf_copy("1", 1) };
    bh_call(h, KB_FOP_SETXATTR, &sx, NULL);   /* if allowed, lands on the link itself */
    kb_buf_unref(sx.data);
    /* through the directory symlinks: nothing may be created outside */
    cr_assert_lt(bh_create(h, &sl2.newgfid, "planted", 0644, O_RDWR, NULL, NULL), 0);
    cr_assert_lt(bh_mkdir(h, &sl2.newgfid, "planted", 0755, NULL), 0);
    cr_assert_lt(bh_create(h, &sl3.newgfid, "planted", 0644, O_RDWR, NULL, NULL), 0);
    cr_assert_lt(bh_lookup(h, &sl3.newgfid, "etc", NULL), 0);
    kb_args_t od = { .gfid = sl2.newgfid };
    cr_assert_lt(bh_call(h, KB_FOP_OPENDIR, &od, NULL), 0);
    kb_args_t rl = { .gfid = sl.newgfid };
    cr_assert_eq(bh_call(h, KB_FOP_READLINK, &rl, &r), (int)strlen(victim));
    cr_assert(memcmp(r.data->data, victim, strlen(victim)) == 0);
    kb_reply_clear(&r);

    char buf[64] = "";
    fp = fopen(victim, "r");
    cr_assert(fgets(buf, sizeof(buf), fp));
    fclose(fp);
    cr_assert_str_eq(buf, "precious");
    struct stat st;
    cr_assert_eq(stat(victim, &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0644 & ~022 & 0777, "mode untouched");
    cr_assert_lt(getxattr(victim, "trusted.evil", buf, sizeof(buf)), 0);
    char planted[600];
    snprintf(planted, sizeof(planted), "%s/planted", vdir);
    cr_assert_neq(lstat(planted, &st), 0);
    bh_rmrf(out);
    free(out);
}

Test(posix, internal_xattrs_invisible)
{
    kb_gfid_t g;
    cr_assert_eq(bh_create(h, ROOT, "f", 0644, O_RDWR, &g, NULL), 0);
    const char *keys[] = { KB_XATTR_GFID, KB_CL_XATTR, "trusted.kembar.anything" };
    for (size_t i = 0; i < KB_ARRAY_SIZE(keys); i++) {
        kb_args_t s = { .gfid = g, .name = (char *)keys[i], .data = kb_buf_copy("0123456789abcdef", 16) };
        cr_assert_eq(bh_call(h, KB_FOP_SETXATTR, &s, NULL), -EPERM, "%s", keys[i]);
        kb_buf_unref(s.data);
        kb_args_t ga = { .gfid = g, .name = (char *)keys[i], .size = 64 };
        cr_assert_eq(bh_call(h, KB_FOP_GETXATTR, &ga, NULL), -ENODATA, "%s", keys[i]);
        kb_args_t ra = { .gfid = g, .name = (char *)keys[i] };
        cr_assert_eq(bh_call(h, KB_FOP_REMOVEXATTR, &ra, NULL), -EPERM);
    }
    kb_args_t ga = { .gfid = kb_gfid_root, .name = KB_XATTR_VOLUME_ID, .size = 64 };
    cr_assert_eq(bh_call(h, KB_FOP_GETXATTR, &ga, NULL), -ENODATA);

    kb_args_t s = { .gfid = g, .name = "user.color", .data = kb_buf_copy("blue", 4) };
    cr_assert_eq(bh_call(h, KB_FOP_SETXATTR, &s, NULL), 0);
    s.flags = XATTR_CREATE;
    cr_assert_eq(bh_call(h, KB_FOP_SETXATTR, &s, NULL), -EEXIST);
    kb_buf_unref(s.data);
    kb_reply_t r;
    kb_args_t gq = { .gfid = g, .name = "user.color", .size = 0 };
    cr_assert_eq(bh_call(h, KB_FOP_GETXATTR, &gq, NULL), 4);
    gq.size = 2;
    cr_assert_eq(bh_call(h, KB_FOP_GETXATTR, &gq, NULL), -ERANGE);
    gq.size = 100;
    cr_assert_eq(bh_call(h, KB_FOP_GETXATTR, &gq, &r), 4);
    cr_assert(memcmp(r.data->data, "blue", 4) == 0);
    kb_reply_clear(&r);

    kb_args_t la = { .gfid = g, .size = 4096 };
    int n = bh_call(h, KB_FOP_LISTXATTR, &la, &r);
    cr_assert_eq(n, (int)sizeof("user.color"), "only user.color listed (got %d)", n);
    cr_assert(memcmp(r.data->data, "user.color", sizeof("user.color")) == 0);
    kb_reply_clear(&r);
    la.size = 0;
    cr_assert_eq(bh_call(h, KB_FOP_LISTXATTR, &la, NULL), (int)sizeof("user.color"));
    kb_args_t rm = { .gfid = g, .name = "user.color" };
    cr_assert_eq(bh_call(h, KB_FOP_REMOVEXATTR, &rm, NULL), 0);
    cr_assert_eq(bh_call(h, KB_FOP_GETXATTR, &gq, NULL), -ENODATA);
    /* the gfid is really there on disk */
    char path[512];
    kb_gfid_t disk;
    snprintf(path, sizeof(path), "%s/f", dir);
    cr_assert_eq(getxattr(path, KB_XATTR_GFID, disk.b, 16), 16);
    cr_assert(kb_gfid_eq(&disk, &g));
}

/* ---------------- attributes ---------------- */

Test(posix, setattr_truncate_readlink_statfs)
{
    kb_gfid_t g;
    uint64_t fd;
    cr_assert_eq(bh_create(h, ROOT, "f", 0644, O_RDWR, &g, &fd), 0);
    kb_args_t sa = { .gfid = g, .flags = KB_SET_MODE | KB_SET_UID | KB_SET_GID | KB_SET_ATIME | KB_SET_MTIME,
                     .attr = { .mode = 0600, .uid = 12, .gid = 34, .atime_sec = 1000, .atime_nsec = 5,
                               .mtime_sec = 2000, .mtime_nsec = 7 } };
    kb_reply_t r;
    cr_assert_eq(bh_call(h, KB_FOP_SETATTR, &sa, &r), 0);
    cr_assert_eq(r.attr.mode & 07777, 0600);
    cr_assert_eq(r.attr.uid, 12);
    cr_assert_eq(r.attr.gid, 34);
    cr_assert_eq(r.attr.atime_sec, 1000);
    cr_assert_eq(r.attr.mtime_sec, 2000);
    cr_assert_eq(r.attr.mtime_nsec, 7);
    cr_assert(kb_gfid_eq(&r.attr.gfid, &g));
    kb_reply_clear(&r);
    sa.flags = KB_SET_MTIME_NOW | KB_SET_SIZE;
    sa.attr.size = 12345;
    sa.fd = fd;
    sa.fd_valid = 1;
    cr_assert_eq(bh_call(h, KB_FOP_SETATTR, &sa, &r), 0);
    cr_assert_gt(r.attr.mtime_sec, 1000000000);
    cr_assert_eq(r.attr.atime_sec, 1000, "atime untouched");
    cr_assert_eq(r.attr.size, 12345);
    kb_reply_clear(&r);
    kb_args_t tr = { .gfid = g, .off = 100 };
    cr_assert_eq(bh_call(h, KB_FOP_TRUNCATE, &tr, &r), 0);
    cr_assert_eq(r.attr.size, 100);
    kb_reply_clear(&r);
    kb_gfid_t d;
    cr_assert_eq(bh_mkdir(h, ROOT, "d", 0755, &d), 0);
    tr.gfid = d;
    cr_assert_eq(bh_call(h, KB_FOP_TRUNCATE, &tr, NULL), -EISDIR);
    cr_assert_eq(bh_open(h, &d, O_RDONLY, NULL), -EISDIR);
    kb_args_t sl = { .gfid = d, .name = "ln", .name2 = "some/target" };
    kb_gfid_generate(&sl.newgfid);
    cr_assert_eq(bh_call(h, KB_FOP_SYMLINK, &sl, NULL), 0);
    kb_args_t rl = { .gfid = sl.newgfid };
    cr_assert_eq(bh_call(h, KB_FOP_READLINK, &rl, &r), 11);
    cr_assert(memcmp(r.data->data, "some/target", 11) == 0);
    kb_reply_clear(&r);
    rl.gfid = d;
    cr_assert_eq(bh_call(h, KB_FOP_READLINK, &rl, NULL), -EINVAL, "a directory record is not a link");
    kb_args_t sf = { .gfid = kb_gfid_root };
    cr_assert_eq(bh_call(h, KB_FOP_STATFS, &sf, &r), 0);
    cr_assert_gt(r.statfs.blocks, 0);
    cr_assert_eq(r.statfs.namemax, 255);
    kb_reply_clear(&r);
    kb_args_t mk = { .gfid = kb_gfid_root, .name = "fifo", .mode = S_IFIFO | 0600 };
    kb_gfid_generate(&mk.newgfid);
    cr_assert_eq(bh_call(h, KB_FOP_MKNOD, &mk, &r), 0);
    cr_assert(S_ISFIFO(r.attr.mode));
    kb_reply_clear(&r);
    cr_assert_eq(bh_open(h, &mk.newgfid, O_RDONLY, NULL), -EINVAL, "special files are never opened");
    cr_assert_eq(bh_release(h, &g, fd), 0);
}

/* ---------------- holes, zeroing, O_DIRECT ---------------- */

static int fallocate_op(const kb_gfid_t *g, uint64_t fd, uint32_t mode, uint64_t off, uint64_t len)
{
    kb_args_t a = { .gfid = *g, .fd = fd, .flags = mode, .off = off, .size = len };
    return bh_call(h, KB_FOP_FALLOCATE, &a, NULL);
}

static int64_t lseek_op(const kb_gfid_t *g, uint64_t fd, uint64_t off, int whence)
{
    kb_args_t a = { .gfid = *g, .fd = fd, .off = off, .flags = (uint32_t)whence };
    kb_reply_t r;
    int rc = bh_call(h, KB_FOP_LSEEK, &a, &r);
    return rc < 0 ? rc : (int64_t)r.off;
}

Test(posix, punch_hole_and_seek)
{
    kb_gfid_t g;
    uint64_t fd;
    size_t n = 1 << 20;
    uint8_t *buf = malloc(n);
    memset(buf, 0x5a, n);
    cr_assert_eq(bh_create(h, ROOT, "img", 0644, O_RDWR, &g, &fd), 0);
    cr_assert_eq(bh_write(h, &g, fd, 0, buf, n, 0), (int)n);
    kb_args_t fs = { .gfid = g, .fd = fd };
    cr_assert_eq(bh_call(h, KB_FOP_FSYNC, &fs, NULL), 0);
    cr_assert_eq(fallocate_op(&g, fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 256 << 10, 256 << 10), 0);
    cr_assert_eq(lseek_op(&g, fd, 0, SEEK_HOLE), 256 << 10);
    cr_assert_eq(lseek_op(&g, fd, 256 << 10, SEEK_DATA), 512 << 10);
    cr_assert_eq(lseek_op(&g, fd, 0, SEEK_DATA), 0);
    cr_assert_eq(lseek_op(&g, fd, n + 10, SEEK_DATA), -ENXIO);
    cr_assert_eq(bh_read(h, &g, fd, 0, n, buf), (int)n);
    for (size_t i = 0; i < n; i++) {
        uint8_t want = i >= (256u << 10) && i < (512u << 10) ? 0 : 0x5a;
        if (buf[i] != want)
            cr_assert_fail("byte %zu is %x", i, buf[i]);
    }
    kb_iatt_t ia;
    cr_assert_eq(bh_lookup(h, ROOT, "img", &ia), 0);
    cr_assert_eq(ia.size, n, "KEEP_SIZE");
    cr_assert_eq(fallocate_op(&g, fd, 0x20 /* COLLAPSE_RANGE */, 0, 4096), -EOPNOTSUPP);
    free(buf);
}

Test(posix, zero_range_and_keep_size)
{
    kb_gfid_t g;
    uint64_t fd;
    uint8_t buf[65536];
    memset(buf, 0xab, sizeof(buf));
    cr_assert_eq(bh_create(h, ROOT, "z", 0644, O_RDWR, &g, &fd), 0);
    cr_assert_eq(bh_write(h, &g, fd, 0, buf, sizeof(buf), 0), (int)sizeof(buf));
    cr_assert_eq(fallocate_op(&g, fd, FALLOC_FL_ZERO_RANGE, 4096, 8192), 0);
    memset(buf, 0, sizeof(buf));
    cr_assert_eq(bh_read(h, &g, fd, 0, sizeof(buf), buf), (int)sizeof(buf));
    for (size_t i = 0; i < sizeof(buf); i++) {
        uint8_t want = i >= 4096 && i < 12288 ? 0 : 0xab;
        if (buf[i] != want)
            cr_assert_fail("byte %zu is %x", i, buf[i]);
    }
    cr_assert_eq(fallocate_op(&g, fd, FALLOC_FL_KEEP_SIZE, 65536, 1 << 20), 0);
    kb_iatt_t ia;
    cr_assert_eq(bh_lookup(h, ROOT, "z", &ia), 0);
    cr_assert_eq(ia.size, 65536);
    cr_assert_gt(ia.blocks * 512, (uint64_t)65536, "space was allocated");
    cr_assert_eq(fallocate_op(&g, fd, 0, 65536, 4096), 0);
    cr_assert_eq(bh_lookup(h, ROOT, "z", &ia), 0);
    cr_assert_eq(ia.size, 65536 + 4096);
}

static void noop_free(void *opaque, void *data) {}

Test(posix, o_direct)
{
    kb_gfid_t g;
    uint64_t fd;
    cr_assert_eq(bh_create(h, ROOT, "d", 0644, O_RDWR | O_DIRECT, &g, &fd), 0);
    posix_priv_t *p = bh_xl(h, "b-posix")->priv;
    posix_fd_t *f = posix_fd_get(p, fd, &g);
    cr_assert(f);
    cr_assert(fcntl(f->fd, F_GETFL) & O_DIRECT, "the brick fd is O_DIRECT");
    posix_fd_put(p, f);
    size_t n = 256 << 10;
    kb_buf_t *b = kb_buf_new(n);
    fill((uint8_t *)b->data, n, 3);
    b->len = n;
    kb_args_t w = { .gfid = g, .fd = fd, .off = 1 << 20, .data = b, .flags = O_DIRECT };
    cr_assert_eq(bh_call(h, KB_FOP_WRITE, &w, NULL), (int)n);
    uint8_t *rb = malloc(n);
    cr_assert_eq(bh_read(h, &g, fd, 1 << 20, n, rb), (int)n);
    cr_assert(memcmp(rb, b->data, n) == 0);
    /* unaligned memory: bounce; unaligned offset/length: buffered twin */
    char *raw = malloc(8192 + 1);
    fill((uint8_t *)raw + 1, 8192, 9);
    kb_buf_t *odd = kb_buf_wrap(raw + 1, 8192, noop_free, NULL);
    kb_args_t wo = { .gfid = g, .fd = fd, .off = 8192, .data = odd };
    cr_assert_eq(bh_call(h, KB_FOP_WRITE, &wo, NULL), 8192);
    kb_buf_unref(odd);
    cr_assert_eq(bh_read(h, &g, fd, 8192, 8192, rb), 8192);
    cr_assert(memcmp(rb, raw + 1, 8192) == 0, "bounced write landed");
    cr_assert_eq(bh_write(h, &g, fd, 100, "unaligned!", 10, 0), 10);
    cr_assert_eq(bh_read(h, &g, fd, 0, 4096, rb), 4096);
    cr_assert(memcmp(rb + 100, "unaligned!", 10) == 0);
    cr_assert_eq(bh_read(h, &g, fd, 1 << 20, 4096, rb), 4096);
    cr_assert(memcmp(rb, b->data, 4096) == 0, "direct read sees data after buffered write");
    free(raw);
    free(rb);
    kb_buf_unref(b);
    cr_assert_eq(bh_release(h, &g, fd), 0);
}

/* ---------------- changelog ---------------- */

static int xattrop(const kb_gfid_t *g, uint32_t flags, const kb_cl_matrix_t *delta, kb_cl_matrix_t *out)
{
    kb_args_t a = { .gfid = *g, .name = KB_CL_XATTR, .flags = flags };
    if (delta) {
        a.data = kb_buf_new(KB_CL_MATRIX_BYTES);
        kb_cl_encode(delta, (uint8_t *)a.data->data);
        a.data->len = KB_CL_MATRIX_BYTES;
    }
    kb_reply_t r;
    int rc = bh_call(h, KB_FOP_XATTROP, &a, &r);
    if (rc == 0) {
        cr_assert(r.data && r.data->len == KB_CL_MATRIX_BYTES);
        kb_cl_decode((const uint8_t *)r.data->data, out);
    }
    kb_reply_clear(&r);
    kb_buf_unref(a.data);
    return rc;
}

static bool index_has(const kb_gfid_t *g)
{
    char rel[128], s[KB_GFID_STRLEN];
    struct stat st;
    snprintf(rel, sizeof(rel), ".kembar/index/%s", kb_gfid_str(g, s));
    return brick_stat(rel, &st) == 0;
}

/* An index entry is a hard link to .kembar/index-base (no inode of its own);
 * without the base it is made again; when no link can be made, an empty
 * file does, and the listing is the same. */
Test(posix, index_entries_are_links_to_one_base_file)
{
    kb_gfid_t g[3];
    kb_cl_matrix_t d = { 0 }, out;
    d.v[KB_CL_DIRTY_ROW][KB_CL_DATA] = 1;
    for (int i = 0; i < 3; i++) {
        char name[16];
        uint64_t cfd;
        snprintf(name, sizeof(name), "l%d", i);
        cr_assert_eq(bh_create(h, ROOT, name, 0644, O_RDWR, &g[i], &cfd), 0);
        cr_assert_eq(bh_release(h, &g[i], cfd), 0);
    }
    struct stat base, e0, e1, e2;
    cr_assert_eq(xattrop(&g[0], KB_XOP_ADD, &d, &out), 0);
    cr_assert_eq(xattrop(&g[1], KB_XOP_ADD, &d, &out), 0);
    cr_assert_eq(brick_stat(".kembar/index-base", &base), 0);
    char rel[128], s[KB_GFID_STRLEN];
    snprintf(rel, sizeof(rel), ".kembar/index/%s", kb_gfid_str(&g[0], s));
    cr_assert_eq(brick_stat(rel, &e0), 0);
    snprintf(rel, sizeof(rel), ".kembar/index/%s", kb_gfid_str(&g[1], s));
    cr_assert_eq(brick_stat(rel, &e1), 0);
    cr_assert(e0.st_ino == base.st_ino && e1.st_ino == base.st_ino, "both entries are the base's links");
    cr_assert_eq(base.st_nlink, 3, "the base and two entries");
    d.v[KB_CL_DIRTY_ROW][KB_CL_DATA] = -1;
    cr_assert_eq(xattrop(&g[0], KB_XOP_ADD, &d, &out), 0);
    cr_assert(!index_has(&g[0]));
    cr_assert_eq(brick_stat(".kembar/index-base", &base), 0);
    cr_assert_eq(base.st_nlink, 2, "the entry's link went, the base stays");
    /* the base removed by hand: made again at the next entry */
    char path[512];
    snprintf(path, sizeof(path), "%s/.kembar/index-base", dir);
    cr_assert_eq(unlink(path), 0);
    d.v[KB_CL_DIRTY_ROW][KB_CL_DATA] = 1;
    cr_assert_eq(xattrop(&g[0], KB_XOP_ADD, &d, &out), 0);
    cr_assert(index_has(&g[0]));
    cr_assert_eq(brick_stat(".kembar/index-base", &base), 0);
    /* no link possible (the base is a directory): an empty file of its own */
    cr_assert_eq(unlink(path), 0);
    cr_assert_eq(mkdir(path, 0700), 0);
    cr_assert_eq(xattrop(&g[2], KB_XOP_ADD, &d, &out), 0);
    snprintf(rel, sizeof(rel), ".kembar/index/%s", kb_gfid_str(&g[2], s));
    cr_assert_eq(brick_stat(rel, &e2), 0);
    cr_assert(S_ISREG(e2.st_mode) && e2.st_nlink == 1, "a file of its own");
    kb_args_t il = { .flags = KB_IPC_INDEX_LIST, .off = 0, .size = 10 };
    kb_reply_t r;
    cr_assert_eq(bh_call(h, KB_FOP_IPC, &il, &r), 0);
    cr_assert_eq(r.off, 3, "links and the file alike: three entries");
    kb_reply_clear(&r);
    cr_assert_eq(rmdir(path), 0);
}

Test(posix, xattrop_and_index)
{
    kb_gfid_t g;
    uint64_t cfd;
    cr_assert_eq(bh_create(h, ROOT, "f", 0644, O_RDWR, &g, &cfd), 0);
    cr_assert_eq(bh_release(h, &g, cfd), 0);   /* not open: an unlink removes it at once */
    kb_cl_matrix_t d = { 0 }, out;
    cr_assert_eq(xattrop(&g, KB_XOP_GET, NULL, &out), 0);
    for (int r = 0; r < KB_CL_ROWS; r++)
        for (int c = 0; c < KB_CL_COLS; c++)
            cr_assert_eq(out.v[r][c], 0);
    cr_assert(!index_has(&g));
    d.v[KB_CL_DIRTY_ROW][KB_CL_DATA] = 1;
    d.v[2][KB_CL_META] = 3;
    cr_assert_eq(xattrop(&g, KB_XOP_ADD, &d, &out), 0);
    cr_assert_eq(out.v[0][KB_CL_DATA], 1);
    cr_assert_eq(out.v[2][KB_CL_META], 3);
    cr_assert(index_has(&g), "non-zero counters: indexed");
    cr_assert_eq(xattrop(&g, KB_XOP_ADD, &d, &out), 0);
    cr_assert_eq(out.v[2][KB_CL_META], 6);
    /* the on-disk format: magic, version, then the matrix */
    char path[512];
    uint8_t raw[KB_CL_DISK_BYTES];
    snprintf(path, sizeof(path), "%s/f", dir);
    cr_assert_eq(getxattr(path, KB_CL_XATTR, raw, sizeof(raw)), KB_CL_DISK_BYTES);
    cr_assert_eq(raw[0] << 24 | raw[1] << 16 | raw[2] << 8 | raw[3], (int)KB_CL_MAGIC);
    /* back to zero (and clamped below zero): the index entry goes */
    d.v[0][KB_CL_DATA] = -2;
    d.v[2][KB_CL_META] = -100;
    cr_assert_eq(xattrop(&g, KB_XOP_ADD, &d, &out), 0);
    cr_assert_eq(out.v[0][KB_CL_DATA], 0);
    cr_assert_eq(out.v[2][KB_CL_META], 0);
    cr_assert(!index_has(&g), "all zero: index entry removed");
    /* IPC index list */
    kb_gfid_t d2;
    cr_assert_eq(bh_mkdir(h, ROOT, "dir", 0755, &d2), 0);
    kb_cl_matrix_t e = { 0 };
    e.v[1][KB_CL_ENTRY] = 1;
    cr_assert_eq(xattrop(&d2, KB_XOP_ADD, &e, &out), 0);
    cr_assert_eq(xattrop(&g, KB_XOP_ADD, &e, &out), 0);
    kb_args_t il = { .flags = KB_IPC_INDEX_LIST, .off = 0, .size = 10 };
    kb_reply_t r;
    cr_assert_eq(bh_call(h, KB_FOP_IPC, &il, &r), 0);
    cr_assert_eq(r.off, 2);
    cr_assert_eq(r.data->len, 32);
    bool got_g = false, got_d = false;
    for (int i = 0; i < 2; i++) {
        kb_gfid_t x;
        memcpy(x.b, r.data->data + 16 * i, 16);
        got_g |= kb_gfid_eq(&x, &g);
        got_d |= kb_gfid_eq(&x, &d2);
    }
    cr_assert(got_g && got_d);
    kb_reply_clear(&r);
    il.off = 1;
    cr_assert_eq(bh_call(h, KB_FOP_IPC, &il, &r), 0);
    cr_assert_eq(r.data->len, 16);
    kb_reply_clear(&r);
    /* wrong key, wrong size */
    kb_args_t bad = { .gfid = g, .name = "trusted.kembar.gfid", .flags = KB_XOP_GET };
    cr_assert_eq(bh_call(h, KB_FOP_XATTROP, &bad, NULL), -EINVAL);
    bad.name = KB_CL_XATTR;
    bad.flags = KB_XOP_ADD;
    bad.data = kb_buf_copy("short", 5);
    cr_assert_eq(bh_call(h, KB_FOP_XATTROP, &bad, NULL), -EINVAL);
    kb_buf_unref(bad.data);
    /* deleting the file drops its index entry */
    kb_args_t u = { .gfid = kb_gfid_root, .name = "f" };
    cr_assert_eq(bh_call(h, KB_FOP_UNLINK, &u, NULL), 0);
    cr_assert(!index_has(&g));
}

static kb_buf_t *regions_get(const kb_gfid_t *g)
{
    kb_args_t a = { .gfid = *g, .flags = KB_IPC_REGIONS_GET };
    kb_reply_t r;
    cr_assert_eq(bh_call(h, KB_FOP_IPC, &a, &r), 0);
    kb_buf_t *b = kb_buf_ref(r.data);
    kb_reply_clear(&r);
    return b;
}

/* Bits set in a map, as a sorted list. */
static int map_bits(const kb_buf_t *b, uint32_t *out, int max)
{
    if (!b)
        return 0;
    cr_assert_geq(b->len, KB_RM_HDR_BYTES);
    const uint8_t *p = (const uint8_t *)b->data;
    cr_assert_eq(kb_get_le32(p), KB_RM_MAGIC);
    cr_assert_eq(kb_get_le32(p + 4), KB_RM_VERSION);
    cr_assert_eq(kb_get_le32(p + 8), KB_RM_GRANULARITY);
    int n = 0;
    for (size_t i = 0; i < (b->len - KB_RM_HDR_BYTES) * 8; i++)
        if (p[KB_RM_HDR_BYTES + i / 8] >> (i % 8) & 1) {
            cr_assert_lt(n, max);
            out[n++] = (uint32_t)i;
        }
    return n;
}

static void regions_clear(const kb_gfid_t *g, const uint32_t *bits, int n)
{
    size_t len = KB_RM_HDR_BYTES + 8;
    kb_buf_t *b = kb_buf_new(len);
    memset(b->data, 0, len);
    kb_put_le32((uint8_t *)b->data, KB_RM_MAGIC);
    kb_put_le32((uint8_t *)b->data + 4, KB_RM_VERSION);
    kb_put_le32((uint8_t *)b->data + 8, KB_RM_GRANULARITY);
    for (int i = 0; i < n; i++)
        b->data[KB_RM_HDR_BYTES + bits[i] / 8] |= (char)(1 << (bits[i] % 8));
    b->len = len;
    kb_args_t a = { .gfid = *g, .flags = KB_IPC_REGIONS_CLEAR, .data = b };
    cr_assert_eq(bh_call(h, KB_FOP_IPC, &a, NULL), 0);
    kb_buf_unref(b);
}

Test(posix, region_map)
{
    kb_gfid_t g;
    uint64_t fd;
    uint32_t bits[64];
    cr_assert_eq(bh_create(h, ROOT, "vm.img", 0644, O_RDWR, &g, &fd), 0);
    cr_assert_eq(bh_write(h, &g, fd, 5 << 16, "untracked", 9, 0), 9);
    cr_assert_null(regions_get(&g), "no tracked write, no map");
    const uint32_t T = KB_WF_TRACK_REGIONS;
    cr_assert_eq(bh_write(h, &g, fd, 0, "a", 1, T), 1);
    cr_assert_eq(bh_write(h, &g, fd, 200 << 10, "bbbbbbbbbb", 10, T), 10);   /* region 3 */
    cr_assert_eq(bh_write(h, &g, fd, (1 << 20) - 1, "cc", 2, T), 2);         /* straddles 15|16 */
    cr_assert_eq(bh_write(h, &g, fd, 10, "again", 5, T), 5);                  /* region 0 again */
    kb_buf_t *m = regions_get(&g);
    int n = map_bits(m, bits, 64);
    kb_buf_unref(m);
    cr_assert_eq(n, 4);
    cr_assert(bits[0] == 0 && bits[1] == 3 && bits[2] == 15 && bits[3] == 16);
    /* the map is on disk (durable before the write) */
    char rel[128], s[KB_GFID_STRLEN];
    struct stat st;
    snprintf(rel, sizeof(rel), ".kembar/regions/%s", kb_gfid_str(&g, s));
    cr_assert_eq(brick_stat(rel, &st), 0);
    cr_assert_eq(st.st_size, KB_RM_HDR_BYTES + 3);

    /* CLEAR removes exactly the given bits; a later write sets its own again */
    uint32_t c1[] = { 0, 15 };
    regions_clear(&g, c1, 2);
    cr_assert_eq(bh_write(h, &g, fd, 64 << 10, "x", 1, T), 1);               /* region 1 */
    m = regions_get(&g);
    n = map_bits(m, bits, 64);
    kb_buf_unref(m);
    cr_assert_eq(n, 3);
    cr_assert(bits[0] == 1 && bits[1] == 3 && bits[2] == 16);
    /* a new graph reads the map from disk */
    cr_assert_eq(bh_release(h, &g, fd), 0);
    restart(NULL);
    m = regions_get(&g);
    cr_assert_eq(map_bits(m, bits, 64), 3);
    kb_buf_unref(m);
    uint32_t c2[] = { 1, 3, 16 };
    regions_clear(&g, c2, 3);
    cr_assert_null(regions_get(&g), "no bit left: map removed");
    cr_assert_eq(brick_stat(rel, &st), -ENOENT);

    /* truncate and fallocate track their ranges */
    cr_assert_eq(bh_open(h, &g, O_RDWR, &fd), 0);
    kb_args_t tr = { .gfid = g, .fd = fd, .fd_valid = 1, .off = 100 << 10, .flags = T };
    cr_assert_eq(bh_call(h, KB_FOP_TRUNCATE, &tr, NULL), 0);   /* size 1M+1 -> 100K: regions 1..16 */
    m = regions_get(&g);
    n = map_bits(m, bits, 64);
    kb_buf_unref(m);
    cr_assert_eq(n, 16);
    cr_assert(bits[0] == 1 && bits[15] == 16);
    uint32_t all[16];
    for (int i = 0; i < 16; i++)
        all[i] = (uint32_t)i + 1;
    regions_clear(&g, all, 16);
    cr_assert_eq(fallocate_op(&g, fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE | T, 40 << 16, 1 << 16), 0);
    m = regions_get(&g);
    n = map_bits(m, bits, 64);
    kb_buf_unref(m);
    cr_assert(n == 1 && bits[0] == 40);
    cr_assert_eq(bh_release(h, &g, fd), 0);
}

/* ---------------- rchecksum ---------------- */

Test(posix, rchecksum_matches_sha256)
{
    kb_gfid_t g;
    uint64_t fd;
    size_t n = 300 << 10, bs = 64 << 10;
    uint8_t *data = malloc(n);
    fill(data, n, 11);
    cr_assert_eq(bh_create(h, ROOT, "c", 0644, O_RDWR, &g, &fd), 0);
    cr_assert_eq(bh_write(h, &g, fd, 0, data, n, 0), (int)n);
    cr_assert_eq(fallocate_op(&g, fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, bs, bs), 0);
    memset(data + bs, 0, bs);
    kb_args_t a = { .gfid = g, .fd = fd, .off = 0, .size = 1 << 20, .flags = (uint32_t)bs };
    kb_reply_t r;
    cr_assert_eq(bh_call(h, KB_FOP_RCHECKSUM, &a, &r), 0);
    cr_assert_eq(r.off, n, "covers up to EOF");
    size_t nb = (n + bs - 1) / bs;
    cr_assert_eq(r.data->len, nb * 32);
    for (size_t i = 0; i < nb; i++) {
        uint8_t md[32], zero[32] = { 0 };
        unsigned len;
        EVP_Digest(data + i * bs, KB_MIN(bs, n - i * bs), md, &len, EVP_sha256(), NULL);
        const uint8_t *got = (const uint8_t *)r.data->data + i * 32;
        if (i == 1)
            cr_assert(memcmp(got, zero, 32) == 0 || memcmp(got, md, 32) == 0, "hole block");
        else
            cr_assert(memcmp(got, md, 32) == 0, "block %zu", i);
    }
    kb_reply_clear(&r);
    a.off = n;
    cr_assert_eq(bh_call(h, KB_FOP_RCHECKSUM, &a, &r), 0);
    cr_assert_eq(r.off, 0);
    kb_reply_clear(&r);
    a.flags = 0;
    cr_assert_eq(bh_call(h, KB_FOP_RCHECKSUM, &a, NULL), -EINVAL);
    free(data);
    cr_assert_eq(bh_release(h, &g, fd), 0);
}

/* ---------------- brick identity ---------------- */

Test(posix, brick_check)
{
    char err[512];
    kb_gfid_t va, vb, b1;
    kb_gfid_generate(&va);
    kb_gfid_generate(&vb);
    kb_gfid_generate(&b1);
    char *bd = bh_tmpdir("brick");
    char missing[600];
    snprintf(missing, sizeof(missing), "%s/missing", bd);
    cr_assert_eq(posix_brick_check(missing, &va, err, sizeof(err)), -ENOENT);
    cr_assert_eq(posix_brick_check(bd, &va, err, sizeof(err)), -ENODATA);
    cr_assert(strstr(err, "not a brick"), "%s", err);
    cr_assert_eq(posix_brick_prepare(bd, &va, &b1, true, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(posix_brick_check(bd, &va, err, sizeof(err)), 0);
    cr_assert_eq(posix_brick_check(bd, &vb, err, sizeof(err)), -EXDEV);
    cr_assert_eq(posix_brick_prepare(bd, &vb, &b1, true, err, sizeof(err)), -EEXIST, "another volume's");
    cr_assert_eq(posix_brick_prepare(bd, &va, &b1, false, err, sizeof(err)), 0, "idempotent");
    /* the translator refuses a wrong volume-id, accepts the right one */
    char vs[KB_GFID_STRLEN], vol[1024];
    snprintf(vol, sizeof(vol), "volume p\n type storage/posix\n option directory %s\n option volume-id %s\nend-volume\n",
             bd, kb_gfid_str(&vb, vs));
    cr_assert_null(bh_start(vol, err, sizeof(err)));
    snprintf(vol, sizeof(vol), "volume p\n type storage/posix\n option directory %s\n option volume-id %s\nend-volume\n",
             bd, kb_gfid_str(&va, vs));
    bh_t *b = bh_start(vol, err, sizeof(err));
    cr_assert(b, "%s", err);
    bh_stop(b);
    /* a non-empty, unstamped directory is refused without force */
    char *other = bh_tmpdir("brick2");
    char f[600];
    snprintf(f, sizeof(f), "%s/data", other);
    close(open(f, O_CREAT | O_WRONLY, 0644));
    cr_assert_eq(posix_brick_prepare(other, &va, &b1, false, err, sizeof(err)), -EEXIST);
    cr_assert_eq(posix_brick_unstamp(bd), 0);
    cr_assert_eq(posix_brick_check(bd, &va, err, sizeof(err)), -ENODATA);
    struct stat st;
    char internal[600];
    snprintf(internal, sizeof(internal), "%s/.kembar", bd);
    cr_assert_neq(stat(internal, &st), 0, ".kembar removed");
    snprintf(vol, sizeof(vol), "volume p\n type storage/posix\n option directory %s\n option volume-id %s\nend-volume\n",
             missing, kb_gfid_str(&va, vs));
    cr_assert_null(bh_start(vol, err, sizeof(err)));
    bh_rmrf(other);
    bh_rmrf(bd);
    free(other);
    free(bd);
}

/* ---------------- client gone ---------------- */

Test(posix, client_gone_closes_its_fds)
{
    kb_gfid_t g;
    cr_assert_eq(bh_create(h, ROOT, "f", 0644, O_RDWR, &g, NULL), 0);
    kb_cred_t c7 = { .client_id = 7 }, c8 = { .client_id = 8 };
    kb_args_t o = { .gfid = g, .flags = O_RDWR };
    kb_reply_t r;
    cr_assert_eq(bh_call_xl(h, bh_xl(h, NULL), KB_FOP_OPEN, &o, &c7, &r), 0);
    uint64_t f7 = r.fd;
    kb_reply_clear(&r);
    cr_assert_eq(bh_call_xl(h, bh_xl(h, NULL), KB_FOP_OPEN, &o, &c8, &r), 0);
    uint64_t f8 = r.fd;
    kb_reply_clear(&r);
    uint64_t id = 7;
    cr_assert_eq(kb_graph_ctl(h->graph, KB_CTL_CLIENT_GONE, &id), 0);
    char buf[4];
    cr_assert_eq(bh_write(h, &g, f7, 0, "x", 1, 0), -EBADF);
    cr_assert_eq(bh_write(h, &g, f8, 0, "y", 1, 0), 1);
    cr_assert_eq(bh_read(h, &g, f8, 0, 4, buf), 1);
    struct kb_ctl_status st = { 0 };
    cr_assert_eq(kb_graph_ctl(h->graph, KB_CTL_STATUS, &st), 0);
    cr_assert(st.text && strstr(st.text, "2 open fds"), "%s", st.text);
    free(st.text);
}

/* ---------------- I/O engine ---------------- */

/* Many writes in flight on a tiny ring: the overflow list keeps them in
 * order and every call completes once; then the same through the
 * synchronous fallback. O_DIRECT: buffered writes to an idle ring run
 * inline (write_inline), these must go through the ring. */
static void many_writes_flags(uint32_t flags)
{
    enum { N = 64, SZ = 16384 };
    kb_gfid_t g;
    uint64_t fd;
    cr_assert_eq(bh_create(h, ROOT, "many", 0644, O_RDWR | flags, &g, &fd), 0);
    static bh_pending_t p[N];
    for (int i = 0; i < N; i++) {
        kb_buf_t *b = kb_buf_new(SZ);
        fill((uint8_t *)b->data, SZ, (unsigned)i);
        b->len = SZ;
        kb_args_t a = { .gfid = g, .fd = fd, .off = (uint64_t)i * SZ, .data = b };
        bh_start_call(h, bh_xl(h, NULL), KB_FOP_WRITE, &a, NULL, &p[i]);
        kb_buf_unref(b);
    }
    for (int i = 0; i < N; i++) {
        cr_assert_eq(bh_wait(h, &p[i], 5000), 0);
        cr_assert_eq(p[i].reply.status, SZ);
        bh_pending_clear(&p[i]);
    }
    kb_args_t fs = { .gfid = g, .fd = fd, .flags = 1 };
    cr_assert_eq(bh_call(h, KB_FOP_FSYNC, &fs, NULL), 0);
    uint8_t *want = malloc(SZ), *got = malloc(SZ);
    for (int i = 0; i < N; i++) {
        fill(want, SZ, (unsigned)i);
        cr_assert_eq(bh_read(h, &g, fd, (uint64_t)i * SZ, SZ, got), SZ);
        cr_assert(memcmp(want, got, SZ) == 0, "block %d", i);
    }
    free(want);
    free(got);
    cr_assert_eq(bh_release(h, &g, fd), 0);
}

static void many_writes(void)
{
    many_writes_flags(0);
}

Test(posix, ring_overflow)
{
    restart("  option ring-size 8\n");
    posix_priv_t *p = bh_xl(h, "b-posix")->priv;
    cr_assert(p->ring, "io_uring expected on this host");
    many_writes_flags(O_DIRECT);
}

/* Buffered writes run inline while the ring is idle and through the ring
 * while reads are in it (write_inline): interleaved, every byte lands. */
Test(posix, buffered_writes_inline_and_through_the_ring)
{
    restart("  option ring-size 8\n");
    enum { N = 48, SZ = 8192 };
    kb_gfid_t g;
    uint64_t fd;
    cr_assert_eq(bh_create(h, ROOT, "mixed", 0644, O_RDWR, &g, &fd), 0);
    static bh_pending_t w[N], r[N];
    for (int i = 0; i < N; i++) {
        kb_args_t ra = { .gfid = g, .fd = fd, .off = 0, .size = SZ };
        bh_start_call(h, bh_xl(h, NULL), KB_FOP_READ, &ra, NULL, &r[i]);
        if (i % 4 == 0) {        /* let the ring go idle: this write runs inline */
            cr_assert_eq(bh_wait(h, &r[i], 5000), 0);
            cr_assert(i == 0 || bh_wait(h, &w[i - 1], 5000) == 0);
        }
        kb_buf_t *b = kb_buf_new(SZ);
        fill((uint8_t *)b->data, SZ, (unsigned)i + 100);
        b->len = SZ;
        kb_args_t a = { .gfid = g, .fd = fd, .off = (uint64_t)(i + 1) * SZ, .data = b };
        bh_start_call(h, bh_xl(h, NULL), KB_FOP_WRITE, &a, NULL, &w[i]);
        kb_buf_unref(b);
    }
    for (int i = 0; i < N; i++) {
        cr_assert_eq(bh_wait(h, &w[i], 5000), 0);
        cr_assert_eq(w[i].reply.status, SZ);
        cr_assert_eq(bh_wait(h, &r[i], 5000), 0);
        cr_assert_geq(r[i].reply.status, 0);
        bh_pending_clear(&w[i]);
        bh_pending_clear(&r[i]);
    }
    uint8_t *want = malloc(SZ), *got = malloc(SZ);
    for (int i = 0; i < N; i++) {
        fill(want, SZ, (unsigned)i + 100);
        cr_assert_eq(bh_read(h, &g, fd, (uint64_t)(i + 1) * SZ, SZ, got), SZ);
        cr_assert(memcmp(want, got, SZ) == 0, "block %d", i);
    }
    free(want);
    free(got);
    cr_assert_eq(bh_release(h, &g, fd), 0);
}

Test(posix, synchronous_fallback)
{
    restart("  option io-uring off\n");
    posix_priv_t *p = bh_xl(h, "b-posix")->priv;
    cr_assert_null(p->ring);
    many_writes();
}

/* ---------------- flush-behind ---------------- */

/* cachestat(2) (Linux 6.5): page-cache pages of a file, dirty ones apart. */
struct kb_cachestat_range {
    uint64_t off, len;
};
struct kb_cachestat {
    uint64_t nr_cache, nr_dirty, nr_writeback, nr_evicted, nr_recently_evicted;
};
#ifndef SYS_cachestat
#define SYS_cachestat 451
#endif

/* Dirty pages of gfid G's file on the brick, or -errno. */
static long dirty_pages(const kb_gfid_t *g)
{
    char rel[256], path[4096];
    handle_rel(g, rel, sizeof(rel));
    snprintf(path, sizeof(path), "%s/%s", dir, rel);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct kb_cachestat_range r = { 0, 0 };
    struct kb_cachestat cs = { 0 };
    long rc = syscall(SYS_cachestat, fd, &r, &cs, 0) ? -errno : (long)cs.nr_dirty;
    close(fd);
    return rc;
}

/* Write 1 MiB in 64 KiB buffered writes to a new file NAME. */
static void write_mib(const char *name, kb_gfid_t *g)
{
    uint64_t fd;
    static uint8_t data[64 << 10];
    fill(data, sizeof(data), 7);
    cr_assert_eq(bh_create(h, ROOT, name, 0644, O_RDWR, g, &fd), 0);
    for (uint64_t off = 0; off < (1 << 20); off += sizeof(data))
        cr_assert_eq(bh_write(h, g, fd, off, data, sizeof(data), 0), (int)sizeof(data));
    cr_assert_eq(bh_release(h, g, fd), 0);
}

/* After every flush-behind bytes of buffered writes the brick starts the
 * disk on them, so no page of the file is left dirty for an fsync; with
 * the option off the pages wait for the kernel's writeback (30 s). */
Test(posix, flush_behind_starts_writeback)
{
    kb_gfid_t off_g, on_g;
    restart("  option flush-behind 0\n");
    write_mib("lazy", &off_g);
    long lazy = dirty_pages(&off_g);
    if (lazy == -ENOSYS)
        cr_skip_test("no cachestat(2) on this kernel: dirty pages cannot be counted");
    cr_assert_geq(lazy, 0, "cachestat: %s", strerror((int)-lazy));
    if (lazy == 0)
        cr_skip_test("the kernel's own writeback ran meanwhile: nothing to compare with");

    restart("  option flush-behind 256KiB\n");
    write_mib("eager", &on_g);
    long left = -1;
    for (int i = 0; i < 500 && (left = dirty_pages(&on_g)) != 0; i++)
        bh_pump(h, 10);           /* the sync_file_range runs on an io-wq worker */
    cr_assert_eq(left, 0, "%ld of 256 pages still dirty 5 s after the writes", left);
    uint8_t got[4096], want[64 << 10];
    fill(want, sizeof(want), 7);
    uint64_t fd;
    cr_assert_eq(bh_open(h, &on_g, O_RDONLY, &fd), 0);
    cr_assert_eq(bh_read(h, &on_g, fd, 1048576 - 4096, 4096, got), 4096);
    cr_assert(memcmp(got, want + sizeof(want) - 4096, 4096) == 0);
    cr_assert_eq(bh_release(h, &on_g, fd), 0);
}

/* ---------------- KB_WF_KILL_SUIDGID ---------------- */

/* A file NAME of mode MODE (set on the brick, under the handle). */
static void make_moded(const char *name, mode_t mode, kb_gfid_t *g, uint64_t *fd)
{
    char rel[256], path[4096];
    cr_assert_eq(bh_create(h, ROOT, name, 0644, O_RDWR, g, fd), 0);
    handle_rel(g, rel, sizeof(rel));
    snprintf(path, sizeof(path), "%s/%s", dir, rel);
    cr_assert_eq(chmod(path, mode), 0);
}

static mode_t mode_of(const kb_gfid_t *g)
{
    char rel[256];
    struct stat st;
    handle_rel(g, rel, sizeof(rel));
    cr_assert_eq(brick_stat(rel, &st), 0);
    return st.st_mode & 07777;
}

/* As the VFS does for a writer without CAP_FSETID: setuid goes; setgid
 * when group-executable or the writer is outside the file's group. Without
 * the flag (a root writer) nothing changes. The reply carries the new mode. */
Test(posix, kill_suidgid_on_write_and_truncate)
{
    static const struct {
        const char *name;
        mode_t mode;
        uint32_t gid;             /* the caller's; the files are gid 0 */
        bool truncate, flag;
        mode_t want;
    } c[] = {
        { "w", 06777, 65534, false, true, 0777 },
        { "g", 06767, 65534, false, true, 0767 },   /* outside the group: setgid goes */
        { "i", 06767, 0, false, true, 02767 },      /* in the group, not executable: stays */
        { "n", 06777, 65534, false, false, 06777 }, /* no flag */
        { "t", 06777, 65534, true, true, 0777 },
        { "u", 06777, 65534, true, false, 06777 },
    };
    for (size_t i = 0; i < KB_ARRAY_SIZE(c); i++) {
        kb_gfid_t g;
        uint64_t fd;
        make_moded(c[i].name, c[i].mode, &g, &fd);
        kb_cred_t cred = h->cred;
        cred.uid = 65534;
        cred.gid = c[i].gid;
        kb_args_t a = { .gfid = g, .fd = fd, .off = 0, .flags = c[i].flag ? KB_WF_KILL_SUIDGID : 0 };
        kb_reply_t r;
        int want_status = 0;
        if (c[i].truncate) {
            a.off = 1;
            cr_assert_eq(bh_call_xl(h, bh_xl(h, NULL), KB_FOP_TRUNCATE, &a, &cred, &r), 0);
        } else {
            a.data = kb_buf_copy("data", 4);
            want_status = 4;
            cr_assert_eq(bh_call_xl(h, bh_xl(h, NULL), KB_FOP_WRITE, &a, &cred, &r), 4);
            kb_buf_unref(a.data);
        }
        cr_assert_eq(r.status, want_status);
        cr_assert_eq(r.attr.mode & 07777, c[i].want, "%s: reply mode %o, want %o", c[i].name,
                     r.attr.mode & 07777, c[i].want);
        cr_assert_eq(mode_of(&g), c[i].want, "%s: brick mode %o", c[i].name, mode_of(&g));
        kb_reply_clear(&r);
        cr_assert_eq(bh_release(h, &g, fd), 0);
    }
}
