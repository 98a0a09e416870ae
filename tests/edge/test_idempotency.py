"""Idempotency-Key on POST /orders and POST /orders/{id}/events through a real server.

Covers rule 5 of docs/design.md, "The actor contract" (a repeated id gets the recorded
answer and is not applied again) and its HTTP contract's "a POST with an Idempotency-Key
that repeats gets the first answer (same status, same body)": sequential repeats, 20
concurrent identical requests, a repeat after the order has moved on, and a key reused for a
different body (422, nothing changes), also concurrently on creates. Keys may not take the
ids the orchestrator makes (an invoke's outcome, an event sent without a key, a timer's
firing), nor match ids it made before those had a namespace.
"""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from pathlib import Path

import httpx

from tests.conftest import ServerFactory, ServerProcess
from tests.helpers import (
    CONFIRM,
    HAWAII,
    MARGHERITA,
    WAITING_FOR_KITCHEN,
    WEBHOOK_SECRET,
    add,
    create_order,
    eventually,
    history,
    http_client,
    list_orders,
    send,
    send_service_event,
    view,
    wait_for_state,
)

CONCURRENT = 20


def keyed(key: str) -> dict[str, str]:
    return {"Idempotency-Key": key}


async def listed_ids(client: httpx.AsyncClient) -> list[str]:
    return [order["id"] for order in (await list_orders(client))["orders"]]


def wide_client(client: httpx.AsyncClient) -> httpx.AsyncClient:
    """A client on the same server with a connection per concurrent request."""
    return http_client(client.base_url, connections=CONCURRENT)


async def test_repeated_event_is_answered_identically_and_applied_once(
    client: httpx.AsyncClient,
) -> None:
    """Actor rule 5; HTTP contract: a repeat returns the first answer (same status, same
    body) and is not applied twice."""
    order = await create_order(client)
    path = f"/orders/{order['id']}/events"
    first = await client.post(path, json=add(MARGHERITA), headers=keyed("add-once"))
    assert first.status_code == 200
    assert first.json()["version"] == 2
    for _ in range(3):
        repeat = await client.post(path, json=add(MARGHERITA), headers=keyed("add-once"))
        assert repeat.status_code == first.status_code
        assert repeat.content == first.content
    current = await view(client, order["id"])
    assert current["version"] == 2
    assert current["items"] == [HAWAII, MARGHERITA]
    entries = await history(client, order["id"])
    assert [e["eventId"] for e in entries].count("add-once") == 1
    assert len(entries) == 2


async def test_repeat_after_the_order_moved_on_gets_the_first_answer(
    client: httpx.AsyncClient,
) -> None:
    """Actor rule 5: the recorded result is returned, not the current view, and the order
    does not change."""
    order = await create_order(client)
    path = f"/orders/{order['id']}/events"
    first = await client.post(path, json=add(MARGHERITA), headers=keyed("early"))
    assert first.status_code == 200
    later = await client.post(path, json=add(HAWAII))
    assert later.status_code == 200 and later.json()["version"] == 3
    repeat = await client.post(path, json=add(MARGHERITA), headers=keyed("early"))
    assert repeat.status_code == 200
    assert repeat.content == first.content
    assert repeat.json()["version"] == 2
    current = await view(client, order["id"])
    assert current["version"] == 3
    assert current["items"] == [HAWAII, MARGHERITA, HAWAII]


async def test_repeated_create_is_answered_identically_and_creates_one_order(
    client: httpx.AsyncClient,
) -> None:
    """Actor rule 5 for POST /orders: the same key gets the same 201, Location and body,
    and only one order exists."""
    first = await client.post("/orders", json={"pizza": HAWAII}, headers=keyed("create-once"))
    assert first.status_code == 201
    order_id = first.json()["id"]
    for _ in range(3):
        repeat = await client.post("/orders", json={"pizza": HAWAII}, headers=keyed("create-once"))
        assert repeat.status_code == 201
        assert repeat.content == first.content
        assert repeat.headers["location"] == first.headers["location"] == f"/orders/{order_id}"
    assert await listed_ids(client) == [order_id]
    entries = await history(client, order_id)
    assert [e["eventId"] for e in entries] == ["create-once"]
    assert (await view(client, order_id))["version"] == 1


