"""Peers: the same 5,000-dialog job with ``fast-bitrix24``, side by side.

The job: ``imopenlines.dialog.get`` for 5,000 unique ``CHAT_ID`` values, against a fake
portal with the documented bucket (burst 50) at ``rate`` requests/s. Each client gets a
fresh, identical portal (``ThreadedFakePortal``: the portal runs in its own thread and
event loop, the client in another):

1. ``bitrix_openlines``: ``client.get_dialogs([{"chat_id": i}, ...])`` with
   ``RateLimit(rate, burst=50)``, in the runner's event loop;
2. ``fast-bitrix24``, with its documented sync client, in a worker thread:
   ``Bitrix(webhook, verbose=False, request_pool_size=50, requests_per_second=rate)``
   (its own pacing set to the portal's bucket, as its README says to do for a plan) and
   ``bx.get_by_ID("imopenlines.dialog.get", ids, ID_field_name="CHAT_ID")``, which packs
   the calls into ``batch`` requests of 50;
3. the same inside ``with bx.slow():``, the README's remedy for server errors (one request
   at a time).

For each: the time, the dialogs returned (and how many were the right one), the portal's
``QUERY_LIMIT_EXCEEDED`` answers, its HTTP requests, and whether the job finished within
the time limit (``3 x`` the portal's minimum ``+ 60 s``). A run still going at the time
limit is cancelled; tasks a client leaves behind are cancelled and counted.

fast-bitrix24 is an optional extra (``pip install -e ".[peers]"``); without it the
benchmark reports "skipped".
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib
import importlib.metadata
import math
import time
from collections.abc import Mapping
from types import ModuleType
from typing import Any

from bitrix_openlines import OpenLinesClient, RateLimit, WebhookAuth
from bitrix_openlines.testing import ThreadedFakePortal

from ._result import Result
from .rate_limited import _rate_label

__all__ = ["peers_fast_bitrix24"]

METHOD = "imopenlines.dialog.get"
LIMIT_CODE = "QUERY_LIMIT_EXCEEDED"


@dataclasses.dataclass
class _Run:
    """One client's run of the job."""

    client: str
    elapsed: float = 0.0
    returned: int = 0
    correct: int = 0
    finished: bool = False
    timed_out: bool = False
    error: str | None = None
    left_tasks: int = 0
    rejections: dict[str, int] = dataclasses.field(default_factory=dict)
    requests: int = 0
    by_method: dict[str, int] = dataclasses.field(default_factory=dict)

    @property
    def refused(self) -> int:
        return self.rejections.get(LIMIT_CODE, 0)

    def outcome(self) -> str:
        if self.finished:
            return "yes"
        if self.timed_out:
            return "no: time limit"
        return f"no: {self.error}"


def _stats_into(run: _Run, portal: ThreadedFakePortal) -> None:
    stats = portal.stats
    run.rejections = dict(stats.rejections)
    run.requests = stats.requests
    run.by_method = dict(stats.by_method)


async def _ours(dialogs: int, rate: float, burst: int, time_limit: float) -> _Run:
    run = _Run(client="bitrix_openlines get_dialogs")
    queries = [{"chat_id": chat_id} for chat_id in range(1, dialogs + 1)]
    with ThreadedFakePortal(dialogs=dialogs, rate=rate, burst=burst) as portal:
        limit = RateLimit(requests_per_second=rate, burst=burst)
        async with OpenLinesClient(WebhookAuth(portal.webhook_url), rate_limit=limit) as client:
            started = time.perf_counter()
            try:
                outcomes = await asyncio.wait_for(client.get_dialogs(queries), time_limit)
            except TimeoutError:
                run.timed_out = True
                outcomes = []
            run.elapsed = time.perf_counter() - started
        _stats_into(run, portal)
    run.returned = sum(1 for o in outcomes if o.ok)
    run.correct = sum(
        1 for o in outcomes if o.dialog is not None and o.dialog.chat_id == o.index + 1
    )
    failed = [o for o in outcomes if not o.ok]
    if failed:
        run.error = f"{len(failed)} failed, first: {failed[0].error!r}"
    run.finished = not run.timed_out and run.correct == dialogs
    return run


def _cancel_all(loop: asyncio.AbstractEventLoop, flag: list[bool] | None = None) -> None:
    if flag is not None:
        flag.append(True)
    for task in asyncio.all_tasks(loop):
        task.cancel()


def _theirs_in_thread(
    module: ModuleType,
    loop: asyncio.AbstractEventLoop,
    *,
    url: str,
    dialogs: int,
    rate: float,
    burst: int,
    slow: bool,
    time_limit: float,
    label: str,
) -> _Run:
    """Run fast-bitrix24's sync client on ``loop`` in this (worker) thread."""
    run = _Run(client=label)
    unhandled: list[dict[str, Any]] = []
    timed_out: list[bool] = []
    asyncio.set_event_loop(loop)  # its sync wrapper runs on the thread's current loop
    loop.set_exception_handler(lambda _loop, context: unhandled.append(context))
    timer = loop.call_later(time_limit, _cancel_all, loop, timed_out)
    ids = list(range(1, dialogs + 1))
    try:
        bx = module.Bitrix(url, verbose=False, request_pool_size=burst, requests_per_second=rate)
        started = time.perf_counter()
        try:
            with bx.slow() if slow else contextlib.nullcontext():
                result = bx.get_by_ID(METHOD, ids, ID_field_name="CHAT_ID")
        except asyncio.CancelledError:
            if not timed_out:
                raise  # the runner was cancelled
            run.timed_out = True
            result = {}
        except Exception as error:  # its failure is a result here, not a crash
            run.error = f"{type(error).__name__}: {error}"[:200]
            result = {}
        run.elapsed = time.perf_counter() - started
    finally:
        timer.cancel()
        left = [task for task in asyncio.all_tasks(loop) if not task.done()]
        run.left_tasks = len(left)
        for task in left:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*left, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        asyncio.set_event_loop(None)
        loop.close()
    if isinstance(result, Mapping):
        run.returned = len(result)
        run.correct = sum(
            1
            for key, value in result.items()
            if isinstance(value, Mapping) and str(value.get("id")) == str(key)
        )
    run.finished = run.error is None and not run.timed_out and run.correct == dialogs
    return run


