"""Tests of orchestrator.messages: CloudEvents 1.0 structured JSON in and out.

``decode`` is the gate for everything a service or the broker hands the orchestrator, so
each way a body can be unusable must end as ``MalformedMessage`` (dead-lettered), never as
another exception type or a made-up value.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from orchestrator.errors import InvalidInput
from orchestrator.messages import (
    MalformedMessage,
    Message,
    command_key,
    decode,
    encode,
    event_from,
    event_key,
    traceparent_of,
)

AT = 1_700_000_000.25


def body_with(**changes: Any) -> bytes:
    """A valid structured CloudEvent with some attributes changed (None removes one)."""
    message = Message("m-1", "MAKE_PIZZA", "/orchestrator", "o-1", {"items": [{"name": "a"}]})
    event = json.loads(encode(message, AT))
    for name, value in changes.items():
        if value is None:
            event.pop(name, None)
        else:
            event[name] = value
    return json.dumps(event).encode()


@pytest.mark.parametrize("invoke", [None, "sendOrderToKitchen"])
def test_round_trip(invoke: str | None) -> None:
    """decode(encode(m)) gives m back, with or without the invoke extension."""
    message = Message(
        id="o-1:2:0",
        type="MAKE_PIZZA",
        source="/orchestrator",
        subject="o-1",
        data={"items": [{"name": "hawaii", "size": "L"}], "n": 1},
        invoke=invoke,
    )
    assert decode(encode(message, AT)) == message


def test_traceparent_rides_as_the_distributed_tracing_extension() -> None:
    """A message's traceparent is the CloudEvent's ``traceparent`` attribute, both ways."""
    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    message = Message("m-1", "MAKE_PIZZA", "/orchestrator", "o-1", {}, traceparent=traceparent)
    body = encode(message, AT)
    assert json.loads(body)["traceparent"] == traceparent
    assert decode(body) == message
    assert traceparent_of(body) == traceparent
    assert "traceparent" not in json.loads(encode(Message("m", "T", "/s", "o", {}), AT))


def test_event_from_continues_the_events_trace_or_starts_one() -> None:
    """The actor event keeps the trace id with a span of its own; none starts a trace."""
    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    message = Message("m-1", "PIZZA_READY", "/kitchen", "o-1", {}, traceparent=traceparent)
    event = event_from(message, "broker")
    assert event.traceparent is not None
    assert event.traceparent.split("-")[1] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert event.traceparent != traceparent
    untraced = event_from(Message("m-2", "PIZZA_READY", "/kitchen", "o-1", {}), "broker")
    assert untraced.traceparent is not None


def test_encode_is_a_structured_cloudevent() -> None:
    """The wire form is CloudEvents 1.0 structured JSON with the attributes we rely on."""
    message = Message("m-1", "PIZZA_READY", "/kitchen", "o-1", {"command": "c-1"}, "inv")
    event = json.loads(encode(message, AT))
    assert event["specversion"] == "1.0"
    assert event["id"] == "m-1"
    assert event["type"] == "PIZZA_READY"
    assert event["source"] == "/kitchen"
    assert event["subject"] == "o-1"
    assert event["datacontenttype"] == "application/json"
    assert event["data"] == {"command": "c-1"}
    assert event["invokeid"] == "inv"
    assert event["time"].startswith("2023-11-14T22:13:20.25")


def test_encode_is_deterministic_for_a_given_time() -> None:
    """The same message at the same time encodes to the same bytes (turns are replayable)."""
    message = Message("m-1", "MAKE_PIZZA", "/orchestrator", "o-1", {"a": 1})
    assert encode(message, AT) == encode(message, AT)


def test_missing_data_decodes_as_an_empty_object() -> None:
    """An event with no data carries an empty object, not None."""
    assert decode(body_with(data=None)).data == {}


def test_routing_keys() -> None:
    """Commands and events are told apart by their routing-key prefix."""
    assert command_key("MAKE_PIZZA") == "command.MAKE_PIZZA"
    assert event_key("PIZZA_READY") == "event.PIZZA_READY"


@pytest.mark.parametrize(
    "body",
    [b"", b"not json", b"{", b"[1, 2]", b'"a string"', b"\xff\xfe"],
    ids=["empty", "text", "truncated", "array", "string", "binary"],
)
def test_non_json_or_non_object_is_malformed(body: bytes) -> None:
    """A body that is not a JSON object is MalformedMessage."""
    with pytest.raises(MalformedMessage):
        decode(body)


@pytest.mark.parametrize("subject", [None, ""], ids=["absent", "empty"])
def test_missing_subject_is_malformed(subject: str | None) -> None:
    """The subject is the order id; without it the event cannot be routed to an order."""
    with pytest.raises(MalformedMessage):
        decode(body_with(subject=subject))


@pytest.mark.parametrize("data", [[1, 2], "text", 3], ids=["array", "string", "number"])
def test_data_that_is_not_an_object_is_malformed(data: object) -> None:
    """Event data must be a JSON object, since actions read named fields from it."""
    with pytest.raises(MalformedMessage, match="JSON object"):
        decode(body_with(data=data))


@pytest.mark.parametrize("attribute", ["id", "source", "type", "specversion"])
def test_missing_required_attribute_is_malformed(attribute: str) -> None:
    """CloudEvents 1.0 requires id, source, type and specversion. Without ``id`` there is
    no dedupe key, so it must be refused, never replaced by a made-up one."""
    with pytest.raises(MalformedMessage):
        decode(body_with(**{attribute: None}))


@pytest.mark.parametrize("attribute", ["id", "source", "type", "subject", "invokeid"])
def test_an_attribute_that_is_not_unicode_text_is_malformed(attribute: str) -> None:
    """JSON's escape of a lone surrogate parses to a string no UTF-8 store can hold: the
    message is refused (dead-lettered, or 422 on the webhook), not retried forever."""
    with pytest.raises(MalformedMessage, match=f"{attribute} is not valid Unicode text"):
        decode(body_with(**{attribute: "\ud800"}))


@pytest.mark.parametrize("attribute", ["id", "source", "type", "subject", "invokeid"])
@pytest.mark.parametrize("text", ["a\u0000b", "line\nbreak", "x" * 1025])
def test_an_attribute_with_control_characters_or_too_long_is_malformed(
    attribute: str, text: str
) -> None:
    """A NUL fits no PostgreSQL text column (the turn would fail with 503, retried in vain),
    and an id or a type has no use for control characters or a thousand characters."""
    with pytest.raises(MalformedMessage, match=f"{attribute} (holds control|is longer)"):
        decode(body_with(**{attribute: text}))


def test_data_nested_too_deep_is_malformed() -> None:
    """Data nests no deeper than an event's in an HTTP body (31 levels)."""
    data: dict[str, Any] = {"oven": 3}
    for _ in range(29):
        data = {"a": data}
    assert decode(body_with(data=data)).data == data
    with pytest.raises(MalformedMessage, match="nested deeper than 31 levels"):
        decode(body_with(data={"a": data}))


@pytest.mark.parametrize("depth", [34, 2000, 100_000])
def test_a_body_nested_too_deep_is_malformed_on_every_python(depth: int) -> None:
    """The parser's own limit differs by version (3.11 gives up below 2,000 levels, 3.13
    above); the refusal does not: the same message, never a RecursionError."""
    with pytest.raises(MalformedMessage, match="body is nested deeper than 33 levels"):
        decode(b"[" * depth + b"]" * depth)


@pytest.mark.parametrize(
    "event_id",
    ["done:o-1:3:0", "error:o-1:3:0", "timer:o-1/after.idle.3@1765000000.25", "auto:0-1"],
)
def test_an_id_in_the_orchestrators_namespace_is_refused(event_id: str) -> None:
    """Another service's event must not take the id of an invoke's outcome or of an event
    sent without a key, which would then pass for it, already applied, nor the id of a
    timer's firing, which would then fail for ever (the webhook answers 422, the inbox
    dead-letters)."""
    message = decode(body_with(id=event_id))
    with pytest.raises(InvalidInput, match="orchestrator's own") as refused:
        event_from(message, "webhook")
    assert refused.value.field == "id"
