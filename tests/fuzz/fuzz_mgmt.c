/*
 * fuzz_mgmt.c — libFuzzer target: what a kembard does with the payload of a management call
 * (KB_PROC_CLI / KB_PROC_PEER) before anyone is trusted (issue 19): the signature check
 * (rpc/auth.c kb_auth_check against a fixed cluster key and the replay cache), the argv
 * decoder (rpc/argv.c), and the hex fields of the key exchange (kb_unhex). Input: one byte
 * choosing the procedure, then the payload. Nothing may crash, leak or read out of bounds; a
 * forged block must never verify; decoded arguments are NUL-free strings within the frame.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "rpc/argv.h"
#include "rpc/auth.h"
#include "rpc/wire.h"

static kb_auth_replay_t replay;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint32_t proc = data[0] & 1 ? KB_PROC_PEER : KB_PROC_CLI;
    const uint8_t *p = data + 1;
    size_t n = size - 1;
    static const uint8_t key[KB_AUTH_KEY_LEN] = { 7, 1, 7, 1 };
    int rc = kb_auth_check(&replay, key, proc, p, n, 1700000000000ull);
    if (rc == 0)
        abort();                /* nobody without the key can sign (the fuzzer has no key) */
    int argc = 0;
    char **argv = NULL;
    if (rpc_argv_decode(p, n, &argc, &argv) == 0) {
        if (argc < 1 || argc > RPC_ARGV_MAX || argv[argc])
            abort();
        uint8_t buf[KB_KX_SEALED];
        for (int i = 0; i < argc; i++) {
            if (strlen(argv[i]) > n)
                abort();
            kb_unhex(argv[i], buf, sizeof(buf));
            kb_unhex(argv[i], buf, KB_KX_PUB);
        }
        rpc_argv_free(argc, argv);
    }
    return 0;
}
