/*
 * auth.c — the cluster key, signed management requests and the sealed key
 * exchange (auth.h). OpenSSL does every piece of cryptography: HMAC-SHA256,
 * X25519, AES-256-GCM, the random bytes; nothing here is home-made beyond
 * the framing.
 */
#include "rpc/auth.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/core_names.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#define SIGN_LABEL "kembar-mgmt-1"
#define SEAL_LABEL "kembar-kx-1"

/* HMAC-SHA256 of the N parts under KEY; false on any OpenSSL failure. */
static bool hmac(const uint8_t *key, size_t klen, const void *const *part, const size_t *len, int n,
                 uint8_t out[32])
{
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *c = mac ? EVP_MAC_CTX_new(mac) : NULL;
    OSSL_PARAM params[] = { OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
                            OSSL_PARAM_construct_end() };
    size_t olen = 0;
    bool ok = c && EVP_MAC_init(c, key, klen, params) == 1;
    for (int i = 0; ok && i < n; i++)
        ok = !len[i] || EVP_MAC_update(c, part[i], len[i]) == 1;
    ok = ok && EVP_MAC_final(c, out, &olen, 32) == 1 && olen == 32;
    EVP_MAC_CTX_free(c);
    EVP_MAC_free(mac);
    return ok;
}

/* ---------------- hex ---------------- */

void kb_hex(const uint8_t *p, size_t n, char *out)
{
    static const char d[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = d[p[i] >> 4];
        out[2 * i + 1] = d[p[i] & 15];
    }
    out[2 * n] = '\0';
}

