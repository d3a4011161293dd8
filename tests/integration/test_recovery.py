"""Every failure path recovers: refresh, cancellation, close (over real sockets).

Each test is one production fault against the fake portal, and asserts what the SDK does
*after* it: the pair kept, the slot given back, the documented error, the next call good.
Time is a fake clock wherever a wait matters, so the assertions are decisions.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
import weakref
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from bitrix_openlines import (
    InMemoryTokenStore,
    OAuthAuth,
    OAuthTokens,
    OpenLinesClient,
    RateLimit,
    RetryPolicy,
    SyncOpenLinesClient,
    WebhookAuth,
)
from bitrix_openlines.errors import ClientClosedError, OpenLinesError, TokenStoreError
from bitrix_openlines.ratelimit import LeakyBucketLimiter
from bitrix_openlines.testing import FakePortal, Faults, ThreadedFakePortal

pytestmark = pytest.mark.integration


class Clock:
    """A monotonic clock moved only by the limiter's sleeps (each to its slot's time)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += max(0.0, seconds)
        await asyncio.sleep(0)


class FlakyStore(InMemoryTokenStore):
    """A token store whose ``save`` or ``load`` fails the first ``n`` times (a Redis blip)."""

    def __init__(self, *, failing_saves: int = 0, failing_loads: int = 0) -> None:
        super().__init__()
        self.failing_saves = failing_saves
        self.failing_loads = failing_loads
        self.saves = 0

    async def save(self, key: str, tokens: OAuthTokens) -> None:
        if self.failing_saves > 0:
            self.failing_saves -= 1
            # A store error that quotes what it failed to store.
            raise ConnectionError(f"timeout while storing {tokens.refresh_token}")
        self.saves += 1
        await super().save(key, tokens)

    async def load(self, key: str) -> OAuthTokens | None:
        if self.failing_loads > 0:
            self.failing_loads -= 1
            raise TokenStoreError("the store is unreachable")
        return await super().load(key)


def _oauth(
    portal: FakePortal, *, store: InMemoryTokenStore | None = None, **kwargs: Any
) -> OAuthAuth:
    tokens = OAuthTokens.from_response(portal.issue_tokens())
    if store is not None:
        kwargs.update(store=store, key=portal.member_id)
    return OAuthAuth(
        client_id=portal.client_id,
        client_secret=portal.client_secret,
        tokens=tokens,
        token_url=kwargs.pop("token_url", portal.token_url),
        **kwargs,
    )


async def _until(condition: Callable[[], bool]) -> None:
    """Wait until the portal has seen what a test needs (a bounded poll of its stats)."""
    async with asyncio.timeout(10.0):
        while not condition():  # noqa: ASYNC110 - polling another party's counters
            await asyncio.sleep(0.005)


@asynccontextmanager
async def _client(auth: Any, **kwargs: Any) -> AsyncIterator[OpenLinesClient]:
    kwargs.setdefault("rate_limit", None)
    kwargs.setdefault("retry", RetryPolicy.no_wait())
    async with OpenLinesClient(auth, **kwargs) as client:
        yield client


# -- 1. a failed refresh never sticks, and never loses the new pair ---------------------


async def test_a_store_that_fails_to_save_keeps_the_new_pair() -> None:
    handed: list[OAuthTokens] = []
    async with FakePortal(dialogs=5, rate=None) as portal:
        store = FlakyStore()
        auth = _oauth(portal, store=store, on_refresh=handed.append)
        async with _client(auth) as client:
            assert (await client.get_dialog(chat_id=1)).id == 1  # seeds the store
            store.failing_saves = 1
            portal.expire_access_tokens()
            # The refresh spends the refresh token; the save fails; the call still works
            # with the new pair, which went to on_refresh at once, and the replay saved
            # it again before it went out.
            assert (await client.get_dialog(chat_id=2)).id == 2
            assert store.failing_saves == 0
            assert [t.access_token for t in handed] == [auth.tokens.access_token]
            assert await store.load(portal.member_id) == auth.tokens
            assert (await client.get_dialog(chat_id=3)).id == 3
        assert portal.stats.refreshes == 1
        assert portal.stats.rejections.get("invalid_grant", 0) == 0


