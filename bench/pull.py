#!/usr/bin/env python3
"""Side-by-side image pull benchmark: berth vs skopeo+umoci vs podman, with tar -x baselines (driven by
bench/pull.sh, which builds berth and enters ../shared/tools/peer-ns.sh first).

Image: an OCI layout cached under IMAGE_CACHE (default /var/tmp/berth-bench-image), built once from real files
of this machine: 4 gzip layers (gzip's default level 6), each a deterministic subset (sorted walk, files taken while
they fit a byte budget) of
  1 usr/bin + usr/sbin    2 usr/lib/x86_64-linux-gnu    3 usr/share    4 usr/lib/python3*
with config diff_ids, an OCI manifest and index.json tagged "big". The uncompressed tars stay next to it
(tars/layerN.tar) for the tar -x baseline. Delete the directory to rebuild it (it is rebuilt by itself when
its format version below changes).

Registry: Debian's docker-registry on a free 127.0.0.1 port, storage in this run's temp dir, filled with
`skopeo copy --preserve-digests` (the gzip blobs are served byte for byte as built).

Jobs, each timed from an empty destination (wall clock, fork to wait4; user/sys CPU from the wait4 rusage, which
also covers every descendant the job reaped; peak RSS from GNU time's %M, the largest of the job's processes):
  berth         berth --root D pull 127.0.0.1:PORT/bench/big:1                (stdout/stderr to /dev/null)
  skopeo+umoci  skopeo copy docker://... oci:D:big, then umoci unpack --image D:big BUNDLE  (sum; parts too)
  podman        podman --root D --runroot R --tmpdir T --storage-driver overlay pull --tls-verify=false REF
  tar-x         tar -xf layerN.tar -C D/N for every layer, sequentially                  (no decompression)
  gzip+tar-x    gzip -dc layerN.tar.gz | tar -x -C D/N for every layer, sequentially
  berth-tar     berth pull of the same image with uncompressed layers (bench/big-tar:1): download, two sha256
                passes and unpack, no gunzip, so its MB/s is berth's unpack throughput next to tar-x's
One untimed warm-up round, then ROUNDS rounds, the order rotated each round.
`sync` runs (untimed) before every job, so one job's writeback is not billed to the next; each job's output is
removed (untimed) right after it. The `sync` right after a job is timed too and reported separately ("+sync":
the job until its data is on disk; berth fsyncs its content-store blobs itself, the peers' unpacked files are
left to writeback).

Filesystem (FS): the jobs write to a fresh ext4 (mkfs defaults, so with a journal; inode tables initialised at
mkfs, not lazily in the background) on a loop device over a sparse file of this run (FS_SIZE, default 12G;
direct I/O to the backing file, so nothing is cached twice), mounted in the private mount namespace. FS=host
writes to /var/tmp directly instead. Why: this VM's root ext4 has NO journal, and journal-less ext4 refuses to
reuse inodes freed in the last 60-360 s (ialloc.c recently_deleted()), scanning past each of them on every
create; after a job's 19k files were deleted, the next job's creates cost ~0.3-0.5 ms each instead of ~20 us
(tar -x of the 12k-entry layer: 5.9 s on the host fs, 0.45 s on the loop ext4), so the host fs measures the
previous job's deletions more than the tool.

The containers/image blob info cache (/var/lib/containers/cache for root, used by skopeo and podman 4.3) is
bind-mounted to an empty directory of this run (private mount namespace) and emptied after each job, so no job
sees another's cache and the host's file is untouched.
"""
import hashlib
import json
import os
import shutil
import signal
import socket
import stat
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROUNDS = int(os.environ.get("ROUNDS", "5"))
WARMUP = int(os.environ.get("WARMUP", "1"))
BERTH = os.environ["BERTH"]
IMAGE_CACHE = os.environ.get("IMAGE_CACHE", "/var/tmp/berth-bench-image")
TOOLS = [t for t in os.environ.get("TOOLS", "berth,skopeo+umoci,podman,tar-x,gzip+tar-x,berth-tar").split(",")
         if t]
