/*
 * replicate.h — cluster/replicate internals, shared by the files of this folder (and by
 * heal, issue 5). Not a public interface: the translator's only export is
 * `kb_xl_replicate`.
 *
 * Files
 *   replicate.c        type, options, notify, inode table, fd table, fan-out
 *   txn.c              lock engine and transactions (lock, pre-op, op,
 *                      post-op, unlock; eager data locks)
 *   write.c            modifications: data, metadata, entry
 *   read.c             reads, lookup, changelog refresh
 *   fd.c               open/create fd maps, lazy reopen, flush/fsync/release,
 *                      posix locks, pass-through ops
 *   policy.c           the pure decisions (policy.h)
 *   heal*.c            self-heal (heal.h, heal_internal.h)
 *
 * Threading: everything runs on the graph's loop thread; nothing here locks.
 *
 * Ownership and lifetimes
 *   repl_op     one per fop served (or internal op); freed by repl_op_reply,
 *               which completes it exactly once.
 *   repl_fan    one per fan-out; freed right after its finish() returns.
 *   repl_inode  refcounted: every op, fd and txn that points to one holds a
 *               ref; unreferenced ones stay cached (LRU) up to a cap.
 *   repl_fd     handed up as an fd number (the pointer); freed when RELEASE
 *               has been answered by every child it was sent to.
 *   repl_txn    owned by its inode slot (data) or by its one op (meta,
 *               entry); freed when unlocked with nothing queued.
 *
 * The marks replicate leaves for heal (changelog.h formats)
 *   - dirty (row 0) > 0 on a copy: a modification was in flight there. Set
 *     by the pre-op, cleared by the post-op on copies that got every op of
 *     the hold. Still set when nobody holds the lock (heal's own lock was
 *     granted) means: a writer died mid-hold, the copy missed an op (it is
 *     then also blamed), or a size change could not be region-tracked — in
 *     all three the dirty-region map may be INCOMPLETE: compare checksums.
 *   - pending (row 1+i) > 0 on copy j: j holds modifications copy i missed.
 *     Written on the survivors BEFORE the modification is acknowledged
 *     (in the pre-op for children already absent, else by an extra XATTROP).
 *   - dirty-region map on copy j (data): every byte range written while a
 *     data child was absent, written by the brick before the write itself.
 *     Complete whenever j's data dirty counter is 0 (see above).
 *   Entry ops mark the parent directory (both parents for a rename), never
 *   the object itself; metadata and data ops mark the object.
 */
#ifndef KB_REPLICATE_H
#define KB_REPLICATE_H

#include "xlators/lklog.h"
#include "xlators/xlator.h"
#include "xlators/changelog.h"
#include "xlators/cluster/replicate/policy.h"

/* Lock domains on the bricks (args.name of INODELK / ENTRYLK). Heal takes
 * the same ones so it serialises with writers. Data locks are whole-file
 * write locks (heal locks ranges in the same domain). */
#define REPL_DOM_DATA  "kembar.repl.data"
#define REPL_DOM_META  "kembar.repl.meta"
#define REPL_DOM_ENTRY "kembar.repl.entry"

/* A cached changelog view is used for at most this long before a read
 * fetches it again: other clients' marks (a replica that missed THEIR
 * writes) reach this client within that time even without a lookup. */
#define REPL_STATE_TTL_MS 2000

/* Cached inode states beyond this many unreferenced ones are evicted. */
#define REPL_INODE_CACHE 4096

typedef struct repl_priv repl_priv_t;
typedef struct repl_inode repl_inode_t;
typedef struct repl_fd repl_fd_t;
typedef struct repl_txn repl_txn_t;
typedef struct repl_fan repl_fan_t;
typedef struct repl_op repl_op_t;

