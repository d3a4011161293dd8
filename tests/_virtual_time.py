"""Virtual time shared by the client's limiter and the fake portal, over real sockets.

The client's :class:`~bitrix_openlines.LeakyBucketLimiter` and the portal's bucket read one
clock, :class:`VirtualTime`, which moves only when :meth:`VirtualTime.run` moves it: to
the next time a limiter asked to wake at, and only once every request already let go has
reached the portal. So the portal sees each request at exactly the time the limiter sent
it, whatever the load of the machine: whether a schedule is accepted by the portal's
bucket is then a decision, the same on every run, and a run of minutes of virtual time
takes well under a second of real time.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
from collections.abc import Awaitable, Callable
from typing import TypeVar

from bitrix_openlines import RateLimit
from bitrix_openlines.ratelimit import LeakyBucketLimiter

__all__ = ["PacedLimiter", "VirtualTime"]

T = TypeVar("T")

# Not a claim about speed: only a guard, so that a bug that stalls virtual time fails the
# test instead of hanging it. A run here takes well under a second.
HANG_GUARD = 300.0


class VirtualTime:
    """A monotonic clock and a ``sleep`` that moves it; see the module docs."""

    def __init__(self, start: float = 1000.0) -> None:
        self.start = start
        self.now = start
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def __call__(self) -> float:
        return self.now

    @property
    def sleeping(self) -> int:
        """Tasks waiting in :meth:`sleep` for the clock to reach their time."""
        return sum(1 for _, _, future in self._sleepers if not future.done())

    async def sleep(self, seconds: float) -> None:
        """Wait until :meth:`run` has moved the clock ``seconds`` past now."""
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + seconds, next(self._order), future))
        await future

    async def run(
        self, main: Awaitable[T], *, limiter: PacedLimiter, arrived: Callable[[], int]
    ) -> T:
        """Run ``main``, moving the clock whenever every request let go has arrived.

        Args:
            main: What to run (the calls).
            limiter: The limiter every request goes through.
            arrived: How many requests the portal has received so far.
        """
        task = asyncio.ensure_future(main)
        try:
            async with asyncio.timeout(HANG_GUARD):
                while not task.done():
                    await asyncio.wait([task], timeout=0.001)
                    while self._sleepers and self._sleepers[0][2].done():
                        heapq.heappop(self._sleepers)  # a cancelled sleeper
                    if task.done() or not self._sleepers:
                        continue
                    # Every reservation is either sleeping or let go; every one let go must
                    # have reached the portal before the clock moves on.
                    if arrived() != limiter.reserved - self.sleeping:
                        continue
                    self.now = max(self.now, self._sleepers[0][0])
                    while self._sleepers and self._sleepers[0][0] <= self.now:
                        _, _, future = heapq.heappop(self._sleepers)
                        if not future.done():
                            future.set_result(None)
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        return task.result()


class PacedLimiter(LeakyBucketLimiter):
    """A :class:`LeakyBucketLimiter` on virtual time that records when each request went."""

    def __init__(self, rate_limit: RateLimit, clock: VirtualTime) -> None:
        super().__init__(rate_limit, clock=clock, sleep=clock.sleep)
        self.virtual = clock
        self.reserved = 0
        self.sent_at: list[float] = []

    async def acquire(self, portal: str, cost: int = 1) -> None:
        self.reserved += 1
        await super().acquire(portal, cost)
        self.sent_at.append(self.virtual.now)

    def offsets(self) -> list[float]:
        """When each request went, in seconds after the clock's start, in order."""
        return sorted(t - self.virtual.start for t in self.sent_at)
