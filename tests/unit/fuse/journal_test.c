/*
 * journal_test.c — kembar-fuse's write journal (fuse/journal.c): which
 * writes are journaled (by open flags), an entry kept in the shared state
 * before its write is submitted, kept until a barrier of its gfid that
 * covers its sequence number (other gfids untouched, the ring's tail
 * reclaimed in order), a full ring making the write synchronous (the
 * O_DIRECT bit), the tick's STAT for a file left alone, the STAT per gfid
 * at a stop, and the replay by the next serving process: a second kbf_t on
 * a second mapping of the same memfd, with its own client whose handles
 * were restored, writes every live entry again, same bytes, same offsets,
 * through the same handles, in sequence order, and leaves the ring empty.
 *
 * The bricks are "test/jrec", a translator under a real libkembar client
 * (its own loop thread, as in kembar-fuse) that records every call and
 * answers at once, or holds STATs until the test lets them go.
 * kbf_req_submit (fuse/ops.c, the bridge's wind) is mocked: it records what
 * the journal hands it and acknowledges the write at once, as write-behind
 * would. fuse/ is a binary, not part of libkembar.a: the modules are
 * compiled in.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <semaphore.h>
#include <unistd.h>

#include "fuse/journal.c"
#include "fuse/state.c"

#include "client/takeover.h"

static const uint8_t inst[16] = { 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7 };

static kb_gfid_t gfid_n(unsigned n)
{
    kb_gfid_t g = { { 0 } };
    g.b[0] = 0x1e;
    g.b[15] = (uint8_t)n;
    return g;
}

/* ---------------- "test/jrec": the bricks ---------------- */

typedef struct jrec {
    kb_op_t op;
    kb_gfid_t gfid;
    uint64_t fd, off;
    uint64_t rfd;                /* OPEN: the fd answered */
    uint32_t flags;
    size_t len;
    uint8_t data[4096];
} jrec_t;

static struct {
    pthread_mutex_t mu;
    jrec_t rec[64];
    unsigned n;
    bool hold_stat;              /* keep STATs unanswered until unhold() */
    kb_call_t *held[16];
    unsigned nheld;
    uint64_t next_fd;
    kb_gfid_t fail_write;        /* WRITEs of this gfid fail with EIO */
    int stat_err;                /* STATs fail with it (0: answered) */
} jr = { .mu = PTHREAD_MUTEX_INITIALIZER };

static void jrec_fop(kb_call_t *call)
{
    const kb_args_t *a = call->args;
    kb_reply_t r = { 0 };
    pthread_mutex_lock(&jr.mu);
    if (jr.n < KB_ARRAY_SIZE(jr.rec)) {
        jrec_t *e = &jr.rec[jr.n++];
        *e = (jrec_t){ .op = call->op, .gfid = a->gfid, .fd = a->fd, .off = a->off, .flags = a->flags };
        if (call->op == KB_FOP_WRITE && a->data) {
            e->len = a->data->len;
            memcpy(e->data, a->data->data, KB_MIN(e->len, sizeof(e->data)));
        }
    }
    switch (call->op) {
    case KB_FOP_OPEN:
    case KB_FOP_CREATE:
        r.fd = ++jr.next_fd + 500;
        if (jr.n <= KB_ARRAY_SIZE(jr.rec))
            jr.rec[jr.n - 1].rfd = r.fd;
        break;
    case KB_FOP_WRITE:
        r.status = kb_gfid_eq(&a->gfid, &jr.fail_write) ? -EIO : (int32_t)a->data->len;
        break;
    case KB_FOP_STAT:
        if (jr.hold_stat && jr.nheld < KB_ARRAY_SIZE(jr.held)) {
            jr.held[jr.nheld++] = call;
            pthread_mutex_unlock(&jr.mu);
            return;
        }
        r.status = jr.stat_err;
        r.attr.gfid = a->gfid;
        r.attr.mode = S_IFREG | 0644;
        break;
    default:
        break;
    }
    pthread_mutex_unlock(&jr.mu);
    kb_unwind(call, &r);
}

static void jrec_notify(kb_xlator_t *xl, int event, kb_xlator_t *child)
{
    (void)child;
    if (event == KB_EV_PARENT_UP)
        kb_notify_parents(xl, KB_EV_CHILD_UP);
}

static const kb_xlator_type_t jrec_type = {
    .name = "test/jrec",
    .ops = {
#define FOP(NAME, name, A, R, C) [KB_FOP_##NAME] = jrec_fop,
#include "xlators/fops.def"
#undef FOP
    },
    .notify = jrec_notify,
};

