#!/usr/bin/env bash
# heal-compare.sh — the heal scenario of issue 5, timed for kembar and for GlusterFS on this machine.
#
#   bench/heal-compare.sh [--skip-kembar] [--skip-gluster] [--image-mib N] [--dirty-mib N] [--seed N]
#
# The scenario, the same for both (replica 2, both bricks on this machine's disk):
#   1. a 1 GiB VM image of random data is written through the FUSE mount;
#   2. the second brick's server is killed (-9): kembard of node 2 / glusterfsd of brick 2;
#   3. 16 MiB are written into the image through the mount, as 256 distinct random 64 KiB blocks
#      (a fixed seed: the same blocks on both systems), then fsync;
#   4. the server comes back (kembard restarted / `gluster volume start force`), and the heal runs
#      by itself; the time is taken until heal info shows no entry left.
# kembar: two kembard on 127.0.0.1 (ports KB_BENCH_PORT, +1), heal info polled every 20 ms; the
# clock starts when kembard is launched again (its start-up is included).
# GlusterFS: ../shared/anchor/glusterfs.sh (virt profile: 64 MB shards, full data heal algorithm);
# the clock is its `heal-wait` (starts once `start-bricks` has every brick online) — so GlusterFS's
# figure leaves out its brick restart, kembar's does not.
# Prints both times, the ratio, and the bytes kembar's heal moved. Not a test: no pass/fail
# threshold. Needs root. Everything under $KB_HEAL_BENCH_ROOT (default /var/tmp/kembar-healbench)
# and GlusterFS's bricks under $KB_HEAL_BENCH_GBRICKS (default /var/tmp/kbhg) are removed at the
# end (trap), with the mounts and the processes this script started. Run it on an idle machine
# (not next to another benchmark): both figures are wall-clock times.
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${KB_BIN:-$REPO/build}
ROOT=${KB_HEAL_BENCH_ROOT:-/var/tmp/kembar-healbench}
PORT0=${KB_BENCH_PORT:-24971}
ANCHOR=${GLUSTER_ANCHOR:-$REPO/../shared/anchor/glusterfs.sh}
DO_KEMBAR=1 DO_GLUSTER=1 IMG_MIB=1024 DIRTY_MIB=16 SEED=4242
KVOL=hb GVOL=kbheal
MNT_K=$ROOT/mnt-kembar MNT_G=$ROOT/mnt-gluster
G_BRICKS=${KB_HEAL_BENCH_GBRICKS:-/var/tmp/kbhg}
GLUSTER_UP=0 GLUSTERD_WAS_UP=1 GLUSTER_RAN=0

while [ $# -gt 0 ]; do
    case "$1" in
        --skip-kembar) DO_KEMBAR=0 ;;
        --skip-gluster) DO_GLUSTER=0 ;;
        --image-mib) IMG_MIB=$2; shift ;;
        --dirty-mib) DIRTY_MIB=$2; shift ;;
        --seed) SEED=$2; shift ;;
        -h|--help) awk 'NR > 1 && /^#/ {sub(/^# ?/, ""); print; next} NR > 1 {exit}' "$0"; exit 0 ;;
        *) echo "heal-compare.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
    shift
done

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'heal-compare.sh: %s\n' "$*" >&2; exit 1; }
addr() { echo "127.0.0.1:$((PORT0 + $1 - 1))"; }
cli() { timeout -k 5 60 "$BIN/kembar" --server "$(addr 1)" "$@" </dev/null; }
mounted() { awk -v m="$1" '$2 == m {f=1} END {exit !f}' /proc/self/mounts; }
cmdline_has() { [ -r "/proc/$1/cmdline" ] && tr '\0' ' ' <"/proc/$1/cmdline" | grep -qF -- "$2"; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN {printf "%.2f", b - a}'; }
wait_for() {  # wait_for SECS CMD...: retry every 0.1 s
    local end=$(( $(date +%s) + $1 )); shift
    until "$@" >/dev/null 2>&1; do [ "$(date +%s)" -ge "$end" ] && return 1; sleep 0.1; done
}
force_umount() {
    mounted "$1" || return 0
    umount "$1" 2>/dev/null || fusermount3 -u "$1" 2>/dev/null || umount -l "$1" 2>/dev/null || true
}
kembard_pid() {  # the pid of OUR kembard of node $1, or nothing
    local p
    p=$(cat "$ROOT/node$1/kembard.pid" 2>/dev/null) || return 1
    cmdline_has "$p" "$ROOT/node$1/state" && echo "$p"
}

teardown() {
    local rc=$? n p
    trap - EXIT INT TERM HUP
    if [ -n "${KB_HEAL_BENCH_LOGS:-}" ]; then     # keep the daemons' logs (debugging)
        for n in 1 2; do cp "$ROOT/node$n/kembard.log" "$KB_HEAL_BENCH_LOGS.node$n.log" 2>/dev/null; done
    fi
    force_umount "$MNT_K"
    for n in 1 2; do
        p=$(kembard_pid "$n") || continue
        kill -TERM "$p" 2>/dev/null
        wait_for 10 sh -c "! kill -0 $p" || kill -9 "$p" 2>/dev/null
    done
    if [ "$GLUSTER_UP" = 1 ]; then
        bash "$ANCHOR" down "$GVOL" "$MNT_G" >/dev/null 2>&1 || true
        force_umount "$MNT_G"
        if [ "$GLUSTERD_WAS_UP" = 0 ] && [ -r /run/glusterd-anchor.pid ]; then
            p=$(cat /run/glusterd-anchor.pid)
            cmdline_has "$p" glusterd && kill -TERM "$p" 2>/dev/null
        fi
    fi
    case "$ROOT" in
        /var/tmp/?*|/tmp/?*) mounted "$MNT_K" || mounted "$MNT_G" || rm -rf --one-file-system "$ROOT" ;;
    esac
    [ "$GLUSTER_RAN" = 1 ] && rm -rf --one-file-system "$G_BRICKS/$GVOL-b1" "$G_BRICKS/$GVOL-b2" && rmdir "$G_BRICKS" 2>/dev/null
    exit "$rc"
}
trap teardown EXIT
trap 'exit 130' INT TERM HUP

