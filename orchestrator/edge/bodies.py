"""Request bodies, read no further than ``--max-body-bytes``.

A body is refused (413) as soon as its declared length or the bytes that have arrived pass
the limit, so a client cannot make the server hold more than that for one request.
"""

from __future__ import annotations

from starlette.requests import Request

from orchestrator.numbers import whole_number


class BodyTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"the body is larger than {limit} bytes")
        self.limit = limit


async def read_body(request: Request) -> bytes:
    """The whole body, or ``BodyTooLarge`` once it passes the limit."""
    limit: int = request.app.state.max_body_bytes
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
