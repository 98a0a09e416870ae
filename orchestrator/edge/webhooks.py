"""POST /events: CloudEvents from any HTTP service, signed with Standard Webhooks.

With one or more secrets set (``ORCHESTRATOR_WEBHOOK_SECRET``), the request must be signed
as ``signatures`` describes, and the signature must cover everything that decides what
the event does: its id, type, subject (the order), source and data. So a signed request
must be a structured CloudEvent (``content-type: application/cloudevents+json``, the whole
event in the body), and its ``webhook-id`` must be the event's ``id``:

- The binary binding is refused (415): its ``ce-*`` headers carry the type, subject and
  id outside the signed body, so a captured request resent with other ``ce-*`` headers
  would become another event on another order. A ``ce-*`` header on a structured request
  is refused too (400), rather than silently ignored.
- The timestamp is within ``--webhook-window`` seconds, and a request sent again within
  the window is the same event id, answered from the record (the journal), not applied
  again.

Only a signed request is a service's: it may send the events a chart keeps for services
(``serviceEvents``, such as PIZZA_READY). Without a secret, both bindings are accepted
unsigned, as any other command, and service events are refused (403).

The event then goes to its order exactly as one from the broker does, deduplicated by its
id; it continues the trace of the request's ``traceparent`` header, else of the event's own.
"""

from __future__ import annotations

import time
from dataclasses import replace

from cloudevents.core.bindings.http import HTTPMessage, from_binary_event
from starlette.requests import Request
from starlette.responses import Response

from orchestrator import signatures, tracing
from orchestrator.edge import observe
from orchestrator.edge.bodies import read_body
from orchestrator.edge.problems import problem
from orchestrator.errors import InvalidInput
from orchestrator.messages import MalformedMessage, Message, decode, event_from, from_cloudevent
from orchestrator.model import CLIENT_ORIGIN, SIGNED_WEBHOOK_ORIGIN
from orchestrator.registry import Registry

STRUCTURED = "application/cloudevents+json"
# The headers of this scheme before Standard Webhooks: named in the refusal, to help.
_OLD_SIGNATURE_HEADER = "x-orchestrator-signature"


async def receive_event(request: Request) -> Response:
    body = await read_body(request)
    keys: tuple[bytes, ...] | None = request.app.state.webhook_keys
    if keys is None:
        message = _parse(request, body)
        origin = CLIENT_ORIGIN
    else:
        refused = _check_signed(request, body, keys, request.app.state.webhook_window)
        if refused is not None:
            return refused
        message = _parse_structured(body)
        if message.id.encode() != request.headers[signatures.ID_HEADER].encode("latin-1"):
            raise InvalidInput(
                signatures.ID_HEADER, f"{signatures.ID_HEADER} must be the CloudEvent's id"
            )
        origin = SIGNED_WEBHOOK_ORIGIN
    registry: Registry = request.app.state.registry
    header = tracing.header(request.headers.getlist("traceparent"))
    event = event_from(message, origin, header)
    if observe.SPAN in request.scope:
        # The request's span takes the event's place in the trace: the turn is its child.
        own = observe.traceparent(request.scope, header, message.traceparent)
        event = replace(event, traceparent=own)
    reply = await registry.send(message.subject, event)
    return Response(reply.body, 200, media_type="application/json")


def _check_signed(
    request: Request, body: bytes, keys: tuple[bytes, ...], window: float
) -> Response | None:
    """The refusal of a request that is not a signed structured CloudEvent, or None."""
    refusal = signatures.refusal(keys, request.headers, body, time.time(), window)
    if refusal is not None:
        if _OLD_SIGNATURE_HEADER in request.headers:
            refusal += f" ({_OLD_SIGNATURE_HEADER} is no longer read: sign with Standard Webhooks)"
        return problem(401, refusal, {"WWW-Authenticate": "Standard-Webhooks"})
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type != STRUCTURED:
        return problem(
            415,
            f"a signed event must be a structured CloudEvent, content-type {STRUCTURED}: "
            "the signature covers the body, and the binary binding's ce-* headers are "
            "outside it",
            field="content-type",
        )
    unsigned = sorted(name for name in request.headers if name.startswith("ce-"))
    if unsigned:
        return problem(
            400,
            f"a signed event carries its attributes in the body; the signature does not "
            f"cover the headers {', '.join(unsigned)}",
            field=unsigned[0],
        )
    return None


def _parse_structured(body: bytes) -> Message:
    try:
        return decode(body)
    except MalformedMessage as exc:
        raise InvalidInput("body", str(exc)) from exc


def _parse(request: Request, body: bytes) -> Message:
    """The CloudEvent of a structured or binary request."""
    headers = {k.lower(): v for k, v in request.headers.items()}
    if not any(name.startswith("ce-") for name in headers):
        return _parse_structured(body)
    try:
        # The SDK makes up an id and assumes a specversion when they are missing; the id
        # is the dedupe key, so both must really be there.
        if not headers.get("ce-id"):
            raise MalformedMessage("the ce-id header is required")
        if headers.get("ce-specversion") != "1.0":
            raise MalformedMessage("ce-specversion must be 1.0")
        event = from_binary_event(HTTPMessage(headers=headers, body=body))
        return from_cloudevent(event)
    except MalformedMessage as exc:
        raise InvalidInput("body", str(exc)) from exc
    except Exception as exc:  # the SDK raises several types for bad input
        raise InvalidInput("body", f"not a CloudEvent: {exc}") from exc
