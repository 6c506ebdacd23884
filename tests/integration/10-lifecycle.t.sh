#!/usr/bin/env bash
# 10-lifecycle — two kembard on one host, a replica-2 volume across them, through the CLI only
# (issue 2): create, list/info/status (human and --json), start, bricks online with pids, a node
# restarted with its state dir brings its brick back online by itself, stop, delete; and every
# error case answers one line on stderr with a non-zero exit.
# kb-requires: root
set -eu
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"

kb_node_start 1
kb_node_start 2
B1=$(kb_brick_path 1 vol1)
B2=$(kb_brick_path 2 vol1)
BR1=$(kb_brick 1 "$B1")
BR2=$(kb_brick 2 "$B2")

# kb_bricks_state N VOL: "ONLINE1 PID1 ONLINE2 PID2" for B1, B2 from node N's status --json.
bricks_state() {
    kb_cli_json "$1" volume status "$2" | kb_json_bricks "$B1" "$B2" | awk '{printf "%s%s %s", (NR > 1 ? " " : ""), $2, $3}'
}
both_online() { [[ "$(bricks_state "$1" vol1)" =~ ^1\ [0-9]+\ 1\ [0-9]+$ ]]; }

create_show() {
    local out
    out=$(kb_cli 1 volume create vol1 replica 2 "$BR1" "$BR2" force) ||
        kb_fail "volume create vol1 replica 2 $BR1 $BR2 force"
    kb_log "create: $out"
    # Every node knows the volume (the CLI may ask any of them).
    for n in 1 2; do
        kb_assert_match '^vol1$' "$(kb_cli "$n" volume list)" "volume list on node $n"
        kb_cli_json "$n" volume list | kb_json_has vol1 || kb_fail "volume list --json on node $n lacks vol1"
        out=$(kb_cli "$n" volume info vol1)
        kb_assert_match "$BR1" "$out" "volume info on node $n names brick 1"
        kb_assert_match "$BR2" "$out" "volume info on node $n names brick 2"
        kb_assert_match 'vol1' "$out" "volume info on node $n names the volume"
        out=$(kb_cli_json "$n" volume info vol1)
        kb_json_has vol1 <<<"$out" || kb_fail "volume info --json on node $n lacks vol1: $out"
        kb_json_has "$BR1" <<<"$out" || kb_fail "volume info --json on node $n lacks $BR1: $out"
        kb_json_has "$BR2" <<<"$out" || kb_fail "volume info --json on node $n lacks $BR2: $out"
        kb_assert_eq 2 "$("$KB_PY" -c '
import json, sys
d = json.load(sys.stdin)
d = d[0] if isinstance(d, list) else d
print(d.get("replica"))' <<<"$out")" "replica count in volume info --json on node $n"
    done
    # Not started: no brick online.
    kb_assert_match '^0 - 0 -$' "$(bricks_state 1 vol1)" "status of a created, not started volume"
    # The bricks are stamped with the volume's identity.
    getfattr --absolute-names -n trusted.kembar.volume-id "$B1" >/dev/null 2>&1 || kb_fail "brick 1 not stamped"
    getfattr --absolute-names -n trusted.kembar.volume-id "$B2" >/dev/null 2>&1 || kb_fail "brick 2 not stamped"
}

start_status() {
    kb_cli 1 volume start vol1 >&2 || kb_fail "volume start vol1"
    kb_wait_until 10 both_online 1 || kb_fail "bricks not both online 10 s after start: $(bricks_state 1 vol1)"
    local st p1 p2 out
    st=$(bricks_state 1 vol1)
    read -r _ p1 _ p2 <<<"$st"
    kb_pid_alive "$p1" || kb_fail "brick 1 pid $p1 is not a live process"
    kb_pid_alive "$p2" || kb_fail "brick 2 pid $p2 is not a live process"
    kb_assert_eq "$st" "$(bricks_state 2 vol1)" "status via node 2 agrees with node 1"
    out=$(kb_cli 1 volume status vol1)
    kb_assert_match "$B1.* Y .*$p1" "$out" "human status shows brick 1 online with its pid"
    kb_assert_match "$B2.* Y .*$p2" "$out" "human status shows brick 2 online with its pid"
    kb_assert_match '[Ss]tarted' "$(kb_cli 1 volume info vol1)" "volume info says started"
}

