"""Operational endpoints: liveness, readiness, Prometheus metrics, the OpenAPI document."""

from __future__ import annotations

import time

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from orchestrator.edge.problems import problem
from orchestrator.metrics import Metrics
from orchestrator.store.base import QueryStore


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    if not request.app.state.ready:
        return problem(503, "starting up or shutting down")
    return JSONResponse({"status": "ready"})


async def metrics(request: Request) -> Response:
    registry: Metrics = request.app.state.metrics
    store: QueryStore = request.app.state.store
    stats = await store.stats(time.time())
    registry.observe_store(stats.orders, stats.timers, stats.timer_overdue_seconds)
    return Response(registry.render(), media_type=CONTENT_TYPE_LATEST)


async def openapi(request: Request) -> Response:
    """The document built when the app started, for the charts it runs."""
    return JSONResponse(request.app.state.openapi)
