"""The cluster's rows in PostgreSQL: members' heartbeats and shard leases with epochs.

Every time here is the database's (``now()``), so the nodes' clocks never matter: a member
is live while its heartbeat is younger than the lease TTL, and a lease is held until its
``expires_at``. Taking a shard bumps its epoch, and only where the lease ran out or was
let go, so two nodes can never both take it: the one whose ``UPDATE`` comes second finds
the condition false. Renewing keeps the epoch, and only where the node still holds it
under the epoch it took it with.

The connection is the cluster's own, not the store's: a renewal never waits behind a
group commit's queue. Its session waits at most ``LOCK_TIMEOUT`` for a lock (taking a
shard waits while the last owner's write holds the lease ``FOR SHARE``; a paused owner's
open transaction is ended by the server after ``idle_in_transaction_session_timeout``),
and ``statement_timeout`` bounds everything else, so a stalled database shows up as a
failed renewal instead of a hung loop. One statement runs on it at a time (``_lock``): the
poll loop, a forwarding node's refresh of the routes and GET /cluster share it.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from typing import Any

import asyncpg

CONNECT_TIMEOUT = 5.0
SESSION = {
    "lock_timeout": "2000",
    "statement_timeout": "5000",
    "idle_in_transaction_session_timeout": "5000",
    "tcp_keepalives_idle": "10",
    "tcp_keepalives_interval": "3",
    "tcp_keepalives_count": "3",
}
# A member whose heartbeat is older than this many lease TTLs is deleted; its leases, if
# any are left, lose their owner (ON DELETE SET NULL) and are free to take.
FORGET_AFTER_TTLS = 30
KEY_NAME = "forward"


@dataclass(frozen=True, slots=True)
class Member:
    node: str
    address: str
    started_seconds_ago: float
    heartbeat_seconds_ago: float


@dataclass(frozen=True, slots=True)
class Lease:
    shard: int
    owner: str | None
    epoch: int
    expires_in: float | None  # seconds from now by the database's clock; negative: expired

    @property
    def free(self) -> bool:
        return self.owner is None or self.expires_in is None or self.expires_in <= 0


@dataclass(frozen=True, slots=True)
class Taken:
    """A shard this node took: its new epoch, and the node that held it before, if any."""

    shard: int
    epoch: int
    previous: str | None


class LeaseTable:
    def __init__(self, url: str, *, node: str, address: str, ttl: float) -> None:
        self.url = url
        self.node = node
        self.address = address
        self.ttl = ttl
        self._conn: asyncpg.Connection | None = None
        self._lock = asyncio.Lock()

    async def _fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        async with self._lock:
            conn = await self._connection()
            return list(await conn.fetch(sql, *args))

    async def _execute(self, sql: str, *args: Any) -> None:
        async with self._lock:
            conn = await self._connection()
            await conn.execute(sql, *args)

    async def _connection(self) -> asyncpg.Connection:
        conn = self._conn
        if conn is None or conn.is_closed():
            conn = self._conn = await asyncpg.connect(
                self.url, timeout=CONNECT_TIMEOUT, server_settings=SESSION
            )
        return conn

    async def close(self) -> None:
        async with self._lock:
            if self._conn is not None:
                conn, self._conn = self._conn, None
                conn.terminate()  # a statement stuck on a dead server must not hold this

    async def open(self) -> tuple[int, bytes]:
        """Make sure every shard has its lease row and the cluster its signing key; return
        the database's shard count and the key (the first node to start makes it)."""
        rows = await self._fetch("SELECT value FROM meta WHERE key = 'shards'")
        shards = int(rows[0][0])
        await self._execute(
            "INSERT INTO shard_leases (shard) SELECT generate_series(0, $1::int - 1)"
            " ON CONFLICT DO NOTHING",
            shards,
        )
        await self._execute(
            "INSERT INTO cluster_keys (name, key) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            KEY_NAME,
            os.urandom(32),
        )
        rows = await self._fetch("SELECT key FROM cluster_keys WHERE name = $1", KEY_NAME)
        return shards, bytes(rows[0][0])

    async def heartbeat(self) -> None:
        await self._execute(
            "INSERT INTO members (node, address, started_at, heartbeat_at)"
            " VALUES ($1, $2, now(), now())"
            " ON CONFLICT (node) DO UPDATE SET heartbeat_at = now()",
            self.node,
            self.address,
        )

    async def forget_dead(self) -> None:
        await self._execute(
            "DELETE FROM members WHERE heartbeat_at < now() - $1::float8 * interval '1 second'",
            self.ttl * FORGET_AFTER_TTLS,
        )

    async def members(self) -> list[Member]:
        """Every member known, live or not, oldest first."""
        rows = await self._fetch(
            "SELECT node, address, extract(epoch FROM now() - started_at)::float8,"
            " extract(epoch FROM now() - heartbeat_at)::float8 FROM members ORDER BY started_at"
        )
        return [Member(*row) for row in rows]

    async def leases(self) -> list[Lease]:
        rows = await self._fetch(
            "SELECT shard, owner, epoch, extract(epoch FROM expires_at - now())::float8"
            " FROM shard_leases ORDER BY shard"
        )
        return [Lease(*row) for row in rows]

    async def acquire(self, shards: list[int]) -> list[Taken]:
        """Take those of ``shards`` whose lease ran out or was let go, under a new epoch."""
        rows = await self._fetch(
            "WITH free AS (SELECT shard, owner FROM shard_leases WHERE shard = ANY($2::int[])"
            " AND (owner IS NULL OR expires_at IS NULL OR expires_at <= now()) FOR UPDATE)"
            " UPDATE shard_leases l SET owner = $1, epoch = l.epoch + 1,"
            " expires_at = now() + $3::float8 * interval '1 second'"
            " FROM free WHERE l.shard = free.shard RETURNING l.shard, l.epoch, free.owner",
            self.node,
            shards,
            self.ttl,
        )
        return [Taken(*row) for row in rows]

    async def take_from_predecessors(self) -> list[Taken]:
        """Take at once the shards of earlier incarnations at this node's address, and
        forget their member rows: a node restarted after a crash serves again without
        waiting its old leases out. Safe whatever became of them: the epoch moves on, so
        should one still run, the fence refuses its writes and its renewals fail."""
        rows = await self._fetch(
            "WITH gone AS (SELECT l.shard, l.owner FROM shard_leases l"
            " JOIN members m ON m.node = l.owner WHERE m.address = $2 AND m.node <> $1"
            " FOR UPDATE OF l)"
            " UPDATE shard_leases l SET owner = $1, epoch = l.epoch + 1,"
            " expires_at = now() + $3::float8 * interval '1 second'"
            " FROM gone WHERE l.shard = gone.shard RETURNING l.shard, l.epoch, gone.owner",
            self.node,
            self.address,
            self.ttl,
        )
        await self._execute(
            "DELETE FROM members WHERE address = $2 AND node <> $1", self.node, self.address
        )
        return [Taken(*row) for row in rows]

    async def renew(self, epochs: dict[int, int]) -> set[int]:
        """Extend the leases this node holds under these epochs; returns those renewed."""
        rows = await self._fetch(
            "UPDATE shard_leases l SET expires_at = now() + $4::float8 * interval '1 second'"
            " FROM unnest($2::int[], $3::int8[]) AS f (shard, epoch)"
            " WHERE l.shard = f.shard AND l.epoch = f.epoch AND l.owner = $1 RETURNING l.shard",
            self.node,
            list(epochs),
            list(epochs.values()),
            self.ttl,
        )
        return {row[0] for row in rows}

    async def release(self, epochs: dict[int, int]) -> None:
        """Let shards go at once (a handover), so the next owner need not wait them out."""
        await self._execute(
            "UPDATE shard_leases l SET owner = NULL, expires_at = NULL"
            " FROM unnest($2::int[], $3::int8[]) AS f (shard, epoch)"
            " WHERE l.shard = f.shard AND l.epoch = f.epoch AND l.owner = $1",
            self.node,
            list(epochs),
            list(epochs.values()),
        )

    async def leave(self) -> None:
        """Delete this member's row: a graceful stop, seen by the others at their next look."""
        await self._execute("DELETE FROM members WHERE node = $1", self.node)
