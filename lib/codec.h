/*
 * codec.h — explicit little-endian encoding for the wire and on-disk records.
 *
 * kb_enc grows a heap buffer; an allocation failure is sticky (enc->err) and
 * reported once at the end, so encoders need not check each put.
 * kb_dec reads from a fixed byte range; every read is bounds-checked and a
 * failure is sticky (dec->err = -EBADMSG): decoders check once at the end.
 * String and blob reads are checked against a caller-supplied maximum BEFORE
 * anything is allocated (DESIGN §8).
 */
#ifndef KB_CODEC_H
#define KB_CODEC_H

#include <stddef.h>
#include <stdint.h>

typedef struct kb_enc {
    uint8_t *p;
    size_t len, cap;
    int err;
} kb_enc_t;

typedef struct kb_dec {
    const uint8_t *p;
    size_t len, pos;
    int err;
} kb_dec_t;

void kb_enc_init(kb_enc_t *e);
void kb_enc_free(kb_enc_t *e);
void kb_enc_reset(kb_enc_t *e);
void *kb_enc_reserve(kb_enc_t *e, size_t n);  /* append n bytes, return pointer or NULL */
void kb_enc_u8(kb_enc_t *e, uint8_t v);
void kb_enc_u16(kb_enc_t *e, uint16_t v);
void kb_enc_u32(kb_enc_t *e, uint32_t v);
void kb_enc_u64(kb_enc_t *e, uint64_t v);
void kb_enc_bytes(kb_enc_t *e, const void *p, size_t n);      /* raw, no length */
void kb_enc_blob(kb_enc_t *e, const void *p, uint32_t n);     /* u32 length + bytes */
void kb_enc_str(kb_enc_t *e, const char *s);                  /* u32 length + bytes; NULL -> 0xffffffff */

void kb_dec_init(kb_dec_t *d, const void *p, size_t len);
uint8_t kb_dec_u8(kb_dec_t *d);
uint16_t kb_dec_u16(kb_dec_t *d);
uint32_t kb_dec_u32(kb_dec_t *d);
uint64_t kb_dec_u64(kb_dec_t *d);
void kb_dec_bytes(kb_dec_t *d, void *out, size_t n);
/* Returns a pointer into the input (not copied) and its length; NULL on error. */
const void *kb_dec_blob(kb_dec_t *d, uint32_t *n, uint32_t max);
/* Returns a malloc'd NUL-terminated copy; *out = NULL for an encoded NULL.
 * Refuses embedded NUL and length > max. */
void kb_dec_str(kb_dec_t *d, char **out, uint32_t max);
static inline size_t kb_dec_left(const kb_dec_t *d) { return d->err ? 0 : d->len - d->pos; }

static inline void kb_put_le32(uint8_t *p, uint32_t v) { p[0]=v; p[1]=v>>8; p[2]=v>>16; p[3]=v>>24; }
static inline uint32_t kb_get_le32(const uint8_t *p) { return p[0] | p[1]<<8 | p[2]<<16 | (uint32_t)p[3]<<24; }
static inline void kb_put_le64(uint8_t *p, uint64_t v) { kb_put_le32(p, (uint32_t)v); kb_put_le32(p + 4, (uint32_t)(v >> 32)); }
static inline uint64_t kb_get_le64(const uint8_t *p) { return kb_get_le32(p) | (uint64_t)kb_get_le32(p + 4) << 32; }

#endif
