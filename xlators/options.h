/*
 * options.h — typed option tables (DESIGN §3).
 *
 * Each translator declares its options once: key, type, default, range,
 * description. The same table validates volfile options at graph build,
 * `kembar volume set` values, and generates the options reference in the
 * README (`kembar volume set help`).
 */
#ifndef KB_OPTIONS_H
#define KB_OPTIONS_H

#include <stdint.h>
#include <stdbool.h>
#include <stddef.h>

typedef enum kb_opt_type {
    KB_OPT_STR, KB_OPT_INT, KB_OPT_BOOL, KB_OPT_SIZE, /* bytes, accepts 4KB, 1MiB, 1G */
    KB_OPT_TIME, /* seconds, accepts fractions: "0.5" */
    KB_OPT_ENUM, /* one of choices, '|' separated */
    KB_OPT_PATH,
} kb_opt_type_t;

typedef struct kb_option_def {
    const char *key;            /* volfile key, e.g. "ping-timeout" */
    const char *volume_key;     /* `volume set` key, e.g. "network.ping-timeout"; NULL = not settable */
    kb_opt_type_t type;
    const char *dflt;           /* textual default, NULL = unset */
    int64_t min, max;           /* INT/SIZE/TIME(ms) range, ignored when min == max == 0 */
    const char *choices;        /* ENUM: "none|auto|fixed" */
    const char *description;
} kb_option_def_t;

typedef struct kb_option_set kb_option_set_t;

kb_option_set_t *kb_opts_new(void);
void kb_opts_free(kb_option_set_t *s);
int kb_opts_set(kb_option_set_t *s, const char *key, const char *value); /* raw text, 0/-ENOMEM */
const char *kb_opts_raw(const kb_option_set_t *s, const char *key);      /* NULL if unset */
/* Validate every key of S against DEFS (unknown key or bad value -> -EINVAL with reason). */
int kb_opts_validate(const kb_option_set_t *s, const kb_option_def_t *defs, char *err, size_t errlen);
/* Validate one value against its def. 0 or -EINVAL with a one-line reason. */
int kb_opt_check(const kb_option_def_t *def, const char *value, char *err, size_t errlen);

/* Typed getters: the set value, or the def's default. Valid after validate. */
const char *kb_opt_str(const kb_option_set_t *s, const kb_option_def_t *defs, const char *key);
int64_t kb_opt_int(const kb_option_set_t *s, const kb_option_def_t *defs, const char *key);
bool kb_opt_bool(const kb_option_set_t *s, const kb_option_def_t *defs, const char *key);
uint64_t kb_opt_size(const kb_option_set_t *s, const kb_option_def_t *defs, const char *key);
uint64_t kb_opt_time_ms(const kb_option_set_t *s, const kb_option_def_t *defs, const char *key);

/* The op-version (lib/version.h) that introduced the `volume set` key
 * VOLUME_KEY: 1 (the first release) unless xlators/options.c lists it. Kept
 * apart from the tables (whose entries are positional) in one list; a unit
 * test holds the keys of the first release, so a new key cannot be left out
 * of it. `volume set` refuses a key while a node or client of the volume
 * runs an older release, and raises the volume's op-version to it: an older
 * translator refuses a graph naming an option it does not know. */
uint32_t kb_opt_since(const char *volume_key);

/* Parsers shared by the CLI. */
int kb_parse_size(const char *s, uint64_t *out);     /* 0 / -EINVAL */
int kb_parse_bool(const char *s, bool *out);
int kb_parse_time_ms(const char *s, uint64_t *out);

/* Iterate: key/value pairs in insertion order. */
size_t kb_opts_count(const kb_option_set_t *s);
void kb_opts_at(const kb_option_set_t *s, size_t i, const char **key, const char **value);

#endif