static unsigned jr_count(kb_op_t op)
{
    pthread_mutex_lock(&jr.mu);
    unsigned k = 0;
    for (unsigned i = 0; i < jr.n; i++)
        k += jr.rec[i].op == op;
    pthread_mutex_unlock(&jr.mu);
    return k;
}

/* The I-th recorded call of OP (a copy). */
static jrec_t jr_nth(kb_op_t op, unsigned i)
{
    pthread_mutex_lock(&jr.mu);
    jrec_t out = { .op = KB_FOP_MAX };
    for (unsigned k = 0; k < jr.n; k++)
        if (jr.rec[k].op == op && i-- == 0) {
            out = jr.rec[k];
            break;
        }
    pthread_mutex_unlock(&jr.mu);
    return out;
}

static void jr_forget(void)
{
    pthread_mutex_lock(&jr.mu);
    jr.n = 0;
    pthread_mutex_unlock(&jr.mu);
}

/* Wait (bounded) until N calls of OP were recorded. */
static bool jr_wait(kb_op_t op, unsigned n)
{
    for (int i = 0; i < 2000; i++) {
        if (jr_count(op) >= n)
            return true;
        usleep(1000);
    }
    return false;
}

static void setup(void)
{
    cr_assert_eq(kb_xlator_type_register(&jrec_type), 0);
    pthread_mutex_lock(&jr.mu);
    jr.n = 0;
    jr.nheld = 0;
    jr.hold_stat = true;         /* the tick's STAT stays in flight unless a test lets it go */
    jr.fail_write = kb_gfid_null;
    pthread_mutex_unlock(&jr.mu);
}

/* ---------------- running things on a client's loop thread ---------------- */

struct on_loop {
    void (*fn)(void *);
    void *arg;
    sem_t done;
};

static void on_loop_job(void *arg)
{
    struct on_loop *o = arg;
    o->fn(o->arg);
    sem_post(&o->done);
}

static void run_on(kbc_t *c, void (*fn)(void *), void *arg)
{
    struct on_loop o = { .fn = fn, .arg = arg };
    sem_init(&o.done, 0, 0);
    cr_assert_eq(kb_loop_run_in(kbc_loop(c), on_loop_job, &o), 0);
    while (sem_wait(&o.done) < 0 && errno == EINTR)
        ;
    sem_destroy(&o.done);
}

static void unhold_job(void *arg)
{
    kb_call_t *call = arg;
    kb_reply_t r = { .attr = { .gfid = call->args->gfid, .mode = S_IFREG | 0644 } };
    kb_unwind(call, &r);
}

/* Answer every STAT held so far (each on its own client's loop thread). */
static unsigned unhold(kbc_t *c)
{
    kb_call_t *calls[16];
    pthread_mutex_lock(&jr.mu);
    unsigned n = jr.nheld;
    memcpy(calls, jr.held, n * sizeof(calls[0]));
    jr.nheld = 0;
    pthread_mutex_unlock(&jr.mu);
    for (unsigned i = 0; i < n; i++)
        run_on(c, unhold_job, calls[i]);
    return n;
}

/* ---------------- a serving process: client, state, journal ---------------- */

static kbc_t *client(void)
{
    char err[256] = "";
    kbc_t *c = kbc_new_from_volfile("volume b0\n  type test/jrec\nend-volume\n", NULL, err, sizeof(err));
    cr_assert_not_null(c, "%s", err);
    return c;
}

static void start(kbf_t *fs, kbc_t *c, kbf_state_t *st)
{
    memset(fs, 0, sizeof(*fs));
    fs->kbc = c;
    fs->ctl = -1;
    fs->st = *st;
    kbf_journal_init(fs);
    cr_assert_not_null(fs->journal);
}

static void journal_free_job(void *arg)
{
    kbf_t *fs = arg;
    struct kbf_journal *j = fs->journal;
    event_free(j->tick);
    free(j->live);
    pthread_mutex_destroy(&j->mu);
    free(j);
    fs->journal = NULL;
}

/* The process ends (its memory goes; the memfd's pages stay). STATs in
 * flight are answered first: they hold the journal as their cookie. */
static void stop(kbf_t *fs)
{
    pthread_mutex_lock(&jr.mu);
    jr.hold_stat = false;
    pthread_mutex_unlock(&jr.mu);
    unhold(fs->kbc);
    run_on(fs->kbc, journal_free_job, fs);
}

/* The next process's mapping of the same memfd. */
static void remap(const kbf_state_t *a, kbf_state_t *b)
{
    char why[256] = "";
    int fd = dup(a->fd);
    cr_assert_geq(fd, 0);
    cr_assert_eq(kbf_state_map(b, fd, why, sizeof(why)), 0, "%s", why);
}

/* ---------------- the mocked bridge ---------------- */

