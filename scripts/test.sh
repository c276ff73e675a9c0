#!/usr/bin/env bash
# The whole test suite, as root: unit tests, then integration tests that run real containers.
# Set BERTH_TEST_VM=1 to also run the cgroup v2 tests in the QEMU guest (scripts/test-cgroup-v2.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ $(id -u) != 0 ]]; then
    echo "the tests run real containers: run them as root" >&2
    exit 1
fi
scripts/deps.sh busybox-static procps docker-registry skopeo umoci curl openssl tini iproute2 util-linux \
    containerd docker.io protobuf-compiler nftables python3
cargo build --workspace --all-targets --quiet
cargo test --workspace --no-fail-fast 2>&1
if [[ ${BERTH_TEST_VM:-0} == 1 ]]; then
    scripts/test-cgroup-v2.sh
fi
