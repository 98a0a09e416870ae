"""Tests of orchestrator.charts: loading chart documents, binding actions, state paths.

The pizza chart in ``statecharts/`` is the reference; broken charts are written into the
test's temporary directory, each beside a copy of ``pizza.py`` where it needs actions.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any, ClassVar

import pytest
import yaml

from orchestrator.charts import (
    MAX_TRANSITIONS_PER_TURN,
    Chart,
    Machine,
    load_chart,
    load_charts,
)
from orchestrator.context import CommandIntent, Context
from orchestrator.errors import ChartError, ChartLoop

ORDERING = "Oh, just ordering some pizza..."

# Events that drive a new order to each atomic state, with the status that state shows.
PATHS: dict[str, tuple[list[str], str]] = {
    "orderPizza": ([], ORDERING),
    "bakePizza.sendingOrderToKitchen": (
        ["CONFIRM_PIZZA"],
        "Sending the order for the pizza...",
    ),
    "bakePizza.waitingForPizzaToBeBaked": (
        ["CONFIRM_PIZZA", "done.invoke.sendOrderToKitchen"],
        "Waiting for the pizza to be baked...",
    ),
    "bakePizza.errorInKitchen": (
        ["CONFIRM_PIZZA", "error.invoke.sendOrderToKitchen"],
        "Ooops! Something got burned... Trying again in 2 s (retry 1 of 3).",
    ),
    "deliverPizza.sendingOrderToDelivery": (
        ["CONFIRM_PIZZA", "PIZZA_READY"],
        "Sending the pizza out for delivery...",
    ),
    "deliverPizza.waitingForDelivery": (
        ["CONFIRM_PIZZA", "PIZZA_READY", "done.invoke.sendOrderToDelivery"],
        "The pizza is on its way...",
    ),
    "deliverPizza.errorInDelivery": (
        ["CONFIRM_PIZZA", "PIZZA_READY", "error.invoke.sendOrderToDelivery"],
        "Ooops! The delivery got lost... Trying again in 2 s (retry 1 of 3).",
    ),
    "cancellingKitchen": (
        ["CONFIRM_PIZZA", "CANCEL"],
        "Cancelling: asking the kitchen to stop...",
    ),
    "cancelled": (
        ["CONFIRM_PIZZA", "CANCEL", "PIZZA_CANCELLED"],
        "Cancelled: the kitchen stopped and threw the pizza away.",
    ),
    "done": (
        ["CONFIRM_PIZZA", "PIZZA_READY", "PIZZA_DELIVERED"],
        "Delivered. Enjoy your pizza!",
    ),
}

PIZZA = {"name": "hawaii", "size": "L"}


@pytest.fixture
def chart(charts_dir: Path) -> Chart:
    return load_charts(charts_dir)["pizza"]


def drive(chart: Chart, events: list[str], order_id: str = "o-1") -> Machine:
    """A new order with one pizza, then ``events`` applied in turn."""
    machine = chart.start(order_id)
    machine.send("ADD_PIZZA", {"pizza": dict(PIZZA)})
    for event in events:
        machine.send(event, {})
    return machine


def atomic_paths(states: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted paths of the leaf states of a chart document, read straight from the YAML."""
    paths: list[str] = []
    for name, body in states.items():
        path = f"{prefix}{name}"
        children = (body or {}).get("states")
        paths.extend(atomic_paths(children, f"{path}.") if children else [path])
    return paths


# -- the pizza chart ---------------------------------------------------------------------


def test_pizza_chart_loads(charts_dir: Path) -> None:
    """Every *.yaml in statecharts/ loads, keyed by its stem, with the document's events
    and one generated event per timer."""
    charts = load_charts(charts_dir)
    assert "pizza" in charts
    chart = charts["pizza"]
    assert chart.name == "pizza"
    assert chart.path == charts_dir / "pizza.yaml"
    assert chart.context_class.__name__ == "PizzaOrder"
    assert chart.events == {
        "ADD_PIZZA",
        "REMOVE_PIZZA",
        "CONFIRM_PIZZA",
        "PIZZA_READY",
        "PIZZA_DELIVERED",
        "done.invoke.sendOrderToKitchen",
        "error.invoke.sendOrderToKitchen",
        "done.invoke.sendOrderToDelivery",
        "error.invoke.sendOrderToDelivery",
        "CANCEL",
        "RETRY",
        "PIZZA_CANCELLED",
        "done.invoke.sendCancelToKitchen",
        "error.invoke.sendCancelToKitchen",
        "after.waitingForPizzaToBeBaked.kitchenTimeout",
        "after.errorInKitchen.retryDelay",
        "after.waitingForDelivery.deliveryTimeout",
        "after.errorInDelivery.retryDelay",
        "after.cancellingKitchen.kitchenTimeout",
    }
    assert {state: [s.event for s in specs] for state, specs in chart.timers.items()} == {
        "waitingForPizzaToBeBaked": ["after.waitingForPizzaToBeBaked.kitchenTimeout"],
        "errorInKitchen": ["after.errorInKitchen.retryDelay"],
        "waitingForDelivery": ["after.waitingForDelivery.deliveryTimeout"],
        "errorInDelivery": ["after.errorInDelivery.retryDelay"],
        "cancellingKitchen": ["after.cancellingKitchen.kitchenTimeout"],
    }


