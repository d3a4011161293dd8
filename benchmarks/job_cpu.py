"""Job CPU: the client process's CPU per dialog for a batch job, limits lifted.

For a job the portal's limit sets the wall time, but the client's CPU per dialog sets how
many portals one core can serve (a marketplace fleet, Enterprise limits). Each path
resolves the same N unique ``CHAT_ID`` values through ``batch`` requests of 50 against
a fake portal in its own process with no limits (``benchmarks/_portal_process.py``), so
the portal's CPU is not the client's; ``time.process_time()`` of this process is read
around each run:

- ``get_dialogs``: ``client.get_dialogs([{"chat_id": i}, ...])`` (typed ``Dialog``
  outcomes, 4 batches in flight, the SDK's default);
- ``bare``: the least any Python client can do: aiohttp POSTs of the same ``batch``
  bodies (4 in flight) and ``json.loads`` of each answer, the dialogs kept as dicts in a
  list (a job returns what it resolved, as ``get_dialogs`` keeps its outcomes: what the
  process keeps alive is part of its CPU, through the garbage collector);
- ``fast-bitrix24`` (``peers`` extra): ``Bitrix.call("imopenlines.dialog.get", [...])``
  with its pacing lifted, dialogs as dicts (skipped without the extra).

Each path hands back what it resolved; the CPU of the run and of freeing its output
later is counted, the check that every dialog came back right is not (it is the
benchmark's, not the job's, and the typed and the dict outputs are checked differently).
A full collection (``gc.collect()``, untimed) before each timed run gives every path the
same collector state: otherwise a path now and then pays for a full collection that the
previous path's garbage made due (40 to 50 ms here, 8 to 10 µs per dialog of a quick
round).
The paths alternate, best of ``rounds`` each (CPU time is noisy on a shared machine).
Targets (issue "Faster than a hand-written call"): ``get_dialogs`` at most 1.5 x bare,
and below fast-bitrix24.
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import json
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from bitrix_openlines import OpenLinesClient, WebhookAuth
from bitrix_openlines.wire import MAX_BATCH_COMMANDS, batch_command, to_wire

from ._portal_process import portal_process
from ._result import Result

__all__ = ["job_cpu"]

METHOD = "imopenlines.dialog.get"
TARGET_RATIO = 1.5

_Run = Callable[[int], Awaitable[Any]]
_Check = Callable[[Any, int], int]


def _batches(first: int, count: int) -> list[dict[str, Any]]:
    bodies = []
    for start in range(first, first + count, MAX_BATCH_COMMANDS):
        ids = range(start, min(start + MAX_BATCH_COMMANDS, first + count))
        cmd = {
            f"c{i}": batch_command(METHOD, to_wire({"CHAT_ID": chat}))
            for i, chat in enumerate(ids)
        }
        bodies.append({"cmd": cmd, "halt": 0})
    return bodies


async def job_cpu(dialogs: int, *, rounds: int = 2) -> Result:
    """Measure the client CPU per dialog of each path for ``dialogs`` unique dialogs."""
    async with portal_process(dialogs) as url:
        client = OpenLinesClient(WebhookAuth(url), rate_limit=None)
        async with client, aiohttp.ClientSession() as http:

            async def sdk(count: int) -> list[Any]:
                return await client.get_dialogs([{"chat_id": i} for i in range(1, count + 1)])

            def sdk_right(outcomes: list[Any], count: int) -> int:
                return sum(
                    o.dialog is not None and o.dialog.chat_id == o.index + 1 for o in outcomes
                )

            async def bare(count: int) -> list[Any]:
                endpoint = f"{url}batch.json"
                queue = _batches(1, count)
                kept: list[Any] = []

                async def worker() -> None:
                    while queue:
                        body = queue.pop()
                        async with http.post(endpoint, json=body) as response:
                            raw = await response.read()
                        kept.extend(json.loads(raw)["result"]["result"].values())

                await asyncio.gather(*(worker() for _ in range(4)))
                return kept

            def bare_right(kept: list[Any], count: int) -> int:
                ids = {d.get("id") for d in kept if isinstance(d, dict)}
                return len(ids & set(range(1, count + 1)))

            paths: dict[str, tuple[_Run, _Check]] = {
                "get_dialogs": (sdk, sdk_right),
                "bare": (bare, bare_right),
            }
            peer_failures: list[str] = []
            peer = _fast_bitrix24(url, peer_failures)
            if peer is not None:
                paths["fast-bitrix24"] = (peer, _peer_right)
            cpu: dict[str, float] = dict.fromkeys(paths, float("inf"))
            per_round: dict[str, list[float]] = {}
            correct: dict[str, int] = {}
            # Collections by generation in each path's best run: a full (generation 2)
            # collection walks every tracked object of the process (40 to 50 ms here),
            # and whether one falls within a run depends on how many tracked objects the
            # run makes: it explains runs that differ by 8 to 10 µs per dialog.
            collections: dict[str, list[int]] = {}
            counting = [0, 0, 0]

            def count(phase: str, info: dict[str, Any]) -> None:
                if phase == "start":
                    counting[info["generation"]] += 1

            for run, _ in paths.values():  # warm-up: connections, caches
                await run(min(dialogs, 500))
            gc.callbacks.append(count)
            try:
                for r in range(rounds):
                    names = list(paths)
                    shift = r % len(names)
                    for name in names[shift:] + names[:shift]:
                        run, right = paths[name]
                        gc.collect()  # each path starts from the same collector state
                        counting[:] = [0, 0, 0]
                        started = time.process_time()
                        output = await run(dialogs)
                        ran = time.process_time() - started
                        correct[name] = right(output, dialogs)  # not counted
                        started = time.process_time()
                        del output  # what the job kept is freed: counted
                        spent = ran + time.process_time() - started
                        if spent < cpu[name]:
                            cpu[name] = spent
                            collections[name] = list(counting)
                        per_round.setdefault(name, []).append(spent)
            finally:
                gc.callbacks.remove(count)
    return _result(
        dialogs,
        rounds,
        cpu,
        correct,
        peer_failures[-1] if peer_failures else None,
        per_round,
        collections,
    )


def _fast_bitrix24(url: str, failures: list[str]) -> _Run | None:
    """fast-bitrix24's path (``None`` without the extra); its failures go to ``failures``."""
    try:
        module = importlib.import_module("fast_bitrix24")
    except ImportError:
        return None

    async def run(count: int) -> Any:
        def job() -> Any:
            bx = module.Bitrix(
                url, verbose=False, requests_per_second=1e6, request_pool_size=1_000_000
            )
            return bx.call(METHOD, [{"CHAT_ID": i} for i in range(1, count + 1)])

        try:
            return await asyncio.to_thread(job)
        except Exception as error:
            # A peer's failure (a new release, say) is a finding, not a crash of the
            # benchmark: reported, and the SDK is compared with bare alone.
            failures.append(f"{type(error).__name__}: {error}"[:200])
            return None

    return run


