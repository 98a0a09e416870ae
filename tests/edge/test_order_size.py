"""One order cannot fill the disk or the server's memory (issue 16, item 2).

Through a real server: the journal grows linearly with the events an order takes, not with
the square of its size; ``--max-order-bytes`` and ``--max-order-events`` refuse a turn that
would pass them with a 409 naming the limit, and keep nothing of it; and replaying a long
order over ``WS /orders/{id}/ws?after=0`` to many clients, some of which never read, keeps
the server's memory bounded and closes the non-readers with 4008.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from pathlib import Path

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.conftest import ServerFactory, ServerProcess
from tests.helpers import add, create_order, history, metric, remove, send, view

PROBLEM = "application/problem+json"


def journal_bytes(db: Path, order_id: str) -> int:
    """Bytes the journal stores for one order: the sum of its rows' values (text and blobs
    by length, numbers as 8), whatever columns the schema has."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10.0)
    try:
        rows = conn.execute("SELECT * FROM journal WHERE order_id = ?", (order_id,))
        return sum(
            len(value) if isinstance(value, str | bytes) else 8 for row in rows for value in row
        )
    finally:
        conn.close()


def rss_bytes(server: ServerProcess) -> int:
    """The server process's resident memory (VmRSS in /proc/<pid>/status)."""
    assert server.proc is not None
    status = Path(f"/proc/{server.proc.pid}/status").read_text()
    line = next(line for line in status.splitlines() if line.startswith("VmRSS:"))
    return int(line.split()[1]) * 1024


async def add_many(http: httpx.AsyncClient, order_id: str, count: int, *, width: int = 16) -> None:
    """``count`` ADD_PIZZAs of distinct pizzas, ``width`` at a time (a group commit each)."""
    for start in range(0, count, width):
        batch = range(start, min(start + width, count))
        responses = await asyncio.gather(
            *(
                send(http, order_id, add({"name": f"pizza number {n:06d}", "size": "L"}))
                for n in batch
            )
        )
        assert all(r.status_code == 200 for r in responses), responses[0].text


async def test_the_journal_grows_linearly_with_the_events(server: ServerProcess) -> None:
    """Each ADD_PIZZA adds about 40 bytes to the context. A journal row that kept the whole
    view made the journal grow with the square of the events (2,000 events: about 16 times
    the bytes of 500); what it keeps now is linear in them. The stated factor: 4 times the
    events take at most 5 times the bytes (1.25 times linear)."""
    async with httpx.AsyncClient(base_url=server.url, timeout=60.0) as http:
        order_id = (await create_order(http))["id"]
        await add_many(http, order_id, 499)
        after_500 = journal_bytes(server.db, order_id)
        await add_many(http, order_id, 1500)
        after_2000 = journal_bytes(server.db, order_id)
        final = await view(http, order_id)
    assert final["version"] == 2000
    assert len(final["items"]) == 2000
    assert after_2000 <= 5 * after_500, (after_500, after_2000)
    # And in absolute terms: a few hundred bytes per event, not kilobytes.
    assert after_2000 / 2000 < 1024, after_2000 / 2000


async def test_a_turn_past_max_order_bytes_is_refused_and_changes_nothing(
    server_factory: ServerFactory,
) -> None:
    """--max-order-bytes (default 1 MiB): pizzas of 60 KiB are accepted until the context
    would pass 1 MiB; that turn gets a 409 problem naming the limit, and the order's view,
    version and history stay what they were."""
    server = server_factory()
    note = "x" * (60 * 1024)
    async with httpx.AsyncClient(base_url=server.url, timeout=60.0) as http:
        order = await create_order(http, {"name": "first", "note": note})
        refused: httpx.Response | None = None
        for n in range(30):
            response = await send(http, order["id"], add({"name": f"p{n}", "note": note}))
            if response.status_code != 200:
                refused = response
                break
        assert refused is not None, "30 pizzas of 60 KiB were all accepted"
        assert refused.status_code == 409, refused.text
        assert refused.headers["content-type"] == PROBLEM
        problem = refused.json()
        assert problem["error"] == "OrderTooLarge"
        assert problem["limit"] == "max-order-bytes"
        assert problem["maximum"] == 1024 * 1024
        assert "max-order-bytes" in problem["detail"]
        before = await view(http, order["id"])
        assert 16 <= before["version"] <= 17  # 17 or 18 pizzas of 60 KiB fit in 1 MiB
        # Again, now with a key: refused the same way, and the key is not used up.
        again = await send(http, order["id"], add({"name": "again", "note": note}), key="k1")
        assert again.status_code == 409, again.text
        after = await view(http, order["id"])
        assert after == before
        entries = await history(http, order["id"])
        assert [e["version"] for e in entries] == list(range(1, before["version"] + 1))
        # What fits is still accepted.
        small = await send(http, order["id"], add({"name": "small"}), key="k1")
        assert small.status_code == 200, small.text
        assert small.json()["version"] == before["version"] + 1


