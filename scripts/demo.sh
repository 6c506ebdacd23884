#!/bin/sh
# demo.sh — brings up a replicated kembar volume on this machine and shows it working (make demo),
# or removes it again (make demo-down).
#
#   sh scripts/demo.sh up      three kembard (127.0.0.1:24871-24873), volume "demo" =
#                              replica 2 + arbiter 1, mounted on /mnt/kembar-demo; writes a qcow2
#                              VM image, kills a node, keeps writing, restarts the node, waits for
#                              heal, and shows both data bricks byte-identical. Leaves it running.
#   sh scripts/demo.sh down    unmounts, stops the daemons, removes the demo's state.
#
# Environment: KB_DEMO_DIR (state, bricks, logs; default /var/tmp/kembar-demo), KB_DEMO_MNT
# (default /mnt/kembar-demo), KB_DEMO_PORT (first port, default 24871), KB_BIN (default build/).
# Needs root (FUSE, trusted.* xattrs on the bricks). Exit non-zero, with the reason, if any step
# fails; what is up stays up for inspection until `make demo-down`.

set -u
cd "$(dirname "$0")/.." || exit 2
REPO=$(pwd)
BIN=${KB_BIN:-$REPO/build}
DIR=${KB_DEMO_DIR:-/var/tmp/kembar-demo}
MNT=${KB_DEMO_MNT:-/mnt/kembar-demo}
PORT0=${KB_DEMO_PORT:-24871}
VOL=demo
NODES="1 2 3"

say() { printf '\n==> %s\n' "$*"; }
die() { printf 'demo: %s\n' "$*" >&2; printf 'demo: logs in %s/node*/kembard.log; remove with: make demo-down\n' "$DIR" >&2; exit 1; }
port() { echo $((PORT0 + $1 - 1)); }
addr() { echo "127.0.0.1:$(port "$1")"; }
cli() { timeout -k 5 60 "$BIN/kembar" --server "$(addr 1)" "$@" </dev/null; }
run() { printf '$ %s\n' "$*"; "$@"; }
brick() { echo "$DIR/node$1/brick"; }
pidof_node() { cat "$DIR/node$1/kembard.pid" 2>/dev/null; }
alive() { p=$(pidof_node "$1") && [ -n "$p" ] && kill -0 "$p" 2>/dev/null; }
sha() { sha256sum <"$1" | cut -c1-64; }
mounted() { grep -q " $MNT fuse" /proc/mounts; }

wait_for() {  # wait_for SECS CMD...: retry every 0.2 s
    secs=$1; shift
    end=$(( $(date +%s) + secs ))
    while ! "$@" >/dev/null 2>&1; do
        [ "$(date +%s)" -ge "$end" ] && return 1
        sleep 0.2
    done
    return 0
}
node_ready() { alive "$1" && timeout 3 "$BIN/kembar" --server "$(addr "$1")" volume list </dev/null; }

node_start() {
    n=$1
    mkdir -p "$DIR/node$n/state" "$(brick "$n")"
    "$BIN/kembard" --listen "$(addr "$n")" --state-dir "$DIR/node$n/state" \
        --log-file "$DIR/node$n/kembard.log" --log-level info \
        --daemon --pid-file "$DIR/node$n/kembard.pid" </dev/null >>"$DIR/node$n/kembard.out" 2>&1 ||
        die "kembard for node $n did not start: $(tail -n 3 "$DIR/node$n/kembard.out")"
    wait_for 15 node_ready "$n" || die "node $n ($(addr "$n")) does not answer"
    echo "node $n: kembard pid $(pidof_node "$n") on $(addr "$n")"
}

node_kill() {
    p=$(pidof_node "$1") || return 0
    kill -9 "$p" 2>/dev/null
    wait_for 5 sh -c "! kill -0 $p" || true
    rm -f "$DIR/node$1/kembard.pid"
}

