#!/usr/bin/env bash
# 59-vm-migrate — a real guest live-migrated between two hypervisors (two mounts) with qemu's
# default image locking, and `heal info` while VMs write (issue 20, DESIGN §5, §6, §10).
# A replica 2 arbiter 1 volume over three nodes, network.ping-timeout 3, mounted twice (A, B).
#   - live migration: the test guest (tests/tools/kb-guest-init.sh, kb.mode=writer: numbered 4 KiB
#     blocks written O_DIRECT to its virtio disk, cache=none, each acknowledged on the serial
#     console) boots from mount A; a destination qemu waits (-incoming) on the same image through
#     mount B; migrate: it completes and the destination RUNS (query-status running, new
#     acknowledgements on its console). Node 2 (a data node) is killed -9 and the guest keeps
#     writing; node 2 is restarted and the heal finishes (heal info 0) while the guest writes;
#     then back from B to A, and the guest runs there. Finally the guest is stopped (quit) and:
#     no guest I/O error on any console, every acknowledged block reads back with its last
#     generation (tests/tools/kb-vmverify.py), `qemu-img check` passes, both data bricks hold
#     the same bytes, the arbiter's copy holds none. Migration time and downtime are logged for
#     each direction;
#   - heal info while writing: fio (O_DIRECT 4 KiB random writes) through mount A; with every
#     node up, heal info shows 0 entries in every sample over 5 s (a file being written in sync is
#     not "pending"); with node 2 down it lists the file; after node 2 returns and the heal is
#     done, 0 again while fio keeps writing.
# kb-requires: fuse
set -eu
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source=tests/integration/vm.sh
. "$(dirname "$0")/vm.sh"

PING=3
BLOCKS=64           # the guest writes blocks 0..63 in turn, over and over (generation 1, 2, ...)
DELAY=20000         # microseconds between two guest writes (TCG: ~15-30 writes/s)
HEAL_LIMIT=${KB_HEAL_LIMIT:-45}
MAX_GAP=$((PING + 2))  # seconds the guest may wait for one write (a replica's loss is noticed
                       # within the ping timeout; normally a write takes ~0.05 s under TCG)

kb_vm_guest
kb_vm_cluster vm "$PING"
A=$KB_MNT_A
B=$KB_MNT_B
kb_vm_aio "$A/x"

healed() { [ "$(kb_vm_heal_num vm total_entries)" = 0 ]; }

acks_ge() { [ "$(kb_vm_acks "$1")" -ge "$2" ]; }
# grows NAME N SECS: the guest on qemu NAME acknowledges N more writes within SECS.
grows() {
    local name=$1 n=$2 secs=$3 from
    from=$(kb_vm_acks "$name")
    kb_wait_until "$secs" acks_ge "$name" $((from + n)) ||
        kb_fail "the guest on $name acknowledged $(( $(kb_vm_acks "$name") - from )) writes in ${secs}s, want $n (status $(kb_vm_qmp "$name" status 2>&1); console: $(tail -n 3 "$KB_VM/$name.serial" | tr '\r\n' '  '))"
}

dest_settled() { grep -q . "$KB_VM/$1.err" || [ "$(kb_vm_qmp "$1" status 2>/dev/null)" = running ]; }

# migrate FROM TO IMG_ON_TO LABEL: TO waits on IMG_ON_TO (-incoming), FROM migrates to it; TO
# must run and its guest write; FROM quits.
migrate() {
    local from=$1 to=$2 img=$3 label=$4 sock out st
    sock=$KB_VM/mig-$to.sock
    kb_vm_start "$to" "$img" -incoming "unix:$sock"
    kb_assert_eq inmigrate "$(kb_vm_qmp "$to" status)" "status of the destination before the migration"
    out=$(kb_vm_qmp "$from" migrate "unix:$sock" 2>&1) || kb_fail "migration $label failed: $out"
    kb_log "migration $label: $out"
    MIG_LOG+="$label: $out; "
    # The destination runs once it has taken the image over (qemu's write lock); if it cannot,
    # it says so on stderr and stays paused: no point waiting then.
    if ! kb_wait_until 20 dest_settled "$to" || [ "$(kb_vm_qmp "$to" status 2>&1)" != running ]; then
        st=$(kb_vm_qmp "$to" status 2>&1 || true)
        kb_fail "migration $label completed but the destination does not run (status $st): $(head -c 400 "$KB_VM/$to.err")"
    fi
    kb_assert_eq postmigrate "$(kb_vm_qmp "$from" status)" "status of the source after the migration"
    grows "$to" 10 30
    kb_log "the guest runs on $to (${img%/*}): $(kb_vm_acks "$to") writes acknowledged there so far"
    kb_vm_quit "$from"
}

