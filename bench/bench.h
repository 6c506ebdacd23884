/*
 * bench.h — kembar-bench, the side-by-side file-system benchmark (DESIGN §9).
 *
 * One run measures the same tests on several targets (a kembar mount, a
 * GlusterFS mount, a local directory, libkembar without FUSE) and reports
 * them as one table whose columns are the targets. The modules:
 *
 *   stats.c   pure: size strings, lists, kembar:// URLs, running mean/min/max,
 *             percentiles, number formatting, the results table (rows x targets)
 *   report.c  pure: terminal table, CSV, JSON and SVG writers over the table
 *   target.c  where the bytes go: a POSIX directory or a libkembar volume
 *   seq.c     write / re-write / read / re-read of one file (iozone's tests)
 *   rand.c    random block I/O at a queue depth (io_uring; QD threads for lib)
 *   mail.c    the mail-server-like small-file workload (PostMark's model)
 *   sys.c     drop caches, CPU time of a process set, the progress line
 *   main.c    options and the order in which everything runs
 *
 * Units: KB = 1024 bytes and MB = 1024 KB, as iozone counts them. Results
 * are kept in KB/s and shown in MB/s (or KB/s with --kb).
 */
#ifndef KB_BENCH_H
#define KB_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#define BENCH_MAX_TARGETS 8
#define BENCH_MAX_LIST 16        /* entries in -s / -r lists */
#define BENCH_MAX_PIDS 16        /* --cpu-pid entries per target */
#define BENCH_NAME_MAX 64

/* ---------------------------------------------------------------- stats.c */

/* "4096", "128k", "1M", "1MiB", "10m", "1G", "2T" (binary multiples). Zero,
 * signs, junk and values above 2^50 are refused. 0 or -EINVAL. */
int bench_parse_size(const char *s, uint64_t *out);
/* Comma-separated sizes: "1M,10M,100M". At most MAX entries; -EINVAL on a
 * bad entry, empty element or too many. Returns the count (> 0). */
int bench_parse_size_list(const char *s, uint64_t *out, int max);
/* Positive decimal integer <= max: 0 or -EINVAL. */
int bench_parse_uint(const char *s, unsigned long max, unsigned long *out);
/* Shortest exact form: 1048576 -> "1M", 131072 -> "128k", 1000 -> "1000". */
char *bench_fmt_size(uint64_t v, char *buf, size_t len);
/* About 4 significant digits, never fewer than the integer part:
 * 123456.7 -> "123457", 123.45 -> "123.5", 1.23456 -> "1.235",
 * 0.012345 -> "0.0123". NaN -> "n/a". */
char *bench_fmt_num(double v, char *buf, size_t len);

/* A libkembar target "kembar://H[:P][,H[:P]...]/VOL[/DIR]" -> the volume
 * spec "H[:P],...:/VOL" and the directory "/DIR" ("/" when absent; trailing
 * slashes dropped). Both malloc'ed. 0, -EINVAL (not that form) or -ENOMEM. */
#define BENCH_LIB_PREFIX "kembar://"
int bench_split_url(const char *url, char **spec, char **dir);

/* Running statistics of one measurement over the runs. */
typedef struct bench_stat {
    int n;                     /* samples so far; 0 = not measured */
    bool failed;               /* a run failed: the value is not to be trusted */
    double sum, min, max;
} bench_stat_t;

void bench_stat_add(bench_stat_t *s, double v);
double bench_stat_mean(const bench_stat_t *s);   /* NaN when n == 0 or failed */

/* Nearest-rank percentile P (0 < P <= 100) of N sorted values; 0 when N == 0. */
uint64_t bench_percentile(const uint64_t *sorted, size_t n, double p);
/* Sort in place (ascending). */
void bench_sort_u64(uint64_t *v, size_t n);

/* What a row measures. Higher is better for KBPS and IOPS, lower for the rest. */
enum bench_unit {
    BENCH_U_KBPS,              /* KB/s (1024 bytes) */
    BENCH_U_IOPS,
    BENCH_U_USEC,              /* latency in microseconds */
    BENCH_U_CPU,               /* CPU seconds per GiB moved */
    BENCH_U_OPS,               /* operations per second (files, transactions) */
};

typedef struct bench_row {
    char test[16];             /* "write", "rewrite", "read", "reread", "randwrite", "randread",
                                * "mail-create", "mail-delete", "mail-tx" */
    char metric[16];           /* "" for the main figure, "p50" "p99" "p99.9", "cpu" */
    enum bench_unit unit;
    uint64_t size;             /* file size, bytes */
    uint64_t rec;              /* record / block size, bytes */
    int qd;                    /* queue depth (random tests), else 0 */
    bench_stat_t cell[BENCH_MAX_TARGETS];
} bench_row_t;

