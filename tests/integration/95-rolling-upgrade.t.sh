#!/usr/bin/env bash
# 95-rolling-upgrade — a rolling upgrade from the previous release under a running writer, as the
# README's "Upgrading a cluster" tells it (issue 18):
#   - the previous release (RELEASES: the newest one older than KB_VERSION) is built from this
#     repository's own history: `git worktree add --detach` at its commit, `make -j2 all` in that
#     tree (its own build/), no network; the binaries are cached under
#     /var/cache/kembar-test/<commit>/ (KB_RELEASE_CACHE), so a machine builds it once;
#   - three OLD kembard hold a `replica 2 arbiter 1` volume, an OLD kembar-fuse mounts it, and a
#     verifying writer (kb-pattern, O_DIRECT, every write journaled, every 10th read back) runs
#     from before the first node is touched until the old client leaves;
#   - each node in turn (the arbiter first, so the last old node holds data): the README block
#     upgrade-node as written, with stand-ins for apt-get (the current build is what it installs)
#     and systemctl (SIGTERM, then the current kembard on the same state dir and port, its bricks
#     online and the client attached to them again); the block's own `blamed` loop waits for heal.
#     The node's bricks and state dir then carry format stamps, and `peer list` on it shows the
#     new release there and 0.1.0 on the nodes not yet upgraded;
#   - with one old node left: writes and heal go on (the restart before healed with it); a volume
#     set of an option of 0.1 made on a new node reaches the old one; network.lock-lease (0.2) and
#     op-version 2 are refused naming the old node; `cluster.op-version max` stays 1;
#   - every node new: heal info shows 0 entries while the writer writes; network.lock-lease is
#     refused naming the old client; the writer stops with no error and every acknowledged byte
#     is verified;
#   - the client: the README block upgrade-finish (stand-ins for apt-get, umount, mount -t kembar):
#     the current kembar-fuse mounts, op-version 2; then network.lock-lease is taken under a second
#     writer (the mount switches graphs), every byte verified again, and the two data bricks hold
#     identical copies.
# Reports the longest writer stall. Skips (not fails) when this repository lacks the release's
# commit (no .git, or a shallow clone).
# kb-requires: fuse
set -eu
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source=tests/integration/netns.sh
. "$(dirname "$0")/netns.sh"          # nn_tool, nn_kv (no namespaces: nn_init is not called)

NEW=$KB_BIN
CUR_VER=$(sed -n 's/^#define KB_VERSION "\(.*\)"/\1/p' "$KB_REPO/lib/common.h")
[ -n "$CUR_VER" ] || kb_fail "no KB_VERSION in lib/common.h"
[ -f "$KB_REPO/RELEASES" ] || kb_fail "RELEASES is missing"
# The newest release older than this one.
read -r OLD_VER OLD_HASH < <(grep -Ev '^[[:space:]]*(#|$)' "$KB_REPO/RELEASES" |
    while read -r v h; do
        [ "$v" != "$CUR_VER" ] && [ "$(printf '%s\n%s\n' "$v" "$CUR_VER" | sort -V | head -1)" = "$v" ] && echo "$v $h"
    done | sort -V | tail -1) || true
[ -n "${OLD_HASH:-}" ] || kb_fail "RELEASES names no release older than $CUR_VER"
[ "${#OLD_HASH}" = 40 ] || kb_fail "RELEASES: '$OLD_HASH' is not a full commit hash"
CACHE_ROOT=${KB_RELEASE_CACHE:-/var/cache/kembar-test}
OLD=$CACHE_ROOT/$OLD_HASH/bin

# ---------------------------------------------------------------------------------------------
# The previous release, from this repository's history.

