/*
 * local_read.c — protocol/client reads file data of a brick on this host
 * from the brick's own files, without a round trip to its kembard.
 *
 * Why: a read through kembard costs a loopback TCP round trip and two more
 * wake-ups on top of the disk (BENCHMARKS.md, issue 16). A hyperconverged
 * cluster has a replica on every hypervisor, and replicate reads that one
 * (cluster.choose-local).
 *
 * When (client.c decides, the checks run here): the connection never leaves
 * this host (rpc_conn_same_host), the brick sent its id in the handshake,
 * and the directory at the brick's path HERE carries that id in
 * trusted.kembar.brick-id — so it is the directory kembard serves, not one
 * of the same name in another mount namespace, nor an unmounted disk's
 * mount point. Only root reads trusted.* attributes: other clients read
 * through kembard, as before. Off while the connection is down.
 *
 * What: READ only, on an fd this client opened through kembard (the brick
 * checked access then, and replicate picked this copy as a source for the
 * read). The file is opened by its gfid handle (posix.h: a hard link under
 * .kembar/handles; a directory's is a symlink, never followed) with the fd's
 * O_DIRECT, and used once it carries that gfid in trusted.kembar.gfid;
 * closed at RELEASE or when the connection goes. The first read of an fd
 * starts that open and goes to kembard itself.
 *
 * Never blocks the loop on the brick's file system: the id check, the
 * opens, their checks and the reads are all io_uring operations, reaped
 * from the eventfd the graph's loop watches (as storage/posix does). A
 * local disk that hangs must not freeze the mount, whose other copies are
 * fine: kembard on that disk stops answering and is declared down, and a
 * read here not answered within the ping-timeout is handed back, as is
 * anything but a full read or a clean EOF — no handle (an object the brick
 * moved), an unaligned O_DIRECT request, an error (kembard then reports the
 * real one and replicate fails over as usual), a full ring. So a read never
 * fails here on its own.
 *
 * What stays true: kembard acknowledges a write once its write system call
 * completed, so the page cache (or, for O_DIRECT, the disk) holds it before
 * any read that follows it; an O_DIRECT write drops the cached pages it
 * covers and an O_DIRECT read writes dirty ones first. Brick locks never
 * applied to reads. Not counted by the brick's `volume profile` or `volume
 * top`: the client's state dump counts them (lread_counts).
 *
 * Ownership: the table holds one reference on each lr_fd, every operation
 * in flight on it one more; its descriptor is closed at the last, so a
 * resubmitted short read never meets a reused descriptor number. An
 * operation is freed when the kernel has answered it, never before: a read
 * handed back at its timeout keeps its buffer until then.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/eventfd.h>
#include <event2/event.h>
#include <liburing.h>
#include "lib/common.h"
#include "lib/log.h"
#include "xlators/fop.h"
#include "xlators/storage/posix/posix.h"
#include "xlators/protocol/client/local_read.h"

#define LR_ENTRIES 64        /* operations in the kernel at once; reads past that go to the brick */
#define LR_BUCKETS 256
#define LR_ALIGN 4096u
#define LR_RETRIES 16        /* EAGAIN / EINTR resubmissions of one read */
#define LR_DRAIN_MS 5000     /* lread_free waits this long for the kernel */
#define LR_TICK_MS 500       /* how often reads in flight are checked against the timeout */

/* lr_fd.lfd when not a descriptor */
enum { LFD_UNOPENED = -1, LFD_NONE = -2, LFD_OPENING = -3 };

struct lr_fd {
    struct lr_fd *next;
    uint64_t fd;              /* the client's fd number (connection generation included) */
    kb_gfid_t gfid;
    uint32_t flags;
    int lfd;                  /* our descriptor, or LFD_* */
    int refs;
};

enum lr_kind { LR_ENABLE, LR_OPEN, LR_CHECK, LR_READ };

