#!/bin/bash
# bench/network.sh — networking: TCP throughput (iperf3) container -> container on a berth network vs. two
# namespaces joined by one hand-made veth pair (and vs. a hand-made bridge with two veth pairs); host -> container through a published port (berth's nftables
# DNAT) vs. the container IP directly vs. docker's userland proxy (docker-proxy); and `berth run --rm IMAGE
# true` start time with --network bridge vs. --network none. Side by side in one run, medians and ratios.
#
#   bench/network.sh                      # build berth + berth-runtime (release), then measure; ~2-3 minutes
#   ROUNDS=9 bench/network.sh             # iperf3 rounds per path (default 5; each iperf3 run lasts SECS=3 s)
#   PIN=0 bench/network.sh                # iperf3 unpinned (default: client on CPU 0, server on CPU 1)
#   START_ROUNDS=40 bench/network.sh      # run-latency rounds (default 20, WARMUP=3 before them)
#   BERTH=/path/to/berth bench/network.sh # skip the build, measure that binary (berth-runtime beside it)
#   JSON_OUT=/tmp/network.json            # also write every sample
#   SECS=3                                # seconds per iperf3 run
#
# Needs root, iperf3 (installed with apt-get if missing), busybox (static), nft, ip; docker-proxy
# (/usr/sbin/docker-proxy from Debian's docker.io) is optional. Nothing touches the machine's own network
# namespace: this script starts a holder `unshare --net sleep infinity` as its direct child, checks that its
# namespace differs from ours, and runs bench/network.py inside it (nsenter --net); berth's bridges, veths,
# nftables rules, the hand-made veths and docker-proxy all live there and die with it. The holder is ended by
# pid on exit (also on failure or interrupt); afterwards the host's links and nftables ruleset are printed
# for checking. Method: see bench/network.py.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")

[[ $(id -u) == 0 ]] || { echo "network.sh: must run as root" >&2; exit 1; }
missing=()
for pair in iperf3:iperf3 python3:python3 nft:nftables ip:iproute2 unshare:util-linux nsenter:util-linux; do
    command -v "${pair%%:*}" >/dev/null || missing+=("${pair#*:}")
done
if ((${#missing[@]})); then
    echo "network.sh: installing ${missing[*]}" >&2
    apt-get install -y -q "${missing[@]}" >&2 || { apt-get update -q >&2 && apt-get install -y -q "${missing[@]}" >&2; }
fi
if [[ -z "${BERTH:-}" ]]; then
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$repo/target}"
    (cd "$repo" && cargo build --release --quiet -p berth -p berth-cli >&2)
    BERTH="$CARGO_TARGET_DIR/release/berth"
fi
export BERTH=$(readlink -f "$BERTH")
[[ -x "$(dirname "$BERTH")/berth-runtime" ]] || { echo "network.sh: no berth-runtime next to $BERTH" >&2; exit 1; }

# The holder: a direct child of this shell (a simple command with &, so $! is unshare itself, which execs
# sleep in the new namespace).
unshare --net sleep infinity </dev/null &
holder=$!
cleanup() {
    kill "$holder" 2>/dev/null || true
    wait "$holder" 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM
host_ns=$(readlink /proc/self/ns/net)
for _ in $(seq 200); do
    ns=$(readlink "/proc/$holder/ns/net" 2>/dev/null || true)
    [[ -n "$ns" && "$ns" != "$host_ns" ]] && break
    sleep 0.01
done
[[ -n "$ns" && "$ns" != "$host_ns" ]] || { echo "network.sh: holder $holder did not unshare" >&2; exit 1; }
nsenter --net="/proc/$holder/ns/net" -- ip link set lo up
echo "# $(date -u +%FT%TZ) $(uname -srm), $(nproc) CPUs; $(iperf3 --version | head -1);" \
     "docker.io $(dpkg-query -W -f '${Version}' docker.io 2>/dev/null || echo 'not installed'); netns $ns" >&2
rc=0
HOST_NETNS="$host_ns" nsenter --net="/proc/$holder/ns/net" -- python3 "$here/network.py" || rc=$?
cleanup
trap - EXIT
echo "# host namespace afterwards: links: $(ip -o link | awk -F': ' '{printf "%s ", $2}')| nft rules: $(nft list ruleset | wc -l) lines" >&2
exit $rc
