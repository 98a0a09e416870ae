#!/usr/bin/env bash
# Compare two revisions on a machine whose speed drifts: run bench/run.sh against each in
# turn, RUNS times (default 3), interleaved A B A B..., and print one line per run. A
# virtual machine's speed can drift by a third within an hour, so two figures measured at
# different times say little; runs side by side do.
#
#   . .venv/bin/activate
#   bash bench/ab.sh HEAD~1 HEAD --workload commands --orders 5000 --concurrency 32
#   RUNS=5 PORT=9000 bash bench/ab.sh main WORKTREE --workload flow --orders 2000
#
# A revision is anything git can name, or WORKTREE for the files as they are now. Each
# revision's orchestrator/, services/ and statecharts/ are copied to a temporary directory
# put first on PYTHONPATH, so the installed `orchestrator` command runs that revision's code
# (with this environment's dependencies); the load generator is always this tree's. Other
# arguments and variables (PORT, BROKER) go to run.sh.
set -euo pipefail

if [[ $# -lt 2 ]]; then
    echo "usage: bash bench/ab.sh REVISION_A REVISION_B [loadgen arguments...]" >&2
    exit 2
fi
bench_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$bench_dir/.." && pwd)
revisions=("$1" "$2")
shift 2
runs=${RUNS:-3}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

export_revision() { # $1 revision, $2 target directory
    mkdir -p "$2"
    if [[ $1 == WORKTREE ]]; then
        cp -r "$root/orchestrator" "$root/services" "$root/statecharts" "$2/"
    else
        git -C "$root" archive "$1" orchestrator services statecharts | tar -x -C "$2"
    fi
}

for n in 0 1; do
    export_revision "${revisions[$n]}" "$tmp/$n"
done
for run in $(seq 1 "$runs"); do
    for n in 0 1; do
        summary=$(PYTHONPATH="$tmp/$n" bash "$bench_dir/run.sh" "$@" 2>&1 \
            | grep -E '^(orders/s|requests/s|commands/s|command ms|confirm->done|errors|server CPU)' \
            | tr -s ' ' | tr '\n' ' ') || true
        echo "run $run  ${revisions[$n]}: ${summary:-failed (run bench/run.sh alone to see why)}"
    done
done
