/*
 * distribute_test.c — cluster/distribute against in-memory bricks
 * (dist_mock): pass-through with one set, mkdir on every set with one gfid
 * and a complete layout, files on their hashed set, the lookup fallback,
 * directory heal, readdir merge across continuation calls, rename across
 * sets, rmdir order and undo, fds, statfs, notify, deferred completion.
 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>

#include "lib/log.h"
#include "tests/unit/xlators/cluster/distribute/mock.h"
#include "xlators/cluster/distribute/distribute.h"

static kb_reply_t R;
static int ncb;
static const kb_cred_t cred = { .uid = 0 };

static void cbk(void *cookie, const kb_reply_t *r)
{
    kb_reply_clear(&R);
    cr_assert_eq(kb_reply_copy(&R, r), 0);
    ncb++;
}

static void setup(void)
{
    kb_log_level = KB_LOG_ERROR;
    dist_mock_register();
    ncb = 0;
}

static void teardown(void) { kb_reply_clear(&R); }

static kb_graph_t *graph(int nsets)
{
    char text[2048];
    size_t len = 0;
    for (int i = 0; i < nsets; i++)
        len += (size_t)snprintf(text + len, sizeof(text) - len, "volume s%d\n type test/dist_mock\nend-volume\n", i);
    len += (size_t)snprintf(text + len, sizeof(text) - len, "volume dist\n type cluster/distribute\n subvolumes");
    for (int i = 0; i < nsets; i++)
        len += (size_t)snprintf(text + len, sizeof(text) - len, " s%d", i);
    snprintf(text + len, sizeof(text) - len, "\nend-volume\n");
    char err[256] = "";
    kb_graph_t *g = kb_graph_parse(text, err, sizeof(err));
    cr_assert_not_null(g, "%s", err);
    cr_assert_eq(kb_graph_init(g, NULL, err, sizeof(err)), 0, "%s", err);
    for (int i = 0; i < nsets; i++)
        dist_mock_set_up(g->top->children[i], true);
    cr_assert(g->top->up);
    return g;
}

static dist_mock_t *mock(kb_graph_t *g, int i) { return dist_mock_of(g->top->children[i]); }

static int call(kb_graph_t *g, kb_op_t op, const kb_args_t *a)
{
    int before = ncb;
    kb_wind(g->top, op, a, &cred, 1, cbk, NULL);
    cr_assert_eq(ncb, before + 1, "%s did not complete exactly once", kb_fop_name(op));
    return R.status;
}

static int do_mkdir(kb_graph_t *g, const kb_gfid_t *parent, const char *name, kb_gfid_t *out)
{
    kb_args_t a = { .gfid = *parent, .name = (char *)name, .mode = 0755 };
    kb_gfid_generate(&a.newgfid);
    if (out)
        *out = a.newgfid;
    return call(g, KB_FOP_MKDIR, &a);
}

static int do_create(kb_graph_t *g, const kb_gfid_t *parent, const char *name, kb_gfid_t *out, uint64_t *fd)
{
    kb_args_t a = { .gfid = *parent, .name = (char *)name, .mode = 0644, .flags = 02 };
    kb_gfid_generate(&a.newgfid);
    if (out)
        *out = a.newgfid;
    int rc = call(g, KB_FOP_CREATE, &a);
    if (fd)
        *fd = R.fd;
    else if (rc == 0) {
        kb_args_t r = { .gfid = a.newgfid, .fd = R.fd };
        cr_assert_eq(call(g, KB_FOP_RELEASE, &r), 0);
    }
    return rc;
}

static int do_lookup(kb_graph_t *g, const kb_gfid_t *parent, const char *name)
{
    kb_args_t a = { .gfid = *parent, .name = (char *)name };
    return call(g, KB_FOP_LOOKUP, &a);
}

/* The layout of DIR as stored on the mocks. */
static void stored_layout(kb_graph_t *g, const kb_gfid_t *dir, dist_layout_t *l)
{
    int n = g->top->nchildren;
    dist_layout_clear(l, n);
    for (int i = 0; i < n; i++) {
        uint8_t v[64];
        int len = dist_mock_layout(mock(g, i), dir, v, sizeof(v));
        if (len > 0)
            cr_assert_eq(dist_layout_decode(l, i, v, (size_t)len), 0);
    }
}

static int hashed(kb_graph_t *g, const kb_gfid_t *dir, const char *name)
{
    dist_layout_t l;
    stored_layout(g, dir, &l);
    return dist_layout_search(&l, dist_hash_str(name));
}

/* Sets (bit mask) where PARENT/NAME exists. */
static unsigned where(kb_graph_t *g, const kb_gfid_t *parent, const char *name, kb_gfid_t *gfid)
{
    unsigned m = 0;
    for (int i = 0; i < g->top->nchildren; i++)
        if (dist_mock_find(mock(g, i), parent, name, gfid, NULL) == 0)
            m |= 1u << i;
    return m;
}

/* A name that hashes to SET in DIR. */
static void name_on(kb_graph_t *g, const kb_gfid_t *dir, int set, const char *prefix, char *out, size_t len)
{
    for (int k = 0;; k++) {
        snprintf(out, len, "%s%d", prefix, k);
        if (hashed(g, dir, out) == set)
            return;
    }
}

/* ---------------- tests ---------------- */

Test(distribute, one_child_is_a_pass_through, .init = setup, .fini = teardown)
{
    kb_graph_t *g = graph(1);
    cr_assert_null(g->top->priv);
    kb_gfid_t d;
    cr_assert_eq(do_mkdir(g, &kb_gfid_root, "d", &d), 0);
    cr_assert_eq(where(g, &kb_gfid_root, "d", NULL), 1u);
    cr_assert_eq(dist_mock_calls(mock(g, 0), KB_FOP_IPC), 0, "no layout work with one set");
    cr_assert_eq(dist_mock_calls(mock(g, 0), KB_FOP_MKDIR), 1);
    uint64_t fd;
    cr_assert_eq(do_create(g, &d, "f", NULL, &fd), 0);
    cr_assert_eq(fd, 1000, "the child's own fd number comes back untouched");
    dist_mock_set_up(g->top->children[0], false);
    cr_assert_not(g->top->up);
    kb_graph_fini(g);
}

/* A directory is on every set, with attributes of its own on each: the
 * parent's attributes one set's brick adds to an entry op's reply are not
 * what STAT of it answers here, so they never go up. */
Test(distribute, entry_replies_go_up_without_the_parent, .init = setup, .fini = teardown)
{
    kb_graph_t *g = graph(3);
    kb_gfid_t d, f;
    uint64_t fd;
    cr_assert_eq(do_mkdir(g, &kb_gfid_root, "d", &d), 0);
    cr_assert_not(R.rflags & KB_RF_PATTR, "mkdir");
    cr_assert_eq(do_create(g, &d, "f", &f, &fd), 0);
    cr_assert_not(R.rflags & KB_RF_PATTR, "create");
    kb_args_t rel = { .gfid = f, .fd = fd };
    cr_assert_eq(call(g, KB_FOP_RELEASE, &rel), 0);
    kb_args_t l = { .gfid = f, .gfid2 = kb_gfid_root, .name2 = "hard" };
    cr_assert_eq(call(g, KB_FOP_LINK, &l), 0);
    cr_assert_not(R.rflags & KB_RF_PATTR, "link");
    kb_args_t u = { .gfid = d, .name = "f" };
    cr_assert_eq(call(g, KB_FOP_UNLINK, &u), 0);
    cr_assert_not(R.rflags & KB_RF_PATTR, "unlink");
    /* The sets' replies do carry them (so the checks above can fail). */
    kb_args_t m = { .gfid = d, .name = "direct", .mode = 0755 };
    kb_gfid_generate(&m.newgfid);
    int before = ncb;
    kb_wind(g->top->children[0], KB_FOP_MKDIR, &m, &cred, 1, cbk, NULL);
    cr_assert_eq(ncb, before + 1);
    cr_assert_eq(R.status, 0);
    cr_assert(R.rflags & KB_RF_PATTR);
    cr_assert(kb_gfid_eq(&R.pattr.gfid, &d));
    kb_graph_fini(g);
}

Test(distribute, mkdir_on_every_set_with_one_gfid_and_a_complete_layout, .init = setup, .fini = teardown)
{
    kb_graph_t *g = graph(3);
    kb_gfid_t d, got;
    cr_assert_eq(do_mkdir(g, &kb_gfid_root, "dir", &d), 0);
    cr_assert(kb_gfid_eq(&R.attr.gfid, &d));
    cr_assert(S_ISDIR(R.attr.mode));
    cr_assert_eq(where(g, &kb_gfid_root, "dir", &got), 7u);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(dist_mock_find(mock(g, i), &kb_gfid_root, "dir", &got, NULL), 0);
        cr_assert(kb_gfid_eq(&got, &d), "set %d has another gfid", i);
    }
    dist_layout_t l;
    stored_layout(g, &d, &l);
    cr_assert_eq(dist_layout_check(&l), 0, "the new directory's layout covers the space");
    for (int i = 0; i < 3; i++)
        cr_assert_gt(dist_layout_share(&l, i), (UINT64_C(1) << 32) / 3 - 2);
    /* the root had no layout: the first entry op healed it */
    stored_layout(g, &kb_gfid_root, &l);
    cr_assert_eq(dist_layout_check(&l), 0);
    /* a second mkdir of the name makes nothing anywhere: the other sets,
     * asked first whether the name is free, hold it already */
    for (int i = 0; i < 3; i++)
        dist_mock_reset_calls(mock(g, i));
    cr_assert_eq(do_mkdir(g, &kb_gfid_root, "dir", NULL), -EEXIST);
    int h = hashed(g, &kb_gfid_root, "dir");
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(dist_mock_calls(mock(g, i), KB_FOP_MKDIR), 0u);
        cr_assert_eq(dist_mock_calls(mock(g, i), KB_FOP_LOOKUP), i == h ? 0u : 1u);
    }
    kb_graph_fini(g);
}

Test(distribute, mkdir_hashed_set_first_then_the_others, .init = setup, .fini = teardown)
{
    kb_graph_t *g = graph(2);
    cr_assert_eq(do_lookup(g, &kb_gfid_root, "warm-up"), -ENOENT);   /* root layout in place */
    int h = hashed(g, &kb_gfid_root, "late");
    int o = 1 - h;
    dist_mock_reset_calls(mock(g, 0));
    dist_mock_reset_calls(mock(g, 1));
    dist_mock_hold(mock(g, 0), true);
    dist_mock_hold(mock(g, 1), true);
    kb_args_t a = { .gfid = kb_gfid_root, .name = "late", .mode = 0700 };
    kb_gfid_generate(&a.newgfid);
    int before = ncb;
    kb_wind(g->top, KB_FOP_MKDIR, &a, &cred, 1, cbk, NULL);
    /* first the other set says whether the name is free there */
    cr_assert_eq(dist_mock_calls(mock(g, o), KB_FOP_LOOKUP), 1);
    cr_assert_eq(dist_mock_calls(mock(g, h), KB_FOP_MKDIR), 0);
    cr_assert_eq(dist_mock_release(mock(g, o), false), 1);
    cr_assert_eq(dist_mock_calls(mock(g, h), KB_FOP_MKDIR), 1);
    cr_assert_eq(dist_mock_calls(mock(g, o), KB_FOP_MKDIR), 0, "others wait for the hashed set");
    cr_assert_eq(dist_mock_release(mock(g, h), false), 1);
    cr_assert_eq(dist_mock_calls(mock(g, o), KB_FOP_MKDIR), 1);
    cr_assert_eq(ncb, before);
    /* complete the rest (mkdir, then the layout writes) in any order */
    for (int round = 0; ncb == before && round < 10; round++) {
        dist_mock_release(mock(g, o), true);
        dist_mock_release(mock(g, h), true);
    }
    cr_assert_eq(ncb, before + 1);
    cr_assert_eq(R.status, 0);
    dist_layout_t l;
    stored_layout(g, &a.newgfid, &l);
    cr_assert_eq(dist_layout_check(&l), 0);
    cr_assert_eq(g->ninflight, 0);
    kb_graph_fini(g);
}

