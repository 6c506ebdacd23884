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
#define KBF_RAW_INIT_MAX 128         /* bytes of the INIT request kept (fuse/state.h) */

/* From linux/fuse.h 7.40 (Linux 6.9); /usr/include/linux/fuse.h may be older.
 * FUSE_NOTIFY_RESEND: the kernel sends again every request that was read and
 * not answered, with FUSE_UNIQUE_RESEND set in its unique. */
#define KBF_NOTIFY_RESEND 7
#define KBF_UNIQUE_RESEND (1ull << 63)

typedef struct kbf_raw {
    bool want_killpriv_v2;       /* set before mounting; false with -o splice */
    bool init_seen, init_done;   /* atomics: INIT read / its reply written */
    uint32_t kernel_flags;       /* what the kernel's INIT offered */
    uint64_t init_unique;
    uint32_t init_len;           /* INIT as read: header + fuse_init_in (at most KBF_RAW_INIT_MAX) */
    uint8_t init_req[KBF_RAW_INIT_MAX];
    bool killpriv_v2;            /* negotiated (after init_done) */
    uint64_t count[KBF_RAW_NOPS]; /* requests read, by opcode (atomic adds) */
} kbf_raw_t;

/* The request being dispatched on this thread asked the filesystem to
 * clear setuid/setgid (WRITE / SETATTR under KILLPRIV_V2). */
extern _Thread_local bool kbf_rq_kill_suidgid;
/* ... and its unique (0: not read through these hooks). */
extern _Thread_local uint64_t kbf_rq_unique;

/* A request of N bytes was read into BUF: count it, note INIT, set
 * kbf_rq_kill_suidgid for it. */
void kbf_raw_note(kbf_raw_t *st, const void *buf, size_t n);
/* A reply is about to be written: if it is the INIT reply, add
 * FUSE_HANDLE_KILLPRIV_V2 where both sides can. True when it did. */
bool kbf_raw_patch(kbf_raw_t *st, struct iovec *iov, int count);
/* Whether the reply about to be written is the INIT reply (before patching). */
bool kbf_raw_is_init_reply(const kbf_raw_t *st, const struct iovec *iov, int count);
/* Copy an iovec into OUT (at most CAP bytes); the bytes copied. */
size_t kbf_raw_flatten(const struct iovec *iov, int count, void *out, size_t cap);
/* Ask the kernel to send again every request read and not answered
 * (FUSE_NOTIFY_RESEND). 0, or -EINVAL on a kernel without it. */
int kbf_raw_resend(int fd);
/* Name of opcode OP for the counters, NULL for ones not reported. */
const char *kbf_raw_opname(unsigned op);

#endif
