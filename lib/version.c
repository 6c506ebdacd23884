/*
 * version.c — release strings and op-versions (version.h).
 */
#include <ctype.h>
#include "lib/common.h"
#include "lib/version.h"

/* Op-version i+1 came with releases[i]. One entry per release that raised
 * it; the last is this build's. */
static const struct { const char *release, *name; } releases[] = {
    { "0.1.0", "0.1" },
    { "0.2.0", "0.2" },
};
_Static_assert(KB_ARRAY_SIZE(releases) == KB_OP_VERSION, "one releases[] entry per op-version");

/* One numeric component at *S (advanced past it and its trailing junk up to
 * the next '.'); 0 when there is none. */
static unsigned long component(const char **s)
{
    unsigned long v = 0;
    while (isdigit((unsigned char)**s) && v < 100000000ul)
        v = v * 10 + (unsigned long)(*(*s)++ - '0');
    while (**s && **s != '.')
        (*s)++;
    if (**s == '.')
        (*s)++;
    return v;
}

int kb_version_cmp(const char *a, const char *b)
{
    a = a ? a : "";
    b = b ? b : "";
    for (int i = 0; i < 3; i++) {
        unsigned long x = component(&a), y = component(&b);
        if (x != y)
            return x < y ? -1 : 1;
    }
    return 0;
}

uint32_t kb_op_version_of(const char *release)
{
    if (!release || !isdigit((unsigned char)release[0]))
        return 1;
    uint32_t ov = 1;
    for (size_t i = 0; i < KB_ARRAY_SIZE(releases); i++)
        if (kb_version_cmp(releases[i].release, release) <= 0)
            ov = (uint32_t)i + 1;
    return ov;
}

const char *kb_op_version_release(uint32_t ov)
{
    return ov >= 1 && ov <= KB_ARRAY_SIZE(releases) ? releases[ov - 1].name : NULL;
}
