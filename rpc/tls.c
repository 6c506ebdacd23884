/*
 * tls.c — OpenSSL contexts for mutual-TLS kembar connections (rpc/tls.h).
 *
 * Verification is SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT on both
 * sides: a server refuses a client without a certificate signed by the CA,
 * and a client refuses such a server. Host names are not checked: cluster
 * nodes are often addressed by IP, and the CA is private to the cluster.
 *
 * Revocation: a crl.pem beside ca.pem (one or more PEM CRLs of the CA) is
 * checked for every peer certificate (X509_V_FLAG_CRL_CHECK). A server
 * reloads ca.pem and crl.pem when they change (rpc_tls_reload) and checks
 * the certificate of every connection it already has against them again
 * (rpc_tls_peer_ok), so a revoked client or one whose CA was removed is
 * cut off, not only refused next time.
 */
#include "rpc/tls.h"
#include "lib/common.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>
#include <errno.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

static void set_err(char *err, size_t errlen, const char *what, const char *file)
{
    char e[256] = "";
    unsigned long code = ERR_get_error();
    if (code)
        ERR_error_string_n(code, e, sizeof(e));
    ERR_clear_error();
    if (err && errlen)
        snprintf(err, errlen, "%s%s%s%s%s", what, file ? " " : "", file ? file : "",
                 *e ? ": " : "", e);
}

struct ssl_ctx_st *rpc_tls_ctx_new(bool server, const char *cert, const char *key,
                                   const char *ca, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
    if (!ctx) {
        set_err(err, errlen, "cannot create a TLS context", NULL);
        return NULL;
    }
    if (!SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION)) {
        set_err(err, errlen, "cannot require TLS 1.2", NULL);
        goto fail;
    }
    if ((cert || server) && SSL_CTX_use_certificate_chain_file(ctx, cert ? cert : "") != 1) {
        set_err(err, errlen, "cannot load certificate", cert);
        goto fail;
    }
    if ((key || server) && SSL_CTX_use_PrivateKey_file(ctx, key ? key : "", SSL_FILETYPE_PEM) != 1) {
        set_err(err, errlen, "cannot load private key", key);
        goto fail;
    }
    if ((cert || key) && SSL_CTX_check_private_key(ctx) != 1) {
        set_err(err, errlen, "private key does not match certificate", cert);
        goto fail;
    }
    if (!ca || SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1) {
        set_err(err, errlen, "cannot load CA file", ca ? ca : "(none given)");
        goto fail;
    }
    if (server) {
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(ca);
        if (names)
            SSL_CTX_set_client_CA_list(ctx, names);
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    /* Not SSL_MODE_ENABLE_PARTIAL_WRITE: libevent 2.1 moves on to the next
     * chunk after a partial SSL_write, which reorders the stream. */
    SSL_CTX_set_mode(ctx, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    /* No read-ahead: with it OpenSSL pulls several records off the socket at
     * once, and libevent 2.1's TLS reader can leave a whole record buffered
     * inside OpenSSL with the socket no longer readable, so nobody asks for
     * it: a frame sent as two records (header, then payload) stalled for
     * good. Without read-ahead whatever was not decrypted stays in the
     * socket and wakes the loop again. Costs some throughput (two reads per
     * record); correctness first. */
    SSL_CTX_set_read_ahead(ctx, 0);
    SSL_CTX_set_default_read_buffer_len(ctx, 256 << 10);
#ifdef SSL_OP_IGNORE_UNEXPECTED_EOF
    /* A peer that vanished without close_notify is a plain EOF for us (the
     * frames say where messages end), not a TLS error to log as one. */
    SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
#endif
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

/* A verification store of CA (and CRL, when the file exists). */
static X509_STORE *store_load(const char *ca, const char *crl, char *err, size_t errlen)
{
    X509_STORE *st = X509_STORE_new();
    if (!st || X509_STORE_load_file(st, ca) != 1) {
        set_err(err, errlen, "cannot load CA file", ca);
        X509_STORE_free(st);
        return NULL;
    }
    FILE *f = crl ? fopen(crl, "r") : NULL;
    if (f) {
        int n = 0;
        for (X509_CRL *x; (x = PEM_read_X509_CRL(f, NULL, NULL, NULL)); n++) {
            X509_STORE_add_crl(st, x);
            X509_CRL_free(x);
        }
        fclose(f);
        ERR_clear_error();       /* the end of the file reads as an error */
        if (n == 0) {
            if (err && errlen)
                snprintf(err, errlen, "%s holds no CRL", crl);
            X509_STORE_free(st);
            return NULL;
        }
        X509_STORE_set_flags(st, X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL);
    }
    return st;
}

static void dir_files(const char *dir, char *ca, char *crl, size_t n)
{
    snprintf(ca, n, "%s/ca.pem", dir);
    snprintf(crl, n, "%s/crl.pem", dir);
}

struct ssl_ctx_st *rpc_tls_ctx_from_dir(bool server, const char *dir, char *err, size_t errlen)
{
    char cert[4096], key[4096], ca[4096], crl[4096];
    snprintf(cert, sizeof(cert), "%s/cert.pem", dir);
    snprintf(key, sizeof(key), "%s/key.pem", dir);
    dir_files(dir, ca, crl, sizeof(ca));
    SSL_CTX *ctx = rpc_tls_ctx_new(server, cert, key, ca, err, errlen);
    if (ctx && access(crl, F_OK) == 0 && rpc_tls_reload(ctx, dir, err, errlen)) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

int rpc_tls_reload(struct ssl_ctx_st *ctx, const char *dir, char *err, size_t errlen)
{
    char ca[4096], crl[4096];
    dir_files(dir, ca, crl, sizeof(ca));
    X509_STORE *st = store_load(ca, access(crl, F_OK) == 0 ? crl : NULL, err, errlen);
    if (!st)
        return -EINVAL;
    SSL_CTX_set_cert_store(ctx, st);   /* takes it; frees the old one */
    return 0;
}

uint64_t rpc_tls_dir_stamp(const char *dir)
{
    char ca[4096], crl[4096];
    dir_files(dir, ca, crl, sizeof(ca));
    struct stat a, b;
    uint64_t s = 0;
    if (stat(ca, &a) == 0)
        s ^= (uint64_t)a.st_mtim.tv_sec * 1000000007ull ^ (uint64_t)a.st_mtim.tv_nsec ^ (uint64_t)a.st_size << 20;
    if (stat(crl, &b) == 0)
        s ^= ((uint64_t)b.st_mtim.tv_sec * 998244353ull ^ (uint64_t)b.st_mtim.tv_nsec ^ (uint64_t)b.st_size) << 1;
    else
        s ^= 0x5a5a;
    return s;
}

bool rpc_tls_peer_ok(struct ssl_ctx_st *ctx, struct ssl_st *ssl, char *why, size_t whylen)
{
    X509 *peer = ssl ? SSL_get1_peer_certificate(ssl) : NULL;
    if (!peer) {
        snprintf(why, whylen, "no peer certificate");
        return false;
    }
    X509_STORE_CTX *vc = X509_STORE_CTX_new();
    STACK_OF(X509) *chain = SSL_get_peer_cert_chain(ssl);
    bool ok = vc && X509_STORE_CTX_init(vc, SSL_CTX_get_cert_store(ctx), peer, chain) == 1 &&
              X509_verify_cert(vc) == 1;
    if (!ok)
        snprintf(why, whylen, "%s", vc ? X509_verify_cert_error_string(X509_STORE_CTX_get_error(vc)) : "out of memory");
    X509_STORE_CTX_free(vc);
    X509_free(peer);
    ERR_clear_error();
    return ok;
}
