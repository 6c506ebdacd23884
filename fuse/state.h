/*
 * state.h — what outlives kembar-fuse's serving process (issue 15): the
 * shared state its supervisor keeps in a memfd, in one format every serving
 * process of a mount reads and writes, whichever binary it runs.
 *
 * Who holds what (fuse/super.c): the supervisor creates the memfd at mount
 * time, fills the header (layout, instance id, gfid key) and hands the fd to
 * each serving process it starts. The serving process maps it and keeps it
 * current as it goes, with plain stores into the mapping: no syscall on any
 * path, and nothing is lost when it is killed (the pages belong to the memfd,
 * not to the process). A new serving process reads it all back
 * (fuse/handover.c). Only one serving process writes at a time: the
 * supervisor starts the next one's takeover after the previous one is gone.
 *
 * Layout, format version 1 (host byte order: the memfd never leaves the
 * host; offsets from the start of the memfd; sizes checked below):
 *
 *   header    at 0, 4096 bytes            kbf_st_hdr_t
 *   nodes     at node_off, node_cap x 64  kbf_st_node_t: FUSE node id <-> gfid, lookup counts
 *   handles   at handle_off, x 2920       kbf_st_handle_t: libkembar handles (what fi->fh holds)
 *   journal   at journal_off, journal_size  buffered writes acknowledged early (kbf_st_jent_t)
 *
 * The memfd is sparse: untouched records cost no memory.
 *
 * Crash consistency: every record is written BEFORE the reply that tells the
 * kernel about it goes out, and cleared only once the kernel can no longer
 * name it, so what the kernel holds is always in the state (the state may
 * hold more: a lookup count whose reply never went out is a leak of one
 * entry, never a node id the kernel names and we forgot).
 *  - A node record is live iff nlookup > 0; its gfid is stored before its
 *    count, with release order. The count itself is one aligned 64-bit store.
 *  - A handle record has two versions; a change writes the one not current
 *    and then flips `cur` (release): a process killed mid-write leaves the
 *    previous version, which is what the kernel was last told.
 *  - A journal entry is published by its `state` (release) after its bytes.
 *
 * Compatibility: a serving process refuses a header whose magic or version it
 * does not know (the supervisor then keeps the old serving process, or, after
 * a crash, ends the mount as before issue 15). A later version may only add
 * fields in the header's reserved tail and new regions; records keep their
 * layout within a version.
 */
#ifndef KB_FUSE_STATE_H
#define KB_FUSE_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/gfid.h"

#define KBF_ST_MAGIC 0x3174617473666b62ull   /* "kbfstat1" */
#define KBF_ST_VERSION 1u
#define KBF_ST_HDR_SIZE 4096u
#define KBF_ST_INIT_MAX 128u                  /* bytes kept of the INIT request and of its reply */

/* Node ids: the root is FUSE_ROOT_ID (1); record i is node id i + KBF_NODE_BASE. */
#define KBF_NODE_BASE 2u

/* What kbf_init chose at the real INIT (fuse_conn_info), chosen again at a
 * takeover: the kernel keeps what it was told the first time. */
typedef struct kbf_st_conn {
    uint32_t want;                  /*  0 FUSE_CAP_* */
    uint32_t max_write;             /*  4 */
    uint32_t max_readahead;         /*  8 */
    uint32_t max_background;        /* 12 */
    uint32_t congestion_threshold;  /* 16 */
    uint32_t time_gran;             /* 20 */
    uint32_t killpriv_v2;           /* 24 FUSE_HANDLE_KILLPRIV_V2 added to the reply (fuse/rawio.c) */
    uint32_t proto_minor;           /* 28 the kernel's minor, for the log */
} kbf_st_conn_t;                    /* 32 */
_Static_assert(sizeof(kbf_st_conn_t) == 32, "kbf_st_conn_t layout");

