#!/usr/bin/env bash
# 70-ops — what an operator reads (issue 9): `volume status NAME detail` and its JSON (disk,
# inodes, clients, heal backlog), `volume profile` / `volume top` after real I/O (per-fop calls
# and latency), the Prometheus endpoint of kembard (--metrics), SIGHUP reopening the log after
# logrotate moved it, and one-line errors for a port in use and a second start.
# kb-requires: root
set -eu
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"

MPORT=$(( $(kb_port 1) + 50 ))
kb_node_start 1 --metrics "127.0.0.1:$MPORT"
kb_node_start 2
mapfile -t BR < <(kb_volume_up ops 1 2)
M=$KB_TMP/mnt
kb_mount ops "$M"
dd if=/dev/urandom of="$M/img" bs=64k count=64 conv=fsync status=none
cat "$M/img" >/dev/null

status_detail() {
    local out
    out=$(kb_cli 1 volume status ops detail)
    kb_assert_match 'Total Disk Space' "$out" "status detail shows disk space"
    kb_assert_match 'Connected Clients +: [1-9]' "$out" "status detail counts the mount"
    kb_assert_match 'Heal Pending +: 0' "$out" "status detail shows the heal backlog"
    out=$(kb_cli_json 1 volume status ops)
    "$KB_PY" - "$out" <<'PY'
import json, sys
v = json.loads(sys.argv[1])[0]
assert v["volume"] == "ops", v
for b in v["bricks"]:
    assert b["online"] is True and b["pid"] > 0, b
    assert b["disk_total"] > b["disk_free"] > 0, b
    assert b["inodes"] > 0 and b["clients"] >= 1 and b["heal_pending"] == 0, b
PY
}

profile() {
    local out
    out=$(kb_cli 1 volume profile ops)
    kb_assert_match 'write +[0-9]+' "$out" "profile lists WRITE calls"
    out=$(kb_cli_json 1 volume profile ops)
    "$KB_PY" - "$out" <<'PY'
import json, sys
p = json.loads(sys.argv[1])
assert len(p["bricks"]) == 2, p
for b in p["bricks"]:
    w = [f for f in b["fops"] if f["fop"] == "write"]
    assert w and w[0]["calls"] >= 64, b          # 4 MiB in 64 KiB writes, on both replicas
    assert w[0]["p99_us"] >= w[0]["p50_us"] > 0, w
    assert b["bytes_written"] >= 4 * 1024 * 1024, b
PY
    out=$(kb_cli 1 volume top ops)
    kb_assert_match 'write' "$out" "top lists write"
    kb_cli 1 volume profile ops clear >/dev/null
    out=$(kb_cli_json 1 volume profile ops)
    "$KB_PY" -c 'import json,sys; p=json.loads(sys.argv[1]); assert all(not [f for f in b["fops"] if f["fop"]=="write"] for b in p["bricks"]), p' "$out"
}

metrics() {
    local out
    dd if=/dev/urandom of="$M/img2" bs=64k count=8 conv=fsync status=none
    out=$("$KB_PY" -c 'import urllib.request,sys; print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())' \
          "http://127.0.0.1:$MPORT/metrics")
    kb_assert_match 'kembar_up 1' "$out" "metrics: up"
    kb_assert_match 'kembar_brick_online\{volume="ops",brick="[^"]+"\} 1' "$out" "metrics: brick online"
    kb_assert_match 'kembar_fop_total\{volume="ops",brick="[^"]+",op="write"\} [1-9]' "$out" "metrics: write count"
    kb_assert_match 'kembar_fop_latency_seconds_bucket\{.*op="write",le="\+Inf"\}' "$out" "metrics: histogram"
    kb_assert_match 'kembar_written_bytes_total\{volume="ops"' "$out" "metrics: bytes"
}

logrotate() {
    local log pid
    log=$(kb_node_log 1)
    pid=$(kb_node_pid 1)
    mv "$log" "$log.1"
    kill -HUP "$pid"
    kb_cli 1 volume status ops >/dev/null
    kb_wait_until 5 test -s "$log" || kb_fail "kembard did not reopen its log after SIGHUP"
}

errors() {
    KB_EXPECT_RE='already in use' kb_expect_fail 10 "second kembard on a used port" \
        "$KB_BIN/kembard" --listen "$(kb_addr 1)" --state-dir "$KB_TMP/other-state"
    KB_EXPECT_RE='already started' kb_expect_fail 10 "start of a started volume" \
        "$KB_BIN/kembar" --server "$(kb_addr 1)" volume start ops
    KB_EXPECT_RE='does not exist' kb_expect_fail 10 "status of an unknown volume" \
        "$KB_BIN/kembar" --server "$(kb_addr 1)" volume status nosuch
    KB_EXPECT_RE='whole replica sets|do not make' kb_expect_fail 10 "wrong replica count" \
        "$KB_BIN/kembar" --server "$(kb_addr 1)" volume create odd replica 2 "$(kb_brick 1 "$KB_TMP/x1")" \
        "$(kb_brick 2 "$KB_TMP/x2")" "$(kb_brick 1 "$KB_TMP/x3")" force
    KB_EXPECT_RE='already used|belongs|another volume|already' kb_expect_fail 10 "brick of another volume" \
        "$KB_BIN/kembar" --server "$(kb_addr 1)" volume create thief "$(kb_brick 1 "${BR[0]}")" force
    kb_assert_eq ops "$(kb_cli 1 volume list)" "nothing half-created"
}

kb_section "status detail and JSON" status_detail
kb_section "profile and top" profile
kb_section "Prometheus metrics" metrics
kb_section "SIGHUP reopens the log" logrotate
kb_section "one-line errors" errors
kb_umount "$M"
kb_done
