/*
 * mock.h — an in-memory brick for distribute's unit tests
 * ("test/dist_mock"): a namespace of directories, files and symlinks keyed
 * by gfid, with fds, readdir cookies, the distribute layout IPCs, fault
 * injection (an error per op, a down brick) and deferred completion (hold
 * calls, complete them later in any order).
 *
 * Linked into every unit test binary (tests/unit/ non-_test file): every
 * global name starts with dist_mock_.
 */
#ifndef DIST_MOCK_H
#define DIST_MOCK_H

#include "xlators/xlator.h"

typedef struct dist_mock dist_mock_t;
/* Called after the mock ran an op (STATUS: its result), before the reply. */
typedef void (*dist_mock_hook_fn)(dist_mock_t *m, void *arg, kb_op_t op, const kb_args_t *a, int status);

extern const kb_xlator_type_t dist_mock_type;   /* "test/dist_mock" */
void dist_mock_register(void);
dist_mock_t *dist_mock_of(kb_xlator_t *xl);

/* CHILD_UP / CHILD_DOWN to the parents; a down mock answers -ENOTCONN. */
void dist_mock_set_up(kb_xlator_t *xl, bool up);
/* Every later OP fails with ERR (0: stop failing). */
void dist_mock_fail(dist_mock_t *m, kb_op_t op, int err);
/* Hold calls instead of answering; release them (in order or reversed).
 * Returns how many were completed. */
void dist_mock_hold(dist_mock_t *m, bool hold);
int dist_mock_release(dist_mock_t *m, bool reverse);
unsigned dist_mock_calls(const dist_mock_t *m, kb_op_t op);
void dist_mock_reset_calls(dist_mock_t *m);

/* READDIR: at most N entries per reply (default 1000). */
void dist_mock_set_batch(dist_mock_t *m, unsigned n);
/* READDIR cookies of 63 bits, like ext4's hash cookies. */
void dist_mock_set_big_offsets(dist_mock_t *m, bool on);

/* Inspect / set up the namespace directly. */
int dist_mock_find(const dist_mock_t *m, const kb_gfid_t *parent, const char *name, kb_gfid_t *gfid,
                   uint32_t *mode);
int dist_mock_add(dist_mock_t *m, const kb_gfid_t *parent, const char *name, const kb_gfid_t *gfid,
                  uint32_t mode);
/* The stored layout value of DIR (length, 0 when none; -ENOENT no dir). */
int dist_mock_layout(const dist_mock_t *m, const kb_gfid_t *dir, uint8_t *out, size_t cap);
size_t dist_mock_count(const dist_mock_t *m, const kb_gfid_t *dir);
/* Attributes of an object; -ENOENT. */
int dist_mock_attr(const dist_mock_t *m, const kb_gfid_t *g, kb_iatt_t *out);
unsigned dist_mock_open_fds(const dist_mock_t *m);
void dist_mock_set_hook(dist_mock_t *m, dist_mock_hook_fn fn, void *arg);
/* The content of a regular file (borrowed; valid until the next op). */
int dist_mock_data(const dist_mock_t *m, const kb_gfid_t *g, const uint8_t **data, uint64_t *size);
/* INODELK locks held or waited for. */
unsigned dist_mock_locks(const dist_mock_t *m);
/* The gfids KB_IPC_INDEX_LIST answers with (copied). */
int dist_mock_set_index(dist_mock_t *m, const kb_gfid_t *g, size_t n);

#endif