struct repl_priv {
    kb_xlator_t *xl;
    repl_cfg_t cfg;
    int n;
    repl_mask_t up;                        /* children that sent CHILD_UP last */
    repl_mask_t xop_locked;                /* ... whose brick takes KB_XOP_ADD_LOCKED (txn.c) */
    uint32_t child_gen[KB_CL_MAX_REPLICA]; /* bumped at each CHILD_UP of child i */
    uint64_t state_gen;                    /* bumped at any CHILD_UP: cached views stale */
    bool eager;
    uint32_t idle_ms;
    int read_mode;                         /* 0 first readable, 1 gfid hash */
    bool choose_local;                     /* reads prefer the copies in local */
    repl_mask_t local;                     /* up children whose brick is on this host */
    repl_mask_t nocheck;                   /* every acknowledged write reached them: data
                                              reads of them need no check (read.c) */
    int fav_policy;                        /* enum repl_fav_policy (heal) */
    uint64_t owner_base;                   /* lock owners: owner_base ^ counter */
    uint64_t owner_seq;
    kb_cred_t icred;                       /* credentials of internal calls */
    kb_buf_t *zero_cl;                     /* 204 zero bytes: XATTROP GET payload */
    /* inode table: hash chains + LRU of unreferenced entries */
    repl_inode_t **buckets;
    size_t nbuckets, ninodes, nlru;
    repl_inode_t *lru_head, *lru_tail;
    repl_fd_t *fds;                        /* open fds (for CHILD_DOWN) */
    repl_txn_t *txns;                      /* live transactions */
    /* self-heal (heal.h): options parsed here, state owned by the heal code */
    bool shd;                              /* self-heal-daemon on */
    repl_mask_t heal_children;             /* indexes this daemon sweeps */
    uint32_t heal_interval_ms;
    int heal_parallel;
    void *heal;                            /* repl_heal_* private state */
    struct repl_stats {                    /* for status and tests */
        uint64_t locks, preops, postops, marks, unlocks, resends, reopens, retries;
        uint64_t combined;                 /* locks whose pre-op went with them (txn.c) */
        uint64_t primed;                   /* data transactions begun with their CREATE (txn.c) */
        uint64_t dreads, checks;           /* data reads, and the changelog checks sent for them */
    } st;
};

struct repl_inode {
    kb_gfid_t gfid;
    repl_inode_t *hnext;
    repl_inode_t *lru_prev, *lru_next;
    bool in_lru;
    int refs;
    uint32_t type;              /* S_IFMT bits, 0 = unknown */
    uint64_t state_gen;         /* m[] valid for all up children iff == priv->state_gen */
    uint64_t fetched_ms;        /* ... and fetched less than REPL_STATE_TTL_MS ago */
    repl_mask_t have;           /* which m[i] are known */
    repl_txn_t *data_txn;       /* the data transaction (eager lock) in progress */
    /* Data reads' changelog checks (read.c): at most one in flight. Each
     * waiting read holds a ref on the inode, the check in flight one more. */
    repl_op_t *chk_cur;         /* a check is in flight: the reads it answers (they began
                                   before it was sent) */
    repl_op_t *chk_next;        /* reads that began after: the next check answers them */
    repl_fan_t *chk_fan;        /* that next check, allocated by its first read (so
                                   sending it cannot fail once their reads are out) */
    int nfds;
    bool lk_posix;              /* a POSIX record lock was asked for on it through this client
                                   (repl_lk): FLUSH goes to the bricks, or is answered here.
                                   Kept while an fd holds the inode, so while a lock can be */
    kb_cl_matrix_t m[];         /* one per child */
};

#define REPL_FD_MAGIC 0x52504c46u  /* "RPLF" */
/* A child where an fd could not be (re)opened is left out of that fd's ops
 * for this long (or until it comes up again), so a copy that lacks the file
 * does not cost every op an extra round trip. */
#define REPL_REOPEN_BACKOFF_MS 1000
struct repl_fd {
    uint32_t magic;
    repl_priv_t *priv;
    repl_inode_t *ino;
    uint32_t flags;             /* open flags, O_CREAT/O_EXCL/O_TRUNC removed */
    bool dir;
    repl_mask_t opened;         /* children where cfd[i] is valid */
    repl_mask_t reopening;      /* reopen in flight */
    repl_op_t *reopen_wait;     /* ops waiting for it */
    uint64_t cfd[KB_CL_MAX_REPLICA];
    uint64_t retry_ms[KB_CL_MAX_REPLICA]; /* after a failed (re)open: not before this */
    uint32_t fail_gen[KB_CL_MAX_REPLICA]; /* ... unless child_gen moved past this */
    int rd_child;               /* READDIR continues on the child that gave the cookies */
    kb_lklog_t lk;              /* lock heal (lklog.c): the LK requests granted through it */
    int lk_lost;                /* 0, or -EBADFD once a lock could not be taken again */
    repl_fd_t *next, *prev;
};

/* lklog.c: lock heal */
typedef void (*repl_lklog_fn)(void *ctx);
void repl_lklog_note(repl_fd_t *fd, const kb_args_t *a);   /* a granted LK (or unlock) */
/* Take the fd's locks again on CHILDREN (just reopened), then CONT(CTX). */
void repl_lklog_replay(repl_fd_t *fd, repl_mask_t children, uint64_t req, repl_lklog_fn cont, void *ctx);

