/*
 * tls.h — building the OpenSSL context rpc/conn.c uses for TLS.
 *
 * Both sides present a certificate and verify the peer's against one CA
 * file (mutual authentication); TLS 1.2 is the floor. Pass the context as
 * rpc_client_opts_t.tls or to rpc_listen; free it with SSL_CTX_free after
 * every connection and listener using it is gone.
 */
#ifndef KB_RPC_TLS_H
#define KB_RPC_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ssl_ctx_st;

/* cert/key: PEM files of this side (cert may hold a chain). A client may
 * pass cert = key = NULL to present none (a server then refuses it).
 * ca: PEM file of the CA(s) that sign peers. NULL on failure with a one-line
 * reason in err. */
struct ssl_ctx_st *rpc_tls_ctx_new(bool server, const char *cert, const char *key,
                                   const char *ca, char *err, size_t errlen);

/* The same from a directory holding cert.pem, key.pem and ca.pem (the layout
 * kembard --tls-dir, kembar --tls-dir, kembar-fuse -o tls-dir and
 * protocol/client's tls-dir all use). */
struct ssl_ctx_st *rpc_tls_ctx_from_dir(bool server, const char *dir, char *err, size_t errlen);

/* Revocation (a server's): load DIR's ca.pem and crl.pem (when present)
 * into CTX again, for the connections to come: 0 or -EINVAL (reason in
 * err; CTX unchanged). rpc_tls_dir_stamp says when those files changed;
 * rpc_tls_peer_ok checks a live connection's peer certificate against
 * CTX's current CA and CRLs (false: WHY says why). */
struct ssl_st;
int rpc_tls_reload(struct ssl_ctx_st *ctx, const char *dir, char *err, size_t errlen);
uint64_t rpc_tls_dir_stamp(const char *dir);
bool rpc_tls_peer_ok(struct ssl_ctx_st *ctx, struct ssl_st *ssl, char *why, size_t whylen);

#endif
