/*
 * kb-evil — a hostile client for the traversal test (tests/integration/52-traversal.t.sh, issue 8).
 *
 *   kb-evil HOST PORT VOLUME BRICK_PATH --canary-rel REL --canary-abs ABS --secret NAME
 *           [--blockdev MAJ:MIN --blockdev-marker TEXT]
 *
 * It speaks the brick protocol directly (rpc/wire.h frames, the fop codec of xlators/fop.h),
 * bypassing every check a well-behaved client (kembar-fuse, libkembar) makes, and tries to make
 * the brick touch something outside its directory or its internal state:
 *   - entry names "..", ".", "a/b", "/abs", "../x", ".kembar", names with an embedded NUL,
 *     names of 256 and 4000 bytes, in lookup / create / mkdir / mknod / symlink / rename / link;
 *   - trusted.kembar.* xattrs: get, set, remove, and whether listxattr shows them;
 *   - symlinks on the brick that point outside it (REL and ABS name a canary directory next to the
 *     brick holding file SECRET), then ops that NAME THE SYMLINK BY GFID as a directory or a file:
 *     lookup/create/mkdir under it, opendir, open+write, truncate, setattr, xattrs — a brick that
 *     resolves a handle by following the link would work on the canary;
 *   - optionally a block device node (MAJ:MIN of a loop device over a canary image holding
 *     MARKER) created through MKNOD and read by gfid: reading it would read outside the brick;
 *   - broken frames: bad magic, oversized lengths, a fop before the handshake, a handshake for a
 *     path outside the brick, a huge READ, a fd never opened, trailing garbage.
 * Every case prints one line "case NAME: OP -> STATUS  ok|BAD (why)". What the brick must refuse
 * is checked here (BAD if it succeeded); what it may do harmlessly (chmod of a symlink, an xattr
 * on the link itself) is left to the test, which compares the canary before and after.
 * At the end a fresh connection must still be served (lookup of the root, create of a file).
 * Last line: "kb-evil: cases=N bad=B". Exit 0 when B == 0, 1 otherwise, 2 on setup errors.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>
#include "lib/codec.h"
#include "lib/gfid.h"
#include "rpc/wire.h"
#include "xlators/fop.h"

#define CALL_TIMEOUT_MS 10000

static const char *g_host, *g_vol, *g_brick;
static uint16_t g_port;
static int g_fd = -1;
static uint64_t g_xid = 1;
static int g_cases, g_bad;

/* ---------------- transport: one blocking connection ---------------- */

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int io_all(void *buf, size_t len, int wr, uint64_t deadline)
{
    uint8_t *p = buf;
    while (len) {
        ssize_t n = wr ? send(g_fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT) : recv(g_fd, p, len, MSG_DONTWAIT);
        if (n > 0) {
            p += n, len -= (size_t)n;
            continue;
        }
        if (n == 0)
            return -ECONNRESET;
        if (errno != EAGAIN && errno != EINTR)
            return -errno;
        uint64_t now = now_ms();
        if (now >= deadline)
            return -ETIMEDOUT;
        struct pollfd pf = { .fd = g_fd, .events = wr ? POLLOUT : POLLIN };
        poll(&pf, 1, (int)(deadline - now));
    }
    return 0;
}

static void conn_close(void)
{
    if (g_fd >= 0)
        close(g_fd);
    g_fd = -1;
}

