/*
 * handover.c — a serving process taking a mount over, and handing it on
 * (issue 15; the supervisor's side is fuse/super.c, the shared state
 * fuse/state.h).
 *
 * Taking over (kbf_ho_go), in this order, before any request is read:
 *  1. INIT. The kernel negotiated once and will not again. If the previous
 *     process answered INIT, its request and reply are in the state: the
 *     request is fed to libfuse as if read (so libfuse knows the protocol
 *     and the connection's parameters), kbf_init chooses again what was
 *     chosen then (fs->init_conn), and the reply is swallowed by our writev
 *     hook (compared with the one the kernel got: a difference is logged).
 *     An INIT the previous process read and never answered comes again with
 *     the resend and is answered normally; one it answered but that comes
 *     again anyway (killed between our record and its reply) is answered
 *     with the recorded reply.
 *  2. Node ids: fuse/inode.c works on the state's records directly.
 *  3. Handles: every handle in the state is restored with its value (the
 *     kernel's fh), reopened by gfid and its locks taken again
 *     (client/takeover.h); a lock another client took meanwhile fails that
 *     handle with EBADFD, never silently.
 *  4. Writes acknowledged early (write-behind) that may not have reached the
 *     bricks are written again from the journal (fuse/journal.c).
 *  5. FUSE_NOTIFY_RESEND: every request the previous process read and did
 *     not answer is sent again (FUSE_UNIQUE_RESEND set); fuse/resend.c gives
 *     the non-idempotent ones their right answer.
 *  6. READY to the supervisor; then requests are read.
 * A first start does 5 too: nothing has been read yet, so it only probes
 * that the kernel knows FUSE_NOTIFY_RESEND (Linux 6.9); without it the
 * supervisor is told this mount cannot be handed over.
 *
 * Handing on (a restart): STOP from the supervisor. The process stops reading
 * /dev/fuse (a worker thread that still reads one blocks on it: the kernel
 * keeps it for the resend), lets the requests in flight finish and the
 * writes write-behind holds reach the bricks, at most KBF_STOP_DRAIN_MS,
 * says STOPPED and exits at once. Whatever did not finish is resent to the
 * next process.
 *
 * The raw /dev/fuse hooks (libfuse's custom I/O) live here: they count and
 * look at requests for fuse/rawio.c, record INIT, swallow the synthetic INIT's
 * reply and stop reading when told to.
 */
#include "fuse/handover.h"

#include <fcntl.h>
#include <linux/fuse.h>
#include <semaphore.h>
#include <stdio.h>
#include <sys/uio.h>
#include <unistd.h>

#include <event2/event.h>

#include "client/takeover.h"
#include "fuse/ctl.h"
#include "fuse/journal.h"
#include "fuse/ops.h"
#include "lib/log.h"

#define KBF_STOP_DRAIN_MS 2000
#define KBF_SYNTH_UNIQUE 0x7ffffffffffffff0ull   /* the synthetic INIT's (the kernel's are small) */

/* ---------------- raw /dev/fuse hooks ---------------- */

/* An INIT that comes again although its reply was recorded (and maybe sent):
 * the kernel gets the recorded reply. True when answered here. */
static bool answer_init_again(kbf_t *fs, int fd, const void *buf, size_t n)
{
    struct fuse_in_header h;
    if (n < sizeof(h) || !fs->st.hdr || !__atomic_load_n(&fs->st.hdr->init_done, __ATOMIC_ACQUIRE))
        return false;
    memcpy(&h, buf, sizeof(h));
    if (h.opcode != FUSE_INIT || !fs->takeover)
        return false;
    uint8_t out[KBF_ST_INIT_MAX];
    uint32_t len = fs->st.hdr->init_out_len;
    if (len < sizeof(struct fuse_out_header) || len > sizeof(out))
        return false;
    memcpy(out, fs->st.hdr->init_out, len);
    struct fuse_out_header oh;
    memcpy(&oh, out, sizeof(oh));
    oh.unique = h.unique;
    oh.len = len;
    memcpy(out, &oh, sizeof(oh));
    ssize_t w = write(fd, out, len);
    kb_info("fuse", "INIT came again (unique %#llx): answered with the reply recorded before (%s)",
            (unsigned long long)h.unique, w == (ssize_t)len ? "sent" : strerror(errno));
    return true;
}

