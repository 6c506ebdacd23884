/*
 * handover_test.c — the serving process's side of a handover
 * (fuse/handover.c), the parts that need no mount: taking the shared state
 * from the supervisor (messages it does not know skipped, their fds closed;
 * a missing memfd, a gone supervisor, a state of another format refused, the
 * last said to the supervisor in FAILED), FAILED itself, the opener of a
 * handle noted in its record, a handle whose opening request comes again
 * after a takeover released, an INIT that comes again answered with the
 * recorded reply, the INIT recorded in the state before its reply goes out,
 * the synthetic INIT's reply swallowed, and no request read once stopping.
 *
 * What needs a real mount or libfuse's session is not here: kbf_ho_go
 * (fuse_session_custom_io on /dev/fuse, INIT fed to
 * fuse_session_process_buf, FUSE_NOTIFY_RESEND), the stop's drain and
 * restore_handles' reopen through a client (client/takeover.h has its own
 * tests; tests/integration/ runs real takeovers).
 *
 * kbf_release_fd and kbf_req_submit (fuse/ops.c) are mocked. fuse/ is a
 * binary, not part of libkembar.a: the modules are compiled in.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <sys/mman.h>

#include "fuse/ctl.c"
#include "fuse/handover.c"
#include "fuse/inode.c"
#include "fuse/journal.c"
#include "fuse/rawio.c"
#include "fuse/state.c"

static const kbf_st_geom_t geom = { .node_cap = 64, .handle_cap = 8, .journal_size = 4096 };
static const uint8_t inst[16] = { 9 };

/* ---- the mocked bridge ---- */

static struct {
    unsigned n;
    kb_gfid_t gfid;
    uint64_t fd;
    bool dir;
} released;

void kbf_release_fd(kbf_t *fs, const kb_gfid_t *gfid, uint64_t fd, bool dir)
{
    (void)fs;
    released.n++;
    released.gfid = *gfid;
    released.fd = fd;
    released.dir = dir;
}

void kbf_req_submit(kbf_req_t *r, kb_op_t op, kbf_done_fn done)
{
    (void)r;
    (void)op;
    (void)done;
    cr_assert_fail("no request is wound here");
}

/* ---- helpers ---- */

