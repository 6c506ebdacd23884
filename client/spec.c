/*
 * spec.c — the volume spec "host[:port][,host[:port]...]:/volume" (DESIGN §2).
 *
 * Promises: the volume is split at the LAST ":/" (so bracketed IPv6 hosts
 * work); every host is checked with kb_parse_hostport (default port 24800);
 * on failure nothing is left allocated and err says what is wrong in one line.
 */
#include "client/kembar.h"

#include <stdio.h>

static int spec_fail(kbc_spec_t *s, char *err, size_t errlen, const char *fmt, const char *arg)
{
    kbc_spec_clear(s);
    if (err && errlen)
        snprintf(err, errlen, fmt, arg);
    return -EINVAL;
}

/* Volume names: what the CLI accepts, and nothing that could escape a path. */
static bool spec_volume_ok(const char *v)
{
    if (!*v || strlen(v) > KB_NAME_MAX)
        return false;
    for (; *v; v++) {
        char ch = *v;
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '-' || ch == '_' || ch == '.'))
            return false;
    }
    return true;
}

static int spec_add_server(kbc_spec_t *s, const char *hp, char *err, size_t errlen)
{
    if (s->nservers == KBC_MAX_SERVERS)
        return spec_fail(s, err, errlen, "too many servers in volume spec (max 16): '%s'", hp);
    kbc_server_t *sv = &s->servers[s->nservers];
    int rc = kb_parse_hostport(hp, &sv->host, &sv->port, KB_DEFAULT_PORT);
    if (rc == -ENOMEM)
        return spec_fail(s, err, errlen, "out of memory parsing '%s'", hp);
    if (rc < 0)
        return spec_fail(s, err, errlen, "bad server '%s' in volume spec (want HOST[:PORT])", hp);
    s->nservers++;
    return 0;
}

int kbc_spec_parse(const char *spec, kbc_spec_t *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    if (!spec)
        return spec_fail(out, err, errlen, "no volume spec%s", "");
    const char *sep = NULL;
    for (const char *p = strstr(spec, ":/"); p; p = strstr(p + 1, ":/"))
        sep = p;
    if (!sep || sep == spec)
        return spec_fail(out, err, errlen,
                         "bad volume spec '%s' (want HOST[:PORT][,HOST[:PORT]...]:/VOLUME)", spec);
    const char *vol = sep + 2;
    if (!spec_volume_ok(vol))
        return spec_fail(out, err, errlen, "bad volume name '%s'", vol);
    char *hosts = strndup(spec, (size_t)(sep - spec));
    out->volume = strdup(vol);
    if (!hosts || !out->volume) {
        free(hosts);
        return spec_fail(out, err, errlen, "out of memory%s", "");
    }
    int rc = 0;
    char *save = NULL;
    for (char *h = strtok_r(hosts, ",", &save); h && rc == 0; h = strtok_r(NULL, ",", &save))
        rc = spec_add_server(out, h, err, errlen);
    free(hosts);
    if (rc == 0 && out->nservers == 0)
        return spec_fail(out, err, errlen, "no server in volume spec '%s'", spec);
    return rc;
}

void kbc_spec_clear(kbc_spec_t *s)
{
    for (int i = 0; i < s->nservers; i++)
        free(s->servers[i].host);
    free(s->volume);
    memset(s, 0, sizeof(*s));
}

char *kbc_spec_servers_str(const kbc_spec_t *s, char *buf, size_t len)
{
    size_t used = 0;
    if (!len)
        return buf;
    buf[0] = '\0';
    for (int i = 0; i < s->nservers && used < len; i++) {
        const kbc_server_t *sv = &s->servers[i];
        bool v6 = strchr(sv->host, ':') != NULL;
        int n = snprintf(buf + used, len - used, "%s%s%s%s:%u", i ? "," : "", v6 ? "[" : "",
                         sv->host, v6 ? "]" : "", sv->port);
        if (n < 0)
            break;
        used += (size_t)n;
    }
    return buf;
}