static int conn_open(void)
{
    conn_close();
    struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res = NULL;
    char ports[8];
    snprintf(ports, sizeof(ports), "%u", g_port);
    if (getaddrinfo(g_host, ports, &hints, &res))
        return -EHOSTUNREACH;
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int rc = fd < 0 || connect(fd, res->ai_addr, res->ai_addrlen) ? -errno : 0;
    freeaddrinfo(res);
    if (rc) {
        if (fd >= 0)
            close(fd);
        return rc;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    g_fd = fd;
    return 0;
}

/* Send raw bytes as they are (for broken frames). */
static int send_raw(const void *p, size_t n) { return io_all((void *)p, n, 1, now_ms() + CALL_TIMEOUT_MS); }

typedef struct reply {
    kb_wire_hdr_t hdr;
    uint8_t *payload;
    uint8_t *bulk;
} reply_t;

static void reply_free(reply_t *r)
{
    free(r->payload);
    free(r->bulk);
    memset(r, 0, sizeof(*r));
}

/* Read the reply to XID (skipping PINGs, answering them). 0, or a transport -errno. */
static int recv_reply(uint64_t xid, reply_t *r, uint64_t deadline)
{
    memset(r, 0, sizeof(*r));
    for (;;) {
        uint8_t hb[KB_WIRE_HDR_LEN];
        const char *why = "";
        int rc = io_all(hb, sizeof(hb), 0, deadline);
        if (rc)
            return rc;
        if ((rc = kb_wire_hdr_decode(hb, &r->hdr, &why)))
            return rc;
        r->payload = malloc(r->hdr.plen + 1);
        r->bulk = malloc(r->hdr.blen + 1);
        if (!r->payload || !r->bulk)
            return -ENOMEM;
        if ((rc = io_all(r->payload, r->hdr.plen, 0, deadline)) || (rc = io_all(r->bulk, r->hdr.blen, 0, deadline)))
            return rc;
        if (r->hdr.type == KB_MSG_REPLY && r->hdr.xid == xid)
            return 0;
        if (r->hdr.type == KB_MSG_PING) {
            kb_wire_hdr_t p = { .magic = KB_WIRE_MAGIC, .version = KB_WIRE_VERSION, .type = KB_MSG_PONG,
                                .xid = r->hdr.xid };
            kb_wire_hdr_encode(hb, &p);
            send_raw(hb, sizeof(hb));
        }
        reply_free(r);
    }
}

/* One call with payload and optional bulk; the reply status (or a transport -errno) */
static int call_raw(uint32_t proc, const void *pl, uint32_t plen, const void *bulk, uint32_t blen, reply_t *r)
{
    if (g_fd < 0)
        return -ENOTCONN;
    uint64_t deadline = now_ms() + CALL_TIMEOUT_MS, xid = g_xid++;
    kb_wire_hdr_t h = { .magic = KB_WIRE_MAGIC, .version = KB_WIRE_VERSION, .type = KB_MSG_CALL,
                        .xid = xid, .proc = proc, .plen = plen, .blen = blen };
    uint8_t hb[KB_WIRE_HDR_LEN];
    kb_wire_hdr_encode(hb, &h);
    int rc = io_all(hb, sizeof(hb), 1, deadline);
    if (!rc && plen)
        rc = io_all((void *)pl, plen, 1, deadline);
    if (!rc && blen)
        rc = io_all((void *)bulk, blen, 1, deadline);
    if (!rc)
        rc = recv_reply(xid, r, deadline);
    if (rc) {
        conn_close();
        return rc;
    }
    return r->hdr.status;
}

static int handshake(const char *vol, const char *path)
{
    kb_enc_t e;
    kb_enc_init(&e);
    kb_enc_str(&e, vol);
    kb_enc_str(&e, path);
    kb_enc_str(&e, "kb-evil");
    kb_enc_u32(&e, 0);
    reply_t r;
    int st = e.err ? e.err : call_raw(KB_PROC_HANDSHAKE, e.p, (uint32_t)e.len, NULL, 0, &r);
    kb_enc_free(&e);
    if (st != -ENOTCONN && st != -ECONNRESET && st != -ETIMEDOUT)
        reply_free(&r);
    return st;
}

static int reconnect(void)
{
    int rc = conn_open();
    return rc ? rc : handshake(g_vol, g_brick);
}

/* ---------------- fops ---------------- */

/* Encode cred + args of OP; when PLACE is given, the first occurrence of PLACE's bytes in the
 * encoded payload is overwritten with REPL (same length): names the encoder would never
 * produce (an embedded NUL). Reply decoded into *out when out != NULL. */
static int fop_patched(kb_op_t op, const kb_args_t *a, const char *place, const char *repl, size_t rlen,
                       kb_reply_t *out)
{
    kb_cred_t cred = { .uid = 0, .gid = 0, .pid = (uint32_t)getpid() };
    kb_enc_t e;
    kb_enc_init(&e);
    kb_cred_encode(&e, &cred);
    kb_args_encode(&e, op, a);
    if (e.err) {
        kb_enc_free(&e);
        return -ENOMEM;
    }
    if (place) {
        size_t pl = strlen(place);
        for (size_t i = 0; i + pl <= e.len; i++)
            if (memcmp(e.p + i, place, pl) == 0) {
                memcpy(e.p + i, repl, rlen < pl ? rlen : pl);
                break;
            }
    }
    const void *bulk = a->data ? a->data->data : NULL;
    uint32_t blen = a->data ? (uint32_t)a->data->len : 0;
    reply_t r;
    int st = call_raw((uint32_t)op, e.p, (uint32_t)e.len, bulk, blen, &r);
    kb_enc_free(&e);
    if (g_fd < 0)   /* transport failure: no reply */
        return st;
    if (out) {
        memset(out, 0, sizeof(*out));
        out->status = st;
        kb_dec_t d;
        kb_dec_init(&d, r.payload, r.hdr.plen);
        kb_buf_t *b = r.hdr.blen ? kb_buf_copy(r.bulk, r.hdr.blen) : NULL;
        if (kb_reply_decode(&d, op, out, b) < 0 && st >= 0)
            st = -EBADMSG;
        kb_buf_unref(b);
    }
    reply_free(&r);
    return st;
}

static int fop(kb_op_t op, const kb_args_t *a, kb_reply_t *out) { return fop_patched(op, a, NULL, NULL, 0, out); }

/* ---------------- reporting ---------------- */

static const char *st_name(int st)
{
    static char buf[64];
    if (st >= 0) {
        snprintf(buf, sizeof(buf), "ok(%d)", st);
        return buf;
    }
    const char *n = strerrorname_np(-st);
    snprintf(buf, sizeof(buf), "%s", n ? n : "?");
    return buf;
}

/* A case whose op must be refused (status < 0). A transport failure also counts as refused
 * (the server closed the connection), and we reconnect for the next case. */
static int must_refuse(const char *name, kb_op_t op, int st)
{
    g_cases++;
    bool ok = st < 0;
    if (!ok)
        g_bad++;
    printf("case %-34s %-11s -> %-14s %s\n", name, kb_fop_name(op), st_name(st), ok ? "ok" : "BAD (accepted)");
    if (g_fd < 0 && reconnect())
        printf("  (reconnect failed)\n");
    return st;
}

static void note(const char *name, kb_op_t op, int st, bool ok, const char *why)
{
    g_cases++;
    if (!ok)
        g_bad++;
    printf("case %-34s %-11s -> %-14s %s%s%s\n", name, kb_fop_name(op), st_name(st), ok ? "ok" : "BAD",
           why ? " " : "", why ? why : "");
    if (g_fd < 0 && reconnect())
        printf("  (reconnect failed)\n");
}

/* ---------------- helpers for cases ---------------- */

static kb_args_t entry_args(const kb_gfid_t *parent, const char *name)
{
    kb_args_t a = { 0 };
    a.gfid = *parent;
    a.name = (char *)name;
    kb_gfid_generate(&a.newgfid);
    a.mode = 0644;
    a.flags = O_RDWR;
    return a;
}

static int op_create(const kb_gfid_t *parent, const char *name, kb_gfid_t *gfid, uint64_t *fd)
{
    kb_args_t a = entry_args(parent, name);
    a.flags = O_RDWR | O_CREAT | O_EXCL;
    kb_reply_t r;
    int st = fop(KB_FOP_CREATE, &a, &r);
    if (st >= 0) {
        if (gfid)
            *gfid = a.newgfid;
        if (fd)
            *fd = r.fd;
    }
    if (g_fd >= 0)
        kb_reply_clear(&r);
    return st;
}

static int op_symlink(const kb_gfid_t *parent, const char *name, const char *target, kb_gfid_t *gfid)
{
    kb_args_t a = entry_args(parent, name);
    a.name2 = (char *)target;
    int st = fop(KB_FOP_SYMLINK, &a, NULL);
    if (st >= 0 && gfid)
        *gfid = a.newgfid;
    return st;
}

static int op_setxattr(const kb_gfid_t *g, const char *key, const char *val)
{
    kb_args_t a = { .gfid = *g, .name = (char *)key };
    a.data = kb_buf_copy(val, strlen(val));
    int st = fop(KB_FOP_SETXATTR, &a, NULL);
    kb_buf_unref(a.data);
    return st;
}

/* GETXATTR of KEY into val (NUL-terminated, truncated to vlen). */
static int op_getxattr(const kb_gfid_t *g, const char *key, char *val, size_t vlen)
{
    kb_args_t a = { .gfid = *g, .name = (char *)key, .size = 4096 };
    kb_reply_t r;
    int st = fop(KB_FOP_GETXATTR, &a, &r);
    if (val)
        val[0] = 0;
    if (g_fd >= 0) {
        if (st >= 0 && r.data && val) {
            size_t n = r.data->len < vlen - 1 ? r.data->len : vlen - 1;
            memcpy(val, r.data->data, n);
            val[n] = 0;
        }
        kb_reply_clear(&r);
    }
    return st;
}

/* ---------------- the cases ---------------- */

static void names_cases(void)
{
    const kb_gfid_t *root = &kb_gfid_root;
    static const char *bad_names[] = { "..", ".", "a/b", "/abs-escape", "../escape", "../../escape",
                                       ".kembar", "..\\escape" };
    char big256[257], big4000[4001];
    memset(big256, 'a', 256), big256[256] = 0;
    memset(big4000, 'b', 4000), big4000[4000] = 0;
    char label[80];
    for (size_t i = 0; i < sizeof(bad_names) / sizeof(bad_names[0]); i++) {
        const char *n = bad_names[i];
        /* "..\\escape" is a legal name on Linux: it only has to stay inside (checked by the test). */
        bool legal = strchr(n, '\\') != NULL;
        kb_args_t a = entry_args(root, n);
        snprintf(label, sizeof(label), "lookup '%s'", n);
        int st = fop(KB_FOP_LOOKUP, &a, NULL);
        if (legal)
            note(label, KB_FOP_LOOKUP, st, true, NULL);
        else
            must_refuse(label, KB_FOP_LOOKUP, st);
        a.flags = O_RDWR | O_CREAT | O_EXCL;
        snprintf(label, sizeof(label), "create '%s'", n);
        st = fop(KB_FOP_CREATE, &a, NULL);
        legal ? note(label, KB_FOP_CREATE, st, true, "(legal name)") : (void)must_refuse(label, KB_FOP_CREATE, st);
        kb_gfid_generate(&a.newgfid);
        a.mode = 0755;
        snprintf(label, sizeof(label), "mkdir '%s'", n);
        if (!legal)
            must_refuse(label, KB_FOP_MKDIR, fop(KB_FOP_MKDIR, &a, NULL));
        kb_gfid_generate(&a.newgfid);
        a.mode = S_IFIFO | 0644;
        snprintf(label, sizeof(label), "mknod '%s'", n);
        if (!legal)
            must_refuse(label, KB_FOP_MKNOD, fop(KB_FOP_MKNOD, &a, NULL));
        kb_gfid_generate(&a.newgfid);
        a.name2 = "target";
        snprintf(label, sizeof(label), "symlink '%s'", n);
        if (!legal)
            must_refuse(label, KB_FOP_SYMLINK, fop(KB_FOP_SYMLINK, &a, NULL));
    }
    /* Names the encoder never produces: an embedded NUL ("ok\0../x"), and over-long ones. */
    kb_args_t a = entry_args(root, "okXX..Xesc");
    a.flags = O_RDWR | O_CREAT | O_EXCL;
    must_refuse("create 'ok\\0../esc' (embedded NUL)", KB_FOP_CREATE,
                fop_patched(KB_FOP_CREATE, &a, "okXX..Xesc", "ok\0../esc", 10, NULL));
    a = entry_args(root, "XX");
    must_refuse("lookup '\\0\\0' (NULs only)", KB_FOP_LOOKUP, fop_patched(KB_FOP_LOOKUP, &a, "XX", "\0\0", 2, NULL));
    a = entry_args(root, big256);
    a.flags = O_RDWR | O_CREAT | O_EXCL;
    must_refuse("create 256-byte name", KB_FOP_CREATE, fop(KB_FOP_CREATE, &a, NULL));
    a = entry_args(root, big4000);
    a.mode = 0755;
    must_refuse("mkdir 4000-byte name", KB_FOP_MKDIR, fop(KB_FOP_MKDIR, &a, NULL));
    a = entry_args(root, "longtarget");
    char *target = malloc(KB_PATH_MAX + 100);
    memset(target, 'c', KB_PATH_MAX + 99), target[KB_PATH_MAX + 99] = 0;
    a.name2 = target;
    must_refuse("symlink target of 4195 bytes", KB_FOP_SYMLINK, fop(KB_FOP_SYMLINK, &a, NULL));
    free(target);
}

static void rename_link_cases(void)
{
    const kb_gfid_t *root = &kb_gfid_root;
    kb_gfid_t victim;
    int st = op_create(root, "evil-victim", &victim, NULL);
    note("create 'evil-victim' (legal)", KB_FOP_CREATE, st, st >= 0, st < 0 ? "(a legal create must work)" : NULL);
    static const char *bad[] = { "../renamed", "..", "/abs-renamed", ".kembar", "a/b" };
    char label[80];
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        kb_args_t a = { .gfid = *root, .name = "evil-victim", .gfid2 = *root, .name2 = (char *)bad[i] };
        snprintf(label, sizeof(label), "rename victim -> '%s'", bad[i]);
        must_refuse(label, KB_FOP_RENAME, fop(KB_FOP_RENAME, &a, NULL));
        kb_args_t l = { .gfid = victim, .gfid2 = *root, .name2 = (char *)bad[i] };
        snprintf(label, sizeof(label), "link victim as '%s'", bad[i]);
        must_refuse(label, KB_FOP_LINK, fop(KB_FOP_LINK, &l, NULL));
    }
    kb_args_t a = { .gfid = *root, .name = ".kembar", .gfid2 = *root, .name2 = "stolen-internal" };
    must_refuse("rename '.kembar' -> 'stolen-internal'", KB_FOP_RENAME, fop(KB_FOP_RENAME, &a, NULL));
    a = (kb_args_t){ .gfid = *root, .name = "..", .gfid2 = *root, .name2 = "stolen-parent" };
    must_refuse("rename '..' -> 'stolen-parent'", KB_FOP_RENAME, fop(KB_FOP_RENAME, &a, NULL));
    a = (kb_args_t){ .gfid = *root, .name = ".kembar" };
    must_refuse("unlink '.kembar'", KB_FOP_UNLINK, fop(KB_FOP_UNLINK, &a, NULL));
    must_refuse("rmdir '.kembar'", KB_FOP_RMDIR, fop(KB_FOP_RMDIR, &a, NULL));
    a.name = "..";
    must_refuse("rmdir '..'", KB_FOP_RMDIR, fop(KB_FOP_RMDIR, &a, NULL));
    /* The root itself cannot be named as a link source or renamed away. */
    kb_args_t l = { .gfid = *root, .gfid2 = *root, .name2 = "root-link" };
    must_refuse("link the root dir as 'root-link'", KB_FOP_LINK, fop(KB_FOP_LINK, &l, NULL));
}