static void stop_forever(void)
{
    for (;;)
        pause();                 /* until the process exits: the request is resent to the next one */
}

static ssize_t ho_read(int fd, void *buf, size_t len, void *userdata)
{
    kbf_t *fs = userdata;
    if (__atomic_load_n(&fs->stopping, __ATOMIC_ACQUIRE)) {
        if (fs->threads)
            stop_forever();
        errno = EAGAIN;
        return -1;
    }
    ssize_t n = read(fd, buf, len);
    if (n < 0 && errno == ENODEV)
        fs->unmounted = true;
    if (n <= 0)
        return n;
    if (__atomic_load_n(&fs->stopping, __ATOMIC_ACQUIRE) && fs->threads)
        stop_forever();          /* read after the stop: not ours to answer */
    kbf_raw_note(&fs->raw, buf, (size_t)n);
    if ((kbf_rq_unique & KBF_UNIQUE_RESEND) && answer_init_again(fs, fd, buf, (size_t)n)) {
        errno = ENOENT;          /* libfuse reads again */
        return -1;
    }
    return n;
}

/* The INIT reply is about to go out: record the INIT first (fuse/state.h). */
static void record_init(kbf_t *fs, const struct iovec *iov, int count)
{
    kbf_st_hdr_t *h = fs->st.hdr;
    if (!h)
        return;
    h->init_in_len = fs->raw.init_len;
    memcpy(h->init_in, fs->raw.init_req, fs->raw.init_len);
    h->init_out_len = (uint32_t)kbf_raw_flatten(iov, count, h->init_out, sizeof(h->init_out));
    h->conn = fs->conn_chosen;
    h->conn.killpriv_v2 = fs->raw.killpriv_v2;
    __atomic_store_n(&h->init_done, 1, __ATOMIC_RELEASE);
}

static ssize_t ho_writev(int fd, struct iovec *iov, int count, void *userdata)
{
    kbf_t *fs = userdata;
    struct fuse_out_header oh;
    if (fs->swallow_unique && count >= 1 && iov[0].iov_len >= sizeof(oh)) {
        memcpy(&oh, iov[0].iov_base, sizeof(oh));
        if (oh.unique == fs->swallow_unique) {
            size_t total = 0;
            for (int i = 0; i < count; i++)
                total += iov[i].iov_len;
            uint8_t out[KBF_ST_INIT_MAX];
            size_t n = kbf_raw_flatten(iov, count, out, sizeof(out));
            fs->swallowed = oh.error;
            if (fs->st.hdr && oh.error == 0 && n >= sizeof(oh) + offsetof(struct fuse_init_out, flags) + 4) {
                struct fuse_init_out was, now;
                memset(&was, 0, sizeof(was));
                memset(&now, 0, sizeof(now));
                memcpy(&was, fs->st.hdr->init_out + sizeof(oh),
                       KB_MIN(sizeof(was), fs->st.hdr->init_out_len - sizeof(oh)));
                memcpy(&now, out + sizeof(oh), KB_MIN(sizeof(now), n - sizeof(oh)));
                uint32_t mask = ~(uint32_t)FUSE_HANDLE_KILLPRIV_V2;
                if ((was.flags & mask) != (now.flags & mask) || was.max_write != now.max_write ||
                    was.minor != now.minor)
                    kb_warn("fuse", "this binary would answer INIT differently (protocol 7.%u flags %#x "
                            "max_write %u) from what the kernel was told (7.%u, %#x, %u): it serves as told",
                            now.minor, now.flags, now.max_write, was.minor, was.flags, was.max_write);
            }
            return (ssize_t)total;
        }
    }
    if (kbf_raw_is_init_reply(&fs->raw, iov, count)) {
        if (kbf_raw_patch(&fs->raw, iov, count))
            kb_info("fuse", "handle_killpriv_v2: writes no longer ask for security.capability");
        __atomic_store_n(&fs->raw.init_done, true, __ATOMIC_RELEASE);
        record_init(fs, iov, count);
    }
    return writev(fd, iov, count);
}

/* ---------------- the supervisor's messages ---------------- */

