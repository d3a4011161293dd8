"""One worker process of the multi-process Redis tests (run as a script).

Usage: ``_worker.py rate URL REDIS RATE BURST N START`` or
``_worker.py refresh CLIENT_ID TOKEN_URL REDIS KEY N START`` (client secret from the
``WORKER_CLIENT_SECRET`` environment variable). Waits until the Unix time START, runs N
concurrent ``get_dialog`` calls, and prints one JSON line with what happened.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time

from redis.asyncio import Redis

from bitrix_openlines import OAuthAuth, OpenLinesClient, RateLimit, RetryPolicy, WebhookAuth
from bitrix_openlines.contrib.redis import RedisRateLimiter, RedisTokenStore


async def _calls(client: OpenLinesClient, n: int, start: float) -> dict[str, object]:
    await asyncio.sleep(max(0.0, start - time.time()))
    results = await asyncio.gather(
        *(client.get_dialog(chat_id=i % 20 + 1) for i in range(n)), return_exceptions=True
    )
    errors = [repr(r) for r in results if isinstance(r, BaseException)]
    return {"ok": n - len(errors), "errors": errors[:3], "end": time.time()}


async def main(argv: list[str]) -> dict[str, object]:
    mode = argv[0]
    if mode == "rate":
        url, redis_url, rate, burst, n, start = argv[1:]
        redis = Redis.from_url(redis_url)
        limit = RateLimit(requests_per_second=float(rate), burst=int(burst))
        limiter = RedisRateLimiter(redis, limit)
        try:
            async with OpenLinesClient(WebhookAuth(url), limiter=limiter) as client:
                return await _calls(client, int(n), float(start))
        finally:
            await redis.aclose()
    client_id, token_url, redis_url, key, n, start = argv[1:]
    redis = Redis.from_url(redis_url)
    auth = OAuthAuth(
        client_id=client_id,
        client_secret=os.environ["WORKER_CLIENT_SECRET"],
        token_url=token_url,
        store=RedisTokenStore(redis),
        key=key,
    )
    try:
        async with OpenLinesClient(auth, rate_limit=None, retry=RetryPolicy.no_wait()) as client:
            return await _calls(client, int(n), float(start))
    finally:
        await redis.aclose()


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1:]))), flush=True)
