#!/usr/bin/env python3
"""kb-qmp.py — a small QMP client (python3 stdlib only) for the VM integration tests.

    kb-qmp.py [--timeout S] SOCK status              print query-status's "status" (running, paused,
                                                     inmigrate, postmigrate, ...)
    kb-qmp.py [--timeout S] SOCK wait-status STATUS  poll query-status until it is STATUS
    kb-qmp.py [--timeout S] SOCK stop | cont | quit
    kb-qmp.py [--timeout S] SOCK migrate URI         migrate to URI (e.g. unix:/path/sock), poll
                                                     query-migrate until "completed"; print
                                                     "total_ms=T downtime_ms=D setup_ms=S
                                                     ram_mb=R"; exit 1 if it failed
    kb-qmp.py [--timeout S] SOCK migrate-incoming URI (destination started with -incoming defer)
    kb-qmp.py [--timeout S] SOCK cmd NAME [JSON]     any command, its "return" printed as JSON

SOCK is qemu's `-qmp unix:SOCK,server=on,wait=off`; the client waits up to --timeout (default
30 s) for it to accept. Exit status: 0 done, 1 the command failed (qemu's error class and
description on stderr, one line), 2 no connection or timeout. `quit` succeeds when qemu answers
or closes the connection (it exits).
"""
import json
import socket
import sys
import time


class QmpError(Exception):
    pass


class Qmp:
    def __init__(self, path, timeout):
        self.deadline = time.monotonic() + timeout
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.settimeout(max(0.1, self.deadline - time.monotonic()))
                self.sock.connect(path)
                break
            except OSError as e:
                self.sock.close()
                if time.monotonic() > self.deadline:
                    raise TimeoutError("cannot connect to %s: %s" % (path, e))
                time.sleep(0.05)
        self.buf = b""
        greeting = self._read()
        if "QMP" not in greeting:
            raise QmpError("no QMP greeting: %r" % greeting)
        self.execute("qmp_capabilities")

    def _read(self):
        while b"\n" not in self.buf:
            self.sock.settimeout(max(0.1, self.deadline - time.monotonic()))
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                raise TimeoutError("no answer from qemu in time")
            if not data:
                raise EOFError("qemu closed the QMP connection")
            self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def execute(self, cmd, args=None):
        msg = {"execute": cmd}
        if args:
            msg["arguments"] = args
        self.sock.sendall(json.dumps(msg).encode() + b"\n")
        while True:
            r = self._read()
            if "event" in r:
                continue
            if "error" in r:
                raise QmpError("%s: %s: %s" % (cmd, r["error"].get("class"), r["error"].get("desc")))
            return r.get("return")


def migrate(q, uri):
    q.execute("migrate-set-capabilities",
              {"capabilities": [{"capability": "events", "state": True}]})
    q.execute("migrate", {"uri": uri})
    while True:
        r = q.execute("query-migrate")
        st = r.get("status")
        if st == "completed":
            # qemu 7.2 shows "completed" a moment before it fills in total-time and downtime.
            for _ in range(40):
                if r.get("total-time"):
                    break
                time.sleep(0.025)
                r = q.execute("query-migrate")
            ram = r.get("ram", {})
            print("total_ms=%s downtime_ms=%s setup_ms=%s ram_mb=%.1f" % (
                r.get("total-time"), r.get("downtime"), r.get("setup-time"),
                ram.get("transferred", 0) / 1048576.0))
            return
        if st in ("failed", "cancelled"):
            raise QmpError("migration %s: %s" % (st, r.get("error-desc", "(no error-desc)")))
        if time.monotonic() > q.deadline:
            raise TimeoutError("migration still %s" % st)
        time.sleep(0.05)


def main(argv):
    timeout = 30.0
    if len(argv) > 2 and argv[0] == "--timeout":
        timeout = float(argv[1])
        argv = argv[2:]
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    path, verb, rest = argv[0], argv[1], argv[2:]
    try:
        q = Qmp(path, timeout)
        if verb == "status":
            print(q.execute("query-status")["status"])
        elif verb == "wait-status":
            while True:
                st = q.execute("query-status")["status"]
                if st == rest[0]:
                    break
                if time.monotonic() > q.deadline:
                    raise TimeoutError("status is %s, not %s" % (st, rest[0]))
                time.sleep(0.05)
        elif verb in ("stop", "cont"):
            q.execute(verb)
        elif verb == "quit":
            try:
                q.execute("quit")
            except EOFError:
                pass
        elif verb == "migrate":
            migrate(q, rest[0])
        elif verb == "migrate-incoming":
            q.execute("migrate-incoming", {"uri": rest[0]})
        elif verb == "cmd":
            r = q.execute(rest[0], json.loads(rest[1]) if len(rest) > 1 else None)
            print(json.dumps(r))
        else:
            print("kb-qmp: unknown verb %s" % verb, file=sys.stderr)
            return 2
    except QmpError as e:
        print("kb-qmp: %s" % e, file=sys.stderr)
        return 1
    except (TimeoutError, EOFError, OSError) as e:
        print("kb-qmp: %s: %s" % (verb, e), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
