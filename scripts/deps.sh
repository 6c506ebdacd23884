#!/bin/sh
# Installs the Debian packages kembar's build, tests and demo need, when missing.
# Nothing is assumed beyond gcc and make (a fresh Debian 12 machine, root).
set -e
# qemu-system-x86, busybox-static: the VM tests (tests/integration/vm.sh) boot a guest built
# from busybox-static and Debian's kernel package (fetched by the test with apt-get download).
# e2fsprogs: mkfs.ext4 for a brick on a disk of its own (tests/integration/31-local-disk).
PKGS="pkg-config libfuse3-dev fuse3 uuid-dev libssl-dev libevent-dev liburing-dev libcriterion-dev
      attr fio qemu-utils iproute2 psmisc procps util-linux openssl xxd python3 curl clang
      libclang-rt-14-dev qemu-system-x86 busybox-static e2fsprogs"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "deps: missing Debian packages:$missing (run as root to install them)" >&2; exit 1
fi
echo "deps: installing$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null
