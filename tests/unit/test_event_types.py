"""The events connectors and bots live on, typed from their doc pages (issue 16, "Events").

Bodies come from the official event pages (``tests/data/docs-examples/event__*.json``,
sources in its README), delivered as a portal delivers them: form-encoded by PHP's
``http_build_query`` (``tests/unit/_php_query.py``), where every value is a string and a
list is a map keyed ``"0"``, ``"1"``... The shapes the pages do not show come from the
issue: an ``ONAPPINSTALL`` without ``ACTIVE`` and ``INSTALLED`` (a real 2020 one), the
older ``ONOPENLINEMESSAGEUPDATE`` whose entries carry their own ``connector`` block.

The walker checks that every value of ``data`` is reachable from the typed event: a key
a field reads holds the same value (in its typed form), any other key is in that
object's ``extra``, as sent.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import pytest
from _php_query import http_build_query

from bitrix_openlines import parse_event, verify_event
from bitrix_openlines.errors import EventError
from bitrix_openlines.events import (
    AppInstallEvent,
    AppUninstallEvent,
    BotDeleteEvent,
    BotJoinChatEvent,
    BotMessageEvent,
    BotUser,
    ConnectorDialogEvent,
    ConnectorInfo,
    ConnectorLineDeleteEvent,
    ConnectorMessageEvent,
    ConnectorStatusDeleteEvent,
    Event,
    EventAuth,
    EventBot,
    ImInfo,
    OpenLineMessageEvent,
    SessionInfo,
)
from bitrix_openlines.wire import parse_form

FORM = "application/x-www-form-urlencoded"

# Every documented event with a type of its own, but the line delete (its data is no
# object: tested apart).
TYPED_EXAMPLES = [
    "event__ONAPPINSTALL.json",
    "event__ONAPPUNINSTALL.json",
    "event__ONIMBOTDELETE.json",
    "event__ONIMBOTJOINCHAT_group.json",
    "event__ONIMBOTJOINCHAT_personal.json",
    "event__ONIMBOTMESSAGEADD_group.json",
    "event__ONIMBOTMESSAGEADD_personal.json",
    "event__ONIMBOTMESSAGEDELETE_group.json",
    "event__ONIMBOTMESSAGEDELETE_personal.json",
    "event__ONIMBOTMESSAGEUPDATE_group.json",
    "event__ONIMBOTMESSAGEUPDATE_personal.json",
    "event__ONIMCONNECTORDIALOGFINISH.json",
    "event__ONIMCONNECTORDIALOGSTART.json",
    "event__ONIMCONNECTORMESSAGEADD.json",
    "event__ONIMCONNECTORMESSAGEDELETE.json",
    "event__ONIMCONNECTORMESSAGEUPDATE.json",
    "event__ONIMCONNECTORSTATUSDELETE.json",
    "event__ONOPENLINEMESSAGEADD.json",
    "event__ONOPENLINEMESSAGEDELETE.json",
    "event__ONOPENLINEMESSAGEUPDATE.json",
    "event__ONSESSIONSTART.json",
]
# The types whose every object keeps unknown keys in ``extra`` (an Open Lines message
# entry keeps them in ``raw``).
EXTRA_EVERYWHERE = [
    name for name in TYPED_EXAMPLES if not name.startswith("event__ONOPENLINEMESSAGE")
]


def example(docs: Path, name: str) -> dict[str, Any]:
    value = json.loads((docs / name).read_text(encoding="utf-8"))
    assert isinstance(value, dict)
    return value


def delivered(body: Mapping[str, Any]) -> Event:
    """Parse ``body`` as a portal delivers it: a PHP form."""
    return parse_event(http_build_query(body).encode("ascii"), FORM)


def from_page(docs: Path, name: str) -> Event:
    return delivered(example(docs, name))


# -- the walker --------------------------------------------------------------------------

_TRUE_WORDS = frozenset({"Y", "TRUE", "1"})


def _where(path: tuple[Any, ...]) -> str:
    return "data" + "".join(f"[{part}]" for part in path)


def _same_leaf(raw: Any, typed: Any) -> bool:
    if isinstance(typed, bool):
        return (str(raw).strip().upper() in _TRUE_WORDS) is typed
    if isinstance(typed, int):
        return not isinstance(raw, bool) and str(raw).strip() == str(typed)
    if isinstance(typed, str):
        return raw == typed or (isinstance(raw, int) and str(raw) == typed)
    if typed is None:
        return raw in (None, "", [], {})  # "" and PHP's []: nothing sent
    return bool(raw == typed)


def assert_reachable(raw: Any, typed: Any, path: tuple[Any, ...] = ()) -> None:
    """Fail unless every leaf of ``raw`` is reachable, at its place, on ``typed``."""
    if attrs.has(type(typed)):
        assert isinstance(raw, Mapping), f"{_where(path)}: an object became {typed!r}"
        fields = attrs.fields(type(typed))
        keyed = {f.metadata["key"]: f.name for f in fields if "key" in f.metadata}
        unknown = [f.name for f in fields if f.metadata.get("unknown")]
        for key, value in raw.items():
            where = (*path, key)
            if key in keyed:
                assert_reachable(value, getattr(typed, keyed[key]), where)
                continue
            assert unknown, f"{_where(where)} was dropped: {type(typed).__name__} has no extra"
            extra = getattr(typed, unknown[0])
            assert key in extra, f"{_where(where)} was dropped"
            assert extra[key] == value, f"{_where(where)}: {value!r} became {extra[key]!r}"
        return
    if isinstance(typed, tuple):
        # A list, a PHP map keyed "0", "1"... or by ids (BOT, MENTIONED_LIST), or one
        # value alone (a connector's message id).
        if isinstance(raw, Mapping):
            items = list(raw.values())
        elif isinstance(raw, list):
            items = raw
        else:
            items = [] if raw in (None, "") else [raw]
        assert len(items) == len(typed), f"{_where(path)}: {len(items)} items, {len(typed)}"
        for index, (item, typed_item) in enumerate(zip(items, typed, strict=True)):
            assert_reachable(item, typed_item, (*path, index))
        return
    if typed is None or not isinstance(raw, Mapping | list):
        assert _same_leaf(raw, typed), f"{_where(path)}: {raw!r} became {typed!r}"
        return
    # Kept as sent (an attachment, the entry's own ``extra`` block).
    assert raw == typed, f"{_where(path)}: {raw!r} became {typed!r}"


@pytest.mark.parametrize("name", TYPED_EXAMPLES)
@pytest.mark.parametrize("encoding", ["form", "json"])
def test_every_value_of_each_documented_event_is_reachable(
    docs_examples: Path, name: str, encoding: str
) -> None:
    body = example(docs_examples, name)
    if encoding == "form":
        event = delivered(body)
    else:
        event = parse_event(json.dumps(body), "application/json")
    assert not isinstance(event, ConnectorLineDeleteEvent)
    assert event.data, name
    assert_reachable(event.data, event)
    assert event.auth is not None
    raw = parse_form(http_build_query(body)) if encoding == "form" else body
    assert_reachable(raw["auth"], event.auth)


def _plant(node: Any, mark: str) -> None:
    """Add an unknown key to every object below ``node`` (not to maps keyed by ids)."""
    if isinstance(node, list):
        for item in node:
            _plant(item, mark)
    elif isinstance(node, dict):
        keyed_by_ids = bool(node) and all(str(key).isdigit() for key in node)
        for value in node.values():
            _plant(value, mark)
        if not keyed_by_ids:
            node[mark] = {"nested": ["x", {"deep": "Y"}], "flag": "N"}


@pytest.mark.parametrize("name", EXTRA_EVERYWHERE)
def test_unknown_keys_are_kept_at_every_level(docs_examples: Path, name: str) -> None:
    body = example(docs_examples, name)
    _plant(body["data"], "FUTURE_key")
    _plant(body["auth"], "future_auth_key")
    event = delivered(body)
    assert_reachable(event.data, event)
    assert event.auth is not None
    assert_reachable(parse_form(http_build_query(body))["auth"], event.auth)
    assert event.auth.extra == {
        "future_auth_key": {"nested": {"0": "x", "1": {"deep": "Y"}}, "flag": "N"}
    }
    # Typed equality ignores extras: the typed values are as without them.
    assert attrs.evolve(event, data={}) == attrs.evolve(from_page(docs_examples, name), data={})


def test_the_walker_sees_a_dropped_or_changed_value(docs_examples: Path) -> None:
    # The checks above could not pass by accident.
    body = example(docs_examples, "event__ONIMBOTMESSAGEADD_group.json")
    _plant(body["data"], "FUTURE_key")
    event = delivered(body)
    assert isinstance(event, BotMessageEvent)
    assert_reachable(event.data, event)
    (bot,) = event.bots
    assert bot.auth is not None
    broken = [
        attrs.evolve(event, extra={}),
        attrs.evolve(event, params=attrs.evolve(event.params, extra={})),
        attrs.evolve(event, params=attrs.evolve(event.params, message="Hi")),
        attrs.evolve(event, params=attrs.evolve(event.params, mentioned_list=())),
        attrs.evolve(event, bots=()),
        attrs.evolve(event, bots=(attrs.evolve(bot, auth=attrs.evolve(bot.auth, user_id=1)),)),
        attrs.evolve(event, bots=(attrs.evolve(bot, access_token=None),)),
        attrs.evolve(event, user=None),
    ]
    for wrong in broken:
        with pytest.raises(AssertionError):
            assert_reachable(event.data, wrong)


def test_no_token_of_any_example_shows_in_a_repr(docs_examples: Path) -> None:
    for name in TYPED_EXAMPLES:
        body = example(docs_examples, name)
        secrets: list[str] = []

        def collect(node: Any, found: list[str] = secrets) -> None:
            if isinstance(node, dict):
                for key, value in node.items():
                    if key in ("access_token", "refresh_token", "application_token"):
                        found.append(str(value))
                    collect(value)

        collect(body)
        event = delivered(body)
        shown = repr(event) + str(event)
        for bot in getattr(event, "bots", ()):
            shown += repr(bot) + repr(bot.tokens())
        for secret in secrets:
            assert secret not in shown, name


# -- connectors ------------------------------------------------------------------------


def test_connector_message_add(docs_examples: Path) -> None:
    event = from_page(docs_examples, "event__ONIMCONNECTORMESSAGEADD.json")
    assert isinstance(event, ConnectorMessageEvent)
    assert (event.name, event.handler_id, event.ts) == ("ONIMCONNECTORMESSAGEADD", 555, 1773759161)
    assert (event.connector_id, event.line_id) == ("myconnector", 107)
    (item,) = event.messages
    assert item.im == ImInfo(chat_id=1807, message_id=86497)
    assert item.message.user_id == 27
    assert item.message.text == "[b]Klaus Weber:[/b] [br]Guten Tag!"
    assert item.message.ids == ()
    assert item.chat.id == "channel-123"


def test_connector_message_update_has_a_list_of_ids(docs_examples: Path) -> None:
    event = from_page(docs_examples, "event__ONIMCONNECTORMESSAGEUPDATE.json")
    assert isinstance(event, ConnectorMessageEvent)
    (item,) = event.messages
    assert item.im == ImInfo(chat_id=1807, message_id=86501)
    assert item.message.ids == ("ext-msg-005",)
    assert item.message.text == "[b]Klaus Weber:[/b][br] What questions do you have?"
    assert item.message.user_id is None


def test_connector_message_delete_has_one_id(docs_examples: Path) -> None:
    event = from_page(docs_examples, "event__ONIMCONNECTORMESSAGEDELETE.json")
    assert isinstance(event, ConnectorMessageEvent)
    (item,) = event.messages
    assert item.message.ids == ("ext-msg-005",)  # one string on this page
    assert item.message.text is None
    assert (item.im.message_id, item.chat.id) == (86501, "channel-123")


@pytest.mark.parametrize(
    ("name", "closed"),
    [
        ("event__ONIMCONNECTORDIALOGSTART.json", False),
        ("event__ONIMCONNECTORDIALOGFINISH.json", True),
    ],
)
def test_connector_dialog_start_and_finish(docs_examples: Path, name: str, closed: bool) -> None:
    event = from_page(docs_examples, name)
    assert isinstance(event, ConnectorDialogEvent)
    assert event.handler_id == 1  # "eventId" on these pages
    assert (event.connector_id, event.line_id) == ("newcustomconnector", 105)  # LINE "105"
    (item,) = event.items
    assert item.connector == ConnectorInfo(
        connector_id="newcustomconnector", line_id=105, chat_id="8", user_id="0"
    )
    assert item.session == SessionInfo(id=3282, closed=closed, parent_id=0, close_term=10)
    assert item.chat.id == 8
    assert item.user is not None
    assert item.user.id == 0


def test_connector_status_delete(docs_examples: Path) -> None:
    event = from_page(docs_examples, "event__ONIMCONNECTORSTATUSDELETE.json")
    assert isinstance(event, ConnectorStatusDeleteEvent)
    assert (event.connector_id, event.line_id, event.extra) == ("myconnector", 107, {})


def test_connector_line_delete_whose_data_is_the_line_id(docs_examples: Path) -> None:
    body = example(docs_examples, "event__ONIMCONNECTORLINEDELETE.json")
    form = http_build_query(body)
    assert "&data=107&" in form
    for event in (parse_event(form, FORM), parse_event(json.dumps(body)), parse_event(body)):
        assert isinstance(event, ConnectorLineDeleteEvent)
        assert event.line_id == 107
        assert event.data == {}
        assert event.handler_id == 563
    junk = parse_event("event=ONIMCONNECTORLINEDELETE&data=x")
    assert isinstance(junk, ConnectorLineDeleteEvent)
    assert junk.line_id is None
    # An object instead is kept in extra; a float is read like the JSON number it is.
    other = parse_event({"event": "ONIMCONNECTORLINEDELETE", "data": {"LINE_ID": 5}})
    assert isinstance(other, ConnectorLineDeleteEvent)
    assert (other.line_id, other.extra) == (None, {"LINE_ID": 5})
    number = parse_event('{"event": "ONIMCONNECTORLINEDELETE", "data": 107.0}')
    assert isinstance(number, ConnectorLineDeleteEvent)
    assert number.line_id == 107
    # Another event with a lone value as data is still no event.
    with pytest.raises(EventError, match="'data' must be an object"):
        parse_event("event=ONIMCONNECTORSTATUSDELETE&data=107", FORM)


# -- bots ------------------------------------------------------------------------------


def test_bot_message_add_in_a_personal_chat(docs_examples: Path) -> None:
    event = from_page(docs_examples, "event__ONIMBOTMESSAGEADD_personal.json")
    assert isinstance(event, BotMessageEvent)
    assert (event.handler_id, event.ts) == (403, 1771928985)  # strings on the page
    (bot,) = event.bots
    assert isinstance(bot, EventBot)
    assert (bot.bot_id, bot.bot_code, bot.user_id) == (567, "BOT1", 567)
    assert bot.client_id == "a7eff906dd1d950269258a599214f69e"
    assert (bot.expires, bot.expires_in, bot.scope) == (1771932585, 3600, "imbot")
    # The AUTH copy holds the same block.
    assert bot.auth is not None
    assert bot.auth == EventAuth(**{f.name: getattr(bot, f.name) for f in attrs.fields(EventAuth)})
    # The bot's own pair: it acts as the bot's user, until "expires".
    tokens = bot.tokens(now=0.0)
    assert tokens is not None
    assert (tokens.user_id, tokens.expires_at) == (567, 1771932585.0)
    assert tokens.access_token == "a98b9d690000071b0000084400000237f0f107589d1e"
    params = event.params
    assert params.message == "Hello"
    assert (params.dialog_id, params.to_chat_id, params.message_id) == ("27", 1407, 84331)
    assert (params.from_user_id, params.author_id, params.to_user_id) == (27, 27, 567)
    assert (params.message_type, params.chat_type, params.language) == ("P", "P", "en")
    assert params.system is False
    assert params.push is True
    assert params.fake_relation == 0
    assert (params.command_context, params.platform_context) == ("TEXTAREA", "web")
    assert params.chat_user_count == 2
    assert params.template_id == "796c45aa-70e5-45aa-930c-c7fb32710c62"
    # Group-chat keys are not sent in a personal chat.
    assert (params.chat_id, params.chat_title, params.mentioned_list) == (None, None, ())
    assert event.user == BotUser(
        id=27,
        name="Svetlana Ivanova",
        first_name="Svetlana",
        last_name="Ivanova",
        work_position="",
        gender="F",
        is_bot=False,
        is_connector=False,
        is_network=False,
        is_extranet=False,
    )


def test_bot_message_add_in_a_group_chat(docs_examples: Path) -> None:
    event = from_page(docs_examples, "event__ONIMBOTMESSAGEADD_group.json")
    assert isinstance(event, BotMessageEvent)
    params = event.params
    assert (params.dialog_id, params.chat_id, params.to_chat_id) == ("chat1157", 1157, 1157)
    assert params.chat_title == "Brown Chat #18"
    assert params.mentioned_list == (567,)
    assert params.message_original == "[USER=567]NewBot[/USER] , how to set up the left menu"
    assert params.message == ", how to set up the left menu"
    assert (params.chat_entity_type, params.chat_entity_id) == ("THREAD", "")
    assert (params.chat_avatar, params.chat_color, params.chat_can_post) == (
        "0",
        "BROWN",
        "MEMBER",
    )
    assert (params.chat_extranet, params.is_manager) == (False, False)
    assert (params.chat_prev_message_id, params.rid) == (80961, 27)


@pytest.mark.parametrize(
    ("name", "message_id", "chat_id", "has_user"),
    [
        ("event__ONIMBOTMESSAGEUPDATE_personal.json", 84531, 1453, True),
        ("event__ONIMBOTMESSAGEUPDATE_group.json", 84537, 1157, False),
        ("event__ONIMBOTMESSAGEDELETE_personal.json", 84525, 1453, True),
        ("event__ONIMBOTMESSAGEDELETE_group.json", 84537, 1157, False),
    ],
)
def test_bot_message_update_and_delete(
    docs_examples: Path, name: str, message_id: int, chat_id: int, has_user: bool
) -> None:
    event = from_page(docs_examples, name)
    assert isinstance(event, BotMessageEvent)
    assert (event.params.id, event.params.message_id) == (message_id, message_id)
    assert event.params.chat_id == chat_id
    assert event.params.author_id == 27
    assert (event.user is not None) == has_user
    (bot,) = event.bots
    assert (bot.bot_id, bot.bot_code) == (571, "BOT")


def test_bot_join_chat(docs_examples: Path) -> None:
    personal = from_page(docs_examples, "event__ONIMBOTJOINCHAT_personal.json")
    assert isinstance(personal, BotJoinChatEvent)
    params = personal.params
    assert (params.bot_id, params.user_id, params.to_user_id, params.from_user_id) == (
        571,
        27,
        27,
        571,
    )
    assert (params.dialog_id, params.chat_type, params.language) == ("27", "P", "de")
    assert (params.chat_id, params.access_history) == (None, None)
    assert personal.user is not None
    assert (personal.user.id, personal.user.gender, personal.user.is_bot) == (27, "F", None)
    group = from_page(docs_examples, "event__ONIMBOTJOINCHAT_group.json")
    assert isinstance(group, BotJoinChatEvent)
    params = group.params
    assert (params.chat_id, params.chat_author_id, params.dialog_id) == (1157, 27, "chat1157")
    assert params.access_history is True  # "1"
    assert (params.chat_entity_type, params.chat_entity_id) == ("THREAD", "")


def test_bot_delete(docs_examples: Path) -> None:
    event = from_page(docs_examples, "event__ONIMBOTDELETE.json")
    assert isinstance(event, BotDeleteEvent)
    assert (event.bot_id, event.bot_code, event.handler_id) == (567, "BOT", 439)


def test_bot_id_from_the_key_when_the_entry_lacks_one() -> None:
    event = parse_event(
        "event=ONIMBOTMESSAGEADD&data[BOT][42][BOT_CODE]=b&data[BOT][7][BOT_ID]=8"
        "&data[BOT][x]=junk&data[USER][ID]=0",
        FORM,
    )
    assert isinstance(event, BotMessageEvent)
    assert [(bot.bot_id, bot.bot_code) for bot in event.bots] == [(42, "b"), (8, None)]
    assert event.user is not None  # an author with ID 0 is still an author block
    event = parse_event('{"event": "ONIMBOTMESSAGEADD", "data": {"USER": []}}')
    assert isinstance(event, BotMessageEvent)
    assert event.user is None  # "may be an empty object"


# -- the app events ----------------------------------------------------------------------


def test_app_uninstall(docs_examples: Path) -> None:
    body = example(docs_examples, "event__ONAPPUNINSTALL.json")
    event = delivered(body)
    assert isinstance(event, AppUninstallEvent)
    assert (event.language_id, event.clean, event.handler_id) == ("de", True, None)
    assert event.auth is not None
    assert not event.auth.has_tokens
    assert verify_event(event, body["auth"]["application_token"]) is event
    body["data"]["CLEAN"] = 0
    event = delivered(body)
    assert isinstance(event, AppUninstallEvent)
    assert event.clean is False


def test_install_without_flags_says_unknown(docs_examples: Path) -> None:
    """A real 2020 ONAPPINSTALL has neither ACTIVE nor INSTALLED (issue 16)."""
    body = example(docs_examples, "event__ONAPPINSTALL.json")
    for key in ("ACTIVE", "INSTALLED"):
        del body["data"][key]
    event = delivered(body)
    assert isinstance(event, AppInstallEvent)
    assert (event.active, event.installed) == (None, None)
    assert (event.version, event.language_id) == ("1.0.0", "de")
    body["data"].update(ACTIVE="N", INSTALLED="Y")
    event = delivered(body)
    assert isinstance(event, AppInstallEvent)
    assert (event.active, event.installed) == (False, True)


# -- Open Lines: the newer update and delete shape ---------------------------------------


@pytest.mark.parametrize(
    "name", ["event__ONOPENLINEMESSAGEUPDATE.json", "event__ONOPENLINEMESSAGEDELETE.json"]
)
def test_newer_update_and_delete_name_the_connector_once(docs_examples: Path, name: str) -> None:
    event = from_page(docs_examples, name)
    assert isinstance(event, OpenLineMessageEvent)
    assert (event.connector_id, event.line_id) == ("livechat", 128)
    (item,) = event.items
    assert item.im == ImInfo(chat_id=1024, message_id=2056)
    assert item.connector == ConnectorInfo(connector_id="livechat", line_id=128)
    assert item.connector.user_code == "livechat|128||"  # not "|0||"
    assert (item.chat.id, item.message.id) == (1024, 2056)


def test_older_update_with_a_connector_per_entry(docs_examples: Path) -> None:
    """The older shape: entries as ONOPENLINEMESSAGEADD's, with their own connector."""
    body = example(docs_examples, "event__ONOPENLINEMESSAGEADD.json")
    body["event"] = "ONOPENLINEMESSAGEUPDATE"
    event = delivered(body)
    assert isinstance(event, OpenLineMessageEvent)
    assert (event.connector_id, event.line_id) == (None, None)
    (item,) = event.items
    assert item.im is None
    assert item.connector.user_code == "livechat|128|10587|1985"
    # Both at once: the entry's own connector wins over data[CONNECTOR].
    body["data"].update(CONNECTOR="telegrambot", LINE=9)
    event = delivered(body)
    assert isinstance(event, OpenLineMessageEvent)
    assert event.items[0].connector.user_code == "livechat|128|10587|1985"
    assert (event.connector_id, event.line_id) == ("telegrambot", 9)


