#!/usr/bin/env bash
# 55-distribute — files spread over replica sets (issue 6, DESIGN §7), through real mounts.
#
# A 2x2 volume (replica 2; sets B1+B2 and B3+B4, each set across the two nodes):
#   - spread: 1,000 small files with distinct content; each set holds 35%..65% of them, every
#     file is on exactly one set and byte-identical on both bricks of it; after a remount (cold
#     caches) every file reads back right and `ls` lists each once; df is the sum of the sets;
#   - renames: 200 renames to new names (many hash to the other set: they stay where they are and
#     must still be found, also by a fresh mount), renames over an existing name on the other set
#     and on the same set (the replaced file is gone from every brick), never a duplicate or a loss;
#   - directories: mkdir -p, chmod, chown, touch -d, a directory renamed with files below it,
#     rmdir, and an rmdir refused (ENOTEMPTY, the file being on one set only) that must leave every
#     set's copy as it was: the directory tree (paths, modes, owners) is identical on all four
#     bricks and through the mount.
# A hand-written volfile with the other stacking (DESIGN §1): cluster/replicate over two
# cluster/distribute halves of two bricks each (the bricks of a started 4-brick volume):
#   - 100 files, in the root and a subdirectory: each half (its two bricks together) holds every
#     file exactly once with the right content; the mount reads them all back.
# Brick scans leave out the brick's internal .kembar/ directory; anything else found on a brick
# (a migration name, a stray copy) is an error.
# kb-requires: fuse
set -eu
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"

kb_node_start 1
kb_node_start 2

PY=$KB_TMP/dist.py
MAN=$KB_TMP/manifest.json     # what the 2x2 volume must hold: relative path -> sha256
cat >"$PY" <<'EOF'
"""Helpers of 55-distribute. Each command checks, prints one line per check on stderr and exits
non-zero with the reason on the first failure."""
import hashlib, json, os, stat, struct, sys

def log(m): print("  " + m, file=sys.stderr)
def die(m): raise SystemExit("FAIL: " + m)
def sha(b): return hashlib.sha256(b).hexdigest()
def load(p):
    try:
        with open(p) as f: return json.load(f)
    except FileNotFoundError: return {}
def save(p, m):
    with open(p, "w") as f: json.dump(m, f)
def readf(p):
    with open(p, "rb") as f: return f.read()
def writef(p, data):
    with open(p, "wb") as f: f.write(data)

def scan(brick):
    """Regular files of a brick (relative path -> sha256), without .kembar/; other objects that
    are neither a file nor a directory are reported."""
    out = {}
    for d, dirs, files in os.walk(brick):
        if d == brick and ".kembar" in dirs: dirs.remove(".kembar")
        for n in files:
            p = os.path.join(d, n)
            st = os.lstat(p)
            if not stat.S_ISREG(st.st_mode): die("%s: not a regular file (mode %o)" % (p, st.st_mode))
            out[os.path.relpath(p, brick)] = sha(readf(p))
    return out

def sets_of(spec):
    """'b1,b2 b3,b4' -> [[b1, b2], [b3, b4]]"""
    return [s.split(",") for s in spec.split()]

def name_hash(name):
    """DIST_HASH_KB1 (xlators/cluster/distribute/layout.h): FNV-1a 32, then murmur3's fmix32."""
    h = 2166136261
    for c in name.encode():
        h = ((h ^ c) * 16777619) & 0xffffffff
    h ^= h >> 16; h = (h * 0x85ebca6b) & 0xffffffff
    h ^= h >> 13; h = (h * 0xc2b2ae35) & 0xffffffff
    return h ^ (h >> 16)

def hashed(spec, rel):
    """The set whose range (trusted.kembar.layout of its copy of the parent) holds REL's name."""
    parent, name = os.path.split(rel)
    h = name_hash(name)
    for si, reps in enumerate(sets_of(spec)):
        v = os.getxattr(os.path.join(reps[0], parent), "trusted.kembar.layout")
        magic, _, _, flags, start, stop = struct.unpack(">6I", v[:24])
        if magic != 0x4b424c59: die("%s: bad layout magic %x" % (parent, magic))
        if not flags & 1 and start <= h <= stop: return si
    die("%s: hash %08x is in no set's range" % (rel, h))

