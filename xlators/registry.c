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
    X(kb_xl_fault)

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

const kb_xlator_type_t *kb_xlator_type_find(const char *name)
{
    for (size_t i = 0; i < kb_xlator_ntypes; i++) {
        const kb_xlator_type_t *t = kb_xlator_types[i];
        if (t && t->name && strcmp(t->name, name) == 0)
            return t;
    }
    return NULL;
}
