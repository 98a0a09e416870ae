"""Load chart documents from ``statecharts/`` and bind each to its actions module.

A chart is a pair of files side by side: ``<name>.yaml``, a python-statemachine native
document (read and checked by ``documents``, then built by ``statemachine.io.load`` in its
secure default: no scripts, an allow-list expression evaluator), and ``<name>.py``, which
defines one ``Context`` subclass whose methods are the actions the document names. Adding
a chart is dropping in those two files; no runtime code names a chart. A ``<name>.json``
document is an XState machine config instead, converted to the native form by ``xstate``.

YAML was chosen over JSON and SCXML: it allows comments beside the states they explain, its
bare strings in action positions bind to methods by name as XState binds ``actions`` to a
machine config, and it is far shorter than SCXML for the same chart. JSON is kept for
XState, so that charts written for it run as they are.

This module never does I/O after start-up and never touches the store or the broker.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import math
import sys
from collections.abc import Callable, MutableSet
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import Any

from statemachine import StateChart
from statemachine.engines.sync import SyncEngine
from statemachine.event import BoundEvent
from statemachine.exceptions import InvalidDefinition
from statemachine.io import load
from statemachine.orderedset import OrderedSet

from orchestrator.context import Context
from orchestrator.documents import (
    READERS,
    TimerSpec,
    check_names,
    has_history,
    read_document,
    with_aliases,
    with_invoke_ids,
)
from orchestrator.errors import ChartError, ChartLoop
from orchestrator.model import (
    HISTORY_FIELD,
    MACHINE_REGIONS,
    MACHINE_ROOT,
    MACHINE_WRAPPERS,
    JsonObject,
    is_number,
    is_platform_event,
)


class Machine:
    """One order's live statechart: its context, run by its chart's shared engine.

    Every method binds the context to the chart's engine first, then works synchronously,
    so two orders never interleave inside the engine.
    """

    __slots__ = ("chart", "context")

    def __init__(self, chart: Chart, context: Context) -> None:
        self.chart = chart
        self.context = context

    def configuration(self) -> tuple[str, ...]:
        # Read from the model's ``state`` field, where python-statemachine keeps it (a
        # persisted model is its documented use): one state's value, or a set of them.
        value = self.context.state
        if isinstance(value, str):  # the usual case, checked first: a set's check costs more
            return (value,)
        if value is None:
            return ()
        if isinstance(value, MutableSet):
            return tuple(str(v) for v in value)
        return (str(value),)

    def facts(self) -> StateFacts:
        """What the chart says about the current configuration (computed once per chart)."""
        configuration = self.configuration()
        facts = self.chart.facts.get(configuration)
        if facts is None:
            sm = self.chart.engine.bind(self.context)
            chart = self.chart
            facts = StateFacts.of(configuration, sm, chart.state_names, chart.event_names)
            self.chart.facts[configuration] = facts
        return facts

    def state_path(self) -> str:
        return self.facts().path

    def allowed_events(self) -> tuple[str, ...]:
        return self.facts().allowed

    def next_events(self) -> tuple[str, ...]:
        return self.facts().next_events

    def is_final(self) -> bool:
        return self.facts().final

    def send(self, event_type: str, data: JsonObject) -> None:
        """Apply one event; actions receive the event's data as the ``data`` argument."""
        self.chart.engine.send(self.context, event_type, data)


@dataclass(frozen=True, slots=True)
class StateFacts:
    """Facts that depend only on a configuration, so a chart computes each once.

    ``path`` is the dotted path of each active leaf (``bakePizza.waitingForPizzaToBeBaked``);
    ``allowed`` the events with a transition now; ``next_events`` those a client may send,
    that is ``allowed`` less the platform's own (``done.*``, ``error.*``).
    """

    configuration: tuple[str, ...]
    path: str
    allowed: tuple[str, ...]
    next_events: tuple[str, ...]
    final: bool

    @classmethod
    def of(
        cls,
        configuration: tuple[str, ...],
        sm: StateChart[Any],
        state_names: dict[str, str],
        event_names: dict[str, str],
    ) -> StateFacts:
        """The facts of ``configuration``; ``state_names`` and ``event_names`` give the
        author's names of states and events whose ids differ (``Chart.state_names``,
        ``Chart.event_names``): ``next_events`` has the author's, ``allowed`` the ids."""
        paths = []
        for state in sm.configuration:
            if state.is_atomic:
                names = [state_names.get(state.id, state.id)]
                parent = state.parent
                # An XState machine's root (MACHINE_ROOT) is no part of its states' paths.
                while parent is not None and parent.id not in MACHINE_WRAPPERS:
                    names.append(state_names.get(parent.id, parent.id))
                    parent = parent.parent
                paths.append(".".join(reversed(names)))
        allowed = tuple(dict.fromkeys(event.id for event in sm.allowed_events))
        next_events = tuple(
            event_names.get(e, e) for e in allowed if not is_platform_event(event_names.get(e, e))
        )
        return cls(configuration, ",".join(paths), allowed, next_events, _is_done(sm))


