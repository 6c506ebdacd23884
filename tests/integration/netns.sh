# shellcheck shell=bash
#
# netns.sh — nodes in their own network namespaces, and the faults the reliability suite injects
# (issue 8). Sourced by tests/integration/5*-*.t.sh AFTER lib.sh:
#
#     . "$(dirname "$0")/lib.sh"
#     . "$(dirname "$0")/netns.sh"
#     nn_init                      # namespaces if the kernel lets us, else loopback ports
#     nn_node_start 1; nn_node_start 2
#     nn_cli 1 volume create v replica 2 "$(nn_brick 1 "$B1")" "$(nn_brick 2 "$B2")" force
#     nn_mount v "$KB_TMP/mnt"     # FUSE client in the root namespace
#     nn_mount_from 9 "$(nn_addr 1),$(nn_addr 2):/v" "$KB_TMP/mnt9"   # ... on another host (netns)
#     nn_kill 2; nn_start 2; nn_pause 1; nn_resume 1; nn_partition 2; nn_unpartition 2
#
# What it promises
#   - Namespace mode (NN_MODE=netns): node N is a kembard in network namespace kbnn-<pid>-N with
#     one interface eth0 = 198.51.100.N/24 (TEST-NET-2, RFC 5737), a veth whose root end is
#     enslaved to a private bridge kbnb<pid> holding 198.51.100.254/24. No default route exists in
#     a node namespace and nothing is forwarded: traffic never leaves the machine. Only one test
#     at a time on a machine may own that subnet (a lock under $KB_IT_ROOT, waited for up to 120 s).
#   - Loopback mode (NN_MODE=loopback): the same API over 127.0.0.1 ports (lib.sh's layout), used
#     when namespaces are unavailable (not root, no `ip netns`, the subnet in use, KB_NETNS=0).
#     Partitions are then emulated by SIGSTOP (said so in the log): a frozen node and a cut cable
#     look the same to its peers (no RST, no answers), not to the node itself.
#   - Node N listens on port KB_PORT_BASE+N in both modes, keeps its state in $KB_TMP/nodeN/ and is
#     recorded in $KB_TMP/pids/nodeN, so lib.sh's sweep and log collection apply unchanged.
#   - Faults: nn_kill (SIGKILL), nn_stop (SIGTERM), nn_start (again, same state dir and address),
#     nn_pause / nn_resume (SIGSTOP / SIGCONT), nn_partition / nn_unpartition (link of the node's
#     veth down / up: the node is cut from clients and every other node at once). Each is
#     idempotent and tolerant (a kill of a dead node is a no-op) so a random thrasher cannot trip
#     on its own bookkeeping; nn_state N says up|down|paused|partitioned.
#   - Crashes are seen: kembard runs under a small sh parent that records its exit status, so a
#     daemon that dies of a signal (or exits non-zero) without being killed -9 by the test, e.g.
#     on SIGTERM, is reported by nn_assert_no_crash, as are segfault lines of our pids in the
#     kernel log.
#   - Probes for tests: nn_bricks_online (status --json), nn_clients_connected (every replicate
#     child of every live mount is up, from the mounts' logs), nn_blamed (replicate changelogs on
#     the bricks: does any copy blame another?), nn_heal_total (heal info --json), nn_rss_kb,
#     nn_tool (a tests/tools program, built if make has not).
#   - Cleanup on any exit (runs before lib.sh's): paused nodes continued, links up, mounts
#     unmounted, node processes ended (SIGCONT before the kill), the test's own hooks run
#     (nn_atexit CMD: shell commands, last registered first), then veths, bridge and namespaces
#     deleted. Namespaces and links left by a test that was SIGKILLed (its pid gone)
#     are removed by the next nn_init.

NN_NET=198.51.100
NN_MODE=${NN_MODE:-}
NN_TAG=$$                  # names below carry the test shell's pid: stale ones can be told apart
NN_BR=kbnb$NN_TAG

