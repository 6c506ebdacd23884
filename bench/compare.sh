#!/usr/bin/env bash
# compare.sh — kembar against GlusterFS, Ceph RBD and the bare local disk on this machine, side
# by side; writes BENCHMARKS.md and bench/results.svg (DESIGN §9, issues 7 and 16).
#
#   bench/compare.sh [--quick] [--no-lib] [--skip-kembar] [--skip-gluster] [--skip-ceph]
#                    [--skip-issue7] [--skip-issue16] [--skip-mail] [--rounds N] [--runtime SEC]
#                    [--out FILE.md] [--svg FILE.svg]
#
# What it does, in order:
#   1. measures the disk under /var/tmp: sequential 1 MiB O_DIRECT writes (fio, dd as fallback);
#      "physical limit" = that bandwidth / replica count, since both bricks share the one disk;
#   2. brings up a kembar replica-2 volume: two kembard on 127.0.0.1 (ports KB_BENCH_PORT and +1,
#      state and bricks under $ROOT), `kembar volume create v replica 2 ... force`, `volume start`,
#      mounted with kembar-fuse;
#   3. brings up a GlusterFS replica-2 volume with the team's anchor script (virt profile; it
#      installs GlusterFS itself), bricks under $ROOT too (same disk); and, for issue 16, Ceph with
#      its anchor script (1 mon, 1 mgr, 2 bluestore OSDs on files under $ROOT, pool size 2, the
#      4 GiB RBD image vmpool/vm; it installs Ceph itself);
#   4. issue 7 (unless --skip-issue7): runs kembar-bench once over gluster, kembar and a local
#      directory (ratios are X / gluster), with the CPU time of each FUSE client (--cpu-pid); and
#      (unless --no-lib) over the kembar volume through libkembar without FUSE (column
#      kembar-lib; its client CPU is kembar-bench's own), which shows what the FUSE hop costs;
#      then a second, O_DIRECT sequential pass (the qemu cache=none pattern), counting the CPU of
#      the client and both brick processes of each system;
#   5. issue 16 (unless --skip-issue16): bench/fio-rows.py runs fio over kembar (FUSE),
#      GlusterFS (FUSE), the local disk, Ceph RBD through librbd (fio's rbd engine, as qemu
#      reaches it) and GlusterFS through libgfapi (fio's gfapi engines) in one interleaved run:
#      4 KiB O_DIRECT at queue depth 1 and 16, 4 KiB write + fdatasync each, sequential write
#      + fsync and cold read, with p50/p99 latency and CPU per operation (see its --help); then
#      (unless --skip-mail) kembar-bench --mail-only over kembar, GlusterFS (FUSE) and the local
#      disk: the mail-server-like small-file workload;
#   6. writes the report: each part it ran replaces that part of BENCHMARKS.md (between its
#      <!-- part:... --> markers), a part it did not run is kept from the file as it was; and
#      always (trap) unmounts, stops what it started (Ceph and GlusterFS with their scripts'
#      down commands), removes $ROOT.
#
# Default run on 2 cores: issue 7 ~6 minutes (5 runs, 3 x 10 s random), issue 16 ~13 minutes
# (3 rounds of 4 s per random row, 512 MiB sequential, one mail run); --quick: ~1 + ~4 minutes.
# --skip-kembar / --skip-gluster / --skip-ceph leave a system out (e.g. while it is being built);
# the report says so.
# Environment: KB_BIN (binaries, default build/), KB_BENCH_ROOT (default /var/tmp/kembar-bench),
# KB_BENCH_PORT (default 24961), GLUSTER_ANCHOR (default ../shared/anchor/glusterfs.sh),
# CEPH_ANCHOR (default ../shared/anchor/ceph.sh; it uses the fixed ports 3300 and 6789 and
# writes /etc/ceph/ceph.conf).
# Needs root (mounts, dropping caches). Exit status non-zero, with the reason, when a step fails.
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${KB_BIN:-$REPO/build}
ROOT=${KB_BENCH_ROOT:-/var/tmp/kembar-bench}
PORT0=${KB_BENCH_PORT:-24961}
ANCHOR=${GLUSTER_ANCHOR:-$REPO/../shared/anchor/glusterfs.sh}
CEPH_ANCHOR=${CEPH_ANCHOR:-$REPO/../shared/anchor/ceph.sh}
OUT=$REPO/BENCHMARKS.md
SVG=$REPO/bench/results.svg
QUICK=0 DO_KEMBAR=1 DO_GLUSTER=1 DO_LIB=1 DO_CEPH=1 DO_I7=1 DO_I16=1 DO_MAIL=1
ROUNDS="" RUNTIME=""
GVOL=kbbench KVOL=v
MNT_K=$ROOT/mnt-kembar MNT_G=$ROOT/mnt-gluster MNT_R=$ROOT/mnt-rbd LOCAL=$ROOT/local
export CEPH_ROOT=$ROOT/ceph

while [ $# -gt 0 ]; do
    case "$1" in
        --quick) QUICK=1 ;;
        --no-lib) DO_LIB=0 ;;
        --skip-kembar) DO_KEMBAR=0 ;;
        --skip-gluster) DO_GLUSTER=0 ;;
        --skip-ceph) DO_CEPH=0 ;;
        --skip-issue7) DO_I7=0 ;;
        --skip-issue16) DO_I16=0 ;;
        --skip-mail) DO_MAIL=0 ;;
        --rounds) ROUNDS=$2; shift ;;
        --runtime) RUNTIME=$2; shift ;;
        --out) OUT=$2; shift ;;
        --svg) SVG=$2; shift ;;
        -h|--help) awk 'NR > 1 && /^#/ {sub(/^# ?/, ""); print; next} NR > 1 {exit}' "$0"; exit 0 ;;
        *) echo "compare.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
    shift
