/*
 * main.c — kembar-bench: options, the order of the tests, and the reports.
 *
 *   kembar-bench [options] [--label NAME] [--cpu-pid PID,...] TARGET ...
 *
 * Order: for each file size, record size and run, every target does one
 * sequential pass before the next run starts, so slow drift of the machine
 * (other load, a filling disk) spreads over all targets instead of
 * favouring whichever ran first. Random tests follow, target by target;
 * then the mail workload, interleaved run by run like the sequential tests.
 *
 * Promises: bad options and unusable targets (or output files) are found
 * before anything is measured, with one line on stderr and exit 2; the files
 * the benchmark creates are plain names inside the target directories and
 * are removed at the end, also after an error or Ctrl-C; a test that fails on
 * one target is reported (one line) and shown as "failed", the other targets
 * carry on, and the exit status is 1.
 */
#include "bench/bench.h"
#include "lib/common.h"

#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

volatile int bench_stop;

typedef struct tgt {
    const char *path;
    bench_target_t *t;
    pid_t pids[BENCH_MAX_PIDS];
    int npids;                   /* 0 with --cpu: this process */
    char cpu_what[160];
    double cpu0;                 /* CPU seconds at the start of the current test */
    bool cpu_bad;                /* a pid vanished during the test */
} tgt_t;

typedef struct cfg {
    uint64_t sizes[BENCH_MAX_LIST], recs[BENCH_MAX_LIST];
    int nsizes, nrecs, runs;
    bool fsync_in_timing, direct, kb, quiet, cpu;
    int drop;                    /* -1: default (on when root) */
    bool rand, seq, mail;
    int qd, rand_runs;
    uint64_t rand_size, rand_bs;
    double rand_secs;
    int mail_runs;
    unsigned mail_files, mail_dirs, mail_tx;
    uint64_t mail_min, mail_max;
    bool mail_fsync;
    const char *csv, *json, *svg;
    FILE *fcsv, *fjson, *fsvg;
    int ntgt;
    tgt_t tgt[BENCH_MAX_TARGETS];
    bench_results_t res;
    char seqname[64], randname[64], mailname[64];
    long step, steps;            /* progress */
    int failures;
} cfg_t;

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
    va_list ap;
    bench_progress_done();
    fprintf(stderr, "kembar-bench: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n");
    exit(2);
}

static void usage(FILE *f)
{
    fprintf(f,
"usage: kembar-bench [options] [--label NAME] [--cpu-pid PID[,PID...]] TARGET...\n"
"  TARGET is a directory (a kembar or GlusterFS mount, a local disk) or\n"
"  kembar://HOST[:PORT]/VOLUME[/DIR] (libkembar, no FUSE). --label and --cpu-pid\n"
"  apply to the next TARGET. Ratio columns divide by the first TARGET.\n"
"sequential (iozone's write, re-write, read, re-read):\n"
"  -s, --sizes LIST      file sizes, e.g. 1M,10M,100M,1G (default 1M,10M,100M)\n"
"  -r, --records LIST    record sizes (default 128k)\n"
"  -n, --runs N          runs of each test, mean/min/max reported (default 5)\n"
"  -e, --fsync           include fsync and close in the timing\n"
"  -I, --direct          O_DIRECT (sizes and records multiples of 4k)\n"
"      --drop-caches     drop the page cache between write and read (default when root)\n"
"      --no-drop-caches  do not\n"
"random (O_DIRECT, io_uring):\n"
"      --rand            add random write and random read tests\n"
"      --rand-only       only the random tests\n"
"      --qd N            queue depth (default 16)\n"
"      --rand-bs SIZE    block size (default 4k)\n"
"      --rand-size SIZE  file size (default 256M)\n"
"      --rand-time SEC   seconds per test (default 10)\n"
"      --rand-runs N     runs of each random test (default 1)\n"
"mail server (small files, PostMark's model; creates/s, deletes/s, transactions/s):\n"
"      --mail            add the mail workload\n"
"      --mail-only       only the mail workload (with --rand-only: both)\n"
"      --mail-files N    files created first (default 2000)\n"
"      --mail-dirs N     directories they are spread over (default 10)\n"
"      --mail-tx N       transactions: create or delete, then read or append\n"
"                        (default 10000)\n"
"      --mail-size MIN,MAX  file and append sizes (default 512,64k)\n"
"      --mail-fsync      fsync every created or appended file before close\n"
"      --mail-runs N     runs (default 1)\n"
"CPU:\n"
"      --cpu             report CPU seconds per GiB moved: of the --cpu-pid set of\n"
"                        each target (e.g. its FUSE client), else of this process\n"
"      --cpu-pid LIST    pids for the next TARGET, \"self\" for this process\n"
"                        (implies --cpu)\n"
"output:\n"
"      --csv FILE, --json FILE, --svg FILE    also write these\n"
"  -k, --kb              table in KB/s instead of MB/s\n"
"  -q, --quiet           no progress line\n"
"  -h, --help, -V, --version\n");
}

