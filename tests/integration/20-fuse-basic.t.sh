#!/usr/bin/env bash
# 20-fuse-basic — POSIX basics through a kembar-fuse mount of a one-brick volume (issue 3).
#
# Each area is its own kb_section, so one run reports every broken area. Contents are checked
# (sha256, exact names, exact link counts), not just exit codes, and the last section checks that
# the brick holds the very same tree and bytes while nothing internal (.kembar/,
# trusted.kembar.*) is visible through the mount.
# kb-requires: fuse
set -eu
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"

kb_node_start 1
BRICK=$(kb_volume_up basic 1)
MNT=$KB_TMP/mnt
kb_mount basic "$MNT"
SRC=$KB_TMP/src
mkdir -p "$SRC"

# Random source bytes (not a pattern: offsets bugs would hide in a repeating pattern).
head -c 1234567 /dev/urandom >"$SRC/odd"
head -c 100000 /dev/urandom >"$SRC/small"

rw() {
    kb_t 30 cp "$SRC/odd" "$MNT/odd"
    kb_assert_same_file "$SRC/odd" "$MNT/odd"
    kb_assert_eq 1234567 "$(stat -c %s "$MNT/odd")" "size through the mount"
    kb_assert_same_file "$SRC/odd" "$BRICK/odd"
    # Overwrite in the middle and append, with dd (no truncation).
    head -c 5000 /dev/urandom >"$SRC/patch"
    kb_t 10 dd if="$SRC/patch" of="$MNT/odd" bs=1000 seek=300 conv=notrunc status=none
    kb_t 10 dd if="$SRC/patch" of="$SRC/odd" bs=1000 seek=300 conv=notrunc status=none
    kb_t 10 sh -c 'cat "$1" >>"$2" && cat "$1" >>"$3"' _ "$SRC/patch" "$MNT/odd" "$SRC/odd"
    kb_assert_same_file "$SRC/odd" "$MNT/odd"
    kb_assert_same_file "$SRC/odd" "$BRICK/odd"
    # An empty file.
    : >"$MNT/empty"
    kb_assert_eq 0 "$(stat -c %s "$MNT/empty")" "empty file size"
    kb_assert_eq "" "$(cat "$MNT/empty")" "empty file content"
}

trunc() {
    cp "$SRC/small" "$MNT/t"
    kb_t 10 truncate -s 40000 "$MNT/t"
    kb_assert_eq 40000 "$(stat -c %s "$MNT/t")" "size after shrink"
    head -c 40000 "$SRC/small" >"$SRC/t.want"
    kb_assert_same_file "$SRC/t.want" "$MNT/t"
    kb_t 10 truncate -s 200000 "$MNT/t"
    kb_assert_eq 200000 "$(stat -c %s "$MNT/t")" "size after grow"
    head -c 160000 /dev/zero >>"$SRC/t.want"
    kb_assert_same_file "$SRC/t.want" "$MNT/t"
    kb_assert_same_file "$SRC/t.want" "$BRICK/t"
    # Truncate through an open descriptor (ftruncate) to 0 then write again.
    "$KB_PY" - "$MNT/t" <<'EOF'
import os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
os.ftruncate(fd, 0)
assert os.fstat(fd).st_size == 0, os.fstat(fd).st_size
os.pwrite(fd, b"abc", 10)
os.close(fd)
data = open(sys.argv[1], "rb").read()
assert data == b"\0" * 10 + b"abc", data
EOF
}

