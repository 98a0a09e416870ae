"""Log lines that say which order, event, chart and trace they are about.

The fields live in a context variable: an actor binds them at the start of each turn, so
every line logged during the turn (by the actor, the turn, the chart's actions, and the
relay tasks the turn's commit starts, which copy the context) carries them without being
passed along. Code that works for an order outside an actor (the relay after a restart,
the inbox, the services) opens a ``scope`` or passes them as ``extra``. A filter on the
handler copies them onto each record; ``--log-format json`` writes one JSON object per
line (python-json-logger), ``text`` the usual line with the fields appended.

A cluster node's lines also say which node wrote them, and a line about an order its
shard (``in_cluster``), so that the lines of one order can be followed across nodes.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

from orchestrator.shards import shard_of

FIELDS = ("order_id", "event_id", "chart", "trace_id", "node", "shard")
FORMATS = ("text", "json")

# Never mutated, only replaced, so tasks that copied the context keep what they saw.
_fields: ContextVar[dict[str, str] | None] = ContextVar("orchestrator_log_fields", default=None)
# In a cluster: this node's id and the database's shard count (see ``in_cluster``).
_cluster: tuple[str, int] | None = None


def in_cluster(node: str, shards: int) -> None:
    """From now on every line carries ``node``, and one about an order its ``shard``."""
    global _cluster
    _cluster = (node, shards)


def _merged(fields: dict[str, str | None]) -> dict[str, str]:
    merged = {**(_fields.get() or {}), **fields}
    return {name: value for name, value in merged.items() if value is not None}


def bind(**fields: str | None) -> None:
    """Set fields for the rest of the current task (an actor's turn); None removes one."""
    _fields.set(_merged(fields))


@contextmanager
def scope(**fields: str | None) -> Iterator[None]:
    """Set fields for the lines logged inside the block only."""
    token = _fields.set(_merged(fields))
    try:
        yield
    finally:
        _fields.reset(token)


class OrderFields(logging.Filter):
    """Copies the bound fields onto each record, unless the call passed them as extra."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in (_fields.get() or {}).items():
            if not hasattr(record, name):
                setattr(record, name, value)
        if _cluster is not None:
            node, shards = _cluster
            record.node = node
            order_id = getattr(record, "order_id", None)
            if isinstance(order_id, str) and not hasattr(record, "shard"):
                record.shard = shard_of(order_id, shards)
        return True


class TextFormatter(logging.Formatter):
    """The plain line, then ``name=value`` for each order field the record has."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        pairs = [f"{n}={getattr(record, n)}" for n in FIELDS if getattr(record, n, None)]
        if not pairs:
            return line
        head, newline, trace = line.partition("\n")  # fields before any traceback
        return f"{head} {' '.join(pairs)}{newline}{trace}"


class WebSocketAccessLines(logging.Filter):
    """Drops the lines uvicorn logs for each WebSocket handshake when there is no access log.

    uvicorn writes them on its error logger at INFO, whatever ``--access-log`` says: its
    own line per handshake (``"WebSocket /orders/.../ws" [accepted]``, like an access line)
    and the websockets library's ``connection open``. A busy dashboard or flow then logged
    two lines per order. Matched on uvicorn's message templates: should they change, the
    lines only come back.
    """

    HANDSHAKE = '%s - "WebSocket %s"'
    CONNECTION = ("connection open", "connection closed")

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.msg
        if not isinstance(message, str):
            return True
        return not (message.startswith(self.HANDSHAKE) or message in self.CONNECTION)


class RedactedTokens(logging.Filter):
    """Hides ``access_token=`` values in uvicorn's lines: a browser's WebSocket passes the
    API token in its query string, which uvicorn's handshake and access lines quote."""

    TOKEN = re.compile(r"(access_token=)[^&\s\"]+")

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and any(
            isinstance(arg, str) and "access_token=" in arg for arg in record.args
        ):
            record.args = tuple(
                self.TOKEN.sub(r"\1REDACTED", arg) if isinstance(arg, str) else arg
                for arg in record.args
            )
        return True


UVICORN_LOGGER = "uvicorn.error"
UVICORN_ACCESS_LOGGER = "uvicorn.access"


def configure(level: str, log_format: str, *, access_log: bool = True) -> None:
    """One stderr handler on the root logger, which uvicorn's loggers propagate to.

    Without ``access_log``, uvicorn's WebSocket handshake lines go too, as its HTTP
    requests' lines do (``WebSocketAccessLines``); with it, tokens in them are hidden
    (``RedactedTokens``)."""
    handler = logging.StreamHandler()
    handler.addFilter(OrderFields())
    if log_format == "json":
        handler.setFormatter(
            JsonFormatter(
                "{levelname}{name}{message}",
                style="{",
                rename_fields={"levelname": "level", "name": "logger"},
                # uvicorn's copy of its message with terminal colour codes
                reserved_attrs=[*RESERVED_ATTRS, "color_message"],
                timestamp=True,
            )
        )
    else:
        handler.setFormatter(TextFormatter())
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    uvicorn = logging.getLogger(UVICORN_LOGGER)
    access = logging.getLogger(UVICORN_ACCESS_LOGGER)
    for logger in (uvicorn, access):
        for old in [
            f for f in logger.filters if isinstance(f, WebSocketAccessLines | RedactedTokens)
        ]:
            logger.removeFilter(old)
        logger.addFilter(RedactedTokens())
    if not access_log:
        uvicorn.addFilter(WebSocketAccessLines())
