"""Tests of orchestrator.timers: the one scheduler that fires durable timers.

The store is a real SqliteStore on a file in the test's temporary directory; the clock is
injected, so "now" moves only when a test says so. ``fire`` stands in for the actor: it
records the timer and commits the turn that deletes it, as the actor's turn does.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable

from orchestrator.errors import Refused, TimerGone, Unavailable
from orchestrator.model import Timer
from orchestrator.store.sqlite import SqliteStore
from orchestrator.timers import Scheduler
from tests.helpers import eventually
from tests.store.test_store import record

T0 = 1_700_000_000.0
WAIT = 10.0  # a safety net for a hung test, never a timing assertion


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def timer(order_id: str, due_at: float, n: int = 1) -> Timer:
    return Timer(f"{order_id}/after.s{n}.1s", order_id, due_at, f"after.s{n}.1s", {"n": n})


async def set_timers(store: SqliteStore, *timers: Timer, version: int = 1) -> None:
    """Commit one turn per order that sets its timers."""
    by_order: dict[str, list[Timer]] = {}
    for t in timers:
        by_order.setdefault(t.order_id, []).append(t)
    await asyncio.gather(
        *(
            store.commit(dataclasses.replace(record(order, version), timers_set=tuple(ts)))
            for order, ts in by_order.items()
        )
    )


Fire = Callable[[Timer], Awaitable[None]]


def firing(store: SqliteStore, fired: list[str]) -> Fire:
    async def fire(t: Timer) -> None:
        done = dataclasses.replace(record(t.order_id, 2), timers_cancelled=(t.id,))
        await store.commit(done)
        fired.append(t.id)  # once its turn is committed, as the actor answers

    return fire


async def test_due_timers_fire_once_in_due_order(store: SqliteStore) -> None:
    """Timers already due at start fire at once, earliest first; one not yet due waits
    for the clock, then fires too; each fires once."""
    clock = Clock(T0 + 2.5)
    fired: list[str] = []
    await set_timers(store, timer("b", T0 + 2), timer("a", T0 + 1), timer("c", T0 + 3))
    scheduler = Scheduler(store, firing(store, fired), clock=clock, max_in_flight=1)
    scheduler.start()
    try:
        await eventually(lambda: _true(len(fired) == 2), within=WAIT, what="two timers")
        assert fired == ["a/after.s1.1s", "b/after.s1.1s"]
        clock.now = T0 + 3.5
        scheduler.notify(T0 + 3)
        await eventually(lambda: _true(len(fired) == 3), within=WAIT, what="the third")
        assert await store.due_timers(T0 + 10, 10) == []
        await asyncio.sleep(0.2)
        assert fired == ["a/after.s1.1s", "b/after.s1.1s", "c/after.s1.1s"]
    finally:
        await scheduler.stop()


async def test_100k_pending_timers_cost_one_query_per_wake_up(store: SqliteStore) -> None:
    """With 100,000 timers pending an hour ahead the scheduler makes one pass and sleeps;
    a turn setting an earlier timer wakes it, and only that timer fires."""
    clock = Clock(T0)
    fired: list[str] = []
    # 100 orders in states with 1,000 timers each
    pending = [timer(f"o{n % 100}", T0 + 3600 + n / 1000, n) for n in range(100_000)]
    await set_timers(store, *pending)
    scheduler = Scheduler(store, firing(store, fired), clock=clock)
    scheduler.start()
    try:
        await eventually(lambda: _true(scheduler.wakeups == 1), within=WAIT, what="a pass")
        await asyncio.sleep(0.3)
        assert scheduler.wakeups == 1  # asleep until the first due an hour ahead
        clock.now = T0 + 2
        await set_timers(store, timer("soon", T0 + 1))
        scheduler.notify(T0 + 1)
        await eventually(lambda: _true(fired == ["soon/after.s1.1s"]), within=WAIT, what="soon")
        await asyncio.sleep(0.3)
        assert fired == ["soon/after.s1.1s"]
        # the notify's pass, and the one after the fired timer's turn
        assert scheduler.wakeups <= 4
        assert len(await store.due_timers(T0 + 7200, 200_000)) == 100_000
    finally:
        await scheduler.stop()


async def test_a_refused_timer_is_dropped(store: SqliteStore) -> None:
    """A timer whose event is refused (its guards all said no) is removed from the store,
    and not fired again."""
    calls: list[str] = []

    async def refuse(t: Timer) -> None:
        calls.append(t.id)
        raise Refused("no transition is enabled")

    await set_timers(store, timer("a", T0))
    scheduler = Scheduler(store, refuse, clock=Clock(T0 + 1), retry_seconds=0.05)
    scheduler.start()
    try:

        async def gone() -> bool:
            return await store.timer("a/after.s1.1s") is None

        await eventually(gone, within=WAIT, what="the refused timer to be dropped")
        await asyncio.sleep(0.2)
        assert calls == ["a/after.s1.1s"]
    finally:
        await scheduler.stop()


async def test_a_timer_the_store_could_not_apply_is_tried_again(store: SqliteStore) -> None:
    """Unavailable (the store or broker failed) keeps the timer; it fires again later."""
    fired: list[str] = []
    fire = firing(store, fired)
    calls = 0

    async def flaky(t: Timer) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise Unavailable("the disk is full")
        await fire(t)

    await set_timers(store, timer("a", T0))
    clock = Clock(T0 + 1)
    scheduler = Scheduler(store, flaky, clock=clock, retry_seconds=0.5)
    scheduler.start()
    try:
        await eventually(lambda: _true(calls == 1), within=WAIT, what="the first try")
        await asyncio.sleep(0.2)
        assert (calls, fired) == (1, [])  # not before retry_seconds on the clock
        clock.now += 0.5
        await eventually(lambda: _true(fired == ["a/after.s1.1s"]), within=WAIT, what="retry")
        assert calls == 2
    finally:
        await scheduler.stop()


async def test_a_timer_gone_meanwhile_is_left_alone(store: SqliteStore) -> None:
    """TimerGone (a turn cancelled or reset it after it was read) is not an error: the
    scheduler neither drops what is now stored nor fires it again before it is due."""
    calls: list[str] = []

    async def gone(t: Timer) -> None:
        calls.append(t.id)
        await set_timers(store, timer("a", T0 + 100), version=2)  # reset meanwhile
        raise TimerGone(t.id)

    await set_timers(store, timer("a", T0))
    scheduler = Scheduler(store, gone, clock=Clock(T0 + 1), retry_seconds=0.05)
    scheduler.start()
    try:
        await eventually(lambda: _true(len(calls) == 1), within=WAIT, what="the firing")
        await asyncio.sleep(0.2)
        assert calls == ["a/after.s1.1s"]
        stored = await store.timer("a/after.s1.1s")
        assert stored is not None and stored.due_at == T0 + 100
    finally:
        await scheduler.stop()


async def _true(value: bool) -> bool:
    return value
