#!/usr/bin/env bash
# 21-fuse-vm — what a hypervisor does to an image file, through a kembar-fuse mount (issue 3):
# sparse files and SEEK_HOLE/SEEK_DATA, fallocate (punch hole, zero range, preallocate,
# keep-size), O_DIRECT, qemu-img/qemu-io on a qcow2 image, fio random 4k writes with crc32c
# verification, flock/fcntl locks, two mounts seeing each other's writes, and df.
# kb-requires: fuse
set -eu
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"

kb_node_start 1
BRICK=$(kb_volume_up vm 1)
MNT=$KB_TMP/mnt
MNT2=$KB_TMP/mnt2
kb_mount vm "$MNT"
SRC=$KB_TMP/src
mkdir -p "$SRC"
MiB=1048576

sparse_seek() {
    # Data at [0, 64K) and [1M, 1M+64K); a hole in between; the file ends with 1M of hole.
    kb_t 20 "$KB_PY" - "$MNT/sparse" <<'EOF'
import os, sys
K, M = 1024, 1024 * 1024
fd = os.open(sys.argv[1], os.O_CREAT | os.O_RDWR | os.O_TRUNC, 0o644)
os.pwrite(fd, b"\xaa" * 64 * K, 0)
os.pwrite(fd, b"\xbb" * 64 * K, M)
os.ftruncate(fd, 3 * M)
os.fsync(fd)
size = os.fstat(fd).st_size
assert size == 3 * M, size
def seek(off, whence):
    try:
        return os.lseek(fd, off, whence)
    except OSError as e:
        return "errno %d" % e.errno
got = [seek(0, os.SEEK_DATA), seek(0, os.SEEK_HOLE), seek(64 * K, os.SEEK_DATA),
       seek(M, os.SEEK_HOLE), seek(M + 64 * K, os.SEEK_HOLE), seek(M + 64 * K, os.SEEK_DATA)]
want = [0, 64 * K, M, M + 64 * K, M + 64 * K, "errno 6"]   # ENXIO: no data after the last extent
assert got == want, "SEEK_DATA/SEEK_HOLE: got %s, want %s" % (got, want)
assert os.pread(fd, 16, 100 * K) == b"\0" * 16
os.close(fd)
EOF
    # A hole really is a hole: the brick file allocates ~128K, not 3M.
    local blocks
    blocks=$(stat -c %b "$MNT/sparse")
    kb_assert_le "$blocks" 1024 "st_blocks (512 B) of a file with 128K of data, through the mount"
    kb_assert_le "$(stat -c %b "$BRICK/sparse")" 1024 "st_blocks of the sparse file on the brick"
    # cp --sparse=always of the sparse file keeps the same bytes.
    kb_t 20 cp --sparse=always "$MNT/sparse" "$SRC/sparse.copy"
    kb_assert_same_file "$SRC/sparse.copy" "$MNT/sparse"
}

# A 1 MiB file of a repeating non-zero pattern, and the expected result after zeroing a range.
pattern_file() { kb_t 10 "$KB_PY" -c 'import sys; sys.stdout.buffer.write(bytes(range(1, 256)) * 4112 + b"\x01" * 16)'; }
expect_zeroed() {  # expect_zeroed SRC OFF LEN > OUT
    "$KB_PY" -c '
import sys
d = bytearray(open(sys.argv[1], "rb").read()); o, n = int(sys.argv[2]), int(sys.argv[3])
d[o:o + n] = b"\0" * n
sys.stdout.buffer.write(d)' "$@"
}

punch_hole() {
    pattern_file >"$SRC/pat"
    kb_assert_eq $MiB "$(stat -c %s "$SRC/pat")" "test bug: pattern size"
    cp "$SRC/pat" "$MNT/punch"
    sync "$MNT/punch"
    local before after
    before=$(stat -c %b "$MNT/punch")
    kb_t 10 fallocate -p -o 262144 -l 262144 "$MNT/punch"
    expect_zeroed "$SRC/pat" 262144 262144 >"$SRC/punch.want"
    kb_assert_same_file "$SRC/punch.want" "$MNT/punch"
    kb_assert_eq $MiB "$(stat -c %s "$MNT/punch")" "size after punch hole (it keeps the size)"
    after=$(stat -c %b "$MNT/punch")
    kb_assert_le $((after + 256)) "$before" "st_blocks must shrink by 128K+ after punching 256K (before $before, after $after)"
    kb_assert_same_file "$SRC/punch.want" "$BRICK/punch"
    kb_assert_le "$(stat -c %b "$BRICK/punch")" $((before - 256)) "brick st_blocks after punch"
}

