# shellcheck shell=bash
#
# lib.sh — the integration-test harness, sourced by every tests/integration/*.t.sh.
#
# What it promises a test:
#   - a private temporary root $KB_TMP (/var/tmp/kembar-it/<test>-<pid>) for state dirs, bricks,
#     mount points and logs;
#   - real daemons: kb_node_start N runs build/kembard on 127.0.0.1:(KB_PORT_BASE+N), state in
#     $KB_TMP/nodeN, and returns only once the node answers `kembar volume list`;
#   - real FUSE mounts (kb_mount / kb_umount) through build/kembar-fuse;
#   - every blocking command under `timeout`, so no test can hang;
#   - cleanup that ALWAYS runs (EXIT trap, and INT/TERM/HUP turned into an exit): resume paused
#     daemons, unmount every mount (lazily, aborting the FUSE connection, if it must), kill every
#     daemon and FUSE client it started, remove $KB_TMP. On failure the daemon logs are first
#     copied to $KB_LOGDIR so the runner can show them.
#
# Every process and mount is recorded in files under $KB_TMP (not in shell variables) so that
# subshells (kb_section) see and add to the same records, and so that a test killed with SIGKILL
# can still be swept from outside: `bash tests/integration/lib.sh --sweep DIR` (the runner does it
# after every test, and before a run for roots whose owner process is gone). A recorded pid is only
# ever signalled after checking that its command line still names our root: no stray kills.
#
# Conventions: functions named kb_* are the API; kb__* are internal. Assertions print
# "FAIL <test>:<line>: ..." and exit non-zero (the whole test, or only the current kb_section).

