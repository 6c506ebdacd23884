#!/usr/bin/env bash
# 63-fuse-handover — kembar-fuse killed -9 or upgraded under running I/O, and nobody notices
# (issue 15; DESIGN §10 "a restart or upgrade of the client on a hypervisor never gives a guest
# an I/O error"). A replica 2 volume over two nodes, mounted with -o pid-file (mount A) and once
# more by a second kembar-fuse (mount B: another hypervisor). A "handover" below is either a
# kill -9 of the serving process named by the pid file (its supervisor starts another at once)
# or `kembar-fuse --restart MOUNTPOINT` (the binary installed now takes over).
#   - data: an O_DIRECT writer and a buffered writer with fsync (kb-pattern, journals of what was
#     acknowledged) and fio (O_DIRECT random 4 KiB writes, crc32c verify) write through mount A
#     while the serving process is killed -9 three times and replaced by --restart twice: no
#     writer sees an error, the longest single write stalls at most 2 s, every acknowledged block
#     reads back right through the mount, and both bricks end up identical;
#   - metadata: create (O_EXCL), rename, mkdir, symlink, link, unlink, rmdir in a loop across two
#     kill -9 and a --restart: no operation fails, no name is lost or doubled;
#   - node ids: files and directories the kernel knows from before (an open file, a directory
#     fd, a process's cwd inside the mount, names in the dentry cache) keep working after a kill
#     -9 and a --restart, and a listing is the same;
#   - locks: qemu-io holding an image (its OFD write lock) through mount A keeps it across a kill
#     -9 and a --restart: a second qemu-io through mount B is refused the write lock; once the
#     holder quits, B gets it;
#   - a real guest (qemu-system, cache=none, the test guest's writer mode) keeps writing across a
#     kill -9 and a --restart: no I/O error on its console, every acknowledged block reads back;
#   - 20 restarts in a row: no process or descriptor leaks (supervisor and serving process only,
#     the supervisor's descriptors unchanged), and umount ends them both; so does an umount while
#     the serving process is stopped (SIGSTOP).
# The stalls of each handover (time until a new serving process answers) are logged.
# kb-requires: fuse
set -eu
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source=tests/integration/vm.sh
. "$(dirname "$0")/vm.sh"

MAX_STALL_MS=2000
DUR=30
[ "$KB_LONG" = 1 ] && DUR=120
PAT=$KB_TMP/kb-pattern
cc -std=gnu11 -D_GNU_SOURCE -O2 -o "$PAT" "$KB_REPO/tests/tools/kb-pattern.c" || kb_fail "cannot build kb-pattern"
command -v fio >/dev/null || kb_fail "fio is not installed (scripts/deps.sh installs it)"

kb_node_start 1
kb_node_start 2
mapfile -t BR < <(kb_volume_up ho 1 2)
A=$KB_TMP/mnt-a
B=$KB_TMP/mnt-b
PIDF=$KB_TMP/fuse-a.pid
kb_mount ho "$A" "pid-file=$PIDF"
kb_mount ho "$B"
kb_wait_until 5 test -s "$PIDF" || kb_fail "no pid file $PIDF after the mount"
SUPER=$(awk '{print $4}' "/proc/$(cat "$PIDF")/stat")      # the serving process's parent
kb__cmdline_has "$SUPER" kembar-fuse || kb_fail "the serving process's parent $SUPER is not kembar-fuse"

serving() { cat "$PIDF" 2>/dev/null; }
serving_is_not() { local p; p=$(serving) && [ -n "$p" ] && [ "$p" != "$1" ] && kill -0 "$p" 2>/dev/null; }

# kill9: kill -9 the serving process; a new one must serve within 10 s (its pid in the pid file).
kill9() {
    local old t0
    old=$(serving) || kb_fail "no pid file $PIDF"
    kill -0 "$old" 2>/dev/null || kb_fail "the pid file names $old, which is not running"
    t0=$(date +%s%N)
    echo "$old" >>"$KB_TMP/killed"
    kill -KILL "$old"
    kb_wait_until 10 serving_is_not "$old" || kb_fail "no new serving process 10 s after kill -9 of $old"
    kb_log "  kill -9 of $old: $(serving) serves $(( ($(date +%s%N) - t0) / 1000000 )) ms later"
}