static void pair(int sv[2])
{
    cr_assert_eq(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
}

static unsigned nfds(void)
{
    DIR *d = opendir("/proc/self/fd");
    cr_assert_not_null(d);
    unsigned n = 0;
    for (struct dirent *e; (e = readdir(d));)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

static void new_fs(kbf_t *fs)
{
    memset(fs, 0, sizeof(*fs));
    fs->ctl = -1;
    pthread_mutex_init(&fs->mu, NULL);
}

static kb_gfid_t gfid_n(unsigned n)
{
    kb_gfid_t g = { { 0 } };
    g.b[0] = 0x40;
    g.b[15] = (uint8_t)n;
    return g;
}

/* ================= the state from the supervisor ================= */

Test(fuse_handover, the_state_comes_first_and_other_messages_are_skipped)
{
    int sv[2];
    pair(sv);
    kbf_state_t sup;                 /* the supervisor's */
    cr_assert_eq(kbf_state_create(&sup, &geom, inst, false), 0);
    int other = memfd_create("not-the-state", MFD_CLOEXEC);
    unsigned base = nfds();
    kbf_msg_t m = { .type = 77 };    /* a newer supervisor's, with an fd */
    cr_assert_eq(kbf_msg_send(sv[0], &m, other), 0);
    m.type = KBF_MSG_GO;             /* not now: skipped as well */
    cr_assert_eq(kbf_msg_send(sv[0], &m, -1), 0);
    m = (kbf_msg_t){ .type = KBF_MSG_STATE, .flags = KBF_MF_TAKEOVER };
    cr_assert_eq(kbf_msg_send(sv[0], &m, sup.fd), 0);

    kbf_t fs;
    new_fs(&fs);
    char why[256] = "";
    cr_assert_eq(kbf_ho_start(&fs, sv[1], why, sizeof(why)), 0, "%s", why);
    cr_assert_eq(fs.ctl, sv[1]);
    cr_assert(fs.takeover);
    cr_assert_eq(nfds(), base + 1, "the skipped message's fd is closed; the state's is kept");
    cr_assert_eq(memcmp(fs.st.hdr->instance, inst, 16), 0);
    sup.hdr->generation = 3;         /* one memory */
    cr_assert_eq(fs.st.hdr->generation, 3);
    kbf_state_unmap(&fs.st);

    /* A first start: no takeover. */
    m.flags = 0;
    cr_assert_eq(kbf_msg_send(sv[0], &m, sup.fd), 0);
    new_fs(&fs);
    cr_assert_eq(kbf_ho_start(&fs, sv[1], why, sizeof(why)), 0, "%s", why);
    cr_assert_not(fs.takeover);
    kbf_state_unmap(&fs.st);
    kbf_state_unmap(&sup);
    close(other);
    close(sv[0]);
    close(sv[1]);
}

Test(fuse_handover, no_state_is_refused_with_a_reason)
{
    int sv[2];
    pair(sv);
    kbf_t fs;
    char why[256] = "";
    kbf_msg_t m = { .type = KBF_MSG_STATE };
    cr_assert_eq(kbf_msg_send(sv[0], &m, -1), 0);
    new_fs(&fs);
    cr_assert_eq(kbf_ho_start(&fs, sv[1], why, sizeof(why)), -EPROTO);
    cr_assert(strstr(why, "no memfd"), "%s", why);

    send(sv[0], "garbage", 7, 0);
    new_fs(&fs);
    cr_assert_eq(kbf_ho_start(&fs, sv[1], why, sizeof(why)), -EPROTO);
    cr_assert(strstr(why, "no state from the supervisor"), "%s", why);

    close(sv[0]);
    new_fs(&fs);
    cr_assert_eq(kbf_ho_start(&fs, sv[1], why, sizeof(why)), -EPROTO);
    cr_assert(strstr(why, "it is gone"), "%s", why);
    cr_assert_null(fs.st.hdr);
    close(sv[1]);
}

Test(fuse_handover, a_state_of_another_format_is_refused_and_the_supervisor_told)
{
    int sv[2];
    pair(sv);
    kbf_state_t sup;
    cr_assert_eq(kbf_state_create(&sup, &geom, inst, false), 0);
    sup.hdr->version = KBF_ST_VERSION + 1;
    kbf_msg_t m = { .type = KBF_MSG_STATE, .flags = KBF_MF_TAKEOVER };
    cr_assert_eq(kbf_msg_send(sv[0], &m, sup.fd), 0);
    kbf_t fs;
    new_fs(&fs);
    unsigned base = nfds();
    char why[256] = "";
    cr_assert_eq(kbf_ho_start(&fs, sv[1], why, sizeof(why)), -EPROTO);
    cr_assert(strstr(why, "format"), "%s", why);
    cr_assert_eq(nfds(), base, "the memfd is not kept");
    kbf_msg_t got;
    cr_assert_eq(kbf_msg_recv(sv[0], &got, NULL), 1);
    cr_assert_eq(got.type, KBF_MSG_FAILED);
    cr_assert_str_eq(got.text, why, "the supervisor hears why");
    kbf_state_unmap(&sup);
    close(sv[0]);
    close(sv[1]);
}

Test(fuse_handover, failed_says_why_within_a_message)
{
    int sv[2];
    pair(sv);
    kbf_t fs;
    new_fs(&fs);
    kbf_ho_failed(&fs, "nobody to tell");   /* no supervisor: nothing */
    fs.ctl = sv[1];
    char why[1000];
    memset(why, 'w', sizeof(why));
    why[sizeof(why) - 1] = 0;
    kbf_ho_failed(&fs, why);
    kbf_msg_t got;
    cr_assert_eq(kbf_msg_recv(sv[0], &got, NULL), 1);
    cr_assert_eq(got.type, KBF_MSG_FAILED);
    cr_assert_eq(strlen(got.text), sizeof(got.text) - 1, "cut to fit");
    close(sv[0]);
    close(sv[1]);
}

/* ================= handles and their opening requests ================= */

Test(fuse_handover, the_opener_of_a_handle_is_noted_without_the_resend_bit)
{
    kbf_t fs;
    new_fs(&fs);
    cr_assert_eq(kbf_state_create(&fs.st, &geom, inst, true), 0);
    kb_gfid_t g = gfid_n(1);
    kb_lklog_t nolocks = { 0 };
    kbc_handle_info_t h = { .value = (1ull << 32) | 3, .gfid = g, .flags = O_RDWR, .locks = &nolocks };
    cr_assert(kbf_state_handle_put(&fs.st, &h));
    kbf_ho_opened(&fs, 0, h.value);
    cr_assert_eq(kbf_state_handle_get(&fs.st, 2)->opener, 0, "an internal open: no request");
    kbf_ho_opened(&fs, 0x1234 | KBF_UNIQUE_RESEND, h.value);
    cr_assert_eq(kbf_state_handle_get(&fs.st, 2)->opener, 0x1234, "the kernel's unique, as it sends it again");
    kbf_state_unmap(&fs.st);
    kbf_ho_opened(&fs, 0x99, h.value);  /* no state: nothing */
}

Test(fuse_handover, a_handle_whose_open_comes_again_is_released)
{
    kbf_t fs;
    new_fs(&fs);
    fs.stale = calloc(3, sizeof(*fs.stale));
    fs.stale[0] = (struct kbf_stale){ .unique = 10, .value = 0x101, .gfid = gfid_n(1) };
    fs.stale[1] = (struct kbf_stale){ .unique = 11, .value = 0x102, .gfid = gfid_n(2), .dir = true };
    fs.stale[2] = (struct kbf_stale){ .unique = 12, .value = 0x103, .gfid = gfid_n(3) };
    fs.nstale = 3;
    memset(&released, 0, sizeof(released));
    kbf_ho_resent_open(&fs, 11);     /* not a resend: a new request of that unique */
    cr_assert_eq(released.n, 0);
    kbf_ho_resent_open(&fs, 99 | KBF_UNIQUE_RESEND);
    cr_assert_eq(released.n, 0, "no handle of that request");
    kbf_ho_resent_open(&fs, 11 | KBF_UNIQUE_RESEND);
    cr_assert_eq(released.n, 1, "its first try's handle never reached the kernel");
    cr_assert_eq(released.fd, 0x102);
    cr_assert(released.dir);
    kb_gfid_t g2 = gfid_n(2);
    cr_assert(kb_gfid_eq(&released.gfid, &g2));
    cr_assert_eq(fs.nstale, 2);
    kbf_ho_resent_open(&fs, 11 | KBF_UNIQUE_RESEND);
    cr_assert_eq(released.n, 1, "released once");
    kbf_ho_resent_open(&fs, 10 | KBF_UNIQUE_RESEND);
    kbf_ho_resent_open(&fs, 12 | KBF_UNIQUE_RESEND);
    cr_assert_eq(released.n, 3);
    cr_assert_eq(fs.nstale, 0);
    free(fs.stale);
}

/* ================= INIT ================= */

static size_t init_request(uint8_t *buf, uint64_t unique, uint32_t flags)
{
    struct fuse_in_header h = { .len = sizeof(h) + sizeof(struct fuse_init_in), .opcode = FUSE_INIT,
                                .unique = unique };
    struct fuse_init_in in = { .major = 7, .minor = 41, .flags = flags };
    memcpy(buf, &h, sizeof(h));
    memcpy(buf + sizeof(h), &in, sizeof(in));
    return sizeof(h) + sizeof(in);
}

/* The INIT reply libfuse writes: header + fuse_init_out, in two pieces. */
struct init_reply {
    struct fuse_out_header h;
    struct fuse_init_out out;
    struct iovec iov[2];
};

static void init_reply(struct init_reply *r, uint64_t unique, int32_t error, uint32_t flags)
{
    memset(r, 0, sizeof(*r));
    r->h = (struct fuse_out_header){ .len = sizeof(r->h) + sizeof(r->out), .error = error, .unique = unique };
    r->out = (struct fuse_init_out){ .major = 7, .minor = 41, .flags = flags, .max_write = 1 << 20 };
    r->iov[0] = (struct iovec){ &r->h, sizeof(r->h) };
    r->iov[1] = (struct iovec){ &r->out, sizeof(r->out) };
}

static size_t drain(int fd, void *buf, size_t cap)
{
    ssize_t n = read(fd, buf, cap);
    return n < 0 ? 0 : (size_t)n;
}

Test(fuse_handover, the_init_is_recorded_before_its_reply_goes_out)
{
    kbf_t fs;
    new_fs(&fs);
    cr_assert_eq(kbf_state_create(&fs.st, &geom, inst, true), 0);
    fs.conn_chosen = (kbf_st_conn_t){ .want = 0x55, .max_write = 1 << 20, .proto_minor = 41 };
    int p[2];
    cr_assert_eq(pipe2(p, O_NONBLOCK), 0);
    uint8_t req[128];
    size_t n = init_request(req, 2, FUSE_ASYNC_READ);
    kbf_raw_note(&fs.raw, req, n);
    struct init_reply r;
    init_reply(&r, 2, 0, FUSE_ASYNC_READ);
    cr_assert_eq(ho_writev(p[1], r.iov, 2, &fs), (ssize_t)(sizeof(r.h) + sizeof(r.out)));
    kbf_st_hdr_t *h = fs.st.hdr;
    cr_assert_eq(h->init_done, 1);
    cr_assert_eq(h->init_in_len, n);
    cr_assert_eq(memcmp(h->init_in, req, n), 0, "the kernel's INIT as read");
    cr_assert_eq(h->init_out_len, sizeof(r.h) + sizeof(r.out));
    cr_assert_eq(memcmp(h->init_out, &r.h, sizeof(r.h)), 0, "our reply as written");
    cr_assert_eq(memcmp(h->init_out + sizeof(r.h), &r.out, sizeof(r.out)), 0);
    cr_assert_eq(h->conn.want, 0x55, "what kbf_init chose");
    cr_assert(fs.raw.init_done);
    uint8_t out[256];
    cr_assert_eq(drain(p[0], out, sizeof(out)), sizeof(r.h) + sizeof(r.out), "and it went out");
    /* Any other reply just goes out. */
    struct fuse_out_header eh = { .len = sizeof(eh), .error = -ENOENT, .unique = 3 };
    struct iovec e = { &eh, sizeof(eh) };
    cr_assert_eq(ho_writev(p[1], &e, 1, &fs), (ssize_t)sizeof(eh));
    cr_assert_eq(drain(p[0], out, sizeof(out)), sizeof(eh));
    cr_assert_eq(memcmp(h->init_out, &r.h, sizeof(r.h)), 0, "the record stays");
    close(p[0]);
    close(p[1]);
    kbf_state_unmap(&fs.st);
}

Test(fuse_handover, the_synthetic_inits_reply_is_swallowed)
{
    kbf_t fs;
    new_fs(&fs);
    cr_assert_eq(kbf_state_create(&fs.st, &geom, inst, true), 0);
    int p[2];
    cr_assert_eq(pipe2(p, O_NONBLOCK), 0);
    struct init_reply was;
    init_reply(&was, 2, 0, FUSE_ASYNC_READ | FUSE_HANDLE_KILLPRIV_V2);
    memcpy(fs.st.hdr->init_out, &was.h, sizeof(was.h));
    memcpy(fs.st.hdr->init_out + sizeof(was.h), &was.out, sizeof(was.out));
    fs.st.hdr->init_out_len = sizeof(was.h) + sizeof(was.out);
    fs.st.hdr->init_done = 1;
    fs.swallow_unique = KBF_SYNTH_UNIQUE;
    fs.swallowed = 1;
    struct init_reply r;
    init_reply(&r, KBF_SYNTH_UNIQUE, 0, FUSE_ASYNC_READ);   /* differs only in KILLPRIV_V2 */
    cr_assert_eq(ho_writev(p[1], r.iov, 2, &fs), (ssize_t)(sizeof(r.h) + sizeof(r.out)), "as if written");
    cr_assert_eq(fs.swallowed, 0);
    uint8_t out[256];
    cr_assert_eq(drain(p[0], out, sizeof(out)), 0, "the kernel got its INIT reply long ago");
    init_reply(&r, KBF_SYNTH_UNIQUE, -EPROTO, 0);
    ho_writev(p[1], r.iov, 1, &fs);
    cr_assert_eq(fs.swallowed, -EPROTO, "libfuse refused it: the takeover fails");
    cr_assert_eq(drain(p[0], out, sizeof(out)), 0);
    /* A request's reply in between goes out. */
    init_reply(&r, 5, 0, 0);
    ho_writev(p[1], r.iov, 2, &fs);
    cr_assert_eq(drain(p[0], out, sizeof(out)), sizeof(r.h) + sizeof(r.out));
    cr_assert_eq(fs.st.hdr->init_out_len, sizeof(was.h) + sizeof(was.out), "the record is the first INIT's");
    close(p[0]);
    close(p[1]);
    kbf_state_unmap(&fs.st);
}

Test(fuse_handover, an_init_that_comes_again_gets_the_recorded_reply)
{
    kbf_t fs;
    new_fs(&fs);
    cr_assert_eq(kbf_state_create(&fs.st, &geom, inst, true), 0);
    int p[2];
    cr_assert_eq(pipe2(p, O_NONBLOCK), 0);
    uint8_t req[128], out[256];
    size_t n = init_request(req, 0x42 | KBF_UNIQUE_RESEND, FUSE_ASYNC_READ);
    cr_assert_not(answer_init_again(&fs, p[1], req, n), "no INIT answered before");
    struct init_reply was;
    init_reply(&was, 2, 0, FUSE_ASYNC_READ);
    memcpy(fs.st.hdr->init_out, &was.h, sizeof(was.h));
    memcpy(fs.st.hdr->init_out + sizeof(was.h), &was.out, sizeof(was.out));
    fs.st.hdr->init_out_len = sizeof(was.h) + sizeof(was.out);
    fs.st.hdr->init_done = 1;
    cr_assert_not(answer_init_again(&fs, p[1], req, n), "a first start answers its INIT itself");
    fs.takeover = true;
    cr_assert_not(answer_init_again(&fs, p[1], req, 10), "shorter than a header");
    uint8_t other[128];
    memcpy(other, req, n);
    ((struct fuse_in_header *)(void *)other)->opcode = FUSE_GETATTR;
    cr_assert_not(answer_init_again(&fs, p[1], other, n), "not an INIT");
    cr_assert_eq(drain(p[0], out, sizeof(out)), 0);

    cr_assert(answer_init_again(&fs, p[1], req, n));
    size_t got = drain(p[0], out, sizeof(out));
    cr_assert_eq(got, sizeof(was.h) + sizeof(was.out));
    struct fuse_out_header oh;
    memcpy(&oh, out, sizeof(oh));
    cr_assert_eq(oh.unique, 0x42 | KBF_UNIQUE_RESEND, "answers the request that came");
    cr_assert_eq(oh.len, got);
    cr_assert_eq(oh.error, 0);
    cr_assert_eq(memcmp(out + sizeof(oh), &was.out, sizeof(was.out)), 0, "with what the kernel was told");

    fs.st.hdr->init_out_len = 8;     /* a record that cannot be a reply */
    cr_assert_not(answer_init_again(&fs, p[1], req, n));
    fs.st.hdr->init_out_len = KBF_ST_INIT_MAX + 1;
    cr_assert_not(answer_init_again(&fs, p[1], req, n));
    close(p[0]);
    close(p[1]);
    kbf_state_unmap(&fs.st);
}

Test(fuse_handover, nothing_is_read_once_stopping)
{
    kbf_t fs;
    new_fs(&fs);
    int p[2];
    cr_assert_eq(pipe2(p, O_NONBLOCK), 0);
    uint8_t req[128], buf[256];
    size_t n = init_request(req, 7, 0);
    cr_assert_eq(write(p[1], req, n), (ssize_t)n);
    fs.stopping = 1;
    errno = 0;
    cr_assert_eq(ho_read(p[0], buf, sizeof(buf), &fs), -1);
    cr_assert_eq(errno, EAGAIN, "the loop thread just finds nothing");
    cr_assert_eq(fs.raw.count[FUSE_INIT], 0);
    fs.stopping = 0;
    cr_assert_eq(ho_read(p[0], buf, sizeof(buf), &fs), (ssize_t)n, "the request stayed for whoever reads next");
    cr_assert_eq(fs.raw.count[FUSE_INIT], 1, "counted once read");
    cr_assert_eq(kbf_rq_unique, 7);
    cr_assert_eq(ho_read(p[0], buf, sizeof(buf), &fs), -1);
    cr_assert_eq(errno, EAGAIN);
    cr_assert_not(fs.unmounted);
    close(p[0]);
    close(p[1]);
}
