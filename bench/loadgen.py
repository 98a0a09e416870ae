"""Closed-loop HTTP/WebSocket load generator for the order orchestrator.

It measures how fast one server process serves whole orders, not single requests:

* ``commands``: per order, create (POST /orders), ADD_PIZZA x3, REMOVE_PIZZA (one of the added
  pizzas), GET; every step waits for the previous response. This is the synchronous command
  path: HTTP parsing, one actor turn, one durable write, one response.
* ``flow``: per order, create, open the order's WebSocket, ADD_PIZZA x2, CONFIRM_PIZZA, then wait
  for a pushed message whose ``view.state`` is ``"done"``. Besides request latency this reports
  confirm-to-done latency: the time the order takes to run through the kitchen and delivery
  stubs on its own, as a client watching the socket sees it.
* ``ceiling``: per "order", one ``GET /`` of ``bench/ceiling.py``'s hello-world app (which
  ``run.sh`` serves instead of the orchestrator for this workload): the machine's ceiling for
  an HTTP request through uvicorn and Starlette, to measure beside the others.

``--concurrency C`` workers each drive one order at a time, pulling order numbers from a shared
counter until ``--orders N`` are done, so at most C orders (and C HTTP requests) are in flight.
Every status code and the shape of every view are checked; any failure is counted, reported on
stderr and makes the exit code non-zero, so a fast but broken run never yields a figure.

Why aiohttp: the generator runs in one Python process on its own core and must not be the
bottleneck. httpx's connection pool caps a Python load generator near 600 req/s on this
machine; aiohttp's connector (plus uvloop when installed) goes several times further, so the
figures describe the server.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import os
import random
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

CREATE_PIZZA: dict[str, str] = {"name": "pineapple", "size": "L"}
# Distinct pizzas, so item counts do not depend on how the server groups equal items.
EXTRA_PIZZAS: tuple[dict[str, str], ...] = (
    {"name": "margherita", "size": "M"},
    {"name": "diavola", "size": "S"},
    {"name": "quattro formaggi", "size": "L"},
)
DONE_STATE = "done"
MAX_ERROR_KINDS_SHOWN = 20

View = dict[str, Any]


class OrderError(Exception):
    """One failed step of an order; ``kind`` groups equal failures in the report."""

    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind
        self.detail = detail


@dataclass
class Stats:
    """What one phase (warm-up or measurement) observed."""

    request_latencies: list[float] = field(default_factory=list)  # seconds, every HTTP response
    # seconds, the POSTs only: each is a durable command, answered after its turn commits
    command_latencies: list[float] = field(default_factory=list)
    done_latencies: list[float] = field(default_factory=list)  # seconds, confirm -> "done"
    errors: Counter[str] = field(default_factory=Counter)
    error_examples: dict[str, str] = field(default_factory=dict)
    orders_ok: int = 0
    aborted: bool = False  # stopped early after too many errors

    def record_error(self, exc: OrderError) -> None:
        self.errors[exc.kind] += 1
        self.error_examples.setdefault(exc.kind, exc.detail)

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())


def percentile(sorted_values: list[float], pct: float) -> float:
    """Nearest-rank percentile of an ascending list (nan when empty)."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(pct / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def _problem_summary(raw: bytes) -> str:
    """A short description of an error body (problem+json title/detail, else the raw text)."""
    try:
        body = json.loads(raw)
    except ValueError:
        return raw[:200].decode("utf-8", "replace")
    if isinstance(body, dict):
        parts = [str(body[key]) for key in ("title", "detail") if body.get(key)]
        if parts:
            return ": ".join(parts)[:300]
    return raw[:200].decode("utf-8", "replace")


def _items(view: View, step: str) -> list[Any]:
    items = view.get("items")
    if not isinstance(items, list):
        raise OrderError(f"{step}: view has no items list", repr(view)[:300])
    return items


