"""WS /orders/{id}/ws: the order's view on connect, then one message per applied event.

Without ``?after`` the first message is ``{"version", "event": null, "view"}``. With
``?after=V`` the endpoint replays every event after version V from the journal instead,
then goes live; messages are always in version order with no gap or repeat, because the
subscription starts before the journal is read and live messages at or below the last
version sent are skipped.

Close codes: 4404 unknown order, 4422 bad ``after``, 4008 the subscriber fell behind
(resume with ``?after=<last version seen>``).
"""

from __future__ import annotations

import asyncio
import json

from starlette.websockets import WebSocket, WebSocketDisconnect

from orchestrator.edge.numbers import whole_number
from orchestrator.hub import LAGGING_CLOSE_CODE, Hub, Subscriber, ws_message
from orchestrator.registry import Registry
from orchestrator.store.base import Store

REPLAY_PAGE = 500


async def order_socket(websocket: WebSocket) -> None:
    order_id = websocket.path_params["order_id"]
    registry: Registry = websocket.app.state.registry
    hub: Hub = websocket.app.state.hub
    store: Store = websocket.app.state.store
    after_param = websocket.query_params.get("after")
    after = whole_number(after_param) if after_param is not None else None
    await websocket.accept()
    if after_param is not None and after is None:
        await websocket.close(4422, "after must be a version number")
        return
    subscriber = hub.subscribe(order_id)
    try:
        snapshot = await registry.view(order_id)
        if snapshot is None:
            await websocket.close(4404, f"order {order_id} does not exist")
            return
        if after is None:
            event = json.dumps(snapshot.view(), separators=(",", ":")).encode()
            await _send(websocket, ws_message(snapshot.version, b"null", event))
            last = snapshot.version
        else:
            last = after
            while True:
                page = await store.journal(order_id, after=last, limit=REPLAY_PAGE)
                for recorded in page:
                    entry = json.dumps(recorded.entry.as_json(), separators=(",", ":")).encode()
                    await _send(websocket, ws_message(recorded.entry.version, entry, recorded.view))
                    last = recorded.entry.version
                if len(page) < REPLAY_PAGE:
                    break
        # Listen for the client's close while pumping, so a dead socket is dropped at once
        # rather than at the next event.
        pump = asyncio.create_task(_pump(websocket, subscriber, last))
        listen = asyncio.create_task(_until_disconnect(websocket))
        done, pending = await asyncio.wait({pump, listen}, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for task in done:
            task.result()
    except (WebSocketDisconnect, RuntimeError):
        pass  # the client went away mid-send
    finally:
        hub.unsubscribe(subscriber)


async def _pump(websocket: WebSocket, subscriber: Subscriber, last: int) -> None:
    while True:
        batch = await subscriber.next_batch()
        if not batch:
            await websocket.close(LAGGING_CLOSE_CODE, f"fell behind; reconnect with ?after={last}")
            return
        for version, message in batch:
            if version > last:
                await _send(websocket, message)
                last = version


async def _until_disconnect(websocket: WebSocket) -> None:
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return


async def _send(websocket: WebSocket, message: bytes) -> None:
    await websocket.send_text(message.decode())
