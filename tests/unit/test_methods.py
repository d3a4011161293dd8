"""``DialogGet`` validation and wire form, and the method registry."""

from __future__ import annotations

import enum
import types
import typing
from typing import Any

import attrs
import pytest
from _unit_helpers import DIALOG_GET, assert_exactly, make_client
from aioresponses import aioresponses

from bitrix_openlines import Dialog, DialogGet, UserCode
from bitrix_openlines.methods import Method, base, get_method, register_method, registered_methods
from bitrix_openlines.wire import batch_command, to_wire

# -- validation --------------------------------------------------------------------------

# (kwargs, exception type, text the message must contain: the parameter's name)
BAD_ARGUMENTS: list[tuple[dict[str, Any], type[Exception], str]] = [
    ({}, ValueError, "exactly one of chat_id, dialog_id, session_id, user_code"),
    ({"chat_id": 13, "dialog_id": "chat13"}, ValueError, "chat_id, dialog_id"),
    ({"session_id": 5, "user_code": "livechat|1|1373|211"}, ValueError, "session_id, user_code"),
    ({"chat_id": 1, "dialog_id": "chat1", "session_id": 1}, ValueError, "exactly one"),
    ({"chat_id": 0}, ValueError, "chat_id"),
    ({"chat_id": -1}, ValueError, "chat_id"),
    ({"chat_id": True}, TypeError, "chat_id"),
    ({"chat_id": False}, TypeError, "chat_id"),
    ({"chat_id": "13"}, TypeError, "chat_id"),
    ({"chat_id": 1.5}, TypeError, "chat_id"),
    ({"chat_id": 13.0}, TypeError, "chat_id"),
    ({"session_id": 0}, ValueError, "session_id"),
    ({"session_id": -1}, ValueError, "session_id"),
    ({"session_id": True}, TypeError, "session_id"),
    ({"session_id": "13"}, TypeError, "session_id"),
    ({"session_id": 1.5}, TypeError, "session_id"),
    ({"dialog_id": "chat"}, ValueError, "dialog_id"),
    ({"dialog_id": "29"}, ValueError, "dialog_id"),
    ({"dialog_id": "chat29x"}, ValueError, "dialog_id"),
    ({"dialog_id": " chat29"}, ValueError, "dialog_id"),
    ({"dialog_id": "chat-1"}, ValueError, "dialog_id"),
    ({"dialog_id": "chat0"}, ValueError, "dialog_id"),
    ({"dialog_id": ""}, ValueError, "dialog_id"),
    ({"dialog_id": 29}, TypeError, "dialog_id"),
    ({"user_code": "livechat|1|1373"}, ValueError, "user_code"),
    ({"user_code": "livechat|1|1373|211|5"}, ValueError, "user_code"),
    ({"user_code": "livechat||1373|211"}, ValueError, "user_code"),
    ({"user_code": "|1|1373|211"}, ValueError, "user_code"),
    ({"user_code": "livechat|1|1373|"}, ValueError, "user_code"),
    ({"user_code": "livechat|line|1373|211"}, ValueError, "user_code"),
    ({"user_code": ""}, ValueError, "user_code"),
    ({"user_code": 211}, TypeError, "user_code"),
    ({"user_code": ["livechat", "1", "1373", "211"]}, TypeError, "user_code"),
]


def _ids(case: tuple[dict[str, Any], type[Exception], str]) -> str:
    return ",".join(f"{k}={v!r}" for k, v in case[0].items()) or "none"


@pytest.mark.parametrize(("kwargs", "error", "text"), BAD_ARGUMENTS, ids=map(_ids, BAD_ARGUMENTS))
def test_dialog_get_refuses_bad_arguments(
    kwargs: dict[str, Any], error: type[Exception], text: str
) -> None:
    with pytest.raises(error) as caught:
        DialogGet(**kwargs)
    assert type(caught.value) is error
    assert text in str(caught.value)