JSON_OUT = os.environ.get("JSON_OUT")
PODMAN_OPTS = os.environ.get("PODMAN_OPTS", "").split()
GNU_TIME = "/usr/bin/time"
FS = os.environ.get("FS", "loop")  # loop: a fresh journaled ext4 for the jobs; host: /var/tmp as it is
FS_SIZE = os.environ.get("FS_SIZE", "12G")

FORMAT = 2  # bump when the layer recipe changes: a cached image of another version is rebuilt
MB = 1e6
MiB = 2**20
LAYERS = [  # per layer: (source dir relative to /, byte budget of its regular files' contents)
    [("usr/sbin", 30 * MiB), ("usr/bin", 90 * MiB)],
    [("usr/lib/x86_64-linux-gnu", 130 * MiB)],
    [("usr/share", 90 * MiB)],
    None,  # usr/lib/python3* (each up to 80 MiB), found at build time
]
TAG = "big"
REPO = "bench/big:1"
REPO_TAR = "bench/big-tar:1"  # the same layers uncompressed: berth's unpack set beside tar -x

work = None
registry = None
jobs_dir = None  # where every job's fresh directory is made


def log(*a):
    print(*a, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------- test image


def file_list(spec):
    """Paths (relative to /) of a sorted depth-first walk of each (dir, budget) of spec, parents and every
    directory included, regular files taken in walk order as long as they fit in that dir's byte budget.
    Symlinks are entries, never followed; sockets, fifos and devices are left out."""
    out, seen, total = [], set(), 0
    for top, budget in spec:
        parts = top.split("/")
        for i in range(1, len(parts) + 1):
            p = "/".join(parts[:i])
            if p not in seen:
                seen.add(p)
                out.append(p)
        used = 0
        for root, dnames, fnames in os.walk("/" + top):
            dnames.sort()
            rel = root[1:]
            for d in list(dnames):
                if os.path.islink(f"/{rel}/{d}"):  # os.walk lists symlinks to dirs as dirs
                    dnames.remove(d)
                    fnames.append(d)
            for f in sorted(fnames):
                p = f"{rel}/{f}"
                try:
                    st = os.lstat("/" + p)
                except FileNotFoundError:
                    continue
                if stat.S_ISREG(st.st_mode):
                    if used + st.st_size > budget:
                        continue  # e.g. a 100 MB libLLVM: skip it, smaller files may still fit
                    used += st.st_size
                elif not stat.S_ISLNK(st.st_mode):
                    continue
                out.append(p)
            out.extend(f"{rel}/{d}" for d in dnames)
        total += used
    return out, total


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(1 << 20)
            if not b:
                return h.hexdigest()
            h.update(b)


def build_image():
    meta_path = os.path.join(IMAGE_CACHE, "meta.json")
    try:
        with open(meta_path) as f:
            meta = json.load(f)
        if meta.get("format") == FORMAT:
            log(f"# test image: reusing {IMAGE_CACHE}")
            return meta
        log(f"# test image: {IMAGE_CACHE} has format {meta.get('format')}, rebuilding")
    except FileNotFoundError:
        pass
    if os.path.exists(IMAGE_CACHE):
        shutil.rmtree(IMAGE_CACHE)
    tmp = tempfile.mkdtemp(prefix=os.path.basename(IMAGE_CACHE) + ".build.", dir=os.path.dirname(IMAGE_CACHE))
    try:
        log(f"# test image: building in {tmp} (a minute or two)")
        layout = os.path.join(tmp, "layout")
        blobs = os.path.join(layout, "blobs", "sha256")
        tars = os.path.join(tmp, "tars")
        os.makedirs(blobs)
        os.makedirs(tars)
        py = sorted(d[1:] for d in (os.path.join("/usr/lib", n) for n in os.listdir("/usr/lib"))
                    if os.path.basename(d).startswith("python3") and os.path.isdir(d) and not os.path.islink(d))
        layers = []
        for n, spec in enumerate(LAYERS, 1):
            spec = spec or [(d, 80 * MiB) for d in py]
            dirs = [d for d, _ in spec]
            paths, content = file_list(spec)
            lst = os.path.join(tmp, f"layer{n}.list")
            with open(lst, "wb") as f:
                f.write(b"".join(p.encode() + b"\0" for p in paths))
            tar = os.path.join(tars, f"layer{n}.tar")
            r = subprocess.run(["tar", "--create", "--file", tar, "--directory", "/", "--no-recursion", "--null",
                                "--files-from", lst, "--numeric-owner", "--format=gnu"], stderr=subprocess.PIPE)
            if r.returncode not in (0, 1):  # 1: "file changed as we read it"
                raise SystemExit(f"tar of layer {n} failed: {r.stderr.decode()[-500:]}")
            os.unlink(lst)
            gz = os.path.join(tmp, f"layer{n}.tar.gz")
            with open(tar, "rb") as src, open(gz, "wb") as dst:
                subprocess.run(["gzip", "-c", "-n"], stdin=src, stdout=dst, check=True)
            diff_id, digest = sha256_file(tar), sha256_file(gz)
            os.rename(gz, os.path.join(blobs, digest))
            layers.append({"dirs": dirs, "files": len(paths), "content_bytes": content,
                           "tar": f"tars/layer{n}.tar", "tar_size": os.path.getsize(tar),
                           "diff_id": "sha256:" + diff_id, "digest": "sha256:" + digest,
                           "size": os.path.getsize(os.path.join(blobs, digest))})
            log(f"#   layer {n} {'+'.join(dirs)}: {len(paths)} entries, {layers[-1]['tar_size'] / MB:.0f} MB tar, "
                f"{layers[-1]['size'] / MB:.0f} MB gzip")

        def put(obj):
            b = json.dumps(obj, separators=(",", ":")).encode()
            d = hashlib.sha256(b).hexdigest()
            with open(os.path.join(blobs, d), "wb") as f:
                f.write(b)
            return "sha256:" + d, len(b)

        cfg_digest, cfg_size = put({
            "architecture": "amd64", "os": "linux",
            "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                       "Cmd": ["/bin/sh"]},
            "rootfs": {"type": "layers", "diff_ids": [l["diff_id"] for l in layers]},
            "history": [{"created_by": f"berth bench layer {i + 1}"} for i in range(len(layers))],
        })
        man_digest, man_size = put({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg_digest,
                       "size": cfg_size},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": l["digest"],
                        "size": l["size"]} for l in layers],
        })
        with open(os.path.join(layout, "oci-layout"), "w") as f:
            json.dump({"imageLayoutVersion": "1.0.0"}, f)
        with open(os.path.join(layout, "index.json"), "w") as f:
            json.dump({"schemaVersion": 2, "manifests": [{
                "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": man_digest, "size": man_size,
                "annotations": {"org.opencontainers.image.ref.name": TAG}}]}, f)
        meta = {"format": FORMAT, "tag": TAG, "manifest": man_digest, "config": cfg_digest, "layers": layers,
                "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "host": os.uname().release}
        with open(os.path.join(tmp, "meta.json"), "w") as f:
            json.dump(meta, f, indent=1)
        os.rename(tmp, IMAGE_CACHE)
        return meta
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# ------------------------------------------------------------------------------------------------ registry


class Registry:
    def __init__(self, base):
        self.dir = os.path.join(base, "registry")
        os.makedirs(self.dir)
        self.proc = None
        for _ in range(5):  # a probed free port can be taken before the registry binds it
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            self.addr = f"127.0.0.1:{port}"
            cfg = os.path.join(self.dir, "config.yml")
            with open(cfg, "w") as f:
                f.write("version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n"
                        f"storage:\n  filesystem:\n    rootdirectory: {self.dir}/data\n"
                        f"http:\n  addr: {self.addr}\n")
            self.log = open(os.path.join(self.dir, "registry.log"), "wb")
            self.proc = subprocess.Popen(["/usr/bin/docker-registry", "serve", cfg], stdin=subprocess.DEVNULL,
                                         stdout=self.log, stderr=self.log)
            if self.wait_ready():
                return
            self.stop()
        raise SystemExit("docker-registry did not start: " + open(os.path.join(self.dir, "registry.log")).read())

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
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        self.log.close()


# -------------------------------------------------------------------------------------------------- timing


def run_timed(argv, env=None):
    """(wall s, user s, sys s, maxrss KB) of argv; raises on failure. Started through GNU time, whose %M is the
    job's own peak RSS: ru_maxrss of a child forked straight from python would include python's ~20 MB (the
    high-water mark before execve counts). Wall and CPU come from this process's wait4 (time's own share is
    negligible)."""
    err = tempfile.TemporaryFile()
    rss_file = os.path.join(work, "rss")
    t0 = time.monotonic()
    p = subprocess.Popen([GNU_TIME, "-q", "-f", "%M", "-o", rss_file, *argv], stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=err, env=env)
    _, status, ru = os.wait4(p.pid, 0)
    t = time.monotonic() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        err.seek(0)
        raise RuntimeError(f"{argv[0]} exited {p.returncode}: {err.read().decode(errors='replace')[-2000:]}")
    with open(rss_file) as f:
        rss = int(f.read().split()[-1])
    return t, ru.ru_utime, ru.ru_stime, rss


def mounts_under(path):
    r = subprocess.run(["findmnt", "-rn", "-o", "TARGET"], capture_output=True, text=True, check=True)
    out = []
    for line in r.stdout.splitlines():
        t = line.encode().decode("unicode_escape")  # findmnt -r escapes blanks as \x20
        if t == path or t.startswith(path.rstrip("/") + "/"):
            out.append(t)
    return out


def remove(path):
    for m in sorted(mounts_under(path), key=len, reverse=True):
        log(f"# unmounting leftover {m}")
        subprocess.run(["umount", "-l", m], check=False)
    shutil.rmtree(path, ignore_errors=True)
    if os.path.exists(path):
        subprocess.run(["rm", "-rf", path], check=False)


def remove_contents(path):
    for n in os.listdir(path):
        if n != "lost+found":
            remove(os.path.join(path, n))


def setup_fs():
    if FS == "host":
        return work
    if FS != "loop":
        raise SystemExit(f"FS={FS}: loop or host")
    img, mnt = os.path.join(work, "fs.img"), os.path.join(work, "mnt")
    os.mkdir(mnt)
    subprocess.run(["truncate", "-s", FS_SIZE, img], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-E", "lazy_itable_init=0,lazy_journal_init=0", img], check=True)
    subprocess.run(["mount", "-o", "loop", img, mnt], check=True)
    dev = subprocess.run(["findmnt", "-no", "SOURCE", mnt], capture_output=True, text=True).stdout.strip()
    if subprocess.run(["losetup", "--direct-io=on", dev]).returncode != 0:
        log(f"# {dev}: no direct I/O, the backing file's page cache holds a second copy")
    log(f"# jobs write to a fresh ext4 on {dev} at {mnt}")
    return mnt


def sync():
    subprocess.run(["sync"], check=True)


class Jobs:
    def __init__(self, meta, addr, cache_dir):
        self.meta = meta
        self.ref = f"{addr}/{REPO}"
        self.cache_dir = cache_dir  # bind-mounted over /var/lib/containers/cache
        self.tars = [os.path.join(IMAGE_CACHE, l["tar"]) for l in meta["layers"]]
        self.gzs = [os.path.join(IMAGE_CACHE, "layout/blobs/sha256", l["digest"].split(":", 1)[1])
                    for l in meta["layers"]]

    def fresh(self):
        return tempfile.mkdtemp(prefix="job.", dir=jobs_dir)

    def env(self, d):
        e = dict(os.environ)
        e["TMPDIR"] = d  # containers/image stages blobs under $TMPDIR (/var/tmp by default)
        return e

    def run(self, tool):
        """{'s','user','sys','rss_kb','sync_s', parts...} for one fresh run of tool."""
        d = self.fresh()
        try:
            sync()
            r = self.job(tool, d)
            t0 = time.monotonic()
            sync()
            r["sync_s"] = time.monotonic() - t0
            return r
        finally:
            remove(d)
            for n in os.listdir(self.cache_dir):
                remove(os.path.join(self.cache_dir, n))

    def job(self, tool, d):
        """{'s','user','sys','rss_kb', parts...} for one run of tool writing into the empty directory d."""
        if tool in ("berth", "berth-tar"):
            ref = self.ref if tool == "berth" else self.ref.replace(REPO, REPO_TAR)
            t, u, s, rss = run_timed([BERTH, "--root", os.path.join(d, "root"), "pull", ref])
            return {"s": t, "user": u, "sys": s, "rss_kb": rss}
        if tool == "skopeo+umoci":
            oci = os.path.join(d, "oci")
            t1, u1, s1, r1 = run_timed(["skopeo", "--insecure-policy", "copy", "--src-tls-verify=false",
                                        f"docker://{self.ref}", f"oci:{oci}:big"], env=self.env(d))
            t2, u2, s2, r2 = run_timed(["umoci", "unpack", "--image", f"{oci}:big", os.path.join(d, "bundle")])
            return {"s": t1 + t2, "user": u1 + u2, "sys": s1 + s2, "rss_kb": max(r1, r2),
                    "skopeo": t1, "umoci": t2, "skopeo_rss_kb": r1, "umoci_rss_kb": r2}
        if tool == "podman":
            argv = ["podman", "--root", os.path.join(d, "root"), "--runroot", os.path.join(d, "run"),
                    "--tmpdir", os.path.join(d, "tmp"), "--storage-driver", "overlay", *PODMAN_OPTS,
                    "pull", "--tls-verify=false", self.ref]
            t, u, s, rss = run_timed(argv, env=self.env(d))
            return {"s": t, "user": u, "sys": s, "rss_kb": rss}
        if tool in ("tar-x", "gzip+tar-x"):
            script = []
            for i, (tar, gz) in enumerate(zip(self.tars, self.gzs)):
                dest = os.path.join(d, str(i + 1))
                os.mkdir(dest)
                script.append(f"tar -xf '{tar}' -C '{dest}'" if tool == "tar-x"
                              else f"gzip -dc '{gz}' | tar -x -C '{dest}'")
            t, u, s, rss = run_timed(["bash", "-o", "pipefail", "-ec", "\n".join(script)])
            return {"s": t, "user": u, "sys": s, "rss_kb": rss}
        raise SystemExit(f"unknown tool {tool}")


def make_tar_layout(meta, base):
    """An OCI layout of the same image with uncompressed layers: blobs are symlinks to the cached tars (a tar's
    digest is its diff_id), the config is the gzip image's own."""
    layout = os.path.join(base, "layout-tar")
    blobs = os.path.join(layout, "blobs", "sha256")
    os.makedirs(blobs)
    src = os.path.join(IMAGE_CACHE, "layout", "blobs", "sha256")
    cfg = meta["config"].split(":", 1)[1]
    shutil.copy(os.path.join(src, cfg), os.path.join(blobs, cfg))
    for l in meta["layers"]:
        os.symlink(os.path.join(IMAGE_CACHE, l["tar"]), os.path.join(blobs, l["diff_id"].split(":", 1)[1]))
    man = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": meta["config"],
                   "size": os.path.getsize(os.path.join(blobs, cfg))},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": l["diff_id"],
                    "size": l["tar_size"]} for l in meta["layers"]],
    }, separators=(",", ":")).encode()
    md = hashlib.sha256(man).hexdigest()
    with open(os.path.join(blobs, md), "wb") as f:
        f.write(man)
    with open(os.path.join(layout, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    with open(os.path.join(layout, "index.json"), "w") as f:
        json.dump({"schemaVersion": 2, "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:" + md, "size": len(man),
            "annotations": {"org.opencontainers.image.ref.name": TAG}}]}, f)
    return layout


