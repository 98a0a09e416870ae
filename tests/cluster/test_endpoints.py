"""The cluster's endpoints against hostile and stray input, on one real server each.

``POST /cluster/turns`` takes only calls signed with the cluster's key (kept in the
database, so a client without database access cannot make one); ``GET /cluster`` on a
server that is not in a cluster (SQLite) says so with 404, and such a server runs no
cluster machinery at all."""

from __future__ import annotations

import json
import time

import asyncpg
import httpx

from orchestrator.cluster.signing import SIGNATURE_HEADER, sign
from tests.conftest import ServerFactory
from tests.helpers import create_order, metric
from tests.postgres import fresh_database


async def test_a_sqlite_server_is_not_in_a_cluster(server_factory: ServerFactory) -> None:
    server = server_factory()
    async with httpx.AsyncClient(base_url=server.url) as http:
        status = await http.get("/cluster")
        assert status.status_code == 404
        assert status.headers["content-type"] == "application/problem+json"
        assert "not in a cluster" in status.json()["detail"]
        turn = await http.post("/cluster/turns", json={}, headers={SIGNATURE_HEADER: "t=1,v1=0"})
        assert turn.status_code == 404
        assert await metric(http, "orchestrator_shards_owned") == 0


def call(order_id: str, key: str) -> bytes:
    event = {
        "type": "ADD_PIZZA",
        "data": {"pizza": {"name": "forwarded"}},
        "id": key,
        "origin": "http",
        "fingerprint": "f" * 32,
        "keyed": True,
        "traceparent": None,
    }
    return json.dumps({"kind": "send", "order": order_id, "ifMatch": None, "event": event}).encode()


async def test_forwarded_turns_must_be_signed_with_the_clusters_key(
    server_factory: ServerFactory,
) -> None:
    """Unsigned, forged, stale or malformed calls are refused (401, 422) and change
    nothing; a call signed with the key from the database applies, answered as the
    owner's actor answers."""
    async with fresh_database() as store:
        server = server_factory("--store", store)
        async with httpx.AsyncClient(base_url=server.url) as http:
            order_id = (await create_order(http))["id"]
            assert await metric(http, "orchestrator_shards_owned") == 256
            conn = await asyncpg.connect(store)
            try:
                key = bytes(await conn.fetchval("SELECT key FROM cluster_keys"))
            finally:
                await conn.close()
            body = call(order_id, "forwarded-1")
            json_type = {"content-type": "application/json"}
            now = time.time()
            refused = [
                {},
                {SIGNATURE_HEADER: "garbage"},
                {SIGNATURE_HEADER: sign(b"another key" * 3, body, now)},
                {SIGNATURE_HEADER: sign(key, body, now - 3600)},
                {SIGNATURE_HEADER: sign(key, body + b" ", now)},
            ]
            for headers in refused:
                response = await http.post(
                    "/cluster/turns", content=body, headers={**json_type, **headers}
                )
                assert response.status_code == 401, (headers, response.text)
                assert response.json()["field"] == SIGNATURE_HEADER
            malformed = b'{"kind": "send", "order": 7}'
            response = await http.post(
                "/cluster/turns",
                content=malformed,
                headers={**json_type, SIGNATURE_HEADER: sign(key, malformed, now)},
            )
            assert response.status_code == 422, response.text
            assert (await http.get(f"/orders/{order_id}")).json()["version"] == 1
            response = await http.post(
                "/cluster/turns",
                content=body,
                headers={**json_type, SIGNATURE_HEADER: sign(key, body, time.time())},
            )
            assert response.status_code == 200, response.text
            assert response.json()["version"] == 2
            assert response.headers["orchestrator-order-id"] == order_id
