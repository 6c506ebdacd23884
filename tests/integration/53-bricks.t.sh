#!/usr/bin/env bash
# 53-bricks — a brick whose disk is gone is refused, never healed onto; a full brick fails writes
# cleanly (DESIGN §4, §10; issue 8).
#   - missing: node 2 restarts after its brick directory was removed: the brick shows offline
#     with a reason in `volume status`, the directory is not recreated, nothing is healed onto it,
#     and the volume goes on serving from node 1;
#   - not mounted: an empty directory bind-mounted over the brick (the disk did not mount), and a
#     directory stamped with ANOTHER volume's id: both refused the same way, nothing written into
#     them; the real brick, back in place, comes online again;
#   - ENOSPC: a brick on a small loop-mounted ext4 (or tmpfs) file system: a write past its
#     capacity fails with ENOSPC for a single-brick volume, and in a replica 2 where only the
#     second brick is full the outcome is reported (write refused, or accepted and the file listed
#     by heal info); no daemon crashes, and writing resumes once space is freed.
# kb-requires: fuse
set -eu
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source=tests/integration/netns.sh
. "$(dirname "$0")/netns.sh"

nn_init
nn_start 1; nn_start 2

# brick_state N VOL PATH: "ONLINE REASON" of one brick from node N's status --json.
brick_state() {
    nn_cli_json "$1" volume status "$2" 2>/dev/null | "$KB_PY" -c '
import json, sys
path = sys.argv[1]
def dicts(o):
    if isinstance(o, dict):
        yield o
        for v in o.values(): yield from dicts(v)
    elif isinstance(o, list):
        for v in o: yield from dicts(v)
for d in dicts(json.load(sys.stdin)):
    if any(isinstance(v, str) and (v == path or v.endswith(":" + path)) for v in d.values()):
        print("1" if d.get("online") in (True, 1, "Y", "y", "online") else "0", d.get("reason") or "-")
        break
else:
    print("missing -")' "$3"
}
offline_with_reason() {
    local st
    st=$(brick_state "$1" "$2" "$3")
    [[ "$st" =~ ^0\ [^-] ]]
}

# A replica 2 volume, mounted, with a file written while both bricks were up.
setup_vol() {  # setup_vol VOL: sets B1 B2 MNT
    B1=$(kb_brick_path 1 "$1"); B2=$(kb_brick_path 2 "$1"); MNT=$KB_TMP/mnt-$1
    nn_cli 1 volume create "$1" replica 2 "$(nn_brick 1 "$B1")" "$(nn_brick 2 "$B2")" force >&2
    nn_cli 1 volume set "$1" network.ping-timeout 2 >&2
    nn_cli 1 volume start "$1" >&2
    kb_wait_until 15 nn_bricks_online 1 "$1" "$B1" "$B2" || kb_fail "bricks of $1 not online"
    nn_mount "$1" "$MNT" "" 1 2
    kb_t 20 dd if=/dev/urandom of="$MNT/before" bs=64k count=4 conv=fsync status=none
    kb_wait_until 5 cmp -s "$B1/before" "$B2/before" || kb_fail "before not on both bricks"
}

# refused_not_healed VOL BRICK DIR: node 2's brick must stay offline with a reason while the
# volume is written and healed; DIR (what sits where the brick was) gets nothing.
refused_not_healed() {
    local vol=$1 brick=$2 dir=$3 st
    kb_wait_until 15 offline_with_reason 1 "$vol" "$brick" ||
        kb_fail "brick $brick should be offline with a reason: $(brick_state 1 "$vol" "$brick")"
    st=$(brick_state 1 "$vol" "$brick")
    kb_log "status of the refused brick: $st"
    kb_assert_match '^0 ' "$(brick_state 2 "$vol" "$brick")" "status via node 2 agrees"
    kb_assert_match "$brick" "$(nn_cli 1 volume status "$vol")" "human status names the brick"
    # The volume goes on; heal is asked for; nothing may land in DIR.
    kb_t 20 dd if=/dev/urandom of="$MNT/during" bs=64k count=4 conv=fsync status=none
    nn_cli 1 volume heal "$vol" >&2 || true
    nn_cli 1 volume heal "$vol" full >&2 || true
    sleep 3
    kb_assert_match '^0 ' "$(brick_state 1 "$vol" "$brick")" "the brick is still refused after a heal"
    if [ -e "$dir" ]; then
        local content
        content=$(find "$dir" -mindepth 1 | head -5)
        [ -z "$content" ] || kb_fail "something was written where the missing brick was: $content"
        getfattr -d -m 'trusted.kembar' --absolute-names "$dir" 2>/dev/null | grep -q volume-id &&
            [ "$dir" != "$brick" ] && kb_fail "$dir was stamped as a brick"
    fi
    kb_assert_same_file "$MNT/during" "$B1/during"
    nn_assert_no_crash
}

