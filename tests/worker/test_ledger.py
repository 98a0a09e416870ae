"""Tests of orchestrator.worker.ledger on real SQLite files: the record of commands carried out."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from orchestrator.worker.ledger import Ledger

FIRST_RELEASE = """
CREATE TABLE handled (
    message_id TEXT PRIMARY KEY,
    order_id TEXT NOT NULL,
    type TEXT NOT NULL,
    at REAL NOT NULL,
    answer BLOB,
    times INTEGER NOT NULL DEFAULT 1
)
"""


async def test_a_ledger_of_the_first_release_is_migrated_to_one_row_per_key(
    tmp_path: Path,
) -> None:
    """The first release kept a row per message id. Opening such a file keeps what was
    carried out, now keyed by order and command type, so it is not carried out again."""
    path = tmp_path / "orders.kitchen.db"
    db = sqlite3.connect(path)
    db.execute(FIRST_RELEASE)
    db.executemany(
        "INSERT INTO handled VALUES (?, ?, ?, ?, ?, ?)",
        [
            ("o-1:2:0", "o-1", "MAKE_PIZZA", 1.0, b"ready-1", 1),
            ("o-2:2:0", "o-2", "MAKE_PIZZA", 2.0, None, 1),
            ("o-2:5:0", "o-2", "MAKE_PIZZA", 3.0, b"ready-2", 1),
        ],
    )
    db.commit()
    db.close()
    ledger = Ledger(path)
    await ledger.open()
    try:
        entries = {e.key: e for e in await ledger.entries()}
        assert sorted(entries) == ["o-1/MAKE_PIZZA", "o-2/MAKE_PIZZA"]
        assert entries["o-1/MAKE_PIZZA"].answer == b"ready-1"
        assert entries["o-2/MAKE_PIZZA"].message_id == "o-2:2:0"  # the earliest kept
        assert await ledger.counts("o-2/MAKE_PIZZA") == (2, 2)
        found = await ledger.receive("o-1/MAKE_PIZZA")
        assert found is not None and found.message_id == "o-1:2:0"
        assert await ledger.counts("o-1/MAKE_PIZZA") == (1, 2)
    finally:
        await ledger.close()
    reopened = Ledger(path)  # a second open finds the new schema and leaves it alone
    await reopened.open()
    try:
        assert len(await reopened.entries()) == 2
    finally:
        await reopened.close()
