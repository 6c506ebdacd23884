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
 */
#include "lib/buf.h"
#include "lib/common.h"

#define KB_BUF_ALIGN 4096

kb_buf_t *kb_buf_new(size_t cap)
{
    kb_buf_t *b = malloc(sizeof(*b));
    if (!b)
        return NULL;
    size_t rcap = KB_ALIGN_UP(cap ? cap : 1, (size_t)KB_BUF_ALIGN);
    void *data = NULL;
    if (rcap < cap || posix_memalign(&data, KB_BUF_ALIGN, rcap) != 0) {
        free(b);
        return NULL;
    }
    b->refs = 1;
    b->len = 0;
    b->cap = rcap;
    b->data = data;
    b->free_fn = NULL;
    b->free_opaque = NULL;
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
    else
        free(b->data);   /* kb_buf_new's memory, or malloc'd data wrapped with fn NULL */
    free(b);
}
