#!/usr/bin/env python3
"""Side-by-side registry server benchmark: berth's registry (`berth registry serve`) vs Debian's docker-registry
(driven by bench/registry.sh, which builds berth and enters ../shared/tools/peer-ns.sh first).

Image: the one bench/pull.py builds and caches under IMAGE_CACHE (4 gzip layers, ~161 MB compressed; built on the
first run of either script), pushed from its OCI layout as it is (skopeo copies the gzip blobs byte for byte, so
the manifest digest is the layout's: checked after every push).

Per round, for each server, started fresh on an empty storage directory inside the jobs' filesystem (start and
readiness not timed; berth with --gc-interval 0, its request log to a file; docker-registry with pull.py's
config: log level error, no access log):
  push      skopeo --insecure-policy copy --dest-tls-verify=false oci:LAYOUT:big docker://ADDR/bench/big:1
  pull      skopeo --insecure-policy copy --src-tls-verify=false docker://ADDR/bench/big:1 oci:FRESH:big
  pull x8   PULLS (default 8) of those pulls at once, each into its own fresh directory, timed as a whole (from
            the first fork to the last exit)
Each case is timed from fork to wait4 (client user/sys CPU from the wait4 rusage); the server's own CPU for the
case is the difference of utime+stime in /proc/PID/stat around it. `sync` runs (untimed) before every case; the
`sync` right after a case is timed and reported separately (+sync: until the data is on disk). Pulled
directories are removed (untimed) after the case, and the containers/image blob info cache is emptied after
every case. The server's RSS: VmRSS right after it answers /v2/ (idle) and VmHWM just before it is stopped
(peak over the round). One untimed warm-up round, then ROUNDS rounds; which server goes first rotates each round.

Filesystem (FS, FS_SIZE) and the blob info cache bind mount: as in bench/pull.py (a fresh journaled ext4 on a
loop device by default; see the header there for why), whose helpers this script imports.
"""
import hashlib
import json
import os
import select
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.dont_write_bytecode = True  # no bench/__pycache__ left in the tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pull  # noqa: E402  (reads the same env: BERTH, IMAGE_CACHE, FS, FS_SIZE)
from pull import MB, fmt_table, log, remove, sync  # noqa: E402

ROUNDS = int(os.environ.get("ROUNDS", "5"))
WARMUP = int(os.environ.get("WARMUP", "1"))
PULLS = int(os.environ.get("PULLS", "8"))
BERTH = os.environ["BERTH"]
SERVERS = [s for s in os.environ.get("SERVERS", "berth,docker-registry").split(",") if s]
JSON_OUT = os.environ.get("JSON_OUT")
REPO = "bench/big:1"
CASES = ["push", "pull", f"pull x{PULLS}"]
CLK_TCK = os.sysconf("SC_CLK_TCK")

work = None
jobs_dir = None
cache_dir = None  # bind-mounted over /var/lib/containers/cache


# ------------------------------------------------------------------------------------------------- servers


class Server:
    """A registry process of ours: pid, addr; stopped by pid."""
    proc = None
    addr = None

    def status_kb(self, field):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        raise RuntimeError(f"{field} not in /proc/{self.proc.pid}/status")

    def cpu(self):
        """utime+stime of the server process so far (all its threads), seconds."""
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK  # fields 14 and 15 of stat(5)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self):
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                with urllib.request.urlopen(f"http://{self.addr}/v2/", timeout=2) as r:
                    return r.status == 200
            except OSError:
                time.sleep(0.05)
        return False

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class BerthServer(Server):
    def __init__(self, base):
        self.root = os.path.join(base, "root")
        self.log_path = os.path.join(work, f"berth-registry.{os.path.basename(base)}.log")  # host fs, not the jobs'
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([BERTH, "registry", "serve", "--addr", "127.0.0.1:0", "--root", self.root,
                                      "--gc-interval", "0"],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self.log)
        line = b""
        if select.select([self.proc.stdout], [], [], 20)[0]:
            line = self.proc.stdout.readline()
        words = line.decode(errors="replace").split()
        if not (words and words[-1].startswith("http://127.0.0.1:")):
            self.stop()
            raise RuntimeError(f"berth registry did not start (first line {line!r}): {self.log_tail()}")
        self.addr = words[-1][len("http://"):]
        if not self.wait_ready():
            self.stop()
            raise RuntimeError(f"berth registry at {self.addr} does not answer /v2/: {self.log_tail()}")

    def log_tail(self):
        with open(self.log_path, "rb") as f:
            return f.read()[-2000:].decode(errors="replace")

    def stop(self):
        super().stop()
        if self.proc and self.proc.stdout:
            self.proc.stdout.close()  # kept open until here: its only line is the first
        self.log.close()


class DockerRegistry(Server):
    def __init__(self, base):
        self.reg = pull.Registry(base)  # storage in base/registry/data, config and log beside it
        self.proc, self.addr = self.reg.proc, self.reg.addr

    def stop(self):
        self.reg.stop()


