"""Tests of orchestrator.xstate: XState machine configs converted to native documents.

Each supported feature is converted and, where it has behaviour, run on python-statemachine
with a Context model; each refused feature must fail with a ChartError naming the file and
the state. The seed's pizza machine (statecharts/xstate_pizza.json) is converted and run
through a whole order, on its own and through a real server.
"""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest
from statemachine import StateChart
from statemachine.io import load

from orchestrator import turn
from orchestrator.chart_graph import chart_graph
from orchestrator.charts import load_chart, load_charts
from orchestrator.context import Context
from orchestrator.documents import prepare, with_invoke_ids
from orchestrator.errors import ChartError, UnknownEvent
from orchestrator.model import MACHINE_ROOT, START_EVENT, Event, JsonObject
from orchestrator.xstate import read_xstate, xstate_to_native
from tests.conftest import ServerFactory
from tests.helpers import CONFIRM, DONE, HAWAII, MARGHERITA, add, send, wait_for_state
from tests.xstate_ref import ours, reference


class Counter(Context):
    """A small context whose actions and guards the test machines name."""

    fields: ClassVar[JsonObject] = {"n": 0, "seen": []}
    n: int
    seen: list[str]
    TIMEOUT = 2.5

    def bump(self) -> None:
        self.n += 1

    def note(self, event: str) -> None:
        self.seen.append(event)

    def big(self) -> bool:
        return self.n >= 2

    def small(self) -> bool:
        return self.n < 2

    def hello(self) -> None:
        self.seen.append("hello")

    def bye(self) -> None:
        self.seen.append("bye")

    def send_it(self) -> None:
        self.send_command("DO_IT", {"n": self.n}, invoke="doing")


def convert(config: JsonObject) -> JsonObject:
    return xstate_to_native(config, "t.json")


def run(config: JsonObject) -> tuple[StateChart[Any], Counter]:
    """The converted machine built by statemachine.io (timers left out), bound to a Counter."""
    native = convert(config)
    invoke_ids = native.pop("invokeIds", {})
    native.pop("eventNames", None)
    native.pop("aliases", None)
    machine_class = load(json.dumps(_without_after(native)), format="json")
    machine_class.catch_errors_as_events = False
    machine_class.allow_event_without_transition = False
    context = with_invoke_ids(Counter, invoke_ids)("o-1")
    return machine_class(model=context), context


def _without_after(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _without_after(v) for k, v in node.items() if k != "after"}
    if isinstance(node, list):
        return [_without_after(v) for v in node]
    return node


def states(sm: StateChart[Any]) -> set[str]:
    return {str(v) for v in sm.configuration_values}


TWO = {"a": {"on": {"GO": "b"}}, "b": {}}


def machine(**states: Any) -> JsonObject:
    """A config with the given top-level states, the first one initial."""
    return {"id": "m", "initial": next(iter(states)), "states": states}


# -- conversion of supported features ----------------------------------------------------


def test_sibling_target_and_initial() -> None:
    """A string transition targets a sibling; ``initial`` marks that child initial."""
    native = convert(machine(**TWO))
    assert native == {
        "name": "t",
        "states": {
            "a": {"initial": True, "transitions": [{"event": "GO", "target": "b"}]},
            "b": {},
        },
    }
    sm, _ = run(machine(**TWO))
    sm.send("GO")
    assert states(sm) == {"b"}


def test_object_transition_with_actions_and_guard() -> None:
    """``actions`` become ``on``; ``cond`` (v4) and ``guard`` (v5), names or {type} objects."""
    config = machine(
        a={
            "on": {
                "BUMP": {"actions": ["bump", {"type": "note"}]},
                "GO": [
                    {"target": "big", "cond": "big"},
                    {"target": "small", "guard": {"type": "small"}, "actions": "note"},
                ],
            }
        },
        big={},
        small={},
    )
    transitions = convert(config)["states"]["a"]["transitions"]
    assert transitions == [
        {"event": "BUMP", "on": ["bump", "note"]},
        {"event": "GO", "target": "big", "cond": "big"},
        {"event": "GO", "target": "small", "cond": "small", "on": ["note"]},
    ]
    sm, context = run(config)
    sm.send("GO")
    assert states(sm) == {"small"}
    assert context.seen == ["GO"]
    sm, context = run(config)
    sm.send("BUMP")
    sm.send("BUMP")
    sm.send("GO")
    assert states(sm) == {"big"}
    assert context.n == 2


def test_targetless_transition_runs_actions_without_reentry() -> None:
    """A transition without target is internal: actions run, entry and exit do not."""
    config = machine(a={"entry": "hello", "exit": "bye", "on": {"BUMP": {"actions": "bump"}}})
    sm, context = run(config)
    sm.send("BUMP")
    assert context.n == 1
    assert context.seen == ["hello"]


# Transitions to the state itself and to its own child, with and without v5's reenter.
SELF_TARGETS: JsonObject = {
    "id": "m",
    "initial": "p",
    "types": {"context": {}},
    "states": {
        "p": {
            "initial": "x",
            "entry": "pin",
            "exit": "pout",
            "on": {
                "SAME": {"target": "p", "actions": "same"},
                "AGAIN": {"target": "p", "reenter": True, "actions": "again"},
                "DOWN": {"target": ".x", "reenter": True, "actions": "down"},
                "DOWN2": {"target": ".x", "actions": "down2"},
                "SELF": {"reenter": True, "actions": "selfish"},
            },
            "states": {
                "x": {
                    "entry": "xin",
                    "exit": "xout",
                    "on": {"GO": "y", "ME": {"target": "x", "actions": "me"}},
                },
                "y": {},
            },
        }
    },
}
SELF_TARGET_EVENTS = [
    *("GO", "SAME", "ME", "GO", "AGAIN", "GO", "DOWN", "GO", "DOWN2", "SELF", "ME")
]


@pytest.mark.parametrize("version", [5, 4])
def test_self_targets_and_reenter_as_xstate(tmp_path: Path, version: int) -> None:
    """A transition to its own state: v5 does not leave the state (it leaves its
    descendants and enters its initial child again; an atomic state only runs the
    actions) unless told to ``reenter``, which also makes a transition to a child leave
    and enter its source; v4 leaves and enters it again. v5's ``types`` is ignored.
    (v5 used to leave and enter the state; ``reenter`` was refused.)"""
    config = SELF_TARGETS
    events = SELF_TARGET_EVENTS
    if version == 4:
        config = json.loads(json.dumps(SELF_TARGETS))
        del config["types"]
        on = config["states"]["p"]["on"]
        for key in ("AGAIN", "DOWN", "SELF"):
            del on[key]
        config["predictableActionArguments"] = True
        events = ["GO", "SAME", "ME", "GO", "DOWN2", "ME"]
    theirs, _ = reference(config, events, version=version)
    mine = ours(tmp_path, config, events)
    assert [s.value for s in mine.steps] == [s.value for s in theirs]
    assert [s.actions for s in mine.steps] == [s.actions for s in theirs]
    if version == 5:
        assert theirs[2].actions == ("same", "xin")
        assert theirs[3].actions == ("me",)


def test_target_forms() -> None:
    """Sibling paths, ``.child`` (internal, as XState), ``#id``, ``#id.path``, default ids."""
    config = machine(
        p={
            "id": "top",
            "initial": "x",
            "on": {"TO_Y": ".y", "TO_Z": "q.z"},
            "states": {"x": {"on": {"SELF_ID": "#top.y"}}, "y": {"on": {"BACK": "#m.p.x"}}},
        },
        q={"initial": "z", "states": {"z": {"on": {"HOME": "#top"}}}},
    )
    transitions = convert(config)["states"]["p"]["transitions"]
    assert transitions == [
        {"event": "TO_Y", "target": "y", "internal": True},
        {"event": "TO_Z", "target": "z"},
    ]
    sm, _ = run(config)
    sm.send("TO_Y")
    assert states(sm) == {"p", "y"}
    sm.send("BACK")
    assert states(sm) == {"p", "x"}
    sm.send("SELF_ID")
    assert states(sm) == {"p", "y"}
    sm.send("TO_Z")
    assert states(sm) == {"q", "z"}
    sm.send("HOME")
    assert states(sm) == {"p", "x"}


def test_default_ids_ignore_the_parents_custom_id() -> None:
    """As in XState, a state's default id is the machine id and its path (``#m.p.x``), even
    when its parent has an id of its own; the parent's id reaches it as ``#top.x``."""
    config = machine(
        p={"id": "top", "initial": "x", "states": {"x": {}, "y": {"on": {"A": "#m.p.x"}}}},
        q={"on": {"B": "#top.y"}},
    )
    native = convert(config)
    assert native["states"]["p"]["states"]["y"]["transitions"] == [{"event": "A", "target": "x"}]
    assert native["states"]["q"]["transitions"] == [{"event": "B", "target": "y"}]
    config["states"]["q"]["on"]["B"] = "#top.x.nope"
    with pytest.raises(ChartError, match=re.escape("q: on 'B': unknown target '#top.x.nope'")):
        convert(config)


def test_internal_flag_is_kept() -> None:
    config = machine(
        p={"initial": "x", "states": {"x": {}}, "on": {"R": {"target": ".x", "internal": False}}}
    )
    assert convert(config)["states"]["p"]["transitions"] == [
        {"event": "R", "target": "x", "internal": False}
    ]


