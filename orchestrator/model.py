"""Plain values that cross module boundaries: events, snapshots, journal entries, messages.

Values are frozen and hold only JSON-ready data, so any of them can be stored, sent or
compared without knowing who made it. Nothing here does I/O or reads a clock.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from json.encoder import c_make_encoder, encode_basestring_ascii  # type: ignore[attr-defined]
from typing import Any, TypeGuard

JsonObject = dict[str, Any]


def _json_encoder() -> Callable[[Any], str]:
    """Compact JSON for everything the orchestrator stores or serves; allow_nan=False: NaN
    and the infinities are not JSON, so they raise ValueError instead of being stored.

    ``JSONEncoder.encode`` builds the C encoder anew on every call, which costs more than
    encoding a small context; this one is built once (its answers are the same). Built
    without the circular-reference check, whose memo cannot be shared between calls: a
    cycle raises RecursionError instead of ValueError.
    """
    encoder = json.JSONEncoder(separators=(",", ":"), allow_nan=False)
    if c_make_encoder is None:  # an interpreter without json's C accelerator
        return encoder.encode
    encode = c_make_encoder(
        None, encoder.default, encode_basestring_ascii, None, ":", ",", False, False, False
    )

    def to_json(value: Any) -> str:
        if isinstance(value, str):
            return encode_basestring_ascii(value)
        return "".join(encode(value, 0))

    return to_json


to_json = _json_encoder()


# Data from outside nests at most this deep. Deeper data would be accepted once and then
# break every later turn of its order (copying the context recurses once per level).
MAX_DEPTH = 32


def nested_deeper(value: object, limit: int = MAX_DEPTH, level: int = 1) -> bool:
    """Whether ``value`` (parsed JSON) nests deeper than ``limit`` levels."""
    if level > limit:
        return True
    if isinstance(value, dict):
        return any(nested_deeper(v, limit, level + 1) for v in value.values())
    if isinstance(value, list):
        return any(nested_deeper(v, limit, level + 1) for v in value)
    return False


@lru_cache(maxsize=4096)
def names_json(names: tuple[str, ...]) -> str:
    """A configuration or a list of next events as JSON. A chart has few distinct ones and
    every turn writes both, so each is encoded once."""
    return to_json(names)


# Events a state's timer fires: ``after.<state>.<delay>``.
TIMER_EVENT_PREFIX = "after."
# Events whose type starts with one of these come from the platform (an invoke's outcome,
# a timer), never from a client; they are hidden from nextEvents and refused over HTTP.
# ``xstate.`` is XState v5's own namespace (``xstate.done.actor.<id>``, ...).
PLATFORM_EVENT_PREFIXES = ("done.", "error.", "xstate.", TIMER_EVENT_PREFIX)


# The first event of an order whose chart has no ``create_event``: the order is created by
# its start alone (the initial states' entry actions, an invoke's src), which the journal
# records as version 1 under XState's name for the event a machine starts with. The
# platform's own, as its prefix says: no one sends it.
START_EVENT = "xstate.init"


# Where an event came from (``Event.origin``). The events a chart keeps for its services
# (``serviceEvents``) are taken only from a service's own channels: a broker message, or a
# webhook signed with the webhook secret. A client's command or an unsigned webhook is not one.
CLIENT_ORIGIN = "http"
BROKER_ORIGIN = "broker"
SIGNED_WEBHOOK_ORIGIN = "webhook"
SERVICE_ORIGINS = frozenset({BROKER_ORIGIN, SIGNED_WEBHOOK_ORIGIN})
# The key of a chart document (YAML or XState) that lists those events.
SERVICE_EVENTS = "serviceEvents"
# A document's initial data (XState's machine ``context``), merged over the Context
# class's ``fields``; and the context attribute naming the invoke whose src is running.
CONTEXT = "context"
# An invoke's src runs between two actions: one setting the context's ``current_invoke`` to
# the invoke's id (``<prefix><n>``, added to the Context class by the chart loader from the
# document's ``INVOKE_IDS``) and ``END_INVOKE``, a Context method clearing it.
INVOKE_IDS = "invokeIds"
# A document's names for platform events, internal name -> the author's: an XState
# machine's invoke outcomes are ``done.invoke.<id>``/``error.invoke.<id>`` inside, and
# the version's names (v5 ``xstate.done.actor.<id>``, v4 ``error.platform.<id>``) in
# the order's history and the chart's graph.
EVENT_NAMES = "eventNames"
# The names a document's actions and guards take in its native form where the author's
# cannot be used there, internal name -> the author's: an XState action named as one of
# the chart's events (python-statemachine would send the event instead of calling the
# action). The chart loader adds each internal name to the Context class, bound to
# what the author's name names.
# The private context field where an order keeps what its chart's history states recorded:
# history state id -> the ids of the states it remembers.
HISTORY_FIELD = "statechart_history"
ALIASES = "aliases"
ALIAS_PREFIX = "xstate_name_"
# The keyword arguments of XState's parameterised actions and guards (``params``) and of
# an invoke's src given input (``input``), by internal name (one of ``ALIASES``): the chart
# loader binds that name to the author's method called with a copy of them.
PARAMS = "params"
# The names of a document's states whose ids differ from them, id -> name: an XState
# state whose name another state also has (``idle`` in two regions), or with a space in
# it, has its dotted path for id. The paths clients see are made of the names.
STATE_NAMES = "stateNames"
INVOKE_ACTION_PREFIX = "begin_invoke_"
END_INVOKE = "end_invoke"
# The state standing for an XState machine's root when the root has transitions, timers,
# actions or parallel regions of its own (a python-statemachine document's top level has
# none): its one top-level state, compound; a parallel root's regions are the children of
# its one child MACHINE_REGIONS (python-statemachine would exit and enter again a parallel
# state whose internal transition targets its descendants, XState does not). Not Python
# names, so no XState state can take them; the paths clients see leave them out.
MACHINE_ROOT = "(machine)"
MACHINE_REGIONS = "(machine regions)"
MACHINE_WRAPPERS = frozenset({MACHINE_ROOT, MACHINE_REGIONS})


# The data of an invoke's outcome names the message it is about under this key.
OUTCOME_MESSAGE_ID = "messageId"


def invoke_outcome(outcome: str, invoke: str) -> str:
    """The event that tells a chart its invoke's outcome: ``done`` or ``error``."""
    return f"{outcome}.invoke.{invoke}"


