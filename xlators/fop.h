/*
 * fop.h — a file operation as data (DESIGN §3).
 *
 * A call is (op, kb_args_t, credentials, request id); its result is one
 * kb_reply_t. Both are fat structs: one set of typed fields shared by every
 * op, and fops.def says which fields each op uses. That keeps the codec, the
 * copy/free helpers and the pass-through defaults generated from one list,
 * and every translator reads the same named fields (no string-keyed dicts,
 * STYLE 9).
 *
 * Field conventions
 *   gfid     the inode operated on; for entry ops (lookup, create, mkdir,
 *            mknod, symlink, unlink, rmdir, rename-source) the PARENT dir.
 *            LOOKUP with name == NULL is a lookup of gfid itself (nameless).
 *   name     entry name (entry ops), xattr name (xattr ops), lock domain
 *            (inodelk, entrylk), counter key (xattrop).
 *   gfid2    LINK: new parent; RENAME: new parent.
 *   name2    LINK/RENAME: new name; SYMLINK: target; ENTRYLK: basename.
 *   newgfid  gfid to give a created object (same on every replica).
 *   fd       a handle returned by OPEN/CREATE/OPENDIR of THE TRANSLATOR
 *            RECEIVING THE CALL. Each layer that fans out maps its own fd to
 *            its children's fds; over the wire it is the brick's fd number.
 *            STAT/SETATTR/TRUNCATE use fd when KB_FDV_SET in args.fd_valid,
 *            else gfid.
 *   flags    op-specific: open flags (O_*), fallocate mode, rename flags,
 *            xattr flags, lseek whence, fsync datasync, setattr valid mask
 *            (KB_SET_*), lock cmd, readdir plus (1), write flags (O_DIRECT).
 *   attr     SETATTR new values (which ones: flags = KB_SET_* mask).
 *   data     WRITE payload, SETXATTR value, XATTROP deltas. Borrowed: the
 *            caller keeps its reference until the call completes.
 *
 * Reply conventions
 *   status   >= 0 success (WRITE: bytes written; READ: bytes read;
 *            GETXATTR/LISTXATTR with size 0: size needed), < 0 -errno.
 *   attr     object attributes after the op (gfid filled in).
 *   data     READ payload, READLINK target, xattr value or list. Owned by
 *            the reply: kb_reply_clear drops it.
 *   dirents  READDIR entries (with attributes when flags & 1 was asked).
 *
 * A translator's completion callback receives a const reply that is valid
 * only during the callback; kb_reply_copy keeps one (taking buffer refs).
 */
#ifndef KB_FOP_H
#define KB_FOP_H

#include "lib/common.h"
#include "lib/buf.h"
#include "lib/codec.h"
#include "lib/gfid.h"

/* ---- argument / reply field bits ---- */
enum {
    KB_A_GFID = 1u << 0, KB_A_NAME = 1u << 1, KB_A_GFID2 = 1u << 2, KB_A_NAME2 = 1u << 3,
    KB_A_NEWGFID = 1u << 4, KB_A_FD = 1u << 5, KB_A_OFF = 1u << 6, KB_A_SIZE = 1u << 7,
    KB_A_FLAGS = 1u << 8, KB_A_MODE = 1u << 9, KB_A_RDEV = 1u << 10, KB_A_ATTR = 1u << 11,
    KB_A_DATA = 1u << 12, KB_A_LOCK = 1u << 13,
};
enum {
    KB_R_ATTR = 1u << 0, KB_R_FD = 1u << 1, KB_R_DATA = 1u << 2, KB_R_DIRENTS = 1u << 3,
    KB_R_STATFS = 1u << 4, KB_R_OFF = 1u << 5, KB_R_LOCK = 1u << 6,
};
enum kb_fop_class { KB_C_READ, KB_C_DATA, KB_C_META, KB_C_ENTRY, KB_C_FD, KB_C_LOCK };

typedef enum kb_op {
#define FOP(NAME, name, A, R, C) KB_FOP_##NAME,
#include "xlators/fops.def"
#undef FOP
    KB_FOP_MAX
} kb_op_t;

struct kb_fop_info { const char *name; uint32_t args; uint32_t reply; enum kb_fop_class cls; };
extern const struct kb_fop_info kb_fop_info[KB_FOP_MAX];
static inline const char *kb_fop_name(kb_op_t op) { return (unsigned)op < KB_FOP_MAX ? kb_fop_info[op].name : "?"; }

