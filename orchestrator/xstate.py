"""Read an XState machine config (JSON) as a python-statemachine native document.

Chart authors who know XState write ``<name>.json`` as an XState machine config (v5, or
v4 when it holds a v4-only key); the runtime runs python-statemachine.
:func:`xstate_to_native` maps the one onto the other,
plus our one extension, a state's ``after`` list of durable timers (delays in seconds, or
the name of a Context attribute or method giving them), which the chart loader strips
before ``statemachine.io`` sees the document. Names (actions, guards, services, delays)
stay names: they bind to the methods of the chart's ``Context`` subclass, and the chart
loader checks them against that class.

How XState maps onto our runtime:

- ``invoke {id, src, onDone, onError}``: we have no promise-based services. ``src`` is an
  entry action (run after the state's ``entry``, as XState starts services after entry)
  that sends a command with ``send_command(..., invoke=id)``; ``onDone``/``onError``
  become transitions on ``done.invoke.<id>``/``error.invoke.<id>``, which the runtime
  raises when the broker durably took the command or could not deliver it. The author
  writes the version's names for them (v5 ``xstate.done.actor.<id>``, v4
  ``error.platform.<id>``...), which the converter maps to ours and records
  (``EVENT_NAMES``) so that the history shows them as written.
- ``meta.message`` sets the order's ``status`` on entry, before the entry actions.
- ``serviceEvents`` on the machine, our addition as in a YAML document: the events only a
  service may send (XState ignores a key it does not know).
- ``context`` is the order's initial data: the chart loader merges it over the Context
  class's ``fields``, the document winning, as an XState author expects.
- An ``invoke`` without ``id`` gets the id XState gives it (v5 ``<index>.<state id>``, v4
  ``<state id>:invocation[<index>]``; a config with a v4-only key is v4). Its ``src`` runs
  between two actions that set and clear the context's ``current_invoke``, so the command
  it sends belongs to the invoke without the author naming the id.
- The machine's root becomes a state of the document (``MACHINE_ROOT``, with the regions
  under ``MACHINE_REGIONS`` when parallel) only when it has transitions, timers, actions or
  regions of its own, so other charts keep their documents; the paths clients see leave
  the two out (``charts.StateFacts``, ``chart_graph``).
- States are told apart by path, as in XState. python-statemachine keys states by id: a
  state keeps its name for id where no other state has it and it holds no space, else
  its dotted path is its id (``STATE_NAMES`` maps it back, so that the paths clients see
  are made of the names the author wrote).
- Action, guard and src names that are not Python identifiers, or that are also events
  (python-statemachine would send the event in the action's place), take an internal
  name (``ALIASES``) bound to the author's method by the chart loader.

Anything else is refused with a ``ChartError`` naming the file and the state, never
ignored, except the purely descriptive keys (``description``, ``tags``, other ``meta``).
History states are kept per order: the chart loader gives a chart that has them a private
field for what they record, which the engine hands python-statemachine at each turn.

The converter is a pure function of the config; :func:`read_xstate` only reads the file.
Neither imports the actions module.
"""

from __future__ import annotations

import json
import keyword
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any, NoReturn

from orchestrator.errors import ChartError
from orchestrator.model import (
    ALIAS_PREFIX,
    ALIASES,
    CONTEXT,
    END_INVOKE,
    EVENT_NAMES,
    INVOKE_ACTION_PREFIX,
    INVOKE_IDS,
    MACHINE_REGIONS,
    MACHINE_ROOT,
    MACHINE_WRAPPERS,
    PARAMS,
    SERVICE_EVENTS,
    STATE_NAMES,
    JsonObject,
    invoke_outcome,
    is_number,
    is_platform_event,
)