def check_outputs(jobs):
    """One untimed sanity pass: berth's snapshots hold what tar -x makes of the same layers (file counts)."""
    d = tempfile.mkdtemp(prefix="check.", dir=jobs_dir)
    try:
        subprocess.run([BERTH, "--root", d, "pull", jobs.ref], check=True, stdout=subprocess.DEVNULL)
        snaps = os.path.join(d, "snapshots")
        n = sum(len(f) + len(ds) for s in os.listdir(snaps) for _, ds, f in os.walk(os.path.join(snaps, s)))
        want = sum(l["files"] for l in jobs.meta["layers"])
        log(f"# check: berth snapshots hold {n} entries in {len(os.listdir(snaps))} snapshot dirs "
            f"(the layer tars list {want} paths, parents included): {sorted(os.listdir(snaps))}")
    finally:
        remove(d)


def fmt_table(rows):
    w = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    line = lambda r: "| " + " | ".join(c.ljust(w[i]) for i, c in enumerate(r)) + " |"
    return "\n".join([line(rows[0]), "|" + "|".join("-" * (x + 2) for x in w) + "|"] + [line(r) for r in rows[1:]])


def report(meta, samples):
    med = statistics.median
    raw = sum(l["tar_size"] for l in meta["layers"])
    gz = sum(l["size"] for l in meta["layers"])
    print(f"\nFilesystem: {'fresh journaled ext4 on a loop device (FS=loop)' if FS == 'loop' else '/var/tmp (FS=host)'}. "
          f"Image: {len(meta['layers'])} layers, {raw / MB:.0f} MB uncompressed tar "
          f"({sum(l['content_bytes'] for l in meta['layers']) / MB:.0f} MB file contents, "
          f"{sum(l['files'] for l in meta['layers'])} entries), {gz / MB:.0f} MB gzip. "
          f"{ROUNDS} rounds (+{WARMUP} warm-up).\n")
    rows = [["tool", "median s", "min s", "max s", "vs berth (medians)", "paired vs berth", "user s", "sys s",
             "MB/s (uncompr.)", "peak RSS MB (median / max)", "+sync median s", "+sync vs berth"]]
    b = samples.get("berth")
    for tool in TOOLS:
        xs = samples[tool]
        s = [x["s"] for x in xs]
        ratio = paired = "-"
        if b and tool != "berth":
            ratio = f"{med(s) / med(x['s'] for x in b):.2f}"
            paired = f"{med(x['s'] / y['s'] for x, y in zip(xs, b)):.2f}"
        rss = [x["rss_kb"] / 1024 for x in xs]
        ws = med(x["s"] + x["sync_s"] for x in xs)
        wratio = f"{ws / med(x['s'] + x['sync_s'] for x in b):.2f}" if b and tool != "berth" else "-"
        rows.append([tool, f"{med(s):.2f}", f"{min(s):.2f}", f"{max(s):.2f}", ratio, paired,
                     f"{med(x['user'] for x in xs):.2f}", f"{med(x['sys'] for x in xs):.2f}",
                     f"{raw / MB / med(s):.0f}", f"{med(rss):.0f} / {max(rss):.0f}", f"{ws:.2f}", wratio])
    print(fmt_table(rows))
    if "skopeo+umoci" in samples:
        xs = samples["skopeo+umoci"]
        print(f"\nskopeo+umoci parts (median s): skopeo copy {med(x['skopeo'] for x in xs):.2f} "
              f"(peak RSS {med(x['skopeo_rss_kb'] for x in xs) / 1024:.0f} MB), umoci unpack "
              f"{med(x['umoci'] for x in xs):.2f} (peak RSS {med(x['umoci_rss_kb'] for x in xs) / 1024:.0f} MB)")
    if b:
        bm = med(x["s"] for x in b)
        line = f"\nberth: {raw / MB / bm:.0f} MB/s of uncompressed layers for the whole pull (download, sha256, " \
               f"gunzip, unpack); CPU user+sys {med(x['user'] + x['sys'] for x in b):.2f} s per pull"
        for base in ("tar-x", "gzip+tar-x"):
            if base in samples:
                m = med(x["s"] for x in samples[base])
                line += f"; {base} {raw / MB / m:.0f} MB/s (berth takes {bm / m:.2f}x its time)"
        print(line)
    if "berth-tar" in samples and "tar-x" in samples:
        bt = med(x["s"] for x in samples["berth-tar"])
        tx = med(x["s"] for x in samples["tar-x"])
        print(f"\nunpack throughput, same uncompressed layers: berth pull {raw / MB / bt:.0f} MB/s (download, sha256 "
              f"twice, unpack; layers in parallel) vs tar -x {raw / MB / tx:.0f} MB/s (local files, one at a time): "
              f"{tx / bt:.2f} of tar's throughput")
    print("'paired vs berth' = median over rounds of (tool / berth of the same round). MB/s = uncompressed "
          "layer tar bytes / median s. user/sys: CPU of the job and everything it reaped. +sync: the job plus the `sync` right after it.")


