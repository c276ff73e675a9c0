#!/usr/bin/env bash
# Installs berth-runtime (static) to ${PREFIX:-/usr/local}/bin and marks it immutable: with the flag set, a
# container cannot overwrite the binary through /proc/PID/exe (CVE-2019-5736) even as root, so berth-runtime
# skips its per-call read-only re-exec (see crates/runtime/src/exe_protect.rs). Re-running replaces it.
set -euo pipefail
cd "$(dirname "$0")/.."
src=$(scripts/build-release.sh)
dst=${PREFIX:-/usr/local}/bin/berth-runtime
mkdir -p "$(dirname "$dst")"
[[ -e $dst ]] && chattr -i "$dst" 2>/dev/null || true
install -m 0755 "$src" "$dst.new"
mv -f "$dst.new" "$dst"
chattr +i "$dst" || echo "warning: $dst could not be made immutable; berth-runtime will re-exec to protect itself" >&2
echo "$dst"
