/*
 * report.c — kembar-bench's outputs over one results table: the terminal
 * table, CSV, JSON and a self-made SVG grouped bar chart.
 *
 * Promises: pure functions of (results, meta) writing to a FILE; every
 * user-supplied string (labels, paths, the command line) is escaped for the
 * format it lands in; a cell that was not measured or failed is shown as
 * such ("n/a", "failed") and never as a number; ratios are always
 * "this target / the first target" of the raw values (so for latency and
 * CPU rows a ratio below 1 is the better one).
 */
#include "bench/bench.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define CELL 80

static int file_status(FILE *f)
{
    return ferror(f) ? -EIO : 0;
}

static bool cell_ok(const bench_stat_t *s)
{
    return s->n > 0 && !s->failed;
}

static double ratio(const bench_row_t *row, int t)
{
    if (!cell_ok(&row->cell[t]) || !cell_ok(&row->cell[0]))
        return NAN;
    double base = bench_stat_mean(&row->cell[0]);
    return base > 0 ? bench_stat_mean(&row->cell[t]) / base : NAN;
}

static void fmt_cell(const bench_row_t *row, int t, bool kb, char *buf, size_t len)
{
    const bench_stat_t *s = &row->cell[t];
    char a[24], b[24], c[24];
    if (s->failed) {
        snprintf(buf, len, "failed");
        return;
    }
    if (s->n == 0) {
        snprintf(buf, len, "n/a");
        return;
    }
    bench_fmt_num(bench_show(row, bench_stat_mean(s), kb), a, sizeof(a));
    if (s->n == 1) {
        snprintf(buf, len, "%s", a);
        return;
    }
    bench_fmt_num(bench_show(row, s->min, kb), b, sizeof(b));
    bench_fmt_num(bench_show(row, s->max, kb), c, sizeof(c));
    snprintf(buf, len, "%s [%s-%s]", a, b, c);
}

static void fmt_rec(const bench_row_t *row, char *buf, size_t len)
{
    char r[24];
    bench_fmt_size(row->rec, r, sizeof(r));
    if (row->qd)
        snprintf(buf, len, "%s qd%d", r, row->qd);
    else
        snprintf(buf, len, "%s", r);
}

/* ------------------------------------------------------------------ table */

static void table_header(FILE *f, const bench_results_t *r, const bench_meta_t *m)
{
    fprintf(f, "kembar-bench %s  %s  %s\n", m->version, m->date, m->host);
    if (m->seq || m->rand_runs > 0) {
        fprintf(f, "runs %d, O_DIRECT %s, fsync+close in timing %s, caches dropped before reads %s",
                m->runs, m->direct ? "on" : "off", m->fsync_in_timing ? "on" : "off",
                m->drop_caches ? "on" : "off");
        if (m->rand_runs > 0)
            fprintf(f, ", random: %d x %.0f s O_DIRECT", m->rand_runs, m->rand_secs);
        fprintf(f, "\n");
    }
    if (m->mail_runs > 0)
        fprintf(f, "mail (PostMark's model): %d run%s of %u files of %u-%u bytes in %u dirs, "
                   "%u transactions%s\n", m->mail_runs, m->mail_runs == 1 ? "" : "s",
                m->mail_files, m->mail_min, m->mail_max, m->mail_dirs, m->mail_tx,
                m->mail_fsync ? ", fsync before each close" : ", no fsync");
    for (int t = 0; t < r->ntargets; t++) {
        const bench_target_info_t *ti = &r->target[t];
        fprintf(f, "  %-12s %s", ti->label, ti->path);
        if (ti->cpu_what)
            fprintf(f, "  (cpu: %s)", ti->cpu_what);
        fprintf(f, "\n");
    }
    fprintf(f, "cells: mean [min-max] over the runs; MB = 1024 KB = 2^20 bytes; "
               "ratio = target / %s\n\n", r->target[0].label);
}

