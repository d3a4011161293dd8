"""Pacing benchmarks: how close the client gets to the portal's own bound, with no 503.

Both run the public client against an in-process :class:`FakePortal` with the same leaky
bucket on both sides (``rate`` requests/s, ``burst`` 50) and compare the elapsed time with
the least time the portal allows, ``max(0, requests - burst) / rate``, computed for the
same run. The portal's ``QUERY_LIMIT_EXCEEDED`` answers are counted from its stats.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter

from bitrix_openlines import Hooks, OpenLinesClient, RateLimit, WebhookAuth
from bitrix_openlines.hooks import RetryEvent
from bitrix_openlines.testing import FakePortal

from ._result import Result

__all__ = ["DOCUMENTED_RATE", "rate_limited_batch", "rate_limited_single"]

DOCUMENTED_RATE = 2.0
"""The standard plan's drain, requests/s (docs/limits.md)."""

TARGET_RATIO = 1.05


def _rate_label(rate: float) -> str:
    kind = "documented rate" if rate == DOCUMENTED_RATE else "scaled rate"
    return f"{kind} {rate:g}/s"


def _timeout(minimum: float) -> float:
    # Stop by ourselves if something hangs: far past any sane run.
    return 3 * minimum + 60


class _Retries:
    """Count the client's retries by error code (a 503 seen by the client shows here)."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def __call__(self, event: RetryEvent) -> None:
        self.counts[event.error_code or event.reason] += 1


def _pacing_result(
    name: str,
    *,
    what: str,
    elapsed: float,
    requests: int,
    rate: float,
    burst: int,
    limit: RateLimit,
    rejections: Counter[str],
    retries: Counter[str],
    seen_requests: int,
    checks: dict[str, bool],
) -> Result:
    minimum = max(0, requests - burst) / rate
    own_bound = max(0, requests - limit.usable_burst) / rate
    refused = rejections.get("QUERY_LIMIT_EXCEEDED", 0)
    ratio = elapsed / minimum if minimum > 0 else math.inf
    passed = ratio <= TARGET_RATIO and refused == 0 and all(checks.values())
    notes = [
        f"{what}; {_rate_label(rate)}, burst {burst}",
        f"theoretical minimum max(0, {requests} - {burst}) / {rate:g} = {minimum:.2f} s; "
        f"the client's own bound with its {limit.effective_headroom} free slot(s) of "
        f"headroom: {own_bound:.2f} s (ratio {own_bound / minimum if minimum else math.inf:.3f})",
        f"server QUERY_LIMIT_EXCEEDED: {refused}; other server rejections: "
        f"{sum(rejections.values()) - refused}; client retries: {sum(retries.values())}"
        + (f" {dict(retries)}" if retries else "")
        + f"; HTTP requests seen by the portal: {seen_requests}",
    ]
    failed_checks = [key for key, ok in checks.items() if not ok]
    if failed_checks:
        notes.append(f"FAILED CHECKS: {', '.join(failed_checks)}")
    return Result(
        name=name,
        figure=elapsed,
        unit="s",
        reference=minimum,
        reference_label="theoretical minimum",
        target=f"ratio <= {TARGET_RATIO}, 0 rejections",
        passed=passed,
        details={
            "requests": requests,
            "rate": rate,
            "burst": burst,
            "rate_kind": _rate_label(rate),
            "elapsed_s": elapsed,
            "theoretical_min_s": minimum,
            "client_bound_s": own_bound,
            "client_headroom_slots": limit.effective_headroom,
            "query_limit_exceeded": refused,
            "server_rejections": dict(rejections),
            "client_retries": dict(retries),
            "portal_http_requests": seen_requests,
            "checks": checks,
        },
        notes=notes,
    )


async def rate_limited_single(n: int, rate: float, burst: int = 50) -> Result:
    """``n`` single ``get_dialog`` calls, all started at once, through the client's bucket."""
    limit = RateLimit(requests_per_second=rate, burst=burst)
    retries = _Retries()
    async with FakePortal(dialogs=n, rate=rate, burst=burst) as portal:
        client = OpenLinesClient(
            WebhookAuth(portal.webhook_url), rate_limit=limit, hooks=Hooks(on_retry=retries)
        )
        async with client:
            started = time.perf_counter()
            results = await asyncio.wait_for(
                asyncio.gather(
                    *(client.get_dialog(chat_id=chat_id) for chat_id in range(1, n + 1)),
                    return_exceptions=True,
                ),
                _timeout(limit.minimum_seconds(n)),
            )
            elapsed = time.perf_counter() - started
        stats = portal.stats.copy()
    errors = [r for r in results if isinstance(r, BaseException)]
    got = [r.chat_id for r in results if not isinstance(r, BaseException)]
    checks = {
        "every call succeeded": not errors,
        "each call got its own dialog": got == list(range(1, n + 1)),
        "one HTTP request per call": stats.requests == n,
    }
    result = _pacing_result(
        "rate_limited_single",
        what=f"N={n} concurrent get_dialog calls",
        elapsed=elapsed,
        requests=n,
        rate=rate,
        burst=burst,
        limit=limit,
        rejections=stats.rejections,
        retries=retries.counts,
        seen_requests=stats.requests,
        checks=checks,
    )
    if errors:
        result.notes.append(f"first error: {errors[0]!r}")
    return result


async def rate_limited_batch(n: int, rate: float, burst: int = 50) -> Result:
    """``n`` unique dialogs through ``get_dialogs``: ``ceil(n / 50)`` batch requests."""
    limit = RateLimit(requests_per_second=rate, burst=burst)
    retries = _Retries()
    batches = math.ceil(n / 50)
    queries = [{"chat_id": chat_id} for chat_id in range(1, n + 1)]
    async with FakePortal(dialogs=n, rate=rate, burst=burst) as portal:
        client = OpenLinesClient(
            WebhookAuth(portal.webhook_url), rate_limit=limit, hooks=Hooks(on_retry=retries)
        )
        async with client:
            started = time.perf_counter()
            outcomes = await asyncio.wait_for(
                client.get_dialogs(queries), _timeout(limit.minimum_seconds(batches))
            )
            elapsed = time.perf_counter() - started
        stats = portal.stats.copy()
    failed = [o for o in outcomes if not o.ok]
    checks = {
        "one outcome per query, in order": [o.index for o in outcomes] == list(range(n)),
        "every query succeeded": not failed,
        "each query got its own dialog": all(
            o.dialog is not None and o.dialog.chat_id == o.index + 1 for o in outcomes
        ),
        f"{batches} batch requests": stats.by_method.get("batch", 0) == batches,
    }
    result = _pacing_result(
        "rate_limited_batch",
        what=f"N={n} unique dialogs through get_dialogs ({batches} batch requests)",
        elapsed=elapsed,
        requests=batches,
        rate=rate,
        burst=burst,
        limit=limit,
        rejections=stats.rejections,
        retries=retries.counts,
        seen_requests=stats.requests,
        checks=checks,
    )
    result.details["dialogs"] = n
    result.details["dialogs_per_second"] = n / elapsed
    if failed:
        result.notes.append(f"first failure: {failed[0].error!r}")
    return result
