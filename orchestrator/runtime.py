"""The composition root: Settings -> adapters -> registry, relay, inbox, hub, app.

Only this module picks adapters, and only ``cli`` imports it. Start-up and shutdown are
written sequences, one step per line, so their order can be read and argued about.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from starlette.applications import Starlette

from orchestrator.broker.base import Broker
from orchestrator.broker.fanout import TurnFanout
from orchestrator.broker.memory import MemoryBroker
from orchestrator.broker.rabbitmq import RabbitBroker
from orchestrator.charts import load_charts
from orchestrator.cluster.forward import Forwarder
from orchestrator.cluster.node import ClusterNode
from orchestrator.edge.app import create_app
from orchestrator.edge.sameorigin import AllowedHosts
from orchestrator.exporter import open_spans
from orchestrator.hub import Hub, message_of
from orchestrator.inbox import Inbox
from orchestrator.metrics import Metrics
from orchestrator.model import Event, TurnRecord
from orchestrator.outbox import OutboxRelay
from orchestrator.registry import Registry
from orchestrator.settings import Settings
from orchestrator.store.base import Store
from orchestrator.store.postgres import PostgresStore
from orchestrator.store.sqlite import SqliteStore
from orchestrator.timers import Scheduler
from orchestrator.turn import Limits
from orchestrator.worker import Service
from services.delivery.handlers import delivery
from services.kitchen.handlers import kitchen

log = logging.getLogger(__name__)


def sibling(db: Path, role: str) -> Path:
    """A file beside the database for another part of embedded mode (orders.broker.db)."""
    return db.with_name(f"{db.stem}.{role}.db")


def open_store(
    settings: Settings,
    on_batch: Callable[[int], None] | None = None,
    fence: ClusterNode | None = None,
) -> Store:
    """The store ``settings`` name (not yet opened): PostgreSQL for a ``--store`` URL, else
    the SQLite file ``--db``. The runtime keeps the whole store (it alone opens and closes
    it) and hands each part only its role: see ``orchestrator.store.base``."""
    if settings.store is not None:
        return PostgresStore(
            settings.store, max_batch=settings.max_batch, on_batch=on_batch, fence=fence
        )
    return SqliteStore(
        settings.db,
        synchronous=settings.synchronous,
        max_batch=settings.max_batch,
        on_batch=on_batch,
    )


async def prepare_store(settings: Settings) -> None:
    """Open the store once and close it: its schema is made or migrated, and a schema
    newer than this release (``SchemaTooNew``) or a store out of reach fails here, before
    the server starts, as one line rather than a traceback from uvicorn's start-up."""
    store = open_store(settings)
    await store.open()
    await store.close()


