"""OpenLinesApp over RedisTokenStore: application tokens, uninstall, a restart, real sockets."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from bitrix_openlines import OAuthTokens, OpenLinesApp, RetryPolicy
from bitrix_openlines.contrib.redis import RedisRateLimiter, RedisTokenStore
from bitrix_openlines.testing import FakePortalHost

PREFIX = "bitrix_openlines:tokens:"


async def test_application_tokens_and_delete_in_redis(redis: Redis) -> None:
    store = RedisTokenStore(redis)
    assert store.keeps_app_tokens()
    tokens = OAuthTokens(access_token="a", refresh_token="r", client_endpoint="https://p/rest/")
    await store.save("m1", tokens)
    await store.save_app_token("m1", "app-token-1")
    assert await redis.get(PREFIX + "m1:app") == b"app-token-1"
    assert await store.load_app_token("m1") == "app-token-1"
    assert await store.load_app_token("m2") is None
    with pytest.raises(ValueError, match="application_token"):
        await store.save_app_token("m1", "")
    await redis.set(PREFIX + "m1:lock", "someone")
    await store.delete("m1")
    assert await redis.exists(PREFIX + "m1", PREFIX + "m1:app", PREFIX + "m1:lock") == 0


async def test_a_restarted_app_serves_the_portals_from_redis(redis: Redis) -> None:
    """Install, refresh, restart (a new app, nothing in memory): no second refresh."""
    async with FakePortalHost(2, dialogs=5, rate=None) as host, host.client_session() as http:

        def new_app() -> OpenLinesApp:
            return OpenLinesApp(
                client_id=host.client_id,
                client_secret=host.client_secret,
                store=RedisTokenStore(redis),
                limiter=RedisRateLimiter(redis),
                session=http,
                retry=RetryPolicy.no_wait(),
                verify_install=False,
            )

        first = new_app()
        for portal in host.portals:
            tokens = OAuthTokens.from_response(portal.issue_tokens())
            await first.register(portal.member_id, tokens, portal.application_token)
        a = host.portals[0]
        a.expire_access_tokens()
        assert (await first.portal(a.member_id).get_dialog(chat_id=1)).chat_id == 1
        assert a.stats.refreshes == 1
        await first.close()

        second = new_app()
        assert not second.is_live(a.member_id)
        assert await second.application_token(a.member_id) == a.application_token
        assert (await second.portal(a.member_id).get_dialog(chat_id=2)).chat_id == 2
        assert a.stats.refreshes == 1
        assert a.stats.rejections.get("invalid_token", 0) == 0
        await second.close()
