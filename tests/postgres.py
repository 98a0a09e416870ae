"""A fresh PostgreSQL database per test, on the server the tests use.

PostgreSQL runs on 127.0.0.1:5432 (``ORCHESTRATOR_TEST_POSTGRES_URL`` overrides; it names a
database the tests may connect to, to create and drop their own). Each test gets a database
with a random name, dropped at its end, so tests never see each other's rows. When
``ORCHESTRATOR_TEST_POSTGRES=require`` is set, as ``.ci/run`` does, an unreachable server
fails these tests instead of skipping them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import NoReturn

import asyncpg
import pytest
from yarl import URL

POSTGRES_URL = os.environ.get(
    "ORCHESTRATOR_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


def postgres_unreachable(exc: BaseException) -> NoReturn:
    """Fail when ORCHESTRATOR_TEST_POSTGRES=require (as .ci/run sets), else skip."""
    if os.environ.get("ORCHESTRATOR_TEST_POSTGRES") == "require":
        pytest.fail(f"PostgreSQL is required but unreachable at {POSTGRES_URL}: {exc!r}")
    pytest.skip(f"PostgreSQL unreachable: {exc!r}")


@asynccontextmanager
async def fresh_database() -> AsyncIterator[str]:
    """The URL of a new, empty database, dropped (with its connections) at the end."""
    try:
        admin = await asyncpg.connect(POSTGRES_URL, timeout=5)
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        postgres_unreachable(exc)
    name = f"orchestrator_test_{uuid.uuid4().hex[:16]}"
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield str(URL(POSTGRES_URL).with_path(f"/{name}"))
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()
