"""OpenLinesApp against many fake portals on one server, events posted over real sockets."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from bitrix_openlines import (
    Eviction,
    InMemoryTokenStore,
    OAuthTokens,
    OpenLinesApp,
    RateLimit,
    RetryPolicy,
)
from bitrix_openlines.contrib.aiohttp import app_event_handler
from bitrix_openlines.errors import AuthError, EventVerificationError
from bitrix_openlines.events import Event
from bitrix_openlines.testing import FakePortal, FakePortalHost, Faults

INSTALL = {"VERSION": "1", "ACTIVE": "Y", "INSTALLED": "Y", "LANGUAGE_ID": "en"}
MESSAGE = {"DATA": [{"chat": {"id": 2}, "message": {"id": 10, "text": "hi", "system": "N"}}]}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Served:
    """The many-portal host, an OpenLinesApp and its event handler on a real server."""

    def __init__(self, host: FakePortalHost, app: OpenLinesApp, url: str, clock: Clock) -> None:
        self.host = host
        self.app = app
        self.url = url
        self.clock = clock
        self.seen: list[Event] = []

    def portal(self, index: int) -> FakePortal:
        return self.host.portals[index]

    async def install(self, index: int) -> int:
        return await self.portal(index).send_event(self.url, "ONAPPINSTALL", INSTALL)


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    clock = Clock()
    async with FakePortalHost(4, dialogs=10, rate=None) as host:
        http = host.client_session()
        app = OpenLinesApp(
            client_id=host.client_id,
            client_secret=host.client_secret,
            store=InMemoryTokenStore(),
            session=http,
            rate_limit=None,
            retry=RetryPolicy.no_wait(),
            eviction=Eviction(max_live=2, idle_seconds=60.0, sweep_seconds=1.0),
            clock=clock,
        )
        web_app = web.Application()
        served: Served | None = None

        async def on_event(event: Event, request: web.Request) -> None:
            assert served is not None
            served.seen.append(event)

        web_app.router.add_post("/events", app_event_handler(app, on_event))
        runner = web.AppRunner(web_app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        served = Served(host, app, f"http://127.0.0.1:{port}/events", clock)
        try:
            yield served
        finally:
            await runner.cleanup()
            await app.close()
            await http.close()


async def test_install_stores_each_portals_tokens_and_its_client_works(served: Served) -> None:
    for index in range(3):
        assert await served.install(index) == 200
    app = served.app
    for index in range(3):
        portal = served.portal(index)
        assert await app.application_token(portal.member_id) == portal.application_token
        dialog = await app.portal(portal.member_id).get_dialog(chat_id=2)
        assert dialog.chat_id == 2
        # The call went to this portal, through its own address (its bucket's key).
        assert portal.stats.by_method["imopenlines.dialog.get"] == 1
        assert (
            app.portal(portal.member_id).auth.portal
            == f"http://p{index}.localhost:{served.host.port}"
        )
    # The install check (app.info) went to each portal once.
    assert [served.portal(i).stats.by_method["app.info"] for i in range(4)] == [1, 1, 1, 0]
    assert [e.name for e in served.seen] == ["ONAPPINSTALL"] * 3


async def test_events_are_verified_against_their_own_portals_token(served: Served) -> None:
    a, b, c = served.portal(0), served.portal(1), served.portal(2)
    assert await served.install(0) == 200
    assert await served.install(1) == 200
    assert await a.send_event(served.url, "ONOPENLINEMESSAGEADD", MESSAGE) == 200
    # Portal A's member id, portal B's (valid, but not A's) application token.
    forged = await a.send_event(
        served.url, "ONOPENLINEMESSAGEADD", MESSAGE, application_token=b.application_token
    )
    assert forged == 403
    # A portal that never installed the app.
    assert await c.send_event(served.url, "ONOPENLINEMESSAGEADD", MESSAGE) == 403
    assert [e.member_id for e in served.seen] == [a.member_id, b.member_id, a.member_id]


async def test_a_reinstall_must_carry_the_trusted_token(served: Served) -> None:
    a = served.portal(0)
    assert await served.install(0) == 200
    status = await a.send_event(served.url, "ONAPPINSTALL", INSTALL, application_token="f" * 32)
    assert status == 403
    assert await served.app.application_token(a.member_id) == a.application_token


async def test_an_install_whose_tokens_do_not_work_is_refused(served: Served) -> None:
    """Made-up tokens naming portal A: app.info fails there, and nothing is stored."""
    a = served.portal(0)
    body = json.dumps(
        {
            "event": "ONAPPINSTALL",
            "data": INSTALL,
            "auth": {
                "access_token": "a" * 32,
                "refresh_token": "b" * 32,
                "client_endpoint": a.client_endpoint,
                "server_endpoint": a.client_endpoint,
                "member_id": a.member_id,
                "application_token": "c" * 32,
            },
        }
    )
    with pytest.raises(EventVerificationError, match="do not work"):
        await served.app.handle_event(body, "application/json")
    assert a.stats.by_method["app.info"] == 1
    assert await served.app.store.load(a.member_id) is None
    assert await served.app.application_token(a.member_id) is None


async def test_an_evicted_portal_is_rebuilt_from_the_store_without_a_refresh(
    served: Served,
) -> None:
    app = served.app
    a, b, c = served.portal(0), served.portal(1), served.portal(2)
    for index in range(3):
        assert await served.install(index) == 200
    # Portal A's access token expires: one refresh, and the new pair goes to the store.
    a.expire_access_tokens()
    assert (await app.portal(a.member_id).get_dialog(chat_id=2)).chat_id == 2
    assert a.stats.refreshes == 1
    held = app.portal(a.member_id)
    # Two more portals used: past max_live=2, A (the least recently used) is evicted.
    await app.portal(b.member_id).get_dialog(chat_id=3)
    await app.portal(c.member_id).get_dialog(chat_id=4)
    assert not app.is_live(a.member_id)
    assert app.live == 2
    # Used again: a new client, from the stored (refreshed) pair; no refresh needed.
    again = app.portal(a.member_id)
    assert again is not held
    assert (await again.get_dialog(chat_id=5)).chat_id == 5
    assert a.stats.refreshes == 1
    assert a.stats.rejections.get("expired_token", 0) == 1
    assert a.stats.rejections.get("invalid_token", 0) == 0
    # The evicted client was not closed: whoever still holds it can go on.
    assert (await held.get_dialog(chat_id=6)).chat_id == 6
    assert a.stats.refreshes == 1


async def test_idle_portals_are_evicted_and_come_back(served: Served) -> None:
    app = served.app
    a, b = served.portal(0), served.portal(1)
    await served.install(0)
    await served.install(1)
    await app.portal(a.member_id).get_dialog(chat_id=2)
    served.clock.now += 61.0
    await app.portal(b.member_id).get_dialog(chat_id=2)  # the sweep runs here
    assert not app.is_live(a.member_id)
    assert app.is_live(b.member_id)
    assert (await app.portal(a.member_id).get_dialog(chat_id=3)).chat_id == 3
    assert a.stats.refreshes == 0


async def test_a_portal_with_a_call_in_flight_is_not_evicted(served: Served) -> None:
    app = served.app
    a, b, c = served.portal(0), served.portal(1), served.portal(2)
    for index in range(3):
        await served.install(index)
    a.set_faults(Faults(slow=1.0, slow_seconds=0.5))
    in_flight = asyncio.ensure_future(app.portal(a.member_id).get_dialog(chat_id=2))
    await asyncio.sleep(0)  # the call has entered the client: its answer is slow
    assert app.portal(a.member_id).calls_in_flight == 1
    app.portal(b.member_id)
    app.portal(c.member_id)  # past max_live: A is the oldest, but busy
    assert app.is_live(a.member_id)
    assert not app.is_live(b.member_id)
    assert (await in_flight).chat_id == 2


async def test_uninstall_removes_the_portals_state(served: Served) -> None:
    app = served.app
    a, b = served.portal(0), served.portal(1)
    await served.install(0)
    await served.install(1)
    await app.portal(a.member_id).get_dialog(chat_id=2)
    # A forged uninstall (B's token) changes nothing.
    forged = await a.send_event(
        served.url, "ONAPPUNINSTALL", {"CLEAN": "0"}, application_token=b.application_token
    )
    assert forged == 403
    assert await app.store.load(a.member_id) is not None
    assert await a.send_event(served.url, "ONAPPUNINSTALL", {"CLEAN": "0"}) == 200
    assert not app.is_live(a.member_id)
    assert await app.store.load(a.member_id) is None
    assert await app.application_token(a.member_id) is None
    assert await a.send_event(served.url, "ONOPENLINEMESSAGEADD", MESSAGE) == 403
    with pytest.raises(AuthError) as caught:
        await app.portal(a.member_id).get_dialog(chat_id=2)
    assert caught.value.code == "NO_TOKENS"
    # B is untouched.
    assert (await app.portal(b.member_id).get_dialog(chat_id=2)).chat_id == 2


async def test_each_portal_has_its_own_bucket() -> None:
    """Two portals, burst 5 each: 5 calls to each at once pass; the portals keep apart."""
    async with FakePortalHost(2, dialogs=10, rate=0.5, burst=5) as host:
        async with host.client_session() as http:
            app = OpenLinesApp(
                client_id=host.client_id,
                client_secret=host.client_secret,
                session=http,
                rate_limit=RateLimit(requests_per_second=0.5, burst=5, headroom=0),
                retry=RetryPolicy.no_wait(),
                verify_install=False,
            )
            for portal in host.portals:
                tokens = OAuthTokens.from_response(portal.issue_tokens())
                await app.register(portal.member_id, tokens, portal.application_token)

            async def five(member_id: str) -> list[Any]:
                client = app.portal(member_id)
                return await asyncio.gather(*(client.get_dialog(chat_id=i) for i in range(1, 6)))

            answers = await asyncio.wait_for(
                asyncio.gather(*(five(p.member_id) for p in host.portals)), 10
            )
            assert [len(a) for a in answers] == [5, 5]
            for portal in host.portals:
                assert portal.stats.rejections.get("QUERY_LIMIT_EXCEEDED", 0) == 0
                assert portal.stats.by_method["imopenlines.dialog.get"] == 5
            await app.close()


class _NetworkedStore(InMemoryTokenStore):
    """Answers a load after a suspension, as a store across the network (Redis) does."""

    async def load(self, key: str) -> OAuthTokens | None:
        await asyncio.sleep(0)
        return await super().load(key)


async def test_a_new_live_portals_first_calls_count_in_its_own_bucket() -> None:
    """A portal made live from a networked store: its first burst and the next calls
    share one bucket (the portal's address), so the portal refuses none of them."""
    async with FakePortalHost(1, dialogs=10, rate=5.0, burst=5) as host:
        async with host.client_session() as http:
            app = OpenLinesApp(
                client_id=host.client_id,
                client_secret=host.client_secret,
                store=_NetworkedStore(),
                session=http,
                rate_limit=RateLimit(requests_per_second=5.0, burst=5, headroom=1),
                verify_install=False,
            )
            portal = host.portals[0]
            tokens = OAuthTokens.from_response(portal.issue_tokens())
            await app.register(portal.member_id, tokens, portal.application_token)
            client = app.portal(portal.member_id)
            for _ in range(2):  # a full burst, then another one that must wait
                await asyncio.wait_for(
                    asyncio.gather(*(client.get_dialog(chat_id=i) for i in range(1, 6))), 20
                )
            await app.close()
    assert portal.stats.rejections.get("QUERY_LIMIT_EXCEEDED", 0) == 0
    assert portal.stats.by_method["imopenlines.dialog.get"] == 10


async def test_an_unknown_host_name_is_not_a_portal() -> None:
    async with FakePortalHost(1, dialogs=1) as host, host.client_session() as http:
        url = f"http://nobody.localhost:{host.port}/rest/server.time.json"
        async with http.post(url) as response:
            assert response.status == 404
