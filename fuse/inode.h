/*
 * inode.h — kembar-fuse's inode table: gfid <-> FUSE node id (DESIGN §4).
 *
 * The kernel names an inode by a 64-bit node id that it holds a "lookup
 * count" on: +1 for every successful reply carrying an entry (lookup, mknod,
 * mkdir, symlink, link, create, each readdirplus entry), -N for every
 * forget(N). The table keeps one record per gfid the kernel knows, in an
 * array of fixed records (fuse/state.h kbf_st_node_t): node id = index +
 * KBF_NODE_BASE, so mapping a node id back to its gfid costs no lock and no
 * search, and the array can live in the mount's shared state, where the
 * next serving process finds every node id the kernel holds (issue 15). A
 * record is freed when its count drops to zero and reused later; the same
 * gfid looked up again gets a fresh record (and maybe another node id). The
 * root (kb_gfid_root) is node id 1 (FUSE_ROOT_ID) and lives as long as the
 * table; its counts are ignored.
 *
 * Why a node id can be read without a lock: the kernel never sends a request
 * for a node id after it forgot it, and never forgets it while a request on
 * it is in flight, so the record outlives every request that names it. The
 * gfid of a live record never changes.
 *
 * Thread-safe: one mutex guards the hash, the free list and every count.
 */
#ifndef KB_FUSE_INODE_H
#define KB_FUSE_INODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fuse/state.h"
#include "lib/gfid.h"

#define KBF_ROOT_ID 1

typedef struct kbf_itable kbf_itable_t;

/* A table of its own (records in private memory): tests, and mounts that
 * cannot be handed over. */
kbf_itable_t *kbf_itable_new(void);
/* A table over CAP shared records REC, of which *HWM were ever used (the
 * state's header keeps the count): the live ones (nlookup > 0) are taken
 * over as they are, node ids and counts, and the rest are free. */
kbf_itable_t *kbf_itable_open(kbf_st_node_t *rec, uint32_t cap, uint32_t *hwm);
void kbf_itable_free(kbf_itable_t *t);          /* the records stay where they are */

/* Take one kernel lookup reference on GFID (creating its entry) and return
 * its node id; 0 on allocation failure. Call it just BEFORE replying with
 * the entry; if the reply fails, undo it with kbf_itable_forget(id, 1). */
uint64_t kbf_itable_ref(kbf_itable_t *t, const kb_gfid_t *gfid);
/* Drop N lookup references (forget); the entry is freed at zero. */
void kbf_itable_forget(kbf_itable_t *t, uint64_t nodeid, uint64_t n);
/* The gfid of a live node id. */
const kb_gfid_t *kbf_itable_gfid(kbf_itable_t *t, uint64_t nodeid);

/*
 * Page-cache validation (keep_cache at open, fuse/file.c). A content
 * version is what a STAT taken at open says about the data: size, mtime and
 * ctime (nanoseconds; every change of the data moves ctime, which no user
 * can set back). Swap records NOW for NODEID (NULL: forget the record) and
 * compares it with the record it replaces: SAME means nothing changed the
 * file since the previous open's STAT. Any thread.
 */
typedef struct kbf_cver {
    uint64_t size;
    int64_t mtime_sec, ctime_sec;
    uint32_t mtime_nsec, ctime_nsec;
} kbf_cver_t;
enum kbf_cver_cmp { KBF_CVER_NONE, KBF_CVER_SAME, KBF_CVER_CHANGED };
enum kbf_cver_cmp kbf_itable_cver_swap(kbf_itable_t *t, uint64_t nodeid, const kbf_cver_t *now);

/*
 * Whether the last mode seen for NODEID (entry and attribute replies) had
 * setuid or setgid: a write that asks the bricks to clear them must then
 * drop the kernel's cached mode (fuse/file.c, KILLPRIV_V2). Any thread.
 */
void kbf_itable_note_mode(kbf_itable_t *t, uint64_t nodeid, uint32_t mode);
bool kbf_itable_sxid(kbf_itable_t *t, uint64_t nodeid);

/* For tests and the stats dump. */
size_t kbf_itable_count(kbf_itable_t *t);        /* live entries, root excluded */
uint64_t kbf_itable_nlookup(kbf_itable_t *t, const kb_gfid_t *gfid); /* 0 if absent */

#endif