static struct {
    unsigned n;
    kb_op_t op;
    uint32_t flags;              /* args.flags as wound */
    bool journaled;
    uint64_t jhead;              /* the ring's head when the write was wound */
} sub;

void kbf_req_submit(kbf_req_t *r, kb_op_t op, kbf_done_fn done)
{
    sub.n++;
    sub.op = op;
    sub.flags = r->a.flags;
    sub.journaled = r->journaled;
    sub.jhead = r->fs->st.hdr->jhead;
    r->op = op;
    r->done = done;
    kb_reply_t rep = { .status = (int32_t)r->a.data->len };   /* write-behind: acknowledged */
    done(r, &rep);
}

static int acked;

static void write_done(kbf_req_t *r, const kb_reply_t *rep)
{
    (void)r;
    acked = rep->status;
}

/* A buffered WRITE of LEN bytes of BYTE at OFF through handle FD of gfid G.
 * Returns its sequence number (0: not journaled). */
static uint64_t jwrite(kbf_t *fs, const kb_gfid_t *g, uint64_t fd, uint64_t off, char byte, size_t len)
{
    char buf[4096];
    cr_assert_leq(len, sizeof(buf));
    memset(buf, byte, len);
    kbf_req_t r = { .fs = fs };
    r.a.gfid = *g;
    r.a.fd = fd;
    r.a.off = off;
    r.a.data = kb_buf_copy(buf, len);
    unsigned n0 = sub.n;
    acked = -1;
    uint64_t seq0 = fs->st.hdr->jseq;
    kbf_journal_submit_write(&r, write_done);
    cr_assert_eq(sub.n, n0 + 1, "every write is wound, exactly once");
    cr_assert_eq(sub.op, KB_FOP_WRITE);
    cr_assert_eq(acked, (int)len);
    kb_args_clear(&r.a);
    if (!r.journaled) {
        cr_assert_eq(fs->st.hdr->jseq, seq0, "no sequence number taken");
        return 0;
    }
    cr_assert_eq(fs->st.hdr->jseq, seq0 + 1);
    return fs->st.hdr->jseq;
}

/* The entry at ring offset POS. */
static kbf_st_jent_t *ent(const kbf_t *fs, uint64_t pos)
{
    return (kbf_st_jent_t *)(void *)(fs->st.journal + pos % fs->st.hdr->journal_size);
}

static uint32_t nlive(const kbf_t *fs)
{
    return __atomic_load_n(&fs->journal->nlive, __ATOMIC_ACQUIRE);
}

static const kbf_st_geom_t geom = { .node_cap = 64, .handle_cap = 8, .journal_size = 1 << 20 };
static const kbf_st_geom_t tiny = { .node_cap = 64, .handle_cap = 8, .journal_size = 4096 };

/* ================= which writes ================= */

Test(fuse_journal, buffered_writes_are_journaled_synchronous_ones_not, .init = setup)
{
    kbc_t *c = client();
    kbf_state_t st;
    cr_assert_eq(kbf_state_create(&st, &geom, inst, true), 0);
    kbf_t fs;
    start(&fs, c, &st);
    cr_assert(kbf_journal_wants(&fs, O_WRONLY));
    cr_assert(kbf_journal_wants(&fs, O_RDWR | O_CREAT | O_TRUNC));
    cr_assert(kbf_journal_wants(&fs, O_WRONLY | O_APPEND));
    cr_assert(kbf_journal_wants(&fs, O_RDWR | O_NONBLOCK | O_NOATIME));
    cr_assert_not(kbf_journal_wants(&fs, O_RDWR | O_DIRECT), "cache=none: waits for the bricks anyway");
    cr_assert_not(kbf_journal_wants(&fs, O_WRONLY | O_SYNC));
    cr_assert_not(kbf_journal_wants(&fs, O_WRONLY | O_DSYNC));
    cr_assert_not(kbf_journal_wants(&fs, O_RDWR | O_DIRECT | O_DSYNC));
    stop(&fs);

    /* No journal: a mount without shared state, or a state without a ring. */
    kbf_t none = { .kbc = c, .ctl = -1 };
    kbf_journal_init(&none);
    cr_assert_null(none.journal);
    cr_assert_not(kbf_journal_wants(&none, O_WRONLY));
    cr_assert_eq(kbf_journal_enter(&none), 0);
    kbf_journal_leave(&none);
    kbf_journal_barrier(&none, &kb_gfid_root, 5);   /* harmless */
    kbf_journal_replay(&none);
    kbf_state_t st0;
    kbf_st_geom_t g0 = geom;
    g0.journal_size = 0;
    cr_assert_eq(kbf_state_create(&st0, &g0, inst, true), 0);
    none.st = st0;
    kbf_journal_init(&none);
    cr_assert_null(none.journal, "no ring: nothing to attach to");
    kbf_state_unmap(&st0);
    kbf_state_unmap(&st);
    kbc_free(c);
}

