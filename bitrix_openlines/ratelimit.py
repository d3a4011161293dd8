"""Client-side limits that mirror the portal's: the leaky bucket and the time budget.

**The leaky bucket** (PROTOCOL.md 4.1). The portal keeps one counter per portal that
drains at ``requests_per_second`` and answers 503 ``QUERY_LIMIT_EXCEEDED`` to a request
that would lift it above ``burst``. :class:`LeakyBucketLimiter` runs the same bucket as a
GCRA (generic cell rate algorithm, the leaky bucket written as one timestamp): the
*theoretical arrival time* ``tat`` is when the bucket would be empty, and a request may
go at ``t`` when ``tat - t <= (burst - 1) / rate`` -- exactly the portal's rule
``level + 1 <= burst``. Each :meth:`~LeakyBucketLimiter.acquire` reserves its slot at
once, in call order (first come, first served, whatever the concurrency), and then
sleeps until the slot's time. A ``batch`` takes one slot like any request.

``headroom`` keeps a few slots of the bucket free. The portal starts draining at the
first request it *receives*, the client at the first one it *reserves*; and requests that
leave us a slot apart may reach the portal closer together (scheduling and network
jitter). At a full bucket either would be a 503. Each free slot absorbs
``1 / requests_per_second`` seconds of such skew and costs nothing in throughput: only
the first burst is smaller. The default keeps 100 ms worth free, at least one slot: 1
at 2/s and 5/s, 5 at 50/s (measured on loopback: with 0 free slots a 20/s run saw a 503,
with 100 ms worth none up to 100/s).

**The operating-time budget** (PROTOCOL.md 4.2). Each method may spend a number of
execution seconds in a sliding 10 minutes; every answer reports ``time.operating`` (spent
so far) and ``time.operating_reset_at``. :class:`OperatingBudget` pauses a method whose
``operating`` comes within ``headroom`` of the limit, and a method the portal answered
429 for, until its reset time; other methods go on. The budget belongs to the portal, so
every client of one portal in a process shares one (:meth:`OperatingBudget.shared`), as
they share its bucket: the first 429 pauses the method for all of them.

**Inside a batch** the accounts disagree (see ``docs/limits.md``): the official limits
page bills each command to its own method (and ``batch`` itself not at all), while the
official JS SDK's maintainers measured the whole batch billed to ``batch``, its running
total copied into every command's ``result_time``. Read the second way as the first, a
batch near the limit would pause single calls of its commands' methods for nothing; read
the first way as the second, single calls would run into a 429. ``batch_billing="auto"``
(the default) tells them apart by the answer itself: a portal that bills per method
reports ``batch``'s own ``operating`` as 0, one that bills ``batch`` reports its total
there. The commands' blocks are read for their methods only in the first case.
"""

from __future__ import annotations

import abc
import asyncio
import math
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Final

import attrs

from bitrix_openlines.errors import OperationTimeLimitError
from bitrix_openlines.types.common import TimeInfo

__all__ = [
    "BATCH_BILLINGS",
    "LeakyBucketLimiter",
    "Limiter",
    "OperatingBudget",
    "RateLimit",
]

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

BATCH_BILLINGS: Final = ("auto", "per_method", "batch")
"""The values of ``OperatingBudget(batch_billing=)``."""


def _positive(owner: str, name: str, value: object, *, integer: bool = False) -> None:
    kinds: tuple[type, ...] = (int,) if integer else (int, float)
    if (
        isinstance(value, bool)
        or not isinstance(value, kinds)
        or not math.isfinite(value)  # type: ignore[arg-type]
        or value <= 0  # type: ignore[operator]
    ):
        kind = "a positive integer" if integer else "a positive number"
        raise ValueError(f"{owner}.{name} must be {kind}, got {value!r}")