static void xattr_cases(void)
{
    const kb_gfid_t *root = &kb_gfid_root;
    static const char *keys[] = { "trusted.kembar.gfid", "trusted.kembar.volume-id", "trusted.kembar.brick-id",
                                  "trusted.kembar.evil", "trusted.kembar." };
    char label[96], val[4096];
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        snprintf(label, sizeof(label), "getxattr root %s", keys[i]);
        must_refuse(label, KB_FOP_GETXATTR, op_getxattr(root, keys[i], val, sizeof(val)));
        snprintf(label, sizeof(label), "setxattr root %s", keys[i]);
        must_refuse(label, KB_FOP_SETXATTR, op_setxattr(root, keys[i], "0123456789abcdef"));
        kb_args_t a = { .gfid = *root, .name = (char *)keys[i] };
        snprintf(label, sizeof(label), "removexattr root %s", keys[i]);
        must_refuse(label, KB_FOP_REMOVEXATTR, fop(KB_FOP_REMOVEXATTR, &a, NULL));
    }
    /* listxattr must not show the internal keys. */
    kb_args_t a = { .gfid = *root, .size = 65536 };
    kb_reply_t r;
    int st = fop(KB_FOP_LISTXATTR, &a, &r);
    bool leak = false;
    if (g_fd >= 0) {
        if (st >= 0 && r.data)
            for (size_t i = 0; i < r.data->len;) {
                const char *k = (const char *)r.data->data + i;
                size_t kl = strnlen(k, r.data->len - i);
                leak |= strncmp(k, "trusted.kembar.", 15) == 0;
                i += kl + 1;
            }
        kb_reply_clear(&r);
    }
    note("listxattr root hides trusted.kembar.*", KB_FOP_LISTXATTR, st, !leak,
         leak ? "(internal keys listed)" : NULL);
}