def test_start_is_in_order_pizza_with_status_and_next_events(chart: Chart) -> None:
    """A new order starts in the initial state, its entry sets the status, and nextEvents
    come from that state's transitions in document order."""
    machine = chart.start("o-1")
    assert machine.configuration() == ("orderPizza",)
    assert machine.state_path() == "orderPizza"
    assert machine.context.status == ORDERING
    assert machine.context.order_id == "o-1"
    assert machine.next_events() == ("ADD_PIZZA", "REMOVE_PIZZA", "CONFIRM_PIZZA", "CANCEL")
    assert not machine.is_final()
    assert machine.context.take_commands() == []


def test_state_path_names_the_compound_state_and_its_leaf(chart: Chart) -> None:
    """A state inside a compound state is reported as ``parent.child``."""
    machine = drive(chart, ["CONFIRM_PIZZA"])
    assert machine.configuration() == ("bakePizza", "sendingOrderToKitchen")
    assert machine.state_path() == "bakePizza.sendingOrderToKitchen"


def test_next_events_hide_platform_events(chart: Chart) -> None:
    """done.*, error.* and after.* events are allowed by the chart but never offered to
    clients."""
    machine = drive(chart, ["CONFIRM_PIZZA"])
    allowed = machine.allowed_events()
    assert "done.invoke.sendOrderToKitchen" in allowed
    assert "error.invoke.sendOrderToKitchen" in allowed
    assert machine.next_events() == ("PIZZA_READY", "CANCEL")
    waiting = drive(chart, ["CONFIRM_PIZZA", "done.invoke.sendOrderToKitchen"])
    assert "after.waitingForPizzaToBeBaked.kitchenTimeout" in waiting.allowed_events()
    assert waiting.next_events() == ("PIZZA_READY", "CANCEL")


def test_actions_are_bound_to_the_context(chart: Chart) -> None:
    """Bare action names in the document call the Context subclass's methods."""
    machine = chart.start("o-1")
    machine.send("ADD_PIZZA", {"pizza": {"name": "a"}})
    machine.send("ADD_PIZZA", {"pizza": {"name": "b"}})
    machine.send("REMOVE_PIZZA", {"pizza": {"name": "a"}})
    assert machine.context.data() == {"status": ORDERING, "items": [{"name": "b"}], "retries": 0}


def test_confirm_emits_make_pizza_with_its_invoke(chart: Chart) -> None:
    """Entering sendingOrderToKitchen runs orderPizzaFromKitchen, which asks for MAKE_PIZZA."""
    machine = drive(chart, ["CONFIRM_PIZZA"])
    assert machine.context.take_commands() == [
        CommandIntent("MAKE_PIZZA", {"items": [PIZZA]}, "sendOrderToKitchen")
    ]
    assert machine.context.take_commands() == []


def test_restore_lands_in_the_same_state_without_entry_actions(chart: Chart) -> None:
    """Reactivation from a snapshot must not re-run entry actions (rule 6): the original
    CONFIRM_PIZZA turn emitted MAKE_PIZZA, the restored machine emits nothing."""
    original = drive(chart, ["CONFIRM_PIZZA"])
    emitted = original.context.take_commands()
    assert [c.type for c in emitted] == ["MAKE_PIZZA"]

    restored = chart.restore("o-1", original.configuration(), original.context.data())
    assert restored.context.take_commands() == []
    assert restored.configuration() == original.configuration()
    assert restored.state_path() == "bakePizza.sendingOrderToKitchen"
    assert restored.context.data() == original.context.data()
    assert restored.next_events() == original.next_events()
    assert restored.allowed_events() == original.allowed_events()


def test_restore_keeps_the_saved_status(chart: Chart) -> None:
    """The initial state's entry assign is not re-run: the saved status survives."""
    saved = {"status": "saved", "items": [PIZZA], "retries": 0}
    restored = chart.restore("o-1", ("orderPizza",), saved)
    assert restored.context.status == "saved"
    assert restored.context.data() == saved


def test_restored_machine_carries_on(chart: Chart) -> None:
    """A restored order continues with the chart's next transitions as if never dropped."""
    original = drive(chart, ["CONFIRM_PIZZA"])
    restored = chart.restore("o-1", original.configuration(), original.context.data())
    restored.send("done.invoke.sendOrderToKitchen", {})
    assert restored.state_path() == "bakePizza.waitingForPizzaToBeBaked"
    restored.send("PIZZA_READY", {})
    assert [c.type for c in restored.context.take_commands()] == ["DELIVER_PIZZA"]


def test_every_leaf_state_has_a_status_case(charts_dir: Path) -> None:
    """The status table below covers every leaf state the document declares."""
    document = yaml.safe_load((charts_dir / "pizza.yaml").read_text())
    assert sorted(atomic_paths(document["states"])) == sorted(PATHS)


