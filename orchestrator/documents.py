"""Read a chart document into python-statemachine's native form, checked, with its timers.

A document is read into the native dict ``statemachine.io`` builds charts from. The one
key we add to that format is a state's ``after``: events the state schedules for later,
durably (XState's ``after``, SCXML's ``<send delay>``)::

    waitingForPizzaToBeBaked:
      after:
        - delay: kitchenTimeout   # seconds, or a context attribute/method giving them
          target: errorInKitchen  # any transition keys: target, cond, on, ...

Each ``after`` item becomes a transition on a generated platform event
(``after.<state>.<delay>``) and a ``TimerSpec``; the runtime stores the timer in the turn
that enters the state and cancels it in the turn that leaves it.

A document may also list, at its top, the events only a service may send (the answers of
the services its commands go to, a payment provider's callbacks)::

    serviceEvents: [PIZZA_READY, PIZZA_DELIVERED, PIZZA_CANCELLED]

They are taken out of the native form as the timers are; the runtime takes them only from
a broker message or a signed webhook, and refuses them from clients (403).

Before anything is built, every transition target and every action, guard and delay name
is checked, so a flawed document is refused at start with the line (YAML) and state that
hold the flaw, not at the first order that reaches it.
"""

from __future__ import annotations

import copy
import inspect
import keyword
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import yaml
from statemachine.spec_parser import Functions, names_in_boolean_expr

from orchestrator.errors import ChartError
from orchestrator.model import (
    ALIASES,
    CONTEXT,
    EVENT_NAMES,
    INVOKE_IDS,
    INVOKE_OUTCOME_PREFIXES,
    PARAMS,
    SERVICE_EVENTS,
    STATE_NAMES,
    TIMER_EVENT_PREFIX,
    JsonObject,
    is_number,
    is_platform_event,
)
from orchestrator.xstate import read_xstate

_TRANSITION_CALLBACKS = ("on", "before", "after")
# The platform events a chart may wait for besides its timers': an invoke's outcomes, and
# python-statemachine's own when a compound state finishes. Each names what it is about.
_DONE_STATE = "done.state."
_ENGINE_EVENT_PREFIXES = (*INVOKE_OUTCOME_PREFIXES, _DONE_STATE)
# About 31 years: a timer due later than that is a mistake, and due times must stay within
# what a timestamp can show.
MAX_DELAY = 1e9
_GUARDS = ("cond", "unless")


@dataclass(frozen=True, slots=True)
class TimerSpec:
    """An event a state schedules: ``delay`` seconds, or the name of what gives them."""

    state: str
    delay: float | str
    event: str


@dataclass(frozen=True, slots=True)
class Document:
    """A chart document in native form, its timers taken out; ``where`` locates states."""

    native: JsonObject
    timers: dict[str, tuple[TimerSpec, ...]]
    where: dict[str, str]
    service_events: frozenset[str] = frozenset()
    context: JsonObject = field(default_factory=dict)
    invoke_ids: dict[str, str] = field(default_factory=dict)
    event_names: dict[str, str] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)
    state_names: dict[str, str] = field(default_factory=dict)
    params: dict[str, JsonObject] = field(default_factory=dict)


class _Located(dict[str, Any]):
    """A YAML mapping that remembers its line: that of its key, or of its list item."""

    line = 0


class _LineLoader(yaml.SafeLoader):
    """``yaml.safe_load`` that keeps lines, and reads ``on``/``off``/``yes``/``no`` as text.

    YAML 1.1 makes those words booleans, which would turn a transition's ``on`` key into
    ``True``; python-statemachine's own YAML reader narrows booleans the same way.
    """


_LineLoader.yaml_implicit_resolvers = {
    first: [
        (tag, regexp)
        for tag, regexp in resolvers
        if not (tag == "tag:yaml.org,2002:bool" and first not in "tTfF")
    ]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _construct_located(loader: _LineLoader, node: yaml.MappingNode) -> _Located:
    mapping = _Located({str(k): v for k, v in loader.construct_mapping(node, deep=True).items()})
    mapping.line = node.start_mark.line + 1
    for key_node, _ in node.value:
        value = mapping.get(str(loader.construct_object(key_node)))
        if isinstance(value, _Located):
            value.line = key_node.start_mark.line + 1  # a state is where its name is
    return mapping


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_located)