/* ---- fan-out: the one shape (STYLE 4) ----
 * repl_fan_new arms pending = 1 (the guard); repl_fan_wind adds one per
 * wind; each reply is recorded by slot; repl_fan_go drops the guard. The
 * last of those runs finish(f) exactly once, then the fan is freed.
 * Slots: slot s goes to child s % n (fans of two parts, e.g. OPEN + changelog
 * GET, use slots n..2n-1 for the second part). */
typedef void (*repl_fan_fn)(repl_fan_t *f);
typedef void (*repl_fan_reply_fn)(repl_fan_t *f, int slot, const kb_reply_t *r);
#define REPL_MAX_SLOTS (2 * KB_CL_MAX_REPLICA)
struct repl_fan {
    repl_priv_t *priv;
    int pending;
    int nslots;
    kb_op_t op[2];                  /* op of part 0 / part 1 */
    repl_mask_t sent[2];            /* children wound, per part */
    int32_t status[REPL_MAX_SLOTS];
    uint32_t rflags;                /* OR of every reply's rflags */
    repl_fan_reply_fn on_reply;     /* optional */
    repl_mask_t aux;                /* free for the owner (e.g. the set a mark blames) */
    repl_fan_fn finish;
    void *ctx;
    const kb_cred_t *cred;
    uint64_t req;
    kb_buf_t *hold[2];              /* payload refs dropped with the fan (XATTROP deltas) */
    repl_inode_t *cl_ino[2];        /* XATTROP part: counters in replies land here
                                       (the owner of the fan holds the inode ref) */
    struct repl_fan_slot { repl_fan_t *fan; int slot; } slot[REPL_MAX_SLOTS];
    kb_args_t args[];               /* per slot, shallow copies (borrowed pointers) */
};

repl_fan_t *repl_fan_new(repl_priv_t *p, int parts, kb_op_t op, const kb_args_t *tmpl,
                         const kb_cred_t *cred, uint64_t req, repl_fan_fn finish, void *ctx);
void repl_fan_wind(repl_fan_t *f, int slot);
void repl_fan_go(repl_fan_t *f);
/* Wind part 0 to every child in MASK (slot i = child i), then go. */
void repl_fan_send(repl_fan_t *f, repl_mask_t mask);
/* Free a fan that was never sent (no wind, no go). NULL-safe. */
void repl_fan_drop(repl_fan_t *f);
/* Successful children of part PART. */
repl_mask_t repl_fan_ok(const repl_fan_t *f, int part);

/* ---- ops ---- */
typedef void (*repl_op_fn)(repl_op_t *op);
typedef void (*repl_done_fn)(repl_op_t *op, const kb_reply_t *r);
struct repl_op {
    repl_priv_t *priv;
    kb_call_t *call;            /* NULL for internal ops (done is called instead) */
    repl_done_fn done;
    void *done_ctx;
    kb_op_t fop;
    const kb_args_t *args;      /* call->args, or &own */
    kb_args_t own;
    kb_cred_t cred;
    uint64_t req;
    int col;                    /* changelog column of a modification */
    repl_inode_t *ino;          /* the object (entry ops: the parent) */
    repl_inode_t *ino2;         /* RENAME: the new parent; LOOKUP: the object found */
    repl_fd_t *fd;              /* the fd the op names (ref'd by nothing: fds outlive ops) */
    repl_fd_t *newfd;           /* CREATE / OPEN: the fd being built */
    repl_txn_t *txn;
    repl_op_t *next;            /* txn queue */
    repl_op_t *fd_next;         /* reopen wait list */
    repl_op_fn fd_cont;         /* continuation after reopen */
    repl_op_fn fd_lost;         /* repl_fd_ensure on a lost fd runs this instead of failing
                                   the op (a modification: it must end its transaction) */
    bool lost_ok;               /* an unlock or FLUSH: served on a lost fd too (lklog.c) */
    repl_op_fn cont;            /* continuation after a refresh */
    repl_inode_t *rino;         /* the inode being refreshed */
    repl_mask_t fd_want;        /* reopen wait: the children wanted */
    repl_mask_t sent;
    bool tracked;               /* sent with KB_WF_TRACK_REGIONS */
    bool untrackable;           /* a data op without that flag (SETATTR size) missed a child */
    bool resend_failed;
    uint32_t rflags;            /* OR of the replies' rflags */
    int last_err;               /* reads: error of the last child tried */
    repl_outcome_t out;
    kb_reply_t reply;           /* copy of the reply of keep_idx */
    int keep_idx;
    /* reads */
    repl_mask_t tried;
    int child;
    int stage;
    bool checking;              /* data reads: the changelog check (read.c) is in flight */
    bool checked;               /* ... it came back: the view postdates the read's start */
    int parked;                 /* enum read_park (read.c): a reply in `reply` waits for it */
    repl_op_t *chk_link;        /* ino->chk_cur / chk_next list */
    /* lookup: per child */
    int32_t lst[KB_CL_MAX_REPLICA];
    kb_gfid_t lgfid[KB_CL_MAX_REPLICA];
    kb_iatt_t *lattr;           /* n entries */
};