async def test_a_store_that_fails_during_the_refresh_is_asked_again() -> None:
    async with FakePortal(dialogs=5, rate=None) as portal:
        store = FlakyStore()
        auth = _oauth(portal, store=store)
        async with _client(auth) as client:
            assert (await client.get_dialog(chat_id=1)).id == 1
            portal.expire_access_tokens()
            store.failing_loads = 1  # the load under the refresh lock fails once
            with pytest.raises(TokenStoreError):
                await client.get_dialog(chat_id=2)
            # Not cached: the next call refreshes and works.
            assert (await client.get_dialog(chat_id=2)).id == 2
        assert portal.stats.refreshes == 1


async def test_a_store_error_quoting_a_token_is_redacted(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="bitrix_openlines")
    async with FakePortal(dialogs=5, rate=None) as portal:
        store = FlakyStore()
        auth = _oauth(portal, store=store)
        async with _client(auth) as client:
            await client.get_dialog(chat_id=1)
            store.failing_saves = 1
            portal.expire_access_tokens()
            await client.get_dialog(chat_id=2)
        logged = "\n".join(r.getMessage() for r in caplog.records)
        assert "failed to save the refreshed pair" in logged
        assert auth.tokens.refresh_token not in logged


async def test_a_refused_refresh_token_is_final_but_a_newer_stored_pair_is_used() -> None:
    async with FakePortal(dialogs=5, rate=None) as portal:
        store = InMemoryTokenStore()
        first = _oauth(portal, store=store)
        async with _client(first) as client:
            await client.get_dialog(chat_id=1)
        # Another installation, with its own store, spends the refresh token of the pair.
        second = OAuthAuth(
            client_id=portal.client_id,
            client_secret=portal.client_secret,
            tokens=first.tokens,
            token_url=portal.token_url,
        )
        portal.expire_access_tokens()
        async with _client(second) as other:
            await other.get_dialog(chat_id=1)
        async with _client(first) as client:
            with pytest.raises(OpenLinesError) as caught:
                await client.get_dialog(chat_id=2)
            assert caught.value.code == "invalid_grant"
            asked = portal.stats.token_requests
            with pytest.raises(OpenLinesError):
                await client.get_dialog(chat_id=2)
            assert portal.stats.token_requests == asked  # the verdict is not asked again
            # A newer pair appears in the store (refreshed elsewhere): it is used.
            await store.save(portal.member_id, second.tokens)
            assert (await client.get_dialog(chat_id=2)).id == 2


# -- 2. no refresh depends on the client that started it ---------------------------------


async def test_a_refresh_outlives_the_cancelled_and_closed_client_that_started_it() -> None:
    async with FakePortal(dialogs=5, rate=None, faults=Faults(token_delay=1.5)) as portal:
        auth = _oauth(portal)
        first = OpenLinesClient(auth, rate_limit=None, retry=RetryPolicy.no_wait())
        second = OpenLinesClient(auth, rate_limit=None, retry=RetryPolicy.no_wait())
        await first.get_dialog(chat_id=1)
        portal.expire_access_tokens()
        started = asyncio.ensure_future(first.get_dialog(chat_id=2))
        await _until(lambda: portal.stats.token_requests > 0)  # the refresh is in flight
        waiting = asyncio.ensure_future(second.get_dialog(chat_id=3))
        started.cancel()
        await first.close()
        assert (await waiting).id == 3
        await second.close()
        assert started.cancelled()  # the caller's own cancel stays a cancellation
        assert portal.stats.refreshes == 1
        assert portal.stats.rejections.get("invalid_grant", 0) == 0


# -- 4. the token server is the pair's own ------------------------------------------------


