"""One worker process of ``marketplace_fleet`` (run as a script by ``benchmarks/fleet.py``).

Protocol, over its standard streams (so no secret appears on a command line):

1. reads one JSON line: ``redis_url``, ``client_id``, ``client_secret``, ``rate``,
   ``burst``, ``headroom``, ``members`` (the busy portals' ``member_id``), ``calls``
   (this worker's share of each portal's calls), ``tasks`` (its concurrent calls per
   portal);
2. builds its ``OpenLinesApp`` over a ``RedisTokenStore`` and a ``RedisRateLimiter``,
   prints ``ready``;
3. reads the start line (any text) and makes the calls at once;
4. prints one JSON line: the outcomes, the first errors (the library's redacted
   messages) and the Unix time of its last answer.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import Counter
from typing import Any

import aiohttp
from redis.asyncio import BlockingConnectionPool, Redis

from bitrix_openlines import Eviction, OpenLinesApp, RateLimit
from bitrix_openlines.contrib.redis import RedisRateLimiter, RedisTokenStore
from bitrix_openlines.testing import LocalhostResolver


async def _resolve(
    app: OpenLinesApp, member_id: str, count: int, tasks: int, errors: list[str]
) -> Counter[str]:
    outcomes: Counter[str] = Counter()
    queue = iter(range(count))

    async def task() -> None:
        for index in queue:
            try:
                # Asked for each call, as a handler would: it keeps the portal live.
                await app.portal(member_id).get_dialog(chat_id=index % 50 + 1)
            except Exception as error:  # counted, reported
                outcomes[type(error).__name__] += 1
                if len(errors) < 3:
                    errors.append(f"{type(error).__name__}: {str(error)[:300]}")
            else:
                outcomes["ok"] += 1

    await asyncio.gather(*(task() for _ in range(tasks)))
    return outcomes


async def main() -> dict[str, Any]:
    config = json.loads(sys.stdin.readline())
    members: list[str] = config["members"]
    errors: list[str] = []
    limit = RateLimit(
        requests_per_second=float(config["rate"]),
        burst=int(config["burst"]),
        headroom=config["headroom"],
    )
    # Hundreds of calls at once each ask Redis (the bucket, the pair): redis-py's default
    # pool refuses past 100 connections (MaxConnectionsError); a blocking one waits.
    pool = BlockingConnectionPool.from_url(config["redis_url"], max_connections=64, timeout=60)
    redis = Redis(connection_pool=pool)
    connector = aiohttp.TCPConnector(resolver=LocalhostResolver(), limit=0, limit_per_host=8)
    try:
        async with (
            aiohttp.ClientSession(connector=connector) as http,
            OpenLinesApp(
                client_id=config["client_id"],
                client_secret=config["client_secret"],
                store=RedisTokenStore(redis),
                limiter=RedisRateLimiter(redis, limit),
                session=http,
                eviction=Eviction(max_live=max(1000, len(members))),
            ) as app,
        ):
            print("ready", flush=True)
            await asyncio.to_thread(sys.stdin.readline)  # the start barrier
            results = await asyncio.gather(
                *(
                    _resolve(app, m, int(config["calls"]), int(config["tasks"]), errors)
                    for m in members
                )
            )
            end = time.time()
    finally:
        await redis.aclose()
    outcomes: Counter[str] = Counter()
    for counter in results:
        outcomes.update(counter)
    return {"outcomes": dict(outcomes), "end": end, "errors": errors}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main())), flush=True)
