"""A fake portal in its own process, so that it does not share the client's core.

``python -m bitrix_openlines.cli fake-portal --port 0 --no-limits`` (no bucket, no
operating-time limit) is started, its webhook URL is read from its stdout, and it is
terminated when the ``async with`` block ends, whatever happens (a crash, a timeout,
Ctrl-C or SIGTERM to the runner, which cancels the benchmark). The same launch as
``iter_dialogs_memory`` (``benchmarks/iter_memory.py``), whose helpers it reuses.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import tempfile
from collections.abc import AsyncIterator

from .iter_memory import _STARTUP_TIMEOUT, ROOT, BenchmarkError, _stop, _tail, _webhook_url

__all__ = ["BenchmarkError", "portal_process"]


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
