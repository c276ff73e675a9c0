#!/usr/bin/env python3
"""Side-by-side engine benchmark: berth vs podman (crun), driven by bench/engine.sh.

Must run as root inside ../shared/tools/peer-ns.sh (crun refuses the host's hybrid cgroups otherwise).

Image: one busybox-static image, built here as a docker-archive (bin/busybox from /usr/bin/busybox plus a
symlink per applet, config Cmd ["sh"]) named localhost/berth-bench:1, loaded into each engine's private store:
  berth   berth --root W/data/berth load -i image.tar        (overlay snapshots; berth-runtime beside berth)
  podman  podman --root W/data/podman --runroot W/prun/run --tmpdir W/prun/tmp --storage-driver overlay
                 --runtime /usr/bin/crun --cgroup-manager cgroupfs --events-backend file load -i image.tar
W is a fresh temp dir under /var/tmp (short: podman wants a runroot of <= 50 chars). W/data, both stores, is
a fresh journaled ext4 loop mount (FS=loop, default; FS=host: a plain directory on /var/tmp); W/prun, podman's
--runroot and --tmpdir, a tmpfs (PODMAN_RUN=tmpfs, default: podman's defaults /run/containers/storage and
/run/libpod are on a tmpfs on a host; PODMAN_RUN=disk: W/data/podman-run). Why: see setup_fs(). The
containers/image blob info cache (/var/lib/containers/cache, shared by every podman/skopeo of the host) is
bind-mounted to an empty directory of this run (private mount namespace), so the host's file is untouched.

(a) start latency, whole engine:
  berth   berth --root R run --rm --network none localhost/berth-bench:1 true
  podman  podman OPTS run --rm --network none --cgroup-parent P --ulimit nofile=S:H --ulimit nproc=N:N
                 localhost/berth-bench:1 true
WARMUP rounds, then ROUNDS rounds; each round runs both, the order alternating from round to round. Wall
clock (CLOCK_MONOTONIC) from spawn to wait4 of the CLI, stdin/stdout /dev/null, stderr to a file (checked on
failure). Before every run the bench waits until no process of the previous run is left (any process whose
command line names this run's temp dir: berth's monitor, conmon, podman's `container cleanup` exit command,
crun) and reports that "tail" (time from the CLI's exit until the last such process is gone) separately:
neither engine gets billed for the other's leftovers, and work an engine defers past its CLI shows up there
(resolution: one /proc scan, ~2 ms here, so a tail of ~2 ms means nothing was left).
"paired" = median over rounds of podman / berth within the same round.

podman's flags, and why: --cgroup-manager cgroupfs (no systemd on this machine); --cgroup-parent P, P =
<this process's memory cgroup>/berth-engine-bench-PID, created by this bench in every v1 hierarchy before the
runs and removed after (podman's default parent /libpod_parent would land at the hierarchy root; podman and
crun leave the parent in place, as a host keeps /libpod_parent); --ulimit: podman asks crun for nofile
1048576 and nproc 32768 by default, and crun fails with "setrlimit RLIMIT_NOFILE: Operation not permitted":
root cannot raise a hard limit here (no CAP_SYS_RESOURCE in this VM's bounding set; hard nofile is 20000),
and crun, started by podman, already runs with nproc 32768:32768 (observed), so asking for the host's nproc
fails the same way. The bench passes the limits crun has anyway: nofile = this process's soft:hard, nproc =
min(32768, hard). berth's spec sets no rlimits (the container inherits its monitor's). --events-backend file: podman's
choice where there is no journald. berth's containers get the relative cgroupsPath "berth/<id>" below the
monitor's own cgroup (memory: this process's cgroup; other hierarchies: the root) — berth's default; berth
creates and removes the "berth" parent itself. Both engines apply their default seccomp profile.

(b) memory per running container: MEM_CONTAINERS detached containers per engine (`run -d IMAGE sleep 1000`,
started alternately), all running at once. The container's init pid comes from `inspect -f
'{{.State.Pid}}'`; its parent (PPid in /proc/PID/status) is the engine's per-container process: berth's
`berth container-monitor ID`, podman's conmon (checked: command line, and podman's {{.State.ConmonPid}}).
For each: VmRSS, RssAnon, RssFile from /proc/PID/status, Pss from /proc/PID/smaps_rollup, read SETTLE
seconds after the start ("alone": before the same engine's next container starts, so its Pss shares pages
only with other processes of the host; reported for the first container) and again once all are running
("all N": the N monitors of one engine share their binary's pages, Pss divides them). Per-mapping breakdown
of the first monitor of each engine from /proc/PID/smaps. Then every container is removed (`rm -f`, timed)
and its monitor checked gone.

PHASES=1: after (a), PHASE_ROUNDS more rounds (not part of the medians above) with each engine's OCI runtime
replaced by bench/runtime-log.c (a wrapper with the same file name, logging every call's begin and end on
the bench's clock): per engine, the median time spent before the first runtime call, in each runtime
subcommand, between calls, and after the last call until the CLI exits, plus calls made after the CLI exit.

TRACE_DIR=DIR: at the end, 3 runs per engine under `strace -f --seccomp-bpf -ttt -T -y -e trace=execve,
exit_group,fsync,fdatasync,syncfs,umount2,mount,move_mount` (only those syscalls stop the tracee, so the
timeline stays close to an untraced run); timelines kept in DIR, per run: count and summed time of execve,
fsync/fdatasync (and which files), umount2.
"""
import hashlib
import io
import json
import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time

