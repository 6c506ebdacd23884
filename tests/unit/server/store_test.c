/*
 * store_test.c — what a node tells and refuses about versions (issue 18):
 * the state dir's format (kbd_state_format), PEER "version", the op-version
 * a new volume gets, `volume set` of an option a later release introduced
 * (refused while a client of the volume runs an older release, raising the
 * op-version when taken), `volume set cluster.op-version`, and a definition
 * of a newer op-version refused by `peer store`. In-process kembard, as in
 * server_test.c.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>
#include "client/kembar.h"
#include "lib/log.h"
#include "lib/version.h"
#include "rpc/sync.h"
#include "rpc/wire.h"
#include "server/kembard.h"
#include "server/trust.h"

static kbd_t d;
static char root[256], brick[300];

static void start_server(void)
{
    kb_log_level = KB_LOG_WARN;
    snprintf(root, sizeof(root), "/var/tmp/kb-store-test-%d", getpid());
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
    cr_assert_eq(kbd_trust_init(&d, err, sizeof(err)), 0, "%s", err);   /* peer list reads its peers */
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

static int call(uint32_t proc, char **out, int argc, char **argv)
{
    char err[512] = "";
    *out = NULL;
    int rc = rpc_sync_argv("127.0.0.1", d.port, proc, argc, argv, 30000, out, err, sizeof(err));
    if (rc && !*out)
        *out = strdup(err);
    return rc;
}

#define CLI(out, ...) call(KB_PROC_CLI, out, (int)(sizeof((char *[]){ __VA_ARGS__ }) / sizeof(char *)), \
                           (char *[]){ __VA_ARGS__ })
#define PEER(out, ...) call(KB_PROC_PEER, out, (int)(sizeof((char *[]){ __VA_ARGS__ }) / sizeof(char *)), \
                            (char *[]){ __VA_ARGS__ })

static void create_volume(void)
{
    char bspec[400], *out = NULL;
    snprintf(bspec, sizeof(bspec), "127.0.0.1:%u:%s", d.port, brick);
    cr_assert_eq(CLI(&out, "volume", "create", "v", bspec, "force"), 0, "create: %s", out);
    free(out);
    cr_assert_eq(CLI(&out, "volume", "start", "v"), 0, "start: %s", out);
    free(out);
}

static char *get(const char *key)
{
    char *out = NULL;
    cr_assert_eq(CLI(&out, "volume", "get", "v", (char *)key), 0, "get: %s", out);
    return out;
}

/* ---------------- the state dir's format ---------------- */

static char *read_text(const char *path)
{
    char *t = NULL;
    size_t len;
    return kb_read_file(path, &t, &len) == 0 ? t : NULL;
}

static int entries(const char *dir)
{
    int n = 0;
    DIR *dh = opendir(dir);
    for (struct dirent *de; dh && (de = readdir(dh));)
        n += de->d_name[0] != '.';
    if (dh)
        closedir(dh);
    return n;
}

Test(store, state_dir_format)
{
    char dir[256], file[300], err[512] = "";
    snprintf(dir, sizeof(dir), "/var/tmp/kb-state-format-%d", getpid());
    snprintf(file, sizeof(file), "%s/%s", dir, KBD_STATE_FORMAT_FILE);
    cr_assert_eq(kb_mkdir_p(dir, 0700), 0);
    /* a state dir of kembar 0.1.0 (no format file): stamped */
    cr_assert_eq(kbd_state_format(dir, err, sizeof(err)), 0, "%s", err);
    char *t = read_text(file);
    cr_assert_str_eq(t, "1\n");
    free(t);
    /* the current one: left as it is */
    cr_assert_eq(kbd_state_format(dir, err, sizeof(err)), 0, "%s", err);
    /* a newer kembard's: refused, one line, nothing written */
    cr_assert_eq(kb_write_file_atomic(file, "2\n", 2), 0);
    cr_assert_eq(kbd_state_format(dir, err, sizeof(err)), -EPROTONOSUPPORT);
    cr_assert(strstr(err, "format 2") && strstr(err, "knows up to 1") && strstr(err, "nothing was changed"), "%s",
              err);
    cr_assert_null(strchr(err, '\n'), "%s", err);
    t = read_text(file);
    cr_assert_str_eq(t, "2\n", "the stamp was not touched");
    free(t);
    cr_assert_eq(entries(dir), 1, "nothing else was created");
    /* junk: refused too */
    cr_assert_eq(kb_write_file_atomic(file, "two\n", 4), 0);
    cr_assert_eq(kbd_state_format(dir, err, sizeof(err)), -EINVAL);
    cr_assert(strstr(err, "not a format number"), "%s", err);
    unlink(file);
    rmdir(dir);
}

/* ---------------- versions between nodes ---------------- */

Test(store, peer_version_and_a_new_volume, .init = start_server, .fini = stop_server, .timeout = 60)
{
    char *out = NULL, want[128];
    cr_assert_eq(PEER(&out, "peer", KB_PEER_VERSION_OP), 0, "%s", out);
    snprintf(want, sizeof(want), "version=%s proto-min=%d proto-max=%d ", KB_VERSION, KB_PROTO_MIN, KB_PROTO_MAX);
    cr_assert(strstr(out, want), "%s", out);
    snprintf(want, sizeof(want), " op-version=%u ", KB_OP_VERSION);
    cr_assert(strstr(out, want), "%s", out);
    free(out);
    /* a volume whose nodes all run this release gets its op-version */
    create_volume();
    out = get(KBD_OP_VERSION_KEY);
    snprintf(want, sizeof(want), "%s %u\n", KBD_OP_VERSION_KEY, KB_OP_VERSION);
    cr_assert_str_eq(out, want);
    free(out);
    cr_assert_eq(CLI(&out, "volume", "info", "v"), 0);
    cr_assert(strstr(out, "Op-version: 2 (kembar 0.2 and later)"), "%s", out);
    free(out);
    /* peer list shows what this node runs */
    cr_assert_eq(CLI(&out, "peer", "list"), 0, "%s", out);
    cr_assert(strstr(out, KB_VERSION), "%s", out);
    free(out);
}

