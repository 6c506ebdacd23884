#!/usr/bin/env python3
"""kb-lockrace.py — lock contenders that prove no lock is ever granted twice.

    kb-lockrace.py contend --id ID --dir DIR --journal PREFIX [--seed N] [--kinds K,K..]
                           [--hold MIN:MAX] [--no-lock]
    kb-lockrace.py audit JOURNAL...

contend: one contender. DIR holds the shared files lk-ofd, lk-posix and lk-flock (made
beforehand, empty, by the test: the audit expects the first holder to read nothing); the
contenders of a test are on different mounts of the same volume (other hosts, in effect) and
each runs in its own process. A round: pick a kind at random (seeded:
--seed), take the lock of its file for writing — an OFD write lock (F_OFD_SETLK[W]) on the whole
of lk-ofd, a POSIX one (F_SETLK[W]) on the whole of lk-posix, or flock(LOCK_EX) on lk-flock —
either blocking (a SIGALRM ends a wait longer than WAIT_LIMIT, 15 s) or asking without blocking
every POLL (20 ms); then, holding it:
    read the file's record (4 KiB at 0, O_DIRECT: no page cache between mounts),
    write the next record (this contender's ID, its round, the previous record's counter + 1,
    CLOCK_MONOTONIC and wall times) and fsync,
    stay for the rest of a random hold time (--hold, milliseconds, default 20:150),
then unlock, and pause 0-60 ms before the next round. SIGTERM: the round in hand is finished (or
an ongoing wait given up), the summary printed:
    contender id=ID grants=N grants_ofd=N grants_posix=N grants_flock=N max_wait_ms=N
              losses=N errors=N timeouts=N reopens=N

Every event goes to the kind's journal PREFIX<kind>.log, a local file that all contenders of a
volume share (O_APPEND, one write(2) per line, same host: appends are ordered, and
CLOCK_MONOTONIC is one clock for all of them); each line ends with the wall-clock time (to set
it against the daemons' logs):
    acq  ID ROUND T_NS WAIT_MS block|poll   granted (T taken after the call returned)
    r    ID ROUND T0_NS T1_NS ok|ERRNO PREV   the record read under the lock: ID:ROUND:COUNTER,
                                             or "empty"
    w    ID ROUND T0_NS T1_NS ok|ERRNO:pwrite|ERRNO:fsync COUNTER
    rel  ID ROUND T_NS                       about to unlock (T taken before the call)
    lost ID ROUND T_NS ERRNO STEP            an operation under the lock failed: the holder
                                             stops there, closes the descriptor (whatever it
                                             still held goes with it) and opens the file again
    acqerr ID ROUND T_NS ERRNO               the lock request failed other than by a conflict
    timeout ID ROUND T_NS WAIT_MS            no grant within WAIT_LIMIT
    unlockerr ID ROUND T_NS ERRNO            the unlock failed: the descriptor is closed; with
                                             EBADFD or EIO the lock was lost while held, found
                                             out only now (a loss, as "lost")
A descriptor that failed (EBADFD: its locks were lost while its client was away past its lease,
replicate's lklog.c; or anything else) is closed and the file opened again: the contender goes on.

--no-lock: this contender takes no lock at all but acts as if granted (a self-test: the audit
must then report double grants).

audit: the verdict, from the journals alone. Per journal (one lock):
  - every round is an interval of CLOCK_MONOTONIC in which its contender acted as the holder:
    [acq, rel] for a round that released; for a round that ended lost (or whose unlock failed
    with EBADFD or EIO), [acq, end of its last successful operation] (a holder whose lock was
    taken from it while it was away has its descriptor fail: it does not count as a holder past
    its last success).
    The logged interval lies inside the real holding (acq is taken after the grant, rel before
    the unlock), so two intervals that overlap are two holders at once: a DOUBLE GRANT. A round
    whose very first operation failed with EBADFD or EIO never acted as the holder (a blocked
    request granted on a descriptor lost meanwhile): left out, but listed (GRANTED ON A LOST
    DESCRIPTOR) when another held the lock then, and counted (lost_grants);
  - under the lock, each holder must read the last record written successfully before its grant
    (journal order), or one whose write failed but may have landed, made by a LATER holder than
    that last successful writer: anything else is a READ MISMATCH (an acknowledged write under
    the lock lost, or a write landed from someone who no longer held the lock).
Prints every double grant and mismatch with both rounds' events, every wait given up (LONG
WAIT: nobody could take the lock for WAIT_LIMIT), then per lock and overall
    lock_audit grants=N double_grants=N read_mismatch=N losses=N errors=N timeouts=N
               lost_grants=N max_wait_ms=N holders=ID:N,ID:N...
and exits 1 if any double grant or read mismatch was found.
"""
import argparse
import errno
import fcntl
import mmap
import os
import random
import signal
import struct
import sys
import time