ROUNDS = int(os.environ.get("ROUNDS", "20"))
WARMUP = int(os.environ.get("WARMUP", "3"))
MEM_CONTAINERS = int(os.environ.get("MEM_CONTAINERS", "3"))
SETTLE = float(os.environ.get("SETTLE", "1"))
PHASES = os.environ.get("PHASES", "") not in ("", "0")
PHASE_ROUNDS = int(os.environ.get("PHASE_ROUNDS", "10"))
TRACE_DIR = os.environ.get("TRACE_DIR")  # also 3 runs per engine under strace -f --seccomp-bpf, kept there
TRACE_CALLS = "execve,exit_group,fsync,fdatasync,syncfs,umount2,mount,move_mount"
BERTH = os.environ["BERTH"]
FS = os.environ.get("FS", "loop")  # loop: the stores on a fresh journaled ext4; host: on /var/tmp itself
FS_SIZE = os.environ.get("FS_SIZE", "2G")
PODMAN_RUN = os.environ.get("PODMAN_RUN", "tmpfs")  # podman's --runroot/--tmpdir: tmpfs (as /run) or disk
BERTH_RUNTIME = os.path.join(os.path.dirname(BERTH), "berth-runtime")
PODMAN = shutil.which("podman") or "/usr/bin/podman"
CRUN = shutil.which("crun") or "/usr/bin/crun"
BUSYBOX = os.environ.get("BUSYBOX", "/usr/bin/busybox")
JSON_OUT = os.environ.get("JSON_OUT")
IMAGE = "localhost/berth-bench:1"
MTIME = 1_700_000_000
CONTROLLERS = ["pids", "blkio", "freezer", "devices", "memory", "cpuset", "cpu", "cpuacct", "systemd"]
QUIESCE_TIMEOUT = 10.0

work = None
data = None  # where both stores live (FS)
prun = None  # podman's --runroot and --tmpdir parent
expected_mounts = set()  # mounts this bench made itself (or podman's storage keeps by design)
cg_parent = ""
cg_created = []
started = {"berth": [], "podman": []}  # container ids this run created and may not have removed yet
berth_ids = set()  # every berth container id this run saw (for the cgroup check)
berth_cg_before = set()  # berth/<id> cgroup dirs that existed before this run (another user's containers)
cache_mounted = False
RTLOG = None  # the PHASES wrappers' log file


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


# ------------------------------------------------------------------------------------------------ image


def build_image(path):
    """A docker-archive: one uncompressed layer (dirs, bin/busybox, applet symlinks), config, manifest.json."""
    applets = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True, check=True).stdout.split()
    lb = io.BytesIO()
    with tarfile.open(fileobj=lb, mode="w", format=tarfile.GNU_FORMAT) as t:
        for d in ["bin", "dev", "etc", "proc", "root", "sys", "tmp"]:
            i = tarfile.TarInfo(d)
            i.type, i.mode, i.mtime = tarfile.DIRTYPE, 0o1777 if d == "tmp" else 0o755, MTIME
            t.addfile(i)
        data = open(BUSYBOX, "rb").read()
        i = tarfile.TarInfo("bin/busybox")
        i.size, i.mode, i.mtime = len(data), 0o755, MTIME
        t.addfile(i, io.BytesIO(data))
        for a in sorted(set(applets) - {"busybox"}):
            i = tarfile.TarInfo("bin/" + a)
            i.type, i.linkname, i.mtime = tarfile.SYMTYPE, "busybox", MTIME
            t.addfile(i)
    layer = lb.getvalue()
    diff_id = hashlib.sha256(layer).hexdigest()
    config = json.dumps({
        "architecture": "amd64", "os": "linux", "created": "2023-11-14T22:13:20Z",
        "config": {"Cmd": ["sh"], "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + diff_id]},
        "history": [{"created": "2023-11-14T22:13:20Z", "created_by": "bench/engine.py: busybox-static"}],
    }, sort_keys=True).encode()
    config_id = hashlib.sha256(config).hexdigest()
    manifest = json.dumps([{"Config": config_id + ".json", "RepoTags": [IMAGE],
                            "Layers": [diff_id + "/layer.tar"]}]).encode()
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as t:
        for name, b in [(diff_id + "/layer.tar", layer), (config_id + ".json", config), ("manifest.json", manifest)]:
            i = tarfile.TarInfo(name)
            i.size, i.mode, i.mtime = len(b), 0o644, MTIME
            t.addfile(i, io.BytesIO(b))
    return {"applets": len(applets), "layer_bytes": len(layer), "config": "sha256:" + config_id}


# -------------------------------------------------------------------------------------------- processes


def run(argv, check=True, env=None, timeout=120):
    r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env, timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:6])} ... exited {r.returncode}: {(r.stderr or r.stdout).strip()[-1500:]}")
    return r