@pytest.mark.parametrize(("kwargs", "error", "text"), BAD_ARGUMENTS, ids=map(_ids, BAD_ARGUMENTS))
async def test_get_dialog_refuses_bad_arguments_before_any_request(
    kwargs: dict[str, Any], error: type[Exception], text: str
) -> None:
    # No route is registered: a request would fail with a connection error instead.
    with aioresponses() as mocked:
        async with make_client() as client:
            with pytest.raises(error) as caught:
                await client.get_dialog(**kwargs)
        assert mocked.requests == {}
    assert type(caught.value) is error
    assert text in str(caught.value)


def test_dialog_get_is_positional_free() -> None:
    with pytest.raises(TypeError):
        DialogGet(13)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("kwargs", "params", "identifier"),
    [
        ({"chat_id": 13}, {"CHAT_ID": "13"}, ("chat_id", 13)),
        ({"dialog_id": "chat29"}, {"DIALOG_ID": "chat29"}, ("dialog_id", "chat29")),
        ({"session_id": 1743}, {"SESSION_ID": "1743"}, ("session_id", 1743)),
        (
            {"user_code": "livechat|1|1373|211"},
            {"USER_CODE": "livechat|1|1373|211"},
            ("user_code", "livechat|1|1373|211"),
        ),
        (
            {"user_code": "imol|livechat|1|1373|211"},
            {"USER_CODE": "imol|livechat|1|1373|211"},
            ("user_code", "imol|livechat|1|1373|211"),
        ),
        (
            {"user_code": UserCode("livechat", 1, "1373", "211")},
            {"USER_CODE": "livechat|1|1373|211"},
            ("user_code", "livechat|1|1373|211"),
        ),
    ],
)
def test_to_params_wire_names(
    kwargs: dict[str, Any], params: dict[str, Any], identifier: tuple[str, Any]
) -> None:
    method = DialogGet(**kwargs)
    assert method.to_params() == params
    assert method.identifier == identifier


def test_class_variables() -> None:
    assert DialogGet.__api_method__ == DIALOG_GET
    assert DialogGet.__returns__ is Dialog
    assert DialogGet.__idempotent__ is True


def test_dialog_get_is_frozen_and_hashable() -> None:
    method = DialogGet(chat_id=13)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        method.chat_id = 14  # type: ignore[misc]
    assert DialogGet(chat_id=13) == method
    assert len({method, DialogGet(chat_id=13), DialogGet(chat_id=14)}) == 2


# -- from_query --------------------------------------------------------------------------


def test_from_query_mapping() -> None:
    assert DialogGet.from_query({"chat_id": 13}) == DialogGet(chat_id=13)
    assert DialogGet.from_query({"user_code": "livechat|1|1373|211"}) == DialogGet(
        user_code="livechat|1|1373|211"
    )


def test_from_query_passes_a_dialog_get_through() -> None:
    method = DialogGet(session_id=5)
    assert DialogGet.from_query(method) is method


@pytest.mark.parametrize(
    ("query", "error", "text"),
    [
        ({"CHAT_ID": 13}, ValueError, "CHAT_ID"),
        ({"chat_id": 13, "limit": 5}, ValueError, "limit"),
        ({1: 13}, ValueError, "1"),
        ({}, ValueError, "exactly one"),
        ({"chat_id": 13, "dialog_id": "chat13"}, ValueError, "chat_id, dialog_id"),
        ({"chat_id": "13"}, TypeError, "chat_id"),
        (13, TypeError, "query"),
        ("chat13", TypeError, "query"),
        ([("chat_id", 13)], TypeError, "query"),
        (None, TypeError, "query"),
    ],
)
def test_from_query_refuses(query: Any, error: type[Exception], text: str) -> None:
    with pytest.raises(error) as caught:
        DialogGet.from_query(query)
    assert type(caught.value) is error
    assert text in str(caught.value)


_ONE_KEY_QUERIES: list[dict[Any, Any]] = [
    {"chat_id": 13},
    {"chat_id": 2**63 - 1},
    {"chat_id": 2**63},
    {"chat_id": 0},
    {"chat_id": -5},
    {"chat_id": True},
    {"chat_id": "13"},
    {"chat_id": 13.0},
    {"chat_id": None},
    {"session_id": 1743},
    {"session_id": 0},
    {"dialog_id": "chat29"},
    {"dialog_id": "chat"},
    {"user_code": "livechat|1|1373|211"},
    {"user_code": "nope"},
    {"CHAT_ID": 13},
    {1: 13},
]


