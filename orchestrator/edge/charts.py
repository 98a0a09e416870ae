"""GET /charts and GET /charts/{name}: the loaded charts and each one's structure.

The dashboard draws an order's chart and builds its create form from these; they describe
the charts this server runs, read from the loaded classes (``chart_graph``), so they can
never disagree with what the actors do.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from orchestrator.chart_graph import chart_graph
from orchestrator.edge.orders import _json_type, _registry
from orchestrator.edge.problems import problem


async def list_charts(request: Request) -> Response:
    registry = _registry(request)
    return JSONResponse({"charts": sorted(registry.charts), "default": registry.default_chart})


async def get_chart(request: Request) -> Response:
    name = request.path_params["name"]
    chart = _registry(request).charts.get(name)
    if chart is None:
        return problem(404, f"no chart named {name!r}")
    context_class = chart.context_class
    body = {
        "name": name,
        # What POST /orders takes for this chart besides "chart": field -> JSON type.
        "createFields": {f: _json_type(kind) for f, kind in context_class.create_fields.items()},
        # Every chart is: one without a create event by its start alone (kept for clients
        # that read it).
        "creatable": True,
        # Events only a service may send: the dashboard does not offer them.
        "serviceEvents": sorted(chart.service_events),
        **chart_graph(chart.machine_class, chart.event_names, chart.state_names),
    }
    return JSONResponse(body)
