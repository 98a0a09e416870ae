"""The README's tour runs as written against a real server (STYLE: every snippet runs), and
its two commands are the ones the project keeps: the second is what CI runs."""

from __future__ import annotations

import json
import os
import re
import subprocess

import httpx
from websockets.asyncio.client import connect

from tests.conftest import ServerProcess
from tests.docs import README, ROOT, code_blocks, section

RUN_COMMAND = (
    "python3 -m venv .venv && .venv/bin/pip install -e . && .venv/bin/orchestrator serve\n"
)
TEST_COMMAND = "bash scripts/test.sh\n"


def tour_script() -> str:
    return code_blocks(section(README, "A one-minute tour"), "sh")[0]


def test_the_readme_gives_the_two_commands_and_ci_runs_the_second() -> None:
    """The front door's promise: one command runs the product (embedded, nothing else to
    start), one runs every test, and ``.ci/run`` runs that same command."""
    assert code_blocks(section(README, "Run it"), "sh") == [RUN_COMMAND]
    assert code_blocks(section(README, "Test it"), "sh") == [TEST_COMMAND]
    command = TEST_COMMAND.split()
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert any(line.split()[: len(command)] == command for line in ci)


def test_tour_runs_to_done(server: ServerProcess) -> None:
    """The curl tour creates an order, adds and removes a pizza, and the order is done."""
    script = tour_script() + '\necho "ORDER=$ORDER"\n'
    result = subprocess.run(
        ["bash", "-eu", "-c", script],
        env={**os.environ, "URL": server.url},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    found = re.search(r"^ORDER=(\S+)$", result.stdout, flags=re.M)
    assert found is not None, result.stdout
    order_id = found.group(1)
    view = httpx.get(f"{server.url}/orders/{order_id}").json()
    assert view["state"] == "done"
    assert view["items"] == [{"name": "pineapple", "size": "L"}]
    history = httpx.get(f"{server.url}/orders/{order_id}/history").json()["entries"]
    assert history[1]["eventId"] == "add-banana"
    assert '"state":"done"' in result.stdout.replace(" ", "")


async def test_websocket_snippet_replays_the_history(
    server: ServerProcess, client: httpx.AsyncClient
) -> None:
    """``ws://.../orders/$ORDER/ws?after=0`` from the README replays every event from 1."""
    created = (await client.post("/orders", json={"pizza": {"name": "pineapple"}})).json()
    async with connect(f"{server.ws_url}/orders/{created['id']}/ws?after=0") as ws:
        first = json.loads(await ws.recv())
    assert first["version"] == 1
    assert first["event"]["type"] == "ADD_PIZZA"
    assert first["view"]["id"] == created["id"]


def test_the_readme_stays_a_front_door() -> None:
    """A few screens (about 150 lines): what goes deeper has a page under docs/."""
    assert len(README.read_text().splitlines()) <= 200
