"""What the server answers, as typed values: an order's view, a history entry, a page of
orders, a chart's summary, a message of an order's WebSocket.

Each is built from the JSON the server sends (``from_json``) and keeps that JSON as
``raw``, so a field a newer server adds is not lost to a client that does not know it yet.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

JsonObject = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Order:
    """An order's view: GET /orders/{id}, and the answer to every command."""

    id: str
    chart: str
    state: str
    status: str | None
    items: list[Any]
    context: JsonObject
    next_events: list[str]
    version: int
    created_at: datetime
    updated_at: datetime
    raw: JsonObject = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, body: JsonObject) -> Order:
        return cls(
            id=body["id"],
            chart=body["chart"],
            state=body["state"],
            status=body.get("status"),
            items=list(body.get("items") or []),
            context=dict(body.get("context") or {}),
            next_events=list(body.get("nextEvents") or []),
            version=int(body["version"]),
            created_at=datetime.fromisoformat(body["createdAt"]),
            updated_at=datetime.fromisoformat(body["updatedAt"]),
            raw=body,
        )


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One applied event of an order's journal (GET /orders/{id}/history)."""

    version: int
    event_id: str
    type: str
    data: JsonObject
    at: datetime
    state_before: str | None
    state_after: str
    duration_ms: float | None
    raw: JsonObject = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, body: JsonObject) -> HistoryEntry:
        return cls(
            version=int(body["version"]),
            event_id=body["eventId"],
            type=body["type"],
            data=dict(body.get("data") or {}),
            at=datetime.fromisoformat(body["at"]),
            state_before=body.get("stateBefore"),
            state_after=body["stateAfter"],
            duration_ms=body.get("durationMs"),
            raw=body,
        )


@dataclass(frozen=True, slots=True)
class OrderPage:
    """One page of GET /orders; ``next_cursor`` fetches the next one (None: the last)."""

    orders: list[Order]
    next_cursor: str | None

    @classmethod
    def from_json(cls, body: JsonObject) -> OrderPage:
        return cls([Order.from_json(o) for o in body["orders"]], body.get("nextCursor"))


@dataclass(frozen=True, slots=True)
class ChartList:
    """GET /charts: the loaded charts' names and the one POST /orders uses by default."""

    names: list[str]
    default: str

    @classmethod
    def from_json(cls, body: JsonObject) -> ChartList:
        return cls(list(body["charts"]), body["default"])


@dataclass(frozen=True, slots=True)
class Transition:
    """A chart's transition; ``event`` None is eventless, ``target`` None runs in place."""

    source: str
    target: str | None
    event: str | None
    internal: bool


@dataclass(frozen=True, slots=True)
class ChartState:
    """A state of a chart, with its sub-states."""

    id: str
    initial: bool
    final: bool
    parallel: bool
    history: str | None
    children: list[ChartState]

    @classmethod
    def from_json(cls, body: JsonObject) -> ChartState:
        return cls(
            id=body["id"],
            initial=bool(body.get("initial")),
            final=bool(body.get("final")),
            parallel=bool(body.get("parallel")),
            history=body.get("history"),
            children=[cls.from_json(c) for c in body.get("children") or []],
        )


@dataclass(frozen=True, slots=True)
class ChartSummary:
    """GET /charts/{name}: what creating an order of the chart takes, and its structure."""

    name: str
    create_fields: dict[str, str]
    creatable: bool
    service_events: list[str]
    states: list[ChartState]
    transitions: list[Transition]
    raw: JsonObject = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, body: JsonObject) -> ChartSummary:
        return cls(
            name=body["name"],
            create_fields=dict(body.get("createFields") or {}),
            creatable=bool(body.get("creatable")),
            service_events=list(body.get("serviceEvents") or []),
            states=[ChartState.from_json(s) for s in body.get("states") or []],
            transitions=[
                Transition(t["source"], t.get("target"), t.get("event"), bool(t.get("internal")))
                for t in body.get("transitions") or []
            ],
            raw=body,
        )


@dataclass(frozen=True, slots=True)
class Update:
    """A message of WS /orders/{id}/ws: the order at ``version`` and the event that made it
    so (None for the first message of a watch that did not ask for ``after``)."""

    version: int
    event: HistoryEntry | None
    order: Order

    @classmethod
    def from_json(cls, body: JsonObject) -> Update:
        event = body.get("event")
        return cls(
            version=int(body["version"]),
            event=None if event is None else HistoryEntry.from_json(event),
            order=Order.from_json(body["view"]),
        )


@dataclass(frozen=True, slots=True)
class ClusterMember:
    """A node of the cluster, as its member row says; ``shards`` as ranges (0-41,43)."""

    node: str
    address: str
    live: bool
    heartbeat_seconds_ago: float
    shards: str


@dataclass(frozen=True, slots=True)
class ShardLease:
    """Who holds a shard, under which epoch, for how many seconds more (None: no one)."""

    shard: int
    owner: str | None
    epoch: int
    expires_in: float | None


@dataclass(frozen=True, slots=True)
class ClusterStatus:
    """GET /cluster: the members and the shard leases, as PostgreSQL has them."""

    node: str
    shard_count: int
    lease_ttl: float
    members: list[ClusterMember]
    shards: list[ShardLease]
    raw: JsonObject

    @classmethod
    def from_json(cls, body: JsonObject) -> ClusterStatus:
        return cls(
            node=body["node"],
            shard_count=int(body["shardCount"]),
            lease_ttl=float(body["leaseTtl"]),
            members=[
                ClusterMember(
                    m["node"],
                    m["address"],
                    bool(m["live"]),
                    float(m["heartbeatSecondsAgo"]),
                    m["shards"],
                )
                for m in body["members"]
            ],
            shards=[
                ShardLease(int(s["shard"]), s.get("owner"), int(s["epoch"]), s.get("expiresIn"))
                for s in body["shards"]
            ],
            raw=body,
        )
