"""Requests a web page did not mean to send: a foreign ``Host`` or a foreign ``Origin``.

A server without a token trusts whoever can reach it, and a browser on the same machine can
reach it on behalf of any page it shows. Three ways in, three checks:

- **DNS rebinding.** A page at ``attacker.example`` re-points its own name at 127.0.0.1;
  its requests are then same-origin for the browser, so no CORS rule stops them, but they
  carry ``Host: attacker.example``. Every request (HTTP and WebSocket) whose ``Host`` is not
  one this server answers to is refused with 400, before auth or routing. The default names
  are those of this machine that no page can re-point: ``localhost``, the loopback
  addresses and the address ``--host`` listens on; when it listens on every address
  (``0.0.0.0`` or ``::``), any IP address literal, since a rebinding attack needs a name.
  ``--allowed-hosts`` adds names (a proxy's public name); ``*`` turns the check off.
  A request without ``Host`` (HTTP/1.0) is let through: no browser sends one.
- **Cross-site WebSocket hijacking.** A browser opens a WebSocket to any site, with no
  preflight, and tells the server only through ``Origin``. A handshake whose ``Origin`` is
  not this server's own (its host and port equal ``Host``) is refused with 403; the
  dashboard's pages are same-origin, and clients that are not browsers send no ``Origin``.
- **Cross-site commands.** A page may POST "simple" requests (form types, ``text/plain``)
  to any site without a preflight. ``bodies.read_body`` accepts only JSON bodies, which a
  cross-site page cannot send without a CORS preflight, and the server answers no
  preflight (no ``Access-Control-Allow-*`` header anywhere). As defence in depth, a POST
  whose ``Origin`` is foreign is refused with 403 here too.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

from orchestrator.edge.problems import problem
from orchestrator.settings import valid_hostname

ANY = "*"
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
# --host values that listen on every address of the machine.
EVERY_ADDRESS = ("0.0.0.0", "::", "")
# Host values remembered with their verdict: a server sees few, and each is parsed once.
REMEMBERED_HOSTS = 1024
# Methods that change nothing: their Origin does not matter (a page cannot read the answer).
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def hostname(authority: str) -> str | None:
    """The host of a ``Host`` header (``name``, ``name:port``, ``[v6]:port``), lowercased,
    without brackets or a trailing dot; None when it is not one."""
    try:
        parts = urlsplit(f"//{authority}")
        parts.port  # noqa: B018  (raises on a port that is not a number)
    except ValueError:
        return None
    if parts.hostname is None or parts.netloc != authority or "@" in authority:
        return None
    name = parts.hostname.rstrip(".")
    return name if valid_hostname(name) else None


def is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class AllowedHosts:
    """The names a request's ``Host`` may give, from ``--host`` and ``--allowed-hosts``."""

    def __init__(self, listen_host: str, names: Iterable[str] = ()) -> None:
        names = tuple(names)
        self.any = ANY in names
        self.any_address = listen_host in EVERY_ADDRESS
        listening = () if self.any_address else (listen_host,)
        self.names = frozenset(
            name.strip("[]").rstrip(".").lower()
            for name in (*LOOPBACK_NAMES, *listening, *names)
            if name != ANY
        )

    def __contains__(self, host: str) -> bool:
        return self.any or host in self.names or (self.any_address and is_address(host))


class SameOriginGuard:
    def __init__(self, app: ASGIApp, allowed_hosts: AllowedHosts) -> None:
        self.app = app
        self.allowed = allowed_hosts
        self._known: dict[bytes, bool] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        host: bytes | None = None
        origin: bytes | None = None
        for name, value in scope["headers"]:
            if name == b"host":
                host = value
            elif name == b"origin":
                origin = value
        refusal = self._refusal(scope, host, origin)
        if refusal is None:
            await self.app(scope, receive, send)
            return
        status, detail, field = refusal
        if scope["type"] == "websocket":
            await receive()  # websocket.connect
        # A WebSocket handshake gets the same HTTP answer (ASGI's websocket.http.response).
        await problem(status, detail, field=field)(scope, receive, send)

    def _refusal(
        self, scope: Scope, host: bytes | None, origin: bytes | None
    ) -> tuple[int, str, str] | None:
        """(status, detail, field) of a request to refuse, or None."""
        if host is None:
            return None
        authority = host.decode("latin-1")
        if not self._allowed(host, authority):
            return (
                400,
                f"Host {authority[:100]!r} is not a name of this server; "
                "add it with --allowed-hosts if it is",
                "Host",
            )
        if origin is None or (scope["type"] == "http" and scope["method"] in SAFE_METHODS):
            return None
        # "null" (a sandboxed page, a file) and any other site differ from Host.
        if urlsplit(origin.decode("latin-1")).netloc.lower() != authority.lower():
            return 403, "cross-origin requests are refused; use this server's own pages", "Origin"
        return None

    def _allowed(self, host: bytes, authority: str) -> bool:
        verdict = self._known.get(host)
        if verdict is None:
            name = hostname(authority)
            verdict = name is not None and name in self.allowed
            if len(self._known) >= REMEMBERED_HOSTS:
                self._known.clear()  # someone sends many names: parse each again
            self._known[host] = verdict
        return verdict