nn__ns() { echo "kbnn-$NN_TAG-$1"; }
nn__veth() { echo "kbnv${NN_TAG}n$1"; }     # root end (<= 15 chars for pids up to 7 digits)
nn__peer() { echo "kbnp${NN_TAG}n$1"; }     # namespace end before it is renamed eth0

nn_host() { if [ "$NN_MODE" = netns ]; then echo "$NN_NET.$1"; else echo 127.0.0.1; fi; }
nn_port() { kb_port "$1"; }
nn_addr() { echo "$(nn_host "$1"):$(nn_port "$1")"; }
nn_brick() { echo "$(nn_addr "$1"):$2"; }    # nn_brick N PATH: the CLI spelling of a brick

# nn_cli N ARGS... / nn_cli_json N ARGS...: the CLI (root namespace) against node N.
# The root namespace is a cluster member: it signs with the cluster key every node was given
# (README, Security: a node joins by `kembar peer probe` with a token, or by receiving the key
# file before its first start, as here).
nn_key() { echo "$KB_TMP/nn/cluster.key"; }
nn_cli() {
    local n=$1; shift
    timeout -k 5 "$KB_TIMEOUT" "$KB_BIN/kembar" --server "$(nn_addr "$n")" --key-file "$(nn_key)" "$@" </dev/null 8>&-
}
nn_cli_json() {
    local n=$1; shift
    timeout -k 5 "$KB_TIMEOUT" "$KB_BIN/kembar" --server "$(nn_addr "$n")" --key-file "$(nn_key)" --json "$@" \
        </dev/null 8>&-
}

# ---------------------------------------------------------------------------------------------
# Set-up and teardown of the network.

nn__stale_sweep() {  # namespaces / links of earlier tests whose shell is gone
    local ns pid l
    for ns in $(ip netns list 2>/dev/null | awk '{print $1}'); do
        case "$ns" in kbnn-*-*) ;; *) continue ;; esac
        pid=${ns#kbnn-}; pid=${pid%%-*}
        [ "$pid" = "$NN_TAG" ] && continue
        kill -0 "$pid" 2>/dev/null && continue
        ip netns del "$ns" 2>/dev/null && echo "netns.sh: removed stale namespace $ns" >&2
    done
    for l in $(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1); do
        case "$l" in kbnb[0-9]*) pid=${l#kbnb} ;; kbnv[0-9]*n*|kbnp[0-9]*n*) pid=${l#kbn?}; pid=${pid%%n*} ;; *) continue ;; esac
        [ "$pid" = "$NN_TAG" ] && continue
        kill -0 "$pid" 2>/dev/null && continue
        ip link del "$l" 2>/dev/null && echo "netns.sh: removed stale link $l" >&2
    done
    return 0
}

nn__why_not_netns() {  # prints why namespace mode cannot be used; 1 if it can
    [ "${KB_NETNS:-1}" = 0 ] && { echo "KB_NETNS=0"; return 0; }
    [ "$(id -u)" = 0 ] || { echo "not root"; return 0; }
    command -v ip >/dev/null || { echo "no ip(8)"; return 0; }
    command -v nsenter >/dev/null || { echo "no nsenter(1)"; return 0; }
    # `ip -n NS` enters a mount namespace and does `mount --make-rslave /`, which fails with
    # EINVAL when / is not a mount point (a chroot, some containers): the nodes then run on
    # loopback ports instead. /proc/self/mountinfo lists / only when it is a mount point.
    nn__root_is_mount || { echo "/ is not a mount point (chroot?): ip -n cannot enter a namespace"; return 0; }
    local probe="kbnn-$NN_TAG-probe" err
    ip netns add "$probe" 2>/dev/null || { echo "ip netns add failed"; return 0; }
    if ! err=$(ip -n "$probe" link set lo up 2>&1); then
        ip netns del "$probe" 2>/dev/null
        echo "ip -n failed: ${err%%$'\n'*}"; return 0
    fi
    ip netns del "$probe" 2>/dev/null
    return 1
}

