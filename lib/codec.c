/*
 * codec.c — explicit little-endian encoding (lib/codec.h).
 *
 * Encoder: a growing heap buffer; the first failure (-ENOMEM, or -EMSGSIZE
 * for a string longer than a u32 can say) is sticky and every later put is a
 * no-op, so encoders check e->err once at the end.
 *
 * Decoder: a read-only window over the caller's bytes. Every read is bounds-
 * checked; the first failure is sticky (-EBADMSG; -ENOMEM if a string copy
 * could not be allocated), after which reads return zeros / NULL and never
 * move. Lengths are compared with the caller's maximum and with the bytes
 * left BEFORE anything is allocated, so a hostile length costs nothing.
 */
#include "lib/codec.h"
#include "lib/common.h"

#define KB_STR_NULL 0xffffffffu   /* encoded length of a NULL string */

void kb_enc_init(kb_enc_t *e)
{
    e->p = NULL;
    e->len = e->cap = 0;
    e->err = 0;
}

void kb_enc_free(kb_enc_t *e)
{
    free(e->p);
    kb_enc_init(e);
}

void kb_enc_reset(kb_enc_t *e)
{
    e->len = 0;
    e->err = 0;
}

void *kb_enc_reserve(kb_enc_t *e, size_t n)
{
    if (e->err)
        return NULL;
    if (n > SIZE_MAX / 2 - e->len) {
        e->err = -EMSGSIZE;
        return NULL;
    }
    if (e->len + n > e->cap) {
        size_t cap = e->cap ? e->cap : 256;
        while (cap < e->len + n)
            cap *= 2;
        uint8_t *p = realloc(e->p, cap);
        if (!p) {
            e->err = -ENOMEM;
            return NULL;
        }
        e->p = p;
        e->cap = cap;
    }
    void *at = e->p + e->len;
    e->len += n;
    return at;
}

void kb_enc_u8(kb_enc_t *e, uint8_t v)
{
    uint8_t *p = kb_enc_reserve(e, 1);
    if (p)
        *p = v;
}

void kb_enc_u16(kb_enc_t *e, uint16_t v)
{
    uint8_t *p = kb_enc_reserve(e, 2);
    if (p) {
        p[0] = (uint8_t)v;
        p[1] = (uint8_t)(v >> 8);
    }
}

void kb_enc_u32(kb_enc_t *e, uint32_t v)
{
    uint8_t *p = kb_enc_reserve(e, 4);
    if (p)
        kb_put_le32(p, v);
}

void kb_enc_u64(kb_enc_t *e, uint64_t v)
{
    uint8_t *p = kb_enc_reserve(e, 8);
    if (p)
        kb_put_le64(p, v);
}

void kb_enc_bytes(kb_enc_t *e, const void *src, size_t n)
{
    uint8_t *p = kb_enc_reserve(e, n);
    if (p && n)
        memcpy(p, src, n);
}

void kb_enc_blob(kb_enc_t *e, const void *src, uint32_t n)
{
    kb_enc_u32(e, n);
    kb_enc_bytes(e, src, n);
}

void kb_enc_str(kb_enc_t *e, const char *s)
{
    if (!s) {
        kb_enc_u32(e, KB_STR_NULL);
        return;
    }
    size_t n = strlen(s);
    if (n >= KB_STR_NULL) {
        if (!e->err)
            e->err = -EMSGSIZE;
        return;
    }
    kb_enc_blob(e, s, (uint32_t)n);
}

void kb_dec_init(kb_dec_t *d, const void *p, size_t len)
{
    d->p = p;
    d->len = p ? len : 0;
    d->pos = 0;
    d->err = 0;
}

/* Claim N bytes: a pointer to them, or NULL (and the sticky error). */
static const uint8_t *take(kb_dec_t *d, size_t n)
{
    if (d->err)
        return NULL;
    if (n > d->len - d->pos) {
        d->err = -EBADMSG;
        return NULL;
    }
    const uint8_t *at = d->p + d->pos;
    d->pos += n;
    return at;
}

uint8_t kb_dec_u8(kb_dec_t *d)
{
    const uint8_t *p = take(d, 1);
    return p ? p[0] : 0;
}

uint16_t kb_dec_u16(kb_dec_t *d)
{
    const uint8_t *p = take(d, 2);
    return p ? (uint16_t)(p[0] | p[1] << 8) : 0;
}

uint32_t kb_dec_u32(kb_dec_t *d)
{
    const uint8_t *p = take(d, 4);
    return p ? kb_get_le32(p) : 0;
}

uint64_t kb_dec_u64(kb_dec_t *d)
{
    const uint8_t *p = take(d, 8);
    return p ? kb_get_le64(p) : 0;
}

void kb_dec_bytes(kb_dec_t *d, void *out, size_t n)
{
    const uint8_t *p = take(d, n);
    if (p && n)
        memcpy(out, p, n);
    else if (!p && n)
        memset(out, 0, n);
}

const void *kb_dec_blob(kb_dec_t *d, uint32_t *n, uint32_t max)
{
    *n = 0;
    size_t at = d->pos;
    uint32_t l = kb_dec_u32(d);
    if (d->err)
        return NULL;
    if (l > max) {
        d->pos = at;
        d->err = -EBADMSG;
        return NULL;
    }
    const uint8_t *p = take(d, l);
    if (!p) {
        d->pos = at;
        return NULL;
    }
    *n = l;
    return l ? (const void *)p : (const void *)"";  /* never NULL on success */
}

void kb_dec_str(kb_dec_t *d, char **out, uint32_t max)
{
    *out = NULL;
    size_t at = d->pos;
    uint32_t l = kb_dec_u32(d);
    if (d->err || l == KB_STR_NULL)
        return;
    const uint8_t *p = NULL;
    if (l > max || !(p = take(d, l)) || memchr(p, '\0', l)) {
        d->pos = at;
        d->err = -EBADMSG;
        return;
    }
    char *s = malloc((size_t)l + 1);
    if (!s) {
        d->pos = at;
        d->err = -ENOMEM;
        return;
    }
    memcpy(s, p, l);
    s[l] = '\0';
    *out = s;
}
