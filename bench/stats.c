/*
 * stats.c — the pure part of kembar-bench: size strings, lists, running
 * statistics, percentiles, number formatting and the results table.
 *
 * Promises: no I/O, no globals; every parser refuses what it does not fully
 * understand (-EINVAL) instead of guessing, so a typo on the command line is
 * an error and never a silently different benchmark.
 */
#include "bench/bench.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SIZE_LIMIT (1ull << 50)

/* Suffix -> shift. "k"/"K"/"KiB"/"KB" all mean 1024, as in iozone. */
static int suffix_shift(const char *s)
{
    static const struct { char c; int shift; } tab[] = {
        { 'k', 10 }, { 'm', 20 }, { 'g', 30 }, { 't', 40 },
    };
    if (*s == '\0')
        return 0;
    if (*s == 'b' || *s == 'B')
        return s[1] == '\0' ? 0 : -1;
    for (size_t i = 0; i < sizeof(tab) / sizeof(tab[0]); i++) {
        if ((*s | 0x20) != tab[i].c)
            continue;
        const char *rest = s + 1;
        if (*rest == '\0' || strcmp(rest, "B") == 0 || strcmp(rest, "iB") == 0 ||
            strcmp(rest, "b") == 0 || strcmp(rest, "ib") == 0)
            return tab[i].shift;
        return -1;
    }
    return -1;
}

int bench_parse_size(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    const char *p = s;
    if (!s || *p < '0' || *p > '9')
        return -EINVAL;
    for (; *p >= '0' && *p <= '9'; p++) {
        v = v * 10 + (uint64_t)(*p - '0');
        if (v > SIZE_LIMIT)
            return -EINVAL;
    }
    int shift = suffix_shift(p);
    if (shift < 0 || v == 0 || v > (SIZE_LIMIT >> shift))
        return -EINVAL;
    *out = v << shift;
    return 0;
}

int bench_parse_size_list(const char *s, uint64_t *out, int max)
{
    char item[32];
    int n = 0;
    if (!s || !*s)
        return -EINVAL;
    for (const char *p = s;; ) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (len == 0 || len >= sizeof(item) || n >= max)
            return -EINVAL;
        memcpy(item, p, len);
        item[len] = '\0';
        if (bench_parse_size(item, &out[n]) < 0)
            return -EINVAL;
        n++;
        if (!comma)
            break;
        p = comma + 1;
    }
    return n;
}

int bench_parse_uint(const char *s, unsigned long max, unsigned long *out)
{
    unsigned long v = 0;
    if (!s || !*s)
        return -EINVAL;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return -EINVAL;
        v = v * 10 + (unsigned long)(*s - '0');
        if (v > max)
            return -EINVAL;
    }
    if (v == 0)
        return -EINVAL;
    *out = v;
    return 0;
}

char *bench_fmt_size(uint64_t v, char *buf, size_t len)
{
    static const char suf[] = { 'T', 'G', 'M', 'k' };
    static const int shift[] = { 40, 30, 20, 10 };
    for (int i = 0; i < 4; i++) {
        uint64_t unit = 1ull << shift[i];
        if (v >= unit && v % unit == 0) {
            snprintf(buf, len, "%llu%c", (unsigned long long)(v >> shift[i]), suf[i]);
            return buf;
        }
    }
    snprintf(buf, len, "%llu", (unsigned long long)v);
    return buf;
}

char *bench_fmt_num(double v, char *buf, size_t len)
{
    double a = fabs(v);
    if (isnan(v))
        snprintf(buf, len, "n/a");
    else if (a >= 1000 || a == 0)
        snprintf(buf, len, "%.0f", v);
    else if (a >= 100)
        snprintf(buf, len, "%.1f", v);
    else if (a >= 10)
        snprintf(buf, len, "%.2f", v);
    else if (a >= 1)
        snprintf(buf, len, "%.3f", v);
    else
        snprintf(buf, len, "%.3g", v);
    return buf;
}

void bench_stat_add(bench_stat_t *s, double v)
{
    if (s->n == 0 || v < s->min)
        s->min = v;
    if (s->n == 0 || v > s->max)
        s->max = v;
    s->sum += v;
    s->n++;
}

