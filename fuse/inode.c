/*
 * inode.c — the gfid <-> node id table of kembar-fuse (fuse/inode.h).
 *
 * A chained hash table keyed by gfid (kb_gfid_hash), grown by doubling when
 * it holds more entries than buckets, so lookups stay O(1) with a million
 * cached inodes (a linear list, as in small examples, would not). Node id =
 * entry address; root = 1, handled apart from the hash.
 *
 * Invariant: an entry is in the hash iff nlookup > 0 (root excepted).
 */
#include "fuse/inode.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "lib/common.h"

#define KBF_MAGIC 0x6b62696e6f646531ull     /* "kbinode1": catches a bad node id in debug */
#define KBF_MIN_BUCKETS 1024

struct kbf_inode {
    uint64_t magic;
    kb_gfid_t gfid;
    uint64_t nlookup;            /* (t->mu) */
    bool has_cver;               /* (t->mu) cver is set */
    kbf_cver_t cver;             /* (t->mu) content version at the last open */
    bool sxid;                   /* (atomic) setuid/setgid in the last mode seen */
    struct kbf_inode *next;      /* (t->mu) hash chain */
};

struct kbf_itable {
    pthread_mutex_t mu;
    struct kbf_inode **buckets;  /* (mu) */
    size_t nbuckets;             /* (mu) power of two */
    size_t count;                /* (mu) entries in the hash */
    struct kbf_inode root;       /* node id 1; never in the hash */
};

kbf_itable_t *kbf_itable_new(void)
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
    t->root.magic = KBF_MAGIC;
    t->root.gfid = kb_gfid_root;
    t->root.nlookup = 1;
    return t;
}

void kbf_itable_free(kbf_itable_t *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->nbuckets; i++) {
        struct kbf_inode *n = t->buckets[i];
        while (n) {
            struct kbf_inode *next = n->next;
            n->magic = 0;
            free(n);
            n = next;
        }
    }
    free(t->buckets);
    pthread_mutex_destroy(&t->mu);
    free(t);
}

static size_t slot(const kbf_itable_t *t, const kb_gfid_t *g)
{
    return kb_gfid_hash(g) & (t->nbuckets - 1);
}

static struct kbf_inode *find_locked(kbf_itable_t *t, const kb_gfid_t *g, struct kbf_inode ***link)
{
    struct kbf_inode **pp = &t->buckets[slot(t, g)];
    for (; *pp; pp = &(*pp)->next)
        if (kb_gfid_eq(&(*pp)->gfid, g))
            break;
    if (link)
        *link = pp;
    return *pp;
}

/* Double the bucket array; on allocation failure keep the old one (slower
 * chains, still correct). */
static void grow_locked(kbf_itable_t *t)
{
    size_t nb = t->nbuckets * 2;
    struct kbf_inode **b = calloc(nb, sizeof(*b));
    if (!b)
        return;
    for (size_t i = 0; i < t->nbuckets; i++) {
        struct kbf_inode *n = t->buckets[i];
        while (n) {
            struct kbf_inode *next = n->next;
            size_t s = kb_gfid_hash(&n->gfid) & (nb - 1);
            n->next = b[s];
            b[s] = n;
            n = next;
        }
    }
    free(t->buckets);
    t->buckets = b;
    t->nbuckets = nb;
}

static struct kbf_inode *node(kbf_itable_t *t, uint64_t nodeid)
{
    if (nodeid == KBF_ROOT_ID)
        return &t->root;
    struct kbf_inode *n = (struct kbf_inode *)(uintptr_t)nodeid;
    assert(n->magic == KBF_MAGIC && "node id the table never handed out");
    return n;
}

uint64_t kbf_itable_ref(kbf_itable_t *t, const kb_gfid_t *gfid)
{
    if (kb_gfid_is_root(gfid))
        return KBF_ROOT_ID;
    pthread_mutex_lock(&t->mu);
    struct kbf_inode **link;
    struct kbf_inode *n = find_locked(t, gfid, &link);
    if (!n) {
        n = kb_zalloc(sizeof(*n));
        if (!n) {
            pthread_mutex_unlock(&t->mu);
            return 0;
        }
        n->magic = KBF_MAGIC;
        n->gfid = *gfid;
        *link = n;
        if (++t->count > t->nbuckets)
            grow_locked(t);
    }
    n->nlookup++;
    pthread_mutex_unlock(&t->mu);
    return (uint64_t)(uintptr_t)n;
}

void kbf_itable_forget(kbf_itable_t *t, uint64_t nodeid, uint64_t nlookup)
{
    if (nodeid == KBF_ROOT_ID || nodeid == 0)
        return;
    struct kbf_inode *n = node(t, nodeid);
    pthread_mutex_lock(&t->mu);
    n->nlookup -= KB_MIN(n->nlookup, nlookup);
    if (n->nlookup == 0) {
        struct kbf_inode **link;
        struct kbf_inode *found = find_locked(t, &n->gfid, &link);
        assert(found == n);
        if (found == n) {
            *link = n->next;
            t->count--;
        }
        n->magic = 0;
        free(n);
    }
    pthread_mutex_unlock(&t->mu);
}

const kb_gfid_t *kbf_itable_gfid(kbf_itable_t *t, uint64_t nodeid)
{
    return &node(t, nodeid)->gfid;
}

enum kbf_cver_cmp kbf_itable_cver_swap(kbf_itable_t *t, uint64_t nodeid, const kbf_cver_t *now)
{
    struct kbf_inode *n = node(t, nodeid);
    pthread_mutex_lock(&t->mu);
    enum kbf_cver_cmp c = !n->has_cver ? KBF_CVER_NONE
                        : now && memcmp(&n->cver, now, sizeof(*now)) == 0 ? KBF_CVER_SAME
                        : KBF_CVER_CHANGED;
    n->has_cver = now != NULL;
    if (now)
        n->cver = *now;
    pthread_mutex_unlock(&t->mu);
    return c;
}

void kbf_itable_note_mode(kbf_itable_t *t, uint64_t nodeid, uint32_t mode)
{
    __atomic_store_n(&node(t, nodeid)->sxid, (mode & (S_ISUID | S_ISGID)) != 0, __ATOMIC_RELAXED);
}

bool kbf_itable_sxid(kbf_itable_t *t, uint64_t nodeid)
{
    return __atomic_load_n(&node(t, nodeid)->sxid, __ATOMIC_RELAXED);
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
    struct kbf_inode *n = find_locked(t, gfid, NULL);
    uint64_t v = n ? n->nlookup : 0;
    pthread_mutex_unlock(&t->mu);
    return v;
}
