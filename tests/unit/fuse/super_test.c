/*
 * super_test.c — kembar-fuse's supervisor (fuse/super.c), the parts that
 * start nothing: how a serving process's end is described, the poll
 * timeout from the pending deadlines, a restart's sequence as the messages
 * and exits arrive (the new process connects -> the old one is told STOP;
 * the old one exits -> the new one gets GO with /dev/fuse; READY -> the
 * caller is answered), a new binary that dies before it connects, and the
 * ends of a serving process (a takeover that keeps dying backs off, a mount
 * that cannot be handed over ends, a first start that fails ends with its
 * status).
 *
 * Not here: starting serving processes (spawn forks and execs this binary),
 * the mount (fuse_session_mount), signals, and the timers that kill; the
 * restart socket is in ctl_test.c; tests/integration/ runs the whole.
 * The pids below are never signalled by the paths tested.
 */
#include <criterion/criterion.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "fuse/ctl.c"
#include "fuse/state.c"
#include "fuse/super.c"

static kbf_super_cfg_t cfg = { .mnt = "/kbf-super-test/mnt", .ready_fd = -1, .handover = true };

static super_t new_super(void)
{
    return (super_t){ .cfg = &cfg, .sigfd = -1, .lsock = -1, .fuse_fd = -1, .client = -1, .good_bin = -1,
                      .cur = no_proc, .next = no_proc };
}

static void pair(int sv[2])
{
    cr_assert_eq(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
    fcntl(sv[0], F_SETFL, fcntl(sv[0], F_GETFL) | O_NONBLOCK);
    fcntl(sv[1], F_SETFL, fcntl(sv[1], F_GETFL) | O_NONBLOCK);
}

/* The wait status of a real child that exits with CODE or dies of SIG. */
static int status_of(int code, int sig)
{
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        if (sig) {
            signal(sig, SIG_DFL);
            raise(sig);
        }
        _exit(code);
    }
    int st;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    return st;
}

static uint32_t next_type(int sock, int *fd)
{
    kbf_msg_t m;
    int rc = kbf_msg_recv(sock, &m, fd);
    return rc == 1 ? m.type : 0;
}

Test(fuse_super, how_an_end_is_told)
{
    char buf[64];
    describe(status_of(0, 0), buf, sizeof(buf));
    cr_assert_str_eq(buf, "exit status 0");
    describe(status_of(3, 0), buf, sizeof(buf));
    cr_assert_str_eq(buf, "exit status 3");
    describe(status_of(0, SIGKILL), buf, sizeof(buf));
    cr_assert_str_eq(buf, "killed by signal 9");
    describe(status_of(0, SIGABRT), buf, sizeof(buf));
    cr_assert_str_eq(buf, "killed by signal 6");
}

Test(fuse_super, the_poll_timeout_is_the_nearest_deadline)
{
    super_t s = new_super();
    cr_assert_eq(next_timeout(&s), -1, "nothing pending: wait for events");
    uint64_t now = kb_now_ms();
    s.respawn_at = now + 3000;
    int t = next_timeout(&s);
    cr_assert(t > 2500 && t <= 3000, "%d", t);
    s.cur.st = SP_STOPPING;
    s.stop_deadline = now + 1000;
    t = next_timeout(&s);
    cr_assert(t > 500 && t <= 1000, "%d", t);
    s.next = (sproc_t){ .pid = 999999, .sock = -1, .bin = -1, .st = SP_STARTED };
    s.standby_deadline = now + 200;
    t = next_timeout(&s);
    cr_assert(t >= 0 && t <= 200, "%d", t);
    s.next.st = SP_CONNECTED;        /* connected: its standby deadline is over */
    t = next_timeout(&s);
    cr_assert(t > 500 && t <= 1000, "%d", t);
    s.ending = true;
    s.end_deadline = now - 5;        /* passed */
    cr_assert_eq(next_timeout(&s), 0);
    s = new_super();
    s.respawn_at = now + 10 * 60 * 1000;
    cr_assert_eq(next_timeout(&s), 60000, "at most a minute");
}

