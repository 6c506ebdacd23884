/*
 * lklog.h — a log of the application lock requests (LK) granted through one
 * fd, so they can be taken again where they were lost: on a brick that
 * restarted (cluster/replicate, lklog.c there) or on a new graph after a
 * switch (libkembar, client/hlocks.c).
 *
 * The requests are kept, not the resulting lock map: taken again in the
 * same order on a lock server, they rebuild exactly the locks the fd's
 * owners hold (the server merges and splits ranges as it did the first
 * time). An unlock of a whole file (from 0, len 0: what F_UNLCK of
 * everything and a close send) drops that owner's earlier requests of the
 * same kind instead of growing the log; a FLUSH drops the owner's POSIX
 * requests (the close rule). qemu takes a handful of locks per image; past
 * KB_LKLOG_MAX requests the log is marked incomplete, and whoever replays
 * it must treat the locks as lost rather than guess.
 */
#ifndef KB_LKLOG_H
#define KB_LKLOG_H

#include <stdbool.h>
#include <stdint.h>
#include "xlators/fop.h"

#define KB_LKLOG_MAX 256

typedef struct kb_lkreq {
    uint64_t owner;
    uint32_t type, pid;
    uint64_t start, len;
    bool flock;
} kb_lkreq_t;

typedef struct kb_lklog {
    kb_lkreq_t *req;
    uint32_t n, cap;
    bool incomplete;
} kb_lklog_t;

/* A granted LK (SETLK/SETLKW; an unlock too). Other commands are ignored.
 * Returns false when the log just became incomplete (for a warning). */
bool kb_lklog_note(kb_lklog_t *l, const kb_args_t *a);
void kb_lklog_flush(kb_lklog_t *l, uint64_t owner);
void kb_lklog_free(kb_lklog_t *l);
/* Request I as LK arguments for taking it again: non-blocking, marked
 * KB_LK_RECLAIM (gfid and fd to be filled by the caller). */
void kb_lklog_args(const kb_lklog_t *l, uint32_t i, kb_args_t *a);

#endif
