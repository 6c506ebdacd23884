/*
 * super.c — kembar-fuse's supervisor: the small process that owns a mount
 * and outlives the processes serving it (issue 15).
 *
 * Why: a VM's disk is a file on the mount. When the one process behind a
 * FUSE mount dies, the kernel fails every request with ENOTCONN and every VM
 * on the host sees I/O errors; an upgrade of the client meant stopping them
 * all. The kernel can do better: a /dev/fuse descriptor lives as long as any
 * process holds it, requests wait in its queues meanwhile, and since Linux
 * 6.9 FUSE_NOTIFY_RESEND makes it send again every request that was read and
 * never answered. So the mount is held by this process, which does almost
 * nothing (no graph, no network, no threads: it practically cannot crash),
 * and served by a child that does the work (fuse/handover.c).
 *
 * What it holds: the /dev/fuse descriptor (it mounts: auto_unmount and
 * fusermount3 then follow its life, not a serving process's), the shared
 * state memfd (fuse/state.h), the client instance id (KB_INSTANCE_ID in the
 * serving processes' environment: the bricks keep the instance's locks), and
 * the binary of the last serving process that became ready.
 *
 * What it does:
 *  - start: a serving process connects the volume first; only then is the
 *    volume mounted (errors stay one line on stderr and a non-zero exit, as
 *    before), and the parent exits 0 once the serving process is ready.
 *  - crash (the serving process dies, kill -9 or abort): a new one is
 *    started at once from the binary installed now; it takes the state over
 *    and asks for the resend. A takeover that dies before it is ready is
 *    tried again with a backoff (100 ms doubling to 5 s); after three in a
 *    row the binary that last worked is tried (kept open: it may have been
 *    replaced on disk). Guests wait meanwhile; they get no error.
 *  - restart (`kembar-fuse --restart MOUNTPOINT`): the new serving process is
 *    started and connects while the old one still serves; then the old one
 *    is told to stop (it stops reading, lets its calls finish, at most 2 s,
 *    and exits), and the new one takes over. A new binary that cannot start
 *    or connect is reported to the caller and the old process keeps serving.
 *  - end: an unmount (the descriptor reports POLLERR) or SIGTERM/SIGINT/
 *    SIGHUP (it unmounts) ends the serving process and then itself. SIGUSR1
 *    is passed to the serving process (its state dump).
 *  - no handover (-o splice, or a kernel without FUSE_NOTIFY_RESEND, as the
 *    serving process reports): said once in the log; when the serving
 *    process dies, the mount ends with it, as before issue 15.
 *
 * Single-threaded: one poll loop over a signalfd, the control sockets and,
 * while no process serves, the descriptor (for POLLERR only: it never reads
 * a request; see loop() for why not while one serves).
 */
#include "fuse/super.h"

#define FUSE_USE_VERSION 312
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fuse/ctl.h"
#include "fuse/state.h"
#include "lib/common.h"
#include "lib/log.h"

#define KBF_STOP_MS 5000          /* a stopped serving process is gone by then (it drains 2 s), else killed */
#define KBF_STANDBY_MS 60000      /* a restart's new process is connected by then, else given up */
#define KBF_END_MS 10000          /* after the unmount, the serving process is gone by then, else killed */
#define KBF_BACKOFF_MAX_MS 5000

extern char **environ;

enum sp_state { SP_NONE, SP_STARTED, SP_CONNECTED, SP_GO, SP_READY, SP_STOPPING };

typedef struct sproc {
    pid_t pid;                   /* 0: none */
    int sock;                    /* -1: none */
    int bin;                     /* the binary it was started from (O_RDONLY), -1 */
    enum sp_state st;
    bool takeover;               /* it takes a previous process's state over */
    uint64_t started_ms, go_ms;
    char failed[496];            /* what it said in FAILED */
} sproc_t;

typedef struct super {
    const kbf_super_cfg_t *cfg;
    char self[PATH_MAX];         /* the binary to start: the path kembar-fuse was started from */
    kbf_state_t state;
    int sigfd, lsock, fuse_fd;
    bool mounted, went_live, handover_ok, ending;
    sproc_t cur;                 /* serving, or starting to */
    sproc_t next;                /* a restart's new process, until it is told GO */
    pid_t replaced;              /* a restart under way: the pid it replaces (0: none) */
    int client;                  /* the --restart caller waiting for its answer, -1 */
    uint64_t stop_deadline, standby_deadline, end_deadline, respawn_at;
    unsigned failures;           /* takeovers in a row that died before they were ready */
    int good_bin;                /* the binary of the last process that became ready, -1 */
    int status;                  /* exit status */
    bool done;
} super_t;

