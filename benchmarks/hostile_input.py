"""Hostile event bodies: how long ``parse_event`` takes on what a stranger may post.

An event is parsed before it can be verified, so its parse time is what anyone who knows
a handler's URL can make the application spend. The bodies:

- ``data[]=x`` repeated to 18, 70 and 140 KiB (the shape that took 1.4 s, 28 s and about
  100 s before the parser kept each array's next index), parsed with the field cap raised
  (so that the parse itself is timed) and with the default limits (140 KiB is past
  10,000 fields: refused);
- a deep and wide form: 140 KiB of names 64 brackets deep (PHP's limit), each under its
  own first key, so that each pair builds 63 new arrays (the most a pair can);
- one name 140 KiB deep (refused at the 65th bracket);
- JSON nested 140 KiB deep (refused), and a flat JSON list of 140 KiB of numbers (past
  10,000 values: refused);
- in full mode, ``data[]=x`` up to the 1 MiB body cap, with the field cap raised.

Figure: the 140 KiB ``data[]=x`` parse (field cap raised), in ms. Reference: the 18 KiB
parse's time scaled by the size ratio, what a linear parser takes; the ratio is the
linear-growth ratio (1.0 when linear, about 7.8 if it were quadratic). Each time is the
median of several rounds (one parse of each body per round, the order rotating).
Target: ratio <= 1.5, and every 140 KiB body parsed or refused in under 1 s (the
issue's bar). CPU only, in a worker thread.
"""

from __future__ import annotations

import asyncio
import functools
import statistics
import time
from collections.abc import Callable, Mapping
from typing import Any

from bitrix_openlines.errors import EventError
from bitrix_openlines.events import EventLimits, parse_event

from ._result import Result

__all__ = ["hostile_input"]

KIB = 1024
FORM = "application/x-www-form-urlencoded"
RAISED = EventLimits(max_fields=10**6)  # the 1 MiB body cap and depth 64 still hold