missing_dir() {
    setup_vol bm
    nn_stop 2
    mv "$B2" "$B2.gone"        # the disk is gone: no directory at all
    nn_start 2
    refused_not_healed bm "$B2" "$B2"
    [ -e "$B2" ] && kb_fail "the missing brick directory was recreated"
    # The disk comes back: the brick is served again.
    nn_stop 2
    mv "$B2.gone" "$B2"
    nn_start 2
    kb_wait_until 15 nn_bricks_online 1 bm "$B1" "$B2" || kb_fail "brick 2 not back online with its directory restored"
    kb_umount "$MNT"
}

not_mounted() {
    setup_vol bn
    local empty=$KB_TMP/empty-disk id
    mkdir -p "$empty"
    nn_stop 2
    mount --bind "$empty" "$B2"
    nn_atexit "umount -l '$B2' 2>/dev/null"
    nn_start 2
    refused_not_healed bn "$B2" "$B2"
    [ -z "$(ls -A "$empty")" ] || kb_fail "the unmounted-disk stand-in got content: $(ls -A "$empty")"
    nn_stop 2
    umount "$B2"
    # A directory that carries ANOTHER volume's id where the brick should be: every identity
    # stamp of the real brick root copied, the volume id's last hex digit changed.
    id=$(getfattr --absolute-names -n trusted.kembar.volume-id -e hex "$B2" 2>/dev/null | sed -n 's/^trusted.kembar.volume-id=//p')
    [ -n "$id" ] || kb_fail "test bug: brick $B2 carries no trusted.kembar.volume-id"
    local other=$KB_TMP/other-disk
    mkdir -p "$other"
    getfattr --absolute-names -d -m '^trusted\.kembar\.' -e hex "$B2" | sed "s|^# file: .*|# file: $other|" |
        sed "s|^trusted.kembar.volume-id=.*|trusted.kembar.volume-id=${id%?}$(printf %x $(( (16#${id: -1} + 1) % 16 )))|" \
        >"$KB_TMP/other-stamps"
    setfattr --restore="$KB_TMP/other-stamps"
    kb_log "stamps of the other volume's disk: $(grep -c '^trusted' "$KB_TMP/other-stamps") xattrs, volume id changed"
    mount --bind "$other" "$B2"
    nn_start 2
    refused_not_healed bn "$B2" "$B2"
    nn_stop 2
    umount "$B2"
    nn_start 2
    kb_wait_until 15 nn_bricks_online 1 bn "$B1" "$B2" || kb_fail "brick 2 not back online once its disk is back"
    kb_umount "$MNT"
}

# small_fs DIR MiB: a small file system mounted on DIR (loop ext4, else tmpfs).
small_fs() {
    local dir=$1 mib=$2 img=$KB_TMP/small-$RANDOM.img
    mkdir -p "$dir"
    if command -v mkfs.ext4 >/dev/null && [ -e /dev/loop-control ]; then
        kb_t 20 truncate -s "${mib}M" "$img"
        kb_t 30 mkfs.ext4 -q -F -m 0 -O ^has_journal "$img"
        if kb_t 20 mount -o loop "$img" "$dir" 2>/dev/null; then
            nn_atexit "umount -l '$dir' 2>/dev/null"
            kb_log "small brick: ${mib} MiB loop-mounted ext4 on $dir"
            return 0
        fi
    fi
    mount -t tmpfs -o "size=${mib}m" tmpfs "$dir"
    nn_atexit "umount -l '$dir' 2>/dev/null"
    kb_log "small brick: ${mib} MiB tmpfs on $dir"
}

