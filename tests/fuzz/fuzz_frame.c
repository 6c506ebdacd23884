/*
 * fuzz_frame.c — libFuzzer target: what a brick does with the bytes of one call (DESIGN §8).
 *
 * Input: a 32-byte frame header, then bytes split into the encoded part (the header's plen,
 * clipped to what is there) and the bulk (the rest). Like protocol/server, the header is decoded
 * first (kb_wire_hdr_decode); a sound header with a brick fop goes on to kb_cred_decode +
 * kb_args_decode. Nothing may crash, leak, read out of bounds or allocate beyond the limits.
 * Invariant checked: arguments that decode re-encode to bytes that decode to the same
 * re-encoding (the codec is a fixed point after one round), and a decoded name is never longer
 * than KB_NAME_MAX nor holds a NUL.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "rpc/wire.h"
#include "xlators/fop.h"

static void check_names(kb_op_t op, const kb_args_t *a)
{
    if (a->name && strlen(a->name) > KB_NAME_MAX)
        abort();
    if (a->name2 && strlen(a->name2) > (op == KB_FOP_SYMLINK ? KB_PATH_MAX : KB_NAME_MAX))
        abort();
}

static void roundtrip(kb_op_t op, const kb_args_t *a)
{
    kb_enc_t e1, e2;
    kb_enc_init(&e1);
    kb_enc_init(&e2);
    kb_args_encode(&e1, op, a);
    kb_args_t b;
    kb_dec_t d;
    kb_dec_init(&d, e1.p, e1.len);
    if (!e1.err && kb_args_decode(&d, op, &b, a->data) == 0) {
        kb_args_encode(&e2, op, &b);
        if (!e2.err && (e1.len != e2.len || memcmp(e1.p, e2.p, e1.len) != 0))
            abort();   /* encode(decode(x)) is not stable */
        kb_args_clear(&b);
    } else if (!e1.err) {
        abort();       /* the codec refuses what it just encoded */
    }
    kb_enc_free(&e1);
    kb_enc_free(&e2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < KB_WIRE_HDR_LEN)
        return 0;
    kb_wire_hdr_t h;
    const char *why = NULL;
    if (kb_wire_hdr_decode(data, &h, &why) != 0) {
        if (!why)
            abort();   /* a refusal always says why (it is logged) */
        return 0;
    }
    if (h.plen > KB_WIRE_PLEN_MAX || h.blen > KB_WIRE_BLEN_MAX)
        abort();       /* decode accepted a length over its limit */
    const uint8_t *p = data + KB_WIRE_HDR_LEN;
    size_t left = size - KB_WIRE_HDR_LEN, plen = h.plen < left ? h.plen : left;
    kb_buf_t *bulk = left > plen ? kb_buf_copy(p + plen, left - plen) : NULL;
    kb_op_t op = (kb_op_t)(h.proc % KB_FOP_MAX);
    kb_dec_t d;
    kb_cred_t cred;
    kb_args_t a;
    kb_dec_init(&d, p, plen);
    kb_cred_decode(&d, &cred);
    if (!d.err && kb_args_decode(&d, op, &a, bulk) == 0) {
        check_names(op, &a);
        (void)kb_args_uses_fd(op, &a);
        kb_args_t c;
        if (kb_args_copy(&c, &a) == 0)
            kb_args_clear(&c);
        roundtrip(op, &a);
        kb_args_clear(&a);
    }
    kb_buf_unref(bulk);
    return 0;
}
