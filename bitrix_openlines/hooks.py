"""Hooks: observe every request, retry and token refresh (for metrics), without subclassing.

Pass ``hooks=Hooks(on_request=..., on_retry=..., on_refresh=...)`` to the client. Each
callback gets one small frozen event and runs inline, so keep it quick (increment a
counter, observe a histogram). A callback that raises is logged and otherwise ignored:
metrics never break a call. Events carry no secrets.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

import attrs

__all__ = ["Hooks", "RefreshEvent", "RequestEvent", "RetryEvent"]

logger = logging.getLogger("bitrix_openlines")

E = TypeVar("E")


@attrs.frozen(slots=True)
class RequestEvent:
    """One HTTP request to the portal has ended (with an answer or without one).

    Attributes:
        method: The REST method (``batch`` for a batch).
        portal: The portal's address.
        attempt: The attempt number of the call (1 for the first).
        status: The HTTP status, or ``None`` when no answer arrived.
        error_code: The Bitrix error code or the exception's class name, if it failed.
        duration: Seconds from sending to the decoded answer.
        commands: How many commands the request carried (1, or a batch's size).
    """

    method: str
    portal: str
    attempt: int
    status: int | None
    error_code: str | None
    duration: float
    commands: int = 1


@attrs.frozen(slots=True)
class RetryEvent:
    """A call failed and will be sent again after ``delay`` seconds."""

    method: str
    attempt: int
    reason: str
    delay: float
    error_code: str | None


@attrs.frozen(slots=True)
class RefreshEvent:
    """An OAuth token refresh ended; ``ok`` says whether it gave a new pair."""

    portal: str
    ok: bool
    duration: float
    error_code: str | None = None


def _noop(_: object) -> None:
    return None


@attrs.frozen(slots=True)
class Hooks:
    """The callbacks to call on each event (each one optional)."""

    on_request: Callable[[RequestEvent], None] = _noop
    on_retry: Callable[[RetryEvent], None] = _noop
    on_refresh: Callable[[RefreshEvent], None] = _noop

    @property
    def observes_requests(self) -> bool:
        """Whether ``on_request`` was set (the per-request event is built only then)."""
        return self.on_request is not _noop

    def emit(self, callback: Callable[[E], None], event: E) -> None:
        """Call ``callback(event)``; log and swallow what it raises."""
        try:
            callback(event)
        except Exception:
            logger.exception("a hook raised; ignored (%s)", type(event).__name__)
