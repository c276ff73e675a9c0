#!/usr/bin/env python3
"""berth-runtime as the OCI runtime under containerd and dockerd, against crun and runc; driven by bench/shim.sh.

Must run as root inside ../shared/tools/peer-ns.sh (crun refuses the host's hybrid cgroups otherwise).

Daemons, all private to this run (W = a fresh temp dir /var/tmp/bshim.XXXXXXXX, short: unix socket paths are
limited to 108 bytes):
  containerd  W/config.toml: version 2, root W/root, state W/state, [grpc] W/containerd.sock, [ttrpc]
              W/containerd.sock.ttrpc, the opt plugin's path W/opt (default: /opt/containerd on the host), CRI
              plugin disabled. Started as `unshare --mount --propagation private -- sh -c 'mount -t tmpfs
              bench-run /run && exec "$@"' sh containerd --config W/config.toml`: containerd 1.6's
              io.containerd.runc.v2 shim always puts its sockets under /run/containerd and the runtime's
              --root at /run/containerd/runc, so /run is a tmpfs of that mount namespace (the host's /run is
              untouched, and every overlay mount of the run dies with the namespace).
  dockerd     in the same mount namespace (nsenter --mount=/proc/CONTAINERD/ns/mnt), using that containerd:
              --config-file W/docker/daemon.json ({"deprecated-key-path": ...}: otherwise /etc/docker/key.json)
              --data-root W/docker/root --exec-root W/docker/exec --pidfile W/docker/docker.pid
              --host unix://W/docker/docker.sock --containerd W/containerd.sock --bridge none
              --iptables=false --ip-masq=false --ip6tables=false --storage-driver overlay2
              --cgroup-parent P --add-runtime berth=BERTH_RUNTIME --add-runtime crun=/usr/bin/crun
              (runc: docker's default runtime `runc`, from PATH). Client: /usr/bin/docker (Debian's CLI) with
              DOCKER_CONFIG=W/docker/client.
Image: scripts/busybox-image.py (static busybox + applet links, /etc/passwd, Cmd ["sh"]) written as a
docker-archive named docker.io/library/busybox:latest; `ctr -n default images import` (unpacked into the
overlayfs snapshotter) and `docker load -i`.

Cgroups: crun puts a relative cgroupsPath at the hierarchy root, runc and berth-runtime nest it below the
caller's cgroup, so every container gets an absolute path below this process's own cgroup instead:
P = <this process's memory cgroup>/berth-shim-bench-PID, created by the bench in every v1 hierarchy (cpuset:
cpus and mems copied from the parent) and removed after, deepest first (anything left below P is reported).

(a) ctr --address W/containerd.sock -n default run --rm --runc-binary R --cgroup P/ID --fifo-dir W/fifo
       docker.io/library/busybox:latest ID true
    R = BERTH_RUNTIME, /usr/bin/crun, /usr/sbin/runc (absolute paths, passed as the shim's BinaryName).
    --fifo-dir: ctr creates the IO fifos, and its default /run/containerd/fifo is not the shim's /run.
(b) docker -H unix://W/docker/docker.sock run --rm --network none --runtime NAME
       docker.io/library/busybox:latest true
    NAME = berth, crun, runc.

WARMUP rounds, then ROUNDS rounds. Each round runs every runtime of each part once: the order of the
runtimes rotates from round to round (berth, crun, runc / crun, runc, berth / runc, berth, crun), the order
of the parts alternates (a then b, b then a), so every runtime sees the same load. Wall clock
(CLOCK_MONOTONIC) from spawn to wait4 of the CLI, stdin/stdout /dev/null, stderr to a file (shown on
failure). Before every run the bench waits until no process of the previous run is left (any process
whose command line names W, other than containerd and dockerd: the shim, which names W/containerd.sock,
and the runtime, which names its bundle's log.json) and reports that "tail" (time from the CLI's exit until
the last one is gone; one /proc scan is ~2 ms) separately. Both CLIs wait for the removal: ctr run --rm
deletes the task and the container, docker's CLI waits for the "removed" condition. After the rounds: no
container is left in either (ctr containers ls, docker ps -a), nor any cgroup below P.

Before the rounds, an identity check per part and runtime: one detached `sleep 1000` container whose
runtime state directory (ctr: /run/containerd/runc/default/ID in the daemons' namespace; docker:
W/docker/exec/runtime-runc/moby/ID, docker 20.10's --root for every runtime) is read: berth-runtime's state.json has cgroup.hierarchies, runc's has
cgroup_paths, crun keeps a `status` file. So each name really runs the runtime it is meant to.

Reported per part: median, p10, p90, min, max and the tail per runtime; berth / crun and berth / runc from
the medians and "paired" (the median over rounds of the ratio of the two runs in the same round).

Cleanup (also on failure, SIGINT, SIGTERM, SIGHUP): the CLI in flight is killed by pid; containers still
listed are removed through each API (docker rm -f; ctr tasks kill -a -s SIGKILL, tasks rm -f, containers rm,
in every containerd namespace); dockerd, then containerd, get SIGTERM and, after 20 / 10 s, SIGKILL. Then
what the shims left: a bundle's init.pid (only if that process's cgroup is below P) and the shims themselves
(containerd 1.6 writes no shim.pid; a shim is the process running containerd-shim-runc-v2 with `-address
W/containerd.sock`, which only this run's containerd starts), all by pid. Cgroups below P are reported and
removed, then P; W is removed once nothing names it. The tmpfs on /run and every overlay mount die with the
daemons' mount namespace.
"""
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROUNDS = int(os.environ.get("ROUNDS", "20"))
WARMUP = int(os.environ.get("WARMUP", "3"))
PARTS = [p.strip() for p in os.environ.get("PARTS", "a,b").split(",") if p.strip()]
BERTH_RUNTIME = os.environ["BERTH_RUNTIME"]
JSON_OUT = os.environ.get("JSON_OUT")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CRUN = shutil.which("crun") or "/usr/bin/crun"
RUNC = shutil.which("runc") or "/usr/sbin/runc"
CTR = shutil.which("ctr") or "/usr/bin/ctr"
DOCKER = "/usr/bin/docker"  # Debian's CLI; /usr/local/bin/docker may be a different client
IMAGE = "docker.io/library/busybox:latest"
CONTROLLERS = ["pids", "blkio", "freezer", "devices", "memory", "cpuset", "cpu", "cpuacct", "systemd"]
QUIESCE_TIMEOUT = 10.0
RUN_TIMEOUT = 120.0
RUNTIMES = ["berth", "crun", "runc"]  # display names, in the first round's order

