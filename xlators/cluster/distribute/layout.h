/*
 * layout.h — cluster/distribute's name hash and per-directory layouts
 * (DESIGN §7, STYLE 11). Pure arithmetic: no I/O, no allocation, so every
 * rule here is unit-tested alone
 * (tests/unit/xlators/cluster/distribute/layout_test.c).
 *
 * 1. The name hash (on-disk relevant: it decides which replica set holds a
 *    file, so changing it moves every file; a new one gets a new hash type).
 *
 *    DIST_HASH_KB1: FNV-1a 32 over the bytes of the entry name (offset basis
 *    2166136261, prime 16777619), then murmur3's fmix32 finalizer (xor-shift
 *    16, * 0x85ebca6b, xor-shift 13, * 0xc2b2ae35, xor-shift 16). FNV-1a alone
 *    leaves the high bits of names that differ in their last byte close
 *    together, and ranges split the space by its high bits; the finalizer
 *    spreads every input bit over all 32 output bits. Only the entry name is
 *    hashed, not the parent: the layout is per directory already.
 *
 * 2. A layout gives each replica set of a directory one contiguous, inclusive
 *    range [start, stop] of the 32-bit hash space, or nothing. A name belongs
 *    to the set whose range holds its hash. A layout is complete when the
 *    ranges cover 0..0xffffffff exactly once (no hole, no overlap). A set may
 *    hold no range (added after the directory was made, or being drained):
 *    it gets no new names in that directory until a fix-layout.
 *
 * 3. On disk each set's copy of a directory carries ITS OWN range in the
 *    xattr "trusted.kembar.layout" (KB_LAYOUT_XATTR, written through
 *    KB_IPC_LAYOUT_GET/SET, xlators/changelog.h). The whole layout is
 *    assembled from all sets; no set names another, so sets can be added or
 *    removed without rewriting names. Big-endian:
 *
 *    offset size
 *    0      4    magic    DIST_LAYOUT_MAGIC "KBLY"
 *    4      4    version  DIST_LAYOUT_VERSION (1)
 *    8      4    hash     DIST_HASH_KB1 (1)
 *    12     4    flags    DIST_LF_EMPTY: this set holds no range (start/stop 0)
 *    16     4    start    first hash of the range (inclusive)
 *    20     4    stop     last hash of the range (inclusive)
 *    24     4    nsets    sets the layout was computed over (diagnostic)
 *    28     4    epoch    layout generation: every copy written by one mkdir
 *                         or fix-layout carries the same value; a fix-layout
 *                         writes 1 + the highest epoch it read
 *    = 32 bytes (KB_LAYOUT_DISK_BYTES).
 *
 *    No xattr at all (DIST_RS_NONE) differs from DIST_LF_EMPTY
 *    (DIST_RS_EMPTY): a layout heal gives a range to the first, never to the
 *    second (a set being drained must stay empty).
 *
 * 4. Re-layout (fix-layout after add-brick / remove-brick, layout heal):
 *    the space is cut into equal chunks, one per active set (the first
 *    2^32 mod k chunks one larger), and chunks are given to sets greedily
 *    by the largest overlap with the set's old range, ties to the lower set
 *    then the lower chunk. A name moves only when its hash leaves its set's
 *    range. Going from k to k+1 sets moves about 1/(k+1) of the names for
 *    k <= 2 (the minimum); for larger k contiguous equal ranges cost a bit
 *    more than the minimum (3 -> 4: 1/3 instead of 1/4). Non-contiguous
 *    ranges would reach the minimum always, but need a variable-size format
 *    and make every lookup a search; rejected.
 *
 * 5. Migration marks (rebalance, migrate.c), in the mode bits of
 *    regular files because every reply carries them for free:
 *      DIST_MIG_BITS (S_ISGID | S_ISVTX) and no rwx bit: a migration TARGET
 *        under construction on the new set ("linkto"): invisible to lookup,
 *        readdir and ops by gfid.
 *      DIST_MIG_BITS plus the file's own rwx bits: a migration SOURCE in its
 *        final phase: a client whose write (truncate, fallocate, setattr)
 *        reply shows it waits for the migration lock, then sends the op again
 *        to wherever the file now lives.
 *    The migration lock is an INODELK in domain DIST_MIG_DOMAIN over the
 *    whole file, held (write) by the migrator on both copies from before the
 *    source is marked until the target is the file. Files whose own mode
 *    already has both bits are never migrated. The source is renamed to
 *    DIST_MIG_PREFIX<gfid> in its directory just before the target becomes
 *    visible, and unlinked after; readdir hides that name.
 */
