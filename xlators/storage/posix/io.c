/*
 * io.c — data I/O of storage/posix: READ, WRITE, FSYNC, FALLOCATE and
 * RCHECKSUM, through io_uring joined to the graph's event loop.
 *
 * One ring per brick translator. Its completions are signalled on an
 * eventfd (io_uring_register_eventfd) watched by a libevent event on the
 * graph's base, so a slow disk never stalls the loop (DESIGN §8) and every
 * call completes on the loop thread, from the completion handler.
 *
 * A request (struct pio) carries the call in user_data (liburing's
 * io_uring-cp pattern). At most `entries` requests are in the kernel; more
 * wait in a FIFO overflow list. Short transfers are resubmitted for the rest
 * and EAGAIN/EINTR retried, so callers see success, EOF or a real error.
 *
 * Zero copy: a WRITE goes from the caller's kb_buf straight to the kernel
 * (the winder keeps args.data alive until we complete); a READ lands in a
 * fresh 4096-aligned kb_buf handed up in reply.data.
 *
 * O_DIRECT: buffers from kb_buf_new are 4096-aligned. A request whose
 * memory is not aligned goes through an aligned bounce buffer; one whose
 * offset or length is not a multiple of 4096 goes through a buffered twin fd
 * of the same file (O_DIRECT cannot do it at all). Both are rare.
 *
 * Without a ring (io_uring refused, or no event base) the same requests run
 * synchronously with pread/pwrite; semantics are identical.
 *
 * Ownership: a pio holds one reference on its posix_fd (released at finish)
 * and, for READ/RCHECKSUM, its own data buffer (given up after the unwind).
 */
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>
#include <sys/eventfd.h>
#include <event2/event.h>
#include <liburing.h>
#include <openssl/evp.h>
#include "lib/log.h"
#include "xlators/storage/posix/internal.h"

#define PIO_ALIGN 4096u
#define PIO_MAX_RETRIES 64
#define CSUM_DIGEST 32

enum pio_kind { PIO_READ, PIO_WRITE, PIO_FSYNC, PIO_FALLOC, PIO_CSUM, PIO_SFR };

struct pio {
    struct pio *next;         /* overflow list */
    kb_call_t *call;
    posix_priv_t *p;
    posix_fd_t *f;            /* reference */
    enum pio_kind kind;
    int fd;                   /* f->fd or f->bfd */
    char *mem;                /* transfer memory: buf data, caller data or bounce */
    char *bounce;             /* owned, aligned */
    kb_buf_t *buf;            /* READ / CSUM result storage, owned */
    uint64_t off;
    size_t len, done;
    int mode;                 /* fsync: datasync; fallocate: mode */
    int retries;
    uint8_t *holes;           /* CSUM: 1 per block entirely in a hole */
    uint32_t bs;              /* CSUM block size */
};

struct posix_ring {
    struct io_uring ring;
    unsigned entries, inflight;
    unsigned bg;                /* of inflight + overflow: flush-behind, no call */
    int efd;
    struct event *ev;
    struct pio *ovf_head, *ovf_tail;
    uint64_t no_inline_until;   /* CLOCK_MONOTONIC ns: see write_inline */
};

static void pio_complete(struct pio *io, int res);

/* ---------------- submission ---------------- */

static void pio_prep(struct io_uring_sqe *sqe, struct pio *io)
{
    size_t left = io->len - io->done;
    uint64_t off = io->off + io->done;
    switch (io->kind) {
    case PIO_READ:
    case PIO_CSUM:
        io_uring_prep_read(sqe, io->fd, io->mem + io->done, (unsigned)left, off);
        break;
    case PIO_WRITE:
        io_uring_prep_write(sqe, io->fd, io->mem + io->done, (unsigned)left, off);
        break;
    case PIO_FSYNC:
        io_uring_prep_fsync(sqe, io->fd, io->mode ? IORING_FSYNC_DATASYNC : 0);
        break;
    case PIO_FALLOC:
        io_uring_prep_fallocate(sqe, io->fd, io->mode, io->off, (off_t)io->len);
        break;
    case PIO_SFR:
        io_uring_prep_sync_file_range(sqe, io->fd, (unsigned)io->len, io->off,
                                      SYNC_FILE_RANGE_WRITE);
        break;
    }
    io_uring_sqe_set_data(sqe, io);
}

