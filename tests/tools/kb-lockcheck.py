#!/usr/bin/env python3
"""kb-lockcheck.py — the kernel's lock rules, checked on one file seen through two paths.

    kb-lockcheck.py SCENARIO PATH_A PATH_B       SCENARIO: one of the names below, or "all"
    kb-lockcheck.py probe PATH START LEN         print the lock a write-lock test over
                                                 [START, START+LEN) finds: W, R or U (none);
                                                 F_OFD_GETLK takes no lock, so it can watch
                                                 qemu's image locks (bytes 100-299) without
                                                 disturbing them, unlike qemu-img info
    kb-lockcheck.py try PATH                     from a new process and description, ask
                                                 (non-blocking) for what "hold" holds: an OFD
                                                 write lock on [0,64K), a POSIX one on
                                                 [64K,128K), flock LOCK_EX; print e.g.
                                                 "ofd=EAGAIN posix=EAGAIN flock=EAGAIN" (a lock
                                                 granted, "ok", is given back at once)
    kb-lockcheck.py hold PATH LOG [TAG [WAIT]]   a lock holder that writes (see "hold" below)

PATH_A and PATH_B name the same file: through two kembar mounts (two kembar-fuse processes, two
"hypervisors"), or both the same path on a local filesystem, where every rule holds (the test
runs that too: it shows the expectations are the kernel's, not ours). The file is created through
PATH_A if missing; with "all", each scenario uses its own file, PATH_A.<scenario>, so a lock one
scenario leaves behind cannot fail the next.

Every lock holder is a separate process (an "actor", forked before any lock is taken, driven
over a pipe), and every check is made by other processes, so the checks see what any other
program would: F_OFD_GETLK and F_GETLK answers (lock type, and for POSIX locks the holder's pid),
and the refusals (EAGAIN / EWOULDBLOCK) of conflicting requests through the other path.

"Gone at once" is measured: the kernel sends FUSE's RELEASE without waiting for its answer, so
the first probe may run a few milliseconds before kembar-fuse has processed it; a lock must be
seen gone within GONE_LIMIT (1 s) of the close or the holder's death, and the time is printed.
"Kept" is checked twice, at once and again after KEEP_WAIT (0.5 s).

Scenarios (each prints its steps and "ok NAME: ..." or "FAIL NAME: ..."; exit 1 if one failed):
  ofd-close      OFD lock through a descriptor on A; that descriptor closed while its process
                 lives on (with another descriptor of the file open): gone for A and B
  ofd-kill9      OFD lock held by a process killed with SIGKILL: gone
  posix-close    POSIX lock through fd1; the same process closes fd2 (same file): gone
  mixed          OFD lock on one range and POSIX lock on another, one process: closing a third
                 descriptor drops the POSIX lock only; closing the OFD's descriptor drops the OFD
                 lock (and the process's POSIX locks)
  flock-dup      flock kept while a dup of the descriptor is open, released at the last close
  ofd-fork       OFD description shared with a forked child: the child's close (and exit) keeps
                 the lock; the parent's last close drops it
While each lock is held, the conflicting request through B is refused (and a disjoint one granted).

hold: the application side of a VM host's image lock, for tests that put a holder through the
life of a cluster (tests/integration/62-lock-life). It opens PATH three times (created if
missing) and takes an OFD write lock on [0,64K) through the first description, a POSIX write
lock on [64K,128K) through the second and flock(LOCK_EX) through the third, all non-blocking:
with WAIT (seconds) it asks again every 50 ms until granted or WAIT is over (exit 3), without it
a refusal is exit 3 at once. Then, every 100 ms until SIGTERM or SIGINT, a tick N writes a
4 KiB record (TAG and N, repeated) at offset 0 through the first descriptor and at 64K through
the second, each pwrite followed by fsync. LOG gets one line per event, flushed at once,
with wall-clock times (time.time()) so a test can set them against its own steps:
    locked T                                   every lock granted
    w T0 T1 N ofd|posix ok|ERRNO[:pwrite|:fsync]   one write+fsync, started T0, ended T1
    summary ticks=.. ok=.. errors=.. first_error=.. last_ofd=N last_posix=N readback=R sha256=S
At the end, the whole file is read back through the first descriptor: readback=ok when it is
exactly what the last successful writes make it (the records at 0 and 64K, zeros between),
else "differs" or the errno name of the read; sha256 is that of the expected content, so a test
can compare brick copies with it. The summary also goes to stdout; the exit status is 0.
TAG defaults to "A"; the holder of another client uses another, so a record tells who wrote it.
"""
import errno
import fcntl
import hashlib
import json
import os
import signal
import struct
import sys
import time

