/*
 * journal.c — buffered writes acknowledged before they reached the bricks,
 * kept in the mount's shared state until they did (fuse/journal.h).
 *
 * Why: performance/write-behind acknowledges a buffered write(2) at once and
 * writes it on (issue 7); "a client that dies loses what it acknowledged and
 * had not completed, like a page cache". With a serving process that can be
 * killed and replaced under a running application that is not good enough:
 * the application's next fsync would go to the new process, find nothing
 * outstanding and succeed — the data silently gone. So each write that
 * write-behind may acknowledge early is first copied into a ring in the
 * shared memfd (a memcpy: no syscall), and a new serving process writes the
 * entries still live again before it serves anything (kbf_journal_replay).
 *
 * When an entry is done: write-behind orders every other call naming the
 * inode (READ, STAT, FSYNC, FLUSH, RELEASE, LK, a synchronous WRITE ...)
 * after the writes it acknowledged before, so when such a call completes,
 * every write of that gfid submitted before it reached the bricks (or failed
 * there, which write-behind reports at the next fsync/close). Each request
 * records the journal's sequence number when it is submitted
 * (kbf_journal_enter, in submission order); its completion marks the gfid's
 * entries up to it done (kbf_journal_barrier). A file written and then left
 * alone gets such a call from here: a STAT every KBF_JTICK_MS while entries
 * are kept. Done entries are reclaimed from the ring's tail in order.
 *
 * Full ring (32 MiB; write-behind keeps at most 4 MiB per file): the write
 * goes synchronous instead (the O_DIRECT bit in args.flags is write-behind's
 * "do not acknowledge early"), never unprotected.
 *
 * Cost: nothing for O_DIRECT writes (VM images with cache=none) beyond one
 * uncontended mutex per request; a copy of the payload for buffered ones.
 *
 * Ordering: in the default mode requests are read, journaled and wound on
 * the loop thread, in order. With -o threads, workers take the journal's
 * (recursive) mutex around the sequence number and kbc_submit, so the loop
 * thread sees submissions in sequence order.
 */
#include "fuse/journal.h"

#include <fcntl.h>
#include <semaphore.h>

#include <event2/event.h>

#include "fuse/ops.h"
#include "lib/log.h"

#define KBF_JTICK_MS 20
#define JALIGN 64u

struct jlive {
    uint64_t seq;
    uint64_t pos;                /* ring offset of its entry (mod size) */
    kb_gfid_t gfid;
};

struct kbf_journal {
    pthread_mutex_t mu;          /* recursive (see "Ordering") */
    kbf_t *fs;
    kbf_st_hdr_t *hdr;
    uint8_t *ring;
    uint64_t size;
    struct jlive *live;          /* (mu) entries not done, in sequence order */
    uint32_t nlive, cap;         /* (mu; nlive read atomically outside) */
    struct event *tick;          /* loop thread */
    bool tick_armed;             /* (mu) */
    bool barrier_busy;           /* loop thread: the tick's STAT is in flight */
    kb_args_t barrier_args;
    uint64_t barrier_seq;
    bool full_said;              /* (mu) */
};

static const kb_cred_t jcred;   /* uid 0: the barriers are ours */

static uint64_t esize(uint32_t len)
{
    return JALIGN + KB_ALIGN_UP((uint64_t)len, JALIGN);
}

static kbf_st_jent_t *at(struct kbf_journal *j, uint64_t pos)
{
    return (kbf_st_jent_t *)(void *)(j->ring + pos % j->size);
}

/* Advance the tail over done entries (mu). */
static void reclaim_locked(struct kbf_journal *j)
{
    uint64_t tail = j->hdr->jtail, head = j->hdr->jhead;
    while (tail < head) {
        kbf_st_jent_t *e = at(j, tail);
        uint32_t st = __atomic_load_n(&e->state, __ATOMIC_ACQUIRE);
        if (st == KBF_JENT_WRAP)
            tail += j->size - tail % j->size;
        else if (st == KBF_JENT_DONE)
            tail += esize(e->len);
        else
            break;
    }
    __atomic_store_n(&j->hdr->jtail, tail, __ATOMIC_RELEASE);
}

