/*
 * trust.c — who may run management commands on this node (DESIGN §10,
 * README "Security"), and how a node joins the cluster or leaves it.
 *
 * A CLI or PEER call is carried out only when one of these holds:
 *   1. it came over the local socket <state-dir>/kembard.sock from uid 0
 *      (SO_PEERCRED), or over TCP loopback from a socket owned by uid 0
 *      (the kernel's socket table: rpc_conn_peer_uid). Root on this node.
 *   2. it came over TLS with a certificate the node's CA signed (--tls-dir;
 *      the listener checks the certificate both ways).
 *   3. it carries an auth block (rpc/auth.h) signed with the cluster key.
 * The same key marks a node's own clients (heal daemon, rebalance): their
 * brick handshake carries an auth block, and a member's client is not
 * subject to a volume's auth.allow / auth.reject (kbd_trust_signed).
 * Everyone else gets one line ("not a member of this cluster ...") and the
 * attempt is logged with the address; from an address that failed
 * TRUST_MAX_FAILS times within TRUST_WINDOW_MS, everything is refused
 * without checking for TRUST_BAN_MS (logged once).
 *
 * The cluster key lives in <state-dir>/cluster.key (0600). A new node makes
 * its own; it becomes a member by receiving the cluster's key:
 *   on the new node     kembar peer token          (prints a one-time token)
 *   on a member         kembar peer probe HOST[:PORT] TOKEN
 * The member and the new node run a key exchange (auth.h §3) in which both
 * prove they know the token, and the key travels sealed. A node leaves with
 *   on a member         kembar peer detach HOST[:PORT]
 * which makes a new cluster key and hands it, by the same exchange proved
 * with the old key, to every other member the node knows of (its peers file
 * and the nodes of its volumes); the detached node keeps only a key nobody
 * accepts any more. The two PEER operations of the exchange (kx-offer,
 * kx-install) are the only management calls taken unsigned: they carry
 * their own proofs.
 *
 * State: one per kembard process (the rpc/sync signing key is process-wide
 * too). mu guards everything here; the loop thread (requests, exchanges)
 * and the management thread (peer verbs) both come in.
 */
#include <arpa/inet.h>
#include <pthread.h>
#include <stdio.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "lib/log.h"
#include "rpc/auth.h"
#include "rpc/sync.h"
#include "rpc/wire.h"
#include "server/store.h"
#include "server/trust.h"

#define TRUST_MAX_FAILS  5
#define TRUST_WINDOW_MS  60000
#define TRUST_BAN_MS     60000
#define TRUST_NFAIL      64
#define TOKEN_LEN        16
#define TOKEN_TTL_MS     (15 * 60 * 1000)
#define KX_PENDING       8
#define KX_TTL_MS        60000

struct kx_pending {
    bool live;
    char purpose[16];
    kb_kx_t kx;                      /* ours (the responder's) */
    uint8_t t[KB_KX_TRANSCRIPT];
    uint64_t expires_ms;
};

typedef struct kbd_trust {
    pthread_mutex_t mu;
    char *key_path, *peers_path;
    uint8_t key[KB_AUTH_KEY_LEN];
    kb_auth_replay_t replay;
    struct { uint8_t tok[TOKEN_LEN]; uint64_t expires_ms; } token;
    struct kx_pending kx[KX_PENDING];
    struct { char addr[64]; unsigned fails; uint64_t first_ms, banned_until; } fail[TRUST_NFAIL];
    unsigned fail_next;
} kbd_trust_t;

static kbd_trust_t *trust;           /* this process's (one kembard per process) */

static uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

int kbd_trust_init(kbd_t *d, char *err, size_t errlen)
{
    kbd_trust_t *t = kb_zalloc(sizeof(*t));
    if (!t || asprintf(&t->key_path, "%s/cluster.key", d->state_dir) < 0 ||
        asprintf(&t->peers_path, "%s/peers", d->state_dir) < 0) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    pthread_mutex_init(&t->mu, NULL);
    int rc = kb_auth_key_load(t->key_path, t->key, true, err, errlen);
    if (rc)
        return rc;
    rpc_sync_set_auth_key(t->key);
    trust = t;
    return 0;
}

/* ---------------- refusals and their rate limit ---------------- */

/* Bare address of a peer string ("1.2.3.4:567", "[::1]:5", "unix"). */
static void bare_addr(const char *peer, char *out, size_t n)
{
    snprintf(out, n, "%s", peer);
}

