/*
 * auth_test.c — rpc/auth.c: signed management requests (forged, replayed,
 * out of the clock window, another cluster's key), the key file, and the
 * key exchange (both proofs, the sealed key opening only for the right
 * peer and transcript).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "rpc/auth.h"

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void signed_req(const uint8_t *key, uint32_t proc, kb_enc_t *e)
{
    kb_enc_init(e);
    kb_enc_u32(e, 2);
    kb_enc_str(e, "volume");
    kb_enc_str(e, "list");
    kb_auth_sign(key, proc, e);
}

Test(auth, signed_requests_verify_once_and_only_with_the_key)
{
    uint8_t k1[KB_AUTH_KEY_LEN], k2[KB_AUTH_KEY_LEN];
    memset(k1, 1, sizeof(k1));
    memset(k2, 2, sizeof(k2));
    static kb_auth_replay_t rp;
    kb_enc_t e;
    signed_req(k1, 1002, &e);
    uint64_t now = now_ms();
    cr_assert_eq(kb_auth_check(&rp, k2, 1002, e.p, e.len, now), -EACCES, "another cluster's key");
    cr_assert_eq(kb_auth_check(&rp, k1, 1003, e.p, e.len, now), -EACCES, "signed for another procedure");
    cr_assert_eq(kb_auth_check(&rp, k1, 1002, e.p, e.len, now + KB_AUTH_SKEW_MS + 1000), -ETIME);
    cr_assert_eq(kb_auth_check(&rp, k1, 1002, e.p, e.len, now), 0);
    cr_assert_eq(kb_auth_check(&rp, k1, 1002, e.p, e.len, now), -EALREADY, "a replay");
    /* Any flipped byte of the request or the block is refused. */
    for (size_t i = 0; i < e.len; i++) {
        kb_enc_t f;
        signed_req(k1, 1002, &f);
        f.p[i] ^= 0x20;
        int rc = kb_auth_check(&rp, k1, 1002, f.p, f.len, now);
        cr_assert(rc == -EACCES || rc == -ENOKEY, "byte %zu flipped: %d", i, rc);
        kb_enc_free(&f);
    }
    cr_assert_eq(kb_auth_check(&rp, k1, 1002, e.p, e.len - KB_AUTH_BLOCK, now), -ENOKEY, "unsigned");
    cr_assert_eq(kb_auth_check(&rp, k1, 1002, e.p, 3, now), -ENOKEY, "short");
    kb_enc_free(&e);
}

Test(auth, key_file_is_made_private_and_read_back)
{
    char dir[] = "/var/tmp/kb-auth-XXXXXX", path[64], err[256];
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/cluster.key", dir);
    uint8_t a[KB_AUTH_KEY_LEN], b[KB_AUTH_KEY_LEN];
    cr_assert_eq(kb_auth_key_load(path, a, false, err, sizeof(err)), -ENOENT);
    cr_assert_eq(kb_auth_key_load(path, a, true, err, sizeof(err)), 0, "%s", err);
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0600);
    cr_assert_eq(kb_auth_key_load(path, b, false, err, sizeof(err)), 0);
    cr_assert_eq(memcmp(a, b, sizeof(a)), 0);
    FILE *f = fopen(path, "w");
    fputs("not a key\n", f);
    fclose(f);
    cr_assert_eq(kb_auth_key_load(path, b, false, err, sizeof(err)), -EINVAL);
    cr_assert(strstr(err, "64 hex digits"), "%s", err);
    unlink(path);
    rmdir(dir);
}

Test(auth, key_exchange_hands_the_key_to_the_right_peer_only)
{
    kb_kx_t i, r, eve;
    cr_assert_eq(kb_kx_new(&i), 0);
    cr_assert_eq(kb_kx_new(&r), 0);
    cr_assert_eq(kb_kx_new(&eve), 0);
    uint8_t t[KB_KX_TRANSCRIPT], key[KB_AUTH_KEY_LEN], got[KB_AUTH_KEY_LEN], sealed[KB_KX_SEALED];
    uint8_t token[16] = "0123456789abcdef", wrong[16] = "0123456789abcdeX", proof[32];
    memset(key, 0x5a, sizeof(key));
    kb_kx_transcript(t, "join", i.pub, i.nonce, r.pub, r.nonce);
    kb_kx_proof(token, 16, "kx-offer", t, sizeof(t), NULL, 0, proof);
    cr_assert(kb_kx_proof_ok(token, 16, "kx-offer", t, sizeof(t), NULL, 0, proof));
    cr_assert(!kb_kx_proof_ok(wrong, 16, "kx-offer", t, sizeof(t), NULL, 0, proof), "a wrong token proves nothing");
    cr_assert(!kb_kx_proof_ok(token, 16, "kx-install", t, sizeof(t), NULL, 0, proof), "labels are bound");

    cr_assert_eq(kb_kx_seal(&i, r.pub, t, key, sealed), 0);
    cr_assert_eq(kb_kx_open(&r, i.pub, t, sealed, got), 0);
    cr_assert_eq(memcmp(got, key, sizeof(key)), 0);
    cr_assert_eq(kb_kx_open(&eve, i.pub, t, sealed, got), -EACCES, "another private key cannot open it");
    uint8_t t2[KB_KX_TRANSCRIPT];
    kb_kx_transcript(t2, "rotate", i.pub, i.nonce, r.pub, r.nonce);
    cr_assert_eq(kb_kx_open(&r, i.pub, t2, sealed, got), -EACCES, "bound to its transcript");
    sealed[20] ^= 1;
    cr_assert_eq(kb_kx_open(&r, i.pub, t, sealed, got), -EACCES, "tampered");
    kb_kx_free(&i);
    kb_kx_free(&r);
    kb_kx_free(&eve);
}

Test(auth, hex_round_trip_refuses_bad_digits)
{
    uint8_t in[4] = { 0, 0xab, 0x10, 0xff }, out[4];
    char s[9];
    kb_hex(in, 4, s);
    cr_assert_str_eq(s, "00ab10ff");
    cr_assert_eq(kb_unhex(s, out, 4), 0);
    cr_assert_eq(memcmp(in, out, 4), 0);
    cr_assert_eq(kb_unhex("00ab10f", out, 4), -EINVAL);
    cr_assert_eq(kb_unhex("00ab10fg", out, 4), -EINVAL);
}
