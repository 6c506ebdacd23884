# shellcheck shell=bash
#
# vm.sh — real qemu-system guests for the integration tests (issue 20), sourced after lib.sh.
#
# What it gives a test:
#   - kb_vm_guest: the tiny guest (Debian's kernel + a busybox initramfs, tests/tools/kb-guest.py),
#     built once per machine into /var/cache/kembar-test/guest ($KB_VM_CACHE) and reused;
#   - kb_vm_start / kb_vm_try_start NAME IMG [OPTIONS]: a qemu-system-x86_64 on IMG (qcow2, virtio,
#     cache=none, aio=io_uring, else native, default image locking), serial console to
#     $KB_VM/NAME.serial, QMP on $KB_VM/NAME.qmp, stderr in $KB_VM/NAME.err; returns once QMP
#     answers (so the image is open and locked), or fails with qemu's own error line;
#   - kb_vm_qmp NAME VERB...: tests/tools/kb-qmp.py on that qemu (status, stop, cont, quit,
#     migrate URI, cmd ...); kb_vm_quit, kb_vm_wait_exit, kb_vm_wait_serial;
#   - kb_vm_kill_all: every qemu this test started, TERM then KILL. It runs at the end of the
#     test BEFORE lib.sh's cleanup unmounts anything (a qemu holding an image on a mount would
#     otherwise keep the mount busy), and at the end of every kb_vm_section, so a failed section
#     never leaves a qemu holding an image lock for the next one;
#   - kb_vm_verify IMG BLOCKS LOG...: tests/tools/kb-vmverify.py on IMG converted to raw (every
#     write the writer guest acknowledged on any of the consoles reads back);
#   - kb_vm_section: kb_section whose qemus all end with it;
#   - kb_vm_cluster VOL PING: three nodes, VOL = replica 2 arbiter 1, mounted twice (KB_MNT_A,
#     KB_MNT_B: two hypervisors); kb_vm_heal_num / kb_vm_heal_paths read `heal info --json`.
#
# KB_VM_LOCKING=off (by hand only, never in a committed test): qemu's image locking off
# (file.locking=off), to tell a storage-path problem from a lock problem.
#
# Accelerator: KB_VM_ACCEL=tcg|kvm|auto (default auto: KVM when /dev/kvm exists and a guest really
# boots with it, probed once per host boot and remembered in the cache; TCG otherwise). Every
# time limit here is sized for TCG (qemu 7.2, one vCPU, 128 MiB): a qemu started with -S answers
# QMP in ~0.1 s; a boot reaches KBREADY ~6 s after qemu starts (2 s of guest uptime, the rest is
# firmware and kernel decompression); the writer then acknowledges ~25-35 writes/s.
#
# Processes: each qemu's pid is recorded in $KB_TMP/pids/qemu-NAME and its command line names
# $KB_TMP, so lib.sh's sweep (kb_sweep, the runner's --sweep) ends it even if this file's own
# cleanup never ran.

KB_VM=$KB_TMP/vm
KB_VM_CACHE=${KB_VM_CACHE:-/var/cache/kembar-test/guest}
KB_VM_QEMU=${KB_VM_QEMU:-qemu-system-x86_64}
KB_VM_MEM=${KB_VM_MEM:-128}
KB_VM_TOOLS=$KB_REPO/tests/tools
mkdir -p "$KB_VM"

command -v "$KB_VM_QEMU" >/dev/null || kb_fail "$KB_VM_QEMU is not installed (scripts/deps.sh installs qemu-system-x86)"
command -v qemu-img >/dev/null || kb_fail "qemu-img is not installed (scripts/deps.sh installs qemu-utils)"

# The EXIT trap: qemus first, then lib.sh's cleanup with the test's exit status intact.
kb__vm_exit() {
    local rc=$?
    trap - ERR
    set +e
    kb_vm_kill_all
    (exit "$rc")
    kb__cleanup
}
trap kb__vm_exit EXIT

# ---------------------------------------------------------------------------------------------
# The guest and the accelerator.

# kb_vm_guest: sets KB_VM_KERNEL and KB_VM_INITRD (building them the first time on this machine).
kb_vm_guest() {
    local out t0
    t0=$(date +%s%N)
    out=$(kb_t 600 "$KB_PY" "$KB_VM_TOOLS/kb-guest.py" --cache "$KB_VM_CACHE" 2>&1) ||
        kb_fail "cannot build the test guest: $out"
    KB_VM_KERNEL=$(sed -n 's/^KERNEL=//p' <<<"$out")
    KB_VM_INITRD=$(sed -n 's/^INITRD=//p' <<<"$out")
    [ -f "$KB_VM_KERNEL" ] && [ -f "$KB_VM_INITRD" ] || kb_fail "kb-guest.py printed no kernel/initrd: $out"
    kb_vm__accel
    kb_log "guest: $KB_VM_KERNEL, $(basename "$KB_VM_INITRD") (ready in $(( ($(date +%s%N) - t0) / 1000000 )) ms), accel $KB_VM_ACCEL_USED"
}

kb_vm__accel() {
    local want=${KB_VM_ACCEL:-auto} boot cached
    KB_VM_ACCEL_USED=tcg
    case "$want" in
        tcg) return 0 ;;
        kvm) KB_VM_ACCEL_USED=kvm; return 0 ;;
    esac
    [ -r /dev/kvm ] && [ -w /dev/kvm ] || return 0
    # /dev/kvm can be there and still not run a guest (nested virtualisation without the
    # features qemu wants): boot the guest once and see it power off.
    boot=$(cat /proc/sys/kernel/random/boot_id 2>/dev/null || echo unknown)
    cached=$KB_VM_CACHE/kvm-probe-$boot
    if [ ! -f "$cached" ]; then
        rm -f "$KB_VM_CACHE"/kvm-probe-*
        if kb_t 20 "$KB_VM_QEMU" -accel kvm -cpu host -m "$KB_VM_MEM" -nodefaults -display none \
                -no-reboot -serial "file:$KB_VM/kvm-probe.serial" -kernel "$KB_VM_KERNEL" \
                -initrd "$KB_VM_INITRD" -append "console=ttyS0 panic=-1 quiet kb.mode=poweroff" \
                </dev/null >"$KB_VM/kvm-probe.err" 2>&1 &&
            grep -q '^KBPOWEROFF' "$KB_VM/kvm-probe.serial"; then
            echo kvm >"$cached"
        else
            echo tcg >"$cached"
            kb_log "KVM probe failed (using TCG): $(head -c 300 "$KB_VM/kvm-probe.err" | tr '\n' ' ')"
        fi
    fi
    KB_VM_ACCEL_USED=$(cat "$cached")
}

# kb_vm_aio FILE: io_uring if qemu's block layer accepts it for an O_DIRECT open in FILE's
# directory, else native. Checked once (call it at the top level of the test: a section's
# subshell forgets); qemu-io is the same block layer as qemu-system.
kb_vm_aio() {
    [ -n "${KB_VM_AIO:-}" ] && return 0
    local probe
    probe=$(dirname "$1")/.kb-aio-probe
    KB_VM_AIO=native
    if kb_t 20 qemu-img create -f raw "$probe" 1M >/dev/null 2>&1 &&
        kb_t 20 qemu-io -f raw -t none -i io_uring -c 'write 0 4k' "$probe" >/dev/null 2>&1; then
        KB_VM_AIO=io_uring
    fi
    rm -f "$probe"
    kb_log "qemu aio for $(dirname "$1"): $KB_VM_AIO"
}

# ---------------------------------------------------------------------------------------------
# Starting and stopping qemu.

kb_vm_pid() { cat "$KB_VM/$1.pid" 2>/dev/null; }
# Not lib.sh's kb__pid_gone (command line check): right after the fork, before exec, the child's
# command line is still bash's. A qemu's pid is not reused before this test reaps it.
kb_vm__gone() { ! kill -0 "$1" 2>/dev/null || [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" = Z ]; }
kb_vm_alive() { local p; p=$(kb_vm_pid "$1") && [ -n "$p" ] && ! kb_vm__gone "$p"; }

# kb_vm_try_start NAME IMG [-S] [-mode MODE] [-incoming URI] [-append ARGS] [-qemu ARG...--]
#   -S            do not start the CPU (no boot; the image is opened and locked all the same)
#   -mode MODE    boot the guest in kb.mode=MODE (writer, poweroff, idle); default idle
#   -incoming URI wait for a migration on URI (unix:PATH)
#   -append ARGS  more kernel command line (kb.blocks=N kb.delay=USEC)
# Returns 0 once QMP answers; non-zero, with qemu's first error line in KB_VM_ERR, if qemu exits
# first (a refused image lock) or does not answer within 20 s.
kb_vm_try_start() {
    local name=$1 img=$2 mode=idle extra="" pid t0; shift 2
    local -a q=()
    while [ $# -gt 0 ]; do
        case "$1" in
            -S) q+=(-S) ;;
            -mode) mode=$2; shift ;;
            -incoming) q+=(-incoming "$2"); shift ;;
            -append) extra=$2; shift ;;
            *) kb_fail "kb_vm_try_start: unknown option $1" ;;
        esac
        shift
    done
    [ -n "${KB_VM_KERNEL:-}" ] || kb_vm_guest
    kb_vm_aio "$img"
    kb_vm_alive "$name" && kb_fail "kb_vm_try_start: a qemu named $name is still running (pid $(kb_vm_pid "$name"))"
    rm -f "$KB_VM/$name.qmp" "$KB_VM/$name.err"
    KB_VM_ERR=""
    local lockopt=""
    [ "${KB_VM_LOCKING:-on}" = off ] && lockopt=",file.locking=off"
    local -a accel=(-accel tcg)
    [ "${KB_VM_ACCEL_USED:-tcg}" = kvm ] && accel=(-accel kvm -cpu host)
    t0=$(date +%s%N)
    # The serial log is appended to: a second start of the same NAME keeps the first's lines.
    echo "=== kb_vm_start $name $(date +%T.%N) img=$img ${q[*]} mode=$mode" >>"$KB_VM/$name.serial"
    "$KB_VM_QEMU" "${accel[@]}" -m "$KB_VM_MEM" -smp 1 -nodefaults -display none -no-reboot \
        -name "kb-$name" \
        -chardev "file,id=ser0,path=$KB_VM/$name.serial,append=on" -serial chardev:ser0 \
        -qmp "unix:$KB_VM/$name.qmp,server=on,wait=off" \
        -kernel "$KB_VM_KERNEL" -initrd "$KB_VM_INITRD" \
        -append "console=ttyS0 panic=-1 quiet kb.mode=$mode $extra" \
        -drive "file=$img,format=qcow2,if=virtio,cache=none,aio=$KB_VM_AIO$lockopt" \
        "${q[@]}" </dev/null >"$KB_VM/$name.err" 2>&1 9>&- &
    pid=$!
    echo "$pid" >"$KB_VM/$name.pid"
    echo "$pid" >"$KB_TMP/pids/qemu-$name"
    while :; do
        if kb_vm__gone "$pid"; then
            wait "$pid" 2>/dev/null && KB_VM_RC=0 || KB_VM_RC=$?
            KB_VM_ERR=$(grep -m1 . "$KB_VM/$name.err" || echo "exit $KB_VM_RC, no message")
            rm -f "$KB_TMP/pids/qemu-$name"
            kb_log "qemu $name on $img did not start (exit $KB_VM_RC): $KB_VM_ERR"
            return 1
        fi
        if [ -S "$KB_VM/$name.qmp" ] && kb_t 5 "$KB_PY" "$KB_VM_TOOLS/kb-qmp.py" --timeout 2 \
                "$KB_VM/$name.qmp" status >/dev/null 2>&1; then
            break
        fi
        if [ $(( ($(date +%s%N) - t0) / 1000000000 )) -ge 20 ]; then
            KB_VM_ERR="QMP did not answer within 20 s"
            kb_log "qemu $name: $KB_VM_ERR"
            return 1
        fi
        sleep 0.05
    done
    KB_VM_START_MS=$(( ($(date +%s%N) - t0) / 1000000 ))
    kb_log "qemu $name up (pid $pid, $KB_VM_START_MS ms): $img ${q[*]} mode=$mode"
}

# kb_vm_start: kb_vm_try_start, and the test (section) fails if qemu did not start.
kb_vm_start() {
    kb_vm_try_start "$@" || kb__die "qemu $1 on $2 did not start: $KB_VM_ERR"
}

# kb_vm_qmp NAME VERB [ARGS...]: tests/tools/kb-qmp.py (see its header); its stdout is ours.
kb_vm_qmp() {
    local name=$1; shift
    kb_t 120 "$KB_PY" "$KB_VM_TOOLS/kb-qmp.py" --timeout "${KB_VM_QMP_TIMEOUT:-60}" "$KB_VM/$name.qmp" "$@"
}

# kb_vm_wait_exit NAME SECS: 0 once qemu NAME has exited (its exit status in KB_VM_RC when this
# shell started it, else "?"), 1 if it still runs after SECS.
kb_vm_wait_exit() {
    local pid
    pid=$(kb_vm_pid "$1") || return 0
    kb_wait_until "$2" kb_vm__gone "$pid" || return 1
    KB_VM_RC="?"
    wait "$pid" 2>/dev/null && KB_VM_RC=0 || { local r=$?; [ "$r" = 127 ] || KB_VM_RC=$r; }
    rm -f "$KB_TMP/pids/qemu-$1"
    return 0
}

# kb_vm_quit NAME: QMP quit; qemu must exit within 10 s (then KILL and fail).
kb_vm_quit() {
    local name=$1 out
    out=$(kb_vm_qmp "$name" quit 2>&1) || kb__die "QMP quit to $name failed: $out"
    if ! kb_vm_wait_exit "$name" 10; then
        kb_vm_kill "$name"
        kb__die "qemu $name still running 10 s after QMP quit"
    fi
    kb_log "qemu $name quit (exit $KB_VM_RC)"
}

# kb_vm_kill NAME [SIG]: TERM (or SIG), then KILL after 3 s.
kb_vm_kill() {
    local pid
    pid=$(kb_vm_pid "$1") || return 0
    if [ -n "${2:-}" ]; then
        kill "-$2" "$pid" 2>/dev/null
        kb_wait_until 5 kb_vm__gone "$pid" || true
    fi
    kb__kill_pid_checked "$pid" "$KB_TMP"
    wait "$pid" 2>/dev/null || true
    rm -f "$KB_TMP/pids/qemu-$1"
}

