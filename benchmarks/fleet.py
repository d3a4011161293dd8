"""Marketplace scale across a fleet: 4 worker processes, many portals, one Redis.

``marketplace_fleet``: a :class:`~bitrix_openlines.testing.FakePortalHost` hosts
``registered`` portals (each its own bucket, ``rate``/s, burst 50, tokens and application
token) on the runner's own event loop; a ``redis-server`` is started on a free loopback
port (as ``multiprocess_redis`` does); every portal is registered once in Redis
(``OpenLinesApp.register`` over a ``RedisTokenStore``). Then ``workers`` processes
(``benchmarks/_fleet_worker.py``), each with its own ``OpenLinesApp(store=RedisTokenStore,
limiter=RedisRateLimiter)`` over the same Redis, resolve the ``busy`` portals' dialogs
together: each portal's ``per_portal`` ``get_dialog`` calls are split evenly across the
workers (``burst + 10`` concurrent calls per portal in all), so every portal's bucket and
every refresh is contended by every worker. The workers start together (each reports
``ready``, then all are released at once).

The access tokens expire once during the run (``access_token_ttl``): each busy portal
must be refreshed exactly once across the fleet, by whichever worker takes the portal's
lock in Redis first; the others find the new pair there.

Why the host runs on the runner's loop, not in a process of its own: the runner has
nothing else to do while the workers run (it only awaits their exit), so the host gets a
core's worth of time either way, and in-process it hands its portals' own counters
(``PortalStats``: 503s, refreshes) and their token pairs to the benchmark directly,
without a protocol to ship them between processes.

The figure is the total throughput, from the common start to the last worker's last
answer; the reference is the sum of the busy portals' limits, ``busy * per_portal``
requests in ``(per_portal - burst) / rate``. Also reported, from the fake portals' own
counters: ``QUERY_LIMIT_EXCEEDED`` (503) per portal (target 0 on every one) and refreshes
per portal (target exactly 1 per busy portal, 0 per idle one).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import IO, Any

from redis.asyncio import Redis

from bitrix_openlines import OAuthTokens, OpenLinesApp
from bitrix_openlines.contrib.redis import RedisTokenStore
from bitrix_openlines.testing import FakePortalHost

from ._portal_process import ROOT, BenchmarkError, _stop, _tail
from ._result import Result
from .marketplace import TARGET_RATIO, judge_portals
from .multiprocess import _start_redis
from .rate_limited import _rate_label

__all__ = ["marketplace_fleet"]

WORKER = Path(__file__).with_name("_fleet_worker.py")
BURST = 50
_READY_TIMEOUT = 120.0


def _skipped() -> Result:
    reason = "skipped: redis-server is not on the PATH"
    return Result(
        name="marketplace_fleet",
        figure=0.0,
        unit="req/s",
        reference=0.0,
        reference_label="sum of the busy portals' limits",
        target="0 rejections per portal, 1 refresh per expiry",
        passed=True,
        notes=[
            f"{reason} (apt-get install redis-server): the fleet shares its tokens, locks "
            "and buckets through a real Redis"
        ],
        skipped=reason,
    )


def _split(total: int, parts: int) -> list[int]:
    """``total`` split into ``parts`` counts that differ by at most one."""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


async def _spawn(config: dict[str, Any], errors: IO[bytes]) -> asyncio.subprocess.Process:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(WORKER),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=errors,
        cwd=ROOT,
    )
    assert process.stdin is not None
    # The secret and the portals go through stdin, never on a command line.
    process.stdin.write(json.dumps(config).encode() + b"\n")
    await process.stdin.drain()
    return process


async def _line(process: asyncio.subprocess.Process, errors: IO[bytes], what: str) -> str:
    assert process.stdout is not None
    line = await process.stdout.readline()
    if not line:
        raise BenchmarkError(
            f"a fleet worker exited ({await process.wait()}) before {what}: {_tail(errors)}"
        )
    return line.decode("utf-8", errors="replace").strip()


async def _run(
    redis_url: str,
    *,
    registered: int,
    busy: int,
    per_portal: int,
    rate: float,
    workers: int,
    headroom: int | None,
) -> Result:
    minimum = max(0, per_portal - BURST) / rate
    # One expiry per busy portal during the run (the tokens are issued just before the
    # start): the refreshed pair outlives the run, which ends after ~minimum.
    ttl = max(2.0, minimum * 0.7)
    tasks = _split(BURST + 10, workers)
    calls = _split(per_portal, workers)
    redis = Redis.from_url(redis_url)
    procs: list[asyncio.subprocess.Process] = []
    with contextlib.ExitStack() as files:
        logs = [files.enter_context(tempfile.TemporaryFile()) for _ in range(workers)]
        try:
            async with (
                FakePortalHost(
                    registered, dialogs=50, rate=rate, burst=BURST, access_token_ttl=ttl
                ) as host,
                host.client_session() as http,
            ):
                chosen = host.portals[:busy]
                base = {
                    "redis_url": redis_url,
                    "client_id": host.client_id,
                    "client_secret": host.client_secret,
                    "rate": rate,
                    "burst": BURST,
                    "headroom": headroom,
                    "members": [p.member_id for p in chosen],
                }
                for index in range(workers):
                    config = {**base, "calls": calls[index], "tasks": tasks[index]}
                    procs.append(await _spawn(config, logs[index]))
                for proc, log in zip(procs, logs, strict=True):
                    said = await asyncio.wait_for(_line(proc, log, "ready"), _READY_TIMEOUT)
                    if said != "ready":
                        raise BenchmarkError(f"a fleet worker said {said[:200]!r}, not 'ready'")
                # Register every portal in Redis now, so that the tokens' lifetime starts
                # just before the run.
                registrar = OpenLinesApp(
                    client_id=host.client_id,
                    client_secret=host.client_secret,
                    store=RedisTokenStore(redis),
                    session=http,
                    verify_install=False,
                )
                issued = time.time()
                for portal in host.portals:
                    tokens = OAuthTokens.from_response(portal.issue_tokens())
                    await registrar.register(portal.member_id, tokens, portal.application_token)
                await registrar.close()
                start = time.time()
                for proc in procs:
                    assert proc.stdin is not None
                    proc.stdin.write(b"go\n")
                    await proc.stdin.drain()
                outputs = []
                for proc, log in zip(procs, logs, strict=True):
                    said = await asyncio.wait_for(
                        _line(proc, log, "its report"), 3 * minimum + 180
                    )
                    outputs.append(json.loads(said))
                    await proc.wait()
                stats = [p.stats.copy() for p in host.portals]
                keys = await redis.dbsize()
        finally:
            for proc in procs:
                await _stop(proc)
            await redis.aclose()
    outcomes: Counter[str] = Counter()
    for output in outputs:
        outcomes.update(output["outcomes"])
    elapsed = max(float(o["end"]) for o in outputs) - start
    requests_busy = [s.requests for s in stats[:busy]]
    ok = outcomes["ok"]
    total = busy * per_portal
    (rejected, refreshes_busy, refreshes_idle, throughput, reference, checks, passed) = (
        judge_portals(stats, busy, ok, total, elapsed, minimum, across=" across the fleet")
    )
    details: dict[str, Any] = {
        "registered": registered,
        "busy": busy,
        "per_portal": per_portal,
        "workers": workers,
        "calls_per_worker_per_portal": calls,
        "tasks_per_worker_per_portal": tasks,
        "rate": rate,
        "burst": BURST,
        "client_headroom": headroom,
        "access_token_ttl_s": ttl,
        "registration_s": start - issued,
        "elapsed_s": elapsed,
        "theoretical_min_s": minimum,
        "throughput_rps": throughput,
        "sum_of_limits_rps": reference,
        "outcomes": dict(outcomes),
        "query_limit_exceeded_total": sum(rejected),
        "portals_with_rejections": sum(1 for r in rejected if r),
        "max_rejections_on_a_portal": max(rejected),
        "refreshes_per_busy_portal": dict(refreshes_busy),
        "refreshes_per_idle_portal": dict(refreshes_idle),
        "portal_requests_per_busy_portal": {
            "min": min(requests_busy),
            "max": max(requests_busy),
        },
        "redis_keys_after_run": keys,
        "worker_errors": [o["errors"] for o in outputs],
        "checks": checks,
    }
    notes = [
        f"{registered} portals registered in Redis, {busy} busy, {per_portal} get_dialog calls "
        f"each, split across {workers} worker processes ({'/'.join(map(str, calls))} calls, "
        f"{'/'.join(map(str, tasks))} concurrent per portal); {_rate_label(rate)}, burst "
        f"{BURST} per portal, RateLimit(headroom={headroom})",
        f"sum of the busy portals' limits: {busy} x {per_portal} requests in "
        f"({per_portal} - {BURST}) / {rate:g} = {minimum:.1f} s = {reference:,.0f} req/s; "
        f"measured {throughput:,.0f} req/s in {elapsed:.1f} s",
        f"QUERY_LIMIT_EXCEEDED (503): {sum(rejected)} in all, on "
        f"{details['portals_with_rejections']} portals (max {max(rejected)} on one)",
        f"refreshes per busy portal across the fleet (tokens expire {ttl:.0f} s after "
        f"issue): {dict(refreshes_busy)}; per idle portal: {dict(refreshes_idle)}",
        f"outcomes: {dict(outcomes)}; requests seen by a busy portal: "
        f"{min(requests_busy)} to {max(requests_busy)} (the calls refused as expired_token "
        "are sent again)",
    ]
    notes += [f"worker error: {e}" for o in outputs for e in o["errors"][:1]]
    notes += [f"MISSED: {name}" for name, ok_ in checks.items() if not ok_]
    return Result(
        name="marketplace_fleet",
        figure=throughput,
        unit="req/s",
        reference=reference,
        reference_label="sum of the busy portals' limits",
        target=f"ratio >= {TARGET_RATIO}, 0 rejections per portal, 1 refresh per expiry",
        passed=passed,
        details=details,
        notes=notes,
    )


async def marketplace_fleet(
    *,
    registered: int,
    busy: int,
    per_portal: int,
    rate: float,
    workers: int = 4,
    headroom: int | None = None,
) -> Result:
    """Run the fleet benchmark (see the module docs); skipped without ``redis-server``.

    Args:
        headroom: The clients' free slots per bucket (``RateLimit.headroom``); ``None``
            keeps the default. Many portals bursting at once delay their first requests
            by seconds: ``rate * delay`` slots absorb that (docs/marketplace.md).
    """
    binary = shutil.which("redis-server")
    if binary is None:
        return _skipped()
    server, url = await asyncio.to_thread(_start_redis, binary)
    try:
        return await _run(
            url,
            registered=registered,
            busy=busy,
            per_portal=per_portal,
            rate=rate,
            workers=workers,
            headroom=headroom,
        )
    finally:
        server.terminate()
        await asyncio.to_thread(server.wait, 10)
