#!/usr/bin/env bash
# 22-fuse-errors — kembar-fuse refuses what it cannot mount, quickly and in one line (issue 3):
# a volume that does not exist, a server with no listener, a volume that is stopped or was never
# started, a malformed spec, a server that accepts connections but never answers. Each must exit non-zero within 15 s, with exactly one line on stderr, and leave nothing
# mounted and no kembar-fuse process behind.
# kb-requires: fuse
set -eu
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"

kb_node_start 1
MNT=$KB_TMP/mnt
mkdir -p "$MNT"

# kb_mount_fails WHAT SPEC: kembar-fuse SPEC $MNT must fail cleanly.
kb_mount_fails() {
    local what=$1 spec=$2
    kb_expect_fail 20 "$what" "$KB_BIN/kembar-fuse" "$spec" "$MNT"
    kb_assert_le "$KB_FAIL_SECS" 15 "$what: seconds to fail"
    ! kb__is_mounted "$MNT" || { kb__force_umount "$MNT"; kb_fail "$what: $MNT is mounted after a failed mount"; }
    local left
    left=$(kb__pids_naming "$MNT")
    [ -z "$left" ] || kb_fail "$what: processes left behind on $MNT: $left"
    # The mount point is still a usable empty directory.
    kb_assert_eq "" "$(ls -A "$MNT")" "$what: mount point content"
}

no_such_volume() { kb_mount_fails "volume does not exist" "$(kb_addr 1):/nosuchvol"; }

no_listener() {
    local port=$((KB_PORT_BASE + 99))
    ! kb__port_busy "$port" || kb_fail "test setup: port $port unexpectedly has a listener"
    kb_mount_fails "no listener on the server port" "127.0.0.1:$port:/vol"
}

stopped_volume() {
    local b
    b=$(kb_brick_path 1 stopped)
    kb_cli 1 volume create stopped "$(kb_brick 1 "$b")" force >&2
    kb_mount_fails "volume created but never started" "$(kb_addr 1):/stopped"
    kb_cli 1 volume start stopped >&2
    kb_cli 1 volume stop stopped >&2
    kb_mount_fails "volume stopped" "$(kb_addr 1):/stopped"
}

paused_server() {
    # The port accepts connections (the kernel does) but the daemon never answers: the mount must
    # still give up within 15 s, not hang.
    kb_node_pause 1
    kb_mount_fails "server accepts but never answers (SIGSTOP)" "$(kb_addr 1):/stopped"
    kb_node_resume 1
}

backup_servers() {
    # DESIGN §2: the extra hosts of HOST[:PORT],HOST[:PORT]:/VOLUME are backups for fetching the
    # volfile. The first one has no listener: the second hands out the volume.
    local b dead=127.0.0.1:$((KB_PORT_BASE + 98)) m2=$KB_TMP/mnt-backup
    b=$(kb_volume_up backup 1)
    kb_mount_spec "$dead,$(kb_addr 1):/backup" "$m2"
    echo ok >"$m2/new"
    kb_assert_eq ok "$(cat "$m2/new")" "read back through a mount made via the backup server"
    kb_assert_eq ok "$(cat "$b/new")" "the brick holds the file"
    kb_umount "$m2"
    kb_mount_fails "every listed server down" "$dead,127.0.0.1:$((KB_PORT_BASE + 97)):/backup"
}

bad_spec() {
    kb_mount_fails "spec without a volume" "$(kb_addr 1)"
}

kb_section "volume does not exist" no_such_volume
kb_section "unreachable server" no_listener
kb_section "stopped volume" stopped_volume
kb_section "malformed spec" bad_spec
kb_section "backup volfile servers" backup_servers
kb_section "server not answering" paused_server
kb_done