done

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'compare.sh: %s\n' "$*" >&2; exit 1; }
addr() { echo "127.0.0.1:$((PORT0 + $1 - 1))"; }
cli() { timeout -k 5 60 "$BIN/kembar" --server "$(addr 1)" "$@" </dev/null; }
mounted() { awk -v m="$1" '$2 == m {f=1} END {exit !f}' /proc/self/mounts; }
cmdline_has() { [ -r "/proc/$1/cmdline" ] && tr '\0' ' ' <"/proc/$1/cmdline" | grep -qF -- "$2"; }

# The FUSE client processes serving mount point $2 whose command lines name $1, comma-separated:
# kembar-fuse is two (the supervisor holding the mount and the serving process, which does the
# work); GlusterFS's is one.
client_pid() {
    local p out=""
    for p in $(pgrep -f -- "$2"); do
        cmdline_has "$p" "$1" && cmdline_has "$p" "$2" && out=${out:+$out,}$p
    done
    [ -n "$out" ] && echo "$out"
}

not_running() {  # our child $1 has exited (a zombie until waited for counts as exited)
    local st; st=$(ps -o stat= -p "$1" 2>/dev/null) || return 0
    [ "${st:0:1}" = Z ]
}

wait_for() {  # wait_for SECS CMD...
    local end=$(( $(date +%s) + $1 )); shift
    until "$@" >/dev/null 2>&1; do [ "$(date +%s)" -ge "$end" ] && return 1; sleep 0.2; done
}

# ------------------------------------------------------------------------------------ teardown

GLUSTERD_WAS_UP=0
pgrep -x glusterd >/dev/null && GLUSTERD_WAS_UP=1
GLUSTER_UP=0 CEPH_UP=0

force_umount() {
    local mnt=$1 dev minor
    mounted "$mnt" || return 0
    timeout -k 2 15 fusermount3 -u "$mnt" 2>/dev/null || timeout -k 2 15 umount "$mnt" 2>/dev/null
    mounted "$mnt" || return 0
    dev=$(awk -v m="$mnt" '$5 == m {print $3}' /proc/self/mountinfo | head -n1); minor=${dev#*:}
    [ -n "$minor" ] && [ -w "/sys/fs/fuse/connections/$minor/abort" ] && echo 1 >"/sys/fs/fuse/connections/$minor/abort"
    timeout -k 2 5 umount -l "$mnt" 2>/dev/null || true
}

CHILD=""
teardown() {
    local rc=$? n p
    trap - EXIT INT TERM HUP
    say "tearing down"
    if [ -n "$CHILD" ] && kill -0 "$CHILD" 2>/dev/null; then   # kembar-bench: stop, remove its files
        kill -TERM "$CHILD" 2>/dev/null
        wait_for 60 not_running "$CHILD" || kill -KILL "$CHILD" 2>/dev/null
        wait "$CHILD" 2>/dev/null
    fi
    force_umount "$MNT_K"
    for n in 1 2; do
        p=$(cat "$ROOT/node$n/kembard.pid" 2>/dev/null) || continue
        cmdline_has "$p" "$ROOT/node$n/state" || continue      # only the kembard we started
        kill -TERM "$p" 2>/dev/null
        wait_for 10 sh -c "! kill -0 $p" || kill -9 "$p" 2>/dev/null
    done
    if [ "$CEPH_UP" = 1 ]; then
        bash "$CEPH_ANCHOR" down "$MNT_R" >/dev/null 2>&1 || say "ceph.sh down failed: look under $CEPH_ROOT"
        force_umount "$MNT_R"
    fi
    if [ "$GLUSTER_UP" = 1 ]; then
        bash "$ANCHOR" down "$GVOL" "$MNT_G" >/dev/null 2>&1 || true
        force_umount "$MNT_G"
        if [ "$GLUSTERD_WAS_UP" = 0 ] && [ -r /run/glusterd-anchor.pid ]; then
            p=$(cat /run/glusterd-anchor.pid)
            cmdline_has "$p" glusterd && kill -TERM "$p" 2>/dev/null
            # Brick and self-heal processes of our volume are gone with `down`; glusterd's own
            # helpers exit with it.
        fi
    fi
    case "$ROOT" in
        /var/tmp/?*|/tmp/?*) mounted "$MNT_K" || mounted "$MNT_G" || mounted "$MNT_R" || rm -rf --one-file-system "$ROOT" ;;
    esac
    exit "$rc"
}
trap teardown EXIT
trap 'exit 130' INT TERM HUP

# ----------------------------------------------------------------------------------- bring-up

[ "$(id -u)" = 0 ] || die "needs root (FUSE and GlusterFS mounts, dropping caches)"
BENCH=${KB_BENCH:-$BIN/kembar-bench}
[ -x "$BENCH" ] || die "$BENCH missing: run make"
if [ "$DO_KEMBAR" = 1 ]; then
    for b in kembard kembar kembar-fuse; do [ -x "$BIN/$b" ] || die "$BIN/$b missing: run make (or --skip-kembar)"; done