def test_null_transition_forbids_the_event() -> None:
    """``null`` is XState's forbidden transition: the child swallows the parent's event."""
    config = machine(
        p={"initial": "x", "on": {"GO": "done"}, "states": {"x": {"on": {"GO": None}}}},
        done={"type": "final"},
    )
    assert convert(config)["states"]["p"]["states"]["x"]["transitions"] == [{"event": "GO"}]
    sm, _ = run(config)
    sm.send("GO")
    assert states(sm) == {"p", "x"}


def test_always_and_transient_event_are_eventless() -> None:
    """``always`` (and v4's ``""`` event) become eventless transitions, taken at once."""
    config = machine(
        a={"on": {"BUMP": {"actions": "bump"}, "CHECK": "check"}},
        check={"always": [{"target": "high", "cond": "big"}, {"target": "a"}]},
        high={"on": {"": "a"}},
    )
    native = convert(config)
    assert native["states"]["check"]["transitions"] == [
        {"target": "high", "cond": "big"},
        {"target": "a"},
    ]
    assert native["states"]["high"]["transitions"] == [{"target": "a"}]
    sm, context = run(config)
    sm.send("CHECK")
    assert states(sm) == {"a"}
    sm.send("BUMP")
    sm.send("BUMP")
    sm.send("CHECK")
    assert states(sm) == {"a"}  # through high and back, both eventless
    assert context.n == 2


def test_entry_exit_and_meta_message() -> None:
    """``meta.message`` sets ``status`` on entry, before the ``entry`` actions."""
    config = machine(
        a={"entry": ["hello"], "exit": "bye", "meta": {"message": "Hi"}, "on": {"GO": "b"}},
        b={},
    )
    assert convert(config)["states"]["a"]["enter"] == [
        {"assign": {"location": "status", "expr": "'Hi'"}},
        "hello",
    ]
    sm, context = run(config)
    assert context.status == "Hi"
    sm.send("GO")
    assert context.seen == ["hello", "bye"]


@pytest.mark.parametrize(
    "message",
    ['It\'s "done"', "back\\slash and\nnewline", "&amp; && || === true", "déjà vu 🍕", ""],
)
def test_meta_message_is_kept_exactly(message: str) -> None:
    """Quotes, backslashes, JavaScript-looking operators and entities survive unchanged."""
    _, context = run(machine(a={"meta": {"message": message}}))
    assert context.status == message


def test_invoke_becomes_entry_action_and_done_error_transitions() -> None:
    """``src`` runs after ``entry``; onDone/onError listen for done/error.invoke.<id>."""
    config = machine(
        sending={
            "entry": "hello",
            "invoke": {
                "id": "doing",
                "src": "send_it",
                "onDone": {"target": "waiting", "actions": "note"},
                "onError": "failed",
            },
        },
        waiting={},
        failed={},
    )
    state = convert(config)["states"]["sending"]
    assert state["enter"] == ["hello", "begin_invoke_0", "send_it", "end_invoke"]
    assert state["transitions"] == [
        {"event": "done.invoke.doing", "target": "waiting", "on": ["note"]},
        {"event": "error.invoke.doing", "target": "failed"},
    ]
    sm, context = run(config)
    assert [c.type for c in context.take_commands()] == ["DO_IT"]
    sm.send("done.invoke.doing")
    assert states(sm) == {"waiting"}
    assert context.seen == ["hello", "done.invoke.doing"]


def test_after_becomes_timer_items() -> None:
    """Millisecond keys become seconds, names stay names; the list form works too."""
    config = machine(
        a={
            "after": {
                "1000": "b",
                "TIMEOUT": [{"target": "b", "cond": "big"}, {"actions": "bump"}],
            }
        },
        b={"after": [{"delay": 1500, "target": "a"}, {"delay": "TIMEOUT", "target": "a"}]},
    )
    native = convert(config)
    assert native["states"]["a"]["after"] == [
        {"delay": 1.0, "target": "b"},
        {"delay": "TIMEOUT", "target": "b", "cond": "big"},
        {"delay": "TIMEOUT", "on": ["bump"]},
    ]
    assert native["states"]["b"]["after"] == [
        {"delay": 1.5, "target": "a"},
        {"delay": "TIMEOUT", "target": "a"},
    ]


def test_parallel_and_on_done() -> None:
    """Parallel regions all start; ``onDone`` fires when every region is final."""
    region = {"initial": "r1", "states": {"r1": {}, "r2": {"type": "final"}}}
    config = machine(
        p={
            "type": "parallel",
            "states": {
                "x": {**region, "states": {"x1": {"on": {"X": "x2"}}, "x2": {"type": "final"}}},
                "y": {**region, "states": {"y1": {"on": {"Y": "y2"}}, "y2": {"type": "final"}}},
            },
            "onDone": "end",
        },
        end={"type": "final"},
    )
    config["states"]["p"]["states"]["x"]["initial"] = "x1"
    config["states"]["p"]["states"]["y"]["initial"] = "y1"
    native = convert(config)
    assert native["states"]["p"]["parallel"] is True
    assert native["states"]["p"]["transitions"] == [{"event": "done.state.p", "target": "end"}]
    assert native["states"]["end"] == {"final": True}
    sm, _ = run(config)
    assert states(sm) == {"p", "x", "x1", "y", "y1"}
    sm.send("X")
    sm.send("Y")
    assert states(sm) == {"end"}


def test_several_targets_enter_each_region() -> None:
    """A list of targets becomes python-statemachine's space-separated targets."""
    regions = {
        "x": {"initial": "x1", "states": {"x1": {}, "x2": {}}},
        "y": {"initial": "y1", "states": {"y1": {}, "y2": {}}},
    }
    config = machine(
        a={"on": {"GO": {"target": ["#m.p.x.x2", "p.y.y2"]}}},
        p={"type": "parallel", "states": regions},
    )
    assert convert(config)["states"]["a"]["transitions"] == [{"event": "GO", "target": "x2 y2"}]
    sm, _ = run(config)
    sm.send("GO")
    assert states(sm) == {"p", "x", "x2", "y", "y2"}


def test_descriptive_keys_are_ignored() -> None:
    config = machine(a={"description": "d", "tags": ["t"], "meta": {"owner": "me"}})
    config.update(description="m", predictableActionArguments=True, version="1")
    assert convert(config)["states"] == {"a": {"initial": True}}


# -- refusals ----------------------------------------------------------------------------

