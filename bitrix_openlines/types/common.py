"""Types shared by every method: the ``time`` block and the response wrapper."""

from __future__ import annotations

from typing import Generic, TypeVar

import attrs

__all__ = ["Response", "TimeInfo"]

T = TypeVar("T")


@attrs.frozen(slots=True)
class TimeInfo:
    """The ``time`` block the portal adds to every successful answer.

    ``start`` and ``processing`` are integers on current portals and floats on older ones
    (PROTOCOL.md section 2); both are accepted and exposed as ``float``. ``operating`` and
    ``operating_reset_at`` appear only where the portal meters the method (always on the
    cloud).

    Attributes:
        start: Unix time the request started.
        finish: Unix time the request finished.
        duration: ``finish - start`` in seconds.
        processing: Seconds spent in the method's handler.
        date_start: ``start`` as ISO-8601 text with the portal's offset.
        date_finish: ``finish`` as ISO-8601 text with the portal's offset.
        operating: Execution seconds this method has used in the current 10-minute window.
        operating_reset_at: Unix time the oldest minute of that window expires.
    """

    start: float | None = None
    finish: float | None = None
    duration: float | None = None
    processing: float | None = None
    date_start: str | None = None
    date_finish: str | None = None
    operating: float | None = None
    operating_reset_at: float | None = None


@attrs.frozen(slots=True)
class Response(Generic[T]):
    """A decoded successful answer: the typed ``result`` and the envelope around it.

    Attributes:
        result: The structured ``result`` (a ``Dialog`` for ``DialogGet``).
        time: The ``time`` block, when the portal sent one (portals before 2025 may not).
        total: The ``total`` of a list method, when present.
        next: The offset of the next page of a list method, when present.
    """

    result: T
    time: TimeInfo | None = None
    total: int | None = None
    next: int | None = None
