#!/usr/bin/env python3
"""Side-by-side build benchmark: `berth build` vs `buildah bud`, driven by bench/build.sh.

Must run as root inside ../shared/tools/peer-ns.sh (crun, buildah's OCI runtime for RUN with --isolation oci,
refuses the host's hybrid cgroups otherwise).

Context: bench/build-context/Dockerfile plus, generated here (fixed content, fixed mtimes): files/f000..f199
(200 files of 100-1100 bytes) and big.bin (5 MiB of pseudo-random bytes). Base image: busybox:latest, a
docker-archive made by scripts/busybox-image.py, loaded into each engine's fresh store before every cold
build (not timed):
  berth    berth --root S load -i busybox.tar
  buildah  buildah --root S --runroot R --storage-driver overlay pull -q docker-archive:busybox.tar
Builds (timed, wall clock from spawn to wait4 of the CLI):
  berth    berth --root S build -q -t bench/app:1 CONTEXT
  buildah  buildah OPTS bud -q --layers --pull=never --isolation ISO --network host --runtime /usr/bin/crun
                   --cgroup-parent P -t bench/app:1 CONTEXT
--layers: buildah keeps no per-step cache without it (berth caches every step). --network host: berth's RUN
steps share the host's network (no bridge yet). P = <this process's memory cgroup>/berth-build-bench-PID,
made by this bench in every v1 hierarchy and removed after.

Every round, for each engine (order alternating between rounds): a fresh store (S, a new directory on the
stores' filesystem; buildah's runroot R on a tmpfs, as /run is on a host), base image loaded, then
  cold    the first build: empty store except the base image, no build cache;
  cached  the same build again in the same store: every step should be a cache hit;
then the store is removed (buildah: `rm --all`, `rmi --all --force`, unmount of what is left mounted under
its root, rm -rf). Checked: cold and cached builds give the same image id (the cached build reused every
step); once per engine, the result: berth runs the image (`run --rm`, CMD `cat /out/sum`), buildah's config
(Cmd, WorkingDir) is printed with `buildah inspect`; no builder containers are left in either store.
"""
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROUNDS = int(os.environ.get("ROUNDS", "5"))
BERTH = os.environ["BERTH"]
BUILDAH = shutil.which("buildah") or "/usr/bin/buildah"
CRUN = shutil.which("crun") or "/usr/bin/crun"
ISOLATION = os.environ.get("ISOLATION", "oci")  # buildah's --isolation: oci (crun), chroot
DRIVER = os.environ.get("DRIVER", "overlay")  # buildah's --storage-driver: overlay, vfs
FS = os.environ.get("FS", "loop")  # loop: stores on a fresh journaled ext4 (as bench/engine.py); host: /var/tmp
FS_SIZE = os.environ.get("FS_SIZE", "4G")
HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
TAG = "bench/app:1"
CONTROLLERS = ["pids", "blkio", "freezer", "devices", "memory", "cpuset", "cpu", "cpuacct", "systemd"]

work = data = brun = None
expected_mounts = set()
cg_parent = ""
cg_created = []
cache_mounted = False


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def med(xs):
    xs = list(xs)
    return statistics.median(xs) if xs else float("nan")


def run(argv, check=True, env=None, timeout=600, stdin=None):
    r = subprocess.run(argv, stdin=stdin or subprocess.DEVNULL, capture_output=True, text=True, env=env,
                       timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}\nexited {r.returncode}: {(r.stderr + r.stdout).strip()[-3000:]}")
    return r


def timed(argv, env=None):
    """(wall seconds, stdout) of argv; raises with its output if it fails."""
    out, err = os.path.join(work, "stdout"), os.path.join(work, "stderr")
    with open(out, "w") as of, open(err, "w") as ef:
        t0 = time.monotonic_ns()
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=of, stderr=ef, env=env)
        _, status, _ = os.wait4(p.pid, 0)
        t1 = time.monotonic_ns()
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise RuntimeError(f"{' '.join(argv)}\nexited {code}:\n{open(err).read()[-3000:]}{open(out).read()[-1500:]}")
    return (t1 - t0) / 1e9, open(out).read().strip()


def ours():
    """pid -> argv of every live process whose command line names this run's temp dir."""
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == os.getpid():
            continue
        try:
            cl = open(f"/proc/{d}/cmdline", "rb").read()
        except OSError:
            continue
        if work.encode() in cl:
            out[int(d)] = [a.decode(errors="replace") for a in cl.split(b"\0") if a]
    return out


