/*
 * codec_test.c — lib/codec: round trips, truncation at every byte, limits
 * checked before allocation, random input never crashes.
 */
#include <criterion/criterion.h>
#include "lib/codec.h"
#include "lib/common.h"

/* One record of every kind, used by the round-trip and truncation tests. */
static void encode_sample(kb_enc_t *e)
{
    kb_enc_u8(e, 0xab);
    kb_enc_u16(e, 0xbeef);
    kb_enc_u32(e, 0xdeadbeef);
    kb_enc_u64(e, 0x0123456789abcdefull);
    kb_enc_bytes(e, "raw!", 4);
    kb_enc_blob(e, "blobdata", 8);
    kb_enc_str(e, "hello");
    kb_enc_str(e, NULL);
    kb_enc_str(e, "");
}

/* Decodes the sample; returns the decoder's error (0 when complete). */
static int decode_sample(const void *p, size_t len, bool check)
{
    kb_dec_t d;
    kb_dec_init(&d, p, len);
    uint8_t a = kb_dec_u8(&d);
    uint16_t b = kb_dec_u16(&d);
    uint32_t c = kb_dec_u32(&d);
    uint64_t x = kb_dec_u64(&d);
    char raw[4];
    kb_dec_bytes(&d, raw, 4);
    uint32_t bn;
    const void *blob = kb_dec_blob(&d, &bn, 64);
    char *s1, *s2, *s3;
    kb_dec_str(&d, &s1, 64);
    kb_dec_str(&d, &s2, 64);
    kb_dec_str(&d, &s3, 64);
    if (check) {
        cr_assert_eq(d.err, 0);
        cr_assert_eq(a, 0xab);
        cr_assert_eq(b, 0xbeef);
        cr_assert_eq(c, 0xdeadbeef);
        cr_assert_eq(x, 0x0123456789abcdefull);
        cr_assert_arr_eq(raw, "raw!", 4);
        cr_assert_eq(bn, 8);
        cr_assert_arr_eq(blob, "blobdata", 8);
        cr_assert_str_eq(s1, "hello");
        cr_assert_null(s2);
        cr_assert_str_eq(s3, "");
        cr_assert_eq(kb_dec_left(&d), 0);
    }
    free(s1);
    free(s2);
    free(s3);
    return d.err;
}

Test(codec, round_trip)
{
    kb_enc_t e;
    kb_enc_init(&e);
    encode_sample(&e);
    cr_assert_eq(e.err, 0);
    cr_assert_eq(e.len, 1 + 2 + 4 + 8 + 4 + 12 + 9 + 4 + 4);
    decode_sample(e.p, e.len, true);
    kb_enc_free(&e);
}

Test(codec, little_endian_layout)
{
    kb_enc_t e;
    kb_enc_init(&e);
    kb_enc_u32(&e, 0x04030201);
    kb_enc_u16(&e, 0x0605);
    kb_enc_u64(&e, 0x0e0d0c0b0a090807ull);
    const uint8_t want[] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14 };
    cr_assert_eq(e.len, sizeof(want));
    cr_assert_arr_eq(e.p, want, sizeof(want));
    kb_enc_free(&e);
}

Test(codec, truncation_at_every_byte)
{
    kb_enc_t e;
    kb_enc_init(&e);
    encode_sample(&e);
    for (size_t n = 0; n < e.len; n++) {
        /* A fresh heap copy of exactly n bytes lets ASan catch any overread. */
        uint8_t *cut = malloc(n ? n : 1);
        memcpy(cut, e.p, n);
        cr_assert_eq(decode_sample(cut, n, false), -EBADMSG, "cut at %zu", n);
        free(cut);
    }
    kb_enc_free(&e);
}

Test(codec, sticky_error_stops_reading)
{
    uint8_t in[3] = { 1, 2, 3 };
    kb_dec_t d;
    kb_dec_init(&d, in, sizeof(in));
    cr_assert_eq(kb_dec_u32(&d), 0);
    cr_assert_eq(d.err, -EBADMSG);
    cr_assert_eq(kb_dec_u8(&d), 0, "no read after an error");
    cr_assert_eq(d.pos, 0);
    cr_assert_eq(kb_dec_left(&d), 0);
}

Test(codec, blob_over_max_refused)
{
    kb_enc_t e;
    kb_enc_init(&e);
    kb_enc_blob(&e, "0123456789", 10);
    kb_dec_t d;
    kb_dec_init(&d, e.p, e.len);
    uint32_t n = 99;
    cr_assert_null(kb_dec_blob(&d, &n, 9));
    cr_assert_eq(d.err, -EBADMSG);
    cr_assert_eq(n, 0);
    kb_dec_init(&d, e.p, e.len);
    cr_assert_not_null(kb_dec_blob(&d, &n, 10));
    cr_assert_eq(n, 10);
    kb_enc_free(&e);
}

