/*
 * options.c — typed option tables: parsing, validation, typed getters.
 *
 * An option set is the raw key/value text from a volfile stanza or from
 * `volume set`; the translator's table gives each key a type, a default and
 * a range. Validation happens once, at graph build or at `volume set`, so the
 * getters may assume well-formed values (they fall back to the default).
 */
#include <ctype.h>
#include <stdio.h>
#include <strings.h>
#include "lib/common.h"
#include "xlators/options.h"

struct kb_option_set {
    char **keys, **vals;
    size_t n, cap;
};

kb_option_set_t *kb_opts_new(void) { return kb_zalloc(sizeof(kb_option_set_t)); }

void kb_opts_free(kb_option_set_t *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->n; i++) {
        free(s->keys[i]);
        free(s->vals[i]);
    }
    free(s->keys);
    free(s->vals);
    free(s);
}

int kb_opts_set(kb_option_set_t *s, const char *key, const char *value)
{
    char *v = strdup(value);
    if (!v)
        return -ENOMEM;
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->keys[i], key) == 0) {
            free(s->vals[i]);
            s->vals[i] = v;
            return 0;
        }
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 8;
        char **k = realloc(s->keys, cap * sizeof(char *));
        if (!k) { free(v); return -ENOMEM; }
        s->keys = k;
        char **vv = realloc(s->vals, cap * sizeof(char *));
        if (!vv) { free(v); return -ENOMEM; }
        s->vals = vv;
        s->cap = cap;
    }
    if (!(s->keys[s->n] = strdup(key))) {
        free(v);
        return -ENOMEM;
    }
    s->vals[s->n++] = v;
    return 0;
}

const char *kb_opts_raw(const kb_option_set_t *s, const char *key)
{
    for (size_t i = 0; s && i < s->n; i++)
        if (strcmp(s->keys[i], key) == 0)
            return s->vals[i];
    return NULL;
}

size_t kb_opts_count(const kb_option_set_t *s) { return s ? s->n : 0; }

void kb_opts_at(const kb_option_set_t *s, size_t i, const char **key, const char **value)
{
    *key = s->keys[i];
    *value = s->vals[i];
}

/* ---- op-versions ---- */

/* `volume set` keys introduced after the first release (options.h). */
static const struct { const char *volume_key; uint32_t since; } introduced[] = {
    { "network.lock-lease", 2 },    /* protocol/client: the lock lease asked of the bricks */
    { "storage.orphan-grace", 2 },  /* storage/posix: open-unlinked files kept after a restart */
    { "cluster.choose-local", 2 },  /* cluster/replicate: reads prefer a brick on this host */
    { "performance.local-read", 2 }, /* protocol/client: a brick on this host read from its files */
};

uint32_t kb_opt_since(const char *volume_key)
{
    for (size_t i = 0; volume_key && i < KB_ARRAY_SIZE(introduced); i++)
        if (strcmp(introduced[i].volume_key, volume_key) == 0)
            return introduced[i].since;
    return 1;
}

/* ---- parsers ---- */

int kb_parse_size(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || errno || v < 0)
        return -EINVAL;
    while (*end == ' ')
        end++;
    uint64_t mul = 1;
    switch (toupper((unsigned char)*end)) {
    case 0: break;
    case 'B': mul = 1; end++; break;
    case 'K': mul = 1ull << 10; end++; break;
    case 'M': mul = 1ull << 20; end++; break;
    case 'G': mul = 1ull << 30; end++; break;
    case 'T': mul = 1ull << 40; end++; break;
    default: return -EINVAL;
    }
    if (mul > 1) {
        if (*end == 'i' || *end == 'I')
            end++;
        if (*end == 'b' || *end == 'B')
            end++;
    }
    if (*end)
        return -EINVAL;
    if (v * (double)mul > 1.8e19)
        return -ERANGE;
    *out = (uint64_t)(v * (double)mul);
    return 0;
}

int kb_parse_bool(const char *s, bool *out)
{
    static const char *yes[] = { "on", "yes", "true", "enable", "1" };
    static const char *no[] = { "off", "no", "false", "disable", "0" };
    for (size_t i = 0; i < KB_ARRAY_SIZE(yes); i++) {
        if (strcasecmp(s, yes[i]) == 0) { *out = true; return 0; }
        if (strcasecmp(s, no[i]) == 0) { *out = false; return 0; }
    }
    return -EINVAL;
}

int kb_parse_time_ms(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || errno || v < 0)
        return -EINVAL;
    double mul = 1000;       /* seconds by default */
    if (strcmp(end, "ms") == 0)
        mul = 1;
    else if (strcmp(end, "s") == 0 || *end == 0)
        mul = 1000;
    else
        return -EINVAL;
    if (v * mul > 1e15)
        return -ERANGE;
    *out = (uint64_t)(v * mul + 0.5);
    return 0;
}

static bool enum_has(const char *choices, const char *v)
{
    size_t n = strlen(v);
    for (const char *p = choices; p && *p;) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == n && strncasecmp(p, v, n) == 0)
            return true;
        p = bar ? bar + 1 : NULL;
    }
    return false;
}

