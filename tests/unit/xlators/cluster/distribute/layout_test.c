/*
 * layout_test.c — distribute's name hash and layout arithmetic:
 * hash stability (on-disk relevant), exact coverage, no overlaps, search,
 * spread of names, re-layout that keeps names in place, the on-disk form.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include "xlators/cluster/distribute/layout.h"

#define ALL(n) ((n) >= 64 ? ~UINT64_C(0) : (UINT64_C(1) << (n)) - 1)

/* Frozen values: changing the hash moves files between sets on every
 * existing volume. These were computed by an independent implementation. */
Test(dist_layout, hash_is_stable)
{
    cr_assert_eq(dist_hash_str(""), 0xab3e7c0bu);
    cr_assert_eq(dist_hash_str("a"), 0x1a80b1b3u);
    cr_assert_eq(dist_hash_str("b"), 0x82c46232u);
    cr_assert_eq(dist_hash_str("vm-100-disk-0.qcow2"), 0xbd8b7579u);
    cr_assert_eq(dist_hash_str("file-0001"), 0x877ad02bu);
    char x[256];
    memset(x, 'x', 255);
    x[255] = 0;
    cr_assert_eq(dist_hash_name(x, 255), 0x15b66caau);
    /* the length counts, not a NUL */
    cr_assert_eq(dist_hash_name("ab", 1), dist_hash_str("a"));
}

/* Each output bit flips for about half of single-bit input changes. */
Test(dist_layout, hash_avalanche)
{
    int flips[32] = { 0 }, trials = 0;
    for (int n = 0; n < 200; n++) {
        char name[32];
        int len = snprintf(name, sizeof(name), "name-%d", n);
        uint32_t h0 = dist_hash_name(name, (size_t)len);
        for (int bit = 0; bit < len * 8; bit++) {
            name[bit / 8] ^= (char)(1 << (bit % 8));
            uint32_t d = h0 ^ dist_hash_name(name, (size_t)len);
            name[bit / 8] ^= (char)(1 << (bit % 8));
            for (int o = 0; o < 32; o++)
                flips[o] += (int)(d >> o & 1);
            trials++;
        }
    }
    for (int o = 0; o < 32; o++) {
        double f = (double)flips[o] / trials;
        cr_assert(f > 0.45 && f < 0.55, "output bit %d flips %.3f of the time", o, f);
    }
}

static void assert_complete(const dist_layout_t *l, const char *what)
{
    cr_assert_eq(dist_layout_check(l), 0, "%s: anomalies %d", what, dist_layout_check(l));
    uint64_t sum = 0;
    for (int i = 0; i < l->n; i++)
        sum += dist_layout_share(l, i);
    cr_assert_eq(sum, UINT64_C(1) << 32, "%s: shares sum to %llu", what, (unsigned long long)sum);
}

Test(dist_layout, even_covers_exactly_for_every_count)
{
    for (int n = 1; n <= DIST_MAX_SETS; n++) {
        dist_layout_t l;
        dist_layout_even(&l, n, ALL(n), 1);
        char what[32];
        snprintf(what, sizeof(what), "n=%d", n);
        assert_complete(&l, what);
        uint64_t lo = ~UINT64_C(0), hi = 0;
        for (int i = 0; i < n; i++) {
            lo = KB_MIN(lo, dist_layout_share(&l, i));
            hi = KB_MAX(hi, dist_layout_share(&l, i));
        }
        cr_assert_leq(hi - lo, 1, "n=%d: shares differ by %llu", n, (unsigned long long)(hi - lo));
        /* the ends of the space belong to someone */
        cr_assert_geq(dist_layout_search(&l, 0), 0);
        cr_assert_geq(dist_layout_search(&l, 0xffffffffu), 0);
    }
}

Test(dist_layout, even_skips_inactive_sets)
{
    dist_layout_t l;
    dist_layout_even(&l, 4, 0x5, 3);   /* sets 0 and 2 */
    assert_complete(&l, "0x5");
    cr_assert_eq(l.r[1].state, DIST_RS_EMPTY);
    cr_assert_eq(l.r[3].state, DIST_RS_EMPTY);
    cr_assert_eq(dist_layout_share(&l, 0), UINT64_C(1) << 31);
    cr_assert_eq(dist_layout_share(&l, 2), UINT64_C(1) << 31);
    cr_assert_eq(dist_layout_search(&l, 0x7fffffffu), 0);
    cr_assert_eq(dist_layout_search(&l, 0x80000000u), 2);
}

