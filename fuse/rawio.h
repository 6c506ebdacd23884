/*
 * rawio.h — raw /dev/fuse traffic as kembar-fuse sees it before libfuse
 * does (fuse/rawio.c): FUSE_HANDLE_KILLPRIV_V2 and per-opcode counters.
 */
#ifndef KB_FUSE_RAWIO_H
#define KB_FUSE_RAWIO_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "lib/common.h"

#define KBF_RAW_NOPS 64

typedef struct kbf_raw {
    bool want_killpriv_v2;       /* set before mounting; false with -o splice */
    bool init_seen, init_done;   /* atomics: INIT read / its reply written */
    uint32_t kernel_flags;       /* what the kernel's INIT offered */
    uint64_t init_unique;
    bool killpriv_v2;            /* negotiated (after init_done) */
    uint64_t count[KBF_RAW_NOPS]; /* requests read, by opcode (atomic adds) */
} kbf_raw_t;

/* The request being dispatched on this thread asked the filesystem to
 * clear setuid/setgid (WRITE / SETATTR under KILLPRIV_V2). */
extern _Thread_local bool kbf_rq_kill_suidgid;

/* A request of N bytes was read into BUF: count it, note INIT, set
 * kbf_rq_kill_suidgid for it. */
void kbf_raw_note(kbf_raw_t *st, const void *buf, size_t n);
/* A reply is about to be written: if it is the INIT reply, add
 * FUSE_HANDLE_KILLPRIV_V2 where both sides can. True when it did. */
bool kbf_raw_patch(kbf_raw_t *st, struct iovec *iov, int count);
/* Name of opcode OP for the counters, NULL for ones not reported. */
const char *kbf_raw_opname(unsigned op);

#endif
