"""The child process of ``answer_cap_memory``; it prints one JSON line and exits.

It forks and measures in the forked process, for the reason ``_memory_child`` gives
(``ru_maxrss`` is a high-water mark that ``execve`` carries over). The forked process
calls ``get_dialog`` once against ``--url`` (a server that answers a huge body) with
``--max-answer-bytes`` as the client's cap, and reports its peak RSS growth and what
the call raised.

Run by ``benchmarks/answer_cap.py``: ``python -m benchmarks._answer_child --url ...``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
import time
from collections.abc import Sequence
from typing import Any

from ._memory_child import _fork_and_wait, _maxrss_kib

__all__ = ["main"]


async def _call(url: str, max_answer_bytes: int) -> dict[str, Any]:
    from bitrix_openlines import OpenLinesClient, RetryPolicy, WebhookAuth

    gc.collect()
    baseline = _maxrss_kib()
    error: str | None = None
    message = ""
    async with OpenLinesClient(
        WebhookAuth(url),
        rate_limit=None,
        retry=RetryPolicy(max_attempts=1),
        max_answer_bytes=max_answer_bytes,
    ) as client:
        started = time.perf_counter()
        try:
            await client.get_dialog(chat_id=1)
        except Exception as exc:
            error = type(exc).__name__
            message = str(exc)[:200]
        elapsed = time.perf_counter() - started
    peak = _maxrss_kib()
    return {
        "max_answer_bytes": max_answer_bytes,
        "baseline_maxrss_kib": baseline,
        "peak_maxrss_kib": peak,
        "growth_kib": peak - baseline,
        "error": error,
        "message": message,
        "elapsed_s": elapsed,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Run one measurement (in a forked process) and print its JSON on one line."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks._answer_child")
    parser.add_argument("--url", required=True, help="the server's webhook URL")
    parser.add_argument("--max-answer-bytes", type=int, required=True)
    args = parser.parse_args(argv)
    status = _fork_and_wait()
    if status is not None:
        return status
    data = asyncio.run(_call(args.url, args.max_answer_bytes))
    sys.stdout.write(json.dumps(data) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