@attrs.frozen(slots=True)
class RateLimit:
    """The portal's leaky bucket: how fast it drains and how much it holds.

    Attributes:
        requests_per_second: The drain rate (2 on most plans, 5 on Enterprise).
        burst: The bucket's size (50 on most plans, 250 on Enterprise).
        headroom: Slots of the bucket the client leaves free against skew (see the
            module docs); ``None`` keeps 100 ms worth, at least one slot.
    """

    requests_per_second: float = 2.0
    burst: int = 50
    headroom: int | None = None

    def __attrs_post_init__(self) -> None:
        _positive("RateLimit", "requests_per_second", self.requests_per_second)
        _positive("RateLimit", "burst", self.burst, integer=True)
        if self.headroom is None:
            return
        if isinstance(self.headroom, bool) or not isinstance(self.headroom, int):
            raise ValueError(f"RateLimit.headroom must be an integer, got {self.headroom!r}")
        if not 0 <= self.headroom < self.burst:
            raise ValueError(
                f"RateLimit.headroom must be from 0 to burst - 1 ({self.burst - 1}), "
                f"got {self.headroom}"
            )

    @classmethod
    def standard(cls) -> RateLimit:
        """The limit of every plan but Enterprise: 2 requests/s, burst 50."""
        return cls(requests_per_second=2.0, burst=50)

    @classmethod
    def enterprise(cls) -> RateLimit:
        """The Enterprise plan's limit: 5 requests/s, burst 250."""
        return cls(requests_per_second=5.0, burst=250)

    @property
    def effective_headroom(self) -> int:
        """The slots kept free: ``headroom``, or 100 ms worth (at least 1, below ``burst``)."""
        if self.headroom is not None:
            return self.headroom
        return min(self.burst - 1, max(1, math.ceil(self.requests_per_second * 0.1)))

    @property
    def usable_burst(self) -> int:
        """The part of the bucket the client fills: ``burst - effective_headroom``."""
        return self.burst - self.effective_headroom

    def minimum_seconds(self, requests: int) -> float:
        """The least time the portal allows for ``requests`` requests from an empty bucket.

        ``max(0, requests - burst) / requests_per_second``: the portal's bound, not ours
        (ours is ``effective_headroom / requests_per_second`` longer).
        """
        return max(0, requests - self.burst) / self.requests_per_second


class Limiter(abc.ABC):
    """What the client asks before each HTTP request (local, or shared through Redis)."""

    @abc.abstractmethod
    async def acquire(self, portal: str, cost: int = 1) -> None:
        """Wait until ``cost`` requests may be sent to ``portal``, then take the slots.

        A wait that is cancelled must give its slots back: cancellation never costs
        capacity.
        """

    @abc.abstractmethod
    async def penalize(self, portal: str) -> None:
        """Record that ``portal`` answered ``QUERY_LIMIT_EXCEEDED``: treat its bucket as full."""


