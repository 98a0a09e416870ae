"""``orchestrator migrate``: an embedded SQLite database copied into an empty PostgreSQL one.

Rows are copied as they are stored, table by table, straight from SQLite's tables into
PostgreSQL's with ``COPY`` (the target is empty, so nothing needs an upsert), not through
the Store port: the port speaks in turns, and replaying every turn as a new commit would
give the rows new outbox and timer decisions. Every row gets its order's shard
(``shard_of``, with the shard count the target database keeps). What is copied: the
orders (in their order of creation, so the order list pages the same), the journal,
the pending timers and the outbox rows not yet confirmed by the broker.

The journal keeps each turn's context change; rows written by older releases keep the
whole view instead, which PostgreSQL has no column for. Such a row is copied as a row that
keeps the whole context of its view, with the view's next events: from these the view is
rebuilt byte for byte (checked for each such row before it is written), and the changes
after it apply to the same context as on SQLite, so replays and repeated-key answers stay
the same bytes. (One difference: SQLite answers a kept view as it was, and PostgreSQL
rebuilds it leaving out the chart's private fields, so a view kept before a field was made
private loses that field.)

Safety: the SQLite file's lock (``lockfile.py``, the one ``serve`` takes) is held by the
caller for the whole copy, so no server writes behind it; the copy is one PostgreSQL
transaction that first locks the tables against writers and checks they are empty, and
commits only once the counts and every order's version read back from the target match
the source, so a copy that fails leaves the target as empty as it found it. Memory is
bounded: rows are read with a cursor and written in batches of at most ``BATCH_ROWS`` rows
and about ``BATCH_BYTES`` bytes.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg

from orchestrator.errors import OrchestratorError, SchemaTooNew
from orchestrator.model import Snapshot, names_json, to_json
from orchestrator.shards import shard_of
from orchestrator.store import postgres, sqlite
from orchestrator.store.postgres import PostgresStore
from orchestrator.store.rows import entry_of, rebuilt_view
from orchestrator.store.sqlite import SqliteStore

# A batch of rows written at once: at most this many, and no more bytes than this beyond
# the row that crosses it (a row is read whole, so one large row makes one large batch).
BATCH_ROWS = 1000
BATCH_BYTES = 4 * 1024 * 1024
# The tables copied, in the order they are copied; each must be empty in the target.
TABLES = ("orders", "journal", "timers", "outbox")

ORDER_COLUMNS = (
    "id", "chart", "configuration", "state", "context", "next_events", "version",
    "created_at", "updated_at", "created_by", "invocations", "context_patched",
)  # fmt: skip
JOURNAL_COLUMNS = (
    "order_id", "version", "event_id", "type", "data", "at", "state_before", "state_after",
    "duration_ms", "fingerprint", "next_events", "context_head", "context_tail",
    "context_change",
)  # fmt: skip
TIMER_COLUMNS = ("id", "order_id", "due_at", "event_type", "data", "traceparent")
OUTBOX_COLUMNS = ("id", "order_id", "type", "routing_key", "body", "invoke")


class TargetNotEmpty(OrchestratorError):
    """The target database already holds orders, journal rows, timers or outbox rows:
    the copy would mix two histories, so nothing is written."""


class MigrationFailed(OrchestratorError):
    """The copy could not be made or did not match its source; the target was left as it
    was found (the copy's transaction was rolled back)."""


@dataclass(frozen=True, slots=True)
class Counts:
    """What a database holds, as the copy compares it."""

    orders: int
    journal: int
    timers: int
    outbox: int
    versions: int  # the sum of the orders' versions
    schema: int = 0  # the schema version of the database

    def describe(self) -> str:
        return (
            f"{self.orders} orders ({self.journal} journal rows), {self.timers} pending"
            f" timers, {self.outbox} unsent outbox messages"
        )


async def migrate(source: Path, target: str) -> Counts:
    """Copy ``source`` (a SQLite file whose lock the caller holds) into the empty
    PostgreSQL database ``target``; returns what was copied, verified."""
    # Both schemas brought up to this release first, as a server's start would: an older
    # SQLite file gains its missing columns, a newer one of either is refused untouched.
    await _prepare(SqliteStore(source))
    conn = await _connect(target)
    try:
        await _refuse_rows(conn, [t for t in TABLES if await _exists(conn, t)])
        store = PostgresStore(target)
        await _prepare(store)
        reader = sqlite3.connect(source, isolation_level=None)
        try:
            reader.execute("BEGIN")  # one snapshot of the source for the copy and the checks
            return await _copy(reader, conn, store.shards)
        finally:
            reader.close()
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, sqlite3.Error) as exc:
        raise MigrationFailed(f"the copy failed and was rolled back: {exc}") from exc
    finally:
        await conn.close()


