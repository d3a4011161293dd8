"""Run a :class:`FakePortal` in a background thread with its own event loop.

Sync tests (``urllib``, ``requests``, a sync SDK facade) and async tests on any loop can
then share one portal. Everything that touches the portal's state runs on the portal's own
loop (``asyncio.run_coroutine_threadsafe``), so callers in other threads never race the
request handlers.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, TypeVar

from ._data import FakeDialog
from ._faults import Faults
from ._portal import FakePortal
from ._stats import PortalStats

__all__ = ["ThreadedFakePortal"]

_T = TypeVar("_T")
_CALL_TIMEOUT = 30.0


class ThreadedFakePortal:
    """A :class:`FakePortal` served from a daemon thread; a sync context manager.

    Args:
        **portal_kwargs: The keyword arguments of :class:`FakePortal`.

    Raises:
        ValueError: A portal argument is invalid (raised here, in the caller's thread).
    """

    def __init__(self, **portal_kwargs: Any) -> None:
        self._portal = FakePortal(**portal_kwargs)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopped: asyncio.Event | None = None

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> ThreadedFakePortal:
        """Start the thread and the server; return self once it listens.

        Raises:
            RuntimeError: Already started.
        """
        if self._thread is not None:
            raise RuntimeError("ThreadedFakePortal is already started")
        ready = threading.Event()
        failure: list[BaseException] = []
        self._thread = threading.Thread(
            target=self._serve, args=(ready, failure), name="fake-bitrix24-portal", daemon=True
        )
        self._thread.start()
        ready.wait()
        if failure:
            self._thread.join()
            self._thread = None
            raise failure[0]
        return self

    def _serve(self, ready: threading.Event, failure: list[BaseException]) -> None:
        loop = asyncio.new_event_loop()
        try:
            try:
                loop.run_until_complete(self._portal.start())
            except BaseException as error:  # handed to start() in the caller's thread
                failure.append(error)
                ready.set()
                return
            self._loop = loop
            stopped = asyncio.Event()
            self._stopped = stopped
            ready.set()
            loop.run_until_complete(stopped.wait())
            loop.run_until_complete(self._portal.close())
            pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            loop.close()

    def close(self) -> None:
        """Stop the server and the thread. Safe to call twice."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        loop, stopped = self._loop, self._stopped
        if loop is not None and stopped is not None and not loop.is_closed():
            loop.call_soon_threadsafe(stopped.set)
        thread.join()
        self._loop = None
        self._stopped = None

    def __enter__(self) -> ThreadedFakePortal:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _call(self, function: Callable[[], _T]) -> _T:
        """Run ``function`` on the portal's loop and return its result."""
        loop = self._loop
        if loop is None or self._thread is None:
            raise RuntimeError("ThreadedFakePortal is not started: use 'with' or start()")

        async def run() -> _T:
            return function()

        return asyncio.run_coroutine_threadsafe(run(), loop).result(_CALL_TIMEOUT)

    def _await(self, make: Callable[[], Coroutine[Any, Any, _T]]) -> _T:
        """Run the coroutine ``make()`` on the portal's loop and wait for its result."""
        loop = self._loop
        if loop is None or self._thread is None:
            raise RuntimeError("ThreadedFakePortal is not started: use 'with' or start()")
        if threading.current_thread() is self._thread:
            raise RuntimeError("a blocking ThreadedFakePortal call from the portal's own loop")
        return asyncio.run_coroutine_threadsafe(make(), loop).result(_CALL_TIMEOUT)

    # ----------------------------------------------------------------- the portal

    @property
    def portal(self) -> FakePortal:
        """Return the underlying portal; touch its state only from its own loop."""
        return self._portal

    @property
    def base_url(self) -> str:
        """Return ``http://127.0.0.1:PORT``."""
        return self._portal.base_url

    @property
    def webhook_url(self) -> str:
        """Return the webhook base, ``http://127.0.0.1:PORT/rest/<user>/<code>/``."""
        return self._portal.webhook_url

    @property
    def client_endpoint(self) -> str:
        """Return the OAuth REST base, ``http://127.0.0.1:PORT/rest/``."""
        return self._portal.client_endpoint

    @property
    def token_url(self) -> str:
        """Return the OAuth token endpoint, ``http://127.0.0.1:PORT/oauth/token/``."""
        return self._portal.token_url

    @property
    def client_id(self) -> str:
        """Return the OAuth application's client id."""
        return self._portal.client_id

    @property
    def client_secret(self) -> str:
        """Return the OAuth application's client secret."""
        return self._portal.client_secret

    @property
    def application_token(self) -> str:
        """Return the application token events would carry."""
        return self._portal.application_token

    @property
    def member_id(self) -> str:
        """Return the portal's member id."""
        return self._portal.member_id

    @property
    def dialogs(self) -> list[FakeDialog]:
        """Return a copy of the portal's dialogs."""
        return self._call(lambda: self._portal.dialogs)

    @property
    def stats(self) -> PortalStats:
        """Return a copy of the counters, taken on the portal's loop."""
        return self._call(self._portal.stats.copy)

    def issue_tokens(self) -> dict[str, Any]:
        """Return a fresh token pair (see :meth:`FakePortal.issue_tokens`)."""
        return self._call(self._portal.issue_tokens)

    def create_authorization_code(self) -> str:
        """Return a 30-second, single-use authorization code."""
        return self._call(self._portal.create_authorization_code)

    def expire_access_tokens(self) -> None:
        """Make every access token issued so far expired."""
        self._call(self._portal.expire_access_tokens)

    def set_faults(self, faults: Faults | None) -> None:
        """Replace the injected faults (see :meth:`FakePortal.set_faults`)."""
        self._call(lambda: self._portal.set_faults(faults))

    def move_to(self, address: str | None) -> None:
        """Rename the portal (see :meth:`FakePortal.move_to`)."""
        self._call(lambda: self._portal.move_to(address))

    def unix_time(self) -> float:
        """The Unix time of the portal's answers (see :meth:`FakePortal.unix_time`)."""
        return self._call(self._portal.unix_time)

    def reset_stats(self) -> None:
        """Zero the counters."""
        self._call(self._portal.reset_stats)

    def add_dialog(self, dialog: FakeDialog) -> None:
        """Add one dialog (see :meth:`FakePortal.add_dialog`)."""
        self._call(lambda: self._portal.add_dialog(dialog))

    def send_event(
        self,
        url: str,
        event: str,
        data: Mapping[str, Any] | int | str,
        *,
        with_tokens: bool = True,
        application_token: str | None = None,
    ) -> int:
        """POST an event to a handler and return its HTTP status (blocking).

        See :meth:`FakePortal.send_event`. The POST goes out from the portal's thread
        while this one waits, so the handler must not be served by this thread's event
        loop (it could not answer); from async code, call
        ``await asyncio.to_thread(portal.send_event, ...)``.
        """
        return self._await(
            lambda: self._portal.send_event(
                url,
                event,
                data,
                with_tokens=with_tokens,
                application_token=application_token,
            )
        )
