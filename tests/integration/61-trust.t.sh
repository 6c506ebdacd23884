#!/usr/bin/env bash
# 61-trust — only members of the cluster run management commands, and revoking a client's access
# bites at once (DESIGN §10 "Trust"; issue 19; server/trust.c, server/mgmt_trust.c, rpc/auth.h).
# Nodes 1 and 2 start with the cluster key netns.sh hands out (the root namespace's CLI, nn_cli,
# signs with it: it is a member); node 3 starts with a key of its own (a new node).
#   - join and leave: a CLI on node 3's host (its namespace, 198.51.100.3) signed with node 3's
#     key is refused by node 1; `peer token` on node 3 (root, its local socket), a wrong token and
#     then the right one via `peer probe` from node 1; node 3's key file is now node 1's and a CLI
#     signed with it runs create/start/set/status/stop/delete; the token does not work twice;
#     `peer detach` is refused while node 3 holds bricks, then detaches it: its key is refused by
#     nodes 1 and 2, while 1 and 2 (rekeyed: node 1 knows node 2 from volume rv) still work
#     together (create/start/stop/delete across both, the CLI now signing with the new key);
#   - revocation: a replica 2 volume on nodes 1 and 2, one client in the root namespace
#     (198.51.100.254) running fio, one in node 3's namespace (198.51.100.3); `auth.allow
#     198.51.100.254`: within 5 s the second client's next write fails (EIO/ENOTCONN), it cannot
#     mount again ("not allowed"), fio on the first sees no error, the nodes log "no longer
#     allowed" for it (not for the allowed one). Not asserted: the nodes' own self-heal clients
#     (from 198.51.100.1/.2) are cut off by that auth.allow too;
#   - the local socket <state-dir>/kembard.sock serves root, refuses anyone else;
#   - outsiders (last: they get banned): every management verb (volume create, set auth.allow
#     '*', stop, delete, add-brick, replace-brick, heal, status; peer detach, peer token) from the
#     root namespace WITHOUT a key file and from another host (a namespace with no node,
#     198.51.100.9) signed with a wrong key, against nodes 1 and 2: each refused with one line,
#     non-zero exit; every node's state (volume definitions, cluster key, peers) byte-identical
#     before and after; the node logs name the address, and the ban after 5 failures.
#     The verbs go to node 1 in order and to node 2 in reverse, so each one meets the membership
#     check itself (not the ban) on one node: a node bans an address at its 5th failure.
# Loopback mode (netns.sh could not make namespaces): root over loopback is trusted, so the
# outsider is emulated by user nobody (setpriv --reuid 65534) over loopback, with the same
# commands; both outsiders then share 127.0.0.1, so only the first 5 refusals at a node must be
# the membership check (the rest may be the ban). Revocation needs two client addresses: skipped
# (logged) in loopback mode.
# kb-requires: fuse, root
set -eu
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source=tests/integration/netns.sh
. "$(dirname "$0")/netns.sh"

nn_init
nn_start 1; nn_start 2

# Node 3: a new node with a key of its own (made here, before its first start, so nn_start does
# not give it the shared one). nn_start's readiness probe signs with nn_key: node 3's own key
# for that one start, or node 3 would count our probes as failures (and ban us).
K3=$KB_TMP/node3/state/cluster.key
mkdir -p "$KB_TMP/node3/state"
(umask 077 && openssl rand -hex 32 >"$K3")
SHARED_KEY=$(nn_key)
nn_key() { echo "$K3"; }
nn_start 3
nn_key() { echo "$SHARED_KEY"; }

A1=$(nn_addr 1); A2=$(nn_addr 2); A3=$(nn_addr 3)
SOCK1=$KB_TMP/node1/state/kembard.sock
SOCK3=$KB_TMP/node3/state/kembard.sock
NOBODY=(setpriv --reuid=65534 --regid=65534 --clear-groups)