fi
[ "$DO_GLUSTER" = 0 ] || [ -r "$ANCHOR" ] || die "GlusterFS anchor script $ANCHOR not found"
[ "$DO_I7" = 1 ] || [ "$DO_I16" = 1 ] || die "--skip-issue7 and --skip-issue16: nothing to measure"
[ "$DO_I16" = 0 ] && DO_CEPH=0
if [ "$DO_I16" = 1 ]; then
    command -v fio >/dev/null || die "issue 16 needs fio (apt-get install fio), or --skip-issue16"
    command -v python3 >/dev/null || die "issue 16 needs python3, or --skip-issue16"
    [ "$DO_CEPH" = 0 ] || [ -r "$CEPH_ANCHOR" ] || die "Ceph anchor script $CEPH_ANCHOR not found (or --skip-ceph)"
    # fio must have the engines the columns need: Debian 12's fio is built with both.
    engines=$(fio --enghelp 2>/dev/null)
    [ "$DO_CEPH" = 0 ] || grep -qx '[[:space:]]*rbd' <<<"$engines" || die "this fio has no rbd engine (or --skip-ceph)"
    [ "$DO_GLUSTER" = 0 ] || grep -qx '[[:space:]]*gfapi' <<<"$engines" || die "this fio has no gfapi engine (or --skip-gluster)"
fi
case "$ROUNDS$RUNTIME" in *[!0-9]*) die "--rounds and --runtime take whole numbers" ;; esac
if [ -e "$ROOT" ]; then
    mounted "$MNT_K" || mounted "$MNT_G" || mounted "$MNT_R" && die "$ROOT is in use (a mount is live); run its teardown first"
    rm -rf --one-file-system "$ROOT"
fi
mkdir -p "$ROOT/bin" "$LOCAL" || die "cannot create $ROOT"
# A snapshot of the binaries: a rebuild during the run must not mix versions.
cp "$BENCH" "$ROOT/bin/kembar-bench" || die "cannot copy $BENCH"
cp "$REPO/bench/fio-rows.py" "$ROOT/bin/" || die "cannot copy bench/fio-rows.py"
BENCH=$ROOT/bin/kembar-bench
if [ "$DO_KEMBAR" = 1 ]; then
    for b in kembard kembar kembar-fuse; do cp "$BIN/$b" "$ROOT/bin/" || die "cannot copy $BIN/$b"; done
    BIN=$ROOT/bin
fi

disk_bandwidth() {  # MiB/s of sequential 1 MiB O_DIRECT writes to the disk under $ROOT
    local mib=$1 f=$ROOT/disk-probe
    if command -v fio >/dev/null; then
        fio --name=disk --filename="$f" --rw=write --bs=1M --size="${mib}M" --direct=1 \
            --ioengine=libaio --iodepth=8 --end_fsync=1 --output-format=terse --terse-version=3 \
            2>/dev/null | awk -F';' '{printf "%.1f\n", $48 / 1024}'   # field 48: write bandwidth KiB/s
    else
        local t0 t1
        t0=$(date +%s.%N)
        dd if=/dev/zero of="$f" bs=1M count="$mib" oflag=direct conv=fsync status=none
        t1=$(date +%s.%N)
        awk -v a="$t0" -v b="$t1" -v m="$mib" 'BEGIN {printf "%.1f\n", m / (b - a)}'
    fi
    rm -f "$f"
}

kembar_up() {
    local n
    for n in 1 2; do
        mkdir -p "$ROOT/node$n/state" "$ROOT/node$n/brick"
        "$BIN/kembard" --listen "$(addr "$n")" --state-dir "$ROOT/node$n/state" \
            --log-file "$ROOT/node$n/kembard.log" --daemon --pid-file "$ROOT/node$n/kembard.pid" \
            </dev/null >>"$ROOT/node$n/kembard.out" 2>&1 || die "kembard $n did not start: $(tail -n 3 "$ROOT/node$n/kembard.out")"
        wait_for 15 timeout 3 "$BIN/kembar" --server "$(addr "$n")" volume list || die "kembard $n ($(addr "$n")) does not answer"
    done
    cli volume create "$KVOL" replica 2 "$(addr 1):$ROOT/node1/brick" "$(addr 2):$ROOT/node2/brick" force >&2 ||
        die "kembar volume create failed"
    cli volume start "$KVOL" >&2 || die "kembar volume start failed"
    mkdir -p "$MNT_K"
    timeout -k 5 30 "$BIN/kembar-fuse" "$(addr 1):/$KVOL" "$MNT_K" </dev/null >&2 || die "kembar-fuse mount failed"
    mounted "$MNT_K" || die "$MNT_K is not mounted after kembar-fuse"
    K_PID=$(client_pid kembar-fuse "$MNT_K") || die "no kembar-fuse process for $MNT_K"
    K_BRICKS=$(cat "$ROOT/node1/kembard.pid"),$(cat "$ROOT/node2/kembard.pid")
}

gluster_up() {
    GLUSTER_UP=1
    GLUSTER_PROFILE=virt bash "$ANCHOR" up "$GVOL" 2 "$MNT_G" "$ROOT/gluster" >&2 || die "GlusterFS did not come up"
    G_PID=$(client_pid "--process-name fuse" "$MNT_G") || die "no glusterfs client process for $MNT_G"
    G_BRICKS=$(pgrep -f -- "glusterfsd .*--volfile-id $GVOL\\." | paste -sd,)
    [ -n "$G_BRICKS" ] || die "no glusterfsd brick processes for $GVOL"
    # The server name the mount used is the one libgfapi must use too (GlusterFS refuses
    # 127.0.0.1 by name; the anchor picks the machine's name).
    G_HOST=$(awk -v m="$MNT_G" '$2 == m {split($1, a, ":"); print a[1]; exit}' /proc/self/mounts)
    [ -n "$G_HOST" ] || die "cannot tell the GlusterFS server name from the mount of $MNT_G"
}