nn__root_is_mount() {  # is / a mount point of this process's mount namespace?
    local line f
    while IFS= read -r line; do
        read -r _ _ _ _ f _ <<<"$line"
        [ "$f" = / ] && return 0
    done </proc/self/mountinfo
    return 1
}

# nn_init: choose the mode, build the bridge, install the cleanup. Idempotent.
nn_init() {
    [ -n "${NN_READY:-}" ] && return 0
    local why
    mkdir -p "$KB_TMP/nn"
    if why=$(nn__why_not_netns); then
        NN_MODE=loopback
    else
        nn__stale_sweep
        exec 8>"$KB_IT_ROOT/netns.lock"
        if ! flock -w 120 8; then
            why="another test holds $NN_NET.0/24 ($KB_IT_ROOT/netns.lock)"
            NN_MODE=loopback
        elif ip -4 route show to match "$NN_NET.1" 2>/dev/null | grep -v '^default' | grep -q .; then
            why="$NN_NET.0/24 is already routed on this machine: $(ip -4 route show to match "$NN_NET.1" | grep -v '^default' | head -1)"
            NN_MODE=loopback
        else
            NN_MODE=netns
        fi
        [ "$NN_MODE" = netns ] || exec 8>&-
    fi
    trap nn__exit_trap EXIT
    [ -s "$(nn_key)" ] || (umask 077 && openssl rand -hex 32 >"$(nn_key)") || kb_fail "cannot make a cluster key"
    dmesg 2>/dev/null | wc -l >"$KB_TMP/nn/kmsg0" || echo 0 >"$KB_TMP/nn/kmsg0"
    if [ "$NN_MODE" = netns ]; then
        ip link add "$NN_BR" type bridge || kb_fail "cannot create bridge $NN_BR"
        echo "$NN_BR" >"$KB_TMP/nn/bridge"
        ip addr add "$NN_NET.254/24" dev "$NN_BR"
        ip link set "$NN_BR" up
        kb_log "netns: bridge $NN_BR $NN_NET.254/24; nodes get $NN_NET.N in namespace kbnn-$NN_TAG-N"
    else
        kb_log "netns: loopback mode ($why); partitions are emulated by SIGSTOP"
    fi
    NN_READY=1
}

nn__add_node_net() {  # namespace, veth pair and address of node N (once)
    local n=$1 ns veth peer
    [ "$NN_MODE" = netns ] || return 0
    ns=$(nn__ns "$n"); veth=$(nn__veth "$n"); peer=$(nn__peer "$n")
    [ -e "/run/netns/$ns" ] && return 0
    ip netns add "$ns" || kb_fail "ip netns add $ns"
    echo "$ns" >>"$KB_TMP/nn/namespaces"
    ip link add "$veth" type veth peer name "$peer" || kb_fail "ip link add $veth"
    echo "$veth" >>"$KB_TMP/nn/veths"
    ip link set "$peer" netns "$ns"
    ip -n "$ns" link set lo up
    ip -n "$ns" link set "$peer" name eth0
    ip -n "$ns" addr add "$NN_NET.$n/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip link set "$veth" master "$NN_BR"
    ip link set "$veth" up
}

