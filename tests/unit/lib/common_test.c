/*
 * common_test.c — lib/common: host:port parsing, atomic file write/read,
 * mkdir -p, clocks; lib/gfid text form and constants.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <unistd.h>
#include <pthread.h>
#include <sys/stat.h>
#include "lib/common.h"
#include "lib/gfid.h"

static void expect_hp(const char *in, const char *host, uint16_t port)
{
    char *h = NULL;
    uint16_t p = 0;
    cr_assert_eq(kb_parse_hostport(in, &h, &p, 24800), 0, "%s", in);
    cr_assert_str_eq(h, host, "%s", in);
    cr_assert_eq(p, port, "%s", in);
    free(h);
}

Test(common, parse_hostport)
{
    expect_hp("node1", "node1", 24800);
    expect_hp("node1:7", "node1", 7);
    expect_hp("127.0.0.1:65535", "127.0.0.1", 65535);
    expect_hp("[::1]:9000", "::1", 9000);
    expect_hp("[fe80::1%eth0]", "fe80::1%eth0", 24800);
    expect_hp("::1", "::1", 24800);
    const char *bad[] = { "", ":80", "h:", "h:0", "h:65536", "h:12a", "[::1", "[]:80",
                          "[::1]x", "h:-1", "[::1]:" };
    for (size_t i = 0; i < KB_ARRAY_SIZE(bad); i++) {
        char *h = NULL;
        uint16_t p = 0;
        cr_assert_eq(kb_parse_hostport(bad[i], &h, &p, 1), -EINVAL, "'%s'", bad[i]);
        cr_assert_null(h);
    }
}

Test(common, strdup0_and_clock)
{
    cr_assert_null(kb_strdup0(NULL));
    char *s = kb_strdup0("x");
    cr_assert_str_eq(s, "x");
    free(s);
    uint64_t a = kb_now_ns();
    usleep(2000);
    uint64_t b = kb_now_ns();
    cr_assert_geq(b - a, 2000000);
    cr_assert_leq(kb_now_ms(), b / 1000000 + 1);
}

Test(common, files_and_dirs)
{
    char base[] = "/var/tmp/kb_common_XXXXXX";
    cr_assert_not_null(mkdtemp(base));
    char dir[256], file[300];
    snprintf(dir, sizeof(dir), "%s/a/b/c", base);
    cr_assert_eq(kb_mkdir_p(dir, 0755), 0);
    cr_assert_eq(kb_mkdir_p(dir, 0755), 0, "existing dir is fine");
    struct stat st;
    cr_assert_eq(stat(dir, &st), 0);
    cr_assert(S_ISDIR(st.st_mode));

    snprintf(file, sizeof(file), "%s/f", dir);
    cr_assert_eq(kb_write_file_atomic(file, "one\n", 4), 0);
    cr_assert_eq(kb_write_file_atomic(file, "second", 6), 0);
    char *data;
    size_t len;
    cr_assert_eq(kb_read_file(file, &data, &len), 0);
    cr_assert_eq(len, 6);
    cr_assert_str_eq(data, "second");
    free(data);
    cr_assert_eq(kb_mkdir_p(file, 0755), -ENOTDIR);

    /* A file bigger than the first read buffer. */
    size_t big = 100000;
    char *src = malloc(big);
    for (size_t i = 0; i < big; i++)
        src[i] = (char)('a' + i % 26);
    cr_assert_eq(kb_write_file_atomic(file, src, big), 0);
    cr_assert_eq(kb_read_file(file, &data, &len), 0);
    cr_assert_eq(len, big);
    cr_assert_arr_eq(data, src, big);
    cr_assert_eq(data[big], '\0');
    free(data);
    free(src);

    cr_assert_eq(kb_read_file("/nonexistent/kb", &data, &len), -ENOENT);
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", base);
    cr_assert_eq(system(cmd), 0);
}

Test(gfid, constants_and_text)
{
    char s[KB_GFID_STRLEN];
    cr_assert_str_eq(kb_gfid_str(&kb_gfid_root, s), "00000000-0000-0000-0000-000000000001");
    cr_assert(kb_gfid_is_root(&kb_gfid_root));
    cr_assert(kb_gfid_is_null(&kb_gfid_null));
    cr_assert_not(kb_gfid_is_null(&kb_gfid_root));

    kb_gfid_t a, b;
    kb_gfid_generate(&a);
    kb_gfid_generate(&b);
    cr_assert_not(kb_gfid_eq(&a, &b));
    cr_assert_not(kb_gfid_is_null(&a));
    kb_gfid_str(&a, s);
    cr_assert_eq(strlen(s), 36);
    kb_gfid_t c;
    cr_assert_eq(kb_gfid_parse(s, &c), 0);
    cr_assert(kb_gfid_eq(&a, &c));
    cr_assert_eq(kb_gfid_parse("00000000-0000-0000-0000-00000000000", &c), -EINVAL);
    cr_assert_eq(kb_gfid_parse("00000000-0000-0000-0000-0000000000011", &c), -EINVAL);
    cr_assert_eq(kb_gfid_parse("0000000g-0000-0000-0000-000000000001", &c), -EINVAL);
    cr_assert_eq(kb_gfid_parse(NULL, &c), -EINVAL);
}

struct writer { const char *path; char c; };

static void *write_many(void *arg)
{
    struct writer *w = arg;
    char data[8192];
    memset(data, w->c, sizeof(data));
    for (int i = 0; i < 50; i++)
        cr_assert_eq(kb_write_file_atomic(w->path, data, sizeof(data)), 0);
    return NULL;
}

Test(common, concurrent_atomic_writes_never_tear)
{
    char base[] = "/var/tmp/kb_common_XXXXXX";
    cr_assert_not_null(mkdtemp(base));
    char file[300];
    snprintf(file, sizeof(file), "%s/f", base);
    pthread_t t[3];
    struct writer w[3] = { { file, 'a' }, { file, 'b' }, { file, 'c' } };
    for (int i = 0; i < 3; i++)
        pthread_create(&t[i], NULL, write_many, &w[i]);
    for (int i = 0; i < 3; i++)
        pthread_join(t[i], NULL);
    char *d;
    size_t n;
    cr_assert_eq(kb_read_file(file, &d, &n), 0);
    cr_assert_eq(n, 8192);
    for (size_t i = 1; i < n; i++)
        cr_assert_eq(d[i], d[0], "one writer's content, whole");
    free(d);
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", base);
    cr_assert_eq(system(cmd), 0);
}
