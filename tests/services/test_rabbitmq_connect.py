"""The first connection to RabbitMQ, from `orchestrator serve` and from the stub services.

Started beside RabbitMQ (by hand, or by a compose file without health checks), a process may
come up before the broker does. It keeps trying for ``--broker-connect-timeout`` seconds,
saying so at WARNING, and serves once the broker answers. A broker that never answers ends
the process then, and one that refuses it (login, virtual host, TLS) at once: exit code 1,
an ``Error:`` line on stderr, no traceback, and no password from the URL.

The late broker is real RabbitMQ behind a TCP relay that this test opens only once the
processes have found the port closed. With ``ORCHESTRATOR_TEST_RABBITMQ=require`` an
unreachable RabbitMQ fails the tests that need it instead of skipping them.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from yarl import URL

from orchestrator.broker.rabbitmq import BrokerUnreachable
from orchestrator.runtime import Runtime
from orchestrator.settings import Settings
from tests.conftest import ServerProcess, free_port
from tests.helpers import RABBITMQ_URL, delete_flow_queues, eventually

SECRET = "s3cret-in-the-url"
PROCESS_DEADLINE = 60.0  # seconds for a process to exit or become ready


def serve(db: Path, broker: str, *flags: str) -> list[str]:
    return [
        sys.executable, "-m", "orchestrator", "serve", "--db", str(db),
        "--port", str(free_port()), "--broker", broker, *flags,
    ]  # fmt: skip


def kitchen(db: Path, broker: str, *flags: str) -> list[str]:
    ledger = str(db.with_name("kitchen.db"))
    return [
        sys.executable, "-m", "services.kitchen", "--broker", broker, "--ledger", ledger, *flags,
    ]  # fmt: skip


@pytest.mark.parametrize("command", [serve, kitchen], ids=["serve", "kitchen"])
@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("amqp:///", "an amqp:// URL with a host"),
        (f"amqp://guest:{SECRET}@/vhost", "an amqp:// URL with a host"),
        ("http://127.0.0.1:5672/", "an amqp:// or amqps:// URL"),
        ("amqp://127.0.0.1:99999/", "a valid amqp:// URL (Port out of range"),
    ],
)
def test_a_broker_url_that_names_no_server_is_a_usage_error(
    tmp_path: Path, command: Callable[..., list[str]], url: str, problem: str
) -> None:
    done = subprocess.run(
        command(tmp_path / "orders.db", url),
        capture_output=True,
        text=True,
        timeout=PROCESS_DEADLINE,
    )
    assert done.returncode == 2
    assert problem in done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert SECRET not in done.stderr + done.stdout


@pytest.mark.parametrize("command", [serve, kitchen], ids=["serve", "kitchen"])
def test_a_broker_that_never_answers_ends_the_process_with_an_error_line(
    tmp_path: Path, command: Callable[..., list[str]]
) -> None:
    port = free_port()  # nothing listens on it
    broker = f"amqp://guest:{SECRET}@127.0.0.1:{port}/"
    done = subprocess.run(
        command(tmp_path / "orders.db", broker, "--broker-connect-timeout", "1"),
        capture_output=True,
        text=True,
        timeout=PROCESS_DEADLINE,
    )
    assert done.returncode == 1
    expected = f"Error: cannot reach RabbitMQ at amqp://guest@127.0.0.1:{port}/ within 1 s:"
    assert expected in done.stderr
    assert "trying again" in done.stderr  # it did try more than once
    assert "Traceback" not in done.stderr + done.stdout
    assert SECRET not in done.stderr + done.stdout


# What waiting cannot mend, each against the real RabbitMQ: a wrong password, a virtual host
# that is not there, TLS spoken to its plain AMQP port.
REFUSALS: dict[str, tuple[Callable[[URL], URL], str]] = {
    "login": (lambda url: url.with_password(SECRET), "refused the connection: ACCESS_REFUSED"),
    "vhost": (lambda url: url.with_path("/no-such-vhost"), "closed the connection as it opened"),
    "tls": (lambda url: url.with_scheme("amqps").with_password(SECRET), "TLS with RabbitMQ at"),
}


@pytest.mark.parametrize("command", [serve, kitchen], ids=["serve", "kitchen"])
@pytest.mark.parametrize("refusal", sorted(REFUSALS))
async def test_a_refusal_ends_the_process_at_once(
    tmp_path: Path, command: Callable[..., list[str]], refusal: str
) -> None:
    """The long timeout is not waited out (the subprocess would be killed first), and
    nothing but the error line is printed: no traceback, no password."""
    await delete_flow_queues()  # fails, or skips, when RabbitMQ is not there
    make_url, expected = REFUSALS[refusal]
    broker = str(make_url(URL(RABBITMQ_URL).with_port(URL(RABBITMQ_URL).port or 5672)))
    done = await asyncio.to_thread(
        subprocess.run,
        command(tmp_path / "orders.db", broker, "--broker-connect-timeout", "600"),
        capture_output=True,
        text=True,
        timeout=PROCESS_DEADLINE,
    )
    assert done.returncode == 1
    assert expected in done.stderr
    assert "trying again" not in done.stderr
    assert "Reconnecting" not in done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert SECRET not in done.stderr + done.stdout


async def test_processes_started_before_the_broker_wait_for_it(tmp_path: Path) -> None:
    await delete_flow_queues()
    upstream = URL(RABBITMQ_URL)
    relay_port = free_port()
    late = str(upstream.with_port(relay_port))
    server = ServerProcess(tmp_path / "orders.db", ["--broker", late])
    kitchen_log = tmp_path / "kitchen.log"
    kitchen_proc = spawn(kitchen(tmp_path / "orders.db", late), kitchen_log)
    starting = asyncio.create_task(asyncio.to_thread(server.start))
    relay: asyncio.Server | None = None
    try:

        async def both_waiting() -> bool:
            waiting = f"127.0.0.1:{relay_port}/ is not reachable"
            return waiting in server.log() and waiting in kitchen_log.read_text()

        await eventually(both_waiting, within=PROCESS_DEADLINE, what="both to find no broker")
        assert not starting.done()
        relay = await asyncio.start_server(
            lambda r, w: _relay(r, w, upstream.host or "127.0.0.1", upstream.port or 5672),
            "127.0.0.1",
            relay_port,
        )
        await asyncio.wait_for(starting, PROCESS_DEADLINE)  # /readyz answered 200

        async def kitchen_ready() -> bool:
            return "kitchen ready" in kitchen_log.read_text()

        await eventually(kitchen_ready, within=PROCESS_DEADLINE, what="the kitchen to start")
        async with httpx.AsyncClient(base_url=server.url) as http:
            created = await http.post("/orders", json={"pizza": {"name": "hawaii"}})
            assert created.status_code == 201, created.text
        assert kitchen_proc.poll() is None
    finally:
        if not starting.done():
            server.stop()  # the thread's start then fails on the dead process
        await asyncio.gather(starting, return_exceptions=True)
        server.stop()
        kitchen_proc.kill()
        kitchen_proc.wait(timeout=10)
        if relay is not None:
            relay.close()
        await delete_flow_queues()


def spawn(command: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as log:
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)


async def _relay(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str, port: int
) -> None:
    """Carry one client's TCP connection to RabbitMQ and back."""
    up_reader, up_writer = await asyncio.open_connection(host, port)

    async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        finally:
            sink.close()

    await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer), return_exceptions=True)


