"""A chart whose transitions never settle, through a real server.

Turns run one at a time on the event loop, so a turn that loops forever would stop every
order, every read and every health check of the server. The engine bounds the transitions
of one turn: the event is refused (409 problem, nothing stored) and the server carries on.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from orchestrator.charts import MAX_TRANSITIONS_PER_TURN
from tests.conftest import ServerFactory, ServerProcess
from tests.helpers import history, send, send_ok

# GO enters a pair of states whose guarded eventless transitions take each other forever;
# STEP is an ordinary event.
SPINNING = """\
name: spinning
states:
  idle:
    initial: true
    transitions:
      - event: OPEN
        on: count
      - event: STEP
        on: count
      - event: GO
        target: a
  a:
    transitions:
      - target: b
        cond: spinning
  b:
    transitions:
      - target: a
        cond: spinning
"""
SPINNING_ACTIONS = """\
from typing import ClassVar
from orchestrator import Context


class Spinning(Context):
    fields: ClassVar[dict] = {"steps": 0}
    create_event: ClassVar[str] = "OPEN"

    def count(self) -> None:
        self.steps += 1

    def spinning(self) -> bool:
        return True
"""


def serve_chart(
    charts: Path, server_factory: ServerFactory, name: str, document: str, actions: str
) -> ServerProcess:
    """A server whose only chart is ``name``, written into the directory ``charts``."""
    charts.mkdir()
    (charts / f"{name}.yaml").write_text(document)
    (charts / f"{name}.py").write_text(actions)
    return server_factory("--charts", str(charts))


async def test_a_looping_turn_is_refused_and_the_server_carries_on(
    tmp_path: Path, server_factory: ServerFactory
) -> None:
    server = serve_chart(
        tmp_path / "charts", server_factory, "spinning", SPINNING, SPINNING_ACTIONS
    )
    async with httpx.AsyncClient(base_url=server.url, timeout=30.0) as http:
        created = await http.post("/orders", json={"chart": "spinning"})
        assert created.status_code == 201, created.text
        order_id = created.json()["id"]
        # Looping events on two orders at once, and a health check beside them.
        other = (await http.post("/orders", json={"chart": "spinning"})).json()["id"]
        refused, refused_other, health = await asyncio.gather(
            send(http, order_id, {"type": "GO"}),
            send(http, other, {"type": "GO"}),
            http.get("/healthz"),
        )
        assert health.status_code == 200
        for response in (refused, refused_other):
            assert response.status_code == 409, response.text
            assert response.headers["content-type"] == "application/problem+json"
            problem = response.json()
            assert problem["error"] == "ChartLoop"
            assert f"took {MAX_TRANSITIONS_PER_TURN} transitions in one turn" in problem["detail"]
        # Nothing of the refused turn was kept: the order is as it was, and takes events.
        after = (await http.get(f"/orders/{order_id}")).json()
        assert (after["version"], after["state"], after["context"]["steps"]) == (1, "idle", 1)
        stepped = await send_ok(http, order_id, {"type": "STEP"})
        assert (stepped["version"], stepped["context"]["steps"]) == (2, 2)
        assert [e["type"] for e in await history(http, order_id)] == ["OPEN", "STEP"]
    assert "chart loop" in server.log()


# The initial state's entry action fails once a file named "doom" lies beside the chart:
# the chart loads (the server starts an order of it as a check), and later creates fail.
DOOMED = """\
name: doomed
states:
  idle:
    initial: true
    enter: greet
    transitions:
      - event: OPEN
"""
DOOMED_ACTIONS = """\
from pathlib import Path
from typing import ClassVar
from orchestrator import Context


class Doomed(Context):
    create_event: ClassVar[str] = "OPEN"

    def greet(self) -> None:
        if Path(__file__).with_name("doom").exists():
            raise RuntimeError("the greeting is gone")
"""


async def test_a_create_whose_entry_action_fails_is_refused(
    tmp_path: Path, server_factory: ServerFactory
) -> None:
    """409 naming the action's error, and no order behind; it was a 503 with Retry-After,
    as if the store had failed, though retrying could not help."""
    charts = tmp_path / "charts"
    server = serve_chart(charts, server_factory, "doomed", DOOMED, DOOMED_ACTIONS)
    async with httpx.AsyncClient(base_url=server.url, timeout=30.0) as http:
        (charts / "doom").touch()
        refused = await http.post(
            "/orders", json={"chart": "doomed"}, headers={"Idempotency-Key": "k1"}
        )
        assert refused.status_code == 409, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
        assert "retry-after" not in refused.headers
        assert refused.json()["error"] == "Refused"
        assert "OPEN cannot create the order" in refused.json()["detail"]
        assert "the greeting is gone" in refused.json()["detail"]
        listed = (await http.get("/orders")).json()
        assert listed["orders"] == []
        (charts / "doom").unlink()
        # The same key again is a new attempt: nothing was recorded under it.
        created = await http.post(
            "/orders", json={"chart": "doomed"}, headers={"Idempotency-Key": "k1"}
        )
        assert created.status_code == 201, created.text
