"""API auth: with ORCHESTRATOR_API_TOKEN set, commands and reads need the bearer token.

docs/design.md, "The HTTP contract": with ORCHESTRATOR_API_TOKEN set, commands and reads
need ``Authorization: Bearer``. Health, readiness, metrics and the OpenAPI document stay open.
"""

from __future__ import annotations

import json
import os

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.conftest import ServerFactory, ServerProcess
from tests.helpers import WEBHOOK_SECRET, signed_headers

TOKEN = "let-me-in"
GOOD = {"Authorization": f"Bearer {TOKEN}"}
CLOUDEVENT = {"content-type": "application/cloudevents+json"}


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


@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "Bearer  ", "bEaReR"])
async def test_the_scheme_is_case_insensitive(guarded: ServerProcess, scheme: str) -> None:
    """RFC 9110 11.1: "It uses a case-insensitive token to identify the authentication
    scheme"; one or more spaces separate it from the token."""
    async with httpx.AsyncClient(base_url=guarded.url) as http:
        response = await http.get("/orders", headers={"Authorization": f"{scheme} {TOKEN}"})
        assert response.status_code == 200, response.text
        for wrong in (f"{scheme.strip()}{TOKEN}", f"Basic {TOKEN}", f"{scheme} {TOKEN}x"):
            refused = await http.get("/orders", headers={"Authorization": wrong})
            assert refused.status_code == 401, wrong


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


async def test_the_webhook_needs_the_token_unless_it_is_signed(
    server_factory: ServerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a webhook secret, POST /events is a command like any other: it needs the
    token (it was open, so anyone could move or cancel an order). With a secret, the HMAC
    signature stands in for the token."""
    monkeypatch.setitem(os.environ, "ORCHESTRATOR_API_TOKEN", TOKEN)
    unsigned = server_factory()
    async with httpx.AsyncClient(base_url=unsigned.url) as http:
        created = await http.post("/orders", json={"pizza": {"n": 1}}, headers=GOOD)
        order_id = created.json()["id"]
        cancel = json.dumps(
            {"specversion": "1.0", "id": "c-1", "type": "CANCEL", "source": "/anyone"}
            | {"subject": order_id}
        ).encode()
        refused = await http.post("/events", content=cancel, headers=CLOUDEVENT)
        assert refused.status_code == 401, refused.text
        assert (await http.get(f"/orders/{order_id}", headers=GOOD)).json()["version"] == 1
        accepted = await http.post("/events", content=cancel, headers=GOOD | CLOUDEVENT)
        assert accepted.status_code == 200, accepted.text
        assert accepted.json()["state"] == "cancelled"
    monkeypatch.setenv("ORCHESTRATOR_WEBHOOK_SECRET", WEBHOOK_SECRET)
    signed = server_factory()
    async with httpx.AsyncClient(base_url=signed.url) as http:
        created = await http.post("/orders", json={"pizza": {"n": 1}}, headers=GOOD)
        cancel = cancel.replace(order_id.encode(), created.json()["id"].encode())
        headers = signed_headers(cancel, "c-1")
        accepted = await http.post("/events", content=cancel, headers=headers)
        assert accepted.status_code == 200, accepted.text


async def test_the_access_log_never_shows_the_token(
    server_factory: ServerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A browser's WebSocket passes the token as ?access_token=, which uvicorn's handshake
    line quotes: with --access-log the value is written as REDACTED."""
    monkeypatch.setitem(os.environ, "ORCHESTRATOR_API_TOKEN", TOKEN)
    server = server_factory("--access-log", "--log-level", "info")
    async with httpx.AsyncClient(base_url=server.url) as http:
        order_id = (await http.post("/orders", json={"pizza": {"n": 1}}, headers=GOOD)).json()["id"]
    async with connect(f"{server.ws_url}/orders/{order_id}/ws?access_token={TOKEN}") as ws:
        assert '"version":1' in str(await ws.recv())
    assert server.terminate() == 0  # its log is complete once it has stopped
    assert f"/orders/{order_id}/ws?access_token=REDACTED" in server.log()
    assert TOKEN not in server.log()
