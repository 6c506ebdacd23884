/*
 * client_test.c — libkembar (client/): spec parsing, the volfile fetch and
 * its one-line errors against a fake GETSPEC server, the CHILD_UP wait,
 * kbc_submit from many threads (exactly once, on the loop thread), the sync
 * API over a mock brick, and a real storage/posix graph through
 * kbc_new_from_volfile (create/write/read/rename/readdir with content checks).
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>

#include "client/kembar.h"
#include "lib/loop.h"
#include "rpc/conn.h"

/* ================= spec parsing ================= */

Test(client_spec, single_host_default_port)
{
    kbc_spec_t s;
    char err[256];
    cr_assert_eq(kbc_spec_parse("node1:/vmstore", &s, err, sizeof(err)), 0, "%s", err);
    cr_assert_str_eq(s.volume, "vmstore");
    cr_assert_eq(s.nservers, 1);
    cr_assert_str_eq(s.servers[0].host, "node1");
    cr_assert_eq(s.servers[0].port, 24800);
    kbc_spec_clear(&s);
}

Test(client_spec, several_hosts_ports_and_ipv6)
{
    kbc_spec_t s;
    char err[256], list[256];
    cr_assert_eq(kbc_spec_parse("n1:24811,n2,[::1]:7000,10.0.0.3:/v-1_x.y", &s, err, sizeof(err)), 0,
                 "%s", err);
    cr_assert_str_eq(s.volume, "v-1_x.y");
    cr_assert_eq(s.nservers, 4);
    cr_assert_str_eq(s.servers[0].host, "n1");
    cr_assert_eq(s.servers[0].port, 24811);
    cr_assert_str_eq(s.servers[1].host, "n2");
    cr_assert_eq(s.servers[1].port, 24800);
    cr_assert_str_eq(s.servers[2].host, "::1");
    cr_assert_eq(s.servers[2].port, 7000);
    cr_assert_str_eq(s.servers[3].host, "10.0.0.3");
    cr_assert_str_eq(kbc_spec_servers_str(&s, list, sizeof(list)),
                     "n1:24811,n2:24800,[::1]:7000,10.0.0.3:24800");
    kbc_spec_clear(&s);
}

Test(client_spec, refuses_bad_specs_with_a_reason)
{
    const char *bad[] = { "node1", "node1:vol", ":/vol", "node1:/", "node1:/a/b", "h:99999:/v",
                          "node1:/vo l", ",:/v", NULL };
    for (int i = 0; bad[i]; i++) {
        kbc_spec_t s;
        char err[256] = "";
        cr_assert_eq(kbc_spec_parse(bad[i], &s, err, sizeof(err)), -EINVAL, "accepted '%s'", bad[i]);
        cr_assert_neq(err[0], 0, "no reason for '%s'", bad[i]);
        cr_assert_null(strchr(err, '\n'), "the reason is one line");
        cr_assert_eq(s.nservers, 0);
        cr_assert_null(s.volume);
    }
}

/* ================= a mock brick translator ================= */

/*
 * "test/mockbrick": one in-memory file. LOOKUP "missing" -> ENOENT, other
 * names -> a regular file with a gfid derived from the name; WRITE stores
 * the payload at offset 0 (size = len); READ returns it. Every other op
 * answers status 0. Replies are deferred through the event base when
 * option defer is on, so the callback runs after the wind returned.
 * Option up: now | never.
 */
struct mock_priv {
    char data[65536];
    size_t len;
    bool defer;
    bool hold_release;
};

static atomic_int mock_calls;
static atomic_int mock_opens;    /* OPEN calls */
static atomic_int mock_finis;    /* mock bricks finalised */
static atomic_int mock_releases; /* RELEASE calls */
static kb_call_t *held_release;  /* option hold-release: the RELEASE not answered yet */

struct deferred { kb_call_t *call; kb_reply_t r; };

static void deferred_run(evutil_socket_t fd, short what, void *arg)
{
    struct deferred *d = arg;
    kb_unwind(d->call, &d->r);
    kb_buf_unref(d->r.data);
    free(d);
}

/* Unwind R now or from the event base; takes over R.data's reference. */
static void mock_reply(kb_call_t *call, kb_reply_t r)
{
    struct mock_priv *p = call->xl->priv;
    if (p->defer) {
        struct deferred *d = malloc(sizeof(*d));
        d->call = call;
        d->r = r;
        struct timeval tv = { 0, 0 };
        event_base_once(call->xl->graph->base, -1, EV_TIMEOUT, deferred_run, d, &tv);
        return;
    }
    kb_unwind(call, &r);
    kb_buf_unref(r.data);
}

static void mock_attr(kb_iatt_t *ia, const char *name, size_t size)
{
    memset(ia, 0, sizeof(*ia));
    ia->gfid.b[0] = 0x77;
    for (size_t i = 0; name && name[i]; i++)
        ia->gfid.b[1 + i % 15] ^= (uint8_t)name[i];
    ia->mode = S_IFREG | 0644;
    ia->nlink = 1;
    ia->size = size;
}