Test(distribute, files_live_on_their_hashed_set_and_spread, .init = setup, .fini = teardown)
{
    kb_graph_t *g = graph(2);
    kb_gfid_t d;
    cr_assert_eq(do_mkdir(g, &kb_gfid_root, "vms", &d), 0);
    int count[2] = { 0 };
    for (int k = 0; k < 1000; k++) {
        char name[32];
        snprintf(name, sizeof(name), "file-%04d", k);
        kb_gfid_t gf, got;
        cr_assert_eq(do_create(g, &d, name, &gf, NULL), 0, "%s", name);
        unsigned w = where(g, &d, name, &got);
        int h = hashed(g, &d, name);
        cr_assert_eq(w, 1u << h, "%s is on %x, hashed %d", name, w, h);
        cr_assert(kb_gfid_eq(&got, &gf));
        count[h]++;
    }
    cr_assert(count[0] >= 350 && count[0] <= 650, "set 0 holds %d of 1000", count[0]);
    cr_assert_eq(dist_mock_open_fds(mock(g, 0)) + dist_mock_open_fds(mock(g, 1)), 0);
    kb_graph_fini(g);
}

Test(distribute, lookup_falls_back_to_every_set_and_remembers, .init = setup, .fini = teardown)
{
    kb_graph_t *g = graph(2);
    cr_assert_eq(do_lookup(g, &kb_gfid_root, "x"), -ENOENT);
    char name[32];
    name_on(g, &kb_gfid_root, 0, "stray", name, sizeof(name));
    kb_gfid_t gf;
    kb_gfid_generate(&gf);
    cr_assert_eq(dist_mock_add(mock(g, 1), &kb_gfid_root, name, &gf, S_IFREG | 0644), 0);
    cr_assert_eq(do_lookup(g, &kb_gfid_root, name), 0);
    cr_assert(kb_gfid_eq(&R.attr.gfid, &gf));
    cr_assert(S_ISREG(R.attr.mode));
    /* the second lookup goes straight to set 1 (hint) */
    dist_mock_reset_calls(mock(g, 0));
    dist_mock_reset_calls(mock(g, 1));
    cr_assert_eq(do_lookup(g, &kb_gfid_root, name), 0);
    cr_assert_eq(dist_mock_calls(mock(g, 0), KB_FOP_LOOKUP), 0);
    cr_assert_eq(dist_mock_calls(mock(g, 1), KB_FOP_LOOKUP), 1);
    /* ops by gfid reach set 1 */
    kb_args_t st = { .gfid = gf };
    cr_assert_eq(call(g, KB_FOP_STAT, &st), 0);
    cr_assert_eq(dist_mock_calls(mock(g, 1), KB_FOP_STAT), 1);
    /* unlink finds it there too */
    kb_args_t u = { .gfid = kb_gfid_root, .name = name };
    cr_assert_eq(call(g, KB_FOP_UNLINK, &u), 0);
    cr_assert_eq(where(g, &kb_gfid_root, name, NULL), 0u);
    cr_assert_eq(do_lookup(g, &kb_gfid_root, name), -ENOENT);
    kb_graph_fini(g);
}

Test(distribute, negative_lookup_with_a_set_down_is_not_enoent, .init = setup, .fini = teardown)
{
    kb_graph_t *g = graph(2);
    cr_assert_eq(do_lookup(g, &kb_gfid_root, "nothing"), -ENOENT);
    dist_mock_set_up(g->top->children[1], false);
    cr_assert(g->top->up, "one set up keeps the volume up");
    cr_assert_eq(do_lookup(g, &kb_gfid_root, "nothing"), -ENOTCONN);
    /* creates that hash to the missing set fail; the others work */
    char n0[32], n1[32];
    name_on(g, &kb_gfid_root, 0, "a", n0, sizeof(n0));
    name_on(g, &kb_gfid_root, 1, "b", n1, sizeof(n1));
    cr_assert_eq(do_create(g, &kb_gfid_root, n0, NULL, NULL), 0);
    cr_assert_eq(do_create(g, &kb_gfid_root, n1, NULL, NULL), -ENOTCONN);
    cr_assert_eq(do_lookup(g, &kb_gfid_root, n0), 0);
    dist_mock_set_up(g->top->children[0], false);
    cr_assert_not(g->top->up);
    kb_graph_fini(g);
}

Test(distribute, lookup_of_a_directory_heals_a_missing_copy, .init = setup, .fini = teardown)
{
    kb_graph_t *g = graph(2);
    cr_assert_eq(do_lookup(g, &kb_gfid_root, "x"), -ENOENT);
    dist_mock_set_up(g->top->children[1], false);
    kb_gfid_t d, got;
    cr_assert_eq(do_mkdir(g, &kb_gfid_root, "half", &d), 0);
    cr_assert_eq(where(g, &kb_gfid_root, "half", NULL), 1u);
    dist_layout_t l;
    stored_layout(g, &d, &l);
    cr_assert_eq(dist_layout_check(&l), 0, "the sets that have it share the space");
    dist_mock_set_up(g->top->children[1], true);
    cr_assert_eq(do_lookup(g, &kb_gfid_root, "half"), 0);
    cr_assert(kb_gfid_eq(&R.attr.gfid, &d));
    cr_assert_eq(where(g, &kb_gfid_root, "half", &got), 3u, "healed on set 1");
    cr_assert_eq(dist_mock_find(mock(g, 1), &kb_gfid_root, "half", &got, NULL), 0);
    cr_assert(kb_gfid_eq(&got, &d), "same gfid");
    kb_iatt_t at;
    cr_assert_eq(dist_mock_attr(mock(g, 1), &d, &at), 0);
    cr_assert_eq(at.mode & 07777, 0755);
    /* a mode that differs on one copy is put back */
    kb_args_t sa = { .gfid = d, .flags = KB_SET_MODE, .attr = { .mode = 0700 } };
    dist_mock_set_up(g->top->children[0], false);
    cr_assert_eq(call(g, KB_FOP_SETATTR, &sa), 0);   /* only set 1 */
    dist_mock_set_up(g->top->children[0], true);
    cr_assert_eq(do_lookup(g, &kb_gfid_root, "half"), 0);
    cr_assert_eq(dist_mock_attr(mock(g, 0), &d, &at), 0);
    kb_iatt_t at1;
    cr_assert_eq(dist_mock_attr(mock(g, 1), &d, &at1), 0);
    cr_assert_eq(at.mode & 07777, at1.mode & 07777, "copies agree after lookup");
    /* files still go somewhere that has the directory */
    for (int k = 0; k < 20; k++) {
        char name[16];
        snprintf(name, sizeof(name), "f%d", k);
        cr_assert_eq(do_create(g, &d, name, NULL, NULL), 0);
    }
    kb_graph_fini(g);
}

/* Read DIR to its end, COUNT entries per call at most, checking each name
 * once; continuation uses the last entry's offset. */
static int read_all(kb_graph_t *g, const kb_gfid_t *dir, char names[][32], int max)
{
    kb_args_t o = { .gfid = *dir };
    cr_assert_eq(call(g, KB_FOP_OPENDIR, &o), 0);
    uint64_t fd = R.fd;
    int n = 0;
    uint64_t off = 0;
    for (int round = 0; round < 10000; round++) {
        kb_args_t rd = { .gfid = *dir, .fd = fd, .off = off, .size = 4096, .flags = (uint32_t)(round & 1) };
        int rc = call(g, KB_FOP_READDIR, &rd);
        cr_assert_geq(rc, 0);
        if (R.ndirents == 0)
            break;
        for (uint32_t k = 0; k < R.ndirents; k++) {
            for (int j = 0; j < n; j++)
                cr_assert_str_neq(names[j], R.dirents[k].name, "%s listed twice", R.dirents[k].name);
            cr_assert_lt(n, max);
            snprintf(names[n++], 32, "%s", R.dirents[k].name);
        }
        off = R.dirents[R.ndirents - 1].off;
    }
    kb_args_t rel = { .gfid = *dir, .fd = fd };
    cr_assert_eq(call(g, KB_FOP_RELEASEDIR, &rel), 0);
    return n;
}

static void readdir_case(bool big)
{
    kb_graph_t *g = graph(3);
    for (int i = 0; i < 3; i++) {
        dist_mock_set_batch(mock(g, i), 3);
        dist_mock_set_big_offsets(mock(g, i), big);
    }
    kb_gfid_t d;
    cr_assert_eq(do_mkdir(g, &kb_gfid_root, "top", &d), 0);
    for (int k = 0; k < 7; k++) {
        char name[16];
        snprintf(name, sizeof(name), "sub%d", k);
        cr_assert_eq(do_mkdir(g, &d, name, NULL), 0);
    }
    for (int k = 0; k < 40; k++) {
        char name[16];
        snprintf(name, sizeof(name), "f%d", k);
        cr_assert_eq(do_create(g, &d, name, NULL, NULL), 0);
    }
    static char names[100][32];
    int n = read_all(g, &d, names, 100);
    cr_assert_eq(n, 47, "7 dirs + 40 files, each once (got %d)", n);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(dist_mock_open_fds(mock(g, i)), 0);

    /* resume from an offset in the middle: the rest comes again, exactly */
    kb_args_t o = { .gfid = d };
    cr_assert_eq(call(g, KB_FOP_OPENDIR, &o), 0);
    uint64_t fd = R.fd, off = 0, mid = 0;
    int seen = 0, tail = 0;
    for (;;) {
        kb_args_t rd = { .gfid = d, .fd = fd, .off = off };
        cr_assert_geq(call(g, KB_FOP_READDIR, &rd), 0);
        if (!R.ndirents)
            break;
        seen += (int)R.ndirents;
        off = R.dirents[R.ndirents - 1].off;
        if (!mid && seen >= 20) {
            mid = off;
            tail = 47 - seen;
        }
    }
    cr_assert_eq(seen, 47);
    int again = 0;
    for (off = mid;;) {
        kb_args_t rd = { .gfid = d, .fd = fd, .off = off };
        cr_assert_geq(call(g, KB_FOP_READDIR, &rd), 0);
        if (!R.ndirents)
            break;
        again += (int)R.ndirents;
        off = R.dirents[R.ndirents - 1].off;
    }
    cr_assert_eq(again, tail);
    kb_args_t bad = { .gfid = d, .fd = fd, .off = DIST_DOFF_COOKIE | 999999 };
    cr_assert_eq(call(g, KB_FOP_READDIR, &bad), big ? -EINVAL : -EINVAL);
    kb_args_t rel = { .gfid = d, .fd = fd };
    cr_assert_eq(call(g, KB_FOP_RELEASEDIR, &rel), 0);
    kb_graph_fini(g);
}

Test(distribute, readdir_merges_sets_without_duplicates, .init = setup, .fini = teardown)
{
    readdir_case(false);
}

