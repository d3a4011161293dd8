"""``OpenLinesClient``: the async client users hold, a thin set of typed conveniences.

A call goes: method object -> wire params (:meth:`Method.to_params`) -> the session
(:mod:`~bitrix_openlines.session`: budget, slot, credentials, transport, decode, retry)
-> ``result`` structured into the method's type. Many calls go through the batch engine
(:mod:`~bitrix_openlines.batch`), fed the session's ``batch`` sender. See the docs page
"How a call flows".
"""

from __future__ import annotations

import re
import typing
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Mapping
from types import TracebackType
from typing import Any, TypeVar

import aiohttp

from bitrix_openlines._convert import structure_result
from bitrix_openlines.auth import Auth
from bitrix_openlines.batch import BatchJob, BatchOutcome, DialogOutcome, ProgressCallback
from bitrix_openlines.hooks import Hooks
from bitrix_openlines.methods.base import Method, get_method
from bitrix_openlines.methods.dialog import DialogGet
from bitrix_openlines.ratelimit import LeakyBucketLimiter, Limiter, OperatingBudget, RateLimit
from bitrix_openlines.retry import RetryPolicy
from bitrix_openlines.session import Answer, Session
from bitrix_openlines.transport import (
    DEFAULT_MAX_ANSWER_BYTES,
    Timeouts,
    Transport,
    check_max_answer_bytes,
)
from bitrix_openlines.types.common import Response
from bitrix_openlines.types.dialog import Dialog, UserCode
from bitrix_openlines.wire import WireParams, to_wire

__all__ = ["DialogQuery", "OpenLinesClient"]

T = TypeVar("T")

DialogQuery = DialogGet | Mapping[str, Any]

_METHOD_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*")
# Names that passed _METHOD_NAME: an application calls a few methods, again and again.
_METHOD_NAMES: set[str] = set()
_MAX_METHOD_NAMES = 256


def _is_method_name(method: object) -> bool:
    """Whether ``method`` is a REST method name (a ``str`` that ``_METHOD_NAME`` matches)."""
    if type(method) is str and method in _METHOD_NAMES:
        return True
    if not isinstance(method, str) or not _METHOD_NAME.fullmatch(method):
        return False
    if type(method) is str and len(_METHOD_NAMES) < _MAX_METHOD_NAMES:
        _METHOD_NAMES.add(method)
    return True


