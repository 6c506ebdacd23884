/*
 * stats_test.c — kembar-bench's pure code: size strings and lists,
 * running statistics, percentiles, number formatting, the results table and
 * the four report writers (table, CSV, JSON, SVG) with their escaping.
 *
 * bench/ is a program, not part of libkembar, so its two pure modules are
 * compiled into this test directly.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/stats.c"
#include "bench/report.c"

Test(bench_size, parses_binary_suffixes)
{
    static const struct { const char *s; uint64_t v; } ok[] = {
        { "4096", 4096 }, { "1k", 1024 }, { "128K", 128 << 10 }, { "1M", 1 << 20 },
        { "10m", 10 << 20 }, { "1MiB", 1 << 20 }, { "1MB", 1 << 20 }, { "2kb", 2048 },
        { "1G", 1ull << 30 }, { "3t", 3ull << 40 }, { "512B", 512 }, { "1048576G", 1ull << 50 },
        { "1125899906842624", 1ull << 50 },
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        uint64_t v = 0;
        cr_assert_eq(bench_parse_size(ok[i].s, &v), 0, "%s", ok[i].s);
        cr_assert_eq(v, ok[i].v, "%s -> %llu", ok[i].s, (unsigned long long)v);
    }
    static const char *const bad[] = {
        "", "0", "0k", "-1", "+1", "k", "1X", "1MM", "1Mi", "1.5M", " 1M", "1M ", "1P",
        "1048577G", "1125899906842625", "99999999999999999999999", "1,2", "1kiBx",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint64_t v = 7;
        cr_assert_eq(bench_parse_size(bad[i], &v), -EINVAL, "'%s'", bad[i]);
        cr_assert_eq(v, 7, "'%s' must not change the output", bad[i]);
    }
    uint64_t v;
    cr_assert_eq(bench_parse_size(NULL, &v), -EINVAL);
}

Test(bench_size, lists)
{
    uint64_t v[BENCH_MAX_LIST];
    cr_assert_eq(bench_parse_size_list("1M,10M,100M", v, BENCH_MAX_LIST), 3);
    cr_assert_eq(v[0], 1 << 20);
    cr_assert_eq(v[1], 10 << 20);
    cr_assert_eq(v[2], 100 << 20);
    cr_assert_eq(bench_parse_size_list("128k", v, BENCH_MAX_LIST), 1);
    cr_assert_eq(v[0], 128 << 10);
    static const char *const bad[] = { "", ",", ",1M", "1M,", "1M,,2M", "1M,x", "1M;2M" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_assert_eq(bench_parse_size_list(bad[i], v, BENCH_MAX_LIST), -EINVAL, "'%s'", bad[i]);
    cr_assert_eq(bench_parse_size_list("1k,2k,3k", v, 2), -EINVAL, "more entries than room");
    cr_assert_eq(bench_parse_size_list("1k,2k", v, 2), 2);
}

Test(bench_size, uints)
{
    unsigned long v = 0;
    cr_assert_eq(bench_parse_uint("5", 100, &v), 0);
    cr_assert_eq(v, 5);
    cr_assert_eq(bench_parse_uint("100", 100, &v), 0);
    cr_assert_eq(v, 100);
    static const char *const bad[] = { "", "0", "101", "-3", "1a", " 1", "99999999999999999999999" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_assert_eq(bench_parse_uint(bad[i], 100, &v), -EINVAL, "'%s'", bad[i]);
}

static void expect_url(const char *url, const char *spec, const char *dir)
{
    char *s = NULL, *d = NULL;
    cr_assert_eq(bench_split_url(url, &s, &d), 0, "%s", url);
    cr_assert_str_eq(s, spec, "%s", url);
    cr_assert_str_eq(d, dir, "%s", url);
    free(s);
    free(d);
}

Test(bench_url, libkembar_targets)
{
    expect_url("kembar://n1/vm", "n1:/vm", "/");
    expect_url("kembar://n1:24800/vm/", "n1:24800:/vm", "/");
    expect_url("kembar://n1:1,n2:2/vm/a/b//", "n1:1,n2:2:/vm", "/a/b");
    expect_url("kembar://[::1]:9000/v/x", "[::1]:9000:/v", "/x");
    static const char *const bad[] = {
        "kembar://", "kembar://h", "kembar://h/", "kembar:///v", "kembar://h//v", "/mnt/x",
        "kembar:/h/v",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char *s = (char *)1, *d = (char *)1;
        cr_assert_eq(bench_split_url(bad[i], &s, &d), -EINVAL, "'%s'", bad[i]);
        cr_assert(s == NULL && d == NULL, "'%s': outputs cleared", bad[i]);
    }
}

Test(bench_format, sizes_and_numbers)
{
    char b[32];
    cr_assert_str_eq(bench_fmt_size(1 << 20, b, sizeof(b)), "1M");
    cr_assert_str_eq(bench_fmt_size(128 << 10, b, sizeof(b)), "128k");
    cr_assert_str_eq(bench_fmt_size(1536, b, sizeof(b)), "1536");
    cr_assert_str_eq(bench_fmt_size(1000, b, sizeof(b)), "1000");
    cr_assert_str_eq(bench_fmt_size(3ull << 30, b, sizeof(b)), "3G");
    cr_assert_str_eq(bench_fmt_size(1ull << 40, b, sizeof(b)), "1T");
    cr_assert_str_eq(bench_fmt_size(1536ull << 20, b, sizeof(b)), "1536M");
    cr_assert_str_eq(bench_fmt_size(0, b, sizeof(b)), "0");
    cr_assert_str_eq(bench_fmt_num(123456.7, b, sizeof(b)), "123457");
    cr_assert_str_eq(bench_fmt_num(1000, b, sizeof(b)), "1000");
    cr_assert_str_eq(bench_fmt_num(123.25, b, sizeof(b)), "123.2");  /* round-half-even of an exact .25 */
    cr_assert_str_eq(bench_fmt_num(12.5, b, sizeof(b)), "12.50");
    cr_assert_str_eq(bench_fmt_num(2, b, sizeof(b)), "2.000");
    cr_assert_str_eq(bench_fmt_num(0.0125, b, sizeof(b)), "0.0125");
    cr_assert_str_eq(bench_fmt_num(0, b, sizeof(b)), "0");
    cr_assert_str_eq(bench_fmt_num(NAN, b, sizeof(b)), "n/a");
}

