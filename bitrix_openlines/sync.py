"""``SyncOpenLinesClient``: the async client for code with no event loop of its own.

It owns one event loop, running in a daemon thread for the client's lifetime, and one
:class:`~bitrix_openlines.OpenLinesClient` (so one connection pool) living in that loop.
Every method hands its coroutine to that loop and blocks until it is done. Because the
loop is not the caller's, it works the same from plain scripts, from threads, and from
code that already runs an event loop (a Jupyter cell, an async web handler calling
synchronous library code): no ``RuntimeError``, no coroutine returned, no deadlock.

Calling it from inside its own loop (a progress callback or a hook calling back into the
same sync client) would deadlock, so that raises ``RuntimeError`` instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Coroutine, Iterable, Iterator
from types import TracebackType
from typing import Any, TypeVar

from bitrix_openlines.auth import Auth
from bitrix_openlines.batch import BatchOutcome, DialogOutcome, ProgressCallback
from bitrix_openlines.client import _DEFAULT, DialogQuery, OpenLinesClient
from bitrix_openlines.errors import ClientClosedError
from bitrix_openlines.hooks import Hooks
from bitrix_openlines.methods.base import Method
from bitrix_openlines.ratelimit import Limiter, OperatingBudget, RateLimit
from bitrix_openlines.retry import RetryPolicy
from bitrix_openlines.transport import DEFAULT_MAX_ANSWER_BYTES, Timeouts
from bitrix_openlines.types.common import Response
from bitrix_openlines.types.dialog import Dialog, UserCode

__all__ = ["SyncOpenLinesClient"]

T = TypeVar("T")

# Outcomes are handed from the loop to the caller's thread in chunks of this many.
_CHUNK = 64
# How long an interrupted call may take to unwind in the loop.
_CANCEL_WAIT = 10.0


class SyncOpenLinesClient:
    """A blocking client with the same methods as :class:`OpenLinesClient`.

    Use it as a context manager (or call :meth:`close`)::

        with SyncOpenLinesClient(WebhookAuth(url)) as client:
            dialog = client.get_dialog(chat_id=13)

    The arguments are those of :class:`OpenLinesClient`, except ``session``: an
    ``aiohttp.ClientSession`` belongs to one loop, and this client owns its own. Callbacks
    (hooks, ``on_refresh``, ``progress``) run in the client's thread.
    """

    def __init__(
        self,
        auth: Auth,
        *,
        rate_limit: RateLimit | None = _DEFAULT,
        limiter: Limiter | None = None,
        retry: RetryPolicy | None = None,
        operating_budget: OperatingBudget | None = None,
        timeouts: Timeouts | None = None,
        hooks: Hooks | None = None,
        max_answer_bytes: int = DEFAULT_MAX_ANSWER_BYTES,
    ) -> None:
        self._client = OpenLinesClient(
            auth,
            rate_limit=rate_limit,
            limiter=limiter,
            retry=retry,
            operating_budget=operating_budget,
            timeouts=timeouts,
            hooks=hooks,
            max_answer_bytes=max_answer_bytes,
        )
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="bitrix-openlines-sync", daemon=True
        )
        self._thread.start()
        self._closed = False
        self._lock = threading.Lock()

    # -- lifecycle -------------------------------------------------------------------

    def __enter__(self) -> SyncOpenLinesClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the client and stop its thread (idempotent; from any thread).

        Calls waiting in other threads end with
        :class:`~bitrix_openlines.errors.ClientClosedError`; iterators of
        :meth:`iter_dialogs` still open are closed (their batches in flight cancelled).
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
        try:
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result()
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()

    async def _shutdown(self) -> None:
        # The calls in flight end with ClientClosedError, then the async generators
        # still suspended in this loop (open iter_dialogs streams) are closed, so that no
        # task is left pending when the loop stops.
        await self._client.close()
        await self._loop.shutdown_asyncgens()
        current = asyncio.current_task()
        rest = [t for t in asyncio.all_tasks(self._loop) if t is not current]
        for task in rest:
            task.cancel()
        if rest:
            await asyncio.gather(*rest, return_exceptions=True)

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    @property
    def client(self) -> OpenLinesClient:
        """The async client inside (for its ``limiter``, ``operating_budget``...)."""
        return self._client

    def __repr__(self) -> str:
        return f"SyncOpenLinesClient({self._client.auth!r})"

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError(
                "SyncOpenLinesClient was called from its own event loop (a callback of "
                "this client?); that would deadlock: use the async client there"
            )
        finished = threading.Event()
        running: list[asyncio.Task[Any]] = []

        async def runner() -> T:
            task = asyncio.current_task()
            if task is not None:
                running.append(task)
            try:
                return await coro
            finally:
                finished.set()

        with self._lock:
            # Under the lock close() takes: a call is either in the loop before close()
            # runs there (and close() ends it), or sees the client closed.
            if self._closed:
                coro.close()
                raise ClientClosedError("the client is closed; create a new one")
            future = asyncio.run_coroutine_threadsafe(runner(), self._loop)
        try:
            return future.result()
        except BaseException:
            if future.done():
                # The call itself ended with this error (ClientClosedError after a close
                # from another thread, say): nothing is left running in the loop, which
                # may be closed by now.
                raise
            # Interrupted (Ctrl-C, SIGTERM) while the loop works for us: cancel that work
            # in the loop and wait until it has really stopped (an async generator it was
            # driving must be idle before anyone closes it).
            future.cancel()
            for task in running:
                with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                    self._loop.call_soon_threadsafe(task.cancel)
            if running:
                finished.wait(_CANCEL_WAIT)
            raise

    # -- calls -----------------------------------------------------------------------

    def __call__(self, method: Method[T]) -> T:
        """Call ``method`` and return its structured result (blocking; as :meth:`call`)."""
        return self.call(method)

    def call(self, method: Method[T]) -> T:
        """Call ``method`` and return its structured result (blocking)."""
        return self._run(self._client.call(method))

    def call_response(self, method: Method[T]) -> Response[T]:
        """Call ``method`` and return its result with the envelope (blocking)."""
        return self._run(self._client.call_response(method))

    def call_raw(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        *,
        idempotent: bool | None = None,
    ) -> Any:
        """Call any REST method by name and return its decoded ``result`` (blocking)."""
        return self._run(self._client.call_raw(method, params, idempotent=idempotent))

    def get_dialog(
        self,
        *,
        chat_id: int | None = None,
        dialog_id: str | None = None,
        session_id: int | None = None,
        user_code: str | UserCode | None = None,
    ) -> Dialog:
        """Get an open line's operator chat by exactly one of its identifiers (blocking)."""
        return self._run(
            self._client.get_dialog(
                chat_id=chat_id, dialog_id=dialog_id, session_id=session_id, user_code=user_code
            )
        )

    def get_dialogs(
        self,
        queries: Iterable[DialogQuery],
        *,
        concurrency: int = 4,
        window: int = 5000,
        progress: ProgressCallback | None = None,
    ) -> list[DialogOutcome]:
        """Resolve many dialogs; one outcome per query, in order (blocking)."""
        return list(
            self.iter_dialogs(queries, concurrency=concurrency, window=window, progress=progress)
        )

    def iter_dialogs(
        self,
        queries: Iterable[DialogQuery],
        *,
        ordered: bool = True,
        concurrency: int = 4,
        window: int = 5000,
        progress: ProgressCallback | None = None,
    ) -> Iterator[DialogOutcome]:
        """Stream one outcome per query (a blocking generator with bounded memory).

        The input is read in the client's thread, lazily. Closing the generator early
        (``break``) cancels the batches in flight.
        """
        stream = self._client.iter_dialogs(
            _threadsafe(queries),
            ordered=ordered,
            concurrency=concurrency,
            window=window,
            progress=progress,
        )
        return self._drain(stream)

    def batch(
        self,
        methods: Iterable[Method[Any]],
        *,
        concurrency: int = 4,
        window: int = 5000,
        progress: ProgressCallback | None = None,
    ) -> list[BatchOutcome[Any]]:
        """Run method objects through ``batch`` calls; outcomes in order (blocking)."""
        return self._run(
            self._client.batch(methods, concurrency=concurrency, window=window, progress=progress)
        )

    def _drain(self, stream: AsyncIterator[T]) -> Iterator[T]:
        finished = False
        try:
            while not finished:
                chunk, finished = self._run(_take(stream, _CHUNK))
                yield from chunk
        finally:
            if not finished and not self._closed:
                close = getattr(stream, "aclose", None)
                if close is not None:
                    self._run(close())


async def _take(stream: AsyncIterator[T], count: int) -> tuple[list[T], bool]:
    """Take up to ``count`` items; return them and whether the stream ended."""
    items: list[T] = []
    while len(items) < count:
        try:
            items.append(await anext(stream))
        except StopAsyncIteration:
            return items, True
    return items, False


async def _threadsafe(items: Iterable[T]) -> AsyncIterator[T]:
    # The caller's iterable is consumed in the loop's thread; wrap it so the batch job
    # sees an async iterable and yields to the loop between items.
    for position, item in enumerate(items):
        yield item
        if position % 1000 == 999:
            await asyncio.sleep(0)
