/*
 * mock_child.h — "test/mock": a child translator for unit tests of
 * translators that fan out (replicate, distribute).
 *
 * A mock records every wind (op + a deep copy of the args) and answers it
 * like a tiny brick — at once by default, or later when its op is held —
 * in any order the test chooses, with the normal answer or any error, or
 * never. It keeps just enough state to answer sensibly: changelog counters
 * per gfid (XATTROP ADD/GET), names (LOOKUP, created by CREATE/MKDIR...),
 * fd numbers (1000 * id + k, so each child's fds differ), and READ data
 * filled with the byte 'a' + id. A create brings its parent, as a brick
 * does (KB_RF_PATTR), with nlink 10 + id.
 *
 * It remembers the INODELK/ENTRYLK locks it granted (lks; they die with its
 * connection). A mock with xop_locked set is a brick that takes XATTROP
 * KB_XOP_ADD_LOCKED (it says so to KB_CTL_FEATURES) and applies such a
 * pre-op only under one of them (else -ENOLCK). Without it, such a pre-op
 * is refused with -EINVAL, as storage/posix does.
 *
 * While "disconnected" (mock_down) every wind fails at once with -ENOTCONN,
 * like protocol/client; mock_down fails the held calls first, then sends
 * CHILD_DOWN, in that order, as protocol/client does.
 */
#ifndef KB_TEST_MOCK_CHILD_H
#define KB_TEST_MOCK_CHILD_H

#include "xlators/xlator.h"
#include "xlators/changelog.h"

struct event_base;

typedef struct mock_rec {
    kb_op_t op;
    kb_args_t args;          /* deep copy */
} mock_rec_t;

typedef struct mock_child {
    kb_xlator_t *xl;
    int id;
    bool connected;
    bool hold[KB_FOP_MAX];           /* queue this op's calls until mock_complete */
    int err[KB_FOP_MAX];             /* answer this op with this error ... */
    int err_count[KB_FOP_MAX];       /* ... this many times (-1: always) */
    uint32_t rflags;                 /* added to every reply */
    uint32_t rflags_once;            /* added to the next reply only */
    uint64_t size;                   /* file size in attrs */
    mock_rec_t *rec;
    size_t nrec, caprec;
    kb_call_t **held;
    size_t nheld, capheld;
    struct mock_cl { kb_gfid_t gfid; kb_cl_matrix_t m; } *cls;
    size_t ncls;
    struct mock_ent { char *name; kb_gfid_t gfid; uint32_t mode; } *ents;
    size_t nents;
    uint64_t next_fd;
    bool xop_locked;                 /* takes KB_XOP_ADD_LOCKED (set before mock_up) */
    bool local;                      /* answers KB_CTL_LOCAL true (set before mock_up) */
    struct mock_lk { kb_gfid_t gfid; kb_cl_cond_t c; } *lks;   /* locks held */
    size_t nlks;
} mock_child_t;

extern const kb_xlator_type_t mock_xl_type;

/* A call's reply as a kb_wind callback collects it (mock_res_cbk, with the
 * mock_res_t as cookie): n counts completions, which must end at exactly
 * 1; r is a deep copy of the last reply (kb_reply_clear it). */
typedef struct mock_res {
    int n;
    kb_reply_t r;
} mock_res_t;
void mock_res_cbk(void *cookie, const kb_reply_t *r);

/* A graph: TOP_TYPE over N mocks named c0..c{N-1}; OPTS are key, value
 * pairs for the top, NULL-terminated. Initialised on BASE; mocks start
 * disconnected (call mock_up). Freed by kb_graph_fini. */
kb_graph_t *mock_graph_new(const kb_xlator_type_t *top_type, int n, const char *const *opts,
                           struct event_base *base);
mock_child_t *mock_of(kb_xlator_t *xl);

/* Parse VOLFILE, in which stanzas may use test types (not in the registry):
 * "type test/mock" (mock_xl_type) and "type test/top" (a top with no ops of
 * its own, for graphs where tests wind into several translators), then init
 * on BASE. Other types come from the registry. NULL with a reason in err. */
kb_graph_t *mock_graph_parse(const char *volfile, struct event_base *base, char *err, size_t errlen);

void mock_up(mock_child_t *m);
void mock_down(mock_child_t *m);
void mock_fail(mock_child_t *m, kb_op_t op, int err, int count);

size_t mock_nheld(const mock_child_t *m);
kb_op_t mock_held_op(const mock_child_t *m, size_t i);
/* Answer held call I (0 = oldest): ERR 0 = the normal answer. */
void mock_complete(mock_child_t *m, size_t i, int err);
/* Answer every held call, oldest first or newest first. Returns how many. */
size_t mock_complete_all(mock_child_t *m, bool newest_first);

int mock_count(const mock_child_t *m, kb_op_t op);
/* XATTROPs recorded with args.flags == FLAGS (KB_XOP_ADD / KB_XOP_GET). */
int mock_count_xop(const mock_child_t *m, uint32_t flags);
/* INODELK / ENTRYLK recorded that lock (not unlock). */
int mock_count_locks(const mock_child_t *m);
const kb_args_t *mock_last(const mock_child_t *m, kb_op_t op);   /* NULL if none */
void mock_forget(mock_child_t *m);                                /* clear the record */

kb_cl_matrix_t *mock_cl(mock_child_t *m, const kb_gfid_t *g);     /* created zero */
void mock_add_entry(mock_child_t *m, const char *name, const kb_gfid_t *g, uint32_t mode);

#endif