def timed(argv, env=None, stdout_file=None):
    """(wall seconds, exit code, stderr, t0 ns, t1 ns) of argv, timed from spawn to wait4. stdout goes to
    /dev/null or to stdout_file."""
    err = os.path.join(work, "stderr")
    with open(err, "w") as ef, open(stdout_file or os.devnull, "w") as of:
        t0 = time.monotonic_ns()
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=of, stderr=ef, env=env)
        _, status, _ = os.wait4(p.pid, 0)
        t1 = time.monotonic_ns()
    code = os.waitstatus_to_exitcode(status)
    return (t1 - t0) / 1e9, code, open(err).read() if code else "", t0, t1


def ours():
    """pid -> argv of every live process whose command line names this run's temp dir (zombies have none)."""
    out = {}
    me = os.getpid()
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == me:
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
    """Wait until no process of ours is left; -> seconds waited (None: timed out)."""
    t0 = time.monotonic()
    while True:
        if not ours():
            return time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            return None
        time.sleep(0.001)


def proc_status(pid):
    d = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            d[k] = v.strip()
    return d


def kib(s):
    return int(s.split()[0])


def rollup(pid):
    d = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            m = re.match(r"^(\w+):\s+(\d+) kB", line)
            if m:
                d[m.group(1)] = int(m.group(2))
    return d


def smaps_breakdown(pid):
    """[(mapping name, Rss KiB, Pss KiB, Private_Dirty+Anonymous KiB)] summed per mapping name, largest first."""
    acc = {}
    name = None
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            parts = line.split()
            if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
                name = parts[5] if len(parts) > 5 else "[anon]"
                perms = parts[1]
                if name.startswith("/"):
                    name = f"{name} ({'x' if 'x' in perms else 'w' if 'w' in perms else 'r'})"
                acc.setdefault(name, [0, 0, 0])
            elif parts and parts[0] in ("Rss:", "Pss:", "Anonymous:"):
                acc[name][("Rss:", "Pss:", "Anonymous:").index(parts[0])] += int(parts[1])
    return sorted(((n, *v) for n, v in acc.items()), key=lambda x: -x[1])


# ---------------------------------------------------------------------------------------------- engines


class Engine:
    name = ""

    def run_argv(self, *args):
        raise NotImplementedError

    def cli(self, *args):
        raise NotImplementedError


class Berth(Engine):
    name = "berth"

    def __init__(self, runtime=None):
        self.root = os.path.join(data, "berth")
        self.runtime = runtime  # --runtime PATH (the PHASES wrapper) or berth's default

    def cli(self, *args):
        return [BERTH, "--root", self.root, *args]

    def run_argv(self, *args, detach=False):
        rt = ["--runtime", self.runtime] if self.runtime else []
        return self.cli("run", *(["-d"] if detach else ["--rm"]), "--network", "none", *rt, IMAGE, *args)

    def remove(self, cid):
        return self.cli("rm", "-f", cid)

    def is_monitor(self, argv):
        return "container-monitor" in argv


class Podman(Engine):
    name = "podman"

    def __init__(self, runtime=CRUN):
        self.opts = ["--root", os.path.join(data, "podman"), "--runroot", os.path.join(prun, "run"),
                     "--tmpdir", os.path.join(prun, "tmp"), "--storage-driver", "overlay", "--runtime", runtime,
                     "--cgroup-manager", "cgroupfs", "--events-backend", "file"]
        nofile = resource.getrlimit(resource.RLIMIT_NOFILE)
        nproc = min(32768, resource.getrlimit(resource.RLIMIT_NPROC)[1])
        self.run_opts = ["--network", "none", "--cgroup-parent", cg_parent,
                         "--ulimit", f"nofile={nofile[0]}:{nofile[1]}", "--ulimit", f"nproc={nproc}:{nproc}"]

    def cli(self, *args):
        return [PODMAN, *self.opts, *args]

    def run_argv(self, *args, detach=False):
        return self.cli("run", "-d" if detach else "--rm", *self.run_opts, IMAGE, *args)

    def remove(self, cid):
        return self.cli("rm", "-f", "-t", "0", cid)

    def is_monitor(self, argv):
        return os.path.basename(argv[0]) == "conmon"


# ---------------------------------------------------------------------------------------------- cgroups


def my_memory_cgroup():
    for line in open("/proc/self/cgroup"):
        _, ctrl, path = line.rstrip("\n").split(":", 2)
        if "memory" in ctrl.split(","):
            return path
    raise SystemExit("no memory line in /proc/self/cgroup")


def make_parent_cgroups():
    """cg_parent in every v1 hierarchy (as a host has /libpod_parent); cpuset needs cpus and mems first."""
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


def berth_cgroups():
    """Every berth/<id> cgroup directory below this process's cgroups (where berth's monitors put theirs)."""
    out = set()
    for c in CONTROLLERS:
        base = f"/sys/fs/cgroup/{c}"
        if not os.path.isdir(base) or os.path.islink(base):
            continue
        for own in {"/", my_memory_cgroup()}:
            b = os.path.join(base + own, "berth")
            if os.path.isdir(b):
                out.update(os.path.join(b, n) for n in os.listdir(b) if os.path.isdir(os.path.join(b, n)))
    return out