/* ------------------------------------------------------------ arguments */

enum {
    OPT_DROP = 256, OPT_NODROP, OPT_RAND, OPT_RAND_ONLY, OPT_QD, OPT_RBS, OPT_RSIZE, OPT_RTIME,
    OPT_RRUNS, OPT_CPU, OPT_CPUPID, OPT_CSV, OPT_JSON, OPT_SVG, OPT_LABEL,
    OPT_MAIL, OPT_MAIL_ONLY, OPT_MFILES, OPT_MDIRS, OPT_MTX, OPT_MSIZE, OPT_MFSYNC, OPT_MRUNS,
};

static const struct option long_opts[] = {
    { "sizes", 1, 0, 's' }, { "records", 1, 0, 'r' }, { "runs", 1, 0, 'n' },
    { "fsync", 0, 0, 'e' }, { "direct", 0, 0, 'I' }, { "kb", 0, 0, 'k' },
    { "quiet", 0, 0, 'q' }, { "help", 0, 0, 'h' }, { "version", 0, 0, 'V' },
    { "drop-caches", 0, 0, OPT_DROP }, { "no-drop-caches", 0, 0, OPT_NODROP },
    { "rand", 0, 0, OPT_RAND }, { "rand-only", 0, 0, OPT_RAND_ONLY }, { "qd", 1, 0, OPT_QD },
    { "rand-bs", 1, 0, OPT_RBS }, { "rand-size", 1, 0, OPT_RSIZE },
    { "rand-time", 1, 0, OPT_RTIME }, { "rand-runs", 1, 0, OPT_RRUNS },
    { "cpu", 0, 0, OPT_CPU }, { "cpu-pid", 1, 0, OPT_CPUPID },
    { "csv", 1, 0, OPT_CSV }, { "json", 1, 0, OPT_JSON }, { "svg", 1, 0, OPT_SVG },
    { "label", 1, 0, OPT_LABEL }, { "mail", 0, 0, OPT_MAIL }, { "mail-only", 0, 0, OPT_MAIL_ONLY },
    { "mail-files", 1, 0, OPT_MFILES }, { "mail-dirs", 1, 0, OPT_MDIRS },
    { "mail-tx", 1, 0, OPT_MTX }, { "mail-size", 1, 0, OPT_MSIZE },
    { "mail-fsync", 0, 0, OPT_MFSYNC }, { "mail-runs", 1, 0, OPT_MRUNS }, { 0, 0, 0, 0 },
};

static uint64_t arg_size(const char *opt, const char *s)
{
    uint64_t v;
    if (bench_parse_size(s, &v) < 0)
        die("%s: bad size '%s' (e.g. 4096, 128k, 10M, 1G)", opt, s);
    return v;
}

static int arg_list(const char *opt, const char *s, uint64_t *out)
{
    int n = bench_parse_size_list(s, out, BENCH_MAX_LIST);
    if (n < 0)
        die("%s: bad size list '%s' (e.g. 1M,10M,100M; at most %d)", opt, s, BENCH_MAX_LIST);
    return n;
}

static int arg_uint(const char *opt, const char *s, unsigned long max)
{
    unsigned long v;
    if (bench_parse_uint(s, max, &v) < 0)
        die("%s: '%s' is not a whole number from 1 to %lu", opt, s, max);
    return (int)v;
}

static void arg_pids(tgt_t *t, const char *s)
{
    char *copy = strdup(s), *save = NULL;
    if (!copy)
        die("%s", strerror(ENOMEM));
    t->npids = 0;
    for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (t->npids == BENCH_MAX_PIDS)
            die("--cpu-pid: at most %d pids per target", BENCH_MAX_PIDS);
        /* "self": this process, i.e. the client when the target is libkembar. */
        t->pids[t->npids++] = strcmp(tok, "self") == 0 ? 0 : (pid_t)arg_uint("--cpu-pid", tok, 4194304);
    }
    free(copy);
    if (t->npids == 0)
        die("--cpu-pid: empty pid list");
}

