/*
 * stats.c — per-brick fop statistics (see stats.h).
 */
#include "server/stats.h"

static int bucket_of(uint64_t us)
{
    int b = 0;
    while (us && b < KBD_LAT_BUCKETS - 1) {
        us >>= 1;
        b++;
    }
    return b;
}

uint64_t kbd_stats_bucket_le(int b)
{
    return b >= KBD_LAT_BUCKETS - 1 ? UINT64_MAX : (1ull << b);
}

void kbd_stats_record(kbd_stats_t *s, kb_op_t op, int status, uint64_t lat_ns, uint64_t bytes)
{
    if ((unsigned)op >= KB_FOP_MAX)
        return;
    kbd_fop_stats_t *f = &s->fop[op];
    uint64_t us = lat_ns / 1000;
    f->count++;
    f->errors += status < 0;
    f->lat_sum_us += us;
    f->lat[bucket_of(us)]++;
    if (status > 0 && op == KB_FOP_READ)
        s->bytes_read += bytes;
    else if (status > 0 && op == KB_FOP_WRITE)
        s->bytes_written += bytes;
}

uint64_t kbd_stats_percentile(const kbd_fop_stats_t *f, double q)
{
    if (!f->count)
        return 0;
    uint64_t want = (uint64_t)((double)f->count * q + 0.999999), seen = 0;
    if (want == 0)
        want = 1;
    for (int b = 0; b < KBD_LAT_BUCKETS; b++) {
        seen += f->lat[b];
        if (seen >= want)
            return b == KBD_LAT_BUCKETS - 1 ? (1ull << (KBD_LAT_BUCKETS - 1)) : kbd_stats_bucket_le(b);
    }
    return kbd_stats_bucket_le(KBD_LAT_BUCKETS - 2);
}
