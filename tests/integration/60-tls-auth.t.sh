#!/usr/bin/env bash
# 60-tls-auth — TLS and access control (issue 8): a volume with transport.tls on is reachable
# only over TLS with a certificate of the volume's CA (mount with tls-dir works, a plain mount
# and one with a foreign CA's certificate are refused); a node started with --tls-mgmt takes CLI
# commands over TLS only; auth.allow / auth.reject keep a client from mounting.
# kb-requires: root
set -eu
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"

T=$KB_TMP/tls
mkdir -p "$T"
# mkcert DIR CA_DIR CN: a key and a certificate signed by CA_DIR's CA, plus that CA, in DIR.
mkca() {
    mkdir -p "$1"
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=$2" \
        -keyout "$1/ca.key" -out "$1/ca.pem" >/dev/null 2>&1
}
mkcert() {
    mkdir -p "$1"
    openssl req -newkey rsa:2048 -nodes -subj "/CN=$3" -keyout "$1/key.pem" -out "$1/req.csr" >/dev/null 2>&1
    openssl x509 -req -in "$1/req.csr" -CA "$2/ca.pem" -CAkey "$2/ca.key" -CAcreateserial -days 2 \
        -out "$1/cert.pem" >/dev/null 2>&1
    cp "$2/ca.pem" "$1/ca.pem"
}
mkca "$T/ca" kembar-test-ca
mkca "$T/rogue-ca" rogue-ca
mkcert "$T/node" "$T/ca" node1
mkcert "$T/client" "$T/ca" client1
mkcert "$T/rogue" "$T/rogue-ca" rogue

kb_node_start 1 --tls-dir "$T/node"
M=$KB_TMP/mnt
mkdir -p "$M"

tls_volume() {
    local b
    b=$(kb_brick_path 1 sec)
    kb_cli 1 volume create sec "$(kb_brick 1 "$b")" force >/dev/null
    kb_cli 1 volume set sec transport.tls on >/dev/null
    kb_cli 1 volume start sec >/dev/null
    KB_EXPECT_RE='requires TLS' kb_expect_fail 20 "plain mount of a TLS volume" \
        "$KB_BIN/kembar-fuse" "$(kb_addr 1):/sec" "$M"
    KB_EXPECT_RE='certificate|handshake|cannot reach any server' kb_expect_fail 20 "mount with a foreign CA's certificate" \
        "$KB_BIN/kembar-fuse" -o "tls-dir=$T/rogue" "$(kb_addr 1):/sec" "$M"
    kb_mount sec "$M" "tls-dir=$T/client"
    head -c 3000000 /dev/urandom >"$KB_TMP/data"
    cp "$KB_TMP/data" "$M/data"
    sync "$M/data"
    kb_assert_same_file "$KB_TMP/data" "$M/data"
    kb_assert_same_file "$KB_TMP/data" "$b/data"
    # Grown online: the mount fetches the new volfile over TLS, and the rebalance's own client
    # graph (in kembard) reaches the bricks with the node's certificate.
    for i in $(seq 1 40); do echo "file $i" >"$M/f$i"; done
    b2=$(kb_brick_path 1 sec2)
    kb_cli 1 volume add-brick sec "$(kb_brick 1 "$b2")" force >&2
    kb_cli 1 volume rebalance sec start >&2
    kb_wait_until 60 tls_rebalance_over || kb_fail "the rebalance of a TLS volume did not finish"
    kb_cli 1 volume rebalance sec status >&2
    kb_assert_match '"status":"completed"' "$(cat "$KB_TMP/rs.json")" "rebalance of a TLS volume"
    [ "$(find "$b2" -path "$b2/.kembar" -prune -o -type f -name 'f*' -print | wc -l)" -gt 0 ] ||
        kb_fail "the rebalance moved nothing to the new brick"
    for i in $(seq 1 40); do kb_assert_eq "file $i" "$(cat "$M/f$i")" "f$i after the rebalance"; done
    kb_assert_same_file "$KB_TMP/data" "$M/data"
    kb_umount "$M"
}
tls_rebalance_over() {
    kb_cli_json 1 volume rebalance sec status >"$KB_TMP/rs.json" || return 1
    ! grep -q '"status":"running"' "$KB_TMP/rs.json"
}

tls_mgmt() {
    # node 2 takes management over TLS only; the CLI finds its certificate in KEMBAR_TLS_DIR
    export KEMBAR_TLS_DIR=$T/client
    kb_node_start 2 --tls-dir "$T/node" --tls-mgmt
    kb_cli 2 volume list >/dev/null
    unset KEMBAR_TLS_DIR
    KB_EXPECT_RE='over TLS only' kb_expect_fail 20 "plain CLI to a --tls-mgmt node" \
        "$KB_BIN/kembar" --server "$(kb_addr 2)" volume list
    KB_EXPECT_RE='certificate verify failed|handshake' kb_expect_fail 20 "CLI with a foreign CA's certificate" \
        "$KB_BIN/kembar" --tls-dir "$T/rogue" --server "$(kb_addr 2)" volume list
}

auth() {
    local b
    b=$(kb_brick_path 1 open)
    kb_cli 1 volume create open "$(kb_brick 1 "$b")" force >/dev/null
    kb_cli 1 volume start open >/dev/null
    kb_cli 1 volume set open auth.allow 10.9.9.9 >/dev/null
    KB_EXPECT_RE='not allowed' kb_expect_fail 20 "mount from an address auth.allow does not list" \
        "$KB_BIN/kembar-fuse" "$(kb_addr 1):/open" "$M"
    kb_cli 1 volume set open auth.allow '127.0.0.0/8' >/dev/null
    kb_cli 1 volume set open auth.reject '127.0.0.*' >/dev/null
    KB_EXPECT_RE='not allowed' kb_expect_fail 20 "mount from an address auth.reject lists" \
        "$KB_BIN/kembar-fuse" "$(kb_addr 1):/open" "$M"
    kb_cli 1 volume set open auth.reject 10.0.0.1 >/dev/null
    kb_mount open "$M"
    echo allowed >"$M/f"
    kb_assert_eq allowed "$(cat "$b/f")" "brick content after an allowed mount"
    kb_umount "$M"
}

kb_section "TLS volume: only TLS clients of the volume's CA" tls_volume
kb_section "TLS management" tls_mgmt
kb_section "auth.allow / auth.reject" auth
kb_done