async def test_concurrent_identical_events_are_applied_once(client: httpx.AsyncClient) -> None:
    """Actor rules 1, 2 and 5: 20 identical keyed requests at once are applied once and all
    get the same answer."""
    order = await create_order(client)
    path = f"/orders/{order['id']}/events"
    async with wide_client(client) as wide:
        responses = await asyncio.gather(
            *(
                wide.post(path, json=add(MARGHERITA), headers=keyed("together"))
                for _ in range(CONCURRENT)
            )
        )
    assert {r.status_code for r in responses} == {200}
    assert {r.content for r in responses} == {responses[0].content}
    assert responses[0].json()["version"] == 2
    current = await view(client, order["id"])
    assert current["version"] == 2
    assert current["items"] == [HAWAII, MARGHERITA]
    entries = await history(client, order["id"])
    assert len(entries) == 2
    assert entries[1]["eventId"] == "together"


async def test_concurrent_identical_creates_make_one_order(client: httpx.AsyncClient) -> None:
    """Actor rules 1 and 5 for POST /orders: 20 identical keyed creates at once make one
    order, and every request gets its 201 and body."""
    async with wide_client(client) as wide:
        responses = await asyncio.gather(
            *(
                wide.post("/orders", json={"pizza": HAWAII}, headers=keyed("create-together"))
                for _ in range(CONCURRENT)
            )
        )
    assert {r.status_code for r in responses} == {201}
    assert {r.content for r in responses} == {responses[0].content}
    order_id = responses[0].json()["id"]
    assert await listed_ids(client) == [order_id]
    assert [e["eventId"] for e in await history(client, order_id)] == ["create-together"]


async def test_event_key_reused_with_another_body_is_422(client: httpx.AsyncClient) -> None:
    """HTTP contract: a key answers one request; reused for a different body it is 422
    naming Idempotency-Key, nothing is applied, and the first request still repeats."""
    order = await create_order(client)
    path = f"/orders/{order['id']}/events"
    first = await client.post(path, json=add(MARGHERITA), headers=keyed("mine"))
    assert first.status_code == 200
    for other in (add(HAWAII), {"type": "CONFIRM_PIZZA"}):
        reused = await client.post(path, json=other, headers=keyed("mine"))
        assert reused.status_code == 422, reused.text
        assert reused.headers["content-type"].startswith("application/problem+json")
        assert reused.json()["field"] == "Idempotency-Key"
    current = await view(client, order["id"])
    assert current["version"] == 2
    assert current["items"] == [HAWAII, MARGHERITA]
    assert current["state"] == "orderPizza"
    assert len(await history(client, order["id"])) == 2
    repeat = await client.post(path, json=add(MARGHERITA), headers=keyed("mine"))
    assert repeat.status_code == 200 and repeat.content == first.content


async def test_create_key_reused_with_another_body_is_422(client: httpx.AsyncClient) -> None:
    """HTTP contract: a create key reused for a different pizza is 422 and makes no order."""
    first = await client.post("/orders", json={"pizza": HAWAII}, headers=keyed("new-order"))
    assert first.status_code == 201
    order_id = first.json()["id"]
    reused = await client.post("/orders", json={"pizza": MARGHERITA}, headers=keyed("new-order"))
    assert reused.status_code == 422, reused.text
    assert reused.headers["content-type"].startswith("application/problem+json")
    assert reused.json()["field"] == "Idempotency-Key"
    assert await listed_ids(client) == [order_id]
    current = await view(client, order_id)
    assert current["items"] == [HAWAII] and current["version"] == 1


