/*
 * volume.c — volume definitions: text format, validation, volfile generation.
 *
 * The definition is a small line-based text file, the same on every node:
 *
 *   format=1
 *   name=vmstore
 *   id=<uuid>
 *   version=7                 bumped by every change; the highest wins
 *   status=started            created | started | stopped
 *   replica=2                 data copies per replica set
 *   arbiter=0                 1: each set has one more, metadata-only brick
 *   op-version=2              the oldest op-version that must be able to
 *                             serve the volume (lib/version.h); absent = 1
 *                             (kembar 0.1.0 wrote none and ignores it)
 *   drain=1,3                 replica sets being drained by remove-brick (set
 *                             indices; absent when none): distribute gives them
 *                             no hash range in new directories
 *   brick=<host>:<port>:<path> <brick-uuid>     in set order
 *   option=<volume key> <value>                 `volume set` values
 *
 * Rejected: a binary format (hard to inspect by hand when a node is sick)
 * and JSON (needs a parser we would have to write or import).
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include "lib/common.h"
#include "server/kembard.h"
#include "xlators/changelog.h"

/* Options that belong to the volume rather than to one translator.
 * cluster.op-version is the definition's op-version field, not an option:
 * `volume set` handles it apart (server/mgmt_volume.c); it is here to be
 * found, documented and completed like the others. */
static const kb_option_def_t volume_options[] = {
    { "auth.allow", "auth.allow", KB_OPT_STR, "*", 0, 0, NULL,
      "Comma-separated client addresses (or * / prefix*) allowed to mount and do I/O" },
    { "auth.reject", "auth.reject", KB_OPT_STR, "", 0, 0, NULL,
      "Comma-separated client addresses refused (checked before auth.allow)" },
    { KBD_OP_VERSION_KEY, KBD_OP_VERSION_KEY, KB_OPT_STR, NULL, 0, 0, NULL,
      "The oldest release that must be able to serve the volume (1 = kembar 0.1, 2 = 0.2; a new volume gets "
      "the oldest its nodes run): `max` raises it to what every node of the volume runs, and setting an "
      "option a release introduced raises it to that release; it never goes down, and a node of an older "
      "release is no longer given the volume" },
    { NULL },
};

const kb_option_def_t *kbd_volume_options(void) { return volume_options; }

uint32_t kbd_volume_needs(const kbd_volume_t *v)
{
    uint32_t need = 1;
    for (size_t i = 0; i < kb_opts_count(v->opts); i++) {
        const char *k, *val;
        kb_opts_at(v->opts, i, &k, &val);
        need = KB_MAX(need, kb_opt_since(k));
    }
    return need;
}

const kb_option_def_t *kbd_option_find(const char *volume_key, const char **xl_type)
{
    for (const kb_option_def_t *d = volume_options; d->key; d++)
        if (strcmp(d->volume_key, volume_key) == 0) {
            if (xl_type)
                *xl_type = "volume";
            return d;
        }
    for (size_t i = 0; i < kb_xlator_ntypes; i++) {
        const kb_xlator_type_t *t = kb_xlator_types[i];
        for (const kb_option_def_t *d = t ? t->options : NULL; d && d->key; d++)
            if (d->volume_key && strcmp(d->volume_key, volume_key) == 0) {
                if (xl_type)
                    *xl_type = t->name;
                return d;
            }
    }
    return NULL;
}

bool kbd_volname_ok(const char *n)
{
    size_t len = strlen(n);
    if (len == 0 || len > 64 || n[0] == '-')
        return false;
    for (size_t i = 0; i < len; i++)
        if (!isalnum((unsigned char)n[i]) && n[i] != '-' && n[i] != '_')
            return false;
    return true;
}

const char *kbd_status_name(int s)
{
    return s == KBD_VOL_STARTED ? "started" : s == KBD_VOL_STOPPED ? "stopped" : "created";
}

/* A host is a DNS name or an IPv4 address ([A-Za-z0-9.-_]), or an IPv6
 * address (validated by inet_pton): anything else could not round-trip
 * through the definition file or the volfile. */
static bool host_ok(const char *h)
{
    if (!*h || strlen(h) > 253)
        return false;
    if (strchr(h, ':')) {
        unsigned char a[16];
        return inet_pton(AF_INET6, h, a) == 1;
    }
    for (const char *c = h; *c; c++)
        if (!isalnum((unsigned char)*c) && *c != '.' && *c != '-' && *c != '_')
            return false;
    return true;
}