/* Default label: the last component of the path ("kembar://h/vol" -> "vol"). */
static void default_label(const char *path, char *out, size_t len)
{
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/')
        n--;
    size_t b = n;
    while (b > 0 && path[b - 1] != '/')
        b--;
    snprintf(out, len, "%.*s", (int)(n - b), path + b);
}

static void add_target(cfg_t *c, const char *path, const char *label, tgt_t *pending)
{
    if (c->ntgt == BENCH_MAX_TARGETS)
        die("at most %d targets", BENCH_MAX_TARGETS);
    if (!*path)
        die("empty target path");
    int i = c->ntgt++;
    c->res.ntargets = c->ntgt;
    bench_target_info_t *ti = &c->res.target[i];
    c->tgt[i] = *pending;
    c->tgt[i].path = path;
    ti->path = path;
    if (label)
        snprintf(ti->label, sizeof(ti->label), "%s", label);
    else
        default_label(path, ti->label, sizeof(ti->label));
    if (!ti->label[0] || strlen(label ? label : "") >= sizeof(ti->label))
        die("--label: empty or longer than %d characters", BENCH_NAME_MAX - 1);
    for (int j = 0; j < i; j++)
        if (strcmp(c->res.target[j].label, ti->label) == 0)
            die("label '%s' names two targets (use --label)", ti->label);
    memset(pending, 0, sizeof(*pending));
}

static void parse_opt(cfg_t *c, int o, const char *arg)
{
    switch (o) {
    case 's': c->nsizes = arg_list("-s", arg, c->sizes); break;
    case 'r': c->nrecs = arg_list("-r", arg, c->recs); break;
    case 'n': c->runs = arg_uint("-n", arg, 1000); break;
    case 'e': c->fsync_in_timing = true; break;
    case 'I': c->direct = true; break;
    case 'k': c->kb = true; break;
    case 'q': c->quiet = true; break;
    case OPT_DROP: c->drop = 1; break;
    case OPT_NODROP: c->drop = 0; break;
    case OPT_RAND: c->rand = true; break;
    case OPT_RAND_ONLY: c->rand = true, c->seq = false; break;
    case OPT_QD: c->qd = arg_uint("--qd", arg, 4096); break;
    case OPT_RBS: c->rand_bs = arg_size("--rand-bs", arg); break;
    case OPT_RSIZE: c->rand_size = arg_size("--rand-size", arg); break;
    case OPT_RTIME: c->rand_secs = arg_uint("--rand-time", arg, 86400); break;
    case OPT_RRUNS: c->rand_runs = arg_uint("--rand-runs", arg, 1000); break;
    case OPT_CPU: c->cpu = true; break;
    case OPT_CSV: c->csv = arg; break;
    case OPT_JSON: c->json = arg; break;
    case OPT_SVG: c->svg = arg; break;
    case OPT_MAIL: c->mail = true; break;
    case OPT_MAIL_ONLY: c->mail = true, c->seq = false; break;
    case OPT_MFILES: c->mail_files = (unsigned)arg_uint("--mail-files", arg, 1000000); break;
    case OPT_MDIRS: c->mail_dirs = (unsigned)arg_uint("--mail-dirs", arg, 1000); break;
    case OPT_MTX: c->mail_tx = (unsigned)arg_uint("--mail-tx", arg, 100000000); break;
    case OPT_MSIZE: {
        uint64_t v[BENCH_MAX_LIST];
        if (bench_parse_size_list(arg, v, BENCH_MAX_LIST) != 2)
            die("--mail-size: expected MIN,MAX (e.g. 512,64k), not '%s'", arg);
        c->mail_min = v[0], c->mail_max = v[1];
        break;
    }
    case OPT_MFSYNC: c->mail_fsync = true; break;
    case OPT_MRUNS: c->mail_runs = arg_uint("--mail-runs", arg, 1000); break;
    default:
        usage(stderr);
        exit(2);
    }
}