/* ---- attributes ---- */
typedef struct kb_iatt {
    kb_gfid_t gfid;
    uint64_t ino;        /* brick inode; the client exposes a gfid-derived ino */
    uint32_t mode;       /* type + permission bits */
    uint32_t nlink;      /* user-visible links (the brick's handle link excluded) */
    uint32_t uid, gid;
    uint64_t rdev;
    uint64_t size;
    uint64_t blocks;     /* 512-byte blocks */
    uint32_t blksize;
    int64_t atime_sec, mtime_sec, ctime_sec;
    uint32_t atime_nsec, mtime_nsec, ctime_nsec;
} kb_iatt_t;

/* SETATTR valid bits (args.flags) */
enum {
    KB_SET_MODE = 1 << 0, KB_SET_UID = 1 << 1, KB_SET_GID = 1 << 2, KB_SET_SIZE = 1 << 3,
    KB_SET_ATIME = 1 << 4, KB_SET_MTIME = 1 << 5, KB_SET_ATIME_NOW = 1 << 6,
    KB_SET_MTIME_NOW = 1 << 7, KB_SET_CTIME = 1 << 8,
};

/* ---- locks ---- */
enum kb_lock_type { KB_LK_RDLCK = 0, KB_LK_WRLCK = 1, KB_LK_UNLCK = 2 };
/* cmd (args.flags) for INODELK / LK */
enum kb_lock_cmd { KB_LK_GETLK = 0, KB_LK_SETLK = 1, KB_LK_SETLKW = 2 };
/* LK flags above the command (protocol 2 bricks only: protocol/client strips
 * them for older ones). KB_LK_RECLAIM: a lock this client held, taken again
 * by lock heal (a brick that came back, a new graph); a brick that dropped
 * this client instance's locks when its lease ran out refuses it with
 * -ESTALE — whoever took the range meanwhile may have written under it. */
#define KB_LK_CMD_MASK 0xffu
#define KB_LK_RECLAIM  0x100u
/* KB_LK_CANCEL (with SETLK, type UNLCK): withdraw the owner's requests still
 * waiting over the range (an interrupted F_SETLKW / flock); the locks it
 * holds stay. A protocol-1 brick sees a plain unlock. Never logged for
 * replay (lklog). */
#define KB_LK_CANCEL   0x200u
/* ENTRYLK args.flags: low byte cmd (KB_ELK_LOCK / KB_ELK_LOCK_NB / KB_ELK_UNLOCK) */
enum kb_entrylk_cmd { KB_ELK_LOCK = 0, KB_ELK_LOCK_NB = 1, KB_ELK_UNLOCK = 2 };
typedef struct kb_lock {
    uint32_t type;       /* kb_lock_type */
    uint64_t start, len; /* len 0 = to end of file */
    uint64_t owner;      /* lock owner (FUSE lock_owner / translator id) */
    uint32_t pid;
    uint32_t flock;      /* 1: BSD flock semantics (whole file) */
} kb_lock_t;

/* ---- XATTROP: atomic add of fixed-width counters (replicate changelog) ----
 * args.name  = key (must be a trusted.kembar.* internal key; only this op may touch them)
 * args.data  = N big-endian int32 deltas; reply.data = the values after the add.
 * args.flags = KB_XOP_ADD (add deltas), KB_XOP_GET (read only), or
 *              KB_XOP_ADD_LOCKED: add only while the caller holds the lock
 *              that args.data names after the deltas (changelog.h, "XATTROP
 *              under a lock"), else -ENOLCK and nothing changes. Answered by
 *              features/locks (a brick with KB_FEAT_XOP_LOCKED); anything
 *              below it refuses the flag with -EINVAL. */
enum { KB_XOP_ADD = 0, KB_XOP_GET = 1, KB_XOP_ADD_LOCKED = 2 };

/* ---- directory entries ---- */
typedef struct kb_dirent {
    uint64_t off;        /* cookie to pass as READDIR offset to continue after this entry */
    uint32_t type;       /* DT_* */
    kb_gfid_t gfid;      /* null if unknown */
    char *name;
    kb_iatt_t attr;      /* valid when has_attr */
    uint8_t has_attr;
} kb_dirent_t;

typedef struct kb_statfs {
    uint64_t bsize, frsize, blocks, bfree, bavail, files, ffree, favail, namemax;
} kb_statfs_t;

/* ---- credentials ---- */
typedef struct kb_cred {
    uint32_t uid, gid, pid;
    uint32_t ngroups;
    uint32_t groups[16];
    uint64_t lk_owner;
    uint64_t client_id;  /* set by the brick's server from the connection; never trusted from the wire */
    uint64_t lk_client;  /* set by the brick's server: the client process's lock identity (its
                            instance id from the handshake, shared by all its connections to the
                            brick, bit 63 set); 0 = the connection's. Never from the wire. */
} kb_cred_t;