def quiesce(timeout=10.0):
    t0 = time.monotonic()
    while ours():
        if time.monotonic() - t0 > timeout:
            return None
        time.sleep(0.002)
    return time.monotonic() - t0


def mounts_under(path):
    r = subprocess.run(["findmnt", "-rn", "-o", "TARGET"], capture_output=True, text=True, check=True)
    out = []
    for line in r.stdout.splitlines():
        t = line.encode().decode("unicode_escape")
        if t == path or t.startswith(path.rstrip("/") + "/"):
            out.append(t)
    return out


def my_memory_cgroup():
    for line in open("/proc/self/cgroup"):
        _, ctrl, path = line.rstrip("\n").split(":", 2)
        if "memory" in ctrl.split(","):
            return path
    raise SystemExit("no memory line in /proc/self/cgroup")


def make_parent_cgroups():
    for c in CONTROLLERS:
        base = f"/sys/fs/cgroup/{c}"
        if not os.path.isdir(base) or os.path.islink(base):
            continue
        d = base
        for part in cg_parent.strip("/").split("/"):
            parent, d = d, f"{d}/{part}"
            if os.path.isdir(d):
                continue
            os.mkdir(d)
            cg_created.append(d)
            if c == "cpuset":
                for f in ("cpuset.cpus", "cpuset.mems"):
                    with open(f"{parent}/{f}") as src, open(f"{d}/{f}", "w") as dst:
                        dst.write(src.read().strip())


def remove_cgroups():
    for c in CONTROLLERS:
        base = f"/sys/fs/cgroup/{c}"
        if cg_parent and os.path.isdir(base + cg_parent):
            for dirpath, _, _ in sorted(os.walk(base + cg_parent), key=lambda w: len(w[0]), reverse=True):
                if dirpath != base + cg_parent:
                    log(f"cleanup: left behind: cgroup {dirpath}; removing")
                    try:
                        os.rmdir(dirpath)
                    except OSError as e:
                        log(f"cleanup: cannot remove {dirpath}: {e}")
    for p in reversed(cg_created):
        try:
            os.rmdir(p)
        except FileNotFoundError:
            pass
        except OSError as e:
            log(f"cleanup: leaving {p}: {e}")


# ------------------------------------------------------------------------------------------------ setup


def make_context(ctx):
    os.makedirs(os.path.join(ctx, "files"))
    shutil.copy(os.path.join(HERE, "build-context", "Dockerfile"), os.path.join(ctx, "Dockerfile"))
    rnd = random.Random(42)
    for i in range(200):
        with open(os.path.join(ctx, "files", f"f{i:03d}"), "wb") as f:
            f.write(bytes(rnd.getrandbits(8) for _ in range(100 + rnd.randrange(1000))))
    with open(os.path.join(ctx, "big.bin"), "wb") as f:
        f.write(rnd.randbytes(5 << 20))
    for dirpath, dirs, files in os.walk(ctx):
        for n in dirs + files:
            os.utime(os.path.join(dirpath, n), (1_700_000_000, 1_700_000_000))


def setup_fs():
    """As bench/engine.py: stores on a fresh journaled ext4 loop mount (this VM's /var/tmp ext4 has no journal
    and online discard, which bills every unlink); buildah's runroot on a tmpfs, as /run on a host."""
    global data, brun
    data = os.path.join(work, "d")
    os.mkdir(data)
    if FS == "loop":
        img = os.path.join(work, "fs.img")
        subprocess.run(["truncate", "-s", FS_SIZE, img], check=True)
        subprocess.run(["mkfs.ext4", "-q", "-E", "lazy_itable_init=0,lazy_journal_init=0", img], check=True)
        subprocess.run(["mount", "-o", "loop", img, data], check=True)
        expected_mounts.add(data)
        dev = subprocess.run(["findmnt", "-no", "SOURCE", data], capture_output=True, text=True).stdout.strip()
        subprocess.run(["losetup", "--direct-io=on", dev])
    elif FS != "host":
        raise SystemExit(f"FS={FS}: loop or host")
    brun = os.path.join(work, "r")
    os.mkdir(brun)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256m,mode=0700", "berth-bench-brun", brun], check=True)
    expected_mounts.add(brun)


# ---------------------------------------------------------------------------------------------- engines


