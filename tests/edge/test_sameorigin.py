"""Requests a web page did not mean to send are refused and change nothing (issue 16, item 4).

Without a token any page in a browser on the same machine could command the server: a
``fetch(..., {mode: "no-cors"})`` POST (sent as ``text/plain``, no preflight) created an
order, ``Host: attacker.example`` (DNS rebinding) was answered 200, and a WebSocket from any
page was let in. Here, with httpx and websockets setting the headers a browser would; the
same attacks from a real Chromium page are in tests/ui/test_cross_site.py.
"""

from __future__ import annotations

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus
from websockets.typing import Origin

from orchestrator.edge.sameorigin import AllowedHosts, hostname
from tests.conftest import ServerFactory, ServerProcess
from tests.helpers import create_order, list_orders

PROBLEM = "application/problem+json"
PIZZA = b'{"pizza": {"name": "csrf"}}'


def assert_problem(response: httpx.Response, status: int, field: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["field"] == field


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "text/plain;charset=UTF-8",  # what fetch(no-cors) sends for a string body
        "application/x-www-form-urlencoded",  # an HTML form, and curl -d
        "multipart/form-data; boundary=x",
        "application/jsonp",
    ],
)
async def test_a_command_that_is_not_json_gets_415_and_changes_nothing(
    client: httpx.AsyncClient, content_type: str | None
) -> None:
    order = await create_order(client)
    headers = {} if content_type is None else {"content-type": content_type}
    created = await client.post("/orders", content=PIZZA, headers=headers)
    assert_problem(created, 415, "content-type")
    event = b'{"type": "CONFIRM_PIZZA"}'
    sent = await client.post(f"/orders/{order['id']}/events", content=event, headers=headers)
    assert_problem(sent, 415, "content-type")
    webhook = await client.post("/events", content=b"{}", headers=headers)
    assert_problem(webhook, 415, "content-type")
    (only,) = (await list_orders(client))["orders"]
    assert (only["id"], only["version"]) == (order["id"], 1)


@pytest.mark.parametrize(
    "content_type", ["application/json", "Application/JSON; charset=utf-8", "application/x+json"]
)
async def test_json_types_are_accepted(client: httpx.AsyncClient, content_type: str) -> None:
    created = await client.post("/orders", content=PIZZA, headers={"content-type": content_type})
    assert created.status_code == 201, created.text


async def test_a_preflight_is_never_granted(client: httpx.AsyncClient) -> None:
    """A cross-site JSON POST needs a CORS preflight; it fails, and no answer carries an
    Access-Control-Allow-* header."""
    order = await create_order(client)
    for path in ("/orders", f"/orders/{order['id']}/events", "/events", "/ws"):
        response = await client.options(
            path,
            headers={
                "Origin": "http://attacker.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type",
            },
        )
        assert not 200 <= response.status_code < 300, (path, response.status_code)
        granted = [name for name in response.headers if name.startswith("access-control-")]
        assert granted == [], (path, granted)


@pytest.mark.parametrize(
    "host", ["attacker.example", "attacker.example:{port}", "localhost.attacker.example", ""]
)
async def test_a_foreign_host_gets_400_and_changes_nothing(
    server: ServerProcess, client: httpx.AsyncClient, host: str
) -> None:
    """DNS rebinding: the browser thinks it talks to attacker.example, which now resolves
    to 127.0.0.1; its requests carry that name. Reads, commands and WebSockets are refused."""
    host = host.format(port=server.port)
    headers = {"Host": host, "content-type": "application/json"}
    assert_problem(await client.get("/orders", headers=headers), 400, "Host")
    assert_problem(await client.post("/orders", content=PIZZA, headers=headers), 400, "Host")
    with pytest.raises(InvalidStatus) as refused:
        async with connect(f"{server.ws_url}/ws", additional_headers={"Host": host}):
            pass
    assert refused.value.response.status_code == 400
    assert (await list_orders(client))["orders"] == []


async def test_the_servers_own_names_are_answered(
    server: ServerProcess, client: httpx.AsyncClient
) -> None:
    for host in ("127.0.0.1", f"127.0.0.1:{server.port}", f"localhost:{server.port}",
                 "LOCALHOST", f"[::1]:{server.port}"):  # fmt: skip
        response = await client.get("/orders", headers={"Host": host})
        assert response.status_code == 200, (host, response.text)


async def test_allowed_hosts_adds_names(server_factory: ServerFactory) -> None:
    server = server_factory("--allowed-hosts", "orders.example.com, other.example")
    async with httpx.AsyncClient(base_url=server.url) as http:
        for host, status in [
            ("orders.example.com", 200), (f"Orders.Example.com:{server.port}", 200),
            ("other.example", 200), ("localhost", 200), ("attacker.example", 400),
        ]:  # fmt: skip
            response = await http.get("/orders", headers={"Host": host})
            assert response.status_code == status, (host, response.text)


async def test_a_websocket_from_another_site_gets_403(
    server: ServerProcess, client: httpx.AsyncClient
) -> None:
    """Cross-site WebSocket hijacking: a page elsewhere opens the firehose or an order's
    socket; its Origin is not the server's own, so the handshake is refused. The server's
    own pages (same origin) and clients without an Origin (not browsers) are let in."""
    order = await create_order(client)
    own = f"http://127.0.0.1:{server.port}"
    for path in ("/ws", f"/orders/{order['id']}/ws"):
        for origin in ("http://attacker.example", "null", f"http://127.0.0.1:{server.port + 1}"):
            with pytest.raises(InvalidStatus) as refused:
                async with connect(f"{server.ws_url}{path}", origin=Origin(origin)):
                    pass
            assert refused.value.response.status_code == 403, (path, origin)
        async with connect(f"{server.ws_url}{path}", origin=Origin(own)):
            pass
        async with connect(f"{server.ws_url}{path}"):
            pass


async def test_a_post_from_another_site_gets_403(client: httpx.AsyncClient) -> None:
    headers = {"Origin": "http://attacker.example", "content-type": "application/json"}
    assert_problem(await client.post("/orders", content=PIZZA, headers=headers), 403, "Origin")
    assert (await list_orders(client))["orders"] == []
    # A read from elsewhere is harmless (the page cannot see the answer), and allowed.
    assert (await client.get("/orders", headers=headers)).status_code == 200


@pytest.mark.parametrize(
    ("authority", "name"),
    [
        ("example.com", "example.com"), ("Example.COM:80", "example.com"),
        ("[::1]:8000", "::1"), ("[::1]", "::1"), ("localhost.", "localhost"),
        ("", None), ("a b", None), ("x:notaport", None), ("user@x", None), ("x/y", None),
        ("::1", None),
    ],
)  # fmt: skip
def test_hostname_of_a_host_header(authority: str, name: str | None) -> None:
    assert hostname(authority) == name


def test_listening_on_every_address_allows_any_ip_address_but_no_name() -> None:
    """With --host 0.0.0.0 the machine's addresses are unknown, but no page can re-point an
    address, only a name: any IP literal is answered, names only when allowed."""
    every = AllowedHosts("0.0.0.0")
    assert all(h in every for h in ("10.1.2.3", "::1", "fe80::1", "localhost"))
    assert "attacker.example" not in every
    one = AllowedHosts("192.168.1.5", ["orders.example.com"])
    assert all(h in one for h in ("192.168.1.5", "127.0.0.1", "::1", "orders.example.com"))
    assert "10.1.2.3" not in one
    assert "anything.example" in AllowedHosts("127.0.0.1", ["*"])
