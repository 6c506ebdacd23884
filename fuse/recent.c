/*
 * recent.c — attributes a reply just brought, for the next GETATTR
 * (fuse/recent.h has the promises).
 *
 * A slot holds the generation of every inode that hashes to it (bumped by
 * their modifications) and at most one kept entry. An entry is valid while
 * its slot's generation and the table's epoch of its kind (directory or
 * not) are the ones it was kept under; a change that may remove a name
 * (kbf_recent_change's WHAT) moves the epochs of those kinds.
 */
#include "fuse/recent.h"

#include <pthread.h>
#include <stdlib.h>
#include <sys/stat.h>

struct slot {
    uint64_t gen;            /* bumped by modifications of the inodes hashing here */
    uint64_t ino;            /* 0: no entry */
    uint64_t kept_gen, kept_epoch;  /* kept_epoch: of the entry's kind */
    uint64_t fetched_ns;
    kb_iatt_t ia;
};

struct kbf_recent {
    pthread_mutex_t mu;
    kbf_recent_ep_t ep;      /* (mu) */
    unsigned mask;
    struct slot *s;          /* (mu) */
};

kbf_recent_t *kbf_recent_new(unsigned slots)
{
    if (!slots || (slots & (slots - 1)))
        return NULL;
    kbf_recent_t *rc = calloc(1, sizeof(*rc));
    if (!rc || !(rc->s = calloc(slots, sizeof(*rc->s)))) {
        free(rc);
        return NULL;
    }
    pthread_mutex_init(&rc->mu, NULL);
    rc->mask = slots - 1;
    return rc;
}

void kbf_recent_free(kbf_recent_t *rc)
{
    if (!rc)
        return;
    pthread_mutex_destroy(&rc->mu);
    free(rc->s);
    free(rc);
}

static struct slot *slot_of(kbf_recent_t *rc, uint64_t ino)
{
    return &rc->s[(ino * 0x9e3779b97f4a7c15ull >> 32) & rc->mask];
}

uint64_t kbf_recent_bump(kbf_recent_t *rc, uint64_t ino)
{
    if (!rc || !ino)
        return 0;
    pthread_mutex_lock(&rc->mu);
    struct slot *s = slot_of(rc, ino);
    uint64_t g = ++s->gen;
    pthread_mutex_unlock(&rc->mu);
    return g;
}

static void clear_locked(kbf_recent_t *rc, unsigned what)
{
    if (what & KBF_RECENT_DIRS)
        rc->ep.dir++;
    if (what & KBF_RECENT_OTHERS)
        rc->ep.other++;
}

void kbf_recent_change(kbf_recent_t *rc, uint64_t ino, uint64_t ino2, unsigned what, uint64_t *snap,
                       uint64_t *snap2, kbf_recent_ep_t *ep)
{
    if (!rc)
        return;
    pthread_mutex_lock(&rc->mu);
    clear_locked(rc, what);
    uint64_t g = ino ? ++slot_of(rc, ino)->gen : 0;
    uint64_t g2 = ino2 ? ++slot_of(rc, ino2)->gen : 0;
    if (snap)
        *snap = g;
    if (snap2)
        *snap2 = g2;
    if (ep)
        *ep = rc->ep;
    pthread_mutex_unlock(&rc->mu);
}

uint64_t kbf_recent_snap(kbf_recent_t *rc, uint64_t ino)
{
    if (!rc || !ino)
        return 0;
    pthread_mutex_lock(&rc->mu);
    uint64_t g = slot_of(rc, ino)->gen;
    pthread_mutex_unlock(&rc->mu);
    return g;
}

kbf_recent_ep_t kbf_recent_epoch(kbf_recent_t *rc)
{
    kbf_recent_ep_t e = { 0, 0 };
    if (!rc)
        return e;
    pthread_mutex_lock(&rc->mu);
    e = rc->ep;
    pthread_mutex_unlock(&rc->mu);
    return e;
}

/* The table's epoch for attributes of MODE's kind, or one snapshot's. */
static uint64_t ep_of(kbf_recent_ep_t ep, uint32_t mode)
{
    return S_ISDIR(mode) ? ep.dir : ep.other;
}

/* Keep IA in S if nothing changed since SNAP / EPOCH; false if not. */
static bool put_locked(kbf_recent_t *rc, struct slot *s, uint64_t ino, uint64_t snap, kbf_recent_ep_t ep,
                       const kb_iatt_t *ia, uint64_t now_ns)
{
    uint64_t now = ep_of(rc->ep, ia->mode);
    if (s->gen != snap || ep_of(ep, ia->mode) != now)
        return false;
    s->ino = ino;
    s->kept_gen = snap;
    s->kept_epoch = now;
    s->fetched_ns = now_ns;
    s->ia = *ia;
    return true;
}

void kbf_recent_put(kbf_recent_t *rc, uint64_t ino, uint64_t snap, kbf_recent_ep_t ep,
                    const kb_iatt_t *ia, uint64_t now_ns)
{
    if (!rc || !ino)
        return;
    pthread_mutex_lock(&rc->mu);
    put_locked(rc, slot_of(rc, ino), ino, snap, ep, ia, now_ns);
    pthread_mutex_unlock(&rc->mu);
}

void kbf_recent_settle(kbf_recent_t *rc, uint64_t ino, uint64_t snap, kbf_recent_ep_t ep, unsigned what,
                       const kb_iatt_t *ia, uint64_t now_ns)
{
    if (!rc || !ino)
        return;
    pthread_mutex_lock(&rc->mu);
    struct slot *s = slot_of(rc, ino);
    bool same = ep_of(ep, ia->mode) == ep_of(rc->ep, ia->mode);
    clear_locked(rc, what);
    if (!same || !put_locked(rc, s, ino, snap, rc->ep, ia, now_ns))
        s->gen++;
    pthread_mutex_unlock(&rc->mu);
}

bool kbf_recent_take(kbf_recent_t *rc, uint64_t ino, const kb_gfid_t *gfid, uint64_t now_ns,
                     uint64_t max_age_ns, kb_iatt_t *out, uint64_t *age_ns)
{
    if (!rc || !ino)
        return false;
    bool hit = false;
    pthread_mutex_lock(&rc->mu);
    struct slot *s = slot_of(rc, ino);
    if (s->ino == ino) {
        uint64_t age = now_ns > s->fetched_ns ? now_ns - s->fetched_ns : 0;
        hit = s->kept_gen == s->gen && s->kept_epoch == ep_of(rc->ep, s->ia.mode) && age < max_age_ns &&
              kb_gfid_eq(&s->ia.gfid, gfid);
        if (hit) {
            *out = s->ia;
            *age_ns = age;
        }
        s->ino = 0;
    }
    pthread_mutex_unlock(&rc->mu);
    return hit;
}