def test_newer_entry_with_the_im_block_only() -> None:
    event = parse_event(
        {
            "event": "ONOPENLINEMESSAGEDELETE",
            "data": {
                "CONNECTOR": "livechat",
                "LINE": "128",
                "DATA": {"0": {"im": {"chat_id": "1024", "message_id": "2056"}}},
            },
        }
    )
    assert isinstance(event, OpenLineMessageEvent)
    (item,) = event.items
    assert (item.chat.id, item.message.id) == (1024, 2056)  # from the im block
    assert item.connector.line_id == 128


# -- the auth block ----------------------------------------------------------------------


def test_every_auth_field_is_kept(docs_examples: Path) -> None:
    event = from_page(docs_examples, "event__ONIMCONNECTORMESSAGEADD.json")
    assert event.auth is not None
    assert (event.auth.expires, event.auth.expires_in, event.auth.user_id) == (
        1773762761,
        3600,
        27,
    )
    assert event.auth.scope == "imconnector, imopenlines"
    assert event.auth.extra == {}
    assert event.auth.tokens() is None  # this page sends no refresh token


def test_tokens_from_an_event_carry_user_id_and_expiry(docs_examples: Path) -> None:
    event = from_page(docs_examples, "event__ONIMBOTMESSAGEADD_group.json")
    assert event.auth is not None
    tokens = event.auth.tokens(now=0.0)
    assert tokens is not None
    assert tokens.user_id == 27
    assert tokens.expires_at == 1771943628.0  # "expires" wins over now + expires_in
    # Without "expires", the lifetime counts from now, as before.
    tokens = attrs.evolve(event.auth, expires=None).tokens(now=1000.0)
    assert tokens is not None
    assert tokens.expires_at == 4600.0


