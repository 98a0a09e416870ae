"""OpenTelemetry spans of one order across three processes, received by a real OTLP/HTTP
receiver (``tests.observe.otlp``), and no OpenTelemetry at all when it is not configured.

The orchestrator and the ``python -m services.kitchen`` and ``services.delivery``
subprocesses run on a real RabbitMQ with ``OTEL_EXPORTER_OTLP_ENDPOINT`` set, as an
operator would set it. With ``ORCHESTRATOR_TEST_RABBITMQ=require`` an unreachable broker
fails the test.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from orchestrator import exporter
from tests.conftest import ServerFactory
from tests.helpers import (
    CONFIRM,
    DONE,
    HAWAII,
    RABBITMQ_URL,
    WAITING_FOR_KITCHEN,
    WEBHOOK_SECRET,
    cloudevent,
    create_order,
    delete_flow_queues,
    eventually,
    send_ok,
    signed_headers,
    spawn_service,
    wait_for_state,
)
from tests.observe.otlp import ReceivedSpan, otlp_receiver

TRACE = "0af7651916cd43dd8448eb211c80319c"
CALLER = "b7ad6b7169203331"  # the client's own span, which the requests continue
HEADERS = {"traceparent": f"00-{TRACE}-{CALLER}-01"}
# The spans of one pizza order, by the process that records them.
EXPECTED = {
    ("orchestrator", "POST /orders"),
    ("orchestrator", "turn ADD_PIZZA"),
    ("orchestrator", "POST /orders/{order_id}/events"),
    ("orchestrator", "turn CONFIRM_PIZZA"),
    ("orchestrator", "publish MAKE_PIZZA"),
    ("kitchen", "process MAKE_PIZZA"),
    ("kitchen", "publish PIZZA_READY"),
    ("orchestrator", "receive PIZZA_READY"),
    ("orchestrator", "turn PIZZA_READY"),
    ("orchestrator", "publish DELIVER_PIZZA"),
    ("delivery", "process DELIVER_PIZZA"),
    ("delivery", "publish PIZZA_DELIVERED"),
    ("orchestrator", "receive PIZZA_DELIVERED"),
    ("orchestrator", "turn PIZZA_DELIVERED"),
}


def one(spans: list[ReceivedSpan], service: str, name: str) -> ReceivedSpan:
    (found,) = [s for s in spans if s.service == service and s.name == name]
    return found


async def test_one_order_is_one_trace_across_three_processes(
    tmp_path: Path, server_factory: ServerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every span of the order shares the client's trace id, and each names its real
    parent: request -> turn -> the service's processing of the command the turn sent ->
    the orchestrator's receipt of its answer -> that answer's turn, and so on to done.
    No span points at a parent that was never recorded."""
    await delete_flow_queues()
    with otlp_receiver() as receiver:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url)
        monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")  # export within 0.1 s
        db = tmp_path / "orders.db"
        services = [spawn_service(db, name) for name in ("kitchen", "delivery")]
        try:
            server = server_factory("--broker", RABBITMQ_URL, db=db)
            async with httpx.AsyncClient(base_url=server.url, timeout=30.0) as http:
                created = await http.post("/orders", json={"pizza": HAWAII}, headers=HEADERS)
                assert created.status_code == 201
                order_id = created.json()["id"]
                confirmed = await http.post(
                    f"/orders/{order_id}/events", json=CONFIRM, headers=HEADERS
                )
                assert confirmed.status_code == 200
                await wait_for_state(http, order_id, DONE)

                async def all_received() -> bool:
                    names = {(s.service, s.name) for s in receiver.of_trace(TRACE)}
                    return EXPECTED <= names

                await eventually(all_received, within=30, what="the order's spans")
        finally:
            for proc in services:
                proc.send_signal(signal.SIGTERM)
            for proc in services:
                assert proc.wait(timeout=30) == 0
        spans = receiver.of_trace(TRACE)

    # One trace, whole: every parent is a span of it, or the client's own span.
    ids = {span.span_id for span in spans}
    assert len(ids) == len(spans)
    assert {span.parent_id for span in spans} <= ids | {CALLER}
    assert {span.service for span in spans} == {"orchestrator", "kitchen", "delivery"}

    def parent(service: str, name: str) -> ReceivedSpan:
        child = one(spans, service, name)
        (found,) = [s for s in spans if s.span_id == child.parent_id]
        return found

    request = one(spans, "orchestrator", "POST /orders/{order_id}/events")
    assert request.parent_id == CALLER and request.kind == "server"
    assert request.attributes["http.route"] == "/orders/{order_id}/events"
    assert request.attributes["http.response.status_code"] == 200
    confirm = one(spans, "orchestrator", "turn CONFIRM_PIZZA")
    assert parent("orchestrator", "turn CONFIRM_PIZZA") == request
    assert confirm.attributes["orchestrator.order_id"] == order_id
    assert parent("orchestrator", "publish MAKE_PIZZA") == confirm
    assert parent("kitchen", "process MAKE_PIZZA") == confirm
    kitchen = one(spans, "kitchen", "process MAKE_PIZZA")
    assert kitchen.kind == "consumer"
    assert parent("kitchen", "publish PIZZA_READY") == kitchen
    assert parent("orchestrator", "receive PIZZA_READY") == kitchen
    ready = one(spans, "orchestrator", "turn PIZZA_READY")
    assert parent("orchestrator", "turn PIZZA_READY") == one(
        spans, "orchestrator", "receive PIZZA_READY"
    )
    assert parent("orchestrator", "publish DELIVER_PIZZA") == ready
    assert parent("delivery", "process DELIVER_PIZZA") == ready
    delivery = one(spans, "delivery", "process DELIVER_PIZZA")
    assert parent("orchestrator", "receive PIZZA_DELIVERED") == delivery
    delivered = one(spans, "orchestrator", "turn PIZZA_DELIVERED")
    assert parent("orchestrator", "turn PIZZA_DELIVERED") == one(
        spans, "orchestrator", "receive PIZZA_DELIVERED"
    )
    assert delivered.attributes["orchestrator.state"] == DONE
    # The invoke's outcome (the publish was confirmed) is a turn under its publish span.
    published = one(spans, "orchestrator", "publish MAKE_PIZZA")
    outcomes = [s for s in spans if s.parent_id == published.span_id]
    assert [s.name for s in outcomes] == ["turn done.invoke.sendOrderToKitchen"]
    assert not [span for span in spans if span.error]