/* ---- arguments ---- */
typedef struct kb_args {
    kb_gfid_t gfid, gfid2, newgfid;
    char *name, *name2;
    uint64_t fd;
    uint8_t fd_valid;    /* STAT/SETATTR/TRUNCATE: use fd rather than gfid */
    uint64_t off, size;
    uint32_t flags, mode;
    uint64_t rdev;
    kb_iatt_t attr;
    kb_buf_t *data;
    kb_lock_t lock;
} kb_args_t;

/* ---- reply ---- */
/* reply.rflags: facts a brick adds to any reply (always encoded). */
enum {
    KB_RF_CONTENDED = 1u << 0,  /* another client waits for a lock on this inode:
                                   a holder of an eager lock should release it */
    KB_RF_PATTR = 1u << 1,      /* a successful entry op: reply.pattr holds the parent
                                   directory's attributes right after it (encoded after
                                   the op's own fields; a brick sends it only to a client
                                   with KB_FEAT_PATTR, rpc/wire.h) */
};

/* WRITE / TRUNCATE / FALLOCATE args.flags bits above the O_* range we pass. */
#define KB_WF_TRACK_REGIONS (1u << 31) /* brick: record the written range in the
                                          file's dirty-region map, durably, before
                                          writing (a replica is absent; changelog.h) */
#define KB_WF_KILL_SUIDGID (1u << 30)  /* WRITE / TRUNCATE, brick: then clear setuid, and
                                          setgid if group-executable (the writer lacks
                                          CAP_FSETID: FUSE_HANDLE_KILLPRIV_V2) */

/* RELEASE / RELEASEDIR args.flags, set only by the brick's server (RELEASE
 * carries no flags on the wire): the fd goes because its client's connection
 * went, not because the client closed it. The client may come back and
 * reopen by gfid: storage/posix keeps an open-unlinked file for it. */
#define KB_REL_CONN_GONE (1u << 0)

typedef struct kb_reply {
    int32_t status;
    uint32_t rflags;     /* KB_RF_* */
    kb_iatt_t attr;
    uint64_t fd;
    kb_buf_t *data;
    kb_dirent_t *dirents;
    uint32_t ndirents;
    kb_statfs_t statfs;
    uint64_t off;
    kb_lock_t lock;
    kb_iatt_t pattr;     /* with KB_RF_PATTR: the parent directory after an entry op (last:
                            libkembar's callbacks see this struct, fields only grow at the end) */
} kb_reply_t;

/* Limits checked by the codec before any allocation (DESIGN §8). */
#define KB_NAME_MAX 255
#define KB_PATH_MAX 4096
#define KB_XATTR_NAME_MAX 255
#define KB_XATTR_VALUE_MAX (64 * 1024)
#define KB_DATA_MAX (4u * 1024 * 1024)    /* largest read/write payload */
#define KB_DIRENTS_MAX 65536

/* Does this call name its object by args.fd (vs args.gfid)? */
bool kb_args_uses_fd(kb_op_t op, const kb_args_t *a);

/* copy/free helpers: deep copies of strings, extra refs on buffers. */
int kb_args_copy(kb_args_t *dst, const kb_args_t *src);     /* 0 or -ENOMEM */
void kb_args_clear(kb_args_t *a);
int kb_reply_copy(kb_reply_t *dst, const kb_reply_t *src);  /* 0 or -ENOMEM */
void kb_reply_clear(kb_reply_t *r);
void kb_dirents_free(kb_dirent_t *d, uint32_t n);

/* Codec. The payload (kb_buf) travels apart from the encoded fields (the
 * frame's bulk iovec), so encode returns it separately and decode takes it. */
void kb_args_encode(kb_enc_t *e, kb_op_t op, const kb_args_t *a);
int kb_args_decode(kb_dec_t *d, kb_op_t op, kb_args_t *a, kb_buf_t *bulk);
void kb_reply_encode(kb_enc_t *e, kb_op_t op, const kb_reply_t *r);
int kb_reply_decode(kb_dec_t *d, kb_op_t op, kb_reply_t *r, kb_buf_t *bulk);
void kb_iatt_encode(kb_enc_t *e, const kb_iatt_t *a);
void kb_iatt_decode(kb_dec_t *d, kb_iatt_t *a);
void kb_cred_encode(kb_enc_t *e, const kb_cred_t *c);
void kb_cred_decode(kb_dec_t *d, kb_cred_t *c);

/* From struct stat (brick side). */
struct stat;
void kb_iatt_from_stat(kb_iatt_t *ia, const struct stat *st, const kb_gfid_t *gfid);
void kb_iatt_to_stat(const kb_iatt_t *ia, struct stat *st);
/* ino the client exposes: derived from the gfid, stable across replicas. */
uint64_t kb_gfid_to_ino(const kb_gfid_t *g);

#endif