class Runtime:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.spans = open_spans("orchestrator", settings.otlp_endpoint)
        self.charts = load_charts(settings.charts, settings.options_by_chart())
        # On PostgreSQL every server is a cluster node (one alone is a cluster of one): two
        # processes on one database can then never both write an order.
        self.cluster: ClusterNode | None = None
        self.forwarder: Forwarder | None = None
        if settings.store is not None:
            self.cluster = ClusterNode(
                settings.store,
                address=settings.node_address,
                metrics=self.metrics,
                ttl=settings.lease_ttl,
            )
            self.forwarder = Forwarder(self.cluster, self.metrics)
        self.store = open_store(settings, self.metrics.commit_batch.observe, self.cluster)
        self.broker: Broker
        # Each in-process service with its ledger file.
        self.services: list[tuple[Service, Path]] = []
        if settings.broker.startswith(("amqp://", "amqps://")):
            # Kitchen and delivery run as their own processes: python -m services.kitchen
            self.broker = RabbitBroker(
                settings.broker,
                on_reconnect=self.metrics.broker_reconnects.inc,
                on_dead_letter=self._dead_lettered,
                connect_within=settings.broker_connect_timeout,
            )
        else:
            self.broker = MemoryBroker(
                sibling(settings.db, "broker"),
                synchronous=settings.synchronous,
                on_dead_letter=self._dead_lettered,
            )
            self.services = self._embedded_services(settings)
        self.hub = Hub(
            self.metrics, settings.ws_queue, settings.max_subscribers, settings.ws_queue_bytes
        )
        # A cluster's nodes tell each other of committed turns for their WebSockets.
        self.fanout: TurnFanout | None = None
        if self.cluster is not None and isinstance(self.broker, RabbitBroker):
            self.fanout = TurnFanout(
                settings.broker,
                node=self.cluster.node,
                deliver=self.hub.deliver,
                resync=self.hub.resync,
                connect_within=settings.broker_connect_timeout,
            )
            self.hub.watcher = self.fanout
        self.registry = Registry(
            store=self.store,
            charts=self.charts,
            metrics=self.metrics,
            on_commit=self._on_commit,
            max_actors=settings.max_actors,
            idle_seconds=settings.idle_seconds,
            limits=Limits(settings.max_order_bytes, settings.max_order_events),
            cluster=self.forwarder,
            spans=self.spans,
        )
        self.relay = OutboxRelay(self.store, self.broker, self._deliver, self.metrics, self.spans)
        self.scheduler = Scheduler(
            self.store,
            self.registry.fire,
            shards=self.cluster.served if self.cluster is not None else None,
        )
        if self.cluster is not None:
            self.cluster.attach(_ShardHost(self))
        self.inbox = Inbox(
            self.broker, self.registry, max_body_bytes=settings.max_body_bytes, spans=self.spans
        )
        self.app: Starlette = create_app(
            self.lifespan,
            registry=self.registry,
            hub=self.hub,
            store=self.store,
            metrics=self.metrics,
            spans=self.spans,
            max_body_bytes=settings.max_body_bytes,
            ws_send_timeout=settings.ws_send_timeout,
            api_token=settings.api_token,
            allowed_hosts=AllowedHosts(settings.host, settings.allowed_hosts),
            webhook_keys=settings.webhook_keys(),
            webhook_window=settings.webhook_window,
            cluster=self.cluster,
        )

    def _embedded_services(self, settings: Settings) -> list[tuple[Service, Path]]:
        """The kitchen and delivery of embedded mode, for the in-process broker."""
        services = (
            kitchen(delay=settings.kitchen_delay, mode=settings.kitchen_mode),
            delivery(delay=settings.delivery_delay, mode=settings.delivery_mode),
        )
        return [(service, sibling(settings.db, service.name)) for service in services]

    def exclusive_files(self) -> list[Path]:
        """The files only this process may write: the SQLite database, and with the
        in-process broker its file and the services' ledgers (a ``python -m
        services.kitchen`` on one would bake twice). On PostgreSQL with RabbitMQ, none:
        the nodes of a cluster share the database, and its leases keep them apart."""
        files = [self.settings.db] if self.settings.store is None else []
        if self.services:
            files.append(sibling(self.settings.db, "broker"))
            files += [ledger for _, ledger in self.services]
        return files

    def _dead_lettered(self, queue: str) -> None:
        self.metrics.dead_letters.labels(queue).inc()

    def _on_commit(self, record: TurnRecord) -> None:
        if self.fanout is None:
            self.hub.publish(record)
        else:
            message = message_of(record)
            order_id, version = record.snapshot.order_id, record.snapshot.version
            self.hub.deliver(order_id, version, message)
            self.fanout.publish(order_id, version, message)
        self.relay.enqueue(record.outbox)
        if record.timers_set:
            self.scheduler.notify(min(timer.due_at for timer in record.timers_set))

    async def _deliver(self, order_id: str, event: Event) -> None:
        await self.registry.send(order_id, event)

    @asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        await self.start()
        app.state.ready = True
        try:
            yield
        finally:
            app.state.ready = False
            await self.stop()

    async def start(self) -> None:
        # 1. open the store: schema, WAL, the group-commit loop
        await self.store.open()
        # 1b. read the outbox rows a crash left behind, before any turn of this run commits
        #     (read after step 3, rows relayed meanwhile but not yet deleted went out twice);
        #     a cluster node reads a shard's when it takes the shard, in step 8
        if self.cluster is None:
            await self.relay.recover()
        # 2. connect the broker (and a cluster node its turn fanout): messages stored before
        #    a crash come back, unacked
        try:
            await self.broker.connect()
            if self.fanout is not None:
                await self.fanout.start()
        except BaseException:
            # The store's threads would keep the process alive after uvicorn gives up.
            await self.store.close()
            raise
        # 3. consume events for orders (dedupe makes redeliveries harmless); first, so that
        #    the services' answers find the orchestrator's queue bound
        await self.inbox.start()
        # 4. start the services so their queues exist before anything is published
        for service, ledger in self.services:
            await service.start(self.broker, ledger, spans=self.spans)
        # 5. resend the outbox rows read in 1b; in-flight orders carry on
        await self.relay.start()
        # 6. passivate idle actors from now on
        self.registry.start()
        # 7. fire timers, first those that fell due while the server was down
        self.scheduler.start()
        # 8. join the cluster: take this node's shards, each resuming its outbox and timers
        if self.cluster is not None:
            await self.cluster.start()
        store = "PostgreSQL" if self.settings.store is not None else self.settings.db
        log.info("orchestrator ready: store=%s charts=%s", store, sorted(self.charts))

    async def stop(self) -> None:
        # (uvicorn has stopped accepting connections and finished open requests)
        # -1. hand the shards over: their queued turns commit, then the leases are let go
        #     and the other nodes take them at their next poll
        if self.cluster is not None:
            await self.cluster.stop()
        # 0. stop firing timers: one whose turn did not commit stays pending
        await self.scheduler.stop()
        # 1. stop relaying: unconfirmed messages stay in the outbox for the next start
        await self.relay.drain()
        # 2. stop consuming: an interrupted delivery stays in the broker for the next start
        await self.broker.close()
        if self.fanout is not None:
            await self.fanout.close()
        # 3. drain the turns already queued; each commits before its actor goes idle
        await self.registry.drain()
        # 4. close the services' ledgers
        for service, _ in self.services:
            await service.close()
        # 5. close the store, flushing the last group commit
        await self.store.close()
        if self.forwarder is not None:
            await self.forwarder.close()
        # 6. export the spans still queued (a few seconds at most, in the exporter's thread)
        if self.spans is not None:
            await asyncio.to_thread(self.spans.close)
        log.info("orchestrator stopped")


class _ShardHost:
    """What a cluster node starts and stops as it takes and loses shards."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    async def taking(self, shards: frozenset[int]) -> None:
        await self._runtime.relay.recover(sorted(shards))

    def taken(self, shards: frozenset[int]) -> None:
        self._runtime.relay.resend()
        self._runtime.scheduler.wake()

    def lost(self, shards: frozenset[int]) -> None:
        runtime = self._runtime
        cluster = runtime.cluster
        assert cluster is not None
        runtime.registry.lost(shards)
        runtime.relay.forget(lambda order_id: cluster.shard_of(order_id) in shards)

    async def drain(self, shards: frozenset[int], within: float) -> None:
        await self._runtime.registry.quiesce(shards, within)
