"""The cluster on one machine: efficiency over 1, 2 and 3 nodes, and failover time.

``efficiency``: the ``commands`` workload of loadgen.py against 1, 2 and 3 nodes in turn
(interleaved, ``--runs`` times), each request sent to a random node, on a new PostgreSQL
database each time. It prints the durable commands/s, the nodes' CPU time per command
(all nodes together, forwarding included) and PostgreSQL's (every postgres process's CPU
time over the run, per command). On a machine with fewer cores than nodes the nodes cannot
run faster than one core each, so the figure to read is CPU per command, not commands/s.

``failover``: three nodes and the services; ``--kills`` times, a node is killed with SIGKILL
and an order whose shard it served is sent ADD_PIZZA through another node until one is
acknowledged; the time from the kill to that acknowledgement is one sample. The killed node
is started again (at the same address) and the cluster settles before the next kill.

    . .venv/bin/activate
    python bench/cluster.py efficiency --broker amqp://guest:guest@127.0.0.1:5672/ \\
        --runs 3 -- --orders 3000 --concurrency 32
    python bench/cluster.py failover --broker amqp://guest:guest@127.0.0.1:5672/ --kills 20

``--pg`` is the PostgreSQL server's URL without a database (default postgres on 127.0.0.1,
trust auth); the databases are made and dropped here. The arguments after ``--`` go to
loadgen.py. Uses the ``orchestrator`` on PATH and this interpreter.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
import zlib
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent


def get(url: str, timeout: float = 2.0) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, None
    except (OSError, ValueError):
        return 0, None


def post(url: str, body: dict[str, Any], key: str, timeout: float = 10.0) -> int:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json", "Idempotency-Key": key},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return 0


def postgres_cpu() -> dict[int, float]:
    """CPU time of every postgres process so far (the server's backends included), by pid:
    a backend that exits between two readings takes its time with it, so deltas are summed
    per process."""
    ticks = os.sysconf("SC_CLK_TCK")
    total: dict[int, float] = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            data = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        if data[data.index("(") + 1 : data.rindex(")")].startswith("postgres"):
            fields = data.rpartition(")")[2].split()
            total[int(pid)] = (int(fields[11]) + int(fields[12])) / ticks
    return total


def postgres_seconds(before: dict[int, float], after: dict[int, float]) -> float:
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())


class Cluster:
    def __init__(self, pg: str, broker: str, size: int, port: int, workdir: Path) -> None:
        self.database = f"bench_{uuid.uuid4().hex[:12]}"
        self.pg = pg.rstrip("/")
        self.store = f"{self.pg}/{self.database}"
        self.broker = broker
        self.urls = [f"http://127.0.0.1:{port + i}" for i in range(size)]
        self.workdir = workdir
        self.nodes: list[subprocess.Popen[bytes] | None] = [None] * size

    def __enter__(self) -> Cluster:
        subprocess.run(
            ["createdb", f"--maintenance-db={self.pg}/postgres", self.database], check=True
        )
        for index in range(len(self.urls)):
            self.start(index)
        self.settle()
        return self

    def __exit__(self, *_: object) -> None:
        for proc in self.nodes:
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.nodes:
            if proc is not None:
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
        subprocess.run(
            ["dropdb", "--force", f"--maintenance-db={self.pg}/postgres", self.database],
            check=False,
        )

    def start(self, index: int) -> None:
        port = self.urls[index].rsplit(":", 1)[1]
        log = (self.workdir / f"node{index}.log").open("ab")
        self.nodes[index] = subprocess.Popen(
            [
                "orchestrator",
                "serve",
                "--store",
                self.store,
                "--broker",
                self.broker,
                "--port",
                port,
                "--db",
                str(self.workdir / f"node{index}.db"),
                "--log-level",
                "warning",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while get(self.urls[index] + "/readyz")[0] != 200:
            if time.monotonic() > deadline:
                raise SystemExit(f"node {self.urls[index]} did not start")
            time.sleep(0.1)

    def settle(self, within: float = 60.0) -> None:
        """Until every shard is owned, by every live node."""
        deadline = time.monotonic() + within
        live = {
            url
            for url, proc in zip(self.urls, self.nodes, strict=True)
            if proc and proc.poll() is None
        }
        while time.monotonic() < deadline:
            status, body = get(next(iter(live)) + "/cluster")
            if status == 200:
                addresses = {m["node"]: m["address"] for m in body["members"] if m["live"]}
                owners = [addresses.get(s["owner"]) for s in body["shards"]]
                if None not in owners and set(owners) == live:
                    return
            time.sleep(0.2)
        raise SystemExit("the cluster did not settle")

    def pids(self) -> list[int]:
        return [proc.pid for proc in self.nodes if proc is not None]


def efficiency(args: argparse.Namespace) -> None:
    rows: dict[int, list[dict[str, float]]] = {size: [] for size in args.sizes}
    for run in range(1, args.runs + 1):
        for size in args.sizes:
            with (
                tempfile.TemporaryDirectory() as tmp,
                Cluster(args.pg, args.broker, size, args.port, Path(tmp)) as cluster,
            ):
                pids = cluster.pids()
                command = [
                    sys.executable, str(BENCH / "loadgen.py"), "--workload", "commands",
                    "--url", ",".join(cluster.urls), "--server-pid", str(pids[0]),
                    *[arg for pid in pids[1:] for arg in ("--other-pid", str(pid))],
                    "--json", *args.loadgen,
                ]  # fmt: skip
                before = postgres_cpu()
                out = subprocess.run(command, capture_output=True, text=True, check=False)
                pg_seconds = postgres_seconds(before, postgres_cpu())
                if out.returncode != 0:
                    print(out.stdout[-2000:], out.stderr[-2000:], file=sys.stderr)
                    raise SystemExit(f"loadgen failed with {size} nodes")
                result = json.loads(out.stdout.strip().splitlines()[-1])
                row = {
                    "commands_per_s": result["commands_per_s"],
                    "node_us": result["server"]["cpu_us_per_command"],
                    "pg_us": pg_seconds / result["commands"] * 1e6,
                    "p99_ms": result["command_latency_ms"]["p99"],
                }
                rows[size].append(row)
                print(
                    f"run {run}  {size} node(s): {row['commands_per_s']:8.1f} commands/s"
                    f"  nodes {row['node_us']:6.0f} us/command  postgres {row['pg_us']:5.0f}"
                    f" us/command  p99 {row['p99_ms']:.1f} ms",
                    flush=True,
                )
    one = rows[args.sizes[0]]
    for size in args.sizes[1:]:
        ratios = [r["node_us"] / o["node_us"] for r, o in zip(rows[size], one, strict=True)]
        print(f"{size} nodes / 1 node, CPU per command: " + " / ".join(f"{r:.2f}x" for r in ratios))


def failover(args: argparse.Namespace) -> None:
    samples: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        services = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    f"services.{name}",
                    "--broker",
                    args.broker,
                    "--ledger",
                    str(workdir / f"{name}.db"),
                    "--log-level",
                    "warning",
                ],
            )
            for name in ("kitchen", "delivery")
        ]
        try:
            with Cluster(args.pg, args.broker, 3, args.port, workdir) as cluster:
                for kill in range(1, args.kills + 1):
                    samples.append(one_failover(cluster, kill))
                    print(
                        f"kill {kill}: {samples[-1]:.2f} s to the first acknowledged command",
                        flush=True,
                    )
        finally:
            for service in services:
                service.terminate()
                service.wait()
    print(
        f"failover over {len(samples)} kills: p50 {statistics.median(samples):.2f} s,"
        f" max {max(samples):.2f} s"
    )


def one_failover(cluster: Cluster, kill: int) -> float:
    victim = random.randrange(len(cluster.urls))
    others = [url for index, url in enumerate(cluster.urls) if index != victim]
    status, body = get(others[0] + "/cluster")
    assert status == 200
    victim_node = next(
        m["node"] for m in body["members"] if m["address"] == cluster.urls[victim] and m["live"]
    )
    shards = {s["shard"] for s in body["shards"] if s["owner"] == victim_node}
    order_id = None
    while order_id is None:  # an order in one of the victim's shards, made through it
        request = urllib.request.Request(
            cluster.urls[victim] + "/orders",
            data=b'{"pizza":{"name":"bench"}}',
            headers={"content-type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            created = json.loads(response.read())
        if zlib.crc32(created["id"].encode()) % len(body["shards"]) in shards:
            order_id = created["id"]
    proc = cluster.nodes[victim]
    assert proc is not None
    proc.send_signal(signal.SIGKILL)
    killed = time.monotonic()
    proc.wait()
    attempt = 0
    while True:
        attempt += 1
        key = f"failover-{kill}-{attempt}"
        event = {"type": "ADD_PIZZA", "data": {"pizza": {"name": key}}}
        if post(f"{random.choice(others)}/orders/{order_id}/events", event, key) == 200:
            took = time.monotonic() - killed
            break
        time.sleep(0.05)
    cluster.start(victim)
    cluster.settle()
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("efficiency", "failover"))
    parser.add_argument("--broker", required=True, help="amqp:// URL of RabbitMQ")
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1")
    parser.add_argument("--port", type=int, default=8801, help="the first node's port")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--kills", type=int, default=20)
    args, loadgen = parser.parse_known_args()
    args.loadgen = [arg for arg in loadgen if arg != "--"]  # for loadgen.py, after --
    efficiency(args) if args.what == "efficiency" else failover(args)


if __name__ == "__main__":
    main()
