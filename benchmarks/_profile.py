"""Where the time of a call goes: a cProfile pass grouped by package.

Used by ``per_call_overhead`` when it misses its target. The profile of ``calls`` calls
is summed by the package of each function's own time (``tottime``); the time of builtins
(``isinstance``, ``socket.send``...) and of stdlib helpers outside the listed packages
(``inspect``, ``threading``, ``concurrent.futures``...) goes to the packages of their
callers, in proportion, except the event loop's ``epoll`` wait: time spent waiting for
the portal. Grouping by
package, not by function, keeps the report valid while the SDK's internals change.

cProfile adds a fixed cost to every Python call it sees, so a path with more calls looks
slower than it is: read the groups against each other and against the same grouping of
the reference, not as absolute times (those are the benchmark's figures).
"""

from __future__ import annotations

import cProfile
import pstats
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["WAITING", "profile_by_package", "top_functions"]

WAITING = "waiting for the portal (epoll)"

# (path fragment, group), first match wins.
_GROUPS: tuple[tuple[str, str], ...] = (
    # Code that cattrs and attrs generate for the SDK's classes is theirs, not the SDK's.
    ("<cattrs generated", "cattrs"),
    ("<attrs generated", "attrs"),
    ("bitrix_openlines", "bitrix_openlines"),
    ("/cattrs/", "cattrs"),
    ("/cattr/", "cattrs"),
    ("/tenacity/", "tenacity"),
    ("/attr/", "attrs"),
    ("/attrs/", "attrs"),
    ("/aiohttp/", "aiohttp (+ yarl, multidict)"),
    ("/yarl/", "aiohttp (+ yarl, multidict)"),
    ("/multidict/", "aiohttp (+ yarl, multidict)"),
    ("/propcache/", "aiohttp (+ yarl, multidict)"),
    ("/aiosignal/", "aiohttp (+ yarl, multidict)"),
    ("/asyncio/", "asyncio"),
    ("selectors.py", "asyncio"),
    ("/json/", "json"),
    ("/logging/", "logging"),
    ("/benchmarks/", "the benchmark's loop"),
)

_Func = tuple[str, int, str]


def _group(func: _Func) -> str:
    path = func[0]
    for fragment, group in _GROUPS:
        if fragment in path:
            return group
    return "other"


def _is_builtin(func: _Func) -> bool:
    return func[0] == "~"


def _is_wait(func: _Func) -> bool:
    return _is_builtin(func) and "poll" in func[2] and "epoll" in func[2]


def _by_package(stats: dict[_Func, Any]) -> Counter[str]:
    """Sum own time by package; builtins and unknown stdlib code go to their callers."""
    shares: dict[_Func, dict[str, float]] = {}

    def share(func: _Func, depth: int) -> dict[str, float]:
        # The fraction of ``func``'s own time that belongs to each group: its own group,
        # or (builtins, stdlib helpers like inspect or threading) its callers' groups,
        # weighted by the time spent in it from each caller.
        if func in shares:
            return shares[func]
        if _is_wait(func):
            result = {WAITING: 1.0}
        elif not _is_builtin(func) and _group(func) != "other":
            result = {_group(func): 1.0}
        else:
            callers: dict[_Func, Any] = stats.get(func, (0, 0, 0, 0, {}))[4]
            weights = {caller: entry[3] for caller, entry in callers.items() if caller != func}
            total = sum(weights.values())
            if depth >= 8 or total <= 0:
                result = {"other": 1.0}
            else:
                merged: Counter[str] = Counter()
                for caller, weight in weights.items():
                    for group, fraction in share(caller, depth + 1).items():
                        merged[group] += fraction * weight / total
                result = dict(merged)
        shares[func] = result
        return result

    totals: Counter[str] = Counter()
    for func, entry in stats.items():
        for group, fraction in share(func, 0).items():
            totals[group] += entry[2] * fraction
    return totals


async def profile_by_package(
    run: Callable[[], Awaitable[None]], calls: int
) -> tuple[dict[str, float], pstats.Stats]:
    """Profile ``await run()`` (which makes ``calls`` calls); return µs per call by package.

    Returns:
        The microseconds per call of each group, largest first, and the raw stats.
    """
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        await run()
    finally:
        profiler.disable()
    stats = pstats.Stats(profiler)
    raw: dict[_Func, Any] = stats.stats  # type: ignore[attr-defined]
    totals = _by_package(raw)
    per_call = {group: seconds / calls * 1e6 for group, seconds in totals.most_common()}
    return per_call, stats


def top_functions(
    stats: pstats.Stats, calls: int, groups: frozenset[str], limit: int = 12
) -> list[tuple[str, float]]:
    """The functions of ``groups`` with the most own time, as ``(name, µs per call)``."""
    raw: dict[_Func, Any] = stats.stats  # type: ignore[attr-defined]
    rows = [
        (f"{func[0].rsplit('/', 1)[-1]}:{func[1]}({func[2]})", entry[2] / calls * 1e6)
        for func, entry in raw.items()
        if not _is_builtin(func) and _group(func) in groups
    ]
    rows.sort(key=lambda row: row[1], reverse=True)
    return rows[:limit]