def remove_cgroups():
    """Below cg_parent: podman's conmon cgroup is expected (podman keeps it, like the parent); anything else is
    reported. berth's (berth/<id> below the caller's cgroup): any that appeared during the run is reported, and
    removed if its id is one of ours. rmdir only: it refuses a cgroup that still holds a process."""
    for c in CONTROLLERS:
        base = f"/sys/fs/cgroup/{c}"
        if cg_parent and os.path.isdir(base + cg_parent):
            for dirpath, _, _ in sorted(os.walk(base + cg_parent), key=lambda w: len(w[0]), reverse=True):
                if dirpath == base + cg_parent:
                    continue
                if os.path.basename(dirpath) != "conmon":
                    log(f"cleanup: left behind: cgroup {dirpath}; removing")
                try:
                    os.rmdir(dirpath)
                except OSError as e:
                    log(f"cleanup: cannot remove {dirpath}: {e}")
    for p in sorted(berth_cgroups() - berth_cg_before):
        if os.path.basename(p) in berth_ids:
            log(f"cleanup: berth left cgroup {p}; removing")
            try:
                os.rmdir(p)
            except OSError as e:
                log(f"cleanup: cannot remove {p}: {e}")
        else:
            log(f"cleanup: {p} appeared during the run (left by one of this run's `run --rm` containers, or "
                "another berth user's): left alone")
    for p in reversed(cg_created):
        try:
            os.rmdir(p)
        except FileNotFoundError:
            pass
        except OSError as e:
            log(f"cleanup: leaving {p}: {e}")


# ---------------------------------------------------------------------------------------------- mounts


def mounts_under(path):
    r = subprocess.run(["findmnt", "-rn", "-o", "TARGET"], capture_output=True, text=True, check=True)
    out = []
    for line in r.stdout.splitlines():
        t = line.encode().decode("unicode_escape")
        if t == path or t.startswith(path.rstrip("/") + "/"):
            out.append(t)
    return out


def setup_fs():
    """data: both engines' stores; prun: podman's runroot and tmpdir. FS=loop: a fresh ext4 (mkfs defaults, so
    with a journal; inode tables initialised at mkfs) on a loop device over a sparse file, direct I/O to the
    backing file. Why: this VM's root ext4 (/var/tmp) has no journal and is mounted with `discard`, so every
    block freed by an unlink or rmdir is discarded synchronously (3-8 ms per small file or directory in
    strace -T here), which bills each engine for how many files it deletes per container rather than for
    its work; a host's /var/lib is usually journaled, without online discard. FS=host keeps /var/tmp as it is.
    PODMAN_RUN=tmpfs (default): podman's --runroot/--tmpdir on a tmpfs, as its defaults /run/containers/storage
    and /run/libpod are on a host; berth keeps all its state under --root (its design), so it has no such
    directory."""
    global data, prun
    data = os.path.join(work, "data")
    os.mkdir(data)
    if FS == "loop":
        img = os.path.join(work, "fs.img")
        subprocess.run(["truncate", "-s", FS_SIZE, img], check=True)
        subprocess.run(["mkfs.ext4", "-q", "-E", "lazy_itable_init=0,lazy_journal_init=0", img], check=True)
        subprocess.run(["mount", "-o", "loop", img, data], check=True)
        expected_mounts.add(data)
        dev = subprocess.run(["findmnt", "-no", "SOURCE", data], capture_output=True, text=True).stdout.strip()
        if subprocess.run(["losetup", "--direct-io=on", dev]).returncode != 0:
            log(f"# {dev}: no direct I/O, the backing file's page cache holds a second copy")
        log(f"# stores on a fresh ext4 on {dev} ({FS_SIZE}) at {data}")
    elif FS != "host":
        raise SystemExit(f"FS={FS}: loop or host")
    prun = os.path.join(work, "prun")
    os.mkdir(prun)
    if PODMAN_RUN == "tmpfs":
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256m,mode=0700", "berth-bench-prun", prun], check=True)
        expected_mounts.add(prun)
    elif PODMAN_RUN != "disk":
        raise SystemExit(f"PODMAN_RUN={PODMAN_RUN}: tmpfs or disk")
    else:
        prun = os.path.join(data, "podman-run")
        os.mkdir(prun)
    expected_mounts.add(os.path.join(data, "podman", "overlay"))  # containers/storage binds it on itself


# ------------------------------------------------------------------------------------------ scenario (a)


def start_latency(engines):
    res = {e.name: {"s": [], "tail": []} for e in engines}
    for r in range(-WARMUP, ROUNDS):
        order = engines if r % 2 == 0 else engines[::-1]
        line = []
        for e in order:
            waited = quiesce()
            if waited is None:
                raise RuntimeError(f"processes of the previous run still there after {QUIESCE_TIMEOUT} s: {ours()}")
            dt, code, err, _, _ = timed(e.run_argv("true"))
            if code != 0:
                raise RuntimeError(f"{e.name} run exited {code}: {err.strip()[-1500:]}")
            tail = quiesce()
            if tail is None:
                raise RuntimeError(f"{e.name}: processes left {QUIESCE_TIMEOUT} s after run --rm: {ours()}")
            if r >= 0:
                res[e.name]["s"].append(dt)
                res[e.name]["tail"].append(tail)
            line.append(f"{e.name} {dt * 1e3:.1f} ms (+{tail * 1e3:.1f})")
        log(f"# round {r + 1 if r >= 0 else 'warm-up'}: " + ", ".join(line))
    return res