def where(spec):
    """Check the bricks of a distribute-over-replicate volume: both replicas of a set hold the
    same files with the same content. Returns ({path: set}, {path: sha}, per-set counts)."""
    loc, content, count = {}, {}, []
    for si, reps in enumerate(sets_of(spec)):
        scans = [scan(b) for b in reps]
        for b, s in zip(reps[1:], scans[1:]):
            if s != scans[0]:
                only0 = sorted(set(scans[0]) - set(s))[:3]
                only1 = sorted(set(s) - set(scans[0]))[:3]
                diff = sorted(k for k in set(s) & set(scans[0]) if s[k] != scans[0][k])[:3]
                die("set %d: replicas differ: only on %s: %s; only on %s: %s; content differs: %s"
                    % (si, reps[0], only0, b, only1, diff))
        count.append(len(scans[0]))
        for p, h in scans[0].items():
            if p in loc: die("%s is on set %d and on set %d" % (p, loc[p], si))
            loc[p], content[p] = si, h
    return loc, content, count

def cmd_write(man, mnt, prefix, n):
    m = load(man)
    for i in range(int(n)):
        rel = "%s%04d" % (prefix, i)
        data = ("%s %d %s\n" % (rel, i, os.urandom(16).hex())).encode() * (1 + i % 5)
        writef(os.path.join(mnt, rel), data)
        m[rel] = sha(data)
    save(man, m)
    log("wrote %s files %s0000..%s%04d" % (n, prefix, prefix, int(n) - 1))

def cmd_check(man, mnt, spec, spread=None):
    m = load(man)
    loc, content, count = where(spec)
    lost = sorted(set(m) - set(loc))
    extra = sorted(set(loc) - set(m))
    if lost: die("%d files on no set, e.g. %s" % (len(lost), lost[:5]))
    if extra: die("%d unexpected files on the bricks, e.g. %s" % (len(extra), extra[:5]))
    bad = sorted(p for p in m if content[p] != m[p])
    if bad: die("%d files with the wrong content on the bricks, e.g. %s" % (len(bad), bad[:5]))
    log("bricks: %d files, each on exactly one set, identical on both of its bricks; per set %s"
        % (len(m), count))
    if spread:
        top = [p for p in m if "/" not in p]
        per = [sum(1 for p in top if loc[p] == s) for s in range(len(count))]
        pct = [100.0 * c / len(top) for c in per]
        log("spread of the %d root files: %s" % (len(top), " / ".join("%.1f%%" % x for x in pct)))
        lo, hi = (float(x) for x in spread.split(":"))
        if not all(lo <= x <= hi for x in pct): die("spread %s outside %g%%..%g%%" % (pct, lo, hi))
        off = [p for p in m if hashed(spec, p) != loc[p]]
        if off: die("%d files are not on their hashed set, e.g. %s" % (len(off), off[:5]))
        log("every file is on the set its name hashes to")
    # Through the mount: every directory listed without duplicates, every file readable.
    seen = []
    for d, dirs, files in os.walk(mnt):
        names = os.listdir(d)
        if len(names) != len(set(names)):
            dup = sorted(n for n in set(names) if names.count(n) > 1)
            die("ls %s lists %d names twice, e.g. %s" % (d, len(dup), dup[:5]))
        seen += [os.path.relpath(os.path.join(d, n), mnt) for n in files]
    if sorted(seen) != sorted(m):
        die("the mount lists %d files, want %d; missing %s, extra %s"
            % (len(seen), len(m), sorted(set(m) - set(seen))[:5], sorted(set(seen) - set(m))[:5]))
    wrong = [p for p in m if sha(readf(os.path.join(mnt, p))) != m[p]]
    if wrong: die("%d files read back wrong through the mount, e.g. %s" % (len(wrong), wrong[:5]))
    log("mount: ls lists each of the %d files once, all read back with the right sha256" % len(m))

