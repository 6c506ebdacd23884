#!/usr/bin/env bash
# 56-rebalance — add-brick + rebalance and remove-brick, online, under a writer (issue 6, DESIGN §7).
#
# A 1x2 volume (two nodes) and a mount; 200 files in a few directories plus four 8 MiB ones, each
# with a known sha256; two writers append 64 KiB records (fsync'd) to vm.img and vm-100-disk-0.raw
# through the mount and read each one back (with today's hash the first moves in the add-brick
# rebalance, the second stays on the first set). Then, while they write:
#   - add-brick of a second pair: the mount switches graphs by itself; `rebalance start`; status
#     polled until completed (throughput printed); every file reads back right through the mount,
#     is on exactly one set and byte-identical on both bricks of it, both sets hold files; a second
#     `rebalance start` moves nothing (every file is on its hashed set);
#   - remove-brick of the set that now holds vm-100-disk-0.raw (so that open, growing file is surely
#     migrated under its writer; when that is the first set, the bricks of the other are renumbered
#     and must keep running): start, status until completed, commit; the removed bricks are gone
#     from `volume info` and hold no file; every file reads back right.
# The writers then stop: they saw no error and no wrong read-back, and each file holds exactly what
# was written, on both remaining bricks and through the mount.
# kb-requires: fuse
set -eu
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"

kb_node_start 1
kb_node_start 2
PY=$KB_TMP/rb.py
MAN=$KB_TMP/manifest.json
cat >"$PY" <<'EOF'
"""Helpers of 56-rebalance; each command exits non-zero with the reason on a failure."""
import hashlib, json, os, random, stat, sys, time

def die(m): raise SystemExit("FAIL: " + m)
def sha(b): return hashlib.sha256(b).hexdigest()
def readf(p):
    with open(p, "rb") as f: return f.read()
def record(i): return hashlib.sha256(b"record %d" % i).digest() * 2048     # 64 KiB

def files(mnt, man):
    rnd, out = random.Random(56), {}
    for d in ("", "a", "b", "b/c", "d"):
        os.makedirs(os.path.join(mnt, d), exist_ok=True)
    for i in range(200):
        rel = os.path.join(("", "a", "b", "b/c", "d")[i % 5], "f%03d" % i)
        data = rnd.randbytes(rnd.randrange(1, 256 << 10))
        with open(os.path.join(mnt, rel), "wb") as f: f.write(data)
        out[rel] = sha(data)
    for i in range(4):
        rel = "d/big%d" % i
        data = rnd.randbytes(8 << 20)
        with open(os.path.join(mnt, rel), "wb") as f: f.write(data)
        out[rel] = sha(data)
    with open(man, "w") as f: json.dump(out, f)

def check_mount(mnt, man):
    want = json.load(open(man))
    for rel, h in want.items():
        got = sha(readf(os.path.join(mnt, rel)))
        if got != h: die("%s through the mount: sha256 %s, want %s" % (rel, got[:12], h[:12]))
    print("%d files read back right through the mount" % len(want), file=sys.stderr)

def scan(brick):
    out = {}
    for d, dirs, fs in os.walk(brick):
        if d == brick and ".kembar" in dirs: dirs.remove(".kembar")
        for n in fs:
            p = os.path.join(d, n)
            if not stat.S_ISREG(os.lstat(p).st_mode): die("%s is not a regular file" % p)
            out[os.path.relpath(p, brick)] = p
    return out

def placement(man, skips, *bricks):
    """Sets are consecutive pairs of BRICKS. Every file of the manifest on exactly one set,
    identical (and right) on both its bricks; nothing else on any brick but SKIP; prints the
    count per set."""
    want = json.load(open(man))
    sets = [(bricks[i], bricks[i + 1]) for i in range(0, len(bricks), 2)]
    held = [0] * len(sets)
    scans = [(scan(a), scan(b)) for a, b in sets]
    for s, (x, y) in enumerate(scans):
        if set(x) != set(y): die("set %d: its bricks hold different names: %s" % (s, sorted(set(x) ^ set(y))[:5]))
        for rel in x:
            if rel not in skips.split(",") and rel not in want: die("set %d holds %s, which nobody wrote" % (s, rel))
    for rel, h in want.items():
        on = [s for s, (x, _) in enumerate(scans) if rel in x]
        if len(on) != 1: die("%s is on sets %s, want exactly one" % (rel, on))
        a, b = scans[on[0]][0][rel], scans[on[0]][1][rel]
        for p in (a, b):
            if sha(readf(p)) != h: die("%s: wrong content" % p)
        held[on[0]] += 1
    print(" ".join(str(n) for n in held))

