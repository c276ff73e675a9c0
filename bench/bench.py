#!/usr/bin/env python3
"""Side-by-side container start benchmark: berth-runtime vs crun vs runc (driven by bench/run.sh).

Must run as root inside ../shared/tools/peer-ns.sh (crun refuses the host's hybrid cgroups otherwise).
Every runtime gets the same rootfs and an ABSOLUTE cgroupsPath below this process's own cgroup
(/proc/self/cgroup: memory lives under /process_api/<hash>, the other v1 controllers at "/").

Scenarios (all iterations interleaved round-robin across runtimes, rotating the order each iteration):
  a    RUNTIME --root R run --bundle B ID         (/bin/true, foreground; run removes the container itself)
  b    create --pid-file P; start; wait; delete    (the containerd-shim way; this process is a child
                                                   subreaper like the shim, wait = pidfd_open(init)+poll,
                                                   then reap; the whole sequence is timed)
  c    (a) with docker's default seccomp profile in linux.seccomp; berth "warm" keeps its
       --root/.seccomp-cache (warmed before timing), berth "cold" has the cache removed before every
       iteration (outside the timing)
Timing: wall clock (CLOCK_MONOTONIC) from fork to wait4 of the runtime process, measured by bench/spawn.c, a
tiny static launcher (its fork+exec+wait of /bin/true is reported as the floor included in every number).
(b) is timed in python around the whole sequence (3 launcher round trips + pidfd poll).
Peak RSS: ru_maxrss from wait4 of the runtime process. The kernel folds in the max RSS of every descendant the
runtime itself reaped, and the high-water mark before execve (berth's re-exec of itself happens in the same
process, so it is covered; that is also why the launcher must be tiny, not python). For (b): the max over the
create/start/delete calls. The container's own init (static busybox /bin/true) is tiny.
"""
import json
import os
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ITER = int(os.environ.get("ITER", "150"))
WARMUP = int(os.environ.get("WARMUP", "3"))
SCENARIOS = os.environ.get("SCENARIOS", "a,b,c").split(",")
BERTH = os.environ["BERTH"]
CRUN = os.environ.get("CRUN", shutil.which("crun") or "/usr/bin/crun")
RUNC = os.environ.get("RUNC", shutil.which("runc") or "/usr/sbin/runc")
SECCOMP = os.environ.get("SECCOMP_PROFILE")
BUSYBOX = os.environ.get("BUSYBOX", "/bin/busybox")
JSON_OUT = os.environ.get("JSON_OUT")
STRACE_DIR = os.environ.get("STRACE_DIR")  # set by bench/strace.sh: trace instead of timing
EXTRA = [x for x in os.environ.get("EXTRA_BERTH", "").split(",") if x]  # e.g. berth-noseal

CONTROLLERS = ["pids", "blkio", "freezer", "devices", "memory", "cpuset", "cpu", "cpuacct", "systemd"]

work = None
launcher = None
cg_parent = ""
cg_created = []  # cgroup directories this script made (parents first)
runtimes_all = []
live = []  # (runtime binary, root, id) that may still exist


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def my_memory_cgroup():
    for line in open("/proc/self/cgroup"):
        _, ctrl, path = line.rstrip("\n").split(":", 2)
        if "memory" in ctrl.split(","):
            return path
    raise SystemExit("no memory line in /proc/self/cgroup")