def check_no_containers(e):
    out = run(e.cli("ps", "-aq")).stdout.split()
    if out:
        raise RuntimeError(f"{e.name}: run --rm left containers: {out}")


# ------------------------------------------------------------------------------------------ scenario (b)


def monitor_of(e, cid):
    fmt = "{{.State.Pid}}" if e.name == "berth" else "{{.State.Pid}} {{.State.ConmonPid}}"
    out = run(e.cli("inspect", "-f", fmt, cid)).stdout.split()
    init = int(out[0])
    mon = int(proc_status(init)["PPid"])
    with open(f"/proc/{mon}/cmdline", "rb") as f:
        argv = [a.decode() for a in f.read().split(b"\0") if a]
    if not e.is_monitor(argv):
        raise RuntimeError(f"{e.name}: parent {mon} of the container's init {init} is {argv[:4]}, not the monitor")
    if e.name == "podman" and int(out[1]) != mon:
        raise RuntimeError(f"podman: ConmonPid {out[1]} but the init's parent is {mon}")
    if e.name == "berth" and cid not in argv:
        raise RuntimeError(f"berth: monitor {mon} is {argv}, not for {cid}")
    return init, mon


def mem_sample(pid):
    st = proc_status(pid)
    ro = rollup(pid)
    return {"VmRSS": kib(st["VmRSS"]), "RssAnon": kib(st["RssAnon"]), "RssFile": kib(st["RssFile"]),
            "Pss": ro["Pss"], "Pss_Anon": ro.get("Pss_Anon", 0), "Pss_File": ro.get("Pss_File", 0),
            "Private": ro["Private_Clean"] + ro["Private_Dirty"], "Threads": int(st["Threads"])}


def memory(engines):
    mons = {e.name: [] for e in engines}
    alone = {e.name: [] for e in engines}
    start_s = {e.name: [] for e in engines}
    for k in range(MEM_CONTAINERS):
        for e in (engines if k % 2 == 0 else engines[::-1]):
            idf = os.path.join(work, "id")
            dt, code, err, _, _ = timed(e.run_argv("sleep", "1000", detach=True), stdout_file=idf)
            cid = open(idf).read().strip()
            if re.fullmatch(r"[0-9a-f]{64}", cid):
                started[e.name].append(cid)
                if e.name == "berth":
                    berth_ids.add(cid)
            if code != 0 or not re.fullmatch(r"[0-9a-f]{64}", cid):
                raise RuntimeError(f"{e.name} run -d exited {code}, printed {cid!r}: {err.strip()[-1500:]}")
            init, mon = monitor_of(e, cid)
            mons[e.name].append((cid, init, mon))
            start_s[e.name].append(dt)
            time.sleep(SETTLE)
            alone[e.name].append(mem_sample(mon))
            log(f"# {e.name} container {k + 1}: run -d {dt * 1e3:.0f} ms, monitor pid {mon}: "
                + ", ".join(f"{kk} {v}" for kk, v in alone[e.name][-1].items()))
    time.sleep(SETTLE)
    together = {e.name: [mem_sample(m) for _, _, m in mons[e.name]] for e in engines}
    breakdown = {e.name: smaps_breakdown(mons[e.name][0][2]) for e in engines}
    rm_s = {e.name: [] for e in engines}
    for k in range(MEM_CONTAINERS):
        for e in (engines if k % 2 == 0 else engines[::-1]):
            cid, _, mon = mons[e.name][k]
            dt, code, err, _, _ = timed(e.remove(cid))
            if code != 0:
                raise RuntimeError(f"{e.name} rm -f {cid} exited {code}: {err.strip()[-1500:]}")
            started[e.name].remove(cid)
            rm_s[e.name].append(dt)
            t0 = time.monotonic()
            while os.path.exists(f"/proc/{mon}") and proc_status(mon).get("State", "").startswith(("S", "R", "D")):
                if time.monotonic() - t0 > 10:
                    raise RuntimeError(f"{e.name}: monitor {mon} still running 10 s after rm -f {cid}")
                time.sleep(0.005)
    if quiesce() is None:
        raise RuntimeError(f"processes left after rm -f: {ours()}")
    return {"alone": alone, "together": together, "breakdown": breakdown, "run_d_s": start_s, "rm_s": rm_s,
            "pids": {n: [(c, i, m) for c, i, m in v] for n, v in mons.items()}}


# ------------------------------------------------------------------------------------------------ phases


def build_wrappers():
    global RTLOG
    RTLOG = os.path.join(work, "rtlog.txt")
    src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "runtime-log.c")
    out = {}
    for name, real in (("berth", BERTH_RUNTIME), ("podman", CRUN)):
        d = os.path.join(work, "rtlog-" + name)
        os.mkdir(d)
        exe = os.path.join(d, os.path.basename(real))  # same file name: berth keys its runtime state dir by it
        subprocess.run(["gcc", "-O2", f'-DRTLOG_REAL="{real}"', f'-DRTLOG_FILE="{RTLOG}"', "-o", exe, src],
                       check=True)
        out[name] = (exe, real)
    return out


