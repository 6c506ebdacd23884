/*
 * heal.h — the self-heal interface of cluster/replicate (DESIGN §6).
 *
 * Heal lives inside cluster/replicate (it needs the replica set's children,
 * lock domains and decision functions); kembard's heal daemon is a client
 * graph of one replica set (protocol/client per brick + replicate with
 * option self-heal-daemon on) and drives it through these ctl codes, on
 * the graph's loop thread:
 *
 *   KB_CTL_HEAL_SWEEP   arg NULL. Start (or queue) a sweep of the index of
 *                       every up child; returns at once (0 / -EBUSY never:
 *                       a sweep requested during a sweep runs again after).
 *   KB_CTL_HEAL_FULL    arg NULL. Like SWEEP, and also crawl the whole tree
 *                       from the root comparing every object (heal full).
 *   KB_CTL_HEAL_STATS   arg struct kb_heal_stats *, filled synchronously.
 *   KB_CTL_HEAL_RESOLVE arg struct kb_heal_resolve *: resolve one split-brain
 *                       file by policy or by naming the source child; the
 *                       result arrives through its callback (loop thread).
 *
 * With self-heal-daemon on, replicate also sweeps by itself when a child
 * comes up (a brick returned), and every heal-interval.
 *
 * Replicate options used by the heal daemon graph (volfile keys):
 *   self-heal-daemon  on|off (default off; the mount's replicate has it off)
 *   heal-children     comma list of child indices whose index this daemon
 *                     sweeps (kembard passes the bricks local to its node, so
 *                     two nodes' daemons do not walk the same index); default
 *                     all children
 *   heal-interval     seconds between periodic sweeps (volume key
 *                     cluster.heal-interval, default 60)
 *   heal-parallel     files healed at once (cluster.heal-parallel, default 4)
 */
#ifndef KB_HEAL_H
#define KB_HEAL_H

#include <stdint.h>
#include "lib/gfid.h"

#define KB_CTL_HEAL_SWEEP   10
#define KB_CTL_HEAL_FULL    11
#define KB_CTL_HEAL_STATS   12
#define KB_CTL_HEAL_RESOLVE 13

#define KB_HEAL_MAX_ACTIVE 16
#define KB_HEAL_MAX_SPLIT  256

struct kb_heal_active {
    kb_gfid_t gfid;
    uint64_t bytes_total;    /* bytes this heal plans to copy (dirty regions or differing blocks) */
    uint64_t bytes_done;
};

struct kb_heal_stats {
    uint64_t sweeps;          /* sweeps completed */
    uint64_t healed;          /* objects healed (entry/metadata/data) */
    uint64_t failed;          /* heal attempts that failed (retried next sweep) */
    uint64_t data_bytes_read; /* bytes read from sources by data heal */
    uint64_t data_bytes_written; /* bytes written to sinks by data heal (incl. hole punches: 0) */
    uint64_t checksum_blocks; /* blocks compared by checksum (no region map) */
    uint32_t pending;         /* entries found pending by the last sweep */
    uint32_t nactive;
    struct kb_heal_active active[KB_HEAL_MAX_ACTIVE];
    uint32_t nsplit;          /* objects found in split-brain (not healed) */
    kb_gfid_t split[KB_HEAL_MAX_SPLIT];
};

enum kb_heal_policy { KB_HEAL_POL_SOURCE = 0, KB_HEAL_POL_MTIME, KB_HEAL_POL_SIZE };

struct kb_heal_resolve {
    kb_gfid_t gfid;
    int policy;               /* enum kb_heal_policy */
    int source;               /* child index when policy is SOURCE */
    void (*done)(void *cookie, int status, const char *msg);
    void *cookie;
};

#endif
