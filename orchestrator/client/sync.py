"""``Client``: the same API as ``AsyncClient`` for code without an event loop (scripts, the
CLI's one-shot commands), on httpx's and websockets' blocking clients."""

from __future__ import annotations

import json
import time
from collections.abc import Generator
from types import TracebackType
from typing import TypeVar

import httpx
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.sync.client import connect

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


class Client:
    """``with Client(url, token=...) as client``; see ``AsyncClient`` for each method."""

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
        self._http = httpx.Client(
            base_url=self.url, headers=calls.base_headers(token), timeout=timeout
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def create(
        self, data: JsonObject, *, chart: str | None = None, key: str | None = None
    ) -> Order:
        return self._run(calls.create(data, chart, key))

    def send(
        self,
        order_id: str,
        type: str,
        data: JsonObject | None = None,
        *,
        key: str | None = None,
        if_match: int | None = None,
    ) -> Order:
        return self._run(calls.send(order_id, type, data, key, if_match))

    def get(self, order_id: str) -> Order:
        return self._run(calls.get(order_id))

    def history(self, order_id: str, *, after: int = 0) -> list[HistoryEntry]:
        entries: list[HistoryEntry] = []
        next_after: int | None = after
        while next_after is not None:
            page, next_after = self._run(calls.history_page(order_id, next_after))
            entries += page
        return entries

    def orders(
        self,
        *,
        state: str | None = None,
        chart: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> OrderPage:
        return self._run(calls.orders(state, chart, limit, cursor))

    def charts(self) -> ChartList:
        return self._run(calls.charts())

    def chart(self, name: str) -> ChartSummary:
        return self._run(calls.chart(name))

    def cluster(self) -> ClusterStatus:
        return self._run(calls.cluster())

    def watch(
        self, order_id: str, *, after: int | None = None, reconnects: int = 10
    ) -> Generator[Update, None, None]:
        last = after
        failures = 0
        headers = calls.base_headers(self.token)
        while True:
            try:
                with connect(
                    calls.ws_url(self.url, order_id, last),
                    additional_headers=headers,
                    open_timeout=self._http.timeout.connect,
                ) as socket:
                    for message in socket:
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
            time.sleep(self.retries.wait(failures))

    def _run(self, call: Call[T]) -> T:
        content = call.content()
        for attempt in range(1, self.retries.attempts + 1):
            last = attempt == self.retries.attempts
            try:
                response = self._http.request(
                    call.method, call.path, params=call.params, content=content,
                    headers=call.headers,
                )  # fmt: skip
            except httpx.TransportError as exc:
                if last:
                    raise ConnectionFailed(f"{call.method} {self.url}{call.path}: {exc!r}") from exc
                time.sleep(self.retries.wait(attempt))
                continue
            if calls.should_retry(response) and not last:
                time.sleep(self.retries.wait(attempt, response.headers.get("retry-after")))
                continue
            return calls.answer(response, call)
        raise AssertionError("unreachable: the last attempt returns or raises")
