"""Decode throughput: structuring a chat object into ``Dialog`` vs ``json.loads`` of its body.

Two bodies of ``imopenlines.dialog.get``, both the documentation's own example answers
(copied into ``tests/data/docs-examples`` with their sources named):

- the documented 38-field chat object (``imopenlines.dialog.get__200_success.json``), the
  body of the target;
- the 16-field object of 2024 portals (``imopenlines.dialog.get__legacy2024_200_success
  .json``), a second figure: a small body, so ``json.loads`` is cheap, while ``Dialog``
  still has all its attributes to set.

For each body four loops run, all alternated in blocks with the order rotating each round
so that they share the machine's state:

- ``structure``: ``bitrix_openlines._convert.structure(result, Dialog)`` of the already
  parsed ``result`` (what the SDK adds to a parser): the generated fast path;
- ``detailed``: ``_convert.converter.structure(result, Dialog)``, the detailed cattrs path
  alone (what ``structure`` did before issue 17; now only a bad answer takes it);
- ``loads``: ``json.loads`` of the whole body (the reference);
- ``full``: the full decode path, ``json.loads`` of the body then ``structure`` of its
  ``result``.

Then a figure of a batch job's kind: ``kept`` different bodies of the fake portal's
38-field object (``render_dialog`` of ``generate_dialogs``, through ``json.dumps`` and
``json.loads``) structured into a list that is kept, as ``get_dialogs`` keeps its outcomes,
against ``json.loads`` of the same bodies into a list that is kept. The process's CPU time
(``time.process_time``), so that the garbage collector's work on the kept objects counts:
it traverses every one of them, more than once, as the list grows.

No network and no event loop: this is CPU only. The garbage collector stays on, as it is
in an application.
"""

from __future__ import annotations

import asyncio
import gc
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

from bitrix_openlines._convert import converter, structure
from bitrix_openlines.testing._data import generate_dialogs, render_dialog
from bitrix_openlines.types.dialog import Dialog

from ._result import Result

__all__ = ["EXAMPLES", "decode_throughput"]

EXAMPLES = Path(__file__).resolve().parents[1] / "tests" / "data" / "docs-examples"
EXAMPLE = "imopenlines.dialog.get__200_success.json"
LEGACY_EXAMPLE = "imopenlines.dialog.get__legacy2024_200_success.json"
TARGET_RATIO = 1.0
KINDS = ("structure", "detailed", "loads", "full")


def _loop(body: bytes, result: dict[str, Any], kind: str) -> Callable[[int], float]:
    """A loop of ``n`` decodes of one kind; returns its elapsed seconds."""

    def structure_only(n: int) -> float:
        started = time.perf_counter()
        for _ in range(n):
            structure(result, Dialog)
        return time.perf_counter() - started

    def detailed_only(n: int) -> float:
        started = time.perf_counter()
        for _ in range(n):
            converter.structure(result, Dialog)
        return time.perf_counter() - started

    def loads_only(n: int) -> float:
        started = time.perf_counter()
        for _ in range(n):
            json.loads(body)
        return time.perf_counter() - started

    def full(n: int) -> float:
        started = time.perf_counter()
        for _ in range(n):
            structure(json.loads(body)["result"], Dialog)
        return time.perf_counter() - started

    loops = {
        "structure": structure_only,
        "detailed": detailed_only,
        "loads": loads_only,
        "full": full,
    }
    return loops[kind]


async def decode_throughput(
    dialogs: int, *, rounds: int = 20, warmup: int = 2000, kept: int = 10_000, kept_rounds: int = 5
) -> Result:
    """Decode each example ``dialogs`` times per loop, in ``rounds`` blocks; then ``kept``
    different bodies, kept, ``kept_rounds`` times.

    The loops run in a worker thread, so that the runner's loop still sees SIGTERM.
    """
    return await asyncio.to_thread(_decode_throughput, dialogs, rounds, warmup, kept, kept_rounds)


def _read(name: str) -> tuple[bytes, dict[str, Any]]:
    path = EXAMPLES / name
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing: the benchmark decodes the documentation's examples, "
            "expected in tests/data/docs-examples"
        )
    body = path.read_bytes()
    result = json.loads(body)["result"]
    assert isinstance(result, dict)
    return body, result


def _same(fast: Dialog, detailed: Dialog) -> bool:
    """Whether both paths gave the same dialog, ``extra`` included (outside equality)."""
    return fast == detailed and fast.extra == detailed.extra


def _kept(count: int, rounds: int) -> dict[str, Any]:
    """CPU µs per body of structuring ``count`` different bodies into a kept list, and of
    ``json.loads`` of the same bodies into a kept list: the median of ``rounds`` rounds,
    the two alternating. Each round starts from a collected heap, and its list is dropped
    outside the timing."""
    bodies = [json.dumps(render_dialog(d, user_id=1)) for d in generate_dialogs(count, 1)]
    results = [json.loads(body) for body in bodies]

    def structure_kept() -> list[Dialog]:
        return [structure(result, Dialog) for result in results]

    def loads_kept() -> list[Any]:
        return [json.loads(body) for body in bodies]

    loops: dict[str, Callable[[], list[Any]]] = {"structure": structure_kept, "loads": loads_kept}
    us: dict[str, list[float]] = {name: [] for name in loops}
    sample = structure_kept()
    same = all(
        _same(a, converter.structure(r, Dialog)) for a, r in zip(sample, results, strict=True)
    )
    del sample
    for r in range(rounds):
        for name in list(loops)[r % 2 :] + list(loops)[: r % 2]:
            gc.collect()
            started = time.process_time()
            out = loops[name]()
            us[name].append((time.process_time() - started) / count * 1e6)
            del out
    median = {name: statistics.median(values) for name, values in us.items()}
    return {
        "count": count,
        "rounds": rounds,
        "us": median,
        "ratio": median["structure"] / median["loads"],
        "fields": len(results[0]),
        "same": same,
    }


