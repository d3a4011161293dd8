"""Webhook and OAuth auth on /rest/ and the OAuth token endpoint."""

from __future__ import annotations

import time
from typing import Any

import aiohttp
import pytest

from bitrix_openlines.testing import FakePortal

from ._helpers import DIALOG_GET, FakeClock, call, load_example

INVALID_TOKEN = {
    "error": "invalid_token",
    "error_description": "The access token provided is invalid",
}
EXPIRED_TOKEN = {
    "error": "expired_token",
    "error_description": "The access token provided has expired",
}


async def token_request(
    http: aiohttp.ClientSession, portal: FakePortal, *, method: str = "GET", **params: str
) -> tuple[int, Any]:
    if method == "GET":
        request = http.get(portal.token_url, params=params)
    else:
        request = http.post(portal.token_url, data=params)
    async with request as response:
        assert response.content_type == "application/json"
        return response.status, await response.json()


def refresh_params(portal: FakePortal, refresh_token: str) -> dict[str, str]:
    return {
        "grant_type": "refresh_token",
        "client_id": portal.client_id,
        "client_secret": portal.client_secret,
        "refresh_token": refresh_token,
    }


@pytest.mark.parametrize("path", ["/rest/1/{wrong}/", "/rest/2/{code}/", "/rest/x/{code}/"])
async def test_wrong_webhook_user_or_code_is_invalid_credentials(
    portal: FakePortal, http: aiohttp.ClientSession, path: str
) -> None:
    code = portal.webhook_url.rstrip("/").rsplit("/", 1)[1]
    url = portal.base_url + path.format(wrong=code + "x", code=code) + DIALOG_GET
    status, body = await call(http, url, {"CHAT_ID": 1})
    assert status == 401
    assert body == load_example("error__INVALID_CREDENTIALS__im.recent.list.json")


async def test_oauth_without_any_token_is_no_auth_found(
    portal: FakePortal, http: aiohttp.ClientSession
) -> None:
    for payload in ({"CHAT_ID": 1}, {"CHAT_ID": 1, "auth": ""}, {"CHAT_ID": 1, "auth": ["x"]}):
        assert await call(http, portal.client_endpoint + DIALOG_GET, payload) == (
            401,
            {"error": "NO_AUTH_FOUND", "error_description": "Wrong authorization data"},
        )


async def test_oauth_token_in_header_body_query_or_access_token(
    portal: FakePortal, http: aiohttp.ClientSession
) -> None:
    token = portal.issue_tokens()["access_token"]
    url = portal.client_endpoint + DIALOG_GET
    attempts: list[dict[str, Any]] = [
        {"json": {"CHAT_ID": 1, "auth": token}},
        {"json": {"CHAT_ID": 1, "access_token": token}},
        {"json": {"CHAT_ID": 1}, "params": {"auth": token}},
        {"json": {"CHAT_ID": 1}, "headers": {"Authorization": f"Bearer {token}"}},
        {
            "data": f"CHAT_ID=1&auth={token}",
            "headers": {"Content-Type": "application/x-www-form-urlencoded"},
        },
    ]
    for kwargs in attempts:
        status, body = await call(http, url, **kwargs)
        assert status == 200, kwargs
        assert body["result"]["id"] == 1
    # the header is read first: a bad header token is not rescued by a good body token
    status, body = await call(
        http, url, {"CHAT_ID": 1, "auth": token}, headers={"Authorization": "Bearer nope"}
    )
    assert (status, body) == (401, INVALID_TOKEN)


async def test_unknown_and_expired_tokens(http: aiohttp.ClientSession) -> None:
    clock = FakeClock()
    async with FakePortal(dialogs=2, access_token_ttl=0.5, clock=clock) as portal:
        url = portal.client_endpoint + DIALOG_GET
        tokens = portal.issue_tokens()
        assert tokens["expires_in"] == 1  # rounded up to whole seconds
        assert (await call(http, url, {"CHAT_ID": 1, "auth": "nope"})) == (401, INVALID_TOKEN)
        assert (await call(http, url, {"CHAT_ID": 1, "auth": tokens["access_token"]}))[0] == 200
        clock.advance(0.5)
        assert (await call(http, url, {"CHAT_ID": 1, "auth": tokens["access_token"]})) == (
            401,
            EXPIRED_TOKEN,
        )
        fresh = portal.issue_tokens()["access_token"]
        portal.expire_access_tokens()
        assert (await call(http, url, {"CHAT_ID": 1, "auth": fresh})) == (401, EXPIRED_TOKEN)
        assert portal.stats.rejections == {"invalid_token": 1, "expired_token": 2}


async def test_issued_tokens_have_the_documented_shape(portal: FakePortal) -> None:
    example = load_example("oauth__token_refresh__200.json")
    before = time.time()
    tokens = portal.issue_tokens()
    after = time.time()
    assert list(tokens) == list(example)
    assert {k: type(v) for k, v in tokens.items()} == {k: type(v) for k, v in example.items()}
    assert tokens["client_endpoint"] == portal.client_endpoint
    assert tokens["member_id"] == portal.member_id
    assert tokens["expires_in"] == 3600
    # An hour after issue, on the portal's Unix time (the wall clock at its start plus its
    # monotonic clock since; rounded up): within the real time around the issue, whatever
    # the load, give or take a second of drift between the two clocks.
    assert before + 3600 - 1 <= tokens["expires"] <= after + 3600 + 2
    assert tokens["access_token"] != portal.issue_tokens()["access_token"]


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_refresh_rotates_and_is_single_use(
    portal: FakePortal, http: aiohttp.ClientSession, method: str
) -> None:
    example = load_example("oauth__token_refresh__200.json")
    old = portal.issue_tokens()
    status, new = await token_request(
        http, portal, method=method, **refresh_params(portal, old["refresh_token"])
    )
    assert status == 200
    assert list(new) == list(example)
    assert new["access_token"] != old["access_token"]
    assert new["refresh_token"] != old["refresh_token"]
    # the old refresh token is spent
    status, body = await token_request(
        http, portal, method=method, **refresh_params(portal, old["refresh_token"])
    )
    assert status == 400
    assert body["error"] == "invalid_grant"
    # the old access token stopped working, the new one works
    url = portal.client_endpoint + DIALOG_GET
    assert (await call(http, url, {"CHAT_ID": 1, "auth": old["access_token"]})) == (
        401,
        INVALID_TOKEN,
    )
    assert (await call(http, url, {"CHAT_ID": 1, "auth": new["access_token"]}))[0] == 200
    # and the new refresh token works once
    status, _ = await token_request(
        http, portal, method=method, **refresh_params(portal, new["refresh_token"])
    )
    assert status == 200
    assert portal.stats.refreshes == 2
    assert portal.stats.token_requests == 3
    assert portal.stats.requests == 2  # the token endpoint is not /rest/


async def test_wrong_client_does_not_spend_the_refresh_token(
    portal: FakePortal, http: aiohttp.ClientSession
) -> None:
    tokens = portal.issue_tokens()
    params = refresh_params(portal, tokens["refresh_token"])
    for field in ("client_id", "client_secret"):
        status, body = await token_request(http, portal, **{**params, field: "wrong"})
        assert status == 401
        assert body["error"] == "invalid_client"
        assert body["error_description"]
    assert (await token_request(http, portal, **params))[0] == 200


@pytest.mark.parametrize(
    ("drop", "mention"),
    [
        ("grant_type", "grant_type"),
        ("client_id", "client_id"),
        ("client_secret", "client_secret"),
        ("refresh_token", "refresh_token"),
    ],
)
async def test_missing_parameters_are_invalid_request(
    portal: FakePortal, http: aiohttp.ClientSession, drop: str, mention: str
) -> None:
    params = refresh_params(portal, portal.issue_tokens()["refresh_token"])
    del params[drop]
    status, body = await token_request(http, portal, **params)
    assert status == 400
    assert body["error"] == "invalid_request"
    assert mention in body["error_description"]


async def test_unknown_grant_type_is_invalid_request(
    portal: FakePortal, http: aiohttp.ClientSession
) -> None:
    status, body = await token_request(http, portal, grant_type="password")
    assert (status, body["error"]) == (400, "invalid_request")


async def test_authorization_code_is_single_use_and_short_lived(
    http: aiohttp.ClientSession,
) -> None:
    clock = FakeClock()
    async with FakePortal(dialogs=1, clock=clock) as portal:
        code = portal.create_authorization_code()
        params = {
            "grant_type": "authorization_code",
            "client_id": portal.client_id,
            "client_secret": portal.client_secret,
            "code": code,
        }
        status, tokens = await token_request(http, portal, **params)
        assert status == 200
        assert tokens["client_endpoint"] == portal.client_endpoint
        url = portal.client_endpoint + DIALOG_GET
        assert (await call(http, url, {"CHAT_ID": 1, "auth": tokens["access_token"]}))[0] == 200
        status, body = await token_request(http, portal, **params)
        assert (status, body["error"]) == (400, "invalid_grant")
        late = portal.create_authorization_code()
        clock.advance(30.0)
        status, body = await token_request(http, portal, **{**params, "code": late})
        assert (status, body["error"]) == (400, "invalid_grant")
        assert portal.stats.refreshes == 0
        assert portal.stats.rejections == {"invalid_grant": 2}


async def test_rejected_auth_still_takes_a_bucket_slot(http: aiohttp.ClientSession) -> None:
    async with FakePortal(dialogs=1, rate=2.0, burst=3, clock=FakeClock()) as portal:
        bad = portal.base_url + "/rest/1/wrong/" + DIALOG_GET
        for _ in range(3):
            assert (await call(http, bad, {"CHAT_ID": 1}))[0] == 401
        status, body = await call(http, portal.webhook_url + DIALOG_GET, {"CHAT_ID": 1})
        assert (status, body["error"]) == (503, "QUERY_LIMIT_EXCEEDED")
        # with the bucket full, a request that also fails auth answers its auth error
        assert (await call(http, bad, {"CHAT_ID": 1}))[0] == 401
