"""A service's own durable record of the commands it has carried out.

A redelivered or retried command must not bake a second pizza: the service looks its
dedupe key (the order and command type, or the message id) up here first, and records the
command with its answer in one SQLite transaction before it publishes the answer. A repeat
then only publishes the recorded answer again, with the same id, which the orchestrator
dedupes.

A ledger that cannot be read or written (its disk is full) raises ``LedgerUnavailable``:
the command was not carried out, and will be once the ledger works again.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS handled (
    key TEXT PRIMARY KEY,
    -- the first message that asked for it
    message_id TEXT NOT NULL,
    order_id TEXT NOT NULL,
    type TEXT NOT NULL,
    at REAL NOT NULL,
    answer BLOB,
    -- how many times the command was carried out: anything but 1 is a double bake
    times INTEGER NOT NULL DEFAULT 1,
    -- how many messages asked for it: redeliveries and the orchestrator's retries
    received INTEGER NOT NULL DEFAULT 1
)
"""
# Whether an order's command was carried out, whatever its key: a compensation's look-up.
INDEX = "CREATE INDEX IF NOT EXISTS handled_by_order ON handled (order_id, type)"


ENTRY_COLUMNS = "key, message_id, order_id, type, answer"


class LedgerUnavailable(Exception):
    """SQLite could not read or write the ledger (a full or failing disk, a lock)."""


@dataclass(frozen=True, slots=True)
class Entry:
    key: str
    message_id: str
    order_id: str
    type: str
    answer: bytes | None


def _migrate(db: sqlite3.Connection) -> None:
    """Bring a ledger of the first release (one row per message id) to one row per key.

    Its rows become one per order and command type, the earliest message kept, their
    counts added up, so a pizza baked before the upgrade is not baked again after it.
    """
    columns = {row[1] for row in db.execute("PRAGMA table_info(handled)")}
    if not columns or "key" in columns:
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        db.execute("ALTER TABLE handled RENAME TO handled_by_message")
        db.execute(SCHEMA)
        db.execute(
            "INSERT INTO handled (key, message_id, order_id, type, at, answer, times, received)"
            " SELECT order_id || '/' || type, message_id, order_id, type, at, answer, times,"
            " times FROM handled_by_message WHERE true ORDER BY at"
            " ON CONFLICT (key) DO UPDATE SET times = times + excluded.times,"
            " received = received + excluded.received"
        )
        db.execute("DROP TABLE handled_by_message")
        db.execute("COMMIT")
    except BaseException:
        # SQLite may have rolled back already (a full disk does), and a ROLLBACK would then
        # raise "no transaction is active" in place of the error that matters.
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


class Ledger:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"ledger-{path.stem}")

    async def _run(self, fn: object, *args: object) -> object:
        try:
            return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)  # type: ignore[arg-type]
        except sqlite3.OperationalError as exc:
            raise LedgerUnavailable(f"the ledger {self.path.name} failed: {exc}") from exc

    async def open(self) -> None:
        await self._run(self._open)

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        _migrate(db)
        db.execute(SCHEMA)
        db.execute(INDEX)
        self._db = db

    async def close(self) -> None:
        if self._db is not None:
            await self._run(self._db.close)
            self._db = None
        self._thread.shutdown(wait=True)

    def _conn(self) -> sqlite3.Connection:
        assert self._db is not None, "ledger is not open"
        return self._db

    async def find(self, key: str) -> Entry | None:
        row = await self._run(self._find, key)
        return row if isinstance(row, Entry) else None

    def _find(self, key: str) -> Entry | None:
        row = (
            self._conn()
            .execute(f"SELECT {ENTRY_COLUMNS} FROM handled WHERE key = ?", (key,))
            .fetchone()
        )
        return Entry(*row) if row else None

    async def carried_out(self, order_id: str, command_type: str) -> bool:
        """Whether any ``command_type`` was recorded for the order."""
        return bool(await self._run(self._carried_out, order_id, command_type))

    def _carried_out(self, order_id: str, command_type: str) -> bool:
        row = (
            self._conn()
            .execute(
                "SELECT 1 FROM handled WHERE order_id = ? AND type = ? LIMIT 1",
                (order_id, command_type),
            )
            .fetchone()
        )
        return row is not None

    async def receive(self, key: str) -> Entry | None:
        """Count one more message asking for ``key``; the entry if it was carried out."""
        row = await self._run(self._receive, key)
        return row if isinstance(row, Entry) else None

    def _receive(self, key: str) -> Entry | None:
        self._conn().execute("UPDATE handled SET received = received + 1 WHERE key = ?", (key,))
        return self._find(key)

    async def record(self, entry: Entry) -> None:
        await self._run(self._record, entry)

    def _record(self, entry: Entry) -> None:
        self._conn().execute(
            "INSERT INTO handled (key, message_id, order_id, type, at, answer)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET times = times + 1",
            (entry.key, entry.message_id, entry.order_id, entry.type, time.time(), entry.answer),
        )

    async def counts(self, key: str) -> tuple[int, int]:
        """(times carried out, messages received) for ``key``; (0, 0) if never seen."""
        row = await self._run(self._counts, key)
        assert isinstance(row, tuple)
        return row

    def _counts(self, key: str) -> tuple[int, int]:
        row = (
            self._conn()
            .execute("SELECT times, received FROM handled WHERE key = ?", (key,))
            .fetchone()
        )
        return (int(row[0]), int(row[1])) if row else (0, 0)

    async def entries(self) -> list[Entry]:
        rows = await self._run(self._entries)
        assert isinstance(rows, list)
        return rows

    def _entries(self) -> list[Entry]:
        rows = self._conn().execute(f"SELECT {ENTRY_COLUMNS} FROM handled ORDER BY at").fetchall()
        return [Entry(*row) for row in rows]