nn__teardown() {
    local f p m
    # Frozen or cut-off nodes first: an unmount or a kill must not wait on them.
    for f in "$KB_TMP"/pids/node*; do
        [ -f "$f" ] || continue
        p=$(cat "$f" 2>/dev/null) && kb__cmdline_has "$p" "$KB_TMP" && kill -CONT "$p" 2>/dev/null
    done
    rm -f "$KB_TMP"/paused/* 2>/dev/null
    if [ "$NN_MODE" = netns ] && [ -f "$KB_TMP/nn/veths" ]; then
        while read -r f; do ip link set "$f" up 2>/dev/null; done <"$KB_TMP/nn/veths"
    fi
    # Background helpers of the test (writers, fio): they hold files on the mounts.
    for p in $(jobs -p); do kill -TERM "$p" 2>/dev/null; done
    for f in "$KB_TMP"/mounts/*; do
        [ -f "$f" ] || continue
        m=$(sed -n 1p "$f")
        kb__force_umount "$m" || echo "netns.sh: could not unmount $m" >&2
        rm -f "$f"
    done
    for f in "$KB_TMP"/pids/node*; do
        [ -f "$f" ] || continue
        p=$(cat "$f" 2>/dev/null) && kb__kill_pid_checked "$p" "$KB_TMP"
    done
    # Hooks a test registered (a loop device to detach, a mount of its own): last in, first out.
    if [ -f "$KB_TMP/nn/atexit" ]; then
        tac "$KB_TMP/nn/atexit" | while read -r f; do timeout -k 2 10 sh -c "$f" </dev/null || true; done
        rm -f "$KB_TMP/nn/atexit"
    fi
    if [ -f "$KB_TMP/nn/veths" ]; then
        while read -r f; do ip link del "$f" 2>/dev/null; done <"$KB_TMP/nn/veths"
    fi
    if [ -f "$KB_TMP/nn/namespaces" ]; then
        while read -r f; do ip netns del "$f" 2>/dev/null; done <"$KB_TMP/nn/namespaces"
    fi
    [ -f "$KB_TMP/nn/bridge" ] && ip link del "$(cat "$KB_TMP/nn/bridge")" 2>/dev/null
    rm -f "$KB_TMP/nn/veths" "$KB_TMP/nn/namespaces" "$KB_TMP/nn/bridge"
    exec 8>&-   # the subnet lock
    return 0
}

nn__exit_trap() {
    local rc=$?
    trap - ERR
    set +e
    [ "$rc" -ne 0 ] && kb__copy_logs   # while the nodes' last words are still complete
    nn__teardown
    (exit "$rc")
    kb__cleanup
}

# ---------------------------------------------------------------------------------------------
# Nodes.

nn__ready() {
    kb__node_alive "$1" || return 1
    timeout -k 2 3 "$KB_BIN/kembar" --server "$(nn_addr "$1")" --key-file "$(nn_key)" volume list \
        </dev/null >/dev/null 2>&1 8>&-
}

# nn_start N [EXTRA KEMBARD ARGS...]: start (or restart after a kill) node N; returns once it
# answers the CLI. A node already running is left alone.
#
# kembard runs under a small sh parent that records "PID STATUS" in $KB_TMP/nodeN/exits when it
# ends: a daemon that dies of a signal on SIGTERM, or of anything while nobody killed it, is a
# crash even when the kernel log says nothing (nn_assert_no_crash). Faults are sent to kembard
# itself (its pid in $KB_TMP/pids/nodeN), never to the parent.
nn_start() {
    local n=$1 dir wpid pid port; shift
    nn_init
    kb__need_bin kembard
    kb__need_bin kembar
    if kb__node_alive "$n"; then return 0; fi
    dir=$(kb_node_dir "$n"); port=$(nn_port "$n")
    mkdir -p "$dir/state"
    [ -e "$dir/state/cluster.key" ] || install -m 600 "$(nn_key)" "$dir/state/cluster.key"
    nn__add_node_net "$n"
    local -a pre=()
    if [ "$NN_MODE" = netns ]; then
        pre=(nsenter "--net=/run/netns/$(nn__ns "$n")" --)
    elif kb__port_busy "$port"; then
        kb_fail "port $port is already in use (ss -ltnp 'sport = :$port')"
    fi
    rm -f "$dir/kembard.pid"
    "${pre[@]}" sh -c 'd=$1; shift; "$@" & p=$!; echo $p >"$d/kembard.pid"; wait $p; echo "$p $?" >>"$d/exits"' \
        nn-wrap "$dir" "$KB_BIN/kembard" --listen "$(nn_addr "$n")" --state-dir "$dir/state" \
        --log-file "$dir/kembard.log" --log-level "${NN_LOG_LEVEL:-debug}" "$@" \
        </dev/null >>"$dir/kembard.out" 2>&1 8>&- 9>&- &
    wpid=$!
    kb_wait_until 5 test -s "$dir/kembard.pid" || kb_fail "node $n: kembard did not start (wrapper pid $wpid)"
    pid=$(cat "$dir/kembard.pid")
    echo "$pid" >"$KB_TMP/pids/node$n"
    echo "$wpid" >"$KB_TMP/pids/wrap$n"
    echo "$pid" >>"$KB_TMP/nn/started"
    if ! kb_wait_until 15 nn__ready "$n"; then
        echo "node $n: kembard output:" >&2; kb__log_tail "$dir/kembard.out"
        echo "node $n: kembard log:" >&2; kb__log_tail "$dir/kembard.log"
        kb_fail "node $n (pid $pid, $(nn_addr "$n")) did not answer 'volume list' within 15 s"
    fi
    [ -f "$KB_TMP/nn/part$n" ] && nn__link "$n" down
    kb_log "node $n up: pid $pid $(nn_addr "$n")${NN_MODE:+ ($NN_MODE)}"
}
nn_node_start() { nn_start "$@"; }

nn__exit_status() {  # nn__exit_status N PID: the recorded exit status of that kembard ("?" if none)
    local st
    kb_wait_until 5 grep -q "^$2 " "$(kb_node_dir "$1")/exits" || { echo "?"; return 0; }
    st=$(awk -v p="$2" '$1 == p {print $2}' "$(kb_node_dir "$1")/exits" | tail -1)
    echo "${st:-?}"
}

nn_kill() {  # SIGKILL (a crash); no-op if the node is not running
    local n=$1 pid
    pid=$(kb_node_pid "$n") || return 0
    kb__node_alive "$n" || { rm -f "$KB_TMP/pids/node$n"; return 0; }
    echo "$pid" >>"$KB_TMP/nn/killed"
    kill -KILL "$pid" 2>/dev/null
    kb_wait_until 10 kb__pid_gone "$pid" "$KB_TMP/node$n/" || kb_fail "node $n (pid $pid) survived SIGKILL"
    rm -f "$KB_TMP/pids/node$n" "$KB_TMP/paused/node$n"
    kb_log "node $n killed -9 (pid $pid)"
}

# nn_stop N: SIGTERM; the daemon must exit within 10 s, with status 0 (a crash on the way out
# is recorded for nn_assert_no_crash and logged, the caller goes on).
nn_stop() {
    local n=$1 pid st
    kb__node_alive "$n" || return 0
    pid=$(kb_node_pid "$n")
    kill -CONT "$pid" 2>/dev/null
    rm -f "$KB_TMP/paused/node$n"
    kill -TERM "$pid"
    if ! kb_wait_until 10 kb__pid_gone "$pid" "$KB_TMP/node$n/"; then
        echo "$pid" >>"$KB_TMP/nn/killed"
        kill -KILL "$pid" 2>/dev/null
        rm -f "$KB_TMP/pids/node$n"
        nn__note_crash "node $n (kembard pid $pid) did not exit within 10 s of SIGTERM"
        kb_fail "node $n (pid $pid) did not exit within 10 s of SIGTERM"
    fi
    rm -f "$KB_TMP/pids/node$n"
    st=$(nn__exit_status "$n" "$pid")
    kb_log "node $n stopped (pid $pid, exit $st)"
    if [ "$st" != 0 ] && [ "$st" != "?" ]; then
        nn__note_crash "node $n (kembard pid $pid) exited with status $st on SIGTERM$( [ "$st" -gt 128 ] && echo " (signal $((st - 128)))")"
    fi
    nn__crash_check "$pid" "node $n, on SIGTERM"
}

nn__note_crash() {
    echo "$*" >>"$KB_TMP/nn/crashes"
    kb_log "CRASH: $*"
}

# Crashes of our daemons: exit statuses recorded by the wrappers (any non-zero status of a
# kembard we did not kill -9) and the kernel log (segfault lines of our pids newer than nn_init).
nn__kmsg_new() { dmesg 2>/dev/null | tail -n +"$(( $(cat "$KB_TMP/nn/kmsg0" 2>/dev/null || echo 0) + 1 ))"; }
nn__crashes() {  # kernel log lines about faults of the kembard pids given as arguments
    nn__kmsg_new | awk -v pids=" $* " '/kembard\[[0-9]+\]: (segfault|trap|general protection)/ {
        p = $0; sub(/.*kembard\[/, "", p); sub(/\].*/, "", p); if (index(pids, " " p " ")) print }'
}
nn__crash_check() {  # nn__crash_check PID WHAT
    local line
    line=$(nn__crashes "$1" | tail -1)
    [ -z "$line" ] || nn__note_crash "kembard pid $1 ($2): $line"
}
# nn_assert_no_crash: no kembard this test started died on its own (kill -9 excepted).
nn_assert_no_crash() {
    local f line pid st bad=""
    for f in "$KB_TMP"/node*/exits; do
        [ -f "$f" ] || continue
        while read -r pid st; do
            [ "$st" = 0 ] && continue
            [ "$st" = 137 ] && grep -qx "$pid" "$KB_TMP/nn/killed" 2>/dev/null && continue
            line="kembard pid $pid ($(basename "$(dirname "$f")")) exited with status $st"
            grep -qF "pid $pid)" "$KB_TMP/nn/crashes" 2>/dev/null || bad+="$line"$'\n'
        done <"$f"
    done
    if [ -f "$KB_TMP/nn/started" ]; then
        # shellcheck disable=SC2046
        bad+=$(nn__crashes $(cat "$KB_TMP/nn/started"))
    fi
    [ -f "$KB_TMP/nn/crashes" ] && bad=$(cat "$KB_TMP/nn/crashes")$'\n'"$bad"
    bad=$(sed '/^$/d' <<<"$bad" | sort -u)
    [ -z "$bad" ] || kb_fail "kembard crashed:"$'\n'"$bad"
}