def _is_done(sm: StateChart[Any]) -> bool:
    """Whether the machine is done: in a top-level final state, or, for an XState root of
    its own, in a final state of the root (of each of its regions, when parallel)."""
    active = sm.configuration
    for state in active:
        if state.parent is None:
            if state.id != MACHINE_ROOT:
                return bool(state.final)
            (top,) = state.states if state.states[0].id == MACHINE_REGIONS else (state,)
            if top.parallel:
                return all(any(s.final and s in active for s in r.states) for r in top.states)
            return any(s.final and s in active for s in top.states)
    return False


# The most transitions one turn may take (transitions taken together, in parallel regions,
# count once). A turn of the pizza chart takes one to four; a chart whose guarded eventless
# transitions or raised events loop would otherwise run forever inside one turn, and turns
# run on the event loop, so the whole server would stop.
MAX_TRANSITIONS_PER_TURN = 1000


class Engine:
    """One statechart instance per chart, shared by every order of that chart.

    python-statemachine keeps a machine's configuration in its model's ``state`` field and
    resolves actions to the model's methods once, when the machine is built; building one
    costs about as much as twenty events. So each chart builds one machine, bound to a
    carrier ``Context``, and an order's turn points the carrier at the order's own context
    (its ``__dict__``: data, ``state`` and pending commands) before the engine runs. Orders
    then cost no machine each in memory, and reactivating one costs nothing.

    Rejected: a machine per order, which made creating and reactivating an order the most
    expensive step of the hot path. If the engine raises, it is rebuilt, so a half-finished
    macrostep can never leak into the next order's turn.
    """

    def __init__(
        self,
        machine_class: type[StateChart[Any]],
        context_class: type[Context],
        *,
        track_moves: bool = False,
    ) -> None:
        self._machine_class = machine_class
        self._context_class = context_class
        self._track_moves = track_moves
        self._eventless = any(
            transition.is_eventless and not transition.initial
            for state in machine_class.states_map.values()
            for transition in state.transitions
        )
        # A chart with history states: each order keeps what they record (HISTORY_FIELD).
        self._history = any(state.history for state in machine_class.states_map.values())
        self._carrier: Context | None = None
        self._sm: StateChart[Any] | None = None
        self._triggers: dict[str, Callable[..., object]] = {}
        self._transitions_left = MAX_TRANSITIONS_PER_TURN

    def bind(self, context: Context) -> StateChart[Any]:
        if self._sm is None or self._carrier is None:
            # Built in a state (any: the carrier takes each order's own next), so that the
            # constructor does not enter the initial states: that ran their entry actions
            # on the carrier, outside ``run`` and its bound on transitions.
            carrier = self._context_class(
                "carrier", None, next(iter(self._machine_class.states_map))
            )
            listeners: list[object] = [_MoveTracker(carrier)] if self._track_moves else []
            sm = self._machine_class(model=carrier, listeners=listeners)
            if not isinstance(sm._engine, SyncEngine):
                # python-statemachine runs a machine with a coroutine among its callbacks
                # on its async engine, which a turn (synchronous, no I/O) cannot drive.
                raise ChartError(
                    f"{self._context_class.__name__}: an action, guard or delay is a "
                    "coroutine (async def); a turn does no I/O: make it a plain method"
                )
            engine: Any = sm._engine
            _lighten(engine, eventless=self._eventless)
            engine.microstep = self._counted(engine.microstep)
            self._sm = sm
            self._carrier = carrier
            self._triggers = {}
        self._carrier.__dict__ = context.__dict__
        if self._history:
            states = self._sm.states_map
            recorded = context.__dict__.get(HISTORY_FIELD) or {}
            self._sm.history_values = {
                history: [states[state] for state in ids] for history, ids in recorded.items()
            }
        return self._sm

    def send(self, context: Context, event_type: str, data: JsonObject) -> None:
        self.run(context, lambda sm: self._trigger(sm, event_type)(data=data))

    def _trigger(self, sm: StateChart[Any], event_type: str) -> Callable[..., object]:
        """The event as a method of the machine (``sm.ADD_PIZZA``), found once per engine:
        ``sm.send`` looks it up and builds it twice on every call."""
        trigger = self._triggers.get(event_type)
        if trigger is None:
            known = getattr(sm, event_type, None)
            if isinstance(known, BoundEvent) and known.id == event_type:
                trigger = known
            else:  # an event whose id is not a Python name (done.invoke.x)
                trigger = partial(sm.send, event_type)
            self._triggers[event_type] = trigger
        return trigger

    def _counted(self, microstep: Callable[[list[Any], Any], Any]) -> Callable[..., Any]:
        """The engine's ``microstep`` (one set of transitions taken together), refusing the
        turn once it has taken ``MAX_TRANSITIONS_PER_TURN``."""

        def counted(transitions: list[Any], trigger_data: Any) -> Any:
            self._transitions_left -= 1
            if self._transitions_left < 0:
                taken = ", ".join(
                    f"{t.source.id} -> {' '.join(s.id for s in t.targets) or t.source.id}"
                    for t in transitions
                )
                raise ChartLoop(
                    f"the chart took {MAX_TRANSITIONS_PER_TURN} transitions in one turn "
                    f"without settling, the last {taken}: a loop of eventless transitions "
                    "whose guards stay true, or of raised events"
                )
            return microstep(transitions, trigger_data)

        return counted

    def run(self, context: Context, step: Callable[[StateChart[Any]], object]) -> None:
        sm = self.bind(context)
        self._transitions_left = MAX_TRANSITIONS_PER_TURN
        try:
            step(sm)
        except BaseException:
            self._sm = None
            raise
        if self._history:
            setattr(
                context,
                HISTORY_FIELD,
                {h: [s.id for s in states] for h, states in sm.history_values.items()},
            )
        # Entering a top-level final state stops python-statemachine's engine
        # (``is_terminated``); the next order needs a running one. After a macrostep its
        # queues are empty and it holds nothing of the order, so it is set running again:
        # rebuilding it instead costs about 1 ms, once per finished order.
        if sm.is_terminated:
            engine = sm._engine
            if engine.external_queue.is_empty() and engine.internal_queue.is_empty():
                engine.running = True
            else:
                self._sm = None