work = None
cg_parent = ""
cg_created = []
containerd = None  # Popen
dockerd = None  # Popen
daemon_pids = set()
seq = 0


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def med(xs):
    xs = list(xs)
    return statistics.median(xs) if xs else float("nan")


def pct(xs, q):
    xs = sorted(xs)
    k = (len(xs) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


# -------------------------------------------------------------------------------------------- processes


def run(argv, check=True, timeout=120, env=None):
    r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout, env=env)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:8])} ... exited {r.returncode}: {(r.stderr or r.stdout).strip()[-1500:]}")
    return r


def timed(argv, env=None):
    """(wall seconds, exit code, stderr) of argv, timed from spawn to wait4 (blocking, so the clock stops when
    the CLI exits); killed by pid after RUN_TIMEOUT."""
    err = os.path.join(work, "stderr")
    with open(err, "w") as ef:
        t0 = time.monotonic_ns()
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=ef, env=env)
        timer = threading.Timer(RUN_TIMEOUT, lambda: os.kill(p.pid, signal.SIGKILL))
        timer.start()
        try:
            _, status, _ = os.wait4(p.pid, 0)
        except BaseException:  # interrupted: end the CLI we started, by pid, and reap it
            p.kill()
            p.wait()
            raise
        finally:
            timer.cancel()
        t1 = time.monotonic_ns()
        p.returncode = os.waitstatus_to_exitcode(status)  # so Popen does not wait for it again
    code = p.returncode
    return (t1 - t0) / 1e9, code, open(err).read() if code else ""


