"""Types shared by every method: the ``time`` block and the response wrapper."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Generic, TypeVar

import attrs

from bitrix_openlines._fill import filler, new

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

    @classmethod
    def from_wire(cls, block: Any) -> TimeInfo | None:
        """Read a ``time`` block as the portal sends it, or ``None`` if it is not one.

        Numbers may come as ints, floats or numeric strings; the dates as text. A block
        with a field of another kind gives ``None`` whole: a malformed ``time`` block
        never costs the result it came with. (A hand-written reader: every answer has
        one, so it is on the hot path of every call.)
        """
        if type(block) is not dict and not isinstance(block, Mapping):
            return None
        get = block.get
        start = get("start")
        finish = get("finish")
        duration = get("duration")
        processing = get("processing")
        date_start = get("date_start")
        date_finish = get("date_finish")
        operating = get("operating")
        reset_at = get("operating_reset_at")
        try:
            # Floats, ints, texts and None, the common kinds, without a call; the rest
            # through _number and _text.
            if type(start) is not float and start is not None:
                start = float(start) if type(start) is int else _number(start)
            if type(finish) is not float and finish is not None:
                finish = float(finish) if type(finish) is int else _number(finish)
            if type(duration) is not float and duration is not None:
                duration = float(duration) if type(duration) is int else _number(duration)
            if type(processing) is not float and processing is not None:
                processing = float(processing) if type(processing) is int else _number(processing)
            if type(date_start) is not str and date_start is not None:
                date_start = _text(date_start)
            if type(date_finish) is not str and date_finish is not None:
                date_finish = _text(date_finish)
            if type(operating) is not float and operating is not None:
                operating = float(operating) if type(operating) is int else _number(operating)
            if type(reset_at) is not float and reset_at is not None:
                reset_at = float(reset_at) if type(reset_at) is int else _number(reset_at)
        except (TypeError, ValueError, OverflowError):
            return None
        if cls is not TimeInfo:  # a subclass is built as it builds itself
            return cls(
                start, finish, duration, processing, date_start, date_finish, operating, reset_at
            )
        # Every answer and every batch command has a block: built without the frozen
        # class's eight guarded stores (see _TimeInfoFill).
        info: Any = new(_TimeInfoFill)
        info.start = start
        info.finish = finish
        info.duration = duration
        info.processing = processing
        info.date_start = date_start
        info.date_finish = date_finish
        info.operating = operating
        info.operating_reset_at = reset_at
        info.__class__ = TimeInfo
        typed: TimeInfo = info  # without a call (typing.cast is one)
        return typed


#: ``TimeInfo``'s layout with plain stores: filled, then made a ``TimeInfo`` (see
#: :mod:`bitrix_openlines._fill`): 0.67 to about 0.25 µs per block.
_TimeInfoFill = filler(TimeInfo)


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


def _number(value: Any) -> float | None:
    kind = type(value)
    if kind is float:
        return value  # type: ignore[no-any-return]
    if kind is int:
        return float(value)
    if value is None:
        return None
    if isinstance(value, bool):
        raise TypeError("a boolean is not a number")
    if isinstance(value, int | float | str):
        return float(value)
    raise TypeError("not a number")


def _text(value: Any) -> str | None:
    if value is None or type(value) is str:
        return value
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise TypeError("not a text")
