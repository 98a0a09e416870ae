"""GET /charts and GET /charts/{name}: the loaded charts and their structure, over HTTP."""

from __future__ import annotations

import os

import httpx
import pytest

from tests.conftest import ServerFactory


async def test_charts_lists_the_loaded_charts(client: httpx.AsyncClient) -> None:
    """The names of the loaded charts and the one POST /orders uses by default."""
    response = await client.get("/charts")
    assert response.status_code == 200
    assert response.json() == {"charts": ["payment", "pizza", "xstate_pizza"], "default": "pizza"}


async def test_chart_structure(client: httpx.AsyncClient) -> None:
    """The chart's states as a tree and its transitions, plus what creating an order takes."""
    response = await client.get("/charts/pizza")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {
        "name", "createFields", "creatable", "serviceEvents", "states", "transitions",
    }  # fmt: skip
    assert body["name"] == "pizza"
    # What the dashboard does not offer: only a service may send them.
    assert body["serviceEvents"] == ["PIZZA_CANCELLED", "PIZZA_DELIVERED", "PIZZA_READY"]
    assert body["createFields"] == {"pizza": "object"}
    assert body["creatable"] is True
    bake = next(s for s in body["states"] if s["id"] == "bakePizza")
    assert [c["id"] for c in bake["children"]] == [
        "sendingOrderToKitchen", "waitingForPizzaToBeBaked", "errorInKitchen",
    ]  # fmt: skip
    assert {
        "source": "orderPizza", "target": "bakePizza", "event": "CONFIRM_PIZZA", "internal": False,
    } in body["transitions"]  # fmt: skip


async def test_unknown_chart_is_a_404_problem(client: httpx.AsyncClient) -> None:
    response = await client.get("/charts/nope")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["detail"] == "no chart named 'nope'"


async def test_charts_need_the_token_when_the_server_has_one(
    server_factory: ServerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The chart endpoints are reads like any other: 401 without the bearer token."""
    monkeypatch.setitem(os.environ, "ORCHESTRATOR_API_TOKEN", "t0ken")
    server = server_factory()
    async with httpx.AsyncClient(base_url=server.url) as http:
        for path in ("/charts", "/charts/pizza"):
            assert (await http.get(path)).status_code == 401
            good = await http.get(path, headers={"Authorization": "Bearer t0ken"})
            assert good.status_code == 200


async def test_dashboard_pages_load_without_the_token(
    server_factory: ServerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """/ redirects to /ui/, and the pages and scripts load without a token (they ask for
    it before calling the API), served from the package."""
    monkeypatch.setitem(os.environ, "ORCHESTRATOR_API_TOKEN", "t0ken")
    server = server_factory()
    async with httpx.AsyncClient(base_url=server.url) as http:
        home = await http.get("/")
        assert home.status_code == 307
        assert home.headers["location"] == "/ui/"
        assert (await http.get("/ui")).status_code == 307
        for path in ("/ui/", "/ui/order.html", "/ui/list.js", "/ui/vendor/elk.bundled.js"):
            response = await http.get(path)
            assert response.status_code == 200, path
        assert (await http.get("/ui/missing.js")).status_code == 404


async def test_openapi_documents_the_charts_and_the_sockets(client: httpx.AsyncClient) -> None:
    """/openapi.json describes GET /charts, GET /charts/{name} and both WebSockets."""
    document = (await client.get("/openapi.json")).json()
    for path in ("/charts", "/charts/{name}", "/ws", "/orders/{order_id}/ws"):
        assert document["paths"][path]["get"]["responses"], path
    assert "404" in document["paths"]["/charts/{name}"]["get"]["responses"]
    assert "101" in document["paths"]["/ws"]["get"]["responses"]
    schemas = document["components"]["schemas"]
    assert {"Chart", "ChartState", "WsMessage"} <= set(schemas)