@pytest.mark.parametrize("path", sorted(PATHS))
def test_every_state_sets_its_status(chart: Chart, path: str) -> None:
    """Entering a state updates ``status`` to that state's human message."""
    events, status = PATHS[path]
    machine = drive(chart, events)
    assert machine.state_path() == path
    assert machine.context.status == status
    assert machine.context.data()["status"] == status


def test_done_is_final(chart: Chart) -> None:
    """The final states are final and offer no further events."""
    for final in ("done", "cancelled"):
        machine = drive(chart, PATHS[final][0])
        assert machine.is_final()
        assert machine.next_events() == ()


# -- load errors -------------------------------------------------------------------------

UNKNOWN_TARGET = """\
name: bad
states:
  orderPizza:
    initial: true
    transitions:
      - event: CONFIRM_PIZZA
        target: nowhere
  other:
    final: true
"""

UNKNOWN_TRANSITION_ACTION = """\
name: bad
states:
  orderPizza:
    initial: true
    transitions:
      - event: ADD_PIZZA
        on: noSuchAction
      - event: CONFIRM_PIZZA
        target: other
  other:
    final: true
"""

UNKNOWN_ENTRY_ACTION = """\
name: bad
states:
  orderPizza:
    initial: true
    transitions:
      - event: CONFIRM_PIZZA
        target: other
  other:
    final: true
    enter:
      - noSuchAction
"""

MINIMAL = """\
name: bad
states:
  only:
    initial: true
"""


def write_chart(directory: Path, document: str, actions: Path | str | None) -> Path:
    """``bad.yaml`` in ``directory``, with ``bad.py`` copied from a file or written."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "bad.yaml"
    path.write_text(document)
    if isinstance(actions, Path):
        shutil.copy(actions, directory / "bad.py")
    elif isinstance(actions, str):
        (directory / "bad.py").write_text(actions)
    return path


@pytest.mark.parametrize(
    "document",
    [UNKNOWN_TARGET, UNKNOWN_TRANSITION_ACTION, UNKNOWN_ENTRY_ACTION],
    ids=["unknown-target", "unknown-transition-action", "unknown-entry-action"],
)
def test_broken_document_is_a_chart_error_naming_the_file(
    tmp_path: Path, charts_dir: Path, document: str
) -> None:
    """A transition to an unknown state or an action the module lacks fails at load time,
    not at the first order that reaches it, and the error names the document."""
    write_chart(tmp_path, document, charts_dir / "pizza.py")
    with pytest.raises(ChartError, match=r"bad\.yaml"):
        load_charts(tmp_path)


def test_unknown_action_named_by_load_chart_too(tmp_path: Path, charts_dir: Path) -> None:
    """load_chart on one document applies the same checks as load_charts."""
    path = write_chart(tmp_path, UNKNOWN_TRANSITION_ACTION, charts_dir / "pizza.py")
    with pytest.raises(ChartError, match="noSuchAction") as info:
        load_chart(path)
    assert "bad.yaml" in str(info.value)


def test_document_without_actions_module_is_a_chart_error(tmp_path: Path) -> None:
    """A chart is a pair of files: a YAML alone is refused, naming both files."""
    write_chart(tmp_path, MINIMAL, None)
    with pytest.raises(ChartError) as info:
        load_charts(tmp_path)
    assert "bad.yaml" in str(info.value)
    assert "bad.py" in str(info.value)


def test_actions_module_without_context_subclass_is_a_chart_error(tmp_path: Path) -> None:
    """The actions module must define a Context subclass; the error names the module."""
    write_chart(tmp_path, MINIMAL, '"""No context here."""\n\nX = 1\n')
    with pytest.raises(ChartError, match=r"bad\.py") as info:
        load_charts(tmp_path)
    assert "Context" in str(info.value)


def test_actions_module_that_fails_to_import_is_a_chart_error(tmp_path: Path) -> None:
    """An actions module raising on import is a ChartError naming the module."""
    write_chart(tmp_path, MINIMAL, "raise RuntimeError('boom')\n")
    with pytest.raises(ChartError, match=r"bad\.py.*boom"):
        load_charts(tmp_path)


def test_directory_without_documents_is_a_chart_error(tmp_path: Path) -> None:
    """Starting with no chart at all is refused, naming the directory."""
    with pytest.raises(ChartError, match=re.escape(str(tmp_path))):
        load_charts(tmp_path)


@pytest.mark.parametrize(
    ("document", "where", "what"),
    [
        (UNKNOWN_TARGET, "line 6, state 'orderPizza'", "unknown state 'nowhere'"),
        (UNKNOWN_TRANSITION_ACTION, "line 6, state 'orderPizza'", "action 'noSuchAction'"),
        (UNKNOWN_ENTRY_ACTION, "line 8, state 'other'", "enter action 'noSuchAction'"),
    ],
    ids=["unknown-target", "unknown-transition-action", "unknown-entry-action"],
)
def test_load_errors_name_the_line_and_the_state(
    tmp_path: Path, charts_dir: Path, document: str, where: str, what: str
) -> None:
    """The error points at the YAML line of the transition or state that holds the flaw."""
    write_chart(tmp_path, document, charts_dir / "pizza.py")
    with pytest.raises(ChartError) as info:
        load_charts(tmp_path)
    assert where in info.value.detail
    assert what in info.value.detail


def with_after(item: str) -> str:
    return f"""\
