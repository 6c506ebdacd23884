#!/usr/bin/env bash
# 28-open-unlinked — a file unlinked, or renamed over, while it is open lives until its last close,
# as on ext4 (issue 14): through a replica 2 mount, fstat on the open descriptor gives st_nlink 0
# and the right size, read/write/ftruncate/fsync keep working, the other mount no longer sees
# the name, and once the descriptor is closed neither brick keeps the object (no orphan handle).
# Across a brick restart (storage/posix orphan.c): node 2 killed -9 and started again while the
# file is open and unlinked; both bricks keep it by gfid (handle + .kembar/unlinked marker), the
# client reopens it there, heal brings node 2's copy up to date, writes/ftruncate/fsync go on
# with the right content (sha256 of the descriptor's model = of both bricks' copies), and its
# close removes it from both. A crash case: closed while node 2 is down, node 2's leftover goes
# once the orphan grace (storage.orphan-grace) runs out, and heal info never counts it. A handover
# case: the serving process of the mount holding the file is killed -9; its successor reopens the
# file by gfid, which the bricks kept although its old connections went.
# kb-requires: fuse
set -eu
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"

kb_node_start 1
kb_node_start 2
B1=$(kb_brick_path 1 ou)
B2=$(kb_brick_path 2 ou)
GRACE=10      # storage.orphan-grace: long enough for the client to reconnect after a restart
kb_cli 1 volume create ou replica 2 "$(kb_brick 1 "$B1")" "$(kb_brick 2 "$B2")" force >/dev/null
kb_cli 1 volume set ou storage.orphan-grace "$GRACE" >/dev/null
kb_cli 1 volume start ou >/dev/null
A=$KB_TMP/a
B=$KB_TMP/b
kb_mount ou "$A"
kb_mount ou "$B"

# regular-file gfid handles on both bricks (an orphan would stay here)
handles() { find "$B1/.kembar/handles" "$B2/.kembar/handles" -type f 2>/dev/null | wc -l; }

run_case() {  # run_case unlink|rename
    local how=$1 before out
    before=$(handles)
    out=$(kb_t 30 "$KB_PY" - "$A" "$how" <<'EOF'
import os, sys
mnt, how = sys.argv[1], sys.argv[2]
p = os.path.join(mnt, "t-" + how)
fd = os.open(p, os.O_CREAT | os.O_RDWR | os.O_TRUNC, 0o644)
os.write(fd, b"k" * 5000)
os.fsync(fd)
if how == "unlink":
    os.unlink(p)
else:
    with open(p + ".new", "wb") as f:
        f.write(b"new")
    os.rename(p + ".new", p)                     # renamed over the open file
st = os.fstat(fd)
assert st.st_nlink == 0, "fstat st_nlink %d after %s, want 0" % (st.st_nlink, how)
assert st.st_size == 5000, "fstat size %d" % st.st_size
assert os.pread(fd, 5000, 0) == b"k" * 5000, "read back"
assert os.pwrite(fd, b"z" * 100, 5000) == 100
os.ftruncate(fd, 3000)
os.fsync(fd)
assert os.fstat(fd).st_size == 3000, "size after ftruncate %d" % os.fstat(fd).st_size
assert os.pread(fd, 4000, 0) == b"k" * 3000, "content after ftruncate"
print("ok")
os.close(fd)
EOF
    ) || kb_fail "open-$how file: $out"
    kb_assert_eq ok "$out" "open-$how file through the mount"
    if [ "$how" = unlink ]; then
        [ ! -e "$B/t-unlink" ] || kb_fail "the other mount still sees the unlinked name"
    else
        kb_assert_eq new "$(cat "$B/t-rename")" "the name holds the new file on the other mount"
    fi
    # the closed object is gone from both bricks; a rename leaves the new file (one handle per brick)
    local want=$before
    [ "$how" = rename ] && want=$((before + 2))
    kb_wait_until 10 test "$(handles)" -le "$want" || kb_fail "orphan handles left after the last close ($how): $(handles) > $want"
}

kb_section unlink run_case unlink
kb_section rename run_case rename

# ---- across a brick restart ----

heal_num() {  # heal_num KEY: a number of `volume heal ou info --json` (asked to node 1)
    kb_cli_json 1 volume heal ou info | "$KB_PY" -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"
}
healed() { [ "$(heal_num total_entries)" = 0 ]; }

# The holder: a process keeping one file open on the mount across the steps of a section, driven
# line by line as a coprocess; it keeps a model of what the file must hold. Every command answers
# one line: "ok", the check line, or "ERR ...".
#   w OFF LEN SEED  pwrite LEN pseudo-random bytes (Random(SEED)) at OFF     t SIZE  ftruncate
#   s               fsync                                                     x       close, exit
#   c               "nlink=N size=S sha=H ok|DIFFERS": fstat, and the whole file read back through
#                   the descriptor compared with the model (H: the model's sha256)
cat >"$KB_TMP/holder.py" <<'EOF'
import hashlib, os, random, sys
fd = os.open(sys.argv[1], os.O_CREAT | os.O_RDWR | os.O_TRUNC, 0o644)
model = bytearray()
def out(s):
    print(s, flush=True)
