"""Several OS processes, one portal: the bucket shared through Redis.

``workers`` processes each make ``per_worker`` concurrent ``get_dialog`` calls against one
fake portal (in this process, in its own thread), pacing themselves through one
``RedisRateLimiter`` on a ``redis-server`` started here on a free loopback port. The
figure is the time from the common start to the last answer; the reference is the
portal's own bound for all their requests together, ``max(0, total - burst) / rate``.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from bitrix_openlines.testing import ThreadedFakePortal

from ._result import Result
from .rate_limited import DOCUMENTED_RATE, _rate_label

__all__ = ["multiprocess_redis"]

WORKER = Path(__file__).with_name("_mp_worker.py")
TARGET_RATIO = 1.10


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _start_redis(binary: str) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    server = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    return server, f"redis://127.0.0.1:{port}/0"
        except OSError:
            time.sleep(0.05)
    server.kill()
    raise RuntimeError("redis-server did not start")


def _run(rate: float, burst: int, workers: int, per_worker: int, redis_url: str) -> Result:
    with ThreadedFakePortal(dialogs=50, rate=rate, burst=burst) as portal:
        start = time.time() + 3.0  # every worker has started and waits by then
        procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    str(WORKER),
                    portal.webhook_url,
                    redis_url,
                    str(rate),
                    str(burst),
                    str(per_worker),
                    str(start),
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(workers)
        ]
        outputs = []
        try:
            for proc in procs:
                out, err = proc.communicate(timeout=3 * (workers * per_worker) / rate + 120)
                if proc.returncode != 0:
                    raise RuntimeError(f"a worker failed: {err[-500:]}")
                outputs.append(json.loads(out.strip().splitlines()[-1]))
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
        stats = portal.stats
    total = workers * per_worker
    elapsed = max(float(o["end"]) for o in outputs) - start
    minimum = max(0, total - burst) / rate
    refused = stats.rejections.get("QUERY_LIMIT_EXCEEDED", 0)
    ok = sum(int(o["ok"]) for o in outputs)
    passed = elapsed / minimum <= TARGET_RATIO and refused == 0 and ok == total
    notes = [
        f"{workers} processes x {per_worker} concurrent get_dialog calls; "
        f"{_rate_label(rate)}, burst {burst}; one RedisRateLimiter (Redis's clock)",
        f"theoretical minimum max(0, {total} - {burst}) / {rate:g} = {minimum:.2f} s",
        f"server QUERY_LIMIT_EXCEEDED: {refused}; calls ok: {ok}/{total}; "
        f"HTTP requests seen by the portal: {stats.requests}",
    ]
    return Result(
        name="multiprocess_redis",
        figure=elapsed,
        unit="s",
        reference=minimum,
        reference_label="theoretical minimum",
        target=f"ratio <= {TARGET_RATIO}, 0 rejections",
        passed=passed,
        details={
            "workers": workers,
            "per_worker": per_worker,
            "rate": rate,
            "burst": burst,
            "elapsed_s": elapsed,
            "theoretical_min_s": minimum,
            "query_limit_exceeded": refused,
            "ok": ok,
            "portal_http_requests": stats.requests,
        },
        notes=notes,
    )


async def multiprocess_redis(
    rate: float = DOCUMENTED_RATE, burst: int = 50, workers: int = 4, per_worker: int = 50
) -> Result:
    """Run the multi-process benchmark (needs ``redis-server`` on the PATH)."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not on the PATH (apt-get install redis-server)")
    server, url = _start_redis(binary)
    try:
        return await asyncio.to_thread(_run, rate, burst, workers, per_worker, url)
    finally:
        server.terminate()
        server.wait(timeout=10)
