#!/usr/bin/env bash
# 57-replace-brick — a new, empty brick takes a dead one's place and is healed (issue 6).
#
# A 1x2 volume on two nodes and a mount; a tree written through it (directories three deep, small
# files, a 24 MiB file, an empty file, a symlink, modes and owners); kill -9 node 2; more written
# while it is dead (so brick 1 also holds changes brick 2 never saw); then
# `replace-brick <node 2's brick> <a new path on node 1>`, with node 2 still dead:
#   - the command succeeds and says a full heal of the set started;
#   - within a bound the new brick's tree equals brick 1's: the same paths, types, modes, owners,
#     sizes, gfids and contents, and heal info is empty;
#   - `volume info` lists the new brick in the old one's place;
#   - once the mount switched to the new graph, a file written and one appended to through it are
#     on both bricks at once, identical.
# kb-requires: fuse
set -eu
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"

HEAL_LIMIT=${KB_HEAL_LIMIT:-45}

kb_node_start 1
kb_node_start 2
mapfile -t B < <(kb_volume_up rp 1 2)
MNT=$KB_TMP/m-rp
kb_mount rp "$MNT"
FLOG=$(ls "$KB_TMP"/fuse-m-rp-*.log)

heal_entries() {
    kb_cli_json 1 volume heal rp info | "$KB_PY" -c 'import json, sys; print(json.load(sys.stdin)["total_entries"])'
}

tree_sig() { kb_tree_sig "$1"; }   # lib.sh

kb_section "a tree, node 2 killed, more written" true
mkdir -p "$MNT/a/b/c" "$MNT/d" "$MNT/e"
for i in $(seq 1 40); do head -c $((i * 997)) /dev/urandom >"$MNT/a/f$i"; done
for i in $(seq 1 20); do echo "file $i" >"$MNT/a/b/c/g$i"; done
head -c $((24 << 20)) /dev/urandom >"$MNT/d/big"
: >"$MNT/d/empty"
ln -s ../a/f1 "$MNT/d/link"
chmod 0700 "$MNT/a/b"
chmod 0600 "$MNT/a/f2"
chown 1234:4321 "$MNT/a/f3" "$MNT/e"
sync
healed() { [ "$(heal_entries)" = 0 ]; }
kb_wait_until 20 healed || kb_fail "heal info not empty before the outage"
kb_log "tree written, nothing pending"
kb_node_kill 2
for i in $(seq 1 10); do head -c 50000 /dev/urandom >"$MNT/e/new$i"; done
dd if=/dev/urandom of="$MNT/d/big" bs=64k count=16 seek=100 conv=notrunc,fsync status=none
rm "$MNT/a/f10"
mv "$MNT/a/f11" "$MNT/e/f11-moved"
sync

kb_section "replace-brick of the dead node's brick, then heal" true
NEW=$(kb_brick_path 1 rp)
rmdir "$NEW"          # replace-brick creates it
t0=$(date +%s%N)
out=$(kb_cli 1 volume replace-brick rp "$(kb_brick 2 "${B[1]}")" "$(kb_brick 1 "$NEW")" force)
kb_log "$out"
kb_assert_match "replaced by .*${NEW}; full heal of replica set 0 started" "$out" "replace-brick output"
info=$(kb_cli 1 volume info rp)
kb_assert_match "Brick2: $(kb_brick 1 "$NEW")\$" "$info" "the new brick in brick 2's place"
kb_assert_nomatch "${B[1]}" "$info" "the old brick is gone from volume info"
same_trees() {
    tree_sig "${B[0]}" >"$KB_TMP/sig1" && tree_sig "$NEW" >"$KB_TMP/sig2" && cmp -s "$KB_TMP/sig1" "$KB_TMP/sig2" &&
        [ "$(heal_entries)" = 0 ]
}
if ! kb_wait_until "$HEAL_LIMIT" same_trees; then
    diff "$KB_TMP/sig1" "$KB_TMP/sig2" | head -20 >&2 || true
    kb_cli 1 volume heal rp info >&2 || true
    kb_fail "the new brick is not identical to brick 1 within ${HEAL_LIMIT}s"
fi
kb_log "new brick healed to identical content in $(( ($(date +%s%N) - t0) / 1000000 )) ms" \
    "($(wc -l <"$KB_TMP/sig1") objects, $(du -sm "$NEW" | cut -f1) MiB)"
kb_assert_match '^e/f11-moved ' "$(cat "$KB_TMP/sig2")" "a file renamed during the outage"
kb_assert_nomatch '^a/f10 ' "$(cat "$KB_TMP/sig2")" "a file removed during the outage"
kb_assert_match '^d/link 0o120777 .* \.\./a/f1$' "$(cat "$KB_TMP/sig2")" "the symlink"
kb_assert_match '^e 0o40755 1234 4321 ' "$(cat "$KB_TMP/sig2")" "a directory's owner"

kb_section "writes through the mount reach both bricks" true
kb_wait_until 20 grep -q "switched to a new graph" "$FLOG" || kb_fail "the mount did not switch to the new graph"
echo "after the replacement" >"$MNT/a/after"
head -c 100000 /dev/urandom >>"$MNT/a/f1"
sync
for f in a/after a/f1; do kb_assert_same_file "${B[0]}/$f" "$NEW/$f"; done
kb_assert_eq "after the replacement" "$(cat "$NEW/a/after")" "the new brick has the new file"
kb_assert_eq "$(kb_sha "$MNT/a/f1")" "$(kb_sha "$NEW/a/f1")" "the mount reads what the new brick holds"

kb_section "the dead node comes back and catches up with the change it missed" true
kb_node_start 2
caught_up() { kb_cli 2 volume info rp 2>/dev/null | grep -q "Brick2: $(kb_brick 1 "$NEW")\$"; }
kb_wait_until 30 caught_up || kb_fail "node 2 still holds the old definition of rp: $(kb_cli 2 volume info rp)"
old_served() { grep -q "brick ${B[1]} of volume rp stopped" "$(kb_node_log 2)"; }
kb_wait_until 10 old_served || kb_fail "node 2 still serves its replaced brick"
kb_assert_match "changed while this node was away" "$(cat "$(kb_node_log 2)")" "node 2 says why it changed"
kb_done
