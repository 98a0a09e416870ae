"""Observe each HTTP request: its route, status and latency, and with spans on, its span.

A pure ASGI middleware, the outermost of ours, so that it times and counts every answer,
refusals by the other middleware included. Requests land in
``orchestrator_http_request_seconds{method, route, status}``: the route is the matched
route's template (``/orders/{order_id}``), never the raw path, whose order ids would make
one series per order; a path no route matches is ``unmatched``, a method outside HTTP's
usual ones ``OTHER``. So every label has a bounded set of values.

With a span recorder (``orchestrator.spans``) each request also gets a server span. An
endpoint that makes an event takes its traceparent from ``traceparent`` here, which then
is the request span's own: the order's turn is a child of this span. Other requests'
spans continue their ``traceparent`` header. Without a recorder, nothing is parsed or made
here, and ``traceparent`` is ``tracing.continued``.

Per request this costs two clock reads, one closure for ``send`` and two dict lookups:
the histogram's child of each (method, route, status) is kept, since ``labels()`` takes a
lock and hashes its labels on every call.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from starlette.routing import BaseRoute, Match, Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from orchestrator import tracing
from orchestrator.metrics import Metrics
from orchestrator.spans import Span, Spans

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "unmatched"
# The scope key of the request span's [traceparent, parent], once ``traceparent`` chose
# them; present (empty until then) only while spans are recorded.
SPAN = "orchestrator.span"


def traceparent(scope: Scope, *candidates: str | None) -> str:
    """The traceparent of the request's event: it continues the first valid candidate
    (the request's header first), and is the request span's own when spans are on."""
    own = tracing.continued(*candidates)
    span: list[str | None] | None = scope.get(SPAN)
    if span is not None:
        span[:] = own, next((c for c in candidates if tracing.parse(c) is not None), None)
    return own


class ObserveRequests:
    def __init__(self, app: ASGIApp, *, metrics: Metrics, spans: Spans | None = None) -> None:
        self.app = app
        self._histogram = metrics.http_seconds
        self._spans = spans
        self._observers: dict[tuple[str, str, int], Callable[[float], None]] = {}
        self._templates: dict[int, str] = {}  # by id(route): routes are unhashable

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        spans = self._spans
        if spans is not None:
            scope[SPAN] = []
            start_ns = time.time_ns()
        status = 0
        started = time.perf_counter()

        async def observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, observed)
        except BaseException:
            status = status or 500  # Starlette's outermost layer answers 500 for it
            raise
        finally:
            method = scope["method"] if scope["method"] in METHODS else "OTHER"
            route = self._route(scope)
            key = (method, route, status)
            observe = self._observers.get(key)
            if observe is None:
                observe = self._observers[key] = self._histogram.labels(*key).observe
            observe(time.perf_counter() - started)
            if spans is not None:
                own, parent = scope[SPAN] or _continue_header(scope)
                assert own is not None
                spans.record(
                    Span(
                        f"{method} {route}",
                        "server",
                        own,
                        parent,
                        start_ns,
                        time.time_ns(),
                        {
                            "http.request.method": method,
                            "http.route": route,
                            "http.response.status_code": status,
                            "url.path": scope["path"],
                        },
                        error=f"HTTP {status}" if status >= 500 else None,
                    )
                )

    def _route(self, scope: Scope) -> str:
        """The template of the route that served the request. Starlette's router leaves
        the route in the scope; a request answered before routing (a refusal by another
        middleware) or by no route is matched here, which only those requests pay for."""
        route: BaseRoute | None = scope.get("route")
        if route is None:
            route = _match(scope)
            if route is None:
                return UNMATCHED
        template = self._templates.get(id(route))
        if template is None:
            path = getattr(route, "path", UNMATCHED)
            template = f"{path}/{{path}}" if isinstance(route, Mount) else path
            self._templates[id(route)] = template
        return template


def _continue_header(scope: Scope) -> tuple[str, str | None]:
    parent = tracing.header(
        [value.decode("latin-1") for name, value in scope["headers"] if name == b"traceparent"]
    )
    return tracing.continued(parent), parent


def _match(scope: Scope) -> BaseRoute | None:
    partial = None
    routes: list[BaseRoute] = scope["app"].routes
    for route in routes:
        match, _ = route.matches(scope)
        if match is Match.FULL:
            return route
        if match is Match.PARTIAL and partial is None:
            partial = route
    return partial
