/*
 * inode.c — the gfid <-> node id table of kembar-fuse (fuse/inode.h).
 *
 * Records are fixed 64-byte slots (fuse/state.h kbf_st_node_t) in one array
 * that never moves: node id = index + KBF_NODE_BASE. A chained hash keyed by
 * gfid (kb_gfid_hash), its chains linked through the records' `next`,
 * grown by doubling when it holds more entries than buckets, keeps lookups
 * O(1) with a million cached inodes. Freed records go on a free list and are
 * reused before the array grows.
 *
 * What the shared state needs (fuse/state.h, "Crash consistency"): a record
 * is live iff nlookup > 0; a new record gets its gfid before its count, and
 * the high-water mark covers it, all before kbf_itable_ref returns (i.e.
 * before the reply). The hash and the free list are this process's own and
 * are rebuilt by kbf_itable_open from the records alone.
 *
 * Invariant: a record is in the hash iff nlookup > 0 (root excepted).
 */
#include "fuse/inode.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "lib/common.h"
#include "lib/log.h"

#define KBF_MIN_BUCKETS 1024

struct kbf_itable {
    pthread_mutex_t mu;
    kbf_st_node_t *rec;          /* the records, shared or private; never moves */
    uint32_t cap;
    uint32_t *hwm;               /* (atomic; mu for writes) records ever used: 0 .. *hwm-1 */
    uint32_t own_hwm;            /*   where hwm points for a private table */
    size_t own_size;             /* private table: bytes of its mapping (0: shared) */
    uint32_t *buckets;           /* (mu) index + 1 of a chain's first record; 0: empty */
    size_t nbuckets;             /* (mu) power of two */
    size_t count;                /* (mu) records in the hash */
    uint32_t *free;              /* (mu) free record indices below *hwm */
    uint32_t nfree, free_cap;    /* (mu) */
    bool full_logged;            /* (mu) */
    kbf_st_node_t root;          /* node id 1; never in the hash */
};

static const kb_gfid_t *rec_gfid(const kbf_st_node_t *n)
{
    return (const kb_gfid_t *)(const void *)n->gfid;
}

static size_t slot(const kbf_itable_t *t, const kb_gfid_t *g)
{
    return kb_gfid_hash(g) & (t->nbuckets - 1);
}

static void link_locked(kbf_itable_t *t, uint32_t idx)
{
    size_t s = slot(t, rec_gfid(&t->rec[idx]));
    t->rec[idx].next = t->buckets[s];
    t->buckets[s] = idx + 1;
}

/* Double the bucket array; on allocation failure keep the old one (slower
 * chains, still correct). */
static void grow_locked(kbf_itable_t *t)
{
    size_t nb = t->nbuckets * 2;
    uint32_t *b = calloc(nb, sizeof(*b));
    if (!b)
        return;
    uint32_t *old = t->buckets;
    size_t on = t->nbuckets;
    t->buckets = b;
    t->nbuckets = nb;
    for (size_t i = 0; i < on; i++) {
        uint32_t k = old[i];
        while (k) {
            uint32_t next = t->rec[k - 1].next;
            link_locked(t, k - 1);
            k = next;
        }
    }
    free(old);
}

static bool free_push_locked(kbf_itable_t *t, uint32_t idx)
{
    if (t->nfree == t->free_cap) {
        uint32_t cap = t->free_cap ? 2 * t->free_cap : 1024;
        uint32_t *f = realloc(t->free, cap * sizeof(*f));
        if (!f)
            return false;        /* the record is lost to reuse: the array grows instead */
        t->free = f;
        t->free_cap = cap;
    }
    t->free[t->nfree++] = idx;
    return true;
}

static kbf_itable_t *table_new(kbf_st_node_t *rec, uint32_t cap, uint32_t *hwm)
{
    kbf_itable_t *t = kb_zalloc(sizeof(*t));
    if (!t)
        return NULL;
    t->nbuckets = KBF_MIN_BUCKETS;
    t->buckets = calloc(t->nbuckets, sizeof(*t->buckets));
    if (!t->buckets) {
        free(t);
        return NULL;
    }
    pthread_mutex_init(&t->mu, NULL);
    t->rec = rec;
    t->cap = cap;
    t->hwm = hwm ? hwm : &t->own_hwm;
    memcpy(t->root.gfid, kb_gfid_root.b, 16);
    t->root.nlookup = 1;
    return t;
}