#ifndef KB_DIST_LAYOUT_H
#define KB_DIST_LAYOUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include "xlators/changelog.h"
#include "xlators/xlator.h"

#define DIST_LAYOUT_MAGIC   0x4b424c59u /* "KBLY" */
#define DIST_LAYOUT_VERSION 1u
#define DIST_HASH_KB1       1u
#define DIST_LF_EMPTY       1u
#define DIST_MAX_SETS       KB_MAX_CHILDREN
#define DIST_MIG_BITS       (S_ISGID | S_ISVTX)
#define DIST_MIG_DOMAIN     "kembar.dist.migrate"
#define DIST_MIG_PREFIX     ".kembar-mig-"
_Static_assert(KB_LAYOUT_DISK_BYTES == 32, "distribute layout xattr size is on disk");

enum dist_range_state {
    DIST_RS_NONE = 0,   /* no layout stored (or unknown: the set did not answer) */
    DIST_RS_EMPTY,      /* stored, explicitly holds nothing */
    DIST_RS_RANGE,      /* holds [start, stop] */
};

typedef struct dist_range {
    uint32_t start, stop;   /* inclusive; valid when state == DIST_RS_RANGE */
    uint8_t state;
} dist_range_t;

typedef struct dist_layout {
    int n;                          /* number of sets */
    uint32_t epoch;                 /* highest epoch read / the one to write */
    dist_range_t r[DIST_MAX_SETS];
} dist_layout_t;

/* Layout anomalies (dist_layout_check). */
enum { DIST_LA_HOLES = 1, DIST_LA_OVERLAPS = 2 };

uint32_t dist_hash_name(const char *name, size_t len);
static inline uint32_t dist_hash_str(const char *name) { return dist_hash_name(name, strlen(name)); }

/* Every range of L to NONE, L->n = N. */
void dist_layout_clear(dist_layout_t *l, int n);
/* Equal chunks over the sets of ACTIVE (bit i = set i), in index order; the
 * other sets get EMPTY. ACTIVE == 0 leaves every set EMPTY. */
void dist_layout_even(dist_layout_t *l, int n, uint64_t active, uint32_t epoch);
/* 0 when the ranges cover the space exactly once, else DIST_LA_* bits. */
int dist_layout_check(const dist_layout_t *l);
/* Set whose range holds HASH (the lowest one on overlap), -1 in a hole. */
int dist_layout_search(const dist_layout_t *l, uint32_t hash);
/* New layout over ACTIVE with equal shares, keeping as many hashes on their
 * old set as the greedy assignment of section 4 can; OLD may be anything
 * (holes, overlaps, a different n). OUT may not alias OLD. */
void dist_layout_rebuild(const dist_layout_t *old, int n, uint64_t active, uint32_t epoch,
                         dist_layout_t *out);
/* How many hashes set I holds in L (0 .. 2^32). */
uint64_t dist_layout_share(const dist_layout_t *l, int i);
/* Sets with a stored range or an explicit EMPTY (bit i = set i). */
uint64_t dist_layout_stored_mask(const dist_layout_t *l);

/* Set I's entry of L in the on-disk format (L->n is written as nsets). A
 * NONE range is written as EMPTY. */
void dist_layout_encode(const dist_layout_t *l, int i, uint8_t out[KB_LAYOUT_DISK_BYTES]);
/* Read one set's value into L->r[I] (and raise L->epoch). LEN 0 = no xattr:
 * NONE. Returns 0, or -EINVAL (wrong size, magic, version, hash type, or a
 * range with start > stop), leaving r[I] NONE. */
int dist_layout_decode(dist_layout_t *l, int i, const uint8_t *in, size_t len);

#endif
