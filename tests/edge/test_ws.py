"""WS /orders/{id}/ws through a real server with the ``websockets`` client.

Covers the WebSocket row of docs/design.md, "The HTTP contract": the view on connect (``"event":
null``), then one ``{"version", "event", "view"}`` message per applied event in version
order; ``?after=V`` replays the journal after V, then goes live; close 4404 for an unknown
order and 4422 for a bad ``after``; a subscriber that falls behind is closed with 4008 and
resumes with ``?after`` without a gap; closed and dropped sockets are unsubscribed.
"""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.conftest import ServerFactory, ServerProcess
from tests.helpers import (
    HAWAII,
    MARGHERITA,
    POLLS,
    UNKNOWN_ID,
    JsonObject,
    add,
    create_order,
    history,
    metric,
    send_ok,
    view,
)

RECEIVE_TIMEOUT = 15.0
SUBSCRIBERS = "orchestrator_websocket_subscribers"


def socket_url(server: ServerProcess, order_id: str, query: str = "") -> str:
    return f"{server.ws_url}/orders/{order_id}/ws{query}"


async def receive(ws: ClientConnection) -> JsonObject:
    """The next message; the timeout only keeps a broken product from hanging the test."""
    message: JsonObject = json.loads(await asyncio.wait_for(ws.recv(), RECEIVE_TIMEOUT))
    assert set(message) == {"version", "event", "view"}, message
    return message


async def close_code(ws: ClientConnection) -> int:
    """Read until the server closes the socket; the close code it sent."""
    try:
        message = await asyncio.wait_for(ws.recv(), RECEIVE_TIMEOUT)
    except ConnectionClosed as closed:
        assert closed.rcvd is not None, "the server sent no close frame"
        return closed.rcvd.code
    raise AssertionError(f"expected the socket to be closed, got {message!r}")


async def wait_for_metric(client: httpx.AsyncClient, name: str, value: float) -> float:
    current = await metric(client, name)
    for _ in range(POLLS):
        if current == value:
            break
        await asyncio.sleep(0.02)
        current = await metric(client, name)
    return current


def slow_connect(url: str) -> connect:
    """A client that stops reading once one message waits unread, with no compression
    and no message size limit."""
    return connect(url, max_queue=1, compression=None, max_size=None)


def assert_live_message(message: JsonObject, version: int) -> None:
    assert message["version"] == version
    assert message["event"]["version"] == version
    assert message["view"]["version"] == version


async def test_first_message_is_the_current_view(
    server: ServerProcess, client: httpx.AsyncClient
) -> None:
    """WS row: the first message, sent on connect, has "event": null and the current view."""
    order = await create_order(client)
    await send_ok(client, order["id"], add(MARGHERITA))
    async with connect(socket_url(server, order["id"])) as ws:
        first = await receive(ws)
    assert first["event"] is None
    assert first["version"] == 2
    assert first["view"] == await view(client, order["id"])


async def test_one_message_per_applied_event_in_version_order(
    server: ServerProcess, client: httpx.AsyncClient
) -> None:
    """WS row: then one message per applied event, in version order, each with the journal
    entry as "event" and the new view; a refused event sends nothing."""
    order = await create_order(client)
    async with connect(socket_url(server, order["id"])) as ws:
        assert (await receive(ws))["version"] == 1
        replies = [await send_ok(client, order["id"], add(MARGHERITA))]
        refused = await client.post(
            f"/orders/{order['id']}/events",
            json={"type": "REMOVE_PIZZA", "data": {"pizza": {"name": "none"}}},
        )
        assert refused.status_code == 409
        replies.append(await send_ok(client, order["id"], add(HAWAII)))
        replies.append(await send_ok(client, order["id"], add(MARGHERITA)))
        messages = [await receive(ws) for _ in range(3)]
    assert [m["version"] for m in messages] == [2, 3, 4]
    for version, message in enumerate(messages, start=2):
        assert_live_message(message, version)
        assert message["event"]["type"] == "ADD_PIZZA"
    assert [m["view"] for m in messages] == replies
    assert [m["event"] for m in messages] == (await history(client, order["id"]))[1:]
    assert messages[-1]["view"]["items"] == [HAWAII, MARGHERITA, HAWAII, MARGHERITA]


async def test_every_subscriber_gets_its_own_order_only(
    server: ServerProcess, client: httpx.AsyncClient
) -> None:
    """WS row: every applied event is broadcast to each subscriber of its order, and to
    no subscriber of another order."""
    first = await create_order(client)
    second = await create_order(client)
    async with (
        connect(socket_url(server, first["id"])) as a,
        connect(socket_url(server, first["id"])) as b,
        connect(socket_url(server, second["id"])) as other,
    ):
        for ws in (a, b, other):
            assert (await receive(ws))["version"] == 1
        await send_ok(client, first["id"], add(MARGHERITA))
        await send_ok(client, second["id"], add(HAWAII))
        seen_a, seen_b, seen_other = [await receive(ws) for ws in (a, b, other)]
    assert seen_a == seen_b
    assert seen_a["view"]["id"] == first["id"] and seen_a["version"] == 2
    assert seen_other["view"]["id"] == second["id"]
    assert seen_other["view"]["items"] == [HAWAII, HAWAII]


