"""The chat object as portals really send it: every shape, and no value dropped (issue 16).

Bodies come from the official doc pages (``tests/data/docs-examples``, sources in its
README) and from the shapes the issue describes: ``mute_list`` as a map of user id to
flag (newer portals' chat code, ``$muteList = [$userId => true]``), ``disappearing_time``
(current portals), ids as digit strings and the name as ``title`` (old portals, the 2017
``im.dialog.get`` example), ``entity_data_1`` ending in ``|0`` (current) or ``|``
(old), its line part ``0`` while ``entity_id`` names the line (the server writes it only
when it is positive).
"""

from __future__ import annotations

import copy
import json
import pickle
import traceback
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import attrs
import cattrs
import pytest
from _unit_helpers import DIALOG_GET, WEBHOOK_CODE, load_example, make_client, webhook_url
from aioresponses import aioresponses
from hypothesis import given, settings
from hypothesis import strategies as st

from bitrix_openlines import Dialog, RetryPolicy
from bitrix_openlines._convert import converter, describe_error, structure
from bitrix_openlines.errors import DecodeError
from bitrix_openlines.types.dialog import (
    NO_EXTRA,
    CrmBindings,
    EntityLink,
    Extra,
    LastMessageViews,
    Permissions,
    ReadEntry,
    Restrictions,
    SessionData,
    Viewer,
)

CURRENT = "imopenlines.dialog.get__200_success.json"
LEGACY = "imopenlines.dialog.get__legacy2024_200_success.json"
IM_CURRENT = "im.dialog.get__200_success.json"
IM_OLD = "im.dialog.get__legacy2024_200_success.json"
CHAT_EXAMPLES = [
    CURRENT,
    "imopenlines.dialog.get__200_success_ru.json",
    LEGACY,
    IM_CURRENT,
    IM_OLD,
]


def _result(docs: Path, name: str) -> dict[str, Any]:
    result = load_example(docs, name)["result"]
    assert isinstance(result, dict)
    return result


async def _through_client(result: Any) -> Dialog:
    with aioresponses() as mocked:
        mocked.post(webhook_url(DIALOG_GET), payload={"result": result})
        async with make_client(retry=RetryPolicy.never()) as client:
            return await client.get_dialog(chat_id=13)


# -- every value reachable ---------------------------------------------------------------
#
# The walker goes through the input JSON and the decoded object side by side: a key that is
# a field must hold the same value (in its typed form), any other key must be in that
# object's ``extra`` with its value as sent. Only the documented transformations are
# allowed: a digit string for an int, Y/N for a flag, an ATOM text for a date, "" or null
# for "no date", PHP's [] for "no object", an object for a list (its values), the map form
# of mute_list, and dialog_id null (derived from id).

_TRUE_WORDS = frozenset({"Y", "TRUE", "1"})


def _truthy(raw: Any) -> bool:
    return str(raw).strip().upper() in _TRUE_WORDS


def _same_leaf(raw: Any, typed: Any) -> bool:
    if isinstance(typed, bool):
        return _truthy(raw) is typed
    if isinstance(typed, datetime):
        if not isinstance(raw, str):
            return False
        parsed = datetime.fromisoformat(raw)
        return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)) == typed
    if isinstance(typed, int):
        if isinstance(raw, bool) or not isinstance(raw, int | float | str):
            return False
        if isinstance(raw, int):
            return raw == typed  # exact: a float would lose digits past 2**53
        text = str(raw).strip()
        try:
            return int(text) == typed
        except ValueError:
            return float(text) == typed
    if isinstance(typed, str):
        number = isinstance(raw, int | float) and not isinstance(raw, bool)
        return raw == typed or (number and str(raw) == typed)
    if typed is None:
        return raw is None or raw == "" or raw is False  # "" and false: no date
    return bool(raw == typed) and type(raw) is type(typed)


def _where(path: tuple[Any, ...]) -> str:
    return "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)