REFUSED: dict[str, tuple[JsonObject, str, str]] = {
    # name: (config, the state named, a phrase of the reason)
    "history-depth": (
        machine(p={"initial": "x", "states": {"x": {}, "h": {"type": "history", "history": 1}}}),
        "state p.h",
        "'shallow' or 'deep'",
    ),
    "invoke-src-object": (
        machine(a={"invoke": {"id": "i", "src": {"type": "svc"}}}),
        "state a",
        "src objects",
    ),
    "invoke-empty-id": (machine(a={"invoke": {"id": "", "src": "send_it"}}), "state a", "'id'"),
    "invoke-data-in-v5": (
        machine(a={"invoke": {"id": "i", "src": "send_it", "data": {}}}),
        "state a",
        "'data': XState v5 names an invoke's input 'input'",
    ),
    "invoke-input-in-v4": (
        {
            **machine(a={"invoke": {"id": "i", "src": "send_it", "input": {"n": 1}}}),
            "predictableActionArguments": True,
        },
        "state a",
        "'input': XState v4 names an invoke's input 'data'",
    ),
    "invoke-input-not-object": (
        machine(a={"invoke": {"id": "i", "src": "send_it", "input": [1]}}),
        "state a",
        "its input is an object",
    ),
    "done-data": (
        machine(a={"on": {"GO": "end"}}, end={"type": "final", "data": {"n": 1}}),
        "state end",
        "done data",
    ),
    "params-not-object": (
        machine(a={"entry": {"type": "bump", "params": [2]}}),
        "state a",
        "'params' must be an object",
    ),
    "action-object-other-key": (
        machine(a={"entry": {"type": "bump", "by": 2}}),
        "state a",
        "'by': not supported",
    ),
    "assign-entry": (
        machine(a={"entry": [{"type": "xstate.assign", "assignment": {"n": 1}}]}),
        "state a",
        "'xstate.assign' is one of XState's built-in actions",
    ),
    "spawn": (
        machine(a={"on": {"GO": {"actions": {"type": "xstate.spawn"}}}}),
        "state a",
        "built-in actions",
    ),
    "wildcard": (machine(a={"on": {"*": "a"}}), "state a", "wildcard"),
    "partial-wildcard": (machine(a={"on": {"error.*": "a"}}), "state a", "wildcard"),
    "delay-expression": (machine(a={"after": {"TIMEOUT * 2": "a"}}), "state a", "expressions"),
    "negative-delay": (machine(a={"after": [{"delay": -1, "target": "a"}]}), "state a", "delay"),
    "activities": (machine(a={"activities": ["beep"]}), "state a", "activities"),
    "infinite-delay": (
        machine(a={"after": [{"delay": float("inf"), "target": "a"}]}),
        "state a",
        "delay",
    ),
    "empty-target": (
        machine(p={"initial": "x", "states": {"x": {"on": {"GO": ""}}}}),
        "state p.x",
        "a target must be a state",
    ),
    "atomic-with-initial": (machine(a={"initial": "b"}), "state a", "'initial'"),
    "in-guard": (machine(a={"on": {"GO": {"target": "a", "in": "#m.a"}}}), "state a", "'in'"),
    "reenter-not-bool": (
        machine(a={"on": {"GO": {"target": "a", "reenter": "yes"}}}),
        "state a",
        "'reenter' must be true or false",
    ),
    "cond-and-guard": (
        machine(a={"on": {"GO": {"target": "a", "cond": "big", "guard": "big"}}}),
        "state a",
        "not both",
    ),
    "machine-exit": ({**machine(a={}), "exit": "bye"}, "machine", "'exit'"),
    "machine-final": ({**machine(a={}), "type": "final"}, "machine", "'final'"),
    "machine-on-done": ({**machine(a={}), "onDone": ".a"}, "machine", "'onDone'"),
    "machine-v5-plain-target": ({**machine(a={}), "on": {"GO": "a"}}, "machine", "'.a'"),
    "v4-region-reenters-itself": (
        {
            "type": "parallel",
            "predictableActionArguments": True,
            "states": {
                "p": {"initial": "x", "on": {"R": "#(machine).p.x"}, "states": {"x": {}}},
                "q": {},
            },
        },
        "state p",
        "a region re-enters itself",
    ),
    "machine-v4-parallel-internal": (
        {
            "type": "parallel",
            "predictableActionArguments": True,
            "on": {"GO": ".p.x"},
            "states": {"p": {"initial": "x", "states": {"x": {}}}, "q": {}},
        },
        "machine",
        "regions",
    ),
    "unknown-key": (machine(a={"onEnter": "hello"}), "state a", "'onEnter'"),
    "unknown-target": (machine(a={"on": {"GO": "nowhere"}}), "state a", "'nowhere'"),
    "unknown-id-target": (machine(a={"on": {"GO": "#nope"}}), "state a", "'#nope'"),
    "unknown-child-target": (machine(a={"on": {"GO": ".x"}}), "state a", "'.x'"),
    "duplicate-id": (
        machine(a={"id": "same"}, b={"id": "same"}),
        "state b",
        "'same'",
    ),
    "state-name-with-dot": (machine(**{"my.state": {}}), "state my.state", "'.'"),
    "no-initial": ({"states": {"a": {}, "b": {}}}, "machine", "'initial'"),
    "initial-not-a-child": (
        machine(p={"initial": "nope", "states": {"x": {}}}),
        "state p",
        "'initial'",
    ),
    "final-with-on": (machine(a={"type": "final", "on": {"GO": "a"}}), "state a", "final"),
    "on-done-on-atomic": (machine(a={"onDone": "a"}), "state a", "child states"),
    "parallel-without-children": (machine(a={"type": "parallel"}), "state a", "child states"),
    "unknown-type": (machine(a={"type": "weird"}), "state a", "'weird'"),
    "message-not-string": (machine(a={"meta": {"message": 1}}), "state a", "meta.message"),
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_refused_feature_names_file_and_state(name: str) -> None:
    config, where, reason = REFUSED[name]
    with pytest.raises(ChartError) as info:
        convert(config)
    message = str(info.value)
    assert message.startswith(f"t.json: {where}: "), message
    assert reason in message, message


def test_config_must_be_an_object() -> None:
    with pytest.raises(ChartError, match=r"^t\.json: .*JSON object"):
        xstate_to_native([], "t.json")  # type: ignore[arg-type]


def test_invalid_json_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text("{not json")
    with pytest.raises(ChartError, match=r"^bad\.json: not valid JSON"):
        read_xstate(path)


# -- loading through the chart loader --------------------------------------------------

ACTIONS = """\
from typing import ClassVar

from orchestrator import Context, JsonObject


class Bad(Context):
    fields: ClassVar[JsonObject] = {"n": 0}

    def bump(self) -> None:
        self.n += 1
"""


def write_chart(directory: Path, config: JsonObject) -> Path:
    """``bad.json`` holding ``config`` in ``directory``, beside an actions module."""
    (directory / "bad.py").write_text(ACTIONS)
    path = directory / "bad.json"
    path.write_text(json.dumps(config))
    return path


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (machine(a={"on": {"GO": "nowhere"}}), "state a: on 'GO': unknown target 'nowhere'"),
        (machine(a={"entry": "nope"}), "state 'a': enter action 'nope'"),
        (machine(a={"on": {"GO": {"actions": "nope"}}}), "state 'a': action 'nope'"),
        (machine(a={"on": {"GO": {"target": "a", "cond": "nope"}}}), "state 'a': guard 'nope'"),
        (machine(a={"after": {"NOPE": "a"}}), "state 'a': delay 'NOPE'"),
        (machine(a={"invoke": {"id": "i", "src": "nope"}}), "state 'a': enter action 'nope'"),
    ],
    ids=["target", "entry", "action", "guard", "delay", "invoke-src"],
)
def test_load_refuses_unknown_target_and_unbound_names(
    tmp_path: Path, config: JsonObject, message: str
) -> None:
    """A flawed XState chart stops the start, naming the file and the state at fault."""
    with pytest.raises(ChartError) as info:
        load_chart(write_chart(tmp_path, config))
    assert str(info.value).startswith("bad.json: "), info.value
    assert message in str(info.value)


def test_json_chart_loads_with_its_timers(tmp_path: Path) -> None:
    """A ``.json`` chart is an XState config; its timers become the loader's timer specs."""
    path = write_chart(
        tmp_path,
        machine(a={"on": {"BUMP": {"actions": "bump"}}, "after": {"1500": "b"}}, b={}),
    )
    chart = load_chart(path)
    assert chart.events == {"BUMP", "after.a.1.5s"}
    assert {state: [s.delay for s in specs] for state, specs in chart.timers.items()} == {
        "a": [1.5]
    }
    order = chart.start("o-1")
    order.send("BUMP", {})
    assert order.context.data() == {"status": None, "n": 1}


# -- the seed's machine ------------------------------------------------------------------

SEED_FLOW = [
    ("CONFIRM_PIZZA", "bakePizza.sendingOrderToKitchen", "Sending the order for the pizza..."),
    (
        "done.invoke.sendOrderToKitchen",
        "bakePizza.waitingForPizzaToBeBaked",
        "Waiting for the pizza to be baked...",
    ),
    ("PIZZA_READY", "deliverPizza.sendingOrderToDelivery", "Sending the pizza out for delivery..."),
    (
        "done.invoke.sendOrderToDelivery",
        "deliverPizza.waitingForDelivery",
        "The pizza is on its way...",
    ),
    ("PIZZA_DELIVERED", "done", "Delivered. Enjoy your pizza!"),
]


def test_seed_machine_runs_a_whole_order(charts_dir: Path) -> None:
    """statecharts/xstate_pizza.json loads and runs the order flow with its actions."""
    chart = load_charts(charts_dir)["xstate_pizza"]
    order = chart.start("o-1")
    assert order.state_path() == "orderPizza"
    assert order.context.status == "Oh, just ordering some pizza..."
    order.send("ADD_PIZZA", {"pizza": {"name": "pineapple"}})
    order.send("ADD_PIZZA", {"pizza": {"name": "banana"}})
    order.send("REMOVE_PIZZA", {"pizza": {"name": "banana"}})
    assert order.next_events() == ("ADD_PIZZA", "REMOVE_PIZZA", "CONFIRM_PIZZA")
    commands = []
    for event, path, status in SEED_FLOW:
        order.send(event, {})
        assert (order.state_path(), order.context.status) == (path, status)
        commands += [c.type for c in order.context.take_commands()]
    assert commands == ["MAKE_PIZZA", "DELIVER_PIZZA"]
    assert order.is_final()
    assert order.context.data() == {
        "status": "Delivered. Enjoy your pizza!",
        "items": [{"name": "pineapple"}],
    }


@pytest.mark.parametrize(
    ("events", "path"),
    [
        (["error.invoke.sendOrderToKitchen"], "bakePizza.errorInKitchen"),
        (
            ["done.invoke.sendOrderToKitchen", "error.invoke.sendOrderToKitchen"],
            "bakePizza.errorInKitchen",
        ),
        (["PIZZA_READY", "error.invoke.sendOrderToDelivery"], "deliverPizza.errorInDelivery"),
    ],
    ids=["while-sending", "after-done", "delivery"],
)
def test_seed_machine_hears_an_invoke_error(charts_dir: Path, events: list[str], path: str) -> None:
    """onError while sending, and a dead letter after the broker took the command."""
    order = load_charts(charts_dir)["xstate_pizza"].start("o-1")
    order.send("ADD_PIZZA", {"pizza": {"name": "pineapple"}})
    order.send("CONFIRM_PIZZA", {})
    for event in events:
        order.send(event, {"reason": "refused"})
    assert order.state_path() == path
    assert order.context.status is not None and order.context.status.startswith("Ooops!")


async def test_seed_machine_runs_through_the_server(server_factory: ServerFactory) -> None:
    """An order created with chart xstate_pizza is baked and delivered by the stubs."""
    server = server_factory()
    async with httpx.AsyncClient(base_url=server.url, timeout=30.0) as http:
        created = await http.post("/orders", json={"chart": "xstate_pizza", "pizza": HAWAII})
        assert created.status_code == 201, created.text
        order = created.json()
        assert (order["chart"], order["state"], order["items"]) == (
            "xstate_pizza",
            "orderPizza",
            [HAWAII],
        )
        assert (await send(http, order["id"], add(MARGHERITA))).status_code == 200
        assert (await send(http, order["id"], CONFIRM)).status_code == 200
        done = await wait_for_state(http, order["id"], DONE)
        history = (await http.get(f"/orders/{order['id']}/history")).json()["entries"]
    assert done["status"] == "Delivered. Enjoy your pizza!"
    assert done["items"] == [HAWAII, MARGHERITA]
    assert [entry["stateAfter"] for entry in history] == [
        "orderPizza",
        "orderPizza",
        *(path for _, path, _ in SEED_FLOW),
    ]


