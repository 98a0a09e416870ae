"""The ``commands`` workload without sockets: the orchestrator's ASGI app called in-process.

Each of ``--concurrency`` workers runs orders through the app (create, ADD_PIZZA x3,
REMOVE_PIZZA, GET) with the same checks as loadgen.py, against a real runtime on a
temporary SQLite file. Leaving out uvicorn, the network and the load generator separates
the orchestrator's own cost per request from the HTTP server's, and makes the run
repeatable enough to count instructions:

    valgrind --tool=callgrind --callgrind-out-file=one.out python bench/inprocess.py --orders 1
    valgrind --tool=callgrind --callgrind-out-file=many.out python bench/inprocess.py --orders 300

(instructions of ``many`` - instructions of ``one``) / (6 x 299) is the cost of one request,
start-up left out. Unlike a timing on a virtual machine, it repeats to within 0.1%.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from orchestrator.cli import settle_heap
from orchestrator.runtime import Runtime
from orchestrator.settings import Settings

CREATE_PIZZA = {"name": "pineapple", "size": "L"}
EXTRA_PIZZAS = (
    {"name": "margherita", "size": "M"},
    {"name": "diavola", "size": "S"},
    {"name": "quattro formaggi", "size": "L"},
)
REQUESTS_PER_ORDER = 6
App = Any


async def call(app: App, method: str, path: str, body: object = None) -> tuple[int, Any]:
    """One HTTP request through the ASGI interface; the status and the parsed JSON body."""
    raw = b"" if body is None else json.dumps(body).encode()
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"127.0.0.1"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(raw)).encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    received = False
    status = 0
    chunks: list[bytes] = []

    async def receive() -> dict[str, Any]:
        nonlocal received
        if received:  # nothing more to read: wait as a client that stays connected
            await asyncio.Event().wait()
        received = True
        return {"type": "http.request", "body": raw, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        else:
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    return status, json.loads(b"".join(chunks))


class BadAnswer(Exception):
    """A response that is not what the workload expects: the run has no valid figure."""


def expect(got: int, want: int, step: str, body: object) -> None:
    if got != want:
        raise BadAnswer(f"{step}: HTTP {got}, expected {want}: {body}")


async def order(app: App) -> None:
    status, view = await call(app, "POST", "/orders", {"pizza": CREATE_PIZZA})
    expect(status, 201, "POST /orders", view)
    events = f"/orders/{view['id']}/events"
    for pizza in EXTRA_PIZZAS:
        status, view = await call(
            app, "POST", events, {"type": "ADD_PIZZA", "data": {"pizza": pizza}}
        )
        expect(status, 200, "ADD_PIZZA", view)
    removal = {"type": "REMOVE_PIZZA", "data": {"pizza": EXTRA_PIZZAS[1]}}
    status, removed = await call(app, "POST", events, removal)
    expect(status, 200, "REMOVE_PIZZA", removed)
    status, got = await call(app, "GET", f"/orders/{view['id']}")
    expect(status, 200, "GET /orders/{id}", got)
    if got["version"] != removed["version"] or len(got["items"]) != len(EXTRA_PIZZAS):
        raise BadAnswer(f"GET /orders/{{id}}: view differs from the last event's: {got}")


async def main_async(orders: int, concurrency: int, charts: Path | None) -> None:
    with tempfile.TemporaryDirectory() as directory:
        settings = Settings(db=Path(directory) / "inprocess.db", charts_dir=charts)
        app = Runtime(settings).app
        async with app.router.lifespan_context(app):
            settle_heap()  # as `orchestrator serve` does once started
            counter = itertools.count()

            async def worker() -> None:
                while next(counter) < orders:
                    await order(app)

            started = time.perf_counter()
            async with asyncio.TaskGroup() as workers:  # the first failure stops them all
                for _ in range(concurrency):
                    workers.create_task(worker())
            wall = time.perf_counter() - started
    requests = orders * REQUESTS_PER_ORDER
    print(f"orders         {orders}  (concurrency {concurrency}, in-process: no sockets)")
    print(f"requests/s     {requests / wall:.1f}  ({requests} requests in {wall:.3f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--charts", type=Path, help="charts directory (default: statecharts/)")
    parser.add_argument("--no-uvloop", action="store_true")
    args = parser.parse_args()
    if args.orders < 1 or args.concurrency < 1:
        parser.error("--orders and --concurrency must be at least 1")
    runner: Any = asyncio.run
    if not args.no_uvloop:
        try:
            import uvloop

            runner = uvloop.run
        except ImportError:
            print("uvloop is not installed: using asyncio's loop", file=sys.stderr)
    try:
        runner(main_async(args.orders, args.concurrency, args.charts))
    except* BadAnswer as failed:
        for error in failed.exceptions:
            print(error, file=sys.stderr)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