async def test_without_a_token_url_the_pair_names_its_token_server() -> None:
    # The fake portal's pairs name it as their server_endpoint (a loopback host).
    async with FakePortal(dialogs=5, rate=None) as portal:
        auth = _oauth(portal, token_url=None)
        async with _client(auth) as client:
            await client.get_dialog(chat_id=1)
            portal.expire_access_tokens()
            assert (await client.get_dialog(chat_id=2)).id == 2
        assert portal.stats.refreshes == 1


# -- 5. cancelled waiters give their slots back -------------------------------------------


async def test_cancelled_waiters_give_their_bucket_slots_back() -> None:
    clock = Clock()
    never = asyncio.Event()

    async def blocked(_: float) -> None:
        await never.wait()  # a wait that only ends by cancellation

    limiter = LeakyBucketLimiter(RateLimit(2.0, burst=5), clock=clock, sleep=blocked)
    async with FakePortal(dialogs=80, rate=None) as portal:
        async with _client(WebhookAuth(portal.webhook_url), limiter=limiter) as client:
            calls = [asyncio.ensure_future(client.get_dialog(chat_id=i)) for i in range(1, 61)]
            await _until(lambda: portal.stats.requests >= 4)
            await asyncio.sleep(0.05)
            for call in calls:
                call.cancel()
            outcomes = await asyncio.gather(*calls, return_exceptions=True)
        portal_url = client.auth.portal
    sent = [o for o in outcomes if not isinstance(o, BaseException)]
    # The usable bucket (5 - 1 slot of headroom) went out at once; the 56 waiters were
    # cancelled, and only the 4 sent requests remain in the limiter's bucket.
    assert len(sent) == 4
    assert limiter.level(portal_url) == pytest.approx(4.0)
    # A fresh client's first call waits one drain (0.5 s at 2/s) for those 4, not the
    # 28 s that 60 reservations would cost.
    assert limiter.reserve(portal_url) == pytest.approx(0.5)


# -- 6. credentials are taken after the slot wait ----------------------------------------


async def test_calls_that_wait_past_the_token_expiry_go_out_with_a_fresh_token() -> None:
    # 100 calls at 50/s take 2 s of slots; tokens live 0.4 s. Each call takes its
    # credentials after its slot wait, so none goes out with a token that expired while
    # it waited, and a replay that waited again takes the token current then.
    async with FakePortal(dialogs=120, rate=None, access_token_ttl=0.4) as portal:
        auth = _oauth(portal)
        limiter = LeakyBucketLimiter(RateLimit(50.0, burst=10))
        async with _client(auth, limiter=limiter) as client:
            results = await asyncio.gather(
                *(client.get_dialog(chat_id=i) for i in range(1, 101)), return_exceptions=True
            )
    assert [r.id if not isinstance(r, BaseException) else r for r in results] == list(
        range(1, 101)
    )
    assert portal.stats.refreshes >= 1


# -- 7. a rate-limit answer inside a batch slows the client ------------------------------


async def test_a_rate_limit_inside_a_batch_slows_the_client_and_teaches_the_limiter() -> None:
    clock = Clock()
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        await asyncio.sleep(0)

    policy = RetryPolicy(
        max_attempts=5, deadline=None, rate_limit_pause=0.0, jitter=False, sleep=sleep
    )
    faults = Faults(command_query_limit=0.3, seed=7)
    async with FakePortal(dialogs=200, rate=None, faults=faults) as portal:
        async with _client(WebhookAuth(portal.webhook_url), retry=policy) as client:
            outcomes = await client.get_dialogs([{"chat_id": i} for i in range(1, 201)])
        refused = portal.stats.faults["command_query_limit"]
        batches = portal.stats.requests
    assert [o.dialog.id for o in outcomes if o.dialog] == list(range(1, 201))
    assert refused > 0
    # Without a limiter: one drain of the standard bucket (0.5 s) after a batch with a
    # refusal, and no other wait (the order is checked in tests/unit/test_batch_rate_limit.py).
    assert waits.count(0.5) >= 1
    assert set(waits) <= {0.0, 0.5}
    assert waits.count(0.5) < batches

    penalties: list[str] = []

    class Recording(LeakyBucketLimiter):
        async def penalize(self, portal: str) -> None:
            penalties.append(portal)
            await super().penalize(portal)

    limiter = Recording(RateLimit(1000.0, burst=50), clock=clock, sleep=clock.sleep)
    async with FakePortal(dialogs=200, rate=None, faults=faults) as portal:
        async with _client(WebhookAuth(portal.webhook_url), limiter=limiter) as client:
            outcomes = await client.get_dialogs([{"chat_id": i} for i in range(1, 201)])
    assert all(o.ok for o in outcomes)
    assert penalties, "the limiter learned that the portal's bucket was full"


