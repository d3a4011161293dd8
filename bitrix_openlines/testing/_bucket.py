"""Model the two Bitrix24 REST limits as pure logic driven by an injectable clock.

Nothing here sleeps or does I/O, so tests can drive both limiters with a fake clock.

**Leaky bucket** (PROTOCOL.md section 4.1): one per portal. Its level drains continuously
at ``rate`` requests per second and never goes below zero. The admission rule is exact:

    at time ``t``: ``level = max(0, level - (t - t_last) * rate)``; then the request is
    admitted if ``level + 1 <= burst`` (and ``level += 1``), otherwise it is rejected
    with 503 ``QUERY_LIMIT_EXCEEDED`` and the level is left unchanged.

So a fresh bucket admits exactly ``floor(burst)`` requests at once, then ``rate`` per second.
A tolerance of ``1e-9`` forgives float rounding, so a mirror computing the same numbers in
another order is not rejected by a rounding error.

What a client can rely on: a client that mirrors this rule with the same ``rate`` and
``burst`` and sends no request its mirror would reject gets no 503 *as long as every
request takes the same time to reach the portal* (one connection used sequentially,
localhost). When delays vary by up to ``J`` seconds, requests sent early but delivered late
drain late, and the portal can count up to ``rate * J`` more than the mirror did; a mirror
that uses ``burst - rate * J`` as its own size gets no 503 either. Both statements are
checked by ``tests/fakeportal/test_limiters.py``.

**Operating budget** (PROTOCOL.md section 4.2, ``LoadLimiter`` on the server): per
(identity, method), the simulated execution seconds are summed in 10 baskets aligned on
``window / 10`` seconds (60 s for the default 600 s window). A call is refused while the
sum over the live baskets is *greater* than the limit (so the call that crosses the limit
still runs). As on the server, a call that took 0.1 s or less is not recorded at all.
The reset time is the wall-clock time of the first call in the oldest live basket plus the
window; when nothing is recorded the server reports the current call's start plus the
window, and so does this model.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable

import attrs

__all__ = ["LeakyBucket", "OperatingBudget"]

_EPSILON = 1e-9
_BASKETS = 10
# LoadLimiter::$minimalFixTime: shorter calls never reach the baskets (PROTOCOL.md 4.2).
_MINIMAL_FIX_TIME = 0.1


class LeakyBucket:
    """Admit or reject requests like the portal's per-portal request bucket.

    Args:
        rate: Drain in requests per second (2.0 on standard plans, 5.0 on Enterprise).
        burst: Bucket size (50 standard, 250 Enterprise).
        clock: A monotonic clock in seconds; ``time.monotonic`` in production.
    """

    def __init__(self, rate: float, burst: float, clock: Callable[[], float]) -> None:
        if not rate > 0 or not math.isfinite(rate):
            raise ValueError(
                f"rate must be a positive number of requests per second, got {rate!r}"
            )
        if not burst >= 1 or not math.isfinite(burst):
            raise ValueError(f"burst must be a number >= 1, got {burst!r}")
        self._rate = float(rate)
        self._burst = float(burst)
        self._clock = clock
        self._level = 0.0
        self._last = clock()

    @property
    def rate(self) -> float:
        """Return the drain rate in requests per second."""
        return self._rate

    @property
    def burst(self) -> float:
        """Return the bucket size."""
        return self._burst

    def _drain(self) -> None:
        now = self._clock()
        elapsed = now - self._last
        if elapsed > 0:
            self._level = max(0.0, self._level - elapsed * self._rate)
            self._last = now

    @property
    def level(self) -> float:
        """Return the current level, drained up to now."""
        self._drain()
        return self._level

    def try_admit(self) -> bool:
        """Take one slot if the request fits, per the rule in the module docstring.

        Returns:
            True when admitted (the level rose by one), False when it must get a 503.
        """
        self._drain()
        if self._level + 1.0 <= self._burst + _EPSILON:
            self._level += 1.0
            return True
        return False


@attrs.define
class _Basket:
    seconds: float
    first_call_unix: float


class OperatingBudget:
    """Account simulated execution time per (identity, method) like ``LoadLimiter``.

    Args:
        limit: Seconds allowed per window (480 documented for the cloud).
        window: Window length in seconds (600 on the server), split into 10 baskets.
        clock: A monotonic clock in seconds, used to place calls in baskets.
        unix_clock: Wall-clock Unix time, used only for the reported reset time.
    """

    def __init__(
        self,
        limit: float,
        window: float,
        clock: Callable[[], float],
        unix_clock: Callable[[], float],
    ) -> None:
        if not limit > 0 or not math.isfinite(limit):
            raise ValueError(
                f"operating_limit must be a positive number of seconds, got {limit!r}"
            )
        if not window > 0 or not math.isfinite(window):
            raise ValueError(
                f"operating_window must be a positive number of seconds, got {window!r}"
            )
        self._limit = float(limit)
        self._window = float(window)
        self._basket_seconds = self._window / _BASKETS
        self._clock = clock
        self._unix_clock = unix_clock
        self._baskets: dict[Hashable, dict[int, _Basket]] = {}

    @property
    def limit(self) -> float:
        """Return the limit in seconds per window."""
        return self._limit

    @property
    def window(self) -> float:
        """Return the window length in seconds."""
        return self._window

    def _live(self, key: Hashable) -> dict[int, _Basket]:
        current = math.floor(self._clock() / self._basket_seconds)
        baskets = self._baskets.get(key, {})
        for index in [i for i in baskets if i <= current - _BASKETS]:
            del baskets[index]
        return baskets

    def accumulated(self, key: Hashable) -> float:
        """Return the recorded seconds of ``key`` in the live window."""
        return float(sum(b.seconds for b in self._live(key).values()))

    def is_blocked(self, key: Hashable) -> bool:
        """Return True when ``key`` is over its limit (the next call gets a 429)."""
        return self.accumulated(key) > self._limit

    def record(self, key: Hashable, seconds: float) -> None:
        """Add one executed call of ``seconds`` simulated time (ignored if <= 0.1 s)."""
        if seconds <= _MINIMAL_FIX_TIME:
            return
        index = math.floor(self._clock() / self._basket_seconds)
        baskets = self._baskets.setdefault(key, {})
        basket = baskets.get(index)
        if basket is None:
            baskets[index] = _Basket(seconds=seconds, first_call_unix=self._unix_clock())
        else:
            basket.seconds += seconds

    def reset_at(self, key: Hashable, call_start_unix: float) -> int:
        """Return the Unix time at which the oldest live basket of ``key`` expires.

        Args:
            key: The (identity, method) pair.
            call_start_unix: Start of the current call, used when nothing is recorded.

        Returns:
            ``time.operating_reset_at`` as the server reports it.
        """
        baskets = self._live(key)
        if not baskets:
            return int(call_start_unix + self._window)
        oldest = baskets[min(baskets)]
        return int(oldest.first_call_unix + self._window)
