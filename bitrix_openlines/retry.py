"""``RetryPolicy``: what is retried and how long to wait, driving tenacity.

"Should I retry" (:meth:`RetryPolicy.reason`) is kept apart from "how long to wait"
(:meth:`RetryPolicy.delay`); both are pure and tested as tables.

- ``QUERY_LIMIT_EXCEEDED`` (the portal's bucket) is always sent again, after the limiter
  has let one slot drain, and ``OPERATION_TIME_LIMIT`` after the method's reset time, if
  that falls within the deadline. These are pacing, not failures: the session resends
  within the same attempt (see :meth:`RetryPolicy.paces`), so they use up no attempt of
  ``max_attempts``, only the ``deadline``.
- 5xx answers, a body that is not JSON, dropped connections and timeouts are retried
  only for idempotent methods (a non-idempotent call may have happened).
- Everything else -- ``OVERLOAD_LIMIT``, auth and access errors, bad arguments, a moved
  portal, an invalid URL (``InvalidURLError``) -- is final.

Waits grow exponentially with full jitter (``uniform(0, min(cap, base * 2**n))``), bounded
by ``max_attempts`` and by an overall ``deadline`` per call. :func:`retrying` hands
tenacity callbacks that are pure functions of its state: the attempt number, the error,
the wait it computed, and the call's start.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Awaitable, Callable

import attrs
from tenacity import AsyncRetrying, RetryCallState

from bitrix_openlines.errors import (
    DecodeError,
    OpenLinesError,
    OperationTimeLimitError,
    OverloadError,
    PortalMovedError,
    RateLimitError,
    RequestTimeoutError,
    ServerError,
    TransportError,
)

__all__ = ["RetryPolicy", "retrying"]

Sleep = Callable[[float], Awaitable[None]]


def _check(name: str, value: object, *, minimum: float, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or math.isnan(value)  # NaN compares false with everything: no deadline at all
        or value < minimum
    ):
        raise ValueError(f"RetryPolicy.{name} must be a number >= {minimum}, got {value!r}")


@attrs.frozen(slots=True)
class RetryPolicy:
    """How a failed call is retried.

    Attributes:
        max_attempts: Attempts in all (the first one included) for transient failures.
        deadline: Seconds after the first attempt past which nothing is retried
            (``None``: no deadline). Waits that would end past it are not started.
        base_delay: The first backoff ceiling, in seconds.
        max_delay: The cap of any one backoff wait.
        jitter: Full jitter (random wait up to the ceiling) when true; the ceiling itself
            when false.
        rate_limit_pause: Extra wait after ``QUERY_LIMIT_EXCEEDED``, at most this much
            (random), on top of the limiter's drain of one slot.
        sleep: The coroutine used to wait; inject a fake one in tests, never patch.
        clock: The monotonic clock the deadline is measured with.
    """

    max_attempts: int = 5
    deadline: float | None = 600.0
    base_delay: float = 0.5
    max_delay: float = 30.0
    jitter: bool = True
    rate_limit_pause: float = 0.25
    sleep: Sleep = attrs.field(default=asyncio.sleep, repr=False, eq=False)
    clock: Callable[[], float] = attrs.field(default=time.monotonic, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int):
            raise ValueError(f"RetryPolicy.max_attempts must be an int, got {self.max_attempts!r}")
        if self.max_attempts < 1:
            raise ValueError(f"RetryPolicy.max_attempts must be >= 1, got {self.max_attempts}")
        _check("deadline", self.deadline, minimum=0, allow_none=True)
        _check("base_delay", self.base_delay, minimum=0)
        _check("max_delay", self.max_delay, minimum=0)
        _check("rate_limit_pause", self.rate_limit_pause, minimum=0)

    @classmethod
    def no_wait(cls, *, max_attempts: int = 5, deadline: float | None = 60.0) -> RetryPolicy:
        """A policy that retries like the default one but never sleeps (for tests)."""

        async def _no_sleep(_: float) -> None:
            await asyncio.sleep(0)

        return cls(
            max_attempts=max_attempts,
            deadline=deadline,
            base_delay=0.0,
            max_delay=0.0,
            rate_limit_pause=0.0,
            sleep=_no_sleep,
        )

    @classmethod
    def never(cls) -> RetryPolicy:
        """A policy that never retries (rate-limit answers included)."""
        return cls(max_attempts=1, deadline=0.0)

    def reason(self, error: BaseException, *, idempotent: bool) -> str | None:
        """Return why ``error`` may be retried (a short label), or ``None`` if it is final."""
        if not isinstance(error, OpenLinesError):
            return None
        if isinstance(error, OverloadError):
            return None
        if isinstance(error, OperationTimeLimitError):
            return "operation time limit"
        if isinstance(error, RateLimitError):
            return "query limit exceeded"
        if not idempotent:
            return None
        if isinstance(error, PortalMovedError):
            return None
        if isinstance(error, ServerError):
            return f"server error {error.status}"
        if isinstance(error, DecodeError):
            return f"undecodable answer (status {error.status})"
        if isinstance(error, TransportError):
            return "timeout" if isinstance(error, RequestTimeoutError) else "connection failed"
        return None

    def paces(self, error: BaseException) -> bool:
        """Whether ``error`` is pacing (the bucket or a method's budget), not a failure.

        A paced request is sent again when the limiter allows it, within the same
        attempt: it uses up no attempt of ``max_attempts``, only the ``deadline``.
        """
        return isinstance(error, RateLimitError) and not isinstance(error, OverloadError)

    def backoff(self, failures: int, rng: random.Random | None = None) -> float:
        """The wait after the ``failures``-th counted failure (1-based), with jitter."""
        ceiling = float(min(self.max_delay, self.base_delay * (2.0 ** max(0, failures - 1))))
        if not self.jitter:
            return ceiling
        return (rng or random).uniform(0.0, ceiling)

    def delay(
        self,
        error: BaseException,
        failures: int,
        *,
        now: float | None = None,
        rng: random.Random | None = None,
    ) -> float:
        """How long to wait before retrying after ``error``.

        Args:
            error: The error of the last attempt.
            failures: Attempts that failed so far (pacing is not a failure, see :meth:`paces`).
            now: Unix time now (for ``OPERATION_TIME_LIMIT``'s reset time).
            rng: A random source, for reproducible tests.
        """
        if isinstance(error, OperationTimeLimitError):
            # The limiter's OperatingBudget holds the method until its reset; this only
            # spreads the waiters out a little once it opens.
            return (rng or random).uniform(0.0, self.rate_limit_pause) if self.jitter else 0.0
        if isinstance(error, RateLimitError):
            # The limiter already waits for one slot to drain; add a little jitter so the
            # retries of many tasks do not arrive together.
            return (rng or random).uniform(0.0, self.rate_limit_pause) if self.jitter else 0.0
        return self.backoff(failures, rng)

    def remaining(self, started: float) -> float | None:
        """Seconds left before the deadline of a call started at ``started``."""
        if self.deadline is None:
            return None
        return self.deadline - (self.clock() - started)


def retrying(
    policy: RetryPolicy,
    *,
    idempotent: bool,
    on_retry: Callable[[BaseException, int, str, float], None] = lambda *_: None,
    started: float | None = None,
) -> AsyncRetrying:
    """Build the tenacity loop for one call's counted retries under ``policy``.

    Every callback is a pure function of tenacity's state (the attempt number, the
    outcome, the computed wait) and of the call's start: nothing is counted on the side.

    Args:
        policy: The retry policy.
        idempotent: Whether the method may be sent twice.
        on_retry: Called before each wait with the error, the attempt that failed, the
            reason and the wait.
        started: When the call began on ``policy.clock`` (now, by default): the deadline
            counts from there.
    """
    start = policy.clock() if started is None else started

    def error_of(state: RetryCallState) -> BaseException:
        error = state.outcome.exception() if state.outcome else None
        assert error is not None
        return error

    def retry(state: RetryCallState) -> bool:
        error = state.outcome.exception() if state.outcome else None
        # Pacing is resent within the attempt; one that escaped it is past the deadline.
        return (
            error is not None
            and not policy.paces(error)
            and policy.reason(error, idempotent=idempotent) is not None
        )

    def wait(state: RetryCallState) -> float:
        return policy.delay(error_of(state), state.attempt_number)

    def stop(state: RetryCallState) -> bool:
        if state.attempt_number >= policy.max_attempts:
            return True
        remaining = policy.remaining(start)
        return remaining is not None and state.upcoming_sleep > remaining

    def before_sleep(state: RetryCallState) -> None:
        error = error_of(state)
        reason = policy.reason(error, idempotent=idempotent) or "retry"
        on_retry(error, state.attempt_number, reason, state.upcoming_sleep)

    return AsyncRetrying(
        retry=retry,
        wait=wait,
        stop=stop,
        sleep=policy.sleep,
        before_sleep=before_sleep,
        reraise=True,
    )