static void mark_done_locked(struct kbf_journal *j, uint32_t i)
{
    __atomic_store_n(&at(j, j->live[i].pos)->state, KBF_JENT_DONE, __ATOMIC_RELEASE);
}

/* Copy one write into the ring (mu); false when it does not fit. */
static bool put_locked(struct kbf_journal *j, const kbf_req_t *r, uint64_t *seq)
{
    const kb_buf_t *b = r->a.data;
    uint32_t len = (uint32_t)b->len;
    uint64_t need = esize(len), head = j->hdr->jhead, tail = j->hdr->jtail;
    uint64_t room = j->size - (head - tail);
    uint64_t to_end = j->size - head % j->size;
    if (need > to_end) {         /* never split: the rest of the ring is skipped */
        if (need + to_end > room)
            return false;
        kbf_st_jent_t *w = at(j, head);
        w->len = 0;
        __atomic_store_n(&w->state, KBF_JENT_WRAP, __ATOMIC_RELEASE);
        head += to_end;
        room -= to_end;
    }
    if (need > room)
        return false;
    if (j->nlive == j->cap) {
        uint32_t cap = j->cap ? 2 * j->cap : 64;
        struct jlive *l = realloc(j->live, cap * sizeof(*l));
        if (!l)
            return false;
        j->live = l;
        j->cap = cap;
    }
    kbf_st_jent_t *e = at(j, head);
    __atomic_store_n(&e->state, 0, __ATOMIC_RELAXED);
    e->len = len;
    e->seq = ++j->hdr->jseq;
    e->handle = r->a.fd;
    e->off = r->a.off;
    memcpy(e->gfid, r->a.gfid.b, 16);
    memcpy(e + 1, b->data, len);
    __atomic_store_n(&e->state, KBF_JENT_LIVE, __ATOMIC_RELEASE);   /* after its bytes */
    __atomic_store_n(&j->hdr->jhead, head + need, __ATOMIC_RELEASE);
    j->live[j->nlive] = (struct jlive){ .seq = e->seq, .pos = head, .gfid = r->a.gfid };
    __atomic_store_n(&j->nlive, j->nlive + 1, __ATOMIC_RELEASE);
    *seq = e->seq;
    return true;
}

/* ---------------- the tick: a STAT for a file left alone ---------------- */

static void tick_arm(void *arg);

static void tick_barrier_done(void *cookie, const kb_reply_t *rep)
{
    struct kbf_journal *j = cookie;
    j->barrier_busy = false;
    if (rep->status >= 0)        /* failed: kept, asked again at a later tick */
        kbf_journal_barrier(j->fs, &j->barrier_args.gfid, j->barrier_seq);
    tick_arm(j);
}

static void tick(evutil_socket_t fd, short what, void *arg)
{
    struct kbf_journal *j = arg;
    (void)fd;
    (void)what;
    pthread_mutex_lock(&j->mu);
    j->tick_armed = false;
    if (!j->nlive || j->barrier_busy) {
        if (j->nlive)
            tick_arm(j);
        pthread_mutex_unlock(&j->mu);
        return;
    }
    j->barrier_busy = true;
    j->barrier_args = (kb_args_t){ .gfid = j->live[0].gfid };
    j->barrier_seq = j->hdr->jseq;
    kbc_submit(j->fs->kbc, KB_FOP_STAT, &j->barrier_args, &jcred, tick_barrier_done, j);
    pthread_mutex_unlock(&j->mu);
}

/* Loop thread (or any thread through tick_kick). */
static void tick_arm(void *arg)
{
    struct kbf_journal *j = arg;
    pthread_mutex_lock(&j->mu);
    if (!j->tick_armed && j->nlive) {
        struct timeval tv = { 0, KBF_JTICK_MS * 1000 };
        j->tick_armed = evtimer_add(j->tick, &tv) == 0;
    }
    pthread_mutex_unlock(&j->mu);
}

static void tick_kick(struct kbf_journal *j)
{
    kb_loop_t *l = kbc_loop(j->fs->kbc);
    if (kb_loop_in_thread(l))
        tick_arm(j);
    else
        kb_loop_run_in(l, tick_arm, j);
}

/* ---------------- the API ---------------- */