SERVER_CLASSES = {"berth": BerthServer, "docker-registry": DockerRegistry}

# --------------------------------------------------------------------------------------------------- cases


def client_env(d):
    e = dict(os.environ)
    e["TMPDIR"] = d  # containers/image stages blobs under $TMPDIR (/var/tmp by default): keep it on the jobs' fs
    return e


def empty_cache():
    for n in os.listdir(cache_dir):
        remove(os.path.join(cache_dir, n))


def manifest_digest(addr):
    req = urllib.request.Request(f"http://{addr}/v2/{REPO.replace(':', '/manifests/')}",
                                 headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return "sha256:" + hashlib.sha256(r.read()).hexdigest()


def pulled_digest(oci):
    with open(os.path.join(oci, "index.json")) as f:
        return json.load(f)["manifests"][0]["digest"]


def pull_argv(addr, oci):
    return ["skopeo", "--insecure-policy", "copy", "--src-tls-verify=false", f"docker://{addr}/{REPO}",
            f"oci:{oci}:big"]


def case_push(srv, meta):
    d = tempfile.mkdtemp(prefix="push.", dir=jobs_dir)  # skopeo's TMPDIR only
    try:
        t, u, s, rss = pull.run_timed(["skopeo", "--insecure-policy", "copy", "--dest-tls-verify=false",
                                       f"oci:{os.path.join(pull.IMAGE_CACHE, 'layout')}:{pull.TAG}",
                                       f"docker://{srv.addr}/{REPO}"], env=client_env(d))
    finally:
        remove(d)
    return {"s": t, "user": u, "sys": s, "client_rss_kb": rss}


def case_pull(srv, meta):
    d = tempfile.mkdtemp(prefix="pull.", dir=jobs_dir)
    try:
        oci = os.path.join(d, "oci")
        t, u, s, rss = pull.run_timed(pull_argv(srv.addr, oci), env=client_env(d))
        got = pulled_digest(oci)
        if got != meta["manifest"]:
            raise RuntimeError(f"pull from {srv.addr}: manifest {got}, want {meta['manifest']}")
        return {"s": t, "user": u, "sys": s, "client_rss_kb": rss}
    finally:
        remove(d)


def case_pull_n(srv, meta):
    dirs = [tempfile.mkdtemp(prefix=f"pull{i}.", dir=jobs_dir) for i in range(PULLS)]
    procs = []
    try:
        errs = [tempfile.TemporaryFile() for _ in dirs]
        t0 = time.monotonic()
        for d, err in zip(dirs, errs):
            procs.append(subprocess.Popen(pull_argv(srv.addr, os.path.join(d, "oci")), env=client_env(d),
                                          stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err))
        user = sys_ = 0.0
        for p in procs:
            _, status, ru = os.wait4(p.pid, 0)
            p.returncode = os.waitstatus_to_exitcode(status)
            user += ru.ru_utime
            sys_ += ru.ru_stime
        t = time.monotonic() - t0
        for p, err in zip(procs, errs):
            if p.returncode != 0:
                err.seek(0)
                raise RuntimeError(f"skopeo pull exited {p.returncode}: {err.read().decode(errors='replace')[-2000:]}")
        for d in dirs:
            got = pulled_digest(os.path.join(d, "oci"))
            if got != meta["manifest"]:
                raise RuntimeError(f"pull from {srv.addr}: manifest {got}, want {meta['manifest']}")
        return {"s": t, "user": user, "sys": sys_}
    finally:
        for p in procs:
            if p.returncode is None and p.poll() is None:
                p.kill()
                p.wait()
        for d in dirs:
            remove(d)


CASE_FNS = {"push": case_push, "pull": case_pull, f"pull x{PULLS}": case_pull_n}


def run_server(name, meta):
    """{'idle_rss_kb', 'peak_rss_kb', case: {...}} for one fresh server of that name."""
    base = tempfile.mkdtemp(prefix=f"srv-{name}.", dir=jobs_dir)
    srv = None
    try:
        srv = SERVER_CLASSES[name](base)
        res = {"idle_rss_kb": srv.status_kb("VmRSS")}
        for case in CASES:
            sync()
            c0 = srv.cpu()
            try:
                r = CASE_FNS[case](srv, meta)
            finally:
                empty_cache()
            r["server_cpu"] = srv.cpu() - c0
            t0 = time.monotonic()
            sync()
            r["sync_s"] = time.monotonic() - t0
            if case == "push":
                got = manifest_digest(srv.addr)
                if got != meta["manifest"]:
                    raise RuntimeError(f"{name}: pushed manifest is {got}, the layout's is {meta['manifest']}")
            if not srv.alive():
                raise RuntimeError(f"{name} server died during {case}")
            res[case] = r
        res["peak_rss_kb"] = srv.status_kb("VmHWM")
        return res
    finally:
        if srv:
            srv.stop()
        remove(base)


# -------------------------------------------------------------------------------------------------- report


def report(meta, samples):
    med = statistics.median
    gz = sum(l["size"] for l in meta["layers"])
    print(f"\nFilesystem: {'fresh journaled ext4 on a loop device (FS=loop)' if pull.FS == 'loop' else '/var/tmp (FS=host)'}"
          f". Image: {len(meta['layers'])} gzip layers, {gz / MB:.0f} MB compressed "
          f"({sum(l['tar_size'] for l in meta['layers']) / MB:.0f} MB uncompressed). {ROUNDS} rounds (+{WARMUP} "
          f"warm-up), servers started fresh on empty storage each round, order rotated.\n")
    rows = [["case", "server", "median s", "min s", "max s", "MB/s", "vs berth (medians)", "paired vs berth",
             "server CPU s", "client CPU s", "+sync median s"]]
    b = samples.get("berth")
    for case in CASES:
        moved = gz * (PULLS if case.startswith("pull x") else 1)
        for name in SERVERS:
            xs = [x[case] for x in samples[name]]
            s = [x["s"] for x in xs]
            ratio = paired = "-"
            if b and name != "berth":
                bs = [x[case]["s"] for x in b]
                ratio = f"{med(s) / med(bs):.2f}"
                paired = f"{med(x / y for x, y in zip(s, bs)):.2f}"
            rows.append([case, name, f"{med(s):.2f}", f"{min(s):.2f}", f"{max(s):.2f}", f"{moved / MB / med(s):.0f}",
                         ratio, paired, f"{med(x['server_cpu'] for x in xs):.2f}",
                         f"{med(x['user'] + x['sys'] for x in xs):.2f}",
                         f"{med(x['s'] + x['sync_s'] for x in xs):.2f}"])
    print(fmt_table(rows))
    print()
    rows = [["server", "idle RSS MB (median / max)", "peak RSS MB over the round (median / max)"]]
    for name in SERVERS:
        idle = [x["idle_rss_kb"] / 1024 for x in samples[name]]
        peak = [x["peak_rss_kb"] / 1024 for x in samples[name]]
        rows.append([name, f"{med(idle):.1f} / {max(idle):.1f}", f"{med(peak):.1f} / {max(peak):.1f}"])
    print(fmt_table(rows))
    print(f"\nMB/s = compressed layer bytes moved ({gz / MB:.0f} MB per copy, x{PULLS} for the concurrent case) / median s. "
          "'vs berth' = other server / berth (above 1: berth is faster); 'paired' = median over rounds of the same "
          "ratio within a round. server CPU = the server process's utime+stime during the case; client CPU = "
          "skopeo's user+sys (all clients for the concurrent case). +sync = the case plus the `sync` right after it. "
          "Idle RSS: VmRSS once /v2/ answers; peak: VmHWM before stopping.")


def main():
    global work, jobs_dir, cache_dir
    meta = pull.build_image()
    work = tempfile.mkdtemp(prefix="breg.", dir="/var/tmp")
    pull.work = work  # pull.run_timed keeps GNU time's output there
    cache_mounted = False
    try:
        cache_dir = os.path.join(work, "containers-cache")
        os.mkdir(cache_dir)
        if os.path.isdir("/var/lib/containers/cache"):
            subprocess.run(["mount", "--bind", cache_dir, "/var/lib/containers/cache"], check=True)
            cache_mounted = True
        pull.jobs_dir = jobs_dir = pull.setup_fs()
        samples = {n: [] for n in SERVERS}
        for r in range(-WARMUP, ROUNDS):
            k = r % len(SERVERS)
            order = SERVERS[k:] + SERVERS[:k]
            res = {}
            for name in order:
                res[name] = run_server(name, meta)
                if r >= 0:
                    samples[name].append(res[name])
            log(f"# round {r + 1 if r >= 0 else 'warm-up'}: " + "; ".join(
                f"{n} " + " ".join(f"{c} {res[n][c]['s']:.2f}" for c in CASES) +
                f" (RSS idle {res[n]['idle_rss_kb'] / 1024:.0f} MB, peak {res[n]['peak_rss_kb'] / 1024:.0f} MB)"
                for n in order))
        report(meta, samples)
        if JSON_OUT:
            with open(JSON_OUT, "w") as f:
                json.dump({"meta": meta, "samples": samples}, f, indent=1)
    finally:
        if cache_mounted:
            subprocess.run(["umount", "/var/lib/containers/cache"], check=False)
        if jobs_dir and pull.FS == "loop":
            pull.remove_contents(jobs_dir)
            subprocess.run(["umount", jobs_dir], check=False)  # mount -o loop: autoclear detaches the device
        remove(work)


def on_signal(sig, _frame):
    raise KeyboardInterrupt(f"signal {sig}")


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    main()
