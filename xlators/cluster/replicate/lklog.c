/*
 * lklog.c — lock heal: the application locks (LK) held through an fd, taken
 * again on a child that comes back.
 *
 * Why: a brick that restarts forgets every lock (features/locks keeps them
 * in memory), and a client cut off longer than its lease has them dropped.
 * When replicate reopens its fd on such a child, the locks that fd holds
 * must be held there again BEFORE the child serves I/O on the file:
 * otherwise a rolling restart of the nodes leaves a running VM's image lock
 * on no brick at all, and a second qemu could open the image for writing.
 *
 * What is kept: every granted LK request on the fd, in order (xlators/lklog.h:
 * the requests, not the lock map; whole-file unlocks and FLUSH compact it;
 * past KB_LKLOG_MAX it is incomplete and a replay fails the fd rather than
 * guess).
 *
 * Replay (repl_lklog_replay): for each child just reopened, the requests go
 * one by one, non-blocking. A request refused with -EAGAIN means another
 * client holds that range on that brick now — it took the lock while this
 * client was away past its lease. Then this fd is lost: every later data
 * op and lock request on it fails with -EBADFD (repl_fd_ensure), never
 * silent success (a request granted while the fd got lost is failed and
 * given back), while its unlocks, FLUSH and RELEASE still go to every child
 * it is open on (reopened for them where missing, taking no lock), so the
 * locks it still had elsewhere go when the application lets them go. Other
 * errors (the child went again) leave the child for the next reopen to
 * replay.
 *
 * A child that never lost the locks (a blip shorter than the lease) simply
 * grants them again: the same instance is the same owner (features/locks).
 */
#include <stdio.h>
#include "lib/log.h"
#include "xlators/cluster/replicate/replicate.h"

void repl_lklog_note(repl_fd_t *fd, const kb_args_t *a)
{
    if (!kb_lklog_note(&fd->lk, a)) {
        char gs[KB_GFID_STRLEN];
        kb_warn(fd->priv->xl->name, "%s: more than %d lock requests on one fd: its locks cannot be taken "
                "again after a brick restart", kb_gfid_str(&fd->ino->gfid, gs), KB_LKLOG_MAX);
    }
}

/* ---------------- replay ---------------- */

typedef struct replay {
    repl_fd_t *fd;
    repl_mask_t todo;            /* children still to replay */
    int child;                   /* the one being replayed */
    uint32_t idx;                /* next request */
    kb_args_t a;
    kb_cred_t cred;
    uint64_t req;
    repl_lklog_fn cont;
    void *ctx;
} replay_t;

static void replay_next(replay_t *r);

static void lost(replay_t *r, int child, const char *why)
{
    repl_fd_t *fd = r->fd;
    char gs[KB_GFID_STRLEN];
    if (!fd->lk_lost)
        kb_err(fd->priv->xl->name, "%s: a lock this fd held cannot be taken again on child %d (%s): the fd "
               "fails from now on, so two clients never both write under it", kb_gfid_str(&fd->ino->gfid, gs),
               child, why);
    fd->lk_lost = -EBADFD;
}

static void replay_cbk(void *cookie, const kb_reply_t *rep)
{
    replay_t *r = cookie;
    if (rep->status == -EAGAIN || rep->status == -EDEADLK || rep->status == -ESTALE) {
        lost(r, r->child, rep->status == -ESTALE ? "the brick dropped it when this client's lease ran out"
                                                 : "another client holds it now");
        r->todo = 0;             /* nothing more to rebuild for this fd */
        r->child = -1;
    } else if (rep->status < 0) {
        /* The child went again (or cannot open): the next reopen replays it. */
        r->fd->opened &= ~REPL_BIT(r->child);
        r->child = -1;
    }
    replay_next(r);
}

static void replay_next(replay_t *r)
{
    repl_fd_t *fd = r->fd;
    repl_priv_t *p = fd->priv;
    for (;;) {
        if (r->child >= 0 && r->idx < fd->lk.n && (fd->opened & REPL_BIT(r->child)))
            break;
        /* next child */
        r->child = -1;
        r->idx = 0;
        for (int i = 0; i < p->n; i++)
            if (r->todo & REPL_BIT(i)) {
                r->todo &= ~REPL_BIT(i);
                r->child = i;
                break;
            }
        if (r->child < 0) {
            repl_lklog_fn cont = r->cont;
            void *ctx = r->ctx;
            free(r);
            cont(ctx);
            return;
        }
        if (fd->lk.incomplete && fd->lk.n) {
            lost(r, r->child, "the fd's lock log is incomplete");
            r->todo = 0;
        }
    }
    kb_lklog_args(&fd->lk, r->idx++, &r->a);
    r->a.gfid = fd->ino->gfid;
    r->a.fd = fd->cfd[r->child];
    r->cred = p->icred;
    r->cred.lk_owner = r->a.lock.owner;
    kb_wind(p->xl->children[r->child], KB_FOP_LK, &r->a, &r->cred, r->req, replay_cbk, r);
}

void repl_lklog_replay(repl_fd_t *fd, repl_mask_t children, uint64_t req, repl_lklog_fn cont, void *ctx)
{
    if (!fd->lk.n || !children || fd->lk_lost) {
        cont(ctx);
        return;
    }
    replay_t *r = kb_zalloc(sizeof(*r));
    if (!r) {
        for (int i = 0; i < fd->priv->n; i++)
            if (children & REPL_BIT(i))
                fd->opened &= ~REPL_BIT(i);   /* not served without its locks: reopened later */
        cont(ctx);
        return;
    }
    char gs[KB_GFID_STRLEN];
    kb_info(fd->priv->xl->name, "%s: taking %u lock request(s) again on children 0x%x",
            kb_gfid_str(&fd->ino->gfid, gs), fd->lk.n, (unsigned)children);
    *r = (replay_t){ .fd = fd, .todo = children, .child = -1, .req = req, .cont = cont, .ctx = ctx };
    replay_next(r);
}
