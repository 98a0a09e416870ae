"""POST /events: CloudEvents signed with Standard Webhooks move orders; nothing else does.

docs/api.md, the ``POST /events`` row: a CloudEvent in the structured or binary binding;
2xx, 401 for a bad or missing signature, 4xx for a bad event. With a secret
the signature covers the id, timestamp and the whole event (structured binding only), so
no header or body mutation of a signed request is applied (issue 16, item 1).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable

import httpx
import pytest

from orchestrator.errors import InvalidInput
from orchestrator.signatures import parse_keys, sign
from tests.conftest import ServerFactory, ServerProcess
from tests.helpers import (
    CONFIRM,
    WAITING_FOR_KITCHEN,
    WEBHOOK_SECRET,
    JsonObject,
    create_order,
    history,
    send,
    signed_headers,
    view,
    wait_for_state,
)

OTHER_SECRET = "whsec_" + "QUJD" * 11  # 33 bytes of another key


@pytest.fixture
def signed_server(server_factory: ServerFactory) -> ServerProcess:
    # The kitchen never answers, so only the webhook moves the order on.
    return server_factory("--webhook-secret", WEBHOOK_SECRET, "--kitchen-mode", "ignore")


async def waiting_order(http: httpx.AsyncClient) -> str:
    order_id: str = (await create_order(http))["id"]
    assert (await send(http, order_id, CONFIRM)).status_code == 200
    await wait_for_state(http, order_id, WAITING_FOR_KITCHEN, within=10.0)
    return order_id


def structured(
    order_id: str, event_id: str | None = None, event_type: str = "PIZZA_READY"
) -> bytes:
    return json.dumps(
        {
            "specversion": "1.0",
            "id": event_id or str(uuid.uuid4()),
            "type": event_type,
            "source": "/kitchen",
            "subject": order_id,
            "datacontenttype": "application/json",
            "data": {"oven": 3},
        }
    ).encode()


def signed(body: bytes, *, secret: str = WEBHOOK_SECRET, at: float | None = None) -> dict[str, str]:
    return signed_headers(body, json.loads(body)["id"], secret=secret, at=at)


async def unchanged(http: httpx.AsyncClient, order_id: str) -> tuple[JsonObject, list[JsonObject]]:
    return await view(http, order_id), await history(http, order_id)


async def test_a_signed_structured_event_moves_the_order(signed_server: ServerProcess) -> None:
    async with httpx.AsyncClient(base_url=signed_server.url) as http:
        order_id = await waiting_order(http)
        body = structured(order_id)
        response = await http.post("/events", content=body, headers=signed(body))
        assert response.status_code == 200, response.text
        assert response.json()["state"].startswith("deliverPizza")


async def test_any_of_several_secrets_signs(server_factory: ServerFactory) -> None:
    """Rotation: the server takes several secrets; a request signed with either is taken,
    and a sender may put several signatures in the header, one of them good."""
    server = server_factory(
        "--webhook-secret", f"{OTHER_SECRET}, {WEBHOOK_SECRET}", "--kitchen-mode", "ignore"
    )
    async with httpx.AsyncClient(base_url=server.url) as http:
        order_id = await waiting_order(http)
        body = structured(order_id)
        headers = signed(body, secret=OTHER_SECRET)
        headers["webhook-signature"] = "v1,bm90IGl0 " + headers["webhook-signature"]
        response = await http.post("/events", content=body, headers=headers)
        assert response.status_code == 200, response.text


async def test_a_replayed_event_id_is_answered_as_a_repeat(signed_server: ServerProcess) -> None:
    """The same signed request again, and the same id signed again later, get the first
    answer and apply nothing."""
    async with httpx.AsyncClient(base_url=signed_server.url) as http:
        order_id = await waiting_order(http)
        body = structured(order_id, event_id="ready-once")
        headers = signed(body, at=time.time() - 60)
        first = await http.post("/events", content=body, headers=headers)
        replayed = await http.post("/events", content=body, headers=headers)
        signed_again = await http.post("/events", content=body, headers=signed(body))
        assert first.status_code == replayed.status_code == signed_again.status_code == 200
        assert first.content == replayed.content == signed_again.content
        entries = await history(http, order_id)
        assert [e["type"] for e in entries].count("PIZZA_READY") == 1


Mutation = Callable[[bytes, dict[str, str], str], tuple[bytes, dict[str, str]]]


def _header(name: str, value: str | None) -> Mutation:
    def mutate(body: bytes, headers: dict[str, str], other: str) -> tuple[bytes, dict[str, str]]:
        changed = dict(headers)
        if value is None:
            del changed[name]
        else:
            changed[name] = value.replace("OTHER", other)
        return body, changed

    return mutate


def _body(old: bytes, new: bytes) -> Mutation:
    def mutate(body: bytes, headers: dict[str, str], other: str) -> tuple[bytes, dict[str, str]]:
        assert old in body
        return body.replace(old, new), headers

    return mutate


def _binary(**changes: str | None) -> Mutation:
    """The event sent in the binary binding instead, signed over its data as the body (a
    good signature of what the binary body is), with some ce-* headers then changed or
    removed: the attributes are outside the signature, so the binding is refused."""

    def mutate(body: bytes, headers: dict[str, str], other: str) -> tuple[bytes, dict[str, str]]:
        event = json.loads(body)
        data = json.dumps(event["data"]).encode()
        binary = signed_headers(data, event["id"]) | {"content-type": "application/json"}
        for name in ("specversion", "id", "type", "source", "subject"):
            binary[f"ce-{name}"] = event[name]
        for name, value in changes.items():
            if value is None:
                del binary[f"ce-{name}"]
            else:
                binary[f"ce-{name}"] = value.replace("OTHER", other)
        return data, binary

    return mutate


def _resigned(secret: str = WEBHOOK_SECRET, at: float | None = None) -> Mutation:
    def mutate(body: bytes, headers: dict[str, str], other: str) -> tuple[bytes, dict[str, str]]:
        return body, signed(body, secret=secret, at=at)

    return mutate


# Each mutation of a good signed request, and the status that refuses it.
MUTATIONS: dict[str, tuple[Mutation, int]] = {
    "signature removed": (_header("webhook-signature", None), 401),
    "webhook-id removed": (_header("webhook-id", None), 401),
    "timestamp removed": (_header("webhook-timestamp", None), 401),
    "webhook-id changed": (_header("webhook-id", "OTHER"), 401),
    "timestamp changed": (_header("webhook-timestamp", str(int(time.time()) - 1)), 401),
    "timestamp not a number": (_header("webhook-timestamp", "yesterday"), 401),
    "signature of another key": (_resigned(secret=OTHER_SECRET), 401),
    "stale": (_resigned(at=time.time() - 3600), 401),  # a captured request, replayed
    "future": (_resigned(at=time.time() + 3600), 401),
    "signature garbled": (_header("webhook-signature", "v1,AAAA"), 401),
    "body changed: data": (_body(b'"oven": 3', b'"oven": 4'), 401),
    "body changed: type": (_body(b'"PIZZA_READY"', b'"CANCEL"'), 401),
    "body changed: subject": (_body(b'"subject": "', b'"subject": "x'), 401),
    "body changed: id": (_body(b'"id": "', b'"id": "x'), 401),
    "body changed: source": (_body(b'"/kitchen"', b'"/elsewhere"'), 401),
    "content-type changed": (_header("content-type", "application/json"), 415),
    "content-type removed": (_header("content-type", None), 415),
    **{
        f"ce-{name} added": (_header(f"ce-{name}", value), 400)
        for name, value in (
            ("type", "CANCEL"),
            ("subject", "OTHER"),
            ("id", "fresh-id"),
            ("source", "/elsewhere"),
            ("specversion", "1.0"),
        )
    },
    "binary binding": (_binary(), 415),
    **{
        f"binary, ce-{name} changed": (_binary(**{name: value}), 415)
        for name, value in (
            ("type", "CANCEL"),
            ("subject", "OTHER"),
            ("id", "fresh-id"),
            ("source", "/elsewhere"),
        )
    },
    **{
        f"binary, ce-{name} removed": (_binary(**{name: None}), 415)
        for name in ("type", "subject", "id", "source", "specversion")
    },
}


@pytest.mark.parametrize("mutation", list(MUTATIONS))
async def test_a_mutated_signed_request_is_refused_and_changes_nothing(
    signed_server: ServerProcess, mutation: str
) -> None:
    """Every header and body mutation of a good signed request is refused, and neither the
    order nor another one it names changes; the request as signed is then applied."""
    mutate, status = MUTATIONS[mutation]
    async with httpx.AsyncClient(base_url=signed_server.url) as http:
        order_id = await waiting_order(http)
        other_id = await waiting_order(http)
        before = await unchanged(http, order_id)
        other_before = await unchanged(http, other_id)
        body = structured(order_id)
        headers = signed(body)
        bad_body, bad_headers = mutate(body, headers, other_id)
        response = await http.post("/events", content=bad_body, headers=bad_headers)
        assert response.status_code == status, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert await unchanged(http, order_id) == before
        assert await unchanged(http, other_id) == other_before
        good = await http.post("/events", content=body, headers=headers)
        assert good.status_code == 200, good.text
        assert good.json()["state"].startswith("deliverPizza")


async def test_a_captured_request_cannot_cancel_another_order(
    signed_server: ServerProcess,
) -> None:
    """The attack of issue 16: a captured signed PIZZA_READY for one order, resent with
    ce-* headers that make it a CANCEL of another order under a fresh id, is refused."""
    async with httpx.AsyncClient(base_url=signed_server.url) as http:
        captured_for = await waiting_order(http)
        victim = await waiting_order(http)
        before = await unchanged(http, victim)
        body = structured(captured_for)
        headers = signed(body)
        forged = {"ce-specversion": "1.0", "ce-id": "fresh", "ce-type": "CANCEL"}
        forged |= {"ce-source": "/kitchen", "ce-subject": victim}
        for content_type in ("application/cloudevents+json", "application/json"):
            resent = headers | forged | {"content-type": content_type}
            response = await http.post("/events", content=body, headers=resent)
            assert response.status_code in (400, 415), response.text
        assert await unchanged(http, victim) == before
        assert (await view(http, captured_for))["state"] == WAITING_FOR_KITCHEN


async def test_a_non_ascii_signature_is_refused(signed_server: ServerProcess) -> None:
    """A Latin-1 byte in the header made the comparison raise (500)."""
    async with httpx.AsyncClient(base_url=signed_server.url) as http:
        order_id = await waiting_order(http)
        body = structured(order_id)
        raw = {k.encode(): v.encode() for k, v in signed(body).items()}
        sent = httpx.Headers(raw | {b"webhook-signature": b"v1,\xe9"})
        response = await http.post("/events", content=body, headers=sent)
        assert response.status_code == 401, response.text
        assert response.headers["www-authenticate"] == "Standard-Webhooks"
        assert (await view(http, order_id))["version"] == 3


async def test_the_old_signature_headers_are_refused_and_named(
    signed_server: ServerProcess,
) -> None:
    async with httpx.AsyncClient(base_url=signed_server.url) as http:
        order_id = await waiting_order(http)
        body = structured(order_id)
        old = {"x-orchestrator-timestamp": str(int(time.time()))}
        old["x-orchestrator-signature"] = "sha256=00"
        response = await http.post(
            "/events", content=body, headers=old | {"content-type": "application/cloudevents+json"}
        )
        assert response.status_code == 401
        assert "x-orchestrator-signature is no longer read" in response.json()["detail"]


async def test_the_webhook_id_must_be_the_events_id(signed_server: ServerProcess) -> None:
    """A request signed under another id than its event's: the dedupe key would not be
    the one signed, so it is refused, naming the header."""
    async with httpx.AsyncClient(base_url=signed_server.url) as http:
        order_id = await waiting_order(http)
        body = structured(order_id, event_id="the-event")
        headers = signed_headers(body, "another-id")
        response = await http.post("/events", content=body, headers=headers)
        assert response.status_code == 422, response.text
        assert response.json()["field"] == "webhook-id"
        assert (await view(http, order_id))["version"] == 3


def test_the_signature_is_the_standard_webhooks_one() -> None:
    """The test vector of the Standard Webhooks specification's reference libraries."""
    key = parse_keys("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")[0]
    body = b'{"test": 2432232314}'
    signature = sign(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", body)
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


@pytest.mark.parametrize(
    "secret",
    ["s3cret", "whsec_", "whsec_not base64!", "whsec_c2hvcnQ=", "whsec_MfKQ9r8GKYqrTwjUPD8I ,"],
)
def test_a_secret_that_is_not_a_standard_webhooks_key_is_refused(secret: str) -> None:
    """Refused at start, naming the secret by its place, never by its value."""
    with pytest.raises(InvalidInput) as refused:
        parse_keys(secret)
    assert refused.value.field == "webhook_secret"
    for part in ("s3cret", "base64!", "c2hvcnQ", "MfKQ"):
        assert part not in refused.value.detail


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"not json", 422),
        (b'{"specversion": "1.0", "type": "PIZZA_READY", "source": "/k", "subject": "x"}', 422),
        (b'{"specversion": "1.0", "id": "1", "type": "PIZZA_READY", "source": "/k"}', 422),
    ],
)
async def test_a_malformed_event_is_refused(
    signed_server: ServerProcess, body: bytes, status: int
) -> None:
    async with httpx.AsyncClient(base_url=signed_server.url) as http:
        response = await http.post("/events", content=body, headers=signed_headers(body, "1"))
        assert response.status_code == status, response.text
        assert response.json()["field"] == "body"