async def test_seed_machine_dead_letter_through_the_server(server_factory: ServerFactory) -> None:
    """A kitchen that dead-letters MAKE_PIZZA leaves the order in errorInKitchen."""
    server = server_factory("--kitchen-mode", "reject")
    async with httpx.AsyncClient(base_url=server.url, timeout=30.0) as http:
        created = await http.post("/orders", json={"chart": "xstate_pizza", "pizza": HAWAII})
        order = created.json()
        assert (await send(http, order["id"], CONFIRM)).status_code == 200
        failed = await wait_for_state(http, order["id"], "bakePizza.errorInKitchen")
    assert failed["status"] == "Ooops! Something got burned..."


HOLD_MACHINE: JsonObject = {
    "id": "hold",
    "initial": "held",
    "states": {
        "held": {
            "meta": {"message": "Held for a moment"},
            "on": {"HOLD": {}, "RELEASE": "released"},
            "after": {"500": {"target": "expired", "actions": ["noteExpiry"]}},
        },
        "released": {"type": "final", "meta": {"message": "Released in time"}},
        "expired": {"type": "final", "meta": {"message": "Expired"}},
    },
}

HOLD_ACTIONS = """\
from typing import ClassVar

from orchestrator import Context, JsonObject


class Hold(Context):
    fields: ClassVar[JsonObject] = {"expired": False}
    create_event: ClassVar[str | None] = "HOLD"

    def noteExpiry(self) -> None:
        self.expired = True
"""


async def test_an_xstate_after_is_a_durable_timer_through_the_server(
    tmp_path: Path, server_factory: ServerFactory
) -> None:
    """XState's `after: {500: ...}` becomes a stored timer: it fires about half a second
    after the state is entered, and is cancelled when RELEASE leaves the state first."""
    charts = tmp_path / "charts"
    charts.mkdir()
    (charts / "hold.json").write_text(json.dumps(HOLD_MACHINE))
    (charts / "hold.py").write_text(HOLD_ACTIONS)
    server = server_factory("--charts", str(charts))
    async with httpx.AsyncClient(base_url=server.url, timeout=30.0) as http:
        first = await http.post("/orders", json={"chart": "hold"})
        second = await http.post("/orders", json={"chart": "hold"})
        assert first.status_code == second.status_code == 201, first.text
        released = await send(http, second.json()["id"], {"type": "RELEASE"})
        assert released.status_code == 200, released.text
        expired = await wait_for_state(http, first.json()["id"], "expired")
        history = (await http.get(f"/orders/{first.json()['id']}/history")).json()["entries"]
        kept = await http.get(f"/orders/{second.json()['id']}/history")
    assert expired["status"] == "Expired"
    assert expired["context"]["expired"] is True
    assert [e["type"] for e in history] == ["HOLD", "after.held.0.5s"]
    assert history[-1]["durationMs"] >= 500
    assert [e["type"] for e in kept.json()["entries"]] == ["HOLD", "RELEASE"]
    db = sqlite3.connect(server.db)
    try:  # RELEASE deleted the second order's timer
        assert db.execute("SELECT count(*) FROM timers").fetchone() == (0,)
    finally:
        db.close()


def test_always_that_loops_without_a_guard_is_refused() -> None:
    """XState's ``always`` is eventless too: an unguarded loop of them is refused when the
    document is read (it held the server for good once entered)."""
    config = machine(idle={"on": {"GO": "a"}}, a={"always": "b"}, b={"always": [{"target": "a"}]})
    with pytest.raises(ChartError, match="loop forever: a -> b -> a"):
        prepare(convert(config), "t.json")


# -- differential: the same config on the real xstate package -------------------------------

SHOP = {
    "id": "shop",
    "initial": "browsing",
    "context": {"items": [], "total": 0, "coupon": None},
    "states": {
        "browsing": {
            "entry": "hello",
            "on": {"CHECKOUT": {"target": "paying", "actions": ["note_checkout"]}},
        },
        "paying": {"exit": "bye", "on": {"PAID": "done"}},
        "done": {"type": "final"},
    },
}


@pytest.mark.parametrize("version", [5, 4])
def test_machine_context_is_the_orders_initial_data(tmp_path: Path, version: int) -> None:
    """A machine's ``context`` loads (it was refused) and is the order's initial data, as
    XState's, through every step of an assign-free machine; the document's values win over
    the class's ``fields``, which add the keys the document does not declare."""
    events = ["CHECKOUT", "PAID"]
    theirs, _ = reference(SHOP, events, version=version)
    mine = ours(tmp_path, SHOP, events, fields={"total": 99, "note": "from the class"})
    assert [s.value for s in mine.steps] == [s.value for s in theirs]
    assert [s.actions for s in mine.steps] == [s.actions for s in theirs]
    for my_step, their_step in zip(mine.steps, theirs, strict=True):
        assert my_step.context == {**their_step.context, "note": "from the class"}
    assert theirs[0].context == {"items": [], "total": 0, "coupon": None}


def test_machine_context_must_be_an_object() -> None:
    with pytest.raises(ChartError, match=r"^t\.json: machine: 'context' must be an object"):
        convert({**machine(a={}), "context": [1]})


def test_machine_context_cannot_hide_an_attribute(tmp_path: Path) -> None:
    """A context key that would hide a method of the class is refused naming the document."""
    with pytest.raises(ChartError, match=r"^ref\.json: the field 'take_commands'"):
        ours(tmp_path, {**machine(a={}), "context": {"take_commands": 1}}, [])


FETCHER: JsonObject = {
    "id": "fetcher",
    "initial": "loading",
    "states": {
        "loading": {
            "invoke": {
                "src": "fetchData",
                "onDone": {"target": "ready", "actions": "store"},
                "onError": "failure",
            }
        },
        "ready": {
            "initial": "idle",
            "states": {
                "idle": {
                    "entry": "hello",
                    "invoke": [
                        {"src": "watch", "onDone": "#fetcher.loading"},
                        {
                            "src": "ping",
                            "onError": {"target": "#fetcher.failure", "actions": "bye"},
                        },
                    ],
                }
            },
        },
        "failure": {"on": {"RETRY": "loading"}},
    },
}
# The events each version sends when those invokes finish, by XState's own names.
FETCHER_EVENTS = {
    5: [
        "xstate.done.actor.0.fetcher.loading",
        "xstate.done.actor.0.fetcher.ready.idle",
        "xstate.done.actor.0.fetcher.loading",
        "xstate.error.actor.1.fetcher.ready.idle",
        "RETRY",
        "xstate.error.actor.0.fetcher.loading",
    ],
    4: [
        "done.invoke.fetcher.loading:invocation[0]",
        "done.invoke.fetcher.ready.idle:invocation[0]",
        "done.invoke.fetcher.loading:invocation[0]",
        "error.platform.fetcher.ready.idle:invocation[1]",
        "RETRY",
        "error.platform.fetcher.loading:invocation[0]",
    ],
}


@pytest.mark.parametrize("version", [5, 4])
def test_invoke_without_id_is_named_as_xstate_names_it(tmp_path: Path, version: int) -> None:
    """Invokes without an ``id`` load (they were refused) under the id the real xstate gives
    them (v5 ``<index>.<state id>``, v4 ``<state id>:invocation[<index>]``, the version told
    by v4-only keys such as ``predictableActionArguments``); each src's command belongs to
    its invoke without naming it, and the outcomes move the order as they move XState's."""
    config = FETCHER if version == 5 else {**FETCHER, "predictableActionArguments": True}
    events = FETCHER_EVENTS[version]
    theirs, running = reference(config, events, version=version)
    mine = ours(tmp_path, config, events)
    assert mine.start_invokes == running
    assert [s.value for s in mine.steps] == [s.value for s in theirs]
    assert [s.actions for s in mine.steps] == [s.actions for s in theirs]
    assert theirs[-1].value == ("failure",)


# A machine whose root is parallel, with entry actions and transitions of its own (the exit
# actions are on leaves only: python-statemachine exits the states of parallel regions in
# another order than XState, for any parallel state, which is not what this test is about).
PARALLEL_ROOT: JsonObject = {
    "id": "player",
    "type": "parallel",
    "entry": "boot",
    "on": {
        "PING": {"actions": "pong"},
        "RESET": {"target": [".media.idle", ".volume.normal"], "actions": "reset"},
    },
    "states": {
        "media": {
            "initial": "idle",
            "entry": "media_on",
            "states": {
                "idle": {"entry": "idle_in", "exit": "idle_out", "on": {"PLAY": "playing"}},
                "playing": {"exit": "stop_sound", "on": {"PAUSE": "paused"}},
                "paused": {"on": {"PLAY": "playing"}},
            },
        },
        "volume": {
            "initial": "normal",
            "states": {
                "normal": {"on": {"MUTE": "muted"}},
                "muted": {"entry": "hush", "exit": "unhush", "on": {"UNMUTE": "normal"}},
            },
        },
    },
}
PARALLEL_ROOT_EVENTS = ["PLAY", "MUTE", "PING", "PAUSE", "RESET", "PLAY", "MUTE", "UNMUTE"]