F_OFD_GETLK, F_OFD_SETLK, F_OFD_SETLKW = 36, 37, 38     # x86_64 (asm-generic/fcntl.h)
GONE_LIMIT = 1.0
KEEP_WAIT = 0.5
TYPES = {"R": fcntl.F_RDLCK, "W": fcntl.F_WRLCK, "U": fcntl.F_UNLCK}
NAMES = {v: k for k, v in TYPES.items()}


class Fail(Exception):
    pass


def flock_struct(ltype, start, length, pid=0):
    # struct flock on x86_64: short l_type, short l_whence, off_t l_start, off_t l_len, pid_t l_pid
    return struct.pack("hhqqi4x", ltype, os.SEEK_SET, start, length, pid)


def lock_op(fd, cmd, ltype, start, length):
    """fcntl lock call; returns (l_type, l_pid) of the result structure."""
    r = fcntl.fcntl(fd, cmd, flock_struct(ltype, start, length))
    t, _w, _s, _l, pid = struct.unpack("hhqqi4x", r)
    return t, pid


# ---- actors: a process that holds descriptors and locks, driven over a pipe -----------------

def actor_loop(rd, wr, fds=None):
    fds = {} if fds is None else fds
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)       # forked children reap themselves
    cin = os.fdopen(rd, "r")
    for line in cin:
        cmd = json.loads(line)
        op = cmd["op"]
        try:
            res = "ok"
            if op == "open":
                fds[cmd["fd"]] = os.open(cmd["path"], os.O_RDWR)
            elif op == "close":
                os.close(fds.pop(cmd["fd"]))
            elif op == "dup":
                fds[cmd["new"]] = os.dup(fds[cmd["fd"]])
            elif op in ("ofd", "posix"):
                c = F_OFD_SETLK if op == "ofd" else fcntl.F_SETLK
                lock_op(fds[cmd["fd"]], c, TYPES[cmd["type"]], cmd["start"], cmd["len"])
            elif op == "flock":
                fcntl.flock(fds[cmd["fd"]], {"EX": fcntl.LOCK_EX | fcntl.LOCK_NB,
                                              "SH": fcntl.LOCK_SH | fcntl.LOCK_NB,
                                              "UN": fcntl.LOCK_UN}[cmd["how"]])
            elif op == "probe":
                # A fresh description: F_OFD_GETLK and F_GETLK for a write lock over the range.
                fd = os.open(cmd["path"], os.O_RDWR)
                try:
                    t1, p1 = lock_op(fd, F_OFD_GETLK, fcntl.F_WRLCK, cmd["start"], cmd["len"])
                    t2, p2 = lock_op(fd, fcntl.F_GETLK, fcntl.F_WRLCK, cmd["start"], cmd["len"])
                finally:
                    os.close(fd)
                res = "%s %d %s %d" % (NAMES.get(t1, t1), p1, NAMES.get(t2, t2), p2)
            elif op == "fork":
                r2, w2 = os.pipe()
                r3, w3 = os.pipe()
                pid = os.fork()
                if pid == 0:
                    os.close(w2)
                    os.close(r3)
                    cin = None
                    actor_loop(r2, w3, dict(fds))
                    os._exit(0)
                os.close(r2)
                os.close(w3)
                res = "%d %d %d" % (pid, w2, r3)
                # The parent side keeps the pipe ends; the test talks to the child through them
                # via /proc/<pid>/fd (see Actor.fork).
            elif op == "exit":
                os.write(wr, b"ok\n")
                os._exit(0)
            else:
                res = "err unknown op"
        except OSError as e:
            res = "err %s" % errno.errorcode.get(e.errno, e.errno)
        except Exception as e:          # a bad command: say so, stay alive
            res = "err %s: %s" % (type(e).__name__, e)
        os.write(wr, (res + "\n").encode())
    os._exit(0)


