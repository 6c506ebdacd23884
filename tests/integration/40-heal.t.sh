#!/usr/bin/env bash
# 40-heal — self-heal after a node outage (issue 5, DESIGN §6), two real kembard and a FUSE mount.
#   - replica 2; a 1 GiB image (sparse, with data spread over it) and a small tree;
#   - kill -9 node 2; through the mount: 16 MiB of random 64 KiB blocks written into the image
#     (fixed seed), names created / deleted / renamed (a file within its directory, a directory
#     into another one), a sparse file created;
#   - node 2 restarted: the heal runs by itself (nobody asks) and `heal info --json` reaches
#     total_entries 0 within a bound;
#   - every brick copy byte-identical (sha256), the trees identical (names, types, modes, gfids,
#     contents), the renamed file still the same inode on node 2 (moved, not copied again);
#   - heal moved close to the dirty bytes: bytes_healed <= 2 x 16 MiB (a heal of the whole image
#     would be 1 GiB: this fails then);
#   - sparse stays sparse on the healed brick;
#   - split-brain (each node written while the other was down, quorum none) is reported by heal
#     info, left alone by the heal daemons, and resolved by the CLI: `heal hv split-brain
#     source-brick BRICK PATH` and `... split-brain latest-mtime PATH`;
#   - `heal hv full` repairs a copy changed behind kembar's back (no marks: found by checksums).
# kb-requires: fuse
set -eu
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"

MiB=1048576
DIRTY=$((16 * MiB))
HEAL_LIMIT=${KB_HEAL_LIMIT:-45}     # seconds for the heal to finish by itself

kb_node_start 1
kb_node_start 2
mapfile -t B < <(kb_volume_up hv 1 2)
MNT=$KB_TMP/mnt
kb_mount hv "$MNT"

# heal_num KEY: a number of `volume heal hv info --json` (asked to node 1).
heal_num() {
    kb_cli_json 1 volume heal hv info | "$KB_PY" -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"
}
healed() { [ "$(heal_num total_entries)" = 0 ]; }

# write_random FILE SEED COUNT: COUNT distinct random 64 KiB blocks of random bytes into the first
# GiB of FILE, then fsync.
write_random() {
    kb_t 60 "$KB_PY" - "$@" <<'EOF'
import os, random, sys
path, seed, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rnd = random.Random(seed)
fd = os.open(path, os.O_RDWR)
for blk in rnd.sample(range(16384), count):
    os.pwrite(fd, rnd.randbytes(65536), blk * 65536)
os.fsync(fd)
os.close(fd)
EOF
}

tree_sig() { kb_tree_sig "$1" $((64 << 20)); }   # lib.sh

setup_data() {
    # the image: 1 GiB, sparse, with a MiB of data every 64 MiB
    kb_t 60 "$KB_PY" - "$MNT/vm.img" <<'EOF'
import os, sys
fd = os.open(sys.argv[1], os.O_CREAT | os.O_RDWR, 0o644)
os.ftruncate(fd, 1 << 30)
for k in range(16):
    os.pwrite(fd, bytes([k + 1]) * (1 << 20), k * (64 << 20))
os.fsync(fd)
os.close(fd)
EOF
    mkdir -p "$MNT/dir1/s" "$MNT/dir2"
    echo alpha >"$MNT/dir1/a"
    head -c 300000 /dev/urandom >"$MNT/dir1/b"
    echo x >"$MNT/dir1/s/x"
    chmod 0700 "$MNT/dir1/s"
    sync
    kb_wait_until 20 healed || kb_fail "heal info not empty before the outage: $(heal_num total_entries)"
    kb_assert_same_file "${B[0]}/vm.img" "${B[1]}/vm.img"
}

outage() {
    B_INO=$(stat -c %i "${B[1]}/dir1/b")
    S_INO=$(stat -c %i "${B[1]}/dir1/s")
    kb_node_kill 2
    write_random "$MNT/vm.img" 4242 256
    rm "$MNT/dir1/a"
    mv "$MNT/dir1/b" "$MNT/dir1/b2"
    mv "$MNT/dir1/s" "$MNT/dir2/s2"
    echo "created while node 2 was down" >"$MNT/dir1/new"
    mkdir "$MNT/dir1/nd"
    head -c 100000 /dev/urandom >"$MNT/dir1/nd/f"
    ln -s ../dir2/s2/x "$MNT/dir1/ln"
    kb_t 30 "$KB_PY" - "$MNT/sparse2" <<'EOF'
import os, sys
fd = os.open(sys.argv[1], os.O_CREAT | os.O_RDWR, 0o600)
os.pwrite(fd, b"\x5a" * 65536, 0)
os.pwrite(fd, b"\xa5" * 65536, 512 << 20)
os.fsync(fd)
os.close(fd)
EOF
    sync
    WANT_IMG=$(kb_sha "${B[0]}/vm.img")     # the survivor's copy holds every acknowledged write
    local n
    n=$(heal_num total_entries)
    kb_log "entries pending with node 2 down: $n"
    [ "$n" -gt 0 ] || kb_fail "no heal entries recorded during the outage"
    kb_assert_ne "$(kb_sha "${B[0]}/vm.img")" "$(kb_sha "${B[1]}/vm.img")" "node 2's copy missed the writes"
}

