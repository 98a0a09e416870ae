"""Many firehose subscribers cost the event loop little (issue 16, item 3), and their number
is capped.

With 2,000 idle ``/ws`` sockets, 100 concurrent events took 3.2 s instead of 0.04 s and
``/healthz`` 2.5 s: each event woke 2,000 pumps at once, each compressing and sending it
on its own. The subscribers here are raw sockets that do the WebSocket handshake (offering
permessage-deflate, as browsers and the ``websockets`` client do) and then only count the
frames they get: a client that costs almost nothing, so the time measured is the server's.
Bounds are generous, to catch the blow-up, not to benchmark: 100 events with 2,000
subscribers must take at most 5 times as long as with none (measured in the same test,
and never less than 3 s: the code before took 7.7 s), a health check during the fan-out at
most 1.5 s (it took 2.5 s), and every subscriber must get every message.
"""

from __future__ import annotations

import asyncio
import base64
import os
import resource
import time

import httpx
from websockets.asyncio.client import connect

from tests.conftest import ServerFactory
from tests.edge.test_ws import close_code
from tests.helpers import add, create_order, eventually, http_client

SUBSCRIBERS = 2_000
EVENTS = 100
SLOWER_AT_MOST = 5.0
FLOOR_SECONDS = 3.0
HEALTH_SECONDS = 1.5


class FrameCounter(asyncio.Protocol):
    """A WebSocket client that handshakes, then counts the frames it receives."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.opened: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self.frames = 0
        self._buffer = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        key = base64.b64encode(os.urandom(16)).decode()
        transport.write(
            f"GET /ws HTTP/1.1\r\nHost: {self.host}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n".encode()
        )

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if not self.opened.done():
            head, found, rest = bytes(self._buffer).partition(b"\r\n\r\n")
            if not found:
                return
            self.opened.set_result(head.split(b"\r\n", 1)[0])
            self._buffer = bytearray(rest)
        self._count()

    def _count(self) -> None:
        """Skip whole frames (a server's are never masked), counting them."""
        buffer = self._buffer
        at = 0
        while len(buffer) - at >= 2:
            length, header = buffer[at + 1] & 0x7F, 2
            if length == 126:
                length, header = int.from_bytes(buffer[at + 2 : at + 4], "big"), 4
            elif length == 127:
                length, header = int.from_bytes(buffer[at + 2 : at + 10], "big"), 10
            if len(buffer) - at < header + length:
                break
            at += header + length
            self.frames += 1
        del buffer[:at]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(ConnectionError("closed before the handshake"))


def enough_file_descriptors(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(needed, hard), hard))


async def events_and_health(http: httpx.AsyncClient, order_ids: list[str]) -> tuple[float, float]:
    """Send one event to each order at once: the seconds until all were answered, and the
    slowest health check sent meanwhile (one every 20 ms until then)."""
    start = time.perf_counter()
    events = asyncio.gather(
        *(http.post(f"/orders/{i}/events", json=add({"n": 2})) for i in order_ids)
    )
    slowest = 0.0
    while not events.done():
        asked = time.perf_counter()
        assert (await http.get("/healthz")).status_code == 200
        slowest = max(slowest, time.perf_counter() - asked)
        await asyncio.sleep(0.02)
    answers = await events
    elapsed = time.perf_counter() - start
    assert all(r.status_code == 200 for r in answers), [r.text for r in answers[:3]]
    return elapsed, slowest


async def test_many_subscribers_slow_events_and_health_checks_little(
    server_factory: ServerFactory,
) -> None:
    enough_file_descriptors(SUBSCRIBERS + 1000)
    server = server_factory("--max-subscribers", str(SUBSCRIBERS))
    loop = asyncio.get_running_loop()
    async with http_client(server.url) as http:
        alone = [(await create_order(http))["id"] for _ in range(EVENTS)]
        watched = [(await create_order(http))["id"] for _ in range(EVENTS)]
        baseline, _ = await events_and_health(http, alone)
        transports: list[asyncio.BaseTransport] = []
        counters: list[FrameCounter] = []
        host = f"127.0.0.1:{server.port}"
        try:
            for _ in range(SUBSCRIBERS):
                transport, counter = await loop.create_connection(
                    lambda: FrameCounter(host), "127.0.0.1", server.port
                )
                transports.append(transport)
                counters.append(counter)
            statuses = await asyncio.gather(*(c.opened for c in counters))
            assert set(statuses) == {b"HTTP/1.1 101 Switching Protocols"}
            loaded, slowest_health = await events_and_health(http, watched)
            bound = max(SLOWER_AT_MOST * baseline, FLOOR_SECONDS)
            assert loaded <= bound, (
                f"{loaded:.2f} s with {SUBSCRIBERS} subscribers, {baseline:.2f} s without"
            )
            assert slowest_health <= HEALTH_SECONDS, f"a health check took {slowest_health:.2f} s"

            async def all_delivered() -> bool:
                return min(c.frames for c in counters) >= EVENTS

            await eventually(all_delivered, within=60, what="every message to every subscriber")
            assert {c.frames for c in counters} == {EVENTS}
        finally:
            for opened in transports:
                opened.close()


async def test_websockets_beyond_max_subscribers_are_closed_with_1013(
    server_factory: ServerFactory,
) -> None:
    """Order sockets and the firehose count alike; a closed one frees its place."""
    server = server_factory("--max-subscribers", "2")
    async with httpx.AsyncClient(base_url=server.url) as http:
        order = await create_order(http)
    order_url = f"{server.ws_url}/orders/{order['id']}/ws"
    async with connect(f"{server.ws_url}/ws") as firehose, connect(order_url) as own:
        await own.recv()  # the view on connect: admitted
        for url in (f"{server.ws_url}/ws", order_url):
            async with connect(url) as refused:
                assert await close_code(refused) == 1013
        await firehose.close()
        await asyncio.sleep(0.2)
        async with connect(order_url) as again:
            assert '"version":1' in str(await again.recv())
