"""Tests of orchestrator.turn: one event applied to one order, as a pure function.

Every test feeds ``apply`` a machine, the previous snapshot and an explicit ``now``; no
clock is read, so records are compared exactly.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from orchestrator.charts import Chart, Machine, load_charts
from orchestrator.errors import (
    EventNotAllowed,
    InvalidInput,
    Refused,
    ServiceOnly,
    StaleOutcome,
    UnknownEvent,
)
from orchestrator.messages import decode
from orchestrator.model import Event, Snapshot, TurnRecord, iso
from orchestrator.turn import apply, start

T0 = 1_700_000_000.0
PIZZA = {"name": "hawaii", "size": "L"}


@pytest.fixture
def chart(charts_dir: Path) -> Chart:
    return load_charts(charts_dir)["pizza"]


def restore(chart: Chart, snapshot: Snapshot) -> Machine:
    return chart.restore(snapshot.order_id, snapshot.configuration, snapshot.context)


def create(chart: Chart, order_id: str = "o-1", now: float = T0) -> TurnRecord:
    machine = chart.start(order_id)
    return apply(machine, None, Event("ADD_PIZZA", {"pizza": dict(PIZZA)}, "e-1"), now)


def step(chart: Chart, previous: Snapshot, event: Event, now: float) -> TurnRecord:
    """Apply ``event`` to a machine freshly rebuilt from ``previous``, as an actor does."""
    return apply(restore(chart, previous), previous, event, now)


def test_create_is_version_one_with_a_201_reply(chart: Chart) -> None:
    """The creating turn is version 1, answered 201, journaled from "" to orderPizza."""
    record = create(chart)
    snap = record.snapshot
    assert snap.version == 1
    assert snap.order_id == "o-1"
    assert snap.chart == "pizza"
    assert snap.state == "orderPizza"
    assert snap.configuration == ("orderPizza",)
    assert snap.context == {
        "status": "Oh, just ordering some pizza...",
        "items": [PIZZA],
        "retries": 0,
    }
    assert snap.next_events == ("ADD_PIZZA", "REMOVE_PIZZA", "CONFIRM_PIZZA", "CANCEL")
    assert snap.created_at == snap.updated_at == T0
    assert record.reply.status == 201
    assert record.reply.order_id == "o-1"
    assert json.loads(record.reply.body) == {
        "id": "o-1",
        "chart": "pizza",
        "state": "orderPizza",
        "status": "Oh, just ordering some pizza...",
        "items": [PIZZA],
        "context": {"status": "Oh, just ordering some pizza...", "items": [PIZZA], "retries": 0},
        "nextEvents": ["ADD_PIZZA", "REMOVE_PIZZA", "CONFIRM_PIZZA", "CANCEL"],
        "version": 1,
        "createdAt": iso(T0),
        "updatedAt": iso(T0),
    }
    assert json.loads(record.reply.body) == json.loads(snap.view_json())
    entry = record.journal
    assert (entry.version, entry.event_id, entry.type) == (1, "e-1", "ADD_PIZZA")
    assert entry.state_before == ""
    assert entry.state_after == "orderPizza"
    assert entry.data == {"pizza": PIZZA}
    assert entry.at == T0
    assert entry.duration_ms == 0.0
    assert record.outbox == ()


def test_later_turn_is_the_next_version_with_a_200_reply(chart: Chart) -> None:
    """Each applied event raises the version by one; created_at is kept."""
    first = create(chart)
    second = step(
        chart, first.snapshot, Event("ADD_PIZZA", {"pizza": {"name": "b"}}, "e-2"), T0 + 1
    )
    assert second.snapshot.version == 2
    assert second.reply.status == 200
    assert second.snapshot.created_at == T0
    assert second.snapshot.updated_at == T0 + 1
    assert second.snapshot.context["items"] == [PIZZA, {"name": "b"}]
    assert (second.journal.state_before, second.journal.state_after) == ("orderPizza",) * 2


def test_confirm_puts_make_pizza_in_the_outbox(chart: Chart) -> None:
    """CONFIRM_PIZZA yields one MAKE_PIZZA command for the kitchen, tied to its invoke, as
    a CloudEvent whose subject is the order id."""
    first = create(chart)
    record = step(chart, first.snapshot, Event("CONFIRM_PIZZA", {}, "e-2"), T0 + 2)
    assert record.snapshot.state == "bakePizza.sendingOrderToKitchen"
    assert record.snapshot.next_events == ("PIZZA_READY", "CANCEL")
    assert len(record.outbox) == 1
    out = record.outbox[0]
    assert out.type == "MAKE_PIZZA"
    assert out.routing_key == "command.MAKE_PIZZA"
    assert out.invoke == "sendOrderToKitchen"
    assert out.order_id == "o-1"
    message = decode(out.body)
    assert message.id == out.id
    assert message.subject == "o-1"
    assert message.type == "MAKE_PIZZA"
    assert message.invoke == "sendOrderToKitchen"
    assert message.data == {"items": [PIZZA]}


def test_outbox_ids_are_unique_per_turn(chart: Chart) -> None:
    """Commands of different turns get different ids, since the id is the dedupe key."""
    first = create(chart)
    confirmed = step(chart, first.snapshot, Event("CONFIRM_PIZZA", {}, "e-2"), T0 + 1)
    kitchen = step(
        chart,
        confirmed.snapshot,
        Event("done.invoke.sendOrderToKitchen", {}, "e-3", origin="broker"),
        T0 + 2,
    )
    ready = step(chart, kitchen.snapshot, Event("PIZZA_READY", {}, "e-4", origin="broker"), T0 + 3)
    assert [m.type for m in ready.outbox] == ["DELIVER_PIZZA"]
    assert ready.outbox[0].routing_key == "command.DELIVER_PIZZA"
    assert ready.outbox[0].id != confirmed.outbox[0].id


def test_same_input_gives_the_same_record(chart: Chart) -> None:
    """apply is deterministic: two fresh machines restored from one snapshot, given the
    same event and the same ``now``, produce equal records, outbox bytes included."""
    first = create(chart)
    event = Event("CONFIRM_PIZZA", {}, "e-2", fingerprint="f")
    one = step(chart, first.snapshot, event, T0 + 5)
    two = step(chart, first.snapshot, event, T0 + 5)
    assert one == two
    assert one.outbox[0].body == two.outbox[0].body
    assert one.reply.body == two.reply.body


def test_the_fingerprint_is_kept_in_the_reply(chart: Chart) -> None:
    """The reply records the request fingerprint, so a reused key is told from a retry."""
    first = create(chart)
    record = step(chart, first.snapshot, Event("CONFIRM_PIZZA", {}, "e-2", fingerprint="abc"), T0)
    assert record.reply.fingerprint == "abc"


def test_unknown_event_is_refused(chart: Chart) -> None:
    """A type the chart does not declare raises UnknownEvent naming it."""
    first = create(chart)
    with pytest.raises(UnknownEvent) as info:
        step(chart, first.snapshot, Event("BURN_PIZZA", {}, "e-2"), T0 + 1)
    assert info.value.event_type == "BURN_PIZZA"
    assert "CONFIRM_PIZZA" in info.value.known


def test_event_not_allowed_lists_the_allowed_events(chart: Chart) -> None:
    """A known event not allowed now raises EventNotAllowed with the client's choices and
    the order's current version."""
    first = create(chart)
    with pytest.raises(EventNotAllowed) as info:
        step(chart, first.snapshot, Event("PIZZA_READY", {}, "e-2", origin="broker"), T0 + 1)
    assert info.value.allowed == ["ADD_PIZZA", "REMOVE_PIZZA", "CONFIRM_PIZZA", "CANCEL"]
    assert info.value.state == "orderPizza"
    assert info.value.version == 1