def _decode_throughput(
    dialogs: int, rounds: int, warmup: int, kept_count: int, kept_rounds: int
) -> Result:
    bodies = {"current": _read(EXAMPLE), "legacy": _read(LEGACY_EXAMPLE)}
    (_body, result), (_, legacy) = bodies["current"], bodies["legacy"]
    sample = structure(result, Dialog)
    old_sample = structure(legacy, Dialog)
    known = {field.name for field in attrs.fields(Dialog)}
    checks = {
        "the example has 38 fields": len(result) == 38,
        "every field is a Dialog attribute (none left in extra)": not sample.extra
        and set(result) <= known,
        "the dialog decodes with its id and dialog_id": sample.id == result["id"]
        and sample.dialog_id == result["dialog_id"],
        "the 2024 example has 16 fields, its dialog_id derived": len(legacy) == 16
        and old_sample.dialog_id == f"chat{legacy['id']}",
        "the fast and the detailed path give the same dialogs": _same(
            sample, converter.structure(result, Dialog)
        )
        and _same(old_sample, converter.structure(legacy, Dialog)),
    }
    loops = {
        (name, kind): _loop(raw, parsed, kind)
        for name, (raw, parsed) in bodies.items()
        for kind in KINDS
    }
    for loop in loops.values():
        loop(warmup)
    block = max(1, dialogs // rounds)
    dialogs = block * rounds
    order = list(loops)
    elapsed = dict.fromkeys(order, 0.0)
    for r in range(rounds):
        shift = r % len(order)
        for key in order[shift:] + order[:shift]:
            elapsed[key] += loops[key](block)
    us = {key: seconds / dialogs * 1e6 for key, seconds in elapsed.items()}
    kept = _kept(kept_count, kept_rounds)
    checks["the fast and the detailed path give the same kept dialogs"] = kept["same"]
    ratio = {name: us[name, "structure"] / us[name, "loads"] for name in bodies}
    was = {name: us[name, "detailed"] / us[name, "loads"] for name in bodies}
    sizes = {name: (len(raw), len(parsed)) for name, (raw, parsed) in bodies.items()}
    notes = [
        f"each loop {dialogs:,} times ({rounds} rounds of {block:,}, order rotating over "
        f"{len(order)} loops)",
    ]
    labels = {"current": f"documented ({EXAMPLE}", "legacy": f"2024 ({LEGACY_EXAMPLE}"}
    for name in bodies:
        size, fields = sizes[name]
        notes += [
            f"{labels[name]}, {size:,} bytes, {fields} fields):",
            f"  structure into Dialog {us[name, 'structure']:.2f} µs "
            f"({dialogs / elapsed[name, 'structure']:,.0f} dialogs/s); json.loads "
            f"{us[name, 'loads']:.2f} µs: structure / json.loads = {ratio[name]:.3f}",
            f"  the detailed cattrs path alone (before issue 17) {us[name, 'detailed']:.2f} µs "
            f"({was[name]:.3f} x json.loads): the fast path takes "
            f"{us[name, 'structure'] / us[name, 'detailed']:.0%} of its time",
            f"  full decode path (json.loads + structure) {us[name, 'full']:.2f} µs per dialog "
            f"({dialogs / elapsed[name, 'full']:,.0f} dialogs/s)",
        ]
    notes += [
        f"{kept['count']:,} different fake-portal bodies ({kept['fields']} fields), kept, CPU "
        f"with the garbage collector (median of {kept['rounds']} rounds):",
        f"  structure into a kept list {kept['us']['structure']:.2f} µs per dialog; json.loads "
        f"into a kept list {kept['us']['loads']:.2f} µs: ratio {kept['ratio']:.3f}",
    ]
    failed_checks = [key for key, ok in checks.items() if not ok]
    if failed_checks:
        notes.append(f"FAILED CHECKS: {', '.join(failed_checks)}")
    if ratio["current"] >= TARGET_RATIO:
        notes.append(
            f"MISSED: structuring the documented object took {ratio['current']:.3f} x "
            "json.loads of its body"
        )
    return Result(
        name="decode_throughput",
        figure=us["current", "structure"],
        unit="µs",
        reference=us["current", "loads"],
        reference_label="json.loads of the body",
        target=f"structure / json.loads < {TARGET_RATIO:g}",
        passed=all(checks.values()) and ratio["current"] < TARGET_RATIO,
        details={
            "examples": {"current": EXAMPLE, "legacy": LEGACY_EXAMPLE},
            "body_bytes": {name: size for name, (size, _) in sizes.items()},
            "fields": {name: fields for name, (_, fields) in sizes.items()},
            "dialogs_per_loop": dialogs,
            "rounds": rounds,
            "warmup": warmup,
            "us": {f"{name}.{kind}": value for (name, kind), value in us.items()},
            "per_s": {
                f"{name}.{kind}": dialogs / seconds for (name, kind), seconds in elapsed.items()
            },
            "structure_over_loads": ratio,
            "detailed_over_loads": was,
            "kept": {key: value for key, value in kept.items() if key != "same"},
            "checks": checks,
        },
        notes=notes,
    )
