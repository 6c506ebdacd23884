/*
 * distribute.h — internals of cluster/distribute shared by its files.
 *
 *   distribute.c   type descriptor, init/fini/notify/ctl, the dispatcher
 *                  (one child: pure pass-through), caches, frames and
 *                  fan-out, the layout fetch/heal sub-flow
 *   entry.c        lookup (locate) and the namespace ops: mkdir, create,
 *                  mknod, symlink, unlink, rmdir, rename
 *   inode.c        ops that name an inode (gfid) or a file fd: routing to
 *                  the set holding it, open/release, link
 *   dir.c          opendir / readdir merge / releasedir / fsyncdir, statfs
 *
 * Threading: like every translator, all of this runs on the graph's loop
 * thread; the caches and the fd list need no lock.
 *
 * Nothing here is a contract for other modules; the exported names carry
 * the dist_ prefix only because the library is one archive.
 */
#ifndef KB_DISTRIBUTE_H
#define KB_DISTRIBUTE_H

#include <sys/stat.h>

#include "lib/log.h"
#include "xlators/cluster/distribute/layout.h"
#include "xlators/xlator.h"

struct event;

#define DIST_FD_MAGIC 0x44495346u        /* "DISF" */
#define DIST_LAYOUT_TTL_MS 10000         /* re-read a cached layout after this */
#define DIST_COOKIES_MAX 16384           /* readdir offsets kept per open dir */

/* Linux renameat2 flags as they travel in RENAME args.flags. */
#define DIST_RENAME_NOREPLACE 1u
#define DIST_RENAME_EXCHANGE  2u

typedef struct dist_priv dist_priv_t;
typedef struct dist_frame dist_frame_t;
typedef struct dist_fd dist_fd_t;
typedef void (*dist_step_fn)(dist_frame_t *f);

/* ---- caches (direct-mapped: a collision simply evicts; every miss is
 * answered by asking the sets again, so they are hints, never truth) ---- */
typedef struct dist_ictx {               /* gfid -> set holding it */
    kb_gfid_t gfid;
    int16_t set;
    uint8_t is_dir, valid;
} dist_ictx_t;

typedef struct dist_lcache {             /* directory gfid -> its layout */
    kb_gfid_t gfid;
    uint64_t at_ms;
    bool valid;
    dist_layout_t l;
} dist_lcache_t;

typedef struct dist_hint {               /* (parent, name hash) -> set of a misplaced file */
    kb_gfid_t parent;
    uint32_t hash;
    int16_t set;
    uint8_t valid;
} dist_hint_t;

/* readdir offsets that do not fit beside the set index: kept per fd, in
 * order, the oldest half dropped when DIST_COOKIES_MAX is reached. */
typedef struct dist_cookie { uint64_t off; int32_t set; } dist_cookie_t;
typedef struct dist_cookies {
    uint64_t base;           /* sequence number of e[0] */
    uint32_t len, cap;
    dist_cookie_t *e;
} dist_cookies_t;

/* Our fd: a pointer to this, cast to u64 (xlator.h: each layer maps its
 * own fds). Freed by RELEASE / RELEASEDIR, or at fini. */
struct dist_fd {
    uint32_t magic;
    bool is_dir;
    kb_gfid_t gfid;
    int set;                 /* file: the set holding it */
    uint64_t cfd;            /* file: that set's fd */
    uint32_t flags;          /* file: open flags, to open it again where it moved */
    uint64_t mask;           /* dir: sets where OPENDIR succeeded */
    uint64_t *cfds;          /* dir: fd per set (n entries) */
    dist_cookies_t ck;       /* dir */
    dist_fd_t *prev, *next;  /* priv's list */
};

struct dist_priv {
    kb_xlator_t *xl;
    int n;
    uint64_t all;            /* mask of every set */
    uint64_t reported;       /* sets that sent their first CHILD_UP/DOWN */
    uint64_t drain;          /* option drain-sets: sets being emptied (no new ranges) */
    uint64_t up_wait_ms;
    struct event *up_timer;
    dist_ictx_t *ictx;
    size_t nictx;
    dist_lcache_t *lc;
    size_t nlc;
    dist_hint_t *hints;
    size_t nhints;
    dist_fd_t fds;           /* list head */
    unsigned nfds;
    struct kb_ratelimit rl;  /* warnings and errors from the fop path */
    /* counters for status */
    uint64_t n_fallback, n_found_elsewhere, n_dir_heals, n_layout_heals, n_renames_cross;
};

