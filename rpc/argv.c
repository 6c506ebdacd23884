/*
 * argv.c — the payload of a management call (KB_PROC_CLI / KB_PROC_PEER):
 * u32 argc, then argc strings (lib/codec.h), then possibly an auth block
 * (rpc/auth.h), which the decoder leaves alone. Bounded before allocation:
 * 1..RPC_ARGV_MAX strings, each within the frame.
 */
#include <errno.h>
#include <stdlib.h>
#include "rpc/argv.h"
#include "rpc/wire.h"

int rpc_argv_decode(const void *payload, size_t plen, int *argc, char ***argv)
{
    kb_dec_t dec;
    kb_dec_init(&dec, payload, plen);
    uint32_t n = kb_dec_u32(&dec);
    if (dec.err || n == 0 || n > RPC_ARGV_MAX)
        return -EBADMSG;
    char **v = calloc(n + 1, sizeof(char *));
    if (!v)
        return -ENOMEM;
    for (uint32_t i = 0; i < n; i++) {
        kb_dec_str(&dec, &v[i], KB_WIRE_PLEN_MAX);
        if (!dec.err && !v[i])
            dec.err = -EBADMSG;
    }
    if (dec.err) {
        rpc_argv_free((int)n, v);
        return -EBADMSG;
    }
    *argc = (int)n;
    *argv = v;
    return 0;
}

void rpc_argv_free(int argc, char **argv)
{
    if (!argv)
        return;
    for (int i = 0; i < argc; i++)
        free(argv[i]);
    free(argv);
}