name: bad
states:
  orderPizza:
    initial: true
    after:
      - {item}
  other:
    final: true
"""


@pytest.mark.parametrize(
    ("item", "what"),
    [
        ("{target: other}", "needs a 'delay'"),
        ("{delay: -1, target: other}", "delay must be from 0 to 1e+09 seconds, not -1"),
        ("{delay: .inf, target: other}", "delay must be from 0 to 1e+09 seconds, not inf"),
        ("{delay: .nan, target: other}", "delay must be from 0 to 1e+09 seconds, not nan"),
        ("{delay: 1000000000000, target: other}", "delay must be from 0 to 1e+09"),
        ("{delay: noSuchDelay, target: other}", "delay 'noSuchDelay'"),
        ("{delay: 5, target: nowhere}", "unknown state 'nowhere'"),
        ("{delay: 5, event: GO, target: other}", "must not name an event"),
        ("{delay: [5], target: other}", "seconds or a name"),
    ],
)
def test_a_flawed_after_is_refused_at_load(
    tmp_path: Path, charts_dir: Path, item: str, what: str
) -> None:
    """Each way an ``after`` item can be wrong is a ChartError naming the state."""
    write_chart(tmp_path, with_after(item), charts_dir / "pizza.py")
    with pytest.raises(ChartError) as info:
        load_charts(tmp_path)
    assert "state 'orderPizza'" in info.value.detail
    assert what in info.value.detail


def test_chart_options_override_defaults_of_the_same_kind(charts_dir: Path) -> None:
    """Options set for a chart replace its defaults; an int may stand for a float."""
    chart = load_charts(charts_dir, {"pizza": {"kitchenTimeout": 2, "maxRetries": 0}})["pizza"]
    assert chart.context_class.options["kitchenTimeout"] == 2
    assert chart.context_class.options["maxRetries"] == 0
    assert chart.context_class.options["retryBackoff"] == 2.0
    assert load_charts(charts_dir)["pizza"].context_class.options["maxRetries"] == 3


@pytest.mark.parametrize(
    ("options", "what"),
    [
        ({"pizza": {"ovenTemperature": 250}}, "no option 'ovenTemperature'"),
        ({"pizza": {"kitchenTimeout": "soon"}}, "must be like its default"),
        ({"pizza": {"maxRetries": True}}, "must be like its default"),
        ({"pizza": {"kitchenTimeout": -1}}, "not negative"),
        ({"pizza": {"retryBackoff": float("nan")}}, "must be a finite number"),
        ({"pizza": {"deliveryTimeout": float("inf")}}, "must be a finite number"),
        ({"sushi": {"kitchenTimeout": 1}}, "unknown charts ['sushi']"),
    ],
)
def test_a_wrong_chart_option_is_refused(
    charts_dir: Path, options: dict[str, dict[str, object]], what: str
) -> None:
    with pytest.raises(ChartError) as info:
        load_charts(charts_dir, options)
    assert what in info.value.detail


def test_a_history_state_is_refused_at_load(tmp_path: Path, charts_dir: Path) -> None:
    """History would live in the chart's shared engine, not in each order's snapshot."""
    document = MINIMAL + "    history:\n      h:\n        type: deep\n"
    write_chart(tmp_path, document, charts_dir / "pizza.py")
    with pytest.raises(ChartError, match="history states are not supported") as info:
        load_charts(tmp_path)
    assert "state 'only'" in info.value.detail


INVOKING = """\
name: bad
states:
  only:
    initial: true
    invoke:
      - src: somewhere
"""

DELAYED_SEND = """\
name: bad
states:
  only:
    initial: true
    transitions:
      - event: GO
        target: later
  later:
    enter:
      - if:
          - cond: "True"
            actions:
              - send: {event: FINISH, delay: 20s}
"""

CANCELLING = """\
name: bad
states:
  only:
    initial: true
    exit:
      - cancel: {sendid: x}
"""


@pytest.mark.parametrize(
    ("document", "state", "what"),
    [
        (INVOKING, "only", "'invoke' is not supported"),
        (DELAYED_SEND, "later", "a delayed 'send'"),
        (CANCELLING, "only", "a delayed 'send' (or a 'cancel')"),
    ],
    ids=["invoke", "delayed-send", "cancel"],
)
def test_actions_that_run_outside_a_turn_are_refused_at_load(
    tmp_path: Path, charts_dir: Path, document: str, state: str, what: str
) -> None:
    """python-statemachine runs a document's invoke on a thread that sends its outcome to
    the engine all orders of the chart share, and waits out a delayed send inside the turn,
    holding the server: both are refused, with 'after' and send_command as the ways."""
    write_chart(tmp_path, document, charts_dir / "pizza.py")
    with pytest.raises(ChartError, match=re.escape(what)) as info:
        load_charts(tmp_path)
    assert f"state {state!r}" in info.value.detail


LOOPING = """\
name: bad
states:
  idle:
    initial: true
    transitions:
      - event: GO
        target: a
  a:
    transitions:
      - target: b
  b:
    transitions:
      - target: a