int bench_report_table(FILE *f, const bench_results_t *r, const bench_meta_t *m, bool kb)
{
    int nt = r->ntargets, nratio = nt > 1 ? nt - 1 : 0;
    int ncol = 4 + nt + nratio;
    size_t nrows = r->nrows + 1;
    char (*cells)[CELL] = calloc(nrows * (size_t)ncol, CELL);
    int *w = calloc((size_t)ncol, sizeof(int));
    if (!cells || !w) {
        free(cells);
        free(w);
        return -ENOMEM;
    }
#define C(i, j) cells[(size_t)(i) * (size_t)ncol + (size_t)(j)]
    snprintf(C(0, 0), CELL, "test");
    snprintf(C(0, 1), CELL, "size");
    snprintf(C(0, 2), CELL, "record");
    snprintf(C(0, 3), CELL, "unit");
    for (int t = 0; t < nt; t++)
        snprintf(C(0, 4 + t), CELL, "%s", r->target[t].label);
    for (int t = 1; t < nt; t++)
        snprintf(C(0, 4 + nt + t - 1), CELL, "%.28s/%.28s", r->target[t].label,
                 r->target[0].label);
    for (size_t i = 0; i < r->nrows; i++) {
        const bench_row_t *row = &r->rows[i];
        snprintf(C(i + 1, 0), CELL, "%s", row->test);
        bench_fmt_size(row->size, C(i + 1, 1), CELL);
        fmt_rec(row, C(i + 1, 2), CELL);
        snprintf(C(i + 1, 3), CELL, "%s", bench_unit_name(row, kb));
        for (int t = 0; t < nt; t++)
            fmt_cell(row, t, kb, C(i + 1, 4 + t), CELL);
        for (int t = 1; t < nt; t++) {
            double q = ratio(row, t);
            if (isnan(q))
                snprintf(C(i + 1, 4 + nt + t - 1), CELL, "-");
            else
                snprintf(C(i + 1, 4 + nt + t - 1), CELL, "%.2fx", q);
        }
    }
    for (size_t i = 0; i < nrows; i++)
        for (int j = 0; j < ncol; j++)
            if ((int)strlen(C(i, j)) > w[j])
                w[j] = (int)strlen(C(i, j));
    table_header(f, r, m);
    for (size_t i = 0; i < nrows; i++) {
        for (int j = 0; j < ncol; j++) {
            bool last = j == ncol - 1;
            bool right = j >= 4 + nt;     /* ratios: right-aligned */
            if (right)
                fprintf(f, "%*s%s", w[j], C(i, j), last ? "" : "  ");
            else if (last)
                fprintf(f, "%s", C(i, j));
            else
                fprintf(f, "%-*s  ", w[j], C(i, j));
        }
        fprintf(f, "\n");
    }
#undef C
    free(cells);
    free(w);
    return file_status(f);
}

/* -------------------------------------------------------------------- CSV */

void bench_csv_str(FILE *f, const char *s)
{
    if (!strpbrk(s, ",\"\r\n")) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"')
            fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

static void csv_num(FILE *f, double v)
{
    if (!isnan(v))
        fprintf(f, "%.10g", v);
}

static void csv_line(FILE *f, const bench_results_t *r, const bench_row_t *row, int t,
                     const char *unit, double scale)
{
    const bench_stat_t *s = &row->cell[t];
    char sz[24], rec[40];
    bool ok = cell_ok(s);
    fprintf(f, "%s,%s,%s,%d,%s,%s,", row->test, bench_fmt_size(row->size, sz, sizeof(sz)),
            bench_fmt_size(row->rec, rec, sizeof(rec)), row->qd,
            row->metric[0] ? row->metric : "mean", unit);
    bench_csv_str(f, r->target[t].label);
    fputc(',', f);
    bench_csv_str(f, r->target[t].path);
    fprintf(f, ",%s,%d,", s->failed ? "failed" : ok ? "ok" : "n/a", s->n);
    csv_num(f, ok ? bench_stat_mean(s) * scale : NAN);
    fputc(',', f);
    csv_num(f, ok ? s->min * scale : NAN);
    fputc(',', f);
    csv_num(f, ok ? s->max * scale : NAN);
    fputc(',', f);
    csv_num(f, ratio(row, t));
    fputc('\n', f);
}

int bench_report_csv(FILE *f, const bench_results_t *r, const bench_meta_t *m)
{
    (void)m;
    fprintf(f, "test,size,record,qd,metric,unit,target,path,status,runs,mean,min,max,ratio_to_first\n");
    for (size_t i = 0; i < r->nrows; i++) {
        const bench_row_t *row = &r->rows[i];
        for (int t = 0; t < r->ntargets; t++) {
            if (row->unit == BENCH_U_KBPS) {
                csv_line(f, r, row, t, "KB/s", 1.0);
                csv_line(f, r, row, t, "MB/s", 1.0 / 1024.0);
            } else {
                csv_line(f, r, row, t, bench_unit_name(row, false), 1.0);
            }
        }
    }
    return file_status(f);
}

/* ------------------------------------------------------------------- JSON */

void bench_json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
        switch (*p) {
        case '"': fputs("\\\"", f); break;
        case '\\': fputs("\\\\", f); break;
        case '\n': fputs("\\n", f); break;
        case '\r': fputs("\\r", f); break;
        case '\t': fputs("\\t", f); break;
        default:
            if (*p < 0x20)
                fprintf(f, "\\u%04x", *p);
            else
                fputc(*p, f);
        }
    }
    fputc('"', f);
}