def read_yaml(path: Path) -> JsonObject:
    """A native python-statemachine YAML document, mappings carrying their line."""
    try:
        doc = yaml.load(path.read_text(), Loader=_LineLoader)
    except yaml.YAMLError as exc:
        raise ChartError(f"{path.name}: not valid YAML: {exc}") from exc
    if not isinstance(doc, dict):
        raise ChartError(f"{path.name}: a chart document must be a mapping with 'states'")
    return doc


# How each kind of chart file is read into the native form, by suffix: ``.json`` files are
# XState machine configs, converted by ``xstate``.
READERS: dict[str, Callable[[Path], JsonObject]] = {".yaml": read_yaml, ".json": read_xstate}


def read_document(path: Path) -> Document:
    reader = READERS.get(path.suffix)
    if reader is None:
        raise ChartError(f"{path.name}: no reader for {path.suffix!r} chart documents")
    return prepare(reader(path), path.name, history=reader is read_xstate)


def prepare(doc: JsonObject, source: str, *, history: bool = False) -> Document:
    """Take the timers and service events out of a native document and check its targets;
    ``history``: its history states are allowed (an XState chart's, checked by the
    converter)."""
    service_events = _take_service_events(doc, source)
    context = doc.pop(CONTEXT, {})
    if not isinstance(context, dict):
        raise ChartError(f"{source}: {CONTEXT!r} must be a mapping of field names to values")
    invoke_ids = doc.pop(INVOKE_IDS, {})
    event_names = doc.pop(EVENT_NAMES, {})
    aliases = doc.pop(ALIASES, {})
    state_names = doc.pop(STATE_NAMES, {})
    params = doc.pop(PARAMS, {})
    states = doc.get("states")
    if not isinstance(states, dict) or not states:
        raise ChartError(f"{source}: a chart document needs a non-empty 'states' mapping")
    where: dict[str, str] = {}
    timers: dict[str, tuple[TimerSpec, ...]] = {}
    for state_id, state in _walk(states, source):
        if state_id in where:
            raise ChartError(f"{source}: {where[state_id]}: the state id is used twice")
        here = where[state_id] = _where(state_id, state)
        if "invoke" in state:
            # python-statemachine runs an invoke on a thread of its own, which would send its
            # outcome to the engine every order of the chart shares, outside any turn.
            raise ChartError(
                f"{source}: {here}: 'invoke' is not supported in a document: send a command "
                "with send_command(..., invoke=<id>) from an entry action instead"
            )
        _refuse_blocking_actions(state, f"{source}: {here}")
        if _histories(state) and not history:
            raise ChartError(
                f"{source}: {here}: history states are not supported in a native document "
                "yet (an XState chart may have them)"
            )
        for history_id in _histories(state):
            # Kept per order: the engine hands python-statemachine the order's own
            # (``charts.Engine``), which its snapshot keeps.
            if history_id in where:
                raise ChartError(f"{source}: {where[history_id]}: the state id is used twice")
            where[history_id] = f"{here}, history {history_id!r}"
        specs = _take_timers(state_id, state, f"{source}: {here}")
        if specs:
            timers[state_id] = specs
    # Targets and event names are checked once every state and timer is known.
    timer_events = {spec.event for specs in timers.values() for spec in specs}
    for state_id, state in _walk(states, source):
        for transition in _transitions(state):
            for target in str(transition.get("target") or "").split():
                if target not in where:
                    event = transition.get("event", "(eventless)")
                    raise ChartError(
                        f"{source}: {_where(state_id, transition)}: the transition on "
                        f"{event!r} targets an unknown state {target!r}"
                    )
            for event in str(transition.get("event") or "").split():
                if is_platform_event(event) and not (
                    event in timer_events or event.startswith(_ENGINE_EVENT_PREFIXES)
                ):
                    raise ChartError(
                        f"{source}: {_where(state_id, transition)}: the event {event!r} "
                        "takes a name of the platform's own (after., done., error., xstate.), "
                        "which no one could send; done.invoke.<id>, error.invoke.<id> and "
                        "done.state.<id> are the ones a chart may wait for"
                    )
    # A timer of 0 seconds fires as soon as its state is entered: a loop of them is an
    # eventless loop spread over turns, which no event could ever interrupt.
    at_once = {spec.event for specs in timers.values() for spec in specs if spec.delay == 0}
    _refuse_eventless_loops(states, where, source, at_once)
    return Document(
        doc,
        timers,
        where,
        service_events,
        context,
        invoke_ids=invoke_ids,
        event_names=event_names,
        aliases=aliases,
        state_names=state_names,
        params=params,
    )