down() {
    if mounted; then
        timeout 15 fusermount3 -u "$MNT" 2>/dev/null || timeout 15 umount -l "$MNT" 2>/dev/null
    fi
    for n in $NODES; do
        p=$(pidof_node "$n") || continue
        # Only a kembard that runs on this demo's state dir.
        tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -q -- "--state-dir $DIR/node$n/state" || continue
        kill -TERM "$p" 2>/dev/null
        wait_for 10 sh -c "! kill -0 $p" || kill -9 "$p" 2>/dev/null
    done
    # The FUSE client exits by itself once unmounted; nothing else is ours.
    case "$DIR" in /var/tmp/*|/tmp/*|/var/lib/*) rm -rf --one-file-system "$DIR" ;; *) echo "demo: not removing $DIR (unexpected location)" ;; esac
    [ -d "$MNT" ] && ! mounted && rmdir "$MNT" 2>/dev/null
    return 0
}

up() {
    [ "$(id -u)" = 0 ] || die "needs root (FUSE mount, trusted.* xattrs)"
    [ -c /dev/fuse ] || die "/dev/fuse is missing"
    for b in kembard kembar kembar-fuse; do [ -x "$BIN/$b" ] || die "$BIN/$b missing: run make"; done
    down

    say "Three nodes on this machine (state and bricks under $DIR)"
    for n in $NODES; do node_start "$n"; done

    say "A replicated volume: two data bricks + one arbiter (metadata only)"
    run cli volume create "$VOL" replica 2 arbiter 1 \
        "$(addr 1):$(brick 1)" "$(addr 2):$(brick 2)" "$(addr 3):$(brick 3)" force || die "volume create failed"
    run cli volume start "$VOL" || die "volume start failed"
    run cli volume info "$VOL"
    run cli volume status "$VOL"

    say "Mount it (any listed server can hand out the volume)"
    mkdir -p "$MNT"
    run timeout 30 "$BIN/kembar-fuse" "$(addr 1),$(addr 2):/$VOL" "$MNT" || die "mount failed"
    mounted || die "$MNT is not mounted"
    run df -h "$MNT"

    say "A VM disk image, written with O_DIRECT as qemu does with cache=none"
    img=$MNT/vm1.qcow2
    run qemu-img create -q -f qcow2 "$img" 1G || die "qemu-img create failed"
    run qemu-io -t none -c 'write -P 0x5a 0 32M' "$img" || die "qemu-io write failed"
    ls -ls "$MNT"
    b1=$(sha "$(brick 1)/vm1.qcow2"); b2=$(sha "$(brick 2)/vm1.qcow2")
    echo "sha256 on brick 1: $b1"
    echo "sha256 on brick 2: $b2"
    [ "$b1" = "$b2" ] || die "the two data bricks differ right after the write"
    echo "arbiter brick holds $(stat -c %s "$(brick 3)/vm1.qcow2" 2>/dev/null || echo '?') data bytes of vm1.qcow2"

    say "Node 2 crashes (kill -9); the volume keeps serving and records what node 2 misses"
    node_kill 2
    run qemu-io -t none -c 'write -P 0xa5 64M 8M' -c 'write -P 0x33 512M 1M' "$img" || die "writes with node 2 down failed"
    run cli volume heal "$VOL" info || true

    say "Node 2 comes back; the heal copies only what changed"
    node_start 2
    cli volume heal "$VOL" >/dev/null 2>&1 || true
    converged() { [ "$(sha "$(brick 1)/vm1.qcow2")" = "$(sha "$(brick 2)/vm1.qcow2")" ]; }
    if ! wait_for 120 converged; then
        cli volume heal "$VOL" info
        die "brick 2 did not converge within 120 s"
    fi
    run cli volume heal "$VOL" info || true
    echo "sha256 on brick 1: $(sha "$(brick 1)/vm1.qcow2")"
    echo "sha256 on brick 2: $(sha "$(brick 2)/vm1.qcow2")"
    run qemu-io -t none -c 'read -P 0x5a 0 32M' -c 'read -P 0xa5 64M 8M' -c 'read -P 0x33 512M 1M' "$img" ||
        die "reading the image back failed"
    run qemu-img check "$img" || die "qemu-img check failed"

    say "Done. The volume stays up:"
    echo "  mount:   $MNT"
    echo "  status:  $BIN/kembar --server $(addr 1) volume status $VOL"
    echo "  remove:  make demo-down"
}

case "${1:-}" in
    up) up ;;
    down) down; echo "demo: removed" ;;
    *) echo "usage: sh scripts/demo.sh up|down" >&2; exit 2 ;;
esac