def _lighten(engine: Any, *, eventless: bool) -> None:
    """Spare python-statemachine's engine work that gives the same answer every time here.

    It is built for a machine started once and sent many events; ours is started once per
    order. So it builds the initial transitions anew at each start (a fifth of a start's
    cost) although they depend only on the chart, and it looks for enabled eventless
    transitions before and after each event through every active state's transitions (a
    tenth of an event's cost) even in a chart that has none.
    """
    build_initial = engine._initial_transitions
    initial: list[Any] = []

    def initial_transitions(trigger_data: object) -> list[Any]:
        if not initial:
            initial.extend(build_initial(trigger_data))
        return list(initial)

    engine._initial_transitions = initial_transitions
    if not eventless:
        engine.select_eventless_transitions = lambda trigger_data: OrderedSet()


class _MoveTracker:
    """Records each state entered and left into the bound context, for its timers.

    Only charts with timers pay for it. A configuration diff is not enough: a state left
    and entered again in one turn must cancel its timer and set a new one.
    """

    def __init__(self, carrier: Context) -> None:
        self._carrier = carrier

    def on_enter_state(self, state: Any) -> None:
        self._carrier.note_move(True, state.id)

    def on_exit_state(self, state: Any) -> None:
        self._carrier.note_move(False, state.id)


