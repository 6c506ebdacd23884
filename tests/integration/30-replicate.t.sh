#!/usr/bin/env bash
# 30-replicate — synchronous mirroring (issue 4): 256 MiB written through the mount of a replica 2
# and of a replica 3 volume; every brick's copy is byte-identical to the source (sha256 of each
# brick file), and the changelog left nothing pending (heal info shows 0 entries).
# kb-requires: root
set -eu
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"

kb_node_start 1
kb_node_start 2
kb_node_start 3
SRC=$KB_TMP/src.bin
head -c $((256 << 20)) /dev/urandom >"$SRC"
WANT=$(kb_sha "$SRC")

mirror() {  # mirror VOL NODES...: 256 MiB through the mount, then every brick compared
    local vol=$1 b t0 t1; shift
    mapfile -t BR < <(kb_volume_up "$vol" "$@")
    kb_mount "$vol" "$KB_TMP/m-$vol"
    t0=$(date +%s%N)
    dd if="$SRC" of="$KB_TMP/m-$vol/img" bs=1M conv=fsync status=none
    t1=$(date +%s%N)
    kb_log "$vol: 256 MiB written in $(( (t1 - t0) / 1000000 )) ms"
    kb_assert_eq "$WANT" "$(kb_sha "$KB_TMP/m-$vol/img")" "$vol: read back through the mount"
    for b in "${BR[@]}"; do
        kb_assert_eq "$WANT" "$(kb_sha "$b/img")" "$vol: brick copy $b"
    done
    kb_assert_eq 0 "$(kb_cli_json 1 volume heal "$vol" info | "$KB_PY" -c 'import json,sys; print(json.load(sys.stdin)["total_entries"])')" \
        "$vol: nothing left pending after the writes"
    kb_umount "$KB_TMP/m-$vol"
}

kb_section "replica 2: every copy identical" mirror r2 1 2
kb_section "replica 3: every copy identical" mirror r3 1 2 3
kb_done
