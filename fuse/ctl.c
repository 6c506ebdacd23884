/*
 * ctl.c — kembar-fuse's control messages (fuse/ctl.h): sending them with a
 * file descriptor, the supervisor's address, and `kembar-fuse --restart`.
 */
#include "fuse/ctl.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "lib/common.h"

int kbf_msg_send(int sock, const kbf_msg_t *m, int fd)
{
    struct iovec iov = { .iov_base = (void *)m, .iov_len = sizeof(*m) };
    union { struct cmsghdr h; char b[CMSG_SPACE(sizeof(int))]; } cbuf;
    struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
    if (fd >= 0) {
        memset(&cbuf, 0, sizeof(cbuf));
        mh.msg_control = cbuf.b;
        mh.msg_controllen = sizeof(cbuf.b);
        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(c), &fd, sizeof(int));
    }
    ssize_t n;
    do
        n = sendmsg(sock, &mh, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    return n == (ssize_t)sizeof(*m) ? 0 : n < 0 ? -errno : -EIO;
}

int kbf_msg_recv(int sock, kbf_msg_t *m, int *fd)
{
    struct iovec iov = { .iov_base = m, .iov_len = sizeof(*m) };
    union { struct cmsghdr h; char b[CMSG_SPACE(4 * sizeof(int))]; } cbuf;
    struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf.b,
                         .msg_controllen = sizeof(cbuf.b) };
    if (fd)
        *fd = -1;
    memset(m, 0, sizeof(*m));
    ssize_t n;
    do
        n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return errno == EAGAIN || errno == EWOULDBLOCK ? -EAGAIN : -errno;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < k; i++) {
            int got;
            memcpy(&got, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
            if (fd && *fd < 0)
                *fd = got;
            else
                close(got);      /* more than we take */
        }
    }
    if (n == 0)
        return 0;
    if (n != (ssize_t)sizeof(*m)) {
        if (fd && *fd >= 0)
            close(*fd);
        if (fd)
            *fd = -1;
        return -EBADMSG;
    }
    m->text[sizeof(m->text) - 1] = 0;
    return 1;
}

/*
 * "\0kembar-fuse:" + the mount point, or its FNV-1a hash when it is too long
 * for sun_path: the supervisor also checks the path a RESTART names, so a
 * hash collision cannot restart another mount.
 */
void kbf_ctl_addr(const char *mnt, struct sockaddr_un *sa, socklen_t *len)
{
    memset(sa, 0, sizeof(*sa));
    sa->sun_family = AF_UNIX;
    static const char prefix[] = "kembar-fuse:";
    size_t plen = sizeof(prefix) - 1, mlen = strlen(mnt);
    memcpy(sa->sun_path + 1, prefix, plen);
    size_t n;
    if (1 + plen + mlen <= sizeof(sa->sun_path)) {
        memcpy(sa->sun_path + 1 + plen, mnt, mlen);
        n = 1 + plen + mlen;
    } else {
        uint64_t h = 1469598103934665603ull;
        for (const char *p = mnt; *p; p++)
            h = (h ^ (uint8_t)*p) * 1099511628211ull;
        n = 1 + plen + (size_t)snprintf(sa->sun_path + 1 + plen, sizeof(sa->sun_path) - 1 - plen,
                                        "#%016llx", (unsigned long long)h);
    }
    *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
}

/* MNT as an absolute path without asking the file system anything: the mount
 * may be the thing that does not answer. */
static void abs_path(const char *mnt, char *out, size_t len)
{
    char buf[PATH_MAX * 2];
    if (mnt[0] == '/') {
        snprintf(buf, sizeof(buf), "%s", mnt);
    } else {
        char cwd[PATH_MAX];
        if (!getcwd(cwd, sizeof(cwd)))
            snprintf(cwd, sizeof(cwd), "/");
        snprintf(buf, sizeof(buf), "%s/%s", cwd, mnt);
    }
    /* "//", "/./", "/x/../" and a trailing "/" are only spelling. */
    size_t j = 0;
    for (const char *p = buf; *p && j + 1 < len;) {
        while (*p == '/')
            p++;
        const char *e = strchr(p, '/');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (n == 0)
            break;
        if (n == 1 && p[0] == '.') {
        } else if (n == 2 && p[0] == '.' && p[1] == '.') {
            while (j > 0 && out[--j] != '/')
                ;
        } else if (j + 1 + n < len) {
            out[j++] = '/';
            memcpy(out + j, p, n);
            j += n;
        }
        p += n;
    }
    if (j == 0)
        out[j++] = '/';
    out[j] = 0;
}

static int restart_at(const char *mnt, unsigned timeout_s, kbf_msg_t *res)
{
    struct sockaddr_un sa;
    socklen_t sl;
    kbf_ctl_addr(mnt, &sa, &sl);
    int s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (s < 0)
        return -errno;
    if (connect(s, (struct sockaddr *)&sa, sl) < 0) {
        int e = errno;
        close(s);
        return -e;
    }
    kbf_msg_t m = { .type = KBF_MSG_RESTART };
    snprintf(m.text, sizeof(m.text), "%s", mnt);
    /* A supervisor that refuses the caller (EPERM) answers and hangs up
     * without reading the request (so does every supervisor still running
     * an older binary): the send may then fail with EPIPE, or the first read
     * report the unread request with ECONNRESET. Its answer is still there
     * to read, and says why. */
    int sent = kbf_msg_send(s, &m, -1), rc = sent;
    struct pollfd p = { .fd = s, .events = POLLIN };
    if (sent == 0 || sent == -EPIPE || sent == -ECONNRESET) {
        int pr;
        do
            pr = poll(&p, 1, (int)timeout_s * 1000);
        while (pr < 0 && errno == EINTR);
        rc = pr == 0 ? -ETIMEDOUT : pr < 0 ? -errno : kbf_msg_recv(s, res, NULL);
        if (rc == -ECONNRESET)   /* reported once; what was sent before the hang-up follows */
            rc = kbf_msg_recv(s, res, NULL);
        if (rc == 0)
            rc = -ECONNRESET;
        else if (rc == 1)
            rc = res->type == KBF_MSG_RESULT ? 0 : -EBADMSG;
        if (rc < 0 && sent < 0)
            rc = sent;
    }
    close(s);
    return rc;
}

int kbf_ctl_restart(const char *mnt, unsigned timeout_s)
{
    char path[PATH_MAX];
    abs_path(mnt, path, sizeof(path));
    kbf_msg_t res;
    int rc = restart_at(path, timeout_s, &res);
    if (rc == -ECONNREFUSED || rc == -ENOENT) {
        char real[PATH_MAX];     /* a symlink on the way: the supervisor knows the real path */
        if (realpath(path, real) && strcmp(real, path) != 0)
            rc = restart_at(real, timeout_s, &res);
    }
    if (rc == -ECONNREFUSED || rc == -ENOENT) {
        fprintf(stderr, "kembar-fuse: %s: no kembar-fuse supervisor serves this mount point\n", path);
        return 1;
    }
    if (rc < 0) {
        fprintf(stderr, "kembar-fuse: %s: %s\n", path,
                rc == -ETIMEDOUT ? "the supervisor did not answer in time" : strerror(-rc));
        return 1;
    }
    if (res.arg < 0) {
        fprintf(stderr, "kembar-fuse: %s: %s\n", path, res.text[0] ? res.text : strerror((int)-res.arg));
        return 1;
    }
    printf("%s\n", res.text);
    return 0;
}