class Berth:
    name = "berth"

    def __init__(self, n):
        self.root = os.path.join(data, f"berth{n}")

    def cli(self, *a):
        return [BERTH, "--root", self.root, *a]

    def load(self, archive):
        run(self.cli("load", "-i", archive))

    def build_argv(self, ctx):
        return self.cli("build", "-q", "-t", TAG, ctx)

    def image_id(self, out):
        return out.splitlines()[-1].strip() if out else ""

    def check(self):
        r = run(self.cli("run", "--rm", "--network", "none", TAG), check=False)
        return (r.stdout + r.stderr).strip()

    def leftovers(self):
        return run(self.cli("ps", "-aq"), check=False).stdout.split()

    def destroy(self):
        for cid in self.leftovers():
            log(f"cleanup: berth lists container {cid}; removing")
            run(self.cli("rm", "-f", cid), check=False)
        ms = mounts_under(self.root)
        if ms:
            log(f"berth left mounted: {ms}; unmounting")
            for m in sorted(ms, key=len, reverse=True):
                subprocess.run(["umount", m], check=False)
        shutil.rmtree(self.root, ignore_errors=True)


class Buildah:
    name = "buildah"

    def __init__(self, n):
        self.root = os.path.join(data, f"buildah{n}")
        self.runroot = os.path.join(brun, f"b{n}")
        self.opts = ["--root", self.root, "--runroot", self.runroot, "--storage-driver", DRIVER,
                     "--cgroup-manager", "cgroupfs"]
        self.env = dict(os.environ, TMPDIR=os.path.join(data, "tmp"), BUILDAH_LAYERS="true")

    def cli(self, *a):
        return [BUILDAH, *self.opts, *a]

    def load(self, archive):
        os.makedirs(os.path.join(data, "tmp"), exist_ok=True)
        run(self.cli("pull", "-q", f"docker-archive:{archive}"), env=self.env)

    def build_argv(self, ctx):
        return self.cli("bud", "-q", "--layers", "--pull=never", "--isolation", ISOLATION, "--network", "host",
                        "--runtime", CRUN, "--cgroup-parent", cg_parent, "-t", TAG, ctx)

    def image_id(self, out):
        return out.splitlines()[-1].strip() if out else ""

    def check(self):
        r = run(self.cli("inspect", "-f", "{{.OCIv1.Config.Cmd}} {{.OCIv1.Config.WorkingDir}}", TAG), check=False,
                env=self.env)
        return (r.stdout + r.stderr).strip()

    def leftovers(self):
        return run(self.cli("containers", "-q"), check=False, env=self.env).stdout.split()

    def destroy(self):
        run(self.cli("rm", "--all"), check=False, env=self.env)
        run(self.cli("rmi", "--all", "--force"), check=False, env=self.env)
        for m in sorted(mounts_under(self.root) + mounts_under(self.runroot), key=len, reverse=True):
            subprocess.run(["umount", m], check=False)
        shutil.rmtree(self.root, ignore_errors=True)
        shutil.rmtree(self.runroot, ignore_errors=True)


# ------------------------------------------------------------------------------------------------- main


def fmt_table(rows):
    w = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    out = ["| " + " | ".join(str(c).ljust(w[i]) for i, c in enumerate(r)) + " |" for r in rows]
    out.insert(1, "|" + "|".join("-" * (x + 2) for x in w) + "|")
    return "\n".join(out)


def bench(ctx, archive):
    kinds = [Berth, Buildah]
    res = {k.name: {"cold": [], "cached": [], "ids": []} for k in kinds}
    checked = {}
    live = []
    try:
        for r in range(ROUNDS):
            order = kinds if r % 2 == 0 else kinds[::-1]
            line = []
            for K in order:
                e = K(r)
                live.append(e)
                e.load(archive)
                if quiesce() is None:
                    raise RuntimeError(f"leftover processes before {e.name}'s build: {ours()}")
                cold, out1 = timed(e.build_argv(ctx), env=getattr(e, "env", None))
                if quiesce() is None:
                    raise RuntimeError(f"leftover processes after {e.name}'s cold build: {ours()}")
                cached, out2 = timed(e.build_argv(ctx), env=getattr(e, "env", None))
                id1, id2 = e.image_id(out1), e.image_id(out2)
                res[e.name]["cold"].append(cold)
                res[e.name]["cached"].append(cached)
                res[e.name]["ids"].append((id1, id2))
                if id1 != id2:
                    log(f"WARNING {e.name}: cached build made a different image: {id1} vs {id2}")
                if e.name not in checked:
                    checked[e.name] = e.check()
                    log(f"# {e.name} image check: {checked[e.name]}")
                left = e.leftovers()
                if left:
                    log(f"WARNING {e.name}: containers left after the builds: {left}")
                line.append(f"{e.name} cold {cold * 1e3:.0f} ms, cached {cached * 1e3:.0f} ms")
                e.destroy()
                live.remove(e)
            log(f"# round {r + 1}/{ROUNDS}: " + "; ".join(line))
    finally:
        for e in live:
            e.destroy()
    return res, checked


