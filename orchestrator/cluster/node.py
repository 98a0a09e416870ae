"""This node's place in the cluster: its leases, the shards it serves, the route table.

Once a ``poll`` (1 s) the node heartbeats its member row, renews the leases it holds, reads
the members and leases, and acts on them:

- It takes the free shards (lease run out or let go) that rendezvous placement gives it
  among the live members, and any shard left free for longer than ``stable``, whoever it
  should go to: a shard is never left unserved for want of its ideal owner.
- Once the membership has not changed for ``stable`` seconds it hands over the shards
  placement gives to another node: it stops admitting their requests, lets the turns
  already queued commit (up to ``DRAIN`` seconds), stops serving them and lets the leases
  go, so the next owner takes them at its next poll instead of waiting out the TTL.
- At start it takes at once the shards of its earlier incarnations at the same address (a
  restart after a crash): they are its own, and waiting their leases out would leave them
  unserved for a TTL. The new epoch fences the old incarnation, should it still run.
- It stops serving a shard at once when its renewal is refused (another node holds it)
  or when it could not renew for ``ttl * VALID_PART`` seconds by its own monotonic clock
  (self-fencing): by then its lease may have run out and been taken. A paused process
  finds this on its first write after resuming, before anything reaches the database.

Gaining and losing shards is told to the ``ShardHost`` (the runtime): before a shard is
served, what it left behind is read (``taking``: its outbox); then it is served
(``taken``: resend the outbox, wake the timers); on loss it stops at once (``lost``:
queued requests fail with ``ShardMoved``, its actors are dropped, its timers and relay
stop). The node is also the store's ``Fence``: the epochs every write transaction checks.

The failover bound after a node dies: the lease TTL, then up to one poll, then the new
owner's ``taking`` (about 10-12 s with the default TTL of 10 s); a handover about one poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any, Protocol

from orchestrator import logs
from orchestrator.cluster.leases import Lease, LeaseTable, Member, Taken
from orchestrator.cluster.placement import placement
from orchestrator.errors import ShardMoved, Unavailable
from orchestrator.metrics import Metrics
from orchestrator.shards import SHARDS, shard_of

log = logging.getLogger(__name__)

# A lease is taken or renewed for ``ttl``; the node serves its shards for this part of it
# after the renewal was sent, leaving the rest as a margin for clock rates and the trip.
VALID_PART = 0.75
# Seconds a handover waits for the turns already queued on its shards to commit.
DRAIN = 2.0


class ShardHost(Protocol):
    """What serves a shard's orders on this node: the registry, relay and scheduler."""

    async def taking(self, shards: frozenset[int]) -> None:
        """Read what the shards left behind, before any turn of theirs commits here."""

    def taken(self, shards: frozenset[int]) -> None:
        """Serve the shards: resend their outbox, fire their timers."""

    def lost(self, shards: frozenset[int]) -> None:
        """Stop serving the shards, at once."""

    async def drain(self, shards: frozenset[int], within: float) -> None:
        """Return once no turn of the shards is queued or running, or after ``within``."""


