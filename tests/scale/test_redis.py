"""The Redis limiter and token store against a real redis-server (and the fake portal)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from bitrix_openlines import OAuthTokens, RateLimit
from bitrix_openlines.contrib.redis import (
    LockLostError,
    RedisRateLimiter,
    RedisTokenStore,
    RedisUnavailableError,
)
from bitrix_openlines.ratelimit import LeakyBucketLimiter
from bitrix_openlines.testing import ThreadedFakePortal

pytestmark = pytest.mark.integration

WORKER = Path(__file__).with_name("_worker.py")
PAIR = OAuthTokens(
    access_token="access-one-1234",
    refresh_token="refresh-one-1234",
    client_endpoint="https://portal.bitrix24.com/rest/",
    member_id="m1",
    expires_at=1_780_000_000.0,
)


def _dead_redis() -> Redis:
    # Port 1 refuses connections; no retries, so each failure is quick.
    return Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))


# -- the limiter -------------------------------------------------------------------------
#
# The script runs on Redis's clock and hands back how long to wait; the limiters here record
# those waits instead of sleeping them. At one slot a minute, Redis's clock cannot move by
# a slot while a test runs, so each wait is its reservation's place in the schedule, less
# how far Redis's clock moved since the first reservation (its "drift"). The drift is read
# off the waits themselves and checked against Redis's own clock (``TIME``) around the run.

MINUTE_US = 60_000_000


class Waits:
    """A ``sleep`` that records what it is asked to wait (in microseconds) and returns."""

    def __init__(self) -> None:
        self.us: list[int] = []

    async def sleep(self, seconds: float) -> None:
        self.us.append(round(seconds * 1_000_000))
        await asyncio.sleep(0)


class FakeClock:
    """A monotonic clock that moves only when its ``sleep`` is awaited."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


async def redis_time_us(redis: Redis) -> int:
    seconds, micros = await redis.time()
    return int(seconds) * 1_000_000 + int(micros)


