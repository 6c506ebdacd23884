/*
 * heal_internal.h — self-heal of cluster/replicate (DESIGN §6, heal.h),
 * private to heal*.c.
 *
 * Files
 *   heal.c        the daemon: sweeps of the index, heal full's
 *                 crawl, the queue and its parallelism, timers,
 *                 stats and the KB_CTL_HEAL_* codes
 *   heal_obj.c    one object: survey, plan (who heals whom),
 *                 clearing of the marks, the kinds in order
 *   heal_util.c   the async building blocks below (deferred
 *                 work, call batches, lock sets, directory
 *                 listings)
 *   heal_entry.c  entry heal (names, by gfid)
 *   heal_meta.c   metadata heal
 *   heal_data.c   data heal (region maps, checksums, holes)
 *
 * Threading: the graph's loop thread only, like the rest of replicate.
 *
 * Control flow: every step winds a batch of calls to children (hb_*) and
 * continues when all have answered — always from the loop (heal_later),
 * never inside the wind, so a brick that answers synchronously cannot make
 * a long loop (a directory of 100,000 names, 1,000 chunks) recurse.
 *
 * Heal talks to the children directly (never through replicate's own fops):
 * it must see every copy as it is, including the ones replicate would not
 * read. It orders itself with writers through the same lock domains
 * (replicate.h); two healers of one object (two nodes' daemons, a sweep and
 * a resolve) exclude each other with a lock in HEAL_DOM, held for the
 * whole heal of the object.
 *
 * Teardown: repl_heal_fini with calls in flight marks the state dead; the
 * last reply frees it (batches and objects are all listed in heal_t).
 */
#ifndef KB_REPLICATE_HEAL_H
#define KB_REPLICATE_HEAL_H

#include "xlators/cluster/replicate/replicate.h"
#include "xlators/cluster/replicate/heal.h"

#define HEAL_DOM          "kembar.repl.heal"   /* healers of one object exclude each other */
#define HEAL_CHUNK        (1u << 20)           /* bytes copied under one range lock (map path) */
#define HEAL_CSUM_BLOCK   (1u << 20)           /* block compared by checksum */
#define HEAL_CSUM_WINDOW  (4u << 20)           /* blocks compared under one range lock */
#define HEAL_WINDOWS      4                    /* windows of one file copied at once */
#define HEAL_INDEX_PAGE   4096                 /* gfids per KB_IPC_INDEX_LIST call */
#define HEAL_READDIR_SIZE (128u * 1024)        /* READDIR budget */
#define HEAL_XATTR_LIST   (64u * 1024)         /* LISTXATTR / GETXATTR buffer */
#define HEAL_KICK_MS      30                   /* sweep after a CHILD_UP (coalesces several) */
#define HEAL_RETRY_MIN_MS 500                  /* first retry of a sweep that left work behind */

typedef struct heal heal_t;
typedef struct hobj hobj_t;
typedef struct hbatch hbatch_t;

/* ---------------- deferred work (heal_util.c) ----------------
 * heal_later runs FN(ARG) from the loop soon (FIFO). L is caller-owned
 * storage, free to reuse once FN has started. */
typedef struct hlater {
    void (*fn)(void *arg);
    void *arg;
    struct hlater *next;
} hlater_t;
void heal_later(heal_t *hs, hlater_t *l, void (*fn)(void *), void *arg);
/* The event callback of hs->later_ev (runs the queue). */
void heal_later_cb(int fd, short what, void *arg);

/* ---------------- batches of calls ----------------
 * hb_new, hb_add each call (args deep-copied: stack args are fine), hb_go:
 * every call is wound at once; when all answered, CONT(ctx, b) runs from
 * the loop and owns B (hb_free it). Replies are deep copies (r). On an
 * allocation failure hb_go winds nothing and CONT sees b->err. */
typedef void (*hb_fn)(void *ctx, hbatch_t *b);
typedef struct hreq {
    int child;
    kb_op_t op;
    kb_args_t a;
    kb_reply_t r;
    hbatch_t *b;
} hreq_t;
struct hbatch {
    heal_t *hs;
    int n, cap, pending, err;
    kb_cred_t cred;
    uint64_t req_id;
    hb_fn cont;
    void *ctx;
    hlater_t later;
    hbatch_t *prev, *next;      /* hs->batches */
    hreq_t q[];
};
hbatch_t *hb_new(heal_t *hs, int cap, uint64_t req_id, uint64_t lk_owner);   /* NULL: ENOMEM */
hreq_t *hb_add(hbatch_t *b, int child, kb_op_t op, const kb_args_t *a);     /* NULL: b->err set */
void hb_go(hbatch_t *b, hb_fn cont, void *ctx);
void hb_free(hbatch_t *b);                                                   /* NULL-safe */
/* The first request of B to CHILD with OP (from index FROM), or NULL. */
hreq_t *hb_find(hbatch_t *b, int child, kb_op_t op, int from);