def assert_reachable(raw: Any, typed: Any, path: tuple[Any, ...] = ()) -> None:
    """Fail unless every leaf of ``raw`` is reachable, at its place, on ``typed``."""
    if attrs.has(type(typed)):
        assert isinstance(raw, dict), f"{_where(path)}: an object became {typed!r}"
        fields = attrs.fields_dict(type(typed))
        for key, value in raw.items():
            where = (*path, key)
            if isinstance(typed, Dialog) and key == "dialog_id" and value in (None, ""):
                assert typed.dialog_id == f"chat{typed.id}"
            elif key in fields and key != "extra":
                assert_reachable(value, getattr(typed, key), where)
            else:
                extra = typed.extra
                assert key in extra, f"{_where(where)} was dropped"
                assert_reachable(value, extra[key], where)
        return
    if isinstance(typed, tuple):
        if path[-1:] == ("mute_list",) and isinstance(raw, dict):
            muted = [int(key) for key, flag in raw.items() if _truthy(flag)]
            assert typed == tuple(muted), f"{_where(path)}: {raw!r} gave {typed!r}"
            return
        items = list(raw.values()) if isinstance(raw, dict) else ([] if raw is None else raw)
        assert isinstance(items, list), f"{_where(path)}: {raw!r} became {typed!r}"
        assert len(items) == len(typed), f"{_where(path)}: {len(items)} items, {len(typed)}"
        for index, (item, typed_item) in enumerate(zip(items, typed, strict=True)):
            assert_reachable(item, typed_item, (*path, index))
        return
    if isinstance(raw, dict | list):
        if not raw and typed is None:
            return  # PHP's [] (or {}) for "no object"
        # Kept as sent (an extra, ``public``): equal as is.
        assert raw == typed, f"{_where(path)}: {raw!r} became {typed!r}"
        return
    assert _same_leaf(raw, typed), f"{_where(path)}: {raw!r} became {typed!r}"


@pytest.mark.parametrize("name", CHAT_EXAMPLES)
async def test_every_value_of_each_documented_chat_object_is_reachable(
    docs_examples: Path, name: str
) -> None:
    result = _result(docs_examples, name)
    assert_reachable(result, structure(copy.deepcopy(result), Dialog))
    assert_reachable(result, await _through_client(copy.deepcopy(result)))


def _with_unknown_keys_everywhere(result: dict[str, Any]) -> dict[str, Any]:
    """The current example with an unknown key in every object, at every level."""
    body = copy.deepcopy(result)
    body["ai_provider"] = None
    body["extra"] = {"a key named like the attribute": True}
    body["future_block"] = {"nested": [1, {"deep": "x"}], "flag": "Y"}
    body["disappearing_time"] = 86400
    body["restrictions"]["path"] = "/online/?IM_DIALOG=chat1777"
    body["restrictions"]["path_title"] = "Open the chat"
    body["entity_link"]["open_in_new_tab"] = False
    body["permissions"]["manage_calls"] = "owner"
    body["readed_list"][0]["avatar"] = {"url": "", "color": "#df532d"}
    body["last_message_views"]["viewers_hash"] = "a1b2"
    body["last_message_views"]["first_viewers"][0]["user_avatar"] = ""
    body["last_message_views"]["first_viewers"][0]["extra"] = [1, 2]
    return body


async def test_unknown_keys_are_kept_at_every_level(docs_examples: Path) -> None:
    body = _with_unknown_keys_everywhere(_result(docs_examples, CURRENT))
    for dialog in (structure(copy.deepcopy(body), Dialog), await _through_client(body)):
        assert_reachable(body, dialog)
        assert dialog.extra == {
            "ai_provider": None,
            "extra": {"a key named like the attribute": True},
            "future_block": {"nested": [1, {"deep": "x"}], "flag": "Y"},
        }
        assert dialog.disappearing_time == 86400  # typed, not an extra
        assert dialog.restrictions is not None
        assert dialog.restrictions.extra == {
            "path": "/online/?IM_DIALOG=chat1777",
            "path_title": "Open the chat",
        }
        assert dialog.entity_link is not None
        assert dialog.entity_link.extra == {"open_in_new_tab": False}
        assert dialog.permissions is not None
        assert dialog.permissions.extra == {"manage_calls": "owner"}
        assert dialog.readed_list[0].extra == {"avatar": {"url": "", "color": "#df532d"}}
        views = dialog.last_message_views
        assert views is not None
        assert views.extra == {"viewers_hash": "a1b2"}
        assert views.first_viewers[0].extra == {"user_avatar": "", "extra": [1, 2]}


