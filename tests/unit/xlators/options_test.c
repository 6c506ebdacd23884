/*
 * options_test.c — typed option tables: parsing, validation, defaults.
 */
#include <criterion/criterion.h>
#include "lib/common.h"
#include "xlators/options.h"

static const kb_option_def_t defs[] = {
    { "ping-timeout", "network.ping-timeout", KB_OPT_TIME, "5", 500, 600000, NULL, "d" },
    { "quorum-type", "cluster.quorum-type", KB_OPT_ENUM, "auto", 0, 0, "none|auto|fixed", "d" },
    { "count", NULL, KB_OPT_INT, "3", 1, 16, NULL, "d" },
    { "block", NULL, KB_OPT_SIZE, "64KiB", 0, 0, NULL, "d" },
    { "flag", NULL, KB_OPT_BOOL, "on", 0, 0, NULL, "d" },
    { "dir", NULL, KB_OPT_PATH, NULL, 0, 0, NULL, "d" },
    { NULL },
};

Test(options, defaults_when_unset)
{
    kb_option_set_t *s = kb_opts_new();
    cr_assert_eq(kb_opt_time_ms(s, defs, "ping-timeout"), 5000);
    cr_assert_str_eq(kb_opt_str(s, defs, "quorum-type"), "auto");
    cr_assert_eq(kb_opt_int(s, defs, "count"), 3);
    cr_assert_eq(kb_opt_size(s, defs, "block"), 65536);
    cr_assert(kb_opt_bool(s, defs, "flag"));
    kb_opts_free(s);
}

Test(options, set_values_parse)
{
    kb_option_set_t *s = kb_opts_new();
    kb_opts_set(s, "ping-timeout", "0.5");
    kb_opts_set(s, "block", "1MiB");
    kb_opts_set(s, "flag", "off");
    kb_opts_set(s, "count", "7");
    char err[256];
    cr_assert_eq(kb_opts_validate(s, defs, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(kb_opt_time_ms(s, defs, "ping-timeout"), 500);
    cr_assert_eq(kb_opt_size(s, defs, "block"), 1 << 20);
    cr_assert_not(kb_opt_bool(s, defs, "flag"));
    cr_assert_eq(kb_opt_int(s, defs, "count"), 7);
    kb_opts_set(s, "count", "8");   /* overwrite keeps one entry */
    cr_assert_eq(kb_opts_count(s), 4);
    kb_opts_free(s);
}

Test(options, bad_values_refused_with_reason)
{
    char err[256];
    cr_assert_neq(kb_opt_check(&defs[0], "0.1", err, sizeof(err)), 0);
    cr_assert(strstr(err, "range"), "%s", err);
    cr_assert_neq(kb_opt_check(&defs[1], "majority", err, sizeof(err)), 0);
    cr_assert(strstr(err, "none|auto|fixed"), "%s", err);
    cr_assert_neq(kb_opt_check(&defs[2], "99", err, sizeof(err)), 0);
    cr_assert_neq(kb_opt_check(&defs[2], "x", err, sizeof(err)), 0);
    cr_assert_neq(kb_opt_check(&defs[3], "12Q", err, sizeof(err)), 0);
    cr_assert_neq(kb_opt_check(&defs[4], "maybe", err, sizeof(err)), 0);
    cr_assert_neq(kb_opt_check(&defs[5], "relative/path", err, sizeof(err)), 0);
    kb_option_set_t *s = kb_opts_new();
    kb_opts_set(s, "nonsense", "1");
    cr_assert_neq(kb_opts_validate(s, defs, err, sizeof(err)), 0);
    cr_assert(strstr(err, "nonsense"));
    kb_opts_free(s);
}

Test(options, parsers)
{
    uint64_t u;
    bool b;
    cr_assert_eq(kb_parse_size("4k", &u), 0); cr_assert_eq(u, 4096);
    cr_assert_eq(kb_parse_size("2G", &u), 0); cr_assert_eq(u, 2ull << 30);
    cr_assert_eq(kb_parse_size("10", &u), 0); cr_assert_eq(u, 10);
    cr_assert_neq(kb_parse_size("-1", &u), 0);
    cr_assert_eq(kb_parse_time_ms("200ms", &u), 0); cr_assert_eq(u, 200);
    cr_assert_eq(kb_parse_time_ms("42", &u), 0); cr_assert_eq(u, 42000);
    cr_assert_eq(kb_parse_bool("enable", &b), 0); cr_assert(b);
    cr_assert_eq(kb_parse_bool("No", &b), 0); cr_assert_not(b);
}
