"""Bearer-token auth for commands and reads, when ``ORCHESTRATOR_API_TOKEN`` is set.

Every HTTP request and WebSocket needs ``Authorization: Bearer <token>``, except the
operational endpoints (health, readiness, metrics, the OpenAPI document), the calls
between cluster nodes (signed with the cluster's key), the webhook
when it has its own HMAC signature (``ORCHESTRATOR_WEBHOOK_SECRET``; without one it needs
the token like any command), and the dashboard's static pages, which ask for the token.
A browser cannot set headers on a WebSocket, so a WebSocket may pass the token as
``?access_token=<token>`` instead; it is then accepted and closed at once with code 4401
when the token is wrong or missing, so the client sees why.
"""

from __future__ import annotations

import hmac
from urllib.parse import parse_qs

from starlette.types import ASGIApp, Receive, Scope, Send

from orchestrator.edge.problems import problem

# POST /cluster/turns is signed by the forwarding node with the cluster's own key.
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/openapi.json", "/cluster/turns"})
WEBHOOK_PATH = "/events"
# The dashboard's pages and scripts hold no data; the API calls they make need the token.
DASHBOARD_PATHS = frozenset({"/", "/ui"})
DASHBOARD_PREFIX = "/ui/"
UNAUTHORIZED_CLOSE_CODE = 4401


class BearerAuth:
    def __init__(self, app: ASGIApp, token: str | None, *, webhook_signed: bool) -> None:
        self.app = app
        self.token = token
        self.open_paths = OPEN_PATHS | {WEBHOOK_PATH} if webhook_signed else OPEN_PATHS

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            self.token is None
            or scope["type"] not in ("http", "websocket")
            or scope["path"] in self.open_paths
            or scope["path"] in DASHBOARD_PATHS
            or scope["path"].startswith(DASHBOARD_PREFIX)
            or self._presented(scope)
        ):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "http":
            response = problem(
                401, "a valid 'Authorization: Bearer <token>' header is required",
                {"WWW-Authenticate": "Bearer"},
            )  # fmt: skip
            await response(scope, receive, send)
            return
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        await send(
            {"type": "websocket.close", "code": UNAUTHORIZED_CLOSE_CODE, "reason": "unauthorized"}
        )

    def _presented(self, scope: Scope) -> bool:
        assert self.token is not None
        expected = self.token.encode()
        for name, value in scope.get("headers", []):
            if name == b"authorization":
                # RFC 9110 11.1: the scheme is case-insensitive (bearer, BEARER), and one or
                # more spaces separate it from the credentials.
                scheme, _, credentials = value.partition(b" ")
                if scheme.lower() == b"bearer":
                    return hmac.compare_digest(credentials.lstrip(b" "), expected)
        if scope["type"] == "websocket":
            query = parse_qs(scope.get("query_string", b"").decode(errors="replace"))
            for candidate in query.get("access_token", []):
                return hmac.compare_digest(candidate.encode(), expected)
        return False
