/*
 * changelog.h — replicate's persistent marks on the bricks (DESIGN §4-6,
 * STYLE 11). One header for every on-disk format replicate and heal rely on.
 *
 * 1. The changelog xattr  "trusted.kembar.cl"  (on every file and directory)
 *
 *    A matrix of big-endian int32 counters, KB_CL_ROWS rows x 3 columns:
 *      row 0           "dirty": a modification is in flight on THIS copy
 *      row 1 + i       "pending against replica i": this copy holds
 *                      modifications that replica i (index in its replica
 *                      set, 0-based) missed — i.e. this copy BLAMES replica i
 *      column          KB_CL_DATA, KB_CL_META, KB_CL_ENTRY
 *
 *    offset size
 *    0      4    magic   KB_CL_MAGIC (BE)
 *    4      4    version KB_CL_VERSION (BE)
 *    8      204  int32[17][3] counters (BE)
 *    = 212 bytes.  An absent xattr reads as all zeros.
 *
 *    Changed only by the XATTROP fop (never by SETXATTR; clients can neither
 *    read nor set trusted.kembar.* through the xattr fops):
 *      args.gfid  = the object
 *      args.flags = KB_XOP_ADD (add args.data to the counters, atomically with
 *                   respect to other XATTROPs on the brick) or KB_XOP_GET
 *      args.data  = the deltas: int32[KB_CL_ROWS][3] big-endian, 204 bytes
 *      reply.data = the counters after the op, same layout (204 bytes)
 *    A counter never goes below 0 (clamped).
 *
 * 2. The index  "<brick>/.kembar/index/<gfid-string>"  (empty files)
 *
 *    The brick keeps an entry for every object whose counters are not all
 *    zero after an XATTROP (dirty or pending), and removes it when they all
 *    return to zero, so heal finds its work without crawling the tree.
 *    Listed with IPC KB_IPC_INDEX_LIST.
 *
 * 3. The dirty-region map  "<brick>/.kembar/regions/<gfid-string>"
 *
 *    Which byte ranges of a file were modified while a replica was absent.
 *    A WRITE/TRUNCATE/FALLOCATE carrying KB_WF_TRACK_REGIONS makes the brick
 *    set the bits of every region the op touches (for TRUNCATE: from the new
 *    size to the old size when shrinking, old size to new when growing),
 *    durably (written and fdatasync'ed) BEFORE the op itself runs. A bit that
 *    is already set costs nothing, so only the first write into a region pays.
 *
 *    offset size
 *    0      4    magic       KB_RM_MAGIC (LE)
 *    4      4    version     KB_RM_VERSION (LE)
 *    8      4    granularity bytes per bit (LE) = KB_RM_GRANULARITY
 *    12     4    reserved    0
 *    16     ...  bitmap, bit r (byte r/8, bit r%8) = region [r*g, (r+1)*g)
 *    The file grows as needed; missing bytes read as 0.
 *
 *    IPC KB_IPC_REGIONS_GET returns the whole file (reply.data; an empty
 *    reply when there is none). KB_IPC_REGIONS_CLEAR takes a bitmap in
 *    args.data (same layout, header included) and clears exactly those bits
 *    (bits set since, by writes after heal read the map, stay set); the file
 *    is removed when no bit remains.
 *
 * Arithmetic: 64 KiB regions -> a 1 TiB image needs a 2 MiB map; a 1 GiB one
 * 2 KiB. 16 MiB of random 64 KiB writes touch at most 512 regions (32 MiB
 * when every write straddles two), so heal moves ~the dirty bytes. 1 MiB
 * regions were rejected: random small writes would heal 16x the data.
 */
#ifndef KB_CHANGELOG_H
#define KB_CHANGELOG_H

#include <stddef.h>
#include <stdint.h>

#define KB_CL_XATTR     "trusted.kembar.cl"
#define KB_CL_MAGIC     0x4b42434cu  /* "KBCL" */
#define KB_CL_VERSION   1u
#define KB_CL_MAX_REPLICA 16
#define KB_CL_ROWS      (1 + KB_CL_MAX_REPLICA)
#define KB_CL_DIRTY_ROW 0
enum { KB_CL_DATA = 0, KB_CL_META = 1, KB_CL_ENTRY = 2, KB_CL_COLS = 3 };
#define KB_CL_MATRIX_BYTES (KB_CL_ROWS * KB_CL_COLS * 4)   /* 204 */
#define KB_CL_DISK_BYTES   (8 + KB_CL_MATRIX_BYTES)        /* 212 */
_Static_assert(KB_CL_MATRIX_BYTES == 204, "changelog matrix size is on disk");

typedef struct kb_cl_matrix { int32_t v[KB_CL_ROWS][KB_CL_COLS]; } kb_cl_matrix_t; /* host order */

#define KB_RM_MAGIC       0x4d52424bu /* "KBRM" */
#define KB_RM_VERSION     1u
#define KB_RM_GRANULARITY (64u * 1024)
#define KB_RM_HDR_BYTES   16