static const sproc_t no_proc = { .sock = -1, .bin = -1 };

static void sproc_clear(sproc_t *p)
{
    if (p->sock >= 0)
        close(p->sock);
    if (p->bin >= 0)
        close(p->bin);
    *p = no_proc;
}

static bool alive(const sproc_t *p)
{
    return p->pid > 0;
}

/* ---------------- starting a serving process ---------------- */

static int spawn(super_t *s, sproc_t *p, bool takeover, bool from_good)
{
    const kbf_super_cfg_t *c = s->cfg;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
        return -errno;
    /* The binary is opened now: should this process become ready, it is
     * the one that works, whatever replaces the file later. */
    from_good = from_good && s->good_bin >= 0;
    int bin = from_good ? fcntl(s->good_bin, F_DUPFD_CLOEXEC, 0) : open(s->self, O_RDONLY | O_CLOEXEC);
    char fdarg[16];
    snprintf(fdarg, sizeof(fdarg), "%d", sv[1]);
    char **argv = calloc((size_t)c->argc + 3, sizeof(*argv));
    if (!argv) {
        close(sv[0]);
        close(sv[1]);
        if (bin >= 0)
            close(bin);
        return -ENOMEM;
    }
    argv[0] = s->self;
    argv[1] = "--serve";
    argv[2] = fdarg;
    for (int i = 1; i < c->argc; i++)
        argv[i + 2] = c->argv[i];
    pid_t pid = fork();
    if (pid == 0) {
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        signal(SIGPIPE, SIG_DFL);
        fcntl(sv[1], F_SETFD, 0);
        if (bin >= 0)
            fexecve(bin, argv, environ);
        execve(s->self, argv, environ);
        dprintf(2, "kembar-fuse: cannot start %s: %s\n", s->self, strerror(errno));
        _exit(127);
    }
    int e = errno;
    free(argv);
    close(sv[1]);
    if (pid < 0) {
        close(sv[0]);
        if (bin >= 0)
            close(bin);
        return -e;
    }
    *p = (sproc_t){ .pid = pid, .sock = sv[0], .bin = bin, .st = SP_STARTED, .takeover = takeover,
                    .started_ms = kb_now_ms() };
    fcntl(p->sock, F_SETFL, fcntl(p->sock, F_GETFL) | O_NONBLOCK);
    __atomic_add_fetch(&s->state.hdr->generation, 1, __ATOMIC_RELAXED);
    kbf_msg_t m = { .type = KBF_MSG_STATE, .flags = takeover ? KBF_MF_TAKEOVER : 0 };
    if (kbf_msg_send(p->sock, &m, s->state.fd) < 0)
        kb_warn("super", "cannot hand the state to serving process %d", (int)pid);
    kb_info("super", "started serving process %d (%s%s)", (int)pid,
            from_good ? "the binary that last worked" : s->self, takeover ? ", to take the mount over" : "");
    return 0;
}

/* The serving process died and a new one takes over (now, or after a backoff
 * when takeovers keep failing). */
static void respawn(super_t *s)
{
    uint64_t now = kb_now_ms();
    if (s->respawn_at && now < s->respawn_at)
        return;
    s->respawn_at = 0;
    bool from_good = s->failures >= 3 && s->failures % 2 == 1;   /* alternate once it keeps failing */
    int rc = spawn(s, &s->cur, true, from_good);
    if (rc < 0) {
        kb_err("super", "cannot start a serving process: %s; trying again", strerror(-rc));
        s->respawn_at = now + 1000;
    }
}

/* ---------------- the mount and the ready signal ---------------- */

static void go(super_t *s, sproc_t *p)
{
    kbf_msg_t m = { .type = KBF_MSG_GO };
    p->go_ms = kb_now_ms();
    if (kbf_msg_send(p->sock, &m, s->fuse_fd) < 0)
        kb_warn("super", "cannot hand /dev/fuse to serving process %d", (int)p->pid);
    p->st = SP_GO;
}