def phases(wrappers):
    engines = [Berth(runtime=wrappers["berth"][0]), Podman(runtime=wrappers["podman"][0])]
    logf = RTLOG
    rows = {e.name: [] for e in engines}
    for r in range(-1, PHASE_ROUNDS):
        for e in (engines if r % 2 == 0 else engines[::-1]):
            if quiesce() is None:
                raise RuntimeError(f"leftover processes: {ours()}")
            open(logf, "w").close()
            dt, code, err, t0, t1 = timed(e.run_argv("true"))
            if code != 0:
                raise RuntimeError(f"{e.name} (runtime wrapper) run exited {code}: {err.strip()[-1500:]}")
            if quiesce() is None:
                raise RuntimeError(f"leftover processes: {ours()}")
            calls, begins = [], {}
            for line in open(logf):
                f = line.split()
                if f[0] == "begin":
                    sub = next((a for a in f[3:] if not a.startswith("-") and "/" not in a and a != "json"), "?")
                    begins[f[2]] = (int(f[1]), sub)
                elif f[0] == "end" and f[2] in begins:
                    b, sub = begins.pop(f[2])
                    calls.append((b - t0, int(f[1]) - t0, sub, int(f[3])))
            calls.sort()
            if r >= 0:
                rows[e.name].append({"wall": t1 - t0, "calls": calls})
    report = []
    for e in engines:
        xs = rows[e.name]
        report.append(f"{e.name}: median over {len(xs)} runs (ms from the CLI's spawn; runtime calls through the "
                      f"logging wrapper)")
        report.append(f"  CLI wall {med(x['wall'] for x in xs) / 1e6:.1f}; first runtime call begins at "
                      f"{med(x['calls'][0][0] for x in xs if x['calls']) / 1e6:.1f}")
        seqs = [" ".join(c[2] for c in x["calls"]) for x in xs]
        common = max(set(seqs), key=seqs.count)
        report.append(f"  call sequence (in {seqs.count(common)}/{len(xs)} runs): {common}")
        same = [x for x, s in zip(xs, seqs) if s == common]
        for i, sub in enumerate(common.split()):
            b = med(x["calls"][i][0] for x in same) / 1e6
            d = med(x["calls"][i][1] - x["calls"][i][0] for x in same) / 1e6
            gap = med((x["calls"][i][0] - (x["calls"][i - 1][1] if i else 0)) for x in same) / 1e6
            after = sum(1 for x in same if x["calls"][i][1] > x["wall"])
            report.append(f"  {i + 1}. {sub:<8} begins {b:7.1f}  takes {d:6.1f}  (gap before it {gap:6.1f})"
                          + (f"  ends after the CLI exited in {after}/{len(same)} runs" if after else ""))
        in_rt = med(sum(c[1] - c[0] for c in x["calls"] if c[0] < x["wall"]) for x in xs) / 1e6
        last = med(x["wall"] - max((c[1] for c in x["calls"] if c[1] <= x["wall"]), default=0) for x in xs) / 1e6
        report.append(f"  total in runtime calls (before the CLI exit) {in_rt:.1f}; from the last call's end to "
                      f"the CLI exit {last:.1f}")
    return "\n".join(report), rows


def trace_runs():
    """3 runs per engine under `strace -f --seccomp-bpf -ttt -T -e trace=TRACE_CALLS`: only those syscalls
    stop the tracee (seccomp-bpf), so the timeline stays close to an untraced run. -> summary text."""
    os.makedirs(TRACE_DIR, exist_ok=True)
    engines = [Berth(), Podman()]
    out = []
    for n in range(1, 4):
        for e in engines:
            if quiesce() is None:
                raise RuntimeError(f"leftover processes: {ours()}")
            f = os.path.join(TRACE_DIR, f"{e.name}-{n}.txt")
            _, code, err, _, _ = timed(["strace", "-f", "--seccomp-bpf", "-ttt", "-T", "-y", "-e",
                                        f"trace={TRACE_CALLS}", "-o", f, *e.run_argv("true")])
            if code != 0:
                raise RuntimeError(f"{e.name} traced run exited {code}: {err.strip()[-1500:]}")
            out.append(f"{e.name} #{n}: " + trace_summary(f))
    if quiesce() is None:
        raise RuntimeError(f"leftover processes: {ours()}")
    return "\n".join(out)


def trace_summary(path):
    t0 = first = wall = None
    tot, cnt, files = {}, {}, {}
    for line in open(path):
        m = re.match(r"(\d+) (\d+\.\d+) (.*)", line)
        if not m:
            continue
        pid, t, rest = m.group(1), float(m.group(2)), m.group(3)
        if t0 is None:
            t0, first = t, pid
        if pid == first and rest.startswith("+++ exited"):
            wall = t - t0
        mm = re.match(r"(?:<\.\.\. )?(\w+)", rest)
        d = re.search(r"<(\d+\.\d+)>$", rest)
        if mm and d and mm.group(1) in ("fsync", "fdatasync", "syncfs", "umount2", "execve"):
            k = mm.group(1)
            tot[k] = tot.get(k, 0) + float(d.group(1)) * 1e3
            cnt[k] = cnt.get(k, 0) + 1
            f = re.search(r"^\w+\(\d+<([^>]*)>", rest)
            if f and k in ("fsync", "fdatasync"):
                name = re.sub(r"\d{5,}$", "*", os.path.basename(f.group(1)))
                files[name] = files.get(name, 0) + 1
    top = ", ".join(f"{n} {c}" for n, c in sorted(files.items(), key=lambda x: -x[1])[:6])
    return (f"CLI wall {wall * 1e3 if wall else float('nan'):.0f} ms; "
            + ", ".join(f"{k} {cnt[k]}x {tot[k]:.1f} ms" for k in sorted(tot)) + (f" (synced: {top})" if top else ""))


