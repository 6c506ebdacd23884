/*
 * registry.c — the built-in translator types, found by name.
 *
 * Each type is one exported descriptor in its own file. They are declared
 * weak here so a binary links whether or not it carries every translator
 * (the CLI carries none of the brick ones); a missing one is simply unknown.
 */
#include "xlators/xlator.h"

#define KB_XL_TYPES(X) \
    X(kb_xl_posix)     \
    X(kb_xl_locks)     \
    X(kb_xl_client)    \
    X(kb_xl_replicate) \
    X(kb_xl_distribute) \
    X(kb_xl_fault)     \
    X(kb_xl_write_behind)

#define X(sym) extern const kb_xlator_type_t sym __attribute__((weak));
KB_XL_TYPES(X)
#undef X

const kb_xlator_type_t *const kb_xlator_types[] = {
#define X(sym) &sym,
    KB_XL_TYPES(X)
#undef X
};
/* An absent (weak, undefined) type has address NULL: iterate by count. */
const size_t kb_xlator_ntypes = KB_ARRAY_SIZE(kb_xlator_types);

static const kb_xlator_type_t *extra_types[32];

int kb_xlator_type_register(const kb_xlator_type_t *t)
{
    for (size_t i = 0; i < KB_ARRAY_SIZE(extra_types); i++) {
        if (extra_types[i] == t)
            return 0;
        if (!extra_types[i]) {
            extra_types[i] = t;
            return 0;
        }
    }
    return -ENOSPC;
}

const kb_xlator_type_t *kb_xlator_type_find(const char *name)
{
    for (size_t i = 0; i < KB_ARRAY_SIZE(extra_types) && extra_types[i]; i++)
        if (strcmp(extra_types[i]->name, name) == 0)
            return extra_types[i];
    for (size_t i = 0; i < kb_xlator_ntypes; i++) {
        const kb_xlator_type_t *t = kb_xlator_types[i];
        if (t && t->name && strcmp(t->name, name) == 0)
            return t;
    }
    return NULL;
}
