#!/bin/sh
# run.sh — builds the libFuzzer targets of tests/fuzz/ with clang against the library sources and
# runs each for a bounded time (issue 8).
#
#   sh tests/fuzz/run.sh [TARGET...]        build, then run every target (or those named)
#   KB_FUZZ_TIME=SECS                       seconds per target (default 10; KB_LONG=1: 120)
#   KB_FUZZ_JOBS=N                          make -j for the build (default 2)
#   sh tests/fuzz/run.sh --build            build only
#   sh tests/fuzz/run.sh --seeds            regenerate the committed seed corpus (gen_seeds.c)
#   sh tests/fuzz/run.sh --repro TARGET FILE   run one input (a crash artifact) through TARGET
#
# Targets: fuzz_frame (frame header + call decoding, as a brick does), fuzz_reply (reply
# decoding, as a client does), fuzz_volfile (volfile parser + option validation), fuzz_volume
# (volume definition parser and what kembard generates from it). Each is compiled with
# -fsanitize=fuzzer,address,undefined; the library (lib/ rpc/ xlators/ and its translator folders,
# client/ and server/volume.c) with -fsanitize=fuzzer-no-link,address,undefined into build/fuzz/
# (incremental: only changed sources are recompiled).
#
# Each run starts from the committed seeds (tests/fuzz/corpus/TARGET, read only) plus what earlier
# runs found (build/fuzz/corpus/TARGET). A crash, leak, sanitizer report or timeout fails the run:
# the input is saved as build/fuzz/artifacts/TARGET-crash-<sha1> and the report's tail printed.
# Prints one line per target "fuzz TARGET: N executions in S s (corpus C), ok" and a last line
# "fuzz: N targets, E executions, F failed". Exit status non-zero when any target failed.

set -eu
cd "$(dirname "$0")/../.." || exit 2
out=build/fuzz
long=${KB_LONG:-0}
if [ "$long" = 1 ]; then secs=${KB_FUZZ_TIME:-120}; else secs=${KB_FUZZ_TIME:-10}; fi
jobs=${KB_FUZZ_JOBS:-2}
all_targets="fuzz_frame fuzz_reply fuzz_volfile fuzz_volume fuzz_mgmt"
pkgs="fuse3 uuid libcrypto libssl libevent libevent_pthreads libevent_openssl liburing"

command -v clang >/dev/null 2>&1 || { echo "fuzz: clang is missing (apt-get install clang)" >&2; exit 2; }

