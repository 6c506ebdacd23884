#!/bin/sh
# Writes the `volume set` options table into README.md between the markers, from the option
# tables compiled into kembard (make docs). With --check, only says whether README is current.
set -e
cd "$(dirname "$0")/.."
table=$("${KB_BIN:-build}/kembard" --options-markdown)
tmp=$(mktemp)
awk -v table="$table" '
  /<!-- options:begin -->/ { print; print table; skip = 1; next }
  /<!-- options:end -->/   { skip = 0 }
  !skip { print }' README.md >"$tmp"
if [ "${1:-}" = --check ]; then
  if cmp -s "$tmp" README.md; then rm -f "$tmp"; exit 0; fi
  diff "$tmp" README.md | head -20 >&2
  rm -f "$tmp"
  echo "README.md options table is out of date: run 'make docs'" >&2
  exit 1
fi
mv "$tmp" README.md