def ours():
    """pid -> argv of every live process whose command line names this run's temp dir, except the daemons."""
    out = {}
    me = os.getpid()
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == me or int(d) in daemon_pids:
            continue
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                cl = f.read()
        except OSError:
            continue
        if work.encode() in cl:
            out[int(d)] = [a.decode(errors="replace") for a in cl.split(b"\0") if a]
    return out


def quiesce(timeout=QUIESCE_TIMEOUT):
    """Wait until no process of ours (but the daemons) is left; -> seconds waited (None: timed out)."""
    t0 = time.monotonic()
    while True:
        if not ours():
            return time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            return None
        time.sleep(0.001)


def chk(r, verbose):
    if verbose and r.returncode != 0:
        log(f"cleanup: {' '.join(r.args[5:] if r.args[0] == CTR else r.args[3:])}: exit {r.returncode}: "
            f"{(r.stderr or r.stdout).strip()[-500:]}")


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def is_our_shim(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return False
    return (bool(argv) and os.path.basename(argv[0]).startswith("containerd-shim")
            and any(a == "-address" and b == sock() for a, b in zip(argv, argv[1:])))


def in_our_cgroup(pid):
    try:
        for line in open(f"/proc/{pid}/cgroup"):
            _, ctrl, path = line.rstrip("\n").split(":", 2)
            if "memory" in ctrl.split(","):
                return bool(cg_parent) and path.startswith(cg_parent + "/")
    except OSError:
        pass
    return False


def kill(pid, what):
    """SIGKILL, then wait (up to 5 s) until it is gone or a zombie: its cgroups can be removed only then."""
    log(f"cleanup: {what} (pid {pid}) still running; SIGKILL")
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    t0 = time.monotonic()
    while alive(pid) and time.monotonic() - t0 < 5:
        time.sleep(0.01)


def stop(p, name, grace):
    """SIGTERM to the process we started, wait up to grace seconds, then SIGKILL."""
    if p is None or p.poll() is not None:
        return
    log(f"# stopping {name} (pid {p.pid})")
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(grace)
    except subprocess.TimeoutExpired:
        log(f"cleanup: {name} (pid {p.pid}) still running {grace} s after SIGTERM; SIGKILL")
        p.kill()
        p.wait()


# ---------------------------------------------------------------------------------------------- cgroups


def my_memory_cgroup():
    for line in open("/proc/self/cgroup"):
        _, ctrl, path = line.rstrip("\n").split(":", 2)
        if "memory" in ctrl.split(","):
            return path
    raise SystemExit("no memory line in /proc/self/cgroup")


def hierarchies():
    for c in CONTROLLERS:
        base = f"/sys/fs/cgroup/{c}"
        if os.path.isdir(base) and not os.path.islink(base):
            yield base


def make_parent_cgroups():
    """cg_parent in every v1 hierarchy (as a host has /docker); cpuset needs cpus and mems first."""
    for base in hierarchies():
        d = base
        for part in cg_parent.strip("/").split("/"):
            parent, d = d, f"{d}/{part}"
            if os.path.isdir(d):
                continue
            os.mkdir(d)
            cg_created.append(d)
            if base.endswith("/cpuset"):
                for f in ("cpuset.cpus", "cpuset.mems"):
                    with open(f"{parent}/{f}") as src, open(f"{d}/{f}", "w") as dst:
                        dst.write(src.read().strip())


def cgroups_below_parent():
    out = []
    for base in hierarchies():
        top = base + cg_parent
        if os.path.isdir(top):
            out += [dp for dp, _, _ in os.walk(top) if dp != top]
    return out


def remove_cgroups():
    """Below cg_parent, everything is a container's (every runtime removes its own): reported and removed, deepest
    first (rmdir only: it refuses a cgroup that still holds a process); then the directories this bench made."""
    if not cg_parent:
        return
    for d in sorted(cgroups_below_parent(), key=len, reverse=True):
        log(f"cleanup: left behind: cgroup {d}; removing")
        t0 = time.monotonic()
        while True:
            try:
                os.rmdir(d)
                break
            except OSError as e:  # EBUSY while the last task's exit is still being accounted: retry for 2 s
                if time.monotonic() - t0 > 2:
                    log(f"cleanup: cannot remove {d}: {e}")
                    break
                time.sleep(0.05)
    for p in reversed(cg_created):
        try:
            os.rmdir(p)
        except FileNotFoundError:
            pass
        except OSError as e:
            log(f"cleanup: leaving {p}: {e}")


# ---------------------------------------------------------------------------------------------- daemons


def sock():
    return os.path.join(work, "containerd.sock")


def ddir(*p):
    return os.path.join(work, "docker", *p)


def ctr(*args, ns="default"):
    return [CTR, "--address", sock(), "-n", ns, *args]


DOCKER_ENV = None


def docker(*args):
    return [DOCKER, "-H", "unix://" + ddir("docker.sock"), *args]


def wait_ready(argv, what, proc, logf, timeout):
    t0 = time.monotonic()
    while True:
        if run(argv, check=False, timeout=30, env=DOCKER_ENV).returncode == 0:
            return time.monotonic() - t0
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited {proc.returncode}: {tail(logf)}")
        if time.monotonic() - t0 > timeout:
            raise RuntimeError(f"{what} not ready after {timeout} s: {tail(logf)}")
        time.sleep(0.05)


def tail(path, n=20):
    try:
        return "\n".join(open(path, errors="replace").read().splitlines()[-n:])
    except OSError:
        return ""


def start_containerd():
    global containerd
    cfg = os.path.join(work, "config.toml")
    with open(cfg, "w") as f:
        f.write(f'''version = 2
disabled_plugins = ["io.containerd.grpc.v1.cri"]
root = "{work}/root"
state = "{work}/state"
[grpc]
  address = "{sock()}"
[ttrpc]
  address = "{sock()}.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "{work}/opt"
''')
    logf = os.path.join(work, "containerd.log")
    with open(logf, "w") as lf:
        containerd = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
             'mount -t tmpfs -o mode=755 bench-run /run && exec "$@"', "sh", "containerd", "--config", cfg],
            stdin=subprocess.DEVNULL, stdout=lf, stderr=lf)
    daemon_pids.add(containerd.pid)
    dt = wait_ready([CTR, "--address", sock(), "version"], "containerd", containerd, logf, 30)
    log(f"# containerd pid {containerd.pid} ready after {dt:.2f} s")


