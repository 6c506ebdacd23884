/*
 * kembar.h — libkembar, the client library (DESIGN §1-3; like libgfapi).
 *
 * A kbc_t is one mounted volume inside a process: an event loop thread
 * (lib/loop.h) that owns the translator graph built from the volume's client
 * volfile. Everything else in the process talks to the graph through this
 * API; no other thread ever touches the graph directly.
 *
 * Two layers:
 *
 *   async  kbc_submit() hands one fop to the loop thread and winds it into
 *          the graph top. The completion callback runs on the loop thread,
 *          exactly once (the only exception: if the hand-over itself cannot
 *          be allocated, cbk runs at once on the submitting thread with
 *          -ENOMEM). kembar-fuse uses this layer.
 *
 *   sync   kbc_lookup(), kbc_pread(), ... block the calling thread on a small
 *          condvar until the fop completes. They must not be called from the
 *          loop thread (that would deadlock: they return -EDEADLK instead).
 *          kembar-bench and heal tools use this layer.
 *
 * Errors are one negative errno everywhere (STYLE 5); functions that build a
 * kbc_t also write a one-line human reason into err.
 *
 * Credentials: kbc_submit takes the caller's kb_cred_t; the sync API uses the
 * kbc_t's default credentials (the process' uid/gid/pid at kbc_new, changed
 * with kbc_set_cred).
 */
#ifndef KB_CLIENT_KEMBAR_H
#define KB_CLIENT_KEMBAR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "lib/loop.h"
#include "xlators/xlator.h"

typedef struct kbc kbc_t;
typedef struct kbc_fd kbc_fd_t;

/* ---- volume spec: "host[:port][,host[:port]...]:/volume" ---- */
#define KBC_MAX_SERVERS 16

typedef struct kbc_server {
    char *host;          /* without brackets for IPv6 */
    uint16_t port;       /* KB_DEFAULT_PORT when absent */
} kbc_server_t;

typedef struct kbc_spec {
    char *volume;
    int nservers;
    kbc_server_t servers[KBC_MAX_SERVERS];
} kbc_spec_t;

/* Parse SPEC. 0, or -EINVAL with a one-line reason in err. */
int kbc_spec_parse(const char *spec, kbc_spec_t *out, char *err, size_t errlen);
void kbc_spec_clear(kbc_spec_t *s);
/* "h1:24800,[::1]:24800" into buf (truncated to len). Returns buf. */
char *kbc_spec_servers_str(const kbc_spec_t *s, char *buf, size_t len);

/* ---- creating a client ---- */
typedef struct kbc_opts {
    uint32_t connect_timeout_ms; /* per server, for the volfile fetch; 0 = 3000 */
    uint32_t up_timeout_ms;      /* wait for CHILD_UP of the graph top; 0 = 10000 */
    bool no_wait_up;             /* return once the graph is initialised */
    const char *tls_dir;         /* cert.pem/key.pem/ca.pem: fetch the volfile over TLS and
                                    give protocol/client these files (volumes with
                                    transport.tls on need it); NULL = plain TCP */
    uint32_t volfile_check_ms;   /* kbc_new: re-fetch the volfile this often and switch to a
                                    new graph when it changed (0 = 2000; UINT32_MAX = never) */
} kbc_opts_t;

/* Fetch the client volfile of SPEC's volume from the first reachable server
 * (KB_PROC_GETSPEC), build and init the graph on a new loop thread, and wait
 * (bounded) for the graph top to report CHILD_UP. NULL on failure with a
 * one-line reason in err, e.g. "volume 'v1' does not exist". O may be NULL. */
kbc_t *kbc_new(const char *spec, const kbc_opts_t *o, char *err, size_t errlen);
/* The same from a volfile text (no volfile server; tests, --volfile). */
kbc_t *kbc_new_from_volfile(const char *volfile, const kbc_opts_t *o, char *err, size_t errlen);
/* Waits for in-flight calls (bounded), finalises the graph, stops the loop.
 * Every kbc_fd_t must have been closed. NULL-safe. */
void kbc_free(kbc_t *c);

const char *kbc_volume(const kbc_t *c);        /* "" for kbc_new_from_volfile */
/* For embedders that need the loop thread (e.g. to run their own work there). */
kb_loop_t *kbc_loop(const kbc_t *c);
kb_graph_t *kbc_graph(const kbc_t *c);          /* use only on the loop thread */
/* Whether the graph top is up (last CHILD_UP/DOWN seen). Any thread. */
bool kbc_is_up(const kbc_t *c);
/* How many times the client moved to a new graph because the volume
 * definition changed (client/graphs.c). Any thread. */
unsigned kbc_graph_switches(const kbc_t *c);

/* ---- async core ---- */
/* Run OP with ARGS on the graph top from ANY thread. ARGS (and the buffers it
 * points to) stay owned by the submitter, unchanged, until CBK runs. CRED is
 * copied. CBK runs exactly once, on the loop thread (see above for ENOMEM). */
