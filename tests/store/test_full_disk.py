"""The SQLite store on a real full disk (a tmpfs filled up, tests/disk.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from orchestrator.errors import StoreUnavailable
from orchestrator.store.sqlite import SqliteStore
from tests.disk import SmallDisk
from tests.store.test_store import record

WAIT = 10.0  # a safety net for a hung test, never a timing assertion


async def test_a_full_disk_fails_every_turn_as_an_outage_logged_once(
    small_disks: Callable[[str, int], SmallDisk], caplog: pytest.LogCaptureFixture
) -> None:
    """Turns that cannot be written for want of room fail with StoreUnavailable, the error
    the inbox turns into the broker's Retry (redelivered, not counted as poison), where a
    plain Unavailable was counted; a whole batch fails at once and the outage is logged
    once with SQLite's error, not once per turn; once the disk has room, turns commit."""
    disk = small_disks("orders", 8)
    store = SqliteStore(disk.path / "orders.db")
    await store.open()
    try:
        await store.commit(record("before", 1))
        disk.fill()
        results = await asyncio.wait_for(
            asyncio.gather(
                *(store.commit(record(f"full-{n}", 1, outbox=1)) for n in range(20)),
                return_exceptions=True,
            ),
            WAIT,
        )
        assert all(isinstance(result, StoreUnavailable) for result in results), results
        assert "database or disk is full" in str(results[0])
        failures = [r for r in caplog.records if r.name == "orchestrator.store.sqlite"]
        assert len([r for r in failures if r.levelname == "ERROR"]) == 1, caplog.text
        assert "cannot rollback" not in caplog.text
        disk.free()
        await asyncio.wait_for(store.commit(record("after", 1)), WAIT)
        assert await store.load("after") is not None
        assert await store.load("full-0") is None
    finally:
        await store.close()
