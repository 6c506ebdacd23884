#!/bin/sh
# mkdeb.sh — kembar's Debian packages from this tree (make deb): kembar-server, kembar-client,
# libkembar0 and libkembar-dev (and their -dbgsym .ddeb), built with debhelper by
# dpkg-buildpackage, then checked by lintian.
#
#   sh scripts/mkdeb.sh            packages into build/deb/ (KB_DEB_OUT=DIR elsewhere)
#   KB_DEB_JOBS=N                  compile jobs (default 2)
#   KB_LINTIAN=0                   skip lintian
#
# dpkg-buildpackage writes its results next to the tree it builds, so the tree (without build/
# and .git) is copied to OUT/src first; the results land in OUT, never in the repository or its
# parent. The copy is removed after a good build.
#
# The packages' version is KB_VERSION (lib/common.h), the one every program prints with
# --version. When debian/changelog has no entry for it yet, the copy gets one saying so: the
# package and `kembard --version` always agree.
#
# Installs what it needs when missing (debhelper, lintian, the Build-Depends of debian/control),
# as root. Prints "lintian: N errors, M warnings" and fails when lintian reports an error.
set -eu
cd "$(dirname "$0")/.."
repo=$(pwd)
out=${KB_DEB_OUT:-$repo/build/deb}
jobs=${KB_DEB_JOBS:-2}
lint=${KB_LINTIAN:-1}

say() { echo "mkdeb: $*"; }

need() {  # need PKG...: install the Debian packages that are missing
    missing=""
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
    done
    [ -z "$missing" ] && return 0
    if [ "$(id -u)" != 0 ]; then
        echo "mkdeb: missing Debian packages:$missing (run as root to install them)" >&2; exit 1
    fi
    say "installing$missing"
    export DEBIAN_FRONTEND=noninteractive
    [ -n "${KB_APT_UPDATED:-}" ] || { apt-get update -qq >/dev/null; KB_APT_UPDATED=1; }
    # shellcheck disable=SC2086
    apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends $missing >/dev/null
}

need dpkg-dev debhelper make gcc
[ "$lint" = 1 ] && need lintian
# The Build-Depends not yet installed, as dpkg-checkbuilddeps names them (versions dropped).
unmet=$(dpkg-checkbuilddeps debian/control 2>&1 | sed -n 's/.*Unmet build dependencies: //p' |
        sed -e 's/([^)]*)//g' -e 's/|[^ ]*//g')
# shellcheck disable=SC2086
[ -z "$unmet" ] || need $unmet

version=$(sed -n 's/^.define KB_VERSION "\(.*\)"/\1/p' lib/common.h)
[ -n "$version" ] || { echo "mkdeb: no KB_VERSION in lib/common.h" >&2; exit 1; }

mkdir -p "$out"
out=$(cd "$out" && pwd)
rm -rf "$out/src"
rm -f "$out"/*.deb "$out"/*.ddeb "$out"/*.changes "$out"/*.buildinfo "$out"/lintian.txt
rm -rf "$out/dbgsym"
mkdir -p "$out/src"
# The working tree as it is (what `make` would build), without build outputs and history.
tar -C "$repo" --exclude=./build --exclude=./.git --exclude='*/__pycache__' -cf - . |
    tar -C "$out/src" -xf -

cl_version=$(dpkg-parsechangelog -l "$out/src/debian/changelog" -S Version)
if [ "$cl_version" != "$version" ]; then
    say "debian/changelog is at $cl_version, KB_VERSION is $version: adding an entry to the copy"
    rev=$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)
    {
        echo "kembar ($version) unstable; urgency=medium"
        echo
        echo "  * Development build of $version from commit $rev (no changelog entry yet)."
        echo
        echo " -- $(dpkg-parsechangelog -l "$out/src/debian/changelog" -S Maintainer)  $(date -R)"
        echo
        cat "$out/src/debian/changelog"
    } >"$out/src/debian/changelog.new"
    mv "$out/src/debian/changelog.new" "$out/src/debian/changelog"
fi

say "building kembar $version in $out/src (-j$jobs)"
t0=$(date +%s)
(
    cd "$out/src"
    DEB_BUILD_OPTIONS="nocheck parallel=$jobs" dpkg-buildpackage -b --no-sign >"$out/build.log" 2>&1
) || { tail -40 "$out/build.log" >&2; echo "mkdeb: dpkg-buildpackage failed (full log: $out/build.log)" >&2; exit 1; }
# The debug symbols apart, so that `apt-get install ./build/deb/*.deb` installs the four packages.
mkdir -p "$out/dbgsym"
for f in "$out"/*-dbgsym_*.deb "$out"/*.ddeb; do [ -e "$f" ] && mv "$f" "$out/dbgsym/"; done
say "built in $(( $(date +%s) - t0 )) s (debug symbols in $out/dbgsym/):"
for f in "$out"/*.deb; do
    printf '  %-48s %8s bytes\n' "$(basename "$f")" "$(stat -c %s "$f")"
done
rm -rf "$out/src"

if [ "$lint" = 1 ]; then
    # Only the binary packages: there is no source package (dpkg-buildpackage -b).
    lintian --display-info "$out"/*.deb 2>&1 | grep -v 'root privileges is not recommended' \
        >"$out/lintian.txt" || true
    cat "$out/lintian.txt"
    e=$(grep -c '^E: ' "$out/lintian.txt" || true)
    w=$(grep -c '^W: ' "$out/lintian.txt" || true)
    i=$(grep -c '^I: ' "$out/lintian.txt" || true)
    echo "lintian: $e errors, $w warnings, $i info"
    [ "$e" = 0 ] || { echo "mkdeb: lintian reports errors" >&2; exit 1; }
fi