def main():
    global work, cg_parent, cache_mounted
    if os.geteuid() != 0:
        raise SystemExit("run as root")
    work = tempfile.mkdtemp(prefix="bbld.", dir="/var/tmp")
    cg_parent = f"{my_memory_cgroup().rstrip('/')}/berth-build-bench-{os.getpid()}"
    try:
        if os.path.isdir("/var/lib/containers/cache"):  # containers/image's blob info cache: keep the host's
            os.mkdir(os.path.join(work, "cc"))
            subprocess.run(["mount", "--bind", os.path.join(work, "cc"), "/var/lib/containers/cache"], check=True)
            cache_mounted = True
        setup_fs()
        make_parent_cgroups()
        ctx = os.path.join(work, "ctx")
        make_context(ctx)
        archive = os.path.join(work, "busybox.tar")
        run([sys.executable, os.path.join(REPO, "scripts", "busybox-image.py"), archive, "busybox:latest"])
        res, checked = bench(ctx, archive)
        b, p = res["berth"], res["buildah"]
        rows = [["engine", "cold median ms", "cold min-max ms", "cached median ms", "cached min-max ms"]]
        for n, x in (("berth", b), ("buildah", p)):
            rows.append([n, f"{med(x['cold']) * 1e3:.0f}", f"{min(x['cold']) * 1e3:.0f}-{max(x['cold']) * 1e3:.0f}",
                         f"{med(x['cached']) * 1e3:.0f}",
                         f"{min(x['cached']) * 1e3:.0f}-{max(x['cached']) * 1e3:.0f}"])
        paired = {k: med(y / x for x, y in zip(b[k], p[k])) for k in ("cold", "cached")}
        report = [
            f"berth {BERTH}; {run([BUILDAH, '--version']).stdout.strip()} (--storage-driver {DRIVER}, "
            f"--isolation {ISOLATION}, --runtime {CRUN}, --layers); stores: "
            f"{'fresh journaled ext4 (loop)' if FS == 'loop' else '/var/tmp'}; buildah runroot: tmpfs; "
            f"{ROUNDS} rounds, order alternating",
            "",
            fmt_table(rows),
            "",
            f"buildah / berth: cold {med(p['cold']) / med(b['cold']):.2f} (medians), {paired['cold']:.2f} paired; "
            f"cached {med(p['cached']) / med(b['cached']):.2f} (medians), {paired['cached']:.2f} paired",
            f"image ids (cold == cached in every round): berth {all(a == c for a, c in b['ids'])}, "
            f"buildah {all(a == c for a, c in p['ids'])}",
            f"berth's image, `run --rm`: {checked.get('berth')!r}; buildah's image (Cmd, WorkingDir): "
            f"{checked.get('buildah')!r}",
        ]
        print("\n".join(report))
    finally:
        cleanup()


def cleanup():
    global cache_mounted
    if work:
        if quiesce(5) is None:
            for pid, argv in ours().items():
                log(f"cleanup: stopping leftover process {pid}: {' '.join(argv)[:200]}")
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            quiesce(5)
    remove_cgroups()
    if work:
        for m in sorted(mounts_under(work), key=len, reverse=True):
            if m not in expected_mounts:
                log(f"cleanup: left mounted: {m}; unmounting")
            subprocess.run(["umount", m], check=False)
        for m in mounts_under(work):
            log(f"cleanup: still mounted {m}; lazy unmount")
            subprocess.run(["umount", "-l", m], check=False)
    if cache_mounted:
        subprocess.run(["umount", "/var/lib/containers/cache"], check=False)
        cache_mounted = False
    if work:
        shutil.rmtree(work, ignore_errors=True)


def on_signal(sig, _frame):
    raise KeyboardInterrupt(f"signal {sig}")


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    main()
