#!/usr/bin/env python3
"""fio-rows.py — the block-I/O rows of issue 16, measured with fio on every system
in one interleaved run: files on a mount (kembar, GlusterFS FUSE, the local disk),
Ceph RBD through librbd (fio's rbd engine) and GlusterFS through libgfapi (fio's
gfapi engines), i.e. the way qemu reaches each of them.

  bench/fio-rows.py [options] --target SPEC [--target SPEC ...]

SPEC is comma-separated key=value, the label first:
  label=kembar,kind=file,dir=/mnt/k[,cpu=PID:PID...]
  label=librbd,kind=rbd,pool=vmpool,image=vm[,client=admin][,cpu=PID:PID...]
  label=gfapi,kind=gfapi,volume=kbbench,host=HOST[,cpu=PID:PID...]
cpu= lists the system's daemons (FUSE client, bricks, OSDs); the fio process that
runs the job (with librbd or libgfapi inside it, or the kernel's work for the
local disk and the FUSE request) is always counted too.

Rows (every one 4 KiB unless said; O_DIRECT on files; librbd with rbd_cache off):
  qd1w   random write, queue depth 1            (psync | gfapi | rbd)
  qd1r   random read, queue depth 1
  dsync  random write + fdatasync after each     (buffered; librbd: flush, as fio's
         rbd engine has no fdatasync and a flush is what a guest's fdatasync becomes)
  qd16w  random write, queue depth 16           (io_uring | gfapi_async | rbd)
  qd16r  random read, queue depth 16
  seqw   sequential write of SEQ in 1 MiB blocks at queue depth 4, fsync at the end
         (in the timing), into space never written before
  seqr   the same file read back in 1 MiB blocks at queue depth 4, after dropping
         the kernel's caches (cold: bricks and the client read from disk)
Random rows run --runtime seconds each on a RAND-sized file written once before the
first round (not timed). Latency is fio's completion latency (clat; for psync the
whole call), p50 and p99; dsync also reports the fdatasync's own latency.

Order: round by round, every target runs all rows (one fio process, jobs one after
the other) before the next target; the order of the targets rotates by one each
round. Cells are medians over the rounds, with min-max.

Outputs: --csv FILE (one line per row, metric, target, round) and --md FILE (the
markdown tables; ratios name the first target, default kembar, against the others).
--mail-csv FILE adds the mail rows from a kembar-bench --mail CSV to the tables.
Exit status 1 when a job failed (its cells show "failed"), 2 on bad arguments.
"""
import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time

HZ = os.sysconf("SC_CLK_TCK")
SEQ_BASE = 1 << 30            # librbd: sequential rows write from 1 GiB up, a new range per round

ROWS = [  # id, title, kind ("rand" or "seq")
    ("qd1w", "4 KiB random write, O_DIRECT, QD 1", "rand"),
    ("qd1r", "4 KiB random read, O_DIRECT, QD 1", "rand"),
    ("dsync", "4 KiB random write + fdatasync each, QD 1", "rand"),
    ("qd16w", "4 KiB random write, O_DIRECT, QD 16", "rand"),
    ("qd16r", "4 KiB random read, O_DIRECT, QD 16", "rand"),
    ("seqw", "sequential write, 1 MiB O_DIRECT, QD 4, + fsync", "seq"),
    ("seqr", "sequential read, cold, 1 MiB O_DIRECT, QD 4", "seq"),
]
HIGHER_BETTER = {"IOPS", "MB/s", "ops/s"}


def die(msg, code=2):
    print(f"fio-rows: {msg}", file=sys.stderr)
    sys.exit(code)


def size_arg(s):
    mult = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    s = s.strip().lower()
    try:
        return int(s[:-1]) * mult[s[-1]] if s[-1] in mult else int(s)
    except (ValueError, IndexError):
        raise argparse.ArgumentTypeError(f"bad size '{s}' (e.g. 256M, 1G)")


