#!/usr/bin/env bash
# The main job, for now: build berth-runtime, make a busybox bundle, run a container from it, show its output.
# (Later issues grow this into build -> ship -> run.)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh busybox-static
bin=$(scripts/build-release.sh)
work=$(mktemp -d /tmp/berth-demo.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/bundle/rootfs/bin"
cp /bin/busybox "$work/bundle/rootfs/bin/"
for a in $(/bin/busybox --list); do [[ $a == busybox ]] || ln -s busybox "$work/bundle/rootfs/bin/$a"; done
cd "$work/bundle"
"$bin" spec
# No terminal here; run a small script instead of an interactive shell.
python3 - <<'PY'
import json
c = json.load(open("config.json"))
c["process"]["terminal"] = False
c["process"]["args"] = ["sh", "-c", "echo \"hello from $(hostname), pid $$, uid $(id -u)\"; ls /; grep CapEff /proc/self/status"]
json.dump(c, open("config.json", "w"), indent=1)
PY
echo "+ berth-runtime run demo-$$"
"$bin" --root "$work/state" run "demo-$$"
