"""docs/security.md's signed webhook example runs as written (STYLE: every snippet runs)."""

from __future__ import annotations

import asyncio
import json
import os
import re

import httpx

from tests.conftest import ServerFactory
from tests.docs import DOCS, code_blocks, section
from tests.helpers import WAITING_FOR_KITCHEN, wait_for_state


def webhook_script() -> str:
    return code_blocks(section(DOCS / "security.md", "The webhook's signature"), "sh")[0]


async def test_the_signed_webhook_snippet_moves_an_order(server_factory: ServerFactory) -> None:
    """The openssl + curl example signs a PIZZA_READY (a service event) that a
    server with the same secret applies, once: run again, it is answered as a repeat."""
    script = webhook_script()
    found = re.search(r"^SECRET=(whsec_\S+)", script, flags=re.M)
    assert found is not None, script
    server = server_factory("--kitchen-mode", "ignore", "--webhook-secret", found.group(1))
    async with httpx.AsyncClient(base_url=server.url) as http:
        order_id = (await http.post("/orders", json={"pizza": {"name": "x"}})).json()["id"]
        await http.post(f"/orders/{order_id}/events", json={"type": "CONFIRM_PIZZA"})
        await wait_for_state(http, order_id, WAITING_FOR_KITCHEN, within=10.0)
        answers = []
        for _ in range(2):
            proc = await asyncio.create_subprocess_exec(
                "bash", "-eu", "-c", script,
                env={**os.environ, "URL": server.url, "ORDER": order_id},
                stdout=asyncio.subprocess.PIPE,
            )  # fmt: skip
            stdout, _ = await asyncio.wait_for(proc.communicate(), timeout=60)
            assert proc.returncode == 0
            answers.append(json.loads(stdout))
        assert answers[0]["state"].startswith("deliverPizza"), answers
        assert answers[1]["version"] == answers[0]["version"]