def check_schedule(waits_us: list[int], interval_us: int, span_us: int) -> None:
    """The waits past the burst are one GCRA schedule: the k-th is k intervals away.

    ``waits_us`` holds the positive waits of a burst of reservations of one empty bucket,
    in any order; ``span_us`` is how far Redis's clock moved around the whole burst. The
    k-th wait is ``k * interval - drift_k``, with ``drift_k`` how far Redis's clock had
    moved since the first reservation: growing with k, at most the last one's.
    """
    waits = sorted(waits_us)
    last = len(waits)
    drift = last * interval_us - waits[-1]
    assert 0 <= drift <= span_us, (drift, span_us)
    for k, wait in enumerate(waits, start=1):
        assert k * interval_us - drift <= wait <= k * interval_us, (k, wait, drift)
    # So each slot past the burst was given exactly once, one interval apart.
    assert [-(-wait // interval_us) for wait in waits] == list(range(1, last + 1))


async def test_shared_bucket_admits_the_burst_then_the_rate(redis: Redis) -> None:
    limit = RateLimit(requests_per_second=1 / 60, burst=6, headroom=1)  # 5 usable slots
    waits = Waits()
    limiters = [RedisRateLimiter(redis, limit, sleep=waits.sleep) for _ in range(3)]
    before = await redis_time_us(redis)
    # 15 reservations at once from three "processes".
    await asyncio.gather(*(limiters[i % 3].acquire("https://p.bitrix24.com") for i in range(15)))
    span = await redis_time_us(redis) - before
    # The usable burst went at once (no wait asked), the 10 others one slot apart.
    assert len(waits.us) == 15 - limit.usable_burst == 10
    check_schedule(waits.us, MINUTE_US, span)


async def test_penalize_makes_the_next_slot_one_interval_away(redis: Redis) -> None:
    waits = Waits()
    limit = RateLimit(requests_per_second=1 / 60, burst=5, headroom=0)
    limiter = RedisRateLimiter(redis, limit, sleep=waits.sleep)
    before = await redis_time_us(redis)
    await limiter.penalize("https://p.bitrix24.com")
    await limiter.acquire("https://p.bitrix24.com")
    await limiter.acquire("https://p.bitrix24.com")
    span = await redis_time_us(redis) - before
    # A full bucket: the first slot is one interval away, the next one more.
    assert len(waits.us) == 2
    first, second = waits.us
    assert MINUTE_US - span <= first <= MINUTE_US
    assert 2 * MINUTE_US - span <= second <= 2 * MINUTE_US
    assert MINUTE_US - span <= second - first <= MINUTE_US


async def test_cancelled_waits_give_their_slots_back(redis: Redis) -> None:
    limit = RateLimit(requests_per_second=1 / 60, burst=6, headroom=1)  # 5 usable slots
    never = asyncio.Event()
    all_waiting = asyncio.Event()
    asked: list[float] = []

    async def blocked(seconds: float) -> None:
        asked.append(seconds)
        if len(asked) == 20:  # the 5 of the burst went; 20 wait
            all_waiting.set()
        await never.wait()  # a wait that ends only by cancellation

    limiter = RedisRateLimiter(redis, limit, sleep=blocked)
    portal = "https://cancel.bitrix24.com"
    before = await redis_time_us(redis)
    waiting = [asyncio.ensure_future(limiter.acquire(portal)) for _ in range(25)]
    await asyncio.wait_for(all_waiting.wait(), 10)
    for task in waiting:
        task.cancel()
    await asyncio.gather(*waiting, return_exceptions=True)
    # Only the 5 slots used remain reserved: the next reservation is one slot away,
    # not the 21 that the cancelled waits would have cost.
    waits = Waits()
    await RedisRateLimiter(redis, limit, sleep=waits.sleep).acquire(portal)
    span = await redis_time_us(redis) - before
    (wait,) = waits.us
    assert MINUTE_US - span <= wait <= MINUTE_US


async def test_buckets_are_per_portal(redis: Redis) -> None:
    waits = Waits()
    limit = RateLimit(requests_per_second=1 / 60, burst=2, headroom=0)
    limiter = RedisRateLimiter(redis, limit, sleep=waits.sleep)
    before = await redis_time_us(redis)
    for portal in ("https://a.bitrix24.com", "https://b.bitrix24.com"):
        await limiter.acquire(portal)
        await limiter.acquire(portal)
    # Each portal's own bucket of two took its two at once.
    assert waits.us == []
    for portal in ("https://a.bitrix24.com", "https://b.bitrix24.com"):
        await limiter.acquire(portal)
    span = await redis_time_us(redis) - before
    # Each portal's third request waits one slot of its own bucket, not of a shared one.
    assert len(waits.us) == 2
    assert all(MINUTE_US - span <= wait <= MINUTE_US for wait in waits.us), waits.us


async def test_redis_down_raises_unless_a_fallback_is_given(
    caplog: pytest.LogCaptureFixture,
) -> None:
    dead = _dead_redis()
    waits = Waits()
    try:
        limiter = RedisRateLimiter(
            dead, RateLimit(requests_per_second=100.0, burst=10), sleep=waits.sleep
        )
        with pytest.raises(RedisUnavailableError, match="no request was sent"):
            await limiter.acquire("https://p.bitrix24.com")
        clock = FakeClock()
        fallback = LeakyBucketLimiter(
            RateLimit(requests_per_second=1.0, burst=10, headroom=1),
            clock=clock,
            sleep=clock.sleep,
        )
        limiter = RedisRateLimiter(dead, fallback.rate_limit, fallback=fallback, sleep=waits.sleep)
        caplog.set_level(logging.WARNING, logger="bitrix_openlines")
        await limiter.acquire("https://p.bitrix24.com")
        # Not a silent burst: the fallback started from a full bucket (9 usable slots),
        # so the first request waited one slot, and the bucket is still full after it.
        assert clock.sleeps == [1.0]
        assert fallback.level("https://p.bitrix24.com") == pytest.approx(9.0)
        await limiter.acquire("https://p.bitrix24.com")
        assert clock.sleeps == [1.0, 1.0]
        # Said once, however many requests fell back; Redis handed back no wait.
        assert caplog.text.count("Redis unreachable") == 1
        assert waits.us == []
    finally:
        await dead.aclose()
    with pytest.raises(TypeError, match="fallback"):
        RedisRateLimiter(dead, fallback="local")  # type: ignore[arg-type]


# -- the token store ---------------------------------------------------------------------


async def test_pairs_round_trip(redis: Redis) -> None:
    store = RedisTokenStore(redis)
    assert await store.load("m1") is None
    await store.save("m1", PAIR)
    assert await store.load("m1") == PAIR
    raw = await redis.get("bitrix_openlines:tokens:m1")
    assert raw is not None
    assert json.loads(raw)["refresh_token"] == PAIR.refresh_token


async def test_the_lock_excludes_other_processes(redis: Redis) -> None:
    one, two = RedisTokenStore(redis, poll=0.01), RedisTokenStore(redis, poll=0.01)
    order: list[str] = []

    async def hold(store: RedisTokenStore, name: str) -> None:
        async with store.lock("m1"):
            order.append(f"{name} in")
            await asyncio.sleep(0.1)
            order.append(f"{name} out")

    await asyncio.gather(hold(one, "a"), hold(two, "b"))
    assert order in (["a in", "a out", "b in", "b out"], ["b in", "b out", "a in", "a out"])


async def test_a_crashed_holder_blocks_only_for_the_lease(redis: Redis) -> None:
    crashed = RedisTokenStore(redis, lease=0.3)
    lock = crashed.lock("m1")
    await lock.__aenter__()  # taken, never released: the holder "crashed"
    lock_key = "bitrix_openlines:tokens:m1:lock"
    held = await redis.get(lock_key)
    assert held is not None
    # Redis itself frees the lock when the lease runs out; until then nobody gets it.
    assert 0 < await redis.pttl(lock_key) <= 300
    assert not await redis.set(lock_key, "someone else", nx=True)
    # A waiter that would give up only after a minute gets the lock: the lease freed it.
    other = RedisTokenStore(redis, lease=5, poll=0.01, wait_timeout=60)
    async with other.lock("m1"):
        assert await redis.get(lock_key) not in (None, held)


async def test_a_holder_whose_lease_ran_out_cannot_overwrite_the_pair(redis: Redis) -> None:
    slow = RedisTokenStore(redis, lease=0.2)
    fast = RedisTokenStore(redis, lease=5, poll=0.01)
    await fast.save("m1", PAIR)
    newer = OAuthTokens(
        access_token="access-two-1234",
        refresh_token="refresh-two-1234",
        client_endpoint=PAIR.client_endpoint,
    )
    async with slow.lock("m1"):
        await asyncio.sleep(0.3)  # the lease runs out while "refreshing"
        async with fast.lock("m1"):
            await fast.save("m1", newer)
        with pytest.raises(LockLostError):
            await slow.save("m1", PAIR)
    assert await fast.load("m1") == newer


async def test_waiting_for_the_lock_gives_up(redis: Redis) -> None:
    holder = RedisTokenStore(redis, lease=60)
    waiter = RedisTokenStore(redis, wait_timeout=0.2, poll=0.02)
    async with holder.lock("m1"):
        with pytest.raises(RedisUnavailableError, match="gave up waiting"):
            async with waiter.lock("m1"):
                pass


async def test_store_with_redis_down_raises_clearly() -> None:
    dead = _dead_redis()
    try:
        store = RedisTokenStore(dead)
        with pytest.raises(RedisUnavailableError, match="could not load"):
            await store.load("m1")
        with pytest.raises(RedisUnavailableError, match="could not save"):
            await store.save("m1", PAIR)
    finally:
        await dead.aclose()


# -- many processes against one fake portal ----------------------------------------------


def _workers(args: list[list[str]], env: dict[str, str] | None = None) -> list[dict[str, object]]:
    """Run one worker per argument list, all released at once; return their JSON lines."""
    procs = [
        subprocess.Popen(
            [sys.executable, str(WORKER), *a],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
        )
        for a in args
    ]
    try:
        # The common start: every worker is connected and waiting before any begins.
        for proc in procs:
            assert proc.stdout is not None
            if proc.stdout.readline().strip() != "ready":
                _, err = proc.communicate(timeout=120)
                pytest.fail(f"a worker did not start: {err[-2000:]}")
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        results = []
        for proc in procs:
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err
            results.append(json.loads(out.strip().splitlines()[-1]))
        return results
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_four_processes_share_the_bucket(redis_url: str) -> None:
    # One slot a minute, burst 20 (19 usable): the workers record the waits Redis hands
    # back instead of sleeping them, so the portal needs no bucket of its own here. How
    # close real processes get to the portal's bound, with no 503, is the
    # multiprocess_redis benchmark's figure (benchmarks/multiprocess.py).
    rate, burst, per_worker, workers = 1 / 60, 20, 50, 4
    limit = RateLimit(requests_per_second=rate, burst=burst)

    async def redis_time(*, flush: bool = False) -> int:
        redis = Redis.from_url(redis_url)
        try:
            if flush:  # an empty bucket, whatever ran before on this server
                await redis.flushdb()
            return await redis_time_us(redis)
        finally:
            await redis.aclose()

    with ThreadedFakePortal(dialogs=20, rate=None) as portal:
        args = [
            ["rate", portal.webhook_url, redis_url, repr(rate), str(burst), str(per_worker)]
            for _ in range(workers)
        ]
        before = asyncio.run(redis_time(flush=True))
        results = _workers(args)
        span = asyncio.run(redis_time()) - before
        stats = portal.stats
    assert [r["ok"] for r in results] == [per_worker] * workers, results
    assert stats.requests == per_worker * workers
    waits = [int(w) for r in results for w in r["waits_us"]]  # type: ignore[attr-defined]
    # One bucket for all four: the usable burst went at once once, not once per process,
    # and every other reservation, whichever process made it, took its own slot.
    assert len(waits) == per_worker * workers - limit.usable_burst
    check_schedule(waits, round(1_000_000 / rate), span)
    # Every process took part in the shared schedule.
    assert all(r["waits_us"] for r in results), results


def test_four_processes_on_an_expired_token_refresh_once(redis_url: str) -> None:
    with ThreadedFakePortal(dialogs=20, rate=None) as portal:
        tokens = OAuthTokens.from_response(portal.issue_tokens())
        assert tokens.member_id is not None

        async def seed() -> None:
            redis = Redis.from_url(redis_url)
            try:
                await RedisTokenStore(redis).save(tokens.member_id or "", tokens)
            finally:
                await redis.aclose()

        asyncio.run(seed())
        portal.expire_access_tokens()
        args = [
            [
                "refresh",
                portal.client_id,
                portal.token_url,
                redis_url,
                tokens.member_id,
                "25",
            ]
            for _ in range(4)
        ]
        results = _workers(args, env={"WORKER_CLIENT_SECRET": portal.client_secret})
        stats = portal.stats
    assert [r["ok"] for r in results] == [25] * 4, results
    assert stats.refreshes == 1
    assert stats.token_requests == 1