def parse_target(spec):
    t = {}
    for kv in spec.split(","):
        k, sep, v = kv.partition("=")
        if not sep or not k:
            die(f"--target: '{kv}' is not key=value in '{spec}'")
        t[k] = v
    need = {"file": ["dir"], "rbd": ["pool", "image"], "gfapi": ["volume", "host"]}
    if "label" not in t or t.get("kind") not in need:
        die(f"--target: needs label= and kind=file|rbd|gfapi: '{spec}'")
    for k in need[t["kind"]]:
        if k not in t:
            die(f"--target {t['label']}: kind={t['kind']} needs {k}=")
    t["pids"] = [int(p) for p in t.get("cpu", "").split(":") if p]
    return t


# ------------------------------------------------------------------ job files

def engine_opts(t, row):
    """The ioengine and its options for target T and row ROW (a list of lines)."""
    qd1 = row in ("qd1w", "qd1r", "dsync")
    if t["kind"] == "file":
        return ["ioengine=psync" if qd1 else "ioengine=io_uring"]
    if t["kind"] == "gfapi":
        return ["ioengine=gfapi" if qd1 else "ioengine=gfapi_async",
                f"volume={t['volume']}", f"brick={t['host']}"]
    return ["ioengine=rbd", f"clientname={t.get('client', 'admin')}", f"pool={t['pool']}",
            f"rbdname={t['image']}"]


def names(t, rnd):
    """(random file, sequential file) of target T in round RND; None for librbd."""
    if t["kind"] == "file":
        return os.path.join(t["dir"], "kb16.rand"), os.path.join(t["dir"], f"kb16.seq{rnd}")
    if t["kind"] == "gfapi":
        return "kb16-gfapi.rand", f"kb16-gfapi.seq{rnd}"
    return None, None


def job(t, row, rnd, a, mark):
    rfile, sfile = names(t, rnd)
    lines = [f"[{row}]", "stonewall"] + engine_opts(t, row)
    pids = " ".join(str(p) for p in t["pids"])
    if row in ("qd1w", "qd1r", "dsync", "qd16w", "qd16r"):
        rw = "randread" if row.endswith("r") else "randwrite"
        lines += [f"rw={rw}", "bs=4k", f"size={a.rand_size}", "time_based",
                  f"runtime={a.runtime}", "norandommap", "randrepeat=0"]
        lines += [f"iodepth={16 if row.startswith('qd16') else 1}"]
        if t["kind"] == "rbd":
            lines += ["offset=0"]
        else:
            lines += [f"filename={rfile}"]
        if row == "dsync":
            lines += ["fsync=1"] if t["kind"] == "rbd" else ["direct=0", "fdatasync=1"]
        elif t["kind"] != "rbd":
            lines += ["direct=1"]
    else:
        lines += ["rw=write" if row == "seqw" else "rw=read", "bs=1M", f"size={a.seq_size}",
                  "iodepth=4"]
        if t["kind"] == "rbd":
            lines += [f"offset={SEQ_BASE + rnd * a.seq_size}"]
        else:
            lines += [f"filename={sfile}", "direct=1"]
        if row == "seqw":
            lines += ["end_fsync=1"]
        else:
            # Cold: the kernel's caches go (bricks, client), then the CPU mark.
            lines += [f"exec_prerun={mark} --drop-caches {pids}"]
            if t["kind"] != "rbd":
                lines += ["unlink=1"]
    if row != "seqr":
        lines += [f"exec_prerun={mark} {pids}"]
    lines += [f"exec_postrun={mark} {pids}"]
    return "\n".join(lines) + "\n"


def prep_job(t, a):
    rfile, _ = names(t, 0)
    lines = ["[prep]"] + engine_opts(t, "seqw") + ["rw=write", "bs=1M", f"size={a.rand_size}",
                                                   "iodepth=4", "end_fsync=1"]
    lines += ["offset=0"] if t["kind"] == "rbd" else [f"filename={rfile}", "direct=1"]
    return "\n".join(lines) + "\n"


def run_fio(jobfile, outjson, cwd, timeout):
    """Run fio; the parsed JSON (or None) and stderr's last lines."""
    try:
        p = subprocess.run(["fio", "--output-format=json", f"--output={outjson}", jobfile],
                           cwd=cwd, capture_output=True, text=True, timeout=timeout)
        err = p.stderr.strip().splitlines()[-3:]
    except subprocess.TimeoutExpired:
        return None, ["fio timed out"]
    try:
        with open(outjson) as f:
            text = f.read()
        return json.loads(text[text.index("{"):]), err
    except (OSError, ValueError):
        return None, err or ["fio wrote no JSON"]


