"""The web dashboard: ``/`` redirects to ``/ui/``, which serves static pages from the package.

The pages are plain HTML and ES modules (no build step) with elkjs vendored beside them, so
the dashboard works offline and needs nothing besides ``orchestrator serve``. They only
call the public API (``/orders``, ``/charts``, the WebSockets), with the token the user
gives when the server has one; this module serves files and never reads an order.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles


async def home(request: Request) -> Response:
    return RedirectResponse("/ui/", status_code=307)


def routes() -> list[BaseRoute]:
    static = StaticFiles(packages=[("orchestrator.edge", "static")], html=True)
    return [Route("/", home, methods=["GET"]), Mount("/ui", static, name="ui")]
