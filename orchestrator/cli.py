"""``orchestrator serve``: flags (each also an ORCHESTRATOR_* variable) -> Settings -> server.

Only this module reads the environment (through click's ``auto_envvar_prefix``), and only
it imports the runtime.
"""

from __future__ import annotations

import asyncio
import gc
import signal
import socket
import sys
from pathlib import Path
from types import FrameType

import click
import uvicorn

from orchestrator import cli_client, logs
from orchestrator.broker.rabbitmq import BrokerUnreachable, wait_until_reachable
from orchestrator.deadlines import with_deadlines
from orchestrator.errors import OrchestratorError, SchemaTooNew
from orchestrator.lockfile import ExclusiveLock, InUse
from orchestrator.migrate import MigrationFailed, TargetNotEmpty, describe_url, migrate
from orchestrator.runtime import Runtime, prepare_store
from orchestrator.settings import (
    LOG_FORMATS,
    POSTGRES_SCHEMES,
    SERVICE_MODES,
    SYNCHRONOUS_MODES,
    Settings,
)
from orchestrator.workers import supervise, worker_commands

DEFAULTS = Settings()


@click.group()
@click.version_option(package_name="order-orchestrator")
def main() -> None:
    """A durable order orchestrator: one statechart actor per order."""


@main.command(context_settings={"auto_envvar_prefix": "ORCHESTRATOR"})
@click.option(
    "--db",
    type=click.Path(path_type=Path),
    default=DEFAULTS.db,
    show_default=True,
    help="SQLite file of orders (beside it: .broker, .kitchen, .delivery files).",
)
@click.option(
    "--store",
    default=None,
    help="A postgresql:// URL to keep orders in PostgreSQL [default: the SQLite file --db].",
)
@click.option("--host", default=DEFAULTS.host, show_default=True)
@click.option("--port", type=int, default=DEFAULTS.port, show_default=True)
@click.option(
    "--broker",
    default=DEFAULTS.broker,
    show_default=True,
    help="'memory' (in-process, persisted beside --db) or an amqp:// URL.",
)
@click.option(
    "--broker-connect-timeout",
    type=float,
    default=DEFAULTS.broker_connect_timeout,
    show_default=True,
    help="Seconds to keep trying to reach RabbitMQ at start (it may be starting too).",
)
@click.option(
    "--charts",
    "charts_dir",
    envvar="ORCHESTRATOR_CHARTS",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    default=None,
    help="Directory of chart documents [default: bundled statecharts/].",
)
@click.option(
    "--chart-option",
    "chart_options",
    envvar="ORCHESTRATOR_CHART_OPTION",
    multiple=True,
    metavar="CHART.NAME=VALUE",
    help="Set one of a chart's options, e.g. pizza.kitchenTimeout=30 (repeatable).",
)
@click.option(
    "--synchronous",
    type=click.Choice(SYNCHRONOUS_MODES, case_sensitive=False),
    default=DEFAULTS.synchronous,
    show_default=True,
    help="SQLite durability: FULL survives power loss, NORMAL only a crash.",
)
@click.option(
    "--max-actors",
    type=int,
    default=DEFAULTS.max_actors,
    show_default=True,
    help="Actors kept in memory; the least recently used idle ones go first.",
)
@click.option(
    "--idle-seconds",
    type=float,
    default=DEFAULTS.idle_seconds,
    show_default=True,
    help="An actor idle this long is dropped from memory.",
)
@click.option(
    "--max-batch",
    type=int,
    default=DEFAULTS.max_batch,
    show_default=True,
    help="Most turns in one group commit.",
)
@click.option("--max-body-bytes", type=int, default=DEFAULTS.max_body_bytes, show_default=True)
@click.option(
    "--max-order-bytes",
    type=int,
    default=DEFAULTS.max_order_bytes,
    show_default=True,
    help="Largest an order's context may grow, in bytes of JSON; a turn past it gets 409.",
)
@click.option(
    "--max-order-events",
    type=int,
    default=DEFAULTS.max_order_events,
    show_default=True,
    help="Most events one order may take; the next one gets 409.",
)
@click.option(
    "--header-timeout",
    type=float,
    default=DEFAULTS.header_timeout,
    show_default=True,
    help="Seconds a client may take to send a request's headers; then 408 and closed.",
)
@click.option(
    "--body-timeout",
    type=float,
    default=DEFAULTS.body_timeout,
    show_default=True,
    help="Seconds a client may take to send a request's body; then 408 and closed.",
)
@click.option(
    "--ws-queue",
    type=int,
    default=DEFAULTS.ws_queue,
    show_default=True,
    help="Messages a WebSocket subscriber may fall behind before it is closed (4008).",
)
@click.option(
    "--ws-queue-bytes",
    type=int,
    default=DEFAULTS.ws_queue_bytes,
    show_default=True,
    help="Bytes of messages a WebSocket subscriber may fall behind before it is closed (4008).",
)
@click.option(
    "--ws-send-timeout",
    type=float,
    default=DEFAULTS.ws_send_timeout,
    show_default=True,
    help="Seconds a WebSocket send may wait for the client to read before it is closed (4008).",
)
@click.option(
    "--max-subscribers",
    type=int,
    default=DEFAULTS.max_subscribers,
    show_default=True,
    help="WebSockets open at once (order sockets and the firehose); more are closed (1013).",
)
@click.option(
    "--kitchen-delay",
    type=float,
    default=DEFAULTS.kitchen_delay,
    show_default=True,
    help="Seconds the in-process kitchen takes per pizza.",
)
@click.option("--delivery-delay", type=float, default=DEFAULTS.delivery_delay, show_default=True)
@click.option(
    "--kitchen-mode",
    type=click.Choice(SERVICE_MODES),
    default=DEFAULTS.kitchen_mode,
    show_default=True,
    help="ok; reject (dead-letter every command); ignore (never answer).",
)
@click.option(
    "--delivery-mode",
    type=click.Choice(SERVICE_MODES),
    default=DEFAULTS.delivery_mode,
    show_default=True,
)
@click.option(
    "--api-token",
    default=None,
    help="Require 'Authorization: Bearer <token>' (prefer ORCHESTRATOR_API_TOKEN).",
)
@click.option(
    "--webhook-secret",
    default=None,
    help="Require Standard Webhooks signed POST /events: one or more whsec_<base64> "
    "secrets, space- or comma-separated (prefer ORCHESTRATOR_WEBHOOK_SECRET).",
)
@click.option(
    "--webhook-window",
    type=float,
    default=DEFAULTS.webhook_window,
    show_default=True,
    help="Seconds a webhook signature's timestamp may be off.",
)
@click.option(
    "--allowed-hosts",
    callback=lambda _ctx, _param, value: tuple(n.strip() for n in value.split(",") if n.strip()),
    default="",
    metavar="NAME,...",
    help="Host names requests may use besides localhost, loopback and --host (any IP address"
    " too when --host is 0.0.0.0 or ::); '*' allows any.",
)
@click.option(
    "--advertise-url",
    default=None,
    metavar="URL",
    help="Cluster (PostgreSQL): the base URL other nodes reach this one at "
    "[default: http://<host>:<port>].",
)
@click.option(
    "--lease-ttl",
    type=float,
    default=DEFAULTS.lease_ttl,
    show_default=True,
    help="Cluster (PostgreSQL): seconds a shard lease lasts unrenewed; a dead node's "
    "shards move about this long after it died.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Cluster (PostgreSQL and RabbitMQ): run this many nodes as processes, on --port, "
    "--port + 1, ..., to use this machine's cores.",
)
@click.option("--log-level", default=DEFAULTS.log_level, show_default=True)
@click.option(
    "--log-format",
    type=click.Choice(LOG_FORMATS),
    default=DEFAULTS.log_format,
    show_default=True,
    help="json: one object per line, with order_id, event_id, chart and trace_id.",
)
@click.option("--access-log/--no-access-log", default=False, show_default=True)
@click.option(
    "--otlp-endpoint",
    envvar="OTEL_EXPORTER_OTLP_ENDPOINT",
    # An empty variable is unset, as OpenTelemetry's specification says.
    callback=lambda _ctx, _param, value: value or None,
    default=None,
    help="Export spans over OTLP/HTTP to this base URL (needs the otel extra) [default: off].",
)
def serve(access_log: bool, workers: int, **options: object) -> None:
    """Run the orchestrator (embedded mode by default: nothing else to start)."""
    if isinstance(options.get("synchronous"), str):
        options["synchronous"] = str(options["synchronous"]).upper()
    try:
        settings = Settings(**options)  # type: ignore[arg-type]
        if workers > 1:
            _serve_workers(settings, workers)
            return
        runtime = Runtime(settings)
    except OrchestratorError as exc:
        raise click.UsageError(exc.detail) from exc
    logs.configure(settings.log_level, settings.log_format, access_log=access_log)
    # Held until the process exits; taken before anything reads or writes the files.
    locks = hold(runtime.exclusive_files())
    _prepare_store(settings)
    if settings.broker != "memory":
        # Here, not in the lifespan, so that an unreachable broker is one line, not a
        # traceback from inside uvicorn's start-up.
        try:
            asyncio.run(wait_until_reachable(settings.broker, settings.broker_connect_timeout))
        except BrokerUnreachable as exc:
            raise click.ClickException(str(exc)) from exc
    config = uvicorn.Config(
        runtime.app,
        # A slow client's request is cut off (408) instead of holding its connection.
        http=with_deadlines(settings.header_timeout, settings.body_timeout),
        host=settings.host,
        port=settings.port,
        # uvicorn's loggers propagate to the root handler, so every line has one format.
        log_config=None,
        log_level=settings.log_level,
        access_log=access_log,
        lifespan="on",
        # Draining turns and the relay happens in the lifespan shutdown; give it time.
        timeout_graceful_shutdown=10,
        # Keep idle connections longer than uvicorn's 5 s, like nginx's 75 s: a client (or
        # proxy) reusing a pooled connection the server is just closing gets a reset, and
        # few HTTP clients retry a POST on their own.
        timeout_keep_alive=75,
        # A firehose message is sent as it is to every subscriber: compressed, each socket
        # would compress it again (permessage-deflate keeps a context per connection).
        ws_per_message_deflate=False,
        # Clients send nothing but a close; a larger message is refused (1009).
        ws_max_size=settings.max_body_bytes,
        # Nothing here reads the client's address, so X-Forwarded-* headers are not
        # rewritten into it: uvicorn's middleware for that ran on every request.
        proxy_headers=False,
    )
    _Server(config).run()
    for lock in locks:
        lock.release()