/* A brick path must survive the volfile (where '#' starts a comment and
 * values are trimmed) and the definition file (line based): no '#', no
 * white space, no control characters. */
static bool path_ok(const char *p)
{
    for (const unsigned char *c = (const unsigned char *)p; *c; c++)
        if (*c == '#' || isspace(*c) || *c < 0x20 || *c == 0x7f)
            return false;
    return true;
}

int kbd_brick_parse(const char *spec, kbd_brick_t *b, char *err, size_t errlen)
{
    memset(b, 0, sizeof(*b));
    const char *slash = strstr(spec, ":/");
    if (!slash || slash == spec) {
        snprintf(err, errlen, "bad brick '%s': expected HOST[:PORT]:/absolute/path", spec);
        return -EINVAL;
    }
    const char *path = slash + 1;
    if (strlen(path) >= KB_PATH_MAX || strstr(path, "/../") || strstr(path, "/./") ||
        (strlen(path) >= 3 && strcmp(path + strlen(path) - 3, "/..") == 0)) {
        snprintf(err, errlen, "bad brick '%s': path must be absolute and normalised", spec);
        return -EINVAL;
    }
    char *hp = strndup(spec, (size_t)(slash - spec));
    if (!hp)
        return -ENOMEM;
    int rc = kb_parse_hostport(hp, &b->host, &b->port, KB_DEFAULT_PORT);
    free(hp);
    if (rc || !host_ok(b->host)) {
        snprintf(err, errlen, "bad brick '%s': bad host or port", spec);
        free(b->host);
        b->host = NULL;
        return -EINVAL;
    }
    if (!path_ok(path)) {
        snprintf(err, errlen, "bad brick '%s': the path may not contain '#', spaces or control characters", spec);
        free(b->host);
        b->host = NULL;
        return -EINVAL;
    }
    b->path = strdup(path);
    /* strip trailing slashes (but keep "/") */
    for (size_t n = strlen(b->path); n > 1 && b->path[n - 1] == '/'; n--)
        b->path[n - 1] = 0;
    if (strcmp(b->path, "/") == 0) {
        snprintf(err, errlen, "bad brick '%s': the root directory cannot be a brick", spec);
        free(b->host);
        free(b->path);
        return -EINVAL;
    }
    return 0;
}

char *kbd_brick_str(const kbd_brick_t *b)
{
    char *s = NULL;
    bool v6 = strchr(b->host, ':') != NULL;
    if (asprintf(&s, "%s%s%s:%u:%s", v6 ? "[" : "", b->host, v6 ? "]" : "", b->port, b->path) < 0)
        return NULL;
    return s;
}

void kbd_volume_free(kbd_volume_t *v)
{
    if (!v)
        return;
    for (int i = 0; i < v->nbricks; i++) {
        free(v->bricks[i].host);
        free(v->bricks[i].path);
    }
    free(v->bricks);
    free(v->name);
    kb_opts_free(v->opts);
    free(v);
}

static int add_brick_line(kbd_volume_t *v, char *val, char *err, size_t errlen)
{
    char *sp = strrchr(val, ' ');
    kbd_brick_t b;
    if (!sp)
        goto bad;
    *sp = 0;
    if (kbd_brick_parse(val, &b, err, errlen))
        return -EINVAL;
    if (kb_gfid_parse(sp + 1, &b.id)) {
        free(b.host);
        free(b.path);
        goto bad;
    }
    kbd_brick_t *nb = realloc(v->bricks, (size_t)(v->nbricks + 1) * sizeof(*nb));
    if (!nb) {
        free(b.host);
        free(b.path);
        return -ENOMEM;
    }
    v->bricks = nb;
    v->bricks[v->nbricks++] = b;
    return 0;
bad:
    snprintf(err, errlen, "bad brick line");
    return -EINVAL;
}

/* A count in 0..1000, or -1 (refused later) for anything else. */
static int small_int(const char *s)
{
    char *end;
    errno = 0;
    long x = strtol(s, &end, 10);
    return end == s || *end || errno || x < 0 || x > 1000 ? -1 : (int)x;
}