async def test_longest_allowed_key_is_accepted(client: httpx.AsyncClient) -> None:
    """HTTP contract: a 200-character Idempotency-Key is valid (201 is refused, see
    test_errors.py) and becomes the journal's eventId."""
    order = await create_order(client)
    key = "k" * 200
    path = f"/orders/{order['id']}/events"
    first = await client.post(path, json=add(MARGHERITA), headers=keyed(key))
    assert first.status_code == 200
    repeat = await client.post(path, json=add(MARGHERITA), headers=keyed(key))
    assert repeat.content == first.content
    assert [e["eventId"] for e in await history(client, order["id"])][1:] == [key]


async def test_requests_without_a_key_are_each_applied(client: httpx.AsyncClient) -> None:
    """Actor rule 5 applies to ids the client gave: without Idempotency-Key, two equal
    requests are two events, each with its own eventId."""
    order = await create_order(client)
    path = f"/orders/{order['id']}/events"
    first = await client.post(path, json=add(MARGHERITA))
    second = await client.post(path, json=add(MARGHERITA))
    assert (first.status_code, second.status_code) == (200, 200)
    assert second.json()["version"] == 3
    assert second.json()["items"] == [HAWAII, MARGHERITA, MARGHERITA]
    ids = [e["eventId"] for e in await history(client, order["id"])]
    assert len(set(ids)) == 3


async def test_a_key_in_the_form_of_an_invoke_outcome_is_422(client: httpx.AsyncClient) -> None:
    """Event ids are one namespace per order, and an invoke's outcome has the id
    ``done:<message id>`` (or ``error:``). A client's key of that form would make the
    outcome pass for an event already applied, so the order would skip a state: it is
    refused, on creates and events, and nothing changes."""
    order = await create_order(client)
    path = f"/orders/{order['id']}/events"
    for key in (f"done:{order['id']}:3:0", f"error:{order['id']}:3:0"):
        refused = await client.post(path, json=add(MARGHERITA), headers=keyed(key))
        assert refused.status_code == 422, refused.text
        assert refused.json()["field"] == "Idempotency-Key"
        created = await client.post("/orders", json={"pizza": HAWAII}, headers=keyed(key))
        assert created.status_code == 422, created.text
    assert (await view(client, order["id"]))["version"] == 1
    assert await listed_ids(client) == [order["id"]]
    # The words alone are fine, as in any other key.
    fine = await client.post(path, json=add(MARGHERITA), headers=keyed("done-with-this"))
    assert fine.status_code == 200


async def test_concurrent_creates_with_one_key_and_two_bodies_answer_by_body(
    client: httpx.AsyncClient,
) -> None:
    """HTTP contract, a key answers one request: creates with one key and two bodies at
    once, on new keys and on keys that already made their order. The body that was applied
    gets the same 201 every time, the other gets 422, and one order exists per key. The
    create used to be shared by key alone, so the 422 raised for the other body was handed
    to honest retries of the applied one too (about 1 in 6 of them)."""
    bodies = [{"pizza": MARGHERITA}, {"pizza": HAWAII}]
    keys = [f"mixed-{n}" for n in range(10)]
    for key in keys[5:]:
        assert (await client.post("/orders", json=bodies[1], headers=keyed(key))).is_success
    async with http_client(client.base_url, connections=2 * CONCURRENT) as wide:
        rounds = await asyncio.gather(
            *(
                asyncio.gather(
                    *(
                        wide.post("/orders", json=bodies[n % 2], headers=keyed(key))
                        for n in range(2 * CONCURRENT)
                    )
                )
                for key in keys
            )
        )
    order_ids = set()
    for key, responses in zip(keys, rounds, strict=True):
        created = [r for r in responses if r.status_code == 201]
        assert created, [r.text for r in responses]
        first = created[0]
        applied = {"pizza": first.json()["items"][0]}
        for n, response in enumerate(responses):
            if bodies[n % 2] == applied:
                assert response.status_code == 201, (key, response.text)
                assert response.content == first.content
            else:
                assert response.status_code == 422, (key, response.text)
                assert response.json()["field"] == "Idempotency-Key"
        order_id = first.json()["id"]
        order_ids.add(order_id)
        assert [e["eventId"] for e in await history(client, order_id)] == [key]
    assert sorted(await listed_ids(client)) == sorted(order_ids)
    assert len(order_ids) == len(keys)


