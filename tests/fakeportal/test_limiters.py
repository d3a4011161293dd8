"""The leaky bucket and the operating budget as pure logic, driven by a fake clock."""

from __future__ import annotations

import random

import pytest

from bitrix_openlines.testing._bucket import LeakyBucket, OperatingBudget

from ._helpers import FakeClock


def test_fresh_bucket_admits_exactly_burst_then_rate_per_second() -> None:
    clock = FakeClock()
    bucket = LeakyBucket(rate=2.0, burst=50, clock=clock)
    assert [bucket.try_admit() for _ in range(51)] == [True] * 50 + [False]
    assert bucket.level == pytest.approx(50.0)
    clock.advance(0.49)
    assert not bucket.try_admit()
    clock.advance(0.01)
    assert bucket.try_admit()
    assert not bucket.try_admit()
    clock.advance(10.0)  # drains 20 slots
    assert sum(bucket.try_admit() for _ in range(25)) == 20


def test_rejected_requests_do_not_fill_the_bucket() -> None:
    clock = FakeClock()
    bucket = LeakyBucket(rate=1.0, burst=3, clock=clock)
    for _ in range(3):
        assert bucket.try_admit()
    for _ in range(100):
        assert not bucket.try_admit()
    clock.advance(1.0)
    assert bucket.try_admit()


def test_level_never_drops_below_zero() -> None:
    clock = FakeClock()
    bucket = LeakyBucket(rate=5.0, burst=2, clock=clock)
    clock.advance(1000.0)
    assert bucket.level == 0.0
    assert [bucket.try_admit() for _ in range(3)] == [True, True, False]


def _mirror_then_deliver(seed: int, *, jitter: float, mirror_slack: float) -> bool:
    """Send 300 requests as fast as a client-side mirror allows; deliver them to a portal.

    Each request arrives ``latency + U(0, jitter)`` after it was sent (so requests may be
    reordered); the portal sees them in arrival order. The mirror's bucket is
    ``burst - mirror_slack``. Returns True when the portal admitted every request.
    """
    rng = random.Random(seed)
    rate, burst = rng.choice([(2.0, 50), (5.0, 250), (0.7, 3), (3.3, 7.5), (2.0, 5)])
    latency = rng.random()
    mirror_clock = FakeClock(0.0)
    mirror = LeakyBucket(rate, burst - mirror_slack * rate, mirror_clock)
    sent: list[float] = []
    while len(sent) < 300:
        mirror_clock.advance(rng.choice([0.0, 0.0, 0.001, rng.random() / rate]))
        if mirror.try_admit():
            sent.append(mirror_clock.now)
    arrivals = sorted(t + latency + rng.random() * jitter for t in sent)
    portal_clock = FakeClock(0.0)
    portal = LeakyBucket(rate, burst, portal_clock)
    for arrival in arrivals:
        portal_clock.now = arrival
        if not portal.try_admit():
            return False
    return True


@pytest.mark.parametrize("seed", range(30))
def test_a_mirror_with_constant_latency_is_never_rejected(seed: int) -> None:
    assert _mirror_then_deliver(seed, jitter=0.0, mirror_slack=0.0)


@pytest.mark.parametrize("seed", range(30))
def test_a_mirror_keeping_rate_times_jitter_free_is_never_rejected(seed: int) -> None:
    assert _mirror_then_deliver(seed, jitter=0.3, mirror_slack=0.3)


def test_a_mirror_without_slack_can_be_rejected_when_latency_varies() -> None:
    # Why the slack is needed: three requests sent at t=0 arrive late, the fourth, sent at
    # t=1 when the mirror had drained one slot, arrives on time.
    clock = FakeClock(0.0)
    portal = LeakyBucket(rate=1.0, burst=3, clock=clock)
    clock.now = 0.3
    assert all(portal.try_admit() for _ in range(3))
    clock.now = 1.0
    assert not portal.try_admit()


@pytest.mark.parametrize(("rate", "burst", "name"), [(0, 5, "rate"), (1, 0.5, "burst")])
def test_bucket_rejects_bad_parameters(rate: float, burst: float, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        LeakyBucket(rate, burst, FakeClock())


def _budget(clock: FakeClock, limit: float = 1.0, window: float = 10.0) -> OperatingBudget:
    return OperatingBudget(limit, window, clock, lambda: 1_700_000_000.0 + clock.now)


def test_budget_blocks_only_after_the_sum_exceeds_the_limit() -> None:
    clock = FakeClock(0.0)
    budget = _budget(clock)
    key = ("webhook:1", "imopenlines.dialog.get")
    budget.record(key, 0.6)
    assert not budget.is_blocked(key)
    budget.record(key, 0.4)  # exactly at the limit: the next call still runs
    assert budget.accumulated(key) == pytest.approx(1.0)
    assert not budget.is_blocked(key)
    budget.record(key, 0.2)
    assert budget.is_blocked(key)
    assert not budget.is_blocked(("webhook:1", "server.time"))
    assert not budget.is_blocked(("app:x", "imopenlines.dialog.get"))


def test_budget_ignores_calls_of_a_tenth_of_a_second_or_less() -> None:
    clock = FakeClock(0.0)
    budget = _budget(clock, limit=0.5)
    key = ("k", "m")
    for _ in range(100):
        budget.record(key, 0.1)
    assert budget.accumulated(key) == 0.0


def test_budget_baskets_expire_one_by_one_and_report_the_reset_time() -> None:
    clock = FakeClock(0.0)
    budget = _budget(clock, limit=1.0, window=10.0)  # 10 baskets of 1 s
    key = ("k", "m")
    assert budget.reset_at(key, 1_700_000_000.5) == 1_700_000_010
    clock.advance(0.5)
    budget.record(key, 0.7)  # basket 0, first call at unix ...000.5
    clock.advance(3.0)
    budget.record(key, 0.7)  # basket 3
    assert budget.is_blocked(key)
    assert budget.reset_at(key, 0.0) == 1_700_000_010
    clock.now = 9.99
    assert budget.is_blocked(key)
    clock.now = 10.0  # basket 0 left the window
    assert budget.accumulated(key) == pytest.approx(0.7)
    assert not budget.is_blocked(key)
    assert budget.reset_at(key, 0.0) == 1_700_000_013
    clock.now = 13.0
    assert budget.accumulated(key) == 0.0


@pytest.mark.parametrize(("limit", "window", "name"), [(0, 10, "limit"), (1, -1, "window")])
def test_budget_rejects_bad_parameters(limit: float, window: float, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        _budget(FakeClock(), limit, window)
