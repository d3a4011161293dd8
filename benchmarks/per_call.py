"""Per-call overhead: what the SDK adds to one ``get_dialog`` round trip.

N sequential ``client.get_dialog(chat_id=...)`` calls through
``OpenLinesClient(WebhookAuth(url), rate_limit=None)`` are timed against the same N
sequential bare ``aiohttp.ClientSession.post(url + "imopenlines.dialog.get.json",
json={"CHAT_ID": ...})`` requests plus ``json.loads`` of the answer: the least any
Python client over aiohttp can do for that answer. A third path, the SDK's
``client.call_raw("imopenlines.dialog.get", ...)`` (the same call path, the decoded
``result`` returned as is, not structured into ``Dialog``), splits the overhead into the
call path and the structuring.

The portal runs in its own process with no limits (``benchmarks/_portal_process.py``), so
on two cores the client and the server do not compete. After a warm-up of each path, the
paths alternate in blocks, the order rotating each round, so that all of them see the
same machine state (CPU frequency, caches, other load) in equal shares.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from bitrix_openlines import OpenLinesClient, WebhookAuth

from ._portal_process import portal_process
from ._profile import WAITING, profile_by_package, top_functions
from ._result import Result

__all__ = ["per_call_overhead"]

# Issue 17's targets, the pass criterion: the call path within 5 % of bare aiohttp,
# get_dialog within 10 % (the first plan's target was get_dialog within 20 %).
CALL_RAW_GOAL = 1.05
SDK_GOAL = 1.10
METHOD = "imopenlines.dialog.get"
_SDK_GROUPS = frozenset({"bitrix_openlines", "cattrs", "tenacity", "attrs", "logging"})

# One path: make calls for chat ids ``first .. first + count - 1`` (cycled over the
# portal's dialogs); return how many answers were not the dialog asked for.
_Path = Callable[[int, int], Awaitable[int]]


def _chat_id(i: int, dialogs: int) -> int:
    return i % dialogs + 1


async def per_call_overhead(
    calls: int,
    *,
    rounds: int = 100,
    warmup: int = 300,
    dialogs: int = 100,
    profile_calls: int = 1000,
) -> Result:
    """Time ``calls`` sequential calls of each path, alternated in ``rounds`` blocks."""
    block = max(1, calls // rounds)
    calls = block * rounds
    async with portal_process(dialogs) as url:
        endpoint = f"{url}{METHOD}.json"
        client = OpenLinesClient(WebhookAuth(url), rate_limit=None)
        async with client, aiohttp.ClientSession() as http:

            async def sdk(first: int, count: int) -> int:
                wrong = 0
                for i in range(first, first + count):
                    chat_id = _chat_id(i, dialogs)
                    dialog = await client.get_dialog(chat_id=chat_id)
                    wrong += dialog.chat_id != chat_id
                return wrong

            async def call_raw(first: int, count: int) -> int:
                wrong = 0
                for i in range(first, first + count):
                    chat_id = _chat_id(i, dialogs)
                    result = await client.call_raw(METHOD, {"CHAT_ID": chat_id})
                    wrong += result["id"] != chat_id
                return wrong

            async def bare(first: int, count: int) -> int:
                wrong = 0
                for i in range(first, first + count):
                    chat_id = _chat_id(i, dialogs)
                    async with http.post(endpoint, json={"CHAT_ID": chat_id}) as response:
                        body = await response.read()
                    wrong += json.loads(body)["result"]["id"] != chat_id
                return wrong

            paths: dict[str, _Path] = {"sdk": sdk, "call_raw": call_raw, "bare": bare}
            # Generous: the slowest plausible machine does a loopback call in 5 ms.
            time_limit = 60 + (calls + warmup) * len(paths) * 0.005
            elapsed, wrong = await asyncio.wait_for(
                _measure(paths, block, rounds, warmup), time_limit
            )
            profile: dict[str, Any] = {}
            missed = statistics.median(_round_ratios(elapsed, "sdk")) > SDK_GOAL
            if missed and profile_calls > 0:
                profile = await asyncio.wait_for(
                    _profile(sdk, bare, profile_calls), 60 + profile_calls * 0.02
                )
    return _result(calls, block, rounds, warmup, elapsed, wrong, profile)


async def _measure(
    paths: dict[str, _Path], block: int, rounds: int, warmup: int
) -> tuple[dict[str, list[float]], dict[str, int]]:
    """Each path's seconds in each round (``block`` calls), and its wrong answers."""
    names = list(paths)
    wrong = dict.fromkeys(names, 0)
    for name in names:  # warm-up: connections open, code paths and caches hot
        wrong[name] += await paths[name](0, warmup)
    elapsed: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            started = time.perf_counter()
            wrong[name] += await paths[name](r * block, block)
            elapsed[name].append(time.perf_counter() - started)
    return elapsed, wrong


def _round_ratios(elapsed: dict[str, list[float]], name: str) -> list[float]:
    """Each round's time of path ``name`` over bare's in the same round."""
    return [s / b for s, b in zip(elapsed[name], elapsed["bare"], strict=True)]


async def _profile(sdk: _Path, bare: _Path, calls: int) -> dict[str, Any]:
    sdk_groups, sdk_stats = await profile_by_package(lambda: _discard(sdk(0, calls)), calls)
    bare_groups, _ = await profile_by_package(lambda: _discard(bare(0, calls)), calls)
    return {
        "calls": calls,
        "sdk_us_per_call": sdk_groups,
        "bare_us_per_call": bare_groups,
        "sdk_top_functions_us_per_call": top_functions(sdk_stats, calls, _SDK_GROUPS),
    }


