#!/bin/sh
# run-unit.sh — run Criterion unit-test binaries and sum their results.
#   sh tests/run-unit.sh BIN...
# Prints each binary's summary, then one line "unit: N passed, M failed".
# Exits non-zero if any test failed or crashed, or a binary produced no
# Criterion summary (it died before reporting: counted as one failure).
passed=0
failed=0
for bin in "$@"; do
    out=$(mktemp /var/tmp/kb-unit.XXXXXX)
    "$bin" >"$out" 2>&1
    rc=$?
    line=$(grep 'Synthesis: Tested:' "$out" | tail -n 1)
    if [ -z "$line" ]; then
        cat "$out"
        echo "$bin: no Criterion summary (exit $rc)"
        failed=$((failed + 1))
    else
        tested=$(echo "$line" | sed -n 's/.*Tested: \([0-9]*\).*/\1/p')
        ok=$(echo "$line" | sed -n 's/.*Passing: \([0-9]*\).*/\1/p')
        bad=$((tested - ok))
        if [ "$bad" -gt 0 ] || [ "$rc" -ne 0 ]; then
            cat "$out"
            [ "$bad" -eq 0 ] && bad=1   # non-zero exit with all passing: leak or crash at exit
        fi
        echo "${bin#build/asan/tests/}: $line"
        passed=$((passed + ok))
        failed=$((failed + bad))
    fi
    rm -f "$out"
done
echo "unit: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
