/*
 * gen_seeds.c — writes the committed seed corpus of the fuzz targets (tests/fuzz/corpus/).
 *
 *   tests/fuzz/run.sh --seeds      (builds this against build/libkembar.a and runs it)
 *
 * Seeds are valid inputs of each target, made with the real encoders so they follow the code:
 * one call frame and one reply per fop (fuzz_frame, fuzz_reply), the volfiles kembard generates
 * for a few volume shapes plus a hand-written stack (fuzz_volfile), and volume definitions
 * (fuzz_volume). Regenerate after a codec or format change.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "rpc/wire.h"
#include "server/kembard.h"
#include "xlators/fop.h"

static const char *g_dir;

static void put_file(const char *target, const char *name, const void *p, size_t n)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s", g_dir, target);
    mkdir(path, 0755);
    snprintf(path, sizeof(path), "%s/%s/%s", g_dir, target, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(p, 1, n, f) != n || fclose(f)) {
        perror(path);
        exit(1);
    }
}

static void sample_args(kb_op_t op, kb_args_t *a)
{
    memset(a, 0, sizeof(*a));
    a->gfid = kb_gfid_root;
    kb_gfid_parse("6f1d3c2a-8b7e-4d5f-9a0b-1c2d3e4f5a6b", &a->gfid2);
    kb_gfid_parse("0a1b2c3d-4e5f-4061-8273-8495a6b7c8d9", &a->newgfid);
    a->name = op == KB_FOP_SETXATTR || op == KB_FOP_GETXATTR || op == KB_FOP_REMOVEXATTR ? "user.note"
              : op == KB_FOP_XATTROP ? "trusted.kembar.pending"
              : op == KB_FOP_INODELK || op == KB_FOP_ENTRYLK ? "replicate" : "disk.qcow2";
    a->name2 = op == KB_FOP_SYMLINK ? "../images/base.img" : "renamed.qcow2";
    a->fd = 7;
    a->off = 1 << 20;
    a->size = 4096;
    a->flags = op == KB_FOP_OPEN || op == KB_FOP_CREATE ? 02 : 0;
    a->mode = 0100644;
    a->attr.mode = 0644;
    a->attr.size = 10 << 20;
    a->lock = (kb_lock_t){ .type = KB_LK_WRLCK, .start = 0, .len = 4096, .owner = 42, .pid = 1 };
}

static void frames(void)
{
    static uint8_t bulk[512];
    for (size_t i = 0; i < sizeof(bulk); i++)
        bulk[i] = (uint8_t)(i * 7);
    for (int op = 0; op < KB_FOP_MAX; op++) {
        kb_args_t a;
        sample_args((kb_op_t)op, &a);
        bool has_data = kb_fop_info[op].args & KB_A_DATA;
        if (has_data)
            a.data = kb_buf_copy(bulk, op == KB_FOP_XATTROP ? 12 : op == KB_FOP_WRITE ? sizeof(bulk) : 8);
        kb_cred_t cred = { .uid = 1000, .gid = 1000, .pid = 4242, .ngroups = 2, .groups = { 1000, 27 } };
        kb_enc_t e;
        kb_enc_init(&e);
        kb_cred_encode(&e, &cred);
        kb_args_encode(&e, (kb_op_t)op, &a);
        kb_wire_hdr_t h = { .magic = KB_WIRE_MAGIC, .version = KB_WIRE_VERSION, .type = KB_MSG_CALL,
                            .xid = 1000 + (uint64_t)op, .proc = (uint32_t)op, .plen = (uint32_t)e.len,
                            .blen = a.data ? (uint32_t)a.data->len : 0 };
        size_t n = KB_WIRE_HDR_LEN + e.len + h.blen;
        uint8_t *out = malloc(n);
        kb_wire_hdr_encode(out, &h);
        memcpy(out + KB_WIRE_HDR_LEN, e.p, e.len);
        if (a.data)
            memcpy(out + KB_WIRE_HDR_LEN + e.len, a.data->data, a.data->len);
        put_file("fuzz_frame", kb_fop_name((kb_op_t)op), out, n);
        free(out);
        kb_enc_free(&e);
        kb_buf_unref(a.data);
    }
}

static void replies(void)
{
    kb_dirent_t de[2] = {
        { .off = 1, .type = 4, .gfid = kb_gfid_root, .name = ".", .has_attr = 0 },
        { .off = 2, .type = 8, .name = "disk.qcow2", .has_attr = 1, .attr = { .mode = 0100644, .size = 1 << 20 } },
    };
    for (int op = 0; op < KB_FOP_MAX; op++) {
        kb_reply_t r = { .status = 0, .rflags = 0, .fd = 9, .off = 4096, .dirents = de, .ndirents = 2 };
        r.attr.gfid = kb_gfid_root;
        r.attr.mode = 040755;
        r.statfs = (kb_statfs_t){ .bsize = 4096, .frsize = 4096, .blocks = 1000, .bfree = 500, .namemax = 255 };
        kb_enc_t e;
        kb_enc_init(&e);
        kb_reply_encode(&e, (kb_op_t)op, &r);
        /* layout of fuzz_reply: op, status class, encoded reply, flag byte (even: no bulk) */
        uint8_t *out = malloc(e.len + 3);
        out[0] = (uint8_t)op;
        out[1] = 0;
        memcpy(out + 2, e.p, e.len);
        out[e.len + 2] = 0;
        put_file("fuzz_reply", kb_fop_name((kb_op_t)op), out, e.len + 3);
        free(out);
        kb_enc_free(&e);
    }
    uint8_t err[] = { KB_FOP_WRITE, 2 * 28 - 1, 1, 0, 0, 0, 0 };   /* -ENOSPC with rflags 1 */
    put_file("fuzz_reply", "write-enospc", err, sizeof(err));
}