typedef struct bench_target_info {
    char label[BENCH_NAME_MAX];
    const char *path;          /* as given on the command line */
    const char *cpu_what;      /* "pid 1234,1240", "self", or NULL when not measured */
} bench_target_info_t;

/* Everything a report needs besides the numbers. */
typedef struct bench_meta {
    const char *version;
    const char *date;          /* ISO 8601 */
    const char *host;          /* machine name */
    const char *cmdline;       /* the command as run */
    bool seq;                  /* sequential tests ran (runs, -e, -I apply) */
    int runs;
    bool fsync_in_timing;      /* -e */
    bool direct;               /* -I */
    bool drop_caches;
    int rand_runs;
    double rand_secs;
    int mail_runs;             /* 0: no mail workload */
    unsigned mail_files, mail_dirs, mail_tx;
    uint32_t mail_min, mail_max;
    bool mail_fsync;
} bench_meta_t;

typedef struct bench_results {
    int ntargets;
    bench_target_info_t target[BENCH_MAX_TARGETS];
    bench_row_t *rows;
    size_t nrows, cap;
} bench_results_t;

/* Find the row (test, metric, size, rec, qd) or append it (unit taken from
 * the append). NULL only on ENOMEM. Rows keep the order of first use. */
bench_row_t *bench_results_row(bench_results_t *r, const char *test, const char *metric,
                               enum bench_unit unit, uint64_t size, uint64_t rec, int qd);
void bench_results_free(bench_results_t *r);

/* Unit name for tables ("MB/s", "KB/s", "IOPS", "p99 us", "cpu s/GiB", "ops/s"). */
const char *bench_unit_name(const bench_row_t *row, bool kb);
/* Value of a KB/s figure in the unit shown (MB/s unless kb). */
double bench_show(const bench_row_t *row, double v, bool kb);

/* --------------------------------------------------------------- report.c */

/* Writers. Each returns 0 or a negative errno (from the FILE). */
int bench_report_table(FILE *f, const bench_results_t *r, const bench_meta_t *m, bool kb);
int bench_report_csv(FILE *f, const bench_results_t *r, const bench_meta_t *m);
int bench_report_json(FILE *f, const bench_results_t *r, const bench_meta_t *m);
int bench_report_svg(FILE *f, const bench_results_t *r, const bench_meta_t *m);

/* Helpers exposed for tests. */
void bench_json_str(FILE *f, const char *s);     /* quoted, escaped JSON string */
void bench_xml_str(FILE *f, const char *s);      /* text escaped for XML/SVG */
void bench_csv_str(FILE *f, const char *s);      /* quoted when it must be */
/* A "nice" axis for 0..max: step (1, 2 or 5 x 10^k) and top = step * ticks
 * >= max, with 4 <= ticks <= 10 (max > 0; max <= 0 gives step 1, top 1). */
void bench_axis(double max, double *step, double *top, int *ticks);

/* --------------------------------------------------------------- target.c */

typedef struct bench_target bench_target_t;
typedef struct bench_file bench_file_t;

/* Open a target: a directory path, or "kembar://HOST[:PORT][,HOST...]/VOLUME[/DIR]".
 * On failure NULL with a one-line reason in err. */
bench_target_t *bench_target_open(const char *path, char *err, size_t errlen);
void bench_target_close(bench_target_t *t);
bool bench_target_is_lib(const bench_target_t *t);
/* Create a probe file (with O_DIRECT when direct), write 4 KiB, remove it:
 * catches unwritable dirs before minutes of benchmarking. 0 or -errno. */
int bench_target_probe(bench_target_t *t, bool direct);

/* Files: NAME is a plain name inside the target directory. FLAGS are open(2)
 * flags (O_CREAT, O_EXCL, O_TRUNC, O_DIRECT, O_RDONLY/O_WRONLY/O_RDWR). */
int bench_open(bench_target_t *t, const char *name, int flags, bench_file_t **out);
ssize_t bench_pwrite(bench_file_t *f, const void *buf, size_t n, off_t off);   /* whole n or -errno */
ssize_t bench_pread(bench_file_t *f, void *buf, size_t n, off_t off);          /* short only at EOF */
/* Append at the end of a file opened with O_APPEND (libkembar: at fstat's size). */
ssize_t bench_append(bench_file_t *f, const void *buf, size_t n);               /* whole n or -errno */
int bench_fsync(bench_file_t *f);
int bench_close(bench_file_t *f);                                               /* frees f */
int bench_unlink(bench_target_t *t, const char *name);                          /* -ENOENT is fine */
int bench_mkdir(bench_target_t *t, const char *name);                           /* 0755 */
int bench_rmdir(bench_target_t *t, const char *name);                           /* -ENOENT is fine */
/* The POSIX descriptor of a file, or -1 for libkembar files. */
int bench_file_fd(const bench_file_t *f);

