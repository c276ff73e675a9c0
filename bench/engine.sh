#!/bin/bash
# bench/engine.sh — the whole engine: `berth run --rm IMAGE true` vs `podman run --rm IMAGE true` (crun), and the
# memory each engine keeps per running container (berth's container-monitor vs conmon), side by side in one run.
#
#   bench/engine.sh                 # build berth + berth-runtime (release), 3 warm-up + 20 rounds; ~1-2 minutes
#   ROUNDS=50 bench/engine.sh       # more rounds (WARMUP=3 by default)
#   BERTH=/path/to/berth bench/engine.sh       # skip the build, measure that binary (berth-runtime beside it)
#   MEM_CONTAINERS=3                           # detached containers per engine for the memory part (default 3)
#   PHASES=1 bench/engine.sh                   # also time the OCI runtime calls of each engine (a logging
#                                              # wrapper around berth-runtime / crun, bench/runtime-log.c, built
#                                              # with gcc; PHASE_ROUNDS=10 extra rounds, not in the medians)
#   TRACE_DIR=/tmp/tr bench/engine.sh          # also 3 runs per engine under strace -f --seccomp-bpf (execve,
#                                              # fsync, fdatasync, umount2, mount): timelines there + a summary
#   FS=host bench/engine.sh                    # stores on /var/tmp itself, not on a fresh journaled ext4 loop
#                                              # mount (FS_SIZE=2G; why: see setup_fs() in bench/engine.py)
#   PODMAN_RUN=disk                            # podman's --runroot/--tmpdir on the stores' fs, not on a tmpfs
#   JSON_OUT=/tmp/engine.json                  # also write every sample
#
# Needs root, podman, crun, conmon, busybox-static (installed with apt-get if missing); gcc for PHASES=1,
# strace for TRACE_DIR. The whole run
# happens inside ../shared/tools/peer-ns.sh (a private mount namespace hiding the hybrid cgroup2 mount, which
# crun refuses). Method: see bench/engine.py. Containers (removed by id, leftover processes stopped by pid),
# cgroups, mounts and temp dirs are cleaned up on exit, also on failure or interrupt.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
peer_ns="$repo/../shared/tools/peer-ns.sh"

[[ $(id -u) == 0 ]] || { echo "engine.sh: must run as root" >&2; exit 1; }
missing=()
for pair in podman:podman crun:crun conmon:conmon python3:python3 findmnt:util-linux mkfs.ext4:e2fsprogs; do
    command -v "${pair%%:*}" >/dev/null || missing+=("${pair#*:}")
done
{ [[ -x /usr/bin/busybox ]] && ! ldd /usr/bin/busybox >/dev/null 2>&1; } || missing+=(busybox-static)
if ((${#missing[@]})); then
    echo "engine.sh: installing ${missing[*]}" >&2
    apt-get install -y -q "${missing[@]}" >&2 || { apt-get update -q >&2 && apt-get install -y -q "${missing[@]}" >&2; }
fi
if [[ -z "${BERTH:-}" ]]; then
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$repo/target}"
    (cd "$repo" && cargo build --release --quiet -p berth -p berth-cli >&2)
    BERTH="$CARGO_TARGET_DIR/release/berth"
fi
export BERTH=$(readlink -f "$BERTH")
[[ -x "$(dirname "$BERTH")/berth-runtime" ]] || { echo "engine.sh: no berth-runtime next to $BERTH" >&2; exit 1; }
echo "# $(date -u +%FT%TZ) $(uname -srm), $(nproc) CPUs; $(podman --version); $(crun --version | head -1); conmon $(conmon --version | awk 'NR==1{print $3}'); busybox $(dpkg-query -W -f '${Version}' busybox-static 2>/dev/null || echo '?')" >&2
exec "$peer_ns" python3 "$here/engine.py"
