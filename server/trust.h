/*
 * trust.h — who may run management commands (trust.c), the cluster key and
 * the key exchange; the peer verbs that drive them are in mgmt_trust.c.
 */
#ifndef KBD_TRUST_H
#define KBD_TRUST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rpc/auth.h"
#include "server/kembard.h"

/* Load (or make) <state-dir>/cluster.key; signs this process's peer calls. */
int kbd_trust_init(kbd_t *d, char *err, size_t errlen);

/* One management call as serve.c sees it. */
typedef struct kbd_trust_req {
    const char *peer;            /* address, for logs and the rate limit */
    bool local_root;             /* uid 0 on this node (local socket, or loopback) */
    bool tls_member;             /* TLS with a certificate of the cluster's CA */
    uint32_t proc;               /* KB_PROC_CLI / KB_PROC_PEER */
    const uint8_t *payload;
    size_t plen;
} kbd_trust_req_t;

/* 0: carry it out; -EACCES with a one-line reason in *why (logged, counted). */
int kbd_trust_check(const kbd_trust_req_t *q, const char **why);

/* Is PAYLOAD (a handshake) signed with the cluster key? Quiet: nothing is
 * logged or counted (an unsigned handshake is an ordinary client's). */
bool kbd_trust_signed(uint32_t proc, const uint8_t *payload, size_t plen);

/* PEER kx-offer / kx-install (loop thread). */
int kbd_trust_peer_op(kbd_t *d, int argc, char **argv, char **out);

/* For the peer verbs (management thread). */
int kbd_trust_new_token(char *out, size_t outlen);          /* hex, 2*16+1 */
void kbd_trust_key(uint8_t key[KB_AUTH_KEY_LEN]);
int kbd_trust_install_key(const uint8_t key[KB_AUTH_KEY_LEN], char *err, size_t errlen);
int kbd_trust_peers(char ***lines);                           /* "host:port" lines; NULL-terminated */
int kbd_trust_peers_edit(const char *hostport, bool add);

#endif