/* A restart, as its messages and exits come. */
Test(fuse_super, a_restart_step_by_step)
{
    int a[2], b[2], c[2];
    pair(a);                          /* the old serving process */
    pair(b);                          /* the new one */
    pair(c);                          /* the --restart caller */
    int devfuse = memfd_create("not-dev-fuse", MFD_CLOEXEC);
    super_t s = new_super();
    s.went_live = true;
    s.handover_ok = true;
    s.mounted = true;
    s.fuse_fd = devfuse;
    s.cur = (sproc_t){ .pid = 999991, .sock = a[0], .bin = -1, .st = SP_READY };
    s.next = (sproc_t){ .pid = 999992, .sock = b[0], .bin = -1, .st = SP_STARTED, .takeover = true };
    s.replaced = s.cur.pid;
    s.client = c[0];

    /* The new one connected the volume: the old one stops. */
    kbf_msg_t m = { .type = KBF_MSG_CONNECTED };
    cr_assert_eq(kbf_msg_send(b[1], &m, -1), 0);
    uint64_t t0 = kb_now_ms();
    on_msg(&s, &s.next);
    cr_assert_eq(s.next.st, SP_CONNECTED);
    cr_assert_eq(next_type(a[1], NULL), KBF_MSG_STOP);
    cr_assert_eq(s.cur.st, SP_STOPPING);
    cr_assert(s.stop_deadline >= t0 + KBF_STOP_MS && s.stop_deadline <= kb_now_ms() + KBF_STOP_MS);
    cr_assert_eq(next_type(b[1], NULL), 0, "the new one waits: no GO while the old one serves");

    /* It says STOPPED and exits: the new one gets /dev/fuse. */
    m.type = KBF_MSG_STOPPED;
    cr_assert_eq(kbf_msg_send(a[1], &m, -1), 0);
    on_msg(&s, &s.cur);
    cr_assert_eq(s.cur.st, SP_STOPPING);
    cur_died(&s, status_of(0, 0));   /* closes its socket */
    cr_assert_eq(s.cur.pid, 999992, "the new one serves now");
    cr_assert_eq(s.cur.sock, b[0]);
    cr_assert_eq(s.next.pid, 0);
    cr_assert_eq(s.cur.st, SP_GO);
    int fd = -1;
    cr_assert_eq(next_type(b[1], &fd), KBF_MSG_GO);
    struct stat x, y;
    cr_assert_geq(fd, 0, "with /dev/fuse");
    fstat(fd, &x);
    fstat(devfuse, &y);
    cr_assert_eq(x.st_ino, y.st_ino);
    close(fd);
    cr_assert_eq(s.client, c[0], "the caller waits for READY");

    /* READY: the caller hears who replaced whom. */
    m = (kbf_msg_t){ .type = KBF_MSG_READY, .flags = KBF_MF_HANDOVER, .arg = 999992 };
    cr_assert_eq(kbf_msg_send(b[1], &m, -1), 0);
    on_msg(&s, &s.cur);
    cr_assert_eq(s.cur.st, SP_READY);
    cr_assert_eq(s.replaced, 0);
    cr_assert_eq(s.client, -1);
    kbf_msg_t res;
    cr_assert_eq(kbf_msg_recv(c[1], &res, NULL), 1);
    cr_assert_eq(res.type, KBF_MSG_RESULT);
    cr_assert_eq(res.arg, 999992);
    cr_assert(strstr(res.text, "999991 replaced by 999992"), "%s", res.text);
    close(a[1]);
    close(b[0]);
    close(b[1]);
    close(c[1]);
    close(devfuse);
}