"""

SELF_ENABLING = """\
name: bad
states:
  idle:
    initial: true
    transitions:
      - on: addPizzaToItems
"""

INTO_OWN_CHILD = """\
name: bad
states:
  idle:
    initial: true
    transitions:
      - event: GO
        target: outer
  outer:
    transitions:
      - target: inner
    states:
      inner:
        initial: true
"""

GUARDED_LOOP = """\
name: bad
states:
  idle:
    initial: true
    transitions:
      - event: GO
        target: a
  a:
    transitions:
      - target: b
        cond: retryDelay
  b:
    transitions:
      - target: a
"""


@pytest.mark.parametrize(
    ("document", "loop"),
    [
        (LOOPING, "a -> b -> a"),
        (SELF_ENABLING, "idle -> idle"),
        (INTO_OWN_CHILD, "inner -> inner"),
    ],
    ids=["two-states", "targetless", "into-own-child"],
)
def test_eventless_transitions_that_loop_are_refused_at_load(
    tmp_path: Path, charts_dir: Path, document: str, loop: str
) -> None:
    """python-statemachine takes eventless transitions until none is enabled, inside the
    turn: an unguarded loop of them held the server's event loop for good (and, in the
    initial state, hung the start)."""
    write_chart(tmp_path, document, charts_dir / "pizza.py")
    with pytest.raises(
        ChartError,
        match=re.escape("without a guard loop forever"),
    ) as info:
        load_charts(tmp_path)
    assert info.value.detail.endswith(loop)


DONE_LOOP = """\
name: bad
states:
  job:
    initial: true
    states:
      working:
        initial: true
        transitions:
          - event: FINISH
            target: finished
      finished:
        final: true
    transitions:
      - event: done.state.job
        target: {target}
  elsewhere: {{}}
"""
PARALLEL_DONE_LOOP = """\
name: bad
states:
  both:
    initial: true
    parallel: true
    states:
      left:
        states:
          l1:
            initial: true
            transitions:
              - event: GO
                target: l2
          l2:
            final: true
      right:
        states:
          r1:
            final: true
    transitions:
      - event: done.state.both
        target: {target}
  elsewhere: {{}}
"""


@pytest.mark.parametrize(
    ("document", "target", "loop"),
    [(DONE_LOOP, "finished", "finished -> finished"), (PARALLEL_DONE_LOOP, "l2", "l2 -> l2")],
    ids=["compound", "parallel"],
)
def test_a_done_state_transition_back_into_its_final_state_is_refused_at_load(
    tmp_path: Path, charts_dir: Path, document: str, target: str, loop: str
) -> None:
    """Entering a final child raises done.state.<parent> inside the turn; a transition on it
    that enters that final state again raised it again, forever, holding the server. To a
    state that raises nothing, it is a plain step."""
    write_chart(tmp_path, document.format(target=target), charts_dir / "pizza.py")
    with pytest.raises(ChartError, match=re.escape("or done.state events")) as info:
        load_charts(tmp_path)
    assert info.value.detail.endswith(loop)
    write_chart(tmp_path, document.format(target="elsewhere"), charts_dir / "pizza.py")
    chart = load_charts(tmp_path)["bad"]
    machine = chart.start("o1")
    machine.send("FINISH" if document is DONE_LOOP else "GO", {})
    assert machine.state_path() == "elsewhere"


def test_a_zero_second_timer_back_into_its_state_is_refused_at_load(
    tmp_path: Path, charts_dir: Path
) -> None:
    """A 0-second timer fires as soon as its state is entered; one that re-enters its own
    state set itself again in every turn, forever (a durable livelock). To another state,
    it is a plain step."""
    write_chart(tmp_path, with_after("{delay: 0, target: orderPizza}"), charts_dir / "pizza.py")
    with pytest.raises(ChartError, match="0-second timers") as info:
        load_charts(tmp_path)
    assert info.value.detail.endswith("orderPizza -> orderPizza")
    write_chart(tmp_path, with_after("{delay: 0, target: other}"), charts_dir / "pizza.py")
    assert "bad" in load_charts(tmp_path)


def test_a_guarded_eventless_loop_is_the_chart_authors_to_end(
    tmp_path: Path, charts_dir: Path
) -> None:
    """A guard may end a loop (its value changes with the actions), so it is not refused at
    load. One whose guard stays true is refused in the turn, after a bounded number of
    transitions, and the engine serves the next order as if nothing had happened."""
    write_chart(tmp_path, GUARDED_LOOP, charts_dir / "pizza.py")
    chart = load_charts(tmp_path)["bad"]
    machine = chart.start("o-1")
    with pytest.raises(ChartLoop, match=f"took {MAX_TRANSITIONS_PER_TURN} transitions") as info:
        machine.send("GO", {})
    assert info.value.detail.split(", the last ")[1].startswith(("a -> b:", "b -> a:"))
    assert chart.start("o-2").state_path() == "idle"


INITIAL_LOOP = """\
name: bad
states:
  a:
    initial: true
    transitions:
      - target: b
        cond: retryDelay
  b:
    transitions:
      - target: a
        cond: retryDelay