class LeakyBucketLimiter(Limiter):
    """An in-process leaky bucket per portal, mirroring the portal's (see the module docs).

    Args:
        rate_limit: The bucket's rate and size.
        clock: A monotonic clock in seconds (injectable for tests).
        sleep: The coroutine used to wait (injectable for tests).
    """

    def __init__(
        self,
        rate_limit: RateLimit | None = None,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.rate_limit = rate_limit or RateLimit.standard()
        self._clock = clock
        self._sleep = sleep
        # One slot is one drain interval; the client's bucket is ``burst - headroom`` deep.
        self._step = 1.0 / self.rate_limit.requests_per_second
        self._tolerance = (self.rate_limit.usable_burst - 1) * self._step
        self._tat: dict[str, float] = {}
        # Reservations may come from several threads (sync clients each run a loop).
        self._lock = threading.Lock()

    @classmethod
    def shared(cls, rate_limit: RateLimit) -> LeakyBucketLimiter:
        """Return this process's one limiter for ``rate_limit`` (created on first use).

        Every client built with ``rate_limit=`` (and no ``limiter=``) uses it, so that
        several clients of one portal in one process (a web app making one per request,
        sync and async clients side by side) share that portal's bucket, as the portal
        does.
        """
        with _SHARED_LOCK:
            limiter = _SHARED.get(rate_limit)
            if limiter is None:
                limiter = _SHARED[rate_limit] = cls(rate_limit)
            return limiter

    def reserve(self, portal: str, cost: int = 1) -> float:
        """Take ``cost`` slots now and return how many seconds to wait before sending."""
        if isinstance(cost, bool) or not isinstance(cost, int) or cost < 1:
            raise ValueError(f"cost must be a positive integer, got {cost!r}")
        if cost > self.rate_limit.usable_burst:
            raise ValueError(
                f"cost {cost} exceeds the usable bucket size {self.rate_limit.usable_burst}"
            )
        with self._lock:
            now = self._clock()
            tat = max(self._tat.get(portal, now), now)
            step = self._step
            # The last of the ``cost`` slots must fit: level + cost <= usable burst then.
            send_at = max(now, tat + (cost - 1) * step - self._tolerance)
            self._tat[portal] = max(tat, send_at) + cost * step
            return send_at - now

    async def acquire(self, portal: str, cost: int = 1) -> None:
        """Reserve the next slot for ``portal`` (in call order) and wait for it.

        A wait that is cancelled gives its slots back (:meth:`release`): a web app's
        cancelled requests cost the portal's bucket nothing.
        """
        delay = self.reserve(portal, cost)
        if delay > 0:
            try:
                await self._sleep(delay)
            except BaseException:
                self.release(portal, cost)
                raise

    def release(self, portal: str, cost: int = 1) -> None:
        """Give back ``cost`` reserved slots that will not be used (their request never left).

        Every reservation after it keeps its time; the bucket's end moves back by ``cost``
        slots, so the next reservation takes the freed place. The portal's bucket counts
        requests, not reservations: one slot fewer sent is one slot free, wherever it was.
        """
        with self._lock:
            now = self._clock()
            tat = self._tat.get(portal)
            if tat is None:
                return
            self._tat[portal] = max(now, tat - cost * self._step)

    async def penalize(self, portal: str) -> None:
        """Assume the portal's bucket is full now: the next slot is one drain away."""
        with self._lock:
            now = self._clock()
            full = now + self.rate_limit.usable_burst * self._step
            self._tat[portal] = max(self._tat.get(portal, now), full)

    def prune(self) -> int:
        """Forget the portals whose bucket is empty now; return how many were forgotten.

        Lossless: a portal with no entry starts from an empty bucket, which is where it
        is. An application serving many portals calls it so that idle portals cost no
        memory.
        """
        with self._lock:
            now = self._clock()
            empty = [portal for portal, tat in self._tat.items() if tat <= now]
            for portal in empty:
                del self._tat[portal]
            return len(empty)

    def level(self, portal: str) -> float:
        """The bucket's level as this limiter believes it (for metrics and tests)."""
        now = self._clock()
        return max(0.0, self._tat.get(portal, now) - now) / self._step


_SHARED: dict[RateLimit, LeakyBucketLimiter] = {}
_SHARED_BUDGETS: dict[str, OperatingBudget] = {}
_SHARED_LOCK = threading.Lock()


class OperatingBudget:
    """Pause a method whose execution-time budget is (nearly) spent, until its reset.

    Args:
        limit: The portal's budget per method, in seconds per 10 minutes (480 on the cloud
            as documented; the real value is set by the cloud's configuration).
        headroom: Pause when ``operating`` reaches ``limit - headroom``.
        fallback_pause: How long to pause after a 429 when no reset time is known.
        max_pause: The longest pause, whatever reset time an answer gives (the window is
            10 minutes; a reset further away, or not a finite number, is not believed).
        batch_billing: How the portal bills the commands of a ``batch``: ``"per_method"``
            (each to its own method: their ``result_time`` blocks are read for their
            methods), ``"batch"`` (all to ``batch``: only the batch's own block counts),
            or ``"auto"`` (the default: decided per answer, see the module docs).
        clock: Wall-clock Unix time (the portal's ``operating_reset_at`` is Unix time).
        sleep: The coroutine used to wait.
    """

    def __init__(
        self,
        *,
        limit: float = 480.0,
        headroom: float = 5.0,
        fallback_pause: float = 10.0,
        max_pause: float = 660.0,
        batch_billing: str = "auto",
        clock: Clock = time.time,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        _positive("OperatingBudget", "limit", limit)
        if batch_billing not in BATCH_BILLINGS:
            raise ValueError(
                "OperatingBudget.batch_billing must be 'auto', 'per_method' or 'batch', "
                f"got {batch_billing!r}"
            )
        if not 0 <= headroom < limit:
            raise ValueError(f"OperatingBudget.headroom must be in [0, limit), got {headroom!r}")
        _positive("OperatingBudget", "fallback_pause", fallback_pause)
        _positive("OperatingBudget", "max_pause", max_pause)
        self.limit = float(limit)
        self.headroom = float(headroom)
        self.fallback_pause = float(fallback_pause)
        self.max_pause = float(max_pause)
        self.batch_billing = batch_billing
        self._clock = clock
        self._sleep = sleep
        self._paused_until: dict[str, float] = {}
        self._reset_at: dict[str, float] = {}
        self._operating: dict[str, float] = {}

    @classmethod
    def shared(cls, portal: str) -> OperatingBudget:
        """Return this process's one budget for ``portal`` (created on first use).

        Every client without an explicit ``operating_budget`` uses it, so that what one
        client learns of a method's budget (a 429, an ``operating`` near the limit)
        pauses that method for every client of the portal.
        """
        with _SHARED_LOCK:
            budget = _SHARED_BUDGETS.get(portal)
            if budget is None:
                budget = _SHARED_BUDGETS[portal] = cls()
            return budget

    @property
    def pausing(self) -> bool:
        """Whether some method is paused now (forgetting the budget would lose the pause)."""
        now = self._clock()
        return any(until > now for until in self._paused_until.values())

    def paused_until(self, method: str) -> float | None:
        """Unix time until which ``method`` is paused, or ``None``."""
        until = self._paused_until.get(method.lower())
        return until if until is not None and until > self._clock() else None

    def pause_remaining(self, method: str) -> float:
        """Seconds until ``method`` may go again (0 when it is not paused)."""
        until = self._paused_until.get(method.lower())
        return 0.0 if until is None else max(0.0, until - self._clock())

    def operating(self, method: str) -> float | None:
        """The last ``operating`` seconds the portal reported for ``method``."""
        return self._operating.get(method.lower())

    def observe(self, method: str, time_info: TimeInfo | None) -> None:
        """Record a method's ``time`` block; pause the method if its budget is nearly spent."""
        if time_info is None:
            return
        reset_at = time_info.operating_reset_at
        operating = time_info.operating
        if reset_at is None and operating is None:
            return  # a block without operating figures (every batch command's, unmetered)
        key = method.lower()
        if reset_at is not None and math.isfinite(reset_at):
            self._reset_at[key] = reset_at
        if operating is None or not math.isfinite(operating):
            return
        self._operating[key] = operating
        if operating >= self.limit - self.headroom:
            self.pause(method, reset_at)

    def bills_commands(self, batch_time: TimeInfo | None) -> bool:
        """Whether a ``batch`` answer's command blocks speak for the commands' methods.

        ``"auto"``: yes when the batch itself reports no operating time (the portal bills
        per method, so ``batch`` is at 0; or it meters nothing), no when it reports some
        (the portal bills ``batch``, and the commands' blocks carry copies of its total).

        Args:
            batch_time: The ``time`` block of the ``batch`` answer itself.
        """
        if self.batch_billing != "auto":
            return self.batch_billing == "per_method"
        operating = batch_time.operating if batch_time is not None else None
        return operating is None or not math.isfinite(operating) or operating <= 0

    def pause(self, method: str, until: float | None = None) -> float:
        """Pause ``method`` until ``until`` (the last known reset, or a fallback pause).

        Returns:
            The Unix time the method is paused until.
        """
        key = method.lower()
        now = self._clock()
        if until is None or not math.isfinite(until) or until <= now:
            known = self._reset_at.get(key)
            until = known if known is not None and known > now else now + self.fallback_pause
        # One second past the reset: the portal frees the basket at that second. Never
        # longer than max_pause: a reset beyond the 10-minute window is not believed.
        until = min(until + 1.0, now + self.max_pause)
        self._paused_until[key] = max(self._paused_until.get(key, 0.0), until)
        return self._paused_until[key]

    def past_deadline(
        self, method: str, remaining: float | None, *, status: int | None = None
    ) -> OperationTimeLimitError | None:
        """The error for ``method`` paused past a deadline ``remaining`` seconds away, if so.

        A call (or a batch command) fails at once with it rather than wait for a reset
        it would not live to see. ``None``: not paused, or the pause ends in time.
        """
        pause = self.pause_remaining(method)
        if pause <= 0 or remaining is None or pause <= remaining:
            return None
        return OperationTimeLimitError(
            f"{method} is paused {pause:.0f}s by its operating-time budget, "
            f"past the deadline ({max(0.0, remaining):.0f}s left)",
            code="OPERATION_TIME_LIMIT",
            status=status,
            method=method,
            reset_at=self.paused_until(method),
        )

    async def wait(self, method: str) -> None:
        """Return when ``method`` is not paused (at once, for a method never paused)."""
        key = method.lower()
        while True:
            until = self._paused_until.get(key)
            if until is None:
                return
            remaining = until - self._clock()
            if remaining <= 0:
                self._paused_until.pop(key, None)
                return
            await self._sleep(remaining)