static void mock_fop(kb_call_t *call)
{
    struct mock_priv *p = call->xl->priv;
    const kb_args_t *a = call->args;
    kb_reply_t r = { 0 };
    atomic_fetch_add(&mock_calls, 1);
    switch (call->op) {
    case KB_FOP_LOOKUP:
        if (a->name && strcmp(a->name, "missing") == 0)
            r.status = -ENOENT;
        else
            mock_attr(&r.attr, a->name, p->len);
        break;
    case KB_FOP_STAT:
        mock_attr(&r.attr, "stat", p->len);
        break;
    case KB_FOP_RELEASE:
        atomic_fetch_add(&mock_releases, 1);
        if (p->hold_release) {
            held_release = call;
            return;
        }
        break;
    case KB_FOP_OPEN:
        atomic_fetch_add(&mock_opens, 1);
        r.fd = 77;
        break;
    case KB_FOP_WRITE:
        p->len = KB_MIN(a->data->len, sizeof(p->data));
        memcpy(p->data, a->data->data, p->len);
        r.status = (int32_t)p->len;
        break;
    case KB_FOP_READ: {
        size_t n = a->off >= p->len ? 0 : KB_MIN(a->size, p->len - a->off);
        r.data = kb_buf_copy(p->data + a->off, n);
        r.status = (int32_t)n;
        break;
    }
    case KB_FOP_STATFS:
        r.statfs = (kb_statfs_t){ .bsize = 4096, .blocks = 1000, .bfree = 600, .bavail = 500 };
        break;
    default:
        r.status = a->fd == 99 ? -EBADF : 0;
        break;
    }
    mock_reply(call, r);
}

static const kb_option_def_t mock_opts[] = {
    { "up", NULL, KB_OPT_ENUM, "now", 0, 0, "now|never", "when to send CHILD_UP" },
    { "defer", NULL, KB_OPT_BOOL, "off", 0, 0, NULL, "reply from the event base" },
    { "hold-release", NULL, KB_OPT_BOOL, "off", 0, 0, NULL, "keep RELEASE calls unanswered" },
    { NULL },
};

static int mock_init(kb_xlator_t *xl)
{
    struct mock_priv *p = kb_zalloc(sizeof(*p));
    if (!p)
        return -ENOMEM;
    p->defer = kb_opt_bool(xl->opts, mock_opts, "defer");
    p->hold_release = kb_opt_bool(xl->opts, mock_opts, "hold-release");
    xl->priv = p;
    return 0;
}

static void mock_fini(kb_xlator_t *xl)
{
    if (xl->priv)
        atomic_fetch_add(&mock_finis, 1);
    free(xl->priv);              /* may run twice after a failed init */
    xl->priv = NULL;
}

static void mock_notify(kb_xlator_t *xl, int event, kb_xlator_t *child)
{
    if (event == KB_EV_PARENT_UP && strcmp(kb_opt_str(xl->opts, mock_opts, "up"), "now") == 0)
        kb_notify_parents(xl, KB_EV_CHILD_UP);
}

static const kb_xlator_type_t mock_type = {
    .name = "test/mockbrick",
    .ops = {
#define FOP(NAME, name, A, R, C) [KB_FOP_##NAME] = mock_fop,
#include "xlators/fops.def"
#undef FOP
    },
    .init = mock_init,
    .fini = mock_fini,
    .notify = mock_notify,
    .options = mock_opts,
};

static const char *mock_volfile(const char *up, bool defer)
{
    static char buf[512];
    snprintf(buf, sizeof(buf),
             "volume b0\n  type test/mockbrick\n  option up %s\n  option defer %s\nend-volume\n", up,
             defer ? "on" : "off");
    return buf;
}

static void register_mock(void)
{
    cr_assert_eq(kb_xlator_type_register(&mock_type), 0);
}

/* ================= kbc_new_from_volfile, up wait, sync API ================= */

Test(client_graph, up_at_once_and_sync_calls, .init = register_mock)
{
    char err[256] = "";
    kbc_t *c = kbc_new_from_volfile(mock_volfile("now", true), NULL, err, sizeof(err));
    cr_assert_not_null(c, "%s", err);
    cr_assert(kbc_is_up(c));

    kb_iatt_t ia;
    cr_assert_eq(kbc_lookup(c, &kb_gfid_root, "missing", &ia), -ENOENT);
    cr_assert_eq(kbc_lookup(c, &kb_gfid_root, "file", &ia), 0);
    cr_assert(S_ISREG(ia.mode));
    cr_assert_eq(ia.gfid.b[0], 0x77);
    cr_assert_eq(kbc_lookup(c, &kb_gfid_root, "a/b", &ia), -EINVAL, "names with / are refused");
    char longname[300];
    memset(longname, 'n', 256);
    longname[256] = 0;
    cr_assert_eq(kbc_lookup(c, &kb_gfid_root, longname, &ia), -ENAMETOOLONG);
    longname[255] = 0;
    cr_assert_eq(kbc_lookup(c, &kb_gfid_root, longname, &ia), 0, "255 bytes is a valid name");

    kbc_fd_t *fd;
    cr_assert_eq(kbc_open(c, &ia.gfid, O_RDWR, &fd), 0);
    const char msg[] = "hello, twin";
    cr_assert_eq(kbc_pwrite(fd, msg, sizeof(msg), 0), (ssize_t)sizeof(msg));
    char back[64] = "";
    cr_assert_eq(kbc_pread(fd, back, sizeof(back), 0), (ssize_t)sizeof(msg));
    cr_assert_str_eq(back, msg);
    struct iovec iov[2] = { { back, 5 }, { back + 32, 20 } };
    memset(back, 0, sizeof(back));
    cr_assert_eq(kbc_preadv(fd, iov, 2, 0), (ssize_t)sizeof(msg));
    cr_assert_eq(memcmp(back, "hello", 5), 0);
    cr_assert_str_eq(back + 32, ", twin");
    struct iovec wv[2] = { { (void *)"ab", 2 }, { (void *)"cde", 4 } };
    cr_assert_eq(kbc_pwritev(fd, wv, 2, 0), 6);
    cr_assert_eq(kbc_pread(fd, back, sizeof(back), 0), 6);
    cr_assert_str_eq(back, "abcde");
    cr_assert_eq(kbc_close(fd), 0);

    kb_statfs_t sf;
    cr_assert_eq(kbc_statfs(c, &sf), 0);
    cr_assert_eq(sf.blocks, 1000);
    cr_assert_eq(sf.bavail, 500);
    kbc_free(c);
}

