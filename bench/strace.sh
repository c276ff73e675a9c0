#!/bin/bash
# bench/strace.sh [OUTDIR] — syscall counts and timelines of one `run /bin/true` per runtime (scenarios a and
# c), same bundle/cgroup set-up as bench/run.sh. Writes OUTDIR/{a,c}-RUNTIME-{summary,timeline}.txt
# (default OUTDIR: bench/strace-out) and prints the summaries' totals.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=$(readlink -f "${1:-$here/strace-out}")
mkdir -p "$out"
STRACE_DIR="$out" "$here/run.sh"
for f in "$out"/*-summary.txt; do
    printf '%-28s %s\n' "$(basename "$f" -summary.txt)" "$(grep -E '^100.00|total' "$f" | tail -1)"
done