rename_over() {
    echo "content A" >"$MNT/ra"
    echo "content B" >"$MNT/rb"
    kb_t 10 "$KB_PY" -c 'import os, sys; os.rename(sys.argv[1], sys.argv[2])' "$MNT/ra" "$MNT/rb"
    kb_assert_eq "content A" "$(cat "$MNT/rb")" "content of the replaced name"
    [ ! -e "$MNT/ra" ] || kb_fail "old name ra still exists after rename"
    kb_assert_eq "rb" "$(cd "$MNT" && find . -maxdepth 1 -name 'r[ab]' -printf '%f ' | sed 's/ $//')" "names after rename"
    kb_assert_eq "content A" "$(cat "$BRICK/rb")" "brick content of the replaced name"
    [ ! -e "$BRICK/ra" ] || kb_fail "old name ra still on the brick"
    # Into another directory, over an existing file there.
    mkdir "$MNT/rdir"
    echo "old" >"$MNT/rdir/x"
    echo "new" >"$MNT/rx"
    mv -T "$MNT/rx" "$MNT/rdir/x"
    kb_assert_eq "new" "$(cat "$MNT/rdir/x")" "cross-directory rename over a file"
    # A directory over an existing empty directory; over a non-empty one must fail.
    mkdir -p "$MNT/rd1/sub" "$MNT/rd2" "$MNT/rd3/sub"
    echo keep >"$MNT/rd3/sub/f"
    kb_t 10 "$KB_PY" -c 'import os, sys; os.rename(sys.argv[1], sys.argv[2])' "$MNT/rd1" "$MNT/rd2"
    [ -d "$MNT/rd2/sub" ] || kb_fail "rd2/sub missing after directory rename over an empty dir"
    [ ! -e "$MNT/rd1" ] || kb_fail "rd1 still exists after rename"
    kb_t 10 "$KB_PY" - "$MNT/rd2" "$MNT/rd3" <<'EOF'
import errno, os, sys
try:
    os.rename(sys.argv[1], sys.argv[2])
except OSError as e:
    assert e.errno in (errno.ENOTEMPTY, errno.EEXIST), e
else:
    raise SystemExit("rename over a non-empty directory succeeded")
EOF
    kb_assert_eq keep "$(cat "$MNT/rd3/sub/f")" "non-empty target dir untouched"
}

hardlinks() {
    echo "linked" >"$MNT/h"
    ln "$MNT/h" "$MNT/h1"
    mkdir "$MNT/hdir"
    ln "$MNT/h" "$MNT/hdir/h2"
    for n in h h1 hdir/h2; do
        kb_assert_eq 3 "$(stat -c %h "$MNT/$n")" "link count of $n"
    done
    kb_assert_eq "$(stat -c %i "$MNT/h")" "$(stat -c %i "$MNT/hdir/h2")" "inode number of two links"
    echo "more" >>"$MNT/h1"
    kb_assert_eq "linked more" "$(tr '\n' ' ' <"$MNT/hdir/h2" | sed 's/ $//')" "write via one link seen via another"
    rm "$MNT/h1"
    kb_assert_eq 2 "$(stat -c %h "$MNT/h")" "link count after unlinking one link"
    kb_assert_eq 2 "$(stat -c %h "$MNT/hdir/h2")" "link count (other name) after unlinking one link"
    [ ! -e "$MNT/h1" ] || kb_fail "unlinked h1 still exists"
    # The brick holds real hard links too (same inode for both names).
    kb_assert_eq "$(stat -c %i "$BRICK/h")" "$(stat -c %i "$BRICK/hdir/h2")" "brick: both names one inode"
    # Linking a directory must fail.
    ! ln "$MNT/hdir" "$MNT/hdir-link" 2>/dev/null || kb_fail "hard link to a directory succeeded"
}

symlinks() {
    echo "target data" >"$MNT/starget"
    ln -s starget "$MNT/s1"
    ln -s /nonexistent/dangling "$MNT/s2"
    ln -s "$(printf 'x%.0s' $(seq 1 1000))" "$MNT/s3"   # a 1000-byte target
    kb_assert_eq starget "$(readlink "$MNT/s1")" "readlink s1"
    kb_assert_eq /nonexistent/dangling "$(readlink "$MNT/s2")" "readlink s2"
    kb_assert_eq 1000 "$(readlink "$MNT/s3" | tr -d '\n' | wc -c)" "1000-byte symlink target length"
    kb_assert_eq "target data" "$(cat "$MNT/s1")" "read through a symlink"
    kb_assert_eq "symbolic link" "$(stat -c %F "$MNT/s1")" "file type of s1"
    [ ! -e "$MNT/s2" ] || kb_fail "dangling symlink resolves"
    kb_assert_eq starget "$(readlink "$BRICK/s1")" "brick: symlink target"
}