static void json_num(FILE *f, double v)
{
    if (isnan(v) || isinf(v))
        fputs("null", f);
    else
        fprintf(f, "%.10g", v);
}

static void json_stat(FILE *f, const char *prefix, const bench_stat_t *s, double scale)
{
    bool ok = cell_ok(s);
    fprintf(f, ", \"%smean\": ", prefix);
    json_num(f, ok ? bench_stat_mean(s) * scale : NAN);
    fprintf(f, ", \"%smin\": ", prefix);
    json_num(f, ok ? s->min * scale : NAN);
    fprintf(f, ", \"%smax\": ", prefix);
    json_num(f, ok ? s->max * scale : NAN);
}

static void json_meta(FILE *f, const bench_meta_t *m)
{
    fprintf(f, "  \"tool\": \"kembar-bench\",\n  \"version\": ");
    bench_json_str(f, m->version);
    fprintf(f, ",\n  \"date\": ");
    bench_json_str(f, m->date);
    fprintf(f, ",\n  \"host\": ");
    bench_json_str(f, m->host);
    fprintf(f, ",\n  \"command\": ");
    bench_json_str(f, m->cmdline);
    fprintf(f, ",\n  \"config\": {\"runs\": %d, \"direct\": %s, \"fsync_in_timing\": %s, "
               "\"drop_caches\": %s, \"rand_runs\": %d, \"rand_seconds\": %g, "
               "\"mail_runs\": %d, \"mail_files\": %u, \"mail_dirs\": %u, "
               "\"mail_transactions\": %u, \"mail_min\": %u, \"mail_max\": %u, "
               "\"mail_fsync\": %s},\n",
            m->runs, m->direct ? "true" : "false", m->fsync_in_timing ? "true" : "false",
            m->drop_caches ? "true" : "false", m->rand_runs, m->rand_secs, m->mail_runs,
            m->mail_files, m->mail_dirs, m->mail_tx, m->mail_min, m->mail_max,
            m->mail_fsync ? "true" : "false");
}

static void json_row(FILE *f, const bench_results_t *r, const bench_row_t *row)
{
    fprintf(f, "    {\"test\": \"%s\", \"metric\": \"%s\", \"unit\": ", row->test,
            row->metric[0] ? row->metric : "mean");
    bench_json_str(f, row->unit == BENCH_U_KBPS ? "KB/s" : bench_unit_name(row, false));
    fprintf(f, ", \"size\": %llu, \"record\": %llu, \"qd\": %d, \"values\": [",
            (unsigned long long)row->size, (unsigned long long)row->rec, row->qd);
    for (int t = 0; t < r->ntargets; t++) {
        const bench_stat_t *s = &row->cell[t];
        fprintf(f, "%s\n      {\"target\": ", t ? "," : "");
        bench_json_str(f, r->target[t].label);
        fprintf(f, ", \"status\": \"%s\", \"runs\": %d",
                s->failed ? "failed" : cell_ok(s) ? "ok" : "n/a", s->n);
        json_stat(f, "", s, 1.0);
        if (row->unit == BENCH_U_KBPS)
            json_stat(f, "mbps_", s, 1.0 / 1024.0);
        fprintf(f, ", \"ratio_to_first\": ");
        json_num(f, ratio(row, t));
        fputc('}', f);
    }
    fprintf(f, "]}");
}

