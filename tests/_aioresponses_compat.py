"""Let aioresponses build responses on aiohttp 3.14 (a plain module, not collected).

aioresponses 0.7.9, the newest release, builds ``ClientResponse`` objects without the
``stream_writer`` argument that aiohttp 3.14 made required, so every mocked request
fails with ``TypeError``. The tests run against the aiohttp a plain install gets, so
instead of pinning an older aiohttp, :func:`install` hands aioresponses a response class
that supplies a finished writer (the request is already "sent" when a mock answers).
Nothing changes on an aiohttp whose ``ClientResponse`` does not take the argument.
"""

from __future__ import annotations

import inspect
from typing import Any

import aioresponses.core
from aiohttp import ClientResponse

__all__ = ["install"]


class _SentWriter:
    """A stand-in for the request's stream writer: everything was written already."""

    output_size = 0


class _CompatResponse(ClientResponse):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("stream_writer", _SentWriter())
        super().__init__(*args, **kwargs)


def install() -> None:
    """Make aioresponses build :class:`_CompatResponse` where aiohttp needs it."""
    if "stream_writer" in inspect.signature(ClientResponse.__init__).parameters:
        aioresponses.core.ClientResponse = _CompatResponse  # type: ignore[attr-defined]