class Actor:
    def __init__(self, name, pid=None, wr=None, rd=None):
        self.name = name
        if pid is not None:
            self.pid, self.wr, self.rd = pid, wr, rd
            self.child = False
            return
        r1, w1 = os.pipe()
        r2, w2 = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:
            os.close(w1)
            os.close(r2)
            try:
                actor_loop(r1, w2)
            except BaseException:
                import traceback
                traceback.print_exc()
            finally:
                os._exit(0)
        os.close(r1)
        os.close(w2)
        self.wr, self.rd = w1, os.fdopen(r2, "r")
        self.child = True

    def call(self, **cmd):
        os.write(self.wr, (json.dumps(cmd) + "\n").encode())
        line = self.rd.readline()
        if not line:
            raise Fail("actor %s (pid %d) died during %s" % (self.name, self.pid, cmd))
        return line.strip()

    def must(self, **cmd):
        r = self.call(**cmd)
        if r != "ok":
            raise Fail("%s: %s failed: %s" % (self.name, cmd, r))

    def fork(self, name):
        """A child of this actor's process, sharing its descriptors (and their OFD locks)."""
        r = self.call(op="fork")
        pid, w, r_ = (int(x) for x in r.split())
        # Open the pipe ends the parent actor holds, through /proc: we are not their process.
        wr = os.open("/proc/%d/fd/%d" % (self.pid, w), os.O_WRONLY)
        rd = os.fdopen(os.open("/proc/%d/fd/%d" % (self.pid, r_), os.O_RDONLY), "r")
        return Actor(name, pid, wr, rd)

    def wait_gone(self):
        """Until the process has exited (its descriptors closed): reaped if it is our child,
        else (forked by another actor, which reaps it) a zombie or gone."""
        if self.child:
            os.waitpid(self.pid, 0)
            return
        while True:
            try:
                with open("/proc/%d/stat" % self.pid) as f:
                    if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                        return
            except OSError:
                return
            time.sleep(0.005)

    def kill9(self):
        os.kill(self.pid, signal.SIGKILL)
        self.wait_gone()

    def exit(self):
        try:
            self.call(op="exit")
        except Fail:
            pass
        self.wait_gone()


# ---- checks -----------------------------------------------------------------------------------

