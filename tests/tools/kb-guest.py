#!/usr/bin/env python3
"""kb-guest.py — builds (once) and caches the tiny guest the VM integration tests boot.

    kb-guest.py [--cache DIR]      prints two lines: KERNEL=<path> and INITRD=<path>

What it builds, from Debian packages only (nothing else is downloaded):
  - the kernel: the linux-image-<version>-amd64 package that the meta package linux-image-amd64
    depends on (`apt-cache depends`), fetched with `apt-get download` and unpacked with
    `dpkg-deb -x` into a scratch directory (never installed: no initramfs or grub hooks run);
    vmlinuz and the few modules a virtio-blk disk needs are kept, the rest is thrown away;
  - the modules: virtio_blk and virtio_pci with everything they depend on, the closure read from
    each module's own .modinfo "depends=" field (what depmod writes into modules.dep; the package
    ships no modules.dep and kmod may be absent), loaded in dependency order. A module the kernel
    has built in (modules.builtin) is skipped. Modules may be .ko, .ko.xz, .ko.zst or .ko.gz: they
    are stored uncompressed, busybox insmod loads them as they are;
  - the initramfs (cpio "newc", gzip), written here without cpio(1): /init (kb-guest-init.sh),
    /bin/busybox from busybox-static, /dev/console, the modules and their load order.

Cache layout (default /var/cache/kembar-test/guest, or $KB_VM_CACHE):
  <cache>/<package>/vmlinuz, <cache>/<package>/modules/*.ko, <cache>/<package>/load-order
  <cache>/<package>/initramfs-<hash>.gz   <hash> of this script, init, busybox and modules: a
                                          changed init script gives a new initramfs, never a
                                          stale one
Builds are serialised by flock on <cache>/.lock (concurrent test runs build once, the others
wait and reuse), and each piece is written under a temporary name and renamed into place, so a
build killed half-way leaves nothing that looks finished.
"""
import argparse
import fcntl
import gzip
import hashlib
import io
import lzma
import os
import shutil
import struct
import subprocess
import sys
import tempfile

WANT_MODULES = ["virtio_pci", "virtio_blk"]
BUSYBOX = "/bin/busybox"
INIT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "kb-guest-init.sh")


def die(msg):
    print("kb-guest: " + msg, file=sys.stderr)
    sys.exit(1)


def run(cmd, **kw):
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)
    if r.returncode != 0:
        die("%s: exit %d: %s" % (" ".join(cmd), r.returncode, (r.stderr or r.stdout).strip()[-600:]))
    return r.stdout


