"""SQLite adapter of the Store port, with group commit.

Two connections: the writer commits turns, the reader (aiosqlite) serves queries, so a
reader never sees a transaction that is still open (WAL lets both run at once).
``synchronous=FULL`` by default: a commit is on disk before any turn in it is answered.

Group commit (``group_commit.py``): turns that arrive while a commit is running go into
the next transaction together, a few multi-row INSERTs per table. A batch that fails
because the disk is full or failing (``OUTAGE_ERRORS``) fails its turns at once with
``StoreUnavailable``; any other failure is retried turn by turn.

The schema is versioned (``meta``'s ``schema_version`` row, ``SCHEMA_VERSION``): opening a
database brings an older one up to date (``_migrate``) and refuses one that a newer
release wrote (``SchemaTooNew``). A database from before the version row is version 0.

The writer runs a whole batch as one call on its own thread, in the way aiosqlite runs a
connection, but with one hop per batch. Rejected: the writer on aiosqlite, which costs one
event-loop round trip per statement (BEGIN, each executemany, COMMIT); under load each
round trip waits behind every request the loop is serving, and a commit took ~17 ms at 32
concurrent clients.

The journal keeps each event with what its turn changed in the context, not the view it
produced. A row used to keep the whole view, and every view carries the whole context, so
an order's journal grew with the square of its events: 2,000 ADD_PIZZAs of 40-byte pizzas
took 169 MB, 85 KB a row (now about 150 bytes a row, see tests/edge/test_order_size.py).
A row keeps the ``ContextChange`` of its turn (``context_head``, ``context_tail``,
``context_change``) and the events allowed after it; a row whose head and tail are 0 keeps
the whole context, which the turn does once the changes since the last such row add up to
the context's size (``turn._context_change``). So the journal grows linearly with what the
turns changed, and the view of any version is rebuilt from the last whole context before
it by applying less than a context's worth of changes: ``replay`` does so version after
version for WebSocket replays, ``reply_for`` for a repeated event id, whose answer is the
first one byte for byte, because a view is a function of the row and the context (the
order's id, chart and creation time are the order's own).

Rejected: keeping the view on the rows of keyed events only (a client that sends every
event with a key makes it quadratic again), or only on the latest rows (a repeat of an
older key still needs its view). Rows written before keep their whole ``view`` (and no
change); they are read as they are, and a change after one applies to the context in it,
so a database of either form, or both, works without a migration of its rows.

Replays read the journal a page at a time, each page bounded in stored bytes as well as in
rows (``REPLAY_PAGE_BYTES``), and build one view at a time: what a replay holds is a page
of changes, one context and one view, however long the order.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from collections.abc import AsyncGenerator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from itertools import chain
from pathlib import Path
from typing import Any

import aiosqlite

from orchestrator.errors import InvalidInput, SchemaTooNew, Unavailable
from orchestrator.model import (
    ContextChange,
    JournalEntry,
    OutboxMessage,
    Reply,
    Snapshot,
    Timer,
    TurnRecord,
    names_json,
    to_json,
)
from orchestrator.numbers import whole_number
from orchestrator.store.base import Page, Recorded, Stats
from orchestrator.store.group_commit import GroupCommit
from orchestrator.store.rows import (
    ENTRY_COLUMNS,
    SNAPSHOT_COLUMNS,
    TIMER_COLUMNS,
    entry_of,
    rebuilt_view,
    snapshot_of,
    timer_of,
)

log = logging.getLogger(__name__)

# The schema this code writes; ``_migrate`` brings any older one up to it.
SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS orders (
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
    invocations TEXT NOT NULL DEFAULT '[]',
    context_patched INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS journal (
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
    -- The whole view, in rows written before the journal kept changes; empty since.
    view BLOB NOT NULL,
    next_events TEXT,
    context_head INTEGER,
    context_tail INTEGER,
    context_change BLOB,
    PRIMARY KEY (order_id, version),
    UNIQUE (order_id, event_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    order_id TEXT NOT NULL,
    type TEXT NOT NULL,
    routing_key TEXT NOT NULL,
    body BLOB NOT NULL,
    invoke TEXT
);
CREATE TABLE IF NOT EXISTS timers (
    id TEXT PRIMARY KEY,
    order_id TEXT NOT NULL,
    due_at REAL NOT NULL,
    event_type TEXT NOT NULL,
    data TEXT NOT NULL,
    traceparent TEXT
);
CREATE INDEX IF NOT EXISTS timers_due ON timers (due_at);
CREATE INDEX IF NOT EXISTS timers_order ON timers (order_id);
-- Orders by chart and state for /metrics: a scan of this index, not of the order rows.
CREATE INDEX IF NOT EXISTS orders_chart_state ON orders (chart, state);
"""