ceph_up() {
    CEPH_UP=1
    bash "$CEPH_ANCHOR" up "$MNT_R" >&2 || die "Ceph did not come up (see $CEPH_ROOT/log)"
    local i p
    C_OSDS=""
    for i in 0 1; do
        p=$(cat "$CEPH_ROOT/pid/osd.$i" 2>/dev/null) && cmdline_has "$p" ceph-osd || die "no ceph-osd $i"
        C_OSDS=${C_OSDS:+$C_OSDS,}$p
    done
}

START=$(date +%s)
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
say "disk bandwidth (sequential 1 MiB O_DIRECT writes under $ROOT)"
DISK_MIB=$([ "$QUICK" = 1 ] && echo 512 || echo 1024)
DISK_BW=$(disk_bandwidth "$DISK_MIB")
if command -v fio >/dev/null; then
    DISK_CMD="fio --name=disk --filename=$ROOT/disk-probe --rw=write --bs=1M --size=${DISK_MIB}M --direct=1 --ioengine=libaio --iodepth=8 --end_fsync=1"
else
    DISK_CMD="dd if=/dev/zero of=$ROOT/disk-probe bs=1M count=$DISK_MIB oflag=direct conv=fsync"
fi
[ -n "$DISK_BW" ] || die "could not measure the disk bandwidth"
say "disk: $DISK_BW MiB/s, so at most $(awk -v b="$DISK_BW" 'BEGIN {printf "%.1f", b / 2}') MiB/s per replica-2 write"

# TARGETS: CPU of each FUSE client (the goal's "client CPU"); TARGETS_ALL: of the client and
# both brick processes (what the whole system spends per GiB).
TARGETS=() TARGETS_ALL=()
if [ "$DO_GLUSTER" = 1 ]; then
    say "GlusterFS replica 2 (virt profile) at $MNT_G"
    gluster_up
    TARGETS+=(--label gluster --cpu-pid "$G_PID" "$MNT_G")
    TARGETS_ALL+=(--label gluster --cpu-pid "$G_PID,$G_BRICKS" "$MNT_G")
fi
if [ "$DO_KEMBAR" = 1 ]; then
    say "kembar replica 2 at $MNT_K"
    kembar_up
    TARGETS+=(--label kembar --cpu-pid "$K_PID" "$MNT_K")
    TARGETS_ALL+=(--label kembar --cpu-pid "$K_PID,$K_BRICKS" "$MNT_K")
    if [ "$DO_LIB" = 1 ] && [ "$DO_I7" = 1 ]; then
        mkdir "$MNT_K/lib" || die "cannot create $MNT_K/lib"
        TARGETS+=(--label kembar-lib "kembar://$(addr 1)/$KVOL/lib")
        TARGETS_ALL+=(--label kembar-lib --cpu-pid "self,$K_BRICKS" "kembar://$(addr 1)/$KVOL/lib")
    fi
fi
TARGETS+=(--label local "$LOCAL")
TARGETS_ALL+=(--label local "$LOCAL")
if [ "$DO_CEPH" = 1 ]; then
    say "Ceph: 1 mon, 1 mgr, 2 bluestore OSDs under $CEPH_ROOT, pool size 2, RBD image vmpool/vm"
    ceph_up
fi

# ------------------------------------------------------------------------------------- measure

if [ "$QUICK" = 1 ]; then
    RSIZE=128M
    MAIN_ARGS=(-s "1M,10M,100M" -r 128k -n 2 -e --rand --qd 16 --rand-size "$RSIZE" --rand-time 4 --cpu)
    DIRECT_ARGS=(-s 100M -r 1M -n 1 -I -e)
    ROUNDS=${ROUNDS:-1} RUNTIME=${RUNTIME:-2} SEQ16=256M MAIL_ARGS=(--mail-files 500 --mail-tx 2000)
    MAIL_DESC="500 files of 0.5-64 KiB in 10 directories, 2,000 transactions, one run"
else
    RSIZE=256M
    MAIN_ARGS=(-s "1M,10M,100M" -r 128k -n 5 -e --rand --qd 16 --rand-size "$RSIZE" --rand-time 10 --rand-runs 3 --cpu)
    DIRECT_ARGS=(-s 100M -r "128k,1M" -n 3 -I -e)
    ROUNDS=${ROUNDS:-3} RUNTIME=${RUNTIME:-4} SEQ16=512M MAIL_ARGS=()
    MAIL_DESC="2,000 files of 0.5-64 KiB in 10 directories, 10,000 transactions, one run"
fi
CSV=$ROOT/results.csv
run_bench() {  # run_bench OUTFILE ARGS...: exit 1 (some test failed on some target) still reports
    local out=$1 rc=0; shift
    # In the background with `wait`: a trapped signal interrupts `wait` at once, where a
    # foreground child would delay the trap (and the teardown) until it finished.
    timeout -k 10 1800 "$BENCH" "$@" >"$out" &
    CHILD=$!
    wait "$CHILD" || rc=$?
    CHILD=""
    cat "$out"
    # kembar-bench writes every report before it shuts its libkembar client down: a crash in
    # that shutdown (exit by signal after a complete table) costs no result; it is reported.
    if [ "$rc" -gt 128 ] && [ "$rc" -lt 160 ] && grep -q '^test ' "$out"; then
        BENCH_CRASH="kembar-bench died of signal $((rc - 128)) after writing its results (libkembar shutdown)"
        say "$BENCH_CRASH"
        return 0
    fi
    [ "$rc" -le 1 ] || die "kembar-bench failed (exit $rc): see the lines above"
    [ "$rc" -eq 0 ] || BENCH_FAILURES=1
}
BENCH_FAILURES=0 BENCH_CRASH=""
I7_START=$(date +%s)
if [ "$DO_I7" = 1 ]; then
    say "issue 7: kembar-bench, sequential (fsync in timing) and random 4k QD16 on every target"
    run_bench "$ROOT/main.txt" "${MAIN_ARGS[@]}" "${TARGETS[@]}" --csv "$CSV" --svg "$ROOT/results.svg"
    say "issue 7: kembar-bench, sequential O_DIRECT (qemu cache=none)"
    run_bench "$ROOT/direct.txt" "${DIRECT_ARGS[@]}" "${TARGETS_ALL[@]}"