modes_owners() {
    echo x >"$MNT/m"
    chmod 0640 "$MNT/m"
    kb_assert_eq 640 "$(stat -c %a "$MNT/m")" "mode after chmod 0640"
    chmod 4755 "$MNT/m"
    kb_assert_eq 4755 "$(stat -c %a "$MNT/m")" "mode after chmod 4755"
    chmod 0600 "$MNT/m"
    chown 1234:5678 "$MNT/m"
    kb_assert_eq "1234:5678" "$(stat -c %u:%g "$MNT/m")" "owner after chown"
    kb_assert_eq 600 "$(stat -c %a "$MNT/m")" "mode after chown"
    kb_assert_eq "600 1234:5678" "$(stat -c '%a %u:%g' "$BRICK/m")" "brick: mode and owner"
    mkdir "$MNT/mdir"
    chmod 1777 "$MNT/mdir"
    kb_assert_eq 1777 "$(stat -c %a "$MNT/mdir")" "directory mode 1777"
    chown -h 42:43 "$MNT/s1" 2>/dev/null || true   # lchown of a symlink (may be refused by none)
    touch -d '2001-02-03 04:05:06' "$MNT/m"
    kb_assert_eq "2001-02-03 04:05:06" "$(date -d "@$(stat -c %Y "$MNT/m")" '+%F %T')" "mtime set by touch -d"
}

deep_tree() {
    local p=$MNT/deep i
    for i in $(seq 1 60); do p=$p/d$i; done
    kb_t 30 mkdir -p "$p"
    echo bottom >"$p/leaf"
    kb_assert_eq bottom "$(cat "$p/leaf")" "file at depth 60"
    kb_assert_eq 60 "$(kb_t 30 find "$MNT/deep" -mindepth 1 -type d | wc -l)" "directories in the 60-level tree"
    [ -f "${p/#$MNT/$BRICK}/leaf" ] || kb_fail "brick lacks the depth-60 file"
    kb_t 30 rm -r "$MNT/deep"
    [ ! -e "$MNT/deep" ] || kb_fail "rm -r of the deep tree left it"
}

long_names() {
    local n255 n256 p=$MNT/long comp i
    n255=$(printf 'n%.0s' $(seq 1 255))
    n256=${n255}x
    comp=$(printf 'c%.0s' $(seq 1 250))
    for i in $(seq 1 12); do p=$p/$comp$i; done
    kb_t 30 mkdir -p "$p"
    echo "long" >"$p/$n255"
    local full=$p/$n255
    [ "${#full}" -gt 3000 ] || kb_fail "test bug: path only ${#full} bytes"
    kb_assert_eq long "$(cat "$full")" "content at a ${#full}-byte path with a 255-byte name"
    kb_assert_eq "$n255" "$(ls "$p")" "readdir returns the 255-byte name"
    [ -f "${full/#$MNT/$BRICK}" ] || kb_fail "brick lacks the long-path file"
    kb_t 10 "$KB_PY" - "$p/$n256" <<'EOF'
import errno, os, sys
for mode in ("create", "lookup"):
    try:
        open(sys.argv[1], "w") if mode == "create" else os.stat(sys.argv[1])
    except OSError as e:
        if e.errno != errno.ENAMETOOLONG:
            raise SystemExit("%s of a 256-byte name: %s, want ENAMETOOLONG" % (mode, os.strerror(e.errno)))
    else:
        raise SystemExit("%s of a 256-byte name succeeded" % mode)
EOF
    mv "$full" "$p/short"
    mv "$p/short" "$full"
    kb_assert_eq long "$(cat "$full")" "content after renames of the 255-byte name"
}

