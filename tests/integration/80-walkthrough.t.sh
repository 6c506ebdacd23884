#!/usr/bin/env bash
# 80-walkthrough — the README's cluster walk-through, run exactly as written (issue 9): the block
# between the walkthrough markers, with ports standing in for nodes and this build installed into
# a temporary prefix (mount -t kembar finds mount.kembar through PATH).
# kb-requires: root
set -eu
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"
REPO=$(cd "$(dirname "$0")/../.." && pwd)
PFX=$KB_TMP/prefix
mkdir -p "$PFX/bin" "$PFX/sbin"
cp "$KB_BIN/kembar" "$KB_BIN/kembar-fuse" "$PFX/bin/"
cp "$KB_BIN/kembard" "$PFX/sbin/"
cp "$REPO/scripts/mount.kembar" "$PFX/sbin/mount.kembar"
export PATH="$PFX/sbin:$PFX/bin:$PATH" BIN=$PFX/bin SBIN=$PFX/sbin DATA=$KB_TMP/walk MNT=$KB_TMP/vmstore
export N1=$(kb_addr 1) N2=$(kb_addr 2) N3=$(kb_addr 3)
echo "$MNT" >"$KB_TMP/mounts/walk-a"
echo "$MNT-b" >"$KB_TMP/mounts/walk-b"
awk '/<!-- walkthrough:begin -->/{on=1; next} /<!-- walkthrough:end -->/{on=0} on && !/^```/' \
    "$REPO/README.md" >"$KB_TMP/walk.sh"
[ -s "$KB_TMP/walk.sh" ] || kb_fail "no walkthrough block in README.md"
kb_log "running the README walk-through ($(wc -l <"$KB_TMP/walk.sh") lines)"
kb_t 300 bash -eux "$KB_TMP/walk.sh" >"$KB_TMP/walk.out" 2>&1 || { tail -30 "$KB_TMP/walk.out" >&2; kb_fail "the README walk-through failed"; }
grep -q 'No errors were found' "$KB_TMP/walk.out" || kb_fail "qemu-img check did not pass"
# both data bricks hold the image, identical; the arbiter holds it without data
kb_assert_same_file "$DATA/b1/vm-100-disk-0.qcow2" "$DATA/b2/vm-100-disk-0.qcow2"
kb_assert_eq 0 "$(stat -c %s "$DATA/arbiter/vm-100-disk-0.qcow2" 2>/dev/null || echo missing)" "arbiter holds no data"
umount "$MNT" "$MNT-b"
for f in "$DATA"/*/kembard.pid; do kill "$(cat "$f")" 2>/dev/null || true; done
kb_done