static int fail_slot_locked(const char *addr, uint64_t now)
{
    for (int i = 0; i < TRUST_NFAIL; i++)
        if (strcmp(trust->fail[i].addr, addr) == 0)
            return i;
    int i = (int)(trust->fail_next++ % TRUST_NFAIL);
    snprintf(trust->fail[i].addr, sizeof(trust->fail[i].addr), "%s", addr);
    trust->fail[i].fails = 0;
    trust->fail[i].first_ms = now;
    trust->fail[i].banned_until = 0;
    return i;
}

static bool banned(const char *addr, uint64_t now)
{
    bool b = false;
    pthread_mutex_lock(&trust->mu);
    for (int i = 0; i < TRUST_NFAIL; i++)
        if (strcmp(trust->fail[i].addr, addr) == 0 && trust->fail[i].banned_until > now)
            b = true;
    pthread_mutex_unlock(&trust->mu);
    return b;
}

static void note_failure(const char *addr, const char *why, uint64_t now)
{
    pthread_mutex_lock(&trust->mu);
    int i = fail_slot_locked(addr, now);
    if (now - trust->fail[i].first_ms > TRUST_WINDOW_MS) {
        trust->fail[i].fails = 0;
        trust->fail[i].first_ms = now;
    }
    unsigned n = ++trust->fail[i].fails;
    bool ban = n == TRUST_MAX_FAILS;
    if (ban)
        trust->fail[i].banned_until = now + TRUST_BAN_MS;
    pthread_mutex_unlock(&trust->mu);
    if (n < TRUST_MAX_FAILS)
        kb_warn("trust", "management command from %s refused: %s", addr, why);
    else if (ban)
        kb_warn("trust", "management commands from %s refused for %d s: %d failed attempts in %d s (last: %s)",
                addr, TRUST_BAN_MS / 1000, TRUST_MAX_FAILS, TRUST_WINDOW_MS / 1000, why);
}

/* ---------------- the check ---------------- */

static bool unsigned_ok(uint32_t proc, const uint8_t *payload, size_t plen)
{
    if (proc != KB_PROC_PEER)
        return false;
    /* argv[1] of a PEER call: the key exchange carries its own proofs. */
    kb_dec_t dec;
    kb_dec_init(&dec, payload, plen);
    uint32_t n = kb_dec_u32(&dec);
    char *a0 = NULL, *a1 = NULL;
    kb_dec_str(&dec, &a0, 64);
    kb_dec_str(&dec, &a1, 64);
    bool ok = !dec.err && n >= 2 && a1 && (strcmp(a1, "kx-offer") == 0 || strcmp(a1, "kx-install") == 0);
    free(a0);
    free(a1);
    return ok;
}

int kbd_trust_check(const kbd_trust_req_t *q, const char **why)
{
    *why = NULL;
    if (q->local_root || q->tls_member)
        return 0;
    if (!trust) {
        *why = "this node has no cluster key";
        return -EACCES;
    }
    uint64_t now = wall_ms();
    char addr[64];
    bare_addr(q->peer, addr, sizeof(addr));
    /* The key exchange first: it proves itself (a wrong token fails there, and
     * guessing a 128-bit token offline is hopeless), and a member refused a few
     * times by a node that was not yet one must still be able to make it join. */
    if (unsigned_ok(q->proc, q->payload, q->plen))
        return 0;
    if (banned(addr, now)) {
        *why = "too many failed attempts from this address: try again in a minute";
        return -EACCES;
    }
    pthread_mutex_lock(&trust->mu);
    int rc = kb_auth_check(&trust->replay, trust->key, q->proc, q->payload, q->plen, now);
    pthread_mutex_unlock(&trust->mu);
    if (rc == 0)
        return 0;
    *why = rc == -ENOKEY ? "not a member of this cluster (unsigned request; see 'kembar peer probe')"
         : rc == -ETIME ? "signed request outside the clock window: check the clocks (NTP) of both nodes"
         : rc == -EALREADY ? "replayed request"
                           : "not a member of this cluster (signed with another key; see 'kembar peer probe')";
    note_failure(addr, *why, now);
    return -EACCES;
}

/* ---------------- join tokens (management thread) ---------------- */

int kbd_trust_new_token(char *out, size_t outlen)
{
    uint8_t tok[TOKEN_LEN];
    if (!trust || outlen < 2 * TOKEN_LEN + 1 || RAND_bytes(tok, sizeof(tok)) != 1)
        return -EIO;
    pthread_mutex_lock(&trust->mu);
    memcpy(trust->token.tok, tok, sizeof(tok));
    trust->token.expires_ms = wall_ms() + TOKEN_TTL_MS;
    pthread_mutex_unlock(&trust->mu);
    kb_hex(tok, sizeof(tok), out);
    OPENSSL_cleanse(tok, sizeof(tok));
    kb_info("trust", "a join token was issued (valid %d minutes, once)", TOKEN_TTL_MS / 60000);
    return 0;
}

