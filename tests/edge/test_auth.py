"""API auth: with ORCHESTRATOR_API_TOKEN set, commands and reads need the bearer token.

DESIGN, HTTP contract: "when ORCHESTRATOR_API_TOKEN is set, commands and reads need
Authorization: Bearer". Health, readiness, metrics and the OpenAPI document stay open.
"""

from __future__ import annotations

import os

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.conftest import ServerFactory, ServerProcess

TOKEN = "let-me-in"
GOOD = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def guarded(server_factory: ServerFactory, monkeypatch: pytest.MonkeyPatch) -> ServerProcess:
    monkeypatch.setitem(os.environ, "ORCHESTRATOR_API_TOKEN", TOKEN)
    return server_factory()


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer nope"}, {"Authorization": TOKEN}]
)
async def test_commands_and_reads_need_the_token(
    guarded: ServerProcess, headers: dict[str, str]
) -> None:
    async with httpx.AsyncClient(base_url=guarded.url) as http:
        created = await http.post("/orders", json={"pizza": {"name": "x"}}, headers=GOOD)
        assert created.status_code == 201
        order_id = created.json()["id"]
        for method, path, body in [
            ("POST", "/orders", {"pizza": {"name": "x"}}),
            ("GET", "/orders", None),
            ("GET", f"/orders/{order_id}", None),
            ("POST", f"/orders/{order_id}/events", {"type": "CONFIRM_PIZZA"}),
            ("GET", f"/orders/{order_id}/history", None),
        ]:
            response = await http.request(method, path, json=body, headers=headers)
            assert response.status_code == 401, (method, path)
            assert response.headers["content-type"] == "application/problem+json"
            assert response.headers["www-authenticate"] == "Bearer"
        after = await http.get(f"/orders/{order_id}", headers=GOOD)
        assert after.json()["version"] == 1  # the refused CONFIRM changed nothing
        listed = await http.get("/orders", headers=GOOD)
        assert len(listed.json()["orders"]) == 1  # the refused create made nothing


async def test_operational_endpoints_stay_open(guarded: ServerProcess) -> None:
    async with httpx.AsyncClient(base_url=guarded.url) as http:
        for path in ("/healthz", "/readyz", "/metrics", "/openapi.json"):
            assert (await http.get(path)).status_code == 200, path


async def test_websocket_takes_the_token_as_header_or_query(guarded: ServerProcess) -> None:
    async with httpx.AsyncClient(base_url=guarded.url) as http:
        order_id = (await http.post("/orders", json={"pizza": {"n": 1}}, headers=GOOD)).json()["id"]
    url = f"{guarded.ws_url}/orders/{order_id}/ws"
    async with connect(url, additional_headers=GOOD) as ws:
        assert '"version":1' in str(await ws.recv())
    async with connect(f"{url}?access_token={TOKEN}") as ws:
        assert '"version":1' in str(await ws.recv())
    async with connect(url) as ws:
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401


async def test_without_a_token_nothing_is_asked(server: ServerProcess) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        assert (await http.post("/orders", json={"pizza": {"n": 1}})).status_code == 201