int bench_report_json(FILE *f, const bench_results_t *r, const bench_meta_t *m)
{
    fprintf(f, "{\n");
    json_meta(f, m);
    fprintf(f, "  \"targets\": [");
    for (int t = 0; t < r->ntargets; t++) {
        fprintf(f, "%s\n    {\"label\": ", t ? "," : "");
        bench_json_str(f, r->target[t].label);
        fprintf(f, ", \"path\": ");
        bench_json_str(f, r->target[t].path);
        fprintf(f, ", \"cpu\": ");
        if (r->target[t].cpu_what)
            bench_json_str(f, r->target[t].cpu_what);
        else
            fputs("null", f);
        fputc('}', f);
    }
    fprintf(f, "],\n  \"results\": [\n");
    for (size_t i = 0; i < r->nrows; i++) {
        json_row(f, r, &r->rows[i]);
        fprintf(f, "%s\n", i + 1 < r->nrows ? "," : "");
    }
    fprintf(f, "  ]\n}\n");
    return file_status(f);
}

/* -------------------------------------------------------------------- SVG */

void bench_xml_str(FILE *f, const char *s)
{
    for (; s && *s; s++) {
        switch (*s) {
        case '&': fputs("&amp;", f); break;
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '"': fputs("&quot;", f); break;
        case '\'': fputs("&apos;", f); break;
        default:
            if ((unsigned char)*s >= 0x20 || *s == '\t')
                fputc(*s, f);
        }
    }
}

void bench_axis(double max, double *step, double *top, int *ticks)
{
    if (!(max > 0) || isinf(max)) {
        *step = 1, *top = 1, *ticks = 1;
        return;
    }
    static const double mult[] = { 1, 2, 5 };
    double mag = pow(10, floor(log10(max / 10)));
    /* The smallest 1/2/5 step with at most 10 ticks: the one before had
     * more than 10, and steps grow at most 2.5x, so this one has >= 5. */
    for (int i = 0;; i++) {
        double s = mult[i % 3] * mag * pow(10, i / 3);
        double n = ceil(max / s - 1e-9);
        if (n <= 10) {
            *step = s;
            *ticks = (int)n;
            *top = s * n;
            return;
        }
    }
}

static const char *const palette[BENCH_MAX_TARGETS] = {
    "#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#9c755f",
};

/* One chart panel: the rows of one unit. */
typedef struct panel {
    enum bench_unit unit;
    const char *metric;         /* rows with this metric */
    const char *title;
    const char *axis;
    double scale;               /* stored value -> shown value */
} panel_t;

/* The vertical scale of a panel. Linear from 0 with 1/2/5 steps, or, when
 * the values span more than LOG_SPAN (a local disk next to two network file
 * systems), logarithmic over whole decades, so that equal ratios are equal
 * distances and the small bars stay readable. */
typedef struct vscale {
    bool log;
    double step, top;           /* linear */
    int ticks;
    double lo_exp, hi_exp;      /* log: decades 10^lo_exp .. 10^hi_exp */
} vscale_t;

#define LOG_SPAN 30.0

enum { SVG_LEFT = 78, SVG_RIGHT = 20, SVG_TOP = 58, SVG_PLOT = 240, SVG_BOTTOM = 64 };

static bool panel_has(const bench_row_t *row, const panel_t *p)
{
    return row->unit == p->unit && strcmp(row->metric, p->metric) == 0;
}

static vscale_t panel_scale(const bench_results_t *r, const panel_t *p)
{
    double max = 0, minpos = INFINITY;
    vscale_t v = { 0 };
    for (size_t i = 0; i < r->nrows; i++) {
        if (!panel_has(&r->rows[i], p))
            continue;
        for (int t = 0; t < r->ntargets; t++) {
            const bench_stat_t *s = &r->rows[i].cell[t];
            if (!cell_ok(s))
                continue;
            max = fmax(max, s->max * p->scale);
            if (s->min > 0)
                minpos = fmin(minpos, s->min * p->scale);
        }
    }
    if (max > 0 && isfinite(minpos) && max / minpos > LOG_SPAN) {
        v.log = true;
        v.lo_exp = floor(log10(minpos));
        v.hi_exp = ceil(log10(max * 3));       /* headroom for the value above the bar */
        return v;
    }
    bench_axis(max * 1.15, &v.step, &v.top, &v.ticks);
    return v;
}

