"""Frozen settings and their validation: the only home of defaults.

``cli`` fills a ``Settings`` from flags and ``ORCHESTRATOR_*`` variables; the runtime and
everything below it receive values from it through constructors and never read the
environment themselves.
"""

from __future__ import annotations

import ipaddress
import json
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from yarl import URL

from orchestrator.errors import InvalidInput
from orchestrator.signatures import parse_keys

SYNCHRONOUS_MODES = ("FULL", "NORMAL", "EXTRA")
# The default of --broker-connect-timeout, for the orchestrator and the stub services alike.
BROKER_CONNECT_TIMEOUT = 30.0
SERVICE_MODES = ("ok", "reject", "ignore")
LOG_FORMATS = ("text", "json")
POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def default_charts_dir() -> Path:
    """The ``statecharts/`` directory that ships beside the package."""
    return Path(__file__).resolve().parent.parent / "statecharts"


@dataclass(frozen=True, slots=True)
class Settings:
    db: Path = Path("orders.db")
    # Where orders are kept: None for the SQLite file ``db``, or a postgresql:// URL (then
    # ``db`` still names the files of the in-process broker and services).
    store: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    broker: str = "memory"
    # Seconds to keep trying a first connection to RabbitMQ that is not reachable yet.
    broker_connect_timeout: float = BROKER_CONNECT_TIMEOUT
    charts_dir: Path | None = None
    # "chart.name=value" settings of charts' options (timeouts, retries); values are JSON,
    # or text when they are not.
    chart_options: tuple[str, ...] = ()
    # SQLite durability: FULL syncs the WAL on every commit, so an acknowledged event
    # survives power loss; NORMAL survives a process crash only. FULL is the safe default.
    synchronous: str = "FULL"
    # Passivation: at most this many actors stay in memory, and none longer than this idle.
    max_actors: int = 10_000
    idle_seconds: float = 300.0
    # Group commit: turns waiting together share one transaction, up to this many.
    max_batch: int = 256
    max_body_bytes: int = 64 * 1024
    # How large one order may grow: its context as JSON (every view carries it whole), and
    # its events (each a journal row kept for the order's life). A turn past either is
    # refused with a 409; a real pizza order takes about ten events and a few kilobytes.
    max_order_bytes: int = 1024 * 1024
    max_order_events: int = 10_000
    # A WebSocket subscriber that falls this many messages, or this many bytes of them,
    # behind is closed (code 4008). 8 MiB holds the 256 messages of a typical few-KB order
    # many times over, and 8 views of an order at --max-order-bytes; without it a lagging
    # subscriber to a 1 MiB order could hold 256 MiB. The firehose's shared log keeps the
    # same bounds.
    ws_queue: int = 256
    ws_queue_bytes: int = 8 * 1024 * 1024
    # A WebSocket send that waits this long for the client to read is given up, and the
    # subscriber closed (code 4008): a client that stops reading holds no more than the
    # socket's buffers, never the rest of a replay.
    ws_send_timeout: float = 10.0
    # Seconds a client may take to send a request's headers (from the connection's start or
    # the request's first byte), then its body; beyond them, 408 and the connection closed.
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    # WebSockets open at once (order sockets and the firehose); beyond it, closed with 1013.
    # Each firehose subscriber sends every event itself, about 15 us of the event loop per
    # event: 1,000 of them take 15 ms of it per event (see hub).
    max_subscribers: int = 1000
    # The in-process kitchen and delivery (embedded mode only).
    kitchen_delay: float = 0.0
    delivery_delay: float = 0.0
    kitchen_mode: str = "ok"
    delivery_mode: str = "ok"
    log_level: str = "info"
    # json: one object per line, with order_id, event_id, chart and trace_id when known.
    log_format: str = "text"
    # Auth: with a token, commands and reads need "Authorization: Bearer <token>"; with a
    # secret, POST /events needs a Standard Webhooks signature no older than the window.
    # Several whsec_ secrets (space- or comma-separated) are accepted at once, to rotate one.
    api_token: str | None = None
    webhook_secret: str | None = None
    webhook_window: float = 300.0
    # Names a request's Host may give besides localhost, the loopback addresses and --host
    # (and any IP address when --host listens on all); "*" allows any (see edge.sameorigin).
    allowed_hosts: tuple[str, ...] = ()
    # The cluster (PostgreSQL store): the base URL other nodes reach this one at (by
    # default http://<host>:<port>, the machine's name when listening on all addresses),
    # and the seconds a shard lease lasts unrenewed: a dead node's shards are taken over
    # about that long after it died.
    advertise_url: str | None = None
    lease_ttl: float = 10.0
    # Where to send spans over OTLP/HTTP (the base URL; /v1/traces is appended); None: no
    # spans are recorded at all. Needs the ``otel`` extra.
    otlp_endpoint: str | None = None

    def __post_init__(self) -> None:
        if self.synchronous not in SYNCHRONOUS_MODES:
            raise InvalidInput("synchronous", f"synchronous must be one of {SYNCHRONOUS_MODES}")
        for name in ("kitchen_mode", "delivery_mode"):
            if getattr(self, name) not in SERVICE_MODES:
                raise InvalidInput(name, f"{name} must be one of {SERVICE_MODES}")
        if self.log_format not in LOG_FORMATS:
            raise InvalidInput("log_format", f"log_format must be one of {LOG_FORMATS}")
        for name in (
            "max_actors",
            "max_batch",
            "max_body_bytes",
            "max_order_bytes",
            "max_order_events",
            "ws_queue",
            "ws_queue_bytes",
            "max_subscribers",
        ):
            if getattr(self, name) < 1:
                raise InvalidInput(name, f"{name} must be at least 1")
        for name in ("api_token", "webhook_secret"):
            if getattr(self, name) == "":
                raise InvalidInput(name, f"{name} must not be empty when given")
        for name in (
            "idle_seconds",
            "kitchen_delay",
            "delivery_delay",
            "webhook_window",
            "broker_connect_timeout",
        ):
            if not getattr(self, name) >= 0:  # NaN too
                raise InvalidInput(name, f"{name} must be a number, not negative")
        for name in ("ws_send_timeout", "header_timeout", "body_timeout"):
            if not getattr(self, name) > 0:  # NaN too
                raise InvalidInput(name, f"{name} must be a number of seconds above 0")
        if not self.lease_ttl >= 1:  # NaN too
            raise InvalidInput("lease_ttl", "lease_ttl must be a number of seconds, at least 1")
        if self.advertise_url is not None:
            address = URL(self.advertise_url)
            if (
                address.scheme not in ("http", "https")
                or not address.host
                or address.path
                not in (
                    "",
                    "/",
                )
            ):
                raise InvalidInput(
                    "advertise_url",
                    "advertise_url must be a base URL such as http://10.0.0.7:8000",
                )
        if not (0 <= self.port < 65536):
            raise InvalidInput("port", "port must be between 0 and 65535")
        if self.broker != "memory":
            problem = amqp_url_problem(self.broker)
            if problem is not None:
                raise InvalidInput("broker", f"broker must be 'memory' or {problem}")
        if self.otlp_endpoint is not None:
            problem = otlp_endpoint_problem(self.otlp_endpoint)
            if problem is not None:
                raise InvalidInput("otlp_endpoint", f"otlp_endpoint must be {problem}")
        if self.store is not None and not self.store.startswith(POSTGRES_SCHEMES):
            raise InvalidInput("store", "store must be a postgresql:// URL")
        for name in self.allowed_hosts:
            if name != "*" and not valid_hostname(name):
                raise InvalidInput(
                    "allowed_hosts", f"allowed_hosts: {name!r} is not a host name or address"
                )
        self.options_by_chart()  # refuse a malformed one now
        self.webhook_keys()

    def webhook_keys(self) -> tuple[bytes, ...] | None:
        """The keys of ``webhook_secret``, or None when webhooks are not signed."""
        return None if self.webhook_secret is None else parse_keys(self.webhook_secret)

    def options_by_chart(self) -> dict[str, dict[str, Any]]:
        """``chart_options`` parsed: {"pizza": {"kitchenTimeout": 30}}."""
        parsed: dict[str, dict[str, Any]] = {}
        for item in self.chart_options:
            name, equals, text = item.partition("=")
            chart, dot, option = name.strip().partition(".")
            if not (equals and dot and chart and option):
                raise InvalidInput(
                    "chart_option", f"{item!r} is not CHART.NAME=VALUE, e.g. pizza.retries=3"
                )
            try:
                value = json.loads(text)
            except ValueError:
                value = text
            parsed.setdefault(chart, {})[option] = value
        return parsed

    @property
    def node_address(self) -> str:
        """The base URL other cluster nodes reach this one at."""
        if self.advertise_url is not None:
            return self.advertise_url.rstrip("/")
        host = self.host if self.host not in ("0.0.0.0", "::", "") else socket.gethostname()
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    @property
    def charts(self) -> Path:
        return self.charts_dir if self.charts_dir is not None else default_charts_dir()


