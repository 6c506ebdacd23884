#!/usr/bin/env bash
# 52-traversal — a hostile client cannot make a brick touch anything outside it (DESIGN §4, §10;
# issue 8). tests/tools/kb-evil speaks the brick protocol directly (no kembar-fuse, no libkembar
# checks) and sends names with "..", "/", NUL, over-long names, ".kembar", trusted.kembar.* xattrs,
# symlinks that point out of the brick used as directories and files by gfid, a block device node
# over a canary image, and broken frames. Next to the brick lies a canary directory; it must be
# byte-for-byte, mode-for-mode and xattr-for-xattr unchanged afterwards, nothing may appear
# outside the brick, the brick's identity stamps must be intact, and the daemon must keep serving
# (kb-evil's last cases, then a FUSE mount). The same names through a FUSE mount are refused too.
# kb-requires: fuse
set -eu
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source=tests/integration/netns.sh
. "$(dirname "$0")/netns.sh"

nn_init
nn_start 1
EVIL=$(nn_tool kb-evil)
PARENT=$KB_TMP/node1/bricks
BRICK=$(kb_brick_path 1 trav)
CANARY=$PARENT/canary
nn_cli 1 volume create trav "$(nn_brick 1 "$BRICK")" force >&2
nn_cli 1 volume start trav >&2
kb_wait_until 10 nn_bricks_online 1 trav "$BRICK" || kb_fail "brick of trav not online"

# The canary: a directory next to the brick with a secret file, a subdirectory, modes, xattrs.
mkdir -p "$CANARY/sub"
echo "canary secret $RANDOM$RANDOM" >"$CANARY/secret"
echo "canary sub file" >"$CANARY/sub/file"
chmod 0700 "$CANARY"; chmod 0600 "$CANARY/secret"; chmod 0750 "$CANARY/sub"
setfattr -n user.canary -v canary-value "$CANARY/secret"
setfattr -n user.canary -v canary-dir "$CANARY"

snapshot() {  # everything about the canary and the brick's surroundings that must not change
    (cd "$PARENT" && find canary -printf '%p %y %m %s %U:%G %T@\n' | sort)
    (cd "$PARENT" && find canary -type f -exec sha256sum {} + | sort)
    getfattr -R -d -m - --absolute-names "$CANARY" 2>/dev/null | sort
    ls -a "$PARENT" | grep -v "^$(basename "$BRICK")\$" | sort
    ls -a "$KB_TMP" | grep -Ev '^(mnt|mount-|fuse-|expect\.)' | sort
    ls -a / | sort
    getfattr -d -m 'trusted.kembar' -e hex --absolute-names "$BRICK" 2>/dev/null | sort
}

# A loop device over a canary image: a block device node made through the protocol must not
# read it. Skipped (with a note) when loop devices are unavailable.
BLK_ARGS=()
MARKER="KBCANARY-IMAGE-$RANDOM$RANDOM"
if command -v losetup >/dev/null && [ -e /dev/loop-control ]; then
    IMG=$PARENT/canary-image
    kb_t 10 "$KB_PY" -c 'import sys; sys.stdout.buffer.write((sys.argv[1].encode() + b"\n") * 4096)' "$MARKER" >"$IMG"
    if LOOP=$(kb_t 10 losetup -f --show "$IMG" 2>/dev/null); then
        nn_atexit "losetup -d $LOOP"
        BLK_ARGS=(--blockdev "$((16#$(stat -c %t "$LOOP"))):$((16#$(stat -c %T "$LOOP")))" --blockdev-marker "$MARKER")
        kb_log "canary image on $LOOP (${BLK_ARGS[1]})"
    fi