static int nib(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
         : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

int kb_unhex(const char *s, uint8_t *out, size_t n)
{
    if (!s || strlen(s) != 2 * n)
        return -EINVAL;
    for (size_t i = 0; i < n; i++) {
        int hi = nib(s[2 * i]), lo = nib(s[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -EINVAL;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

/* ---------------- the key file ---------------- */

int kb_auth_key_store(const char *path, const uint8_t key[KB_AUTH_KEY_LEN], char *err, size_t errlen)
{
    char tmp[4096], text[2 * KB_AUTH_KEY_LEN + 2];
    if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp)) {
        snprintf(err, errlen, "%s: path too long", path);
        return -ENAMETOOLONG;
    }
    kb_hex(key, KB_AUTH_KEY_LEN, text);
    text[2 * KB_AUTH_KEY_LEN] = '\n';
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    int rc = 0;
    if (fd < 0 || fchmod(fd, 0600) || write(fd, text, sizeof(text) - 1) != (ssize_t)sizeof(text) - 1 ||
        fsync(fd))
        rc = -errno;
    if (fd >= 0 && close(fd) && !rc)
        rc = -errno;
    if (!rc && rename(tmp, path))
        rc = -errno;
    OPENSSL_cleanse(text, sizeof(text));
    if (rc) {
        unlink(tmp);
        snprintf(err, errlen, "cannot write the cluster key %s: %s", path, strerror(-rc));
    }
    return rc;
}

int kb_auth_key_load(const char *path, uint8_t key[KB_AUTH_KEY_LEN], bool create, char *err, size_t errlen)
{
    char text[2 * KB_AUTH_KEY_LEN + 8];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT && create) {
        if (RAND_bytes(key, KB_AUTH_KEY_LEN) != 1) {
            snprintf(err, errlen, "no random bytes for a cluster key");
            return -EIO;
        }
        return kb_auth_key_store(path, key, err, errlen);
    }
    if (fd < 0) {
        int e = errno;
        snprintf(err, errlen, "cannot read the cluster key %s: %s", path, strerror(e));
        return -e;
    }
    ssize_t n = read(fd, text, sizeof(text) - 1);
    close(fd);
    if (n >= 2 * KB_AUTH_KEY_LEN)
        text[2 * KB_AUTH_KEY_LEN] = '\0';
    int rc = n >= 2 * KB_AUTH_KEY_LEN ? kb_unhex(text, key, KB_AUTH_KEY_LEN) : -EINVAL;
    OPENSSL_cleanse(text, sizeof(text));
    if (rc)
        snprintf(err, errlen, "%s is not a kembar cluster key (64 hex digits)", path);
    return rc;
}

/* ---------------- signed requests ---------------- */

static void sign_mac(const uint8_t key[KB_AUTH_KEY_LEN], uint32_t proc, const uint8_t *body, size_t blen,
                     const uint8_t tn[24], uint8_t mac[32])
{
    uint8_t p4[4];
    kb_put_le32(p4, proc);
    const void *part[] = { SIGN_LABEL, p4, body, tn };
    size_t len[] = { sizeof(SIGN_LABEL) - 1, 4, blen, 24 };
    if (!hmac(key, KB_AUTH_KEY_LEN, part, len, 4, mac))
        memset(mac, 0, 32);      /* verifies against nothing */
}

void kb_auth_sign(const uint8_t key[KB_AUTH_KEY_LEN], uint32_t proc, kb_enc_t *e)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t ms = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
    uint8_t tn[24];
    for (int i = 0; i < 8; i++)
        tn[i] = (uint8_t)(ms >> (8 * i));
    if (RAND_bytes(tn + 8, 16) != 1)
        memset(tn + 8, 0, 16);   /* a zero nonce is refused as a replay on its second use */
    uint8_t mac[32];
    sign_mac(key, proc, e->p, e->len, tn, mac);
    kb_enc_u32(e, KB_AUTH_MAGIC);
    kb_enc_bytes(e, tn, sizeof(tn));
    kb_enc_bytes(e, mac, sizeof(mac));
}

int kb_auth_check(kb_auth_replay_t *rp, const uint8_t key[KB_AUTH_KEY_LEN], uint32_t proc,
                  const uint8_t *payload, size_t plen, uint64_t now_ms)
{
    if (plen < KB_AUTH_BLOCK)
        return -ENOKEY;
    const uint8_t *b = payload + plen - KB_AUTH_BLOCK;
    if (kb_get_le32(b) != KB_AUTH_MAGIC)
        return -ENOKEY;
    uint8_t mac[32];
    sign_mac(key, proc, payload, plen - KB_AUTH_BLOCK, b + 4, mac);
    if (CRYPTO_memcmp(mac, b + 28, 32) != 0)
        return -EACCES;
    uint64_t ms = 0;
    for (int i = 7; i >= 0; i--)
        ms = ms << 8 | b[4 + i];
    if (ms + KB_AUTH_SKEW_MS < now_ms || ms > now_ms + KB_AUTH_SKEW_MS)
        return -ETIME;
    for (unsigned i = 0; i < KB_AUTH_REPLAY; i++)
        if (rp->seen[i].ms && rp->seen[i].ms + 2 * KB_AUTH_SKEW_MS >= now_ms &&
            memcmp(rp->seen[i].nonce, b + 12, 16) == 0)
            return -EALREADY;
    memcpy(rp->seen[rp->next].nonce, b + 12, 16);
    rp->seen[rp->next].ms = now_ms;
    rp->next = (rp->next + 1) % KB_AUTH_REPLAY;
    return 0;
}

/* ---------------- key exchange ---------------- */

int kb_kx_new(kb_kx_t *kx)
{
    memset(kx, 0, sizeof(*kx));
    EVP_PKEY_CTX *pc = EVP_PKEY_CTX_new_id(EVP_PKEY_X25519, NULL);
    EVP_PKEY *k = NULL;
    size_t len = KB_KX_PUB;
    int ok = pc && EVP_PKEY_keygen_init(pc) == 1 && EVP_PKEY_keygen(pc, &k) == 1 &&
             EVP_PKEY_get_raw_public_key(k, kx->pub, &len) == 1 && len == KB_KX_PUB &&
             RAND_bytes(kx->nonce, KB_KX_NONCE) == 1;
    EVP_PKEY_CTX_free(pc);
    if (!ok) {
        EVP_PKEY_free(k);
        return -EIO;
    }
    kx->pkey = k;
    return 0;
}

void kb_kx_free(kb_kx_t *kx)
{
    EVP_PKEY_free(kx->pkey);
    kx->pkey = NULL;
}

void kb_kx_transcript(uint8_t out[KB_KX_TRANSCRIPT], const char *purpose, const uint8_t ipub[KB_KX_PUB],
                      const uint8_t inonce[KB_KX_NONCE], const uint8_t rpub[KB_KX_PUB],
                      const uint8_t rnonce[KB_KX_NONCE])
{
    memset(out, 0, 16);
    memcpy(out, purpose, strnlen(purpose, 15));
    memcpy(out + 16, ipub, KB_KX_PUB);
    memcpy(out + 16 + KB_KX_PUB, inonce, KB_KX_NONCE);
    memcpy(out + 16 + KB_KX_PUB + KB_KX_NONCE, rpub, KB_KX_PUB);
    memcpy(out + 16 + 2 * KB_KX_PUB + KB_KX_NONCE, rnonce, KB_KX_NONCE);
}

void kb_kx_proof(const uint8_t *secret, size_t slen, const char *label, const uint8_t *t, size_t tlen,
                 const uint8_t *extra, size_t elen, uint8_t out[32])
{
    const void *part[] = { label, t, extra };
    size_t len[] = { strlen(label), tlen, elen };
    if (!hmac(secret, slen, part, len, 3, out))
        RAND_bytes(out, 32);     /* proves nothing */
}

bool kb_kx_proof_ok(const uint8_t *secret, size_t slen, const char *label, const uint8_t *t, size_t tlen,
                    const uint8_t *extra, size_t elen, const uint8_t proof[32])
{
    uint8_t want[32];
    kb_kx_proof(secret, slen, label, t, tlen, extra, elen, want);
    return CRYPTO_memcmp(want, proof, 32) == 0;
}

/* The AES key both sides derive: HMAC(X25519 secret, label | transcript). */
static int seal_key(const kb_kx_t *mine, const uint8_t peer_pub[KB_KX_PUB], const uint8_t t[KB_KX_TRANSCRIPT],
                    uint8_t out[32])
{
    EVP_PKEY *peer = EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, NULL, peer_pub, KB_KX_PUB);
    EVP_PKEY_CTX *pc = peer && mine->pkey ? EVP_PKEY_CTX_new(mine->pkey, NULL) : NULL;
    uint8_t secret[32];
    size_t slen = sizeof(secret);
    int ok = pc && EVP_PKEY_derive_init(pc) == 1 && EVP_PKEY_derive_set_peer(pc, peer) == 1 &&
             EVP_PKEY_derive(pc, secret, &slen) == 1 && slen == sizeof(secret);
    EVP_PKEY_CTX_free(pc);
    EVP_PKEY_free(peer);
    if (ok)
        kb_kx_proof(secret, slen, SEAL_LABEL, t, KB_KX_TRANSCRIPT, NULL, 0, out);
    OPENSSL_cleanse(secret, sizeof(secret));
    return ok ? 0 : -EPROTO;
}

