/*
 * ctl_test.c — what kembar-fuse's supervisor, its serving process and
 * `kembar-fuse --restart` say to each other (fuse/ctl.c), over real
 * SOCK_SEQPACKET sockets: a message and its file descriptor (SCM_RIGHTS)
 * round trip, fds not taken are closed, EOF and "nothing yet", short and
 * garbage records refused without crashing (the socket stays usable), the
 * supervisor ignoring message types it does not know (fuse/super.c
 * on_msg), the abstract socket name of a mount point, the mount point
 * spelled as an absolute path, and the restart socket's answers: busy,
 * not handed over, another mount's path, who may ask (root or the
 * supervisor's own user: checked with real uids when run as root), and a
 * refusal sent before the supervisor hangs up is read by the caller.
 *
 * fuse/ is a binary, not part of libkembar.a: the modules are compiled in.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "fuse/ctl.c"
#include "fuse/state.c"
#include "fuse/super.c"

static void pair(int sv[2])
{
    cr_assert_eq(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0, "%s", strerror(errno));
}

static void nonblocking(int fd)
{
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

/* Open file descriptors of this process. */
static unsigned nfds(void)
{
    DIR *d = opendir("/proc/self/fd");
    cr_assert_not_null(d);
    unsigned n = 0;
    for (struct dirent *e; (e = readdir(d));)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

static bool same_file(int a, int b)
{
    struct stat sa, sb;
    cr_assert_eq(fstat(a, &sa), 0);
    cr_assert_eq(fstat(b, &sb), 0);
    return sa.st_ino == sb.st_ino && sa.st_dev == sb.st_dev;
}

/* A raw record of LEN bytes (with FDS, N of them). */
static void send_raw(int sock, const void *buf, size_t len, const int *fds, unsigned n)
{
    struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
    union { struct cmsghdr h; char b[CMSG_SPACE(8 * sizeof(int))]; } cbuf;
    struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
    if (n) {
        memset(&cbuf, 0, sizeof(cbuf));
        mh.msg_control = cbuf.b;
        mh.msg_controllen = CMSG_SPACE(n * sizeof(int));
        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(n * sizeof(int));
        memcpy(CMSG_DATA(c), fds, n * sizeof(int));
    }
    cr_assert_eq(sendmsg(sock, &mh, 0), (ssize_t)len, "%s", strerror(errno));
}

/* ================= messages ================= */

Test(fuse_ctl, a_message_and_its_fd_round_trip)
{
    int sv[2];
    pair(sv);
    int mfd = memfd_create("kbf-ctl-test", MFD_CLOEXEC);
    cr_assert_geq(mfd, 0);
    cr_assert_eq(ftruncate(mfd, 4096), 0);
    kbf_msg_t m = { .type = KBF_MSG_STATE, .flags = KBF_MF_TAKEOVER, .arg = -1234567890123ll };
    snprintf(m.text, sizeof(m.text), "the state");
    cr_assert_eq(kbf_msg_send(sv[0], &m, mfd), 0);
    kbf_msg_t got;
    int fd = -2;
    cr_assert_eq(kbf_msg_recv(sv[1], &got, &fd), 1);
    cr_assert_eq(got.type, KBF_MSG_STATE);
    cr_assert_eq(got.flags, KBF_MF_TAKEOVER);
    cr_assert_eq(got.arg, -1234567890123ll);
    cr_assert_str_eq(got.text, "the state");
    cr_assert_geq(fd, 0, "the fd came");
    cr_assert_neq(fd, mfd);
    cr_assert(same_file(fd, mfd), "the same file (st_ino, st_dev)");
    cr_assert_neq(fcntl(fd, F_GETFD) & FD_CLOEXEC, 0, "received close-on-exec");
    /* One open file: what one writes through it the other reads. */
    cr_assert_eq(pwrite(mfd, "shared", 6, 100), 6);
    char back[8] = "";
    cr_assert_eq(pread(fd, back, 6, 100), 6);
    cr_assert_str_eq(back, "shared");
    close(fd);

    /* Without an fd; and the other way round. */
    kbf_msg_t r = { .type = KBF_MSG_READY, .flags = KBF_MF_HANDOVER, .arg = 4242 };
    cr_assert_eq(kbf_msg_send(sv[1], &r, -1), 0);
    fd = -2;
    cr_assert_eq(kbf_msg_recv(sv[0], &got, &fd), 1);
    cr_assert_eq(fd, -1, "none came");
    cr_assert_eq(got.type, KBF_MSG_READY);
    cr_assert_eq(got.arg, 4242);
    cr_assert_eq(got.text[0], 0);

    /* A text as long as it can be arrives terminated. */
    memset(m.text, 'x', sizeof(m.text));
    cr_assert_eq(kbf_msg_send(sv[0], &m, -1), 0);
    cr_assert_eq(kbf_msg_recv(sv[1], &got, NULL), 1);
    cr_assert_eq(strlen(got.text), sizeof(got.text) - 1);
    close(mfd);
    close(sv[0]);
    close(sv[1]);
}

Test(fuse_ctl, fds_not_taken_are_closed)
{
    int sv[2];
    pair(sv);
    int mfd = memfd_create("kbf-ctl-test", MFD_CLOEXEC);
    cr_assert_geq(mfd, 0);
    unsigned base = nfds();
    kbf_msg_t m = { .type = KBF_MSG_GO };
    /* The caller does not take fds (NULL): the one that came is closed. */
    cr_assert_eq(kbf_msg_send(sv[0], &m, mfd), 0);
    kbf_msg_t got;
    cr_assert_eq(kbf_msg_recv(sv[1], &got, NULL), 1);
    cr_assert_eq(got.type, KBF_MSG_GO);
    cr_assert_eq(nfds(), base, "no fd left behind");
    /* Three in one message: the first is taken, the others closed. */
    int three[3] = { mfd, sv[0], sv[1] };
    send_raw(sv[0], &m, sizeof(m), three, 3);
    int fd = -2;
    cr_assert_eq(kbf_msg_recv(sv[1], &got, &fd), 1);
    cr_assert(same_file(fd, mfd));
    cr_assert_eq(nfds(), base + 1, "only the one taken");
    close(fd);
    close(mfd);
    close(sv[0]);
    close(sv[1]);
}

Test(fuse_ctl, eof_and_nothing_yet)
{
    int sv[2];
    pair(sv);
    nonblocking(sv[1]);
    kbf_msg_t got;
    int fd = -2;
    cr_assert_eq(kbf_msg_recv(sv[1], &got, &fd), -EAGAIN);
    cr_assert_eq(fd, -1);
    close(sv[0]);
    cr_assert_eq(kbf_msg_recv(sv[1], &got, &fd), 0, "the peer is gone");
    close(sv[1]);
    cr_assert_eq(kbf_msg_recv(sv[1], &got, &fd), -EBADF);
    kbf_msg_t m = { .type = KBF_MSG_STOP };
    int sw[2];
    pair(sw);
    close(sw[1]);
    cr_assert_eq(kbf_msg_send(sw[0], &m, -1), -EPIPE, "no SIGPIPE: an error");
    close(sw[0]);
}

Test(fuse_ctl, short_and_garbage_records_are_refused_and_the_socket_goes_on)
{
    int sv[2];
    pair(sv);
    nonblocking(sv[1]);
    int mfd = memfd_create("kbf-ctl-test", MFD_CLOEXEC);
    cr_assert_geq(mfd, 0);
    unsigned base = nfds();
    kbf_msg_t got;
    int fd = -2;

    /* Shorter than a message: refused, its fd closed. */
    uint32_t tiny[2] = { KBF_MSG_GO, 0 };
    send_raw(sv[0], tiny, sizeof(tiny), &mfd, 1);
    cr_assert_eq(kbf_msg_recv(sv[1], &got, &fd), -EBADMSG);
    cr_assert_eq(fd, -1);
    cr_assert_eq(nfds(), base, "the fd of a refused record is closed");
    send_raw(sv[0], "x", 1, NULL, 0);
    cr_assert_eq(kbf_msg_recv(sv[1], &got, NULL), -EBADMSG);
    /* One byte short. */
    char buf[1024];
    memset(buf, 0xa5, sizeof(buf));
    send_raw(sv[0], buf, sizeof(kbf_msg_t) - 1, NULL, 0);
    cr_assert_eq(kbf_msg_recv(sv[1], &got, NULL), -EBADMSG);

    /* Records are kept apart: the next message is whole. */
    kbf_msg_t m = { .type = KBF_MSG_STOPPED, .arg = 7 };
    cr_assert_eq(kbf_msg_send(sv[0], &m, -1), 0);
    cr_assert_eq(kbf_msg_recv(sv[1], &got, NULL), 1);
    cr_assert_eq(got.type, KBF_MSG_STOPPED);
    cr_assert_eq(got.arg, 7);

    /* Garbage of the right size is a message (of a type nobody knows: the
     * readers ignore it); its text is cut, never read past its end. */
    send_raw(sv[0], buf, sizeof(kbf_msg_t), NULL, 0);
    cr_assert_eq(kbf_msg_recv(sv[1], &got, NULL), 1);
    cr_assert_eq(got.type, 0xa5a5a5a5u);
    cr_assert_eq(strlen(got.text), sizeof(got.text) - 1);
    /* A longer record (no version sends one) is read as its first 512
     * bytes: kbf_msg_recv does not ask for MSG_TRUNC. */
    send_raw(sv[0], buf, sizeof(buf), NULL, 0);
    cr_assert_eq(kbf_msg_recv(sv[1], &got, NULL), 1);
    cr_assert_eq(got.text[sizeof(got.text) - 1], 0);
    cr_assert_eq(kbf_msg_recv(sv[1], &got, NULL), -EAGAIN, "its tail is not a record of its own");
    close(mfd);
    close(sv[0]);
    close(sv[1]);
}

/* ================= the supervisor reading its serving process ================= */

static kbf_super_cfg_t cfg = { .mnt = "/kbf-ctl-test/mnt", .ready_fd = -1, .handover = true };

static super_t new_super(void)
{
    return (super_t){ .cfg = &cfg, .sigfd = -1, .lsock = -1, .fuse_fd = -1, .client = -1, .good_bin = -1,
                      .cur = no_proc, .next = no_proc };
}

Test(fuse_ctl, the_supervisor_ignores_types_it_does_not_know)
{
    int sv[2];
    pair(sv);
    nonblocking(sv[0]);
    super_t s = new_super();
    s.cur.sock = sv[0];
    s.cur.st = SP_GO;
    s.went_live = true;          /* no daemon parent to tell */
    kbf_msg_t m = { .type = 99, .flags = ~0u, .arg = -1 };
    snprintf(m.text, sizeof(m.text), "from a newer serving binary");
    cr_assert_eq(kbf_msg_send(sv[1], &m, -1), 0);
    m.type = 0;
    cr_assert_eq(kbf_msg_send(sv[1], &m, -1), 0);
    m.type = KBF_MSG_RESTART;    /* a --restart's, not a serving process's */
    cr_assert_eq(kbf_msg_send(sv[1], &m, -1), 0);
    on_msg(&s, &s.cur);
    cr_assert_eq(s.cur.sock, sv[0], "still talking to it");
    cr_assert_eq(s.cur.st, SP_GO, "nothing changed");
    cr_assert_eq(s.cur.failed[0], 0);
    cr_assert_not(s.handover_ok);
    kbf_msg_t got;
    nonblocking(sv[1]);
    cr_assert_eq(kbf_msg_recv(sv[1], &got, NULL), -EAGAIN, "and nothing said back");

    /* What it knows still works after them. */
    kbf_msg_t f = { .type = KBF_MSG_FAILED };
    snprintf(f.text, sizeof(f.text), "cannot do it");
    kbf_msg_t r = { .type = KBF_MSG_READY, .flags = KBF_MF_HANDOVER, .arg = 1 };
    cr_assert_eq(kbf_msg_send(sv[1], &m, -1), 0);
    cr_assert_eq(kbf_msg_send(sv[1], &f, -1), 0);
    cr_assert_eq(kbf_msg_send(sv[1], &r, -1), 0);
    on_msg(&s, &s.cur);
    cr_assert_str_eq(s.cur.failed, "cannot do it");
    cr_assert_eq(s.cur.st, SP_READY);
    cr_assert(s.handover_ok);

    /* Its end closes the socket (its exit says the rest). */
    close(sv[1]);
    on_msg(&s, &s.cur);
    cr_assert_eq(s.cur.sock, -1);
}

/* ================= the supervisor's address ================= */

static const size_t base_len = offsetof(struct sockaddr_un, sun_path);

Test(fuse_ctl, the_abstract_name_of_a_mount_point)
{
    struct sockaddr_un sa;
    socklen_t len;
    kbf_ctl_addr("/mnt/vm1", &sa, &len);
    cr_assert_eq(sa.sun_family, AF_UNIX);
    cr_assert_eq(sa.sun_path[0], 0, "abstract: no file to leave behind or to chmod");
    static const char want[] = "kembar-fuse:/mnt/vm1";
    cr_assert_eq(len, base_len + 1 + strlen(want), "no trailing NUL in the name");
    cr_assert_eq(memcmp(sa.sun_path + 1, want, strlen(want)), 0);

    /* The longest that fits is kept as it is; longer ones are hashed. */
    char p[300];
    size_t room = sizeof(sa.sun_path) - 1 - strlen("kembar-fuse:");
    memset(p, 'a', sizeof(p));
    p[0] = '/';
    p[room] = 0;
    kbf_ctl_addr(p, &sa, &len);
    cr_assert_eq(len, base_len + sizeof(sa.sun_path));
    cr_assert_eq(memcmp(sa.sun_path + 1 + 12, p, room), 0);
    p[room] = 'a';
    p[room + 1] = 0;
    kbf_ctl_addr(p, &sa, &len);
    cr_assert_eq(len, base_len + 1 + 12 + 17, "kembar-fuse:#<16 hex digits>");
    cr_assert_eq(memcmp(sa.sun_path + 1, "kembar-fuse:#", 13), 0);
    char h1[17];
    memcpy(h1, sa.sun_path + 14, 16);
    h1[16] = 0;
    for (int i = 0; i < 16; i++)
        cr_assert(strchr("0123456789abcdef", h1[i]), "hex: %s", h1);
    struct sockaddr_un sb;
    socklen_t lb;
    kbf_ctl_addr(p, &sb, &lb);
    cr_assert(lb == len && memcmp(&sa, &sb, len) == 0, "the same path, the same name");
    p[room] = 'b';
    kbf_ctl_addr(p, &sb, &lb);
    cr_assert_neq(memcmp(sa.sun_path, sb.sun_path, lb - base_len), 0, "another path, another name");
    memset(p + 1, 'c', sizeof(p) - 1);
    p[sizeof(p) - 1] = 0;
    kbf_ctl_addr(p, &sb, &lb);
    cr_assert_eq(lb, base_len + 30, "any length");
}

Test(fuse_ctl, a_mount_point_spelled_as_an_absolute_path)
{
    char out[PATH_MAX], cwd[PATH_MAX], want[PATH_MAX + 16];
    abs_path("/mnt/vm1", out, sizeof(out));
    cr_assert_str_eq(out, "/mnt/vm1");
    abs_path("//mnt///./vm1/", out, sizeof(out));
    cr_assert_str_eq(out, "/mnt/vm1");
    abs_path("/mnt/x/../vm1/.", out, sizeof(out));
    cr_assert_str_eq(out, "/mnt/vm1");
    abs_path("/../..", out, sizeof(out));
    cr_assert_str_eq(out, "/");
    abs_path("/", out, sizeof(out));
    cr_assert_str_eq(out, "/");
    abs_path("/mnt/..vm/.x", out, sizeof(out));
    cr_assert_str_eq(out, "/mnt/..vm/.x", "only whole components are . or ..");
    cr_assert_eq(chdir("/tmp"), 0);
    cr_assert_not_null(getcwd(cwd, sizeof(cwd)));
    abs_path("sub/dir", out, sizeof(out));
    snprintf(want, sizeof(want), "%s/sub/dir", strcmp(cwd, "/") ? cwd : "");
    cr_assert_str_eq(out, want);
    abs_path(".", out, sizeof(out));
    cr_assert_str_eq(out, cwd);
    abs_path("../tmp/./", out, sizeof(out));
    cr_assert_str_eq(out, cwd);
}

/* ================= the restart socket ================= */

static char mnt[64];

static super_t listening(void)
{
    snprintf(mnt, sizeof(mnt), "/kbf-ctl-test/%d/mnt", (int)getpid());
    cfg.mnt = mnt;
    super_t s = new_super();
    listen_ctl(&s);
    cr_assert_geq(s.lsock, 0, "bound %s", mnt);
    return s;
}

/* One request on S's socket, answered as the supervisor's loop would. */
static void serve_one(super_t *s)
{
    struct pollfd p = { .fd = s->lsock, .events = POLLIN };
    cr_assert_eq(poll(&p, 1, 5000), 1, "a caller came");
    on_restart_request(s);
}

struct caller {
    const char *mnt;
    kbf_msg_t res;
    int rc;
};

static void *call_restart(void *arg)
{
    struct caller *c = arg;
    c->rc = restart_at(c->mnt, 5, &c->res);
    return NULL;
}

/* restart_at(MNT) against S: its return and the answer in RES. */
static int ask(super_t *s, const char *path, kbf_msg_t *res)
{
    struct caller c = { .mnt = path };
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, call_restart, &c), 0);
    serve_one(s);
    pthread_join(t, NULL);
    *res = c.res;
    return c.rc;
}

