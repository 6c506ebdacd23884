/*
 * gfid.c — gfid constants and text form (lib/gfid.h).
 *
 * The text form is libuuid's lower-case 8-4-4-4-12. Parsing refuses anything
 * else (wrong length, missing dashes, non-hex), so a gfid read from disk or
 * the wire is either exact or -EINVAL.
 */
#include "lib/gfid.h"
#include "lib/common.h"

const kb_gfid_t kb_gfid_root = { .b = { [15] = 1 } };
const kb_gfid_t kb_gfid_null = { .b = { 0 } };

void kb_gfid_generate(kb_gfid_t *g)
{
    uuid_t u;
    uuid_generate(u);
    _Static_assert(sizeof(uuid_t) == sizeof(g->b), "gfid is a uuid");
    memcpy(g->b, u, sizeof(g->b));
}

char *kb_gfid_str(const kb_gfid_t *g, char out[KB_GFID_STRLEN])
{
    uuid_unparse_lower(g->b, out);
    return out;
}

int kb_gfid_parse(const char *s, kb_gfid_t *g)
{
    if (!s || strlen(s) != KB_GFID_STRLEN - 1)
        return -EINVAL;
    uuid_t u;
    if (uuid_parse(s, u) != 0)
        return -EINVAL;
    memcpy(g->b, u, sizeof(g->b));
    return 0;
}