static int do_mount(super_t *s)
{
    const kbf_super_cfg_t *c = s->cfg;
    if (fuse_session_mount(c->se, c->mnt) < 0)
        return -1;
    s->fuse_fd = fuse_session_fd(c->se);
    s->mounted = true;
    kb_info("super", "mounted on %s", c->mnt);
    return 0;
}

static void write_pid_file(super_t *s, pid_t pid)
{
    if (!s->cfg->pid_file)
        return;
    char buf[32];
    int n = snprintf(buf, sizeof(buf), "%d\n", (int)pid);
    int rc = kb_write_file_atomic(s->cfg->pid_file, buf, (size_t)n);
    if (rc < 0)
        kb_warn("super", "cannot write the pid file %s: %s", s->cfg->pid_file, strerror(-rc));
}

/* The mount is live: the parent exits 0; stdio goes to /dev/null. */
static void daemon_ready(super_t *s)
{
    int fd = s->cfg->ready_fd;
    if (fd < 0)
        return;
    int devnull = open("/dev/null", O_RDWR);
    if (devnull >= 0) {
        dup2(devnull, 0);
        dup2(devnull, 1);
        dup2(devnull, 2);
        if (devnull > 2)
            close(devnull);
    }
    ssize_t n = write(fd, "1", 1);
    (void)n;
    close(fd);
}

/* ---------------- restarts ---------------- */

static void answer(super_t *s, int64_t rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void answer(super_t *s, int64_t rc, const char *fmt, ...)
{
    kbf_msg_t m = { .type = KBF_MSG_RESULT, .arg = rc };
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m.text, sizeof(m.text), fmt, ap);
    va_end(ap);
    if (rc < 0)
        kb_warn("super", "restart: %s", m.text);
    else
        kb_info("super", "restart: %s", m.text);
    if (s->client >= 0) {
        kbf_msg_send(s->client, &m, -1);
        close(s->client);
        s->client = -1;
    }
}

static void restart_begin(super_t *s, int client)
{
    s->client = client;
    if (alive(&s->next) || s->replaced || s->cur.st != SP_READY) {
        answer(s, -EBUSY, "a restart or a takeover is under way; try again");
        return;
    }
    if (!s->handover_ok) {
        answer(s, -ENOTSUP, "this mount cannot be handed over (see its log): unmount and mount again");
        return;
    }
    int rc = spawn(s, &s->next, true, false);
    if (rc < 0) {
        answer(s, rc, "cannot start %s: %s", s->self, strerror(-rc));
        return;
    }
    s->replaced = s->cur.pid;
    s->standby_deadline = kb_now_ms() + KBF_STANDBY_MS;
}

static void on_restart_request(super_t *s)
{
    int c = accept4(s->lsock, NULL, NULL, SOCK_CLOEXEC);
    if (c < 0)
        return;
    struct ucred cr;
    socklen_t cl = sizeof(cr);
    kbf_msg_t m;
    if (getsockopt(c, SOL_SOCKET, SO_PEERCRED, &cr, &cl) < 0 || (cr.uid != 0 && cr.uid != geteuid())) {
        kbf_msg_t r = { .type = KBF_MSG_RESULT, .arg = -EPERM };
        snprintf(r.text, sizeof(r.text), "only root may restart this mount's serving process");
        kbf_msg_send(c, &r, -1);
        close(c);
        return;
    }
    /* The request comes at once; a caller that sends nothing is dropped. */
    struct pollfd p = { .fd = c, .events = POLLIN };
    if (poll(&p, 1, 1000) != 1 || kbf_msg_recv(c, &m, NULL) != 1 || m.type != KBF_MSG_RESTART) {
        close(c);
        return;
    }
    if (strcmp(m.text, s->cfg->mnt) != 0) {
        kbf_msg_t r = { .type = KBF_MSG_RESULT, .arg = -ENOENT };
        snprintf(r.text, sizeof(r.text), "this supervisor serves %.200s, not %.200s", s->cfg->mnt, m.text);
        kbf_msg_send(c, &r, -1);
        close(c);
        return;
    }
    if (s->client >= 0) {
        kbf_msg_t r = { .type = KBF_MSG_RESULT, .arg = -EBUSY };
        snprintf(r.text, sizeof(r.text), "a restart is under way; try again");
        kbf_msg_send(c, &r, -1);
        close(c);
        return;
    }
    kb_info("super", "restart asked (uid %u, pid %d)", (unsigned)cr.uid, (int)cr.pid);
    restart_begin(s, c);
}

