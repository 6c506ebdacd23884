/*
 * policy.h — the pure decisions of cluster/replicate (DESIGN §5-6).
 *
 * Everything replicate (and heal, issue 5) decides about a replica set is a
 * function of small facts: which children are up, what each one replied,
 * what each copy's changelog matrix says (changelog.h). These functions take
 * those facts and return the decision; they do no I/O, keep no state and
 * allocate nothing, so they are unit-tested over tables
 * (tests/unit/xlators/cluster/replicate/policy_test.c) and shared by the
 * translator and heal.
 *
 * Vocabulary
 *   child i     i-th subvolume of replicate = replica i = changelog row 1+i.
 *   mask        bit i = child i (repl_mask_t; KB_CL_MAX_REPLICA <= 32).
 *   arbiter     when configured, the LAST child: it holds names, metadata
 *               and changelog marks but no file data. It counts toward
 *               quorum and its accusations count, but it is never a read
 *               source nor a data-heal source.
 *   candidate   a copy that may serve column COL: every child, except the
 *               arbiter for KB_CL_DATA.
 *   blame       copy j blames copy i (i != j) in column COL when
 *               M_j[1+i][COL] > 0: j holds modifications i missed.
 *   source      a candidate whose matrix we know and that no known copy
 *               blames. Reads go to sources; heal copies from them.
 *   sink        a copy blamed by at least one known copy.
 *   split-brain no candidate is a source although every candidate's matrix
 *               is known (each copy blames another). When a candidate is
 *               unknown (down) it may be the good one: that is "no source
 *               up" (-ENOTCONN), not split-brain.
 */
#ifndef KB_REPL_POLICY_H
#define KB_REPL_POLICY_H

#include <stdbool.h>
#include <stdint.h>
#include "xlators/changelog.h"
#include "lib/gfid.h"

typedef uint32_t repl_mask_t;
_Static_assert(KB_CL_MAX_REPLICA <= 32, "a replica set fits a 32-bit mask");
#define REPL_BIT(i) ((repl_mask_t)1u << (i))

enum repl_quorum_type { REPL_Q_NONE = 0, REPL_Q_AUTO = 1, REPL_Q_FIXED = 2 };

/* The shape of one replica set. */
typedef struct repl_cfg {
    int n;             /* children, arbiter included: 1..KB_CL_MAX_REPLICA */
    int arbiter;       /* index of the arbiter (always n-1) or -1 */
    int quorum_type;   /* enum repl_quorum_type */
    int quorum_count;  /* REPL_Q_FIXED: successes needed (clamped to 1..n) */
} repl_cfg_t;

/* ---- masks ---- */
static inline int repl_count(repl_mask_t m) { return __builtin_popcount(m); }
static inline int repl_first(repl_mask_t m) { return m ? __builtin_ctz(m) : -1; }
static inline repl_mask_t repl_all(const repl_cfg_t *c) {
    return c->n >= 32 ? ~(repl_mask_t)0 : REPL_BIT(c->n) - 1;
}
/* Children that hold file data: all but the arbiter. */
static inline repl_mask_t repl_data_children(const repl_cfg_t *c) {
    return repl_all(c) & (c->arbiter >= 0 ? ~REPL_BIT(c->arbiter) : ~(repl_mask_t)0);
}
/* Children that can serve / source column COL (KB_CL_DATA excludes the arbiter). */
static inline repl_mask_t repl_candidates(const repl_cfg_t *c, int col) {
    return col == KB_CL_DATA ? repl_data_children(c) : repl_all(c);
}

/* ---- quorum ----
 * Is a modification acknowledged by the children in OK enough?
 *   none   any one child.
 *   fixed  at least quorum_count children.
 *   auto   replica 1: the child; replica 2: both, or the first alone ("both
 *          or the first": two halves can never both accept writes, yet losing
 *          the second brick does not stop the volume); replica >= 3: a strict
 *          majority, or exactly half when that half includes child 0 (even
 *          counts). The arbiter is a child: it counts.
 * Checked before sending (with the up children: quorum already lost ->
 * -EROFS, nothing sent) and after (with the children that succeeded). */
bool repl_quorum_met(const repl_cfg_t *c, repl_mask_t ok);

/* ---- changelog analysis ---- */
typedef struct repl_blame {
    repl_mask_t have;        /* copies whose matrix is known */
    repl_mask_t sources;     /* candidates in have, blamed by no copy in have */
    repl_mask_t sinks;       /* copies blamed by some copy in have */
    repl_mask_t dirty;       /* copies in have whose dirty counter (row 0) > 0 */
    repl_mask_t blamers[KB_CL_MAX_REPLICA]; /* blamers[i]: copies in have that blame i */
    bool split_brain;        /* see the vocabulary above */
} repl_blame_t;

/* Analyse column COL of the matrices M[0..n-1] (only those in HAVE are read). */
void repl_blame_analyze(const repl_cfg_t *c, const kb_cl_matrix_t *m, repl_mask_t have,
                        int col, repl_blame_t *out);

/* Build changelog deltas (XATTROP KB_XOP_ADD): DIRTY is added to row 0 of
 * every column in COLS (bit 1<<KB_CL_*), and +1 to row 1+i of those columns
 * for every i in BLAME. Other cells are zero. */
void repl_cl_delta(kb_cl_matrix_t *d, uint32_t cols, int dirty, repl_mask_t blame);
#define REPL_COL(c) (1u << (c))