def test_parallel_machine_root_behaves_as_xstate_v5(tmp_path: Path) -> None:
    """A parallel root with ``entry`` and ``on`` loads (it was refused); its regions are the
    machine's top level in every path, and the states, actions and their order at each step
    are XState v5's, a root transition into the regions included (v5 exits and enters again
    every region, not the root)."""
    theirs, _ = reference(PARALLEL_ROOT, PARALLEL_ROOT_EVENTS, version=5)
    mine = ours(tmp_path, PARALLEL_ROOT, PARALLEL_ROOT_EVENTS)
    assert [s.value for s in mine.steps] == [s.value for s in theirs]
    assert [s.actions for s in mine.steps] == [s.actions for s in theirs]
    assert theirs[0].value == ("media.idle", "volume.normal")


def test_parallel_machine_root_behaves_as_xstate_v4(tmp_path: Path) -> None:
    """The same machine read as v4, its root transition external (v4 takes ``.child``
    targets from a parallel root as internal to one region, which is refused): every
    state, the root's too, is left and entered again, as in XState v4."""
    config = {
        **PARALLEL_ROOT,
        "predictableActionArguments": True,
        "on": {
            "PING": {"actions": "pong"},
            "RESET": {
                "target": ["#player.media.idle", "#player.volume.normal"],
                "actions": "reset",
            },
        },
    }
    theirs, _ = reference(config, PARALLEL_ROOT_EVENTS, version=4)
    mine = ours(tmp_path, config, PARALLEL_ROOT_EVENTS)
    assert [s.value for s in mine.steps] == [s.value for s in theirs]
    assert [s.actions for s in mine.steps] == [s.actions for s in theirs]


# A compound root with entry, transitions (a child, an id, in place), an invoke and a timer.
ROOT_ON: JsonObject = {
    "id": "auth",
    "initial": "loggedOut",
    "entry": "boot",
    "invoke": {"id": "session", "src": "watch_session"},
    "on": {
        "LOGOUT": {"target": "#auth.loggedOut", "actions": "forget"},
        "LOGIN": ".loggedIn",
        "TOUCH": {"actions": "touch"},
    },
    "after": {"60000": {"target": "#auth.loggedOut", "actions": "expire"}},
    "states": {
        "loggedOut": {"entry": "show_login", "exit": "hide_login"},
        "loggedIn": {
            "initial": "home",
            "states": {"home": {"on": {"OPEN": "page"}}, "page": {"exit": "close_page"}},
            "on": {"TOUCH": {"actions": "touch_inside"}},
        },
    },
}
ROOT_ON_EVENTS = ["TOUCH", "LOGIN", "OPEN", "TOUCH", "LOGOUT", "LOGIN", "LOGOUT"]


@pytest.mark.parametrize("version", [5, 4])
def test_machine_root_transitions_behave_as_xstate(tmp_path: Path, version: int) -> None:
    """Transitions, ``entry``, ``invoke`` and ``after`` on the machine's root load (they were
    refused): the root's transitions apply in every state unless a state's own take the
    event, paths leave the root out, the root's invoke runs from the start under XState's
    id, and states, actions and their order are XState's at each step (v4 re-enters the
    root on ``#auth.loggedOut``, v5 does not)."""
    config = ROOT_ON if version == 5 else {**ROOT_ON, "predictableActionArguments": True}
    theirs, running = reference(config, ROOT_ON_EVENTS, version=version)
    mine = ours(tmp_path, config, ROOT_ON_EVENTS)
    assert [s.value for s in mine.steps] == [s.value for s in theirs]
    assert [s.actions for s in mine.steps] == [s.actions for s in theirs]
    assert mine.start_invokes == running == ["session"]


def test_machine_root_after_is_a_durable_timer(tmp_path: Path) -> None:
    """The root's ``after`` is a timer of the root, set at the start, whose event takes the
    root's transition from any state (the reference cannot advance XState's clock)."""
    mine = ours(tmp_path, ROOT_ON, ["LOGIN", "OPEN"])
    chart = load_chart(tmp_path / "ref.json")
    (spec,) = chart.timers[MACHINE_ROOT]
    assert spec.delay == 60.0
    order = chart.start("o-2")
    order.send("LOGIN", {})
    order.send(spec.event, {})
    assert order.state_path() == "loggedOut"
    assert mine.steps[-1].value == ("loggedIn.page",)


@pytest.mark.parametrize(
    ("config", "events", "done"),
    [
        (ROOT_ON, ["LOGIN"], False),
        ({**ROOT_ON, "states": {**ROOT_ON["states"], "gone": {"type": "final"}}}, [], False),
        (
            {
                "id": "m",
                "initial": "a",
                "on": {"END": ".end"},
                "states": {"a": {}, "end": {"type": "final"}},
            },
            ["END"],
            True,
        ),
        (
            {
                "type": "parallel",
                "entry": "boot",
                "states": {
                    "p": {
                        "initial": "a",
                        "states": {"a": {"on": {"X": "p_end"}}, "p_end": {"type": "final"}},
                    },
                    "q": {
                        "initial": "b",
                        "states": {"b": {"on": {"Y": "q_end"}}, "q_end": {"type": "final"}},
                    },
                },
            },
            ["X"],
            False,
        ),
    ],
)
def test_machine_with_a_root_of_its_own_is_done_as_xstate_says(
    tmp_path: Path, config: JsonObject, events: list[str], done: bool
) -> None:
    """An order of such a machine is final when XState's machine is done: a final child of
    a compound root, a final child in each region of a parallel one."""
    chart = ours(tmp_path, config, [])
    del chart
    loaded = load_chart(tmp_path / "ref.json")
    order = loaded.start("o-1")
    for event in events:
        order.send(event, {})
    assert order.is_final() is done
    if config.get("type") == "parallel":
        order.send("Y", {})
        assert order.is_final()


def test_chart_graph_leaves_the_machine_root_out(tmp_path: Path) -> None:
    """GET /charts/{name} draws a parallel root's regions as the top level, as the order's
    paths name them; the root's own transitions keep the root as their source."""
    ours(tmp_path, PARALLEL_ROOT, [])
    graph = chart_graph(load_chart(tmp_path / "ref.json").machine_class)
    assert [s["id"] for s in graph["states"]] == ["media", "volume"]
    root_edges = [t for t in graph["transitions"] if t["source"] == MACHINE_ROOT]
    assert sorted(str(t["event"]) for t in root_edges) == ["PING", "RESET", "RESET"]


# An invoke's outcomes heard through onDone/onError and through explicit transitions under
# the version's own names (both also in an ancestor, for an outcome after the state moved).
def outcome_machine(version: int) -> JsonObject:
    done, error = (
        ("xstate.done.actor.", "xstate.error.actor.")
        if version == 5
        else ("done.invoke.", "error.platform.")
    )
    config: JsonObject = {
        "id": "job",
        "initial": "working",
        "states": {
            "working": {
                "initial": "sending",
                "on": {error + "send": {"target": "broken", "actions": "late_error"}},
                "states": {
                    "sending": {
                        "invoke": {"id": "send", "src": "send_it", "onDone": "sent"},
                        "on": {error + "send": {"target": "#job.broken", "actions": "early"}},
                    },
                    "sent": {
                        "invoke": {"src": "poll", "onError": "#job.broken"},
                        "on": {done + "0.job.working.sent": "#job.finished"}
                        if version == 5
                        else {done + "job.working.sent:invocation[0]": "#job.finished"},
                    },
                },
            },
            "broken": {"on": {"RETRY": "working"}},
            "finished": {"type": "final"},
        },
    }
    return config if version == 5 else {**config, "predictableActionArguments": True}


OUTCOME_EVENTS = {
    5: [
        "xstate.done.actor.send",
        "xstate.error.actor.send",
        "RETRY",
        "xstate.error.actor.send",
        "RETRY",
        "xstate.done.actor.send",
        "xstate.done.actor.0.job.working.sent",
    ],
    4: [
        "done.invoke.send",
        "error.platform.send",
        "RETRY",
        "error.platform.send",
        "RETRY",
        "done.invoke.send",
        "done.invoke.job.working.sent:invocation[0]",
    ],
}


@pytest.mark.parametrize("version", [5, 4])
def test_invoke_outcomes_take_the_versions_names(tmp_path: Path, version: int) -> None:
    """A machine that waits for its invokes' outcomes by XState's names for its version
    (v5 ``xstate.done.actor.<id>``/``xstate.error.actor.<id>``, v4 ``done.invoke.<id>``/
    ``error.platform.<id>``), in ``onDone``/``onError`` or as written in ``on``, moves as
    XState does when the relay raises them; the chart names them as the author did."""
    config = outcome_machine(version)
    events = OUTCOME_EVENTS[version]
    theirs, _ = reference(config, events, version=version)
    mine = ours(tmp_path, config, events)
    assert [s.value for s in mine.steps] == [s.value for s in theirs]
    assert [s.actions for s in mine.steps] == [s.actions for s in theirs]
    assert theirs[-1].value == ("finished",)
    chart = load_chart(tmp_path / "ref.json")
    assert chart.event_name("error.invoke.send") == events[1]
    assert chart.event_name("done.invoke.send") == events[0]