Test(client_graph, never_up_fails_bounded_with_one_line, .init = register_mock)
{
    char err[256] = "";
    kbc_opts_t o = { .up_timeout_ms = 300 };
    uint64_t t0 = kb_now_ms();
    kbc_t *c = kbc_new_from_volfile(mock_volfile("never", false), &o, err, sizeof(err));
    uint64_t dt = kb_now_ms() - t0;
    cr_assert_null(c);
    cr_assert(strstr(err, "no brick came up within 0.3 s"), "got '%s'", err);
    cr_assert(dt >= 250 && dt < 3000, "waited %llu ms", (unsigned long long)dt);

    o.no_wait_up = true;
    c = kbc_new_from_volfile(mock_volfile("never", false), &o, err, sizeof(err));
    cr_assert_not_null(c, "%s", err);
    cr_assert_not(kbc_is_up(c));
    kbc_free(c);
}

Test(client_graph, bad_volfile_is_one_line, .init = register_mock)
{
    char err[256] = "";
    cr_assert_null(kbc_new_from_volfile("volume x\n type no/such\nend-volume\n", NULL, err, sizeof(err)));
    cr_assert(strstr(err, "bad volfile") && strstr(err, "no/such"), "got '%s'", err);
    cr_assert_null(kbc_new_from_volfile("volume x\n type test/mockbrick\n option bogus 1\nend-volume\n",
                                        NULL, err, sizeof(err)));
    cr_assert(strstr(err, "cannot start the client graph"), "got '%s'", err);
}

/* ================= kbc_submit from many threads ================= */

struct sub_state {
    kbc_t *c;
    uint64_t fd;                 /* a handle from OPEN */
    atomic_int done;
    atomic_int wrong_thread;
    atomic_int bad_status;
};

struct sub_one {
    struct sub_state *st;
    kb_args_t a;
    int expect;
};

static void sub_cbk(void *cookie, const kb_reply_t *r)
{
    struct sub_one *o = cookie;
    if (!kb_loop_in_thread(kbc_loop(o->st->c)))
        atomic_fetch_add(&o->st->wrong_thread, 1);
    if (r->status != o->expect)
        atomic_fetch_add(&o->st->bad_status, 1);
    atomic_fetch_add(&o->st->done, 1);
    free(o);
}

#define SUB_THREADS 4
#define SUB_PER_THREAD 500

static void *sub_thread(void *arg)
{
    struct sub_state *st = arg;
    kb_cred_t cred;
    kbc_cred_self(&cred);
    for (int i = 0; i < SUB_PER_THREAD; i++) {
        struct sub_one *o = calloc(1, sizeof(*o));
        o->st = st;
        o->a.fd = (i % 3 == 0) ? 99 : st->fd;     /* 99: no such handle, EBADF unwound */
        o->expect = (i % 3 == 0) ? -EBADF : 0;
        kbc_submit(st->c, KB_FOP_FSYNC, &o->a, &cred, sub_cbk, o);
    }
    return NULL;
}

Test(client_async, submit_from_threads_completes_each_once_on_loop, .init = register_mock)
{
    char err[256] = "";
    kbc_t *c = kbc_new_from_volfile(mock_volfile("now", true), NULL, err, sizeof(err));
    cr_assert_not_null(c, "%s", err);
    struct sub_state st = { .c = c };
    kb_reply_t r = { 0 };
    kb_args_t oa = { .flags = O_RDWR };
    cr_assert_eq(kbc_call(c, KB_FOP_OPEN, &oa, &r), 0);
    cr_assert_neq(r.fd, 77, "users see a handle, not the graph's fd");
    st.fd = r.fd;
    kb_reply_clear(&r);
    atomic_store(&mock_calls, 0);
    pthread_t th[SUB_THREADS];
    for (int i = 0; i < SUB_THREADS; i++)
        pthread_create(&th[i], NULL, sub_thread, &st);
    for (int i = 0; i < SUB_THREADS; i++)
        pthread_join(th[i], NULL);
    kbc_free(c);    /* waits for every call in flight */
    cr_assert_eq(atomic_load(&st.done), SUB_THREADS * SUB_PER_THREAD);
    /* The bogus handle never reaches the graph; every good call once. */
    int bad = SUB_THREADS * ((SUB_PER_THREAD + 2) / 3);
    cr_assert_eq(atomic_load(&mock_calls), SUB_THREADS * SUB_PER_THREAD - bad, "each call wound once");
    cr_assert_eq(atomic_load(&st.wrong_thread), 0, "callbacks run on the loop thread");
    cr_assert_eq(atomic_load(&st.bad_status), 0);
}

/* ================= a fake GETSPEC server ================= */

static atomic_int fake_variant;  /* volume "switch": 0 and 1 are two good volfiles, 2 garbage */

struct fake_srv {
    kb_loop_t *loop;
    rpc_listener_t *l;
    uint16_t port;
    atomic_int calls;
};