async def test_a_key_equal_to_an_id_the_server_made_is_422(client: httpx.AsyncClient) -> None:
    """Actor rule 5 for the ids the server makes: an event sent without a key gets an id of
    the server's (shown in the history). A key equal to it used to be answered with that
    event's reply and never applied; those ids are now the server's own namespace, so the
    key is refused (422) like any reused key, and nothing changes."""
    order = await create_order(client)
    path = f"/orders/{order['id']}/events"
    unkeyed = await client.post(path, json=add(MARGHERITA))
    assert unkeyed.status_code == 200
    made = (await history(client, order["id"]))[-1]["eventId"]
    for body in (add(HAWAII), add(MARGHERITA)):
        reused = await client.post(path, json=body, headers=keyed(made))
        assert reused.status_code == 422, reused.text
        assert reused.headers["content-type"].startswith("application/problem+json")
        assert reused.json()["field"] == "Idempotency-Key"
    created = await client.post("/orders", json={"pizza": HAWAII}, headers=keyed(made))
    assert created.status_code == 422, created.text
    current = await view(client, order["id"])
    assert current["version"] == 2
    assert current["items"] == [HAWAII, MARGHERITA]
    assert await listed_ids(client) == [order["id"]]


async def test_a_key_equal_to_an_id_made_before_the_namespaces_is_422(
    server_factory: ServerFactory,
) -> None:
    """A database from before the server's ids had a namespace keeps them as they were (a
    bare UUID): a key equal to one finds a journal entry recorded without a fingerprint,
    which answers no client's key (422), instead of passing for its repeat."""
    server = server_factory()
    async with http_client(server.url) as http:
        order = await create_order(http)
        unkeyed = await http.post(f"/orders/{order['id']}/events", json=add(MARGHERITA))
        assert unkeyed.status_code == 200
    server.kill()
    old_id = str(uuid.uuid4())
    with sqlite3.connect(server.db) as db:
        db.execute(
            "UPDATE journal SET event_id = ? WHERE order_id = ? AND version = 2",
            (old_id, order["id"]),
        )
    db.close()
    server.restart()
    async with http_client(server.url) as http:
        assert [e["eventId"] for e in await history(http, order["id"])][1] == old_id
        path = f"/orders/{order['id']}/events"
        for body in (add(HAWAII), add(MARGHERITA)):
            reused = await http.post(path, json=body, headers=keyed(old_id))
            assert reused.status_code == 422, reused.text
            assert reused.json()["field"] == "Idempotency-Key"
        assert (await view(http, order["id"]))["items"] == [HAWAII, MARGHERITA]


# A chart whose first state has a timer and an event that keeps it there; a create whose
# name is "refused" is refused by the chart (409).
TICKING = """\
name: ticking
states:
  waiting:
    initial: true
    after:
      - delay: 3
        target: rang
    transitions:
      - event: OPEN
        on: open
      - event: STEP
        on: step
  rang:
    final: true
"""
TICKING_ACTIONS = """\
from typing import ClassVar
from orchestrator import Context, JsonObject, Refused


class Ticking(Context):
    fields: ClassVar[JsonObject] = {"name": "", "steps": 0}
    create_event: ClassVar[str] = "OPEN"
    create_fields: ClassVar[dict[str, type]] = {"name": str}

    def open(self, data: JsonObject) -> None:
        if data["name"] == "refused":
            raise Refused("this name is refused")
        self.name = data["name"]

    def step(self) -> None:
        self.steps += 1
"""


def ticking_server(tmp_path: Path, server_factory: ServerFactory) -> ServerProcess:
    charts = tmp_path / "charts"
    charts.mkdir()
    (charts / "ticking.yaml").write_text(TICKING)
    (charts / "ticking.py").write_text(TICKING_ACTIONS)
    return server_factory("--charts", str(charts))