static void parse_args(cfg_t *c, int argc, char **argv)
{
    const char *label = NULL;
    tgt_t pending = { 0 };
    int o;
    opterr = 0;
    while ((o = getopt_long(argc, argv, "-s:r:n:eIkqhV", long_opts, NULL)) != -1) {
        if (o == 1) {
            add_target(c, optarg, label, &pending);
            label = NULL;
        } else if (o == OPT_LABEL) {
            label = optarg;
        } else if (o == OPT_CPUPID) {
            arg_pids(&pending, optarg);
            c->cpu = true;
        } else if (o == 'h') {
            usage(stdout);
            exit(0);
        } else if (o == 'V') {
            printf("kembar-bench %s\n", KB_VERSION);
            exit(0);
        } else if (o == '?') {
            die("unknown or incomplete option '%s' (see --help)", argv[optind - 1]);
        } else {
            parse_opt(c, o, optarg);
        }
    }
    if (label || pending.npids)
        die("--label/--cpu-pid must come before the TARGET they apply to");
    if (c->ntgt == 0)
        die("no TARGET given (see --help)");
}

/* Everything that can be wrong with the numbers, before anything runs. */
static void check_cfg(cfg_t *c)
{
    bool root = geteuid() == 0;
    if (c->drop < 0)
        c->drop = root;
    if (c->drop && !root)
        die("--drop-caches needs root (or use --no-drop-caches)");
    for (int i = 0; i < c->nrecs; i++) {
        if (c->recs[i] < 512)
            die("-r: a record must be at least 512 bytes");
        if (c->direct && c->recs[i] % 4096)
            die("-I: record sizes must be multiples of 4k");
    }
    for (int i = 0; i < c->nsizes; i++) {
        if (c->direct && c->sizes[i] % 4096)
            die("-I: file sizes must be multiples of 4k");
        for (int j = 0; j < c->nrecs; j++) {
            char a[24], b[24];
            if (c->recs[j] <= c->sizes[i] && c->sizes[i] % c->recs[j])
                die("file size %s is not a multiple of record size %s",
                    bench_fmt_size(c->sizes[i], a, sizeof(a)),
                    bench_fmt_size(c->recs[j], b, sizeof(b)));
        }
    }
    if (c->rand && (c->rand_bs % 512 || c->rand_bs > (64u << 20)))
        die("--rand-bs: must be a multiple of 512 up to 64M");
    if (c->rand && c->rand_size < c->rand_bs)
        die("--rand-size: smaller than one block");
    if (c->mail && (c->mail_min > c->mail_max || c->mail_max > (64u << 20)))
        die("--mail-size: MIN must not exceed MAX, and MAX must be at most 64M");
}

/* ---------------------------------------------------------- preparation */

static FILE *open_out(const char *opt, const char *path)
{
    if (!path)
        return NULL;
    FILE *f = fopen(path, "w");
    if (!f)
        die("%s %s: %s", opt, path, strerror(errno));
    return f;
}

static void open_targets(cfg_t *c)
{
    char err[512];
    for (int i = 0; i < c->ntgt; i++) {
        tgt_t *t = &c->tgt[i];
        t->t = bench_target_open(t->path, err, sizeof(err));
        if (!t->t)
            die("%s", err);
        int rc = bench_target_probe(t->t, c->direct || c->rand);
        if (rc < 0)
            die("%s: cannot create and write a file%s: %s", t->path,
                c->direct || c->rand ? " with O_DIRECT" : "", strerror(-rc));
        if (!c->cpu)
            continue;
        for (int k = 0; k < t->npids; k++) {
            double s;
            if (bench_cpu_seconds(&t->pids[k], 1, &s) < 0)
                die("--cpu-pid for %s: no process %ld", t->path, (long)t->pids[k]);
        }
        if (t->npids == 0) {
            snprintf(t->cpu_what, sizeof(t->cpu_what), "self");
        } else {
            int n = snprintf(t->cpu_what, sizeof(t->cpu_what), "pid");
            for (int k = 0; k < t->npids && n < (int)sizeof(t->cpu_what); k++)
                n += t->pids[k] ? snprintf(t->cpu_what + n, sizeof(t->cpu_what) - (size_t)n, "%s%ld",
                                           k ? "," : " ", (long)t->pids[k])
                                : snprintf(t->cpu_what + n, sizeof(t->cpu_what) - (size_t)n, "%sself",
                                           k ? "," : " ");
        }
        c->res.target[i].cpu_what = t->cpu_what;
    }
}

static bench_row_t *row(cfg_t *c, const char *test, const char *metric, enum bench_unit u,
                        uint64_t size, uint64_t rec, int qd)
{
    bench_row_t *r = bench_results_row(&c->res, test, metric, u, size, rec, qd);
    if (!r)
        die("%s", strerror(ENOMEM));
    return r;
}