class Client:
    """The HTTP and WebSocket calls of one phase, timing and checking each response."""

    def __init__(
        self,
        http: aiohttp.ClientSession,
        ws: aiohttp.ClientSession,
        base_url: str,
        stats: Stats,
        timeout: float,
    ) -> None:
        self._http = http
        self._ws = ws
        # Several servers (a cluster's nodes, comma-separated): each request goes to one of
        # them at random, as behind a load balancer that knows nothing of shards.
        self._bases = [url.rstrip("/") for url in base_url.split(",")]
        self._base = self._bases[0]
        self.stats = stats
        self.timeout = timeout

    async def _request(
        self, method: str, path: str, step: str, expect: int, body: Any = None
    ) -> tuple[View, str | None]:
        """Send one request; return the JSON object body and the Location header."""
        start = time.perf_counter()
        try:
            base = self._base if len(self._bases) == 1 else random.choice(self._bases)
            async with self._http.request(method, base + path, json=body) as resp:
                raw = await resp.read()
                status = resp.status
                location = resp.headers.get("Location")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise OrderError(f"{step}: {type(exc).__name__}", str(exc)) from exc
        elapsed = time.perf_counter() - start
        self.stats.request_latencies.append(elapsed)
        if method == "POST":
            self.stats.command_latencies.append(elapsed)
        if status != expect:
            raise OrderError(f"{step}: HTTP {status} (expected {expect})", _problem_summary(raw))
        try:
            view = json.loads(raw)
        except ValueError as exc:
            raise OrderError(
                f"{step}: body is not JSON", raw[:200].decode("utf-8", "replace")
            ) from exc
        if not isinstance(view, dict):
            raise OrderError(f"{step}: body is not a JSON object", repr(view)[:200])
        return view, location

    async def create(self, pizza: dict[str, str]) -> tuple[str, View]:
        step = "POST /orders"
        view, location = await self._request("POST", "/orders", step, 201, {"pizza": pizza})
        order_id = view.get("id")
        if not isinstance(order_id, str) or not order_id:
            raise OrderError(f"{step}: view has no id", repr(view)[:300])
        if location is None or not location.endswith(f"/orders/{order_id}"):
            raise OrderError(f"{step}: bad Location header", f"{location!r} for id {order_id}")
        return order_id, view

    async def send(self, order_id: str, event_type: str, data: Any = None) -> View:
        body: dict[str, Any] = {"type": event_type}
        if data is not None:
            body["data"] = data
        step = f"POST /orders/{{id}}/events {event_type}"
        view, _ = await self._request("POST", f"/orders/{order_id}/events", step, 200, body)
        return view

    async def get(self, order_id: str) -> View:
        view, _ = await self._request("GET", f"/orders/{order_id}", "GET /orders/{id}", 200)
        return view

    async def get_root(self) -> View:
        view, _ = await self._request("GET", "/", "GET /", 200)
        return view

    async def watch(self, order_id: str) -> Watcher:
        """Open the order's WebSocket (not counted as an HTTP request) and start reading it."""
        step = "WS /orders/{id}/ws"
        try:
            base = self._base if len(self._bases) == 1 else random.choice(self._bases)
            ws = await self._ws.ws_connect(base + f"/orders/{order_id}/ws")
        except aiohttp.WSServerHandshakeError as exc:
            raise OrderError(f"{step}: handshake HTTP {exc.status}", exc.message) from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise OrderError(f"{step}: {type(exc).__name__}", str(exc)) from exc
        return Watcher(ws, self.timeout)


