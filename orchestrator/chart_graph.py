"""A loaded chart's structure as plain JSON: its states as a tree and its transitions.

The dashboard draws a chart from this, so it must describe the statechart class that the
runtime actually runs, not re-read the document: whatever ``statemachine.io.load`` made of
the YAML (implicit initial states, nested ids) is what is drawn. It reads only
python-statemachine's class attributes; it never builds a machine or runs an action.

Shape::

    {"states": [{"id", "path", "initial", "final", "parallel", "history",
                 "children": [...]}, ...],
     # path: the state's dotted path of names, as an order's ``state`` shows it
     # history: null, or "shallow" / "deep" for a history pseudo-state
     "transitions": [{"source", "target", "event", "internal"}, ...]}

A state's ``id`` is the chart's own, unique, which transitions name; its ``path`` ends in
its name, which is its id but where an XState state's name is not unique or holds a space
(``idle`` in two regions has the id ``playing.video.idle``).

An XState machine whose root has transitions of its own is drawn without its root: the
root's transitions have the source ``(machine)``, a state no list holds.

A transition with no target (an action run in place, such as ADD_PIZZA) has
``"target": null``; one with several targets (entering parallel regions) appears once per
target. An eventless transition has ``"event": null``. The transitions a compound state
takes to its initial child are left out: ``initial`` on the child says the same.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from statemachine import HistoryState, State, StateChart

from orchestrator.model import MACHINE_WRAPPERS

JsonObject = dict[str, Any]


def chart_graph(
    machine_class: type[StateChart[Any]],
    event_names: Mapping[str, str] | None = None,
    state_names: Mapping[str, str] | None = None,
) -> JsonObject:
    """The graph of ``machine_class``; ``event_names`` and ``state_names`` give the
    author's names of events and states the chart runs under other ones
    (``Chart.event_names``, ``Chart.state_names``)."""
    names = event_names or {}
    roots = list(machine_class.states)
    walked = _walk(roots)
    # An XState machine's root of its own (MACHINE_ROOT, and MACHINE_REGIONS when parallel)
    # is not drawn as a state: its children are the top level, as in the order's paths, and
    # its own transitions keep MACHINE_ROOT as their source.
    while len(roots) == 1 and roots[0].id in MACHINE_WRAPPERS:
        roots = list(roots[0].states)
    return {
        "states": [_state(state, state_names or {}, "") for state in roots],
        "transitions": [edge for state in walked for edge in _transitions(state, names)],
    }


def _state(state: State, names: Mapping[str, str], prefix: str) -> JsonObject:
    path = prefix + names.get(state.id, state.id)
    return {
        "id": state.id,
        "path": path,
        "initial": bool(state.initial),
        "final": bool(state.final),
        "parallel": bool(state.parallel),
        "history": _history_kind(state),
        "children": [_state(child, names, f"{path}.") for child in _children(state)],
    }


def _children(state: State) -> list[State]:
    """Sub-states, then history pseudo-states, which python-statemachine keeps apart."""
    return [*state.states, *state.history]


def _history_kind(state: State) -> str | None:
    return str(state.type.value) if isinstance(state, HistoryState) else None


def _walk(states: list[State]) -> list[State]:
    """Every state, parents before their children, in document order."""
    found: list[State] = []
    for state in states:
        found.append(state)
        found.extend(_walk(_children(state)))
    return found


def _transitions(state: State, names: Mapping[str, str]) -> list[JsonObject]:
    edges = []
    for transition in state.transitions:
        if transition.initial or transition.source is not state:
            continue
        event = " ".join(names.get(str(e), str(e)) for e in transition.events) or None
        targets = [t.id for t in transition.targets] or [None]
        for target in targets:
            edges.append(
                {
                    "source": state.id,
                    "target": target,
                    "event": event,
                    "internal": bool(transition.internal),
                }
            )
    return edges
