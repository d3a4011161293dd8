"""Credentials: webhook URL checks, OAuth tokens, and the single-flight refresh."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from _unit_helpers import (
    CLIENT_ID,
    CLIENT_SECRET,
    DIALOG_GET,
    NEW_ACCESS,
    NEW_REFRESH,
    OAUTH_ENDPOINT,
    OLD_ACCESS,
    OLD_REFRESH,
    PORTAL,
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
    old_tokens,
    recorded,
    recorded_queries,
    webhook_url,
)
from aioresponses import CallbackResult, aioresponses

from bitrix_openlines import OAuthAuth, OAuthTokens, RetryPolicy, WebhookAuth
from bitrix_openlines.auth import DEFAULT_TOKEN_URL
from bitrix_openlines.errors import (
    AuthError,
    DecodeError,
    ServerError,
    TokenExpiredError,
    TransportError,
)

EXPIRED = error_body("expired_token", "The access token provided has expired")

# -- WebhookAuth -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "portal", "base"),
    [
        (WEBHOOK, PORTAL, WEBHOOK),
        (f"{PORTAL}/rest/1/{WEBHOOK_CODE}", PORTAL, WEBHOOK),
        (f"  {WEBHOOK}  ", PORTAL, WEBHOOK),
        (
            f"https://portal.bitrix24.com:8443/rest/7/{WEBHOOK_CODE}/",
            "https://portal.bitrix24.com:8443",
            f"https://portal.bitrix24.com:8443/rest/7/{WEBHOOK_CODE}/",
        ),
        (
            f"http://127.0.0.1:8080/rest/1/{WEBHOOK_CODE}/",
            "http://127.0.0.1:8080",
            f"http://127.0.0.1:8080/rest/1/{WEBHOOK_CODE}/",
        ),
        (
            f"http://localhost/rest/1/{WEBHOOK_CODE}/",
            "http://localhost",
            f"http://localhost/rest/1/{WEBHOOK_CODE}/",
        ),
        (
            f"http://[::1]:9000/rest/1/{WEBHOOK_CODE}/",
            "http://[::1]:9000",
            f"http://[::1]:9000/rest/1/{WEBHOOK_CODE}/",
        ),
        (
            f"http://portal.localhost/rest/1/{WEBHOOK_CODE}/",
            "http://portal.localhost",
            f"http://portal.localhost/rest/1/{WEBHOOK_CODE}/",
        ),
    ],
)
async def test_webhook_accepts(url: str, portal: str, base: str) -> None:
    auth = WebhookAuth(url)
    assert auth.portal == portal
    credentials = await auth.credentials()
    assert credentials.url(DIALOG_GET) == f"{base}{DIALOG_GET}.json"
    assert credentials.token is None
    assert WEBHOOK_CODE not in repr(credentials)
    assert auth.redactor.secrets == (WEBHOOK_CODE,)


def test_webhook_user_id() -> None:
    assert WebhookAuth(f"{PORTAL}/rest/42/{WEBHOOK_CODE}/").user_id == 42


def test_webhook_http_public_host_refused_unless_allowed() -> None:
    url = f"http://portal.bitrix24.com/rest/1/{WEBHOOK_CODE}/"
    with pytest.raises(ValueError, match="https://") as caught:
        WebhookAuth(url)
    assert "allow_http" in str(caught.value)
    assert WebhookAuth(url, allow_http=True).portal == "http://portal.bitrix24.com"


@pytest.mark.parametrize(
    ("url", "text"),
    [
        (f"http://portal.bitrix24.com/rest/1/{WEBHOOK_CODE}/", "https"),
        (f"ftp://portal.bitrix24.com/rest/1/{WEBHOOK_CODE}/", "https"),
        (f"portal.bitrix24.com/rest/1/{WEBHOOK_CODE}/", "full webhook URL"),
        (f"/rest/1/{WEBHOOK_CODE}/", "full webhook URL"),
        (f"{PORTAL}/1/{WEBHOOK_CODE}/", "/rest/"),
        (f"{PORTAL}/api/1/{WEBHOOK_CODE}/", "/rest/"),
        (f"{PORTAL}/rest/{WEBHOOK_CODE}/", "/rest/"),
        (f"{PORTAL}/rest/admin/{WEBHOOK_CODE}/", "numeric user id"),
        (f"{PORTAL}/rest/1/{WEBHOOK_CODE}/profile.json", "method name"),
        (f"{PORTAL}/rest/1/{WEBHOOK_CODE}/imopenlines.dialog.get", "method name"),
        (f"{PORTAL}/rest/1/{WEBHOOK_CODE}/?CHAT_ID=13", "query string"),
        (f"{PORTAL}/rest/1/{WEBHOOK_CODE}/#top", "fragment"),
        (f"{PORTAL}/rest/1/{WEBHOOK_CODE}!x/", "letters/digits"),
        ("", "full webhook URL"),
        # Not a network error to retry later: refused up front, the code never quoted.
        (f"{PORTAL}:99999/rest/1/{WEBHOOK_CODE}/", "url has an invalid port"),
        (f"{PORTAL}:65536/rest/1/{WEBHOOK_CODE}/", "url has an invalid port"),
        (f"{PORTAL}:0/rest/1/{WEBHOOK_CODE}/", "url has an invalid port"),
        (f"{PORTAL}:https/rest/1/{WEBHOOK_CODE}/", "url has an invalid port"),
        (f"https://[portal.bitrix24.com/rest/1/{WEBHOOK_CODE}/", "url is not a valid URL"),
        (f"https://[::1:99999/rest/1/{WEBHOOK_CODE}/", "url is not a valid URL"),
    ],
)
def test_webhook_refuses_and_hides_the_code(url: str, text: str) -> None:
    with pytest.raises(ValueError) as caught:
        WebhookAuth(url)
    assert text in str(caught.value)
    assert "url" in str(caught.value)
    assert WEBHOOK_CODE not in str(caught.value)
    assert WEBHOOK_CODE not in repr(caught.value)


@pytest.mark.parametrize("url", [None, 5, b"https://portal/rest/1/code/"])
def test_webhook_url_must_be_a_string(url: Any) -> None:
    with pytest.raises(TypeError, match="url"):
        WebhookAuth(url)


def test_webhook_repr_hides_the_code() -> None:
    auth = WebhookAuth(WEBHOOK)
    assert WEBHOOK_CODE not in repr(auth)
    assert WEBHOOK_CODE not in str(auth)
    assert repr(auth) == "WebhookAuth('https://portal.bitrix24.com/rest/1/***/')"


# -- OAuthTokens -------------------------------------------------------------------------


def test_tokens_repr_hides_tokens() -> None:
    tokens = old_tokens()
    for text in (repr(tokens), str(tokens)):
        assert OLD_ACCESS not in text
        assert OLD_REFRESH not in text
        assert OAUTH_ENDPOINT in text


def test_tokens_from_authorization_code_example(docs_examples: Path) -> None:
    body = load_example(docs_examples, "oauth__token_authorization_code__200.json")
    tokens = OAuthTokens.from_response(body, now=1_000_000.0)
    assert tokens.access_token == "s1morf609228iwyjjpvfv6wsvuja4p8u"
    assert tokens.refresh_token == "4f9k4jpmg13usmybzuqknt2v9fh0q6rl"
    assert tokens.client_endpoint == "https://portal.bitrix24.com/rest/"
    assert tokens.expires_at == 1_000_000.0 + 3600  # expires_in only
    assert tokens.member_id == "a223c6b3710f85df22e9377d6c4f7553"
    assert tokens.scope == "crm,entity,im,task"
    assert tokens.server_endpoint == "https://oauth.bitrix.info/rest/"
    assert tokens.status == "F"
    assert tokens.user_id is None


def test_tokens_from_refresh_example(docs_examples: Path) -> None:
    body = load_example(docs_examples, "oauth__token_refresh__200.json")
    tokens = OAuthTokens.from_response(body, now=1_000_000.0)
    assert tokens.access_token == NEW_ACCESS
    assert tokens.refresh_token == NEW_REFRESH
    assert tokens.expires_at == 1780319382.0  # "expires" wins over "expires_in"
    assert tokens.user_id == 67


def test_tokens_from_response_without_expiry() -> None:
    tokens = OAuthTokens.from_response(
        {"access_token": "a" * 8, "refresh_token": "r" * 8, "client_endpoint": OAUTH_ENDPOINT}
    )
    assert tokens.expires_at is None
    assert tokens.user_id is None


_TOKENS = {"access_token": "a" * 8, "refresh_token": "r" * 8, "client_endpoint": OAUTH_ENDPOINT}


@pytest.mark.parametrize(
    ("extra", "expires_at", "user_id"),
    [
        ({"expires_in": "3600", "user_id": "67"}, 1_003_600.0, 67),
        ({"expires_in": 3600, "user_id": 67}, 1_003_600.0, 67),
        # Digits that are not ASCII ("²", Arabic-Indic): not a number, as absent.
        ({"expires_in": "\u00b2", "user_id": "\u0663"}, None, None),
        ({"expires": "\u0661\u0662", "expires_in": "60"}, 1_000_060.0, None),
        # Not whole numbers, negative, booleans, objects: as absent.
        ({"expires_in": "36.5", "user_id": "-1"}, None, None),
        ({"expires_in": True, "user_id": False}, None, None),
        ({"expires_in": [3600], "user_id": {"id": 1}}, None, None),
        ({"expires": 3600.0, "expires_in": "10"}, 1_000_010.0, None),
        # The largest 64-bit number still reads.
        ({"expires": str(2**63 - 1)}, float(2**63 - 1), None),
    ],
)
def test_tokens_from_response_reads_only_ascii_whole_numbers(
    extra: dict[str, Any], expires_at: float | None, user_id: int | None
) -> None:
    tokens = OAuthTokens.from_response({**_TOKENS, **extra}, now=1_000_000.0)
    assert tokens.expires_at == expires_at
    assert tokens.user_id == user_id


@pytest.mark.parametrize("key", ["expires", "expires_in", "user_id"])
def test_tokens_from_response_refuses_numbers_past_64_bits(key: str) -> None:
    value = "9" * 20
    with pytest.raises(ValueError, match=f"{key} is out of range") as caught:
        OAuthTokens.from_response({**_TOKENS, key: value}, now=1_000_000.0)
    assert value not in str(caught.value)


@pytest.mark.parametrize("missing", ["access_token", "refresh_token", "client_endpoint"])
def test_tokens_from_response_names_the_missing_key(docs_examples: Path, missing: str) -> None:
    body = load_example(docs_examples, "oauth__token_refresh__200.json")
    body[missing] = ""
    with pytest.raises(ValueError, match=missing) as caught:
        OAuthTokens.from_response(body)
    assert NEW_ACCESS not in str(caught.value)
    assert NEW_REFRESH not in str(caught.value)


@pytest.mark.parametrize(
    ("kwargs", "text"),
    [
        ({"access_token": ""}, "access_token"),
        ({"refresh_token": ""}, "refresh_token"),
        ({"client_endpoint": ""}, "client_endpoint"),
        ({"client_endpoint": "portal.bitrix24.com/rest/"}, "client_endpoint"),
        (
            {"client_endpoint": "https://portal.bitrix24.com:70000/rest/"},
            "OAuthTokens.client_endpoint has an invalid port",
        ),
        ({"client_endpoint": "https://[portal/rest/"}, "OAuthTokens.client_endpoint is not"),
    ],
)
def test_tokens_validation(kwargs: dict[str, Any], text: str) -> None:
    values: dict[str, Any] = {
        "access_token": OLD_ACCESS,
        "refresh_token": OLD_REFRESH,
        "client_endpoint": OAUTH_ENDPOINT,
        **kwargs,
    }
    with pytest.raises(ValueError, match=text) as caught:
        OAuthTokens(**values)
    assert OLD_ACCESS not in str(caught.value)
    assert OLD_REFRESH not in str(caught.value)


# -- OAuthAuth ---------------------------------------------------------------------------


async def test_oauth_credentials_carry_the_token() -> None:
    auth = oauth_auth()
    credentials = await auth.credentials()
    assert credentials.url(DIALOG_GET) == oauth_url(DIALOG_GET)
    assert credentials.token == OLD_ACCESS
    assert OLD_ACCESS not in repr(credentials)
    assert auth.portal == PORTAL


async def test_oauth_endpoint_without_trailing_slash() -> None:
    tokens = OAuthTokens(
        access_token=OLD_ACCESS, refresh_token=OLD_REFRESH, client_endpoint=f"{PORTAL}/rest"
    )
    credentials = await oauth_auth(tokens=tokens).credentials()
    assert credentials.url(DIALOG_GET) == oauth_url(DIALOG_GET)


def test_oauth_repr_hides_secrets() -> None:
    auth = oauth_auth()
    text = repr(auth)
    assert CLIENT_SECRET not in text
    assert OLD_ACCESS not in text
    assert OLD_REFRESH not in text
    assert CLIENT_ID in text
    assert DEFAULT_TOKEN_URL == TOKEN_URL


@pytest.mark.parametrize(
    ("kwargs", "error", "text"),
    [
        ({"client_id": ""}, ValueError, "client_id"),
        ({"client_secret": ""}, ValueError, "client_secret"),
        ({"tokens": {"access_token": "x"}}, TypeError, "tokens"),
        ({"on_refresh": "store"}, TypeError, "on_refresh"),
        ({"token_url": "oauth.bitrix.info/oauth/token/"}, ValueError, "token_url"),
        ({"token_url": "http://oauth.bitrix.info/oauth/token/"}, ValueError, "token_url"),
        (
            {"token_url": "https://oauth.bitrix.info:99999/oauth/token/"},
            ValueError,
            "token_url has an invalid port",
        ),
        ({"token_url": "https://[oauth/oauth/token/"}, ValueError, "token_url is not a valid"),
    ],
)
def test_oauth_validation(kwargs: dict[str, Any], error: type[Exception], text: str) -> None:
    values: dict[str, Any] = {
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "tokens": old_tokens(),
        **kwargs,
    }
    with pytest.raises(error, match=text) as caught:
        OAuthAuth(**values)
    assert CLIENT_SECRET not in str(caught.value)
    assert CLIENT_SECRET not in repr(caught.value)


def test_oauth_http_allowed_for_loopback_and_with_allow_http() -> None:
    local = OAuthTokens(
        access_token=OLD_ACCESS,
        refresh_token=OLD_REFRESH,
        client_endpoint="http://127.0.0.1:8080/rest/",
    )
    auth = OAuthAuth(
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        tokens=local,
        token_url="http://127.0.0.1:8080/oauth/token/",
    )
    assert auth.portal == "http://127.0.0.1:8080"
    public = OAuthAuth(
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        tokens=old_tokens(),
        token_url="http://oauth.example.test/oauth/token/",
        allow_http=True,
    )
    assert public.portal == PORTAL


# -- the refresh through the client ------------------------------------------------------


def _portal_routing(
    dialog_body: dict[str, Any],
    *,
    reject_old_with: dict[str, Any] = EXPIRED,
    expected_old: int = 0,
) -> tuple[Callable[..., CallbackResult], asyncio.Event, list[str]]:
    """A portal that refuses the old access token and serves the new one.

    Returns the callback, an event set once ``expected_old`` requests with the old token
    have arrived, and the list of tokens seen.
    """
    seen: list[str] = []
    all_stale = asyncio.Event()
    if expected_old == 0:
        all_stale.set()

    def portal(url: Any, **kwargs: Any) -> CallbackResult:
        token = body_of(kwargs)["auth"]
        seen.append(token)
        if token == OLD_ACCESS:
            if seen.count(OLD_ACCESS) == expected_old:
                all_stale.set()
            return CallbackResult(status=401, payload=reject_old_with)
        if token == NEW_ACCESS:
            return CallbackResult(status=200, payload=dialog_body)
        return CallbackResult(status=401, payload=error_body("invalid_token"))

    return portal, all_stale, seen


def _token_server(
    gate: asyncio.Event, *, status: int = 200, payload: dict[str, Any]
) -> Callable[..., Awaitable[CallbackResult]]:
    async def token_server(url: Any, **kwargs: Any) -> CallbackResult:
        # Answer only once every stale request is waiting: proves they share one refresh.
        await gate.wait()
        return CallbackResult(status=status, payload=payload)

    return token_server


@pytest.mark.parametrize("callback_kind", ["sync", "async"])
async def test_single_flight_refresh_for_200_concurrent_calls(
    docs_examples: Path, callback_kind: str
) -> None:
    calls = 200
    refresh_body = load_example(docs_examples, "oauth__token_refresh__200.json")
    portal, all_stale, seen = _portal_routing(dialog_example(docs_examples), expected_old=calls)
    stored: list[OAuthTokens] = []

    def store_sync(tokens: OAuthTokens) -> None:
        stored.append(tokens)

    async def store_async(tokens: OAuthTokens) -> None:
        await asyncio.sleep(0)
        stored.append(tokens)

    auth = oauth_auth(on_refresh=store_sync if callback_kind == "sync" else store_async)
    with aioresponses() as mocked:
        mocked.post(oauth_url(DIALOG_GET), callback=portal, repeat=True)
        mocked.get(TOKEN_URL_RE, callback=_token_server(all_stale, payload=refresh_body))
        async with make_client(auth) as client:
            dialogs = await asyncio.wait_for(
                asyncio.gather(*(client.get_dialog(chat_id=i + 1) for i in range(calls))),
                timeout=20,
            )
        token_requests = recorded_queries(mocked, "GET", TOKEN_URL)
        assert recorded(mocked, "POST", TOKEN_URL) == []

    assert len(token_requests) == 1
    assert token_requests[0] == {
        "grant_type": "refresh_token",
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "refresh_token": OLD_REFRESH,
    }
    assert len(dialogs) == calls
    assert all(dialog.id == 1777 for dialog in dialogs)
    assert seen.count(OLD_ACCESS) == calls
    assert seen.count(NEW_ACCESS) == calls
    assert len(stored) == 1
    assert stored[0].access_token == NEW_ACCESS
    assert stored[0].refresh_token == NEW_REFRESH
    assert auth.tokens == stored[0]
    assert auth.refresh_count == 1


async def test_replayed_call_carries_the_new_token_and_same_params(docs_examples: Path) -> None:
    portal, _, _ = _portal_routing(dialog_example(docs_examples))
    refresh_body = load_example(docs_examples, "oauth__token_refresh__200.json")
    with aioresponses() as mocked:
        mocked.post(oauth_url(DIALOG_GET), callback=portal, repeat=True)
        mocked.get(TOKEN_URL_RE, payload=refresh_body)
        async with make_client(oauth_auth()) as client:
            await client.get_dialog(user_code="livechat|1|1373|211")
        bodies = [body_of(call.kwargs) for call in recorded(mocked, "POST", OAUTH_ENDPOINT)]
    assert bodies == [
        {"USER_CODE": "livechat|1|1373|211", "auth": OLD_ACCESS},
        {"USER_CODE": "livechat|1|1373|211", "auth": NEW_ACCESS},
    ]


async def test_failed_refresh_raises_the_same_error_in_every_waiter(docs_examples: Path) -> None:
    waiters = 50
    portal, all_stale, _ = _portal_routing(dialog_example(docs_examples), expected_old=waiters)
    invalid_grant = error_body("invalid_grant", "Invalid grant")
    with aioresponses() as mocked:
        mocked.post(oauth_url(DIALOG_GET), callback=portal, repeat=True)
        mocked.get(
            TOKEN_URL_RE,
            callback=_token_server(all_stale, status=400, payload=invalid_grant),
            repeat=True,
        )
        async with make_client(oauth_auth()) as client:
            outcomes = await asyncio.wait_for(
                asyncio.gather(
                    *(client.get_dialog(chat_id=i + 1) for i in range(waiters)),
                    return_exceptions=True,
                ),
                timeout=10,
            )
            # The refresh token is spent: a later call does not try it again.
            with pytest.raises(AuthError) as later:
                await asyncio.wait_for(client.get_dialog(chat_id=1), timeout=5)
        token_requests = recorded(mocked, "GET", TOKEN_URL)

    assert len(token_requests) == 1
    first = outcomes[0]
    assert isinstance(first, AuthError)
    assert not isinstance(first, TokenExpiredError)
    assert all(outcome is first for outcome in outcomes)
    assert later.value is first
    assert first.code == "invalid_grant"
    assert first.status == 400
    assert first.method == "oauth.token"


async def test_refresh_after_a_connection_error_may_be_tried_again(docs_examples: Path) -> None:
    portal, _, _ = _portal_routing(dialog_example(docs_examples))
    refresh_body = load_example(docs_examples, "oauth__token_refresh__200.json")
    auth = oauth_auth()
    with aioresponses() as mocked:
        mocked.post(oauth_url(DIALOG_GET), callback=portal, repeat=True)
        mocked.get(TOKEN_URL_RE, exception=aiohttp.ClientConnectionError("connection reset"))
        mocked.get(TOKEN_URL_RE, payload=refresh_body)
        async with make_client(auth, retry=RetryPolicy.never()) as client:
            with pytest.raises(TransportError):
                await client.get_dialog(chat_id=13)
            assert auth.tokens.access_token == OLD_ACCESS
            dialog = await client.get_dialog(chat_id=13)
        assert len(recorded(mocked, "GET", TOKEN_URL)) == 2
    assert dialog.id == 1777
    assert auth.tokens.access_token == NEW_ACCESS


async def test_refresh_connection_error_is_retried_within_one_call(docs_examples: Path) -> None:
    portal, _, _ = _portal_routing(dialog_example(docs_examples))
    refresh_body = load_example(docs_examples, "oauth__token_refresh__200.json")
    with aioresponses() as mocked:
        mocked.post(oauth_url(DIALOG_GET), callback=portal, repeat=True)
        mocked.get(TOKEN_URL_RE, exception=aiohttp.ClientConnectionError("connection reset"))
        mocked.get(TOKEN_URL_RE, payload=refresh_body)
        async with make_client(oauth_auth()) as client:
            dialog = await client.get_dialog(chat_id=13)
        assert len(recorded(mocked, "GET", TOKEN_URL)) == 2
    assert dialog.id == 1777


async def test_refresh_answered_with_html_may_be_tried_again(docs_examples: Path) -> None:
    portal, _, _ = _portal_routing(dialog_example(docs_examples))
    refresh_body = load_example(docs_examples, "oauth__token_refresh__200.json")
    with aioresponses() as mocked:
        mocked.post(oauth_url(DIALOG_GET), callback=portal, repeat=True)
        mocked.get(TOKEN_URL_RE, status=502, body="<html>bad gateway</html>")
        mocked.get(TOKEN_URL_RE, payload=refresh_body)
        async with make_client(oauth_auth(), retry=RetryPolicy.never()) as client:
            with pytest.raises(DecodeError):
                await client.get_dialog(chat_id=13)
            assert (await client.get_dialog(chat_id=13)).id == 1777
        assert len(recorded(mocked, "GET", TOKEN_URL)) == 2


async def test_invalid_token_also_triggers_refresh(docs_examples: Path) -> None:
    portal, _, seen = _portal_routing(
        dialog_example(docs_examples), reject_old_with=error_body("invalid_token")
    )
    refresh_body = load_example(docs_examples, "oauth__token_refresh__200.json")
    auth = oauth_auth()
    with aioresponses() as mocked:
        mocked.post(oauth_url(DIALOG_GET), callback=portal, repeat=True)
        mocked.get(TOKEN_URL_RE, payload=refresh_body)
        async with make_client(auth) as client:
            assert (await client.get_dialog(chat_id=13)).id == 1777
        assert len(recorded(mocked, "GET", TOKEN_URL)) == 1
    assert seen == [OLD_ACCESS, NEW_ACCESS]
    assert auth.refresh_count == 1


async def test_upper_case_expired_token_triggers_refresh(docs_examples: Path) -> None:
    portal, _, seen = _portal_routing(
        dialog_example(docs_examples), reject_old_with=error_body("EXPIRED_TOKEN")
    )
    refresh_body = load_example(docs_examples, "oauth__token_refresh__200.json")
    with aioresponses() as mocked:
        mocked.post(oauth_url(DIALOG_GET), callback=portal, repeat=True)
        mocked.get(TOKEN_URL_RE, payload=refresh_body)
        async with make_client(oauth_auth()) as client:
            assert (await client.get_dialog(chat_id=13)).id == 1777
    assert seen == [OLD_ACCESS, NEW_ACCESS]


async def test_new_token_refused_too_raises_after_one_refresh(docs_examples: Path) -> None:
    refresh_body = load_example(docs_examples, "oauth__token_refresh__200.json")
    with aioresponses() as mocked:
        mocked.post(oauth_url(DIALOG_GET), status=401, payload=EXPIRED, repeat=True)
        mocked.get(TOKEN_URL_RE, payload=refresh_body, repeat=True)
        async with make_client(oauth_auth()) as client:
            with pytest.raises(TokenExpiredError):
                await asyncio.wait_for(client.get_dialog(chat_id=13), timeout=5)
        assert len(recorded(mocked, "GET", TOKEN_URL)) == 1
        assert len(recorded(mocked, "POST", OAUTH_ENDPOINT)) == 2


async def test_webhook_expired_token_raises_without_refresh() -> None:
    with aioresponses() as mocked:
        mocked.post(webhook_url(DIALOG_GET), status=401, payload=EXPIRED, repeat=True)
        async with make_client() as client:
            with pytest.raises(TokenExpiredError) as caught:
                await client.get_dialog(chat_id=13)
        assert len(recorded(mocked, "POST", webhook_url(DIALOG_GET))) == 1
        assert recorded(mocked, "GET") == []
    assert caught.value.method == DIALOG_GET
    assert caught.value.status == 401


@pytest.mark.parametrize(
    ("status", "payload", "code"),
    [
        (200, {"error": "wrong_client"}, "wrong_client"),
        (200, {"error": "wrong_client", "error_description": "Wrong client"}, "wrong_client"),
        (
            400,
            {"error": "invalid_client", "error_description": "Invalid client"},
            "invalid_client",
        ),
        (400, {"error": "invalid_request", "error_description": "No refresh_token"}, None),
        (401, {"error": "NOT_INSTALLED", "error_description": "Application not installed"}, None),
        (403, {"error": "INVALID_SCOPE"}, None),
    ],
)
async def test_oauth_server_errors_are_auth_errors(
    docs_examples: Path, status: int, payload: dict[str, Any], code: str | None
) -> None:
    portal, _, _ = _portal_routing(dialog_example(docs_examples))
    with aioresponses() as mocked:
        mocked.post(oauth_url(DIALOG_GET), callback=portal, repeat=True)
        mocked.get(TOKEN_URL_RE, status=status, payload=payload, repeat=True)
        async with make_client(oauth_auth()) as client:
            with pytest.raises(AuthError) as caught:
                await asyncio.wait_for(client.get_dialog(chat_id=13), timeout=5)
        assert len(recorded(mocked, "GET", TOKEN_URL)) == 1
    error = caught.value
    assert not isinstance(error, TokenExpiredError)
    assert error.code == (code or payload["error"])
    assert error.status == status
    assert error.method == "oauth.token"


async def test_oauth_server_5xx_leaves_the_refresh_token_usable(docs_examples: Path) -> None:
    portal, _, _ = _portal_routing(dialog_example(docs_examples))
    refresh_body = load_example(docs_examples, "oauth__token_refresh__200.json")
    with aioresponses() as mocked:
        mocked.post(oauth_url(DIALOG_GET), callback=portal, repeat=True)
        mocked.get(TOKEN_URL_RE, status=503, payload=error_body("INTERNAL_SERVER_ERROR"))
        mocked.get(TOKEN_URL_RE, payload=refresh_body)
        async with make_client(oauth_auth(), retry=RetryPolicy.never()) as client:
            with pytest.raises(ServerError) as caught:
                await client.get_dialog(chat_id=13)
            assert (await client.get_dialog(chat_id=13)).id == 1777
        assert len(recorded(mocked, "GET", TOKEN_URL)) == 2
    assert caught.value.status == 503
    assert caught.value.method == "oauth.token"


async def test_payment_required_example(docs_examples: Path) -> None:
    portal, _, _ = _portal_routing(dialog_example(docs_examples))
    with aioresponses() as mocked:
        mocked.post(oauth_url(DIALOG_GET), callback=portal, repeat=True)
        mocked.get(
            TOKEN_URL_RE,
            status=401,
            payload=load_example(docs_examples, "oauth__PAYMENT_REQUIRED.json"),
        )
        async with make_client(oauth_auth()) as client:
            with pytest.raises(AuthError) as caught:
                await client.get_dialog(chat_id=13)
    assert caught.value.code == "PAYMENT_REQUIRED"
    assert caught.value.description == "Payment required"


async def test_token_answer_without_tokens_is_a_decode_error(docs_examples: Path) -> None:
    portal, _, _ = _portal_routing(dialog_example(docs_examples))
    with aioresponses() as mocked:
        mocked.post(oauth_url(DIALOG_GET), callback=portal, repeat=True)
        mocked.get(TOKEN_URL_RE, payload={"access_token": NEW_ACCESS}, repeat=True)
        async with make_client(oauth_auth(), retry=RetryPolicy.never()) as client:
            with pytest.raises(DecodeError, match="refresh_token") as caught:
                await client.get_dialog(chat_id=13)
    assert NEW_ACCESS not in str(caught.value)
    assert caught.value.method == "oauth.token"


async def test_valid_token_is_not_refreshed(docs_examples: Path) -> None:
    with aioresponses() as mocked:
        mocked.post(oauth_url(DIALOG_GET), payload=dialog_example(docs_examples))
        auth = oauth_auth()
        async with make_client(auth) as client:
            await client.get_dialog(chat_id=13)
        assert recorded(mocked, "GET") == []
    assert auth.refresh_count == 0


async def test_on_refresh_that_raises_does_not_lose_the_new_tokens(
    docs_examples: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def broken_store(tokens: OAuthTokens) -> None:
        raise RuntimeError("database is down")

    portal, _, _ = _portal_routing(dialog_example(docs_examples))
    refresh_body = load_example(docs_examples, "oauth__token_refresh__200.json")
    auth = oauth_auth(on_refresh=broken_store)
    caplog.set_level(logging.DEBUG, logger="bitrix_openlines")
    with aioresponses() as mocked:
        mocked.post(oauth_url(DIALOG_GET), callback=portal, repeat=True)
        mocked.get(TOKEN_URL_RE, payload=refresh_body)
        async with make_client(auth) as client:
            assert (await client.get_dialog(chat_id=13)).id == 1777
    assert auth.tokens.access_token == NEW_ACCESS
    failures = [r for r in caplog.records if "on_refresh failed" in r.getMessage()]
    assert len(failures) == 1
    assert failures[0].levelno == logging.ERROR
    assert "RuntimeError: database is down" in failures[0].getMessage()
    assert "Traceback" in failures[0].getMessage()


async def test_cancelled_waiter_does_not_cancel_the_refresh(docs_examples: Path) -> None:
    gate = asyncio.Event()
    portal, _, _ = _portal_routing(dialog_example(docs_examples))
    refresh_body = load_example(docs_examples, "oauth__token_refresh__200.json")
    auth = oauth_auth()
    with aioresponses() as mocked:
        mocked.post(oauth_url(DIALOG_GET), callback=portal, repeat=True)
        mocked.get(TOKEN_URL_RE, callback=_token_server(gate, payload=refresh_body))
        async with make_client(auth) as client:
            first = asyncio.ensure_future(client.get_dialog(chat_id=1))
            second = asyncio.ensure_future(client.get_dialog(chat_id=2))
            for _ in range(20):
                await asyncio.sleep(0)
            first.cancel()
            gate.set()
            dialog = await asyncio.wait_for(second, timeout=5)
            with pytest.raises(asyncio.CancelledError):
                await first
        assert len(recorded(mocked, "GET", TOKEN_URL)) == 1
    assert dialog.id == 1777
    assert auth.tokens.access_token == NEW_ACCESS


async def test_an_http_client_endpoint_of_a_portal_is_used_over_https() -> None:
    # Older portals answer http:// though they serve (and demand) HTTPS: the pair is kept
    # and used over https://, never refused (its refresh token may already be spent).
    tokens = OAuthTokens(
        access_token=OLD_ACCESS,
        refresh_token=OLD_REFRESH,
        client_endpoint="http://portal.bitrix24.com/rest/",
    )
    credentials = await oauth_auth(tokens=tokens).credentials()
    assert credentials.url(DIALOG_GET) == f"https://portal.bitrix24.com/rest/{DIALOG_GET}.json"
    plain = await oauth_auth(tokens=tokens, allow_http=True).credentials()
    assert plain.url(DIALOG_GET) == f"http://portal.bitrix24.com/rest/{DIALOG_GET}.json"
