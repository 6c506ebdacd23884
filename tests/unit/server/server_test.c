/*
 * server_test.c — kembard's serving code end to end, in-process: the real
 * listener, management thread and brick graph on an ephemeral port, a
 * libkembar client over real TCP (rpc/conn.c + protocol/client), and hostile
 * frames on other connections that must be refused without disturbing it.
 */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/sha.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include "client/kembar.h"
#include "lib/log.h"
#include "rpc/sync.h"
#include "server/kembard.h"

static kbd_t d;
static char root[256], brick[300];

static void start_server(void)
{
    kb_log_level = KB_LOG_WARN;
    snprintf(root, sizeof(root), "/var/tmp/kb-server-test-%d", getpid());
    snprintf(brick, sizeof(brick), "%s/brick", root);
    char state[300];
    snprintf(state, sizeof(state), "%s/state", root);
    cr_assert_eq(kb_mkdir_p(state, 0700), 0);
    memset(&d, 0, sizeof(d));
    d.listen_host = strdup("127.0.0.1");
    d.self_host = strdup("127.0.0.1");
    d.state_dir = strdup(state);
    d.loop = kb_loop_new();
    char err[256];
    cr_assert_eq(kbd_serve_start(&d, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(kbd_mgmt_start(&d), 0);
    cr_assert_eq(kbd_store_load(&d), 0);
    cr_assert_eq(kb_loop_start_thread(d.loop), 0);
}

static void stop_server(void)
{
    kb_loop_stop(d.loop);
    kbd_mgmt_stop(&d);
    kbd_serve_stop(&d);
    kbd_store_shutdown(&d);
    kb_loop_free(d.loop);
    free(d.listen_host);
    free(d.self_host);
    free(d.state_dir);
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", root);
    cr_assert_eq(system(cmd), 0);
}

/* Run a CLI command against the in-process daemon, as the kembar CLI does. */
static int cli(char **out, int argc, char **argv)
{
    char err[512] = "";
    int rc = rpc_sync_argv("127.0.0.1", d.port, KB_PROC_CLI, argc, argv, 30000, out, err, sizeof(err));
    if (rc && !*out)
        *out = strdup(err);
    return rc;
}

static kbc_t *create_and_mount(void)
{
    char spec[512], *out = NULL, bspec[400];
    snprintf(bspec, sizeof(bspec), "127.0.0.1:%u:%s", d.port, brick);
    char *create[] = { "volume", "create", "v", bspec, "force" };
    cr_assert_eq(cli(&out, 5, create), 0, "create: %s", out);
    free(out);
    out = NULL;
    char *start[] = { "volume", "start", "v" };
    cr_assert_eq(cli(&out, 3, start), 0, "start: %s", out);
    free(out);
    snprintf(spec, sizeof(spec), "127.0.0.1:%u:/v", d.port);
    char err[256] = "";
    kbc_t *c = kbc_new(spec, NULL, err, sizeof(err));
    cr_assert_not_null(c, "kbc_new: %s", err);
    return c;
}

static void sha(const void *p, size_t n, unsigned char out[32]) { SHA256(p, n, out); }

Test(server, client_fops_over_tcp, .init = start_server, .fini = stop_server, .timeout = 60)
{
    kbc_t *c = create_and_mount();
    size_t n = 3 << 20;
    char *buf = malloc(n), *back = malloc(n);
    for (size_t i = 0; i < n; i++)
        buf[i] = (char)(i * 7 + (i >> 12));
    kbc_fd_t *fd;
    cr_assert_eq(kbc_open_path(c, "/img", O_CREAT | O_RDWR, 0644, &fd), 0);
    cr_assert_eq(kbc_pwrite(fd, buf, n, 4096), (ssize_t)n);
    cr_assert_eq(kbc_fsync(fd, false), 0);
    cr_assert_eq(kbc_pread(fd, back, n, 4096), (ssize_t)n);
    cr_assert_eq(memcmp(buf, back, n), 0);
    cr_assert_eq(kbc_close(fd), 0);
    /* the brick holds the same bytes at the same place */
    char path[400];
    snprintf(path, sizeof(path), "%s/img", brick);
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f);
    cr_assert_eq(fseek(f, 4096, SEEK_SET), 0);
    cr_assert_eq(fread(back, 1, n, f), n);
    fclose(f);
    unsigned char h1[32], h2[32];
    sha(buf, n, h1);
    sha(back, n, h2);
    cr_assert_eq(memcmp(h1, h2, 32), 0, "brick copy differs");
    /* rename and unlink */
    cr_assert_eq(kbc_mkdir_path(c, "/d", 0755), 0);
    cr_assert_eq(kbc_rename_path(c, "/img", "/d/img2"), 0);
    kb_iatt_t ia;
    cr_assert_eq(kbc_resolve(c, "/img", &ia), -ENOENT);
    cr_assert_eq(kbc_resolve(c, "/d/img2", &ia), 0);
    cr_assert_eq(ia.size, n + 4096);
    snprintf(path, sizeof(path), "%s/d/img2", brick);
    cr_assert_eq(access(path, F_OK), 0);
    cr_assert_eq(kbc_unlink_path(c, "/d/img2"), 0);
    cr_assert_eq(access(path, F_OK), -1);
    kbc_free(c);
    free(buf);
    free(back);
}

static int raw_connect(void)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(d.port) };
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    cr_assert_eq(connect(s, (struct sockaddr *)&a, sizeof(a)), 0);
    return s;
}