fi
I7_ELAPSED=$(( $(date +%s) - I7_START ))

# Issue 16. Targets for fio-rows.py: kembar first (the ratios are kembar / the others); cpu= the
# daemons of each system (the fio process is counted by fio-rows.py itself).
colons() { tr ',' ':' <<<"$1"; }
FIO_T=() ROLES=() TITLES=() MAIL_T=() FIO_ARGS=() FIO_FAIL=0 MAIL_FAIL=0
if [ "$DO_KEMBAR" = 1 ]; then
    FIO_T+=(--target "label=kembar,kind=file,dir=$MNT_K,cpu=$(colons "$K_PID,$K_BRICKS")")
    ROLES+=(kembar=kembar) TITLES+=("kembar=kembar (FUSE)")
    MAIL_T+=(--label kembar "$MNT_K")
fi
if [ "$DO_GLUSTER" = 1 ]; then
    FIO_T+=(--target "label=gluster,kind=file,dir=$MNT_G,cpu=$(colons "$G_PID,$G_BRICKS")")
    ROLES+=(gfuse=gluster) TITLES+=("gluster=GlusterFS (FUSE)")
    MAIL_T+=(--label gluster "$MNT_G")
fi
FIO_T+=(--target "label=local,kind=file,dir=$LOCAL")
ROLES+=(local=local) TITLES+=("local=local ext4")
MAIL_T+=(--label local "$LOCAL")
if [ "$DO_CEPH" = 1 ]; then
    FIO_T+=(--target "label=librbd,kind=rbd,pool=vmpool,image=vm,client=admin,cpu=$(colons "$C_OSDS")")
    ROLES+=(rbd=librbd) TITLES+=("librbd=Ceph RBD (librbd)")
fi
if [ "$DO_GLUSTER" = 1 ]; then
    FIO_T+=(--target "label=gfapi,kind=gfapi,volume=$GVOL,host=$G_HOST,cpu=$(colons "$G_BRICKS")")
    ROLES+=(gfapi=gfapi) TITLES+=("gfapi=GlusterFS (libgfapi)")
fi
FIO_ARGS=(--rounds "$ROUNDS" --runtime "$RUNTIME" --rand-size "$RSIZE" --seq-size "$SEQ16")
I16_START=$(date +%s)
if [ "$DO_I16" = 1 ]; then
    say "issue 16: fio rows on $(( ${#FIO_T[@]} / 2 )) systems, $ROUNDS round(s) of $RUNTIME s per random row (bench/fio-rows.py)"
    rc=0
    python3 "$ROOT/bin/fio-rows.py" "${FIO_ARGS[@]}" --work "$ROOT/fio" --csv "$ROOT/fio.csv" "${FIO_T[@]}" &
    CHILD=$!
    wait "$CHILD" || rc=$?
    CHILD=""
    [ "$rc" -le 1 ] || die "fio-rows.py failed (exit $rc): see the lines above"
    [ "$rc" -eq 0 ] || FIO_FAIL=1
    if [ "$DO_MAIL" = 1 ]; then
        say "issue 16: kembar-bench --mail-only (small files) on $(( ${#MAIL_T[@]} / 3 )) mounts"
        MAIL_CMD=(--mail-only "${MAIL_ARGS[@]}" "${MAIL_T[@]}")
        rc=0
        timeout -k 10 1800 "$BENCH" "${MAIL_CMD[@]}" --csv "$ROOT/mail.csv" >"$ROOT/mail.txt" &
        CHILD=$!
        wait "$CHILD" || rc=$?
        CHILD=""
        cat "$ROOT/mail.txt"
        [ "$rc" -le 1 ] || die "kembar-bench --mail-only failed (exit $rc)"
        [ "$rc" -eq 0 ] || MAIL_FAIL=1
    fi
    MAILCSV=(); [ "$DO_MAIL" = 1 ] && MAILCSV=(--mail-csv "$ROOT/mail.csv")
    IFS=, ; ROLES_S="${ROLES[*]}" TITLES_S="${TITLES[*]}"; unset IFS
    python3 "$ROOT/bin/fio-rows.py" "${FIO_ARGS[@]}" --work "$ROOT/fio" --from-csv "$ROOT/fio.csv" \
        --md "$ROOT/fio.md" --goals-md "$ROOT/goals16.md" --roles "$ROLES_S" --titles "$TITLES_S" \
        --mail-desc "$MAIL_DESC" \
        "${MAILCSV[@]}" "${FIO_T[@]}" || die "fio-rows.py could not write the tables"
fi
I16_ELAPSED=$(( $(date +%s) - I16_START ))
ELAPSED=$(( $(date +%s) - START ))
LOAD1=$(cut -d' ' -f1-3 /proc/loadavg)

# -------------------------------------------------------------------------------------- report