# keyfile_for FILE: a copy of the key FILE that the caller of h3cli can read (0600, its own).
keyfile_for() {
    local f
    mkdir -p "$KB_TMP/keys"
    chmod 755 "$KB_TMP/keys"
    f=$(mktemp "$KB_TMP/keys/key.XXXX")
    cat "$1" >"$f"
    chmod 600 "$f"
    [ "$NN_MODE" = netns ] || chown 65534:65534 "$f"
    echo "$f"
}
# h3cli KEYFILE N ARGS...: the CLI on node 3's host, signed with KEYFILE, against node N: in
# netns mode from node 3's namespace (198.51.100.3, not loopback even to node 3 itself); in
# loopback mode as nobody (root over loopback would be trusted whatever the key).
# h3argv KEYFILE N: that command line (without ARGS) in the array H3, for kb_expect_fail.
h3argv() {
    local kf
    kf=$(keyfile_for "$1")
    H3=(env -u KEMBAR_KEY_FILE -u KEMBAR_SERVER)
    if [ "$NN_MODE" = netns ]; then
        H3=(nsenter "--net=/run/netns/$(nn__ns 3)" -- "${H3[@]}")
    else
        H3+=("${NOBODY[@]}")
    fi
    H3+=("$KB_BIN/kembar" --server "$(nn_addr "$2")" --key-file "$kf")
}
h3cli() {
    h3argv "$1" "$2"; shift 2
    timeout -k 5 "$KB_TIMEOUT" "${H3[@]}" "$@" </dev/null 8>&-
}
h3addr() { if [ "$NN_MODE" = netns ]; then echo "$NN_NET.3"; else echo 127.0.0.1; fi; }

# node_log_has N ERE: does node N's log have a line matching ERE?
node_log_has() { grep -Eq -- "$2" "$(kb_node_log "$1")"; }

# A replica 2 volume on nodes 1 and 2 (the revocation scenario uses it; it also makes node 2 a
# node that node 1 knows of, so a detach rekeys it).
RV1=$(kb_brick_path 1 rv); RV2=$(kb_brick_path 2 rv)
nn_cli 1 volume create rv replica 2 "$(nn_brick 1 "$RV1")" "$(nn_brick 2 "$RV2")" force >&2
nn_cli 1 volume set rv network.ping-timeout 2 >&2
nn_cli 1 volume start rv >&2
kb_wait_until 15 nn_bricks_online 1 rv "$RV1" "$RV2" || kb_fail "bricks of rv not online"

# ---------------------------------------------------------------------------------------------