/* The mail workload's rows, in report order (mail_one fills them in this order). */
static const struct { const char *test, *metric; enum bench_unit u; } mail_rows[] = {
    { "mail-create", "", BENCH_U_OPS }, { "mail-create", "p50", BENCH_U_USEC },
    { "mail-create", "p99", BENCH_U_USEC }, { "mail-tx", "", BENCH_U_OPS },
    { "mail-tx", "p99", BENCH_U_USEC }, { "mail-delete", "", BENCH_U_OPS },
};

/* All rows in the order they are shown: test-major, then the CPU rows. */
static void make_rows(cfg_t *c)
{
    for (int pass = 0; pass < 2 && c->seq; pass++) {
        if (pass == 1 && !c->cpu)
            break;
        for (int t = 0; t < BENCH_SEQ_NTESTS; t++)
            for (int i = 0; i < c->nsizes; i++)
                for (int j = 0; j < c->nrecs; j++)
                    if (c->recs[j] <= c->sizes[i])
                        row(c, bench_seq_names[t], pass ? "cpu" : "",
                            pass ? BENCH_U_CPU : BENCH_U_KBPS, c->sizes[i], c->recs[j], 0);
    }
    static const char *const rt[] = { "randwrite", "randread" };
    static const char *const pm[] = { "p50", "p99", "p99.9" };
    for (int k = 0; k < 2 && c->rand; k++) {
        row(c, rt[k], "", BENCH_U_IOPS, c->rand_size, c->rand_bs, c->qd);
        for (int p = 0; p < 3; p++)
            row(c, rt[k], pm[p], BENCH_U_USEC, c->rand_size, c->rand_bs, c->qd);
    }
    for (int k = 0; k < 2 && c->rand && c->cpu; k++)
        row(c, rt[k], "cpu", BENCH_U_CPU, c->rand_size, c->rand_bs, c->qd);
    for (size_t k = 0; k < KB_ARRAY_SIZE(mail_rows) && c->mail; k++)
        row(c, mail_rows[k].test, mail_rows[k].metric, mail_rows[k].u, c->mail_files, c->mail_max, 0);
}

/* ----------------------------------------------------------- CPU + progress */

static void cpu_begin(cfg_t *c, int ti)
{
    tgt_t *t = &c->tgt[ti];
    if (c->cpu)
        t->cpu_bad = bench_cpu_seconds(t->pids, t->npids ? t->npids : 1, &t->cpu0) < 0;
}

/* CPU seconds per GiB for BYTES moved since cpu_begin; NaN when not measured. */
static double cpu_end(cfg_t *c, int ti, uint64_t bytes)
{
    tgt_t *t = &c->tgt[ti];
    double s;
    if (!c->cpu || t->cpu_bad || bytes == 0 ||
        bench_cpu_seconds(t->pids, t->npids ? t->npids : 1, &s) < 0)
        return NAN;
    return (s - t->cpu0) / ((double)bytes / (double)(1ull << 30));
}

static void add_cpu(bench_row_t *r, int ti, double v)
{
    if (isnan(v))
        r->cell[ti].failed = true;
    else
        bench_stat_add(&r->cell[ti], v);
}

/* Per-pass context handed to the sequential hooks. */
typedef struct seq_hook_ctx {
    cfg_t *c;
    int ti, run;
    uint64_t size, rec;
    double cpu[BENCH_SEQ_NTESTS];
} seq_hook_ctx_t;

static void seq_before(void *cookie, int test)
{
    seq_hook_ctx_t *h = cookie;
    char a[24], b[24];
    bench_progress("[%ld/%ld] %s: %s %s/%s run %d/%d", h->c->step + 1, h->c->steps,
                   h->c->res.target[h->ti].label, bench_seq_names[test],
                   bench_fmt_size(h->size, a, sizeof(a)), bench_fmt_size(h->rec, b, sizeof(b)),
                   h->run + 1, h->c->runs);
    cpu_begin(h->c, h->ti);
}

static void seq_after(void *cookie, int test, uint64_t ns)
{
    seq_hook_ctx_t *h = cookie;
    (void)ns;
    h->cpu[test] = cpu_end(h->c, h->ti, h->size);
}

/* ------------------------------------------------------------- running */

static void report_failure(cfg_t *c, int ti, const char *what, const char *err)
{
    bench_progress_done();
    fprintf(stderr, "kembar-bench: %s: %s: %s\n", c->res.target[ti].label, what, err);
    c->failures++;
}

