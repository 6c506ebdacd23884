/*
 * log_test.c — lib/log: line format, level check, reopen after rotation,
 * rate limiter.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <unistd.h>
#include "lib/log.h"
#include "lib/common.h"

static char logdir[] = "/var/tmp/kb_log_XXXXXX";
static char path[300], rotated[300];

static void setup(void)
{
    cr_assert_not_null(mkdtemp(logdir));
    snprintf(path, sizeof(path), "%s/k.log", logdir);
    snprintf(rotated, sizeof(rotated), "%s/k.log.1", logdir);
}

static void teardown(void)
{
    kb_log_open(NULL);
    unlink(path);
    unlink(rotated);
    rmdir(logdir);
}

static char *slurp(const char *p)
{
    char *d = NULL;
    size_t n;
    cr_assert_eq(kb_read_file(p, &d, &n), 0);
    return d;
}

Test(log, line_format_and_levels, .init = setup, .fini = teardown)
{
    cr_assert_eq(kb_log_open(path), 0);
    kb_log_set_ident("kembard:24800");
    kb_log_level = KB_LOG_INFO;
    kb_info("posix", "hello %d", 42);
    kb_debug("posix", "not shown");
    kb_log_req(KB_LOG_WARN, "replicate", 77, "child %d down\n", 1);
    char *d = slurp(path);
    /* 2025-01-31T12:34:56.789Z I kembard:24800 [posix] hello 42 */
    char *l1 = d, *l2 = strchr(d, '\n') + 1;
    cr_assert_eq(l1[4], '-');
    cr_assert_eq(l1[10], 'T');
    cr_assert_eq(l1[23], 'Z');
    cr_assert(strncmp(l1 + 24, " I kembard:24800 [posix] hello 42\n", 34) == 0, "%s", d);
    cr_assert(strncmp(l2 + 24, " W kembard:24800 [replicate] req=77 child 1 down\n", 48) == 0, "%s", d);
    cr_assert_null(strstr(d, "not shown"));
    cr_assert_eq(strchr(l2, '\n')[1], '\0', "exactly two lines");
    free(d);
}

Test(log, reopen_after_rotation, .init = setup, .fini = teardown)
{
    cr_assert_eq(kb_log_open(path), 0);
    kb_log_level = KB_LOG_INFO;
    kb_info("x", "before");
    cr_assert_eq(rename(path, rotated), 0);
    kb_log_request_reopen();
    kb_info("x", "after");
    char *a = slurp(rotated), *b = slurp(path);
    cr_assert_not_null(strstr(a, "before"));
    cr_assert_null(strstr(a, "after"));
    cr_assert_not_null(strstr(b, "after"));
    free(a);
    free(b);
}

Test(log, parse_level)
{
    cr_assert_eq(kb_log_parse_level("error"), KB_LOG_ERROR);
    cr_assert_eq(kb_log_parse_level("DEBUG"), KB_LOG_DEBUG);
    cr_assert_eq(kb_log_parse_level("trace"), KB_LOG_TRACE);
    cr_assert_eq(kb_log_parse_level("none"), KB_LOG_NONE);
    cr_assert_eq(kb_log_parse_level("loud"), -1);
    cr_assert_eq(kb_log_parse_level(NULL), -1);
}

Test(log, ratelimit)
{
    struct kb_ratelimit rl = { .interval_ms = 50 };
    cr_assert_eq(kb_ratelimit_ok(&rl), 1);
    int ok = 0;
    for (int i = 0; i < 10; i++)
        ok += kb_ratelimit_ok(&rl);
    cr_assert_eq(ok, 0);
    cr_assert_eq(rl.suppressed, 10);
    usleep(60000);
    cr_assert_eq(kb_ratelimit_ok(&rl), 1);
}

Test(log, long_message_truncated_to_one_line, .init = setup, .fini = teardown)
{
    cr_assert_eq(kb_log_open(path), 0);
    kb_log_level = KB_LOG_INFO;
    char big[5000];
    memset(big, 'q', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    kb_info("x", "%s", big);
    char *d = slurp(path);
    size_t n = strlen(d);
    cr_assert_eq(d[n - 1], '\n');
    cr_assert_eq(strchr(d, '\n'), d + n - 1);
    free(d);
}