int kbf_ho_start(kbf_t *fs, int ctl, char *why, size_t whylen)
{
    fs->ctl = ctl;
    kbf_msg_t m;
    int fd = -1, rc;
    do
        rc = kbf_msg_recv(ctl, &m, &fd);
    while (rc == 1 && m.type != KBF_MSG_STATE && (close(fd), fd = -1, true));
    if (rc != 1 || fd < 0) {
        snprintf(why, whylen, "no state from the supervisor (%s)", rc == 1 ? "no memfd" : rc == 0 ? "it is gone"
                 : strerror(-rc));
        return -EPROTO;
    }
    rc = kbf_state_map(&fs->st, fd, why, whylen);
    if (rc < 0) {
        close(fd);
        kbf_ho_failed(fs, why);
        return rc;
    }
    fs->takeover = (m.flags & KBF_MF_TAKEOVER) != 0;
    return 0;
}

void kbf_ho_failed(kbf_t *fs, const char *why)
{
    kbf_msg_t m = { .type = KBF_MSG_FAILED };
    snprintf(m.text, sizeof(m.text), "%s", why);
    if (fs->ctl >= 0)
        kbf_msg_send(fs->ctl, &m, -1);
}

/* ---------------- handles ---------------- */

static void watch_put(void *arg, const kbc_handle_info_t *h)
{
    kbf_t *fs = arg;
    static bool logged;
    if (!kbf_state_handle_put(&fs->st, h) && !logged) {
        logged = true;
        kb_warn("fuse", "more than %u open files: those beyond do not survive a restart of kembar-fuse",
                fs->st.hdr->handle_cap);
    }
}

static void watch_closed(void *arg, uint64_t value)
{
    kbf_t *fs = arg;
    kbf_state_handle_clear(&fs->st, value);
}

/* Handles a takeover restored, with the request whose reply delivered them. */
struct kbf_stale {
    uint64_t unique;
    uint64_t value;
    kb_gfid_t gfid;
    bool dir;
};

void kbf_ho_opened(kbf_t *fs, uint64_t unique, uint64_t value)
{
    if (fs->st.hdr && unique)
        kbf_state_handle_opener(&fs->st, value, unique & ~KBF_UNIQUE_RESEND);
}

void kbf_ho_resent_open(kbf_t *fs, uint64_t unique)
{
    if (!(unique & KBF_UNIQUE_RESEND))
        return;
    unique &= ~KBF_UNIQUE_RESEND;
    struct kbf_stale found = { 0 };
    pthread_mutex_lock(&fs->mu);
    for (uint32_t i = 0; i < fs->nstale; i++)
        if (fs->stale[i].unique == unique) {
            found = fs->stale[i];
            fs->stale[i] = fs->stale[--fs->nstale];
            break;
        }
    pthread_mutex_unlock(&fs->mu);
    if (!found.value)
        return;
    char gs[KB_GFID_STRLEN];
    kb_info("fuse", "takeover: the handle of %s its first try opened never reached the kernel: released",
            kb_gfid_str(&found.gfid, gs));
    kbf_release_fd(fs, &found.gfid, found.value, found.dir);
}

struct restored {
    sem_t done;
    unsigned failed;
};

static void restore_done(void *arg, unsigned failed)
{
    struct restored *r = arg;
    r->failed = failed;
    sem_post(&r->done);
}

