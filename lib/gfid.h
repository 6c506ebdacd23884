/*
 * gfid.h — the 128-bit identity of every file and directory (DESIGN §4).
 *
 * Chosen by the client at create time (libuuid), identical on every replica.
 * The root directory has the fixed gfid 00000000-0000-0000-0000-000000000001.
 */
#ifndef KB_GFID_H
#define KB_GFID_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <uuid/uuid.h>

typedef struct kb_gfid { uint8_t b[16]; } kb_gfid_t;

#define KB_GFID_STRLEN 37   /* 36 chars + NUL */

extern const kb_gfid_t kb_gfid_root;
extern const kb_gfid_t kb_gfid_null;

static inline bool kb_gfid_eq(const kb_gfid_t *a, const kb_gfid_t *b) { return memcmp(a, b, 16) == 0; }
static inline bool kb_gfid_is_null(const kb_gfid_t *a) { return kb_gfid_eq(a, &kb_gfid_null); }
static inline bool kb_gfid_is_root(const kb_gfid_t *a) { return kb_gfid_eq(a, &kb_gfid_root); }
void kb_gfid_generate(kb_gfid_t *g);
char *kb_gfid_str(const kb_gfid_t *g, char out[KB_GFID_STRLEN]);
int kb_gfid_parse(const char *s, kb_gfid_t *g);  /* 0 or -EINVAL */
/* A 32-bit hash of a gfid (spreads reads over replicas). */
static inline uint32_t kb_gfid_hash(const kb_gfid_t *g) {
    uint32_t h = 2166136261u;
    for (int i = 0; i < 16; i++) h = (h ^ g->b[i]) * 16777619u;
    return h;
}

#endif
