"""Secrets reach no error text, repr, ``extra`` field, nor a variable an error tracker records.

Issue 15, items 3 to 5: every text from the network is redacted before it becomes an
error (single calls, batch ``result_error`` entries and structuring errors, the OAuth
token endpoint, ``exchange_code``, decode excerpts, the other keys of an error body); URL
validation names the parameter and never quotes the URL; and the frames of an error's
traceback (what Sentry records, repr by repr) hold no secret in plain text.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from _secret_frames import traceback_findings
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
    dialog_example,
    error_body,
    make_client,
    oauth_auth,
    oauth_url,
    old_tokens,
    webhook_url,
)
from aioresponses import aioresponses

from bitrix_openlines import OAuthAuth, OAuthTokens, RetryPolicy, WebhookAuth, exchange_code
from bitrix_openlines._convert import structure_result
from bitrix_openlines._redact import MASK, Redactor, Secret, SecretBody, SecretURL
from bitrix_openlines.auth import Auth, Credentials, token_url_of
from bitrix_openlines.cli import main
from bitrix_openlines.errors import (
    AccessError,
    ApiError,
    AuthError,
    DecodeError,
    OpenLinesError,
    PortalMovedError,
    RequestTimeoutError,
    ServerError,
    TransportError,
)

CODE = "c0de12345678"  # an authorization code
SECRETS = [WEBHOOK_CODE, OLD_ACCESS, OLD_REFRESH, NEW_ACCESS, NEW_REFRESH, CLIENT_SECRET, CODE]
PATH = f"/rest/1/{WEBHOOK_CODE}/{DIALOG_GET}.json"
# What a token server that echoes its parameters would quote.
REFRESH_QUERY = f"client_id={CLIENT_ID}&client_secret={CLIENT_SECRET}&refresh_token={OLD_REFRESH}"
EXCHANGE_QUERY = f"client_id={CLIENT_ID}&client_secret={CLIENT_SECRET}&code={CODE}"


def _leaks(text: str) -> list[str]:
    return [secret for secret in SECRETS if secret in text]


def _echo(what: str) -> dict[str, Any]:
    """The other keys of an error body that echoes ``what``: nested, with non-text values."""
    return {
        "argument": "CHAT_ID",
        "request": {"path": what, "attempt": 2, "ok": False, "none": None},
        "tried": [what, 1.5, {"again": what}],
        what: "a key that is a secret",
    }


def _assert_clean(error: BaseException, *, frames: bool = True) -> None:
    """No secret in the text, the repr, the fields, nor (``frames``) the traceback's variables."""
    assert isinstance(error, OpenLinesError)
    for text in (str(error), repr(error), repr(error.__dict__)):
        assert _leaks(text) == [], text
    if frames:
        assert traceback_findings(error, SECRETS) == []


async def _raised(coro: Any) -> OpenLinesError:
    try:
        await coro
    except OpenLinesError as error:
        return error
    raise AssertionError("expected an error")


# -- item 3: network texts are redacted --------------------------------------------------


async def test_a_5xx_echoing_the_path_gives_no_code_in_text_repr_or_extra() -> None:
    body = {
        "error": "INTERNAL_SERVER_ERROR",
        "error_description": f"failed at POST {PATH}",
        **_echo(PATH),
    }
    with aioresponses() as mocked:
        mocked.post(webhook_url(DIALOG_GET), status=500, payload=body, repeat=True)
        async with make_client(retry=RetryPolicy.never()) as client:
            error = await _raised(client.get_dialog(chat_id=13))
    assert isinstance(error, ServerError)
    _assert_clean(error)
    assert error.description == f"failed at POST /rest/1/{MASK}/{DIALOG_GET}.json"
    # The other keys are kept, their strings redacted, their other values as they were.
    assert error.extra == {
        "argument": "CHAT_ID",
        "request": {
            "path": f"/rest/1/{MASK}/{DIALOG_GET}.json",
            "attempt": 2,
            "ok": False,
            "none": None,
        },
        "tried": [
            f"/rest/1/{MASK}/{DIALOG_GET}.json",
            1.5,
            {"again": f"/rest/1/{MASK}/{DIALOG_GET}.json"},
        ],
        f"/rest/1/{MASK}/{DIALOG_GET}.json": "a key that is a secret",
    }