async def test_after_replays_the_journal_then_goes_live(
    server: ServerProcess, client: httpx.AsyncClient
) -> None:
    """WS row: with ?after=V the server first replays every applied event after V from the
    journal, in order, then goes live."""
    order = await create_order(client)
    for pizza in (MARGHERITA, HAWAII, MARGHERITA):
        await send_ok(client, order["id"], add(pizza))
    entries = await history(client, order["id"])
    async with connect(socket_url(server, order["id"], "?after=1")) as ws:
        replayed = [await receive(ws) for _ in range(3)]
        live_reply = await send_ok(client, order["id"], add(HAWAII))
        live = await receive(ws)
    assert [m["version"] for m in replayed] == [2, 3, 4]
    assert [m["event"] for m in replayed] == entries[1:]
    for message in replayed:
        assert_live_message(message, message["version"])
    assert replayed[-1]["view"]["items"] == [HAWAII, MARGHERITA, HAWAII, MARGHERITA]
    assert_live_message(live, 5)
    assert live["view"] == live_reply


async def test_after_zero_replays_from_the_first_event(
    server: ServerProcess, client: httpx.AsyncClient
) -> None:
    """WS row: ?after=0 replays the whole journal, the creating event included."""
    order = await create_order(client)
    await send_ok(client, order["id"], add(MARGHERITA))
    async with connect(socket_url(server, order["id"], "?after=0")) as ws:
        replayed = [await receive(ws) for _ in range(2)]
    assert [m["version"] for m in replayed] == [1, 2]
    assert [m["event"] for m in replayed] == await history(client, order["id"])


async def test_after_the_current_version_sends_only_live_events(
    server: ServerProcess, client: httpx.AsyncClient
) -> None:
    """WS row: ?after=<current version> has nothing to replay; the next message is the
    next applied event."""
    order = await create_order(client)
    await send_ok(client, order["id"], add(MARGHERITA))
    async with connect(socket_url(server, order["id"], "?after=2")) as ws:
        reply = await send_ok(client, order["id"], add(HAWAII))
        message = await receive(ws)
    assert_live_message(message, 3)
    assert message["view"] == reply


async def test_unknown_order_is_closed_with_4404(server: ServerProcess) -> None:
    """WS row: close 4404 unknown order."""
    url = socket_url(server, UNKNOWN_ID)
    async with connect(url) as ws:
        assert await close_code(ws) == 4404
    async with connect(url + "?after=0") as ws:
        assert await close_code(ws) == 4404
    # An id longer than a close frame's reason may be (123 bytes) is closed the same way.
    async with connect(socket_url(server, "x" * 200)) as ws:
        assert await close_code(ws) == 4404


@pytest.mark.parametrize("after", ["abc", "-1", "1.5", "%C2%B2"])
async def test_bad_after_is_closed_with_4422(
    server: ServerProcess, client: httpx.AsyncClient, after: str
) -> None:
    """WS endpoint: a malformed ?after is closed with 4422, never a server error."""
    order = await create_order(client)
    async with connect(socket_url(server, order["id"], f"?after={after}")) as ws:
        assert await close_code(ws) == 4422


async def test_full_flow_to_done_is_seen_live(
    server: ServerProcess, client: httpx.AsyncClient
) -> None:
    """WS row and reference flow: every step to done arrives live, versions contiguous,
    the last view in state done and equal to GET."""
    order = await create_order(client)
    async with connect(socket_url(server, order["id"])) as ws:
        messages = [await receive(ws)]
        await send_ok(client, order["id"], {"type": "CONFIRM_PIZZA"})
        for _ in range(50):
            if messages[-1]["view"]["state"] == "done":
                break
            messages.append(await receive(ws))
    versions = [m["version"] for m in messages]
    assert versions == list(range(1, len(messages) + 1))
    final = messages[-1]["view"]
    assert final["state"] == "done"
    assert final["status"] == "Delivered. Enjoy your pizza!"
    assert final == await view(client, order["id"])
    assert [m["event"] for m in messages[1:]] == (await history(client, order["id"]))[1:]
    for message in messages[1:]:
        assert_live_message(message, message["version"])
    states = [m["view"]["state"] for m in messages]
    assert any(s.startswith("bakePizza") for s in states)
    assert any(s.startswith("deliverPizza") for s in states)