# py_fill PATH MiB: O_DIRECT writes of 1 MiB until MiB are written or one fails; prints
# "ok N" or "ERRNO N" (N = MiB acknowledged), then checks the file system still answers.
py_fill() {
    kb_t 60 "$KB_PY" - "$@" <<'EOF'
import errno, mmap, os, sys
path, want = sys.argv[1], int(sys.argv[2])
buf = mmap.mmap(-1, 1 << 20); buf.write(os.urandom(1 << 20))
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_DIRECT, 0o644)
done, res = 0, "ok"
try:
    for i in range(want):
        os.pwritev(fd, [buf], i << 20)
        done += 1
    os.fsync(fd)
except OSError as e:
    res = errno.errorcode.get(e.errno, str(e.errno))
try:
    os.close(fd)
except OSError:
    pass
print(res, done)
EOF
}

enospc_single() {
    local fsdir=$KB_TMP/node1/small1 b vol=bs mnt=$KB_TMP/mnt-bs got
    small_fs "$fsdir" 24
    b=$fsdir/brick
    mkdir -p "$b"
    nn_cli 1 volume create "$vol" "$(nn_brick 1 "$b")" force >&2
    nn_cli 1 volume start "$vol" >&2
    kb_wait_until 15 nn_bricks_online 1 "$vol" "$b" || kb_fail "small brick not online"
    nn_mount "$vol" "$mnt" "" 1
    got=$(py_fill "$mnt/big" 64)
    kb_log "filling a 24 MiB brick with 64 MiB: $got"
    kb_assert_match '^ENOSPC [0-9]+$' "$got" "a write past the brick's capacity"
    kb__node_alive 1 || kb_fail "kembard died on ENOSPC"
    # Space freed: writes work again.
    rm -f "$mnt/big"
    got=$(py_fill "$mnt/after" 4)
    kb_assert_eq "ok 4" "$got" "a write after freeing space"
    kb_umount "$mnt"
    nn_assert_no_crash
}

enospc_replica() {
    local fsdir=$KB_TMP/node2/small2 b1 b2 vol=br mnt=$KB_TMP/mnt-br got pending
    small_fs "$fsdir" 24
    b1=$(kb_brick_path 1 "$vol"); b2=$fsdir/brick
    mkdir -p "$b2"
    nn_cli 1 volume create "$vol" replica 2 "$(nn_brick 1 "$b1")" "$(nn_brick 2 "$b2")" force >&2
    nn_cli 1 volume start "$vol" >&2
    kb_wait_until 15 nn_bricks_online 1 "$vol" "$b1" "$b2" || kb_fail "bricks of $vol not online"
    nn_mount "$vol" "$mnt" "" 1 2
    got=$(py_fill "$mnt/big" 48)
    kb_log "48 MiB into a replica 2 whose second brick holds 24 MiB: $got"
    kb__node_alive 1 && kb__node_alive 2 || kb_fail "a kembard died on ENOSPC"
    case "$got" in
        "ok 48")
            # Accepted on the first brick alone (quorum "both or the first"): the full brick must
            # then be known stale: heal info lists the file.
            pending=$(nn_heal_total 1 "$vol")
            kb_log "  accepted; heal info total: $pending"
            [ "$pending" != "?" ] && [ "$pending" -ge 1 ] ||
                kb_fail "the write was acknowledged without the full brick, but heal info lists nothing ($pending)"
            kb_assert_eq 50331648 "$(stat -c %s "$b1/big")" "size of the copy on the brick that had space" ;;
        ENOSPC\ *|EIO\ *|EROFS\ *)
            kb_log "  refused with ${got%% *}" ;;
        *) kb_fail "unexpected outcome of a write onto a full replica: $got" ;;
    esac
    rm -f "$mnt/big"
    got=$(py_fill "$mnt/after" 2)
    kb_assert_eq "ok 2" "$got" "a write after freeing space"
    kb_umount "$mnt"
    nn_assert_no_crash
}

kb_section "brick directory missing: refused, not recreated, not healed onto" missing_dir
kb_section "brick disk not mounted / another volume's disk: refused" not_mounted
kb_section "ENOSPC on a single brick" enospc_single
kb_section "ENOSPC on one brick of a replica 2" enospc_replica
kb_done