static void fake_req(void *arg, rpc_conn_t *c, rpc_msg_t *m)
{
    struct fake_srv *f = arg;
    atomic_fetch_add(&f->calls, 1);
    kb_dec_t d;
    char *vol = NULL;
    kb_dec_init(&d, m->payload, m->hdr.plen);
    kb_dec_str(&d, &vol, 64);
    int st = 0;
    const char *text = "";
    if (m->hdr.proc != KB_PROC_GETSPEC || !vol)
        st = -EPROTONOSUPPORT, text = "unknown procedure";
    else if (strcmp(vol, "good") == 0)
        text = mock_volfile("now", false);
    else if (strcmp(vol, "switch") == 0)
        text = atomic_load(&fake_variant) == 0 ? "volume b0\n  type test/mockbrick\nend-volume\n"
             : atomic_load(&fake_variant) == 1 ? "volume b1\n  type test/mockbrick\n  option defer on\nend-volume\n"
             : atomic_load(&fake_variant) == 3 ? "volume b3\n  type test/mockbrick\n  option hold-release on\nend-volume\n"
             : "volume b2\n  type no/such-type\nend-volume\n";
    else if (strcmp(vol, "stopped") == 0)
        st = -EAGAIN, text = "volume is not started";
    else if (strcmp(vol, "denied") == 0)
        st = -EACCES, text = "access to this volume is not allowed from this address";
    else
        st = -ENOENT, text = "no such volume";
    kb_enc_t e;
    kb_enc_init(&e);
    kb_enc_str(&e, text);
    rpc_reply(c, m->hdr.xid, m->hdr.proc, st, e.p, (uint32_t)e.len, NULL);
    kb_enc_free(&e);
    free(vol);
    rpc_msg_free(m);
    free(m);
}

static int fake_accept(void *arg, rpc_conn_t *c)
{
    rpc_conn_set_handlers(c, fake_req, NULL, arg);
    return 0;
}

static struct fake_srv *fake_start(void)
{
    struct fake_srv *f = calloc(1, sizeof(*f));
    char err[256];
    f->loop = kb_loop_new();
    cr_assert_not_null(f->loop);
    f->l = rpc_listen(kb_loop_base(f->loop), "127.0.0.1", 0, NULL, fake_accept, f, err, sizeof(err));
    cr_assert_not_null(f->l, "%s", err);
    f->port = rpc_listener_port(f->l);
    cr_assert_eq(kb_loop_start_thread(f->loop), 0);
    return f;
}

static void fake_stop(struct fake_srv *f)
{
    kb_loop_stop(f->loop);
    rpc_listener_free(f->l);
    kb_loop_free(f->loop);
    free(f);
}

/* A port on which nothing listens (bound, then closed). */
static uint16_t dead_port(void)
{
    struct fake_srv *f = fake_start();
    uint16_t p = f->port;
    fake_stop(f);
    return p;
}

static kbc_t *connect_spec(const char *fmt, unsigned p1, unsigned p2, const char *vol, char *err,
                           size_t errlen)
{
    char spec[256];
    snprintf(spec, sizeof(spec), fmt, p1, p2, vol);
    kbc_opts_t o = { .connect_timeout_ms = 500, .up_timeout_ms = 2000 };
    return kbc_new(spec, &o, err, errlen);
}

Test(client_getspec, good_volume_mounts, .init = register_mock)
{
    struct fake_srv *f = fake_start();
    char err[256] = "";
    kbc_t *c = connect_spec("127.0.0.1:%u:/%.0u%s", f->port, 0, "good", err, sizeof(err));
    cr_assert_not_null(c, "%s", err);
    cr_assert(kbc_is_up(c));
    cr_assert_str_eq(kbc_volume(c), "good");
    kb_iatt_t ia;
    cr_assert_eq(kbc_lookup(c, &kb_gfid_root, "x", &ia), 0);
    kbc_free(c);
    fake_stop(f);
}

static bool wait_for(atomic_int *v, int want, kbc_t *c, unsigned switches)
{
    for (int i = 0; i < 500; i++) {
        if ((v && atomic_load(v) >= want) || (c && kbc_graph_switches(c) >= switches))
            return true;
        usleep(10000);
    }
    return false;
}

/* A changed volfile reaches a mounted client: a new graph, open handles
 * moved to it (reopened by gfid), the old graph finalised; an unchanged or
 * unusable volfile changes nothing. */
Test(client_switch, changed_volfile_moves_open_handles_to_a_new_graph, .init = register_mock)
{
    struct fake_srv *f = fake_start();
    atomic_store(&fake_variant, 0);
    atomic_store(&mock_finis, 0);
    char spec[64], err[256] = "";
    snprintf(spec, sizeof(spec), "127.0.0.1:%u:/switch", f->port);
    kbc_opts_t o = { .connect_timeout_ms = 500, .up_timeout_ms = 2000, .volfile_check_ms = 50 };
    kbc_t *c = kbc_new(spec, &o, err, sizeof(err));
    cr_assert_not_null(c, "%s", err);
    kb_iatt_t ia;
    kbc_fd_t *fd;
    cr_assert_eq(kbc_lookup(c, &kb_gfid_root, "img", &ia), 0);
    cr_assert_eq(kbc_open(c, &ia.gfid, O_RDWR, &fd), 0);
    cr_assert_eq(kbc_pwrite(fd, "old graph", 9, 0), 9);
    usleep(200000);
    cr_assert_eq(kbc_graph_switches(c), 0, "an unchanged volfile must not switch");

    int opens = atomic_load(&mock_opens);
    atomic_store(&fake_variant, 1);
    cr_assert(wait_for(NULL, 0, c, 1), "no switch after the volfile changed");
    /* The handle now names a file of the new graph's brick: its write and
     * read reach that brick (whose content starts empty), not the old one. */
    cr_assert(wait_for(&mock_opens, opens + 1, NULL, 0), "the open handle was not reopened");
    char buf[16] = "";
    cr_assert_eq(kbc_pread(fd, buf, sizeof(buf), 0), 0, "the read went to the old graph's brick");
    cr_assert_eq(kbc_pwrite(fd, "new", 3, 0), 3);
    cr_assert_eq(kbc_pread(fd, buf, sizeof(buf), 0), 3);
    cr_assert_eq(memcmp(buf, "new", 3), 0);
    cr_assert(wait_for(&mock_finis, 1, NULL, 0), "the old graph was not finalised");

    atomic_store(&fake_variant, 2);
    usleep(300000);
    cr_assert_eq(kbc_graph_switches(c), 1, "an unusable volfile must not replace a working graph");
    cr_assert_eq(kbc_pread(fd, buf, sizeof(buf), 0), 3, "the client keeps working on its graph");
    cr_assert_eq(kbc_close(fd), 0);
    kbc_free(c);
    fake_stop(f);
}

