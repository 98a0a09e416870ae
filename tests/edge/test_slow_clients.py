"""Slow clients are cut off, not held (issue 16, item 7).

400 connections with unfinished headers were held open for minutes: uvicorn bounds only
the wait between two requests. Here the server runs with ``--header-timeout 1
--body-timeout 1``, and raw sockets send what an HTTP client will not: nothing, half a
request line, headers without their end, a body that trickles. Each must be closed within
the deadline plus a generous margin (``MARGIN``, for a busy machine); without the fix each
one stays open past it. Connections that are not slow (a kept-alive one between requests,
a WebSocket once open) must not be cut.
"""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from websockets.asyncio.client import connect

from tests.conftest import ServerFactory, ServerProcess
from tests.edge.test_ws import receive
from tests.helpers import create_order, list_orders

DEADLINE = 1.0
MARGIN = 4.0
SLOW = ("--header-timeout", str(DEADLINE), "--body-timeout", str(DEADLINE))


@pytest.fixture
def slow_guarded(server_factory: ServerFactory) -> ServerProcess:
    return server_factory(*SLOW)


async def until_closed(reader: asyncio.StreamReader) -> tuple[bytes, float]:
    """Everything the server sends until it closes, and how long that took; fails after
    the deadline and its margin."""
    start = time.monotonic()
    received = b""
    while True:
        try:
            chunk = await asyncio.wait_for(reader.read(65536), DEADLINE + MARGIN)
        except TimeoutError:
            raise AssertionError(f"still open after {DEADLINE + MARGIN} s: {received!r}") from None
        if not chunk:
            return received, time.monotonic() - start
        received += chunk


async def opened(server: ServerProcess) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", server.port)


HOST = b"host: 127.0.0.1\r\n"


@pytest.mark.parametrize(
    "sent",
    [
        b"GET /ord",  # half a request line
        b"GET /orders HTTP/1.1\r\n" + HOST,  # headers without the empty line that ends them
        b"POST /orders HTTP/1.1\r\n" + HOST + b"content-type: application/json\r\nx-a",
    ],
)
async def test_unfinished_headers_get_408_and_are_closed(
    slow_guarded: ServerProcess, sent: bytes
) -> None:
    reader, writer = await opened(slow_guarded)
    try:
        writer.write(sent)
        received, _ = await until_closed(reader)
    finally:
        writer.close()
    assert received.startswith(b"HTTP/1.1 408 "), received
    assert b"application/problem+json" in received


async def test_a_connection_that_sends_nothing_is_closed(slow_guarded: ServerProcess) -> None:
    reader, writer = await opened(slow_guarded)
    try:
        received, _ = await until_closed(reader)
    finally:
        writer.close()
    assert received == b""  # no request began, so there is nothing to answer


async def test_headers_sent_a_byte_at_a_time_are_cut_off(slow_guarded: ServerProcess) -> None:
    """Each byte arrives well within the deadline; the headers as a whole do not."""
    reader, writer = await opened(slow_guarded)
    request = b"GET /orders HTTP/1.1\r\n" + HOST + b"x-slow: " + b"z" * 100 + b"\r\n\r\n"

    async def trickle() -> None:
        for byte in request:
            writer.write(bytes([byte]))
            await asyncio.sleep(DEADLINE / 10)

    sending = asyncio.create_task(trickle())
    try:
        received, took = await until_closed(reader)
    finally:
        sending.cancel()
        writer.close()
    assert received.startswith(b"HTTP/1.1 408 "), received
    assert took < DEADLINE + MARGIN


async def test_a_trickling_body_gets_408_and_changes_nothing(
    slow_guarded: ServerProcess,
) -> None:
    reader, writer = await opened(slow_guarded)
    body = b'{"pizza": {"name": "slow"}}'
    head = b"POST /orders HTTP/1.1\r\n" + HOST + b"content-type: application/json\r\n"
    writer.write(head + b"content-length: %d\r\n\r\n" % len(body) + body[:5])

    async def trickle() -> None:
        for byte in body[5:]:
            await asyncio.sleep(DEADLINE / 5)
            writer.write(bytes([byte]))

    sending = asyncio.create_task(trickle())
    try:
        received, _ = await until_closed(reader)
    finally:
        sending.cancel()
        writer.close()
    assert received.startswith(b"HTTP/1.1 408 "), received
    async with httpx.AsyncClient(base_url=slow_guarded.url) as http:
        assert (await list_orders(http))["orders"] == []


async def test_many_slow_connections_are_all_closed_and_others_served(
    slow_guarded: ServerProcess,
) -> None:
    connections = [await opened(slow_guarded) for _ in range(200)]
    try:
        for _, writer in connections:
            writer.write(b"GET /orders HTTP/1.1\r\n" + HOST)
        async with httpx.AsyncClient(base_url=slow_guarded.url) as http:
            assert (await http.get("/healthz")).status_code == 200
        results = await asyncio.gather(*(until_closed(reader) for reader, _ in connections))
    finally:
        for _, writer in connections:
            writer.close()
    assert all(received.startswith(b"HTTP/1.1 408 ") for received, _ in results)


async def test_a_kept_alive_connection_and_a_websocket_are_not_cut(
    slow_guarded: ServerProcess,
) -> None:
    """Between requests a connection is idle, not slow (uvicorn's keep-alive timeout, 75 s,
    applies); an open WebSocket has no request in progress."""
    reader, writer = await opened(slow_guarded)
    request = b"GET /healthz HTTP/1.1\r\n" + HOST + b"\r\n"
    try:
        for _ in range(2):
            writer.write(request)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            assert head.startswith(b"HTTP/1.1 200 "), head
            await reader.readexactly(int(head.split(b"content-length: ")[1].split(b"\r\n")[0]))
            await asyncio.sleep(DEADLINE * 2)
    finally:
        writer.close()
    async with httpx.AsyncClient(base_url=slow_guarded.url) as http:
        order = await create_order(http)
        async with connect(f"{slow_guarded.ws_url}/orders/{order['id']}/ws") as ws:
            assert (await receive(ws))["version"] == 1
            await asyncio.sleep(DEADLINE * 2)
            await http.post(f"/orders/{order['id']}/events", json={"type": "CONFIRM_PIZZA"})
            assert (await receive(ws))["version"] == 2


@pytest.mark.parametrize("value", ["0", "-1", "nan"])
async def test_a_deadline_must_be_positive(server_factory: ServerFactory, value: str) -> None:
    with pytest.raises(RuntimeError, match="header_timeout must be a number of seconds"):
        server_factory("--header-timeout", value)