class Ctx:
    def __init__(self, a, b):
        self.a, self.b = a, b
        self.actors = []
        # Probers first: forked before anyone holds a lock, they share no description.
        self.pa = self.actor("probe-A")
        self.pb = self.actor("probe-B")

    def actor(self, name):
        x = Actor(name)
        self.actors.append(x)
        return x

    def close(self):
        for x in self.actors:
            try:
                os.kill(x.pid, signal.SIGKILL)
                if x.child:
                    os.waitpid(x.pid, 0)
            except OSError:
                pass

    def probe(self, side, start, length):
        """('W'|'R'|'U', pid) seen by F_OFD_GETLK and F_GETLK through side 'A' or 'B'."""
        prober, path = (self.pa, self.a) if side == "A" else (self.pb, self.b)
        r = prober.call(op="probe", path=path, start=start, len=length)
        if r.startswith("err"):
            raise Fail("probe through %s: %s" % (side, r))
        t1, p1, t2, p2 = r.split()
        if t1 != t2:
            raise Fail("through %s, F_OFD_GETLK says %s but F_GETLK says %s for [%d,+%d)" %
                       (side, t1, t2, start, length))
        return t1, int(p2)

    def expect_held(self, what, start, length, ltype="W", pid=None, sides="AB"):
        for side in sides:
            t, p = self.probe(side, start, length)
            if t != ltype:
                raise Fail("%s: through %s, a write-lock test over [%d,+%d) finds %s, want %s held" %
                           (what, side, start, length, "no lock" if t == "U" else t, ltype))
            if pid is not None and p != pid:
                raise Fail("%s: through %s, F_GETLK reports holder pid %d, want %d" % (what, side, p, pid))

    def expect_kept(self, what, start, length, pid=None):
        self.expect_held(what, start, length, pid=pid)
        time.sleep(KEEP_WAIT)
        self.expect_held(what + " (%.1f s later)" % KEEP_WAIT, start, length, pid=pid)

    def expect_gone(self, what, start, length, t0):
        """Poll through B until the range is free; then A must agree. Returns seconds taken."""
        while True:
            t, _ = self.probe("B", start, length)
            el = time.monotonic() - t0
            if t == "U":
                break
            if el > GONE_LIMIT:
                raise Fail("%s: the lock over [%d,+%d) is still seen through B %.2f s later (%s held)" %
                           (what, start, length, el, t))
            time.sleep(0.01)
        t, _ = self.probe("A", start, length)
        if t != "U":
            raise Fail("%s: free through B but through A a %s lock is still seen" % (what, t))
        return el

    def refused(self, who, op, **kw):
        r = who.call(op=op, **kw)
        if r not in ("err EAGAIN", "err EACCES", "err EWOULDBLOCK"):
            raise Fail("%s: conflicting %s %s through B was %s, want EAGAIN" %
                       (who.name, op, kw, "granted" if r == "ok" else r))


def log(msg):
    print("  " + msg, flush=True)


# ---- scenarios --------------------------------------------------------------------------------

def s_ofd_close(c):
    h = c.actor("holder-A")
    h.must(op="open", fd="f1", path=c.a)
    h.must(op="open", fd="f2", path=c.a)            # the process keeps the file open
    h.must(op="ofd", fd="f1", type="W", start=0, len=100)
    c.expect_held("OFD lock held", 0, 100)
    x = c.actor("other-B")
    x.must(op="open", fd="g", path=c.b)
    c.refused(x, "ofd", fd="g", type="W", start=50, len=10)
    c.refused(x, "posix", fd="g", type="W", start=50, len=10)
    c.refused(x, "ofd", fd="g", type="R", start=0, len=1)
    x.must(op="ofd", fd="g", type="W", start=100, len=100)     # disjoint: granted
    x.must(op="ofd", fd="g", type="U", start=100, len=100)
    log("OFD lock [0,100) held through A, seen through A and B, conflicts through B refused")
    t0 = time.monotonic()
    h.must(op="close", fd="f1")
    el = c.expect_gone("OFD lock after its descriptor was closed (process alive)", 0, 100, t0)
    x.must(op="ofd", fd="g", type="W", start=0, len=100)
    x.must(op="close", fd="g")
    return "OFD lock gone %.0f ms after close(), holder still running; then granted through B" % (el * 1000)


def s_ofd_kill9(c):
    h = c.actor("holder-A")
    h.must(op="open", fd="f1", path=c.a)
    h.must(op="ofd", fd="f1", type="W", start=0, len=4096)
    c.expect_held("OFD lock held", 0, 4096)
    x = c.actor("other-B")
    x.must(op="open", fd="g", path=c.b)
    c.refused(x, "ofd", fd="g", type="W", start=0, len=4096)
    t0 = time.monotonic()
    h.kill9()
    el = c.expect_gone("OFD lock of a process killed with SIGKILL", 0, 4096, t0)
    x.must(op="ofd", fd="g", type="W", start=0, len=4096)
    x.must(op="close", fd="g")
    return "OFD lock gone %.0f ms after kill -9 of its holder" % (el * 1000)


