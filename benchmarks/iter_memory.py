"""Memory benchmark: ``iter_dialogs`` over a huge input stays flat.

Three processes, so that only the client's memory is measured:

1. the fake portal, ``python -m bitrix_openlines.cli fake-portal --port 0 --no-limits``
   (no bucket, no operating-time limit), whose webhook URL is read from its stdout;
2. the client (``benchmarks._memory_child client``), a fresh process whose peak RSS
   growth during the stream is the figure;
3. the reference (``benchmarks._memory_child reference``), a fresh process that builds
   the input as a plain ``list`` of the same query dicts: what the input alone costs.

The portal process is terminated in a ``finally``, whatever happens (a crash, a timeout,
Ctrl-C or SIGTERM to the runner, which cancels the benchmark).
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from ._portal_process import ROOT, BenchmarkError, _stop, portal_process
from ._result import Result, mb

__all__ = ["iter_dialogs_memory"]

TARGET_MB = 150.0


async def _run_child(
    args: list[str], time_limit: float, module: str = "benchmarks._memory_child"
) -> dict[str, Any]:
    """Run ``python -m MODULE ARGS`` (a forking memory child) and return its JSON line."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        module,
        *args,
        cwd=ROOT,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,  # it forks: _stop terminates its process group
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), time_limit)
    finally:
        await _stop(process, group=True)
    if process.returncode != 0:
        raise BenchmarkError(
            f"{args[0]} process exited with {process.returncode}: "
            f"{err.decode('utf-8', errors='replace')[-2000:]}"
        )
    data: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return data


async def iter_dialogs_memory(queries: int, dialogs: int, window: int = 5000) -> Result:
    """Stream ``queries`` queries over ``dialogs`` chat ids through ``iter_dialogs``."""
    if dialogs < window:
        raise ValueError("dialogs must be >= window, or the window would hold duplicates")
    sizes = ["--queries", str(queries), "--dialogs", str(dialogs)]
    # Generous: the slowest plausible machine does well over 1,000 dialogs/s.
    timeout = 120 + queries / 1000
    reference = await _run_child(["reference", *sizes], time_limit=120 + queries / 100_000)
    async with portal_process(dialogs) as url:
        client = await _run_child(
            ["client", "--url", url, "--window", str(window), *sizes], time_limit=timeout
        )
    growth = mb(client["growth_kib"])
    input_size = mb(reference["growth_kib"])
    counted = client["ok"] + client["failed"]
    checks = {
        "one outcome per query": counted == queries,
        "every query succeeded": client["failed"] == 0,
        # A zero here means the high-water mark was inherited (see _memory_child).
        "the reference grew the RSS": reference["growth_kib"] > 0,
    }
    rate = queries / client["elapsed_s"]
    notes = [
        f"{queries:,} queries (chat_id = i % {dialogs:,} + 1) through iter_dialogs "
        f"(ordered, window {window:,}, default concurrency) against a fake portal in its "
        "own process with no limits; outcomes counted, none kept",
        f"client RSS baseline {mb(client['baseline_maxrss_kib']):.1f} MB, peak "
        f"{mb(client['peak_maxrss_kib']):.1f} MB, growth {growth:.1f} MB; "
        f"{rate:,.0f} dialogs/s ({client['elapsed_s']:.1f} s)",
        f"reference: a list of the {queries:,} query dicts costs {input_size:.1f} MB of peak "
        f"RSS (tracemalloc, {reference['tracemalloc_sample']:,} scaled: "
        f"{reference['tracemalloc_scaled_bytes'] / 1e6:.1f} MB)",
    ]
    failed_checks = [key for key, ok in checks.items() if not ok]
    if failed_checks:
        notes.append(f"FAILED CHECKS: {', '.join(failed_checks)}")
    if client["first_error"]:
        notes.append(f"first error: {client['first_error']}")
    return Result(
        name="iter_dialogs_memory",
        figure=growth,
        unit="MB",
        reference=input_size,
        reference_label="list of the queries",
        target=f"growth < {TARGET_MB:g} MB",
        passed=growth < TARGET_MB and all(checks.values()),
        details={
            "queries": queries,
            "dialogs": dialogs,
            "window": window,
            "client": client,
            "reference": reference,
            "peak_growth_mb": growth,
            "input_list_mb": input_size,
            "dialogs_per_second": rate,
            "checks": checks,
        },
        notes=notes,
    )
