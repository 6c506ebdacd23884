/*
 * fuzz_volume.c — libFuzzer target: the volume definition parser (kbd_volume_parse,
 * server/volume.c) and what kembard derives from a definition it accepted.
 *
 * Definitions travel between nodes ("peer store") and live in state files; a corrupt file or a
 * hostile peer must not crash a node. Invariants for an accepted definition:
 *   - format -> parse -> format is stable (what a node writes, every node reads back the same);
 *   - the client, heal-daemon and brick volfiles generated from it parse (kb_graph_parse) when
 *     the volume name is valid (kbd_volname_ok), and the brick volfile's storage/posix
 *     "directory" is exactly the brick's path (a path the volfile cannot carry, such as one with
 *     '#' or whitespace at an end, must be refused by kbd_brick_parse, not served from elsewhere).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "server/kembard.h"

static void check_volgen(const kbd_volume_t *v)
{
    char err[512];
    char *vf = kbd_volgen_client(v);
    kb_graph_t *g = vf ? kb_graph_parse(vf, err, sizeof(err)) : NULL;
    if (vf && !g) {
        fprintf(stderr, "generated client volfile does not parse: %s\n%s", err, vf);
        abort();
    }
    kb_graph_fini(g);
    free(vf);
    int k = kbd_set_size(v);
    for (int s = 0; s < v->nbricks / k && s < 4; s++) {
        vf = kbd_volgen_shd(v, s, "0");
        g = vf ? kb_graph_parse(vf, err, sizeof(err)) : NULL;
        if (vf && !g) {
            fprintf(stderr, "generated heal volfile does not parse: %s\n%s", err, vf);
            abort();
        }
        kb_graph_fini(g);
        free(vf);
    }
    for (int i = 0; i < v->nbricks && i < 4; i++) {
        vf = kbd_volgen_brick(v, i);
        g = vf ? kb_graph_parse(vf, err, sizeof(err)) : NULL;
        if (vf && !g) {
            fprintf(stderr, "generated brick volfile does not parse: %s\n%s", err, vf);
            abort();
        }
        const char *path = v->bricks[i].path;
        if (g) {
            const char *dir = kb_opts_raw(g->all[0]->opts, "directory");
            if (!dir || strcmp(dir, path) != 0) {
                fprintf(stderr, "brick %d: path '%s' became directory '%s' in its volfile\n", i, path,
                        dir ? dir : "(none)");
                abort();
            }
        }
        kb_graph_fini(g);
        free(vf);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1), err[512] = "";
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = 0;
    kbd_volume_t *v = kbd_volume_parse(text, err, sizeof(err));
    free(text);
    if (!v) {
        if (!err[0])
            abort();
        return 0;
    }
    char *f1 = kbd_volume_format(v);
    kbd_volume_t *v2 = f1 ? kbd_volume_parse(f1, err, sizeof(err)) : NULL;
    if (f1 && !v2) {
        fprintf(stderr, "formatted definition does not parse back: %s\n%s", err, f1);
        abort();
    }
    char *f2 = v2 ? kbd_volume_format(v2) : NULL;
    if (f1 && f2 && strcmp(f1, f2) != 0) {
        fprintf(stderr, "format is not stable:\n%s---\n%s", f1, f2);
        abort();
    }
    if (kbd_volname_ok(v->name))
        check_volgen(v);
    free(f1);
    free(f2);
    kbd_volume_free(v2);
    kbd_volume_free(v);
    return 0;
}