Test(dist_layout, check_finds_holes_and_overlaps)
{
    dist_layout_t l;
    dist_layout_even(&l, 3, ALL(3), 1);
    l.r[1].stop--;
    cr_assert_eq(dist_layout_check(&l), DIST_LA_HOLES);
    cr_assert_eq(dist_layout_search(&l, l.r[1].stop + 1), -1);
    l.r[1].stop += 2;
    cr_assert_eq(dist_layout_check(&l), DIST_LA_OVERLAPS);
    dist_layout_even(&l, 3, ALL(3), 1);
    l.r[2].state = DIST_RS_NONE;          /* the last range unknown */
    cr_assert_eq(dist_layout_check(&l), DIST_LA_HOLES);
    dist_layout_clear(&l, 2);
    cr_assert_eq(dist_layout_check(&l), DIST_LA_HOLES);
    cr_assert_eq(dist_layout_search(&l, 12345), -1);
    /* one set holding everything is complete */
    l.r[1] = (dist_range_t){ 0, 0xffffffffu, DIST_RS_RANGE };
    cr_assert_eq(dist_layout_check(&l), 0);
    cr_assert_eq(dist_layout_search(&l, 12345), 1);
}

static int set_of(const dist_layout_t *l, int k)
{
    char name[32];
    snprintf(name, sizeof(name), "file-%04d.img", k);
    return dist_layout_search(l, dist_hash_str(name));
}

Test(dist_layout, thousand_names_spread_over_two_sets)
{
    dist_layout_t l;
    dist_layout_even(&l, 2, ALL(2), 1);
    int count[2] = { 0 };
    for (int k = 0; k < 1000; k++) {
        int s = set_of(&l, k);
        cr_assert(s == 0 || s == 1);
        count[s]++;
    }
    cr_assert(count[0] >= 350 && count[0] <= 650, "set 0 holds %d of 1000", count[0]);
    /* and over four sets, each within 15%..35% */
    dist_layout_even(&l, 4, ALL(4), 1);
    int c4[4] = { 0 };
    for (int k = 0; k < 1000; k++)
        c4[set_of(&l, k)]++;
    for (int i = 0; i < 4; i++)
        cr_assert(c4[i] >= 150 && c4[i] <= 350, "set %d holds %d of 1000", i, c4[i]);
}

/* Fraction of 10,000 names whose set differs between A and B; also checks
 * that a name whose hash stays inside its set's new range did not move. */
static double moved(const dist_layout_t *a, const dist_layout_t *b)
{
    int m = 0;
    for (int k = 0; k < 10000; k++) {
        char name[32];
        snprintf(name, sizeof(name), "n%d", k);
        uint32_t h = dist_hash_str(name);
        int sa = dist_layout_search(a, h), sb = dist_layout_search(b, h);
        if (sa != sb)
            m++;
        if (sa >= 0 && sa < b->n && b->r[sa].state == DIST_RS_RANGE && b->r[sa].start <= h &&
            h <= b->r[sa].stop)
            cr_assert_eq(sa, sb);
    }
    return m / 10000.0;
}

Test(dist_layout, rebuild_of_a_good_layout_changes_nothing)
{
    dist_layout_t a, b;
    dist_layout_even(&a, 3, ALL(3), 1);
    /* a permuted but even layout: set 2 first */
    dist_layout_t p = a;
    p.r[0] = a.r[2];
    p.r[2] = a.r[0];
    dist_layout_rebuild(&p, 3, ALL(3), 2, &b);
    assert_complete(&b, "rebuild permuted");
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(b.r[i].start, p.r[i].start, "set %d", i);
        cr_assert_eq(b.r[i].stop, p.r[i].stop, "set %d", i);
    }
    cr_assert_eq(b.epoch, 2);
    cr_assert_eq(moved(&p, &b), 0.0);
}

Test(dist_layout, rebuild_after_adding_sets_moves_little)
{
    struct { int from, to; double max; } c[] = {
        { 1, 2, 0.55 },   /* minimum 1/2 */
        { 2, 3, 0.37 },   /* minimum 1/3 */
        { 2, 4, 0.55 },   /* minimum 1/2 */
        { 3, 4, 0.37 },   /* minimum 1/4; contiguous equal ranges: 1/3 */
        { 4, 5, 0.37 },
        { 8, 9, 0.30 },
    };
    for (size_t t = 0; t < KB_ARRAY_SIZE(c); t++) {
        dist_layout_t a, b;
        dist_layout_even(&a, c[t].from, ALL(c[t].from), 1);
        a.n = c[t].to;                        /* the new sets have no range yet */
        for (int i = c[t].from; i < c[t].to; i++)
            a.r[i].state = DIST_RS_NONE;
        dist_layout_rebuild(&a, c[t].to, ALL(c[t].to), 2, &b);
        char what[32];
        snprintf(what, sizeof(what), "%d->%d", c[t].from, c[t].to);
        assert_complete(&b, what);
        double m = moved(&a, &b);
        double min = 1.0 - (double)c[t].from / c[t].to;
        cr_assert(m >= min - 0.03 && m <= c[t].max, "%s moved %.3f (bound %.2f)", what, m, c[t].max);
        for (int i = 0; i < c[t].to; i++)
            cr_assert_gt(dist_layout_share(&b, i), 0, "%s: set %d got nothing", what, i);
    }
}