static int restore_handles(kbf_t *fs)
{
    uint32_t hwm = KB_MIN(__atomic_load_n(&fs->st.hdr->handle_hwm, __ATOMIC_ACQUIRE), fs->st.hdr->handle_cap);
    kbc_handle_info_t *hs = calloc(hwm ? hwm : 1, sizeof(*hs));
    kbc_lkown_t *own = calloc((size_t)(hwm ? hwm : 1) * KBF_ST_OWNERS, sizeof(*own));
    kb_lklog_t *logs = calloc(hwm ? hwm : 1, sizeof(*logs));
    kb_lkreq_t *req = calloc((size_t)(hwm ? hwm : 1) * KBF_ST_LOCKS, sizeof(*req));
    if (!hs || !own || !logs || !req) {
        free(hs);
        free(own);
        free(logs);
        free(req);
        return -ENOMEM;
    }
    uint32_t n = 0, nlocks = 0;
    for (uint32_t i = 0; i < hwm; i++) {
        const kbf_st_hver_t *v = kbf_state_handle_get(&fs->st, i);
        if (!v)
            continue;
        kbc_lkown_t *o = &own[(size_t)n * KBF_ST_OWNERS];
        for (uint32_t k = 0; k < v->nowners && k < KBF_ST_OWNERS; k++)
            o[k] = (kbc_lkown_t){ .owner = v->owners[k], .process = (v->owner_process >> k) & 1 };
        kb_lkreq_t *r = &req[(size_t)n * KBF_ST_LOCKS];
        for (uint32_t k = 0; k < v->nlocks && k < KBF_ST_LOCKS; k++)
            r[k] = (kb_lkreq_t){ .owner = v->locks[k].owner, .type = v->locks[k].type, .pid = v->locks[k].pid,
                                 .start = v->locks[k].start, .len = v->locks[k].len,
                                 .flock = v->locks[k].flock != 0 };
        logs[n] = (kb_lklog_t){ .req = r, .n = KB_MIN(v->nlocks, KBF_ST_LOCKS), .cap = KBF_ST_LOCKS,
                                .incomplete = v->incomplete != 0 };
        nlocks += logs[n].n;
        if (v->opener && fs->nstale < hwm) {
            if (!fs->stale)
                fs->stale = calloc(hwm, sizeof(*fs->stale));
            if (fs->stale) {
                struct kbf_stale *st = &fs->stale[fs->nstale++];
                *st = (struct kbf_stale){ .unique = v->opener, .value = v->value, .dir = v->is_dir != 0 };
                memcpy(st->gfid.b, v->gfid, 16);
            }
        }
        hs[n] = (kbc_handle_info_t){ .value = v->value, .flags = v->flags, .is_dir = v->is_dir != 0,
                                     .lk_lost = v->lk_lost, .nowners = KB_MIN(v->nowners, KBF_ST_OWNERS),
                                     .owners = o, .locks = &logs[n] };
        memcpy(hs[n].gfid.b, v->gfid, 16);
        n++;
    }
    struct restored r = { .failed = 0 };
    sem_init(&r.done, 0, 0);
    uint64_t t0 = kb_now_ms();
    int rc = kbc_handles_restore(fs->kbc, hs, n, restore_done, &r);
    free(hs);
    free(own);
    free(logs);
    free(req);
    if (rc < 0) {
        sem_destroy(&r.done);
        kb_err("fuse", "cannot restore the open files: %s", strerror(-rc));
        return rc;
    }
    while (sem_wait(&r.done) < 0 && errno == EINTR)
        ;
    sem_destroy(&r.done);
    kb_info("fuse", "takeover: %u open files reopened, %u lock requests taken again, in %llu ms", n, nlocks,
            (unsigned long long)(kb_now_ms() - t0));
    if (r.failed)
        kb_err("fuse", "takeover: %u open files could not be reopened or lost a lock: they fail with EBADFD",
               r.failed);
    return 0;
}

/* ---------------- INIT ---------------- */

static int init_again(kbf_t *fs)
{
    kbf_st_hdr_t *h = fs->st.hdr;
    uint8_t buf[KBF_ST_INIT_MAX + 64] = { 0 };
    struct fuse_in_header ih;
    if (h->init_in_len < sizeof(ih) + 8 || h->init_in_len > KBF_ST_INIT_MAX)
        return -EPROTO;
    memcpy(buf, h->init_in, h->init_in_len);
    memcpy(&ih, buf, sizeof(ih));
    ih.unique = KBF_SYNTH_UNIQUE;
    memcpy(buf, &ih, sizeof(ih));
    fs->init_conn = &h->conn;
    fs->swallow_unique = KBF_SYNTH_UNIQUE;
    fs->swallowed = 1;
    /* The same request the previous process read: kbf_raw_note sees it too
     * (the capabilities the kernel offered), and its reply is swallowed. */
    kbf_raw_note(&fs->raw, buf, h->init_in_len);
    struct fuse_buf fb = { .mem = buf, .size = h->init_in_len };
    fuse_session_process_buf(fs->se, &fb);
    fs->swallow_unique = 0;
    fs->init_conn = NULL;
    fs->raw.killpriv_v2 = h->conn.killpriv_v2 != 0;
    __atomic_store_n(&fs->raw.init_done, true, __ATOMIC_RELEASE);
    if (fs->swallowed != 0) {
        kb_err("fuse", "takeover: libfuse did not accept the recorded INIT (%d)", fs->swallowed);
        return -EPROTO;
    }
    kb_info("fuse", "takeover: INIT of protocol 7.%u taken over%s", h->conn.proto_minor,
            fs->raw.killpriv_v2 ? " (handle_killpriv_v2)" : "");
    return 0;
}