static int pio_sync(struct pio *io)
{
    size_t left = io->len - io->done;
    off_t off = (off_t)(io->off + io->done);
    ssize_t n = 0;
    switch (io->kind) {
    case PIO_READ:
    case PIO_CSUM:
        n = pread(io->fd, io->mem + io->done, left, off);
        break;
    case PIO_WRITE:
        n = pwrite(io->fd, io->mem + io->done, left, off);
        break;
    case PIO_FSYNC:
        n = io->mode ? fdatasync(io->fd) : fsync(io->fd);
        break;
    case PIO_FALLOC:
        n = fallocate(io->fd, io->mode, (off_t)io->off, (off_t)io->len);
        break;
    case PIO_SFR:
        n = sync_file_range(io->fd, (off_t)io->off, (off_t)io->len, SYNC_FILE_RANGE_WRITE);
        break;
    }
    return n < 0 ? -errno : (int)n;
}

/* Hand IO to the kernel now; false when the ring has no room. */
static bool ring_push(struct posix_ring *r, struct pio *io)
{
    struct io_uring_sqe *sqe = r->inflight < r->entries ? io_uring_get_sqe(&r->ring) : NULL;
    if (!sqe)
        return false;
    pio_prep(sqe, io);
    r->inflight++;
    r->bg += io->kind == PIO_SFR;
    int rc = io_uring_submit(&r->ring);
    if (rc < 0 && rc != -EBUSY && rc != -EAGAIN)
        kb_warn(io->p->xl->name, "io_uring_submit: %s", strerror(-rc));
    /* On EBUSY/EAGAIN the SQE stays queued and goes with the next submit. */
    return true;
}

static void pio_submit(struct pio *io)
{
    struct posix_ring *r = io->p->ring;
    if (!r) {
        pio_complete(io, pio_sync(io));
        return;
    }
    if (!r->ovf_head && ring_push(r, io))
        return;
    io->next = NULL;          /* ring full: wait in line, FIFO */
    if (r->ovf_tail)
        r->ovf_tail->next = io;
    else
        r->ovf_head = io;
    r->ovf_tail = io;
}

static void ring_drain_overflow(struct posix_ring *r)
{
    while (r->ovf_head && ring_push(r, r->ovf_head)) {
        r->ovf_head = r->ovf_head->next;
        if (!r->ovf_head)
            r->ovf_tail = NULL;
    }
}

/* Reap every completion; runs on the loop thread. */
static void ring_reap(posix_priv_t *p)
{
    struct posix_ring *r = p->ring;
    struct io_uring_cqe *cqe;
    while (io_uring_peek_cqe(&r->ring, &cqe) == 0) {
        struct pio *io = io_uring_cqe_get_data(cqe);
        int res = cqe->res;
        io_uring_cqe_seen(&r->ring, cqe);
        r->inflight--;
        r->bg -= io->kind == PIO_SFR;
        pio_complete(io, res);
        ring_drain_overflow(r);
    }
    ring_drain_overflow(r);
}

