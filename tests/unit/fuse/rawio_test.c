/*
 * rawio_test.c — kembar-fuse's raw /dev/fuse hooks (fuse/rawio.c):
 * FUSE_HANDLE_KILLPRIV_V2 added to the INIT reply only where it belongs,
 * the kill flags of WRITE and SETATTR handed to the dispatching thread,
 * and the per-opcode counters.
 *
 * fuse/ is a binary, not part of libkembar.a, so the module is compiled in.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <signal.h>

#include "fuse/rawio.c"

/* A request: header + ARG (LEN bytes). */
static size_t request(char *buf, uint32_t opcode, uint64_t unique, const void *arg, size_t len)
{
    struct fuse_in_header h = { .len = (uint32_t)(sizeof(h) + len), .opcode = opcode, .unique = unique };
    memcpy(buf, &h, sizeof(h));
    memcpy(buf + sizeof(h), arg, len);
    return sizeof(h) + len;
}

static void note_init(kbf_raw_t *st, uint64_t unique, uint32_t flags)
{
    char buf[256];
    struct fuse_init_in in = { .major = 7, .minor = 45, .flags = flags };
    kbf_raw_note(st, buf, request(buf, FUSE_INIT, unique, &in, sizeof(in)));
}

/* Patch the INIT reply (UNIQUE, ERROR, MINOR); the flags it then carries. */
static uint32_t reply_init(kbf_raw_t *st, uint64_t unique, int32_t error, uint32_t minor, bool *patched)
{
    struct fuse_out_header h = { .len = sizeof(h) + sizeof(struct fuse_init_out), .error = error,
                                 .unique = unique };
    struct fuse_init_out out = { .major = 7, .minor = minor, .flags = FUSE_ASYNC_READ };
    struct iovec iov[2] = { { &h, sizeof(h) }, { &out, sizeof(out) } };
    *patched = kbf_raw_patch(st, iov, 2);
    return out.flags;
}

Test(rawio, init_reply_gets_killpriv_v2)
{
    kbf_raw_t st = { .want_killpriv_v2 = true };
    note_init(&st, 2, FUSE_HANDLE_KILLPRIV_V2 | FUSE_ASYNC_READ);
    bool p;
    uint32_t fl = reply_init(&st, 2, 0, 31, &p);   /* libfuse 3.14 answers 7.31 */
    cr_assert(p);
    cr_assert_eq(fl, FUSE_ASYNC_READ | FUSE_HANDLE_KILLPRIV_V2);
    cr_assert(st.killpriv_v2);
    /* Only the INIT reply, once. */
    fl = reply_init(&st, 2, 0, 31, &p);
    cr_assert_not(p);
    cr_assert_eq(fl, FUSE_ASYNC_READ);
    cr_assert_eq(st.count[FUSE_INIT], 1);
}

Test(rawio, init_reply_left_alone)
{
    bool p;
    /* The kernel did not offer it. */
    kbf_raw_t a = { .want_killpriv_v2 = true };
    note_init(&a, 2, FUSE_ASYNC_READ);
    cr_assert_eq(reply_init(&a, 2, 0, 31, &p), FUSE_ASYNC_READ);
    cr_assert_not(p || a.killpriv_v2);
    /* Not wanted (-o no_killpriv_v2). */
    kbf_raw_t b = { .want_killpriv_v2 = false };
    note_init(&b, 2, FUSE_HANDLE_KILLPRIV_V2);
    cr_assert_eq(reply_init(&b, 2, 0, 31, &p), FUSE_ASYNC_READ);
    cr_assert_not(p);
    /* Another reply (not INIT's unique), then INIT failed. */
    kbf_raw_t c = { .want_killpriv_v2 = true };
    note_init(&c, 8, FUSE_HANDLE_KILLPRIV_V2);
    cr_assert_eq(reply_init(&c, 9, 0, 31, &p), FUSE_ASYNC_READ);
    cr_assert_not(p);
    cr_assert_eq(reply_init(&c, 8, -EPROTO, 31, &p), FUSE_ASYNC_READ);
    cr_assert_not(p || c.killpriv_v2);
    /* A reply before any INIT was read, and an ancient protocol. */
    kbf_raw_t d = { .want_killpriv_v2 = true };
    cr_assert_eq(reply_init(&d, 0, 0, 31, &p), FUSE_ASYNC_READ);
    note_init(&d, 2, FUSE_HANDLE_KILLPRIV_V2);
    cr_assert_eq(reply_init(&d, 2, 0, 8, &p), FUSE_ASYNC_READ);
    cr_assert_not(p);
}

static void note_write(kbf_raw_t *st, uint32_t write_flags)
{
    char buf[256];
    struct fuse_write_in in = { .size = 4096, .write_flags = write_flags };
    kbf_raw_note(st, buf, request(buf, FUSE_WRITE, 5, &in, sizeof(in)));
}

static void note_setattr(kbf_raw_t *st, uint32_t valid)
{
    char buf[256];
    struct fuse_setattr_in in = { .valid = valid };
    kbf_raw_note(st, buf, request(buf, FUSE_SETATTR, 6, &in, sizeof(in)));
}

