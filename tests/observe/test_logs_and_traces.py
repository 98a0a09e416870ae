"""JSON logs and one trace per order, on a real server with the in-process broker.

An order is driven with ``traceparent`` headers; then every line the server wrote is
parsed as JSON, the lines about the order must say which order, event, chart and trace
they are about, and the trace must reach the kitchen and the delivery (their ledgers keep
the answers they sent) and come back in the turns of their answers.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from orchestrator import tracing
from orchestrator.messages import Message, encode
from tests.conftest import ServerFactory, ServerProcess
from tests.helpers import (
    CONFIRM,
    DONE,
    WAITING_FOR_KITCHEN,
    WEBHOOK_SECRET,
    add,
    ledger_path,
    signed_headers,
    wait_for_state,
    wait_quiet,
)

JSON_LOGS = ("--log-format", "json", "--log-level", "debug")
CREATE_TRACE = "0af7651916cd43dd8448eb211c80319c"
FLOW_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
ORDER_FIELDS = ("order_id", "event_id", "chart", "trace_id")
SERVICE_FIELDS = ("order_id", "event_id", "trace_id")


def traceparent(trace_id: str) -> dict[str, str]:
    return {"traceparent": f"00-{trace_id}-{CALLER_SPAN}-01"}


def json_lines(server: ServerProcess) -> list[dict[str, Any]]:
    """Every line the server wrote, each of which must be one JSON object."""
    lines = [json.loads(line) for line in server.log().splitlines() if line.strip()]
    assert all(isinstance(line, dict) for line in lines)
    return lines


def applied(lines: list[dict[str, Any]], order_id: str) -> dict[str, list[dict[str, Any]]]:
    """The actor's "<TYPE> applied" lines of an order, by event type."""
    found: dict[str, list[dict[str, Any]]] = {}
    for line in lines:
        if line["logger"] == "orchestrator.actor" and line.get("order_id") == order_id:
            event_type, _, rest = line["message"].partition(" ")
            if rest.startswith("applied"):
                found.setdefault(event_type, []).append(line)
    return found


def answer_traces(db: Path, service: str, order_id: str) -> list[str | None]:
    """The trace ids of the answers the service recorded for the order."""
    conn = sqlite3.connect(ledger_path(db, service), timeout=10.0)
    try:
        rows = conn.execute("SELECT answer FROM handled WHERE order_id = ?", (order_id,))
        return [tracing.trace_id(json.loads(answer).get("traceparent")) for (answer,) in rows]
    finally:
        conn.close()


async def test_an_orders_log_lines_and_messages_share_its_trace(
    server_factory: ServerFactory,
) -> None:
    server = server_factory(*JSON_LOGS)
    async with httpx.AsyncClient(base_url=server.url, timeout=30.0) as http:
        created = await http.post(
            "/orders", json={"pizza": {"name": "x"}}, headers=traceparent(CREATE_TRACE)
        )
        assert created.status_code == 201
        order_id = created.json()["id"]
        added = await http.post(f"/orders/{order_id}/events", json=add({"name": "y"}))
        assert added.status_code == 200
        confirmed = await http.post(
            f"/orders/{order_id}/events", json=CONFIRM, headers=traceparent(FLOW_TRACE)
        )
        assert confirmed.status_code == 200
        await wait_for_state(http, order_id, DONE)
        await wait_quiet(http, server.db)
    lines = json_lines(server)
    about = [line for line in lines if line.get("order_id") == order_id]
    for line in about:
        # The services (the worker kit) do not know the chart; everything else they do.
        service = line["logger"].startswith("orchestrator.worker.")
        fields = SERVICE_FIELDS if service else ORDER_FIELDS
        assert all(line.get(name) for name in fields), line
        assert line["level"] and line["timestamp"]
    turns = applied(lines, order_id)
    assert {line["chart"] for lines_ in turns.values() for line in lines_} == {"pizza"}
    create, add_ = turns["ADD_PIZZA"]
    assert create["trace_id"] == CREATE_TRACE
    assert add_["trace_id"] not in (CREATE_TRACE, FLOW_TRACE)  # no header: a new trace
    flow = [
        "CONFIRM_PIZZA",
        "done.invoke.sendOrderToKitchen",
        "PIZZA_READY",
        "done.invoke.sendOrderToDelivery",
        "PIZZA_DELIVERED",
    ]
    assert {
        event_type: [line["trace_id"] for line in turns[event_type]] for event_type in flow
    } == {event_type: [FLOW_TRACE] for event_type in flow}
    assert answer_traces(server.db, "kitchen", order_id) == [FLOW_TRACE]
    assert answer_traces(server.db, "delivery", order_id) == [FLOW_TRACE]
    carried_out = [line for line in about if line["logger"].startswith("orchestrator.worker.")]
    assert [line["trace_id"] for line in carried_out] == [FLOW_TRACE, FLOW_TRACE]


@pytest.mark.parametrize(
    "header",
    [
        "garbage",
        f"00-{'0' * 32}-{CALLER_SPAN}-01",
        f"00-{FLOW_TRACE.upper()}-{CALLER_SPAN}-01",
        f"00-{FLOW_TRACE}-{CALLER_SPAN}-01-extra",
    ],
)
async def test_an_invalid_traceparent_starts_a_new_trace(
    server_factory: ServerFactory, header: str
) -> None:
    """Never a 4xx: the value is ignored and the order gets a trace of its own."""
    server = server_factory(*JSON_LOGS)
    async with httpx.AsyncClient(base_url=server.url, timeout=30.0) as http:
        created = await http.post(
            "/orders", json={"pizza": {"name": "x"}}, headers={"traceparent": header}
        )
        assert created.status_code == 201
    (create,) = applied(json_lines(server), created.json()["id"])["ADD_PIZZA"]
    assert tracing.parse(f"00-{create['trace_id']}-{CALLER_SPAN}-01") is not None
    assert create["trace_id"] != FLOW_TRACE.lower()