static const char *defs[] = {
    "format=1\nname=vmstore\nid=3e1f0c8a-9d2b-4c6e-8f7a-1b2c3d4e5f60\nversion=3\nstatus=started\nreplica=3\n"
    "arbiter=0\nbrick=198.51.100.1:24800:/data/b1 11111111-2222-4333-8444-555555555551\n"
    "brick=198.51.100.2:24800:/data/b1 11111111-2222-4333-8444-555555555552\n"
    "brick=198.51.100.3:24800:/data/b1 11111111-2222-4333-8444-555555555553\n"
    "option=network.ping-timeout 2\noption=cluster.quorum-type auto\n",
    "format=1\nname=arb\nid=3e1f0c8a-9d2b-4c6e-8f7a-1b2c3d4e5f61\nversion=1\nstatus=created\nreplica=2\n"
    "arbiter=1\nbrick=n1:24800:/b 11111111-2222-4333-8444-555555555554\n"
    "brick=n2:24801:/b 11111111-2222-4333-8444-555555555555\n"
    "brick=[::1]:24802:/arb 11111111-2222-4333-8444-555555555556\n"
    "option=auth.allow 198.51.100.*\noption=cluster.eager-lock off\n",
    "format=1\nname=dist\nid=3e1f0c8a-9d2b-4c6e-8f7a-1b2c3d4e5f62\nversion=9\nstatus=stopped\nreplica=2\n"
    "arbiter=0\nbrick=a:1:/x 11111111-2222-4333-8444-555555555557\n"
    "brick=b:2:/x 11111111-2222-4333-8444-555555555558\nbrick=a:1:/y 11111111-2222-4333-8444-555555555559\n"
    "brick=b:2:/y 11111111-2222-4333-8444-55555555555a\noption=network.frame-timeout 30\n",
};

static void volumes(void)
{
    char err[512], name[64];
    for (size_t i = 0; i < sizeof(defs) / sizeof(defs[0]); i++) {
        snprintf(name, sizeof(name), "def%zu", i);
        put_file("fuzz_volume", name, defs[i], strlen(defs[i]));
        kbd_volume_t *v = kbd_volume_parse(defs[i], err, sizeof(err));
        if (!v) {
            fprintf(stderr, "seed definition %zu does not parse: %s\n", i, err);
            exit(1);
        }
        char *vf = kbd_volgen_client(v);
        snprintf(name, sizeof(name), "client%zu", i);
        put_file("fuzz_volfile", name, vf, strlen(vf));
        free(vf);
        vf = kbd_volgen_shd(v, 0, "0,1");
        snprintf(name, sizeof(name), "shd%zu", i);
        put_file("fuzz_volfile", name, vf, strlen(vf));
        free(vf);
        vf = kbd_volgen_brick(v, 0);
        snprintf(name, sizeof(name), "brick%zu", i);
        put_file("fuzz_volfile", name, vf, strlen(vf));
        free(vf);
        kbd_volume_free(v);
    }
    static const char stack[] =
        "# replicate over two distribute sets (DESIGN §1)\n"
        "volume c0\n  type protocol/client\n  option remote-host 198.51.100.1\n  option remote-port 24800\n"
        "  option remote-subvolume /b0\n  option volume v\n  option ping-timeout 0.5\nend-volume\n"
        "volume c1\n  type protocol/client\n  option remote-host 198.51.100.2\n  option remote-subvolume /b1\n"
        "end-volume\n"
        "volume d0\n  type cluster/distribute\n  subvolumes c0\nend-volume\n"
        "volume d1\n  type cluster/distribute\n  subvolumes c1\nend-volume\n"
        "volume top\n  type cluster/replicate\n  option quorum-type fixed\n  option quorum-count 1\n"
        "  option eager-lock-idle-ms 250\n  option heal-interval 1.5\n  subvolumes d0 d1\nend-volume\n";
    put_file("fuzz_volfile", "stack", stack, sizeof(stack) - 1);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: gen_seeds CORPUS_DIR\n");
        return 2;
    }
    g_dir = argv[1];
    mkdir(g_dir, 0755);
    frames();
    replies();
    volumes();
    return 0;
}
