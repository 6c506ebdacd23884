/*
 * rawio.c — what kembar-fuse reads from and writes to /dev/fuse, seen raw
 * (libfuse's custom I/O hooks, installed by fuse/main.c), for the parts of
 * the protocol libfuse 3.14 does not pass on.
 *
 * FUSE_HANDLE_KILLPRIV_V2. Without it the kernel asks the filesystem for
 * security.capability before every write(2) to a file (file_remove_privs:
 * FUSE mounts are never SB_NOSEC), so each write is two requests; measured
 * here, sequential 128 KiB writes ran 15-25% faster without that extra
 * round trip. With it the superblock is SB_NOSEC (an inode without
 * setuid/setgid/capabilities is remembered as such) and the filesystem
 * kills setuid/setgid itself where the kernel asks, by a flag on the
 * request: FUSE_WRITE_KILL_SUIDGID on a WRITE and FATTR_KILL_SUIDGID on a
 * SETATTR, both set when the caller lacks CAP_FSETID. libfuse 3.14 knows
 * neither the capability nor the flags, so:
 *  - the INIT reply (the first reply there is: the kernel sends nothing
 *    else before it) gets FUSE_HANDLE_KILLPRIV_V2 added when the kernel
 *    offered it. libfuse 3.14 answers with protocol 7.31, older than the
 *    flag (7.33), but the kernel takes INIT flags whatever the minor, and
 *    the requests keep their 7.31 layout: write_flags (7.9) and setattr's
 *    valid mask carry the kill flags;
 *  - each request read is looked at before libfuse dispatches it, on the
 *    same thread, and the flag of the one being dispatched is left in a
 *    thread-local (kbf_rq_kill_suidgid) for the writes of fuse/file.c and
 *    the truncates of fuse/attr.c, which send it on as KB_WF_KILL_SUIDGID:
 *    the brick clears setuid, and setgid when the file is group-executable,
 *    as the VFS does (xlators/storage/posix/io.c).
 * Capabilities themselves are dropped by the brick's own file system on
 * every write and truncate (its writes are real writes), and a chown on a
 * brick clears setuid/setgid as on any local disk.
 * With -o splice libfuse reads requests through a pipe, past these hooks,
 * so splice keeps the old behaviour (no KILLPRIV_V2).
 *
 * Also counted here: requests per opcode, for the SIGUSR1 state dump.
 */
#include <errno.h>
#include <linux/fuse.h>
#include <stddef.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "fuse/rawio.h"

_Thread_local bool kbf_rq_kill_suidgid;
_Thread_local uint64_t kbf_rq_unique;

/* Requests fewer than this many bytes carry no argument we look at. */
#define HDR sizeof(struct fuse_in_header)

void kbf_raw_note(kbf_raw_t *st, const void *buf, size_t n)
{
    kbf_rq_kill_suidgid = false;
    kbf_rq_unique = 0;
    if (n < HDR)
        return;
    struct fuse_in_header h;
    memcpy(&h, buf, sizeof(h));
    kbf_rq_unique = h.unique;
    const char *arg = (const char *)buf + HDR;
    size_t alen = n - HDR;
    if (h.opcode < KBF_RAW_NOPS)
        __atomic_fetch_add(&st->count[h.opcode], 1, __ATOMIC_RELAXED);
    switch (h.opcode) {
    case FUSE_INIT:
        if (alen >= offsetof(struct fuse_init_in, flags) + sizeof(uint32_t)) {
            struct fuse_init_in in = { 0 };
            memcpy(&in, arg, KB_MIN(alen, sizeof(in)));
            st->kernel_flags = in.flags;
            st->init_unique = h.unique;
            st->init_len = (uint32_t)KB_MIN(n, sizeof(st->init_req));
            memcpy(st->init_req, buf, st->init_len);
            __atomic_store_n(&st->init_seen, true, __ATOMIC_RELEASE);
        }
        break;
    case FUSE_WRITE:
        if (alen >= sizeof(struct fuse_write_in)) {
            struct fuse_write_in in;
            memcpy(&in, arg, sizeof(in));
            kbf_rq_kill_suidgid = (in.write_flags & FUSE_WRITE_KILL_SUIDGID) != 0;
        }
        break;
    case FUSE_SETATTR:
        if (alen >= sizeof(uint32_t)) {
            uint32_t valid;
            memcpy(&valid, arg, sizeof(valid));
            kbf_rq_kill_suidgid = (valid & FATTR_KILL_SUIDGID) != 0;
        }
        break;
    }
}

