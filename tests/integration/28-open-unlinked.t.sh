#!/usr/bin/env bash
# 28-open-unlinked — a file unlinked, or renamed over, while it is open lives until its last close,
# as on ext4 (issue 14): through a replica 2 mount, fstat on the open descriptor gives st_nlink 0
# and the right size, read/write/ftruncate/fsync keep working, the other mount no longer sees
# the name, and once the descriptor is closed neither brick keeps the object (no orphan handle).
# kb-requires: fuse
set -eu
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"

kb_node_start 1
kb_node_start 2
B1=$(kb_brick_path 1 ou)
B2=$(kb_brick_path 2 ou)
kb_cli 1 volume create ou replica 2 "$(kb_brick 1 "$B1")" "$(kb_brick 2 "$B2")" force >/dev/null
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
kb_done
