"""Incoming events: parsing every documented example, as Bitrix24 posts it, and verifying."""

from __future__ import annotations

import hmac
import json
import pickle
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

import pytest
from _php_query import http_build_query
from multidict import MultiDict

from bitrix_openlines import OAuthTokens, OpenLinesError, parse_event, verify_event
from bitrix_openlines.errors import EventError, EventVerificationError
from bitrix_openlines.events import (
    AppInstallEvent,
    AppUninstallEvent,
    BotDeleteEvent,
    BotJoinChatEvent,
    BotMessageEvent,
    ChatInfo,
    ConnectorDialogEvent,
    ConnectorInfo,
    ConnectorLineDeleteEvent,
    ConnectorMessageEvent,
    ConnectorStatusDeleteEvent,
    Event,
    EventAuth,
    GenericEvent,
    LineInfo,
    MessageInfo,
    OpenLineMessageEvent,
    SessionEvent,
    SessionInfo,
    UserInfo,
)
from bitrix_openlines.wire import parse_form

FORM = "application/x-www-form-urlencoded"
APP_TOKEN = "51856fefc120afa4b628cc82d3935cce"
ACCESS = "s6p6eclrvim6da22ft9ch94ekreb52lv"
REFRESH = "4s386p3q0tr8dy89xvmt96234v3dljg8"
WEBHOOK_APP_TOKEN = "jvh9y1ulvt2m6k5or90v9mg8nn32ozas"
SECRETS = (APP_TOKEN, ACCESS, REFRESH, WEBHOOK_APP_TOKEN)

EXPECTED_TYPES: dict[str, type[Event]] = {
    "event__ONAPPINSTALL.json": AppInstallEvent,
    "event__ONAPPUNINSTALL.json": AppUninstallEvent,
    "event__ONCRMDEALADD_to_app.json": GenericEvent,
    "event__ONCRMDEALADD_to_outgoing_webhook.json": GenericEvent,
    "event__ONIMBOTDELETE.json": BotDeleteEvent,
    "event__ONIMBOTJOINCHAT_group.json": BotJoinChatEvent,
    "event__ONIMBOTJOINCHAT_personal.json": BotJoinChatEvent,
    "event__ONIMBOTMESSAGEADD_group.json": BotMessageEvent,
    "event__ONIMBOTMESSAGEADD_personal.json": BotMessageEvent,
    "event__ONIMBOTMESSAGEDELETE_group.json": BotMessageEvent,
    "event__ONIMBOTMESSAGEDELETE_personal.json": BotMessageEvent,
    "event__ONIMBOTMESSAGEUPDATE_group.json": BotMessageEvent,
    "event__ONIMBOTMESSAGEUPDATE_personal.json": BotMessageEvent,
    "event__ONIMCONNECTORDIALOGFINISH.json": ConnectorDialogEvent,
    "event__ONIMCONNECTORDIALOGSTART.json": ConnectorDialogEvent,
    "event__ONIMCONNECTORLINEDELETE.json": ConnectorLineDeleteEvent,
    "event__ONIMCONNECTORMESSAGEADD.json": ConnectorMessageEvent,
    "event__ONIMCONNECTORMESSAGEDELETE.json": ConnectorMessageEvent,
    "event__ONIMCONNECTORMESSAGEUPDATE.json": ConnectorMessageEvent,
    "event__ONIMCONNECTORSTATUSDELETE.json": ConnectorStatusDeleteEvent,
    "event__ONOPENLINEMESSAGEADD.json": OpenLineMessageEvent,
    "event__ONOPENLINEMESSAGEDELETE.json": OpenLineMessageEvent,
    "event__ONOPENLINEMESSAGEUPDATE.json": OpenLineMessageEvent,
    "event__ONSESSIONSTART.json": SessionEvent,
}


def example(docs: Path, name: str) -> dict[str, Any]:
    value = json.loads((docs / name).read_text(encoding="utf-8"))
    assert isinstance(value, dict)
    return value


def form_of(docs: Path, name: str) -> bytes:
    """The example as Bitrix24 delivers it: a PHP http_build_query body."""
    return http_build_query(example(docs, name)).encode("ascii")


