#!/usr/bin/env python3
"""Side-by-side network benchmark for berth, driven by bench/network.sh.

Runs inside the network namespace of network.sh's holder (refuses to run in the namespace named by
$HOST_NETNS): that namespace plays the host of the containers. Every process started here is ended by pid.

Image: scripts/busybox-image.py's busybox docker-archive plus a second layer with `lib -> usr/lib`,
`lib64 -> usr/lib64` and an empty usr/ (as crates/berth/tests/network.rs), so `-v /usr:/usr:ro` gives the
container the host's /usr/bin/iperf3 and its libraries. Loaded with `berth --root R load`, R a temp dir
under /var/tmp; network `berth network create --subnet 10.77.0.0/24 benchnet`.

Containers (both on benchnet, both with -v /usr:/usr:ro):
  srv  berth run -d --network benchnet -p 15201:5201 IMG iperf3 -s       (the one server of parts 1 and 2)
  cli  berth run -d --network benchnet IMG sleep 100000                   (the client of part 1, via exec)
Hand-made baseline: two more `unshare --net sleep infinity` holders A and B (children of this process), one
veth pair `ip link add vA type veth peer name vB` moved into them, 10.88.0.1/24 in A and 10.88.0.2/24 in B,
links and lo up; `iperf3 -s` in A (nsenter --net). No bridge, no nftables, no container around iperf3.
Second baseline, a plain bridge built by hand: holders C and D, a bridge hb0 here, one veth pair from it
into each (10.66.0.1/24 in C, .2 in D), `iperf3 -s` in C; what berth's topology would give without its
short way. This / the veth pair = the kernel bridge's cost (with br_netfilter loaded:
its pass through the IPv4 hooks and conntrack, which berth's short way avoids).
iperf3 runs pinned on every path (PIN=1, the default): client -A 0, server -A 1.

(1) container -> container, ROUNDS rounds, the order of the three paths rotating from round to round:
  berth        berth exec cli iperf3 -c SRV_IP -t SECS -J   (berth's network: the frames between the two
               containers take berth's short way veth -> veth, crates/net/src/fastpath.rs; the bench prints
               how many of its chains it found)
  veth         nsenter --net=/proc/B/ns/net iperf3 -c 10.88.0.1 -t SECS -J
  hand bridge  nsenter --net=/proc/D/ns/net iperf3 -c 10.66.0.1 -t SECS -J
(2) host -> container (the client runs in this namespace, no container), ROUNDS rounds, order rotating:
  published   iperf3 -c 127.0.0.1 -p 15201 -t SECS -J    (berth's nftables DNAT, OUTPUT chain)
  direct      iperf3 -c SRV_IP -p 5201 -t SECS -J        (routed to the bridge, no NAT)
  docker-proxy iperf3 -c 127.0.0.1 -p 25201 -t SECS -J   (docker-proxy -proto tcp -host-ip 127.0.0.1
              -host-port 25201 -container-ip SRV_IP -container-port 5201, started here once, ended by pid)
Throughput = end.sum_received.bits_per_second of the client's JSON (what the server got), in Gbit/s; the
sender's retransmits are reported too. For (1) also the machine's busy CPU time (/proc/stat: user, nice,
system, irq, softirq; steal excluded) per GB received: the path's cost, steadier than throughput on a VM. The iperf3 server serves one test at a time; all tests are sequential.
(3) start latency: WARMUP rounds, then START_ROUNDS rounds, alternating order:
  berth --root R run --rm --network bridge IMG true     vs.     ... --network none ...
Wall clock from spawn to wait4 of the CLI (stdout /dev/null, stderr to a file, checked on failure).
"paired" = median over rounds of the ratio of the two runs in the same round.
"""
import hashlib
import io
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
BERTH = os.environ["BERTH"]
ROUNDS = int(os.environ.get("ROUNDS", "5"))
SECS = int(os.environ.get("SECS", "3"))
START_ROUNDS = int(os.environ.get("START_ROUNDS", "20"))
# iperf3's client on CPU 0 and server on CPU 1 on every path (-A), so that no path wins or loses by where
# the scheduler happens to put the two (on 2 CPUs that alone moved single runs by +-20 %). PIN=0: unpinned.
PIN = os.environ.get("PIN", "1") == "1" and (os.cpu_count() or 1) >= 2
SRV_PIN = ["-A", "1"] if PIN else []
CLI_PIN = ["-A", "0"] if PIN else []
WARMUP = int(os.environ.get("WARMUP", "3"))
PROXY = "/usr/sbin/docker-proxy"
IMG = "localhost/berth-netbench:1"
NET = "benchnet"


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def sh(args, check=True, **kw):
    p = subprocess.run(args, capture_output=True, text=True, **kw)
    if check and p.returncode != 0:
        raise RuntimeError(f"{args}: rc {p.returncode}: {p.stderr.strip()}")
    return p


def make_image(path):
    base = path + ".base"
    sh(["python3", os.path.join(REPO, "scripts/busybox-image.py"), base, IMG])
    with tarfile.open(base) as t:
        files = {m.name: t.extractfile(m).read() for m in t.getmembers() if m.isfile()}
    manifest = json.loads(files["manifest.json"])
    config = json.loads(files[manifest[0]["Config"]])
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, target in [("lib", "usr/lib"), ("lib64", "usr/lib64")]:
            ti = tarfile.TarInfo(name)
            ti.type, ti.linkname, ti.mtime = tarfile.SYMTYPE, target, 0
            t.addfile(ti)
        ti = tarfile.TarInfo("usr")
        ti.type, ti.mode, ti.mtime = tarfile.DIRTYPE, 0o755, 0
        t.addfile(ti)
    layer = layer.getvalue()
    diff_id = hashlib.sha256(layer).hexdigest()
    config["rootfs"]["diff_ids"].append("sha256:" + diff_id)
    config["history"].append({"created_by": "bench/network.py: lib, lib64 -> usr/"})
    cfg = json.dumps(config).encode()
    cfg_name = hashlib.sha256(cfg).hexdigest() + ".json"
    del files[manifest[0]["Config"]]
    files[cfg_name] = cfg
    files[diff_id + "/layer.tar"] = layer
    manifest[0]["Config"] = cfg_name
    manifest[0]["Layers"].append(diff_id + "/layer.tar")
    files["manifest.json"] = json.dumps(manifest).encode()
    with tarfile.open(path, "w") as t:
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            t.addfile(ti, io.BytesIO(data))
    os.unlink(base)


class Bench:
    def __init__(self, work):
        self.work = work
        self.root = os.path.join(work, "berth")
        self.procs = []        # Popen of our own helpers (holders, iperf3 -s, docker-proxy)
        self.holders = []
        self.containers = []

    def berth(self, *args, check=True):
        return sh([BERTH, "--root", self.root, *args], check=check)

    def spawn(self, args):
        p = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=open(os.path.join(self.work, f"spawn{len(self.procs)}.err"), "w"))
        self.procs.append(p)
        return p

    def holder(self):
        p = self.spawn(["unshare", "--net", "sleep", "infinity"])
        ours = os.readlink("/proc/self/ns/net")
        deadline = time.monotonic() + 5
        while True:
            try:
                ns = os.readlink(f"/proc/{p.pid}/ns/net")
            except OSError:
                ns = ours
            if ns != ours and ns != os.environ["HOST_NETNS"]:
                break
            if time.monotonic() > deadline:
                raise RuntimeError("child holder did not unshare")
            time.sleep(0.005)
        self.ns(p, "ip", "link", "set", "lo", "up")
        self.holders.append(p)
        return p

    def ns(self, p, *args, check=True):
        return sh(["nsenter", f"--net=/proc/{p.pid}/ns/net", "--", *args], check=check)

    def cleanup(self):
        for c in self.containers:
            self.berth("rm", "-f", c, check=False)
        self.berth("network", "rm", NET, check=False)
        for p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()


def busy_ms():
    # CPU time the machine spent working (user, nice, system, irq, softirq; not idle, iowait or steal), ms.
    f = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    return (f[0] + f[1] + f[2] + f[5] + f[6]) * 1000 / os.sysconf("SC_CLK_TCK")


CPU_PER_GB = {}   # client argv's last element (the address) -> [busy CPU ms per GB received]