struct lr_op {
    struct lr_op *prev, *next;   /* in flight */
    lread_t *lr;
    enum lr_kind kind;
    struct lr_fd *f;             /* OPEN, CHECK, READ: a reference */
    char *path;                  /* ENABLE, OPEN: owned */
    uint8_t val[16];             /* ENABLE, CHECK: the attribute read */
    kb_gfid_t want;              /* ENABLE: the brick's id */
    uint64_t gen;                /* ENABLE: lr->gen when it started */
    int lfd;                     /* CHECK: the descriptor OPEN gave */
    /* READ */
    lread_done_fn done;
    void *cookie;
    kb_buf_t *buf;               /* owned until the kernel answered */
    uint64_t off;
    size_t len, got;
    int retries;
    uint64_t start_ms;
    bool handed_back;            /* timed out: DONE ran, the kernel's answer is dropped */
};

struct lread {
    char *name;
    struct event_base *base;
    uint32_t timeout_ms;
    bool ring_ok;
    struct io_uring ring;
    int efd;
    struct event *ev, *tick;
    struct lr_op *ops;           /* in flight, newest first */
    unsigned inflight;
    uint64_t gen;                /* bumped by enable and disable: older id checks are void */
    char *brick;                 /* the brick's path here, once its id checked out */
    struct lr_fd *bucket[LR_BUCKETS];
    struct lread_counts n;
};

static void lr_complete(struct lr_op *op, int res);

/* ---------------- the fd table ---------------- */

static size_t lr_slot(uint64_t fd)
{
    return (size_t)((fd ^ (fd >> 48)) * 0x9e3779b97f4a7c15ull >> 56) % LR_BUCKETS;
}

static struct lr_fd *lr_find(lread_t *lr, uint64_t fd)
{
    for (struct lr_fd *f = lr->bucket[lr_slot(fd)]; f; f = f->next)
        if (f->fd == fd)
            return f;
    return NULL;
}

static void lr_fd_put(struct lr_fd *f)
{
    if (!f || --f->refs > 0)
        return;
    if (f->lfd >= 0)
        close(f->lfd);
    free(f);
}

static struct lr_fd *lr_unhash(lread_t *lr, uint64_t fd)
{
    for (struct lr_fd **pp = &lr->bucket[lr_slot(fd)]; *pp; pp = &(*pp)->next)
        if ((*pp)->fd == fd) {
            struct lr_fd *f = *pp;
            *pp = f->next;
            f->next = NULL;
            return f;
        }
    return NULL;
}

void lread_opened(lread_t *lr, uint64_t fd, const kb_gfid_t *gfid, uint32_t flags)
{
    if (!lread_enabled(lr))
        return;
    lr_fd_put(lr_unhash(lr, fd));      /* a number the brick handed out again */
    struct lr_fd *f = kb_zalloc(sizeof(*f));
    if (!f)
        return;                        /* its reads go to the brick */
    f->fd = fd;
    f->gfid = *gfid;
    f->flags = flags;
    f->lfd = LFD_UNOPENED;
    f->refs = 1;
    size_t s = lr_slot(fd);
    f->next = lr->bucket[s];
    lr->bucket[s] = f;
}

void lread_released(lread_t *lr, uint64_t fd)
{
    if (lr)
        lr_fd_put(lr_unhash(lr, fd));
}

/* ---------------- operations ---------------- */

static struct lr_op *lr_op_new(lread_t *lr, enum lr_kind kind, struct lr_fd *f)
{
    struct lr_op *op = kb_zalloc(sizeof(*op));
    if (!op)
        return NULL;
    op->lr = lr;
    op->kind = kind;
    op->lfd = -1;
    if ((op->f = f))
        f->refs++;
    return op;
}

static void lr_op_free(struct lr_op *op)
{
    if (!op)
        return;
    lr_fd_put(op->f);
    kb_buf_unref(op->buf);
    free(op->path);
    free(op);
}

/* Queue OP's next step in the ring and submit it; the in-flight list holds
 * it until its completion is reaped. */
