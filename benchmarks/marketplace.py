"""Marketplace scale: one ``OpenLinesApp``, many portals, every portal inside its limits.

``marketplace_throughput``: a :class:`~bitrix_openlines.testing.FakePortalHost` (in this
process) hosts ``registered`` portals, each with its own bucket (``rate``/s, burst 50),
tokens and application token; all are registered in one ``OpenLinesApp`` over an
``InMemoryTokenStore``. ``busy`` of them then resolve ``per_portal`` dialogs each, at
once: single ``get_dialog`` calls (a batch of 50 would fit in the burst and test nothing),
``burst + 10`` workers per portal. Every access token expires halfway through
(``access_token_ttl``), so each busy portal must refresh exactly once, whatever the
number of its calls in flight. The figure is the total throughput; the reference is the
sum of the busy portals' limits over the run, ``busy * per_portal`` requests in the least
time the portal allows one portal, ``(per_portal - burst) / rate``. Also reported: the
``QUERY_LIMIT_EXCEEDED`` answers per portal (target 0 on every one) and the refreshes per
portal (target exactly 1 per busy portal, 0 per idle one).

``marketplace_memory``: the resident memory per registered idle portal, measured in a
child process (``benchmarks._app_memory_child``): after registering the portals, and
after making each live once and letting the sweep evict it.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

from bitrix_openlines import (
    Eviction,
    InMemoryTokenStore,
    OAuthTokens,
    OpenLinesApp,
    RateLimit,
)
from bitrix_openlines.testing import FakePortalHost, PortalStats

from ._result import Result
from .iter_memory import _run_child
from .rate_limited import _rate_label

__all__ = ["TARGET_RATIO", "judge_portals", "marketplace_memory", "marketplace_throughput"]

TARGET_RATIO = 0.90
TARGET_KIB = 10.0
BURST = 50


async def _resolve(app: OpenLinesApp, member_id: str, count: int, workers: int) -> Counter[str]:
    """Resolve ``count`` dialogs of one portal with ``workers`` tasks; count outcomes."""
    outcomes: Counter[str] = Counter()
    queue = iter(range(count))

    async def worker() -> None:
        for index in queue:
            try:
                # Asked for each call, as a handler would: it keeps the portal live.
                await app.portal(member_id).get_dialog(chat_id=index % 50 + 1)
            except Exception as error:  # counted, reported
                outcomes[type(error).__name__] += 1
            else:
                outcomes["ok"] += 1

    await asyncio.gather(*(worker() for _ in range(workers)))
    return outcomes


def judge_portals(
    stats: Sequence[PortalStats],
    busy: int,
    ok: int,
    total: int,
    elapsed: float,
    minimum: float,
    *,
    across: str = "",
) -> tuple[list[int], Counter[int], Counter[int], float, float, dict[str, bool], bool]:
    """Judge a many-portal run from the portals' own stats (the first ``busy`` were busy).

    Returns the 503s per portal, the refresh counts of the busy and the idle portals, the
    throughput and its reference (the sum of the busy portals' limits), the checks, and
    whether the run passed. ``across`` qualifies the refresh check ("across the fleet").
    """
    rejected = [s.rejections.get("QUERY_LIMIT_EXCEEDED", 0) for s in stats]
    refreshes_busy = Counter(s.refreshes for s in stats[:busy])
    refreshes_idle = Counter(s.refreshes for s in stats[busy:])
    throughput = ok / elapsed
    reference = total / minimum if minimum > 0 else float(total)
    checks = {
        "every call succeeded": ok == total,
        "0 rejections on every portal": max(rejected) == 0,
        f"exactly 1 refresh per busy portal{across}": set(refreshes_busy) == {1},
        "no refresh for an idle portal": set(refreshes_idle) <= {0},
    }
    passed = all(checks.values()) and throughput / reference >= TARGET_RATIO
    return rejected, refreshes_busy, refreshes_idle, throughput, reference, checks, passed


async def marketplace_throughput(
    *, registered: int, busy: int, per_portal: int, rate: float, headroom: int | None = None
) -> Result:
    """Run the many-portal throughput benchmark (see the module docs).

    Args:
        headroom: The client's free slots per bucket (``RateLimit.headroom``); ``None``
            keeps the default (100 ms worth). With ``busy`` portals bursting at once in
            one process, a portal's first request may reach it ``J`` seconds after the
            client counted it: ``rate * J`` slots absorb that (see docs/limits.md).
    """
    limit = RateLimit(requests_per_second=rate, burst=BURST, headroom=headroom)
    minimum = max(0, per_portal - BURST) / rate
    # One expiry per busy portal during the run: the refreshed pair outlives it.
    ttl = max(2.0, minimum * 0.7)
    async with (
        FakePortalHost(
            registered, dialogs=50, rate=rate, burst=BURST, access_token_ttl=ttl
        ) as host,
        host.client_session(limit=0, limit_per_host=8) as http,
    ):
        app = OpenLinesApp(
            client_id=host.client_id,
            client_secret=host.client_secret,
            store=InMemoryTokenStore(),
            session=http,
            rate_limit=limit,
            eviction=Eviction(max_live=max(1000, busy)),
            verify_install=False,
        )
        for portal in host.portals:
            tokens = OAuthTokens.from_response(portal.issue_tokens())
            await app.register(portal.member_id, tokens, portal.application_token)
        chosen = host.portals[:busy]
        started = time.perf_counter()
        results = await asyncio.wait_for(
            asyncio.gather(*(_resolve(app, p.member_id, per_portal, BURST + 10) for p in chosen)),
            timeout=3 * minimum + 120,
        )
        elapsed = time.perf_counter() - started
        live = app.live
        await app.close()
    outcomes: Counter[str] = Counter()
    for counter in results:
        outcomes.update(counter)
    ok = outcomes["ok"]
    total = busy * per_portal
    (rejected, refreshes_busy, refreshes_idle, throughput, reference, checks, passed) = (
        judge_portals([p.stats for p in host.portals], busy, ok, total, elapsed, minimum)
    )
    details: dict[str, Any] = {
        "registered": registered,
        "busy": busy,
        "per_portal": per_portal,
        "rate": rate,
        "burst": BURST,
        "client_headroom": limit.effective_headroom,
        "access_token_ttl_s": ttl,
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
        "live_after_run": live,
        "checks": checks,
    }
    notes = [
        f"{registered} portals registered, {busy} busy, {per_portal} get_dialog calls each "
        f"({BURST + 10} workers per portal); {_rate_label(rate)}, burst {BURST} per portal, "
        f"client headroom {limit.effective_headroom} slots",
        f"sum of the busy portals' limits: {busy} x {per_portal} requests in "
        f"({per_portal} - {BURST}) / {rate:g} = {minimum:.1f} s = {reference:,.0f} req/s; "
        f"measured {throughput:,.0f} req/s in {elapsed:.1f} s",
        f"QUERY_LIMIT_EXCEEDED: {sum(rejected)} in all, on "
        f"{details['portals_with_rejections']} portals (max {max(rejected)} on one)",
        f"refreshes per busy portal (tokens expire after {ttl:.0f} s): {dict(refreshes_busy)}; "
        f"per idle portal: {dict(refreshes_idle)}",
        f"outcomes: {dict(outcomes)}",
    ]
    notes += [f"MISSED: {name}" for name, ok_ in checks.items() if not ok_]
    return Result(
        name="marketplace_throughput",
        figure=throughput,
        unit="req/s",
        reference=reference,
        reference_label="sum of the busy portals' limits",
        target=f"ratio >= {TARGET_RATIO}, 0 rejections per portal, 1 refresh per expiry",
        passed=passed,
        details=details,
        notes=notes,
    )


async def marketplace_memory(*, portals: int) -> Result:
    """Measure the resident memory per registered idle portal in a child process."""
    data = await _run_child(
        ["--portals", str(portals)],
        time_limit=120 + portals / 100,
        module="benchmarks._app_memory_child",
    )
    per_registered = (data["rss_registered_kib"] - data["rss_before_kib"]) * 1024 / 1000 / portals
    per_idle = (data["rss_after_cycle_kib"] - data["rss_before_kib"]) * 1024 / 1000 / portals
    checks = {
        "no portal live after the sweep": data["live_after"] == 0,
        "at most max_live (1000) live at once": data["live_peak"] <= 1000,
    }
    passed = per_idle <= TARGET_KIB and all(checks.values())
    notes = [
        f"{portals} portals registered in an OpenLinesApp over an InMemoryTokenStore "
        "(a pair and an application token each), in a forked child process",
        f"RSS per registered portal: {per_registered:.2f} KB; after each was made live "
        f"(auth, budget, client) and evicted by the idle sweep: {per_idle:.2f} KB",
        f"live portals at the peak: {data['live_peak']} (max_live 1000); after the sweep: "
        f"{data['live_after']}",
    ]
    notes += [f"MISSED: {name}" for name, ok_ in checks.items() if not ok_]
    return Result(
        name="marketplace_memory",
        figure=per_idle,
        unit="KB",
        reference=TARGET_KIB,
        reference_label="target per idle portal",
        target=f"<= {TARGET_KIB:g} KB per registered idle portal",
        passed=passed,
        details={**data, "kb_per_registered": per_registered, "kb_per_idle": per_idle},
        notes=notes,
    )