void kbf_journal_init(kbf_t *fs)
{
    if (!fs->st.hdr || !fs->st.hdr->journal_size)
        return;
    struct kbf_journal *j = kb_zalloc(sizeof(*j));
    if (!j)
        return;
    pthread_mutexattr_t ma;
    pthread_mutexattr_init(&ma);
    pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init(&j->mu, &ma);
    pthread_mutexattr_destroy(&ma);
    j->fs = fs;
    j->hdr = fs->st.hdr;
    j->ring = fs->st.journal;
    j->size = fs->st.hdr->journal_size;
    j->tick = evtimer_new(kb_loop_base(kbc_loop(fs->kbc)), tick, j);
    if (!j->tick) {
        pthread_mutex_destroy(&j->mu);
        free(j);
        kb_warn("fuse", "no write journal (out of memory): buffered writes go synchronous");
        return;
    }
    fs->journal = j;
}

bool kbf_journal_wants(const kbf_t *fs, int flags)
{
    return fs->journal && !(flags & (O_DIRECT | O_SYNC | O_DSYNC));
}

uint64_t kbf_journal_enter(kbf_t *fs)
{
    struct kbf_journal *j = fs->journal;
    if (!j)
        return 0;
    pthread_mutex_lock(&j->mu);
    return j->hdr->jseq;
}

void kbf_journal_leave(kbf_t *fs)
{
    if (fs->journal)
        pthread_mutex_unlock(&fs->journal->mu);
}

void kbf_journal_submit_write(kbf_req_t *r, void (*done)(kbf_req_t *, const kb_reply_t *))
{
    kbf_t *fs = r->fs;
    struct kbf_journal *j = fs->journal;
    pthread_mutex_lock(&j->mu);
    uint64_t seq;
    bool kept = put_locked(j, r, &seq);
    if (kept) {
        r->journaled = true;
        if (j->nlive == 1)
            tick_kick(j);
    } else {
        r->a.flags |= O_DIRECT;  /* write-behind: do not acknowledge this one early */
        if (!j->full_said)
            kb_warn("fuse", "the write journal is full (%llu MiB): buffered writes wait for the bricks "
                    "until it drains", (unsigned long long)(j->size >> 20));
        j->full_said = true;
    }
    kbf_req_submit(r, KB_FOP_WRITE, done);
    pthread_mutex_unlock(&j->mu);
}

void kbf_journal_barrier(kbf_t *fs, const kb_gfid_t *g, uint64_t seq)
{
    struct kbf_journal *j = fs->journal;
    if (!j || !__atomic_load_n(&j->nlive, __ATOMIC_ACQUIRE))
        return;
    pthread_mutex_lock(&j->mu);
    uint32_t k = 0;
    bool any = false;
    for (uint32_t i = 0; i < j->nlive; i++) {
        if (j->live[i].seq <= seq && kb_gfid_eq(&j->live[i].gfid, g)) {
            mark_done_locked(j, i);
            any = true;
        } else {
            j->live[k++] = j->live[i];
        }
    }
    __atomic_store_n(&j->nlive, k, __ATOMIC_RELEASE);
    if (any) {
        reclaim_locked(j);
        if (!k)
            j->full_said = false;
    }
    pthread_mutex_unlock(&j->mu);
}

/* ---- stopping: a STAT per gfid with entries ---- */

struct jstop {
    struct kbf_journal *j;
    kb_args_t a;
    uint64_t seq;
    kb_cbk_fn cbk;
    void *arg;
};

static void stop_barrier_done(void *cookie, const kb_reply_t *rep)
{
    struct jstop *s = cookie;
    if (rep->status >= 0)        /* failed: kept for the next process to write again */
        kbf_journal_barrier(s->j->fs, &s->a.gfid, s->seq);
    s->cbk(s->arg, rep);
    free(s);
}

