#!/bin/bash
# bench/run.sh — container start latency and memory: berth-runtime vs crun vs runc, side by side in one run.
#
#   bench/run.sh                    # build berth-runtime (release), run scenarios a, b, c; ~2-4 minutes
#   ITER=200 bench/run.sh           # more iterations per runtime and scenario (default 60, + WARMUP=3)
#   SCENARIOS=a,c bench/run.sh      # a subset
#   BERTH=/path/to/berth-runtime bench/run.sh   # skip the build, measure that binary
#   EXTRA_BERTH=berth-noseal        # also measure berth with BERTH_RUNTIME_NO_SEAL=1 (no CVE-2019-5736 re-exec)
#   BERTH_ALT=/path/berth-runtime   # also measure a second berth build ("berth-alt"; with EXTRA_BERTH above
#                                   # also "berth-alt-noseal")
#   JSON_OUT=/tmp/raw.json          # also write every sample
#
# Needs root, runc, crun, busybox-static (apt-get install -y runc crun busybox-static). The whole run happens
# inside ../shared/tools/peer-ns.sh (a private mount namespace hiding the hybrid cgroup2 mount, which crun
# refuses). Scenarios and method: see bench/bench.py. Cleans up containers, cgroups and temp dirs on exit,
# also on failure or interrupt.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
peer_ns="$repo/../shared/tools/peer-ns.sh"

if [[ -z "${BERTH_BENCH_IN_NS:-}" ]]; then
    [[ $(id -u) == 0 ]] || { echo "run.sh: must run as root" >&2; exit 1; }
    for b in runc crun python3; do
        command -v "$b" >/dev/null || { echo "run.sh: $b missing (apt-get install -y runc crun)" >&2; exit 1; }
    done
    [[ -x /bin/busybox ]] && ! ldd /bin/busybox >/dev/null 2>&1 \
        || { echo "run.sh: need static /bin/busybox (apt-get install -y busybox-static)" >&2; exit 1; }
    if [[ -z "${BERTH:-}" ]]; then
        export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$repo/../target-bench}"
        BERTH=$("$repo/scripts/build-release.sh")
    fi
    export BERTH=$(readlink -f "$BERTH")
    # berth as scripts/install.sh installs it: an immutable binary, which needs no CVE-2019-5736 re-exec
    # (crates/runtime/src/exe_protect.rs). The plain build (sealed by re-exec) runs beside it as berth-plain.
    if [[ -z "${BERTH_ALT:-}" && ${BENCH_IMMUTABLE:-1} == 1 ]]; then
        inst=$(mktemp -d /var/tmp/berth-bench-bin.XXXXXX)
        trap 'chattr -i "$inst/berth-runtime" 2>/dev/null; rm -rf "$inst"' EXIT
        cp "$BERTH" "$inst/berth-runtime"
        chattr +i "$inst/berth-runtime"
        export BERTH_ALT="$BERTH" BERTH_ALT_NAME=berth-plain BERTH="$inst/berth-runtime"
    fi
    export SECCOMP_PROFILE="${SECCOMP_PROFILE:-$repo/crates/seccomp/profiles/docker-default.json}"
    echo "# $(date -u +%FT%TZ) $(uname -srm), $(nproc) CPUs; $(runc --version | head -1); $(crun --version | head -1)" >&2
    env BERTH_BENCH_IN_NS=1 "$peer_ns" "$0" "$@"
    exit $?
fi

# Inside the private mount namespace. bench.py removes its containers, cgroups and temp dir in a finally block,
# which also runs on Ctrl-C (KeyboardInterrupt), SIGTERM and SIGHUP.
#
# peer-ns.sh hides the hybrid cgroup2 mount under an empty tmpfs, but /proc/self/mountinfo still lists the
# shadowed cgroup2 mount, and berth-runtime (crates/cgroups/src/mode.rs takes the mountinfo entry at face
# value) then writes its "cgroup" into that tmpfs and fails on rmdir ("Directory not empty"). So: unmount both
# layers in this private namespace (propagation private: the host keeps its mounts) and put a fresh private
# tmpfs there (NOT the bare directory: it belongs to the host's /sys/fs/cgroup tmpfs, and crun still writes
# <path>/cgroup.procs below /sys/fs/cgroup/unified; those writes must die with this namespace).
while mountpoint -q /sys/fs/cgroup/unified; do umount -l /sys/fs/cgroup/unified; done
mount -t tmpfs -o size=1m,mode=755 berth-bench-unified /sys/fs/cgroup/unified
exec python3 "$here/bench.py"
