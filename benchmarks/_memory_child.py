"""The child processes of ``iter_dialogs_memory``; each prints one JSON line and exits.

``ru_maxrss`` is a process's high-water mark, so each measurement gets a fresh process
(the runner's own peak, from earlier benchmarks, would hide any growth). Fresh is not
enough on Linux: ``execve`` carries the high-water mark of the process that called it into
the new program's ``ru_maxrss``, so a child started by a runner of 90 MB reports at least
90 MB whatever it does. So this program forks first and measures in the forked process,
whose ``ru_maxrss`` starts from this small program's own few MB; the first process only
waits for it and passes on its exit status. The runner starts it in a new session and
terminates the whole process group.

- ``client``: stream ``queries`` dialog queries through ``client.iter_dialogs`` against a
  fake portal already running (``--url``, its webhook URL), counting outcomes and keeping
  none; report the peak RSS before and after.
- ``reference``: build the input as a ``list`` of the same query dicts and report what
  that alone costs in peak RSS (and, as a cross-check, what tracemalloc counts).

Run by ``benchmarks/iter_memory.py``: ``python -m benchmarks._memory_child client ...``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import resource
import sys
import time
import tracemalloc
from collections.abc import Iterator, Sequence
from typing import Any

__all__ = ["main", "queries"]

_TRACEMALLOC_SAMPLE = 100_000


def _maxrss_kib() -> int:
    # Linux reports KiB (macOS would report bytes; the benchmarks target Linux).
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _current_rss_kib() -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def queries(count: int, dialogs: int) -> Iterator[dict[str, int]]:
    """The benchmark's input, lazily: ``{"chat_id": i % dialogs + 1}`` for ``i < count``."""
    return ({"chat_id": i % dialogs + 1} for i in range(count))


async def _client(url: str, count: int, dialogs: int, window: int) -> dict[str, Any]:
    from bitrix_openlines import OpenLinesClient, WebhookAuth

    gc.collect()
    baseline = _maxrss_kib()
    baseline_rss = _current_rss_kib()
    ok = failed = 0
    first_error: str | None = None
    async with OpenLinesClient(WebhookAuth(url), rate_limit=None) as client:
        started = time.perf_counter()
        async for outcome in client.iter_dialogs(queries(count, dialogs), window=window):
            if outcome.ok:
                ok += 1
            else:
                failed += 1
                if first_error is None:
                    first_error = repr(outcome.error)
        elapsed = time.perf_counter() - started
    peak = _maxrss_kib()
    return {
        "baseline_maxrss_kib": baseline,
        "baseline_rss_kib": baseline_rss,
        "peak_maxrss_kib": peak,
        "end_rss_kib": _current_rss_kib(),
        "growth_kib": peak - baseline,
        "ok": ok,
        "failed": failed,
        "first_error": first_error,
        "elapsed_s": elapsed,
    }


def _reference(count: int, dialogs: int) -> dict[str, Any]:
    gc.collect()
    baseline = _maxrss_kib()
    items = list(queries(count, dialogs))
    peak = _maxrss_kib()
    length = len(items)
    del items
    gc.collect()
    # Cross-check with tracemalloc on a smaller sample, scaled to ``count``.
    sample = min(count, _TRACEMALLOC_SAMPLE)
    tracemalloc.start()
    before, _ = tracemalloc.get_traced_memory()
    sampled = list(queries(sample, dialogs))
    after, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del sampled
    return {
        "items": length,
        "baseline_maxrss_kib": baseline,
        "peak_maxrss_kib": peak,
        "growth_kib": peak - baseline,
        "tracemalloc_sample": sample,
        "tracemalloc_scaled_bytes": (after - before) * count / sample,
    }


def _fork_and_wait() -> int | None:
    """Fork; return ``None`` in the child, the child's exit status in the parent."""
    sys.stdout.flush()
    pid = os.fork()
    if pid == 0:
        return None
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    return code if code >= 0 else 128 - code


def main(argv: Sequence[str] | None = None) -> int:
    """Run one measurement (in a forked process) and print its JSON on one line."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks._memory_child")
    parser.add_argument("mode", choices=("client", "reference"))
    parser.add_argument("--queries", type=int, required=True)
    parser.add_argument("--dialogs", type=int, required=True)
    parser.add_argument("--window", type=int, default=5000)
    parser.add_argument("--url", help="the fake portal's webhook URL (client mode)")
    args = parser.parse_args(argv)
    status = _fork_and_wait()
    if status is not None:
        return status
    if args.mode == "client":
        if not args.url:
            parser.error("client mode needs --url")
        data = asyncio.run(_client(args.url, args.queries, args.dialogs, args.window))
    else:
        data = _reference(args.queries, args.dialogs)
    sys.stdout.write(json.dumps(data) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
