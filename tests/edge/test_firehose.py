"""WS /ws, the firehose: every order's ``{"version", "event", "view"}`` as it is applied,
under the same auth and slow-subscriber rules as WS /orders/{id}/ws."""

from __future__ import annotations

import asyncio
import json
import os

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.conftest import ServerFactory, ServerProcess
from tests.edge.test_ws import close_code, receive, slow_connect, wait_for_metric
from tests.helpers import (
    CONFIRM,
    HAWAII,
    MARGHERITA,
    JsonObject,
    add,
    create_order,
    metric,
    send_ok,
)

SUBSCRIBERS = "orchestrator_websocket_subscribers"


def firehose(server: ServerProcess, query: str = "") -> str:
    return f"{server.ws_url}/ws{query}"


async def until(ws: ClientConnection, order_id: str, state: str) -> list[JsonObject]:
    """This order's messages, until one shows it in ``state``."""
    seen: list[JsonObject] = []
    while not seen or seen[-1]["view"]["state"] != state:
        message = await receive(ws)
        if message["view"]["id"] == order_id:
            seen.append(message)
    return seen


async def test_every_order_is_seen_from_connect_on(
    server: ServerProcess, client: httpx.AsyncClient
) -> None:
    """Nothing is sent on connect; then each applied event of every order arrives, with its
    journal entry and the view, in each order's version order."""
    before = await create_order(client)
    async with connect(firehose(server)) as ws:
        first = await create_order(client, HAWAII)
        second = await create_order(client, MARGHERITA)
        await send_ok(client, before["id"], add(MARGHERITA))
        messages = [await receive(ws) for _ in range(3)]
        assert [(m["view"]["id"], m["version"]) for m in messages] == [
            (first["id"], 1), (second["id"], 1), (before["id"], 2),
        ]  # fmt: skip
        assert messages[0]["view"] == first
        assert messages[0]["event"]["type"] == "ADD_PIZZA"
        await send_ok(client, first["id"], CONFIRM)
        flow = await until(ws, first["id"], "done")
    versions = [m["version"] for m in flow]
    assert versions == list(range(2, 2 + len(flow)))
    assert [m["event"]["version"] for m in flow] == versions


async def test_firehose_needs_the_token(
    server_factory: ServerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Same auth as the order socket: a missing or wrong token is closed with 4401; the
    bearer header or ?access_token are let in."""
    monkeypatch.setitem(os.environ, "ORCHESTRATOR_API_TOKEN", "t0ken")
    server = server_factory()
    for query in ("", "?access_token=wrong"):
        async with connect(firehose(server, query)) as ws:
            assert await close_code(ws) == 4401
    headers = {"Authorization": "Bearer t0ken"}
    async with (
        httpx.AsyncClient(base_url=server.url, headers=headers) as http,
        connect(firehose(server, "?access_token=t0ken")) as by_query,
        connect(firehose(server), additional_headers=headers) as by_header,
    ):
        order = await create_order(http)
        for ws in (by_query, by_header):
            assert (await receive(ws))["view"]["id"] == order["id"]


async def test_slow_firehose_subscriber_is_closed_with_4008(
    server_factory: ServerFactory,
) -> None:
    """A firehose reader that falls --ws-queue messages behind is closed with 4008 while
    the orders carry on; it is unsubscribed (the gauge returns to 0)."""
    server = server_factory("--ws-queue", "4")
    note = "x" * 30_000
    async with httpx.AsyncClient(base_url=server.url, timeout=30.0) as client:
        order = await create_order(client)
        async with slow_connect(firehose(server)) as ws:
            for n in range(30):
                await send_ok(client, order["id"], add({"name": f"p{n}", "note": note}))
            code = None
            for _ in range(40):
                try:
                    json.loads(await asyncio.wait_for(ws.recv(), 30.0))
                except ConnectionClosed as closed:
                    code = closed.rcvd.code if closed.rcvd is not None else None
                    break
        assert code == 4008
        assert await wait_for_metric(client, SUBSCRIBERS, 0) == 0


# The non-reader must be dropped within this many seconds of the events' end: its send
# blocks once the socket buffers are full, then --ws-send-timeout (2 s) runs out.
STALL_SEND_TIMEOUT = 2.0
DROP_WITHIN = 30.0


async def test_firehose_subscriber_that_never_reads_is_dropped_within_the_send_timeout(
    server_factory: ServerFactory,
) -> None:
    """A firehose client that stops reading while many large events flow holds a
    --max-subscribers place and a blocked send only until --ws-send-timeout runs out: it is
    then unsubscribed (the gauge goes back down, counted as dropped) while it still reads
    nothing, and when it reads at last it finds what its socket held, then close code 4008;
    its place (--max-subscribers 1) is free for the next client.
    --ws-queue is large, so it is the stalled send that drops it, not the log leaving it
    behind."""
    server = server_factory("--ws-send-timeout", str(STALL_SEND_TIMEOUT), "--ws-queue", "100000")
    note = "x" * 30_000
    async with httpx.AsyncClient(base_url=server.url, timeout=30.0) as client:
        async with slow_connect(firehose(server)) as ws:
            assert await wait_for_metric(client, SUBSCRIBERS, 1) == 1
            for n in range(300):  # ~9 MB of messages: more than the socket buffers hold
                await create_order(client, {"name": f"p{n}", "note": note})
            deadline = asyncio.get_running_loop().time() + DROP_WITHIN
            while await metric(client, SUBSCRIBERS) != 0:
                assert asyncio.get_running_loop().time() < deadline, (
                    f"the non-reader was not dropped within {DROP_WITHIN}s"
                )
                await asyncio.sleep(0.1)
            assert await metric(client, "orchestrator_websocket_dropped_total") == 1
            received = 0
            code = None
            try:
                while True:
                    await asyncio.wait_for(ws.recv(), 30.0)
                    received += 1
            except ConnectionClosed as closed:
                code = closed.rcvd.code if closed.rcvd is not None else None
        assert code == 4008
        assert received < 300  # closed, not sent everything
        async with connect(firehose(server)) as again:  # its one place is free again
            order = await create_order(client)
            assert (await receive(again))["view"]["id"] == order["id"]