def _serve_workers(settings: Settings, workers: int) -> None:
    """``--workers N``: N nodes of one cluster, each ``serve`` on its own port."""
    if settings.store is None or settings.broker == "memory":
        raise click.UsageError(
            "--workers needs --store postgresql://... and --broker amqp://...: the workers"
            " are nodes of one cluster, sharing the orders and the queues"
        )
    logs.configure(settings.log_level, settings.log_format)
    _prepare_store(settings)  # once, before the workers race to it
    commands = worker_commands(sys.argv[1:], workers, settings.port, settings.advertise_url)
    raise SystemExit(supervise(commands))


@main.command(name="migrate")
@click.option(
    "--from",
    "source",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="The SQLite file of orders to copy (a server's --db; stop the server first).",
)
@click.option(
    "--to",
    "target",
    required=True,
    help="The postgresql:// URL of an empty database to copy into.",
)
def migrate_command(source: Path, target: str) -> None:
    """Copy an embedded SQLite database of orders into an empty PostgreSQL database."""
    if not target.startswith(POSTGRES_SCHEMES):
        raise click.UsageError("--to must be a postgresql:// URL")
    # The lock a server on this file takes: none may write it while it is copied.
    locks = hold([source])
    try:
        counts = asyncio.run(migrate(source, target))
    except (TargetNotEmpty, SchemaTooNew) as exc:
        click.echo(f"Error: {exc.detail}", err=True)
        raise SystemExit(2) from exc
    except MigrationFailed as exc:
        raise click.ClickException(exc.detail) from exc
    finally:
        for lock in locks:
            lock.release()
    click.echo(
        f"Copied {counts.describe()} from {source} to {describe_url(target)}"
        f" (schema version {counts.schema}); verified: the same counts, and every order's"
        " version and journal."
    )


