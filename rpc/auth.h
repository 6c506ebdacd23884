/*
 * auth.h — who may run management procedures (KB_PROC_CLI, KB_PROC_PEER):
 * the cluster key, signed requests, and the sealed hand-over of the key to
 * a joining node (DESIGN §10 "Trust"; the model is in the README, Security).
 *
 * 1. The cluster key: 32 random bytes every member holds, in
 *    <state-dir>/cluster.key (mode 0600, 64 hex digits and a newline). A
 *    node makes one at its first start; joining a cluster replaces it.
 *
 * 2. A signed request: the argv payload of a CLI/PEER call followed by an
 *    auth block (servers that do not know it ignore trailing bytes):
 *
 *    offset size
 *    0      4    magic  KB_AUTH_MAGIC (LE)
 *    4      8    time   signer's clock, ms since the epoch (LE)
 *    12     16   nonce  random
 *    28     32   mac    HMAC-SHA256(key, "kembar-mgmt-1" | proc (LE u32) |
 *                        the payload before the block | time | nonce)
 *    = 60 bytes (KB_AUTH_BLOCK).
 *
 *    A receiver accepts it when the mac verifies (constant time), the time
 *    is within KB_AUTH_SKEW_MS of its own clock, and the nonce was not seen
 *    in that window (a replay cache). Nothing in the block is secret.
 *
 * 3. Key exchange (kx): X25519 with fresh keys on both sides, both proving
 *    knowledge of an authentication secret (a one-time join token, or the
 *    current cluster key for a rotation) by an HMAC over the transcript
 *    (purpose | pubA | pubB | nonceA | nonceB). The cluster key travels
 *    sealed with AES-256-GCM under HMAC-SHA256(X25519 secret, "kembar-kx-1"
 *    | transcript), transcript as AAD: a passive listener — even one that
 *    holds the old key — learns nothing.
 */
#ifndef KB_RPC_AUTH_H
#define KB_RPC_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/codec.h"

#define KB_AUTH_KEY_LEN   32
#define KB_AUTH_MAGIC     0x3141424bu     /* "KBA1" read as little-endian */
#define KB_AUTH_BLOCK     60
#define KB_AUTH_SKEW_MS   (120 * 1000)    /* clocks of members agree within 2 minutes (NTP) */
#define KB_AUTH_REPLAY    4096            /* nonces remembered */

/* The key file at PATH into KEY. With CREATE, a missing file is made (new
 * random key, 0600). 0, or -errno with a one-line reason in err. */
int kb_auth_key_load(const char *path, uint8_t key[KB_AUTH_KEY_LEN], bool create, char *err, size_t errlen);
/* Write KEY to PATH atomically (0600). */
int kb_auth_key_store(const char *path, const uint8_t key[KB_AUTH_KEY_LEN], char *err, size_t errlen);

/* Append an auth block for PROC over the bytes already in E. */
void kb_auth_sign(const uint8_t key[KB_AUTH_KEY_LEN], uint32_t proc, kb_enc_t *e);

typedef struct kb_auth_replay {
    struct { uint8_t nonce[16]; uint64_t ms; } seen[KB_AUTH_REPLAY];
    unsigned next;
} kb_auth_replay_t;

/* Check the auth block at the end of PAYLOAD (PLEN bytes) for PROC at time
 * NOW_MS. 0: signed by KEY (recorded in RP against replays); -ENOKEY: no
 * block; -EACCES: wrong key or forged; -ETIME: clock skew; -EALREADY: a
 * replay. */
int kb_auth_check(kb_auth_replay_t *rp, const uint8_t key[KB_AUTH_KEY_LEN], uint32_t proc,
                  const uint8_t *payload, size_t plen, uint64_t now_ms);

/* ---- key exchange ---- */

#define KB_KX_PUB    32
#define KB_KX_NONCE  16
#define KB_KX_SEALED (12 + KB_AUTH_KEY_LEN + 16)   /* iv | ciphertext | tag */
#define KB_KX_TRANSCRIPT (16 + 2 * KB_KX_PUB + 2 * KB_KX_NONCE)

typedef struct kb_kx {
    void *pkey;                  /* EVP_PKEY (X25519), ours */
    uint8_t pub[KB_KX_PUB];
    uint8_t nonce[KB_KX_NONCE];
} kb_kx_t;

int kb_kx_new(kb_kx_t *kx);
void kb_kx_free(kb_kx_t *kx);
/* The transcript both sides sign: PURPOSE (at most 15 chars) | the
 * initiator's pub and nonce | the responder's. */
void kb_kx_transcript(uint8_t out[KB_KX_TRANSCRIPT], const char *purpose, const uint8_t ipub[KB_KX_PUB],
                      const uint8_t inonce[KB_KX_NONCE], const uint8_t rpub[KB_KX_PUB],
                      const uint8_t rnonce[KB_KX_NONCE]);
/* HMAC-SHA256(SECRET, LABEL | T | EXTRA) into out. */
void kb_kx_proof(const uint8_t *secret, size_t slen, const char *label, const uint8_t *t, size_t tlen,
                 const uint8_t *extra, size_t elen, uint8_t out[32]);
bool kb_kx_proof_ok(const uint8_t *secret, size_t slen, const char *label, const uint8_t *t, size_t tlen,
                    const uint8_t *extra, size_t elen, const uint8_t proof[32]);
int kb_kx_seal(const kb_kx_t *mine, const uint8_t peer_pub[KB_KX_PUB], const uint8_t t[KB_KX_TRANSCRIPT],
               const uint8_t key[KB_AUTH_KEY_LEN], uint8_t out[KB_KX_SEALED]);
int kb_kx_open(const kb_kx_t *mine, const uint8_t peer_pub[KB_KX_PUB], const uint8_t t[KB_KX_TRANSCRIPT],
               const uint8_t in[KB_KX_SEALED], uint8_t key[KB_AUTH_KEY_LEN]);

/* Hex helpers: 0 / -EINVAL (wrong length or digit). */
void kb_hex(const uint8_t *p, size_t n, char *out);       /* out: 2n + 1 */
int kb_unhex(const char *s, uint8_t *out, size_t n);

#endif
