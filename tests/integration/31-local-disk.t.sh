#!/usr/bin/env bash
# 31-local-disk — reads a mount serves from the files of the brick on its host (issue 16,
# performance.local-read) never outlast that disk. Copy 0's brick is on a disk of its own: an ext4
# on a loop device whose backing file lives on another kembar volume, served by node 3. Once the
# mount reads copy 0's files itself, node 3 is paused (SIGSTOP), so that disk stops answering: its
# I/O waits, nothing comes back, nothing fails (that volume's ping-timeout is 600 s). Every read
# still returns the source's bytes — handed back to kembard at the ping-timeout, answered by copy 1
# once copy 0's kembard times out or is declared down — and the mount answers other calls
# meanwhile. With the disk back, copy 0's files are read here again and both copies are the
# source's. (Device-mapper's suspend would be the plain way to hang a disk; this kernel has no
# device-mapper, and every part used here is one the suite already relies on.)
# kb-requires: root
set -eu
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"

for t in losetup mkfs.ext4; do
    command -v "$t" >/dev/null || kb_skip "$t is missing (scripts/deps.sh installs it)"
done
[ -e /dev/loop-control ] || kb_skip "no loop devices"

# The disk: node 3 serves volume "under"; its mount holds the loop device's backing file.
kb_node_start 3
mapfile -t UB < <(kb_volume_up under 3)
for kv in "network.ping-timeout 600" "network.frame-timeout 3600"; do
    kb_cli 3 volume set under $kv >/dev/null
done
KB_MOUNT_NODE=3 kb_mount under "$KB_TMP/m-under"
kb_t 10 truncate -s 256M "$KB_TMP/m-under/disk0.img"
LOOP=$(kb_t 20 losetup -f --show "$KB_TMP/m-under/disk0.img")
kb_atexit "losetup -d $LOOP"
kb_t 60 mkfs.ext4 -q -F "$LOOP"
DISK=$KB_TMP/disk0
mkdir -p "$DISK"
kb_t 20 mount -o noatime "$LOOP" "$DISK"   # reads dirty nothing a sync would wait for while the disk hangs
mkdir "$DISK/b"

kb_node_start 1
kb_node_start 2
B1=$(kb_brick_path 2 ld)
kb_cli 1 volume create ld replica 2 "$(kb_brick 1 "$DISK/b")" "$(kb_brick 2 "$B1")" force >&2
for kv in "network.ping-timeout 2" "network.frame-timeout 3" "cluster.heal-interval 86400"; do
    kb_cli 1 volume set ld $kv >/dev/null
done
kb_cli 1 volume start ld >&2
M=$KB_TMP/m-ld
kb_mount ld "$M"
LOG=$(kb_mount_log "$M")
kb_wait_until 10 grep -q "ld-client-0.*is on this host: its files are read here" "$LOG" ||
    kb_fail "copy 0's files are not read by the mount: $(grep 'on this host' "$LOG" | tail -n 2)"

SRC=$KB_TMP/src.bin
head -c $((8 << 20)) /dev/urandom >"$SRC"
dd if="$SRC" of="$M/img" bs=1M oflag=direct conv=fsync status=none
served() {  # reads copy 0's files served here, from a fresh state dump of the mount
    kb_mount_dump "$M" 'ld-client-0 .* local reads' | grep 'ld-client-0 .* local reads' | sed 's/.*local reads [onf]*: \([0-9]*\) served here, \([0-9]*\) sent on to the brick (\([0-9]*\) timed out).*/\1 \2 \3/'
}
reads() {  # reads N: N random 4 KiB O_DIRECT reads of img, each checked against the source;
           # prints the slowest in ms
    kb_t 120 "$KB_PY" - "$M/img" "$SRC" "$1" <<'PY'
import mmap, os, random, sys, time
img, src, n = sys.argv[1], open(sys.argv[2], "rb").read(), int(sys.argv[3])
fd = os.open(img, os.O_RDONLY | os.O_DIRECT)
buf = mmap.mmap(-1, 4096)
worst = 0
for i in range(n):
    off = random.randrange(len(src) // 4096) * 4096
    t0 = time.monotonic()
    got = os.preadv(fd, [buf], off)
    worst = max(worst, time.monotonic() - t0)
    if got != 4096 or bytes(buf) != src[off:off + 4096]:
        sys.exit("read %d at %d: %d bytes, %s" % (i, off, got, "wrong data" if got == 4096 else "short"))
print("%.0f" % (worst * 1000))
PY
}
kb_log "before: slowest of 200 reads $(reads 200) ms; copy 0 served here, sent on, timed out: $(served)"
set -- $(served)
[ "$1" -ge 150 ] || kb_fail "copy 0's files served $1 of the 200 reads"

kb_section "copy 0's disk stops answering: every read still answered, with the source's bytes"
sync
echo 3 >/proc/sys/vm/drop_caches
kb_node_pause 3
kb_log "copy 0's disk stopped (node 3 paused)"
( sleep 1; timeout 5 stat "$M" >/dev/null && echo ok >"$KB_TMP/stat.out" ) &
statter=$!
worst=$(reads 3)
kb_log "3 reads with copy 0's disk gone: slowest $worst ms; served, sent on, timed out: $(served)"
set -- $(served)
[ "$3" -ge 1 ] || kb_fail "no local read timed out: the reads did not wait on copy 0's files"
[ "$worst" -lt 30000 ] || kb_fail "a read took $worst ms"
wait "$statter" || true
kb_assert_eq ok "$(cat "$KB_TMP/stat.out" 2>/dev/null)" "the mount answered a stat while a read waited on the disk"
kb_node_resume 3
kb_log "copy 0's disk back"

kb_section "the disk back: copy 0's files read here again, the copies identical"
set -- $(served); before=$1
more() { reads 20 >/dev/null; set -- $(served); [ "$1" -gt "$before" ]; }
kb_wait_until 30 more || kb_fail "no read served from copy 0's files since the disk came back: $(served)"
kb_log "reads served from copy 0's files again: served, sent on, timed out: $(served)"
kb_umount "$M"
kb_assert_eq "$(kb_sha "$SRC")" "$(kb_sha "$DISK/b/img")" "copy 0"
kb_assert_eq "$(kb_sha "$SRC")" "$(kb_sha "$B1/img")" "copy 1"
kb_done