out("ok")
for line in sys.stdin:
    a = line.split()
    try:
        if a[0] == "w":
            off, n, seed = int(a[1]), int(a[2]), int(a[3])
            data = random.Random(seed).randbytes(n)
            assert os.pwrite(fd, data, off) == n, "short write"
            model.extend(bytes(max(0, off + n - len(model))))
            model[off:off + n] = data
            out("ok")
        elif a[0] == "t":
            n = int(a[1])
            os.ftruncate(fd, n)
            del model[n:]
            model.extend(bytes(n - len(model)))
            out("ok")
        elif a[0] == "s":
            os.fsync(fd)
            out("ok")
        elif a[0] == "c":
            st = os.fstat(fd)
            got = bytearray()
            while len(got) < st.st_size:
                chunk = os.pread(fd, min(1 << 20, st.st_size - len(got)), len(got))
                if not chunk:
                    break
                got += chunk
            same = st.st_size == len(model) and got == model
            out("nlink=%d size=%d sha=%s %s" % (st.st_nlink, st.st_size, hashlib.sha256(model).hexdigest(),
                                               "ok" if same else "DIFFERS"))
        elif a[0] == "x":
            os.close(fd)
            out("ok")
            break
        else:
            out("ERR unknown command %r" % a[0])
    except Exception as e:
        out("ERR %s: %s" % (type(e).__name__, e))
EOF

