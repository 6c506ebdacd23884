/*
 * layout.c — the name hash and the layout arithmetic of
 * cluster/distribute (formats and rules: layout.h).
 *
 * Promises: pure functions of their arguments; every layout produced by
 * dist_layout_even / dist_layout_rebuild over a non-empty active set is
 * complete (covers 0..0xffffffff exactly once).
 */
#include "xlators/cluster/distribute/layout.h"

#define SPACE (UINT64_C(1) << 32)

uint32_t dist_hash_name(const char *name, size_t len)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++) {
        h ^= (uint8_t)name[i];
        h *= 16777619u;
    }
    /* murmur3 fmix32 */
    h ^= h >> 16;
    h *= 0x85ebca6bu;
    h ^= h >> 13;
    h *= 0xc2b2ae35u;
    h ^= h >> 16;
    return h;
}

void dist_layout_clear(dist_layout_t *l, int n)
{
    memset(l, 0, sizeof(*l));
    l->n = KB_MIN(KB_MAX(n, 0), DIST_MAX_SETS);
}

static int popcount64(uint64_t m) { return __builtin_popcountll(m); }

static uint64_t mask_of(int n) { return n >= 64 ? ~UINT64_C(0) : (UINT64_C(1) << n) - 1; }

/* Chunk J of K equal chunks: the first SPACE % K chunks are one larger. */
static void chunk(int k, int j, uint64_t *start, uint64_t *stop)
{
    uint64_t base = SPACE / (uint64_t)k, rem = SPACE % (uint64_t)k;
    uint64_t s = (uint64_t)j * base + KB_MIN((uint64_t)j, rem);
    *start = s;
    *stop = s + base + ((uint64_t)j < rem ? 1 : 0) - 1;
}

void dist_layout_even(dist_layout_t *l, int n, uint64_t active, uint32_t epoch)
{
    dist_layout_clear(l, n);
    l->epoch = epoch;
    active &= mask_of(l->n);
    int k = popcount64(active), j = 0;
    for (int i = 0; i < l->n; i++) {
        if (!(active >> i & 1)) {
            l->r[i].state = DIST_RS_EMPTY;
            continue;
        }
        uint64_t s, e;
        chunk(k, j++, &s, &e);
        l->r[i] = (dist_range_t){ .start = (uint32_t)s, .stop = (uint32_t)e, .state = DIST_RS_RANGE };
    }
}

/* Sort key for check: indexes of the ranged sets by start. */
static int ranged_sorted(const dist_layout_t *l, int idx[DIST_MAX_SETS])
{
    int m = 0;
    for (int i = 0; i < l->n; i++) {
        if (l->r[i].state != DIST_RS_RANGE)
            continue;
        int j = m++;
        while (j > 0 && l->r[idx[j - 1]].start > l->r[i].start) {
            idx[j] = idx[j - 1];
            j--;
        }
        idx[j] = i;
    }
    return m;
}

int dist_layout_check(const dist_layout_t *l)
{
    int idx[DIST_MAX_SETS];
    int m = ranged_sorted(l, idx), bad = 0;
    uint64_t next = 0;        /* first hash not yet covered */
    for (int k = 0; k < m; k++) {
        const dist_range_t *r = &l->r[idx[k]];
        if (r->start > r->stop)
            return DIST_LA_HOLES | DIST_LA_OVERLAPS;
        if (r->start > next)
            bad |= DIST_LA_HOLES;
        else if (r->start < next)
            bad |= DIST_LA_OVERLAPS;
        next = KB_MAX(next, (uint64_t)r->stop + 1);
    }
    if (next != SPACE)
        bad |= DIST_LA_HOLES;
    return bad;
}

int dist_layout_search(const dist_layout_t *l, uint32_t hash)
{
    for (int i = 0; i < l->n; i++) {
        const dist_range_t *r = &l->r[i];
        if (r->state == DIST_RS_RANGE && r->start <= hash && hash <= r->stop)
            return i;
    }
    return -1;
}

uint64_t dist_layout_share(const dist_layout_t *l, int i)
{
    if (i < 0 || i >= l->n || l->r[i].state != DIST_RS_RANGE || l->r[i].start > l->r[i].stop)
        return 0;
    return (uint64_t)l->r[i].stop - l->r[i].start + 1;
}

uint64_t dist_layout_stored_mask(const dist_layout_t *l)
{
    uint64_t m = 0;
    for (int i = 0; i < l->n; i++)
        if (l->r[i].state != DIST_RS_NONE)
            m |= UINT64_C(1) << i;
    return m;
}

