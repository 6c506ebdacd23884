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

#endif