async def test_slow_subscriber_is_closed_with_4008_and_resumes_without_gap(
    server_factory: ServerFactory,
) -> None:
    """Hub: a subscriber that falls --ws-queue messages behind is closed with 4008 while
    every HTTP event still answers 200 (the actor is not slowed); reconnecting with
    ?after=<last version received> gets the rest with no gap.

    The client stops reading by itself (``max_queue=1``) without compression, and each
    pizza carries a 30 kB note, so the views add up to ~30 MB: far more than the socket
    buffers of both ends can absorb, which is what makes this subscriber really slow.
    """
    server = server_factory("--ws-queue", "4")
    note = "x" * 30_000
    async with httpx.AsyncClient(base_url=server.url, timeout=30.0) as client:
        order = await create_order(client)
        received: list[JsonObject] = []
        async with slow_connect(socket_url(server, order["id"])) as ws:
            assert (await receive(ws))["version"] == 1
            for n in range(30):
                await send_ok(client, order["id"], add({"name": f"p{n}", "note": note}))
            code = None
            for _ in range(40):
                try:
                    received.append(json.loads(await asyncio.wait_for(ws.recv(), 30.0)))
                except ConnectionClosed as closed:
                    code = closed.rcvd.code if closed.rcvd is not None else None
                    break
        assert code == 4008
        versions = [m["version"] for m in received]
        assert versions == list(range(2, 2 + len(versions)))
        last = versions[-1] if versions else 1
        assert last < 31
        resumed: list[JsonObject] = []
        async with slow_connect(socket_url(server, order["id"], f"?after={last}")) as ws:
            while not resumed or resumed[-1]["version"] < 31:
                resumed.append(await receive(ws))
            reply = await send_ok(client, order["id"], add(HAWAII))
            resumed.append(await receive(ws))
        assert [m["version"] for m in resumed] == list(range(last + 1, 33))
        assert resumed[-1]["view"] == reply
        assert len(resumed[-2]["view"]["items"]) == 31


async def test_subscriber_past_ws_queue_bytes_is_closed_with_4008(
    server_factory: ServerFactory,
) -> None:
    """Hub: a subscriber whose unsent messages pass --ws-queue-bytes is closed with 4008,
    though far fewer than --ws-queue messages wait and --ws-send-timeout is far off: what
    one lagging subscriber holds is bounded in bytes, not only in messages (views of large
    orders are large). The orders carry on, and the subscriber is counted as dropped."""
    server = server_factory(
        "--ws-queue", "100000", "--ws-queue-bytes", "1000000", "--ws-send-timeout", "120"
    )
    note = "x" * 30_000
    async with httpx.AsyncClient(base_url=server.url, timeout=30.0) as client:
        order = await create_order(client)
        async with slow_connect(socket_url(server, order["id"])) as ws:
            assert (await receive(ws))["version"] == 1
            # The views grow to ~900 kB: ~14 MB in all, far more than the socket buffers
            # of both ends and the 1 MB --ws-queue-bytes hold.
            for n in range(30):
                await send_ok(client, order["id"], add({"name": f"p{n}", "note": note}))
            versions: list[int] = []
            code = None
            for _ in range(40):
                try:
                    versions.append(json.loads(await asyncio.wait_for(ws.recv(), 30.0))["version"])
                except ConnectionClosed as closed:
                    code = closed.rcvd.code if closed.rcvd is not None else None
                    break
        assert code == 4008
        assert versions == list(range(2, 2 + len(versions)))
        assert len(versions) < 30
        assert await metric(client, "orchestrator_websocket_dropped_total") == 1
        assert await wait_for_metric(client, SUBSCRIBERS, 0) == 0


async def test_closed_and_dropped_sockets_are_unsubscribed(
    server: ServerProcess, client: httpx.AsyncClient
) -> None:
    """Hub: a socket that is closed, or whose connection is cut, stops being a subscriber
    (orchestrator_websocket_subscribers goes back to 0)."""
    order = await create_order(client)
    sockets = [await connect(socket_url(server, order["id"])) for _ in range(5)]
    for ws in sockets:
        assert (await receive(ws))["version"] == 1
    assert await metric(client, SUBSCRIBERS) == 5
    for ws in sockets[:3]:
        await ws.close()
    for ws in sockets[3:]:
        ws.transport.abort()  # no closing handshake: the TCP connection just goes away
        await ws.wait_closed()
    assert await wait_for_metric(client, SUBSCRIBERS, 0) == 0
    # The order still publishes normally to a new subscriber.
    async with connect(socket_url(server, order["id"])) as ws:
        assert (await receive(ws))["version"] == 1
        await send_ok(client, order["id"], add(MARGHERITA))
        assert_live_message(await receive(ws), 2)