@pytest.mark.parametrize("origin", ["http", "timer", "relay", ""])
def test_a_service_event_from_elsewhere_than_a_service_is_refused(
    chart: Chart, origin: str
) -> None:
    """The pizza chart's serviceEvents come only from the broker or a signed webhook, and
    the refusal comes before the state's: a client learns nothing of the order from it."""
    *_, waiting = walk(chart, ["CONFIRM_PIZZA", "done.invoke.sendOrderToKitchen"])
    for event_type in ("PIZZA_READY", "PIZZA_DELIVERED", "PIZZA_CANCELLED"):
        with pytest.raises(ServiceOnly) as info:
            step(chart, waiting.snapshot, Event(event_type, {}, "e-9", origin=origin), T0 + 9)
        assert info.value.event_type == event_type
    for origin in ("broker", "webhook"):
        ready = step(chart, waiting.snapshot, Event("PIZZA_READY", {}, "e-9", origin=origin), T0)
        assert ready.snapshot.state == "deliverPizza.sendingOrderToDelivery"


def test_a_payment_step_sends_its_token_and_no_view_shows_it(charts_dir: Path) -> None:
    """The task token is a private field: in the command to the payment system and the
    stored context, never in the reply (the view the WebSockets and lists show)."""
    payment = load_charts(charts_dir)["payment"]
    data = {"products": [{"name": "tea", "price": 2}], "supplier": "s", "address": "a"}
    placed = apply(payment.start("o-1"), None, Event("PLACE_ORDER", data, "e-1"), T0)
    token = placed.snapshot.context["taskToken"]
    assert isinstance(token, str) and token
    [command] = placed.outbox
    assert decode(command.body).data == {"taskToken": token, "orderNum": "ORD-o-1", "price": 2}
    assert token.encode() not in placed.reply.body
    assert "taskToken" not in json.loads(placed.reply.body)["context"]
    callback = {"taskToken": token, "paymentMethod": "weixin"}
    paid = step(
        payment, placed.snapshot, Event("PAYMENT_COMPLETED", callback, "e-2", origin="broker"), T0
    )
    settle = paid.snapshot.context["taskToken"]
    assert [decode(m.body).data for m in paid.outbox] == [
        {"taskToken": settle, "orderNum": "ORD-o-1", "method": "weixin"}
    ]
    assert settle.encode() not in paid.reply.body