fi
[ ${#BLK_ARGS[@]} -gt 0 ] || kb_log "note: no loop device; the block-device case is skipped"

BEFORE=$(snapshot)
HOST=$(nn_host 1)
PORT=$(nn_port 1)

evil_protocol() {
    local out rc=0
    out=$(kb_t 120 "$EVIL" "$HOST" "$PORT" trav "$BRICK" --canary-rel ../canary --canary-abs "$CANARY" \
        --secret secret "${BLK_ARGS[@]}" 2>&1) || rc=$?
    printf '%s\n' "$out" | sed 's/^/    /' >&2
    kb_assert_match '^kb-evil: cases=[0-9]+ bad=' "$out" "kb-evil ran to its end"
    local n
    n=$(sed -n 's/^kb-evil: cases=\([0-9]*\) .*/\1/p' <<<"$out")
    kb_assert_le 80 "$n" "number of hostile cases run"
    [ "$rc" -eq 0 ] || kb_fail "kb-evil: the brick accepted hostile requests (exit $rc):"$'\n'"$(grep -E 'BAD' <<<"$out")"
    kb__node_alive 1 || kb_fail "kembard died under hostile input (log: $(kb_node_log 1))"
}

outside_untouched() {
    local after
    after=$(snapshot)
    if [ "$BEFORE" != "$after" ]; then
        diff <(printf '%s\n' "$BEFORE") <(printf '%s\n' "$after") | sed 's/^/    /' >&2
        kb_fail "something outside the brick (or its identity stamps) changed"
    fi
    local stray p
    stray=$(find "$KB_TMP" -xdev \( -name '*escape*' -o -name 'pwned*' -o -name '*renamed' \
        -o -name 'stolen-*' -o -name 'root-link' \) -not -path "$BRICK/*" 2>/dev/null | head -5)
    for p in /escape /abs-escape /abs-renamed /renamed /pwned /pwned-dir; do
        [ -e "$p" ] && stray+=" $p"
    done
    [ -z "$stray" ] || kb_fail "files created outside the brick: $stray"
    [ -d "$BRICK/.kembar" ] || kb_fail "the brick's .kembar directory is gone"
    # Whatever the brick accepted stayed inside it: every entry on the brick is a regular name.
    local odd
    odd=$(cd "$BRICK" && find . -path ./.kembar -prune -o -print | grep -E '/\.\.?$|\.\./' | head -5 || true)
    [ -z "$odd" ] || kb_fail "odd entries on the brick: $odd"
}

still_serving_fuse() {
    local mnt=$KB_TMP/mnt
    nn_mount trav "$mnt"
    [ -f "$mnt/after-evil" ] || kb_fail "the file kb-evil created after its attack is not visible through a mount"
    echo "still here" >"$mnt/fuse-after"
    kb_assert_eq "still here" "$(cat "$BRICK/fuse-after")" "a write through the mount after the attack"
    # The same hostile names through the kernel and kembar-fuse.
    local e
    for e in .kembar .kembar/handles; do
        if ls "$mnt/$e" >/dev/null 2>&1; then kb_fail "'$e' is visible through the mount"; fi
        if mkdir "$mnt/$e" 2>/dev/null; then kb_fail "mkdir '$e' through the mount succeeded"; fi
    done
    ls -a "$mnt" | grep -qx '.kembar' && kb_fail "readdir of the root lists .kembar"
    if setfattr -n trusted.kembar.gfid -v 0x00000000000000000000000000000001 "$mnt/fuse-after" 2>/dev/null; then
        kb_fail "setfattr trusted.kembar.gfid through the mount succeeded"
    fi
    if getfattr -n trusted.kembar.volume-id "$mnt" >/dev/null 2>&1; then
        kb_fail "getfattr trusted.kembar.volume-id through the mount succeeded"
    fi
    getfattr -d -m - "$mnt/fuse-after" 2>/dev/null | grep -q 'trusted.kembar' &&
        kb_fail "listxattr through the mount shows trusted.kembar.*"
    kb_umount "$mnt"
    outside_untouched
}

kb_section "hostile requests through the protocol" evil_protocol
kb_section "nothing outside the brick changed" outside_untouched
kb_section "the daemon still serves; the same names through FUSE" still_serving_fuse
kb_log "node 1 closed $(grep -c 'closing connection' "$(kb_node_log 1)" || true) connections for broken frames"
kb_done