bool kbf_raw_patch(kbf_raw_t *st, struct iovec *iov, int count)
{
    if (!st->want_killpriv_v2 || __atomic_load_n(&st->init_done, __ATOMIC_ACQUIRE) ||
        !__atomic_load_n(&st->init_seen, __ATOMIC_ACQUIRE))
        return false;
    struct fuse_out_header h;
    if (count < 2 || iov[0].iov_len < sizeof(h))
        return false;
    memcpy(&h, iov[0].iov_base, sizeof(h));
    if (h.unique != st->init_unique)
        return false;
    __atomic_store_n(&st->init_done, true, __ATOMIC_RELEASE);
    struct fuse_init_out out;
    size_t fl = offsetof(struct fuse_init_out, flags);
    if (h.error != 0 || iov[1].iov_len < fl + sizeof(out.flags))
        return false;
    memcpy(&out, iov[1].iov_base, fl + sizeof(out.flags));
    if (out.major != 7 || out.minor < 9 || !(st->kernel_flags & FUSE_HANDLE_KILLPRIV_V2))
        return false;
    out.flags |= FUSE_HANDLE_KILLPRIV_V2;
    memcpy((char *)iov[1].iov_base + fl, &out.flags, sizeof(out.flags));
    st->killpriv_v2 = true;
    return true;
}

bool kbf_raw_is_init_reply(const kbf_raw_t *st, const struct iovec *iov, int count)
{
    struct fuse_out_header h;
    if (__atomic_load_n(&st->init_done, __ATOMIC_ACQUIRE) || !__atomic_load_n(&st->init_seen, __ATOMIC_ACQUIRE) ||
        count < 1 || iov[0].iov_len < sizeof(h))
        return false;
    memcpy(&h, iov[0].iov_base, sizeof(h));
    return h.unique == st->init_unique;
}

size_t kbf_raw_flatten(const struct iovec *iov, int count, void *out, size_t cap)
{
    size_t n = 0;
    for (int i = 0; i < count && n < cap; i++) {
        size_t k = KB_MIN(iov[i].iov_len, cap - n);
        memcpy((char *)out + n, iov[i].iov_base, k);
        n += k;
    }
    return n;
}

int kbf_raw_resend(int fd)
{
    struct fuse_out_header h = { .len = sizeof(h), .error = KBF_NOTIFY_RESEND, .unique = 0 };
    ssize_t n = write(fd, &h, sizeof(h));
    return n == (ssize_t)sizeof(h) ? 0 : n < 0 ? -errno : -EIO;
}

const char *kbf_raw_opname(unsigned op)
{
    switch (op) {
    case FUSE_LOOKUP: return "LOOKUP";
    case FUSE_FORGET: return "FORGET";
    case FUSE_GETATTR: return "GETATTR";
    case FUSE_SETATTR: return "SETATTR";
    case FUSE_OPEN: return "OPEN";
    case FUSE_READ: return "READ";
    case FUSE_WRITE: return "WRITE";
    case FUSE_RELEASE: return "RELEASE";
    case FUSE_FSYNC: return "FSYNC";
    case FUSE_SETXATTR: return "SETXATTR";
    case FUSE_GETXATTR: return "GETXATTR";
    case FUSE_LISTXATTR: return "LISTXATTR";
    case FUSE_FLUSH: return "FLUSH";
    case FUSE_INIT: return "INIT";
    case FUSE_READDIRPLUS: return "READDIRPLUS";
    case FUSE_CREATE: return "CREATE";
    case FUSE_BATCH_FORGET: return "BATCH_FORGET";
    case FUSE_FALLOCATE: return "FALLOCATE";
    default: return NULL;
    }
}
