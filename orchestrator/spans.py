"""Spans: the record of one hop's work, for an exporter to send (the ``otel`` extra).

A span is recorded with the ids ``tracing`` already makes and carries: its own
traceparent is the one its hop made with ``tracing.continued`` (and put on what it sent
on), its parent the one the hop continued. So the spans of an order link up across
processes exactly as its messages do, and nothing changes on the wire. The rule that keeps
the tree whole: every traceparent a hop makes while spans are on names a span it records.

Recording is optional. With no recorder (the default, and always without the ``otel``
extra) callers skip even the clock reads, so tracing costs nothing when it is off. Nothing
here imports OpenTelemetry; ``orchestrator.otel`` does, and only when an exporter is set.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, Protocol

# What the span stands for, as OpenTelemetry's SpanKind: an HTTP request served, a message
# taken in, a message sent, or work inside the process (a turn, a timer firing).
Kind = Literal["server", "consumer", "producer", "internal"]
Attributes = Mapping[str, str | int | float | bool]


@dataclass(frozen=True, slots=True)
class Span:
    name: str
    kind: Kind
    # This span's own context: the traceparent its hop made and carried on.
    traceparent: str
    # The traceparent the hop continued; None, invalid or of another trace: a root span.
    parent: str | None
    start_ns: int
    end_ns: int
    attributes: Attributes
    # Set when the work failed (not when it was refused as asked): the span's error status.
    error: str | None = None


class Spans(Protocol):
    def record(self, span: Span) -> None:
        """Queue a finished span for export; never blocks and never raises."""

    def close(self) -> None:
        """Export what is queued (with a timeout) and stop."""