/* ---------------- messages from serving processes ---------------- */

static void became_ready(super_t *s, sproc_t *p, const kbf_msg_t *m)
{
    uint64_t now = kb_now_ms();
    p->st = SP_READY;
    s->handover_ok = (m->flags & KBF_MF_HANDOVER) != 0;
    s->failures = 0;
    if (p->bin >= 0) {
        if (s->good_bin >= 0)
            close(s->good_bin);
        s->good_bin = p->bin;
        p->bin = -1;
    }
    write_pid_file(s, p->pid);
    if (!s->went_live) {
        s->went_live = true;
        kb_info("super", "serving process %d is ready (%llu ms after its start)%s", (int)p->pid,
                (unsigned long long)(now - p->started_ms),
                s->handover_ok ? "" : "; this mount cannot be handed over: it ends with its serving process");
        daemon_ready(s);
        return;
    }
    kb_info("super", "serving process %d took the mount over: %llu ms from its start, %llu ms from GO",
            (int)p->pid, (unsigned long long)(now - p->started_ms), (unsigned long long)(now - p->go_ms));
    if (s->replaced) {
        answer(s, p->pid, "%s: serving process %d replaced by %d (%s)", s->cfg->mnt, (int)s->replaced,
               (int)p->pid, s->self);
        s->replaced = 0;
    }
}

static void on_msg(super_t *s, sproc_t *p)
{
    kbf_msg_t m;
    int rc;
    while ((rc = kbf_msg_recv(p->sock, &m, NULL)) == 1) {
        switch (m.type) {
        case KBF_MSG_CONNECTED:
            p->st = SP_CONNECTED;
            if (p == &s->next) {
                /* The new process is up: the old one stops, then it goes. */
                kbf_msg_t stop = { .type = KBF_MSG_STOP };
                kb_info("super", "restart: serving process %d is connected; stopping %d", (int)p->pid,
                        (int)s->cur.pid);
                s->cur.st = SP_STOPPING;
                s->stop_deadline = kb_now_ms() + KBF_STOP_MS;
                kbf_msg_send(s->cur.sock, &stop, -1);
            } else if (!s->mounted) {
                if (do_mount(s) < 0) {
                    const char *why = s->cfg->last_error ? s->cfg->last_error() : "";
                    fprintf(stderr, "kembar-fuse: cannot mount on '%s': %s\n", s->cfg->mnt, why);
                    kill(p->pid, SIGKILL);
                    s->status = 1;
                    s->ending = true;
                    s->end_deadline = kb_now_ms() + KBF_END_MS;
                    break;
                }
                go(s, p);
            } else {
                go(s, p);        /* a takeover after a crash: the old one is gone */
            }
            break;
        case KBF_MSG_READY:
            if (p == &s->cur)
                became_ready(s, p, &m);
            break;
        case KBF_MSG_STOPPED:
            kb_info("super", "serving process %d stopped", (int)p->pid);
            break;
        case KBF_MSG_FAILED:
            snprintf(p->failed, sizeof(p->failed), "%s", m.text);
            break;
        default:
            break;               /* a newer serving binary's message: not for us */
        }
    }
    if (rc == 0 || (rc < 0 && rc != -EAGAIN)) {
        close(p->sock);          /* it is going; its exit says the rest */
        p->sock = -1;
    }
}

/* ---------------- serving processes that end ---------------- */

static void begin_end(super_t *s, const char *why);

static void describe(int st, char *buf, size_t len)
{
    if (WIFSIGNALED(st))
        snprintf(buf, len, "killed by signal %d", WTERMSIG(st));
    else
        snprintf(buf, len, "exit status %d", WEXITSTATUS(st));
}

/* The kernel's POLLERR on our /dev/fuse: the mount is gone. */
static void check_unmounted(super_t *s)
{
    if (!s->ending && s->mounted && s->fuse_fd >= 0) {
        struct pollfd pf = { .fd = s->fuse_fd, .events = 0 };
        if (poll(&pf, 1, 0) == 1 && (pf.revents & (POLLERR | POLLHUP | POLLNVAL)))
            begin_end(s, "unmounted");
    }
}