join_and_leave() {
    local out tok wrong j1 j3
    local -a C1=("$KB_BIN/kembar" --server "$A1" --key-file "$(nn_key)")   # nn_cli 1, for kb_expect_fail
    # Not a member yet: node 3's key means nothing to node 1.
    h3argv "$K3" 1
    KB_EXPECT_RE='not a member' kb_expect_fail 20 "node 3's own key against node 1" "${H3[@]}" volume status
    node_log_has 1 "\[trust\] management command from $(h3addr) refused: not a member" ||
        kb_fail "node 1's log has no refusal naming $(h3addr)"

    # The documented join step: a token on the new node (root there, its local socket) ...
    out=$(kb_t 20 "$KB_BIN/kembar" --server "unix:$SOCK3" peer token </dev/null)
    tok=$(head -1 <<<"$out")
    kb_log "peer token on node 3: $out"
    kb_assert_match '^[0-9a-f]{32}$' "$tok" "the first line of 'peer token' is the token"
    # ... a wrong one is refused and burns nothing ...
    wrong=$(openssl rand -hex 16)
    KB_EXPECT_RE='token' kb_expect_fail 20 "peer probe with a wrong token" "${C1[@]}" peer probe "$A3" "$wrong"
    kb_assert_ne "$(kb_sha "$KB_TMP/node1/state/cluster.key")" "$(kb_sha "$K3")" "node 3's key after a wrong token"
    # ... the right one on a member hands the key over.
    out=$(nn_cli 1 peer probe "$A3" "$tok" 2>&1) || kb_fail "peer probe $A3 TOKEN: $out"
    kb_log "peer probe: $out"
    kb_assert_same_file "$KB_TMP/node1/state/cluster.key" "$K3"
    out=$(h3cli "$K3" 1 volume status 2>&1) || kb_fail "node 3's key against node 1 after the join: $out"
    KB_EXPECT_RE='token' kb_expect_fail 20 "the same token a second time" "${C1[@]}" peer probe "$A3" "$tok"
    out=$(nn_cli 1 peer list 2>&1) || kb_fail "peer list: $out"
    kb_log "peer list on node 1:"$'\n'"$out"
    kb_assert_match "$A3 +member" "$out" "node 3 is listed as a member"

    # The new member runs management commands: a volume across nodes 1 and 3, made through node 3.
    j1=$(kb_brick_path 1 j3); j3=$(kb_brick_path 3 j3)
    h3cli "$K3" 3 volume create j3 replica 2 "$(nn_brick 1 "$j1")" "$(nn_brick 3 "$j3")" force >&2
    h3cli "$K3" 3 volume start j3 >&2
    h3cli "$K3" 3 volume set j3 network.ping-timeout 3 >&2
    kb_wait_until 15 nn_bricks_online 1 j3 "$j1" "$j3" || kb_fail "bricks of j3 not online"
    h3cli "$K3" 1 volume status j3 >&2
    # A node that holds bricks is not detached.
    KB_EXPECT_RE='holds bricks' kb_expect_fail 20 "detach of a node with bricks" "${C1[@]}" peer detach "$A3"
    h3cli "$K3" 3 volume stop j3 >&2
    h3cli "$K3" 3 volume delete j3 >&2

    # Detach: node 3 is out, nodes 1 and 2 get a new key.
    out=$(nn_cli 1 peer detach "$A3" 2>&1) || kb_fail "peer detach $A3: $out"
    kb_log "peer detach: $out"
    kb_assert_nomatch 'warning' "$out" "every other member was rekeyed"
    kb_assert_same_file "$KB_TMP/node1/state/cluster.key" "$KB_TMP/node2/state/cluster.key"
    kb_assert_ne "$(kb_sha "$KB_TMP/node1/state/cluster.key")" "$(kb_sha "$K3")" "node 3's key after the detach"
    h3argv "$K3" 1
    KB_EXPECT_RE='not a member' kb_expect_fail 20 "detached node 3's key against node 1" "${H3[@]}" volume status
    h3argv "$K3" 2
    KB_EXPECT_RE='not a member' kb_expect_fail 20 "detached node 3's key against node 2" "${H3[@]}" volume status
    # The operator's CLI on a member signs with the member's (new) key file.
    install -m 600 "$KB_TMP/node1/state/cluster.key" "$(nn_key)"
    local b1 b2
    b1=$(kb_brick_path 1 after); b2=$(kb_brick_path 2 after)
    nn_cli 1 volume create after replica 2 "$(nn_brick 1 "$b1")" "$(nn_brick 2 "$b2")" force >&2
    nn_cli 2 volume start after >&2
    kb_wait_until 15 nn_bricks_online 1 after "$b1" "$b2" || kb_fail "bricks of 'after' not online"
    nn_cli 2 volume stop after >&2
    nn_cli 1 volume delete after >&2
}

# ---------------------------------------------------------------------------------------------

# py_write PATH OFF: one O_DIRECT 4 KiB write + fsync; prints "ok" or the errno name.
py_write() {
    kb_t 20 "$KB_PY" - "$@" <<'EOF'
import errno, mmap, os, sys
buf = mmap.mmap(-1, 4096); buf.write(b"w" * 4096)
try:
    fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_DIRECT, 0o644)
    os.pwritev(fd, [buf], int(sys.argv[2])); os.fsync(fd); os.close(fd)
    print("ok")
