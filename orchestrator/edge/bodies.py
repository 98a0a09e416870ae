"""Request bodies: JSON only, read no further than ``--max-body-bytes``.

A body must be declared JSON (``application/json``, or a ``+json`` type such as
``application/cloudevents+json``), else 415 before a byte of it is read. That is what keeps
other sites' pages out: a browser sends a cross-site POST without asking first only with a
form type or ``text/plain``; a JSON one needs a CORS preflight, which this server never
grants (see ``sameorigin``).

A body is refused (413) as soon as its declared length or the bytes that have arrived pass
the limit, so a client cannot make the server hold more than that for one request.
"""

from __future__ import annotations

from starlette.requests import Request

from orchestrator.numbers import whole_number

JSON = "application/json"


class NotJson(Exception):
    def __init__(self, content_type: str | None) -> None:
        given = "no content-type" if content_type is None else f"content-type {content_type!r}"
        super().__init__(f"the body must be {JSON} (or a +json type), not {given}")


class BodyTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"the body is larger than {limit} bytes")
        self.limit = limit


async def read_body(request: Request, limit: int | None = None) -> bytes:
    """The whole body; ``NotJson`` unless it is declared JSON, ``BodyTooLarge`` once it
    passes ``limit`` (by default ``--max-body-bytes``)."""
    content_type = request.headers.get("content-type")
    if not is_json(content_type):
        raise NotJson(content_type)
    if limit is None:
        limit = request.app.state.max_body_bytes
    declared = request.headers.get("content-length")
    size = whole_number(declared) if declared is not None else None
    if size is not None and size > limit:
        raise BodyTooLarge(limit)
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > limit:
            raise BodyTooLarge(limit)
    return raw


def is_json(content_type: str | None) -> bool:
    """``application/json`` or ``application/<anything>+json``, with any parameters."""
    if content_type is None:
        return False
    media_type = content_type.partition(";")[0].strip().lower()
    return media_type == JSON or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )
