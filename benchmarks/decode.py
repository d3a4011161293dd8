"""Decode throughput: structuring the documented 38-field chat object into ``Dialog``.

The body is the documentation's own example answer of ``imopenlines.dialog.get``
(``tests/data/docs-examples/imopenlines.dialog.get__200_success.json``, copied into the
repository with its source named). Three loops run over that one body, alternated in
blocks with the order rotating each round so that they share the machine's state:

- ``structure``: ``bitrix_openlines._convert.structure(result, Dialog)`` of the already
  parsed ``result`` (what the SDK adds to a parser), dialogs per second;
- ``json.loads`` of the whole body alone, loads per second (the reference);
- the full decode path, ``json.loads`` of the body then ``structure`` of its ``result``,
  microseconds per dialog.

No network and no event loop: this is CPU only. The garbage collector stays on, as it is
in an application.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

from bitrix_openlines._convert import structure
from bitrix_openlines.types.dialog import Dialog

from ._result import Result

__all__ = ["EXAMPLES", "decode_throughput"]

EXAMPLES = Path(__file__).resolve().parents[1] / "tests" / "data" / "docs-examples"
EXAMPLE = "imopenlines.dialog.get__200_success.json"


def _loop(body: bytes, result: dict[str, Any], kind: str) -> Callable[[int], float]:
    """A loop of ``n`` decodes of one kind; returns its elapsed seconds."""

    def structure_only(n: int) -> float:
        started = time.perf_counter()
        for _ in range(n):
            structure(result, Dialog)
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

    return {"structure": structure_only, "loads": loads_only, "full": full}[kind]


async def decode_throughput(dialogs: int, *, rounds: int = 20, warmup: int = 2000) -> Result:
    """Decode the documented example ``dialogs`` times per loop, in ``rounds`` blocks.

    The loops run in a worker thread, so that the runner's loop still sees SIGTERM.
    """
    return await asyncio.to_thread(_decode_throughput, dialogs, rounds, warmup)


def _decode_throughput(dialogs: int, rounds: int, warmup: int) -> Result:
    path = EXAMPLES / EXAMPLE
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing: the benchmark decodes the documentation's example, "
            "expected in tests/data/docs-examples"
        )
    body = path.read_bytes()
    result = json.loads(body)["result"]
    sample = structure(result, Dialog)
    known = {field.name for field in attrs.fields(Dialog)}
    checks = {
        "the example has 38 fields": len(result) == 38,
        "every field is a Dialog attribute (none left in extra)": not sample.extra
        and set(result) <= known,
        "the dialog decodes with its id and dialog_id": sample.id == result["id"]
        and sample.dialog_id == result["dialog_id"],
    }
    kinds = ("structure", "loads", "full")
    loops = {kind: _loop(body, result, kind) for kind in kinds}
    for kind in kinds:
        loops[kind](warmup)
    block = max(1, dialogs // rounds)
    dialogs = block * rounds
    elapsed = dict.fromkeys(kinds, 0.0)
    for r in range(rounds):
        shift = r % len(kinds)
        for kind in kinds[shift:] + kinds[:shift]:
            elapsed[kind] += loops[kind](block)
    structure_rate = dialogs / elapsed["structure"]
    loads_rate = dialogs / elapsed["loads"]
    us = {kind: seconds / dialogs * 1e6 for kind, seconds in elapsed.items()}
    notes = [
        f"the documented example ({EXAMPLE}, {len(body):,} bytes, {len(result)} fields), "
        f"{dialogs:,} times per loop ({rounds} rounds of {block:,}, order rotating)",
        f"structure into Dialog: {structure_rate:,.0f} dialogs/s ({us['structure']:.1f} µs); "
        f"json.loads alone: {loads_rate:,.0f} loads/s ({us['loads']:.1f} µs)",
        f"full decode path (json.loads + structure): {us['full']:.1f} µs per dialog "
        f"({dialogs / elapsed['full']:,.0f} dialogs/s); structuring is "
        f"{us['structure'] / us['full']:.0%} of it",
    ]
    failed_checks = [key for key, ok in checks.items() if not ok]
    if failed_checks:
        notes.append(f"FAILED CHECKS: {', '.join(failed_checks)}")
    return Result(
        name="decode_throughput",
        figure=structure_rate,
        unit="/s",
        reference=loads_rate,
        reference_label="json.loads of the body",
        target="informative",
        passed=all(checks.values()),
        details={
            "example": EXAMPLE,
            "body_bytes": len(body),
            "fields": len(result),
            "dialogs_per_loop": dialogs,
            "rounds": rounds,
            "warmup": warmup,
            "structure_per_s": structure_rate,
            "loads_per_s": loads_rate,
            "structure_us": us["structure"],
            "loads_us": us["loads"],
            "full_path_us_per_dialog": us["full"],
            "full_path_per_s": dialogs / elapsed["full"],
            "checks": checks,
        },
        notes=notes,
    )