_DESCRIPTIVE = frozenset({"description", "tags", "meta"})
# serviceEvents is ours (the events only a service may send), read as in a YAML document.
_MACHINE_KEYS = (
    frozenset({"id", "initial", "states", "version", "context", SERVICE_EVENTS}) | _DESCRIPTIVE
)
# Keys only XState v4 reads (v5 ignores or refuses them): a config holding one is read as
# v4, any other as v5, which decides how an invoke without an ``id`` is named.
_V4_KEYS = frozenset(
    {"cond", "internal", "predictableActionArguments", "preserveActionOrder", "schema", ""}
)
# Keys that change nothing at run time for a JSON config with named actions.
# v5's ``types`` only types the machine for TypeScript.
_MACHINE_IGNORED = frozenset(
    {"predictableActionArguments", "preserveActionOrder", "schema", "types"}
)
_STATE_KEYS = _DESCRIPTIVE | {
    *("id", "type", "initial", "states", "on", "always", "onDone"),
    *("entry", "exit", "invoke", "after"),
}
# What makes the machine's root a state of its own (``MACHINE_ROOT``) in the document.
_ROOT_STATE_KEYS = frozenset({"type", "on", "always", "entry", "invoke", "after"})
_TRANSITION_KEYS = (
    frozenset({"target", "actions", "cond", "guard", "internal", "reenter"}) | _DESCRIPTIVE
)
_INVOKE_KEYS = frozenset({"id", "src", "onDone", "onError"}) | _DESCRIPTIVE
# What an invoke gives its service: v5 ``input``, v4 ``data``.
_INVOKE_INPUT = {5: "input", 4: "data"}
# On an invoke, ``data`` (v4) and ``input`` (v5) are what the service is given.
_INVOKE_REFUSED = {
    "data": "XState v5 names an invoke's input 'input'",
    "input": "XState v4 names an invoke's input 'data'",
}
_REFUSED = {
    "activities": "not supported; use invoke",
    "data": "done data is not supported",
    "output": "done data is not supported",
    "onEntry": "not supported; write 'entry'",
    "onExit": "not supported; write 'exit'",
    "in": "state guards are not supported; use a guard method",
    "autoForward": "not supported",
}
# v4's raise(): an action object of this type, with the ``event`` to raise.
_RAISE = "xstate.raise"
# The names each version gives an invoke's outcome events, before the invoke's id: done,
# then error. Inside they are ``done.invoke.<id>``/``error.invoke.<id>`` (``invoke_outcome``).
_OUTCOME_PREFIXES = {
    5: ("xstate.done.actor.", "xstate.error.actor."),
    4: ("done.invoke.", "error.platform."),
}
_MILLISECONDS = re.compile(r"\d+(\.\d+)?")


def _has_space(text: str) -> bool:
    return any(c.isspace() for c in text)


def _is_name(value: object) -> bool:
    return isinstance(value, str) and value.isidentifier() and not keyword.iskeyword(value)


def _uses_keys(value: object, keys: frozenset[str]) -> bool:
    """Whether any object in the JSON ``value`` has one of ``keys``, or the v4 ``""`` event."""
    if isinstance(value, Mapping):
        return any(k in keys for k in value) or any(_uses_keys(v, keys) for v in value.values())
    if isinstance(value, list):
        return any(_uses_keys(v, keys) for v in value)
    return False


@dataclass(eq=False)
class _Node:
    """One XState state node, with what target resolution needs."""

    key: str
    path: tuple[str, ...]
    config: Mapping[str, Any]
    parent: _Node | None
    children: dict[str, _Node] = field(default_factory=dict)
    # The state's id in the native document (``_Converter.name_states``).
    native: str = ""

    @property
    def where(self) -> str:
        return f"state {'.'.join(self.path)}" if self.path else "machine"


