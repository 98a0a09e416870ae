"""The dashboard in a real headless Chromium, driven by Playwright against a live server.

Debian's ``chromium`` is used (``shutil.which``); Playwright's own browser download is never
needed. Without chromium these tests fail rather than skip, so a CI machine without it is
noticed (``.ci/run`` installs it). Screenshots of each page go to ``test-artifacts/``, or
to ``$ORCHESTRATOR_TEST_ARTIFACTS``; their paths are printed (``pytest -s`` shows them).
Assertions read the DOM (the lit state's ``data-state``, table rows), never pixels.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from tests.conftest import ServerFactory, ServerProcess
from tests.helpers import (
    HAWAII,
    MARGHERITA,
    UNKNOWN_ID,
    WAITING_FOR_KITCHEN,
    WEBHOOK_SECRET,
    create_order,
    send_ok,
    send_service_event,
    wait_for_state,
)

ROOT = Path(__file__).resolve().parent.parent.parent
WAIT_MS = 20_000


def artifacts() -> Path:
    directory = Path(os.environ.get("ORCHESTRATOR_TEST_ARTIFACTS", ROOT / "test-artifacts"))
    directory.mkdir(parents=True, exist_ok=True)
    return directory


async def screenshot(page: Page, name: str) -> Path:
    path = artifacts() / name
    await page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")
    return path


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("chromium is not installed (apt-get install chromium); the UI tests need it")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=chromium)
        yield launched
        await launched.close()


async def open_page(browser: Browser, server: ServerProcess) -> tuple[Page, list[str], list[str]]:
    """The dashboard in a new page, live; with the URLs it requests and its script errors."""
    page = await browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(WAIT_MS)
    requested: list[str] = []
    errors: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.on("pageerror", lambda error: errors.append(str(error)))
    await page.goto(f"{server.url}/")
    await expect(page.locator("#live")).to_have_attribute("data-live", "true")
    return page, requested, errors


def only_from(server: ServerProcess, urls: list[str]) -> list[str]:
    """The URLs among ``urls`` that are not on the server (none should be: no CDN)."""
    host = urlsplit(server.url).netloc
    return [u for u in urls if not u.startswith("data:") and urlsplit(u).netloc != host]


async def test_create_confirm_and_watch_an_order_to_done(
    browser: Browser, server_factory: ServerFactory
) -> None:
    """Create an order from the list page, see other orders arrive live, open the order,
    see a refused event's problem, confirm it with the event form and watch the lit state
    move through the kitchen to done, with the timeline growing, all without a reload."""
    server = server_factory("--kitchen-delay", "1", "--delivery-delay", "1")
    page, requested, errors = await open_page(browser, server)
    assert page.url == f"{server.url}/ui/"

    # Create from the page: chart + first pizza.
    await expect(page.locator("#create select[name=chart]")).to_have_value("pizza")
    await page.fill("#create textarea[name=pizza]", json.dumps(HAWAII))
    await page.click("#create button")
    link = page.locator("#created a")
    order_id = (await link.text_content() or "").strip()
    row = page.locator(f'#orders tr[data-id="{order_id}"]')
    await expect(row).to_have_attribute("data-state", "orderPizza")
    await expect(row.locator(".items")).to_have_text("1: hawaii")

    # Orders created and moved elsewhere show up and change live (the firehose).
    async with httpx.AsyncClient(base_url=server.url) as http:
        other = await create_order(http, MARGHERITA)
        other_row = page.locator(f'#orders tr[data-id="{other["id"]}"]')
        await expect(other_row).to_have_attribute("data-state", "orderPizza")
        await send_ok(http, other["id"], {"type": "CONFIRM_PIZZA"})
        await expect(other_row).to_have_attribute("data-state", "done")
    await expect(page.locator("#orders tbody tr")).to_have_count(2)
    await screenshot(page, "dashboard-list.png")
    await page.fill("#filters input[name=state]", "orderPizza")
    await page.press("#filters input[name=state]", "Enter")
    await expect(page.locator("#orders tbody tr")).to_have_count(1)
    await expect(row).to_be_visible()

    # The order page: the chart drawn, the current state lit, the allowed events offered.
    await link.click()
    await page.wait_for_url(f"**/ui/order.html?id={order_id}")
    chart = page.locator("svg.chart")
    lit = chart.locator("g.state.current")
    await expect(lit).to_have_attribute("data-state", "orderPizza")
    await expect(chart.locator('g.state.compound[data-state="bakePizza"]')).to_have_count(1)
    confirm = chart.locator("g.transition[data-event=CONFIRM_PIZZA]")
    await expect(confirm).to_have_class(re.compile(r"\benabled\b"))
    options = page.locator("#send select[name=type] option")
    await expect(options).to_have_text(["ADD_PIZZA", "REMOVE_PIZZA", "CONFIRM_PIZZA", "CANCEL"])
    await page.evaluate("window.notReloaded = true")

    # A refused event shows its problem.
    await page.select_option("#send select[name=type]", "REMOVE_PIZZA")
    await page.fill("#send textarea[name=data]", json.dumps({"pizza": {"name": "none"}}))
    await page.click("#send button")
    await expect(page.locator("#send-error")).to_contain_text("Conflict (409)")

    # Confirm: the lit state moves through the kitchen and delivery to done.
    await page.select_option("#send select[name=type]", "CONFIRM_PIZZA")
    await page.fill("#send textarea[name=data]", "{}")
    await page.click("#send button")
    await expect(page.locator("#send-error")).to_be_hidden()
    await expect(lit).to_have_attribute("data-state", "waitingForPizzaToBeBaked")
    await expect(chart.locator('g.state.active[data-state="bakePizza"]')).to_have_count(1)
    await expect(page.locator("#status")).to_have_text("Waiting for the pizza to be baked...")
    await screenshot(page, "dashboard-order-baking.png")
    await expect(lit).to_have_attribute("data-state", "done")
    await expect(chart.locator("g.state.active")).to_have_count(1)
    await expect(page.locator("#history tbody tr").last).to_have_attribute(
        "data-event", "PIZZA_DELIVERED"
    )
    await expect(page.locator("#no-events")).to_be_visible()
    assert await page.evaluate("window.notReloaded") is True
    await screenshot(page, "dashboard-order-done.png")
    assert only_from(server, requested) == []
    assert errors == []


async def test_pages_ask_for_the_token_and_keep_it(
    browser: Browser, server_factory: ServerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With an API token on the server the page loads, asks for the token, and once given
    (kept in localStorage) lists the orders and follows them over ?access_token."""
    monkeypatch.setitem(os.environ, "ORCHESTRATOR_API_TOKEN", "t0ken")
    server = server_factory()
    page = await browser.new_page()
    page.set_default_timeout(WAIT_MS)
    await page.goto(f"{server.url}/")
    auth = page.locator("#auth")
    await expect(auth).to_be_visible()
    await expect(auth.locator(".reason")).to_have_text("This server needs an API token.")
    await page.fill("#auth input", "t0ken")
    await page.click("#auth button:not(.forget)")
    await expect(page.locator("#live")).to_have_attribute("data-live", "true")
    await expect(auth).to_be_hidden()
    headers = {"Authorization": "Bearer t0ken"}
    async with httpx.AsyncClient(base_url=server.url, headers=headers) as http:
        order = await create_order(http)
    await expect(page.locator(f'#orders tr[data-id="{order["id"]}"]')).to_have_count(1)
    assert await page.evaluate("localStorage.length") == 1