def test_platform_event_out_of_place_is_not_allowed(chart: Chart) -> None:
    """An invoke's done event is refused in a state that is not waiting for it."""
    first = create(chart)
    with pytest.raises(EventNotAllowed) as info:
        step(chart, first.snapshot, Event("done.invoke.sendOrderToKitchen", {}, "e-2"), T0)
    assert "done.invoke.sendOrderToKitchen" not in info.value.allowed


def test_removing_a_missing_pizza_is_refused(chart: Chart) -> None:
    """REMOVE_PIZZA of a pizza not in the order raises Refused."""
    first = create(chart)
    event = Event("REMOVE_PIZZA", {"pizza": {"name": "margherita"}}, "e-2")
    with pytest.raises(Refused, match="margherita"):
        step(chart, first.snapshot, event, T0 + 1)


@pytest.mark.parametrize("data", [{"pizza": "hawaii"}, {"pizza": ["a"]}, {}])
def test_pizza_that_is_not_an_object_is_invalid_input(
    chart: Chart, data: dict[str, object]
) -> None:
    """ADD_PIZZA needs ``data.pizza`` to be a JSON object; the error names that field."""
    first = create(chart)
    with pytest.raises(InvalidInput) as info:
        step(chart, first.snapshot, Event("ADD_PIZZA", data, "e-2"), T0 + 1)
    assert info.value.field == "data.pizza"


def test_a_refusal_changes_nothing_in_the_snapshot(chart: Chart) -> None:
    """A refused turn leaves the committed snapshot as it was (rule 4)."""
    first = create(chart)
    before = first.snapshot
    with pytest.raises(Refused):
        step(chart, before, Event("REMOVE_PIZZA", {"pizza": {"name": "x"}}, "e-2"), T0 + 1)
    assert before.context == {
        "status": "Oh, just ordering some pizza...",
        "items": [PIZZA],
        "retries": 0,
    }
    after = step(chart, before, Event("CONFIRM_PIZZA", {}, "e-2"), T0 + 2)
    assert after.snapshot.version == 2


