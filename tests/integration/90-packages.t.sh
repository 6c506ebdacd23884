#!/usr/bin/env bash
# 90-packages — the Debian packages (issue 18). The README's "Install from packages" block runs as
# written (`make deb`, then `apt-get install ./build/deb/*.deb`, with this test's own folder for
# build/deb): kembar-server, kembar-client, libkembar0 and libkembar-dev build, lintian finds no
# error, apt installs them. Then, against the INSTALLED programs under /usr (PATH without
# /usr/local, so a `make install` cannot stand in): two kembard, a replica 2 volume, `mount -t
# kembar` through /sbin/mount.kembar, a file written and read back, a program built with
# `pkg-config kembar` that writes through libkembar.so.0, the bash completion, the man pages.
# Then an upgrade (the same packages repacked as a newer version), a remove (state and conffile
# stay), a purge that finds a brick below /var/lib/kembar (it keeps everything), and the purge:
# every file dpkg listed is gone, and no file named *kembar* is left in /etc, /usr (but
# /usr/local), /lib/systemd or /var/lib that was not there before.
#
# The machine's own files are respected: the test skips when kembar packages or /var/lib/kembar
# are already there (not ours to purge), keeps a `make install` copy of /sbin/mount.kembar, and
# holds $KB_IT_ROOT/system-files.lock (80-walkthrough swaps /sbin/mount.kembar too).
# KB_DEB_DIR=DIR: install the .debs already built in DIR instead of building them.
# kb-requires: root fuse
set -eu
REPO=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"

PKGS=(kembar-server kembar-client libkembar0 libkembar-dev)
MARK=$KB_IT_ROOT/packages-installed-by
VERSION=$(sed -n 's/^.define KB_VERSION "\(.*\)"/\1/p' "$REPO/lib/common.h")
APT=(apt-get -o DPkg::Lock::Timeout=120 -y -q)
export DEBIAN_FRONTEND=noninteractive

exec 7>"$KB_IT_ROOT/system-files.lock"
flock -w 600 7 || kb_fail "another test holds $KB_IT_ROOT/system-files.lock for 10 minutes"