def _appends(size: int) -> bytes:
    """``event=X&data[]=x&data[]=x...``, ``size`` bytes or just under."""
    head, pair = b"event=X", b"&data[]=x"
    return head + pair * ((size - len(head)) // len(pair))


def _deep_wide(size: int) -> bytes:
    """Names 64 brackets deep, each under its own first key: 63 new arrays per pair."""
    pairs, total, i = [b"event=X"], 7, 0
    while True:
        pair = b"data[%d]" % i + b"[a]" * 63 + b"=x"
        if total + 1 + len(pair) > size:
            return b"&".join(pairs)
        pairs.append(pair)
        total += 1 + len(pair)
        i += 1


def _deep_name(size: int) -> bytes:
    head = b"event=X&data"
    return head + b"[a]" * ((size - len(head) - 2) // 3) + b"=1"


def _deep_json(size: int) -> bytes:
    head, tail = b'{"event": "X", "data": ', b"}"
    levels = (size - len(head) - len(tail)) // 2
    return head + b"[" * levels + b"]" * levels + tail


def _wide_json(size: int) -> bytes:
    head, tail = b'{"event": "X", "data": [0', b"]}"
    return head + b",0" * ((size - len(head) - len(tail)) // 2) + tail


def _size(data: Mapping[str, Any]) -> tuple[int, int]:
    """(arrays, values) in an event's data."""
    arrays, values = 0, 0
    stack: list[Any] = [data]
    while stack:
        node = stack.pop()
        if isinstance(node, Mapping):
            arrays += 1
            stack.extend(node.values())
        else:
            values += 1
    return arrays, values


def _outcome(body: bytes, content_type: str, limits: EventLimits | None) -> str:
    try:
        event = parse_event(body, content_type, limits=limits)
    except EventError as error:
        return "refused: " + str(error)
    arrays, values = _size(event.data)
    return f"parsed: {values:,} values in {arrays:,} arrays"


def _elapsed(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


async def hostile_input(*, repeats: int, with_cap_size: bool) -> Result:
    """Parse every hostile body ``repeats`` times; ``with_cap_size`` adds a 1 MiB one."""
    return await asyncio.to_thread(_hostile_input, repeats, with_cap_size)


def _hostile_input(repeats: int, with_cap_size: bool) -> Result:
    cases: list[tuple[str, bytes, str, EventLimits | None]] = []
    sizes = [18, 70, 140] + ([1024] if with_cap_size else [])
    for kib in sizes:
        cases.append((f"data[]=x {kib} KiB, field cap raised", _appends(kib * KIB), FORM, RAISED))
    for kib in (18, 70, 140):
        cases.append((f"data[]=x {kib} KiB, default limits", _appends(kib * KIB), FORM, None))
    cases += [
        ("deep and wide form 140 KiB (64 levels)", _deep_wide(140 * KIB), FORM, None),
        ("one name 140 KiB deep", _deep_name(140 * KIB), FORM, None),
        ("JSON nested 140 KiB deep", _deep_json(140 * KIB), "application/json", None),
        ("flat JSON list 140 KiB", _wide_json(140 * KIB), "application/json", None),
    ]
    calls = {
        label: functools.partial(_outcome, body, content_type, limits)
        for label, body, content_type, limits in cases
    }
    outcomes = {label: call() for label, call in calls.items()}  # and a warm-up
    # One parse of each body per round, the order rotating each round, so that every
    # body sees the same share of the machine's (shared) state; the median per body.
    labels = list(calls)
    times: dict[str, list[float]] = {label: [] for label in labels}
    for r in range(repeats):
        shift = r % len(labels)
        for label in labels[shift:] + labels[:shift]:
            times[label].append(_elapsed(calls[label]))
    rows: dict[str, dict[str, Any]] = {
        label: {
            "bytes": len(body),
            "ms": statistics.median(times[label]) * 1000,
            "outcome": outcomes[label],
        }
        for label, body, _, _ in cases
    }

    small, large = (
        rows["data[]=x 18 KiB, field cap raised"],
        rows["data[]=x 140 KiB, field cap raised"],
    )
    linear_ms = small["ms"] * large["bytes"] / small["bytes"]
    growth = large["ms"] / linear_ms
    slowest_140 = max(row["ms"] for label, row in rows.items() if "140 KiB" in label)
    wide_pairs = _deep_wide(140 * KIB).count(b"&")
    checks = {
        "18 KiB of data[]=x parses to one array of every pair": rows[
            "data[]=x 18 KiB, field cap raised"
        ]["outcome"]
        == f"parsed: {(18 * KIB - 7) // 9:,} values in 1 arrays",
        "140 KiB of data[]=x parses with the field cap raised": rows[
            "data[]=x 140 KiB, field cap raised"
        ]["outcome"].startswith("parsed"),
        "140 KiB of data[]=x is refused past max_fields by default": "(max_fields)"
        in rows["data[]=x 140 KiB, default limits"]["outcome"],
        "the deep and wide form parses, 63 arrays per pair": rows[
            "deep and wide form 140 KiB (64 levels)"
        ]["outcome"]
        == f"parsed: {wide_pairs:,} values in {1 + 63 * wide_pairs:,} arrays",
        "the deep name is refused past max_depth": "(max_depth)"
        in rows["one name 140 KiB deep"]["outcome"],
        "the deep JSON is refused past max_depth": "(max_depth)"
        in rows["JSON nested 140 KiB deep"]["outcome"],
        "the flat JSON list is refused past max_fields": "(max_fields)"
        in rows["flat JSON list 140 KiB"]["outcome"],
    }
    passed = growth <= 1.5 and slowest_140 < 1000 and all(checks.values())
    notes = [
        f"median of {repeats} parses of each body (parse_event of the raw bytes, "
        "one of each per round, order rotating):"
    ]
    notes += [
        f"  {label}: {row['ms']:,.2f} ms ({row['bytes']:,} bytes) -> {row['outcome'][:80]}"
        for label, row in rows.items()
    ]
    notes.append(
        f"linear growth: 140 KiB took {large['ms']:.2f} ms, {growth:.2f} x the 18 KiB time "
        f"scaled by size ({linear_ms:.2f} ms); slowest 140 KiB body {slowest_140:.2f} ms"
    )
    if with_cap_size:
        cap = rows["data[]=x 1024 KiB, field cap raised"]
        notes.append(
            f"at the 1 MiB body cap: {cap['ms']:.2f} ms, "
            f"{cap['ms'] / (small['ms'] * cap['bytes'] / small['bytes']):.2f} x linear"
        )
    failed = [name for name, ok in checks.items() if not ok]
    if failed:
        notes.append(f"FAILED CHECKS: {', '.join(failed)}")
    return Result(
        name="hostile_input",
        figure=large["ms"],
        unit="ms",
        reference=linear_ms,
        reference_label="18 KiB time x size ratio",
        target="ratio <= 1.5; every 140 KiB body < 1 s",
        passed=passed,
        details={
            "repeats": repeats,
            "bodies": rows,
            "linear_growth_ratio": growth,
            "slowest_140_kib_ms": slowest_140,
            "checks": checks,
        },
        notes=notes,
    )
