"""The fake portal posts events to a handler the way Bitrix24 does; and answers app.info."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bitrix_openlines.testing import FakePortal, ThreadedFakePortal
from bitrix_openlines.testing._phpform import parse_query

from ._helpers import call, load_example, shape

MESSAGE_DATA = {
    "DATA": [
        {
            "connector": {"connector_id": "livechat", "line_id": 1, "chat_id": 77, "user_id": 9},
            "chat": {"id": 1},
            "message": {"id": 5, "text": "hello & bye+", "system": "N", "files": []},
        }
    ]
}


class Recorder:
    """A handler that records what it received and answers a chosen status."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict[str, Any]]] = []
        self.status = 200

    async def handle(self, request: web.Request) -> web.Response:
        raw = (await request.read()).decode("ascii")
        self.requests.append((request.content_type, raw, parse_query(raw)))
        return web.json_response({"ok": True}, status=self.status)


@pytest.fixture
async def handler() -> AsyncIterator[tuple[Recorder, str]]:
    recorder = Recorder()
    app = web.Application()
    app.router.add_post("/events", recorder.handle)
    server = TestServer(app)
    await server.start_server()
    try:
        yield recorder, str(server.make_url("/events"))
    finally:
        await server.close()


def documented(name: str) -> dict[str, Any]:
    body = load_example(name)
    assert isinstance(body, dict)
    return body


async def test_event_is_a_php_form_with_the_documented_keys(
    portal: FakePortal, handler: tuple[Recorder, str]
) -> None:
    recorder, url = handler
    status = await portal.send_event(url, "onOpenLineMessageAdd", MESSAGE_DATA)
    assert status == 200
    ((content_type, raw, body),) = recorder.requests
    assert content_type == "application/x-www-form-urlencoded"
    # PHP's http_build_query percent-encodes the brackets.
    assert "data%5BDATA%5D%5B0%5D%5Bchat%5D%5Bid%5D=1" in raw
    doc = documented("event__ONOPENLINEMESSAGEADD.json")
    assert list(body) == list(doc)
    assert body["event"] == "ONOPENLINEMESSAGEADD"
    assert body["eventId"].isdigit()
    assert abs(int(body["ts"]) - int(portal._unix_now())) <= 2
    assert list(body["auth"]) == list(doc["auth"])
    auth = body["auth"]
    assert auth["application_token"] == portal.application_token
    assert auth["member_id"] == portal.member_id
    assert auth["client_endpoint"] == portal.client_endpoint
    assert auth["expires_in"] == "3600"
    # Every value arrives as a string; empty arrays are left out, as PHP does.
    message = body["data"]["DATA"]["0"]["message"]
    assert message == {"id": "5", "text": "hello & bye+", "system": "N"}
    assert portal.stats.events == {"ONOPENLINEMESSAGEADD": 1}


@pytest.mark.parametrize(
    ("event", "example", "handler_key"),
    [
        ("ONAPPINSTALL", "event__ONAPPINSTALL.json", None),
        ("ONSESSIONSTART", "event__ONSESSIONSTART.json", "eventId"),
        ("ONCRMDEALADD", "event__ONCRMDEALADD_to_app.json", "event_handler_id"),
        ("ONIMCONNECTORDIALOGSTART", "event__ONIMCONNECTORDIALOGSTART.json", "eventId"),
        ("ONIMCONNECTORMESSAGEADD", "event__ONIMCONNECTORMESSAGEADD.json", "event_handler_id"),
        ("ONIMCONNECTORLINEDELETE", "event__ONIMCONNECTORLINEDELETE.json", "event_handler_id"),
        ("ONIMBOTMESSAGEADD", "event__ONIMBOTMESSAGEADD_group.json", "event_handler_id"),
        ("ONIMBOTJOINCHAT", "event__ONIMBOTJOINCHAT_group.json", "event_handler_id"),
        ("ONIMBOTDELETE", "event__ONIMBOTDELETE.json", "event_handler_id"),
        ("ONOPENLINEMESSAGEDELETE", "event__ONOPENLINEMESSAGEDELETE.json", "eventId"),
    ],
)
async def test_top_level_and_auth_keys_follow_each_doc_example(
    portal: FakePortal,
    handler: tuple[Recorder, str],
    event: str,
    example: str,
    handler_key: str | None,
) -> None:
    recorder, url = handler
    await portal.send_event(url, event, {"FIELDS": {"ID": 1}})
    body = recorder.requests[-1][2]
    doc = documented(example)
    assert set(body) == set(doc)
    assert set(body["auth"]) == set(doc["auth"])
    if handler_key is not None:
        assert handler_key in body
    # The install, Open Lines and bot message events carry a refresh token (PROTOCOL.md
    # 6.2, and the pages); the connector and bot pages show expires and user_id too.
    if set(doc["auth"]) >= {"expires", "user_id"}:
        assert list(body["auth"]) == list(doc["auth"])
        assert body["auth"]["user_id"] == "1"
        assert int(body["auth"]["expires"]) - int(body["ts"]) == 3600


async def test_an_uninstall_has_no_handler_id_and_no_tokens_when_asked(
    portal: FakePortal, handler: tuple[Recorder, str]
) -> None:
    recorder, url = handler
    await portal.send_event(url, "ONAPPUNINSTALL", {"LANGUAGE_ID": "de"}, with_tokens=False)
    body = recorder.requests[-1][2]
    doc = documented("event__ONAPPUNINSTALL.json")
    assert set(body) == set(doc)
    assert set(body["auth"]) == set(doc["auth"])


