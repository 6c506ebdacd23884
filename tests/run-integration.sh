#!/bin/sh
# run-integration.sh — runs the integration tests (tests/integration/*.t.sh) against real daemons
# and real FUSE mounts.
#
#   sh tests/run-integration.sh [NAME...]    only the tests whose file name contains a NAME
#   KB_LONG=1                                long variants (make test-long)
#   KB_VERBOSE=1                             show every test's full output, not only on failure
#   KB_TEST_TIMEOUT=SECS                     limit for one test (default 300)
#
# Each test runs in its own `bash -eu`, under a time limit, with its own root
# /var/tmp/kembar-it/<test>-<runner pid>; whatever happens to it (failure, timeout, SIGKILL) the
# runner sweeps that root afterwards: no mount and no process outlives a test. A test that needs
# FUSE (a "# kb-requires: fuse" line) is skipped, with the reason, only when /dev/fuse, root or
# fusermount3 is truly missing; one that needs root ("# kb-requires: root") only without root; a
# test that finds out itself that the machine cannot run it exits 77 (kb_skip REASON).
# Prints PASS/FAIL/SKIP per test with its time, on failure the test's output and the tail of every
# daemon log, and ends with exactly one line "integration: N passed, M failed[, K skipped]".
# Exit status is non-zero when any test failed.

set -u
cd "$(dirname "$0")/.." || exit 2
repo=$(pwd)
lib=$repo/tests/integration/lib.sh
it_root=${KB_IT_ROOT:-/var/tmp/kembar-it}
limit=${KB_TEST_TIMEOUT:-300}
export KB_IT_ROOT="$it_root" KB_LONG="${KB_LONG:-0}"

# Outputs of this run: $it_root/logs/run-<pid>/ (logs/latest points to it); several runs may go
# on at once on one machine (each test also takes its own port range, see lib.sh).
run_logs=$it_root/logs/run-$$
mkdir -p "$run_logs" || exit 2
ln -sfn "run-$$" "$it_root/logs/latest"
# Roots left by runs that were killed outright (their owner pid is gone), and old outputs.
bash "$lib" --sweep-stale
for d in $(ls -dt "$it_root"/logs/run-* 2>/dev/null | tail -n +6); do
    kill -0 "${d##*-}" 2>/dev/null || rm -rf "$d"
done

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
secs() { awk -v ms="$1" 'BEGIN { printf "%.1fs", ms / 1000 }'; }

fuse_missing() {
    [ "$(id -u)" = 0 ] || { echo "not root"; return 0; }
    [ -c /dev/fuse ] || { echo "/dev/fuse missing"; return 0; }
    command -v fusermount3 >/dev/null 2>&1 || { echo "fusermount3 missing (package fuse3)"; return 0; }
    grep -qw fuse /proc/filesystems || { echo "kernel has no fuse filesystem"; return 0; }
    return 1
}

end_group() {  # end what is left of process group $1 (the test's), then give it a moment
    kill -s TERM -- "-$1" 2>/dev/null || return 0
    sleep 1
    kill -s KILL -- "-$1" 2>/dev/null
    return 0
}

# Interrupted (Ctrl-C, TERM): stop the running test by its group, clean its root, report.
tpid=""; root=""
on_signal() {
    trap - INT TERM HUP
    if [ -n "$tpid" ]; then
        kill -s TERM -- "-$tpid" 2>/dev/null
        wait "$tpid" 2>/dev/null
        end_group "$tpid"
    fi
    [ -n "$root" ] && [ -d "$root" ] && bash "$lib" --sweep "$root"
    echo "integration: interrupted"
    exit 130
}
trap on_signal INT TERM HUP

passed=0; failed=0; skipped=0; failed_names=""
for t in tests/integration/*.t.sh; do
    [ -f "$t" ] || continue
    name=$(basename "$t" .t.sh)
    if [ $# -gt 0 ]; then
        hit=0
        for f in "$@"; do case "$name" in *"$f"*) hit=1 ;; esac; done
        [ "$hit" = 1 ] || continue
    fi
    reason=""
    if grep -q '^# kb-requires:.*fuse' "$t"; then
        reason=$(fuse_missing) || reason=""
    elif grep -q '^# kb-requires:.*root' "$t" && [ "$(id -u)" != 0 ]; then
        reason="not root"
    fi
    if [ -n "$reason" ]; then
        echo "SKIP $name ($reason)"
        skipped=$((skipped + 1))
        continue
    fi

    root=$it_root/$name-$$
    logdir=$run_logs/$name
    out=$run_logs/$name.out
    t0=$(now_ms)
    # timeout makes itself the leader of a new process group holding the test and every daemon
    # it did not detach; after the test that group is ended by its id, whatever happened.
    KB_TEST="$name" KB_TMP="$root" KB_LOGDIR="$logdir" \
        timeout -k 20 "$limit" bash -eu "$repo/$t" </dev/null >"$out" 2>&1 9>&- &
    tpid=$!
    wait "$tpid"
    rc=$?
    t1=$(now_ms)
    gid=$tpid; tpid=""
    end_group "$gid"
    # Whatever the test did or did not clean up (detached FUSE clients, mounts, files).
    if [ -d "$root" ]; then
        [ "$rc" = 0 ] && { echo "  (note: $name left $root behind; sweeping)" >>"$out"; }
        bash "$lib" --sweep "$root" >>"$out" 2>&1 || echo "  WARNING: could not sweep $root" >>"$out"
    fi
    if [ "$rc" = 0 ]; then
        echo "PASS $name ($(secs $((t1 - t0))))"
        [ "${KB_VERBOSE:-0}" = 1 ] && sed 's/^/    /' "$out"
        passed=$((passed + 1))
    elif [ "$rc" = 77 ]; then
        # kb_skip: the machine cannot run it (its last "SKIP: " line says why)
        echo "SKIP $name ($(sed -n 's/^SKIP: //p' "$out" | tail -n 1))"
        skipped=$((skipped + 1))
    else
        why="exit $rc"
        if [ "$rc" = 124 ] || { [ "$rc" = 137 ] && [ $((t1 - t0)) -ge $((limit * 1000)) ]; }; then
            why="timed out after ${limit}s"
        elif [ "$rc" -gt 128 ]; then
            why="killed by signal $((rc - 128))"
        fi
        echo "FAIL $name ($(secs $((t1 - t0))), $why)"
        if [ "${KB_VERBOSE:-0}" = 1 ]; then sed 's/^/    /' "$out"; else tail -n 60 "$out" | sed 's/^/    /'; fi
        for f in "$logdir"/*; do
            [ -f "$f" ] && [ -s "$f" ] || continue
            echo "    --- tail of $(basename "$f") (full: $f)"
            tail -n 25 "$f" | sed 's/^/    | /'
        done
        failed=$((failed + 1))
        failed_names="$failed_names $name"
    fi
done

[ "$failed" -gt 0 ] && echo "failed:$failed_names (outputs in $run_logs/)"
if [ "$skipped" -gt 0 ]; then
    echo "integration: $passed passed, $failed failed, $skipped skipped"
else
    echo "integration: $passed passed, $failed failed"
fi
[ "$failed" -eq 0 ]
