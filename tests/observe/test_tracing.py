"""Tests of orchestrator.tracing: W3C traceparent values read, continued and started.

Invalid values must never be an error: they are ignored and a new trace starts, as the
spec asks of a receiver.
"""

from __future__ import annotations

import pytest

from orchestrator import tracing

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
VALID = f"00-{TRACE}-00f067aa0ba902b7-01"


@pytest.mark.parametrize(
    "value",
    [
        VALID,
        f"00-{TRACE}-00f067aa0ba902b7-00",
        f" {VALID} ",  # optional whitespace around a header value
        f"cc-{TRACE}-00f067aa0ba902b7-01-what-the-future-brings",  # a later version
    ],
)
def test_valid_values_are_continued_with_a_new_span(value: str) -> None:
    """The trace id carries on; the span id is this hop's own."""
    assert tracing.trace_id(value) == TRACE
    continued = tracing.continued(value)
    assert tracing.trace_id(continued) == TRACE
    version, _, span, _ = continued.split("-")
    assert version == "00"
    assert span != "00f067aa0ba902b7"


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "garbage",
        f"00-{TRACE.upper()}-00f067aa0ba902b7-01",  # hex must be lowercase
        f"00-{'0' * 32}-00f067aa0ba902b7-01",  # all-zero trace id
        f"00-{TRACE}-{'0' * 16}-01",  # all-zero parent id
        f"ff-{TRACE}-00f067aa0ba902b7-01",  # version ff is forbidden
        f"00-{TRACE}-00f067aa0ba902b7-01-extra",  # version 00 has exactly four fields
        f"00-{TRACE[:-1]}-00f067aa0ba902b7-01",
        f"00_{TRACE}_00f067aa0ba902b7_01",
    ],
)
def test_invalid_values_start_a_new_trace(value: str | None) -> None:
    assert tracing.parse(value) is None
    started = tracing.continued(value)
    assert tracing.parse(started) is not None
    assert tracing.trace_id(started) != TRACE


def test_the_first_valid_candidate_wins() -> None:
    """A webhook's header comes before the event's own extension, unless it is invalid."""
    other = "0af7651916cd43dd8448eb211c80319c"
    extension = f"00-{other}-b7ad6b7169203331-01"
    assert tracing.trace_id(tracing.continued(VALID, extension)) == TRACE
    assert tracing.trace_id(tracing.continued("bad", extension)) == other


def test_only_the_sampled_flag_is_passed_on() -> None:
    assert tracing.continued(f"00-{TRACE}-00f067aa0ba902b7-ff").endswith("-01")
    assert tracing.continued(f"00-{TRACE}-00f067aa0ba902b7-02").endswith("-00")


def test_new_traces_differ() -> None:
    assert len({tracing.trace_id(tracing.continued(None)) for _ in range(100)}) == 100


def test_a_repeated_header_is_invalid() -> None:
    assert tracing.header([VALID]) == VALID
    assert tracing.header([]) is None
    assert tracing.header([VALID, VALID]) is None
