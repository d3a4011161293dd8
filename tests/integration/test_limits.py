"""The client's limits and retries against the fake portal's bucket and time budget.

The client's limiter and the portal's bucket run on one virtual clock (see
``tests/_virtual_time.py``), the operating-time budget on a clock that moves only when the
budget sleeps: each test asserts what was decided (when each request went, what was
waited, what the portal answered), never how long anything took. How close real runs get
to the portal's bound, with no 503, is the ``rate_limited_single`` and
``rate_limited_batch`` benchmarks' figure (``benchmarks/rate_limited.py``).
"""

from __future__ import annotations

import asyncio
import time

import pytest
from _virtual_time import PacedLimiter, VirtualTime

import bitrix_openlines.ratelimit
from bitrix_openlines import DialogGet, OpenLinesClient, RateLimit, RetryPolicy, WebhookAuth
from bitrix_openlines.errors import (
    AccessError,
    DecodeError,
    OpenLinesError,
    ServerError,
    TransportError,
)
from bitrix_openlines.ratelimit import OperatingBudget
from bitrix_openlines.testing import FakePortal, Faults

pytestmark = pytest.mark.integration


class SteppedTime:
    """One clock for the portal, the operating budget and the retry policy.

    It moves only when something sleeps on it, by what was asked; ``sleeps`` records
    every wait. :meth:`unix` is the budget's Unix clock: it starts at the real time taken
    before the portal is made, so it is never ahead of the portal's own Unix time (which
    starts at the real time the portal was made, and follows this clock after).
    """

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []
        self._unix_start = time.time()

    def __call__(self) -> float:
        return self.now

    def unix(self) -> float:
        return self._unix_start + (self.now - 1000.0)

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += max(0.0, seconds)
        await asyncio.sleep(0)


async def test_200_concurrent_calls_at_2_per_second_burst_50_go_on_the_portals_schedule() -> None:
    # The issue's own figures: 200 calls, 2/s, burst 50 -> (200 - 50) / 2 = 75 s minimum.
    limit = RateLimit.standard()
    clock = VirtualTime()
    limiter = PacedLimiter(limit, clock)
    async with FakePortal(dialogs=50, rate=2.0, burst=50, clock=clock) as portal:
        async with OpenLinesClient(WebhookAuth(portal.webhook_url), limiter=limiter) as client:
            dialogs = await clock.run(
                asyncio.gather(*(client.get_dialog(chat_id=i % 50 + 1) for i in range(200))),
                limiter=limiter,
                arrived=lambda: portal.stats.requests,
            )
        assert [d.id for d in dialogs] == [i % 50 + 1 for i in range(200)]
        # The portal, on the same clock, accepted every request as it came.
        assert portal.stats.rejections.get("QUERY_LIMIT_EXCEEDED", 0) == 0
        assert portal.stats.requests == 200
    # The schedule: the usable burst (49: one slot of headroom) at once, then one request
    # every 0.5 s, first come first served. No faster than the portal allows (it would
    # have refused), and only the headroom slot (0.5 s) slower.
    assert limit.usable_burst == 49
    assert limiter.offsets() == [0.0] * 49 + [0.5 * k for k in range(1, 152)]
    minimum = limit.minimum_seconds(200)
    assert minimum == 75.0
    assert limiter.offsets()[-1] == minimum + 0.5


async def test_concurrent_calls_with_10_percent_faults_all_end_right() -> None:
    faults = Faults(internal_error=0.03, bad_gateway=0.03, drop=0.02, truncate=0.02, seed=11)
    clock = VirtualTime()
    limiter = PacedLimiter(RateLimit(requests_per_second=50.0, burst=50), clock)
    async with FakePortal(
        dialogs=60, forbidden=[7], rate=50.0, burst=50, faults=faults, clock=clock
    ) as portal:
        async with OpenLinesClient(
            WebhookAuth(portal.webhook_url),
            limiter=limiter,
            retry=RetryPolicy.no_wait(max_attempts=4),
        ) as client:
            results = await clock.run(
                asyncio.gather(
                    *(client.get_dialog(chat_id=i % 60 + 1) for i in range(300)),
                    return_exceptions=True,
                ),
                limiter=limiter,
                arrived=lambda: portal.stats.requests,
            )
        assert sum(portal.stats.faults.values()) > 10
        # Retries go through the bucket like first attempts: the portal refused none.
        assert portal.stats.rejections.get("QUERY_LIMIT_EXCEEDED", 0) == 0
        assert portal.stats.requests == limiter.reserved > 300
    for i, result in enumerate(results):
        chat_id = i % 60 + 1
        if chat_id == 7:
            assert isinstance(result, AccessError), result
        elif isinstance(result, OpenLinesError):
            # Only a fault that struck every one of the 4 attempts may remain.
            assert isinstance(result, ServerError | DecodeError | TransportError), result
        else:
            assert not isinstance(result, BaseException), result
            assert result.id == chat_id
    failures = [r for r in results if isinstance(r, ServerError | DecodeError | TransportError)]
    assert len(failures) <= 2  # 10% per attempt, 4 attempts: about 0.01% of 300 calls