double bench_stat_mean(const bench_stat_t *s)
{
    if (s->n == 0 || s->failed)
        return NAN;
    return s->sum / s->n;
}

uint64_t bench_percentile(const uint64_t *sorted, size_t n, double p)
{
    if (n == 0)
        return 0;
    /* Nearest rank: the smallest value with at least p% of values <= it.
     * The epsilon keeps 99.9% of 1000 at rank 999 despite binary fractions. */
    double rank = ceil(p * (double)n / 100.0 - 1e-9);
    size_t idx = rank < 1 ? 0 : (size_t)rank - 1;
    return sorted[idx < n ? idx : n - 1];
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

void bench_sort_u64(uint64_t *v, size_t n)
{
    qsort(v, n, sizeof(*v), cmp_u64);
}

bench_row_t *bench_results_row(bench_results_t *r, const char *test, const char *metric,
                               enum bench_unit unit, uint64_t size, uint64_t rec, int qd)
{
    for (size_t i = 0; i < r->nrows; i++) {
        bench_row_t *row = &r->rows[i];
        if (strcmp(row->test, test) == 0 && strcmp(row->metric, metric) == 0 &&
            row->size == size && row->rec == rec && row->qd == qd)
            return row;
    }
    if (r->nrows == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 32;
        bench_row_t *rows = realloc(r->rows, cap * sizeof(*rows));
        if (!rows)
            return NULL;
        r->rows = rows;
        r->cap = cap;
    }
    bench_row_t *row = &r->rows[r->nrows++];
    memset(row, 0, sizeof(*row));
    snprintf(row->test, sizeof(row->test), "%s", test);
    snprintf(row->metric, sizeof(row->metric), "%s", metric);
    row->unit = unit;
    row->size = size;
    row->rec = rec;
    row->qd = qd;
    return row;
}

void bench_results_free(bench_results_t *r)
{
    free(r->rows);
    r->rows = NULL;
    r->nrows = r->cap = 0;
}

const char *bench_unit_name(const bench_row_t *row, bool kb)
{
    switch (row->unit) {
    case BENCH_U_KBPS:
        return kb ? "KB/s" : "MB/s";
    case BENCH_U_IOPS:
        return "IOPS";
    case BENCH_U_CPU:
        return "cpu s/GiB";
    case BENCH_U_OPS:
        return "ops/s";
    case BENCH_U_USEC:
        if (strcmp(row->metric, "p50") == 0)
            return "p50 us";
        if (strcmp(row->metric, "p99") == 0)
            return "p99 us";
        if (strcmp(row->metric, "p99.9") == 0)
            return "p99.9 us";
        return "us";
    }
    return "?";
}

double bench_show(const bench_row_t *row, double v, bool kb)
{
    return row->unit == BENCH_U_KBPS && !kb ? v / 1024.0 : v;
}

int bench_split_url(const char *url, char **spec, char **dir)
{
    *spec = NULL;
    *dir = NULL;
    if (strncmp(url, BENCH_LIB_PREFIX, strlen(BENCH_LIB_PREFIX)) != 0)
        return -EINVAL;
    const char *hosts = url + strlen(BENCH_LIB_PREFIX);
    const char *slash = strchr(hosts, '/');
    if (!slash || slash == hosts || !slash[1] || slash[1] == '/')
        return -EINVAL;
    const char *vol = slash + 1, *rest = strchr(vol, '/');
    size_t vlen = rest ? (size_t)(rest - vol) : strlen(vol);
    if (asprintf(spec, "%.*s:/%.*s", (int)(slash - hosts), hosts, (int)vlen, vol) < 0) {
        *spec = NULL;
        return -ENOMEM;
    }
    size_t dlen = rest ? strlen(rest) : 0;
    while (dlen > 1 && rest[dlen - 1] == '/')
        dlen--;
    *dir = dlen > 1 ? strndup(rest, dlen) : strdup("/");
    if (!*dir) {
        free(*spec);
        *spec = NULL;
        return -ENOMEM;
    }
    return 0;
}
