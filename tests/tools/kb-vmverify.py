#!/usr/bin/env python3
"""kb-vmverify.py — checks what the test guest's writer (kb-guest-init.sh, kb.mode=writer) wrote.

    kb-vmverify.py --image RAW --blocks N [--max-gap S] SERIAL_LOG...

RAW is the guest disk as a raw file (`qemu-img convert -O raw IMG RAW`); the logs are the serial
consoles of every qemu the guest ran in (the source and the destination of each migration), in
any order. The guest writes block i, generation g, as 128 copies of "KBVM blk=%08d gen=%08d.\\n",
one write at a time in the order (g=1, i=0..N-1), (g=2, i=0..N-1), ..., and prints
"KBW i g uptime" after each write completed.

Checks (exit 1 with the reasons on stderr if any fails; a summary on stdout otherwise):
  - no guest I/O error in any log: a KBERR line, or the kernel's "I/O error",
    "blk_update_request", "Buffer I/O error";
  - every block 0..N-1 of the image is either all zeros or exactly one generation's pattern
    (no torn, foreign or shifted data), and everything past block N-1 is zeros;
  - every block holds the last generation acknowledged for it (the highest over all logs), except
    at most one block, the write that follows the last acknowledged one in the writer's order,
    which may hold the next generation (it completed, or was in flight and replayed by the
    destination, when the guest was stopped before it printed the acknowledgement).
Only complete lines (ending in a newline) count: a line cut by the migration is not an ack.
The longest time between two acknowledgements on one console (guest uptime: the guest was
waiting for its disk, or not running) is reported per log; with --max-gap, a longer one fails.
"""
import argparse
import re
import sys

BLK = 4096
ERR_RE = re.compile(rb"KBERR|I/O error|blk_update_request|Buffer I/O error")
ACK_RE = re.compile(rb"^KBW (\d+) (\d+)(?: (\d+\.\d+))?$")


def pattern(i, g):
    return (b"KBVM blk=%08d gen=%08d.\n" % (i, g)) * (BLK // 32)


def block_gen(i, data):
    """0 for zeros, g for a clean generation-g pattern of block i, None otherwise."""
    if data.count(0) == len(data):
        return 0
    m = re.match(rb"KBVM blk=(\d{8}) gen=(\d{8})\.\n", data)
    if not m or int(m.group(1)) != i:
        return None
    g = int(m.group(2))
    return g if data == pattern(i, g) else None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--image", required=True)
    ap.add_argument("--blocks", type=int, required=True)
    ap.add_argument("--max-gap", type=float, default=0)
    ap.add_argument("logs", nargs="+")
    a = ap.parse_args()
    problems = []
    acked = {}
    last = (0, -1)           # (gen, block) of the last acknowledged write, in the writer's order
    per_log = []
    gaps = []
    for path in a.logs:
        with open(path, "rb") as f:
            text = f.read()
        lines = text.split(b"\n")[:-1]     # the last piece has no newline: incomplete
        n = 0
        prev = None
        gap = (0.0, None)
        for line in lines:
            line = line.rstrip(b"\r")
            if ERR_RE.search(line):
                problems.append("guest I/O error in %s: %s" % (path, line.decode(errors="replace")[:200]))
            m = ACK_RE.match(line)
            if m:
                i, g = int(m.group(1)), int(m.group(2))
                if i >= a.blocks:
                    problems.append("%s: ack for block %d, beyond --blocks %d" % (path, i, a.blocks))
                    continue
                acked[i] = max(acked.get(i, 0), g)
                last = max(last, (g, i))
                n += 1
                if m.group(3):
                    t = float(m.group(3))
                    if prev is not None and t - prev > gap[0]:
                        gap = (t - prev, "before block %d gen %d" % (i, g))
                    prev = t
        name = path.rsplit("/", 1)[-1]
        per_log.append((name, n))
        gaps.append("%s %.2f s%s" % (name, gap[0], " (%s)" % gap[1] if gap[1] else ""))
        if a.max_gap and gap[0] > a.max_gap:
            problems.append("%s: the guest waited %.2f s between two acknowledged writes (%s), over %.1f s" %
                            (name, gap[0], gap[1], a.max_gap))
    nxt = (last[0], last[1] + 1) if last[1] + 1 < a.blocks else (last[0] + 1, 0)
    with open(a.image, "rb") as f:
        img = f.read()
    if len(img) < a.blocks * BLK:
        problems.append("image is %d bytes, smaller than %d blocks" % (len(img), a.blocks))
    verified = ahead = never = 0
    for i in range(min(a.blocks, len(img) // BLK)):
        got = block_gen(i, img[i * BLK:(i + 1) * BLK])
        want = acked.get(i, 0)
        if got is None:
            problems.append("block %d: neither zeros nor a clean pattern of block %d: %r..." %
                            (i, i, img[i * BLK:i * BLK + 40]))
        elif got == want:
            verified += 1
            never += want == 0
        elif got == want + 1 and (got, i) == nxt:
            ahead += 1
        else:
            problems.append("block %d holds generation %d, last acknowledged %d (next write in order: block %d gen %d)" %
                            (i, got, want, nxt[1], nxt[0]))
    tail = img[a.blocks * BLK:]
    if tail.count(0) != len(tail):
        off = next(k for k, b in enumerate(tail) if b)
        problems.append("non-zero data past the writer's blocks at byte %d" % (a.blocks * BLK + off))
    total = sum(n for _, n in per_log)
    summary = ("%d acknowledged writes (last: block %d gen %d); %d of %d blocks hold their last "
               "acknowledged generation, %d the next one (the write in flight), %d never written; %s" %
               (total, last[1], last[0], verified - never, a.blocks, ahead, never,
                ", ".join("%s: %d" % (p, n) for p, n in per_log)) +
               "; longest wait between two acks: " + ", ".join(gaps))
    if problems:
        for p in problems[:20]:
            print("kb-vmverify: " + p, file=sys.stderr)
        if len(problems) > 20:
            print("kb-vmverify: ... and %d more" % (len(problems) - 20), file=sys.stderr)
        print("kb-vmverify: FAILED; " + summary, file=sys.stderr)
        sys.exit(1)
    print(summary)


if __name__ == "__main__":
    main()