Test(fuse_super, a_new_binary_that_dies_before_it_connects_is_reported)
{
    int b[2], c[2];
    pair(b);
    pair(c);
    super_t s = new_super();
    s.went_live = true;
    s.handover_ok = true;
    s.cur = (sproc_t){ .pid = 999991, .sock = -1, .bin = -1, .st = SP_READY };
    s.next = (sproc_t){ .pid = 999992, .sock = b[0], .bin = -1, .st = SP_STARTED, .takeover = true };
    snprintf(s.next.failed, sizeof(s.next.failed), "volume 'v' does not exist");
    s.replaced = s.cur.pid;
    s.client = c[0];
    next_died(&s, status_of(1, 0));
    cr_assert_eq(s.next.pid, 0);
    cr_assert_eq(s.cur.pid, 999991, "the old one keeps serving");
    cr_assert_eq(s.cur.st, SP_READY);
    cr_assert_eq(s.replaced, 0);
    kbf_msg_t res;
    cr_assert_eq(kbf_msg_recv(c[1], &res, NULL), 1);
    cr_assert_eq(res.arg, -EIO);
    cr_assert(strstr(res.text, "exit status 1"), "%s", res.text);
    cr_assert(strstr(res.text, "volume 'v' does not exist"), "what it said: %s", res.text);
    cr_assert(strstr(res.text, "999991 keeps serving"), "%s", res.text);
    close(b[1]);
    close(c[1]);
}

Test(fuse_super, takeovers_that_keep_dying_back_off)
{
    super_t s = new_super();
    s.went_live = true;
    s.handover_ok = true;
    uint64_t want[] = { 100, 200, 400, 800, 1600, 3200, 5000, 5000 };
    for (unsigned i = 0; i < KB_ARRAY_SIZE(want); i++) {
        s.cur = (sproc_t){ .pid = 999990 + (pid_t)i, .sock = -1, .bin = -1, .st = SP_GO, .takeover = true };
        s.respawn_at = 0;
        uint64_t t0 = kb_now_ms();
        cur_died(&s, status_of(0, SIGKILL));
        cr_assert_eq(s.failures, i + 1);
        cr_assert_eq(s.cur.pid, 0, "nothing started yet");
        cr_assert(s.respawn_at >= t0 + want[i] && s.respawn_at <= kb_now_ms() + want[i],
                  "failure %u: the next in %llu ms", i + 1, (unsigned long long)(s.respawn_at - t0));
        cr_assert_not(s.done);
    }
}

Test(fuse_super, a_mount_that_cannot_be_handed_over_ends_with_its_process)
{
    super_t s = new_super();
    s.went_live = true;
    s.handover_ok = false;
    s.cur = (sproc_t){ .pid = 999991, .sock = -1, .bin = -1, .st = SP_READY };
    cur_died(&s, status_of(0, SIGKILL));
    cr_assert(s.done);
    cr_assert_eq(s.status, 1);
    cr_assert_eq(s.respawn_at, 0, "no takeover");
}

Test(fuse_super, a_first_start_that_fails_ends_with_its_status)
{
    super_t s = new_super();
    s.cur = (sproc_t){ .pid = 999991, .sock = -1, .bin = -1, .st = SP_STARTED };
    cur_died(&s, status_of(4, 0));
    cr_assert(s.ending);
    cr_assert_eq(s.status, 4);
    cr_assert_eq(s.respawn_at, 0);
    s = new_super();
    s.cur = (sproc_t){ .pid = 999991, .sock = -1, .bin = -1, .st = SP_STARTED };
    cur_died(&s, status_of(0, SIGSEGV));
    cr_assert_eq(s.status, 1, "a crash is a failure too");
}

/* umount: the serving process reads ENODEV and exits 0; the supervisor may
 * see that exit before it polls its own /dev/fuse. The mount is gone, so it
 * ends (no new process, no "ended" warning); with a live /dev/fuse the same
 * exit is a death and a new process takes over (takeovers_that_keep_dying_back_off). */
Test(fuse_super, a_process_that_ended_with_the_mount_is_not_replaced)
{
    int pp[2];
    cr_assert_eq(pipe(pp), 0);
    close(pp[1]);                     /* its read end now polls POLLHUP: a dead /dev/fuse */
    super_t s = new_super();
    s.went_live = true;
    s.handover_ok = true;
    s.mounted = true;
    s.fuse_fd = pp[0];
    s.cur = (sproc_t){ .pid = 999991, .sock = -1, .bin = -1, .st = SP_READY };
    cur_died(&s, status_of(0, 0));
    cr_assert(s.ending, "the mount ends");
    cr_assert_eq(s.respawn_at, 0, "nothing started for it");
    cr_assert_eq(s.failures, 0);
    close(pp[0]);
}