/* One sequential pass of target TI; false when it failed. */
static bool seq_one(cfg_t *c, int ti, uint64_t size, uint64_t rec, int run)
{
    seq_hook_ctx_t h = { .c = c, .ti = ti, .run = run, .size = size, .rec = rec };
    bench_seq_hooks_t hooks = { seq_before, seq_after, &h };
    bench_seq_opts_t o = {
        .size = size, .rec = rec, .fsync_in_timing = c->fsync_in_timing,
        .direct = c->direct, .drop_caches = c->drop,
        .seed = (uint32_t)(run * BENCH_MAX_TARGETS + ti + 1),
    };
    uint64_t ns[BENCH_SEQ_NTESTS] = { 0 };
    char err[512];
    int rc = bench_seq_pass(c->tgt[ti].t, c->seqname, &o, &hooks, ns, err, sizeof(err));
    c->step++;
    for (int t = 0; t < BENCH_SEQ_NTESTS; t++) {
        bench_row_t *r = row(c, bench_seq_names[t], "", BENCH_U_KBPS, size, rec, 0);
        bench_row_t *rc_row = c->cpu ? row(c, bench_seq_names[t], "cpu", BENCH_U_CPU, size, rec, 0)
                                     : NULL;
        if (rc < 0) {
            r->cell[ti].failed = true;
            if (rc_row)
                rc_row->cell[ti].failed = true;
            continue;
        }
        double secs = (double)(ns[t] ? ns[t] : 1) / 1e9;
        bench_stat_add(&r->cell[ti], (double)size / 1024.0 / secs);
        if (rc_row)
            add_cpu(rc_row, ti, h.cpu[t]);
    }
    if (rc < 0 && rc != -EINTR)
        report_failure(c, ti, "sequential", err);
    return rc == 0;
}

static void run_seq(cfg_t *c)
{
    for (int i = 0; i < c->nsizes && !bench_stop; i++) {
        for (int j = 0; j < c->nrecs && !bench_stop; j++) {
            bool skip[BENCH_MAX_TARGETS] = { false };
            if (c->recs[j] > c->sizes[i])
                continue;
            for (int run = 0; run < c->runs && !bench_stop; run++)
                for (int ti = 0; ti < c->ntgt && !bench_stop; ti++) {
                    /* After a failure the target sits out this size/record. */
                    if (skip[ti])
                        c->step++;
                    else
                        skip[ti] = !seq_one(c, ti, c->sizes[i], c->recs[j], run);
                }
        }
    }
}

static void rand_record(cfg_t *c, int ti, const char *test, const bench_rand_result_t *res,
                        int rc, double cpu)
{
    static const char *const pm[] = { "p50", "p99", "p99.9" };
    const uint64_t pv[] = { res->p50_ns, res->p99_ns, res->p999_ns };
    bench_row_t *r = row(c, test, "", BENCH_U_IOPS, c->rand_size, c->rand_bs, c->qd);
    if (rc < 0)
        r->cell[ti].failed = true;
    else
        bench_stat_add(&r->cell[ti], (double)res->ops / ((double)res->ns / 1e9));
    for (int p = 0; p < 3; p++) {
        r = row(c, test, pm[p], BENCH_U_USEC, c->rand_size, c->rand_bs, c->qd);
        if (rc < 0)
            r->cell[ti].failed = true;
        else
            bench_stat_add(&r->cell[ti], (double)pv[p] / 1000.0);
    }
    if (c->cpu)
        add_cpu(row(c, test, "cpu", BENCH_U_CPU, c->rand_size, c->rand_bs, c->qd), ti,
                rc < 0 ? NAN : cpu);
}

