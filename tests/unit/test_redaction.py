"""No webhook code, token or client secret in logs, error texts, reprs or hook events."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from _unit_helpers import (
    CLIENT_SECRET,
    DIALOG_GET,
    NEW_ACCESS,
    NEW_REFRESH,
    OAUTH_ENDPOINT,
    OLD_ACCESS,
    OLD_REFRESH,
    TOKEN_URL,
    TOKEN_URL_RE,
    WEBHOOK,
    WEBHOOK_CODE,
    body_of,
    dialog_example,
    error_body,
    load_example,
    make_client,
    oauth_auth,
    oauth_url,
    webhook_auth,
    webhook_url,
)
from aioresponses import CallbackResult, aioresponses

from bitrix_openlines import Hooks, OAuthTokens, OpenLinesClient, RetryPolicy
from bitrix_openlines._redact import MASK, mask, redact
from bitrix_openlines.auth import Credentials
from bitrix_openlines.errors import (
    AccessError,
    AuthError,
    DecodeError,
    OpenLinesError,
    PortalMovedError,
    RequestTimeoutError,
    TransportError,
)

SECRETS = [WEBHOOK_CODE, OLD_ACCESS, OLD_REFRESH, NEW_ACCESS, NEW_REFRESH, CLIENT_SECRET]

TOKEN_QUERY = (
    f"{TOKEN_URL}?client_id=app&client_secret={CLIENT_SECRET}"
    f"&grant_type=refresh_token&refresh_token={OLD_REFRESH}"
)


def _leaks(text: str) -> list[str]:
    return [secret for secret in SECRETS if secret in text]


def _log_texts(records: list[logging.LogRecord]) -> Iterator[str]:
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    for record in records:
        yield record.getMessage()
        yield str(record.msg)
        yield repr(record.args)
        yield formatter.format(record)  # includes the traceback of exc_info, if any
        if record.exc_info and record.exc_info[1] is not None:
            yield repr(record.exc_info[1])


def _assert_clean(
    caplog: pytest.LogCaptureFixture, errors: list[BaseException], *objects: object
) -> None:
    records = [r for r in caplog.records if r.name.startswith("bitrix_openlines")]
    assert records, "expected the SDK to log something"
    for text in _log_texts(records):
        assert _leaks(text) == [], text
    for error in errors:
        assert _leaks(str(error)) == [], str(error)
        assert _leaks(repr(error)) == [], repr(error)
        for attribute in ("excerpt", "new_address", "description"):
            assert _leaks(str(getattr(error, attribute, ""))) == []
        if isinstance(error, OpenLinesError):
            assert _leaks(repr(error.__dict__)) == []
    for item in objects:
        assert _leaks(repr(item)) == [], repr(item)
        assert _leaks(str(item)) == [], str(item)


def _hooks(events: list[Any]) -> Hooks:
    return Hooks(on_request=events.append, on_retry=events.append, on_refresh=events.append)


# An error page that quotes the request path: for a webhook, its code.
def _not_found_page(path: str) -> str:
    return f"<html><body><h1>404</h1><p>No route for POST {path}</p></body></html>"


async def _capture(coro: Any, errors: list[BaseException]) -> Any:
    try:
        return await coro
    except OpenLinesError as error:
        errors.append(error)
        return None


async def test_webhook_paths_leak_nothing(
    docs_examples: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="bitrix_openlines")
    url = webhook_url(DIALOG_GET)
    path = url.removeprefix("https://portal.bitrix24.com")
    errors: list[BaseException] = []
    events: list[Any] = []
    with aioresponses() as mocked:
        mocked.post(url, payload=dialog_example(docs_examples))  # success
        mocked.post(url, status=400, payload=error_body("ACCESS_ERROR"))  # API error
        mocked.post(url, exception=aiohttp.ClientOSError(104, f"Connection reset: POST {url}"))
        mocked.post(url, exception=aiohttp.ClientConnectionError(f"Cannot connect to {url}"))
        mocked.post(url, status=500, payload=error_body("INTERNAL_SERVER_ERROR"))  # retried
        mocked.post(url, status=404, body=_not_found_page(path), content_type="text/html")
        mocked.post(url, exception=TimeoutError(f"timed out on {url}"))
        mocked.post(
            url,
            status=302,
            headers={"Location": f"https://new.bitrix24.com/rest/1/{WEBHOOK_CODE}/x.json"},
        )
        async with make_client(
            retry=RetryPolicy.no_wait(max_attempts=2), hooks=_hooks(events)
        ) as client:
            await _capture(client.get_dialog(chat_id=13), errors)
            await _capture(client.get_dialog(chat_id=13), errors)
            await _capture(client.get_dialog(chat_id=13), errors)  # reset, then refused
            await _capture(client.get_dialog(chat_id=13), errors)  # 500, then the 404 page
            await _capture(client.call_raw(DIALOG_GET, {"CHAT_ID": 13}, idempotent=False), errors)
            await _capture(client.call_raw(DIALOG_GET, {"CHAT_ID": 13}), errors)  # 302
            # No route at all: aioresponses refuses with the full URL in its message.
            await _capture(client.call_raw("imopenlines.session.start", {"CHAT_ID": 1}), errors)
            credentials = await client.auth.credentials()
            _assert_clean(caplog, errors, client, client.auth, credentials, *events)

    kinds = [type(e) for e in errors]
    assert kinds == [
        AccessError,
        TransportError,
        DecodeError,
        RequestTimeoutError,
        PortalMovedError,
        TransportError,
    ]
    # The transport's texts name the failure, never the URL (whose path holds the code).
    assert all("/rest/" not in str(e) for e in errors if isinstance(e, TransportError))
    decode = errors[2]
    assert isinstance(decode, DecodeError)
    assert "No route for POST /rest/1/***/imopenlines.dialog.get.json" in decode.excerpt
    assert events, "hooks saw the requests"


async def test_oauth_paths_leak_nothing(
    docs_examples: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="bitrix_openlines")
    refresh_body = load_example(docs_examples, "oauth__token_refresh__200.json")
    dialog_body = dialog_example(docs_examples)

    def portal(url: Any, **kwargs: Any) -> CallbackResult:
        if body_of(kwargs)["auth"] == NEW_ACCESS:
            return CallbackResult(payload=dialog_body)
        return CallbackResult(status=401, payload=error_body("expired_token"))

    def store(tokens: OAuthTokens) -> None:
        # A storage error that quotes what it failed to store.
        raise RuntimeError(f"cannot store {tokens.access_token} / {tokens.refresh_token}")

    errors: list[BaseException] = []
    events: list[Any] = []
    auth = oauth_auth(on_refresh=store)
    with aioresponses() as mocked:
        mocked.post(oauth_url(DIALOG_GET), callback=portal, repeat=True)
        # A connection error quoting the token URL with its query string.
        mocked.get(TOKEN_URL_RE, exception=aiohttp.ClientOSError(104, f"reset: {TOKEN_QUERY}"))
        # An HTML error page echoing the query string.
        mocked.get(TOKEN_URL_RE, status=400, body=f"<html>Bad request {TOKEN_QUERY}</html>")
        mocked.get(TOKEN_URL_RE, payload=refresh_body)
        async with make_client(auth, retry=RetryPolicy.never(), hooks=_hooks(events)) as client:
            await _capture(client.get_dialog(chat_id=13), errors)  # refresh: connection reset
            await _capture(client.get_dialog(chat_id=13), errors)  # refresh: HTML page
            dialog = await client.get_dialog(chat_id=13)  # refresh: ok, on_refresh raises
            assert dialog.id == 1777
            assert auth.tokens.access_token == NEW_ACCESS
            credentials = await auth.credentials()
            _assert_clean(caplog, errors, client, auth, auth.tokens, credentials, *events)

    assert [type(e) for e in errors] == [TransportError, DecodeError]
    assert any("on_refresh failed" in r.getMessage() for r in caplog.records)


async def test_failed_refresh_leaks_nothing(
    docs_examples: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="bitrix_openlines")
    errors: list[BaseException] = []
    events: list[Any] = []
    auth = oauth_auth()
    with aioresponses() as mocked:
        mocked.post(oauth_url(DIALOG_GET), status=401, payload=error_body("expired_token"))
        mocked.get(
            TOKEN_URL_RE,
            status=400,
            payload={"error": "invalid_grant", "error_description": "Invalid refresh token"},
        )
        async with make_client(auth, hooks=_hooks(events)) as client:
            await _capture(client.get_dialog(chat_id=13), errors)
            _assert_clean(caplog, errors, client, auth, auth.tokens, *events)
    assert [type(e) for e in errors] == [AuthError]


async def test_a_secret_at_the_excerpts_edge_is_not_half_shown() -> None:
    url = webhook_url(DIALOG_GET)
    for offset in range(100, 125):
        page = "x" * offset + WEBHOOK_CODE + "y" * 300
        with aioresponses() as mocked:
            mocked.post(url, status=200, body=page, content_type="text/html")
            async with make_client(retry=RetryPolicy.never()) as client:
                with pytest.raises(DecodeError) as caught:
                    await client.get_dialog(chat_id=13)
        shown = caught.value.excerpt.rstrip(".").lstrip("x")
        assert not (shown and WEBHOOK_CODE.startswith(shown)), (offset, shown)
        assert WEBHOOK_CODE[:6] not in str(caught.value)


def test_credentials_repr_hides_url_code_and_token() -> None:
    credentials = Credentials(base=WEBHOOK, token=OLD_ACCESS)
    assert _leaks(repr(credentials)) == []
    assert "portal.bitrix24.com" in repr(credentials)


def test_client_repr_hides_secrets() -> None:
    assert _leaks(repr(OpenLinesClient(webhook_auth()))) == []
    assert _leaks(repr(OpenLinesClient(oauth_auth()))) == []
    assert OAUTH_ENDPOINT.rstrip("/").removesuffix("/rest") in repr(OpenLinesClient(oauth_auth()))


@pytest.mark.parametrize(
    ("text", "secrets", "expected"),
    [
        ("a SECRET b", ["SECRET"], f"a {MASK} b"),
        ("SECRETSECRET", ["SECRET"], MASK * 2),
        ("token abcdef and abcd", ["abcd", "abcdef"], f"token {MASK} and {MASK}"),
        ("short ab", ["ab"], "short ab"),  # too short to be a secret
        ("nothing", [""], "nothing"),
        ("x", [], "x"),
    ],
)
def test_redact(text: str, secrets: list[str], expected: str) -> None:
    assert redact(text, secrets) == expected


def test_mask() -> None:
    assert mask("anything") == MASK
    assert mask(None) == "None"