async def test_a_webhook_without_a_header_continues_the_events_own_trace(
    server_factory: ServerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """POST /events with no ``traceparent`` header but a CloudEvent that carries one: the
    request's span continues the event's trace (as the event does), and its turn is the
    request span's child. Embedded mode, the kitchen never answering."""
    event_trace, event_span = "5b8efff798038103d269b633813fc60c", "eee19b7ec3c1b174"
    with otlp_receiver() as receiver:
        monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
        server = server_factory(
            "--otlp-endpoint", receiver.url, "--webhook-secret", WEBHOOK_SECRET,
            "--kitchen-mode", "ignore",
        )  # fmt: skip
        async with httpx.AsyncClient(base_url=server.url, timeout=30.0) as http:
            order_id = (await create_order(http))["id"]
            await send_ok(http, order_id, CONFIRM)
            await wait_for_state(http, order_id, WAITING_FOR_KITCHEN)
            body, event_id = cloudevent(order_id, "PIZZA_READY")
            event = {**json.loads(body), "traceparent": f"00-{event_trace}-{event_span}-01"}
            body = json.dumps(event).encode()
            response = await http.post(
                "/events", content=body, headers=signed_headers(body, event_id)
            )
            assert response.status_code == 200

            async def received() -> bool:
                names = {s.name for s in receiver.of_trace(event_trace)}
                return {"POST /events", "turn PIZZA_READY"} <= names

            await eventually(received, within=30, what="the webhook's spans")
        spans = receiver.of_trace(event_trace)
    request = one(spans, "orchestrator", "POST /events")
    assert request.parent_id == event_span
    assert one(spans, "orchestrator", "turn PIZZA_READY").parent_id == request.span_id


async def test_a_timer_fires_in_the_trace_of_the_turn_that_set_it(
    server_factory: ServerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The kitchen never answers and its 0.5 s timeout fires: the timer's span is a child
    of the turn that set it (the one entering the wait) and starts when it fell due; the
    timeout's turn is the timer span's child. Embedded mode."""
    timeout = "after.waitingForPizzaToBeBaked.kitchenTimeout"
    with otlp_receiver() as receiver:
        monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
        server = server_factory(
            "--otlp-endpoint", receiver.url, "--kitchen-mode", "ignore",
            "--chart-option", "pizza.kitchenTimeout=0.5",
            "--chart-option", "pizza.maxRetries=0",
        )  # fmt: skip
        async with httpx.AsyncClient(base_url=server.url, timeout=30.0) as http:
            order_id = (await create_order(http))["id"]
            confirmed = await http.post(f"/orders/{order_id}/events", json=CONFIRM, headers=HEADERS)
            assert confirmed.status_code == 200

            async def received() -> bool:
                return f"turn {timeout}" in {s.name for s in receiver.of_trace(TRACE)}

            await eventually(received, within=30, what="the timeout's turn span")
        spans = receiver.of_trace(TRACE)
    waiting = one(spans, "orchestrator", "turn done.invoke.sendOrderToKitchen")
    assert waiting.attributes["orchestrator.state"] == WAITING_FOR_KITCHEN
    timer = one(spans, "orchestrator", f"timer {timeout}")
    assert timer.parent_id == waiting.span_id
    assert timer.attributes["orchestrator.order_id"] == order_id
    assert one(spans, "orchestrator", f"turn {timeout}").parent_id == timer.span_id


def test_no_opentelemetry_import_without_an_endpoint(tmp_path: Path) -> None:
    """Off and free: a runtime and a service without an endpoint never import
    OpenTelemetry, although the extra is installed here (a fresh interpreter checks)."""
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from orchestrator.runtime import Runtime\n"
        "from orchestrator.settings import Settings\n"
        "import services.run, orchestrator.cli\n"
        f"Runtime(Settings(db=Path({str(tmp_path / 'orders.db')!r})))\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('opentelemetry'))\n"
        "assert not loaded, loaded\n"
        "import orchestrator.otel\n"  # and the check can see one
        "assert 'opentelemetry.sdk.trace' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)


def test_an_endpoint_without_the_extra_is_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """OTEL_EXPORTER_OTLP_ENDPOINT may be set for other programs: without the extra the
    server starts, records nothing, and says why once."""
    monkeypatch.setitem(sys.modules, "orchestrator.otel", None)  # as if not installed
    with caplog.at_level(logging.WARNING, logger="orchestrator.exporter"):
        assert exporter.open_spans("orchestrator", "http://127.0.0.1:4318") is None
    assert "pip install 'order-orchestrator[otel]'" in caplog.text


@pytest.mark.parametrize(
    "command",
    [
        ["orchestrator", "serve", "--port", "1"],
        ["services.kitchen", "--broker", "amqp://guest:guest@127.0.0.1:1/"],
    ],
    ids=["serve", "kitchen"],
)
@pytest.mark.parametrize(
    ("endpoint", "problem"),
    [
        ("127.0.0.1:4318", "an http:// or https:// URL"),
        ("grpc://127.0.0.1:4317", "an http:// or https:// URL"),
        ("http:///v1", "an http:// URL with a host"),
    ],
)
def test_an_endpoint_that_is_not_an_http_url_is_a_usage_error(
    tmp_path: Path, command: list[str], endpoint: str, problem: str
) -> None:
    """A wrong OTEL_EXPORTER_OTLP_ENDPOINT stops the process at start, in one line,
    rather than failing every export later."""
    done = subprocess.run(
        [sys.executable, "-m", *command],
        env={**os.environ, "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert f"must be {problem}" in done.stderr
    assert "Traceback" not in done.stderr
