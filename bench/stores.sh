#!/usr/bin/env bash
# Compare the two stores on one machine in one stretch: run bench/run.sh on SQLite and on
# PostgreSQL in turn, RUNS times (default 3), interleaved S P S P..., and print one line per
# run. Each PostgreSQL run gets a new empty database, dropped afterwards. The server is pinned
# to core 0 as always; PostgreSQL runs unpinned, beside the load generator on core 1.
#
#   . .venv/bin/activate
#   bash bench/stores.sh --workload commands --orders 5000 --concurrency 32
#   PG=postgresql://postgres@db.example/ RUNS=5 bash bench/stores.sh --workload flow
#
# PG is the server's URL without a database name (default: postgres on 127.0.0.1, trust
# auth); createdb and dropdb must reach it. Other arguments and variables go to run.sh.
set -euo pipefail

bench_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
runs=${RUNS:-3}
pg=${PG:-postgresql://postgres@127.0.0.1/}
pg=${pg%/}

summary() { # the figures of one run.sh, on one line
    grep -E '^(orders/s|requests/s|commands/s|command ms|confirm->done|errors|server CPU)' \
        | tr -s ' ' | tr '\n' ' ' || true
}

for run in $(seq 1 "$runs"); do
    line=$(bash "$bench_dir/run.sh" "$@" 2>&1 | summary)
    echo "run $run  sqlite:     ${line:-failed (run bench/run.sh alone to see why)}"
    database="bench_$(date +%s)_$$"
    createdb --maintenance-db="$pg/postgres" "$database"
    line=$(STORE="$pg/$database" bash "$bench_dir/run.sh" "$@" 2>&1 | summary)
    dropdb --maintenance-db="$pg/postgres" "$database"
    echo "run $run  postgresql: ${line:-failed (run bench/run.sh alone to see why)}"
done