def test_the_walker_sees_a_dropped_or_changed_value(docs_examples: Path) -> None:
    # The check above could not pass by accident: an emptied extra, a lost list item or a
    # changed value each fail it.
    body = _with_unknown_keys_everywhere(_result(docs_examples, CURRENT))
    dialog = structure(copy.deepcopy(body), Dialog)
    assert dialog.restrictions is not None
    views = dialog.last_message_views
    assert views is not None
    broken = [
        attrs.evolve(dialog, restrictions=attrs.evolve(dialog.restrictions, extra={})),
        attrs.evolve(
            dialog,
            last_message_views=attrs.evolve(
                views, first_viewers=(attrs.evolve(views.first_viewers[0], extra={}),)
            ),
        ),
        attrs.evolve(dialog, readed_list=()),
        attrs.evolve(dialog, owner=28),
        attrs.evolve(dialog, extra={**dialog.extra, "ai_provider": "openai"}),
    ]
    for wrong in broken:
        with pytest.raises(AssertionError):
            assert_reachable(body, wrong)


_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)


def _unknown(known: type) -> st.SearchStrategy[dict[str, Any]]:
    names = {f.name for f in attrs.fields(known)} - {"extra"}
    return st.dictionaries(
        st.text(min_size=1, max_size=10).filter(lambda key: key not in names), _JSON, max_size=3
    )


_BODY = load_example(Path(__file__).resolve().parents[1] / "data" / "docs-examples", CURRENT)[
    "result"
]


@settings(max_examples=60, deadline=None)
@given(
    top=_unknown(Dialog),
    restrictions=_unknown(Restrictions),
    entity_link=_unknown(EntityLink),
    permissions=_unknown(Permissions),
    read=_unknown(ReadEntry),
    views=_unknown(LastMessageViews),
    viewer=_unknown(Viewer),
)
def test_any_unknown_keys_at_any_level_are_reachable(
    top: dict[str, Any],
    restrictions: dict[str, Any],
    entity_link: dict[str, Any],
    permissions: dict[str, Any],
    read: dict[str, Any],
    views: dict[str, Any],
    viewer: dict[str, Any],
) -> None:
    body = copy.deepcopy(_BODY)
    body.update(top)
    body["restrictions"].update(restrictions)
    body["entity_link"].update(entity_link)
    body["permissions"].update(permissions)
    body["readed_list"][0].update(read)
    body["last_message_views"].update(views)
    body["last_message_views"]["first_viewers"][0].update(viewer)
    dialog = structure(copy.deepcopy(body), Dialog)
    assert_reachable(body, dialog)
    assert dialog.extra == top


def test_nested_extras_are_outside_equality_and_hash() -> None:
    # As with Dialog.extra: two objects with the same fields are equal, and hashable.
    with_extra = Restrictions(avatar=True, extra={"path": "/x"})
    assert with_extra == Restrictions(avatar=True)
    assert hash(with_extra) == hash(Restrictions(avatar=True))
    assert "path" not in repr(with_extra)
    assert ReadEntry(user_id=5, extra={"a": 1}) == ReadEntry(user_id=5)
    assert Viewer(user_id=5).extra == {}
    # The empty extra is one shared read-only dict: no object can change another's.
    first, second = Viewer(user_id=5), Viewer(user_id=6)
    with pytest.raises(TypeError, match="read-only"):
        first.extra["x"] = 1  # type: ignore[index]
    assert second.extra == {}
    assert first.extra == {}


def _extras(dialog: Dialog) -> list[Any]:
    """The ``extra`` of the dialog and of each nested object that keeps one."""
    nested: list[Any] = [
        dialog.restrictions,
        dialog.entity_link,
        dialog.permissions,
        dialog.last_message_views,
        *dialog.readed_list,
    ]
    if dialog.last_message_views is not None:
        nested += dialog.last_message_views.first_viewers
    return [dialog.extra] + [item.extra for item in nested if item is not None]