/* ================= kept before it is wound ================= */

Test(fuse_journal, a_write_is_in_the_ring_before_it_is_wound, .init = setup)
{
    kbc_t *c = client();
    kbf_state_t st;
    cr_assert_eq(kbf_state_create(&st, &geom, inst, true), 0);
    kbf_t fs;
    start(&fs, c, &st);
    kb_gfid_t g = gfid_n(1);
    cr_assert_eq(st.hdr->jhead, 0);
    uint64_t seq = jwrite(&fs, &g, 0x10001, 4096, 'q', 100);
    cr_assert_eq(seq, 1);
    cr_assert(sub.journaled, "the write knows it is kept (its completion is no barrier)");
    cr_assert_eq(sub.flags & O_DIRECT, 0, "and may be acknowledged early");
    cr_assert_eq(sub.jhead, 64 + 128, "published before the wind: header + payload, 64-byte aligned");
    kbf_st_jent_t *e = ent(&fs, 0);
    cr_assert_eq(e->state, KBF_JENT_LIVE);
    cr_assert_eq(e->seq, 1);
    cr_assert_eq(e->len, 100);
    cr_assert_eq(e->handle, 0x10001);
    cr_assert_eq(e->off, 4096);
    cr_assert_eq(memcmp(e->gfid, g.b, 16), 0);
    for (unsigned i = 0; i < 100; i++)
        cr_assert_eq(((uint8_t *)(e + 1))[i], 'q');
    cr_assert_eq(st.hdr->jtail, 0);
    cr_assert_eq(nlive(&fs), 1);
    /* The next one follows it, with the next sequence number. */
    cr_assert_eq(jwrite(&fs, &g, 0x10001, 0, 'r', 1), 2);
    cr_assert_eq(ent(&fs, 192)->seq, 2);
    cr_assert_eq(st.hdr->jhead, 192 + 128);
    stop(&fs);
    kbf_state_unmap(&st);
    kbc_free(c);
}

/* ================= barriers ================= */

Test(fuse_journal, a_barrier_releases_its_gfid_up_to_its_sequence_only, .init = setup)
{
    kbc_t *c = client();
    kbf_state_t st;
    cr_assert_eq(kbf_state_create(&st, &geom, inst, true), 0);
    kbf_t fs;
    start(&fs, c, &st);
    kb_gfid_t a = gfid_n(1), b = gfid_n(2), other = gfid_n(3);
    uint64_t a1 = jwrite(&fs, &a, 1, 0, 'a', 10);      /* ring 0 */
    uint64_t b1 = jwrite(&fs, &b, 2, 0, 'b', 10);      /* ring 128 */
    uint64_t a2 = jwrite(&fs, &a, 1, 10, 'c', 10);     /* ring 256 */
    uint64_t a3 = jwrite(&fs, &a, 1, 20, 'd', 10);     /* ring 384 */
    cr_assert(a1 == 1 && b1 == 2 && a2 == 3 && a3 == 4);
    cr_assert_eq(nlive(&fs), 4);

    kbf_journal_barrier(&fs, &other, 100);
    cr_assert_eq(nlive(&fs), 4, "another gfid's barrier releases nothing");
    kbf_journal_barrier(&fs, &a, 0);
    cr_assert_eq(nlive(&fs), 4, "a call submitted before any write waited for none");

    kbf_journal_barrier(&fs, &a, a1);
    cr_assert_eq(nlive(&fs), 3);
    cr_assert_eq(ent(&fs, 0)->state, KBF_JENT_DONE);
    cr_assert_eq(ent(&fs, 128)->state, KBF_JENT_LIVE, "b's entry untouched");
    cr_assert_eq(ent(&fs, 256)->state, KBF_JENT_LIVE, "a's later entries stay");
    cr_assert_eq(st.hdr->jtail, 128, "the tail passes the done entry, and stops at a live one");

    /* A call is submitted with the last entry's sequence number
     * (kbf_journal_enter in kbf_req_submit, ops.c); one submitted between
     * a2 and a3 releases a2, not a3. */
    uint64_t seq = kbf_journal_enter(&fs);
    kbf_journal_leave(&fs);
    cr_assert_eq(seq, a3, "submitted now: after a3");
    kbf_journal_barrier(&fs, &a, a2);
    cr_assert_eq(nlive(&fs), 2);
    cr_assert_eq(ent(&fs, 256)->state, KBF_JENT_DONE);
    cr_assert_eq(ent(&fs, 384)->state, KBF_JENT_LIVE);
    cr_assert_eq(st.hdr->jtail, 128, "done, but behind b's live entry: not reclaimed yet");

    kbf_journal_barrier(&fs, &b, seq);
    cr_assert_eq(nlive(&fs), 1);
    cr_assert_eq(st.hdr->jtail, 384, "b done: the tail passes b and a2, up to a3");
    kbf_journal_barrier(&fs, &a, seq);
    cr_assert_eq(nlive(&fs), 0);
    cr_assert_eq(st.hdr->jtail, st.hdr->jhead, "everything reached the bricks: the ring is empty");
    kbf_journal_barrier(&fs, &a, seq);
    cr_assert_eq(st.hdr->jtail, st.hdr->jhead);
    stop(&fs);
    kbf_state_unmap(&st);
    kbc_free(c);
}