ORDER_COLUMNS = (
    "id, chart, configuration, state, context, next_events, version, created_at, updated_at,"
    " created_by, invocations, context_patched"
)
UPSERT_ORDER = (
    f"INSERT INTO orders ({ORDER_COLUMNS}) VALUES {{values}}"
    " ON CONFLICT (id) DO UPDATE SET"
    " configuration = excluded.configuration, state = excluded.state,"
    " context = excluded.context, next_events = excluded.next_events,"
    " version = excluded.version, updated_at = excluded.updated_at,"
    " invocations = excluded.invocations, context_patched = excluded.context_patched"
)
INSERT_JOURNAL = (
    f"INSERT INTO journal (order_id, {ENTRY_COLUMNS}, fingerprint, view, next_events,"
    " context_head, context_tail, context_change) VALUES {values}"
)
REPLAY_COLUMNS = f"{ENTRY_COLUMNS}, view, next_events, context_head, context_tail, context_change"
# A row that keeps its view (written before changes were kept) or the whole context.
WHOLE_ROW = "(length(view) > 0 OR (context_head = 0 AND context_tail = 0))"
# A page of a replay: at most this many rows, and no more stored bytes than this beyond
# its first row (length() of a blob is read without reading the blob).
REPLAY_PAGE_ROWS = 256
REPLAY_PAGE_BYTES = 1024 * 1024
INSERT_OUTBOX = "INSERT INTO outbox (id, order_id, type, routing_key, body, invoke) VALUES {values}"
INSERT_TIMER = f"INSERT OR REPLACE INTO timers ({TIMER_COLUMNS}) VALUES {{values}}"
DELETE_TIMER = "DELETE FROM timers WHERE id = ?"
# A timer whose event was refused, dropped only if it was not set again meanwhile.
DROP_TIMER = "DELETE FROM timers WHERE id = ? AND due_at = ?"
DELETE_OUTBOX = "DELETE FROM outbox WHERE id = ?"
# SQLite's primary result codes that mean the storage failed, not the statement: a turn that
# meets one may apply once the disk has room again or the lock is released.
OUTAGE_ERRORS = frozenset(
    {
        sqlite3.SQLITE_FULL,
        sqlite3.SQLITE_IOERR,
        sqlite3.SQLITE_BUSY,
        sqlite3.SQLITE_LOCKED,
        sqlite3.SQLITE_READONLY,
        sqlite3.SQLITE_CANTOPEN,
        sqlite3.SQLITE_NOMEM,
    }
)
# Rows per multi-row INSERT: well under SQLite's limit of 32,766 bound parameters.
ROWS_PER_STATEMENT = 500
# Columns added after the first release, with their definitions: a database made before
# gets them when it is opened (ALTER TABLE ... ADD COLUMN keeps every row).
ADDED_COLUMNS = {
    "orders": {
        "invocations": "TEXT NOT NULL DEFAULT '[]'",
        "context_patched": "INTEGER NOT NULL DEFAULT 0",
    },
    "timers": {"traceparent": "TEXT"},
    "journal": {
        "next_events": "TEXT",
        "context_head": "INTEGER",
        "context_tail": "INTEGER",
        "context_change": "BLOB",
    },
}