def otlp_endpoint_problem(url: str) -> str | None:
    """What is wrong with an OTLP/HTTP endpoint, worded to follow "must be", or None."""
    if not url.startswith(("http://", "https://")):
        return "an http:// or https:// URL (OTLP over HTTP)"
    try:
        host = URL(url).host
    except ValueError as exc:
        return f"a valid http:// URL ({exc})"
    if not host:
        return "an http:// URL with a host, e.g. http://127.0.0.1:4318"
    return None


def amqp_url_problem(url: str) -> str | None:
    """What is wrong with a RabbitMQ URL, worded to follow "must be", or None."""
    if not url.startswith(("amqp://", "amqps://")):
        return "an amqp:// or amqps:// URL"
    try:
        host = URL(url).host
    except ValueError as exc:  # a port out of range or not a number
        return f"a valid amqp:// URL ({exc})"
    if not host:
        return "an amqp:// URL with a host, e.g. amqp://guest:guest@127.0.0.1:5672/"
    return None


_HOST_NAME = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)(\.(?!-)[a-z0-9-]{1,63}(?<!-))*\.?$", re.I)


def valid_hostname(name: str) -> bool:
    """Whether ``name`` is a DNS name or an IP address (IPv6 with or without brackets)."""
    try:
        ipaddress.ip_address(name.removeprefix("[").removesuffix("]"))
    except ValueError:
        return len(name) <= 253 and _HOST_NAME.match(name) is not None
    return True