void kbf_journal_barriers(kbf_t *fs, kb_cbk_fn cbk, void *arg, unsigned *count, const kb_cred_t *cred)
{
    struct kbf_journal *j = fs->journal;
    if (!j)
        return;
    pthread_mutex_lock(&j->mu);
    for (uint32_t i = 0; i < j->nlive; i++) {
        bool seen = false;
        for (uint32_t k = 0; k < i && !seen; k++)
            seen = kb_gfid_eq(&j->live[k].gfid, &j->live[i].gfid);
        struct jstop *s = seen ? NULL : kb_zalloc(sizeof(*s));
        if (!s)
            continue;
        *s = (struct jstop){ .j = j, .a = { .gfid = j->live[i].gfid }, .seq = j->hdr->jseq, .cbk = cbk, .arg = arg };
        (*count)++;
        kbc_submit(fs->kbc, KB_FOP_STAT, &s->a, cred, stop_barrier_done, s);
    }
    pthread_mutex_unlock(&j->mu);
}

/* ---- a takeover: what the previous process left ---- */

struct replay {
    sem_t done;
    unsigned pending;            /* (atomic) */
    unsigned failed;             /* (atomic) */
};

struct replay_one {
    struct replay *rp;
    kb_args_t a;
};

static void replay_cbk(void *cookie, const kb_reply_t *rep)
{
    struct replay_one *o = cookie;
    struct replay *rp = o->rp;
    if (rep->status < 0) {
        char gs[KB_GFID_STRLEN];
        kb_err("fuse", "takeover: a write acknowledged by the previous process (%s, %u bytes at %llu) cannot "
               "be written again: %s", kb_gfid_str(&o->a.gfid, gs), (unsigned)(o->a.data ? o->a.data->len : 0),
               (unsigned long long)o->a.off, strerror(-rep->status));
        __atomic_add_fetch(&rp->failed, 1, __ATOMIC_RELAXED);
    }
    kb_args_clear(&o->a);
    free(o);
    if (__atomic_sub_fetch(&rp->pending, 1, __ATOMIC_ACQ_REL) == 0)
        sem_post(&rp->done);
}

void kbf_journal_replay(kbf_t *fs)
{
    struct kbf_journal *j = fs->journal;
    if (!j)
        return;
    uint64_t t0 = kb_now_ms();
    struct replay rp = { .pending = 1 };
    sem_init(&rp.done, 0, 0);
    uint64_t tail = j->hdr->jtail, head = j->hdr->jhead, bytes = 0;
    unsigned n = 0;
    /* In ring order = sequence order: write-behind keeps overlapping writes
     * in submission order, and these are synchronous (O_DIRECT bit). */
    while (tail < head) {
        kbf_st_jent_t *e = at(j, tail);
        uint32_t st = __atomic_load_n(&e->state, __ATOMIC_ACQUIRE);
        if (st == KBF_JENT_WRAP) {
            tail += j->size - tail % j->size;
            continue;
        }
        if (st != KBF_JENT_LIVE && st != KBF_JENT_DONE)
            break;               /* torn at the head: its write was never acknowledged */
        if (st == KBF_JENT_LIVE) {
            struct replay_one *o = kb_zalloc(sizeof(*o));
            kb_buf_t *b = o ? kb_buf_copy(e + 1, e->len) : NULL;
            if (!b) {
                free(o);
                kb_err("fuse", "takeover: out of memory replaying the write journal");
                break;
            }
            o->rp = &rp;
            o->a.fd = e->handle;
            o->a.off = e->off;
            o->a.data = b;
            o->a.flags = O_DIRECT;
            memcpy(o->a.gfid.b, e->gfid, 16);
            __atomic_add_fetch(&rp.pending, 1, __ATOMIC_RELAXED);
            kbc_submit(fs->kbc, KB_FOP_WRITE, &o->a, &jcred, replay_cbk, o);
            n++;
            bytes += e->len;
        }
        tail += esize(e->len);
    }
    if (__atomic_sub_fetch(&rp.pending, 1, __ATOMIC_ACQ_REL) != 0)
        while (sem_wait(&rp.done) < 0 && errno == EINTR)
            ;
    sem_destroy(&rp.done);
    /* Everything is on the bricks (or reported): the ring starts empty. */
    __atomic_store_n(&j->hdr->jtail, j->hdr->jhead, __ATOMIC_RELEASE);
    if (n)
        kb_info("fuse", "takeover: %u writes acknowledged early by the previous process (%llu bytes) written "
                "again in %llu ms%s", n, (unsigned long long)bytes, (unsigned long long)(kb_now_ms() - t0),
                rp.failed ? "; some failed (logged)" : "");
}