"""


def test_initial_states_that_loop_are_refused_at_load(tmp_path: Path, charts_dir: Path) -> None:
    """The loader starts an order of each chart: one whose initial states' guarded eventless
    transitions loop is refused then, by the same bound. Building the chart's shared machine
    entered the initial states outside that bound, and loading hung."""
    write_chart(tmp_path, INITIAL_LOOP, charts_dir / "pizza.py")
    with pytest.raises(ChartError, match="the chart cannot start: the chart took 1000 transitions"):
        load_charts(tmp_path)


RAISING_LOOP = """\
name: bad
states:
  idle:
    initial: true
    transitions:
      - event: GO
        target: pinging
      - event: ONCE
        target: passing
  pinging:
    enter:
      - raise: PING
    transitions:
      - event: PING
        on:
          - raise: PING
  passing:
    enter:
      - raise: STOP
    transitions:
      - event: STOP
        target: idle
"""
NO_ACTIONS = "from orchestrator import Context\nclass Bad(Context):\n    pass\n"


def test_events_raised_again_and_again_are_refused_in_the_turn(tmp_path: Path) -> None:
    """An action that raises the event that runs it loops inside the turn; the bound stops
    it, while a chart that raises events that settle runs them all in the turn."""
    chart = load_chart(write_chart(tmp_path, RAISING_LOOP, NO_ACTIONS))
    with pytest.raises(ChartLoop, match="the last pinging -> pinging:"):
        chart.start("o-1").send("GO", {})
    machine = chart.start("o-2")
    machine.send("ONCE", {})
    assert machine.state_path() == "idle"


NESTED_EVENTLESS = """\
name: gate
states:
  open:
    initial: true
    transitions:
      - event: BUMP
        on: bump
      - event: GO
        target: stage
  stage:
    states:
      checking:
        initial: true
        transitions:
          - target: big
            cond: isBig
          - target: small
      big:
        transitions:
          - event: BACK
            target: open
      small:
        transitions:
          - event: BACK
            target: open
"""
GATE_ACTIONS = """\
from typing import ClassVar
from orchestrator import Context
class Gate(Context):
    fields: ClassVar[dict] = {"n": 0}
    def bump(self) -> None:
        self.n += 1
    def isBig(self) -> bool:
        return self.n > 1
"""


def test_eventless_transitions_in_a_nested_state_are_taken_in_the_same_turn(
    tmp_path: Path,
) -> None:
    """The engine looks for eventless transitions only in charts that have some (it skips
    the search in the others); one nested in a compound state counts, and is taken."""
    chart = load_chart(write_chart(tmp_path, NESTED_EVENTLESS, GATE_ACTIONS))
    machine = chart.start("o1")
    machine.send("GO", {})
    assert machine.state_path() == "stage.small"
    for event in ("BACK", "BUMP", "BUMP", "GO"):
        machine.send(event, {})
    assert machine.state_path() == "stage.big"


def waiting_for(event: str) -> str:
    return MINIMAL + f"    transitions:\n      - event: {event}\n"


@pytest.mark.parametrize("event", ["after.later", "done.bar", "error.oops", "done.invoke"])
def test_a_chart_event_with_a_platform_name_is_refused_at_load(
    tmp_path: Path, charts_dir: Path, event: str
) -> None:
    """Events named after., done. or error. are the platform's own and refused over HTTP,
    so a chart waiting for another such name would wait forever; the prefix descriptor
    ``done.invoke`` (python-statemachine matches it by prefix, the runtime does not) too."""
    write_chart(tmp_path, waiting_for(event), charts_dir / "pizza.py")
    with pytest.raises(ChartError, match=re.escape(f"the event {event!r} takes a name")):
        load_charts(tmp_path)


@pytest.mark.parametrize("event", ["done.invoke.kitchen", "error.invoke.kitchen", "done.state.x"])
def test_the_platform_events_a_chart_may_wait_for_load(
    tmp_path: Path, charts_dir: Path, event: str
) -> None:
    write_chart(tmp_path, waiting_for(event), charts_dir / "pizza.py")
    assert event in load_charts(tmp_path)["bad"].events


CONTEXT = """\
from __future__ import annotations
from dataclasses import dataclass
from orchestrator.context import Context


@dataclass
class Topping:
    name: str


class Bad(Context):
    fields = {FIELDS}
    create_event = "GO"
    create_fields = {CREATE_FIELDS}
