"""Memory benchmark: a huge answer is refused at the cap, not read whole.

A server in the runner's process answers ``imopenlines.dialog.get`` with a ``size``-byte
JSON body, streamed without a ``Content-Length`` (so the client must count as it reads).
Two fresh client processes (``benchmarks._answer_child``) each make one call:

- the figure: the client with the default cap (``DEFAULT_MAX_ANSWER_BYTES``, 16 MiB),
  which refuses the answer with ``DecodeError``; its peak RSS growth;
- the reference: the client with a cap above the answer's size, which reads it whole
  and decodes it (what every answer cost before the cap); its peak RSS growth.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from bitrix_openlines.transport import DEFAULT_MAX_ANSWER_BYTES

from ._result import Result, mb
from .iter_memory import _run_child

__all__ = ["answer_cap_memory"]

_PIECE = 64 * 1024
_PATH = "/rest/1/benchmark0answer0cap/imopenlines.dialog.get.json"


def _app(size: int, served: dict[str, int]) -> web.Application:
    async def answer(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        head, tail = b'{"result": "', b'"}'
        body = size - len(head) - len(tail)
        sent = 0
        try:
            await response.write(head)
            while sent < body:
                piece = min(_PIECE, body - sent)
                await response.write(b"x" * piece)
                sent += piece
            await response.write(tail)
        except (ConnectionError, RuntimeError):
            pass  # refused: the client hung up
        served["requests"] += 1
        served["bytes"] = served.get("bytes", 0) + sent
        return response

    app = web.Application()
    app.router.add_post(_PATH, answer)
    return app


async def answer_cap_memory(size: int = 50_000_000) -> Result:
    """One ``size``-byte answer, refused at the default cap vs read whole."""
    served = {"requests": 0}
    runner = web.AppRunner(_app(size, served))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        url = f"http://127.0.0.1:{port}/rest/1/benchmark0answer0cap/"
        capped = await _run_child(
            ["--url", url, "--max-answer-bytes", str(DEFAULT_MAX_ANSWER_BYTES)],
            time_limit=120,
            module="benchmarks._answer_child",
        )
        whole = await _run_child(
            ["--url", url, "--max-answer-bytes", str(2 * size)],
            time_limit=120,
            module="benchmarks._answer_child",
        )
    finally:
        await runner.cleanup()
    growth = mb(capped["growth_kib"])
    reference = mb(whole["growth_kib"])
    cap_mb = DEFAULT_MAX_ANSWER_BYTES / 1e6
    target_mb = 2 * cap_mb
    checks: dict[str, Any] = {
        "refused with DecodeError": capped["error"] == "DecodeError"
        and "max_answer_bytes" in capped["message"],
        "read whole with the cap raised": "max_answer_bytes" not in whole["message"],
        "both calls reached the server": served["requests"] == 2,
    }
    notes = [
        f"one get_dialog whose answer is {size / 1e6:.0f} MB of JSON, streamed without a "
        "Content-Length by a server in the runner's process; each client in a fresh process",
        f"default cap ({cap_mb:.1f} MB): {capped['error']}, peak RSS growth {growth:.1f} MB "
        f"in {capped['elapsed_s']:.2f} s",
        f"cap raised to {2 * size / 1e6:.0f} MB (read whole, as before the cap): "
        f"{whole['error'] or 'no error'}, peak RSS growth {reference:.1f} MB "
        f"in {whole['elapsed_s']:.2f} s",
    ]
    failed = [key for key, ok in checks.items() if not ok]
    if failed:
        notes.append(f"FAILED CHECKS: {', '.join(failed)}")
    return Result(
        name="answer_cap_memory",
        figure=growth,
        unit="MB",
        reference=reference,
        reference_label="the answer read whole",
        target=f"growth < {target_mb:.0f} MB (2 x the cap)",
        passed=growth < target_mb and not failed,
        details={
            "answer_bytes": size,
            "max_answer_bytes": DEFAULT_MAX_ANSWER_BYTES,
            "capped": capped,
            "whole": whole,
            "served": served,
            "checks": checks,
        },
        notes=notes,
    )