/* ---------------- stopping for the next process ---------------- */

struct stopper {
    kbf_t *fs;
    struct event *ev;
    uint64_t deadline;
    bool barrier_sent;
    unsigned barriers;           /* STATs in flight that wait for write-behind's writes */
};

static void stop_now(struct stopper *sp, const char *how)
{
    kbf_t *fs = sp->fs;
    pthread_mutex_lock(&fs->mu);
    unsigned left = fs->inflight;
    pthread_mutex_unlock(&fs->mu);
    kb_info("fuse", "stopping for the next serving process: %s (%u requests left to it)", how, left);
    kbf_msg_t m = { .type = KBF_MSG_STOPPED };
    kbf_msg_send(fs->ctl, &m, -1);
    _exit(0);
}

static void barrier_cbk(void *cookie, const kb_reply_t *rep)
{
    struct stopper *sp = cookie;
    (void)rep;
    sp->barriers--;
}

static void stop_tick(evutil_socket_t fd, short what, void *arg)
{
    struct stopper *sp = arg;
    kbf_t *fs = sp->fs;
    (void)fd;
    (void)what;
    pthread_mutex_lock(&fs->mu);
    unsigned inflight = fs->inflight;
    pthread_mutex_unlock(&fs->mu);
    if (kb_now_ms() >= sp->deadline)
        stop_now(sp, "the drain timed out");
    if (inflight == 0 && !sp->barrier_sent) {
        /* Writes acknowledged early reach the bricks before we go: a STAT of
         * each open file waits for them (write-behind orders it after them). */
        sp->barrier_sent = true;
        static const kb_cred_t root;
        kbf_journal_barriers(fs, barrier_cbk, sp, &sp->barriers, &root);
    }
    if (inflight == 0 && sp->barrier_sent && sp->barriers == 0)
        stop_now(sp, "every request answered");
    struct timeval tv = { 0, 2000 };
    evtimer_add(sp->ev, &tv);
}

static void stop_begin(kbf_t *fs)
{
    __atomic_store_n(&fs->stopping, 1, __ATOMIC_RELEASE);
    if (fs->stop_reading)
        fs->stop_reading(fs);
    struct stopper *sp = kb_zalloc(sizeof(*sp));
    if (sp)
        sp->ev = evtimer_new(kb_loop_base(kbc_loop(fs->kbc)), stop_tick, sp);
    if (!sp || !sp->ev) {
        kbf_msg_t m = { .type = KBF_MSG_STOPPED };
        kbf_msg_send(fs->ctl, &m, -1);
        _exit(0);
    }
    sp->fs = fs;
    sp->deadline = kb_now_ms() + KBF_STOP_DRAIN_MS;
    stop_tick(-1, 0, sp);        /* lives until the process exits */
}

static void ctl_readable(evutil_socket_t fd, short what, void *arg)
{
    kbf_t *fs = arg;
    (void)what;
    kbf_msg_t m;
    int rc;
    while ((rc = kbf_msg_recv((int)fd, &m, NULL)) == 1)
        if (m.type == KBF_MSG_STOP && !__atomic_load_n(&fs->stopping, __ATOMIC_ACQUIRE))
            stop_begin(fs);
    if (rc == -EAGAIN)
        return;
    static bool said;
    if (!said)
        kb_warn("fuse", "the supervisor is gone: this mount can no longer be handed over, it ends with "
                "this process");
    said = true;
    struct event *self = event_base_get_running_event(kb_loop_base(kbc_loop(fs->kbc)));
    if (self)
        event_del(self);
}

static void ctl_attach(void *arg)
{
    kbf_t *fs = arg;
    struct event *ev = event_new(kb_loop_base(kbc_loop(fs->kbc)), fs->ctl, EV_READ | EV_PERSIST,
                                 ctl_readable, fs);
    if (!ev || event_add(ev, NULL) < 0)
        kb_warn("fuse", "cannot watch the supervisor's socket: a restart will not stop this process");
}

/* ---------------- going ---------------- */