"""

GO = MINIMAL + "    transitions:\n      - event: GO\n"


def context_module(fields: str = "{}", create_fields: str = "{}") -> str:
    return CONTEXT.replace("{FIELDS}", fields).replace("{CREATE_FIELDS}", create_fields)


def test_an_actions_module_with_a_dataclass_loads(tmp_path: Path) -> None:
    """A dataclass resolves its annotations through the module's entry in sys.modules,
    which an actions module now has, as an imported one would."""
    write_chart(tmp_path, GO, context_module('{"items": []}', '{"items": list}'))
    assert load_charts(tmp_path)["bad"].context_class.create_fields == {"items": list}


@pytest.mark.parametrize(
    ("fields", "create_fields", "what"),
    [
        ('{"order_id": None}', "{}", "the field 'order_id' would hide"),
        ('{"state": None}', "{}", "the field 'state' would hide"),
        ('{"data": {}}', "{}", "the field 'data' would hide"),
        ('{"_moves": []}', "{}", "the field '_moves' would hide"),
        ("{}", '{"price": int | float}', "create field 'price' must name a JSON type"),
        ("{}", '{"price": "number"}', "create field 'price' must name a JSON type"),
    ],
)
def test_context_fields_the_runtime_cannot_keep_are_refused_at_load(
    tmp_path: Path, fields: str, create_fields: str, what: str
) -> None:
    """A field named like the context's own attributes (the order id, the configuration,
    data()) broke every turn; a create field that is not a JSON type broke POST /orders
    and GET /charts with a 500."""
    write_chart(tmp_path, GO, context_module(fields, create_fields))
    with pytest.raises(ChartError, match=re.escape(what)) as info:
        load_charts(tmp_path)
    assert "bad.py" in info.value.detail


def test_the_shared_engine_serves_the_next_order_after_one_finishes(chart: Chart) -> None:
    """Reaching a top-level final state stops python-statemachine's engine; the chart's
    shared engine is set running again (not rebuilt), and orders still mid-flow carry on,
    each entry action running for its own order only."""
    waiting = drive(chart, ["CONFIRM_PIZZA"], order_id="o-2")
    waiting.context.take_commands()
    engine_before = chart.engine.bind(waiting.context)
    finished = drive(chart, PATHS["done"][0], order_id="o-1")
    assert finished.is_final()
    waiting.send("done.invoke.sendOrderToKitchen", {})
    waiting.send("PIZZA_READY", {})
    assert waiting.state_path() == "deliverPizza.sendingOrderToDelivery"
    assert [c.type for c in waiting.context.take_commands()] == ["DELIVER_PIZZA"]
    assert chart.engine.bind(waiting.context) is engine_before
    cancelled = drive(chart, ["CANCEL"], order_id="o-3")
    assert cancelled.is_final() and cancelled.state_path() == "cancelled"
    fresh = drive(chart, [], order_id="o-4")
    assert fresh.next_events() == ("ADD_PIZZA", "REMOVE_PIZZA", "CONFIRM_PIZZA", "CANCEL")


def test_nested_states_that_are_not_a_mapping_name_the_file(
    tmp_path: Path, charts_dir: Path
) -> None:
    document = MINIMAL + "    states: [a, b]\n"
    write_chart(tmp_path, document, charts_dir / "pizza.py")
    with pytest.raises(ChartError, match=r"bad\.yaml: line 3, state 'only': 'states' must be"):
        load_charts(tmp_path)


def test_orders_share_no_mutable_data_with_the_defaults_their_data_or_each_other() -> None:
    """Each context copies its fields' defaults and the data it is restored from, JSON or
    not: an action that changes one order's list or set changes no other order's."""

    class Tagged(Context):
        fields: ClassVar[dict[str, Any]] = {"items": [{"toppings": []}], "tags": {"new"}}
        items: list[dict[str, list[str]]]
        tags: set[str]

    data = {"items": [{"toppings": ["basil"]}]}
    first, second, restored = Tagged("a"), Tagged("b"), Tagged("c", data)
    first.items[0]["toppings"].append("olives")
    first.tags.add("vip")
    restored.items[0]["toppings"].append("ham")
    assert second.items == [{"toppings": []}] and second.tags == {"new"}
    assert Tagged.fields == {"items": [{"toppings": []}], "tags": {"new"}}
    assert data == {"items": [{"toppings": ["basil"]}]}
    sent = {"items": [{"toppings": ["basil"]}]}
    first.send_command("MAKE_PIZZA", sent)
    sent["items"][0]["toppings"].append("ham")
    assert first.take_commands()[0].data == {"items": [{"toppings": ["basil"]}]}


ASYNC_ACTIONS = GATE_ACTIONS.replace("    def bump", "    async def bump")


def test_a_chart_with_a_coroutine_action_is_refused_at_load(tmp_path: Path) -> None:
    """python-statemachine runs such a chart on its async engine, which a turn cannot drive:
    every event of it failed. The loader says which method to change, and where."""
    write_chart(tmp_path, NESTED_EVENTLESS, ASYNC_ACTIONS)
    with pytest.raises(ChartError, match=re.escape("action 'bump' is a coroutine")) as info:
        load_charts(tmp_path)
    assert "bad.yaml: line 6, state 'open'" in info.value.detail


WAITING_CHART = """\
name: bad
states:
  idle:
    initial: true
    transitions:
      - event: ADD
        on: add
        cond: allowed
      - event: WAIT
        target: waiting
  waiting:
    after:
      - delay: patience
        target: idle
"""
WAITING_ACTIONS = """\
import functools
from orchestrator import Context