# dirty FILE: DIRTY_MIB of distinct random 64 KiB blocks (seeded) into FILE, then fsync.
dirty() {
    python3 - "$1" "$SEED" $((DIRTY_MIB * 16)) $((IMG_MIB * 16)) <<'EOF'
import os, random, sys
path, seed, count, nblk = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
rnd = random.Random(seed)
fd = os.open(path, os.O_RDWR)
for blk in rnd.sample(range(nblk), count):
    os.pwrite(fd, rnd.randbytes(65536), blk * 65536)
os.fsync(fd)
os.close(fd)
EOF
}

# ------------------------------------------------------------------------------------ kembar

k_node_start() {
    mkdir -p "$ROOT/node$1/state" "$ROOT/node$1/brick"
    "$BIN/kembard" --listen "$(addr "$1")" --state-dir "$ROOT/node$1/state" \
        --log-file "$ROOT/node$1/kembard.log" --daemon --pid-file "$ROOT/node$1/kembard.pid" \
        </dev/null >>"$ROOT/node$1/kembard.out" 2>&1 || die "kembard $1 did not start: $(tail -n 3 "$ROOT/node$1/kembard.out")"
    wait_for 15 timeout 3 "$BIN/kembar" --server "$(addr "$1")" volume list || die "kembard $1 does not answer"
}

k_heal_num() {  # a number of heal info --json (grep: no interpreter start-up in the polling loop)
    cli --json volume heal "$KVOL" info | grep -o "\"$1\":[0-9]*" | tail -n 1 | cut -d: -f2
}

run_kembar() {
    say "kembar: two kembard, replica 2, kembar-fuse mount"
    k_node_start 1
    k_node_start 2
    cli volume create "$KVOL" replica 2 "$(addr 1):$ROOT/node1/brick" "$(addr 2):$ROOT/node2/brick" force >&2 ||
        die "kembar volume create failed"
    cli volume start "$KVOL" >&2 || die "kembar volume start failed"
    mkdir -p "$MNT_K"
    timeout -k 5 30 "$BIN/kembar-fuse" "$(addr 1):/$KVOL" "$MNT_K" </dev/null >&2 || die "kembar-fuse mount failed"
    say "kembar: writing the ${IMG_MIB} MiB image"
    dd if="$ROOT/src.img" of="$MNT_K/vm.img" bs=1M conv=fsync status=none || die "writing the image failed"
    local i
    for i in $(seq 600); do [ "$(k_heal_num total_entries)" = 0 ] && break; sleep 0.1; done
    local p t0 t_up before
    p=$(kembard_pid 2) || die "no kembard of node 2"
    before=$(k_heal_num bytes_healed)
    say "kembar: kill -9 node 2 (pid $p), ${DIRTY_MIB} MiB of random 64 KiB writes"
    kill -9 "$p"
    wait_for 10 sh -c "! kill -0 $p"
    dirty "$MNT_K/vm.img" || die "the dirty writes failed"
    say "kembar: node 2 restarted; waiting for heal info to be empty"
    t0=$(now)
    k_node_start 2
    t_up=$(since "$t0")
    until [ "$(k_heal_num total_entries)" = 0 ]; do
        awk -v a="$t0" -v b="$(now)" 'BEGIN {exit !(b - a > 600)}' && die "kembar heal not done in 600 s"
        sleep 0.02
    done
    K_SECS=$(since "$t0")
    K_UP=$t_up
    K_BYTES=$(( $(k_heal_num bytes_healed) - before ))
    local a b
    a=$(sha256sum <"$ROOT/node1/brick/vm.img" | cut -c1-16)
    b=$(sha256sum <"$ROOT/node2/brick/vm.img" | cut -c1-16)
    [ "$a" = "$b" ] || die "kembar: the brick copies differ after the heal ($a vs $b)"
    say "kembar: healed in $K_SECS s (node answered after $K_UP s), $K_BYTES bytes moved, copies identical"
    force_umount "$MNT_K"
}

