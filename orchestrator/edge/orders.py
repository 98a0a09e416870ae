"""Order endpoints: create, read, send an event, history, list.

This module checks the shape of what arrives (naming the offending field) and turns it
into an ``Event`` for the registry; it never applies anything itself. Replies to events
are the bytes the actor recorded, so a repeated Idempotency-Key gets the same body.
"""

from __future__ import annotations

import hashlib
import json
import math

from starlette.requests import Request
from starlette.responses import Response

from orchestrator import tracing
from orchestrator.charts import JSON_TYPES
from orchestrator.edge import observe
from orchestrator.edge.bodies import read_body
from orchestrator.errors import InvalidInput, OrderNotFound
from orchestrator.ids import new_event_id
from orchestrator.model import (
    MAX_DEPTH,
    PLATFORM_ID_REFUSAL,
    START_EVENT,
    UNKEYED_ID_PREFIX,
    Event,
    JsonObject,
    Reply,
    Snapshot,
    is_platform_event,
    is_platform_id,
    nested_deeper,
    to_json,
)
from orchestrator.numbers import MAX_INTEGER, whole_number
from orchestrator.registry import Registry
from orchestrator.store.base import QueryStore

JSON = "application/json"
EVENT_FIELDS = {"type", "data"}
MAX_KEY_LENGTH = 200
MAX_PAGE = 500
# A history page ends once its entries pass this many bytes of JSON (it has at least one),
# or at ?limit (1,000) entries: a typical order's whole history fits in one page, and one
# whose events carry large data (up to --max-body-bytes each) is paged instead of answered
# with up to 1,000 x 64 KiB. The journal is read HISTORY_READ entries at a time meanwhile.
HISTORY_PAGE_BYTES = 1024 * 1024
HISTORY_LIMIT = 1000
HISTORY_READ = 50


def _registry(request: Request) -> Registry:
    registry: Registry = request.app.state.registry
    return registry


def view_json(registry: Registry, snapshot: Snapshot) -> bytes:
    """The order's view, without its chart's private fields."""
    return snapshot.view_json(private=registry.private_fields(snapshot.chart))


def _store(request: Request) -> QueryStore:
    store: QueryStore = request.app.state.store
    return store