def cmd_df(mnt, spec):
    v = os.statvfs(mnt)
    total = v.f_blocks * v.f_frsize
    sets = [os.statvfs(reps[0]) for reps in sets_of(spec)]
    one = [s.f_blocks * s.f_frsize for s in sets]
    log("df: mount %d MiB, sets %s MiB" % (total >> 20, [x >> 20 for x in one]))
    # Every brick here shares one file system, so the sum is len(sets) times it (within 1%).
    if not (0.99 * sum(one) <= total <= 1.01 * sum(one)):
        die("df of the mount %d bytes is not the sum of the sets %s" % (total, one))

def cmd_rename(man, mnt, spec, n):
    """N renames to new names; then renames over existing names on the other set and on the same
    set. The manifest follows."""
    m = load(man)
    loc0, _, _ = where(spec)
    olds = sorted(p for p in m if "/" not in p)[:int(n)]
    cross = 0
    for p in olds:
        new = "renamed-" + p
        os.rename(os.path.join(mnt, p), os.path.join(mnt, new))
        m[new] = m.pop(p)
        if os.path.exists(os.path.join(mnt, p)): die("%s still exists after its rename" % p)
        if sha(readf(os.path.join(mnt, new))) != m[new]: die("%s: wrong content after rename" % new)
    save(man, m)
    # A fresh name's set is only known from the bricks: look them up again.
    loc, _, _ = where(spec)
    pool = sorted(p for p in m if "/" not in p and not p.startswith("renamed-"))
    by = [[p for p in pool if loc[p] == s] for s in range(2)]
    pairs = []
    for k in range(10):   # set 0 over set 1, set 1 over set 0, then the same set
        pairs += [(by[0][k], by[1][-1 - k]), (by[1][k], by[0][-1 - k])]
    pairs += [(by[0][20], by[0][-21]), (by[1][20], by[1][-21])]
    for src, dst in pairs:
        os.rename(os.path.join(mnt, src), os.path.join(mnt, dst))
        m[dst] = m.pop(src)
        cross += loc[src] != loc[dst]
        if os.path.exists(os.path.join(mnt, src)): die("%s still exists after rename over %s" % (src, dst))
        if sha(readf(os.path.join(mnt, dst))) != m[dst]: die("%s: not the renamed file's content" % dst)
    save(man, m)
    off = sum(1 for p in olds if hashed(spec, "renamed-" + p) != loc0[p])
    log("renamed %d files to new names (%d now off their hashed set), then %d over existing names"
        " (%d over a file on the other set)" % (len(olds), off, len(pairs), cross))
    if off < len(olds) // 5: die("only %d of %d renames changed the hashed set" % (off, len(olds)))
    if cross < 20: die("only %d renames over a file on the other set" % cross)

def cmd_churn(man, mnt, n):
    """Through the mount: rename N root files to new names, unlink N others."""
    m = load(man)
    top = sorted(p for p in m if "/" not in p)
    n = int(n)
    for p in top[:n]:
        os.rename(os.path.join(mnt, p), os.path.join(mnt, "mv-" + p))
        m["mv-" + p] = m.pop(p)
    for p in top[n:2 * n]:
        os.unlink(os.path.join(mnt, p))
        del m[p]
    save(man, m)
    log("renamed %d files, removed %d" % (n, n))

def cmd_halves(mnt, spec, want):
    """Replicate over distribute: each half (the bricks of one distribute) holds every file once."""
    m = load(want)
    for hi, bricks in enumerate(sets_of(spec)):
        got = {}
        for b in bricks:
            for p, h in scan(b).items():
                if p in got: die("half %d: %s is on two of its bricks" % (hi, p))
                got[p] = h
        per = [sum(1 for p in scan(b)) for b in bricks]
        if set(got) != set(m):
            die("half %d: missing %s, extra %s" % (hi, sorted(set(m) - set(got))[:5], sorted(set(got) - set(m))[:5]))
        bad = sorted(p for p in m if got[p] != m[p])
        if bad: die("half %d: %d files with the wrong content, e.g. %s" % (hi, len(bad), bad[:5]))
        log("half %d holds all %d files with the right content (per brick %s)" % (hi, len(m), per))
        if 0 in per: die("half %d: one brick holds nothing: no distribution" % hi)
    seen = []
    for d, dirs, files in os.walk(mnt):
        seen += [os.path.relpath(os.path.join(d, n), mnt) for n in files]
    if len(seen) != len(set(seen)) or set(seen) != set(m):
        die("the mount lists %d names (%d distinct), want the %d files" % (len(seen), len(set(seen)), len(m)))
    wrong = [p for p in m if sha(readf(os.path.join(mnt, p))) != m[p]]
    if wrong: die("%d files read back wrong through the mount, e.g. %s" % (len(wrong), wrong[:5]))
    log("mount: ls lists each of the %d files once, all read back right" % len(m))

