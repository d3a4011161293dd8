"""The leaky bucket and the operating-time budget, on fake clocks."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from _unit_helpers import (
    DIALOG_GET,
    PORTAL,
    FakeClock,
    dialog_example,
    error_body,
    make_client,
    recorded,
    webhook_url,
)
from aioresponses import aioresponses

from bitrix_openlines import OpenLinesClient, RateLimit, RetryPolicy, WebhookAuth
from bitrix_openlines.errors import OperationTimeLimitError
from bitrix_openlines.ratelimit import LeakyBucketLimiter, OperatingBudget
from bitrix_openlines.types import TimeInfo

OTHER = "https://other.bitrix24.com"


def _limiter(rate: float = 2.0, burst: int = 5, headroom: int = 0) -> LeakyBucketLimiter:
    """A limiter on a fake clock; no headroom by default: it mirrors the portal exactly."""
    clock = FakeClock(100.0)
    return LeakyBucketLimiter(RateLimit(rate, burst, headroom), clock=clock, sleep=clock.sleep)


def _clock(limiter: LeakyBucketLimiter) -> FakeClock:
    clock = limiter._clock
    assert isinstance(clock, FakeClock)
    return clock


# -- RateLimit ---------------------------------------------------------------------------


def test_presets() -> None:
    assert RateLimit.standard() == RateLimit(requests_per_second=2.0, burst=50)
    assert RateLimit.enterprise() == RateLimit(requests_per_second=5.0, burst=250)
    assert RateLimit() == RateLimit.standard()
    # The client keeps a slot free by default (against skew); the portal's numbers stay.
    assert RateLimit.standard().usable_burst == 49
    assert RateLimit.enterprise().usable_burst == 249
    assert RateLimit(2.0, 50, headroom=0).usable_burst == 50
    assert RateLimit(2.0, 50, headroom=3).usable_burst == 47


@pytest.mark.parametrize(
    ("limit", "requests", "seconds"),
    [
        (RateLimit.standard(), 0, 0.0),
        (RateLimit.standard(), 50, 0.0),
        (RateLimit.standard(), 51, 0.5),
        (RateLimit.standard(), 150, 50.0),
        (RateLimit.enterprise(), 250, 0.0),
        (RateLimit.enterprise(), 1250, 200.0),
        (RateLimit(1.0, 1, 0), 10, 9.0),
    ],
)
def test_minimum_seconds(limit: RateLimit, requests: int, seconds: float) -> None:
    assert limit.minimum_seconds(requests) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"requests_per_second": 0}, "requests_per_second"),
        ({"requests_per_second": -2}, "requests_per_second"),
        ({"requests_per_second": "2"}, "requests_per_second"),
        ({"requests_per_second": True}, "requests_per_second"),
        ({"requests_per_second": float("nan")}, "requests_per_second"),
        ({"requests_per_second": float("inf")}, "requests_per_second"),
        ({"burst": 0}, "burst"),
        ({"burst": 2.5}, "burst"),
        ({"burst": True}, "burst"),
        ({"headroom": -1}, "headroom"),
        ({"burst": 5, "headroom": 5}, "headroom"),  # nothing left to use
        ({"headroom": 1.5}, "headroom"),
        ({"headroom": "1"}, "headroom"),
        ({"headroom": True}, "headroom"),
    ],
)
def test_rate_limit_validation_names_the_parameter(kwargs: dict[str, Any], name: str) -> None:
    with pytest.raises(ValueError, match=f"RateLimit.{name}"):
        RateLimit(**kwargs)


# -- LeakyBucketLimiter.reserve ----------------------------------------------------------


@pytest.mark.parametrize(("rate", "burst"), [(2.0, 5), (2.0, 50), (5.0, 250), (1.0, 1)])
def test_exactly_burst_immediate_slots_then_one_per_interval(rate: float, burst: int) -> None:
    limiter = _limiter(rate, burst)
    waits = [limiter.reserve(PORTAL) for _ in range(burst + 4)]
    assert waits[:burst] == [0.0] * burst
    interval = 1.0 / rate
    assert waits[burst:] == pytest.approx([interval * k for k in range(1, 5)])


@pytest.mark.parametrize(("burst", "headroom"), [(3, 1), (5, 2), (50, 1), (250, 1), (50, 0)])
def test_headroom_keeps_slots_free_and_then_one_per_interval(burst: int, headroom: int) -> None:
    limiter = _limiter(2.0, burst, headroom=headroom)
    usable = burst - headroom
    waits = [limiter.reserve(PORTAL) for _ in range(usable + 3)]
    assert waits[:usable] == [0.0] * usable
    assert waits[usable:] == pytest.approx([0.5, 1.0, 1.5])
    assert limiter.level(PORTAL) == pytest.approx(usable + 3)


def test_bucket_drains_with_time() -> None:
    limiter = _limiter(2.0, 4)
    clock = _clock(limiter)
    assert [limiter.reserve(PORTAL) for _ in range(4)] == [0.0] * 4
    assert limiter.level(PORTAL) == pytest.approx(4.0)
    clock.now += 1.0  # two slots drained
    assert limiter.level(PORTAL) == pytest.approx(2.0)
    assert [limiter.reserve(PORTAL) for _ in range(2)] == [0.0, 0.0]
    assert limiter.reserve(PORTAL) == pytest.approx(0.5)
    clock.now += 100.0
    assert limiter.level(PORTAL) == 0.0
    assert [limiter.reserve(PORTAL) for _ in range(4)] == [0.0] * 4


def test_portals_have_separate_buckets() -> None:
    limiter = _limiter(2.0, 2)
    assert [limiter.reserve(PORTAL) for _ in range(2)] == [0.0, 0.0]
    assert limiter.reserve(PORTAL) > 0
    assert [limiter.reserve(OTHER) for _ in range(2)] == [0.0, 0.0]


@pytest.mark.parametrize("headroom", [0, 1, 10])
async def test_penalize_makes_the_next_slot_one_interval_away(headroom: int) -> None:
    limiter = _limiter(2.0, 50, headroom=headroom)
    assert limiter.reserve(PORTAL) == 0.0
    await limiter.penalize(PORTAL)
    assert limiter.level(PORTAL) == pytest.approx(50.0 - headroom)
    assert limiter.reserve(PORTAL) == pytest.approx(0.5)
    assert limiter.reserve(PORTAL) == pytest.approx(1.0)


async def test_penalize_a_fresh_portal() -> None:
    limiter = _limiter(5.0, 250)
    await limiter.penalize(OTHER)
    assert limiter.reserve(OTHER) == pytest.approx(0.2)


def test_costs() -> None:
    limiter = _limiter(1.0, 5)
    assert limiter.reserve(PORTAL, 5) == 0.0  # a full bucket's worth at once
    assert limiter.reserve(PORTAL) == pytest.approx(1.0)
    fresh = _limiter(1.0, 5)
    assert fresh.reserve(PORTAL, 3) == 0.0
    assert fresh.reserve(PORTAL, 2) == 0.0
    assert fresh.reserve(PORTAL, 2) == pytest.approx(2.0)  # two slots must drain


@pytest.mark.parametrize("cost", [0, -1, 1.5, True, "1", None, 6])
def test_bad_cost_names_the_parameter(cost: Any) -> None:
    with pytest.raises(ValueError, match="cost"):
        _limiter(1.0, 5).reserve(PORTAL, cost)


def test_cost_above_the_usable_bucket_is_refused() -> None:
    with pytest.raises(ValueError, match="cost 5"):
        _limiter(1.0, 5, headroom=1).reserve(PORTAL, 5)
    assert _limiter(1.0, 5, headroom=1).reserve(PORTAL, 4) == 0.0


async def test_acquire_sleeps_for_the_reserved_slot() -> None:
    limiter = _limiter(2.0, 2)
    clock = _clock(limiter)
    for _ in range(5):
        await limiter.acquire(PORTAL)
    assert clock.sleeps == pytest.approx([0.5, 0.5, 0.5])
    assert clock.now == pytest.approx(101.5)


async def test_acquire_is_first_come_first_served() -> None:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        await asyncio.sleep(0)

    limiter = LeakyBucketLimiter(RateLimit(2.0, 3, 0), clock=FakeClock(100.0), sleep=sleep)
    finished: list[int] = []

    async def worker(index: int) -> None:
        await limiter.acquire(PORTAL)
        finished.append(index)

    await asyncio.gather(*(worker(i) for i in range(10)))
    # Slots are reserved in call order: the burst at once, then one per 0.5 s, each later
    # caller strictly after the one before.
    assert slept == pytest.approx([0.5 * k for k in range(1, 8)])
    assert finished == list(range(10))


async def test_client_paces_requests_through_the_limiter(docs_examples: Path) -> None:
    limiter = _limiter(2.0, 3)
    clock = _clock(limiter)
    url = webhook_url(DIALOG_GET)
    with aioresponses() as mocked:
        mocked.post(url, payload=dialog_example(docs_examples), repeat=True)
        async with make_client(limiter=limiter) as client:
            for _ in range(5):
                await client.get_dialog(chat_id=13)
        assert len(recorded(mocked, "POST", url)) == 5
    assert clock.sleeps == pytest.approx([0.5, 0.5])


async def test_query_limit_penalizes_the_limiter(docs_examples: Path) -> None:
    limiter = _limiter(2.0, 50)
    clock = _clock(limiter)
    url = webhook_url(DIALOG_GET)
    with aioresponses() as mocked:
        mocked.post(url, status=503, payload=error_body("QUERY_LIMIT_EXCEEDED"))
        mocked.post(url, payload=dialog_example(docs_examples))
        async with make_client(limiter=limiter) as client:
            await client.get_dialog(chat_id=13)
    # The retry waited for one slot to drain from a full bucket.
    assert clock.sleeps == pytest.approx([0.5])


def test_default_client_limiter_is_standard() -> None:
    client = OpenLinesClient(WebhookAuth(f"{PORTAL}/rest/1/abcd1234/"))
    assert isinstance(client.limiter, LeakyBucketLimiter)
    assert client.limiter.rate_limit == RateLimit.standard()
    enterprise = OpenLinesClient(
        WebhookAuth(f"{PORTAL}/rest/1/abcd1234/"), rate_limit=RateLimit.enterprise()
    )
    assert isinstance(enterprise.limiter, LeakyBucketLimiter)
    assert enterprise.limiter.rate_limit == RateLimit.enterprise()
    assert (
        OpenLinesClient(WebhookAuth(f"{PORTAL}/rest/1/abcd1234/"), rate_limit=None).limiter is None
    )


# -- OperatingBudget ---------------------------------------------------------------------


def _budget(start: float = 1_000_000.0, **kwargs: Any) -> tuple[OperatingBudget, FakeClock]:
    clock = FakeClock(start)
    return OperatingBudget(clock=clock, sleep=clock.sleep, **kwargs), clock


def test_observe_records_operating_and_does_not_pause_below_the_limit() -> None:
    budget, clock = _budget()
    budget.observe(DIALOG_GET, TimeInfo(operating=400.0, operating_reset_at=clock.now + 300))
    assert budget.operating(DIALOG_GET) == 400.0
    assert budget.operating("IMOPENLINES.DIALOG.GET") == 400.0
    assert budget.paused_until(DIALOG_GET) is None


def test_observe_pauses_near_the_limit_until_the_reset() -> None:
    budget, clock = _budget()
    reset = clock.now + 300
    budget.observe(DIALOG_GET, TimeInfo(operating=475.0, operating_reset_at=reset))
    assert budget.paused_until(DIALOG_GET) == reset + 1
    assert budget.paused_until("imopenlines.session.start") is None


def test_observe_without_a_time_block_or_operating() -> None:
    budget, _ = _budget()
    budget.observe(DIALOG_GET, None)
    budget.observe(DIALOG_GET, TimeInfo(start=1.0))
    assert budget.operating(DIALOG_GET) is None
    assert budget.paused_until(DIALOG_GET) is None


def test_pause_uses_the_given_then_the_known_reset_then_the_fallback() -> None:
    budget, clock = _budget(fallback_pause=10.0)
    assert budget.pause("a", clock.now + 50) == clock.now + 51
    budget.observe("b", TimeInfo(operating=1.0, operating_reset_at=clock.now + 70))
    assert budget.pause("b") == clock.now + 71
    assert budget.pause("c") == clock.now + 11
    assert budget.pause("d", clock.now - 5) == clock.now + 11  # a reset in the past


def test_pause_never_shortens_a_pause() -> None:
    budget, clock = _budget()
    budget.pause("a", clock.now + 100)
    assert budget.pause("a", clock.now + 10) == clock.now + 101


async def test_wait_sleeps_only_for_the_paused_method() -> None:
    budget, clock = _budget()
    start = clock.now
    budget.pause(DIALOG_GET, start + 30)
    await budget.wait("imopenlines.session.start")
    assert clock.sleeps == []
    await budget.wait(DIALOG_GET)
    assert clock.sleeps == [pytest.approx(31.0)]
    assert clock.now == pytest.approx(start + 31)
    assert budget.paused_until(DIALOG_GET) is None
    await budget.wait(DIALOG_GET)
    assert len(clock.sleeps) == 1


async def test_wait_returns_at_once_after_the_pause_ran_out() -> None:
    budget, clock = _budget()
    budget.pause(DIALOG_GET, clock.now + 5)
    clock.now += 10
    await budget.wait(DIALOG_GET)
    assert clock.sleeps == []


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": -1}, "limit"),
        ({"headroom": -1}, "headroom"),
        ({"headroom": 480}, "headroom"),
        ({"fallback_pause": 0}, "fallback_pause"),
    ],
)
def test_budget_validation_names_the_parameter(kwargs: dict[str, Any], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        OperatingBudget(**kwargs)


async def test_429_pauses_only_that_method(docs_examples: Path) -> None:
    clock = FakeClock(1_000_000.0)
    budget = OperatingBudget(clock=clock, sleep=clock.sleep)
    url = webhook_url(DIALOG_GET)
    other = webhook_url("imopenlines.crm.chat.getLastId")
    with aioresponses() as mocked:
        mocked.post(url, status=429, payload=error_body("OPERATION_TIME_LIMIT"))
        mocked.post(url, payload=dialog_example(docs_examples))
        mocked.post(other, payload={"result": 1763})
        # Two clients sharing the budget: one that never retries (its deadline is 0, so
        # it never waits either), and one whose deadline leaves room to wait out a pause.
        patient = RetryPolicy(max_attempts=1, deadline=60.0, clock=clock)
        async with (
            make_client(operating_budget=budget, retry=RetryPolicy.never()) as client,
            make_client(operating_budget=budget, retry=patient) as waiting,
        ):
            with pytest.raises(OperationTimeLimitError):
                await client.get_dialog(chat_id=13)
            assert budget.paused_until(DIALOG_GET) == 1_000_011.0  # no reset known: 10 s + 1
            # Another method is not held.
            assert await client.call_raw("imopenlines.crm.chat.getLastId") == 1763
            assert clock.sleeps == []
            # Past a 0 s deadline a paused method is not waited for: it raises at once.
            with pytest.raises(OperationTimeLimitError, match="past the deadline"):
                await client.get_dialog(chat_id=13)
            assert clock.sleeps == []
            # Within the deadline, the same method waits out its pause first.
            assert (await waiting.get_dialog(chat_id=13)).id == 1777
            assert clock.sleeps == [pytest.approx(11.0)]


# -- operating time inside a batch: which account the commands' blocks speak for --------


@pytest.mark.parametrize(
    ("billing", "batch_time", "per_method"),
    [
        # auto: the batch's own block decides.
        ("auto", TimeInfo(operating=0.0, operating_reset_at=1.0), True),  # docs, 2023 capture
        ("auto", TimeInfo(operating=1.228, operating_reset_at=1.0), False),  # JS SDK's #459
        ("auto", TimeInfo(start=1.0), True),  # a portal that meters nothing
        ("auto", None, True),
        ("auto", TimeInfo(operating=float("nan")), True),
        # Fixed: the answer does not matter.
        ("per_method", TimeInfo(operating=1.228), True),
        ("per_method", None, True),
        ("batch", TimeInfo(operating=0.0), False),
        ("batch", None, False),
    ],
)
def test_bills_commands_decision(
    billing: str, batch_time: TimeInfo | None, per_method: bool
) -> None:
    budget, _ = _budget(batch_billing=billing)
    assert budget.batch_billing == billing
    assert budget.bills_commands(batch_time) is per_method


def test_batch_billing_defaults_to_auto_and_is_checked() -> None:
    assert OperatingBudget().batch_billing == "auto"
    for value in ("per-method", "BATCH", "", None, True):
        with pytest.raises(ValueError, match="batch_billing"):
            OperatingBudget(batch_billing=value)  # type: ignore[arg-type]


def _batch_answer(
    now: float, result: Any, *, batch_operating: float, command_operating: float
) -> Any:
    """A two-command batch answer: both commands' blocks carry ``command_operating``."""
    reset = int(now) + 300

    def block(operating: float) -> dict[str, Any]:
        return {
            "start": int(now),
            "finish": now + 0.5,
            "duration": 0.5,
            "processing": 0,
            "date_start": "2026-03-16T20:54:38+03:00",
            "date_finish": "2026-03-16T20:54:38+03:00",
            "operating_reset_at": reset,
            "operating": operating,
        }

    return {
        "result": {
            "result": {"c0": result, "c1": result},
            "result_error": [],
            "result_total": [],
            "result_next": [],
            "result_time": {"c0": block(command_operating), "c1": block(command_operating)},
        },
        "time": block(batch_operating),
    }