def _peer_right(got: Any, count: int) -> int:
    """How many of the dialogs asked for are among fast-bitrix24's (dicts)."""
    if not isinstance(got, list | tuple):
        return -1
    return len({d.get("id") for d in got if isinstance(d, dict)} & set(range(1, count + 1)))


def _result(
    dialogs: int,
    rounds: int,
    cpu: dict[str, float],
    correct: dict[str, int],
    peer_failure: str | None = None,
    per_round: dict[str, list[float]] | None = None,
    collections: dict[str, list[int]] | None = None,
) -> Result:
    per = {name: seconds / dialogs * 1e6 for name, seconds in cpu.items()}
    rounds_cpu = per_round or {}
    paired = {
        other: statistics.median(
            s / o for s, o in zip(rounds_cpu["get_dialogs"], rounds_cpu[other], strict=True)
        )
        for other in ("bare", "fast-bitrix24")
        if "get_dialogs" in rounds_cpu and other in rounds_cpu
    }
    ratio = per["get_dialogs"] / per["bare"]
    peer_failed = "fast-bitrix24" in correct and correct["fast-bitrix24"] != dialogs
    peer = None if peer_failed else per.get("fast-bitrix24")
    passed = ratio <= TARGET_RATIO and (peer is None or per["get_dialogs"] < peer)
    notes = [
        f"{dialogs:,} unique dialogs per path in batch requests of 50, limits lifted, "
        f"fake portal in its own process; client process CPU, best of {rounds} rounds",
        "µs of client CPU per dialog: "
        + "; ".join(f"{name} {us:.1f}" for name, us in per.items())
        + f"; get_dialogs / bare {ratio:.2f}"
        + (f"; get_dialogs / fast-bitrix24 {per['get_dialogs'] / peer:.2f}" if peer else ""),
        "dialogs returned right: " + "; ".join(f"{n} {c:,}" for n, c in correct.items()),
    ]
    if collections:
        notes.append(
            "garbage collections in each path's best run (generations 0/1/2): "
            + "; ".join(f"{name} {'/'.join(map(str, c))}" for name, c in collections.items())
        )
    if paired:
        notes.append(
            "median of the rounds' ratios (each round runs the paths back to back): "
            + "; ".join(f"get_dialogs / {other} {r:.2f}" for other, r in paired.items())
        )
    if peer_failed:
        notes.append(
            "fast-bitrix24 did not return every dialog, not compared: "
            + (peer_failure or f"{correct['fast-bitrix24']:,} right")
        )
    elif peer is None:
        notes.append(
            "fast-bitrix24 not measured: install the peers extra (pip install -e '.[peers]')"
        )
    return Result(
        name="job_cpu",
        figure=per["get_dialogs"],
        unit="µs CPU/dialog",
        reference=per["bare"],
        reference_label="bare aiohttp batches + json.loads",
        target=f"ratio <= {TARGET_RATIO} and below fast-bitrix24",
        passed=passed and correct.get("get_dialogs") == dialogs,
        details={
            "cpu_us_per_dialog": per,
            "correct": correct,
            "dialogs": dialogs,
            "rounds": rounds,
            "round_cpu_s": rounds_cpu,
            "paired_median_ratios": paired,
            "collections_in_best_run": collections or {},
        },
        notes=notes,
    )
