/*
 * wire.c — encode/decode of the 32-byte frame header (rpc/wire.h).
 *
 * Decoding validates everything the header alone can tell (magic, version,
 * type, both lengths against their limits) so the transport can refuse a
 * frame before allocating a byte for it. flags are reserved: ignored on
 * input so a later version may use them.
 */
#include "rpc/wire.h"
#include "lib/common.h"

void kb_wire_hdr_encode(uint8_t out[KB_WIRE_HDR_LEN], const kb_wire_hdr_t *h)
{
    kb_put_le32(out + 0, h->magic);
    out[4] = h->version;
    out[5] = h->type;
    out[6] = (uint8_t)h->flags;
    out[7] = (uint8_t)(h->flags >> 8);
    kb_put_le64(out + 8, h->xid);
    kb_put_le32(out + 16, h->proc);
    kb_put_le32(out + 20, (uint32_t)h->status);
    kb_put_le32(out + 24, h->plen);
    kb_put_le32(out + 28, h->blen);
}

int kb_wire_hdr_decode(const uint8_t in[KB_WIRE_HDR_LEN], kb_wire_hdr_t *h, const char **why)
{
    static const char *dummy;
    if (!why)
        why = &dummy;
    h->magic = kb_get_le32(in + 0);
    h->version = in[4];
    h->type = in[5];
    h->flags = (uint16_t)(in[6] | in[7] << 8);
    h->xid = kb_get_le64(in + 8);
    h->proc = kb_get_le32(in + 16);
    h->status = (int32_t)kb_get_le32(in + 20);
    h->plen = kb_get_le32(in + 24);
    h->blen = kb_get_le32(in + 28);
    *why = NULL;
    if (h->magic != KB_WIRE_MAGIC) {
        *why = "bad magic (not a kembar peer)";
        return -EBADMSG;
    }
    if (h->version != KB_WIRE_VERSION) {
        *why = "unsupported protocol version";
        return -EBADMSG;
    }
    if (h->type < KB_MSG_CALL || h->type > KB_MSG_PONG) {
        *why = "unknown message type";
        return -EBADMSG;
    }
    if (h->plen > KB_WIRE_PLEN_MAX) {
        *why = "payload length over the limit";
        return -EMSGSIZE;
    }
    if (h->blen > KB_WIRE_BLEN_MAX) {
        *why = "bulk length over the limit";
        return -EMSGSIZE;
    }
    return 0;
}
