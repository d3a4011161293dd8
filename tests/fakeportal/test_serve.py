"""serve_forever: prints usable credentials and stops cleanly when cancelled."""

from __future__ import annotations

import asyncio
import re

import aiohttp
import pytest

from bitrix_openlines.testing._serve import serve_forever

from ._helpers import DIALOG_GET, call


async def test_serve_forever_prints_credentials_and_stops_on_cancel(
    capsys: pytest.CaptureFixture[str], http: aiohttp.ClientSession
) -> None:
    task = asyncio.create_task(serve_forever(0, dialogs=3))
    output = ""
    while "Ctrl-C" not in output:  # however long the start takes on a loaded machine
        assert not task.done(), task
        await asyncio.sleep(0.02)
        output += capsys.readouterr().out
    values = dict(re.findall(r"^\s+([a-zA-Z_ ]+?):\s+(\S+)", output, re.MULTILINE))
    status, body = await call(http, values["webhook URL"] + DIALOG_GET, {"CHAT_ID": 3})
    assert (status, body["result"]["id"]) == (200, 3)
    oauth = values["OAuth endpoint"] + DIALOG_GET
    status, _ = await call(http, oauth, {"CHAT_ID": 1, "auth": values["access_token"]})
    assert status == 200
    assert values["client_id"].startswith("local.")
    assert values["client_secret"]
    assert values["token URL"].endswith("/oauth/token/")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    with pytest.raises(aiohttp.ClientConnectorError):
        await call(http, values["webhook URL"] + DIALOG_GET, {"CHAT_ID": 3})
