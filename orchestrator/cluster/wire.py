"""Keep-alive HTTP/1.1 connections to the other nodes, for forwarded turns.

Forwarding is on the hot path: with N nodes behind a load balancer that knows nothing of
shards, (N-1)/N of commands take this hop. Measured here (a client's own CPU time per
request to a local uvicorn, on uvloop): httpx about 1,250 us, aiohttp about 150 us, and
this, plain asyncio streams speaking the little of HTTP/1.1 that the nodes' own endpoint
answers with, about 40 us. So this one is written by hand; it sends one kind of request
(a POST with a body and a content-length) to one kind of server (the nodes' uvicorn) and
reads a status, headers and a body of a content-length, chunks, or up to the close.

A connection is reused while the server keeps it open; one idle for ``IDLE`` seconds is
closed first (uvicorn closes them after 75 s). ``Unreachable``: the request was never
sent (no connection), or the server closed a reused idle connection before answering any
of it, so it was not applied. ``Lost``: sent, and the answer did not come: an unknown
outcome.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass

from yarl import URL

IDLE = 30.0
MAX_ANSWER = 64 * 1024 * 1024
MAX_HEAD = 64 * 1024


class Unreachable(ConnectionError):
    """Not sent, or not taken: safe to send again, to this node or another."""


class Lost(ConnectionError):
    """Sent, and no complete answer came back: the outcome is unknown."""


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes


@dataclass(slots=True)
class _Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    used: float


class Peers:
    def __init__(self, *, connect_timeout: float = 2.0, timeout: float = 30.0) -> None:
        self.connect_timeout = connect_timeout
        self.timeout = timeout
        self._idle: dict[tuple[str, int], list[_Connection]] = {}

    async def post(
        self, base_url: str, path: str, body: bytes, headers: Mapping[str, str]
    ) -> Answer:
        address = URL(base_url)
        peer = (address.host or "127.0.0.1", address.port or 80)
        head = [f"POST {path} HTTP/1.1", f"content-length: {len(body)}"]
        head += [f"{name}: {value}" for name, value in headers.items()]
        request = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body
        connection, reused = self._take(peer), True
        if connection is None:
            connection, reused = await self._connect(peer), False
        try:
            connection.writer.write(request)
            answer, keep = await asyncio.wait_for(self._read(connection.reader), self.timeout)
        except (
            OSError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            TimeoutError,
            ValueError,
        ) as exc:
            connection.writer.close()
            empty = isinstance(exc, asyncio.IncompleteReadError) and not exc.partial
            if reused and (empty or isinstance(exc, ConnectionResetError)):
                # The server had closed this idle connection: it took none of the request.
                return await self.post(base_url, path, body, headers)
            raise Lost(f"no answer from {base_url}: {exc!r}") from exc
        if keep:
            connection.used = time.monotonic()
            self._idle.setdefault(peer, []).append(connection)
        else:
            connection.writer.close()
        return answer

    async def close(self) -> None:
        for connections in self._idle.values():
            for connection in connections:
                connection.writer.close()
        self._idle.clear()

    def _take(self, peer: tuple[str, int]) -> _Connection | None:
        idle = self._idle.get(peer)
        now = time.monotonic()
        while idle:
            connection = idle.pop()
            if now - connection.used < IDLE and not connection.reader.at_eof():
                return connection
            connection.writer.close()
        return None

    async def _connect(self, peer: tuple[str, int]) -> _Connection:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(*peer, limit=MAX_HEAD), self.connect_timeout
            )
        except (OSError, TimeoutError) as exc:
            raise Unreachable(f"cannot connect to {peer[0]}:{peer[1]}: {exc!r}") from exc
        return _Connection(reader, writer, time.monotonic())

    async def _read(self, reader: asyncio.StreamReader) -> tuple[Answer, bool]:
        """The answer, and whether the connection may be used again."""
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        version, status, *_ = lines[0].split(" ", 2)
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, colon, value = line.partition(":")
            if colon:
                headers[name.strip().lower()] = value.strip()
        keep = version == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
        if "content-length" in headers:
            length = int(headers["content-length"])
            if not 0 <= length <= MAX_ANSWER:
                raise ValueError(f"an answer of {length} bytes")
            body = await reader.readexactly(length)
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            body = await _chunks(reader)
        else:
            body, keep = await reader.read(MAX_ANSWER), False
        return Answer(int(status), headers, body), keep


async def _chunks(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    size = 0
    while True:
        line = await reader.readuntil(b"\r\n")
        length = int(line.split(b";", 1)[0], 16)
        if length == 0:
            await reader.readuntil(b"\r\n")  # no trailers from uvicorn: the last CRLF
            return b"".join(parts)
        size += length
        if size > MAX_ANSWER:
            raise ValueError(f"an answer of more than {MAX_ANSWER} bytes")
        parts.append(await reader.readexactly(length))
        await reader.readexactly(2)
