#!/bin/sh
# libkembar-api.sh — what libkembar's public API is, for the shared library and its headers.
#
#   sh scripts/libkembar-api.sh headers       client/kembar.h and every header of this tree it
#                                              includes, one a line (make install-lib)
#   sh scripts/libkembar-api.sh map OBJ...    a linker version script (KEMBAR_0) exporting the
#                                              symbols defined in OBJ... that those headers name;
#                                              everything else in libkembar.so stays local
#
# Both follow the header, so the API cannot drift from what is exported and installed.
# CC names the compiler (default cc).
set -eu
cd "$(dirname "$0")/.."

headers() {
    # The compiler lists the closure; only our own headers (relative paths) are kept.
    ${CC:-cc} -MM -I. -D_GNU_SOURCE -D_FILE_OFFSET_BITS=64 client/kembar.h |
        sed -e 's/^[^:]*://' -e 's/\\$//' | tr ' ' '\n' | grep -v '^/' | grep . | sort -u
}

case "${1:-}" in
headers)
    headers ;;
map)
    shift
    [ $# -gt 0 ] || { echo "usage: $0 map OBJ..." >&2; exit 2; }
    # Identifiers the headers name outside comments, and global symbols the objects define.
    names=$(mktemp)
    trap 'rm -f "$names"' EXIT
    headers | xargs cat | sed -e 's://.*$::' | awk '
        { line = $0
          while (line != "") {
            if (inc) { i = index(line, "*/"); if (!i) { line = ""; break }; line = substr(line, i + 2); inc = 0 }
            i = index(line, "/*")
            if (!i) { print line; break }
            print substr(line, 1, i - 1); line = substr(line, i + 2); inc = 1
          } }' | grep -o '[A-Za-z_][A-Za-z0-9_]*' | sort -u >"$names"
    syms=$(nm -g --defined-only "$@" | awk 'NF == 3 && $2 ~ /^[TDRBVW]$/ { print $3 }' | sort -u |
           comm -12 - "$names")
    [ -n "$syms" ] || { echo "$0: no public symbol found" >&2; exit 1; }
    echo "/* libkembar.so.0: the API of client/kembar.h (scripts/libkembar-api.sh map). */"
    echo "KEMBAR_0 {"
    echo "  global:"
    printf '    %s;\n' $syms
    echo "  local: *;"
    echo "};" ;;
*)
    echo "usage: $0 headers | map OBJ..." >&2; exit 2 ;;
esac