/* ================= a full ring ================= */

Test(fuse_journal, a_full_ring_makes_the_write_synchronous, .init = setup)
{
    kbc_t *c = client();
    kbf_state_t st;
    cr_assert_eq(kbf_state_create(&st, &tiny, inst, true), 0);
    cr_assert_eq(st.hdr->journal_size, 4096);
    kbf_t fs;
    start(&fs, c, &st);
    kb_gfid_t a = gfid_n(1), b = gfid_n(2);
    /* 1000 bytes take 64 + 1024: three fit in 4096, at 0, 1088 and 2176. */
    cr_assert_eq(jwrite(&fs, &a, 1, 0, '1', 1000), 1);
    cr_assert_eq(jwrite(&fs, &b, 2, 0, '2', 1000), 2);
    cr_assert_eq(jwrite(&fs, &a, 1, 1000, '3', 1000), 3);
    cr_assert_eq(st.hdr->jhead, 3264);
    cr_assert_eq(jwrite(&fs, &b, 2, 1000, '4', 1000), 0, "no room: not journaled");
    cr_assert_neq(sub.flags & O_DIRECT, 0, "the O_DIRECT bit: write-behind does not acknowledge it early");
    cr_assert_not(sub.journaled, "its completion is a barrier like any synchronous call's");
    cr_assert_eq(st.hdr->jhead, 3264, "nothing half-written into the ring");
    cr_assert_eq(nlive(&fs), 3);
    /* A small one still fits in the 832 bytes left at the end. */
    cr_assert_eq(jwrite(&fs, &a, 1, 5000, '5', 1), 4);
    uint64_t head = st.hdr->jhead;
    cr_assert_eq(head, 3264 + 128);
    cr_assert_eq(jwrite(&fs, &a, 1, 6000, '6', 1000), 0, "still full");

    /* a's entries reach the bricks: the tail moves past the first only
     * (b's is next), and the next write wraps to the start of the ring: the
     * 704 bytes left at the end are skipped, never split. */
    kbf_journal_barrier(&fs, &a, 4);
    cr_assert_eq(st.hdr->jtail, 1088);
    uint64_t s = jwrite(&fs, &a, 1, 9000, '7', 1000);
    cr_assert_eq(s, 5, "room again");
    cr_assert_eq(sub.flags & O_DIRECT, 0);
    cr_assert_eq(ent(&fs, head)->state, KBF_JENT_WRAP, "the rest of the ring is skipped, marked");
    cr_assert_eq(st.hdr->jhead, 4096 + 1088, "the entry starts the ring's next lap");
    kbf_st_jent_t *e = ent(&fs, 4096);
    cr_assert_eq(e->state, KBF_JENT_LIVE);
    cr_assert_eq(e->off, 9000);
    cr_assert_eq(((uint8_t *)(e + 1))[999], '7');
    /* Released, the tail follows through the wrap. */
    kbf_journal_barrier(&fs, &b, s);
    kbf_journal_barrier(&fs, &a, s);
    cr_assert_eq(nlive(&fs), 0);
    cr_assert_eq(st.hdr->jtail, st.hdr->jhead);
    stop(&fs);
    kbf_state_unmap(&st);
    kbc_free(c);
}

/* ================= a file left alone ================= */

