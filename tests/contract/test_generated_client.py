"""A client generated from the live /openapi.json creates orders of every bundled chart.

Issue 19, item 3: a client generated from the published document could not create a
payment order, because the hand-written create body required `pizza`. This test runs a
well-kept generator, openapi-python-client (in the test extras), on the document of a
real server, into a temporary folder, and drives that server with the generated package
in a subprocess (so the generated modules never enter this interpreter).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import ServerFactory

GENERATOR = Path(sys.executable).parent / "openapi-python-client"
GENERATE = [str(GENERATOR), "generate", "--path", "openapi.json", "--meta", "none"]

# Run with the generated package on the path: the server's URL is argv[1]. It creates an
# order of each bundled chart, payment, pizza (the default, without `chart`) and
# xstate_pizza, through the typed models and operations, reads the payment order back, and
# prints what it saw.
SCRIPT = """\
import json, sys
from generated.client import Client
from generated.api.default import create_order, get_order
from generated.models import (
    CreatePayment, CreatePizza, CreatePizzaPizza, CreateXstatePizza, CreateXstatePizzaPizza,
)

client = Client(base_url=sys.argv[1], raise_on_unexpected_status=True)
payment = create_order.sync_detailed(
    client=client,
    body=CreatePayment(
        products=[{"name": "tea", "price": 3.5}], supplier="Acme", address="1 Main St",
        chart="payment",
    ),
)
pizza = create_order.sync(
    client=client, body=CreatePizza(pizza=CreatePizzaPizza.from_dict({"name": "hawaii"}))
)
xstate = create_order.sync(
    client=client,
    body=CreateXstatePizza(
        pizza=CreateXstatePizzaPizza.from_dict({"name": "hawaii"}), chart="xstate_pizza"
    ),
)
read = get_order.sync(client=client, order_id=payment.parsed.id)
print(json.dumps({
    "status": int(payment.status_code),
    "location": payment.headers["location"],
    "payment": read.to_dict(),
    "pizza": pizza.to_dict(),
    "xstate": xstate.to_dict(),
}))
"""


@pytest.mark.generated_client
def test_a_generated_client_creates_a_payment_order(
    tmp_path: Path, server_factory: ServerFactory
) -> None:
    server = server_factory()
    document = httpx.get(f"{server.url}/openapi.json", timeout=10.0)
    assert document.status_code == 200
    (tmp_path / "openapi.json").write_bytes(document.content)
    generated = subprocess.run(
        [*GENERATE, "--output-path", "generated"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,  # generation takes about a second; this bounds a hang
    )
    assert generated.returncode == 0, generated.stdout + generated.stderr
    # The create bodies themselves must not be dropped by the generator.
    assert "Unable to process schema" not in generated.stdout, generated.stdout
    (tmp_path / "drive.py").write_text(SCRIPT)
    ran = subprocess.run(
        [sys.executable, "drive.py", server.url],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ran.returncode == 0, ran.stderr
    seen = json.loads(ran.stdout)
    assert seen["status"] == 201
    payment = seen["payment"]
    assert seen["location"] == f"/orders/{payment['id']}"
    assert payment["chart"] == "payment"
    assert payment["context"]["supplier"] == "Acme"
    assert payment["context"]["products"] == [{"name": "tea", "price": 3.5}]
    assert seen["pizza"]["chart"] == "pizza"
    assert seen["xstate"]["chart"] == "xstate_pizza"
    assert seen["xstate"]["items"] == [{"name": "hawaii"}]
    # The server agrees: the order is there, of the payment chart.
    stored = httpx.get(f"{server.url}/orders/{payment['id']}", timeout=10.0).json()
    assert stored["chart"] == "payment" and stored["version"] >= 1