def start_dockerd():
    global dockerd, DOCKER_ENV
    os.makedirs(ddir("client"))
    with open(ddir("daemon.json"), "w") as f:
        json.dump({"deprecated-key-path": ddir("key.json")}, f)
    DOCKER_ENV = dict(os.environ, DOCKER_CONFIG=ddir("client"))
    logf = ddir("dockerd.log")
    with open(logf, "w") as lf:
        dockerd = subprocess.Popen(
            ["nsenter", f"--mount=/proc/{containerd.pid}/ns/mnt", "--", "dockerd",
             "--config-file", ddir("daemon.json"), "--data-root", ddir("root"), "--exec-root", ddir("exec"),
             "--pidfile", ddir("docker.pid"), "--host", "unix://" + ddir("docker.sock"), "--containerd", sock(),
             "--bridge", "none", "--iptables=false", "--ip-masq=false", "--ip6tables=false",
             "--storage-driver", "overlay2", "--cgroup-parent", cg_parent,
             "--add-runtime", f"berth={BERTH_RUNTIME}", "--add-runtime", f"crun={CRUN}"],
            stdin=subprocess.DEVNULL, stdout=lf, stderr=lf)
    daemon_pids.add(dockerd.pid)
    dt = wait_ready(docker("version"), "dockerd", dockerd, logf, 60)
    log(f"# dockerd pid {dockerd.pid} ready after {dt:.2f} s")


# --------------------------------------------------------------------------------------------- runtimes


def next_id(name):
    global seq
    seq += 1
    return f"{name}-{seq}"


