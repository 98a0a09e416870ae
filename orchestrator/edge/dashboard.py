"""The web dashboard: ``/`` redirects to ``/ui/``, which serves static pages from the package.

The pages are plain HTML and ES modules (no build step) with elkjs vendored beside them, so
the dashboard works offline and needs nothing besides ``orchestrator serve``. They only
call the public API (``/orders``, ``/charts``, the WebSockets), with the token the user
gives when the server has one; this module serves files and never reads an order.

Every answer under ``/ui/`` carries a Content-Security-Policy that allows only the
server's own scripts, styles and connections (no inline script, no eval: elkjs's bundle
lays out in the page's own thread, without a worker or ``eval``), so injected markup could
run nothing; ``frame-ancestors 'none'`` and ``X-Frame-Options`` keep other sites from
framing the pages (clickjacking the event form); ``nosniff`` keeps a browser from running
a file as another type than the one it is served as.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# 'self' covers the WebSockets of the same host and port (CSP Level 3); data: is the
# pages' empty favicon.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]


class SecurityHeaders:
    """Adds ``SECURITY_HEADERS`` to every HTTP answer of the app it wraps."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)


async def home(request: Request) -> Response:
    return RedirectResponse("/ui/", status_code=307)


def routes() -> list[BaseRoute]:
    static = StaticFiles(packages=[("orchestrator.edge", "static")], html=True)
    # Pages for people, not API: not in /openapi.json.
    home_page = Route("/", home, methods=["GET"], include_in_schema=False)
    return [home_page, Mount("/ui", SecurityHeaders(static), name="ui")]
