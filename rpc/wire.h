/*
 * wire.h — the kembar frame (DESIGN §8).
 *
 * Every message is a 32-byte header, then `plen` bytes of encoded fields
 * (lib/codec.h, little-endian), then `blen` bytes of bulk data (write/read
 * payloads) that travel as their own iovec and are never copied into the
 * encoded part.
 *
 *   offset size field
 *   0      4    magic    'K','M','B','R' (KB_WIRE_MAGIC, little-endian u32)
 *   4      1    version  KB_WIRE_VERSION
 *   5      1    type     KB_MSG_CALL / REPLY / PING / PONG
 *   6      2    flags    reserved, 0
 *   8      8    xid      matches a reply to its call; PING/PONG echo it
 *   16     4    proc     a kb_op_t (brick fops) or a KB_PROC_* (management)
 *   20     4    status   replies: 0 or a negative errno (int32)
 *   24     4    plen     encoded field bytes   (<= KB_WIRE_PLEN_MAX)
 *   28     4    blen     bulk data bytes       (<= KB_WIRE_BLEN_MAX)
 *
 * Both lengths are checked against the limits BEFORE any allocation; a
 * violation closes that connection with a logged reason.
 */
#ifndef KB_WIRE_H
#define KB_WIRE_H

#include <stdint.h>
#include "lib/codec.h"

#define KB_WIRE_MAGIC   0x52424d4bu   /* "KMBR" read as little-endian */
#define KB_WIRE_VERSION 1
#define KB_WIRE_HDR_LEN 32
#define KB_WIRE_PLEN_MAX (4u << 20)   /* encoded fields: 4 MiB (readdir batches) */
#define KB_WIRE_BLEN_MAX (4u << 20)   /* bulk: 4 MiB, >= KB_DATA_MAX */

enum kb_msg_type { KB_MSG_CALL = 1, KB_MSG_REPLY = 2, KB_MSG_PING = 3, KB_MSG_PONG = 4 };

/* Management procedures (proc >= KB_PROC_BASE); below that proc is a kb_op_t. */
enum kb_proc {
    KB_PROC_BASE = 1000,
    /* Bind this connection to one brick. call: str volume, str brick_path,
     * str client_name, u32 volume_version; since protocol 2 also u32
     * proto_min, u32 proto_max, u64 features, 16 bytes client instance id,
     * u32 lock_lease_ms, str software_version. reply: str "ok" or the
     * reason; since protocol 2 also u32 proto (chosen), u64 features, str
     * software_version, and since kembar 0.2 the brick's 16-byte id (a
     * client on the brick's host that finds it on the brick's directory
     * reads files there: xlators/protocol/client/local_read.c). Fields a
     * side does not know are ignored. */
    KB_PROC_HANDSHAKE = 1000,
    /* Fetch a client volfile. call: str volume. reply: str volfile. */
    KB_PROC_GETSPEC = 1001,
    /* A CLI command. call: u32 argc, str argv[argc]. reply: str stdout_text.
     * status < 0: the reply's str is the one-line reason. */
    KB_PROC_CLI = 1002,
    /* Node-to-node management. call/reply as KB_PROC_CLI. argv[1] names the
     * operation (server/store.c). Since kembar 0.2 every node answers
     * "version" (no arguments) with one line of key=value fields:
     *   version=0.2.0 proto-min=1 proto-max=2 features=0x7 op-version=2
     *   brick-format=1 state-format=1
     * (the reader ignores keys it does not know, and new keys go at the
     * end). A kembar 0.1 node answers -EINVAL ("peer version: missing
     * argument"), which no later node does: it is version 0.1.0, protocol
     * 1-1, features 0, op-version 1 (lib/version.h). */
    KB_PROC_PEER = 1003,
};
#define KB_PEER_VERSION_OP "version"

/* Protocol versions, negotiated by KB_PROC_HANDSHAKE (the frame's version
 * byte stays KB_WIRE_VERSION): each side speaks the highest both know.
 * Node-to-node management calls (KB_PROC_PEER) carry no version: a node
 * asks another for its "version" (above) before using an operation the
 * other may not know. The op-version (lib/version.h) is the feature level
 * of a release as a whole; it is not negotiated per connection.
 *   1  kembar 0.1: the handshake ends after volume_version.
 *   2  instance id and lock lease: application locks belong to the client
 *      instance and outlive a connection for the lease (features/locks). */
#define KB_PROTO_MIN 1
#define KB_PROTO_MAX 2
enum kb_feature {
    KB_FEAT_LK_LEASE = 1u << 0,   /* locks keyed by instance, kept for the lease */
    KB_FEAT_XOP_LOCKED = 1u << 1, /* XATTROP KB_XOP_ADD_LOCKED (xlators/fop.h): a lock and
                                     the pre-op that needs it sent together */
    KB_FEAT_PATTR = 1u << 2,      /* replies may carry KB_RF_PATTR (xlators/fop.h): the
                                     parent's attributes after an entry op. A client
                                     announces that it decodes them; a brick sends
                                     them only then */
};
#define KB_FEATURES ((uint64_t)(KB_FEAT_LK_LEASE | KB_FEAT_XOP_LOCKED | KB_FEAT_PATTR))
#define KB_LEASE_MAX_MS 120000    /* a brick keeps a gone client's locks at most this long */

typedef struct kb_wire_hdr {
    uint32_t magic;
    uint8_t version, type;
    uint16_t flags;
    uint64_t xid;
    uint32_t proc;
    int32_t status;
    uint32_t plen, blen;
} kb_wire_hdr_t;

void kb_wire_hdr_encode(uint8_t out[KB_WIRE_HDR_LEN], const kb_wire_hdr_t *h);
/* 0, or -EBADMSG (bad magic/version/type) / -EMSGSIZE (a length over its limit),
 * with a static reason string in *why. */
int kb_wire_hdr_decode(const uint8_t in[KB_WIRE_HDR_LEN], kb_wire_hdr_t *h, const char **why);

#endif