round_trip() {
    local img=vm-100-disk-0.qcow2 t0 out ms b1 b2 b3
    MIG_LOG=""
    kb_t 30 qemu-img create -f qcow2 "$A/$img" 64M >/dev/null
    kb_vm_start a1 "$A/$img" -mode writer -append "kb.blocks=$BLOCKS kb.delay=$DELAY"
    kb_vm_wait_serial a1 '^KBREADY' 60
    kb_vm_wait_serial a1 '^KBW 20 ' 60
    kb_log "guest booted on a1 and writes: $(grep -a -m1 '^KBREADY' "$KB_VM/a1.serial" | tr -d '\r') (seconds of guest uptime)"

    migrate a1 b1 "$B/$img" "A->B"

    kb_node_kill 2
    grows b1 60 60
    kb_log "the guest wrote 60 blocks with node 2 down"
    t0=$(date +%s%N)
    kb_node_start 2
    if ! kb_wait_until "$HEAL_LIMIT" healed; then
        kb_cli 1 volume heal vm info >&2 || true
        kb_fail "heal info did not reach 0 entries within ${HEAL_LIMIT}s of node 2's restart while the guest writes"
    fi
    ms=$(( ($(date +%s%N) - t0) / 1000000 ))
    kb_log "heal done (heal info 0) $ms ms after node 2 was restarted, guest writing"
    grows b1 10 30

    migrate b1 a2 "$A/$img" "B->A"
    grows a2 20 30
    kb_vm_quit a2

    local logs=("$KB_VM/a1.serial" "$KB_VM/b1.serial" "$KB_VM/a2.serial")
    out=$(kb_vm_guest_errors "${logs[@]}")
    [ -z "$out" ] || kb_fail "guest I/O errors on the consoles:"$'\n'"$out"
    KB_VM_MAX_GAP=$MAX_GAP kb_vm_verify "$A/$img" "$BLOCKS" "${logs[@]}"
    out=$(kb_t 60 qemu-img check "$A/$img" 2>&1) || kb_fail "qemu-img check: $out"
    kb_assert_match 'No errors were found' "$out" "qemu-img check"
    kb_wait_until 30 healed || kb_fail "heal info not 0 within 30 s of the guest's stop: $(kb_vm_heal_paths vm | tr '\n' ' ')"
    b1=${KB_BRICK[1]}/$img b2=${KB_BRICK[2]}/$img b3=${KB_BRICK[3]}/$img
    kb_assert_same_file "$b1" "$b2"
    [ -e "$b3" ] || kb_fail "the arbiter has no entry for $img"
    kb_assert_le "$(stat -c %b "$b3")" 8 "blocks (512 B) of the image on the arbiter brick (it holds no data)"
    [ "$(stat -c %s "$b3")" = 0 ] || cmp -s -n "$(stat -c %s "$b3")" "$b3" /dev/zero ||
        kb_fail "the arbiter's copy of $img holds data ($(stat -c %s "$b3") bytes)"
    kb_log "data bricks identical (sha256 $(kb_sha "$b1" | cut -c1-16)), arbiter copy: $(stat -c '%s bytes, %b blocks' "$b3")"
    kb_log "migrations: $MIG_LOG"
}

# ---------------------------------------------------------------------------------------------

# heal_samples N GAP: N samples of total_entries, GAP seconds apart, space-separated.
heal_samples() {
    local i s=""
    for i in $(seq 1 "$1"); do
        s+="$(kb_vm_heal_num vm total_entries) "
        [ "$i" -lt "$1" ] && sleep "$2"
    done
    echo "${s% }"
}
all_zero() { [ -z "$(tr -d ' 0' <<<"$1")" ]; }
lists_file() { kb_vm_heal_paths vm | grep -qx "/$1"; }