# -------------------------------------------------------------- measurement

def ticks(path):
    try:
        with open(path) as f:
            v = [int(x) for x in f.read().split()]
        return v if v and min(v) >= 0 else None
    except (OSError, ValueError):
        return None


def pct(lat, p):
    v = (lat or {}).get("percentile", {}).get(f"{p:.6f}")
    return v / 1000.0 if v is not None else None


def parse_job(j, row, cwd):
    """{metric: value} of one job's JSON."""
    if j.get("error"):
        return None
    d = j["read"] if row in ("qd1r", "qd16r", "seqr") else j["write"]
    out = {}
    if row.startswith("seq"):
        out["MB/s"] = d["bw_bytes"] / 2**20
    else:
        out["IOPS"] = d["iops"]
        out["p50 us"] = pct(d.get("clat_ns"), 50)
        out["p99 us"] = pct(d.get("clat_ns"), 99)
    if row == "dsync":
        out["sync p50 us"] = pct(j.get("sync", {}).get("lat_ns"), 50)
        out["sync p99 us"] = pct(j.get("sync", {}).get("lat_ns"), 99)
    a, b = ticks(os.path.join(cwd, f"{row}.prerun.txt")), ticks(os.path.join(cwd, f"{row}.postrun.txt"))
    if a and b and len(a) == len(b):
        cpu_s = (sum(b) - sum(a)) / HZ
        if row.startswith("seq"):
            out["cpu s/GiB"] = cpu_s / (d["io_bytes"] / 2**30) if d["io_bytes"] else None
        else:
            out["cpu us/op"] = cpu_s * 1e6 / d["total_ios"] if d["total_ios"] else None
    return out


MARK = r"""#!/bin/sh
# CPU ticks (utime + stime, whole process) of the fio process running this job, then
# of each PID given, on one line; -1 for a process that is gone. --drop-caches first
# syncs and drops the kernel's page, dentry and inode caches.
if [ "${1:-}" = --drop-caches ]; then
    shift
    sync
    echo 3 >/proc/sys/vm/drop_caches
fi
p=$$
while [ "$p" -gt 1 ]; do
    [ "$(cat /proc/$p/comm 2>/dev/null)" = fio ] && break
    p=$(awk '{print $4}' /proc/$p/stat 2>/dev/null || echo 1)
done
for q in "$p" "$@"; do awk '{print $14 + $15}' /proc/$q/stat 2>/dev/null || echo -1; done | paste -sd' '
"""


