"""``orchestrator serve --workers N``: N nodes of one cluster on one machine, as processes.

A Python process serves on one core; on a machine with more, N nodes on one PostgreSQL use
N of them, and they are a cluster like any other (shards, leases, forwarding), only on one
machine. Each worker is a whole ``orchestrator serve`` with the same flags, on its own port
(``--port``, ``--port`` + 1, ...; and ``--advertise-url`` with that port), so any of the
ports takes any request.

The parent only supervises. It starts the workers in a session of their own, so a Ctrl-C
at the terminal reaches them once, through it: SIGTERM and SIGINT are passed on, each
worker hands its shards over and stops, and the parent exits with the worst exit code. A
worker that dies on its own is started again after ``RESTART_PAUSE``, as a service manager
would; one that dies within ``MIN_LIFE`` of starting (its port taken, say) stops them all,
since starting it again would only fail again. A worker is told to stop (SIGTERM) when the
parent dies, however it dies, so none is left running unsupervised.
"""

from __future__ import annotations

import ctypes
import logging
import signal
import subprocess
import sys
import time
from types import FrameType

from yarl import URL

log = logging.getLogger(__name__)

RESTART_PAUSE = 1.0
MIN_LIFE = 5.0
POLL = 0.2


def worker_commands(
    argv: list[str], count: int, port: int, advertise: str | None
) -> list[list[str]]:
    """Each worker's command line: this one's, with its port (and advertised address) and
    one worker; for a flag given twice, click takes the last."""
    commands = []
    for index in range(count):
        extra = ["--port", str(port + index), "--workers", "1"]
        if advertise is not None:
            extra += ["--advertise-url", str(URL(advertise).with_port(port + index))]
        commands.append([sys.executable, "-m", "orchestrator", *argv, *extra])
    return commands


def supervise(commands: list[list[str]]) -> int:
    """Run the workers until a signal stops them (or one cannot start); the exit code."""
    procs = [_start(command) for command in commands]
    started = [time.monotonic()] * len(procs)
    stopping: list[int] = []

    def stop(sig: int, _frame: FrameType | None) -> None:
        stopping.append(sig)
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(sig)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while True:
        if stopping:
            if all(proc.poll() is not None for proc in procs):
                return max(abs(int(proc.returncode)) for proc in procs)
        else:
            for index, proc in enumerate(procs):
                code = proc.poll()
                if code is None:
                    continue
                if time.monotonic() - started[index] < MIN_LIFE:
                    log.error("worker %d exited with %d as it started; stopping", index, code)
                    stop(signal.SIGTERM, None)
                    break
                log.warning("worker %d exited with %d; starting it again", index, code)
                time.sleep(RESTART_PAUSE)
                procs[index] = _start(commands[index])
                started[index] = time.monotonic()
        time.sleep(POLL)


def _start(command: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(command, start_new_session=True, preexec_fn=_die_with_parent)


# prctl(2) option: the signal a process gets when its parent dies (Linux only).
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the worker, before it runs: SIGTERM it when the supervisor dies, even by
    SIGKILL, so no worker outlives it unsupervised (Linux; elsewhere nothing)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass
