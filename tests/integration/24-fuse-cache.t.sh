#!/usr/bin/env bash
# 24-fuse-cache — kembar-fuse keeps a file's page cache across opens only while nobody changed it.
#
# Close-to-open consistency with keep_cache (fuse/file.c, open_finish): mount A reads a file (its
# pages cached), mount B changes it — a longer write, a same-size overwrite of one byte, a
# truncate, an mtime set back with utime — and A's next open must see B's data at once, never its
# cached pages. And the point of it: a file nobody changed keeps its cached pages at the next
# open (a re-read needs no brick), checked with fincore(1).
# And the kernel's GETATTR that follows a create or unlink in a directory (its attributes dropped
# by the kernel) or an open (dropped by our own writes) is answered with the attributes the reply
# brought, without a STAT on a brick (fuse/recent.h), and is never older than this mount's own
# changes: counted on the bricks, compared with the bricks' own stat.
# kb-requires: fuse
set -eu
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"

kb_node_start 1
kb_node_start 2
mapfile -t BR < <(kb_volume_up two 1 2)
a=$KB_TMP/a b=$KB_TMP/b
kb_mount two "$a"
kb_mount two "$b"

kb_section "another mount's changes are seen at the next open"
kb_t 60 "$KB_PY" - "$a" "$b" <<'EOF'
import os, sys
A, B = sys.argv[1], sys.argv[2]

def read(root, name):
    with open(os.path.join(root, name), "rb") as f:
        return f.read()

def write(root, name, data, off=None):
    p = os.path.join(root, name)
    if off is None:
        with open(p, "wb") as f:
            f.write(data)
    else:
        fd = os.open(p, os.O_WRONLY)
        os.pwrite(fd, data, off)
        os.close(fd)

def check(what, want):
    for i in range(3):          # the first read fills A's cache, the others may use it
        got = read(A, "f")
        assert got == want, "%s (read %d through A): %r..., want %r..." % (what, i, got[:16], want[:16])

big = bytes(range(256)) * 512          # 128 KiB: several pages, readahead
write(B, "f", big)
check("initial content", big)
write(B, "f", b"x" + big[1:], off=None)
check("same-size rewrite by B", b"x" + big[1:])
write(B, "f", b"Y", off=4096)
check("one byte overwritten in place by B", b"x" + big[1:4096] + b"Y" + big[4097:])
cur = read(B, "f")
st = os.stat(os.path.join(B, "f"))
write(B, "f", b"Z", off=70000)
os.utime(os.path.join(B, "f"), ns=(st.st_atime_ns, st.st_mtime_ns))   # mtime set back: ctime moves
check("overwrite with mtime restored by B", cur[:70000] + b"Z" + cur[70001:])
os.truncate(os.path.join(B, "f"), 1000)
check("truncate by B", cur[:70000][:1000])
write(B, "f", big + big)
check("growth by B", big + big)
# A's own writes are seen by A, and by B
write(A, "f", b"own", off=0)
check("A's own write", b"own" + (big + big)[3:])
assert read(B, "f") == b"own" + (big + big)[3:], "B does not see A's write"
print("  all changes seen at the next open", file=sys.stderr)
EOF

kb_section "an unchanged file keeps its page cache across opens, a changed one loses it"
# fincore(1) opens the file itself: with keep_cache that open keeps A's pages, without it they go.
resident() { kb_t 30 fincore -nb -o RES "$1" | tr -d ' '; }
# read_resident F: read F whole, then how much of it a re-open finds cached. The host may run
# proactive reclaim (DAMON's kdamond pageout), which once evicted a few pages between the read and
# fincore; so up to three rounds, and the best one counts. A broken keep_cache gives 0 every time.
read_resident() {
    local i n best=0
    for i in 1 2 3; do
        kb_t 30 cat "$1" >/dev/null
        n=$(resident "$1")
        [ "$n" -gt "$best" ] && best=$n
        [ "$best" -eq 1048576 ] && break
    done
    echo "$best"
}
kb_t 30 dd if=/dev/urandom of="$b/g" bs=64k count=16 status=none
kb_assert_eq 1048576 "$(read_resident "$a/g")" "A's cached bytes after a re-open of an unchanged file"
kb_t 30 dd if=/dev/urandom of="$b/g" bs=4k count=1 seek=3 conv=notrunc status=none
kb_assert_eq 0 "$(resident "$a/g")" "A's cached bytes after B changed the file"
kb_assert_same_file "$a/g" "$b/g"
kb_assert_eq 1048576 "$(read_resident "$a/g")" "A's cached bytes after a full read and a re-open"

kb_section "the GETATTR after a create, an unlink or an open needs no brick, and is never stale"
# No heal sweep during this section: only the mount's own calls reach the bricks.
kb_cli 1 volume set two cluster.heal-interval 86400 >/dev/null
stats() {  # STAT calls the bricks served since the last clear
    kb_cli_json 1 volume profile two | "$KB_PY" -c 'import json,sys
print(sum(f["calls"] for b in json.load(sys.stdin)["bricks"] for f in b["fops"] if f["fop"] == "stat"))'
}
copy0() {  # mtime (ns), links, size and mode of directory $1 on copy 0
    stat -c '%.9Y %h %s %a' "${BR[0]}/$1" | sed 's/\.//'
}
mkdir "$a/sd"
echo keep >"$a/sd/keep"
kb_cli 1 volume profile two clear >/dev/null
out=$(kb_t 30 "$KB_PY" - "$a/sd" <<'PY'
import os, sys
d = sys.argv[1]
fd = os.open(os.path.join(d, "new"), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
os.write(fd, b"n" * 3000)
os.close(fd)
st = os.stat(d)                    # the create dropped the kernel's attributes of d
print(st.st_mtime_ns, st.st_nlink, st.st_size, "%o" % (st.st_mode & 0o7777))
PY
)
kb_assert_eq 0 "$(stats)" "brick STATs for the create and the stat of its directory"
kb_assert_eq "$(copy0 sd)" "$out" "the directory after the create, as the mount sees it and as copy 0 has it"
kb_cli 1 volume profile two clear >/dev/null
out=$(kb_t 30 "$KB_PY" - "$a/sd" <<'PY'
import os, sys
d = sys.argv[1]
os.unlink(os.path.join(d, "keep"))
st = os.stat(d)
print(st.st_mtime_ns, st.st_nlink, st.st_size, "%o" % (st.st_mode & 0o7777))
PY
)
kb_assert_eq 0 "$(stats)" "brick STATs for the unlink and the stat of its directory"
kb_assert_eq "$(copy0 sd)" "$out" "the directory after the unlink, as the mount sees it and as copy 0 has it"
# This mount's own changes are never hidden by attributes kept before them.
kb_t 30 "$KB_PY" - "$a/sd" <<'PY'
import os, sys
d = sys.argv[1]
p = os.path.join(d, "new")
r = os.open(p, os.O_RDONLY)        # its STAT is kept for the GETATTR after it
w = os.open(p, os.O_WRONLY | os.O_APPEND)
os.write(w, b"a" * 500)
os.close(w)
assert os.fstat(r).st_size == 3500, "size after our own append: %d" % os.fstat(r).st_size
assert os.read(r, 10000) == b"n" * 3000 + b"a" * 500
os.unlink(p)
st = os.fstat(r)
assert st.st_nlink == 0, "link count of our own unlinked file: %d" % st.st_nlink
os.close(r)
r = os.open(os.path.join(d, "second"), os.O_CREAT | os.O_RDWR, 0o600)
os.fchmod(r, 0o640)
assert os.fstat(r).st_mode & 0o777 == 0o640, oct(os.fstat(r).st_mode)
os.close(r)
print("  own append, unlink and chmod all seen at once", file=sys.stderr)
PY
kb_assert_eq 640 "$(stat -c %a "${BR[1]}/sd/second")" "the chmod reached copy 1"
kb_done