static uint64_t overlap(const dist_range_t *r, uint64_t s, uint64_t e)
{
    if (r->state != DIST_RS_RANGE || r->start > r->stop)
        return 0;
    uint64_t a = KB_MAX((uint64_t)r->start, s), b = KB_MIN((uint64_t)r->stop, e);
    return a <= b ? b - a + 1 : 0;
}

void dist_layout_rebuild(const dist_layout_t *old, int n, uint64_t active, uint32_t epoch,
                         dist_layout_t *out)
{
    dist_layout_clear(out, n);
    out->epoch = epoch;
    active &= mask_of(out->n);
    int k = popcount64(active);
    uint64_t cs[DIST_MAX_SETS], ce[DIST_MAX_SETS];
    for (int j = 0; j < k; j++)
        chunk(k, j, &cs[j], &ce[j]);
    int owner[DIST_MAX_SETS];           /* chunk -> set, -1 free */
    for (int j = 0; j < k; j++)
        owner[j] = -1;
    uint64_t placed = 0;
    /* Greedy: repeatedly take the (set, chunk) pair of largest overlap. At
     * most 64 x 64 pairs per round and 64 rounds: cheap enough for a
     * once-per-directory operation, and simpler than sorting pairs. */
    for (;;) {
        uint64_t best = 0;
        int bi = -1, bj = -1;
        for (int i = 0; i < out->n && i < old->n; i++) {
            if (!(active >> i & 1) || (placed >> i & 1))
                continue;
            for (int j = 0; j < k; j++) {
                if (owner[j] >= 0)
                    continue;
                uint64_t o = overlap(&old->r[i], cs[j], ce[j]);
                if (o > best) {
                    best = o;
                    bi = i;
                    bj = j;
                }
            }
        }
        if (bi < 0)
            break;
        owner[bj] = bi;
        placed |= UINT64_C(1) << bi;
    }
    /* The rest (new sets, sets whose old range was lost) in index order. */
    int j = 0;
    for (int i = 0; i < out->n; i++) {
        if (!(active >> i & 1) || (placed >> i & 1))
            continue;
        while (owner[j] >= 0)
            j++;
        owner[j] = i;
        placed |= UINT64_C(1) << i;
    }
    for (int i = 0; i < out->n; i++)
        out->r[i].state = DIST_RS_EMPTY;
    for (j = 0; j < k; j++)
        out->r[owner[j]] = (dist_range_t){ .start = (uint32_t)cs[j], .stop = (uint32_t)ce[j],
                                           .state = DIST_RS_RANGE };
}

/* ---------------- on-disk form ---------------- */

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

void dist_layout_encode(const dist_layout_t *l, int i, uint8_t out[KB_LAYOUT_DISK_BYTES])
{
    const dist_range_t *r = &l->r[i];
    bool has = r->state == DIST_RS_RANGE;
    put32(out + 0, DIST_LAYOUT_MAGIC);
    put32(out + 4, DIST_LAYOUT_VERSION);
    put32(out + 8, DIST_HASH_KB1);
    put32(out + 12, has ? 0 : DIST_LF_EMPTY);
    put32(out + 16, has ? r->start : 0);
    put32(out + 20, has ? r->stop : 0);
    put32(out + 24, (uint32_t)l->n);
    put32(out + 28, l->epoch);
}

int dist_layout_decode(dist_layout_t *l, int i, const uint8_t *in, size_t len)
{
    dist_range_t *r = &l->r[i];
    *r = (dist_range_t){ .state = DIST_RS_NONE };
    if (len == 0)
        return 0;
    if (len != KB_LAYOUT_DISK_BYTES || get32(in) != DIST_LAYOUT_MAGIC ||
        get32(in + 4) != DIST_LAYOUT_VERSION || get32(in + 8) != DIST_HASH_KB1)
        return -EINVAL;
    uint32_t flags = get32(in + 12), start = get32(in + 16), stop = get32(in + 20);
    if (!(flags & DIST_LF_EMPTY) && start > stop)
        return -EINVAL;
    if (flags & DIST_LF_EMPTY)
        r->state = DIST_RS_EMPTY;
    else
        *r = (dist_range_t){ .start = start, .stop = stop, .state = DIST_RS_RANGE };
    l->epoch = KB_MAX(l->epoch, get32(in + 28));
    return 0;
}