Test(fuse_journal, the_tick_stats_a_file_left_alone, .init = setup)
{
    kbc_t *c = client();
    kbf_state_t st;
    cr_assert_eq(kbf_state_create(&st, &geom, inst, true), 0);
    kbf_t fs;
    start(&fs, c, &st);
    kb_gfid_t a = gfid_n(1), b = gfid_n(2);
    jwrite(&fs, &a, 1, 0, 'a', 10);
    jwrite(&fs, &b, 2, 0, 'b', 10);
    cr_assert(jr_wait(KB_FOP_STAT, 1), "a STAT within a few ticks");
    jrec_t s = jr_nth(KB_FOP_STAT, 0);
    cr_assert(kb_gfid_eq(&s.gfid, &a), "of the oldest entry's file");
    usleep(100 * 1000);
    cr_assert_eq(jr_count(KB_FOP_STAT), 1, "one at a time");
    jwrite(&fs, &a, 1, 10, 'c', 10);   /* after the STAT: not covered by it */
    cr_assert_eq(nlive(&fs), 3);
    /* The STAT completes: write-behind ordered it after a's writes. */
    cr_assert_eq(unhold(c), 1);
    cr_assert_eq(nlive(&fs), 2, "a's first write released, b's and a's later one kept");
    cr_assert_eq(ent(&fs, 0)->state, KBF_JENT_DONE);
    cr_assert_eq(ent(&fs, 256)->state, KBF_JENT_LIVE);
    cr_assert(jr_wait(KB_FOP_STAT, 2), "the next tick");
    s = jr_nth(KB_FOP_STAT, 1);
    cr_assert(kb_gfid_eq(&s.gfid, &b), "of the oldest entry left");
    pthread_mutex_lock(&jr.mu);
    jr.hold_stat = false;
    pthread_mutex_unlock(&jr.mu);
    cr_assert_eq(unhold(c), 1);
    bool gone = false;
    for (int i = 0; i < 2000 && !gone; i++) {
        gone = nlive(&fs) == 0;
        if (!gone)
            usleep(1000);
    }
    cr_assert(gone, "the next ticks release the rest: nothing is kept for ever");
    cr_assert_eq(st.hdr->jtail, st.hdr->jhead);
    unsigned n = jr_count(KB_FOP_STAT);
    usleep(100 * 1000);
    cr_assert_eq(jr_count(KB_FOP_STAT), n, "and then they stop");
    stop(&fs);
    kbf_state_unmap(&st);
    kbc_free(c);
}

/* A call that failed was not necessarily ordered after the file's writes
 * (it may have failed before write-behind: no graph, a lost handle): its
 * completion releases nothing; a later success does. */
Test(fuse_journal, a_failed_call_releases_nothing, .init = setup)
{
    kbc_t *c = client();
    kbf_state_t st;
    cr_assert_eq(kbf_state_create(&st, &geom, inst, true), 0);
    kbf_t fs;
    start(&fs, c, &st);
    pthread_mutex_lock(&jr.mu);
    jr.hold_stat = false;
    jr.stat_err = -ENOTCONN;
    pthread_mutex_unlock(&jr.mu);
    kb_gfid_t a = gfid_n(1);
    jwrite(&fs, &a, 1, 0, 'a', 10);
    cr_assert(jr_wait(KB_FOP_STAT, 2), "the tick's STATs, failing");
    cr_assert_eq(nlive(&fs), 1, "kept while its STATs fail");
    pthread_mutex_lock(&jr.mu);
    jr.stat_err = 0;
    pthread_mutex_unlock(&jr.mu);
    bool gone = false;
    for (int i = 0; i < 2000 && !gone; i++) {
        gone = nlive(&fs) == 0;
        if (!gone)
            usleep(1000);
    }
    cr_assert(gone, "released by the first STAT that succeeds");
    stop(&fs);
    kbf_state_unmap(&st);
    kbc_free(c);
}

/* ================= stopping ================= */

struct barriers_run {
    kbf_t *fs;
    unsigned count, done;
};

static void barriers_cbk(void *arg, const kb_reply_t *rep)
{
    struct barriers_run *b = arg;
    (void)rep;
    b->done++;
}

static void barriers_job(void *arg)
{
    struct barriers_run *b = arg;
    static const kb_cred_t root;
    kbf_journal_barriers(b->fs, barriers_cbk, b, &b->count, &root);
}

Test(fuse_journal, a_stop_stats_each_file_with_entries_once, .init = setup)
{
    kbc_t *c = client();
    kbf_state_t st;
    cr_assert_eq(kbf_state_create(&st, &geom, inst, true), 0);
    kbf_t fs;
    start(&fs, c, &st);
    kb_gfid_t a = gfid_n(1), b = gfid_n(2);
    jwrite(&fs, &a, 1, 0, 'a', 10);
    jwrite(&fs, &b, 2, 0, 'b', 10);
    jwrite(&fs, &a, 1, 10, 'c', 10);
    cr_assert(jr_wait(KB_FOP_STAT, 1));  /* the tick's, held */
    jr_forget();
    struct barriers_run br = { .fs = &fs };
    run_on(c, barriers_job, &br);
    cr_assert_eq(br.count, 2, "one STAT per gfid");
    cr_assert_eq(jr_count(KB_FOP_STAT), 2);
    jrec_t s0 = jr_nth(KB_FOP_STAT, 0), s1 = jr_nth(KB_FOP_STAT, 1);
    cr_assert((kb_gfid_eq(&s0.gfid, &a) && kb_gfid_eq(&s1.gfid, &b)) ||
              (kb_gfid_eq(&s0.gfid, &b) && kb_gfid_eq(&s1.gfid, &a)));
    cr_assert_eq(br.done, 0, "held by the bricks");
    cr_assert_eq(nlive(&fs), 3);
    pthread_mutex_lock(&jr.mu);
    jr.hold_stat = false;
    pthread_mutex_unlock(&jr.mu);
    cr_assert_eq(unhold(c), 3);          /* the tick's and the two */
    cr_assert_eq(br.done, 2);
    cr_assert_eq(nlive(&fs), 0, "every entry released: nothing left for the next process");
    cr_assert_eq(st.hdr->jtail, st.hdr->jhead);
    stop(&fs);
    kbf_state_unmap(&st);
    kbc_free(c);
}

