"""PostgreSQL adapter of the Store port (asyncpg), with group commit.

The same contract as ``sqlite.py``, byte for byte: the same rows in the same text forms
(``rows.py``), the journal keeping each turn's ``ContextChange`` and rebuilding views on
``replay`` and ``reply_for``. Only SQLite keeps rows of the older journal form (whole
views); a PostgreSQL database was never written in it.

One writer connection commits batches (``group_commit.py``); a pool serves reads, so a
slow query never holds a commit back. Measured here (PostgreSQL 15, fsync on): a commit per
turn is about 200/s on one connection, a batch of 256 turns as multi-row ``unnest``
inserts 12,500-13,900 turns/s. So a batch is one transaction of a few statements, one per
table, each taking whole columns as arrays. Rejected: ``executemany``, one round trip per
row (or a pipeline asyncpg runs row by row); ``COPY``, which cannot upsert the order rows.

Outages (``is_outage``): a lost connection (class 08, or the socket), disk full and other
resources (53), an administrator's or crash shutdown (57), an I/O error (58) and a
read-only server (25006, say a standby after a failover) fail a whole batch with
``StoreUnavailable``, and the writer reconnects on the next batch. Anything else, a
constraint violation above all, is a turn's own fault and is retried turn by turn.

Ready for the cluster (docs/design.md, "Beyond one process"): orders, journal, outbox and timers
carry ``shard`` (crc32 of the order id modulo ``shards``, fixed when the database is made
and kept in ``meta``), with per-shard indexes for the scheduler and the relay; ``members``
and ``shard_leases`` exist, unused until the cluster reads them. The schema is versioned
(``meta``'s ``schema_version`` row) and made or migrated at open under an advisory lock,
so two nodes starting at once do not race; a newer schema is refused (``SchemaTooNew``).
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import AsyncGenerator, Callable, Sequence
from typing import Any

import asyncpg

from orchestrator.errors import InvalidInput, SchemaTooNew, StoreUnavailable, Unavailable
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

SCHEMA_VERSION = 1
# Shards of a new database; the count is kept in it, and never changes after.
SHARDS = 256
# Taken while the schema is made or migrated, so nodes starting together take turns.
SCHEMA_LOCK = 0x6F7263_6801
META = "CREATE TABLE IF NOT EXISTS meta (key text PRIMARY KEY, value bigint NOT NULL)"
SCHEMA = """
CREATE TABLE orders (
    seq bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    id text PRIMARY KEY,
    shard integer NOT NULL,
    chart text NOT NULL,
    configuration text NOT NULL,
    state text NOT NULL,
    context text NOT NULL,
    next_events text NOT NULL,
    version integer NOT NULL,
    created_at double precision NOT NULL,
    updated_at double precision NOT NULL,
    created_by text UNIQUE,
    invocations text NOT NULL,
    context_patched integer NOT NULL
);
CREATE INDEX orders_chart_state ON orders (chart, state);
CREATE INDEX orders_shard ON orders (shard);
CREATE TABLE journal (
    order_id text NOT NULL,
    version integer NOT NULL,
    shard integer NOT NULL,
    event_id text NOT NULL,
    type text NOT NULL,
    data text NOT NULL,
    at double precision NOT NULL,
    state_before text NOT NULL,
    state_after text NOT NULL,
    duration_ms double precision NOT NULL,
    fingerprint text NOT NULL,
    next_events text NOT NULL,
    context_head integer NOT NULL,
    context_tail integer NOT NULL,
    context_change text NOT NULL,
    PRIMARY KEY (order_id, version),
    UNIQUE (order_id, event_id)
);
CREATE TABLE outbox (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id text NOT NULL UNIQUE,
    shard integer NOT NULL,
    order_id text NOT NULL,
    type text NOT NULL,
    routing_key text NOT NULL,
    body bytea NOT NULL,
    invoke text
);
CREATE INDEX outbox_shard ON outbox (shard, seq);
CREATE TABLE timers (
    id text PRIMARY KEY,
    shard integer NOT NULL,
    order_id text NOT NULL,
    due_at double precision NOT NULL,
    event_type text NOT NULL,
    data text NOT NULL,
    traceparent text
);
CREATE INDEX timers_due ON timers (due_at);
CREATE INDEX timers_shard_due ON timers (shard, due_at);
CREATE INDEX timers_order ON timers (order_id);
-- The cluster's (docs/design.md): a node's heartbeat, by the database's clock, and who holds
-- each shard under which epoch, the fence every write of the owner checks.
CREATE TABLE members (
    node text PRIMARY KEY,
    address text NOT NULL,
    started_at timestamptz NOT NULL,
    heartbeat_at timestamptz NOT NULL
);
CREATE TABLE shard_leases (
    shard integer PRIMARY KEY,
    owner text REFERENCES members (node) ON DELETE SET NULL,
    epoch bigint NOT NULL DEFAULT 0,
    expires_at timestamptz
);
"""
# Steps from each schema version to the next: MIGRATIONS[n] takes version n to n + 1.
MIGRATIONS: dict[int, str] = {}

ORDER_COLUMNS = (
    "id, shard, chart, configuration, state, context, next_events, version, created_at,"
    " updated_at, created_by, invocations, context_patched"
)
UPSERT_ORDERS = (
    f"INSERT INTO orders ({ORDER_COLUMNS}) SELECT * FROM unnest($1::text[], $2::int[],"
    " $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::int[], $9::float8[],"
    " $10::float8[], $11::text[], $12::text[], $13::int[])"
    " ON CONFLICT (id) DO UPDATE SET"
    " configuration = excluded.configuration, state = excluded.state,"
    " context = excluded.context, next_events = excluded.next_events,"
    " version = excluded.version, updated_at = excluded.updated_at,"
    " invocations = excluded.invocations, context_patched = excluded.context_patched"
)
INSERT_JOURNAL = (
    f"INSERT INTO journal (order_id, shard, {ENTRY_COLUMNS}, fingerprint, next_events,"
    " context_head, context_tail, context_change) SELECT * FROM unnest($1::text[], $2::int[],"
    " $3::int[], $4::text[], $5::text[], $6::text[], $7::float8[], $8::text[], $9::text[],"
    " $10::float8[], $11::text[], $12::text[], $13::int[], $14::int[], $15::text[])"
)
INSERT_OUTBOX = (
    "INSERT INTO outbox (id, shard, order_id, type, routing_key, body, invoke)"
    " SELECT * FROM unnest($1::text[], $2::int[], $3::text[], $4::text[], $5::text[],"
    " $6::bytea[], $7::text[])"
)
UPSERT_TIMERS = (
    "INSERT INTO timers (id, shard, order_id, due_at, event_type, data, traceparent)"
    " SELECT * FROM unnest($1::text[], $2::int[], $3::text[], $4::float8[], $5::text[],"
    " $6::text[], $7::text[])"
    " ON CONFLICT (id) DO UPDATE SET shard = excluded.shard, order_id = excluded.order_id,"
    " due_at = excluded.due_at, event_type = excluded.event_type, data = excluded.data,"
    " traceparent = excluded.traceparent"
)
DELETE_TIMERS = "DELETE FROM timers WHERE id = ANY($1::text[])"
# Timers whose events were refused, dropped only if they were not set again meanwhile.
DROP_TIMERS = (
    "DELETE FROM timers USING unnest($1::text[], $2::float8[]) AS dropped (id, due_at)"
    " WHERE timers.id = dropped.id AND timers.due_at = dropped.due_at"
)
DELETE_OUTBOX = "DELETE FROM outbox WHERE id = ANY($1::text[])"
REPLAY_COLUMNS = f"{ENTRY_COLUMNS}, next_events, context_head, context_tail, context_change"
# A page of a replay: at most this many rows, and no more stored bytes of changes than this
# beyond its first row.
REPLAY_PAGE_ROWS = 256
REPLAY_PAGE_BYTES = 1024 * 1024
# SQLSTATE classes that mean the server or its storage failed, not the statement.
OUTAGE_CLASSES = frozenset({"08", "53", "57", "58"})
OUTAGE_STATES = frozenset({"25006"})  # read_only_sql_transaction: a standby, say
# Seconds to wait for a connection before the store counts as down.
CONNECT_TIMEOUT = 10.0


def shard_of(order_id: str, shards: int) -> int:
    """The order's shard: crc32 of its id modulo the database's shard count."""
    return zlib.crc32(order_id.encode()) % shards


class PostgresStore:
    def __init__(
        self,
        url: str,
        *,
        max_batch: int = 256,
        on_batch: Callable[[int], None] | None = None,
        readers: int = 8,
        shards: int = SHARDS,
    ) -> None:
        self.url = url
        self.readers = readers
        self.shards = shards  # of a new database; an existing one keeps its own
        self._writer: asyncpg.Connection | None = None
        self._pool: asyncpg.Pool | None = None
        self._group = GroupCommit(
            self._write_batch,
            is_outage=is_outage,
            max_batch=max_batch,
            on_batch=on_batch,
            log=log,
            name="postgres-group-commit",
        )

    async def open(self) -> None:
        try:
            writer = await self._connect()
        except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
            # The server down, the database missing, the role refused: one line to the user.
            raise StoreUnavailable(f"cannot connect to PostgreSQL: {exc}") from exc
        try:
            self.shards = await _migrate(writer, self.shards)
            self._pool = await asyncpg.create_pool(
                self.url, min_size=1, max_size=self.readers, timeout=CONNECT_TIMEOUT
            )
        except BaseException:
            await writer.close()
            raise
        self._writer = writer
        self._group.start()

    async def _connect(self) -> asyncpg.Connection:
        return await asyncpg.connect(self.url, timeout=CONNECT_TIMEOUT)

    async def close(self) -> None:
        await self._group.close()
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
        if self._writer is not None:
            await self._writer.close()
            self._writer = None

    # -- writes ------------------------------------------------------------------------

    async def commit(self, record: TurnRecord) -> None:
        await self._group.commit(record)

    def mark_sent(self, message_ids: list[str]) -> None:
        self._group.mark_sent(message_ids)

    def drop_timer(self, timer: Timer) -> None:
        self._group.drop_timer(timer)

    async def _write_batch(
        self, records: list[TurnRecord], sent: list[str], dropped: list[tuple[str, float]]
    ) -> None:
        """One transaction for the whole batch, one statement per table that has rows."""
        columns = _Columns.of(records, self.shards)
        conn = self._writer
        try:
            if conn is None or conn.is_closed():
                conn = self._writer = await self._connect()
            async with conn.transaction():
                if records:
                    await conn.execute(UPSERT_ORDERS, *columns.orders)
                    await conn.execute(INSERT_JOURNAL, *columns.journal)
                if columns.outbox[0]:
                    await conn.execute(INSERT_OUTBOX, *columns.outbox)
                if columns.cancelled:
                    await conn.execute(DELETE_TIMERS, columns.cancelled)
                if columns.timers[0]:
                    await conn.execute(UPSERT_TIMERS, *columns.timers)
                if sent:
                    await conn.execute(DELETE_OUTBOX, sent)
                if dropped:
                    ids, due = zip(*dropped, strict=True)
                    await conn.execute(DROP_TIMERS, list(ids), list(due))
        except BaseException as exc:
            if conn is not None and is_outage(exc):
                # A connection in an unknown state: the next batch starts on a new one.
                conn.terminate()
                self._writer = None
            raise

    # -- reads -------------------------------------------------------------------------

    async def _fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        pool = self._pool
        if pool is None:
            raise Unavailable("the store is not open")
        try:
            return list(await pool.fetch(sql, *args, timeout=CONNECT_TIMEOUT * 3))
        except Exception as exc:
            if is_outage(exc):
                raise Unavailable(f"the store cannot be read: {exc}") from exc
            raise

    async def load(self, order_id: str) -> Snapshot | None:
        rows = await self._fetch(f"SELECT {SNAPSHOT_COLUMNS} FROM orders WHERE id = $1", order_id)
        return snapshot_of(rows[0]) if rows else None

    async def reply_for(
        self, order_id: str, event_id: str, *, private: frozenset[str] = frozenset()
    ) -> Reply | None:
        rows = await self._fetch(
            "SELECT version, fingerprint FROM journal WHERE order_id = $1 AND event_id = $2",
            order_id,
            event_id,
        )
        if not rows:
            return None
        version, fingerprint = rows[0]
        view = b""
        async for recorded in self.replay(
            order_id, after=version - 1, until=version, private=private
        ):
            view = recorded.view
        return Reply(
            status=201 if version == 1 else 200,
            body=view,
            order_id=order_id,
            fingerprint=fingerprint,
        )

    async def order_created_by(self, event_id: str) -> str | None:
        rows = await self._fetch("SELECT id FROM orders WHERE created_by = $1", event_id)
        return str(rows[0][0]) if rows else None

    async def journal(self, order_id: str, after: int = 0, limit: int = 1000) -> list[JournalEntry]:
        rows = await self._fetch(
            f"SELECT {ENTRY_COLUMNS} FROM journal"
            " WHERE order_id = $1 AND version > $2 ORDER BY version LIMIT $3",
            order_id,
            after,
            limit,
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
        # The row to start from: the last one at or before the first wanted that keeps the
        # whole context; the changes after it rebuild the wanted contexts.
        rows = await self._fetch(
            "SELECT max(version) FROM journal WHERE order_id = $1 AND version <= $2"
            " AND context_head = 0 AND context_tail = 0",
            order_id,
            after + 1,
        )
        read_to = rows[0][0] - 1 if rows[0][0] is not None else after
        context = bytearray()  # the context after version ``read_to``
        while read_to < last:
            page = await self._replay_page(order_id, read_to, last)
            if not page:
                return
            for row in page:
                version: int = row[0]
                next_events: str = row[8]
                head: int = row[9]
                tail: int = row[10]
                change: str = row[11]
                # ContextChange: keep ``head`` and ``tail``, with the change between.
                context[head : len(context) - tail] = change.encode()
                if version > after:
                    entry = entry_of(order_id, row)
                    yield Recorded(entry, rebuilt_view(order, entry, next_events, context, private))
                read_to = version

    async def _replay_page(self, order_id: str, after: int, last: int) -> list[asyncpg.Record]:
        """Rows after ``after`` up to ``last``: at least one, and as many more as fit in
        ``REPLAY_PAGE_BYTES`` of stored changes, up to ``REPLAY_PAGE_ROWS``."""
        sizes = await self._fetch(
            "SELECT version, octet_length(context_change) FROM journal"
            " WHERE order_id = $1 AND version > $2 AND version <= $3 ORDER BY version LIMIT $4",
            order_id,
            after,
            last,
            REPLAY_PAGE_ROWS,
        )
        if not sizes:
            return []
        upto, total = sizes[0][0], 0
        for version, size in sizes:
            total += size
            if total > REPLAY_PAGE_BYTES and version != sizes[0][0]:
                break
            upto = version
        return await self._fetch(
            f"SELECT {REPLAY_COLUMNS} FROM journal"
            " WHERE order_id = $1 AND version > $2 AND version <= $3 ORDER BY version",
            order_id,
            after,
            upto,
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
            params.append(seq)
            where.append(f"seq < ${len(params)}")
        if state:
            # A prefix match that takes '%' and '_' literally, unlike LIKE.
            params.append(state)
            where.append(f"starts_with(state, ${len(params)})")
        if chart:
            params.append(chart)
            where.append(f"chart = ${len(params)}")
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        params.append(limit + 1)
        rows = await self._fetch(
            f"SELECT {SNAPSHOT_COLUMNS}, seq FROM orders {clause}"
            f" ORDER BY seq DESC LIMIT ${len(params)}",
            *params,
        )
        more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = str(rows[-1][-1]) if more else None  # seq, after the snapshot's columns
        return Page([snapshot_of(row) for row in rows], next_cursor)

    async def unsent(self) -> list[OutboxMessage]:
        rows = await self._fetch(
            "SELECT id, order_id, type, routing_key, body, invoke FROM outbox ORDER BY seq"
        )
        return [OutboxMessage(*row) for row in rows]

    async def outbox_depth(self) -> int:
        rows = await self._fetch("SELECT count(*) FROM outbox")
        return int(rows[0][0])

    async def next_timer_due(self, after: float) -> float | None:
        rows = await self._fetch("SELECT min(due_at) FROM timers WHERE due_at > $1", after)
        return None if rows[0][0] is None else float(rows[0][0])

    async def due_timers(self, now: float, limit: int) -> list[Timer]:
        rows = await self._fetch(
            f"SELECT {TIMER_COLUMNS} FROM timers WHERE due_at <= $1 ORDER BY due_at LIMIT $2",
            now,
            limit,
        )
        return [timer_of(row) for row in rows]

    async def timer(self, timer_id: str) -> Timer | None:
        rows = await self._fetch(f"SELECT {TIMER_COLUMNS} FROM timers WHERE id = $1", timer_id)
        return timer_of(rows[0]) if rows else None

    async def stats(self, now: float) -> Stats:
        orders = await self._fetch("SELECT chart, state, count(*) FROM orders GROUP BY 1, 2")
        # Only reads the timers table: firing them is the timer loop's business.
        timers = await self._fetch("SELECT count(*), min(due_at) FROM timers")
        count, first_due = timers[0]
        return Stats(
            orders={(chart, state): int(n) for chart, state, n in orders},
            timers=int(count),
            timer_overdue_seconds=max(0.0, now - first_due) if first_due is not None else 0.0,
        )


def is_outage(exc: BaseException) -> bool:
    """Whether PostgreSQL failed as a server (its connection, storage or shutdown), not
    over a statement: see ``OUTAGE_CLASSES``."""
    if isinstance(exc, OSError | TimeoutError | asyncpg.InterfaceError):
        return True  # the socket, a connect that timed out, a connection closed under us
    state = getattr(exc, "sqlstate", None)
    if not isinstance(exc, asyncpg.PostgresError) or not isinstance(state, str):
        return False
    return state[:2] in OUTAGE_CLASSES or state in OUTAGE_STATES


async def _migrate(conn: asyncpg.Connection, shards: int) -> int:
    """Make or migrate the schema to ``SCHEMA_VERSION`` in one transaction; returns the
    database's shard count. A schema newer than this code's is refused untouched."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", SCHEMA_LOCK)
        await conn.execute(META)
        meta = {row[0]: int(row[1]) for row in await conn.fetch("SELECT key, value FROM meta")}
        found = meta.get("schema_version", 0)
        if found > SCHEMA_VERSION:
            raise SchemaTooNew("the PostgreSQL database", found, SCHEMA_VERSION)
        if found == 0:
            await conn.execute(SCHEMA)
            meta["shards"] = shards
        for version in range(max(found, 1), SCHEMA_VERSION):
            await conn.execute(MIGRATIONS[version])
        if found < SCHEMA_VERSION:
            meta["schema_version"] = SCHEMA_VERSION
            await conn.executemany(
                "INSERT INTO meta (key, value) VALUES ($1, $2)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                list(meta.items()),
            )
        return meta["shards"]