int kb_opt_check(const kb_option_def_t *def, const char *v, char *err, size_t errlen)
{
    bool b;
    uint64_t u;
    char *end;
    bool ranged = def->min != 0 || def->max != 0;
    switch (def->type) {
    case KB_OPT_STR:
    case KB_OPT_PATH:
        if (def->type == KB_OPT_PATH && v[0] != '/') {
            snprintf(err, errlen, "option %s: '%s' is not an absolute path", def->key, v);
            return -EINVAL;
        }
        return 0;
    case KB_OPT_BOOL:
        if (kb_parse_bool(v, &b) == 0)
            return 0;
        snprintf(err, errlen, "option %s: '%s' is not on/off", def->key, v);
        return -EINVAL;
    case KB_OPT_ENUM:
        if (enum_has(def->choices, v))
            return 0;
        snprintf(err, errlen, "option %s: '%s' is not one of %s", def->key, v, def->choices);
        return -EINVAL;
    case KB_OPT_INT: {
        errno = 0;
        long long x = strtoll(v, &end, 0);
        if (end == v || *end || errno) {
            snprintf(err, errlen, "option %s: '%s' is not an integer", def->key, v);
            return -EINVAL;
        }
        if (ranged && (x < def->min || x > def->max)) {
            snprintf(err, errlen, "option %s: %lld is out of range [%lld, %lld]", def->key, x,
                     (long long)def->min, (long long)def->max);
            return -EINVAL;
        }
        return 0;
    }
    case KB_OPT_SIZE:
        if (kb_parse_size(v, &u)) {
            snprintf(err, errlen, "option %s: '%s' is not a size (e.g. 64KiB, 1MB)", def->key, v);
            return -EINVAL;
        }
        if (ranged && ((int64_t)u < def->min || (int64_t)u > def->max)) {
            snprintf(err, errlen, "option %s: %s is out of range [%lld, %lld] bytes", def->key, v,
                     (long long)def->min, (long long)def->max);
            return -EINVAL;
        }
        return 0;
    case KB_OPT_TIME:
        if (kb_parse_time_ms(v, &u)) {
            snprintf(err, errlen, "option %s: '%s' is not a time in seconds (e.g. 5, 0.5, 200ms)", def->key, v);
            return -EINVAL;
        }
        if (ranged && ((int64_t)u < def->min || (int64_t)u > def->max)) {
            snprintf(err, errlen, "option %s: %s is out of range [%.3g, %.3g] s", def->key, v,
                     def->min / 1000.0, def->max / 1000.0);
            return -EINVAL;
        }
        return 0;
    }
    snprintf(err, errlen, "option %s: unknown type", def->key);
    return -EINVAL;
}

static const kb_option_def_t *find_def(const kb_option_def_t *defs, const char *key)
{
    for (; defs && defs->key; defs++)
        if (strcmp(defs->key, key) == 0)
            return defs;
    return NULL;
}

int kb_opts_validate(const kb_option_set_t *s, const kb_option_def_t *defs, char *err, size_t errlen)
{
    for (size_t i = 0; s && i < s->n; i++) {
        const kb_option_def_t *d = find_def(defs, s->keys[i]);
        if (!d) {
            snprintf(err, errlen, "unknown option '%s'", s->keys[i]);
            return -EINVAL;
        }
        int rc = kb_opt_check(d, s->vals[i], err, errlen);
        if (rc)
            return rc;
    }
    return 0;
}

static const char *value_of(const kb_option_set_t *s, const kb_option_def_t *defs, const char *key,
                            const kb_option_def_t **def)
{
    *def = find_def(defs, key);
    const char *v = kb_opts_raw(s, key);
    if (v && (!*def || kb_opt_check(*def, v, (char[128]){0}, 128) == 0))
        return v;
    return *def ? (*def)->dflt : NULL;
}

const char *kb_opt_str(const kb_option_set_t *s, const kb_option_def_t *defs, const char *key)
{
    const kb_option_def_t *d;
    return value_of(s, defs, key, &d);
}

int64_t kb_opt_int(const kb_option_set_t *s, const kb_option_def_t *defs, const char *key)
{
    const kb_option_def_t *d;
    const char *v = value_of(s, defs, key, &d);
    return v ? strtoll(v, NULL, 0) : 0;
}

bool kb_opt_bool(const kb_option_set_t *s, const kb_option_def_t *defs, const char *key)
{
    const kb_option_def_t *d;
    const char *v = value_of(s, defs, key, &d);
    bool b = false;
    if (v)
        kb_parse_bool(v, &b);
    return b;
}

uint64_t kb_opt_size(const kb_option_set_t *s, const kb_option_def_t *defs, const char *key)
{
    const kb_option_def_t *d;
    const char *v = value_of(s, defs, key, &d);
    uint64_t u = 0;
    if (v)
        kb_parse_size(v, &u);
    return u;
}

uint64_t kb_opt_time_ms(const kb_option_set_t *s, const kb_option_def_t *defs, const char *key)
{
    const kb_option_def_t *d;
    const char *v = value_of(s, defs, key, &d);
    uint64_t u = 0;
    if (v)
        kb_parse_time_ms(v, &u);
    return u;
}
