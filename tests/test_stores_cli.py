"""The store a server runs on, chosen at the command line: ``--store postgresql://...``
(or ORCHESTRATOR_STORE) keeps the orders in PostgreSQL, SQLite with ``--db`` otherwise;
and a database written by a newer release is refused before the server starts.

Real ``orchestrator serve`` subprocesses on 127.0.0.1, real HTTP clients, and a fresh
PostgreSQL database per test (``tests/postgres.py``).
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from tests.conftest import ServerFactory
from tests.helpers import (
    CONFIRM,
    DONE,
    HAWAII,
    add,
    create_order,
    history,
    http_client,
    send_ok,
    view,
    wait_for_state,
)
from tests.postgres import fresh_database


async def test_an_order_runs_to_done_on_postgresql_and_outlives_a_restart(
    server_factory: ServerFactory, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """With ORCHESTRATOR_STORE naming a PostgreSQL database, an order runs the whole flow
    (kitchen and delivery in process), its rows are in PostgreSQL and none in the SQLite
    file, and after SIGTERM (exit 0) a new server answers the same view and history."""
    async with fresh_database() as url:
        monkeypatch.setenv("ORCHESTRATOR_STORE", url)
        server = server_factory()
        async with http_client(server.url) as http:
            order = await create_order(http, HAWAII, key="create-1")
            await send_ok(http, order["id"], add({"name": "margherita"}))
            await send_ok(http, order["id"], CONFIRM)
            await wait_for_state(http, order["id"], DONE)
            before = (await view(http, order["id"]), await history(http, order["id"]))
        assert server.terminate() == 0
        conn = await asyncpg.connect(url)
        try:
            versions = await conn.fetchval("SELECT version FROM orders WHERE id = $1", order["id"])
        finally:
            await conn.close()
        assert versions == before[0]["version"]
        assert not server.db.exists() or not _has_orders(server.db)

        server.restart()
        async with http_client(server.url) as http:
            assert (await view(http, order["id"]), await history(http, order["id"])) == before
            repeat = await http.post(
                "/orders", json={"pizza": HAWAII}, headers={"Idempotency-Key": "create-1"}
            )
            assert repeat.status_code == 201
            assert repeat.json()["id"] == order["id"]


def _has_orders(db: Path) -> bool:
    conn = sqlite3.connect(db)
    try:
        return (
            conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'orders'").fetchone() is not None
        )
    finally:
        conn.close()


def serve(*args: str) -> subprocess.CompletedProcess[str]:
    """``orchestrator serve`` that is expected to exit at once."""
    command = [sys.executable, "-m", "orchestrator", "serve", "--port", "0", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


async def test_a_newer_sqlite_schema_exits_2_with_one_line(tmp_path: Path) -> None:
    """A SQLite database whose schema_version is newer than the code's is refused before
    the server starts: exit 2, one line on stderr naming the version, the file untouched."""
    db = tmp_path / "orders.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)")
    conn.execute("INSERT INTO meta VALUES ('schema_version', 7)")
    conn.commit()
    conn.close()
    done = serve("--db", str(db))
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "schema version 7" in lines[0] and "newer release" in lines[0]
    conn = sqlite3.connect(db)
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    conn.close()
    assert "orders" not in tables


async def test_a_newer_postgresql_schema_exits_2_with_one_line(tmp_path: Path) -> None:
    """The same on PostgreSQL: exit 2 and one line, nothing made in the database."""
    async with fresh_database() as url:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute("CREATE TABLE meta (key text PRIMARY KEY, value bigint NOT NULL)")
            await conn.execute("INSERT INTO meta VALUES ('schema_version', 9)")
            done = serve("--db", str(tmp_path / "orders.db"), "--store", url)
            assert done.returncode == 2, done.stderr
            lines = done.stderr.strip().splitlines()
            assert len(lines) == 1 and "schema version 9" in lines[0], done.stderr
            assert await conn.fetchval("SELECT to_regclass('orders')") is None
        finally:
            await conn.close()


def test_a_store_that_is_not_a_postgresql_url_is_a_usage_error(tmp_path: Path) -> None:
    """--store takes a postgresql:// URL only: anything else exits 2 naming the flag."""
    done = serve("--db", str(tmp_path / "orders.db"), "--store", "mysql://x")
    assert done.returncode == 2
    assert "store must be a postgresql:// URL" in done.stderr


def test_an_unreachable_postgresql_is_one_line(tmp_path: Path) -> None:
    """A PostgreSQL that does not answer stops the start with one line, exit 1."""
    done = serve("--db", str(tmp_path / "orders.db"), "--store", "postgresql://x@127.0.0.1:1/db")
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot connect to PostgreSQL" in lines[0], done.stderr