build_release() {
    git -C "$KB_REPO" rev-parse --git-dir >/dev/null 2>&1 ||
        kb_skip "$KB_REPO is not a git repository: cannot build release $OLD_VER"
    git -C "$KB_REPO" cat-file -e "$OLD_HASH^{commit}" 2>/dev/null ||
        kb_skip "commit $OLD_HASH (release $OLD_VER) is not in this repository's history"
    mkdir -p "$CACHE_ROOT"
    exec 8>"$CACHE_ROOT/$OLD_HASH.lock"
    flock -w 600 8 || kb_fail "another test has been building release $OLD_VER for 10 minutes"
    if [ ! -x "$OLD/kembard" ] || [ ! -x "$OLD/kembar" ] || [ ! -x "$OLD/kembar-fuse" ]; then
        local wt=$CACHE_ROOT/build-$OLD_HASH-$$ t0
        t0=$(date +%s)
        rm -rf "$wt" "$CACHE_ROOT/$OLD_HASH"
        mkdir -p "$wt"
        kb_log "building release $OLD_VER ($OLD_HASH) from this repository's history (cached in $CACHE_ROOT)"
        # The worktree goes whatever happens; the binaries are moved into place only when complete.
        (
            trap 'git -C "$KB_REPO" worktree remove --force "$wt/src" >/dev/null 2>&1; git -C "$KB_REPO" worktree prune' EXIT
            git -C "$KB_REPO" worktree add --detach "$wt/src" "$OLD_HASH" >"$wt/build.log" 2>&1
            env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL -u CFLAGS -u B make -C "$wt/src" -j2 all >>"$wt/build.log" 2>&1
            mkdir -p "$wt/out/bin"
            cp "$wt/src/build/kembard" "$wt/src/build/kembar" "$wt/src/build/kembar-fuse" "$wt/out/bin/"
            echo "$OLD_VER $OLD_HASH" >"$wt/out/RELEASE"
        ) || { tail -20 "$wt/build.log" >&2; rm -rf "$wt"; kb_fail "cannot build release $OLD_VER"; }
        mv -T "$wt/out" "$CACHE_ROOT/$OLD_HASH"
        rm -rf "$wt"
        kb_log "release $OLD_VER built in $(( $(date +%s) - t0 )) s"
    fi
    exec 8>&-
    local v
    v=$("$OLD/kembard" --version) || kb_fail "$OLD/kembard --version failed"
    kb_assert_eq "kembard $OLD_VER" "$v" "the cached build is release $OLD_VER"
}
build_release
kb_log "upgrading from $OLD_VER ($OLD_HASH) to $CUR_VER"

# ---------------------------------------------------------------------------------------------
# Helpers.

PAT=$(nn_tool kb-pattern)
MNT=$KB_TMP/mnt
mount_log() { echo "$KB_TMP/fuse-$(basename "$MNT")-$(echo "$MNT" | md5sum | cut -c1-12).log"; }

# attached N: the mount's protocol/client of node N's brick is connected: its latest "connected
# to" / "disconnected from" line for that port says connected, and it connected more than
# ${2:-0} times so far.
connects() { grep -c "\] connected to 127.0.0.1:$(kb_port "$1"):" "$(mount_log)" || true; }
attached() {
    local last
    [ "$(connects "$1")" -gt "${2:-0}" ] || return 1
    last=$(grep -E "\] (connected to|disconnected from) 127.0.0.1:$(kb_port "$1"):" "$(mount_log)" | tail -1)
    case "$last" in *"] connected to "*) return 0 ;; *) return 1 ;; esac
}
bricks_online() {  # every brick of rv online per `volume status --json` of node $1
    local j
    j=$(kb_cli_json "$1" volume status rv) || return 1
    [ "$(kb_json_bricks "${B[@]}" <<<"$j" | awk '$2 != "1"' | wc -l)" = 0 ]
}
heal_entries() { kb_cli_json "$1" volume heal rv info | "$KB_PY" -c 'import json,sys; print(json.load(sys.stdin)["total_entries"])'; }
format_of() { getfattr --absolute-names -n trusted.kembar.format -e hex "$1" 2>/dev/null | sed -n 's/^trusted.kembar.format=//p'; }

# The README's blocks, as written.
readme_block() {
    awk -v b="<!-- $1:begin -->" -v e="<!-- $1:end -->" '$0 == b { on = 1; next } $0 == e { on = 0 } on && !/^```/' \
        "$KB_REPO/README.md" >"$KB_TMP/$1.sh"
    [ -s "$KB_TMP/$1.sh" ] || kb_fail "README.md has no $1 block"
}
readme_block upgrade-node
readme_block upgrade-finish