KB_REPO=${KB_REPO:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
KB_BIN=${KB_BIN:-$KB_REPO/build}
KB_IT_ROOT=${KB_IT_ROOT:-/var/tmp/kembar-it}
KB_TIMEOUT=${KB_TIMEOUT:-30}       # default limit for one blocking command, seconds
KB_LONG=${KB_LONG:-0}
if [ -x /usr/bin/python3 ]; then KB_PY=${KB_PY:-/usr/bin/python3}; else KB_PY=${KB_PY:-python3}; fi

# ---------------------------------------------------------------------------------------------
# Sweep: unmount and kill whatever a (possibly dead) test left under DIR, then remove DIR.
# Usable without a running test; only bash builtins touch /proc so our own helpers never match.

kb__mounts_under() {  # mount points under $1, deepest first (from /proc/self/mountinfo: no stat)
    local dir=$1 line f
    local -a found=()
    while IFS= read -r line; do
        read -r _ _ _ _ f _ <<<"$line"
        case "$f" in "$dir"|"$dir"/*) found+=("$f") ;; esac
    done </proc/self/mountinfo
    [ ${#found[@]} -eq 0 ] && return 0
    printf '%s\n' "${found[@]}" | sort -r
}

kb__mount_minor() {  # device minor of the mount at $1 (FUSE connection id), from mountinfo
    local mnt=$1 line f dev
    while IFS= read -r line; do
        read -r _ _ dev _ f _ <<<"$line"
        if [ "$f" = "$mnt" ]; then echo "${dev#*:}"; return 0; fi
    done </proc/self/mountinfo
    return 1
}

kb__is_mounted() { kb__mount_minor "$1" >/dev/null; }

kb__force_umount() {  # unmount $1 without ever blocking: fusermount, else abort + lazy umount
    local mnt=$1 minor
    kb__is_mounted "$mnt" || return 0
    minor=$(kb__mount_minor "$mnt")
    timeout -k 2 5 fusermount3 -u "$mnt" 2>/dev/null && return 0
    kb__is_mounted "$mnt" || return 0
    if [ -n "$minor" ] && [ -w "/sys/fs/fuse/connections/$minor/abort" ]; then
        echo 1 >"/sys/fs/fuse/connections/$minor/abort" 2>/dev/null || true
    fi
    timeout -k 2 5 umount -l "$mnt" 2>/dev/null || timeout -k 2 5 fusermount3 -uz "$mnt" 2>/dev/null
    ! kb__is_mounted "$mnt"
}

kb__cmdline_has() {  # does process $1's command line contain the string $2?
    local -a args=()
    local a
    # The process may exit at any moment: stderr first, so a vanished file stays quiet.
    mapfile -d '' args 2>/dev/null <"/proc/$1/cmdline" || return 1
    for a in "${args[@]}"; do
        case "$a" in *"$2"*) return 0 ;; esac
    done
    return 1
}

kb__pids_naming() {  # pids (not us, not our parent) whose command line contains $1
    local p me=$$ sub=${BASHPID:-$$}
    for p in /proc/[0-9]*; do
        p=${p#/proc/}
        [ "$p" = "$me" ] || [ "$p" = "$sub" ] || [ "$p" = "$PPID" ] && continue
        kb__cmdline_has "$p" "$1" && echo "$p"
    done
    return 0
}

kb__kill_pid_checked() {  # kill pid $1 only while its command line names $2; TERM, then KILL
    local pid=$1 tag=$2 i
    kb__cmdline_has "$pid" "$tag" || return 0
    kill -CONT "$pid" 2>/dev/null
    kill -TERM "$pid" 2>/dev/null
    for i in $(seq 1 30); do
        kb__cmdline_has "$pid" "$tag" || return 0
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null
    return 0
}

kb_sweep() {  # kb_sweep DIR: unmount, kill and remove everything a test left under DIR
    local dir=$1 m f p
    [ -n "$dir" ] && [ "$dir" != / ] || return 1
    # Paused daemons first, or unmount/kill below would wait on them.
    for f in "$dir"/pids/*; do
        [ -f "$f" ] || continue
        p=$(cat "$f" 2>/dev/null) || continue
        kb__cmdline_has "$p" "$dir" && kill -CONT "$p" 2>/dev/null
    done
    for m in $(kb__mounts_under "$dir"); do kb__force_umount "$m"; done
    for f in "$dir"/pids/*; do
        [ -f "$f" ] || continue
        p=$(cat "$f" 2>/dev/null) || continue
        kb__kill_pid_checked "$p" "$dir"
    done
    # Anything else still running on our paths (a FUSE client whose pid we never learned,
    # a fio or qemu-io left on a mount): it was started by this test.
    for p in $(kb__pids_naming "$dir"); do kb__kill_pid_checked "$p" "$dir"; done
    for m in $(kb__mounts_under "$dir"); do kb__force_umount "$m"; done
    if [ -n "$(kb__mounts_under "$dir")" ]; then
        echo "kb_sweep: still mounted under $dir; not removing it" >&2
        return 1
    fi
    rm -rf --one-file-system "$dir"
}

kb_sweep_stale() {  # sweep roots under $KB_IT_ROOT whose owner pid (name suffix) is gone
    local d pid
    for d in "$KB_IT_ROOT"/*-[0-9]*; do
        [ -d "$d" ] || continue
        pid=${d##*-}
        case "$pid" in *[!0-9]*) continue ;; esac
        kill -0 "$pid" 2>/dev/null && continue
        kb_sweep "$d"
    done
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    # Executed, not sourced: maintenance entry points for the runner.
    case "${1:-}" in
        --sweep) shift; rc=0; for d in "$@"; do kb_sweep "$d" || rc=1; done; exit $rc ;;
        --sweep-stale) kb_sweep_stale; exit 0 ;;
        *) echo "usage: bash $0 --sweep DIR... | --sweep-stale" >&2; exit 2 ;;
    esac
fi

# ---------------------------------------------------------------------------------------------
# Per-test setup.

KB_TEST=${KB_TEST:-$(basename "$0" .t.sh)}
KB_TMP=${KB_TMP:-$KB_IT_ROOT/$KB_TEST-$$}
KB_LOGDIR=${KB_LOGDIR:-$KB_IT_ROOT/logs/$KB_TEST}
KB_SECTION_FAILS=0
KB_T0=$(date +%s%N)

set -E -o pipefail
mkdir -p "$KB_TMP/pids" "$KB_TMP/mounts" "$KB_TMP/paused" "$KB_TMP/sections"

# Ports: node N listens on KB_PORT_BASE+N (N < 100). The base is 24900 unless another test on this
# machine (a concurrent `make test`) holds it: each base is a lock file held (fd 9) for the life of
# the test, and taken only if none of its ports has a listener. Daemons are started without fd 9.
kb__ports_free() {
    ss -Hltn 2>/dev/null | awk -v lo="$(($1 + 1))" -v hi="$(($1 + 99))" '
        { n = split($4, a, ":"); p = a[n] + 0; if (p >= lo && p <= hi) busy = 1 }
        END { exit busy }'
}
if [ -z "${KB_PORT_BASE:-}" ]; then
    mkdir -p "$KB_IT_ROOT/ports"
    for KB_PORT_BASE in $(seq 24900 100 26900) ""; do
        [ -n "$KB_PORT_BASE" ] || { echo "FAIL $KB_TEST: no free port range in 24900-26999" >&2; exit 1; }
        exec 9>"$KB_IT_ROOT/ports/$KB_PORT_BASE.lock"
        if flock -n 9 && kb__ports_free "$KB_PORT_BASE"; then break; fi
        exec 9>&-
    done
fi
echo "$KB_TMP" >"$KB_TMP/.root"
cd "$KB_TMP"   # whatever a tool drops in its working directory is cleaned up with the root

kb_log() { printf '[%6.2fs] %s\n' "$(kb__elapsed)" "$*" >&2; }
kb__elapsed() { echo "$(( ($(date +%s%N) - KB_T0) / 1000000 ))" | awk '{printf "%.2f", $1/1000}'; }

kb__on_err() {  # ERR trap: say which command failed, where (set -e exits right after)
    local rc=$1 line=$2 cmd=$3 i where=""
    # Inside a command substitution or a pipeline element: the enclosing command fails too (set
    # -e, pipefail) and is reported there; inside, -e is off and every failure would be noise.
    [ "$BASH_SUBSHELL" -gt "${KB_SUBSHELL_BASE:-0}" ] && return 0
    cmd=${cmd%%$'\n'*}
    [ "${#cmd}" -gt 200 ] && cmd="${cmd:0:200}..."
    # Call chain, innermost first: file:line(function) of each caller.
    for ((i = 1; i < ${#FUNCNAME[@]} - 1; i++)); do
        where+=" <- ${BASH_SOURCE[i+1]##*/}:${BASH_LINENO[i]}(${FUNCNAME[i+1]})"
    done
    printf 'FAIL %s: %s:%s(%s): command failed (exit %s): %s%s\n' "$KB_TEST" \
        "${BASH_SOURCE[1]##*/}" "$line" "${FUNCNAME[1]:-main}" "$rc" "$cmd" "$where" >&2
}
trap 'kb__on_err $? $LINENO "$BASH_COMMAND"' ERR