static void ring_event(evutil_socket_t fd, short what, void *arg)
{
    uint64_t v;
    if (read(fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
        kb_warn(POSIX_XL, "eventfd read: %s", strerror(errno));
    ring_reap(arg);
}

int posix_io_init(posix_priv_t *p, struct event_base *base, unsigned entries)
{
    struct posix_ring *r = kb_zalloc(sizeof(*r));
    if (!r)
        return -ENOMEM;
    r->entries = entries;
    int rc = io_uring_queue_init(entries, &r->ring, 0);
    if (rc < 0) {
        free(r);
        return rc;
    }
    r->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (r->efd < 0) {
        rc = -errno;
    } else if ((rc = io_uring_register_eventfd(&r->ring, r->efd)) == 0) {
        r->ev = event_new(base, r->efd, EV_READ | EV_PERSIST, ring_event, p);
        if (!r->ev || event_add(r->ev, NULL))
            rc = -ENOMEM;
    }
    if (rc) {
        if (r->ev)
            event_free(r->ev);
        if (r->efd >= 0)
            close(r->efd);
        io_uring_queue_exit(&r->ring);
        free(r);
        return rc;
    }
    p->ring = r;
    return 0;
}

/* Complete every call the ring still holds (exactly once each). Graph
 * teardown calls this at PARENT_DOWN, while the translators above are still
 * alive to take the completions; fini calls it again (then a no-op). */
void posix_io_drain(posix_priv_t *p)
{
    struct posix_ring *r = p->ring;
    if (!r)
        return;
    while (r->inflight > 0 || r->ovf_head) {
        struct io_uring_cqe *cqe;
        if (r->inflight == 0) {
            ring_drain_overflow(r);
            continue;
        }
        if (io_uring_wait_cqe(&r->ring, &cqe) < 0)
            break;
        ring_reap(p);
    }
}

void posix_io_fini(posix_priv_t *p)
{
    struct posix_ring *r = p->ring;
    if (!r)
        return;
    posix_io_drain(p);
    event_free(r->ev);
    close(r->efd);
    io_uring_queue_exit(&r->ring);
    free(r);
    p->ring = NULL;
}

/* ---------------- completion ---------------- */

static void pio_free(struct pio *io)
{
    posix_fd_put(io->p, io->f);
    free(io->bounce);
    free(io->holes);
    kb_buf_unref(io->buf);
    free(io);
}

static void csum_finish(struct pio *io, kb_reply_t *r);

static void flush_behind(const struct pio *w);

/* After a write whose writer lacks CAP_FSETID: clear setuid/setgid as the
 * VFS would (posix_kill_suidgid), updating ST. */
static void kill_suidgid(const struct pio *io, struct stat *st)
{
    mode_t m = posix_kill_suidgid(st->st_mode & 07777, st->st_gid, &io->call->cred);
    if (m != (st->st_mode & 07777) && fchmod(io->f->fd, m) == 0)
        st->st_mode = (st->st_mode & S_IFMT) | m;
}

static void pio_finish(struct pio *io, int res)
{
    kb_reply_t r = { .status = res };
    if (io->kind == PIO_SFR) {       /* no call: nobody to tell */
        if (res < 0)
            kb_debug(io->p->xl->name, "flush-behind: %s", strerror(-res));
        pio_free(io);
        return;
    }
    if (res >= 0) {
        switch (io->kind) {
        case PIO_READ:
            io->buf->len = io->done;
            r.data = io->buf;
            r.status = (int32_t)io->done;
            break;
        case PIO_WRITE:
        case PIO_FALLOC: {
            struct stat st;
            r.status = io->kind == PIO_WRITE ? (int32_t)io->done : 0;
            if (fstat(io->f->fd, &st) == 0) {
                if (io->kind == PIO_WRITE && (io->call->args->flags & KB_WF_KILL_SUIDGID))
                    kill_suidgid(io, &st);
                posix_iatt(&r.attr, &st, &io->f->gfid);
            } else {
                r.status = -errno;
            }
            break;
        }
        case PIO_CSUM:
            csum_finish(io, &r);
            break;
        case PIO_FSYNC:
            r.status = 0;
            break;
        case PIO_SFR:
            break;
        }
    }
    kb_call_t *call = io->call;
    kb_unwind(call, &r);
    if (r.data != io->buf)
        kb_buf_unref(r.data);
    if (io->kind == PIO_WRITE && r.status >= 0)
        flush_behind(io);         /* after the reply: it is not on the caller's path */
    pio_free(io);
}

static void pio_complete(struct pio *io, int res)
{
    if ((res == -EAGAIN || res == -EINTR) && io->retries++ < PIO_MAX_RETRIES) {
        pio_submit(io);
        return;
    }
    if (res < 0 || io->kind == PIO_FSYNC || io->kind == PIO_FALLOC || io->kind == PIO_SFR) {
        pio_finish(io, res);
        return;
    }
    io->done += (size_t)res;
    bool more = io->done < io->len;
    if (io->kind == PIO_WRITE && res == 0 && more) {
        pio_finish(io, -EIO);  /* no progress and no error: do not spin */
        return;
    }
    /* A read stops at EOF (0). An O_DIRECT read that came back short hit
     * EOF too; the rest would be an unaligned read the kernel refuses. */
    if ((io->kind == PIO_READ || io->kind == PIO_CSUM) &&
        (res == 0 || (io->fd == io->f->fd && (io->f->flags & O_DIRECT))))
        more = false;
    if (more)
        pio_submit(io);
    else
        pio_finish(io, 0);
}

/* ---------------- helpers ---------------- */

static posix_fd_t *fd_for(kb_call_t *call)
{
    const kb_args_t *a = call->args;
    posix_fd_t *f = posix_fd_get(posix_priv(call), a->fd, &a->gfid);
    if (f && f->is_dir) {
        posix_fd_put(posix_priv(call), f);
        f = NULL;
    }
    return f;
}

/* The buffered twin of an O_DIRECT fd, opened on first need. */
static int twin_fd(posix_fd_t *f)
{
    if (f->bfd < 0) {
        char path[64];
        snprintf(path, sizeof(path), "/proc/self/fd/%d", f->fd);
        int fl = (int)(f->flags & (O_ACCMODE | O_APPEND | O_SYNC | O_DSYNC | O_NOATIME));
        f->bfd = open(path, fl | O_CLOEXEC);
        if (f->bfd < 0)
            return -errno;
    }
    return f->bfd;
}

/* The fd for [off, off+len): the buffered twin when O_DIRECT cannot
 * express the request. */
static int fd_pick(posix_fd_t *f, uint64_t off, size_t len)
{
    if (!(f->flags & O_DIRECT) || ((off | len) & (PIO_ALIGN - 1)) == 0)
        return f->fd;
    return twin_fd(f);
}

static struct pio *pio_new(kb_call_t *call, posix_fd_t *f, enum pio_kind kind)
{
    struct pio *io = kb_zalloc(sizeof(*io));
    if (!io)
        return NULL;
    io->call = call;
    io->p = posix_priv(call);
    io->f = f;
    io->kind = kind;
    io->fd = f->fd;
    return io;
}

/* ---------------- ops ---------------- */

void posix_op_read(kb_call_t *call)
{
    posix_priv_t *p = posix_priv(call);
    const kb_args_t *a = call->args;
    posix_fd_t *f = fd_for(call);
    struct pio *io = f ? pio_new(call, f, PIO_READ) : NULL;
    if (!io) {
        posix_fd_put(p, f);
        posix_unwind_status(call, f ? -ENOMEM : -EBADF);
        return;
    }
    io->off = a->off;
    io->len = (size_t)KB_MIN(a->size, (uint64_t)KB_DATA_MAX);
    io->fd = fd_pick(f, io->off, io->len);
    int rc = io->fd < 0 ? io->fd : (io->buf = kb_buf_new(io->len ? io->len : 1)) ? 0 : -ENOMEM;
    if (rc) {
        pio_free(io);
        posix_unwind_status(call, rc);
        return;
    }
    io->mem = io->buf->data;
    if (io->len == 0)
        pio_finish(io, 0);
    else
        pio_submit(io);
}

/*
 * A buffered write (not O_DIRECT) runs at once on the loop thread while the
 * ring is idle. io_uring cannot issue it inline on ext4 (no non-blocking
 * buffered writes there: RWF_NOWAIT gives EOPNOTSUPP), so the ring hands it
 * to an io-wq worker and its completion comes back through the eventfd:
 * two thread wake-ups per write for what is normally a copy into the page
 * cache (sequential 128 KiB writes through FUSE: 1.12x-1.29x faster).
 * Only when nothing is in the ring, so a write never overtakes an earlier
 * request the kernel still holds. O_DIRECT writes (qemu cache=none) keep
 * the ring: they go to the disk, and the kernel issues them asynchronously.
 * DESIGN §8 (a slow disk never stalls the network): a buffered write can
 * still block when the kernel throttles dirty pages; one that took longer
 * than INLINE_SLOW_NS sends every write through the ring for INLINE_OFF_NS.
 */
#define INLINE_SLOW_NS (2 * 1000000ull)
#define INLINE_OFF_NS (1000 * 1000000ull)

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static bool write_inline(const struct pio *io, uint64_t now)
{
    const struct posix_ring *r = io->p->ring;
    bool direct = io->fd == io->f->fd && (io->f->flags & O_DIRECT);
    /* Flush-behind requests change no data: a write may pass them. */
    return r && !direct && r->inflight == r->bg && !r->ovf_head && now >= r->no_inline_until;
}

static void write_now(struct pio *io, uint64_t t0)
{
    struct posix_ring *r = io->p->ring;
    int res = pio_sync(io);
    uint64_t t1 = mono_ns();
    if (t1 - t0 > INLINE_SLOW_NS) {
        r->no_inline_until = t1 + INLINE_OFF_NS;
        kb_debug(io->p->xl->name, "a buffered write took %llu us: through the ring for a while",
                 (unsigned long long)((t1 - t0) / 1000));
    }
    pio_complete(io, res);
}

/*
 * Flush-behind. A brick's buffered writes stay in its page cache until the
 * kernel's writeback gets to them (dirty_expire_centisecs: 30 s) or an
 * fsync comes; the fsync after 100 MiB of writes then waits for all of it
 * to reach the disk, twice over when both replicas share the disk. So once
 * an fd has had `flush-behind` bytes of buffered writes, the range they
 * span is handed to the disk (sync_file_range WRITE: starts writeback,
 * waits for none) on an io-wq worker: the disk works while data still
 * streams in, and the fsync finds little left to write. Durability is
 * unchanged: fsync still decides it. O_DIRECT and O_SYNC/O_DSYNC writes are
 * on the disk already; without a ring nothing is done (it would block the
 * loop thread). A failure is only logged: the data is still in the page
 * cache and the next fsync reports any error (errseq).
 */
static void flush_behind(const struct pio *w)
{
    posix_priv_t *p = w->p;
    posix_fd_t *f = w->f;
    bool direct = w->fd == f->fd && (f->flags & O_DIRECT);
    if (!p->flush_behind || !p->ring || direct || (f->flags & O_DSYNC) || !w->done)
        return;
    uint64_t lo = w->off, hi = w->off + w->done;
    if (f->fb_bytes) {
        lo = KB_MIN(lo, f->fb_lo);
        hi = KB_MAX(hi, f->fb_hi);
    }
    f->fb_lo = lo;
    f->fb_hi = hi;
    f->fb_bytes += w->done;
    if (f->fb_bytes < p->flush_behind)
        return;
    struct pio *io = kb_zalloc(sizeof(*io));
    if (!io)
        return;                   /* the kernel's writeback will do */
    f->fb_bytes = 0;
    f->refs++;                    /* the fd stays open until the kernel is done */
    io->p = p;
    io->f = f;
    io->kind = PIO_SFR;
    io->fd = w->fd;
    io->off = lo;
    /* io_uring takes a 32-bit length; 0 means "to the end of the file". */
    io->len = hi - lo > UINT32_MAX ? 0 : hi - lo;
    pio_submit(io);
}

void posix_op_write(kb_call_t *call)
{
    posix_priv_t *p = posix_priv(call);
    const kb_args_t *a = call->args;
    posix_fd_t *f = fd_for(call);
    int rc = f ? 0 : -EBADF;
    size_t len = a->data ? a->data->len : 0;
    uint64_t t0;
    if (!rc && (a->flags & KB_WF_TRACK_REGIONS) && len)
        rc = posix_regions_track(p, &f->gfid, a->off, len);
    struct pio *io = rc ? NULL : pio_new(call, f, PIO_WRITE);
    if (!rc && !io)
        rc = -ENOMEM;
    if (!rc && (rc = fd_pick(f, a->off, len)) >= 0) {
        io->fd = rc;
        rc = 0;
        io->mem = len ? a->data->data : NULL;
        bool direct = io->fd == f->fd && (f->flags & O_DIRECT);
        if (direct && ((uintptr_t)io->mem & (PIO_ALIGN - 1))) {
            if (posix_memalign((void **)&io->bounce, PIO_ALIGN, len))
                rc = -ENOMEM;
            else
                io->mem = memcpy(io->bounce, io->mem, len);
        }
    }
    if (rc) {
        if (io)
            pio_free(io);
        else
            posix_fd_put(p, f);
        posix_unwind_status(call, rc);
        return;
    }
    io->off = a->off;
    io->len = len;
    if (len == 0)
        pio_finish(io, 0);
    else if (write_inline(io, t0 = mono_ns()))
        write_now(io, t0);
    else
        pio_submit(io);
}

void posix_op_fsync(kb_call_t *call)
{
    posix_fd_t *f = fd_for(call);
    struct pio *io = f ? pio_new(call, f, PIO_FSYNC) : NULL;
    if (!io) {
        if (f)
            posix_fd_put(posix_priv(call), f);
        posix_unwind_status(call, f ? -ENOMEM : -EBADF);
        return;
    }
    io->mode = call->args->flags != 0;
    pio_submit(io);
}

void posix_op_fallocate(kb_call_t *call)
{
    posix_priv_t *p = posix_priv(call);
    const kb_args_t *a = call->args;
    int mode = (int)(a->flags & ~(KB_WF_TRACK_REGIONS | KB_WF_KILL_SUIDGID));
    /* The modes that keep offsets in place; collapse/insert would shift
     * data under every other layer's feet. */
    static const int ok_modes[] = {
        0, FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
        FALLOC_FL_ZERO_RANGE, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE,
    };
    int rc = -EOPNOTSUPP;
    for (size_t i = 0; i < KB_ARRAY_SIZE(ok_modes); i++)
        if (mode == ok_modes[i])
            rc = 0;
    if (!rc && (a->size == 0 || (int64_t)a->off < 0 || (int64_t)a->size < 0))
        rc = -EINVAL;
    posix_fd_t *f = rc ? NULL : fd_for(call);
    if (!rc && !f)
        rc = -EBADF;
    if (!rc && (a->flags & KB_WF_TRACK_REGIONS))
        rc = posix_regions_track(p, &f->gfid, a->off, a->size);
    struct pio *io = rc ? NULL : pio_new(call, f, PIO_FALLOC);
    if (!io) {
        posix_fd_put(p, f);
        posix_unwind_status(call, rc ? rc : -ENOMEM);
        return;
    }
    io->mode = mode;
    io->off = a->off;
    io->len = a->size;
    pio_submit(io);
}

/* ---------------- rchecksum ---------------- */

/* Mark blocks of [off, off+len) that hold no data at all (SEEK_DATA). */
static int csum_holes(struct pio *io, int fd)
{
    size_t nb = (io->len + io->bs - 1) / io->bs;
    if (!(io->holes = malloc(nb ? nb : 1)))
        return -ENOMEM;
    memset(io->holes, 1, nb);
    uint64_t end = io->off + io->len, pos = io->off;
    while (pos < end) {
        off_t d = lseek(fd, (off_t)pos, SEEK_DATA);
        if (d < 0) {
            if (errno == ENXIO)
                break;        /* no data from pos on */
            memset(io->holes, 0, nb);   /* cannot tell: hash everything */
            return 0;
        }
        if ((uint64_t)d >= end)
            break;
        off_t h = lseek(fd, d, SEEK_HOLE);
        uint64_t hend = h < 0 ? end : KB_MIN((uint64_t)h, end);
        for (uint64_t b = ((uint64_t)d - io->off) / io->bs; b * io->bs + io->off < hend; b++)
            io->holes[b] = 0;
        pos = hend;
    }
    return 0;
}

static void csum_finish(struct pio *io, kb_reply_t *r)
{
    size_t nb = (io->done + io->bs - 1) / io->bs;
    kb_buf_t *out = kb_buf_new(nb ? nb * CSUM_DIGEST : 1);
    if (!out) {
        r->status = -ENOMEM;
        return;
    }
    for (size_t i = 0; i < nb; i++) {
        uint8_t *md = (uint8_t *)out->data + i * CSUM_DIGEST;
        size_t bl = KB_MIN((size_t)io->bs, io->done - i * io->bs);
        unsigned mdlen = 0;
        if (io->holes[i])
            memset(md, 0, CSUM_DIGEST);   /* a hole: heal keeps it a hole */
        else if (!EVP_Digest(io->mem + i * io->bs, bl, md, &mdlen, EVP_sha256(), NULL)) {
            kb_buf_unref(out);
            r->status = -EIO;
            return;
        }
    }
    out->len = nb * CSUM_DIGEST;
    r->data = out;
    r->off = io->done;
    r->status = 0;
}

static int csum_setup(struct pio *io, const kb_args_t *a)
{
    struct stat st;
    if (fstat(io->f->fd, &st))
        return -errno;
    uint32_t bs = a->flags;
    uint64_t want = KB_MIN(a->size, (uint64_t)KB_DATA_MAX);
    if (want >= bs)
        want -= want % bs;    /* whole blocks, except the file's last one */
    io->bs = bs;
    io->off = a->off;
    io->len = a->off < (uint64_t)st.st_size ? (size_t)KB_MIN(want, (uint64_t)st.st_size - a->off) : 0;
    /* Checksums read through the page cache: no alignment rules. */
    int fd = (io->f->flags & O_DIRECT) ? twin_fd(io->f) : io->f->fd;
    if (fd < 0)
        return fd;
    io->fd = fd;
    if (!(io->buf = kb_buf_new(io->len ? io->len : 1)))
        return -ENOMEM;
    io->mem = io->buf->data;
    return csum_holes(io, fd);
}

/* RCHECKSUM: args.off/size, flags = block size; reply.data = one SHA-256
 * per block, reply.off = bytes covered (short at EOF, capped at
 * KB_DATA_MAX per call: the caller continues from off + reply.off). */
void posix_op_rchecksum(kb_call_t *call)
{
    posix_priv_t *p = posix_priv(call);
    const kb_args_t *a = call->args;
    if (a->flags == 0 || a->flags > KB_DATA_MAX) {
        posix_unwind_status(call, -EINVAL);
        return;
    }
    posix_fd_t *f = fd_for(call);
    struct pio *io = f ? pio_new(call, f, PIO_CSUM) : NULL;
    if (!io) {
        posix_fd_put(p, f);
        posix_unwind_status(call, f ? -ENOMEM : -EBADF);
        return;
    }
    int rc = csum_setup(io, a);
    if (rc) {
        pio_free(io);
        posix_unwind_status(call, rc);
    } else if (io->len == 0) {
        pio_finish(io, 0);
    } else {
        pio_submit(io);
    }
}