def measure(a, targets):
    work = a.work
    os.makedirs(work, exist_ok=True)
    mark = os.path.join(work, "cpu-mark.sh")
    with open(mark, "w") as f:
        f.write(MARK)
    os.chmod(mark, 0o755)
    res = {}        # (row, metric, label) -> [values per round] (None = failed)
    failed = False
    for t in targets:
        d = os.path.join(work, f"{t['label']}-prep")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "job.fio"), "w") as f:
            f.write(prep_job(t, a))
        t0 = time.time()
        j, err = run_fio("job.fio", os.path.join(d, "out.json"), d, 600)
        ok = j and not j["jobs"][0].get("error")
        say(f"{t['label']}: prepared the {a.rand_size >> 20} MiB random-I/O file "
            f"({time.time() - t0:.1f} s){'' if ok else ': FAILED ' + ' / '.join(err)}")
        t["prep_ok"] = bool(ok)
        failed |= not ok
    for rnd in range(a.rounds):
        order = targets[rnd % len(targets):] + targets[:rnd % len(targets)]
        for t in order:
            d = os.path.join(work, f"{t['label']}-r{rnd}")
            os.makedirs(d, exist_ok=True)
            rows = [r for r, _, _ in ROWS if r in a.rows]
            with open(os.path.join(d, "job.fio"), "w") as f:
                f.write("".join(job(t, r, rnd, a, mark) + "\n" for r in rows))
            t0 = time.time()
            j, err = (run_fio("job.fio", os.path.join(d, "out.json"), d, 60 * len(rows) + a.runtime * 10)
                      if t["prep_ok"] else (None, ["preparation failed"]))
            jobs = {x["jobname"]: x for x in (j or {}).get("jobs", [])}
            for r in rows:
                m = parse_job(jobs[r], r, d) if r in jobs else None
                if m is None:
                    failed = True
                    res.setdefault((r, "*", t["label"]), []).append(None)
                    continue
                for k, v in m.items():
                    res.setdefault((r, k, t["label"]), []).append(v)
            bad = [r for r in rows if r not in jobs or jobs[r].get("error")]
            say(f"round {rnd + 1}/{a.rounds} {t['label']}: {time.time() - t0:.1f} s"
                + (f"; FAILED: {' '.join(bad)} ({' / '.join(err)})" if bad else ""))
    for t in targets:       # the random-I/O files (librbd: the image stays, ceph.sh owns it)
        rfile, _ = names(t, 0)
        if t["kind"] == "file":
            try:
                os.unlink(rfile)
            except OSError:
                pass
        elif t["kind"] == "gfapi":
            d = os.path.join(work, f"{t['label']}-cleanup")
            os.makedirs(d, exist_ok=True)
            with open(os.path.join(d, "job.fio"), "w") as f:
                f.write("\n".join(["[cleanup]"] + engine_opts(t, "qd1r") +
                                  [f"filename={rfile}", "rw=read", "bs=4k", "size=4k", "unlink=1"]) + "\n")
            run_fio("job.fio", os.path.join(d, "out.json"), d, 120)
    return res, failed


def say(msg):
    print(f"==> {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------ reporting

def med(vals):
    v = [x for x in vals if x is not None]
    if not v or len(v) < len(vals):
        return None
    return statistics.median(v)


def fmt(v):
    if v is None:
        return "n/a"
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.1f}" if abs(v) >= 10 else f"{v:.2f}"


def cell(res, row, metric, label):
    vals = res.get((row, metric, label))
    if vals is None:
        return "failed" if res.get((row, "*", label)) else "n/a", None
    m = med(vals)
    if m is None:
        return "failed", None
    v = [x for x in vals if x is not None]
    rng = f" [{fmt(min(v))}–{fmt(max(v))}]" if len(v) > 1 else ""
    return f"{fmt(m)}{rng}", m


def ratio(a, b):
    return f"{a / b:.2f}" if a is not None and b else "n/a"


def read_mail(path):
    """kembar-bench --mail CSV -> {(row, metric, label): [mean, min, max, runs]}"""
    out = {}
    import csv
    with open(path) as f:
        for r in csv.DictReader(f):
            if not r["test"].startswith("mail-") or r["status"] != "ok":
                continue
            key = (r["test"], r["metric"] if r["metric"] != "mean" else "", r["target"])
            out[key] = [float(r["mean"]), float(r["min"]), float(r["max"]), int(r["runs"])]
    return out


