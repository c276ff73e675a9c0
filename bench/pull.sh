#!/bin/bash
# bench/pull.sh — image pull from a local registry: berth vs skopeo+umoci vs podman, with tar -x baselines.
#
#   bench/pull.sh                   # build berth (release), 1 warm-up + 5 interleaved rounds; ~5-10 minutes
#   ROUNDS=3 bench/pull.sh          # fewer rounds (WARMUP=1 by default)
#   BERTH=/path/to/berth bench/pull.sh         # skip the build, measure that binary
#   TOOLS=berth,tar-x bench/pull.sh            # a subset of berth,skopeo+umoci,podman,tar-x,gzip+tar-x,berth-tar
#   IMAGE_CACHE=/var/tmp/berth-bench-image     # where the test image is built once and reused (default)
#   JSON_OUT=/tmp/pull.json                    # also write every sample
#   PODMAN_OPTS="--log-level=debug"            # extra global options for podman
#   FS=host bench/pull.sh                      # jobs write to /var/tmp itself, not to a fresh loop-mounted ext4
#                                              # (FS=loop, FS_SIZE=12G sparse; why: see bench/pull.py)
#
# Needs root, docker-registry, skopeo, umoci, podman and GNU time
# (apt-get install -y docker-registry skopeo umoci podman time).
# The first run builds the test image (4 gzip layers of this machine's /usr, ~450 MB uncompressed) into
# IMAGE_CACHE; later runs reuse it. Every run starts its own docker-registry on a free 127.0.0.1 port with
# storage in a temp dir, pushes the image there and times each tool pulling it into an empty store. The whole
# run happens inside ../shared/tools/peer-ns.sh (a private mount namespace), like bench/run.sh, so the peers
# see the same host as there; the jobs write to a fresh ext4 loop-mounted in that namespace. Method and the
# reasons for it: see bench/pull.py. Registry (stopped by pid), mounts and temp dirs are
# cleaned up on exit, also on failure or interrupt.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
peer_ns="$repo/../shared/tools/peer-ns.sh"

[[ $(id -u) == 0 ]] || { echo "pull.sh: must run as root" >&2; exit 1; }
for b in docker-registry skopeo umoci podman python3 gzip tar findmnt mkfs.ext4 losetup /usr/bin/time; do
    command -v "$b" >/dev/null || { echo "pull.sh: $b missing (apt-get install -y docker-registry skopeo umoci podman time)" >&2; exit 1; }
done
if [[ -z "${BERTH:-}" ]]; then
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$repo/../target-bench}"
    (cd "$repo" && cargo build --release --quiet -p berth >&2)
    BERTH="$CARGO_TARGET_DIR/release/berth"
fi
export BERTH=$(readlink -f "$BERTH")
echo "# $(date -u +%FT%TZ) $(uname -srm), $(nproc) CPUs; $(skopeo --version); umoci $(umoci --version | awk '{print $3}'); $(podman --version); $(tar --version | head -1); gzip $(gzip --version | awk 'NR==1{print $2}')" >&2
exec "$peer_ns" python3 "$here/pull.py"
