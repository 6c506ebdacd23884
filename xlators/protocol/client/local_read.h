/*
 * local_read.h — protocol/client reads a brick on this host from the
 * brick's own files (local_read.c says when, why and what is kept).
 *
 * One lread per protocol/client instance, used on its graph's loop thread
 * only. Completions arrive through the loop (never inside lread_read).
 */
#ifndef KB_CLIENT_LOCAL_READ_H
#define KB_CLIENT_LOCAL_READ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "lib/buf.h"
#include "lib/gfid.h"

struct event_base;
typedef struct lread lread_t;

/* A read served here: RES bytes in BUF (a reference the callee must take
 * if it keeps it; dropped after the call), 0 at EOF. RES < 0: not served
 * here (an error, a short or unaligned transfer): send it to the brick. */
typedef void (*lread_done_fn)(void *cookie, int res, kb_buf_t *buf);

lread_t *lread_new(struct event_base *base, const char *name);
/* Complete what is in flight (waiting for the kernel, at most a few
 * seconds; past that the buffers are leaked, never freed under it) and
 * free. NULL is fine. */
void lread_free(lread_t *lr);

/* Serve reads of the brick at PATH on this host if its root carries ID in
 * trusted.kembar.brick-id: 0, or -errno (ENODATA: no id, ESTALE: another
 * brick's, EPERM: not root...) and local reads stay off. */
int lread_enable(lread_t *lr, const char *path, const kb_gfid_t *id);
/* The brick's connection went: close every file and the root. Reads in
 * flight complete as they are. */
void lread_disable(lread_t *lr);
bool lread_enabled(const lread_t *lr);

/* FD (this client's fd number) was opened on object GFID with FLAGS; it
 * may be read here from now on, until lread_released. */
void lread_opened(lread_t *lr, uint64_t fd, const kb_gfid_t *gfid, uint32_t flags);
void lread_released(lread_t *lr, uint64_t fd);

/* Read LEN bytes at OFF of FD here. 0: DONE runs later, from the loop;
 * -errno: not attempted (not enabled, unknown fd, no handle, unaligned
 * O_DIRECT, ring full): send it to the brick now. */
int lread_read(lread_t *lr, uint64_t fd, uint64_t off, size_t len, lread_done_fn done, void *cookie);

/* Reads served here, and reads handed back to the brick after an attempt. */
void lread_counts(const lread_t *lr, uint64_t *served, uint64_t *fallbacks);

#endif