def markdown(a, targets, res, mail):
    labels = [t["label"] for t in targets]
    base = labels[0]
    others = [l for l in labels[1:]]
    title = {t["label"]: t.get("title", t["label"]) for t in targets}
    out = []
    hdr = "| row | metric | " + " | ".join(title[l] for l in labels) + " | " + \
        " | ".join(f"{base}/{l}" for l in others) + " |"
    out += [hdr, "|" + "---|" * (2 + len(labels) + len(others))]
    metrics_of = {"rand": ["IOPS", "p50 us", "p99 us"], "seq": ["MB/s"]}
    for r, name, kind in ROWS:
        if r not in a.rows:
            continue
        ms = metrics_of[kind] + (["sync p50 us", "sync p99 us"] if r == "dsync" else [])
        for i, m in enumerate(ms):
            cells, vals = [], {}
            for l in labels:
                s, v = cell(res, r, m, l)
                cells.append(s)
                vals[l] = v
            rat = [ratio(vals[base], vals[l]) for l in others]
            out.append(f"| {name if i == 0 else ''} | {m} | " + " | ".join(cells) + " | " +
                       " | ".join(rat) + " |")
    cpu = ["", "CPU per operation (the fio process with its library or system calls, plus "
           "the system's daemons: FUSE client, bricks, OSDs), medians:", "",
           "| row | unit | " + " | ".join(title[l] for l in labels) + " | " +
           " | ".join(f"{base}/{l}" for l in others) + " |",
           "|" + "---|" * (2 + len(labels) + len(others))]
    for r, name, kind in ROWS:
        if r not in a.rows:
            continue
        m = "cpu s/GiB" if kind == "seq" else "cpu us/op"
        vals = {l: cell(res, r, m, l)[1] for l in labels}
        cpu.append(f"| {name} | {m.replace('cpu ', '')} | " +
                   " | ".join(fmt(vals[l]) for l in labels) + " | " +
                   " | ".join(ratio(vals[base], vals[l]) for l in others) + " |")
    out += cpu
    if mail:
        mlabels = [l for l in labels if any(k[2] == l for k in mail)]
        mothers = [l for l in mlabels if l != base]
        out += ["", "Small files (kembar-bench --mail: PostMark's model, "
                f"{a.mail_desc}):", "",
                "| metric | " + " | ".join(title[l] for l in mlabels) + " | " +
                " | ".join(f"{base}/{l}" for l in mothers) + " |",
                "|" + "---|" * (1 + len(mlabels) + len(mothers))]
        for key, name in [(("mail-create", ""), "creates/s (creation phase)"),
                          (("mail-delete", ""), "deletes/s (deletion phase)"),
                          (("mail-tx", ""), "transactions/s"),
                          (("mail-create", "p50"), "create latency p50, µs"),
                          (("mail-create", "p99"), "create latency p99, µs"),
                          (("mail-tx", "p99"), "transaction latency p99, µs")]:
            vals = {l: (mail.get(key + (l,)) or [None])[0] for l in mlabels}
            out.append(f"| {name} | " + " | ".join(fmt(vals[l]) for l in mlabels) + " | " +
                       " | ".join(ratio(vals[base], vals[l]) for l in mothers) + " |")
    return "\n".join(out) + "\n"


def goals(a, res, mail, names_):
    """The issue-16 goal table. names_: role -> label (kembar, local, rbd, gfapi, gfuse)."""
    k, loc, rbd, gf, gfuse = (names_.get(x) for x in ("kembar", "local", "rbd", "gfapi", "gfuse"))

    def m(row, metric, label):
        return cell(res, row, metric, label)[1] if label else None

    def line(what, x, y, goal):
        r = x / y if x is not None and y else None
        met = "n/a" if r is None else "yes" if r >= goal else "**no**"
        return f"| {what} | {fmt(x)} | {fmt(y)} | {'n/a' if r is None else f'{r:.2f}x'} | ≥ {goal}x | {met} |"

    out = ["| goal | kembar | other | kembar/other | goal | met |", "|---|---|---|---|---|---|"]
    out.append(line("4 KiB O_DIRECT write QD 1, IOPS, vs local", m("qd1w", "IOPS", k), m("qd1w", "IOPS", loc), 0.5))
    out.append(line("4 KiB write + fdatasync, IOPS, vs local", m("dsync", "IOPS", k), m("dsync", "IOPS", loc), 0.5))
    out.append(line("4 KiB random write QD 16, IOPS, vs local", m("qd16w", "IOPS", k), m("qd16w", "IOPS", loc), 0.6))
    out.append(line("4 KiB random read QD 16, IOPS, vs local", m("qd16r", "IOPS", k), m("qd16r", "IOPS", loc), 0.7))
    out.append(line("cold sequential read, MB/s, vs local", m("seqr", "MB/s", k), m("seqr", "MB/s", loc), 0.9))
    for peer, pl in (("librbd", rbd), ("libgfapi", gf)):
        for row, what in (("qd1w", "random write QD 1"), ("qd1r", "random read QD 1"),
                          ("qd16w", "random write QD 16"), ("qd16r", "random read QD 16")):
            out.append(line(f"4 KiB {what}, IOPS, vs {peer}", m(row, "IOPS", k), m(row, "IOPS", pl), 3))
        out.append(line(f"sequential write, MB/s, vs {peer}", m("seqw", "MB/s", k), m("seqw", "MB/s", pl), 2))
    if mail:
        tx = {l: (mail.get(("mail-tx", "", l)) or [None])[0] for l in (k, loc, gfuse)}
        out.append(line("small files, transactions/s, vs local", tx[k], tx[loc], 0.2))
        out.append(line("small files, transactions/s, vs GlusterFS FUSE", tx[k], tx[gfuse], 4))
    return "\n".join(out) + "\n"


