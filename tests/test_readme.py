"""The README's tour runs as written against a real server (STYLE: every snippet runs)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
from pathlib import Path

import httpx
from websockets.asyncio.client import connect

from tests.conftest import ServerFactory, ServerProcess
from tests.helpers import WAITING_FOR_KITCHEN, wait_for_state

README = Path(__file__).resolve().parent.parent / "README.md"


def tour_script() -> str:
    text = README.read_text()
    section = text.split("## A one-minute tour", 1)[1]
    blocks = re.findall(r"```sh\n(.*?)```", section, flags=re.S)
    return str(blocks[0])


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


def webhook_script() -> str:
    section = README.read_text().split("### Security", 1)[1]
    return str(re.findall(r"```sh\n(.*?)```", section, flags=re.S)[0])


async def test_the_signed_webhook_snippet_moves_an_order(server_factory: ServerFactory) -> None:
    """The README's openssl + curl example signs a PIZZA_READY (a service event) that a
    server with the same secret applies, once: run again, it is answered as a repeat."""
    script = webhook_script()
    found = re.search(r"^SECRET=(whsec_\S+)", script, flags=re.M)
    assert found is not None, script
    server = server_factory("--kitchen-mode", "ignore", "--webhook-secret", found.group(1))
    async with httpx.AsyncClient(base_url=server.url) as http:
        order_id = (await http.post("/orders", json={"pizza": {"name": "x"}})).json()["id"]
        await http.post(f"/orders/{order_id}/events", json={"type": "CONFIRM_PIZZA"})
        await wait_for_state(http, order_id, WAITING_FOR_KITCHEN, within=10.0)
        answers = []
        for _ in range(2):
            proc = await asyncio.create_subprocess_exec(
                "bash", "-eu", "-c", script,
                env={**os.environ, "URL": server.url, "ORDER": order_id},
                stdout=asyncio.subprocess.PIPE,
            )  # fmt: skip
            stdout, _ = await asyncio.wait_for(proc.communicate(), timeout=60)
            assert proc.returncode == 0
            answers.append(json.loads(stdout))
        assert answers[0]["state"].startswith("deliverPizza"), answers
        assert answers[1]["version"] == answers[0]["version"]