/* Height in pixels of value X (already scaled) above the axis, clamped to the plot. */
static double vscale_h(const vscale_t *v, double x)
{
    double h;
    if (v->log)
        h = x > 0 ? SVG_PLOT * (log10(x) - v->lo_exp) / (v->hi_exp - v->lo_exp) : 0;
    else
        h = SVG_PLOT * x / v->top;
    return fmin(fmax(h, 0), SVG_PLOT);
}

static void svg_tick(FILE *f, double y, double width, const char *label, const char *color)
{
    fprintf(f, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\"/>\n",
            SVG_LEFT, y, width - SVG_RIGHT, y, color);
    if (label)
        fprintf(f, "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\" font-size=\"10\">%s</text>\n",
                SVG_LEFT - 6, y + 3, label);
}

static void svg_axis(FILE *f, const panel_t *p, const vscale_t *v, double y0, double width)
{
    char num[32];
    double base = y0 + SVG_PLOT;
    if (v->log) {
        for (double e = v->lo_exp; e <= v->hi_exp + 1e-9; e++) {
            double d = pow(10, e);
            snprintf(num, sizeof(num), "%.*f", e < 0 ? (int)-e : 0, d);
            svg_tick(f, base - vscale_h(v, d), width, num, "#ccc");
            for (int m = 2; m < 10 && e < v->hi_exp - 1e-9; m++)   /* minor: 2..9 x 10^e */
                svg_tick(f, base - vscale_h(v, m * d), width, NULL, "#f0f0f0");
        }
    } else {
        /* As many decimals as the step needs: 0.2 -> 1, 0.05 -> 2, 200 -> 0. */
        int decimals = v->step >= 1 ? 0 : (int)ceil(-log10(v->step) - 1e-9);
        for (int k = 0; k <= v->ticks; k++) {
            snprintf(num, sizeof(num), "%.*f", decimals, v->step * k);
            svg_tick(f, base - vscale_h(v, v->step * k), width, num, "#ddd");
        }
    }
    fprintf(f, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#333\"/>\n",
            SVG_LEFT, y0, SVG_LEFT, base);
    fprintf(f, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#333\"/>\n",
            SVG_LEFT, base, width - SVG_RIGHT, base);
    fprintf(f, "<text transform=\"translate(18,%.1f) rotate(-90)\" text-anchor=\"middle\" "
               "font-size=\"12\">", y0 + SVG_PLOT / 2);
    bench_xml_str(f, p->axis);
    fprintf(f, "%s</text>\n", v->log ? ", log scale" : "");
}

static void svg_bar(FILE *f, const bench_stat_t *s, double x, double bw, double y0,
                    const vscale_t *v, double scale, const char *color)
{
    char num[24];
    double base = y0 + SVG_PLOT;
    if (!cell_ok(s)) {
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"8\" text-anchor=\"middle\" "
                   "fill=\"#a00\">%s</text>\n", x + bw / 2, base - 4, s->failed ? "fail" : "n/a");
        return;
    }
    double mean = bench_stat_mean(s) * scale;
    double h = vscale_h(v, mean);
    fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\">"
               "<title>%s</title></rect>\n",
            x, base - h, bw, h, color, bench_fmt_num(mean, num, sizeof(num)));
    double label_y = base - h;
    if (s->n > 1) {
        double ylo = base - vscale_h(v, s->min * scale);
        double yhi = base - vscale_h(v, s->max * scale);
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#222\"/>\n",
                x + bw / 2, ylo, x + bw / 2, yhi);
        label_y = fmin(label_y, yhi);
    }
    /* The value, written upwards above the bar and its whisker. */
    fprintf(f, "<text transform=\"translate(%.1f,%.1f) rotate(-90)\" font-size=\"8\">%s</text>\n",
            x + bw / 2 + 3, label_y - 3, num);
}