Test(fuse_ctl, the_restart_socket_answers)
{
    super_t s = listening();
    s.went_live = true;
    kbf_msg_t res;

    s.cur.st = SP_GO;            /* a takeover under way */
    cr_assert_eq(ask(&s, mnt, &res), 0);
    cr_assert_eq(res.type, KBF_MSG_RESULT);
    cr_assert_eq(res.arg, -EBUSY);
    cr_assert(strstr(res.text, "under way"), "%s", res.text);
    cr_assert_eq(s.client, -1, "answered and closed");

    s.cur.st = SP_READY;         /* serving, but cannot be handed over */
    s.handover_ok = false;
    cr_assert_eq(ask(&s, mnt, &res), 0);
    cr_assert_eq(res.arg, -ENOTSUP);
    cr_assert(strstr(res.text, "cannot be handed over"), "%s", res.text);

    /* A RESTART naming another mount point (a hash collision, a stale
     * name) restarts nothing here. */
    struct sockaddr_un sa;
    socklen_t sl;
    kbf_ctl_addr(mnt, &sa, &sl);
    int c = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    cr_assert_eq(connect(c, (struct sockaddr *)&sa, sl), 0);
    kbf_msg_t m = { .type = KBF_MSG_RESTART };
    snprintf(m.text, sizeof(m.text), "/some/other/mount");
    cr_assert_eq(kbf_msg_send(c, &m, -1), 0);
    serve_one(&s);
    cr_assert_eq(kbf_msg_recv(c, &res, NULL), 1);
    cr_assert_eq(res.arg, -ENOENT);
    cr_assert(strstr(res.text, "/some/other/mount"), "%s", res.text);
    close(c);

    /* Anything but a RESTART, or a short record, is hung up on. */
    c = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    cr_assert_eq(connect(c, (struct sockaddr *)&sa, sl), 0);
    m.type = KBF_MSG_STOP;
    snprintf(m.text, sizeof(m.text), "%s", mnt);
    cr_assert_eq(kbf_msg_send(c, &m, -1), 0);
    serve_one(&s);
    cr_assert_eq(kbf_msg_recv(c, &res, NULL), 0, "closed without an answer");
    close(c);
    c = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    cr_assert_eq(connect(c, (struct sockaddr *)&sa, sl), 0);
    cr_assert_eq(send(c, "RESTART", 7, 0), 7);
    serve_one(&s);
    cr_assert_eq(kbf_msg_recv(c, &res, NULL), 0);
    close(c);
    cr_assert_eq(s.cur.st, SP_READY, "nothing started");
    cr_assert_eq(s.next.pid, 0);

    /* No supervisor at a name: refused at once. */
    close(s.lsock);
    cr_assert_eq(restart_at(mnt, 5, &res), -ECONNREFUSED);
    cr_assert_eq(kbf_ctl_restart(mnt, 5), 1, "one line on stderr, exit status 1");
}

