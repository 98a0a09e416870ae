"""CloudEvents 1.0 on the wire: build commands and events, parse what arrives.

Every message between the orchestrator and its services is a structured-mode JSON
CloudEvent made and read by the ``cloudevents`` SDK: ``type`` is the seed's name
(``MAKE_PIZZA``, ``PIZZA_READY``...), ``subject`` is the order id, ``source`` names the
sender and ``id`` is the dedupe key. Routing keys separate the two directions on one topic
exchange: ``command.<TYPE>`` goes to a service, ``event.<TYPE>`` comes back.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from orchestrator import tracing
from orchestrator.errors import InvalidInput
from orchestrator.model import (
    MAX_DEPTH,
    PLATFORM_ID_REFUSAL,
    Event,
    JsonObject,
    is_platform_event,
    is_platform_id,
    nested_deeper,
    to_json,
)

COMMAND_PREFIX = "command."
EVENT_PREFIX = "event."
# CloudEvent extension carrying the chart invoke a command answers (e.g. sendOrderToKitchen).
INVOKE_EXTENSION = "invokeid"
# The distributed tracing extension: the W3C trace context of the event's trace.
TRACE_EXTENSION = "traceparent"

_FORMAT = JSONFormat()


class MalformedMessage(ValueError):
    """A message that is not a usable CloudEvent; it goes to the dead-letter queue."""


@dataclass(frozen=True, slots=True)
class Message:
    """The parts of a CloudEvent the orchestrator and its services act on."""

    id: str
    type: str
    source: str
    subject: str
    data: JsonObject
    invoke: str | None = None
    traceparent: str | None = None


def event_from(message: Message, origin: str, traceparent: str | None = None) -> Event:
    """The actor event a CloudEvent from another service carries, keyed by its id.

    The platform's own events (``done.invoke.*``...) are refused: only the orchestrator
    says when its invokes are done; so are ids in the orchestrator's namespace. The event
    continues the trace of ``traceparent`` (the HTTP header of a webhook), else the
    CloudEvent's own, else starts a new one.
    """
    if is_platform_event(message.type):
        raise InvalidInput("type", f"{message.type} is sent by the orchestrator, not by others")
    if is_platform_id(message.id):
        raise InvalidInput("id", PLATFORM_ID_REFUSAL)
    return Event(
        type=message.type,
        data=message.data,
        id=message.id,
        origin=origin,
        fingerprint=message.source,
        keyed=True,
        traceparent=tracing.continued(traceparent, message.traceparent),
    )


def command_key(event_type: str) -> str:
    return COMMAND_PREFIX + event_type


def event_key(event_type: str) -> str:
    return EVENT_PREFIX + event_type


def encode(message: Message, at: float) -> bytes:
    """The structured JSON CloudEvent for ``message``, stamped with time ``at``."""
    attributes: dict[str, Any] = {
        "id": message.id,
        "type": message.type,
        "source": message.source,
        "subject": message.subject,
        "time": datetime.fromtimestamp(at, UTC),
        "datacontenttype": "application/json",
    }
    if message.invoke is not None:
        attributes[INVOKE_EXTENSION] = message.invoke
    if message.traceparent is not None:
        attributes[TRACE_EXTENSION] = message.traceparent
    return _FORMAT.write(CloudEvent(attributes=attributes, data=message.data))


# A structured event's data is one level below its body, and nests at most MAX_DEPTH - 1
# levels (checked below, with a message that names the data); the body gets one more
# level than that, so deep data is named as such.
_MAX_BODY_DEPTH = MAX_DEPTH + 1


def decode(body: bytes) -> Message:
    """Parse a structured JSON CloudEvent; anything unusable raises ``MalformedMessage``."""
    too_deep = f"not a CloudEvent: the body is nested deeper than {_MAX_BODY_DEPTH} levels"
    try:
        raw = json.loads(body)
    except RecursionError as exc:  # not a ValueError: it would be retried, in vain
        raise MalformedMessage(too_deep) from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedMessage(f"not a CloudEvent: the body is not JSON: {exc}") from exc
    # Where the parser gives up differs by version (3.11 below 2,000 levels, 3.13 above),
    # so the bound is ours. Nothing nests deeper than its count of brackets: most bodies
    # need no walk.
    if body.count(b"{") + body.count(b"[") > _MAX_BODY_DEPTH and nested_deeper(
        raw, _MAX_BODY_DEPTH
    ):
        raise MalformedMessage(too_deep)
    if not isinstance(raw, dict):
        raise MalformedMessage("a structured CloudEvent is a JSON object")
    # The SDK fills in a missing id and assumes a missing specversion; we must not, since
    # the id is the dedupe key and only CloudEvents 1.0 is spoken here.
    if raw.get("specversion") != "1.0":
        raise MalformedMessage("specversion must be '1.0'")
    if not isinstance(raw.get("id"), str) or not raw["id"]:
        raise MalformedMessage("the CloudEvent has no id")
    try:
        event = _FORMAT.read(None, body)
    except Exception as exc:  # the SDK raises several types for bad input
        raise MalformedMessage(f"not a CloudEvent: {exc}") from exc
    return from_cloudevent(event)


def from_cloudevent(event: Any) -> Message:
    """The ``Message`` of an SDK event, checking the attributes we rely on."""
    subject = event.get_subject()
    if not subject:
        raise MalformedMessage("the CloudEvent has no subject (the order id)")
    data = event.get_data()
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise MalformedMessage("the CloudEvent's data must be a JSON object")
    try:
        # Python's parser reads NaN and 1e999 (as infinity); no JSON answer could carry them.
        to_json(data)
    except ValueError as exc:
        raise MalformedMessage("the CloudEvent's data holds NaN or an infinite number") from exc
    # As deep as the data of an event in an HTTP body, which is itself one level.
    if nested_deeper(data, MAX_DEPTH - 1):
        raise MalformedMessage(
            f"the CloudEvent's data is nested deeper than {MAX_DEPTH - 1} levels"
        )
    invoke = event.get_extension(INVOKE_EXTENSION)
    traceparent = event.get_extension(TRACE_EXTENSION)
    return Message(
        id=_text("id", event.get_id()),
        type=_text("type", event.get_type()),
        source=_text("source", event.get_source()),
        subject=_text("subject", subject),
        data=data,
        invoke=_text(INVOKE_EXTENSION, invoke) if invoke is not None else None,
        traceparent=_text(TRACE_EXTENSION, traceparent) if traceparent is not None else None,
    )


# The longest attribute taken (an id, a type, a subject...): the id and the subject are keys
# of every journal row.
MAX_ATTRIBUTE_LENGTH = 1024


def _text(name: str, value: object) -> str:
    """An attribute as text that can be stored: JSON's ``\\ud800`` escapes parse to a lone
    surrogate, which no UTF-8 column (nor the broker) can hold, and PostgreSQL's text holds
    no NUL; control characters have no place in an id, a type or a name either."""
    text = str(value)
    try:
        text.encode()
    except UnicodeEncodeError as exc:
        raise MalformedMessage(f"the CloudEvent's {name} is not valid Unicode text") from exc
    if not text.isprintable():
        raise MalformedMessage(f"the CloudEvent's {name} holds control characters")
    if len(text) > MAX_ATTRIBUTE_LENGTH:
        raise MalformedMessage(
            f"the CloudEvent's {name} is longer than {MAX_ATTRIBUTE_LENGTH} characters"
        )
    return text


def traceparent_of(body: bytes) -> str | None:
    """The traceparent of a CloudEvent this process encoded, without the SDK's full parse."""
    value = json.loads(body).get(TRACE_EXTENSION)
    return value if isinstance(value, str) else None