class CtrPart:
    part = "a"
    title = "(a) ctr run --rm --runc-binary R (containerd 1.6, io.containerd.runc.v2 shim)"
    binaries = {"berth": BERTH_RUNTIME, "crun": CRUN, "runc": RUNC}
    env = None

    def run_argv(self, name, *cmd, detach=False):
        cid = next_id(name)
        argv = ctr("run", "--rm" if not detach else "-d", *(["--null-io"] if detach else []),
                   "--runc-binary", self.binaries[name], "--cgroup", f"{cg_parent}/{cid}",
                   "--fifo-dir", os.path.join(work, "fifo"), IMAGE, cid, *cmd)
        return cid, argv

    def state_dir(self, name, cid):
        return f"/proc/{containerd.pid}/root/run/containerd/runc/default/{cid}"

    def remove(self, cid, verbose=False):
        chk(run(ctr("tasks", "kill", "-a", "-s", "SIGKILL", cid), check=False), verbose)
        t0 = time.monotonic()
        while time.monotonic() - t0 < 10:
            out = run(ctr("tasks", "ls"), check=False).stdout.split("\n")
            if not any(l.split()[:1] == [cid] and "RUNNING" in l for l in out):
                break
            time.sleep(0.05)
        chk(run(ctr("tasks", "rm", "-f", cid), check=False), verbose)
        chk(run(ctr("containers", "rm", cid), check=False), verbose)

    def left(self):
        return run(ctr("containers", "ls", "-q"), check=False).stdout.split()

    def command(self, name):
        return " ".join(self.run_argv(name, "true")[1]).replace(work, "W")


class DockerPart:
    part = "b"
    title = "(b) docker run --rm --runtime NAME (dockerd 20.10 on the same containerd)"
    names = {"berth": "berth", "crun": "crun", "runc": "runc"}

    @property
    def env(self):
        return DOCKER_ENV

    def run_argv(self, name, *cmd, detach=False):
        return None, docker("run", "-d" if detach else "--rm", "--network", "none", "--runtime",
                            self.names[name], IMAGE, *cmd)

    def state_dir(self, name, cid):
        return f"/proc/{containerd.pid}/root" + ddir("exec", "runtime-runc", "moby", cid)

    def remove(self, cid, verbose=False):
        chk(run(docker("rm", "-f", cid), check=False, env=DOCKER_ENV), verbose)

    def left(self):
        return run(docker("ps", "-aq", "--no-trunc"), check=False, env=DOCKER_ENV).stdout.split()

    def command(self, name):
        return " ".join(self.run_argv(name, "true")[1]).replace(work, "W")


def identify(p, name):
    """Start one detached `sleep 1000` container and tell the runtime from its state directory's format."""
    cid, argv = p.run_argv(name, "sleep", "1000", detach=True)
    r = run(argv, check=False, env=p.env)
    if p.part == "b" and r.returncode == 0:
        cid = r.stdout.strip()
    if r.returncode != 0:
        raise RuntimeError(f"{p.part} {name}: detached run failed ({r.returncode}): {(r.stderr or r.stdout).strip()[-1500:]}")
    try:
        d = p.state_dir(name, cid)
        files = sorted(os.listdir(d)) if os.path.isdir(d) else []
        st = {}
        if "state.json" in files:
            st = json.load(open(os.path.join(d, "state.json")))
        if isinstance(st.get("cgroup"), dict) and "hierarchies" in st["cgroup"]:
            kind = "berth"
        elif "cgroup_paths" in st:
            kind = "runc"
        elif "status" in files:
            kind = "crun"
        else:
            found = run(["find", f"/proc/{containerd.pid}/root/run", f"/proc/{containerd.pid}/root{work}",
                         "-name", cid + "*"], check=False).stdout.split()
            kind = f"unknown ({d}: {files}; found {found})"
        if kind != name:
            raise RuntimeError(f"part {p.part}, runtime {name}: the state dir is {kind}'s")
        return kind
    finally:
        p.remove(cid)


# ------------------------------------------------------------------------------------------------- bench


def rounds(parts):
    res = {p.part: {n: {"s": [], "tail": []} for n in RUNTIMES} for p in parts}
    for r in range(-WARMUP, ROUNDS):
        k = r % len(RUNTIMES)
        order = RUNTIMES[k:] + RUNTIMES[:k]
        line = []
        for p in (parts if r % 2 == 0 else parts[::-1]):
            for n in order:
                if quiesce() is None:
                    raise RuntimeError(f"processes of the previous run still there after {QUIESCE_TIMEOUT} s: {ours()}")
                _, argv = p.run_argv(n, "true")
                dt, code, err = timed(argv, env=p.env)
                if code != 0:
                    raise RuntimeError(f"part {p.part}, {n}: exited {code}: {err.strip()[-2000:]}")
                t = quiesce()
                if t is None:
                    raise RuntimeError(f"part {p.part}, {n}: processes left {QUIESCE_TIMEOUT} s after run --rm: {ours()}")
                if r >= 0:
                    res[p.part][n]["s"].append(dt)
                    res[p.part][n]["tail"].append(t)
                line.append(f"{p.part}:{n} {dt * 1e3:.0f}(+{t * 1e3:.0f})")
        log(f"# round {r + 1 if r >= 0 else 'warm-up'}: " + " ".join(line))
    return res


