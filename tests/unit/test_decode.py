"""Answers that are not the JSON we expect: DecodeError, never KeyError or TypeError."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from _unit_helpers import DIALOG_GET, dialog_example, make_client, recorded, webhook_url
from aioresponses import aioresponses

from bitrix_openlines import RetryPolicy
from bitrix_openlines.errors import (
    AccessError,
    DecodeError,
    OperationTimeLimitError,
    ServerError,
)
from bitrix_openlines.wire import RawResponse, decode_envelope, decode_json, reset_at_of

NGINX_502 = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    "</body>\r\n</html>\r\n" + "<!-- a padding comment to make the page long -->\r\n" * 20
)


def _raw(body: bytes | str, status: int = 200, content_type: str = "text/html") -> RawResponse:
    data = body.encode() if isinstance(body, str) else body
    return RawResponse(status=status, body=data, content_type=content_type)


# -- the pure decoder --------------------------------------------------------------------


def test_html_page_gives_decode_error_with_status_and_short_excerpt() -> None:
    with pytest.raises(DecodeError) as caught:
        decode_envelope(_raw(NGINX_502, status=502), DIALOG_GET)
    error = caught.value
    assert error.status == 502
    assert error.method == DIALOG_GET
    assert error.excerpt.startswith("<html> <head><title>502 Bad Gateway</title>")
    assert len(error.excerpt) <= 130
    assert len(NGINX_502) > 500  # the excerpt really is shorter than the page
    assert "HTML page" in str(error)
    assert "text/html" in str(error)
    assert len(str(error)) < 400


@pytest.mark.parametrize(
    ("body", "what"),
    [
        (b"", "empty"),
        (b"   \n ", "empty"),
        (b"[1, 2, 3]", "list"),
        (b'"just a string"', "str"),
        (b"42", "int"),
        (b"null", "NoneType"),
        (b'{"result": {"id": 1777, "name": "Gre', "not JSON"),
        (b"\xff\xfe\x00garbage", "not JSON"),
        (b"Service temporarily unavailable", "not JSON"),
    ],
)
def test_bodies_that_are_not_a_json_object(body: bytes, what: str) -> None:
    with pytest.raises(DecodeError) as caught:
        decode_envelope(_raw(body, content_type="application/json"), DIALOG_GET)
    assert caught.value.status == 200
    assert caught.value.method == DIALOG_GET
    assert what in str(caught.value)


def test_200_without_result_or_error() -> None:
    body = b'{"time": {"start": 1773683678}}'
    with pytest.raises(DecodeError) as caught:
        decode_envelope(_raw(body, content_type="application/json"), DIALOG_GET)
    assert "neither 'result' nor 'error'" in str(caught.value)
    assert caught.value.excerpt == '{"time": {"start": 1773683678}}'
    assert caught.value.status == 200


def test_error_status_with_empty_body_is_an_api_error_by_status() -> None:
    with pytest.raises(ServerError) as caught:
        decode_envelope(_raw(b"", status=503), DIALOG_GET)
    assert caught.value.status == 503
    assert caught.value.code is None


def test_error_body_wins_over_status_and_keeps_reset_at() -> None:
    body = b'{"error":"OPERATION_TIME_LIMIT","time":{"operating_reset_at":1773684278}}'
    with pytest.raises(OperationTimeLimitError) as caught:
        decode_envelope(_raw(body, status=429), DIALOG_GET)
    assert caught.value.reset_at == 1773684278.0
    assert caught.value.status == 429


def test_decode_json_returns_the_object() -> None:
    assert decode_json(_raw(b'{"result": 1}'), None) == {"result": 1}


@pytest.mark.parametrize(
    ("envelope", "expected"),
    [
        ({"time": {"operating_reset_at": 1773684278}}, 1773684278.0),
        ({"time": {"operating_reset_at": 17.5}}, 17.5),
        ({"time": {"operating_reset_at": True}}, None),
        ({"time": {"operating_reset_at": "1773684278"}}, None),
        ({"time": []}, None),
        ({}, None),
    ],
)
def test_reset_at_of(envelope: dict[str, Any], expected: float | None) -> None:
    assert reset_at_of(envelope) == expected


# -- through the client ------------------------------------------------------------------


async def test_html_502_through_the_client_is_retried_then_decode_error() -> None:
    url = webhook_url(DIALOG_GET)
    with aioresponses() as mocked:
        mocked.post(url, status=502, body=NGINX_502, content_type="text/html", repeat=True)
        async with make_client(retry=RetryPolicy.no_wait(max_attempts=2)) as client:
            with pytest.raises(DecodeError) as caught:
                await client.get_dialog(chat_id=13)
        assert len(recorded(mocked, "POST", url)) == 2
    assert caught.value.status == 502
    assert caught.value.method == DIALOG_GET
    assert caught.value.excerpt.startswith("<html>")


@pytest.mark.parametrize(
    "body",
    [b"", b"[]", b'{"result": {"id": 1777', b'{"time": {}}'],
    ids=["empty", "list", "truncated", "no-result"],
)
async def test_bad_bodies_through_the_client(body: bytes) -> None:
    url = webhook_url(DIALOG_GET)
    with aioresponses() as mocked:
        mocked.post(url, status=200, body=body, repeat=True)
        async with make_client(retry=RetryPolicy.never()) as client:
            with pytest.raises(DecodeError) as caught:
                await client.get_dialog(chat_id=13)
    assert caught.value.status == 200
    assert caught.value.method == DIALOG_GET


@pytest.mark.parametrize(
    "result",
    [
        5,
        "chat1777",
        [],
        [{"id": 1777}],
        None,
        False,
        {"name": "no id at all"},
        {"id": "abc"},
        {"id": None},
        {"id": 1777, "date_create": "yesterday"},
        {"id": 1777, "restrictions": "all"},
        {"id": 1777, "manager_list": 27},
        {"id": 1777, "manager_list": ["x"]},
        {"id": 1777, "readed_list": [{"user_name": "no user id"}]},
        {"id": 1777, "last_message_views": {"first_viewers": 3}},
        {"id": 1777, "extranet": "maybe"},
        {"id": 1777, "owner": True},
    ],
)
async def test_result_that_does_not_fit_dialog_is_a_decode_error(result: Any) -> None:
    url = webhook_url(DIALOG_GET)
    with aioresponses() as mocked:
        mocked.post(url, payload={"result": result})
        async with make_client(retry=RetryPolicy.never()) as client:
            with pytest.raises(DecodeError) as caught:
                await client.get_dialog(chat_id=13)
    error = caught.value
    assert error.method == DIALOG_GET
    assert error.status == 200
    assert "does not fit Dialog" in str(error)
    assert len(str(error)) < 1000


async def test_decode_error_of_a_result_is_not_retried(docs_examples: Path) -> None:
    # A result that does not fit will not fit next time either: one request only.
    url = webhook_url(DIALOG_GET)
    with aioresponses() as mocked:
        mocked.post(url, payload={"result": {"id": "abc"}}, repeat=True)
        async with make_client() as client:
            with pytest.raises(DecodeError):
                await client.get_dialog(chat_id=13)
        assert len(recorded(mocked, "POST", url)) == 1


async def test_error_body_through_the_client(docs_examples: Path) -> None:
    url = webhook_url(DIALOG_GET)
    body = (docs_examples / "imopenlines.dialog.get__400_ACCESS_ERROR.json").read_bytes()
    with aioresponses() as mocked:
        mocked.post(url, status=400, body=body)
        mocked.post(url, payload=dialog_example(docs_examples))
        async with make_client() as client:
            with pytest.raises(AccessError) as caught:
                await client.get_dialog(chat_id=13)
            assert (await client.get_dialog(chat_id=13)).id == 1777
    assert caught.value.description == "You do not have access to the specified dialog"