/* Random write then random read, RUNS times, on one prepared file. */
static void rand_target(cfg_t *c, int ti)
{
    char err[512], sz[24];
    const char *label = c->res.target[ti].label;
    bench_progress("[%ld/%ld] %s: preparing a %s file", c->step + 1, c->steps, label,
                   bench_fmt_size(c->rand_size, sz, sizeof(sz)));
    int rc = bench_rand_prepare(c->tgt[ti].t, c->randname, c->rand_size, err, sizeof(err));
    for (int run = 0; run < c->rand_runs && !bench_stop; run++) {
        for (int w = 1; w >= 0 && !bench_stop; w--) {
            const char *test = w ? "randwrite" : "randread";
            bench_rand_opts_t o = { .size = c->rand_size, .bs = (uint32_t)c->rand_bs, .qd = c->qd,
                                    .secs = c->rand_secs, .write = w, .seed = (uint32_t)run };
            bench_rand_result_t res = { 0 };
            double cpu = NAN;
            bench_progress("[%ld/%ld] %s: %s qd%d run %d/%d", c->step + 1, c->steps, label, test,
                           c->qd, run + 1, c->rand_runs);
            if (rc == 0 && c->drop && (rc = bench_drop_caches()) < 0)
                snprintf(err, sizeof(err), "dropping caches: %s", strerror(-rc));
            if (rc == 0) {
                cpu_begin(c, ti);
                rc = bench_rand_run(c->tgt[ti].t, c->randname, &o, &res, err, sizeof(err));
                cpu = cpu_end(c, ti, res.ops * c->rand_bs);
            }
            c->step++;
            rand_record(c, ti, test, &res, rc, cpu);
            if (rc < 0 && rc != -EINTR) {
                report_failure(c, ti, test, err);
                rc = -ECANCELED;     /* later tests of this target: failed, not reported again */
            }
        }
    }
    bench_unlink(c->tgt[ti].t, c->randname);
}

/* One mail pass of target TI: creates/s, transactions/s, deletes/s and the
 * latencies; false when it failed. */
static bool mail_one(cfg_t *c, int ti, int run)
{
    bench_mail_opts_t o = {
        .files = c->mail_files, .dirs = c->mail_dirs, .tx = c->mail_tx,
        .min = (uint32_t)c->mail_min, .max = (uint32_t)c->mail_max, .fsync = c->mail_fsync,
        .seed = (uint32_t)run + 1,        /* every target the same operations in a run */
    };
    bench_mail_result_t res;
    char err[512];
    bench_progress("[%ld/%ld] %s: mail run %d/%d", c->step + 1, c->steps,
                   c->res.target[ti].label, run + 1, c->mail_runs);
    int rc = bench_mail_run(c->tgt[ti].t, c->mailname, &o, &res, err, sizeof(err));
    c->step++;
    const double v[] = {
        res.created / ((double)(res.create_ns ? res.create_ns : 1) / 1e9),
        (double)res.create_p50_ns / 1000.0, (double)res.create_p99_ns / 1000.0,
        o.tx / ((double)(res.tx_ns ? res.tx_ns : 1) / 1e9), (double)res.tx_p99_ns / 1000.0,
        res.deleted / ((double)(res.delete_ns ? res.delete_ns : 1) / 1e9),
    };
    _Static_assert(KB_ARRAY_SIZE(v) == KB_ARRAY_SIZE(mail_rows), "a value per mail row");
    for (size_t k = 0; k < KB_ARRAY_SIZE(mail_rows); k++) {
        bench_row_t *r = row(c, mail_rows[k].test, mail_rows[k].metric, mail_rows[k].u, c->mail_files,
                             c->mail_max, 0);
        if (rc < 0)
            r->cell[ti].failed = true;
        else
            bench_stat_add(&r->cell[ti], v[k]);
    }
    if (rc < 0 && rc != -EINTR)
        report_failure(c, ti, "mail", err);
    return rc == 0;
}

static void run_mail(cfg_t *c)
{
    bool skip[BENCH_MAX_TARGETS] = { false };
    for (int run = 0; run < c->mail_runs && !bench_stop; run++)
        for (int ti = 0; ti < c->ntgt && !bench_stop; ti++) {
            if (skip[ti])
                c->step++;
            else
                skip[ti] = !mail_one(c, ti, run);
        }
}

/* -------------------------------------------------------------- reports */

static void on_signal(int sig)
{
    (void)sig;
    bench_stop = 1;
    signal(SIGINT, SIG_DFL);      /* a second Ctrl-C kills at once */
    signal(SIGTERM, SIG_DFL);
}

static void build_cmdline(int argc, char **argv, char *buf, size_t len)
{
    size_t n = 0;
    buf[0] = '\0';
    for (int i = 0; i < argc && n + 1 < len; i++) {
        bool quote = argv[i][0] == '\0' || strpbrk(argv[i], " \t\"'$\\*?;&|<>()") != NULL;
        n += (size_t)snprintf(buf + n, len - n, quote ? "%s'%s'" : "%s%s", i ? " " : "",
                              argv[i]);
    }
}