# ------------------------------------------------------------------------------------------------ report


def fmt_table(rows):
    w = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    out = ["| " + " | ".join(str(c).ljust(w[i]) for i, c in enumerate(r)) + " |" for r in rows]
    out.insert(1, "|" + "|".join("-" * (x + 2) for x in w) + "|")
    return "\n".join(out)


def report_latency(res):
    b, p = res["berth"]["s"], res["podman"]["s"]
    rows = [["engine", "median ms", "p10 ms", "p90 ms", "min ms", "max ms", "tail after CLI exit, median ms"]]
    for n in ("berth", "podman"):
        s, t = res[n]["s"], res[n]["tail"]
        rows.append([n, f"{med(s) * 1e3:.1f}", f"{pct(s, .1) * 1e3:.1f}", f"{pct(s, .9) * 1e3:.1f}",
                     f"{min(s) * 1e3:.1f}", f"{max(s) * 1e3:.1f}", f"{med(t) * 1e3:.1f}"])
    ratio = med(p) / med(b)
    paired = med(y / x for x, y in zip(b, p))
    return (f"### (a) run --rm {IMAGE} true, {ROUNDS} rounds (+{WARMUP} warm-up), order alternating\n\n"
            + fmt_table(rows)
            + f"\n\npodman / berth: {ratio:.2f} (medians), {paired:.2f} paired (median of per-round ratios); "
              f"berth takes {1 / ratio:.2f} of podman's time (target: under 0.33)\n"
            + "tail = from the CLI's exit until no process of the run is left (monitor/conmon, podman's cleanup "
              "exit command); not part of the wall time.\n")


def report_memory(m):
    names = ("berth", "podman")
    lines = [f"### (b) memory per running container: berth's container-monitor vs conmon ({MEM_CONTAINERS} "
             f"detached `sleep 1000` containers per engine, read {SETTLE:g} s after start)", ""]
    rows = [["process", "when", "VmRSS KiB", "RssAnon KiB", "RssFile KiB", "Pss KiB", "Pss_Anon KiB",
             "Pss_File KiB", "Private KiB", "threads"]]
    for n in names:
        proc = "berth container-monitor" if n == "berth" else "conmon"
        for when, xs in (("first container, alone", m["alone"][n][:1]),
                         (f"all {MEM_CONTAINERS} running (median)", m["together"][n])):
            rows.append([proc, when, *(f"{med(x[k] for x in xs):.0f}" for k in
                                       ("VmRSS", "RssAnon", "RssFile", "Pss", "Pss_Anon", "Pss_File", "Private",
                                        "Threads"))])
    lines.append(fmt_table(rows))
    b, p = m["alone"]["berth"][:1], m["alone"]["podman"][:1]
    bt, pt = m["together"]["berth"], m["together"]["podman"]
    lines.append("")
    lines.append(f"berth / conmon, alone: VmRSS {med(x['VmRSS'] for x in b) / med(x['VmRSS'] for x in p):.2f}, "
                 f"Pss {med(x['Pss'] for x in b) / med(x['Pss'] for x in p):.2f}; with all {MEM_CONTAINERS} "
                 f"running: VmRSS {med(x['VmRSS'] for x in bt) / med(x['VmRSS'] for x in pt):.2f}, "
                 f"Pss {med(x['Pss'] for x in bt) / med(x['Pss'] for x in pt):.2f}")
    lines.append("Private = Private_Clean + Private_Dirty: what one more container of that engine adds; Pss = the "
                 "process's share of every page it maps (pages shared with n processes count 1/n).")
    lines.append(f"run -d median: berth {med(m['run_d_s']['berth']) * 1e3:.0f} ms, podman "
                 f"{med(m['run_d_s']['podman']) * 1e3:.0f} ms; rm -f median: berth {med(m['rm_s']['berth']) * 1e3:.0f} "
                 f"ms, podman {med(m['rm_s']['podman']) * 1e3:.0f} ms")
    for n in names:
        proc = "berth container-monitor" if n == "berth" else "conmon"
        lines.append("")
        lines.append(f"{proc} (first container, all {MEM_CONTAINERS} running), largest mappings by Rss:")
        rows = [["mapping", "Rss KiB", "Pss KiB", "Anonymous KiB"]]
        bd = m["breakdown"][n]
        for name, rss, pss, anon in bd[:10]:
            rows.append([name, rss, pss, anon])
        rest = bd[10:]
        rows.append([f"({len(rest)} more)", sum(x[1] for x in rest), sum(x[2] for x in rest), sum(x[3] for x in rest)])
        rows.append(["total", sum(x[1] for x in bd), sum(x[2] for x in bd), sum(x[3] for x in bd)])
        lines.append(fmt_table(rows))
    return "\n".join(lines) + "\n"