def test_unknown_auth_keys_are_kept_but_not_shown() -> None:
    secret = "k" * 32
    event = parse_event(
        f"event=X&auth[member_id]=m&auth[other_token]={secret}&auth[user_id]=5", FORM
    )
    assert event.auth is not None
    assert event.auth.extra == {"other_token": secret}
    assert event.auth.user_id == 5
    assert secret not in repr(event) + repr(event.auth)


# -- hostile values in the new fields ----------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ("event=ONIMBOTMESSAGEADD&data[PARAMS][CHAT_ID]=" + "9" * 20, "data[PARAMS][CHAT_ID]"),
        ("event=ONIMBOTMESSAGEADD&data[BOT][1][BOT_ID]=" + "9" * 20, "BOT[BOT_ID]"),
        ("event=ONIMBOTMESSAGEADD&data[BOT][" + "9" * 20 + "][BOT_CODE]=b", "BOT"),
        ("event=ONIMBOTJOINCHAT&data[USER][ID]=" + "9" * 20, "data[USER][ID]"),
        (
            "event=ONIMBOTMESSAGEADD&data[PARAMS][MENTIONED_LIST][1]=" + "9" * 20,
            "data[PARAMS][MENTIONED_LIST][]",
        ),
        ("event=ONIMCONNECTORMESSAGEADD&data[LINE]=" + "9" * 20, "data[LINE]"),
        (
            "event=ONIMCONNECTORMESSAGEADD&data[MESSAGES][0][im][chat_id]=" + "9" * 20,
            "im[chat_id]",
        ),
        ("event=ONIMCONNECTORLINEDELETE&data=" + "9" * 20, "data"),
        ("event=ONOPENLINEMESSAGEUPDATE&data[LINE]=" + "9" * 20, "data[LINE]"),
        ("event=X&auth[user_id]=" + "9" * 20, "auth[user_id]"),
        ("event=X&auth[expires]=" + "9" * 5000, "auth[expires]"),
    ],
)
def test_a_number_past_64_bits_is_an_event_error_naming_it(body: str, field: str) -> None:
    with pytest.raises(EventError) as caught:
        parse_event(body, FORM)
    text = str(caught.value)
    assert f"the event's {field}" in text
    assert "is a number past the 64-bit integers" in text
    assert "99999" not in text


def test_junk_in_typed_fields_gives_none_not_an_error() -> None:
    event = parse_event(
        {
            "event": "ONIMBOTMESSAGEADD",
            "data": {
                "BOT": [{"BOT_ID": "x", "AUTH": "not an object", "expires": [1]}],
                "PARAMS": {"CHAT_ID": "abc", "SYSTEM": {"a": 1}, "MENTIONED_LIST": ["1", "z"]},
                "USER": "nobody",
            },
        }
    )
    assert isinstance(event, BotMessageEvent)
    (bot,) = event.bots
    assert (bot.bot_id, bot.auth, bot.expires) == (None, None, None)
    assert (event.params.chat_id, event.params.system) == (None, False)
    assert event.params.mentioned_list == (1,)
    assert event.user is None
    event = parse_event({"event": "ONIMCONNECTORMESSAGEADD", "data": {"MESSAGES": "x"}})
    assert isinstance(event, ConnectorMessageEvent)
    assert event.messages == ()
    assert copy.deepcopy(event) == event
