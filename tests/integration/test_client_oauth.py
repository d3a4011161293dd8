"""OAuth against the fake portal: expiring access tokens, single-use refresh tokens."""

from __future__ import annotations

import asyncio
import logging

import pytest
from _virtual_time import VirtualTime

from bitrix_openlines import (
    InMemoryTokenStore,
    OAuthAuth,
    OAuthTokens,
    OpenLinesClient,
    RetryPolicy,
)
from bitrix_openlines.errors import AuthError
from bitrix_openlines.testing import FakePortal

pytestmark = pytest.mark.integration


def _auth(
    portal: FakePortal,
    saved: list[OAuthTokens] | None = None,
    tokens: OAuthTokens | None = None,
) -> OAuthAuth:
    tokens = tokens or OAuthTokens.from_response(portal.issue_tokens())

    async def on_refresh(new: OAuthTokens) -> None:
        if saved is not None:
            saved.append(new)

    return OAuthAuth(
        client_id=portal.client_id,
        client_secret=portal.client_secret,
        tokens=tokens,
        token_url=portal.token_url,
        on_refresh=on_refresh,
    )


async def test_calls_go_on_across_token_expiry() -> None:
    saved: list[OAuthTokens] = []
    clock = VirtualTime()  # the portal's clock; it moves only when told
    async with FakePortal(dialogs=10, rate=None, access_token_ttl=0.3, clock=clock) as portal:
        auth = _auth(portal, saved)
        async with OpenLinesClient(auth, retry=RetryPolicy.no_wait(), rate_limit=None) as client:
            for round_ in range(3):
                dialog = await client.get_dialog(chat_id=round_ + 1)
                assert dialog.id == round_ + 1
                clock.now += 0.4  # the access token expires
            assert portal.stats.refreshes == 2
            assert len(saved) == 2
            assert saved[-1] == auth.tokens
            assert portal.stats.rejections["expired_token"] == 2


async def test_concurrent_calls_on_an_expired_token_refresh_once() -> None:
    async with FakePortal(dialogs=40, rate=None) as portal:
        saved: list[OAuthTokens] = []
        auth = _auth(portal, saved)
        async with OpenLinesClient(auth, retry=RetryPolicy.no_wait(), rate_limit=None) as client:
            await client.get_dialog(chat_id=1)
            portal.expire_access_tokens()
            dialogs = await asyncio.gather(
                *(client.get_dialog(chat_id=i % 40 + 1) for i in range(200))
            )
        assert [d.id for d in dialogs] == [i % 40 + 1 for i in range(200)]
        assert portal.stats.refreshes == 1
        assert portal.stats.token_requests == 1
        assert len(saved) == 1


async def test_a_used_refresh_token_fails_every_waiter_with_one_auth_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with FakePortal(dialogs=5, rate=None) as portal:
        auth = _auth(portal)
        # Someone else (another process with a copy of the pair) refreshes first: the
        # single-use refresh token we hold is now spent.
        other = _auth(portal, tokens=auth.tokens)
        async with OpenLinesClient(other, rate_limit=None) as other_client:
            portal.expire_access_tokens()
            await other_client.get_dialog(chat_id=1)
        caplog.set_level(logging.DEBUG, logger="bitrix_openlines")
        async with OpenLinesClient(auth, retry=RetryPolicy.no_wait(), rate_limit=None) as client:
            results = await asyncio.wait_for(
                asyncio.gather(
                    *(client.get_dialog(chat_id=1) for _ in range(30)), return_exceptions=True
                ),
                timeout=10,
            )
        errors = {id(r) for r in results if isinstance(r, AuthError)}
        assert len(errors) == 1, results[:3]
        error = results[0]
        assert isinstance(error, AuthError)
        assert error.code == "invalid_grant"
        assert portal.stats.token_requests == 2  # the other client's, and ours: once
        secrets = (portal.client_secret, auth.tokens.access_token, auth.tokens.refresh_token)
        for secret in secrets:
            assert secret not in str(error)
            assert secret not in caplog.text


async def test_many_clients_sharing_a_token_store_refresh_once() -> None:
    async with FakePortal(dialogs=40, rate=None) as portal:
        store = InMemoryTokenStore()
        tokens = OAuthTokens.from_response(portal.issue_tokens())
        assert tokens.member_id is not None
        await store.save(tokens.member_id, tokens)
        clients = [
            OpenLinesClient(
                OAuthAuth(
                    client_id=portal.client_id,
                    client_secret=portal.client_secret,
                    token_url=portal.token_url,
                    store=store,
                    key=tokens.member_id,
                ),
                retry=RetryPolicy.no_wait(),
                rate_limit=None,
            )
            for _ in range(8)
        ]
        try:
            await asyncio.gather(*(c.get_dialog(chat_id=1) for c in clients))
            portal.expire_access_tokens()
            dialogs = await asyncio.gather(
                *(clients[i % 8].get_dialog(chat_id=i % 40 + 1) for i in range(160))
            )
        finally:
            for client in clients:
                await client.close()
        assert [d.id for d in dialogs] == [i % 40 + 1 for i in range(160)]
        assert portal.stats.refreshes == 1
        stored = await store.load(tokens.member_id)
        assert stored is not None
        assert stored.access_token != tokens.access_token