/* Symlinks that point outside the brick, then ops naming them by gfid as dir or file. */
static void symlink_cases(const char *canary_rel, const char *canary_abs, const char *secret)
{
    const kb_gfid_t *root = &kb_gfid_root;
    char target[4096], label[96], val[4096];
    struct { const char *name, *dir; } links[] = { { "esc-rel", canary_rel }, { "esc-abs", canary_abs } };
    for (size_t i = 0; i < 2; i++) {
        kb_gfid_t dl, fl;
        int st = op_symlink(root, links[i].name, links[i].dir, &dl);
        snprintf(label, sizeof(label), "symlink '%s' -> canary dir", links[i].name);
        note(label, KB_FOP_SYMLINK, st, true, "(allowed: a link is data; following it is not)");
        if (st < 0)
            continue;
        snprintf(target, sizeof(target), "%s/%s", links[i].dir, secret);
        char fname[64];
        snprintf(fname, sizeof(fname), "%s-file", links[i].name);
        st = op_symlink(root, fname, target, &fl);
        snprintf(label, sizeof(label), "symlink '%s' -> canary file", fname);
        note(label, KB_FOP_SYMLINK, st, true, NULL);

        kb_args_t a = entry_args(&dl, secret);
        snprintf(label, sizeof(label), "lookup %s/<secret> (via link)", links[i].name);
        must_refuse(label, KB_FOP_LOOKUP, fop(KB_FOP_LOOKUP, &a, NULL));
        a = entry_args(&dl, "pwned");
        a.flags = O_RDWR | O_CREAT | O_EXCL;
        snprintf(label, sizeof(label), "create %s/pwned", links[i].name);
        must_refuse(label, KB_FOP_CREATE, fop(KB_FOP_CREATE, &a, NULL));
        a = entry_args(&dl, "pwned-dir");
        a.mode = 0755;
        snprintf(label, sizeof(label), "mkdir %s/pwned-dir", links[i].name);
        must_refuse(label, KB_FOP_MKDIR, fop(KB_FOP_MKDIR, &a, NULL));
        a = entry_args(&dl, secret);
        snprintf(label, sizeof(label), "unlink %s/<secret>", links[i].name);
        must_refuse(label, KB_FOP_UNLINK, fop(KB_FOP_UNLINK, &a, NULL));
        a = (kb_args_t){ .gfid = dl };
        snprintf(label, sizeof(label), "opendir %s", links[i].name);
        must_refuse(label, KB_FOP_OPENDIR, fop(KB_FOP_OPENDIR, &a, NULL));
        /* Harmless if applied to the link itself; the test checks the canary. */
        a = (kb_args_t){ .gfid = dl, .flags = KB_SET_MODE };
        a.attr.mode = 0777;
        snprintf(label, sizeof(label), "setattr mode 0777 on %s", links[i].name);
        note(label, KB_FOP_SETATTR, fop(KB_FOP_SETATTR, &a, NULL), true, "(canary checked by the test)");
        snprintf(label, sizeof(label), "setxattr user.pwned on %s", links[i].name);
        note(label, KB_FOP_SETXATTR, op_setxattr(&dl, "user.pwned", "1"), true, "(canary checked by the test)");
        if (st < 0)
            continue;
        /* The file link: reading or writing through it would reach the canary file. */
        a = (kb_args_t){ .gfid = fl, .flags = O_RDWR };
        kb_reply_t r;
        st = fop(KB_FOP_OPEN, &a, &r);
        uint64_t fd = st >= 0 && g_fd >= 0 ? r.fd : 0;
        snprintf(label, sizeof(label), "open O_RDWR %s", fname);
        must_refuse(label, KB_FOP_OPEN, st);
        if (fd) {
            kb_args_t w = { .gfid = fl, .fd = fd, .off = 0 };
            w.data = kb_buf_copy("PWNED", 5);
            note("  write through it", KB_FOP_WRITE, fop(KB_FOP_WRITE, &w, NULL), true, NULL);
            kb_buf_unref(w.data);
        }
        a = (kb_args_t){ .gfid = fl, .off = 0 };
        snprintf(label, sizeof(label), "truncate %s to 0", fname);
        note(label, KB_FOP_TRUNCATE, fop(KB_FOP_TRUNCATE, &a, NULL), true, "(canary checked by the test)");
        a = (kb_args_t){ .gfid = fl, .flags = KB_SET_SIZE };
        snprintf(label, sizeof(label), "setattr size 0 on %s", fname);
        note(label, KB_FOP_SETATTR, fop(KB_FOP_SETATTR, &a, NULL), true, "(canary checked by the test)");
        st = op_getxattr(&fl, "user.canary", val, sizeof(val));
        snprintf(label, sizeof(label), "getxattr user.canary via %s", fname);
        note(label, KB_FOP_GETXATTR, st, !(st >= 0 && strstr(val, "canary")),
             st >= 0 && strstr(val, "canary") ? "(read the canary's xattr: outside the brick)" : NULL);
        a = (kb_args_t){ .gfid = fl, .flags = O_RDONLY };
        st = fop(KB_FOP_OPEN, &a, &r);
        fd = st >= 0 && g_fd >= 0 ? r.fd : 0;
        if (fd) {
            kb_args_t rd = { .gfid = fl, .fd = fd, .off = 0, .size = 4096 };
            kb_reply_t rr;
            int rs = fop(KB_FOP_READ, &rd, &rr);
            bool leak = rs > 0 && g_fd >= 0 && rr.data && memmem(rr.data->data, rr.data->len, "canary", 6);
            if (g_fd >= 0)
                kb_reply_clear(&rr);
            snprintf(label, sizeof(label), "read via %s", fname);
            note(label, KB_FOP_READ, rs, !leak, leak ? "(read the canary file: outside the brick)" : NULL);
        } else {
            snprintf(label, sizeof(label), "open O_RDONLY %s", fname);
            must_refuse(label, KB_FOP_OPEN, st);
        }
    }
}