Test(bench_stats, mean_min_max)
{
    bench_stat_t s = { 0 };
    cr_assert(isnan(bench_stat_mean(&s)), "no samples: no mean");
    bench_stat_add(&s, 5);
    bench_stat_add(&s, 1);
    bench_stat_add(&s, 9);
    bench_stat_add(&s, 5);
    cr_assert_eq(s.n, 4);
    cr_assert_float_eq(bench_stat_mean(&s), 5.0, 1e-12);
    cr_assert_float_eq(s.min, 1.0, 0);
    cr_assert_float_eq(s.max, 9.0, 0);
    bench_stat_t neg = { 0 };
    bench_stat_add(&neg, -3);
    cr_assert_float_eq(neg.min, -3.0, 0);
    cr_assert_float_eq(neg.max, -3.0, 0);
    s.failed = true;
    cr_assert(isnan(bench_stat_mean(&s)), "a failed cell has no mean");
}

Test(bench_stats, percentiles_nearest_rank)
{
    uint64_t v[1000];
    for (int i = 0; i < 1000; i++)
        v[i] = (uint64_t)(1000 - i);          /* 1000..1, unsorted */
    bench_sort_u64(v, 1000);
    for (int i = 0; i < 1000; i++)
        cr_assert_eq(v[i], (uint64_t)i + 1);
    cr_assert_eq(bench_percentile(v, 1000, 50), 500);
    cr_assert_eq(bench_percentile(v, 1000, 99), 990);
    cr_assert_eq(bench_percentile(v, 1000, 99.9), 999);
    cr_assert_eq(bench_percentile(v, 1000, 100), 1000);
    cr_assert_eq(bench_percentile(v, 1000, 0.01), 1);
    cr_assert_eq(bench_percentile(v, 100, 99.9), 100, "rank rounds up");
    cr_assert_eq(bench_percentile(v, 3, 50), 2);
    cr_assert_eq(bench_percentile(v, 1, 99), 1);
    cr_assert_eq(bench_percentile(v, 0, 50), 0, "no samples");
}