def writer(path, stop, out):
    # One descriptor for writes and read-backs, as a VM's disk: a descriptor that only reads keeps
    # reading the copy it opened after that file migrated (known limits in
    # xlators/cluster/distribute/migrate.c).
    fd = rfd = os.open(path, os.O_CREAT | os.O_RDWR | os.O_APPEND, 0o644)
    n, errors, first, t0 = 0, 0, "", time.time()
    while not os.path.exists(stop):
        rec = record(n)
        try:
            if os.write(fd, rec) != len(rec): raise OSError(0, "short write")
            os.fsync(fd)
            if os.pread(rfd, len(rec), n * len(rec)) != rec: raise OSError(0, "read-back of record %d differs" % n)
            n += 1
        except OSError as e:
            errors += 1
            first = first or "record %d: %s" % (n, e)
            if errors > 20: break
            time.sleep(0.1)
        time.sleep(max(0.0, t0 + n / 25.0 - time.time()))     # ~25 records (1.6 MiB) a second
    os.close(fd)
    with open(out, "w") as f: f.write("records=%d errors=%d first_error=%s\n" % (n, errors, first or "-"))

def check_writer(path, n):
    data = readf(path)
    if len(data) != n * 65536: die("%s: %d bytes, want %d records = %d" % (path, len(data), n, n * 65536))
    for i in range(n):
        if data[i * 65536:(i + 1) * 65536] != record(i): die("%s: record %d differs" % (path, i))

cmd = sys.argv[1]
if cmd == "files": files(*sys.argv[2:])
elif cmd == "check-mount": check_mount(*sys.argv[2:])
elif cmd == "placement": placement(*sys.argv[2:])
elif cmd == "writer": writer(*sys.argv[2:])
elif cmd == "check-writer": check_writer(sys.argv[2], int(sys.argv[3]))
else: die("unknown command " + cmd)
EOF

mapfile -t BA < <(kb_volume_up rb 1 2)
MNT=$KB_TMP/m-rb
kb_mount rb "$MNT"
kb_t 120 "$KB_PY" "$PY" files "$MNT" "$MAN"
kb_log "204 files written ($(du -sm "${BA[0]}" | cut -f1) MiB on a brick)"

STOP=$KB_TMP/writer.stop
W1=vm.img
W2=vm-100-disk-0.raw
"$KB_PY" "$PY" writer "$MNT/$W1" "$STOP" "$KB_TMP/w1.out" 2>"$KB_TMP/w1.err" &
WPID1=$!
"$KB_PY" "$PY" writer "$MNT/$W2" "$STOP" "$KB_TMP/w2.out" 2>"$KB_TMP/w2.err" &
WPID2=$!
sleep 2

# rebalance_done: the last `rebalance status` is over (not running); its JSON in $KB_TMP/rs.json.
rebalance_done() {
    kb_cli_json 1 volume rebalance rb status >"$KB_TMP/rs.json" || return 1
    ! grep -q '"status":"running"' "$KB_TMP/rs.json"
}
rs() {  # rs KEY: a total of the last status (or the overall status for KEY=status)
    "$KB_PY" -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$KB_TMP/rs.json" "$1"
}
wait_rebalance() {  # wait_rebalance WHAT: until completed, at most 60 s
    kb_wait_until 60 rebalance_done || { kb_cli 1 volume rebalance rb status >&2; kb_fail "$1 still running after 60 s"; }
    kb_cli 1 volume rebalance rb status >&2
    [ "$(rs status)" = completed ] || kb_fail "$1 ended $(rs status): $(cat "$KB_TMP/rs.json")"
    kb_assert_eq 0 "$(rs failures)" "$1: failures"
}

