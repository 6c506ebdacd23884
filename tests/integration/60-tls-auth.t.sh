#!/usr/bin/env bash
# 60-tls-auth — TLS and access control (issue 8): a volume with transport.tls on is reachable
# only over TLS with a certificate of the volume's CA (mount with tls-dir works, a plain mount
# and one with a foreign CA's certificate are refused); a node started with --tls-mgmt takes CLI
# commands over TLS only; auth.allow / auth.reject keep a client from mounting; a certificate
# revoked (crl.pem in the node's tls-dir) cuts its mounted client off within seconds, while the
# other client of the volume goes on (issue 19).
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
mkcert "$T/client2" "$T/ca" client2
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

# py_write FILE: one O_DIRECT 4 KiB write at 0 (through the kernel, no page cache); "ok" or the errno name
py_write() {
    kb_t 20 "$KB_PY" - "$1" <<'EOF' 2>/dev/null || echo "timeout"
import errno, mmap, os, sys
try:
    fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT | os.O_DIRECT, 0o644)
    buf = mmap.mmap(-1, 4096)
    buf.write(b"r" * 4096)
    os.pwrite(fd, buf, 0)
    os.fsync(fd)
    os.close(fd)
    print("ok")
except OSError as e:
    print(errno.errorcode.get(e.errno, str(e.errno)))
EOF
}
revoke() {
    local b m1=$KB_TMP/r1 m2=$KB_TMP/r2 i
    b=$(kb_brick_path 1 rev)
    kb_cli 1 volume create rev "$(kb_brick 1 "$b")" force >/dev/null
    kb_cli 1 volume set rev transport.tls on >/dev/null
    kb_cli 1 volume start rev >/dev/null
    kb_mount rev "$m1" "tls-dir=$T/client"
    kb_mount rev "$m2" "tls-dir=$T/client2"
    kb_assert_eq ok "$(py_write "$m1/a")" "client1 writes"
    kb_assert_eq ok "$(py_write "$m2/b")" "client2 writes"
    # the CA revokes client2 and the node is given the new revocation list
    (cd "$T/ca" && touch index.txt && echo 01 >crlnumber &&
        printf '[ ca ]\ndefault_ca = kb\n[ kb ]\ndatabase = index.txt\ncrlnumber = crlnumber\ndefault_md = sha256\ndefault_crl_days = 2\n' >ca.cnf &&
        openssl ca -config ca.cnf -keyfile ca.key -cert ca.pem -revoke "$T/client2/cert.pem" >/dev/null 2>&1 &&
        openssl ca -config ca.cnf -keyfile ca.key -cert ca.pem -gencrl -out crl.pem >/dev/null 2>&1) ||
        kb_fail "cannot make a revocation list"
    cp "$T/ca/crl.pem" "$T/node/crl.pem.new"
    mv "$T/node/crl.pem.new" "$T/node/crl.pem"
    local t0 r=ok
    t0=$(date +%s%N)
    for i in $(seq 1 25); do
        r=$(py_write "$m2/b")
        [ "$r" != ok ] && break
        sleep 0.2
    done
    kb_log "the revoked client's write failed with $r after $(( ($(date +%s%N) - t0) / 1000000 )) ms"
    kb_assert_ne ok "$r" "a write by the revoked client within 5 s"
    grep -q 'certificate is no longer valid' "$(kb_node_log 1)" || kb_fail "no log line for the revoked peer"
    kb_assert_eq ok "$(py_write "$m1/a")" "client1 (not revoked) still writes"
    mkdir -p "$KB_TMP/r3"
    KB_EXPECT_RE='certificate|handshake|revoked|cannot reach any server' kb_expect_fail 20 "mount with a revoked certificate" \
        "$KB_BIN/kembar-fuse" -o "tls-dir=$T/client2" "$(kb_addr 1):/rev" "$KB_TMP/r3"
    kb_umount "$m1"
    umount -l "$m2" 2>/dev/null || true
}

kb_section "TLS volume: only TLS clients of the volume's CA" tls_volume
kb_section "TLS management" tls_mgmt
kb_section "auth.allow / auth.reject" auth
kb_section "a revoked certificate cuts its client off" revoke
kb_done