@pytest.mark.parametrize("query", _ONE_KEY_QUERIES, ids=repr)
def test_from_query_one_key_dict_agrees_with_the_general_path(query: dict[Any, Any]) -> None:
    # A plain one-key dict takes a shortcut; any other mapping the general path. Both
    # give the same request, or the same error with the same words.
    def build(q: Any) -> DialogGet | tuple[type[Exception], str]:
        try:
            return DialogGet.from_query(q)
        except (TypeError, ValueError) as exc:
            return type(exc), str(exc)

    assert build(query) == build(types.MappingProxyType(query))


@pytest.mark.parametrize("name", ["chat_id", "session_id"])
@pytest.mark.parametrize(
    ("value", "error", "text"),
    [
        (2**63, ValueError, "at most 2**63 - 1"),
        (0, ValueError, "positive"),
        (-1, ValueError, "positive"),
        (True, TypeError, "must be an int"),
        (13.0, TypeError, "must be an int"),
    ],
)
def test_numeric_identifiers_are_checked(
    name: str, value: Any, error: type[Exception], text: str
) -> None:
    with pytest.raises(error) as caught:
        DialogGet(**{name: value})
    assert type(caught.value) is error
    assert name in str(caught.value)
    assert text in str(caught.value)


@pytest.mark.parametrize("name", ["chat_id", "session_id"])
def test_numeric_identifiers_take_the_largest_64_bit_id(name: str) -> None:
    assert getattr(DialogGet(**{name: typing.cast(Any, 2**63 - 1)}), name) == 2**63 - 1


class _Chat(enum.IntEnum):
    SUPPORT = 13


@pytest.mark.parametrize("chat_id", [13, 2**63 - 1, _Chat.SUPPORT], ids=repr)
def test_dialog_get_to_params_is_to_wire_of_its_identifier(chat_id: int) -> None:
    # DialogGet's shortcut for an int chat id gives what the generic encoder gives.
    assert DialogGet(chat_id=chat_id).to_params() == to_wire({"CHAT_ID": chat_id})
    assert DialogGet(chat_id=chat_id).to_params() == {"CHAT_ID": str(int(chat_id))}


@pytest.mark.parametrize("chat_id", [1, 13, 2**63 - 1])
def test_from_query_shortcut_builds_exactly_a_frozen_dialog_get(chat_id: int) -> None:
    # {"chat_id": int} is filled without DialogGet's __init__ (see bitrix_openlines._fill):
    # what it gives must be exactly what the constructor gives.
    made = DialogGet.from_query({"chat_id": chat_id})
    assert_exactly(made, DialogGet(chat_id=chat_id))
    assert made.identifier == ("chat_id", chat_id)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        made.chat_id = 5  # type: ignore[misc]


def test_from_query_of_a_subclass_builds_the_subclass() -> None:
    @attrs.frozen(kw_only=True)
    class Traced(DialogGet):
        pass

    made = Traced.from_query({"chat_id": 7})
    assert type(made) is Traced
    assert made == Traced(chat_id=7)


@pytest.mark.parametrize(
    "request_",
    [
        DialogGet(chat_id=13),
        DialogGet(chat_id=2**63 - 1),
        DialogGet.from_query({"chat_id": 29}),
        DialogGet(chat_id=_Chat.SUPPORT),
        DialogGet(dialog_id="chat29"),
        DialogGet(session_id=1743),
        DialogGet(user_code="livechat|1|1373|211"),
    ],
    ids=repr,
)
def test_the_plain_command_is_the_encoded_one_or_none(request_: DialogGet) -> None:
    # The batch engine's shortcut: when given, the same text as the general encoding.
    plain = request_._plain_command()
    if type(request_.chat_id) is int:
        assert plain == batch_command(DIALOG_GET, request_.to_params())
    else:
        assert plain is None


def test_a_method_has_no_plain_command_unless_it_gives_one() -> None:
    @attrs.frozen(kw_only=True)
    class Plain(Method[int]):
        __api_method__ = "x.y"
        __returns__ = int

        id: int = 5

    assert Plain()._plain_command() is None


