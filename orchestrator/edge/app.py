"""The Starlette application: routes, error handlers, and the lifespan it is given."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import BaseRoute, Route, WebSocketRoute

from orchestrator.edge import charts, cluster, dashboard, openapi, ops, orders, webhooks, ws
from orchestrator.edge.auth import BearerAuth
from orchestrator.edge.observe import ObserveRequests
from orchestrator.edge.problems import HANDLERS
from orchestrator.edge.sameorigin import AllowedHosts, SameOriginGuard

Lifespan = Callable[[Starlette], AbstractAsyncContextManager[None]]


def create_app(
    lifespan: Lifespan,
    *,
    api_token: str | None,
    allowed_hosts: AllowedHosts,
    **state: Any,
) -> Starlette:
    """The app; ``state`` (registry, hub, store, metrics, spans, max_body_bytes,
    ws_send_timeout, webhook_keys, webhook_window, cluster) goes to ``app.state``, where the
    endpoints find it."""
    # Matched in this order, one pattern after another: the most requested come first.
    routes: list[BaseRoute] = [
        Route("/orders/{order_id}/events", orders.send_event, methods=["POST"]),
        Route("/orders", orders.collection, methods=["GET", "POST"]),
        Route("/orders/{order_id}", orders.get_order, methods=["GET"]),
        Route("/orders/{order_id}/history", orders.history, methods=["GET"]),
        Route("/events", webhooks.receive_event, methods=["POST"]),
        WebSocketRoute("/orders/{order_id}/ws", ws.capped(ws.order_socket)),
        Route("/healthz", ops.healthz, methods=["GET"]),
        Route("/readyz", ops.readyz, methods=["GET"]),
        Route("/metrics", ops.metrics, methods=["GET"]),
        Route("/openapi.json", ops.openapi, methods=["GET"]),
        Route("/charts", charts.list_charts, methods=["GET"]),
        Route("/charts/{name}", charts.get_chart, methods=["GET"]),
        WebSocketRoute("/ws", ws.capped(ws.all_orders_socket)),
        Route("/cluster", cluster.status, methods=["GET"]),
        # The nodes' own, signed: not part of the API.
        Route("/cluster/turns", cluster.receive_turn, methods=["POST"], include_in_schema=False),
        *dashboard.routes(),
    ]
    # Outermost first: every answer is counted and timed, refusals included; then a request
    # from a foreign host or page is refused before anything.
    middleware = [
        Middleware(ObserveRequests, metrics=state["metrics"], spans=state.get("spans")),
        Middleware(SameOriginGuard, allowed_hosts=allowed_hosts),
    ]
    # Without a token there is nothing to check: no layer on every request.
    if api_token is not None:
        signed = state.get("webhook_keys") is not None
        middleware.append(Middleware(BearerAuth, token=api_token, webhook_signed=signed))
    app = Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers=HANDLERS,
        lifespan=lifespan,
    )
    app.state.ready = False
    for name, value in state.items():
        setattr(app.state, name, value)
    # Built once, from the routes and the charts of this app: GET /openapi.json serves it.
    registry = state["registry"]
    app.state.openapi = openapi.document(app.routes, registry.charts, registry.default_chart)
    return app
