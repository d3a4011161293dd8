"""The session layer: the order of one call, from the budget to the retry decision.

One call of :meth:`Session.call` goes, in this order:

1. **budget**: wait while the method is paused by the portal's operating-time budget
   (or fail at once if the pause outlasts the call's deadline);
2. **slot**: take one slot of the portal's leaky bucket from the limiter;
3. **credentials**: ask the auth for them *after* the slot wait, so a call that waited
   long never goes out with a token that expired meanwhile;
4. **send**: encode the parameters (:mod:`~bitrix_openlines.wire`) and post them
   through the transport;
5. **decode**: the envelope, or the exception the error table gives, with every
   network text passed through the auth's redactor;
6. **retry decision**: ``expired_token`` refreshes the credentials (through the auth,
   once for every waiting task) and replays; ``QUERY_LIMIT_EXCEEDED`` and
   ``OPERATION_TIME_LIMIT`` are pacing: the limiter or the budget holds the resend,
   within the same attempt; other transient failures are attempts, retried by the
   :class:`~bitrix_openlines.RetryPolicy` (through tenacity).

The rate limiter and the operating budget are the portal's, shared by every client of
the portal in the process. The session knows the layers below it only.

**Closing.** :meth:`Session.close` ends every call in flight with
:class:`~bitrix_openlines.errors.ClientClosedError` (a wait for a slot gives the slot
back), waits until they have left, then closes the transport; every later call raises
the same error at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from asyncio import current_task
from typing import Any

import attrs

from bitrix_openlines.auth import Auth, Credentials
from bitrix_openlines.errors import (
    ClientClosedError,
    OpenLinesError,
    OperationTimeLimitError,
    OverloadError,
    RateLimitError,
    TokenExpiredError,
)
from bitrix_openlines.hooks import Hooks, RefreshEvent, RequestEvent, RetryEvent
from bitrix_openlines.ratelimit import Limiter, OperatingBudget
from bitrix_openlines.retry import RetryPolicy, retrying
from bitrix_openlines.transport import Transport
from bitrix_openlines.types.common import TimeInfo
from bitrix_openlines.wire import WireParams, decode_envelope, json_body

__all__ = ["Answer", "Session"]

logger = logging.getLogger("bitrix_openlines")

# Without a limiter, a rate-limit answer inside a batch waits one slot of the standard
# bucket (2 requests/s) before the commands go again.
_DRAIN_WITHOUT_LIMITER = 0.5

# Token refreshes within one attempt (each for another expired token).
_MAX_REFRESHES = 3


@attrs.frozen(slots=True)
class Answer:
    """A decoded successful answer: the envelope, and its ``time`` block structured once."""

    envelope: dict[str, Any]
    time: TimeInfo | None

    @property
    def result(self) -> Any:
        """The envelope's ``result``."""
        return self.envelope["result"]


@attrs.define(slots=True)
class _Call:
    """One call in progress: what to send, and how many retries it has had."""

    method: str
    params: WireParams
    idempotent: bool
    commands: int
    started: float
    retries: int = 0