zero_range() {
    # REALLY zero: the bytes in the range read back as zeros, everything else is untouched.
    pattern_file >"$SRC/pat"
    cp "$SRC/pat" "$MNT/zero"
    kb_t 10 fallocate -z -o 300000 -l 400000 "$MNT/zero"
    expect_zeroed "$SRC/pat" 300000 400000 >"$SRC/zero.want"
    kb_assert_same_file "$SRC/zero.want" "$MNT/zero"
    kb_assert_eq $MiB "$(stat -c %s "$MNT/zero")" "size after zero range"
    kb_assert_same_file "$SRC/zero.want" "$BRICK/zero"
    # Read back through a fresh open with O_DIRECT too (no page cache to hide stale data).
    kb_t 10 dd if="$MNT/zero" of="$SRC/zero.direct" bs=4096 iflag=direct status=none
    kb_assert_same_file "$SRC/zero.want" "$SRC/zero.direct"
    # Zero range past EOF with --keep-size leaves the size alone.
    kb_t 10 fallocate -z -n -o $MiB -l 65536 "$MNT/zero"
    kb_assert_eq $MiB "$(stat -c %s "$MNT/zero")" "size after zero range past EOF with keep-size"
}

preallocate() {
    kb_t 10 fallocate -l 8M "$MNT/prealloc"
    kb_assert_eq $((8 * MiB)) "$(stat -c %s "$MNT/prealloc")" "size after fallocate -l 8M"
    kb_assert_le 16384 "$(stat -c %b "$MNT/prealloc")" "st_blocks after preallocating 8M"
    kb_assert_eq "$(head -c $((8 * MiB)) /dev/zero | sha256sum | cut -d' ' -f1)" "$(kb_sha "$MNT/prealloc")" "preallocated file reads zeros"
    # --keep-size: blocks grow, size does not.
    printf 'hello' >"$MNT/keep"
    kb_t 10 fallocate -n -l 4M "$MNT/keep"
    kb_assert_eq 5 "$(stat -c %s "$MNT/keep")" "size after fallocate --keep-size"
    kb_assert_le 8192 "$(stat -c %b "$MNT/keep")" "st_blocks after fallocate --keep-size 4M"
    kb_assert_eq hello "$(cat "$MNT/keep")" "content after fallocate --keep-size"
    kb_assert_le 8192 "$(stat -c %b "$BRICK/keep")" "brick st_blocks after keep-size"
}

odirect() {
    head -c $((8 * MiB)) /dev/urandom >"$SRC/rand8"
    kb_t 30 dd if="$SRC/rand8" of="$MNT/direct" bs=1M oflag=direct status=none
    kb_t 30 dd if="$MNT/direct" of="$SRC/direct.back" bs=1M iflag=direct status=none
    kb_assert_same_file "$SRC/rand8" "$SRC/direct.back"
    kb_assert_same_file "$SRC/rand8" "$BRICK/direct"
    # 4 KiB unaligned-to-1M writes in the middle, O_DIRECT both ways.
    head -c 8192 /dev/urandom >"$SRC/r8k"
    kb_t 10 dd if="$SRC/r8k" of="$MNT/direct" bs=4096 seek=777 oflag=direct conv=notrunc status=none
    kb_t 10 dd if="$SRC/r8k" of="$SRC/rand8" bs=4096 seek=777 conv=notrunc status=none
    kb_t 30 dd if="$MNT/direct" of="$SRC/direct.back" bs=4096 iflag=direct status=none
    kb_assert_same_file "$SRC/rand8" "$SRC/direct.back"
    kb_assert_same_file "$SRC/rand8" "$MNT/direct"
}

qemu() {
    local img=$MNT/disk.qcow2 out
    out=$(kb_t 30 qemu-img create -f qcow2 "$img" 1G 2>&1) || kb_fail "qemu-img create: $out"
    out=$(kb_t 60 qemu-io -t none -c 'write -P 0xab 0 4M' -c 'read -P 0xab 0 4M' \
          -c 'write -P 0xcd 512M 64k' -c 'read -P 0xcd 512M 64k' -c 'read -P 0 100M 64k' "$img" 2>&1) ||
        kb_fail "qemu-io exit non-zero: $out"
    kb_assert_nomatch '[Ff]ail|[Ee]rror|[Mm]ismatch' "$out" "qemu-io output"
    kb_assert_eq 2 "$(grep -c '^wrote' <<<"$out")" "qemu-io writes done: $out"
    kb_assert_eq 3 "$(grep -c '^read' <<<"$out")" "qemu-io reads done: $out"
    # Reading 1M..1M+64K expecting zeros must fail: that range holds 0xab.
    kb_assert_match 'Pattern verification failed' "$(kb_t 30 qemu-io -t none -c 'read -P 0 1M 64k' "$img" 2>&1 || true)" \
        "qemu-io must detect a wrong pattern (the check checks)"
    out=$(kb_t 60 qemu-img check "$img" 2>&1) || kb_fail "qemu-img check: $out"
    kb_assert_match 'No errors were found on the image' "$out" "qemu-img check"
    kb_assert_match 'virtual size: 1 GiB' "$(kb_t 30 qemu-img info "$img" 2>&1)" "qemu-img info"
    out=$(kb_t 60 qemu-img check "$BRICK/disk.qcow2" 2>&1) || kb_fail "qemu-img check on the brick copy: $out"
}

