"""A renamed portal answers 302: the client stops, names the new address, leaks nothing."""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

import pytest

from bitrix_openlines import OAuthAuth, OAuthTokens, OpenLinesClient, RetryPolicy, WebhookAuth
from bitrix_openlines.errors import PortalMovedError
from bitrix_openlines.testing import FakePortal

pytestmark = pytest.mark.integration

DIALOG_GET = "imopenlines.dialog.get"


def _secret_of(webhook_url: str) -> str:
    # http://127.0.0.1:PORT/rest/<user>/<code>/
    return urlsplit(webhook_url).path.rstrip("/").rsplit("/", 1)[1]


def _assert_clean(error: PortalMovedError, *secrets: str) -> None:
    for secret in secrets:
        assert secret not in str(error)
        assert secret not in repr(error)
        assert secret not in repr(error.__dict__)
    assert "/rest/" not in str(error)


async def test_a_moved_portal_gives_its_new_address_and_nothing_is_retried_or_followed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="bitrix_openlines")
    async with (
        FakePortal(dialogs=3, rate=None) as new_home,
        FakePortal(dialogs=3, rate=None, moved_to=new_home.base_url) as old_home,
    ):
        code = _secret_of(old_home.webhook_url)
        async with OpenLinesClient(
            WebhookAuth(old_home.webhook_url),
            rate_limit=None,
            retry=RetryPolicy.no_wait(max_attempts=5),
        ) as client:
            with pytest.raises(PortalMovedError) as caught:
                await client.get_dialog(chat_id=1)  # idempotent, and still not retried
            outcomes = await client.get_dialogs([{"chat_id": 1}, {"chat_id": 2}])
        # One request each for the call and the batch: no retry, and nothing followed.
        assert old_home.stats.requests == 2
        assert new_home.stats.requests == 0
    error = caught.value
    assert error.new_address == new_home.base_url
    assert error.status == 302
    assert error.method == DIALOG_GET
    assert new_home.base_url in str(error)
    _assert_clean(error, code)
    for outcome in outcomes:
        assert isinstance(outcome.error, PortalMovedError)
        assert outcome.error.new_address == new_home.base_url
        _assert_clean(outcome.error, code)
    for record in caplog.records:
        assert code not in record.getMessage()


async def test_an_oauth_client_gets_the_new_address_without_its_token() -> None:
    async with (
        FakePortal(dialogs=3, rate=None) as new_home,
        FakePortal(dialogs=3, rate=None, moved_to=new_home.base_url) as old_home,
    ):
        tokens = OAuthTokens.from_response(old_home.issue_tokens())
        auth = OAuthAuth(
            client_id=old_home.client_id,
            client_secret=old_home.client_secret,
            tokens=tokens,
            token_url=old_home.token_url,
        )
        async with OpenLinesClient(auth, rate_limit=None, retry=RetryPolicy.no_wait()) as client:
            with pytest.raises(PortalMovedError) as caught:
                await client.get_dialog(chat_id=1)
        assert old_home.stats.requests == 1
        assert old_home.stats.refreshes == 0
    assert caught.value.new_address == new_home.base_url
    _assert_clean(caught.value, tokens.access_token, tokens.refresh_token, old_home.client_secret)


async def test_an_app_updates_its_stored_endpoint_from_new_address() -> None:
    # The recipe of docs/errors.md: keep the path of the stored webhook (its user and
    # code), take the scheme and host from new_address.
    async with FakePortal(dialogs=3, rate=None) as portal:
        stored = f"http://localhost:{portal.port}" + urlsplit(portal.webhook_url).path
        portal.move_to(portal.base_url)  # renamed: "localhost" now answers 302
        async with OpenLinesClient(WebhookAuth(stored), rate_limit=None) as client:
            with pytest.raises(PortalMovedError) as caught:
                await client.get_dialog(chat_id=2)
        new_address = caught.value.new_address
        assert new_address == portal.base_url
        stored = new_address + urlsplit(stored).path
        async with OpenLinesClient(WebhookAuth(stored), rate_limit=None) as client:
            dialog = await client.get_dialog(chat_id=2)
        assert dialog.id == 2
        assert portal.stats.by_method[DIALOG_GET] == 1  # the 302 was not a call
