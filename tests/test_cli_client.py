"""``orchestrator orders ...`` and ``orchestrator charts ...`` as real subprocesses against
a real server: human and --json output, and the exit code of each class of problem."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from orchestrator.client import Client
from tests.conftest import ServerFactory, ServerProcess
from tests.helpers import HAWAII, MARGHERITA

ROOT = Path(__file__).resolve().parent.parent
PIZZA_DATA = json.dumps({"pizza": HAWAII})


def cli(
    *args: str, url: str | None = None, token: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}
    if url is not None:
        env["ORCHESTRATOR_URL"] = url
    if token is not None:
        env["ORCHESTRATOR_API_TOKEN"] = token
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def as_json(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_orders_create_get_send_history_and_list(server: ServerProcess) -> None:
    created = as_json(cli("orders", "create", "--data", PIZZA_DATA, "--json", url=server.url))
    order_id = created["id"]
    assert (created["state"], created["version"]) == ("orderPizza", 1)

    human = cli("orders", "get", order_id, "--url", server.url)
    assert human.returncode == 0, human.stderr
    assert f"id:       {order_id}" in human.stdout
    assert "state:    orderPizza" in human.stdout
    assert as_json(cli("orders", "get", order_id, "--json", url=server.url)) == created

    added = cli(
        "orders", "send", order_id, "ADD_PIZZA", "--data", json.dumps({"pizza": MARGHERITA}),
        "--key", "cli-add", url=server.url,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert "version:  2" in added.stdout

    history = as_json(cli("orders", "history", order_id, "--json", url=server.url))
    assert [e["eventId"] for e in history["entries"]][1] == "cli-add"
    table = cli("orders", "history", order_id, url=server.url).stdout.splitlines()
    assert table[0].split() == ["VERSION", "EVENT", "STATES", "AT", "DATA"]
    assert table[2].split()[:2] == ["2", "ADD_PIZZA"]

    products = {"products": [{"name": "tea", "price": 3}], "supplier": "s", "address": "a"}
    payment = as_json(
        cli(
            "orders",
            "create",
            "--chart",
            "payment",
            "--json",
            "--data",
            json.dumps(products),
            url=server.url,
        )
    )
    assert payment["chart"] == "payment"
    listed = as_json(cli("orders", "list", "--chart", "pizza", "--json", url=server.url))
    assert [o["id"] for o in listed["orders"]] == [order_id]
    rows = cli("orders", "list", "--limit", "1", url=server.url)
    assert rows.stdout.splitlines()[0].split() == ["ID", "CHART", "STATE", "VERSION", "UPDATED"]
    assert rows.stdout.splitlines()[1].split()[:2] == [payment["id"], "payment"]
    assert "more: --cursor" in rows.stderr
    state = as_json(cli("orders", "list", "--state", "orderPizza", "--json", url=server.url))
    assert [o["id"] for o in state["orders"]] == [order_id]


def test_problems_print_title_and_detail_and_exit_by_class(server: ServerProcess) -> None:
    order_id = as_json(cli("orders", "create", "--data", PIZZA_DATA, "--json", url=server.url))[
        "id"
    ]
    assert cli("orders", "send", order_id, "CONFIRM_PIZZA", url=server.url).returncode == 0

    refused = cli("orders", "send", order_id, "CONFIRM_PIZZA", url=server.url)
    assert refused.returncode == 4
    assert refused.stderr.startswith("Error: Conflict: CONFIRM_PIZZA is not allowed in state")
    assert "allowed: [" in refused.stderr

    stale = cli("orders", "send", order_id, "CANCEL", "--if-match", "1", url=server.url)
    assert stale.returncode == 4
    assert "Precondition failed" in stale.stderr

    missing = cli("orders", "get", "no-such-order", url=server.url)
    assert missing.returncode == 3
    assert "Error: Not found: order 'no-such-order' does not exist" in missing.stderr

    invalid = cli("orders", "create", "--data", '{"nope": 1}', url=server.url)
    assert invalid.returncode == 2
    assert "(field: nope)" in invalid.stderr

    not_json = cli("orders", "create", "--data", "[1]", url=server.url)
    assert not_json.returncode == 2
    assert "must be a JSON object" in not_json.stderr

    unreachable = cli("charts", "list", "--url", "http://127.0.0.1:1")
    assert unreachable.returncode == 1
    assert unreachable.stderr.startswith("Error: ")


def test_a_token_from_the_environment(server_factory: ServerFactory) -> None:
    server = server_factory("--api-token", "s3cret")
    denied = cli("charts", "list", url=server.url)
    assert denied.returncode == 5
    assert "Unauthorized" in denied.stderr
    assert cli("charts", "list", url=server.url, token="s3cret").returncode == 0
    assert cli("charts", "list", "--token", "s3cret", url=server.url).returncode == 0


def test_orders_watch_prints_updates_and_replays_after(server: ServerProcess) -> None:
    with Client(server.url) as client:
        order = client.create({"pizza": HAWAII})
        client.send(order.id, "ADD_PIZZA", {"pizza": MARGHERITA})
    replay = cli("orders", "watch", order.id, "--after", "0", "--count", "2", url=server.url)
    assert replay.returncode == 0, replay.stderr
    assert [line.split()[:2] for line in replay.stdout.splitlines()] == [
        ["1", "ADD_PIZZA"],
        ["2", "ADD_PIZZA"],
    ]
    live = cli("orders", "watch", order.id, "--count", "1", "--json", url=server.url)
    message = as_json(live)
    assert (message["version"], message["event"], message["view"]["id"]) == (2, None, order.id)
    missing = cli("orders", "watch", "no-such-order", url=server.url)
    assert missing.returncode == 3


def test_charts_list_and_show(server: ServerProcess) -> None:
    listed = cli("charts", "list", url=server.url)
    assert listed.returncode == 0, listed.stderr
    assert "pizza *" in listed.stdout.splitlines()
    assert as_json(cli("charts", "list", "--json", url=server.url))["default"] == "pizza"

    shown = cli("charts", "show", "pizza", url=server.url)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert "create fields:  pizza (object)" in lines
    assert "  orderPizza (initial)" in lines
    assert "    sendingOrderToKitchen (initial)" in lines
    assert "  orderPizza --CONFIRM_PIZZA--> bakePizza" in lines
    assert "  orderPizza --ADD_PIZZA--> (in place)" in lines
    shown_json = as_json(cli("charts", "show", "payment", "--json", url=server.url))
    assert shown_json["createFields"] == {
        "products": "array",
        "supplier": "string",
        "address": "string",
    }
    assert cli("charts", "show", "nope", url=server.url).returncode == 3


def test_charts_check_a_good_and_a_broken_directory(tmp_path: Path) -> None:
    good = cli("charts", "check", str(ROOT / "statecharts"))
    assert good.returncode == 0, good.stderr
    assert "payment, pizza, xstate_pizza" in good.stdout

    charts = ROOT / "statecharts"
    (tmp_path / "pizza.py").write_text((charts / "pizza.py").read_text())
    document = (charts / "pizza.yaml").read_text()
    (tmp_path / "pizza.yaml").write_text(document.replace("target: deliverPizza", "target: oven"))
    line = 1 + document.splitlines().index("      - event: PIZZA_READY")
    broken = cli("charts", "check", str(tmp_path))
    assert broken.returncode == 2
    assert f"pizza.yaml: line {line}, state 'bakePizza'" in broken.stderr
    assert "unknown state 'oven'" in broken.stderr

    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli("charts", "check", str(empty)).returncode == 2