/* A block device node naming a loop device over a canary image: reading it would read outside. */
static void device_cases(unsigned maj, unsigned mnr, const char *marker)
{
    const kb_gfid_t *root = &kb_gfid_root;
    kb_args_t a = entry_args(root, "evil-blockdev");
    a.mode = S_IFBLK | 0600;
    a.rdev = makedev(maj, mnr);
    int st = fop(KB_FOP_MKNOD, &a, NULL);
    note("mknod block device of the canary image", KB_FOP_MKNOD, st, true, "(checked by reading it)");
    if (st < 0)
        return;
    kb_gfid_t g = a.newgfid;
    kb_args_t o = { .gfid = g, .flags = O_RDONLY };
    kb_reply_t r;
    st = fop(KB_FOP_OPEN, &o, &r);
    uint64_t fd = st >= 0 && g_fd >= 0 ? r.fd : 0;
    if (!fd) {
        must_refuse("open the block device node", KB_FOP_OPEN, st);
        return;
    }
    kb_args_t rd = { .gfid = g, .fd = fd, .off = 0, .size = 65536 };
    kb_reply_t rr;
    int rs = fop(KB_FOP_READ, &rd, &rr);
    bool leak = rs > 0 && g_fd >= 0 && rr.data && memmem(rr.data->data, rr.data->len, marker, strlen(marker));
    if (g_fd >= 0)
        kb_reply_clear(&rr);
    note("read the block device node", KB_FOP_READ, rs, !leak,
         leak ? "(read the canary image through a device node: outside the brick)" : NULL);
}

