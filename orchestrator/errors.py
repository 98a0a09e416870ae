"""The orchestrator's error vocabulary, one root with few leaves.

Every error says whether retrying the same input can help (``retryable``) and carries the
data a caller needs to explain it. The edge turns them into RFC 9457 problem documents in
one place (``edge/problems.py``); nothing else formats errors for clients.

    OrchestratorError
     +-- OrderNotFound          no order with this id                       -> 404
     +-- InvalidInput           malformed body or field, names the field    -> 422
     +-- UnknownEvent           the chart has no such event                 -> 422
     +-- EventNotAllowed        known event, not allowed in this state      -> 409
     +-- ServiceOnly            an event only a service may send, sent by a
     |                          client (the command API, an unsigned webhook) -> 403
     +-- Refused                an action refused the event (e.g. no such
     |   |                      pizza to remove); nothing changed           -> 409
     |   +-- ChartLoop          the chart's transitions did not settle in
     |   |                      one turn (a loop); nothing changed          -> 409
     |   +-- OrderTooLarge      the turn would take the order past
     |                          --max-order-bytes or --max-order-events     -> 409
     +-- VersionMismatch        If-Match names an older version             -> 412
     +-- IdempotencyConflict    an Idempotency-Key reused for another body  -> 422
     +-- ChartError             a chart document or its actions are broken  (at start)
     +-- SchemaTooNew           the database was made by a newer release    (at start)
     +-- TimerGone              a timer fired after its turn cancelled it   (internal)
     +-- StaleOutcome           an invoke's outcome for a message a later
     |                          turn replaced (a retry); ignored            (internal)
     +-- RemoteProblem          the node owning the order answered with a
     |                          problem; passed on as it is                 -> its status
     +-- Unavailable            the store or broker failed; retry later     -> 503
         +-- StoreUnavailable   the store cannot write (its disk is full or
         |                      failing): an outage, not the turn's fault   -> 503
         +-- ShardMoved         the order's shard is not this node's (any
                                more); the owner's address when known      -> 421/503
"""

from __future__ import annotations


class OrchestratorError(Exception):
    """Root of every error the orchestrator raises on purpose."""

    retryable = False
    # How an actor counts the turn in orchestrator_turns_total{result}: a refusal of what a
    # client or service sent, or ("ignored") a platform event that no longer applies.
    result = "refused"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.detail!r})"


class OrderNotFound(OrchestratorError):
    """No order has this id."""

    def __init__(self, order_id: str) -> None:
        super().__init__(f"order {order_id!r} does not exist")
        self.order_id = order_id


class InvalidInput(OrchestratorError):
    """The request body or a field of it is malformed; ``field`` names it."""

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(detail)
        self.field = field


class UnknownEvent(OrchestratorError):
    """The order's chart declares no event of this type."""

    def __init__(self, event_type: str, chart: str, known: list[str]) -> None:
        super().__init__(f"chart {chart!r} has no event {event_type!r}")
        self.event_type = event_type
        self.known = known


class EventNotAllowed(OrchestratorError):
    """The event exists in the chart but not in the order's current state."""

    def __init__(self, event_type: str, state: str, allowed: list[str], version: int) -> None:
        super().__init__(f"{event_type} is not allowed in state {state!r}")
        self.event_type = event_type
        self.state = state
        self.allowed = allowed
        self.version = version


class ServiceOnly(OrchestratorError):
    """The chart takes this event only from a service (a broker message or a signed
    webhook), and it came from a client."""

    def __init__(self, event_type: str) -> None:
        super().__init__(
            f"{event_type} is sent only by a service: over the broker, or as a signed "
            "webhook (POST /events with the webhook secret)"
        )
        self.event_type = event_type


class Refused(OrchestratorError):
    """A chart action refused the event; raised from actions, so nothing is applied."""


class ChartLoop(Refused):
    """A turn took more transitions than any chart needs: eventless transitions whose guards
    stay true, or events raised again and again. Refused, so nothing is applied and the
    server, which runs turns one at a time on its event loop, is not held forever."""


