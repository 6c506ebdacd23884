/*
 * sync.h — a blocking one-call-at-a-time RPC client.
 *
 * For the CLI and kembard's management thread, which run sequential
 * request/response dialogues with other nodes and have no event loop of
 * their own. Same frames as rpc/conn.c (rpc/wire.h). Every call has a
 * deadline; nothing here can hang longer than the timeout given.
 */
#ifndef KB_RPC_SYNC_H
#define KB_RPC_SYNC_H

#include <stddef.h>
#include <stdint.h>
#include "lib/codec.h"
#include "rpc/conn.h"

typedef struct rpc_sync rpc_sync_t;
struct ssl_ctx_st;

/* Use TLS (this client context, rpc/tls.h) for every later connection of
 * the process; NULL = plain TCP. */
void rpc_sync_set_tls(struct ssl_ctx_st *ctx);

/* Sign every later argv call of the process with this cluster key
 * (rpc/auth.h; copied; NULL = unsigned). */
void rpc_sync_set_auth_key(const uint8_t *key);
/* Append an auth block for PROC to E when the process has a key (kembard's
 * own clients sign their brick handshakes with it); false when none. */
bool rpc_sync_sign(uint32_t proc, kb_enc_t *e);

/* Connect within timeout_ms. HOST "unix:/path" is a local socket (PORT unused). NULL with a one-line reason in err. */
rpc_sync_t *rpc_sync_connect(const char *host, uint16_t port, uint32_t timeout_ms,
                             char *err, size_t errlen);
/* The same with TLS context TLS for this connection alone (NULL = plain),
 * for libraries that must not touch the process-wide setting. */
rpc_sync_t *rpc_sync_connect_ctx(const char *host, uint16_t port, uint32_t timeout_ms,
                                 struct ssl_ctx_st *tls, char *err, size_t errlen);
/* One call; fills *reply (free with rpc_msg_free). Returns 0 when a reply
 * arrived (its status is in reply->hdr.status), or -errno for transport
 * failure (-ETIMEDOUT, -ECONNRESET, -EBADMSG) with a reason in err. */
int rpc_sync_call(rpc_sync_t *s, uint32_t proc, const void *payload, uint32_t plen,
                  uint32_t timeout_ms, rpc_msg_t *reply, char *err, size_t errlen);
void rpc_sync_close(rpc_sync_t *s);

/* argv-style management calls (KB_PROC_CLI / KB_PROC_PEER): encodes argv,
 * returns the reply status (0 or -errno from the far side, or a transport
 * -errno) and the reply text in *out (malloc'd, may be NULL). */
int rpc_sync_argv(const char *host, uint16_t port, uint32_t proc, int argc, char *const argv[],
                  uint32_t timeout_ms, char **out, char *err, size_t errlen);

#endif
