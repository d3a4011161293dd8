"""No SDK frame holds a secret in plain text during calls, batches and refreshes.

Error trackers record every local variable of every frame of a traceback (Sentry does
by default). These tests run webhook calls, batches, retried faults and OAuth refreshes
against the fake portal under a ``sys.settrace`` hook that reads the locals of every SDK
frame at each event (tests/_secret_frames.py), and find no webhook code, client secret
or token in a str, bytes, a container's item, or the repr of an SDK object.

The secrets checked are those the SDK knows at each moment: a new pair is checked from
the moment the auth adopts it (the frames that parse the token server's answer hold it
before, as any parser holds what it parses).

Last, a server that echoes every request (path, query, body) into its errors, over real
sockets: the errors' texts, fields and tracebacks (read as Sentry reads them) are clean.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

import pytest
from _secret_frames import FrameScan, traceback_findings
from _serve import serve
from aiohttp import web

from bitrix_openlines import (
    DialogGet,
    OAuthAuth,
    OAuthTokens,
    OpenLinesClient,
    RetryPolicy,
    Timeouts,
    WebhookAuth,
    exchange_code,
)
from bitrix_openlines._redact import MASK
from bitrix_openlines.errors import (
    AccessError,
    AuthError,
    OpenLinesError,
    PortalMovedError,
    RequestTimeoutError,
    ServerError,
)
from bitrix_openlines.methods.base import Method
from bitrix_openlines.testing import FakePortal, Faults

pytestmark = pytest.mark.integration

DIALOGS = 70  # two batches: 50 commands, then the rest


def _webhook_code(portal: FakePortal) -> str:
    return portal.webhook_url.rstrip("/").rsplit("/", 1)[1]


async def _exercise(client: OpenLinesClient) -> None:
    """Single calls (one refused), a typed batch and a raw batch."""
    assert (await client.get_dialog(chat_id=1)).id == 1
    assert (await client.call_raw("imopenlines.dialog.get", {"CHAT_ID": 2}))["id"] == 2
    with pytest.raises(AccessError):
        await client.get_dialog(chat_id=3)
    outcomes = await client.get_dialogs([{"chat_id": i} for i in range(1, DIALOGS + 1)])
    assert sum(o.ok for o in outcomes) == DIALOGS - 1
    methods: list[Method[Any]] = [DialogGet(chat_id=i) for i in (5, 6)]
    assert all(o.ok for o in await client.batch(methods))


def _assert_clean(scan: FrameScan, expected: Iterable[str]) -> None:
    # The scan read the frames that handle the secrets (it cannot pass by seeing nothing).
    assert set(expected) <= scan.functions, set(expected) - scan.functions
    assert scan.findings == [], "\n".join(map(str, scan.findings))


_CALL_PATH = ("_send", "_attempt", "post", "_request", "credentials", "_send_batch")


async def test_webhook_calls_and_batches_hold_no_secret_in_frames() -> None:
    async with FakePortal(dialogs=DIALOGS, forbidden=[3], rate=None) as portal:
        code = _webhook_code(portal)
        async with OpenLinesClient(
            WebhookAuth(portal.webhook_url), retry=RetryPolicy.no_wait(), rate_limit=None
        ) as client:
            with FrameScan(lambda: (code,)) as scan:
                await _exercise(client)
    _assert_clean(scan, _CALL_PATH)


async def test_retried_faults_hold_no_secret_in_frames() -> None:
    faults = Faults(internal_error=0.2, drop=0.1, truncate=0.1, command_internal_error=0.1)
    async with FakePortal(dialogs=DIALOGS, forbidden=[3], rate=None, faults=faults) as portal:
        code = _webhook_code(portal)
        async with OpenLinesClient(
            WebhookAuth(portal.webhook_url),
            retry=RetryPolicy.no_wait(max_attempts=10),
            rate_limit=None,
        ) as client:
            with FrameScan(lambda: (code,)) as scan:
                await _exercise(client)
        assert portal.stats.faults["internal_error"] > 0
        assert portal.stats.faults["drop"] > 0
    _assert_clean(scan, _CALL_PATH)


def _oauth(portal: FakePortal) -> tuple[OAuthAuth, Callable[[], Iterable[str]]]:
    auth = OAuthAuth(
        client_id=portal.client_id,
        client_secret=portal.client_secret,
        tokens=OAuthTokens.from_response(portal.issue_tokens()),
        token_url=portal.token_url,
    )
    return auth, lambda: (portal.client_secret, *auth.redactor.secrets)


async def test_oauth_calls_and_refreshes_hold_no_secret_in_frames() -> None:
    async with FakePortal(dialogs=DIALOGS, forbidden=[3], rate=None) as portal:
        auth, secrets = _oauth(portal)
        async with OpenLinesClient(auth, retry=RetryPolicy.no_wait(), rate_limit=None) as client:
            with FrameScan(secrets) as scan:
                await _exercise(client)
                portal.expire_access_tokens()
                assert (await client.get_dialog(chat_id=7)).id == 7  # refreshed, replayed
                portal.expire_access_tokens()
                outcomes = await client.get_dialogs([{"chat_id": i} for i in range(8, 20)])
                assert all(o.ok for o in outcomes)  # the batch refreshed
        assert portal.stats.refreshes == 2
        # Two refreshes: the scan knew three pairs and the client secret.
        assert len(auth.redactor.secrets) == 7
    _assert_clean(scan, (*_CALL_PATH, "refresh", "_refresh", "_refresh_with", "_request_tokens"))


# -- a server that echoes the request, over real sockets ---------------------------------------

WEBHOOK_CODE = "e5c4b3a2z9y8x7w6"
CLIENT_SECRET = "Q1w2E3r4T5y6U7i8O9p0-secret"
ACCESS, REFRESH, AUTH_CODE = "acc3ss0123456789abcdef", "r3fresh0123456789abcdef", "c0de0123456789"
SECRETS = (WEBHOOK_CODE, CLIENT_SECRET, ACCESS, REFRESH, AUTH_CODE)


async def _echo(request: web.Request) -> web.StreamResponse:
    """Answer every request with an error that quotes all of it (path, query, body)."""
    body = await request.text()
    if request.path.endswith("/slow.json"):
        await asyncio.sleep(2)
    if request.path.endswith("/moved.json"):
        raise web.HTTPFound(f"https://new.example.com{request.path_qs}")
    if request.path.endswith("/batch.json"):
        echo = {"error": "ACCESS_ERROR", "error_description": f"{request.path} {body}"}
        return web.json_response({"result": {"result": {}, "result_error": {"c0": echo}}})
    if request.path.startswith("/oauth/"):
        return web.json_response(
            {
                "error": "invalid_grant",
                "error_description": f"bad request {request.path_qs}",
                "query": dict(request.query),
            },
            status=400,
        )
    if "auth" in body:  # an OAuth call: its token has expired
        return web.json_response({"error": "expired_token", "echo": body}, status=401)
    return web.json_response(
        {
            "error": "INTERNAL_SERVER_ERROR",
            "error_description": f"failed at {request.path_qs}: {body}",
            "request": {"path": request.path, "body": body},
        },
        status=500,
    )


@pytest.fixture
async def echo_server() -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", _echo)
    async with serve(app) as port:
        yield f"http://127.0.0.1:{port}"


def _assert_error_clean(error: BaseException) -> None:
    assert isinstance(error, OpenLinesError)
    for text in (str(error), repr(error), repr(error.__dict__)):
        assert not [s for s in SECRETS if s in text], text
    assert traceback_findings(error, SECRETS) == []


async def test_an_echoing_server_gets_no_secret_into_errors_or_tracebacks(
    echo_server: str,
) -> None:
    webhook = WebhookAuth(f"{echo_server}/rest/1/{WEBHOOK_CODE}/")
    oauth = OAuthAuth(
        client_id="app.1",
        client_secret=CLIENT_SECRET,
        tokens=OAuthTokens(
            access_token=ACCESS, refresh_token=REFRESH, client_endpoint=f"{echo_server}/rest/"
        ),
        token_url=f"{echo_server}/oauth/token/",
    )
    errors: list[BaseException] = []
    for auth in (webhook, oauth):
        async with OpenLinesClient(
            auth,
            retry=RetryPolicy.never(),
            rate_limit=None,
            timeouts=Timeouts(connect=5, total=0.5),
        ) as client:
            for method in ("imopenlines.dialog.get", "slow", "moved"):
                with pytest.raises(OpenLinesError) as caught:
                    await client.call_raw(method, {"CHAT_ID": 1})
                errors.append(caught.value)
            (outcome,) = await client.get_dialogs([{"chat_id": 1}])
            assert outcome.error is not None
            errors.append(outcome.error)
    with pytest.raises(OpenLinesError) as caught:
        await exchange_code(
            AUTH_CODE,
            client_id="app.1",
            client_secret=CLIENT_SECRET,
            token_url=f"{echo_server}/oauth/token/",
        )
    errors.append(caught.value)

    kinds = [type(error) for error in errors]
    assert kinds == [
        *(ServerError, RequestTimeoutError, PortalMovedError, AccessError),  # webhook
        *(AuthError, RequestTimeoutError, PortalMovedError, AccessError),  # oauth
        AuthError,  # exchange_code
    ]
    for error in errors:
        _assert_error_clean(error)
    # The echo was there, redacted.
    server_error = errors[0]
    assert isinstance(server_error, ServerError)
    assert f"/rest/1/{MASK}/imopenlines.dialog.get.json" in server_error.description
    assert server_error.extra["request"]["path"] == f"/rest/1/{MASK}/imopenlines.dialog.get.json"
    refused = errors[4]
    assert isinstance(refused, AuthError)
    assert refused.extra["query"]["client_secret"] == MASK
    assert refused.extra["query"]["refresh_token"] == MASK
