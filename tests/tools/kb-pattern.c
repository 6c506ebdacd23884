/*
 * kb-pattern — a checksummed-pattern writer and verifier for the reliability suite (issue 8).
 *
 *   kb-pattern write FILE --journal J [--size BYTES] [--bs BYTES] [--seed N] [--duration SECS |
 *                   --count N] [--direct] [--fsync N] [--rate IOPS] [--readback N] [--keep-going]
 *   kb-pattern verify FILE --journal J [--direct] [--strict-unacked]
 *
 * What it promises
 *   Each block of BS bytes that the writer puts at block index b carries its own identity:
 *
 *     offset size field
 *     0      4    magic 'KBPT' (0x5450424b little-endian)
 *     4      4    block size
 *     8      8    byte offset of the block in the file (b * bs)
 *     16     8    generation: the writer's global sequence number of this write (1, 2, ...)
 *     24     8    seed of the run
 *     32     ..   payload: xorshift64* stream keyed by (seed, offset, generation)
 *     bs-4   4    CRC32C of bytes [0, bs-4)
 *
 *   so a block read back is either zero (never written), a valid block of a known write, or
 *   garbage; and a valid block names the exact write that put it there.
 *
 *   The writer writes random blocks of the file one at a time (queue depth 1) and keeps a journal
 *   (text, appended with write(2), on a local disk, not on the file system under test):
 *     H seed=S bs=B size=Z                 once per run
 *     W <gen> <block>                      BEFORE the write is issued (an attempt)
 *     A <gen>                              AFTER it is acknowledged: pwrite returned every byte
 *                                          (--direct: O_DIRECT) and, with --fsync N, the fsync
 *                                          that follows it returned 0
 *     E <gen> <errno>                      the write (or its fsync) failed
 *   A second run on the same file and journal continues the generations.
 *
 *   The verifier re-reads every block with an acknowledged write and checks the rule of DESIGN
 *   §10: the block is valid, at its own offset, and carries the LATEST acknowledged generation for
 *   that block or a later attempted-but-unacknowledged one (a write in flight when a node died may
 *   or may not have landed). An older generation, another block's data, zeros or garbage where a
 *   write was acknowledged is a lost write. Blocks that only ever saw failed attempts may hold
 *   zeros or one of those attempts; anything else there is reported too.
 *
 *   Both modes end with one key=value line on stdout (parsed by the tests); write reports the
 *   longest single write latency (max_stall_ms: pwrite plus its fsync), verify the bytes checked.
 *   Exit status: 0 ok, 1 verification failure or write errors (without --keep-going), 2 usage or
 *   setup errors.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define PAT_MAGIC 0x5450424bu
#define PAT_HDR 32

typedef struct opts {
    const char *file, *journal;
    uint64_t size, bs, seed, count;
    double duration, rate;
    bool direct, keep_going, strict_unacked;
    unsigned fsync_every, readback;
} opts_t;

static volatile sig_atomic_t stop_flag;
static void on_stop(int sig) { (void)sig; stop_flag = 1; }

/* ---------------- CRC32C (Castagnoli, reflected 0x82F63B78), table driven ---------------- */

static uint32_t crc_table[256];

static void crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        crc_table[i] = c;
    }
}