async def test_an_oauth_answer_echoing_the_token_is_redacted() -> None:
    body = error_body("ACCESS_DENIED", f"token {OLD_ACCESS} may not")
    body["auth"] = OLD_ACCESS
    with aioresponses() as mocked:
        mocked.post(oauth_url(DIALOG_GET), status=403, payload=body)
        async with make_client(oauth_auth(), retry=RetryPolicy.never()) as client:
            error = await _raised(client.get_dialog(chat_id=13))
    assert isinstance(error, AccessError)
    _assert_clean(error)
    assert error.extra == {"auth": MASK}


def test_extra_drops_what_is_too_deep_to_redact() -> None:
    from bitrix_openlines.wire import error_from_payload

    deep: Any = WEBHOOK_CODE
    for _ in range(10):
        deep = {"x": deep}
    error = error_from_payload(
        {"error": "X", "deep": deep, "shallow": {"x": WEBHOOK_CODE}},
        status=400,
        method="m",
        redact=Redactor([WEBHOOK_CODE]),
    )
    assert _leaks(repr(error.extra)) == []
    assert error.extra["shallow"] == {"x": MASK}
    assert WEBHOOK_CODE not in json.dumps(error.extra)


async def test_batch_result_errors_are_redacted() -> None:
    echo = {"error": "ACCESS_ERROR", "error_description": f"no access: {PATH}", **_echo(PATH)}
    answer = {"result": {"result": {}, "result_error": {"c0": echo, "c1": f"raw {PATH}"}}}
    with aioresponses() as mocked:
        mocked.post(webhook_url("batch"), payload=answer)
        async with make_client(retry=RetryPolicy.never()) as client:
            outcomes = await client.get_dialogs([{"chat_id": 1}, {"chat_id": 2}])
    errors = [outcome.error for outcome in outcomes]
    assert isinstance(errors[0], AccessError)
    assert isinstance(errors[1], ServerError)  # not an object: an unexpected answer
    for error in errors:
        assert error is not None
        _assert_clean(error)
    assert isinstance(errors[0], ApiError)
    assert errors[0].extra["request"]["path"] == f"/rest/1/{MASK}/{DIALOG_GET}.json"


async def test_a_result_that_does_not_fit_names_no_secret(docs_examples: Path) -> None:
    # A structuring error names the paths that did not fit: the answer's own keys.
    dialog = dialog_example(docs_examples)["result"]
    dialog["id"] = {WEBHOOK_CODE: "not an id"}
    answer = {"result": {"result": {"c0": dialog}}}
    with aioresponses() as mocked:
        mocked.post(webhook_url("batch"), payload=answer)
        mocked.post(webhook_url(DIALOG_GET), payload={"result": dialog})
        async with make_client(retry=RetryPolicy.never()) as client:
            (outcome,) = await client.get_dialogs([{"chat_id": 1}])
            single = await _raised(client.get_dialog(chat_id=1))
    for error in (outcome.error, single):
        assert isinstance(error, DecodeError)
        # Not the frames: they hold the result, the portal's data (here, made to echo).
        _assert_clean(error, frames=False)
        assert error.__cause__ is None  # the original quotes the answer's values