kb_vm_kill_all() {
    local f n
    for f in "$KB_VM"/*.pid; do
        [ -f "$f" ] || continue
        n=$(basename "$f" .pid)
        kb_vm_alive "$n" && kb_vm_kill "$n"
    done
    return 0
}

# kb_vm_wait_serial NAME ERE SECS: wait until a line of NAME's serial log matches ERE; fail
# early, with the log's tail, if qemu exits or SECS pass.
kb_vm_wait_serial() {
    local name=$1 re=$2 secs=$3 limit
    limit=$(( $(date +%s%N) + secs * 1000000000 ))
    while ! grep -aEq -- "$re" "$KB_VM/$name.serial" 2>/dev/null; do
        if ! kb_vm_alive "$name"; then
            # It may have printed the line and exited (poweroff): look once more.
            grep -aEq -- "$re" "$KB_VM/$name.serial" 2>/dev/null && return 0
            kb__log_tail "$KB_VM/$name.serial" 10
            kb__die "qemu $name exited before its console showed /$re/ ($(head -c 300 "$KB_VM/$name.err"))"
        fi
        if [ "$(date +%s%N)" -ge "$limit" ]; then
            kb__log_tail "$KB_VM/$name.serial" 10
            kb__die "qemu $name: console did not show /$re/ within ${secs}s"
        fi
        sleep 0.1
    done
}

# kb_vm_acks NAME: how many writes the guest acknowledged on NAME's console.
kb_vm_acks() { grep -acE '^KBW [0-9]+ [0-9]+' "$KB_VM/$1.serial" || true; }

# kb_vm_guest_errors LOG...: print the guest I/O error lines of the logs (none: prints nothing).
kb_vm_guest_errors() { grep -aE 'KBERR|I/O error|blk_update_request|Buffer I/O error' "$@" || true; }

# kb_vm_verify IMG BLOCKS LOG...: convert IMG to raw and check every acknowledged block
# (KB_VM_MAX_GAP=S: and that no two acknowledgements on one console are more than S apart).
kb_vm_verify() {
    local img=$1 blocks=$2 raw=$KB_VM/verify.raw out; shift 2
    local -a gap=()
    [ -n "${KB_VM_MAX_GAP:-}" ] && gap=(--max-gap "$KB_VM_MAX_GAP")
    out=$(kb_t 120 qemu-img convert -O raw "$img" "$raw" 2>&1) || kb__die "qemu-img convert $img: $out"
    out=$(kb_t 60 "$KB_PY" "$KB_VM_TOOLS/kb-vmverify.py" --image "$raw" --blocks "$blocks" "${gap[@]}" "$@" 2>&1) ||
        { rm -f "$raw"; kb__die "guest data check failed: $out"; }
    rm -f "$raw"
    kb_log "guest data: $out"
}

# kb_vm_section NAME FUNC [ARGS...]: kb_section, and every qemu the section started is ended
# when it ends, passed or failed.
kb_vm_section() {
    local name=$1; shift
    kb_section "$name" kb__vm_section_run "$@"
}
kb__vm_section_run() {
    trap 'kb_vm_kill_all' EXIT
    "$@"
}

# ---------------------------------------------------------------------------------------------
# The cluster both VM tests use: two hypervisors on a replica 2 arbiter 1 volume.

# kb_vm_cluster VOL PING: nodes 1-3 started, VOL = replica 2 arbiter 1 (data on nodes 1 and 2,
# arbiter on node 3), network.ping-timeout PING, started, and mounted twice by two kembar-fuse
# processes: KB_MNT_A and KB_MNT_B (the two hypervisors). Brick paths in KB_BRICK[1..3].
kb_vm_cluster() {
    local vol=$1 ping=$2 n
    declare -g -a KB_BRICK=()
    for n in 1 2 3; do kb_node_start "$n"; done
    for n in 1 2 3; do KB_BRICK[n]=$(kb_brick_path "$n" "$vol"); done
    kb_cli 1 volume create "$vol" replica 2 arbiter 1 "$(kb_brick 1 "${KB_BRICK[1]}")" \
        "$(kb_brick 2 "${KB_BRICK[2]}")" "$(kb_brick 3 "${KB_BRICK[3]}")" force >&2 ||
        kb_fail "volume create $vol replica 2 arbiter 1 failed"
    kb_cli 1 volume set "$vol" network.ping-timeout "$ping" >&2 || kb_fail "volume set network.ping-timeout failed"
    kb_cli 1 volume start "$vol" >&2 || kb_fail "volume start $vol failed"
    KB_MNT_A=$KB_TMP/mnt-a
    KB_MNT_B=$KB_TMP/mnt-b
    kb_mount "$vol" "$KB_MNT_A"
    kb_mount "$vol" "$KB_MNT_B"
}

# kb_vm_heal_num VOL KEY: a number from `volume heal VOL info --json` (asked to node 1).
kb_vm_heal_num() {
    kb_cli_json 1 volume heal "$1" info | "$KB_PY" -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$2"
}
# kb_vm_heal_paths VOL: the paths heal info lists, over all bricks, one per line, sorted.
kb_vm_heal_paths() {
    kb_cli_json 1 volume heal "$1" info | "$KB_PY" -c '
import json, sys
doc = json.load(sys.stdin)
print("\n".join(sorted({e.get("path", e.get("gfid", "?")) if isinstance(e, dict) else str(e)
                        for b in doc.get("bricks", []) for e in b.get("list", [])})))'
}
