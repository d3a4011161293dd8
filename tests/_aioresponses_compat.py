"""Let aioresponses build responses on aiohttp 3.14 (a plain module, not collected).

aioresponses 0.7.9, the newest release, predates two changes of aiohttp 3.14:

- ``ClientResponse`` needs a ``stream_writer`` argument, so every mocked request fails
  with ``TypeError``: :func:`install` hands aioresponses a response class that supplies a
  finished writer (the request is already "sent" when a mock answers);
- a body larger than the stream's buffer makes the stream pause its protocol, and the
  bare ``ResponseHandler`` aioresponses gives it has no parser to pause (an
  ``AssertionError`` inside aiohttp): the streams get a protocol with no transport to
  pause instead (the whole body is in memory already).

The tests run against the aiohttp a plain install gets, so this replaces pinning an older
aiohttp. Nothing changes on an aiohttp whose ``ClientResponse`` takes no ``stream_writer``.
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import aioresponses.core
from aiohttp import ClientResponse
from aiohttp.client_proto import ResponseHandler
from aiohttp.streams import StreamReader

__all__ = ["install"]


class _SentWriter:
    """A stand-in for the request's stream writer: everything was written already."""

    output_size = 0


class _CompatResponse(ClientResponse):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("stream_writer", _SentWriter())
        super().__init__(*args, **kwargs)


class _BufferedProtocol(ResponseHandler):
    """A protocol for a body that is all in memory: nothing to pause or resume."""

    def pause_reading(self) -> None:
        return None

    def resume_reading(self, resume_parser: bool = True) -> None:
        return None


def _stream_reader(loop: asyncio.AbstractEventLoop | None = None) -> StreamReader:
    return StreamReader(_BufferedProtocol(loop=loop), limit=2**16, loop=loop)  # type: ignore[arg-type]


def install() -> None:
    """Make aioresponses build responses aiohttp 3.14 accepts, where it needs that."""
    if "stream_writer" in inspect.signature(ClientResponse.__init__).parameters:
        aioresponses.core.ClientResponse = _CompatResponse  # type: ignore[attr-defined]
        aioresponses.core.stream_reader_factory = _stream_reader  # type: ignore[attr-defined]
