"""Apply one event to one order: a value in, a value out.

``apply`` takes the order's live machine (the in-memory form of its last committed
snapshot), the event and the time the actor read for it, and returns the ``TurnRecord`` to
commit: the new snapshot, the journal entry, the outbox messages and the reply. It does no
I/O and reads no clock, so the same input always gives the same record.

A refusal raises an ``OrchestratorError`` (the event is unknown, not allowed now, an
action refused it, or the order would grow past its ``Limits``). After any exception the
machine may be half-changed: the caller must throw it away and rebuild it from the
snapshot, which is how a turn stays all or nothing.

The turn also decides what the journal keeps of the new context: what the turn changed
(``ContextChange``), or the whole context once the changes kept since it was last whole
add up to its size. So the journal grows with what the turns changed, and any version's
context is rebuilt from the last whole one by applying changes that add up to less than
that context (see ``store/sqlite.py``).
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass

import statemachine
from statemachine.exceptions import TransitionNotAllowed

from orchestrator.charts import Chart, Machine
from orchestrator.documents import MAX_DELAY, TimerSpec
from orchestrator.errors import (
    ChartLoop,
    EventNotAllowed,
    InvalidInput,
    OrchestratorError,
    OrderTooLarge,
    Refused,
    ServiceOnly,
    StaleOutcome,
    UnknownEvent,
)
from orchestrator.messages import Message, command_key, encode
from orchestrator.model import (
    OUTCOME_MESSAGE_ID,
    SERVICE_ORIGINS,
    START_EVENT,
    ContextChange,
    Event,
    JournalEntry,
    JsonObject,
    OutboxMessage,
    Reply,
    Snapshot,
    Timer,
    TurnRecord,
    invoke_of,
    is_number,
    iso,
    to_json,
)

log = logging.getLogger(__name__)

SOURCE = "/orchestrator"
# Where python-statemachine's own code lies, to tell its errors from the chart's.
_STATEMACHINE_CODE = os.path.dirname(statemachine.__file__) + os.sep


@dataclass(frozen=True, slots=True)
class Limits:
    """How large one order may grow (``--max-order-bytes``, ``--max-order-events``).

    Every view of an order carries its whole context, so a context without a bound makes
    every reply, broadcast and replayed message as large as the client cares to make it;
    and each event is a journal row kept for the order's life.
    """

    max_order_bytes: int
    max_order_events: int


def check(chart: Chart, machine: Machine, event: Event, version: int) -> None:
    """Refuse an event the chart does not know, one only a service may send that came from
    elsewhere, or one not allowed in the current state."""
    event_id = chart.event_id(event.type)
    if event_id not in chart.events:
        known = sorted(chart.event_name(e) for e in chart.events)
        raise UnknownEvent(event.type, chart.name, known)
    if event.type in chart.service_events and event.origin not in SERVICE_ORIGINS:
        raise ServiceOnly(event.type)
    if event_id not in machine.allowed_events():
        raise EventNotAllowed(
            event.type, machine.state_path(), list(machine.next_events()), version
        )


def start(chart: Chart, order_id: str, event: Event) -> Machine:
    """A new order's machine, in its initial states, for ``event`` to create.

    The initial states' entry actions run here; one that fails refuses the create, as a
    failing action refuses any turn (no order is left behind)."""
    try:
        return chart.start(order_id)
    except ChartLoop as exc:
        log.error("chart loop: %s", exc.detail, extra={"order_id": order_id})
        raise
    except OrchestratorError:
        raise
    except Exception as exc:
        log.exception("entry action failed", extra={"order_id": order_id})
        raise Refused(
            f"{event.type} cannot create the order: an initial state's entry action failed: {exc!r}"
        ) from exc


def apply(
    machine: Machine,
    previous: Snapshot | None,
    event: Event,
    now: float,
    limits: Limits | None = None,
) -> TurnRecord:
    """Apply ``event`` to ``machine``; ``previous`` is None when this turn creates the order.
    Without ``limits`` an order may grow without bound."""
    version = 1 if previous is None else previous.version + 1
    state_before = "" if previous is None else previous.state
    if previous is None and event.type == START_EVENT:
        # A chart without a create event: ``start`` made the order, nothing is sent.
        return _recorded(machine, previous, event, now, version, state_before, limits)
    _check_outcome(previous, event)
    check(machine.chart, machine, event, version - 1)
    if limits is not None and version > limits.max_order_events:
        raise OrderTooLarge(
            f"the order has taken {limits.max_order_events} events, as many as one order may",
            "max-order-events",
            limits.max_order_events,
        )
    try:
        machine.send(machine.chart.event_id(event.type), event.data)
    except ChartLoop as exc:
        log.error("chart loop: %s", exc.detail, extra={"order_id": machine.context.order_id})
        raise
    except OrchestratorError:
        raise
    except TransitionNotAllowed as exc:
        raise EventNotAllowed(
            event.type, state_before, list(machine.next_events()), version - 1
        ) from exc
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, TypeError) and not _raised_in_actions(exc):
            # python-statemachine could not call an action or a guard with what it had
            # (a parameter nothing passes here): the chart's fault, not the data's.
            log.exception("action not callable", extra={"order_id": machine.context.order_id})
            raise Refused(f"{event.type}: the chart could not call an action: {exc}") from exc
        raise InvalidInput("data", f"{event.type} cannot use this data: {exc!r}") from exc
    except Exception as exc:
        log.exception("action failed", extra={"order_id": machine.context.order_id})
        raise Refused(f"{event.type} failed in an action: {exc!r}") from exc
    return _recorded(machine, previous, event, now, version, state_before, limits)


def _recorded(
    machine: Machine,
    previous: Snapshot | None,
    event: Event,
    now: float,
    version: int,
    state_before: str,
    limits: Limits | None,
) -> TurnRecord:
    try:
        return _record(machine, previous, event, now, version, state_before, limits)
    except OrchestratorError:
        raise
    except Exception as exc:
        # A delay method that raised, or data an action left that is not JSON (NaN, an
        # infinite number, an object): the chart's fault, refused like a failed action.
        log.exception("turn not recordable", extra={"order_id": machine.context.order_id})
        raise Refused(f"{event.type} left the order unrecordable: {exc!r}") from exc


def _raised_in_actions(exc: BaseException) -> bool:
    """Whether ``exc`` was raised inside the chart's code (an action or a guard, or what it
    called), not by python-statemachine while calling it."""
    trace = exc.__traceback__
    if trace is None:
        return True
    while trace.tb_next is not None:
        trace = trace.tb_next
    return not trace.tb_frame.f_code.co_filename.startswith(_STATEMACHINE_CODE)


def _record(
    machine: Machine,
    previous: Snapshot | None,
    event: Event,
    now: float,
    version: int,
    state_before: str,
    limits: Limits | None,
) -> TurnRecord:
    order_id = machine.context.order_id
    data = machine.context.data()
    context_json = to_json(data)
    if limits is not None and len(context_json) > limits.max_order_bytes:
        raise OrderTooLarge(
            f"{event.type} would make the order's context {len(context_json)} bytes of JSON,"
            f" more than the {limits.max_order_bytes} one order may hold",
            "max-order-bytes",
            limits.max_order_bytes,
        )
    change, patched = _context_change(previous, context_json)
    facts = machine.facts()
    outbox = _outbox(machine, event, version, now)
    snapshot = Snapshot(
        order_id=order_id,
        chart=machine.chart.name,
        configuration=facts.configuration,
        state=facts.path,
        context_json=context_json,
        next_events=facts.next_events,
        version=version,
        created_at=now if previous is None else previous.created_at,
        updated_at=now,
        invocations=_invocations(previous, outbox),
        context_patched=patched,
    )
    # Now, while ``data`` (the live context, not a copy) still matches ``context_json``.
    private = machine.chart.context_class.private_fields
    body = snapshot.view_json(data, private)
    journal = JournalEntry(
        order_id=order_id,
        version=version,
        event_id=event.id,
        type=machine.chart.event_name(event.type),
        # The history shows what each event carried, but not a private field (a callback's
        # task token): the journal is read by every history page, replay and broadcast.
        data=_without(event.data, private),
        at=now,
        state_before=state_before,
        state_after=snapshot.state,
        # Time the order spent in the state this event left.
        duration_ms=0.0 if previous is None else round((now - previous.updated_at) * 1000, 3),
    )
    reply = Reply(
        status=201 if previous is None else 200,
        body=body,
        order_id=order_id,
        fingerprint=event.fingerprint,
    )
    timers_set, timers_cancelled = _timers(machine, now, event.traceparent)
    return TurnRecord(
        snapshot=snapshot,
        journal=journal,
        outbox=outbox,
        reply=reply,
        created_by=event.id if previous is None and event.keyed else None,
        timers_set=timers_set,
        timers_cancelled=timers_cancelled,
        context_change=change,
    )


def _context_change(previous: Snapshot | None, context_json: str) -> tuple[ContextChange, int]:
    """What the journal keeps of the new context, and the bytes of changes it will then
    hold since the context was last kept whole.

    The whole context is kept once the changes would add up to its size: then the whole
    contexts kept cost no more than the changes (the journal stays linear in them), and a
    version is rebuilt from fewer bytes of changes than its context has.
    """
    if previous is None:
        return ContextChange.whole(context_json), 0
    change = ContextChange.between(previous.context_json, context_json)
    patched = previous.context_patched + len(change.text)
    if patched >= len(context_json):
        return ContextChange.whole(context_json), 0
    return change, patched


def _without(data: JsonObject, private: frozenset[str]) -> JsonObject:
    if not private or private.isdisjoint(data):
        return data
    return {key: value for key, value in data.items() if key not in private}


def _outbox(machine: Machine, event: Event, version: int, now: float) -> tuple[OutboxMessage, ...]:
    """The messages the turn's actions asked for, as outbox rows."""
    order_id = machine.context.order_id
    outbox = []
    for n, command in enumerate(machine.context.take_commands()):
        message = Message(
            id=f"{order_id}:{version}:{n}",
            type=command.type,
            source=SOURCE,
            subject=order_id,
            data=command.data,
            invoke=command.invoke,
            traceparent=event.traceparent,
        )
        outbox.append(
            OutboxMessage(
                id=message.id,
                order_id=order_id,
                type=command.type,
                routing_key=command_key(command.type),
                body=encode(message, now),
                invoke=command.invoke,
            )
        )
    return tuple(outbox)