# Stand-ins for what a real node does (the README blocks call them). apt-get: the current build is
# what "the new package" holds (KB_BIN). systemctl restart kembard: node $CUR replaced, then what
# the block's `volume status` line asks the reader to see: its bricks online, the client back.
apt-get() { kb_log "  (stand-in) apt-get $*"; }
systemctl() {
    [ "$*" = "restart kembard" ] || kb_fail "systemctl stand-in: unexpected '$*'"
    local before
    before=$(connects "$CUR")
    kb_node_stop "$CUR"
    # While a data node is away, the writes it misses are marked against its brick: what `blamed`
    # must see (the arbiter takes no data, so data writes do not blame it).
    if [ "$CUR" != 3 ]; then
        kb_wait_until 10 eval '[ -n "$(blamed "${B[@]}")" ]' || kb_fail "no copy blames node $CUR's brick while it is down"
        kb_log "  node $CUR down: $(blamed "${B[@]}" | wc -l) object(s) blamed on the other bricks"
    fi
    command sleep 2                   # a restart that takes its time: 2 s of writes for heal to copy
    T_DOWN=$(date +%s%N)
    kb_node_start "$CUR"
    kb_wait_until 20 bricks_online "$CUR" || kb_fail "node $CUR's bricks not online after its upgrade"
    kb_wait_until 20 attached "$CUR" "$before" || kb_fail "the client did not attach to node $CUR's brick again"
    kb_log "  node $CUR back: bricks online and the client attached $(( ($(date +%s%N) - T_DOWN) / 1000000 )) ms after its start"
}
# The blocks wait with `until ...; do sleep 1; done`: while one runs (DEADLINE set), the stand-in
# bounds that.
DEADLINE=0
sleep() {
    if [ "$DEADLINE" != 0 ] && [ "$(date +%s)" -ge "$DEADLINE" ]; then
        kb_fail "waited past the deadline (heal did not converge?): blamed: $(blamed "${B[@]}" | head -5)"
    fi
    command sleep "$@"
}
umount() { kb_umount "$1"; }
mount() {
    [ "$1" = -t ] && [ "$2" = kembar ] && [ $# = 4 ] || kb_fail "mount stand-in: unexpected '$*'"
    kb_mount_spec "$3" "$4"
}
export PATH="$NEW:$PATH"

# writer OUT: kb-pattern in the background on $MNT/img until TERM; pid in WPID. A second run
# continues the journal (same seed, size and block size).
SEED=$RANDOM
writer() {
    "$PAT" write "$MNT/img" --journal "$KB_TMP/img.journal" --size 32M --seed "$SEED" --duration 600 \
        --direct --rate 300 --readback 10 >"$1" 2>"$1.err" &
    WPID=$!
}
writer_stop() {  # writer_stop OUT: TERM, wait, check the summary (no error); prints max_stall_ms
    local rc=0 s
    kill -TERM "$WPID" 2>/dev/null || true
    wait "$WPID" || rc=$?
    s=$(cat "$1")
    kb_log "  $s"
    [ -s "$1.err" ] && sed 's/^/    writer: /' "$1.err" | head -20 >&2
    [ "$rc" = 0 ] || kb_fail "the writer failed (exit $rc): $(head -c 400 "$1.err")"
    kb_assert_eq 0 "$(nn_kv errors "$s")" "write errors"
    kb_assert_eq 0 "$(nn_kv readback_bad "$s")" "read-back errors"
    [ "$(nn_kv acked "$s")" -gt 0 ] || kb_fail "the writer acknowledged nothing"
}
verify() {
    local v
    v=$("$PAT" verify "$MNT/img" --journal "$KB_TMP/img.journal" --direct 2>&1) || kb_fail "verify: $v"
    kb_log "  $v"
}
stall() { nn_kv max_stall_ms "$(cat "$1")"; }

# ---------------------------------------------------------------------------------------------
# The old cluster and its client.

for n in 1 2 3; do KB_BIN=$OLD kb_node_start "$n"; done
declare -a B
B=("$(kb_brick_path 1 rv)" "$(kb_brick_path 2 rv)" "$(kb_brick_path 3 rv)")
KB_BIN=$OLD kb_cli 1 volume create rv replica 2 arbiter 1 \
    "$(kb_brick 1 "${B[0]}")" "$(kb_brick 2 "${B[1]}")" "$(kb_brick 3 "${B[2]}")" force >&2
KB_BIN=$OLD kb_cli 1 volume start rv >&2
kb_wait_until 20 bricks_online 1 || kb_fail "bricks of rv not online"
KB_BIN=$OLD kb_mount rv "$MNT"
for n in 1 2 3; do kb_wait_until 10 attached "$n" || kb_fail "the old client is not attached to node $n"; done
kb_assert_eq "" "$(format_of "${B[1]}")" "a brick of $OLD_VER carries no format stamp"
[ ! -e "$(kb_node_dir 2)/state/format" ] || kb_fail "a state dir of $OLD_VER has a format file"
writer "$KB_TMP/w1.out"
W1=$WPID
command sleep 3
kill -0 "$W1" 2>/dev/null || kb_fail "the writer died at once: $(cat "$KB_TMP/w1.out.err")"

# ---------------------------------------------------------------------------------------------
# The nodes, one at a time: README block upgrade-node.

upgrade() {  # upgrade N
    local t0 n=$1
    CUR=$n VOL=rv NODE=$(kb_addr "$n") BRICKS="${B[*]}"
    DEADLINE=$(( $(date +%s) + 90 ))
    t0=$(date +%s%N)
    kb_log "--- node $n: README upgrade-node"
    # shellcheck disable=SC1090
    . "$KB_TMP/upgrade-node.sh" >"$KB_TMP/upgrade-node-$n.out"
    DEADLINE=0
    kb_log "  node $n upgraded and healed in $(( ($(date +%s%N) - t0) / 1000000 )) ms"
    kill -0 "$W1" 2>/dev/null || kb_fail "the writer stopped during node $n's upgrade: $(cat "$KB_TMP/w1.out.err")"
    # what the block printed: peer list on the node says what each runs
    local m line
    for m in 1 2 3; do
        [ "$m" = "$n" ] && continue
        line=$(grep -F "$(kb_addr "$m") " "$KB_TMP/upgrade-node-$n.out" | head -1)
        if [ "${UPGRADED[$m]:-0}" = 1 ]; then
            kb_assert_match " member \(kembar $CUR_VER\)" "$line" "peer list on node $n: node $m"
        else
            kb_assert_match " member \(kembar $OLD_VER\)" "$line" "peer list on node $n: node $m (not upgraded yet)"
        fi
    done
    kb_assert_match "^127.0.0.1 +this node \(kembar $CUR_VER\)" "$(grep 'this node' "$KB_TMP/upgrade-node-$n.out")" \
        "peer list: this node"
    UPGRADED[$n]=1
    # formats stamped at the node's start: its brick, its state dir
    kb_assert_eq 0x01000000 "$(format_of "${B[$((n - 1))]}")" "node $n's brick format stamp"
    kb_assert_eq 1 "$(cat "$(kb_node_dir "$n")/state/format")" "node $n's state dir format"
}
declare -A UPGRADED
upgrade 3
upgrade 1

# One old node left (node 2, a data node): node 1's brick healed with it just now.
kb_log "--- one $OLD_VER node left"
KB_EXPECT_RE="node $(kb_addr 2) runs kembar $OLD_VER, which network.lock-lease needs >= 0\.2" \
    kb_expect_fail 30 "a 0.2 option with a $OLD_VER node" kembar --server "$(kb_addr 1)" volume set rv network.lock-lease 30
KB_EXPECT_RE="node $(kb_addr 2) runs kembar $OLD_VER, which op-version 2 needs >= 0\.2" \
    kb_expect_fail 30 "op-version 2 with a $OLD_VER node" kembar --server "$(kb_addr 1)" volume set rv cluster.op-version 2
kb_assert_match "op-version 1" "$(kb_cli 1 volume set rv cluster.op-version max)" "max with a $OLD_VER node"
kb_cli 1 volume set rv cluster.heal-interval 30 >&2
kb_assert_eq "cluster.heal-interval 30" "$(kb_cli 2 volume get rv cluster.heal-interval)" \
    "a setting made on a $CUR_VER node, as the $OLD_VER node holds it"
command sleep 3                       # the mount switches to the new graph under the writer
kill -0 "$W1" 2>/dev/null || kb_fail "the writer stopped across the graph switch: $(cat "$KB_TMP/w1.out.err")"

upgrade 2

# ---------------------------------------------------------------------------------------------
# Every node new; the client still old.

kb_log "--- every node runs $CUR_VER, the client $OLD_VER"
kb_wait_until 30 eval '[ "$(heal_entries 1)" = 0 ]' || kb_fail "heal info not 0 with every node new: $(kb_cli 1 volume heal rv info)"
KB_EXPECT_RE="client 127\.0\.0\.1 \(rv-client-[0-9], on .*\) runs kembar 0\.1, which network\.lock-lease needs >= 0\.2" \
    kb_expect_fail 30 "a 0.2 option with a $OLD_VER client" kembar --server "$(kb_addr 1)" volume set rv network.lock-lease 30
writer_stop "$KB_TMP/w1.out"
S1=$(stall "$KB_TMP/w1.out")
verify

# ---------------------------------------------------------------------------------------------
# The client, then the op-version: README block upgrade-finish.

kb_log "--- the client: README upgrade-finish"
T_SWAP=$(date +%s%N)
VOL=rv NODE=$(kb_addr 1) SERVERS="$(kb_addr 1),$(kb_addr 2)"
DEADLINE=$(( $(date +%s) + 60 ))
# shellcheck disable=SC1090
. "$KB_TMP/upgrade-finish.sh" >"$KB_TMP/upgrade-finish.out" 2>&1
DEADLINE=0
SWAP_MS=$(( ($(date +%s%N) - T_SWAP) / 1000000 ))
kb_assert_match "Number of entries: 0" "$(cat "$KB_TMP/upgrade-finish.out")" "heal info in upgrade-finish"
kb_assert_match "Op-version: 2 \(kembar 0\.2 and later\)" "$(cat "$KB_TMP/upgrade-finish.out")" "volume info after max"
kb_assert_eq "cluster.op-version 2" "$(kb_cli 1 volume get rv cluster.op-version)" "op-version raised"
pgrep -f "$NEW/kembar-fuse .*$MNT" >/dev/null || kb_fail "the mount is not served by the current kembar-fuse"
for n in 1 2 3; do kb_wait_until 10 attached "$n" || kb_fail "the new client is not attached to node $n"; done
verify                                # what the old client wrote, read by the new one

writer "$KB_TMP/w2.out"
command sleep 2
kb_cli 1 volume set rv network.lock-lease 30 >&2      # a 0.2 setting: the mount switches graphs
kb_assert_eq "network.lock-lease 30" "$(kb_cli 3 volume get rv network.lock-lease)" "lock-lease on every node"
command sleep 4
writer_stop "$KB_TMP/w2.out"
S2=$(stall "$KB_TMP/w2.out")
verify
kb_wait_until 30 eval '[ "$(heal_entries 1)" = 0 ]' || kb_fail "heal info not 0 at the end: $(kb_cli 1 volume heal rv info)"
kb_assert_eq "" "$(blamed "${B[@]}")" "no copy blames another"
kb_assert_same_file "${B[0]}/img" "${B[1]}/img"
kb_assert_eq 0 "$(stat -c %s "${B[2]}/img")" "the arbiter holds no data"

kb_log "longest writer stall: $S1 ms across the three node upgrades (old client), $S2 ms across the op-version raise and the lock-lease graph switch (new client); the client swap (umount, mount with the new kembar-fuse, op-version raised) took $SWAP_MS ms with the writer stopped"
S=$(printf '%s\n%s\n' "$S1" "$S2" | sort -g | tail -1 | cut -d. -f1)
kb_assert_le "$S" 5999 "longest writer stall (ms), under ping-timeout + 1 s"
kb_done