typedef struct kbf_st_hdr {
    uint64_t magic;                 /*    0 KBF_ST_MAGIC */
    uint32_t version;               /*    8 KBF_ST_VERSION */
    uint32_t hdr_size;              /*   12 KBF_ST_HDR_SIZE */
    uint64_t total_size;            /*   16 bytes of the memfd */
    uint64_t node_off;              /*   24 */
    uint32_t node_cap;              /*   32 records */
    uint32_t node_rec;              /*   36 bytes per record (64) */
    uint64_t handle_off;            /*   40 */
    uint32_t handle_cap;            /*   48 records */
    uint32_t handle_rec;            /*   52 bytes per record */
    uint64_t journal_off;           /*   56 */
    uint64_t journal_size;          /*   64 bytes */
    uint8_t instance[16];           /*   72 client instance id (KB_INSTANCE_ID) */
    uint8_t salt[16];               /*   88 key of the gfids of entry-creating requests */
    uint32_t node_hwm;              /*  104 (atomic) node records ever used: 0 .. hwm-1 */
    uint32_t handle_hwm;            /*  108 (atomic) handle records ever used */
    uint32_t generation;            /*  112 serving processes started (the supervisor counts) */
    uint32_t init_done;             /*  116 (atomic) 1: INIT answered; init_* and conn are valid */
    uint32_t init_in_len;           /*  120 */
    uint32_t init_out_len;          /*  124 */
    uint8_t init_in[KBF_ST_INIT_MAX];  /* 128 the kernel's INIT (fuse_in_header + fuse_init_in) */
    uint8_t init_out[KBF_ST_INIT_MAX]; /* 256 our reply as written (fuse_out_header + fuse_init_out) */
    kbf_st_conn_t conn;             /*  384 */
    uint64_t jhead;                 /*  416 (atomic) journal: bytes ever appended */
    uint64_t jtail;                 /*  424 (atomic) journal: bytes ever reclaimed */
    uint64_t jseq;                  /*  432 journal: the last entry's sequence number */
    uint8_t reserved[KBF_ST_HDR_SIZE - 440];   /* 440 zero; later versions add fields here */
} kbf_st_hdr_t;
_Static_assert(sizeof(kbf_st_hdr_t) == KBF_ST_HDR_SIZE, "kbf_st_hdr_t layout");
_Static_assert(offsetof(kbf_st_hdr_t, conn) == 384, "kbf_st_hdr_t layout");
_Static_assert(offsetof(kbf_st_hdr_t, jseq) == 432, "kbf_st_hdr_t layout");

/* One inode the kernel knows (fuse/inode.c). */
#define KBF_NODE_SXID 1u            /* the last mode seen had setuid or setgid */
#define KBF_NODE_CVER 2u            /* size..ctime_nsec hold a content version */
typedef struct kbf_st_node {
    uint8_t gfid[16];               /*  0 */
    uint64_t nlookup;               /* 16 (atomic) the kernel's lookup count; 0: free */
    uint32_t next;                  /* 24 hash chain of the process using it (index + 1; 0: end) */
    uint32_t flags;                 /* 28 (atomic) KBF_NODE_* */
    uint64_t size;                  /* 32 content version at the last open (keep_cache) */
    int64_t mtime_sec;              /* 40 */
    int64_t ctime_sec;              /* 48 */
    uint32_t mtime_nsec;            /* 56 */
    uint32_t ctime_nsec;            /* 60 */
} kbf_st_node_t;
_Static_assert(sizeof(kbf_st_node_t) == 64, "kbf_st_node_t layout");

/* One granted lock request of a handle (kb_lkreq_t). */
typedef struct kbf_st_lock {
    uint64_t owner;                 /*  0 */
    uint64_t start;                 /*  8 */
    uint64_t len;                   /* 16 */
    uint32_t type;                  /* 24 KB_LK_* */
    uint32_t pid;                   /* 28 */
    uint32_t flock;                 /* 32 */
    uint32_t pad;                   /* 36 */
} kbf_st_lock_t;
_Static_assert(sizeof(kbf_st_lock_t) == 40, "kbf_st_lock_t layout");

#define KBF_ST_OWNERS 16            /* lock owners kept per handle */
#define KBF_ST_LOCKS 32             /* lock requests kept per handle (qemu takes a handful) */

/* One version of a handle record. */
typedef struct kbf_st_hver {
    uint64_t value;                 /*    0 the handle (fi->fh); 0: no handle */
    uint8_t gfid[16];               /*    8 */
    uint32_t flags;                 /*   24 open flags */
    uint8_t is_dir;                 /*   28 */
    uint8_t incomplete;             /*   29 more owners or requests than fit: locks lost at a takeover */
    uint8_t nowners;                /*   30 */
    uint8_t nlocks;                 /*   31 */
    int32_t lk_lost;                /*   32 0, or -errno: the handle fails its calls */
    uint32_t owner_process;         /*   36 bit i: owners[i] was seen in a FLUSH (a POSIX owner) */
    uint64_t owners[KBF_ST_OWNERS]; /*   40 */
    kbf_st_lock_t locks[KBF_ST_LOCKS];  /* 168 */
    uint64_t opener;                /* 1448 unique of the OPEN/CREATE/OPENDIR whose reply carries it */
} kbf_st_hver_t;
_Static_assert(sizeof(kbf_st_hver_t) == 1456, "kbf_st_hver_t layout");

