"""``AsyncClient``: the orchestrator's HTTP API and an order's WebSocket, for asyncio.

``watch`` yields an order's updates for as long as the caller reads them: after a lost
connection or a server restart it connects again with ``?after=<the last version it
yielded>``, and the server replays what it missed from the journal, so no version is
missed or repeated (one at or below the last is skipped, should one come twice).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from types import TracebackType
from typing import TypeVar

import httpx
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from orchestrator.client import calls
from orchestrator.client.calls import DEFAULT_URL, Call, Retries
from orchestrator.client.problems import ConnectionFailed
from orchestrator.client.results import (
    ChartList,
    ChartSummary,
    ClusterStatus,
    HistoryEntry,
    JsonObject,
    Order,
    OrderPage,
    Update,
)

T = TypeVar("T")


class AsyncClient:
    """``async with AsyncClient(url, token=...) as client``; every method raises a
    ``ProblemError`` subclass for a problem answer and ``ConnectionFailed`` when no answer
    came after ``retries``."""

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        token: str | None = None,
        timeout: float = 30.0,
        retries: Retries | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.retries = retries or Retries()
        self._http = httpx.AsyncClient(
            base_url=self.url, headers=calls.base_headers(token), timeout=timeout
        )

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def create(
        self, data: JsonObject, *, chart: str | None = None, key: str | None = None
    ) -> Order:
        """POST /orders: a new order of ``chart`` (the server's default when None) from its
        create fields ``data``."""
        return await self._run(calls.create(data, chart, key))

    async def send(
        self,
        order_id: str,
        type: str,
        data: JsonObject | None = None,
        *,
        key: str | None = None,
        if_match: int | None = None,
    ) -> Order:
        """POST /orders/{id}/events; ``if_match`` applies it only at that version."""
        return await self._run(calls.send(order_id, type, data, key, if_match))

    async def get(self, order_id: str) -> Order:
        return await self._run(calls.get(order_id))

    async def history(self, order_id: str, *, after: int = 0) -> list[HistoryEntry]:
        """Every journal entry after version ``after``, oldest first, page after page."""
        entries: list[HistoryEntry] = []
        next_after: int | None = after
        while next_after is not None:
            page, next_after = await self._run(calls.history_page(order_id, next_after))
            entries += page
        return entries

    async def orders(
        self,
        *,
        state: str | None = None,
        chart: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> OrderPage:
        """One page of GET /orders, newest first; pass its ``next_cursor`` for the next."""
        return await self._run(calls.orders(state, chart, limit, cursor))

    async def charts(self) -> ChartList:
        return await self._run(calls.charts())

    async def chart(self, name: str) -> ChartSummary:
        return await self._run(calls.chart(name))

    async def cluster(self) -> ClusterStatus:
        """GET /cluster: the members and who holds which shard (404 on SQLite)."""
        return await self._run(calls.cluster())

    async def watch(
        self, order_id: str, *, after: int | None = None, reconnects: int = 10
    ) -> AsyncIterator[Update]:
        """The order's updates from WS /orders/{id}/ws: without ``after``, its current view
        first, then one per applied event; with it, every event after that version. Up to
        ``reconnects`` tries in a row to connect again after a disconnect."""
        last = after
        failures = 0
        headers = calls.base_headers(self.token)
        while True:
            try:
                async with connect(
                    calls.ws_url(self.url, order_id, last),
                    additional_headers=headers,
                    open_timeout=self._http.timeout.connect,
                ) as socket:
                    async for message in socket:
                        update = Update.from_json(json.loads(message))
                        failures = 0
                        if last is not None and update.version <= last:
                            continue
                        last = update.version
                        yield update
                    code, reason = socket.close_code, socket.close_reason or ""
            except InvalidStatus as exc:
                response = exc.response
                raise calls.handshake_error(response.status_code, bytes(response.body)) from exc
            except ConnectionClosed as exc:
                code = exc.rcvd.code if exc.rcvd else None
                reason = exc.rcvd.reason if exc.rcvd else ""
            except (OSError, InvalidHandshake, TimeoutError) as exc:
                code, reason = None, str(exc)
            error = calls.final_close(code, reason)
            if error is not None:
                raise error
            failures += 1
            if failures > reconnects:
                raise ConnectionFailed(f"lost the WebSocket of order {order_id}: {reason}")
            await asyncio.sleep(self.retries.wait(failures))

    async def _run(self, call: Call[T]) -> T:
        content = call.content()
        for attempt in range(1, self.retries.attempts + 1):
            last = attempt == self.retries.attempts
            try:
                response = await self._http.request(
                    call.method, call.path, params=call.params, content=content,
                    headers=call.headers,
                )  # fmt: skip
            except httpx.TransportError as exc:
                if last:
                    raise ConnectionFailed(f"{call.method} {self.url}{call.path}: {exc!r}") from exc
                await asyncio.sleep(self.retries.wait(attempt))
                continue
            if calls.should_retry(response) and not last:
                await asyncio.sleep(self.retries.wait(attempt, response.headers.get("retry-after")))
                continue
            return calls.answer(response, call)
        raise AssertionError("unreachable: the last attempt returns or raises")