async def test_operation_time_limit_pauses_only_its_method() -> None:
    # Each dialog.get costs 1 s of (simulated) execution; the budget is 3 s per 2 s window.
    clock = SteppedTime()
    async with FakePortal(
        dialogs=10,
        rate=None,
        operating_limit=3.0,
        operating_window=2.0,
        operating_cost=1.0,
        clock=clock,
    ) as portal:
        budget = OperatingBudget(
            limit=3.0, headroom=0.0, fallback_pause=0.2, clock=clock.unix, sleep=clock.sleep
        )
        async with OpenLinesClient(
            WebhookAuth(portal.webhook_url),
            rate_limit=None,
            operating_budget=budget,
            retry=RetryPolicy(
                max_attempts=3,
                deadline=10.0,
                base_delay=0.0,
                max_delay=0.0,
                jitter=False,
                sleep=clock.sleep,
                clock=clock,
            ),
        ) as client:
            for chat_id in range(1, 4):  # 3 s spent: the whole budget
                answer = await client.call_response(DialogGet(chat_id=chat_id))
            assert answer.time is not None
            assert answer.time.operating_reset_at is not None
            # Paused until one second past the reset the portal reported.
            until = budget.paused_until("imopenlines.dialog.get")
            assert until == answer.time.operating_reset_at + 1
            # Another method is not paused: it goes without waiting.
            await client.call_raw("imopenlines.revision.get")
            assert clock.sleeps == []
            # dialog.get waits for the reset, exactly to the end of the pause, then
            # succeeds: the portal's window had moved on.
            pause = until - clock.unix()
            dialog = await client.get_dialog(chat_id=4)
        assert dialog.id == 4
        assert clock.sleeps == [pytest.approx(pause)]
        assert pause > 2.0  # the reset is a whole window after the first call
        assert portal.stats.rejections.get("OPERATION_TIME_LIMIT", 0) == 0


async def test_a_429_pauses_its_method_until_the_reset() -> None:
    clock = SteppedTime()
    async with FakePortal(
        dialogs=10,
        rate=None,
        operating_limit=2.0,
        operating_window=2.0,
        operating_cost=1.0,
        clock=clock,
    ) as portal:
        # The client does not know the limit (it thinks it is 480 s): it meets the 429.
        budget = OperatingBudget(fallback_pause=0.3, clock=clock.unix, sleep=clock.sleep)
        async with OpenLinesClient(
            WebhookAuth(portal.webhook_url),
            rate_limit=None,
            operating_budget=budget,
            retry=RetryPolicy(
                max_attempts=3,
                deadline=10.0,
                base_delay=0.0,
                max_delay=0.0,
                jitter=False,
                sleep=clock.sleep,
                clock=clock,
            ),
        ) as client:
            for chat_id in range(1, 4):
                answer = await client.call_response(DialogGet(chat_id=chat_id))
                assert answer.result.id == chat_id
            assert answer.time is not None
            assert answer.time.operating_reset_at is not None
            reset_at = answer.time.operating_reset_at
            assert clock.sleeps == []
            for chat_id in range(4, 6):
                dialog = await client.get_dialog(chat_id=chat_id)
                assert dialog.id == chat_id
            await client.call_raw("imopenlines.revision.get")
        # One 429: the method was then paused until one second past the reset it last
        # reported (one wait, no other), and the retry went through.
        assert portal.stats.rejections == {"OPERATION_TIME_LIMIT": 1}
        waits = [seconds for seconds in clock.sleeps if seconds > 0]
        assert len(waits) == 1
        assert clock.unix() == pytest.approx(reset_at + 1)
        assert portal.stats.by_method["imopenlines.dialog.get"] == 6
        assert portal.stats.by_method["imopenlines.revision.get"] == 1


async def test_clients_of_one_portal_in_one_process_share_its_bucket(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A web app making a client per request must not multiply the portal's bucket.
    limit = RateLimit(requests_per_second=10.0, burst=20)
    clock = VirtualTime()
    shared = PacedLimiter(limit, clock)
    # This process's one limiter for ``limit`` runs on virtual time; the clients find it
    # through LeakyBucketLimiter.shared, as every client built with rate_limit= does.
    monkeypatch.setitem(bitrix_openlines.ratelimit._SHARED, limit, shared)
    async with FakePortal(dialogs=20, rate=10.0, burst=20, clock=clock) as portal:
        clients = [
            OpenLinesClient(WebhookAuth(portal.webhook_url), rate_limit=limit) for _ in range(3)
        ]
        assert all(c.limiter is shared for c in clients)
        try:
            await clock.run(
                asyncio.gather(
                    *(clients[i % 3].get_dialog(chat_id=i % 20 + 1) for i in range(45))
                ),
                limiter=shared,
                arrived=lambda: portal.stats.requests,
            )
        finally:
            for client in clients:
                await client.close()
        assert portal.stats.rejections.get("QUERY_LIMIT_EXCEEDED", 0) == 0
    # One schedule for the three clients: the usable burst (19) at once, then one request
    # every 0.1 s, the last no sooner than the portal allows 45: (45 - 20) / 10 = 2.5 s.
    offsets = shared.offsets()
    expected = [0.0] * 19 + [0.1 * k for k in range(1, 27)]
    assert offsets == pytest.approx(expected, abs=1e-9)
    assert offsets[-1] >= limit.minimum_seconds(45)