async def test_an_order_with_odd_item_data_does_not_empty_the_list(
    browser: Browser, server: ServerProcess
) -> None:
    """Items are the clients' data: a pizza whose name is an object (here one with a
    string ``toString``, which made joining the names throw) shows as JSON, and the other
    orders, before and after it, still show."""
    async with httpx.AsyncClient(base_url=server.url, timeout=30.0) as http:
        first = await create_order(http, HAWAII)
        odd = await http.post("/orders", json={"pizza": {"name": {"toString": "x"}}})
        assert odd.status_code == 201, odd.text
        page, _, errors = await open_page(browser, server)
        rows = page.locator("#orders tbody tr")
        await expect(rows).to_have_count(2)
        last = await create_order(http, MARGHERITA)  # arrives live, over the firehose
        await expect(rows).to_have_count(3)
    for order_id in (first["id"], odd.json()["id"], last["id"]):
        await expect(page.locator(f'tr[data-id="{order_id}"]')).to_have_count(1)
    odd_items = page.locator(f'tr[data-id="{odd.json()["id"]}"] td.items')
    await expect(odd_items).to_have_text('1: {"name":{"toString":"x"}}')
    assert errors == []
    await screenshot(page, "dashboard-odd-items.png")


INJECT_INLINE_SCRIPT = """() => new Promise((resolve) => {
  const script = document.createElement("script");
  script.textContent = "window.injectedRan = true";
  document.head.append(script);
  setTimeout(() => resolve(window.injectedRan === true), 200);
})"""