def _invocations(
    previous: Snapshot | None, outbox: tuple[OutboxMessage, ...]
) -> tuple[tuple[str, str], ...]:
    """Each invoke's current message: the previous ones, replaced by this turn's."""
    before = () if previous is None else previous.invocations
    started = {m.invoke: m.id for m in outbox if m.invoke is not None}
    if not started:
        return before
    current = dict(before)
    current.update(started)
    return tuple(current.items())


def _check_outcome(previous: Snapshot | None, event: Event) -> None:
    """Refuse an invoke's outcome about a message a later turn replaced, as after a retry:
    it belongs to an invocation that is over."""
    invoke = invoke_of(event.type)
    if invoke is None or previous is None:
        return
    current = dict(previous.invocations).get(invoke)
    message_id = event.data.get(OUTCOME_MESSAGE_ID)
    if current is not None and isinstance(message_id, str) and message_id != current:
        raise StaleOutcome(event.type, message_id, current)


def timer_id(order_id: str, spec: TimerSpec) -> str:
    """One id per order and timer event: setting it again replaces it."""
    return f"{order_id}/{spec.event}"


def _timers(
    machine: Machine, now: float, traceparent: str | None
) -> tuple[tuple[Timer, ...], tuple[str, ...]]:
    """The timers this turn sets (states entered) and cancels (states left), each set in
    the turn's trace.

    A state left cancels its timers whether or not it is entered again; a state still
    entered at the end of the turn sets them anew, so a re-entered state starts over.
    """
    chart, context = machine.chart, machine.context
    entered: dict[str, None] = {}
    left: dict[str, None] = {}
    for is_entry, state in context.take_moves():
        if state not in chart.timers:
            continue
        if is_entry:
            entered[state] = None
        else:
            entered.pop(state, None)
            left[state] = None
    order_id = context.order_id
    cancelled = tuple(timer_id(order_id, s) for state in left for s in chart.timers[state])
    timers = []
    for state in entered:
        for spec in chart.timers[state]:
            delay = _delay(context, spec)
            if delay is not None:
                timers.append(
                    Timer(
                        id=timer_id(order_id, spec),
                        order_id=order_id,
                        due_at=now + delay,
                        event_type=spec.event,
                        data={"delaySeconds": delay, "dueAt": iso(now + delay)},
                        traceparent=traceparent,
                    )
                )
    return tuple(timers), cancelled


def _delay(context: object, spec: TimerSpec) -> float | None:
    """Seconds until the timer fires; a named delay may say None: set no timer."""
    if not isinstance(spec.delay, str):
        return float(spec.delay)
    value = getattr(context, spec.delay)
    if callable(value):
        value = value()
    if value is None:
        return None
    if not is_number(value) or not math.isfinite(value):
        raise Refused(f"delay {spec.delay!r} gave {value!r}, not a number of seconds")
    if not 0 <= value <= MAX_DELAY:
        raise Refused(f"delay {spec.delay!r} gave {value!r} seconds, not from 0 to {MAX_DELAY:g}")
    return float(value)