@pytest.mark.parametrize("path", ["fast", "detailed"])
def test_objects_without_unknown_keys_share_the_empty_extra(
    docs_examples: Path, path: str
) -> None:
    body = _result(docs_examples, CURRENT)
    dialog = structure(body, Dialog) if path == "fast" else converter.structure(body, Dialog)
    extras = _extras(dialog)
    assert len(extras) >= 7
    assert all(extra is NO_EXTRA for extra in extras)


@pytest.mark.parametrize("path", ["fast", "detailed"])
def test_unknown_keys_are_a_read_only_extra(docs_examples: Path, path: str) -> None:
    body = copy.deepcopy(_result(docs_examples, CURRENT))
    body["new_field"] = {"a": [1, 2]}
    body["restrictions"]["path"] = "/x"
    dialog = structure(body, Dialog) if path == "fast" else converter.structure(body, Dialog)
    assert type(dialog.extra) is Extra
    assert dialog.extra == {"new_field": {"a": [1, 2]}}
    assert dialog.restrictions is not None
    assert type(dialog.restrictions.extra) is Extra
    assert dialog.restrictions.extra == {"path": "/x"}
    assert isinstance(dialog.extra, dict)
    assert json.loads(json.dumps(dialog.extra)) == {"new_field": {"a": [1, 2]}}
    assert dict(dialog.extra) == {"new_field": {"a": [1, 2]}}


@pytest.mark.parametrize(
    "change",
    [
        lambda e: e.__setitem__("k", 1),
        lambda e: e.__delitem__("new_field"),
        lambda e: e.setdefault("k", 1),
        lambda e: e.pop("new_field"),
        lambda e: e.popitem(),
        lambda e: e.clear(),
        lambda e: e.update(k=1),
        lambda e: e.__ior__({"k": 1}),
    ],
)
@pytest.mark.parametrize("extra", [Extra({"new_field": 1}), NO_EXTRA], ids=["full", "empty"])
def test_extra_refuses_every_change(extra: Extra, change: Any) -> None:
    before = dict(extra)
    with pytest.raises(TypeError, match="read-only"):
        change(extra)
    assert dict(extra) == before


@pytest.mark.parametrize(
    "copier",
    [copy.copy, copy.deepcopy, lambda value: pickle.loads(pickle.dumps(value))],
    ids=["copy", "deepcopy", "pickle"],
)
def test_extra_survives_copies_read_only(copier: Any) -> None:
    extra = Extra({"a": [1]})
    copied = copier(extra)
    assert type(copied) is Extra
    assert copied == {"a": [1]}
    with pytest.raises(TypeError, match="read-only"):
        copied["b"] = 2
    dialog = copier(Restrictions(avatar=True, extra=extra))
    assert type(dialog.extra) is Extra
    assert dialog.extra == {"a": [1]}


@pytest.fixture
def empty_shared() -> Iterator[None]:
    """Start with nothing remembered (the generated code holds the dicts: cleared in place)."""
    from bitrix_openlines import _convert

    saved = {cls: dict(shared) for cls, shared in _convert._SHARED.items()}
    for shared in _convert._SHARED.values():
        shared.clear()
    yield
    for cls, shared in _convert._SHARED.items():
        shared.clear()
        shared.update(saved[cls])


@pytest.mark.usefixtures("empty_shared")
def test_equal_flags_and_roles_are_one_shared_object(docs_examples: Path) -> None:
    body = _result(docs_examples, CURRENT)
    first, second = structure(copy.deepcopy(body), Dialog), structure(copy.deepcopy(body), Dialog)
    assert first.restrictions is not None
    assert first.restrictions is second.restrictions
    assert first.permissions is second.permissions
    # Not shared: other values, or keys of their own (their extra is their own).
    other = copy.deepcopy(body)
    other["restrictions"]["call"] = not body["restrictions"]["call"]
    other["permissions"]["path"] = "/x"
    third = structure(other, Dialog)
    assert third.restrictions is not first.restrictions
    assert third.restrictions == attrs.evolve(
        first.restrictions, call=not body["restrictions"]["call"]
    )
    assert third.permissions is not first.permissions
    assert third.permissions == first.permissions
    assert third.permissions is not None
    assert third.permissions.extra == {"path": "/x"}
    assert first.permissions is not None
    assert first.permissions.extra is NO_EXTRA


