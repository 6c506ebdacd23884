/*
 * brick_test.c — the brick's on-disk format (xlators/storage/posix/brick.c,
 * the rule in lib/version.h): a brick of kembar 0.1.0 (no stamp) is served
 * and stamped; a brick stamped with a newer format is refused by check,
 * prepare, upgrade, unstamp and the translator alike, with nothing on it
 * changed; an unreadable stamp is refused too.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include "tests/unit/brick_harness.h"
#include "xlators/storage/posix/posix.h"

static char *bd;
static kb_gfid_t vol, bid;

static void setup(void)
{
    bd = bh_tmpdir("brickfmt");
    cr_assert(bd);
    kb_gfid_generate(&vol);
    kb_gfid_generate(&bid);
}

static void teardown(void)
{
    bh_rmrf(bd);
    free(bd);
}

TestSuite(brick, .init = setup, .fini = teardown, .timeout = 30);

static void set_format_raw(const void *b, size_t n)
{
    cr_assert_eq(setxattr(bd, KB_XATTR_FORMAT, b, n, 0), 0, "%s", strerror(errno));
}

static void set_format(uint32_t f)
{
    uint8_t b[4] = { (uint8_t)f, (uint8_t)(f >> 8), (uint8_t)(f >> 16), (uint8_t)(f >> 24) };
    set_format_raw(b, sizeof(b));
}

static uint32_t get_format(void)
{
    int fd = open(bd, O_RDONLY | O_DIRECTORY);
    cr_assert_geq(fd, 0);
    uint32_t f = 0;
    cr_assert_eq(posix_brick_format(fd, &f), 0);
    close(fd);
    return f;
}

static bool stamped(void)
{
    uint8_t b[8];
    return getxattr(bd, KB_XATTR_FORMAT, b, sizeof(b)) == KB_BRICK_FORMAT_BYTES;
}

/* Every trusted.* xattr of the brick root and every name in it, as text:
 * what "nothing was changed" compares. */
static char *snapshot(void)
{
    char names[4096], *out = NULL;
    size_t cap = 0;
    FILE *f = open_memstream(&out, &cap);
    ssize_t n = listxattr(bd, names, sizeof(names));
    for (ssize_t i = 0; n > 0 && i < n; i += (ssize_t)strlen(names + i) + 1) {
        uint8_t v[256];
        ssize_t m = getxattr(bd, names + i, v, sizeof(v));
        fprintf(f, "%s=", names + i);
        for (ssize_t k = 0; k < m; k++)
            fprintf(f, "%02x", v[k]);
        fprintf(f, "\n");
    }
    DIR *d = opendir(bd);
    for (struct dirent *de; d && (de = readdir(d));)
        fprintf(f, "name %s\n", de->d_name);
    if (d)
        closedir(d);
    fclose(f);
    return out;
}

static bh_t *start(char *err, size_t errlen)
{
    char vs[KB_GFID_STRLEN], volfile[1024];
    snprintf(volfile, sizeof(volfile),
             "volume p\n type storage/posix\n option directory %s\n option volume-id %s\nend-volume\n", bd,
             kb_gfid_str(&vol, vs));
    return bh_start(volfile, err, errlen);
}

Test(brick, prepare_stamps_the_current_format)
{
    char err[512];
    cr_assert_eq(posix_brick_prepare(bd, &vol, &bid, true, err, sizeof(err)), 0, "%s", err);
    cr_assert(stamped());
    cr_assert_eq(get_format(), KB_BRICK_FORMAT);
    cr_assert_eq(posix_brick_check(bd, &vol, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(posix_brick_unstamp(bd), 0);
    cr_assert_not(stamped(), "delete removes the format with the ids");
}

/* A brick kembar 0.1.0 made: ids, no format. Served, and stamped at start. */
Test(brick, a_brick_of_0_1_0_is_upgraded_in_place)
{
    char err[512];
    cr_assert_eq(posix_brick_prepare(bd, &vol, &bid, true, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(removexattr(bd, KB_XATTR_FORMAT), 0);
    cr_assert_eq(get_format(), 1, "absent reads as 1");
    cr_assert_eq(posix_brick_check(bd, &vol, err, sizeof(err)), 0, "%s", err);
    cr_assert_not(stamped(), "check only reads");
    bh_t *h = start(err, sizeof(err));
    cr_assert(h, "%s", err);
    bh_stop(h);
    cr_assert(stamped(), "the translator's start stamped it");
    cr_assert_eq(get_format(), KB_BRICK_FORMAT);
    /* current: upgrade is a no-op */
    char *before = snapshot();
    cr_assert_eq(posix_brick_upgrade(bd, err, sizeof(err)), 0, "%s", err);
    char *after = snapshot();
    cr_assert_str_eq(before, after);
    free(before);
    free(after);
}

/* A brick a newer kembar wrote: every door refuses, one line, nothing changed. */
Test(brick, a_newer_format_is_never_opened)
{
    char err[512] = "";
    cr_assert_eq(posix_brick_prepare(bd, &vol, &bid, true, err, sizeof(err)), 0, "%s", err);
    /* as a newer release left it: its own layout, which we must not "repair" */
    char internal[600];
    snprintf(internal, sizeof(internal), "%s/.kembar", bd);
    cr_assert_eq(bh_rmrf(internal), 0);
    cr_assert_eq(removexattr(bd, "trusted.kembar.gfid"), 0);
    set_format(KB_BRICK_FORMAT + 1);
    char *before = snapshot();

    cr_assert_eq(posix_brick_check(bd, &vol, err, sizeof(err)), -EPROTONOSUPPORT);
    cr_assert(strstr(err, "on-disk format 2") && strstr(err, "knows up to 1") && strstr(err, "nothing was changed"),
              "%s", err);
    cr_assert_null(strchr(err, '\n'), "one line: %s", err);
    err[0] = 0;
    cr_assert_eq(posix_brick_upgrade(bd, err, sizeof(err)), -EPROTONOSUPPORT);
    cr_assert(strstr(err, "newer kembard"), "%s", err);
    cr_assert_eq(posix_brick_prepare(bd, &vol, &bid, true, err, sizeof(err)), -EPROTONOSUPPORT, "prepare refuses");
    cr_assert_eq(posix_brick_unstamp(bd), -EPROTONOSUPPORT, "delete leaves it alone");
    cr_assert_null(start(err, sizeof(err)), "the translator refuses it");
    /* and the same without a volume-id (a hand-written volfile) */
    char volfile[1024];
    snprintf(volfile, sizeof(volfile), "volume p\n type storage/posix\n option directory %s\nend-volume\n", bd);
    cr_assert_null(bh_start(volfile, err, sizeof(err)));

    char *after = snapshot();
    cr_assert_str_eq(before, after, "something on the brick changed");
    free(before);
    free(after);
}

Test(brick, an_unreadable_stamp_is_refused)
{
    char err[512];
    cr_assert_eq(posix_brick_prepare(bd, &vol, &bid, true, err, sizeof(err)), 0, "%s", err);
    set_format_raw("x", 1);
    cr_assert_eq(posix_brick_check(bd, &vol, err, sizeof(err)), -EINVAL);
    cr_assert(strstr(err, "unreadable"), "%s", err);
    cr_assert_eq(posix_brick_upgrade(bd, err, sizeof(err)), -EINVAL);
    set_format(0);
    cr_assert_eq(posix_brick_check(bd, &vol, err, sizeof(err)), -EINVAL, "format 0 does not exist");
}