def test_the_reply_is_the_view_even_for_awkward_text(chart: Chart) -> None:
    """The view's JSON is assembled from pieces (the context as stored): quotes,
    backslashes and non-ASCII text in the data and the id must still give exactly the
    view, and the snapshot's context must be a copy the live order's next actions cannot
    change."""
    awkward = {"name": 'quote " back \\ slash', "note": "caf\u00e9 \u2603 \n", "n": 1.5}
    machine = chart.start('o-"1"')
    record = apply(machine, None, Event("ADD_PIZZA", {"pizza": awkward}, "e-1"), T0)
    context = {"status": "Oh, just ordering some pizza...", "items": [awkward], "retries": 0}
    assert json.loads(record.reply.body) == {
        "id": 'o-"1"',
        "chart": "pizza",
        "state": "orderPizza",
        "status": context["status"],
        "items": [awkward],
        "context": context,
        "nextEvents": ["ADD_PIZZA", "REMOVE_PIZZA", "CONFIRM_PIZZA", "CANCEL"],
        "version": 1,
        "createdAt": iso(T0),
        "updatedAt": iso(T0),
    }
    assert json.loads(record.snapshot.view_json()) == json.loads(record.reply.body)
    assert record.snapshot.context == context
    machine.send("ADD_PIZZA", {"pizza": {"name": "later"}})
    assert record.snapshot.context["items"] == [awkward]


def test_duration_is_the_time_spent_in_the_previous_state(chart: Chart) -> None:
    """durationMs is the time between the previous turn and this one, in milliseconds."""
    first = create(chart, now=T0)
    record = step(chart, first.snapshot, Event("CONFIRM_PIZZA", {}, "e-2"), T0 + 2.5)
    assert record.journal.duration_ms == 2500.0
    assert record.journal.state_before == "orderPizza"
    assert record.journal.state_after == "bakePizza.sendingOrderToKitchen"


def test_durations_partition_the_timeline(chart: Chart) -> None:
    """Summed over the history, durations cover the whole time from creation to the last
    event, so the time spent per state can be added up from the journal."""
    times = [T0, T0 + 1.25, T0 + 4.0, T0 + 4.5]
    record = create(chart, now=times[0])
    entries = [record.journal]
    events = ["ADD_PIZZA", "CONFIRM_PIZZA", "PIZZA_READY"]
    for n, (event_type, now) in enumerate(zip(events, times[1:], strict=True), start=2):
        data = {"pizza": {"name": "b"}} if event_type == "ADD_PIZZA" else {}
        event = Event(event_type, data, f"e-{n}", origin="broker")
        record = step(chart, record.snapshot, event, now)
        entries.append(record.journal)
    assert [e.duration_ms for e in entries] == [0.0, 1250.0, 2750.0, 500.0]
    assert sum(e.duration_ms for e in entries) == (times[-1] - times[0]) * 1000
    assert [e.version for e in entries] == [1, 2, 3, 4]


# -- timers ------------------------------------------------------------------------------


def walk(chart: Chart, types: list[str]) -> list[TurnRecord]:
    """Create an order, then apply ``types`` one per turn, a second apart, as the broker
    would bring them (so that service events are taken too)."""
    records = [create(chart)]
    for n, event_type in enumerate(types, start=2):
        event = Event(event_type, {}, f"e-{n}", origin="broker")
        records.append(step(chart, records[-1].snapshot, event, T0 + n))
    return records


def test_entering_a_state_with_after_sets_its_timer(chart: Chart) -> None:
    """The turn that enters waitingForPizzaToBeBaked stores its timeout, due kitchenTimeout
    seconds after the turn's time, with an id that names the order and the timer."""
    *_, waiting = walk(chart, ["CONFIRM_PIZZA", "done.invoke.sendOrderToKitchen"])
    timeout = chart.context_class.options["kitchenTimeout"]
    [timer] = waiting.timers_set
    assert timer.id == "o-1/after.waitingForPizzaToBeBaked.kitchenTimeout"
    assert timer.order_id == "o-1"
    assert timer.event_type == "after.waitingForPizzaToBeBaked.kitchenTimeout"
    assert timer.due_at == waiting.journal.at + timeout
    assert timer.data["delaySeconds"] == timeout
    assert waiting.timers_cancelled == ()


def test_a_timer_keeps_the_trace_of_the_turn_that_set_it(chart: Chart) -> None:
    """So that the timer's firing continues that trace: a timeout shows in the trace of
    the flow it interrupts."""
    *_, confirmed = walk(chart, ["CONFIRM_PIZZA"])
    trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    sent = Event("done.invoke.sendOrderToKitchen", {}, "e-3", traceparent=trace)
    waiting = step(chart, confirmed.snapshot, sent, T0 + 3)
    [timer] = waiting.timers_set
    assert timer.traceparent == trace


