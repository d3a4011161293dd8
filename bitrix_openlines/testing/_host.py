"""Serve many fake portals from one server, as a marketplace application sees them.

Each portal of a :class:`FakePortalHost` is a whole :class:`FakePortal` (its own leaky
bucket, operating budget, tokens, ``application_token`` and ``member_id``), addressed by
its own host name, ``<name>.localhost``, on the host's one port: the server routes each
request by its ``Host`` header. Every portal's addresses (``client_endpoint``, its OAuth
server) name its host, so a client keys the portal's bucket apart from the others', and a
refresh reaches the portal that issued the pair. ``*.localhost`` is loopback (RFC 6761)
but the system resolver may not know it: clients connect through
:meth:`FakePortalHost.client_session` (or :class:`LocalhostResolver`), which resolves it
to the host's address.

All the portals serve one application: they share its ``client_id`` and
``client_secret``; their dialogs are one table, shared read-only (generated once).
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

from ._portal import FakePortal

__all__ = ["FakePortalHost", "LocalhostResolver"]


class LocalhostResolver(AbstractResolver):
    """Resolve ``localhost`` and ``*.localhost`` to ``address``; anything else as usual."""

    def __init__(self, address: str = "127.0.0.1") -> None:
        self._address = address
        self._fallback = aiohttp.ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """Return ``address`` for a loopback name, else what the system resolver says."""
        name = host.lower().rstrip(".")
        if name == "localhost" or name.endswith(".localhost"):
            return [
                {
                    "hostname": host,
                    "host": self._address,
                    "port": port,
                    "family": socket.AF_INET,
                    "proto": 0,
                    "flags": socket.AI_NUMERICHOST,
                }
            ]
        return await self._fallback.resolve(host, port, family)

    async def close(self) -> None:
        """Close the fallback resolver."""
        await self._fallback.close()


class FakePortalHost:
    """Many fake portals behind one server on 127.0.0.1; see the module docs.

    Use it as ``async with FakePortalHost(1000) as host:``; ``host.portals[i]`` is the
    i-th :class:`FakePortal` (named ``p<i>``), ``host[member_id]`` finds one by member id.

    Args:
        portals: How many portals to host.
        dialogs: How many dialogs every portal has (one shared table, chat ids ``1..n``).
        host: Interface to listen on.
        port: Port to listen on; 0 picks a free one.
        clock: The monotonic clock of every portal's limiters and tokens.
        **options: Any other ``FakePortal`` argument (``rate``, ``burst``,
            ``operating_limit``, ``access_token_ttl``...), the same for every portal.

    Raises:
        ValueError: ``portals`` is not a positive integer, or an option is out of range.
    """

    def __init__(
        self,
        portals: int,
        *,
        dialogs: int = 100,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Callable[[], float] | None = None,
        **options: Any,
    ) -> None:
        if isinstance(portals, bool) or not isinstance(portals, int) or portals < 1:
            raise ValueError(f"portals must be a positive integer, got {portals!r}")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ValueError(f"port must be an int in 0..65535, got {port!r}")
        first = FakePortal(dialogs=dialogs, clock=clock, **options)
        self.portals: list[FakePortal] = [first]
        for _ in range(portals - 1):
            portal = FakePortal(dialogs=0, clock=clock, **options)
            portal._share_dialogs(first)
            self.portals.append(portal)
        for index, portal in enumerate(self.portals):
            portal.client_id, portal.client_secret = first.client_id, first.client_secret
            # The portal's own name: its addresses, and how the server finds it.
            portal._host = f"p{index}.localhost"
        self.client_id: str = first.client_id
        self.client_secret: str = first.client_secret
        self._by_name = {portal._host: portal for portal in self.portals}
        self._by_member = {portal.member_id: portal for portal in self.portals}
        self._listen = host
        self._port = port
        self._runner: web.AppRunner | None = None
        self._bound_port: int | None = None

    # ----------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Start listening; every portal's URL properties are available after this.

        Raises:
            RuntimeError: The host is already running.
        """
        if self._runner is not None:
            raise RuntimeError("FakePortalHost is already started")
        app = web.Application()
        for verb in ("GET", "POST"):
            app.router.add_route(verb, "/rest/{tail:.*}", self._handle_rest)
            app.router.add_route(verb, "/oauth/token/", self._handle_token)
            app.router.add_route(verb, "/oauth/token", self._handle_token)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        try:
            # Many portals' clients connect at once: a deeper accept queue than the 128
            # default spares them SYN retries.
            site = web.TCPSite(runner, self._listen, self._port, backlog=1024)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._bound_port = int(runner.addresses[0][1])
        for portal in self.portals:
            portal._bound_port = self._bound_port
        self._runner = runner

    async def close(self) -> None:
        """Stop listening. Safe to call twice."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        for portal in self.portals:
            portal._cancel_slow_answers()
        await runner.cleanup()

    async def __aenter__(self) -> FakePortalHost:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # ----------------------------------------------------------------- public state

    @property
    def port(self) -> int:
        """The port every portal is served on (known once started)."""
        if self._bound_port is None:
            raise RuntimeError("FakePortalHost is not started: use 'async with' or await start()")
        return self._bound_port

    def __len__(self) -> int:
        return len(self.portals)

    def __getitem__(self, member_id: str) -> FakePortal:
        """The portal whose ``member_id`` this is (``KeyError`` when none)."""
        return self._by_member[member_id]

    def resolver(self) -> LocalhostResolver:
        """A resolver that sends the portals' names to this host's address."""
        return LocalhostResolver(self._listen)

    def client_session(self, **options: Any) -> aiohttp.ClientSession:
        """An ``aiohttp.ClientSession`` that reaches the portals (call it in a running loop).

        Args:
            **options: ``aiohttp.TCPConnector`` arguments (``limit``...), besides the
                resolver.
        """
        connector = aiohttp.TCPConnector(resolver=self.resolver(), **options)
        return aiohttp.ClientSession(connector=connector)

    # ----------------------------------------------------------------- routing

    def _portal_of(self, request: web.Request) -> FakePortal | None:
        name = request.host.lower().rpartition(":")[0] or request.host.lower()
        return self._by_name.get(name)

    async def _handle_rest(self, request: web.Request) -> web.StreamResponse:
        portal = self._portal_of(request)
        if portal is None:
            return web.Response(status=404, text="no such portal on this host")
        return await portal._handle_rest(request)

    async def _handle_token(self, request: web.Request) -> web.StreamResponse:
        portal = self._portal_of(request)
        if portal is None:
            return web.Response(status=404, text="no such portal on this host")
        return await portal._handle_token(request)
