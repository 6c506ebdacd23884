#!/usr/bin/env bash
# 51-thrash — nodes crash, restart, freeze and lose their network at random while clients write
# and verify (DESIGN §10; issue 8). Three nodes in network namespaces (netns.sh) carry two
# volumes at once: t3 (replica 3) and ta (replica 2 + arbiter 1, the arbiter on node 3), each
# FUSE-mounted in the root namespace with network.ping-timeout 2. On each volume run
#   - kb-pattern, O_DIRECT, acknowledging each write, reading back every 10th,
#   - kb-pattern, buffered, acknowledging batches of 8 writes by fsync (t3 only),
#   - fio --verify=crc32c, in rounds (each round writes then verifies its file),
#   - lock contenders (tests/tools/kb-lockrace.py), each volume mounted a second time for them:
#     on t3 two on each mount, on ta one on each, all after the same three locks (an OFD write
#     lock on lk-ofd, a POSIX one on lk-posix, flock on lk-flock); each round takes one, blocking
#     or polling, reads the file's record, writes the next (its id, round, counter + 1, times) and
#     fsyncs, holds it 20-150 ms, lets it go. Every event goes to a per-lock journal on local disk
#     with CLOCK_MONOTONIC times,
# while the thrasher, for 60 s (KB_LONG=1: 300 s), picks a node and a fault from a schedule drawn
# from the seed — kill -9 then restart, SIGTERM restart, SIGSTOP for a while, link down for a
# while — one fault at a time, and before the next waits until every client is attached to every
# brick again and no copy blames another (the heal that the previous fault made owed is done:
# with two faults overlapping, quorum could legitimately be lost).
# Afterwards: heal converges (`volume heal V info --json` total 0, no copy blames another), every
# data replica is byte-identical (the arbiter's files are empty), every acknowledged write reads
# back intact from every data brick and through a fresh mount, no write failed, no daemon crashed,
# and no lock was ever granted twice: no two holders' intervals (grant .. unlock, or .. the last
# success of a holder whose descriptor failed) overlap, and each holder read under the lock what
# the previous holder wrote (kb-lockrace.py audit). A holder whose lock was lost (its descriptor
# fails with EBADFD or EIO: its client was away past its lease) is no double grant, nor is a
# grant whose very first operation fails so (a wait granted on a descriptor lost meanwhile): they
# are logged and counted, and the contender opens the file again and goes on. A wait for a lock given up
# after 15 s (nobody could take it) is listed (LONG WAIT) and counted, not failed.
# Prints the seed (replay: KB_SEED=<seed>), each fault, counts per kind, bytes verified, max stall,
# lock grants per holder, longest wait for a lock, locks lost.
# KB_51_NOLOCK=ID (self-test): contender ID (t3a1 t3a2 t3b1 t3b2 taa1 tab1) takes no lock but
# acts as if it had; the test must then fail on double grants.
# kb-requires: fuse
set -eu
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source=tests/integration/netns.sh
. "$(dirname "$0")/netns.sh"

THRASH_SECS=60
[ "$KB_LONG" = 1 ] && THRASH_SECS=300
THRASH_SECS=${KB_THRASH_SECS:-$THRASH_SECS}
SEED=${KB_SEED:-$(( $(date +%s%N) / 1000 % 1000000000 ))}
PING=2
BARRIER_SECS=30      # a fault's consequences (reconnects, heal) must be over within this
kb_log "thrash: seed $SEED, ${THRASH_SECS} s (replay: KB_SEED=$SEED sh tests/run-integration.sh 51-thrash)"

nn_init
nn_start 1; nn_start 2; nn_start 3
PAT=$(nn_tool kb-pattern)
declare -A BR

vol_up() {  # vol_up NAME "SHAPE" NODE...: bricks in BR[NAME:i], i from 1
    local vol=$1 shape=$2 n i=0 p; shift 2
    local -a bricks=() paths=()
    for n in "$@"; do
        i=$((i + 1))
        p=$(kb_brick_path "$n" "$vol")
        BR[$vol:$i]=$p
        paths+=("$p")
        bricks+=("$(nn_brick "$n" "$p")")
    done
    # shellcheck disable=SC2086
    nn_cli 1 volume create "$vol" $shape "${bricks[@]}" force >&2
    nn_cli 1 volume set "$vol" network.ping-timeout "$PING" >&2
    nn_cli 1 volume set "$vol" cluster.heal-interval 5 >&2
    nn_cli 1 volume start "$vol" >&2
    kb_wait_until 15 nn_bricks_online 1 "$vol" "${paths[@]}" || kb_fail "bricks of $vol not online"
}
vol_up t3 "replica 3" 1 2 3
vol_up ta "replica 2 arbiter 1" 1 2 3
ALL_BRICKS=("${BR[t3:1]}" "${BR[t3:2]}" "${BR[t3:3]}" "${BR[ta:1]}" "${BR[ta:2]}" "${BR[ta:3]}")
nn_mount t3 "$KB_TMP/mnt-t3" "" 1 2 3
nn_mount ta "$KB_TMP/mnt-ta" "" 1 2 3
# Second mounts (other hosts, in effect) for the lock contenders.
nn_mount t3 "$KB_TMP/mnt-t3b" "" 3 2 1
nn_mount ta "$KB_TMP/mnt-tab" "" 3 2 1

# ---------------------------------------------------------------------------------------------
# Clients.

W=$KB_TMP/work
mkdir -p "$W"
declare -a WPIDS=() WOUTS=() WFILES=() WVOLS=()
start_writer() {  # start_writer VOL NAME SEED ARGS...
    local vol=$1 name=$2 seed=$3; shift 3
    "$PAT" write "$KB_TMP/mnt-$vol/$name" --journal "$W/$vol-$name.journal" --size 32M --seed "$seed" \
        --keep-going --rate 100 "$@" >"$W/$vol-$name.out" 2>"$W/$vol-$name.err" &
    WPIDS+=($!); WOUTS+=("$W/$vol-$name.out"); WFILES+=("$name"); WVOLS+=("$vol")
}
# fio rounds until $W/stop exists: each round writes 2 MiB of random 4 KiB blocks (crc32c
# headers) and verifies them; a failed round is recorded in $W/fio-VOL.fail.
fio_loop() {
    local vol=$1 r=0
    while [ ! -e "$W/stop" ]; do
        r=$((r + 1))
        if ! kb_t 120 fio --name="fio-$vol" --filename="$KB_TMP/mnt-$vol/fio-$vol" --rw=randwrite --bs=4k \
            --size=2M --ioengine=psync --iodepth=1 --direct=1 --rate_iops=60 --verify=crc32c \
            --do_verify=1 --verify_fatal=1 --randrepeat=0 --output="$W/fio-$vol.$r.log" >/dev/null 2>&1; then
            echo "round $r: $(grep -iE 'error|verify|bad' "$W/fio-$vol.$r.log" | head -3 | tr '\n' ' ')" >>"$W/fio-$vol.fail"
        fi
        echo "$r" >"$W/fio-$vol.rounds"
    done
}
FIO_PIDS=()

# Lock contenders: kb-lockrace.py contend, journals $W/lockj-VOL-KIND.log (see the top; *.log:
# kept with the daemon logs when the test fails).
LOCKRACE=$KB_REPO/tests/tools/kb-lockrace.py
LOCK_VOLS=(t3 ta)
declare -a LPIDS=() LIDS=()
lock_files() {  # the shared files, made through the first mount, seen through the second
    local v k
    for v in "${LOCK_VOLS[@]}"; do
        for k in ofd posix flock; do
            : >"$KB_TMP/mnt-$v/lk-$k"
            kb_wait_until 10 test -e "$KB_TMP/mnt-${v}b/lk-$k" || kb_fail "$v/lk-$k made through one mount is not seen through the other"
        done
    done
}
start_locker() {  # start_locker ID MOUNT VOL SEED
    local id=$1 m=$2 v=$3 seed=$4
    local -a extra=()
    [ "${KB_51_NOLOCK:-}" = "$id" ] && extra=(--no-lock) && kb_log "SELF-TEST: contender $id takes no lock (KB_51_NOLOCK)"
    "$KB_PY" "$LOCKRACE" contend --id "$id" --dir "$KB_TMP/$m" --journal "$W/lockj-$v-" --seed "$seed" \
        "${extra[@]}" </dev/null >"$W/lk-$id.out" 2>"$W/lk-$id.err" 8>&- 9>&- &
    LPIDS+=($!); LIDS+=("$id")
}
start_lockers() {
    lock_files
    start_locker t3a1 mnt-t3 t3 $((SEED + 11))
    start_locker t3a2 mnt-t3 t3 $((SEED + 12))
    start_locker t3b1 mnt-t3b t3 $((SEED + 13))
    start_locker t3b2 mnt-t3b t3 $((SEED + 14))
    start_locker taa1 mnt-ta ta $((SEED + 15))
    start_locker tab1 mnt-tab ta $((SEED + 16))
}
stop_lockers() {  # each finishes its round; one stuck in a call on its mount 30 s is killed
    local i
    for i in "${LPIDS[@]}"; do kill -TERM "$i" 2>/dev/null || true; done
    for i in "${!LPIDS[@]}"; do
        if ! kb_wait_until 30 kb__pid_gone "${LPIDS[$i]}" kb-lockrace.py; then
            kb_log "  contender ${LIDS[$i]} still runs 30 s after SIGTERM: killed (stack: $(head -3 "/proc/${LPIDS[$i]}/stack" 2>/dev/null | tr '\n' ' '))"
            kill -KILL "${LPIDS[$i]}" 2>/dev/null || true
        fi
        wait "${LPIDS[$i]}" 2>/dev/null || true
        kb_log "  lock ${LIDS[$i]}: $(cat "$W/lk-${LIDS[$i]}.out")"
        [ -s "$W/lk-${LIDS[$i]}.err" ] && sed 's/^/    | /' "$W/lk-${LIDS[$i]}.err" | head -10 >&2
    done
    return 0
}

start_clients() {
    start_writer t3 pat-direct $((SEED + 1)) --direct --readback 10
    start_writer t3 pat-fsync $((SEED + 2)) --fsync 8
    start_writer ta pat-direct $((SEED + 3)) --direct --readback 10
    fio_loop t3 & FIO_PIDS+=($!)
    fio_loop ta & FIO_PIDS+=($!)
    start_lockers
}

# ---------------------------------------------------------------------------------------------
# The thrasher.

# One fault per line "NODE KIND SECS GAP", drawn from the seed (the sequence replays exactly;
# how many of them fit in the time depends on how fast the cluster recovers).
"$KB_PY" - "$SEED" >"$W/schedule" <<'EOF'
import random, sys
rng = random.Random(int(sys.argv[1]))
for _ in range(2000):
    kind = rng.choices(["kill", "restart", "pause", "partition"], weights=[3, 1, 2, 3])[0]
    secs = round(rng.uniform(0.5, 4.0), 1)
    print(rng.randint(1, 3), kind, secs, round(rng.uniform(0.2, 1.5), 1))
EOF

declare -A FAULTS=([kill]=0 [restart]=0 [pause]=0 [partition]=0)
settled() {  # every client attached to every brick, no copy blames another
    nn_clients_connected || return 1
    [ "$(nn_blamed "${ALL_BRICKS[@]}" | cut -d' ' -f1)" = 0 ]
}
barrier() {  # barrier WHAT: wait for settled(); the time it took goes to the log
    local t0=$SECONDS
    if ! kb_wait_until "$BARRIER_SECS" settled; then
        kb_log "after $1: not settled within ${BARRIER_SECS} s: clients $(nn_clients_connected && echo attached || echo detached), blamed $(nn_blamed "${ALL_BRICKS[@]}")"
        return 1
    fi
    [ $((SECONDS - t0)) -ge 3 ] && kb_log "  settled after $((SECONDS - t0)) s"
    return 0
}

inject() {  # inject NODE KIND SECS
    local n=$1 kind=$2 secs=$3
    kb_log "fault: node $n $kind ${secs}s"
    case "$kind" in
        kill) nn_kill "$n"; sleep "$secs"; nn_start "$n" ;;
        restart) nn_stop "$n"; nn_start "$n" ;;
        pause) nn_pause "$n"; sleep "$secs"; nn_resume "$n" ;;
        partition) nn_partition "$n"; sleep "$secs"; nn_unpartition "$n" ;;
    esac
    # A client may declare a silent node dead up to ping-timeout AFTER a freeze or a cut ended
    # (TCP retransmission backoff delays the first answers): wait that out, or the next fault
    # would overlap this one and quorum could be lost for real.
    case "$kind" in pause|partition) sleep $((PING + 1)) ;; esac
    FAULTS[$kind]=$((FAULTS[$kind] + 1))
}

thrash() {  # runs in a kb_section subshell: results go to files under $W
    local end=$((SECONDS + THRASH_SECS)) n kind secs gap last="start"
    while read -r n kind secs gap; do
        [ "$SECONDS" -lt "$end" ] || break
        inject "$n" "$kind" "$secs"
        last="node $n $kind"
        barrier "$last" || kb_fail "the cluster did not settle within ${BARRIER_SECS} s of '$last'"
        sleep "$gap"
    done <"$W/schedule"
    kb_log "faults injected: kill -9 ${FAULTS[kill]}, restart ${FAULTS[restart]}, SIGSTOP ${FAULTS[pause]}, partition ${FAULTS[partition]} (mode $NN_MODE)"
    echo "${FAULTS[kill]} ${FAULTS[restart]} ${FAULTS[pause]} ${FAULTS[partition]}" >"$W/faults"
}

stop_clients() {
    local i rc
    nn_heal_all 1 2 3
    touch "$W/stop"
    for i in "${!WPIDS[@]}"; do
        kill -TERM "${WPIDS[$i]}" 2>/dev/null || true
        rc=0; wait "${WPIDS[$i]}" || rc=$?
        kb_log "  ${WVOLS[$i]}/${WFILES[$i]}: $(cat "${WOUTS[$i]}") (exit $rc)"
        [ -s "${WOUTS[$i]%.out}.err" ] && sed 's/^/    | /' "${WOUTS[$i]%.out}.err" | head -10 >&2
    done
    for i in "${FIO_PIDS[@]}"; do wait "$i" || true; done
    stop_lockers
    kb_log "  fio rounds: t3 $(cat "$W/fio-t3.rounds" 2>/dev/null || echo 0), ta $(cat "$W/fio-ta.rounds" 2>/dev/null || echo 0)"
}

clients_clean() {
    local i out max=0 ms errs=0
    for i in "${!WOUTS[@]}"; do
        out=$(cat "${WOUTS[$i]}")
        [ -n "$out" ] || kb_fail "${WVOLS[$i]}/${WFILES[$i]}: the writer printed no summary"
        ms=$(nn_kv max_stall_ms "$out" | cut -d. -f1)
        [ "$ms" -gt "$max" ] && max=$ms
        errs=$((errs + $(nn_kv errors "$out")))
    done
    echo "$max" >"$W/max_stall"
    echo "$errs" >"$W/write_errors"
    for i in "${!WOUTS[@]}"; do
        out=$(cat "${WOUTS[$i]}")
        kb_assert_eq 0 "$(nn_kv errors "$out")" "${WVOLS[$i]}/${WFILES[$i]}: write errors (quorum was never lost)"
        kb_assert_eq 0 "$(nn_kv readback_bad "$out")" "${WVOLS[$i]}/${WFILES[$i]}: read-back mismatches"
    done
    # Bound: ping-timeout to declare a silent node dead, plus up to 3 s of TCP retransmission
    # backoff when a write was sent into a cut link just before it came back.
    kb_log "max stall over all writers: ${max} ms (bound: ping-timeout + 3 s = $(((PING + 3) * 1000)) ms)"
    kb_assert_le "$max" $(((PING + 3) * 1000)) "longest single write (ms) under one fault at a time"
    [ ! -s "$W/fio-t3.fail" ] || kb_fail "fio on t3: $(cat "$W/fio-t3.fail")"
    [ ! -s "$W/fio-ta.fail" ] || kb_fail "fio on ta: $(cat "$W/fio-ta.fail")"
}

# No lock granted twice (kb-lockrace.py audit: overlapping holders, or a holder that did not read
# what the previous one wrote); every contender ended by itself and was granted each lock, through
# both mounts of its volume. Losses (EBADFD/EIO under the lock) are listed, not failures.
locks_exclusive() {
    local i v k f m out rc=0 id
    for i in "${!LIDS[@]}"; do
        grep -q '^contender ' "$W/lk-${LIDS[$i]}.out" || kb_fail "contender ${LIDS[$i]} printed no summary (killed?): $(head -3 "$W/lk-${LIDS[$i]}.err")"
    done
    out=$("$KB_PY" "$LOCKRACE" audit "$W"/lockj-*.log 2>&1) || rc=$?
    grep -E '^(DOUBLE GRANT|READ MISMATCH|LONG WAIT|GRANTED ON A LOST|    )' <<<"$out" | head -60 >&2 || true
    grep -E '^lock ' <<<"$out" | sed 's/^/  /' >&2 || true
    grep '^lock_audit ' <<<"$out" >"$W/lock_audit" || kb_fail "kb-lockrace.py audit: $out"
    for v in "${LOCK_VOLS[@]}"; do
        for f in "$W"/lockj-"$v"-*.log; do
            grep -E '^(lost|acqerr|unlockerr) ' "$f" | sed "s|^|    ${f##*/}: |" | head -20 >&2 || true
        done
    done
    kb_assert_eq 0 "$rc" "kb-lockrace.py audit: double grants or read mismatches ($(cat "$W/lock_audit"))"
    for v in "${LOCK_VOLS[@]}"; do
        for k in ofd posix flock; do
            for m in a b; do
                grep -Eq "^acq ${v}${m}[0-9]+ " "$W/lockj-$v-$k.log" ||
                    kb_fail "the $k lock of $v was never granted through mount $m (no contention between mounts)"
            done
        done
    done
    for id in "${LIDS[@]}"; do
        i=$(nn_kv grants "$(cat "$W/lk-$id.out")")
        kb_assert_le 10 "${i:-0}" "grants of contender $id"
    done
    kb_log "no lock granted twice: $(cat "$W/lock_audit")"
}

# changelogs VOL: the replicate changelog (trusted.kembar.cl: dirty row, then one row per
# replica; columns data/metadata/entry) of every object heal info lists, on every brick.
changelogs() {
    local v=$1 i f
    for f in $(nn_cli 1 volume heal "$v" info 2>/dev/null | grep '^/' | sort -u); do
        for i in 1 2 3; do
            "$KB_PY" - "${BR[$v:$i]}$f" "brick $i" <<'EOF'
import os, struct, sys
p, who = sys.argv[1], sys.argv[2]
try:
    v = os.getxattr(p, "trusted.kembar.cl", follow_symlinks=False)
    m = struct.unpack(">51i", v[8:8 + 204])
    rows = ["%d/%d/%d" % m[3 * r:3 * r + 3] for r in range(4)]
    print("    %s %s: dirty %s, blames r0 %s r1 %s r2 %s, size %d" % (who, p, rows[0], rows[1], rows[2], rows[3], os.lstat(p).st_size))
except OSError as e:
    print("    %s %s: %s" % (who, p, e.strerror))
EOF
        done
    done
}

heal_converges() {
    local v t0=$SECONDS
    kb_wait_until 30 nn_clients_connected || kb_fail "clients not attached to every brick after the thrash"
    for v in t3 ta; do nn_cli 1 volume heal "$v" >&2; done
    for v in t3 ta; do
        if ! kb_wait_until 90 eval '[ "$(nn_heal_total 1 '"$v"')" = 0 ]'; then
            nn_cli 1 volume heal "$v" info 2>&1 | sed 's/^/    /' >&2
            changelogs "$v" >&2
            kb_fail "heal of $v did not converge in 90 s: heal info total $(nn_heal_total 1 "$v")"
        fi
    done
    kb_wait_until 30 eval '[ "$(nn_blamed "${ALL_BRICKS[@]}" | cut -d" " -f1)" = 0 ]' ||
        kb_fail "heal info says 0 but copies still blame each other: $(nn_blamed "${ALL_BRICKS[@]}")"
    kb_log "heal converged in $((SECONDS - t0)) s"
}

replicas_identical() {
    "$KB_PY" - "${BR[t3:1]}" "${BR[t3:2]}" "${BR[t3:3]}" -- "${BR[ta:1]}" "${BR[ta:2]}" -- "${BR[ta:3]}" <<'EOF'
import hashlib, os, stat, sys
args = sys.argv[1:]
i = args.index("--"); t3 = args[:i]; rest = args[i + 1:]
j = rest.index("--"); ta = rest[:j]; arb = rest[j + 1]
def tree(b):
    out = {}
    for root, dirs, files in os.walk(b):
        if root == b and ".kembar" in dirs:
            dirs.remove(".kembar")
        for n in dirs + files:
            p = os.path.join(root, n)
            st = os.lstat(p)
            out[os.path.relpath(p, b)] = st
    return out
def sha(p):
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for blk in iter(lambda: f.read(1 << 20), b""):
            h.update(blk)
    return h.hexdigest()
bad, files, nbytes = [], 0, 0
for name, bricks in (("t3", t3), ("ta", ta)):
    trees = [tree(b) for b in bricks]
    names = set().union(*trees)
    for n in sorted(names):
        missing = [b for b, t in zip(bricks, trees) if n not in t]
        if missing:
            bad.append("%s: %s missing on %s" % (name, n, missing)); continue
        if stat.S_ISREG(trees[0][n].st_mode):
            hs = {sha(os.path.join(b, n)) for b in bricks}
            files += 1; nbytes += trees[0][n].st_size
            if len(hs) != 1:
                bad.append("%s: %s differs between data replicas" % (name, n))
    if name == "ta":
        at = tree(arb)
        for n in names:
            if n not in at:
                bad.append("ta: %s missing on the arbiter" % n)
            elif stat.S_ISREG(at[n].st_mode) and at[n].st_size != 0:
                bad.append("ta: %s holds %d bytes on the arbiter" % (n, at[n].st_size))
        for n in at:
            if n not in names:
                bad.append("ta: %s only on the arbiter" % n)
for b in bad[:20]:
    print("MISMATCH " + b)
print("compared %d files, %d bytes per replica" % (files, nbytes))
sys.exit(1 if bad else 0)
EOF
}