static void write_out(FILE *f, const char *what, const char *path,
                      int (*fn)(FILE *, const bench_results_t *, const bench_meta_t *),
                      const cfg_t *c, const bench_meta_t *m)
{
    if (!f)
        return;
    int rc = fn(f, &c->res, m);
    if (fclose(f) != 0 && rc == 0)
        rc = -errno;
    if (rc < 0)
        fprintf(stderr, "kembar-bench: writing %s %s: %s\n", what, path, strerror(-rc));
}

static void reports(cfg_t *c, int argc, char **argv)
{
    char date[40], host[256] = "?", cmd[4096];
    time_t now = time(NULL);
    strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%S%z", localtime(&now));
    gethostname(host, sizeof(host) - 1);
    build_cmdline(argc, argv, cmd, sizeof(cmd));
    bench_meta_t m = {
        .version = KB_VERSION, .date = date, .host = host, .cmdline = cmd, .seq = c->seq,
        .runs = c->runs,
        .fsync_in_timing = c->fsync_in_timing, .direct = c->direct, .drop_caches = c->drop,
        .rand_runs = c->rand ? c->rand_runs : 0, .rand_secs = c->rand_secs,
        .mail_runs = c->mail ? c->mail_runs : 0, .mail_files = c->mail_files,
        .mail_dirs = c->mail_dirs, .mail_tx = c->mail_tx, .mail_min = (uint32_t)c->mail_min,
        .mail_max = (uint32_t)c->mail_max, .mail_fsync = c->mail_fsync,
    };
    bench_progress_done();
    if (bench_report_table(stdout, &c->res, &m, c->kb) < 0)
        fprintf(stderr, "kembar-bench: writing the table: %s\n", strerror(EIO));
    fflush(stdout);
    write_out(c->fcsv, "--csv", c->csv, bench_report_csv, c, &m);
    write_out(c->fjson, "--json", c->json, bench_report_json, c, &m);
    write_out(c->fsvg, "--svg", c->svg, bench_report_svg, c, &m);
}

int main(int argc, char **argv)
{
    static cfg_t c = {
        .sizes = { 1 << 20, 10 << 20, 100 << 20 }, .nsizes = 3, .recs = { 128 << 10 }, .nrecs = 1,
        .runs = 5, .drop = -1, .seq = true, .qd = 16, .rand_runs = 1, .rand_size = 256 << 20,
        .rand_bs = 4096, .rand_secs = 10, .mail_runs = 1, .mail_files = 2000, .mail_dirs = 10,
        .mail_tx = 10000, .mail_min = 512, .mail_max = 64 << 10,
    };
    parse_args(&c, argc, argv);
    check_cfg(&c);
    c.fcsv = open_out("--csv", c.csv);
    c.fjson = open_out("--json", c.json);
    c.fsvg = open_out("--svg", c.svg);
    open_targets(&c);
    make_rows(&c);
    snprintf(c.seqname, sizeof(c.seqname), ".kembar-bench.%ld.seq", (long)getpid());
    snprintf(c.randname, sizeof(c.randname), ".kembar-bench.%ld.rand", (long)getpid());
    snprintf(c.mailname, sizeof(c.mailname), ".kembar-bench.%ld.mail", (long)getpid());
    for (int i = 0; c.seq && i < c.nsizes; i++)
        for (int j = 0; j < c.nrecs; j++)
            c.steps += c.recs[j] <= c.sizes[i] ? (long)c.runs * c.ntgt : 0;
    c.steps += c.rand ? 2L * c.rand_runs * c.ntgt : 0;
    c.steps += c.mail ? (long)c.mail_runs * c.ntgt : 0;

    struct sigaction sa = { .sa_handler = on_signal };
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    bench_progress_enable(!c.quiet);
    if (c.seq)
        run_seq(&c);
    for (int ti = 0; c.rand && ti < c.ntgt && !bench_stop; ti++)
        rand_target(&c, ti);
    if (c.mail && !bench_stop)
        run_mail(&c);
    for (int ti = 0; ti < c.ntgt; ti++) {   /* also after Ctrl-C or an error */
        bench_unlink(c.tgt[ti].t, c.seqname);
        bench_unlink(c.tgt[ti].t, c.randname);
    }
    /* Reports before closing: a library target's shutdown must not cost the results. */
    reports(&c, argc, argv);
    for (int ti = 0; ti < c.ntgt; ti++)
        bench_target_close(c.tgt[ti].t);
    bench_results_free(&c.res);
    if (bench_stop) {
        fprintf(stderr, "kembar-bench: interrupted; partial results above\n");
        return 130;
    }
    return c.failures ? 1 : 0;
}