/* ---------------- lock sets ----------------
 * Lock WANT (& up) like replicate does: non-blocking on all at once; on a
 * conflict, release and (blocking) take them one by one in child order, so
 * heal never deadlocks with a writer. CONT(ctx, 0) when all of WANT are
 * held; otherwise CONT(ctx, -err) with nothing held (-EAGAIN: a conflict
 * and !blocking). */
typedef struct hlock {
    heal_t *hs;
    kb_op_t op;                 /* KB_FOP_INODELK or KB_FOP_ENTRYLK (whole directory) */
    kb_gfid_t gfid;
    const char *dom;
    uint64_t start, len;        /* INODELK range (len 0: to the end) */
    uint64_t owner, req;
    bool blocking;
    repl_mask_t want, granted;
    int next, err;
    void (*cont)(void *ctx, int err);       /* of hlock_take */
    void *ctx;
    void (*dcont)(void *ctx, int err);      /* of hlock_drop */
    void *dctx;
    hlater_t later;
} hlock_t;
void hlock_take(hlock_t *l);
/* Unlock what is held (children still up), then CONT(ctx, 0). */
void hlock_drop(hlock_t *l, void (*cont)(void *ctx, int err), void *ctx);

/* ---------------- directory listings ---------------- */
typedef struct hent {
    char *name;
    kb_gfid_t gfid;             /* null when the brick could not read it */
    uint32_t type;              /* S_IFMT bits */
    kb_iatt_t attr;
    bool gone;                  /* removed / moved away by entry heal */
} hent_t;
typedef struct hlist { hent_t *e; size_t n, cap; } hlist_t;
void hlist_clear(hlist_t *l);
void hlist_sort(hlist_t *l);                            /* by name */
hent_t *hlist_find(const hlist_t *l, const char *name); /* sorted list */

/* OPENDIR + READDIR (plus) to the end + RELEASEDIR of GFID on CHILD into
 * OUT (appended), then CONT(ctx, 0 / -err). */
typedef struct hlistdir {
    heal_t *hs;
    int child;
    kb_gfid_t gfid;
    uint64_t req, fd, off;
    bool opened;
    int err;
    hlist_t *out;
    void (*cont)(void *ctx, int err);
    void *ctx;
} hlistdir_t;
void heal_listdir(hlistdir_t *ld);

/* ---------------- the daemon (heal.c) ---------------- */
struct heal_act { bool used; kb_gfid_t gfid; uint64_t total, done; };
enum { HQ_FULL = 1, HQ_FORCE = 2 };
struct hq_ent { kb_gfid_t gfid; uint8_t flags, round; };
#define HEAL_AGAIN_ROUNDS 3     /* re-heals of an object written again during its heal, per sweep */

struct heal {
    repl_priv_t *p;
    kb_cred_t cred;
    bool dead;
    unsigned nwind;             /* calls wound and not answered */
    struct event *later_ev, *tick_ev, *kick_ev;
    hlater_t *lhead, *ltail;
    hbatch_t *batches;
    hobj_t *objs;
    /* sweep */
    bool sweeping, want_sweep, want_full, cur_full, kick_armed, pump_queued;
    bool sweep_all;             /* list every child's index (see heal.c) */
    bool sweep_again;           /* an object stayed pending: sweep again soon */
    repl_mask_t list_mask;
    int list_child;
    uint64_t list_off;
    struct hq_ent *q;
    size_t qhead, qlen, qcap;
    kb_gfid_t *set;             /* gfids queued during this sweep (open addressing) */
    size_t setcap, setn;
    int inflight;
    struct hcrawl *crawl;
    uint32_t found, sweep_failed;
    uint64_t retry_ms;
    hlater_t lsweep, lpump;
    /* reporting */
    struct kb_heal_stats st;    /* counters; active[] / split[] are built on STATS */
    struct heal_act act[KB_HEAL_MAX_ACTIVE];
    kb_gfid_t split[KB_HEAL_MAX_SPLIT];
    bool split_seen[KB_HEAL_MAX_SPLIT];
    uint32_t nsplit;
};

/* Queue GFID in the running sweep (HQ_FORCE: even if it was healed in
 * this sweep already, e.g. entry heal just created it). */