@pytest.mark.usefixtures("empty_shared")
def test_shared_objects_are_remembered_up_to_a_bound() -> None:
    from bitrix_openlines import _convert

    remembered = _convert._SHARED[Permissions]
    made = [
        structure({"manage_ui": f"role{i}", "can_post": "member"}, Permissions)
        for i in range(_convert._SHARED_MAX + 50)
    ]
    assert len(remembered) == _convert._SHARED_MAX
    # Past the bound each object is still right, only no longer shared.
    assert [p.manage_ui for p in made] == [f"role{i}" for i in range(len(made))]
    again = structure({"manage_ui": f"role{len(made) - 1}", "can_post": "member"}, Permissions)
    assert again == made[-1]


# -- mute_list: a list of ids, or a map of id to flag --------------------------------------


@pytest.mark.parametrize(
    ("wire", "muted"),
    [
        ([], ()),
        (None, ()),
        ([503, "27"], (503, 27)),
        ({}, ()),
        ({"503": True}, (503,)),  # newer portals: {user id: true}
        ({"503": True, "27": False, "9": "Y", "8": "N", "7": 1}, (503, 9, 7)),
        ({503: True}, (503,)),
        ({"0": 503}, None),  # a PHP list with keys: not a flag, refused below
    ],
)
async def test_mute_list_shapes(wire: Any, muted: tuple[int, ...] | None) -> None:
    body = {"id": 1777, "mute_list": wire}
    if muted is None:
        with pytest.raises(cattrs.BaseValidationError) as caught:
            structure(body, Dialog)
        assert describe_error(caught.value) == (
            "$.mute_list['0']: expected a flag (true/false or Y/N), got an integer"
        )
        return
    assert structure(copy.deepcopy(body), Dialog).mute_list == muted
    assert (await _through_client(body)).mute_list == muted


async def test_mute_list_map_in_the_documented_object(docs_examples: Path) -> None:
    result = _result(docs_examples, CURRENT)
    result["mute_list"] = {"27": True, "599": False}
    dialog = await _through_client(result)
    assert dialog.mute_list == (27,)
    assert dialog.extra == {}
    assert_reachable(result, dialog)


# -- decode errors: the path and the innermost cause ---------------------------------------

