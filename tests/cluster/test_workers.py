"""``orchestrator serve --workers N``: N nodes of one cluster as processes of one command."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import httpx

from tests.cluster.harness import PIZZA
from tests.conftest import free_port
from tests.helpers import RABBITMQ_URL, delete_flow_queues, spawn_service
from tests.postgres import fresh_database


def start(command: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)


async def wait_ready(url: str, proc: subprocess.Popen[bytes], within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    async with httpx.AsyncClient(base_url=url, timeout=2.0) as http:
        while True:
            assert proc.poll() is None, f"serve --workers exited with {proc.returncode}"
            try:
                if (await http.get("/readyz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"{url} not ready"
            await asyncio.sleep(0.1)


async def test_workers_are_nodes_of_one_cluster_and_stop_together(tmp_path: Path) -> None:
    """``serve --workers 2`` serves on --port and --port + 1 as two members of one cluster
    sharing the shards; an order created on one port and confirmed on the other reaches
    done; SIGTERM to the command stops both workers cleanly (exit 0), and they leave the
    membership."""
    await delete_flow_queues()
    async with fresh_database() as store:
        ledger = tmp_path / "services.db"
        services = [spawn_service(ledger, "kitchen"), spawn_service(ledger, "delivery")]
        port = free_port()
        while free_port() == port + 1:  # pragma: no cover - the next port must be free too
            port = free_port()
        command = [
            sys.executable, "-m", "orchestrator", "serve", "--workers", "2",
            "--port", str(port), "--store", store, "--broker", RABBITMQ_URL,
            "--lease-ttl", "4", "--db", str(tmp_path / "orders.db"),
        ]  # fmt: skip
        proc = start(command, tmp_path / "serve.log")
        try:
            urls = [f"http://127.0.0.1:{port}", f"http://127.0.0.1:{port + 1}"]
            for url in urls:
                await wait_ready(url, proc)
            async with httpx.AsyncClient(timeout=30.0) as http:
                deadline = time.monotonic() + 60.0
                while True:
                    status = (await http.get(urls[1] + "/cluster")).json()
                    owners = {s["owner"] for s in status["shards"]}
                    if len(status["members"]) == 2 and len(owners) == 2 and None not in owners:
                        break
                    assert time.monotonic() < deadline, status["members"]
                    await asyncio.sleep(0.2)
                created = await http.post(urls[0] + "/orders", json=PIZZA)
                assert created.status_code == 201, created.text
                order_id = created.json()["id"]
                confirmed = await http.post(
                    f"{urls[1]}/orders/{order_id}/events", json={"type": "CONFIRM_PIZZA"}
                )
                assert confirmed.status_code == 200, confirmed.text
                deadline = time.monotonic() + 60.0
                while (await http.get(f"{urls[0]}/orders/{order_id}")).json()["state"] != "done":
                    assert time.monotonic() < deadline, "the order did not reach done"
                    await asyncio.sleep(0.2)
            proc.send_signal(signal.SIGTERM)
            code = await asyncio.to_thread(proc.wait, 30)
            assert code == 0, (tmp_path / "serve.log").read_text()
            conn = await asyncpg.connect(store)
            try:
                assert await conn.fetchval("SELECT count(*) FROM members") == 0
            finally:
                await conn.close()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            for service in services:
                service.kill()
                service.wait(timeout=10)


async def test_workers_stop_when_their_supervisor_is_killed(tmp_path: Path) -> None:
    """SIGKILL of ``serve --workers 2`` itself: no worker is left running unsupervised."""
    async with fresh_database() as store:
        port = free_port()
        command = [
            sys.executable, "-m", "orchestrator", "serve", "--workers", "2",
            "--port", str(port), "--store", store, "--broker", RABBITMQ_URL,
            "--db", str(tmp_path / "orders.db"),
        ]  # fmt: skip
        proc = start(command, tmp_path / "serve.log")
        urls = [f"http://127.0.0.1:{port}", f"http://127.0.0.1:{port + 1}"]
        try:
            for url in urls:
                await wait_ready(url, proc)
        finally:
            proc.kill()
            await asyncio.to_thread(proc.wait, 10)
        deadline = time.monotonic() + 20.0
        async with httpx.AsyncClient(timeout=1.0) as http:
            for url in urls:
                while True:
                    try:
                        await http.get(url + "/healthz")
                    except httpx.TransportError:
                        break
                    assert time.monotonic() < deadline, f"{url} still serves"
                    await asyncio.sleep(0.2)