Test(bench_results, rows_find_or_append_in_order)
{
    bench_results_t r = { .ntargets = 2 };
    bench_row_t *a = bench_results_row(&r, "write", "", BENCH_U_KBPS, 1 << 20, 128 << 10, 0);
    cr_assert_not_null(a);
    bench_stat_add(&a->cell[1], 42);
    for (int i = 0; i < 100; i++)            /* forces the array to grow and move */
        cr_assert_not_null(bench_results_row(&r, "read", "", BENCH_U_KBPS, (uint64_t)i + 1, 512, 0));
    bench_row_t *again = bench_results_row(&r, "write", "", BENCH_U_KBPS, 1 << 20, 128 << 10, 0);
    cr_assert_eq(again, &r.rows[0], "found, not appended");
    cr_assert_eq(again->cell[1].n, 1);
    cr_assert_float_eq(again->cell[1].sum, 42.0, 0);
    cr_assert_eq(r.nrows, 101);
    cr_assert_eq(r.rows[100].size, 100);
    bench_row_t *cpu = bench_results_row(&r, "write", "cpu", BENCH_U_CPU, 1 << 20, 128 << 10, 0);
    cr_assert_eq(cpu, &r.rows[101], "the metric is part of the key");
    bench_row_t *qd = bench_results_row(&r, "write", "", BENCH_U_KBPS, 1 << 20, 128 << 10, 4);
    cr_assert_eq(qd, &r.rows[102], "so is the queue depth");
    cr_assert_eq(qd->cell[0].n, 0, "new rows start empty");
    bench_results_free(&r);
    cr_assert_eq(r.nrows, 0);
}

Test(bench_results, units)
{
    bench_row_t row = { .unit = BENCH_U_KBPS };
    cr_assert_str_eq(bench_unit_name(&row, false), "MB/s");
    cr_assert_str_eq(bench_unit_name(&row, true), "KB/s");
    cr_assert_float_eq(bench_show(&row, 2048, false), 2.0, 0);
    cr_assert_float_eq(bench_show(&row, 2048, true), 2048.0, 0);
    row.unit = BENCH_U_USEC;
    strcpy(row.metric, "p99.9");
    cr_assert_str_eq(bench_unit_name(&row, false), "p99.9 us");
    cr_assert_float_eq(bench_show(&row, 2048, false), 2048.0, 0, "only KB/s is scaled");
    row.unit = BENCH_U_IOPS;
    cr_assert_str_eq(bench_unit_name(&row, false), "IOPS");
    row.unit = BENCH_U_OPS;
    cr_assert_str_eq(bench_unit_name(&row, false), "ops/s");
    cr_assert_float_eq(bench_show(&row, 2048, false), 2048.0, 0, "only KB/s is scaled");
}

Test(bench_axis, nice_steps)
{
    double step, top;
    int ticks;
    bench_axis(1234, &step, &top, &ticks);
    cr_assert_float_eq(step, 200, 1e-9);
    cr_assert_eq(ticks, 7);
    cr_assert_float_eq(top, 1400, 1e-9);
    bench_axis(10, &step, &top, &ticks);
    cr_assert_float_eq(step, 1, 1e-9);
    cr_assert_eq(ticks, 10);
    bench_axis(0, &step, &top, &ticks);
    cr_assert(step == 1 && top == 1 && ticks == 1);
    bench_axis(NAN, &step, &top, &ticks);
    cr_assert(step == 1 && top == 1 && ticks == 1);
    /* Every maximum: 5..10 ticks of a 1/2/5 step, and the top covers it. */
    for (double max = 0.0013; max < 5e7; max *= 1.37) {
        bench_axis(max, &step, &top, &ticks);
        cr_assert(top >= max * (1 - 1e-12), "max %g top %g", max, top);
        cr_assert(ticks >= 5 && ticks <= 10, "max %g: %d ticks", max, ticks);
        double m = step / pow(10, floor(log10(step) + 1e-9));
        cr_assert(fabs(m - 1) < 1e-6 || fabs(m - 2) < 1e-6 || fabs(m - 5) < 1e-6,
                  "max %g: step %g", max, step);
    }
}