static uint32_t crc32c(const uint8_t *p, size_t n)
{
    uint32_t c = 0xFFFFFFFFu;
    while (n--)
        c = crc_table[(c ^ *p++) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

/* ---------------- pattern ---------------- */

static void put32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static void put64(uint8_t *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static uint32_t get32(const uint8_t *p) { uint32_t v = 0; for (int i = 3; i >= 0; i--) v = v << 8 | p[i]; return v; }
static uint64_t get64(const uint8_t *p) { uint64_t v = 0; for (int i = 7; i >= 0; i--) v = v << 8 | p[i]; return v; }

static uint64_t mix64(uint64_t x)   /* splitmix64 finaliser: seeds that differ by one bit diverge */
{
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

static void pattern_fill(uint8_t *blk, uint64_t bs, uint64_t off, uint64_t gen, uint64_t seed)
{
    put32(blk, PAT_MAGIC);
    put32(blk + 4, (uint32_t)bs);
    put64(blk + 8, off);
    put64(blk + 16, gen);
    put64(blk + 24, seed);
    uint64_t s = mix64(seed ^ mix64(off) ^ mix64(gen * 0x2545F4914F6CDD1Dull)) | 1;
    for (uint64_t i = PAT_HDR; i + 8 <= bs - 4; i += 8) {
        s ^= s >> 12; s ^= s << 25; s ^= s >> 27;
        put64(blk + i, s * 0x2545F4914F6CDD1Dull);
    }
    put32(blk + bs - 4, crc32c(blk, bs - 4));
}

enum blk_kind { BLK_ZERO, BLK_VALID, BLK_GARBAGE };

/* Classify a block read back; for a valid one, its offset and generation. */
static enum blk_kind pattern_check(const uint8_t *blk, uint64_t bs, uint64_t seed, uint64_t *off, uint64_t *gen)
{
    bool zero = true;
    for (uint64_t i = 0; i < bs && zero; i++)
        zero = blk[i] == 0;
    if (zero)
        return BLK_ZERO;
    if (get32(blk) != PAT_MAGIC || get32(blk + 4) != bs || get64(blk + 24) != seed ||
        get32(blk + bs - 4) != crc32c(blk, bs - 4))
        return BLK_GARBAGE;
    *off = get64(blk + 8);
    *gen = get64(blk + 16);
    return BLK_VALID;
}

/* ---------------- time ---------------- */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_s(double s)
{
    if (s <= 0)
        return;
    struct timespec ts = { .tv_sec = (time_t)s, .tv_nsec = (long)((s - (double)(time_t)s) * 1e9) };
    while (nanosleep(&ts, &ts) && errno == EINTR && !stop_flag)
        ;
}

/* ---------------- journal ---------------- */

/* What the journal says: per generation the block it targeted (0 = none, else block+1) and
 * whether it was acknowledged; per block the newest acknowledged generation. */
typedef struct journal {
    uint64_t seed, bs, size, nblocks;
    uint64_t maxgen, cap;
    uint64_t *gen_blk;     /* [gen] block + 1, 0 if gen unknown */
    uint8_t *gen_state;    /* [gen] 0 attempted, 1 acked, 2 failed */
    uint64_t *ack;         /* [block] newest acked gen, 0 none */
    bool have_hdr;
} journal_t;

static int jr_grow(journal_t *j, uint64_t gen)
{
    if (gen < j->cap)
        return 0;
    uint64_t cap = j->cap ? j->cap : 4096;
    while (cap <= gen)
        cap *= 2;
    uint64_t *b = realloc(j->gen_blk, cap * sizeof(*b));
    if (!b)
        return -ENOMEM;
    j->gen_blk = b;
    uint8_t *s = realloc(j->gen_state, cap);
    if (!s)
        return -ENOMEM;
    j->gen_state = s;
    memset(j->gen_blk + j->cap, 0, (cap - j->cap) * sizeof(*b));
    memset(j->gen_state + j->cap, 0, cap - j->cap);
    j->cap = cap;
    return 0;
}

/* Load a journal. Missing file: empty journal (0). Bad content: -EINVAL with a message. */
static int jr_load(journal_t *j, const char *path)
{
    memset(j, 0, sizeof(*j));
    FILE *f = fopen(path, "r");
    if (!f)
        return errno == ENOENT ? 0 : -errno;
    char line[256];
    unsigned long lineno = 0;
    int rc = 0;
    while (!rc && fgets(line, sizeof(line), f)) {
        lineno++;
        uint64_t a = 0, b = 0;
        int e = 0;
        if (line[0] == 'H') {
            uint64_t seed, bs, size;
            if (sscanf(line, "H seed=%" SCNu64 " bs=%" SCNu64 " size=%" SCNu64, &seed, &bs, &size) != 3) {
                rc = -EINVAL;
            } else if (j->have_hdr && (seed != j->seed || bs != j->bs || size != j->size)) {
                fprintf(stderr, "kb-pattern: %s:%lu: run header differs from the first run's\n", path, lineno);
                rc = -EINVAL;
            } else {
                j->seed = seed, j->bs = bs, j->size = size, j->have_hdr = true;
                j->nblocks = size / bs;
                if (!j->ack && !(j->ack = calloc(j->nblocks ? j->nblocks : 1, sizeof(uint64_t))))
                    rc = -ENOMEM;
            }
        } else if (!j->have_hdr) {
            rc = -EINVAL;
        } else if (line[0] == 'W' && sscanf(line, "W %" SCNu64 " %" SCNu64, &a, &b) == 2 && a && b < j->nblocks) {
            if ((rc = jr_grow(j, a)) == 0) {
                j->gen_blk[a] = b + 1;
                j->gen_state[a] = 0;
                if (a > j->maxgen)
                    j->maxgen = a;
            }
        } else if (line[0] == 'A' && sscanf(line, "A %" SCNu64, &a) == 1 && a < j->cap && j->gen_blk[a]) {
            j->gen_state[a] = 1;
            uint64_t blk = j->gen_blk[a] - 1;
            if (a > j->ack[blk])
                j->ack[blk] = a;
        } else if (line[0] == 'E' && sscanf(line, "E %" SCNu64 " %d", &a, &e) == 2 && a < j->cap && j->gen_blk[a]) {
            j->gen_state[a] = 2;
        } else if (strchr(line, '\n')) {
            rc = -EINVAL;
        }
        /* else: a last line cut short (the writer was killed mid-append): ignore it */
        if (rc == -EINVAL)
            fprintf(stderr, "kb-pattern: %s:%lu: bad journal line: %s", path, lineno, line);
    }
    fclose(f);
    return rc;
}

static void jr_free(journal_t *j)
{
    free(j->gen_blk);
    free(j->gen_state);
    free(j->ack);
}

/* Is generation GEN, found in block BLK, an acceptable content for that block? */
static bool jr_acceptable(const journal_t *j, uint64_t blk, uint64_t gen)
{
    if (gen == 0 || gen >= j->cap || j->gen_blk[gen] != blk + 1)
        return false;                 /* never written there: another block's data, or invented */
    return gen >= j->ack[blk];        /* older than the newest acknowledged write: lost write */
}

/* ---------------- write ---------------- */

typedef struct wstats {
    uint64_t writes, acked, errors, readbacks, readback_bad;
    double max_stall, max_stall_at, t0;
    uint64_t over_100ms, over_1s;
} wstats_t;

static int jr_append(int jfd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int jr_append(int jfd, const char *fmt, ...)
{
    char buf[128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    return write(jfd, buf, (size_t)n) == n ? 0 : -errno;
}

static ssize_t pwrite_all(int fd, const uint8_t *p, size_t n, off_t off)
{
    size_t done = 0;
    while (done < n) {
        ssize_t w = pwrite(fd, p + done, n - done, off + (off_t)done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -errno;
        if (w == 0)
            return -EIO;
        done += (size_t)w;
    }
    return (ssize_t)done;
}

static ssize_t pread_all(int fd, uint8_t *p, size_t n, off_t off)
{
    size_t done = 0;
    while (done < n) {
        ssize_t r = pread(fd, p + done, n - done, off + (off_t)done);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -errno;
        if (r == 0)
            break;     /* EOF: the rest reads as zeros */
        done += (size_t)r;
    }
    memset(p + done, 0, n - done);
    return (ssize_t)n;
}

/* Read back one acknowledged block and check it (the read path under faults). */
static void readback_one(int fd, const opts_t *o, journal_t *j, uint8_t *buf, uint64_t *rng, wstats_t *st)
{
    if (!j->maxgen)
        return;
    for (int tries = 0; tries < 8; tries++) {
        *rng = mix64(*rng);
        uint64_t g = 1 + *rng % j->maxgen;
        if (g >= j->cap || j->gen_state[g] != 1)
            continue;
        uint64_t blk = j->gen_blk[g] - 1, off, gen;
        st->readbacks++;
        ssize_t r = pread_all(fd, buf, o->bs, (off_t)(blk * o->bs));
        if (r < 0) {
            fprintf(stderr, "kb-pattern: readback of block %" PRIu64 ": %s\n", blk, strerror((int)-r));
            st->readback_bad++;
            return;
        }
        enum blk_kind k = pattern_check(buf, o->bs, o->seed, &off, &gen);
        if (k != BLK_VALID || off != blk * o->bs || !jr_acceptable(j, blk, gen)) {
            fprintf(stderr, "kb-pattern: readback of block %" PRIu64 " (acked gen %" PRIu64 "): %s, gen %" PRIu64 "\n",
                    blk, j->ack[blk], k == BLK_ZERO ? "zeros" : k == BLK_GARBAGE ? "garbage" : "wrong block",
                    k == BLK_VALID ? gen : 0);
            st->readback_bad++;
        }
        return;
    }
}

/* Mark every generation in [from, to] acknowledged, in the journal and in memory. */
static int ack_range(int jfd, journal_t *j, uint64_t from, uint64_t to, wstats_t *st)
{
    for (uint64_t g = from; g <= to; g++) {
        if (jr_append(jfd, "A %" PRIu64 "\n", g))
            return -EIO;
        uint64_t blk = j->gen_blk[g] - 1;
        j->gen_state[g] = 1;
        if (g > j->ack[blk])
            j->ack[blk] = g;
        st->acked++;
    }
    return 0;
}

static void note_latency(wstats_t *st, double t_start, double lat)
{
    if (lat > st->max_stall) {
        st->max_stall = lat;
        st->max_stall_at = t_start - st->t0;
    }
    st->over_100ms += lat > 0.1;
    st->over_1s += lat > 1.0;
}

static int do_write(const opts_t *o)
{
    journal_t j;
    int rc = jr_load(&j, o->journal);
    if (rc) {
        fprintf(stderr, "kb-pattern: cannot load journal %s: %s\n", o->journal, strerror(-rc));
        return 2;
    }
    if (j.have_hdr && (j.seed != o->seed || j.bs != o->bs || j.size != o->size)) {
        fprintf(stderr, "kb-pattern: journal %s was written with other --seed/--bs/--size\n", o->journal);
        return 2;
    }
    j.seed = o->seed, j.bs = o->bs, j.size = o->size, j.nblocks = o->size / o->bs;
    if (!j.ack && !(j.ack = calloc(j.nblocks, sizeof(uint64_t))))
        return 2;
    int jfd = open(o->journal, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    int fd = open(o->file, O_RDWR | O_CREAT | O_CLOEXEC | (o->direct ? O_DIRECT : 0), 0644);
    if (jfd < 0 || fd < 0) {
        fprintf(stderr, "kb-pattern: open %s: %s\n", jfd < 0 ? o->journal : o->file, strerror(errno));
        return 2;
    }
    struct stat sb;
    if (fstat(fd, &sb) == 0 && (uint64_t)sb.st_size < o->size && ftruncate(fd, (off_t)o->size)) {
        fprintf(stderr, "kb-pattern: ftruncate %s: %s\n", o->file, strerror(errno));
        return 2;
    }
    uint8_t *buf = NULL, *rbuf = NULL;
    if (posix_memalign((void **)&buf, 4096, o->bs) || posix_memalign((void **)&rbuf, 4096, o->bs))
        return 2;
    jr_append(jfd, "H seed=%" PRIu64 " bs=%" PRIu64 " size=%" PRIu64 "\n", o->seed, o->bs, o->size);

    wstats_t st = { .t0 = now_s() };
    uint64_t rng = mix64(o->seed ^ (j.maxgen + 1)), gen = j.maxgen, unsynced_from = 0;
    double deadline = o->duration > 0 ? st.t0 + o->duration : 0, next_at = st.t0;
    int exit_rc = 0;
    while (!stop_flag && (o->count == 0 || st.writes < o->count) && (deadline == 0 || now_s() < deadline)) {
        if (o->rate > 0) {
            sleep_s(next_at - now_s());
            next_at += 1.0 / o->rate;
        }
        rng = mix64(rng);
        uint64_t blk = rng % j.nblocks;
        gen++;
        if (jr_grow(&j, gen) || jr_append(jfd, "W %" PRIu64 " %" PRIu64 "\n", gen, blk)) {
            fprintf(stderr, "kb-pattern: journal append failed\n");
            return 2;
        }
        j.gen_blk[gen] = blk + 1;
        j.gen_state[gen] = 0;
        j.maxgen = gen;
        if (!unsynced_from)
            unsynced_from = gen;
        pattern_fill(buf, o->bs, blk * o->bs, gen, o->seed);
        double t = now_s();
        ssize_t w = pwrite_all(fd, buf, o->bs, (off_t)(blk * o->bs));
        int err = w < 0 ? (int)-w : 0;
        bool sync_now = o->fsync_every && (st.writes + 1) % o->fsync_every == 0;
        if (!err && sync_now && fsync(fd))
            err = errno;
        double lat = now_s() - t;
        note_latency(&st, t, lat);
        st.writes++;
        if (err) {
            st.errors++;
            jr_append(jfd, "E %" PRIu64 " %d\n", gen, err);
            j.gen_state[gen] = 2;
            fprintf(stderr, "kb-pattern: write gen %" PRIu64 " block %" PRIu64 " at %.2fs: %s (after %.3fs)\n",
                    gen, blk, t - st.t0, strerror(err), lat);
            /* An fsync failure leaves the whole unsynced batch unacknowledged. */
            unsynced_from = 0;
            if (!o->keep_going) {
                exit_rc = 1;
                break;
            }
            sleep_s(0.1);
            continue;
        }
        if (!o->fsync_every || sync_now) {
            if (ack_range(jfd, &j, unsynced_from, gen, &st)) {
                fprintf(stderr, "kb-pattern: journal append failed\n");
                return 2;
            }
            unsynced_from = 0;
        }
        if (o->readback && st.writes % o->readback == 0)
            readback_one(fd, o, &j, rbuf, &rng, &st);
    }
    /* A final fsync acknowledges the tail of an fsync-batched run. */
    if (o->fsync_every && unsynced_from && !exit_rc) {
        double t = now_s();
        if (fsync(fd) == 0) {
            ack_range(jfd, &j, unsynced_from, gen, &st);
        } else {
            fprintf(stderr, "kb-pattern: final fsync: %s\n", strerror(errno));
            st.errors++;
        }
        note_latency(&st, t, now_s() - t);
    }
    if (close(fd)) {
        fprintf(stderr, "kb-pattern: close %s: %s\n", o->file, strerror(errno));
        st.errors++;
    }
    close(jfd);
    double el = now_s() - st.t0;
    printf("kb-pattern write: file=%s writes=%" PRIu64 " acked=%" PRIu64 " errors=%" PRIu64
           " bytes_acked=%" PRIu64 " seconds=%.1f iops=%.0f max_stall_ms=%.1f max_stall_at_s=%.1f"
           " over_100ms=%" PRIu64 " over_1s=%" PRIu64 " readbacks=%" PRIu64 " readback_bad=%" PRIu64 "\n",
           o->file, st.writes, st.acked, st.errors, st.acked * o->bs, el, el > 0 ? (double)st.writes / el : 0,
           st.max_stall * 1e3, st.max_stall_at, st.over_100ms, st.over_1s, st.readbacks, st.readback_bad);
    free(buf);
    free(rbuf);
    jr_free(&j);
    if (st.readback_bad || (st.errors && !o->keep_going))
        exit_rc = 1;
    return exit_rc;
}

/* ---------------- verify ---------------- */

static int do_verify(const opts_t *o)
{
    journal_t j;
    int rc = jr_load(&j, o->journal);
    if (rc || !j.have_hdr) {
        fprintf(stderr, "kb-pattern: journal %s: %s\n", o->journal, rc ? strerror(-rc) : "no run header");
        return 2;
    }
    int fd = open(o->file, O_RDONLY | O_CLOEXEC | (o->direct ? O_DIRECT : 0));
    uint8_t *buf = NULL;
    if (fd < 0 || posix_memalign((void **)&buf, 4096, j.bs)) {
        fprintf(stderr, "kb-pattern: open %s: %s\n", o->file, strerror(errno));
        return 2;
    }
    uint64_t checked = 0, bad = 0, unacked_checked = 0, unacked_bad = 0, read_errors = 0;
    double t0 = now_s();
    /* Blocks that saw any attempt: acked ones are the promise; the rest are checked loosely. */
    uint8_t *touched = calloc(j.nblocks ? j.nblocks : 1, 1);
    if (!touched)
        return 2;
    for (uint64_t g = 1; g <= j.maxgen && g < j.cap; g++)
        if (j.gen_blk[g])
            touched[j.gen_blk[g] - 1] = 1;
    for (uint64_t blk = 0; blk < j.nblocks && !stop_flag; blk++) {
        if (!touched[blk])
            continue;
        uint64_t off = 0, gen = 0;
        ssize_t r = pread_all(fd, buf, j.bs, (off_t)(blk * j.bs));
        bool acked = j.ack[blk] != 0;
        if (r < 0) {
            read_errors++;
            if (acked)
                bad++;
            if (read_errors <= 10)
                fprintf(stderr, "kb-pattern: verify %s block %" PRIu64 ": read error %s\n", o->file, blk,
                        strerror((int)-r));
            continue;
        }
        enum blk_kind k = pattern_check(buf, j.bs, j.seed, &off, &gen);
        bool ok;
        if (acked)
            ok = k == BLK_VALID && off == blk * j.bs && jr_acceptable(&j, blk, gen);
        else   /* only failed/unacknowledged attempts: zeros or one of them */
            ok = k == BLK_ZERO || (k == BLK_VALID && off == blk * j.bs && jr_acceptable(&j, blk, gen));
        if (acked) {
            checked++;
            bad += !ok;
        } else {
            unacked_checked++;
            unacked_bad += !ok;
        }
        if (!ok && (acked || o->strict_unacked) && bad + unacked_bad <= 20)
            fprintf(stderr, "kb-pattern: verify %s block %" PRIu64 " (offset %" PRIu64 "): newest acked gen %" PRIu64
                    ", found %s%s (gen %" PRIu64 ", offset %" PRIu64 ")\n", o->file, blk, blk * j.bs, j.ack[blk],
                    k == BLK_ZERO ? "zeros" : k == BLK_GARBAGE ? "garbage"
                    : off != blk * j.bs ? "another block's data" : "a valid block",
                    k == BLK_VALID && off == blk * j.bs && gen < j.ack[blk] ? " of an OLDER write" : "", gen, off);
    }
    close(fd);
    printf("kb-pattern verify: file=%s blocks_verified=%" PRIu64 " bytes_verified=%" PRIu64 " bad=%" PRIu64
           " read_errors=%" PRIu64 " unacked_blocks=%" PRIu64 " unacked_unexpected=%" PRIu64 " seconds=%.1f\n",
           o->file, checked, checked * j.bs, bad, read_errors, unacked_checked, unacked_bad, now_s() - t0);
    free(buf);
    free(touched);
    jr_free(&j);
    return bad || (o->strict_unacked && unacked_bad) ? 1 : 0;
}

/* ---------------- command line ---------------- */

static int usage(void)
{
    fprintf(stderr,
            "usage: kb-pattern write FILE --journal J [--size BYTES] [--bs BYTES] [--seed N]\n"
            "                  [--duration SECS | --count N] [--direct] [--fsync N] [--rate IOPS]\n"
            "                  [--readback N] [--keep-going]\n"
            "       kb-pattern verify FILE --journal J [--direct] [--strict-unacked]\n");
    return 2;
}

static int parse_u64(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 0);
    if (errno || end == s)
        return -1;
    switch (*end) {
    case 'k': case 'K': v <<= 10; end++; break;
    case 'm': case 'M': v <<= 20; end++; break;
    case 'g': case 'G': v <<= 30; end++; break;
    }
    if (*end)
        return -1;
    *out = v;
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 3)
        return usage();
    opts_t o = { .size = 64ull << 20, .bs = 4096, .seed = 1 };
    const char *mode = argv[1];
    o.file = argv[2];
    for (int i = 3; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        uint64_t n = 0;
        bool takes = true;
        if (!strcmp(a, "--direct")) o.direct = true, takes = false;
        else if (!strcmp(a, "--keep-going")) o.keep_going = true, takes = false;
        else if (!strcmp(a, "--strict-unacked")) o.strict_unacked = true, takes = false;
        else if (!v) return usage();
        else if (!strcmp(a, "--journal")) o.journal = v;
        else if (!strcmp(a, "--duration")) o.duration = atof(v);
        else if (!strcmp(a, "--rate")) o.rate = atof(v);
        else if (parse_u64(v, &n)) return usage();
        else if (!strcmp(a, "--size")) o.size = n;
        else if (!strcmp(a, "--bs")) o.bs = n;
        else if (!strcmp(a, "--seed")) o.seed = n;
        else if (!strcmp(a, "--count")) o.count = n;
        else if (!strcmp(a, "--fsync")) o.fsync_every = (unsigned)n;
        else if (!strcmp(a, "--readback")) o.readback = (unsigned)n;
        else return usage();
        i += takes;
    }
    if (!o.journal || o.bs < 512 || o.bs % 512 || o.size < o.bs) {
        fprintf(stderr, "kb-pattern: need --journal, --bs a multiple of 512, --size >= --bs\n");
        return 2;
    }
    o.size -= o.size % o.bs;
    crc_init();
    struct sigaction sa = { .sa_handler = on_stop };
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    if (!strcmp(mode, "write"))
        return do_write(&o);
    if (!strcmp(mode, "verify"))
        return do_verify(&o);
    return usage();
}