def test_leaving_the_state_cancels_its_timer(chart: Chart) -> None:
    """PIZZA_READY leaves the waiting state: its turn cancels the timeout, sets nothing."""
    *_, ready = walk(chart, ["CONFIRM_PIZZA", "done.invoke.sendOrderToKitchen", "PIZZA_READY"])
    assert ready.timers_cancelled == ("o-1/after.waitingForPizzaToBeBaked.kitchenTimeout",)
    assert ready.timers_set == ()


def test_turns_without_timer_states_touch_no_timers(chart: Chart) -> None:
    """Creating, adding pizzas and confirming neither set nor cancel anything."""
    for record in walk(chart, ["CONFIRM_PIZZA"]):
        assert (record.timers_set, record.timers_cancelled) == ((), ())


def test_the_timeout_leads_to_a_retry_with_doubling_delays(chart: Chart) -> None:
    """The timeout moves to errorInKitchen, whose retry timer waits retryBackoff, then
    twice as long each time, and none once the retries are used up."""
    backoff = chart.context_class.options["retryBackoff"]
    most = chart.context_class.options["maxRetries"]
    timeout = "after.waitingForPizzaToBeBaked.kitchenTimeout"
    retry = "after.errorInKitchen.retryDelay"
    types = ["CONFIRM_PIZZA", "done.invoke.sendOrderToKitchen", timeout]
    delays = []
    for _ in range(most + 1):
        *_, error = walk(chart, types)
        assert error.snapshot.state == "bakePizza.errorInKitchen"
        delays.append([t.due_at - error.journal.at for t in error.timers_set])
        types += [retry, "done.invoke.sendOrderToKitchen", timeout]
    assert delays == [[backoff * 2**n] for n in range(most)] + [[]]
    assert (
        "Gave up after 3 automatic retries: send RETRY or CANCEL."
        in error.snapshot.context["status"]
    )
    *_, retried = walk(chart, [*types[:-3], "RETRY"])
    assert retried.snapshot.state == "bakePizza.sendingOrderToKitchen"
    assert [m.type for m in retried.outbox] == ["MAKE_PIZZA"]


def test_the_retry_leaves_error_in_kitchen_and_cancels_its_timer(chart: Chart) -> None:
    """The retry timer's own turn leaves errorInKitchen, so it cancels that timer (the
    actor adds the fired timer's id too, whatever the chart does)."""
    retry = "after.errorInKitchen.retryDelay"
    *_, fired = walk(
        chart,
        ["CONFIRM_PIZZA", "error.invoke.sendOrderToKitchen", retry],
    )
    assert fired.timers_cancelled == (f"o-1/{retry}",)
    assert fired.snapshot.state == "bakePizza.sendingOrderToKitchen"
    assert fired.snapshot.context["retries"] == 1


TICKING = """\
name: ticking
states:
  ticking:
    initial: true
    after:
      - delay: 5
        target: ticking
        on: countRetry
    transitions:
      - event: START
      - event: STOP
        target: stopped
  stopped:
    final: true
"""

TICKING_ACTIONS = """\
from typing import ClassVar

from orchestrator import Context, JsonObject


class Ticks(Context):
    fields: ClassVar[JsonObject] = {"retries": 0}

    def countRetry(self) -> None:
        self.retries += 1
"""


def test_a_state_entered_again_in_one_turn_cancels_then_sets_its_timer(
    tmp_path: Path,
) -> None:
    """A self-transition on a timer leaves and enters the state in one turn: the old
    timer is cancelled and a new one set under the same id, due from this turn."""
    (tmp_path / "ticking.yaml").write_text(TICKING)
    (tmp_path / "ticking.py").write_text(TICKING_ACTIONS)
    ticking = load_charts(tmp_path)["ticking"]
    machine = ticking.start("o-1")
    first = apply(machine, None, Event("START", {}, "e-1"), T0)
    [timer] = first.timers_set
    assert (timer.id, timer.due_at) == ("o-1/after.ticking.5s", T0 + 5)
    tick = step(ticking, first.snapshot, Event("after.ticking.5s", {}, "e-2"), T0 + 5)
    assert tick.timers_cancelled == ("o-1/after.ticking.5s",)
    assert [(t.id, t.due_at) for t in tick.timers_set] == [("o-1/after.ticking.5s", T0 + 10)]
    assert tick.snapshot.context["retries"] == 1
    stop = step(ticking, tick.snapshot, Event("STOP", {}, "e-3"), T0 + 6)
    assert (stop.timers_set, stop.timers_cancelled) == ((), ("o-1/after.ticking.5s",))