/* The peer closed: a read returns 0 (or ECONNRESET) within 2 s. */
static void assert_closed(int s)
{
    struct timeval tv = { 2, 0 };
    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    char b[64];
    ssize_t r;
    while ((r = read(s, b, sizeof(b))) > 0)
        ;
    cr_assert(r == 0 || errno == ECONNRESET, "connection not closed (r=%zd errno=%d)", r, errno);
    close(s);
}

/* The handshake on RS: protocol 1 (no FEATURES), or protocol 2 announcing
 * FEATURES; it must be accepted. */
static void raw_handshake(rpc_sync_t *rs, int proto, uint64_t features)
{
    char err[256];
    kb_enc_t e;
    kb_enc_init(&e);
    kb_enc_str(&e, "v");
    kb_enc_str(&e, brick);
    kb_enc_str(&e, "probe");
    kb_enc_u32(&e, 0);
    if (proto >= 2) {
        uint8_t inst[16] = { 7 };
        kb_enc_u32(&e, 1);
        kb_enc_u32(&e, 2);
        kb_enc_u64(&e, features);
        kb_enc_bytes(&e, inst, sizeof(inst));
        kb_enc_u32(&e, 0);
        kb_enc_str(&e, "test");
    }
    rpc_msg_t r;
    cr_assert_eq(rpc_sync_call(rs, KB_PROC_HANDSHAKE, e.p, (uint32_t)e.len, 2000, &r, err, sizeof(err)), 0);
    cr_assert_eq(r.hdr.status, 0);
    rpc_msg_free(&r);
    kb_enc_free(&e);
}

/* A raw connection to the brick, attached as raw_handshake does. */
static rpc_sync_t *raw_attach(int proto, uint64_t features)
{
    char err[256];
    rpc_sync_t *rs = rpc_sync_connect("127.0.0.1", d.port, 2000, err, sizeof(err));
    cr_assert_not_null(rs, "%s", err);
    raw_handshake(rs, proto, features);
    return rs;
}

