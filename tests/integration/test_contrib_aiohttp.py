"""bitrix_openlines.contrib.aiohttp in a real aiohttp server, with the fake portal posting."""

from __future__ import annotations

import functools
import gzip
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from _serve import serve
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer, make_mocked_request

from bitrix_openlines import (
    InMemoryTokenStore,
    OAuthAuth,
    OAuthTokens,
    OpenLinesApp,
    OpenLinesClient,
    RetryPolicy,
    TokenStore,
)
from bitrix_openlines.contrib.aiohttp import (
    CLIENT_SESSION,
    EventError,
    EventLimits,
    EventVerificationError,
    app_event_handler,
    client_session_ctx,
    read_event,
)
from bitrix_openlines.events import Event, OpenLineMessageEvent, SessionEvent, verify_event
from bitrix_openlines.testing import FakePortal, FakePortalHost, Faults
from bitrix_openlines.testing._phpform import build_query

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


def event_app(reader: Reader, **app_options: Any) -> web.Application:
    """An app whose /events handler answers what ``reader`` made of the request."""

    async def handle(request: web.Request) -> web.Response:
        try:
            event = await reader(request)
        except EventVerificationError as error:
            return web.json_response({"error": str(error)}, status=403)
        except EventError as error:
            return web.json_response({"error": str(error)}, status=400)
        return web.json_response({"event": event.name, "type": type(event).__name__})

    app = web.Application(**app_options)
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


# -- hostile bodies: every one answers 4xx, none is read past its cap ----------------------

SECRET = "s6p6eclrvim6da22ft9ch94ekreb52lv"  # planted in hostile bodies: never echoed
FORM = "application/x-www-form-urlencoded"


def _deep_json(levels: int) -> bytes:
    return b'{"event": "X", "data": ' + b"[" * levels + b"]" * levels + b"}"