fio_verify() {
    local secs=5 out
    [ "$KB_LONG" = 1 ] && secs=60
    out=$KB_TMP/fio.json
    kb_t $((secs + 60)) fio --name=vm --filename="$MNT/fio.dat" --size=32M --ioengine=libaio \
        --direct=1 --rw=randwrite --bs=4k --iodepth=16 --runtime="$secs" --time_based \
        --verify=crc32c --verify_backlog=512 --verify_fatal=1 --verify_state_save=0 --output-format=json \
        >"$out" 2>"$KB_TMP/fio.err" || kb_fail "fio exit non-zero: $(head -c 800 "$KB_TMP/fio.err")"
    kb_t 10 "$KB_PY" - "$out" <<'EOF'
import json, sys
text = open(sys.argv[1]).read()
doc = json.loads(text[text.index("{"):])
j = doc["jobs"][0]
w, r = j["write"]["total_ios"], j["read"]["total_ios"]
print("fio: error=%d writes=%d verify-reads=%d write-iops=%.0f" % (j["error"], w, r, j["write"]["iops"]), file=sys.stderr)
assert j["error"] == 0, "fio error %d" % j["error"]
assert w > 0 and r > 0, "fio did no writes or no verify reads"
EOF
}

locks() {
    # Two processes on the same mount: flock and fcntl (POSIX byte-range) exclusion.
    : >"$MNT/lockf"
    kb_t 30 "$KB_PY" - "$MNT/lockf" "$MNT/lockf" <<'EOF'
import fcntl, os, sys, time
pa, pb = sys.argv[1], sys.argv[2]
r, w = os.pipe()
child = os.fork()
if child == 0:   # holder
    os.close(r)
    f = open(pa, "r+")
    fcntl.flock(f, fcntl.LOCK_EX)
    fcntl.lockf(f, fcntl.LOCK_EX, 100, 0)           # bytes [0, 100)
    os.write(w, b"1")
    time.sleep(1.5)
    fcntl.flock(f, fcntl.LOCK_UN)
    fcntl.lockf(f, fcntl.LOCK_UN, 100, 0)
    time.sleep(0.5)
    os._exit(0)
os.close(w)
assert os.read(r, 1) == b"1"
g = open(pb, "r+")
try:
    fcntl.flock(g, fcntl.LOCK_EX | fcntl.LOCK_NB)
    raise SystemExit("flock: second process got LOCK_EX while the first holds it")
except BlockingIOError:
    pass
try:
    fcntl.lockf(g, fcntl.LOCK_EX | fcntl.LOCK_NB, 10, 50)
    raise SystemExit("fcntl: overlapping range lock granted to a second process")
except OSError:
    pass
fcntl.lockf(g, fcntl.LOCK_EX | fcntl.LOCK_NB, 100, 200)   # disjoint range: granted
t0 = time.time()
fcntl.flock(g, fcntl.LOCK_EX)                             # blocks until the holder lets go
fcntl.lockf(g, fcntl.LOCK_EX, 100, 0)
waited = time.time() - t0
assert 0.5 < waited < 10, "blocking lock waited %.2fs" % waited
os.waitpid(child, 0)
EOF
}

two_mounts() {
    kb_mount vm "$MNT2"
    echo "from A" >"$MNT/shared"
    kb_wait_until 2 grep -qx "from A" "$MNT2/shared" ||
        kb_fail "second mount does not see the first's new file within 2 s (got: $(cat "$MNT2/shared" 2>&1))"
    echo "from B, longer" >"$MNT2/shared"
    kb_wait_until 2 grep -qx "from B, longer" "$MNT/shared" ||
        kb_fail "first mount does not see the second's overwrite within 2 s (got: $(cat "$MNT/shared" 2>&1))"
    # An in-place write by one mount while the other has the file open.
    kb_t 20 "$KB_PY" - "$MNT/shared" "$MNT2/shared" <<'EOF'
import os, sys, time
a = os.open(sys.argv[1], os.O_RDWR)
b = os.open(sys.argv[2], os.O_RDONLY)
assert os.pread(b, 100, 0) == b"from B, longer\n"
os.pwrite(a, b"XXXX", 5)
os.fsync(a)
deadline = time.time() + 2
while True:
    got = os.pread(b, 100, 0)
    if got == b"from XXXXonger\n":
        break
    if time.time() > deadline:
        raise SystemExit("open reader on mount 2 still sees %r 2 s after a write on mount 1" % got)
    time.sleep(0.05)
EOF
    rm "$MNT/shared"
    kb_wait_until 2 test ! -e "$MNT2/shared" || kb_fail "unlink on mount 1 not seen on mount 2 within 2 s"
    kb_umount "$MNT2"
}

