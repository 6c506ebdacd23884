/*
 * drain_test.c — cluster/distribute's drain-sets option (set by
 * `volume remove-brick ... start`): new directories, healed layouts and
 * fix-layout give a draining set no range, so no new file lands there; a
 * bad value refuses the graph.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <sys/stat.h>

#include "lib/log.h"
#include "tests/unit/xlators/cluster/distribute/mock.h"
#include "xlators/changelog.h"
#include "xlators/cluster/distribute/distribute.h"

static kb_reply_t R;
static const kb_cred_t cred = { .uid = 0 };

static void cbk(void *cookie, const kb_reply_t *r)
{
    int *n = cookie;
    kb_reply_clear(&R);
    cr_assert_eq(kb_reply_copy(&R, r), 0);
    (*n)++;
}

static void setup(void)
{
    kb_log_level = KB_LOG_ERROR;
    dist_mock_register();
}

static void teardown(void) { kb_reply_clear(&R); }

static kb_graph_t *graph(const char *drain, char *err, size_t errlen)
{
    char text[1024];
    snprintf(text, sizeof(text),
             "volume s0\n type test/dist_mock\nend-volume\nvolume s1\n type test/dist_mock\nend-volume\n"
             "volume s2\n type test/dist_mock\nend-volume\n"
             "volume dist\n type cluster/distribute\n option drain-sets %s\n subvolumes s0 s1 s2\nend-volume\n",
             drain);
    kb_graph_t *g = kb_graph_parse(text, err, errlen);
    cr_assert_not_null(g, "%s", err);
    if (kb_graph_init(g, NULL, err, errlen) < 0) {
        kb_graph_fini(g);
        return NULL;
    }
    for (int i = 0; i < 3; i++)
        dist_mock_set_up(g->top->children[i], true);
    return g;
}

static int call(kb_graph_t *g, kb_op_t op, const kb_args_t *a)
{
    int n = 0;
    kb_wind(g->top, op, a, &cred, 1, cbk, &n);
    cr_assert_eq(n, 1, "%s did not complete exactly once", kb_fop_name(op));
    return R.status;
}

static void stored_layout(kb_graph_t *g, const kb_gfid_t *dir, dist_layout_t *l)
{
    dist_layout_clear(l, 3);
    for (int i = 0; i < 3; i++) {
        uint8_t v[64];
        int len = dist_mock_layout(dist_mock_of(g->top->children[i]), dir, v, sizeof(v));
        if (len > 0)
            cr_assert_eq(dist_layout_decode(l, i, v, (size_t)len), 0);
    }
}

Test(dist_drain, new_and_healed_layouts_leave_draining_sets_out, .init = setup, .fini = teardown)
{
    char err[256] = "";
    kb_graph_t *g = graph("1", err, sizeof(err));
    cr_assert_not_null(g, "%s", err);
    kb_args_t m = { .gfid = kb_gfid_root, .name = "d", .mode = 0755 };
    kb_gfid_generate(&m.newgfid);
    cr_assert_eq(call(g, KB_FOP_MKDIR, &m), 0);
    dist_layout_t l;
    for (int pass = 0; pass < 2; pass++) {
        /* pass 0: the root, healed by the first entry op; pass 1: the new directory */
        stored_layout(g, pass ? &m.newgfid : &kb_gfid_root, &l);
        cr_assert_eq(dist_layout_check(&l), 0, "the layout still covers the space");
        cr_assert_eq(dist_layout_share(&l, 1), 0, "a draining set got a range (%s)", pass ? "new directory" : "root");
        cr_assert_gt(dist_layout_share(&l, 0), 0);
        cr_assert_gt(dist_layout_share(&l, 2), 0);
    }
    /* The directory itself exists on every set (the drain moves files only). */
    for (int i = 0; i < 3; i++)
        cr_assert_eq(dist_mock_find(dist_mock_of(g->top->children[i]), &kb_gfid_root, "d", NULL, NULL), 0);
    for (int k = 0; k < 40; k++) {
        char name[16];
        snprintf(name, sizeof(name), "f%d", k);
        kb_args_t c = { .gfid = m.newgfid, .name = name, .mode = 0644, .flags = 02 };
        kb_gfid_generate(&c.newgfid);
        cr_assert_eq(call(g, KB_FOP_CREATE, &c), 0);
        kb_args_t rel = { .gfid = c.newgfid, .fd = R.fd };
        cr_assert_eq(call(g, KB_FOP_RELEASE, &rel), 0);
        cr_assert_neq(dist_mock_find(dist_mock_of(g->top->children[1]), &m.newgfid, name, NULL, NULL), 0,
                      "%s was created on the draining set", name);
    }
    /* A fix-layout asked to drain nothing still leaves set 1 out. */
    kb_args_t fx = { .gfid = m.newgfid, .flags = KB_IPC_DIST_FIX_LAYOUT, .size = 0 };
    cr_assert_eq(call(g, KB_FOP_IPC, &fx), 0);
    stored_layout(g, &m.newgfid, &l);
    cr_assert_eq(dist_layout_share(&l, 1), 0);
    kb_graph_fini(g);
}