@pytest.mark.parametrize(
    ("version", "event"),
    [
        (5, "done.invoke.x"),
        (5, "error.platform.x"),
        (5, "error.invoke.x"),
        (4, "xstate.done.actor.x"),
        (4, "error.invoke.x"),
        (4, "done.state.job.a"),
        (5, "xstate.done.state.job.a"),
    ],
)
def test_an_outcome_name_of_another_version_is_refused(version: int, event: str) -> None:
    """An event the version never sends (another version's outcome names, ours) would
    never come: refused at load, naming the version's own names."""
    config = outcome_machine(version)
    config["states"]["broken"]["on"][event] = "finished"
    theirs = "xstate.done.actor.<id>" if version == 5 else "done.invoke.<id>"
    with pytest.raises(ChartError, match=re.escape(f"on {event!r}: XState v{version}")) as info:
        convert(config)
    assert theirs in str(info.value)


async def test_history_shows_an_outcome_by_the_versions_name(
    server_factory: ServerFactory,
) -> None:
    """The order's history and the chart's graph show a v5 machine's outcome events as
    ``xstate.done.actor.<id>`` (inside they are ``done.invoke.<id>``), and a client
    cannot send one: it is the platform's."""
    server = server_factory()
    async with httpx.AsyncClient(base_url=server.url, timeout=30.0) as http:
        created = await http.post("/orders", json={"chart": "xstate_pizza", "pizza": HAWAII})
        order_id = created.json()["id"]
        assert (await send(http, order_id, CONFIRM)).status_code == 200
        await wait_for_state(http, order_id, DONE)
        forged = await http.post(
            f"/orders/{order_id}/events",
            json={"type": "xstate.done.actor.sendOrderToKitchen", "data": {}},
        )
        history = (await http.get(f"/orders/{order_id}/history")).json()["entries"]
        graph = (await http.get("/charts/xstate_pizza")).json()
    assert forged.status_code == 422
    assert "sent by the orchestrator" in forged.json()["detail"]
    assert [e["type"] for e in history][:3] == [
        "ADD_PIZZA",
        "CONFIRM_PIZZA",
        "xstate.done.actor.sendOrderToKitchen",
    ]
    events = {t["event"] for t in graph["transitions"]}
    assert {"xstate.done.actor.sendOrderToKitchen", "xstate.error.actor.sendOrderToKitchen"} <= (
        events
    )
    assert not any(str(e).startswith(("done.invoke.", "error.invoke.")) for e in events)


# Actions, a guard and an invoke src named as events of the chart (item 8 of issue 22).
SAME_NAMES: JsonObject = {
    "id": "shop",
    "initial": "cart",
    "states": {
        "cart": {
            "on": {
                "addItem": {"actions": "addItem"},
                "createOrder": {"target": "ordered", "actions": ["createOrder", "addItem"]},
            }
        },
        "ordered": {
            "entry": "createOrder",
            "on": {
                "check": [{"target": "checked", "guard": "check"}, {"actions": "addItem"}],
                "createOrder": {"actions": "createOrder"},
            },
        },
        "checked": {"entry": "check_entered", "on": {"addItem": "cart"}},
    },
}
SAME_NAMES_EVENTS = ["addItem", "createOrder", "createOrder", "check"]


@pytest.mark.parametrize(("version", "checks"), [(5, True), (5, False), (4, True)])
def test_actions_and_guards_named_as_events_run_as_xstate(
    tmp_path: Path, version: int, checks: bool
) -> None:
    """An action or a guard with the name of an event is that method, not the event: the
    two namespaces are apart, as in XState (the engine used to send the event from its
    own transition's action, looping until the 1,000-transition bound)."""
    config = SAME_NAMES
    if version == 4:
        config = json.loads(json.dumps(SAME_NAMES).replace('"guard"', '"cond"'))
    guards = {"check": checks}
    theirs, _ = reference(config, SAME_NAMES_EVENTS, version=version, guards=guards)
    mine = ours(tmp_path, config, SAME_NAMES_EVENTS, guards=guards)
    assert [s.value for s in mine.steps] == [s.value for s in theirs]
    assert [s.actions for s in mine.steps] == [s.actions for s in theirs]
    assert theirs[2].actions == ("createOrder", "addItem", "createOrder")


CREATE_BY_ACTION = """\
from typing import ClassVar

from orchestrator import Context, JsonObject


class Shop(Context):
    fields: ClassVar[JsonObject] = {"orders": 0}
    create_event = "createOrder"
    orders: int

    def createOrder(self) -> None:
        self.orders += 1
"""


def test_an_order_is_created_by_an_event_named_as_its_action(tmp_path: Path) -> None:
    """The issue's case: ``createOrder`` both the create event and its action. The create
    applies once and runs the action once (it was refused by the transition bound)."""
    (tmp_path / "shop.py").write_text(CREATE_BY_ACTION)
    config = {
        "id": "shop",
        "initial": "new",
        "states": {
            "new": {"on": {"createOrder": {"target": "open", "actions": "createOrder"}}},
            "open": {"on": {"createOrder": {"actions": "createOrder"}}},
        },
    }
    (tmp_path / "shop.json").write_text(json.dumps(config))
    chart = load_chart(tmp_path / "shop.json")
    machine = turn.start(chart, "o-1", Event("createOrder", {}, "e-1"))
    record = turn.apply(machine, None, Event("createOrder", {}, "e-1"), 1.0)
    assert (record.snapshot.state, record.snapshot.context["orders"]) == ("open", 1)
    again = turn.apply(machine, record.snapshot, Event("createOrder", {}, "e-2"), 2.0)
    assert again.snapshot.context["orders"] == 2


def test_a_yaml_action_named_as_an_event_is_refused_at_load(tmp_path: Path) -> None:
    """A native document cannot keep the two apart (python-statemachine resolves the name
    to the event first): refused at load, naming the action and the event."""
    (tmp_path / "shop.py").write_text(CREATE_BY_ACTION)
    (tmp_path / "shop.yaml").write_text(
        "states:\n"
        "  new:\n"
        "    initial: true\n"
        "    transitions:\n"
        "      - {event: createOrder, target: open, on: createOrder}\n"
        "  open: {}\n"
    )
    with pytest.raises(ChartError, match="action 'createOrder' is also an event of the chart"):
        load_chart(tmp_path / "shop.yaml")


# The same names under different parents (item 4 of issue 22): ``idle`` and ``active`` in
# two regions, ``ready.ready``, and targets by sibling name, ``.child``, ``#id`` and path.
SAME_STATE_NAMES: JsonObject = {
    "id": "player",
    "initial": "ready",
    "states": {
        "ready": {
            "initial": "ready",
            "entry": "ready_in",
            "states": {
                "ready": {"on": {"START": "#player.playing"}},
            },
        },
        "playing": {
            "type": "parallel",
            "on": {"STOP": "ready.ready", "RESET": ".video.idle"},
            "states": {
                "video": {
                    "initial": "idle",
                    "states": {
                        "idle": {"entry": "video_idle", "on": {"PLAY": "active"}},
                        "active": {"exit": "video_stop", "on": {"PAUSE": "idle"}},
                    },
                },
                "audio": {
                    "initial": "idle",
                    "states": {
                        "idle": {"on": {"PLAY": "active", "MUTE": "#player.playing.audio.idle"}},
                        "active": {"entry": "audio_on", "on": {"PAUSE": "idle", "MUTE": "idle"}},
                    },
                },
            },
        },
    },
}
SAME_STATE_NAMES_EVENTS = ["START", "PLAY", "PAUSE", "PLAY", "RESET", "MUTE", "STOP", "START"]


@pytest.mark.parametrize("version", [5, 4])
def test_the_same_state_name_under_different_parents(tmp_path: Path, version: int) -> None:
    """States are told apart by path (they were refused as duplicates): each step's state
    value is XState's dotted paths (``playing.audio.idle``, ``ready.ready``), and the
    actions and their order are XState's. (v4 keeps the other regions of a parallel state
    on an internal transition from it, which is refused: v4 runs RESET from the region.)"""
    config = SAME_STATE_NAMES
    if version == 4:
        with pytest.raises(ChartError, match="XState v4 leaves the other regions"):
            convert({**SAME_STATE_NAMES, "predictableActionArguments": True})
        playing = {**SAME_STATE_NAMES["states"]["playing"], "on": {"STOP": "ready.ready"}}
        video = playing["states"]["video"]
        playing["states"] = {**playing["states"], "video": {**video, "on": {"RESET": ".idle"}}}
        config = {
            **SAME_STATE_NAMES,
            "predictableActionArguments": True,
            "states": {**SAME_STATE_NAMES["states"], "playing": playing},
        }
    theirs, _ = reference(config, SAME_STATE_NAMES_EVENTS, version=version)
    mine = ours(tmp_path, config, SAME_STATE_NAMES_EVENTS)
    assert [s.value for s in mine.steps] == [s.value for s in theirs]
    assert [s.actions for s in mine.steps] == [s.actions for s in theirs]
    assert theirs[2].value == ("playing.audio.active", "playing.video.active")
    assert theirs[0].value == ("ready.ready",)


# Names that are no Python identifiers (item 6 of issue 22): states with spaces and marks,
# events with dots and dashes, a guard and actions with marks.
FREE_NAMES: JsonObject = {
    "id": "booking",
    "initial": "Entering Information",
    "states": {
        "Entering Information": {
            "entry": "show-form",
            "on": {
                "user.submit": [
                    {
                        "target": "Reviewing?",
                        "guard": "isValidDepartDate?",
                        "actions": "log-in",
                    },
                    {"target": "Entering Information.Error shown"},
                ],
            },
            "initial": "Blank",
            "states": {"Blank": {}, "Error shown": {"entry": "show error!"}},
        },
        "Reviewing?": {
            "on": {"go-back": "#booking.Entering Information", "confirm": "Booked"},
        },
        "Booked": {"type": "final"},
    },
}
FREE_NAMES_EVENTS = ["user.submit", "go-back", "user.submit", "confirm"]


