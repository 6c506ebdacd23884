#!/usr/bin/env bash
# 58-vm-locks — image locks as qemu uses them, through two mounts of one volume (issue 20,
# DESIGN §10 "Locks are part of that promise"). Two hypervisors = two kembar-fuse processes
# (mount A, mount B) on a replica 2 arbiter 1 volume over three nodes, network.ping-timeout 3.
#   - the kernel's lock rules, seen from the other mount (tests/tools/kb-lockcheck.py; first on
#     the local filesystem, where they hold by definition: the checks check themselves):
#     OFD lock gone when its descriptor is closed (process alive) and when its holder is killed
#     -9; POSIX lock gone when the process closes another descriptor of the file; OFD + POSIX in
#     one process (a third close drops the POSIX lock only, the OFD's close drops the OFD lock);
#     flock kept while a dup is open, gone at the last close; an OFD description shared with a
#     forked child survives the child's close and exit, not the parent's last close. Conflicting
#     requests through the other mount are refused while a lock is held; F_GETLK names the POSIX
#     holder's pid;
#   - qemu-io holding an image killed -9: qemu-img info and a write-open through either mount
#     succeed within 1 s (the times are logged);
#   - qemu-system-x86_64 (default image locking, cache=none): 10 rounds alternating the mounts of
#     start (-S), quit over QMP, qemu-img info through both mounts, start again through the same
#     mount and through the other; the last round boots the guest for real and it powers itself
#     off (qemu exits by itself, exit 0), and the next start is at once;
#   - while a qemu runs the image, a second one is refused (Failed to get "write" lock) through
#     the other mount and through the same one;
#   - kembar-fuse of the holder's mount killed -9 (the hypervisor is lost): the image opens
#     through mount B within ping-timeout + 3 s (the bricks drop a client's locks once its
#     connection is gone for good, at the latest a ping timeout after it went; the margin covers
#     their noticing it, the unlock itself and the polling); a qemu then starts on it through B;
#     then mount A is mounted again and opens it too.
# Each part is its own section, with its own image, so one broken rule does not hide another.
# kb-requires: fuse
set -eu
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source=tests/integration/vm.sh
. "$(dirname "$0")/vm.sh"

PING=3
GONE_MARGIN=3       # seconds past the ping timeout for a lost client's locks to go (see above)
REOPEN_LIMIT_MS=1000
LOCKCHECK=$KB_REPO/tests/tools/kb-lockcheck.py

kb_vm_guest
kb_vm_cluster vm "$PING"
A=$KB_MNT_A
B=$KB_MNT_B
kb_vm_aio "$A/x"

# ---------------------------------------------------------------------------------------------
# Lock rules.

local_reference() {
    mkdir -p "$KB_TMP/local"
    local out
    out=$(kb_t 60 "$KB_PY" "$LOCKCHECK" all "$KB_TMP/local/lockf" "$KB_TMP/local/lockf" 2>&1) ||
        kb_fail "the lock checks fail on the local filesystem (a test bug):"$'\n'"$out"
    kb_log "local filesystem: $(grep -c '^ok' <<<"$out") scenarios ok"
}

lock_rule() {  # lock_rule SCENARIO: kb-lockcheck.py SCENARIO on a fresh file, A vs B
    local out rc=0
    out=$(kb_t 60 "$KB_PY" "$LOCKCHECK" "$1" "$A/lock-$1" "$B/lock-$1" 2>&1) || rc=$?
    printf '%s\n' "$out" | sed 's/^/    /' >&2
    [ "$rc" -eq 0 ] || kb_fail "$(grep -m1 '^FAIL' <<<"$out" || echo "kb-lockcheck.py $1: exit $rc: $out")"
}

# ---------------------------------------------------------------------------------------------
# qemu-io and qemu-img.

# img_locked IMG: qemu-img info (default locking) is refused for a lock.
img_locked() {
    local out
    out=$(kb_t 20 qemu-img info "$1" 2>&1) && return 1
    grep -q 'lock' <<<"$out"
}
img_info_ok() { kb_t 20 qemu-img info "$1" >/dev/null 2>&1; }
img_write_ok() { kb_t 20 qemu-io -t none -f qcow2 -c 'write -P 0x5a 128k 4k' "$1" >/dev/null 2>&1; }

# ms_until T0 LIMIT_S CMD...: poll CMD every 50 ms until it succeeds; print the milliseconds
# since T0 (date +%s%N); 1 if it did not succeed within LIMIT_S seconds of T0.
ms_until() {
    local t0=$1 limit=$2 now; shift 2
    while :; do
        if "$@" >/dev/null 2>&1; then
            echo $(( ($(date +%s%N) - t0) / 1000000 ))
            return 0
        fi
        now=$(date +%s%N)
        [ $(( (now - t0) / 1000000000 )) -ge "$limit" ] && return 1
        sleep 0.05
    done
}

# lock_seen IMG: qemu's lock bytes (100-299) of IMG are held by someone, by F_OFD_GETLK (which
# takes no lock: polling with qemu-img info would take qemu's locks and race the holder's open).
lock_seen() { [ "$(kb_t 10 "$KB_PY" "$LOCKCHECK" probe "$1" 100 200)" != U ]; }

# holder IMG: qemu-io in the background holding IMG (opened read-write, one write, then a long
# sleep); returns once its lock is seen through mount B. Its pid in HOLDER.
holder() {
    local img=$1
    qemu-io -t none -f qcow2 -c 'write -P 0xa5 0 64k' -c 'sleep 600000' "$img" \
        </dev/null >"$KB_TMP/holder.out" 2>&1 &
    HOLDER=$!
    echo "$HOLDER" >"$KB_TMP/pids/qemu-io-holder"
    echo "$HOLDER" >"$KB_VM/qemu-io-holder.pid"     # kb_vm_kill_all ends it with the section
    if ! kb_wait_until 10 lock_seen "$B/${img##*/}"; then
        kill -0 "$HOLDER" 2>/dev/null || kb_fail "qemu-io could not open $img: $(cat "$KB_TMP/holder.out")"
        kb_fail "qemu-io (pid $HOLDER) holds $img, but no lock is seen through mount B"
    fi
    img_locked "$B/${img##*/}" || kb_fail "qemu-img info through B is not refused while qemu-io holds $img"
}

qemu_io_kill9() {
    local img=qio.qcow2 t0 ms out
    kb_t 30 qemu-img create -f qcow2 "$A/$img" 64M >/dev/null
    holder "$A/$img"
    out=$(kb_t 20 qemu-io -t none -f qcow2 -c 'write 0 4k' "$B/$img" 2>&1) &&
        kb_fail "a write-open through B succeeded while qemu-io holds the image on A"
    kb_assert_match 'Failed to get "write" lock' "$out" "write-open through B while held"
    t0=$(date +%s%N)
    kill -KILL "$HOLDER"
    wait "$HOLDER" 2>/dev/null || true
    local what w f m res=""   # the times are from the kill, each check after the previous one
    for what in "qemu-img info via A:img_info_ok:$A" "qemu-img info via B:img_info_ok:$B" \
                "write-open via A:img_write_ok:$A" "write-open via B:img_write_ok:$B"; do
        IFS=: read -r w f m <<<"$what"
        if ! ms=$(ms_until "$t0" 5 "$f" "$m/$img"); then
            out=$(kb_t 20 qemu-img info "$m/$img" 2>&1 | head -1 || true)
            kb_fail "$w: still refused 5 s after qemu-io was killed -9: $out"
        fi
        res+="$w ${ms} ms; "
        kb_log "  $w: ok ${ms} ms after kill -9 of the holder"
        kb_assert_le "$ms" "$REOPEN_LIMIT_MS" "$w: ms after kill -9 of qemu-io"
    done
    kb_log "qemu-io killed -9: $res"
}

# ---------------------------------------------------------------------------------------------
# qemu-system.

# start_at_once NAME IMG [OPTS]: qemu must start at the first attempt (no retry).
start_at_once() {
    kb_vm_try_start "$@" || kb_fail "qemu $1 on $2 was refused: $KB_VM_ERR"
}

restart_rounds() {
    local img=rounds.qcow2 r m o name info
    kb_t 30 qemu-img create -f qcow2 "$A/$img" 64M >/dev/null
    for r in $(seq 1 10); do
        if [ $((r % 2)) = 1 ]; then m=$A; o=$B; else m=$B; o=$A; fi
        name=r$r
        if [ "$r" -lt 10 ]; then
            start_at_once "$name" "$m/$img" -S
            kb_vm_quit "$name"
        else
            # The last round boots for real and the guest powers itself off.
            start_at_once "$name" "$m/$img" -mode poweroff
            kb_vm_wait_serial "$name" '^KBPOWEROFF' 60
            kb_vm_wait_exit "$name" 30 || kb_fail "qemu $name did not exit after the guest powered off"
            kb_assert_eq 0 "$KB_VM_RC" "exit status of qemu after the guest's poweroff"
            kb_log "  round $r: guest booted ($(grep -a -m1 '^KBREADY' "$KB_VM/$name.serial" | tr -d '\r')) and powered off; qemu exit 0"
        fi
        [ "$KB_VM_RC" = 0 ] || kb_fail "round $r: qemu exit status $KB_VM_RC"
        info=$(kb_t 20 qemu-img info "$m/$img" 2>&1) || kb_fail "round $r: qemu-img info through the same mount after qemu exited: $info"
        info=$(kb_t 20 qemu-img info "$o/$img" 2>&1) || kb_fail "round $r: qemu-img info through the other mount after qemu exited: $info"
        kb_assert_match 'file format: qcow2' "$info" "qemu-img info"
        start_at_once "$name-same" "$m/$img" -S
        kb_vm_quit "$name-same"
        start_at_once "$name-other" "$o/$img" -S
        kb_vm_quit "$name-other"
        kb_log "round $r ok: start via ${m##*/}, exit, info via both, start again via ${m##*/} then ${o##*/}"
    done
}