static void release_held(void *arg)
{
    kb_call_t *call = held_release;
    held_release = NULL;
    (void)arg;
    kb_unwind_err(call, 0);
}

static void release_cbk(void *cookie, const kb_reply_t *r)
{
    atomic_int *done = cookie;
    (void)r;
    atomic_store(done, 1);
}

/* A close under way when the graph changes: the handle stays on its old
 * graph (no reopen on the new one), its fd is released exactly once, and
 * the old graph goes once the release is done. */
Test(client_switch, a_release_in_flight_is_not_reopened_nor_released_twice, .init = register_mock)
{
    struct fake_srv *f = fake_start();
    atomic_store(&fake_variant, 3);
    atomic_store(&mock_finis, 0);
    atomic_store(&mock_releases, 0);
    char spec[64], err[256] = "";
    snprintf(spec, sizeof(spec), "127.0.0.1:%u:/switch", f->port);
    kbc_opts_t o = { .connect_timeout_ms = 500, .up_timeout_ms = 2000, .volfile_check_ms = 50 };
    kbc_t *c = kbc_new(spec, &o, err, sizeof(err));
    cr_assert_not_null(c, "%s", err);
    kb_reply_t r = { 0 };
    kb_args_t oa = { .flags = O_RDWR };
    cr_assert_eq(kbc_call(c, KB_FOP_OPEN, &oa, &r), 0);
    kb_args_t ra = { .fd = r.fd };
    kb_reply_clear(&r);
    atomic_int done = 0;
    kb_cred_t cred;
    kbc_cred_self(&cred);
    kbc_submit(c, KB_FOP_RELEASE, &ra, &cred, release_cbk, &done);
    cr_assert(wait_for(&mock_releases, 1, NULL, 0));
    int opens = atomic_load(&mock_opens);
    atomic_store(&fake_variant, 0);
    cr_assert(wait_for(NULL, 0, c, 1), "no switch");
    usleep(100000);
    cr_assert_eq(atomic_load(&mock_opens), opens, "a handle being closed was reopened on the new graph");
    kb_loop_run_in(kbc_loop(c), release_held, NULL);
    cr_assert(wait_for(&done, 1, NULL, 0));
    cr_assert(wait_for(&mock_finis, 1, NULL, 0), "the old graph was not finalised after the release");
    cr_assert_eq(atomic_load(&mock_releases), 1, "the fd was released twice");
    kbc_free(c);
    fake_stop(f);
}

Test(client_getspec, server_errors_are_one_clear_line, .init = register_mock)
{
    struct fake_srv *f = fake_start();
    char err[256] = "";
    cr_assert_null(connect_spec("127.0.0.1:%u:/%.0u%s", f->port, 0, "nope", err, sizeof(err)));
    cr_assert_str_eq(err, "volume 'nope' does not exist");
    cr_assert_null(connect_spec("127.0.0.1:%u:/%.0u%s", f->port, 0, "stopped", err, sizeof(err)));
    cr_assert_str_eq(err, "volume 'stopped' is not started");
    cr_assert_null(connect_spec("127.0.0.1:%u:/%.0u%s", f->port, 0, "denied", err, sizeof(err)));
    cr_assert_str_eq(err, "volume 'denied': access to this volume is not allowed from this address");
    fake_stop(f);
}

Test(client_getspec, unreachable_servers_fail_fast, .init = register_mock)
{
    unsigned p1 = dead_port(), p2 = dead_port();
    char err[256] = "", want[256];
    uint64_t t0 = kb_now_ms();
    cr_assert_null(connect_spec("127.0.0.1:%u,127.0.0.1:%u:/%s", p1, p2, "v", err, sizeof(err)));
    cr_assert(kb_now_ms() - t0 < 5000);
    snprintf(want, sizeof(want), "cannot reach any server of 127.0.0.1:%u,127.0.0.1:%u", p1, p2);
    cr_assert_str_eq(err, want);
}

Test(client_getspec, backup_server_is_used, .init = register_mock)
{
    struct fake_srv *f = fake_start();
    unsigned p1 = dead_port();
    char err[256] = "";
    kbc_t *c = connect_spec("127.0.0.1:%u,127.0.0.1:%u:/%s", p1, f->port, "good", err, sizeof(err));
    cr_assert_not_null(c, "%s", err);
    kbc_free(c);
    fake_stop(f);
}