/* ================= a takeover ================= */

struct restore_wait {
    sem_t done;
    unsigned failed;
};

static void restored(void *arg, unsigned failed)
{
    struct restore_wait *w = arg;
    w->failed = failed;
    sem_post(&w->done);
}

/* The next process's client, with the handles HS (values and gfids) restored. */
static kbc_t *client_with(const kbc_handle_info_t *hs, uint32_t n)
{
    kbc_t *c = client();
    struct restore_wait w = { .failed = 99 };
    sem_init(&w.done, 0, 0);
    cr_assert_eq(kbc_handles_restore(c, hs, n, restored, &w), 0);
    while (sem_wait(&w.done) < 0 && errno == EINTR)
        ;
    sem_destroy(&w.done);
    cr_assert_eq(w.failed, 0);
    return c;
}

/* The fd the bricks gave the reopen of G (the last OPEN of G). */
static uint64_t reopened_fd(const kb_gfid_t *g)
{
    uint64_t fd = 0;
    pthread_mutex_lock(&jr.mu);
    for (unsigned i = 0; i < jr.n; i++)
        if (jr.rec[i].op == KB_FOP_OPEN && kb_gfid_eq(&jr.rec[i].gfid, g))
            fd = jr.rec[i].rfd;
    pthread_mutex_unlock(&jr.mu);
    cr_assert_neq(fd, 0, "reopened");
    return fd;
}

