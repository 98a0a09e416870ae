"""One process per database and per ledger (issue 16, item 5).

Started twice on one SQLite file, both servers became ready, and a write through the second
made the first's next event fail with 503. Now the second exits 2 at once with one line
naming the first's pid; the services' ledgers are guarded the same way. Real processes
throughout: the second one is given 30 s, then SIGKILLed, so the code before the fix (which
starts and serves) fails here instead of hanging.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import ServerFactory, free_port
from tests.helpers import create_order, ledger_path

# RabbitMQ is never reached here: a service holds its ledger's lock while it keeps trying.
NO_RABBITMQ = "amqp://guest:guest@127.0.0.1:1/"
SECOND_TRY_SECONDS = 30


def second_process(command: list[str]) -> tuple[int | None, str]:
    """Run ``command`` for up to 30 s: its exit code (None if it was still running) and
    its stderr."""
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _, stderr = proc.communicate(timeout=SECOND_TRY_SECONDS)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, stderr = proc.communicate()
        return None, stderr.decode(errors="replace")
    return proc.returncode, stderr.decode(errors="replace")


def serve(db: Path) -> list[str]:
    return [sys.executable, "-m", "orchestrator", "serve", "--db", str(db),
            "--port", str(free_port())]  # fmt: skip


def kitchen(ledger: Path) -> list[str]:
    return [sys.executable, "-m", "services.kitchen", "--broker", NO_RABBITMQ,
            "--ledger", str(ledger), "--broker-connect-timeout", "60"]  # fmt: skip


def assert_refused_naming(result: tuple[int | None, str], pid: int, path: Path) -> None:
    code, stderr = result
    assert code == 2, f"exit {code}: {stderr}"
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert f"process {pid}" in lines[0] and str(path) in lines[0], lines[0]


async def test_a_second_server_on_one_database_exits_2_naming_the_first(
    server_factory: ServerFactory,
) -> None:
    first = server_factory()
    assert first.proc is not None
    assert_refused_naming(second_process(serve(first.db)), first.proc.pid, first.db)
    async with httpx.AsyncClient(base_url=first.url, timeout=30.0) as http:
        order = await create_order(http)  # the first one still serves, undisturbed
        assert order["version"] == 1
    # The kernel drops the lock with its holder, even on SIGKILL: a restart is not blocked.
    first.kill()
    first.restart()
    async with httpx.AsyncClient(base_url=first.url, timeout=30.0) as http:
        assert (await http.get(f"/orders/{order['id']}")).json()["version"] == 1


async def test_a_service_on_an_embedded_servers_ledger_exits_2(
    server_factory: ServerFactory,
) -> None:
    """In embedded mode the server writes the kitchen's and delivery's ledgers itself; a
    ``python -m services.kitchen`` on one of them would carry commands out a second time."""
    server = server_factory()
    assert server.proc is not None
    ledger = ledger_path(server.db, "kitchen")
    assert_refused_naming(second_process(kitchen(ledger)), server.proc.pid, ledger)


def test_a_second_service_on_one_ledger_exits_2(tmp_path: Path) -> None:
    ledger = tmp_path / "kitchen.db"
    first = subprocess.Popen(kitchen(ledger), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        lock = ledger.with_name("kitchen.db.lock")
        for _ in range(500):  # the first has its lock once its pid is in the file
            if lock.exists() and lock.read_text().strip() == str(first.pid):
                break
            assert first.poll() is None, first.stderr.read() if first.stderr else ""
            time.sleep(0.02)
        assert_refused_naming(second_process(kitchen(ledger)), first.pid, ledger)
    finally:
        first.kill()
        first.communicate()
