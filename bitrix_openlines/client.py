"""``OpenLinesClient``: the async client users hold.

One call goes: method object -> wire params -> wait for the method's time budget and a
slot of the portal's bucket -> auth adds credentials -> transport posts JSON -> the answer
is decoded once (an error body becomes an exception from the table) -> the retry policy
decides whether to go again -> ``result`` is structured into the method's type.
"""

from __future__ import annotations

import logging
import re
import time
import typing
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping
from types import TracebackType
from typing import Any, TypeVar

import aiohttp
import attrs

from bitrix_openlines._convert import describe_error, structure, structure_time
from bitrix_openlines._decode import decode_envelope
from bitrix_openlines.auth import Auth, PreparedCall
from bitrix_openlines.batch import BatchJob, BatchOutcome, DialogOutcome, ProgressCallback
from bitrix_openlines.errors import (
    DecodeError,
    OpenLinesError,
    OperationTimeLimitError,
    OverloadError,
    RateLimitError,
    TokenExpiredError,
)
from bitrix_openlines.hooks import Hooks, RefreshEvent, RequestEvent, RetryEvent
from bitrix_openlines.methods.base import Method, registered_methods
from bitrix_openlines.methods.dialog import DialogGet
from bitrix_openlines.ratelimit import LeakyBucketLimiter, Limiter, OperatingBudget, RateLimit
from bitrix_openlines.retry import RetryPolicy, retrying
from bitrix_openlines.transport import Timeouts, Transport
from bitrix_openlines.types.common import Response, TimeInfo
from bitrix_openlines.types.dialog import Dialog, UserCode

__all__ = ["OpenLinesClient"]

logger = logging.getLogger("bitrix_openlines")

T = TypeVar("T")

DialogQuery = DialogGet | Mapping[str, Any]

_METHOD_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*")
_DEFAULT = RateLimit.standard()