HOSTILE: dict[str, tuple[bytes, str, int, str]] = {
    # name: (body, content type, status, what the answer's message names)
    "oversized": (
        b"event=X&auth[application_token]=" + SECRET.encode() + b"&data[a]=" + b"x" * 2**20,
        FORM,
        400,
        "max_bytes",
    ),
    "too many keys (140 KiB of data[]=x)": (
        b"event=X&" + b"&".join([b"data[]=x"] * 16_000),
        FORM,
        400,
        "max_fields",
    ),
    "too deep a form name": (
        b"event=X&data" + b"[a]" * 65 + b"=" + SECRET.encode(),
        FORM,
        400,
        "max_depth",
    ),
    "too deep a form name, 300 KB": (
        b"event=X&data" + b"[a]" * 100_000 + b"=1",
        FORM,
        400,
        "max_depth",
    ),
    "JSON nested 50,000 deep": (_deep_json(50_000), "application/json", 400, "max_depth"),
    "JSON nested 65 deep": (_deep_json(65), "application/json", 400, "max_depth"),
    "lone surrogate token": (
        b'{"event": "X", "auth": {"application_token": "\\ud800' + SECRET.encode() + b'"}}',
        "application/json",
        400,
        "lone surrogate",
    ),
    "5,000-digit ts": (b"event=X&ts=" + b"1" * 5000, FORM, 400, "ts"),
    "5,000-digit JSON ts": (
        b'{"event": "X", "ts": ' + b"1" * 5000 + b"}",
        "application/json",
        400,
        "not valid JSON",
    ),
    "id past 64 bits": (
        b"event=ONOPENLINEMESSAGEADD&data[DATA][0][chat][id]=" + b"9" * 20,
        FORM,
        400,
        "chat[id]",
    ),
    "not UTF-8": (b"event=X&data[a]=\xff\xfe" + SECRET.encode(), FORM, 400, "not UTF-8"),
    # A 5,000-digit list key makes no list (and no crash): parsed, then unverified.
    "huge list key": (
        b"event=ONSESSIONSTART&data[DATA][" + b"1" * 5000 + b"][session][id]=5",
        FORM,
        403,
        "carries no auth[application_token]",
    ),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
async def test_hostile_bodies_answer_4xx_naming_the_cause(
    name: str, served: Callable[[Reader], Awaitable[str]]
) -> None:
    body, content_type, status, cause = HOSTILE[name]
    url = await served(functools.partial(read_event, application_token=SECRET))
    async with (
        aiohttp.ClientSession() as http,
        http.post(url, data=body, headers={"Content-Type": content_type}) as response,
    ):
        assert response.status == status
        error = (await response.json())["error"]
    assert cause in error
    assert SECRET not in error
    assert len(error) < 200


async def test_a_large_body_under_the_caps_is_parsed_then_refused_unverified(
    served: Callable[[Reader], Awaitable[str]],
) -> None:
    """The issue's 53 KiB of ``data[]=x``: parsed (linear), then 403 for want of a token."""
    seen: list[Any] = []

    async def reader(request: web.Request) -> Any:
        event = await read_event(request, verify=False)
        seen.append(event)
        return verify_event(event, SECRET)

    url = await served(reader)
    body = b"event=X&" + b"&".join([b"data[]=x"] * 6_000)
    async with (
        aiohttp.ClientSession() as http,
        http.post(url, data=body, headers={"Content-Type": FORM}) as response,
    ):
        assert response.status == 403
    (event,) = seen
    assert len(event.data) == 6_000
    assert event.data["5999"] == "x"


async def _chunks(body: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


async def test_a_chunked_body_is_read_only_up_to_max_bytes() -> None:
    """No Content-Length: read through a capped clone, refused mid-stream."""
    unread: list[bool] = []

    async def reader(request: web.Request) -> Any:
        assert request.content_length is None
        try:
            return await read_event(request, verify=False, limits=EventLimits(max_bytes=1000))
        finally:
            unread.append(request.can_read_body)

    async with TestClient(TestServer(event_app(reader))) as client:
        small = b"event=ONSESSIONSTART&data[DATA][0][session][id]=5"
        headers = {"Content-Type": FORM}
        async with client.post("/events", data=_chunks(small), headers=headers) as response:
            assert response.status == 200
        big = b"event=X&data[a]=" + b"x" * 5_000_000
        async with client.post("/events", data=_chunks(big), headers=headers) as response:
            assert response.status == 400
            assert "larger than 1,000 bytes (max_bytes)" in (await response.json())["error"]
    # The small body was read to its end; the big one was left mid-stream, at the cap.
    assert unread == [False, True]


async def test_a_compressed_body_is_capped_as_inflated() -> None:
    """A 5 KB gzip body that inflates to 5 MB: its Content-Length does not bound it."""
    limits = EventLimits(max_bytes=100_000)
    capped = functools.partial(read_event, verify=False, limits=limits)
    async with TestClient(TestServer(event_app(capped))) as client:
        body = gzip.compress(b"event=X&data[a]=" + b"x" * 5_000_000)
        assert len(body) < 10_000
        headers = {"Content-Type": FORM, "Content-Encoding": "gzip"}
        async with client.post("/events", data=body, headers=headers) as response:
            assert response.status == 400
            assert "larger than 100,000 bytes" in (await response.json())["error"]
        small = gzip.compress(b"event=ONSESSIONSTART")
        async with client.post("/events", data=small, headers=headers) as response:
            assert response.status == 200
            assert (await response.json())["type"] == "SessionEvent"
    # With the defaults, the app's own client_max_size (1 MiB too) stops it first: 413.
    default = functools.partial(read_event, verify=False)
    async with TestClient(TestServer(event_app(default))) as client:
        async with client.post("/events", data=body, headers=headers) as response:
            assert response.status == 413


async def test_a_declared_length_past_max_bytes_is_refused_unread() -> None:
    unread: list[bool] = []

    async def reader(request: web.Request) -> Any:
        try:
            return await read_event(request, verify=False, limits=EventLimits(max_bytes=100))
        finally:
            unread.append(request.can_read_body)

    async with TestClient(TestServer(event_app(reader))) as client:
        body = b"event=X&data[a]=" + b"x" * 200_000
        async with client.post("/events", data=body, headers={"Content-Type": FORM}) as response:
            assert response.status == 400
            error = (await response.json())["error"]
            assert "larger than 100 bytes (200,016 bytes declared) (max_bytes)" in error
        form = aiohttp.FormData()
        form.add_field("event", "X")
        form.add_field("data[a]", "x" * 500)
        async with client.post("/events", data=form) as response:
            assert response.status == 400
            assert "max_bytes" in (await response.json())["error"]
    assert unread == [True, True]


async def test_custom_limits_and_the_body_kept_for_the_handler() -> None:
    bodies: list[bytes] = []

    async def reader(request: web.Request) -> Any:
        event = await read_event(request, verify=False, limits=EventLimits(max_fields=3))
        bodies.append(await request.read())  # still there after read_event
        return event

    async with TestClient(TestServer(event_app(reader))) as client:
        body = b"event=X&data[a]=1&data[b]=2"
        async with client.post("/events", data=body, headers={"Content-Type": FORM}) as response:
            assert response.status == 200
        async with client.post(
            "/events", data=body + b"&data[c]=3", headers={"Content-Type": FORM}
        ) as response:
            assert response.status == 400
            assert "more than 3 fields (max_fields)" in (await response.json())["error"]
    assert bodies == [body]


async def test_the_apps_own_smaller_cap_still_answers_413() -> None:
    app = event_app(functools.partial(read_event, verify=False), client_max_size=1000)
    async with TestClient(TestServer(app)) as client:
        body = b"event=X&data[a]=" + b"x" * 2000
        async with client.post(
            "/events", data=_chunks(body, 500), headers={"Content-Type": FORM}
        ) as response:
            assert response.status == 413


async def test_limits_of_another_type_are_a_type_error() -> None:
    request = make_mocked_request("POST", "/events")
    with pytest.raises(TypeError, match="limits must be an EventLimits"):
        await read_event(request, verify=False, limits=1000)  # type: ignore[arg-type]


# -- app_event_handler: its answers other than 200, over real sockets --------------------

INSTALL = {"VERSION": "1", "ACTIVE": "Y", "INSTALLED": "Y", "LANGUAGE_ID": "en"}
APP_LIMITS = EventLimits(max_bytes=64 * 1024)


class SwitchableStore(InMemoryTokenStore):
    """An in-memory store whose named methods fail while listed in ``failing``.

    The failure quotes the application token it was given: it must reach no answer.
    """

    def __init__(self, leak: str) -> None:
        super().__init__()
        self.failing: set[str] = set()
        self.leak = leak

    def _check(self, method: str) -> None:
        if method in self.failing:
            raise ConnectionError(f"the store is down ({self.leak})")

    async def load(self, key: str) -> OAuthTokens | None:
        self._check("load")
        return await super().load(key)

    async def save(self, key: str, tokens: OAuthTokens) -> None:
        self._check("save")
        await super().save(key, tokens)

    async def load_app_token(self, key: str) -> str | None:
        self._check("load_app_token")
        return await super().load_app_token(key)

    async def save_app_token(self, key: str, application_token: str) -> None:
        self._check("save_app_token")
        await super().save_app_token(key, application_token)

    async def delete(self, key: str) -> None:
        self._check("delete")
        await super().delete(key)


class AppServed:
    """Two fake portals, an ``OpenLinesApp`` and ``app_event_handler`` on a real server."""

    def __init__(self, host: FakePortalHost, app: OpenLinesApp, store: SwitchableStore) -> None:
        self.host = host
        self.app = app
        self.store = store
        self.url = ""
        self.seen: list[str] = []  # "NAME member_id" of each event on_event was called with

    @property
    def a(self) -> FakePortal:
        return self.host.portals[0]

    @property
    def b(self) -> FakePortal:
        return self.host.portals[1]

    async def stored(self, portal: FakePortal) -> tuple[OAuthTokens | None, str | None]:
        """What the store holds for ``portal`` (read past any failure being simulated)."""
        key = portal.member_id
        return await InMemoryTokenStore.load(
            self.store, key
        ), await InMemoryTokenStore.load_app_token(self.store, key)

    async def post(self, body: bytes | AsyncIterator[bytes], content_type: str = FORM) -> Any:
        async with (
            aiohttp.ClientSession() as http,
            http.post(self.url, data=body, headers={"Content-Type": content_type}) as response,
        ):
            return response.status, await response.json()


def host_app(host: FakePortalHost, http: aiohttp.ClientSession, store: TokenStore) -> OpenLinesApp:
    """An ``OpenLinesApp`` of ``host``'s application, unlimited, retrying nothing."""
    return OpenLinesApp(
        client_id=host.client_id,
        client_secret=host.client_secret,
        store=store,
        session=http,
        rate_limit=None,
        retry=RetryPolicy.no_wait(),
    )


@pytest.fixture
async def app_served() -> AsyncIterator[AppServed]:
    async with FakePortalHost(2, dialogs=5, rate=None) as host, host.client_session() as http:
        store = SwitchableStore(leak=host.portals[0].application_token)
        app = host_app(host, http, store)
        served = AppServed(host, app, store)

        async def on_event(event: Event, request: web.Request) -> None:
            served.seen.append(f"{event.name} {event.member_id}")

        web_app = web.Application()
        web_app.router.add_post("/events", app_event_handler(app, on_event, limits=APP_LIMITS))
        async with serve(web_app) as port:
            served.url = f"http://127.0.0.1:{port}/events"
            yield served
        await app.close()


def install_body(portal: FakePortal, padding: int = 0) -> bytes:
    """An ``ONAPPINSTALL`` of ``portal`` with a working pair, as the portal posts it."""
    tokens = portal.issue_tokens()
    auth = {
        "access_token": tokens["access_token"],
        "refresh_token": tokens["refresh_token"],
        "client_endpoint": portal.client_endpoint,
        "server_endpoint": portal.client_endpoint,
        "member_id": portal.member_id,
        "application_token": portal.application_token,
    }
    data = {**INSTALL, "PADDING": "x" * padding}
    return build_query({"event": "ONAPPINSTALL", "data": data, "ts": 1, "auth": auth}).encode()


async def test_app_handler_refuses_malformed_and_oversized_bodies_then_serves(
    app_served: AppServed,
) -> None:
    a = app_served.a
    bad = {
        "not an event": (b"not an event", FORM),
        "not JSON": (b'{"event": "ONAPPINSTALL", ', "application/json"),
        "not UTF-8": (b"event=ONAPPINSTALL&data[a]=\xff\xfe", FORM),
        "too deep": (b"event=ONAPPINSTALL&data" + b"[a]" * 65 + b"=1", FORM),
        "an install without its tokens": (
            build_query(
                {"event": "ONAPPINSTALL", "data": INSTALL, "auth": {"member_id": a.member_id}}
            ).encode(),
            FORM,
        ),
    }
    for name, (body, content_type) in bad.items():
        status, answer = await app_served.post(body, content_type)
        assert status == 400, name
        assert answer["ok"] is False, name
    # A working install past the app's 64 KiB cap: refused whole, declared or chunked.
    oversized = install_body(a, padding=APP_LIMITS.max_bytes)
    status, answer = await app_served.post(oversized)
    assert status == 400
    assert "max_bytes" in answer["error"]
    status, answer = await app_served.post(_chunks(install_body(a, APP_LIMITS.max_bytes), 4096))
    assert status == 400
    assert "max_bytes" in answer["error"]
    assert a.application_token not in repr(answer)
    # Nothing was stored, nothing reached the portal or the callback.
    assert await app_served.stored(a) == (None, None)
    assert a.stats.by_method == {}
    assert app_served.seen == []
    # The app still serves: the same install, under the cap, goes through.
    status, answer = await app_served.post(install_body(a, padding=1000))
    assert (status, answer) == (200, {"ok": True, "event": "ONAPPINSTALL"})
    pair, token = await app_served.stored(a)
    assert pair is not None
    assert token == a.application_token
    assert app_served.seen == [f"ONAPPINSTALL {a.member_id}"]


async def test_app_handler_refuses_forged_and_unknown_portals_events(
    app_served: AppServed,
) -> None:
    a, b = app_served.a, app_served.b
    url = app_served.url
    assert await a.send_event(url, "ONAPPINSTALL", INSTALL) == 200
    before = await app_served.stored(a)
    forged_by_b = b.application_token
    # A's member_id with another (valid, B's) token: a message, a takeover, an uninstall.
    assert (
        await a.send_event(url, "ONOPENLINEMESSAGEADD", MESSAGE, application_token=forged_by_b)
        == 403
    )
    assert await a.send_event(url, "ONAPPINSTALL", INSTALL, application_token=forged_by_b) == 403
    assert (
        await a.send_event(
            url, "ONAPPUNINSTALL", {}, with_tokens=False, application_token=forged_by_b
        )
        == 403
    )
    assert await a.send_event(url, "ONSESSIONSTART", MESSAGE, application_token="") == 403
    # B never installed the app: its events are refused, and not stored.
    assert await b.send_event(url, "ONOPENLINEMESSAGEADD", MESSAGE) == 403
    assert await app_served.stored(b) == (None, None)
    # An auth block naming no portal, or a member_id no store key may be built from.
    for member_id in ("", "../" + a.member_id, "x" * 65):
        body = build_query(
            {
                "event": "ONOPENLINEMESSAGEADD",
                "data": MESSAGE,
                "auth": {"member_id": member_id, "application_token": a.application_token},
            }
        ).encode()
        status, answer = await app_served.post(body)
        assert (status, answer) == (403, {"ok": False, "error": "forbidden"}), member_id
    # Nothing changed for A, only the install reached the callback and the portal.
    assert await app_served.stored(a) == before
    assert app_served.seen == [f"ONAPPINSTALL {a.member_id}"]
    assert a.stats.by_method == {"app.info": 1}
    assert b.stats.by_method == {}
    # A's own events are still served.
    assert await a.send_event(url, "ONOPENLINEMESSAGEADD", MESSAGE) == 200
    assert app_served.seen[-1] == f"ONOPENLINEMESSAGEADD {a.member_id}"


@pytest.mark.parametrize(
    ("failing", "pair_kept"),
    [("load_app_token", False), ("save", False), ("save_app_token", True)],
)
async def test_app_handler_answers_503_when_the_store_fails_an_install(
    app_served: AppServed,
    failing: str,
    pair_kept: bool,
    caplog: pytest.LogCaptureFixture,
) -> None:
    a = app_served.a
    url = app_served.url
    app_served.store.failing = {failing}
    status, answer = await app_served.post(install_body(a))
    assert (status, answer) == (503, {"ok": False, "error": "unavailable"})
    # No application token stored: the portal's events are not accepted yet. The pair
    # is saved first, so a failure saving the token leaves a pair no event can use.
    pair, token = await app_served.stored(a)
    assert token is None
    assert (pair is not None) is pair_kept
    assert app_served.seen == []
    app_served.store.failing = set()
    assert await a.send_event(url, "ONOPENLINEMESSAGEADD", MESSAGE) == 403
    # The store is back: the portal's next install goes through, and its events.
    assert await a.send_event(url, "ONAPPINSTALL", INSTALL) == 200
    assert (await app_served.stored(a))[1] == a.application_token
    assert await a.send_event(url, "ONOPENLINEMESSAGEADD", MESSAGE) == 200
    assert app_served.seen == [
        f"ONAPPINSTALL {a.member_id}",
        f"ONOPENLINEMESSAGEADD {a.member_id}",
    ]
    # The store's failure quoted the application token: no answer or log shows it.
    assert a.application_token not in caplog.text


async def test_app_handler_answers_503_when_the_store_fails_an_event_or_uninstall(
    app_served: AppServed,
) -> None:
    a = app_served.a
    url = app_served.url
    assert await a.send_event(url, "ONAPPINSTALL", INSTALL) == 200
    installed = await app_served.stored(a)
    # The token cannot be read: the event is neither accepted nor refused.
    app_served.store.failing = {"load_app_token"}
    assert await a.send_event(url, "ONOPENLINEMESSAGEADD", MESSAGE) == 503
    # The state cannot be deleted: the uninstall is not done, and nothing is lost.
    app_served.store.failing = {"delete"}
    status, answer = await app_served.post(
        build_query(
            {
                "event": "ONAPPUNINSTALL",
                "data": {"CLEAN": "0"},
                "auth": {"member_id": a.member_id, "application_token": a.application_token},
            }
        ).encode()
    )
    assert (status, answer) == (503, {"ok": False, "error": "unavailable"})
    assert await app_served.stored(a) == installed
    assert app_served.seen == [f"ONAPPINSTALL {a.member_id}"]
    # The store is back: the same events go through, the uninstall forgets the portal.
    app_served.store.failing = set()
    assert await a.send_event(url, "ONOPENLINEMESSAGEADD", MESSAGE) == 200
    assert await a.send_event(url, "ONAPPUNINSTALL", {"CLEAN": "0"}, with_tokens=False) == 200
    assert await app_served.stored(a) == (None, None)
    assert app_served.seen[1:] == [
        f"ONOPENLINEMESSAGEADD {a.member_id}",
        f"ONAPPUNINSTALL {a.member_id}",
    ]


async def test_app_handler_answers_503_to_an_install_its_portal_cannot_confirm(
    app_served: AppServed,
) -> None:
    """The portal drops the app.info check: the install is not stored and is answered
    503 (the portal could not answer; its tokens were not refused), and the next
    install, once the portal answers, goes through."""
    a = app_served.a
    a.set_faults(Faults(drop=1.0))
    assert await a.send_event(app_served.url, "ONAPPINSTALL", INSTALL) == 503
    assert await app_served.stored(a) == (None, None)
    assert app_served.seen == []
    assert a.stats.by_method.get("app.info", 0) >= 1
    a.set_faults(None)
    assert await a.send_event(app_served.url, "ONAPPINSTALL", INSTALL) == 200
    assert (await app_served.stored(a))[1] == a.application_token
    assert app_served.seen == [f"ONAPPINSTALL {a.member_id}"]


async def test_app_handler_parses_within_the_limits_it_reads_within() -> None:
    # app_event_handler(limits=...) caps the parse as well as the read: a handler's
    # lower max_fields is not lost to the app's defaults (before, only the read was).
    async with FakePortalHost(1, dialogs=5, rate=None) as host, host.client_session() as http:
        app = host_app(host, http, InMemoryTokenStore())
        web_app = web.Application()
        web_app.router.add_post("/events", app_event_handler(app))
        strict = EventLimits(max_fields=6)
        web_app.router.add_post("/strict", app_event_handler(app, limits=strict))
        async with serve(web_app) as port:
            base = f"http://127.0.0.1:{port}"
            portal = host.portals[0]
            assert await portal.send_event(f"{base}/events", "ONAPPINSTALL", INSTALL) == 200
            message = "ONOPENLINEMESSAGEADD"
            assert await portal.send_event(f"{base}/strict", message, MESSAGE) == 400
            assert await portal.send_event(f"{base}/events", message, MESSAGE) == 200
        await app.close()