# --------------------------------------------------------------------------------- GlusterFS

run_gluster() {
    [ -r "$ANCHOR" ] || die "GlusterFS anchor script $ANCHOR not found"
    gluster --mode=script pool list >/dev/null 2>&1 || GLUSTERD_WAS_UP=0
    say "GlusterFS: replica 2, virt profile (anchor script)"
    GLUSTER_UP=1 GLUSTER_RAN=1
    # (a short brick path: the anchor's kill-brick reads `volume status`, which wraps long ones)
    GLUSTER_PROFILE=virt bash "$ANCHOR" up "$GVOL" 2 "$MNT_G" "$G_BRICKS" >&2 || die "GlusterFS did not come up"
    say "GlusterFS: writing the ${IMG_MIB} MiB image"
    dd if="$ROOT/src.img" of="$MNT_G/vm.img" bs=1M conv=fsync status=none || die "writing the image failed"
    bash "$ANCHOR" heal-wait "$GVOL" 120 >/dev/null || die "GlusterFS heal info not empty before the outage"
    say "GlusterFS: kill -9 brick 2, ${DIRTY_MIB} MiB of random 64 KiB writes"
    bash "$ANCHOR" kill-brick "$GVOL" 2 >&2 || die "kill-brick failed"
    dirty "$MNT_G/vm.img" || die "the dirty writes failed"
    local t0
    t0=$(now)
    bash "$ANCHOR" start-bricks "$GVOL" >&2 || die "start-bricks failed"
    G_UP=$(since "$t0")
    say "GlusterFS: bricks online after $G_UP s; waiting for heal info to be empty"
    G_SECS=$(bash "$ANCHOR" heal-wait "$GVOL" 900) || die "GlusterFS heal did not finish"
    say "GlusterFS: healed in $G_SECS s after start-bricks"
    bash "$ANCHOR" down "$GVOL" "$MNT_G" >/dev/null 2>&1 || true
    GLUSTER_UP=0
}

# -------------------------------------------------------------------------------------- main

[ "$(id -u)" = 0 ] || die "needs root (FUSE mounts, GlusterFS)"
if [ "$DO_KEMBAR" = 1 ]; then
    for b in kembard kembar kembar-fuse; do [ -x "$BIN/$b" ] || die "$BIN/$b missing: run make"; done
fi
if [ -e "$ROOT" ]; then
    mounted "$MNT_K" || mounted "$MNT_G" && die "$ROOT is in use (a mount is live)"
    rm -rf --one-file-system "$ROOT"
fi
mkdir -p "$ROOT/bin" || die "cannot create $ROOT"
if [ "$DO_KEMBAR" = 1 ]; then   # a snapshot of the binaries: a rebuild meanwhile must not mix versions
    for b in kembard kembar kembar-fuse; do cp "$BIN/$b" "$ROOT/bin/" || die "cannot copy $BIN/$b"; done
    BIN=$ROOT/bin
fi
say "a ${IMG_MIB} MiB image of random data"
head -c $((IMG_MIB * 1048576)) /dev/urandom >"$ROOT/src.img" || die "cannot write $ROOT/src.img"

K_SECS= G_SECS=
[ "$DO_KEMBAR" = 1 ] && run_kembar
[ "$DO_GLUSTER" = 1 ] && run_gluster

echo
echo "heal after a node outage: ${IMG_MIB} MiB image, ${DIRTY_MIB} MiB dirty in 64 KiB blocks, replica 2"
[ -n "$K_SECS" ] && printf '  %-28s %8s s   (node restart included; it answered after %s s; %s bytes healed)\n' \
    "kembar" "$K_SECS" "$K_UP" "$K_BYTES"
[ -n "$G_SECS" ] && printf '  %-28s %8s s   (after start-bricks, which took %s s)\n' "GlusterFS (virt profile)" "$G_SECS" "$G_UP"
if [ -n "$K_SECS" ] && [ -n "$G_SECS" ]; then
    awk -v g="$G_SECS" -v k="$K_SECS" 'BEGIN {printf "  kembar heals %.1fx faster\n", (k > 0 ? g / k : 0)}'
fi