/* A server that accepts TCP but never answers: bounded by the timer. */
Test(client_getspec, silent_server_times_out_then_next, .init = register_mock)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t sl = sizeof(sa);
    cr_assert_eq(bind(s, (struct sockaddr *)&sa, sizeof(sa)), 0);
    cr_assert_eq(listen(s, 4), 0);
    getsockname(s, (struct sockaddr *)&sa, &sl);
    struct fake_srv *f = fake_start();
    char err[256] = "";
    uint64_t t0 = kb_now_ms();
    kbc_t *c = connect_spec("127.0.0.1:%u,127.0.0.1:%u:/%s", ntohs(sa.sin_port), f->port, "good",
                            err, sizeof(err));
    uint64_t dt = kb_now_ms() - t0;
    cr_assert_not_null(c, "%s", err);
    cr_assert(dt < 4000, "took %llu ms", (unsigned long long)dt);
    kbc_free(c);
    fake_stop(f);
    close(s);
}

/* ================= a real storage/posix graph ================= */

#include <ftw.h>

static char posix_dir[64];

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *f)
{
    return remove(p);
}

static kbc_t *posix_client(void)
{
    if (!kb_xlator_type_find("storage/posix"))
        cr_skip_test("storage/posix is not linked in");
    strcpy(posix_dir, "/var/tmp/kbc-posix-XXXXXX");
    cr_assert_not_null(mkdtemp(posix_dir));
    char vf[256], err[256] = "";
    snprintf(vf, sizeof(vf), "volume b0\n  type storage/posix\n  option directory %s\nend-volume\n",
             posix_dir);
    kbc_t *c = kbc_new_from_volfile(vf, NULL, err, sizeof(err));
    cr_assert_not_null(c, "%s", err);
    return c;
}