def test_structure_result_redacts_the_paths() -> None:
    # A key of letters is never quoted in a path: "$[<key>]".
    with pytest.raises(DecodeError) as unquoted:
        structure_result({WEBHOOK_CODE: "x"}, dict[str, int], "m")
    assert WEBHOOK_CODE not in str(unquoted.value)
    assert "$[<key>]" in str(unquoted.value)
    # A key of digits is (an id); were it a secret, the redactor hides it.
    numeric = "8675309123"
    with pytest.raises(DecodeError) as plain:
        structure_result({numeric: "x"}, dict[str, int], "m")
    assert numeric in str(plain.value)  # the path names the key...
    with pytest.raises(DecodeError) as redacted:
        structure_result({numeric: "x"}, dict[str, int], "m", Redactor([numeric]))
    assert numeric not in str(redacted.value)  # ...unless redacted
    assert MASK in str(redacted.value)


@pytest.mark.parametrize(
    ("status", "code", "kind"),
    [
        (400, "invalid_grant", AuthError),
        (200, "wrong_client", AuthError),  # an error with status 200 (PROTOCOL 3.2)
        (401, "invalid_client", AuthError),
        (403, "INSUFFICIENT_SCOPE", AuthError),  # an AccessError made an AuthError
        (500, "INTERNAL_SERVER_ERROR", ServerError),
    ],
)
async def test_token_endpoint_errors_echoing_the_request_are_redacted(
    status: int, code: str, kind: type[OpenLinesError]
) -> None:
    body = {
        "error": code,
        "error_description": f"bad request: {REFRESH_QUERY}",
        **_echo(CLIENT_SECRET),
        "refresh_token": OLD_REFRESH,
    }
    with aioresponses() as mocked:
        mocked.post(oauth_url(DIALOG_GET), status=401, payload=error_body("expired_token"))
        mocked.get(TOKEN_URL_RE, status=status, payload=body)
        async with make_client(oauth_auth(), retry=RetryPolicy.never()) as client:
            error = await _raised(client.get_dialog(chat_id=13))
    assert isinstance(error, kind)
    _assert_clean(error)
    assert isinstance(error, ApiError)
    assert error.extra["refresh_token"] == MASK
    assert error.extra["request"]["path"] == MASK


