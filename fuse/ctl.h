/*
 * ctl.h — what kembar-fuse's supervisor, its serving process and
 * `kembar-fuse --restart` say to each other (issue 15; fuse/super.c,
 * fuse/handover.c).
 *
 * Supervisor <-> serving process: a SOCK_SEQPACKET socketpair; the serving
 * process finds its end at the fd number given with --serve. Supervisor <->
 * `--restart`: a SOCK_SEQPACKET socket in the abstract namespace named after
 * the mount point, root (or the supervisor's own user) only.
 *
 * Every message is one kbf_msg_t; file descriptors travel with it
 * (SCM_RIGHTS). The supervisor outlives any number of upgrades of the serving
 * binary, so this vocabulary only grows: a message of an unknown type is
 * ignored, and fields are never reused.
 *
 * A serving process's life (the supervisor's side in fuse/super.c):
 *
 *   super  -> STATE(memfd)         right after the start
 *   serve  -> CONNECTED            the volume is up (or FAILED text, exit)
 *   super  -> GO(/dev/fuse fd)     mount first (first start), or once the
 *                                  previous serving process is gone
 *   serve  -> READY(pid, flags)    INIT taken over or awaited, handles
 *                                  reopened, locks taken, resend asked: serving
 *   super  -> STOP                 a restart: stop reading /dev/fuse, let
 *                                  the calls in flight finish (bounded)
 *   serve  -> STOPPED              and exits at once
 */
#ifndef KB_FUSE_CTL_H
#define KB_FUSE_CTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/un.h>

enum kbf_msg_type {
    KBF_MSG_STATE = 1,           /* super -> serve: fd = the state memfd; flags KBF_MF_TAKEOVER */
    KBF_MSG_CONNECTED = 2,       /* serve -> super */
    KBF_MSG_GO = 3,              /* super -> serve: fd = /dev/fuse */
    KBF_MSG_READY = 4,           /* serve -> super: arg = pid; flags KBF_MF_HANDOVER */
    KBF_MSG_STOP = 5,            /* super -> serve */
    KBF_MSG_STOPPED = 6,         /* serve -> super */
    KBF_MSG_FAILED = 7,          /* serve -> super: text = why (it exits) */
    KBF_MSG_RESTART = 8,         /* --restart -> super: text = the mount point */
    KBF_MSG_RESULT = 9,          /* super -> --restart: arg = new pid, or -errno; text */
};

#define KBF_MF_TAKEOVER 1u       /* STATE: a serving process ran before: take its state over */
#define KBF_MF_HANDOVER 2u       /* READY: this process can be replaced (resend works, hooks in) */

typedef struct kbf_msg {
    uint32_t type;               /* enum kbf_msg_type */
    uint32_t flags;
    int64_t arg;
    char text[496];              /* NUL-terminated */
} kbf_msg_t;
_Static_assert(sizeof(kbf_msg_t) == 512, "kbf_msg_t layout");

/* Send M (with FD when fd >= 0). 0 or -errno. */
int kbf_msg_send(int sock, const kbf_msg_t *m, int fd);
/* Receive one message into M (and *FD: -1 when none came; may be NULL, an fd
 * then is closed). 1, 0 at EOF, -EAGAIN (non-blocking, nothing yet) or -errno. */
int kbf_msg_recv(int sock, kbf_msg_t *m, int *fd);

/* The supervisor's address for mount point MNT (abstract namespace). */
void kbf_ctl_addr(const char *mnt, struct sockaddr_un *sa, socklen_t *len);

/* `kembar-fuse --restart MNT`: ask the supervisor of MNT to replace its
 * serving process; prints one line, returns the exit status. */
int kbf_ctl_restart(const char *mnt, unsigned timeout_s);

#endif
