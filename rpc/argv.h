/*
 * argv.h — decoding a management call's argv payload (argv.c).
 */
#ifndef KB_RPC_ARGV_H
#define KB_RPC_ARGV_H

#include <stddef.h>
#include "lib/codec.h"

#define RPC_ARGV_MAX 256

/* 0 with *ARGC strings in *ARGV (NULL-terminated; free with rpc_argv_free),
 * -EBADMSG for a malformed payload, -ENOMEM. */
int rpc_argv_decode(const void *payload, size_t plen, int *argc, char ***argv);
void rpc_argv_free(int argc, char **argv);

#endif