kb__copy_logs() {
    local f rel
    rm -rf "$KB_LOGDIR"
    mkdir -p "$KB_LOGDIR"
    while IFS= read -r f; do
        rel=${f#"$KB_TMP"/}
        cp "$f" "$KB_LOGDIR/${rel//\//_}" 2>/dev/null || true
    done < <(find "$KB_TMP" -xdev -path "$KB_TMP/mnt*" -prune -o -path '*/bricks' -prune \
                  -o -type f \( -name '*.log' -o -name '*.out' -o -name '*.err' \) -print 2>/dev/null)
}

kb__cleanup() {
    local rc=$? f m
    trap - ERR
    set +e
    [ "${KB_CLEANED:-0}" = 1 ] && return
    KB_CLEANED=1
    [ "$rc" -ne 0 ] && [ "$rc" -ne 77 ] && kb__copy_logs
    if [ -f "$KB_TMP/atexit" ]; then   # kb_atexit, newest first: before anything waits on it
        tac "$KB_TMP/atexit" | while IFS= read -r f; do timeout -k 2 10 sh -c "$f" </dev/null || true; done
        rm -f "$KB_TMP/atexit"
    fi
    for f in "$KB_TMP"/paused/*; do [ -f "$f" ] && kill -CONT "$(cat "$f")" 2>/dev/null; done
    for f in "$KB_TMP"/mounts/*; do
        [ -f "$f" ] || continue
        m=$(sed -n 1p "$f")
        kb__force_umount "$m" || echo "cleanup: could not unmount $m" >&2
    done
    kb_sweep "$KB_TMP" || echo "cleanup: sweep of $KB_TMP incomplete" >&2
    # Our own background children that name no path of ours (a helper a test forgot): end them
    # by pid and reap them, so nothing outlives the test.
    for f in $(jobs -p); do kill -CONT "$f" 2>/dev/null; kill -TERM "$f" 2>/dev/null; done
    sleep 0.2
    for f in $(jobs -p); do kill -KILL "$f" 2>/dev/null; wait "$f" 2>/dev/null; done
    if [ "$rc" -eq 0 ]; then
        kb_log "$KB_TEST: ok"
    elif [ "$rc" -eq 77 ]; then
        kb_log "$KB_TEST: skipped"
    else
        kb_log "$KB_TEST: FAILED (exit $rc); logs kept in $KB_LOGDIR"
    fi
    exit "$rc"
}
trap kb__cleanup EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------------------------------------
# Assertions. All print "FAIL <test>: <file>:<line>(<function>): <what>", the location being the
# first caller outside lib.sh (the test's line), and exit (the test, or the kb_section).

kb__where() {
    local i
    for ((i = 1; i < ${#BASH_SOURCE[@]}; i++)); do
        if [ "${BASH_SOURCE[i]}" != "${BASH_SOURCE[0]}" ]; then
            echo "${BASH_SOURCE[i]##*/}:${BASH_LINENO[i-1]}(${FUNCNAME[i]})"
            return
        fi
    done
    echo "?"
}

