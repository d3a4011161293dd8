"""TokenStore: many clients of one portal share one pair and one refresh."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from _unit_helpers import (
    CLIENT_ID,
    CLIENT_SECRET,
    NEW_ACCESS,
    NEW_REFRESH,
    OAUTH_ENDPOINT,
    OLD_ACCESS,
    OLD_REFRESH,
    TOKEN_URL,
    TOKEN_URL_RE,
    body_of,
    dialog_example,
    error_body,
    load_example,
    oauth_url,
    recorded,
    recorded_queries,
)
from aioresponses import CallbackResult, aioresponses

from bitrix_openlines import (
    InMemoryTokenStore,
    OAuthAuth,
    OAuthTokens,
    OpenLinesClient,
    RetryPolicy,
    TokenStore,
    exchange_code,
)
from bitrix_openlines.errors import AuthError, OpenLinesError
from bitrix_openlines.ratelimit import Limiter

MEMBER = "a223c6b3710f85df22e9377d6c4f7553"


def _old_pair() -> OAuthTokens:
    return OAuthTokens(
        access_token=OLD_ACCESS,
        refresh_token=OLD_REFRESH,
        client_endpoint=OAUTH_ENDPOINT,
        member_id=MEMBER,
    )


def _auth(store: TokenStore, tokens: OAuthTokens | None = None) -> OAuthAuth:
    return OAuthAuth(
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        tokens=tokens,
        token_url=TOKEN_URL,
        store=store,
        key=MEMBER,
    )


def _client(auth: OAuthAuth) -> OpenLinesClient:
    return OpenLinesClient(auth, retry=RetryPolicy.no_wait(), rate_limit=None)


def _route_dialogs(
    mocked: aioresponses, docs: Path, store: InMemoryTokenStore, seen_in_store: list[Any]
) -> None:
    dialog = dialog_example(docs)

    async def answer(url: Any, **kwargs: Any) -> CallbackResult:
        token = body_of(kwargs).get("auth")
        if token == OLD_ACCESS:
            return CallbackResult(status=401, payload=error_body("expired_token"))
        # The replayed call: the new pair must already be in the store.
        stored = await store.load(MEMBER)
        seen_in_store.append(stored.access_token if stored else None)
        return CallbackResult(payload=dialog)

    mocked.post(oauth_url("imopenlines.dialog.get"), callback=answer, repeat=True)


async def test_many_clients_of_one_portal_refresh_once(docs_examples: Path) -> None:
    store = InMemoryTokenStore()
    await store.save(MEMBER, _old_pair())
    seen_in_store: list[Any] = []
    with aioresponses() as mocked:
        _route_dialogs(mocked, docs_examples, store, seen_in_store)
        refresh = load_example(docs_examples, "oauth__token_refresh__200.json")
        mocked.get(TOKEN_URL_RE, payload=refresh, repeat=True)
        clients = [_client(_auth(store)) for _ in range(5)]
        try:
            dialogs = await asyncio.gather(
                *(clients[i % 5].get_dialog(chat_id=1777) for i in range(100))
            )
        finally:
            for client in clients:
                await client.close()
        assert len(recorded(mocked, "GET", TOKEN_URL)) == 1
    assert all(d.id == 1777 for d in dialogs)
    stored = await store.load(MEMBER)
    assert stored is not None
    assert (stored.access_token, stored.refresh_token) == (NEW_ACCESS, NEW_REFRESH)
    assert seen_in_store == [NEW_ACCESS] * 100  # saved before any replay went out


async def test_a_seed_fills_an_empty_store_but_never_overrides_it(docs_examples: Path) -> None:
    store = InMemoryTokenStore()
    auth = _auth(store, tokens=_old_pair())
    assert auth.portal == f"store:{MEMBER}"
    with aioresponses() as mocked:
        mocked.post(oauth_url("server.time"), payload={"result": "x"}, repeat=True)
        async with _client(auth) as client:
            await client.call_raw("server.time")
        assert body_of(recorded(mocked)[0].kwargs)["auth"] == OLD_ACCESS
    assert (await store.load(MEMBER)) == _old_pair()
    newer = OAuthTokens(
        access_token=NEW_ACCESS, refresh_token=NEW_REFRESH, client_endpoint=OAUTH_ENDPOINT
    )
    other_store = InMemoryTokenStore()
    await other_store.save(MEMBER, newer)
    with aioresponses() as mocked:
        mocked.post(oauth_url("server.time"), payload={"result": "x"})
        async with _client(_auth(other_store, tokens=_old_pair())) as client:
            await client.call_raw("server.time")
        assert body_of(recorded(mocked)[0].kwargs)["auth"] == NEW_ACCESS


async def test_an_empty_store_without_seed_fails_before_any_request() -> None:
    with aioresponses() as mocked:
        async with _client(_auth(InMemoryTokenStore())) as client:
            with pytest.raises(AuthError, match="no OAuth tokens stored") as info:
                await client.get_dialog(chat_id=1)
        assert recorded(mocked) == []
    assert info.value.code == "NO_TOKENS"


async def test_a_pair_refreshed_elsewhere_is_adopted_without_refreshing(
    docs_examples: Path,
) -> None:
    store = InMemoryTokenStore()
    await store.save(MEMBER, _old_pair())
    auth = _auth(store)
    with aioresponses() as mocked:
        _route_dialogs(mocked, docs_examples, store, [])
        async with _client(auth) as client:
            # Another process refreshed and saved a new pair; this client still holds the
            # old one in memory, meets expired_token, and finds the new pair in the store.
            await auth.credentials()
            await store.save(
                MEMBER,
                OAuthTokens(
                    access_token=NEW_ACCESS,
                    refresh_token=NEW_REFRESH,
                    client_endpoint=OAUTH_ENDPOINT,
                ),
            )
            dialog = await client.get_dialog(chat_id=1777)
        assert recorded(mocked, "GET", TOKEN_URL) == []
    assert dialog.id == 1777
    assert auth.tokens.access_token == NEW_ACCESS


@pytest.mark.parametrize(
    ("key", "tokens", "store", "message"),
    [
        (None, None, None, "needs tokens"),
        (None, "seedless", "store", "key is needed"),
        ("", None, "store", "key must be a non-empty string"),
    ],
)
def test_store_arguments_are_checked(
    key: str | None, tokens: str | None, store: str | None, message: str
) -> None:
    seed = None
    if tokens == "seedless":
        seed = OAuthTokens(
            access_token="a" * 8, refresh_token="b" * 8, client_endpoint=OAUTH_ENDPOINT
        )
    with pytest.raises(ValueError, match=message):
        OAuthAuth(
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            tokens=seed,
            store=InMemoryTokenStore() if store else None,
            key=key,
        )
    with pytest.raises(TypeError, match="store"):
        OAuthAuth(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, store="x", key="k")  # type: ignore[arg-type]


async def test_exchange_code(docs_examples: Path) -> None:
    body = load_example(docs_examples, "oauth__token_authorization_code__200.json")
    with aioresponses() as mocked:
        mocked.get(TOKEN_URL_RE, payload=body)
        tokens = await exchange_code(
            "code123abc", client_id=CLIENT_ID, client_secret=CLIENT_SECRET
        )
        (query,) = recorded_queries(mocked, "GET", TOKEN_URL)
    assert query == {
        "grant_type": "authorization_code",
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "code": "code123abc",
    }
    assert tokens.access_token == body["access_token"]
    assert tokens.client_endpoint == "https://portal.bitrix24.com/rest/"


async def test_exchange_code_refused() -> None:
    with aioresponses() as mocked:
        mocked.get(TOKEN_URL_RE, status=400, payload=error_body("invalid_grant", "Code expired"))
        with pytest.raises(AuthError) as info:
            await exchange_code("code123abc", client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    assert info.value.code == "invalid_grant"
    assert CLIENT_SECRET not in str(info.value)
    assert "code123abc" not in repr(info.value)
    with pytest.raises(ValueError, match="code"):
        await exchange_code("", client_id=CLIENT_ID, client_secret=CLIENT_SECRET)


async def test_a_pair_loaded_from_the_store_is_redacted_from_errors() -> None:
    store = InMemoryTokenStore()
    await store.save(MEMBER, _old_pair())
    echo = f"<html>bad request {OLD_ACCESS} / {OLD_REFRESH}</html>"
    with aioresponses() as mocked:
        mocked.post(oauth_url("server.time"), status=502, body=echo, repeat=True)
        async with _client(_auth(store)) as client:
            with pytest.raises(OpenLinesError) as info:
                await client.call_raw("server.time")
    text = f"{info.value} {info.value!r} {getattr(info.value, 'excerpt', '')}"
    assert OLD_ACCESS not in text
    assert OLD_REFRESH not in text


class _SlowStore(InMemoryTokenStore):
    """A store that answers a load after a suspension, as a networked one does."""

    async def load(self, key: str) -> OAuthTokens | None:
        await asyncio.sleep(0)
        return await super().load(key)


class _KeysLimiter(Limiter):
    """Records the bucket every slot is taken from."""

    def __init__(self) -> None:
        self.keys: list[str] = []

    async def acquire(self, portal: str, cost: int = 1) -> None:
        await asyncio.sleep(0)  # a shared limiter asks its server
        self.keys.append(portal)

    async def penalize(self, portal: str) -> None:
        raise AssertionError("no 503 in this test")


async def test_calls_of_a_pair_still_in_the_store_count_in_the_portals_bucket() -> None:
    # The first calls of a client whose pair is still in the store, made at once, must
    # be paced in the portal's bucket, not in one keyed by the store key: else a fleet
    # of such clients sends a burst the portal's bucket refuses.
    store = _SlowStore()
    await store.save(MEMBER, _old_pair())
    limiter = _KeysLimiter()
    with aioresponses() as mocked:
        mocked.post(oauth_url("server.time"), payload={"result": "x"}, repeat=True)
        auth = _auth(store)
        async with OpenLinesClient(
            auth, retry=RetryPolicy.no_wait(), rate_limit=None, limiter=limiter
        ) as client:
            await asyncio.gather(*(client.call_raw("server.time") for _ in range(10)))
        assert len(recorded(mocked)) == 10
    assert limiter.keys == [auth.portal] * 10
    assert not auth.portal.startswith("store:")