interrupted_wait() {
    # A blocking lock wait interrupted by a signal (EINTR), asked again at once by the same open
    # file; the holder on the other mount lets go; the second ask is granted, and the lock must
    # stay held: a third open file may not get it. (The first, interrupted request was still
    # waiting at the brick; its late grant and release once dropped the lock granted again.)
    kb_mount vm "$MNT2"
    : >"$MNT/intr"
    kb_wait_until 2 test -e "$MNT2/intr" || kb_fail "mount 2 does not see the new file"
    local out
    out=$(kb_t 60 "$KB_PY" - "$MNT/intr" "$MNT2/intr" <<'EOF'
import fcntl, os, signal, struct, sys, time
F_OFD_SETLK, F_OFD_SETLKW = 37, 38
A, B = sys.argv[1], sys.argv[2]
def ofd(fd, cmd, t):
    return fcntl.fcntl(fd, cmd, struct.pack("hhqqi4x", t, 0, 0, 0, 0))
class Alarm(Exception): pass
def on_alarm(*_): raise Alarm()
signal.signal(signal.SIGALRM, on_alarm)
kinds = {"ofd": (lambda fd: ofd(fd, F_OFD_SETLKW, fcntl.F_WRLCK),
                 lambda fd: ofd(fd, F_OFD_SETLK, fcntl.F_WRLCK),
                 lambda fd: ofd(fd, F_OFD_SETLK, fcntl.F_UNLCK)),
         "flock": (lambda fd: fcntl.flock(fd, fcntl.LOCK_EX),
                   lambda fd: fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB),
                   lambda fd: fcntl.flock(fd, fcntl.LOCK_UN))}
res = []
for kind, (wait, try_, unlock) in kinds.items():
    x = os.open(A, os.O_RDWR)
    wait(x)
    y = os.open(B, os.O_RDWR)
    signal.setitimer(signal.ITIMER_REAL, 0.5)
    try:
        wait(y)
        sys.exit("%s: granted while the other mount holds it" % kind)
    except Alarm:
        pass
    signal.setitimer(signal.ITIMER_REAL, 0)
    pid = os.fork()
    if pid == 0:
        time.sleep(0.5)
        unlock(x)
        os._exit(0)
    wait(y)                                    # granted once X lets go
    os.waitpid(pid, 0)
    refused = 0
    for i in range(10):
        time.sleep(0.1)
        z = os.open(A, os.O_RDWR)
        try:
            try_(z)
        except OSError:
            refused += 1
        os.close(z)
    unlock(y)
    os.close(y)
    os.close(x)
    res.append("%s %d/10 refused" % (kind, refused))
print("; ".join(res))
EOF
    ) || kb_fail "interrupted lock wait: $out"
    kb_assert_eq "ofd 10/10 refused; flock 10/10 refused" "$out" "a third open file asking for the lock the re-asked wait was granted"
    kb_umount "$MNT2"
}

df_size() {
    local m b
    m=$(kb_t 10 df -B1 --output=size "$MNT" | tail -1 | tr -d ' ')
    b=$(kb_t 10 df -B1 --output=size "$BRICK" | tail -1 | tr -d ' ')
    kb_log "df size: mount $m, brick fs $b"
    [ "$m" -gt 0 ] || kb_fail "df reports size 0 on the mount"
    local diff=$(( m > b ? m - b : b - m ))
    kb_assert_le $((diff * 100)) $((b * 5)) "df size of the mount ($m) within 5% of the brick filesystem's ($b)"
    m=$(kb_t 10 df -B1 --output=avail "$MNT" | tail -1 | tr -d ' ')
    b=$(kb_t 10 df -B1 --output=avail "$BRICK" | tail -1 | tr -d ' ')
    diff=$(( m > b ? m - b : b - m ))
    kb_assert_le $((diff * 100)) $((b * 5)) "df avail of the mount ($m) within 5% of the brick's ($b)"
}

kb_section "sparse file, SEEK_HOLE/SEEK_DATA" sparse_seek
kb_section "fallocate punch hole" punch_hole
kb_section "fallocate zero range" zero_range
kb_section "fallocate preallocate, keep-size" preallocate
kb_section "O_DIRECT" odirect
kb_section "qemu-img/qemu-io qcow2" qemu
kb_section "fio randwrite verify" fio_verify
kb_section "flock/fcntl locks" locks
kb_section "two mounts" two_mounts
kb_section "an interrupted lock wait asked again: the lock stays held" interrupted_wait
kb_section "df" df_size
kb_umount "$MNT"
kb_done