async def test_a_lone_value_as_data(portal: FakePortal, handler: tuple[Recorder, str]) -> None:
    recorder, url = handler
    await portal.send_event(url, "ONIMCONNECTORLINEDELETE", 107)
    assert "&data=107&" in recorder.requests[-1][1]
    assert recorder.requests[-1][2]["data"] == "107"


async def test_without_tokens_the_auth_block_is_like_an_outgoing_webhooks(
    portal: FakePortal, handler: tuple[Recorder, str]
) -> None:
    recorder, url = handler
    await portal.send_event(url, "ONCRMDEALADD", {"FIELDS": {"ID": 1}}, with_tokens=False)
    auth = recorder.requests[-1][2]["auth"]
    doc = documented("event__ONCRMDEALADD_to_outgoing_webhook.json")["auth"]
    assert list(auth) == list(doc)


async def test_the_event_tokens_work_on_the_portal(
    portal: FakePortal, handler: tuple[Recorder, str], http: aiohttp.ClientSession
) -> None:
    recorder, url = handler
    await portal.send_event(url, "ONAPPINSTALL", {"VERSION": "1", "INSTALLED": "Y"})
    auth = recorder.requests[-1][2]["auth"]
    status, _ = await call(
        http, portal.client_endpoint + "server.time", {"auth": auth["access_token"]}
    )
    assert status == 200
    params = {
        "grant_type": "refresh_token",
        "client_id": portal.client_id,
        "client_secret": portal.client_secret,
        "refresh_token": auth["refresh_token"],
    }
    async with http.get(portal.token_url, params=params) as response:
        assert response.status == 200


async def test_forged_and_missing_application_tokens(
    portal: FakePortal, handler: tuple[Recorder, str]
) -> None:
    recorder, url = handler
    await portal.send_event(url, "ONSESSIONSTART", {}, application_token="f" * 32)
    assert recorder.requests[-1][2]["auth"]["application_token"] == "f" * 32
    await portal.send_event(url, "ONSESSIONSTART", {}, application_token="")
    assert recorder.requests[-1][2]["auth"]["application_token"] == ""


async def test_the_handlers_status_is_returned(
    portal: FakePortal, handler: tuple[Recorder, str]
) -> None:
    recorder, url = handler
    recorder.status = 403
    assert await portal.send_event(url, "ONSESSIONSTART", {}) == 403


async def test_handler_ids_are_stable_per_event_and_url(
    portal: FakePortal, handler: tuple[Recorder, str]
) -> None:
    recorder, url = handler
    for event in ("ONCRMDEALADD", "ONCRMDEALADD", "ONCRMDEALUPDATE"):
        await portal.send_event(url, event, {})
    ids = [body["event_handler_id"] for _, _, body in recorder.requests]
    assert ids[0] == ids[1] != ids[2]


async def test_bad_arguments_and_unreachable_handlers(portal: FakePortal) -> None:
    with pytest.raises(ValueError, match="event"):
        await portal.send_event("http://127.0.0.1:1/", " ", {})
    with pytest.raises(ValueError, match="data"):
        await portal.send_event("http://127.0.0.1:1/", "X", [])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="data"):
        await portal.send_event("http://127.0.0.1:1/", "X", None)  # type: ignore[arg-type]
    with pytest.raises(aiohttp.ClientError):
        await portal.send_event("http://127.0.0.1:1/", "ONCRMDEALADD", {})


async def test_threaded_portal_sends_events_blocking(handler: tuple[Recorder, str]) -> None:
    recorder, url = handler
    with ThreadedFakePortal(dialogs=1) as threaded:
        # The handler runs on this loop: block a worker thread, not the loop.
        status = await asyncio.to_thread(threaded.send_event, url, "ONSESSIONSTART", {"DATA": []})
        assert status == 200
        assert threaded.stats.events == {"ONSESSIONSTART": 1}
    auth = recorder.requests[-1][2]["auth"]
    assert auth["application_token"] == threaded.application_token


def test_threaded_portal_must_be_started() -> None:
    with pytest.raises(RuntimeError, match="not started"):
        ThreadedFakePortal().send_event("http://127.0.0.1:1/", "X", {})


async def test_app_info_answers_oauth_callers_like_the_docs(
    portal: FakePortal, http: aiohttp.ClientSession
) -> None:
    access = portal.issue_tokens()["access_token"]
    status, body = await call(http, portal.client_endpoint + "app.info", {"auth": access})
    assert status == 200
    doc = {
        "ID": 5,
        "CODE": "telefum24.kp10",
        "VERSION": 4,
        "STATUS": "F",
        "INSTALLED": True,
        "PAYMENT_EXPIRED": "N",
        "DAYS": None,
        "LANGUAGE_ID": "de",
        "LICENSE": "de_ent10000",
        "LICENSE_TYPE": "ent10000",
        "LICENSE_FAMILY": "ent",
    }  # EN api-reference/common/system/app-info.md, "Response Handling"
    assert shape(body["result"]) == shape(doc)
    assert body["result"]["CODE"] == portal.client_id


async def test_app_info_refuses_webhooks(portal: FakePortal, http: aiohttp.ClientSession) -> None:
    status, body = await call(http, portal.webhook_url + "app.info", {})
    assert status == 400
    assert body == load_example("error__ACCESS_DENIED__app.info.json")