async def test_a_create_refused_for_another_body_does_not_answer_this_one(
    tmp_path: Path, server_factory: ServerFactory
) -> None:
    """Creates with one key, half with a body the chart refuses (409): the refusal is that
    body's answer only. Every create with the good body gets the same 201, and one order
    exists; the refused body gets 409, or 422 once the key has made the order."""
    server = ticking_server(tmp_path, server_factory)
    good, bad = {"name": "good"}, {"name": "refused"}
    async with http_client(server.url) as http:
        responses = await asyncio.gather(
            *(
                http.post("/orders", json=good if n % 2 else bad, headers=keyed("one-key"))
                for n in range(2 * CONCURRENT)
            )
        )
        created = [r for n, r in enumerate(responses) if n % 2]
        assert {r.status_code for r in created} == {201}, [r.text for r in created]
        assert {r.content for r in created} == {created[0].content}
        refused = [r for n, r in enumerate(responses) if not n % 2]
        assert {r.status_code for r in refused} <= {409, 422}, [r.text for r in refused]
        assert await listed_ids(http) == [created[0].json()["id"]]


async def test_a_key_in_the_form_of_a_timer_event_id_is_422_and_the_timer_fires(
    tmp_path: Path, server_factory: ServerFactory
) -> None:
    """docs/design.md, actor rule 7: a timer fires with an event id made from the timer's id and due
    time, which a client can read in the database's shape and the history. Before the
    timer ids had a namespace of their own, a client's key equal to the next firing's id
    took it first: the timer's turn then failed on the journal's unique event ids, was
    retried every second for ever, and the order never left its state. Keys in the
    timers' namespace are refused (422); a key shaped as the old id is just a key; the
    timer fires."""
    server = ticking_server(tmp_path, server_factory)
    async with http_client(server.url) as http:
        created = await http.post("/orders", json={"name": "t"}, headers=keyed("ticking"))
        assert created.status_code == 201, created.text
        order_id = created.json()["id"]
        with sqlite3.connect(server.db) as db:
            [(timer_id, due_at)] = db.execute("SELECT id, due_at FROM timers").fetchall()
        db.close()
        old_shape = f"{timer_id}@{due_at!r}"
        path = f"/orders/{order_id}/events"
        answers = [
            await http.post(path, json={"type": "STEP"}, headers=keyed(key))
            for key in (old_shape, f"timer:{old_shape}")
        ]

        async def rang() -> bool:
            return bool((await view(http, order_id))["state"] == "rang")

        # The timer is due 3 s after the create; 20 s only bounds a hang.
        await eventually(rang, within=20.0, what="the timer to fire")
        entries = await history(http, order_id)
    assert answers[0].status_code == 200, answers[0].text
    assert answers[1].status_code == 422, answers[1].text
    assert answers[1].json()["field"] == "Idempotency-Key"
    assert [e["type"] for e in entries][:2] == ["OPEN", "STEP"]
    assert entries[-1]["stateAfter"] == "rang"
    assert entries[-1]["eventId"] not in {"ticking", old_shape}
    assert "UNIQUE constraint failed" not in server.log()


async def test_a_cloudevent_with_the_id_of_an_event_the_server_made_is_422(
    server_factory: ServerFactory,
) -> None:
    """CloudEvent ids share the namespace of keys: a webhook event whose id is that of an
    event sent without a key (read in the history) used to be answered with that event's
    reply and never applied. It is refused (422) and the order stays where it was."""
    server = server_factory("--webhook-secret", WEBHOOK_SECRET, "--kitchen-mode", "ignore")
    async with http_client(server.url) as http:
        order = await create_order(http)
        assert (await send(http, order["id"], CONFIRM)).status_code == 200
        await wait_for_state(http, order["id"], WAITING_FOR_KITCHEN, within=10.0)
        made = next(
            e["eventId"] for e in await history(http, order["id"]) if e["type"] == "CONFIRM_PIZZA"
        )
        refused = await send_service_event(http, order["id"], "PIZZA_READY", event_id=made)
        assert refused.status_code == 422, refused.text
        assert refused.json()["field"] == "id"
        assert (await view(http, order["id"]))["state"] == WAITING_FOR_KITCHEN
