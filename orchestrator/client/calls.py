"""What each client method sends and how its answer is read, shared by the async and the
sync client, which differ only in how they wait.

Every command (a create, an event) carries an ``Idempotency-Key``: the caller's, or one
made here. A retry of the command sends the same key, so the server applies it once
however many of the tries reached it, and answers the later ones with the first answer.
That is what makes retrying a POST after a lost answer safe, and so the client retries
every call (reads and commands) on a connection error and on 503, a bounded number of
times with doubling waits (or the server's ``Retry-After``, capped).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

import httpx

from orchestrator.client.problems import (
    ClientError,
    Invalid,
    NotFound,
    ProblemError,
    Unauthorized,
    problem_error,
)
from orchestrator.client.results import (
    ChartList,
    ChartSummary,
    ClusterStatus,
    HistoryEntry,
    JsonObject,
    Order,
    OrderPage,
)

T = TypeVar("T")

DEFAULT_URL = "http://127.0.0.1:8000"
JSON = "application/json"
# Statuses worth the same request again: the store or broker failed for a moment.
RETRY_STATUSES = frozenset({503})
# The most a server's Retry-After may make the client wait, in seconds.
MAX_RETRY_AFTER = 10.0
# A history page the server gives at most; the client follows ``nextAfter`` for more.
HISTORY_PAGE = 1000


@dataclass(frozen=True, slots=True)
class Retries:
    """``attempts`` tries in all; the n-th retry waits ``backoff * 2**(n-1)`` seconds, at
    most ``max_wait`` (a 503's Retry-After instead, at most MAX_RETRY_AFTER)."""

    attempts: int = 4
    backoff: float = 0.2
    max_wait: float = 5.0

    def wait(self, retry: int, retry_after: str | None = None) -> float:
        if retry_after is not None:
            try:
                return min(max(float(retry_after), 0.0), MAX_RETRY_AFTER)
            except ValueError:
                pass  # an HTTP date: fall back to the backoff
        return float(min(self.backoff * 2 ** (retry - 1), self.max_wait))


def new_key() -> str:
    """A fresh Idempotency-Key."""
    return uuid.uuid4().hex


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """One request and how to read its successful answer."""

    method: str
    path: str
    parse: Callable[[Any], T]
    params: dict[str, str] | None = None
    body: JsonObject | None = None
    headers: dict[str, str] | None = None

    def content(self) -> bytes | None:
        return None if self.body is None else json.dumps(self.body).encode()


def order_path(order_id: str, tail: str = "") -> str:
    return f"/orders/{quote(order_id, safe='')}{tail}"


def create(data: JsonObject, chart: str | None, key: str | None) -> Call[Order]:
    body = dict(data) if chart is None else {**data, "chart": chart}
    return Call("POST", "/orders", Order.from_json, body=body, headers=_command(key))


def send(
    order_id: str, type: str, data: JsonObject | None, key: str | None, if_match: int | None
) -> Call[Order]:
    headers = _command(key)
    if if_match is not None:
        headers["If-Match"] = str(if_match)
    body: JsonObject = {"type": type} if data is None else {"type": type, "data": data}
    return Call(
        "POST", order_path(order_id, "/events"), Order.from_json, body=body, headers=headers
    )


def get(order_id: str) -> Call[Order]:
    return Call("GET", order_path(order_id), Order.from_json)


def history_page(order_id: str, after: int) -> Call[tuple[list[HistoryEntry], int | None]]:
    params = {"after": str(after), "limit": str(HISTORY_PAGE)}
    return Call("GET", order_path(order_id, "/history"), _history, params=params)


def orders(
    state: str | None, chart: str | None, limit: int | None, cursor: str | None
) -> Call[OrderPage]:
    given = {"state": state, "chart": chart, "limit": limit, "cursor": cursor}
    params = {name: str(value) for name, value in given.items() if value is not None}
    return Call("GET", "/orders", OrderPage.from_json, params=params)


def charts() -> Call[ChartList]:
    return Call("GET", "/charts", ChartList.from_json)


def chart(name: str) -> Call[ChartSummary]:
    return Call("GET", f"/charts/{quote(name, safe='')}", ChartSummary.from_json)


def cluster() -> Call[ClusterStatus]:
    return Call("GET", "/cluster", ClusterStatus.from_json)


def _command(key: str | None) -> dict[str, str]:
    return {"Idempotency-Key": key if key is not None else new_key(), "content-type": JSON}


def _history(body: JsonObject) -> tuple[list[HistoryEntry], int | None]:
    entries = [HistoryEntry.from_json(e) for e in body["entries"]]
    next_after = body.get("nextAfter")
    return entries, None if next_after is None else int(next_after)


def base_headers(token: str | None) -> dict[str, str]:
    headers = {"accept": f"{JSON}, application/problem+json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    return headers


def should_retry(response: httpx.Response) -> bool:
    return response.status_code in RETRY_STATUSES


def answer(response: httpx.Response, call: Call[T]) -> T:
    """The parsed answer, or the typed error of a problem."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code >= 400:
        raise problem_error(response.status_code, body, response.text)
    if body is None:
        raise ClientError(f"the server answered {response.status_code} without JSON")
    return call.parse(body)


# -- WebSocket ----------------------------------------------------------------------------

# Close codes the server ends an order's WebSocket with for good; any other close (a
# restart, 4008 "fell behind", 1013 "too many subscribers", a lost connection) is resumed.
FINAL_CLOSES: dict[int, type[ProblemError]] = {4401: Unauthorized, 4404: NotFound, 4422: Invalid}


def ws_url(base_url: str, order_id: str, after: int | None) -> str:
    parts = urlsplit(base_url)
    scheme = "wss" if parts.scheme == "https" else "ws"
    path = parts.path.rstrip("/") + order_path(order_id, "/ws")
    query = "" if after is None else urlencode({"after": after})
    return urlunsplit((scheme, parts.netloc, path, query, ""))


def final_close(code: int | None, reason: str) -> ProblemError | None:
    """The error for a close that resuming cannot help, or None."""
    cls = FINAL_CLOSES.get(code or 0)
    if cls is None:
        return None
    status = {Unauthorized: 401, NotFound: 404, Invalid: 422}[cls]
    return cls({"status": status, "title": f"WebSocket closed ({code})", "detail": reason})


def handshake_error(status: int, body: bytes) -> ProblemError:
    """The typed error for a refused WebSocket handshake (a foreign Host, a full server)."""
    text = body.decode(errors="replace")
    try:
        document = json.loads(text)
    except ValueError:
        document = None
    return problem_error(status, document, text)
