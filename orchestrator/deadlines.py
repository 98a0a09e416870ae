"""Deadlines for what a client sends: a request's head, then its body.

uvicorn bounds only the wait between two requests on a kept-alive connection. A connection
that sends nothing, or half a request line, or headers a byte a minute, or a body that
trickles, was held for as long as the client liked: 400 of them held open for minutes cost
400 sockets and their buffers, and nothing in the application can see them, since it is
called only once the headers are complete. So the deadlines live in the HTTP protocol that
uvicorn runs per connection (its httptools one, which is what it picks when httptools is
installed, as ``uvicorn[standard]`` does), as a subclass that arms one timer:

- from the connection's start, or a request's first byte, until its headers are complete:
  ``--header-timeout``;
- from then until its body has arrived (at once for a body-less request):
  ``--body-timeout``.

When the timer fires the request gets 408 (an RFC 9457 problem, ``Connection: close``) and
the connection is closed; a connection that had not begun a request is closed without one,
as an idle kept-alive one is. An application still reading the body sees the client gone.
A WebSocket's handshake is a request head like any other; once upgraded, the connection
is the WebSocket protocol's and no deadline applies. The time an application takes to
answer is not bounded here: the client is waiting then, not the server.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

# Waiting for: nothing (a request is being answered, or the connection is kept alive),
# the head of a request (or of the first one), or its body.
IDLE, HEAD, BODY = "idle", "head", "body"


def _timeout_response(detail: str) -> bytes:
    body = json.dumps(
        {"type": "about:blank", "title": "Request timeout", "status": 408, "detail": detail},
        separators=(",", ":"),
    ).encode()
    head = (
        "HTTP/1.1 408 Request Timeout\r\ncontent-type: application/problem+json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode() + body


class DeadlineProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the two deadlines (set by ``with_deadlines``)."""

    header_timeout = 10.0
    body_timeout = 30.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._waiting_for = IDLE
        self._body_due = 0.0  # the loop's time by which the body must be in
        self._began = False  # a byte of the current request has arrived

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._waiting_for = HEAD
        self._deadline = self.loop.call_later(seconds, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self._waiting_for = IDLE

    def _expired(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if self._waiting_for == BODY:
            # The head's timer, kept for the body (one timer per request, not two): the
            # body may still have time left.
            left = self._body_due - self.loop.time()
            if left > 0:
                self._deadline = self.loop.call_later(left, self._expired)
                return
            if not self.cycle.response_started:
                detail = f"the body did not arrive within {self.body_timeout:g} s"
                self.transport.write(_timeout_response(detail))
        elif self._waiting_for == HEAD and self._began:
            detail = f"the request's headers did not arrive within {self.header_timeout:g} s"
            self.transport.write(_timeout_response(detail))
        self.transport.close()

    # The connection's life: a deadline from its start; none once it is a WebSocket's.
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def handle_websocket_upgrade(self) -> None:
        self._disarm()
        super().handle_websocket_upgrade()

    # A request's life, as the parser reports it.
    def on_message_begin(self) -> None:
        super().on_message_begin()
        if not self._began and self._waiting_for == HEAD:
            self._began = True  # the connection's first request: its timer is running
            return
        self._began = True
        self._arm(self.header_timeout)

    def on_headers_complete(self) -> None:
        if self.body_timeout < self.header_timeout:  # the head's timer would fire too late
            self._arm(self.body_timeout)
        self._waiting_for = BODY
        self._body_due = self.loop.time() + self.body_timeout
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        self._began = False
        super().on_message_complete()


def with_deadlines(header_timeout: float, body_timeout: float) -> type[DeadlineProtocol]:
    """The protocol class to give uvicorn's ``Config(http=...)``."""
    return type(
        "DeadlineProtocol",
        (DeadlineProtocol,),
        {"header_timeout": header_timeout, "body_timeout": body_timeout},
    )