ERRORS: list[tuple[Any, str]] = [
    ({"id": 1, "mute_list": [True]}, "$.mute_list[0]: expected an integer, got a boolean"),
    (
        {"id": 1, "mute_list": {"503": "maybe"}},
        "$.mute_list['503']: expected a flag (true/false or Y/N), got a string",
    ),
    (
        {"id": 1, "mute_list": {"x7": True}},
        "$.mute_list[<key>]: expected user ids as keys, got a key that is not one",
    ),
    ({"id": 1, "mute_list": 5}, "$.mute_list: expected a list, got an integer"),
    ({}, "$.id: required field missing"),
    ({"id": None}, "$.id: expected an integer, got null"),
    ({"id": "abc"}, "$.id: expected an integer, got a string that is not a whole number"),
    ({"id": 29.5}, "$.id: expected an integer, got a number with a fraction"),
    ({"id": " "}, "$.id: expected an integer, got an empty string"),
    ({"id": "9" * 5000}, "$.id: expected an integer, got a string of too many digits"),
    ({"id": True}, "$.id: expected an integer, got a boolean"),
    (
        {"id": 1, "date_create": "yesterday"},
        "$.date_create: expected an ISO-8601 date, got a string that is not one",
    ),
    (
        {"id": 1, "date_create": 1773682918},
        "$.date_create: expected an ISO-8601 date, got an integer",
    ),
    (
        {"id": 1, "restrictions": "all"},
        "$.restrictions: expected an object (Restrictions), got a string",
    ),
    (
        {"id": 1, "restrictions": {"send": "maybe"}},
        "$.restrictions.send: expected a flag (true/false or Y/N), got a string",
    ),
    (
        {"id": 1, "permissions": {"can_post": ["member"]}},
        "$.permissions.can_post: expected a string, got a list",
    ),
    ({"id": 1, "manager_list": 27}, "$.manager_list: expected a list, got an integer"),
    (
        {"id": 1, "manager_list": [27, "x"]},
        "$.manager_list[1]: expected an integer, got a string that is not a whole number",
    ),
    (
        {"id": 1, "manager_list": {"3": 27, "7": {}}},
        "$.manager_list['7']: expected an integer, got an object",
    ),
    (
        {"id": 1, "readed_list": [{"user_name": "no user id"}]},
        "$.readed_list[0].user_id: required field missing",
    ),
    (
        {"id": 1, "readed_list": ["599"]},
        "$.readed_list[0]: expected an object (ReadEntry), got a string",
    ),
    (
        {"id": 1, "last_message_views": {"first_viewers": [{"user_id": 1}, {"user_id": True}]}},
        "$.last_message_views.first_viewers[1].user_id: expected an integer, got a boolean",
    ),
    (
        {"id": 1, "last_message_views": {"first_viewers": 3}},
        "$.last_message_views.first_viewers: expected a list, got an integer",
    ),
    (
        {"id": 1, "extranet": "maybe"},
        "$.extranet: expected a flag (true/false or Y/N), got a string",
    ),
    ({"id": 1, "name": []}, "$.name: expected a string, got a list"),
    (
        {"id": 1, "disappearing_time": "soon"},
        "$.disappearing_time: expected an integer, got a string that is not a whole number",
    ),
    (5, "$: expected a chat object, got an integer"),
    ([], "$: expected a chat object, got a list"),
    (None, "$: expected a chat object, got null"),
    (
        {"id": "a", "owner": "b", "counter": [], "unread_id": {}},
        "$.id: expected an integer, got a string that is not a whole number; "
        "$.owner: expected an integer, got a string that is not a whole number; "
        "$.counter: expected an integer, got a list; and 1 more",
    ),
]


@pytest.mark.parametrize(("body", "message"), ERRORS)
async def test_decode_error_names_the_path_and_the_innermost_cause(
    body: Any, message: str
) -> None:
    with pytest.raises(Exception) as caught:  # cattrs' groups, or a TypeError at the top
        structure(copy.deepcopy(body), Dialog)
    assert describe_error(caught.value) == message
    assert "invalid value for type" not in message  # not cattrs' generic wording
    with aioresponses() as mocked:
        mocked.post(webhook_url(DIALOG_GET), payload={"result": body})
        async with make_client(retry=RetryPolicy.never()) as client:
            with pytest.raises(DecodeError) as through_client:
                await client.get_dialog(chat_id=13)
    error = through_client.value
    assert error.description == f"the result does not fit Dialog: {message}"
    assert message in str(error)


async def test_decode_errors_never_quote_values_from_the_network() -> None:
    # Values and keys of an answer may echo a secret: a message names their kind only.
    secret = WEBHOOK_CODE
    body = {
        "id": secret,
        "date_create": f"token {secret}",
        "mute_list": {secret: True, "5": secret},
        "manager_list": {secret: secret},
        "restrictions": secret,
    }
    with aioresponses() as mocked:
        mocked.post(webhook_url(DIALOG_GET), payload={"result": body})
        async with make_client(retry=RetryPolicy.never()) as client:
            with pytest.raises(DecodeError) as caught:
                await client.get_dialog(chat_id=13)
    error = caught.value
    assert "$.id: expected an integer, got a string" in str(error)
    printed = "".join(traceback.format_exception(error))  # the chained causes and notes too
    assert secret not in printed
    assert secret not in repr(error)


