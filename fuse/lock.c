/*
 * lock.c — fcntl (getlk, setlk, setlkw) and flock locks, held cluster-wide
 * by the bricks (the LK fop), and the interrupt of a blocking wait.
 *
 * Promises, besides the contract in fuse/ops.c:
 *  - The lock owner is the kernel's (fi->lock_owner); flock locks cover
 *    the whole file, with BSD semantics.
 *  - An interrupted blocking wait ends at once with EINTR, still with one
 *    reply only (lk_interrupt); the wait is withdrawn, a lock granted after
 *    that is unlocked again, and the owner's next requests on the file wait
 *    for both (never a lock its owner holds released by an old request).
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
 * the syscall when the handler allows it); imu decides who sends the one
 * reply: lk_interrupt (EINTR) or the completion.
 *
 * The request is still waiting at the bricks: an orphan. It is withdrawn
 * (KB_LK_CANCEL), and should the bricks have granted it first, the lock is
 * released again, since nobody holds it. Until the orphan has completed
 * (and that release with it), every later lock request of the same owner on
 * the same file waits here, in order. Otherwise the caller's next F_SETLKW
 * (a signal handler returning, a retry loop) could be granted first, merge
 * with the orphan's grant (same owner, same range), and the orphan's
 * release would then drop the lock the caller was just told it holds:
 * another client granted it too (found by the thrash with lock holders).
 * Not carried over a kembar-fuse handover: an orphan in flight then is
 * released by its completion or with the fd.
 */
typedef struct lk_defer {
    struct lk_defer *next;
    kbf_req_t *r;
} lk_defer_t;

typedef struct lk_orphans {
    struct lk_orphans *next;
    kb_gfid_t gfid;
    uint64_t owner;
    unsigned n;                  /* orphans of this owner on this file not completed */
    lk_defer_t *head, **tail;    /* requests waiting for them, in arrival order */
} lk_orphans_t;

static pthread_mutex_t orph_mu = PTHREAD_MUTEX_INITIALIZER;
static lk_orphans_t *orphans;    /* (orph_mu) */

static lk_orphans_t **orph_find(const kb_gfid_t *g, uint64_t owner)
{
    lk_orphans_t **pp = &orphans;
    while (*pp && !((*pp)->owner == owner && kb_gfid_eq(&(*pp)->gfid, g)))
        pp = &(*pp)->next;
    return pp;
}

static void send_setlk(kbf_req_t *r);

/* An orphan of OWNER on G completed: once none is left, what waited goes. */
static void orphan_done(const kb_gfid_t *g, uint64_t owner)
{
    pthread_mutex_lock(&orph_mu);
    lk_orphans_t **pp = orph_find(g, owner), *e = *pp;
    lk_defer_t *d = NULL;
    if (e && --e->n == 0) {
        *pp = e->next;
        d = e->head;
        free(e);
    }
    pthread_mutex_unlock(&orph_mu);
    while (d) {
        lk_defer_t *next = d->next;
        send_setlk(d->r);
        free(d);
        d = next;
    }
}

static void orphan_unlocked(kbf_req_t *u, const kb_reply_t *rep)
{
    orphan_done(&u->a.gfid, u->a.lock.owner);
    kbf_done_drop(u, rep);
}

/* An internal UNLCK of A's lock (FLAGS: SETLK, with CANCEL to withdraw a
 * wait only); false when there is no memory for it. */
static bool submit_unlock(kbf_t *fs, const kb_args_t *a, const kb_cred_t *cred, uint32_t flags,
                          void (*done)(kbf_req_t *, const kb_reply_t *))
{
    kbf_req_t *u = kbf_req_internal(fs, &a->gfid);
    if (!u)
        return false;
    u->a.fd = a->fd;
    u->a.lock = a->lock;
    u->a.lock.type = KB_LK_UNLCK;
    u->a.flags = flags;
    u->cred = *cred;
    kbf_req_submit(u, KB_FOP_LK, done);
    return true;
}

/* The orphan R was granted after its EINTR: release what nobody holds; a
 * COUNTED one lets what waits behind it go once that is done. */
