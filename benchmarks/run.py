"""Run the benchmarks: ``python -m benchmarks.run [--quick] [--json PATH] [--only NAME ...]``.

Run it from the repository's root. Each benchmark prints its figure as a ratio against a
reference measured or computed in the same run (never a fixed number of seconds), and
the whole run is written as JSON (``benchmarks/results/latest.json`` by default).

Benchmarks (see ``benchmarks/README.md``):

- ``rate_limited_single``: N concurrent ``get_dialog`` calls vs the portal's minimum time.
- ``rate_limited_batch``: N dialogs through ``get_dialogs`` vs the portal's minimum time.
- ``iter_dialogs_memory``: peak RSS growth of ``iter_dialogs`` over a huge input vs what
  a list of the input costs.
- ``answer_cap_memory``: peak RSS growth of a client refusing a 50 MB answer at the
  default cap vs one reading it whole.
- ``multiprocess_redis``: 4 processes sharing one portal's bucket through Redis vs the
  portal's minimum time for all their calls.
- ``per_call_overhead``: sequential ``get_dialog`` round trips vs a bare aiohttp POST plus
  ``json.loads`` of the same answer.
- ``decode_throughput``: ``Dialog`` structuring of the documented 38-field answer (and of
  the 16-field 2024 one) vs ``json.loads`` of the same body.
- ``hostile_input``: ``parse_event`` of hostile event bodies (18/70/140 KiB of
  ``data[]=x``, deep and wide forms, deep JSON) vs the 18 KiB time scaled by size.
- ``job_cpu``: the client's CPU per dialog of a ``get_dialogs`` job vs bare aiohttp batch
  POSTs plus ``json.loads`` (and fast-bitrix24, with the ``peers`` extra).
- ``marketplace_throughput``: 1,000 portals registered in one ``OpenLinesApp``, 200 busy
  at once: total throughput vs the sum of their limits, 503s and refreshes per portal.
- ``marketplace_memory``: resident memory per registered idle portal (a child process).
- ``marketplace_fleet``: the same portals served by 4 worker processes through Redis:
  throughput vs the sum of the limits, 503s per portal, refreshes per expiry (skipped
  without ``redis-server``).
- ``peers_fast_bitrix24``: the 5,000-dialog job with fast-bitrix24, side by side (skipped
  unless the ``peers`` extra is installed).

``--quick`` uses smaller sizes and a scaled rate (CI runs it; about 2.5 minutes); the
full run takes about 20 minutes (the marketplace benchmarks run 4 minutes each). Exit
code 0 even when a target is missed (the run reports, it does not gate); 1 if a benchmark
crashed; 2 on a usage error.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime
import json
import os
import platform
import signal
import sys
import time
import traceback
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from bitrix_openlines import __version__

from ._result import Result
from .answer_cap import answer_cap_memory
from .decode import decode_throughput
from .fleet import marketplace_fleet
from .hostile_input import hostile_input
from .iter_memory import iter_dialogs_memory
from .job_cpu import job_cpu
from .marketplace import marketplace_memory, marketplace_throughput
from .multiprocess import multiprocess_redis
from .peers import peers_fast_bitrix24
from .per_call import per_call_overhead
from .rate_limited import DOCUMENTED_RATE, rate_limited_batch, rate_limited_single

__all__ = ["BENCHMARKS", "main"]

DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "latest.json"


@dataclasses.dataclass(frozen=True)
class Benchmark:
    """A benchmark and its sizes in each mode."""

    name: str
    summary: str
    full: Callable[[], Awaitable[Result]]
    quick: Callable[[], Awaitable[Result]]


BENCHMARKS: tuple[Benchmark, ...] = (
    Benchmark(
        "rate_limited_single",
        "N concurrent get_dialog calls under the bucket",
        # The docs' example: 200 calls at 2/s, burst 50, take (200 - 50) / 2 = 75 s.
        full=lambda: rate_limited_single(n=200, rate=DOCUMENTED_RATE),
        quick=lambda: rate_limited_single(n=110, rate=10.0),
    ),
    Benchmark(
        "rate_limited_batch",
        "N dialogs through get_dialogs under the bucket",
        # 10,000 dialogs, 200 batches: (200 - 50) / 2 = 75 s at the documented rate.
        full=lambda: rate_limited_batch(n=10_000, rate=DOCUMENTED_RATE),
        quick=lambda: rate_limited_batch(n=10_000, rate=10.0),
    ),
    Benchmark(
        "iter_dialogs_memory",
        "peak RSS growth of iter_dialogs over a huge input",
        full=lambda: iter_dialogs_memory(queries=1_000_000, dialogs=10_000),
        quick=lambda: iter_dialogs_memory(queries=100_000, dialogs=10_000),
    ),
    Benchmark(
        "answer_cap_memory",
        "peak RSS of a refused 50 MB answer vs reading it whole",
        full=lambda: answer_cap_memory(size=50_000_000),
        quick=lambda: answer_cap_memory(size=50_000_000),
    ),
    Benchmark(
        "multiprocess_redis",
        "4 processes sharing the bucket through Redis",
        # 4 x 50 calls at 2/s, burst 50: (200 - 50) / 2 = 75 s.
        full=lambda: multiprocess_redis(rate=DOCUMENTED_RATE),
        quick=lambda: multiprocess_redis(rate=10.0),
    ),
    Benchmark(
        "per_call_overhead",
        "sequential get_dialog round trips vs bare aiohttp + json.loads",
        full=lambda: per_call_overhead(calls=20_000, rounds=100),
        quick=lambda: per_call_overhead(calls=3_000, rounds=30),
    ),
    Benchmark(
        "decode_throughput",
        "Dialog structuring of the documented answers vs json.loads",
        full=lambda: decode_throughput(dialogs=200_000),
        quick=lambda: decode_throughput(dialogs=40_000, rounds=10),
    ),
    Benchmark(
        "hostile_input",
        "parse_event of hostile event bodies: linear growth, each under 1 s",
        full=lambda: hostile_input(repeats=15, with_cap_size=True),
        quick=lambda: hostile_input(repeats=9, with_cap_size=False),
    ),
    Benchmark(
        "job_cpu",
        "client CPU per dialog of get_dialogs vs bare aiohttp batches (and fast-bitrix24)",
        full=lambda: job_cpu(20_000, rounds=7),
        quick=lambda: job_cpu(5_000, rounds=10),
    ),
    Benchmark(
        "marketplace_throughput",
        "1,000 portals in one OpenLinesApp, 200 busy: throughput, 503s, refreshes per portal",
        # 500 calls at 2/s, burst 50: (500 - 50) / 2 = 225 s, 200 portals at once.
        # headroom: 200 portals bursting at once in one process delay the portals' first
        # requests by seconds; 10 free slots absorb 5 s at 2/s, 2 s at 5/s.
        full=lambda: marketplace_throughput(
            registered=1000, busy=200, per_portal=500, rate=DOCUMENTED_RATE, headroom=10
        ),
        # Quick: 250 calls, so the 10 slots of headroom (2 s at 5/s) cost 5 %, not 10 %.
        quick=lambda: marketplace_throughput(
            registered=1000, busy=40, per_portal=250, rate=5.0, headroom=10
        ),
    ),
    Benchmark(
        "marketplace_memory",
        "resident memory per registered idle portal of an OpenLinesApp",
        full=lambda: marketplace_memory(portals=10_000),
        quick=lambda: marketplace_memory(portals=1000),
    ),
    Benchmark(
        "marketplace_fleet",
        "4 worker processes over one Redis, many portals: throughput, 503s, refreshes",
        # 1,000 registered, 200 busy, 500 calls each at 2/s: (500 - 50) / 2 = 225 s; each
        # portal's calls split across the 4 workers. headroom as marketplace_throughput.
        full=lambda: marketplace_fleet(
            registered=1000, busy=200, per_portal=500, rate=DOCUMENTED_RATE, headroom=10
        ),
        quick=lambda: marketplace_fleet(
            registered=100, busy=20, per_portal=250, rate=5.0, headroom=10
        ),
    ),
    Benchmark(
        "peers_fast_bitrix24",
        "the 5,000-dialog job with fast-bitrix24, side by side",
        # 100 batches: (100 - 50) / 2 = 25 s per client at the documented rate.
        full=lambda: peers_fast_bitrix24(5000, rate=DOCUMENTED_RATE),
        quick=lambda: peers_fast_bitrix24(5000, rate=10.0),
    ),
)
NAMES = tuple(b.name for b in BENCHMARKS)


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m benchmarks.run``."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description=(
            "Run the bitrix_openlines benchmarks against the fake portal on loopback; print "
            "a table of figures and ratios against references measured in the same run."
        ),
    )
    parser.add_argument(
        "--quick", action="store_true", help="smaller sizes, scaled rates (CI; about 2.5 minutes)"
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=DEFAULT_JSON,
        metavar="PATH",
        help="where to write the results (default benchmarks/results/latest.json)",
    )
    parser.add_argument(
        "--only",
        nargs="+",
        choices=NAMES,
        metavar="NAME",
        help=f"run only these ({', '.join(NAMES)})",
    )
    return parser


def _format_number(value: float, unit: str) -> str:
    return f"{value:,.2f} {unit}" if value < 1000 else f"{value:,.0f} {unit}"


def _table(results: Sequence[Result], crashed: dict[str, str]) -> str:
    header = ("benchmark", "figure", "reference", "ratio", "target", "result")
    rows: list[tuple[str, ...]] = [header]
    for result in results:
        if result.skipped is not None:
            rows.append((result.name, "-", "-", "n/a", result.skipped, "skipped"))
            continue
        ratio = result.ratio
        rows.append(
            (
                result.name,
                _format_number(result.figure, result.unit),
                f"{_format_number(result.reference, result.unit)} ({result.reference_label})",
                "n/a" if ratio is None else f"{ratio:.3f}",
                result.target,
                "pass" if result.passed else "FAIL",
            )
        )
    for name in crashed:
        rows.append((name, "-", "-", "-", "-", "CRASHED"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(line.rstrip() for line in lines)


def _machine() -> dict[str, Any]:
    memory_gib: float | None = None
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemTotal:"):
                    memory_gib = round(int(line.split()[1]) / 1024**2, 1)
                    break
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "memory_gib": memory_gib,
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
    }


async def _run(selected: Sequence[Benchmark], quick: bool) -> tuple[list[Result], dict[str, str]]:
    # SIGTERM cancels the run like Ctrl-C does, so the benchmarks' cleanup (the fake
    # portal's process) runs.
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    if task is not None:
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
    results: list[Result] = []
    crashed: dict[str, str] = {}
    for bench in selected:
        print(f"running {bench.name}: {bench.summary} ...", flush=True)
        started = time.perf_counter()
        try:
            result = await (bench.quick() if quick else bench.full())
        except Exception:
            crashed[bench.name] = traceback.format_exc()
            print(f"  CRASHED after {time.perf_counter() - started:.1f} s:", flush=True)
            print(crashed[bench.name], file=sys.stderr, flush=True)
            continue
        result.details["wall_s"] = time.perf_counter() - started
        results.append(result)
        print(f"  done in {result.details['wall_s']:.1f} s", flush=True)
    return results, crashed


def main(argv: Sequence[str] | None = None) -> int:
    """Run the selected benchmarks, print the table, write the JSON; return the exit code."""
    args = build_parser().parse_args(argv)
    selected = [b for b in BENCHMARKS if args.only is None or b.name in args.only]
    mode = "quick" if args.quick else "full"
    started = datetime.datetime.now(datetime.UTC)
    print(f"bitrix_openlines {__version__} benchmarks, {mode} mode", flush=True)
    try:
        results, crashed = asyncio.run(_run(selected, args.quick))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted", file=sys.stderr)
        return 130
    print()
    print(_table(results, crashed))
    for result in results:
        print(f"\n{result.name}:")
        for note in result.notes:
            print(f"  {note}")
    report = {
        "started_at": started.isoformat(timespec="seconds"),
        "mode": mode,
        "version": __version__,
        "machine": _machine(),
        "command": ["python", "-m", "benchmarks.run", *(sys.argv[1:] if argv is None else argv)],
        "results": [result.to_json() for result in results],
        "crashed": crashed,
    }
    path: Path = args.json
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    missed = [r.name for r in results if not r.passed and r.skipped is None]
    print(f"\nwrote {path}")
    if missed:
        print(f"missed targets (reported, not gated): {', '.join(missed)}")
    return 1 if crashed else 0


if __name__ == "__main__":
    raise SystemExit(main())