class OpenLinesClient:
    """The async Bitrix24 Open Lines client.

    Use it as an async context manager (or call :meth:`close`)::

        async with OpenLinesClient(WebhookAuth(url)) as client:
            dialog = await client.get_dialog(chat_id=13)

    Args:
        auth: :class:`~bitrix_openlines.WebhookAuth` or :class:`~bitrix_openlines.OAuthAuth`.
        rate_limit: The portal's bucket to mirror (``RateLimit.standard()`` by default,
            ``RateLimit.enterprise()`` on Enterprise); ``None`` disables client-side
            pacing (the retry policy still handles 503s). Every client of this process
            with the same ``rate_limit`` shares one limiter (one bucket per portal).
        limiter: A limiter to use instead (for example one shared through Redis);
            ``rate_limit`` is then ignored.
        retry: The retry policy.
        operating_budget: The per-method time budget tracker (one is created by default).
        session: An ``aiohttp.ClientSession`` to borrow (never closed by the client).
        timeouts: Connect and total timeouts.
        hooks: Callbacks observing requests, retries and refreshes.
    """

    def __init__(
        self,
        auth: Auth,
        *,
        rate_limit: RateLimit | None = _DEFAULT,
        limiter: Limiter | None = None,
        retry: RetryPolicy | None = None,
        operating_budget: OperatingBudget | None = None,
        session: aiohttp.ClientSession | None = None,
        timeouts: Timeouts | None = None,
        hooks: Hooks | None = None,
    ) -> None:
        if not isinstance(auth, Auth):
            raise TypeError(f"auth must be WebhookAuth or OAuthAuth, got {type(auth).__name__}")
        if rate_limit is not None and not isinstance(rate_limit, RateLimit):
            raise TypeError(
                f"rate_limit must be a RateLimit or None, got {type(rate_limit).__name__}"
            )
        if limiter is not None and not isinstance(limiter, Limiter):
            raise TypeError(f"limiter must be a Limiter, got {type(limiter).__name__}")
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise TypeError(f"retry must be a RetryPolicy, got {type(retry).__name__}")
        if timeouts is not None and not isinstance(timeouts, Timeouts):
            raise TypeError(f"timeouts must be Timeouts, got {type(timeouts).__name__}")
        if operating_budget is not None and not isinstance(operating_budget, OperatingBudget):
            raise TypeError(
                "operating_budget must be an OperatingBudget, "
                f"got {type(operating_budget).__name__}"
            )
        if hooks is not None and not isinstance(hooks, Hooks):
            raise TypeError(f"hooks must be Hooks, got {type(hooks).__name__}")
        self._auth = auth
        if limiter is None and rate_limit is not None:
            # One bucket per portal per process, whatever the number of clients.
            limiter = LeakyBucketLimiter.shared(rate_limit)
        self._limiter = limiter
        self._retry = retry or RetryPolicy()
        self._budget = operating_budget or OperatingBudget()
        self._hooks = hooks or Hooks()
        self._transport = Transport(session, timeouts=timeouts)
        self._transport.set_secrets(auth.secrets())
        self._last_token: str | None = None
        auth.add_refresh_listener(self._on_refreshed)

    # -- lifecycle -------------------------------------------------------------------

    async def __aenter__(self) -> OpenLinesClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the HTTP session if the client created it (a borrowed one stays open)."""
        self._auth.remove_refresh_listener(self._on_refreshed)
        await self._transport.close()

    @property
    def auth(self) -> Auth:
        """The credentials in use."""
        return self._auth

    @property
    def limiter(self) -> Limiter | None:
        """The rate limiter in use, if any."""
        return self._limiter

    @property
    def retry_policy(self) -> RetryPolicy:
        """The retry policy in use."""
        return self._retry

    @property
    def operating_budget(self) -> OperatingBudget:
        """The per-method time budget tracker."""
        return self._budget

    def __repr__(self) -> str:
        return f"OpenLinesClient({self._auth!r})"

    # -- calls -----------------------------------------------------------------------

    async def __call__(self, method: Method[T]) -> T:
        """Call ``method`` and return its structured result."""
        return (await self.call(method)).result

    async def call(self, method: Method[T]) -> Response[T]:
        """Call ``method`` and return its result with the envelope (``time``, ``total``)."""
        if not isinstance(method, Method):
            raise TypeError(f"method must be a Method instance, got {type(method).__name__}")
        name = type(method).__api_method__
        answer = await self._execute(
            name, method.to_params(), idempotent=type(method).__idempotent__
        )
        return _response(answer, type(method).__returns__, name)

    async def call_raw(
        self,
        method: str,
        params: Mapping[str, Any] | None = None,
        *,
        idempotent: bool | None = None,
    ) -> Any:
        """Call any REST method by name and return its decoded ``result`` as is.

        Args:
            method: The method's name (``"imopenlines.session.history.get"``).
            params: Its parameters, sent as a JSON body.
            idempotent: Whether it is safe to retry on 5xx and dropped connections;
                ``None`` takes the registered method's declaration, else ``False``.
        """
        if not isinstance(method, str) or not _METHOD_NAME.fullmatch(method):
            raise ValueError(f"method must be a REST method name like 'profile', got {method!r}")
        if params is not None and not isinstance(params, Mapping):
            raise TypeError(f"params must be a mapping, got {type(params).__name__}")
        if idempotent is None:
            registered = registered_methods().get(method.lower())
            idempotent = bool(registered and registered.__idempotent__)
        answer = await self._execute(method, dict(params or {}), idempotent=idempotent)
        return answer.envelope["result"]

    async def get_dialog(
        self,
        *,
        chat_id: int | None = None,
        dialog_id: str | None = None,
        session_id: int | None = None,
        user_code: str | UserCode | None = None,
    ) -> Dialog:
        """Get an open line's operator chat by exactly one of its identifiers.

        See :class:`~bitrix_openlines.DialogGet` for the arguments; bad input raises
        ``TypeError``/``ValueError`` before any request.
        """
        return await self(
            DialogGet(
                chat_id=chat_id,
                dialog_id=dialog_id,
                session_id=session_id,
                user_code=user_code,
            )
        )

    # -- many calls ------------------------------------------------------------------

    async def get_dialogs(
        self,
        queries: Iterable[DialogQuery] | AsyncIterable[DialogQuery],
        *,
        concurrency: int = 4,
        window: int = 5000,
        progress: ProgressCallback | None = None,
    ) -> list[DialogOutcome]:
        """Resolve many dialogs through ``batch`` calls; one outcome per query, in order.

        A query is a :class:`DialogGet` or a mapping with exactly one of ``chat_id``,
        ``dialog_id``, ``session_id``, ``user_code``. A malformed query, a forbidden or
        unknown dialog fails alone (its outcome has ``.error``); nothing raises out of the
        middle of the job. For huge inputs use :meth:`iter_dialogs`, whose memory does not
        grow with the input.

        Args:
            queries: The queries (any iterable or async iterable).
            concurrency: The most ``batch`` requests in flight at once.
            window: The most queries held in memory at once.
            progress: Called with ``(done, failed, total)`` after each outcome.
        """
        return [
            outcome
            async for outcome in self.iter_dialogs(
                queries, concurrency=concurrency, window=window, progress=progress
            )
        ]

    def iter_dialogs(
        self,
        queries: Iterable[DialogQuery] | AsyncIterable[DialogQuery],
        *,
        ordered: bool = True,
        concurrency: int = 4,
        window: int = 5000,
        progress: ProgressCallback | None = None,
    ) -> AsyncIterator[DialogOutcome]:
        """Stream one outcome per query, in input order or (``ordered=False``) as completed.

        At most ``window`` queries are held at once, so memory stays flat for any input
        size. Leaving the loop early (``break``) or cancelling the task cancels the
        batches in flight and leaves no task behind. See :meth:`get_dialogs`.
        """
        job = BatchJob(
            self,
            queries,
            to_request=DialogGet.from_query,
            ordered=ordered,
            window=window,
            concurrency=concurrency,
            progress=progress,
            outcome_type=DialogOutcome,
        )
        return typing.cast(AsyncIterator[DialogOutcome], aiter(job))

    async def batch(
        self,
        methods: Iterable[Method[Any]] | AsyncIterable[Method[Any]],
        *,
        concurrency: int = 4,
        window: int = 5000,
        progress: ProgressCallback | None = None,
    ) -> list[BatchOutcome[Any]]:
        """Run any method objects through ``batch`` calls of up to 50; outcomes in order.

        Identical calls are sent once and share their outcome; transient per-command
        failures are retried; every method gets exactly one outcome.
        """

        def to_request(item: Any) -> Method[Any]:
            if not isinstance(item, Method):
                raise TypeError(f"expected a Method instance, got {type(item).__name__}")
            return item

        job = BatchJob(
            self,
            methods,
            to_request=to_request,
            window=window,
            concurrency=concurrency,
            progress=progress,
        )
        return [outcome async for outcome in job]

    # -- the call path ---------------------------------------------------------------

    async def _execute(
        self, method: str, params: dict[str, Any], *, idempotent: bool, commands: int = 1
    ) -> _Answer:
        """Send one request under the retry policy and return the decoded answer."""
        started = self._retry.clock()
        # The first attempt goes out without the retry machinery (most calls need none);
        # a retryable failure hands over to the tenacity loop, which starts from it.
        try:
            return await self._attempt(method, params, 1, commands, started)
        except OpenLinesError as error:
            if self._retry.reason(error, idempotent=idempotent) is None:
                raise
            first_error: OpenLinesError | None = error

        def pause_for(error: BaseException) -> float:
            if isinstance(error, OperationTimeLimitError):
                return self._budget.pause_remaining(method)
            return 0.0

        def on_retry(error: BaseException, attempt: int, reason: str, delay: float) -> None:
            code = getattr(error, "code", None) or type(error).__name__
            logger.warning(
                "retrying %s after attempt %d: %s (%s); waiting %.2fs",
                method,
                attempt,
                reason,
                code,
                delay,
            )
            self._hooks.emit(
                self._hooks.on_retry,
                RetryEvent(
                    method=method, attempt=attempt, reason=reason, delay=delay, error_code=code
                ),
            )

        async for attempt in retrying(
            self._retry,
            idempotent=idempotent,
            pause_for=pause_for,
            on_retry=on_retry,
            started=started,
        ):
            with attempt:
                if first_error is not None:
                    # Attempt 1 already failed: let tenacity judge it (wait, log, stop).
                    failed, first_error = first_error, None
                    raise failed
                return await self._attempt(
                    method, params, attempt.retry_state.attempt_number, commands, started
                )
        raise AssertionError("unreachable: tenacity re-raises the last error")

    async def _attempt(
        self, method: str, params: dict[str, Any], attempt: int, commands: int, started: float
    ) -> _Answer:
        self._check_pause(method, self._retry.remaining(started))
        await self._budget.wait(method)
        prepared = await self._prepare(method, params)
        refreshed = False
        while True:
            try:
                return await self._send(method, prepared, attempt, commands)
            except TokenExpiredError:
                # A refresh is not a retry: one refresh and one replay per attempt.
                if refreshed or not await self._refresh(prepared):
                    raise
                refreshed = True
                prepared = await self._prepare(method, params)

    def _check_pause(self, method: str, remaining: float | None) -> None:
        """Raise rather than wait for a paused method past the call's deadline."""
        pause = self._budget.pause_remaining(method)
        if pause > 0 and remaining is not None and pause > remaining:
            raise OperationTimeLimitError(
                f"{method} is paused {pause:.0f}s by its operating-time budget, "
                f"past the call's deadline ({max(0.0, remaining):.0f}s left)",
                code="OPERATION_TIME_LIMIT",
                method=method,
                reset_at=self._budget.paused_until(method),
            )

    async def _prepare(self, method: str, params: dict[str, Any]) -> PreparedCall:
        prepared = await self._auth.prepare(method, params)
        if prepared.token is not None and prepared.token != self._last_token:
            # A pair loaded lazily (from a TokenStore) or adopted from elsewhere: hide it
            # from error texts too, before it can appear in one.
            self._last_token = prepared.token
            self._transport.set_secrets(self._auth.secrets())
        return prepared

    async def _refresh(self, prepared: PreparedCall) -> bool:
        return await self._auth.refresh(prepared, self._transport)

    def _on_refreshed(self, ok: bool, duration: float, error: OpenLinesError | None) -> None:
        # Called once per refresh by the auth's single flight, however many tasks wait.
        if ok:
            # The auth's own list is bounded: replace, never grow, what the transport hides.
            self._transport.set_secrets(self._auth.secrets())
        self._hooks.emit(
            self._hooks.on_refresh,
            RefreshEvent(
                portal=self._auth.portal,
                ok=ok,
                duration=duration,
                error_code=None if error is None else error.code or type(error).__name__,
            ),
        )

    async def _send(
        self, method: str, prepared: PreparedCall, attempt: int, commands: int
    ) -> _Answer:
        portal = self._auth.portal
        if self._limiter is not None:
            await self._limiter.acquire(portal, 1)
        started = time.perf_counter()
        status: int | None = None
        error_code: str | None = None
        try:
            raw = await self._transport.post_json(prepared.url, prepared.payload, method=method)
            status = raw.status
            envelope = decode_envelope(raw, method)
        except OperationTimeLimitError as error:
            error_code = error.code
            self._budget.pause(method, error.reset_at)
            raise
        except RateLimitError as error:
            error_code = error.code
            if self._limiter is not None and not isinstance(error, OverloadError):
                await self._limiter.penalize(portal)
            raise
        except OpenLinesError as error:
            error_code = error.code or type(error).__name__
            raise
        finally:
            duration = time.perf_counter() - started
            logger.debug(
                "%s status=%s attempt=%d duration=%.3fs%s",
                method,
                status,
                attempt,
                duration,
                f" error={error_code}" if error_code else "",
            )
            self._hooks.emit(
                self._hooks.on_request,
                RequestEvent(
                    method=method,
                    portal=portal,
                    attempt=attempt,
                    status=status,
                    error_code=error_code,
                    duration=duration,
                    commands=commands,
                ),
            )
        time_info = structure_time(envelope.get("time"))
        self._budget.observe(method, time_info)
        return _Answer(envelope=envelope, time=time_info)


@attrs.frozen(slots=True)
class _Answer:
    """A decoded successful answer: the envelope, and its ``time`` block structured once."""

    envelope: dict[str, Any]
    time: TimeInfo | None


def _response(answer: _Answer, returns: Any, method: str) -> Response[Any]:
    """Structure a decoded answer into ``Response[returns]``, or raise DecodeError."""
    envelope = answer.envelope
    try:
        result = structure(envelope["result"], returns)
    except Exception as exc:  # cattrs raises ExceptionGroups, TypeError, ValueError...
        raise DecodeError(
            f"the result does not fit {getattr(returns, '__name__', returns)}: "
            f"{describe_error(exc)}",
            status=200,
            method=method,
        ) from None
    total = envelope.get("total")
    nxt = envelope.get("next")
    return Response(
        result=result,
        time=answer.time,
        total=total if isinstance(total, int) else None,
        next=nxt if isinstance(nxt, int) else None,
    )
