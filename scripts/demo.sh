#!/usr/bin/env bash
# The main job: build berth, build an image from examples/hello/Dockerfile, ship it through berth's own
# registry (push, remove, pull back) and run containers from it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh busybox-static
cargo build --release --quiet -p berth -p berth-cli
bin="${CARGO_TARGET_DIR:-$PWD/target}/release"
work=$(mktemp -d /tmp/berth-demo.XXXXXX)
root="$work/store"
registry_pid=
cleanup() {
    set +e
    ids=$("$bin/berth" --root "$root" ps -aq 2>/dev/null)
    [[ -n $ids ]] && "$bin/berth" --root "$root" rm -f -v $ids >/dev/null
    [[ -n $registry_pid ]] && kill "$registry_pid" && wait "$registry_pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT
berth() { echo "+ berth $*" >&2; "$bin/berth" --root "$root" "$@"; }

# Build: examples/hello/Dockerfile, FROM scratch with the host's static busybox copied into the context.
cp -r examples/hello "$work/context"
cp /bin/busybox "$work/context/busybox"
berth build -t hello:1 --build-arg GREETING=hello "$work/context"
berth images

# Ship: through `berth registry serve` on a free port of 127.0.0.1.
"$bin/berth" registry serve --addr 127.0.0.1:0 --root "$work/registry" >"$work/registry.out" 2>&1 &
registry_pid=$!
for _ in $(seq 100); do grep -q listening "$work/registry.out" 2>/dev/null && break; sleep 0.05; done
addr=$(sed -n 's|.*listening on http://||p' "$work/registry.out" | head -1)
[[ -n $addr ]] || { cat "$work/registry.out" >&2; exit 1; }
berth tag hello:1 "$addr/demo/hello:1"
berth push "$addr/demo/hello:1"
berth rmi hello:1 "$addr/demo/hello:1"
berth pull "$addr/demo/hello:1"

# Run: in the foreground, then detached with logs, stop and rm. --network none: the default bridge network
# would add a bridge (berth0) and nftables rules to this machine, which a demo should not leave behind.
berth run --rm --network none --hostname demo "$addr/demo/hello:1"
id=$(berth run -d --network none --name ticker --memory 64m "$addr/demo/hello:1" sh -c 'for i in 1 2 3; do echo tick $i; sleep 0.3; done; sleep 300')
sleep 1.2
berth ps
berth logs ticker
berth stop -t 1 ticker
berth ps -a
berth rm ticker
echo "container $id ran, stopped and is gone"
