"""A small filesystem a test can fill and free: a real full disk under SQLite.

Each ``SmallDisk`` is a tmpfs of a few MiB mounted on a temporary directory. ``fill``
writes a filler file until the kernel answers ENOSPC, so every later write that needs a
new block fails as on a full disk (SQLite says "database or disk is full", SQLITE_FULL);
``free`` deletes the filler. Chosen over SQLite's ``max_page_count`` pragma, which would
need a hook in the product to set on its connections and caps one database file, not the
WAL, the shared-memory file and the ledgers beside it, and over a loop-mounted image file,
which needs a loop device the container may not have.

Mounting needs root, which CI has; elsewhere the test fails saying so, rather than
skipping and hiding that the fault was never injected.
"""

from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path

import pytest

CHUNK = 1 << 16


class SmallDisk:
    def __init__(self, path: Path, size_mib: int) -> None:
        self.path = path
        self.size_mib = size_mib
        self._filler = path / "filler"
        self._mounted = False

    def mount(self) -> SmallDisk:
        if os.geteuid() != 0:
            pytest.fail(
                "this fault-injection test mounts a tmpfs to fill a disk under the server, "
                "which needs root (CI runs as root); run it as root"
            )
        self.path.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={self.size_mib}m", "tmpfs", str(self.path)],
            check=True,
            capture_output=True,
        )
        self._mounted = True
        return self

    def fill(self) -> None:
        """Write until no block is left."""
        fd = os.open(self._filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        try:
            for size in (CHUNK, 4096, 1):
                try:
                    while True:
                        os.write(fd, b"\0" * size)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
        finally:
            os.close(fd)

    def free(self) -> None:
        self._filler.unlink(missing_ok=True)

    def unmount(self) -> None:
        if self._mounted:
            subprocess.run(["umount", "-l", str(self.path)], check=False, capture_output=True)
            self._mounted = False