async def _theirs(
    module: ModuleType, dialogs: int, rate: float, burst: int, time_limit: float, *, slow: bool
) -> _Run:
    version = importlib.metadata.version("fast-bitrix24")
    label = f"fast-bitrix24 {version} get_by_ID" + (" in slow()" if slow else "")
    with ThreadedFakePortal(dialogs=dialogs, rate=rate, burst=burst) as portal:
        loop = asyncio.new_event_loop()
        try:
            run = await asyncio.to_thread(
                _theirs_in_thread,
                module,
                loop,
                url=portal.webhook_url,
                dialogs=dialogs,
                rate=rate,
                burst=burst,
                slow=slow,
                time_limit=time_limit,
                label=label,
            )
        except asyncio.CancelledError:
            with contextlib.suppress(RuntimeError):  # the loop may be closed already
                loop.call_soon_threadsafe(_cancel_all, loop)
            raise
        _stats_into(run, portal)
    return run


def _skipped() -> Result:
    reason = "skipped: install the peers extra"
    return Result(
        name="peers_fast_bitrix24",
        figure=0.0,
        unit="s",
        reference=0.0,
        reference_label="fast-bitrix24",
        target="informative",
        passed=True,
        notes=[f'{reason} (pip install -e ".[peers]"): fast_bitrix24 is not importable'],
        skipped=reason,
    )


async def peers_fast_bitrix24(dialogs: int = 5000, *, rate: float, burst: int = 50) -> Result:
    """The ``dialogs``-dialog job with bitrix_openlines and with fast-bitrix24."""
    try:
        module = importlib.import_module("fast_bitrix24")
    except ImportError:
        return _skipped()
    batches = math.ceil(dialogs / 50)
    minimum = max(0, batches - burst) / rate
    time_limit = 3 * minimum + 60
    runs = [
        await _ours(dialogs, rate, burst, time_limit),
        await _theirs(module, dialogs, rate, burst, time_limit, slow=False),
        await _theirs(module, dialogs, rate, burst, time_limit, slow=True),
    ]
    ours, peers = runs[0], runs[1:]
    finished_peers = [run for run in peers if run.finished]
    best = min(finished_peers, key=lambda run: run.elapsed) if finished_peers else None
    checks = {
        f"bitrix_openlines returned all {dialogs:,} dialogs, each the right one": ours.finished,
        f"bitrix_openlines got no {LIMIT_CODE}": ours.refused == 0,
    }
    width = max(len(run.client) for run in runs)
    notes = [
        f"{dialogs:,} unique {METHOD} calls (CHAT_ID 1..{dialogs:,}), {batches} batches of 50; "
        f"a fresh fake portal for each client, {_rate_label(rate)}, burst {burst}; "
        f"the portal's minimum {minimum:.2f} s, time limit {time_limit:.0f} s",
        f"{'client':<{width}}  {'time':>8}  {'dialogs':>7}  {'right':>7}  "
        f"{LIMIT_CODE:>20}  {'requests':>8}  finished",
    ]
    notes.extend(
        f"{run.client:<{width}}  {run.elapsed:>6.2f} s  {run.returned:>7,}  {run.correct:>7,}  "
        f"{run.refused:>20,}  {run.requests:>8,}  {run.outcome()}"
        + (f" (left {run.left_tasks} tasks running)" if run.left_tasks else "")
        for run in runs
    )
    notes.append(
        "reference: "
        + (
            f"the fastest fast-bitrix24 run that finished ({best.client})"
            if best
            else "none of the fast-bitrix24 runs finished, so there is no ratio"
        )
    )
    failed_checks = [key for key, ok in checks.items() if not ok]
    if failed_checks:
        notes.append(f"FAILED CHECKS: {', '.join(failed_checks)}")
    return Result(
        name="peers_fast_bitrix24",
        figure=ours.elapsed,
        unit="s",
        reference=best.elapsed if best else 0.0,
        reference_label=best.client if best else "no fast-bitrix24 run finished",
        target=f"informative; ours: all {dialogs:,}, 0 rejections",
        passed=all(checks.values()),
        details={
            "dialogs": dialogs,
            "batches": batches,
            "rate": rate,
            "burst": burst,
            "rate_kind": _rate_label(rate),
            "theoretical_min_s": minimum,
            "time_limit_s": time_limit,
            "fast_bitrix24_version": importlib.metadata.version("fast-bitrix24"),
            "runs": [dataclasses.asdict(run) for run in runs],
            "checks": checks,
        },
        notes=notes,
    )