heal_info_while_writing() {
    local f=fio-heal.img pid s t0 ms
    local -a bad=()
    truncate -s 64M "$A/$f"
    kb_wait_until 20 healed || kb_fail "heal info not 0 before the writer started: $(kb_vm_heal_paths vm | tr '\n' ' ')"
    fio --name=heal --filename="$A/$f" --size=64M --ioengine=libaio --direct=1 --rw=randwrite \
        --bs=4k --iodepth=4 --rate_iops=100 --time_based --runtime=240 --output-format=json \
        </dev/null >"$KB_TMP/fio-heal.json" 2>"$KB_TMP/fio-heal.err" &
    pid=$!
    echo "$pid" >"$KB_TMP/pids/fio-heal"
    sleep 2
    kill -0 "$pid" 2>/dev/null || kb_fail "fio exited at once: $(head -c 400 "$KB_TMP/fio-heal.err")"

    s=$(heal_samples 6 1)
    kb_log "all nodes up, fio writing: heal info total_entries samples: $s"
    all_zero "$s" || bad+=("all nodes up, fio writing: heal info shows entries in samples [$s] (want 0: the file is only being written, in sync): $(kb_vm_heal_paths vm | tr '\n' ' ')")

    kb_node_kill 2
    if kb_wait_until 10 lists_file "$f"; then
        kb_log "node 2 down: heal info lists /$f"
    else
        bad+=("node 2 down, fio writing: heal info does not list /$f within 10 s (lists: $(kb_vm_heal_paths vm | tr '\n' ' '))")
    fi
    sleep 2
    t0=$(date +%s%N)
    kb_node_start 2
    if kb_wait_until "$HEAL_LIMIT" healed; then
        ms=$(( ($(date +%s%N) - t0) / 1000000 ))
        kb_log "node 2 back: heal info 0 after $ms ms, fio writing"
        s=$(heal_samples 4 1)
        kb_log "after the heal, fio writing: heal info total_entries samples: $s"
        all_zero "$s" || bad+=("after the heal, fio writing: heal info shows entries again in samples [$s]")
    else
        bad+=("node 2 back, fio writing: heal info did not reach 0 within ${HEAL_LIMIT}s (now $(kb_vm_heal_num vm total_entries): $(kb_vm_heal_paths vm | tr '\n' ' '))")
    fi
    kill -0 "$pid" 2>/dev/null || bad+=("fio stopped before the end of the checks: $(head -c 400 "$KB_TMP/fio-heal.err")")

    kill -TERM "$pid" 2>/dev/null || true
    local rc=0
    wait "$pid" || rc=$?
    [ "$rc" = 128 ] && rc=0         # fio's exit status after it ended on our signal
    rm -f "$KB_TMP/pids/fio-heal"
    kb_t 10 "$KB_PY" - "$KB_TMP/fio-heal.json" <<'EOF' || bad+=("fio: $(head -c 400 "$KB_TMP/fio-heal.err")")
import json, sys
text = open(sys.argv[1]).read()
j = json.loads(text[text.index("{"):])["jobs"][0]
print("fio: error=%d writes=%d iops=%.0f" % (j["error"], j["write"]["total_ios"], j["write"]["iops"]), file=sys.stderr)
assert j["error"] == 0 and j["write"]["total_ios"] > 0
EOF
    [ "$rc" = 0 ] || bad+=("fio exit status $rc")
    if kb_wait_until 30 healed; then
        kb_assert_same_file "${KB_BRICK[1]}/$f" "${KB_BRICK[2]}/$f"
    else
        bad+=("heal info not 0 within 30 s after fio stopped")
    fi
    if [ ${#bad[@]} -gt 0 ]; then
        printf '    %s\n' "${bad[@]}" >&2
        kb_fail "${#bad[@]} heal info check(s) failed; the first: ${bad[0]}"
    fi
}

kb_vm_section "live migration A->B and back (default locking), data node killed and restarted in between" round_trip
kb_section "heal info while fio writes: 0 with all nodes up, the file with a node down, 0 after the heal" heal_info_while_writing
kb_done