{"write": cmd_write, "check": cmd_check, "df": cmd_df, "rename": cmd_rename,
 "churn": cmd_churn, "halves": cmd_halves}[sys.argv[1]](*sys.argv[2:])
EOF
dpy() { kb_t 60 "$KB_PY" "$PY" "$@"; }

# The 2x2 volume. Each set has one brick on each node.
for i in 1 2 3 4; do BR[i]=$(kb_brick_path $(( (i + 1) % 2 + 1 )) dist); done
kb_cli 1 volume create dist replica 2 "$(kb_brick 1 "${BR[1]}")" "$(kb_brick 2 "${BR[2]}")" \
    "$(kb_brick 1 "${BR[3]}")" "$(kb_brick 2 "${BR[4]}")" force >&2
kb_cli 1 volume start dist >&2
SETS="${BR[1]},${BR[2]} ${BR[3]},${BR[4]}"
M=$KB_TMP/m-dist

remount() { kb_umount "$M"; kb_mount dist "$M"; }

spread() {
    kb_mount dist "$M"
    dpy write "$MAN" "$M" f- 1000
    remount                                   # cold caches: reads come from the bricks
    dpy check "$MAN" "$M" "$SETS" 35:65
    dpy df "$M" "$SETS"
}

renames() {
    dpy rename "$MAN" "$M" "$SETS" 200
    dpy check "$MAN" "$M" "$SETS"
    remount                                   # a fresh client (no hints) finds them too
    dpy check "$MAN" "$M" "$SETS"
}

# dirtree ROOT: the directory tree as paths, modes, owners (without .kembar).
dirtree() { find "$1" -path "$1/.kembar" -prune -o -type d -printf '%P %m %u %g\n' | sort; }

same_trees() {  # same_trees WHAT: the four bricks and the mount show one directory tree
    local want b
    want=$(dirtree "${BR[1]}")
    for b in "${BR[2]}" "${BR[3]}" "${BR[4]}"; do
        [ "$(dirtree "$b")" = "$want" ] ||
            kb_fail "$1: directory tree of $b differs from ${BR[1]}:"$'\n'"$(diff <(echo "$want") <(dirtree "$b"))"
    done
    [ "$(dirtree "$M")" = "$want" ] ||
        kb_fail "$1: directory tree through the mount differs from the bricks':"$'\n'"$(diff <(echo "$want") <(dirtree "$M"))"
    kb_log "  $1: directory tree identical on the 4 bricks and the mount ($(echo "$want" | wc -l) directories)"
}

