"""One worker process of the multi-process Redis tests (run as a script).

Usage: ``_worker.py rate URL REDIS RATE BURST N`` or
``_worker.py refresh CLIENT_ID TOKEN_URL REDIS KEY N`` (client secret from the
``WORKER_CLIENT_SECRET`` environment variable). Prints ``ready`` once it is connected
and set up, waits for a line on stdin (the common start, so that every worker is really
running when the first one starts), runs N concurrent ``get_dialog`` calls, and prints
one JSON line with what happened.

In ``rate`` mode the shared limiter does not sleep: it records each wait the Redis script
hands back, in microseconds (``waits_us``), and the call goes at once. The test checks
that the reservations of all the workers together form one schedule.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

from redis.asyncio import Redis

from bitrix_openlines import OAuthAuth, OpenLinesClient, RateLimit, RetryPolicy, WebhookAuth
from bitrix_openlines.contrib.redis import RedisRateLimiter, RedisTokenStore


async def _calls(client: OpenLinesClient, n: int) -> dict[str, object]:
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    results = await asyncio.gather(
        *(client.get_dialog(chat_id=i % 20 + 1) for i in range(n)), return_exceptions=True
    )
    errors = [repr(r) for r in results if isinstance(r, BaseException)]
    return {"ok": n - len(errors), "errors": errors[:3]}


async def main(argv: list[str]) -> dict[str, object]:
    mode = argv[0]
    if mode == "rate":
        url, redis_url, rate, burst, n = argv[1:]
        redis = Redis.from_url(redis_url)
        await redis.ping()
        waits_us: list[int] = []

        async def record(seconds: float) -> None:
            waits_us.append(round(seconds * 1_000_000))

        limit = RateLimit(requests_per_second=float(rate), burst=int(burst))
        limiter = RedisRateLimiter(redis, limit, sleep=record)
        try:
            async with OpenLinesClient(WebhookAuth(url), limiter=limiter) as client:
                return {**await _calls(client, int(n)), "waits_us": waits_us}
        finally:
            await redis.aclose()
    client_id, token_url, redis_url, key, n = argv[1:]
    redis = Redis.from_url(redis_url)
    await redis.ping()
    auth = OAuthAuth(
        client_id=client_id,
        client_secret=os.environ["WORKER_CLIENT_SECRET"],
        token_url=token_url,
        store=RedisTokenStore(redis),
        key=key,
    )
    try:
        async with OpenLinesClient(auth, rate_limit=None, retry=RetryPolicy.no_wait()) as client:
            return await _calls(client, int(n))
    finally:
        await redis.aclose()


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1:]))), flush=True)