kb__die() {
    printf 'FAIL %s: %s: %s\n' "$KB_TEST" "$(kb__where)" "$*" >&2
    trap - ERR
    exit 1
}

kb_fail() { kb__die "$*"; }

# kb_atexit CMD: run shell command CMD first at cleanup, newest first, whatever the outcome (resume
# a suspended device the daemons wait on; devices are best removed --deferred, as mounts on them
# are only taken down after).
kb_atexit() { printf '%s\n' "$1" >>"$KB_TMP/atexit"; }

# kb_skip REASON: this machine cannot run the test (not a failure): exit 77, which the runner
# reports as "SKIP <test> (REASON)".
kb_skip() {
    echo "SKIP: $*" >&2
    trap - ERR
    exit 77
}

kb_assert_eq() {  # kb_assert_eq EXPECTED ACTUAL [WHAT]
    [ "$1" = "$2" ] || kb__die "${3:-values differ}: expected [$1], got [$2]"
}

kb_assert_ne() {  # kb_assert_ne UNEXPECTED ACTUAL [WHAT]
    [ "$1" != "$2" ] || kb__die "${3:-value must differ}: got [$2]"
}

kb_assert_match() {  # kb_assert_match ERE TEXT [WHAT]
    printf '%s\n' "$2" | grep -Eq -- "$1" ||
        kb__die "${3:-no match}: /$1/ not found in:"$'\n'"$2"
}

kb_assert_nomatch() {  # kb_assert_nomatch ERE TEXT [WHAT]
    printf '%s\n' "$2" | grep -Eq -- "$1" &&
        kb__die "${3:-unexpected match}: /$1/ found in:"$'\n'"$2"
    return 0
}

kb_assert_le() {  # kb_assert_le A B [WHAT]   (integers: A <= B)
    [ "$1" -le "$2" ] || kb__die "${3:-}: expected $1 <= $2"
}

kb_sha() { timeout -k 5 "$KB_TIMEOUT" sha256sum <"$1" | cut -d' ' -f1; }

kb_assert_same_file() {  # kb_assert_same_file A B: same size and sha256
    local a b
    [ -f "$1" ] || kb_fail "kb_assert_same_file: $1 missing"
    [ -f "$2" ] || kb_fail "kb_assert_same_file: $2 missing"
    a=$(kb_sha "$1") || kb_fail "cannot read $1"
    b=$(kb_sha "$2") || kb_fail "cannot read $2"
    [ "$a" = "$b" ] && return 0
    kb__die "contents differ: $1 (sha256 ${a:0:16}, $(stat -c %s "$1") bytes) vs $2 (sha256 ${b:0:16}, $(stat -c %s "$2") bytes)$(kb__first_diff "$1" "$2")"
}
kb__first_diff() {  # where two files first differ, for the failure message
    local c
    c=$(cmp "$1" "$2" 2>&1 | head -1) && return 0
    echo "; $c"
}

# kb_t SECS CMD...: run CMD with a time limit (KILL 5 s after TERM). Exit 124 on timeout.
kb_t() { local s=$1; shift; timeout -k 5 "$s" "$@"; }

# kb_wait_until SECS CMD...: retry CMD every 0.1 s until it succeeds; 1 if it never did.
kb_wait_until() {
    local limit=$(( $(date +%s%N) + $1 * 1000000000 )); shift
    while :; do
        "$@" >/dev/null 2>&1 && return 0
        [ "$(date +%s%N)" -ge "$limit" ] && return 1
        sleep 0.1
    done
}

# kb_expect_fail SECS WHAT CMD...: CMD must exit non-zero (not by timeout) within SECS with
# exactly one non-empty line on stderr, which matches KB_EXPECT_RE (case-insensitive) when that is
# set. Prints that line; sets KB_FAIL_SECS to the time taken.
kb_expect_fail() {
    local secs=$1 what=$2 rc=0 t0 n; shift 2
    local err=$KB_TMP/expect.err out=$KB_TMP/expect.out
    t0=$(date +%s%N)
    timeout -k 5 "$secs" "$@" </dev/null >"$out" 2>"$err" || rc=$?
    KB_FAIL_SECS=$(( ($(date +%s%N) - t0) / 1000000000 ))
    [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ] &&
        kb_fail "$what: '$*' did not finish within ${secs}s"
    [ "$rc" -ne 0 ] || kb_fail "$what: '$*' succeeded (exit 0), expected failure; stdout: $(head -c 300 "$out")"
    n=$(grep -c . "$err" || true)
    [ "$n" -eq 1 ] || kb_fail "$what: '$*' exit $rc but stderr has $n lines, want 1: $(head -c 600 "$err")"
    # KB_EXPECT_RE (set for this call): the reason must say why, not fail for another cause.
    if [ -n "${KB_EXPECT_RE:-}" ] && ! grep -Eiq -- "$KB_EXPECT_RE" "$err"; then
        kb_fail "$what: failed for another reason (want /$KB_EXPECT_RE/): $(cat "$err")"
    fi
    kb_log "  expected failure ok ($what): exit $rc: $(cat "$err")"
}