Test(codec, huge_length_refused_before_allocation)
{
    /* A length of 4 GiB - 2 with 4 bytes behind it: must fail without trying
     * to allocate (ASan would report a huge malloc as an error). */
    uint8_t in[8];
    kb_put_le32(in, 0xfffffffeu);
    memcpy(in + 4, "abcd", 4);
    kb_dec_t d;
    kb_dec_init(&d, in, sizeof(in));
    char *s = (char *)1;
    kb_dec_str(&d, &s, UINT32_MAX);
    cr_assert_null(s);
    cr_assert_eq(d.err, -EBADMSG);
    kb_dec_init(&d, in, sizeof(in));
    kb_dec_str(&d, &s, 3);
    cr_assert_eq(d.err, -EBADMSG);
}

Test(codec, str_over_max_and_embedded_nul)
{
    kb_enc_t e;
    kb_enc_init(&e);
    kb_enc_str(&e, "abcdef");
    kb_dec_t d;
    char *s;
    kb_dec_init(&d, e.p, e.len);
    kb_dec_str(&d, &s, 5);
    cr_assert_null(s);
    cr_assert_eq(d.err, -EBADMSG);
    kb_dec_init(&d, e.p, e.len);
    kb_dec_str(&d, &s, 6);
    cr_assert_str_eq(s, "abcdef");
    free(s);

    kb_enc_reset(&e);
    kb_enc_blob(&e, "ab\0cd", 5);
    kb_dec_init(&d, e.p, e.len);
    kb_dec_str(&d, &s, 64);
    cr_assert_null(s);
    cr_assert_eq(d.err, -EBADMSG, "embedded NUL refused");
    kb_enc_free(&e);
}

Test(codec, reserve_and_growth)
{
    kb_enc_t e;
    kb_enc_init(&e);
    for (uint32_t i = 0; i < 100000; i++)
        kb_enc_u32(&e, i);
    cr_assert_eq(e.err, 0);
    cr_assert_eq(e.len, 400000);
    kb_dec_t d;
    kb_dec_init(&d, e.p, e.len);
    for (uint32_t i = 0; i < 100000; i++)
        cr_assert_eq(kb_dec_u32(&d), i);
    cr_assert_eq(kb_dec_left(&d), 0);
    uint8_t *p = kb_enc_reserve(&e, 3);
    cr_assert_not_null(p);
    cr_assert_eq(e.len, 400003);
    cr_assert_null(kb_enc_reserve(&e, SIZE_MAX - 10));
    cr_assert_neq(e.err, 0, "impossible size is a sticky error");
    kb_enc_u8(&e, 1);
    cr_assert_eq(e.len, 400003, "no put after an error");
    kb_enc_reset(&e);
    cr_assert_eq(e.err, 0);
    cr_assert_eq(e.len, 0);
    kb_enc_free(&e);
}

/* Random bytes through every decoder: never crash, never overread (ASan). */
Test(codec, random_bytes_never_crash)
{
    unsigned seed = 12345;
    for (int round = 0; round < 3000; round++) {
        size_t n = (size_t)(rand_r(&seed) % 64);
        uint8_t *in = malloc(n ? n : 1);
        for (size_t i = 0; i < n; i++)
            in[i] = (uint8_t)rand_r(&seed);
        /* Bias some lengths to be small so strings/blobs sometimes decode. */
        if (n >= 4 && (round & 1))
            kb_put_le32(in, (uint32_t)(rand_r(&seed) % 16));
        kb_dec_t d;
        kb_dec_init(&d, in, n);
        while (!d.err && kb_dec_left(&d)) {
            char *s;
            uint32_t bn;
            switch (rand_r(&seed) % 6) {
            case 0: kb_dec_u8(&d); break;
            case 1: kb_dec_u16(&d); break;
            case 2: kb_dec_u64(&d); break;
            case 3: kb_dec_blob(&d, &bn, 32); break;
            case 4: kb_dec_str(&d, &s, 32); free(s); break;
            default: kb_dec_u32(&d); break;
            }
            cr_assert_leq(d.pos, d.len);
        }
        free(in);
    }
}

Test(codec, empty_input)
{
    kb_dec_t d;
    kb_dec_init(&d, NULL, 0);
    cr_assert_eq(kb_dec_left(&d), 0);
    kb_dec_u8(&d);
    cr_assert_eq(d.err, -EBADMSG);
}