async def test_pages_run_under_their_content_security_policy(
    browser: Browser, server_factory: ServerFactory
) -> None:
    """Issue 16, items 6 and 7: the pages are served with a CSP (no inline script, no eval,
    no framing) and still work under it, the chart drawn by elkjs included, with no
    violation reported; the event form does not offer the service events, which the
    kitchen (here the signed webhook) sends."""
    server = server_factory("--kitchen-mode", "ignore", "--webhook-secret", WEBHOOK_SECRET)
    async with httpx.AsyncClient(base_url=server.url) as http:
        for path in ("/ui/", "/ui/order.html", "/ui/order.js", "/ui/vendor/elk.bundled.js"):
            response = await http.get(path)
            assert response.status_code == 200, path
            policy = response.headers["content-security-policy"]
            assert "script-src 'self';" in policy and "frame-ancestors 'none'" in policy
            assert response.headers["x-frame-options"] == "DENY"
            assert response.headers["x-content-type-options"] == "nosniff"
        order_id = (await create_order(http, HAWAII))["id"]
        await send_ok(http, order_id, {"type": "CONFIRM_PIZZA"})
        await wait_for_state(http, order_id, WAITING_FOR_KITCHEN)
        page = await browser.new_page()
        page.set_default_timeout(WAIT_MS)
        errors: list[str] = []
        violations: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on(
            "console",
            lambda message: (
                violations.append(message.text)
                if "Content Security Policy" in message.text
                else None
            ),
        )
        await page.goto(f"{server.url}/ui/order.html?id={order_id}")
        lit = page.locator("svg.chart g.state.current")
        await expect(lit).to_have_attribute("data-state", "waitingForPizzaToBeBaked")
        await expect(page.locator("#live")).to_have_attribute("data-live", "true")
        options = page.locator("#send select[name=type] option")
        await expect(options).to_have_text(["CANCEL"])
        # Markup injected into the page runs nothing: an inline script is refused.
        injected = await page.evaluate(INJECT_INLINE_SCRIPT)
        assert injected is False
        assert any("inline script" in v for v in violations), violations
        violations.clear()  # the one just tried, on purpose
        ready = await send_service_event(http, order_id, "PIZZA_READY")
        assert ready.status_code == 200, ready.text
        await expect(lit).to_have_attribute("data-state", "done")
        await expect(page.locator("#no-events")).to_be_visible()
        await page.goto(f"{server.url}/ui/")
        await expect(page.locator(f'#orders tr[data-id="{order_id}"]')).to_have_count(1)
        await expect(page.locator("#live")).to_have_attribute("data-live", "true")
    assert errors == []
    assert violations == []


@pytest.mark.parametrize("order_id", [".", "..", "%2E", UNKNOWN_ID])
async def test_an_order_page_for_no_order_says_so(
    browser: Browser, server: ServerProcess, order_id: str
) -> None:
    """Issue 16, item 7: order.html?id=. asked for /orders/., which the URL resolves to
    /orders/ (the list), and showed a TypeError instead of saying there is no such order."""
    page = await browser.new_page()
    page.set_default_timeout(WAIT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    await page.goto(f"{server.url}/ui/order.html?id={order_id}")
    problem = page.locator("#page-error")
    await expect(problem).to_be_visible()
    await expect(problem).to_contain_text(re.compile("no such order|does not exist"))
    assert "TypeError" not in (await problem.text_content() or "")
    assert errors == []