int kbf_ho_go(kbf_t *fs, bool killpriv_v2, bool daemon, const char *log_path)
{
    kbf_msg_t m = { .type = KBF_MSG_CONNECTED };
    if (kbf_msg_send(fs->ctl, &m, -1) < 0) {
        kb_err("fuse", "the supervisor is gone");
        return -EPIPE;
    }
    int fd = -1, rc;
    while ((rc = kbf_msg_recv(fs->ctl, &m, &fd)) == 1 && m.type != KBF_MSG_GO) {
        if (fd >= 0)
            close(fd);
        fd = -1;
        if (m.type == KBF_MSG_STOP)
            _exit(0);            /* not needed after all */
    }
    if (rc != 1 || fd < 0) {
        kb_err("fuse", "the supervisor is gone before handing /dev/fuse over");
        return -EPIPE;
    }
    uint64_t t0 = kb_now_ms();
    /* The previous serving process is gone now (a restart stops it first):
     * its node ids, handles and journal are final. */
    fs->it = kbf_itable_open(fs->st.nodes, fs->st.hdr->node_cap, &fs->st.hdr->node_hwm);
    if (!fs->it) {
        kb_err("fuse", "out of memory");
        return -ENOMEM;
    }
    static const struct fuse_custom_io io = { .read = ho_read, .writev = ho_writev };
    if (fs->splice) {
        char dev[32];            /* splice reads past any hook: plain libfuse I/O on the fd */
        snprintf(dev, sizeof(dev), "/dev/fd/%d", fd);
        rc = fuse_session_mount(fs->se, dev);
    } else {
        rc = fuse_session_custom_io(fs->se, &io, fd);
        fs->raw.want_killpriv_v2 = killpriv_v2;
    }
    if (rc != 0) {
        kb_err("fuse", "cannot serve /dev/fuse: libfuse refused the descriptor (%d)", rc);
        return -EIO;
    }
    int fl = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, fs->threads ? (fl & ~O_NONBLOCK) : (fl | O_NONBLOCK));
    kbc_handles_watch(fs->kbc, watch_put, watch_closed, fs);
    kbf_journal_init(fs);
    if (fs->takeover) {
        if (__atomic_load_n(&fs->st.hdr->init_done, __ATOMIC_ACQUIRE) && init_again(fs) < 0)
            return -EPROTO;
        kb_info("fuse", "takeover: %zu inodes known to the kernel", kbf_itable_count(fs->it));
        if (restore_handles(fs) < 0)
            return -ENOMEM;
        kbf_journal_replay(fs);
    }
    /* Before anything is read: the previous process's unanswered requests
     * come again; on a first start nothing was read, so this only asks. */
    rc = fs->splice ? -ENOTSUP : kbf_raw_resend(fd);
    fs->handover = rc == 0;
    if (rc == -EINVAL)
        kb_warn("fuse", "the kernel lacks FUSE_NOTIFY_RESEND (Linux 6.9): this mount cannot be handed over, "
                "it ends with its serving process");
    else if (rc < 0 && rc != -ENOTSUP)
        kb_warn("fuse", "FUSE_NOTIFY_RESEND: %s: this mount cannot be handed over", strerror(-rc));
    if (fs->takeover)
        kb_info("fuse", "takeover: serving from now on (%llu ms after /dev/fuse came; resend %s)",
                (unsigned long long)(kb_now_ms() - t0), rc == 0 ? "asked" : "impossible");
    if (daemon) {
        /* stdio leaves the terminal of whoever mounted; what still goes to
         * stderr (an assertion, libfuse's perror) goes to the log. */
        int devnull = open("/dev/null", O_RDWR);
        int logfd = log_path ? open(log_path, O_WRONLY | O_APPEND | O_CLOEXEC) : -1;
        if (devnull >= 0) {
            dup2(devnull, 0);
            dup2(devnull, 1);
            dup2(logfd >= 0 ? logfd : devnull, 2);
            if (devnull > 2)
                close(devnull);
        }
        if (logfd >= 0)
            close(logfd);
    }
    m = (kbf_msg_t){ .type = KBF_MSG_READY, .arg = getpid(), .flags = fs->handover ? KBF_MF_HANDOVER : 0 };
    kbf_msg_send(fs->ctl, &m, -1);
    fcntl(fs->ctl, F_SETFL, fcntl(fs->ctl, F_GETFL) | O_NONBLOCK);
    kb_loop_run_in(kbc_loop(fs->kbc), ctl_attach, fs);
    return 0;
}