nn_restart() { nn_stop "$1"; nn_start "$@"; }

nn_pause() {
    local n=$1 pid
    pid=$(kb_node_pid "$n") || return 0
    kb__node_alive "$n" || return 0
    kill -STOP "$pid"
    echo "$pid" >"$KB_TMP/paused/node$n"
    kb_log "node $n paused (SIGSTOP, pid $pid)"
}

nn_resume() {
    local n=$1 pid
    [ -f "$KB_TMP/paused/node$n" ] || return 0
    pid=$(cat "$KB_TMP/paused/node$n")
    kill -CONT "$pid" 2>/dev/null
    rm -f "$KB_TMP/paused/node$n"
    kb_log "node $n resumed (SIGCONT, pid $pid)"
}

nn__link() { ip link set "$(nn__veth "$1")" "$2"; }

# nn_partition N: cut node N from every client and node (its cable is pulled); the process runs on.
nn_partition() {
    local n=$1
    [ -f "$KB_TMP/nn/part$n" ] && return 0
    touch "$KB_TMP/nn/part$n"
    if [ "$NN_MODE" = netns ]; then
        nn__link "$n" down
        kb_log "node $n partitioned (link $(nn__veth "$n") down)"
    else
        nn_pause "$n"
        kb_log "node $n partitioned (emulated: SIGSTOP)"
    fi
}