/* ---- frames: the state of one multi-step op ---- */
typedef struct dist_sub {
    dist_frame_t *f;
    int idx;
    kb_args_t args;          /* shallow: borrows the call's strings and buffers */
    kb_reply_t reply;        /* deep copy, owned */
    kb_buf_t *buf;           /* owned payload for args.data, or NULL */
} dist_sub_t;

typedef struct dist_loc {    /* result of dist_locate */
    int status;              /* 0 found, else -errno */
    int set;                 /* file: its set; dir: the reference copy */
    int hashed;              /* hashed set in the parent's layout; -1: hole / none */
    bool is_dir;
    uint64_t have;           /* sets where it was found */
    uint64_t asked;          /* sets a LOOKUP went to */
    uint64_t heal_fix;       /* dir copies whose mode/owner differ from the reference */
    kb_reply_t reply;        /* LOOKUP reply from SET (owned) */
    kb_gfid_t parent;
    const char *name;        /* borrowed from the call's args */
} dist_loc_t;

struct dist_frame {
    kb_call_t *call;         /* the call we serve (NULL: internal) */
    kb_xlator_t *xl;
    dist_priv_t *p;
    int n;
    int pending;
    bool as_root;            /* internal upkeep (heal, layout) runs with root credentials */
    dist_step_fn next;       /* after the current fan-out */
    dist_step_fn lay_then;   /* after dist_layout_fetch */
    dist_step_fn loc_then;   /* after dist_locate */
    kb_args_t args;          /* the call's args (shallow copy) */
    /* layout sub-flow */
    kb_gfid_t lay_gfid;
    uint64_t lay_mask;       /* sets asked */
    int lay_status;
    dist_layout_t lay;
    /* locate sub-flow */
    int cur;
    dist_loc_t loc[2];
    /* op state */
    int status;
    int set;
    uint64_t mask, mask2;
    dist_fd_t *fd;
    uint8_t linkto_waits;    /* locate waited for a migration already */
    /* dist_mig_wait */
    int mig_set;
    bool mig_held;
    kb_gfid_t mig_gfid;
    dist_step_fn mig_next;
    kb_reply_t out;          /* owned */
    void (*done)(dist_frame_t *f, const kb_reply_t *r); /* internal frames */
    void *opaque;
    dist_sub_t sub[];        /* n entries */
};

/* Log from a frame (STYLE 12): translator, request id and op on every
 * line; warnings and errors are rate-limited per translator, since one
 * sick set repeats the same complaint for every op. */