class SqliteStore:
    def __init__(
        self,
        path: Path,
        *,
        synchronous: str = "FULL",
        max_batch: int = 256,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self.path = path
        self.synchronous = synchronous
        self._writer: sqlite3.Connection | None = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-writer")
        self._reader: aiosqlite.Connection | None = None
        self._group = GroupCommit(
            self._write_batch,
            is_outage=is_outage,
            max_batch=max_batch,
            on_batch=on_batch,
            log=log,
            name="sqlite-group-commit",
        )

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            await self._on_writer(self._open_writer)
        except BaseException:
            self._thread.shutdown(wait=True)
            raise
        self._reader = await aiosqlite.connect(self.path, isolation_level=None)
        await self._reader.execute("PRAGMA busy_timeout=10000")
        self._group.start()

    async def _on_writer(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    def _open_writer(self) -> None:
        # isolation_level=None: we issue BEGIN IMMEDIATE ourselves, so the write lock is
        # taken up front and a transaction never upgrades halfway (no SQLITE_BUSY mid-turn).
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={self.synchronous}")
            conn.execute("PRAGMA busy_timeout=10000")
            # Statement journals in memory: a multi-row statement in a batch's transaction
            # otherwise creates, writes and deletes a temporary file (one per two commits).
            conn.execute("PRAGMA temp_store=MEMORY")
            _migrate(conn, self.path)
        except BaseException:
            conn.close()
            raise
        self._writer = conn

    async def close(self) -> None:
        await self._group.close()
        if self._reader is not None:
            await self._reader.close()
            self._reader = None
        if self._writer is not None:
            await self._on_writer(self._writer.close)
            self._writer = None
        self._thread.shutdown(wait=True)

    # -- writes ------------------------------------------------------------------------

    async def commit(self, record: TurnRecord) -> None:
        await self._group.commit(record)

    async def _write_batch(
        self, records: list[TurnRecord], sent: list[OutboxMessage], dropped: list[Timer]
    ) -> None:
        # The rows are built on the event loop, so the writer thread only writes.
        await self._on_writer(self._write, _Rows.of(records, sent, dropped))

    def _write(self, rows: _Rows) -> None:
        """One transaction for the whole batch; runs on the writer thread.

        Multi-row INSERTs, not executemany: sqlite3 releases the GIL around every step,
        and each time this thread takes it back it may wait for the busy event loop, so
        the fewer statements the batch runs, the sooner it commits. Rejected: the writer on
        aiosqlite, which costs one event-loop round trip per statement (BEGIN, each
        executemany, COMMIT); under load each round trip waits behind every request the
        loop is serving, and a commit took ~17 ms at 32 concurrent clients.
        """
        conn = self._writer
        assert conn is not None, "store is not open"
        try:
            conn.execute("BEGIN IMMEDIATE")
            _insert(conn, UPSERT_ORDER, rows.orders)
            _insert(conn, INSERT_JOURNAL, rows.journal)
            _insert(conn, INSERT_OUTBOX, rows.outbox)
            _delete(conn, DELETE_TIMER, rows.cancelled)
            _insert(conn, INSERT_TIMER, rows.timers)
            _delete(conn, DELETE_OUTBOX, rows.sent)
            _delete(conn, DROP_TIMER, rows.dropped)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def mark_sent(self, messages: Sequence[OutboxMessage]) -> None:
        self._group.mark_sent(messages)

    def drop_timer(self, timer: Timer) -> None:
        self._group.drop_timer(timer)

    # -- reads -------------------------------------------------------------------------

    async def _fetchall(self, sql: str, params: tuple[Any, ...]) -> list[Any]:
        conn = self._reader
        if conn is None:
            raise Unavailable("the store is not open")
        # One call runs the statement to its end on the reader's thread. Rejected: execute
        # then fetchall as two awaits, which lets concurrent queries overlap and hold one
        # read transaction open, so reads miss commits made meanwhile (stale snapshots).
        return list(await conn.execute_fetchall(sql, params))

    async def load(self, order_id: str) -> Snapshot | None:
        rows = await self._fetchall(
            f"SELECT {SNAPSHOT_COLUMNS} FROM orders WHERE id = ?", (order_id,)
        )
        return snapshot_of(rows[0]) if rows else None

    async def reply_for(
        self, order_id: str, event_id: str, *, private: frozenset[str] = frozenset()
    ) -> Reply | None:
        rows = await self._fetchall(
            "SELECT version, view, fingerprint FROM journal WHERE order_id = ? AND event_id = ?",
            (order_id, event_id),
        )
        if not rows:
            return None
        version, view, fingerprint = rows[0]
        if not view:  # a row that keeps a change: the view is rebuilt
            replay = self.replay(order_id, after=version - 1, until=version, private=private)
            async for recorded in replay:
                view = recorded.view
        return Reply(
            status=201 if version == 1 else 200,
            body=view,
            order_id=order_id,
            fingerprint=fingerprint,
        )

    async def order_created_by(self, event_id: str) -> str | None:
        rows = await self._fetchall("SELECT id FROM orders WHERE created_by = ?", (event_id,))
        return str(rows[0][0]) if rows else None

    async def journal(self, order_id: str, after: int = 0, limit: int = 1000) -> list[JournalEntry]:
        rows = await self._fetchall(
            f"SELECT {ENTRY_COLUMNS} FROM journal"
            " WHERE order_id = ? AND version > ? ORDER BY version LIMIT ?",
            (order_id, after, limit),
        )
        return [entry_of(order_id, row) for row in rows]

    async def replay(
        self,
        order_id: str,
        after: int = 0,
        until: int | None = None,
        *,
        private: frozenset[str] = frozenset(),
    ) -> AsyncGenerator[Recorded, None]:
        order = await self.load(order_id)
        if order is None:
            return
        last = order.version if until is None else min(until, order.version)
        if after >= last:
            return
        # The row to start from: the last one at or before the first wanted that keeps a
        # view or the whole context; the changes after it rebuild the wanted contexts.
        rows = await self._fetchall(
            f"SELECT version FROM journal WHERE order_id = ? AND version <= ? AND {WHOLE_ROW}"
            " ORDER BY version DESC LIMIT 1",
            (order_id, after + 1),
        )
        read_to = rows[0][0] - 1 if rows else after
        context = bytearray()  # the context after version ``read_to``, when it is needed
        legacy_view = b""  # or the view that holds it, parsed only if a change follows
        while read_to < last:
            page = await self._replay_page(order_id, read_to, last)
            if not page:
                return
            for row in page:
                version: int = row[0]
                view: bytes = row[8]
                head: int | None = row[10]
                tail: int | None = row[11]
                change: bytes | None = row[12]
                if view:
                    legacy_view = view
                    context.clear()
                else:
                    if head or tail:
                        if legacy_view:
                            context[:] = _context_of(legacy_view)
                            legacy_view = b""
                        # ContextChange: keep ``head`` and ``tail``, with the change between.
                        context[head : len(context) - (tail or 0)] = change or b""
                    else:
                        context[:] = change or b""
                        legacy_view = b""
                if version > after:
                    entry = entry_of(order_id, row)
                    if not view:
                        view = rebuilt_view(order, entry, row[9], context, private)
                    yield Recorded(entry, view)
                read_to = version

    async def _replay_page(self, order_id: str, after: int, last: int) -> list[Any]:
        """Rows after ``after`` up to ``last``: at least one, and as many more as fit in
        ``REPLAY_PAGE_BYTES`` of stored views and changes, up to ``REPLAY_PAGE_ROWS``."""
        sizes = await self._fetchall(
            "SELECT version, length(view) + ifnull(length(context_change), 0) FROM journal"
            " WHERE order_id = ? AND version > ? AND version <= ? ORDER BY version LIMIT ?",
            (order_id, after, last, REPLAY_PAGE_ROWS),
        )
        if not sizes:
            return []
        upto, total = sizes[0][0], 0
        for version, size in sizes:
            total += size
            if total > REPLAY_PAGE_BYTES and version != sizes[0][0]:
                break
            upto = version
        return await self._fetchall(
            f"SELECT {REPLAY_COLUMNS} FROM journal"
            " WHERE order_id = ? AND version > ? AND version <= ? ORDER BY version",
            (order_id, after, upto),
        )

    async def list_orders(
        self, *, state: str | None, chart: str | None, cursor: str | None, limit: int
    ) -> Page:
        where: list[str] = []
        params: list[Any] = []
        if cursor is not None:
            seq = whole_number(cursor)
            if seq is None:
                raise InvalidInput("cursor", "cursor must be a value returned as nextCursor")
            where.append("seq < ?")
            params.append(seq)
        if state:
            # Prefix match on the state path without LIKE, so '%' and '_' are literal.
            where.append("substr(state, 1, ?) = ?")
            params.extend([len(state), state])
        if chart:
            where.append("chart = ?")
            params.append(chart)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        rows = await self._fetchall(
            f"SELECT {SNAPSHOT_COLUMNS}, seq FROM orders {clause} ORDER BY seq DESC LIMIT ?",
            (*params, limit + 1),
        )
        more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = str(rows[-1][-1]) if more else None  # seq, after the snapshot's columns
        return Page([snapshot_of(row) for row in rows], next_cursor)

    async def unsent(self, shards: Sequence[int] | None = None) -> list[OutboxMessage]:
        # One process owns a SQLite file and all of its orders: ``shards`` is always all.
        rows = await self._fetchall(
            "SELECT id, order_id, type, routing_key, body, invoke FROM outbox ORDER BY seq", ()
        )
        return [OutboxMessage(*row) for row in rows]

    async def outbox_depth(self) -> int:
        rows = await self._fetchall("SELECT count(*) FROM outbox", ())
        return int(rows[0][0])

    async def next_timer_due(
        self, after: float, shards: Sequence[int] | None = None
    ) -> float | None:
        rows = await self._fetchall("SELECT min(due_at) FROM timers WHERE due_at > ?", (after,))
        return None if rows[0][0] is None else float(rows[0][0])

    async def due_timers(
        self, now: float, limit: int, shards: Sequence[int] | None = None
    ) -> list[Timer]:
        rows = await self._fetchall(
            f"SELECT {TIMER_COLUMNS} FROM timers WHERE due_at <= ? ORDER BY due_at LIMIT ?",
            (now, limit),
        )
        return [timer_of(row) for row in rows]

    async def timer(self, timer_id: str) -> Timer | None:
        rows = await self._fetchall(f"SELECT {TIMER_COLUMNS} FROM timers WHERE id = ?", (timer_id,))
        return timer_of(rows[0]) if rows else None

    async def stats(self, now: float) -> Stats:
        orders = await self._fetchall(
            "SELECT chart, state, count(*) FROM orders GROUP BY chart, state", ()
        )
        # Only reads the timers table: firing them is the timer loop's business.
        timers = await self._fetchall("SELECT count(*), min(due_at) FROM timers", ())
        count, first_due = timers[0]
        return Stats(
            orders={(chart, state): int(n) for chart, state, n in orders},
            timers=int(count),
            timer_overdue_seconds=max(0.0, now - first_due) if first_due is not None else 0.0,
        )


def is_outage(exc: BaseException) -> bool:
    """Whether SQLite failed for want of storage (``OUTAGE_ERRORS``), not over a statement."""
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(exc, sqlite3.Error) and code is not None and code & 0xFF in OUTAGE_ERRORS


def _migrate(conn: sqlite3.Connection, path: Path) -> None:
    """Bring the database to ``SCHEMA_VERSION`` in one transaction: make what is missing
    (everything, for a new file) and add the columns added since version 0. A database
    written by a newer release is refused untouched."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        found = _schema_version(conn)
        if found > SCHEMA_VERSION:
            raise SchemaTooNew(f"the database {path}", found, SCHEMA_VERSION)
        # Idempotent, so run on every open: a table or column that is missing is made.
        for statement in _statements(SCHEMA):
            conn.execute(statement)
        _add_missing_columns(conn)
        if found < SCHEMA_VERSION:
            conn.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)",
                (SCHEMA_VERSION,),
            )
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _statements(script: str) -> list[str]:
    """The statements of ``script``, one by one: ``executescript`` would commit the open
    transaction first."""
    statements, current = [], ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            statements.append(current)
            current = ""
    return statements


def _schema_version(conn: sqlite3.Connection) -> int:
    """The database's schema version: 0 for one made before the version was kept."""
    if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'meta'").fetchone() is None:
        return 0
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    return 0 if row is None else int(row[0])


def _add_missing_columns(conn: sqlite3.Connection) -> None:
    for table, columns in ADDED_COLUMNS.items():
        present = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        for name, definition in columns.items():
            if name not in present:
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {definition}")


def _context_of(view: bytes) -> bytes:
    """The context in a view a row kept whole (written before changes were kept), as the
    turn serialized it: ``to_json`` gives back the text it parses."""
    return to_json(json.loads(view)["context"]).encode()


def _delete(conn: sqlite3.Connection, sql: str, rows: Sequence[tuple[Any, ...]]) -> None:
    # Skipped when empty: even an empty executemany prepares its statement.
    if rows:
        conn.executemany(sql, rows)


def _insert(conn: sqlite3.Connection, sql: str, rows: list[tuple[Any, ...]]) -> None:
    for start in range(0, len(rows), ROWS_PER_STATEMENT):
        chunk = rows[start : start + ROWS_PER_STATEMENT]
        conn.execute(_multirow(sql, len(chunk[0]), len(chunk)), list(chain.from_iterable(chunk)))


@lru_cache(maxsize=512)
def _multirow(sql: str, width: int, count: int) -> str:
    """``sql`` with ``count`` rows of ``width`` placeholders, built once per shape."""
    row = "(" + ",".join("?" * width) + ")"
    return sql.format(values=",".join([row] * count))


@dataclass(slots=True)
class _Rows:
    """A batch as SQL parameters, built on the event loop so the writer thread only writes."""

    orders: list[tuple[Any, ...]]
    journal: list[tuple[Any, ...]]
    outbox: list[tuple[Any, ...]]
    timers: list[tuple[Any, ...]]
    cancelled: list[tuple[str]]
    sent: list[tuple[str]]
    dropped: list[tuple[str, float]]

    @classmethod
    def of(
        cls, records: list[TurnRecord], sent: list[OutboxMessage], dropped: list[Timer]
    ) -> _Rows:
        rows = cls([], [], [], [], [], [(m.id,) for m in sent], [(t.id, t.due_at) for t in dropped])
        for record in records:
            snap, entry = record.snapshot, record.journal
            rows.orders.append(
                (
                    snap.order_id,
                    snap.chart,
                    names_json(snap.configuration),
                    snap.state,
                    snap.context_json,
                    names_json(snap.next_events),
                    snap.version,
                    snap.created_at,
                    snap.updated_at,
                    record.created_by,
                    to_json(snap.invocations) if snap.invocations else "[]",
                    snap.context_patched,
                )
            )
            change = record.context_change or ContextChange.whole(snap.context_json)
            rows.journal.append(
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
                    record.reply.fingerprint,
                    b"",
                    names_json(snap.next_events),
                    change.head,
                    change.tail,
                    change.text.encode(),
                )
            )
            rows.outbox.extend(
                (m.id, m.order_id, m.type, m.routing_key, m.body, m.invoke) for m in record.outbox
            )
            rows.timers.extend(
                (t.id, t.order_id, t.due_at, t.event_type, to_json(t.data), t.traceparent)
                for t in record.timers_set
            )
            rows.cancelled.extend((timer_id,) for timer_id in record.timers_cancelled)
        return rows