BROKEN_DELAY_ACTIONS = """\
import math
from typing import ClassVar

from orchestrator import Context, JsonObject


class Ticks(Context):
    fields: ClassVar[JsonObject] = {"retries": 0, "level": 0.0}

    def countRetry(self) -> None:
        self.retries += 1

    def spoil(self) -> None:
        self.level = math.nan

    def fiveSeconds(self) -> float:
        return 5 / self.retries  # divides by zero on the first entry
"""


def test_a_delay_or_data_the_turn_cannot_record_is_refused(tmp_path: Path) -> None:
    """A delay method that raises, or an action that leaves NaN in the order, refuses the
    turn (409, nothing stored) rather than failing it as if the store were down."""
    document = TICKING.replace("delay: 5", "delay: fiveSeconds").replace(
        "      - event: START\n", "      - event: START\n      - event: SPOIL\n        on: spoil\n"
    )
    (tmp_path / "ticking.yaml").write_text(document)
    (tmp_path / "ticking.py").write_text(BROKEN_DELAY_ACTIONS)
    ticking = load_charts(tmp_path)["ticking"]
    with pytest.raises(Refused, match="ZeroDivisionError"):
        apply(ticking.start("o-1"), None, Event("START", {}, "e-1"), T0)
    (tmp_path / "ticking.yaml").write_text(document.replace("delay: fiveSeconds", "delay: 5"))
    ticking = load_charts(tmp_path)["ticking"]
    machine = ticking.start("o-1")
    first = apply(machine, None, Event("START", {}, "e-1"), T0)
    with pytest.raises(Refused, match="not JSON compliant"):
        apply(machine, first.snapshot, Event("SPOIL", {}, "e-2"), T0 + 1)


@pytest.mark.parametrize("seconds", ["-1", "1e12", "1e300"])
def test_a_named_delay_out_of_range_is_refused_by_name(tmp_path: Path, seconds: str) -> None:
    """A delay method's value must be seconds from 0 to 10^9, as a literal delay must: a
    larger one refused the turn only when the timestamp overflowed, with that error."""
    document = TICKING.replace("delay: 5", "delay: fiveSeconds")
    (tmp_path / "ticking.yaml").write_text(document)
    actions = BROKEN_DELAY_ACTIONS.replace("5 / self.retries", seconds)
    (tmp_path / "ticking.py").write_text(actions)
    ticking = load_charts(tmp_path)["ticking"]
    with pytest.raises(Refused, match=r"delay 'fiveSeconds' gave .* not from 0 to 1e\+09"):
        apply(ticking.start("o-1"), None, Event("START", {}, "e-1"), T0)


def outcome(kind: str, message_id: str, n: int) -> Event:
    """The relay's event for the fate of an invoke's message."""
    return Event(f"{kind}.invoke.sendOrderToKitchen", {"messageId": message_id}, f"{kind}:{n}")


def test_each_turn_that_sends_an_invoke_message_makes_it_the_current_one(chart: Chart) -> None:
    created, confirmed = walk(chart, ["CONFIRM_PIZZA"])
    assert created.snapshot.invocations == ()
    [make_pizza] = confirmed.outbox
    assert confirmed.snapshot.invocations == (("sendOrderToKitchen", make_pizza.id),)
    waiting = step(chart, confirmed.snapshot, outcome("done", make_pizza.id, 1), T0 + 10)
    assert waiting.snapshot.invocations == confirmed.snapshot.invocations