node_restart() {
    kb_node_stop 2
    local st
    kb_wait_until 10 eval '[[ "$(bricks_state 1 vol1)" =~ ^1\ [0-9]+\ 0\ -$ ]]' ||
        kb_fail "with node 2 down, status via node 1 should show brick 1 online and brick 2 offline: $(bricks_state 1 vol1 2>&1)"
    kb_node_start 2
    # No CLI step: the restarted node brings its brick back itself.
    kb_wait_until 15 both_online 1 ||
        kb_fail "brick 2 not back online 15 s after node 2 restarted: $(bricks_state 1 vol1)"
    st=$(bricks_state 2 vol1)
    [[ "$st" =~ ^1\ [0-9]+\ 1\ [0-9]+$ ]] || kb_fail "status via the restarted node 2: $st"
    kb_log "after restart: $st"
}

node_kill() {
    # The same after SIGKILL (no clean shutdown); KB_LONG=1: ten rounds, alternating nodes.
    local rounds=1 i n
    [ "$KB_LONG" = 1 ] && rounds=10
    kb__node_alive 2 || kb_node_start 2
    for i in $(seq 1 "$rounds"); do
        n=$(( (i % 2) + 1 ))
        [ "$rounds" = 1 ] && n=2
        kb_node_kill "$n"
        kb_node_start "$n"
        kb_wait_until 15 both_online 1 ||
            kb_fail "round $i: brick $n not back online 15 s after node $n was killed and restarted: $(bricks_state 1 vol1)"
    done
}

stop_delete() {
    kb__node_alive 2 || kb_node_start 2
    kb_cli 1 volume stop vol1 >&2 || kb_fail "volume stop vol1"
    kb_wait_until 10 eval '[[ "$(bricks_state 1 vol1)" =~ ^0\ -\ 0\ -$ ]]' ||
        kb_fail "bricks still online after stop: $(bricks_state 1 vol1)"
    kb_assert_match '[Ss]topped' "$(kb_cli 2 volume info vol1)" "volume info via node 2 says stopped"
    kb_cli 2 volume delete vol1 >&2 || kb_fail "volume delete vol1 (via node 2)"
    for n in 1 2; do
        kb_assert_nomatch '^vol1$' "$(kb_cli "$n" volume list)" "volume list on node $n after delete"
    done
    # The brick directories are released (no identity stamps left) and can serve a new volume.
    ! getfattr --absolute-names -n trusted.kembar.volume-id "$B1" >/dev/null 2>&1 ||
        kb_fail "brick 1 still stamped after delete"
    kb_cli 1 volume create vol1b "$BR1" force >&2 || kb_fail "reuse of a deleted volume's brick"
    kb_cli 1 volume delete vol1b >&2
}

