/*
 * local_read.c — protocol/client reads file data of a brick on this host
 * from the brick's own files, without a round trip to its kembard.
 *
 * Why: a read through kembard costs a loopback TCP round trip and two more
 * wake-ups on top of the disk (BENCHMARKS.md, issue 16). A hyperconverged
 * cluster has a replica on every hypervisor, and replicate reads that one
 * (cluster.choose-local).
 *
 * When (client.c decides, lread_enable checks): the connection never leaves
 * this host (rpc_conn_same_host), the brick sent its id in the handshake,
 * and the directory at the brick's path HERE carries that id in
 * trusted.kembar.brick-id — so it is the directory kembard serves, not one
 * of the same name in another mount namespace, nor an unmounted disk's
 * mount point. Only root reads trusted.* attributes: other clients read
 * through kembard, as before. Off while the connection is down.
 *
 * What: READ only, on an fd this client opened through kembard (the brick
 * checked access then, and replicate picked this copy as a source for the
 * read). The file is opened by its gfid handle (.kembar/handles/xx/yy/<gfid>,
 * a hard link: posix.h), read-only with the fd's O_DIRECT, at its first
 * read, after checking it is a regular file carrying that gfid; closed at
 * RELEASE or when the connection goes. Reads go through an io_uring whose
 * eventfd is watched by the graph's loop (as storage/posix's), so a slow
 * disk never stalls the loop, and completions run on the loop thread.
 *
 * Never fails a read of its own: anything but a full read or a clean EOF
 * hands the read back to the caller, which sends it to kembard — no handle
 * (a directory, an object the brick moved), an O_DIRECT request that is not
 * 4096-aligned, an error (kembard then reports the real one, and replicate
 * fails over as usual), a full ring.
 *
 * What stays true: kembard acknowledges a write once its write system call
 * completed, so the page cache (or, for O_DIRECT, the disk) holds it before
 * any read that follows it; an O_DIRECT write drops the cached pages it
 * covers and an O_DIRECT read writes dirty ones first. Brick locks never
 * applied to reads. Not counted by the brick's `volume profile` or `volume
 * top`: the client's state dump counts them (lread_counts).
 *
 * Ownership: the table holds one reference on each lr_fd, every read in
 * flight one more; the file is closed at the last, so a resubmitted short
 * read never meets a reused descriptor number.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <event2/event.h>
#include <liburing.h>
#include "lib/common.h"
#include "lib/log.h"
#include "xlators/fop.h"
#include "xlators/storage/posix/posix.h"
#include "xlators/protocol/client/local_read.h"

#define LR_ENTRIES 64        /* reads in the kernel at once; more go to the brick */
#define LR_BUCKETS 256
#define LR_ALIGN 4096u
#define LR_RETRIES 16        /* EAGAIN / EINTR resubmissions of one read */
#define LR_DRAIN_MS 5000     /* lread_free waits this long for the kernel */

enum { LFD_UNOPENED = -1, LFD_NONE = -2 };

struct lr_fd {
    struct lr_fd *next;
    uint64_t fd;              /* the client's fd number (connection generation included) */
    kb_gfid_t gfid;
    uint32_t flags;
    int lfd;                  /* our descriptor, LFD_UNOPENED, or LFD_NONE (read at the brick) */
    int refs;
};

struct lr_io {
    lread_t *lr;
    struct lr_fd *f;          /* reference */
    lread_done_fn done;
    void *cookie;
    kb_buf_t *buf;            /* owned until done */
    uint64_t off;
    size_t len, got;
    int retries;
};

struct lread {
    char *name;
    struct event_base *base;
    bool ring_ok;
    struct io_uring ring;
    int efd;
    struct event *ev;
    unsigned inflight;
    int handles_fd;           /* <brick>/.kembar/handles; -1: off */
    struct lr_fd *bucket[LR_BUCKETS];
    uint64_t served, fallbacks;
};

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
    if (!lr || lr->handles_fd < 0)
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

/* Open F's object by its handle: a regular file that carries F's gfid. */
static int lr_fd_open(lread_t *lr, struct lr_fd *f)
{
    char rel[POSIX_HANDLE_REL_LEN];
    posix_handle_rel(&f->gfid, rel);
    int fd = openat(lr->handles_fd, rel, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | (int)(f->flags & O_DIRECT));
    if (fd < 0)
        return -errno;
    struct stat st;
    uint8_t g[16];
    if (fstat(fd, &st) || !S_ISREG(st.st_mode) || fgetxattr(fd, KB_XATTR_GFID, g, sizeof(g)) != (ssize_t)sizeof(g) ||
        memcmp(g, f->gfid.b, sizeof(g)) != 0) {
        close(fd);
        return -ESTALE;
    }
    return fd;
}

/* ---------------- the ring ---------------- */

static void lr_finish(struct lr_io *io, int res)
{
    lread_t *lr = io->lr;
    if (res < 0) {
        lr->fallbacks++;
        io->done(io->cookie, res, NULL);
    } else {
        lr->served++;
        io->buf->len = io->got;
        io->done(io->cookie, (int)io->got, io->buf);
    }
    kb_buf_unref(io->buf);
    lr_fd_put(io->f);
    free(io);
}