# -- 8. close() with calls in flight ------------------------------------------------------


async def test_close_ends_calls_in_flight_with_client_closed_error() -> None:
    faults = Faults(slow=1.0, slow_seconds=5.0)
    async with FakePortal(dialogs=100, rate=None, faults=faults) as portal:
        client = OpenLinesClient(
            WebhookAuth(portal.webhook_url), rate_limit=None, retry=RetryPolicy.no_wait()
        )
        calls = [asyncio.ensure_future(client.get_dialog(chat_id=i)) for i in range(1, 41)]
        job = asyncio.ensure_future(client.get_dialogs([{"chat_id": i} for i in range(1, 121)]))
        await _until(lambda: portal.stats.requests >= 41)
        await client.close()
        ended = await asyncio.gather(*calls, return_exceptions=True)
        outcomes = await job
    assert [type(e) for e in ended] == [ClientClosedError] * 40
    assert [o.index for o in outcomes] == list(range(120))
    assert {type(o.error) for o in outcomes} == {ClientClosedError}
    with pytest.raises(ClientClosedError):
        await client.get_dialog(chat_id=1)


# -- 9. the sync facade -------------------------------------------------------------------


def test_sync_close_from_another_thread_ends_the_waiting_call() -> None:
    with ThreadedFakePortal(
        dialogs=10, rate=None, faults=Faults(slow=1.0, slow_seconds=30)
    ) as fake:
        client = SyncOpenLinesClient(WebhookAuth(fake.webhook_url), rate_limit=None)
        errors: list[BaseException] = []

        def call() -> None:
            try:
                client.get_dialog(chat_id=1)
            except BaseException as exc:
                errors.append(exc)

        waiter = threading.Thread(target=call)
        waiter.start()
        while fake.stats.requests < 1:
            threading.Event().wait(0.01)
        closer = threading.Thread(target=client.close)
        closer.start()
        closer.join(10)
        waiter.join(10)
        assert not closer.is_alive()
        assert not waiter.is_alive()
    assert [type(e) for e in errors] == [ClientClosedError]


def test_sync_close_with_an_open_stream_leaves_no_pending_task(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR)
    with ThreadedFakePortal(dialogs=300, rate=None) as fake:
        client = SyncOpenLinesClient(WebhookAuth(fake.webhook_url), rate_limit=None)
        stream = client.iter_dialogs({"chat_id": i} for i in range(1, 301))
        first = next(stream)
        assert first.ok
        client.close()
        del stream
        gc.collect()
    assert not [r for r in caplog.records if "was destroyed but it is pending" in r.getMessage()]


# -- 10. nothing keeps a client alive -----------------------------------------------------


async def test_unclosed_clients_of_one_auth_are_collected() -> None:
    async with FakePortal(dialogs=5, rate=None) as portal:
        auth = _oauth(portal)
        refs: list[weakref.ref[OpenLinesClient]] = []
        for _ in range(10_000):
            refs.append(weakref.ref(OpenLinesClient(auth, rate_limit=None)))
        gc.collect()
        assert sum(ref() is not None for ref in refs) == 0
        async with _client(auth) as client:  # the auth still works
            assert (await client.get_dialog(chat_id=1)).id == 1
