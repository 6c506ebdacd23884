/*
 * brick_fixture.h — one storage/posix brick in a fresh directory, for the
 * posix tests (included by each: static state, one brick per test).
 * Define BRICK_FIXTURE_TAG (the directory's tag) before including it.
 */
#ifndef KB_TEST_POSIX_BRICK_FIXTURE_H
#define KB_TEST_POSIX_BRICK_FIXTURE_H

#include <stdlib.h>
#include <criterion/criterion.h>
#include "tests/unit/brick_harness.h"

static char *dir;
static bh_t *h;
static const kb_gfid_t *ROOT = &kb_gfid_root;

static bh_t *start_brick(const char *extra)
{
    char err[512] = "";
    bh_t *b = bh_posix_start(dir, extra, err, sizeof(err));
    cr_assert(b, "graph: %s", err);
    return b;
}

static void setup(void)
{
    dir = bh_tmpdir(BRICK_FIXTURE_TAG);
    cr_assert(dir);
    h = start_brick(NULL);
}

static void teardown(void)
{
    bh_stop(h);
    h = NULL;
    bh_rmrf(dir);
    free(dir);
}

/* A restart as a crash leaves the disk: fini keeps what a crash would. */
static void restart(const char *extra)
{
    bh_stop(h);
    h = start_brick(extra);
}

#endif