async def test_exchange_code_errors_echoing_the_request_are_redacted() -> None:
    body = {"error": "invalid_grant", "error_description": f"bad: {EXCHANGE_QUERY}", "code": CODE}
    with aioresponses() as mocked:
        mocked.get(TOKEN_URL_RE, status=400, payload=body)
        error = await _raised(
            exchange_code(CODE, client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
        )
    assert isinstance(error, AuthError)
    # Also: the frame of exchange_code keeps neither the code nor the client secret.
    _assert_clean(error)
    assert error.extra == {"code": MASK}


async def test_exchange_code_sends_the_secrets_in_the_query() -> None:
    with aioresponses() as mocked:
        mocked.get(TOKEN_URL_RE, status=200, payload={"error": "wrong_client"})
        with pytest.raises(AuthError):
            await exchange_code(CODE, client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
        ((_, url),) = mocked.requests
    assert str(url).startswith(TOKEN_URL)
    assert dict(url.query) == {
        "grant_type": "authorization_code",
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "code": CODE,
    }


@pytest.mark.parametrize(
    "body",
    [
        f'"not found: {PATH}"'.encode(),  # JSON, not an object
        f"<html>404 {PATH}</html>".encode(),  # not JSON
        json.dumps({"neither": PATH}).encode(),  # no result, no error
    ],
)
async def test_undecodable_answers_echoing_the_path_are_redacted(body: bytes) -> None:
    with aioresponses() as mocked:
        mocked.post(webhook_url(DIALOG_GET), status=200, body=body, repeat=True)
        async with make_client(retry=RetryPolicy.never()) as client:
            error = await _raised(client.get_dialog(chat_id=13))
    assert isinstance(error, DecodeError)
    _assert_clean(error)
    assert f"/rest/1/{MASK}/" in error.excerpt


# -- item 5, as an error tracker sees it: the traceback's variables -----------------------


def _failure(kind: str, echo: str) -> dict[str, Any]:
    """A failed answer whose texts echo ``echo``."""
    failures: dict[str, dict[str, Any]] = {
        "timeout": {"exception": TimeoutError(f"timed out on {echo}")},
        "reset": {"exception": aiohttp.ClientOSError(104, f"reset on {echo}")},
        "moved": {"status": 302, "headers": {"Location": f"https://new.bitrix24.com/{echo}"}},
        "5xx": {"status": 500, "payload": error_body("INTERNAL_SERVER_ERROR", echo)},
    }
    return failures[kind]


@pytest.mark.parametrize("auth_kind", ["webhook", "oauth"])
@pytest.mark.parametrize(
    ("failure", "kind"),
    [
        ("timeout", RequestTimeoutError),
        ("reset", TransportError),
        ("moved", PortalMovedError),
        ("5xx", ServerError),
    ],
)
async def test_failed_calls_leave_no_secret_in_the_traceback(
    auth_kind: str, failure: str, kind: type[OpenLinesError]
) -> None:
    if auth_kind == "webhook":
        auth: Auth = WebhookAuth(WEBHOOK)
        url, echo = webhook_url(DIALOG_GET), PATH
    else:
        auth, url, echo = oauth_auth(), oauth_url(DIALOG_GET), f"{DIALOG_GET}?auth={OLD_ACCESS}"
    with aioresponses() as mocked:
        mocked.post(url, **_failure(failure, echo), repeat=True)
        async with make_client(auth, retry=RetryPolicy.no_wait(max_attempts=2)) as client:
            error = await _raised(client.get_dialog(chat_id=13))
    assert isinstance(error, kind)
    _assert_clean(error)


async def test_a_failed_refresh_leaves_no_secret_in_the_traceback() -> None:
    with aioresponses() as mocked:
        mocked.post(oauth_url(DIALOG_GET), status=401, payload=error_body("expired_token"))
        mocked.get(TOKEN_URL_RE, exception=TimeoutError(f"timed out: {REFRESH_QUERY}"))
        async with make_client(oauth_auth(), retry=RetryPolicy.never()) as client:
            error = await _raised(client.get_dialog(chat_id=13))
    assert isinstance(error, RequestTimeoutError)
    _assert_clean(error)


async def test_the_oauth_token_goes_in_the_body_and_nowhere_else(docs_examples: Path) -> None:
    with aioresponses() as mocked:
        mocked.post(oauth_url(DIALOG_GET), payload=dialog_example(docs_examples))
        mocked.post(oauth_url("profile"), payload={"result": {}})
        async with make_client(oauth_auth()) as client:
            await client.get_dialog(chat_id=13)
            await client.call_raw("profile")  # no parameters: {"auth": ...} alone
        requests = {str(url): calls for (_, url), calls in mocked.requests.items()}
    assert set(requests) == {oauth_url(DIALOG_GET), oauth_url("profile")}  # no query
    bodies = [json.loads(calls[0].kwargs["data"]) for calls in requests.values()]
    assert bodies == [{"auth": OLD_ACCESS, "CHAT_ID": "13"}, {"auth": OLD_ACCESS}]


# -- the wrappers --------------------------------------------------------------------------


def test_secret_wrappers_mask_their_reprs() -> None:
    secret = Secret(value=WEBHOOK_CODE)
    url = SecretURL(
        Secret(value=WEBHOOK), f"{DIALOG_GET}.json", Secret(value=f"auth={OLD_ACCESS}")
    )
    body = SecretBody(b'{"CHAT_ID":"13"}', Secret(value=f'"auth":"{OLD_ACCESS}"'))
    credentials = Credentials(base=WEBHOOK, token=OLD_ACCESS)
    for item in (secret, url, body, credentials, credentials.endpoint(DIALOG_GET)):
        assert _leaks(repr(item)) == [], repr(item)
        assert _leaks(str(item)) == [], str(item)
    assert repr(url) == f"SecretURL('{PORTAL}/{MASK}')"
    assert url.reveal() == f"{WEBHOOK}{DIALOG_GET}.json?auth={OLD_ACCESS}"
    assert body.reveal() == f'{{"auth":"{OLD_ACCESS}","CHAT_ID":"13"}}'.encode()
    assert SecretBody(b"{}", Secret(value='"auth":"t"')).reveal() == b'{"auth":"t"}'
    assert credentials.endpoint(DIALOG_GET).reveal() == credentials.url(DIALOG_GET)
    assert secret == Secret(value=WEBHOOK_CODE)
    assert len({secret, Secret(value=WEBHOOK_CODE)}) == 1


def test_credentials_compare_tokens() -> None:
    first = Credentials(base=OAUTH_ENDPOINT, token=OLD_ACCESS)
    assert first.same_token(Credentials(base=OAUTH_ENDPOINT, token=OLD_ACCESS))
    assert not first.same_token(Credentials(base=OAUTH_ENDPOINT, token=NEW_ACCESS))
    assert not first.same_token(None)
    assert Credentials(base=WEBHOOK).body(b"{}") == b"{}"


async def test_oauth_credentials_are_built_once_per_pair() -> None:
    auth = oauth_auth()
    first = await auth.credentials()
    assert await auth.credentials() is first
    assert first.token == OLD_ACCESS


def test_redactor_takes_secrets_wrapped_or_plain() -> None:
    redactor = Redactor([Secret(value="fixed-secret"), "plain-secret"])
    redactor.set_current([Secret(value="current-secret")])
    assert redactor("fixed-secret plain-secret current-secret") == "*** *** ***"
    assert "secret" not in repr(redactor)


# -- item 4: URL validation never quotes the URL ------------------------------------------


def test_a_webhook_url_with_user_id_and_code_swapped_does_not_quote_the_code() -> None:
    with pytest.raises(ValueError) as caught:
        WebhookAuth(f"{PORTAL}/rest/{WEBHOOK_CODE}/1/")
    assert "numeric user id" in str(caught.value)
    assert "swapped" in str(caught.value)
    assert _leaks(str(caught.value)) == []
    assert _leaks(repr(caught.value)) == []


USERINFO = "user:pa55w0rdSecret@"


@pytest.mark.parametrize(
    ("build", "parameter"),
    [
        (
            lambda: WebhookAuth(f"https://{USERINFO}portal.bitrix24.com/rest/1/{WEBHOOK_CODE}/"),
            "url",
        ),
        (
            lambda: WebhookAuth(
                f"https://pa55w0rdSecret@portal.bitrix24.com/rest/1/{WEBHOOK_CODE}/"
            ),
            "url",
        ),
        (
            lambda: OAuthTokens(
                access_token=OLD_ACCESS,
                refresh_token=OLD_REFRESH,
                client_endpoint=f"https://{USERINFO}portal.bitrix24.com/rest/",
            ),
            "OAuthTokens.client_endpoint",
        ),
        (
            lambda: OAuthAuth(
                client_id=CLIENT_ID,
                client_secret=CLIENT_SECRET,
                tokens=old_tokens(),
                token_url=f"https://{USERINFO}oauth.bitrix.info/oauth/token/",
            ),
            "token_url",
        ),
    ],
)
def test_urls_with_a_user_or_password_are_refused_unquoted(build: Any, parameter: str) -> None:
    with pytest.raises(ValueError) as caught:
        build()
    text = str(caught.value)
    assert text.startswith(parameter)
    assert "user name or password" in text
    assert "pa55w0rdSecret" not in text
    assert "pa55w0rdSecret" not in repr(caught.value)
    assert _leaks(text) == []


async def test_exchange_code_refuses_a_token_url_with_a_password() -> None:
    with pytest.raises(ValueError, match="token_url must not contain") as caught:
        await exchange_code(
            CODE,
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            token_url=f"https://{USERINFO}oauth.bitrix.info/oauth/token/",
        )
    assert "pa55w0rdSecret" not in str(caught.value)


def test_a_server_endpoint_with_a_password_is_not_used_for_refresh() -> None:
    tokens = OAuthTokens(
        access_token=OLD_ACCESS,
        refresh_token=OLD_REFRESH,
        client_endpoint=OAUTH_ENDPOINT,
        server_endpoint=f"https://{USERINFO}oauth.bitrix.info/rest/",
    )
    assert token_url_of(tokens) is None  # the default OAuth server instead


@pytest.mark.parametrize(
    ("endpoint", "text"),
    [
        (f"ftp://portal/rest/{OLD_ACCESS}/", "got a ftp scheme"),
        (f"{OLD_ACCESS}/rest/", "got no scheme and no host"),
        # A scheme that is not a short word may be a secret: not quoted.
        (f"{OLD_ACCESS}://portal/rest/", "got an unknown scheme"),
    ],
)
def test_token_validation_does_not_quote_the_endpoint(endpoint: str, text: str) -> None:
    with pytest.raises(ValueError, match=text) as caught:
        OAuthTokens(access_token=OLD_ACCESS, refresh_token=OLD_REFRESH, client_endpoint=endpoint)
    assert _leaks(str(caught.value)) == []


def test_a_webhook_url_starting_with_its_code_is_not_quoted() -> None:
    with pytest.raises(ValueError, match="url must start with https://, got an unknown") as caught:
        WebhookAuth(f"{WEBHOOK_CODE}://portal.bitrix24.com/rest/1/{WEBHOOK_CODE}/")
    assert _leaks(str(caught.value)) == []


def test_a_token_url_without_a_host_is_not_quoted() -> None:
    with pytest.raises(ValueError, match="token_url must be a full URL") as caught:
        oauth_auth(token_url=f"https:///{CLIENT_SECRET}")
    assert _leaks(str(caught.value)) == []


@pytest.mark.parametrize(
    ("env", "flags"),
    [
        ({"BITRIX24_WEBHOOK_URL": f"{PORTAL}/rest/{WEBHOOK_CODE}/1/"}, []),
        ({}, ["--webhook-url", f"{PORTAL}/rest/{WEBHOOK_CODE}/1/"]),
        (
            {
                "BITRIX24_WEBHOOK_URL": f"https://{USERINFO}portal.bitrix24.com/rest/1/{WEBHOOK_CODE}/"
            },
            [],
        ),
        (
            {
                "BITRIX24_CLIENT_ID": CLIENT_ID,
                "BITRIX24_CLIENT_SECRET": CLIENT_SECRET,
                "BITRIX24_TOKEN_URL": f"https://{USERINFO}oauth.bitrix.info/oauth/token/",
            },
            ["--tokens-file", "{tokens}"],
        ),
        (
            {"BITRIX24_CLIENT_ID": CLIENT_ID, "BITRIX24_CLIENT_SECRET": CLIENT_SECRET},
            ["--tokens-file", "{bad_tokens}"],
        ),
    ],
)
def test_the_cli_shows_no_secret_of_a_bad_setting(
    env: dict[str, str],
    flags: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for key in ("BITRIX24_WEBHOOK_URL", "BITRIX24_TOKENS_FILE", "BITRIX24_TOKEN_URL"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps(old_tokens().to_response()), encoding="utf-8")
    bad_tokens = tmp_path / "bad.json"
    bad = {**old_tokens().to_response(), "client_endpoint": f"https://{USERINFO}p.com/rest/"}
    bad_tokens.write_text(json.dumps(bad), encoding="utf-8")
    argv = [f.format(tokens=tokens, bad_tokens=bad_tokens) for f in flags]
    assert main(["dialog", "get", "--chat-id", "1", *argv]) == 2
    err = capsys.readouterr().err
    assert "error" in err
    assert _leaks(err) == [], err
    assert "pa55w0rdSecret" not in err