static int lr_submit(struct lr_op *op)
{
    lread_t *lr = op->lr;
    struct io_uring_sqe *sqe = io_uring_get_sqe(&lr->ring);
    if (!sqe)
        return -EBUSY;
    switch (op->kind) {
    case LR_ENABLE:
        io_uring_prep_getxattr(sqe, KB_XATTR_BRICK_ID, (char *)op->val, op->path, sizeof(op->val));
        break;
    case LR_OPEN:
        io_uring_prep_openat(sqe, AT_FDCWD, op->path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | (int)(op->f->flags & O_DIRECT), 0);
        break;
    case LR_CHECK:
        io_uring_prep_fgetxattr(sqe, op->lfd, KB_XATTR_GFID, (char *)op->val, sizeof(op->val));
        break;
    case LR_READ:
        io_uring_prep_read(sqe, op->f->lfd, op->buf->data + op->got, (unsigned)(op->len - op->got), op->off + op->got);
        break;
    }
    io_uring_sqe_set_data(sqe, op);
    int rc = io_uring_submit(&lr->ring);
    if (rc < 0)
        return rc;
    op->prev = NULL;
    op->next = lr->ops;
    if (lr->ops)
        lr->ops->prev = op;
    lr->ops = op;
    lr->inflight++;
    /* Armed once, not per operation: at queue depth 1 every read would
     * otherwise move the timer (lr_on_tick re-arms it while any is out). */
    if (lr->tick && !evtimer_pending(lr->tick, NULL)) {
        struct timeval tv = { 0, LR_TICK_MS * 1000 };
        evtimer_add(lr->tick, &tv);
    }
    return 0;
}

static void lr_unlink(struct lr_op *op)
{
    lread_t *lr = op->lr;
    if (op->prev)
        op->prev->next = op->next;
    else
        lr->ops = op->next;
    if (op->next)
        op->next->prev = op->prev;
    op->prev = op->next = NULL;
    lr->inflight--;
}

static void lr_read_end(struct lr_op *op, int res)
{
    lread_t *lr = op->lr;
    if (!op->handed_back) {
        if (res < 0) {
            lr->n.handed_back++;
            op->done(op->cookie, res, NULL);
        } else {
            lr->n.served++;
            op->buf->len = op->got;
            op->done(op->cookie, (int)op->got, op->buf);
        }
    }
    lr_op_free(op);
}

static void lr_read_complete(struct lr_op *op, int res)
{
    if (op->handed_back) {
        lr_op_free(op);               /* its call went to the brick at the timeout */
        return;
    }
    if ((res == -EAGAIN || res == -EINTR) && op->retries++ < LR_RETRIES) {
        if (lr_submit(op) == 0)
            return;
        res = -EBUSY;
    }
    if (res < 0) {
        lr_read_end(op, res);
        return;
    }
    op->got += (size_t)res;
    /* EOF: 0, or any short O_DIRECT read (the rest would be an unaligned
     * read the kernel refuses; storage/posix stops there too). A short
     * buffered read goes on for the rest. */
    bool more = res > 0 && op->got < op->len && !(op->f->flags & O_DIRECT);
    if (more && lr_submit(op) == 0)
        return;
    lr_read_end(op, more ? -EBUSY : 0);
}

static void lr_enable_complete(struct lr_op *op, int res)
{
    lread_t *lr = op->lr;
    if (op->gen == lr->gen) {
        if (res == (int)sizeof(op->val) && memcmp(op->val, op->want.b, sizeof(op->val)) == 0) {
            lr->brick = op->path;
            op->path = NULL;
            kb_info(lr->name, "brick %s is on this host: its files are read here", lr->brick);
        } else {
            kb_info(lr->name, "brick %s is on this host, but read through kembard: %s", op->path,
                    res >= 0 ? "the directory here is another brick"
                    : res == -ENODATA ? "no brick id readable on the directory here (not root?)"
                                      : strerror(-res));
        }
    }
    lr_op_free(op);
}

static void lr_open_complete(struct lr_op *op, int res)
{
    struct lr_fd *f = op->f;
    if (op->kind == LR_OPEN && res >= 0) {
        op->kind = LR_CHECK;          /* the same object? (a handle names a gfid) */
        op->lfd = res;
        if (lr_submit(op) == 0)
            return;
        res = -EBUSY;
    }
    bool ok = op->kind == LR_CHECK && res == (int)sizeof(op->val) && memcmp(op->val, f->gfid.b, sizeof(op->val)) == 0;
    if (ok) {
        f->lfd = op->lfd;             /* closed with F */
    } else {
        if (op->lfd >= 0)
            close(op->lfd);
        f->lfd = LFD_NONE;
        kb_debug(op->lr->name, "local reads: %s: %s (read at the brick)",
                 kb_gfid_str(&f->gfid, (char[KB_GFID_STRLEN]){ 0 }), res < 0 ? strerror(-res) : "another object");
    }
    lr_op_free(op);
}