# -------------------------------------------------------------------------------------------------- main


def cleanup(engines):
    global cache_mounted
    for e in engines:
        for cid in list(started[e.name]):
            log(f"cleanup: removing {e.name} container {cid}")
            run(e.remove(cid), check=False)
        try:
            left = run(e.cli("ps", "-aq", "--no-trunc"), check=False).stdout.split()
        except Exception:
            left = []
        for cid in left:
            log(f"cleanup: {e.name} still lists container {cid}; removing")
            run(e.remove(cid), check=False)
    if work:
        if quiesce(5) is None:
            for pid, argv in ours().items():  # only processes naming our own temp dir: started by this run
                log(f"cleanup: stopping leftover process {pid}: {' '.join(argv)[:200]}")
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            quiesce(5)
    remove_cgroups()
    if work:
        ms = mounts_under(work)
        for mnt in sorted(ms, key=len, reverse=True):
            if mnt not in expected_mounts:
                log(f"cleanup: left mounted: {mnt}; unmounting")
            subprocess.run(["umount", mnt], check=False)  # a mount -o loop detaches its device (autoclear)
        for mnt in mounts_under(work):
            log(f"cleanup: still mounted {mnt}; lazy unmount")
            subprocess.run(["umount", "-l", mnt], check=False)
    if cache_mounted:
        subprocess.run(["umount", "/var/lib/containers/cache"], check=False)
        cache_mounted = False
    if work:
        shutil.rmtree(work, ignore_errors=True)
        if os.path.exists(work):
            subprocess.run(["rm", "-rf", work], check=False)


def main():
    global work, cg_parent, cache_mounted
    if os.geteuid() != 0:
        raise SystemExit("run as root")
    work = tempfile.mkdtemp(prefix="beng.", dir="/var/tmp")
    cg_parent = f"{my_memory_cgroup().rstrip('/')}/berth-engine-bench-{os.getpid()}"
    engines = []
    try:
        if os.path.isdir("/var/lib/containers/cache"):
            os.mkdir(os.path.join(work, "containers-cache"))
            subprocess.run(["mount", "--bind", os.path.join(work, "containers-cache"), "/var/lib/containers/cache"],
                           check=True)
            cache_mounted = True
        setup_fs()
        make_parent_cgroups()
        berth_cg_before.update(berth_cgroups())
        engines = [Berth(), Podman()]
        archive = os.path.join(work, "image.tar")
        meta = build_image(archive)
        log(f"# image {IMAGE}: {meta['applets']} applets, layer {meta['layer_bytes'] / 1e6:.2f} MB, "
            f"config {meta['config'][:19]}")
        loads = {}
        for e in engines:
            t0 = time.monotonic()
            run(e.cli("load", "-i", archive))
            loads[e.name] = time.monotonic() - t0
        log("# load: " + ", ".join(f"{n} {s * 1e3:.0f} ms" for n, s in loads.items()))
        report = [f"berth {BERTH} (runtime {BERTH_RUNTIME}); podman {PODMAN} with {CRUN}; stores: "
                  f"{'fresh journaled ext4 (loop)' if FS == 'loop' else '/var/tmp (host ext4, no journal, discard)'}; "
                  f"podman runroot/tmpdir: {PODMAN_RUN}; "
                  f"podman --cgroup-parent {cg_parent}; podman run {' '.join(engines[1].run_opts[4:])}",
                  "load -i image.tar (once, cold store): "
                  + ", ".join(f"{n} {s * 1e3:.0f} ms" for n, s in loads.items())
                  + "\n"]
        report.append(f"load average at start: {open('/proc/loadavg').read().split()[:3]}\n")
        log(report[0])
        res = start_latency(engines)
        report.append(f"load average after (a): {open('/proc/loadavg').read().split()[:3]}\n")
        for e in engines:
            check_no_containers(e)
        report.append(report_latency(res))
        log(report[-1])
        mem = memory(engines)
        for e in engines:
            check_no_containers(e)
        report.append(report_memory(mem))
        log(report[-1])
        ph = None
        if PHASES:
            text, ph = phases(build_wrappers())
            for e in engines:
                check_no_containers(e)
            report.append("### phases (runtime calls timed by bench/runtime-log.c)\n\n" + text + "\n")
            log(report[-1])
        if TRACE_DIR:
            text = trace_runs()
            report.append(f"### strace -f --seccomp-bpf -e trace={TRACE_CALLS} (files in {TRACE_DIR}; time "
                          f"summed over every process of the run, calls of different processes may overlap)\n\n"
                          + text + "\n")
            log(report[-1])
        print("\n".join(report))
        if JSON_OUT:
            with open(JSON_OUT, "w") as f:
                json.dump({"latency": res, "memory": mem, "phases": ph, "load_s": loads}, f, indent=1)
    finally:
        cleanup(engines)
        left = [m for m in mounts_under("/var/tmp") if os.path.basename(work) in m] if work else []
        if left:
            log(f"cleanup: STILL MOUNTED: {left}")


def on_signal(sig, _frame):
    raise KeyboardInterrupt(f"signal {sig}")


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    main()