def with_invoke_ids(context_class: type[Any], invoke_ids: dict[str, str]) -> type[Any]:
    """``context_class`` with the actions that set ``current_invoke`` before each src."""
    if not invoke_ids:
        return context_class

    def begin(invoke_id: str) -> Callable[[Any], None]:
        def begin_invoke(self: Any) -> None:
            self.current_invoke = invoke_id

        return begin_invoke

    methods = {name: begin(invoke_id) for name, invoke_id in invoke_ids.items()}
    return type(context_class.__name__, (context_class,), methods)


def with_aliases(
    context_class: type[Any],
    aliases: dict[str, str],
    source: str,
    params: dict[str, JsonObject] | None = None,
) -> type[Any]:
    """``context_class`` with each internal name of ``aliases`` bound to what the author's
    name names: the same function (python-statemachine reads its parameters), or, for a
    field or another attribute, a property reading it; one given keyword arguments
    (``params``: ``params=`` or ``input=``) to its method called with a copy of them."""
    if not aliases:
        return context_class
    params = params or {}
    members: dict[str, Any] = {}
    for alias, name in aliases.items():
        if hasattr(context_class, alias):
            raise ChartError(
                f"{source}: {context_class.__name__}.{alias} takes a name the chart needs for "
                f"{name!r}; rename it"
            )
        attribute = python_name(context_class, name)
        found = inspect.getattr_static(context_class, attribute, None)
        if alias in params:
            given = params[alias]
            if not (inspect.isfunction(found) and _takes(found, given)):
                (keyword,) = given
                raise ChartError(
                    f"{source}: {name!r} is given {keyword} {given[keyword]!r}: make "
                    f"{context_class.__name__}.{attribute} a method with a {keyword!r} "
                    "parameter"
                )
            members[alias] = _with_params(found, given)
        elif isinstance(found, staticmethod | classmethod) or inspect.isfunction(found):
            members[alias] = found
        else:
            members[alias] = property(partial(_read, name=attribute))
    return type(context_class.__name__, (context_class,), members)


def _takes(function: Callable[..., Any], given: JsonObject) -> bool:
    parameters = _signature(function).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in parameters):
        return True
    return set(given) <= {p.name for p in parameters}


def _with_params(function: Callable[..., Any], given: JsonObject) -> Callable[..., Any]:
    """``function`` called with the keyword arguments ``given`` (``params``, ``input``),
    copied (an action may change what it is given), its signature less them, which
    python-statemachine reads to pass the rest."""

    def call(*args: Any, **kwargs: Any) -> Any:
        return function(*args, **copy.deepcopy(given), **kwargs)

    signature = _signature(function)
    kept = [p for p in signature.parameters.values() if p.name not in given]
    call.__signature__ = signature.replace(parameters=kept)  # type: ignore[attr-defined]
    call.__name__ = function.__name__
    return call


def python_name(context_class: type[Any], name: str) -> str:
    """The attribute of ``context_class`` an author's action, guard or src ``name`` binds
    to: ``name`` itself when the class has it (a Python identifier, or one set with
    ``setattr``), else its Python form, each character an identifier cannot hold made
    ``_`` (``isValidDepartDate?`` is ``isValidDepartDate_``, ``log-in`` ``log_in``)."""
    if name.isidentifier() or hasattr(context_class, name) or name in context_class.fields:
        return name
    python = re.sub(r"\W", "_", name)
    return python if python.isidentifier() and not keyword.iskeyword(python) else f"_{python}"