# kb_section NAME FUNC [ARGS...]: run FUNC in a subshell with set -e; a failure is recorded and
# the test goes on with the next section (so one run reports every broken area). kb_done ends the
# test: non-zero if any section failed.
kb_section() {
    local name=$1 rc=0; shift
    kb_log "--- $name"
    # Not "( ... ) || rc=$?": -e would be ignored inside. The parent's ERR trap is off around the
    # subshell (its failure is reported here) and on again inside it (to name the failing line).
    trap - ERR
    set +e
    ( KB_SUBSHELL_BASE=$BASH_SUBSHELL; trap 'kb__on_err $? $LINENO "$BASH_COMMAND"' ERR; set -e; "$@" )
    rc=$?
    set -e
    trap 'kb__on_err $? $LINENO "$BASH_COMMAND"' ERR
    if [ "$rc" -ne 0 ]; then
        KB_SECTION_FAILS=$((KB_SECTION_FAILS + 1))
        echo "$name" >>"$KB_TMP/sections/failed" 2>/dev/null || true
        kb_log "--- $name: FAILED"
    fi
    return 0
}

kb_done() {
    if [ "$KB_SECTION_FAILS" -ne 0 ]; then
        kb_log "failed sections: $(tr '\n' ' ' <"$KB_TMP/sections/failed")"
        exit 1
    fi
    exit 0
}

# ---------------------------------------------------------------------------------------------
# Nodes.

kb_port() { echo $((KB_PORT_BASE + $1)); }
kb_addr() { echo "127.0.0.1:$(kb_port "$1")"; }
kb_node_dir() { echo "$KB_TMP/node$1"; }
kb_node_pid() { cat "$KB_TMP/pids/node$1" 2>/dev/null; }
kb_node_log() { echo "$KB_TMP/node$1/kembard.log"; }

kb__need_bin() {
    [ -x "$KB_BIN/$1" ] || kb_fail "$KB_BIN/$1 is missing: run make"
}

# kb_cli N ARGS...: the CLI against node N, time-limited, stdin closed.
kb_cli() {
    local n=$1; shift
    timeout -k 5 "$KB_TIMEOUT" "$KB_BIN/kembar" --server "$(kb_addr "$n")" "$@" </dev/null
}
# kb_cli_json N ARGS...: the same with --json (a global option, before the verb).
kb_cli_json() {
    local n=$1; shift
    timeout -k 5 "$KB_TIMEOUT" "$KB_BIN/kembar" --server "$(kb_addr "$n")" --json "$@" </dev/null
}

kb__port_busy() {  # is anything listening on 127.0.0.1:$1 (or any address)?
    ss -Hltn "sport = :$1" 2>/dev/null | grep -q .
}

kb__node_alive() {
    local pid; pid=$(kb_node_pid "$1") || return 1
    [ -n "$pid" ] && kb__cmdline_has "$pid" "$KB_TMP/node$1/"
}

kb__log_tail() { [ -f "$1" ] && tail -n "${2:-15}" "$1" | sed 's/^/    | /' >&2; return 0; }