class Launcher:
    """The tiny static launcher of bench/spawn.c: spawns, times and wait4s each runtime invocation."""

    def __init__(self):
        src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "spawn.c")
        exe = os.path.join(work, "spawn")
        r = subprocess.run(["gcc", "-O2", "-static", "-o", exe, src], capture_output=True, text=True)
        if r.returncode != 0:
            log("spawn.c: static link failed, linking dynamically:", r.stderr.strip()[-300:])
            subprocess.run(["gcc", "-O2", "-o", exe, src], check=True)
        req_r, req_w = os.pipe()
        resp_r, resp_w = os.pipe()
        self.proc = subprocess.Popen([exe, str(req_r), str(resp_w)], pass_fds=(req_r, resp_w),
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        os.close(req_r)
        os.close(resp_w)
        self.w = os.fdopen(req_w, "w", buffering=1)
        self.r = os.fdopen(resp_r, "r")
        self.errfile = os.path.join(work, "stderr")

    def call(self, fields):
        self.w.write("\t".join(fields) + "\n")
        line = self.r.readline()
        if not line:
            raise RuntimeError("launcher died")
        code, ns, rss = line.split()
        return int(code), int(ns) / 1e9, int(rss)

    def run(self, argv, env_extra=()):
        """-> (seconds, exit code, maxrss KiB, stderr text)"""
        code, dt, rss = self.call(["run", self.errfile, *env_extra, *argv])
        err = ""
        if code != 0:
            try:
                err = open(self.errfile).read()
            except OSError:
                pass
        return dt, code, rss, err

    def reap(self, pid):
        self.call(["reap", str(pid)])

    def close(self):
        try:
            self.w.close()
            self.proc.wait(timeout=10)
        except Exception:
            self.proc.kill()
            self.proc.wait()


def spawn_wait(argv, env_extra=()):
    return launcher.run(argv, env_extra)


def full_env(extra):
    return dict(os.environ, **dict(e.split("=", 1) for e in extra))


class Runtime:
    def __init__(self, name, binary, env=(), cold_seccomp=False):
        self.name, self.bin, self.env, self.cold = name, binary, env, cold_seccomp
        self.root = os.path.join(work, "root-" + name)
        os.makedirs(self.root, exist_ok=True)
        self.n = 0

    def next_id(self, scen):
        self.n += 1
        return f"bench-{scen}-{self.name}-{os.getpid()}-{self.n}"

    def env_cmd(self):
        return ["/usr/bin/env", *self.env] if self.env else []

    def argv(self, *a):
        return [self.bin, "--root", self.root, *a]

    def before(self):
        if self.cold:
            shutil.rmtree(os.path.join(self.root, ".seccomp-cache"), ignore_errors=True)


def make_bundle(scen, rt_name, cg_parent, seccomp):
    b = os.path.join(work, f"bundle-{scen}-{rt_name}")
    os.makedirs(b)
    cfg = json.loads(json.dumps(base_config))
    cfg["root"] = {"path": os.path.join(work, "rootfs"), "readonly": True}
    cfg["ociVersion"] = "1.0.2"  # crun 1.8 rejects berth's "1.2.0" ("unknown version specified")
    cfg["process"]["terminal"] = False
    cfg["process"]["args"] = ["/bin/true"]
    cfg["linux"]["cgroupsPath"] = f"{cg_parent}/{scen}-{rt_name}"
    if seccomp is not None:
        cfg["linux"]["seccomp"] = seccomp
    with open(os.path.join(b, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    return b


def check(rt, what, code, err):
    if code != 0:
        raise RuntimeError(f"{rt.name} {what}: exit {code}: {err.strip()[-800:]}")


def run_a(rt, bundle):
    rt.before()
    cid = rt.next_id("a")
    live.append((rt, cid))
    dt, code, rss, err = spawn_wait(rt.argv("run", "--bundle", bundle, cid), rt.env)
    check(rt, "run", code, err)
    live.pop()
    return dt, rss


def run_b(rt, bundle):
    rt.before()
    cid = rt.next_id("b")
    pidfile = os.path.join(work, "pid-" + cid)
    live.append((rt, cid))
    t0 = time.perf_counter()
    _, code, r1, err = spawn_wait(rt.argv("create", "--bundle", bundle, "--pid-file", pidfile, cid), rt.env)
    check(rt, "create", code, err)
    pid = int(open(pidfile).read().strip())
    pfd = os.pidfd_open(pid)
    _, code, r2, err = spawn_wait(rt.argv("start", cid), rt.env)
    check(rt, "start", code, err)
    p = select.poll()
    p.register(pfd, select.POLLIN)
    if not p.poll(10000):
        raise RuntimeError(f"{rt.name}: init {pid} did not exit within 10 s")
    os.close(pfd)
    launcher.reap(pid)  # the launcher is the subreaper: reap the init like a shim does
    _, code, r3, err = spawn_wait(rt.argv("delete", cid), rt.env)
    check(rt, "delete", code, err)
    dt = time.perf_counter() - t0
    live.pop()
    os.unlink(pidfile)
    return dt, max(r1, r2, r3)


def pct(xs, q):
    xs = sorted(xs)
    k = (len(xs) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def table(title, res, order):
    med = {n: statistics.median(res[n][0]) for n in order}
    lines = [f"### {title}", "",
             "| runtime | median ms | p10 ms | p90 ms | vs crun | vs runc | paired vs crun | peak RSS MB (median / max) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for n in order:
        t, r = res[n]
        # paired: median over iterations of t[i] / crun[i] (same round of the round robin, so shared noise)
        paired = statistics.median(x / y for x, y in zip(t, res["crun"][0])) if "crun" in res else None
        lines.append("| %s | %.2f | %.2f | %.2f | %s | %s | %s | %.2f / %.2f |" % (
            n, med[n] * 1e3, pct(t, .1) * 1e3, pct(t, .9) * 1e3,
            "%.2f" % (med[n] / med["crun"]) if "crun" in med else "-",
            "%.2f" % (med[n] / med["runc"]) if "runc" in med else "-",
            "%.2f" % paired if paired is not None else "-",
            statistics.median(r) / 1024, max(r) / 1024))
    return "\n".join(lines) + "\n"


def scenario(name, fn, rts, bundles):
    res = {rt.name: ([], []) for rt in rts}
    for i in range(-WARMUP, ITER):
        k = i % len(rts)
        for rt in rts[k:] + rts[:k]:  # rotate the order each iteration
            dt, rss = fn(rt, bundles[rt.name])
            if i >= 0:
                res[rt.name][0].append(dt)
                res[rt.name][1].append(rss)
    return res


def cleanup():
    for rt, cid in list(live):
        subprocess.run(rt.argv("delete", "--force", cid), env=full_env(rt.env),
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # anything else a runtime left in our roots
    for rt in runtimes_all:
        try:
            out = subprocess.run(rt.argv("list", "-q"), env=full_env(rt.env), capture_output=True, text=True).stdout
        except OSError:
            continue
        for cid in out.split():
            log(f"cleanup: {rt.name} left container {cid}; deleting")
            subprocess.run(rt.argv("delete", "--force", cid), env=full_env(rt.env),
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if launcher:
        launcher.close()
    # cgroups: the runtimes should have removed their leaves (report and remove any they left), then the
    # directories we created, deepest first. rmdir only: it fails (EBUSY) rather than touch a cgroup that
    # still holds a process.
    for c in CONTROLLERS:
        base = f"/sys/fs/cgroup/{c}"
        if not cg_parent or not os.path.isdir(base + cg_parent):
            continue
        for dirpath, _, _ in sorted(os.walk(base + cg_parent), key=lambda w: len(w[0]), reverse=True):
            if dirpath != base + cg_parent:
                log(f"cleanup: a runtime left cgroup {dirpath}; removing")
                try:
                    os.rmdir(dirpath)
                except OSError as e:
                    log(f"cleanup: cannot remove {dirpath}: {e}")
    for p in reversed(cg_created):
        try:
            os.rmdir(p)
        except FileNotFoundError:
            pass
        except OSError as e:  # e.g. someone else created something below it meanwhile: leave it
            log(f"cleanup: leaving {p}: {e}")
    if work:
        shutil.rmtree(work, ignore_errors=True)


def strace_all(rts, cold, seccomp):
    """One traced `run` per runtime and scenario (a, c): a summary (-c) and a timeline (-ttt -T) each."""
    strace = shutil.which("strace")
    os.makedirs(STRACE_DIR, exist_ok=True)
    for scen, sc in (("a", None), ("c", seccomp)):
        group = rts + ([cold] if scen == "c" else [])
        bundles = {rt.name: make_bundle(scen, rt.name, cg_parent, sc) for rt in group}
        for rt in group:
            for _ in range(3):  # warm: page cache, seccomp cache
                run_a(rt, bundles[rt.name])
            for kind, opts in (("summary", ["-c", "-S", "time"]), ("timeline", ["-ttt", "-T", "-y"])):
                rt.before()
                out = os.path.join(STRACE_DIR, f"{scen}-{rt.name}-{kind}.txt")
                cid = rt.next_id(scen)
                live.append((rt, cid))
                _, code, _, err = spawn_wait([strace, "-f", *opts, "-o", out, *rt.env_cmd(),
                                              *rt.argv("run", "--bundle", bundles[rt.name], cid)])
                check(rt, "strace run", code, err)
                live.pop()
            log(f"strace: {scen} {rt.name} done")


def make_parent_cgroups():
    """Create the parent of every container cgroup (cg_parent) in every v1 hierarchy, as a real host has its
    /docker or /kubepods: no runtime then creates (or, like berth, removes again) parent directories, which
    would make the order of the round robin matter. cpuset needs cpus and mems before it can hold tasks."""
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


def main():
    global work, launcher, base_config, runtimes_all, cg_parent
    if os.geteuid() != 0:
        raise SystemExit("run as root")
    work = tempfile.mkdtemp(prefix="berth-bench-")
    launcher = Launcher()
    cg_parent = f"{my_memory_cgroup().rstrip('/')}/berth-bench-{os.getpid()}"
    make_parent_cgroups()
    runtimes_all = []
    try:
        # rootfs: static busybox and its applet links
        rootfs = os.path.join(work, "rootfs")
        for d in ["bin", "proc", "dev", "sys", "tmp", "etc"]:
            os.makedirs(os.path.join(rootfs, d))
        shutil.copy2(BUSYBOX, os.path.join(rootfs, "bin/busybox"))
        applets = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True, check=True).stdout.split()
        for a in applets:
            if a != "busybox":
                os.symlink("busybox", os.path.join(rootfs, "bin", a))
        specdir = os.path.join(work, "spec")
        os.makedirs(specdir)
        subprocess.run([BERTH, "spec", "--bundle", specdir], check=True)
        base_config = json.load(open(os.path.join(specdir, "config.json")))
        seccomp = json.load(open(SECCOMP)) if SECCOMP else None

        berth_env = ()
        rts = [Runtime("berth", BERTH, berth_env), Runtime("crun", CRUN), Runtime("runc", RUNC)]
        if "berth-noseal" in EXTRA:
            rts.append(Runtime("berth-noseal", BERTH, ("BERTH_RUNTIME_NO_SEAL=1",)))
        if os.environ.get("BERTH_ALT"):  # a second berth build to compare (e.g. from a patched copy)
            rts.append(Runtime(os.environ.get("BERTH_ALT_NAME", "berth-alt"), os.environ["BERTH_ALT"]))
            if "berth-noseal" in EXTRA:
                rts.append(Runtime("berth-alt-noseal", os.environ["BERTH_ALT"], ("BERTH_RUNTIME_NO_SEAL=1",)))
        runtimes_all.extend(rts)
        cold = Runtime("berth-cold", BERTH, berth_env, cold_seccomp=True)
        runtimes_all.append(cold)

        # driver overhead reference
        floor = [spawn_wait(["/bin/true"]) for _ in range(200)]
        report = [f"ITER={ITER} (+{WARMUP} warm-up), launcher fork+exec+wait4 of /bin/true: median "
                  f"{statistics.median(f[0] for f in floor) * 1e3:.2f} ms, maxrss "
                  f"{statistics.median(f[2] for f in floor) / 1024:.2f} MB (a floor included in every number)\n"]
        results = {}
        log(report[0].strip())
        if STRACE_DIR:
            strace_all(rts, cold, seccomp)
            return
        if "a" in SCENARIOS:
            bundles = {rt.name: make_bundle("a", rt.name, cg_parent, None) for rt in rts}
            log("(a) run /bin/true ...")
            res = scenario("a", run_a, rts, bundles)
            results["a"] = res
            report.append(table("(a) run /bin/true (foreground, run removes the container)", res,
                                [r.name for r in rts]))
            log(report[-1])
        if "b" in SCENARIOS:
            bundles = {rt.name: make_bundle("b", rt.name, cg_parent, None) for rt in rts}
            log("(b) create/start/wait/delete ...")
            res = scenario("b", run_b, rts, bundles)
            results["b"] = res
            report.append(table("(b) create + start + wait(pidfd) + delete, whole sequence", res,
                                [r.name for r in rts]))
            log(report[-1])
        if "c" in SCENARIOS and seccomp is not None:
            # "berth-noseccomp": berth on the bundle of (a), in the same rounds, for a paired (c) - (a)
            plain = Runtime("berth-noseccomp", BERTH, berth_env)
            runtimes_all.append(plain)
            rts_c = rts + [cold, plain]
            bundles = {rt.name: make_bundle("c", rt.name, cg_parent, None if rt is plain else seccomp)
                       for rt in rts_c}
            log("(c) run /bin/true with docker-default seccomp ...")
            res = scenario("c", run_a, rts_c, bundles)
            results["c"] = res
            report.append(table("(c) run /bin/true with docker's default seccomp profile "
                                "(berth = warm cache, berth-cold = cache removed before each run)",
                                res, [r.name for r in rts_c]))
            for name in ("berth", "berth-cold"):
                d = [x - y for x, y in zip(res[name][0], res["berth-noseccomp"][0])]
                report.append(f"{name} minus berth-noseccomp (same round): median {statistics.median(d) * 1e3:+.2f} ms, "
                              f"p10 {pct(d, .1) * 1e3:+.2f}, p90 {pct(d, .9) * 1e3:+.2f}\n")
            log("".join(report[-3:]))
        print("\n".join(report))
        if JSON_OUT:
            json.dump({s: {n: {"seconds": t, "maxrss_kib": r} for n, (t, r) in res.items()}
                       for s, res in results.items()}, open(JSON_OUT, "w"))
    finally:
        cleanup()


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGHUP, lambda *_: sys.exit(129))
    main()