Test(fuse_journal, a_takeover_writes_every_live_entry_again_in_order, .init = setup)
{
    /* The first serving process: two open files, writes acknowledged early. */
    kbc_t *c1 = client();
    kb_gfid_t a = gfid_n(1), b = gfid_n(2);
    kbc_fd_t *fa, *fb;
    cr_assert_eq(kbc_open(c1, &a, O_RDWR, &fa), 0);
    cr_assert_eq(kbc_open(c1, &b, O_WRONLY, &fb), 0);
    uint64_t ha = kbc_fd_handle(fa), hb = kbc_fd_handle(fb);
    kbf_state_t st1;
    cr_assert_eq(kbf_state_create(&st1, &tiny, inst, false), 0);
    kbf_t fs1;
    start(&fs1, c1, &st1);
    struct { const kb_gfid_t *g; uint64_t h, off; char byte; size_t len; bool live; } w[] = {
        { &a, ha, 0, 'A', 1000, false },      /* released: reclaimed */
        { &b, hb, 8192, 'B', 700, true },
        { &a, ha, 2000, 'x', 100, false },    /* released, but behind b's: still in the ring, done */
        { &a, ha, 500, 'C', 1000, true },     /* overlaps the next: order matters */
        { &a, ha, 1000, 'D', 500, true },
        { &b, hb, 0, 'E', 400, true },        /* after the wrap */
    };
    cr_assert_eq(jwrite(&fs1, w[0].g, w[0].h, w[0].off, w[0].byte, w[0].len), 1);
    cr_assert_eq(jwrite(&fs1, w[1].g, w[1].h, w[1].off, w[1].byte, w[1].len), 2);
    /* A call of a (say a READ) completed after its first write only. */
    kbf_journal_barrier(&fs1, &a, 1);
    cr_assert_eq(jwrite(&fs1, w[2].g, w[2].h, w[2].off, w[2].byte, w[2].len), 3);
    kbf_journal_barrier(&fs1, &a, 3);
    cr_assert_eq(ent(&fs1, 1856)->state, KBF_JENT_DONE);
    cr_assert_eq(st1.hdr->jtail, 1088, "behind b's live entry");
    for (unsigned i = 3; i < KB_ARRAY_SIZE(w); i++)
        cr_assert_eq(jwrite(&fs1, w[i].g, w[i].h, w[i].off, w[i].byte, w[i].len), i + 1);
    cr_assert_eq(ent(&fs1, 3712)->state, KBF_JENT_WRAP);
    cr_assert_lt(st1.hdr->jhead % 4096, st1.hdr->jtail % 4096, "the ring wrapped");
    cr_assert_eq(nlive(&fs1), 4);

    /* Killed: its memory is gone; the memfd and the kernel's fds stay. */
    stop(&fs1);
    kbc_handle_info_t hs[2] = {
        { .value = ha, .gfid = a, .flags = O_RDWR },
        { .value = hb, .gfid = b, .flags = O_WRONLY },
    };
    cr_assert_eq(kbc_close(fa), 0);
    cr_assert_eq(kbc_close(fb), 0);
    kbc_free(c1);

    /* The next one: its own client (the handles restored with their values)
     * and its own mapping of the same memfd. */
    jr_forget();
    kbc_t *c2 = client_with(hs, 2);
    kbf_state_t st2;
    remap(&st1, &st2);
    kbf_t fs2;
    start(&fs2, c2, &st2);
    cr_assert_eq(nlive(&fs2), 0, "a new process's journal has nothing of its own");
    kbf_journal_replay(&fs2);           /* returns once every write is answered */

    cr_assert_eq(jr_count(KB_FOP_WRITE), 4, "released entries are not written again");
    unsigned k = 0;
    for (unsigned i = 0; i < KB_ARRAY_SIZE(w); i++) {
        if (!w[i].live)
            continue;
        jrec_t r = jr_nth(KB_FOP_WRITE, k++);
        cr_assert(kb_gfid_eq(&r.gfid, w[i].g), "write %u: its file, in sequence order", i);
        cr_assert_eq(r.off, w[i].off, "write %u: its offset", i);
        cr_assert_eq(r.len, w[i].len, "write %u: its length", i);
        for (size_t x = 0; x < r.len; x++)
            cr_assert_eq(r.data[x], (uint8_t)w[i].byte, "write %u: its bytes", i);
        cr_assert_neq(r.flags & O_DIRECT, 0, "write %u: synchronous (write-behind does not take it)", i);
        cr_assert_eq(r.fd, reopened_fd(w[i].g), "write %u: through its handle, reopened", i);
    }
    cr_assert_eq(st2.hdr->jtail, st2.hdr->jhead, "everything on the bricks: the ring starts empty");
    cr_assert_eq(st2.hdr->jseq, 6, "sequence numbers go on");

    /* A takeover of the takeover has nothing to write. */
    jr_forget();
    kbf_journal_replay(&fs2);
    cr_assert_eq(jr_count(KB_FOP_WRITE), 0);
    /* The new process journals on from there. */
    cr_assert_eq(jwrite(&fs2, &a, ha, 0, 'F', 10), 7);
    stop(&fs2);
    kbf_state_unmap(&st2);
    kbf_state_unmap(&st1);
    kbc_free(c2);
}

Test(fuse_journal, a_replayed_write_that_fails_is_reported_not_waited_for, .init = setup)
{
    kbc_t *c1 = client();
    kb_gfid_t a = gfid_n(1), b = gfid_n(2);
    kbc_fd_t *fa, *fb;
    cr_assert_eq(kbc_open(c1, &a, O_RDWR, &fa), 0);
    cr_assert_eq(kbc_open(c1, &b, O_RDWR, &fb), 0);
    uint64_t ha = kbc_fd_handle(fa), hb = kbc_fd_handle(fb);
    kbf_state_t st1;
    cr_assert_eq(kbf_state_create(&st1, &geom, inst, false), 0);
    kbf_t fs1;
    start(&fs1, c1, &st1);
    jwrite(&fs1, &a, ha, 0, 'a', 10);
    jwrite(&fs1, &b, hb, 0, 'b', 10);
    jwrite(&fs1, &a, ha, 10, 'c', 10);
    stop(&fs1);
    kbc_handle_info_t hs[2] = { { .value = ha, .gfid = a, .flags = O_RDWR },
                                { .value = hb, .gfid = b, .flags = O_RDWR } };
    kbc_close(fa);
    kbc_close(fb);
    kbc_free(c1);

    jr_forget();
    pthread_mutex_lock(&jr.mu);
    jr.fail_write = a;
    pthread_mutex_unlock(&jr.mu);
    kbc_t *c2 = client_with(hs, 2);
    kbf_state_t st2;
    remap(&st1, &st2);
    kbf_t fs2;
    start(&fs2, c2, &st2);
    kbf_journal_replay(&fs2);
    cr_assert_eq(jr_count(KB_FOP_WRITE), 3, "every entry tried, the failures logged");
    cr_assert_eq(st2.hdr->jtail, st2.hdr->jhead);
    stop(&fs2);
    kbf_state_unmap(&st2);
    kbf_state_unmap(&st1);
    kbc_free(c2);
}