/* ------------------------------------------------------------ seq.c/rand.c */

/* Set by SIGINT/SIGTERM; loops stop early and report -EINTR. */
extern volatile int bench_stop;

typedef struct bench_seq_opts {
    uint64_t size, rec;
    bool fsync_in_timing, direct, drop_caches;
    uint32_t seed;             /* stamps records so reads can be checked */
} bench_seq_opts_t;

enum bench_seq_test { BENCH_WRITE, BENCH_REWRITE, BENCH_READ, BENCH_REREAD, BENCH_SEQ_NTESTS };
extern const char *const bench_seq_names[BENCH_SEQ_NTESTS];

/* Called between the tests of one pass: BEFORE(test) just before timing starts,
 * AFTER(test, ns) just after it stops (CPU accounting, progress). */
typedef struct bench_seq_hooks {
    void (*before)(void *cookie, int test);
    void (*after)(void *cookie, int test, uint64_t ns);
    void *cookie;
} bench_seq_hooks_t;

/* One pass of write, re-write, read, re-read on file NAME (created and removed
 * here). ns[test] receives each elapsed time. 0, or -errno with a one-line
 * reason in err (the file is removed either way). */
int bench_seq_pass(bench_target_t *t, const char *name, const bench_seq_opts_t *o,
                   const bench_seq_hooks_t *h, uint64_t ns[BENCH_SEQ_NTESTS],
                   char *err, size_t errlen);

typedef struct bench_rand_opts {
    uint64_t size;             /* file size */
    uint32_t bs;               /* block size (4096) */
    int qd;
    double secs;
    bool write;
    uint32_t seed;
} bench_rand_opts_t;

typedef struct bench_rand_result {
    uint64_t ops;
    uint64_t ns;               /* from the first submission to the last completion */
    uint64_t p50_ns, p99_ns, p999_ns;
} bench_rand_result_t;

/* Create NAME of o->size bytes (not timed), written sequentially and synced. */
int bench_rand_prepare(bench_target_t *t, const char *name, uint64_t size, char *err, size_t errlen);
/* Random O_DIRECT I/O of o->bs blocks on NAME at depth o->qd for o->secs. */
int bench_rand_run(bench_target_t *t, const char *name, const bench_rand_opts_t *o,
                   bench_rand_result_t *res, char *err, size_t errlen);

/* ----------------------------------------------------------------- mail.c */

/* PostMark's model of a mail server (Katcher, 1997): FILES files of MIN..MAX
 * bytes (uniform) spread over DIRS directories are created, then TX
 * transactions each do one of create/delete (even odds) and one of
 * read-whole-file/append (even odds, MIN..MAX bytes) on files picked at
 * random, then every file left is deleted. */
typedef struct bench_mail_opts {
    unsigned files, dirs, tx;
    uint32_t min, max;         /* file and append sizes, bytes */
    bool fsync;                /* fsync each created or appended file before close */
    uint32_t seed;             /* same seed, same sequence of operations and sizes */
} bench_mail_opts_t;

typedef struct bench_mail_result {
    uint64_t create_ns, tx_ns, delete_ns;    /* the three timed phases */
    unsigned created, deleted;               /* files in the creation / deletion phase */
    unsigned tx_create, tx_delete, tx_read, tx_append;
    uint64_t create_p50_ns, create_p99_ns;   /* every create: open+write(+fsync)+close */
    uint64_t tx_p99_ns;                      /* one transaction, both of its parts */
} bench_mail_result_t;

/* One pass in the directory DIR (made here, inside the target, and removed
 * with everything in it, also after an error). 0, or -errno with a one-line
 * reason in err. */
int bench_mail_run(bench_target_t *t, const char *dir, const bench_mail_opts_t *o,
                   bench_mail_result_t *res, char *err, size_t errlen);

/* ------------------------------------------------------------------ sys.c */

uint64_t bench_now_ns(void);
/* sync(), then echo 3 > /proc/sys/vm/drop_caches. 0 or -errno. */
int bench_drop_caches(void);
/* Sum of utime+stime of the processes (pid 0 = this process), in seconds.
 * -errno when one cannot be read (it exited). */
int bench_cpu_seconds(const pid_t *pids, int n, double *out);

/* The progress line on stderr: \r-updated, only when stderr is a tty and
 * not disabled. Printf-like; bench_progress_done() clears it. */
void bench_progress_enable(bool on);
void bench_progress(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void bench_progress_done(void);

#endif