/* ---- gatekeeping a modification ----
 * May a modification of column COL start, given the children UP and what
 * we know of the object's copies (B, NULL if unknown)?
 *   0          go ahead;
 *   -EROFS     quorum is already lost with the children up (send nothing);
 *   -EIO       split-brain in COL: never write over it;
 *   -ENOTCONN  no source of COL is up (all up copies are sinks, e.g. the
 *              only data brick up is the one the arbiter blames): writing
 *              to the sinks would turn a pending heal into a split-brain. */
int repl_modify_check(const repl_cfg_t *c, int col, repl_mask_t up, const repl_blame_t *b);

/* ---- outcome of a modification fan-out ----
 * EXPECTED   children that should hold the change (the candidates of the
 *            op's column, i.e. the arbiter is not expected to hold data);
 * SENT       children it was sent to (subset of EXPECTED);
 * STATUS[i]  reply of child i, for i in SENT;
 * EXTRA_OK   children counted toward quorum without being sent the op (the
 *            arbiter of a data op, when it holds the lock and the pre-op).
 * Result:
 *   ok       children in SENT that succeeded;
 *   status   quorum met on ok|extra_ok: the reply of reply_idx (lowest in
 *            ok); else every sent child failed alike: that error; else,
 *            with successes short of quorum: the first real error (not a
 *            disconnect) or -EROFS; with no success at all: the first real
 *            error, or -ENOTCONN;
 *   blame    when some child applied the change: EXPECTED & ~ok (the
 *            survivors must mark them pending); 0 when nobody applied it;
 *   reply_idx child whose reply is returned (-1 when status is an error
 *            that is not a child's own reply). */
typedef struct repl_outcome {
    int status;
    int reply_idx;
    repl_mask_t ok;
    repl_mask_t blame;
} repl_outcome_t;

void repl_fanout_outcome(const repl_cfg_t *c, repl_mask_t expected, repl_mask_t sent,
                         const int32_t *status, repl_mask_t extra_ok, repl_outcome_t *out);

/* A child error that means "this child is gone", not "the op is refused". */
bool repl_err_is_disconnect(int err);

/* ---- reads ----
 * Readable children of COL: up, source, not the arbiter, not yet TRIED. */
repl_mask_t repl_readable(const repl_cfg_t *c, int col, repl_mask_t up, const repl_blame_t *b);
/* Pick one child of READABLE: mode 0 = the first, 1 = spread by HASH
 * (kb_gfid_hash) over the readable ones. -1 if READABLE is empty. */
int repl_read_pick(repl_mask_t readable, uint32_t hash, int mode);
/* Children every acknowledged modification was applied on: those that
 * every quorum includes (replica 2 with quorum auto: child 0, "both or the
 * first"; quorum fixed at n: all). A data read from one of them needs no
 * changelog check (read.c): no write that missed it was acknowledged. Holds
 * while every client of the set applies the same quorum to the same child
 * order, as the generated volfiles do. */
repl_mask_t repl_always_written(const repl_cfg_t *c);
/* Narrow READABLE to the copies a data read prefers: the LOCAL ones (on this
 * host) when there are any, and among several local ones those in NOCHECK
 * (repl_always_written). Copies of equal standing stay, for repl_read_pick
 * to spread over. */
repl_mask_t repl_read_prefer(repl_mask_t readable, repl_mask_t local, repl_mask_t nocheck);
/* Is a read error worth retrying on another copy? (disconnects, timeouts
 * and -EIO, which on a brick means its disk failed). */
bool repl_read_retryable(int err);
/* Nothing readable: -EIO for a known split-brain, else -ENOTCONN. */
int repl_unreadable_err(const repl_blame_t *b);

/* ---- named / nameless lookup merge ----
 * STATUS[i], GFID[i], TYPE[i] (S_IFMT bits) for each child in SENT.
 * PARENT: analysis of the parent directory's KB_CL_ENTRY column, NULL when
 * unknown (or for a nameless lookup).
 * Returns 0 (found: *found = children holding that same object), -ENOENT,
 * another common error, or -EIO when the copies disagree in a way that must
 * not be served: different gfids or types, or existence that differs while
 * the parent is in entry split-brain. When existence differs and PARENT is
 * NULL, returns -EAGAIN with *need_parent set: fetch the parent's changelog
 * and ask again. Otherwise the parent's sources decide; when no source
 * answered, the object is reported found (data is never hidden). */
int repl_lookup_merge(const repl_cfg_t *c, repl_mask_t sent, const int32_t *status,
                      const kb_gfid_t *gfid, const uint32_t *type, const repl_blame_t *parent,
                      repl_mask_t *found, bool *need_parent);

/* ---- favourite child (split-brain resolution by policy; heal) ----
 * Picks the copy to keep among CANDIDATES from their attributes:
 *   REPL_FAV_MTIME    the latest mtime, REPL_FAV_SIZE the biggest file,
 *   REPL_FAV_MAJORITY the copy whose (size, mtime) a strict majority of the
 *                     candidates share.
 * -1 when the policy is none or there is no unique winner (ties). */
enum repl_fav_policy { REPL_FAV_NONE = 0, REPL_FAV_MTIME, REPL_FAV_SIZE, REPL_FAV_MAJORITY };
typedef struct repl_fav_attr { uint64_t size; int64_t mtime_sec; uint32_t mtime_nsec; } repl_fav_attr_t;
int repl_favorite_child(int policy, repl_mask_t candidates, const repl_fav_attr_t *attr);

#endif
