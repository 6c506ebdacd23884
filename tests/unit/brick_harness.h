/*
 * brick_harness.h — run a translator graph synchronously in a unit test.
 *
 * Builds a graph from a volfile string on a kb_loop owned by the calling
 * thread, and runs fops on it one at a time: bh_call winds, then pumps the
 * loop until the reply arrives (io_uring completions included) and hands
 * back a deep copy. bh_start_call/bh_wait do the same in two steps, for
 * calls that complete later (a blocking lock).
 *
 * Generic: no main(), nothing brick-specific beyond a few fop helpers.
 * Linked into every unit test binary (not a _test.c file).
 */
#ifndef KB_BRICK_HARNESS_H
#define KB_BRICK_HARNESS_H

#include "lib/loop.h"
#include "xlators/xlator.h"

typedef struct bh {
    kb_loop_t *loop;
    kb_graph_t *graph;
    kb_cred_t cred;           /* default credentials of bh_call (root, client 1) */
} bh_t;

/* A fresh empty directory /var/tmp/kb-<tag>-<pid>-<n> (malloc'd path). */
char *bh_tmpdir(const char *tag);
/* rm -rf PATH (no symlink is followed). 0 or -errno. */
int bh_rmrf(const char *path);

/* Parse + init VOLFILE. NULL with a reason in err on failure. */
bh_t *bh_start(const char *volfile, char *err, size_t errlen);
/* One storage/posix brick "b-posix" on DIR, with EXTRA option lines (or NULL). */
bh_t *bh_posix_start(const char *dir, const char *extra, char *err, size_t errlen);
void bh_stop(bh_t *h);
kb_xlator_t *bh_xl(bh_t *h, const char *name);   /* NULL name: the top */

/* One call, synchronous. OUT (may be NULL) receives a deep copy of the reply
 * (kb_reply_clear it). Returns the reply status, or -ETIMEDOUT after 10 s. */
int bh_call(bh_t *h, kb_op_t op, const kb_args_t *args, kb_reply_t *out);
int bh_call_xl(bh_t *h, kb_xlator_t *xl, kb_op_t op, const kb_args_t *args, const kb_cred_t *cred,
               kb_reply_t *out);

/* Two-step call. ARGS are copied: the caller need not keep them. */
typedef struct bh_pending {
    bool done;
    kb_reply_t reply;
    kb_args_t args;
} bh_pending_t;
void bh_start_call(bh_t *h, kb_xlator_t *xl, kb_op_t op, const kb_args_t *args, const kb_cred_t *cred,
                   bh_pending_t *p);
/* Pump until P completes or TIMEOUT_MS passes: 0 or -ETIMEDOUT. */
int bh_wait(bh_t *h, bh_pending_t *p, int timeout_ms);
void bh_pending_clear(bh_pending_t *p);
/* Run the loop for MS milliseconds. */
void bh_pump(bh_t *h, int ms);

/* ---- fop helpers (status returned; outputs optional) ---- */
int bh_lookup(bh_t *h, const kb_gfid_t *parent, const char *name, kb_iatt_t *attr);
int bh_mkdir(bh_t *h, const kb_gfid_t *parent, const char *name, uint32_t mode, kb_gfid_t *out);
int bh_create(bh_t *h, const kb_gfid_t *parent, const char *name, uint32_t mode, uint32_t flags,
              kb_gfid_t *out, uint64_t *fd);
int bh_open(bh_t *h, const kb_gfid_t *g, uint32_t flags, uint64_t *fd);
int bh_release(bh_t *h, const kb_gfid_t *g, uint64_t fd);
int bh_write(bh_t *h, const kb_gfid_t *g, uint64_t fd, uint64_t off, const void *data, size_t len,
             uint32_t flags);
/* Reads into BUF (at most SIZE bytes); returns bytes read or -errno. */
int bh_read(bh_t *h, const kb_gfid_t *g, uint64_t fd, uint64_t off, size_t size, void *buf);

#endif