def s_posix_close(c):
    h = c.actor("holder-A")
    h.must(op="open", fd="f1", path=c.a)
    h.must(op="open", fd="f2", path=c.a)
    h.must(op="posix", fd="f1", type="W", start=0, len=100)
    c.expect_held("POSIX lock held", 0, 100, pid=h.pid)
    x = c.actor("other-B")
    x.must(op="open", fd="g", path=c.b)
    c.refused(x, "posix", fd="g", type="W", start=10, len=10)
    c.refused(x, "ofd", fd="g", type="W", start=10, len=10)
    t0 = time.monotonic()
    h.must(op="close", fd="f2")
    el = c.expect_gone("POSIX lock after the process closed another descriptor of the file", 0, 100, t0)
    x.must(op="posix", fd="g", type="W", start=0, len=100)
    x.must(op="close", fd="g")
    return "POSIX lock (F_GETLK names pid %d) gone %.0f ms after close(fd2)" % (h.pid, el * 1000)


def s_mixed(c):
    h = c.actor("holder-A")
    for f in ("f1", "f2", "f3"):
        h.must(op="open", fd=f, path=c.a)
    h.must(op="ofd", fd="f1", type="W", start=0, len=100)
    h.must(op="posix", fd="f2", type="W", start=200, len=100)
    c.expect_held("OFD lock [0,100)", 0, 100)
    c.expect_held("POSIX lock [200,300)", 200, 100, pid=h.pid)
    x = c.actor("other-B")
    x.must(op="open", fd="g", path=c.b)
    c.refused(x, "posix", fd="g", type="W", start=0, len=300)
    t0 = time.monotonic()
    h.must(op="close", fd="f3")
    el1 = c.expect_gone("POSIX lock after close of a third descriptor", 200, 100, t0)
    c.expect_kept("OFD lock after close of a third descriptor (its description is still open)", 0, 100)
    log("close(f3): POSIX lock gone in %.0f ms, OFD lock kept" % (el1 * 1000))
    # Again with both held, then close the OFD's own descriptor: both go.
    h.must(op="posix", fd="f2", type="W", start=200, len=100)
    c.expect_held("POSIX lock [200,300) retaken", 200, 100, pid=h.pid)
    t0 = time.monotonic()
    h.must(op="close", fd="f1")
    el2 = c.expect_gone("OFD lock after close of its descriptor", 0, 100, t0)
    c.expect_gone("POSIX lock after close of the OFD's descriptor (any close drops them)", 200, 100, t0)
    # f2 still open: locks through it work, and its close drops them.
    h.must(op="ofd", fd="f2", type="W", start=0, len=100)
    c.expect_held("OFD lock through f2", 0, 100)
    t0 = time.monotonic()
    h.must(op="close", fd="f2")
    el3 = c.expect_gone("OFD lock through the last descriptor", 0, 100, t0)
    x.must(op="posix", fd="g", type="W", start=0, len=300)
    x.must(op="close", fd="g")
    return ("close(other fd): POSIX gone %.0f ms, OFD kept; close(OFD fd): OFD gone %.0f ms; last close %.0f ms" %
            (el1 * 1000, el2 * 1000, el3 * 1000))


def s_flock_dup(c):
    h = c.actor("holder-A")
    h.must(op="open", fd="f1", path=c.a)
    h.must(op="flock", fd="f1", how="EX")
    h.must(op="dup", fd="f1", new="f1dup")
    x = c.actor("other-B")
    x.must(op="open", fd="g", path=c.b)
    c.refused(x, "flock", fd="g", how="EX")
    c.refused(x, "flock", fd="g", how="SH")
    h.must(op="close", fd="f1")
    c.refused(x, "flock", fd="g", how="EX")
    time.sleep(KEEP_WAIT)
    c.refused(x, "flock", fd="g", how="EX")
    log("flock kept after close(fd) while its dup is open")
    t0 = time.monotonic()
    h.must(op="close", fd="f1dup")
    while True:
        r = x.call(op="flock", fd="g", how="EX")
        el = time.monotonic() - t0
        if r == "ok":
            break
        if el > GONE_LIMIT:
            raise Fail("flock still held %.2f s after the last close (LOCK_EX|LOCK_NB through B: %s)" % (el, r))
        time.sleep(0.01)
    x.must(op="flock", fd="g", how="UN")
    x.must(op="close", fd="g")
    return "flock kept while a dup is open, gone %.0f ms after the last close" % (el * 1000)