async def _discard(calls: Awaitable[int]) -> None:
    await calls


def _profile_notes(profile: dict[str, Any]) -> list[str]:
    sdk: dict[str, float] = profile["sdk_us_per_call"]
    bare: dict[str, float] = profile["bare_us_per_call"]
    groups = sorted(set(sdk) | set(bare), key=lambda g: sdk.get(g, 0) - bare.get(g, 0))
    groups.reverse()
    lines = [
        f"where the time goes (cProfile of {profile['calls']:,} calls of each path; "
        "µs per call by package, inflated by the profiler; sdk / bare / difference):"
    ]
    for group in groups:
        s, b = sdk.get(group, 0.0), bare.get(group, 0.0)
        if max(s, b) >= 1.0:
            lines.append(f"    {group:<30} {s:7.1f} {b:7.1f} {s - b:+7.1f}")
    lines.append(
        f"    {'total (without ' + WAITING + ')':<30} "
        f"{sum(v for k, v in sdk.items() if k != WAITING):7.1f} "
        f"{sum(v for k, v in bare.items() if k != WAITING):7.1f}"
    )
    top = profile["sdk_top_functions_us_per_call"][:6]
    lines.append(
        "  most own time in the SDK and its dependencies (µs per call): "
        + "; ".join(f"{name} {us:.1f}" for name, us in top)
    )
    return lines


def _result(
    calls: int,
    block: int,
    rounds: int,
    warmup: int,
    elapsed: dict[str, list[float]],
    wrong: dict[str, int],
    profile: dict[str, Any],
) -> Result:
    # The verdict: the median over the rounds of each round's ratio to bare (the paths
    # run back to back in a round, so the machine's drift between rounds cancels). A
    # disturbed block (another process, a collection in the portal) moves one round,
    # which the median leaves out and a total does not: totals of the same code read
    # 1.075 to 1.140 in five CI runs, the paired medians 1.071 to 1.092.
    median = {name: statistics.median(times) / block for name, times in elapsed.items()}
    total = {name: sum(times) / calls for name, times in elapsed.items()}
    sdk_us, raw_us, bare_us = (median[k] * 1e6 for k in ("sdk", "call_raw", "bare"))
    round_ratios = _round_ratios(elapsed, "sdk")
    raw_round_ratios = _round_ratios(elapsed, "call_raw")
    ratio = statistics.median(round_ratios)
    raw_ratio = statistics.median(raw_round_ratios)
    checks = {f"every {name} answer was the dialog asked for": n == 0 for name, n in wrong.items()}
    notes = [
        f"{calls:,} sequential calls per path ({rounds} rounds of {block:,}, order rotating; "
        f"{warmup} warm-up calls each) against a fake portal in its own process, no limits",
        f"median per call over the rounds: SDK get_dialog {sdk_us:.1f} µs; bare aiohttp POST "
        f"+ json.loads {bare_us:.1f} µs; SDK call_raw (no Dialog structuring) {raw_us:.1f} µs",
        f"SDK overhead {sdk_us - bare_us:+.1f} µs/call: call path (call_raw - bare) "
        f"{raw_us - bare_us:+.1f}, Dialog structuring (get_dialog - call_raw) "
        f"{sdk_us - raw_us:+.1f}",
        f"issue 17 (median of the rounds' ratios): call_raw / bare {raw_ratio:.3f} "
        f"(goal <= {CALL_RAW_GOAL}; rounds {min(raw_round_ratios):.3f} to "
        f"{max(raw_round_ratios):.3f}), get_dialog / bare {ratio:.3f} (goal <= {SDK_GOAL}; "
        f"rounds {min(round_ratios):.3f} to {max(round_ratios):.3f})",
        f"the same from the totals: call_raw / bare {total['call_raw'] / total['bare']:.3f}, "
        f"get_dialog / bare {total['sdk'] / total['bare']:.3f}",
    ]
    if profile:
        notes.extend(_profile_notes(profile))
    failed_checks = [key for key, ok in checks.items() if not ok]
    if failed_checks:
        notes.append(f"FAILED CHECKS: {', '.join(failed_checks)}")
    return Result(
        name="per_call_overhead",
        figure=sdk_us,
        unit="µs/call",
        reference=bare_us,
        reference_label="bare aiohttp + json.loads",
        target=f"ratio <= {SDK_GOAL}, call_raw <= {CALL_RAW_GOAL}",
        passed=ratio <= SDK_GOAL and raw_ratio <= CALL_RAW_GOAL and all(checks.values()),
        paired_ratio=ratio,
        details={
            "calls_per_path": calls,
            "rounds": rounds,
            "block": block,
            "warmup": warmup,
            "statistic": "median over the rounds of each round's ratio to bare",
            "sdk_s_per_call": median["sdk"],
            "call_raw_s_per_call": median["call_raw"],
            "bare_s_per_call": median["bare"],
            "total_s_per_call": total,
            "round_s": elapsed,
            "sdk_us_per_call": sdk_us,
            "call_raw_us_per_call": raw_us,
            "bare_us_per_call": bare_us,
            "overhead_us_per_call": sdk_us - bare_us,
            "call_path_overhead_us": raw_us - bare_us,
            "call_raw_ratio": raw_ratio,
            "structuring_overhead_us": sdk_us - raw_us,
            "round_ratios": round_ratios,
            "call_raw_round_ratios": raw_round_ratios,
            "profile": profile,
            "checks": checks,
        },
        notes=notes,
    )