writes_intact() {
    local i v f out total=0 b fresh=$KB_TMP/mnt-verify
    for i in "${!WFILES[@]}"; do
        v=${WVOLS[$i]}; f=${WFILES[$i]}
        for b in 1 2 3; do
            [ "$v" = ta ] && [ "$b" = 3 ] && continue      # the arbiter holds no data
            out=$("$PAT" verify "${BR[$v:$b]}/$f" --journal "$W/$v-$f.journal" 2>&1) ||
                kb_fail "acknowledged writes lost on brick $b of $v ($f):"$'\n'"$out"
            total=$((total + $(nn_kv bytes_verified "$(tail -1 <<<"$out")")))
        done
    done
    for v in t3 ta; do
        nn_mount "$v" "$fresh-$v" "" 1 2 3
        for i in "${!WFILES[@]}"; do
            [ "${WVOLS[$i]}" = "$v" ] || continue
            f=${WFILES[$i]}
            out=$("$PAT" verify "$fresh-$v/$f" --journal "$W/$v-$f.journal" --direct 2>&1) ||
                kb_fail "acknowledged writes lost reading $v/$f through a fresh mount:"$'\n'"$out"
            kb_log "  $(tail -1 <<<"$out")"
            total=$((total + $(nn_kv bytes_verified "$(tail -1 <<<"$out")")))
        done
        kb_umount "$fresh-$v"
    done
    echo "$total" >"$W/bytes_verified"
    kb_log "bytes verified (every data brick and a fresh mount): $total ($((total / 1048576)) MiB)"
}

summary() {
    local f la
    lkv() { local x; x=$(nn_kv "$1" "$la"); echo "${x:-?}"; }
    read -r a b c d <"$W/faults" 2>/dev/null || { a=?; b=?; c=?; d=?; }
    la=$(cat "$W/lock_audit" 2>/dev/null || echo "")
    kb_log "THRASH SUMMARY seed=$SEED secs=$THRASH_SECS mode=$NN_MODE kill=$a restart=$b pause=$c partition=$d" \
        "bytes_verified=$(cat "$W/bytes_verified" 2>/dev/null || echo ?) max_stall_ms=$(cat "$W/max_stall" 2>/dev/null || echo ?)" \
        "write_errors=$(cat "$W/write_errors" 2>/dev/null || echo ?)" \
        "lock_grants=$(lkv grants) lock_grants_per_holder=$(lkv holders) lock_max_wait_ms=$(lkv max_wait_ms)" \
        "lock_losses=$(lkv losses) lock_lost_grants=$(lkv lost_grants) lock_errors=$(lkv errors) lock_timeouts=$(lkv timeouts)" \
        "double_grants=$(lkv double_grants) lock_read_mismatch=$(lkv read_mismatch)"
    f=$((a + b + c + d))
    kb_assert_le 4 "$f" "faults injected (too few to mean anything)"
}

# The clients are children of this shell (not of a section's subshell): stop_clients waits on them.
barrier "the start" || kb_fail "the cluster is not settled before any fault"
start_clients
sleep 2
kb_section "thrash: faults under load" thrash
stop_clients
kb_section "no write failed, no read-back mismatch, fio rounds verified" clients_clean
kb_section "no lock granted twice" locks_exclusive
kb_section "heal converges" heal_converges
kb_section "every data replica byte-identical, the arbiter empty" replicas_identical
kb_section "every acknowledged write intact" writes_intact
kb_section "no kembard crashed" nn_assert_no_crash
kb_section "summary" summary
kb_done
