/*
 * fuzz_reply.c — libFuzzer target: what protocol/client does with the bytes of one reply.
 *
 * Input: byte 0 picks the op, byte 1 the status class (success or an error), then the encoded
 * reply; the last byte, when odd, says the tail after the first quarter is bulk. A hostile or
 * broken brick must not be able to crash a client: kb_reply_decode checks counts (dirents) before
 * allocating. Invariant: a reply that decodes re-encodes and decodes again to the same encoding.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "xlators/fop.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3)
        return 0;
    kb_op_t op = (kb_op_t)(data[0] % KB_FOP_MAX);
    int32_t status = data[1] & 1 ? -(int32_t)(data[1] >> 1) - 1 : (int32_t)data[1];
    bool use_bulk = data[size - 1] & 1;
    data += 2, size -= 3;
    size_t plen = use_bulk ? size / 4 : size;
    kb_buf_t *bulk = use_bulk && size > plen ? kb_buf_copy(data + plen, size - plen) : NULL;
    kb_reply_t r = { .status = status };
    kb_dec_t d;
    kb_dec_init(&d, data, plen);
    if (kb_reply_decode(&d, op, &r, bulk) == 0) {
        if (r.ndirents > KB_DIRENTS_MAX)
            abort();
        kb_enc_t e1, e2;
        kb_enc_init(&e1);
        kb_enc_init(&e2);
        kb_reply_encode(&e1, op, &r);
        kb_reply_t r2 = { .status = r.status };
        kb_dec_t d2;
        kb_dec_init(&d2, e1.p, e1.len);
        if (!e1.err) {
            if (kb_reply_decode(&d2, op, &r2, r.data) != 0)
                abort();   /* refuses what it just encoded */
            kb_reply_encode(&e2, op, &r2);
            if (!e2.err && (e1.len != e2.len || memcmp(e1.p, e2.p, e1.len) != 0))
                abort();
            kb_reply_clear(&r2);
        }
        kb_reply_t c;
        if (kb_reply_copy(&c, &r) == 0)
            kb_reply_clear(&c);
        kb_enc_free(&e1);
        kb_enc_free(&e2);
    }
    kb_reply_clear(&r);
    kb_buf_unref(bulk);
    return 0;
}
