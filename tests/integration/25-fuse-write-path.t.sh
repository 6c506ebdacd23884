#!/usr/bin/env bash
# 25-fuse-write-path — every write size lands intact through the loop-thread FUSE reader.
#
# kembar-fuse reads /dev/fuse on the libkembar loop thread into receive buffers of its own; a
# write of 32 KiB or more is sent to the bricks from where it was received (no copy), holding that
# buffer, and the next request goes to a fresh one (fuse/main.c, fuse/file.c). Several writers at
# once (each with its own record size, O_DIRECT among them) keep several such buffers in flight;
# every file must then be byte-identical to its source through the mount and on both bricks.
# The same through -o threads (libfuse workers, payload copied) as the reference path.
# kb-requires: fuse
set -eu
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"

kb_node_start 1
kb_node_start 2
kb_volume_up two 1 2 >/dev/null
src=$KB_TMP/src
mkdir -p "$src"
kb_t 30 dd if=/dev/urandom of="$src/data" bs=1M count=24 status=none

check_mount() {  # check_mount MOUNTPOINT TAG
    local m=$1 tag=$2 pids=() bs
    for bs in 4k 33k 128k 1M 1000k; do
        kb_t 60 dd if="$src/data" of="$m/$tag-$bs" bs=$bs status=none & pids+=($!)
    done
    kb_t 60 dd if="$src/data" of="$m/$tag-direct" bs=256k oflag=direct status=none & pids+=($!)
    for p in "${pids[@]}"; do wait "$p" || kb_fail "a writer failed on $m"; done
    for bs in 4k 33k 128k 1M 1000k direct; do
        kb_assert_same_file "$src/data" "$m/$tag-$bs"
        kb_assert_same_file "$src/data" "$(kb_node_dir 1)/bricks/"two.*/"$tag-$bs"
        kb_assert_same_file "$src/data" "$(kb_node_dir 2)/bricks/"two.*/"$tag-$bs"
    done
}

kb_section "loop-thread reader, payloads kept in place"
kb_mount two "$KB_TMP/a"
check_mount "$KB_TMP/a" loop
kb_section "libfuse worker threads (-o threads)"
kb_mount two "$KB_TMP/b" threads
check_mount "$KB_TMP/b" thr
kb_done