/* Run a writer into memory and return the text (caller frees). */
static char *capture(void (*fn)(FILE *, const char *), const char *arg)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    cr_assert_not_null(f);
    fn(f, arg);
    fclose(f);
    return buf;
}

Test(bench_escape, json_xml_csv)
{
    char *s = capture(bench_json_str, "a\"b\\c\nd\t\x01z");
    cr_assert_str_eq(s, "\"a\\\"b\\\\c\\nd\\t\\u0001z\"");
    free(s);
    s = capture(bench_json_str, NULL);
    cr_assert_str_eq(s, "\"\"");
    free(s);
    s = capture(bench_xml_str, "<a&b>\"q'\x02");
    cr_assert_str_eq(s, "&lt;a&amp;b&gt;&quot;q&apos;");
    free(s);
    s = capture(bench_csv_str, "plain");
    cr_assert_str_eq(s, "plain");
    free(s);
    s = capture(bench_csv_str, "a,b");
    cr_assert_str_eq(s, "\"a,b\"");
    free(s);
    s = capture(bench_csv_str, "say \"hi\"");
    cr_assert_str_eq(s, "\"say \"\"hi\"\"\"");
    free(s);
}

/* Two targets, one throughput row with a failed cell, one IOPS row. */
static void sample(bench_results_t *r, bench_meta_t *m)
{
    memset(r, 0, sizeof(*r));
    r->ntargets = 3;
    snprintf(r->target[0].label, BENCH_NAME_MAX, "gluster");
    r->target[0].path = "/mnt/g";
    snprintf(r->target[1].label, BENCH_NAME_MAX, "kem<b>ar");
    r->target[1].path = "/mnt/k,1";
    r->target[1].cpu_what = "pid 42";
    snprintf(r->target[2].label, BENCH_NAME_MAX, "local");
    r->target[2].path = "/var/tmp/x";
    bench_row_t *w = bench_results_row(r, "write", "", BENCH_U_KBPS, 100 << 20, 128 << 10, 0);
    bench_stat_add(&w->cell[0], 1024);       /* 1, 3 MB/s: mean 2 */
    bench_stat_add(&w->cell[0], 3072);
    bench_stat_add(&w->cell[1], 4096);       /* 4 MB/s: 2x */
    w->cell[2].failed = true;
    bench_row_t *io = bench_results_row(r, "randread", "", BENCH_U_IOPS, 256 << 20, 4096, 16);
    bench_stat_add(&io->cell[0], 1000);
    bench_stat_add(&io->cell[1], 3000);
    *m = (bench_meta_t){ .version = "0.1.0", .date = "2030-01-02T03:04:05+0000", .host = "h",
                         .cmdline = "kembar-bench -n 2 'a b'", .seq = true, .runs = 2,
                         .rand_runs = 1, .rand_secs = 10, .drop_caches = true };
}

static char *run_report(int (*fn)(FILE *, const bench_results_t *, const bench_meta_t *))
{
    bench_results_t r;
    bench_meta_t m;
    char *buf = NULL;
    size_t len = 0;
    sample(&r, &m);
    FILE *f = open_memstream(&buf, &len);
    cr_assert_eq(fn(f, &r, &m), 0);
    fclose(f);
    bench_results_free(&r);
    return buf;
}

static int table_mb(FILE *f, const bench_results_t *r, const bench_meta_t *m)
{
    return bench_report_table(f, r, m, false);
}

static const char *line_with(const char *text, const char *needle, char *out, size_t len)
{
    const char *p = strstr(text, needle);
    cr_assert_not_null(p, "no '%s' in:\n%s", needle, text);
    while (p > text && p[-1] != '\n')
        p--;
    const char *e = strchr(p, '\n');
    snprintf(out, len, "%.*s", (int)(e ? e - p : (long)strlen(p)), p);
    return out;
}

