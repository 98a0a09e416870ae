"""The Python client (``orchestrator.client``) against a real server subprocess.

Commands, reads and pages come back as typed values; problems as typed errors with the
problem's fields; a command whose answer is lost is retried with the same
Idempotency-Key and applied once (a real TCP proxy in the test hangs up on the client
after the server has answered, which is what a dropped connection looks like to it);
``watch`` resumes after the server is killed and restarted without missing or repeating
a version. The example of docs/client.md is run as it is written.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from orchestrator.client import (
    AsyncClient,
    Client,
    Conflict,
    ConnectionFailed,
    Invalid,
    NotFound,
    PreconditionFailed,
    Retries,
    Unauthorized,
    Update,
)
from tests.conftest import ServerFactory, ServerProcess
from tests.helpers import HAWAII, MARGHERITA

ROOT = Path(__file__).resolve().parent.parent
PIZZA = {"pizza": HAWAII}
# Fast retries, so that a test of them takes well under a second each.
QUICK = Retries(attempts=4, backoff=0.05, max_wait=0.5)


async def test_create_send_get_history_and_list(server: ServerProcess) -> None:
    async with AsyncClient(server.url) as client:
        order = await client.create(PIZZA)
        assert order.chart == "pizza"
        assert order.state == "orderPizza"
        assert order.version == 1
        assert order.items == [HAWAII]
        assert "CONFIRM_PIZZA" in order.next_events

        added = await client.send(order.id, "ADD_PIZZA", {"pizza": MARGHERITA}, key="add-1")
        assert added.version == 2
        assert added.items == [HAWAII, MARGHERITA]
        assert await client.get(order.id) == added

        entries = await client.history(order.id)
        assert [(e.version, e.type) for e in entries] == [(1, "ADD_PIZZA"), (2, "ADD_PIZZA")]
        assert entries[1].event_id == "add-1"
        assert entries[1].data == {"pizza": MARGHERITA}
        assert [e.version for e in await client.history(order.id, after=1)] == [2]

        second = await client.create(PIZZA)
        page = await client.orders(limit=1)
        assert [o.id for o in page.orders] == [second.id]  # newest first
        assert page.next_cursor is not None
        rest = await client.orders(limit=1, cursor=page.next_cursor)
        assert [o.id for o in rest.orders] == [order.id]
        assert rest.next_cursor is None
        assert {o.id for o in (await client.orders(state="orderPizza")).orders} == {
            order.id,
            second.id,
        }
        assert (await client.orders(chart="payment")).orders == []

        charts = await client.charts()
        assert charts.default == "pizza"
        assert "payment" in charts.names
        payment = await client.chart("payment")
        assert payment.creatable
        assert set(payment.create_fields) == {"products", "supplier", "address"}
        assert any(t.event == "PLACE_ORDER" for t in payment.transitions)
        assert any(s.initial for s in payment.states)


async def test_problems_are_typed_errors_with_their_fields(server: ServerProcess) -> None:
    async with AsyncClient(server.url) as client:
        order = await client.create(PIZZA)
        await client.send(order.id, "CONFIRM_PIZZA")

        with pytest.raises(Conflict) as conflict:
            await client.send(order.id, "ADD_PIZZA", {"pizza": HAWAII})
        assert conflict.value.status == 409
        assert conflict.value.allowed is not None
        assert "ADD_PIZZA" not in conflict.value.allowed
        assert conflict.value.version is not None and conflict.value.version >= 2
        assert "not allowed" in conflict.value.detail

        fresh = await client.create(PIZZA)
        with pytest.raises(PreconditionFailed) as stale:
            await client.send(fresh.id, "ADD_PIZZA", {"pizza": HAWAII}, if_match=0)
        assert (stale.value.status, stale.value.version) == (412, 1)

        with pytest.raises(Invalid) as invalid:
            await client.create({"pizza": HAWAII, "extra": 1})
        assert (invalid.value.status, invalid.value.field) == (422, "extra")
        with pytest.raises(Invalid) as unknown:
            await client.send(fresh.id, "NO_SUCH_EVENT")
        assert unknown.value.field == "type"
        assert unknown.value.title == "Unprocessable content"

        with pytest.raises(NotFound) as missing:
            await client.get("no-such-order")
        assert missing.value.status == 404
        with pytest.raises(NotFound):
            await client.chart("no-such-chart")
        assert (await client.get(fresh.id)).version == 1  # nothing applied by any of them


@contextlib.asynccontextmanager
async def lossy_proxy(target_port: int, *, lose: int) -> AsyncIterator[str]:
    """A TCP proxy to the server that, on its first ``lose`` connections, forwards the
    request, waits for the server's first byte of answer and then hangs up on the client
    without passing it on: the command was applied, and the client never heard."""
    lost = 0
    handlers: set[asyncio.Task[None]] = set()

    async def pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal lost
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target_port)
        pumps = [asyncio.create_task(pump(reader, up_writer))]
        if lost < lose:
            lost += 1
            # The server answers: it has applied the command.
            pumps.append(asyncio.create_task(up_reader.read(1)))  # type: ignore[arg-type]
        else:
            pumps.append(asyncio.create_task(pump(up_reader, writer)))
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for each in pumps:
                each.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            for stream in (writer, up_writer):
                stream.close()
                with contextlib.suppress(ConnectionError):
                    await stream.wait_closed()

    proxy = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = proxy.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proxy.close()
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        await proxy.wait_closed()


async def test_a_command_whose_answer_is_lost_is_retried_with_its_key_and_applied_once(
    server: ServerProcess,
) -> None:
    async with (
        lossy_proxy(server.port, lose=1) as url,
        AsyncClient(url, retries=QUICK) as through_proxy,
    ):
        order = await through_proxy.create(PIZZA)
    async with lossy_proxy(server.port, lose=2) as url, AsyncClient(url, retries=QUICK) as again:
        confirmed = await again.send(order.id, "CONFIRM_PIZZA")
    async with AsyncClient(server.url) as client:
        page = await client.orders()
        assert [o.id for o in page.orders] == [order.id]  # one order, not two
        entries = await client.history(order.id)
    assert [e.type for e in entries].count("CONFIRM_PIZZA") == 1
    assert confirmed.version == 2  # the first answer again, not a 409 for a second CONFIRM
    key = entries[0].event_id
    assert re.fullmatch(r"[0-9a-f]{32}", key), key  # the client's key, not the server's


async def test_the_sync_client_retries_with_its_key_too(server: ServerProcess) -> None:
    async with lossy_proxy(server.port, lose=1) as url:

        def create() -> str:
            with Client(url, retries=QUICK) as client:
                return client.create(PIZZA, key="sync-create").id

        order_id = await asyncio.to_thread(create)
    with Client(server.url) as client:
        assert [o.id for o in client.orders().orders] == [order_id]
        assert client.history(order_id)[0].event_id == "sync-create"


async def test_no_answer_after_the_retries_is_connection_failed(
    server: ServerProcess,
) -> None:
    async with lossy_proxy(server.port, lose=4) as url, AsyncClient(url, retries=QUICK) as client:
        with pytest.raises(ConnectionFailed):
            await client.create(PIZZA, key="lost-4-times")
    # Each lost try reached the server under the same key: still one order.
    async with AsyncClient(server.url) as client:
        assert len((await client.orders()).orders) == 1


async def test_watch_resumes_after_a_server_restart_without_missing_or_repeating(
    server: ServerProcess,
) -> None:
    async with AsyncClient(server.url, retries=Retries(backoff=0.1, max_wait=1.0)) as client:
        order = await client.create(PIZZA)
        updates: list[Update] = []
        reached: dict[int, asyncio.Event] = {v: asyncio.Event() for v in (1, 3, 6)}

        async def watch() -> None:
            async for update in client.watch(order.id):
                updates.append(update)
                if update.version in reached:
                    reached[update.version].set()
                if update.version == 6:
                    return

        watching = asyncio.create_task(watch())
        await asyncio.wait_for(reached[1].wait(), 30)
        for _ in range(2):
            await client.send(order.id, "ADD_PIZZA", {"pizza": MARGHERITA})
        await asyncio.wait_for(reached[3].wait(), 30)
        await asyncio.to_thread(server.kill)
        await asyncio.to_thread(server.restart)
        # Sent as soon as the server is back, likely before the watch reconnects: the
        # replay from the journal brings these.
        for _ in range(3):
            await client.send(order.id, "ADD_PIZZA", {"pizza": HAWAII})
        await asyncio.wait_for(watching, 60)  # bounded: a hang fails, not a timing check
    assert [u.version for u in updates] == [1, 2, 3, 4, 5, 6]
    assert updates[0].event is None  # the current view first
    assert [u.event.type for u in updates[1:] if u.event] == ["ADD_PIZZA"] * 5
    assert updates[-1].order.version == 6
    assert len(updates[-1].order.items) == 6


async def test_watch_of_an_unknown_order_is_not_found(server: ServerProcess) -> None:
    async with AsyncClient(server.url) as client:
        with pytest.raises(NotFound):
            async for _ in client.watch("no-such-order"):
                pass


def test_the_sync_client(server: ServerProcess) -> None:
    with Client(server.url) as client:
        order = client.create(PIZZA)
        assert client.send(order.id, "ADD_PIZZA", {"pizza": MARGHERITA}).version == 2
        assert client.get(order.id).items == [HAWAII, MARGHERITA]
        assert [e.version for e in client.history(order.id)] == [1, 2]
        assert client.charts().default == "pizza"
        assert client.chart("pizza").create_fields == {"pizza": "object"}
        watched = client.watch(order.id, after=0)
        assert [next(watched).version, next(watched).version] == [1, 2]
        watched.close()
        client.send(order.id, "CONFIRM_PIZZA")
        with pytest.raises(Conflict) as conflict:
            client.send(order.id, "CONFIRM_PIZZA")
        assert conflict.value.allowed is not None
        assert "CONFIRM_PIZZA" not in conflict.value.allowed


def test_a_token_is_sent_as_a_bearer(server_factory: ServerFactory) -> None:
    server = server_factory("--api-token", "s3cret")
    with Client(server.url) as anonymous, pytest.raises(Unauthorized) as refused:
        anonymous.orders()
    assert refused.value.status == 401
    with Client(server.url, token="s3cret") as client:
        order = client.create(PIZZA)
        assert next(client.watch(order.id)).version == 1


def test_the_example_in_docs_client_md_runs(server: ServerProcess, tmp_path: Path) -> None:
    """The first python block of docs/client.md, run as a user would, against a server."""
    document = (ROOT / "docs" / "client.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", document, re.DOTALL)
    assert blocks, "docs/client.md has no python example"
    script = tmp_path / "example.py"
    script.write_text(blocks[0])
    result = subprocess.run(
        [sys.executable, str(script)],
        env={**os.environ, "ORCHESTRATOR_URL": server.url},
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "done" in result.stdout