except OSError as e:
    print(errno.errorcode.get(e.errno, e.errno))
EOF
}

revocation() {
    if [ "$NN_MODE" != netns ]; then
        kb_log "SKIPPED: revocation needs two client addresses (netns mode); loopback mode has one"
        return 0
    fi
    command -v fio >/dev/null || kb_fail "fio is missing (package fio)"
    local ma=$KB_TMP/mnt-a mb=$KB_TMP/mnt-b mb2=$KB_TMP/mnt-b2 fpid t0 t1 got="" i fio_rc=0 key
    local spec="$A1,$A2:/rv"
    nn_mount rv "$ma" "" 1 2
    nn_mount_from 3 "$spec" "$mb"
    kb_assert_eq ok "$(py_write "$ma/a" 0)" "write through the root namespace's client"
    kb_assert_eq ok "$(py_write "$mb/b" 0)" "write through node 3's namespace's client"
    kb_wait_until 5 test -s "$RV2/b" || kb_fail "b did not reach brick 2"

    fio --name=trust --filename="$ma/fio.img" --size=16M --rw=randwrite --bs=4k --direct=1 \
        --ioengine=psync --time_based --runtime=10 --output-format=json \
        --output="$KB_TMP/fio.json" >"$KB_TMP/fio.out" 2>&1 &
    fpid=$!
    sleep 2
    nn_cli 1 volume set rv auth.allow "$NN_NET.254" >&2
    t0=$(date +%s%N)
    for i in $(seq 1 50); do
        got=$(py_write "$mb/b" $((i * 4096)))
        [ "$got" = ok ] || break
        sleep 0.1
    done
    t1=$(( ($(date +%s%N) - t0) / 1000000 ))
    kb_log "node 3's client, first write after the change: $got after ${t1} ms"
    kb_assert_match '^(EIO|ENOTCONN)$' "$got" "a write from an address auth.allow no longer lists"
    kb_assert_le "$t1" 5000 "ms until the revoked client's write failed"
    # It cannot come back.
    key=$(echo "$mb2" | md5sum | cut -c1-12)
    mkdir -p "$mb2"; echo "$mb2" >"$KB_TMP/mounts/$key"
    KB_EXPECT_RE='not allowed' kb_expect_fail 20 "remount from node 3's namespace" \
        nsenter "--net=/run/netns/$(nn__ns 3)" -- "$KB_BIN/kembar-fuse" "$spec" "$mb2"
    # The allowed client never noticed.
    wait "$fpid" || fio_rc=$?
    kb_assert_eq 0 "$fio_rc" "fio exit status: $(tail -5 "$KB_TMP/fio.out")"
    kb_assert_eq "0 0" "$("$KB_PY" -c '
import json, sys
j = json.load(open(sys.argv[1]))["jobs"][0]
print(j["error"], 0 if j["write"]["io_bytes"] > 0 else 1)' "$KB_TMP/fio.json")" "fio error / bytes written"
    kb_log "fio through the allowed client: $("$KB_PY" -c '
import json, sys
w = json.load(open(sys.argv[1]))["jobs"][0]["write"]
print("%d MiB written, %.0f IOPS" % (w["io_bytes"] >> 20, w["iops"]))' "$KB_TMP/fio.json")"
    kb_assert_eq ok "$(py_write "$ma/a" 8192)" "write through the allowed client after the change"
    local n
    for n in 1 2; do
        node_log_has "$n" "client $NN_NET\.3 .*no longer allowed" ||
            kb_fail "node $n's log has no 'client $NN_NET.3 ... no longer allowed' line"
    done
    grep -h 'no longer allowed' "$(kb_node_log 1)" "$(kb_node_log 2)" | sed 's/^/    /' >&2
    for n in 1 2; do
        ! node_log_has "$n" "client $NN_NET\.254 .*no longer allowed" || kb_fail "node $n cut the allowed client off"
        # the nodes' own heal daemons sign their handshakes with the cluster key: auth.allow is not for them
        ! node_log_has "$n" "shd-client-[0-9]*) of volume rv disconnected" || kb_fail "node $n cut a heal daemon off"
    done
    kb_assert_eq 0 "$(nn_heal_total 1 rv)" "heal info of rv (the heal daemons still reach every brick)"
    kb_umount "$ma"
    kb_umount "$mb"
}