big_readdir() {
    local n=10000
    [ "$KB_LONG" = 1 ] && n=50000
    mkdir "$MNT/big"
    kb_t 120 "$KB_PY" - "$MNT/big" "$n" <<'EOF'
import os, sys
d, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    os.close(os.open(os.path.join(d, "f%06d" % i), os.O_CREAT | os.O_WRONLY, 0o644))
EOF
    seq -f 'f%06g' 0 $((n - 1)) >"$SRC/big.want"
    kb_assert_eq "$n" "$(kb_t 60 ls "$MNT/big" | wc -l)" "ls | wc -l of $n entries"
    kb_t 60 ls "$MNT/big" >"$SRC/big.got"
    cmp -s "$SRC/big.want" "$SRC/big.got" ||
        kb_fail "readdir names differ: $(diff "$SRC/big.want" "$SRC/big.got" | head -5 | tr '\n' ' ')"
    # Python's scandir (getdents with another buffer size) must agree, and no duplicates.
    kb_assert_eq "$n $n" "$(kb_t 60 "$KB_PY" -c '
import os, sys
names = [e.name for e in os.scandir(sys.argv[1])]
print(len(names), len(set(names)))' "$MNT/big")" "scandir count and unique names"
    kb_assert_eq "$n" "$(ls "$BRICK/big" | wc -l)" "entries on the brick"
}

dirs_unlink() {
    mkdir "$MNT/dd"
    [ -d "$MNT/dd" ] || kb_fail "mkdir"
    rmdir "$MNT/dd"
    [ ! -e "$MNT/dd" ] || kb_fail "rmdir left the directory"
    [ ! -e "$BRICK/dd" ] || kb_fail "rmdir left the directory on the brick"
    mkdir -p "$MNT/dd2/x"
    local err
    err=$(rmdir "$MNT/dd2" 2>&1) && kb_fail "rmdir of a non-empty directory succeeded"
    kb_assert_match 'not empty' "$err" "rmdir of a non-empty directory"
    echo f >"$MNT/dd2/file"
    err=$(rmdir "$MNT/dd2/file" 2>&1) && kb_fail "rmdir of a file succeeded"
    kb_assert_match 'Not a directory' "$err" "rmdir of a file"
    rm "$MNT/dd2/file"
    [ ! -e "$MNT/dd2/file" ] || kb_fail "unlink left the file"
    [ ! -e "$BRICK/dd2/file" ] || kb_fail "unlink left the file on the brick"
    err=$(stat "$MNT/dd2/file" 2>&1) && kb_fail "stat of an unlinked file succeeded"
    kb_assert_match 'No such file' "$err" "stat after unlink"
    # Unlink of an open file: the descriptor still reads the data.
    kb_t 10 "$KB_PY" - "$MNT/dd2/open" <<'EOF'
import os, sys
p = sys.argv[1]
with open(p, "wb") as f: f.write(b"still here")
fd = os.open(p, os.O_RDONLY)
os.unlink(p)
assert not os.path.exists(p)
assert os.pread(fd, 100, 0) == b"still here"
os.close(fd)
EOF
    rmdir "$MNT/dd2/x"
    rmdir "$MNT/dd2"
}

xattrs() {
    echo x >"$MNT/xa"
    setfattr -n user.color -v blue "$MNT/xa"
    setfattr -n user.bin -v 0x00ff10 "$MNT/xa"
    kb_assert_eq blue "$(getfattr --absolute-names --only-values -n user.color "$MNT/xa")" "user.color"
    kb_assert_eq '0x00ff10' "$(getfattr --absolute-names -e hex -n user.bin "$MNT/xa" | sed -n 's/^user.bin=//p')" "binary user.bin"
    kb_assert_match '^user.color="blue"$' "$(getfattr --absolute-names -d "$MNT/xa")" "getfattr -d lists user.color"
    setfattr -x user.color "$MNT/xa"
    ! getfattr --absolute-names -n user.color "$MNT/xa" >/dev/null 2>&1 || kb_fail "removed xattr still readable"
    kb_assert_nomatch 'user.color' "$(getfattr --absolute-names -d "$MNT/xa")" "removed xattr still listed"
    kb_assert_eq '0x00ff10' "$(getfattr --absolute-names -e hex -n user.bin "$BRICK/xa" | sed -n 's/^user.bin=//p')" "brick: user.bin"
    mkdir "$MNT/xd"
    setfattr -n user.dir -v d "$MNT/xd"
    kb_assert_eq d "$(getfattr --absolute-names --only-values -n user.dir "$MNT/xd")" "xattr on a directory"
    # A 4000-byte value; a missing one is ENODATA.
    local big
    big=$(head -c 2000 /dev/urandom | xxd -p | tr -d '\n')
    setfattr -n user.big -v "0x$big" "$MNT/xa"
    kb_assert_eq "0x$big" "$(getfattr --absolute-names -e hex -n user.big "$MNT/xa" | sed -n 's/^user.big=//p')" "2000-byte xattr"
    local err
    err=$(getfattr --absolute-names -n user.nope "$MNT/xa" 2>&1) && kb_fail "missing xattr readable"
    kb_assert_match 'No such attribute' "$err" "missing xattr"
}

