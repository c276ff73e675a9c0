#!/bin/bash
# bench/registry.sh — registry server push/pull: berth's registry (berth registry serve) vs docker-registry.
#
#   bench/registry.sh               # build berth (release), 1 warm-up + 5 rounds; ~5-10 minutes
#   ROUNDS=3 bench/registry.sh      # fewer rounds (WARMUP=1 by default)
#   BERTH=/path/to/berth bench/registry.sh     # skip the build, measure that binary
#   PULLS=8                                    # clients in the concurrent pull case (default 8)
#   SERVERS=berth,docker-registry              # a subset or another order
#   IMAGE_CACHE=/var/tmp/berth-bench-image     # the test image of bench/pull.py, built there once and reused
#   JSON_OUT=/tmp/registry.json                # also write every sample
#   FS=host bench/registry.sh                  # storage and clients on /var/tmp itself, not a fresh loop ext4
#
# Needs root, docker-registry, skopeo and GNU time (apt-get install -y docker-registry skopeo time).
# Per round each server is started fresh on empty storage; skopeo pushes the test image to it, pulls it back,
# then 8 skopeo pulls run at once; the server's idle and peak RSS come from /proc. The whole run happens inside
# ../shared/tools/peer-ns.sh (a private mount namespace) with the storage and the clients' output on a fresh
# ext4 loop-mounted there. Method: see bench/registry.py (and bench/pull.py, whose helpers it uses). Servers
# (stopped by pid), mounts and temp dirs are cleaned up on exit, also on failure or interrupt.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
peer_ns="$repo/../shared/tools/peer-ns.sh"

[[ $(id -u) == 0 ]] || { echo "registry.sh: must run as root" >&2; exit 1; }
for b in docker-registry skopeo python3 gzip tar findmnt mkfs.ext4 losetup /usr/bin/time; do
    command -v "$b" >/dev/null || { echo "registry.sh: $b missing (apt-get install -y docker-registry skopeo time)" >&2; exit 1; }
done
if [[ -z "${BERTH:-}" ]]; then
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$repo/../target-bench}"
    (cd "$repo" && cargo build --release --quiet -p berth >&2)
    BERTH="$CARGO_TARGET_DIR/release/berth"
fi
export BERTH=$(readlink -f "$BERTH")
echo "# $(date -u +%FT%TZ) $(uname -srm), $(nproc) CPUs; $(skopeo --version); docker-registry $(dpkg-query -W -f '${Version}' docker-registry 2>/dev/null || echo '?')" >&2
exec "$peer_ns" python3 "$here/registry.py"