def encodings(docs: Path, name: str) -> dict[str, Event]:
    """Parse one example every way an event can arrive."""
    body = example(docs, name)
    form = form_of(docs, name)
    text = json.dumps(body)
    # A flat form as a web framework hands it over: names still bracketed.
    flat = MultiDict(
        (unquote_plus(name), unquote_plus(value))
        for name, _, value in (pair.partition("=") for pair in form.decode().split("&"))
    )
    return {
        "form bytes": parse_event(form, FORM),
        "form str, charset": parse_event(form.decode(), FORM + "; charset=UTF-8"),
        "form sniffed": parse_event(form),
        "json bytes": parse_event(text.encode(), "application/json"),
        "json sniffed": parse_event(text),
        "mapping": parse_event(body),
        "flat form mapping": parse_event(flat),
    }


def test_every_event_example_is_covered(docs_examples: Path) -> None:
    found = sorted(p.name for p in docs_examples.glob("event__*.json"))
    assert found == sorted(EXPECTED_TYPES)


@pytest.mark.parametrize("name", sorted(EXPECTED_TYPES))
def test_every_example_parses_to_its_type_in_every_encoding(
    docs_examples: Path, name: str
) -> None:
    body = example(docs_examples, name)
    for how, event in encodings(docs_examples, name).items():
        assert type(event) is EXPECTED_TYPES[name], how
        assert event.name == body["event"], how
        assert event.ts == int(body["ts"]), how
        handler = body.get("event_handler_id", body.get("eventId"))
        assert event.handler_id == (None if handler is None else int(handler)), how
        assert event.auth is not None, how
        assert event.auth.application_token == body["auth"]["application_token"], how
        assert event.auth.member_id == body["auth"]["member_id"], how
        assert event.auth.client_endpoint == body["auth"]["client_endpoint"], how
        assert event.member_id == body["auth"]["member_id"], how


@pytest.mark.parametrize("name", sorted(EXPECTED_TYPES))
def test_form_and_json_give_equal_typed_events(docs_examples: Path, name: str) -> None:
    parsed = encodings(docs_examples, name)
    reference = parsed["json bytes"]
    for how, event in parsed.items():
        # data differs by encoding (strings, maps keyed "0"); every typed field is equal.
        typed = {f: getattr(event, f) for f in event.__slots__ if f != "data"}
        expected = {f: getattr(reference, f) for f in reference.__slots__ if f != "data"}
        assert typed == expected, how


def test_open_line_message_add(docs_examples: Path) -> None:
    event = parse_event(form_of(docs_examples, "event__ONOPENLINEMESSAGEADD.json"), FORM)
    assert isinstance(event, OpenLineMessageEvent)
    assert event.name == "ONOPENLINEMESSAGEADD"
    assert event.handler_id == 1
    assert event.ts == 1714649632
    (item,) = event.items
    assert item.connector == ConnectorInfo(
        connector_id="livechat", line_id=128, chat_id="10587", user_id="1985"
    )
    assert item.connector.user_code == "livechat|128|10587|1985"
    assert item.chat == ChatInfo(id=10585)
    assert item.message == MessageInfo(
        id=80964, date=None, text="hello", files=(), attach=None, system=False, user_id=1985
    )
    assert item.ref is None
    assert item.extra == {"EXTRA_URL": ""}
    assert item.raw["message"]["text"] == "hello"
    # The raw data keeps the form's shape: a list arrives as a map keyed "0".
    assert event.data["DATA"]["0"]["chat"]["id"] == "10585"


def test_session_start(docs_examples: Path) -> None:
    event = parse_event(form_of(docs_examples, "event__ONSESSIONSTART.json"), FORM)
    assert isinstance(event, SessionEvent)
    (item,) = event.items
    assert item.session == SessionInfo(id=42, closed=False, parent_id=0, close_term=60)
    assert item.chat == ChatInfo(id=10585)
    assert item.user == UserInfo(id=1984, name=None)
    assert item.line is None
    assert item.connector.line_id == 128


def test_app_install(docs_examples: Path) -> None:
    event = parse_event(form_of(docs_examples, "event__ONAPPINSTALL.json"), FORM)
    assert isinstance(event, AppInstallEvent)
    assert (event.version, event.active, event.installed, event.language_id) == (
        "1.0.0",
        True,
        True,
        "de",
    )
    assert event.handler_id is None
    assert event.auth is not None
    assert event.auth.scope == "imbot"
    assert event.auth.status == "F"
    assert event.auth.expires_in == 3600
    assert event.auth.access_token == ACCESS
    assert event.auth.refresh_token == REFRESH