# get TEST SIZE METRIC UNIT TARGET: the mean from the CSV (empty when absent or failed).
get() {
    awk -F, -v t="$1" -v s="$2" -v m="$3" -v u="$4" -v g="$5" \
        '$1 == t && $2 == s && $5 == m && $6 == u && $7 == g && $9 == "ok" {print $11}' "$CSV"
}
fmt() { [ -n "$1" ] && awk -v v="$1" 'BEGIN {printf (v >= 100 ? "%.0f" : v >= 10 ? "%.1f" : "%.2f"), v}' || echo "n/a"; }
# goal_row LABEL TEST SIZE METRIC UNIT GOAL(>=x or <=x)
goal_row() {
    local g k r met="n/a" op=${6:0:2} x=${6:2}
    g=$(get "$2" "$3" "$4" "$5" gluster); k=$(get "$2" "$3" "$4" "$5" kembar)
    if [ -n "$g" ] && [ -n "$k" ] && awk -v g="$g" 'BEGIN {exit !(g > 0)}'; then
        r=$(awk -v g="$g" -v k="$k" 'BEGIN {printf "%.2f", k / g}')
        if [ "$op" = ">=" ]; then met=$(awk -v r="$r" -v x="$x" 'BEGIN {print (r >= x ? "yes" : "**no**")}')
        else met=$(awk -v r="$r" -v x="$x" 'BEGIN {print (r <= x ? "yes" : "**no**")}'); fi
        r="${r}x"
    else
        r="n/a"
    fi
    printf '| %s | %s | %s | %s | %s %sx | %s |\n' "$1" "$(fmt "$g")" "$(fmt "$k")" "$r" "${op/>=/≥}" "$x" "$met" | sed 's/| <= /| ≤ /'
}
limit_row() {  # share of the physical limit reached by TARGET's 100M write
    local v; v=$(get write 100M mean MB/s "$1")
    [ -n "$v" ] || { echo "| $1 | n/a | n/a |"; return; }
    awk -v v="$v" -v d="$DISK_BW" -v n="$1" 'BEGIN {printf "| %s | %.1f | %.0f%% |\n", n, v, 100 * v / (d / 2)}'
}