heal_by_itself() {
    local t0 secs before
    before=$(heal_num bytes_healed)
    t0=$(date +%s%N)
    kb_node_start 2
    if ! kb_wait_until "$HEAL_LIMIT" healed; then
        kb_cli 1 volume heal hv info >&2 || true
        kb_fail "heal did not finish by itself within ${HEAL_LIMIT}s"
    fi
    secs=$(( ($(date +%s%N) - t0) / 1000000 ))
    HEALED=$(( $(heal_num bytes_healed) - before ))
    kb_log "heal finished ${secs} ms after node 2 was restarted; bytes healed: $HEALED (dirty: $DIRTY)"
}

copies_identical() {
    kb_assert_eq "$WANT_IMG" "$(kb_sha "${B[0]}/vm.img")" "image on brick 1 (the source) unchanged by the heal"
    kb_assert_eq "$WANT_IMG" "$(kb_sha "${B[1]}/vm.img")" "image on brick 2 (healed) = brick 1's"
    kb_assert_eq "$(kb_t 30 head -c 65536 "$MNT/vm.img" | sha256sum | cut -d' ' -f1)" \
        "$(head -c 65536 "${B[1]}/vm.img" | sha256sum | cut -d' ' -f1)" "the mount reads what the bricks hold"
    kb_assert_same_file "${B[0]}/sparse2" "${B[1]}/sparse2"
    tree_sig "${B[0]}" >"$KB_TMP/sig1"
    tree_sig "${B[1]}" >"$KB_TMP/sig2"
    diff "$KB_TMP/sig1" "$KB_TMP/sig2" >&2 || kb_fail "the bricks' trees differ (above: < brick 1, > brick 2)"
    kb_assert_match '^dir1/b2 ' "$(cat "$KB_TMP/sig2")" "renamed file on brick 2"
    kb_assert_nomatch '^dir1/(a|b|s) ' "$(cat "$KB_TMP/sig2")" "deleted / renamed-away names on brick 2"
    kb_assert_match '^dir2/s2/x ' "$(cat "$KB_TMP/sig2")" "directory moved with its contents"
    kb_assert_eq "$B_INO" "$(stat -c %i "${B[1]}/dir1/b2")" "dir1/b2 on brick 2 is the old dir1/b (renamed, not copied)"
    kb_assert_eq "$S_INO" "$(stat -c %i "${B[1]}/dir2/s2")" "dir2/s2 on brick 2 is the old dir1/s"
    kb_assert_eq "$(cat "$MNT/dir1/new")" "created while node 2 was down" "new file through the mount"
}

moved_the_dirty_bytes() {
    kb_assert_le "$DIRTY" "$HEALED" "bytes healed must cover the 16 MiB written (got $HEALED)"
    kb_assert_le "$HEALED" $((2 * DIRTY)) "bytes healed must stay near the dirty bytes, not the 1 GiB image"
}

sparse_stays_sparse() {
    local b1 b2 s1 s2
    b1=$(stat -c %b "${B[0]}/vm.img")
    b2=$(stat -c %b "${B[1]}/vm.img")
    kb_log "vm.img st_blocks: brick 1 $b1, brick 2 $b2 (1 GiB = 2097152)"
    kb_assert_le "$b2" $((b1 + 2048)) "healed image allocates no more than the source (+1 MiB)"
    kb_assert_le "$b2" $((64 * 2048)) "healed image stays sparse (< 64 MiB allocated)"
    s1=$(stat -c %b "${B[0]}/sparse2")
    s2=$(stat -c %b "${B[1]}/sparse2")
    kb_assert_le "$s2" $((s1 + 256)) "sparse2 on brick 2 ($s2 blocks) vs brick 1 ($s1)"
    kb_assert_le "$s2" 2048 "sparse2 (128 KiB of data in 512 MiB) stays sparse on brick 2"
}

# py_put FILE BYTE SIZE: SIZE bytes of BYTE at offset 0 (O_RDWR, created if missing), fsync;
# prints "ok" or the errno name.
py_put() {
    kb_t 20 "$KB_PY" - "$@" <<'EOF'
import errno, os, sys
try:
    fd = os.open(sys.argv[1], os.O_CREAT | os.O_RDWR, 0o644)
    os.pwrite(fd, sys.argv[2].encode() * int(sys.argv[3]), 0)
    os.fsync(fd)
    os.close(fd)
    print("ok")
except OSError as e:
    print(errno.errorcode.get(e.errno, str(e.errno)))
EOF
}