async def test_an_event_past_max_order_events_is_refused_and_changes_nothing(
    server_factory: ServerFactory,
) -> None:
    """--max-order-events: the event that would be number N+1 gets a 409 problem naming
    the limit, and nothing of it is kept."""
    server = server_factory("--max-order-events", "5")
    async with httpx.AsyncClient(base_url=server.url, timeout=30.0) as http:
        order = await create_order(http)
        for n in range(4):
            assert (await send(http, order["id"], add({"name": f"p{n}"}))).status_code == 200
        before = await view(http, order["id"])
        refused = await send(http, order["id"], add({"name": "sixth"}))
        assert refused.status_code == 409, refused.text
        assert refused.headers["content-type"] == PROBLEM
        problem = refused.json()
        assert (problem["error"], problem["limit"], problem["maximum"]) == (
            "OrderTooLarge",
            "max-order-events",
            5,
        )
        assert await view(http, order["id"]) == before
        assert len(await history(http, order["id"])) == 5


# -- replay over the WebSocket ------------------------------------------------------------

REPLAY_EVENTS = 5_000
READERS = 10
NON_READERS = 2
NOTE_BYTES = 30_000  # every view is a little over this: the replay is ~150 MB per client
RSS_BOUND = 200 * 1024 * 1024
SEND_TIMEOUT = 5.0
# The non-readers must be dropped within this many seconds of the replay's start: the
# replay to them blocks once the socket buffers are full, then --ws-send-timeout runs out.
DROP_WITHIN = 60.0


async def build_long_order(http: httpx.AsyncClient) -> tuple[str, int]:
    """An order of about 5,000 events whose context stays ~30 KB: a pizza with a long
    note, then rounds of 50 small pizzas added and removed (each round concurrent)."""
    order_id = (await create_order(http, {"name": "big", "note": "n" * NOTE_BYTES}))["id"]
    small = {"name": "s"}
    version = 1
    while version + 100 <= REPLAY_EVENTS:
        for event in (add(small), remove(small)):
            responses = await asyncio.gather(*(send(http, order_id, event) for _ in range(50)))
            assert all(r.status_code == 200 for r in responses), responses[0].text
        version += 100
    return order_id, version


async def read_replay(ws: ClientConnection, last: int) -> list[int]:
    """Versions of the messages received until version ``last``; checks only the prefix
    of each message, to keep the test's own CPU for the server."""
    versions: list[int] = []
    while not versions or versions[-1] < last:
        message = await asyncio.wait_for(ws.recv(), 60.0)
        assert isinstance(message, str)
        head = message[: message.index(",")]
        versions.append(int(head.removeprefix('{"version":')))
    return versions


async def close_code_after_reading(ws: ClientConnection) -> tuple[int, int | None]:
    """Read everything the server sent: (how many messages, the close code)."""
    count = 0
    try:
        while True:
            await asyncio.wait_for(ws.recv(), 60.0)
            count += 1
    except ConnectionClosed as closed:
        return count, closed.rcvd.code if closed.rcvd is not None else None


async def test_replay_to_many_clients_keeps_memory_bounded_and_drops_non_readers(
    server_factory: ServerFactory,
) -> None:
    """10 clients replay a 5,000-event order of 30 KB views (~150 MB each) with ?after=0,
    while 2 more connect the same way and never read. The server's RSS stays under 200 MB
    throughout (it held a page of 500 views per client: 15 MB each, and the non-readers'
    pages for as long as they stayed); the readers get every version once, in order; the
    non-readers are dropped within the stated bound, while they still do not read (the
    replay blocked on their full sockets, so --ws-send-timeout ran out), and when they read
    at last they find the messages the sockets held, then close code 4008."""
    server = server_factory("--ws-send-timeout", str(SEND_TIMEOUT))
    async with httpx.AsyncClient(base_url=server.url, timeout=60.0) as http:
        order_id, last = await build_long_order(http)
        assert (await view(http, order_id))["version"] == last
        url = f"{server.ws_url}/orders/{order_id}/ws?after=0"
        peak = rss_bytes(server)
        sampling = True

        async def sample() -> None:
            nonlocal peak
            while sampling:
                peak = max(peak, rss_bytes(server))
                await asyncio.sleep(0.05)

        sampler = asyncio.create_task(sample())
        # max_queue=1: the client library stops reading the socket once a message waits.
        non_readers = [
            await connect(url, max_queue=1, compression=None, max_size=None)
            for _ in range(NON_READERS)
        ]
        started = time.monotonic()
        readers = [
            await connect(url, compression=None, max_size=None, max_queue=4) for _ in range(READERS)
        ]

        async def drain_once_dropped() -> list[tuple[int, int | None]]:
            """Wait, without reading, until the server has dropped both non-readers; then
            read what their sockets hold, up to the close."""
            while await metric(http, "orchestrator_websocket_dropped_total") < NON_READERS:
                assert time.monotonic() - started < DROP_WITHIN, (
                    f"the non-readers were not dropped within {DROP_WITHIN}s"
                )
                await asyncio.sleep(0.05)
            return list(await asyncio.gather(*(close_code_after_reading(ws) for ws in non_readers)))

        dropping = asyncio.create_task(drain_once_dropped())
        try:
            replays = await asyncio.gather(*(read_replay(ws, last) for ws in readers))
            drained = await dropping
        finally:
            dropping.cancel()
            sampling = False
            await sampler
            for ws in (*readers, *non_readers):
                ws.transport.abort()
        assert peak < RSS_BOUND, f"server RSS reached {peak / 2**20:.0f} MiB"
        for versions in replays:
            assert versions == list(range(1, last + 1))
        for count, code in drained:
            assert code == 4008
            assert count < last  # closed, not given the whole replay
        assert (await http.get("/healthz")).status_code == 200
        final = json.loads((await http.get(f"/orders/{order_id}")).text)
        assert final["version"] == last