class FileInUse(click.ClickException):
    """Another process owns one of our files: exit 2, as for a usage error, in one line."""

    exit_code = 2


def hold(paths: list[Path]) -> list[ExclusiveLock]:
    """Each file's exclusive lock, or a one-line error naming the process that holds it."""
    locks = []
    for path in paths:
        lock = ExclusiveLock(path)
        try:
            lock.acquire()
        except InUse as exc:
            raise FileInUse(str(exc)) from exc
        except OSError as exc:
            raise click.ClickException(f"cannot lock {path}: {exc.strerror}") from exc
        locks.append(lock)
    return locks


def _prepare_store(settings: Settings) -> None:
    """Make or migrate the store's schema before the server starts; a schema newer than
    this release exits 2, an unreachable store 1, each with one line."""
    try:
        asyncio.run(prepare_store(settings))
    except SchemaTooNew as exc:
        click.echo(f"Error: {exc.detail}", err=True)
        raise SystemExit(2) from exc
    except (OrchestratorError, OSError) as exc:
        raise click.ClickException(f"cannot open the store: {exc}") from exc


# Collect young objects every 10,000 allocations instead of 700, and the whole heap 10
# times less often than by default (see ``settle_heap``).
GC_THRESHOLDS = (10_000, 20, 100)


class _Server(uvicorn.Server):
    """uvicorn re-raises SIGTERM once its graceful shutdown is over, so the process dies
    by the signal (exit 143). Here SIGTERM means "drain and stop", and a drained stop is a
    success: exit 0. SIGINT keeps uvicorn's behaviour."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        settle_heap()

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        if sig == signal.SIGTERM and sig in self._captured_signals:
            self._captured_signals.remove(sig)


def settle_heap() -> None:
    """Tune the cyclic garbage collector once the server has started.

    With CPython's defaults a full collection walked every module, class and function
    loaded at start and paused the event loop for up to 90 ms: the commands benchmark's
    p99 was 60 ms, against a p50 of 14 ms. Objects alive after start-up live as long as the
    process, so ``gc.freeze`` moves them out of the collector's sight, and fewer, larger
    young collections cost less than many small ones. Almost nothing the hot path makes is
    cyclic (reference counting frees it), so the garbage left for the collector is small.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


for _command in cli_client.COMMANDS:
    main.add_command(_command)


def run() -> None:
    """The console script: every flag also reads ORCHESTRATOR_<FLAG>."""
    main(auto_envvar_prefix="ORCHESTRATOR")
