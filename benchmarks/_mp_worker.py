"""One worker of the multi-process benchmark (run as a script by ``multiprocess.py``).

Usage: ``_mp_worker.py WEBHOOK_URL REDIS_URL RATE BURST N START``: waits until the Unix
time START, makes N concurrent ``get_dialog`` calls through a ``RedisRateLimiter``, and
prints one JSON line (successes, first errors, end time).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from redis.asyncio import Redis

from bitrix_openlines import OpenLinesClient, RateLimit, WebhookAuth
from bitrix_openlines.contrib.redis import RedisRateLimiter


async def main(argv: list[str]) -> dict[str, object]:
    url, redis_url, rate, burst, n, start = argv
    redis = Redis.from_url(redis_url)
    limiter = RedisRateLimiter(redis, RateLimit(requests_per_second=float(rate), burst=int(burst)))
    try:
        async with OpenLinesClient(WebhookAuth(url), limiter=limiter) as client:
            await asyncio.sleep(max(0.0, float(start) - time.time()))
            results = await asyncio.gather(
                *(client.get_dialog(chat_id=i % 50 + 1) for i in range(int(n))),
                return_exceptions=True,
            )
    finally:
        await redis.aclose()
    errors = [repr(r) for r in results if isinstance(r, BaseException)]
    return {"ok": int(n) - len(errors), "errors": errors[:3], "end": time.time()}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1:]))), flush=True)