def _read(self: Any, name: str) -> Any:
    return getattr(self, name)


def _take_service_events(doc: JsonObject, source: str) -> frozenset[str]:
    """The document's ``serviceEvents``, removed from it (python-statemachine has no such
    key). That each is an event of the chart is checked once the chart is built."""
    listed = doc.pop(SERVICE_EVENTS, [])
    if not isinstance(listed, list) or not all(isinstance(e, str) and e for e in listed):
        raise ChartError(f"{source}: {SERVICE_EVENTS} must be a list of event names")
    for event in listed:
        if is_platform_event(event):
            raise ChartError(
                f"{source}: {SERVICE_EVENTS}: {event!r} is the platform's own, sent by no service"
            )
    return frozenset(listed)


def _refuse_eventless_loops(
    states: JsonObject, where: dict[str, str], source: str, at_once: set[str]
) -> None:
    """Refuse eventless transitions without a guard (or on ``at_once`` events: timers of
    0 seconds) that lead back where they start, and ``done.state.<id>`` transitions that
    enter again a final state that raised them.

    python-statemachine takes eventless transitions until none is enabled, within the
    turn: such a loop never ends, and holds the server. A state's eventless transitions
    apply while any of its descendants is active, and entering a state enters its initial
    child (every child, in a parallel state); a targetless one enables itself again.
    Entering a final child of a state raises ``done.state.<parent>`` within the turn (of a
    parallel state, when its regions' final children are entered).
    """
    children: dict[str, list[str]] = {}
    entered: dict[str, list[str]] = {}  # what entering a state enters with it
    loose: dict[str, list[str]] = {}  # unguarded eventless targets, by source state
    finals: dict[str, list[str]] = {}  # final children, by parent
    done: dict[str, list[str]] = {}  # unguarded done.state.<id> targets, by <id>
    parallel: set[str] = set()
    for state_id, state in _walk(states, source):
        kids = list((state.get("states") or {}).items())
        children[state_id] = [kid for kid, _ in kids]
        finals[state_id] = [
            kid for kid, node in kids if isinstance(node, dict) and node.get("final")
        ]
        initial = [kid for kid, node in kids if isinstance(node, dict) and node.get("initial")]
        if state.get("parallel"):
            parallel.add(state_id)
        entered[state_id] = (
            children[state_id] if state_id in parallel else initial or [kid for kid, _ in kids[:1]]
        )
        for history_id, history in _histories(state).items():
            children[history_id], loose[history_id] = [], []
            entered[history_id] = [
                target for t in _transitions(history) for target in str(t.get("target")).split()
            ]
        loose[state_id] = []
        for t in _transitions(state):
            if any(t.get(g) for g in _GUARDS):
                continue
            targets = str(t.get("target") or "").split()
            if not t.get("event") or t["event"] in at_once:
                loose[state_id].extend(targets or [state_id])
            for event in str(t.get("event") or "").split():
                if event.startswith(_DONE_STATE):
                    done.setdefault(event[len(_DONE_STATE) :], []).extend(targets)
    edges: dict[str, set[str]] = {state_id: set(entered[state_id]) for state_id in children}

    def under(state_id: str) -> Iterator[str]:
        yield state_id
        for kid in children[state_id]:
            yield from under(kid)

    for state_id, targets in loose.items():
        for active in under(state_id):
            edges[active].update(targets)
    for parent, targets in done.items():
        if parent not in children:
            continue
        regions = children[parent] if parent in parallel else [parent]
        for region in regions:
            for final in finals[region]:
                edges[final].update(targets)
    seen: set[str] = set()
    path: list[str] = []

    def visit(state_id: str) -> None:
        if state_id in path:
            loop = [*path[path.index(state_id) :], state_id]
            raise ChartError(
                f"{source}: {where[loop[0]]}: eventless transitions (or 0-second timers, "
                f"or done.state events) without a guard loop forever: {' -> '.join(loop)}"
            )
        if state_id in seen:
            return
        path.append(state_id)
        for nxt in sorted(edges[state_id]):
            visit(nxt)
        path.pop()
        seen.add(state_id)

    for state_id in children:
        visit(state_id)