static double svg_panel(FILE *f, const bench_results_t *r, const panel_t *p, double y0,
                        double gw, double width)
{
    vscale_t v = panel_scale(r, p);
    int nt = r->ntargets, g = 0;
    char sz[24], rec[40];
    fprintf(f, "<text x=\"%d\" y=\"%.1f\" font-size=\"13\" font-weight=\"bold\">",
            SVG_LEFT, y0 - 12);
    bench_xml_str(f, p->title);
    fprintf(f, "</text>\n");
    svg_axis(f, p, &v, y0, width);
    double bw = (gw - 16) / nt;
    for (size_t i = 0; i < r->nrows; i++) {
        const bench_row_t *row = &r->rows[i];
        if (!panel_has(row, p))
            continue;
        double gx = SVG_LEFT + 8 + g * gw;
        for (int t = 0; t < nt; t++)
            svg_bar(f, &row->cell[t], gx + t * bw, bw - 2, y0, &v, p->scale, palette[t]);
        fmt_rec(row, rec, sizeof(rec));
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"10\" text-anchor=\"middle\">%s</text>\n",
                gx + (gw - 16) / 2, y0 + SVG_PLOT + 14, row->test);
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"9\" text-anchor=\"middle\" "
                   "fill=\"#555\">%s / %s</text>\n", gx + (gw - 16) / 2, y0 + SVG_PLOT + 26,
                bench_fmt_size(row->size, sz, sizeof(sz)), rec);
        g++;
    }
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\" text-anchor=\"middle\">"
               "test (file size / record)</text>\n",
            (SVG_LEFT + width - SVG_RIGHT) / 2, y0 + SVG_PLOT + 44);
    return SVG_TOP + SVG_PLOT + SVG_BOTTOM;
}

int bench_report_svg(FILE *f, const bench_results_t *r, const bench_meta_t *m)
{
    char t1[96], t2[96];
    snprintf(t1, sizeof(t1), "Sequential throughput (mean of %d run%s; whiskers: min-max)",
             m->runs, m->runs == 1 ? "" : "s");
    snprintf(t2, sizeof(t2), "Random I/O, O_DIRECT (mean of %d run%s)", m->rand_runs,
             m->rand_runs == 1 ? "" : "s");
    const panel_t panels[] = {
        { BENCH_U_KBPS, "", t1, "MB/s (2^20 bytes/s)", 1.0 / 1024.0 },
        { BENCH_U_IOPS, "", t2, "IOPS", 1.0 },
        { BENCH_U_CPU, "cpu", "CPU seconds per GiB moved, of each target's process set (lower is better)", "CPU s / GiB", 1.0 },
    };
    int groups[3] = { 0 }, maxg = 1, nt = r->ntargets > 0 ? r->ntargets : 1;
    double height = 30;
    for (size_t p = 0; p < 3; p++) {
        for (size_t i = 0; i < r->nrows; i++)
            groups[p] += panel_has(&r->rows[i], &panels[p]);
        maxg = groups[p] > maxg ? groups[p] : maxg;
        if (groups[p])
            height += SVG_TOP + SVG_PLOT + SVG_BOTTOM;
    }
    double gw = fmax(72, nt * 18 + 16);
    double width = fmax(SVG_LEFT + 8 + maxg * gw + SVG_RIGHT, 160.0 + 110.0 * nt);
    fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
               "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
               "viewBox=\"0 0 %.0f %.0f\" font-family=\"sans-serif\">\n"
               "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
            width, height, width, height);
    fprintf(f, "<text x=\"10\" y=\"18\" font-size=\"12\">kembar-bench ");
    bench_xml_str(f, m->version);
    fprintf(f, " &#8212; ");
    bench_xml_str(f, m->date);
    fprintf(f, "</text>\n");
    for (int t = 0; t < r->ntargets; t++) {   /* legend, top right */
        double x = width - SVG_RIGHT - 110.0 * (r->ntargets - t);
        fprintf(f, "<rect x=\"%.1f\" y=\"8\" width=\"12\" height=\"12\" fill=\"%s\"/>"
                   "<text x=\"%.1f\" y=\"18\" font-size=\"11\">", x, palette[t], x + 16);
        bench_xml_str(f, r->target[t].label);
        fprintf(f, "</text>\n");
    }
    double y = 30;
    for (size_t p = 0; p < 3; p++)
        if (groups[p])
            y += svg_panel(f, r, &panels[p], y + SVG_TOP, gw, width);
    fprintf(f, "</svg>\n");
    return file_status(f);
}
