/*
 * policy.c — replicate's pure decision functions (policy.h).
 *
 * No I/O, no state, no allocation: every function maps facts to a decision
 * and is tested over tables in tests/unit/xlators/cluster/replicate/
 * policy_test.c. The translator (the other files of this folder) and heal
 * call these and nothing else decides.
 */
#include "xlators/cluster/replicate/policy.h"

#include <errno.h>
#include <string.h>

/* for each set bit i of m (m is re-read: keep it side-effect free) */
#define FOR_EACH_BIT(i, m) \
    for (int i = 0; i < 32; i++) \
        if (!((m) & REPL_BIT(i))) {} else

bool repl_quorum_met(const repl_cfg_t *c, repl_mask_t ok)
{
    ok &= repl_all(c);
    int k = repl_count(ok);
    if (k == 0)
        return false;
    switch (c->quorum_type) {
    case REPL_Q_NONE:
        return true;
    case REPL_Q_FIXED: {
        int q = c->quorum_count < 1 ? 1 : c->quorum_count > c->n ? c->n : c->quorum_count;
        return k >= q;
    }
    default:
        if (c->n <= 1)
            return true;
        /* Strict majority; a tie is broken by child 0 (replica 2: "both or
         * the first"), so two disjoint halves can never both write. */
        return 2 * k > c->n || (2 * k == c->n && (ok & 1u));
    }
}

void repl_blame_analyze(const repl_cfg_t *c, const kb_cl_matrix_t *m, repl_mask_t have,
                        int col, repl_blame_t *out)
{
    memset(out, 0, sizeof(*out));
    out->have = have & repl_all(c);
    FOR_EACH_BIT(j, out->have) {
        if (m[j].v[KB_CL_DIRTY_ROW][col] > 0)
            out->dirty |= REPL_BIT(j);
        for (int i = 0; i < c->n; i++) {
            /* A copy's row about itself carries no accusation. */
            if (i != j && m[j].v[1 + i][col] > 0) {
                out->blamers[i] |= REPL_BIT(j);
                out->sinks |= REPL_BIT(i);
            }
        }
    }
    repl_mask_t cand = repl_candidates(c, col);
    out->sources = cand & out->have & ~out->sinks;
    /* Only a verdict over every candidate is split-brain; an unknown (down)
     * candidate may be the good copy. */
    out->split_brain = !out->sources && cand && !(cand & ~out->have);
}

void repl_cl_delta(kb_cl_matrix_t *d, uint32_t cols, int dirty, repl_mask_t blame)
{
    memset(d, 0, sizeof(*d));
    for (int col = 0; col < KB_CL_COLS; col++) {
        if (!(cols & REPL_COL(col)))
            continue;
        d->v[KB_CL_DIRTY_ROW][col] = dirty;
        FOR_EACH_BIT(i, blame)
            if (i < KB_CL_MAX_REPLICA)
                d->v[1 + i][col] = 1;
    }
}

int repl_modify_check(const repl_cfg_t *c, int col, repl_mask_t up, const repl_blame_t *b)
{
    if (!repl_quorum_met(c, up))
        return -EROFS;
    repl_mask_t uc = up & repl_candidates(c, col);
    if (!uc)
        return -ENOTCONN;          /* e.g. only the arbiter is up: no copy for the data */
    if (!b)
        return 0;
    if (b->split_brain)
        return -EIO;
    if (!(uc & ~b->sinks))
        return -ENOTCONN;          /* every copy up is a known sink */
    return 0;
}

bool repl_err_is_disconnect(int err)
{
    return err == -ENOTCONN || err == -ETIMEDOUT || err == -ECONNRESET || err == -EPIPE ||
           err == -ECONNREFUSED || err == -ESHUTDOWN;
}

void repl_fanout_outcome(const repl_cfg_t *c, repl_mask_t expected, repl_mask_t sent,
                         const int32_t *status, repl_mask_t extra_ok, repl_outcome_t *out)
{
    repl_mask_t ok = 0;
    int common = 0, first_real = 0;
    bool same = true;
    FOR_EACH_BIT(i, sent) {
        int st = status[i];
        if (st >= 0) {
            ok |= REPL_BIT(i);
            continue;
        }
        if (!common)
            common = st;
        else if (st != common)
            same = false;
        if (!first_real && !repl_err_is_disconnect(st))
            first_real = st;
    }
    out->ok = ok;
    out->reply_idx = -1;
    out->blame = 0;
    if (ok && repl_quorum_met(c, ok | extra_ok)) {
        out->reply_idx = repl_first(ok);
        out->status = status[out->reply_idx];
        out->blame = expected & ~ok;
        return;
    }
    if (!sent) {
        out->status = -ENOTCONN;
        return;
    }
    if (!ok && same) {
        out->status = common;       /* nobody applied it: nothing diverged */
        return;
    }
    if (ok) {
        /* Applied short of quorum: the application sees an error, but the
         * copies that took it must mark the others so heal converges. */
        out->status = first_real ? first_real : -EROFS;
        out->blame = expected & ~ok;
        return;
    }
    out->status = first_real ? first_real : -ENOTCONN;
}