errors() {
    local d nb
    kb__node_alive 1 || kb_node_start 1   # an earlier failed section may have left one down
    kb__node_alive 2 || kb_node_start 2
    d=$(kb_brick_path 1 e)
    kb_cli 1 volume create evol "$(kb_brick 1 "$d")" force >&2 || kb_fail "create evol"
    KB_EXPECT_RE="exist" kb_expect_fail 20 "create with an existing name" \
        "$KB_BIN/kembar" --server "$(kb_addr 1)" volume create evol "$(kb_brick 2 "$(kb_brick_path 2 e)")" force
    # Asked of node 2 (which has no brick of evol) with a brick on node 1, which has evol.
    KB_EXPECT_RE="exist" kb_expect_fail 20 "create with an existing name, via the other node" \
        "$KB_BIN/kembar" --server "$(kb_addr 2)" volume create evol "$(kb_brick 1 "$(kb_brick_path 1 e)")" force
    KB_EXPECT_RE="replica|brick" kb_expect_fail 20 "replica 2 with one brick" \
        "$KB_BIN/kembar" --server "$(kb_addr 1)" volume create e2 replica 2 "$(kb_brick 1 "$(kb_brick_path 1 e)")" force
    KB_EXPECT_RE="replica|brick" kb_expect_fail 20 "replica 2 with three bricks" \
        "$KB_BIN/kembar" --server "$(kb_addr 1)" volume create e3 replica 2 "$(kb_brick 1 "$(kb_brick_path 1 e)")" \
        "$(kb_brick 2 "$(kb_brick_path 2 e)")" "$(kb_brick 1 "$(kb_brick_path 1 e)")" force
    KB_EXPECT_RE="nosuch|exist|unknown" kb_expect_fail 20 "start of an unknown volume" "$KB_BIN/kembar" --server "$(kb_addr 1)" volume start nosuch
    KB_EXPECT_RE="nosuch|exist|unknown" kb_expect_fail 20 "stop of an unknown volume" "$KB_BIN/kembar" --server "$(kb_addr 1)" volume stop nosuch
    KB_EXPECT_RE="nosuch|exist|unknown" kb_expect_fail 20 "delete of an unknown volume" "$KB_BIN/kembar" --server "$(kb_addr 1)" volume delete nosuch
    KB_EXPECT_RE="nosuch|exist|unknown" kb_expect_fail 20 "info of an unknown volume" "$KB_BIN/kembar" --server "$(kb_addr 1)" volume info nosuch
    KB_EXPECT_RE="nosuch|exist|unknown" kb_expect_fail 20 "status of an unknown volume" "$KB_BIN/kembar" --server "$(kb_addr 1)" volume status nosuch
    # A brick directory of evol offered to another volume, even with force.
    nb=$(kb_brick_path 2 e)
    KB_EXPECT_RE="belong|another volume|evol|already" kb_expect_fail 20 "brick dir that belongs to another volume" \
        "$KB_BIN/kembar" --server "$(kb_addr 1)" volume create e4 replica 2 "$(kb_brick 1 "$d")" "$(kb_brick 2 "$nb")" force
    kb_assert_nomatch '^e4$' "$(kb_cli 1 volume list)" "the refused volume e4 must not exist"
    kb_assert_match '^evol$' "$(kb_cli 1 volume list)" "evol survives the refused create"
    # The refused create left no stamp on the good brick it had accepted first.
    ! getfattr --absolute-names -n trusted.kembar.volume-id "$nb" >/dev/null 2>&1 ||
        kb_fail "refused create e4 left $nb stamped"
    # A relative brick path.
    KB_EXPECT_RE="absolute|relative|brick" kb_expect_fail 20 "relative brick path" \
        "$KB_BIN/kembar" --server "$(kb_addr 1)" volume create e5 "$(kb_addr 1):relative/dir" force
    # Unreachable: the server itself, and a brick on a node with no listener.
    local dead=$((KB_PORT_BASE + 99))
    ! kb__port_busy "$dead" || kb_fail "test setup: port $dead has a listener"
    KB_EXPECT_RE="reach|connect|refused" kb_expect_fail 20 "server unreachable" "$KB_BIN/kembar" --server "127.0.0.1:$dead" volume list
    KB_EXPECT_RE="reach|connect|refused" kb_expect_fail 20 "brick on an unreachable node" \
        "$KB_BIN/kembar" --server "$(kb_addr 1)" volume create e6 replica 2 "$(kb_brick 1 "$(kb_brick_path 1 e)")" \
        "127.0.0.1:$dead:$KB_TMP/nowhere" force
    kb_assert_nomatch '^e6$' "$(kb_cli 1 volume list)" "the refused volume e6 must not exist"
    kb_cli 1 volume delete evol >&2 || kb_fail "delete evol"
}

kb_section "create, list, info" create_show
kb_section "start, status" start_status
kb_section "node 2 restarted: brick back by itself" node_restart
kb_section "node 2 killed and restarted" node_kill
kb_section "stop, delete" stop_delete
kb_section "error cases" errors
kb_done