async def test_a_webhook_event_continues_the_requests_trace(
    server_factory: ServerFactory,
) -> None:
    """POST /events: the ``traceparent`` header wins over the event's own extension, and
    the delivery hears of the trace through the command the event's turn sent."""
    server = server_factory(
        *JSON_LOGS, "--kitchen-mode", "ignore", "--webhook-secret", WEBHOOK_SECRET
    )
    extension = f"00-{CREATE_TRACE}-{CALLER_SPAN}-01"
    async with httpx.AsyncClient(base_url=server.url, timeout=30.0) as http:
        created = await http.post("/orders", json={"pizza": {"name": "x"}})
        order_id = created.json()["id"]
        await http.post(f"/orders/{order_id}/events", json=CONFIRM)
        await wait_for_state(http, order_id, WAITING_FOR_KITCHEN)
        event = Message("ready-1", "PIZZA_READY", "/kitchen", order_id, {}, traceparent=extension)
        body = encode(event, time.time())
        response = await http.post(
            "/events",
            content=body,
            headers=signed_headers(body, event.id) | traceparent(FLOW_TRACE),
        )
        assert response.status_code == 200, response.text
        await wait_for_state(http, order_id, DONE)
    (ready,) = applied(json_lines(server), order_id)["PIZZA_READY"]
    assert ready["trace_id"] == FLOW_TRACE
    assert answer_traces(server.db, "delivery", order_id) == [FLOW_TRACE]


async def test_a_timer_fires_in_the_trace_of_the_turn_that_set_it(
    server_factory: ServerFactory,
) -> None:
    """The kitchen never answers, so the kitchen timeout fires: its turn is in the trace
    of the confirmation whose flow set the timer, not in one of its own."""
    server = server_factory(
        *JSON_LOGS,
        "--kitchen-mode",
        "ignore",
        "--chart-option",
        "pizza.kitchenTimeout=0.2",
        "--chart-option",
        "pizza.maxRetries=0",
    )
    async with httpx.AsyncClient(base_url=server.url, timeout=30.0) as http:
        created = await http.post("/orders", json={"pizza": {"name": "x"}})
        order_id = created.json()["id"]
        confirmed = await http.post(
            f"/orders/{order_id}/events", json=CONFIRM, headers=traceparent(FLOW_TRACE)
        )
        assert confirmed.status_code == 200
        await wait_for_state(http, order_id, "bakePizza.errorInKitchen")
    turns = applied(json_lines(server), order_id)
    (timeout,) = turns["after.waitingForPizzaToBeBaked.kitchenTimeout"]
    assert timeout["trace_id"] == FLOW_TRACE
    (create,) = turns["ADD_PIZZA"]
    assert create["trace_id"] != FLOW_TRACE


async def test_log_format_from_the_environment_and_text_by_default(
    server_factory: ServerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ORCHESTRATOR_LOG_FORMAT=json works like the flag; text lines name the fields too."""
    monkeypatch.setenv("ORCHESTRATOR_LOG_FORMAT", "json")
    as_json = server_factory("--log-level", "debug")
    monkeypatch.delenv("ORCHESTRATOR_LOG_FORMAT")
    as_text = server_factory("--log-level", "debug")
    for server in (as_json, as_text):
        async with httpx.AsyncClient(base_url=server.url, timeout=30.0) as http:
            created = await http.post("/orders", json={"pizza": {"name": "x"}})
            assert created.status_code == 201
    assert applied(json_lines(as_json), created.json()["id"]) == {}  # the other server's
    assert any(line["message"].endswith("version 1") for line in json_lines(as_json))
    text = [line for line in as_text.log().splitlines() if "ADD_PIZZA applied" in line]
    assert len(text) == 1
    assert f"order_id={created.json()['id']}" in text[0]
    assert "chart=pizza" in text[0] and "event_id=" in text[0] and "trace_id=" in text[0]


async def test_websocket_handshakes_are_logged_only_with_the_access_log(
    server_factory: ServerFactory,
) -> None:
    """uvicorn logs each WebSocket handshake at INFO whatever --access-log says; without
    the access log those lines are dropped, as HTTP requests' are. Other lines stay."""
    quiet = server_factory("--log-level", "info")
    logged = server_factory("--log-level", "info", "--access-log")
    for server in (quiet, logged):
        async with httpx.AsyncClient(base_url=server.url, timeout=30.0) as http:
            created = await http.post("/orders", json={"pizza": {"name": "x"}})
            assert created.status_code == 201
        path = f"/orders/{created.json()['id']}/ws"
        async with connect(server.ws_url + path) as ws:
            assert json.loads(await ws.recv())["version"] == 1
        assert server.terminate() == 0  # its log is complete once it has stopped
    handshake = '"WebSocket /orders/'
    assert handshake not in quiet.log() and "connection open" not in quiet.log()
    assert '"POST /orders HTTP/1.1" 201' not in quiet.log()
    assert "Application shutdown complete" in quiet.log()  # uvicorn's other lines stay
    assert f'"WebSocket {path}" [accepted]' in logged.log()
    assert "connection open" in logged.log()
    assert '"POST /orders HTTP/1.1" 201' in logged.log()