Test(rawio, kill_flags_reach_the_dispatching_thread)
{
    kbf_raw_t st = { 0 };
    note_write(&st, FUSE_WRITE_KILL_SUIDGID);
    cr_assert(kbf_rq_kill_suidgid);
    note_write(&st, FUSE_WRITE_CACHE);
    cr_assert_not(kbf_rq_kill_suidgid);
    note_setattr(&st, FATTR_SIZE | FATTR_KILL_SUIDGID);
    cr_assert(kbf_rq_kill_suidgid);
    char buf[64];
    uint64_t nodeid = 1;
    kbf_raw_note(&st, buf, request(buf, FUSE_GETATTR, 7, &nodeid, sizeof(nodeid)));
    cr_assert_not(kbf_rq_kill_suidgid, "a request without the flag clears it");
    note_setattr(&st, FATTR_KILL_SUIDGID);
    kbf_raw_note(&st, buf, 10);   /* shorter than a header */
    cr_assert_not(kbf_rq_kill_suidgid);
    /* A WRITE cut short carries no flags. */
    struct fuse_write_in in = { .write_flags = FUSE_WRITE_KILL_SUIDGID };
    note_write(&st, FUSE_WRITE_KILL_SUIDGID);
    kbf_raw_note(&st, buf, request(buf, FUSE_WRITE, 8, &in, 16));
    cr_assert_not(kbf_rq_kill_suidgid);
    cr_assert_eq(st.count[FUSE_WRITE], 4);
    cr_assert_eq(st.count[FUSE_SETATTR], 2);
    cr_assert_eq(st.count[FUSE_GETATTR], 1);
    cr_assert_str_eq(kbf_raw_opname(FUSE_GETXATTR), "GETXATTR");
    cr_assert_null(kbf_raw_opname(4095));
}

/* Each thread sees the flag of its own request (-o threads). */
static void *other_thread(void *arg)
{
    kbf_raw_t *st = arg;
    note_write(st, 0);
    return (void *)(uintptr_t)kbf_rq_kill_suidgid;
}

Test(rawio, flag_is_per_thread)
{
    kbf_raw_t st = { 0 };
    note_write(&st, FUSE_WRITE_KILL_SUIDGID);
    pthread_t t;
    void *res;
    cr_assert_eq(pthread_create(&t, NULL, other_thread, &st), 0);
    pthread_join(t, &res);
    cr_assert_null(res);
    cr_assert(kbf_rq_kill_suidgid, "another thread's request left this one's flag alone");
}

/* Issue 15: what a takeover needs from the raw traffic. */
Test(rawio, init_is_kept_as_read_and_its_reply_recognised)
{
    kbf_raw_t st = { 0 };
    note_init(&st, 8, FUSE_ASYNC_READ);
    cr_assert_eq(st.init_len, sizeof(struct fuse_in_header) + sizeof(struct fuse_init_in));
    struct fuse_in_header h;
    memcpy(&h, st.init_req, sizeof(h));
    cr_assert_eq(h.opcode, FUSE_INIT);
    cr_assert_eq(h.unique, 8);
    struct fuse_out_header oh = { .len = sizeof(oh), .unique = 8 };
    struct iovec iov[1] = { { &oh, sizeof(oh) } };
    cr_assert(kbf_raw_is_init_reply(&st, iov, 1));
    oh.unique = 10;
    cr_assert_not(kbf_raw_is_init_reply(&st, iov, 1), "another request's reply");
    oh.unique = 8;
    st.init_done = true;
    cr_assert_not(kbf_raw_is_init_reply(&st, iov, 1), "once");
    char flat[8];
    struct iovec two[2] = { { "abc", 3 }, { "defgh", 5 } };
    cr_assert_eq(kbf_raw_flatten(two, 2, flat, 6), 6);
    cr_assert_eq(memcmp(flat, "abcdef", 6), 0);
}

Test(rawio, each_request_leaves_its_unique_on_the_thread)
{
    kbf_raw_t st = { 0 };
    char buf[256];
    struct fuse_write_in w = { .size = 0 };
    kbf_raw_note(&st, buf, request(buf, FUSE_WRITE, 1234 | KBF_UNIQUE_RESEND, &w, sizeof(w)));
    cr_assert_eq(kbf_rq_unique, 1234 | KBF_UNIQUE_RESEND, "a resent request says so");
    kbf_raw_note(&st, buf, 4);
    cr_assert_eq(kbf_rq_unique, 0, "a runt has none");
}

Test(rawio, resend_is_one_notify_with_code_7)
{
    int p[2];
    cr_assert_eq(pipe(p), 0);
    cr_assert_eq(kbf_raw_resend(p[1]), 0);
    struct fuse_out_header h;
    cr_assert_eq(read(p[0], &h, sizeof(h)), (ssize_t)sizeof(h));
    cr_assert_eq(h.len, sizeof(h));
    cr_assert_eq(h.error, 7, "FUSE_NOTIFY_RESEND");
    cr_assert_eq(h.unique, 0, "a notification");
    close(p[0]);
    signal(SIGPIPE, SIG_IGN);
    cr_assert_lt(kbf_raw_resend(p[1]), 0, "no reader: an error, not a crash");
    close(p[1]);
}
