"""Tests of orchestrator.chart_graph: a loaded chart class as a tree of states and a list
of transitions, which GET /charts/{name} serves and the dashboard draws."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from statemachine import HistoryState, State, StateChart

from orchestrator.chart_graph import chart_graph
from orchestrator.charts import load_chart


def flat(states: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Every state of the tree by id."""
    found: dict[str, dict[str, Any]] = {}
    for state in states:
        found[state["id"]] = state
        found.update(flat(state["children"]))
    return found


def test_pizza_states_nest_as_in_the_document(charts_dir: Path) -> None:
    """Top-level states in document order, compounds with their children, the initial and
    final flags as the chart says."""
    graph = chart_graph(load_chart(charts_dir / "pizza.yaml").machine_class)
    assert [s["id"] for s in graph["states"]] == [
        "orderPizza", "bakePizza", "cancellingKitchen", "deliverPizza", "done", "cancelled",
    ]  # fmt: skip
    states = flat(graph["states"])
    assert [c["id"] for c in states["bakePizza"]["children"]] == [
        "sendingOrderToKitchen",
        "waitingForPizzaToBeBaked",
        "errorInKitchen",
    ]
    assert states["orderPizza"]["initial"] and states["sendingOrderToKitchen"]["initial"]
    assert not states["waitingForPizzaToBeBaked"]["initial"]
    assert states["done"]["final"] and not states["orderPizza"]["final"]
    assert not any(s["parallel"] or s["history"] for s in states.values())
    assert set(states["errorInKitchen"]) == {
        "id", "path", "initial", "final", "parallel", "history", "children",
    }  # fmt: skip
    assert states["errorInKitchen"]["path"] == "bakePizza.errorInKitchen"


TIMEOUT_KITCHEN = "after.waitingForPizzaToBeBaked.kitchenTimeout"


def test_pizza_transitions(charts_dir: Path) -> None:
    """Every transition of the chart once, in-place ones with a null target, the implicit
    transitions into initial children left out."""
    graph = chart_graph(load_chart(charts_dir / "pizza.yaml").machine_class)
    edges = {(t["source"], t["event"], t["target"]) for t in graph["transitions"]}
    assert edges == {
        ("orderPizza", "ADD_PIZZA", None),
        ("orderPizza", "REMOVE_PIZZA", None),
        ("orderPizza", "CONFIRM_PIZZA", "bakePizza"),
        ("sendingOrderToKitchen", "done.invoke.sendOrderToKitchen", "waitingForPizzaToBeBaked"),
        ("bakePizza", "PIZZA_READY", "deliverPizza"),
        ("bakePizza", "error.invoke.sendOrderToKitchen", "errorInKitchen"),
        ("sendingOrderToDelivery", "done.invoke.sendOrderToDelivery", "waitingForDelivery"),
        ("deliverPizza", "PIZZA_DELIVERED", "done"),
        ("deliverPizza", "error.invoke.sendOrderToDelivery", "errorInDelivery"),
        ("orderPizza", "CANCEL", "cancelled"),
        ("bakePizza", "CANCEL", "cancellingKitchen"),
        ("cancellingKitchen", "PIZZA_CANCELLED", "cancelled"),
        ("cancellingKitchen", "error.invoke.sendCancelToKitchen", "cancelled"),
        ("cancellingKitchen", "done.invoke.sendCancelToKitchen", None),
        ("cancellingKitchen", "PIZZA_READY", None),
        ("waitingForPizzaToBeBaked", TIMEOUT_KITCHEN, "errorInKitchen"),
        ("errorInKitchen", "after.errorInKitchen.retryDelay", "sendingOrderToKitchen"),
        ("errorInKitchen", "RETRY", "sendingOrderToKitchen"),
        ("waitingForDelivery", "after.waitingForDelivery.deliveryTimeout", "errorInDelivery"),
        ("errorInDelivery", "after.errorInDelivery.retryDelay", "sendingOrderToDelivery"),
        ("errorInDelivery", "RETRY", "sendingOrderToDelivery"),
        ("cancellingKitchen", "after.cancellingKitchen.kitchenTimeout", "cancellingKitchen"),
    }
    assert len(graph["transitions"]) == len(edges)
    # an invoke's error moves to a child without leaving and re-entering the stage
    assert {t["event"] for t in graph["transitions"] if t["internal"]} == {
        "error.invoke.sendOrderToKitchen",
        "error.invoke.sendOrderToDelivery",
    }


class Shapes(StateChart[Any]):
    """Parallel regions, a deep history state, an internal and a multi-event transition."""

    class work(State.Compound):
        draft = State(initial=True)
        review = State()
        memory = HistoryState(type="deep")
        submit = draft.to(review)
        touch = review.to(review, internal=True)

    class checks(State.Parallel):
        class legal(State.Compound):
            pending = State(initial=True)

        class money(State.Compound):
            unpaid = State(initial=True)

    closed = State(final=True)
    advance = work.to(checks)
    finish = checks.to(closed, event="approve force_close")  # and "finish", its name
    resume = checks.to(work.memory)


def test_parallel_history_and_transition_kinds() -> None:
    """Parallel states and their regions, history kinds, internal transitions, several
    events on one transition (space-separated, as python-statemachine writes them)."""
    graph = chart_graph(Shapes)
    states = flat(graph["states"])
    assert states["checks"]["parallel"]
    assert [c["id"] for c in states["checks"]["children"]] == ["legal", "money"]
    assert states["memory"]["history"] == "deep"
    assert [c["id"] for c in states["work"]["children"]] == ["draft", "review", "memory"]
    by_event = {t["event"]: t for t in graph["transitions"]}
    assert by_event["touch"] == {
        "source": "review", "target": "review", "event": "touch", "internal": True,
    }  # fmt: skip
    assert by_event["approve force_close finish"]["target"] == "closed"
    assert by_event["resume"]["target"] == "memory"
