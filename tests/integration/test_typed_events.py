"""The connector, bot and app events, posted by the fake portal over real sockets (issue 16).

The fake portal posts each documented event's ``data`` (``tests/data/docs-examples``)
form-encoded, with an ``auth`` block of its own: the handler reads it with ``read_event``
and gets the same typed event as the doc page's body gives, with the auth fields the
newer pages show (``expires``, ``user_id``) kept and carried into the token pair.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import attrs
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bitrix_openlines import OAuthAuth, OpenLinesClient, RetryPolicy, parse_event
from bitrix_openlines.contrib.aiohttp import read_event
from bitrix_openlines.events import (
    AppInstallEvent,
    AppUninstallEvent,
    BotDeleteEvent,
    BotJoinChatEvent,
    BotMessageEvent,
    ConnectorDialogEvent,
    ConnectorLineDeleteEvent,
    ConnectorMessageEvent,
    ConnectorStatusDeleteEvent,
    Event,
    OpenLineMessageEvent,
)
from bitrix_openlines.testing import FakePortal

pytestmark = pytest.mark.integration

EXAMPLES: dict[str, type[Event]] = {
    "event__ONIMCONNECTORMESSAGEADD.json": ConnectorMessageEvent,
    "event__ONIMCONNECTORMESSAGEUPDATE.json": ConnectorMessageEvent,
    "event__ONIMCONNECTORMESSAGEDELETE.json": ConnectorMessageEvent,
    "event__ONIMCONNECTORDIALOGSTART.json": ConnectorDialogEvent,
    "event__ONIMCONNECTORDIALOGFINISH.json": ConnectorDialogEvent,
    "event__ONIMCONNECTORSTATUSDELETE.json": ConnectorStatusDeleteEvent,
    "event__ONIMCONNECTORLINEDELETE.json": ConnectorLineDeleteEvent,
    "event__ONIMBOTMESSAGEADD_personal.json": BotMessageEvent,
    "event__ONIMBOTMESSAGEADD_group.json": BotMessageEvent,
    "event__ONIMBOTMESSAGEUPDATE_group.json": BotMessageEvent,
    "event__ONIMBOTMESSAGEDELETE_personal.json": BotMessageEvent,
    "event__ONIMBOTJOINCHAT_group.json": BotJoinChatEvent,
    "event__ONIMBOTDELETE.json": BotDeleteEvent,
    "event__ONAPPUNINSTALL.json": AppUninstallEvent,
    "event__ONOPENLINEMESSAGEUPDATE.json": OpenLineMessageEvent,
    "event__ONOPENLINEMESSAGEDELETE.json": OpenLineMessageEvent,
}


def example(docs: Path, name: str) -> dict[str, Any]:
    value = json.loads((docs / name).read_text(encoding="utf-8"))
    assert isinstance(value, dict)
    return value


def typed_part(event: Event) -> Event:
    """The event without what the portal sets for itself (auth, ids, time) and raw data."""
    return attrs.evolve(event, auth=None, handler_id=None, ts=None, data={})


@pytest.fixture
async def received(portal: FakePortal) -> AsyncIterator[tuple[str, list[Event]]]:
    """A handler verifying events with the portal's token; the URL and what it read."""
    seen: list[Event] = []

    async def handle(request: web.Request) -> web.Response:
        seen.append(await read_event(request, application_token=portal.application_token))
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/events", handle)
    server = TestServer(app)
    await server.start_server()
    try:
        yield str(server.make_url("/events")), seen
    finally:
        await server.close()


Send = Callable[..., Awaitable[Event]]


@pytest.fixture
def send(portal: FakePortal, received: tuple[str, list[Event]]) -> Send:
    url, seen = received

    async def post(event: str, data: Any, **options: Any) -> Event:
        assert await portal.send_event(url, event, data, **options) == 200
        return seen[-1]

    return post


@pytest.mark.parametrize("name", sorted(EXAMPLES))
async def test_each_documented_event_arrives_typed(
    docs_examples: Path, send: Send, name: str
) -> None:
    body = example(docs_examples, name)
    event = await send(body["event"], body["data"])
    assert type(event) is EXAMPLES[name]
    # Over the socket, form-encoded, the same typed values as the page's body gives.
    assert typed_part(event) == typed_part(parse_event(body))
    # A handler id where the page shows one.
    expected = body.get("event_handler_id", body.get("eventId"))
    assert (event.handler_id is None) == (expected is None)


async def test_connector_and_bot_events_carry_expires_and_user_id(
    portal: FakePortal, send: Send, docs_examples: Path
) -> None:
    body = example(docs_examples, "event__ONIMCONNECTORMESSAGEADD.json")
    event = await send(body["event"], body["data"])
    assert event.auth is not None
    assert event.auth.user_id == 1  # the portal's user
    assert event.auth.expires is not None
    assert event.auth.expires == pytest.approx(portal.unix_time() + 3600, abs=5)
    assert event.auth.refresh_token is None  # as the connector pages show
    assert event.auth.tokens() is None


async def test_the_pair_from_a_bot_event_has_its_user_and_works(
    portal: FakePortal, send: Send, docs_examples: Path
) -> None:
    body = example(docs_examples, "event__ONIMBOTMESSAGEADD_personal.json")
    event = await send(body["event"], body["data"])
    assert isinstance(event, BotMessageEvent)
    assert event.auth is not None
    tokens = event.auth.tokens()
    assert tokens is not None
    assert tokens.user_id == 1
    assert tokens.expires_at == event.auth.expires
    auth = OAuthAuth(
        client_id=portal.client_id,
        client_secret=portal.client_secret,
        token_url=portal.token_url,
        tokens=tokens,
    )
    async with OpenLinesClient(auth, retry=RetryPolicy.no_wait(), rate_limit=None) as client:
        dialog = await client.get_dialog(chat_id=1)
    assert dialog.id == 1


async def test_an_install_without_flags_is_unknown(send: Send) -> None:
    event = await send("ONAPPINSTALL", {"VERSION": "1", "LANGUAGE_ID": "en"})
    assert isinstance(event, AppInstallEvent)
    assert (event.version, event.active, event.installed) == ("1", None, None)
    assert event.handler_id is None
    event = await send("ONAPPINSTALL", {"VERSION": "1", "ACTIVE": "Y", "INSTALLED": "N"})
    assert isinstance(event, AppInstallEvent)
    assert (event.active, event.installed) == (True, False)


async def test_both_update_shapes_give_the_dialog(send: Send, docs_examples: Path) -> None:
    newer = example(docs_examples, "event__ONOPENLINEMESSAGEUPDATE.json")["data"]
    older = example(docs_examples, "event__ONOPENLINEMESSAGEADD.json")["data"]
    for data, user_code in ((newer, "livechat|128||"), (older, "livechat|128|10587|1985")):
        event = await send("ONOPENLINEMESSAGEUPDATE", data)
        assert isinstance(event, OpenLineMessageEvent)
        (item,) = event.items
        assert item.connector.user_code == user_code
        assert item.chat.id in (1024, 10585)


async def test_a_line_delete_posts_the_line_alone(portal: FakePortal, send: Send) -> None:
    event = await send("ONIMCONNECTORLINEDELETE", 107)
    assert isinstance(event, ConnectorLineDeleteEvent)
    assert event.line_id == 107
    with pytest.raises(ValueError, match="data must be a mapping, int or str"):
        await portal.send_event("http://127.0.0.1:1/", "ONIMCONNECTORLINEDELETE", True)
