/*
 * lock.c — fcntl (getlk, setlk, setlkw) and flock locks, held cluster-wide
 * by the bricks (the LK fop), and the interrupt of a blocking wait.
 *
 * Promises, besides the contract in fuse/ops.c:
 *  - The lock owner is the kernel's (fi->lock_owner); flock locks cover
 *    the whole file, with BSD semantics.
 *  - An interrupted blocking wait ends at once with EINTR, still with one
 *    reply only (lk_interrupt); a lock granted after that is unlocked again.
 */
#include "fuse/ops.h"

#include <fcntl.h>
#include <sys/file.h>

static uint32_t lk_type(short t)
{
    return t == F_RDLCK ? KB_LK_RDLCK : t == F_WRLCK ? KB_LK_WRLCK : KB_LK_UNLCK;
}

static kbf_req_t *req_lock(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    kbf_req_t *r = kbf_req_inode(req, ino, false);
    if (!r)
        return NULL;
    r->a.fd = fi->fh;
    r->cred.lk_owner = fi->lock_owner;
    r->a.lock.owner = fi->lock_owner;
    r->a.lock.pid = r->cred.pid;
    return r;
}

static void done_getlk(kbf_req_t *r, const kb_reply_t *rep)
{
    if (rep->status < 0) {
        kbf_reply_err(r, rep->status);
        return;
    }
    const kb_lock_t *l = &rep->lock;
    struct flock fl = {
        .l_type = l->type == KB_LK_RDLCK ? F_RDLCK : l->type == KB_LK_WRLCK ? F_WRLCK : F_UNLCK,
        .l_whence = SEEK_SET, .l_start = (off_t)l->start, .l_len = (off_t)l->len,
        .l_pid = (pid_t)l->pid,
    };
    fuse_reply_lock(r->req, &fl);
    kbf_req_free(r);
}

void kbf_getlk(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi, struct flock *lock)
{
    kbf_req_t *r = req_lock(req, ino, fi);
    if (!r)
        return;
    r->a.lock.type = lk_type(lock->l_type);
    r->a.lock.start = (uint64_t)lock->l_start;
    r->a.lock.len = (uint64_t)lock->l_len;
    r->a.flags = KB_LK_GETLK;
    kbf_req_submit(r, KB_FOP_LK, done_getlk);
}

/*
 * Blocking lock waits (F_SETLKW, flock without LOCK_NB) may be interrupted
 * by a signal. The wait then ends with EINTR at once (the kernel restarts
 * the syscall when the handler allows it), and a lock granted later for
 * that request is released again, since nobody holds it. imu decides who
 * sends the one reply: lk_interrupt (EINTR) or the completion.
 */
static void lk_interrupt(fuse_req_t req, void *data)
{
    kbf_req_t *r = data;
    pthread_mutex_lock(&r->imu);
    if (!r->replied) {
        r->replied = true;
        fuse_reply_err(req, EINTR);
    }
    pthread_mutex_unlock(&r->imu);
}

static void unlock_orphan(kbf_req_t *r)
{
    kbf_req_t *u = kbf_req_internal(r->fs, &r->a.gfid);
    if (!u)
        return;
    u->a.fd = r->a.fd;
    u->a.lock = r->a.lock;
    u->a.lock.type = KB_LK_UNLCK;
    u->a.flags = KB_LK_SETLK;
    u->cred = r->cred;
    kbf_req_submit(u, KB_FOP_LK, kbf_done_drop);
}

static void done_setlk(kbf_req_t *r, const kb_reply_t *rep)
{
    if (r->intr_armed) {
        pthread_mutex_lock(&r->imu);
        bool replied = r->replied;
        r->replied = true;
        pthread_mutex_unlock(&r->imu);
        if (replied) {           /* EINTR went out; the request is gone */
            if (rep->status == 0)
                unlock_orphan(r);
            r->req = NULL;
            kbf_req_free(r);
            return;
        }
        fuse_req_interrupt_func(r->req, NULL, NULL);  /* waits out a running lk_interrupt */
    }
    kbf_reply_err(r, rep->status < 0 ? rep->status : 0);
}

static void submit_setlk(kbf_req_t *r, bool wait)
{
    wait = wait && r->a.lock.type != KB_LK_UNLCK;
    r->a.flags = wait ? KB_LK_SETLKW : KB_LK_SETLK;
    if (wait) {
        pthread_mutex_init(&r->imu, NULL);
        r->intr_armed = true;
        fuse_req_interrupt_func(r->req, lk_interrupt, r);
        pthread_mutex_lock(&r->imu);
        bool gone = r->replied;  /* interrupted before we even asked */
        pthread_mutex_unlock(&r->imu);
        if (gone) {
            r->req = NULL;
            kbf_req_free(r);
            return;
        }
    }
    kbf_req_submit(r, KB_FOP_LK, done_setlk);
}

void kbf_setlk(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi,
               struct flock *lock, int sleep)
{
    kbf_req_t *r = req_lock(req, ino, fi);
    if (!r)
        return;
    r->a.lock.type = lk_type(lock->l_type);
    r->a.lock.start = (uint64_t)lock->l_start;
    r->a.lock.len = (uint64_t)lock->l_len;
    submit_setlk(r, sleep != 0);
}

void kbf_flock(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi, int op)
{
    kbf_req_t *r = req_lock(req, ino, fi);
    if (!r)
        return;
    int kind = op & (LOCK_SH | LOCK_EX | LOCK_UN);
    r->a.lock.type = kind == LOCK_SH ? KB_LK_RDLCK : kind == LOCK_EX ? KB_LK_WRLCK : KB_LK_UNLCK;
    r->a.lock.flock = 1;         /* whole file, BSD semantics */
    submit_setlk(r, !(op & LOCK_NB));
}