def s_ofd_fork(c):
    h = c.actor("parent-A")
    h.must(op="open", fd="f1", path=c.a)
    h.must(op="ofd", fd="f1", type="W", start=0, len=100)
    k = h.fork("child-A")
    c.actors.append(k)
    c.expect_held("OFD lock held (description shared with a child)", 0, 100)
    k.must(op="close", fd="f1")
    c.expect_kept("OFD lock after the child closed its copy of the descriptor", 0, 100)
    k.exit()
    c.expect_kept("OFD lock after the child exited", 0, 100)
    x = c.actor("other-B")
    x.must(op="open", fd="g", path=c.b)
    c.refused(x, "ofd", fd="g", type="W", start=0, len=100)
    t0 = time.monotonic()
    h.must(op="close", fd="f1")
    el = c.expect_gone("OFD lock after the parent's last close", 0, 100, t0)
    x.must(op="ofd", fd="g", type="W", start=0, len=100)
    x.must(op="close", fd="g")
    return "child's close and exit keep the OFD lock; parent's last close drops it in %.0f ms" % (el * 1000)


SCENARIOS = [("ofd-close", s_ofd_close), ("ofd-kill9", s_ofd_kill9), ("posix-close", s_posix_close),
             ("mixed", s_mixed), ("flock-dup", s_flock_dup), ("ofd-fork", s_ofd_fork)]


# ---- hold / try: a lock holder that writes, and what another client is refused ----------------

HOLD_RANGES = {"ofd": (0, 65536), "posix": (65536, 65536)}
REC = 4096
ERRNAME = lambda e: errno.errorcode.get(e.errno, str(e.errno))


