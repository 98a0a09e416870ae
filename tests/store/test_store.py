"""The Store port's promises, run on every adapter: SQLite and PostgreSQL.

Every test runs on a real SQLite file in the test's temporary directory, and again on a
fresh database of the real PostgreSQL server (``tests/postgres.py``: skipped when it is
absent, failed when ``ORCHESTRATOR_TEST_POSTGRES=require``). Records are built by hand so
each test controls exactly the state paths, versions and outbox rows it needs. What only
one adapter does (SQLite's older file formats, its pragmas; PostgreSQL's shards and lost
connections) is tested in ``test_sqlite.py`` and ``test_postgres.py``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from orchestrator.charts import load_charts
from orchestrator.errors import InvalidInput, SchemaTooNew, Unavailable
from orchestrator.model import (
    Event,
    JournalEntry,
    OutboxMessage,
    Reply,
    Snapshot,
    Timer,
    TurnRecord,
    to_json,
)
from orchestrator.store import postgres as postgres_module
from orchestrator.store import sqlite as sqlite_module
from orchestrator.store.postgres import PostgresStore
from orchestrator.store.sqlite import SqliteStore
from orchestrator.turn import apply
from tests.postgres import fresh_database

AnyStore = SqliteStore | PostgresStore
# A store not yet opened, on the test's one database: ``make(on_batch=...)``.
MakeStore = Callable[..., AnyStore]

T0 = 1_700_000_000.0


def record(
    order_id: str,
    version: int = 1,
    *,
    state: str = "orderPizza",
    chart: str = "pizza",
    event_id: str | None = None,
    items: list[str] | None = None,
    outbox: int = 0,
    created_at: float = T0,
    fingerprint: str = "",
    created_by: str | None = None,
) -> TurnRecord:
    """A turn record for ``order_id`` at ``version``, with ``outbox`` command messages."""
    event_id = event_id if event_id is not None else f"{order_id}/e{version}"
    at = created_at + version
    context = {"status": f"at v{version}", "items": items if items is not None else []}
    snapshot = Snapshot(
        order_id=order_id,
        chart=chart,
        configuration=tuple(state.split(".")),
        state=state,
        context_json=to_json(context),
        next_events=("ADD_PIZZA", "CONFIRM_PIZZA"),
        version=version,
        created_at=created_at,
        updated_at=at,
    )
    entry = JournalEntry(
        order_id=order_id,
        version=version,
        event_id=event_id,
        type="ADD_PIZZA",
        data={"pizza": {"name": f"p{version}"}},
        at=at,
        state_before="" if version == 1 else "orderPizza",
        state_after=state,
        duration_ms=0.0 if version == 1 else 1000.0,
    )
    messages = tuple(
        OutboxMessage(
            id=f"{order_id}:{version}:{n}",
            order_id=order_id,
            type="MAKE_PIZZA",
            routing_key="command.MAKE_PIZZA",
            body=json.dumps({"n": n, "order": order_id}).encode(),
            invoke="sendOrderToKitchen" if n == 0 else None,
        )
        for n in range(outbox)
    )
    reply = Reply(
        status=201 if version == 1 else 200,
        body=snapshot.view_json(),
        order_id=order_id,
        fingerprint=fingerprint,
    )
    return TurnRecord(
        snapshot=snapshot, journal=entry, outbox=messages, reply=reply, created_by=created_by
    )


@pytest.fixture(params=["sqlite", "postgres"])
async def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[MakeStore]:
    """Stores of one adapter on one database; each call is a new store on the same data."""
    if request.param == "sqlite":
        yield lambda **options: SqliteStore(tmp_path / "orders.db", **options)
    else:
        async with fresh_database() as url:
            yield lambda **options: PostgresStore(url, **options)


@pytest.fixture
async def store(make_store: MakeStore) -> AsyncIterator[AnyStore]:
    """An open store on a fresh database, of each adapter in turn."""
    opened = make_store()
    await opened.open()
    yield opened
    await opened.close()


async def test_commit_then_load_round_trip(store: AnyStore) -> None:
    """load returns the committed snapshot exactly; an unknown order is None."""
    rec = record("o-1", items=["a"])
    await store.commit(rec)
    assert await store.load("o-1") == rec.snapshot
    assert await store.load("o-2") is None


async def test_later_commit_replaces_the_snapshot(store: AnyStore) -> None:
    """The store keeps the latest snapshot per order; created_at stays the first one."""
    await store.commit(record("o-1", 1))
    second = record("o-1", 2, state="bakePizza.sendingOrderToKitchen")
    await store.commit(second)
    loaded = await store.load("o-1")
    assert loaded == second.snapshot
    assert loaded is not None and loaded.configuration == ("bakePizza", "sendingOrderToKitchen")


async def test_journal_is_oldest_first_and_honours_after(store: AnyStore) -> None:
    """journal() lists entries with version > after in version order; replay() gives
    each with the view its turn answered."""
    records = [record("o-1", v) for v in (1, 2, 3)]
    for rec in records:
        await store.commit(rec)
    await store.commit(record("o-2", 1))
    assert await store.journal("o-1") == [rec.journal for rec in records]
    assert [e.version for e in await store.journal("o-1", after=1)] == [2, 3]
    assert [e.version for e in await store.journal("o-1", after=1, limit=1)] == [2]
    assert await store.journal("o-1", after=3) == []
    assert await store.journal("nobody") == []
    replayed = [r async for r in store.replay("o-1")]
    assert [r.entry for r in replayed] == [rec.journal for rec in records]
    assert [r.view for r in replayed] == [rec.reply.body for rec in records]
    assert [r.entry.version for r in [r async for r in store.replay("o-1", after=1)]] == [2, 3]
    assert [r.entry.version for r in [r async for r in store.replay("o-1", until=2)]] == [1, 2]
    assert [r async for r in store.replay("o-1", after=3)] == []
    assert [r async for r in store.replay("nobody")] == []


async def test_reply_for_returns_the_recorded_reply(store: AnyStore) -> None:
    """A repeated event id is answered from the journal: same status, body, fingerprint."""
    first = record("o-1", 1, event_id="key-1", fingerprint="f1")
    second = record("o-1", 2, event_id="key-2", fingerprint="f2")
    await store.commit(first)
    await store.commit(second)
    assert await store.reply_for("o-1", "key-1") == first.reply
    assert await store.reply_for("o-1", "key-2") == second.reply
    assert await store.reply_for("o-1", "key-3") is None
    assert await store.reply_for("o-2", "key-1") is None


async def test_order_created_by_finds_the_creating_event(store: AnyStore) -> None:
    """Only the keyed event that created an order maps back to it."""
    await store.commit(record("o-1", 1, event_id="create-1", created_by="create-1"))
    await store.commit(record("o-1", 2, event_id="later-1"))
    await store.commit(record("o-2", 1, event_id="create-2"))
    assert await store.order_created_by("create-1") == "o-1"
    assert await store.order_created_by("later-1") is None
    assert await store.order_created_by("create-2") is None  # no key: nothing to find
    assert await store.order_created_by("unknown") is None


async def test_event_ids_are_per_order(store: AnyStore) -> None:
    """The same event id may be applied to two different orders."""
    await store.commit(record("o-1", 1, event_id="same"))
    await store.commit(record("o-2", 1, event_id="other"))
    await store.commit(record("o-2", 2, event_id="same"))
    reply = await store.reply_for("o-2", "same")
    assert reply is not None and reply.status == 200


async def test_list_orders_newest_first(store: AnyStore) -> None:
    """Orders are listed newest created first; a later turn does not move an order."""
    for n in range(3):
        await store.commit(record(f"o-{n}"))
    await store.commit(record("o-0", 2))
    page = await store.list_orders(state=None, chart=None, cursor=None, limit=10)
    assert [s.order_id for s in page.orders] == ["o-2", "o-1", "o-0"]
    assert page.orders[2].version == 2
    assert page.cursor is None


async def test_list_orders_filters_by_state_prefix(store: AnyStore) -> None:
    """``state`` matches as a prefix of the state path."""
    await store.commit(record("a", state="orderPizza"))
    await store.commit(record("b", state="bakePizza.sendingOrderToKitchen"))
    await store.commit(record("c", state="bakePizza.waitingForPizzaToBeBaked"))
    await store.commit(record("d", state="done"))

    async def ids(state: str) -> list[str]:
        page = await store.list_orders(state=state, chart=None, cursor=None, limit=10)
        return [s.order_id for s in page.orders]

    assert await ids("bakePizza") == ["c", "b"]
    assert await ids("bakePizza.waiting") == ["c"]
    assert await ids("done") == ["d"]
    assert await ids("deliverPizza") == []


async def test_list_orders_prefix_wildcards_are_literal(store: AnyStore) -> None:
    """'%' and '_' in a state prefix match themselves, not any text as in SQL LIKE."""
    await store.commit(record("pct", state="100%done"))
    await store.commit(record("x", state="100xdone"))
    await store.commit(record("under", state="a_b"))
    await store.commit(record("axb", state="axb"))

    async def ids(state: str) -> list[str]:
        page = await store.list_orders(state=state, chart=None, cursor=None, limit=10)
        return sorted(s.order_id for s in page.orders)

    assert await ids("100%") == ["pct"]
    assert await ids("%") == []
    assert await ids("a_") == ["under"]
    assert await ids("_") == []


async def test_list_orders_filters_by_chart(store: AnyStore) -> None:
    """``chart`` keeps only orders of that chart."""
    await store.commit(record("p", chart="pizza"))
    await store.commit(record("t", chart="taco"))
    page = await store.list_orders(state=None, chart="taco", cursor=None, limit=10)
    assert [s.order_id for s in page.orders] == ["t"]
    page = await store.list_orders(state="orderPizza", chart="pizza", cursor=None, limit=10)
    assert [s.order_id for s in page.orders] == ["p"]


async def test_list_orders_cursor_pagination(store: AnyStore) -> None:
    """Following the cursor visits every order once, newest first, and ends with None."""
    for n in range(5):
        await store.commit(record(f"o-{n}"))
    seen: list[list[str]] = []
    cursor: str | None = None
    while True:
        page = await store.list_orders(state=None, chart=None, cursor=cursor, limit=2)
        seen.append([s.order_id for s in page.orders])
        cursor = page.cursor
        if cursor is None:
            break
    assert seen == [["o-4", "o-3"], ["o-2", "o-1"], ["o-0"]]


async def test_list_orders_exact_page_has_no_cursor(store: AnyStore) -> None:
    """A last page that is exactly full does not promise another page."""
    for n in range(2):
        await store.commit(record(f"o-{n}"))
    page = await store.list_orders(state=None, chart=None, cursor=None, limit=2)
    assert len(page.orders) == 2
    assert page.cursor is None


async def test_list_orders_rejects_a_forged_cursor(store: AnyStore) -> None:
    """A cursor that the store did not hand out is InvalidInput naming ``cursor``."""
    with pytest.raises(InvalidInput) as info:
        await store.list_orders(state=None, chart=None, cursor="x'; DROP", limit=2)
    assert info.value.field == "cursor"


async def test_group_commit_batches_concurrent_turns(make_store: MakeStore) -> None:
    """Turns of different orders that arrive together share transactions (group commit):
    200 concurrent commits all land, in fewer than 200 batches, and every one is counted."""
    batches: list[int] = []
    store = make_store(on_batch=batches.append)
    await store.open()
    try:
        records = [record(f"o-{n}", outbox=1) for n in range(200)]
        await asyncio.gather(*(store.commit(rec) for rec in records))
        assert sum(batches) == 200
        assert len(batches) < 200
        for rec in records:
            assert await store.load(rec.snapshot.order_id) == rec.snapshot
        assert await store.outbox_depth() == 200
        page = await store.list_orders(state=None, chart=None, cursor=None, limit=500)
        assert len(page.orders) == 200
    finally:
        await store.close()


async def test_one_bad_turn_does_not_sink_its_batch(make_store: MakeStore) -> None:
    """All or nothing per turn inside a group commit (rule 4): a turn that violates a
    constraint (a second journal entry at the same version) raises Unavailable and leaves
    nothing, while every valid turn committed with it lands."""
    batches: list[int] = []
    store = make_store(on_batch=batches.append)
    await store.open()
    try:
        original = record("bad", 1, items=["kept"])
        await store.commit(original)
        duplicate = record("bad", 1, event_id="another", items=["lost"], outbox=2)
        valid = [record(f"ok-{n}", outbox=1) for n in range(10)]
        results = await asyncio.gather(
            *(store.commit(rec) for rec in [*valid[:5], duplicate, *valid[5:]]),
            return_exceptions=True,
        )
        assert isinstance(results[5], Unavailable)
        assert [r for n, r in enumerate(results) if n != 5] == [None] * 10

        for rec in valid:
            assert await store.load(rec.snapshot.order_id) == rec.snapshot
        assert await store.load("bad") == original.snapshot
        assert await store.journal("bad") == [original.journal]
        assert await store.reply_for("bad", "another") is None
        unsent_ids = {m.id for m in await store.unsent()}
        assert unsent_ids == {m.id for rec in valid for m in rec.outbox}
        assert sum(batches) == 11  # the original plus the ten valid turns
    finally:
        await store.close()


async def test_a_record_that_is_not_json_fails_alone(store: AnyStore) -> None:
    """A record the store cannot serialize (event data holding NaN, which no ingress lets
    in) fails its own turn with Unavailable; the turns around it and later ones commit."""
    bad = record("nan", 1)
    bad = dataclasses.replace(
        bad, journal=dataclasses.replace(bad.journal, data={"n": float("nan")})
    )
    good = [record(f"ok-{n}") for n in range(3)]
    # A bounded wait: before the fix the commit loop died and these waited forever.
    results = await asyncio.wait_for(
        asyncio.gather(
            *(store.commit(rec) for rec in [good[0], bad, *good[1:]]), return_exceptions=True
        ),
        timeout=10,
    )
    assert isinstance(results[1], Unavailable)
    assert [r for n, r in enumerate(results) if n != 1] == [None] * 3
    assert await store.load("nan") is None
    await store.commit(record("later", 1))
    assert await store.load("later") is not None


async def test_store_keeps_working_after_a_failed_turn(store: AnyStore) -> None:
    """A refused commit does not wedge the committer: the next turn commits normally."""
    await store.commit(record("o-1", 1))
    with pytest.raises(Unavailable):
        await store.commit(record("o-1", 1, event_id="again"))
    nxt = record("o-1", 2)
    await store.commit(nxt)
    assert await store.load("o-1") == nxt.snapshot


async def test_unsent_lists_outbox_oldest_first(store: AnyStore) -> None:
    """Committed outbox messages are unsent, in commit order, exactly as written."""
    first = record("o-1", 1, outbox=2)
    second = record("o-2", 1, outbox=1)
    await store.commit(first)
    await store.commit(second)
    assert await store.unsent() == [*first.outbox, *second.outbox]
    assert await store.outbox_depth() == 3


async def test_mark_sent_is_applied_by_the_next_transaction(store: AnyStore) -> None:
    """mark_sent returns at once; the delete rides the next transaction, so once a later
    commit returns the confirmed message is gone and the others remain."""
    first = record("o-1", 1, outbox=2)
    await store.commit(first)
    sent, kept = first.outbox
    store.mark_sent([sent])
    await store.commit(record("o-2", 1))
    assert await store.unsent() == [kept]
    assert await store.outbox_depth() == 1


async def test_mark_sent_outlives_a_turn_that_fails_alone(store: AnyStore) -> None:
    """A confirmation that rode a failed one-turn transaction is applied by the next one,
    not lost (which left the message to be published again after a restart)."""
    first = record("o-1", 1, outbox=2)
    await store.commit(first)
    sent, kept = first.outbox
    store.mark_sent([sent])
    with pytest.raises(Unavailable):
        await store.commit(record("o-1", 1, event_id="again"))  # its version is taken
    await store.commit(record("o-2", 1))
    assert await store.unsent() == [kept]


async def test_mark_sent_is_applied_without_a_further_commit(store: AnyStore) -> None:
    """With no turn to ride on, the confirmed messages are still forgotten soon after."""
    first = record("o-1", 1, outbox=3)
    await store.commit(first)
    store.mark_sent(first.outbox[:2])
    for _ in range(500):
        if await store.outbox_depth() == 1:
            break
        await asyncio.sleep(0.01)
    assert await store.unsent() == [first.outbox[2]]


async def test_data_survives_close_and_reopen(make_store: MakeStore) -> None:
    """Everything committed is on disk: a new store on the same file sees the snapshot,
    journal, replies, creators and unsent outbox."""
    first = record("o-1", 1, event_id="create", created_by="create", outbox=1, fingerprint="fp")
    second = record("o-1", 2, state="bakePizza.sendingOrderToKitchen", outbox=1)
    store = make_store()
    await store.open()
    await store.commit(first)
    await store.commit(second)
    store.mark_sent([first.outbox[0]])
    await store.close()

    reopened = make_store()
    await reopened.open()
    try:
        assert await reopened.load("o-1") == second.snapshot
        assert await reopened.journal("o-1") == [first.journal, second.journal]
        assert await reopened.reply_for("o-1", "create") == first.reply
        assert await reopened.order_created_by("create") == "o-1"
        assert await reopened.unsent() == list(second.outbox)
        page = await reopened.list_orders(state="bakePizza", chart=None, cursor=None, limit=5)
        assert [s.order_id for s in page.orders] == ["o-1"]
    finally:
        await reopened.close()


async def test_commit_after_close_is_unavailable(make_store: MakeStore) -> None:
    """A closing store refuses new turns with the retryable Unavailable."""
    store = make_store()
    await store.open()
    await store.close()
    with pytest.raises(Unavailable) as info:
        await store.commit(record("o-1"))
    assert info.value.retryable


async def test_invocations_round_trip_and_list(store: AnyStore) -> None:
    """Each invoke's current message is stored with the snapshot and read back in order."""
    base = record("o-1", 2, state="bakePizza.sendingOrderToKitchen")
    snapshot = dataclasses.replace(
        base.snapshot,
        invocations=(("sendOrderToKitchen", "o-1:5:0"), ("sendOrderToDelivery", "o-1:9:0")),
    )
    await store.commit(dataclasses.replace(base, snapshot=snapshot))
    assert await store.load("o-1") == snapshot
    page = await store.list_orders(state=None, chart=None, cursor=None, limit=5)
    assert page.orders == [snapshot]


