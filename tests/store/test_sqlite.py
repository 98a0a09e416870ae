"""Tests of what only the SQLite adapter does: its pragmas, and databases written by
earlier releases (columns added since, journal rows that kept whole views), which open as
they are. The Store port's promises, run on both adapters, are in ``test_store.py``."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
from pathlib import Path

import pytest

from orchestrator.model import Timer, TurnRecord, to_json
from orchestrator.store.sqlite import SqliteStore
from tests.store.test_store import T0, pizza_turns, record


async def reopened_without(
    path: Path, table: str, column: str, *records: TurnRecord
) -> SqliteStore:
    """The store opened again on a database that has ``records`` but, as one made before
    ``column`` was added, not that column of ``table``."""
    store = SqliteStore(path)
    await store.open()
    for rec in records:
        await store.commit(rec)
    await store.close()
    old = sqlite3.connect(path)
    old.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
    old.commit()
    old.close()
    reopened = SqliteStore(path)
    await reopened.open()
    return reopened


async def test_a_database_from_before_invocations_gets_the_column(tmp_path: Path) -> None:
    """An orders table made before the invocations column is given it, empty, on open;
    its orders load and take new turns."""
    reopened = await reopened_without(
        tmp_path / "orders.db", "orders", "invocations", record("o-1", 1)
    )
    try:
        loaded = await reopened.load("o-1")
        assert loaded == record("o-1", 1).snapshot
        assert loaded is not None and loaded.invocations == ()
        await reopened.commit(record("o-1", 2))
        assert await reopened.load("o-1") == record("o-1", 2).snapshot
    finally:
        await reopened.close()


async def test_a_database_from_before_timer_traces_gets_the_column(tmp_path: Path) -> None:
    """A timers table made before the traceparent column is given it on open: its pending
    timers load without a trace (their firing starts one), and new ones keep theirs."""
    old_timer = Timer("o-1/t1", "o-1", T0 + 5, "after.s.t1", {"n": 1})
    setting = dataclasses.replace(record("o-1"), timers_set=(old_timer,))
    reopened = await reopened_without(tmp_path / "orders.db", "timers", "traceparent", setting)
    try:
        assert await reopened.timer("o-1/t1") == old_timer
        new_timer = Timer("o-1/t2", "o-1", T0 + 6, "after.s.t2", {}, f"00-{'c' * 32}-{'d' * 16}-01")
        await reopened.commit(dataclasses.replace(record("o-1", 2), timers_set=(new_timer,)))
        assert await reopened.due_timers(T0 + 10, 10) == [old_timer, new_timer]
    finally:
        await reopened.close()


@pytest.mark.parametrize("synchronous", ["FULL", "NORMAL"])
async def test_the_writer_connection_settings(tmp_path: Path, synchronous: str) -> None:
    """The writer commits in WAL mode with the chosen ``synchronous`` (FULL by default:
    each commit on disk before it is answered), and keeps statement journals in memory:
    on disk, a batch's multi-row statements created, wrote and deleted a temporary file
    about every second commit. Read off the writer's own connection, which holds these
    per-connection settings."""
    path = tmp_path / "orders.db"
    store = (
        SqliteStore(path) if synchronous == "FULL" else SqliteStore(path, synchronous=synchronous)
    )
    await store.open()
    try:
        await asyncio.gather(*(store.commit(record(f"o-{n}")) for n in range(20)))
        writer = store._writer
        assert writer is not None
        settings = {
            name: writer.execute(f"PRAGMA {name}").fetchone()[0]
            for name in ("journal_mode", "synchronous", "temp_store")
        }
        # synchronous: 1 is NORMAL, 2 is FULL; temp_store: 2 is MEMORY.
        assert settings == {
            "journal_mode": "wal",
            "synchronous": {"NORMAL": 1, "FULL": 2}[synchronous],
            "temp_store": 2,
        }
    finally:
        await store.close()


# The journal and orders tables as they were before the journal kept changes.
JOURNAL_OF_VIEWS = """
CREATE TABLE orders (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    chart TEXT NOT NULL,
    configuration TEXT NOT NULL,
    state TEXT NOT NULL,
    context TEXT NOT NULL,
    next_events TEXT NOT NULL,
    version INTEGER NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    created_by TEXT UNIQUE,
    invocations TEXT NOT NULL DEFAULT '[]'
);
CREATE TABLE journal (
    order_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    event_id TEXT NOT NULL,
    type TEXT NOT NULL,
    data TEXT NOT NULL,
    at REAL NOT NULL,
    state_before TEXT NOT NULL,
    state_after TEXT NOT NULL,
    duration_ms REAL NOT NULL,
    fingerprint TEXT NOT NULL,
    view BLOB NOT NULL,
    PRIMARY KEY (order_id, version),
    UNIQUE (order_id, event_id)
) WITHOUT ROWID;
"""


def write_journal_of_views(path: Path, records: list[TurnRecord]) -> None:
    """A database as the store wrote it when each journal row kept its whole view."""
    conn = sqlite3.connect(path)
    try:
        conn.executescript(JOURNAL_OF_VIEWS)
        for rec in records:
            snap, entry = rec.snapshot, rec.journal
            conn.execute(
                "INSERT OR REPLACE INTO orders (id, chart, configuration, state, context,"
                " next_events, version, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?)",
                (
                    snap.order_id,
                    snap.chart,
                    to_json(snap.configuration),
                    snap.state,
                    snap.context_json,
                    to_json(snap.next_events),
                    snap.version,
                    snap.created_at,
                    snap.updated_at,
                ),
            )
            conn.execute(
                "INSERT INTO journal VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (
                    entry.order_id,
                    entry.version,
                    entry.event_id,
                    entry.type,
                    to_json(entry.data),
                    entry.at,
                    entry.state_before,
                    entry.state_after,
                    entry.duration_ms,
                    rec.reply.fingerprint,
                    rec.reply.body,
                ),
            )
        conn.commit()
    finally:
        conn.close()


async def test_a_journal_of_views_is_read_and_carried_on(tmp_path: Path, charts_dir: Path) -> None:
    """A database written when journal rows kept whole views opens as it is: its views are
    replayed and repeated as they were, and the turns after them keep changes that apply to
    the context in the last view, so a replay across the two forms gives every reply."""
    path = tmp_path / "orders.db"
    records = pizza_turns(charts_dir, 40)
    write_journal_of_views(path, records[:25])
    store = SqliteStore(path)
    await store.open()
    try:
        loaded = await store.load("o-1")
        # No change kept yet: counting starts at the last view.
        assert loaded == dataclasses.replace(records[24].snapshot, context_patched=0)
        replies = [rec.reply.body for rec in records]
        assert [r.view async for r in store.replay("o-1")] == replies[:25]
        for rec in records[25:]:
            await store.commit(rec)
        assert [r.view async for r in store.replay("o-1")] == replies
        assert [r.view async for r in store.replay("o-1", after=24)] == replies[24:]
        assert [r.view async for r in store.replay("o-1", after=30)] == replies[30:]
        for rec in records:
            assert await store.reply_for("o-1", rec.journal.event_id) == rec.reply
        assert await store.journal("o-1") == [rec.journal for rec in records]
    finally:
        await store.close()