Test(store, op_version_set, .init = start_server, .fini = stop_server, .timeout = 60)
{
    create_volume();
    char *out = NULL;
    cr_assert_eq(CLI(&out, "volume", "set", "v", KBD_OP_VERSION_KEY, "max"), 0, "%s", out);
    cr_assert(strstr(out, "op-version 2"), "%s", out);
    free(out);
    cr_assert_neq(CLI(&out, "volume", "set", "v", KBD_OP_VERSION_KEY, "1"), 0);
    cr_assert(strstr(out, "never goes down"), "%s", out);
    free(out);
    cr_assert_eq(CLI(&out, "volume", "set", "v", KBD_OP_VERSION_KEY, "3"), -EPROTONOSUPPORT);
    cr_assert(strstr(out, "runs kembar 0.2.0, which op-version 3 needs >= a newer release"), "%s", out);
    cr_assert_null(strchr(out, '\n'), "%s", out);
    free(out);
    cr_assert_neq(CLI(&out, "volume", "set", "v", KBD_OP_VERSION_KEY, "soon"), 0);
    cr_assert(strstr(out, "'max' or a number"), "%s", out);
    free(out);
}

/* A definition a newer release wrote (op-version above ours) is not taken. */
Test(store, newer_op_version_refused, .init = start_server, .fini = stop_server, .timeout = 60)
{
    create_volume();
    char *text = NULL, *out = NULL;
    cr_assert_eq(PEER(&text, "peer", "get", "v"), 0);
    kbd_volume_t *v = kbd_volume_parse(text, (char[256]){ 0 }, 256);
    cr_assert_not_null(v);
    free(text);
    v->op_version = KB_OP_VERSION + 1;
    v->version++;
    text = kbd_volume_format(v);
    cr_assert_eq(PEER(&out, "peer", "store", "0", text), -EPROTONOSUPPORT);
    cr_assert(strstr(out, "op-version 3") && strstr(out, "does not reach"), "%s", out);
    free(out);
    free(text);
    kbd_volume_free(v);
    out = get(KBD_OP_VERSION_KEY);
    cr_assert_str_eq(out, "cluster.op-version 2\n", "the stored definition is unchanged");
    free(out);
}

/* A client of kembar 0.1 attached to a brick (a protocol 1 handshake: no
 * release): an option of 0.2 is refused while it is there. */
Test(store, option_of_a_later_release_waits_for_old_clients, .init = start_server, .fini = stop_server,
     .timeout = 60)
{
    create_volume();
    char err[256], *out = NULL;
    cr_assert_eq(CLI(&out, "volume", "set", "v", KBD_OP_VERSION_KEY, "1"), -EINVAL, "already 2: %s", out);
    free(out);
    rpc_sync_t *rs = rpc_sync_connect("127.0.0.1", d.port, 2000, err, sizeof(err));
    cr_assert_not_null(rs, "%s", err);
    kb_enc_t e;
    kb_enc_init(&e);
    kb_enc_str(&e, "v");
    kb_enc_str(&e, brick);
    kb_enc_str(&e, "v-client-0");
    kb_enc_u32(&e, 1);
    rpc_msg_t r;
    cr_assert_eq(rpc_sync_call(rs, KB_PROC_HANDSHAKE, e.p, (uint32_t)e.len, 2000, &r, err, sizeof(err)), 0);
    cr_assert_eq(r.hdr.status, 0);
    rpc_msg_free(&r);
    kb_enc_free(&e);
    int rc = CLI(&out, "volume", "set", "v", "network.lock-lease", "30");
    cr_assert_eq(rc, -EPROTONOSUPPORT, "%s", out);
    cr_assert(strstr(out, "client 127.0.0.1 (v-client-0") && strstr(out, "runs kembar 0.1, which network.lock-lease "
              "needs >= 0.2"), "%s", out);
    cr_assert_null(strchr(out, '\n'), "%s", out);
    free(out);
    out = get("network.lock-lease");
    cr_assert_str_eq(out, "network.lock-lease \n", "not stored");
    free(out);
    rpc_sync_close(rs);
    /* the old client gone: taken */
    for (int i = 0; i < 50; i++) {
        rc = CLI(&out, "volume", "set", "v", "network.lock-lease", "30");
        if (rc == 0)
            break;
        free(out);
        usleep(100 * 1000);
    }
    cr_assert_eq(rc, 0, "%s", out);
    free(out);
    out = get("network.lock-lease");
    cr_assert_str_eq(out, "network.lock-lease 30\n");
    free(out);
    /* a client of this release does not stand in the way */
    char spec[400];
    snprintf(spec, sizeof(spec), "127.0.0.1:%u:/v", d.port);
    kbc_t *c = kbc_new(spec, NULL, err, sizeof(err));
    cr_assert_not_null(c, "kbc_new: %s", err);
    cr_assert_eq(CLI(&out, "volume", "set", "v", "network.lock-lease", "20"), 0, "%s", out);
    free(out);
    kbc_free(c);
}