_DEFAULT = RateLimit.standard()
"""The default ``rate_limit``: the standard plans' bucket."""


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
        operating_budget: The per-method time budget tracker; by default the portal's,
            shared by every client of the portal in this process.
        session: An ``aiohttp.ClientSession`` to borrow (never closed by the client).
        timeouts: Connect and total timeouts.
        hooks: Callbacks observing requests, retries and refreshes.
        max_answer_bytes: The largest answer body the client reads (decompressed), 16 MiB
            by default; a larger answer raises ``DecodeError`` once it passes the cap.
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
        max_answer_bytes: int = DEFAULT_MAX_ANSWER_BYTES,
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
        check_max_answer_bytes(max_answer_bytes)
        if limiter is None and rate_limit is not None:
            # One bucket per portal per process, whatever the number of clients.
            limiter = LeakyBucketLimiter.shared(rate_limit)
        self._session = Session(
            auth,
            transport=Transport(session, timeouts=timeouts, max_answer_bytes=max_answer_bytes),
            limiter=limiter,
            budget=operating_budget,
            retry=retry or RetryPolicy(),
            hooks=hooks or Hooks(),
        )

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
        await self._session.close()

    @property
    def auth(self) -> Auth:
        """The credentials in use."""
        return self._session.auth

    @property
    def limiter(self) -> Limiter | None:
        """The rate limiter in use, if any."""
        return self._session.limiter

    @property
    def retry_policy(self) -> RetryPolicy:
        """The retry policy in use."""
        return self._session.retry

    @property
    def operating_budget(self) -> OperatingBudget:
        """The per-method time budget tracker of the portal."""
        return self._session.budget

    @property
    def calls_in_flight(self) -> int:
        """How many tasks are inside a call of this client now (0 when idle)."""
        return self._session.in_flight

    def __repr__(self) -> str:
        return f"OpenLinesClient({self.auth!r})"

    # -- calls -----------------------------------------------------------------------

    async def __call__(self, method: Method[T]) -> T:
        """Call ``method`` and return its structured result (the same as :meth:`call`)."""
        return await self.call(method)

    async def call(self, method: Method[T]) -> T:
        """Call ``method`` and return its structured result."""
        kind = type(method)
        answer = await self._send(method)
        result: T = structure_result(
            answer.result, kind.__returns__, kind.__api_method__, self.auth.redactor
        )
        return result

    async def call_response(self, method: Method[T]) -> Response[T]:
        """Call ``method`` and return its result with the envelope (``time``, ``total``)."""
        kind = type(method)
        answer = await self._send(method)
        return _response(answer, kind.__returns__, kind.__api_method__, self.auth.redactor)

    async def _send(self, method: Method[Any]) -> Answer:
        if not isinstance(method, Method):
            raise TypeError(f"method must be a Method instance, got {type(method).__name__}")
        kind = type(method)
        return await self._session.call(
            kind.__api_method__, method.to_params(), idempotent=kind.__idempotent__
        )

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
            params: Its parameters, encoded as for any call
                (:func:`~bitrix_openlines.wire.to_wire`: ``True`` is ``"1"``, an ``Enum``
                its value, ``None`` and empty lists left out).
            idempotent: Whether it is safe to retry on 5xx and dropped connections;
                ``None`` takes the registered method's declaration, else ``False``.
        """
        if not _is_method_name(method):
            raise ValueError(f"method must be a REST method name like 'profile', got {method!r}")
        if params is not None and type(params) is not dict and not isinstance(params, Mapping):
            raise TypeError(f"params must be a mapping, got {type(params).__name__}")
        if idempotent is None:
            try:
                idempotent = get_method(method).__idempotent__
            except KeyError:
                idempotent = False
        answer = await self._session.call(method, to_wire(params or {}), idempotent=idempotent)
        return answer.result

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
            self._send_batch,
            queries,
            send_single=self._send_single,
            retry=self._session.retry,
            budget=self._session.budget,
            on_rate_limited=self._session.rate_limited,
            to_request=DialogGet.from_query,
            ordered=ordered,
            window=window,
            concurrency=concurrency,
            progress=progress,
            outcome_type=DialogOutcome,
            redact=self._session.auth.redactor,
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
            self._send_batch,
            methods,
            send_single=self._send_single,
            retry=self._session.retry,
            budget=self._session.budget,
            on_rate_limited=self._session.rate_limited,
            to_request=to_request,
            window=window,
            concurrency=concurrency,
            progress=progress,
            redact=self._session.auth.redactor,
        )
        return [outcome async for outcome in job]

    async def _send_batch(self, params: WireParams, *, idempotent: bool, commands: int) -> Answer:
        return await self._session.call("batch", params, idempotent=idempotent, commands=commands)

    async def _send_single(self, method: str, params: WireParams, *, idempotent: bool) -> Answer:
        # For a request of a batch job that must not go inside a batch (batch.py).
        return await self._session.call(method, params, idempotent=idempotent)


def _response(
    answer: Answer, returns: Any, method: str, redact: Callable[[str], str]
) -> Response[Any]:
    """Structure a decoded answer into ``Response[returns]``, or raise DecodeError."""
    envelope = answer.envelope
    total = envelope.get("total")
    nxt = envelope.get("next")
    return Response(
        result=structure_result(envelope["result"], returns, method, redact),
        time=answer.time,
        total=total if isinstance(total, int) else None,
        next=nxt if isinstance(nxt, int) else None,
    )