@pytest.mark.parametrize("error", [ValueError(f"bad {WEBHOOK_CODE}"), RuntimeError(WEBHOOK_CODE)])
def test_a_foreign_error_is_named_by_its_type_only(error: Exception) -> None:
    # Raised outside the SDK's hooks, its words may quote the value: only its type is used.
    try:
        raise error
    except Exception as raised:
        text = describe_error(raised)
    assert text == f"$: could not be read ({type(error).__name__})"
    assert WEBHOOK_CODE not in text


# -- the old and the new quirks -------------------------------------------------------------


@pytest.mark.parametrize(
    ("entity_data_1", "block_reason"),
    [
        ("Y|LEAD|1209|N|N|343|1773682918|0|0|0", ""),  # current portals: "0", no reason
        ("N|NONE|0|N|N|0|1591872180|1|0|", ""),  # old portals: empty
        ("N|NONE|0|N|N|0|1591872180|1|0", ""),  # cut before it
        ("N|NONE|0|N|N|12|1591872180|1|1591872190|SPAM", "SPAM"),  # a reason is kept
    ],
)
def test_block_reason_zero_and_empty_both_mean_no_reason(
    entity_data_1: str, block_reason: str
) -> None:
    dialog = structure({"id": 1, "entity_data_1": entity_data_1}, Dialog)
    assert dialog.session.block_reason == block_reason
    assert dialog.entity_data_1 == entity_data_1  # the raw text stays


async def test_block_reason_of_the_documented_objects(docs_examples: Path) -> None:
    current = await _through_client(_result(docs_examples, CURRENT))
    old = await _through_client(_result(docs_examples, LEGACY))
    assert (current.entity_data_1 or "").endswith("|0")
    assert (old.entity_data_1 or "").endswith("|")
    assert current.session.block_reason == old.session.block_reason == ""


@pytest.mark.parametrize(
    ("entity_data_1", "entity_id", "line_id"),
    [
        # The current doc example: the session says 0, entity_id names line 22.
        ("Y|LEAD|1209|N|N|343|1773682918|0|0|0", "livechat|22|1775|599", 22),
        # The 2024 example: the session names the line.
        ("N|NONE|0|N|N|0|1591872180|1|0|", "livechat|1|1363|203", 1),
        # A positive session line wins (the session may have moved to another line).
        ("N|NONE|0|N|N|5|1591872180|7|0|0", "livechat|22|1775|599", 7),
        ("N|NONE|0|N|N|5", "imol|telegrambot|3|9|9", 3),  # short string, imol| prefix
        ("N|NONE|0|N|N|5|1591872180|0|0|0", "DEAL|1663", None),  # not a user code
        ("N|NONE|0|N|N|5|1591872180|0|0|0", "livechat|0|1|1", None),
        (None, None, None),
    ],
)
def test_line_id_falls_back_to_entity_id(
    entity_data_1: str | None, entity_id: str | None, line_id: int | None
) -> None:
    dialog = structure({"id": 1, "entity_data_1": entity_data_1, "entity_id": entity_id}, Dialog)
    assert dialog.line_id == line_id


async def test_line_id_of_the_documented_objects(docs_examples: Path) -> None:
    current = await _through_client(_result(docs_examples, CURRENT))
    assert current.session.line_id == 0  # as written
    assert current.line_id == 22
    old = await _through_client(_result(docs_examples, LEGACY))
    assert old.session.line_id == old.line_id == 1
    crm_chat = await _through_client(_result(docs_examples, IM_CURRENT))
    assert crm_chat.line_id is None  # a CRM chat: no open line


@pytest.mark.parametrize(
    ("wire", "typed"), [(0, 0), (86400, 86400), ("3600", 3600), (None, None), ("absent", None)]
)
async def test_disappearing_time_is_typed(
    docs_examples: Path, wire: Any, typed: int | None
) -> None:
    result = _result(docs_examples, CURRENT)
    if wire != "absent":
        result["disappearing_time"] = wire
    dialog = await _through_client(copy.deepcopy(result))
    assert dialog.disappearing_time == typed
    assert "disappearing_time" not in dialog.extra
    assert_reachable(result, dialog)


