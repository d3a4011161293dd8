"""The single call over real sockets: the SDK reads what ``json.loads`` reads.

The transport, the encoder and the decoder take quick ways on the usual answer (an ASCII
JSON object with its ``Content-Length``). Two checks that they read what the plain ways
read, over real sockets:

- against the fake portal: every dialog through ``call_raw`` is the ``result`` a bare
  ``aiohttp`` POST with ``json.loads`` gets for the same query;
- against a small server that answers a given body: bodies off the usual path (text after
  the object, UTF-8 not escaped, UTF-16, a BOM, gzip, chunked) decode to what
  ``json.loads`` gives, or fail with ``DecodeError`` where it fails.
"""

from __future__ import annotations

import codecs
import gzip
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import attrs
import pytest
from _serve import serve
from aiohttp import web

from bitrix_openlines import OpenLinesClient, RetryPolicy, WebhookAuth
from bitrix_openlines.errors import DecodeError
from bitrix_openlines.testing import FakePortal

pytestmark = pytest.mark.integration

DIALOGS = 40
METHOD = "imopenlines.dialog.get"


async def test_call_raw_reads_what_a_bare_post_reads() -> None:
    async with FakePortal(dialogs=DIALOGS, rate=None) as portal:
        endpoint = f"{portal.webhook_url}{METHOD}.json"
        async with (
            OpenLinesClient(WebhookAuth(portal.webhook_url), rate_limit=None) as client,
            aiohttp.ClientSession() as http,
        ):
            for chat_id in range(1, DIALOGS + 1):
                async with http.post(endpoint, json={"CHAT_ID": chat_id}) as response:
                    bare = json.loads(await response.read())["result"]
                assert await client.call_raw(METHOD, {"CHAT_ID": chat_id}) == bare
                assert bare["id"] == chat_id
        # One request each: nothing retried, nothing sent twice.
        assert portal.stats.requests == 2 * DIALOGS


@attrs.define
class _Server:
    url: str = ""
    body: bytes = b""
    headers: dict[str, str] = attrs.Factory(dict)
    chunked: bool = False


@pytest.fixture
async def server() -> AsyncIterator[_Server]:
    state = _Server()

    async def answer(request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse(headers=state.headers)
        if not state.chunked:
            response.content_length = len(state.body)
        await response.prepare(request)
        # In two writes: a chunked answer comes in two chunks.
        await response.write(state.body[: len(state.body) // 2])
        await response.write(state.body[len(state.body) // 2 :])
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_post(f"/rest/1/abcdefgh12345678/{METHOD}.json", answer)
    async with serve(app) as port:
        state.url = f"http://127.0.0.1:{port}/rest/1/abcdefgh12345678/"
        yield state


_ENVELOPE = {"result": {"id": 7, "name": "Здравствуйте \u2028", "n": [1.5, None, True]}}
_ASCII = json.dumps(_ENVELOPE).encode()
_UTF8 = json.dumps(_ENVELOPE, ensure_ascii=False).encode()


@pytest.mark.parametrize(
    ("body", "encoding", "chunked"),
    [
        (_ASCII, None, False),
        (_ASCII, None, True),
        (_ASCII + b"\r\n", None, False),
        (b"\n " + _ASCII, None, False),
        (_UTF8, None, False),
        (_UTF8, None, True),
        (codecs.BOM_UTF8 + _UTF8, None, False),
        (json.dumps(_ENVELOPE, ensure_ascii=False).encode("utf-16-le"), None, False),
        (json.dumps(_ENVELOPE).encode("utf-32-be"), None, False),
        (_ASCII, "gzip", False),
        (_ASCII + b'{"result":2}', None, False),
        (_ASCII[:-1], None, False),
        (b'{"result":"\xff"}', None, False),
    ],
    ids=[
        "ascii",
        "ascii chunked",
        "trailing newline",
        "leading space",
        "utf-8",
        "utf-8 chunked",
        "bom",
        "utf-16",
        "utf-32",
        "gzip",
        "extra data",
        "cut",
        "not utf-8",
    ],
)
async def test_bodies_decode_as_json_loads_decodes_them(
    server: _Server, body: bytes, encoding: str | None, chunked: bool
) -> None:
    server.headers = {"Content-Type": "application/json"}
    server.body = body
    if encoding == "gzip":
        server.body = gzip.compress(body)
        server.headers["Content-Encoding"] = "gzip"
    server.chunked = chunked
    expected: Any
    try:
        expected = json.loads(body)["result"]
    except ValueError:
        expected = DecodeError
    async with OpenLinesClient(
        WebhookAuth(server.url), rate_limit=None, retry=RetryPolicy.no_wait()
    ) as client:
        if expected is DecodeError:
            with pytest.raises(DecodeError):
                await client.call_raw(METHOD, {"CHAT_ID": 7})
        else:
            assert await client.call_raw(METHOD, {"CHAT_ID": 7}) == expected