def iperf(args):
    # Under load the server may still be closing the previous test ("the server is busy running a test"):
    # retry that for up to 10 s.
    for attempt in range(20):
        t0 = busy_ms()
        p = subprocess.run(args + CLI_PIN + ["-t", str(SECS), "-J"], capture_output=True, text=True)
        t1 = busy_ms()
        try:
            j = json.loads(p.stdout)
        except ValueError:
            raise RuntimeError(f"{args}: rc {p.returncode}: {p.stdout[-500:]} {p.stderr[-500:]}")
        if "busy" not in j.get("error", ""):
            break
        time.sleep(0.5)
    if "error" in j:
        raise RuntimeError(f"{args}: {j['error']}")
    CPU_PER_GB.setdefault(" ".join(args), []).append((t1 - t0) / (j["end"]["sum_received"]["bytes"] / 1e9))
    return j["end"]["sum_received"]["bits_per_second"] / 1e9, j["end"]["sum_sent"].get("retransmits", 0)


def wait_port(args_prefix, ip, port):
    # iperf3 -s is up when a TCP connect succeeds; busybox-free check from the client side with python.
    deadline = time.monotonic() + 10
    code = f"import socket; socket.create_connection(('{ip}', {port}), 1).close()"
    while subprocess.run(args_prefix + ["python3", "-c", code], capture_output=True).returncode != 0:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{ip}:{port} not up")
        time.sleep(0.1)


def med(xs):
    return statistics.median(xs)


def table(rows, unit):
    out = [f"| path | median {unit} | min | max | samples |", "|---|---:|---:|---:|---|"]
    for name, xs in rows:
        out.append(f"| {name} | {med(xs):.2f} | {min(xs):.2f} | {max(xs):.2f} | "
                   + " ".join(f"{x:.2f}" for x in xs) + " |")
    return "\n".join(out)


