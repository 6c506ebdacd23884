/*
 * version_test.c — lib/version: release comparison, the op-version of a
 * release, and that this build's release and op-version agree.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include "lib/common.h"
#include "lib/version.h"

Test(version, compare)
{
    cr_assert_eq(kb_version_cmp("0.1.0", "0.1.0"), 0);
    cr_assert_lt(kb_version_cmp("0.1.0", "0.2.0"), 0);
    cr_assert_gt(kb_version_cmp("0.10.0", "0.9.9"), 0, "numeric, not text");
    cr_assert_eq(kb_version_cmp("0.2", "0.2.0"), 0, "a missing component is 0");
    cr_assert_eq(kb_version_cmp("0.2.0-rc1", "0.2.0"), 0, "a suffix is ignored");
    cr_assert_lt(kb_version_cmp("", "0.1.0"), 0);
    cr_assert_lt(kb_version_cmp(NULL, "0.0.1"), 0);
    cr_assert_gt(kb_version_cmp("1.0.0", "0.99.99"), 0);
}

Test(version, op_version_of_a_release)
{
    cr_assert_eq(kb_op_version_of("0.1.0"), 1);
    cr_assert_eq(kb_op_version_of("0.1.7"), 1, "a patch release keeps its op-version");
    cr_assert_eq(kb_op_version_of("0.2.0"), 2);
    cr_assert_eq(kb_op_version_of("9.0.0"), KB_OP_VERSION, "newer than we know: at least ours");
    cr_assert_eq(kb_op_version_of("0.0.9"), 1);
    cr_assert_eq(kb_op_version_of("?"), 1, "a client that does not say is 0.1");
    cr_assert_eq(kb_op_version_of(NULL), 1);
    cr_assert_eq(kb_op_version_of(""), 1);
}

Test(version, names_and_this_build)
{
    cr_assert_str_eq(kb_op_version_release(1), "0.1");
    cr_assert_str_eq(kb_op_version_release(2), "0.2");
    cr_assert_null(kb_op_version_release(0));
    cr_assert_null(kb_op_version_release(KB_OP_VERSION + 1), "a newer release's is unknown here");
    cr_assert_eq(kb_op_version_of(KB_VERSION), KB_OP_VERSION, "KB_VERSION %s and KB_OP_VERSION %u disagree",
                 KB_VERSION, KB_OP_VERSION);
    char want[16];
    snprintf(want, sizeof(want), "%s.", kb_op_version_release(KB_OP_VERSION));
    cr_assert_eq(strncmp(KB_VERSION, want, strlen(want)), 0, "KB_VERSION %s is not release %s", KB_VERSION,
                 kb_op_version_release(KB_OP_VERSION));
}
