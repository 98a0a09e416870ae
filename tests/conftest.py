"""Shared fixtures: a real orchestrator server in a subprocess, and temp SQLite files.

``server_factory`` starts ``python -m orchestrator serve`` on 127.0.0.1 with a free port
and a database in the test's temporary directory, waits for /readyz, and can SIGKILL,
SIGTERM and restart it on the same files, which is what the crash tests need.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import pytest

from orchestrator.store.sqlite import SqliteStore
from tests.disk import SmallDisk

READY_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """One orchestrator server process; ``restart`` reuses the same database and port."""

    def __init__(self, db: Path, args: list[str]) -> None:
        self.db = db
        self.args = args
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}"
        self.log_path = db.with_suffix(".log")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ServerProcess:
        command = [
            sys.executable, "-m", "orchestrator", "serve",
            "--db", str(self.db), "--port", str(self.port), *self.args,
        ]  # fmt: skip
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"server not ready after {READY_TIMEOUT}s:\n{self.log()}")

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as in a crash."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait for a clean exit; returns the exit code."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def restart(self) -> ServerProcess:
        return self.start()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)


ServerFactory = Callable[..., ServerProcess]


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[ServerFactory]:
    """Start servers with extra flags: ``server_factory("--max-actors", "10")``."""
    started: list[ServerProcess] = []

    def start(*args: str, db: Path | None = None) -> ServerProcess:
        server = ServerProcess(db or tmp_path / f"orders{len(started)}.db", list(args))
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def server(server_factory: ServerFactory) -> ServerProcess:
    return server_factory()


@pytest.fixture
async def client(server: ServerProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=30.0) as http:
        yield http


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    """An open SQLite store on a fresh file."""
    db = SqliteStore(tmp_path / "orders.db")
    await db.open()
    yield db
    await db.close()


@pytest.fixture
def charts_dir() -> Path:
    return Path(__file__).resolve().parent.parent / "statecharts"


def pytest_configure(config: pytest.Config) -> None:
    # Subprocess servers inherit this so their logs are quiet unless a test fails.
    os.environ.setdefault("ORCHESTRATOR_LOG_LEVEL", "warning")


@pytest.fixture
def small_disks(tmp_path: Path) -> Iterator[Callable[[str, int], SmallDisk]]:
    """Mount tmpfs disks a test can fill and free: ``small_disks("orders", 16)`` (MiB)."""
    mounted: list[SmallDisk] = []

    def mount(name: str, size_mib: int = 16) -> SmallDisk:
        disk = SmallDisk(tmp_path / f"disk-{name}", size_mib).mount()
        mounted.append(disk)
        return disk

    yield mount
    for disk in mounted:
        disk.unmount()