Test(distribute, readdir_with_ext4_like_cookies, .init = setup, .fini = teardown)
{
    readdir_case(true);
}

Test(distribute, rename_across_sets_keeps_the_file_reachable_once, .init = setup, .fini = teardown)
{
    kb_graph_t *g = graph(2);
    kb_gfid_t d;
    cr_assert_eq(do_mkdir(g, &kb_gfid_root, "r", &d), 0);
    char a[32], b[32];
    name_on(g, &d, 0, "src", a, sizeof(a));
    name_on(g, &d, 1, "dst", b, sizeof(b));
    kb_gfid_t gf, got;
    uint64_t fd;
    cr_assert_eq(do_create(g, &d, a, &gf, &fd), 0);
    kb_buf_t *data = kb_buf_copy("hello", 5);
    kb_args_t w = { .gfid = gf, .fd = fd, .data = data };
    cr_assert_eq(call(g, KB_FOP_WRITE, &w), 5);

    kb_args_t rn = { .gfid = d, .name = a, .gfid2 = d, .name2 = b };
    cr_assert_eq(call(g, KB_FOP_RENAME, &rn), 0);
    cr_assert_eq(where(g, &d, a, NULL), 0u, "old name gone everywhere");
    cr_assert_eq(where(g, &d, b, &got), 1u, "renamed in place on set 0, not copied");
    cr_assert(kb_gfid_eq(&got, &gf));
    cr_assert_eq(do_lookup(g, &d, b), 0);
    cr_assert(kb_gfid_eq(&R.attr.gfid, &gf));
    cr_assert_eq(do_lookup(g, &d, a), -ENOENT);
    /* the open fd still works, and the data is there */
    kb_args_t rd = { .gfid = gf, .fd = fd, .off = 0, .size = 100 };
    cr_assert_eq(call(g, KB_FOP_READ, &rd), 5);
    cr_assert_eq(memcmp(R.data->data, "hello", 5), 0);
    kb_args_t rel = { .gfid = gf, .fd = fd };
    cr_assert_eq(call(g, KB_FOP_RELEASE, &rel), 0);

    /* listed once */
    static char names[10][32];
    cr_assert_eq(read_all(g, &d, names, 10), 1);
    cr_assert_str_eq(names[0], b);

    /* rename onto an existing file on the other set replaces it: one file remains */
    char c[32];
    name_on(g, &d, 1, "victim", c, sizeof(c));
    kb_gfid_t gv;
    cr_assert_eq(do_create(g, &d, c, &gv, NULL), 0);
    cr_assert_eq(where(g, &d, c, NULL), 2u);
    kb_args_t rn2 = { .gfid = d, .name = b, .gfid2 = d, .name2 = c };
    cr_assert_eq(call(g, KB_FOP_RENAME, &rn2), 0);
    cr_assert_eq(where(g, &d, c, &got), 1u, "the replaced file on set 1 is gone");
    cr_assert(kb_gfid_eq(&got, &gf));
    cr_assert_eq(do_lookup(g, &d, c), 0);
    cr_assert(kb_gfid_eq(&R.attr.gfid, &gf));
    cr_assert_eq(read_all(g, &d, names, 10), 1);

    /* NOREPLACE onto an existing name on another set */
    char e[32];
    name_on(g, &d, 1, "other", e, sizeof(e));
    cr_assert_eq(do_create(g, &d, e, NULL, NULL), 0);
    kb_args_t rn3 = { .gfid = d, .name = c, .gfid2 = d, .name2 = e, .flags = DIST_RENAME_NOREPLACE };
    cr_assert_eq(call(g, KB_FOP_RENAME, &rn3), -EEXIST);
    cr_assert_eq(where(g, &d, c, NULL), 1u);
    kb_buf_unref(data);
    kb_graph_fini(g);
}

/* A file renamed in place lives off its hashed set. A create, mknod,
 * symlink or mkdir of its name that was not preceded by a lookup (an API
 * caller, or another client that looked the name up just before the rename)
 * must see it: EEXIST, never a second object of that name on the hashed set
 * (ls would list it twice, and lookup would hide the renamed file). */
Test(distribute, create_over_a_name_renamed_off_its_hashed_set_is_eexist, .init = setup, .fini = teardown)
{
    kb_graph_t *g = graph(2);
    kb_gfid_t d, gf, got;
    cr_assert_eq(do_mkdir(g, &kb_gfid_root, "r", &d), 0);
    const kb_op_t ops[] = { KB_FOP_CREATE, KB_FOP_MKNOD, KB_FOP_SYMLINK, KB_FOP_MKDIR };
    for (size_t k = 0; k < KB_ARRAY_SIZE(ops); k++) {
        char a[32], b[32], pa[16], pb[16];
        snprintf(pa, sizeof(pa), "src%zu-", k);
        snprintf(pb, sizeof(pb), "dst%zu-", k);
        name_on(g, &d, 0, pa, a, sizeof(a));
        name_on(g, &d, 1, pb, b, sizeof(b));
        cr_assert_eq(do_create(g, &d, a, &gf, NULL), 0);
        kb_args_t rn = { .gfid = d, .name = a, .gfid2 = d, .name2 = b };
        cr_assert_eq(call(g, KB_FOP_RENAME, &rn), 0);
        cr_assert_eq(where(g, &d, b, NULL), 1u, "renamed in place on set 0");
        kb_args_t c = { .gfid = d, .name = b, .mode = 0644, .flags = O_RDWR | O_CREAT | O_EXCL,
                        .name2 = "t" };
        if (ops[k] == KB_FOP_MKNOD)
            c.mode |= S_IFIFO;
        if (ops[k] == KB_FOP_MKDIR)
            c.mode = 0755;
        kb_gfid_generate(&c.newgfid);
        cr_assert_eq(call(g, ops[k], &c), -EEXIST, "%s over a file on another set", kb_fop_name(ops[k]));
        cr_assert_eq(where(g, &d, b, &got), 1u, "%s: still only the renamed file, on set 0", kb_fop_name(ops[k]));
        cr_assert(kb_gfid_eq(&got, &gf));
        cr_assert_eq(do_lookup(g, &d, b), 0);
        cr_assert(kb_gfid_eq(&R.attr.gfid, &gf));
        cr_assert(S_ISREG(R.attr.mode));
    }
    /* a hard link whose new name is a file on the other set */
    char a[32], b[32], l[32];
    name_on(g, &d, 0, "lsrc", a, sizeof(a));
    name_on(g, &d, 1, "ldst", b, sizeof(b));
    name_on(g, &d, 1, "lino", l, sizeof(l));    /* the inode on set 1, where B is free */
    kb_gfid_t gl;
    cr_assert_eq(do_create(g, &d, a, &gf, NULL), 0);
    kb_args_t rn = { .gfid = d, .name = a, .gfid2 = d, .name2 = b };
    cr_assert_eq(call(g, KB_FOP_RENAME, &rn), 0);
    cr_assert_eq(do_create(g, &d, l, &gl, NULL), 0);
    cr_assert_eq(where(g, &d, l, NULL), 2u);
    kb_args_t ln = { .gfid = gl, .gfid2 = d, .name2 = b };
    cr_assert_eq(call(g, KB_FOP_LINK, &ln), -EEXIST, "link over a file on another set");
    cr_assert_eq(where(g, &d, b, &got), 1u);
    cr_assert(kb_gfid_eq(&got, &gf));
    /* and a link to a free name still works, beside its inode */
    kb_args_t ln2 = { .gfid = gl, .gfid2 = d, .name2 = "another-name" };
    cr_assert_eq(call(g, KB_FOP_LINK, &ln2), 0);
    cr_assert_eq(where(g, &d, "another-name", &got), 2u);
    cr_assert(kb_gfid_eq(&got, &gl));
    /* the name free everywhere: created on its hashed set as before */
    char e[32];
    name_on(g, &d, 1, "free", e, sizeof(e));
    cr_assert_eq(do_create(g, &d, e, NULL, NULL), 0);
    cr_assert_eq(where(g, &d, e, NULL), 2u);
    kb_graph_fini(g);
}

Test(distribute, rename_of_a_directory_on_every_set, .init = setup, .fini = teardown)
{
    kb_graph_t *g = graph(3);
    kb_gfid_t d, got;
    cr_assert_eq(do_mkdir(g, &kb_gfid_root, "old", &d), 0);
    cr_assert_eq(do_create(g, &d, "inside", NULL, NULL), 0);
    kb_args_t rn = { .gfid = kb_gfid_root, .name = "old", .gfid2 = kb_gfid_root, .name2 = "new" };
    cr_assert_eq(call(g, KB_FOP_RENAME, &rn), 0);
    cr_assert_eq(where(g, &kb_gfid_root, "old", NULL), 0u);
    cr_assert_eq(where(g, &kb_gfid_root, "new", &got), 7u);
    cr_assert(kb_gfid_eq(&got, &d));
    cr_assert_eq(do_lookup(g, &d, "inside"), 0);
    /* refused by one set: undone on the others */
    dist_mock_fail(mock(g, 2), KB_FOP_RENAME, -EIO);
    kb_args_t rn2 = { .gfid = kb_gfid_root, .name = "new", .gfid2 = kb_gfid_root, .name2 = "newer" };
    int rc = call(g, KB_FOP_RENAME, &rn2);
    cr_assert_eq(rc, -EIO);
    cr_assert_eq(where(g, &kb_gfid_root, "new", NULL), 7u);
    cr_assert_eq(where(g, &kb_gfid_root, "newer", NULL), 0u);
    kb_graph_fini(g);
}

Test(distribute, rmdir_others_first_and_undo_on_refusal, .init = setup, .fini = teardown)
{
    kb_graph_t *g = graph(2);
    kb_gfid_t d;
    cr_assert_eq(do_mkdir(g, &kb_gfid_root, "gone", &d), 0);
    dist_layout_t before;
    stored_layout(g, &d, &before);
    char f[32];
    int h = hashed(g, &kb_gfid_root, "gone");
    name_on(g, &d, h, "f", f, sizeof(f));     /* a file on the hashed set only */
    cr_assert_eq(do_create(g, &d, f, NULL, NULL), 0);
    kb_args_t a = { .gfid = kb_gfid_root, .name = "gone" };
    cr_assert_eq(call(g, KB_FOP_RMDIR, &a), -ENOTEMPTY);
    cr_assert_eq(where(g, &kb_gfid_root, "gone", NULL), 3u, "still on both sets");
    /* a file on the non-hashed set: that set refuses, the hashed one is untouched */
    kb_args_t u = { .gfid = d, .name = f };
    cr_assert_eq(call(g, KB_FOP_UNLINK, &u), 0);
    name_on(g, &d, 1 - h, "g", f, sizeof(f));
    cr_assert_eq(do_create(g, &d, f, NULL, NULL), 0);
    cr_assert_eq(call(g, KB_FOP_RMDIR, &a), -ENOTEMPTY);
    cr_assert_eq(where(g, &kb_gfid_root, "gone", NULL), 3u);
    dist_layout_t after;
    stored_layout(g, &d, &after);
    cr_assert_eq(dist_layout_check(&after), 0, "layout intact");
    /* empty: removed everywhere, hashed last */
    kb_args_t u2 = { .gfid = d, .name = f };
    cr_assert_eq(call(g, KB_FOP_UNLINK, &u2), 0);
    dist_mock_reset_calls(mock(g, h));
    dist_mock_hold(mock(g, h), true);
    int before_cb = ncb;
    kb_wind(g->top, KB_FOP_RMDIR, &a, &cred, 1, cbk, NULL);
    for (int round = 0; ncb == before_cb && round < 10; round++) {
        if (dist_mock_calls(mock(g, h), KB_FOP_RMDIR))
            cr_assert_eq(where(g, &kb_gfid_root, "gone", NULL), 1u << h, "the other set went first");
        dist_mock_release(mock(g, h), false);
    }
    dist_mock_hold(mock(g, h), false);
    cr_assert_eq(R.status, 0);
    cr_assert_eq(where(g, &kb_gfid_root, "gone", NULL), 0u);
    /* with a set down rmdir refuses (a copy left behind would come back) */
    cr_assert_eq(do_mkdir(g, &kb_gfid_root, "keep", NULL), 0);
    dist_mock_set_up(g->top->children[1], false);
    kb_args_t k = { .gfid = kb_gfid_root, .name = "keep" };
    cr_assert_eq(call(g, KB_FOP_RMDIR, &k), -ENOTCONN);
    kb_graph_fini(g);
}

