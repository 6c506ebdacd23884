#!/usr/bin/env bash
# 80-walkthrough — the README's cluster walk-through, run exactly as written (issue 9): the block
# between the walkthrough markers, with ports standing in for nodes and this build installed into
# a temporary prefix (mount -t kembar finds mount.kembar through PATH).
# kb-requires: root
set -eu
REPO=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"
# /sbin/mount.kembar and /usr/local/bin/kembar-fuse are the machine's: one test at a time
# changes them (90-packages installs and purges the packages, which own /sbin/mount.kembar).
exec 7>"$KB_IT_ROOT/system-files.lock"
flock -w 600 7 || kb_fail "another test holds $KB_IT_ROOT/system-files.lock for 10 minutes"
PFX=$KB_TMP/prefix
mkdir -p "$PFX/bin" "$PFX/sbin"
cp "$KB_BIN/kembar" "$KB_BIN/kembar-fuse" "$PFX/bin/"
cp "$KB_BIN/kembard" "$PFX/sbin/"
cp "$REPO/scripts/mount.kembar" "$PFX/sbin/mount.kembar"
# mount(8) looks for helpers in /sbin only and runs them with a clean environment, so the helper
# finds kembar-fuse in the install prefix: put this build's two there for the test, as make
# install would, and restore what was there afterwards.
install_sys() {  # install_sys SRC DST
    [ -e "$2" ] && cp -p "$2" "$KB_TMP/saved.$(basename "$2")"
    cp "$1" "$2"
}
restore_sys() {
    local f
    for f in /sbin/mount.kembar /usr/local/bin/kembar-fuse; do
        if [ -e "$KB_TMP/saved.$(basename "$f")" ]; then cp -p "$KB_TMP/saved.$(basename "$f")" "$f"; else rm -f "$f"; fi
    done
}
restore_helper() { restore_sys; }
mkdir -p /usr/local/bin
install_sys "$REPO/scripts/mount.kembar" /sbin/mount.kembar
install_sys "$KB_BIN/kembar-fuse" /usr/local/bin/kembar-fuse
export PATH="$PFX/sbin:$PFX/bin:$PATH" BIN=$PFX/bin SBIN=$PFX/sbin DATA=$KB_TMP/walk MNT=$KB_TMP/vmstore
export N1=$(kb_addr 1) N2=$(kb_addr 2) N3=$(kb_addr 3) QMP=$REPO/tests/tools/kb-qmp.py
echo "$MNT" >"$KB_TMP/mounts/walk-a"
echo "$MNT-b" >"$KB_TMP/mounts/walk-b"
awk '/<!-- walkthrough:begin -->/{on=1; next} /<!-- walkthrough:end -->/{on=0} on && !/^```/' \
    "$REPO/README.md" >"$KB_TMP/walk.sh"
[ -s "$KB_TMP/walk.sh" ] || kb_fail "no walkthrough block in README.md"
kb_log "running the README walk-through ($(wc -l <"$KB_TMP/walk.sh") lines)"
kb_t 300 bash -eux "$KB_TMP/walk.sh" >"$KB_TMP/walk.out" 2>&1 || { restore_helper; tail -30 "$KB_TMP/walk.out" >&2; kb_fail "the README walk-through failed"; }
grep -q 'No errors were found' "$KB_TMP/walk.out" || kb_fail "qemu-img check did not pass"
# the live migration ran, and the destination ran the VM with its lock
grep -q 'total_ms=' "$KB_TMP/walk.out" || kb_fail "the live migration did not complete"
grep -qx 'running' "$KB_TMP/walk.out" || kb_fail "the migrated VM did not run on the destination"
kb_log "live migration: $(grep -o 'total_ms=[0-9]* downtime_ms=[0-9]*' "$KB_TMP/walk.out" | head -1)"
# both data bricks hold the image, identical; the arbiter holds it without data
kb_assert_same_file "$DATA/b1/vm-100-disk-0.qcow2" "$DATA/b2/vm-100-disk-0.qcow2"
kb_assert_eq 0 "$(stat -c %s "$DATA/arbiter/vm-100-disk-0.qcow2" 2>/dev/null || echo missing)" "arbiter holds no data"
umount "$MNT" "$MNT-b"
for f in "$DATA"/*/kembard.pid; do kill "$(cat "$f")" 2>/dev/null || true; done
restore_helper
kb_done