# ---------------------------------------------------------------------------------------------

local_socket() {
    local out
    out=$(kb_t 20 "$KB_BIN/kembar" --server "unix:$SOCK1" volume list </dev/null 2>&1) ||
        kb_fail "root on the local socket: $out"
    kb_assert_match '(^|[[:space:]])rv($|[[:space:]])' "$out" "volume list through the local socket"
    KB_EXPECT_RE='permission denied|root' kb_expect_fail 20 "nobody on the local socket" \
        env -u KEMBAR_KEY_FILE "${NOBODY[@]}" "$KB_BIN/kembar" --server "unix:$SOCK1" volume list
    local mode
    mode=$(stat -c %a "$SOCK1")
    kb_assert_eq 600 "$mode" "mode of $SOCK1"
}

# ---------------------------------------------------------------------------------------------

# state_sig: sha256 of every file in every node's state directory (volume definitions under
# vols/, the cluster key, the peers file), one line each.
state_sig() {
    local n
    for n in 1 2 3; do
        (cd "$KB_TMP/node$n/state" && find . -type f | LC_ALL=C sort | xargs -r sha256sum | sed "s|^|node$n |")
    done
}

# The outsider's verbs; node 1 gets them in this order, node 2 in reverse.
verbs() {  # verbs N: one command per line, words separated by tabs (N: the node it goes to)
    local other=$(( $1 == 1 ? 2 : 1 ))
    printf '%s\n' \
        "volume	create	evil	replica	2	$(nn_brick 1 /tmp/evil1)	$(nn_brick 2 /tmp/evil2)	force" \
        "volume	set	rv	auth.allow	*" \
        "volume	stop	rv	force" \
        "volume	delete	rv" \
        "volume	add-brick	rv	$(nn_brick 1 /tmp/evil3)	$(nn_brick 2 /tmp/evil4)	force" \
        "volume	replace-brick	rv	$(nn_brick 2 "$RV2")	$(nn_brick 2 /tmp/evil5)	force" \
        "volume	heal	rv	full" \
        "volume	status	rv" \
        "peer	detach	$(nn_addr "$other")" \
        "peer	token"
}

# refuse_all WHO N KEYFILE|- [reverse]: every verb against node N; each must fail with one line.
# Prints "membership" or "ban" per attempt (the reason given), in order.
refuse_all() {
    local who=$1 n=$2 kf=$3 order=${4:-} line err rc
    local -a cmd pre=(env -u KEMBAR_KEY_FILE -u KEMBAR_SERVER)
    [ "$who" = ns ] && pre=(nsenter "--net=/run/netns/$(nn__ns 9)" -- "${pre[@]}")
    [ "$NN_MODE" = netns ] || pre+=("${NOBODY[@]}")
    [ "$kf" = - ] || kf=$(keyfile_for "$kf")
    while IFS= read -r line; do
        IFS=$'\t' read -r -a cmd <<<"$line"
        local -a k=()
        [ "$kf" = - ] || k=(--key-file "$kf")
        KB_EXPECT_RE='not a member of this cluster|too many failed attempts' kb_expect_fail 20 \
            "outsider ($who, key ${kf##*/}) -> node $n: ${cmd[*]:0:3}" \
            "${pre[@]}" "$KB_BIN/kembar" --server "$(nn_addr "$n")" "${k[@]}" "${cmd[@]}" >&2
        if grep -q 'not a member' "$KB_TMP/expect.err"; then echo membership; else echo ban; fi
    done < <(if [ "$order" = reverse ]; then verbs "$n" | tac; else verbs "$n"; fi)
}