class ClusterNode:
    def __init__(
        self,
        url: str,
        *,
        address: str,
        metrics: Metrics,
        ttl: float = 10.0,
        poll: float = 1.0,
        stable: float | None = None,
    ) -> None:
        self.address = address
        # A restart at the same address is a new incarnation: a new id, so a lease or a
        # write of the one before is never taken for its own.
        self.node = f"{address}/{time.time_ns() // 1_000_000}"
        self.ttl = ttl
        self.poll = poll
        self.stable = stable if stable is not None else 2 * poll
        self.table = LeaseTable(url, node=self.node, address=address, ttl=ttl)
        self.metrics = metrics
        self.shards = SHARDS  # the database's count, read at start
        self.key = b""  # the key forwarded calls are signed with, read at start
        self.epochs: dict[int, int] = {}  # shard -> the epoch this node holds it under
        self.routes: dict[int, str] = {}  # shard -> its owner's address, as last read
        self._leaving: set[int] = set()
        self._valid_until = 0.0
        self._members: frozenset[str] = frozenset()
        self._want: dict[int, str] = {}
        self._members_since = time.monotonic()
        self._free_since: dict[int, float] = {}
        self._host: ShardHost | None = None
        self._task: asyncio.Task[None] | None = None
        metrics.watch(metrics.shards_owned, lambda: len(self.epochs))

    def attach(self, host: ShardHost) -> None:
        self._host = host

    # -- the store's fence -----------------------------------------------------------

    def epoch(self, shard: int) -> int | None:
        if self.epochs and time.monotonic() >= self._valid_until:
            self._self_fence()
        return self.epochs.get(shard)

    def refused(self, shards: frozenset[int], where: str) -> None:
        self.metrics.fence_refusals.labels(where).inc()
        self._lose(shards, f"a write to them was refused ({where})")

    # -- ownership and routes --------------------------------------------------------

    def shard_of(self, text: str) -> int:
        return shard_of(text, self.shards)

    def serves(self, shard: int) -> bool:
        """Whether this node applies the shard's events now (a shard being handed over
        takes no new ones)."""
        return (
            shard in self.epochs
            and shard not in self._leaving
            and time.monotonic() < self._valid_until
        )

    def served(self) -> list[int]:
        return [shard for shard in self.epochs if shard not in self._leaving]

    def owner(self, shard: int) -> str | None:
        """The address of the node that holds the shard as last read; None when no node
        does, or when it is this one (but this one does not serve it now)."""
        address = self.routes.get(shard)
        return None if address == self.address else address

    def moved(self, shard: int) -> ShardMoved:
        return ShardMoved(shard, self.owner(shard))

    async def refresh(self) -> None:
        """Read the route table now (a node answered that it does not own a shard)."""
        with contextlib.suppress(Exception):
            await self._read_routes()

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        self.shards, self.key = await self.table.open()
        logs.in_cluster(self.node, self.shards)
        started = time.monotonic()
        await self.table.heartbeat()
        taken = await self.table.take_from_predecessors()
        if taken:
            await self._gain(taken, started)
        await self._tick()
        self._task = asyncio.create_task(self._loop(), name="cluster-leases")
        log.info(
            "cluster node %s started: %d of %d shards", self.node, len(self.epochs), self.shards
        )

    async def stop(self) -> None:
        """Hand every shard over and leave the membership: the others take over at their
        next poll instead of waiting out the leases."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        try:
            await self._handover(set(self.epochs))
            await self.table.leave()
        except Exception as exc:
            log.warning("could not leave the cluster cleanly (%r); its leases run out", exc)
        finally:
            self._lose(set(self.epochs), "the node is stopping")
            await self.table.close()

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.poll)
            try:
                await self._tick()
            except Exception as exc:
                log.warning("cluster poll failed: %r", exc)
                with contextlib.suppress(Exception):
                    await self.table.close()  # a new connection at the next poll
            if self.epochs and time.monotonic() >= self._valid_until:
                self._self_fence()

    async def _tick(self) -> None:
        started = time.monotonic()
        if self.epochs and started >= self._valid_until:
            self._self_fence()
        await self.table.heartbeat()
        if self.epochs:
            held = dict(self.epochs)
            renewed = await self.table.renew(held)
            self.metrics.lease_renew_seconds.observe(time.monotonic() - started)
            lost = set(held) - renewed
            if lost:
                self._lose(lost, "another node holds them now")
            if self.epochs:
                self._valid_until = started + self.ttl * VALID_PART
        members, leases = await self._read_routes()
        await self._place(started, members, leases)
        if time.monotonic() - started > self.ttl * 0.25:
            log.warning("cluster poll took %.1f s", time.monotonic() - started)

    async def _read_routes(self) -> tuple[list[Member], list[Lease]]:
        members = await self.table.members()
        leases = await self.table.leases()
        live = {m.node: m.address for m in members if m.heartbeat_seconds_ago < self.ttl}
        routes = {
            lease.shard: live[lease.owner]
            for lease in leases
            if not lease.free and lease.owner in live
        }
        routes.update((shard, self.address) for shard in self.epochs)
        self.routes = routes
        return members, leases

    async def _place(self, started: float, members: list[Member], leases: list[Lease]) -> None:
        now = time.monotonic()
        live = frozenset(m.address for m in members if m.heartbeat_seconds_ago < self.ttl)
        live |= {self.address}
        if live != self._members or not self._want:
            self._members, self._members_since = live, now
            self._want = placement(live, self.shards)  # the same members, the same answer
        want = self._want
        free = []
        for lease in leases:
            if not lease.free or lease.shard in self.epochs:
                self._free_since.pop(lease.shard, None)
                continue
            since = self._free_since.setdefault(lease.shard, now)
            if want.get(lease.shard) == self.address or now - since >= self.stable:
                free.append(lease.shard)
        if free:
            taken = await self.table.acquire(free)
            if taken:
                await self._gain(taken, started)
        if now - self._members_since >= self.stable:
            give = {shard for shard in self.served() if want.get(shard) != self.address}
            if give:
                await self._handover(give)

    async def _gain(self, taken: list[Taken], started: float) -> None:
        shards = frozenset(t.shard for t in taken)
        if not self.epochs:
            self._valid_until = started + self.ttl * VALID_PART
        host = self._host
        try:
            if host is not None:
                await host.taking(shards)
        except Exception as exc:
            log.warning("could not start shards %s (%r); letting them go", sorted(shards), exc)
            with contextlib.suppress(Exception):
                await self.table.release({t.shard: t.epoch for t in taken})
            return
        self.epochs.update((t.shard, t.epoch) for t in taken)
        self.routes.update((shard, self.address) for shard in shards)
        failovers = sum(1 for t in taken if t.previous is not None and t.previous != self.node)
        if failovers:
            self.metrics.failovers.inc(failovers)
        log.info(
            "took %d shards (%d from a node whose lease ran out): %s",
            len(shards),
            failovers,
            _ranges(shards),
        )
        if host is not None:
            host.taken(shards)

    async def _handover(self, shards: set[int]) -> None:
        if not shards:
            return
        self._leaving |= shards
        if self._host is not None:
            await self._host.drain(frozenset(shards), DRAIN)
        held = {shard: self.epochs[shard] for shard in shards if shard in self.epochs}
        self._lose(set(held), "handed over")
        if held:
            await self.table.release(held)

    def _self_fence(self) -> None:
        self._lose(
            set(self.epochs),
            f"its leases were not renewed within {self.ttl * VALID_PART:.1f} s by its own"
            " clock, so another node may hold them",
        )

    def _lose(self, shards: set[int] | frozenset[int], why: str) -> None:
        lost = frozenset(shard for shard in shards if shard in self.epochs)
        if not lost:
            return
        for shard in lost:
            del self.epochs[shard]
            self._leaving.discard(shard)
            if self.routes.get(shard) == self.address:
                del self.routes[shard]
        level = logging.INFO if why == "handed over" else logging.WARNING
        log.log(level, "stopped serving %d shards (%s): %s", len(lost), why, _ranges(lost))
        if self._host is not None:
            self._host.lost(lost)

    # -- status ----------------------------------------------------------------------

    async def status(self) -> dict[str, Any]:
        """The members, and which node holds which shard under which epoch, for how long
        more, as the database has them now (GET /cluster); ``Unavailable`` when the
        database cannot be read."""
        try:
            members = await self.table.members()
            leases = await self.table.leases()
        except Exception as exc:
            raise Unavailable(f"the cluster's tables cannot be read: {exc!r}") from exc
        return {
            "node": self.node,
            "shardCount": self.shards,
            "leaseTtl": self.ttl,
            "members": [
                {
                    "node": m.node,
                    "address": m.address,
                    "live": m.heartbeat_seconds_ago < self.ttl,
                    "startedSecondsAgo": round(m.started_seconds_ago, 3),
                    "heartbeatSecondsAgo": round(m.heartbeat_seconds_ago, 3),
                    "shards": _ranges(
                        frozenset(x.shard for x in leases if x.owner == m.node and not x.free)
                    ),
                }
                for m in members
            ],
            "shards": [
                {
                    "shard": x.shard,
                    "owner": None if x.free else x.owner,
                    "epoch": x.epoch,
                    "expiresIn": None if x.expires_in is None else round(x.expires_in, 3),
                }
                for x in leases
            ],
        }


def _ranges(shards: frozenset[int]) -> str:
    """Shards as ranges, for a log line or a status: 0-41,43,45-60."""
    runs: list[tuple[int, int]] = []
    for shard in sorted(shards):
        if runs and runs[-1][1] == shard - 1:
            runs[-1] = (runs[-1][0], shard)
        else:
            runs.append((shard, shard))
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)