Test(distribute, fds_map_to_the_set_that_holds_the_file, .init = setup, .fini = teardown)
{
    kb_graph_t *g = graph(2);
    char n1[32];
    cr_assert_eq(do_lookup(g, &kb_gfid_root, "warm"), -ENOENT);
    name_on(g, &kb_gfid_root, 1, "img", n1, sizeof(n1));
    kb_gfid_t gf;
    cr_assert_eq(do_create(g, &kb_gfid_root, n1, &gf, NULL), 0);
    kb_args_t op = { .gfid = gf, .flags = 02 };
    cr_assert_eq(call(g, KB_FOP_OPEN, &op), 0);
    uint64_t fd = R.fd;
    cr_assert_neq(fd, 1000, "our own fd, not the child's");
    kb_buf_t *data = kb_buf_copy("0123456789", 10);
    kb_args_t w = { .gfid = gf, .fd = fd, .off = 3, .data = data };
    cr_assert_eq(call(g, KB_FOP_WRITE, &w), 10);
    cr_assert_eq(dist_mock_calls(mock(g, 1), KB_FOP_WRITE), 1);
    cr_assert_eq(dist_mock_calls(mock(g, 0), KB_FOP_WRITE), 0);
    kb_args_t st = { .gfid = gf, .fd = fd, .fd_valid = 1 };
    cr_assert_eq(call(g, KB_FOP_STAT, &st), 0);
    cr_assert_eq(R.attr.size, 13);
    kb_args_t bad = { .gfid = gf, .fd = 12345 };
    cr_assert_eq(call(g, KB_FOP_READ, &bad), -EBADF);
    kb_args_t rel = { .gfid = gf, .fd = fd };
    cr_assert_eq(call(g, KB_FOP_RELEASE, &rel), 0);
    cr_assert_eq(dist_mock_open_fds(mock(g, 1)), 0);
    kb_buf_unref(data);
    kb_graph_fini(g);
}

Test(distribute, unknown_gfid_is_discovered_and_cache_misses_retry, .init = setup, .fini = teardown)
{
    kb_graph_t *g = graph(3);
    kb_gfid_t gf;
    kb_gfid_generate(&gf);
    cr_assert_eq(dist_mock_add(mock(g, 2), &kb_gfid_root, "made-elsewhere", &gf, S_IFREG | 0600), 0);
    kb_args_t st = { .gfid = gf };
    cr_assert_eq(call(g, KB_FOP_STAT, &st), 0);
    cr_assert(kb_gfid_eq(&R.attr.gfid, &gf));
    kb_args_t nl = { .gfid = gf };
    cr_assert_eq(call(g, KB_FOP_LOOKUP, &nl), 0);
    cr_assert_eq(R.attr.mode, S_IFREG | 0600);
    /* the file moves to set 0 behind our back (rebalance): a stale cache
     * entry costs one retry, not an error */
    kb_args_t u = { .gfid = kb_gfid_root, .name = "made-elsewhere" };
    (void)u;
    dist_mock_fail(mock(g, 2), KB_FOP_STAT, -ENOENT);
    cr_assert_eq(dist_mock_add(mock(g, 0), &kb_gfid_root, "made-elsewhere", &gf, S_IFREG | 0600), 0);
    cr_assert_eq(call(g, KB_FOP_STAT, &st), 0);
    cr_assert_geq(dist_mock_calls(mock(g, 0), KB_FOP_STAT), 1);
    kb_gfid_t nothing;
    kb_gfid_generate(&nothing);
    kb_args_t st2 = { .gfid = nothing };
    cr_assert_lt(call(g, KB_FOP_STAT, &st2), 0);
    kb_graph_fini(g);
}

Test(distribute, directory_metadata_goes_to_every_set, .init = setup, .fini = teardown)
{
    kb_graph_t *g = graph(3);
    kb_gfid_t d;
    cr_assert_eq(do_mkdir(g, &kb_gfid_root, "m", &d), 0);
    kb_args_t sa = { .gfid = d, .flags = KB_SET_MODE | KB_SET_UID, .attr = { .mode = 0711, .uid = 42 } };
    cr_assert_eq(call(g, KB_FOP_SETATTR, &sa), 0);
    for (int i = 0; i < 3; i++) {
        kb_iatt_t at;
        cr_assert_eq(dist_mock_attr(mock(g, i), &d, &at), 0);
        cr_assert_eq(at.mode & 07777, 0711, "set %d", i);
        cr_assert_eq(at.uid, 42);
    }
    dist_mock_fail(mock(g, 1), KB_FOP_SETXATTR, -ENOSPC);
    kb_args_t sx = { .gfid = d, .name = "user.x" };
    cr_assert_eq(call(g, KB_FOP_SETXATTR, &sx), -ENOSPC, "a refusal on one set is reported");
    for (int i = 0; i < 3; i++)
        cr_assert_eq(dist_mock_calls(mock(g, i), KB_FOP_SETXATTR), 1);
    kb_graph_fini(g);
}

Test(distribute, statfs_sums_the_sets, .init = setup, .fini = teardown)
{
    kb_graph_t *g = graph(3);
    kb_args_t a = { .gfid = kb_gfid_root };
    cr_assert_eq(call(g, KB_FOP_STATFS, &a), 0);
    cr_assert_eq(R.statfs.blocks, 3000);
    cr_assert_eq(R.statfs.bavail, 1500);
    cr_assert_eq(R.statfs.files, 300);
    cr_assert_eq(R.statfs.namemax, 255);
    kb_graph_fini(g);
}

Test(distribute, index_list_joins_the_sets, .init = setup, .fini = teardown)
{
    kb_graph_t *g = graph(2);
    kb_gfid_t a[3], b[2];
    for (int i = 0; i < 3; i++)
        kb_gfid_generate(&a[i]);
    for (int i = 0; i < 2; i++)
        kb_gfid_generate(&b[i]);
    cr_assert_eq(dist_mock_set_index(mock(g, 0), a, 3), 0);
    cr_assert_eq(dist_mock_set_index(mock(g, 1), b, 2), 0);
    kb_args_t q = { .flags = KB_IPC_INDEX_LIST };
    cr_assert_eq(call(g, KB_FOP_IPC, &q), 0);
    cr_assert_eq(R.off, 5);
    cr_assert_eq(R.data->len, 5 * 16);
    cr_assert_eq(memcmp(R.data->data + 3 * 16, &b[0], 16), 0);
    kb_args_t page = { .flags = KB_IPC_INDEX_LIST, .off = 2, .size = 2 };
    cr_assert_eq(call(g, KB_FOP_IPC, &page), 0);
    cr_assert_eq(R.off, 5);
    cr_assert_eq(R.data->len, 2 * 16);
    cr_assert_eq(memcmp(R.data->data, &a[2], 16), 0);
    cr_assert_eq(memcmp(R.data->data + 16, &b[0], 16), 0);
    dist_mock_set_up(g->top->children[1], false);
    cr_assert_eq(call(g, KB_FOP_IPC, &q), -ENOTCONN, "a partial index is not complete");
    kb_graph_fini(g);
}

static int events[8];
static void on_event(kb_graph_t *g, int ev) { events[ev]++; }

Test(distribute, notify_up_when_every_set_reported, .init = setup, .fini = teardown)
{
    char err[256];
    kb_graph_t *g = kb_graph_parse("volume a\n type test/dist_mock\nend-volume\n"
                                   "volume b\n type test/dist_mock\nend-volume\n"
                                   "volume d\n type cluster/distribute\n subvolumes a b\nend-volume\n",
                                   err, sizeof(err));
    cr_assert_not_null(g, "%s", err);
    memset(events, 0, sizeof(events));
    g->on_event = on_event;
    cr_assert_eq(kb_graph_init(g, NULL, err, sizeof(err)), 0, "%s", err);
    kb_xlator_t *a = kb_graph_find(g, "a"), *b = kb_graph_find(g, "b");
    dist_mock_set_up(a, true);
    cr_assert_not(g->top->up, "b has not said anything yet");
    dist_mock_set_up(b, false);
    cr_assert(g->top->up, "every set reported, one is up");
    cr_assert_eq(events[KB_EV_CHILD_UP], 1);
    dist_mock_set_up(b, true);
    cr_assert_eq(events[KB_EV_CHILD_UP], 1, "no second UP");
    dist_mock_set_up(a, false);
    cr_assert(g->top->up);
    dist_mock_set_up(b, false);
    cr_assert_not(g->top->up);
    cr_assert_eq(events[KB_EV_CHILD_DOWN], 1);
    kb_graph_fini(g);
}

Test(distribute, readdir_offsets_pack_and_unpack)
{
    for (int n = 2; n <= 64; n++) {
        int b = dist_doff_bits(n);
        cr_assert((1 << b) >= n && (b == 1 || (1 << (b - 1)) < n), "n=%d bits=%d", n, b);
        uint64_t limit = UINT64_C(1) << (63 - b);
        for (int set = 0; set < n; set += 7) {
            uint64_t offs[] = { 1, 2, 12345, limit - 1 };
            for (size_t k = 0; k < KB_ARRAY_SIZE(offs); k++) {
                cr_assert(dist_doff_fits(n, offs[k]));
                uint64_t p = dist_doff_pack(n, set, offs[k]);
                cr_assert_eq(p & DIST_DOFF_COOKIE, 0);
                int s;
                uint64_t o;
                dist_doff_unpack(n, p, &s, &o);
                cr_assert_eq(s, set);
                cr_assert_eq(o, offs[k]);
            }
        }
        cr_assert_not(dist_doff_fits(n, limit));
    }
    /* cookies that do not fit go through the fd's list, the oldest half dropped when full */
    dist_fd_t fd = { .magic = DIST_FD_MAGIC, .is_dir = true };
    uint64_t first = 0, last = 0;
    for (uint32_t k = 0; k < DIST_COOKIES_MAX + 10; k++) {
        uint64_t out;
        cr_assert_eq(dist_doff_encode(&fd, 4, (int)(k % 4), (UINT64_C(1) << 62) + k, &out), 0);
        cr_assert(out & DIST_DOFF_COOKIE);
        if (!k)
            first = out;
        last = out;
    }
    int s;
    uint64_t o;
    cr_assert_eq(dist_doff_decode(&fd, 4, last, &s, &o), 0);
    cr_assert_eq(o, (UINT64_C(1) << 62) + DIST_COOKIES_MAX + 9);
    cr_assert_eq(s, (DIST_COOKIES_MAX + 9) % 4);
    cr_assert_eq(dist_doff_decode(&fd, 4, first, &s, &o), -EINVAL, "dropped");
    cr_assert_eq(dist_doff_decode(&fd, 4, last + 1, &s, &o), -EINVAL, "never given");
    free(fd.ck.e);
}

