"""The nodes' keep-alive HTTP/1.1 client against a real uvicorn server on 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from orchestrator.cluster.wire import Peers, Unreachable
from tests.conftest import free_port
from tests.helpers import eventually


async def echo(request: Request) -> Response:
    body = await request.body()
    return Response(body, 201, headers={"x-seen": request.headers.get("x-sent", "")})


async def chunked(request: Request) -> StreamingResponse:
    async def parts() -> AsyncIterator[bytes]:
        for part in (b"one ", b"two ", b"three"):
            yield part

    return StreamingResponse(parts(), media_type="text/plain")


@pytest.fixture
async def server() -> AsyncIterator[str]:
    """uvicorn closing idle keep-alive connections after one second."""
    app = Starlette(
        routes=[
            Route("/echo", echo, methods=["POST"]),
            Route("/chunked", chunked, methods=["POST"]),
        ]
    )
    port = free_port()
    config = uvicorn.Config(app, port=port, log_level="warning", timeout_keep_alive=1)
    running = uvicorn.Server(config)
    task = asyncio.create_task(running.serve())

    async def started() -> bool:
        return bool(running.started)

    await eventually(started, within=10.0, what="uvicorn started")
    yield f"http://127.0.0.1:{port}"
    running.should_exit = True
    await task


async def test_answers_are_read_whole_and_connections_reused(server: str) -> None:
    peers = Peers()
    try:
        answer = await peers.post(server, "/echo", b'{"a":1}', {"x-sent": "yes"})
        assert (answer.status, answer.body, answer.headers["x-seen"]) == (201, b'{"a":1}', "yes")
        again = await peers.post(server, "/echo", b"x" * 100_000, {})
        assert again.body == b"x" * 100_000
        streamed = await peers.post(server, "/chunked", b"", {})
        assert streamed.body == b"one two three"
    finally:
        await peers.close()


async def test_a_connection_the_server_closed_while_idle_is_replaced(server: str) -> None:
    """uvicorn closes an idle connection after its keep-alive timeout; the next request
    must not be lost to it (it never reached the server)."""
    peers = Peers()
    try:
        await peers.post(server, "/echo", b"first", {})
        await asyncio.sleep(1.5)  # past the server's keep-alive timeout
        answer = await peers.post(server, "/echo", b"second", {})
        assert answer.body == b"second"
    finally:
        await peers.close()


async def test_a_node_that_is_not_there_is_unreachable() -> None:
    peers = Peers(connect_timeout=1.0)
    with pytest.raises(Unreachable):
        await peers.post(f"http://127.0.0.1:{free_port()}", "/echo", b"", {})