@pytest.mark.parametrize(
    ("billing", "batch_operating", "dialog_paused", "batch_paused"),
    [
        # A portal that bills per method: batch at 0, the commands' totals are dialog.get's.
        ("auto", 0.0, True, False),
        ("per_method", 0.0, True, False),
        ("batch", 0.0, False, False),  # wrong for this portal: the next single call gets 429
        # A portal that bills batch: the commands carry copies of batch's total (479).
        ("auto", 479.0, False, True),
        ("batch", 479.0, False, True),
        ("per_method", 479.0, True, True),  # wrong for this portal: single calls over-pause
    ],
)
async def test_a_batch_near_the_limit_pauses_what_the_portal_bills(
    docs_examples: Path,
    billing: str,
    batch_operating: float,
    dialog_paused: bool,
    batch_paused: bool,
) -> None:
    budget, clock = _budget(batch_billing=billing)
    body = _batch_answer(
        clock.now,
        dialog_example(docs_examples)["result"],
        batch_operating=batch_operating,
        command_operating=479.0,
    )
    with aioresponses() as mocked:
        mocked.post(webhook_url("batch"), payload=body)
        async with make_client(operating_budget=budget) as client:
            outcomes = await client.get_dialogs([{"chat_id": 1}, {"chat_id": 2}])
    assert all(o.ok for o in outcomes)
    assert (budget.paused_until(DIALOG_GET) is not None) is dialog_paused
    assert (budget.paused_until("batch") is not None) is batch_paused
    assert clock.sleeps == []  # nothing waited during the job itself