same_pairs() {  # same_pairs BRICK...: both bricks of each pair hold the same tree (writers' files aside)
    local -a b=("$@")
    local i x y
    for ((i = 0; i < ${#b[@]}; i += 2)); do
        x=$(kb_tree_sig "${b[i]}" | grep -v -e "^$W1 " -e "^$W2 ") || return 1
        y=$(kb_tree_sig "${b[i + 1]}" | grep -v -e "^$W1 " -e "^$W2 ") || return 1
        [ "$x" = "$y" ] || return 1
    done
}
# pairs_converge BRICK...: after a placement failure, tell a pending heal from a lost copy: print
# heal info, then wait (70 s: over cluster.heal-interval) until both bricks of each set (consecutive
# pairs) hold the same tree, the writers' files left out. The caller fails either way: a rebalance
# must leave every file it moved on every brick of its new set (it waits for every brick).
pairs_converge() {
    local t0=$SECONDS
    kb_cli 1 volume heal rb info >&2 || true
    if kb_wait_until 70 same_pairs "$@"; then
        kb_log "the bricks of each set converged $((SECONDS - t0)) s later: a copy left to heal"
    else
        kb_log "the bricks of a set still differ after 70 s: a copy lost, not pending heal"
    fi
}

grow() {
    local p1 p2 t0 secs
    p1=$(kb_brick_path 1 rb)
    p2=$(kb_brick_path 2 rb)
    BB=("$p1" "$p2")
    printf '%s\n' "$p1" "$p2" >"$KB_TMP/bb"     # sections are subshells: the next one reads it
    kb_cli 1 volume add-brick rb "$(kb_brick 1 "$p1")" "$(kb_brick 2 "$p2")" force >&2
    kb_assert_match 'Number of Bricks: 2 x \(2\) = 4' "$(kb_cli 1 volume info rb)" "volume info after add-brick"
    t0=$(date +%s%N)
    # The mount must switch to the 2-set graph first: start waits for it (up to 30 s) by itself.
    kb_cli 1 volume rebalance rb start >&2
    wait_rebalance "rebalance after add-brick"
    secs=$(( ($(date +%s%N) - t0) / 1000000 ))
    kb_log "rebalance: $(rs moved) of $(rs scanned) files moved, $(rs bytes) bytes in $(rs seconds) s:" \
        "$(( $(rs bytes_per_second | cut -d. -f1) / 1024 )) KiB/s ($secs ms from 'start' to completed, the wait for the mount's switch included)"
    [ "$(rs moved)" -gt 0 ] || kb_fail "the rebalance moved nothing"
    kb_t 120 "$KB_PY" "$PY" check-mount "$MNT" "$MAN"
    if ! kb_t 120 "$KB_PY" "$PY" placement "$MAN" "$W1,$W2" "${BA[@]}" "${BB[@]}" >"$KB_TMP/place"; then
        pairs_converge "${BA[@]}" "${BB[@]}"
        kb_fail "placement right after the rebalance (reason above)"
    fi
    read -r n0 n1 <"$KB_TMP/place"
    kb_log "files per set: $n0 and $n1; $W1 on the $([ -e "${BB[0]}/$W1" ] && echo new || echo first) set"
    [ "$n0" -gt 0 ] && [ "$n1" -gt 0 ] || kb_fail "a set holds no file: $n0 / $n1"
    kb_cli 1 volume rebalance rb start >&2
    wait_rebalance "second rebalance"
    kb_assert_eq 0 "$(rs moved)" "files moved by a second rebalance (every file is home already)"
}

shrink() {
    local -a gone keep BB
    mapfile -t BB <"$KB_TMP/bb"
    if [ -e "${BA[0]}/$W2" ]; then gone=("${BA[@]}"); keep=("${BB[@]}"); else gone=("${BB[@]}"); keep=("${BA[@]}"); fi
    [ -e "${gone[0]}/$W2" ] || kb_fail "$W2 is on neither set"
    kb_log "removing the set that holds $W2: ${gone[*]} (the $([ "${gone[0]}" = "${BA[0]}" ] && echo first || echo second))"
    local -a gb=("$(kb_brick 1 "${gone[0]}")" "$(kb_brick 2 "${gone[1]}")")
    KB_EXPECT_RE="not being drained" kb_expect_fail 30 "commit before start" \
        "$KB_BIN/kembar" --server "$(kb_addr 1)" volume remove-brick rb "${gb[@]}" commit
    kb_cli 1 volume remove-brick rb "${gb[@]}" start >&2
    wait_rebalance "remove-brick drain"
    kb_cli 1 volume remove-brick rb "${gb[@]}" status >&2
    [ ! -e "${gone[0]}/$W2" ] || kb_fail "$W2 still on the drained set"
    kb_cli 1 volume remove-brick rb "${gb[@]}" commit >&2
    local info
    info=$(kb_cli 1 volume info rb)
    kb_assert_nomatch "${gone[0]}|${gone[1]}" "$info" "removed bricks in volume info"
    kb_assert_match 'Number of Bricks: 1 x \(2\) = 2' "$info" "volume info after remove-brick"
    kb_assert_eq "" "$(find "${gone[@]}" -path '*/.kembar' -prune -o -type f -print)" "files left on the removed bricks"
    kb_t 120 "$KB_PY" "$PY" check-mount "$MNT" "$MAN"
    read -r n0 < <(kb_t 120 "$KB_PY" "$PY" placement "$MAN" "$W1,$W2" "${keep[@]}")
    kb_assert_eq 204 "$n0" "files on the remaining set"
    printf '%s\n' "${keep[@]}" >"$KB_TMP/keep"
}

kb_section "add-brick + rebalance under a writer" grow
kb_section "remove-brick of the writer's set" shrink
sleep 2
touch "$STOP"
[ -s "$KB_TMP/keep" ] || kb_fail "remove-brick did not complete: the writers' files not checked on the bricks"
for w in 1 2; do
    eval "pid=\$WPID$w name=\$W$w"
    rc=0
    kb_t 30 tail --pid="$pid" -f /dev/null || true
    wait "$pid" || rc=$?
    kb_log "writer of $name: $(cat "$KB_TMP/w$w.out" 2>/dev/null) $(head -c 300 "$KB_TMP/w$w.err")"
    kb_assert_eq 0 "$rc" "writer of $name: exit status"
    kb_assert_match "errors=0 " "$(cat "$KB_TMP/w$w.out")" "writer of $name saw no error"
    N=$(sed -n 's/^records=\([0-9]*\) .*/\1/p' "$KB_TMP/w$w.out")
    [ "$N" -gt 50 ] || kb_fail "the writer of $name wrote only $N records"
    kb_t 60 "$KB_PY" "$PY" check-writer "$MNT/$name" "$N"
    while read -r b; do kb_t 60 "$KB_PY" "$PY" check-writer "$b/$name" "$N"; done <"$KB_TMP/keep"
    kb_log "$name: $N records of 64 KiB, exact through the mount and on both remaining bricks"
done
kb_done
