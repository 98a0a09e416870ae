"""Errors -> RFC 9457 ``application/problem+json`` responses, in this one place.

Every error a client can see goes through ``problem``: the orchestrator's own errors, HTTP
errors from routing (404, 405) and anything unexpected, which is logged and answered 500
without internals.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from orchestrator import errors
from orchestrator.edge.bodies import BodyTooLarge, NotJson

log = logging.getLogger(__name__)

MEDIA_TYPE = "application/problem+json"

_STATUS: dict[type[errors.OrchestratorError], int] = {
    errors.OrderNotFound: 404,
    errors.InvalidInput: 422,
    errors.UnknownEvent: 422,
    errors.EventNotAllowed: 409,
    errors.ServiceOnly: 403,
    errors.Refused: 409,
    errors.VersionMismatch: 412,
    errors.IdempotencyConflict: 422,
    errors.Unavailable: 503,
}

_TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    408: "Request timeout",
    409: "Conflict",
    412: "Precondition failed",
    413: "Content too large",
    415: "Unsupported media type",
    421: "Misdirected request",
    422: "Unprocessable content",
    500: "Internal server error",
    503: "Service unavailable",
}


def problem(
    status: int, detail: str, headers: dict[str, str] | None = None, **extra: Any
) -> Response:
    body = {"type": "about:blank", "title": _TITLES.get(status, "Error"), "status": status}
    body["detail"] = detail
    body.update(extra)
    return Response(
        json.dumps(body, separators=(",", ":")), status, headers=headers, media_type=MEDIA_TYPE
    )


def from_error(exc: errors.OrchestratorError) -> Response:
    if isinstance(exc, errors.RemoteProblem):
        # The owner node's answer, as it gave it.
        headers = {"Retry-After": "1"} if exc.retryable else None
        return Response(
            json.dumps(exc.problem, separators=(",", ":")),
            exc.status,
            headers=headers,
            media_type=MEDIA_TYPE,
        )
    status = next((s for cls, s in _STATUS.items() if isinstance(exc, cls)), 400)
    extra: dict[str, Any] = {"error": type(exc).__name__}
    if isinstance(exc, errors.ShardMoved):
        extra["shard"] = exc.shard
        if exc.owner is not None:
            # 421 Misdirected Request: the owner is known; a forwarding node asks it.
            extra["owner"] = exc.owner
            return problem(421, exc.detail, None, **extra)
    if isinstance(exc, errors.InvalidInput):
        extra["field"] = exc.field
    elif isinstance(exc, errors.UnknownEvent):
        extra.update(field="type", known=exc.known)
    elif isinstance(exc, errors.EventNotAllowed):
        extra.update(allowed=exc.allowed, state=exc.state, version=exc.version)
    elif isinstance(exc, errors.OrderTooLarge):
        extra.update(limit=exc.limit, maximum=exc.maximum)
    elif isinstance(exc, errors.ServiceOnly):
        extra.update(field="type", event=exc.event_type)
    elif isinstance(exc, errors.VersionMismatch):
        extra.update(version=exc.actual)
    elif isinstance(exc, errors.IdempotencyConflict):
        extra["field"] = "Idempotency-Key"
    headers = {"Retry-After": "1"} if exc.retryable else None
    return problem(status, exc.detail, headers, **extra)


async def on_orchestrator_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, errors.OrchestratorError)
    return from_error(exc)


async def on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return problem(exc.status_code, str(exc.detail), dict(exc.headers or {}))


async def on_too_large(request: Request, exc: Exception) -> Response:
    return problem(413, str(exc), field="body")


async def on_not_json(request: Request, exc: Exception) -> Response:
    return problem(415, str(exc), field="content-type")


async def on_client_gone(request: Request, exc: Exception) -> Response:
    """The client closed the connection before its body arrived: nothing was applied, and
    the answer reaches no one. Not a server error, so nothing is logged."""
    return problem(400, "the client disconnected before sending the whole body")


async def on_unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return problem(500, "the server failed on this request; it has been logged")


HANDLERS = {
    errors.OrchestratorError: on_orchestrator_error,
    HTTPException: on_http_error,
    BodyTooLarge: on_too_large,
    NotJson: on_not_json,
    ClientDisconnect: on_client_gone,
    Exception: on_unexpected,
}
