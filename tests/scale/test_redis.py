"""The Redis limiter and token store against a real redis-server (and the fake portal)."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import subprocess
import sys
import time
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


async def test_shared_bucket_admits_the_burst_then_the_rate(redis: Redis) -> None:
    limit = RateLimit(requests_per_second=50.0, burst=6, headroom=1)  # 5 usable slots
    limiters = [RedisRateLimiter(redis, limit) for _ in range(3)]  # three "processes"
    loop = asyncio.get_running_loop()
    started = loop.time()
    stamps: list[float] = []

    async def one(i: int) -> None:
        await limiters[i % 3].acquire("https://p.bitrix24.com")
        stamps.append(loop.time() - started)

    await asyncio.gather(*(one(i) for i in range(15)))
    stamps.sort()
    assert all(t < 0.05 for t in stamps[:5])  # the usable burst at once
    # Then one slot per 20 ms: the 15th goes 10 slots after the burst.
    assert 0.18 <= stamps[-1] <= 0.35
    gaps = [b - a for a, b in itertools.pairwise(stamps[5:])]
    assert min(gaps) > 0.01


async def test_penalize_makes_the_next_slot_one_interval_away(redis: Redis) -> None:
    limiter = RedisRateLimiter(redis, RateLimit(requests_per_second=10.0, burst=5, headroom=0))
    await limiter.penalize("https://p.bitrix24.com")
    loop = asyncio.get_running_loop()
    started = loop.time()
    await limiter.acquire("https://p.bitrix24.com")
    assert 0.07 <= loop.time() - started <= 0.2


async def test_buckets_are_per_portal(redis: Redis) -> None:
    limiter = RedisRateLimiter(redis, RateLimit(requests_per_second=1.0, burst=2, headroom=0))
    loop = asyncio.get_running_loop()
    started = loop.time()
    for portal in ("https://a.bitrix24.com", "https://b.bitrix24.com"):
        await limiter.acquire(portal)
        await limiter.acquire(portal)
    assert loop.time() - started < 0.2


async def test_redis_down_raises_unless_a_fallback_is_given(
    caplog: pytest.LogCaptureFixture,
) -> None:
    dead = _dead_redis()
    try:
        limiter = RedisRateLimiter(dead, RateLimit(requests_per_second=100.0, burst=10))
        with pytest.raises(RedisUnavailableError, match="no request was sent"):
            await limiter.acquire("https://p.bitrix24.com")
        fallback = LeakyBucketLimiter(RateLimit(requests_per_second=1.0, burst=10, headroom=1))
        limiter = RedisRateLimiter(dead, fallback.rate_limit, fallback=fallback)
        caplog.set_level(logging.WARNING, logger="bitrix_openlines")
        loop = asyncio.get_running_loop()
        started = loop.time()
        await limiter.acquire("https://p.bitrix24.com")
        # Not a silent burst: the fallback started from a full bucket (so the first
        # request waited a slot) and said so once.
        assert loop.time() - started >= 0.9
        assert fallback.level("https://p.bitrix24.com") > 8
        assert caplog.text.count("Redis unreachable") == 1
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
    other = RedisTokenStore(redis, lease=5, poll=0.01)
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with other.lock("m1"):
        waited = loop.time() - started
    assert 0.2 <= waited <= 1.0


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
    holder = RedisTokenStore(redis, lease=5)
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
    procs = [
        subprocess.Popen(
            [sys.executable, str(WORKER), *a],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
        )
        for a in args
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def test_four_processes_share_the_bucket(redis_url: str) -> None:
    rate, burst, per_worker, workers = 20.0, 20, 50, 4
    with ThreadedFakePortal(dialogs=20, rate=rate, burst=burst) as portal:
        start = time.time() + 3.0  # every worker is up and waiting by then
        args = [
            [
                "rate",
                portal.webhook_url,
                redis_url,
                str(rate),
                str(burst),
                str(per_worker),
                str(start),
            ]
            for _ in range(workers)
        ]
        results = _workers(args)
        stats = portal.stats
    assert [r["ok"] for r in results] == [per_worker] * workers, results
    assert stats.rejections.get("QUERY_LIMIT_EXCEEDED", 0) == 0
    elapsed = max(float(r["end"]) for r in results) - start  # type: ignore[arg-type]
    minimum = RateLimit(requests_per_second=rate, burst=burst).minimum_seconds(
        per_worker * workers
    )
    assert minimum <= elapsed <= minimum * 1.10, (elapsed, minimum)


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
        start = time.time() + 3.0
        args = [
            [
                "refresh",
                portal.client_id,
                portal.token_url,
                redis_url,
                tokens.member_id,
                "25",
                str(start),
            ]
            for _ in range(4)
        ]
        results = _workers(args, env={"WORKER_CLIENT_SECRET": portal.client_secret})
        stats = portal.stats
    assert [r["ok"] for r in results] == [25] * 4, results
    assert stats.refreshes == 1
    assert stats.token_requests == 1
