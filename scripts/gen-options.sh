#!/bin/sh
# The `volume set` options, from the option tables compiled into kembard (`kembard
# --options-markdown`), wherever they are written down, so no copy can drift from the code:
#
#   sh scripts/gen-options.sh              write the table into README.md between its markers (make docs)
#   sh scripts/gen-options.sh --check      only say whether README.md is current (05-docs)
#   sh scripts/gen-options.sh --man FILE   FILE (a man page source) with the line `.\" @OPTIONS@`
#                                          replaced by one .TP entry per option (kembar-options(5))
#   sh scripts/gen-options.sh --keys       the keys, one a line (bash completion)
#
# KB_BIN names the folder holding kembard (default build).
set -e
cd "$(dirname "$0")/.."
table=$("${KB_BIN:-build}/kembard" --options-markdown)

# The rows of the table as tab-separated key, default, translator, description (a `\|` inside a
# cell stays a `|`).
rows() {
  printf '%s\n' "$table" | awk '
    NR <= 2 { next }                       # header and separator
    {
      gsub(/\\\|/, "\001")
      n = split($0, f, "|")
      if (n < 6) next
      for (i = 2; i <= 5; i++) { gsub(/^ +| +$/, "", f[i]); gsub("\001", "|", f[i]) }
      gsub(/`/, "", f[2])
      print f[2] "\t" f[3] "\t" f[4] "\t" f[5]
    }'
}

case "${1:-}" in
  --keys)
    rows | cut -f1
    exit 0 ;;
  --man)
    [ -f "${2:-}" ] || { echo "usage: $0 --man PAGE.in" >&2; exit 2; }
    entries=$(rows | awk -F '\t' '
      function roff(s) {                   # text safe for roff: backslashes, leading dot or quote
        gsub(/\\/, "\\e", s)
        if (s ~ /^[.\047]/) s = "\\&" s
        return s
      }
      function opt(s) { s = roff(s); gsub(/-/, "\\-", s); return s }
      { printf ".TP\n.BR \"%s\" \" (default: %s; %s)\"\n%s\n", opt($1), opt($2), $3, roff($4) }')
    n=$(rows | wc -l)
    [ "$n" -gt 0 ] || { echo "$0: no options from kembard --options-markdown" >&2; exit 1; }
    awk -v entries="$entries" '$0 == ".\\\" @OPTIONS@" { print entries; next } { print }' "$2"
    exit 0 ;;
esac

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