class Session:
    """Send calls to one portal in the order the module docs give.

    Args:
        auth: The credentials.
        transport: The HTTP edge.
        limiter: The portal's bucket, or ``None`` for no client-side pacing.
        budget: The operating-time budget to use, or ``None`` for the portal's shared one.
        retry: The retry policy.
        hooks: Callbacks observing requests, retries and refreshes.
    """

    def __init__(
        self,
        auth: Auth,
        *,
        transport: Transport,
        limiter: Limiter | None,
        budget: OperatingBudget | None,
        retry: RetryPolicy,
        hooks: Hooks,
    ) -> None:
        self.auth = auth
        self.transport = transport
        self.limiter = limiter
        self.retry = retry
        self.hooks = hooks
        self._observes_requests = hooks.observes_requests
        self._budget = budget
        self._shared_budget: tuple[str, OperatingBudget] | None = None
        self._reported_flight = 0
        self._closed = False
        # The tasks inside call(), and those close() cancelled (their cancellation
        # becomes ClientClosedError).
        self._calls: dict[asyncio.Task[Any], int] = {}
        self._closing: set[asyncio.Task[Any]] = set()
        self._drained: asyncio.Future[None] | None = None

    @property
    def budget(self) -> OperatingBudget:
        """The operating-time budget of the portal (shared per portal unless injected)."""
        if self._budget is not None:
            return self._budget
        portal = self.auth.portal
        shared = self._shared_budget
        if shared is None or shared[0] != portal:
            # The portal of an OAuthAuth with a store is known after its first load.
            shared = self._shared_budget = (portal, OperatingBudget.shared(portal))
        return shared[1]

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    @property
    def in_flight(self) -> int:
        """How many tasks are inside :meth:`call` now."""
        return len(self._calls)

    async def close(self, *, grace: float = 10.0) -> None:
        """End the calls in flight with ``ClientClosedError``, then close the transport.

        A borrowed ``aiohttp.ClientSession`` stays open. Idempotent.

        Args:
            grace: The longest wait for the calls in flight to leave.
        """
        self._closed = True
        current = asyncio.current_task()
        others = [task for task in self._calls if task is not current and not task.done()]
        if others:
            for task in others:
                self._closing.add(task)
                task.cancel()
            self._drained = asyncio.get_running_loop().create_future()
            try:
                await asyncio.wait_for(asyncio.shield(self._drained), grace)
            except TimeoutError:
                logger.warning("closing: %d calls did not end within %.0fs", len(others), grace)
            finally:
                self._drained = None
        await self.transport.close()

    def _closed_error(self, method: str) -> ClientClosedError:
        return ClientClosedError("the client is closed; create a new one", method=method)

    def _enter(self, method: str) -> asyncio.Task[Any] | None:
        if self._closed:
            raise self._closed_error(method)
        task = current_task()
        if task is not None:
            calls = self._calls
            calls[task] = calls.get(task, 0) + 1
        return task

    def _leave(self, task: asyncio.Task[Any] | None) -> None:
        if task is None:
            return
        calls = self._calls
        depth = calls.pop(task) - 1
        if depth:
            calls[task] = depth  # a call made from inside another, on the same task
        elif self._closing or self._drained is not None:
            self._left_while_closing(task)

    def _left_while_closing(self, task: asyncio.Task[Any]) -> None:
        # close() waits: the last of the tasks it cancelled to leave ends the wait.
        self._closing.discard(task)
        drained = self._drained
        if (
            drained is not None
            and not drained.done()
            and not any(t in self._closing for t in self._calls)
        ):
            drained.set_result(None)

    async def call(
        self, method: str, params: WireParams, *, idempotent: bool, commands: int = 1
    ) -> Answer:
        """Send one call and return its decoded answer; raise its final error.

        Args:
            method: The REST method's name.
            params: The parameters, already in wire form (:func:`~bitrix_openlines.wire.to_wire`).
            idempotent: Whether a 5xx or a dropped connection may be retried.
            commands: How many commands the request carries (a batch's size, for hooks).
        """
        task = self._enter(method)
        call = _Call(method, params, idempotent, commands, self.retry.clock())
        try:
            # The first attempt goes out without the retry machinery (most calls need
            # none); a retryable failure hands over to the tenacity loop.
            try:
                return await self._attempt(call)
            except OpenLinesError as error:
                # Pacing answers that escaped the attempt ran out of deadline: final.
                if (
                    self.retry.paces(error)
                    or self.retry.reason(error, idempotent=idempotent) is None
                ):
                    raise
                first_error = error
            return await self._retry(call, first_error)
        except asyncio.CancelledError:
            if task is not None and task in self._closing:
                self._closing.discard(task)
                if task.uncancel() == 0:
                    # Cancelled by close() alone: the documented error, not a bare
                    # cancellation (a caller's own cancel stays a cancellation).
                    raise self._closed_error(method) from None
            raise
        finally:
            self._leave(task)

    async def _retry(self, call: _Call, first_error: OpenLinesError) -> Answer:
        """The attempts after a retryable first failure, run by tenacity."""
        async for attempt in retrying(
            self.retry,
            idempotent=call.idempotent,
            on_retry=lambda error, number, reason, delay: self._retrying(
                call, error, reason, delay
            ),
            started=call.started,
        ):
            with attempt:
                if attempt.retry_state.attempt_number == 1:
                    # Attempt 1 already failed: let tenacity judge it (wait, log, stop).
                    raise first_error
                return await self._attempt(call)
        raise AssertionError("unreachable: tenacity re-raises the last error")

    async def _attempt(self, call: _Call) -> Answer:
        """One attempt: pacing answers and token refreshes are handled inside it."""
        # The credentials whose token this attempt refreshed, and the ones its last
        # refresh gave (kept as Credentials: no variable holds a token as text).
        refreshed: tuple[Credentials, ...] = ()
        given: Credentials | None = None
        while True:
            if self._closed:
                raise self._closed_error(call.method)
            budget = self.budget
            if budget.pause_remaining(call.method) > 0:
                paused = budget.past_deadline(call.method, self.retry.remaining(call.started))
                if paused is not None:
                    raise paused
                await budget.wait(call.method)
            if self.limiter is not None:
                # An OAuth pair still in its store names its portal only once loaded:
                # load it first, or the first calls count in a bucket of their own.
                await self.auth.credentials()
                await self.limiter.acquire(self.auth.portal, 1)
            credentials = await self.auth.credentials()
            try:
                return await self._send(call, credentials, budget)
            except TokenExpiredError:
                # A refresh is not a retry. A replay waits for a slot and goes out with
                # the token current then: one another task refreshed meanwhile may have
                # expired in turn, and is refreshed too. Final: the token this attempt's
                # own refresh gave (a fresh token refused), a token refused twice, or a
                # fourth refresh.
                if (
                    any(credentials.same_token(stale) for stale in refreshed)
                    or credentials.same_token(given)
                    or len(refreshed) >= _MAX_REFRESHES
                    or not await self._refresh(credentials)
                ):
                    raise
                refreshed = (*refreshed, credentials)
                given = await self.auth.credentials()
            except RateLimitError as error:
                if not self.retry.paces(error) or not self._may_pace(call, error, budget):
                    raise
                # The limiter (a 503) or the budget (a 429) holds the resend; the jitter
                # spreads out the resends of many tasks.
                delay = self.retry.delay(error, 0)
                self._retrying(call, error, self.retry.reason(error, idempotent=True) or "", delay)
                await self.retry.sleep(delay)

    def _may_pace(self, call: _Call, error: RateLimitError, budget: OperatingBudget) -> bool:
        """Whether a paced resend still fits the call's deadline."""
        remaining = self.retry.remaining(call.started)
        if remaining is None:
            return True
        if isinstance(error, OperationTimeLimitError):
            return budget.pause_remaining(call.method) < remaining
        return remaining > 0

    async def _send(
        self, call: _Call, credentials: Credentials, budget: OperatingBudget
    ) -> Answer:
        method = call.method
        # A request event or a debug line is built only for those who read it; the
        # clock is read only then.
        reported = self._observes_requests or logger.isEnabledFor(logging.DEBUG)
        started = time.perf_counter() if reported else 0.0
        status: int | None = None
        error_code: str | None = None
        try:
            # The URL (a webhook's code) and the body's ``auth`` (an OAuth token) stay in
            # masking wrappers down to aiohttp's call: no frame here holds them as text.
            raw = await self.transport.post(
                credentials.endpoint(method),
                credentials.body(json_body(call.params)),
                method=method,
                redact=self.auth.redactor,
            )
            status = raw.status
            envelope = decode_envelope(raw, method, self.auth.redactor)
        except OperationTimeLimitError as error:
            error_code = error.code
            budget.pause(method, error.reset_at)
            raise
        except RateLimitError as error:
            error_code = error.code
            if self.limiter is not None and not isinstance(error, OverloadError):
                await self.limiter.penalize(self.auth.portal)
            raise
        except OpenLinesError as error:
            error_code = error.code or type(error).__name__
            raise
        finally:
            if reported:
                self._report(call, status, error_code, time.perf_counter() - started)
        time_info = TimeInfo.from_wire(envelope.get("time"))
        budget.observe(method, time_info)
        return Answer(envelope, time_info)

    def _report(
        self,
        call: _Call,
        status: int | None,
        error_code: str | None,
        duration: float,
    ) -> None:
        logger.debug(
            "%s status=%s attempt=%d duration=%.3fs%s",
            call.method,
            status,
            call.retries + 1,
            duration,
            f" error={error_code}" if error_code else "",
        )
        if self._observes_requests:
            self.hooks.emit(
                self.hooks.on_request,
                RequestEvent(
                    method=call.method,
                    portal=self.auth.portal,
                    attempt=call.retries + 1,
                    status=status,
                    error_code=error_code,
                    duration=duration,
                    commands=call.commands,
                ),
            )

    async def _refresh(self, stale: Credentials) -> bool:
        """Refresh through the auth; ``False`` when these credentials cannot be refreshed."""
        result = await self.auth.refresh(stale)
        if result is None:
            return False
        if result.asked_server and result.flight != self._reported_flight:
            # One event per refresh for this client, however many of its tasks waited.
            self._reported_flight = result.flight
            error = result.error
            self.hooks.emit(
                self.hooks.on_refresh,
                RefreshEvent(
                    portal=self.auth.portal,
                    ok=error is None,
                    duration=result.duration,
                    error_code=None if error is None else error.code or type(error).__name__,
                ),
            )
        if result.error is not None:
            raise result.error
        return True

    async def rate_limited(self) -> None:
        """Slow down after a ``QUERY_LIMIT_EXCEEDED`` answer to one command of a batch.

        The whole request went through, so the session's own pacing did not see it: the
        limiter learns that the portal's bucket is full (its next slot is one drain
        away); without a limiter, wait one drain of the standard bucket (0.5 s) instead.
        """
        if self.limiter is not None:
            await self.limiter.penalize(self.auth.portal)
            return
        await self.retry.sleep(_DRAIN_WITHOUT_LIMITER)

    def _retrying(self, call: _Call, error: BaseException, reason: str, delay: float) -> None:
        call.retries += 1
        code = getattr(error, "code", None) or type(error).__name__
        logger.warning(
            "retrying %s after attempt %d: %s (%s); waiting %.2fs",
            call.method,
            call.retries,
            reason,
            code,
            delay,
        )
        self.hooks.emit(
            self.hooks.on_retry,
            RetryEvent(
                method=call.method,
                attempt=call.retries,
                reason=reason,
                delay=delay,
                error_code=code,
            ),
        )