outsiders() {
    local before after wrong r1 r2 r3 r4 addr_a addr_b
    wrong=$KB_TMP/wrong.key
    (umask 077 && openssl rand -hex 32 >"$wrong")
    if [ "$NN_MODE" = netns ]; then
        nn__add_node_net 9          # another host on the storage network: a namespace, no node
        addr_a=$NN_NET.254; addr_b=$NN_NET.9
    else
        addr_a=127.0.0.1; addr_b=127.0.0.1
    fi
    before=$(state_sig)
    # Without a key: the root namespace (nobody over loopback in loopback mode).
    r1=$(refuse_all root 1 - | tr '\n' ' ')
    r2=$(refuse_all root 2 - reverse | tr '\n' ' ')
    # Signed with a key that is not the cluster's: another host.
    if [ "$NN_MODE" = netns ]; then
        r3=$(refuse_all ns 1 "$wrong" | tr '\n' ' ')
        r4=$(refuse_all ns 2 "$wrong" reverse | tr '\n' ' ')
    else
        r3=$(refuse_all root 1 "$wrong" | tr '\n' ' ')
        r4=$(refuse_all root 2 "$wrong" reverse | tr '\n' ' ')
    fi
    kb_log "reasons: no key -> node 1: $r1; -> node 2: $r2; wrong key -> node 1: $r3; -> node 2: $r4"
    local want="membership membership membership membership membership ban ban ban ban ban "
    if [ "$NN_MODE" = netns ]; then
        kb_assert_eq "$want" "$r1" "no key, node 1: the first 5 meet the membership check, then the ban"
        kb_assert_eq "$want" "$r2" "no key, node 2"
        kb_assert_eq "$want" "$r3" "wrong key, node 1"
        kb_assert_eq "$want" "$r4" "wrong key, node 2"
    else
        kb_assert_match '^membership (membership )*(ban )*$' "$r1" "no key, node 1"
        kb_assert_match '^membership (membership )*(ban )*$' "$r2" "no key, node 2"
    fi
    after=$(state_sig)
    if [ "$before" != "$after" ]; then
        diff <(echo "$before") <(echo "$after") | sed 's/^/    /' >&2
        kb_fail "a node's state changed under refused commands"
    fi
    kb_log "state of every node unchanged: $(wc -l <<<"$after") files"
    [ -e /tmp/evil1 ] || [ -e /tmp/evil2 ] || [ -e /tmp/evil5 ] && kb_fail "an outsider's brick directory was made"
    local n a
    for n in 1 2; do
        for a in "$addr_a" "$addr_b"; do
            node_log_has "$n" "\[trust\] management command from ${a//./\\.} refused: not a member" ||
                kb_fail "node $n's log has no refusal naming $a"
            node_log_has "$n" "management commands from ${a//./\\.} refused for 60 s: 5 failed attempts" ||
                kb_fail "node $n's log has no ban of $a"
        done
        grep -E '\[trust\]' "$(kb_node_log "$n")" | grep -E 'refused for|signed with another' | head -3 |
            sed "s/^/    node $n: /" >&2
    done
    # The nodes still work together (node 1 asks node 2 for its brick's status, signed).
    local st
    st=$(kb_t 20 "$KB_BIN/kembar" --server "unix:$SOCK1" --json volume status rv </dev/null)
    kb_assert_eq "$RV1 1 $RV2 1" "$(kb_json_bricks "$RV1" "$RV2" <<<"$st" | awk '{printf "%s%s %s", (NR > 1 ? " " : ""), $1, $2}')" \
        "bricks of rv online in node 1's status after the outsiders"
}

kb_section "join with a token, leave by detach" join_and_leave
kb_section "revocation: auth.allow cuts a mounted client off" revocation
kb_section "local socket: root only" local_socket
kb_section "outsiders: every management verb refused, nothing changes" outsiders
kb_section "no kembard crashed" nn_assert_no_crash
kb_done