@pytest.mark.parametrize(("version", "valid"), [(5, True), (5, False), (4, True)])
def test_names_that_are_not_python_identifiers(tmp_path: Path, version: int, valid: bool) -> None:
    """States, events, guards and actions named freely load as written (they were refused);
    the guard ``isValidDepartDate?`` is the method ``isValidDepartDate_``, ``log-in`` is
    ``log_in``; paths show the names as written, and each step is XState's."""
    config = FREE_NAMES
    if version == 4:
        config = json.loads(json.dumps(FREE_NAMES).replace('"guard"', '"cond"'))
    events = FREE_NAMES_EVENTS if valid else FREE_NAMES_EVENTS[:1]
    guards = {"isValidDepartDate?": valid}
    theirs, _ = reference(config, events, version=version, guards=guards)
    mine = ours(tmp_path, config, events, guards=guards)
    assert [s.value for s in mine.steps] == [s.value for s in theirs]
    assert [s.actions for s in mine.steps] == [s.actions for s in theirs]
    assert theirs[1].value == (("Reviewing?",) if valid else ("Entering Information.Error shown",))
    chart = load_chart(tmp_path / "ref.json")
    assert chart.start("o-2").next_events() == ("user.submit",)


def test_a_free_name_without_its_method_is_refused_naming_both(tmp_path: Path) -> None:
    """A guard named ``isValidDepartDate?`` that the class lacks is refused with its name
    and the Python name it binds to (the refusal used to blame the ``{type}`` form)."""
    path = write_chart(
        tmp_path, machine(a={"on": {"GO": {"target": "a", "guard": "isValidDepartDate?"}}})
    )
    with pytest.raises(ChartError) as info:
        load_chart(path)
    assert "guard 'isValidDepartDate?' (in Python 'isValidDepartDate_') is not defined by" in (
        str(info.value)
    )


def test_chart_graph_gives_each_state_its_path(tmp_path: Path) -> None:
    """GET /charts/{name} (what the dashboard lights by path) gives the states that share a
    name their own ids and XState's dotted paths, the transitions naming the ids."""
    ours(tmp_path, SAME_STATE_NAMES, [])
    chart = load_chart(tmp_path / "ref.json")
    graph = chart_graph(chart.machine_class, chart.event_names, chart.state_names)
    playing = next(s for s in graph["states"] if s["id"] == "playing")
    audio = next(s for s in playing["children"] if s["id"] == "audio")
    assert [(s["id"], s["path"]) for s in audio["children"]] == [
        ("playing.audio.idle", "playing.audio.idle"),
        ("playing.audio.active", "playing.audio.active"),
    ]
    ready = graph["states"][0]
    assert (ready["path"], ready["children"][0]["path"]) == ("ready", "ready.ready")
    edges = {(t["source"], t["event"], t["target"]) for t in graph["transitions"]}
    assert ("playing.audio.idle", "PLAY", "playing.audio.active") in edges
    free = tmp_path / "free"
    free.mkdir()
    ours(free, FREE_NAMES, [], guards={"isValidDepartDate?": True})
    chart = load_chart(free / "ref.json")
    graph = chart_graph(chart.machine_class, chart.event_names, chart.state_names)
    entering = graph["states"][0]
    assert [(s["id"], s["path"]) for s in entering["children"]] == [
        ("Blank", "Entering Information.Blank"),
        ("Entering_Information.Error_shown", "Entering Information.Error shown"),
    ]


# A machine that starts by invoking, with no client event before its service answers.
STARTS_BY_INVOKING: JsonObject = {
    "id": "fetcher",
    "initial": "loading",
    "serviceEvents": ["PIZZA_READY"],
    "states": {
        "loading": {
            "entry": "begin",
            "invoke": {"src": "fetch", "onDone": "waiting", "onError": "failed"},
        },
        "waiting": {"on": {"PIZZA_READY": "ready"}},
        "ready": {"type": "final"},
        "failed": {},
    },
}
STARTS_BY_INVOKING_ACTIONS = """\
from typing import ClassVar

from orchestrator import Context, JsonObject


class Fetcher(Context):
    fields: ClassVar[JsonObject] = {"begun": 0}
    begun: int

    def begin(self) -> None:
        self.begun += 1

    def fetch(self) -> None:
        self.send_command("MAKE_PIZZA", {"pizza": {"name": "plain"}})
"""


