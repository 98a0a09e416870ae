"""A Python client for the orchestrator's HTTP API and WebSockets: ``AsyncClient`` for
asyncio, ``Client`` for blocking code, both with the same methods.

This package is what users import, so it stands alone: it imports httpx and websockets,
never the server's modules (an import-linter contract keeps it so). Answers are typed
values (``results``); problem documents are raised as typed errors (``problems``) that
carry the problem's fields (``allowed``, ``version``, ``field``). Commands carry an
Idempotency-Key, made here unless given, and are retried with it (``calls``), so a
command whose answer was lost applies once. See docs/client.md.
"""

from orchestrator.client.aio import AsyncClient
from orchestrator.client.calls import DEFAULT_URL, Retries, new_key
from orchestrator.client.problems import (
    BadRequest,
    ClientError,
    Conflict,
    ConnectionFailed,
    Forbidden,
    Invalid,
    NotFound,
    PreconditionFailed,
    ProblemError,
    ServerError,
    TooLarge,
    Unauthorized,
    UnsupportedMediaType,
)
from orchestrator.client.results import (
    ChartList,
    ChartState,
    ChartSummary,
    ClusterMember,
    ClusterStatus,
    HistoryEntry,
    Order,
    OrderPage,
    ShardLease,
    Transition,
    Update,
)
from orchestrator.client.sync import Client

__all__ = [
    "DEFAULT_URL",
    "AsyncClient",
    "BadRequest",
    "ChartList",
    "ChartState",
    "ChartSummary",
    "Client",
    "ClientError",
    "ClusterMember",
    "ClusterStatus",
    "Conflict",
    "ConnectionFailed",
    "Forbidden",
    "HistoryEntry",
    "Invalid",
    "NotFound",
    "Order",
    "OrderPage",
    "PreconditionFailed",
    "ProblemError",
    "Retries",
    "ServerError",
    "ShardLease",
    "TooLarge",
    "Transition",
    "Unauthorized",
    "UnsupportedMediaType",
    "Update",
    "new_key",
]