Test(bench_report, table)
{
    char *t = run_report(table_mb), line[512];
    cr_assert(strstr(t, "ratio = target / gluster"));
    cr_assert(strstr(t, "(cpu: pid 42)"));
    line_with(t, "unit", line, sizeof(line));
    cr_assert(strstr(line, "kem<b>ar/gluster") && strstr(line, "local/gluster"), "%s", line);
    line_with(t, "write ", line, sizeof(line));
    cr_assert(strstr(line, "100M"), "%s", line);
    cr_assert(strstr(line, "MB/s"), "%s", line);
    cr_assert(strstr(line, "2.000 [1.000-3.000]"), "%s", line);
    cr_assert(strstr(line, "4.000 "), "single run: no range: %s", line);
    cr_assert(strstr(line, "failed"), "%s", line);
    cr_assert(strstr(line, "2.00x"), "%s", line);
    cr_assert(line[strlen(line) - 1] == '-', "no ratio for the failed cell: %s", line);
    line_with(t, "randread", line, sizeof(line));
    cr_assert(strstr(line, "4k qd16") && strstr(line, "IOPS") && strstr(line, "3.00x"), "%s", line);
    cr_assert(strstr(line, "n/a"), "%s", line);
    free(t);
}

Test(bench_report, mail_rows_and_header)
{
    bench_results_t r;
    bench_meta_t m;
    char *buf = NULL, line[512];
    size_t len = 0;
    sample(&r, &m);
    m.seq = false, m.rand_runs = 0;
    m.mail_runs = 1, m.mail_files = 2000, m.mail_dirs = 10, m.mail_tx = 10000;
    m.mail_min = 512, m.mail_max = 65536;
    bench_row_t *tx = bench_results_row(&r, "mail-tx", "", BENCH_U_OPS, 2000, 64 << 10, 0);
    bench_stat_add(&tx->cell[0], 100);
    bench_stat_add(&tx->cell[1], 250);
    FILE *f = open_memstream(&buf, &len);
    cr_assert_eq(bench_report_table(f, &r, &m, false), 0);
    fclose(f);
    cr_assert(strstr(buf, "mail (PostMark's model): 1 run of 2000 files of 512-65536 bytes in 10 "
                          "dirs, 10000 transactions, no fsync\n"), "%s", buf);
    cr_assert_null(strstr(buf, "runs 2, O_DIRECT"), "no sequential settings without them:\n%s", buf);
    line_with(buf, "mail-tx", line, sizeof(line));
    cr_assert(strstr(line, "2000") && strstr(line, "ops/s") && strstr(line, "2.50x"), "%s", line);
    free(buf);
    buf = NULL;
    f = open_memstream(&buf, &len);
    cr_assert_eq(bench_report_csv(f, &r, &m), 0);
    fclose(f);
    cr_assert(strstr(buf, "mail-tx,2000,64k,0,mean,ops/s,gluster,/mnt/g,ok,1,100,100,100,1\n"), "%s", buf);
    free(buf);
    bench_results_free(&r);
}

Test(bench_report, csv)
{
    char *t = run_report(bench_report_csv), line[512];
    int lines = 0;
    for (const char *p = t; *p; p++)
        lines += *p == '\n';
    cr_assert_eq(lines, 1 + 3 * 2 + 3, "header, KB/s+MB/s per target, IOPS per target:\n%s", t);
    cr_assert_str_eq(line_with(t, "test,", line, sizeof(line)),
                     "test,size,record,qd,metric,unit,target,path,status,runs,mean,min,max,ratio_to_first");
    cr_assert(strstr(t, "write,100M,128k,0,mean,KB/s,gluster,/mnt/g,ok,2,2048,1024,3072,1\n"), "%s", t);
    cr_assert(strstr(t, "write,100M,128k,0,mean,MB/s,kem<b>ar,\"/mnt/k,1\",ok,1,4,4,4,2\n"), "%s", t);
    cr_assert(strstr(t, "write,100M,128k,0,mean,MB/s,local,/var/tmp/x,failed,0,,,,\n"), "%s", t);
    cr_assert(strstr(t, "randread,256M,4k,16,mean,IOPS,local,/var/tmp/x,n/a,0,,,,\n"), "%s", t);
    free(t);
}

