"""The timer scheduler: one task that sleeps until the next pending timer falls due.

Timers live in the store, set and cancelled by the turns that enter and leave their
states, so they survive a crash with everything else. The scheduler holds none of them: it
asks the store for the earliest due time, sleeps until then or until a turn sets an
earlier one (``notify``), and fires what is due, each as an event to its order's actor. So
100,000 pending timers cost one indexed query per wake-up, not a poll per timer, and a
timer that fell due while the server was down fires as soon as it starts.

A fired timer's turn deletes it in the same transaction that applies its event, so it
fires once. If the event is refused (the state's guards all said no), the timer is
dropped; if the store or broker failed, it is tried again a little later.

In a cluster a node fires only the timers of the shards it serves (``shards``); taking a
shard wakes the scheduler (``wake``), so timers that fell due while the shard had no owner
fire at once, and a timer whose shard was lost meanwhile is left to the new owner.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable

from orchestrator.errors import OrchestratorError, ShardMoved, TimerGone
from orchestrator.model import Timer
from orchestrator.store.base import TimerStore

log = logging.getLogger(__name__)


class Scheduler:
    def __init__(
        self,
        store: TimerStore,
        fire: Callable[[Timer], Awaitable[object]],
        *,
        clock: Callable[[], float] = time.time,
        max_in_flight: int = 256,
        retry_seconds: float = 1.0,
        shards: Callable[[], list[int]] | None = None,
    ) -> None:
        self._store = store
        self._shards = shards
        self._fire = fire
        self._clock = clock
        self._max_in_flight = max_in_flight
        self._retry_seconds = retry_seconds
        self._in_flight: dict[str, asyncio.Task[None]] = {}
        self._not_before: dict[str, float] = {}  # timers to leave alone until then
        self._sleeping_until = math.inf
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.wakeups = 0  # loop passes, each one query for due timers and one for the next

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="timer-scheduler")

    async def stop(self) -> None:
        """Stop firing; a timer whose turn did not commit stays pending for the next start."""
        tasks = [t for t in (self._task, *self._in_flight.values()) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._task = None
        # A task cancelled before it ran never reached its ``finally``.
        self._in_flight.clear()
        self._not_before.clear()

    def wake(self) -> None:
        """Look for due timers now (this node took shards)."""
        self._wake.set()

    def notify(self, due_at: float) -> None:
        """A turn set a timer: wake up if it falls due before the scheduler would."""
        if due_at < self._sleeping_until:
            self._wake.set()

    async def _run(self) -> None:
        while True:
            self._sleeping_until = math.inf  # while querying, any new timer wakes us
            self._wake.clear()
            self.wakeups += 1
            try:
                timeout = await self._pass()
            except Exception:
                log.exception("timer scheduler pass failed; trying again shortly")
                timeout = self._retry_seconds
            self._sleeping_until = self._clock() + timeout
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), None if timeout == math.inf else timeout)

    async def _pass(self) -> float:
        """Fire what is due now; return the seconds until something else needs doing."""
        now = self._clock()
        for timer_id, at in list(self._not_before.items()):
            if at <= now:
                del self._not_before[timer_id]
        shards = self._shards() if self._shards is not None else None
        if shards is not None and not shards:
            return math.inf  # no shard served: woken when one is taken
        room = self._max_in_flight - len(self._in_flight)
        if room > 0:
            skip = len(self._in_flight) + len(self._not_before)
            for timer in await self._store.due_timers(now, room + skip, shards):
                if room == 0:
                    break
                if timer.id in self._in_flight or timer.id in self._not_before:
                    continue
                self._in_flight[timer.id] = asyncio.create_task(
                    self._run_one(timer), name=f"timer-{timer.id}"
                )
                room -= 1
        # Due timers still pending are in flight or waiting to be retried: each wakes
        # us when it finishes or when its retry comes. Otherwise, the next one due.
        later = await self._store.next_timer_due(now, shards)
        wake_at = min([later or math.inf, *self._not_before.values()])
        return max(wake_at - self._clock(), 0.0)

    async def _run_one(self, timer: Timer) -> None:
        try:
            await self._fire(timer)
        except (TimerGone, ShardMoved):
            pass  # a turn cancelled or set it again after it was read; or not ours now
        except OrchestratorError as exc:
            if exc.retryable:
                log.warning("timer %s could not fire (%s); retrying", timer.id, exc.detail)
            else:
                log.info(
                    "timer %s dropped: %s",
                    timer.id,
                    exc.detail,
                    extra={"order_id": timer.order_id},
                )
                self._store.drop_timer(timer)
            self._not_before[timer.id] = self._clock() + self._retry_seconds
        except Exception:
            log.exception("timer %s failed to fire; retrying", timer.id)
            self._not_before[timer.id] = self._clock() + self._retry_seconds
        finally:
            del self._in_flight[timer.id]
            self._wake.set()
