"""docs/operations.md keeps up with the code: its "Configuration" table lists every flag of
``serve``, its "Metrics" table every metric, and its trace snippet runs as written."""

from __future__ import annotations

import asyncio
import os
import re

import httpx
from prometheus_client import CollectorRegistry

from orchestrator.cli import main
from orchestrator.metrics import Metrics
from orchestrator.worker.metrics import ServiceMetrics
from tests.conftest import ServerFactory
from tests.docs import DOCS, code_blocks, section
from tests.helpers import WAITING_FOR_KITCHEN, create_order, wait_for_state
from tests.observe.test_logs_and_traces import JSON_LOGS, applied, json_lines

OPERATIONS = DOCS / "operations.md"


# What a scrape appends to a family's name, by its type.
SUFFIXES = {"counter": "_total", "info": "_info"}


def listed(table: str) -> set[str]:
    return set(re.findall(r"^\| `(\w+)(?:\{[^}]*\})?` \|", table, flags=re.M))


def exposed(registry: CollectorRegistry) -> set[str]:
    return {family.name + SUFFIXES.get(family.type, "") for family in registry.collect()}


def test_the_metrics_table_lists_every_metric() -> None:
    """One row per metric the registry exposes, by the name a scrape shows."""
    orchestrator, services = section(OPERATIONS, "Metrics").split("\n| metric |")[1:]
    assert listed(orchestrator) == exposed(Metrics().registry)
    # The services' table lists their own; the process_* and python_* rows are shared.
    shared = {
        name for name in exposed(Metrics().registry) if name.startswith(("process_", "python_"))
    }
    assert listed(services) | shared == exposed(ServiceMetrics(["MAKE_PIZZA"]).registry)


async def test_the_traceparent_snippet_sets_the_orders_trace(
    server_factory: ServerFactory,
) -> None:
    server = server_factory(*JSON_LOGS, "--kitchen-mode", "ignore")
    (script,) = code_blocks(section(OPERATIONS, "Logs and traces"), "sh")
    async with httpx.AsyncClient(base_url=server.url, timeout=30.0) as http:
        order_id = (await create_order(http))["id"]
        proc = await asyncio.create_subprocess_exec(
            "bash", "-eu", "-c", script,
            env={**os.environ, "URL": server.url, "ORDER": order_id},
            stdout=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        assert await asyncio.wait_for(proc.wait(), timeout=60) == 0
        await wait_for_state(http, order_id, WAITING_FOR_KITCHEN)
    (confirm,) = applied(json_lines(server), order_id)["CONFIRM_PIZZA"]
    assert confirm["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"


def test_the_configuration_table_lists_every_serve_flag() -> None:
    """One row per ``orchestrator serve`` flag (a row may name two), none that is gone."""
    rows = re.findall(r"^\| (`--[^|]*)\|", section(OPERATIONS, "Configuration"), flags=re.M)
    listed = {flag for row in rows for flag in re.findall(r"`(--[\w-]+)`", row)}
    serve = main.commands["serve"]
    flags = {option for param in serve.params for option in param.opts if option.startswith("--")}
    assert listed == flags