INVOKE_OUTCOME_PREFIXES = (invoke_outcome("done", ""), invoke_outcome("error", ""))


def outcome_event_id(outcome: str, message_id: str) -> str:
    """The id of an invoke's outcome event: one per outcome of each message."""
    return f"{outcome}:{message_id}"


TIMER_ID_PREFIX = "timer:"
UNKEYED_ID_PREFIX = "auto:"


def timer_event_id(timer_id: str, due_at: float) -> str:
    """The id of a timer's firing. A timer id is set again each time its state is entered;
    the due time tells one setting from another."""
    return f"{TIMER_ID_PREFIX}{timer_id}@{due_at!r}"


# Event ids are one namespace per order, shared by the ids senders choose (Idempotency-Key,
# a CloudEvent's id) and the ids the orchestrator makes. Each of the latter starts with a
# prefix that senders may not use: a sender's id equal to one would pass for that event,
# already applied (an outcome or an unkeyed event), or take the id a later event needs (a
# timer's firing, whose turn would then fail on the journal's unique ids, for ever).
# Rejected: keeping the made ids bare and storing a fingerprint with every event, which
# still lets a sender take a timer's id before it fires. Ids made before the prefixes
# existed stay as they are; they were recorded without a fingerprint, which answers no
# sender's id (see ``Reply.answers``).
PLATFORM_ID_PREFIXES = (
    outcome_event_id("done", ""),
    outcome_event_id("error", ""),
    TIMER_ID_PREFIX,
    UNKEYED_ID_PREFIX,
)


PLATFORM_ID_REFUSAL = (
    f"ids starting with {', '.join(PLATFORM_ID_PREFIXES[:-1])} or {PLATFORM_ID_PREFIXES[-1]}"
    " are the orchestrator's own"
)


def is_platform_id(event_id: str) -> bool:
    return event_id.startswith(PLATFORM_ID_PREFIXES)