async def test_a_runtime_that_cannot_reach_the_broker_leaves_no_thread_behind(
    tmp_path: Path,
) -> None:
    """`serve` checks the broker before uvicorn starts; should it vanish just after, the
    runtime's own start fails. The store it opened first must be closed again: its threads
    once kept the process alive, neither serving nor retrying, for a supervisor to see as
    running."""
    before = set(threading.enumerate())
    port = free_port()  # nothing listens on it
    settings = Settings(
        db=tmp_path / "orders.db",
        broker=f"amqp://guest:guest@127.0.0.1:{port}/",
        broker_connect_timeout=0,
    )
    runtime = Runtime(settings)
    with pytest.raises(BrokerUnreachable, match=f"127.0.0.1:{port}/ within 0 s"):
        await runtime.start()
    left = [t for t in set(threading.enumerate()) - before if t.is_alive() and not t.daemon]
    assert left == []


@pytest.mark.parametrize("command", [serve, kitchen], ids=["serve", "kitchen"])
@pytest.mark.parametrize("seconds", ["-1", "nan"])
@pytest.mark.parametrize("flag", ["--broker-connect-timeout", "--delay"])
def test_a_length_of_time_that_is_none_is_a_usage_error(
    tmp_path: Path, command: Callable[..., list[str]], seconds: str, flag: str
) -> None:
    """NaN passed every comparison with the deadline, so it waited for ever."""
    if flag == "--delay" and command is serve:
        flag = "--kitchen-delay"
    broker = f"amqp://guest:guest@127.0.0.1:{free_port()}/"
    done = subprocess.run(
        command(tmp_path / "orders.db", broker, flag, seconds),
        capture_output=True,
        text=True,
        timeout=PROCESS_DEADLINE,
    )
    assert done.returncode == 2
    assert "must be a number, not negative" in done.stderr