def main():
    if os.readlink("/proc/self/ns/net") == os.environ.get("HOST_NETNS", ""):
        sys.exit("network.py: refusing to run in the host's network namespace (start it with network.sh)")
    work = tempfile.mkdtemp(prefix="berth-netbench-", dir="/var/tmp")
    b = Bench(work)
    samples = {}
    try:
        img = os.path.join(work, "image.tar")
        make_image(img)
        b.berth("load", "-i", img)
        br_nf = os.path.exists("/proc/sys/net/bridge/bridge-nf-call-iptables")
        log(f"# br_netfilter loaded: {br_nf}")

        b.berth("network", "create", "--subnet", "10.77.0.0/24", NET)
        vol = ["-v", "/usr:/usr:ro"]
        srv = b.berth("run", "-d", "--network", NET, "-p", "15201:5201", *vol, IMG, "iperf3", "-s", *SRV_PIN).stdout.strip()
        b.containers.append(srv)
        cli = b.berth("run", "-d", "--network", NET, *vol, IMG, "sleep", "100000").stdout.strip()
        b.containers.append(cli)
        ip = b.berth("inspect", "-f", "{{.NetworkSettings.Networks.%s.IPAddress}}" % NET, srv).stdout.strip()
        log(f"# server container {srv[:12]} at {ip}")
        wait_port([], ip, 5201)
        fast = sh(["nft", "list", "table", "netdev", "berth"], check=False).stdout
        log(f"# berth's short way between the containers (table netdev berth): "
            f"{fast.count('fwd to ether daddr map')} chains")

        # Hand-made: A <-veth-> B.
        a, bb = b.holder(), b.holder()
        sh(["ip", "link", "add", "vA", "type", "veth", "peer", "name", "vB"])
        sh(["ip", "link", "set", "vA", "netns", str(a.pid)])
        sh(["ip", "link", "set", "vB", "netns", str(bb.pid)])
        for p, dev, addr in [(a, "vA", "10.88.0.1/24"), (bb, "vB", "10.88.0.2/24")]:
            b.ns(p, "ip", "addr", "add", addr, "dev", dev)
            b.ns(p, "ip", "link", "set", dev, "up")
        b.spawn(["nsenter", f"--net=/proc/{a.pid}/ns/net", "--", "iperf3", "-s", *SRV_PIN])
        wait_port(["nsenter", f"--net=/proc/{bb.pid}/ns/net", "--"], "10.88.0.1", 5201)

        # Hand-made, berth's topology without berth: C <-veth-> bridge hb0 <-veth-> D (no nftables rules of
        # berth's), so bridge-vs-this is berth's own cost and this-vs-veth the bridge's.
        c, d = b.holder(), b.holder()
        sh(["ip", "link", "add", "hb0", "type", "bridge"])
        sh(["ip", "link", "set", "hb0", "up"])
        for p, host_if, peer, addr in [(c, "hC", "pC", "10.66.0.1/24"), (d, "hD", "pD", "10.66.0.2/24")]:
            sh(["ip", "link", "add", host_if, "master", "hb0", "up", "type", "veth", "peer", "name", peer])
            sh(["ip", "link", "set", peer, "netns", str(p.pid)])
            b.ns(p, "ip", "addr", "add", addr, "dev", peer)
            b.ns(p, "ip", "link", "set", peer, "up")
        b.spawn(["nsenter", f"--net=/proc/{c.pid}/ns/net", "--", "iperf3", "-s", *SRV_PIN])
        wait_port(["nsenter", f"--net=/proc/{d.pid}/ns/net", "--"], "10.66.0.1", 5201)

        # docker-proxy, if it runs.
        proxy_note = None
        if os.access(PROXY, os.X_OK):
            # docker-proxy reports "0\n" (ready) on fd 3 and closes it, as dockerd expects; without an open
            # fd 3 its listener gets fd 3 and is closed by that (accept4: bad file descriptor).
            ready = os.path.join(work, "proxy-ready")
            pp = b.spawn(["sh", "-c", f'exec "$0" "$@" 3>{ready}', PROXY, "-proto", "tcp", "-host-ip",
                          "127.0.0.1", "-host-port", "25201", "-container-ip", ip, "-container-port", "5201"])
            try:
                wait_port([], "127.0.0.1", 25201)
            except RuntimeError:
                proxy_note = f"docker-proxy did not listen (exit {pp.poll()}): " + \
                    open(os.path.join(work, f"spawn{len(b.procs) - 1}.err")).read().strip()
        else:
            proxy_note = f"{PROXY} not installed"
        if proxy_note:
            log("# " + proxy_note)

        # (1) container -> container
        c2c = {"berth network (exec in container)": [], "hand-made veth pair": [],
               "hand-made bridge + 2 veth pairs": []}
        r1 = {k: [] for k in c2c}
        paths = [("berth network (exec in container)", [BERTH, "--root", b.root, "exec", cli, "iperf3", "-c", ip]),
                 ("hand-made veth pair", ["nsenter", f"--net=/proc/{bb.pid}/ns/net", "--", "iperf3", "-c", "10.88.0.1"]),
                 ("hand-made bridge + 2 veth pairs",
                  ["nsenter", f"--net=/proc/{d.pid}/ns/net", "--", "iperf3", "-c", "10.66.0.1"])]
        for r in range(ROUNDS):
            for name, args in paths[r % 3:] + paths[:r % 3]:
                g, rt = iperf(args)
                c2c[name].append(g)
                r1[name].append(rt)
            log(f"# (1) round {r + 1}: " + ", ".join(f"{k} {v[-1]:.2f}" for k, v in c2c.items()))
        samples["c2c"] = c2c

        # (2) host -> container
        h2c = {"published port 127.0.0.1:15201 (berth DNAT)": ["iperf3", "-c", "127.0.0.1", "-p", "15201"],
               f"container IP direct {ip}:5201": ["iperf3", "-c", ip, "-p", "5201"]}
        if not proxy_note:
            h2c["docker-proxy 127.0.0.1:25201"] = ["iperf3", "-c", "127.0.0.1", "-p", "25201"]
        h2c_res = {k: [] for k in h2c}
        r2 = {k: [] for k in h2c}
        names = list(h2c)
        for r in range(ROUNDS):
            order = names[r % len(names):] + names[:r % len(names)]
            for name in order:
                g, rt = iperf(h2c[name])
                h2c_res[name].append(g)
                r2[name].append(rt)
            log(f"# (2) round {r + 1}: " + ", ".join(f"{k.split(' ')[0]} {v[-1]:.2f}" for k, v in h2c_res.items()))
        samples["h2c"] = h2c_res

        # stop the long-running ones before timing starts
        for c in list(b.containers):
            b.berth("rm", "-f", c)
            b.containers.remove(c)
        for p in [p for p in b.procs if p not in b.holders]:   # iperf3 -s servers, docker-proxy
            p.terminate()
            p.wait()

        # (3) start latency
        err = os.path.join(work, "run.err")
        start = {"bridge": [], "none": []}
        for r in range(WARMUP + START_ROUNDS):
            order = ["bridge", "none"] if r % 2 == 0 else ["none", "bridge"]
            for mode in order:
                t0 = time.monotonic()
                with open(err, "w") as ef:
                    rc = subprocess.run([BERTH, "--root", b.root, "run", "--rm", "--network", mode, IMG, "true"],
                                        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=ef).returncode
                dt = (time.monotonic() - t0) * 1000
                if rc != 0:
                    raise RuntimeError(f"run --network {mode}: rc {rc}: {open(err).read()}")
                if r >= WARMUP:
                    start[mode].append(dt)
        samples["start_ms"] = start

        # report
        print(f"### Network: iperf3 -t {SECS}, {ROUNDS} rounds, pinned (client CPU 0, server CPU 1): {PIN}; start latency {START_ROUNDS} rounds "
              f"(+{WARMUP} warm-up); br_netfilter loaded: {br_nf}\n")
        print("(1) container -> container, Gbit/s\n")
        print(table(list(c2c.items()), "Gbit/s"))
        k0, k1, k2 = list(c2c)
        print(f"\nberth / hand-made bridge: **{med(c2c[k0]) / med(c2c[k2]):.3f}** (medians), "
              f"**{med([x / y for x, y in zip(c2c[k0], c2c[k2])]):.3f}** paired; hand-made bridge / veth: "
              f"{med(c2c[k2]) / med(c2c[k1]):.3f}.")
        print(f"\nberth / veth pair: **{med(c2c[k0]) / med(c2c[k1]):.3f}** (medians), "
              f"**{med([x / y for x, y in zip(c2c[k0], c2c[k1])]):.3f}** paired. Retransmits (median): "
              + ", ".join(f"{k} {med(v):.0f}" for k, v in r1.items()))
        # The machine's busy CPU time per GB moved, over the whole test (both CPUs; steal excluded): the
        # path's cost, less sensitive than throughput to what else the host does.
        cpu = {name: CPU_PER_GB[" ".join(args)] for name, args in paths}
        samples["c2c_cpu_ms_per_gb"] = cpu
        print("\nCPU ms per GB (median): " + ", ".join(f"{k} {med(v):.0f}" for k, v in cpu.items())
              + f"; berth / veth pair **{med(cpu[k0]) / med(cpu[k1]):.3f}**, hand-made bridge / veth pair "
              f"{med(cpu[k2]) / med(cpu[k1]):.3f}\n")
        print("(2) host -> container, Gbit/s\n")
        print(table(list(h2c_res.items()), "Gbit/s"))
        ks = list(h2c_res)
        line = f"\npublished / direct: **{med(h2c_res[ks[0]]) / med(h2c_res[ks[1]]):.3f}**"
        if len(ks) > 2:
            line += (f"; published / docker-proxy: **{med(h2c_res[ks[0]]) / med(h2c_res[ks[2]]):.3f}** (medians), "
                     f"**{med([x / y for x, y in zip(h2c_res[ks[0]], h2c_res[ks[2]])]):.3f}** paired")
        else:
            line += f"; docker-proxy not measured: {proxy_note}"
        print(line + ". Retransmits (median): " + ", ".join(f"{k.split(' ')[0]} {med(v):.0f}" for k, v in r2.items()) + "\n")
        print("(3) `berth run --rm --network MODE IMG true`, ms\n")
        print(table([("--network bridge", start["bridge"]), ("--network none", start["none"])], "ms"))
        print(f"\nbridge / none: **{med(start['bridge']) / med(start['none']):.3f}** (medians), "
              f"**{med([x / y for x, y in zip(start['bridge'], start['none'])]):.3f}** paired; "
              f"difference of medians {med(start['bridge']) - med(start['none']):.1f} ms")
        if os.environ.get("JSON_OUT"):
            with open(os.environ["JSON_OUT"], "w") as f:
                json.dump(samples, f, indent=1)
    finally:
        b.cleanup()
        left = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                if work.encode() in open(f"/proc/{pid}/cmdline", "rb").read():
                    left.append(pid)
            except OSError:
                pass
        if left:
            log(f"# WARNING: processes left naming {work}: {left}")
        sh(["rm", "-rf", "--one-file-system", work], check=False)


if __name__ == "__main__":
    main()