/* ================= rebalance: fix-layout and migration ================= */

static int ipc(kb_graph_t *g, const kb_gfid_t *gfid, const char *name, uint32_t code, uint64_t size)
{
    kb_args_t a = { .gfid = *gfid, .name = (char *)name, .flags = code, .size = size };
    return call(g, KB_FOP_IPC, &a);
}

static void write_file(kb_graph_t *g, const kb_gfid_t *gf, uint64_t fd, uint64_t off, const void *p, size_t n)
{
    kb_buf_t *b = kb_buf_copy(p, n);
    kb_args_t w = { .gfid = *gf, .fd = fd, .off = off, .data = b };
    cr_assert_eq(call(g, KB_FOP_WRITE, &w), (int)n);
    kb_buf_unref(b);
}

Test(distribute, fix_layout_and_migrate_move_files_home, .init = setup, .fini = teardown)
{
    kb_graph_t *g = graph(3);
    kb_gfid_t d;
    cr_assert_eq(do_mkdir(g, &kb_gfid_root, "grow", &d), 0);
    /* as if set 2 were just added: drain it first */
    cr_assert_eq(ipc(g, &d, NULL, KB_IPC_DIST_FIX_LAYOUT, 4), 0);
    cr_assert_eq(R.off, 1);
    dist_layout_t l;
    stored_layout(g, &d, &l);
    cr_assert_eq(dist_layout_check(&l), 0);
    cr_assert_eq(l.r[2].state, DIST_RS_EMPTY);
    cr_assert_eq(ipc(g, &d, NULL, KB_IPC_DIST_FIX_LAYOUT, 4), 0);
    cr_assert_eq(R.off, 0, "nothing to change the second time");
    kb_gfid_t gf[60];
    for (int k = 0; k < 60; k++) {
        char name[16], body[32];
        snprintf(name, sizeof(name), "f%d", k);
        snprintf(body, sizeof(body), "content-%d", k);
        uint64_t fd;
        cr_assert_eq(do_create(g, &d, name, &gf[k], &fd), 0);
        write_file(g, &gf[k], fd, 0, body, strlen(body));
        kb_args_t rel = { .gfid = gf[k], .fd = fd };
        cr_assert_eq(call(g, KB_FOP_RELEASE, &rel), 0);
        cr_assert_eq(where(g, &d, name, NULL) & 4u, 0u);
    }
    cr_assert_eq(ipc(g, &d, NULL, KB_IPC_DIST_FIX_LAYOUT, 0), 0);
    cr_assert_eq(R.off, 1);
    stored_layout(g, &d, &l);
    cr_assert_eq(dist_layout_check(&l), 0);
    cr_assert_gt(dist_layout_share(&l, 2), 0);
    int moved = 0;
    uint64_t bytes = 0;
    for (int k = 0; k < 60; k++) {
        char name[16];
        snprintf(name, sizeof(name), "f%d", k);
        cr_assert_eq(ipc(g, &d, name, KB_IPC_DIST_MIGRATE, 0), 0, "%s", name);
        moved += R.off > 0;
        bytes += R.off;
    }
    cr_assert(moved >= 10 && moved <= 35, "moved %d of 60", moved);
    cr_assert_gt(bytes, 0);
    for (int k = 0; k < 60; k++) {
        char name[16], body[32];
        snprintf(name, sizeof(name), "f%d", k);
        snprintf(body, sizeof(body), "content-%d", k);
        int h = dist_layout_search(&l, dist_hash_str(name));
        kb_gfid_t got;
        cr_assert_eq(where(g, &d, name, &got), 1u << h, "%s not on its hashed set %d", name, h);
        cr_assert(kb_gfid_eq(&got, &gf[k]), "same gfid after the move");
        const uint8_t *data;
        uint64_t size;
        cr_assert_eq(dist_mock_data(mock(g, h), &gf[k], &data, &size), 0);
        cr_assert_eq(size, strlen(body));
        cr_assert_eq(memcmp(data, body, size), 0);
        kb_iatt_t at;
        cr_assert_eq(dist_mock_attr(mock(g, h), &gf[k], &at), 0);
        cr_assert_eq(at.mode, S_IFREG | 0644, "mode restored, no mark left");
        cr_assert_eq(ipc(g, &d, name, KB_IPC_DIST_MIGRATE, 0), 0);
        cr_assert_eq(R.off, 0, "home already");
    }
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(dist_mock_locks(mock(g, i)), 0);
        cr_assert_eq(dist_mock_open_fds(mock(g, i)), 0);
    }
    cr_assert_eq(dist_mock_count(mock(g, 0), &d) + dist_mock_count(mock(g, 1), &d) + dist_mock_count(mock(g, 2), &d), 60,
                 "no copies or hidden names left");
    static char names[70][32];
    cr_assert_eq(read_all(g, &d, names, 70), 60);
    kb_graph_fini(g);
}

/* ---- a migration while a client writes ---- */

static struct mig_case {
    kb_graph_t *g;
    int s;
    kb_gfid_t gf, d;
    uint64_t fd;
    const char *name;
    bool bulk_done, mark_done, rename_now, chmod_now;
    kb_args_t w[3];
    kb_buf_t *b[3];
    int done[3], status[3];
    kb_args_t ren, chm;
    int ren_status, chm_status, ren_done, chm_done;
} mc;

static void mc_cbk(void *cookie, const kb_reply_t *r)
{
    int i = (int)(intptr_t)cookie;
    mc.done[i]++;
    mc.status[i] = r->status;
}

static void mc_misc_cbk(void *cookie, const kb_reply_t *r)
{
    if (cookie == &mc.ren) {
        mc.ren_done++;
        mc.ren_status = r->status;
    } else {
        mc.chm_done++;
        mc.chm_status = r->status;
    }
}

static void mc_write(int i, uint64_t off, const char *text)
{
    mc.b[i] = kb_buf_copy(text, strlen(text));
    mc.w[i] = (kb_args_t){ .gfid = mc.gf, .fd = mc.fd, .off = off, .data = mc.b[i] };
    kb_wind(mc.g->top, KB_FOP_WRITE, &mc.w[i], &cred, 100 + (uint64_t)i, mc_cbk, (void *)(intptr_t)i);
}

static bool is_source_mark(kb_op_t op, const kb_args_t *a)
{
    return op == KB_FOP_SETATTR && (a->flags & KB_SET_MODE) && (a->attr.mode & DIST_MIG_BITS) == DIST_MIG_BITS &&
           (a->attr.mode & 0777);
}

static void mc_hook(dist_mock_t *m, void *arg, kb_op_t op, const kb_args_t *a, int status)
{
    if (op == KB_FOP_READ && !mc.bulk_done && a->fd != mc.fd) {
        mc.bulk_done = true;             /* the migrator read chunk 0: change it behind it */
        mc_write(0, 0, "BULKPHASE");
    }
    if (is_source_mark(op, a) && !mc.mark_done) {
        mc.mark_done = true;             /* the source is marked: these must wait and follow */
        mc_write(1, 2 * 1024 * 1024 + 5, "FINALPHASE");
        mc_write(2, 3 * 1024 * 1024, "APPENDED");
        if (mc.rename_now) {
            mc.ren = (kb_args_t){ .gfid = mc.d, .name = (char *)mc.name, .gfid2 = mc.d, .name2 = "renamed-away" };
            kb_wind(mc.g->top, KB_FOP_RENAME, &mc.ren, &cred, 200, mc_misc_cbk, &mc.ren);
        }
        if (mc.chmod_now) {
            mc.chm = (kb_args_t){ .gfid = mc.gf, .flags = KB_SET_MODE, .attr = { .mode = 0640 } };
            kb_wind(mc.g->top, KB_FOP_SETATTR, &mc.chm, &cred, 201, mc_misc_cbk, &mc.chm);
        }
    }
}

/* A file of 3 MiB of a pattern, misplaced on set S of a 2-set graph, open. */
static void mc_setup(bool rename_now, bool chmod_now)
{
    memset(&mc, 0, sizeof(mc));
    mc.rename_now = rename_now;
    mc.chmod_now = chmod_now;
    mc.g = graph(2);
    cr_assert_eq(do_mkdir(mc.g, &kb_gfid_root, "img", &mc.d), 0);
    static char a[32], b[32];
    name_on(mc.g, &mc.d, 0, "tmp", a, sizeof(a));
    name_on(mc.g, &mc.d, 1, "vm", b, sizeof(b));
    mc.name = b;
    cr_assert_eq(do_create(mc.g, &mc.d, a, &mc.gf, &mc.fd), 0);
    static char pat[3 * 1024 * 1024];
    for (size_t i = 0; i < sizeof(pat); i++)
        pat[i] = (char)('a' + i % 23);
    write_file(mc.g, &mc.gf, mc.fd, 0, pat, sizeof(pat));
    kb_args_t rn = { .gfid = mc.d, .name = a, .gfid2 = mc.d, .name2 = b };
    cr_assert_eq(call(mc.g, KB_FOP_RENAME, &rn), 0);
    cr_assert_eq(where(mc.g, &mc.d, b, NULL), 1u, "misplaced on set 0");
    mc.s = 0;
    dist_mock_set_hook(mock(mc.g, 0), mc_hook, NULL);
}

static void mc_teardown(void)
{
    for (int i = 0; i < 3; i++)
        kb_buf_unref(mc.b[i]);
    kb_graph_fini(mc.g);
}

Test(distribute, migration_keeps_writes_made_while_it_runs, .init = setup, .fini = teardown)
{
    mc_setup(false, false);
    kb_graph_t *g = mc.g;
    cr_assert_eq(ipc(g, &mc.d, mc.name, KB_IPC_DIST_MIGRATE, 0), 0);
    cr_assert_geq(R.off, 3 * 1024 * 1024 - 1024 * 1024, "bytes copied %llu", (unsigned long long)R.off);
    cr_assert(mc.bulk_done && mc.mark_done);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(mc.done[i], 1, "write %d completed exactly once", i);
        cr_assert_gt(mc.status[i], 0, "write %d: %d", i, mc.status[i]);
    }
    cr_assert_eq(where(g, &mc.d, mc.name, NULL), 2u, "home on set 1, gone from set 0");
    cr_assert_eq(dist_mock_count(mock(g, 0), &mc.d), 0, "no hidden copy left");
    const uint8_t *data;
    uint64_t size;
    cr_assert_eq(dist_mock_data(mock(g, 1), &mc.gf, &data, &size), 0);
    cr_assert_eq(size, 3 * 1024 * 1024 + 8);
    cr_assert_eq(memcmp(data, "BULKPHASE", 9), 0, "a write behind the bulk copy reached the new copy");
    cr_assert_eq(memcmp(data + 2 * 1024 * 1024 + 5, "FINALPHASE", 10), 0, "a write during the final phase too");
    cr_assert_eq(memcmp(data + 3 * 1024 * 1024, "APPENDED", 8), 0);
    cr_assert_eq(data[1024 * 1024], (char)('a' + (1024 * 1024) % 23), "the pattern is intact");
    kb_iatt_t at;
    cr_assert_eq(dist_mock_attr(mock(g, 1), &mc.gf, &at), 0);
    cr_assert_eq(at.mode, S_IFREG | 0644);
    /* the open fd follows the file */
    unsigned before = dist_mock_calls(mock(g, 1), KB_FOP_WRITE);
    write_file(g, &mc.gf, mc.fd, 10, "after", 5);
    cr_assert_eq(dist_mock_calls(mock(g, 1), KB_FOP_WRITE), before + 1);
    kb_args_t rd = { .gfid = mc.gf, .fd = mc.fd, .off = 0, .size = 16 };
    cr_assert_eq(call(g, KB_FOP_READ, &rd), 16);
    cr_assert_eq(memcmp(R.data->data, "BULKPHASEjafter", 15), 0);
    kb_args_t rel = { .gfid = mc.gf, .fd = mc.fd };
    cr_assert_eq(call(g, KB_FOP_RELEASE, &rel), 0);
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(dist_mock_open_fds(mock(g, i)), 0, "set %d", i);
        cr_assert_eq(dist_mock_locks(mock(g, i)), 0, "set %d", i);
    }
    cr_assert_eq(do_lookup(g, &mc.d, mc.name), 0);
    cr_assert(kb_gfid_eq(&R.attr.gfid, &mc.gf));
    mc_teardown();
}