hold_start() {  # hold_start PATH: open PATH (created, truncated) in a new holder
    coproc HOLD { kb_t 300 "$KB_PY" "$KB_TMP/holder.py" "$1" 2>&1; }
    hold_ok
}
hold_reply() {  # the holder's answer to the last command
    local line
    IFS= read -r -t 60 line <&"${HOLD[0]}" || kb_fail "the holder did not answer"
    echo "$line"
}
hold() { echo "$*" >&"${HOLD[1]}"; hold_reply; }
hold_ok() {  # hold_ok [CMD...]: send CMD (none: the opening), it must answer ok
    local r
    if [ $# -gt 0 ]; then r=$(hold "$@"); else r=$(hold_reply); fi
    [ "$r" = ok ] || kb_fail "holder: '${*:-open}' answered: $r"
}
# hold_check SIZE: the descriptor shows nlink 0 and SIZE, and reads back the model; prints its sha256.
hold_check() {
    local r
    r=$(hold c)
    kb_assert_match "^nlink=0 size=$1 sha=[0-9a-f]{64} ok$" "$r" "fstat and read back through the descriptor"
    r=${r#*sha=}
    echo "${r%% *}"
}

gfid_of() {  # the gfid (uuid form) of a file on a brick
    "$KB_PY" -c 'import os, sys, uuid; print(uuid.UUID(bytes=os.getxattr(sys.argv[1], "trusted.kembar.gfid")))' "$1"
}
handle_of() { echo "$1/.kembar/handles/${2:0:2}/${2:2:2}/$2"; }   # handle_of BRICK GFID
marker_of() { echo "$1/.kembar/unlinked/$2"; }
none_of() { local f; for f in "$@"; do [ ! -e "$f" ] || return 1; done; }

restart_case() {
    local g h1 h2 m1 m2 sha t0 f
    hold_start "$A/t-restart"
    hold_ok w 0 1048576 1
    hold_ok s
    g=$(gfid_of "$B1/t-restart")
    h1=$(handle_of "$B1" "$g") h2=$(handle_of "$B2" "$g") m1=$(marker_of "$B1" "$g") m2=$(marker_of "$B2" "$g")
    rm "$A/t-restart"
    hold_check 1048576 >/dev/null
    [ ! -e "$B/t-restart" ] || kb_fail "the other mount still sees the unlinked name"
    for f in "$B1/t-restart" "$B2/t-restart"; do [ ! -e "$f" ] || kb_fail "$f: the name is still on the brick"; done
    for f in "$h1" "$h2" "$m1" "$m2"; do [ -e "$f" ] || kb_fail "$f missing: open and unlinked, the brick keeps it"; done

    kb_node_kill 2
    hold_ok w 524288 262144 2                          # node 2 misses these
    hold_ok s
    hold_check 1048576 >/dev/null
    [ -f "$h2" ] && [ -e "$m2" ] || kb_fail "node 2's copy went with its kembard"
    t0=$(date +%s)
    kb_node_start 2
    kb_wait_until 40 healed || kb_fail "heal info not empty 40 s after node 2 came back: $(kb_cli 1 volume heal ou info)"
    # Past the grace since node 2 started: its copy stays (the client reopened it there).
    while [ $(( $(date +%s) - t0 )) -le $((GRACE + 1)) ]; do sleep 0.5; done
    for f in "$h1" "$h2" "$m1" "$m2"; do [ -e "$f" ] || kb_fail "$f gone while the file is open (reopened after the restart)"; done
    sha=$(hold_check 1048576)
    kb_assert_eq "$sha" "$(kb_sha "$h1")" "node 1's copy holds every write"
    kb_assert_eq "$sha" "$(kb_sha "$h2")" "node 2's copy, healed by gfid, holds every write"
    kb_assert_nomatch "t-restart" "$(ls -a "$B1" "$B2" "$B")" "no name came back"

    hold_ok w 1000000 300000 3                         # both copies again, then shrink
    hold_ok t 1200000
    hold_ok s
    sha=$(hold_check 1200000)
    kb_assert_eq "$sha" "$(kb_sha "$h1")" "node 1's copy after the restart's writes"
    kb_assert_eq "$sha" "$(kb_sha "$h2")" "node 2's copy after the restart's writes"
    hold_ok x
    wait "$HOLD_PID" 2>/dev/null || true
    kb_wait_until 10 none_of "$h1" "$h2" "$m1" "$m2" || kb_fail "the last close left the object on a brick"
    healed || kb_fail "heal info not empty after the close: $(kb_cli 1 volume heal ou info)"
}

crash_case() {
    local g h1 h2 m1 m2 t0
    hold_start "$A/t-crash"
    hold_ok w 0 300000 7
    hold_ok s
    g=$(gfid_of "$B1/t-crash")
    h1=$(handle_of "$B1" "$g") h2=$(handle_of "$B2" "$g") m1=$(marker_of "$B1" "$g") m2=$(marker_of "$B2" "$g")
    rm "$A/t-crash"
    hold_check 300000 >/dev/null
    kb_node_kill 2
    hold_ok x                                          # the last close, while node 2 is down
    wait "$HOLD_PID" 2>/dev/null || true
    kb_wait_until 10 none_of "$h1" "$m1" || kb_fail "node 1 kept the object after its last close"
    [ -f "$h2" ] && [ -e "$m2" ] || kb_fail "node 2's leftover is not on its disk"
    t0=$(date +%s)
    kb_node_start 2
    if [ $(( $(date +%s) - t0 )) -lt "$GRACE" ]; then
        [ -f "$h2" ] || kb_fail "node 2's leftover removed before the grace ran out"
    fi
    kb_wait_until 20 healed || kb_fail "heal info counts the leftover: $(kb_cli 1 volume heal ou info)"
    kb_wait_until $((GRACE + 15)) none_of "$h2" "$m2" || kb_fail "node 2 still holds the orphan after the grace"
    kb_assert_match "orphan grace over: removed 1 open-unlinked" "$(cat "$(kb_node_log 2)")" "node 2 says so"
    kb_assert_eq "" "$(find "$B1/.kembar/unlinked" "$B2/.kembar/unlinked" -mindepth 1)" "no marker left"
    healed || kb_fail "heal info not empty at the end: $(kb_cli 1 volume heal ou info)"
}

# The client's side goes instead: the serving process of mount C is killed -9 and its supervisor
# starts another, which reopens the open file by gfid (issue 15). The bricks released the dead
# process's fds with its connections, but keep the open-unlinked file for the grace (so it goes
# at the end of the grace, not at once at its last close).
handover_case() {
    local g h1 h2 sha old C=$KB_TMP/c PIDF=$KB_TMP/c.pid
    kb_mount ou "$C" "pid-file=$PIDF"
    hold_start "$C/t-handover"
    hold_ok w 0 400000 11
    hold_ok s
    g=$(gfid_of "$B1/t-handover")
    h1=$(handle_of "$B1" "$g") h2=$(handle_of "$B2" "$g")
    rm "$C/t-handover"
    hold_check 400000 >/dev/null
    old=$(cat "$PIDF")
    kill -KILL "$old"
    kb_wait_until 10 eval '[ -s "$PIDF" ] && [ "$(cat "$PIDF")" != "$old" ]' || kb_fail "no new serving process for $C"
    hold_ok w 100000 50000 12
    hold_ok s
    sha=$(hold_check 400000)
    kb_assert_eq "$sha" "$(kb_sha "$h1")" "node 1's copy, written after the handover"
    kb_assert_eq "$sha" "$(kb_sha "$h2")" "node 2's copy, written after the handover"
    hold_ok x
    wait "$HOLD_PID" 2>/dev/null || true
    # Kept since the old process's connections went, in case another client of them comes back:
    # the last close leaves it to the grace.
    [ -f "$h1" ] && [ -f "$h2" ] || kb_fail "removed before the grace of the gone connections ran out"
    kb_wait_until $((GRACE + 5)) none_of "$h1" "$h2" || kb_fail "the object outlived the grace after its last close"
    kb_umount "$C"
}

kb_section restart restart_case
kb_section crash crash_case
kb_section handover handover_case
kb_done