static void cur_died(super_t *s, int st)
{
    char how[64];
    describe(st, how, sizeof(how));
    sproc_t was = s->cur;
    s->cur = no_proc;
    if (was.sock >= 0)
        close(was.sock);
    /* It ended because the mount did (umount: its read said ENODEV)? The
     * kernel's POLLERR on our /dev/fuse is there before its exit, but may
     * not have been polled yet: look now, or a new process would start
     * for a mount that is gone (and a clean umount be logged as a death). */
    check_unmounted(s);
    if (s->ending) {
        if (was.bin >= 0)
            close(was.bin);
        return;
    }
    if (!s->went_live) {
        /* The first start failed: it said why on stderr. */
        if (was.bin >= 0)
            close(was.bin);
        if (s->status == 0)
            s->status = WIFEXITED(st) && WEXITSTATUS(st) ? WEXITSTATUS(st) : 1;
        s->ending = true;
        s->end_deadline = kb_now_ms() + KBF_END_MS;
        if (s->mounted) {
            fuse_session_unmount(s->cfg->se);
            s->fuse_fd = -1;
        }
        return;
    }
    if (was.st == SP_STOPPING && alive(&s->next)) {
        /* A restart: the new process goes on as soon as the old one is gone. */
        if (was.bin >= 0)
            close(was.bin);
        s->cur = s->next;
        s->next = no_proc;
        if (s->cur.st == SP_CONNECTED)
            go(s, &s->cur);
        return;
    }
    if (!s->handover_ok) {
        kb_err("super", "serving process %d ended (%s) and this mount cannot be handed over: the mount ends",
               (int)was.pid, how);
        if (was.bin >= 0)
            close(was.bin);
        s->status = 1;
        s->done = true;
        return;
    }
    if (was.st != SP_READY && was.takeover)
        s->failures++;
    if (was.bin >= 0)
        close(was.bin);
    kb_warn("super", "serving process %d ended (%s); a new one takes the mount over", (int)was.pid, how);
    if (was.failed[0])
        kb_warn("super", "  it said: %s", was.failed);
    if (s->replaced && was.pid != s->replaced) {
        answer(s, -EIO, "the new serving process %d ended (%s) while taking the mount over%s%s; "
               "another one is taking it over", (int)was.pid, how, was.failed[0] ? ": " : "", was.failed);
        s->replaced = 0;
    }
    if (alive(&s->next) && s->next.st == SP_CONNECTED) {
        s->cur = s->next;        /* a restart's standby is there already */
        s->next = no_proc;
        go(s, &s->cur);
        return;
    }
    if (s->failures) {
        uint64_t ms = KB_MIN((uint64_t)KBF_BACKOFF_MAX_MS, 100ull << KB_MIN(s->failures - 1, 6u));
        s->respawn_at = kb_now_ms() + ms;
        kb_warn("super", "%u takeovers in a row failed; the next in %llu ms", s->failures, (unsigned long long)ms);
    }
    respawn(s);
}

static void next_died(super_t *s, int st)
{
    char how[64];
    describe(st, how, sizeof(how));
    sproc_t was = s->next;
    s->next = no_proc;
    if (was.sock >= 0)
        close(was.sock);
    if (was.bin >= 0)
        close(was.bin);
    if (s->ending)
        return;
    answer(s, -EIO, "the new serving process (%s) ended (%s) before it could take over%s%s; %d keeps serving",
           s->self, how, was.failed[0] ? ": " : "", was.failed, (int)s->cur.pid);
    s->replaced = 0;
    /* Told to stop already (it died after it connected)? The old one stops
     * anyway, and its end takes the crash path: another one takes over. */
}

static void reap(super_t *s)
{
    int st;
    pid_t pid;
    while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
        if (pid == s->cur.pid)
            cur_died(s, st);
        else if (pid == s->next.pid)
            next_died(s, st);
    }
}

/* ---------------- the loop ---------------- */

static void begin_end(super_t *s, const char *why)
{
    if (s->ending)
        return;
    kb_info("super", "the mount ends (%s)", why);
    s->ending = true;
    s->end_deadline = kb_now_ms() + KBF_END_MS;
    if (alive(&s->next))
        kill(s->next.pid, SIGKILL);
    if (s->client >= 0)
        answer(s, -ESHUTDOWN, "the mount is ending");
}

