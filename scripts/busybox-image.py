#!/usr/bin/env python3
"""Writes a docker-archive (what `docker save` writes) of a one-layer busybox image: the host's static busybox
with a symlink per applet, /etc/passwd and /etc/group, Cmd ["sh"]. Usage: busybox-image.py OUT.tar NAME:TAG
(Until `berth build` exists, this is how the demo and benches make an image without a registry to pull from.)"""
import hashlib
import io
import json
import subprocess
import sys
import tarfile

out, name = sys.argv[1], sys.argv[2]
busybox = "/bin/busybox"
applets = subprocess.run([busybox, "--list"], capture_output=True, text=True, check=True).stdout.split()

layer = io.BytesIO()
with tarfile.open(fileobj=layer, mode="w", format=tarfile.PAX_FORMAT) as t:
    def add(ti, data=None):
        ti.mtime = 0
        t.addfile(ti, io.BytesIO(data) if data is not None else None)
    for d, mode in [("bin", 0o755), ("etc", 0o755), ("tmp", 0o1777), ("root", 0o700), ("proc", 0o555),
                    ("sys", 0o555), ("dev", 0o755), ("home", 0o755)]:
        ti = tarfile.TarInfo(d)
        ti.type, ti.mode = tarfile.DIRTYPE, mode
        add(ti)
    data = open(busybox, "rb").read()
    ti = tarfile.TarInfo("bin/busybox")
    ti.size, ti.mode = len(data), 0o755
    add(ti, data)
    for a in applets:
        if a != "busybox":
            ti = tarfile.TarInfo("bin/" + a)
            ti.type, ti.linkname = tarfile.SYMTYPE, "busybox"
            add(ti)
    for path, text in [("etc/passwd", "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n"),
                       ("etc/group", "root:x:0:\nnogroup:x:65534:\n")]:
        b = text.encode()
        ti = tarfile.TarInfo(path)
        ti.size, ti.mode = len(b), 0o644
        add(ti, b)
layer = layer.getvalue()
diff_id = hashlib.sha256(layer).hexdigest()
config = json.dumps({
    "architecture": "amd64", "os": "linux",
    "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"], "Cmd": ["sh"]},
    "rootfs": {"type": "layers", "diff_ids": ["sha256:" + diff_id]},
    "history": [{"created_by": "scripts/busybox-image.py"}],
}).encode()
config_id = hashlib.sha256(config).hexdigest()
with tarfile.open(out, "w") as t:
    for path, data in [(diff_id + "/layer.tar", layer), (config_id + ".json", config),
                       ("manifest.json", json.dumps([{"Config": config_id + ".json", "RepoTags": [name],
                                                      "Layers": [diff_id + "/layer.tar"]}]).encode())]:
        ti = tarfile.TarInfo(path)
        ti.size = len(data)
        t.addfile(ti, io.BytesIO(data))