async def test_old_chat_object_with_string_ids_and_title(docs_examples: Path) -> None:
    result = _result(docs_examples, IM_OLD)
    assert result["id"] == "21191"  # the shape under test
    assert "name" not in result
    for dialog in (structure(copy.deepcopy(result), Dialog), await _through_client(result)):
        assert dialog.id == 21191
        assert dialog.owner == 2
        assert dialog.dialog_id == "chat21191"
        assert dialog.extra == {"title": "Mint Chat #3"}  # kept as sent
        assert dialog.name == "Mint Chat #3"  # and offered where current portals put it
        assert dialog.date_create == datetime.fromisoformat("2017-10-14T12:15:32+02:00")
        assert dialog.entity_id is None
        assert dialog.user_code is None
        assert dialog.line_id is None
        assert dialog.session == SessionData()
        assert_reachable(result, dialog)


def test_title_does_not_replace_a_name() -> None:
    dialog = structure({"id": "5", "name": "Current", "title": "Old"}, Dialog)
    assert (dialog.id, dialog.name, dialog.extra) == (5, "Current", {"title": "Old"})
    # A title that is not text is kept, not used as the name.
    odd = structure({"id": 5, "title": ["x"]}, Dialog)
    assert (odd.name, odd.extra) == (None, {"title": ["x"]})


async def test_im_dialog_get_object_keeps_restriction_links(docs_examples: Path) -> None:
    result = _result(docs_examples, IM_CURRENT)
    dialog = await _through_client(result)
    assert dialog.restrictions is not None
    assert dialog.restrictions.extra == {"path": "", "path_title": ""}
    assert dialog.entity_link is not None
    assert dialog.entity_link.url == "/crm/deal/details/1663/"
    assert dialog.readed_list[1].user_name == "Peter Johnson"
    assert dialog.last_message_views is not None
    assert dialog.last_message_views.first_viewers == ()


# -- entity_data_1/2: parts past the known ones ----------------------------------------


def test_session_data_keeps_parts_past_the_ten_known_ones() -> None:
    session = SessionData.parse("Y|LEAD|1209|N|N|343|1773682918|0|0|0|future|x")
    assert session.session_id == 343
    assert session.extra == {10: "future", 11: "x"}
    assert SessionData.parse("Y|LEAD|1209|N|N|343|1773682918|0|0|0").extra == {}
    assert SessionData.parse("N|NONE|0|N|N|0|1591872180|1|0|").extra == {}
    assert session == SessionData.parse("Y|LEAD|1209|N|N|343|1773682918|0|0|0")


@pytest.mark.parametrize(
    ("raw", "bindings", "extra"),
    [
        ("LEAD|1209|COMPANY|0|CONTACT|0|DEAL|0", CrmBindings(lead=1209), {}),
        ("LEAD|1|ORDER|7|DEAL|2", CrmBindings(lead=1, deal=2), {"ORDER": "7"}),
        ("DEAL|2|QUOTE", CrmBindings(deal=2), {"": "QUOTE"}),
        ("", CrmBindings(), {}),
    ],
)
def test_crm_bindings_keep_unknown_pairs(
    raw: str, bindings: CrmBindings, extra: dict[str, str]
) -> None:
    parsed = CrmBindings.parse(raw)
    assert parsed == bindings
    assert parsed.extra == extra


@attrs.frozen
class _Kept:
    name: str | None = None
    extra: dict[str, Any] = attrs.field(factory=dict, eq=False)


@attrs.frozen
class _Plain:
    name: str | None = None
    extra: dict[str, Any] = attrs.field(factory=dict)  # a field like any other


def test_only_an_extra_outside_equality_collects_unknown_keys() -> None:
    # The converter's convention: ``extra`` with eq=False (as Dialog.extra) holds the
    # unknown keys; an ``extra`` that is part of equality is an ordinary field.
    body = {"name": "n", "extra": {"a": 1}, "other": 2}
    assert structure(body, _Kept).extra == {"extra": {"a": 1}, "other": 2}
    assert structure(body, _Plain).extra == {"a": 1}