internals_hidden() {
    kb_assert_nomatch '\.kembar' "$(ls -a "$MNT")" ".kembar visible in the mount root"
    [ ! -e "$MNT/.kembar" ] || kb_fail "$MNT/.kembar resolves"
    local f out
    for f in "$MNT" "$MNT/odd" "$MNT/hdir" "$MNT/xa" "$MNT/s1"; do
        out=$(getfattr --absolute-names -h -d -m - "$f" 2>&1 || true)
        kb_assert_nomatch 'trusted\.kembar' "$out" "internal xattr visible on $f"
    done
    out=$(getfattr --absolute-names -h -n trusted.kembar.gfid "$MNT/odd" 2>&1) && kb_fail "trusted.kembar.gfid readable: $out"
    out=$(setfattr -n trusted.kembar.gfid -v 0x00 "$MNT/odd" 2>&1) && kb_fail "trusted.kembar.gfid settable"
    out=$(setfattr -n trusted.kembar.volume-id -v 0x00 "$MNT" 2>&1) && kb_fail "trusted.kembar.volume-id settable on the root"
    out=$(mkdir "$MNT/.kembar" 2>&1) && kb_fail "mkdir .kembar in the root succeeded"
    return 0
}

brick_matches() {
    # Same tree on both sides (the brick minus its .kembar/), same types, sizes, modes, owners,
    # symlink targets and file bytes.
    kb_t 120 "$KB_PY" - "$MNT" "$BRICK" <<'EOF'
import hashlib, os, stat, sys
def walk(root, skip_internal):
    out = {}
    for dirpath, dirs, files in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        if skip_internal and rel == ".":
            dirs[:] = [d for d in dirs if d != ".kembar"]
            files = [f for f in files if f != ".kembar"]
        for n in dirs + files:
            p = os.path.join(dirpath, n)
            st = os.lstat(p)
            key = os.path.normpath(os.path.join(rel, n))
            if stat.S_ISLNK(st.st_mode):
                v = ("l", os.readlink(p))
            elif stat.S_ISDIR(st.st_mode):
                v = ("d",)
            else:
                h = hashlib.sha256()
                if st.st_size:
                    with open(p, "rb") as f:
                        for b in iter(lambda: f.read(1 << 20), b""): h.update(b)
                v = ("f", st.st_size, h.hexdigest())
            out[key] = v + (oct(stat.S_IMODE(st.st_mode)) if not stat.S_ISLNK(st.st_mode) else "", st.st_uid, st.st_gid)
    return out
m, b = walk(sys.argv[1], False), walk(sys.argv[2], True)
bad = []
for k in sorted(set(m) | set(b)):
    if m.get(k) != b.get(k):
        bad.append("%s: mount %s brick %s" % (k, m.get(k), b.get(k)))
if bad:
    print("%d differences between mount and brick, first ones:" % len(bad), file=sys.stderr)
    for x in bad[:10]: print("  " + x, file=sys.stderr)
    sys.exit(1)
print("mount and brick agree on %d entries" % len(m), file=sys.stderr)
EOF
}

kb_section "write/read back" rw
kb_section "truncate shrink/grow" trunc
kb_section "rename over existing" rename_over
kb_section "hard links" hardlinks
kb_section "symlinks" symlinks
kb_section "chmod/chown/utimes" modes_owners
kb_section "60-level tree" deep_tree
kb_section "long path, 255-byte name" long_names
kb_section "readdir of many entries" big_readdir
kb_section "mkdir/rmdir/unlink" dirs_unlink
kb_section "user xattrs" xattrs
kb_section "internals hidden" internals_hidden
kb_section "brick matches the mount" brick_matches
kb_umount "$MNT"
kb_done