kbf_itable_t *kbf_itable_new(void)
{
    size_t size = (size_t)KBF_ST_NODE_CAP * sizeof(kbf_st_node_t);
    void *m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED)
        return NULL;
    kbf_itable_t *t = table_new(m, KBF_ST_NODE_CAP, NULL);
    if (!t) {
        munmap(m, size);
        return NULL;
    }
    t->own_size = size;
    return t;
}

kbf_itable_t *kbf_itable_open(kbf_st_node_t *rec, uint32_t cap, uint32_t *hwm)
{
    kbf_itable_t *t = table_new(rec, cap, hwm);
    if (!t)
        return NULL;
    uint32_t n = KB_MIN(__atomic_load_n(hwm, __ATOMIC_ACQUIRE), cap);
    pthread_mutex_lock(&t->mu);
    for (uint32_t i = 0; i < n; i++) {
        if (__atomic_load_n(&rec[i].nlookup, __ATOMIC_ACQUIRE) == 0) {
            free_push_locked(t, i);
            continue;
        }
        rec[i].flags &= ~KBF_NODE_CVER;      /* a record torn by a kill: drop the cache once */
        link_locked(t, i);
        if (++t->count > t->nbuckets)
            grow_locked(t);
    }
    /* Reuse low records first (the free list is a stack). */
    for (uint32_t a = 0, b = t->nfree; a + 1 < b; a++, b--) {
        uint32_t x = t->free[a];
        t->free[a] = t->free[b - 1];
        t->free[b - 1] = x;
    }
    pthread_mutex_unlock(&t->mu);
    return t;
}

void kbf_itable_free(kbf_itable_t *t)
{
    if (!t)
        return;
    if (t->own_size)
        munmap(t->rec, t->own_size);
    free(t->buckets);
    free(t->free);
    pthread_mutex_destroy(&t->mu);
    free(t);
}

static uint32_t find_locked(kbf_itable_t *t, const kb_gfid_t *g)
{
    for (uint32_t k = t->buckets[slot(t, g)]; k; k = t->rec[k - 1].next)
        if (kb_gfid_eq(rec_gfid(&t->rec[k - 1]), g))
            return k;
    return 0;
}

static kbf_st_node_t *node(kbf_itable_t *t, uint64_t nodeid)
{
    if (nodeid == KBF_ROOT_ID)
        return &t->root;
    uint64_t idx = nodeid - KBF_NODE_BASE;
    assert(nodeid >= KBF_NODE_BASE && idx < __atomic_load_n(t->hwm, __ATOMIC_RELAXED) &&
           "node id the table never handed out");
    return &t->rec[idx];
}

uint64_t kbf_itable_ref(kbf_itable_t *t, const kb_gfid_t *gfid)
{
    if (kb_gfid_is_root(gfid))
        return KBF_ROOT_ID;
    pthread_mutex_lock(&t->mu);
    uint32_t k = find_locked(t, gfid);
    if (k) {
        kbf_st_node_t *n = &t->rec[k - 1];
        __atomic_store_n(&n->nlookup, n->nlookup + 1, __ATOMIC_RELEASE);
        pthread_mutex_unlock(&t->mu);
        return k - 1 + (uint64_t)KBF_NODE_BASE;
    }
    uint32_t idx;
    bool fresh = false;
    if (t->nfree) {
        idx = t->free[--t->nfree];
    } else if ((idx = *t->hwm) < t->cap) {
        fresh = true;
    } else {
        if (!t->full_logged)
            kb_err("fuse", "the inode table is full (%u inodes the kernel holds): lookups fail with ENOMEM "
                   "until the kernel forgets some", t->cap);
        t->full_logged = true;
        pthread_mutex_unlock(&t->mu);
        return 0;
    }
    kbf_st_node_t *n = &t->rec[idx];
    memcpy(n->gfid, gfid->b, 16);
    n->flags = 0;
    __atomic_store_n(&n->nlookup, 1, __ATOMIC_RELEASE);     /* after the gfid */
    if (fresh)
        __atomic_store_n(t->hwm, idx + 1, __ATOMIC_RELEASE);
    link_locked(t, idx);
    if (++t->count > t->nbuckets)
        grow_locked(t);
    pthread_mutex_unlock(&t->mu);
    return idx + (uint64_t)KBF_NODE_BASE;
}