static int lr_submit(struct lr_io *io)
{
    lread_t *lr = io->lr;
    struct io_uring_sqe *sqe = io_uring_get_sqe(&lr->ring);
    if (!sqe)
        return -EBUSY;
    io_uring_prep_read(sqe, io->f->lfd, io->buf->data + io->got, (unsigned)(io->len - io->got), io->off + io->got);
    io_uring_sqe_set_data(sqe, io);
    int rc = io_uring_submit(&lr->ring);
    if (rc < 0)
        return rc;
    lr->inflight++;
    return 0;
}

static void lr_complete(struct lr_io *io, int res)
{
    if ((res == -EAGAIN || res == -EINTR) && io->retries++ < LR_RETRIES) {
        if (lr_submit(io) == 0)
            return;
        res = -EBUSY;
    }
    if (res < 0) {
        lr_finish(io, res);
        return;
    }
    io->got += (size_t)res;
    /* EOF: 0, or any short O_DIRECT read (the rest would be an unaligned
     * read the kernel refuses; storage/posix stops there too). A short
     * buffered read goes on for the rest. */
    bool more = res > 0 && io->got < io->len && !(io->f->flags & O_DIRECT);
    if (more && lr_submit(io) == 0)
        return;
    lr_finish(io, more ? -EBUSY : 0);
}

static void lr_reap(lread_t *lr)
{
    struct io_uring_cqe *cqe;
    while (io_uring_peek_cqe(&lr->ring, &cqe) == 0) {
        struct lr_io *io = io_uring_cqe_get_data(cqe);
        int res = cqe->res;
        io_uring_cqe_seen(&lr->ring, cqe);
        lr->inflight--;
        lr_complete(io, res);
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

lread_t *lread_new(struct event_base *base, const char *name)
{
    lread_t *lr = kb_zalloc(sizeof(*lr));
    if (!lr)
        return NULL;
    lr->name = kb_strdup0(name ? name : "client");
    if (!lr->name) {
        free(lr);
        return NULL;
    }
    lr->base = base;
    lr->efd = -1;
    lr->handles_fd = -1;
    return lr;
}

int lread_enable(lread_t *lr, const char *path, const kb_gfid_t *id)
{
    lread_disable(lr);
    int root = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (root < 0)
        return -errno;
    uint8_t have[16];
    ssize_t n = fgetxattr(root, KB_XATTR_BRICK_ID, have, sizeof(have));
    int rc = n == (ssize_t)sizeof(have) ? (memcmp(have, id->b, sizeof(have)) ? -ESTALE : 0)
           : n < 0 ? -errno : -ENODATA;
    int h = rc ? -1 : openat(root, KB_INTERNAL_DIR "/handles", O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    if (!rc && h < 0)
        rc = -errno;
    close(root);
    if (!rc && (rc = lr_ring_up(lr)) < 0)
        close(h);
    if (rc)
        return rc;
    lr->handles_fd = h;
    return 0;
}

void lread_disable(lread_t *lr)
{
    if (!lr)
        return;
    for (size_t s = 0; s < LR_BUCKETS; s++)
        while (lr->bucket[s]) {
            struct lr_fd *f = lr->bucket[s];
            lr->bucket[s] = f->next;
            f->next = NULL;
            lr_fd_put(f);
        }
    if (lr->handles_fd >= 0)
        close(lr->handles_fd);
    lr->handles_fd = -1;
}

bool lread_enabled(const lread_t *lr)
{
    return lr && lr->handles_fd >= 0;
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
    if (f->lfd == LFD_NONE)
        return -ENOENT;
    if (f->lfd == LFD_UNOPENED) {
        int lfd = lr_fd_open(lr, f);
        if (lfd < 0) {
            kb_debug(lr->name, "local reads: no handle for %s: %s (read at the brick)",
                     kb_gfid_str(&f->gfid, (char[KB_GFID_STRLEN]){ 0 }), strerror(-lfd));
            f->lfd = LFD_NONE;
            return lfd;
        }
        f->lfd = lfd;
    }
    struct lr_io *io = kb_zalloc(sizeof(*io));
    kb_buf_t *buf = io ? kb_buf_new(len) : NULL;
    if (!buf) {
        free(io);
        return -ENOMEM;
    }
    *io = (struct lr_io){ .lr = lr, .f = f, .done = done, .cookie = cookie, .buf = buf, .off = off, .len = len };
    f->refs++;
    int rc = lr_submit(io);
    if (rc) {
        f->refs--;
        kb_buf_unref(buf);
        free(io);
    }
    return rc;
}

void lread_counts(const lread_t *lr, uint64_t *served, uint64_t *fallbacks)
{
    *served = lr ? lr->served : 0;
    *fallbacks = lr ? lr->fallbacks : 0;
}

void lread_free(lread_t *lr)
{
    if (!lr)
        return;
    lread_disable(lr);
    bool stuck = false;
    while (lr->ring_ok && lr->inflight) {
        struct io_uring_cqe *cqe;
        struct __kernel_timespec ts = { .tv_sec = LR_DRAIN_MS / 1000 };
        if (io_uring_wait_cqe_timeout(&lr->ring, &cqe, &ts) < 0) {
            kb_warn(lr->name, "local reads: %u still in the kernel after %d ms; their buffers are left",
                    lr->inflight, LR_DRAIN_MS);
            stuck = true;
            break;
        }
        lr_reap(lr);
    }
    if (lr->ev)
        event_free(lr->ev);
    if (lr->ring_ok && !stuck)
        io_uring_queue_exit(&lr->ring);
    if (lr->efd >= 0)
        close(lr->efd);
    free(lr->name);
    free(lr);
}