void kbd_mask_csv(uint64_t mask, char *buf, size_t len)
{
    size_t off = 0;
    buf[0] = 0;
    for (int i = 0; i < KBD_MAX_SETS && off + 4 < len; i++)
        if (mask & (1ull << i))
            off += (size_t)snprintf(buf + off, len - off, "%s%d", off ? "," : "", i);
}

int kbd_mask_parse(const char *csv, uint64_t *mask)
{
    uint64_t m = 0;
    const char *p = csv;
    do {
        char *end;
        if (*p < '0' || *p > '9')
            return -EINVAL;
        errno = 0;
        unsigned long i = strtoul(p, &end, 10);
        if (errno || i >= KBD_MAX_SETS || (*end && *end != ','))
            return -EINVAL;
        m |= 1ull << i;
        p = *end ? end + 1 : end;
    } while (*p);
    if (p > csv && p[-1] == ',')
        return -EINVAL;
    *mask = m;
    return 0;
}

/* Drained sets exist, and at least one set is not drained. */
static bool drain_ok(const kbd_volume_t *v)
{
    if (!v->drain)
        return true;
    int nsets = v->nbricks / kbd_set_size(v);
    uint64_t all = nsets >= KBD_MAX_SETS ? ~0ull : (1ull << nsets) - 1;
    return (v->drain & ~all) == 0 && (all & ~v->drain) != 0;
}

kbd_volume_t *kbd_volume_parse(const char *text, char *err, size_t errlen)
{
    kbd_volume_t *v = kb_zalloc(sizeof(*v));
    char *copy = strdup(text);
    if (!v || !copy || !(v->opts = kb_opts_new())) {
        snprintf(err, errlen, "out of memory");
        free(copy);
        kbd_volume_free(v);
        return NULL;
    }
    v->replica = 1;
    v->op_version = 1;                  /* absent: written by kembar 0.1.0 */
    int rc = 0;
    bool have_id = false;
    char *save = NULL;
    for (char *l = strtok_r(copy, "\n", &save); l && !rc; l = strtok_r(NULL, "\n", &save)) {
        if (l[0] == '#' || !l[0])
            continue;
        char *eq = strchr(l, '=');
        if (!eq) {
            snprintf(err, errlen, "bad line '%s'", l);
            rc = -EINVAL;
            break;
        }
        *eq = 0;
        char *k = l, *val = eq + 1;
        if (strcmp(k, "name") == 0) {
            free(v->name);
            v->name = strdup(val);
        } else if (strcmp(k, "id") == 0) {
            have_id = kb_gfid_parse(val, &v->id) == 0;
        } else if (strcmp(k, "version") == 0) {
            v->version = (uint32_t)strtoul(val, NULL, 10);
        } else if (strcmp(k, "op-version") == 0) {
            char *end;
            errno = 0;
            unsigned long ov = strtoul(val, &end, 10);
            if (errno || end == val || *end || ov < 1 || ov > UINT32_MAX) {
                snprintf(err, errlen, "bad op-version line");
                rc = -EINVAL;
            }
            v->op_version = (uint32_t)ov;
        } else if (strcmp(k, "status") == 0) {
            v->status = strcmp(val, "started") == 0 ? KBD_VOL_STARTED
                        : strcmp(val, "stopped") == 0 ? KBD_VOL_STOPPED : KBD_VOL_CREATED;
        } else if (strcmp(k, "replica") == 0) {
            v->replica = small_int(val);
        } else if (strcmp(k, "arbiter") == 0) {
            v->arbiter = small_int(val);
        } else if (strcmp(k, "drain") == 0) {
            if (kbd_mask_parse(val, &v->drain)) {
                snprintf(err, errlen, "bad drain line");
                rc = -EINVAL;
            }
        } else if (strcmp(k, "brick") == 0) {
            rc = add_brick_line(v, val, err, errlen);
        } else if (strcmp(k, "option") == 0) {
            char *sp = strchr(val, ' ');
            if (!sp) {
                snprintf(err, errlen, "bad option line");
                rc = -EINVAL;
            } else {
                *sp = 0;
                rc = kb_opts_set(v->opts, val, sp + 1);
            }
        }
        /* unknown keys (format, future fields) are ignored */
    }
    free(copy);
    if (!rc && (!v->name || !kbd_volname_ok(v->name) || !have_id || v->nbricks == 0 || v->replica < 1 ||
                v->replica > KB_CL_MAX_REPLICA || v->arbiter < 0 || v->arbiter > 1 ||
                kbd_set_size(v) > KB_CL_MAX_REPLICA || v->nbricks % kbd_set_size(v) ||
                kbd_nsets(v) > KBD_MAX_SETS || !drain_ok(v))) {
        snprintf(err, errlen, "incomplete or inconsistent volume definition");
        rc = -EINVAL;
    }
    if (rc) {
        kbd_volume_free(v);
        return NULL;
    }
    return v;
}