def kernel_package():
    """The linux-image-*-amd64 package the meta package depends on now."""
    def ask():
        r = subprocess.run(["apt-cache", "depends", "linux-image-amd64"], stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL, text=True)
        for line in r.stdout.splitlines():
            line = line.strip()
            if line.startswith("Depends:") and "linux-image-" in line:
                return line.split()[1]
        return None
    pkg = ask()
    if pkg is None and os.geteuid() == 0:
        # No package lists yet (a fresh machine): fetch them once and ask again.
        subprocess.run(["apt-get", "update", "-qq"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        pkg = ask()
    if pkg is None:
        die("apt-cache depends linux-image-amd64 names no linux-image package (apt-get update?)")
    return pkg


# ---- modules -------------------------------------------------------------------------------

def read_module(path):
    with open(path, "rb") as f:
        data = f.read()
    if path.endswith(".xz"):
        return lzma.decompress(data)
    if path.endswith(".gz"):
        return gzip.decompress(data)
    if path.endswith(".zst"):
        r = subprocess.run(["zstd", "-dc", path], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if r.returncode != 0:
            die("zstd -dc %s: %s (install zstd)" % (path, r.stderr.decode(errors="replace").strip()))
        return r.stdout
    return data


def modinfo_depends(elf):
    """The depends= list of an ELF64 module's .modinfo section."""
    if elf[:4] != b"\x7fELF" or elf[4] != 2:
        die("not an ELF64 module")
    shoff, = struct.unpack_from("<Q", elf, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", elf, 0x3A)
    def sect(i):
        name, _type, _flags, _addr, off, size = struct.unpack_from("<IIQQQQ", elf, shoff + i * shentsize)
        return name, off, size
    _, stroff, _ = sect(shstrndx)
    for i in range(shnum):
        name, off, size = sect(i)
        end = elf.index(b"\0", stroff + name)
        if elf[stroff + name:end] == b".modinfo":
            for field in elf[off:off + size].split(b"\0"):
                if field.startswith(b"depends="):
                    v = field[len(b"depends="):].decode()
                    return [d for d in v.split(",") if d]
            return []
    die("module has no .modinfo section")


def module_index(moddir):
    """module name (underscores) -> file path, over the unpacked kernel's modules."""
    idx = {}
    for d, _, files in os.walk(moddir):
        for f in files:
            for ext in (".ko", ".ko.xz", ".ko.zst", ".ko.gz"):
                if f.endswith(ext):
                    idx[f[:-len(ext)].replace("-", "_")] = os.path.join(d, f)
    return idx


def builtin_modules(moddir):
    names = set()
    try:
        with open(os.path.join(moddir, "modules.builtin")) as f:
            for line in f:
                base = os.path.basename(line.strip())
                names.add(base.split(".ko")[0].replace("-", "_"))
    except FileNotFoundError:
        pass
    return names


def module_closure(moddir, want):
    """[(name, uncompressed bytes)] of want and their dependencies, dependencies first."""
    idx = module_index(moddir)
    builtin = builtin_modules(moddir)
    order, seen, data = [], set(), {}
    def visit(name, chain):
        if name in seen or name in builtin:
            return
        if name in chain:
            die("module dependency cycle: %s" % " -> ".join(chain + [name]))
        if name not in idx:
            die("module %s not found under %s" % (name, moddir))
        elf = read_module(idx[name])
        for dep in modinfo_depends(elf):
            visit(dep.replace("-", "_"), chain + [name])
        seen.add(name)
        data[name] = elf
        order.append(name)
    for w in want:
        visit(w, [])
    return [(n, data[n]) for n in order]


# ---- cpio newc -----------------------------------------------------------------------------

class Cpio:
    def __init__(self):
        self.buf = io.BytesIO()
        self.ino = 1

    def _entry(self, name, mode, data=b"", rdev=(0, 0), nlink=1):
        name_b = name.encode() + b"\0"
        hdr = "070701" + "".join("%08X" % v for v in (
            self.ino, mode, 0, 0, nlink, 0, len(data), 0, 0, rdev[0], rdev[1], len(name_b), 0))
        self.ino += 1
        self.buf.write(hdr.encode() + name_b)
        self.buf.write(b"\0" * (-(110 + len(name_b)) % 4))
        self.buf.write(data)
        self.buf.write(b"\0" * (-len(data) % 4))

    def dir(self, name):
        self._entry(name, 0o040755, nlink=2)

    def file(self, name, data, perm=0o644):
        self._entry(name, 0o100000 | perm, data)

    def chardev(self, name, major, minor):
        self._entry(name, 0o020600, rdev=(major, minor))

    def finish(self):
        self._entry("TRAILER!!!", 0)
        return self.buf.getvalue()


# ---- build ---------------------------------------------------------------------------------

def write_atomic(path, data):
    tmp = path + ".tmp.%d" % os.getpid()
    with open(tmp, "wb") as f:
        f.write(data)
    os.rename(tmp, path)


def build_kernel(cache, pkg):
    """<cache>/<pkg>/{vmlinuz,modules/,load-order}, from the Debian package."""
    final = os.path.join(cache, pkg)
    if os.path.exists(os.path.join(final, "load-order")):
        return final
    shutil.rmtree(final, ignore_errors=True)
    scratch = tempfile.mkdtemp(prefix="build-", dir=cache)
    try:
        os.chmod(scratch, 0o755)
        # Downloaded as root into a directory _apt cannot write: say so, and apt stays quiet.
        dl = ["apt-get", "download", "-q", "-o", "APT::Sandbox::User=root", pkg]
        if subprocess.run(dl, cwd=scratch, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode != 0:
            # Package lists older than the mirror (that version is gone): refresh them once.
            subprocess.run(["apt-get", "update", "-qq"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            run(dl, cwd=scratch)
        debs = [f for f in os.listdir(scratch) if f.endswith(".deb")]
        if len(debs) != 1:
            die("apt-get download %s gave %s" % (pkg, debs))
        root = os.path.join(scratch, "root")
        run(["dpkg-deb", "-x", os.path.join(scratch, debs[0]), root])
        boot = os.path.join(root, "boot")
        kernels = [f for f in os.listdir(boot) if f.startswith("vmlinuz-")]
        if len(kernels) != 1:
            die("%s: expected one vmlinuz in /boot, found %s" % (pkg, kernels))
        kver = kernels[0][len("vmlinuz-"):]
        moddir = None
        for base in ("lib/modules", "usr/lib/modules"):
            if os.path.isdir(os.path.join(root, base, kver)):
                moddir = os.path.join(root, base, kver)
        if moddir is None:
            die("%s: no modules directory for %s" % (pkg, kver))
        mods = module_closure(moddir, WANT_MODULES)
        stage = os.path.join(scratch, "out")
        os.makedirs(os.path.join(stage, "modules"))
        shutil.copy(os.path.join(boot, kernels[0]), os.path.join(stage, "vmlinuz"))
        for name, elf in mods:
            with open(os.path.join(stage, "modules", name + ".ko"), "wb") as f:
                f.write(elf)
        with open(os.path.join(stage, "kernel-version"), "w") as f:
            f.write(kver + "\n")
        with open(os.path.join(stage, "load-order"), "w") as f:
            f.write("".join(n + "\n" for n, _ in mods))
        os.rename(stage, final)
        return final
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def has_interp(elf):
    """Does an ELF64 executable name a dynamic loader (PT_INTERP)?"""
    phoff, = struct.unpack_from("<Q", elf, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", elf, 0x36)
    return any(struct.unpack_from("<I", elf, phoff + i * phentsize)[0] == 3 for i in range(phnum))


def build_initramfs(kdir):
    with open(INIT, "rb") as f:
        init = f.read()
    if not os.path.exists(BUSYBOX):
        die("%s missing (Debian package busybox-static)" % BUSYBOX)
    with open(BUSYBOX, "rb") as f:
        busybox = f.read()
    if has_interp(busybox):
        die("%s is not statically linked (install busybox-static, not busybox)" % BUSYBOX)
    with open(os.path.join(kdir, "load-order")) as f:
        order = f.read().split()
    mods = []
    for n in order:
        with open(os.path.join(kdir, "modules", n + ".ko"), "rb") as f:
            mods.append((n, f.read()))
    with open(os.path.abspath(__file__), "rb") as f:
        me = f.read()                   # a change of the packing below is a new initramfs too
    h = hashlib.sha256(me + init + busybox + "\n".join(order).encode())
    for _, m in mods:
        h.update(hashlib.sha256(m).digest())
    path = os.path.join(kdir, "initramfs-%s.gz" % h.hexdigest()[:16])
    if os.path.exists(path):
        return path
    c = Cpio()
    for d in ("bin", "dev", "proc", "sys", "tmp", "lib", "lib/modules"):
        c.dir(d)
    c.chardev("dev/console", 5, 1)
    c.file("bin/busybox", busybox, 0o755)
    c.file("init", init, 0o755)
    c.file("lib/modules/load-order", ("\n".join(order) + "\n").encode())
    for n, m in mods:
        c.file("lib/modules/%s.ko" % n, m)
    write_atomic(path, gzip.compress(c.finish(), 6))
    return path


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cache", default=os.environ.get("KB_VM_CACHE", "/var/cache/kembar-test/guest"))
    args = ap.parse_args()
    os.makedirs(args.cache, exist_ok=True)
    with open(os.path.join(args.cache, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        # Scratch directories of builds that were killed half-way (we hold the lock: nobody
        # else is building).
        for d in os.listdir(args.cache):
            if d.startswith("build-"):
                shutil.rmtree(os.path.join(args.cache, d), ignore_errors=True)
        pkg = kernel_package()
        kdir = build_kernel(args.cache, pkg)
        initrd = build_initramfs(kdir)
    print("KERNEL=%s" % os.path.join(kdir, "vmlinuz"))
    print("INITRD=%s" % initrd)


if __name__ == "__main__":
    main()