directories() {
    local t=$M/tree b err f
    mkdir -p "$t/a/b/c" "$t/x/y" "$t/gone/deeper" "$t/full"
    chmod 0750 "$t/a"
    chmod 0700 "$t/a/b/c"
    chmod 2775 "$t/x"
    chown 1234:5678 "$t/a/b"
    chown 4321 "$t/x/y"
    # Files below the directories that move: they must follow on whichever set holds them.
    kb_t 30 "$KB_PY" - "$t" "$MAN" <<'PYEOF'
import hashlib, json, os, sys
t, man = sys.argv[1], sys.argv[2]
m = json.load(open(man))
for d in ("a/b/c", "x/y"):
    for i in range(8):
        data = ("%s/%d\n" % (d, i)).encode() * 10
        open(os.path.join(t, d, "in-%d" % i), "wb").write(data)
        m["tree/%s/in-%d" % (d, i)] = hashlib.sha256(data).hexdigest()
json.dump(m, open(man, "w"))
PYEOF
    mv "$t/x" "$t/a/b/x-moved"                  # a directory into another
    mv "$t/a" "$t/A"                            # and the top one renamed in place
    "$KB_PY" - "$MAN" <<'PYEOF'
import json, sys
m = json.load(open(sys.argv[1]))
m = {k.replace("tree/x/", "tree/a/b/x-moved/").replace("tree/a/", "tree/A/"): v for k, v in m.items()}
json.dump(m, open(sys.argv[1], "w"))
PYEOF
    rmdir "$t/gone/deeper" "$t/gone"
    # rmdir of a directory whose only file is on one set: refused, and no set loses its copy.
    echo only-one >"$t/full/f"
    chmod 0701 "$t/full"
    chown 77:88 "$t/full"
    err=$(rmdir "$t/full" 2>&1) && kb_fail "rmdir of a non-empty directory succeeded"
    kb_assert_match "not empty" "$err" "rmdir of a non-empty directory"
    rm "$t/full/f"
    mkdir "$t/full/sub"
    chmod 0700 "$t/full/sub"
    touch -d "2001-02-03 04:05:06" "$t/A/b" "$t/full"
    same_trees "before remount"
    remount
    same_trees "after remount"
    for b in "${BR[@]}" "$M"; do
        kb_assert_eq "981173106 981173106" "$(stat -c %Y "$b/tree/A/b" "$b/tree/full" | paste -sd' ')" \
            "touch -d mtime of tree/A/b and tree/full on $b"
    done
    kb_log "  touch -d: both directories carry the set mtime on every brick and through the mount"
    [ ! -e "$t/a" ] && [ ! -e "$t/x" ] && [ ! -e "$t/gone" ] || kb_fail "an old directory name is still there"
    for b in "${BR[@]}"; do
        for f in tree/a tree/x tree/gone; do [ ! -e "$b/$f" ] || kb_fail "$b/$f still exists"; done
    done
    dpy check "$MAN" "$M" "$SETS"
}


# Replicate over two distributes, from a hand-written volfile, on the bricks of a plain 4-brick
# volume "half" (no replicate of its own, so no heal daemon touches these bricks).
repl_over_dist() {
    local i vf=$KB_TMP/repdist.vol mnt=$KB_TMP/m-repdist want=$KB_TMP/repdist.json
    local -a hb=()
    for i in 0 1 2 3; do hb[i]=$(kb_brick_path $(( i % 2 + 1 )) half); done
    kb_cli 1 volume create half "$(kb_brick 1 "${hb[0]}")" "$(kb_brick 2 "${hb[1]}")" \
        "$(kb_brick 1 "${hb[2]}")" "$(kb_brick 2 "${hb[3]}")" force >&2
    kb_cli 1 volume start half >&2
    : >"$vf"
    for i in 0 1 2 3; do
        printf 'volume c%d\n  type protocol/client\n  option remote-host 127.0.0.1\n  option remote-port %d\n  option remote-subvolume %s\n  option volume half\nend-volume\n\n' \
            "$i" "$(kb_port $(( i % 2 + 1 )))" "${hb[i]}" >>"$vf"
    done
    cat >>"$vf" <<'VF'
volume dA
  type cluster/distribute
  subvolumes c0 c1
end-volume

volume dB
  type cluster/distribute
  subvolumes c2 c3
end-volume

volume top
  type cluster/replicate
  subvolumes dA dB
end-volume
VF
    kb_mount_volfile "$vf" "$mnt"
    mkdir "$mnt/sub"
    dpy write "$want" "$mnt" r- 60
    dpy write "$want" "$mnt" sub/s- 40
    dpy churn "$want" "$mnt" 10
    kb_umount "$mnt"
    kb_mount_volfile "$vf" "$mnt"                 # cold caches: reads come from the bricks
    dpy halves "$mnt" "${hb[0]},${hb[1]} ${hb[2]},${hb[3]}" "$want"
    kb_umount "$mnt"
}

kb_section "2x2: 1,000 files spread over both sets" spread
kb_section "2x2: renames across sets" renames
kb_section "2x2: directory trees identical on every brick" directories
kb_section "replicate over two distribute sets (hand-written volfile)" repl_over_dist
kb_done