def test_an_outcome_about_a_message_a_retry_replaced_is_stale(chart: Chart) -> None:
    """The kitchen times out; the retry sends MAKE_PIZZA again. A dead letter of the first
    MAKE_PIZZA arriving now is about an invocation that is over: refused, nothing applied.
    The second message's own outcomes still apply."""
    timeout = "after.waitingForPizzaToBeBaked.kitchenTimeout"
    retry = "after.errorInKitchen.retryDelay"
    *_, confirmed = walk(chart, ["CONFIRM_PIZZA"])
    [first] = confirmed.outbox
    record = step(chart, confirmed.snapshot, outcome("done", first.id, 1), T0 + 10)
    for n, event_type in enumerate([timeout, retry], start=11):
        record = step(chart, record.snapshot, Event(event_type, {}, f"e-{n}"), T0 + n)
    [second] = record.outbox
    assert record.snapshot.state == "bakePizza.sendingOrderToKitchen"
    assert record.snapshot.invocations == (("sendOrderToKitchen", second.id),)

    with pytest.raises(StaleOutcome) as refused:
        step(chart, record.snapshot, outcome("error", first.id, 2), T0 + 20)
    assert refused.value.message_id == first.id
    assert refused.value.current == second.id

    waiting = step(chart, record.snapshot, outcome("done", second.id, 3), T0 + 21)
    assert waiting.snapshot.state == "bakePizza.waitingForPizzaToBeBaked"
    failed = step(chart, waiting.snapshot, outcome("error", second.id, 4), T0 + 22)
    assert failed.snapshot.state == "bakePizza.errorInKitchen"


def test_an_outcome_for_an_order_from_before_invocations_were_kept_applies(
    chart: Chart,
) -> None:
    """A snapshot stored before this field existed has none: its outcomes are not stale."""
    *_, confirmed = walk(chart, ["CONFIRM_PIZZA"])
    older = dataclasses.replace(confirmed.snapshot, invocations=())
    waiting = step(chart, older, outcome("done", "some-earlier-id", 1), T0 + 10)
    assert waiting.snapshot.state == "bakePizza.waitingForPizzaToBeBaked"


DOOMED_ACTIONS = """\
from orchestrator import Context
class Doomed(Context):
    def greet(self) -> None:
        if self.order_id == "o-doomed":
            raise RuntimeError("no greeting for this one")
"""


def test_an_initial_entry_action_that_fails_refuses_the_create(tmp_path: Path) -> None:
    """A create runs the initial states' entry actions before its event: one that fails
    refuses the create (409, no order) as a failing action refuses any turn. It was
    answered 503, as if the store had failed."""
    (tmp_path / "doomed.yaml").write_text(
        "name: doomed\nstates:\n  idle:\n    initial: true\n    enter: greet\n"
        "    transitions:\n      - event: OPEN\n"
    )
    (tmp_path / "doomed.py").write_text(DOOMED_ACTIONS)
    chart = load_charts(tmp_path)["doomed"]
    event = Event("OPEN", {}, "e-1")
    with pytest.raises(Refused, match=r"OPEN cannot create the order: .*no greeting"):
        start(chart, "o-doomed", event)
    record = apply(start(chart, "o-fine", event), None, event, T0)
    assert record.snapshot.state == "idle"


CHECKING = """\
name: checking
states:
  idle:
    initial: true
    transitions:
      - event: GO
        target: checking
        on: note
  checking:
    transitions:
      - target: passed
        cond: ready
  passed:
    final: true
"""
CHECKING_ACTIONS = """\
from orchestrator import Context
class Checking(Context):
    def note(self, data) -> None:
        self.total = data["n"] + 1

    def ready(self, data) -> bool:
        return bool(data)
"""


def test_a_callback_the_engine_cannot_call_is_the_charts_fault(tmp_path: Path) -> None:
    """python-statemachine passes ``data`` only to the callbacks of the event's own
    transitions: an eventless transition's guard that needs it cannot be called. That was
    answered 422, "cannot use this data", as if the client had sent bad data; it is the
    chart's fault, refused with a 409 that says so. A TypeError inside an action is still
    the data's fault: 422 naming ``data``."""
    (tmp_path / "checking.yaml").write_text(CHECKING)
    (tmp_path / "checking.py").write_text(CHECKING_ACTIONS)
    chart = load_charts(tmp_path)["checking"]
    with pytest.raises(InvalidInput, match="GO cannot use this data: TypeError") as info:
        apply(chart.start("o-1"), None, Event("GO", {"n": "one"}, "e-1"), T0)
    assert info.value.field == "data"
    with pytest.raises(Refused, match=r"GO: the chart could not call an action: .*'data'"):
        apply(chart.start("o-2"), None, Event("GO", {"n": 1}, "e-2"), T0)
