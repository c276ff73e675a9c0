#!/bin/bash
# bench/shim.sh — berth-runtime as the OCI runtime under containerd and dockerd, against crun and runc, side by
# side in one run:
#   (a) ctr run --rm --runc-binary R IMAGE ID true        R = berth-runtime, crun, runc (containerd 1.6's
#                                                         io.containerd.runc.v2 shim runs R)
#   (b) docker run --rm --runtime NAME IMAGE true         NAME = berth (--add-runtime berth=PATH), crun
#                                                         (--add-runtime crun=/usr/bin/crun), runc (docker's own)
#
#   bench/shim.sh                          # build berth-runtime (release), 3 warm-up + 20 rounds; ~1 minute
#   ROUNDS=50 WARMUP=5 bench/shim.sh       # more rounds
#   BERTH_RUNTIME=/path/berth-runtime bench/shim.sh   # skip the build, measure that binary
#   PARTS=a bench/shim.sh                  # only ctr (a) or only docker (b); default a,b
#   JSON_OUT=/tmp/shim.json                # also write every sample
#
# Method: a private containerd (its own config, root, state, sockets and opt dir under a temp dir in
# /var/tmp, CRI plugin disabled) in a private mount namespace with a tmpfs on /run (containerd 1.6's v2 shim
# always puts its sockets and the runtime's state under /run/containerd), and a private dockerd in the same
# mount namespace using that containerd. One busybox-static image (scripts/busybox-image.py, docker-archive)
# imported into both. Every container's cgroup is an absolute path below this process's own cgroup (created
# by the bench in every v1 hierarchy, removed after). WARMUP rounds, then ROUNDS rounds; every round runs
# each runtime of each part once, the runtimes' order rotating and the parts' order alternating from round
# to round. Wall clock (CLOCK_MONOTONIC) from spawn to wait4 of the CLI; before every run the bench waits
# until no shim/runtime process of the previous run is left. Medians, berth / crun and berth / runc ratios
# (of the medians and paired = median of the per-round ratios). Details: bench/shim.py.
#
# Needs root, containerd, docker.io, runc, crun, busybox-static (installed with apt-get if missing), cargo
# unless BERTH_RUNTIME is given. The whole run happens inside ../shared/tools/peer-ns.sh (a private mount
# namespace hiding the hybrid cgroup2 mount, which crun refuses). Containers, daemons (stopped by pid), shims
# (by pid), cgroups and the temp dir are cleaned up on exit, also on failure or
# interrupt (a leftover shim is the containerd-shim-runc-v2 whose -address is this run's private socket);
# the mounts die with the daemons' mount namespace.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
peer_ns="$repo/../shared/tools/peer-ns.sh"

[[ $(id -u) == 0 ]] || { echo "shim.sh: must run as root" >&2; exit 1; }
missing=()
for pair in containerd:containerd ctr:containerd containerd-shim-runc-v2:containerd dockerd:docker.io \
            runc:runc crun:crun python3:python3 unshare:util-linux nsenter:util-linux; do
    command -v "${pair%%:*}" >/dev/null || missing+=("${pair#*:}")
done
[[ -x /usr/bin/docker ]] || missing+=(docker.io)  # Debian's CLI; /usr/local/bin/docker may be another client
{ [[ -x /bin/busybox ]] && ! ldd /bin/busybox >/dev/null 2>&1; } || missing+=(busybox-static)
if ((${#missing[@]})); then
    mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
    echo "shim.sh: installing ${missing[*]}" >&2
    apt-get install -y -q "${missing[@]}" >&2 || { apt-get update -q >&2 && apt-get install -y -q "${missing[@]}" >&2; }
fi
if [[ -z "${BERTH_RUNTIME:-}" ]]; then
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$repo/target}"
    (cd "$repo" && cargo build --release --quiet -p berth-cli >&2)
    BERTH_RUNTIME="$CARGO_TARGET_DIR/release/berth-runtime"
fi
export BERTH_RUNTIME=$(readlink -f "$BERTH_RUNTIME")
[[ -x "$BERTH_RUNTIME" ]] || { echo "shim.sh: $BERTH_RUNTIME is not executable" >&2; exit 1; }
echo "# $(date -u +%FT%TZ) $(uname -srm), $(nproc) CPUs; containerd $(containerd --version | awk '{print $3}');" \
     "docker.io $(dpkg-query -W -f '${Version}' docker.io 2>/dev/null || echo '?');" \
     "runc $(runc --version | awk 'NR==1{print $3}'); $(crun --version | head -1);" \
     "busybox $(dpkg-query -W -f '${Version}' busybox-static 2>/dev/null || echo '?');" \
     "berth-runtime $BERTH_RUNTIME" >&2
exec "$peer_ns" python3 "$here/shim.py"