static void unlock_orphan(kbf_req_t *r, bool counted)
{
    if (!submit_unlock(r->fs, &r->a, &r->cred, KB_LK_SETLK, counted ? orphan_unlocked : kbf_done_drop) &&
        counted)
        orphan_done(&r->a.gfid, r->a.lock.owner);
}

static void lk_interrupt(fuse_req_t req, void *data)
{
    kbf_req_t *r = data;
    bool orphan = false;
    kb_args_t a;
    kb_cred_t cred;
    kbf_t *fs = r->fs;
    pthread_mutex_lock(&r->imu);
    if (!r->replied) {
        r->replied = true;
        if ((orphan = r->lk_sent)) {
            a = r->a;
            a.data = NULL;
            cred = r->cred;
            /* before the EINTR: the caller's next request must find it */
            pthread_mutex_lock(&orph_mu);
            lk_orphans_t **pp = orph_find(&a.gfid, a.lock.owner), *e = *pp;
            if (!e && (e = calloc(1, sizeof(*e)))) {
                e->gfid = a.gfid;
                e->owner = a.lock.owner;
                e->tail = &e->head;
                *pp = e;
            }
            if (e)
                e->n++;
            else
                orphan = r->lk_sent = false;  /* no memory: uncounted; its grant is released when it comes */
            pthread_mutex_unlock(&orph_mu);
        }
        fuse_reply_err(req, EINTR);
    }
    pthread_mutex_unlock(&r->imu);
    /* Withdraw its wait at the bricks (its completion comes then, -EAGAIN,
     * and lets what waits behind it go); without memory it completes when
     * granted, then is released. */
    if (orphan)
        submit_unlock(fs, &a, &cred, KB_LK_SETLK | KB_LK_CANCEL, kbf_done_drop);
}

static void done_setlk(kbf_req_t *r, const kb_reply_t *rep)
{
    if (r->intr_armed) {
        pthread_mutex_lock(&r->imu);
        bool replied = r->replied, counted = r->lk_sent;   /* lk_interrupt counted it */
        r->replied = true;
        pthread_mutex_unlock(&r->imu);
        if (replied) {           /* EINTR went out; the request is an orphan */
            if (rep->status == 0)
                unlock_orphan(r, counted);
            else if (counted)
                orphan_done(&r->a.gfid, r->a.lock.owner);
            r->req = NULL;
            kbf_req_free(r);
            return;
        }
        fuse_req_interrupt_func(r->req, NULL, NULL);  /* waits out a running lk_interrupt */
    }
    kbf_reply_err(r, rep->status < 0 ? rep->status : 0);
}

/* Send R, unless an interrupt answered it before it went (while it waited
 * behind an orphan, or before it was even asked): then it never goes. */
static void send_setlk(kbf_req_t *r)
{
    if (r->intr_armed) {
        pthread_mutex_lock(&r->imu);
        bool gone = r->replied;
        r->lk_sent = !gone;
        pthread_mutex_unlock(&r->imu);
        if (gone) {
            r->req = NULL;
            kbf_req_free(r);
            return;
        }
    }
    kbf_req_submit(r, KB_FOP_LK, done_setlk);
}

static void submit_setlk(kbf_req_t *r, bool wait)
{
    wait = wait && r->a.lock.type != KB_LK_UNLCK;
    r->a.flags = wait ? KB_LK_SETLKW : KB_LK_SETLK;
    if (wait) {                  /* armed first: once deferred, R may be sent and freed at any time */
        pthread_mutex_init(&r->imu, NULL);
        r->intr_armed = true;
        fuse_req_interrupt_func(r->req, lk_interrupt, r);
    }
    lk_defer_t *d = NULL;
    pthread_mutex_lock(&orph_mu);
    lk_orphans_t *e = *orph_find(&r->a.gfid, r->a.lock.owner);
    if (e && (d = calloc(1, sizeof(*d)))) {
        d->r = r;
        *e->tail = d;
        e->tail = &d->next;
    }
    pthread_mutex_unlock(&orph_mu);
    if (!d)
        send_setlk(r);           /* else orphan_done sends it */
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
