/*
 * changelog.c — pack/unpack of the replicate changelog matrix (changelog.h).
 *
 * The on-disk and on-wire form is KB_CL_ROWS x KB_CL_COLS big-endian int32,
 * row-major, 204 bytes; the host form is kb_cl_matrix_t. Both directions are
 * total: every 204-byte input decodes.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include "lib/buf.h"
#include "lib/codec.h"
#include "xlators/changelog.h"

void kb_cl_encode(const kb_cl_matrix_t *m, uint8_t out[KB_CL_MATRIX_BYTES])
{
    uint8_t *p = out;
    for (int r = 0; r < KB_CL_ROWS; r++)
        for (int c = 0; c < KB_CL_COLS; c++) {
            uint32_t v = (uint32_t)m->v[r][c];
            p[0] = (uint8_t)(v >> 24);
            p[1] = (uint8_t)(v >> 16);
            p[2] = (uint8_t)(v >> 8);
            p[3] = (uint8_t)v;
            p += 4;
        }
}

void kb_cl_decode(const uint8_t in[KB_CL_MATRIX_BYTES], kb_cl_matrix_t *m)
{
    const uint8_t *p = in;
    for (int r = 0; r < KB_CL_ROWS; r++)
        for (int c = 0; c < KB_CL_COLS; c++) {
            uint32_t v = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
            m->v[r][c] = (int32_t)v;
            p += 4;
        }
}

/* ---------------- XATTROP under a lock ---------------- */

static void free_enc(void *opaque, void *data)
{
    (void)opaque;
    free(data);
}

struct kb_buf *kb_cl_cond_payload(const kb_cl_matrix_t *delta, const kb_cl_cond_t *c)
{
    size_t dl = strlen(c->domain), bl = strlen(c->base);
    if (!dl || dl > KB_CL_COND_DOMAIN_MAX || bl > KB_CL_COND_BASE_MAX ||
        (c->kind == KB_CL_COND_ENTRYLK) != (bl > 0))
        return NULL;
    kb_enc_t e;
    kb_enc_init(&e);
    uint8_t *m = kb_enc_reserve(&e, KB_CL_MATRIX_BYTES);
    if (m)
        kb_cl_encode(delta, m);
    kb_enc_u8(&e, c->kind);
    kb_enc_u64(&e, c->owner);
    kb_enc_blob(&e, c->domain, (uint32_t)dl);
    kb_enc_blob(&e, c->base, (uint32_t)bl);
    struct kb_buf *b = e.err ? NULL : kb_buf_wrap(e.p, e.len, free_enc, NULL);   /* adopts e.p */
    if (!b)
        kb_enc_free(&e);
    return b;
}

/* Copy blob NAME (1..MAX bytes, no NUL; 0 bytes when EMPTY_OK) into OUT. */
static int cond_name(kb_dec_t *d, char *out, uint32_t max, bool empty_ok)
{
    uint32_t n = 0;
    const void *p = kb_dec_blob(d, &n, max);
    if (d->err || (!n && !empty_ok) || (n && memchr(p, 0, n)))
        return -EINVAL;
    memcpy(out, p, n);
    out[n] = 0;
    return 0;
}

int kb_cl_cond_parse(const void *data, size_t len, kb_cl_cond_t *c)
{
    if (!data || len < KB_CL_MATRIX_BYTES)
        return -EINVAL;
    kb_dec_t d;
    kb_dec_init(&d, (const uint8_t *)data + KB_CL_MATRIX_BYTES, len - KB_CL_MATRIX_BYTES);
    memset(c, 0, sizeof(*c));
    c->kind = kb_dec_u8(&d);
    c->owner = kb_dec_u64(&d);
    if (d.err || c->kind > KB_CL_COND_ENTRYLK ||
        cond_name(&d, c->domain, KB_CL_COND_DOMAIN_MAX, false) ||
        cond_name(&d, c->base, KB_CL_COND_BASE_MAX, c->kind == KB_CL_COND_INODELK) ||
        (c->kind == KB_CL_COND_INODELK && c->base[0]) || kb_dec_left(&d) || d.err)
        return -EINVAL;
    return 0;
}
