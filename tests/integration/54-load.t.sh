#!/usr/bin/env bash
# 54-load — many clients at once (issue 8): 8 FUSE clients (8 kembar-fuse mounts of one replica 2
# volume) x 4 fio threads of random 4 KiB O_DIRECT reads and writes (queue depth 1 each), for 20 s
# (KB_LONG=1: 120 s). Promised: no I/O error; no single I/O slower than KB_LOAD_MAX_LAT_MS (default
# 1000 ms: the VM's disk must never look stuck; 2 CPUs run 2 daemons, 8 clients and 32 threads
# here); every kembard's resident memory after the load within 64 MiB of before (no leak that
# grows with I/O). Prints per client IOPS, latency p99 and max, and each daemon's RSS before/after.
# kb-requires: fuse
set -eu
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source=tests/integration/netns.sh
. "$(dirname "$0")/netns.sh"

CLIENTS=8
THREADS=4
RUNTIME=20
[ "$KB_LONG" = 1 ] && RUNTIME=120
MAX_LAT_MS=${KB_LOAD_MAX_LAT_MS:-1000}
RSS_GROWTH_KB=$((64 * 1024))

nn_init
nn_start 1; nn_start 2
B1=$(kb_brick_path 1 load); B2=$(kb_brick_path 2 load)
nn_cli 1 volume create load replica 2 "$(nn_brick 1 "$B1")" "$(nn_brick 2 "$B2")" force >&2
nn_cli 1 volume start load >&2
kb_wait_until 15 nn_bricks_online 1 load "$B1" "$B2" || kb_fail "bricks of load not online"
for c in $(seq 1 $CLIENTS); do
    nn_mount load "$KB_TMP/mnt$c" "" 1 2
    mkdir -p "$KB_TMP/mnt$c/c$c"
done

# fio_job C SECS MODE: one client's 4 threads; JSON into $KB_TMP/fio-C.json.
fio_job() {
    local c=$1 secs=$2
    kb_t $((secs + 120)) fio --name="c$c" --directory="$KB_TMP/mnt$c/c$c" --numjobs=$THREADS \
        --rw=randrw --rwmixread=50 --bs=4k --size=4M --ioengine=psync --iodepth=1 --direct=1 \
        --time_based --runtime="$secs" --randrepeat=0 --group_reporting --output-format=json \
        --output="$KB_TMP/fio-$c.json" >"$KB_TMP/fio-$c.out" 2>&1
}

rss_all() { local n; for n in 1 2; do echo "$n $(nn_rss_kb "$n")"; done; }

load() {
    local c rc=0 pids=() before after
    # Warm-up: lay the files out and touch every code path once, so "before" is a steady state.
    for c in $(seq 1 $CLIENTS); do fio_job "$c" 2 & pids+=($!); done
    for c in "${pids[@]}"; do wait "$c" || rc=1; done
    [ "$rc" -eq 0 ] || kb_fail "warm-up fio failed: $(cat "$KB_TMP"/fio-*.out | head -20)"
    sleep 1
    before=$(rss_all)
    kb_log "RSS before (KiB): $(tr '\n' ' ' <<<"$before")"
    pids=()
    for c in $(seq 1 $CLIENTS); do fio_job "$c" "$RUNTIME" & pids+=($!); done
    for c in "${pids[@]}"; do wait "$c" || rc=1; done
    sleep 2
    after=$(rss_all)
    kb_log "RSS after  (KiB): $(tr '\n' ' ' <<<"$after")"
    [ "$rc" -eq 0 ] || kb_fail "fio reported an error: $(grep -h -i 'err' "$KB_TMP"/fio-*.out | head -10)"
    # Per client: errors, IOPS, p99 and max completion latency (ms).
    local summary
    summary=$("$KB_PY" - "$KB_TMP" "$CLIENTS" <<'EOF'
import json, sys
root, n = sys.argv[1], int(sys.argv[2])
worst, errors, iops = 0.0, 0, 0.0
for c in range(1, n + 1):
    j = json.load(open("%s/fio-%d.json" % (root, c)))["jobs"][0]
    e = j.get("error", 0)
    mx = max(j[d]["clat_ns"]["max"] for d in ("read", "write")) / 1e6
    p99 = max(j[d]["clat_ns"].get("percentile", {}).get("99.000000", 0) for d in ("read", "write")) / 1e6
    io = j["read"]["iops"] + j["write"]["iops"]
    print("client %d: %.0f IOPS, p99 %.1f ms, max %.1f ms, error %d" % (c, io, p99, mx, e), file=sys.stderr)
    worst, errors, iops = max(worst, mx), errors + (e != 0), iops + io
print("%d %d %.0f" % (round(worst), errors, iops))
EOF
)
    local worst errors iops
    read -r worst errors iops <<<"$summary"
    kb_log "total $iops IOPS over $CLIENTS clients x $THREADS threads, worst latency ${worst} ms (bound ${MAX_LAT_MS} ms)"
    kb_assert_eq 0 "$errors" "clients whose fio reported an error"
    kb_assert_le "$worst" "$MAX_LAT_MS" "worst single I/O latency (ms)"
    local n b a
    for n in 1 2; do
        b=$(awk -v n="$n" '$1 == n {print $2}' <<<"$before")
        a=$(awk -v n="$n" '$1 == n {print $2}' <<<"$after")
        kb_log "node $n kembard RSS: $b KiB -> $a KiB ($(( (a - b) / 1024 )) MiB)"
        kb_assert_le "$a" $((b + RSS_GROWTH_KB)) "node $n RSS after the load (KiB), before was $b"
    done
    nn_assert_no_crash
}

kb_section "8 clients x 4 threads of random 4 KiB I/O" load
kb_done