# restart: kembar-fuse --restart; the pid file must name the new process.
restart() {
    local old out t0
    old=$(serving)
    t0=$(date +%s%N)
    out=$(kb_t 60 "$KB_BIN/kembar-fuse" --restart "$A" 2>&1) || kb_fail "kembar-fuse --restart $A: $out"
    serving_is_not "$old" || kb_fail "--restart said '$out' but the pid file still names $old"
    kb_log "  --restart: $out ($(( ($(date +%s%N) - t0) / 1000000 )) ms)"
}

# handovers SPACING KIND...: each KIND (kill9 or restart) after SPACING seconds.
handovers() {
    local gap=$1 k; shift
    for k in "$@"; do
        sleep "$gap"
        "$k"
    done
}

healed() { [ "$(kb_cli_json 1 volume heal ho info | "$KB_PY" -c 'import json,sys; print(json.load(sys.stdin)["total_entries"])')" = 0 ]; }

# ---------------------------------------------------------------------------------------------

data_writers() {
    local d=$A/data w1=$KB_TMP/w-direct w2=$KB_TMP/w-buffered rc1=0 rc2=0 rc3=0 f stall
    mkdir -p "$d"
    "$PAT" write "$d/direct.img" --journal "$w1.journal" --size 32M --bs 4096 --seed 11 --direct \
        --duration "$DUR" --readback 20 >"$w1.out" 2>"$w1.err" &
    local p1=$!
    "$PAT" write "$d/buffered.img" --journal "$w2.journal" --size 16M --bs 65536 --seed 12 --fsync 4 \
        --duration "$DUR" --readback 20 >"$w2.out" 2>"$w2.err" &
    local p2=$!
    kb_t $((DUR + 120)) fio --name=ho --filename="$d/fio.dat" --size=32M --ioengine=libaio --direct=1 \
        --rw=randwrite --bs=4k --iodepth=16 --runtime="$DUR" --time_based --verify=crc32c \
        --verify_backlog=512 --verify_fatal=1 --verify_state_save=0 --output-format=json \
        >"$KB_TMP/fio.json" 2>"$KB_TMP/fio.err" &
    local p3=$!
    local gap=$(( DUR / 7 ))
    handovers "$gap" kill9 restart kill9 restart kill9
    wait "$p1" || rc1=$?
    wait "$p2" || rc2=$?
    wait "$p3" || rc3=$?
    kb_log "O_DIRECT writer: $(cat "$w1.out")"
    kb_log "buffered writer: $(cat "$w2.out")"
    for f in "$w1.err" "$w2.err" "$KB_TMP/fio.err"; do
        [ -s "$f" ] && sed 's/^/    | /' "$f" | head -10 >&2
    done
    kb_assert_eq 0 "$rc1" "O_DIRECT writer's exit status across the handovers"
    kb_assert_eq 0 "$rc2" "buffered writer's exit status across the handovers"
    kb_assert_eq 0 "$rc3" "fio's exit status across the handovers"
    kb_t 10 "$KB_PY" - "$KB_TMP/fio.json" <<'EOF'
import json, sys
text = open(sys.argv[1]).read()
doc = json.loads(text[text.index("{"):])
j = doc["jobs"][0]
w, r = j["write"]["total_ios"], j["read"]["total_ios"]
lat = j["write"].get("clat_ns", {}).get("max", 0) / 1e6
print("fio: error=%d writes=%d verify-reads=%d iops=%.0f max write latency %.0f ms" % (j["error"], w, r, j["write"]["iops"], lat), file=sys.stderr)
assert j["error"] == 0, "fio error %d" % j["error"]
assert w > 0 and r > 0, "fio did no writes or no verify reads"
EOF
    for f in "$w1" "$w2"; do
        stall=$(sed -n 's/.*max_stall_ms=\([0-9.]*\).*/\1/p' "$f.out")
        kb_assert_le "${stall%.*}" "$MAX_STALL_MS" "longest single write (ms) of $(basename "$f")"
        grep -q ' errors=0 ' "$f.out" || kb_fail "$(basename "$f"): write errors: $(cat "$f.out")"
    done
    "$PAT" verify "$d/direct.img" --journal "$w1.journal" --direct >"$KB_TMP/v1.out" ||
        kb_fail "verify O_DIRECT writer: $(cat "$KB_TMP/v1.out")"
    "$PAT" verify "$d/buffered.img" --journal "$w2.journal" >"$KB_TMP/v2.out" ||
        kb_fail "verify buffered writer: $(cat "$KB_TMP/v2.out")"
    kb_log "verify: $(cat "$KB_TMP/v1.out"); $(cat "$KB_TMP/v2.out")"
    kb_wait_until 60 healed || kb_fail "heal info not 0 within 60 s of the writers' end"
    for f in direct.img buffered.img fio.dat; do
        kb_assert_same_file "${BR[0]}/data/$f" "${BR[1]}/data/$f"
    done
}