repl_mask_t repl_readable(const repl_cfg_t *c, int col, repl_mask_t up, const repl_blame_t *b)
{
    repl_mask_t r = up & repl_data_children(c) & repl_candidates(c, col);
    if (b && b->have)
        r &= b->sources;
    return r;
}

int repl_read_pick(repl_mask_t readable, uint32_t hash, int mode)
{
    int k = repl_count(readable);
    if (!k)
        return -1;
    if (mode == 0)
        return repl_first(readable);
    /* Multiply-shift uses the hash's high bits: FNV's low bits are weak
     * (its parity is the parity of the bytes' low bits). */
    int skip = (int)(((uint64_t)hash * (uint32_t)k) >> 32);
    while (skip--)
        readable &= readable - 1;
    return repl_first(readable);
}

repl_mask_t repl_always_written(const repl_cfg_t *c)
{
    repl_mask_t all = repl_all(c), m = 0;
    if (c->n <= 1)
        return all;
    /* Quorum is monotonic: if the others alone do not make it, no set without i does. */
    for (int i = 0; i < c->n; i++)
        if (!repl_quorum_met(c, all & ~REPL_BIT(i)))
            m |= REPL_BIT(i);
    return m;
}

repl_mask_t repl_read_prefer(repl_mask_t readable, repl_mask_t local, repl_mask_t nocheck)
{
    repl_mask_t r = readable & local;
    if (!r)
        return readable;
    /* Several local copies (a volume on one host): the one read without a
     * check costs one round trip instead of one to every copy. Not among
     * remote copies: there the spread over nodes' disks wins. */
    return r & nocheck ? r & nocheck : r;
}

bool repl_read_retryable(int err)
{
    return repl_err_is_disconnect(err) || err == -EIO || err == -EBADF || err == -EBADFD ||
           err == -ESTALE;
}

int repl_unreadable_err(const repl_blame_t *b)
{
    return b && b->split_brain ? -EIO : -ENOTCONN;
}

static bool absent(int st) { return st == -ENOENT || st == -ESTALE; }

int repl_lookup_merge(const repl_cfg_t *c, repl_mask_t sent, const int32_t *status,
                      const kb_gfid_t *gfid, const uint32_t *type, const repl_blame_t *parent,
                      repl_mask_t *found, bool *need_parent)
{
    repl_mask_t yes = 0, no = 0;
    int absent_err = 0, other = 0;
    *found = 0;
    *need_parent = false;
    FOR_EACH_BIT(i, sent & repl_all(c)) {
        int st = status[i];
        if (st >= 0)
            yes |= REPL_BIT(i);
        else if (absent(st)) {
            no |= REPL_BIT(i);
            absent_err = absent_err ? absent_err : st;
        } else if (!other && !repl_err_is_disconnect(st))
            other = st;
    }
    int r = repl_first(yes);
    FOR_EACH_BIT(i, yes)
        if (!kb_gfid_eq(&gfid[i], &gfid[r]) || type[i] != type[r])
            return -EIO;            /* two different objects under one name */
    if (!yes)
        return no ? absent_err : other ? other : -ENOTCONN;
    if (no) {
        if (!parent) {
            *need_parent = true;
            return -EAGAIN;
        }
        if (parent->split_brain)
            return -EIO;
        repl_mask_t src = parent->sources & (yes | no);
        if (src && !(src & yes))
            return absent_err;      /* the good copies of the dir say it is gone */
    }
    *found = yes;
    return 0;
}

/* <0, 0, >0 as A is older/equal/newer than B for POLICY. */
static int fav_cmp(int policy, const repl_fav_attr_t *a, const repl_fav_attr_t *b)
{
    if (policy == REPL_FAV_SIZE)
        return a->size < b->size ? -1 : a->size > b->size;
    if (a->mtime_sec != b->mtime_sec)
        return a->mtime_sec < b->mtime_sec ? -1 : 1;
    return a->mtime_nsec < b->mtime_nsec ? -1 : a->mtime_nsec > b->mtime_nsec;
}

int repl_favorite_child(int policy, repl_mask_t candidates, const repl_fav_attr_t *attr)
{
    if (policy == REPL_FAV_MAJORITY) {
        int n = repl_count(candidates);
        FOR_EACH_BIT(i, candidates) {
            int same = 0;
            FOR_EACH_BIT(j, candidates)
                same += attr[i].size == attr[j].size && fav_cmp(REPL_FAV_MTIME, &attr[i], &attr[j]) == 0;
            if (2 * same > n)
                return i;
        }
        return -1;
    }
    if (policy != REPL_FAV_MTIME && policy != REPL_FAV_SIZE)
        return -1;
    int best = -1;
    bool tie = false;
    FOR_EACH_BIT(i, candidates) {
        int d = best < 0 ? 1 : fav_cmp(policy, &attr[i], &attr[best]);
        if (d > 0) {
            best = i;
            tie = false;
        } else if (d == 0)
            tie = true;
    }
    return tie ? -1 : best;
}