# -- the registry ------------------------------------------------------------------------


@pytest.fixture
def scratch_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let a test register classes without leaving them behind."""
    monkeypatch.setattr(base, "_REGISTRY", dict(base._REGISTRY))


def test_dialog_get_is_registered() -> None:
    assert registered_methods()[DIALOG_GET] is DialogGet


@pytest.mark.parametrize("name", [DIALOG_GET, "IMOPENLINES.DIALOG.GET", "ImOpenLines.Dialog.Get"])
def test_get_method_is_case_insensitive(name: str) -> None:
    assert get_method(name) is DialogGet


def test_get_method_unknown() -> None:
    with pytest.raises(KeyError, match=r"imopenlines\.nothing"):
        get_method("imopenlines.nothing")


@pytest.mark.usefixtures("scratch_registry")
@pytest.mark.parametrize("name", [DIALOG_GET, "IMOPENLINES.Dialog.GET"])
def test_registry_refuses_a_duplicate_wire_name(name: str) -> None:
    @attrs.frozen(kw_only=True)
    class Impostor(Method[Dialog]):
        __api_method__ = name
        __returns__ = Dialog

    with pytest.raises(ValueError, match="already registered") as caught:
        register_method(Impostor)
    assert "DialogGet" in str(caught.value)
    assert get_method(DIALOG_GET) is DialogGet


@pytest.mark.usefixtures("scratch_registry")
def test_registering_the_same_class_twice_is_harmless() -> None:
    assert register_method(DialogGet) is DialogGet
    assert get_method(DIALOG_GET) is DialogGet


@pytest.mark.usefixtures("scratch_registry")
def test_register_a_new_method() -> None:
    @register_method
    @attrs.frozen(kw_only=True)
    class SessionStart(Method[Any]):
        __api_method__ = "imopenlines.session.start"
        __returns__ = Any
        chat_id: int = attrs.field(metadata={"wire": "CHAT_ID"})
        note: str | None = None

    assert get_method("IMOPENLINES.SESSION.START") is SessionStart
    assert SessionStart(chat_id=5).to_params() == {"CHAT_ID": "5"}
    assert SessionStart(chat_id=5, note="x").to_params() == {"CHAT_ID": "5", "NOTE": "x"}
    assert SessionStart.__idempotent__ is False


@pytest.mark.usefixtures("scratch_registry")
@pytest.mark.parametrize("name", [None, "", 5])
def test_register_needs_a_wire_name(name: Any) -> None:
    @attrs.frozen(kw_only=True)
    class Nameless(Method[Any]):
        __returns__ = Any

    if name is not None:
        Nameless.__api_method__ = name
    with pytest.raises(TypeError, match="__api_method__"):
        register_method(Nameless)


def test_registered_methods_is_a_copy() -> None:
    copy = registered_methods()
    copy.clear()
    assert get_method(DIALOG_GET) is DialogGet


def test_to_params_wire_value_forms() -> None:
    @attrs.frozen(kw_only=True)
    class Shapes(Method[Any]):
        __api_method__ = "x.shapes"
        __returns__ = Any
        ids: tuple[int, ...] = ()
        fields: dict[str, Any] | None = None
        code: UserCode | None = None

    method = Shapes(
        ids=(1, 2), fields={"a": (3, UserCode("l", 1, "2", "3"))}, code=UserCode("l", 1, "2", "3")
    )
    # The wire form: what PHP's parse_str gives the portal, the same in a batch.
    assert method.to_params() == {
        "IDS": ["1", "2"],
        "FIELDS": {"a": ["3", "l|1|2|3"]},
        "CODE": "l|1|2|3",
    }


@pytest.mark.parametrize("dialog_id", ["CHAT29", "Chat29", "chat29"])
def test_dialog_id_prefix_is_case_insensitive_like_the_server(dialog_id: str) -> None:
    # The server checks /^chat[0-9]+$/i, so any case of "chat" is a valid dialog id.
    assert DialogGet(dialog_id=dialog_id).to_params() == {"DIALOG_ID": dialog_id}