def is_platform_event(event_type: str) -> bool:
    return event_type.startswith(PLATFORM_EVENT_PREFIXES)


def invoke_of(event_type: str) -> str | None:
    """The invoke an outcome event is about, or None for any other event."""
    for prefix in INVOKE_OUTCOME_PREFIXES:
        if event_type.startswith(prefix):
            return event_type[len(prefix) :]
    return None


def is_number(value: object) -> TypeGuard[int | float]:
    """A JSON number: an int or a float, not a bool (which Python counts as an int)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def iso(timestamp: float) -> str:
    """Seconds since the epoch as an RFC 3339 UTC string with milliseconds.

    The same text as ``datetime.fromtimestamp(timestamp, UTC).isoformat(timespec=
    "milliseconds")``, which rounds to the microsecond (half to even, as below) and then
    cuts to the millisecond, at a third of its cost: every turn formats a new time, and
    the date and time of day change once a second.
    """
    fraction, whole = math.modf(timestamp)
    micros = round(fraction * 1e6)
    if micros >= 1_000_000:
        micros -= 1_000_000
        whole += 1.0
    elif micros < 0:
        micros += 1_000_000
        whole -= 1.0
    return f"{_iso_second(int(whole))}.{micros // 1000:03d}+00:00"


@lru_cache(maxsize=64)
def _iso_second(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds")[:19]


@dataclass(frozen=True, slots=True)
class Event:
    """One input to an actor.

    ``id`` is the dedupe key: the client's Idempotency-Key, a CloudEvent id, an id derived
    from an outbox message, or one the orchestrator made up. ``keyed`` says the sender chose
    it, so a repeat must be answered with the recorded result, not applied again.
    ``fingerprint`` identifies the request that carried it, so a key reused for a different
    request is told apart from an honest retry. ``traceparent`` is the W3C trace context
    the hop that took the event in gave it; the messages its turn sends carry it on.
    """

    type: str
    data: JsonObject
    id: str
    origin: str = "http"
    fingerprint: str = ""
    keyed: bool = False
    traceparent: str | None = None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """An order as committed: its chart configuration, context and derived view fields.

    The context is kept as the JSON the turn serialized, which the store writes as it is:
    one string per live order instead of a tree of dicts and lists for the garbage
    collector to walk, and a copy no later action can change. ``context`` parses it.

    ``invocations`` pairs each invoke the order has started with the id of the message
    its latest turn sent for it, so that an outcome about an earlier message (before a
    retry) is told apart from the current one's.

    ``context_patched`` counts the bytes of context changes the journal has kept since it
    last kept the whole context (see ``ContextChange``): the turn that would take it past
    the context's own size keeps the whole context instead.
    """

    order_id: str
    chart: str
    configuration: tuple[str, ...]
    state: str
    context_json: str
    next_events: tuple[str, ...]
    version: int
    created_at: float
    updated_at: float
    invocations: tuple[tuple[str, str], ...] = ()
    context_patched: int = 0

    @property
    def context(self) -> JsonObject:
        """The order's data: a new copy, parsed on each call."""
        context: JsonObject = json.loads(self.context_json)
        return context

    def view_json(
        self, context: JsonObject | None = None, private: frozenset[str] = frozenset()
    ) -> bytes:
        """The order view as JSON: the reply of every turn. It is built around the context
        as stored instead of serializing it again. ``context``, when given, is the data
        ``context_json`` was made from, so that it need not be parsed back. The fields
        named in ``private`` (the chart's ``private_fields``) are left out."""
        if context is None:
            context = self.context
        context_json = self.context_json
        if private and not private.isdisjoint(context):
            context_json = to_json({k: v for k, v in context.items() if k not in private})
        return (
            f'{{"id":{to_json(self.order_id)},"chart":{to_json(self.chart)},'
            f'"state":{to_json(self.state)},"status":{to_json(context.get("status"))},'
            f'"items":{to_json(context.get("items", []))},"context":{context_json},'
            f'"nextEvents":{names_json(self.next_events)},"version":{self.version},'
            f'"createdAt":"{iso(self.created_at)}","updatedAt":"{iso(self.updated_at)}"}}'
        ).encode()


