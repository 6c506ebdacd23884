#!/usr/bin/env bash
# 06-manpages — the man pages (man/, built by `make man`) render, and say everything the programs
# take (issue 18): every volume verb of `kembar --help` and of kembard's dispatcher in kembar(8);
# every -o option of `kembar-fuse --help` and of its parser in kembar-fuse(8) and mount.kembar(8);
# every --option of each program's --help in its page; every volume option key compiled into
# kembard in kembar-options(5) (generated, so this guards the generator). The bash completion
# knows every volume verb and option key.
set -eu
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"
REPO=$KB_REPO
for b in kembard kembar kembar-fuse kembar-bench; do
    [ -x "$KB_BIN/$b" ] || kb_fail "$KB_BIN/$b is missing: run make"
done
if [ "$KB_BIN" = "$REPO/build" ]; then
    kb_t 120 make -C "$REPO" --no-print-directory -s man >"$KB_TMP/make.out" 2>&1 ||
        { cat "$KB_TMP/make.out" >&2; kb_fail "make man failed"; }
else
    kb_t 120 make -C "$REPO" --no-print-directory -s B="$KB_BIN" man >"$KB_TMP/make.out" 2>&1 ||
        { cat "$KB_TMP/make.out" >&2; kb_fail "make man failed"; }
fi
MAN=$KB_BIN/man

kb_section "every page renders with man -l, without warnings" bash -c '
    for p in "$1"/kembard.8 "$1"/kembar.8 "$1"/kembar-fuse.8 "$1"/mount.kembar.8 \
             "$1"/kembar-bench.1 "$1"/kembar-options.5; do
        [ -s "$p" ] || { echo "FAIL: $p missing"; exit 1; }
        out=$(LC_ALL=C.UTF-8 MANWIDTH=80 timeout 30 man --warnings -E UTF-8 -l "$p" 2>"$2/warn") ||
            { echo "FAIL: man -l $p failed"; exit 1; }
        [ -s "$2/warn" ] && { echo "FAIL: man -l $p warns:"; head "$2/warn"; exit 1; }
        grep -q "^NAME" <<<"$out" && grep -q "^DESCRIPTION" <<<"$out" ||
            { echo "FAIL: $p has no NAME/DESCRIPTION"; exit 1; }
    done' _ "$MAN" "$KB_TMP"

# What each program says it takes, against its page's text (roff escapes undone).
kb_section "verbs, options and keys are all documented" "$KB_PY" - "$KB_BIN" "$MAN" "$REPO" <<'PYEOF'
import re, subprocess, sys
bindir, man, repo = sys.argv[1:4]
bad = []

def text(page):
    s = open(f"{man}/{page}").read()
    s = re.sub(r'\\f(\[[^]]*\]|\(..|.)', '', s)
    return s.replace('\\-', '-').replace('\\&', '').replace('\\e', '\\')

def helptext(prog):
    r = subprocess.run([f"{bindir}/{prog}", "--help"], capture_output=True, text=True, timeout=10)
    return r.stdout + r.stderr

def has_word(page_text, w):
    return re.search(r'(?<![\w.-])' + re.escape(w) + r'(?![\w-])', page_text) is not None

# kembar(8): "NOUN VERB" for each verb of --help (volume and any other noun), and each volume
# verb kembard's dispatcher compares (server/mgmt.c: strcmp(verb, "X")).
cli = helptext("kembar")
page = text("kembar.8")
verbs = set()
for line in cli.splitlines()[1:]:
    for noun, vs in re.findall(r'\b(volume|peer)\s+([a-z][a-z|-]*)', line):
        for v in vs.split('|'):
            if v:
                verbs.add((noun, v))
disp = set(re.findall(r'strcmp\(verb, "([a-z-]+)"\)', open(f"{repo}/server/mgmt.c").read()))
if len(disp) < 10:
    bad.append(f"found only {len(disp)} verbs in server/mgmt.c's dispatcher: update this test's scan")
verbs |= {("volume", v) for v in disp}
for noun, v in sorted(verbs):
    if not re.search(r'\b' + noun + r'\s+(?:[a-z-]+\s*\|\s*)*' + re.escape(v) + r'(?![\w-])', page):
        bad.append(f'kembar(8) lacks "{noun} {v}"')
comp = open(f"{bindir}/kembar.bash-completion").read()
m = re.search(r'local verbs="([^"]*)"', comp)
cverbs = set(m.group(1).split()) if m else set()
for noun, v in sorted(verbs):
    if noun == "volume" and v not in cverbs:
        bad.append(f"the bash completion lacks the volume verb {v}")

# --options of each program's --help, in its page.
for prog, pg in (("kembard", "kembard.8"), ("kembar", "kembar.8"),
                 ("kembar-fuse", "kembar-fuse.8"), ("kembar-bench", "kembar-bench.1")):
    t = text(pg)
    for o in sorted(set(re.findall(r'(?<![\w-])--[a-z][a-z-]*', helptext(prog)))):
        if not has_word(t, o):
            bad.append(f"{pg} lacks {o} (from {prog} --help)")

# -o options: kembar-fuse --help, and the names its parser knows (fuse/main.c).
fh = helptext("kembar-fuse")
opts = set()
for line in fh.splitlines():
    if "-o " not in line:
        continue
    head = re.split(r'\s{2,}', line.split("-o ", 1)[1].strip())[0]
    for tok in re.split(r'[,;]', head):
        w = tok.strip().split(' ')[0].split('=')[0]
        if re.fullmatch(r'[a-z_][a-z0-9_-]*', w):
            opts.add(w)
src = open(f"{repo}/fuse/main.c").read()
parsed = set()
for m in re.finditer(r'opt_(?:is|val)\(o, "([^"]+)"(?:, "([^"]+)")?', src):
    parsed |= {x for x in m.groups() if x}
for m in re.finditer(r'static const char \*const names\[\] = \{(.*?)\};', src, re.S):
    parsed |= set(re.findall(r'"([a-z_][a-z0-9_-]*)"', m.group(1)))
if len(parsed) < 20:
    bad.append(f"found only {len(parsed)} -o names in fuse/main.c's parser: update this test's scan")
for pg in ("kembar-fuse.8", "mount.kembar.8"):
    t = text(pg)
    for o in sorted(opts | parsed):
        if not has_word(t, o):
            bad.append(f"{pg} lacks the -o option {o}")

# Volume option keys: kembar-options(5) and the completion.
md = subprocess.run([f"{bindir}/kembard", "--options-markdown"], capture_output=True, text=True).stdout
keys = re.findall(r'^\| `([^`]+)`', md, re.M)
if len(keys) < 10:
    bad.append(f"kembard --options-markdown gave {len(keys)} keys")
t = text("kembar-options.5")
for k in keys:
    if not has_word(t, k):
        bad.append(f"kembar-options(5) lacks {k}")
    if not has_word(comp, k):
        bad.append(f"the bash completion lacks the option key {k}")

print(f"checked {len(verbs)} verbs, {len(opts | parsed)} -o options, {len(keys)} option keys")
for b in bad:
    print("FAIL:", b)
sys.exit(1 if bad else 0)
PYEOF
kb_done