async def test_timers_round_trip_with_their_trace(store: AnyStore) -> None:
    """A timer comes back as it was set, with the traceparent of the turn that set it
    (None for one set outside any trace)."""
    traced = Timer("o-1/t1", "o-1", T0 + 5, "after.s.t1", {"n": 1}, f"00-{'a' * 32}-{'b' * 16}-01")
    untraced = Timer("o-1/t2", "o-1", T0 + 6, "after.s.t2", {"n": 2})
    await store.commit(dataclasses.replace(record("o-1"), timers_set=(traced, untraced)))
    assert await store.timer("o-1/t1") == traced
    assert await store.timer("o-1/t2") == untraced
    assert await store.due_timers(T0 + 10, 10) == [traced, untraced]


# -- the journal keeps changes, not views ------------------------------------------------


def pizza_turns(charts_dir: Path, count: int) -> list[TurnRecord]:
    """``count`` real turns of one pizza order (the pizza chart, applied by ``turn``):
    pizzas with notes of different lengths added, every fifth event removing the one
    before, and a CONFIRM_PIZZA last, so that the journal holds changes and, once they
    outgrow the context, whole contexts."""
    chart = load_charts(charts_dir)["pizza"]
    first = {"name": "first"}
    records = [apply(chart.start("o-1"), None, Event("ADD_PIZZA", {"pizza": first}, "e-1"), T0)]
    pizzas = [first]
    for n in range(2, count):
        previous = records[-1].snapshot
        machine = chart.restore("o-1", previous.configuration, previous.context)
        if n % 5 == 0:
            event = Event("REMOVE_PIZZA", {"pizza": pizzas.pop()}, f"e-{n}")
        else:
            pizzas.append({"name": f"p{n}", "note": "x" * (n % 7) * 50})
            event = Event("ADD_PIZZA", {"pizza": pizzas[-1]}, f"e-{n}")
        records.append(apply(machine, previous, event, T0 + n))
    previous = records[-1].snapshot
    machine = chart.restore("o-1", previous.configuration, previous.context)
    records.append(apply(machine, previous, Event("CONFIRM_PIZZA", {}, "confirm"), T0 + count))
    return records