second_refused() {
    local img=excl.qcow2 out
    kb_t 30 qemu-img create -f qcow2 "$A/$img" 64M >/dev/null
    start_at_once running "$A/$img" -S
    if kb_vm_try_start intruder-b "$B/$img" -S; then
        kb_fail "a second qemu on the image through mount B started while the first runs it"
    fi
    kb_assert_match 'Failed to get "write" lock' "$KB_VM_ERR" "second qemu through B"
    if kb_vm_try_start intruder-a "$A/$img" -S; then
        kb_fail "a second qemu on the image through mount A started while the first runs it"
    fi
    kb_assert_match 'Failed to get "write" lock' "$KB_VM_ERR" "second qemu through A"
    out=$(kb_t 20 qemu-io -t none -f qcow2 -c 'write 0 4k' "$B/$img" 2>&1) &&
        kb_fail "qemu-io write-open through B succeeded while qemu runs the image"
    kb_assert_match 'Failed to get "write" lock' "$out" "qemu-io through B"
    out=$(kb_t 20 qemu-img info -U "$B/$img" 2>&1) || kb_fail "qemu-img info -U (no locks) through B: $out"
    kb_assert_eq prelaunch "$(kb_vm_qmp running status)" "the first qemu (started with -S) is untouched"
    kb_vm_quit running
}

fuse_killed() {
    local img=lost.qcow2 fpid t0 ms out limit=$((PING + GONE_MARGIN))
    kb_t 30 qemu-img create -f qcow2 "$A/$img" 64M >/dev/null
    holder "$A/$img"
    fpid=$(kb__fuse_pid_for "$A") || kb_fail "no kembar-fuse process found for $A"
    t0=$(date +%s%N)
    kill -KILL "$fpid"
    kb_log "kembar-fuse of mount A (pid $fpid) killed -9 while qemu-io holds $img"
    # The hypervisor is lost: its qemu goes too (it can unlock nothing: its mount is dead).
    kill -KILL "$HOLDER"
    wait "$HOLDER" 2>/dev/null || true
    if ! ms=$(ms_until "$t0" "$limit" img_info_ok "$B/$img"); then
        out=$(kb_t 20 qemu-img info "$B/$img" 2>&1 | head -1 || true)
        kb_fail "qemu-img info via B still refused ${limit} s after mount A's kembar-fuse was killed (ping-timeout $PING + $GONE_MARGIN s): $out"
    fi
    kb_log "  qemu-img info via B: ok $ms ms after the kill"
    ms=$(ms_until "$t0" "$limit" img_write_ok "$B/$img") ||
        kb_fail "write-open via B still refused ${limit} s after mount A's kembar-fuse was killed"
    kb_log "  write-open via B: ok $ms ms after the kill (limit ping-timeout $PING s + $GONE_MARGIN s)"
    start_at_once after-loss "$B/$img" -S
    kb_vm_quit after-loss
    kb_umount "$A"
    kb_mount vm "$A"
    ms=$(ms_until "$(date +%s%N)" 5 img_write_ok "$A/$img") ||
        kb_fail "write-open via the re-mounted A refused 5 s after the qemu on B quit: $(kb_t 20 qemu-img info "$A/$img" 2>&1 | head -1)"
    kb_log "mount A re-mounted; the image opens through it ($ms ms)"
}

kb_section "lock rules on the local filesystem (the checks check)" local_reference
for s in ofd-close ofd-kill9 posix-close mixed flock-dup ofd-fork; do
    kb_section "lock rule through two mounts: $s" lock_rule "$s"
done
kb_vm_section "qemu-io killed -9: image opens through either mount within 1 s" qemu_io_kill9
kb_vm_section "qemu-system: quit / poweroff, info, start again, 10 rounds over both mounts" restart_rounds
kb_vm_section "qemu-system: a second qemu on a running image is refused" second_refused
kb_vm_section "kembar-fuse of the holder's mount killed: image opens through B within ping-timeout + ${GONE_MARGIN}s" fuse_killed
kb_done