Test(distribute, migration_is_undone_when_the_file_is_renamed_meanwhile, .init = setup, .fini = teardown)
{
    mc_setup(true, false);
    kb_graph_t *g = mc.g;
    cr_assert_lt(ipc(g, &mc.d, mc.name, KB_IPC_DIST_MIGRATE, 0), 0);
    cr_assert_eq(mc.ren_done, 1);
    cr_assert_eq(mc.ren_status, 0);
    for (int i = 0; i < 3; i++)
        cr_assert_gt(mc.status[i], 0);
    cr_assert_eq(where(g, &mc.d, mc.name, NULL), 0u, "the old name is gone everywhere (no target left)");
    cr_assert_eq(where(g, &mc.d, "renamed-away", NULL), 1u, "the file stays on set 0 under its new name");
    kb_iatt_t at;
    cr_assert_eq(dist_mock_attr(mock(g, 0), &mc.gf, &at), 0);
    cr_assert_eq(at.mode, S_IFREG | 0644, "the mark is off");
    const uint8_t *data;
    uint64_t size;
    cr_assert_eq(dist_mock_data(mock(g, 0), &mc.gf, &data, &size), 0);
    cr_assert_eq(memcmp(data + 2 * 1024 * 1024 + 5, "FINALPHASE", 10), 0);
    cr_assert_eq(dist_mock_locks(mock(g, 0)) + dist_mock_locks(mock(g, 1)), 0);
    kb_args_t rel = { .gfid = mc.gf, .fd = mc.fd };
    cr_assert_eq(call(g, KB_FOP_RELEASE, &rel), 0);
    mc_teardown();
}

Test(distribute, chmod_during_a_migration_waits_and_lands_on_the_new_copy, .init = setup, .fini = teardown)
{
    mc_setup(false, true);
    kb_graph_t *g = mc.g;
    cr_assert_eq(ipc(g, &mc.d, mc.name, KB_IPC_DIST_MIGRATE, 0), 0);
    cr_assert_eq(mc.chm_done, 1);
    cr_assert_eq(mc.chm_status, 0);
    kb_iatt_t at;
    cr_assert_eq(dist_mock_attr(mock(g, 1), &mc.gf, &at), 0);
    cr_assert_eq(at.mode, S_IFREG | 0640);
    kb_args_t rel = { .gfid = mc.gf, .fd = mc.fd };
    cr_assert_eq(call(g, KB_FOP_RELEASE, &rel), 0);
    mc_teardown();
}

Test(distribute, a_stale_migration_target_does_not_block_the_name, .init = setup, .fini = teardown)
{
    kb_graph_t *g = graph(2);
    cr_assert_eq(do_lookup(g, &kb_gfid_root, "warm"), -ENOENT);
    int h = hashed(g, &kb_gfid_root, "left");
    kb_gfid_t stale;
    kb_gfid_generate(&stale);
    cr_assert_eq(dist_mock_add(mock(g, h), &kb_gfid_root, "left", &stale, S_IFREG | DIST_MIG_BITS), 0);
    cr_assert_eq(do_lookup(g, &kb_gfid_root, "left"), -ENOENT, "a target is not the file");
    cr_assert_eq(where(g, &kb_gfid_root, "left", NULL), 0u, "and a stale one is removed");
    kb_gfid_t gf;
    cr_assert_eq(do_create(g, &kb_gfid_root, "left", &gf, NULL), 0);
    cr_assert_eq(dist_mock_locks(mock(g, h)), 0);
    kb_graph_fini(g);
}

Test(distribute, a_mark_left_by_a_dead_migrator_is_cleared_by_the_next_write, .init = setup, .fini = teardown)
{
    kb_graph_t *g = graph(2);
    kb_gfid_t gf;
    uint64_t fd;
    cr_assert_eq(do_create(g, &kb_gfid_root, "orphan", &gf, &fd), 0);
    int s = hashed(g, &kb_gfid_root, "orphan");
    kb_args_t sa = { .gfid = gf, .flags = KB_SET_MODE, .attr = { .mode = 0644 | DIST_MIG_BITS } };
    cr_assert_eq(call(g, KB_FOP_SETATTR, &sa), 0);
    write_file(g, &gf, fd, 0, "still-here", 10);
    kb_iatt_t at;
    cr_assert_eq(dist_mock_attr(mock(g, s), &gf, &at), 0);
    cr_assert_eq(at.mode, S_IFREG | 0644);
    cr_assert_eq(at.size, 10);
    kb_args_t rel = { .gfid = gf, .fd = fd };
    cr_assert_eq(call(g, KB_FOP_RELEASE, &rel), 0);
    cr_assert_eq(dist_mock_locks(mock(g, s)), 0);
    kb_graph_fini(g);
}

/* ================= over real storage/posix bricks ================= */

#include <sys/xattr.h>
#include <unistd.h>
#include "tests/unit/brick_harness.h"

typedef struct real {
    bh_t *h;
    char *dir[2];
} real_t;

static void real_start(real_t *r)
{
    if (!kb_xlator_type_find("storage/posix"))
        cr_skip_test("storage/posix is not linked in");
    kb_log_level = KB_LOG_ERROR;
    char vf[1024], err[256] = "";
    for (int i = 0; i < 2; i++)
        cr_assert_not_null(r->dir[i] = bh_tmpdir("dist"));
    snprintf(vf, sizeof(vf),
             "volume b0\n type storage/posix\n option directory %s\nend-volume\n"
             "volume b1\n type storage/posix\n option directory %s\nend-volume\n"
             "volume dist\n type cluster/distribute\n subvolumes b0 b1\nend-volume\n",
             r->dir[0], r->dir[1]);
    cr_assert_not_null(r->h = bh_start(vf, err, sizeof(err)), "%s", err);
    bh_pump(r->h, 10);
    cr_assert(r->h->graph->top->up);
}

static void real_stop(real_t *r)
{
    bh_stop(r->h);
    for (int i = 0; i < 2; i++) {
        bh_rmrf(r->dir[i]);
        free(r->dir[i]);
    }
}

/* Bricks (bit mask) whose directory holds REL; the gfid xattr of the first. */
static unsigned on_disk(real_t *r, const char *rel, kb_gfid_t *gfid)
{
    unsigned m = 0;
    for (int i = 1; i >= 0; i--) {
        char p[512];
        snprintf(p, sizeof(p), "%s/%s", r->dir[i], rel);
        struct stat st;
        if (lstat(p, &st) == 0) {
            m |= 1u << i;
            if (gfid)
                cr_assert_eq(lgetxattr(p, "trusted.kembar.gfid", gfid->b, 16), 16, "%s", p);
        }
    }
    return m;
}

static int real_readdir_all(real_t *r, const kb_gfid_t *dir, uint32_t plus)
{
    kb_args_t o = { .gfid = *dir };
    kb_reply_t rep;
    cr_assert_eq(bh_call(r->h, KB_FOP_OPENDIR, &o, &rep), 0);
    uint64_t fd = rep.fd, off = 0;
    kb_reply_clear(&rep);
    static char seen[400][32];
    int n = 0;
    for (;;) {
        kb_args_t rd = { .gfid = *dir, .fd = fd, .off = off, .size = 1024, .flags = plus };
        cr_assert_geq(bh_call(r->h, KB_FOP_READDIR, &rd, &rep), 0);
        if (!rep.ndirents) {
            kb_reply_clear(&rep);
            break;
        }
        for (uint32_t k = 0; k < rep.ndirents; k++) {
            for (int j = 0; j < n; j++)
                cr_assert_str_neq(seen[j], rep.dirents[k].name, "%s twice", seen[j]);
            cr_assert_lt(n, 400);
            snprintf(seen[n++], 32, "%s", rep.dirents[k].name);
        }
        off = rep.dirents[rep.ndirents - 1].off;
        kb_reply_clear(&rep);
    }
    kb_args_t rel = { .gfid = *dir, .fd = fd };
    cr_assert_eq(bh_call(r->h, KB_FOP_RELEASEDIR, &rel, NULL), 0);
    return n;
}

