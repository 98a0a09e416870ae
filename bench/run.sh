#!/usr/bin/env bash
# Benchmark one fresh server: start `orchestrator serve` on an empty temporary database pinned to
# CPU core 0, wait for GET /readyz, run bench/loadgen.py pinned to core 1 against it, stop the
# server with SIGTERM. All arguments go to loadgen.py; the exit code is loadgen's.
#
#   . .venv/bin/activate
#   bash bench/run.sh --workload commands --orders 5000 --concurrency 32
#   PORT=9000 bash bench/run.sh --workload flow --json
#   BROKER=amqp://guest:guest@127.0.0.1:5672/ bash bench/run.sh --workload flow
#   STORE=postgresql://postgres@127.0.0.1/bench bash bench/run.sh --workload commands
#
# With BROKER set to an amqp:// URL, the kitchen and delivery run as their own processes
# (`python -m services.kitchen ...`), unpinned, beside RabbitMQ. Their queues are deleted
# first, so run it against a RabbitMQ that nothing else is using.
# With STORE set to a postgresql:// URL, the orders go to that database (--store) instead of
# the temporary SQLite file; give it an empty database, unpinned beside the load generator.
# With --workload ceiling, the server is bench/ceiling.py's hello-world app on uvicorn instead
# (same pinning, same uvicorn defaults): the machine's ceiling, to measure beside the others.
# Uses the `orchestrator` and `python` found on PATH.
set -euo pipefail

port=${PORT:-8765}
url="http://127.0.0.1:${port}"
bench_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
tmp=$(mktemp -d)
server_pid=""
loadgen_pid=""
service_pids=()
broker=${BROKER:-memory}
store_args=()
[[ -n ${STORE:-} ]] && store_args=(--store "$STORE")
workload=commands # loadgen.py's default
previous=""
for arg in "$@"; do
    [[ $previous == --workload ]] && workload=$arg
    [[ $arg == --workload=* ]] && workload=${arg#--workload=}
    previous=$arg
done

http_ok() { # true when GET $1 answers 200
    python - "$1" <<'EOF'
import sys, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=1) as resp:
        sys.exit(0 if resp.status == 200 else 1)
except Exception:
    sys.exit(1)
EOF
}

stop_server() {
    [[ -n $server_pid ]] || return 0
    if kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM "$server_pid" 2>/dev/null || true
        for _ in $(seq 1 100); do # up to 10 s for a graceful shutdown
            kill -0 "$server_pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$server_pid" 2>/dev/null; then
            echo "run.sh: server did not stop within 10 s of SIGTERM; killing it" >&2
            kill -KILL "$server_pid" 2>/dev/null || true
        fi
    fi
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
}

show_server_log() {
    [[ -s $tmp/server.log ]] || return 0
    echo "run.sh: last lines of the server log:" >&2
    tail -n 40 "$tmp/server.log" >&2
}

cleanup() {
    if [[ -n $loadgen_pid ]]; then # interrupted while the load generator runs
        kill -TERM "$loadgen_pid" 2>/dev/null || true
        wait "$loadgen_pid" 2>/dev/null || true
    fi
    stop_server
    for pid in "${service_pids[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if http_ok "$url/readyz"; then
    echo "run.sh: something already answers on $url; set PORT to a free port" >&2
    exit 1
fi

if [[ $broker == amqp* ]]; then
    python - "$broker" <<'PURGE'
import asyncio, sys, aio_pika
async def purge(url):
    async with await aio_pika.connect(url) as connection:
        channel = await connection.channel()
        for name in ("kitchen", "delivery", "orchestrator", "orchestrator.undeliverable"):
            await channel.queue_delete(name)
asyncio.run(purge(sys.argv[1]))
PURGE
    for service in kitchen delivery; do
        python -m "services.$service" --broker "$broker" --ledger "$tmp/bench.$service.db" \
            --log-level warning >"$tmp/$service.log" 2>&1 &
        service_pids+=($!)
    done
fi

# The interpreter's build matters as much as most code changes (see bench/README.md), so
# every run says which one the server runs on: the `python` beside the `orchestrator` script
# (in its virtual environment), else the one on PATH.
server_python="$(dirname "$(command -v orchestrator)")/python"
[[ -x $server_python ]] || server_python=python
echo "server python  $("$server_python" -c 'import sys; print(" ".join(sys.version.split()))')"

if [[ $workload == ceiling ]]; then
    taskset -c 0 "$server_python" -m uvicorn --app-dir "$bench_dir" ceiling:app \
        --host 127.0.0.1 --port "$port" --no-access-log --log-level warning \
        >"$tmp/server.log" 2>&1 &
else
    taskset -c 0 orchestrator serve --db "$tmp/bench.db" --host 127.0.0.1 --port "$port" \
        --broker "$broker" ${store_args[@]+"${store_args[@]}"} >"$tmp/server.log" 2>&1 &
fi
server_pid=$!

ready=""
for _ in $(seq 1 300); do # poll up to 30 s
    if ! kill -0 "$server_pid" 2>/dev/null; then
        echo "run.sh: server exited during startup" >&2
        show_server_log
        exit 1
    fi
    if http_ok "$url/readyz"; then
        ready=1
        break
    fi
    sleep 0.1
done
if [[ -z $ready ]]; then
    echo "run.sh: $url/readyz did not answer 200 within 30 s" >&2
    show_server_log
    exit 1
fi

# In the background so that a SIGINT/SIGTERM to this script is handled at once (by the traps).
taskset -c 1 python "$bench_dir/loadgen.py" --url "$url" --server-pid "$server_pid" "$@" &
loadgen_pid=$!
rc=0
wait "$loadgen_pid" || rc=$?
loadgen_pid=""

if ! kill -0 "$server_pid" 2>/dev/null; then
    echo "run.sh: the server died during the run" >&2
    show_server_log
    [[ $rc -ne 0 ]] || rc=1
elif [[ $rc -ne 0 ]]; then
    show_server_log
fi
stop_server
exit "$rc"