def supplied(function):
    @functools.wraps(function)
    def wrapper(self, *args, **kwargs):
        return function(self, *args, menu="margherita", **kwargs)
    return wrapper


class Waiting(Context):
    def add(self, data, pizza) -> None:
        pass

    def allowed(self, event, limit) -> bool:
        return True

    @staticmethod
    def patience() -> float:
        return 1.0
"""


@pytest.mark.parametrize(
    ("replace", "by"),
    [
        ("def patience() -> float:", "def patience(data) -> float:"),
        ("    @staticmethod\n    def patience() -> float:", "    def patience(self, at) -> float:"),
    ],
    ids=["static", "method"],
)
def test_a_delay_that_needs_an_argument_is_refused_at_load(
    tmp_path: Path, replace: str, by: str
) -> None:
    """The turn calls a named delay with no arguments, so one that needs any failed each time
    its state was entered, refusing the event. Actions' and guards' parameters are not
    checked (``add`` and ``allowed`` need more than python-statemachine passes by name):
    what it passes them depends on the event."""
    path = write_chart(tmp_path, WAITING_CHART, WAITING_ACTIONS)
    assert "bad" in load_charts(tmp_path)
    write_chart(tmp_path, WAITING_CHART, WAITING_ACTIONS.replace(replace, by))
    with pytest.raises(ChartError, match=r"delay 'patience' needs '(data|at)'") as info:
        load_chart(path)
    assert "bad.yaml: line " in info.value.detail
    assert "a delay is called with no arguments" in info.value.detail


def test_a_delay_whose_decorator_supplies_its_argument_loads(tmp_path: Path) -> None:
    actions = WAITING_ACTIONS.replace(
        "    @staticmethod\n    def patience() -> float:",
        "    @supplied\n    def patience(self, menu) -> float:",
    )
    chart = load_chart(write_chart(tmp_path, WAITING_CHART, actions))
    machine = chart.start("o-1")
    machine.send("WAIT", {})
    assert machine.state_path() == "waiting"


@pytest.mark.parametrize("guard", ["count < 1_000", "count < 1e3", "In('only') and count < 2"])
def test_numbers_in_a_guard_expression_are_not_names(tmp_path: Path, guard: str) -> None:
    """Names were picked out of guard expressions by a pattern that read ``1_000`` and the
    ``e3`` of ``1e3`` as names, and refused the chart; python-statemachine reads them."""
    document = MINIMAL + f"    transitions:\n      - event: GO\n        cond: {guard}\n"
    actions = "from typing import ClassVar\nfrom orchestrator import Context\n"
    actions += "class Counting(Context):\n    fields: ClassVar[dict] = {'count': 1}\n"
    chart = load_chart(write_chart(tmp_path, document, actions))
    machine = chart.start("o-1")
    machine.send("GO", {})
    assert machine.state_path() == "only"


def with_service_events(listed: str) -> str:
    return GO.replace("name: bad\n", f"name: bad\nserviceEvents: {listed}\n") + (
        "      - event: READY\n"
    )


def test_the_service_events_of_the_bundled_charts(charts_dir: Path) -> None:
    """The answers of the services (and the payment provider's callbacks) are marked in
    both formats, YAML and XState."""
    charts = load_charts(charts_dir)
    assert charts["pizza"].service_events == {"PIZZA_READY", "PIZZA_DELIVERED", "PIZZA_CANCELLED"}
    assert charts["xstate_pizza"].service_events == {"PIZZA_READY", "PIZZA_DELIVERED"}
    assert charts["payment"].service_events == {"PAYMENT_COMPLETED", "PAYMENT_SETTLED"}
    assert charts["payment"].context_class.private_fields == {"taskToken"}


@pytest.mark.parametrize(
    ("listed", "what"),
    [
        ("READY", "serviceEvents must be a list of event names"),
        ("[READY, 3]", "serviceEvents must be a list of event names"),
        ("[BURN]", "serviceEvents: the chart has no event 'BURN'"),
        ("[done.invoke.x]", "'done.invoke.x' is the platform's own"),
        ("[GO]", "serviceEvents: 'GO' creates orders"),
    ],
)
def test_service_events_that_cannot_be_are_refused_at_load(
    tmp_path: Path, listed: str, what: str
) -> None:
    write_chart(tmp_path, with_service_events(listed), context_module())
    with pytest.raises(ChartError, match=re.escape(what)) as info:
        load_charts(tmp_path)
    assert "bad.yaml" in info.value.detail


def test_service_events_load(tmp_path: Path) -> None:
    write_chart(tmp_path, with_service_events("[READY]"), context_module())
    assert load_charts(tmp_path)["bad"].service_events == {"READY"}


def test_a_private_field_must_be_a_field(tmp_path: Path) -> None:
    module = context_module('{"token": None}').replace(
        "    create_event", '    private_fields = frozenset({"tokn"})\n    create_event'
    )
    write_chart(tmp_path, GO, module)
    with pytest.raises(ChartError, match=re.escape("private_fields ['tokn'] are not among")):
        load_charts(tmp_path)