Test(bench_report, json)
{
    char *t = run_report(bench_report_json);
    cr_assert(strstr(t, "\"command\": \"kembar-bench -n 2 'a b'\""), "%s", t);
    cr_assert(strstr(t, "\"label\": \"kem<b>ar\", \"path\": \"/mnt/k,1\", \"cpu\": \"pid 42\""), "%s", t);
    cr_assert(strstr(t, "\"cpu\": null"), "%s", t);
    cr_assert(strstr(t, "\"target\": \"gluster\", \"status\": \"ok\", \"runs\": 2, \"mean\": 2048, "
                        "\"min\": 1024, \"max\": 3072, \"mbps_mean\": 2, \"mbps_min\": 1, "
                        "\"mbps_max\": 3, \"ratio_to_first\": 1}"), "%s", t);
    cr_assert(strstr(t, "\"target\": \"local\", \"status\": \"failed\", \"runs\": 0, \"mean\": null"),
              "%s", t);
    cr_assert(strstr(t, "\"unit\": \"IOPS\", \"size\": 268435456, \"record\": 4096, \"qd\": 16"), "%s", t);
    /* Balanced brackets and braces (strings hold none here besides the label). */
    int depth = 0;
    for (const char *p = t; *p; p++) {
        depth += (*p == '{' || *p == '[') - (*p == '}' || *p == ']');
        cr_assert(depth >= 0);
    }
    cr_assert_eq(depth, 0);
    free(t);
}

static int count(const char *t, const char *needle)
{
    int n = 0;
    for (const char *p = strstr(t, needle); p; p = strstr(p + 1, needle))
        n++;
    return n;
}

Test(bench_report, svg)
{
    char *t = run_report(bench_report_svg);
    cr_assert(strncmp(t, "<?xml", 5) == 0);
    cr_assert(strstr(t, "<svg xmlns=\"http://www.w3.org/2000/svg\""));
    cr_assert(strstr(t, "</svg>\n"));
    cr_assert(strstr(t, "kem&lt;b&gt;ar"), "labels escaped");
    cr_assert_null(strstr(t, "kem<b>ar"), "never raw");
    cr_assert(strstr(t, "MB/s (2^20 bytes/s)") && strstr(t, ">IOPS<"), "both axes labelled");
    /* Bars: 2 measured + 1 failed throughput cells, 2 IOPS cells + 1 n/a. */
    cr_assert_eq(count(t, "<title>"), 4, "%s", t);
    cr_assert_eq(count(t, ">fail<"), 1);
    cr_assert_eq(count(t, ">n/a<"), 1);
    cr_assert(strstr(t, "<title>2.000</title>") && strstr(t, "<title>3000</title>"));
    cr_assert_eq(count(t, "<svg"), 1);
    cr_assert_eq(count(t, "<text") , count(t, "</text>"));
    free(t);
}

Test(bench_report, svg_log_scale_for_wide_ranges)
{
    bench_results_t r;
    bench_meta_t m;
    char *buf = NULL;
    size_t len = 0;
    sample(&r, &m);
    char *lin = run_report(bench_report_svg);
    cr_assert_null(strstr(lin, "log scale"), "2 vs 4 MB/s: linear");
    free(lin);
    r.rows[0].cell[2].failed = false;
    bench_stat_add(&r.rows[0].cell[2], 1024.0 * 1000);   /* 1000 MB/s next to 1 MB/s */
    FILE *f = open_memstream(&buf, &len);
    cr_assert_eq(bench_report_svg(f, &r, &m), 0);
    fclose(f);
    cr_assert(strstr(buf, "MB/s (2^20 bytes/s), log scale"), "%s", buf);
    cr_assert(strstr(buf, ">1<") && strstr(buf, ">10<") && strstr(buf, ">1000<"), "decade ticks");
    cr_assert_null(strstr(buf, "IOPS, log scale"), "each panel decides alone");
    cr_assert_null(strstr(buf, "nan"), "no NaN coordinates");
    free(buf);
    bench_results_free(&r);
}
