"""The paths of /openapi.json are the app's routes: each documented once, none made up.

Issue 19, item 3: the document was a hand-written list of paths, which could drift from the
routes. ``openapi.document`` now walks the app's routes; these tests build the real app
(``Runtime``, not started: no server needed to read its routes) and read the served
document of a live server.
"""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route, WebSocketRoute

from orchestrator.edge import openapi
from orchestrator.runtime import Runtime
from orchestrator.settings import Settings
from tests.conftest import ServerProcess


def _operations(runtime: Runtime) -> set[tuple[str, str]]:
    """(method, path) of every API route of the app: HEAD is implied by GET, a WebSocket
    is its opening GET, and the dashboard's pages (a mount, the redirect) are not API."""
    served: set[tuple[str, str]] = set()
    for route in runtime.app.routes:
        if isinstance(route, WebSocketRoute):
            served.add(("get", route.path))
        elif isinstance(route, Route) and route.include_in_schema:
            served |= {(m.lower(), route.path) for m in route.methods or () if m != "HEAD"}
        else:
            assert isinstance(route, Mount | Route), route
    return served


def test_every_route_is_documented_and_nothing_else(tmp_path: Path) -> None:
    runtime = Runtime(Settings(db=tmp_path / "orders.db"))
    document = runtime.app.state.openapi
    documented = {
        (method, path) for path, operations in document["paths"].items() for method in operations
    }
    assert documented == _operations(runtime)
    ids = [op["operationId"] for ops in document["paths"].values() for op in ops.values()]
    assert len(ids) == len(set(ids)), "an operation documented twice"


async def test_the_served_document_has_the_routes(server: ServerProcess) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        paths = (await http.get("/openapi.json")).json()["paths"]
    assert set(paths["/orders"]) == {"get", "post"}
    assert "/" not in paths and "/ui" not in paths  # the dashboard, for people


async def _endpoint(request: Request) -> Response:
    return Response()


def test_an_undocumented_route_stops_the_start() -> None:
    with pytest.raises(RuntimeError, match=re.escape("PUT /orders/{order_id} is served but not")):
        openapi.paths_of([Route("/orders/{order_id}", _endpoint, methods=["PUT"])])


def test_a_documented_operation_without_a_route_stops_the_start() -> None:
    with pytest.raises(RuntimeError, match=r"documented but not served: .*GET /healthz"):
        openapi.paths_of([Route("/orders", _endpoint, methods=["GET", "POST"])])