static void on_signal(super_t *s)
{
    struct signalfd_siginfo si;
    while (read(s->sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
        switch (si.ssi_signo) {
        case SIGCHLD:
            reap(s);
            break;
        case SIGUSR1:
            if (alive(&s->cur))
                kill(s->cur.pid, SIGUSR1);
            break;
        default:                 /* SIGTERM, SIGINT, SIGHUP: unmount */
            if (s->mounted && s->fuse_fd >= 0) {
                char why[32];
                snprintf(why, sizeof(why), "signal %u", si.ssi_signo);
                begin_end(s, why);
                fuse_session_unmount(s->cfg->se);   /* closes our descriptor */
                s->fuse_fd = -1;
            } else {
                begin_end(s, "signal before the mount");
                if (alive(&s->cur))
                    kill(s->cur.pid, SIGTERM);
            }
            break;
        }
    }
}

static void timers(super_t *s)
{
    uint64_t now = kb_now_ms();
    if (s->ending && now >= s->end_deadline) {
        if (alive(&s->cur))
            kill(s->cur.pid, SIGKILL);
        if (alive(&s->next))
            kill(s->next.pid, SIGKILL);
        s->end_deadline = now + 1000;
    }
    if (s->cur.st == SP_STOPPING && alive(&s->cur) && now >= s->stop_deadline) {
        kb_warn("super", "serving process %d did not stop within %d s: killing it", (int)s->cur.pid,
                KBF_STOP_MS / 1000);
        kill(s->cur.pid, SIGKILL);
        s->stop_deadline = now + 1000;
    }
    if (alive(&s->next) && s->next.st == SP_STARTED && now >= s->standby_deadline) {
        kb_warn("super", "restart: serving process %d did not connect within %d s", (int)s->next.pid,
                KBF_STANDBY_MS / 1000);
        kill(s->next.pid, SIGKILL);
        s->standby_deadline = now + 1000;
    }
    if (!alive(&s->cur) && !s->ending && s->respawn_at && now >= s->respawn_at)
        respawn(s);
}

#define FUSE_CHECK_MS 1000

static int next_timeout(const super_t *s)
{
    uint64_t now = kb_now_ms(), t = UINT64_MAX;
    if (s->ending)
        t = KB_MIN(t, s->end_deadline);
    if (s->cur.st == SP_STOPPING)
        t = KB_MIN(t, s->stop_deadline);
    if (alive(&s->next) && s->next.st == SP_STARTED)
        t = KB_MIN(t, s->standby_deadline);
    if (s->respawn_at)
        t = KB_MIN(t, s->respawn_at);
    if (s->mounted && s->fuse_fd >= 0 && !s->ending && alive(&s->cur))
        t = KB_MIN(t, now + FUSE_CHECK_MS);   /* a look at /dev/fuse (loop) */
    if (t == UINT64_MAX)
        return -1;
    return t <= now ? 0 : (int)KB_MIN(t - now, 60000u);
}

static void loop(super_t *s)
{
    while (!s->done) {
        if (s->ending && !alive(&s->cur) && !alive(&s->next))
            break;
        struct pollfd p[6];
        int n = 0, i_sig, i_lsock = -1, i_cur = -1, i_next = -1;
        p[i_sig = n++] = (struct pollfd){ .fd = s->sigfd, .events = POLLIN };
        if (s->lsock >= 0 && s->went_live)
            p[i_lsock = n++] = (struct pollfd){ .fd = s->lsock, .events = POLLIN };
        if (s->cur.sock >= 0)
            p[i_cur = n++] = (struct pollfd){ .fd = s->cur.sock, .events = POLLIN };
        if (s->next.sock >= 0)
            p[i_next = n++] = (struct pollfd){ .fd = s->next.sock, .events = POLLIN };
        /* Unmounted: POLLERR on /dev/fuse. Polled only while no process
         * serves: a poll on it is woken by every request the kernel queues
         * (with events 0 too), a wake-up of this process on the CPU the
         * serving process needs, per call. While one serves, it sees the
         * unmount (ENODEV) and exits (cur_died looks then), and a look every
         * FUSE_CHECK_MS covers one that is stopped or hung. */
        if (s->mounted && s->fuse_fd >= 0 && !s->ending && !alive(&s->cur))
            p[n++] = (struct pollfd){ .fd = s->fuse_fd, .events = 0 };
        int rc = poll(p, (nfds_t)n, next_timeout(s));
        if (rc < 0 && errno != EINTR) {
            kb_err("super", "poll: %s", strerror(errno));
            sleep(1);
        }
        if (rc > 0) {
            /* Messages first: a process's last words come before its exit. */
            if (i_cur >= 0 && p[i_cur].revents)
                on_msg(s, &s->cur);
            if (i_next >= 0 && p[i_next].revents && s->next.sock >= 0)
                on_msg(s, &s->next);
            if (p[i_sig].revents)
                on_signal(s);
            if (i_lsock >= 0 && p[i_lsock].revents)
                on_restart_request(s);
        }
        check_unmounted(s);      /* whatever woke us: the descriptor, or a FUSE_CHECK_MS look */
        timers(s);
    }
}

/* ---------------- setup ---------------- */

static void listen_ctl(super_t *s)
{
    struct sockaddr_un sa;
    socklen_t sl;
    kbf_ctl_addr(s->cfg->mnt, &sa, &sl);
    s->lsock = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (s->lsock >= 0 && bind(s->lsock, (struct sockaddr *)&sa, sl) == 0 && listen(s->lsock, 4) == 0)
        return;
    kb_warn("super", "no control socket for %s (%s): `kembar-fuse --restart` cannot reach this mount",
            s->cfg->mnt, strerror(errno));
    if (s->lsock >= 0)
        close(s->lsock);
    s->lsock = -1;
}

/* The instance id every serving process of this mount shares (the bricks key
 * its locks by it): inherited, or made now. */
static void instance_env(uint8_t out[16])
{
    kb_instance_id(out);
    if (getenv("KB_INSTANCE_ID"))
        return;
    char hex[33];
    for (int i = 0; i < 16; i++)
        snprintf(hex + 2 * i, 3, "%02x", out[i]);
    setenv("KB_INSTANCE_ID", hex, 1);
}

int kbf_super_run(const kbf_super_cfg_t *cfg)
{
    super_t s = { .cfg = cfg, .sigfd = -1, .lsock = -1, .fuse_fd = -1, .client = -1, .good_bin = -1,
                  .cur = no_proc, .next = no_proc };
    kb_log_set_ident("kembar-fuse[super]");
    ssize_t n = readlink("/proc/self/exe", s.self, sizeof(s.self) - 1);
    if (n <= 0) {
        fprintf(stderr, "kembar-fuse: cannot find my own binary: %s\n", strerror(errno));
        return 1;
    }
    s.self[n] = 0;
    uint8_t inst[16];
    instance_env(inst);
    kbf_st_geom_t g = { KBF_ST_NODE_CAP, KBF_ST_HANDLE_CAP, KBF_ST_JOURNAL_SIZE };
    int rc = kbf_state_create(&s.state, &g, inst, false);
    if (rc < 0) {
        fprintf(stderr, "kembar-fuse: cannot make the shared state: %s\n", strerror(-rc));
        return 1;
    }
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGUSR1);
    sigprocmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    s.sigfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    if (s.sigfd < 0) {
        fprintf(stderr, "kembar-fuse: signalfd: %s\n", strerror(errno));
        return 1;
    }
    if (!cfg->handover)
        kb_warn("super", "-o splice: requests bypass the hooks a handover needs; this mount ends with its "
                "serving process");
    listen_ctl(&s);
    rc = spawn(&s, &s.cur, false, false);
    if (rc < 0) {
        fprintf(stderr, "kembar-fuse: cannot start the serving process: %s\n", strerror(-rc));
        return 1;
    }
    loop(&s);
    if (alive(&s.cur))
        kill(s.cur.pid, SIGKILL);
    if (alive(&s.next))
        kill(s.next.pid, SIGKILL);
    while (waitpid(-1, NULL, WNOHANG) > 0)
        ;
    if (cfg->pid_file && s.went_live)
        unlink(cfg->pid_file);
    if (s.went_live)
        kb_info("super", "ended");
    sproc_clear(&s.cur);
    sproc_clear(&s.next);
    if (s.good_bin >= 0)
        close(s.good_bin);
    if (s.lsock >= 0)
        close(s.lsock);
    kbf_state_unmap(&s.state);
    return s.status;
}