#define dist_flog(f, level, fmt, ...)                                                          \
    do {                                                                                     \
        if ((level) <= kb_log_level && ((level) > KB_LOG_WARN || kb_ratelimit_ok(&(f)->p->rl))) \
            kb_log_write((level), (f)->xl->name, (f)->call ? (f)->call->req_id : 0, "%s: " fmt,  \
                         (f)->call ? kb_fop_name((f)->call->op) : "internal", ##__VA_ARGS__);   \
    } while (0)

/* distribute.c */
dist_frame_t *dist_frame_new(kb_call_t *call);
dist_frame_t *dist_frame_new_internal(kb_xlator_t *xl);
/* Complete CALL with R, without the parent's attributes an entry op's
 * brick added (KB_RF_PATTR): a directory is on every set, and its STAT here
 * is not that one set's. */
void dist_unwind(kb_call_t *call, const kb_reply_t *r);
void dist_frame_unwind(dist_frame_t *f, const kb_reply_t *r);
void dist_frame_fail(dist_frame_t *f, int err);
void dist_frame_drop(dist_frame_t *f);     /* free without completing the call */
void dist_fan(dist_frame_t *f, kb_op_t op, uint64_t mask, dist_step_fn next);
void dist_fan_root(dist_frame_t *f, kb_op_t op, uint64_t mask, dist_step_fn next);
void dist_sub_args(dist_frame_t *f, uint64_t mask, const kb_args_t *a);
uint64_t dist_up_mask(const dist_priv_t *p);
/* "0,2" -> bits 0 and 2 (indices < n); -EINVAL on anything else. "" -> 0. */
int dist_parse_sets(const char *csv, int n, uint64_t *mask);
/* SETS without the draining ones (all of SETS if that left none). */
uint64_t dist_undrained(const dist_priv_t *p, uint64_t sets);
static inline int dist_first(uint64_t mask) { return mask ? __builtin_ctzll(mask) : -1; }
static inline uint64_t dist_bit(int i) { return UINT64_C(1) << i; }
static inline bool dist_is_up(const dist_priv_t *p, int i) { return i >= 0 && i < p->n && p->xl->children[i]->up; }
/* Migration marks (layout.h section 5). */
static inline bool dist_is_linkto(const kb_iatt_t *a)
{
    return S_ISREG(a->mode) && (a->mode & 07777) == DIST_MIG_BITS;
}
static inline bool dist_is_migrating(const kb_iatt_t *a)
{
    return S_ISREG(a->mode) && (a->mode & DIST_MIG_BITS) == DIST_MIG_BITS && (a->mode & 0777);
}

bool dist_ictx_get(dist_priv_t *p, const kb_gfid_t *g, int *set, bool *is_dir);
void dist_ictx_put(dist_priv_t *p, const kb_gfid_t *g, int set, bool is_dir);
void dist_ictx_del(dist_priv_t *p, const kb_gfid_t *g);
int dist_hint_get(dist_priv_t *p, const kb_gfid_t *parent, const char *name);
void dist_hint_put(dist_priv_t *p, const kb_gfid_t *parent, const char *name, int set);
void dist_hint_del(dist_priv_t *p, const kb_gfid_t *parent, const char *name);
void dist_lcache_put(dist_priv_t *p, const kb_gfid_t *g, const dist_layout_t *l);
void dist_lcache_del(dist_priv_t *p, const kb_gfid_t *g);

/* Fetch (cache, or KB_IPC_LAYOUT_GET from every up set) the layout of DIR
 * into f->lay, healing it when every set is up and it is not complete.
 * f->lay_status: 0, or -errno when no set answered. Then THEN(f). */
void dist_layout_fetch(dist_frame_t *f, const kb_gfid_t *dir, dist_step_fn then);
/* Write L (each set its own range) to the sets of MASK; then THEN(f), with
 * f->lay_mask = the sets written to and their replies in sub[]. */
void dist_layout_store(dist_frame_t *f, const kb_gfid_t *dir, const dist_layout_t *l, uint64_t mask,
                       dist_step_fn then);

dist_fd_t *dist_fd_new(dist_priv_t *p, bool is_dir, const kb_gfid_t *g);
dist_fd_t *dist_fd_of(dist_priv_t *p, uint64_t fd);
void dist_fd_free(dist_priv_t *p, dist_fd_t *fd);

/* entry.c */
void dist_locate(dist_frame_t *f, int slot, const kb_gfid_t *parent, const char *name, dist_step_fn then);
void dist_lookup(kb_call_t *call);
void dist_mkdir(kb_call_t *call);
void dist_create(kb_call_t *call);       /* CREATE, MKNOD, SYMLINK */
void dist_unlink(kb_call_t *call);
void dist_rmdir(kb_call_t *call);
void dist_rename(kb_call_t *call);

/* inode.c */
enum dist_kind { DK_READ, DK_MODIFY, DK_LOCK };
typedef struct dist_local {  /* per-call local block (forwarded ops) */
    kb_args_t args;
    dist_fd_t *fd;
    int set;
    uint8_t kind, from_cache, retried;
    uint8_t mig_retry;       /* already sent again after a migration */
    uint8_t locked;          /* holds the migration lock (read) on SET ... */
    uint8_t lk_nb;           /* a blocking LK sent non-blocking under it (inode.c forward_file) */
    uint64_t lk_owner;       /* ... as this owner */
} dist_local_t;
/* Send CALL (l->args) to SET; its reply goes through the migration check. */
void dist_forward(kb_call_t *call, int set);
void dist_by_gfid(kb_call_t *call, enum dist_kind kind);
void dist_nameless_lookup(kb_call_t *call);
void dist_inode_read(kb_call_t *call);   /* STAT/READLINK/GETXATTR/LISTXATTR, fd or gfid */
void dist_inode_modify(kb_call_t *call); /* SETATTR/TRUNCATE/SETXATTR/REMOVEXATTR */
void dist_inode_lock(kb_call_t *call);   /* INODELK/ENTRYLK/XATTROP/IPC */
void dist_open(kb_call_t *call);
void dist_link(kb_call_t *call);
void dist_fd_op(kb_call_t *call);        /* READ/WRITE/FLUSH/FSYNC/FALLOCATE/LSEEK/RCHECKSUM/LK */
void dist_release(kb_call_t *call);

/* migrate.c */
void dist_fix_layout(kb_call_t *call);   /* IPC KB_IPC_DIST_FIX_LAYOUT */
void dist_migrate(kb_call_t *call);      /* IPC KB_IPC_DIST_MIGRATE */
/* A reply R of CALL shows its file being migrated: wait for the migration
 * and send the op again where the file lives. True when CALL was taken over. */
bool dist_mig_check(kb_call_t *call, const kb_reply_t *r);
/* SETATTR of a mode on a file: under the migration lock (read), where the
 * file lives once any migration is over, so it never clears a migration
 * mark nor lands on a copy being dropped. */
void dist_mig_modelock(kb_call_t *call, int set);
void dist_mig_unlock_async(kb_xlator_t *xl, int set, const kb_gfid_t *g, uint64_t owner);
/* Wait (read lock) for a migration holding G on SET, then run NEXT(f). */
void dist_mig_wait(dist_frame_t *f, int set, const kb_gfid_t *g, dist_step_fn next);
void dist_mig_release(dist_frame_t *f);   /* drop what dist_mig_wait got, if anything */

/* dir.c */
void dist_opendir(kb_call_t *call);
void dist_readdir(kb_call_t *call);
void dist_releasedir(kb_call_t *call);
void dist_fsyncdir(kb_call_t *call);
void dist_statfs(kb_call_t *call);

/* ---- readdir offsets ----
 * An offset we return names (set, that set's offset). When the set's
 * offset fits in the low 63 - B bits (B = bits for a set index), it is
 * stored in place: off = child_off << B | set, top bit clear. Otherwise
 * (ext4 hands out 63-bit hash cookies) the top bit is set and the rest is
 * a sequence number into the fd's cookie list. 0 means "from the start". */
static inline int dist_doff_bits(int n)
{
    return n <= 1 ? 1 : 64 - __builtin_clzll((uint64_t)(n - 1));
}
static inline bool dist_doff_fits(int n, uint64_t child_off)
{
    return child_off < (UINT64_C(1) << (63 - dist_doff_bits(n)));
}
static inline uint64_t dist_doff_pack(int n, int set, uint64_t child_off)
{
    return child_off << dist_doff_bits(n) | (uint64_t)set;
}
static inline void dist_doff_unpack(int n, uint64_t off, int *set, uint64_t *child_off)
{
    int b = dist_doff_bits(n);
    *set = (int)(off & ((UINT64_C(1) << b) - 1));
    *child_off = off >> b;
}
#define DIST_DOFF_COOKIE (UINT64_C(1) << 63)
/* Encode (SET, CHILD_OFF) for fd FD: 0 and *OUT, or -ENOMEM. */
int dist_doff_encode(dist_fd_t *fd, int n, int set, uint64_t child_off, uint64_t *out);
/* Decode OFF: 0, or -EINVAL for a cookie that was dropped or never given. */
int dist_doff_decode(const dist_fd_t *fd, int n, uint64_t off, int *set, uint64_t *child_off);

#endif