def test_generic_event_keeps_raw_data(docs_examples: Path) -> None:
    event = parse_event(form_of(docs_examples, "event__ONCRMDEALADD_to_app.json"), FORM)
    assert isinstance(event, GenericEvent)
    assert event.handler_id == 185
    assert event.data == {"FIELDS": {"ID": "7405"}}
    assert event.auth is not None
    assert event.auth.refresh_token is None


def test_outgoing_webhook_event_has_no_tokens(docs_examples: Path) -> None:
    name = "event__ONCRMDEALADD_to_outgoing_webhook.json"
    event = parse_event(form_of(docs_examples, name), FORM)
    assert event.auth is not None
    assert event.auth.access_token is None
    assert not event.auth.has_tokens
    assert event.auth.tokens() is None
    assert event.auth.application_token == WEBHOOK_APP_TOKEN


# -- tokens ------------------------------------------------------------------------------


def test_install_tokens_become_oauth_tokens(docs_examples: Path) -> None:
    event = parse_event(form_of(docs_examples, "event__ONAPPINSTALL.json"), FORM)
    assert event.auth is not None
    tokens = event.auth.tokens(now=1000.0)
    assert isinstance(tokens, OAuthTokens)
    assert tokens.access_token == ACCESS
    assert tokens.refresh_token == REFRESH
    # client_endpoint, not domain, is the portal's address (PROTOCOL.md 6.1).
    assert tokens.client_endpoint == "https://some-domain.bitrix24.com/rest/"
    assert tokens.member_id == "a223c6b3710f85df22e9377d6c4f7553"
    assert tokens.expires_at == 4600.0
    assert tokens.scope == "imbot"


def test_tokens_default_to_now() -> None:
    auth = EventAuth(
        access_token="a" * 32, refresh_token="r" * 32, client_endpoint="https://p/rest/"
    )
    tokens = auth.tokens()
    assert tokens is not None
    assert tokens.expires_at is None  # no expires_in: unknown
    auth = EventAuth(
        access_token="a" * 32,
        refresh_token="r" * 32,
        client_endpoint="https://p/rest/",
        expires_in=3600,
    )
    before = time.time()
    tokens = auth.tokens()
    after = time.time()
    assert tokens is not None
    assert tokens.expires_at is not None
    assert before + 3600 <= tokens.expires_at <= after + 3600


def test_access_token_without_refresh_token_is_no_pair(docs_examples: Path) -> None:
    event = parse_event(form_of(docs_examples, "event__ONCRMDEALADD_to_app.json"), FORM)
    assert event.auth is not None
    assert event.auth.access_token == ACCESS
    assert event.auth.tokens() is None


def test_unusable_client_endpoint_is_an_event_error() -> None:
    auth = EventAuth(access_token=ACCESS, refresh_token=REFRESH, client_endpoint="not a url")
    with pytest.raises(EventError, match="client_endpoint") as caught:
        auth.tokens()
    assert ACCESS not in str(caught.value)
    assert REFRESH not in str(caught.value)


# -- defensive parsing -------------------------------------------------------------------


def message_body(data: Any) -> dict[str, Any]:
    return {"event": "onOpenLineMessageUpdate", "data": data}


def test_data_as_php_map_keyed_by_position() -> None:
    items = {
        "1": {"chat": {"id": "2"}, "message": {"id": "20"}},
        "0": {"chat": {"id": "1"}, "message": {"id": "10"}},
    }
    event = parse_event(message_body({"DATA": items}))
    assert isinstance(event, OpenLineMessageEvent)
    assert event.name == "ONOPENLINEMESSAGEUPDATE"
    assert [(i.chat.id, i.message.id) for i in event.items] == [(1, 10), (2, 20)]


def test_data_as_list_and_single_entry() -> None:
    entry = {"chat": {"id": 5}, "message": {"id": 6, "system": "Y", "files": {"0": {"id": 1}}}}
    for data in ({"DATA": [entry]}, {"DATA": entry}):
        event = parse_event(message_body(data))
        assert isinstance(event, OpenLineMessageEvent)
        (item,) = event.items
        assert item.chat.id == 5
        assert item.message.system is True
        assert item.message.files == ({"id": 1},)