static void posix_done(kbc_t *c)
{
    kbc_free(c);
    nftw(posix_dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void fill_random(char *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        p[i] = (char)(seed >> 16);
    }
}

/* The brick's own copy of PATH must hold exactly WANT. */
static void assert_brick_file(const char *path, const char *want, size_t n)
{
    char full[256];
    snprintf(full, sizeof(full), "%s%s", posix_dir, path);
    int fd = open(full, O_RDONLY);
    cr_assert_geq(fd, 0, "%s missing on the brick", full);
    char *got = malloc(n + 1);
    ssize_t r = pread(fd, got, n + 1, 0);
    close(fd);
    cr_assert_eq(r, (ssize_t)n, "%s: %zd bytes on the brick, want %zu", full, r, n);
    cr_assert_eq(memcmp(got, want, n), 0, "%s: brick content differs", full);
    free(got);
}

Test(client_posix, create_write_read_rename, .init = register_mock)
{
    kbc_t *c = posix_client();
    cr_assert_eq(kbc_mkdir_path(c, "/d", 0755), 0);
    cr_assert_eq(kbc_mkdir_path(c, "/d", 0755), -EEXIST);

    enum { N = 300 * 1024, BIG = 5 * 1024 * 1024 + 123 };
    char *data = malloc(BIG), *back = malloc(BIG);
    fill_random(data, BIG, 7);

    kbc_fd_t *fd;
    cr_assert_eq(kbc_open_path(c, "/d/f", O_CREAT | O_EXCL | O_RDWR, 0640, &fd), 0);
    cr_assert_eq(kbc_pwrite(fd, data, N, 0), N);
    cr_assert_eq(kbc_pwrite(fd, data + N, 8192, 1 << 20), 8192);   /* leaves a hole */
    kb_iatt_t ia;
    cr_assert_eq(kbc_fstat(fd, &ia), 0);
    cr_assert_eq(ia.size, (1 << 20) + 8192);
    cr_assert_eq(ia.mode & 07777, 0640);
    memset(back, 0x55, BIG);
    cr_assert_eq(kbc_pread(fd, back, (1 << 20) + 8192 + 100, 0), (1 << 20) + 8192, "short at EOF");
    cr_assert_eq(memcmp(back, data, N), 0);
    for (size_t i = N; i < (1 << 20); i++)
        cr_assert_eq(back[i], 0, "hole reads as zeros at %zu", i);
    cr_assert_eq(memcmp(back + (1 << 20), data + N, 8192), 0);
    cr_assert_eq(kbc_fsync(fd, false), 0);
    cr_assert_eq(kbc_close(fd), 0);

    /* Rename: the old name is gone, the content moved with the inode. */
    kb_iatt_t before, after;
    cr_assert_eq(kbc_resolve(c, "/d/f", &before), 0);
    cr_assert_eq(kbc_rename_path(c, "/d/f", "/g"), 0);
    cr_assert_eq(kbc_resolve(c, "/d/f", &ia), -ENOENT);
    cr_assert_eq(kbc_resolve(c, "/d/../g", &after), 0);
    cr_assert(kb_gfid_eq(&before.gfid, &after.gfid), "rename keeps the gfid");
    cr_assert_eq(kbc_open_path(c, "/g", O_RDONLY, 0, &fd), 0);
    cr_assert_eq(kbc_pread(fd, back, N, 0), N);
    cr_assert_eq(memcmp(back, data, N), 0);
    cr_assert_eq(kbc_close(fd), 0);

    /* More than one KB_DATA_MAX: split into pieces, O_TRUNC first. */
    cr_assert_eq(kbc_open_path(c, "/g", O_RDWR | O_TRUNC, 0, &fd), 0);
    cr_assert_eq(kbc_fstat(fd, &ia), 0);
    cr_assert_eq(ia.size, 0, "O_TRUNC truncated");
    cr_assert_eq(kbc_pwrite(fd, data, BIG, 0), BIG);
    memset(back, 0, BIG);
    cr_assert_eq(kbc_pread(fd, back, BIG, 0), BIG);
    cr_assert_eq(memcmp(back, data, BIG), 0);
    cr_assert_eq(kbc_ftruncate(fd, 1000), 0);
    cr_assert_eq(kbc_close(fd), 0);
    assert_brick_file("/g", data, 1000);

    cr_assert_eq(kbc_open_path(c, "/g", O_CREAT | O_EXCL | O_RDWR, 0600, &fd), -EEXIST);
    cr_assert_eq(kbc_open_path(c, "/nope/x", O_RDONLY, 0, &fd), -ENOENT);
    cr_assert_eq(kbc_open_path(c, "/g/x", O_RDONLY, 0, &fd), -ENOTDIR);
    free(data);
    free(back);
    posix_done(c);
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

Test(client_posix, readdir_lists_exactly_the_names, .init = register_mock)
{
    kbc_t *c = posix_client();
    cr_assert_eq(kbc_mkdir_path(c, "/dir", 0755), 0);
    enum { FILES = 300 };  /* several READDIR batches of 64 KiB? at least a few */
    kb_gfid_t gfids[FILES];
    for (int i = 0; i < FILES; i++) {
        char p[64];
        snprintf(p, sizeof(p), "/dir/file-%03d-%s", i, i % 2 ? "odd" : "even-with-a-longer-name");
        kbc_fd_t *fd;
        cr_assert_eq(kbc_open_path(c, p, O_CREAT | O_WRONLY, 0644, &fd), 0, "%s", p);
        gfids[i] = *kbc_fd_gfid(fd);
        cr_assert_eq(kbc_pwrite(fd, p, strlen(p), 0), (ssize_t)strlen(p));
        cr_assert_eq(kbc_close(fd), 0);
    }
    cr_assert_eq(kbc_mkdir_path(c, "/dir/sub", 0700), 0);

    for (int plus = 0; plus <= 1; plus++) {
        kbc_fd_t *dir;
        cr_assert_eq(kbc_opendir_path(c, "/dir", &dir), 0);
        char *names[FILES + 8];
        int n = 0;
        for (;;) {
            kb_dirent_t *ents;
            uint32_t ne;
            cr_assert_eq(kbc_readdir(dir, plus, &ents, &ne), 0);
            if (!ne)
                break;
            for (uint32_t i = 0; i < ne; i++) {
                if (strcmp(ents[i].name, ".") == 0 || strcmp(ents[i].name, "..") == 0)
                    continue;
                cr_assert_lt(n, FILES + 1, "more entries than created");
                if (plus && strncmp(ents[i].name, "file-", 5) == 0) {
                    int idx = atoi(ents[i].name + 5);
                    cr_assert(ents[i].has_attr, "readdirplus carries attributes");
                    cr_assert(kb_gfid_eq(&ents[i].attr.gfid, &gfids[idx]), "%s: gfid", ents[i].name);
                    cr_assert(S_ISREG(ents[i].attr.mode));
                    cr_assert_eq(ents[i].attr.size, strlen(ents[i].name) + 5);
                }
                names[n++] = strdup(ents[i].name);
            }
            kb_dirents_free(ents, ne);
        }
        cr_assert_eq(kbc_close(dir), 0);
        cr_assert_eq(n, FILES + 1, "listed %d entries", n);
        qsort(names, (size_t)n, sizeof(char *), name_cmp);
        for (int i = 0; i < FILES; i++) {
            char want[64];
            snprintf(want, sizeof(want), "file-%03d-%s", i, i % 2 ? "odd" : "even-with-a-longer-name");
            cr_assert_str_eq(names[i], want);
        }
        cr_assert_str_eq(names[FILES], "sub");
        for (int i = 0; i < n; i++)
            free(names[i]);
    }

    cr_assert_eq(kbc_rmdir_path(c, "/dir"), -ENOTEMPTY);
    for (int i = 0; i < FILES; i++) {
        char p[64];
        snprintf(p, sizeof(p), "/dir/file-%03d-%s", i, i % 2 ? "odd" : "even-with-a-longer-name");
        cr_assert_eq(kbc_unlink_path(c, p), 0);
    }
    cr_assert_eq(kbc_rmdir_path(c, "/dir/sub"), 0);
    cr_assert_eq(kbc_rmdir_path(c, "/dir"), 0);
    kb_iatt_t ia;
    cr_assert_eq(kbc_resolve(c, "/dir", &ia), -ENOENT);
    kb_statfs_t sf;
    cr_assert_eq(kbc_statfs(c, &sf), 0);
    cr_assert_gt(sf.blocks, 0);
    posix_done(c);
}

/* ================= locks through handles (hlocks.c) ================= */

/* storage/posix under features/locks, as on a brick. */
static kbc_t *locks_client(void)
{
    if (!kb_xlator_type_find("storage/posix") || !kb_xlator_type_find("features/locks"))
        cr_skip_test("storage/posix or features/locks is not linked in");
    strcpy(posix_dir, "/var/tmp/kbc-locks-XXXXXX");
    cr_assert_not_null(mkdtemp(posix_dir));
    char vf[512], err[256] = "";
    snprintf(vf, sizeof(vf),
             "volume b0\n  type storage/posix\n  option directory %s\nend-volume\n\n"
             "volume l0\n  type features/locks\n  subvolumes b0\nend-volume\n", posix_dir);
    kbc_t *c = kbc_new_from_volfile(vf, NULL, err, sizeof(err));
    cr_assert_not_null(c, "%s", err);
    return c;
}

static int lk_call(kbc_fd_t *fd, uint32_t cmd, uint32_t type, uint64_t owner, uint64_t start, kb_lock_t *out)
{
    kbc_t *c = kbc_fd_client(fd);
    kb_args_t a = { .gfid = *kbc_fd_gfid(fd), .fd = kbc_fd_handle(fd), .flags = cmd,
                    .lock = { .type = type, .start = start, .len = 10, .owner = owner, .pid = 77 } };
    kb_reply_t r;
    int rc = kbc_call(c, KB_FOP_LK, &a, &r);
    if (out)
        *out = r.lock;
    kb_reply_clear(&r);
    return rc;
}

static int flush_call(kbc_fd_t *fd, uint64_t owner)
{
    kb_args_t a = { .gfid = *kbc_fd_gfid(fd), .fd = kbc_fd_handle(fd),
                    .lock = { .type = KB_LK_UNLCK, .owner = owner } };
    kb_reply_t r;
    int rc = kbc_call(kbc_fd_client(fd), KB_FOP_FLUSH, &a, &r);
    kb_reply_clear(&r);
    return rc;
}

/* Who holds [START, START+10) as another owner sees it: KB_LK_UNLCK = nobody. */
static uint32_t held(kbc_fd_t *fd, uint64_t start)
{
    kb_lock_t l;
    cr_assert_eq(lk_call(fd, KB_LK_GETLK, KB_LK_WRLCK, 0x2222, start, &l), 0);
    return l.type;
}

Test(client_locks, release_drops_the_descriptions_locks_not_a_process_s)
{
    enum { OFD = 0xA0A0, PROC = 0xB0B0, OTHER_PROC = 0xC0C0 };
    kbc_t *c = locks_client();
    kbc_fd_t *d1, *d2;
    cr_assert_eq(kbc_open_path(c, "/img", O_CREAT | O_RDWR, 0644, &d1), 0);
    cr_assert_eq(kbc_open_path(c, "/img", O_RDWR, 0, &d2), 0);

    /* A process locks through d1, closes one of its fds of d1 (FLUSH: its
     * locks go, POSIX rule), then locks again through d2. */
    cr_assert_eq(lk_call(d1, KB_LK_SETLK, KB_LK_WRLCK, PROC, 100, NULL), 0);
    cr_assert_eq(flush_call(d1, PROC), 0);
    cr_assert_eq(held(d2, 100), KB_LK_UNLCK, "FLUSH dropped the process's lock");
    cr_assert_eq(lk_call(d2, KB_LK_SETLK, KB_LK_WRLCK, PROC, 200, NULL), 0);
    /* The description's own (OFD) locks, two ranges; another process's
     * lock through d1 that its own close will drop. */
    cr_assert_eq(lk_call(d1, KB_LK_SETLK, KB_LK_WRLCK, OFD, 0, NULL), 0);
    cr_assert_eq(lk_call(d1, KB_LK_SETLK, KB_LK_RDLCK, OFD, 300, NULL), 0);
    cr_assert_eq(lk_call(d1, KB_LK_SETLK, KB_LK_WRLCK, OTHER_PROC, 400, NULL), 0);
    cr_assert_eq(flush_call(d1, OTHER_PROC), 0);
    cr_assert_eq(held(d2, 0), KB_LK_WRLCK, "the OFD lock is held while d1 is open");
    cr_assert_eq(held(d2, 300), KB_LK_RDLCK);
    cr_assert_eq(held(d2, 400), KB_LK_UNLCK);

    /* d1's last close: its own locks are gone once the release returns;
     * the process's lock through d2 stays. */
    cr_assert_eq(kbc_close(d1), 0);
    cr_assert_eq(held(d2, 0), KB_LK_UNLCK, "the OFD lock outlived its open file description");
    cr_assert_eq(held(d2, 300), KB_LK_UNLCK, "the OFD read lock outlived its open file description");
    cr_assert_eq(held(d2, 200), KB_LK_WRLCK, "a process's lock through another description was dropped");

    /* An unlocked OFD owner costs nothing at close; flock is not ours. */
    cr_assert_eq(kbc_open_path(c, "/img", O_RDWR, 0, &d1), 0);
    cr_assert_eq(lk_call(d1, KB_LK_SETLK, KB_LK_WRLCK, OFD, 0, NULL), 0);
    cr_assert_eq(lk_call(d1, KB_LK_SETLK, KB_LK_UNLCK, OFD, 0, NULL), 0);
    cr_assert_eq(kbc_close(d1), 0);
    cr_assert_eq(held(d2, 0), KB_LK_UNLCK);
    cr_assert_eq(held(d2, 200), KB_LK_WRLCK);
    cr_assert_eq(kbc_close(d2), 0);
    posix_done(c);
}

Test(client_posix, an_open_unlinked_file_is_stat_through_its_handle, .init = register_mock)
{
    kbc_t *c = posix_client();
    kbc_fd_t *fd;
    cr_assert_eq(kbc_open_path(c, "/gone", O_CREAT | O_RDWR, 0644, &fd), 0);
    cr_assert_eq(kbc_pwrite(fd, "abcdef", 6, 0), 6);
    kb_gfid_t g = *kbc_fd_gfid(fd);
    cr_assert_eq(kbc_unlink(c, &kb_gfid_root, "gone"), 0);
    kb_iatt_t ia;
    cr_assert_eq(kbc_stat(c, &g, &ia), 0, "fstat of an open-unlinked file (by gfid, as the kernel asks)");
    cr_assert_eq(ia.nlink, 0);
    cr_assert_eq(ia.size, 6);
    cr_assert_eq(kbc_close(fd), 0);
    cr_assert_neq(kbc_stat(c, &g, &ia), 0, "once closed it is gone");
    posix_done(c);
}