class Watcher:
    """Reads one order's WebSocket in the background until a view reaches the done state."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, done_timeout: float) -> None:
        self._ws = ws
        self._done_timeout = done_timeout
        self.last_state: str | None = None
        self.messages = 0
        self._task = asyncio.create_task(self._read_until_done())

    async def _read_until_done(self) -> float:
        step = "WS /orders/{id}/ws"
        while True:
            msg = await self._ws.receive()
            if msg.type not in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                raise OrderError(
                    f"{step}: closed before {DONE_STATE!r}",
                    f"{msg.type.name} after {self.messages} messages, last state {self.last_state}",
                )
            received = time.perf_counter()
            self.messages += 1
            try:
                payload = json.loads(msg.data)
                state = payload["view"]["state"]
            except (ValueError, KeyError, TypeError) as exc:
                raise OrderError(f"{step}: malformed message", str(msg.data)[:200]) from exc
            self.last_state = state
            if state == DONE_STATE:
                return received

    async def wait_done(self) -> float:
        """perf_counter() time at which the done message arrived."""
        try:
            async with asyncio.timeout(self._done_timeout):
                return await asyncio.shield(self._task)
        except TimeoutError:
            raise OrderError(
                f"flow: not {DONE_STATE!r} within {self._done_timeout:g} s",
                f"last state {self.last_state}",
            ) from None

    async def close(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        await self._ws.close()


async def commands_order(client: Client) -> None:
    order_id, _ = await client.create(CREATE_PIZZA)
    view: View = {}
    for pizza in EXTRA_PIZZAS:
        view = await client.send(order_id, "ADD_PIZZA", {"pizza": pizza})
    added = len(_items(view, "ADD_PIZZA"))
    removed = await client.send(order_id, "REMOVE_PIZZA", {"pizza": EXTRA_PIZZAS[1]})
    if len(_items(removed, "REMOVE_PIZZA")) != added - 1:
        raise OrderError("REMOVE_PIZZA: item count did not drop by one", repr(removed)[:300])
    got = await client.get(order_id)
    if got.get("version") != removed.get("version") or got.get("items") != removed.get("items"):
        raise OrderError("GET /orders/{id}: view differs from the last event's", repr(got)[:300])


async def flow_order(client: Client) -> None:
    order_id, _ = await client.create(CREATE_PIZZA)
    watcher = await client.watch(order_id)
    try:
        for pizza in EXTRA_PIZZAS[:2]:
            await client.send(order_id, "ADD_PIZZA", {"pizza": pizza})
        confirmed = time.perf_counter()
        await client.send(order_id, "CONFIRM_PIZZA")
        done = await watcher.wait_done()
        client.stats.done_latencies.append(done - confirmed)
    finally:
        await watcher.close()


async def ceiling_request(client: Client) -> None:
    got = await client.get_root()
    if got != {"hello": "world"}:
        raise OrderError("GET /: not the hello-world app's answer", repr(got)[:300])


WORKLOADS: dict[str, Callable[[Client], Awaitable[None]]] = {
    "commands": commands_order,
    "flow": flow_order,
    "ceiling": ceiling_request,
}


async def run_phase(
    workload: Callable[[Client], Awaitable[None]],
    client: Client,
    orders: int,
    concurrency: int,
    max_errors: int,
) -> float:
    """Drive ``orders`` orders through ``concurrency`` workers; return the wall time.

    Workers stop taking new orders once ``max_errors`` orders have failed (0: never), so a dead
    server ends the run quickly instead of producing one connection error per remaining order.
    """
    counter = itertools.count()

    async def worker() -> None:
        while next(counter) < orders:
            if max_errors and client.stats.error_count >= max_errors:
                client.stats.aborted = True
                return
            try:
                await workload(client)
            except OrderError as exc:
                client.stats.record_error(exc)
            else:
                client.stats.orders_ok += 1

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - start


class ServerProbe:
    """Memory and CPU of the server process, read from /proc; CPU summed over ``others``
    too (the other nodes of a cluster)."""

    def __init__(self, pid: int, others: tuple[int, ...] = ()) -> None:
        self.pid = pid
        self.others = others
        self._ticks = os.sysconf("SC_CLK_TCK")

    def memory_mib(self) -> tuple[float, float] | None:
        """(peak RSS, current RSS) in MiB, from VmHWM and VmRSS; None once the process is gone."""
        fields: dict[str, float] = {}
        try:
            with open(f"/proc/{self.pid}/status", encoding="ascii") as status:
                for line in status:
                    key, _, value = line.partition(":")
                    if key in ("VmHWM", "VmRSS"):
                        fields[key] = int(value.split()[0]) / 1024  # kB -> MiB
        except OSError:
            return None
        if "VmHWM" not in fields or "VmRSS" not in fields:  # a zombie has no memory lines
            return None
        return fields["VmHWM"], fields["VmRSS"]

    def cpu_seconds(self) -> float | None:
        """User + system CPU time the processes have used so far; None once one is gone."""
        total = 0.0
        for pid in (self.pid, *self.others):
            try:
                with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
                    after_name = stat.read().rpartition(")")[2].split()
            except OSError:
                return None
            # Fields after "(comm)" start at field 3 (state); utime and stime: 14 and 15.
            total += (int(after_name[11]) + int(after_name[12])) / self._ticks
        return total


def _ms(seconds: float) -> float | None:
    return None if math.isnan(seconds) else round(seconds * 1000, 3)


def _fmt_ms(seconds: float) -> str:
    return "n/a" if math.isnan(seconds) else f"{seconds * 1000:.2f}"


def _latency_line(sorted_values: list[float], pcts: tuple[int, ...] = (50, 90, 99)) -> str:
    return "  ".join(f"p{p} {_fmt_ms(percentile(sorted_values, p))}" for p in pcts) + (
        f"  max {_fmt_ms(percentile(sorted_values, 100))}"
    )


def _latency_ms(
    sorted_values: list[float], pcts: tuple[int, ...] = (50, 90, 99, 100)
) -> dict[str, float | None]:
    """The JSON form of ``_latency_line``: milliseconds by percentile (``p100`` = max)."""
    return {f"p{p}": _ms(percentile(sorted_values, p)) for p in pcts}


def report_errors(label: str, stats: Stats) -> None:
    aborted = " (stopped early: --max-errors reached)" if stats.aborted else ""
    print(f"{label}: {stats.error_count} errors{aborted}", file=sys.stderr)
    for kind, count in stats.errors.most_common(MAX_ERROR_KINDS_SHOWN):
        example = stats.error_examples.get(kind, "")
        print(
            f"  {count:6d} x {kind}" + (f"  (e.g. {example})" if example else ""), file=sys.stderr
        )
    hidden = len(stats.errors) - MAX_ERROR_KINDS_SHOWN
    if hidden > 0:
        print(f"  ... and {hidden} more kinds", file=sys.stderr)


def summarize(
    args: argparse.Namespace,
    loop_name: str,
    stats: Stats,
    wall: float,
    probe: ServerProbe | None,
    server_cpu: float | None,
) -> dict[str, Any]:
    latencies = sorted(stats.request_latencies)
    commands = sorted(stats.command_latencies)
    done = sorted(stats.done_latencies)
    result: dict[str, Any] = {
        "workload": args.workload,
        "orders": args.orders,
        "concurrency": args.concurrency,
        "warmup": args.warmup,
        "loop": loop_name,
        "wall_s": round(wall, 3),
        "orders_ok": stats.orders_ok,
        "orders_per_s": round(stats.orders_ok / wall, 1),  # completed without error
        "requests": len(latencies),
        "requests_per_s": round(len(latencies) / wall, 1),
        "latency_ms": _latency_ms(latencies),
        "commands": len(commands),
        "commands_per_s": round(len(commands) / wall, 1),
        "command_latency_ms": _latency_ms(commands),
        "confirm_to_done_ms": None,
        "server": None,
        "errors": stats.error_count,
        "aborted": stats.aborted,
        "error_kinds": dict(stats.errors),
    }
    print(f"workload       {args.workload}  (loop {loop_name})")
    failed = (
        f", {args.orders - stats.orders_ok} NOT COMPLETED" if stats.orders_ok < args.orders else ""
    )
    print(f"orders         {args.orders}  (+{args.warmup} warm-up, not counted{failed})")
    print(f"concurrency    {args.concurrency}")
    print(f"wall           {wall:.3f} s")
    print(f"orders/s       {result['orders_per_s']:.1f}")
    print(f"requests/s     {result['requests_per_s']:.1f}  ({len(latencies)} HTTP requests)")
    print(f"request ms     {_latency_line(latencies)}")
    if commands:  # the ceiling workload sends none
        print(
            f"commands/s     {result['commands_per_s']:.1f}  ({len(commands)} POSTs, each durable)"
        )
        print(f"command ms     {_latency_line(commands)}")
    if args.workload == "flow":
        result["confirm_to_done_ms"] = _latency_ms(done, (50, 99, 100))
        print(f"confirm->done  {_latency_line(done, (50, 99))}  ({len(done)} orders)")
    memory = probe.memory_mib() if probe is not None else None
    if probe is not None and memory is None:
        print(f"server         pid {probe.pid} is gone", file=sys.stderr)
    if probe is not None and memory is not None:
        peak, now = memory
        cpu_pct = None if server_cpu is None else round(100 * server_cpu / wall, 1)
        # CPU per request: what each request cost the server, whatever the concurrency; it
        # drifts with the machine's phase as the rates do.
        cpu_us = None if server_cpu is None or not latencies else server_cpu / len(latencies) * 1e6
        per_command = None if server_cpu is None or not commands else server_cpu / len(commands)
        result["server"] = {
            "pid": probe.pid,
            "peak_rss_mib": round(peak, 1),
            "rss_mib": round(now, 1),
            "cpu_percent": cpu_pct,
            "cpu_us_per_request": None if cpu_us is None else round(cpu_us, 1),
            "cpu_us_per_command": None if per_command is None else round(per_command * 1e6, 1),
        }
        print(f"server RSS     peak {peak:.1f} MiB, now {now:.1f} MiB  (pid {probe.pid})")
        if cpu_pct is not None:
            per_request = "" if cpu_us is None else f", {cpu_us:.0f} us per request"
            print(f"server CPU     {cpu_pct:.0f}% of one core during the measured run{per_request}")
    print(f"errors         {stats.error_count}")
    return result


async def main_async(args: argparse.Namespace, loop_name: str) -> int:
    workload = WORKLOADS[args.workload]
    probe = (
        ServerProbe(args.server_pid, tuple(args.other_pid)) if args.server_pid is not None else None
    )
    timeout = aiohttp.ClientTimeout(total=args.timeout)
    # The WebSockets of the flow workload hold their connections for the whole order, so they get
    # their own connector; the HTTP pool stays at exactly `concurrency` keep-alive connections.
    http = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=args.concurrency),
        timeout=timeout,
        cookie_jar=aiohttp.DummyCookieJar(),
    )
    ws = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=args.concurrency),
        timeout=timeout,
        cookie_jar=aiohttp.DummyCookieJar(),
    )
    async with http, ws:
        if args.warmup > 0:
            warm = Client(http, ws, args.url, Stats(), args.timeout)
            await run_phase(workload, warm, args.warmup, args.concurrency, args.max_errors)
            if warm.stats.error_count:
                report_errors("warm-up failed", warm.stats)
                return 1
        stats = Stats()
        client = Client(http, ws, args.url, stats, args.timeout)
        cpu_before = probe.cpu_seconds() if probe is not None else None
        wall = await run_phase(workload, client, args.orders, args.concurrency, args.max_errors)
        cpu_after = probe.cpu_seconds() if probe is not None else None
        server_cpu = (
            cpu_after - cpu_before if cpu_after is not None and cpu_before is not None else None
        )
    result = summarize(args, loop_name, stats, wall, probe, server_cpu)
    if stats.error_count:
        report_errors("measured run", stats)
    if args.json:
        print(json.dumps(result, separators=(",", ":")))
    return 1 if stats.error_count else 0


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument(
        "--url",
        default="http://127.0.0.1:8000",
        help="server base URL; several, comma-separated, are used at random (a cluster)",
    )
    parser.add_argument("--workload", choices=sorted(WORKLOADS), default="commands")
    parser.add_argument("--orders", type=_positive_int, default=2000, help="measured orders")
    parser.add_argument(
        "--concurrency", type=_positive_int, default=32, help="orders (and requests) in flight"
    )
    parser.add_argument(
        "--warmup", type=_non_negative_int, default=50, help="orders run first and not counted"
    )
    parser.add_argument(
        "--server-pid", type=int, help="server PID: report its peak/current RSS and CPU use"
    )
    parser.add_argument(
        "--other-pid",
        type=int,
        action="append",
        default=[],
        help="another server's PID (a cluster's node), whose CPU use counts too; repeatable",
    )
    parser.add_argument(
        "--timeout", type=float, default=30.0, help="seconds per request and per confirm->done"
    )
    parser.add_argument(
        "--max-errors",
        type=_non_negative_int,
        default=100,
        help="stop starting orders after this many failed ones (0: never); exit code stays 1",
    )
    parser.add_argument("--no-uvloop", action="store_true", help="use the default asyncio loop")
    parser.add_argument("--json", action="store_true", help="also print one JSON object")
    args = parser.parse_args(argv)
    if args.server_pid is not None and not os.path.exists(f"/proc/{args.server_pid}/status"):
        parser.error(f"--server-pid {args.server_pid}: no such process")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    loop_name = "asyncio"
    if not args.no_uvloop:
        try:
            import uvloop
        except ImportError:
            pass
        else:
            loop_factory, loop_name = uvloop.new_event_loop, "uvloop"
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(main_async(args, loop_name))


if __name__ == "__main__":
    sys.exit(main())