class OrderTooLarge(Refused):
    """The turn would make the order larger than one order may be: its context more than
    ``--max-order-bytes`` of JSON, or its journal more than ``--max-order-events`` events.
    Refused, so nothing is kept; not retryable, so a broker event is dead-lettered.
    ``limit`` names the flag and ``maximum`` gives its value."""

    def __init__(self, detail: str, limit: str, maximum: int) -> None:
        super().__init__(f"{detail} (--{limit} is {maximum})")
        self.limit = limit
        self.maximum = maximum


class VersionMismatch(OrchestratorError):
    """``If-Match`` named a version the order has moved past."""

    def __init__(self, expected: int, actual: int) -> None:
        super().__init__(f"the order is at version {actual}, not {expected}")
        self.expected = expected
        self.actual = actual


class IdempotencyConflict(OrchestratorError):
    """An Idempotency-Key already answered a request with a different body."""

    def __init__(self, key: str) -> None:
        super().__init__(f"Idempotency-Key {key!r} was already used for a different request")
        self.key = key


class ChartError(OrchestratorError):
    """A chart document or its actions module cannot be used; found at start-up."""


class SchemaTooNew(OrchestratorError):
    """The database's schema is newer than this code knows: a newer release wrote it, and
    this one would misread it. Nothing was changed; run the newer release."""

    def __init__(self, where: str, found: int, known: int) -> None:
        super().__init__(
            f"{where} has schema version {found}, newer than {known}, the newest this release"
            " knows; run a newer release of the orchestrator"
        )
        self.found = found
        self.known = known


class TimerGone(OrchestratorError):
    """A timer's event arrived after a turn cancelled or replaced the timer: ignore it."""

    result = "ignored"

    def __init__(self, timer_id: str) -> None:
        super().__init__(f"timer {timer_id!r} is no longer pending")
        self.timer_id = timer_id


class StaleOutcome(OrchestratorError):
    """``done.invoke.X`` or ``error.invoke.X`` about a message that is no longer the
    invocation's current one: a later turn sent X's message again (a retry). It belongs to
    an invocation that is over, so it is not applied."""

    result = "ignored"

    def __init__(self, event_type: str, message_id: str, current: str) -> None:
        super().__init__(
            f"{event_type} is about message {message_id!r}, but the current one is {current!r}"
        )
        self.message_id = message_id
        self.current = current


class Unavailable(OrchestratorError):
    """The store or broker failed under the request; the same request may succeed later."""

    retryable = True


class StoreUnavailable(Unavailable):
    """The store could not write: its disk is full, failing or locked. Nothing of the turn
    was kept, and the same event applies once the store is back, so a broker event that
    meets it is delivered again for as long as the outage lasts instead of being counted
    toward its poison limit."""


class ShardMoved(Unavailable):
    """The order's shard is owned by another node, or by none (its lease expired and no
    node has taken it yet). Nothing was applied. ``owner`` is the owner's base URL when
    this node knows it: the request belongs there (421 Misdirected Request); without one
    it is worth retrying shortly (503)."""

    def __init__(self, shard: int, owner: str | None = None) -> None:
        where = f"node {owner}" if owner else "no node yet; try again shortly"
        super().__init__(f"the order's shard {shard} is owned by {where}")
        self.shard = shard
        self.owner = owner


class RemoteProblem(OrchestratorError):
    """The node that owns the order refused or failed the forwarded request: its problem
    document (``problem``, a JSON object) and status, to be answered as they are."""

    def __init__(self, status: int, problem: dict[str, object]) -> None:
        detail = problem.get("detail")
        super().__init__(detail if isinstance(detail, str) else f"the owner answered {status}")
        self.status = status
        self.problem = problem
        # 421 and 503: the shard moved or the owner's store is down; the same request
        # may succeed later. Anything else is the request's own fault.
        self.retryable = status in (421, 503)