def check_names(document: Document, context_class: type, source: str) -> None:
    """Refuse an action, guard or delay name the chart's context does not define, or
    defines as a coroutine; an action or guard named as an event; and a delay method
    that needs an argument (the turn calls it with none). Names are the author's
    (``Document.aliases``). Actions' and guards' parameters are not checked: what
    python-statemachine passes them depends on the event (a final state's returned dict,
    ``prepare_event``)."""

    events = {
        event
        for _, state in _walk(document.native["states"], source)
        for transition in _transitions(state)
        for event in str(transition.get("event") or "").split()
    }

    def require(name: str, at: str, what: str, verb: str) -> None:
        if what != "delay" and name in events:
            # python-statemachine resolves the name to the event's trigger, and sends the
            # event each time the action runs: a loop, for an action of that event.
            raise ChartError(
                f"{source}: {at}: {what} {name!r} is also an event of the chart, which "
                "python-statemachine would send instead of calling the method; rename one"
            )
        # An XState name that is no Python identifier binds to its Python form; a native
        # document's names bind as they are.
        author = document.aliases.get(name)
        python = name if author is None else python_name(context_class, author)
        name = name if author is None else author
        if not (hasattr(context_class, python) or python in getattr(context_class, "fields", {})):
            called = "" if python == name else f" (in Python {python!r})"
            raise ChartError(
                f"{source}: {at}: {what} {name!r}{called} {verb} {context_class.__name__}"
            )
        name = python
        method = getattr(context_class, name, None)
        if inspect.iscoroutinefunction(method):
            raise ChartError(
                f"{source}: {at}: {what} {name!r} is a coroutine (async def); a turn does no "
                "I/O: make it a plain method"
            )
        if what == "delay":
            required = _required(context_class, name)
            if required:
                raise ChartError(
                    f"{source}: {at}: delay {name!r} needs {', '.join(map(repr, required))}, "
                    "but a delay is called with no arguments: give each a default"
                )

    for state_id, state in _walk(document.native["states"], source):
        here = document.where[state_id]
        for key in ("enter", "exit"):
            for name in _callback_names(state.get(key)):
                require(name, here, f"{key} action", "is not a method of")
        for transition in _transitions(state):
            at = _where(state_id, transition)
            for key in _TRANSITION_CALLBACKS:
                for name in _callback_names(transition.get(key)):
                    require(name, at, "action", "is not a method of")
            for key in _GUARDS:
                for name in _guard_names(transition.get(key)):
                    require(name, at, "guard", "is not defined by")
        for spec in document.timers.get(state_id, ()):
            if isinstance(spec.delay, str):
                require(spec.delay, here, "delay", "is not defined by")


def _signature(function: Any) -> inspect.Signature:
    # The wrapper's own: a decorator may supply the wrapped function's arguments itself.
    return inspect.signature(function, follow_wrapped=False)


def _required(context_class: type, name: str) -> list[str]:
    """The parameters a call of the class's method ``name`` must give (none for a field or
    a property), after ``self`` or ``cls``."""
    found = inspect.getattr_static(context_class, name, None)
    if isinstance(found, staticmethod):
        parameters = list(_signature(found.__func__).parameters.values())
    elif isinstance(found, classmethod) or inspect.isfunction(found):
        function = found.__func__ if isinstance(found, classmethod) else found
        parameters = list(_signature(function).parameters.values())[1:]
    else:
        return []
    variadic = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    return [
        p.name
        for p in parameters
        if p.default is inspect.Parameter.empty and p.kind not in variadic
    ]


def timer_event(state_id: str, delay: float | str) -> str:
    # repr keeps every digit, so two delays never share one event
    label = delay if isinstance(delay, str) else f"{delay!r}s"
    return f"{TIMER_EVENT_PREFIX}{state_id}.{label}"