typedef struct kbf_st_handle {
    uint32_t cur;                   /*    0 (atomic) which of v[] is current */
    uint32_t pad;                   /*    4 */
    kbf_st_hver_t v[2];             /*    8 */
} kbf_st_handle_t;
_Static_assert(sizeof(kbf_st_handle_t) == 2920, "kbf_st_handle_t layout");

/* One buffered write acknowledged before it reached the bricks
 * (fuse/journal.c), followed by its payload; entries are 64-byte aligned. */
#define KBF_JENT_LIVE 1u            /* state: to be written again at a takeover */
#define KBF_JENT_DONE 2u            /* state: reached the bricks (or failed there, reported) */
#define KBF_JENT_WRAP 3u            /* state: the rest of the ring up to its end is unused */
typedef struct kbf_st_jent {
    uint32_t state;                 /*  0 (atomic) 0: not published */
    uint32_t len;                   /*  4 payload bytes */
    uint64_t seq;                   /*  8 */
    uint64_t handle;                /* 16 the handle it was written through */
    uint64_t off;                   /* 24 file offset */
    uint8_t gfid[16];               /* 32 */
    uint64_t pad[2];                /* 48 */
} kbf_st_jent_t;
_Static_assert(sizeof(kbf_st_jent_t) == 64, "kbf_st_jent_t layout");

/* Capacities of a new state (a memfd is sparse: only what is used costs). */
typedef struct kbf_st_geom {
    uint32_t node_cap;
    uint32_t handle_cap;
    uint64_t journal_size;
} kbf_st_geom_t;
#define KBF_ST_NODE_CAP (4u << 20)      /* 4 Mi inodes the kernel may hold: 256 MiB of address space */
#define KBF_ST_HANDLE_CAP 16384u        /* open files and directories */
#define KBF_ST_JOURNAL_SIZE (32ull << 20)

/* A mapped state. */
typedef struct kbf_state {
    int fd;                         /* the memfd (owned), -1 for an anonymous one */
    kbf_st_hdr_t *hdr;              /* the whole mapping starts here */
    size_t size;
    kbf_st_node_t *nodes;
    kbf_st_handle_t *handles;
    uint8_t *journal;
} kbf_state_t;

/* Create a new state in a memfd (ANON: in anonymous shared memory, for tests
 * and mounts that cannot be handed over) and fill its header: layout, a new
 * salt, INSTANCE. 0 or -errno. */
int kbf_state_create(kbf_state_t *st, const kbf_st_geom_t *g, const uint8_t instance[16], bool anon);
/* Map the state in memfd FD (taken over: closed by kbf_state_unmap). 0, or
 * -EPROTO with a reason in why when the header is not one this binary knows. */
int kbf_state_map(kbf_state_t *st, int fd, char *why, size_t whylen);
void kbf_state_unmap(kbf_state_t *st);

/* ---- handle records (what libkembar's handles are, client/takeover.h) ---- */

typedef struct kbc_handle_info kbc_handle_info_t;
/* Record H at its slot (index = low 32 bits of its value - 1). false when the
 * slot is beyond the table (the handle will not survive a takeover). */
bool kbf_state_handle_put(kbf_state_t *st, const kbc_handle_info_t *h);
/* The handle VALUE goes to the kernel in the reply to request UNIQUE: a
 * takeover that sees UNIQUE again knows the kernel never got it. */
void kbf_state_handle_opener(kbf_state_t *st, uint64_t value, uint64_t unique);
/* Forget the handle VALUE (released). */
void kbf_state_handle_clear(kbf_state_t *st, uint64_t value);
/* The current version of record I, or NULL when it holds no handle. */
const kbf_st_hver_t *kbf_state_handle_get(const kbf_state_t *st, uint32_t i);

/* The gfid an entry-creating request chooses (mkdir, create, ...): derived
 * from the mount's salt and the request's unique, so the same request resent
 * to another serving process chooses the same one and finds its own work
 * (fuse/resend.c). A valid random-looking (version 4) uuid. */
void kbf_state_gfid_for(const uint8_t salt[16], uint64_t unique, kb_gfid_t *out);

#endif
