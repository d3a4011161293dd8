"""Answers are capped: a body past ``max_answer_bytes`` is refused (issue 15, item 7)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from _unit_helpers import (
    CLIENT_ID,
    CLIENT_SECRET,
    DIALOG_GET,
    NEW_ACCESS,
    TOKEN_URL_RE,
    dialog_example,
    load_example,
    make_client,
    oauth_auth,
    oauth_url,
    recorded,
    webhook_auth,
    webhook_url,
)
from aioresponses import aioresponses

from bitrix_openlines import OpenLinesClient, RetryPolicy, SyncOpenLinesClient, exchange_code
from bitrix_openlines.errors import DecodeError
from bitrix_openlines.transport import DEFAULT_MAX_ANSWER_BYTES, Transport

URL = webhook_url(DIALOG_GET)
CAP = 4096


def _padded(body: dict[str, Any], size: int) -> bytes:
    """``body`` as JSON of exactly ``size`` bytes (padding in an unknown field)."""
    body = {**body, "padding": ""}
    bare = len(json.dumps(body).encode())
    body["padding"] = "x" * (size - bare)
    encoded = json.dumps(body).encode()
    assert len(encoded) == size
    return encoded


def test_the_default_cap_is_16_mib_and_a_client_passes_its_own() -> None:
    assert DEFAULT_MAX_ANSWER_BYTES == 16 * 1024 * 1024
    assert Transport().max_answer_bytes == DEFAULT_MAX_ANSWER_BYTES
    client = OpenLinesClient(webhook_auth(), max_answer_bytes=CAP)
    assert client._session.transport.max_answer_bytes == CAP


@pytest.mark.parametrize("value", [0, 1023, -1, 2.5e6, "16M", None, True])
def test_a_bad_cap_is_refused_naming_the_parameter(value: Any) -> None:
    for build in (
        lambda: OpenLinesClient(webhook_auth(), max_answer_bytes=value),
        lambda: SyncOpenLinesClient(webhook_auth(), max_answer_bytes=value),
        lambda: Transport(max_answer_bytes=value),
    ):
        with pytest.raises(ValueError, match="max_answer_bytes") as caught:
            build()
        assert "1024" in str(caught.value)


async def test_an_answer_at_the_cap_is_read(docs_examples: Path) -> None:
    with aioresponses() as mocked:
        mocked.post(URL, body=_padded(dialog_example(docs_examples), CAP))
        async with make_client(max_answer_bytes=CAP) as client:
            dialog = await client.get_dialog(chat_id=13)
    assert dialog.id == 1777


async def test_an_answer_past_the_cap_is_refused_with_decode_error(docs_examples: Path) -> None:
    body = _padded(dialog_example(docs_examples), CAP + 1)
    with aioresponses() as mocked:
        mocked.post(URL, body=body, repeat=True)
        async with make_client(
            max_answer_bytes=CAP, retry=RetryPolicy.no_wait(max_attempts=2)
        ) as client:
            with pytest.raises(DecodeError) as caught:
                await client.get_dialog(chat_id=13)
        # An undecodable answer: an idempotent method is tried again, per the policy.
        assert len(recorded(mocked, "POST", URL)) == 2
    error = caught.value
    assert error.status == 200
    assert error.method == DIALOG_GET
    assert f"max_answer_bytes ({CAP} bytes)" in str(error)
    assert error.excerpt == ""
    assert "Guest" not in str(error)  # nothing of the body


async def test_a_declared_length_past_the_cap_is_refused_before_reading() -> None:
    with aioresponses() as mocked:
        mocked.post(
            URL,
            body=b'{"result": 1}',
            headers={"Content-Length": str(DEFAULT_MAX_ANSWER_BYTES + 1)},
        )
        transport = Transport()
        try:
            with pytest.raises(DecodeError, match="max_answer_bytes"):
                await transport.post(URL, b"{}", method=DIALOG_GET)
        finally:
            await transport.close()


async def test_a_batch_answer_past_the_cap_fails_every_command(docs_examples: Path) -> None:
    with aioresponses() as mocked:
        mocked.post(webhook_url("batch"), body=b"[" + b" " * CAP + b"]", repeat=True)
        async with make_client(
            max_answer_bytes=CAP, retry=RetryPolicy.no_wait(max_attempts=1)
        ) as client:
            outcomes = await client.get_dialogs([{"chat_id": 1}, {"chat_id": 2}])
    assert [type(o.error) for o in outcomes] == [DecodeError, DecodeError]
    assert all(o.result is None for o in outcomes)


async def test_a_non_idempotent_call_past_the_cap_is_sent_once() -> None:
    url = webhook_url("imopenlines.crm.message.add")
    with aioresponses() as mocked:
        mocked.post(url, body=b"x" * (CAP + 1), repeat=True)
        async with make_client(max_answer_bytes=CAP) as client:
            with pytest.raises(DecodeError):
                await client.call_raw("imopenlines.crm.message.add", {"CHAT_ID": 1})
        assert len(recorded(mocked, "POST", url)) == 1


async def test_a_token_answer_past_its_own_cap_is_refused(docs_examples: Path) -> None:
    good = load_example(docs_examples, "oauth__token_refresh__200.json")
    with aioresponses() as mocked:
        mocked.get(TOKEN_URL_RE, body=_padded(good, 64 * 1024 + 1))
        with pytest.raises(DecodeError, match="max_answer_bytes"):
            await exchange_code("code123", client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
        mocked.get(TOKEN_URL_RE, body=_padded(good, 64 * 1024))
        tokens = await exchange_code("code123", client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    assert tokens.access_token == NEW_ACCESS


async def test_a_refresh_with_an_oversized_token_answer_fails_the_call(
    docs_examples: Path,
) -> None:
    # The client's own cap is larger: the token request keeps its own, smaller one.
    good = load_example(docs_examples, "oauth__token_refresh__200.json")
    with aioresponses() as mocked:
        mocked.post(
            oauth_url(DIALOG_GET),
            payload={"error": "expired_token", "error_description": "The access token expired"},
            status=401,
        )
        mocked.get(TOKEN_URL_RE, body=_padded(good, 100 * 1024))
        async with make_client(oauth_auth(), retry=RetryPolicy.no_wait(max_attempts=1)) as client:
            with pytest.raises(DecodeError, match="max_answer_bytes"):
                await client.get_dialog(chat_id=13)
