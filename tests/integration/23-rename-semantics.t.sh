#!/usr/bin/env bash
# 23-rename-semantics — rename(2) over a name whose inode has other hard links (issue 3).
#
# After `rename(src, victim)` where victim's inode also has the names l1 and l2, that inode has
# one link less and a newer ctime. The mount that renamed must show it at once (stat of l1 right
# after the call); a second mount of the same volume must show the same link count and ctime (we
# allow it the same 2 s as any cross-mount change). The same again the other way round, over the
# last name of an inode that is still open, and on a one-brick and a replica-2 volume.
# kb-requires: fuse
set -eu
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"

kb_node_start 1
kb_node_start 2
kb_volume_up one 1 >/dev/null
kb_volume_up two 1 2 >/dev/null

check_rename() {  # check_rename VOL
    local vol=$1 a=$KB_TMP/$1-a b=$KB_TMP/$1-b
    kb_mount "$vol" "$a"
    kb_mount "$vol" "$b"
    kb_t 60 "$KB_PY" - "$a" "$b" <<'EOF'
import os, sys, time
A, B = sys.argv[1], sys.argv[2]
log = lambda m: print("  " + m, file=sys.stderr)

def st(root, name):
    s = os.stat(os.path.join(root, name))
    return s.st_nlink, s.st_ctime_ns, s.st_ino

def write(p, data):
    with open(p, "w") as f:
        f.write(data)

def read(p):
    with open(p) as f:
        return f.read()

def converge(what, fn, want, limit=2.0):
    """fn() must return want within limit seconds; returns the delay. Stale answers are allowed
    for that long (attribute and name caches), errors never: every name used here exists all
    the time, rename(2) being atomic (a stale cached inode must give ESTALE inside, so that the
    kernel looks the name up again, never ENOENT to the application)."""
    t0 = time.time()
    while True:
        try:
            got = fn()
        except OSError as e:
            raise SystemExit("%s: %s after %.2fs, but the name exists throughout (atomic rename)"
                             % (what, os.strerror(e.errno), time.time() - t0))
        if got == want:
            return time.time() - t0
        if time.time() - t0 > limit:
            raise SystemExit("%s: still %r after %.1fs, want %r" % (what, got, limit, want))
        time.sleep(0.05)

def case(M1, M2, tag):
    """Rename over a 3-link inode through M1; check through M1 at once, M2 within 2 s."""
    v, l1, l2, src = (tag + x for x in ("victim", "l1", "l2", "src"))
    write(os.path.join(M1, v), "old inode\n")
    os.link(os.path.join(M1, v), os.path.join(M1, l1))
    os.link(os.path.join(M1, v), os.path.join(M1, l2))
    write(os.path.join(M1, src), "new inode\n")
    # Both mounts look first (at the link and at the name to be replaced), so both kernels hold
    # the names and attributes in their caches.
    converge("%s: %s nlink on the other mount before rename" % (tag, l1), lambda: st(M2, l1)[0], 3)
    converge("%s: %s nlink on the other mount before rename" % (tag, v), lambda: st(M2, v)[0], 3)
    n1, c1, ino1 = st(M1, l1)
    n2, c2, ino2 = st(M2, l1)
    assert (n1, n2) == (3, 3), "%s: link counts before rename %d/%d, want 3" % (tag, n1, n2)
    assert c1 == c2, "%s: the two mounts disagree on ctime before rename: %d vs %d" % (tag, c1, c2)
    time.sleep(1.1)   # a ctime change must be visible even at 1 s resolution

    os.rename(os.path.join(M1, src), os.path.join(M1, v))

    n, c, ino = st(M1, l1)   # at once, same mount
    assert n == 2, "%s: %s nlink right after rename over %s: %d, want 2" % (tag, l1, v, n)
    assert c > c1, "%s: %s ctime did not change with the rename (%d -> %d)" % (tag, l1, c1, c)
    assert st(M1, l2)[0] == 2, "%s: %s nlink after rename: %d" % (tag, l2, st(M1, l2)[0])
    assert read(os.path.join(M1, v)) == "new inode\n", "%s: %s content after rename" % (tag, v)
    assert st(M1, v)[0] == 1, "%s: nlink of the new %s: %d" % (tag, v, st(M1, v)[0])
    assert st(M1, v)[2] != ino, "%s: %s still has the replaced inode's number" % (tag, v)
    assert not os.path.exists(os.path.join(M1, src)), "%s: %s still exists" % (tag, src)

    d1 = converge("%s: %s nlink via the other mount" % (tag, l1), lambda: st(M2, l1)[0], 2)
    d2 = converge("%s: %s ctime via the other mount" % (tag, l1), lambda: st(M2, l1)[1], c)
    d3 = converge("%s: %s content via the other mount" % (tag, v), lambda: read(os.path.join(M2, v)), "new inode\n")
    converge("%s: %s nlink via the other mount" % (tag, v), lambda: st(M2, v)[0], 1)
    d4 = converge("%s: %s gone via the other mount" % (tag, src), lambda: os.path.exists(os.path.join(M2, src)), False)
    log("%s: other mount saw nlink after %.2fs, ctime after %.2fs, content after %.2fs, old name gone after %.2fs"
        % (tag, d1, d2, d3, d4))
    assert st(M2, l2)[0] == 2 and st(M1, l2)[0] == 2
    return c

def case_open_last_link(M1, M2, tag):
    """Rename over the last name of an inode held open: the fd keeps reading the old data."""
    v, src = tag + "victim", tag + "src"
    write(os.path.join(M1, v), "held open\n")
    write(os.path.join(M1, src), "replacement\n")
    fd = os.open(os.path.join(M2, v), os.O_RDONLY)     # opened through the OTHER mount
    os.rename(os.path.join(M1, src), os.path.join(M1, v))
    assert read(os.path.join(M1, v)) == "replacement\n"
    converge("%s: new content via the other mount" % tag, lambda: read(os.path.join(M2, v)), "replacement\n")
    got = os.pread(fd, 100, 0)
    assert got == b"held open\n", "%s: open fd of the replaced inode reads %r" % (tag, got)
    os.close(fd)

def same_attrs_everywhere(M1, M2, tag, n=40):
    """Both mounts report one ctime and link count per file. On a replicated volume every brick
    has its own ctime (the kernel sets it); the client must answer from one replica for both
    mounts. Many files, because two bricks' ctimes differ only when their ops straddle a clock
    tick."""
    for i in range(n):
        p = os.path.join(M1, "%sf%02d" % (tag, i))
        write(p, "x")
        os.link(p, p + ".l")
    time.sleep(0.1)
    bad = []
    for i in range(n):
        name = "%sf%02d.l" % (tag, i)
        a, b = st(M1, name), st(M2, name)
        if a[:2] != b[:2]:
            bad.append("%s: nlink/ctime %s via one mount, %s via the other" % (name, a[:2], b[:2]))
    assert not bad, "%d of %d files differ between the mounts, e.g. %s" % (len(bad), n, bad[0])

same_attrs_everywhere(A, B, "attr-")
case(A, B, "ab-")     # rename through A, watch B
case(B, A, "ba-")     # and the other way round
case_open_last_link(A, B, "open-")
EOF
    kb_umount "$b"
    kb_umount "$a"
}

kb_section "one-brick volume" check_rename one
kb_section "replica-2 volume" check_rename two
kb_done