repl_op_t *repl_op_new(repl_priv_t *p, kb_call_t *call);
/* Complete OP with R (exactly once) and free it. */
void repl_op_reply(repl_op_t *op, const kb_reply_t *r);
void repl_op_fail(repl_op_t *op, int err);
/* Keep child I's reply if it is the lowest successful index so far. */
void repl_op_keep(repl_op_t *op, int i, const kb_reply_t *r);

/* ---- inodes ---- */
repl_inode_t *repl_inode_get(repl_priv_t *p, const kb_gfid_t *g);   /* +1 ref; NULL: ENOMEM */
repl_inode_t *repl_inode_ref(repl_inode_t *ino);
void repl_inode_unref(repl_priv_t *p, repl_inode_t *ino);          /* NULL-safe */
bool repl_inode_fresh(const repl_priv_t *p, const repl_inode_t *ino);
/* The view of INO was just fetched from every up child. */
void repl_inode_fetched(repl_priv_t *p, repl_inode_t *ino);
/* Record child I's counters from an XATTROP reply: the counters when well
 * formed; "unknown" when the object is missing there. */
void repl_inode_set_cl(repl_priv_t *p, repl_inode_t *ino, int i, const kb_reply_t *r);
void repl_inode_blame(const repl_priv_t *p, const repl_inode_t *ino, int col, repl_blame_t *b);
/* A brand new object (created by us on OK): every copy is clean. */
void repl_inode_set_new(repl_priv_t *p, repl_inode_t *ino, repl_mask_t ok, uint32_t type);

/* ---- fds ---- */
repl_fd_t *repl_fd_new(repl_priv_t *p, repl_inode_t *ino, uint32_t flags, bool dir);
repl_fd_t *repl_fd_from(repl_priv_t *p, uint64_t fd);   /* NULL: not one of ours */
void repl_fd_free(repl_fd_t *fd);
static inline uint64_t repl_fd_num(repl_fd_t *fd) { return (uint64_t)(uintptr_t)fd; }
/* Make sure FD is open on the children in WANT that are up (reopening by
 * gfid where it is not), then run CONT(op). Children where that fails are
 * simply not in fd->opened afterwards. */
void repl_fd_ensure(repl_op_t *op, repl_fd_t *fd, repl_mask_t want, repl_op_fn cont);
/* Send RELEASE for the child fds in MASK (fire and forget). */
void repl_fd_release_children(repl_priv_t *p, repl_fd_t *fd, repl_mask_t mask);
/* Child I came up: reopen every file fd there now (and re-lock: lklog.c). */
void repl_fd_child_up(repl_priv_t *p, int i);

/* ---- changelog helpers ---- */
/* Make part PART of F an XATTROP on GFID adding DELTA (NULL: a GET).
 * 0 or -ENOMEM. */
int repl_fan_set_cl(repl_fan_t *f, int part, repl_inode_t *ino, const kb_cl_matrix_t *delta);
/* Make part PART of F an XATTROP on INO with PAYLOAD (the fan takes the
 * reference) and FLAGS (KB_XOP_*). */
void repl_fan_set_xop(repl_fan_t *f, int part, repl_inode_t *ino, kb_buf_t *payload, uint32_t flags);
/* A one-part XATTROP fan on INO (NULL on ENOMEM). Replies update INO. */
repl_fan_t *repl_cl_fan(repl_priv_t *p, repl_inode_t *ino, const kb_cl_matrix_t *delta,
                        repl_fan_fn finish, void *ctx);
/* Fetch the changelog of INO from the children in MASK that are up
 * (XATTROP GET), then CONT(op). Marks INO fresh. */
void repl_refresh(repl_op_t *op, repl_inode_t *ino, repl_mask_t mask, repl_op_fn cont);