nn_unpartition() {
    local n=$1
    [ -f "$KB_TMP/nn/part$n" ] || return 0
    rm -f "$KB_TMP/nn/part$n"
    if [ "$NN_MODE" = netns ]; then
        nn__link "$n" up
        kb_log "node $n reconnected (link $(nn__veth "$n") up)"
    else
        nn_resume "$n"
    fi
}

# nn_state N: up | down | paused | partitioned
nn_state() {
    if ! kb__node_alive "$1"; then echo down
    elif [ -f "$KB_TMP/paused/node$1" ]; then echo paused
    elif [ -f "$KB_TMP/nn/part$1" ]; then echo partitioned
    else echo up; fi
}

# nn_heal_all N...: end every fault on the listed nodes (start, resume, reconnect).
nn_heal_all() {
    local n
    for n in "$@"; do
        nn_unpartition "$n"
        nn_resume "$n"
        kb__node_alive "$n" || nn_start "$n"
    done
}

# nn_atexit CMD: run shell command CMD at cleanup, after the nodes are gone (detach a loop device).
nn_atexit() { mkdir -p "$KB_TMP/nn"; printf '%s\n' "$1" >>"$KB_TMP/nn/atexit"; }

# nn_rss_kb N: resident set of node N's kembard, KiB.
nn_rss_kb() {
    local pid
    pid=$(kb_node_pid "$1") || return 1
    awk '/^VmRSS:/ {print $2}' "/proc/$pid/status"
}

