/*
 * stats.h — per-brick fop counters and latency histograms (loop thread).
 *
 * Every fop a brick serves is counted by op with its latency in a log2
 * histogram of microseconds: bucket b holds latencies in [2^(b-1), 2^b) us
 * (bucket 0: < 1 us), the last bucket everything above. 24 buckets reach
 * ~8 s. Percentiles are read off the histogram (upper bucket bound), which is
 * what `volume profile` and the Prometheus endpoint report.
 */
#ifndef KB_SERVER_STATS_H
#define KB_SERVER_STATS_H

#include <stdint.h>
#include "xlators/fop.h"

#define KBD_LAT_BUCKETS 24

typedef struct kbd_fop_stats {
    uint64_t count, errors;
    uint64_t lat_sum_us;
    uint64_t lat[KBD_LAT_BUCKETS];
} kbd_fop_stats_t;

typedef struct kbd_stats {
    kbd_fop_stats_t fop[KB_FOP_MAX];
    uint64_t bytes_read, bytes_written;
    uint64_t since_ms;           /* when counting started (brick start) */
} kbd_stats_t;

void kbd_stats_record(kbd_stats_t *s, kb_op_t op, int status, uint64_t lat_ns, uint64_t bytes);
/* Latency (us, upper bound of the bucket) below which fraction Q of the calls fell. */
uint64_t kbd_stats_percentile(const kbd_fop_stats_t *f, double q);
/* Upper bound (us) of bucket b; UINT64_MAX for the last. */
uint64_t kbd_stats_bucket_le(int b);

#endif