@dataclass(frozen=True, slots=True)
class ContextChange:
    """What a turn changed in its order's context, as text: the new context keeps the
    first ``head`` and the last ``tail`` characters of the old one, with ``text`` between.

    The journal keeps this instead of the whole view: an ADD_PIZZA to an order of 2,000
    pizzas keeps its one pizza, not the 2,000. ``whole`` keeps nothing of the old context,
    which is how the journal keeps a context whole. Contexts are ASCII (``to_json`` escapes
    the rest), so characters are bytes.
    """

    head: int
    tail: int
    text: str

    @classmethod
    def whole(cls, context_json: str) -> ContextChange:
        return cls(0, 0, context_json)

    @classmethod
    def between(cls, before: str, after: str) -> ContextChange:
        head = _common_head(before, after)
        longest_tail = min(len(before), len(after)) - head
        tail = _common_head(
            before[len(before) - longest_tail :][::-1], after[len(after) - longest_tail :][::-1]
        )
        return cls(head, tail, after[head : len(after) - tail])


# Characters compared at once while looking for where two contexts start to differ.
_CHUNK = 4096


def _common_head(a: str, b: str) -> int:
    """How many leading characters ``a`` and ``b`` share. Slices are compared a chunk at a
    time, then halved within the chunk that differs: string comparison runs in C, where
    a character-by-character loop (``os.path.commonprefix``) would cost a megabyte's worth
    of Python steps on a large context."""
    n = min(len(a), len(b))
    start = 0
    while start < n and a[start : start + _CHUNK] == b[start : start + _CHUNK]:
        start += _CHUNK
    if start >= n:
        return n
    low, high = start, min(start + _CHUNK, n)  # a[:low] == b[:low], and they differ by high
    while low < high:
        middle = (low + high + 1) // 2
        if a[low:middle] == b[low:middle]:
            low = middle
        else:
            high = middle - 1
    return low


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """One applied event, with the state before and after it."""

    order_id: str
    version: int
    event_id: str
    type: str
    data: JsonObject
    at: float
    state_before: str
    state_after: str
    duration_ms: float

    def as_json(self) -> JsonObject:
        return {
            "version": self.version,
            "eventId": self.event_id,
            "type": self.type,
            "data": self.data,
            "at": iso(self.at),
            "stateBefore": self.state_before,
            "stateAfter": self.state_after,
            "durationMs": self.duration_ms,
        }


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    """A message a turn decided to send; it leaves only after the turn is committed.

    ``body`` is the structured CloudEvent. ``invoke`` names the chart's invoke that waits
    for the publish: its ``done.invoke.<id>`` or ``error.invoke.<id>`` event follows.
    """

    id: str
    order_id: str
    type: str
    routing_key: str
    body: bytes
    invoke: str | None = None


@dataclass(frozen=True, slots=True)
class Timer:
    """An event an order asked to receive at ``due_at`` (stored with its turn).

    ``traceparent`` is that of the turn that set it: the firing continues the trace, so a
    timeout shows in the same trace as the flow it interrupts."""

    id: str
    order_id: str
    due_at: float
    event_type: str
    data: JsonObject = field(default_factory=dict)
    traceparent: str | None = None


@dataclass(frozen=True, slots=True)
class Reply:
    """The recorded answer to an event, returned again for a repeated event id."""

    status: int
    body: bytes
    order_id: str
    fingerprint: str = ""

    def answers(self, event: Event) -> bool:
        """Whether this reply was recorded for the request ``event`` repeats. Fingerprints
        are compared even when empty: an event recorded without one (the orchestrator's
        own) answers no sender's id, which always carries one."""
        return self.fingerprint == event.fingerprint


@dataclass(frozen=True, slots=True)
class TurnRecord:
    """Everything one turn commits, all or nothing, in one transaction."""

    snapshot: Snapshot
    journal: JournalEntry
    outbox: tuple[OutboxMessage, ...]
    reply: Reply
    # The creating event's id when the sender chose it, so a repeated create finds the order.
    created_by: str | None = None
    timers_set: tuple[Timer, ...] = ()
    timers_cancelled: tuple[str, ...] = ()
    # What the journal keeps of the new context; None: all of it.
    context_change: ContextChange | None = None