async def query(store: AnyStore, sql: str) -> list[Any]:
    """Rows of ``sql`` run straight on the store's database, past the adapter."""
    if isinstance(store, SqliteStore):
        conn = sqlite3.connect(store.path)
        try:
            rows = conn.execute(sql).fetchall()
            conn.commit()
            return rows
        finally:
            conn.close()
    pg = await asyncpg.connect(store.url)
    try:
        return list(await pg.fetch(sql))
    finally:
        await pg.close()


async def journal_rows_by_kind(store: AnyStore) -> tuple[int, int]:
    """(rows keeping the whole context, rows keeping a change) of the journal."""
    rows = await query(
        store,
        "SELECT sum(CASE WHEN context_head = 0 AND context_tail = 0 THEN 1 ELSE 0 END),"
        " sum(CASE WHEN context_head > 0 THEN 1 ELSE 0 END) FROM journal",
    )
    whole, changes = rows[0]
    return int(whole), int(changes)


async def test_views_are_rebuilt_byte_for_byte_from_changes(
    store: AnyStore, charts_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The journal keeps what each turn changed (and the whole context now and then);
    every replayed view and every repeat's answer is still the turn's reply, byte for
    byte, from any starting version and across pages (made small here to cut the replay
    at many places)."""
    for module in (sqlite_module, postgres_module):
        monkeypatch.setattr(module, "REPLAY_PAGE_ROWS", 7)
        monkeypatch.setattr(module, "REPLAY_PAGE_BYTES", 1500)
    records = pizza_turns(charts_dir, 80)
    for rec in records:
        await store.commit(rec)
    whole, changes = await journal_rows_by_kind(store)
    assert whole >= 3 and changes >= 60, (whole, changes)
    replies = [rec.reply.body for rec in records]
    assert [r.view async for r in store.replay("o-1")] == replies
    assert [r.entry async for r in store.replay("o-1")] == [rec.journal for rec in records]
    for after in (1, 13, 42, 79):
        assert [r.view async for r in store.replay("o-1", after=after)] == replies[after:]
    for rec in records:
        assert await store.reply_for("o-1", rec.journal.event_id) == rec.reply


# -- the schema is versioned ---------------------------------------------------------------


async def test_a_new_database_records_its_schema_version(store: AnyStore) -> None:
    """Opening makes the schema and a schema_version row with the version the code knows."""
    module = sqlite_module if isinstance(store, SqliteStore) else postgres_module
    rows = await query(store, "SELECT value FROM meta WHERE key = 'schema_version'")
    assert [tuple(row) for row in rows] == [(module.SCHEMA_VERSION,)]


async def test_a_newer_schema_is_refused_untouched(make_store: MakeStore) -> None:
    """A database a newer release wrote (its schema_version above the code's) is refused at
    open with SchemaTooNew naming both versions, and nothing in it is changed."""
    store = make_store()
    await store.open()
    await store.commit(record("o-1"))
    await store.close()
    await query(store, "UPDATE meta SET value = 99 WHERE key = 'schema_version'")
    newer = make_store()
    with pytest.raises(SchemaTooNew) as info:
        await newer.open()
    module = sqlite_module if isinstance(store, SqliteStore) else postgres_module
    assert (info.value.found, info.value.known) == (99, module.SCHEMA_VERSION)
    assert "schema version 99" in info.value.detail
    rows = await query(store, "SELECT value FROM meta WHERE key = 'schema_version'")
    assert [tuple(row) for row in rows] == [(99,)]
    assert [tuple(row) for row in await query(store, "SELECT id FROM orders")] == [("o-1",)]