static void lr_complete(struct lr_op *op, int res)
{
    switch (op->kind) {
    case LR_READ:
        lr_read_complete(op, res);
        break;
    case LR_ENABLE:
        lr_enable_complete(op, res);
        break;
    case LR_OPEN: case LR_CHECK:
        lr_open_complete(op, res);
        break;
    }
}

static void lr_reap(lread_t *lr)
{
    struct io_uring_cqe *cqe;
    while (io_uring_peek_cqe(&lr->ring, &cqe) == 0) {
        struct lr_op *op = io_uring_cqe_get_data(cqe);
        int res = cqe->res;
        io_uring_cqe_seen(&lr->ring, cqe);
        lr_unlink(op);
        lr_complete(op, res);
    }
}

static void lr_on_event(evutil_socket_t fd, short what, void *arg)
{
    lread_t *lr = arg;
    uint64_t v;
    if (read(lr->efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
        kb_debug(lr->name, "local reads: eventfd: %s", strerror(errno));
    lr_reap(lr);
}

/* Reads in flight past the timeout go to the brick; the kernel keeps their buffers. */
static void lr_on_tick(evutil_socket_t fd, short what, void *arg)
{
    lread_t *lr = arg;
    uint64_t now = kb_now_ms();
    for (struct lr_op *op = lr->ops; op; op = op->next)
        if (op->kind == LR_READ && !op->handed_back && now - op->start_ms >= lr->timeout_ms) {
            op->handed_back = true;   /* the kernel keeps OP until it answers */
            lr->n.handed_back++;
            lr->n.timeouts++;
            kb_warn(lr->name, "local reads: no answer from the disk of brick %s in %u ms: read at the brick",
                    lr->brick ? lr->brick : "?", lr->timeout_ms);
            /* DONE may start other operations: one per pass, the tick comes back at once */
            struct timeval now_tv = { 0, 0 };
            evtimer_add(lr->tick, &now_tv);
            op->done(op->cookie, -ETIMEDOUT, NULL);
            return;
        }
    if (lr->inflight) {
        struct timeval tv = { 0, LR_TICK_MS * 1000 };
        evtimer_add(lr->tick, &tv);
    }
}

static int lr_ring_up(lread_t *lr)
{
    if (lr->ring_ok)
        return 0;
    int rc = io_uring_queue_init(LR_ENTRIES, &lr->ring, 0);
    if (rc < 0)
        return rc;
    lr->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (lr->efd < 0 || (rc = io_uring_register_eventfd(&lr->ring, lr->efd)) < 0 ||
        !(lr->ev = event_new(lr->base, lr->efd, EV_READ | EV_PERSIST, lr_on_event, lr)) || event_add(lr->ev, NULL)) {
        rc = rc < 0 ? rc : lr->efd < 0 ? -errno : -ENOMEM;
        if (lr->ev)
            event_free(lr->ev);
        lr->ev = NULL;
        if (lr->efd >= 0)
            close(lr->efd);
        lr->efd = -1;
        io_uring_queue_exit(&lr->ring);
        return rc;
    }
    lr->ring_ok = true;
    return 0;
}

/* ---------------- API ---------------- */

lread_t *lread_new(struct event_base *base, const char *name, uint32_t timeout_ms)
{
    lread_t *lr = kb_zalloc(sizeof(*lr));
    if (!lr)
        return NULL;
    lr->name = kb_strdup0(name ? name : "client");
    lr->base = base;
    lr->timeout_ms = timeout_ms ? timeout_ms : 1;
    lr->efd = -1;
    lr->tick = evtimer_new(base, lr_on_tick, lr);
    if (!lr->name || !lr->tick) {
        if (lr->tick)
            event_free(lr->tick);
        free(lr->name);
        free(lr);
        return NULL;
    }
    return lr;
}

int lread_enable(lread_t *lr, const char *path, const kb_gfid_t *id)
{
    lread_disable(lr);
    int rc = lr_ring_up(lr);
    struct lr_op *op = rc ? NULL : lr_op_new(lr, LR_ENABLE, NULL);
    if (!rc && (!op || !(op->path = kb_strdup0(path))))
        rc = -ENOMEM;
    if (!rc) {
        op->want = *id;
        op->gen = lr->gen;
        rc = lr_submit(op);
    }
    if (rc && op)
        lr_op_free(op);
    return rc;
}

void lread_disable(lread_t *lr)
{
    if (!lr)
        return;
    lr->gen++;
    free(lr->brick);
    lr->brick = NULL;
    for (size_t s = 0; s < LR_BUCKETS; s++)
        while (lr->bucket[s]) {
            struct lr_fd *f = lr->bucket[s];
            lr->bucket[s] = f->next;
            f->next = NULL;
            lr_fd_put(f);
        }
}

bool lread_enabled(const lread_t *lr)
{
    return lr && lr->brick;
}

/* Start opening F's object by its handle (the read that asked goes to the brick). */
static int lr_open_start(lread_t *lr, struct lr_fd *f)
{
    char rel[POSIX_HANDLE_REL_LEN];
    posix_handle_rel(&f->gfid, rel);
    struct lr_op *op = lr_op_new(lr, LR_OPEN, f);
    if (!op || asprintf(&op->path, "%s/" KB_INTERNAL_DIR "/handles/%s", lr->brick, rel) < 0) {
        if (op)
            op->path = NULL;
        lr_op_free(op);
        return -ENOMEM;
    }
    int rc = lr_submit(op);
    if (rc) {
        lr_op_free(op);
        return rc;
    }
    f->lfd = LFD_OPENING;
    return -EAGAIN;
}

int lread_read(lread_t *lr, uint64_t fd, uint64_t off, size_t len, lread_done_fn done, void *cookie)
{
    if (!lread_enabled(lr))
        return -ENOTCONN;
    struct lr_fd *f = lr_find(lr, fd);
    if (!f)
        return -EBADF;
    if (!len || len > KB_DATA_MAX || ((f->flags & O_DIRECT) && ((off | len) & (LR_ALIGN - 1))))
        return -EINVAL;
    if (f->lfd == LFD_UNOPENED)
        return lr_open_start(lr, f);
    if (f->lfd < 0)
        return f->lfd == LFD_OPENING ? -EAGAIN : -ENOENT;
    struct lr_op *op = lr_op_new(lr, LR_READ, f);
    if (!op || !(op->buf = kb_buf_new(len))) {
        lr_op_free(op);
        return -ENOMEM;
    }
    op->done = done;
    op->cookie = cookie;
    op->off = off;
    op->len = len;
    op->start_ms = kb_now_ms();
    int rc = lr_submit(op);
    if (rc)
        lr_op_free(op);
    return rc;
}

void lread_counts(const lread_t *lr, struct lread_counts *c)
{
    *c = lr ? lr->n : (struct lread_counts){ 0 };
}

int lread_test_use_fd(lread_t *lr, uint64_t fd, int lfd)
{
    struct lr_fd *f = lr ? lr_find(lr, fd) : NULL;
    if (!f)
        return -EBADF;
    if (f->lfd >= 0)
        close(f->lfd);
    f->lfd = lfd;
    return 0;
}

void lread_free(lread_t *lr)
{
    if (!lr)
        return;
    lread_disable(lr);
    event_free(lr->tick);
    lr->tick = NULL;
    uint64_t end = kb_now_ms() + LR_DRAIN_MS;
    while (lr->ring_ok && lr->inflight && kb_now_ms() < end) {
        struct io_uring_cqe *cqe;
        struct __kernel_timespec ts = { .tv_nsec = 100 * 1000000LL };
        io_uring_wait_cqe_timeout(&lr->ring, &cqe, &ts);
        lr_reap(lr);
    }
    bool stuck = lr->inflight > 0;
    if (stuck) {
        kb_warn(lr->name, "local reads: %u operations still in the kernel after %d ms; their buffers are left",
                lr->inflight, LR_DRAIN_MS);
        for (struct lr_op *op = lr->ops; op; op = op->next)
            if (op->kind == LR_READ && !op->handed_back) {
                op->handed_back = true;
                op->done(op->cookie, -ENOTCONN, NULL);
            }
    }
    if (lr->ev)
        event_free(lr->ev);
    if (lr->ring_ok && !stuck)
        io_uring_queue_exit(&lr->ring);
    if (lr->efd >= 0 && !stuck)
        close(lr->efd);
    free(lr->name);
    free(lr);
}
