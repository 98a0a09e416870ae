"""One process per SQLite file: an exclusive lock, held for the life of the process.

Two servers on one database both started, and each wrote behind the other's back (a turn
of the second made the first's next turn fail). SQLite's own locks are per transaction and
let both in, so each process that owns a file (``orchestrator serve`` its database and, in
embedded mode, the services' ledgers; ``python -m services.kitchen`` its ledger) first takes
``flock(LOCK_EX | LOCK_NB)`` on ``<file>.lock`` beside it and writes its pid there. A second
process finds the lock taken and stops at once, naming the holder's pid.

The kernel drops the lock when its holder exits, SIGKILL included, so a lock file a crash
left behind never blocks a restart; the file itself is never deleted (deleting it while
another process waits to open it would give the two of them different files to lock).
``flock`` locks are not shared with SQLite's ``fcntl`` byte-range locks, so the two never
interfere. Not chosen: the ``filelock`` package, which does the same ``flock`` but cannot
say who holds the lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from pathlib import Path

# A second process may find the lock taken before its holder has written its pid.
PID_WAIT_SECONDS = 0.5


class InUse(Exception):
    """Another process holds the file's lock."""

    def __init__(self, path: Path, pid: int | None) -> None:
        holder = f"process {pid}" if pid is not None else "another process"
        super().__init__(f"{path} is in use by {holder}; stop it first, or use another file")
        self.path = path
        self.pid = pid


def lock_path(path: Path) -> Path:
    return path.with_name(path.name + ".lock")


class ExclusiveLock:
    """``acquire`` takes it or raises ``InUse``; it is released by ``release`` or at exit."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(lock_path(self.path), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _holder(fd)
            os.close(fd)
            raise InUse(self.path, pid) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the last descriptor drops the lock
            self._fd = None


def _holder(fd: int) -> int | None:
    """The pid in the lock file, waiting briefly for a holder that has not written it yet."""
    deadline = time.monotonic() + PID_WAIT_SECONDS
    while True:
        text = os.pread(fd, 32, 0).decode(errors="replace").strip()
        with contextlib.suppress(ValueError):
            return int(text)
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.02)