async def _prepare(store: SqliteStore | PostgresStore) -> None:
    try:
        await store.open()
    except SchemaTooNew:
        raise
    except (OrchestratorError, OSError, sqlite3.Error) as exc:
        raise MigrationFailed(f"cannot open {_where(store)}: {exc}") from exc
    await store.close()


async def _connect(url: str) -> asyncpg.Connection:
    try:
        return await asyncpg.connect(url, timeout=postgres.CONNECT_TIMEOUT)
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        raise MigrationFailed(f"cannot connect to PostgreSQL: {exc}") from exc


async def _copy(reader: sqlite3.Connection, conn: asyncpg.Connection, shards: int) -> Counts:
    expected = _source_counts(reader)
    async with conn.transaction():
        # Writers wait until the copy commits (readers do not), and the emptiness checked
        # now stays true until then.
        await conn.execute(f"LOCK TABLE {', '.join(TABLES)} IN EXCLUSIVE MODE")
        await _refuse_rows(conn, list(TABLES))
        await _write(conn, "orders", ("shard", *ORDER_COLUMNS), _orders(reader, shards))
        journal = _journal(reader, shards)
        await _write(conn, "journal", ("shard", *JOURNAL_COLUMNS), journal)
        await _write(conn, "timers", ("shard", *TIMER_COLUMNS), _timers(reader, shards))
        await _write(conn, "outbox", ("shard", *OUTBOX_COLUMNS), _outbox(reader, shards))
        return await _verify(reader, conn, expected)


