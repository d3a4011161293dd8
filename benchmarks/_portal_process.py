"""A fake portal in its own process, so that it does not share the client's core.

``python -m bitrix_openlines.cli fake-portal --port 0 --no-limits`` (no bucket, no
operating-time limit) is started, its webhook URL is read from its stdout, and it is
terminated when the ``async with`` block ends, whatever happens (a crash, a timeout,
Ctrl-C or SIGTERM to the runner, which cancels the benchmark). The same launch as
``iter_dialogs_memory`` (``benchmarks/iter_memory.py``) and ``per_call_overhead`` use it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import IO

__all__ = ["ROOT", "BenchmarkError", "portal_process"]

ROOT = Path(__file__).resolve().parent.parent
_WEBHOOK_LINE = re.compile(r"^\s*webhook URL:\s+(\S+)\s*$")
_STARTUP_TIMEOUT = 60.0


class BenchmarkError(RuntimeError):
    """A child process failed; the message carries its exit status and stderr."""


def _tail(stream: IO[bytes]) -> str:
    stream.seek(0)
    return stream.read()[-2000:].decode("utf-8", errors="replace")


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


@contextlib.asynccontextmanager
async def portal_process(dialogs: int) -> AsyncIterator[str]:
    """Run an unlimited fake portal serving ``dialogs`` dialogs; yield its webhook URL.

    Raises:
        BenchmarkError: The portal did not start, or died while it was in use.
    """
    with tempfile.TemporaryFile() as errors:
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
            stderr=errors,
        )
        try:
            yield await asyncio.wait_for(_webhook_url(portal, errors), _STARTUP_TIMEOUT)
            if portal.returncode is not None:
                raise BenchmarkError(f"the fake portal died: {_tail(errors)}")
        finally:
            await _stop(portal)
