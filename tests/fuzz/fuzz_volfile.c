/*
 * fuzz_volfile.c — libFuzzer target: the volfile parser (kb_graph_parse, xlators/xlator.h) and
 * the typed option validation a graph goes through before init (kb_opts_validate with each
 * translator's table, then the typed getters a translator's init would call).
 *
 * A client takes its volfile from whichever kembard it asked (GETSPEC): a broken or hostile
 * node must not be able to crash a mount. The graph is parsed and validated, never initialised
 * (init would open bricks and sockets). Invariants: a parsed graph has a top and every other
 * translator has a parent; every translator has a type.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "xlators/xlator.h"

static void getters(const kb_xlator_t *xl)
{
    for (const kb_option_def_t *d = xl->type->options; d && d->key; d++) {
        switch (d->type) {
        case KB_OPT_INT: (void)kb_opt_int(xl->opts, xl->type->options, d->key); break;
        case KB_OPT_BOOL: (void)kb_opt_bool(xl->opts, xl->type->options, d->key); break;
        case KB_OPT_SIZE: (void)kb_opt_size(xl->opts, xl->type->options, d->key); break;
        case KB_OPT_TIME: (void)kb_opt_time_ms(xl->opts, xl->type->options, d->key); break;
        default: (void)kb_opt_str(xl->opts, xl->type->options, d->key); break;
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1), err[512] = "";
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = 0;
    kb_graph_t *g = kb_graph_parse(text, err, sizeof(err));
    if (g) {
        if (!g->top || g->nall < 1)
            abort();
        for (int i = 0; i < g->nall; i++) {
            kb_xlator_t *xl = g->all[i];
            if (!xl->type || (xl != g->top && xl->nparents == 0))
                abort();
            char why[256] = "";
            if (kb_opts_validate(xl->opts, xl->type->options, why, sizeof(why)) == 0)
                getters(xl);
            else if (!why[0])
                abort();   /* a refusal always says why */
        }
        kb_graph_fini(g);
    } else if (!err[0]) {
        abort();
    }
    free(text);
    return 0;
}