def fmt_table(rows):
    w = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    out = ["| " + " | ".join(str(c).ljust(w[i]) for i, c in enumerate(r)) + " |" for r in rows]
    out.insert(1, "|" + "|".join("-" * (x + 2) for x in w) + "|")
    return "\n".join(out)


def report(p, res):
    rows = [["runtime", "median ms", "p10 ms", "p90 ms", "min ms", "max ms", "tail ms (median)"]]
    for n in RUNTIMES:
        s, t = res[n]["s"], res[n]["tail"]
        rows.append([n, f"{med(s) * 1e3:.1f}", f"{pct(s, .1) * 1e3:.1f}", f"{pct(s, .9) * 1e3:.1f}",
                     f"{min(s) * 1e3:.1f}", f"{max(s) * 1e3:.1f}", f"{med(t) * 1e3:.1f}"])
    b = res["berth"]["s"]
    out = [f"### {p.title}, {ROUNDS} rounds (+{WARMUP} warm-up)", "", fmt_table(rows), ""]
    for other in ("crun", "runc"):
        o = res[other]["s"]
        out.append(f"berth / {other}: {med(b) / med(o):.3f} (medians), {med(x / y for x, y in zip(b, o)):.3f} paired "
                   f"(median of per-round ratios)")
    out.append(f"crun / runc: {med(res['crun']['s']) / med(res['runc']['s']):.3f} (medians)")
    out.append("")
    out.append("commands (W = the run's temp dir):")
    for n in RUNTIMES:
        out.append(f"  {n}: {p.command(n)}")
    return "\n".join(out) + "\n"


def cleanup(parts):
    for p in parts:
        if p.part == "b" and (dockerd is None or dockerd.poll() is not None):
            continue
        if p.part == "a" and (containerd is None or containerd.poll() is not None):
            continue
        try:
            for cid in p.left():
                log(f"cleanup: part {p.part} still lists container {cid}; removing")
                p.remove(cid, verbose=True)
        except Exception as e:
            log(f"cleanup: listing part {p.part}'s containers: {e}")
    stop(dockerd, "dockerd", 20)
    if containerd is not None and containerd.poll() is None:  # dockerd's containers (namespace moby), if any
        for ns in run(ctr("namespaces", "ls", "-q"), check=False).stdout.split():
            for t in run(ctr("tasks", "ls", "-q", ns=ns), check=False).stdout.split():
                log(f"cleanup: containerd namespace {ns} still has task {t}; killing")
                run(ctr("tasks", "kill", "-a", "-s", "SIGKILL", t, ns=ns), check=False)
                run(ctr("tasks", "rm", "-f", t, ns=ns), check=False)
            for c in run(ctr("containers", "ls", "-q", ns=ns), check=False).stdout.split():
                log(f"cleanup: containerd namespace {ns} still has container {c}; removing")
                run(ctr("containers", "rm", c, ns=ns), check=False)
    stop(containerd, "containerd", 10)
    # What the daemons' shims left (e.g. a task whose ctr was interrupted between create and start): a
    # container's init (init.pid in its bundle; killed only if its cgroup is below our parent, so a reused pid
    # is never hit) and the shims (containerd 1.6 writes no shim.pid: a shim is the process whose command line
    # is containerd-shim-runc-v2 ... -address <this run's private containerd socket>, which only this run's
    # containerd starts). All killed by pid.
    tasks = os.path.join(work, "state", "io.containerd.runtime.v2.task") if work else None
    if tasks and os.path.isdir(tasks):
        for ns in os.listdir(tasks):
            for b in os.listdir(os.path.join(tasks, ns)):
                for f in ("init.pid", "shim.pid"):
                    try:
                        pid = int(open(os.path.join(tasks, ns, b, f)).read().strip())
                    except (OSError, ValueError):
                        continue
                    if pid > 1 and alive(pid) and (is_our_shim(pid) or in_our_cgroup(pid)):
                        kill(pid, f"{f} of {ns}/{b}")
    if work:
        for pid, argv in ours().items():
            if is_our_shim(pid):
                kill(pid, "shim " + " ".join(argv))
    if work and quiesce(5) is None:
        log(f"cleanup: processes naming {work} still running (not killed: not known to be ours): {ours()}")
    remove_cgroups()
    if work:
        if quiesce(1) is None or (containerd and containerd.poll() is None):
            log(f"cleanup: leaving {work} in place (processes still use it)")
        else:
            shutil.rmtree(work, ignore_errors=True)
            if os.path.exists(work):
                subprocess.run(["rm", "-rf", work], check=False)


