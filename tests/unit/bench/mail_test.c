/*
 * mail_test.c — kembar-bench's mail workload (bench/mail.c) on a local
 * directory: the phases do what they say, the same seed gives the same
 * operations, and nothing is left behind, also when the pass fails.
 * No timings are asserted: only counts, names and the state of the disk.
 *
 * bench/ is a program, not part of libkembar: its modules are compiled into
 * this test directly (target.c needs libkembar, which every test links).
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bench/stats.c"
#include "bench/sys.c"
#include "bench/target.c"
#include "bench/mail.c"

volatile int bench_stop;

static char tmpl[64];

static bench_target_t *open_tmp(void)
{
    char err[256] = "";
    snprintf(tmpl, sizeof(tmpl), "/tmp/kb-mail-test-XXXXXX");
    cr_assert_not_null(mkdtemp(tmpl));
    bench_target_t *t = bench_target_open(tmpl, err, sizeof(err));
    cr_assert_not_null(t, "%s", err);
    return t;
}

static int entries(const char *path)
{
    DIR *d = opendir(path);
    int n = 0;
    cr_assert_not_null(d, "%s", path);
    for (struct dirent *e; (e = readdir(d));)
        n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
    closedir(d);
    return n;
}

static void close_tmp(bench_target_t *t)
{
    bench_target_close(t);
    cr_assert_eq(entries(tmpl), 0, "the pass left something in %s", tmpl);
    cr_assert_eq(rmdir(tmpl), 0);
}

static const bench_mail_opts_t small = {
    .files = 40, .dirs = 3, .tx = 300, .min = 512, .max = 4096, .seed = 7,
};

Test(bench_mail, phases_counts_and_cleanup)
{
    bench_target_t *t = open_tmp();
    bench_mail_result_t r;
    char err[256] = "";
    cr_assert_eq(bench_mail_run(t, "m", &small, &r, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(r.created, 40);
    cr_assert_eq(r.tx_create + r.tx_delete, 300);
    cr_assert_eq(r.tx_read + r.tx_append, 300, "a file is always left to read or append to here");
    cr_assert(r.tx_create > 100 && r.tx_delete > 100, "even odds: %u/%u", r.tx_create, r.tx_delete);
    cr_assert(r.tx_read > 100 && r.tx_append > 100, "even odds: %u/%u", r.tx_read, r.tx_append);
    cr_assert_eq(r.deleted, 40 + r.tx_create - r.tx_delete, "every file left is deleted at the end");
    cr_assert(r.create_p50_ns > 0 && r.create_p50_ns <= r.create_p99_ns);
    cr_assert(r.tx_p99_ns > 0);
    close_tmp(t);
}

Test(bench_mail, same_seed_same_operations)
{
    bench_target_t *t = open_tmp();
    bench_mail_result_t a, b, c;
    char err[256] = "";
    bench_mail_opts_t o = small;
    cr_assert_eq(bench_mail_run(t, "m", &o, &a, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(bench_mail_run(t, "m", &o, &b, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(a.tx_create, b.tx_create);
    cr_assert_eq(a.tx_read, b.tx_read);
    cr_assert_eq(a.deleted, b.deleted);
    o.seed = 8;
    cr_assert_eq(bench_mail_run(t, "m", &o, &c, err, sizeof(err)), 0, "%s", err);
    cr_assert(c.tx_create != a.tx_create || c.tx_read != a.tx_read || c.deleted != a.deleted,
              "another seed, other operations");
    close_tmp(t);
}

Test(bench_mail, appends_go_to_the_end)
{
    bench_target_t *t = open_tmp();
    char err[256] = "", path[200];
    bench_mail_opts_t o = small;
    o.min = o.max = 1000;
    uint32_t live[1];
    uint64_t clat[1];
    mail_ctx_t c = { .t = t, .o = &o, .dir = "x", .err = err, .errlen = sizeof(err), .rng = 1,
                     .live = live, .clat = clat };
    struct stat st;
    c.wbuf = malloc(o.max);
    memset(c.wbuf, 'a', o.max);
    cr_assert_eq(bench_mkdir(t, "x"), 0);
    c.made_dir = true;
    cr_assert_eq(bench_mkdir(t, "x/d00"), 0);
    c.made_subdirs = 1;
    cr_assert_eq(create_one(&c), 0, "%s", err);
    cr_assert_eq(append_one(&c, 0), 0, "%s", err);
    cr_assert_eq(append_one(&c, 0), 0, "%s", err);
    snprintf(path, sizeof(path), "%s/x/d00/m0000000", tmpl);
    cr_assert_eq(stat(path, &st), 0, "%s", path);
    cr_assert_eq(st.st_size, 3000);
    cleanup(&c);
    free(c.wbuf);
    close_tmp(t);
}

Test(bench_mail, an_existing_dir_is_refused_and_left_alone)
{
    bench_target_t *t = open_tmp();
    bench_mail_result_t r;
    char err[256] = "", path[200];
    snprintf(path, sizeof(path), "%s/m", tmpl);
    cr_assert_eq(mkdir(path, 0755), 0);
    cr_assert_eq(bench_mail_run(t, "m", &small, &r, err, sizeof(err)), -EEXIST);
    cr_assert(strstr(err, "mkdir m"), "%s", err);
    cr_assert_eq(rmdir(path), 0, "the existing (empty) directory is still there");
    close_tmp(t);
}

Test(bench_mail, an_interrupted_pass_removes_what_it_made)
{
    bench_target_t *t = open_tmp();
    bench_mail_result_t r;
    char err[256] = "";
    bench_stop = 1;
    int rc = bench_mail_run(t, "m", &small, &r, err, sizeof(err));
    bench_stop = 0;
    cr_assert_eq(rc, -EINTR);
    cr_assert_str_eq(err, "interrupted");
    close_tmp(t);
}

Test(bench_mail, bad_parameters)
{
    bench_target_t *t = open_tmp();
    bench_mail_result_t r;
    char err[256] = "";
    bench_mail_opts_t o = small;
    o.min = 5000;
    cr_assert_eq(bench_mail_run(t, "m", &o, &r, err, sizeof(err)), -EINVAL);
    o = small;
    o.dirs = 0;
    cr_assert_eq(bench_mail_run(t, "m", &o, &r, err, sizeof(err)), -EINVAL);
    close_tmp(t);
}