def main():
    global work, registry
    meta = build_image()
    work = tempfile.mkdtemp(prefix="bpull.", dir="/var/tmp")  # short: podman wants a runroot of <= 50 chars
    cache_mounted = False
    try:
        cache_dir = os.path.join(work, "containers-cache")
        os.mkdir(cache_dir)
        if os.path.isdir("/var/lib/containers/cache"):
            subprocess.run(["mount", "--bind", cache_dir, "/var/lib/containers/cache"], check=True)
            cache_mounted = True
        global jobs_dir
        jobs_dir = setup_fs()
        registry = Registry(work)
        layout = os.path.join(IMAGE_CACHE, "layout")
        t0 = time.monotonic()
        subprocess.run(["skopeo", "--insecure-policy", "copy", "-q", "--preserve-digests", "--dest-tls-verify=false",
                        f"oci:{layout}:{TAG}", f"docker://{registry.addr}/{REPO}"], check=True)
        log(f"# registry {registry.addr} (pid {registry.proc.pid}): pushed in {time.monotonic() - t0:.1f} s")
        tar_layout = make_tar_layout(meta, work)
        subprocess.run(["skopeo", "--insecure-policy", "copy", "-q", "--preserve-digests", "--dest-tls-verify=false",
                        f"oci:{tar_layout}:{TAG}", f"docker://{registry.addr}/{REPO_TAR}"], check=True)
        jobs = Jobs(meta, registry.addr, cache_dir)
        check_outputs(jobs)
        samples = {t: [] for t in TOOLS}
        for r in range(-WARMUP, ROUNDS):
            k = r % len(TOOLS)
            order = TOOLS[k:] + TOOLS[:k]
            res = {}
            for tool in order:
                res[tool] = jobs.run(tool)
                if r >= 0:
                    samples[tool].append(res[tool])
            log(f"# round {r + 1 if r >= 0 else 'warm-up'}: " +
                ", ".join(f"{t} {res[t]['s']:.2f}" for t in order))
        # The paired ratio needs the samples per round in the same order for every tool: they are.
        report(meta, samples)
        if JSON_OUT:
            with open(JSON_OUT, "w") as f:
                json.dump({"meta": meta, "samples": samples}, f, indent=1)
    finally:
        if registry:
            registry.stop()
        if cache_mounted:
            subprocess.run(["umount", "/var/lib/containers/cache"], check=False)
        if jobs_dir and FS == "loop":
            remove_contents(jobs_dir)
            subprocess.run(["umount", jobs_dir], check=False)  # mount -o loop: autoclear detaches the device
        remove(work)


def on_signal(sig, _frame):
    raise KeyboardInterrupt(f"signal {sig}")


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    main()
