"""Contract tests for "The actor contract" in docs/design.md, one group per numbered rule.

Every test drives a real ``orchestrator serve`` subprocess over HTTP and WebSocket, and
reads only what a user can read: responses, /metrics, and the stub services' ledgers
beside the database. Rule 7 (durable timers) needs a chart with a timeout, which the pizza
chart does not have. Rule 8 (restart after kill -9) is covered in ``tests/crash/``.

The tests where the store makes a difference run twice, with the orders in SQLite and in a
fresh PostgreSQL database (``--store``; marked ``BOTH_STORES``): commits and the versions
they give (rules 1 and 2), replies and broadcasts only after the commit, readable at once
and kept across SIGKILL (rule 3), recorded answers found again in the store, also after
SIGKILL (rule 5), and passivation, reactivation from the stored snapshot and the outbox
(rule 6). Rule 4's refusals are decided before anything reaches the store, so they run on
SQLite only.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.conftest import ServerFactory, ServerProcess
from tests.helpers import (
    CONFIRM,
    DONE,
    HAWAII,
    MARGHERITA,
    WAITING_FOR_KITCHEN,
    WEBHOOK_SECRET,
    JsonObject,
    add,
    assert_flow_histories,
    assert_once_per_order,
    create_order,
    eventually,
    history,
    http_client,
    ledger_rows,
    metric,
    remove,
    send,
    send_service_event,
    types_of,
    view,
    wait_all_in_state,
    wait_for_state,
    wait_quiet,
)
from tests.postgres import fresh_database

ACTIVATIONS = "orchestrator_actor_activations_total"
PASSIVATIONS = "orchestrator_actor_passivations_total"
LIVE_ACTORS = "orchestrator_live_actors"


BOTH_STORES = pytest.mark.parametrize("store_args", ["sqlite", "postgres"], indirect=True)


@pytest.fixture
async def store_args(request: pytest.FixtureRequest) -> AsyncIterator[tuple[str, ...]]:
    """The server's flags for its store: none for SQLite (the --db file), the default;
    ``--store`` and a fresh PostgreSQL database for a test marked ``BOTH_STORES``."""
    if getattr(request, "param", "sqlite") == "sqlite":
        yield ()
    else:
        async with fresh_database() as url:
            yield ("--store", url)


@pytest.fixture
def server(server_factory: ServerFactory, store_args: tuple[str, ...]) -> ServerProcess:
    return server_factory(*store_args)


def pizza(n: int) -> JsonObject:
    return {"name": f"pizza-{n}", "size": "S"}


async def wait_passivated(http: httpx.AsyncClient, *, at_least: float) -> None:
    async def dropped() -> bool:
        return await metric(http, PASSIVATIONS) >= at_least and await metric(http, LIVE_ACTORS) == 0

    await eventually(dropped, within=10.0, what="the idle actor to be passivated")


# -- Rule 1: one actor per id ---------------------------------------------------------------


@BOTH_STORES
async def test_rule1_one_activation_for_a_burst_at_a_passivated_order(
    server_factory: ServerFactory, store_args: tuple[str, ...]
) -> None:
    """Rule 1 (one actor per id): 100 concurrent events at an idle, passivated order
    activate exactly one actor for it."""
    server = server_factory(*store_args, "--idle-seconds", "0.5")
    async with http_client(server.url) as http:
        order = await create_order(http)
        await wait_passivated(http, at_least=1)
        before = await metric(http, ACTIVATIONS)

        replies = await asyncio.gather(
            *(send(http, order["id"], add(pizza(n))) for n in range(100))
        )

        assert [r.status_code for r in replies] == [200] * 100, [r.text for r in replies][:3]
        assert await metric(http, ACTIVATIONS) == before + 1
        assert sorted(r.json()["version"] for r in replies) == list(range(2, 102))


# -- Rule 2: turn-based ---------------------------------------------------------------------


@BOTH_STORES
async def test_rule2_concurrent_events_on_one_order_apply_one_at_a_time(
    server: ServerProcess,
) -> None:
    """Rule 2 (turn-based): 100 concurrent ADD_PIZZA on one order each get their own
    version, 2..101 with no gap or repeat, and the journal and items agree with them."""
    async with http_client(server.url) as http:
        order = await create_order(http, HAWAII)
        order_id = order["id"]

        replies = await asyncio.gather(*(send(http, order_id, add(pizza(n))) for n in range(100)))

        assert [r.status_code for r in replies] == [200] * 100, [r.text for r in replies][:3]
        bodies = [r.json() for r in replies]
        assert sorted(b["version"] for b in bodies) == list(range(2, 102))
        for n, body in enumerate(bodies):
            # Each reply shows its own event applied on top of exactly version - 1 others.
            assert len(body["items"]) == body["version"]
            assert body["items"][-1] == pizza(n)
        entries = await history(http, order_id)
        assert [e["version"] for e in entries] == list(range(1, 102))
        current = await view(http, order_id)
        assert current["version"] == 101
        assert len(current["items"]) == 101
        # Items are in the journal's order: the turns really ran one after another.
        assert current["items"] == [e["data"]["pizza"] for e in entries]
        by_version = {b["version"]: b for b in bodies}
        for entry in entries[1:]:
            assert by_version[entry["version"]]["items"] == current["items"][: entry["version"]]


@BOTH_STORES
async def test_rule2_concurrent_creates_each_get_their_own_order(server: ServerProcess) -> None:
    """Rule 2 (turn-based; different orders run concurrently): 200 concurrent creates give
    200 distinct orders, each at version 1, all listed."""
    async with http_client(server.url) as http:
        replies = await asyncio.gather(
            *(http.post("/orders", json={"pizza": pizza(n)}) for n in range(200))
        )

        assert [r.status_code for r in replies] == [201] * 200, [r.text for r in replies][:3]
        ids = [r.json()["id"] for r in replies]
        assert len(set(ids)) == 200
        for n, reply in enumerate(replies):
            assert reply.json()["version"] == 1
            assert reply.json()["items"] == [pizza(n)]
        views = await asyncio.gather(*(view(http, order_id) for order_id in ids))
        assert [v["version"] for v in views] == [1] * 200
        listed = (await http.get("/orders", params={"limit": "500"})).json()
        assert sorted(o["id"] for o in listed["orders"]) == sorted(ids)
        assert listed["nextCursor"] is None


# -- Rule 3: output gate --------------------------------------------------------------------


@BOTH_STORES
async def test_rule3_replies_and_broadcasts_only_show_committed_versions(
    server: ServerProcess,
) -> None:
    """Rule 3 (output gate): every version an HTTP reply or a WebSocket message shows is
    already in the journal when it arrives, and both show the same committed view.

    Which of the two reaches the client first is not defined; the contract is that neither
    leaves before the commit, so a history read right after either one contains it.
    """
    async with http_client(server.url) as http, http_client(server.url) as reader:
        order_id = (await create_order(http))["id"]
        seen: dict[int, JsonObject] = {}
        async with connect(f"{server.ws_url}/orders/{order_id}/ws") as ws:
            first = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert first["version"] == 1 and first["event"] is None

            async def watch() -> None:
                while len(seen) < 30:
                    message = json.loads(await ws.recv())
                    committed = {e["version"] for e in await history(reader, order_id)}
                    assert message["version"] in committed, (message["version"], committed)
                    seen[message["version"]] = message

            async def one(n: int) -> JsonObject:
                reply = await send(http, order_id, add(pizza(n)))
                assert reply.status_code == 200, reply.text
                body: JsonObject = reply.json()
                committed = {e["version"] for e in await history(reader, order_id)}
                assert body["version"] in committed, (body["version"], committed)
                return body

            watcher = asyncio.create_task(asyncio.wait_for(watch(), 30))
            bodies = await asyncio.gather(*(one(n) for n in range(30)))
            await watcher

    assert list(seen) == list(range(2, 32)), "broadcasts arrive in version order, no gap"
    for body in bodies:
        message = seen[body["version"]]
        assert message["view"] == body
        assert message["event"]["version"] == body["version"]
        assert message["event"]["type"] == "ADD_PIZZA"


@BOTH_STORES
async def test_rule3_a_reply_is_readable_at_once_under_load(server: ServerProcess) -> None:
    """Rule 3 (output gate) under load: 40 clients each send events to their own order and
    read the history right after every reply; the replied version is always there, even
    while many other reads are running."""
    async with http_client(server.url) as http:
        created = await asyncio.gather(
            *(http.post("/orders", json={"pizza": pizza(n)}) for n in range(40))
        )
        ids = [r.json()["id"] for r in created]
        unseen: list[tuple[str, int, list[int]]] = []

        async def client_loop(order_id: str) -> None:
            for n in range(5):
                reply = await send(http, order_id, add(pizza(n)))
                assert reply.status_code == 200, reply.text
                version = reply.json()["version"]
                versions = [e["version"] for e in await history(http, order_id)]
                if version not in versions:
                    unseen.append((order_id, version, versions))

        await asyncio.gather(*(client_loop(order_id) for order_id in ids))
        assert not unseen, f"{len(unseen)} replied versions missing from the history: {unseen[:3]}"


@BOTH_STORES
async def test_rule3_whatever_left_the_server_survives_sigkill(
    server_factory: ServerFactory, store_args: tuple[str, ...]
) -> None:
    """Rule 3 (output gate), checked with a crash: every version that reached a client,
    by HTTP reply or WebSocket broadcast, before a SIGKILL is in the journal afterwards
    with the same event id. Nothing is shown that a crash can take back."""
    server = server_factory(*store_args)
    acked: dict[int, str] = {}  # version -> Idempotency-Key of the 200 reply
    broadcast: dict[int, str] = {}  # version -> eventId seen on the WebSocket
    async with http_client(server.url) as http:
        order_id = (await create_order(http))["id"]
        async with connect(f"{server.ws_url}/orders/{order_id}/ws") as ws:
            await asyncio.wait_for(ws.recv(), 10)

            async def watch() -> None:
                try:
                    while True:
                        message = json.loads(await ws.recv())
                        broadcast[message["version"]] = message["event"]["eventId"]
                except ConnectionClosed:
                    return

            async def fire() -> None:
                while True:
                    key = str(uuid.uuid4())
                    try:
                        reply = await send(http, order_id, add(pizza(len(acked))), key=key)
                    except httpx.HTTPError:
                        return
                    if reply.status_code == 200:
                        acked[reply.json()["version"]] = key

            watcher = asyncio.create_task(watch())
            firing = [asyncio.create_task(fire()) for _ in range(8)]

            async def enough() -> bool:
                return len(acked) >= 60 and len(broadcast) >= 30

            await eventually(enough, within=30, what="events acknowledged before the kill")
            server.kill()
            await asyncio.wait_for(asyncio.gather(*firing, watcher), 30)

    server.restart()
    async with http_client(server.url) as http:
        recorded = {e["version"]: e["eventId"] for e in await history(http, order_id)}
    assert list(recorded) == list(range(1, len(recorded) + 1))
    lost_replies = {v: k for v, k in acked.items() if recorded.get(v) != k}
    lost_broadcasts = {v: k for v, k in broadcast.items() if recorded.get(v) != k}
    assert not lost_replies, f"acknowledged but not in the journal: {lost_replies}"
    assert not lost_broadcasts, f"broadcast but not in the journal: {lost_broadcasts}"


# -- Rule 4: all or nothing -----------------------------------------------------------------


async def test_rule4_a_refused_event_leaves_no_trace(client: httpx.AsyncClient) -> None:
    """Rule 4 (all or nothing): an event refused by an action (409) or by its data (422)
    changes neither the view nor the journal, and the next good event gets the next
    version."""
    order_id = (await create_order(client, HAWAII))["id"]
    assert (await send(client, order_id, add(MARGHERITA))).json()["version"] == 2
    before_view = await view(client, order_id)
    before_history = await history(client, order_id)

    refusals = [
        (remove({"name": "funghi", "size": "XL"}), 409),
        ({"type": "ADD_PIZZA", "data": {"pizza": "hawaii"}}, 422),
        ({"type": "ADD_PIZZA", "data": {}}, 422),
        ({"type": "ADD_PIZZA", "data": {"pizza": ["hawaii"]}}, 422),
        ({"type": "REMOVE_PIZZA", "data": {"pizza": 7}}, 422),
        ({"type": "BAKE_IT_NOW", "data": {}}, 422),
    ]
    for event, status in refusals:
        reply = await send(client, order_id, event)
        assert reply.status_code == status, (event, reply.status_code, reply.text)
        assert reply.headers["content-type"].startswith("application/problem+json")
        assert await view(client, order_id) == before_view, event
        assert await history(client, order_id) == before_history, event

    good = await send(client, order_id, remove(HAWAII))
    assert good.status_code == 200, good.text
    assert good.json()["version"] == 3
    assert good.json()["items"] == [MARGHERITA]
    entries = await history(client, order_id)
    assert [e["version"] for e in entries] == [1, 2, 3]
    assert entries[:2] == before_history


async def test_rule4_an_event_not_allowed_in_the_state_leaves_no_trace(
    client: httpx.AsyncClient,
) -> None:
    """Rule 4 (all or nothing): ADD_PIZZA after the order is done is refused with 409
    listing what is allowed, and nothing about the order changes."""
    order_id = (await create_order(client, HAWAII))["id"]
    assert (await send(client, order_id, CONFIRM)).status_code == 200
    before_view = await wait_for_state(client, order_id, DONE)
    before_history = await history(client, order_id)

    reply = await send(client, order_id, add(MARGHERITA))

    assert reply.status_code == 409, reply.text
    assert "allowed" in reply.json()
    assert await view(client, order_id) == before_view
    assert await history(client, order_id) == before_history


async def test_rule4_refusals_among_concurrent_events_take_no_version(
    client: httpx.AsyncClient,
) -> None:
    """Rule 4 (all or nothing) under concurrency: 50 refused REMOVE_PIZZA interleaved
    with 50 good ADD_PIZZA; the good ones get versions 2..51 and nothing else is stored."""
    order_id = (await create_order(client, HAWAII))["id"]
    events = []
    for n in range(50):
        events.append(add(pizza(n)))
        events.append(remove({"name": f"absent-{n}"}))

    replies = await asyncio.gather(*(send(client, order_id, event) for event in events))

    good = [r for r in replies if r.status_code == 200]
    refused = [r for r in replies if r.status_code == 409]
    assert len(good) == 50 and len(refused) == 50, [r.status_code for r in replies]
    assert sorted(r.json()["version"] for r in good) == list(range(2, 52))
    entries = await history(client, order_id)
    assert [e["version"] for e in entries] == list(range(1, 52))
    assert types_of(entries) == {"ADD_PIZZA": 51}
    assert len((await view(client, order_id))["items"]) == 51


# -- Rule 5: idempotent ---------------------------------------------------------------------


@BOTH_STORES
async def test_rule5_a_repeated_key_gets_the_recorded_answer(client: httpx.AsyncClient) -> None:
    """Rule 5 (idempotent): a repeated Idempotency-Key, on create and on an event, is
    answered with the first status and body, even after the order moved on, and is
    applied once."""
    create_key, event_key = str(uuid.uuid4()), str(uuid.uuid4())
    body = {"pizza": HAWAII}
    first = await client.post("/orders", json=body, headers={"Idempotency-Key": create_key})
    again = await client.post("/orders", json=body, headers={"Idempotency-Key": create_key})
    assert first.status_code == again.status_code == 201
    assert again.content == first.content
    assert again.headers["location"] == first.headers["location"]
    order_id = first.json()["id"]

    applied = await send(client, order_id, add(MARGHERITA), key=event_key)
    repeated = await send(client, order_id, add(MARGHERITA), key=event_key)
    assert applied.status_code == repeated.status_code == 200
    assert repeated.content == applied.content
    assert (await send(client, order_id, add(pizza(1)))).json()["version"] == 3
    late = await send(client, order_id, add(MARGHERITA), key=event_key)
    assert late.status_code == 200
    assert late.content == applied.content, "the recorded answer, not the current view"

    entries = await history(client, order_id)
    assert [e["version"] for e in entries] == [1, 2, 3]
    assert [e["eventId"] for e in entries[:2]] == [create_key, event_key]
    listed = (await client.get("/orders")).json()["orders"]
    assert [o["id"] for o in listed] == [order_id]


@BOTH_STORES
async def test_rule5_concurrent_repeats_apply_once(client: httpx.AsyncClient) -> None:
    """Rule 5 (idempotent): 20 concurrent requests with one key, for a create and for an
    event, all get the same answer and apply once."""
    create_key, event_key = str(uuid.uuid4()), str(uuid.uuid4())
    creates = await asyncio.gather(
        *(
            client.post("/orders", json={"pizza": HAWAII}, headers={"Idempotency-Key": create_key})
            for _ in range(20)
        )
    )
    assert {r.status_code for r in creates} == {201}, [r.text for r in creates][:3]
    assert len({r.content for r in creates}) == 1
    order_id = creates[0].json()["id"]

    events = await asyncio.gather(
        *(send(client, order_id, add(MARGHERITA), key=event_key) for _ in range(20))
    )
    assert {r.status_code for r in events} == {200}, [r.text for r in events][:3]
    assert len({r.content for r in events}) == 1
    entries = await history(client, order_id)
    assert [(e["version"], e["eventId"]) for e in entries] == [(1, create_key), (2, event_key)]
    listed = (await client.get("/orders")).json()["orders"]
    assert [o["id"] for o in listed] == [order_id]


@BOTH_STORES
async def test_rule5_repeats_after_sigkill_are_not_applied_again(
    server_factory: ServerFactory, store_args: tuple[str, ...]
) -> None:
    """Rule 5 (idempotent) across a crash: after SIGKILL and restart, repeating a create
    and an event with their keys returns the recorded answers and applies nothing."""
    server = server_factory(*store_args)
    create_key, event_key = str(uuid.uuid4()), str(uuid.uuid4())
    async with http_client(server.url) as http:
        created = await http.post(
            "/orders", json={"pizza": HAWAII}, headers={"Idempotency-Key": create_key}
        )
        assert created.status_code == 201, created.text
        order_id = created.json()["id"]
        applied = await send(http, order_id, add(MARGHERITA), key=event_key)
        assert applied.status_code == 200, applied.text
    server.kill()
    server.restart()

    async with http_client(server.url) as http:
        created_again = await http.post(
            "/orders", json={"pizza": HAWAII}, headers={"Idempotency-Key": create_key}
        )
        applied_again = await send(http, order_id, add(MARGHERITA), key=event_key)
        assert (created_again.status_code, created_again.content) == (201, created.content)
        assert (applied_again.status_code, applied_again.content) == (200, applied.content)
        entries = await history(http, order_id)
        assert [(e["version"], e["eventId"]) for e in entries] == [(1, create_key), (2, event_key)]
        listed = (await http.get("/orders")).json()["orders"]
        assert [o["id"] for o in listed] == [order_id]
        assert (await view(http, order_id))["items"] == [HAWAII, MARGHERITA]


# -- Rule 6: passivation --------------------------------------------------------------------


@BOTH_STORES
async def test_rule6_many_orders_through_few_actors_each_cooked_once(
    server_factory: ServerFactory, store_args: tuple[str, ...]
) -> None:
    """Rule 6 (passivation): with at most 10 actors in memory, 200 orders all run to done;
    each pizza is made once and delivered once, and no more than 10 actors stay live."""
    server = server_factory(*store_args, "--max-actors", "10")
    async with http_client(server.url) as http:
        created = await asyncio.gather(
            *(http.post("/orders", json={"pizza": pizza(n)}) for n in range(200))
        )
        assert {r.status_code for r in created} == {201}, [r.text for r in created][:3]
        ids = [r.json()["id"] for r in created]
        confirmed = await asyncio.gather(*(send(http, order_id, CONFIRM) for order_id in ids))
        assert {r.status_code for r in confirmed} == {200}, [r.text for r in confirmed][:3]

        await wait_all_in_state(http, ids, DONE, within=60)
        await wait_quiet(http, server.db)

        assert await metric(http, LIVE_ACTORS) <= 10
        assert await metric(http, PASSIVATIONS) >= 190
        assert_once_per_order(server.db, ids)
        await assert_flow_histories(http, ids)


@BOTH_STORES
async def test_rule6_reactivation_does_not_rerun_entry_actions(
    server_factory: ServerFactory, store_args: tuple[str, ...]
) -> None:
    """Rule 6 (passivation): an order waiting for the kitchen is passivated and
    reactivated; restoring it does not send MAKE_PIZZA again, neither on the refused event
    that reactivates it nor on the next applied turn."""
    server = server_factory(
        *store_args,
        "--kitchen-mode",
        "ignore",
        "--idle-seconds",
        "0.2",
        "--webhook-secret",
        WEBHOOK_SECRET,
    )
    async with http_client(server.url) as http:
        order_id = (await create_order(http, HAWAII))["id"]
        assert (await send(http, order_id, CONFIRM)).status_code == 200
        waiting = await wait_for_state(http, order_id, WAITING_FOR_KITCHEN)

        async def in_kitchen() -> bool:
            return len(ledger_rows(server.db, "kitchen")) >= 1

        await eventually(in_kitchen, within=10, what="the kitchen to take MAKE_PIZZA")
        passivated = await metric(http, PASSIVATIONS)
        await wait_passivated(http, at_least=passivated + 1)
        activations = await metric(http, ACTIVATIONS)

        refused = await send(http, order_id, add(MARGHERITA))
        assert refused.status_code == 409, refused.text
        assert await metric(http, ACTIVATIONS) == activations + 1
        assert await view(http, order_id) == waiting
        await wait_quiet(http, server.db)
        assert [r[1:] for r in ledger_rows(server.db, "kitchen")] == [(order_id, "MAKE_PIZZA")]

        # The kitchen never answers; stand in for it (over the signed webhook, as a service
        # does), so the restored actor applies a turn.
        ready = await send_service_event(http, order_id, "PIZZA_READY")
        assert ready.status_code == 200, ready.text
        await wait_for_state(http, order_id, DONE)
        await wait_quiet(http, server.db)
        assert [r[1:] for r in ledger_rows(server.db, "kitchen")] == [(order_id, "MAKE_PIZZA")]
        assert [r[1:] for r in ledger_rows(server.db, "delivery")] == [(order_id, "DELIVER_PIZZA")]
        assert types_of(await history(http, order_id))["CONFIRM_PIZZA"] == 1


@BOTH_STORES
async def test_rule6_reactivation_starts_from_the_latest_commit(
    server_factory: ServerFactory, store_args: tuple[str, ...]
) -> None:
    """Rule 6 (passivation: reactivated from its snapshot): with one actor in memory, 50
    clients each send 12 events to their own order, so nearly every event reactivates its
    order; each reactivation must start from the last committed snapshot, so every event
    lands on top of the one its client saw acknowledged just before."""
    server = server_factory(*store_args, "--max-actors", "1")
    rounds = 12
    async with http_client(server.url) as http:
        ids = [(await create_order(http, HAWAII))["id"] for _ in range(50)]
        wrong: list[tuple[str, int, int, str]] = []

        async def one_client(order_id: str) -> None:
            for n in range(1, rounds + 1):
                reply = await send(http, order_id, add(pizza(n)))
                if reply.status_code != 200 or reply.json()["version"] != n + 1:
                    wrong.append((order_id, n + 1, reply.status_code, reply.text))
                    return

        await asyncio.gather(*(one_client(order_id) for order_id in ids))
        assert not wrong, f"{len(wrong)} orders went wrong, e.g. {wrong[:3]}"
        for order_id in ids:
            current = await view(http, order_id)
            assert current["version"] == rounds + 1
            assert current["items"] == [HAWAII, *(pizza(n) for n in range(1, rounds + 1))]
        assert await metric(http, ACTIVATIONS) >= len(ids) * rounds