@pytest.mark.parametrize("attribute", ["id", "subject", "source"])
async def test_an_attribute_that_is_not_unicode_text_is_refused(
    signed_server: ServerProcess, attribute: str
) -> None:
    """JSON's escape of a lone surrogate parses, but no database column or broker can hold
    it: 422 naming the body, not a 503 that asks for a retry."""
    async with httpx.AsyncClient(base_url=signed_server.url) as http:
        order_id = await waiting_order(http)
        before = await view(http, order_id)
        event = json.loads(structured(order_id))
        event[attribute] = "\ud800"
        body = json.dumps(event).encode()
        assert b"\\ud800" in body
        response = await http.post("/events", content=body, headers=signed_headers(body, "x"))
        assert response.status_code == 422, response.text
        assert response.json()["field"] == "body"
        assert await view(http, order_id) == before


async def test_data_nested_deeper_than_an_http_body_may_be_is_refused(
    signed_server: ServerProcess,
) -> None:
    """The webhook's data nests no deeper than an event's in an HTTP body: deeper data was
    applied, and then every later turn of the order failed copying it."""
    async with httpx.AsyncClient(base_url=signed_server.url) as http:
        order_id = await waiting_order(http)
        before = await view(http, order_id)
        deepest: dict[str, object] = {"oven": 3}  # two levels: the object and its value
        for _ in range(29):  # 31 levels, as deep as an event's data in an HTTP body may be
            deepest = {"a": deepest}
        event = json.loads(structured(order_id))
        event["data"] = {"a": deepest}  # 32
        body = json.dumps(event).encode()
        response = await http.post("/events", content=body, headers=signed(body))
        assert response.status_code == 422, response.text
        assert "nested deeper" in response.json()["detail"]
        assert await view(http, order_id) == before
        event["data"] = deepest
        body = json.dumps(event).encode()
        response = await http.post("/events", content=body, headers=signed(body))
        assert response.status_code == 200, response.text


