"""The create body of /openapi.json is built from the loaded charts' own create fields.

Issue 19, item 3: the document was hand-written and required `pizza`, so the payment
chart's body was refused by the schema the server publishes. Now POST /orders's body is a
``oneOf`` with one object per creatable chart, built when the app starts; these tests read
the document of a real server and validate bodies against it with a JSON Schema validator
(jsonschema_rs, which schemathesis brings), then send them to that server.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import httpx
import jsonschema_rs

from tests.conftest import ServerFactory
from tests.helpers import HAWAII

PAYMENT = {
    "chart": "payment",
    "products": [{"name": "tea", "price": 3.5}],
    "supplier": "Acme",
    "address": "1 Main St",
}


def create_validator(document: dict[str, Any]) -> Any:
    """A validator of POST /orders's body, resolving the document's own $refs."""
    schema = document["paths"]["/orders"]["post"]["requestBody"]["content"]["application/json"]
    root = {**schema["schema"], "components": document["components"]}
    return jsonschema_rs.Draft202012Validator(root)


def test_every_bundled_chart_body_is_valid_and_creates(server_factory: ServerFactory) -> None:
    """The payment body (products, supplier, address) and the pizza body, with and without
    `chart`, are valid by the published schema, and the server creates each; bodies of no
    chart are not valid."""
    server = server_factory()
    document = httpx.get(f"{server.url}/openapi.json", timeout=10.0).json()
    validator = create_validator(document)
    valid: list[dict[str, Any]] = [PAYMENT, {"pizza": HAWAII}, {"chart": "pizza", "pizza": HAWAII}]
    for body in valid:
        assert validator.is_valid(body), body
        created = httpx.post(f"{server.url}/orders", json=body, timeout=10.0)
        assert created.status_code == 201, created.text
    invalid: list[dict[str, Any]] = [
        {"products": PAYMENT["products"], "supplier": "Acme", "address": "x"},  # not default
        {**PAYMENT, "pizza": HAWAII},  # a field of another chart
        {"chart": "payment", "pizza": HAWAII},
        {"chart": "nosuch", "pizza": HAWAII},
        {**PAYMENT, "supplier": 7},
    ]
    for body in invalid:
        assert not validator.is_valid(body), body
        refused = httpx.post(f"{server.url}/orders", json=body, timeout=10.0)
        assert refused.status_code == 422, refused.text


TICKETS = """\
name: tickets
states:
  booked:
    initial: true
    transitions:
      - event: BOOK
        on: book
"""
TICKETS_ACTIONS = """\
from typing import ClassVar
from orchestrator import Context, JsonObject


class Tickets(Context):
    fields: ClassVar[JsonObject] = {"seat": "", "count": 0}
    create_event: ClassVar[str] = "BOOK"
    create_fields: ClassVar[dict[str, type]] = {"seat": str, "count": int}

    def book(self, data: JsonObject) -> None:
        self.seat = data["seat"]
        self.count = data["count"]
"""


def test_a_new_chart_appears_in_the_document(
    tmp_path: Path, charts_dir: Path, server_factory: ServerFactory
) -> None:
    """A chart dropped into the charts directory is one of the create bodies, with its own
    fields, without editing the document's module; the bundled ones stay."""
    charts = tmp_path / "charts"
    charts.mkdir()
    for name in ("pizza.yaml", "pizza.py", "payment.yaml", "payment.py"):
        shutil.copy(charts_dir / name, charts / name)
    (charts / "tickets.yaml").write_text(TICKETS)
    (charts / "tickets.py").write_text(TICKETS_ACTIONS)
    server = server_factory("--charts", str(charts))
    document = httpx.get(f"{server.url}/openapi.json", timeout=10.0).json()
    schemas = document["components"]["schemas"]
    assert {"CreatePizza", "CreatePayment", "CreateTickets"} <= set(schemas)
    assert schemas["CreateTickets"]["properties"] == {
        "seat": {"type": "string"},
        "count": {"type": "number"},
        "chart": {"const": "tickets"},
    }
    assert set(schemas["CreateTickets"]["required"]) == {"seat", "count", "chart"}
    validator = create_validator(document)
    body = {"chart": "tickets", "seat": "12A", "count": 2}
    assert validator.is_valid(body)
    assert not validator.is_valid({"chart": "tickets", "seat": "12A"})
    created = httpx.post(f"{server.url}/orders", json=body, timeout=10.0)
    assert created.status_code == 201, created.text
    assert created.json()["context"]["seat"] == "12A"
