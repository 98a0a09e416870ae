"""The base class a chart's actions extend: the order's data plus what its turn wants sent.

A chart document names actions (``addPizzaToItems``); its actions module beside it in
``statecharts/`` defines a ``Context`` subclass whose methods carry those names. The
statechart is bound to one instance per live order (``Chart(model=context)``), so an action
reads and changes ``self`` and asks for messages with :meth:`Context.send_command`.

Actions must be deterministic functions of the context and the event data: no I/O, no
clock, no randomness. The runtime journals the result, and a refused or failed turn is
undone by rebuilding the context from the last committed snapshot, so an action that
raises (``Refused`` for a business refusal) leaves nothing behind.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, ClassVar

from orchestrator.model import JsonObject

_IMMUTABLE = frozenset({str, int, float, bool, type(None)})


def _copied(value: Any) -> Any:
    """A copy that shares nothing mutable with ``value``: JSON data is copied as such (every
    new order copies its fields' defaults, at a fifth of ``copy.deepcopy``'s cost), any
    other object by ``copy.deepcopy``."""
    kind = type(value)
    if kind is dict:
        return {key: _copied(item) for key, item in value.items()}
    if kind is list:
        return [_copied(item) for item in value]
    if kind in _IMMUTABLE:
        return value
    return copy.deepcopy(value)


@dataclass(frozen=True, slots=True)
class CommandIntent:
    """A message an action asked for; the turn turns it into an outbox message."""

    type: str
    data: JsonObject
    invoke: str | None


class Context:
    """One order's data, bound to its statechart as the model.

    ``fields`` declares the data kept in the snapshot, with their initial values; ``status``
    is always kept. ``state`` is python-statemachine's state field (the configuration).
    """

    fields: ClassVar[JsonObject] = {}
    # Fields kept in the snapshot but left out of every view of the order (GET, lists,
    # WebSockets, the replies): what only the service that gets a command may know, such
    # as a payment step's task token, which the command carries to it.
    private_fields: ClassVar[frozenset[str]] = frozenset()
    # Settings of the chart (timeouts, retries) with their defaults; a server sets them
    # with --chart-option CHART.NAME=VALUE. Actions and delays read ``self.options``.
    options: ClassVar[JsonObject] = {}
    # POST /orders applies this event as version 1, with the body's other fields as its
    # data; ``create_fields`` names those fields and the JSON type each must have. Without
    # one, POST /orders creates the order by its start alone (``model.START_EVENT``): for
    # a chart whose initial state needs no client event, as one that starts by invoking.
    create_event: ClassVar[str | None] = None
    create_fields: ClassVar[dict[str, type]] = {}
    # The id of the invoke whose ``src`` is running (set around it by the chart), which
    # ``send_command`` takes when not told another: an XState invoke without an ``id``.
    current_invoke: str | None = None

    def __init__(self, order_id: str, data: JsonObject | None = None, state: Any = None) -> None:
        self.order_id = order_id
        self.state = state
        self.status: str | None = None
        self._commands: list[CommandIntent] = []
        # States entered (True) and left (False) since the last turn, in order; filled
        # only for charts with timers.
        self._moves: list[tuple[bool, str]] = []
        initial = _copied(self.fields)
        if data is not None:
            initial.update(_copied(data))
        for name, value in initial.items():
            setattr(self, name, value)

    def send_command(self, type: str, data: JsonObject, *, invoke: str | None = None) -> None:
        """Ask for a command message to be sent once this turn is committed.

        With ``invoke``, the chart hears ``done.invoke.<invoke>`` when the broker has
        durably taken the message, or ``error.invoke.<invoke>`` when it cannot be delivered.
        Sent from an invoke's ``src``, the command belongs to that invoke unless told.
        """
        invoke = invoke if invoke is not None else self.current_invoke
        self._commands.append(CommandIntent(type, _copied(data), invoke))

    def end_invoke(self) -> None:
        """Run after an invoke's ``src``: later commands belong to no invoke."""
        self.current_invoke = None

    def take_commands(self) -> list[CommandIntent]:
        commands, self._commands = self._commands, []
        return commands

    def note_move(self, entered: bool, state_id: str) -> None:
        self._moves.append((entered, state_id))

    def take_moves(self) -> list[tuple[bool, str]]:
        moves, self._moves = self._moves, []
        return moves

    def data(self) -> JsonObject:
        """The snapshot form: ``status`` and every declared field, not copied: the turn
        serializes it before any other action runs."""
        out: JsonObject = {"status": self.status}
        for name in self.fields:
            out[name] = getattr(self, name)
        return out