/* IPC codes (args.flags of the IPC fop). */
enum kb_ipc_code {
    KB_IPC_INDEX_LIST = 1,     /* reply.data: n x 16-byte gfids, starting at args.off
                                  (an index into the listing), at most args.size entries;
                                  reply.off = total entries */
    KB_IPC_REGIONS_GET = 2,    /* args.gfid -> reply.data = the map file (maybe empty) */
    KB_IPC_REGIONS_CLEAR = 3,  /* args.gfid, args.data = bits to clear */
    KB_IPC_GFID_PATH = 4,      /* args.gfid -> reply.data = path from the brick root (for heal info) */
    KB_IPC_BRICK_INFO = 5,     /* reply.data = text "key=value\n" lines: volume-id, brick-id, ... */
    /* cluster/distribute's per-directory layout (section 4 below). */
    KB_IPC_LAYOUT_GET = 6,     /* args.gfid = a directory -> reply.data = its KB_LAYOUT_XATTR value
                                  as stored; status 0 with empty reply.data when it has none;
                                  -ENOENT no such object, -ENOTDIR not a directory */
    KB_IPC_LAYOUT_SET = 7,     /* args.gfid = a directory, args.data = the new value, exactly
                                  KB_LAYOUT_DISK_BYTES (else -EINVAL), stored as is in
                                  KB_LAYOUT_XATTR, replacing any previous value */
    /* Rebalance, answered by cluster/distribute itself (never reach a brick);
     * wind them to the distribute translator of a client graph. */
    KB_IPC_DIST_FIX_LAYOUT = 8, /* args.gfid = a directory (looked up first, so it exists
                                   on every set), args.size = mask of sets to drain (bit i =
                                   set i gets no range; 0 = none): re-lay it out over the
                                   other sets keeping names in place; reply.off = 1 when the
                                   layout changed. -ENOTCONN unless every set is up */
    KB_IPC_DIST_MIGRATE = 9,    /* args.gfid = parent directory, args.name = entry: move a
                                   regular file that is not on its hashed set there, online
                                   (xlators/cluster/distribute/migrate.c); reply.off = bytes
                                   copied (0: nothing to do). -EMLINK hard links, -EBUSY
                                   marked file, left in place */
};

/*
 * 4. The distribute layout  "trusted.kembar.layout"  (on every directory, on
 *    every replica set's copy; written and read only through the two IPCs
 *    above, never through the xattr fops)
 *
 *    KB_LAYOUT_DISK_BYTES (32) bytes; the brick treats them as opaque. The
 *    format (magic, version, hash type, this set's hash range) is described
 *    in xlators/cluster/distribute/layout.h, which owns it.
 */
#define KB_LAYOUT_XATTR      "trusted.kembar.layout"
#define KB_LAYOUT_DISK_BYTES 32

/* Pack/unpack helpers (xlators/changelog.c). */
void kb_cl_encode(const kb_cl_matrix_t *m, uint8_t out[KB_CL_MATRIX_BYTES]);
void kb_cl_decode(const uint8_t in[KB_CL_MATRIX_BYTES], kb_cl_matrix_t *m);

/*
 * 5. XATTROP under a lock  (args.flags = KB_XOP_ADD_LOCKED, xlators/fop.h)
 *
 *    Replicate sends a transaction's non-blocking lock and its pre-op
 *    together, on the same connection, in that order; the brick applies the
 *    pre-op only if the lock was granted (the brick's graph handles one
 *    connection's calls in order, and a non-blocking lock is answered at
 *    once), so no mark is ever taken without the lock. args.data = the 204
 *    bytes of deltas, then the lock the caller must hold:
 *      u8    kind     KB_CL_COND_INODELK / KB_CL_COND_ENTRYLK
 *      u64   owner    INODELK: its lock.owner; ENTRYLK: the caller's cred.lk_owner
 *      blob  domain   the lock's domain (args.name of the lock call), 1..63 bytes
 *      blob  base     ENTRYLK: the locked basename (args.name2), 1..255 bytes;
 *                     INODELK: empty
 *    (blob = u32 length + bytes, lib/codec.h). The holder is the caller's
 *    connection (cred.client_id) with that owner, holding a granted lock of
 *    that kind on args.gfid in that domain (ENTRYLK: on that basename).
 *    A mark the caller cannot take back under the lock (its reply was lost:
 *    a timeout, or the connection went) stays: an extra dirty mark, which
 *    heal resolves by comparing the copies. Never a missing one.
 */
enum { KB_CL_COND_INODELK = 0, KB_CL_COND_ENTRYLK = 1 };
#define KB_CL_COND_DOMAIN_MAX 63
#define KB_CL_COND_BASE_MAX 255
typedef struct kb_cl_cond {
    uint8_t kind;
    uint64_t owner;
    char domain[KB_CL_COND_DOMAIN_MAX + 1];
    char base[KB_CL_COND_BASE_MAX + 1];    /* "" for INODELK */
} kb_cl_cond_t;
/* The payload of a KB_XOP_ADD_LOCKED: DELTA, then C. NULL on ENOMEM or a
 * name too long for the format (then: lock first, plain KB_XOP_ADD). */
struct kb_buf *kb_cl_cond_payload(const kb_cl_matrix_t *delta, const kb_cl_cond_t *c);
/* The condition of a KB_XOP_ADD_LOCKED payload (its deltas are its first
 * KB_CL_MATRIX_BYTES, as in a KB_XOP_ADD). 0, or -EINVAL for anything
 * malformed (short, trailing bytes, bad kind, a name empty, too long or
 * holding a NUL, a basename on an INODELK). */
int kb_cl_cond_parse(const void *data, size_t len, kb_cl_cond_t *c);

#endif
