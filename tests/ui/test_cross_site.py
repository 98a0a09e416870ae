"""Another site's page, in a real headless Chromium, cannot command the server (issue 16, 4).

Two attacks, each from a page the server did not serve:

- Cross-site: a page on another origin (a second tiny HTTP server, on another port) tries a
  ``fetch(..., {mode: "no-cors"})`` POST with a ``text/plain`` body and with a form body
  (the requests a browser sends without a preflight), a JSON POST (which needs a preflight)
  and a WebSocket to the firehose. Before the fix the no-cors POST created an order and the
  WebSocket opened.
- DNS rebinding: Chromium is told that ``attacker.example`` is 127.0.0.1
  (``--host-resolver-rules``), as a rebinding DNS server would make it believe, and loads a
  page of that name on the server's own port (its HTML supplied by Playwright's router, as
  the attacker's server would have before the switch). Its requests are then same-origin
  for the browser, so only the server's check of ``Host`` can stop them.

In both, nothing may be created and the WebSocket must not open.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, Route, async_playwright

from tests.conftest import ServerProcess
from tests.helpers import list_orders

ATTACKER = "attacker.example"
# Chromium's own Private Network Access check refuses a request from a page it took from a
# public address (the router's) to a loopback one; Firefox and Safari have no such check,
# and it does not apply when the rebound page came from the local network. Off, so the
# server's own defence is what is tested.
PRIVATE_NETWORK_CHECKS_OFF = (
    "--disable-features=BlockInsecurePrivateNetworkRequests,PrivateNetworkAccessSendPreflights,"
    "PrivateNetworkAccessRespectPreflightResults,LocalNetworkAccessChecks"
)

# Each attempt's outcome as the page sees it; ``window.outcome`` is awaited by the test.
ATTEMPTS = """
<!doctype html><title>cute cats</title>
<script>
async function attempt(url, init) {
  try {
    const response = await fetch(url, init);
    return response.type === "opaque" ? "sent" : String(response.status);
  } catch (error) {
    return "blocked";
  }
}
function socket(url) {
  return new Promise((resolve) => {
    const ws = new WebSocket(url);
    ws.onopen = () => { resolve("open"); ws.close(); };
    ws.onerror = () => resolve("refused");
    setTimeout(() => resolve("no answer"), 10000);
  });
}
window.outcome = (async () => ({
  textPlain: await attempt(HTTP + "/orders", {
    method: "POST", mode: "no-cors", body: '{"pizza": {"name": "text/plain"}}',
  }),
  form: await attempt(HTTP + "/orders", {
    method: "POST", mode: "no-cors", body: new URLSearchParams({pizza: "form"}),
  }),
  json: await attempt(HTTP + "/orders", {
    method: "POST", headers: {"content-type": "application/json"},
    body: '{"pizza": {"name": "json"}}',
  }),
  read: await attempt(HTTP + "/orders", {}),
  websocket: await socket(WS + "/ws"),
}))();
</script>
"""


def page_html(http: str, ws: str) -> str:
    return ATTEMPTS.replace("HTTP +", f"{http!r} +").replace("WS +", f"{ws!r} +")


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("chromium is not installed (apt-get install chromium); the UI tests need it")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=chromium,
            args=[f"--host-resolver-rules=MAP {ATTACKER} 127.0.0.1", PRIVATE_NETWORK_CHECKS_OFF],
        )
        yield launched
        await launched.close()


@pytest.fixture
def other_site() -> Iterator[ThreadingHTTPServer]:
    """A second HTTP server on another port of 127.0.0.1: another origin, serving one page
    (set as ``html`` on the server object)."""

    class Page(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = str(getattr(self.server, "html", "")).encode()
            self.send_response(200)
            self.send_header("content-type", "text/html; charset=utf-8")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    site = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    thread = threading.Thread(target=site.serve_forever, daemon=True)
    thread.start()
    yield site
    site.shutdown()
    site.server_close()


async def outcome_of(browser: Browser, url: str, route: str | None = None) -> dict[str, str]:
    page = await browser.new_page()
    try:
        if route is not None:
            html = route

            async def fulfil(request_route: Route) -> None:
                await request_route.fulfill(status=200, content_type="text/html", body=html)

            await page.route(url, fulfil)
        await page.goto(url)
        result: dict[str, str] = await page.evaluate("window.outcome")
        return result
    finally:
        await page.close()


async def test_a_page_of_another_origin_cannot_command_the_server(
    browser: Browser, server: ServerProcess, other_site: ThreadingHTTPServer
) -> None:
    other_site.html = page_html(server.url, server.ws_url)  # type: ignore[attr-defined]
    port = other_site.server_address[1]
    outcome = await outcome_of(browser, f"http://127.0.0.1:{port}/")
    # The no-cors requests go out (the page cannot see what came back); the JSON POST
    # fails its preflight; a read is not shared with the page (no CORS header).
    assert outcome == {
        "textPlain": "sent", "form": "sent", "json": "blocked", "read": "blocked",
        "websocket": "refused",
    }, outcome  # fmt: skip
    async with httpx.AsyncClient(base_url=server.url) as http:
        assert (await list_orders(http))["orders"] == []


async def test_a_rebound_name_cannot_command_the_server(
    browser: Browser, server: ServerProcess
) -> None:
    origin = f"http://{ATTACKER}:{server.port}"
    html = page_html(origin, f"ws://{ATTACKER}:{server.port}")
    outcome = await outcome_of(browser, f"{origin}/", route=html)
    # Same-origin for the browser: every request reaches the server, which refuses them.
    assert outcome == {
        "textPlain": "400", "form": "400", "json": "400", "read": "400",
        "websocket": "refused",
    }, outcome  # fmt: skip
    async with httpx.AsyncClient(base_url=server.url) as http:
        assert (await list_orders(http))["orders"] == []