async def _json_body(request: Request) -> tuple[JsonObject, bytes]:
    raw = await read_body(request)
    try:
        body = _DECODER.decode(raw.decode())
    except RecursionError as exc:
        raise InvalidInput("body", "the body is nested too deeply") from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput("body", f"the body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise InvalidInput("body", "the body must be a JSON object")
    # Nothing nests deeper than its count of brackets: most bodies need no walk.
    if raw.count(b"{") + raw.count(b"[") > MAX_DEPTH and nested_deeper(body):
        raise InvalidInput("body", f"the body is nested deeper than {MAX_DEPTH} levels")
    return body, raw


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    """A JSON number as a float; one too large for a float (1e999) would become infinity,
    which no JSON answer can carry."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is too large a number")
    return value


# Built once: ``json.loads`` with options builds a decoder per call. Request bodies are
# UTF-8 (RFC 8259); NaN, Infinity and numbers too large for a float are refused.
_DECODER = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite)


def _event_id(request: Request, raw: bytes) -> tuple[str, bool, str]:
    """The event id (Idempotency-Key or a new one), whether it came from the client, and
    a fingerprint of the request that carried it."""
    key = request.headers.get("idempotency-key")
    if key is None:
        # Nothing is compared against an unkeyed event, so it needs no fingerprint; its id
        # is in the orchestrator's namespace, so no key can be equal to it.
        return UNKEYED_ID_PREFIX + new_event_id(), False, ""
    if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise InvalidInput(
            "Idempotency-Key", f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} printable characters"
        )
    if is_platform_id(key):
        raise InvalidInput("Idempotency-Key", PLATFORM_ID_REFUSAL)
    path: str = request.scope["path"]
    fingerprint = hashlib.sha256(f"{request.method} {path}\n".encode() + raw).hexdigest()[:32]
    return key, True, fingerprint


def _traceparent(request: Request) -> str:
    """Continue the caller's trace (W3C ``traceparent`` header), or start one here."""
    return observe.traceparent(
        request.scope, tracing.header(request.headers.getlist("traceparent"))
    )


def _reply(reply: Reply, **headers: str) -> Response:
    return Response(reply.body, reply.status, headers=headers or None, media_type=JSON)


async def collection(request: Request) -> Response:
    """GET and POST /orders share one route, so that a 405 there allows both methods."""
    if request.method == "POST":
        return await create_order(request)
    return await list_orders(request)


async def create_order(request: Request) -> Response:
    body, raw = await _json_body(request)
    registry = _registry(request)
    chart_name = body.get("chart", registry.default_chart)
    if not isinstance(chart_name, str):
        raise InvalidInput("chart", "chart must be a string naming a chart")
    chart = registry.charts.get(chart_name)
    if chart is None:
        raise InvalidInput(
            "chart", f"unknown chart {chart_name!r}; known: {sorted(registry.charts)}"
        )
    allowed = {"chart", *chart.context_class.create_fields}
    for name in body:
        if name not in allowed:
            raise InvalidInput(name, f"unknown field {name!r}; allowed: {sorted(allowed)}")
    data: JsonObject = {}
    for name, kind in chart.context_class.create_fields.items():
        if name not in body:
            raise InvalidInput(name, f"{name} is required")
        if not isinstance(body[name], kind):
            raise InvalidInput(name, f"{name} must be a JSON {_json_type(kind)}")
        data[name] = body[name]
    # A chart without a create event is created by its start alone.
    event_type = chart.context_class.create_event or START_EVENT
    event_id, keyed, fingerprint = _event_id(request, raw)
    event = Event(event_type, data, event_id, "http", fingerprint, keyed, _traceparent(request))
    reply = await registry.create(event, chart=chart_name)
    return _reply(reply, location=f"/orders/{reply.order_id}")


def _json_type(kind: type) -> str:
    return JSON_TYPES[kind]  # every create field's kind is one, checked when loaded


async def get_order(request: Request) -> Response:
    order_id = request.path_params["order_id"]
    registry = _registry(request)
    snapshot = await registry.view(order_id)
    if snapshot is None:
        raise OrderNotFound(order_id)
    return Response(view_json(registry, snapshot), media_type=JSON)


async def send_event(request: Request) -> Response:
    order_id = request.path_params["order_id"]
    body, raw = await _json_body(request)
    for name in body:
        if name not in EVENT_FIELDS:
            raise InvalidInput(name, f"unknown field {name!r}; an event has 'type' and 'data'")
    event_type = body.get("type")
    if not isinstance(event_type, str) or not event_type:
        raise InvalidInput("type", "type is required and must be a non-empty string")
    if is_platform_event(event_type):
        raise InvalidInput("type", f"{event_type} is sent by the orchestrator, not by clients")
    data = body.get("data", {})
    if not isinstance(data, dict):
        raise InvalidInput("data", "data must be a JSON object")
    if_match = _if_match(request)
    event_id, keyed, fingerprint = _event_id(request, raw)
    event = Event(event_type, data, event_id, "http", fingerprint, keyed, _traceparent(request))
    reply = await _registry(request).send(order_id, event, if_match=if_match)
    return _reply(reply)


def _if_match(request: Request) -> int | None:
    value = request.headers.get("if-match")
    if value is None:
        return None
    version = whole_number(value.strip().removeprefix("W/").strip('"'))
    if version is None:
        raise InvalidInput("If-Match", "If-Match must be the order's version, e.g. If-Match: 3")
    return version


async def history(request: Request) -> Response:
    order_id = request.path_params["order_id"]
    after = _int_param(request, "after", 0)
    limit = _int_param(request, "limit", HISTORY_LIMIT, lower=1, upper=HISTORY_LIMIT)
    snapshot = await _registry(request).view(order_id)
    if snapshot is None:
        raise OrderNotFound(order_id)
    parts: list[bytes] = []
    size = 0
    last = after
    while len(parts) < limit and size < HISTORY_PAGE_BYTES:
        read = min(HISTORY_READ, limit - len(parts))
        entries = await _store(request).journal(order_id, after=last, limit=read)
        for entry in entries:
            if size >= HISTORY_PAGE_BYTES:
                break
            part = to_json(entry.as_json()).encode()
            parts.append(part)
            size += len(part)
            last = entry.version
        if len(entries) < read:
            break
    body = b'{"id":%s,"entries":[%s]' % (to_json(order_id).encode(), b",".join(parts))
    if parts and last < snapshot.version:
        body += b',"nextAfter":%d' % last
    return Response(body + b"}", media_type=JSON)


async def list_orders(request: Request) -> Response:
    for name in request.query_params:
        if name not in {"state", "chart", "cursor", "limit"}:
            raise InvalidInput(name, f"unknown query parameter {name!r}")
    limit = _int_param(request, "limit", 50, lower=1, upper=MAX_PAGE)
    page = await _store(request).list_orders(
        state=request.query_params.get("state") or None,
        chart=request.query_params.get("chart") or None,
        cursor=request.query_params.get("cursor") or None,
        limit=limit,
    )
    registry = _registry(request)
    orders = b",".join(view_json(registry, snapshot) for snapshot in page.orders)
    cursor = to_json(page.cursor).encode()
    return Response(b'{"orders":[%s],"nextCursor":%s}' % (orders, cursor), media_type=JSON)


def _int_param(
    request: Request, name: str, default: int, lower: int = 0, upper: int = MAX_INTEGER
) -> int:
    value = request.query_params.get(name)
    if value is None:
        return default
    number = whole_number(value)
    if number is None or not lower <= number <= upper:
        raise InvalidInput(name, f"{name} must be a whole number from {lower} to {upper}")
    return number
