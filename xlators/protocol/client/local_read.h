/*
 * local_read.h — protocol/client reads a brick on this host from the
 * brick's own files (local_read.c says when, why and what is kept).
 *
 * One lread per protocol/client instance, used on its graph's loop thread
 * only. Everything that touches the brick's file system goes through an
 * io_uring; completions arrive through the loop (never inside a call).
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

/* A read served here: RES bytes in BUF (borrowed for the call: take a
 * reference to keep it), 0 at EOF. RES < 0: not served here (an error, a
 * short transfer, no answer within the timeout): send it to the brick. */
typedef void (*lread_done_fn)(void *cookie, int res, kb_buf_t *buf);

/* A read not answered within TIMEOUT_MS is handed back (-ETIMEDOUT) and its
 * buffer left to the kernel until it answers. */
lread_t *lread_new(struct event_base *base, const char *name, uint32_t timeout_ms);
/* Complete what is in flight (waiting for the kernel at most a few seconds;
 * past that the buffers are leaked, never freed under it) and free. NULL is
 * fine. */
void lread_free(lread_t *lr);

/* Start checking that the directory at PATH on this host carries ID in
 * trusted.kembar.brick-id; reads are served here once it does (logged
 * either way). 0, or -errno when the check could not even start. */
int lread_enable(lread_t *lr, const char *path, const kb_gfid_t *id);
/* The brick's connection went: forget the check and every file (each is
 * closed once no operation uses it). Reads in flight complete as they are. */
void lread_disable(lread_t *lr);
bool lread_enabled(const lread_t *lr);

/* FD (this client's fd number) was opened on object GFID with FLAGS; it
 * may be read here from now on, until lread_released. */
void lread_opened(lread_t *lr, uint64_t fd, const kb_gfid_t *gfid, uint32_t flags);
void lread_released(lread_t *lr, uint64_t fd);

/* Read LEN bytes at OFF of FD here. 0: DONE runs later, from the loop;
 * -errno: not attempted (not enabled, unknown fd, its file not open here
 * yet — the first read starts opening it — or never, an unaligned O_DIRECT
 * request, a full ring): send it to the brick now. */
int lread_read(lread_t *lr, uint64_t fd, uint64_t off, size_t len, lread_done_fn done, void *cookie);

struct lread_counts {
    uint64_t served;        /* reads answered here */
    uint64_t handed_back;   /* reads attempted here, then sent to the brick */
    uint64_t timeouts;      /* ... of which for want of an answer in time */
};
void lread_counts(const lread_t *lr, struct lread_counts *c);

/* Tests only: read FD here from descriptor LFD (owned from now on), as if
 * its handle had been opened and checked. 0, or -EBADF for an unknown FD. */
int lread_test_use_fd(lread_t *lr, uint64_t fd, int lfd);

#endif
