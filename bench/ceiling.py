"""The machine's ceiling: a hello-world Starlette app, served and loaded as the orchestrator is.

This virtual machine's speed drifts by up to a third within an hour, so a figure measured
alone says little. ``bash bench/run.sh --workload ceiling`` serves this app instead of the
orchestrator (uvicorn with the same defaults: uvloop, httptools, no access log; pinned to
core 0) and loads it with the same client: one ``GET /`` per "order". Run beside a
workload, it shows which phase the machine is in. It is a rough gauge: the Python client,
not this server, is its limit, and a slow phase costs the orchestrator more than it costs
this app (see bench/README.md, "The machine's phases").
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

HELLO = {"hello": "world"}


async def hello(request: Request) -> JSONResponse:
    return JSONResponse(HELLO)


# /readyz as well, so run.sh waits for this server as for the orchestrator.
app = Starlette(routes=[Route("/", hello), Route("/readyz", hello)])