void heal_enqueue(heal_t *hs, const kb_gfid_t *g, uint8_t flags);
/* Progress of the data heal of an object, for heal info. */
int heal_act_begin(heal_t *hs, const kb_gfid_t *g, uint64_t total);   /* slot or -1 */
void heal_act_add(heal_t *hs, int slot, uint64_t done);
void heal_act_end(heal_t *hs, int slot);
void heal_split_note(heal_t *hs, const kb_gfid_t *g, bool split);
/* Free everything (fini, or the last reply after a fini). */
void heal_free_all(heal_t *hs);

/* ---------------- one object (heal_obj.c) ---------------- */
enum { HK_ENTRY, HK_META, HK_DATA, HK_NKINDS };

struct hobj {
    heal_t *hs;
    kb_gfid_t gfid;
    uint64_t req;               /* request id of every call (logs) */
    uint64_t owner;             /* lock owner of every lock of this heal */
    bool full;                  /* compare copies even without marks */
    int force_src;              /* resolve: the copy that wins, -1: none */
    int policy;                 /* resolve by policy (enum kb_heal_policy), -1: none */
    bool has_res;
    struct kb_heal_resolve res;
    hlock_t hlk;                /* HEAL_DOM */
    /* the last snapshot (each kind takes its own under its lock) */
    repl_mask_t present, have;
    uint32_t type;
    kb_iatt_t attr[KB_CL_MAX_REPLICA];
    kb_cl_matrix_t m[KB_CL_MAX_REPLICA];
    int kind;
    int err;                    /* first failure */
    bool split, did, skipped, tidied;
    bool again;                 /* new marks appeared during the heal: heal it once more */
    uint8_t round;              /* how many times this sweep healed it already */
    char msg[160];              /* resolve: what was done */
    void *kctx;                 /* the running kind's state ... */
    void (*kfree)(void *kctx);  /* ... and how to free it if heal is torn down */
    hlater_t later;
    hobj_t *prev, *next;        /* hs->objs */
};

/* Start healing one object; heal_obj_done(hs, h) runs at the end. */
hobj_t *heal_obj_new(heal_t *hs, const kb_gfid_t *g, uint8_t flags);
void heal_obj_start(hobj_t *h);
void heal_obj_free(hobj_t *h);
void heal_obj_done(heal_t *hs, hobj_t *h);     /* heal.c */

/* Snapshot: nameless LOOKUP + XATTROP GET on every child of MASK, added to
 * B; heal_snap_read fills h->present/have/type/attr/m from those replies
 * (0, or the first error that is not "absent there"). */
void heal_snap_add(hobj_t *h, hbatch_t *b, repl_mask_t mask);
int heal_snap_read(hobj_t *h, hbatch_t *b, repl_mask_t mask);

/* Who heals whom in column COL, from the snapshot. */
typedef struct hplan {
    int src;                    /* copy to heal from; -1: nothing to do */
    repl_mask_t S;              /* sources (in sync with src) */
    repl_mask_t K;              /* copies to heal */
    repl_mask_t R;              /* copies whose marks were read (rows to clear) */
    bool cmp;                   /* no mark names K: compare before copying (full, dirty only) */
    bool forced;                /* src chosen by resolve / favourite-child policy */
    bool clear_only;            /* src < 0: the copies agree, but a copy that holds none of this
                                   column (the arbiter's data) keeps a stale dirty mark: take it back */
} hplan_t;
/* 0 (pl->src < 0: nothing), -EIO split-brain (h->split set), -ENOTCONN no source up. */
int heal_plan(hobj_t *h, int col, hplan_t *pl);
/* Add to B the XATTROP ADDs that take back exactly what snapshot M/R
 * showed in COL against the copies of H (now in sync), and the dirty
 * counts when nothing else stays blamed. Returns true when nothing stays
 * blamed (region maps may then be cleared). */
bool heal_clear_add(hobj_t *h, hbatch_t *b, int col, repl_mask_t H, const kb_cl_matrix_t *m,
                    repl_mask_t R);
/* Mark on SRC's copy of G: pending against K in COLS (entry heal created it). */
void heal_mark_add(hobj_t *h, hbatch_t *b, int src, const kb_gfid_t *g, uint32_t cols, repl_mask_t k);
/* Which copy a policy (enum repl_fav_policy) keeps among CAND, from the snapshot. */
int heal_fav_pick(hobj_t *h, int policy, repl_mask_t cand);

/* The kinds: run under their own lock, then DONE(h, 0 / -err). */
typedef void (*hkind_done_fn)(hobj_t *h, int err);
void heal_entry(hobj_t *h, hkind_done_fn done);
void heal_meta(hobj_t *h, hkind_done_fn done);
void heal_data(hobj_t *h, hkind_done_fn done);

static inline repl_priv_t *hp(const hobj_t *h) { return h->hs->p; }
static inline bool hdead(const heal_t *hs) { return hs->dead; }

#endif