void kbf_itable_forget(kbf_itable_t *t, uint64_t nodeid, uint64_t nlookup)
{
    if (nodeid == KBF_ROOT_ID || nodeid == 0)
        return;
    kbf_st_node_t *n = node(t, nodeid);
    uint32_t idx = (uint32_t)(nodeid - KBF_NODE_BASE);
    pthread_mutex_lock(&t->mu);
    if (n->nlookup == 0) {           /* forgotten already: a count the kernel never held */
        pthread_mutex_unlock(&t->mu);
        return;
    }
    uint64_t left = n->nlookup - KB_MIN(n->nlookup, nlookup);
    if (left == 0) {
        uint32_t *pp = &t->buckets[slot(t, rec_gfid(n))];
        while (*pp && *pp != idx + 1)
            pp = &t->rec[*pp - 1].next;
        assert(*pp == idx + 1);
        if (*pp == idx + 1) {
            *pp = n->next;
            t->count--;
        }
        n->next = 0;
    }
    __atomic_store_n(&n->nlookup, left, __ATOMIC_RELEASE);
    if (left == 0)
        free_push_locked(t, idx);
    pthread_mutex_unlock(&t->mu);
}

const kb_gfid_t *kbf_itable_gfid(kbf_itable_t *t, uint64_t nodeid)
{
    return rec_gfid(node(t, nodeid));
}

static bool cver_eq(const kbf_st_node_t *n, const kbf_cver_t *v)
{
    return n->size == v->size && n->mtime_sec == v->mtime_sec && n->mtime_nsec == v->mtime_nsec &&
           n->ctime_sec == v->ctime_sec && n->ctime_nsec == v->ctime_nsec;
}

enum kbf_cver_cmp kbf_itable_cver_swap(kbf_itable_t *t, uint64_t nodeid, const kbf_cver_t *now)
{
    kbf_st_node_t *n = node(t, nodeid);
    pthread_mutex_lock(&t->mu);
    uint32_t f = __atomic_load_n(&n->flags, __ATOMIC_RELAXED);
    enum kbf_cver_cmp c = !(f & KBF_NODE_CVER) ? KBF_CVER_NONE
                        : now && cver_eq(n, now) ? KBF_CVER_SAME : KBF_CVER_CHANGED;
    if (now) {
        n->size = now->size;
        n->mtime_sec = now->mtime_sec;
        n->mtime_nsec = now->mtime_nsec;
        n->ctime_sec = now->ctime_sec;
        n->ctime_nsec = now->ctime_nsec;
        __atomic_fetch_or(&n->flags, KBF_NODE_CVER, __ATOMIC_RELAXED);
    } else {
        __atomic_fetch_and(&n->flags, ~KBF_NODE_CVER, __ATOMIC_RELAXED);
    }
    pthread_mutex_unlock(&t->mu);
    return c;
}

void kbf_itable_note_mode(kbf_itable_t *t, uint64_t nodeid, uint32_t mode)
{
    kbf_st_node_t *n = node(t, nodeid);
    if (mode & (S_ISUID | S_ISGID))
        __atomic_fetch_or(&n->flags, KBF_NODE_SXID, __ATOMIC_RELAXED);
    else
        __atomic_fetch_and(&n->flags, ~KBF_NODE_SXID, __ATOMIC_RELAXED);
}

bool kbf_itable_sxid(kbf_itable_t *t, uint64_t nodeid)
{
    return (__atomic_load_n(&node(t, nodeid)->flags, __ATOMIC_RELAXED) & KBF_NODE_SXID) != 0;
}

size_t kbf_itable_count(kbf_itable_t *t)
{
    pthread_mutex_lock(&t->mu);
    size_t n = t->count;
    pthread_mutex_unlock(&t->mu);
    return n;
}

uint64_t kbf_itable_nlookup(kbf_itable_t *t, const kb_gfid_t *gfid)
{
    if (kb_gfid_is_root(gfid))
        return t->root.nlookup;
    pthread_mutex_lock(&t->mu);
    uint32_t k = find_locked(t, gfid);
    uint64_t v = k ? t->rec[k - 1].nlookup : 0;
    pthread_mutex_unlock(&t->mu);
    return v;
}