def _take_timers(state_id: str, state: JsonObject, at: str) -> tuple[TimerSpec, ...]:
    """Pop the state's ``after`` items into timer specs and transitions; ``at`` prefixes
    errors (file, line and state)."""
    items = state.pop("after", None)
    if items is None:
        return ()
    if not isinstance(items, list):
        raise ChartError(f"{at}: 'after' must be a list of delayed transitions")
    specs: dict[str, TimerSpec] = {}
    transitions = list(state.get("transitions") or [])
    for item in items:
        if not isinstance(item, dict) or "delay" not in item:
            raise ChartError(f"{at}: each 'after' item needs a 'delay'")
        delay = item["delay"]
        if not (is_number(delay) or isinstance(delay, str)):
            raise ChartError(f"{at}: delay must be seconds or a name, not {delay!r}")
        if not isinstance(delay, str) and not 0 <= delay <= MAX_DELAY:
            raise ChartError(f"{at}: delay must be from 0 to {MAX_DELAY:g} seconds, not {delay!r}")
        if "event" in item:
            raise ChartError(f"{at}: an 'after' item must not name an event: its timer does")
        event = timer_event(state_id, delay)
        specs.setdefault(event, TimerSpec(state_id, delay, event))
        transition = _Located({k: v for k, v in item.items() if k != "delay"})
        transition.line = getattr(item, "line", 0)
        transition["event"] = event
        transitions.append(transition)
    state["transitions"] = transitions
    return tuple(specs.values())


def _refuse_blocking_actions(state: JsonObject, at: str) -> None:
    """Refuse ``send`` with a delay and ``cancel``: python-statemachine's engine waits out
    such a delay inside the turn, holding the event loop. ``after`` is the durable way."""
    actions: list[object] = [state.get("enter"), state.get("exit")]
    for transition in _transitions(state):
        actions.extend(transition.get(key) for key in _TRANSITION_CALLBACKS)
    if any(_blocks(action) for action in actions):
        raise ChartError(
            f"{at}: a delayed 'send' (or a 'cancel') would hold the server while it waits; "
            "use the state's 'after' for events later in time"
        )


def _blocks(action: object) -> bool:
    """Whether an action, or one nested in its ``if`` or ``foreach``, waits out a delay."""
    if isinstance(action, list):
        return any(_blocks(item) for item in action)
    if not isinstance(action, dict):
        return False
    send = action.get("send")
    if "cancel" in action or (isinstance(send, dict) and ("delay" in send or "delayexpr" in send)):
        return True
    return any(_blocks(value) for value in action.values())


def _walk(states: JsonObject, source: str) -> Iterator[tuple[str, JsonObject]]:
    """Every state, nested ones after their parent, as (id, definition)."""
    for state_id, state in states.items():
        if state is None:
            state = states[state_id] = _Located()
        if not isinstance(state, dict):
            raise ChartError(f"{source}: state {state_id!r} must be a mapping, not {state!r}")
        children = state.get("states") or {}
        if not isinstance(children, dict):
            raise ChartError(f"{source}: {_where(state_id, state)}: 'states' must be a mapping")
        yield state_id, state
        yield from _walk(children, source)


def _histories(state: JsonObject) -> dict[str, JsonObject]:
    """A state's history pseudo-states by id."""
    histories = state.get("history") or {}
    if not isinstance(histories, dict):
        return {}
    return {str(k): v if isinstance(v, dict) else {} for k, v in histories.items()}


def has_history(document: Document) -> bool:
    return any(_histories(state) for _, state in _walk(document.native["states"], "chart"))


def _transitions(state: JsonObject) -> list[JsonObject]:
    return [t for t in state.get("transitions") or [] if isinstance(t, dict)]


def _where(state_id: str, node: object) -> str:
    line = getattr(node, "line", 0)
    return f"line {line}, state {state_id!r}" if line else f"state {state_id!r}"


def _callback_names(value: object) -> list[str]:
    items = value if isinstance(value, list) else [value]
    return [item for item in items if isinstance(item, str)]


def _guard_names(value: object) -> list[str]:
    """The names a guard expression resolves, as python-statemachine reads it (``1_000`` and
    ``1e3`` are numbers, not names), in order of appearance."""
    names = []
    for expression in _callback_names(value):
        # Less the functions an expression may call, such as In('state').
        found = {
            n for n in names_in_boolean_expr(expression) if n.lower() not in Functions.registry
        }
        names.extend(sorted(found, key=expression.find))
    return names