@dataclass(frozen=True, slots=True)
class Chart:
    """A loaded chart: its statechart class, its context class, events and timers.

    ``service_events`` are the events only a service may send (the document's
    ``serviceEvents``): a turn refuses them from a client. ``event_names`` gives the
    author's name of a platform event whose internal name differs (an XState v5 invoke's
    ``xstate.done.actor.<id>`` for ``done.invoke.<id>``), ``state_names`` the name of a
    state whose id differs (``idle`` for ``left.idle``), for what the user reads."""

    name: str
    path: Path
    machine_class: type[StateChart[Any]]
    context_class: type[Context]
    events: frozenset[str]
    engine: Engine
    timers: dict[str, tuple[TimerSpec, ...]] = field(default_factory=dict)
    facts: dict[tuple[str, ...], StateFacts] = field(default_factory=dict)
    service_events: frozenset[str] = frozenset()
    event_names: dict[str, str] = field(default_factory=dict)
    state_names: dict[str, str] = field(default_factory=dict)
    # What clients send, by the author's name -> the chart's id (the inverse of
    # ``event_names`` for the events that are not the platform's).
    event_ids: dict[str, str] = field(default_factory=dict)

    def event_name(self, event_type: str) -> str:
        """The name the chart's author gave the event ``event_type``."""
        return self.event_names.get(event_type, event_type)

    def event_id(self, name: str) -> str:
        """The chart's own id of the event its author named ``name`` (a name with spaces);
        an event the chart does not know is itself."""
        return self.event_ids.get(name, name)

    def start(self, order_id: str) -> Machine:
        """A new order in the initial state; entry actions of that state run now."""
        context = self.context_class(order_id)
        self.engine.run(context, lambda sm: sm.activate_initial_state())
        return Machine(self, context)

    def restore(self, order_id: str, configuration: tuple[str, ...], data: JsonObject) -> Machine:
        """An order rebuilt from its snapshot; no entry action runs again."""
        state: Any = configuration[0] if len(configuration) == 1 else OrderedSet(configuration)
        return Machine(self, self.context_class(order_id, data, state))


