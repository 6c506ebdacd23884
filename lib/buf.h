/*
 * buf.h — reference-counted payload buffers (DESIGN §3).
 *
 * A kb_buf carries bulk data (write payloads, read results). It is shared
 * read-only once handed to another module: replicate passes one buffer to N
 * children by taking N references, never by copying. Buffers are allocated
 * 4096-aligned so they can be used for O_DIRECT I/O on the brick as they are.
 *
 * Ownership: kb_buf_new returns one reference. Each kb_buf_ref must be matched
 * by one kb_buf_unref; the last unref frees. Thread-safe (atomic count).
 */
#ifndef KB_BUF_H
#define KB_BUF_H

#include <stddef.h>
#include <stdint.h>

typedef struct kb_buf kb_buf_t;
typedef void (*kb_buf_free_fn)(void *opaque, void *data);

struct kb_buf {
    int refs;              /* atomic */
    size_t len;            /* bytes of valid data */
    size_t cap;            /* bytes allocated at data */
    char *data;
    kb_buf_free_fn free_fn; /* NULL: data was allocated by kb_buf_new */
    void *free_opaque;
};

kb_buf_t *kb_buf_new(size_t cap);                    /* len = 0; aligned */
kb_buf_t *kb_buf_wrap(void *data, size_t len, kb_buf_free_fn fn, void *opaque);
kb_buf_t *kb_buf_copy(const void *data, size_t len); /* new buffer holding a copy */
kb_buf_t *kb_buf_ref(kb_buf_t *b);                    /* NULL-safe */
void kb_buf_unref(kb_buf_t *b);                       /* NULL-safe */

#endif