Test(dist_layout, rebuild_draining_a_set_moves_only_its_names)
{
    dist_layout_t a, b;
    dist_layout_even(&a, 3, ALL(3), 1);
    dist_layout_rebuild(&a, 3, 0x5, 2, &b);     /* drain set 1 */
    assert_complete(&b, "drain");
    cr_assert_eq(b.r[1].state, DIST_RS_EMPTY);
    for (int k = 0; k < 10000; k++) {
        char name[32];
        snprintf(name, sizeof(name), "n%d", k);
        uint32_t h = dist_hash_str(name);
        int sa = dist_layout_search(&a, h), sb = dist_layout_search(&b, h);
        if (sa != 1)
            cr_assert_eq(sa, sb, "%s moved from %d to %d", name, sa, sb);
        else
            cr_assert_neq(sb, 1);
    }
}

Test(dist_layout, rebuild_heals_holes_and_overlaps)
{
    dist_layout_t a, b;
    dist_layout_even(&a, 4, ALL(4), 1);
    a.r[1].state = DIST_RS_NONE;                  /* lost */
    a.r[3].start -= 1000;                         /* overlaps set 2 */
    cr_assert_neq(dist_layout_check(&a), 0);
    dist_layout_rebuild(&a, 4, ALL(4), 2, &b);
    assert_complete(&b, "heal");
    /* sets 0 and 2 keep exactly their old ranges */
    cr_assert_eq(b.r[0].start, a.r[0].start);
    cr_assert_eq(b.r[0].stop, a.r[0].stop);
    cr_assert_eq(b.r[2].start, a.r[2].start);
    cr_assert_eq(b.r[2].stop, a.r[2].stop);
    /* nothing at all: the even layout */
    dist_layout_t none, even;
    dist_layout_clear(&none, 5);
    dist_layout_rebuild(&none, 5, ALL(5), 1, &b);
    dist_layout_even(&even, 5, ALL(5), 1);
    cr_assert_eq(memcmp(&b, &even, sizeof(b)), 0);
}

Test(dist_layout, disk_round_trip_and_rejects)
{
    dist_layout_t a, b;
    dist_layout_even(&a, 3, 0x3, 7);     /* set 2 EMPTY */
    dist_layout_clear(&b, 3);
    for (int i = 0; i < 3; i++) {
        uint8_t d[KB_LAYOUT_DISK_BYTES];
        dist_layout_encode(&a, i, d);
        cr_assert_eq(d[0], 'K');
        cr_assert_eq(d[3], 'Y');
        cr_assert_eq(d[27], 3, "nsets");
        cr_assert_eq(d[31], 7, "epoch");
        cr_assert_eq(dist_layout_decode(&b, i, d, sizeof(d)), 0);
    }
    cr_assert_eq(b.epoch, 7);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(b.r[i].state, a.r[i].state);
        cr_assert_eq(b.r[i].start, a.r[i].start);
        cr_assert_eq(b.r[i].stop, a.r[i].stop);
    }
    /* big-endian start of set 1 = 0x80000000 */
    uint8_t d[KB_LAYOUT_DISK_BYTES];
    dist_layout_encode(&a, 1, d);
    cr_assert_eq(d[16], 0x80);
    cr_assert_eq(d[19], 0x00);
    cr_assert_eq(d[20], 0xff);
    /* absent = NONE; bad ones rejected and left NONE */
    cr_assert_eq(dist_layout_decode(&b, 0, NULL, 0), 0);
    cr_assert_eq(b.r[0].state, DIST_RS_NONE);
    uint8_t bad[KB_LAYOUT_DISK_BYTES];
    memcpy(bad, d, sizeof(bad));
    bad[0] ^= 1;
    cr_assert_eq(dist_layout_decode(&b, 1, bad, sizeof(bad)), -EINVAL);
    cr_assert_eq(b.r[1].state, DIST_RS_NONE);
    memcpy(bad, d, sizeof(bad));
    bad[7] = 2;                          /* version */
    cr_assert_eq(dist_layout_decode(&b, 1, bad, sizeof(bad)), -EINVAL);
    memcpy(bad, d, sizeof(bad));
    bad[11] = 9;                         /* hash type */
    cr_assert_eq(dist_layout_decode(&b, 1, bad, sizeof(bad)), -EINVAL);
    cr_assert_eq(dist_layout_decode(&b, 1, d, sizeof(d) - 1), -EINVAL);
    memcpy(bad, d, sizeof(bad));
    bad[16] = 0xff;                      /* start > stop */
    bad[20] = 0x00;
    cr_assert_eq(dist_layout_decode(&b, 1, bad, sizeof(bad)), -EINVAL);
}
