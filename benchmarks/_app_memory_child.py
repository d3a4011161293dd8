"""The child process of ``marketplace_memory``: RSS per registered idle portal.

Like ``_memory_child.py``, it forks first and measures in the forked process (whose
``ru_maxrss`` and RSS start from this small program's, not the runner's). It registers
``--portals`` portals in an ``OpenLinesApp`` over an ``InMemoryTokenStore`` (a pair of
realistic size and an application token each), makes every one live once (an auth, a
budget, a client), lets the idle sweep evict them all, and prints the resident memory
before and after as one JSON line.

``python -m benchmarks._app_memory_child --portals 1000``
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import secrets
import sys
from collections.abc import Sequence
from typing import Any

from ._memory_child import _current_rss_kib, _fork_and_wait

__all__ = ["main"]


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def _measure(portals: int) -> dict[str, Any]:
    import aiohttp

    from bitrix_openlines import Eviction, InMemoryTokenStore, OAuthTokens, OpenLinesApp

    clock = _Clock()
    async with aiohttp.ClientSession() as http:
        app = OpenLinesApp(
            client_id="app.0123456789abcd.12345678",
            client_secret=secrets.token_urlsafe(32),
            store=InMemoryTokenStore(),
            session=http,
            eviction=Eviction(idle_seconds=300.0),
            clock=clock,
        )

        def tokens(index: int) -> OAuthTokens:
            return OAuthTokens(
                access_token=secrets.token_hex(16),
                refresh_token=secrets.token_hex(16),
                client_endpoint=f"https://portal-{index:05d}.bitrix24.com/rest/",
                expires_at=1_800_000_000.0,
                member_id=f"{index:032x}",
                scope="imopenlines,im,crm",
                server_endpoint="https://oauth.bitrix.info/rest/",
                status="F",
            )

        # Warm-up: every code path and lazy import has run once before the baseline.
        await app.register(f"{portals + 1:032x}", tokens(portals + 1), secrets.token_hex(16))
        app.portal(f"{portals + 1:032x}")
        clock.now += 1000.0
        app.evict_idle()
        gc.collect()
        before = _current_rss_kib() or 0
        for index in range(portals):
            member_id = f"{index:032x}"
            await app.register(member_id, tokens(index), secrets.token_hex(16))
        gc.collect()
        registered = _current_rss_kib() or 0
        live_peak = 0
        for index in range(portals):
            app.portal(f"{index:032x}")
            live_peak = max(live_peak, app.live)
        clock.now += 1000.0
        evicted = app.evict_idle()
        gc.collect()
        after = _current_rss_kib() or 0
        live_after = app.live
        await app.close()
    return {
        "portals": portals,
        "rss_before_kib": before,
        "rss_registered_kib": registered,
        "rss_after_cycle_kib": after,
        "live_peak": live_peak,
        "evicted": evicted,
        "live_after": live_after,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Measure in a forked process and print one JSON line."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks._app_memory_child")
    parser.add_argument("--portals", type=int, required=True)
    args = parser.parse_args(argv)
    status = _fork_and_wait()
    if status is not None:
        return status
    data = asyncio.run(_measure(args.portals))
    sys.stdout.write(json.dumps(data) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