Test(distribute_posix, files_spread_listed_once_renamed_in_place)
{
    real_t r = { 0 };
    real_start(&r);
    kb_gfid_t d, g0, g1;
    cr_assert_eq(bh_mkdir(r.h, &kb_gfid_root, "vms", 0755, &d), 0);
    cr_assert_eq(on_disk(&r, "vms", &g0), 3u, "the directory is on both bricks");
    cr_assert(kb_gfid_eq(&g0, &d));
    cr_assert_eq(on_disk(&r, "vms", &g1), 3u);
    /* each brick's copy carries its own range (KB_IPC_LAYOUT_SET), together complete */
    dist_layout_t l;
    dist_layout_clear(&l, 2);
    for (int i = 0; i < 2; i++) {
        char p[512];
        uint8_t v[64];
        snprintf(p, sizeof(p), "%s/vms", r.dir[i]);
        ssize_t n = lgetxattr(p, KB_LAYOUT_XATTR, v, sizeof(v));
        cr_assert_eq(n, KB_LAYOUT_DISK_BYTES, "brick %d has no layout", i);
        cr_assert_eq(dist_layout_decode(&l, i, v, (size_t)n), 0);
    }
    cr_assert_eq(dist_layout_check(&l), 0);
    int count[2] = { 0 };
    for (int k = 0; k < 200; k++) {
        char name[32], rel[64];
        snprintf(name, sizeof(name), "disk-%03d.raw", k);
        kb_gfid_t gf, got;
        uint64_t fd;
        cr_assert_eq(bh_create(r.h, &d, name, 0644, O_RDWR, &gf, &fd), 0, "%s", name);
        cr_assert_eq(bh_write(r.h, &gf, fd, 0, name, strlen(name), 0), (int)strlen(name));
        cr_assert_eq(bh_release(r.h, &gf, fd), 0);
        snprintf(rel, sizeof(rel), "vms/%s", name);
        unsigned m = on_disk(&r, rel, &got);
        cr_assert_eq(m, 1u << dist_layout_search(&l, dist_hash_str(name)), "%s on bricks %x", name, m);
        cr_assert(kb_gfid_eq(&got, &gf));
        count[m == 2]++;
    }
    cr_assert(count[0] >= 70 && count[0] <= 130, "brick 0 holds %d of 200", count[0]);
    cr_assert_eq(bh_mkdir(r.h, &d, "sub", 0755, NULL), 0);
    cr_assert_eq(real_readdir_all(&r, &d, 0), 201);
    cr_assert_eq(real_readdir_all(&r, &d, 1), 201);

    /* rename every file to a new name: half of them now hash elsewhere */
    for (int k = 0; k < 200; k++) {
        char a[32], b[32], ra[64], rb[64];
        snprintf(a, sizeof(a), "disk-%03d.raw", k);
        snprintf(b, sizeof(b), "renamed-%03d", k);
        snprintf(ra, sizeof(ra), "vms/%s", a);
        snprintf(rb, sizeof(rb), "vms/%s", b);
        unsigned before = on_disk(&r, ra, NULL);
        kb_args_t rn = { .gfid = d, .name = a, .gfid2 = d, .name2 = b };
        cr_assert_eq(bh_call(r.h, KB_FOP_RENAME, &rn, NULL), 0, "%s", a);
        cr_assert_eq(on_disk(&r, ra, NULL), 0u);
        cr_assert_eq(on_disk(&r, rb, NULL), before, "%s renamed in place", b);
    }
    cr_assert_eq(real_readdir_all(&r, &d, 1), 201);
    for (int k = 0; k < 200; k++) {
        char b[32];
        snprintf(b, sizeof(b), "renamed-%03d", k);
        kb_iatt_t at;
        cr_assert_eq(bh_lookup(r.h, &d, b, &at), 0, "%s", b);
        uint64_t fd;
        cr_assert_eq(bh_open(r.h, &at.gfid, O_RDONLY, &fd), 0);
        char buf[64] = "", want[32];
        snprintf(want, sizeof(want), "disk-%03d.raw", k);
        cr_assert_eq(bh_read(r.h, &at.gfid, fd, 0, sizeof(buf), buf), (int)strlen(want));
        cr_assert_eq(memcmp(buf, want, strlen(want)), 0);
        cr_assert_eq(bh_release(r.h, &at.gfid, fd), 0);
        kb_args_t u = { .gfid = d, .name = b };
        cr_assert_eq(bh_call(r.h, KB_FOP_UNLINK, &u, NULL), 0);
    }
    kb_args_t rd = { .gfid = d, .name = "sub" };
    cr_assert_eq(bh_call(r.h, KB_FOP_RMDIR, &rd, NULL), 0);
    kb_args_t rd2 = { .gfid = kb_gfid_root, .name = "vms" };
    cr_assert_eq(bh_call(r.h, KB_FOP_RMDIR, &rd2, NULL), 0);
    cr_assert_eq(on_disk(&r, "vms", NULL), 0u);
    kb_args_t sf = { .gfid = kb_gfid_root };
    kb_reply_t rep;
    cr_assert_eq(bh_call(r.h, KB_FOP_STATFS, &sf, &rep), 0);
    cr_assert_gt(rep.statfs.blocks, 0);
    kb_reply_clear(&rep);
    real_stop(&r);
}

/* Two real bricks (posix under locks) under distribute, and in directory
 * m a file (gfid GF, open read-write as FD) whose name B hashes to the
 * brick it is not on (bitmask MA): a file rebalance would move. */
static void misplaced_file(real_t *r, kb_gfid_t *d, char b[32], char rel[64], kb_gfid_t *gf, uint64_t *fd,
                           unsigned *ma)
{
    if (!kb_xlator_type_find("storage/posix") || !kb_xlator_type_find("features/locks"))
        cr_skip_test("storage/posix or features/locks is not linked in");
    kb_log_level = KB_LOG_ERROR;
    char vf[1024], err[256] = "";
    for (int i = 0; i < 2; i++)
        cr_assert_not_null(r->dir[i] = bh_tmpdir("distmig"));
    snprintf(vf, sizeof(vf),
             "volume p0\n type storage/posix\n option directory %s\nend-volume\n"
             "volume b0\n type features/locks\n subvolumes p0\nend-volume\n"
             "volume p1\n type storage/posix\n option directory %s\nend-volume\n"
             "volume b1\n type features/locks\n subvolumes p1\nend-volume\n"
             "volume dist\n type cluster/distribute\n subvolumes b0 b1\nend-volume\n",
             r->dir[0], r->dir[1]);
    cr_assert_not_null(r->h = bh_start(vf, err, sizeof(err)), "%s", err);
    bh_pump(r->h, 10);
    cr_assert_eq(bh_mkdir(r->h, &kb_gfid_root, "m", 0755, d), 0);
    cr_assert_eq(bh_create(r->h, d, "seed", 0640, O_RDWR, gf, fd), 0);
    *ma = on_disk(r, "m/seed", NULL);
    dist_layout_t l;
    dist_layout_clear(&l, 2);
    for (int i = 0; i < 2; i++) {
        char p[512];
        uint8_t v[64];
        snprintf(p, sizeof(p), "%s/m", r->dir[i]);
        ssize_t n = lgetxattr(p, KB_LAYOUT_XATTR, v, sizeof(v));
        cr_assert_eq(dist_layout_decode(&l, i, v, (size_t)n), 0);
    }
    for (int k = 0;; k++) {
        snprintf(b, 32, "vm-%d.img", k);
        if (1u << dist_layout_search(&l, dist_hash_str(b)) != *ma)
            break;
    }
    kb_args_t rn = { .gfid = *d, .name = "seed", .gfid2 = *d, .name2 = b };
    cr_assert_eq(bh_call(r->h, KB_FOP_RENAME, &rn, NULL), 0);
    snprintf(rel, 64, "m/%s", b);
    cr_assert_eq(on_disk(r, rel, NULL), *ma, "renamed in place: misplaced");
}

Test(distribute_posix, migrate_over_real_bricks_with_locks)
{
    real_t r = { 0 };
    kb_gfid_t d, gf;
    uint64_t fd;
    unsigned ma;
    char b[32], rel[64];
    misplaced_file(&r, &d, b, rel, &gf, &fd, &ma);
    static char data[5 * 1024 * 1024 + 123];
    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (char)(i * 7 + i / 4096);
    memset(data + 1024 * 1024, 0, 2 * 1024 * 1024);     /* a hole-worthy middle */
    for (size_t off = 0; off < sizeof(data); off += 1024 * 1024)
        cr_assert_gt(bh_write(r.h, &gf, fd, off, data + off, KB_MIN(sizeof(data) - off, (size_t)1024 * 1024), 0), 0);
    kb_args_t mg = { .gfid = d, .name = b, .flags = KB_IPC_DIST_MIGRATE };
    kb_reply_t rep;
    cr_assert_eq(bh_call(r.h, KB_FOP_IPC, &mg, &rep), 0);
    cr_assert_eq(rep.off, sizeof(data) - 2 * 1024 * 1024, "the zero middle was not copied (%llu)", (unsigned long long)rep.off);
    kb_reply_clear(&rep);
    kb_gfid_t got;
    cr_assert_eq(on_disk(&r, rel, &got), 3u - ma, "on the other brick now");
    cr_assert(kb_gfid_eq(&got, &gf));
    char p[512];
    snprintf(p, sizeof(p), "%s/%s", r.dir[ma == 1 ? 1 : 0], rel);
    struct stat st;
    cr_assert_eq(stat(p, &st), 0);
    cr_assert_eq(st.st_mode & 07777, 0640);
    cr_assert_eq((size_t)st.st_size, sizeof(data));
    cr_assert_lt((size_t)st.st_blocks * 512, sizeof(data) - 1024 * 1024, "the hole stayed a hole");
    /* the old fd follows: a write through it lands on the new brick */
    cr_assert_eq(bh_write(r.h, &gf, fd, 0, "NEW", 3, 0), 3);
    char buf[8] = "";
    cr_assert_eq(bh_read(r.h, &gf, fd, 0, 3, buf), 3);
    cr_assert_eq(memcmp(buf, "NEW", 3), 0);
    int fdd = open(p, O_RDONLY);
    cr_assert_geq(fdd, 0);
    static char back[sizeof(data)];
    cr_assert_eq(pread(fdd, back, sizeof(back), 0), (ssize_t)sizeof(back));
    close(fdd);
    cr_assert_eq(memcmp(back, "NEW", 3), 0);
    cr_assert_eq(memcmp(back + 3, data + 3, sizeof(data) - 3), 0, "content identical");
    cr_assert_eq(bh_release(r.h, &gf, fd), 0);
    real_readdir_all(&r, &d, 0);
    real_stop(&r);
}

/* A file a client holds a lock on (a running VM's image) is not moved:
 * the lock would stay on the copy dropped. POSIX/OFD and flock alike;
 * once unlocked it moves, and a lock taken afterwards through the old fd
 * lands on the new copy (the fd moves first), where another owner sees it. */
Test(distribute_posix, a_locked_file_is_not_migrated)
{
    real_t r = { 0 };
    kb_gfid_t d, gf;
    uint64_t fd;
    unsigned ma;
    char b[32], rel[64];
    misplaced_file(&r, &d, b, rel, &gf, &fd, &ma);
    cr_assert_eq(bh_write(r.h, &gf, fd, 0, "DATA", 4, 0), 4);
    kb_args_t mg = { .gfid = d, .name = b, .flags = KB_IPC_DIST_MIGRATE };
    for (int flock = 0; flock < 2; flock++) {
        kb_args_t lk = { .gfid = gf, .fd = fd, .flags = KB_LK_SETLK,
                         .lock = { .type = KB_LK_WRLCK, .start = 100, .len = flock ? 0 : 1, .owner = 0xA, .flock = (uint32_t)flock } };
        cr_assert_eq(bh_call(r.h, KB_FOP_LK, &lk, NULL), 0);
        cr_assert_eq(bh_call(r.h, KB_FOP_IPC, &mg, NULL), -ETXTBSY, "%s lock held: left in place", flock ? "flock" : "POSIX");
        cr_assert_eq(on_disk(&r, rel, NULL), ma, "still on its brick");
        lk.lock.type = KB_LK_UNLCK;
        cr_assert_eq(bh_call(r.h, KB_FOP_LK, &lk, NULL), 0);
    }
    kb_reply_t rep;
    cr_assert_eq(bh_call(r.h, KB_FOP_IPC, &mg, &rep), 0);
    kb_reply_clear(&rep);
    cr_assert_eq(on_disk(&r, rel, NULL), 3u - ma, "unlocked: moved");
    /* the old fd locks: the lock must be where the file is now */
    kb_args_t lk = { .gfid = gf, .fd = fd, .flags = KB_LK_SETLKW,
                     .lock = { .type = KB_LK_WRLCK, .start = 0, .len = 10, .owner = 0xA } };
    cr_assert_eq(bh_call(r.h, KB_FOP_LK, &lk, NULL), 0);
    uint64_t fd2;
    cr_assert_eq(bh_open(r.h, &gf, O_RDWR, &fd2), 0);
    kb_args_t q = { .gfid = gf, .fd = fd2, .flags = KB_LK_SETLK,
                    .lock = { .type = KB_LK_WRLCK, .start = 5, .len = 1, .owner = 0xB } };
    cr_assert_eq(bh_call(r.h, KB_FOP_LK, &q, NULL), -EAGAIN, "the old fd's lock holds on the new copy");
    char buf[8] = "";
    cr_assert_eq(bh_read(r.h, &gf, fd2, 0, 4, buf), 4);
    cr_assert_eq(memcmp(buf, "DATA", 4), 0);
    cr_assert_eq(bh_release(r.h, &gf, fd2), 0);
    cr_assert_eq(bh_release(r.h, &gf, fd), 0);
    real_stop(&r);
}