/* Uids for the access test: not root, not each other. */
#define UID_SUPER 65534
#define UID_OTHER 65533

static void become(uid_t uid)
{
    if (setresgid(uid, uid, uid) < 0 || setresuid(uid, uid, uid) < 0)
        _exit(90);
}

/* A caller with UID: the exit status says what it was answered (1: no,
 * 2: busy). */
static pid_t caller_as(uid_t uid, const char *path)
{
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        become(uid);
        kbf_msg_t res;
        int rc = restart_at(path, 5, &res);
        if (rc < 0)
            _exit(100 + (-rc & 127));
        _exit(res.arg == -EPERM && strstr(res.text, "only root") ? 1 : res.arg == -EBUSY ? 2 : 92);
    }
    return pid;
}

static int exit_of(pid_t pid)
{
    int st;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    cr_assert(WIFEXITED(st));
    return WEXITSTATUS(st);
}

Test(fuse_ctl, only_root_or_the_supervisors_user_may_ask)
{
    if (geteuid() != 0)
        cr_skip_test("needs root to run callers (and a supervisor) with other uids");
    snprintf(mnt, sizeof(mnt), "/kbf-ctl-test/%d/users", (int)getpid());
    cfg.mnt = mnt;
    /* A supervisor run by an ordinary user (a user's own mount), for three
     * callers: root, that user, another user. */
    int go[2];
    cr_assert_eq(pipe(go), 0);
    pid_t sup = fork();
    cr_assert_geq(sup, 0);
    if (sup == 0) {
        close(go[0]);
        become(UID_SUPER);
        super_t s = new_super();
        s.went_live = true;
        s.cur.st = SP_GO;        /* every allowed caller is told "busy" */
        listen_ctl(&s);
        if (s.lsock < 0)
            _exit(93);
        if (write(go[1], "1", 1) != 1)
            _exit(94);
        for (int i = 0; i < 3; i++) {
            struct pollfd p = { .fd = s.lsock, .events = POLLIN };
            if (poll(&p, 1, 5000) != 1)
                _exit(95);
            on_restart_request(&s);
        }
        _exit(0);
    }
    close(go[1]);
    char b;
    cr_assert_eq(read(go[0], &b, 1), 1, "the supervisor listens");
    close(go[0]);
    int ex = exit_of(caller_as(0, mnt));
    cr_assert_eq(ex, 2, "root may (exit %d: 100 + errno from restart_at)", ex);
    ex = exit_of(caller_as(UID_SUPER, mnt));
    cr_assert_eq(ex, 2, "the supervisor's own user may (exit %d)", ex);
    /* The supervisor answers EPERM and hangs up without reading the
     * request: the caller's send may fail (EPIPE) or its first read report
     * the unread request (ECONNRESET); it still reads why. */
    ex = exit_of(caller_as(UID_OTHER, mnt));
    cr_assert_eq(ex, 1, "anybody else is told no, and why (exit %d)", ex);
    cr_assert_eq(exit_of(sup), 0);
}

