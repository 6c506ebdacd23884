#!/usr/bin/env bash
# 50-failover — what one client sees when replicas die, freeze, or disagree (DESIGN §5, §10;
# issue 8). Nodes live in network namespaces (netns.sh; loopback ports where unavailable), the
# FUSE client in the root namespace, network.ping-timeout 2 on every volume.
#   - replica 2, the second node kill -9'd under a writer (kb-pattern, O_DIRECT): no write error,
#     longest single write under 1 s, every acknowledged block intact;
#   - replica 2, the second node SIGSTOPped: the writer stalls at most ping-timeout + 1 s and goes
#     on writing while the node is still frozen;
#   - replica 3 with two nodes down: writes refused (EROFS / ENOTCONN), reads still served;
#   - replica 2 + arbiter: the arbiter's files hold no data (zero length, no blocks), and reads
#     never come from it (data nodes down: reads fail, they do not return the arbiter's zeros);
#   - split-brain constructed by alternating outages (quorum none): reading the file gives EIO,
#     `heal info split-brain` lists it, and neither brick's copy was overwritten.
# kb-requires: fuse
set -eu
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source=tests/integration/netns.sh
. "$(dirname "$0")/netns.sh"

PING=2
nn_init
nn_start 1; nn_start 2; nn_start 3
PAT=$(nn_tool kb-pattern)

# vol_up NAME "replica 2 [arbiter 1]" NODE... : create with one brick per node, ping-timeout 2,
# start, wait until every brick is online. Brick paths in BR[NAME:i] (i from 1).
declare -A BR
vol_up() {
    local vol=$1 shape=$2 n i=0 p; shift 2
    local -a bricks=()
    for n in "$@"; do
        i=$((i + 1))
        p=$(kb_brick_path "$n" "$vol")
        BR[$vol:$i]=$p
        bricks+=("$(nn_brick "$n" "$p")")
    done
    # shellcheck disable=SC2086
    nn_cli 1 volume create "$vol" $shape "${bricks[@]}" force >&2
    nn_cli 1 volume set "$vol" network.ping-timeout "$PING" >&2
    nn_cli 1 volume start "$vol" >&2
    local -a paths=()
    for ((i = 1; i <= $#; i++)); do paths+=("${BR[$vol:$i]}"); done
    kb_wait_until 15 nn_bricks_online 1 "$vol" "${paths[@]}" || kb_fail "bricks of $vol not all online"
}

# connected_to_all MNT FILE BRICKPATH...: a small write through MNT reaches every listed brick
# (the client is attached to all of them, so a fault afterwards is a real failover).
connected_to_all() {
    local mnt=$1 f=$2 b; shift 2
    echo "probe $RANDOM" >"$mnt/$f"
    sync "$mnt/$f"
    for b in "$@"; do
        kb_wait_until 5 cmp -s "$mnt/$f" "$b/$f" || kb_fail "$f did not reach brick $b: the client is not attached to it"
    done
}

# py_write PATH OFF BYTE: one O_DIRECT 4 KiB write of BYTE at OFF; prints "ok" or the errno name.
py_write() {
    kb_t 30 "$KB_PY" - "$@" <<'EOF'
import errno, mmap, os, sys
path, off, byte = sys.argv[1], int(sys.argv[2]), sys.argv[3].encode()
buf = mmap.mmap(-1, 4096); buf.write(byte * 4096)
try:
    fd = os.open(path, os.O_WRONLY | os.O_DIRECT)
    os.pwritev(fd, [buf], off); os.fsync(fd); os.close(fd)
    print("ok")
except OSError as e:
    print(errno.errorcode.get(e.errno, e.errno))
EOF
}
# py_read PATH: O_DIRECT read of the whole file; prints its sha256 or the errno name, then
# " close:ERRNO" when close(2) itself failed (the read did not).
py_read() {
    kb_t 30 "$KB_PY" - "$@" <<'EOF'
import errno, hashlib, mmap, os, sys
h = hashlib.sha256()
name = lambda e: errno.errorcode.get(e.errno, str(e.errno))
try:
    fd = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECT)
    buf = mmap.mmap(-1, 1 << 20)
    while True:
        n = os.readv(fd, [buf])
        if n <= 0: break
        h.update(buf[:n])
except OSError as e:
    print(name(e)); sys.exit(0)
try:
    os.close(fd)
    print(h.hexdigest())
except OSError as e:
    print(h.hexdigest(), "close:" + name(e))
EOF
}

# writer FILE SECS OUT: kb-pattern in the background (O_DIRECT, 200 writes/s, read-back); its
# pid in WPID (a child of this shell: not started from a command substitution).
writer() {
    "$PAT" write "$1" --journal "$3.journal" --size 16M --seed "$RANDOM" --duration "$2" --direct \
        --rate 200 --readback 10 >"$3" 2>"$3.err" &
    WPID=$!
}
writer_wait() {  # writer_wait PID OUT: wait, print the summary, return the writer's status
    local rc=0
    wait "$1" || rc=$?
    kb_log "  $(cat "$2")"
    [ -s "$2.err" ] && sed 's/^/    writer: /' "$2.err" | head -20 >&2
    return $rc
}
acked() { grep -c '^A ' "$1.journal" 2>/dev/null || true; }
stall_ms() { nn_kv max_stall_ms "$(cat "$1")" | cut -d. -f1; }

kill_under_writer() {
    nn_heal_all 1 2
    vol_up fk "replica 2" 1 2
    local mnt=$KB_TMP/mnt-fk out=$KB_TMP/fk.out pid
    nn_mount fk "$mnt" "" 1 2
    connected_to_all "$mnt" probe "${BR[fk:1]}" "${BR[fk:2]}"
    writer "$mnt/img" 8 "$out"; pid=$WPID
    sleep 2
    nn_kill 2
    writer_wait "$pid" "$out" || kb_fail "the writer failed while node 2 was killed: $(cat "$out.err")"
    kb_assert_eq 0 "$(nn_kv errors "$(cat "$out")")" "write errors while a replica died"
    kb_assert_eq 0 "$(nn_kv readback_bad "$(cat "$out")")" "read-back errors"
    kb_log "max stall with node 2 killed -9: $(nn_kv max_stall_ms "$(cat "$out")") ms (bound 1000)"
    kb_assert_le "$(stall_ms "$out")" 999 "longest write (ms) across a kill -9"
    local v
    v=$("$PAT" verify "$mnt/img" --journal "$out.journal" --direct 2>&1) || kb_fail "verify after the kill: $v"
    kb_log "  $v"
    nn_start 2
    kb_umount "$mnt"
}

pause_under_writer() {
    nn_heal_all 1 2
    vol_up fp "replica 2" 1 2
    local mnt=$KB_TMP/mnt-fp out=$KB_TMP/fp.out pid a1 a2
    nn_mount fp "$mnt" "" 1 2
    connected_to_all "$mnt" probe "${BR[fp:1]}" "${BR[fp:2]}"
    writer "$mnt/img" 12 "$out"; pid=$WPID
    sleep 2
    nn_pause 2
    # ping-timeout + 1 s after the freeze the writer must be writing again, node 2 still frozen.
    sleep $((PING + 2))
    a1=$(acked "$out")
    sleep 2
    a2=$(acked "$out")
    kb_assert_eq paused "$(nn_state 2)" "node 2 still frozen while we watch"
    nn_resume 2
    writer_wait "$pid" "$out" || kb_fail "the writer failed while node 2 was frozen: $(cat "$out.err")"
    kb_log "acknowledged writes in 2 s while node 2 was still frozen: $((a2 - a1))"
    kb_assert_le 50 $((a2 - a1)) "writes acknowledged in 2 s with one replica frozen (the writer must go on)"
    kb_assert_eq 0 "$(nn_kv errors "$(cat "$out")")" "write errors while a replica was frozen"
    kb_log "max stall with node 2 frozen: $(nn_kv max_stall_ms "$(cat "$out")") ms (bound $(((PING + 1) * 1000)))"
    kb_assert_le "$(stall_ms "$out")" $(((PING + 1) * 1000)) "longest write (ms) across a SIGSTOP"
    local v
    v=$("$PAT" verify "$mnt/img" --journal "$out.journal" --direct 2>&1) || kb_fail "verify after the freeze: $v"
    kb_log "  $v"
    kb_umount "$mnt"
}

quorum_lost() {
    nn_heal_all 1 2 3
    vol_up fq "replica 3" 1 2 3
    local mnt=$KB_TMP/mnt-fq want got
    nn_mount fq "$mnt" "" 1 2 3
    connected_to_all "$mnt" probe "${BR[fq:1]}" "${BR[fq:2]}" "${BR[fq:3]}"
    kb_t 20 dd if=/dev/urandom of="$mnt/data" bs=64k count=16 conv=fsync status=none
    want=$(py_read "$mnt/data")
    nn_kill 2
    nn_kill 3
    sleep 1
    got=$(py_write "$mnt/data" 0 z)
    kb_log "write with 2 of 3 replicas down: $got"
    kb_assert_match '^(EROFS|ENOTCONN)$' "$got" "a write without quorum must be refused"
    got=$(kb_t 20 sh -c "echo new >'$mnt/newfile'" 2>&1 || true)
    [ -e "${BR[fq:1]}/newfile" ] && kb_fail "a create without quorum reached the surviving brick"
    got=$(py_read "$mnt/data")
    kb_assert_eq "$want" "${got%% *}" "reads are still served without quorum"
    kb_assert_eq "$want" "$(kb_sha "${BR[fq:1]}/data")" "the refused write left the surviving copy alone"
    kb_assert_eq "$want" "$got" "close(2) of a file only read, without quorum (the read itself worked)"
    nn_start 2; nn_start 3
    kb_umount "$mnt"
}

arbiter_no_data() {
    nn_heal_all 1 2 3
    vol_up fa "replica 2 arbiter 1" 1 2 3
    local mnt=$KB_TMP/mnt-fa want f got
    nn_mount fa "$mnt" "" 1 2 3
    connected_to_all "$mnt" probe "${BR[fa:1]}" "${BR[fa:2]}"
    kb_t 20 dd if=/dev/urandom of="$mnt/disk" bs=64k count=32 conv=fsync status=none
    mkdir -p "$mnt/dir"
    kb_t 20 dd if=/dev/urandom of="$mnt/dir/small" bs=4k count=3 conv=fsync status=none
    want=$(py_read "$mnt/disk")
    kb_wait_until 5 test -e "${BR[fa:3]}/disk" || kb_fail "the arbiter has no entry for 'disk' (it holds names and metadata)"
    for f in disk dir/small probe; do
        [ -e "${BR[fa:3]}/$f" ] || kb_fail "arbiter lacks the name $f"
        kb_assert_eq 0 "$(stat -c %s "${BR[fa:3]}/$f")" "size of $f on the arbiter brick"
        # st_blocks may count an ext4 external xattr block (8 x 512 B), never data.
        kb_assert_le "$(stat -c %b "${BR[fa:3]}/$f")" 8 "blocks of $f on the arbiter brick"
        kb_assert_same_file "$mnt/$f" "${BR[fa:1]}/$f"
        kb_assert_same_file "$mnt/$f" "${BR[fa:2]}/$f"
    done
    # One data node down: reads come from the other data copy, right.
    nn_kill 1
    sleep 1
    got=$(py_read "$mnt/disk")
    kb_assert_eq "$want" "${got%% *}" "read with data node 1 down"
    # Both data nodes down: only the arbiter is left; it must not serve (its copy is empty).
    nn_kill 2
    sleep 1
    got=$(py_read "$mnt/disk")
    kb_log "read with only the arbiter up: $got"
    kb_assert_ne "$want" "$got" "test bug: the data cannot be read from nowhere"
    kb_assert_match '^E[A-Z]+$' "$got" "a read with only the arbiter up must fail, not return the arbiter's empty copy"
    nn_start 1; nn_start 2
    kb_umount "$mnt"
}

split_brain() {
    nn_heal_all 1 2
    vol_up fs "replica 2" 1 2
    # Without quorum every side writes: that is what makes a split-brain constructible here.
    nn_cli 1 volume set fs cluster.quorum-type none >&2
    local m1=$KB_TMP/mnt-fs1 m2=$KB_TMP/mnt-fs2 m3=$KB_TMP/mnt-fs3 got
    nn_mount fs "$m1" "" 1 2
    connected_to_all "$m1" probe "${BR[fs:1]}" "${BR[fs:2]}"
    kb_t 20 dd if=/dev/zero of="$m1/sb" bs=64k count=1 conv=fsync status=none
    kb_wait_until 5 cmp -s "${BR[fs:1]}/sb" "${BR[fs:2]}/sb" || kb_fail "sb not on both bricks"
    nn_kill 2
    kb_assert_eq ok "$(py_write "$m1/sb" 0 A)" "write with node 2 down (quorum none)"
    kb_umount "$m1"
    nn_stop 1
    nn_start 2
    # A client that never saw node 1 (the first one knows node 2 is stale and refuses: right).
    nn_mount fs "$m2" "" 2
    kb_wait_until 20 eval '[ "$(py_write "$m2/sb" 0 B)" = ok ]' || kb_fail "write with only node 2 up never succeeded"
    kb_umount "$m2"
    nn_start 1
    kb_wait_until 15 nn_bricks_online 1 fs "${BR[fs:1]}" "${BR[fs:2]}" || kb_fail "bricks of fs not back"
    kb_assert_eq AAAA "$(head -c 4 "${BR[fs:1]}/sb")" "node 1's copy"
    kb_assert_eq BBBB "$(head -c 4 "${BR[fs:2]}/sb")" "node 2's copy"
    nn_mount fs "$m3" "" 1 2
    connected_to_all "$m3" probe2 "${BR[fs:1]}" "${BR[fs:2]}"
    got=$(py_read "$m3/sb")
    kb_log "read of the split-brain file: $got"
    kb_assert_eq EIO "$got" "reading a file in split-brain"
    got=$(kb_t 10 cat "$m3/sb" 2>&1 >/dev/null || true)
    kb_assert_match 'Input/output error' "$got" "cat of the split-brain file"
    got=$(py_write "$m3/sb" 8192 C)
    kb_log "write to the split-brain file: $got"
    kb_assert_eq EIO "$got" "writing a file in split-brain"
    kb_umount "$m3"
    # Nobody healed it silently in the meantime.
    kb_assert_eq AAAA "$(head -c 4 "${BR[fs:1]}/sb")" "node 1's copy after the reads"
    kb_assert_eq BBBB "$(head -c 4 "${BR[fs:2]}/sb")" "node 2's copy after the reads"
}

split_brain_reported() {
    local out
    kb__node_alive 1 && kb__node_alive 2 || kb_fail "split-brain section did not leave both nodes up"
    out=$(nn_cli 1 volume heal fs info split-brain 2>&1) || kb_fail "heal info split-brain: $out"
    kb_log "heal info split-brain:"$'\n'"$out"
    kb_assert_match 'sb' "$out" "heal info split-brain lists the file"
    out=$(nn_cli_json 1 volume heal fs info)
    kb_assert_le 1 "$("$KB_PY" -c 'import json,sys; print(json.load(sys.stdin).get("split_brain", 0))' <<<"$out")" \
        "split_brain count in heal info --json"
}

kb_section "replica 2: kill -9 under a writer" kill_under_writer
kb_section "replica 2: SIGSTOP under a writer" pause_under_writer
kb_section "replica 3: two nodes down" quorum_lost
kb_section "replica 2 + arbiter: no data on the arbiter" arbiter_no_data
kb_section "replica 2: constructed split-brain gives EIO" split_brain
kb_section "split-brain is reported by heal info" split_brain_reported
kb_section "no kembard crashed" nn_assert_no_crash
kb_done
