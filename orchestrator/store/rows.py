"""Stored rows back into values, the same for every adapter.

Both adapters keep the same columns in the same text forms (JSON text for lists, context
and event data), so that a row read back gives the value that was committed, equal to
the last bit, and a view rebuilt from the journal is the turn's own answer byte for byte.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

from orchestrator.model import JournalEntry, Snapshot, Timer

# Columns of a journal entry, in the order ``entry_of`` reads them.
ENTRY_COLUMNS = "version, event_id, type, data, at, state_before, state_after, duration_ms"
TIMER_COLUMNS = "id, order_id, due_at, event_type, data, traceparent"
SNAPSHOT_COLUMNS = (
    "id, chart, configuration, state, context, next_events, version, created_at, updated_at,"
    " invocations, context_patched"
)


class Row(Protocol):
    """A row as a driver returns it (a tuple, an asyncpg Record): columns by position."""

    def __getitem__(self, index: int, /) -> Any: ...


def snapshot_of(row: Row) -> Snapshot:
    """A snapshot from the ``SNAPSHOT_COLUMNS`` at the start of ``row``."""
    return Snapshot(
        order_id=row[0],
        chart=row[1],
        configuration=tuple(json.loads(row[2])),
        state=row[3],
        context_json=row[4],
        next_events=tuple(json.loads(row[5])),
        version=row[6],
        created_at=row[7],
        updated_at=row[8],
        invocations=tuple((invoke, message) for invoke, message in json.loads(row[9])),
        context_patched=row[10],
    )


def entry_of(order_id: str, row: Row) -> JournalEntry:
    """A journal entry from the ``ENTRY_COLUMNS`` at the start of ``row``."""
    return JournalEntry(
        order_id=order_id,
        version=row[0],
        event_id=row[1],
        type=row[2],
        data=json.loads(row[3]),
        at=row[4],
        state_before=row[5],
        state_after=row[6],
        duration_ms=row[7],
    )


def timer_of(row: Row) -> Timer:
    """A timer from the ``TIMER_COLUMNS`` of ``row``."""
    return Timer(
        id=row[0],
        order_id=row[1],
        due_at=row[2],
        event_type=row[3],
        data=json.loads(row[4]),
        traceparent=row[5],
    )


def rebuilt_view(
    order: Snapshot,
    entry: JournalEntry,
    next_events: str,
    context: bytes | bytearray,
    private: frozenset[str],
) -> bytes:
    """The view a turn answered with, from its journal entry, the events allowed after it
    and the context after it: the same bytes, since ``view_json`` builds a view from these
    alone (and the chart's private fields, which it leaves out)."""
    return Snapshot(
        order_id=order.order_id,
        chart=order.chart,
        configuration=(),
        state=entry.state_after,
        context_json=bytes(context).decode(),
        next_events=tuple(json.loads(next_events)),
        version=entry.version,
        created_at=order.created_at,
        updated_at=entry.at,
    ).view_json(private=private)