async def _exists(conn: asyncpg.Connection, table: str) -> bool:
    return bool(await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", table))


async def _refuse_rows(conn: asyncpg.Connection, tables: list[str]) -> None:
    for table in tables:
        if await conn.fetchval(f"SELECT EXISTS (SELECT 1 FROM {table})"):
            raise TargetNotEmpty(
                f"the target database is not empty (its {table} table has rows);"
                " migrate copies only into an empty database"
            )


async def _write(
    conn: asyncpg.Connection, table: str, columns: Sequence[str], rows: Iterator[tuple[Any, ...]]
) -> None:
    for batch in _batches(rows):
        await conn.copy_records_to_table(table, records=batch, columns=list(columns))


def _batches(rows: Iterator[tuple[Any, ...]]) -> Iterator[list[tuple[Any, ...]]]:
    batch: list[tuple[Any, ...]] = []
    size = 0
    for row in rows:
        batch.append(row)
        size += sum(len(value) for value in row if isinstance(value, str | bytes))
        if len(batch) >= BATCH_ROWS or size >= BATCH_BYTES:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def _select(reader: sqlite3.Connection, sql: str) -> Iterator[tuple[Any, ...]]:
    """The rows of ``sql``, read one at a time (a cursor, not a list of every row)."""
    yield from reader.execute(sql)


def _orders(reader: sqlite3.Connection, shards: int) -> Iterator[tuple[Any, ...]]:
    for row in _select(reader, f"SELECT {', '.join(ORDER_COLUMNS)} FROM orders ORDER BY seq"):
        yield (shard_of(row[0], shards), *row)


def _journal(reader: sqlite3.Connection, shards: int) -> Iterator[tuple[Any, ...]]:
    columns = ", ".join(f"j.{name}" for name in (*JOURNAL_COLUMNS, "view"))
    sql = (
        f"SELECT {columns}, o.chart, o.created_at FROM journal j"
        " JOIN orders o ON o.id = j.order_id ORDER BY j.order_id, j.version"
    )
    for row in _select(reader, sql):
        *stored, view, chart, created_at = row
        if view:
            stored[10:14] = _whole_row_of_view(stored, view, chart, created_at)
        else:
            stored[13] = bytes(stored[13] or b"").decode()
        yield (shard_of(stored[0], shards), *stored)


def _whole_row_of_view(
    stored: list[Any], view: bytes, chart: str, created_at: float
) -> tuple[str, int, int, str]:
    """``next_events``, ``context_head``, ``context_tail`` and ``context_change`` for a
    journal row that kept its whole view: the view's next events and whole context (as
    SQLite's replay reads it, ``to_json`` of the parsed context), checked to rebuild it."""
    parsed = json.loads(view)
    next_events = names_json(tuple(parsed["nextEvents"]))
    context = to_json(parsed["context"])
    order = Snapshot(stored[0], chart, (), "", "{}", (), 0, created_at, created_at)
    entry = entry_of(stored[0], stored[1:])
    if rebuilt_view(order, entry, next_events, context.encode(), frozenset()) != bytes(view):
        raise MigrationFailed(
            f"order {stored[0]} version {stored[1]}: its journal row keeps a view that"
            " cannot be rebuilt byte for byte; nothing was copied"
        )
    return next_events, 0, 0, context


def _timers(reader: sqlite3.Connection, shards: int) -> Iterator[tuple[Any, ...]]:
    for row in _select(reader, f"SELECT {', '.join(TIMER_COLUMNS)} FROM timers ORDER BY due_at"):
        yield (shard_of(row[1], shards), *row)


def _outbox(reader: sqlite3.Connection, shards: int) -> Iterator[tuple[Any, ...]]:
    sql = f"SELECT {', '.join(OUTBOX_COLUMNS)} FROM outbox ORDER BY seq"
    for row in _select(reader, sql):
        yield (shard_of(row[1], shards), *row)


COUNTS = (
    "SELECT (SELECT count(*) FROM orders), (SELECT count(*) FROM journal),"
    " (SELECT count(*) FROM timers), (SELECT count(*) FROM outbox),"
    " (SELECT coalesce(sum(version), 0) FROM orders)"
)


SCHEMA_VERSION = "SELECT value FROM meta WHERE key = 'schema_version'"


def _source_counts(reader: sqlite3.Connection) -> Counts:
    orders, journal, timers, outbox, versions = (int(n) for n in reader.execute(COUNTS).fetchone())
    schema = int(reader.execute(SCHEMA_VERSION).fetchone()[0])
    return Counts(orders, journal, timers, outbox, versions, schema)


async def _verify(reader: sqlite3.Connection, conn: asyncpg.Connection, expected: Counts) -> Counts:
    """The target's counts, once checked to be the source's, and so every order's version
    and its journal's length and last version, compared a batch of orders at a time; both
    schema versions are this release's."""
    row = await conn.fetchrow(COUNTS)
    assert row is not None  # counts are one row
    orders, journal, timers, outbox, versions = (int(n) for n in row)
    schema = int(await conn.fetchval(SCHEMA_VERSION))
    found = Counts(orders, journal, timers, outbox, versions, schema)
    if (expected.schema, found.schema) != (sqlite.SCHEMA_VERSION, postgres.SCHEMA_VERSION):
        raise MigrationFailed(
            f"schema versions {expected.schema} (SQLite) and {found.schema} (PostgreSQL),"
            f" not {sqlite.SCHEMA_VERSION} and {postgres.SCHEMA_VERSION}, this release's"
        )
    if dataclasses.replace(found, schema=0) != dataclasses.replace(expected, schema=0):
        raise MigrationFailed(
            f"copied {found.describe()}, but the source has {expected.describe()}"
        )
    by_order = _select(
        reader,
        "SELECT o.id, o.version, count(j.version), max(j.version) FROM orders o"
        " LEFT JOIN journal j ON j.order_id = o.id GROUP BY o.id ORDER BY o.id",
    )
    for batch in _batches(by_order):
        source = {row[0]: tuple(row[1:]) for row in batch}
        rows = await conn.fetch(
            "SELECT o.id, o.version, count(j.version), max(j.version) FROM orders o"
            " LEFT JOIN journal j ON j.order_id = o.id WHERE o.id = ANY($1::text[])"
            " GROUP BY o.id",
            list(source),
        )
        target = {row[0]: tuple(row[1:]) for row in rows}
        for order_id, wanted in source.items():
            if target.get(order_id) != wanted:
                raise MigrationFailed(
                    f"order {order_id}: (version, journal rows, last version) copied as"
                    f" {target.get(order_id)}, but the source has {wanted}"
                )
    return found


def _where(store: SqliteStore | PostgresStore) -> str:
    return str(store.path) if isinstance(store, SqliteStore) else describe_url(store.url)


def describe_url(url: str) -> str:
    """A PostgreSQL URL without its user or password, to print."""
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"postgresql://{parts.hostname or ''}{port}{parts.path}"