Test(server, hostile_frames_refused_others_served, .init = start_server, .fini = stop_server, .timeout = 60)
{
    kbc_t *c = create_and_mount();
    /* 1. random garbage */
    int s = raw_connect();
    char junk[4096];
    for (size_t i = 0; i < sizeof(junk); i++)
        junk[i] = (char)(rand() & 0xff);
    cr_assert_eq(write(s, junk, sizeof(junk)), (ssize_t)sizeof(junk));
    assert_closed(s);
    /* 2. a well-formed header claiming a 3 GiB payload */
    s = raw_connect();
    kb_wire_hdr_t h = { .magic = KB_WIRE_MAGIC, .version = KB_WIRE_VERSION, .type = KB_MSG_CALL,
                        .xid = 1, .proc = KB_FOP_WRITE, .plen = 3u << 30, .blen = 0 };
    uint8_t hb[KB_WIRE_HDR_LEN];
    kb_wire_hdr_encode(hb, &h);
    cr_assert_eq(write(s, hb, sizeof(hb)), (ssize_t)sizeof(hb));
    assert_closed(s);
    /* 3. a fop on a connection that never did the handshake: refused, not served */
    rpc_sync_t *rs = rpc_sync_connect("127.0.0.1", d.port, 2000, junk, sizeof(junk));
    cr_assert_not_null(rs);
    rpc_msg_t r;
    cr_assert_eq(rpc_sync_call(rs, KB_FOP_STATFS, "", 0, 2000, &r, junk, sizeof(junk)), 0);
    cr_assert_lt(r.hdr.status, 0);
    rpc_msg_free(&r);
    /* 4. a malformed argument block after a real handshake is refused with an error */
    raw_handshake(rs, 1, 0);
    cr_assert_eq(rpc_sync_call(rs, KB_FOP_LOOKUP, "\x01\x02", 2, 2000, &r, junk, sizeof(junk)), 0);
    cr_assert_eq(r.hdr.status, -EBADMSG);
    rpc_msg_free(&r);
    /* 5. an fd this connection never opened */
    kb_enc_t e;
    kb_enc_init(&e);
    kb_cred_t cred = { 0 };
    kb_cred_encode(&e, &cred);
    kb_args_t a = { .fd = 12345, .size = 10 };
    kb_args_encode(&e, KB_FOP_READ, &a);
    cr_assert_eq(rpc_sync_call(rs, KB_FOP_READ, e.p, (uint32_t)e.len, 2000, &r, junk, sizeof(junk)), 0);
    cr_assert_eq(r.hdr.status, -EBADF);
    rpc_msg_free(&r);
    kb_enc_free(&e);
    rpc_sync_close(rs);
    /* the real client still works */
    kbc_fd_t *fd;
    cr_assert_eq(kbc_open_path(c, "/after", O_CREAT | O_RDWR, 0644, &fd), 0);
    cr_assert_eq(kbc_pwrite(fd, "still here", 10, 0), 10);
    char back[16] = "";
    cr_assert_eq(kbc_pread(fd, back, 10, 0), 10);
    cr_assert_eq(memcmp(back, "still here", 10), 0);
    cr_assert_eq(kbc_close(fd), 0);
    kbc_free(c);
}

/* MKDIR NAME at the root over RS; the decoded reply in OUT. */
static void raw_mkdir(rpc_sync_t *rs, const char *name, kb_reply_t *out)
{
    char err[256];
    kb_enc_t e;
    kb_enc_init(&e);
    kb_cred_t cred = { 0 };
    kb_cred_encode(&e, &cred);
    kb_args_t a = { .gfid = kb_gfid_root, .name = (char *)name, .mode = 0755 };
    kb_gfid_generate(&a.newgfid);
    kb_args_encode(&e, KB_FOP_MKDIR, &a);
    rpc_msg_t r;
    cr_assert_eq(rpc_sync_call(rs, KB_FOP_MKDIR, e.p, (uint32_t)e.len, 2000, &r, err, sizeof(err)), 0);
    kb_enc_free(&e);
    cr_assert_eq(r.hdr.status, 0, "mkdir %s: %d", name, r.hdr.status);
    kb_dec_t dec;
    kb_dec_init(&dec, r.payload, r.hdr.plen);
    out->status = r.hdr.status;
    cr_assert_eq(kb_reply_decode(&dec, KB_FOP_MKDIR, out, NULL), 0, "reply of mkdir %s does not decode", name);
    rpc_msg_free(&r);
}

Test(server, parent_attributes_only_to_clients_that_asked, .init = start_server, .fini = stop_server, .timeout = 60)
{
    kbc_t *c = create_and_mount();
    kb_reply_t r;
    /* A protocol-1 client, and a protocol-2 one without the feature: the
     * reply they get is exactly the old one. */
    rpc_sync_t *old = raw_attach(1, 0);
    raw_mkdir(old, "by-old", &r);
    cr_assert_not(r.rflags & KB_RF_PATTR);
    kb_reply_clear(&r);
    rpc_sync_close(old);
    rpc_sync_t *mid = raw_attach(2, KB_FEAT_LK_LEASE | KB_FEAT_XOP_LOCKED);
    raw_mkdir(mid, "by-mid", &r);
    cr_assert_not(r.rflags & KB_RF_PATTR);
    kb_reply_clear(&r);
    rpc_sync_close(mid);
    /* One that announces it gets the root's attributes after the mkdir. */
    rpc_sync_t *now = raw_attach(2, KB_FEATURES);
    raw_mkdir(now, "by-new", &r);
    cr_assert(r.rflags & KB_RF_PATTR);
    cr_assert(kb_gfid_is_root(&r.pattr.gfid));
    cr_assert(S_ISDIR(r.pattr.mode));
    cr_assert_eq(r.pattr.nlink, 2 + 3 + 1, "root: ., .., .kembar and the three new directories");
    kb_reply_clear(&r);
    rpc_sync_close(now);
    kbc_free(c);
}

