/*
 * tls.c — OpenSSL contexts for mutual-TLS kembar connections (rpc/tls.h).
 *
 * Verification is SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT on both
 * sides: a server refuses a client without a certificate signed by the CA,
 * and a client refuses such a server. Host names are not checked: cluster
 * nodes are often addressed by IP, and the CA is private to the cluster.
 */
#include "rpc/tls.h"
#include "lib/common.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>

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

struct ssl_ctx_st *rpc_tls_ctx_from_dir(bool server, const char *dir, char *err, size_t errlen)
{
    char cert[4096], key[4096], ca[4096];
    snprintf(cert, sizeof(cert), "%s/cert.pem", dir);
    snprintf(key, sizeof(key), "%s/key.pem", dir);
    snprintf(ca, sizeof(ca), "%s/ca.pem", dir);
    return rpc_tls_ctx_new(server, cert, key, ca, err, errlen);
}