/* Broken frames and protocol misuse: each must be refused without hurting the daemon. */
static void frame_cases(void)
{
    uint8_t hb[KB_WIRE_HDR_LEN];
    reply_t r;
    kb_wire_hdr_t h = { .magic = 0xdeadbeef, .version = KB_WIRE_VERSION, .type = KB_MSG_CALL, .xid = 1,
                        .proc = KB_FOP_LOOKUP };
    struct { const char *name; kb_wire_hdr_t h; } bad[] = {
        { "frame with bad magic", h },
        { "frame with version 99", { KB_WIRE_MAGIC, 99, KB_MSG_CALL, 0, 1, KB_FOP_LOOKUP, 0, 0, 0 } },
        { "frame with type 77", { KB_WIRE_MAGIC, KB_WIRE_VERSION, 77, 0, 1, KB_FOP_LOOKUP, 0, 0, 0 } },
        { "frame with plen 4 GiB-1", { KB_WIRE_MAGIC, KB_WIRE_VERSION, KB_MSG_CALL, 0, 1, KB_FOP_LOOKUP, 0, 0xffffffffu, 0 } },
        { "frame with blen 4 GiB-1", { KB_WIRE_MAGIC, KB_WIRE_VERSION, KB_MSG_CALL, 0, 1, KB_FOP_WRITE, 0, 0, 0xffffffffu } },
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (reconnect()) {
            note(bad[i].name, KB_FOP_LOOKUP, -ENOTCONN, false, "(cannot reconnect)");
            continue;
        }
        kb_wire_hdr_encode(hb, &bad[i].h);
        if (bad[i].h.magic != KB_WIRE_MAGIC)
            kb_put_le32(hb, bad[i].h.magic);
        send_raw(hb, sizeof(hb));
        int st = recv_reply(1, &r, now_ms() + 3000);
        bool closed = st == -ECONNRESET || st == -EPIPE;
        if (st == 0)
            reply_free(&r);
        note(bad[i].name, KB_FOP_LOOKUP, st, closed, closed ? "(connection closed)" : "(connection not closed)");
        conn_close();
    }
    /* A fop before any handshake. */
    conn_open();
    kb_args_t a = entry_args(&kb_gfid_root, "x");
    must_refuse("lookup before the handshake", KB_FOP_LOOKUP, fop(KB_FOP_LOOKUP, &a, NULL));
    /* Handshakes for paths that are not this brick. */
    char p[4096];
    const char *paths[] = { "/", "/etc", NULL, NULL, NULL };
    snprintf(p, sizeof(p), "%s/..", g_brick);
    paths[2] = p;
    char p2[4096];
    snprintf(p2, sizeof(p2), "%s/.kembar", g_brick);
    paths[3] = p2;
    for (int i = 0; paths[i]; i++) {
        conn_open();
        char label[128];
        snprintf(label, sizeof(label), "handshake for brick '%.80s'", paths[i]);
        int st = handshake(g_vol, paths[i]);
        g_cases++;
        if (st >= 0)
            g_bad++;
        printf("case %-34s %-11s -> %-14s %s\n", label, "HANDSHAKE", st_name(st), st < 0 ? "ok" : "BAD (accepted)");
    }
    conn_close();
    reconnect();
    /* A READ of 1 GiB, a fd never opened, trailing garbage, an unknown procedure. */
    kb_args_t rd = { .gfid = kb_gfid_root, .fd = 12345, .fd_valid = 1, .size = 1u << 30 };
    must_refuse("read of 1 GiB", KB_FOP_READ, fop(KB_FOP_READ, &rd, NULL));
    rd.size = 4096;
    must_refuse("read on a fd never opened", KB_FOP_READ, fop(KB_FOP_READ, &rd, NULL));
    kb_args_t lk = entry_args(&kb_gfid_root, "x");
    kb_cred_t cred = { 0 };
    kb_enc_t e;
    kb_enc_init(&e);
    kb_cred_encode(&e, &cred);
    kb_args_encode(&e, KB_FOP_LOOKUP, &lk);
    kb_enc_u64(&e, 0x4141414141414141ull);
    int st = call_raw(KB_FOP_LOOKUP, e.p, (uint32_t)e.len, NULL, 0, &r);
    if (g_fd >= 0)
        reply_free(&r);
    must_refuse("lookup with trailing garbage", KB_FOP_LOOKUP, st);
    st = call_raw(KB_FOP_MAX + 5, e.p, (uint32_t)e.len, NULL, 0, &r);
    if (g_fd >= 0)
        reply_free(&r);
    must_refuse("unknown procedure number", KB_FOP_LOOKUP, st);
    st = call_raw(KB_FOP_LOOKUP, e.p, 7, NULL, 0, &r);   /* cut inside the credentials */
    if (g_fd >= 0)
        reply_free(&r);
    must_refuse("lookup with a truncated payload", KB_FOP_LOOKUP, st);
    kb_enc_free(&e);
}