int kb_kx_seal(const kb_kx_t *mine, const uint8_t peer_pub[KB_KX_PUB], const uint8_t t[KB_KX_TRANSCRIPT],
               const uint8_t key[KB_AUTH_KEY_LEN], uint8_t out[KB_KX_SEALED])
{
    uint8_t k[32];
    if (seal_key(mine, peer_pub, t, k) || RAND_bytes(out, 12) != 1)
        return -EPROTO;
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int n = 0, ok = c && EVP_EncryptInit_ex(c, EVP_aes_256_gcm(), NULL, k, out) == 1 &&
                    EVP_EncryptUpdate(c, NULL, &n, t, KB_KX_TRANSCRIPT) == 1 &&
                    EVP_EncryptUpdate(c, out + 12, &n, key, KB_AUTH_KEY_LEN) == 1 && n == KB_AUTH_KEY_LEN &&
                    EVP_EncryptFinal_ex(c, out + 12 + n, &n) == 1 &&
                    EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, 16, out + 12 + KB_AUTH_KEY_LEN) == 1;
    EVP_CIPHER_CTX_free(c);
    OPENSSL_cleanse(k, sizeof(k));
    return ok ? 0 : -EPROTO;
}

int kb_kx_open(const kb_kx_t *mine, const uint8_t peer_pub[KB_KX_PUB], const uint8_t t[KB_KX_TRANSCRIPT],
               const uint8_t in[KB_KX_SEALED], uint8_t key[KB_AUTH_KEY_LEN])
{
    uint8_t k[32], tag[16];
    if (seal_key(mine, peer_pub, t, k))
        return -EPROTO;
    memcpy(tag, in + 12 + KB_AUTH_KEY_LEN, 16);
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int n = 0, ok = c && EVP_DecryptInit_ex(c, EVP_aes_256_gcm(), NULL, k, in) == 1 &&
                    EVP_DecryptUpdate(c, NULL, &n, t, KB_KX_TRANSCRIPT) == 1 &&
                    EVP_DecryptUpdate(c, key, &n, in + 12, KB_AUTH_KEY_LEN) == 1 && n == KB_AUTH_KEY_LEN &&
                    EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, 16, tag) == 1 &&
                    EVP_DecryptFinal_ex(c, key + n, &n) == 1;
    EVP_CIPHER_CTX_free(c);
    OPENSSL_cleanse(k, sizeof(k));
    if (!ok)
        OPENSSL_cleanse(key, KB_AUTH_KEY_LEN);
    return ok ? 0 : -EACCES;
}
