"""bitrix_openlines.contrib.aiohttp in a real aiohttp server, with the fake portal posting."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer, make_mocked_request

from bitrix_openlines import OAuthAuth, OAuthTokens, OpenLinesClient, RetryPolicy
from bitrix_openlines.contrib.aiohttp import (
    CLIENT_SESSION,
    EventError,
    EventVerificationError,
    client_session_ctx,
    read_event,
)
from bitrix_openlines.events import OpenLineMessageEvent, SessionEvent
from bitrix_openlines.testing import FakePortal

Reader = Callable[[web.Request], Awaitable[Any]]

MESSAGE = {
    "DATA": [
        {
            "connector": {"connector_id": "livechat", "line_id": 1, "chat_id": 2, "user_id": 3},
            "chat": {"id": 2},
            "message": {"id": 10, "text": "hi", "system": "N"},
        }
    ]
}


def event_app(reader: Reader) -> web.Application:
    """An app whose /events handler answers what ``reader`` made of the request."""

    async def handle(request: web.Request) -> web.Response:
        try:
            event = await reader(request)
        except EventVerificationError as error:
            return web.json_response({"error": str(error)}, status=403)
        except EventError as error:
            return web.json_response({"error": str(error)}, status=400)
        return web.json_response({"event": event.name, "type": type(event).__name__})

    app = web.Application()
    app.router.add_post("/events", handle)
    return app


@pytest.fixture
async def served() -> AsyncIterator[Callable[[Reader], Awaitable[str]]]:
    servers: list[TestServer] = []

    async def serve(reader: Reader) -> str:
        server = TestServer(event_app(reader))
        await server.start_server()
        servers.append(server)
        return str(server.make_url("/events"))

    yield serve
    for server in servers:
        await server.close()


async def test_a_real_event_is_read_and_verified(
    portal: FakePortal, served: Callable[[Reader], Awaitable[str]]
) -> None:
    seen: list[Any] = []

    async def reader(request: web.Request) -> Any:
        event = await read_event(request, application_token=portal.application_token)
        seen.append(event)
        return event

    url = await served(reader)
    assert await portal.send_event(url, "ONOPENLINEMESSAGEADD", MESSAGE) == 200
    (event,) = seen
    assert isinstance(event, OpenLineMessageEvent)
    assert event.items[0].message.text == "hi"
    assert event.member_id == portal.member_id


async def test_forged_and_tokenless_events_are_refused(
    portal: FakePortal, served: Callable[[Reader], Awaitable[str]]
) -> None:
    url = await served(
        lambda request: read_event(request, application_token=portal.application_token)
    )
    forged = "0" * 32
    assert await portal.send_event(url, "ONSESSIONSTART", {}, application_token=forged) == 403
    assert await portal.send_event(url, "ONSESSIONSTART", {}, application_token="") == 403


async def test_tokens_looked_up_by_member_id_sync_or_async(
    portal: FakePortal, served: Callable[[Reader], Awaitable[str]]
) -> None:
    stored = {portal.member_id: portal.application_token}
    asked: list[str] = []

    def lookup(member_id: str) -> str | None:
        asked.append(member_id)
        return stored.get(member_id)

    async def async_lookup(member_id: str) -> str | None:
        return lookup(member_id)

    for token_for in (lookup, async_lookup):
        url = await served(functools.partial(read_event, token_for=token_for))
        assert await portal.send_event(url, "ONSESSIONSTART", {}) == 200
        assert await portal.send_event(url, "ONSESSIONSTART", {}, application_token="x") == 403
    assert asked == [portal.member_id] * 4
    stored.clear()
    url = await served(functools.partial(read_event, token_for=lookup))
    assert await portal.send_event(url, "ONSESSIONSTART", {}) == 403


async def test_unverified_read_for_the_install_event(
    portal: FakePortal, served: Callable[[Reader], Awaitable[str]]
) -> None:
    url = await served(functools.partial(read_event, verify=False))
    assert await portal.send_event(url, "ONAPPINSTALL", {}, application_token="any") == 200


async def test_malformed_bodies_answer_400(served: Callable[[Reader], Awaitable[str]]) -> None:
    url = await served(functools.partial(read_event, application_token="t" * 32))
    async with aiohttp.ClientSession() as http:
        malformed = [
            (b"", "application/x-www-form-urlencoded"),
            (b"{not json", "application/json"),
            (b"data[x]=1", "application/x-www-form-urlencoded"),
            (b"event=X", "text/plain"),
        ]
        for data, content_type in malformed:
            headers = {"Content-Type": content_type}
            async with http.post(url, data=data, headers=headers) as response:
                assert response.status == 400, (data, content_type)
        # A JSON body and a multipart form are read too (and verified).
        body = {"event": "ONSESSIONSTART", "auth": {"application_token": "t" * 32}}
        async with http.post(url, json=body) as response:
            assert response.status == 200
            assert (await response.json())["type"] == "SessionEvent"
        form = aiohttp.FormData()
        form.add_field("event", "ONSESSIONSTART")
        form.add_field("data[DATA][0][session][id]", "5")
        form.add_field("auth[application_token]", "t" * 32)
        async with http.post(url, data=form()) as response:
            assert response.status == 200


async def test_multipart_fields_are_nested() -> None:
    seen: list[Any] = []

    async def reader(request: web.Request) -> Any:
        event = await read_event(request, verify=False)
        seen.append(event)
        return event

    async with TestClient(TestServer(event_app(reader))) as client:
        form = aiohttp.FormData()
        form.add_field("event", "ONSESSIONSTART")
        form.add_field("data[DATA][0][session][id]", "5")
        form.add_field("file", b"x", filename="x.txt")
        async with client.post("/events", data=form) as response:
            assert response.status == 200
    (event,) = seen
    assert isinstance(event, SessionEvent)
    assert event.items[0].session.id == 5


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"application_token": "a", "token_for": lambda member_id: "a"}],
)
async def test_exactly_one_way_to_verify(kwargs: dict[str, Any]) -> None:
    request = make_mocked_request("POST", "/events")
    with pytest.raises(TypeError, match="exactly one"):
        await read_event(request, **kwargs)


async def test_event_without_member_id_cannot_be_looked_up() -> None:
    async def reader(request: web.Request) -> Any:
        return await read_event(request, token_for=lambda member_id: "t")

    async with TestClient(TestServer(event_app(reader))) as client:
        body = {"event": "ONSESSIONSTART", "auth": {"application_token": "t"}}
        async with client.post("/events", json=body) as response:
            assert response.status == 403
            assert "member_id" in (await response.json())["error"]


async def test_one_client_session_for_the_apps_lifetime(portal: FakePortal) -> None:
    sessions: list[aiohttp.ClientSession] = []
    store_tokens = OAuthTokens.from_response(portal.issue_tokens())

    async def handle(request: web.Request) -> web.Response:
        session = request.app[CLIENT_SESSION]
        sessions.append(session)
        auth = OAuthAuth(
            client_id=portal.client_id,
            client_secret=portal.client_secret,
            tokens=store_tokens,
            token_url=portal.token_url,
        )
        # A client per request borrows the app's session and does not close it.
        async with OpenLinesClient(
            auth, session=session, rate_limit=None, retry=RetryPolicy.no_wait()
        ) as client:
            dialog = await client.get_dialog(chat_id=1)
        assert not session.closed
        return web.json_response({"chat": dialog.id})

    app = web.Application()
    app.cleanup_ctx.append(client_session_ctx)
    app.router.add_get("/dialog", handle)
    async with TestClient(TestServer(app)) as client:
        for _ in range(3):
            async with client.get("/dialog") as response:
                assert response.status == 200
                assert await response.json() == {"chat": 1}
        assert app[CLIENT_SESSION] is sessions[0]
    assert len(set(map(id, sessions))) == 1
    assert sessions[0].closed  # closed with the app


async def test_client_session_under_another_key_with_options() -> None:
    key = web.AppKey("other_session", aiohttp.ClientSession)
    app = web.Application()
    app.cleanup_ctx.append(functools.partial(client_session_ctx, key=key, headers={"X-Test": "1"}))
    async with TestClient(TestServer(app)):
        session = app[key]
        assert session.headers["X-Test"] == "1"
        assert CLIENT_SESSION not in app
    assert session.closed