# ---------------------------------------------------------------------------------------------
# Volumes and mounts.

# nn_bricks_online N VOL PATH...: do all listed bricks show online in node N's status --json?
nn_bricks_online() {
    local n=$1 vol=$2 st; shift 2
    st=$(nn_cli_json "$n" volume status "$vol" 2>/dev/null | kb_json_bricks "$@") || return 1
    ! awk '$2 != "1" { bad = 1 } END { exit !bad }' <<<"$st"
}

# nn_mount VOL MNT [OPTS] [NODES...]: mount through kembar-fuse from the root namespace; the spec
# lists every node given (default: every node started so far) as volfile servers.
nn_mount() {
    local vol=$1 mnt=$2 opts=${3:-} n spec=""; shift 2; [ $# -gt 0 ] && shift
    local -a nodes=("$@")
    if [ ${#nodes[@]} -eq 0 ]; then
        for n in $(ls "$KB_TMP" | sed -n 's/^node\([0-9]*\)$/\1/p' | sort -n); do nodes+=("$n"); done
    fi
    for n in "${nodes[@]}"; do spec+="${spec:+,}$(nn_addr "$n")"; done
    kb_mount_spec "$spec:/$vol" "$mnt" "$opts" 8>&-
}

# nn_mount_from N SPEC MNT [OPTS]: kembar-fuse started in node N's network namespace (netns mode;
# N may be a namespace with no node in it, made by nn__add_node_net N: another host), its mount in
# ours; recorded like kb_mount_spec's, so cleanup unmounts it and ends the client, and
# nn_clients_connected reads its log. nn_partition N / nn_unpartition N cut that host's cable.
nn_mount_from() {
    local n=$1 spec=$2 mnt=$3 opts=${4:-} key pid rc=0
    [ "$NN_MODE" = netns ] || kb_fail "nn_mount_from: needs namespaces (mode $NN_MODE)"
    nn__add_node_net "$n"
    mkdir -p "$mnt"
    key=$(echo "$mnt" | md5sum | cut -c1-12)
    echo "$mnt" >"$KB_TMP/mounts/$key"
    timeout -k 5 30 nsenter "--net=/run/netns/$(nn__ns "$n")" -- "$KB_BIN/kembar-fuse" \
        -o "log-file=$KB_TMP/fuse-$(basename "$mnt")-$key.log,log-level=${KB_FUSE_LOG_LEVEL:-info}${opts:+,$opts}" \
        "$spec" "$mnt" </dev/null >"$KB_TMP/mount-$key.out" 2>"$KB_TMP/mount-$key.err" 8>&- 9>&- || rc=$?
    [ "$rc" -eq 0 ] || { kb__log_tail "$KB_TMP/mount-$key.err"; kb_fail "kembar-fuse in node $n's namespace: exit $rc"; }
    kb__is_mounted "$mnt" || kb_fail "kembar-fuse exited 0 but $mnt is not a mount point"
    pid=$(kb__fuse_pid_for "$mnt") && echo "$pid" >"$KB_TMP/pids/fuse-$key"
    kb_log "mounted $spec on $mnt from node $n's namespace (kembar-fuse pid ${pid:-?})"
}

# nn_heal_total N VOL: total entries pending heal (from `volume heal VOL info --json`), or "?"
nn_heal_total() {
    nn_cli_json "$1" volume heal "$2" info 2>/dev/null | "$KB_PY" -c '
import json, sys
try:
    d = json.load(sys.stdin)
except Exception:
    print("?"); sys.exit(0)
for k in ("total_entries", "total"):
    if isinstance(d, dict) and k in d:
        print(int(d[k])); sys.exit(0)
print("?")'
}

# nn_tool NAME: path of a test tool (tests/tools/NAME.c) built against the current library:
# build/tests/tools/NAME when make built it and it is newer than its source, else compiled here
# into $KB_TMP/tools (a second or two).
nn_tool() {
    local name=$1 src=$KB_REPO/tests/tools/$1.c out
    out=$KB_BIN/tests/tools/$name
    if [ -x "$out" ] && [ "$out" -nt "$src" ] && [ "$out" -nt "$KB_BIN/libkembar.a" ]; then
        echo "$out"; return 0
    fi
    out=$KB_TMP/tools/$name
    if [ ! -x "$out" ]; then
        mkdir -p "$KB_TMP/tools"
        [ -f "$KB_BIN/libkembar.a" ] || kb_fail "$KB_BIN/libkembar.a is missing: run make"
        # shellcheck disable=SC2046
        cc -std=gnu11 -Wall -Wextra -Werror -Wno-unused-parameter -Wshadow -Wstrict-prototypes \
            -I"$KB_REPO" -D_GNU_SOURCE -D_FILE_OFFSET_BITS=64 -O2 -g -o "$out" "$src" "$KB_BIN/libkembar.a" \
            $(pkg-config --cflags --libs fuse3 uuid libcrypto libssl libevent libevent_pthreads \
              libevent_openssl liburing) -lpthread -lm >"$KB_TMP/tools/$name.build.log" 2>&1 ||
            { cat "$KB_TMP/tools/$name.build.log" >&2; kb_fail "cannot build $name"; }
    fi
    echo "$out"
}

# nn_kv KEY LINE: the value of KEY in a "key=value ..." line (kb-pattern's summaries).
nn_kv() { tr ' ' '\n' <<<"$2" | sed -n "s/^$1=//p" | head -1; }

# nn_blamed BRICK...: objects on the given brick directories whose replicate changelog
# (trusted.kembar.cl, xlators/changelog.h: 8-byte header, then int32 BE [17][3]) has a non-zero
# PENDING row (rows 1..16: this copy blames another replica). The dirty row (0) is ignored: it is
# set while any write is in flight. Prints "COUNT first-few-paths". 0 when every copy agrees that
# no replica missed anything, i.e. no heal is owed.
nn_blamed() {
    "$KB_PY" - "$@" <<'PYEOF'
import os, struct, sys
count, names = 0, []
for brick in sys.argv[1:]:
    for root, dirs, files in os.walk(brick):
        if root == brick and ".kembar" in dirs:
            dirs.remove(".kembar")
        for n in dirs + files + ([""] if root == brick else []):
            p = os.path.join(root, n) if n else root
            try:
                v = os.getxattr(p, "trusted.kembar.cl", follow_symlinks=False)
            except OSError:
                continue
            if len(v) < 8 + 204:
                continue
            m = struct.unpack(">51i", v[8:8 + 204])
            if any(m[3:]):
                count += 1
                if len(names) < 3:
                    names.append(os.path.relpath(p, brick))
print(count, " ".join(names))
PYEOF
}

# nn_clients_connected: every replicate child of every live kembar-fuse mount of this test is up,
# by the last "child I (NAME) is up|down" line of each mount's log.
nn_clients_connected() {
    local k f
    for k in "$KB_TMP"/mounts/*; do
        [ -f "$k" ] || continue
        f=$KB_TMP/fuse-$(basename "$(sed -n 1p "$k")")-$(basename "$k").log
        [ -f "$f" ] || continue
        awk '/\] child [0-9]+ \(.*\) is (up|down)$/ {
                 k = $0; sub(/ is (up|down)$/, "", k); sub(/^.*\[/, "[", k)
                 st[k] = ($NF == "up") }
             END { for (k in st) if (!st[k]) exit 1 }' "$f" || return 1
    done
    return 0
}