machine() {  # machine ELAPSED_OF_THE_PART
    local cpu mem dev
    cpu=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
    mem=$(awk '/^MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)
    dev=$(df --output=source "$ROOT" | tail -n1)
    echo "- CPU: $(nproc) cores${cpu:+, $cpu}"
    echo "- RAM: $mem"
    echo "- disk: $dev ($(df --output=fstype "$ROOT" | tail -n1), $(lsblk -dno SIZE,ROTA,MODEL "$dev" 2>/dev/null | awk '{r = $2 == 1 ? "rotational" : "non-rotational"; $2 = r; print}' || echo '?'));" \
         "sequential 1 MiB O_DIRECT write: **$DISK_BW MiB/s**"
    echo "- kernel: $(uname -r) ($(uname -m)); $(fusermount3 -V 2>/dev/null | head -n1)"
    echo "- kembar: $("$BENCH" -V | awk '{print $2}'), commit $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null)$(git -C "$REPO" diff --quiet HEAD 2>/dev/null || echo ' (with uncommitted changes)')"
    [ "$DO_GLUSTER" = 1 ] && echo "- GlusterFS: $(glusterfs --version 2>/dev/null | head -n1) (Debian package), profile virt"
    [ "$DO_CEPH" = 1 ] && echo "- Ceph: $(ceph --version 2>/dev/null | awk '{print $3, $5}') (Debian packages), set up by ceph.sh; librbd $(dpkg-query -W -f '${Version}' librbd1 2>/dev/null), rbd_cache off"
    [ "$DO_I16" = 1 ] && echo "- $(fio --version 2>/dev/null) (Debian package: engines psync, io_uring, rbd, gfapi, gfapi_async)"
    echo "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ); this part took $1 s of a ${ELAPSED} s comparison (bring-up included)"
    echo "- load average (1, 5, 15 min) before: $LOAD0; after: $LOAD1 (anything above the core count means"
    echo "  other work shared the machine; targets are interleaved run by run so it spreads over all of them)"
}

# part_text NAME: the part as the existing report holds it, markers included (empty if none).
part_text() {
    [ -r "$OUT" ] || return 0
    awk -v b="<!-- part:$1 -->" -v e="<!-- /part:$1 -->" '$0 == b {on = 1} on {print} $0 == e {on = 0}' "$OUT"
}
# notes NAME: the hand-written analysis between <!-- NAME --> and <!-- /NAME -->; it survives
# regeneration.
notes() {
    [ -r "$OUT" ] || return 0
    awk -v b="<!-- $1 -->" -v e="<!-- /$1 -->" '$0 == b {on = 1; next} $0 == e {on = 0} on' "$OUT"
}
q() {  # the arguments as a shell would need them typed
    local a out=()
    for a in "$@"; do
        if [[ "$a" =~ ^[A-Za-z0-9_./:,=+@-]+$ ]]; then out+=("$a"); else out+=("'${a//\'/\'\\\'\'}'"); fi
    done
    echo "${out[*]}"
}
TODAY=$(date +%Y-%m-%d)

part_issue7() {
    local notes7; notes7=$(notes notes)
    echo "<!-- part:issue7 -->"
    echo "## $TODAY — sequential throughput, random I/O at QD 16 and CPU against GlusterFS (FUSE) (issue 7)"
    echo
    echo "Generated by \`bench/compare.sh$([ "$QUICK" = 1 ] && echo ' --quick')\`: both systems as replica 2 on this one machine,"
    echo "both bricks of each on the same local disk, measured in one \`kembar-bench\` run with the local"
    echo "disk itself as a further column$([ "$DO_LIB" = 1 ] && [ "$DO_KEMBAR" = 1 ] && echo ', and the kembar volume also through libkembar without FUSE (kembar-lib)'). Ratios are *target / GlusterFS*."
    [ "$DO_KEMBAR" = 1 ] || echo "**kembar was not part of this run (--skip-kembar).**"
    [ "$DO_GLUSTER" = 1 ] || echo "**GlusterFS was not part of this run (--skip-gluster).**"
    [ "$BENCH_FAILURES" = 0 ] || echo "**Some tests failed on some target; they show as \"failed\" below.**"
    [ -z "$BENCH_CRASH" ] || echo "**Note: $BENCH_CRASH.**"
    echo
    echo "### Goals (issue 7)"
    echo
    echo "| metric | GlusterFS | kembar | kembar/GlusterFS | goal | met |"
    echo "|---|---|---|---|---|---|"
    goal_row "write 100 MiB, MB/s (fsync in timing)" write 100M mean MB/s ">=2"
    goal_row "re-write 100 MiB, MB/s (fsync in timing)" rewrite 100M mean MB/s ">=2"
    goal_row "read 100 MiB, cold cache, MB/s" read 100M mean MB/s ">=1.5"
    goal_row "4 KiB random write, O_DIRECT, QD 16, IOPS" randwrite "$RSIZE" mean IOPS ">=3"
    goal_row "4 KiB random read, O_DIRECT, QD 16, IOPS" randread "$RSIZE" mean IOPS ">=2"
    goal_row "client CPU s per GiB written (100 MiB write)" write 100M cpu "cpu s/GiB" "<=0.5"
    echo
    echo "Physical limit: the disk writes $DISK_BW MiB/s; with both replicas on it a replica-2 volume"
    echo "can write at most **$(awk -v b="$DISK_BW" 'BEGIN {printf "%.1f", b / 2}') MiB/s**. Sequential 100 MiB write (fsync in timing):"
    echo
    echo "| target | MB/s | share of the limit |"
    echo "|---|---|---|"
    [ "$DO_GLUSTER" = 1 ] && limit_row gluster
    [ "$DO_KEMBAR" = 1 ] && limit_row kembar
    echo
    echo "<!-- notes -->"
    [ -n "$notes7" ] && echo "$notes7"
    echo "<!-- /notes -->"
    echo
    echo "### All results"
    echo
    echo "![kembar-bench results]($SVG_REL)"
    echo
    echo "Sequential (buffered, fsync + close in the timing, caches dropped before the cold read) and"
    echo "random 4 KiB O_DIRECT at QD 16; CPU is that of each FUSE client (\`--cpu-pid\`; kembar-fuse's"
    echo "supervisor and serving process; \"self\" = the benchmark process, i.e. the kernel's own cost for"
    echo "the local disk):"
    echo
    echo '```'
    cat "$ROOT/main.txt"
    echo '```'
    echo
    echo "Sequential with O_DIRECT (how qemu with cache=none writes an image); here CPU is that of the"
    echo "client *and both brick processes*, i.e. what the whole system spends per GiB:"
    echo
    echo '```'
    cat "$ROOT/direct.txt"
    echo '```'
    echo
    echo "### Machine"
    echo
    machine "$I7_ELAPSED"
    echo
    echo "### Exact commands"
    echo
    echo '```sh'
    echo "# disk"
    echo "$DISK_CMD"
    if [ "$DO_KEMBAR" = 1 ]; then
        echo "# kembar"
        for n in 1 2; do echo "kembard --listen $(addr "$n") --state-dir $ROOT/node$n/state --log-file $ROOT/node$n/kembard.log --daemon --pid-file $ROOT/node$n/kembard.pid"; done
        echo "kembar --server $(addr 1) volume create $KVOL replica 2 $(addr 1):$ROOT/node1/brick $(addr 2):$ROOT/node2/brick force"
        echo "kembar --server $(addr 1) volume start $KVOL"
        echo "kembar-fuse $(addr 1):/$KVOL $MNT_K"
    fi
    if [ "$DO_GLUSTER" = 1 ]; then
        echo "# GlusterFS"
        echo "GLUSTER_PROFILE=virt glusterfs.sh up $GVOL 2 $MNT_G $ROOT/gluster"
    fi
    echo "# benchmark (pids are the FUSE client processes)"
    echo "kembar-bench $(q "${MAIN_ARGS[@]}" "${TARGETS[@]}") --csv results.csv --svg results.svg"
    echo "kembar-bench $(q "${DIRECT_ARGS[@]}" "${TARGETS_ALL[@]}")"
    echo '```'
    echo "<!-- /part:issue7 -->"
}

part_issue16() {
    local notes16; notes16=$(notes notes16)
    echo "<!-- part:issue16 -->"
    echo "## $TODAY — latency at queue depth 1, Ceph RBD (librbd), GlusterFS (libgfapi), small files (issue 16)"
    echo
    echo "Generated by \`bench/compare.sh$([ "$QUICK" = 1 ] && echo ' --quick')\`: fio (\`bench/fio-rows.py\`) on every system in one"
    echo "interleaved run — $ROUNDS round(s); in each round every system runs every row (one fio process,"
    echo "jobs one after the other), the order of the systems rotating by one per round — then the"
    echo "small-file workload (\`kembar-bench --mail-only\`) once over the mounts. Every system is"
    echo "replicated twice on this one machine's disk: kembar and GlusterFS replica 2 (both bricks"
    echo "under $ROOT), Ceph a pool of size 2 over 2 bluestore OSDs on files under $ROOT. librbd and"
    echo "libgfapi run inside fio, as they run inside qemu; the FUSE mounts and the local ext4"
    echo "directory are reached with psync (QD 1) and io_uring (QD 4, 16). Cells are medians over the"
    echo "rounds [min–max]; ratios are *kembar / the other* of the medians (above 1 is better for"
    echo "IOPS, MB/s and ops/s; below 1 is better for latencies and CPU)."
    [ "$DO_KEMBAR" = 1 ] || echo "**kembar was not part of this run (--skip-kembar).**"
    [ "$DO_GLUSTER" = 1 ] || echo "**GlusterFS was not part of this run (--skip-gluster).**"
    [ "$DO_CEPH" = 1 ] || echo "**Ceph was not part of this run (--skip-ceph).**"
    [ "$DO_MAIL" = 1 ] || echo "**The small-file workload was not part of this run (--skip-mail).**"
    [ "$FIO_FAIL" = 0 ] || echo "**Some fio jobs failed; their cells show as \"failed\"; fio's output is lost with $ROOT.**"
    [ "$MAIL_FAIL" = 0 ] || echo "**The small-file workload failed on some system (see the kembar-bench output below).**"
    echo
    echo "### Goals (issue 16)"
    echo
    cat "$ROOT/goals16.md"
    echo
    echo "Not measured by this script: that no goal is bought with durability (an O_DIRECT or"
    echo "fdatasync'ed write on both bricks' disks before it is acknowledged), and CPU growth against an"
    echo "earlier build (the CPU per operation below is the baseline for that)."
    echo
    echo "<!-- notes16 -->"
    [ -n "$notes16" ] && echo "$notes16"
    echo "<!-- /notes16 -->"
    echo
    echo "### All rows"
    echo
    echo "Random rows: ${RUNTIME} s each on a $RSIZE file (librbd: the first $RSIZE of the image) written"
    echo "before the first round; sequential rows: $SEQ16 in 1 MiB blocks into space never written before"
    echo "(a new file per round; librbd: a new range of the image), then read back after dropping the"
    echo "kernel's caches. Latency is fio's completion latency (clat); for psync and gfapi that is the"
    echo "whole call. \"sync\" is the fdatasync's own latency (librbd: a flush; fio's rbd engine has no"
    echo "fdatasync). The 4 GiB RBD image is thin: the random file is written through librbd first."
    echo
    cat "$ROOT/fio.md"
    if [ "$DO_MAIL" = 1 ]; then
        echo
        echo "The small-file workload as kembar-bench printed it (ratios there: target / kembar):"
        echo
        echo '```'
        cat "$ROOT/mail.txt"
        echo '```'
    fi
    echo
    echo "### Machine"
    echo
    machine "$I16_ELAPSED"
    echo
    echo "### Exact commands"
    echo
    echo '```sh'
    [ "$DO_GLUSTER" = 1 ] && echo "GLUSTER_PROFILE=virt glusterfs.sh up $GVOL 2 $MNT_G $ROOT/gluster"
    [ "$DO_CEPH" = 1 ] && echo "CEPH_ROOT=$CEPH_ROOT ceph.sh up $MNT_R"
    [ "$DO_KEMBAR" = 1 ] && echo "# kembar: as in the issue-7 part (two kembard, replica 2, kembar-fuse at $MNT_K)"
    echo "# cpu= are the daemons (kembar-fuse, kembard; glusterfs, glusterfsd; ceph-osd) of that run"
    echo "fio-rows.py $(q "${FIO_ARGS[@]}" "${FIO_T[@]}")"
    [ "$DO_MAIL" = 1 ] && echo "kembar-bench $(q "${MAIL_CMD[@]}")"
    echo '```'
    local jf
    jf=$(ls -d "$ROOT"/fio/kembar-r0/job.fio 2>/dev/null || ls -d "$ROOT"/fio/*-r0/job.fio 2>/dev/null | head -n1)
    if [ -n "$jf" ]; then
        echo
        echo "The fio job file of round 1 for $(basename "$(dirname "$jf")" | sed 's/-r0$//') (the others differ in the engine lines:"
        echo "\`ioengine=rbd\` with \`clientname=admin pool=vmpool rbdname=vm\` and offsets for librbd, \`fsync=1\`"
        echo "in place of \`fdatasync=1\`; \`ioengine=gfapi\`/\`gfapi_async\` with \`volume=$GVOL brick=${G_HOST:-HOST}\` for"
        echo "libgfapi; the cpu-mark script records CPU ticks of fio and the daemons before and after each job):"
        echo
        echo "<details><summary>job.fio</summary>"
        echo
        echo '```ini'
        sed "s#$ROOT#\$ROOT#g" "$jf"
        echo '```'
        echo
        echo "</details>"
    fi
    echo "<!-- /part:issue16 -->"
}

SVG_REL=$(realpath --relative-to="$(dirname "$OUT")" "$SVG" 2>/dev/null || echo "$SVG")
if [ "$DO_I7" = 1 ]; then
    cp "$ROOT/results.svg" "$SVG" || die "cannot write $SVG"
fi
{
    echo "# Benchmarks: kembar against GlusterFS, Ceph RBD and the local disk"
    echo
    echo "Generated by \`bench/compare.sh\` on one machine; every system replicated twice with all its"
    echo "copies on the same local disk. Two parts, the newer first: each is rewritten when"
    echo "compare.sh runs it and kept as it was otherwise (\`--skip-issue16\`, \`--skip-issue7\`), so their"
    echo "dates can differ. Notes between the \`notes\` markers are written by hand and kept."
    echo
    if [ "$DO_I16" = 1 ]; then part_issue16; else part_text issue16; fi
    echo
    if [ "$DO_I7" = 1 ]; then part_issue7; else part_text issue7; fi
} >"$OUT.tmp" && mv "$OUT.tmp" "$OUT" || die "cannot write $OUT"
say "wrote $OUT$([ "$DO_I7" = 1 ] && echo " and $SVG") (${ELAPSED} s)"