void kbd_trust_key(uint8_t key[KB_AUTH_KEY_LEN])
{
    pthread_mutex_lock(&trust->mu);
    memcpy(key, trust->key, KB_AUTH_KEY_LEN);
    pthread_mutex_unlock(&trust->mu);
}

int kbd_trust_install_key(const uint8_t key[KB_AUTH_KEY_LEN], char *err, size_t errlen)
{
    pthread_mutex_lock(&trust->mu);
    int rc = kb_auth_key_store(trust->key_path, key, err, errlen);
    if (rc == 0) {
        memcpy(trust->key, key, KB_AUTH_KEY_LEN);
        rpc_sync_set_auth_key(key);
    }
    pthread_mutex_unlock(&trust->mu);
    return rc;
}

/* ---------------- peers file ---------------- */

int kbd_trust_peers(char ***lines)
{
    *lines = NULL;
    FILE *f = fopen(trust->peers_path, "r");
    int n = 0;
    char buf[300];
    while (f && fgets(buf, sizeof(buf), f)) {
        buf[strcspn(buf, "\r\n")] = '\0';
        if (!buf[0])
            continue;
        char **nl = realloc(*lines, (size_t)(n + 2) * sizeof(char *));
        if (!nl)
            break;
        *lines = nl;
        if (!((*lines)[n] = strdup(buf)))
            break;
        (*lines)[++n] = NULL;
    }
    if (f)
        fclose(f);
    return n;
}

int kbd_trust_peers_edit(const char *hostport, bool add)
{
    char **old;
    int n = kbd_trust_peers(&old);
    char tmp[4200];
    snprintf(tmp, sizeof(tmp), "%s.tmp", trust->peers_path);
    FILE *f = fopen(tmp, "w");
    if (!f) {
        for (int i = 0; i < n; i++)
            free(old[i]);
        free(old);
        return -errno;
    }
    bool have = false;
    for (int i = 0; i < n; i++) {
        if (strcmp(old[i], hostport) == 0) {
            have = true;
            if (!add) {
                free(old[i]);
                continue;
            }
        }
        fprintf(f, "%s\n", old[i]);
        free(old[i]);
    }
    free(old);
    if (add && !have)
        fprintf(f, "%s\n", hostport);
    int rc = fclose(f) ? -errno : 0;
    if (!rc && rename(tmp, trust->peers_path))
        rc = -errno;
    return rc;
}

/* ---------------- the key exchange, responder side (loop thread) ---------------- */

/* The secret this node proves for PURPOSE: the live token (join) or the key (rotate). */
static bool secret_for_locked(const char *purpose, uint8_t *buf, size_t *len, uint64_t now)
{
    if (strcmp(purpose, "join") == 0) {
        if (trust->token.expires_ms <= now)
            return false;
        memcpy(buf, trust->token.tok, TOKEN_LEN);
        *len = TOKEN_LEN;
        return true;
    }
    if (strcmp(purpose, "rotate") == 0) {
        memcpy(buf, trust->key, KB_AUTH_KEY_LEN);
        *len = KB_AUTH_KEY_LEN;
        return true;
    }
    return false;
}

/* kx-offer PURPOSE IPUB INONCE -> "RPUB RNONCE PROOF" */
static int kx_offer(int argc, char **argv, char **out)
{
    uint8_t ipub[KB_KX_PUB], inonce[KB_KX_NONCE], secret[64];
    size_t slen = 0;
    if (argc != 5 || kb_unhex(argv[3], ipub, sizeof(ipub)) || kb_unhex(argv[4], inonce, sizeof(inonce)))
        return kbd_reply_text(out, -EINVAL, "kx-offer: malformed");
    uint64_t now = wall_ms();
    pthread_mutex_lock(&trust->mu);
    if (!secret_for_locked(argv[2], secret, &slen, now)) {
        pthread_mutex_unlock(&trust->mu);
        return kbd_reply_text(out, -EACCES, strcmp(argv[2], "join") == 0
                                                ? "no join token is pending on this node: run 'kembar peer token' there"
                                                : "unknown key exchange");
    }
    struct kx_pending *p = NULL;
    for (int i = 0; i < KX_PENDING; i++)
        if (!trust->kx[i].live || trust->kx[i].expires_ms <= now) {
            p = &trust->kx[i];
            break;
        }
    int rc = p ? 0 : -EBUSY;
    if (p) {
        if (p->live)
            kb_kx_free(&p->kx);
        p->live = false;
        rc = kb_kx_new(&p->kx);
    }
    if (rc) {
        pthread_mutex_unlock(&trust->mu);
        OPENSSL_cleanse(secret, sizeof(secret));
        return kbd_reply_text(out, rc, "key exchange: %s", rc == -EBUSY ? "too many under way" : "no key");
    }
    p->live = true;
    p->expires_ms = now + KX_TTL_MS;
    snprintf(p->purpose, sizeof(p->purpose), "%s", argv[2]);
    kb_kx_transcript(p->t, p->purpose, ipub, inonce, p->kx.pub, p->kx.nonce);
    uint8_t proof[32];
    kb_kx_proof(secret, slen, "kx-offer", p->t, sizeof(p->t), NULL, 0, proof);
    char rpub[2 * KB_KX_PUB + 1], rnonce[2 * KB_KX_NONCE + 1], sp[65];
    kb_hex(p->kx.pub, KB_KX_PUB, rpub);
    kb_hex(p->kx.nonce, KB_KX_NONCE, rnonce);
    kb_hex(proof, 32, sp);
    pthread_mutex_unlock(&trust->mu);
    OPENSSL_cleanse(secret, sizeof(secret));
    return kbd_reply_text(out, 0, "%s %s %s", rpub, rnonce, sp);
}

