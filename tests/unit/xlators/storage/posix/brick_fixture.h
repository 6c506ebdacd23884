/*
 * brick_fixture.h — one storage/posix brick in a fresh directory, for the
 * posix tests (included by each: static state, one brick per test).
 * Define BRICK_FIXTURE_TAG (the directory's tag) before including it.
 */
#ifndef KB_TEST_POSIX_BRICK_FIXTURE_H
#define KB_TEST_POSIX_BRICK_FIXTURE_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <criterion/criterion.h>
#include "tests/unit/brick_harness.h"
#include "xlators/storage/posix/internal.h"

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

/* lstat of REL, a path relative to the brick: 0 or -errno. */
static inline int brick_stat(const char *rel, struct stat *st)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, rel);
    return lstat(path, st) ? -errno : 0;
}

/* The brick-relative path of G's gfid handle. */
static inline void handle_rel(const kb_gfid_t *g, char *out, size_t len)
{
    char r[POSIX_HANDLE_REL_LEN];
    posix_handle_rel(g, r);
    snprintf(out, len, ".kembar/handles/%s", r);
}

/* A restart as a crash leaves the disk: fini keeps what a crash would. */
static void restart(const char *extra)
{
    bh_stop(h);
    h = start_brick(extra);
}

#endif