async def test_an_order_is_created_without_an_event(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    """A chart without a create event (its machine starts by invoking, needing no client
    event) is created by ``POST /orders`` with the chart alone (it could not be created):
    version 1 is its start, recorded as XState's ``xstate.init``, whose entry action ran
    once and whose invoke sent its command; the kitchen's answer carries it to done."""
    charts = tmp_path / "charts"
    charts.mkdir()
    (charts / "fetcher.json").write_text(json.dumps(STARTS_BY_INVOKING))
    (charts / "fetcher.py").write_text(STARTS_BY_INVOKING_ACTIONS)
    server = server_factory("--charts", str(charts))
    async with httpx.AsyncClient(base_url=server.url, timeout=30.0) as http:
        created = await http.post("/orders", json={"chart": "fetcher"})
        assert created.status_code == 201, created.text
        assert (created.json()["state"], created.json()["version"]) == ("loading", 1)
        assert created.json()["nextEvents"] == []
        done = await wait_for_state(http, created.json()["id"], "ready")
        history = (await http.get(f"/orders/{done['id']}/history")).json()["entries"]
        forged = await http.post("/orders", json={"chart": "fetcher", "pizza": {}})
        chart = (await http.get("/charts/fetcher")).json()
    assert done["context"]["begun"] == 1
    assert [e["type"] for e in history] == [
        "xstate.init",
        "xstate.done.actor.0.fetcher.loading",
        "PIZZA_READY",
    ]
    assert forged.status_code == 422
    assert chart["creatable"] is True


def test_create_fields_without_a_create_event_are_refused(tmp_path: Path) -> None:
    """Create fields are the create event's data: without the event they would go nowhere."""
    (tmp_path / "fetcher.json").write_text(json.dumps(STARTS_BY_INVOKING))
    (tmp_path / "fetcher.py").write_text(
        STARTS_BY_INVOKING_ACTIONS.replace(
            "    begun: int\n", "    begun: int\n    create_fields: ClassVar = {'n': int}\n"
        )
    )
    with pytest.raises(ChartError, match="create_fields are the data of the create event"):
        load_chart(tmp_path / "fetcher.json")


def test_a_compound_state_without_initial_is_refused_as_v5_refuses_it() -> None:
    """XState does not take the first child: v5 refuses the machine, v4 stays in the state
    with no child active; both refusals here say so."""
    config = machine(p={"states": {"x": {}, "y": {}}})
    with pytest.raises(AssertionError, match="No initial state specified"):
        reference(config, [], version=5)
    theirs, _ = reference({**config, "predictableActionArguments": True}, [], version=4)
    assert theirs[0].value == ("p",)
    with pytest.raises(ChartError, match="a compound state needs 'initial'"):
        convert(config)


# Parameterised actions and guards: v5's ``params``, v4's other keys of the object.
def params_machine(version: int) -> JsonObject:
    def item(name: str, **params: Any) -> JsonObject:
        return {"type": name, "params": params} if version == 5 else {"type": name, **params}

    guard = "guard" if version == 5 else "cond"
    config: JsonObject = {
        "id": "notifier",
        "initial": "idle",
        "states": {
            "idle": {
                "entry": item("notify", message="hello", level=1),
                "on": {
                    "GO": [
                        {
                            "target": "busy",
                            guard: item("isAbove", min=3),
                            "actions": [item("notify", message="high"), "plain"],
                        },
                        {
                            "target": "busy",
                            guard: item("isAbove", min=0),
                            "actions": item("notify", message="low", tags=["a", "b"]),
                        },
                    ]
                },
            },
            "busy": {"exit": item("notify", message="bye"), "on": {"BACK": "idle"}},
        },
    }
    return config if version == 5 else {**config, "predictableActionArguments": True}


@pytest.mark.parametrize("version", [5, 4])
def test_parameterised_actions_and_guards_as_xstate(tmp_path: Path, version: int) -> None:
    """Actions and guards given params (they were refused) call their method with
    ``params=`` what the object gives (v5 ``params``, v4 its other keys), as XState hands
    them to the implementation; each guard is evaluated with its own."""
    config = params_machine(version)
    events = ["GO", "BACK", "GO"]
    guards = {"isAbove": ("2 > params.min", "2 > params['min']")}
    theirs, _ = reference(config, events, version=version, guards=guards)
    mine = ours(tmp_path, config, events, guards=guards)
    assert [s.value for s in mine.steps] == [s.value for s in theirs]
    assert [s.actions for s in mine.steps] == [s.actions for s in theirs]
    assert theirs[1].actions == ('notify({"message":"low","tags":["a","b"]})',)


def test_params_need_a_method_that_takes_them(tmp_path: Path) -> None:
    """Params given to a method without a ``params`` parameter are refused at load, naming
    the method (python-statemachine would drop them silently)."""
    path = write_chart(tmp_path, machine(a={"entry": {"type": "bump", "params": {"by": 2}}}))
    with pytest.raises(
        ChartError, match=re.escape("make Bad.bump a method with a 'params' parameter")
    ):
        load_chart(path)


def input_machine(version: int) -> JsonObject:
    """Invokes given input (v5 ``input``, v4 ``data``), with and without ids, and one
    without input."""
    key = "input" if version == 5 else "data"
    config: JsonObject = {
        "id": "loader",
        "initial": "loading",
        "states": {
            "loading": {
                "invoke": [
                    {"src": "fetchUser", key: {"userId": 42, "fields": ["name"]}},
                    {"id": "audit", "src": "log_start", key: {"what": "loading"}},
                    {"src": "watch"},
                ],
                "on": {"LOADED": "ready"},
            },
            "ready": {
                "invoke": {"id": "poll", "src": "fetchUser", key: {"userId": 7}},
                "on": {"RELOAD": "loading"},
            },
        },
    }
    return config if version == 5 else {**config, "predictableActionArguments": True}


@pytest.mark.parametrize("version", [5, 4])
def test_invoke_input_reaches_the_src(tmp_path: Path, version: int) -> None:
    """An invoke's input (v5 ``input``, v4 ``data``; they were refused) is given to its
    src method as ``input=`` a copy, as XState gives it to the service: the same services
    start with the same input at each step."""
    config = input_machine(version)
    events = ["LOADED", "RELOAD"]
    theirs, _ = reference(config, events, version=version)
    mine = ours(tmp_path, config, events)
    assert [s.value for s in mine.steps] == [s.value for s in theirs]
    assert [s.started for s in mine.steps] == [s.started for s in theirs]
    assert theirs[1].started == (("fetchUser", '{"userId":7}'),)


def test_input_needs_a_src_that_takes_it(tmp_path: Path) -> None:
    """Input given to a src method without an ``input`` parameter is refused at load."""
    config = machine(a={"invoke": {"id": "i", "src": "bump", "input": {"by": 2}}})
    with pytest.raises(ChartError, match=re.escape("make Bad.bump a method with a 'input'")):
        load_chart(write_chart(tmp_path, config))


# Event names with spaces, one of them also written with "_" as another event.
SPACED_EVENTS: JsonObject = {
    "id": "form",
    "initial": "editing",
    "states": {
        "editing": {
            "on": {
                "SUBMIT FORM": {"target": "sent", "actions": "submit"},
                "SUBMIT_FORM": {"actions": "other"},
                "go\tback": {"actions": "stay"},
            }
        },
        "sent": {"on": {"go\tback": "editing", "start  over": "editing"}},
    },
}
SPACED_EVENTS_SEQUENCE = ["SUBMIT_FORM", "go\tback", "SUBMIT FORM", "start  over", "SUBMIT FORM"]


@pytest.mark.parametrize("version", [5, 4])
def test_event_names_with_spaces(tmp_path: Path, version: int) -> None:
    """Events named with spaces load (they were refused) and are told apart from the same
    name written with ``_``: each step is XState's; clients send and see the names as
    written (``nextEvents``, the history, an unknown event's list)."""
    config = SPACED_EVENTS if version == 5 else {**SPACED_EVENTS, **{"schema": {}}}
    theirs, _ = reference(config, SPACED_EVENTS_SEQUENCE, version=version)
    mine = ours(tmp_path, config, SPACED_EVENTS_SEQUENCE)
    assert [s.value for s in mine.steps] == [s.value for s in theirs]
    assert [s.actions for s in mine.steps] == [s.actions for s in theirs]
    chart = load_chart(tmp_path / "ref.json")
    machine = chart.start("o-2")
    record = turn.apply(machine, None, Event(START_EVENT, {}, "e-0"), 1.0)
    assert record.snapshot.next_events == ("SUBMIT FORM", "SUBMIT_FORM", "go\tback")
    record = turn.apply(machine, record.snapshot, Event("SUBMIT FORM", {}, "e-1"), 2.0)
    assert (record.journal.type, record.snapshot.state) == ("SUBMIT FORM", "sent")
    with pytest.raises(UnknownEvent) as info:
        turn.apply(machine, record.snapshot, Event("SUBMIT  FORM", {}, "e-2"), 3.0)
    assert "start  over" in info.value.known


# Shallow and deep history states, with and without a default target.
HISTORY_MACHINE: JsonObject = {
    "id": "player",
    "initial": "off",
    "states": {
        "on": {
            "initial": "playing",
            "on": {"OFF": "off"},
            "states": {
                "playing": {"entry": "play", "on": {"PAUSE": "paused"}},
                "paused": {
                    "initial": "short",
                    "entry": "pause",
                    "on": {"PLAY": "playing"},
                    "states": {
                        "short": {"on": {"WAIT": "long"}},
                        "long": {"entry": "long_pause"},
                    },
                },
                "hist": {"type": "history"},
                "deep": {"type": "history", "history": "deep"},
                "back": {"type": "history", "target": "paused"},
            },
        },
        "off": {
            "on": {
                "ON": "on.hist",
                "ON_DEEP": "on.deep",
                "ON_BACK": "#player.on.back",
                "RESTART": "on",
            }
        },
    },
}
HISTORY_EVENTS = [
    *("ON_DEEP", "PAUSE", "WAIT", "OFF", "ON", "WAIT", "OFF", "ON_DEEP", "PLAY", "OFF"),
    *("ON_BACK", "OFF", "RESTART"),
]


@pytest.mark.parametrize("version", [5, 4])
def test_history_states_as_xstate(tmp_path: Path, version: int) -> None:
    """Shallow and deep history states load (they were refused) and enter what XState
    enters, their default target (or the parent's initial state) before anything is
    recorded."""
    config = HISTORY_MACHINE if version == 5 else {**HISTORY_MACHINE, **{"schema": {}}}
    for events in (HISTORY_EVENTS, ["ON_BACK", "OFF", "ON"]):
        theirs, _ = reference(config, events, version=version)
        directory = tmp_path / events[0]
        directory.mkdir()
        mine = ours(directory, config, events)
        assert [s.value for s in mine.steps] == [s.value for s in theirs]
        assert [s.actions for s in mine.steps] == [s.actions for s in theirs]
        values = [s.value[0] for s in theirs[1:]]
        if events == HISTORY_EVENTS:  # deep and shallow, from the parent's initial state
            assert (values[0], values[4], values[7]) == (
                "on.playing",
                "on.paused.short",
                "on.paused.long",
            )
        else:  # a default target
            assert values == ["on.paused.short", "off", "on.paused.short"]


def test_history_is_the_orders_own_and_kept_in_its_snapshot(tmp_path: Path) -> None:
    """What a history state records belongs to the order, not to the engine its chart's
    orders share: another order's history does not leak in, and an order rebuilt from its
    snapshot (passivated, restarted) returns where it was; no view shows it."""
    ours(tmp_path, HISTORY_MACHINE, [])
    chart = load_chart(tmp_path / "ref.json")
    first = chart.start("o-1")
    record = turn.apply(first, None, Event(START_EVENT, {}, "e-0"), 1.0)
    for n, event in enumerate(["RESTART", "PAUSE", "WAIT", "OFF"], start=1):
        record = turn.apply(first, record.snapshot, Event(event, {}, f"e-{n}"), 1.0 + n)
    other = chart.start("o-2")
    other_record = turn.apply(other, None, Event(START_EVENT, {}, "f-0"), 1.0)
    other_record = turn.apply(other, other_record.snapshot, Event("ON_DEEP", {}, "f-2"), 3.0)
    assert other_record.snapshot.state == "on.playing"
    snapshot = record.snapshot
    restored = chart.restore("o-1", snapshot.configuration, snapshot.context)
    again = turn.apply(restored, snapshot, Event("ON_DEEP", {}, "e-9"), 9.0)
    assert again.snapshot.state == "on.paused.long"
    assert b"statechart_history" not in again.reply.body


RAISING: JsonObject = {
    "id": "m",
    "initial": "a",
    "predictableActionArguments": True,
    "states": {
        "a": {
            "on": {
                "GO": {
                    "target": "b",
                    "actions": ["before", {"type": "xstate.raise", "event": {"type": "NEXT"}}],
                },
                "POKE": {"actions": [{"type": "xstate.raise", "event": "PING"}, "poked"]},
                "PING": {"actions": "pong"},
            }
        },
        "b": {
            "entry": "bin",
            "exit": [{"type": "xstate.raise", "event": "GONE"}],
            "on": {"NEXT": {"target": "c", "actions": "next"}},
        },
        "c": {
            "entry": "cin",
            "on": {
                "BACK": {
                    "target": "a",
                    "actions": [
                        {"type": "xstate.raise", "event": "NOWHERE"},
                        {"type": "xstate.raise", "event": "GO"},
                    ],
                },
                "GONE": {"actions": "gone"},
            },
        },
    },
}


def test_v4_raise_as_xstate(tmp_path: Path) -> None:
    """v4's ``raise`` (the action object ``{"type": "xstate.raise", "event"}``; it was
    refused) raises its event after the transition, in the same turn, as XState v4 does;
    the event may be handled by the state the transition leads to; one no state takes is
    ignored, as XState ignores it."""
    events = ["POKE", "GO", "BACK", "BACK"]
    theirs, _ = reference(RAISING, events, version=4)
    mine = ours(tmp_path, RAISING, events)
    assert [s.value for s in mine.steps] == [s.value for s in theirs]
    assert [s.actions for s in mine.steps] == [s.actions for s in theirs]
    assert theirs[2].actions == ("before", "bin", "next", "cin", "gone")
