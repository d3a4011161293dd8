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
import contextlib
import json
import os
import re
import signal
import sys
import tempfile
from pathlib import Path
from typing import IO, Any

from ._result import Result, mb

__all__ = ["iter_dialogs_memory"]

TARGET_MB = 150.0
ROOT = Path(__file__).resolve().parent.parent
_WEBHOOK_LINE = re.compile(r"^\s*webhook URL:\s+(\S+)\s*$")
_STARTUP_TIMEOUT = 60.0


class BenchmarkError(RuntimeError):
    """A child process failed; the message carries its exit status and stderr."""


def _tail(stream: IO[bytes]) -> str:
    stream.seek(0)
    return stream.read()[-2000:].decode("utf-8", errors="replace")


async def _run_child(args: list[str], time_limit: float) -> dict[str, Any]:
    """Run ``python -m benchmarks._memory_child ARGS`` and return its JSON line."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "benchmarks._memory_child",
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


async def _stop(process: asyncio.subprocess.Process, *, group: bool = False) -> None:
    """Terminate ``process`` (one we started) if it still runs, and reap it.

    With ``group``, ``process`` leads its own session (``start_new_session``): its whole
    process group (the process it forked too) is signalled. Only while ``process`` is not
    reaped, so the group's id cannot have been reused. A process that exited by itself
    left nothing behind: the memory child waits for the process it forked.
    """

    def signal_it(signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            if group:
                os.killpg(process.pid, signum)
            else:
                process.send_signal(signum)

    if process.returncode is not None:
        return
    signal_it(signal.SIGTERM)
    try:
        await asyncio.wait_for(process.wait(), 5)
    except TimeoutError:
        signal_it(signal.SIGKILL)
        await process.wait()


async def _webhook_url(process: asyncio.subprocess.Process, errors: IO[bytes]) -> str:
    assert process.stdout is not None
    while True:
        line = await process.stdout.readline()
        if not line:
            raise BenchmarkError(
                f"the fake portal exited ({await process.wait()}) before printing its URL: "
                f"{_tail(errors)}"
            )
        match = _WEBHOOK_LINE.match(line.decode("utf-8", errors="replace"))
        if match:
            return match.group(1)


async def iter_dialogs_memory(queries: int, dialogs: int, window: int = 5000) -> Result:
    """Stream ``queries`` queries over ``dialogs`` chat ids through ``iter_dialogs``."""
    if dialogs < window:
        raise ValueError("dialogs must be >= window, or the window would hold duplicates")
    sizes = ["--queries", str(queries), "--dialogs", str(dialogs)]
    # Generous: the slowest plausible machine does well over 1,000 dialogs/s.
    timeout = 120 + queries / 1000
    reference = await _run_child(["reference", *sizes], time_limit=120 + queries / 100_000)
    with tempfile.TemporaryFile() as portal_errors:
        portal = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bitrix_openlines.cli",
            "fake-portal",
            "--port",
            "0",
            "--no-limits",
            "--dialogs",
            str(dialogs),
            cwd=ROOT,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=portal_errors,
        )
        try:
            url = await asyncio.wait_for(_webhook_url(portal, portal_errors), _STARTUP_TIMEOUT)
            client = await _run_child(
                ["client", "--url", url, "--window", str(window), *sizes], time_limit=timeout
            )
            if portal.returncode is not None:
                raise BenchmarkError(f"the fake portal died: {_tail(portal_errors)}")
        finally:
            await _stop(portal)
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