/* kx-install RNONCE SEALED PROOF: open the key and take it. */
static int kx_install(kbd_t *d, int argc, char **argv, char **out)
{
    uint8_t rnonce[KB_KX_NONCE], sealed[KB_KX_SEALED], proof[32], secret[64], key[KB_AUTH_KEY_LEN];
    size_t slen = 0;
    if (argc != 5 || kb_unhex(argv[2], rnonce, sizeof(rnonce)) || kb_unhex(argv[3], sealed, sizeof(sealed)) ||
        kb_unhex(argv[4], proof, sizeof(proof)))
        return kbd_reply_text(out, -EINVAL, "kx-install: malformed");
    uint64_t now = wall_ms();
    pthread_mutex_lock(&trust->mu);
    struct kx_pending *p = NULL;
    for (int i = 0; i < KX_PENDING; i++)
        if (trust->kx[i].live && trust->kx[i].expires_ms > now && memcmp(trust->kx[i].kx.nonce, rnonce, KB_KX_NONCE) == 0)
            p = &trust->kx[i];
    int rc = 0;
    const char *why = NULL;
    if (!p) {
        rc = -ENOENT, why = "no such key exchange (expired?)";
    } else if (!secret_for_locked(p->purpose, secret, &slen, now)) {
        rc = -EACCES, why = "the join token expired";
    } else if (!kb_kx_proof_ok(secret, slen, "kx-install", p->t, sizeof(p->t), sealed, sizeof(sealed), proof)) {
        rc = -EACCES, why = "the other node does not know the secret";
    } else if (kb_kx_open(&p->kx, p->t + 16, p->t, sealed, key)) {
        rc = -EACCES, why = "the sealed key does not open";
    }
    bool join = p && strcmp(p->purpose, "join") == 0;
    if (p) {
        kb_kx_free(&p->kx);
        p->live = false;
    }
    if (!rc && join)
        memset(&trust->token, 0, sizeof(trust->token));   /* once */
    pthread_mutex_unlock(&trust->mu);
    OPENSSL_cleanse(secret, sizeof(secret));
    if (rc) {
        kb_warn("trust", "key exchange refused: %s", why);
        return kbd_reply_text(out, rc, "%s", why);
    }
    if (join && d->vols) {
        OPENSSL_cleanse(key, sizeof(key));
        return kbd_reply_text(out, -EBUSY, "this node serves volumes already: it can join a cluster only while "
                                           "it has none");
    }
    char err[256] = "";
    rc = kbd_trust_install_key(key, err, sizeof(err));
    OPENSSL_cleanse(key, sizeof(key));
    if (rc)
        return kbd_reply_text(out, rc, "%s", err);
    kb_info("trust", "%s: this node now holds the cluster key", join ? "joined a cluster" : "cluster key rotated");
    return kbd_reply_text(out, 0, "ok");
}

int kbd_trust_peer_op(kbd_t *d, int argc, char **argv, char **out)
{
    if (!trust)
        return kbd_reply_text(out, -EACCES, "this node has no cluster key");
    if (strcmp(argv[1], "kx-offer") == 0)
        return kx_offer(argc, argv, out);
    return kx_install(d, argc, argv, out);
}

bool kbd_trust_signed(uint32_t proc, const uint8_t *payload, size_t plen)
{
    if (!trust)
        return false;
    pthread_mutex_lock(&trust->mu);
    int rc = kb_auth_check(&trust->replay, trust->key, proc, payload, plen, wall_ms());
    pthread_mutex_unlock(&trust->mu);
    return rc == 0;
}
