"""POST /events: CloudEvents from any HTTP service, signed with HMAC-SHA256.

The signature covers the timestamp and the raw body, so neither can be changed in transit,
and a timestamp outside the replay window is refused, so a captured request cannot be
sent again later:

    X-Orchestrator-Timestamp: <unix seconds>
    X-Orchestrator-Signature: sha256=<hex of HMAC-SHA256(secret, "<timestamp>." + body)>

Both HTTP bindings of CloudEvents are accepted and parsed with the SDK: structured (the
whole event as the JSON body) and binary (``ce-*`` headers, the data as the body). The
event then goes to its order exactly as one from the broker does, deduplicated by its id;
it continues the trace of the request's ``traceparent`` header, else of the event's own.
Without a configured secret (``ORCHESTRATOR_WEBHOOK_SECRET``) no signature is asked for.
"""

from __future__ import annotations

import hashlib
import hmac
import time

from cloudevents.core.bindings.http import HTTPMessage, from_binary_event
from starlette.requests import Request
from starlette.responses import Response

from orchestrator import tracing
from orchestrator.edge.bodies import read_body
from orchestrator.edge.problems import problem
from orchestrator.errors import InvalidInput
from orchestrator.messages import MalformedMessage, Message, decode, event_from, from_cloudevent
from orchestrator.numbers import whole_number
from orchestrator.registry import Registry

TIMESTAMP_HEADER = "x-orchestrator-timestamp"
SIGNATURE_HEADER = "x-orchestrator-signature"


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The signature header's value for ``body`` sent at ``timestamp``."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


async def receive_event(request: Request) -> Response:
    body = await read_body(request)
    secret: str | None = request.app.state.webhook_secret
    if secret is not None:
        refusal = _check_signature(request, body, secret, request.app.state.webhook_window)
        if refusal is not None:
            return problem(401, refusal, {"WWW-Authenticate": "HMAC-SHA256"})
    message = _parse(request, body)
    registry: Registry = request.app.state.registry
    traceparent = tracing.header(request.headers.getlist("traceparent"))
    reply = await registry.send(message.subject, event_from(message, "webhook", traceparent))
    return Response(reply.body, 200, media_type="application/json")


def _check_signature(request: Request, body: bytes, secret: str, window: float) -> str | None:
    """Why the request's signature is not acceptable, or None when it is."""
    timestamp = request.headers.get(TIMESTAMP_HEADER)
    signature = request.headers.get(SIGNATURE_HEADER)
    if timestamp is None or signature is None:
        return f"the {TIMESTAMP_HEADER} and {SIGNATURE_HEADER} headers are required"
    seconds = whole_number(timestamp)
    if seconds is None:
        return f"{TIMESTAMP_HEADER} must be Unix seconds"
    if abs(time.time() - seconds) > window:
        return f"the timestamp is outside the {int(window)} s replay window"
    # As bytes: compare_digest refuses a str with non-ASCII characters (headers are Latin-1).
    if not hmac.compare_digest(sign(secret, timestamp, body).encode(), signature.encode("latin-1")):
        return "the signature does not match the body and timestamp"
    return None


def _parse(request: Request, body: bytes) -> Message:
    """The CloudEvent of a structured or binary request."""
    headers = {k.lower(): v for k, v in request.headers.items()}
    try:
        if any(name.startswith("ce-") for name in headers):
            # The SDK makes up an id and assumes a specversion when they are missing;
            # the id is the dedupe key, so both must really be there.
            if not headers.get("ce-id"):
                raise MalformedMessage("the ce-id header is required")
            if headers.get("ce-specversion") != "1.0":
                raise MalformedMessage("ce-specversion must be 1.0")
            event = from_binary_event(HTTPMessage(headers=headers, body=body))
            return from_cloudevent(event)
        return decode(body)
    except MalformedMessage as exc:
        raise InvalidInput("body", str(exc)) from exc
    except Exception as exc:  # the SDK raises several types for bad input
        raise InvalidInput("body", f"not a CloudEvent: {exc}") from exc