/* A supervisor that answers once the request came, without reading it, and
 * hangs up (as one does to a caller it refuses): the caller's read first
 * reports the unread request (ECONNRESET), then finds the answer. */
static void *hang_up_on(void *arg)
{
    int l = *(int *)arg;
    struct pollfd p = { .fd = l, .events = POLLIN };
    if (poll(&p, 1, 5000) != 1)
        return NULL;
    int c = accept4(l, NULL, NULL, SOCK_CLOEXEC);
    p = (struct pollfd){ .fd = c, .events = POLLIN };
    if (c < 0 || poll(&p, 1, 5000) != 1)
        return NULL;
    kbf_msg_t r = { .type = KBF_MSG_RESULT, .arg = -EPERM };
    snprintf(r.text, sizeof(r.text), "not you");
    kbf_msg_send(c, &r, -1);
    close(c);
    return NULL;
}

Test(fuse_ctl, an_answer_before_a_hang_up_is_read)
{
    snprintf(mnt, sizeof(mnt), "/kbf-ctl-test/%d/hangup", (int)getpid());
    struct sockaddr_un sa;
    socklen_t sl;
    kbf_ctl_addr(mnt, &sa, &sl);
    int l = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    cr_assert_eq(bind(l, (struct sockaddr *)&sa, sl), 0);
    cr_assert_eq(listen(l, 4), 0);
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, hang_up_on, &l), 0);
    kbf_msg_t res;
    int rc = restart_at(mnt, 5, &res);
    pthread_join(t, NULL);
    cr_assert_eq(rc, 0, "%s", strerror(-rc));
    cr_assert_eq(res.arg, -EPERM);
    cr_assert_str_eq(res.text, "not you");
    close(l);
}