def main():
    global work, cg_parent
    if os.geteuid() != 0:
        raise SystemExit("run as root")
    for p in PARTS:
        if p not in ("a", "b"):
            raise SystemExit(f"PARTS={','.join(PARTS)}: a and/or b")
    work = tempfile.mkdtemp(prefix="bshim.", dir="/var/tmp")
    cg_parent = f"{my_memory_cgroup().rstrip('/')}/berth-shim-bench-{os.getpid()}"
    parts = [x for x in (CtrPart(), DockerPart()) if x.part in PARTS]
    try:
        make_parent_cgroups()
        archive = os.path.join(work, "busybox.tar")
        run([sys.executable, os.path.join(REPO, "scripts", "busybox-image.py"), archive, IMAGE])
        os.mkdir(os.path.join(work, "fifo"))
        start_containerd()
        head = [f"berth-runtime {BERTH_RUNTIME}; crun {CRUN}; runc {RUNC}; cgroup parent {cg_parent}"]
        if "a" in PARTS:
            t0 = time.monotonic()
            run(ctr("images", "import", archive))
            head.append(f"ctr images import: {(time.monotonic() - t0) * 1e3:.0f} ms")
        if "b" in PARTS:
            start_dockerd()
            t0 = time.monotonic()
            run(docker("load", "-q", "-i", archive), env=DOCKER_ENV)
            head.append(f"docker load: {(time.monotonic() - t0) * 1e3:.0f} ms")
            info = json.loads(run(docker("info", "--format", "{{json .}}"), env=DOCKER_ENV).stdout)
            head.append(f"docker info: default runtime {info.get('DefaultRuntime')}, runtimes "
                        + ", ".join(f"{k}={v.get('path')}" for k, v in sorted(info.get("Runtimes", {}).items()))
                        + f", cgroup driver {info.get('CgroupDriver')} v{info.get('CgroupVersion')}, "
                          f"storage {info.get('Driver')}, security options {info.get('SecurityOptions')}")
        for p in parts:
            head.append(f"identity check, part {p.part}: "
                        + ", ".join(f"{n} -> {identify(p, n)}" for n in RUNTIMES))
        if quiesce() is None:
            raise RuntimeError(f"processes left after the identity check: {ours()}")
        head.append(f"load average at start: {open('/proc/loadavg').read().split()[:3]}")
        for h in head:
            log("# " + h)
        res = rounds(parts)
        head.append(f"load average after: {open('/proc/loadavg').read().split()[:3]}")
        for p in parts:
            left = p.left()
            if left:
                raise RuntimeError(f"part {p.part}: run --rm left containers: {left}")
        left = cgroups_below_parent()
        if left:
            raise RuntimeError(f"cgroups left below {cg_parent}: {left}")
        out = ["\n".join(head) + "\n"] + [report(p, res[p.part]) for p in parts]
        print("\n".join(out))
        if JSON_OUT:
            with open(JSON_OUT, "w") as f:
                json.dump({"results": res, "header": head}, f, indent=1)
    finally:
        cleanup(parts)


def on_signal(sig, _frame):
    raise KeyboardInterrupt(f"signal {sig}")


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    main()