kb_node_start() {  # kb_node_start N [EXTRA KEMBARD ARGS...]
    local n=$1 port dir pid; shift
    kb__need_bin kembard
    kb__need_bin kembar
    port=$(kb_port "$n")
    dir=$(kb_node_dir "$n")
    kb__node_alive "$n" && kb_fail "node $n already running (pid $(kb_node_pid "$n"))"
    kb__port_busy "$port" && kb_fail "port $port is already in use by another process (ss -ltnp 'sport = :$port')"
    mkdir -p "$dir/state"
    # One cluster key for the test's nodes, as a joined cluster has (README, Security): their own
    # clients (heal daemon, rebalance) then sign their handshakes. KB_OWN_KEY=1: the node makes its own.
    if [ "${KB_OWN_KEY:-0}" != 1 ] && [ ! -e "$dir/state/cluster.key" ]; then
        [ -s "$KB_TMP/cluster.key" ] || (umask 077 && openssl rand -hex 32 >"$KB_TMP/cluster.key")
        install -m 600 "$KB_TMP/cluster.key" "$dir/state/cluster.key"
    fi
    "$KB_BIN/kembard" --listen "127.0.0.1:$port" --state-dir "$dir/state" \
        --log-file "$dir/kembard.log" --log-level debug "$@" </dev/null >>"$dir/kembard.out" 2>&1 9>&- &
    pid=$!
    echo "$pid" >"$KB_TMP/pids/node$n"
    if ! kb_wait_until 15 kb__node_ready "$n"; then
        kb__node_alive "$n" || { wait "$pid" 2>/dev/null; echo "kembard exit status $?" >>"$dir/kembard.out"; }
        echo "node $n: kembard output:" >&2; kb__log_tail "$dir/kembard.out"
        echo "node $n: kembard log:" >&2; kb__log_tail "$dir/kembard.log"
        kb_fail "node $n (kembard pid $pid, port $port) did not answer 'volume list' within 15 s"
    fi
    kb_log "node $n up: pid $pid port $port"
}
kb__node_ready() {
    kb__node_alive "$1" || return 1
    timeout -k 2 3 "$KB_BIN/kembar" --server "$(kb_addr "$1")" volume list </dev/null >/dev/null 2>&1
}

kb_node_kill() {  # SIGKILL, and reap
    local n=$1 pid
    pid=$(kb_node_pid "$n") || kb_fail "node $n was never started"
    kb__node_alive "$n" || kb_fail "node $n (pid $pid) is not running"
    kill -KILL "$pid"
    wait "$pid" 2>/dev/null || true
    rm -f "$KB_TMP/pids/node$n" "$KB_TMP/paused/node$n"
    kb_log "node $n killed (pid $pid)"
}

