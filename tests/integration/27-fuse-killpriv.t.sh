#!/usr/bin/env bash
# 27-fuse-killpriv — writes cost one request, and setuid/setgid are cleared as on ext4.
#
# kembar-fuse adds FUSE_HANDLE_KILLPRIV_V2 to the INIT reply (fuse/rawio.c): the kernel stops
# asking for security.capability before every write(2), and tells the filesystem, by a flag on the
# WRITE or SETATTR, when the caller lacks CAP_FSETID, so that the bricks clear setuid (and setgid
# where the VFS would) themselves (xlators/storage/posix/io.c, inode.c). Checked here:
#  - 200 writes reach kembar-fuse as 200 WRITEs and at most a couple of GETXATTRs (counted by
#    kembar-fuse itself, SIGUSR1 state dump), where -o no_killpriv_v2 gets one GETXATTR per write;
#  - the same writes, truncates and chowns by an unprivileged user and by root leave every mode
#    exactly as they leave it on the local disk, seen through the mount (no stale cached mode) and
#    on both bricks.
# kb-requires: fuse
set -eu
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"

kb_node_start 1
kb_node_start 2
mapfile -t bricks < <(kb_volume_up two 1 2)
a=$KB_TMP/a o=$KB_TMP/o
kb_mount two "$a"
kb_mount two "$o" no_killpriv_v2

# requests OP MNT: how many OP requests the kembar-fuse of MNT has read so far.
requests() {
    local mnt=$1 op=$2 key log pid n
    key=$(echo "$mnt" | md5sum | cut -c1-12)
    pid=$(cat "$KB_TMP/pids/fuse-$key")
    log=$(ls "$KB_TMP"/fuse-"$(basename "$mnt")"-"$key".log)
    n=$(grep -c 'requests:' "$log" || true)
    kill -USR1 "$pid"
    kb_wait_until 10 sh -c "[ \$(grep -c 'requests:' '$log') -gt $n ]" || kb_fail "no state dump from $pid"
    grep 'requests:' "$log" | tail -n 1 | grep -o " $op=[0-9]*" | cut -d= -f2 | grep . || echo 0
}

kb_section "a write is one request"
for m in "$a" "$o"; do
    kb_t 30 dd if=/dev/urandom of="$m/w" bs=4k count=1 status=none   # the inode's first look
done
for m in "$a" "$o"; do
    g0=$(requests "$m" GETXATTR) w0=$(requests "$m" WRITE)
    kb_t 60 dd if=/dev/urandom of="$m/w" bs=4k count=200 conv=notrunc status=none
    g=$(( $(requests "$m" GETXATTR) - g0 )) w=$(( $(requests "$m" WRITE) - w0 ))
    kb_log "$(basename "$m"): 200 writes -> $w WRITE, $g GETXATTR"
    kb_assert_eq 200 "$w" "WRITE requests for 200 writes on $(basename "$m")"
    if [ "$m" = "$a" ]; then
        kb_assert_le "$g" 2 "GETXATTR requests for 200 writes with handle_killpriv_v2"
    else
        kb_assert_le 200 "$g" "GETXATTR requests for 200 writes with -o no_killpriv_v2"
    fi
done

kb_section "setuid and setgid are cleared as on the local disk"
# The same operations on the mount and on a local directory; every resulting mode must match.
local_dir=$KB_TMP/local
mkdir -p "$local_dir"
chmod 777 "$local_dir" "$a"
run_case() {  # run_case DIR: files in DIR get modes, then an unprivileged user and root change them
    local d=$1 f
    for f in w t r g s c n x; do echo data >"$d/$f"; done
    chmod 6777 "$d/w" "$d/t" "$d/r" "$d/c"
    chmod 6767 "$d/g" "$d/s" "$d/x"
    chmod 6755 "$d/n"
    setpriv --reuid 65534 --regid 65534 --clear-groups sh -c "
        echo more >>'$d/w'         # write by a user: setuid, setgid (group-executable) go
        truncate -s 2 '$d/t'       # truncate by a user: the same
        echo more >>'$d/g'         # setgid, not group-executable, user outside the group: goes
        dd if=/dev/zero of='$d/x' bs=1 count=0 seek=0 status=none   # no data written: stays
    "
    # in the file's group through a supplementary group only: setgid (not executable) stays
    setpriv --reuid 65534 --regid 65534 --groups 0 sh -c "echo more >>'$d/s'"
    echo more >>"$d/r"             # root (CAP_FSETID): stays
    chown 65534:65534 "$d/c"       # chown: setuid goes, setgid (group-executable) too
    stat -c '%n %a %U' "$d"/* | sed "s|^$d/||"
}
want=$(run_case "$local_dir")
got=$(run_case "$a")
kb_log "local disk: $(echo $want)"
kb_assert_eq "$want" "$got" "modes through the mount"
for br in "${bricks[@]}"; do
    on_brick=$(cd "$br" && stat -c '%n %a %U' c g n r s t w x)
    kb_assert_eq "$want" "$on_brick" "modes on brick $br"
done
for f in w t r; do kb_assert_same_file "$local_dir/$f" "$a/$f"; done

kb_done