def record(tag, n):
    unit = ("%s %d\n" % (tag, n)).encode()
    return (unit * (REC // len(unit) + 1))[:REC]


def take_locks(fds):
    """Every lock of a holder, non-blocking: None, or the first refusal as 'KIND=ERRNO'."""
    for kind, (start, length) in HOLD_RANGES.items():
        try:
            lock_op(fds[kind], F_OFD_SETLK if kind == "ofd" else fcntl.F_SETLK, fcntl.F_WRLCK,
                    start, length)
        except OSError as e:
            return "%s=%s" % (kind, ERRNAME(e))
    try:
        fcntl.flock(fds["flock"], fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        return "flock=%s" % ERRNAME(e)
    return None


def hold(path, logpath, tag="A", wait=None):
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    log = open(logpath, "a", buffering=1)
    fds = {k: os.open(path, os.O_RDWR | os.O_CREAT, 0o644) for k in ("ofd", "posix", "flock")}
    deadline = time.monotonic() + (float(wait) if wait else 0)
    while True:
        why = take_locks(fds)
        if why is None:
            break
        if time.monotonic() >= deadline or stop:
            log.write("refused %.6f %s\n" % (time.time(), why))
            print("kb-lockcheck hold: %s: locks refused (%s)" % (path, why), file=sys.stderr)
            sys.exit(3)
        time.sleep(0.05)
    log.write("locked %.6f\n" % time.time())
    ticks = ok = errors = 0
    first = "-"
    last = {"ofd": -1, "posix": -1}
    t_next = time.monotonic()
    while not stop:
        for kind in ("ofd", "posix"):
            off = HOLD_RANGES[kind][0]
            rec = record(tag, ticks)
            t0, res, step = time.time(), "ok", "pwrite"
            try:
                if os.pwrite(fds[kind], rec, off) != REC:
                    raise OSError(errno.EIO, "short write")
                step = "fsync"
                os.fsync(fds[kind])
            except OSError as e:
                res = "%s:%s" % (ERRNAME(e), step)
            log.write("w %.6f %.6f %d %s %s\n" % (t0, time.time(), ticks, kind, res))
            if res == "ok":
                ok += 1
                last[kind] = ticks
            else:
                errors += 1
                if first == "-":
                    first = "tick%d/%s/%s" % (ticks, kind, res)
        ticks += 1
        t_next += 0.1
        time.sleep(max(0.0, t_next - time.monotonic()))
    size = HOLD_RANGES["posix"][0] + REC if last["posix"] >= 0 else (REC if last["ofd"] >= 0 else 0)
    want = bytearray(size)
    for kind in ("ofd", "posix"):
        if last[kind] >= 0:
            off = HOLD_RANGES[kind][0]
            want[off:off + REC] = record(tag, last[kind])
    try:
        got = os.pread(fds["ofd"], 1 << 20, 0)
        readback = "ok" if got == bytes(want) else "differs(%d bytes, want %d)" % (len(got), len(want))
    except OSError as e:
        readback = ERRNAME(e)
    summary = ("summary ticks=%d ok=%d errors=%d first_error=%s last_ofd=%d last_posix=%d readback=%s sha256=%s" %
               (ticks, ok, errors, first, last["ofd"], last["posix"], readback,
                hashlib.sha256(bytes(want)).hexdigest()))
    log.write(summary + "\n")
    print(summary, flush=True)
    for fd in fds.values():
        try:
            os.close(fd)
        except OSError:
            pass


def try_locks(path):
    """What a holder's locks are to another client: each asked for alone, non-blocking."""
    fd = os.open(path, os.O_RDWR)
    out = []
    try:
        for kind, (start, length) in HOLD_RANGES.items():
            cmd = F_OFD_SETLK if kind == "ofd" else fcntl.F_SETLK
            try:
                lock_op(fd, cmd, fcntl.F_WRLCK, start, length)
                lock_op(fd, cmd, fcntl.F_UNLCK, start, length)
                out.append(kind + "=ok")
            except OSError as e:
                out.append("%s=%s" % (kind, ERRNAME(e)))
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(fd, fcntl.LOCK_UN)
            out.append("flock=ok")
        except OSError as e:
            out.append("flock=%s" % ERRNAME(e))
    finally:
        os.close(fd)
    print(" ".join(out))


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "try":
        try_locks(sys.argv[2])
        return
    if 4 <= len(sys.argv) <= 6 and sys.argv[1] == "hold":
        hold(*sys.argv[2:])
        return
    if len(sys.argv) == 5 and sys.argv[1] == "probe":
        fd = os.open(sys.argv[2], os.O_RDONLY)
        t, _ = lock_op(fd, F_OFD_GETLK, fcntl.F_WRLCK, int(sys.argv[3]), int(sys.argv[4]))
        print(NAMES.get(t, t))
        return
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    which, a, b = sys.argv[1:]
    todo = [s for s in SCENARIOS if which in ("all", s[0])]
    if not todo:
        print("kb-lockcheck: unknown scenario %s" % which, file=sys.stderr)
        sys.exit(2)
    failed = 0
    for name, fn in todo:
        pa, pb = (a + "." + name, b + "." + name) if which == "all" else (a, b)
        # The file: created through A if it is not there, then it must be seen through B.
        os.close(os.open(pa, os.O_RDWR | os.O_CREAT, 0o644))
        deadline = time.monotonic() + 5
        while not os.path.exists(pb):
            if time.monotonic() > deadline:
                print("FAIL %s: %s created, but %s is not there 5 s later" % (name, pa, pb), flush=True)
                sys.exit(1)
            time.sleep(0.05)
        c = Ctx(pa, pb)
        try:
            print("ok %s: %s" % (name, fn(c)), flush=True)
        except Fail as e:
            print("FAIL %s: %s" % (name, e), flush=True)
            failed += 1
        finally:
            c.close()
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