def read_csv(path):
    res = {}
    with open(path) as f:
        next(f)
        for line in f:
            r, metric, label, _, v = line.rstrip("\n").split(",")
            res.setdefault((r, metric, label), []).append(float(v) if v else None)
    return res


def write_csv(path, res):
    with open(path, "w") as f:
        f.write("row,metric,target,round,value\n")
        for (r, metric, label), vals in sorted(res.items()):
            for i, v in enumerate(vals):
                f.write(f"{r},{metric},{label},{i + 1},{'' if v is None else f'{v:.6g}'}\n")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target", action="append", default=[], help="see the top of this file")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--runtime", type=int, default=4, help="seconds per random row")
    p.add_argument("--rand-size", type=size_arg, default=256 << 20)
    p.add_argument("--seq-size", type=size_arg, default=512 << 20)
    p.add_argument("--rows", default=",".join(r for r, _, _ in ROWS))
    p.add_argument("--work", required=True, help="directory for job files and fio's output")
    p.add_argument("--csv", help="write every measured value here")
    p.add_argument("--from-csv", help="measure nothing: report what an earlier --csv holds")
    p.add_argument("--md")
    p.add_argument("--goals-md", help="also write the issue-16 goal table here")
    p.add_argument("--roles", default="", help="kembar=L,local=L,rbd=L,gfapi=L,gfuse=L for --goals-md")
    p.add_argument("--mail-csv")
    p.add_argument("--mail-desc", default="2,000 files of 0.5-64 KiB in 10 directories, 10,000 transactions")
    p.add_argument("--titles", default="", help="label=Column title,... for the tables")
    a = p.parse_args()
    if not shutil.which("fio") and not a.from_csv:
        die("fio not found (apt-get install fio)")
    targets = [parse_target(s) for s in a.target]
    if not targets:
        die("no --target given")
    if len({t["label"] for t in targets}) != len(targets):
        die("two targets with one label")
    a.rows = [r for r in a.rows.split(",") if r]
    bad = [r for r in a.rows if r not in {x for x, _, _ in ROWS}]
    if bad or a.rounds < 1 or a.runtime < 1:
        die(f"bad --rows {bad}, --rounds or --runtime")
    if any(t["kind"] == "rbd" for t in targets) and SEQ_BASE + a.rounds * a.seq_size > 4 << 30 \
            and "seqw" in a.rows:
        die("librbd: rounds x --seq-size must fit between 1 GiB and the 4 GiB image's end")
    for kv in filter(None, a.titles.split(",")):
        l, _, ttl = kv.partition("=")
        for t in targets:
            if t["label"] == l:
                t["title"] = ttl
    if a.from_csv:
        res, failed = read_csv(a.from_csv), False
    else:
        res, failed = measure(a, targets)
    mail = read_mail(a.mail_csv) if a.mail_csv and os.path.exists(a.mail_csv) else {}
    if a.csv and not a.from_csv:
        write_csv(a.csv, res)
    if a.md:
        with open(a.md, "w") as f:
            f.write(markdown(a, targets, res, mail))
    if a.goals_md:
        roles = dict(kv.split("=", 1) for kv in a.roles.split(",") if "=" in kv)
        with open(a.goals_md, "w") as f:
            f.write(goals(a, res, mail, roles))
    sys.exit(1 if failed else 0)


def on_term(signum, frame):
    raise KeyboardInterrupt     # subprocess.run kills the fio it waits for, then we leave


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, on_term)
    try:
        main()
    except KeyboardInterrupt:
        print("fio-rows: interrupted", file=sys.stderr)
        sys.exit(130)
