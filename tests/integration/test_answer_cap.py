"""A huge answer over a real socket is refused once past the cap, and never read whole.

A tiny aiohttp server streams bodies far larger than the client's ``max_answer_bytes``:
without a length, with a ``Content-Length`` that says so, and gzip-compressed (small on
the wire, huge once decompressed). The client's responses count every byte the
transport reads from them, so the test checks what was read, not time or memory.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import attrs
import pytest
from _serve import serve
from aiohttp import web

from bitrix_openlines import OpenLinesClient, RetryPolicy, SyncOpenLinesClient, WebhookAuth
from bitrix_openlines.errors import DecodeError
from bitrix_openlines.transport import _CHUNK

pytestmark = pytest.mark.integration

CAP = 1024 * 1024
HUGE = 64 * 1024 * 1024  # what the server would send, at most
PIECE = 64 * 1024
DIALOG_PATH = "/rest/1/abcdefgh12345678/imopenlines.dialog.get.json"


class _Counted:
    """A response's ``content`` that counts the bytes handed out by its reads."""

    def __init__(self, inner: aiohttp.StreamReader, counts: list[int]) -> None:
        self._inner = inner
        self._counts = counts
        counts.append(0)

    def _add(self, data: bytes) -> bytes:
        self._counts[-1] += len(data)
        return data

    async def read(self, n: int = -1) -> bytes:
        return self._add(await self._inner.read(n))

    async def readany(self) -> bytes:
        return self._add(await self._inner.readany())

    async def readexactly(self, n: int) -> bytes:
        return self._add(await self._inner.readexactly(n))

    def __getattr__(self, name: str) -> Any:
        if name.startswith(("iter_", "readchunk", "readline")):
            raise AssertionError(f"the test's counter does not see {name}")
        return getattr(self._inner, name)


def _counting_session(counts: list[int]) -> aiohttp.ClientSession:
    class CountingResponse(aiohttp.ClientResponse):
        @property
        def content(self) -> Any:
            return self.__dict__["_counted"]

        @content.setter
        def content(self, value: aiohttp.StreamReader) -> None:
            self.__dict__["_counted"] = _Counted(value, counts)

    return aiohttp.ClientSession(response_class=CountingResponse)


@attrs.define
class _Server:
    """What the test server serves, and what it saw."""

    mode: str = "chunked"
    url: str = ""
    requests: int = 0
    sent: int = 0  # bytes of the body written (before compression)


def _gzip_pieces() -> tuple[bytes, bytes]:
    """A gzip stream's start, and a block that may follow it any number of times.

    A full flush resets the compressor's state, so the same block is valid again after
    itself: 64 KiB of body for a few hundred bytes on the wire.
    """
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)  # gzip framing
    start = compressor.compress(b'{"result": "') + compressor.flush(zlib.Z_FULL_FLUSH)
    block = compressor.compress(b"x" * PIECE) + compressor.flush(zlib.Z_FULL_FLUSH)
    return start, block


def _handler(state: _Server) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    gzip_start, gzip_block = _gzip_pieces()

    async def stream(request: web.Request) -> web.StreamResponse:
        state.requests += 1
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        if state.mode == "declared":
            response.content_length = HUGE
        gzip = state.mode == "gzip"
        if gzip:
            response.headers["Content-Encoding"] = "gzip"
        await response.prepare(request)
        try:
            await response.write(gzip_start if gzip else b'{"result": "')
            while state.sent < HUGE:
                await response.write(gzip_block if gzip else b"x" * PIECE)
                state.sent += PIECE
        except (ConnectionError, RuntimeError):
            pass  # the client hung up: what the test expects
        return response

    return stream


@pytest.fixture
async def server() -> AsyncIterator[_Server]:
    state = _Server()
    app = web.Application()
    app.router.add_post(DIALOG_PATH, _handler(state))
    async with serve(app) as port:
        state.url = f"http://127.0.0.1:{port}/rest/1/abcdefgh12345678/"
        yield state


@pytest.mark.parametrize("mode", ["chunked", "declared", "gzip"])
async def test_a_huge_answer_is_refused_after_reading_at_most_cap_plus_a_chunk(
    server: _Server, mode: str
) -> None:
    server.mode = mode
    counts: list[int] = []
    async with _counting_session(counts) as session:
        async with OpenLinesClient(
            WebhookAuth(server.url),
            session=session,
            rate_limit=None,
            retry=RetryPolicy.no_wait(max_attempts=1),
            max_answer_bytes=CAP,
        ) as client:
            with pytest.raises(DecodeError, match=f"max_answer_bytes \\({CAP} bytes\\)"):
                await client.get_dialog(chat_id=13)
    assert server.requests == 1
    (read,) = counts
    if mode == "declared":
        assert read == 0  # refused on its Content-Length
    else:
        assert CAP < read <= CAP + _CHUNK
    if mode != "gzip":  # a compressed body is small enough to sit in socket buffers
        # The connection was dropped, not drained: the server could not send it all.
        assert server.sent < HUGE


async def test_the_sync_client_takes_the_cap_too(server: _Server) -> None:
    def call() -> None:
        # Its own thread: the server runs in this test's loop.
        with SyncOpenLinesClient(
            WebhookAuth(server.url),
            rate_limit=None,
            retry=RetryPolicy.no_wait(max_attempts=1),
            max_answer_bytes=CAP,
        ) as client:
            with pytest.raises(DecodeError, match="max_answer_bytes"):
                client.get_dialog(chat_id=13)

    await asyncio.to_thread(call)
    assert server.requests == 1
    assert server.sent < HUGE
