"""The cluster's endpoints: GET /cluster for people, POST /cluster/turns for other nodes.

``POST /cluster/turns`` takes a request another node forwarded here because this node
serves its order's shard (``cluster.forward``): an event already checked at the node that
took it in, with its id and fingerprint, signed with the cluster's key (``cluster.signing``),
so it takes no bearer token. It is applied here and never forwarded again: a node that does
not serve the shard (any more) answers ``421`` naming the owner it knows. Left out of the
OpenAPI document: it is the nodes' own, not part of the API.

``GET /cluster`` shows the members, and which node holds which shard under which epoch,
as PostgreSQL has them; a server on SQLite is not in a cluster and answers 404.
"""

from __future__ import annotations

import json
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from orchestrator.cluster.forward import FINGERPRINT_HEADER, ORDER_HEADER
from orchestrator.cluster.node import ClusterNode
from orchestrator.cluster.signing import SIGNATURE_HEADER, refusal
from orchestrator.edge.bodies import read_body
from orchestrator.edge.problems import problem
from orchestrator.errors import InvalidInput
from orchestrator.model import BROKER_ORIGIN, CLIENT_ORIGIN, SIGNED_WEBHOOK_ORIGIN, Event
from orchestrator.registry import Registry

JSON = "application/json"
# Where a forwarded event may have come in: the edge's, the broker's, or the node's own.
ORIGINS = frozenset({CLIENT_ORIGIN, SIGNED_WEBHOOK_ORIGIN, BROKER_ORIGIN, "relay", "timer"})
FORWARD_FACTOR = 8


async def status(request: Request) -> Response:
    node: ClusterNode | None = request.app.state.cluster
    if node is None:
        return problem(404, "this server is not in a cluster: it keeps its orders in SQLite")
    return JSONResponse(await node.status())


async def receive_turn(request: Request) -> Response:
    node: ClusterNode | None = request.app.state.cluster
    if node is None:
        return problem(404, "this server is not in a cluster")
    # An event of up to --max-body-bytes, encoded again with its id, fingerprint and trace
    # (a number such as 1e9 comes out longer than it went in).
    raw = await read_body(request, FORWARD_FACTOR * request.app.state.max_body_bytes + 65536)
    why = refusal(node.key, request.headers.get(SIGNATURE_HEADER), raw, time.time())
    if why is not None:
        return problem(401, why, field=SIGNATURE_HEADER)
    try:
        call = json.loads(raw)
        event = _event(call["event"])
        registry: Registry = request.app.state.registry
        if call["kind"] == "send":
            reply = await registry.send(
                _text(call, "order"), event, if_match=_number(call, "ifMatch"), forwarded=True
            )
        elif call["kind"] == "create":
            shard = _number(call, "shard")
            if shard is None or not 0 <= shard < node.shards:
                raise InvalidInput("shard", "shard must be one of the cluster's")
            reply = await registry.create(
                event, chart=_text(call, "chart"), shard=shard, forwarded=True
            )
        else:
            raise InvalidInput("kind", "kind must be send or create")
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidInput("body", f"not a forwarded turn: {exc!r}") from exc
    headers = {ORDER_HEADER: reply.order_id, FINGERPRINT_HEADER: reply.fingerprint}
    return Response(reply.body, reply.status, headers=headers, media_type=JSON)


def _event(fields: Any) -> Event:
    data = fields["data"]
    traceparent = fields["traceparent"]
    if not isinstance(data, dict) or fields["origin"] not in ORIGINS:
        raise ValueError("data must be an object and origin one of the known ones")
    if traceparent is not None and not isinstance(traceparent, str):
        raise ValueError("traceparent must be text")
    return Event(
        type=_text(fields, "type"),
        data=data,
        id=_text(fields, "id"),
        origin=fields["origin"],
        fingerprint=_text(fields, "fingerprint"),
        keyed=fields["keyed"] is True,
        traceparent=traceparent,
    )


def _text(fields: dict[str, Any], name: str) -> str:
    value = fields[name]
    if not isinstance(value, str):
        raise ValueError(f"{name} must be text")
    return value


def _number(fields: dict[str, Any], name: str) -> int | None:
    value = fields.get(name)
    if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
        raise ValueError(f"{name} must be a whole number")
    return value
