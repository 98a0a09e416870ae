"""The errors a client raises: a problem document the server answered, typed by status,
or no answer at all.

    ClientError
     +-- ProblemError               an application/problem+json answer (RFC 9457)
     |    +-- BadRequest            400  (e.g. a foreign Host)
     |    +-- Unauthorized          401  a missing or wrong token
     |    +-- Forbidden             403  an event only a service may send; a foreign Origin
     |    +-- NotFound              404  no such order or chart
     |    +-- Conflict              409  not allowed in this state (``allowed``), or refused
     |    +-- PreconditionFailed    412  If-Match named an older version (``version``)
     |    +-- TooLarge              413
     |    +-- UnsupportedMediaType  415
     |    +-- Invalid               422  a malformed field (``field``)
     |    +-- ServerError           5xx  (503: the store or broker failed; retried first)
     +-- ConnectionFailed           no answer: the server could not be reached in time

A problem keeps the fields the server adds (``allowed``, ``state``, ``version``,
``field``, ``known``) as attributes, None when absent, and the whole document as ``body``.
"""

from __future__ import annotations

from typing import Any

JsonObject = dict[str, Any]


class ClientError(Exception):
    """Root of every error the client raises on purpose."""


class ConnectionFailed(ClientError):
    """The server could not be reached, or did not answer, after the client's retries."""


class ProblemError(ClientError):
    """The server answered with a problem document; ``status`` is its HTTP status."""

    def __init__(self, body: JsonObject) -> None:
        self.body = body
        self.status = int(body.get("status") or 0)
        self.title = str(body.get("title") or "Error")
        self.detail = str(body.get("detail") or "")
        self.type = str(body.get("type") or "about:blank")
        self.field: str | None = body.get("field")
        self.allowed: list[str] | None = body.get("allowed")
        self.state: str | None = body.get("state")
        self.version: int | None = body.get("version")
        self.known: list[str] | None = body.get("known")
        self.error: str | None = body.get("error")
        super().__init__(f"{self.status} {self.title}: {self.detail}")


class BadRequest(ProblemError):
    """400."""


class Unauthorized(ProblemError):
    """401: the server wants ``Authorization: Bearer <token>``, and it was absent or wrong."""


class Forbidden(ProblemError):
    """403."""


class NotFound(ProblemError):
    """404."""


class Conflict(ProblemError):
    """409: the event is not allowed in the order's state (``allowed`` lists the ones that
    are, ``version`` is the order's), or the chart refused it; nothing changed."""


class PreconditionFailed(ProblemError):
    """412: If-Match named a version the order has moved past; ``version`` is its own."""


class TooLarge(ProblemError):
    """413."""


class UnsupportedMediaType(ProblemError):
    """415."""


class Invalid(ProblemError):
    """422: ``field`` names what is malformed (a body field, ``type``, ``Idempotency-Key``)."""


class ServerError(ProblemError):
    """5xx."""


BY_STATUS: dict[int, type[ProblemError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    412: PreconditionFailed,
    413: TooLarge,
    415: UnsupportedMediaType,
    422: Invalid,
}


def problem_error(status: int, body: object, text: str) -> ProblemError:
    """The typed error for an answer of ``status``: its problem document, or (from
    something in between, such as a proxy) a document made of the status and text."""
    if not isinstance(body, dict):
        body = {"status": status, "title": f"HTTP {status}", "detail": text[:500]}
    body = {**body, "status": status}
    cls = BY_STATUS.get(status) or (ServerError if status >= 500 else ProblemError)
    return cls(body)