def test_missing_keys_give_defaults() -> None:
    empty: list[dict[str, Any]] = [{}, {"DATA": []}, {"DATA": "x"}, {"DATA": [1, "x", None]}]
    for data in empty:
        event = parse_event(message_body(data))
        assert isinstance(event, OpenLineMessageEvent)
        assert event.items == ()
    event = parse_event(message_body({"DATA": [{}]}))
    assert isinstance(event, OpenLineMessageEvent)
    (item,) = event.items
    assert item.connector == ConnectorInfo()
    assert item.chat.id == 0
    assert item.message == MessageInfo()
    event = parse_event({"event": "ONSESSIONFINISH"})
    assert isinstance(event, SessionEvent)
    assert event.items == ()
    assert event.auth is None
    assert event.ts is None
    assert event.handler_id is None
    assert event.member_id is None


def test_numbers_as_strings_and_junk_values() -> None:
    entry = {
        "connector": {
            "connector_id": "telegrambot",
            "line_id": " 7 ",
            "chat_id": 9,
            "user_id": "x1",
        },
        "session": {"id": "42", "closed": "Y", "parent_id": "abc", "close_term": 1.0},
        "chat": {"id": ["nested"]},
        "user": {"id": "3", "name": "Ann"},
        "line": {"id": "7", "name": "Support"},
    }
    event = parse_event(
        {"event": "ONSESSIONFINISH", "ts": "abc", "eventId": "12", "data": {"DATA": [entry]}}
    )
    assert isinstance(event, SessionEvent)
    assert event.ts is None
    assert event.handler_id == 12
    (item,) = event.items
    assert item.connector == ConnectorInfo(
        connector_id="telegrambot", line_id=7, chat_id="9", user_id="x1"
    )
    assert item.session == SessionInfo(id=42, closed=True, parent_id=0, close_term=1)
    assert item.chat.id == 0
    assert item.user == UserInfo(id=3, name="Ann")
    assert item.line == LineInfo(id=7, name="Support")


def test_app_install_flags_and_defaults() -> None:
    event = parse_event({"event": "onappinstall", "data": {"ACTIVE": "N", "INSTALLED": True}})
    assert isinstance(event, AppInstallEvent)
    assert (event.version, event.active, event.installed, event.language_id) == (
        None,
        False,
        True,
        None,
    )


def test_event_name_is_upper_cased_and_handler_id_read_from_either_key() -> None:
    event = parse_event("event=onCrmDealAdd&event_handler_id=7&eventId=9&ts=5")
    assert isinstance(event, GenericEvent)
    assert (event.name, event.handler_id, event.ts) == ("ONCRMDEALADD", 7, 5)
    assert parse_event("event=x&eventId=9").handler_id == 9


def test_empty_php_array_in_json_data_is_empty() -> None:
    event = parse_event('{"event": "ONCRMDEALADD", "data": []}')
    assert event.data == {}


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        # Unencoded brackets, '+' as a space, appends, PHP's base-name rules.
        ("event=E&data[a][]=1&data[a][]=2", {"a": {"0": "1", "1": "2"}}),
        ("event=E&data%5Bb%5D=x+y%26z", {"b": "x y&z"}),
        ("event=E&data[c][5]=x&data[c][]=y", {"c": {"5": "x", "6": "y"}}),
        ("event=E&data[d]=scalar&data[d][e]=nested", {"d": {"e": "nested"}}),
        ("event=E&data[f]=%D0%AE", {"f": "Ю"}),
        ("event=E&data[g]=%FF", {"g": "\ufffd"}),
        ("event=E&data[h]=1&&data[i]", {"h": "1", "i": ""}),
    ],
)
def test_php_form_decoding(body: str, expected: dict[str, Any]) -> None:
    assert parse_event(body, FORM).data == expected


def test_php_base_name_rules() -> None:
    decoded = parse_form("a.b=1&c d=2&e[f=3&[g]=4&=5&%20h=6")
    assert decoded == {"a_b": "1", "c_d": "2", "e_f": "3", "h": "6"}


def test_last_value_of_a_repeated_name_wins() -> None:
    assert parse_event("event=A&event=B").name == "B"