installed() {  # the kembar packages dpkg knows (installed, or removed with conffiles left)
    dpkg-query -W -f='${Package} ${db:Status-Abbrev}\n' "${PKGS[@]}" 2>/dev/null | awk '$2 ~ /^[ir]/ {print $1}'
}
purge_all() {  # those dpkg still knows (a removed library without conffiles is gone already)
    local -a p
    mapfile -t p < <(installed)
    [ ${#p[@]} -eq 0 ] || "${APT[@]}" purge "${p[@]}" >>"$KB_TMP/apt.out" 2>&1
}

# Packages left by a run of this test that was killed: purge them. Anyone else's: skip.
if [ -n "$(installed)" ]; then
    owner=$(cat "$MARK" 2>/dev/null || true)
    if [ -n "$owner" ] && ! kill -0 "$owner" 2>/dev/null; then
        kb_log "purging the packages a killed run (pid $owner) left installed"
        purge_all || kb_fail "cannot purge the packages left by run $owner"
        rm -rf /var/lib/kembar
    else
        kb_skip "kembar packages are installed on this machine ($(installed | tr '\n' ' ')); not ours to purge"
    fi
fi
rm -f "$MARK"
[ -e /var/lib/kembar ] && kb_skip "/var/lib/kembar exists: this machine's kembar state, which a purge would remove"

# What was there before: kembar files anywhere the packages write (a make install, other tests).
snapshot() {
    { find /etc /usr /lib/systemd /var/lib -xdev -path /usr/local -prune -o -name '*kembar*' -print 2>/dev/null ||
        true; } | sort
}
snapshot >"$KB_TMP/before"
[ -e /sbin/mount.kembar ] && cp -p /sbin/mount.kembar "$KB_TMP/saved.mount.kembar"

# Whatever happens, the machine ends as it was: packages purged, a saved mount.kembar back.
pkg_cleanup() {
    if [ -f "$MARK" ] && [ "$(cat "$MARK")" = $$ ]; then
        [ -n "$(installed)" ] && { purge_all || echo "cleanup: purge failed (see $KB_TMP/apt.out)" >&2; }
        [ -f "$KB_TMP/state-ours" ] && rm -rf /var/lib/kembar
        rm -f "$MARK"
    fi
    if [ -e "$KB_TMP/saved.mount.kembar" ] && [ ! -e /sbin/mount.kembar ]; then
        cp -p "$KB_TMP/saved.mount.kembar" /sbin/mount.kembar
    fi
}
pkg_exit() {
    local rc=$?
    trap - ERR
    set +e
    [ "$rc" -ne 0 ] && [ "$rc" -ne 77 ] && kb__copy_logs
    for f in "$KB_TMP"/mounts/*; do [ -f "$f" ] && kb__force_umount "$(sed -n 1p "$f")"; done
    for f in "$KB_TMP"/pids/*; do [ -f "$f" ] && kb__kill_pid_checked "$(cat "$f")" "$KB_TMP"; done
    pkg_cleanup
    (exit "$rc")
    kb__cleanup
}
trap pkg_exit EXIT

# ---- build and install: the README's block, with build/deb -> this test's folder ------------
DEB=$KB_TMP/deb
awk '/<!-- packages:begin -->/{on=1; next} /<!-- packages:end -->/{on=0} on && !/^```/' \
    "$REPO/README.md" >"$KB_TMP/readme.sh"
grep -q '^make deb' "$KB_TMP/readme.sh" && grep -q 'apt-get install .*\./build/deb/\*\.deb' "$KB_TMP/readme.sh" ||
    kb_fail "README.md's packages block no longer says 'make deb' and 'apt-get install ./build/deb/*.deb': update this test"
if [ -n "${KB_DEB_DIR:-}" ]; then
    mkdir -p "$DEB" && cp "$KB_DEB_DIR"/*.deb "$DEB/"
    sed -i '/^make deb/d' "$KB_TMP/readme.sh"
fi
sed -i -e "s|^make deb|make -C '$REPO' --no-print-directory deb DEB_OUT='$DEB'|" \
       -e "s|\./build/deb/|$DEB/|g" "$KB_TMP/readme.sh"
echo $$ >"$MARK"
kb_log "README block: $(tr '\n' ';' <"$KB_TMP/readme.sh")"
t0=$(date +%s)
kb_t 240 bash -eux "$KB_TMP/readme.sh" >"$KB_TMP/readme.out" 2>&1 ||
    { tail -40 "$KB_TMP/readme.out" >&2; kb_fail "the README's packages block failed"; }
kb_log "built and installed in $(( $(date +%s) - t0 )) s"
if [ -z "${KB_DEB_DIR:-}" ]; then
    grep -E '^ +[a-z0-9-]+_.*\.deb +[0-9]+ bytes' "$KB_TMP/readme.out" | sed 's/^/    /' >&2
    lint=$(grep '^lintian: ' "$KB_TMP/readme.out" | tail -1)
    kb_log "$lint"
    kb_assert_match '^lintian: 0 errors' "$lint" "lintian on the packages"
fi
for p in "${PKGS[@]}"; do
    kb_assert_eq "$VERSION ii" "$(dpkg-query -W -f='${Version} ${db:Status-Abbrev}' "$p" | sed 's/ *$//')" \
        "$p installed at KB_VERSION"
    dpkg -L "$p" >"$KB_TMP/files.$p"
done
dpkg-query -W -f='${Conffiles}\n' "${PKGS[@]}" | awk 'NF {print $1}' >"$KB_TMP/conffiles"
kb_assert_eq "/etc/logrotate.d/kembar-server" "$(cat "$KB_TMP/conffiles")" "conffiles"

# ---- the installed programs -------------------------------------------------------------------
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
kb_assert_eq "kembard $VERSION" "$(/usr/sbin/kembard --version)" "kembard --version"
kb_assert_eq "kembar $VERSION" "$(/usr/bin/kembar --version)" "kembar --version"
kb_assert_eq /usr/sbin/mount.kembar "$(readlink -f /sbin/mount.kembar)" "mount helper"
grep -qx 'installed_fuse=/usr/bin/kembar-fuse' /sbin/mount.kembar || kb_fail "mount.kembar does not prefer /usr/bin/kembar-fuse"
for page in $(grep '^/usr/share/man/' "$KB_TMP"/files.* -h | grep '\.gz$'); do
    LC_ALL=C.UTF-8 MANWIDTH=80 kb_t 30 man --warnings -E UTF-8 -l "$page" >"$KB_TMP/page" 2>"$KB_TMP/page.err" ||
        kb_fail "man -l $page failed"
    [ -s "$KB_TMP/page.err" ] && { cat "$KB_TMP/page.err" >&2; kb_fail "man -l $page warns"; }
    grep -q '^NAME' "$KB_TMP/page" || kb_fail "$page renders no NAME section"
done
kb_log "man pages render: $(grep -c '^/usr/share/man/.*\.gz$' "$KB_TMP"/files.* | awk -F: '{s += $2} END {print s}')"

N1=$(kb_addr 1) N2=$(kb_addr 2)
for n in 1 2; do
    d=$KB_TMP/n$n
    mkdir -p "$d"
    kb_t 20 /usr/sbin/kembard --listen "$(kb_addr "$n")" --state-dir "$d/state" --log-file "$d/kembard.log" \
        --daemon --pid-file "$d/kembard.pid" </dev/null 7>&- 9>&- || kb_fail "kembard $n did not start"
    cp "$d/kembard.pid" "$KB_TMP/pids/pkgnode$n"
done
kb_wait_until 15 kb_t 3 /usr/bin/kembar --server "$N2" volume list || kb_fail "node 2 does not answer"
kb_t 60 /usr/bin/kembar --server "$N1" volume create pkgvol replica 2 "$N1:$KB_TMP/b1" "$N2:$KB_TMP/b2" force
kb_t 60 /usr/bin/kembar --server "$N1" volume start pkgvol
kb_t 30 /usr/bin/kembar --server "$N1" volume status pkgvol >&2

MNT=$KB_TMP/mnt
mkdir -p "$MNT"
echo "$MNT" >"$KB_TMP/mounts/pkg"
kb_t 30 mount -t kembar -o "log-file=$KB_TMP/fuse.log" "$N1,$N2:/pkgvol" "$MNT" 7>&- 9>&- ||
    kb_fail "mount -t kembar failed"
fpid=$(kb__fuse_pid_for "$MNT") || kb_fail "no kembar-fuse serves $MNT"
echo "$fpid" >"$KB_TMP/pids/pkgfuse"
kb_assert_eq /usr/bin/kembar-fuse "$(readlink "/proc/$fpid/exe")" "the program serving the mount"
head -c 3M /dev/urandom >"$KB_TMP/data"
cp "$KB_TMP/data" "$MNT/data"
sync
kb_assert_same_file "$KB_TMP/data" "$MNT/data"
kb_assert_same_file "$KB_TMP/data" "$KB_TMP/b1/data"
kb_assert_same_file "$KB_TMP/data" "$KB_TMP/b2/data"

# A program against libkembar-dev, found by pkg-config in the package's folder only.
cat >"$KB_TMP/libtest.c" <<'EOF'
#include <kembar.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
int main(int argc, char **argv)
{
    if (argc != 2) return 2;
    char err[256] = "";
    const char *msg = "written through libkembar.so.0\n";
    kbc_t *c = kbc_new(argv[1], NULL, err, sizeof(err));
    if (!c) { fprintf(stderr, "kbc_new: %s\n", err); return 1; }
    kbc_fd_t *fd;
    int rc = kbc_open_path(c, "/from-lib", O_CREAT | O_WRONLY | O_TRUNC, 0644, &fd);
    if (rc == 0) {
        rc = kbc_pwrite(fd, msg, strlen(msg), 0) == (ssize_t)strlen(msg) ? 0 : -1;
        if (kbc_close(fd)) rc = -1;
    }
    kbc_free(c);
    if (rc) fprintf(stderr, "libkembar: %d\n", rc);
    return rc == 0 ? 0 : 1;
}
EOF
MA=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
# shellcheck disable=SC2046
cc -Wall -Werror -o "$KB_TMP/libtest" "$KB_TMP/libtest.c" \
    $(PKG_CONFIG_LIBDIR=/usr/lib/$MA/pkgconfig:/usr/share/pkgconfig pkg-config --cflags --libs kembar) ||
    kb_fail "cannot build a program with pkg-config kembar"
# (LD_LIBRARY_PATH: a `make install-lib` in /usr/local/lib would come first in ld.so's cache)
export LD_LIBRARY_PATH=/usr/lib/$MA
kb_assert_match "libkembar\.so\.0 => /usr/lib/$MA/libkembar\.so\.0" "$(ldd "$KB_TMP/libtest")" "libtest links the packaged library"
kb_t 30 "$KB_TMP/libtest" "$N1,$N2:/pkgvol" || kb_fail "the libkembar program failed"
unset LD_LIBRARY_PATH
kb_assert_eq "written through libkembar.so.0" "$(cat "$MNT/from-lib")" "file written by libkembar, read through the mount"

# The bash completion: verbs, volume names from the running node, option keys.
complete_words() {  # complete_words WORD...: what the installed completion offers for the last one
    bash -c '. /usr/share/bash-completion/completions/kembar
             COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _kembar; echo "${COMPREPLY[*]}"' _ "$@"
}
kb_assert_match '(^| )set( |$)' "$(complete_words kembar --server "$N1" volume se)" "completion of a verb"
kb_assert_eq pkgvol "$(complete_words kembar --server "$N1" volume heal pk)" "completion of a volume name"
kb_assert_match 'cluster\.quorum-type' "$(complete_words kembar --server "$N1" volume set pkgvol cluster.quo)" \
    "completion of an option key"

kb_t 15 umount "$MNT"
kb_wait_until 10 kb__pid_gone "$fpid" kembar-fuse || kb_fail "kembar-fuse still runs after umount"
rm -f "$KB_TMP/mounts/pkg" "$KB_TMP/pids/pkgfuse"
for n in 1 2; do
    pid=$(cat "$KB_TMP/pids/pkgnode$n")
    kill -TERM "$pid"
    kb_wait_until 10 kb__pid_gone "$pid" "$KB_TMP" || kb_fail "kembard $n did not stop"
    rm -f "$KB_TMP/pids/pkgnode$n"
done

# The node's own state where the service keeps it (/var/lib/kembar), for the purge to find.
touch "$KB_TMP/state-ours"
kb_t 20 /usr/sbin/kembard --listen "$(kb_addr 3)" --log-file "$KB_TMP/n3.log" --daemon \
    --pid-file "$KB_TMP/n3.pid" </dev/null 7>&- 9>&- || kb_fail "kembard with the default state dir did not start"
cp "$KB_TMP/n3.pid" "$KB_TMP/pids/pkgnode3"
kb_t 10 /usr/bin/kembar --server "$(kb_addr 3)" volume list >/dev/null
pid=$(cat "$KB_TMP/n3.pid")
kill -TERM "$pid"
kb_wait_until 10 kb__pid_gone "$pid" "$KB_TMP" || kb_fail "kembard 3 did not stop"
rm -f "$KB_TMP/pids/pkgnode3"
[ -n "$(ls -A /var/lib/kembar)" ] || kb_fail "kembard left nothing in /var/lib/kembar"
kb_log "state in /var/lib/kembar: $(ls -A /var/lib/kembar | tr '\n' ' ')"

# ---- upgrade: the same packages as version VERSION+pkgtest1 ------------------------------------
NEW=$VERSION+pkgtest1
mkdir -p "$KB_TMP/new" "$KB_TMP/x"
for f in "$DEB"/*.deb; do
    x=$KB_TMP/x/$(basename "$f" .deb)
    dpkg-deb -R "$f" "$x"
    sed -i -e "s/^Version: .*/Version: $NEW/" -e "s/(= $VERSION)/(= $NEW)/g" "$x/DEBIAN/control"
    dpkg-deb -b -Zgzip "$x" "$KB_TMP/new/$(basename "$f")" >/dev/null
done
kb_t 120 "${APT[@]}" install "$KB_TMP"/new/*.deb >>"$KB_TMP/apt.out" 2>&1 || { tail "$KB_TMP/apt.out" >&2; kb_fail "upgrade failed"; }
for p in "${PKGS[@]}"; do
    kb_assert_eq "$NEW" "$(dpkg-query -W -f='${Version}' "$p")" "$p upgraded"
    kb_assert_eq "$(sort "$KB_TMP/files.$p")" "$(dpkg -L "$p" | sort)" "$p's files after the upgrade"
done
left=$(find /etc /lib/systemd /usr/sbin /usr/bin -xdev \( -name '*.dpkg-*' -o -name '*.ucf-*' \) 2>/dev/null | grep kembar || true)
kb_assert_eq "" "$left" "dpkg leftovers after the upgrade"

# ---- remove: binaries go; the node's state and the conffile stay ------------------------------
kb_t 120 "${APT[@]}" remove "${PKGS[@]}" >>"$KB_TMP/apt.out" 2>&1 || kb_fail "apt-get remove failed"
[ -e /usr/sbin/kembard ] && kb_fail "/usr/sbin/kembard is still there after remove"
[ -f /etc/logrotate.d/kembar-server ] || kb_fail "remove took the conffile /etc/logrotate.d/kembar-server"
[ -n "$(ls -A /var/lib/kembar 2>/dev/null)" ] || kb_fail "remove took the node's state in /var/lib/kembar"

# A brick below /var/lib/kembar: kembar-server's purge keeps everything there (run directly).
mkdir -p /var/lib/kembar/bricks/b1/.kembar
out=$(/var/lib/dpkg/info/kembar-server.postrm purge 2>&1) || kb_fail "postrm purge failed: $out"
kb_assert_match 'holds a brick \(/var/lib/kembar/bricks/b1\)' "$out" "the purge names the brick"
[ -d /var/lib/kembar/bricks/b1/.kembar ] && [ -n "$(ls -A /var/lib/kembar | grep -v bricks)" ] ||
    kb_fail "a purge touched /var/lib/kembar while a brick lives there"
rm -rf /var/lib/kembar/bricks

# ---- purge: nothing left ----------------------------------------------------------------------
kb_assert_eq "kembar-client kembar-server" "$(installed | sort | xargs)" "packages left with their conffiles after remove"
purge_all || kb_fail "apt-get purge failed"
kb_assert_eq "" "$(installed)" "packages known to dpkg after the purge"
rm -f "$MARK" "$KB_TMP/state-ours"
left=""
for p in "${PKGS[@]}"; do
    while read -r f; do
        case "$f" in /.|"") continue ;; esac
        if [ -d "$f" ]; then                      # a directory, or /lib -> usr/lib
            case "$f" in *kembar*) left+="$f (directory)"$'\n' ;; esac
        elif [ -e "$f" ] || [ -L "$f" ]; then
            left+="$f"$'\n'
        fi
    done <"$KB_TMP/files.$p"
done
kb_assert_eq "" "$(sed '/^$/d' <<<"$left")" "files of the packages left after the purge"
[ -e /var/lib/kembar ] && kb_fail "/var/lib/kembar is still there after the purge"
if [ -e "$KB_TMP/saved.mount.kembar" ]; then cp -p "$KB_TMP/saved.mount.kembar" /sbin/mount.kembar; fi
snapshot >"$KB_TMP/after"
kb_assert_eq "" "$(comm -13 "$KB_TMP/before" "$KB_TMP/after")" "kembar files that were not there before"
kb_done
