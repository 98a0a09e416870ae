"""The start-up sequence of orchestrator.runtime, run in process on real files."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path

import httpx
import pytest

from orchestrator.broker.memory import MemoryBroker
from orchestrator.inbox import INBOX_QUEUE
from orchestrator.messages import EVENT_PREFIX, Message, encode, event_key
from orchestrator.runtime import Runtime, sibling
from orchestrator.settings import Settings
from tests.conftest import ServerFactory
from tests.helpers import create_order, eventually
from tests.saga.conftest import ledger

# How long the delivery's ledger is held locked, which holds start-up at step 4 while the
# inbox, started at step 3, already applies events. Generous: the work in that window
# takes milliseconds.
HOLD = 1.5


def lock_for(path: Path, seconds: float) -> threading.Thread:
    """Hold an exclusive lock on a fresh SQLite file (rollback journal) for ``seconds``: a
    connection that turns it to WAL, as a ledger opening does, waits for it."""
    path.unlink(missing_ok=True)
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("BEGIN EXCLUSIVE")
    conn.execute("CREATE TABLE held (x)")

    def release() -> None:
        time.sleep(seconds)
        conn.execute("COMMIT")
        conn.close()

    thread = threading.Thread(target=release)
    thread.start()
    return thread


async def test_rows_relayed_during_start_are_not_resent(
    tmp_path: Path, server_factory: ServerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 23, item 6: the inbox starts (step 3) before the relay resends what a crash
    left (step 5), so a row committed and relayed in between, whose delete was not yet
    written, was read as left behind and published a second time. Now the rows left behind
    are read at step 1b, before any turn of this run can commit.

    A CONFIRM_PIZZA waits in the broker's file for an order that exists; the delivery's
    ledger is locked for HOLD seconds so start-up stays at step 4 while the inbox applies
    it and the relay publishes its MAKE_PIZZA. The one stand-in: the store's deletes of
    sent rows are held until start-up is over (``mark_sent`` collects them), which stretches
    the milliseconds between a row's confirm and its delete, where the race lives, to the
    whole window. The kitchen's ledger then shows how many MAKE_PIZZA messages came."""
    server = server_factory()
    async with httpx.AsyncClient(base_url=server.url) as http:
        order_id = (await create_order(http))["id"]
    assert server.terminate() == 0
    db = server.db

    broker = MemoryBroker(sibling(db, "broker"))
    await broker.connect()
    await broker.declare_queue(INBOX_QUEUE, [EVENT_PREFIX + "#"])
    confirm = Message("confirm-1", "CONFIRM_PIZZA", "/test", order_id, {})
    await broker.publish(event_key("CONFIRM_PIZZA"), encode(confirm, time.time()), message_id="c-1")
    await broker.close()

    runtime = Runtime(Settings(db=db))
    held: list[str] = []
    monkeypatch.setattr(runtime.store, "mark_sent", held.extend)
    locker = lock_for(sibling(db, "delivery"), HOLD)
    try:
        await runtime.start()
        locker.join()
        await eventually(
            lambda: _state_is(runtime, order_id, "done"), within=30.0, what="the order done"
        )
        await asyncio.sleep(0.5)  # a second MAKE_PIZZA, if any, reaches the kitchen meanwhile
    finally:
        locker.join()
        await runtime.stop()
    times, received = ledger(db, "kitchen", "MAKE_PIZZA")[order_id]
    assert (times, received) == (1, 1), "MAKE_PIZZA was published twice"


async def _state_is(runtime: Runtime, order_id: str, state: str) -> bool:
    snapshot = await runtime.registry.view(order_id)
    return snapshot is not None and snapshot.state == state
