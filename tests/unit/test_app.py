"""OpenLinesApp: portals on demand, the eviction policy, event routing (HTTP mocked)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from _unit_helpers import (
    CLIENT_ID,
    CLIENT_SECRET,
    OAUTH_ENDPOINT,
    FakeClock,
    dialog_example,
    error_body,
    oauth_url,
)
from aioresponses import CallbackResult, aioresponses

from bitrix_openlines import (
    Eviction,
    InMemoryTokenStore,
    OAuthTokens,
    OpenLinesApp,
    RetryPolicy,
    TokenStore,
)
from bitrix_openlines.errors import (
    DecodeError,
    EventError,
    EventVerificationError,
    OverloadError,
    ServerError,
    TokenStoreError,
    TransportError,
)
from bitrix_openlines.events import EventLimits
from bitrix_openlines.ratelimit import LeakyBucketLimiter, OperatingBudget, RateLimit

MEMBERS = [f"{i:032x}" for i in range(1, 6)]
APP_TOKEN = "51856fefc120afa4b628cc82d3935cce"


def pair(access: str = "access-1", refresh: str = "refresh-1") -> OAuthTokens:
    return OAuthTokens(access_token=access, refresh_token=refresh, client_endpoint=OAUTH_ENDPOINT)


def make_app(**kwargs: Any) -> OpenLinesApp:
    kwargs.setdefault("rate_limit", None)
    kwargs.setdefault("retry", RetryPolicy.no_wait())
    return OpenLinesApp(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, **kwargs)


@asynccontextmanager
async def app_with(**kwargs: Any) -> AsyncIterator[OpenLinesApp]:
    async with aiohttp.ClientSession() as http:
        kwargs.setdefault("session", http)
        async with make_app(**kwargs) as app:
            yield app


def event_body(name: str, member_id: str | None, token: str | None, **auth: Any) -> str:
    block: dict[str, Any] = dict(auth)
    if member_id is not None:
        block["member_id"] = member_id
    if token is not None:
        block["application_token"] = token
    return json.dumps({"event": name, "data": {"VERSION": "1"}, "auth": block})


def install_body(member_id: str, token: str = APP_TOKEN) -> str:
    return event_body(
        "ONAPPINSTALL",
        member_id,
        token,
        access_token="install-access",
        refresh_token="install-refresh",
        client_endpoint=OAUTH_ENDPOINT,
        expires_in=3600,
    )


# -- construction --------------------------------------------------------------------


class PairsOnly(TokenStore):
    """A store of pairs only (the optional application-token methods left out)."""

    async def load(self, key: str) -> OAuthTokens | None:
        return None

    async def save(self, key: str, tokens: OAuthTokens) -> None:
        return None

    def lock(self, key: str) -> asyncio.Lock:
        return asyncio.Lock()


def test_a_store_without_application_tokens_is_refused() -> None:
    assert not PairsOnly.keeps_app_tokens()
    assert InMemoryTokenStore.keeps_app_tokens()
    with pytest.raises(TypeError, match="store must implement load_app_token"):
        make_app(store=PairsOnly())


async def test_the_optional_store_methods_raise_not_implemented() -> None:
    store = PairsOnly()
    with pytest.raises(NotImplementedError):
        await store.load_app_token("k")
    with pytest.raises(NotImplementedError):
        await store.save_app_token("k", "t")
    with pytest.raises(NotImplementedError):
        await store.delete("k")


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"client_id": ""}, ValueError, "client_id"),
        ({"client_secret": ""}, ValueError, "client_secret"),
        ({"store": object()}, TypeError, "store must be a TokenStore"),
        ({"session": object()}, TypeError, "session"),
        ({"limiter": object()}, TypeError, "limiter"),
        ({"eviction": 5}, TypeError, "eviction"),
        ({"token_url": "ftp://x/"}, ValueError, "token_url"),
    ],
)
def test_bad_arguments_are_refused_naming_them(
    kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    options: dict[str, Any] = {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
    options.update(kwargs)
    with pytest.raises(error, match=match):
        OpenLinesApp(**options)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"max_live": 0}, "max_live"),
        ({"max_live": True}, "max_live"),
        ({"idle_seconds": 0}, "idle_seconds"),
        ({"sweep_seconds": -1}, "sweep_seconds"),
    ],
)
def test_eviction_refuses_bad_values(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Eviction(**kwargs)


def test_eviction_defaults() -> None:
    policy = Eviction()
    assert (policy.max_live, policy.idle_seconds, policy.sweep_interval) == (1000, 300.0, 30.0)
    assert Eviction(idle_seconds=5).sweep_interval == 1.0


def test_the_secret_is_not_in_the_repr() -> None:
    assert CLIENT_SECRET not in repr(make_app())


async def test_member_ids_are_checked_before_any_io() -> None:
    async with app_with() as app:
        with pytest.raises(ValueError, match="member_id"):
            app.portal("a:app")
        with pytest.raises(ValueError, match="member_id"):
            app.portal("")
        with pytest.raises(TypeError, match="member_id must be a str"):
            app.portal(5)  # type: ignore[arg-type]


# -- portals and eviction ------------------------------------------------------------


async def test_one_client_per_portal_with_its_own_budget() -> None:
    async with app_with() as app:
        a = app.portal(MEMBERS[0])
        assert app.portal(MEMBERS[0]) is a
        b = app.portal(MEMBERS[1])
        assert b is not a
        assert a.operating_budget is not b.operating_budget
        assert app.live == 2


async def test_past_max_live_the_least_recently_used_is_evicted() -> None:
    async with app_with(eviction=Eviction(max_live=2)) as app:
        a, b, c, d = MEMBERS[:4]
        app.portal(a)
        app.portal(b)
        app.portal(c)
        assert [app.is_live(m) for m in (a, b, c)] == [False, True, True]
        app.portal(b)  # now c is the least recently used
        app.portal(d)
        assert [app.is_live(m) for m in (b, c, d)] == [True, False, True]
        assert app.evictions == 2


async def test_idle_portals_are_swept_after_idle_seconds() -> None:
    clock = FakeClock(100.0)
    policy = Eviction(idle_seconds=10.0, sweep_seconds=1.0)
    async with app_with(eviction=policy, clock=clock) as app:
        app.portal(MEMBERS[0])
        clock.now += 5.0
        app.portal(MEMBERS[1])
        clock.now += 6.0  # the first idle 11 s, the second 6 s
        app.portal(MEMBERS[2])
        assert [app.is_live(m) for m in MEMBERS[:3]] == [False, True, True]
        clock.now += 20.0
        assert app.evict_idle() == 2
        assert app.live == 0


async def test_a_paused_portal_is_not_evicted() -> None:
    async with app_with(eviction=Eviction(max_live=1)) as app:
        client = app.portal(MEMBERS[0])
        client.operating_budget.pause("imopenlines.dialog.get")
        app.portal(MEMBERS[1])
        assert app.is_live(MEMBERS[0])  # its pause would be lost
        assert not app.evict(MEMBERS[0])


async def test_a_portal_with_an_unsaved_pair_is_not_evicted() -> None:
    async with app_with() as app:
        client = app.portal(MEMBERS[0])
        auth = client.auth
        assert not auth.busy  # type: ignore[attr-defined]
        auth._unsaved = pair()  # type: ignore[attr-defined]  # a refreshed pair not saved yet
        assert auth.busy  # type: ignore[attr-defined]
        assert not app.evict(MEMBERS[0])
        auth._unsaved = None  # type: ignore[attr-defined]
        assert app.evict(MEMBERS[0])


async def test_a_busy_portal_is_kept_and_an_evicted_client_still_works(
    docs_examples: Path,
) -> None:
    release = asyncio.Event()

    async def slow(url: Any, **kwargs: Any) -> CallbackResult:
        await release.wait()
        return CallbackResult(payload=dialog_example(docs_examples))

    store = InMemoryTokenStore()
    async with app_with(store=store, eviction=Eviction(max_live=1)) as app:
        await app.register(MEMBERS[0], pair(), APP_TOKEN)
        with aioresponses() as mocked:
            mocked.post(oauth_url("imopenlines.dialog.get"), callback=slow, repeat=True)
            client = app.portal(MEMBERS[0])
            call = asyncio.ensure_future(client.get_dialog(chat_id=1))
            await asyncio.sleep(0)
            assert client.calls_in_flight == 1
            app.portal(MEMBERS[1])
            assert app.is_live(MEMBERS[0])  # busy: kept past max_live
            release.set()
            await call
            assert app.evict(MEMBERS[0])
            # Evicted, not closed: the caller holding it goes on.
            assert (await client.get_dialog(chat_id=1)).chat_id > 0


async def test_the_sweep_prunes_empty_buckets() -> None:
    clock = FakeClock(0.0)
    limiter = LeakyBucketLimiter(RateLimit(requests_per_second=1.0, burst=10), clock=clock)
    async with app_with(
        limiter=limiter, clock=clock, eviction=Eviction(idle_seconds=5.0, sweep_seconds=1.0)
    ) as app:
        limiter.reserve("https://a.bitrix24.com")
        limiter.reserve("https://b.bitrix24.com", 3)
        clock.now = 2.0
        app.evict_idle()
        assert limiter.level("https://a.bitrix24.com") == 0
        assert limiter.level("https://b.bitrix24.com") == 1.0
        assert set(limiter._tat) == {"https://b.bitrix24.com"}


def test_prune_forgets_only_empty_buckets() -> None:
    clock = FakeClock(0.0)
    limiter = LeakyBucketLimiter(RateLimit(requests_per_second=2.0, burst=10), clock=clock)
    limiter.reserve("a")
    limiter.reserve("b", 4)
    clock.now = 1.0
    assert limiter.prune() == 1
    assert limiter.level("b") == 2.0
    assert limiter.reserve("a") == 0.0  # a fresh bucket: what it was


def test_a_budget_is_pausing_only_during_a_pause() -> None:
    clock = FakeClock(1000.0)
    budget = OperatingBudget(clock=clock, sleep=clock.sleep)
    assert not budget.pausing
    budget.pause("imopenlines.dialog.get", 1010.0)
    assert budget.pausing
    clock.now = 1012.0
    assert not budget.pausing


async def test_a_closed_app_gives_no_portal() -> None:
    app = make_app()
    await app.close()
    with pytest.raises(RuntimeError, match="closed"):
        app.portal(MEMBERS[0])


# -- events --------------------------------------------------------------------------


async def test_install_stores_pair_and_token_then_events_are_verified() -> None:
    store = InMemoryTokenStore()
    async with app_with(store=store, verify_install=False) as app:
        event = await app.handle_event(install_body(MEMBERS[0]), "application/json")
        assert event.name == "ONAPPINSTALL"
        stored = await store.load(MEMBERS[0])
        assert stored is not None
        assert stored.access_token == "install-access"
        assert await store.load_app_token(MEMBERS[0]) == APP_TOKEN
        message = event_body("ONOPENLINEMESSAGEADD", MEMBERS[0], APP_TOKEN)
        assert (await app.handle_event(message, "application/json")).name == (
            "ONOPENLINEMESSAGEADD"
        )
        with pytest.raises(EventVerificationError, match="does not match"):
            await app.handle_event(
                event_body("ONOPENLINEMESSAGEADD", MEMBERS[0], "0" * 32), "application/json"
            )
        with pytest.raises(EventVerificationError, match="no application token is stored"):
            await app.handle_event(
                event_body("ONOPENLINEMESSAGEADD", MEMBERS[1], APP_TOKEN), "application/json"
            )
        with pytest.raises(EventVerificationError, match="member_id"):
            await app.handle_event(
                event_body("ONOPENLINEMESSAGEADD", None, APP_TOKEN), "application/json"
            )
        with pytest.raises(EventVerificationError, match="member_id"):
            await app.handle_event(
                event_body("ONOPENLINEMESSAGEADD", "x:app", APP_TOKEN), "application/json"
            )


async def test_an_event_is_parsed_within_the_limits_given_else_the_app_s() -> None:
    # The limits a handler reads a body within are the ones it is parsed within: a
    # handler's lower max_fields is not lost to the app's defaults.
    store = InMemoryTokenStore()
    async with app_with(store=store, verify_install=False) as app:
        assert app.event_limits == EventLimits()
        await app.handle_event(install_body(MEMBERS[0]), "application/json")
        message = event_body("ONOPENLINEMESSAGEADD", MEMBERS[0], APP_TOKEN)
        with pytest.raises(EventError, match="max_fields"):
            await app.handle_event(message, "application/json", limits=EventLimits(max_fields=2))
        # Without limits of its own, the event takes the app's: accepted.
        assert (await app.handle_event(message, "application/json")).name == (
            "ONOPENLINEMESSAGEADD"
        )
        with pytest.raises(TypeError, match="limits must be an EventLimits"):
            await app.handle_event(message, "application/json", limits=3)  # type: ignore[arg-type]
    capped = make_app(event_limits=EventLimits(max_fields=2))
    try:
        assert capped.event_limits == EventLimits(max_fields=2)
        with pytest.raises(EventError, match="max_fields"):
            await capped.handle_event(message, "application/json")
    finally:
        await capped.close()


async def test_a_reinstall_with_another_token_is_refused() -> None:
    store = InMemoryTokenStore()
    async with app_with(store=store, verify_install=False) as app:
        await app.handle_event(install_body(MEMBERS[0]), "application/json")
        with pytest.raises(EventVerificationError):
            await app.handle_event(install_body(MEMBERS[0], "f" * 32), "application/json")
        assert await store.load_app_token(MEMBERS[0]) == APP_TOKEN
        # With the trusted token, the new pair replaces the old, and a live client goes.
        app.portal(MEMBERS[0])
        await app.handle_event(install_body(MEMBERS[0]), "application/json")
        assert not app.is_live(MEMBERS[0])


async def test_an_install_without_tokens_is_an_event_error() -> None:
    async with app_with(verify_install=False) as app:
        with pytest.raises(EventError, match="lacks its tokens"):
            await app.handle_event(
                event_body("ONAPPINSTALL", MEMBERS[0], APP_TOKEN), "application/json"
            )
        with pytest.raises(EventError):
            await app.handle_event(b"not an event", "application/x-www-form-urlencoded")


async def test_install_checks_the_tokens_with_app_info() -> None:
    store = InMemoryTokenStore()
    async with app_with(store=store) as app:
        with aioresponses() as mocked:
            mocked.post(oauth_url("app.info"), payload={"result": {"INSTALLED": True}})
            await app.handle_event(install_body(MEMBERS[0]), "application/json")
            mocked.post(
                oauth_url("app.info"), status=401, payload=error_body("invalid_token"), repeat=True
            )
            # The refresh after invalid_token finds no OAuth server: refused all the same.
            with pytest.raises(EventVerificationError, match="do not work"):
                await app.handle_event(install_body(MEMBERS[1]), "application/json")
        assert await store.load(MEMBERS[0]) is not None
        assert await store.load(MEMBERS[1]) is None
        assert await store.load_app_token(MEMBERS[1]) is None


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        ({"status": 500, "payload": {"error": "INTERNAL_SERVER_ERROR"}}, ServerError),
        ({"status": 500, "body": "<html>down</html>"}, DecodeError),
        ({"status": 503, "payload": {"error": "OVERLOAD_LIMIT"}}, OverloadError),
        ({"exception": aiohttp.ClientConnectionError("refused")}, TransportError),
    ],
    ids=["server-error", "html-page", "overloaded", "unreachable"],
)
async def test_an_install_its_portal_cannot_check_now_is_not_refused(
    answer: dict[str, Any], error: type[Exception]
) -> None:
    # The portal failed, not the tokens: the error is the portal's (the handler answers
    # 503), nothing is stored, and the install goes through once the portal answers.
    store = InMemoryTokenStore()
    async with app_with(store=store) as app:
        with aioresponses() as mocked:
            mocked.post(oauth_url("app.info"), repeat=True, **answer)
            with pytest.raises(error) as caught:
                await app.handle_event(install_body(MEMBERS[0]), "application/json")
            assert not isinstance(caught.value, EventVerificationError)
            assert await store.load(MEMBERS[0]) is None
            assert await store.load_app_token(MEMBERS[0]) is None
        with aioresponses() as mocked:
            mocked.post(oauth_url("app.info"), payload={"result": {"INSTALLED": True}})
            await app.handle_event(install_body(MEMBERS[0]), "application/json")
        assert await store.load_app_token(MEMBERS[0]) == APP_TOKEN


async def test_uninstall_is_verified_then_removes_everything() -> None:
    store = InMemoryTokenStore()
    async with app_with(store=store, verify_install=False) as app:
        await app.handle_event(install_body(MEMBERS[0]), "application/json")
        app.portal(MEMBERS[0])
        with pytest.raises(EventVerificationError):
            await app.handle_event(
                event_body("ONAPPUNINSTALL", MEMBERS[0], "0" * 32), "application/json"
            )
        assert await store.load(MEMBERS[0]) is not None
        await app.handle_event(
            event_body("ONAPPUNINSTALL", MEMBERS[0], APP_TOKEN), "application/json"
        )
        assert await store.load(MEMBERS[0]) is None
        assert await store.load_app_token(MEMBERS[0]) is None
        assert not app.is_live(MEMBERS[0])


class FailingStore(InMemoryTokenStore):
    async def load_app_token(self, key: str) -> str | None:
        raise OSError(f"connection lost while reading {APP_TOKEN}")


async def test_a_failing_store_is_a_token_store_error_without_its_text() -> None:
    async with app_with(store=FailingStore()) as app:
        with pytest.raises(TokenStoreError) as caught:
            await app.handle_event(
                event_body("ONOPENLINEMESSAGEADD", MEMBERS[0], APP_TOKEN), "application/json"
            )
        assert APP_TOKEN not in str(caught.value)


async def test_register_checks_its_arguments() -> None:
    async with app_with() as app:
        with pytest.raises(TypeError, match="tokens"):
            await app.register(MEMBERS[0], "pair", APP_TOKEN)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="application_token"):
            await app.register(MEMBERS[0], pair(), "")


async def test_in_memory_store_keeps_and_deletes_application_tokens() -> None:
    store = InMemoryTokenStore()
    await store.save("k", pair())
    await store.save_app_token("k", APP_TOKEN)
    async with store.lock("k"):
        pass
    assert await store.load_app_token("k") == APP_TOKEN
    with pytest.raises(ValueError, match="application_token"):
        await store.save_app_token("k", "")
    await store.delete("k")
    assert await store.load("k") is None
    assert await store.load_app_token("k") is None
    assert store._locks == {}
    await store.delete("never")  # nothing to delete: no error