async def test_an_unknown_order_or_an_event_not_allowed_is_refused(
    signed_server: ServerProcess,
) -> None:
    async with httpx.AsyncClient(base_url=signed_server.url) as http:
        unknown = structured("no-such-order")
        assert (
            await http.post("/events", content=unknown, headers=signed(unknown))
        ).status_code == 404
        order_id = (await create_order(http))["id"]
        early = structured(order_id)  # PIZZA_READY before the order was confirmed
        response = await http.post("/events", content=early, headers=signed(early))
        assert response.status_code == 409
        assert (await view(http, order_id))["version"] == 1


async def test_without_a_secret_both_bindings_carry_client_events_only(
    server_factory: ServerFactory,
) -> None:
    """Unsigned, POST /events is a client's command like any other: a CANCEL in the binary
    binding applies, a PIZZA_READY (a service event) gets 403 in either binding."""
    server = server_factory("--kitchen-mode", "ignore")
    async with httpx.AsyncClient(base_url=server.url) as http:
        order_id = await waiting_order(http)
        ready = structured(order_id)
        headers = {"content-type": "application/cloudevents+json"}
        refused = await http.post("/events", content=ready, headers=headers)
        assert refused.status_code == 403, refused.text
        assert refused.json()["event"] == "PIZZA_READY"
        binary = {
            "content-type": "application/json",
            "ce-specversion": "1.0",
            "ce-id": str(uuid.uuid4()),
            "ce-type": "PIZZA_READY",
            "ce-source": "/kitchen",
            "ce-subject": order_id,
        }
        refused = await http.post("/events", content=b"{}", headers=binary)
        assert refused.status_code == 403, refused.text
        assert (await view(http, order_id))["version"] == 3
        cancel = binary | {"ce-type": "CANCEL", "ce-id": str(uuid.uuid4())}
        response = await http.post("/events", content=b"{}", headers=cancel)
        assert response.status_code == 200, response.text
        assert response.json()["state"] == "cancellingKitchen"