char *kbd_volume_format(const kbd_volume_t *v)
{
    kb_enc_t e;
    char line[KB_PATH_MAX + 512], id[KB_GFID_STRLEN];
    kb_enc_init(&e);
#define PUT(...) do { int n_ = snprintf(line, sizeof(line), __VA_ARGS__); \
                      kb_enc_bytes(&e, line, (size_t)KB_MIN(n_, (int)sizeof(line) - 1)); } while (0)
    PUT("format=1\nname=%s\nid=%s\nversion=%u\nstatus=%s\nreplica=%d\narbiter=%d\nop-version=%u\n", v->name,
        kb_gfid_str(&v->id, id), v->version, kbd_status_name(v->status), v->replica, v->arbiter,
        KB_MAX(v->op_version, 1u));
    if (v->drain) {
        char csv[256];
        kbd_mask_csv(v->drain, csv, sizeof(csv));
        PUT("drain=%s\n", csv);
    }
    for (int i = 0; i < v->nbricks; i++) {
        char *bs = kbd_brick_str(&v->bricks[i]), bid[KB_GFID_STRLEN];
        PUT("brick=%s %s\n", bs ? bs : "?", kb_gfid_str(&v->bricks[i].id, bid));
        free(bs);
    }
    for (size_t i = 0; i < kb_opts_count(v->opts); i++) {
        const char *k, *val;
        kb_opts_at(v->opts, i, &k, &val);
        PUT("option=%s %s\n", k, val);
    }
#undef PUT
    return kbd_enc_text(&e);
}

char *kbd_enc_text(kb_enc_t *e)
{
    kb_enc_u8(e, 0);
    if (e->err) {
        kb_enc_free(e);
        return NULL;
    }
    return (char *)e->p;   /* the buffer is the caller's now */
}

/* Emit the `volume set` options that apply to translator type TYPE. */
static void emit_opts(kb_enc_t *e, const kbd_volume_t *v, const char *type)
{
    const kb_xlator_type_t *t = kb_xlator_type_find(type);
    for (const kb_option_def_t *d = t ? t->options : NULL; d && d->key; d++) {
        const char *val = d->volume_key ? kb_opts_raw(v->opts, d->volume_key) : NULL;
        if (val) {
            char line[1024];
            int n = snprintf(line, sizeof(line), "  option %s %s\n", d->key, val);
            kb_enc_bytes(e, line, (size_t)KB_MIN(n, (int)sizeof(line) - 1));
        }
    }
}