F_OFD_SETLK, F_OFD_SETLKW = 37, 38           # x86_64 (asm-generic/fcntl.h)
KINDS = ("ofd", "posix", "flock")
WEIGHTS = {"ofd": 2, "posix": 1, "flock": 1}  # the OFD lock is the one VM hosts use
WAIT_LIMIT = 15.0
POLL = 0.02
REC = 4096
MAGIC = b"KBLR1"
LOSS_ERRNOS = ("EBADFD", "EIO")               # what a lost lock's descriptor answers


def ename(e):
    return errno.errorcode.get(e.errno, str(e.errno))


def now():
    return time.monotonic_ns()


class WaitOver(Exception):
    pass


# ---- contend ----------------------------------------------------------------------------------

class Contender:
    def __init__(self, a):
        self.id = a.id
        self.dir = a.dir
        self.rng = random.Random(a.seed)
        self.kinds = a.kinds
        self.hold_ms = a.hold
        self.no_lock = a.no_lock
        self.journals = {k: os.open("%s%s.log" % (a.journal, k),
                                    os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644) for k in self.kinds}
        self.fds = {}
        self.buf = mmap.mmap(-1, REC)            # page-aligned: O_DIRECT
        self.stop = False
        self.in_wait = False
        self.stats = {"grants": 0, "max_wait_ms": 0, "losses": 0, "errors": 0, "timeouts": 0, "reopens": 0}
        for k in KINDS:
            self.stats["grants_" + k] = 0
        signal.signal(signal.SIGTERM, self.on_term)
        signal.signal(signal.SIGINT, self.on_term)
        signal.signal(signal.SIGALRM, self.on_alarm)

    def on_term(self, *_):
        self.stop = True
        if self.in_wait:
            raise WaitOver("stop")

    def on_alarm(self, *_):
        if self.in_wait:
            raise WaitOver("timeout")

    def log(self, kind, *fields):
        """One journal line, the wall-clock time last (to set it against the daemons' logs)."""
        line = " ".join(str(f) for f in fields) + " %.3f\n" % time.time()
        os.write(self.journals[kind], line.encode())

    def path(self, kind):
        return os.path.join(self.dir, "lk-" + kind)

    def fd(self, kind):
        if kind not in self.fds:
            self.fds[kind] = os.open(self.path(kind), os.O_RDWR | os.O_DIRECT)
        return self.fds[kind]

    def drop_fd(self, kind, reopen=True):
        """Close KIND's descriptor (its locks go with it); the next round opens it again."""
        fd = self.fds.pop(kind, None)
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass
            self.stats["reopens"] += reopen

    def lock_call(self, kind, block, unlock=False):
        fd = self.fd(kind)
        if kind == "flock":
            fcntl.flock(fd, fcntl.LOCK_UN if unlock else fcntl.LOCK_EX | (0 if block else fcntl.LOCK_NB))
            return
        cmd = (F_OFD_SETLKW if block else F_OFD_SETLK) if kind == "ofd" else \
              (fcntl.F_SETLKW if block else fcntl.F_SETLK)
        ltype = fcntl.F_UNLCK if unlock else fcntl.F_WRLCK
        fcntl.fcntl(fd, cmd, struct.pack("hhqqi4x", ltype, os.SEEK_SET, 0, 0, 0))

    def acquire(self, kind, rnd, block):
        """True once granted; False (logged) if not: timeout, stop, or an error."""
        if self.no_lock:
            return True
        t0 = time.monotonic()
        try:
            self.fd(kind)
        except OSError as e:
            self.log(kind, "acqerr", self.id, rnd, now(), ename(e) + ":open")
            self.stats["errors"] += 1
            return False
        try:
            if block:
                self.in_wait = True
                signal.setitimer(signal.ITIMER_REAL, WAIT_LIMIT)
                try:
                    self.lock_call(kind, True)
                finally:
                    self.in_wait = False
                    signal.setitimer(signal.ITIMER_REAL, 0)
                return True
            while not self.stop:
                try:
                    self.lock_call(kind, False)
                    return True
                except OSError as e:
                    if e.errno not in (errno.EAGAIN, errno.EACCES):
                        raise
                if time.monotonic() - t0 > WAIT_LIMIT:
                    raise WaitOver("timeout")
                time.sleep(POLL)
            return False
        except WaitOver as w:
            # A grant may have raced the signal: an unlock with the same owner makes sure
            # nothing stays held that nobody thinks it holds.
            self.release_quietly(kind)
            if str(w) == "timeout":
                self.log(kind, "timeout", self.id, rnd, now(), int((time.monotonic() - t0) * 1000))
                self.stats["timeouts"] += 1
            return False
        except OSError as e:
            self.log(kind, "acqerr", self.id, rnd, now(), ename(e))
            self.stats["errors"] += 1
            self.drop_fd(kind)
            return False

    def release_quietly(self, kind):
        try:
            self.lock_call(kind, False, unlock=True)
        except OSError:
            self.drop_fd(kind)

    def read_record(self, fd):
        n = os.preadv(fd, [self.buf], 0)
        if n == 0 or self.buf[:len(MAGIC)] != MAGIC:
            return "empty" if n == 0 or self.buf[:n].count(0) == n else "garbage", 0
        f = self.buf[:REC].split(b"\n", 1)[0].decode(errors="replace").split()
        # MAGIC ID ROUND COUNTER MONO_NS WALL
        return "%s:%s:%s" % (f[1], f[2], f[3]), int(f[3])

    def under_lock(self, kind, rnd):
        """Read the record, write the next one, fsync. True, or False once logged lost."""
        fd = self.fd(kind)
        t0 = now()
        try:
            prev, counter = self.read_record(fd)
        except (OSError, ValueError, IndexError) as e:
            err = ename(e) if isinstance(e, OSError) else "BADRECORD"
            self.log(kind, "r", self.id, rnd, t0, now(), err, "-")
            return self.lost(kind, rnd, err, "read")
        self.log(kind, "r", self.id, rnd, t0, now(), "ok", prev)
        counter += 1
        line = b"%s %s %d %d %d %.6f\n" % (MAGIC, self.id.encode(), rnd, counter, now(), time.time())
        self.buf[:] = (line * (REC // len(line) + 1))[:REC]
        t0, step = now(), "pwrite"
        try:
            if os.pwritev(fd, [self.buf], 0) != REC:
                raise OSError(errno.EIO, "short write")
            step = "fsync"
            os.fsync(fd)
        except OSError as e:
            self.log(kind, "w", self.id, rnd, t0, now(), "%s:%s" % (ename(e), step), counter)
            return self.lost(kind, rnd, ename(e), step)
        self.log(kind, "w", self.id, rnd, t0, now(), "ok", counter)
        return True

    def lost(self, kind, rnd, err, step):
        self.log(kind, "lost", self.id, rnd, now(), err, step)
        self.stats["losses" if err in LOSS_ERRNOS else "errors"] += 1
        print("kb-lockrace %s: round %d: %s under the %s lock failed: %s; the descriptor is opened again" %
              (self.id, rnd, step, kind, err), file=sys.stderr, flush=True)
        self.drop_fd(kind)
        return False

    def release(self, kind, rnd):
        self.log(kind, "rel", self.id, rnd, now())
        if self.no_lock:
            return
        try:
            self.lock_call(kind, False, unlock=True)
        except OSError as e:
            # EBADFD/EIO: the lock was lost while held (found out only now); the audit ends this
            # round at its last success. Anything else: the round stands as released.
            self.log(kind, "unlockerr", self.id, rnd, now(), ename(e))
            self.stats["losses" if ename(e) in LOSS_ERRNOS else "errors"] += 1
            print("kb-lockrace %s: round %d: unlock of the %s lock failed: %s; the descriptor is opened again" %
                  (self.id, rnd, kind, ename(e)), file=sys.stderr, flush=True)
            self.drop_fd(kind)

    def run(self):
        rnd = 0
        weights = [WEIGHTS[k] for k in self.kinds]
        while not self.stop:
            rnd += 1
            kind = self.rng.choices(self.kinds, weights)[0]
            block = self.rng.random() < 0.5
            hold = self.rng.uniform(*self.hold_ms) / 1000.0
            gap = self.rng.uniform(0, 0.06)
            t0 = time.monotonic()
            if self.acquire(kind, rnd, block):
                t_acq = time.monotonic()
                wait_ms = int((t_acq - t0) * 1000)
                self.log(kind, "acq", self.id, rnd, now(), wait_ms, "block" if block else "poll")
                self.stats["grants"] += 1
                self.stats["grants_" + kind] += 1
                self.stats["max_wait_ms"] = max(self.stats["max_wait_ms"], wait_ms)
                if self.under_lock(kind, rnd):
                    left = t_acq + hold - time.monotonic()
                    if left > 0:
                        time.sleep(left)
                    self.release(kind, rnd)
            elif not self.stop:
                time.sleep(0.1)          # an error: do not spin
            if not self.stop:
                time.sleep(gap)
        for k in list(self.fds):
            self.drop_fd(k, reopen=False)
        print("contender id=%s %s" % (self.id, " ".join("%s=%d" % kv for kv in self.stats.items())), flush=True)


# ---- audit ------------------------------------------------------------------------------------

def wall(t):
    try:
        t = float(t)
    except ValueError:
        return "?"
    return time.strftime("%H:%M:%S", time.gmtime(t)) + (".%03dZ" % (int(t * 1000) % 1000))


class Round:
    def __init__(self, holder, rnd, t, wait_ms, line):
        self.holder, self.rnd, self.acq, self.wait_ms = holder, rnd, t, wait_ms
        self.wall = wall(line.split()[-1])
        self.end = None            # "rel", "lost" or "lost at unlock"
        self.t_end = None
        self.last_ok = t           # end of the last successful operation
        self.oks = 0               # successful operations under the lock
        self.lost_err = None
        self.lines = [line]

    def interval_end(self):
        return self.t_end if self.end == "rel" else self.last_ok

    def never_held(self):
        """Granted on a descriptor that was lost already: its first operation failed with EBADFD
        or EIO, so it never acted as the holder (not a double grant; listed)."""
        return self.end == "lost" and self.oks == 0 and self.lost_err in LOSS_ERRNOS

    def name(self):
        return "%s round %d (granted %s)" % (self.holder, self.rnd, self.wall)


def audit_one(path, t_base, out):
    rounds, open_rounds, closed = [], {}, {}
    res = {"grants": 0, "double": 0, "mismatch": 0, "losses": 0, "errors": 0, "timeouts": 0,
           "lost_grants": 0, "max_wait_ms": 0, "holders": {}}
    base, base_round = "empty", None     # the last record written successfully (journal order)
    failed = {}                          # record -> round, of writes that failed (they may have landed)
    with open(path) as f:
        lines = [ln.rstrip("\n") for ln in f]
    for no, ln in enumerate(lines, 1):
        p = ln.split()
        if not p:
            continue
        ev, holder = p[0], p[1] if len(p) > 1 else "?"
        key = (holder, p[2] if len(p) > 2 else "?")
        if ev == "acq":
            r = Round(holder, int(p[2]), int(p[3]), int(p[4]), ln)
            rounds.append(r)
            open_rounds[key] = r
            res["grants"] += 1
            res["holders"][holder] = res["holders"].get(holder, 0) + 1
            res["max_wait_ms"] = max(res["max_wait_ms"], int(p[4]))
            continue
        if ev == "acqerr":
            res["errors"] += 1
        elif ev == "timeout":
            res["timeouts"] += 1
            print("LONG WAIT %s: %s round %s waited %s ms for the lock in vain (until %s)" %
                  (os.path.basename(path), holder, p[2], p[4], wall(p[-1])), file=out)
        elif ev == "unlockerr":
            r = closed.get(key)
            if r is not None and p[4] in LOSS_ERRNOS:
                r.end = "lost at unlock"     # held (it thought) until rel; it acted until last_ok
                r.lines.append(ln)
                res["losses"] += 1
            else:
                res["errors"] += 1
            continue
        r = open_rounds.get(key)
        if r is None:
            continue
        r.lines.append(ln)
        if ev == "r" and p[5] == "ok":
            r.last_ok = max(r.last_ok, int(p[4]))
            r.oks += 1
            # What a holder reads is the last successful write, or a failed write that landed
            # after all — but only one made by a later holder than the last successful writer
            # (a write of an earlier holder, landed after a later one's, was made without the lock).
            x = failed.get(p[6])
            if p[6] == base:
                pass
            elif x is not None and (base_round is None or x.acq > base_round.acq):
                base, base_round = p[6], x
            else:
                res["mismatch"] += 1
                print("READ MISMATCH %s: %s read %s under the lock; the last record written "
                      "successfully before its grant is %s (journal line %d)%s" %
                      (os.path.basename(path), r.name(), p[6], base, no,
                       "; %s is a failed write of %s, an earlier holder" % (p[6], x.name()) if x else ""),
                      file=out)
        elif ev == "w":
            rec = "%s:%s:%s" % (holder, p[2], p[6])
            if p[5] == "ok":
                r.last_ok = max(r.last_ok, int(p[4]))
                r.oks += 1
                base, base_round = rec, r
            else:
                failed[rec] = r
        elif ev in ("rel", "lost"):
            r.end, r.t_end = ev, int(p[3])
            closed[key] = open_rounds.pop(key)
            if ev == "lost":
                r.lost_err = p[4]
                res["losses" if p[4] in LOSS_ERRNOS else "errors"] += 1
    # Two holders at once: sort the intervals by start; each must begin after every earlier one
    # ended. Rounds never closed (a contender killed) count up to their last success.
    rounds.sort(key=lambda x: x.acq)
    latest = None
    for r in rounds:
        if r.never_held():
            if latest is not None and r.acq < latest.interval_end():
                res["lost_grants"] += 1
                print("GRANTED ON A LOST DESCRIPTOR %s: %s, while %s held it (its first operation "
                      "failed with %s: not a double grant)" %
                      (os.path.basename(path), r.name(), latest.name(), r.lost_err), file=out)
            continue
        if latest is not None and r.acq < latest.interval_end():
            res["double"] += 1
            print("DOUBLE GRANT %s: %s granted at +%.3f ms while %s, granted at +%.3f ms, held "
                  "it until +%.3f ms (%s); overlap %.3f ms" %
                  (os.path.basename(path), r.name(), (r.acq - t_base) / 1e6, latest.name(),
                   (latest.acq - t_base) / 1e6, (latest.interval_end() - t_base) / 1e6,
                   latest.end or "never closed", (min(latest.interval_end(), r.interval_end()) - r.acq) / 1e6),
                  file=out)
            for x in (latest, r):
                for ln in x.lines:
                    print("    %s" % ln, file=out)
        if latest is None or r.interval_end() > latest.interval_end():
            latest = r
    return res


def audit(paths):
    t_base = None
    for p in paths:
        with open(p) as f:
            for ln in f:
                x = ln.split()
                if len(x) > 3 and x[0] == "acq":
                    t_base = int(x[3]) if t_base is None else min(t_base, int(x[3]))
    t_base = t_base or 0
    tot = {"grants": 0, "double": 0, "mismatch": 0, "losses": 0, "errors": 0, "timeouts": 0,
           "lost_grants": 0, "max_wait_ms": 0, "holders": {}}
    for p in paths:
        r = audit_one(p, t_base, sys.stdout)
        print("lock %s: %s" % (os.path.basename(p), fmt(r)))
        for k in ("grants", "double", "mismatch", "losses", "errors", "timeouts", "lost_grants"):
            tot[k] += r[k]
        tot["max_wait_ms"] = max(tot["max_wait_ms"], r["max_wait_ms"])
        for h, n in r["holders"].items():
            tot["holders"][h] = tot["holders"].get(h, 0) + n
    print("lock_audit " + fmt(tot))
    sys.stdout.flush()
    sys.exit(1 if tot["double"] or tot["mismatch"] else 0)


def fmt(r):
    return ("grants=%d double_grants=%d read_mismatch=%d losses=%d errors=%d timeouts=%d lost_grants=%d "
            "max_wait_ms=%d holders=%s" %
            (r["grants"], r["double"], r["mismatch"], r["losses"], r["errors"], r["timeouts"],
             r["lost_grants"], r["max_wait_ms"], ",".join("%s:%d" % kv for kv in sorted(r["holders"].items())) or "-"))


def main():
    if len(sys.argv) > 2 and sys.argv[1] == "audit":
        audit(sys.argv[2:])
        return
    ap = argparse.ArgumentParser(usage=__doc__)
    ap.add_argument("mode", choices=["contend"])
    ap.add_argument("--id", required=True)
    ap.add_argument("--dir", required=True)
    ap.add_argument("--journal", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--kinds", default=",".join(KINDS))
    ap.add_argument("--hold", default="20:150")
    ap.add_argument("--no-lock", action="store_true")
    a = ap.parse_args()
    a.kinds = a.kinds.split(",")
    if any(k not in KINDS for k in a.kinds):
        ap.error("--kinds: from %s" % ",".join(KINDS))
    a.hold = tuple(float(x) for x in a.hold.split(":"))
    Contender(a).run()


if __name__ == "__main__":
    main()