/* ---- transactions (txn.c) ---- */
/* Run a modification: find or make its transaction, queue, lock, pre-op,
 * then op->priv... repl_mod_wind(op) under the lock. */
void repl_txn_submit(repl_op_t *op);
/* The op's fan-out is done (op->out filled): mark, unwind, maybe close. */
void repl_txn_op_done(repl_op_t *op);
/* INO is being created for writing, the CREATE just wound: begin its eager
 * data transaction now (lock and pre-op right behind the CREATE). */
void repl_txn_prime(repl_priv_t *p, repl_inode_t *ino);
/* A reply said another client waits for our lock: close as soon as the ops
 * in flight are done; new ops wait for the next hold. */
void repl_txn_contended(repl_txn_t *t);
/* Children the op goes to (members of its transaction that are up). */
repl_mask_t repl_txn_members(const repl_txn_t *t);
/* Ask INO's data transaction to close as soon as it is idle (flush, release). */
void repl_txn_flush(repl_priv_t *p, repl_inode_t *ino);
void repl_txn_child_event(repl_priv_t *p, int i, bool up);
void repl_txn_fini(repl_priv_t *p);

/* ---- the fops (write.c, read.c, fd.c) ---- */
void repl_modify(kb_call_t *call);          /* every KB_C_DATA / META / ENTRY op */
void repl_mod_wind(repl_op_t *op);          /* under the txn: wind to the members */
/* Re-send a WRITE / FALLOCATE that was not region-tracked, with
 * KB_WF_TRACK_REGIONS, to the children TO (it is idempotent under our lock),
 * then CONT(op). Sets op->resend_failed when a child of TO failed it. */
void repl_mod_resend(repl_op_t *op, repl_mask_t to, repl_op_fn cont);
/* Complete a modification with op->out (the transaction is done with it). */
void repl_mod_reply(repl_op_t *op);
void repl_read(kb_call_t *call);            /* every KB_C_READ op but LOOKUP */
void repl_lookup(kb_call_t *call);
void repl_open(kb_call_t *call);            /* OPEN, OPENDIR */
void repl_flush(kb_call_t *call);           /* FLUSH, FSYNC, FSYNCDIR */
void repl_release(kb_call_t *call);         /* RELEASE, RELEASEDIR */
void repl_lk(kb_call_t *call);              /* LK, INODELK, ENTRYLK from above */
void repl_xattrop(kb_call_t *call);         /* XATTROP, IPC from above */

/* Lock engine: lock WANT children (non-blocking on all, then blocking in
 * index order on conflict when BLOCKING). */
typedef struct repl_lk repl_lk_t;
typedef void (*repl_lk_fn)(repl_lk_t *lk);
struct repl_lk {
    repl_priv_t *priv;
    kb_op_t op;                 /* INODELK, ENTRYLK or LK */
    kb_args_t args;             /* the request; cmd and type are set per step */
    uint32_t ltype;             /* KB_LK_RDLCK / WRLCK (INODELK, LK) */
    kb_cred_t cred;
    uint64_t req;
    repl_fd_t *fd;              /* LK: map to child fds */
    repl_mask_t want, granted, conflict;
    bool blocking;
    int next;                   /* blocking phase: next child */
    repl_mask_t seq_want;       /* blocking phase: children to lock in order */
    uint32_t gen[KB_CL_MAX_REPLICA]; /* priv->child_gen when the round went out: an INODELK or
                                   ENTRYLK granted on a connection since replaced is not held */
    repl_lk_fn ucont;           /* after an unlock */
    int err;                    /* first error that is not a conflict */
    repl_lk_fn done;
    void *ctx;
};
void repl_lk_start(repl_lk_t *lk);
/* Unlock MASK with LK's request, then CONT(lk). */
void repl_lk_unlock(repl_lk_t *lk, repl_mask_t mask, repl_lk_fn cont);

/* ---- self-heal hooks (heal.h) ----
 * replicate.c calls these; the heal implementation (heal*.c)
 * defines them. */
int repl_heal_init(repl_priv_t *p);                  /* end of init: 0 or -errno */
void repl_heal_fini(repl_priv_t *p);                 /* start of fini */
void repl_heal_child_up(repl_priv_t *p, int i);      /* after child i came up */
int repl_heal_ctl(repl_priv_t *p, int code, void *arg); /* KB_CTL_HEAL_* */

/* The option table (volfile keys, volume keys). */
extern const kb_option_def_t repl_option_defs[];

/* Column a modification marks. */
int repl_op_col(kb_op_t op, const kb_args_t *a);

#endif
