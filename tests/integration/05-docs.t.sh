#!/usr/bin/env bash
# 05-docs — the README's options table is the one generated from the option tables compiled into
# kembard (issue 9: the reference never drifts from the code).
set -eu
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/../.."
KB_BIN=$KB_BIN sh scripts/gen-options.sh --check || kb_fail "README.md options table differs from 'kembard --options-markdown' (run make docs)"
kb_done