Test(dist_drain, fix_layout_takes_the_range_of_a_set_that_starts_draining, .init = setup, .fini = teardown)
{
    char err[256] = "";
    kb_graph_t *g = graph("", err, sizeof(err));
    cr_assert_not_null(g, "%s", err);
    kb_args_t m = { .gfid = kb_gfid_root, .name = "d", .mode = 0755 };
    kb_gfid_generate(&m.newgfid);
    cr_assert_eq(call(g, KB_FOP_MKDIR, &m), 0);
    dist_layout_t l;
    stored_layout(g, &m.newgfid, &l);
    cr_assert_gt(dist_layout_share(&l, 2), 0, "without drain-sets every set has a range");
    dist_priv_t *p = g->top->priv;
    cr_assert_eq(dist_parse_sets("2", 3, &p->drain), 0);
    kb_args_t fx = { .gfid = m.newgfid, .flags = KB_IPC_DIST_FIX_LAYOUT, .size = 0 };
    cr_assert_eq(call(g, KB_FOP_IPC, &fx), 0);
    cr_assert_eq(R.off, 1, "the layout changed");
    stored_layout(g, &m.newgfid, &l);
    cr_assert_eq(dist_layout_check(&l), 0);
    cr_assert_eq(dist_layout_share(&l, 2), 0);
    kb_graph_fini(g);
}

Test(dist_drain, set_lists_parse_and_bad_values_refuse_the_graph, .init = setup, .fini = teardown)
{
    uint64_t mask;
    cr_assert_eq(dist_parse_sets("", 3, &mask), 0);
    cr_assert_eq(mask, 0);
    cr_assert_eq(dist_parse_sets("0,2", 3, &mask), 0);
    cr_assert_eq(mask, 5);
    const char *bad[] = { "3", "-1", "x", "1,,y", "1;2", NULL };
    for (int i = 0; bad[i]; i++)
        cr_assert_eq(dist_parse_sets(bad[i], 3, &mask), -EINVAL, "accepted '%s'", bad[i]);
    char err[256] = "";
    cr_assert_null(graph("7", err, sizeof(err)), "drain-sets 7 of 3 sets was accepted");
}

/* After add-brick, before any rebalance: a directory made while the volume
 * had one set exists on set 0 only, without a layout. A client that already
 * knows the directory (the kernel caches its dentry) creates, looks up and
 * lists files in it straight away: all of that must work. */
Test(dist_drain, directory_from_before_add_brick_is_usable_at_once, .init = setup, .fini = teardown)
{
    char err[256] = "";
    kb_graph_t *g = graph("", err, sizeof(err));
    cr_assert_not_null(g, "%s", err);
    dist_mock_t *m0 = dist_mock_of(g->top->children[0]);
    kb_gfid_t d, f0;
    kb_gfid_generate(&d);
    kb_gfid_generate(&f0);
    cr_assert_eq(dist_mock_add(m0, &kb_gfid_root, "old", &d, S_IFDIR | 0755), 0);
    cr_assert_eq(dist_mock_add(m0, &d, "before", &f0, S_IFREG | 0644), 0);
    for (int k = 0; k < 20; k++) {
        char name[16];
        snprintf(name, sizeof(name), "n%d", k);
        kb_args_t c = { .gfid = d, .name = name, .mode = 0644, .flags = 02 };
        kb_gfid_generate(&c.newgfid);
        int st = call(g, KB_FOP_CREATE, &c);
        cr_assert_eq(st, 0, "create %s in a pre-add-brick directory: %s", name, strerror(-st));
        kb_args_t rel = { .gfid = c.newgfid, .fd = R.fd };
        cr_assert_eq(call(g, KB_FOP_RELEASE, &rel), 0);
    }
    kb_args_t lk = { .gfid = d, .name = "before" };
    cr_assert_eq(call(g, KB_FOP_LOOKUP, &lk), 0, "a file from before add-brick is found");
    for (int i = 1; i < 3; i++)
        cr_assert_eq(dist_mock_count(dist_mock_of(g->top->children[i]), &d), 0,
                     "nothing may be created where the directory is missing (set %d)", i);
    /* A lookup of the directory itself heals it onto the new sets. */
    kb_args_t ld = { .gfid = kb_gfid_root, .name = "old" };
    cr_assert_eq(call(g, KB_FOP_LOOKUP, &ld), 0);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(dist_mock_find(dist_mock_of(g->top->children[i]), &kb_gfid_root, "old", NULL, NULL), 0,
                     "the directory was not made on set %d", i);
    kb_graph_fini(g);
}
