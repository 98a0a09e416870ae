"""Carry a request to the node that owns its order's shard, and its answer back.

Any node takes any request. One whose order's shard another node serves sends the event
(already checked and given its id and fingerprint) to that node's ``POST /cluster/turns``,
signed, and answers with what comes back: the reply the owner's actor recorded, byte for
byte, or its problem document. The owner never forwards again (a hop bound of one): if it
no longer serves the shard it answers ``421`` with the owner it knows, and this node reads
the route table again and tries once more, up to ``ATTEMPTS`` times.

While a shard has no owner (its node died and its lease has not run out), a request waits,
reading the route table every ``RETRY_PAUSE``, for up to ``ROUTE_WAIT`` seconds, then gets
``503`` with ``Retry-After``. A request is sent again only when it is known not to have
been applied: the connection was refused, or the owner answered 421 or ``ShardMoved``. A
connection lost after the request went out is an unknown outcome, answered 503: the client
retries it with its Idempotency-Key, which the owner answers from its journal.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from orchestrator.cluster.node import ClusterNode
from orchestrator.cluster.signing import SIGNATURE_HEADER, sign
from orchestrator.cluster.wire import Answer, Lost, Peers, Unreachable
from orchestrator.errors import RemoteProblem, ShardMoved, Unavailable
from orchestrator.metrics import Metrics
from orchestrator.model import Event, Reply

TURNS_PATH = "/cluster/turns"
ORDER_HEADER = "orchestrator-order-id"
FINGERPRINT_HEADER = "orchestrator-fingerprint"
ROUTE_WAIT = 5.0
RETRY_PAUSE = 0.2
ATTEMPTS = 4

Local = Callable[[], Awaitable[Reply]]


def event_json(event: Event) -> dict[str, Any]:
    return {
        "type": event.type,
        "data": event.data,
        "id": event.id,
        "origin": event.origin,
        "fingerprint": event.fingerprint,
        "keyed": event.keyed,
        "traceparent": event.traceparent,
    }


class Forwarder:
    """The registry's way to the other nodes (``registry.Cluster``)."""

    def __init__(self, node: ClusterNode, metrics: Metrics) -> None:
        self.node = node
        self._metrics = metrics
        # An owner takes as long as a turn takes; a connection, no longer than on a LAN.
        self._peers = Peers(connect_timeout=2.0, timeout=30.0)

    async def close(self) -> None:
        await self._peers.close()

    # -- what the registry asks ------------------------------------------------------

    @property
    def shards(self) -> int:
        return self.node.shards

    def shard_of(self, text: str) -> int:
        return self.node.shard_of(text)

    def serves(self, shard: int) -> bool:
        return self.node.serves(shard)

    def served(self) -> list[int]:
        return self.node.served()

    def moved(self, shard: int) -> ShardMoved:
        return self.node.moved(shard)

    async def send(self, order_id: str, event: Event, if_match: int | None, local: Local) -> Reply:
        payload = {"kind": "send", "order": order_id, "ifMatch": if_match}
        return await self._call(self.shard_of(order_id), payload, event, local)

    async def create(self, shard: int, event: Event, chart: str, local: Local) -> Reply:
        payload = {"kind": "create", "shard": shard, "chart": chart}
        return await self._call(shard, payload, event, local)

    # -- the call --------------------------------------------------------------------

    async def _call(self, shard: int, payload: dict[str, Any], event: Event, local: Local) -> Reply:
        body = json.dumps(
            {**payload, "event": event_json(event)}, separators=(",", ":"), ensure_ascii=False
        )
        content = body.encode()
        deadline = time.monotonic() + ROUTE_WAIT
        attempts = 0
        while True:
            if self.node.serves(shard):
                return await local()  # taken here meanwhile
            owner = self.node.owner(shard)
            if owner is not None and attempts < ATTEMPTS:
                attempts += 1
                answer = await self._post(owner, content)
                if answer is not None:
                    return answer
            if time.monotonic() >= deadline or attempts >= ATTEMPTS:
                self._metrics.forwards.labels("no_owner").inc()
                raise ShardMoved(shard)
            await asyncio.sleep(RETRY_PAUSE)
            await self.node.refresh()

    async def _post(self, owner: str, content: bytes) -> Reply | None:
        """The owner's answer; None when it was not applied there and may be sent again."""
        headers = {
            "content-type": "application/json",
            SIGNATURE_HEADER: sign(self.node.key, content, time.time()),
            # Any node's name for itself: the owner's Host check passes whatever address
            # this node reached it by.
            "host": "localhost",
        }
        try:
            answer = await self._peers.post(owner, TURNS_PATH, content, headers)
        except Unreachable:
            self._metrics.forwards.labels("unreachable").inc()
            return None  # never sent: the owner is gone; the route table will say who next
        except Lost as exc:
            self._metrics.forwards.labels("failed").inc()
            raise Unavailable(f"the node owning the order did not answer ({exc})") from exc
        if 200 <= answer.status < 300:
            self._metrics.forwards.labels("forwarded").inc()
            return Reply(
                answer.status,
                answer.body,
                answer.headers.get(ORDER_HEADER, ""),
                answer.headers.get(FINGERPRINT_HEADER, ""),
            )
        problem = _problem(answer)
        if answer.status == 421 or problem.get("error") == "ShardMoved":
            self._metrics.forwards.labels("misdirected").inc()
            return None  # refused before anything was applied
        self._metrics.forwards.labels("forwarded").inc()
        raise RemoteProblem(answer.status, problem)


def _problem(answer: Answer) -> dict[str, Any]:
    try:
        problem = json.loads(answer.body)
    except ValueError:
        problem = None
    if not isinstance(problem, dict):
        text = answer.body[:200].decode(errors="replace")
        return {"status": answer.status, "detail": text or f"the owner answered {answer.status}"}
    return problem
