/*
 * xlator_test.c — volfile parsing, wind/unwind, pass-through defaults,
 * exactly-once completion, notify propagation, ctl.
 */
#include <criterion/criterion.h>
#include "xlators/xlator.h"

/* A leaf that answers every fop with status = op number, synchronously or
 * (deferred) when asked to hold calls. */
static kb_call_t *held[16];
static int nheld;
static bool hold_calls;

static void leaf_fop(kb_call_t *call)
{
    if (hold_calls) {
        held[nheld++] = call;
        return;
    }
    kb_reply_t r = { .status = (int32_t)call->op };
    kb_unwind(call, &r);
}

static int leaf_inits, leaf_finis;
static int leaf_init(kb_xlator_t *xl) { leaf_inits++; return 0; }
static void leaf_fini(kb_xlator_t *xl) { leaf_finis++; }

static const kb_option_def_t leaf_opts[] = {
    { "size", NULL, KB_OPT_SIZE, "1MiB", 0, 0, NULL, "test" },
    { NULL },
};

static const kb_xlator_type_t leaf_type = {
    .name = "test/leaf",
    .ops = {
#define FOP(NAME, name, A, R, C) [KB_FOP_##NAME] = leaf_fop,
#include "xlators/fops.def"
#undef FOP
    },
    .init = leaf_init,
    .fini = leaf_fini,
    .options = leaf_opts,
};

/* A pass-through translator with a local block and a custom STAT. */
struct mid_local { int marker; };
static void mid_stat_cbk(void *cookie, const kb_reply_t *r)
{
    kb_call_t *call = cookie;
    struct mid_local *l = call->local;
    cr_assert_eq(l->marker, 42);
    kb_reply_t out = *r;
    out.status = r->status + 1000;
    kb_unwind(call, &out);
}
static void mid_stat(kb_call_t *call)
{
    struct mid_local *l = call->local;
    l->marker = 42;
    kb_wind_from(call, call->xl->children[0], call->args, mid_stat_cbk, call);
}
static const kb_xlator_type_t mid_type = {
    .name = "test/mid",
    .ops = { [KB_FOP_STAT] = mid_stat },
    .local_size = sizeof(struct mid_local),
};

static int top_events[8];
static void on_event(kb_graph_t *g, int ev) { top_events[ev]++; }

static int ncb;
static int last_status;
static void count_cbk(void *cookie, const kb_reply_t *r)
{
    ncb++;
    last_status = r->status;
}

static void setup(void)
{
    kb_xlator_type_register(&leaf_type);
    kb_xlator_type_register(&mid_type);
    ncb = 0;
    nheld = 0;
    hold_calls = false;
    memset(top_events, 0, sizeof(top_events));
}

static const char *good =
    "# a comment\n"
    "volume leaf\n  type test/leaf\n  option size 4KiB\nend-volume\n"
    "volume mid\n  type test/mid\n  subvolumes leaf\nend-volume\n";

Test(xlator, parse_build_wind, .init = setup)
{
    char err[256] = "";
    kb_graph_t *g = kb_graph_parse(good, err, sizeof(err));
    cr_assert_not_null(g, "%s", err);
    cr_assert_str_eq(g->top->name, "mid");
    cr_assert_eq(g->top->nchildren, 1);
    cr_assert_eq(kb_graph_init(g, NULL, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(leaf_inits, 1);
    kb_args_t a = { 0 };
    /* STAT goes through mid's op; READ uses the pass-through default */
    kb_wind(g->top, KB_FOP_STAT, &a, NULL, 1, count_cbk, NULL);
    cr_assert_eq(ncb, 1);
    cr_assert_eq(last_status, KB_FOP_STAT + 1000);
    kb_wind(g->top, KB_FOP_READ, &a, NULL, 2, count_cbk, NULL);
    cr_assert_eq(ncb, 2);
    cr_assert_eq(last_status, KB_FOP_READ);
    cr_assert_eq(g->ninflight, 0);
    kb_graph_fini(g);
    cr_assert_eq(leaf_finis, 1);
}

Test(xlator, deferred_completion_and_inflight, .init = setup)
{
    char err[256];
    kb_graph_t *g = kb_graph_parse(good, err, sizeof(err));
    cr_assert_eq(kb_graph_init(g, NULL, err, sizeof(err)), 0);
    hold_calls = true;
    kb_args_t a = { 0 };
    for (int i = 0; i < 3; i++)
        kb_wind(g->top, KB_FOP_WRITE, &a, NULL, (uint64_t)i, count_cbk, NULL);
    cr_assert_eq(ncb, 0);
    cr_assert_eq(g->ninflight, 6);   /* 3 at mid (pass) + 3 at leaf */
    /* complete in reverse order */
    for (int i = nheld - 1; i >= 0; i--) {
        kb_reply_t r = { .status = 7 };
        kb_unwind(held[i], &r);
    }
    cr_assert_eq(ncb, 3);
    cr_assert_eq(g->ninflight, 0);
    kb_graph_fini(g);
}

Test(xlator, parse_errors_have_reasons, .init = setup)
{
    struct { const char *text, *want; } cases[] = {
        { "volume a\n type no/such\nend-volume\n", "unknown translator type" },
        { "volume a\n type test/leaf\n", "missing end-volume" },
        { "volume a\n type test/leaf\n subvolumes b\nend-volume\n", "not defined" },
        { "volume a\n type test/leaf\nend-volume\nvolume a\n type test/leaf\nend-volume\n", "duplicate" },
        { "volume a\nend-volume\n", "no type" },
        { "", "empty" },
        { "junk\n", "expected" },
        { "volume a\n type test/leaf\nend-volume\nvolume b\n type test/leaf\nend-volume\n", "not used" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char err[256] = "";
        kb_graph_t *g = kb_graph_parse(cases[i].text, err, sizeof(err));
        cr_assert_null(g, "case %zu parsed", i);
        cr_assert(strstr(err, cases[i].want), "case %zu: '%s' lacks '%s'", i, err, cases[i].want);
    }
}

Test(xlator, bad_option_fails_init, .init = setup)
{
    char err[256] = "";
    kb_graph_t *g = kb_graph_parse("volume a\n type test/leaf\n option size lots\nend-volume\n", err, sizeof(err));
    cr_assert_not_null(g);
    cr_assert_neq(kb_graph_init(g, NULL, err, sizeof(err)), 0);
    cr_assert(strstr(err, "size"), "%s", err);
    kb_graph_fini(g);
    g = kb_graph_parse("volume a\n type test/leaf\n option nope 1\nend-volume\n", err, sizeof(err));
    cr_assert_neq(kb_graph_init(g, NULL, err, sizeof(err)), 0);
    cr_assert(strstr(err, "unknown option"), "%s", err);
    kb_graph_fini(g);
}

Test(xlator, notify_propagates_to_owner, .init = setup)
{
    char err[256];
    kb_graph_t *g = kb_graph_parse(good, err, sizeof(err));
    g->on_event = on_event;
    cr_assert_eq(kb_graph_init(g, NULL, err, sizeof(err)), 0);
    kb_xlator_t *leaf = kb_graph_find(g, "leaf");
    kb_notify_parents(leaf, KB_EV_CHILD_UP);
    cr_assert_eq(top_events[KB_EV_CHILD_UP], 1);
    cr_assert(g->top->up);
    kb_notify_parents(leaf, KB_EV_CHILD_UP);   /* no duplicate UP */
    cr_assert_eq(top_events[KB_EV_CHILD_UP], 1);
    kb_notify_parents(leaf, KB_EV_CHILD_DOWN);
    cr_assert_eq(top_events[KB_EV_CHILD_DOWN], 1);
    cr_assert_not(g->top->up);
    kb_graph_fini(g);
}