# ---------------------------------------------------------------------------------------------

meta_loop() {
    kb_t $((DUR + 60)) "$KB_PY" - "$A/meta" "$1" <<'EOF'
import os, sys, time
root, dur = sys.argv[1], float(sys.argv[2])
os.mkdir(root)
P = lambda n: os.path.join(root, n)
want = set()
t_end, i = time.time() + dur, 0
try:
    while time.time() < t_end:
        i += 1
        fd = os.open(P("f%d" % i), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        os.write(fd, b"%d\n" % i)
        os.close(fd)
        os.rename(P("f%d" % i), P("g%d" % i))
        os.mkdir(P("d%d" % i))
        os.symlink("g%d" % i, P("s%d" % i))
        os.link(P("g%d" % i), P("h%d" % i))
        want |= {"g%d" % i, "d%d" % i, "s%d" % i, "h%d" % i}
        if i % 2 == 0:
            os.unlink(P("g%d" % i))
            os.rmdir(P("d%d" % i))
            os.unlink(P("s%d" % i))
            want -= {"g%d" % i, "d%d" % i, "s%d" % i}
except OSError as e:
    sys.exit("operation %d failed: %s" % (i, e))
got = set(os.listdir(root))
if got != want:
    sys.exit("names after %d rounds: missing %s, extra %s" % (i, sorted(want - got)[:10], sorted(got - want)[:10]))
for n in want:
    if n[0] in "gh":
        k = int(n[1:])
        if open(P(n), "rb").read() != b"%d\n" % k:
            sys.exit("%s holds %r" % (n, open(P(n), "rb").read()))
print("metadata: %d rounds, %d names, every operation succeeded" % (i, len(want)), file=sys.stderr)
EOF
}

metadata() {
    local secs=$((DUR / 2)) rc=0
    meta_loop "$secs" &
    local p=$!
    handovers $((secs / 4)) kill9 restart kill9
    wait "$p" || rc=$?
    kb_assert_eq 0 "$rc" "the metadata loop across the handovers"
}

# ---------------------------------------------------------------------------------------------

node_ids() {
    local t=$A/tree before after rc=0
    mkdir -p "$t/sub/deeper"
    echo one >"$t/sub/file"
    echo two >"$t/sub/deeper/other"
    before=$(cd "$t" && ls -laR --time-style=+%s . | sed 's/  */ /g')
    # A process that holds an open file, a directory fd and its cwd in the tree across the
    # handovers, then uses them (the kernel names all of them by node ids it got before).
    mkfifo "$KB_TMP/go"
    (cd "$t/sub" && exec "$KB_PY" - "$KB_TMP/go" <<'EOF'
import os, sys
f = os.open("file", os.O_RDWR)
d = os.open("deeper", os.O_RDONLY | os.O_DIRECTORY)
before = os.fstat(f)
open(sys.argv[1]).read()            # the handovers happen now
assert os.pread(f, 100, 0) == b"one\n", "read through the fd held across"
os.pwrite(f, b"ONE\n", 0)
st = os.fstat(f)
assert (st.st_ino, st.st_size) == (before.st_ino, before.st_size), "fstat after"
assert os.listdir(d) == ["other"], "listing through the directory fd"
g = os.open("other", os.O_RDONLY, dir_fd=d)
assert os.read(g, 100) == b"two\n", "openat relative to the held directory"
os.close(g)
assert open("deeper/other").read() == "two\n", "relative to the cwd"
assert os.stat(".").st_ino == os.stat("../sub").st_ino, "cwd"
os.mkdir("new", dir_fd=d)
os.close(d)
os.close(f)
print("node ids: open file, directory fd and cwd from before work", file=sys.stderr)
EOF
    ) &
    local p=$!
    sleep 1
    kill9
    restart
    echo go >"$KB_TMP/go"
    wait "$p" || rc=$?
    kb_assert_eq 0 "$rc" "the process holding files across the handovers"
    kb_assert_eq "ONE" "$(cat "$t/sub/file")" "the write through the held fd"
    [ -d "$t/sub/deeper/new" ] || kb_fail "mkdirat through the held directory fd did not make deeper/new"
    rmdir "$t/sub/deeper/new"
    echo one >"$t/sub/file"
    after=$(cd "$t" && ls -laR --time-style=+%s . | sed 's/  */ /g')
    # times of the directories changed (mkdir/rmdir, the write): compare names, modes and sizes
    kb_assert_eq "$(awk '{print $1, $5, $7}' <<<"$before")" "$(awk '{print $1, $5, $7}' <<<"$after")" \
        "ls -laR of the tree before and after the handovers"
}

# ---------------------------------------------------------------------------------------------

lock_seen() { [ "$(kb_t 10 "$KB_PY" "$KB_REPO/tests/tools/kb-lockcheck.py" probe "$1" 100 200)" != U ]; }

locks() {
    local img=lock.qcow2 out hp
    command -v qemu-io >/dev/null || kb_fail "qemu-io is not installed"
    kb_t 30 qemu-img create -f qcow2 "$A/$img" 64M >/dev/null
    qemu-io -t none -f qcow2 -c 'write -P 0xa5 0 64k' -c 'sleep 600000' "$A/$img" \
        </dev/null >"$KB_TMP/holder.out" 2>&1 &
    hp=$!
    echo "$hp" >"$KB_TMP/pids/qemu-io-holder"
    echo "$hp" >"$KB_VM/qemu-io-holder.pid"     # kb_vm_kill_all ends it with the section
    kb_wait_until 10 lock_seen "$B/$img" || kb_fail "qemu-io holds $A/$img but no lock is seen through B"
    kill9
    restart
    kill -0 "$hp" || kb_fail "qemu-io (the holder) died: $(cat "$KB_TMP/holder.out")"
    lock_seen "$B/$img" || kb_fail "after the handovers no lock is seen through B"
    out=$(kb_t 20 qemu-io -t none -f qcow2 -c 'write 0 4k' "$B/$img" 2>&1) &&
        kb_fail "a write-open through B succeeded while qemu-io holds the image through A (after the handovers)"
    kb_assert_match 'Failed to get "write" lock' "$out" "write-open through B after the handovers"
    kill -KILL "$hp"
    wait "$hp" 2>/dev/null || true
    kb_wait_until 5 kb_t 20 qemu-io -t none -f qcow2 -c 'write 0 4k' "$B/$img" ||
        kb_fail "B still cannot take the write lock 5 s after the holder was killed"
    kb_log "  the lock held through A stayed held across kill -9 and --restart, and went with its holder"
}

# ---------------------------------------------------------------------------------------------

guest() {
    local img=guest.qcow2 out blocks=64
    kb_vm_guest
    kb_t 30 qemu-img create -f qcow2 "$A/$img" 64M >/dev/null
    kb_vm_start g "$A/$img" -mode writer -append "kb.blocks=$blocks kb.delay=20000"
    kb_vm_wait_serial g '^KBW 20 ' 90
    local n0
    n0=$(kb_vm_acks g)
    kill9
    kb_wait_until 30 acks_more g $((n0 + 30)) || kb_fail "the guest wrote $(( $(kb_vm_acks g) - n0 )) blocks in 30 s after the kill -9"
    n0=$(kb_vm_acks g)
    restart
    kb_wait_until 30 acks_more g $((n0 + 30)) || kb_fail "the guest wrote $(( $(kb_vm_acks g) - n0 )) blocks in 30 s after the restart"
    kb_vm_quit g
    out=$(kb_vm_guest_errors "$KB_VM/g.serial")
    [ -z "$out" ] || kb_fail "guest I/O errors on its console:"$'\n'"$out"
    KB_VM_MAX_GAP=3 kb_vm_verify "$A/$img" "$blocks" "$KB_VM/g.serial"
    kb_log "  the guest acknowledged $(kb_vm_acks g) writes across a kill -9 and a --restart, none lost"
}
acks_more() { [ "$(kb_vm_acks "$1")" -ge "$2" ]; }

# ---------------------------------------------------------------------------------------------

fds_of() { ls "/proc/$1/fd" 2>/dev/null | wc -l; }
procs_of_mount() { kb__pids_naming "$A" | while read -r p; do kb__cmdline_has "$p" kembar-fuse && echo "$p"; done | wc -l; }

many_restarts() {
    local i sfd0 wfd0 sfd wfd
    sfd0=$(fds_of "$SUPER")
    wfd0=$(fds_of "$(serving)")
    for i in $(seq 1 20); do
        kb_t 60 "$KB_BIN/kembar-fuse" --restart "$A" >/dev/null || kb_fail "restart $i failed"
    done
    echo "after 20 restarts" >"$A/after20"
    kb_assert_eq "after 20 restarts" "$(cat "$A/after20")" "the mount after 20 restarts"
    sfd=$(fds_of "$SUPER")
    wfd=$(fds_of "$(serving)")
    kb_assert_eq 2 "$(procs_of_mount)" "kembar-fuse processes serving $A (supervisor + serving process)"
    kb_assert_eq "$sfd0" "$sfd" "descriptors of the supervisor before and after 20 restarts"
    kb_assert_le "$wfd" $((wfd0 + 4)) "descriptors of the serving process ($wfd0 after the first start)"
    kb_log "  20 restarts: supervisor $SUPER has $sfd descriptors (was $sfd0), the serving process $wfd (was $wfd0)"
    local last
    last=$(serving)
    kb_umount "$A"
    kb_wait_until 10 kb__pid_gone "$last" kembar-fuse || kb_fail "the serving process $last outlived the unmount"
    [ -e "$PIDF" ] && kb_fail "the pid file is still there after the unmount"
    return 0
}

# The supervisor learns of an unmount from its serving process (which reads ENODEV and exits), not
# by polling /dev/fuse (a poll there is woken by every request); one that is stopped or hung is
# covered by a look every second: mount B's serving process is stopped (SIGSTOP), B unmounted,
# and both processes must be gone within 20 s (the stopped one is killed at the end deadline).
unmount_under_a_stopped_process() {
    local p super="" srv="" key
    for p in $(kb__pids_naming "$B"); do
        kb__cmdline_has "$p" kembar-fuse || continue
        if kb__cmdline_has "$p" --serve; then srv=$p; else super=$p; fi
    done
    [ -n "$super" ] && [ -n "$srv" ] || kb_fail "no supervisor and serving process for $B ($super/$srv)"
    kill -STOP "$srv"
    kb_t 15 fusermount3 -u "$B" || kb_t 15 umount "$B" || kb_fail "cannot unmount $B"
    kb_wait_until 20 kb__pid_gone "$super" kembar-fuse ||
        { kill -CONT "$srv"; kb_fail "the supervisor $super still runs 20 s after $B was unmounted under a stopped serving process"; }
    kb_wait_until 5 kb__pid_gone "$srv" kembar-fuse || kb_fail "the stopped serving process $srv outlived its supervisor"
    key=$(echo "$B" | md5sum | cut -c1-12)
    rm -f "$KB_TMP/mounts/$key" "$KB_TMP/pids/fuse-$key"
    kb_log "  $B unmounted with its serving process stopped: supervisor and serving process gone"
}

# Every serving process that ended was one we killed; what the takeovers did.
logs_say() {
    local log ended bad n
    log=$(ls "$KB_TMP"/fuse-mnt-a-*.log)
    ended=$(grep -c 'serving process [0-9]* ended' "$log" || true)
    bad=$(grep 'serving process [0-9]* ended' "$log" | grep -v 'killed by signal 9' || true)
    [ -z "$bad" ] || kb_fail "a serving process ended by itself:"$'\n'"$bad"
    n=$(wc -l <"$KB_TMP/killed")
    kb_assert_eq "$n" "$ended" "serving processes that ended (all killed -9 by this test)"
    kb_log "  $n kill -9, $(grep -c 'replaced by' "$log") --restart; $(grep -c 'resent .* had taken effect' "$log") resent requests found their own work done, $(grep -c 'written again' "$log") takeovers wrote early-acknowledged writes again, $(grep -c 'never reached the kernel' "$log") stale handles released"
    kb_log "  takeover times: $(grep -o 'took the mount over: [0-9]* ms from its start' "$log" | awk '{print $5}' | sort -n | tr '\n' ' ')ms"
}

kb_section "data: writers and fio across 3 kill -9 and 2 --restart" data_writers
kb_section "metadata operations across kill -9 and --restart" metadata
kb_section "node ids, open files and directories from before a handover" node_ids
kb_vm_section "a qemu image lock stays held across kill -9 and --restart" locks
kb_vm_section "a real guest writes across kill -9 and --restart" guest
kb_section "20 restarts: no leaks; umount ends the supervisor" many_restarts
kb_section "an unmount under a stopped serving process ends the supervisor" unmount_under_a_stopped_process
kb_section "what the logs say: no serving process died by itself" logs_say
kb_done
