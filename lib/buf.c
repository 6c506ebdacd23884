/*
 * buf.c — reference-counted payload buffers (lib/buf.h).
 *
 * Invariants: refs > 0 while anyone holds the buffer; the count uses C11-style
 * GCC atomics (acq_rel on the decrement so the freeing thread sees every
 * write made under the other references). Memory from kb_buf_new is
 * 4096-aligned (posix_memalign) and its capacity rounded up to 4096, so the
 * brick can hand it to O_DIRECT / io_uring unchanged.
 *
 * kb_buf_wrap with fn == NULL takes malloc'd memory: the last unref free()s
 * it. Pass a no-op fn for memory the buffer must not free.
 *
 * Cache. Buffers of 64 KiB and up are what the data path moves (1 MiB
 * writes, read replies). glibc serves them with mmap and gives them back
 * with munmap, so every fresh buffer page-faults and zeroes its pages: that
 * alone halved transport throughput. So sizes from 64 KiB to 4 MiB are
 * rounded up to a power of two and their memory is kept on a small per-class
 * free list (at most CACHE_BYTES per class) instead of being freed. Such
 * buffers are marked by free_opaque == &pool_mark.
 */
#include "lib/buf.h"
#include "lib/common.h"

#include <pthread.h>

#define KB_BUF_ALIGN 4096
#define CLASS_MIN_SHIFT 16            /* 64 KiB */
#define CLASS_MAX_SHIFT 22            /* 4 MiB */
#define NCLASSES (CLASS_MAX_SHIFT - CLASS_MIN_SHIFT + 1)
#define CACHE_BYTES (32u << 20)       /* per class */

struct buf_class {
    pthread_mutex_t mu;
    void **free;                      /* stack of cached data areas */
    unsigned n, max;
};

static struct buf_class classes[NCLASSES];
static char pool_mark;
static pthread_once_t pool_once = PTHREAD_ONCE_INIT;

static void pool_init(void)
{
    for (int i = 0; i < NCLASSES; i++) {
        pthread_mutex_init(&classes[i].mu, NULL);
        classes[i].max = CACHE_BYTES >> (CLASS_MIN_SHIFT + i);
        classes[i].free = calloc(classes[i].max, sizeof(void *));
        if (!classes[i].free)
            classes[i].max = 0;       /* no cache for this class: plain free */
    }
}

/* The class index for CAP, or -1 when CAP is not cached. */
static int class_of(size_t cap)
{
    if (cap > (1u << CLASS_MAX_SHIFT) || cap < (1u << CLASS_MIN_SHIFT))
        return -1;
    int shift = CLASS_MIN_SHIFT;
    while (((size_t)1 << shift) < cap)
        shift++;
    return shift - CLASS_MIN_SHIFT;
}

static void *pool_get(int cls)
{
    struct buf_class *k = &classes[cls];
    void *p = NULL;
    pthread_mutex_lock(&k->mu);
    if (k->n)
        p = k->free[--k->n];
    pthread_mutex_unlock(&k->mu);
    if (!p && posix_memalign(&p, KB_BUF_ALIGN, (size_t)1 << (CLASS_MIN_SHIFT + cls)) != 0)
        p = NULL;
    return p;
}

static void pool_put(void *p, size_t cap)
{
    struct buf_class *k = &classes[class_of(cap)];
    pthread_mutex_lock(&k->mu);
    if (k->n < k->max) {
        k->free[k->n++] = p;
        p = NULL;
    }
    pthread_mutex_unlock(&k->mu);
    free(p);
}

kb_buf_t *kb_buf_new(size_t cap)
{
    kb_buf_t *b = malloc(sizeof(*b));
    if (!b)
        return NULL;
    size_t rcap = KB_ALIGN_UP(cap ? cap : 1, (size_t)KB_BUF_ALIGN);
    void *data = NULL;
    int cls = rcap < cap ? -1 : class_of(rcap);
    if (cls >= 0) {
        pthread_once(&pool_once, pool_init);
        rcap = (size_t)1 << (CLASS_MIN_SHIFT + cls);
        data = pool_get(cls);
    } else if (rcap >= cap && posix_memalign(&data, KB_BUF_ALIGN, rcap) != 0) {
        data = NULL;
    }
    if (!data) {
        free(b);
        return NULL;
    }
    b->refs = 1;
    b->len = 0;
    b->cap = rcap;
    b->data = data;
    b->free_fn = NULL;
    b->free_opaque = cls >= 0 ? &pool_mark : NULL;
    return b;
}

kb_buf_t *kb_buf_wrap(void *data, size_t len, kb_buf_free_fn fn, void *opaque)
{
    kb_buf_t *b = malloc(sizeof(*b));
    if (!b)
        return NULL;     /* the caller still owns DATA */
    b->refs = 1;
    b->len = len;
    b->cap = len;
    b->data = data;
    b->free_fn = fn;
    b->free_opaque = opaque;
    return b;
}

kb_buf_t *kb_buf_copy(const void *data, size_t len)
{
    kb_buf_t *b = kb_buf_new(len);
    if (!b)
        return NULL;
    if (len)
        memcpy(b->data, data, len);
    b->len = len;
    return b;
}

kb_buf_t *kb_buf_ref(kb_buf_t *b)
{
    if (b)
        __atomic_add_fetch(&b->refs, 1, __ATOMIC_RELAXED);
    return b;
}

void kb_buf_unref(kb_buf_t *b)
{
    if (!b)
        return;
    int left = __atomic_sub_fetch(&b->refs, 1, __ATOMIC_ACQ_REL);
    assert(left >= 0);
    if (left != 0)
        return;
    if (b->free_fn)
        b->free_fn(b->free_opaque, b->data);
    else if (b->free_opaque == &pool_mark)
        pool_put(b->data, b->cap);
    else
        free(b->data);   /* kb_buf_new's memory, or malloc'd data wrapped with fn NULL */
    free(b);
}
