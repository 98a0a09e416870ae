"""The benchmark tools still run and count what they say: a few orders each.

The figures in bench/README.md and the README come from these scripts, so a change that
breaks them (or makes them count the wrong thing) must fail here, not at the next
benchmark. No timing is asserted: only the counts and the exit codes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ServerProcess, free_port

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
ORDERS = 4


def run(script: str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, str(BENCH / script), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=cwd)


def test_loadgen_counts_requests_and_durable_commands(server: ServerProcess) -> None:
    """Per order of the commands workload: six requests, of which five POSTs (commands)."""
    assert server.proc is not None
    done = run(
        "loadgen.py",
        *("--url", server.url, "--workload", "commands", "--orders", str(ORDERS)),
        *("--concurrency", "2", "--warmup", "1", "--server-pid", str(server.proc.pid), "--json"),
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["errors"] == 0
    assert result["orders_ok"] == ORDERS
    assert result["requests"] == 6 * ORDERS
    assert result["commands"] == 5 * ORDERS
    assert result["commands_per_s"] < result["requests_per_s"]
    assert result["command_latency_ms"]["p50"] > 0
    assert "commands/s" in done.stdout


def test_inprocess_runs_the_commands_workload(tmp_path: Path) -> None:
    done = run("inprocess.py", "--orders", str(ORDERS), "--concurrency", "2", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"({6 * ORDERS} requests in" in done.stdout


def test_inprocess_fails_loudly_on_a_bad_answer(tmp_path: Path) -> None:
    """A run whose requests are refused must not print a figure: it exits non-zero."""
    charts = tmp_path / "charts"
    charts.mkdir()
    source = ROOT / "statecharts"
    # The pizza chart with its create event refused by the action: every POST /orders fails.
    (charts / "pizza.yaml").write_text((source / "pizza.yaml").read_text())
    signature = "    def addPizzaToItems(self, data: JsonObject) -> None:\n"
    actions = (source / "pizza.py").read_text()
    assert signature in actions
    refusing = actions.replace(signature, signature + '        raise Refused("closed")\n')
    (charts / "pizza.py").write_text(refusing)
    done = run("inprocess.py", "--orders", "1", "--charts", str(charts), cwd=tmp_path)
    assert done.returncode == 1
    assert "POST /orders: HTTP 409" in done.stderr
    assert "requests/s" not in done.stdout


@pytest.mark.parametrize(
    # Enough requests for the server's CPU time to pass a few of the kernel's 10 ms ticks.
    ("workload", "orders", "requests_per_order", "commands_per_order"),
    [("commands", 20, 6, 5), ("ceiling", 1000, 1, 0)],
)
def test_run_sh_serves_and_loads_each_workload(
    workload: str, orders: int, requests_per_order: int, commands_per_order: int
) -> None:
    """run.sh starts the right server (the orchestrator, or the hello-world app for the
    ceiling), loads it and stops it; the server's CPU per request is reported."""
    env = {
        **os.environ,
        "PORT": str(free_port()),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    command = ["bash", str(BENCH / "run.sh"), "--workload", workload, "--orders", str(orders)]
    command += ["--concurrency", "2", "--warmup", "1", "--json"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["workload"] == workload
    assert result["orders_ok"] == orders
    assert result["requests"] == requests_per_order * orders
    assert result["commands"] == commands_per_order * orders
    assert result["server"]["cpu_us_per_request"] > 0
    assert "us per request" in done.stdout