def _load_actions(path: Path) -> type[Context]:
    spec = importlib.util.spec_from_file_location(f"statecharts_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise ChartError(f"{path.name}: cannot import the chart's actions module")
    module: ModuleType = importlib.util.module_from_spec(spec)
    # Registered as an import would: a dataclass in the module looks the module up in
    # sys.modules to resolve its annotations.
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[spec.name]
        raise ChartError(f"{path.name}: importing the actions failed: {exc}") from exc
    found = [
        obj
        for obj in vars(module).values()
        if inspect.isclass(obj) and issubclass(obj, Context) and obj.__module__ == module.__name__
    ]
    if len(found) != 1:
        raise ChartError(
            f"{path.name}: must define exactly one Context subclass, found {len(found)}"
        )
    return found[0]


# What the body of a create may hold, by Python type, with the JSON name clients read
# (``bool`` is an ``int`` too).
JSON_TYPES: dict[type, str] = {
    dict: "object",
    list: "array",
    str: "string",
    int: "number",
    float: "number",
    bool: "boolean",
}
# Set on every context by ``Context.__init__``, so no field may take these names.
_CONTEXT_ATTRIBUTES = frozenset({"order_id", "state", "status"})


def _check_context(context_class: type[Context], source: str) -> None:
    """Refuse fields and create fields the runtime cannot keep or check."""
    for name in context_class.fields:
        if (
            not isinstance(name, str)
            or name.startswith("_")
            or name in _CONTEXT_ATTRIBUTES
            or hasattr(Context, name)
            or callable(getattr(context_class, name, None))
        ):
            raise ChartError(
                f"{source}: the field {name!r} would hide an attribute or method of the "
                "context; rename it"
            )
    unknown = sorted(set(context_class.private_fields) - set(context_class.fields))
    if unknown:
        raise ChartError(f"{source}: private_fields {unknown} are not among the fields")
    if context_class.create_fields and context_class.create_event is None:
        raise ChartError(
            f"{source}: create_fields are the data of the create event: set create_event "
            "(without one, an order is created by its start alone, from no data)"
        )
    for name, kind in context_class.create_fields.items():
        if kind not in JSON_TYPES:
            raise ChartError(
                f"{source}: create field {name!r} must name a JSON type "
                f"(dict, list, str, int, float or bool), not {kind!r}"
            )


def _with_options(context_class: type[Context], options: JsonObject, source: str) -> type[Context]:
    """The context class with some of its options set, each checked against its default."""
    merged = dict(context_class.options)
    for name, value in options.items():
        if name not in merged:
            known = ", ".join(sorted(merged)) or "none"
            raise ChartError(f"{source}: no option {name!r} (options: {known})")
        default = merged[name]
        same_kind = is_number(value) if is_number(default) else isinstance(value, type(default))
        if not same_kind:
            raise ChartError(
                f"{source}: option {name!r} must be like its default {default!r}, not {value!r}"
            )
        if is_number(value):
            # A negative or infinite timeout would refuse every turn that sets its timer.
            if not math.isfinite(value) or value < 0 <= default:
                raise ChartError(
                    f"{source}: option {name!r} must be a finite number, not negative, "
                    f"not {value!r}"
                )
        merged[name] = value
    return type(context_class.__name__, (context_class,), {"options": merged})


def load_chart(path: Path, options: JsonObject | None = None) -> Chart:
    """Load one chart document and its actions; any flaw is a ``ChartError`` naming the file."""
    actions = path.with_suffix(".py")
    if not actions.is_file():
        raise ChartError(f"{path.name}: no actions module {actions.name} beside it")
    context_class = _with_options(_load_actions(actions), options or {}, path.stem)
    document = read_document(path)
    if document.context:
        # The document's initial data wins over the class's defaults, as an XState author
        # expects of the machine's ``context``; the class declares the rest.
        fields = {**context_class.fields, **document.context}
        context_class = type(context_class.__name__, (context_class,), {"fields": fields})
    _check_context(context_class, path.name if document.context else actions.name)
    if has_history(document):
        # What the history states record is the order's own, kept in its snapshot and
        # shown by no view (python-statemachine keeps it in the machine, which the orders
        # of a chart share).
        context_class = type(
            context_class.__name__,
            (context_class,),
            {
                "fields": {**context_class.fields, HISTORY_FIELD: {}},
                "private_fields": context_class.private_fields | {HISTORY_FIELD},
            },
        )
    context_class = with_invoke_ids(context_class, document.invoke_ids)
    check_names(document, context_class, path.name)
    context_class = with_aliases(context_class, document.aliases, path.name, document.params)
    try:
        machine_class = load(json.dumps(document.native), format="json", name=path.stem)
    except (InvalidDefinition, ValueError, KeyError, TypeError) as exc:
        raise ChartError(f"{path.name}: {exc}") from exc
    # A failing action must abort the turn, not become an internal error.execution event,
    # and an event with no enabled transition must be refused, not silently ignored.
    machine_class.catch_errors_as_events = False
    machine_class.allow_event_without_transition = False
    events = frozenset(str(event) for event in machine_class._events)
    named = {document.event_names.get(event, event) for event in events}
    for event in sorted(document.service_events):
        if event not in named:
            raise ChartError(f"{path.name}: serviceEvents: the chart has no event {event!r}")
        if event == context_class.create_event:
            raise ChartError(
                f"{path.name}: serviceEvents: {event!r} creates orders (POST /orders), so a "
                "client must be able to send it"
            )
    chart = Chart(
        name=path.stem,
        path=path,
        machine_class=machine_class,
        context_class=context_class,
        events=events,
        engine=Engine(machine_class, context_class, track_moves=bool(document.timers)),
        timers=document.timers,
        service_events=document.service_events,
        event_names=document.event_names,
        state_names=document.state_names,
        event_ids={
            name: event
            for event, name in document.event_names.items()
            if not is_platform_event(name)
        },
    )
    try:
        chart.start("chart-check")
    except Exception as exc:
        raise ChartError(f"{path.name}: the chart cannot start: {exc}") from exc
    return chart


def load_charts(directory: Path, options: dict[str, JsonObject] | None = None) -> dict[str, Chart]:
    """Every chart document in ``directory`` (one per known suffix), keyed by file stem.

    ``options`` sets charts' options by chart name: {"pizza": {"kitchenTimeout": 30}}.
    """
    options = options or {}
    if not directory.is_dir():
        raise ChartError(f"no charts directory at {directory}")
    documents = sorted(p for p in directory.iterdir() if p.suffix in READERS)
    if not documents:
        raise ChartError(f"no chart documents ({', '.join(READERS)}) in {directory}")
    charts: dict[str, Chart] = {}
    for path in documents:
        if path.stem in charts:
            raise ChartError(f"{path.name}: a chart named {path.stem!r} is already loaded")
        charts[path.stem] = load_chart(path, options.get(path.stem))
    unknown = sorted(set(options) - set(charts))
    if unknown:
        raise ChartError(f"options given for unknown charts {unknown}; charts: {sorted(charts)}")
    return charts


def private_fields(charts: dict[str, Chart], name: str) -> frozenset[str]:
    """The context fields of chart ``name`` that no view shows (none for a chart not loaded)."""
    chart = charts.get(name)
    return chart.context_class.private_fields if chart is not None else frozenset()