void kbc_submit(kbc_t *c, kb_op_t op, const kb_args_t *args, const kb_cred_t *cred,
                kb_cbk_fn cbk, void *cookie);

/* ---- credentials ---- */
void kbc_cred_self(kb_cred_t *cred);             /* this process' uid/gid/pid */
void kbc_set_cred(kbc_t *c, const kb_cred_t *cred);

/* ---- sync API: inodes by gfid ---- */
/* Generic: run one fop and keep its reply (caller kb_reply_clear()s it).
 * Returns reply->status. */
int kbc_call(kbc_t *c, kb_op_t op, const kb_args_t *args, kb_reply_t *reply);

int kbc_lookup(kbc_t *c, const kb_gfid_t *parent, const char *name, kb_iatt_t *out);
int kbc_stat(kbc_t *c, const kb_gfid_t *gfid, kb_iatt_t *out);
int kbc_mkdir(kbc_t *c, const kb_gfid_t *parent, const char *name, mode_t mode, kb_iatt_t *out);
int kbc_rmdir(kbc_t *c, const kb_gfid_t *parent, const char *name);
int kbc_unlink(kbc_t *c, const kb_gfid_t *parent, const char *name);
int kbc_rename(kbc_t *c, const kb_gfid_t *oldparent, const char *oldname,
               const kb_gfid_t *newparent, const char *newname, unsigned flags);
int kbc_symlink(kbc_t *c, const kb_gfid_t *parent, const char *name, const char *target,
                kb_iatt_t *out);
int kbc_statfs(kbc_t *c, kb_statfs_t *out);
int kbc_setxattr(kbc_t *c, const kb_gfid_t *gfid, const char *name, const void *value,
                 size_t size, int flags);
/* Returns the value length; copies at most SIZE bytes (SIZE 0: just the length). */
ssize_t kbc_getxattr(kbc_t *c, const kb_gfid_t *gfid, const char *name, void *value, size_t size);

/* Open files. A kbc_fd_t belongs to its kbc_t; close it before kbc_free. */
int kbc_open(kbc_t *c, const kb_gfid_t *gfid, int flags, kbc_fd_t **out);
/* Create NAME in PARENT (the client chooses the gfid). */
int kbc_create(kbc_t *c, const kb_gfid_t *parent, const char *name, int flags, mode_t mode,
               kbc_fd_t **out, kb_iatt_t *attr);
int kbc_close(kbc_fd_t *fd);                     /* FLUSH + RELEASE; frees fd */
const kb_gfid_t *kbc_fd_gfid(const kbc_fd_t *fd);
/* What kbc_submit/kbc_call take as args.fd for this open file, and its kbc_t. */
uint64_t kbc_fd_handle(const kbc_fd_t *fd);
kbc_t *kbc_fd_client(const kbc_fd_t *fd);

/* Data: any size (split into KB_DATA_MAX pieces); short only at end of file. */
ssize_t kbc_pread(kbc_fd_t *fd, void *buf, size_t count, off_t off);
ssize_t kbc_pwrite(kbc_fd_t *fd, const void *buf, size_t count, off_t off);
ssize_t kbc_preadv(kbc_fd_t *fd, const struct iovec *iov, int iovcnt, off_t off);
ssize_t kbc_pwritev(kbc_fd_t *fd, const struct iovec *iov, int iovcnt, off_t off);
int kbc_fstat(kbc_fd_t *fd, kb_iatt_t *out);
int kbc_fsync(kbc_fd_t *fd, bool datasync);
int kbc_ftruncate(kbc_fd_t *fd, off_t size);
int kbc_fallocate(kbc_fd_t *fd, int mode, off_t off, off_t len);
off_t kbc_lseek(kbc_fd_t *fd, off_t off, int whence);   /* SEEK_DATA / SEEK_HOLE too */

/* Directories: kbc_readdir continues from the fd's cursor; *n == 0 at the
 * end. The caller frees the batch with kb_dirents_free(*ents, *n). */
int kbc_opendir(kbc_t *c, const kb_gfid_t *gfid, kbc_fd_t **out);
int kbc_readdir(kbc_fd_t *dir, bool plus, kb_dirent_t **ents, uint32_t *n);

/* ---- path convenience: "/a/b/c" resolved by LOOKUPs from the root ---- */
int kbc_resolve(kbc_t *c, const char *path, kb_iatt_t *out);
/* flags may hold O_CREAT / O_EXCL / O_TRUNC (truncation is a TRUNCATE fop). */
int kbc_open_path(kbc_t *c, const char *path, int flags, mode_t mode, kbc_fd_t **out);
int kbc_opendir_path(kbc_t *c, const char *path, kbc_fd_t **out);
int kbc_mkdir_path(kbc_t *c, const char *path, mode_t mode);
int kbc_rmdir_path(kbc_t *c, const char *path);
int kbc_unlink_path(kbc_t *c, const char *path);
int kbc_rename_path(kbc_t *c, const char *from, const char *to);

#endif
