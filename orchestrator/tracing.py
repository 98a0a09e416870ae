"""W3C Trace Context: read, continue and start ``traceparent`` values.

A traceparent is ``version-traceid-parentid-flags`` (``00-<32 hex>-<16 hex>-<2 hex>``). It
arrives on HTTP requests as a header and on CloudEvents as the distributed tracing
extension, rides on the actor's ``Event``, and goes out on every message the event's turn
sends, so one order's path through the orchestrator, the kitchen and the delivery shares
one trace id.

Each hop that takes a message in (the edge, the inbox, the relay, a service) continues the
trace with a span id of its own; a missing or invalid value starts a new trace, as the
spec asks, and is never an error. Ids are made here but only called for by those hops,
never by a turn, which must stay deterministic.
"""

from __future__ import annotations

import random
import re

VERSION = "00"
# version, trace id, parent id, flags; a later version may append "-" and more fields.
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")
SAMPLED = 0x01


def parse(value: str | None) -> tuple[str, int] | None:
    """The trace id and flags of a valid traceparent, or None (then start a new trace)."""
    found = ids(value)
    return None if found is None else (found[0], found[2])


def ids(value: str | None) -> tuple[str, str, int] | None:
    """The trace id, parent (span) id and flags of a valid traceparent, or None."""
    if value is None:
        return None
    found = _TRACEPARENT.fullmatch(value.strip())
    if found is None:
        return None
    version, trace_id, parent_id, flags, rest = found.groups()
    if version == "ff" or (version == VERSION and rest is not None):
        return None
    if trace_id == "0" * 32 or parent_id == "0" * 16:
        return None
    return trace_id, parent_id, int(flags, 16)


def continued(*candidates: str | None) -> str:
    """This hop's traceparent: the first valid candidate's trace with a new span id, or a
    new trace when none is valid."""
    for candidate in candidates:
        parsed = parse(candidate)
        if parsed is not None:
            trace_id, flags = parsed
            # Only the sampled flag is defined in version 00; others are not passed on.
            return _format(trace_id, flags & SAMPLED)
    # Mersenne Twister, as for event ids: ids need to be unique, not unguessable, and
    # os.urandom costs a system call per request.
    return _format(f"{random.getrandbits(128):032x}", SAMPLED)


def header(values: list[str]) -> str | None:
    """The traceparent of an HTTP request's headers; a repeated header is invalid."""
    return values[0] if len(values) == 1 else None


def trace_id(traceparent: str | None) -> str | None:
    """The trace id of a traceparent, for log lines."""
    parsed = parse(traceparent)
    return parsed[0] if parsed is not None else None


def _format(trace_id: str, flags: int) -> str:
    span_id = random.getrandbits(64) or 1  # an all-zero span id is invalid
    return f"{VERSION}-{trace_id}-{span_id:016x}-{flags:02x}"