class _Columns:
    """A batch as whole columns, one array per column, for the ``unnest`` inserts."""

    __slots__ = ("cancelled", "journal", "orders", "outbox", "timers")

    def __init__(self) -> None:
        self.orders: list[list[Any]] = [[] for _ in range(13)]
        self.journal: list[list[Any]] = [[] for _ in range(15)]
        self.outbox: list[list[Any]] = [[] for _ in range(7)]
        self.timers: list[list[Any]] = [[] for _ in range(7)]
        self.cancelled: list[str] = []

    @classmethod
    def of(cls, records: list[TurnRecord], shards: int) -> _Columns:
        columns = cls()
        timers: dict[str, tuple[Any, ...]] = {}  # by id: one row per timer in a statement
        for record in records:
            snap, entry = record.snapshot, record.journal
            shard = shard_of(snap.order_id, shards)
            _append(
                columns.orders,
                (
                    snap.order_id,
                    shard,
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
                ),
            )
            change = record.context_change or ContextChange.whole(snap.context_json)
            _append(
                columns.journal,
                (
                    entry.order_id,
                    shard,
                    entry.version,
                    entry.event_id,
                    entry.type,
                    to_json(entry.data),
                    entry.at,
                    entry.state_before,
                    entry.state_after,
                    entry.duration_ms,
                    record.reply.fingerprint,
                    names_json(snap.next_events),
                    change.head,
                    change.tail,
                    change.text,
                ),
            )
            for m in record.outbox:
                _append(
                    columns.outbox,
                    (m.id, shard, m.order_id, m.type, m.routing_key, m.body, m.invoke),
                )
            for timer_id in record.timers_cancelled:
                columns.cancelled.append(timer_id)
                timers.pop(timer_id, None)
            for t in record.timers_set:
                shard = shard_of(t.order_id, shards)
                data = to_json(t.data)
                timers[t.id] = (
                    t.id,
                    shard,
                    t.order_id,
                    t.due_at,
                    t.event_type,
                    data,
                    t.traceparent,
                )
        for row in timers.values():
            _append(columns.timers, row)
        return columns


def _append(columns: list[list[Any]], row: Sequence[Any]) -> None:
    for column, value in zip(columns, row, strict=True):
        column.append(value)
