#!/usr/bin/env bash
# 26-graph-switch — a changed volume definition reaches a mounted client live (issue 6: add-brick
# and friends are online only because of this): `volume set` bumps the definition, the mount
# fetches the new volfile, builds a new graph, moves its open files to it and finalises the old
# one, while a writer (kb-pattern, random 64 KiB blocks with read-back) keeps writing: no write
# error, every acknowledged block read back right, both bricks identical; a file held open across
# two switches keeps working; the bricks see the client at the new definition version.
# kb-requires: root
set -eu
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"

PAT=$KB_TMP/kb-pattern
cc -std=gnu11 -D_GNU_SOURCE -O2 -o "$PAT" "$KB_REPO/tests/tools/kb-pattern.c" || kb_fail "cannot build kb-pattern"

kb_node_start 1
kb_node_start 2
mapfile -t BR < <(kb_volume_up gs 1 2)
MNT=$KB_TMP/m-gs
kb_mount gs "$MNT"
FLOG=$(ls "$KB_TMP"/fuse-m-gs-*.log)

switched() { grep -c "switched to a new graph" "$FLOG" || true; }
finalised() { grep -c "old graph generation is finalised" "$FLOG" || true; }
switched_ge() { [ "$(switched)" -ge "$1" ]; }
finalised_ge() { [ "$(finalised)" -ge "$1" ]; }
writer_out=$KB_TMP/w.out
exec 7<>"$MNT/held"
printf a >&7

"$PAT" write "$MNT/img" --journal "$writer_out.journal" --size 16M --bs 65536 --seed 7 --duration 10 \
    --rate 100 --readback 5 >"$writer_out" 2>"$writer_out.err" &
WPID=$!
sleep 2

kb_section "volume set: the mount switches graphs under the writer" true
kb_cli 1 volume set gs network.ping-timeout 4 >&2
kb_wait_until 15 switched_ge 1 || kb_fail "the mount did not switch to the new graph"
kb_wait_until 15 finalised_ge 1 || kb_fail "the old graph was never finalised"
printf b >&7
kb_cli 1 volume set gs network.ping-timeout 5 >&2
kb_wait_until 15 switched_ge 2 || kb_fail "no second switch"
kb_wait_until 15 finalised_ge 2 || kb_fail "the second old graph was never finalised"
printf c >&7
exec 7>&-

rc=0
wait "$WPID" || rc=$?
kb_log "writer: $(cat "$writer_out")"
[ -s "$writer_out.err" ] && sed 's/^/    writer: /' "$writer_out.err" | head -20 >&2
kb_assert_eq 0 "$rc" "writer exit status across two graph switches"
"$PAT" verify "$MNT/img" --journal "$writer_out.journal" >"$KB_TMP/v.out" || kb_fail "verify: $(cat "$KB_TMP/v.out")"
kb_log "verify: $(cat "$KB_TMP/v.out")"

kb_section "both bricks identical; the held file has all three writes" true
kb_assert_eq "abc" "$(cat "$MNT/held")" "a file held open across two switches"
kb_umount "$MNT"
for f in img held; do
    kb_assert_same_file "${BR[0]}/$f" "${BR[1]}/$f"
done
kb_assert_eq "abc" "$(cat "${BR[0]}/held")" "held on brick 1"
# create = 1, start = 2, each set + 1: the last graph's connections said version 4
kb_assert_match "gs-client-[01], version 4\) attached" "$(grep "attached to gs:" "$(kb_node_log 1)" | tail -4)" \
    "the bricks saw the mount's new graph at definition version 4"
kb_done
