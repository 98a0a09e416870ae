"""docs/operations.md keeps up with the code: its "Configuration" table lists every flag of
``serve``, its "Metrics" table every metric, and its trace snippet runs as written."""

from __future__ import annotations

import asyncio
import os
import re

import httpx

from orchestrator.cli import main
from orchestrator.metrics import Metrics
from tests.conftest import ServerFactory
from tests.docs import DOCS, code_blocks, section
from tests.helpers import WAITING_FOR_KITCHEN, create_order, wait_for_state
from tests.observe.test_logs_and_traces import JSON_LOGS, applied, json_lines

OPERATIONS = DOCS / "operations.md"


def test_the_metrics_table_lists_every_metric() -> None:
    """One row per metric the registry exposes, by the name a scrape shows."""
    listed = set(
        re.findall(r"^\| `(\w+)(?:\{[^}]*\})?` \|", section(OPERATIONS, "Metrics"), flags=re.M)
    )
    exposed = {
        family.name + ("_total" if family.type == "counter" else "")
        for family in Metrics().registry.collect()
    }
    assert listed == exposed


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