static void put(kb_enc_t *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(kb_enc_t *e, const char *fmt, ...)
{
    char line[KB_PATH_MAX + 256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    kb_enc_bytes(e, line, (size_t)KB_MIN(n, (int)sizeof(line) - 1));
}

/* The protocol/client stanza "<vol>-<what>-<i>" for brick I. */
static void put_client(kb_enc_t *e, const kbd_volume_t *v, int i, const char *what)
{
    const kbd_brick_t *b = &v->bricks[i];
    put(e, "volume %s-%s-%d\n  type protocol/client\n  option remote-host %s\n"
           "  option remote-port %u\n  option remote-subvolume %s\n  option volume %s\n"
           "  option volume-version %u\n",
        v->name, what, i, b->host, b->port, b->path, v->name, v->version);
    emit_opts(e, v, "protocol/client");
    put(e, "end-volume\n\n");
}

/* Does this build's cluster/distribute declare option KEY? drain-sets is
 * emitted only then: a graph with an option its translator does not know
 * is refused, and a refused client volfile would stop every mount. */
static bool dist_knows(const char *key)
{
    const kb_xlator_type_t *t = kb_xlator_type_find("cluster/distribute");
    for (const kb_option_def_t *d = t ? t->options : NULL; d && d->key; d++)
        if (strcmp(d->key, key) == 0)
            return true;
    return false;
}

/* performance/write-behind on top of the client graph, over "<vol>-<below>".
 * Emitted even with `performance.write-behind off` (the option then reaches
 * it): off, it writes nothing behind but still orders a switched client's
 * calls after the writes its previous graph has outstanding. Left out only
 * when this build lacks the type (a volfile naming an unknown type would
 * stop every mount). */
static void put_write_behind(kb_enc_t *e, const kbd_volume_t *v, const char *below)
{
    if (!kb_xlator_type_find("performance/write-behind"))
        return;
    put(e, "\nvolume %s-write-behind\n  type performance/write-behind\n", v->name);
    emit_opts(e, v, "performance/write-behind");
    put(e, "  subvolumes %s-%s\nend-volume\n", v->name, below);
}

char *kbd_volgen_client(const kbd_volume_t *v)
{
    kb_enc_t e;
    kb_enc_init(&e);
    int k = kbd_set_size(v), nsets = v->nbricks / k;
    for (int i = 0; i < v->nbricks; i++)
        put_client(&e, v, i, "client");
    for (int s = 0; s < nsets && k > 1; s++) {
        put(&e, "volume %s-replicate-%d\n  type cluster/replicate\n", v->name, s);
        if (v->arbiter)
            put(&e, "  option arbiter-count 1\n");
        emit_opts(&e, v, "cluster/replicate");
        put(&e, "  subvolumes");
        for (int i = 0; i < k; i++)
            put(&e, " %s-client-%d", v->name, s * k + i);
        put(&e, "\nend-volume\n\n");
    }
    if (nsets > 1) {
        put(&e, "volume %s-dht\n  type cluster/distribute\n", v->name);
        emit_opts(&e, v, "cluster/distribute");
        if (v->drain && dist_knows("drain-sets")) {
            char csv[256];
            kbd_mask_csv(v->drain, csv, sizeof(csv));
            put(&e, "  option drain-sets %s\n", csv);
        }
        put(&e, "  subvolumes");
        for (int s = 0; s < nsets; s++)
            put(&e, k > 1 ? " %s-replicate-%d" : " %s-client-%d", v->name, s);
        put(&e, "\nend-volume\n");
    }
    put_write_behind(&e, v, nsets > 1 ? "dht" : k > 1 ? "replicate-0" : "client-0");
    return kbd_enc_text(&e);
}

char *kbd_volgen_shd(const kbd_volume_t *v, int set, const char *heal_children)
{
    kb_enc_t e;
    kb_enc_init(&e);
    int k = kbd_set_size(v);
    for (int i = set * k; i < (set + 1) * k && i < v->nbricks; i++)
        put_client(&e, v, i, "shd-client");
    put(&e, "volume %s-shd-%d\n  type cluster/replicate\n  option self-heal-daemon on\n"
            "  option heal-children %s\n", v->name, set, heal_children);
    if (v->arbiter)
        put(&e, "  option arbiter-count 1\n");
    emit_opts(&e, v, "cluster/replicate");
    put(&e, "  subvolumes");
    for (int i = set * k; i < (set + 1) * k && i < v->nbricks; i++)
        put(&e, " %s-shd-client-%d", v->name, i);
    put(&e, "\nend-volume\n");
    return kbd_enc_text(&e);
}

/* The stanzas are named by the brick's id (its first 8 hex digits), not its
 * index: remove-brick commit renumbers the bricks after the removed sets, and
 * a brick whose volfile does not change keeps running (no reconnects). */
char *kbd_volgen_brick(const kbd_volume_t *v, int i)
{
    kb_enc_t e;
    char id[KB_GFID_STRLEN], bid[KB_GFID_STRLEN];
    kb_enc_init(&e);
    kb_gfid_str(&v->bricks[i].id, bid);
    bid[8] = 0;
    put(&e, "volume %s-posix-%s\n  type storage/posix\n  option directory %s\n  option volume-id %s\n",
        v->name, bid, v->bricks[i].path, kb_gfid_str(&v->id, id));
    emit_opts(&e, v, "storage/posix");
    put(&e, "end-volume\n\nvolume %s-locks-%s\n  type features/locks\n", v->name, bid);
    emit_opts(&e, v, "features/locks");
    put(&e, "  subvolumes %s-posix-%s\nend-volume\n", v->name, bid);
    return kbd_enc_text(&e);
}