Test(server, cli_errors_are_one_line, .init = start_server, .fini = stop_server, .timeout = 60)
{
    kbc_t *c = create_and_mount();
    kbc_free(c);
    struct { int argc; char *argv[8]; const char *want; } cases[] = {
        { 5, { "volume", "create", "v", "127.0.0.1:1:/x", "force" }, "already exists" },
        { 3, { "volume", "start", "nope" }, "does not exist" },
        { 3, { "volume", "start", "v" }, "already started" },
        { 6, { "volume", "create", "w", "replica", "2", "127.0.0.1:1:/x" }, "replica sets" },
        { 5, { "volume", "create", "bad/name", "127.0.0.1:1:/x", "force" }, "invalid volume name" },
        { 5, { "volume", "set", "v", "network.ping-timeout", "lots" }, "not a time" },
        { 5, { "volume", "set", "v", "no.such", "1" }, "unknown option" },
        { 3, { "volume", "delete", "v" }, "stop it first" },
        { 2, { "volume", "frobnicate" }, "unknown command" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *out = NULL;
        int rc = cli(&out, cases[i].argc, cases[i].argv);
        cr_assert_neq(rc, 0, "case %zu succeeded", i);
        cr_assert_not_null(out);
        cr_assert(strstr(out, cases[i].want), "case %zu: '%s' lacks '%s'", i, out, cases[i].want);
        cr_assert_null(strchr(out, '\n'), "case %zu: more than one line: '%s'", i, out);
        free(out);
    }
    /* a brick dir of this volume cannot be reused by another volume */
    char bspec[400], *out = NULL;
    snprintf(bspec, sizeof(bspec), "127.0.0.1:%u:%s", d.port, brick);
    char *dup[] = { "volume", "create", "other", bspec, "force" };
    cr_assert_neq(cli(&out, 5, dup), 0);
    cr_assert(strstr(out, "already"), "%s", out);
    free(out);
    out = NULL;
    char *list[] = { "volume", "list" };
    cr_assert_eq(cli(&out, 2, list), 0);
    cr_assert_str_eq(out, "v\n", "nothing half-created: %s", out);
    free(out);
}

/* Repeated setup and teardown of a replicated client right after writes
 * (eager locks being released as kbc_free runs), with both replicas' content
 * checked. The race it guards (protocol/client's fini failing calls into an
 * already finalised replicate, fixed by the PARENT_DOWN phase) is timing
 * dependent: this test does not reproduce it reliably, it is a smoke test. */
Test(server, replicated_client_teardown, .init = start_server, .fini = stop_server, .timeout = 90)
{
    char b1[400], b2[400], *out = NULL;
    snprintf(b1, sizeof(b1), "127.0.0.1:%u:%s1", d.port, brick);
    snprintf(b2, sizeof(b2), "127.0.0.1:%u:%s2", d.port, brick);
    char *create[] = { "volume", "create", "r", "replica", "2", b1, b2, "force" };
    cr_assert_eq(cli(&out, 8, create), 0, "create: %s", out);
    free(out);
    out = NULL;
    char *start[] = { "volume", "start", "r" };
    cr_assert_eq(cli(&out, 3, start), 0, "start: %s", out);
    free(out);
    char spec[256], err[256] = "", buf[65536];
    snprintf(spec, sizeof(spec), "127.0.0.1:%u:/r", d.port);
    memset(buf, 'x', sizeof(buf));
    for (int round = 0; round < 6; round++) {
        kbc_t *c = kbc_new(spec, NULL, err, sizeof(err));
        cr_assert_not_null(c, "round %d: %s", round, err);
        kbc_fd_t *fd;
        char name[32];
        snprintf(name, sizeof(name), "/f%d", round);
        cr_assert_eq(kbc_open_path(c, name, O_CREAT | O_RDWR, 0644, &fd), 0);
        for (int i = 0; i < 16; i++)
            cr_assert_eq(kbc_pwrite(fd, buf, sizeof(buf), (off_t)i * (off_t)sizeof(buf)), (ssize_t)sizeof(buf));
        cr_assert_eq(kbc_close(fd), 0);
        kbc_free(c);   /* eager lock still held, its release in flight */
    }
    /* both bricks hold the last file, identical */
    char p1[420], p2[420];
    snprintf(p1, sizeof(p1), "%s1/f5", brick);
    snprintf(p2, sizeof(p2), "%s2/f5", brick);
    struct stat s1, s2;
    cr_assert_eq(stat(p1, &s1), 0);
    cr_assert_eq(stat(p2, &s2), 0);
    cr_assert_eq(s1.st_size, 16 * 65536);
    cr_assert_eq(s2.st_size, 16 * 65536);
}

/* ---------------- add-brick, rebalance, remove-brick (issue 6) ---------------- */

static int cli_args(char **out, const char *a0, ...)
{
    char *argv[16];
    int argc = 0;
    va_list ap;
    va_start(ap, a0);
    for (const char *a = a0; a && argc < 16; a = va_arg(ap, const char *))
        argv[argc++] = (char *)a;
    va_end(ap);
    *out = NULL;
    return cli(out, argc, argv);
}

/* Regular files under DIR (its .kembar left out) whose name starts with 'f'. */
static int brick_files(const char *dir)
{
    DIR *dh = opendir(dir);
    cr_assert_not_null(dh, "%s", dir);
    int n = 0;
    for (struct dirent *de; (de = readdir(dh));) {
        if (de->d_name[0] == '.')
            continue;
        char p[1024];
        snprintf(p, sizeof(p), "%s/%s", dir, de->d_name);
        struct stat st;
        cr_assert_eq(lstat(p, &st), 0);
        if (S_ISDIR(st.st_mode))
            n += brick_files(p);
        else if (S_ISREG(st.st_mode) && de->d_name[0] == 'f')
            n++;
    }
    closedir(dh);
    return n;
}

#define NFILES 48

static void file_name(int i, char *buf, size_t len)
{
    snprintf(buf, len, i % 2 ? "/d/f%03d" : "/f%03d", i);
}

static void write_files(kbc_t *c)
{
    cr_assert_eq(kbc_mkdir_path(c, "/d", 0755), 0);
    for (int i = 0; i < NFILES; i++) {
        char name[32], data[3000];
        file_name(i, name, sizeof(name));
        memset(data, 'a' + i % 26, sizeof(data));
        kbc_fd_t *fd;
        cr_assert_eq(kbc_open_path(c, name, O_CREAT | O_RDWR, 0644, &fd), 0, "%s", name);
        cr_assert_eq(kbc_pwrite(fd, data, 1000 + (size_t)i * 40, 0), (ssize_t)(1000 + i * 40));
        cr_assert_eq(kbc_close(fd), 0);
    }
}

static void check_files(const char *spec)
{
    char err[256] = "";
    kbc_t *c = kbc_new(spec, NULL, err, sizeof(err));
    cr_assert_not_null(c, "%s", err);
    for (int i = 0; i < NFILES; i++) {
        char name[32], want[3000], got[3000];
        file_name(i, name, sizeof(name));
        memset(want, 'a' + i % 26, sizeof(want));
        kbc_fd_t *fd;
        cr_assert_eq(kbc_open_path(c, name, O_RDONLY, 0, &fd), 0, "%s", name);
        cr_assert_eq(kbc_pread(fd, got, sizeof(got), 0), (ssize_t)(1000 + i * 40), "%s", name);
        cr_assert_eq(memcmp(want, got, 1000 + (size_t)i * 40), 0, "%s differs", name);
        cr_assert_eq(kbc_close(fd), 0);
    }
    kbc_free(c);
}

/* Poll `rebalance status --json` until the run is over; its JSON. */
static char *rebalance_wait(const char *vol)
{
    for (int i = 0; i < 300; i++) {
        char *out = NULL;
        cr_assert_eq(cli_args(&out, "--json", "volume", "rebalance", vol, "status", NULL), 0, "%s", out);
        if (!strstr(out, "\"status\":\"running\""))
            return out;
        free(out);
        usleep(100 * 1000);
    }
    cr_assert_fail("rebalance of %s did not finish in 30 s", vol);
    return NULL;
}

static long json_long(const char *json, const char *key)
{
    char pat[64];
    snprintf(pat, sizeof(pat), "\"%s\":", key);
    const char *p = NULL;                           /* the last one: the totals follow the nodes */
    for (const char *q = strstr(json, pat); q; q = strstr(q + 1, pat))
        p = q;
    cr_assert_not_null(p, "%s not in %s", key, json);
    return atol(p + strlen(pat));
}

Test(server, add_brick_rebalance_remove_brick, .init = start_server, .fini = stop_server, .timeout = 60)
{
    setenv("KEMBARD_CLIENT_WAIT_MS", "1500", 1);
    char b1[480], b2[480], spec[256], err[256] = "", *out = NULL, p1[400], p2[400];
    snprintf(p1, sizeof(p1), "%s1", brick);
    snprintf(p2, sizeof(p2), "%s2", brick);
    snprintf(b1, sizeof(b1), "127.0.0.1:%u:%s", d.port, p1);
    snprintf(b2, sizeof(b2), "127.0.0.1:%u:%s", d.port, p2);
    snprintf(spec, sizeof(spec), "127.0.0.1:%u:/g", d.port);
    cr_assert_eq(cli_args(&out, "volume", "create", "g", b1, "force", NULL), 0, "%s", out);
    free(out);
    cr_assert_eq(cli_args(&out, "volume", "start", "g", NULL), 0, "%s", out);
    free(out);
    /* A client on this definition's graph that will never switch (no
     * volfile server to watch): rebalance must refuse while it is there. */
    char *getv[] = { "peer", "get", "g" }, *def = NULL;
    cr_assert_eq(rpc_sync_argv("127.0.0.1", d.port, KB_PROC_PEER, 3, getv, 5000, &def, err, sizeof(err)), 0, "%s", err);
    kbd_volume_t *v = kbd_volume_parse(def, err, sizeof(err));
    cr_assert_not_null(v, "%s", err);
    char *vf = kbd_volgen_client(v);
    kbc_t *stale = kbc_new_from_volfile(vf, NULL, err, sizeof(err));
    cr_assert_not_null(stale, "%s", err);
    free(vf);
    free(def);
    kbd_volume_free(v);
    write_files(stale);

    cr_assert_eq(cli_args(&out, "volume", "add-brick", "g", b2, "force", NULL), 0, "%s", out);
    cr_assert(strstr(out, "2 x 1 = 2 bricks"), "%s", out);
    free(out);
    cr_assert_neq(cli_args(&out, "volume", "rebalance", "g", "start", NULL), 0);
    cr_assert(strstr(out, "an older graph of 'g'") && !strchr(out, '\n'), "%s", out);
    free(out);
    kbc_free(stale);

    cr_assert_eq(cli_args(&out, "volume", "rebalance", "g", "start", NULL), 0, "%s", out);
    free(out);
    char *st = rebalance_wait("g");
    cr_assert(strstr(st, "\"status\":\"completed\""), "%s", st);
    long moved = json_long(st, "moved");
    cr_assert_eq(json_long(st, "scanned"), NFILES, "%s", st);
    cr_assert_eq(json_long(st, "failures"), 0, "%s", st);
    free(st);
    int n1 = brick_files(p1), n2 = brick_files(p2);
    cr_assert_eq(n1 + n2, NFILES, "each file on exactly one brick: %d + %d", n1, n2);
    cr_assert(n1 > 0 && n2 > 0, "both sets hold files: %d, %d", n1, n2);
    cr_assert_eq(moved, n2, "the files moved are the new set's");
    check_files(spec);
    /* every file is home now: a second run moves nothing */
    cr_assert_eq(cli_args(&out, "volume", "rebalance", "g", "start", NULL), 0, "%s", out);
    free(out);
    st = rebalance_wait("g");
    cr_assert(strstr(st, "\"status\":\"completed\""), "%s", st);
    cr_assert_eq(json_long(st, "moved"), 0, "%s", st);
    free(st);

    /* drain the first set, commit, every file still there */
    cr_assert_neq(cli_args(&out, "volume", "remove-brick", "g", b1, "commit", NULL), 0);
    cr_assert(strstr(out, "not being drained"), "%s", out);
    free(out);
    cr_assert_eq(cli_args(&out, "volume", "remove-brick", "g", b1, "start", NULL), 0, "%s", out);
    free(out);
    st = rebalance_wait("g");
    cr_assert(strstr(st, "\"status\":\"completed\"") && strstr(st, "\"draining\":[0]"), "%s", st);
    free(st);
    cr_assert_eq(brick_files(p1), 0);
    cr_assert_eq(brick_files(p2), NFILES);
    cr_assert_eq(cli_args(&out, "volume", "remove-brick", "g", b1, "commit", NULL), 0, "%s", out);
    free(out);
    cr_assert_eq(cli_args(&out, "volume", "info", "g", NULL), 0, "%s", out);
    cr_assert(strstr(out, b2) && !strstr(out, b1), "%s", out);
    free(out);
    check_files(spec);
}

Test(server, brick_commands_refuse_bad_arguments, .init = start_server, .fini = stop_server, .timeout = 60)
{
    char b1[400], b2[400], b3[400], *out = NULL;
    snprintf(b1, sizeof(b1), "127.0.0.1:%u:%s1", d.port, brick);
    snprintf(b2, sizeof(b2), "127.0.0.1:%u:%s2", d.port, brick);
    snprintf(b3, sizeof(b3), "127.0.0.1:%u:%s3", d.port, brick);
    cr_assert_eq(cli_args(&out, "volume", "create", "r", "replica", "2", b1, b2, "force", NULL), 0, "%s", out);
    free(out);
    cr_assert_eq(cli_args(&out, "volume", "start", "r", NULL), 0, "%s", out);
    free(out);
    struct { const char *argv[8]; const char *want; } cases[] = {
        { { "volume", "add-brick", "r", b3 }, "whole replica sets of 2" },
        { { "volume", "add-brick", "r", b3, b1 }, "already a brick" },
        { { "volume", "add-brick", "nope", b3, b1 }, "does not exist" },
        { { "volume", "add-brick", "r" }, "usage" },
        { { "volume", "rebalance", "r", "start" }, "one replica set" },
        { { "volume", "rebalance", "r", "go" }, "usage" },
        { { "volume", "remove-brick", "r", b1, b2, "start" }, "every replica set" },
        { { "volume", "remove-brick", "r", b1, "start" }, "whole replica sets" },
        { { "volume", "remove-brick", "r", b3, "status" }, "not a brick" },
        { { "volume", "remove-brick", "r", b1, b2, "frob" }, "usage" },
        { { "volume", "replace-brick", "r", b3, "127.0.0.1:1:/x" }, "not a brick" },
        { { "volume", "replace-brick", "r", b1, b2 }, "already a brick" },
        { { "volume", "replace-brick", "r", b1 }, "usage" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int argc = 0;
        while (argc < 8 && cases[i].argv[argc])
            argc++;
        out = NULL;
        int rc = cli(&out, argc, (char **)cases[i].argv);
        cr_assert_neq(rc, 0, "case %zu succeeded: %s", i, out);
        cr_assert(out && strstr(out, cases[i].want), "case %zu: '%s' lacks '%s'", i, out, cases[i].want);
        cr_assert_null(strchr(out, '\n'), "case %zu: more than one line: '%s'", i, out);
        free(out);
    }
    /* nothing changed: still one set of two, version untouched by refusals */
    cr_assert_eq(cli_args(&out, "volume", "info", "r", NULL), 0, "%s", out);
    cr_assert(strstr(out, "1 x (2) = 2"), "%s", out);
    free(out);

    /* create, like add-brick, stops at KBD_MAX_SETS sets: one more would be
     * a volume whose client volfile no mount can parse */
    enum { NB = KBD_MAX_SETS + 1 };
    char specs[NB][400], *argv[NB + 4];
    int argc = 0;
    argv[argc++] = "volume";
    argv[argc++] = "create";
    argv[argc++] = "big";
    for (int i = 0; i < NB; i++) {
        snprintf(specs[i], sizeof(specs[i]), "127.0.0.1:%u:%sbig%d", d.port, brick, i);
        argv[argc++] = specs[i];
    }
    argv[argc++] = "force";
    out = NULL;
    cr_assert_neq(cli(&out, argc, argv), 0, "%d sets created: %s", NB, out);
    cr_assert(out && strstr(out, "at most 64 replica sets") && !strchr(out, '\n'), "%s", out);
    free(out);
    cr_assert_neq(cli_args(&out, "volume", "info", "big", NULL), 0, "%s", out);
    free(out);
}
