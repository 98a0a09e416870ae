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
from orchestrator.broker.memory import MemoryBroker
from orchestrator.broker.rabbitmq import RabbitBroker
from orchestrator.charts import load_charts
from orchestrator.edge.app import create_app
from orchestrator.edge.sameorigin import AllowedHosts
from orchestrator.hub import Hub
from orchestrator.inbox import Inbox
from orchestrator.metrics import Metrics
from orchestrator.model import Event, TurnRecord
from orchestrator.outbox import OutboxRelay
from orchestrator.registry import Registry
from orchestrator.settings import Settings
from orchestrator.spans import Spans
from orchestrator.store.base import Store
from orchestrator.store.postgres import PostgresStore
from orchestrator.store.sqlite import SqliteStore
from orchestrator.timers import Scheduler
from orchestrator.turn import Limits
from services.delivery import handlers as delivery
from services.kitchen import handlers as kitchen
from services.ledger import Ledger
from services.stub import StubService

log = logging.getLogger(__name__)


def sibling(db: Path, role: str) -> Path:
    """A file beside the database for another part of embedded mode (orders.broker.db)."""
    return db.with_name(f"{db.stem}.{role}.db")


def open_store(settings: Settings, on_batch: Callable[[int], None] | None = None) -> Store:
    """The store ``settings`` name (not yet opened): PostgreSQL for a ``--store`` URL, else
    the SQLite file ``--db``. The runtime keeps the whole store (it alone opens and closes
    it) and hands each part only its role: see ``orchestrator.store.base``."""
    if settings.store is not None:
        return PostgresStore(settings.store, max_batch=settings.max_batch, on_batch=on_batch)
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


def open_spans(service: str, endpoint: str | None) -> Spans | None:
    """The OTLP span exporter when an endpoint is set; OpenTelemetry is imported only then,
    so a process without one never loads it."""
    if endpoint is None:
        return None
    try:
        from orchestrator.otel import OtlpSpans
    except ImportError:
        log.warning(
            "OTEL_EXPORTER_OTLP_ENDPOINT is set but OpenTelemetry is not installed"
            " (pip install 'order-orchestrator[otel]'): no spans are exported"
        )
        return None
    return OtlpSpans(service, endpoint)


class Runtime:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.spans = open_spans("orchestrator", settings.otlp_endpoint)
        self.charts = load_charts(settings.charts, settings.options_by_chart())
        self.store = open_store(settings, on_batch=self.metrics.commit_batch.observe)
        self.broker: Broker
        self.services: list[StubService] = []
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
        self.registry = Registry(
            store=self.store,
            charts=self.charts,
            metrics=self.metrics,
            on_commit=self._on_commit,
            max_actors=settings.max_actors,
            idle_seconds=settings.idle_seconds,
            limits=Limits(settings.max_order_bytes, settings.max_order_events),
            spans=self.spans,
        )
        self.relay = OutboxRelay(self.store, self.broker, self._deliver, self.metrics, self.spans)
        self.scheduler = Scheduler(self.store, self.registry.fire)
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
        )

    def _embedded_services(self, settings: Settings) -> list[StubService]:
        """The kitchen and delivery of embedded mode, on the in-process broker."""
        return [
            StubService(
                stub.NAME,
                stub.ANSWERS,
                compensations=stub.COMPENSATIONS,
                broker=self.broker,
                ledger=Ledger(sibling(settings.db, stub.NAME)),
                delay=delay,
                mode=mode,
                spans=self.spans,
            )
            for stub, delay, mode in (
                (kitchen, settings.kitchen_delay, settings.kitchen_mode),
                (delivery, settings.delivery_delay, settings.delivery_mode),
            )
        ]

    def exclusive_files(self) -> list[Path]:
        """The files only this process may write: the database, and in embedded mode the
        services' ledgers (a ``python -m services.kitchen`` on one would bake twice)."""
        return [self.settings.db, *(service.ledger.path for service in self.services)]

    def _dead_lettered(self, queue: str) -> None:
        self.metrics.dead_letters.labels(queue).inc()

    def _on_commit(self, record: TurnRecord) -> None:
        self.hub.publish(record)
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
        #     (read after step 3, rows relayed meanwhile but not yet deleted went out twice)
        await self.relay.recover()
        # 2. connect the broker: messages stored before a crash come back, unacked
        try:
            await self.broker.connect()
        except BaseException:
            # The store's threads would keep the process alive after uvicorn gives up.
            await self.store.close()
            raise
        # 3. consume events for orders (dedupe makes redeliveries harmless); first, so that
        #    the services' answers find the orchestrator's queue bound
        await self.inbox.start()
        # 4. start the services so their queues exist before anything is published
        for service in self.services:
            await service.start()
        # 5. resend the outbox rows read in 1b; in-flight orders carry on
        await self.relay.start()
        # 6. passivate idle actors from now on
        self.registry.start()
        # 7. fire timers, first those that fell due while the server was down
        self.scheduler.start()
        store = "PostgreSQL" if self.settings.store is not None else self.settings.db
        log.info("orchestrator ready: store=%s charts=%s", store, sorted(self.charts))

    async def stop(self) -> None:
        # (uvicorn has stopped accepting connections and finished open requests)
        # 0. stop firing timers: one whose turn did not commit stays pending
        await self.scheduler.stop()
        # 1. stop relaying: unconfirmed messages stay in the outbox for the next start
        await self.relay.drain()
        # 2. stop consuming: an interrupted delivery stays in the broker for the next start
        await self.broker.close()
        # 3. drain the turns already queued; each commits before its actor goes idle
        await self.registry.drain()
        # 4. close the services' ledgers
        for service in self.services:
            await service.ledger.close()
        # 5. close the store, flushing the last group commit
        await self.store.close()
        # 6. export the spans still queued (a few seconds at most, in the exporter's thread)
        if self.spans is not None:
            await asyncio.to_thread(self.spans.close)
        log.info("orchestrator stopped")
