"""The WebSockets: WS /orders/{id}/ws, the order's view on connect, then one message per
applied event; and WS /ws, the same messages for every order.

Without ``?after`` the first message is ``{"version", "event": null, "view"}``. With
``?after=V`` the endpoint replays every event after version V from the journal instead,
then goes live; messages are always in version order with no gap or repeat, because the
subscription starts before the journal is read and live messages at or below the last
version sent are skipped.

In a cluster the live messages of an order served by another node come through the
broker (``broker.fanout``); a version that no message brought is read from the journal
before the next one is sent, so the stream has no gap on any node.

Close codes: 4404 unknown order, 4422 bad ``after``, 4008 the subscriber fell behind
(resume with ``?after=<last version seen>``), 1013 the server has ``--max-subscribers``
WebSockets open (either kind; try again later).

A replay reads the journal a page at a time and sends one message at a time, so it holds
about a page of the journal whatever the order's length. A send waits while the socket's
buffers are full (uvicorn waits for the transport to drain below its high-water mark
before each write), so a client that stops reading would hold its replay, and its close
frame, forever; a send that waits longer than ``--ws-send-timeout`` gives the subscriber
up instead: it is unsubscribed and counted as dropped, and its 4008 close frame goes out
behind what the client has not read yet. A client that reads nothing for another
``--ws-send-timeout`` is left to uvicorn, which closes the connection once its buffer
drains, without the close frame. The live pump closes with 4008 under the same bounds,
and stops a replay at once when the live messages that arrived meanwhile pass
``--ws-queue``.

WS /ws is the firehose: the same messages for every order, from the moment it connects.
It has no replay, since there is no version across orders; a client reads ``GET /orders``
after connecting, and again after a 4008. Its sends and its close are bounded by
``--ws-send-timeout`` like an order socket's, so a firehose client that stops reading gives
up its ``--max-subscribers`` place within about twice that. It is subscribed before the
handshake completes, so nothing applied after the client's ``connect`` returns is missed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine

from starlette.websockets import WebSocket, WebSocketDisconnect

from orchestrator.edge.orders import view_json
from orchestrator.hub import LAGGING_CLOSE_CODE, FirehoseSubscriber, Hub, Subscriber, ws_message
from orchestrator.model import to_json
from orchestrator.numbers import whole_number
from orchestrator.registry import Registry
from orchestrator.store.base import QueryStore

STALLED_REASON = "stopped reading; reconnect with ?after=<the last version you saw>"
FIREHOSE_STALLED_REASON = "fell behind; reload the order list"


class SendStalled(WebSocketDisconnect):
    """A send waited ``--ws-send-timeout`` for the client to read: it is treated as gone."""


# RFC 6455 "Try Again Later": the server has --max-subscribers WebSockets open.
FULL_CLOSE_CODE = 1013


def capped(
    endpoint: Callable[[WebSocket], Awaitable[None]],
) -> Callable[[WebSocket], Awaitable[None]]:
    """``endpoint``, counted against ``--max-subscribers``: beyond it, a WebSocket is
    accepted and closed at once with 1013, which a browser's script can see (an HTTP
    refusal of the handshake reaches it only as 1006)."""

    async def counted(websocket: WebSocket) -> None:
        hub: Hub = websocket.app.state.hub
        if not hub.admit():
            await websocket.accept()
            await websocket.close(FULL_CLOSE_CODE, "too many subscribers; try again later")
            return
        try:
            await endpoint(websocket)
        finally:
            hub.leave()

    return counted


async def order_socket(websocket: WebSocket) -> None:
    order_id = websocket.path_params["order_id"]
    registry: Registry = websocket.app.state.registry
    hub: Hub = websocket.app.state.hub
    after_param = websocket.query_params.get("after")
    after = whole_number(after_param) if after_param is not None else None
    await websocket.accept()
    if after_param is not None and after is None:
        await websocket.close(4422, "after must be a version number")
        return
    subscriber = hub.subscribe(order_id)
    stalled = False
    try:
        snapshot = await registry.view(order_id)
        if snapshot is None:
            # Not the id: a close reason is at most 123 bytes, and the client knows it.
            await websocket.close(4404, "no such order")
            return
        private = registry.private_fields(snapshot.chart)
        if after is None:
            event = view_json(registry, snapshot)
            await _send(websocket, ws_message(snapshot.version, b"null", event))
            last = snapshot.version
        else:
            # Up to the version read after subscribing: what follows is in the subscriber's
            # buffer.
            last = await _replay(websocket, subscriber, after, snapshot.version, private)
        await _until_closed(websocket, _pump(websocket, subscriber, last, private))
    except SendStalled:
        stalled = True
    except (WebSocketDisconnect, RuntimeError):
        pass  # the client went away mid-send
    finally:
        if stalled:
            subscriber.lagging = True  # counted as dropped
        hub.unsubscribe(subscriber)
    if stalled:
        with contextlib.suppress(WebSocketDisconnect, RuntimeError):
            await _close(websocket, LAGGING_CLOSE_CODE, STALLED_REASON)


async def all_orders_socket(websocket: WebSocket) -> None:
    hub: Hub = websocket.app.state.hub
    subscriber = hub.subscribe_all()
    stalled = False
    try:
        await websocket.accept()
        await _until_closed(websocket, _pump_all(websocket, subscriber))
    except SendStalled:
        stalled = True
    except (WebSocketDisconnect, RuntimeError):
        pass  # the client went away mid-send
    finally:
        if stalled:
            subscriber.lagging = True  # counted as dropped
        hub.unsubscribe(subscriber)
    if stalled:
        with contextlib.suppress(WebSocketDisconnect, RuntimeError):
            await _close(websocket, LAGGING_CLOSE_CODE, FIREHOSE_STALLED_REASON)


async def _until_closed(websocket: WebSocket, pump: Coroutine[None, None, None]) -> None:
    """Run ``pump`` while listening for the client's close, so a dead socket is dropped at
    once rather than at the next event."""
    pumping = asyncio.create_task(pump)
    listen = asyncio.create_task(_until_disconnect(websocket))
    done, pending = await asyncio.wait({pumping, listen}, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    for task in done:
        task.result()


async def _replay(
    websocket: WebSocket,
    subscriber: Subscriber,
    after: int,
    until: int | None,
    private: frozenset[str],
) -> int:
    """Send the order's events after version ``after`` (up to ``until``, or the latest)
    from the journal, without the ``private`` context fields; returns the last version
    sent. Closed at once when left early, so its page is let go."""
    store: QueryStore = websocket.app.state.store
    last = after
    replay = store.replay(subscriber.order_id, after=after, until=until, private=private)
    async with contextlib.aclosing(replay):
        async for recorded in replay:
            if subscriber.lagging:
                break  # the live messages passed --ws-queue: the pump closes 4008
            entry = to_json(recorded.entry.as_json()).encode()
            await _send(websocket, ws_message(recorded.entry.version, entry, recorded.view))
            last = recorded.entry.version
    return last


async def _pump(
    websocket: WebSocket, subscriber: Subscriber, last: int, private: frozenset[str]
) -> None:
    """Live messages in version order. In a cluster a message may come from another node
    after a gap (a version committed before this node was bound to the order's turns, or
    lost with a broker connection): the versions between come from the journal first."""
    while True:
        batch = await subscriber.next_batch()
        if subscriber.lagging:
            await _close(
                websocket, LAGGING_CLOSE_CODE, f"fell behind; reconnect with ?after={last}"
            )
            return
        for version, message in batch:
            if version > last + 1:
                last = await _replay(websocket, subscriber, last, version - 1, private)
            if version > last:
                await _send(websocket, message)
                last = version
        if subscriber.resync:
            subscriber.resync = False
            last = await _replay(websocket, subscriber, last, None, private)


async def _pump_all(websocket: WebSocket, subscriber: FirehoseSubscriber) -> None:
    while True:
        batch = await subscriber.next_batch()
        if not batch:
            await _close(websocket, LAGGING_CLOSE_CODE, FIREHOSE_STALLED_REASON)
            return
        for _, message in batch:
            await _send(websocket, message)


async def _until_disconnect(websocket: WebSocket) -> None:
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return


async def _send(websocket: WebSocket, message: bytes) -> None:
    """Send, or raise ``SendStalled`` once the send has waited ``--ws-send-timeout``.

    Cancelling it is safe: uvicorn waits for the socket to drain before it writes any of a
    message, and then writes all of it at once."""
    try:
        async with asyncio.timeout(websocket.app.state.ws_send_timeout):
            await websocket.send_text(message.decode())
    except TimeoutError as exc:
        raise SendStalled(LAGGING_CLOSE_CODE, STALLED_REASON) from exc


async def _close(websocket: WebSocket, code: int, reason: str) -> None:
    """Close, waiting at most ``--ws-send-timeout`` for the close frame to be written
    behind what the client has not read; after that uvicorn drops the connection."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(websocket.app.state.ws_send_timeout):
            await websocket.close(code, reason)