split_brain_cli() {
    local mnt2=$KB_TMP/mnt2 out f
    kb_cli 1 volume set hv cluster.quorum-type none >&2
    for f in sb1 sb2; do kb_assert_eq ok "$(py_put "$MNT/$f" o 8192)" "create $f"; done
    kb_wait_until 20 healed || kb_fail "heal info not empty before the split-brain"
    kb_node_kill 2
    for f in sb1 sb2; do kb_assert_eq ok "$(py_put "$MNT/$f" A 8192)" "write $f with node 2 down"; done
    kb_node_stop 1
    kb_node_start 2
    # A client that never met node 1 (one that did knows node 2 is stale, and refuses: right).
    kb_mount_spec "$(kb_addr 2):/hv" "$mnt2"
    sleep 1.1                                   # a later mtime on node 2's side
    for f in sb1 sb2; do
        kb_wait_until 20 eval '[ "$(py_put "$mnt2/$f" B 12288)" = ok ]' || kb_fail "write $f with only node 2 up"
    done
    kb_umount "$mnt2"
    kb_node_start 1
    kb_wait_until 20 eval '[ "$(heal_num split_brain)" -ge 2 ]' ||
        kb_fail "heal info does not report the 2 files in split-brain: $(kb_cli 1 volume heal hv info)"
    out=$(kb_cli 1 volume heal hv info split-brain)
    kb_assert_match '/sb1' "$out" "heal info split-brain lists sb1"
    kb_assert_eq AAAA "$(head -c 4 "${B[0]}/sb1")" "node 1's copy of sb1 left alone"
    kb_assert_eq BBBB "$(head -c 4 "${B[1]}/sb1")" "node 2's copy of sb1 left alone"
    # resolve: sb1 keeps node 1's copy (named), sb2 the latest mtime (node 2's)
    out=$(kb_cli 2 volume heal hv split-brain source-brick "$(kb_brick 1 "${B[0]}")" /sb1) ||
        kb_fail "split-brain source-brick: $out"
    kb_log "$out"
    out=$(kb_cli 1 volume heal hv split-brain latest-mtime sb2) || kb_fail "split-brain latest-mtime: $out"
    kb_log "$out"
    kb_assert_same_file "${B[0]}/sb1" "${B[1]}/sb1"
    kb_assert_eq "8192 AAAA" "$(stat -c %s "${B[1]}/sb1") $(head -c 4 "${B[1]}/sb1")" "sb1 = node 1's copy everywhere"
    kb_assert_same_file "${B[0]}/sb2" "${B[1]}/sb2"
    kb_assert_eq "12288 BBBB" "$(stat -c %s "${B[0]}/sb2") $(head -c 4 "${B[0]}/sb2")" "sb2 = the latest copy everywhere"
    kb_wait_until 20 healed || kb_fail "heal info not empty after the resolutions: $(kb_cli 1 volume heal hv info)"
    kb_assert_eq 0 "$(heal_num split_brain)" "split-brain count after the resolutions"
    KB_EXPECT_RE='not found' kb_expect_fail 20 "resolve of a missing path" \
        "$KB_BIN/kembar" --server "$(kb_addr 1)" volume heal hv split-brain bigger-file /no/such/file
}

heal_full() {
    local before after
    printf 'changed behind our back' | dd of="${B[1]}/dir1/new" conv=notrunc status=none
    kb_assert_ne "$(kb_sha "${B[0]}/dir1/new")" "$(kb_sha "${B[1]}/dir1/new")" "test bug: the copy was not changed"
    before=$(heal_num bytes_healed)
    kb_cli 1 volume heal hv full >&2
    kb_wait_until 30 cmp -s "${B[0]}/dir1/new" "${B[1]}/dir1/new" || kb_fail "heal full did not repair dir1/new"
    after=$(heal_num bytes_healed)
    kb_log "heal full: $((after - before)) bytes written"
    kb_assert_le $((after - before)) $((4 * MiB)) "heal full copies only the differing blocks"
}

setup_data
outage
heal_by_itself
if [ -n "${KB_HEAL_KEEP:-}" ]; then cp "$(kb_node_log 1)" "$KB_HEAL_KEEP.node1.log"; cp "$(kb_node_log 2)" "$KB_HEAL_KEEP.node2.log"; fi
kb_section "copies identical" copies_identical
kb_section "heal moved ~the dirty bytes" moved_the_dirty_bytes
kb_section "sparse stays sparse" sparse_stays_sparse
kb_section "heal full finds what no mark names" heal_full
kb_section "split-brain: reported, then resolved by the CLI" split_brain_cli
kb_done