build() {  # build [TARGET...]: make -k, so one target that cannot link does not stop the others
    mkdir -p "$out"
    goals=""
    for t in ${*:-$all_targets}; do goals="$goals $out/$t"; done
    # The library with fuzzer instrumentation, then the targets; make decides what is stale.
    # Translator descriptors are pulled in by name (-u), so the volfile parser knows every type
    # without linking whole archives (a half-written file elsewhere cannot break the link).
    make --no-print-directory -s -k -j"$jobs" -f - $goals <<EOF || true
CC := clang
FZ_CFLAGS := -std=gnu11 -I. -D_GNU_SOURCE -D_FILE_OFFSET_BITS=64 $(pkg-config --cflags $pkgs) \
    -O1 -g -fno-omit-frame-pointer -fsanitize=fuzzer-no-link,address,undefined \
    -fno-sanitize-recover=undefined -Wno-unused-command-line-argument
FZ_LIBS := $(pkg-config --libs $pkgs) -lpthread -lm
SRC := \$(wildcard lib/*.c rpc/*.c client/*.c) \$(shell find xlators -name '*.c') server/volume.c
OBJ := \$(SRC:%.c=$out/obj/%.o)
TARGETS := \$(patsubst tests/fuzz/%.c,$out/%,\$(filter-out tests/fuzz/gen_seeds.c,\$(wildcard tests/fuzz/fuzz_*.c)))
all: \$(TARGETS)
$out/obj/%.o: %.c
	@mkdir -p \$(dir \$@)
	@\$(CC) \$(FZ_CFLAGS) -MMD -MP -c \$< -o \$@
$out/libkembar-fuzz.a: \$(OBJ)
	@rm -f \$@; ar rcs \$@ \$^
# Only the parsers of volfiles need the translators (their option tables).
NEED_XL := $out/fuzz_volfile $out/fuzz_volume
$out/%: tests/fuzz/%.c $out/libkembar-fuzz.a
	@\$(CC) \$(FZ_CFLAGS) -fsanitize=fuzzer \
	  \$(if \$(filter \$@,\$(NEED_XL)),\$\$(nm --defined-only $out/libkembar-fuzz.a 2>/dev/null | awk '\$\$2 ~ /^[RDB]\$\$/ && \$\$3 ~ /^kb_xl_/ {printf "-Wl,-u,%s ", \$\$3}')) \
	  -o \$@ \$< $out/libkembar-fuzz.a \$(FZ_LIBS)
	@echo "fuzz: built \$@"
-include \$(shell find $out/obj -name '*.d' 2>/dev/null)
EOF
}

seeds() {
    # The generator runs natively (gcc, build/libkembar.a) so seeds come from the real encoders.
    make --no-print-directory -s build/libkembar.a build/server/volume.o
    u=$(nm --defined-only build/libkembar.a 2>/dev/null | awk '$2 ~ /^[RDB]$/ && $3 ~ /^kb_xl_/ {printf "-Wl,-u,%s ", $3}')
    # shellcheck disable=SC2086
    cc -std=gnu11 -I. -D_GNU_SOURCE -D_FILE_OFFSET_BITS=64 $(pkg-config --cflags $pkgs) -O1 -g \
        -o "$out/gen_seeds" tests/fuzz/gen_seeds.c build/server/volume.o $u build/libkembar.a \
        $(pkg-config --libs $pkgs) -lpthread -lm
    "$out/gen_seeds" tests/fuzz/corpus
    echo "fuzz: seeds written to tests/fuzz/corpus/ ($(find tests/fuzz/corpus -type f | wc -l) files)"
}

run_one() {  # run_one TARGET: fuzz for $secs; prints the summary line; 1 on a finding
    t=$1
    mkdir -p "$out/corpus/$t" "$out/artifacts" "$out/logs"
    log=$out/logs/$t.log
    dict=""
    [ -f "tests/fuzz/$t.dict" ] && dict="-dict=tests/fuzz/$t.dict"
    rc=0
    # -timeout: one input taking over 10 s is a finding (a hang in a parser).
    # shellcheck disable=SC2086
    timeout -k 10 $((secs + 60)) "$out/$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
        -max_len=65536 -print_final_stats=1 -artifact_prefix="$out/artifacts/$t-" $dict \
        "$out/corpus/$t" "tests/fuzz/corpus/$t" >"$log" 2>&1 || rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    corpus=$(find "$out/corpus/$t" "tests/fuzz/corpus/$t" -type f 2>/dev/null | wc -l)
    if [ "$rc" -eq 0 ]; then
        echo "fuzz $t: ${execs:-?} executions in ${secs} s (corpus $corpus), ok"
        total=$((total + ${execs:-0}))
        return 0
    fi
    echo "fuzz $t: FAILED (exit $rc) after ${execs:-?} executions; report:"
    grep -E 'ERROR|SUMMARY|==[0-9]+==|runtime error|Test unit written|artifact_prefix|abort|deadly' "$log" | head -20 | sed 's/^/    /'
    tail -n 30 "$log" | sed 's/^/    | /'
    echo "    full log: $log"
    total=$((total + ${execs:-0}))
    return 1
}

case "${1:-}" in
    --build) shift; build "$@"; exit 0 ;;
    --seeds) seeds; exit 0 ;;
    --repro)
        [ $# -eq 3 ] || { echo "usage: $0 --repro TARGET FILE" >&2; exit 2; }
        build "$2"
        "$out/$2" "$3"
        exit $? ;;
esac

targets=${*:-$all_targets}
# shellcheck disable=SC2086
build $targets
total=0; failed=0; n=0
for t in $targets; do
    if [ ! -x "$out/$t" ] || [ "$out/$t" -ot "tests/fuzz/$t.c" ] || [ "$out/$t" -ot "$out/libkembar-fuzz.a" ]; then
        echo "fuzz $t: FAILED: not built (see the compiler output above)"
        failed=$((failed + 1))
        continue
    fi
    n=$((n + 1))
    run_one "$t" || failed=$((failed + 1))
done
echo "fuzz: $n targets, $total executions, $failed failed"
[ "$failed" -eq 0 ]