/* The daemon still serves: a fresh connection, a lookup of the root, a create. */
static void still_serving(void)
{
    int st = reconnect();
    if (st >= 0) {
        kb_args_t a = { .gfid = kb_gfid_root };
        st = fop(KB_FOP_LOOKUP, &a, NULL);
    }
    note("still serving: lookup root", KB_FOP_LOOKUP, st, st >= 0, st < 0 ? "(daemon no longer serves)" : NULL);
    if (st >= 0) {
        st = op_create(&kb_gfid_root, "after-evil", NULL, NULL);
        note("still serving: create 'after-evil'", KB_FOP_CREATE, st, st >= 0, NULL);
    }
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc < 5) {
        fprintf(stderr, "usage: kb-evil HOST PORT VOLUME BRICK_PATH --canary-rel REL --canary-abs ABS "
                        "--secret NAME [--blockdev MAJ:MIN --blockdev-marker TEXT]\n");
        return 2;
    }
    g_host = argv[1];
    g_port = (uint16_t)atoi(argv[2]);
    g_vol = argv[3];
    g_brick = argv[4];
    const char *rel = NULL, *abs_ = NULL, *secret = NULL, *marker = NULL;
    unsigned maj = 0, mnr = 0;
    bool blockdev = false;
    for (int i = 5; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--canary-rel")) rel = argv[i + 1];
        else if (!strcmp(argv[i], "--canary-abs")) abs_ = argv[i + 1];
        else if (!strcmp(argv[i], "--secret")) secret = argv[i + 1];
        else if (!strcmp(argv[i], "--blockdev-marker")) marker = argv[i + 1];
        else if (!strcmp(argv[i], "--blockdev") && sscanf(argv[i + 1], "%u:%u", &maj, &mnr) == 2) blockdev = true;
        else {
            fprintf(stderr, "kb-evil: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    if (!rel || !abs_ || !secret) {
        fprintf(stderr, "kb-evil: --canary-rel, --canary-abs and --secret are required\n");
        return 2;
    }
    int st = reconnect();
    if (st < 0) {
        fprintf(stderr, "kb-evil: cannot attach to %s:%u %s:%s: %s\n", g_host, g_port, g_vol, g_brick, strerror(-st));
        return 2;
    }
    names_cases();
    rename_link_cases();
    xattr_cases();
    symlink_cases(rel, abs_, secret);
    if (blockdev && marker)
        device_cases(maj, mnr, marker);
    frame_cases();
    still_serving();
    conn_close();
    printf("kb-evil: cases=%d bad=%d\n", g_cases, g_bad);
    return g_bad ? 1 : 0;
}