/* Four real bricks, storage/posix under features/locks (l0..l3, in
 * fresh directories returned in DIR), under the stanzas TOP. Skips the
 * test where posix, locks or replicate is not linked in. */
static bh_t *four_bricks(const char *tag, const char *top, char *dir[4])
{
    if (!kb_xlator_type_find("storage/posix") || !kb_xlator_type_find("features/locks") ||
        !kb_xlator_type_find("cluster/replicate"))
        cr_skip_test("posix, locks or replicate is not linked in");
    kb_log_level = KB_LOG_ERROR;
    char vf[4096], err[256] = "";
    size_t n = 0;
    for (int i = 0; i < 4; i++) {
        cr_assert_not_null(dir[i] = bh_tmpdir(tag));
        n += (size_t)snprintf(vf + n, sizeof(vf) - n,
                              "volume p%d\n type storage/posix\n option directory %s\nend-volume\n"
                              "volume l%d\n type features/locks\n subvolumes p%d\nend-volume\n",
                              i, dir[i], i, i);
    }
    snprintf(vf + n, sizeof(vf) - n, "%s", top);
    bh_t *h = bh_start(vf, err, sizeof(err));
    cr_assert_not_null(h, "%s", err);
    bh_pump(h, 50);
    cr_assert(h->graph->top->up);
    return h;
}

/* The volume the CLI builds over four_bricks: distribute over two
 * replica sets, r0 = l0 + l1 and r1 = l2 + l3. */
static const char SETS_2X2[] =
    "volume r0\n type cluster/replicate\n subvolumes l0 l1\nend-volume\n"
    "volume r1\n type cluster/replicate\n subvolumes l2 l3\nend-volume\n"
    "volume dist\n type cluster/distribute\n subvolumes r0 r1\nend-volume\n";

static void four_bricks_stop(bh_t *h, char *dir[4])
{
    bh_stop(h);
    for (int i = 0; i < 4; i++) {
        bh_rmrf(dir[i]);
        free(dir[i]);
    }
}

/* Bricks of the 2 x 2 volume (bit i = dir[i]) whose DIR/NAME exists. */
static unsigned on_bricks(char *const dir[4], const char *sub, const char *name)
{
    unsigned m = 0;
    for (int i = 0; i < 4; i++) {
        char p[600];
        struct stat st;
        snprintf(p, sizeof(p), "%s/%s/%s", dir[i], sub, name);
        if (lstat(p, &st) == 0)
            m |= 1u << i;
    }
    return m;
}

static int mig_ipc(bh_t *h, const kb_gfid_t *d, const char *name, uint32_t code, uint64_t drain)
{
    kb_args_t a = { .gfid = *d, .name = (char *)name, .flags = code, .size = drain };
    return bh_call(h, KB_FOP_IPC, &a, NULL);
}

/* The volume the CLI builds: distribute over replica sets (2 x 2 bricks). */
Test(distribute_posix, over_replicate_sets)
{
    char *dir[4];
    bh_t *h = four_bricks("distrep", SETS_2X2, dir);
    kb_gfid_t d;
    cr_assert_eq(bh_mkdir(h, &kb_gfid_root, "vms", 0755, &d), 0);
    int per_set[2] = { 0 };
    for (int k = 0; k < 100; k++) {
        char name[32];
        snprintf(name, sizeof(name), "img-%d", k);
        kb_gfid_t gf;
        uint64_t fd;
        cr_assert_eq(bh_create(h, &d, name, 0644, O_RDWR, &gf, &fd), 0, "%s", name);
        cr_assert_eq(bh_write(h, &gf, fd, 0, name, strlen(name), 0), (int)strlen(name));
        cr_assert_eq(bh_release(h, &gf, fd), 0);
        unsigned m = on_bricks(dir, "vms", name);
        cr_assert(m == 3u || m == 12u, "%s on bricks %x: one replica set, both replicas", name, m);
        per_set[m == 12u]++;
    }
    cr_assert(per_set[0] >= 35 && per_set[0] <= 65, "set 0 holds %d of 100", per_set[0]);
    /* every brick has the directory */
    for (int i = 0; i < 4; i++) {
        char p[600];
        struct stat st;
        snprintf(p, sizeof(p), "%s/vms", dir[i]);
        cr_assert_eq(stat(p, &st), 0, "brick %d lacks the directory", i);
    }
    /* a rename across sets, then a migration home */
    kb_args_t rn = { .gfid = d, .name = "img-0", .gfid2 = d, .name2 = "img-0-renamed" };
    cr_assert_eq(bh_call(h, KB_FOP_RENAME, &rn, NULL), 0);
    kb_iatt_t at;
    cr_assert_eq(bh_lookup(h, &d, "img-0-renamed", &at), 0);
    kb_args_t mg = { .gfid = d, .name = "img-0-renamed", .flags = KB_IPC_DIST_MIGRATE };
    cr_assert_eq(bh_call(h, KB_FOP_IPC, &mg, NULL), 0);
    uint64_t fd;
    char buf[16] = "";
    cr_assert_eq(bh_open(h, &at.gfid, O_RDONLY, &fd), 0);
    cr_assert_eq(bh_read(h, &at.gfid, fd, 0, sizeof(buf), buf), 5);
    cr_assert_eq(memcmp(buf, "img-0", 5), 0);
    cr_assert_eq(bh_release(h, &at.gfid, fd), 0);
    four_bricks_stop(h, dir);
}

/* A replica 2 set is up with its first brick alone (quorum "both or the
 * first"), but a rebalance must not move files onto it then: they would
 * arrive with one copy and wait for the heal daemon's periodic sweep. */
Test(distribute_posix, rebalance_waits_for_every_brick_of_every_set)
{
    char *dir[4];
    bh_t *h = four_bricks("distwhole", SETS_2X2, dir);
    kb_gfid_t d;
    cr_assert_eq(bh_mkdir(h, &kb_gfid_root, "vms", 0755, &d), 0);
    /* Every name on set 0 (set 1 drained), then laid out over both: the
     * files hashed to set 1 are the ones a rebalance moves. */
    cr_assert_eq(mig_ipc(h, &d, NULL, KB_IPC_DIST_FIX_LAYOUT, 2), 0);
    char names[20][16];
    for (int k = 0; k < 20; k++) {
        snprintf(names[k], sizeof(names[k]), "f%d", k);
        kb_gfid_t gf;
        uint64_t fd;
        cr_assert_eq(bh_create(h, &d, names[k], 0644, O_RDWR, &gf, &fd), 0);
        cr_assert_eq(bh_write(h, &gf, fd, 0, names[k], strlen(names[k]), 0), (int)strlen(names[k]));
        cr_assert_eq(bh_release(h, &gf, fd), 0);
        cr_assert_eq(on_bricks(dir, "vms", names[k]), 3u);
    }
    cr_assert_eq(mig_ipc(h, &d, NULL, KB_IPC_DIST_FIX_LAYOUT, 0), 0);
    /* The second brick of set 1 goes away: the set stays up, on brick 2. */
    kb_xlator_t *l3 = kb_graph_find(h->graph, "l3");
    cr_assert_not_null(l3);
    kb_notify_parents(l3, KB_EV_CHILD_DOWN);
    cr_assert(kb_graph_find(h->graph, "r1")->up, "replica 2 is up with its first brick");
    cr_assert_eq(mig_ipc(h, &d, NULL, KB_IPC_DIST_FIX_LAYOUT, 0), -ENOTCONN);
    for (int k = 0; k < 20; k++) {
        cr_assert_eq(mig_ipc(h, &d, names[k], KB_IPC_DIST_MIGRATE, 0), -ENOTCONN, "%s", names[k]);
        cr_assert_eq(on_bricks(dir, "vms", names[k]), 3u, "%s stays on both bricks of set 0", names[k]);
    }
    /* Back: every file moves to both bricks of its set. */
    kb_notify_parents(l3, KB_EV_CHILD_UP);
    cr_assert_eq(mig_ipc(h, &d, NULL, KB_IPC_DIST_FIX_LAYOUT, 0), 0);
    int moved = 0;
    for (int k = 0; k < 20; k++) {
        cr_assert_eq(mig_ipc(h, &d, names[k], KB_IPC_DIST_MIGRATE, 0), 0, "%s", names[k]);
        unsigned m = on_bricks(dir, "vms", names[k]);
        cr_assert(m == 3u || m == 12u, "%s on bricks %x: both bricks of one set", names[k], m);
        moved += m == 12u;
    }
    cr_assert_gt(moved, 0, "nothing hashed to set 1");
    four_bricks_stop(h, dir);
}

/* The other stacking (DESIGN §1): replicate over two distributed halves. */
Test(distribute_posix, under_replicate)
{
    char *dir[4];
    bh_t *h = four_bricks("repdist",
                          "volume d0\n type cluster/distribute\n subvolumes l0 l1\nend-volume\n"
                          "volume d1\n type cluster/distribute\n subvolumes l2 l3\nend-volume\n"
                          "volume top\n type cluster/replicate\n subvolumes d0 d1\nend-volume\n",
                          dir);
    kb_gfid_t d;
    cr_assert_eq(bh_mkdir(h, &kb_gfid_root, "data", 0755, &d), 0);
    for (int k = 0; k < 40; k++) {
        char name[32];
        snprintf(name, sizeof(name), "f-%d", k);
        kb_gfid_t gf;
        uint64_t fd;
        cr_assert_eq(bh_create(h, &d, name, 0644, O_RDWR, &gf, &fd), 0, "%s", name);
        cr_assert_eq(bh_write(h, &gf, fd, 0, name, strlen(name), 0), (int)strlen(name));
        cr_assert_eq(bh_release(h, &gf, fd), 0);
        /* each half (bricks 0+1, bricks 2+3) holds it exactly once */
        for (int half = 0; half < 2; half++) {
            int copies = 0;
            for (int i = 2 * half; i < 2 * half + 2; i++) {
                char p[600];
                struct stat st;
                snprintf(p, sizeof(p), "%s/data/%s", dir[i], name);
                if (stat(p, &st) == 0) {
                    copies++;
                    cr_assert_eq((size_t)st.st_size, strlen(name));
                }
            }
            cr_assert_eq(copies, 1, "%s: %d copies in half %d", name, copies, half);
        }
    }
    kb_args_t o = { .gfid = d };
    kb_reply_t rep;
    cr_assert_eq(bh_call(h, KB_FOP_OPENDIR, &o, &rep), 0);
    uint64_t fd = rep.fd, off = 0;
    kb_reply_clear(&rep);
    int listed = 0;
    for (;;) {
        kb_args_t rd = { .gfid = d, .fd = fd, .off = off, .size = 2048 };
        cr_assert_geq(bh_call(h, KB_FOP_READDIR, &rd, &rep), 0);
        if (!rep.ndirents) {
            kb_reply_clear(&rep);
            break;
        }
        listed += (int)rep.ndirents;
        off = rep.dirents[rep.ndirents - 1].off;
        kb_reply_clear(&rep);
    }
    cr_assert_eq(listed, 40);
    kb_args_t rel = { .gfid = d, .fd = fd };
    cr_assert_eq(bh_call(h, KB_FOP_RELEASEDIR, &rel, NULL), 0);
    four_bricks_stop(h, dir);
}