kb_node_stop() {  # SIGTERM; the daemon must exit within 10 s (else KILL and fail)
    local n=$1 pid rc=0
    pid=$(kb_node_pid "$n") || kb_fail "node $n was never started"
    kb__node_alive "$n" || kb_fail "node $n (pid $pid) is not running"
    kill -CONT "$pid" 2>/dev/null
    rm -f "$KB_TMP/paused/node$n"
    kill -TERM "$pid"
    if ! kb_wait_until 10 kb__pid_gone "$pid" "$KB_TMP/node$n/"; then
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
        rm -f "$KB_TMP/pids/node$n"
        kb_fail "node $n (pid $pid) did not exit within 10 s of SIGTERM"
    fi
    # 127: started by another (sub)shell of this test, its status is not ours to collect.
    wait "$pid" 2>/dev/null || rc=$?
    [ "$rc" = 127 ] && rc="?"
    rm -f "$KB_TMP/pids/node$n"
    kb_log "node $n stopped (pid $pid, exit $rc)"
}
kb__pid_gone() {
    kb__cmdline_has "$1" "$2" || return 0
    # A zombie child still has no cmdline; a live one does. Also accept state Z.
    [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" = Z ]
}

kb_node_pause() {
    local n=$1 pid
    pid=$(kb_node_pid "$n") || kb_fail "node $n was never started"
    kill -STOP "$pid"
    echo "$pid" >"$KB_TMP/paused/node$n"
    kb_log "node $n paused (pid $pid)"
}

kb_node_resume() {
    local n=$1 pid
    pid=$(kb_node_pid "$n") || kb_fail "node $n was never started"
    kill -CONT "$pid"
    rm -f "$KB_TMP/paused/node$n"
    kb_log "node $n resumed (pid $pid)"
}

kb_node_restart() { kb_node_stop "$1"; kb_node_start "$@"; }

# ---------------------------------------------------------------------------------------------
# Bricks and volumes.

# kb_brick_path N VOL: a fresh, empty directory for a brick of VOL on node N.
kb_brick_path() {
    mkdir -p "$KB_TMP/node$1/bricks"
    mktemp -d "$KB_TMP/node$1/bricks/$2.XXXX"
}
# kb_brick N PATH: the CLI spelling of that brick, 127.0.0.1:PORT:/abs/path.
kb_brick() { echo "$(kb_addr "$1"):$2"; }

# kb_volume_up VOL N1 [N2 ...]: create (force) and start VOL with one fresh brick on each listed
# node, replica = number of nodes; brick paths are printed to stdout, one per line.
kb_volume_up() {
    local vol=$1 n p; shift
    local -a bricks=() paths=() rep=()
    for n in "$@"; do
        p=$(kb_brick_path "$n" "$vol")
        paths+=("$p")
        bricks+=("$(kb_brick "$n" "$p")")
    done
    [ $# -gt 1 ] && rep=(replica $#)
    kb_cli "$1" volume create "$vol" "${rep[@]}" "${bricks[@]}" force >&2 ||
        kb_fail "volume create $vol ${rep[*]} ${bricks[*]} force failed"
    kb_cli "$1" volume start "$vol" >&2 || kb_fail "volume start $vol failed"
    printf '%s\n' "${paths[@]}"
}

# ---------------------------------------------------------------------------------------------
# Mounts.

KB_MOUNT_NODE=${KB_MOUNT_NODE:-1}

kb__fuse_pid_for() {  # the kembar-fuse process serving mount point $1
    local p
    for p in $(kb__pids_naming "$1"); do
        kb__cmdline_has "$p" kembar-fuse && { echo "$p"; return 0; }
    done
    return 1
}

# kb_mount VOL MNT [OPTS]: mount VOL (volfile from node $KB_MOUNT_NODE) on MNT via kembar-fuse in
# its default background mode; the parent must exit 0 once the mount is live.
kb_mount() { kb_mount_spec "$(kb_addr "$KB_MOUNT_NODE"):/$1" "$2" "${3:-}"; }

# kb_mount_spec SPEC MNT [OPTS]: the same with a full HOST[:PORT][,HOST[:PORT]...]:/VOLUME spec.
kb_mount_spec() { kb__mount "$2" "${3:-}" "$1"; }

# kb_mount_volfile FILE MNT: kembar-fuse --volfile FILE (a hand-written client graph), recorded
# like every mount, so kb_umount and the cleanup find it.
kb_mount_volfile() { kb__mount "$2" "" --volfile "$1"; }

kb__mount() {  # kb__mount MNT OPTS SOURCE...: kembar-fuse [-o ...] SOURCE... MNT
    local mnt=$1 opts=$2 rc=0 key pid
    shift 2
    local -a o=()
    kb__need_bin kembar-fuse
    case "$mnt" in /*) ;; *) mnt=$PWD/$mnt ;; esac
    mkdir -p "$mnt"
    key=$(echo "$mnt" | md5sum | cut -c1-12)
    # The client's own log lands in $KB_TMP (kept with the daemon logs when the test fails).
    o=(-o "log-file=$KB_TMP/fuse-$(basename "$mnt")-$key.log,log-level=${KB_FUSE_LOG_LEVEL:-info}${opts:+,$opts}")
    echo "$mnt" >"$KB_TMP/mounts/$key"   # recorded before mounting: cleanup must find it
    timeout -k 5 30 "$KB_BIN/kembar-fuse" "${o[@]}" "$@" "$mnt" \
        </dev/null >"$KB_TMP/mount-$key.out" 2>"$KB_TMP/mount-$key.err" 9>&- || rc=$?
    if [ "$rc" -ne 0 ]; then
        kb__log_tail "$KB_TMP/mount-$key.err"
        kb_fail "kembar-fuse ${o[*]} $* $mnt: exit $rc"
    fi
    kb__is_mounted "$mnt" || kb_fail "kembar-fuse exited 0 but $mnt is not a mount point"
    pid=$(kb__fuse_pid_for "$mnt") && echo "$pid" >"$KB_TMP/pids/fuse-$key"
    kb_log "mounted $* on $mnt (kembar-fuse pid ${pid:-?})"
}

# kb_mount_log MNT: the log file of the kembar-fuse serving MNT.
kb_mount_log() { echo "$KB_TMP/fuse-$(basename "$1")-$(echo "$1" | md5sum | cut -c1-12).log"; }

# kb_mount_dump MNT PATTERN: have the mount log its state (SIGUSR1: calls in flight, then each
# translator's status), wait until it writes a line matching PATTERN (grep), and print every line
# it wrote since the signal.
kb_mount_dump() {
    local mnt=$1 pat=$2 log pid n
    log=$(kb_mount_log "$mnt")
    pid=$(cat "$KB_TMP/pids/fuse-$(echo "$mnt" | md5sum | cut -c1-12)") || kb_fail "no kembar-fuse recorded for $mnt"
    n=$(wc -l <"$log")
    kill -USR1 "$pid"
    kb_wait_until 10 sh -c "tail -n +$((n + 1)) '$log' | grep -q -- '$pat'" ||
        kb_fail "no state dump with '$pat' from the mount $mnt"
    tail -n +$((n + 1)) "$log"
}

kb_umount() {  # kb_umount MNT: clean unmount; the FUSE client must then exit within 10 s
    local mnt=$1 key pid
    key=$(echo "$mnt" | md5sum | cut -c1-12)
    pid=$(cat "$KB_TMP/pids/fuse-$key" 2>/dev/null || true)
    kb_t 15 fusermount3 -u "$mnt" || kb_t 15 umount "$mnt" || kb_fail "cannot unmount $mnt"
    kb__is_mounted "$mnt" && kb_fail "$mnt still mounted after unmount"
    if [ -n "$pid" ] && ! kb_wait_until 10 kb__pid_gone "$pid" kembar-fuse; then
        kb_fail "kembar-fuse (pid $pid) still running 10 s after unmounting $mnt"
    fi
    rm -f "$KB_TMP/mounts/$key" "$KB_TMP/pids/fuse-$key"
    kb_log "unmounted $mnt"
}

# ---------------------------------------------------------------------------------------------
# JSON from the CLI. The schema is not fixed by the design, so these look for facts loosely:
# a volume name anywhere as a value or key; a brick as the smallest object with a string value
# ending in its path, its state from "online" / "status" / "state" and its "pid".

# kb_json_has STRING < JSON: is STRING a key or string value anywhere?
kb_json_has() {
    "$KB_PY" -c '
import json, sys
want = sys.argv[1]
def walk(o):
    if isinstance(o, dict):
        return any(k == want or walk(v) for k, v in o.items())
    if isinstance(o, list):
        return any(walk(v) for v in o)
    return o == want
try:
    doc = json.load(sys.stdin)
except Exception as e:
    print("kb_json_has: not JSON: %s" % e, file=sys.stderr); sys.exit(2)
sys.exit(0 if walk(doc) else 1)' "$1"
}

# kb_json_bricks PATH... < JSON: one line per PATH: "PATH ONLINE PID" (ONLINE 1, 0 or ?; PID or -).
kb_json_bricks() {
    "$KB_PY" -c '
import json, sys
doc = json.load(sys.stdin)
def dicts(o):
    if isinstance(o, dict):
        yield o
        for v in o.values(): yield from dicts(v)
    elif isinstance(o, list):
        for v in o: yield from dicts(v)
def size(o): return len(json.dumps(o))
def online(d):
    low = {k.lower(): v for k, v in d.items()}
    for k in ("online", "up", "connected", "running"):
        if k in low:
            v = low[k]
            if isinstance(v, str): return "1" if v.lower() in ("y", "yes", "true", "online", "up", "1") else "0"
            return "1" if v else "0"
    for k in ("status", "state"):
        if isinstance(low.get(k), str):
            return "1" if low[k].lower() in ("online", "up", "running", "started", "y") else "0"
    return "?"
def pid(d):
    for k, v in d.items():
        if k.lower() == "pid":
            try:
                return str(int(v)) if int(v) > 0 else "-"
            except (TypeError, ValueError):
                return "-"
    return "-"
for path in sys.argv[1:]:
    cands = [d for d in dicts(doc)
             if any(isinstance(v, str) and (v == path or v.endswith(":" + path)) for v in d.values())]
    if not cands:
        print(path, "missing", "-"); continue
    d = min(cands, key=size)
    print(path, online(d), pid(d))' "$@"
}

kb_pid_alive() { [ -n "$1" ] && [ "$1" != - ] && [ -d "/proc/$1" ]; }

# kb_tree_sig DIR [MAX]: one line per object under DIR (.kembar left out): path, type+mode, owner,
# size, gfid, and the sha256 of regular files up to MAX bytes (default: all) / symlink targets.
# Two bricks of a replica set hold the same tree when their signatures are equal.
kb_tree_sig() {
    kb_t 60 "$KB_PY" - "$1" "${2:-0}" <<'EOF'
import hashlib, os, stat, sys
root, limit = sys.argv[1], int(sys.argv[2])
for d, dirs, files in os.walk(root):
    if d == root:
        dirs[:] = [x for x in dirs if x != ".kembar"]
    dirs.sort()
    for name in sorted(dirs + files):
        p = os.path.join(d, name)
        st = os.lstat(p)
        try:
            g = os.getxattr(p, "trusted.kembar.gfid", follow_symlinks=False).hex()
        except OSError:
            g = "-"
        h = "-"
        if stat.S_ISREG(st.st_mode) and (not limit or st.st_size <= limit):
            with open(p, "rb") as f:
                h = hashlib.sha256(f.read()).hexdigest()[:16]
        elif stat.S_ISLNK(st.st_mode):
            h = os.readlink(p)
        size = "-" if stat.S_ISDIR(st.st_mode) else st.st_size
        print(os.path.relpath(p, root), oct(st.st_mode), st.st_uid, st.st_gid, size, g, h)
EOF
}