# -- malformed bodies --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        (b"", FORM, "empty"),
        ("   \n", None, "empty"),
        (b"\xff\xfeevent=x", FORM, "not UTF-8"),
        (
            '{"event": "X", "auth": {"application_token": "' + APP_TOKEN + '"',
            None,
            "not valid JSON",
        ),
        ("[1, 2]", "application/json", "got a JSON list"),
        ('"event"', "application/json", "got a JSON str"),
        ('{"data": {}}', None, "no 'event'"),
        ('{"event": 5}', None, "no 'event'"),
        ('{"event": "  "}', None, "no 'event'"),
        ("data[x]=1&auth[application_token]=" + APP_TOKEN, FORM, "no 'event'"),
        ('{"event": "X", "data": "s"}', None, "'data' must be an object"),
        ("event=X&data=s", FORM, "'data' must be an object"),
        ('{"event": "X", "auth": ["a"]}', None, "'auth' must be an object"),
        ("event=X", "text/plain", "unsupported content type 'text/plain'"),
        ("event=X", "multipart/form-data; boundary=x", "unsupported content type"),
    ],
)
def test_malformed_bodies_raise_event_error(
    body: bytes | str, content_type: str | None, message: str
) -> None:
    with pytest.raises(EventError, match=message) as caught:
        parse_event(body, content_type)
    assert not isinstance(caught.value, EventVerificationError)
    assert APP_TOKEN not in str(caught.value)


def test_event_error_is_a_value_error_and_an_sdk_error() -> None:
    assert issubclass(EventError, ValueError)
    assert issubclass(EventError, OpenLinesError)
    assert issubclass(EventVerificationError, EventError)
    error = pickle.loads(pickle.dumps(EventVerificationError("forged")))
    assert isinstance(error, EventVerificationError)
    assert str(error) == "forged"


def test_body_of_another_type_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="bytes, str or a mapping"):
        parse_event(42)  # type: ignore[arg-type]


# -- verification ------------------------------------------------------------------------


def test_verify_accepts_the_stored_token(docs_examples: Path) -> None:
    for name in EXPECTED_TYPES:
        event = parse_event(form_of(docs_examples, name), FORM)
        token = example(docs_examples, name)["auth"]["application_token"]
        assert verify_event(event, token) is event


def test_forged_event_is_rejected(docs_examples: Path) -> None:
    body = example(docs_examples, "event__ONOPENLINEMESSAGEADD.json")
    forged_token = "0" * 32
    body["auth"]["application_token"] = forged_token
    event = parse_event(http_build_query(body), FORM)
    with pytest.raises(EventVerificationError, match="does not match") as caught:
        verify_event(event, APP_TOKEN)
    text = str(caught.value) + repr(caught.value)
    assert APP_TOKEN not in text
    assert forged_token not in text
    assert "ONOPENLINEMESSAGEADD" in text


@pytest.mark.parametrize(
    "body",
    [
        {"event": "ONOPENLINEMESSAGEADD"},
        {"event": "ONOPENLINEMESSAGEADD", "auth": {"member_id": "m"}},
        {"event": "ONOPENLINEMESSAGEADD", "auth": {"application_token": ""}},
    ],
)
def test_event_without_token_is_rejected(body: dict[str, Any]) -> None:
    with pytest.raises(EventVerificationError, match="carries no auth\\[application_token\\]"):
        verify_event(parse_event(body), APP_TOKEN)


@pytest.mark.parametrize("stored", [None, ""])
def test_nothing_stored_rejects_even_an_empty_token(stored: str | None) -> None:
    event = parse_event("event=X&auth[application_token]=")
    with pytest.raises(EventVerificationError, match="no application_token is stored"):
        verify_event(event, stored)


def test_verify_compares_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    event = parse_event({"event": "X", "auth": {"application_token": APP_TOKEN}})
    verify_event(event, APP_TOKEN)
    assert calls == [(APP_TOKEN.encode(), APP_TOKEN.encode())]


def test_non_ascii_tokens_compare_without_error() -> None:
    event = parse_event({"event": "X", "auth": {"application_token": "токен"}})
    with pytest.raises(EventVerificationError):
        verify_event(event, APP_TOKEN)
    assert verify_event(event, "токен") is event


def test_hostile_event_name_is_not_echoed_raw() -> None:
    event = parse_event({"event": "x\nFAKE LOG LINE " + "A" * 200})
    with pytest.raises(EventVerificationError) as caught:
        verify_event(event, APP_TOKEN)
    assert "\n" not in str(caught.value)
    assert len(str(caught.value)) < 200


# -- redaction ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(EXPECTED_TYPES))
def test_no_token_in_any_repr(docs_examples: Path, name: str) -> None:
    for event in encodings(docs_examples, name).values():
        assert event.auth is not None
        shown = [repr(event), str(event), repr(event.auth), str(event.auth)]
        tokens = event.auth.tokens()
        if tokens is not None:
            shown.append(repr(tokens))
        for text in shown:
            for secret in SECRETS:
                assert secret not in text, (name, text)
        assert "member_id='" in repr(event.auth)