class _Converter:
    def __init__(self, config: Mapping[str, Any], source: str) -> None:
        self.source = source
        self.nodes: list[_Node] = []
        self.by_id: dict[str, _Node] = {}
        machine_id = config.get("id", "(machine)")
        self.root = _Node("", (), config, None)
        if not isinstance(machine_id, str):
            self.fail(self.root, "'id' must be a string")
        self.by_id[machine_id] = self.root
        self.machine_id = machine_id
        self.index(self.root)
        self.name_states()
        states = {k: v for k, v in config.items() if k != "context"}
        # The actions that set the context's ``current_invoke`` before a src: name -> id.
        self.invoke_ids: dict[str, str] = {}
        # The author's names of the platform events the chart waits for, by internal name.
        self.event_names: dict[str, str] = {}
        # Every event a transition names, and the internal names of actions and guards
        # that cannot keep their own (``ALIASES``): the author's name -> internal.
        self.events = _events(config)
        self.aliases: dict[str, str] = {}
        # Parameterised actions and guards, srcs with input: internal name -> (the author's
        # name, the keyword arguments its method is called with).
        self.param_aliases: dict[str, tuple[str, JsonObject]] = {}
        self.version = 4 if _uses_keys(states, _V4_KEYS) else 5

    def fail(self, node: _Node, message: str) -> NoReturn:
        raise ChartError(f"{self.source}: {node.where}: {message}")

    def index(self, node: _Node) -> None:
        """Collect the children of ``node``, checking their names and that ids are unique."""
        states = node.config.get("states", {})
        if not isinstance(states, Mapping):
            self.fail(node, "'states' must be an object")
        for key, config in states.items():
            child = _Node(key, (*node.path, key), config, node)
            if not isinstance(config, Mapping):
                self.fail(child, "a state must be an object")
            if not key or "." in key:
                self.fail(child, "a state's name is not empty and has no '.' (a path's separator)")
            self.nodes.append(child)
            node.children[key] = child
            # XState's default id is the machine's id and the path, whatever the parents' ids.
            child_id = config.get("id", ".".join((self.machine_id, *child.path)))
            if not isinstance(child_id, str):
                self.fail(child, "'id' must be a string")
            if child_id in self.by_id:
                self.fail(child, f"id {child_id!r} is used twice")
            self.by_id[child_id] = child
            self.index(child)

    def name_states(self) -> None:
        """Give each state its id in the native document: its name, where no other state
        has it and it holds no space (python-statemachine keys states by id, and splits a
        target list at spaces), so that the charts whose names allow it keep them there;
        else its dotted path, spaces made ``_`` (and a ``~<n>`` should that be taken).
        The paths clients see are made of the names (``STATE_NAMES``)."""
        count: dict[str, int] = {}
        for node in self.nodes:
            count[node.key] = count.get(node.key, 0) + 1
        taken = set(MACHINE_WRAPPERS)
        renamed = []
        for node in self.nodes:
            if count[node.key] == 1 and not _has_space(node.key) and node.key not in taken:
                node.native = node.key
                taken.add(node.key)
            else:
                renamed.append(node)
        for node in renamed:
            base = re.sub(r"\s", "_", ".".join(node.path))
            native, n = base, 1
            while native in taken:
                n += 1
                native = f"{base}~{n}"
            node.native = native
            taken.add(native)

    def check_keys(
        self,
        node: _Node,
        config: Mapping[str, Any],
        allowed: frozenset[str],
        refused: Mapping[str, str] = _REFUSED,
    ) -> None:
        for key in config:
            if key in allowed:
                continue
            self.fail(node, f"{key!r}: {refused.get(key, _REFUSED.get(key, 'not supported'))}")

    def machine(self) -> JsonObject:
        config = self.root.config
        if "exit" in config:
            # XState runs it when the machine stops; an order never stops but is done.
            self.fail(self.root, "'exit' on the machine is not supported; put it on a state")
        allowed = _MACHINE_KEYS | _MACHINE_IGNORED | _ROOT_STATE_KEYS
        self.check_keys(self.root, config, allowed)
        if not self.root.children:
            self.fail(self.root, "the machine has no states")
        if _ROOT_STATE_KEYS & set(config):
            # The root as a state of its own, the document's one top-level state.
            root = self.state(self.root, allowed)
            if root.pop("parallel", False):
                regions = {"initial": True, "parallel": True, "states": root.pop("states")}
                root["states"] = {MACHINE_REGIONS: regions}
            states = {MACHINE_ROOT: {"initial": True, **root}}
        else:
            states = self.children(self.root, parallel=False)
        native: JsonObject = {"name": PurePath(self.source).stem, "states": states}
        if SERVICE_EVENTS in config:
            native[SERVICE_EVENTS] = config[SERVICE_EVENTS]
        if "context" in config:
            native[CONTEXT] = self.mapping(self.root, config["context"], "context")
        if self.invoke_ids:
            native[INVOKE_IDS] = self.invoke_ids
        if self.event_names:
            native[EVENT_NAMES] = self.event_names
        if self.aliases or self.param_aliases:
            native[ALIASES] = {alias: name for name, alias in self.aliases.items()}
            native[ALIASES].update({a: name for a, (name, _) in self.param_aliases.items()})
        if self.param_aliases:
            native[PARAMS] = {a: params for a, (_, params) in self.param_aliases.items()}
        renamed = {n.native: n.key for n in self.nodes if n.native != n.key}
        if renamed:
            native[STATE_NAMES] = renamed
        return native

    def children(self, node: _Node, *, parallel: bool) -> JsonObject:
        states = {
            child.native: self.state(child)
            for child in node.children.values()
            if not _is_history(child)
        }
        initial = node.config.get("initial")
        if parallel:
            if initial is not None:
                self.fail(node, "a parallel state has no 'initial'")
        elif initial is None:
            # Not XState's first child, as one might think: v5 refuses such a machine,
            # v4 enters the state and none of its children.
            self.fail(
                node,
                "a compound state needs 'initial' (XState v5 refuses it too; v4 enters "
                "none of its children, which an order cannot be in)",
            )
        elif initial not in node.children or _is_history(node.children[initial]):
            self.fail(node, f"'initial' must name one of its states, not {initial!r}")
        else:
            first = node.children[initial].native
            states[first] = {"initial": True, **states[first]}
        return states

    def state(self, node: _Node, allowed: frozenset[str] = _STATE_KEYS) -> JsonObject:
        config = node.config
        self.check_keys(node, config, allowed)
        kind = config.get("type", "compound" if node.children else "atomic")
        if node is self.root and kind not in ("compound", "parallel"):
            self.fail(node, f"the machine is 'compound' or 'parallel', not {kind!r}")
        out: JsonObject = {}
        if kind == "final":
            for key in ("states", "on", "always", "invoke", "after", "onDone"):
                if key in config:
                    self.fail(node, f"a final state has no {key!r}")
            out["final"] = True
        elif kind == "parallel":
            out["parallel"] = True
        elif kind not in ("atomic", "compound"):
            self.fail(node, f"unknown type {kind!r}")
        if kind in ("parallel", "compound") and not node.children:
            self.fail(node, f"a {kind} state needs child states")
        if kind in ("atomic", "final") and "initial" in config:
            self.fail(node, f"an {kind} state has no 'initial'")
        if kind == "atomic" and node.children:
            self.fail(node, "an atomic state has no child states")

        enter: list[Any] = self.status(node)
        enter += self.actions(node, config.get("entry"), "entry")
        transitions: list[JsonObject] = []
        for event, spec in self.mapping(node, config.get("on", {}), "on").items():
            transitions += self.transitions(node, self.event(node, event), spec, f"on {event!r}")
        transitions += self.transitions(node, None, config.get("always", []), "always")
        for index, invoke in enumerate(self.invokes(node)):
            invoke_id = invoke.get("id", self.invoke_id(node, index))
            # src runs with the invoke's id at hand, so that its send_command belongs to
            # the invoke without naming it (an id-less invoke's id is XState's, not the
            # author's).
            # (python-statemachine runs a state's assigns before its named actions, so the
            # id is set by a named action the chart loader adds to the Context class.)
            begin = f"{INVOKE_ACTION_PREFIX}{len(self.invoke_ids)}"
            self.invoke_ids[begin] = invoke_id
            src = self.src(node, invoke)
            enter += [begin, src, END_INVOKE]
            for key, prefix in (("onDone", "done"), ("onError", "error")):
                event = self.outcome(prefix, invoke_id)
                what = f"invoke {invoke_id!r} {key}"
                transitions += self.transitions(node, event, invoke.get(key, []), what)
        if "onDone" in config:
            if not node.children:
                self.fail(node, "'onDone' needs child states")
            event = f"done.state.{node.native}"
            transitions += self.transitions(node, event, config["onDone"], "onDone")
        exit_ = self.actions(node, config.get("exit"), "exit")

        for key, value in (("enter", enter), ("exit", exit_), ("transitions", transitions)):
            if value:
                out[key] = value
        if node.children:
            out["states"] = self.children(node, parallel=kind == "parallel")
            histories = {
                child.native: self.history(child)
                for child in node.children.values()
                if _is_history(child)
            }
            if histories:
                out["history"] = histories
        timers = self.after(node, config.get("after", {}))
        if timers:
            out["after"] = timers
        return out

    def history(self, node: _Node) -> JsonObject:
        """A history pseudo-state: ``history`` shallow (the default) or deep, and its
        ``target`` when nothing is recorded yet, else the parent's initial state (each
        region of a parallel one), as XState enters. The order's snapshot keeps what it
        records (``charts.Engine``)."""
        config = node.config
        self.check_keys(node, config, frozenset({"type", "history", "target", "id"}) | _DESCRIPTIVE)
        depth = config.get("history", "shallow")
        if depth not in ("shallow", "deep"):
            self.fail(node, f"'history' is 'shallow' or 'deep', not {depth!r}")
        parent = node.parent
        assert parent is not None  # the machine is no history state
        target = config.get("target")
        if target is not None:
            targets = [self.resolve(node, target, "history target")]
        elif parent.config.get("type") == "parallel":
            targets = [c for c in parent.children.values() if not _is_history(c)]
        else:
            targets = [parent.children[str(parent.config.get("initial"))]]
        default = {"target": " ".join(t.native for t in targets)}
        return {"type": depth, "transitions": [default]}

    def status(self, node: _Node) -> list[Any]:
        """``meta.message`` as an assign to ``status``: a Python string literal (``repr``),
        which the restricted evaluator reads back as exactly the message."""
        meta = self.mapping(node, node.config.get("meta", {}), "meta")
        message = meta.get("message")
        if message is None:
            return []
        if not isinstance(message, str):
            self.fail(node, "'meta.message' must be a string")
        return [{"assign": {"location": "status", "expr": repr(message)}}]

    def mapping(self, node: _Node, value: object, what: str) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            self.fail(node, f"{what!r} must be an object")
        return value

    def event(self, node: _Node, event: str) -> str | None:
        """The native event; XState v4's ``""`` (transient) event is eventless, as ``always``."""
        if "*" in event:
            self.fail(node, f"on {event!r}: wildcard events are not supported")
        for theirs, outcome in zip(_OUTCOME_PREFIXES[self.version], ("done", "error"), strict=True):
            if event.startswith(theirs) and len(event) > len(theirs):
                return self.outcome(outcome, event[len(theirs) :])
        if is_platform_event(event):
            done, error = _OUTCOME_PREFIXES[self.version]
            self.fail(
                node,
                f"on {event!r}: XState v{self.version} sends no such event here (an "
                f"invoke's outcomes are {done}<id> and {error}<id>; a state's "
                "completion is its 'onDone')",
            )
        if _has_space(event):
            return self.spaced(event)
        return event or None

    def spaced(self, event: str) -> str:
        """The internal name of an event with spaces (python-statemachine reads a space as
        a list of events): spaces made ``_``, then ``~<n>`` should that be an event too;
        clients send and see the author's name (``Chart.event_names``)."""
        for internal, name in self.event_names.items():
            if name == event:
                return internal
        base = re.sub(r"\s", "_", event)
        internal, n = base, 1
        while internal in self.events or internal in self.event_names:
            n += 1
            internal = f"{base}~{n}"
        self.event_names[internal] = event
        return internal

    def outcome(self, outcome: str, invoke_id: str) -> str:
        """The internal event of an invoke's ``done`` or ``error`` outcome, remembering the
        version's name for it, which the order's history shows."""
        event = invoke_outcome(outcome, invoke_id)
        prefix = _OUTCOME_PREFIXES[self.version][outcome == "error"]
        if event != prefix + invoke_id:
            self.event_names[event] = prefix + invoke_id
        return event

    def actions(self, node: _Node, value: object, what: str) -> list[Any]:
        """Actions as ``names`` reads them, and v4's ``raise``: an action object
        ``{"type": "xstate.raise", "event": ...}`` (what v4's ``raise()`` makes), which
        becomes the native ``raise`` of the event: taken after the transition, in the
        same turn, as XState does."""
        items = value if isinstance(value, list) else [] if value is None else [value]
        out: list[Any] = []
        for item in items:
            if isinstance(item, Mapping) and item.get("type") == _RAISE and self.version == 4:
                self.check_keys(node, item, frozenset({"type", "event"}))
                event = item.get("event")
                name = event.get("type") if isinstance(event, Mapping) else event
                if not isinstance(name, str) or not name:
                    self.fail(node, f"{what}: raise needs an 'event', a name or {{'type'}}")
                if isinstance(event, Mapping) and set(event) != {"type"}:
                    self.fail(node, f"{what}: a raised event carries no data here")
                internal = self.event(node, name)
                if internal is None:
                    self.fail(node, f"{what}: raise needs an event name")
                out.append({"raise": {"event": internal}})
            else:
                out += self.names(node, [item], what)
        return out

    def names(self, node: _Node, value: object, what: str) -> list[str]:
        """Action or guard names: strings, or ``{"type": name}`` objects, one or a list;
        each as the native document names it (``bound``)."""
        items = value if isinstance(value, list) else [] if value is None else [value]
        names = []
        for item in items:
            name = item.get("type") if isinstance(item, Mapping) else item
            if not isinstance(name, str) or not name:
                self.fail(
                    node,
                    f"{what}: {item!r} is not supported; name a method of the Context class, "
                    'as a string or {"type": name}',
                )
            if name.startswith("xstate."):
                self.fail(
                    node,
                    f"{what}: {name!r} is one of XState's built-in actions (assign, send, "
                    "raise, spawn, log...), which are not supported; write a Context method",
                )
            params = self.params(node, item, what) if isinstance(item, Mapping) else None
            names.append(self.bound(name) if params is None else self.alias(name, params))
        return names

    def params(self, node: _Node, item: Mapping[str, Any], what: str) -> JsonObject | None:
        """The params of an action or guard object as the keyword argument its method
        takes, ``{"params": ...}``: v5's ``params``, or v4's other keys (v4 hands the
        object itself to the implementation); None without any."""
        if self.version == 5:
            self.check_keys(node, item, frozenset({"type", "params"}))
            params = item.get("params")
            if params is not None and not isinstance(params, Mapping):
                self.fail(node, f"{what}: 'params' must be an object")
            return {"params": dict(params)} if params is not None else None
        params = {key: value for key, value in item.items() if key != "type"}
        return {"params": params} if params else None

    def alias(self, name: str, params: JsonObject | None = None) -> str:
        """A new internal name for the action, guard or src ``name``, called with the
        keyword arguments ``params``."""
        alias = f"{ALIAS_PREFIX}{len(self.aliases) + len(self.param_aliases)}"
        if params is None:
            self.aliases[name] = alias
        else:
            self.param_aliases[alias] = (name, params)
        return alias

    def bound(self, name: str) -> str:
        """The native document's name for the action, guard or src ``name``: its own,
        unless it is also an event of the chart, whose trigger python-statemachine would
        call in its place (an event sent from its own transition's actions, for ever), or
        is no Python identifier (a guard is read as a Python expression)."""
        if _is_name(name) and name not in self.events:
            return name
        return self.aliases.get(name) or self.alias(name)

    def candidates(self, node: _Node, spec: object, what: str) -> list[Mapping[str, Any]]:
        """A transition's candidates; ``null`` forbids the event (a targetless transition
        without actions, which shadows the parents' transitions, as in XState)."""
        items = spec if isinstance(spec, list) else [spec]
        out: list[Mapping[str, Any]] = []
        for item in items:
            if item is None or isinstance(item, str):
                out.append({} if item is None else {"target": item})
            elif isinstance(item, Mapping):
                self.check_keys(node, item, _TRANSITION_KEYS)
                out.append(item)
            else:
                self.fail(node, f"{what}: a transition must be a target or an object")
        return out

    def transitions(
        self, node: _Node, event: str | None, spec: object, what: str
    ) -> list[JsonObject]:
        out = []
        for candidate in self.candidates(node, spec, what):
            transition = self.transition(node, candidate, what)
            out.append(transition if event is None else {"event": event, **transition})
        return out

    def transition(self, node: _Node, candidate: Mapping[str, Any], what: str) -> JsonObject:
        out: JsonObject = {}
        target = candidate.get("target")
        targets = target if isinstance(target, list) else [] if target is None else [target]
        resolved = [self.resolve(node, t, what) for t in targets]
        if targets:
            out["target"] = " ".join(r.native for r in resolved)
        internal = candidate.get("internal")
        reenter = candidate.get("reenter")
        for key, value in (("internal", internal), ("reenter", reenter)):
            if value is not None and not isinstance(value, bool):
                self.fail(node, f"{what}: {key!r} must be true or false")
        if internal is not None and reenter is not None:
            self.fail(node, f"{what}: give 'internal' (v4) or 'reenter' (v5), not both")
        # XState makes a transition to its own descendants internal by default: v4 those
        # written ".child", v5 any (``#id`` too), and the state itself, unless told to
        # ``reenter`` (v4 ignores that key).
        if internal is None and targets:
            if self.version == 4:
                internal = all(str(t).startswith(".") for t in targets) or None
            elif reenter:
                internal = False
            else:
                internal = all(r is node or node in _ancestors(r) for r in resolved) or None
        if internal and self.version == 4 and "parallel" == node.config.get("type"):
            self.fail(
                node,
                f"{what}: XState v4 leaves the other regions of a parallel state alone on "
                "an internal transition from the state, python-statemachine exits and "
                "enters them again; put the transition on the region",
            )
        parent = node.parent
        if (
            self.version == 4
            and not internal
            and resolved
            and parent is not None
            and parent.config.get("type") == "parallel"
            and all(r is node or node in _ancestors(r) for r in resolved)
        ):
            self.fail(
                node,
                f"{what}: XState v4 leaves the other regions alone when a region re-enters "
                "itself, python-statemachine (and v5) leaves and enters every region; target "
                "a child internally ('.child')",
            )
        if internal and resolved == [node] and node.config.get("type") != "parallel":
            # v5 takes a transition to its own state without leaving it: it leaves the
            # state's descendants, runs the actions and enters its initial child again
            # (python-statemachine would leave and enter the state itself). A parallel
            # state is left and entered again (a difference left, see docs/xstate.md).
            initial = node.children.get(str(node.config.get("initial")))
            if initial is None:
                del out["target"]
                targets = []
            else:
                out["target"] = initial.native
        if internal is not None and targets:
            out["internal"] = internal
        if "cond" in candidate and "guard" in candidate:
            self.fail(node, f"{what}: give 'cond' or 'guard', not both")
        guard = candidate.get("cond", candidate.get("guard"))
        if guard is not None:
            (out["cond"],) = self.names(node, [guard], f"{what} guard")
        actions = self.actions(node, candidate.get("actions"), f"{what} actions")
        if actions:
            out["on"] = actions
        return out

    def resolve(self, node: _Node, target: object, what: str) -> _Node:
        """A target as XState reads it: ``#id[.path]``, ``.child[.path]`` below the state,
        or ``sibling[.path]`` beside it."""
        if not isinstance(target, str) or not target:
            self.fail(node, f"{what}: a target must be a state, not {target!r}")
        if target.startswith("#"):
            found = self.by_id.get(target[1:])
            head, _, rest = target[1:].partition(".")
            start, path = (found, "") if found is not None else (self.by_id.get(head), rest)
        elif target.startswith("."):
            start, path = node, target[1:]
        elif node is self.root:
            # v4 reads a target from the root as one of its states; v5 refuses it.
            if self.version != 4:
                self.fail(
                    node,
                    f"{what}: {target!r} is not a valid target from the machine (XState v5 "
                    f"refuses it too); write '.{target}'",
                )
            start, path = node, target
        else:
            start, path = node.parent, target
        resolved = start
        for segment in path.split(".") if path else []:
            resolved = resolved.children.get(segment) if resolved is not None else None
        if resolved is None or resolved is self.root:
            self.fail(node, f"{what}: unknown target {target!r}")
        return resolved

    def invokes(self, node: _Node) -> list[Mapping[str, Any]]:
        value = node.config.get("invoke", [])
        items = value if isinstance(value, list) else [value]
        for item in items:
            invoke = self.mapping(node, item, "invoke")
            allowed = _INVOKE_KEYS | {_INVOKE_INPUT[self.version]}
            self.check_keys(node, invoke, allowed, _INVOKE_REFUSED)
            if "id" in invoke and (
                not isinstance(invoke["id"], str) or not invoke["id"] or _has_space(invoke["id"])
            ):
                self.fail(node, "an invoke's 'id' must be a name without spaces")
            src = invoke.get("src")
            if not isinstance(src, str) or not src or src.startswith("xstate."):
                self.fail(
                    node,
                    f"invoke {invoke.get('id', '(without id)')!r}: 'src' must name a method "
                    "of the Context class (src objects and inline services are not supported)",
                )
        return items

    def src(self, node: _Node, invoke: Mapping[str, Any]) -> str:
        """The native name of an invoke's src: with the invoke's input (v5 ``input``, v4
        ``data``, an object), a method called with ``input=`` it."""
        given = invoke.get(_INVOKE_INPUT[self.version])
        if given is None:
            return self.bound(invoke["src"])
        if not isinstance(given, Mapping):
            self.fail(node, f"invoke {invoke.get('id', '(without id)')!r}: its input is an object")
        return self.alias(invoke["src"], {"input": dict(given)})

    def invoke_id(self, node: _Node, index: int) -> str:
        """The id XState gives the ``index``-th invoke of a state that names none: v5's
        ``<index>.<state id>``, v4's ``<state id>:invocation[<index>]`` (the state's id is
        its own ``id`` or the machine's id and its path)."""
        state_id = node.config.get("id", ".".join((self.machine_id, *node.path)))
        if self.version == 4:
            return f"{state_id}:invocation[{index}]"
        return f"{index}.{state_id}"

    def after(self, node: _Node, value: object) -> list[JsonObject]:
        """Delayed transitions as our ``after`` extension: ``delay`` in seconds, or a name."""
        if isinstance(value, list):
            pairs = []
            for item in value:
                item = self.mapping(node, item, "after")
                spec = {k: v for k, v in item.items() if k != "delay"}
                pairs.append((item.get("delay"), spec))
        else:
            pairs = list(self.mapping(node, value, "after").items())
        timers = []
        for delay, spec in pairs:
            seconds = self.delay(node, delay)
            for transition in self.transitions(node, None, spec, f"after {delay!r}"):
                timers.append({"delay": seconds, **transition})
        return timers

    def delay(self, node: _Node, delay: object) -> float | str:
        if isinstance(delay, str):
            if _MILLISECONDS.fullmatch(delay):
                return float(delay) / 1000
            if _is_name(delay):
                return delay
        elif is_number(delay):
            if math.isfinite(delay) and delay >= 0:
                return delay / 1000
        self.fail(
            node,
            f"after {delay!r}: a delay is milliseconds or the name of a Context "
            "attribute (delay expressions are not supported)",
        )


def _is_history(node: _Node) -> bool:
    return bool(node.config.get("type") == "history")


def _events(config: Mapping[str, Any]) -> set[str]:
    """The events the ``on`` of ``config`` and of its states below name."""
    found: set[str] = set()
    on = config.get("on")
    if isinstance(on, Mapping):
        found.update(str(event) for event in on)
    states = config.get("states")
    if isinstance(states, Mapping):
        for state in states.values():
            if isinstance(state, Mapping):
                found |= _events(state)
    return found


def _ancestors(node: _Node) -> list[_Node]:
    found = []
    while node.parent is not None:
        node = node.parent
        found.append(node)
    return found


def xstate_to_native(config: JsonObject, source: str) -> JsonObject:
    """The native document for an XState machine ``config`` read from ``source``.

    Raises ``ChartError`` naming ``source`` and the state for anything it cannot map.
    """
    if not isinstance(config, Mapping):
        raise ChartError(f"{source}: an XState machine config must be a JSON object")
    return _Converter(config, source).machine()


def read_xstate(path: Path) -> JsonObject:
    """The native document for the XState machine config in the JSON file ``path``."""
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ChartError(f"{path.name}: not valid JSON: {exc}") from exc
    return xstate_to_native(config, path.name)
