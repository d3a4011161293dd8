"""The fast structuring path (issue 17): the same objects and errors as the detailed one.

``_convert.structure`` first runs a generated function per attrs class, which keeps values
of exactly the field's type as they are and calls the field's hook for anything else; on
any failure the detailed cattrs path structures the value again and words the error. What
must hold: every answer gives the same object (extras included) or the same error either
way, a good answer never takes the detailed path, and a bad one always does.
"""

from __future__ import annotations

import copy
import pickle
import sys
import traceback
import typing
import weakref
from collections.abc import Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import attrs
import pytest
from _unit_helpers import WEBHOOK_CODE, load_example
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bitrix_openlines import _convert
from bitrix_openlines._convert import converter, describe_error, structure, structure_result
from bitrix_openlines.errors import DecodeError
from bitrix_openlines.types import TimeInfo
from bitrix_openlines.types.dialog import (
    NO_EXTRA,
    Dialog,
    EntityLink,
    LastMessageViews,
    Permissions,
    ReadEntry,
    Restrictions,
    Viewer,
)

CHAT_EXAMPLES = [
    "imopenlines.dialog.get__200_success.json",
    "imopenlines.dialog.get__200_success_ru.json",
    "imopenlines.dialog.get__legacy2024_200_success.json",
    "im.dialog.get__200_success.json",
    "im.dialog.get__legacy2024_200_success.json",
]
CURRENT = load_example(
    Path(__file__).resolve().parents[1] / "data" / "docs-examples", CHAT_EXAMPLES[0]
)


def deep(value: Any) -> Any:
    """A comparable form of a structured value: every attribute, ``extra`` included, with
    the type of each leaf (``1``, ``1.0`` and ``True`` differ) and each date's offset."""
    cls = type(value)
    if attrs.has(cls):
        return (cls.__name__, [(f.name, deep(getattr(value, f.name))) for f in attrs.fields(cls)])
    if isinstance(value, tuple):
        return ("tuple", [deep(item) for item in value])
    if isinstance(value, dict):
        return ("dict", [(deep(key), deep(item)) for key, item in value.items()])
    if isinstance(value, list):
        return ("list", [deep(item) for item in value])
    if isinstance(value, datetime):
        return ("datetime", value.isoformat())
    return (cls.__name__, value)


class _Detailed:
    """Stands in for the converter and records what went to the detailed path."""

    def __init__(self) -> None:
        self.calls: list[Any] = []

    def structure(self, value: Any, cl: Any) -> Any:
        self.calls.append(cl)
        return converter.structure(value, cl)

    def __getattr__(self, name: str) -> Any:  # the generator asks it for hooks
        return getattr(converter, name)


@pytest.fixture
def detailed(monkeypatch: pytest.MonkeyPatch) -> _Detailed:
    spy = _Detailed()
    monkeypatch.setattr(_convert, "converter", spy)
    return spy


# -- what each path decides ------------------------------------------------------------------


@pytest.mark.parametrize("name", CHAT_EXAMPLES)
def test_a_documented_chat_object_never_takes_the_detailed_path(
    docs_examples: Path, name: str, detailed: _Detailed
) -> None:
    result = load_example(docs_examples, name)["result"]
    dialog = structure(copy.deepcopy(result), Dialog)
    assert detailed.calls == []
    assert deep(dialog) == deep(converter.structure(copy.deepcopy(result), Dialog))


def test_a_documented_time_block_never_takes_the_detailed_path(
    docs_examples: Path, detailed: _Detailed
) -> None:
    block = load_example(docs_examples, "time_block__data-types.json")["time"]
    info = structure(block, TimeInfo)
    assert detailed.calls == []
    assert info == converter.structure(block, TimeInfo)


@pytest.mark.parametrize(
    "patch",
    [
        {"id": True},  # a hook refuses it
        {"date_create": "token " + WEBHOOK_CODE},  # fromisoformat refuses it
        {"restrictions": {"send": "maybe"}},  # in a nested object
        {"readed_list": [{"user_name": "no user id"}]},  # a required field is missing
        {"last_message_views": {"first_viewers": ["27"]}},  # an item is not an object
    ],
)
def test_a_bad_answer_is_structured_again_by_the_detailed_path(
    patch: dict[str, Any], detailed: _Detailed
) -> None:
    body = {**copy.deepcopy(CURRENT["result"]), **patch}
    with pytest.raises(DecodeError) as caught:
        structure_result(body, Dialog, "imopenlines.dialog.get")
    assert detailed.calls == [Dialog]
    # The error is the detailed path's alone, with nothing chained: neither the fast
    # path's exception (fromisoformat's message quotes the text, which may be a secret) nor
    # the converter's (it quotes the answer's values).
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__
    printed = "".join(traceback.format_exception(caught.value))
    assert WEBHOOK_CODE not in printed
    assert "fromisoformat" not in printed
    assert "the result does not fit Dialog" in printed


def test_values_that_need_a_hook_take_it_on_the_fast_path(detailed: _Detailed) -> None:
    # Digit strings, Y/N flags, PHP's [] for an object, a naive date, a PHP list as an
    # object, the map form of mute_list: each goes to its hook, and no fallback is needed.
    body = {
        **copy.deepcopy(CURRENT["result"]),
        "id": "1777",
        "extranet": "N",
        "name": 42,
        "date_create": "2026-03-13T16:50:15",
        "restrictions": [],
        "manager_list": {"3": "27"},
        "mute_list": {"27": True, "599": False},
        "dialog_id": None,
        "readed_list": {"0": {"user_id": "599", "date": ""}},
    }
    dialog = structure(copy.deepcopy(body), Dialog)
    assert detailed.calls == []
    assert deep(dialog) == deep(converter.structure(body, Dialog))
    assert (dialog.id, dialog.extranet, dialog.name, dialog.dialog_id) == (
        1777,
        False,
        "42",
        "chat1777",
    )
    assert dialog.restrictions is None
    assert (dialog.manager_list, dialog.mute_list) == ((27,), (27,))
    assert dialog.readed_list == (ReadEntry(user_id=599),)


def test_a_mapping_that_is_not_a_dict_goes_to_the_detailed_path(detailed: _Detailed) -> None:
    body = _Frozen({"id": 5, "last_message_views": _Frozen({"count_of_viewers": "2"})})
    dialog = structure(body, Dialog)
    assert detailed.calls == [Dialog]
    assert dialog.last_message_views == LastMessageViews(count_of_viewers=2)


def test_a_mapping_item_built_inline_goes_to_the_detailed_path(detailed: _Detailed) -> None:
    item = {"user_id": 5, "user_name": "G", "message_id": 1, "date": None}
    body = {**copy.deepcopy(CURRENT["result"]), "readed_list": [_Frozen(item)]}
    dialog = structure(body, Dialog)
    assert detailed.calls == [Dialog]
    assert dialog.readed_list == (ReadEntry(5, "G", 1),)


class _Frozen(Mapping[str, Any]):
    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)


def _prefixes() -> Iterator[dict[str, Any]]:
    """The documented object cut after each of its keys (``id`` first: it is required)."""
    result = copy.deepcopy(CURRENT["result"])
    keys = ["id", *(key for key in result if key != "id")]
    for size in range(1, len(keys) + 1):
        yield {key: result[key] for key in keys[:size]}


@pytest.mark.parametrize("unknown", [{}, {"ai": 1}, {"title": "t", "path": None}])
def test_unknown_keys_are_found_whatever_the_fields_present(
    unknown: dict[str, Any], detailed: _Detailed
) -> None:
    # Objects of every size (both the few-keys function and the one that counts the
    # missing fields), with null values (present, not missing), and unknown keys or not.
    for prefix in _prefixes():
        body = {**prefix, "description": None, **unknown}
        dialog = structure(copy.deepcopy(body), Dialog)
        assert deep(dialog) == deep(converter.structure(copy.deepcopy(body), Dialog))
        assert dialog.extra == unknown
        nested = {**body, "restrictions": {"send": True, **unknown}}
        restrictions = structure(copy.deepcopy(nested), Dialog).restrictions
        assert restrictions is not None
        assert restrictions.extra == unknown
    assert detailed.calls == []


# -- the builder: an instance is built in a subclass, then becomes its class ------------------

CHAT_CLASSES = [Dialog, Restrictions, Permissions, EntityLink, ReadEntry, Viewer, LastMessageViews]


def _instances(value: Any) -> Iterator[Any]:
    """``value`` and every attrs instance under it."""
    if attrs.has(type(value)):
        yield value
        for field in attrs.fields(type(value)):
            yield from _instances(getattr(value, field.name))
    elif isinstance(value, tuple):
        for item in value:
            yield from _instances(item)


@pytest.mark.parametrize("cls", CHAT_CLASSES)
def test_each_chat_class_has_a_builder_of_its_layout(cls: type) -> None:
    builder = _convert._builder(cls)
    assert builder is not None
    assert issubclass(builder, cls)
    assert builder.__basicsize__ == cls.__basicsize__
    assert builder.__dict__["__slots__"] == ()


def test_a_built_dialog_is_exactly_what_its_class_builds() -> None:
    result = copy.deepcopy(CURRENT["result"])
    dialog = structure(result, Dialog)
    expected = converter.structure(copy.deepcopy(result), Dialog)
    built = list(_instances(dialog))
    # Every class of the chat object, each instance of exactly its class.
    assert {type(item) for item in built} == set(CHAT_CLASSES)
    builders = {_convert._builder(cls) for cls in CHAT_CLASSES}
    assert not any(isinstance(item, tuple(b for b in builders if b)) for item in built)
    assert (dialog == expected, repr(dialog), hash(dialog)) == (
        True,
        repr(expected),
        hash(expected),
    )
    assert deep(pickle.loads(pickle.dumps(dialog))) == deep(expected)
    assert deep(copy.deepcopy(dialog)) == deep(expected)
    assert attrs.evolve(dialog, name="x") == attrs.evolve(expected, name="x")
    assert weakref.ref(dialog)() is dialog
    for item in built:  # still frozen: the builder's own __setattr__ is gone with it
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            item.extra = {}
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            del item.extra


_subclassed: list[type] = []


@attrs.frozen(slots=True)
class _Registering:
    count: int
    label: str | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _subclassed.append(cls)


def test_a_class_that_watches_its_subclasses_gets_no_builder() -> None:
    assert _convert._builder(_Registering) is None
    assert _convert._slot_setters(_Registering) is not None  # built slot by slot instead
    assert structure({"count": "4", "label": "x"}, _Registering) == _Registering(4, "x")
    assert _subclassed == []


# -- classes the generator builds through __init__, or leaves to cattrs ------------------------


def _upper(value: str | None) -> str | None:
    return None if value is None else value.upper()


@attrs.frozen(slots=True)
class _Validated:
    count: int = attrs.field(validator=attrs.validators.ge(0))
    label: str | None = attrs.field(default=None, converter=_upper)


@attrs.frozen(slots=True)
class _KeywordOnly:
    count: int
    label: str | None = attrs.field(default=None, kw_only=True)


@attrs.frozen(slots=True)
class _Node:
    value: int
    children: tuple[_Node, ...] = ()
    extra: dict[str, Any] = attrs.field(factory=dict, eq=False)


@attrs.define
class _Mutable:
    count: int
    seen: list[int] = attrs.Factory(list)

    def __attrs_post_init__(self) -> None:
        self.seen.append(self.count)


def test_validators_and_converters_still_run() -> None:
    assert _convert._slot_setters(_Validated) is None  # built through its __init__
    assert structure({"count": "3", "label": "x"}, _Validated) == _Validated(3, "X")
    with pytest.raises(Exception) as caught:
        structure({"count": -1}, _Validated)
    # attrs' validator raises in __init__, outside any field: both paths say so.
    assert describe_error(caught.value) == "$: could not be read (ValueError)"


def test_a_class_the_generator_does_not_take_uses_cattrs() -> None:
    assert _convert._fast_function(_KeywordOnly) is None
    assert structure({"count": "2", "label": 5}, _KeywordOnly) == _KeywordOnly(2, label="5")


def test_a_class_that_contains_itself() -> None:
    body = {"value": "1", "children": [{"value": 2, "children": [{"value": 3, "x": 1}]}]}
    node = structure(copy.deepcopy(body), _Node)
    assert deep(node) == deep(converter.structure(body, _Node))
    assert node.children[0].children[0].extra == {"x": 1}


def test_a_dict_class_with_a_post_init_gets_fresh_factories() -> None:
    first = structure({"count": 1}, _Mutable)
    second = structure({"count": "2"}, _Mutable)
    assert (first.seen, second.seen) == ([1], [2])


# -- both paths agree on any answer ------------------------------------------------------------

_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**64), max_value=2**64)
    | st.floats(allow_nan=False)
    | st.text(max_size=6),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=5,
)
_ODD: st.SearchStrategy[Any] = st.sampled_from(
    [None, "", [], {}, False, True, 0, 1, 2.5, "x", " 7 ", "Y", "n", 10**25]
)
_SCALARS: dict[Any, st.SearchStrategy[Any]] = {
    int: st.one_of(st.integers(-(2**63), 2**63), st.sampled_from(["5", " 12 ", 3.0, "-4"])),
    str: st.one_of(st.text(max_size=8), st.sampled_from([7, 2.5])),
    bool: st.sampled_from([True, False, "Y", "N", "y", "true", "0", 1, 0, ""]),
    float: st.one_of(st.floats(allow_nan=False), st.integers(), st.sampled_from(["1.5"])),
    datetime: st.sampled_from(
        [
            "2026-03-13T16:50:15+01:00",
            "2026-03-16T20:50:37+03:00",
            "2020-05-12T17:40:55",
            "2026-03-13",
            "",
            False,
            "yesterday",
            1773682918,
        ]
    ),
}


def _values(tp: Any) -> st.SearchStrategy[Any]:
    """Plausible values of ``tp`` as a portal may send them, and now and then a wrong one."""
    inner = _convert._optional_of(tp)
    if inner is not None:
        return st.one_of(st.none(), _values(inner))
    if tp is Any:
        return _JSON
    if tp in _SCALARS:
        return st.one_of(_SCALARS[tp], _SCALARS[tp], _ODD)
    if typing.get_origin(tp) is tuple:
        item = _values(typing.get_args(tp)[0])
        as_map = st.dictionaries(st.sampled_from(["0", "1", "7"]), item, max_size=2)
        return st.one_of(st.lists(item, max_size=3), st.lists(item, max_size=3), as_map, _ODD)
    if attrs.has(tp):
        return st.one_of(_objects(tp), _objects(tp), _ODD)
    return _JSON


def _objects(cls: type) -> st.SearchStrategy[dict[str, Any]]:
    hints = typing.get_type_hints(cls)
    fields = {f.name: _values(hints[f.name]) for f in attrs.fields(cls) if f.name != "extra"}
    required = {f.name for f in attrs.fields(cls) if f.default is attrs.NOTHING}
    # "title" is the name of old portals: Dialog takes it when it has no name.
    unknown = st.dictionaries(
        st.sampled_from(["title", "path", "extra", "ai", "0"]),
        st.one_of(st.text(max_size=4), _JSON),
    )
    return st.builds(
        lambda known, more, extra: {**extra, **more, **known},
        st.fixed_dictionaries({name: fields[name] for name in required}),
        st.fixed_dictionaries({}, optional={n: s for n, s in fields.items() if n not in required}),
        st.one_of(st.just({}), unknown),
    )


_MUTE_MAPS = st.dictionaries(
    st.sampled_from(["503", "27", "x7", "0"]), st.sampled_from([True, False, "Y", "maybe", 1])
)
_DIALOGS = st.one_of(
    st.builds(
        lambda body, mute: {**body, "mute_list": mute} if mute is not None else body,
        _objects(Dialog),
        st.one_of(st.none(), _MUTE_MAPS),
    ),
    # The documented object with a few fields replaced.
    st.builds(
        lambda patch: {**CURRENT["result"], **patch},
        st.fixed_dictionaries(
            {},
            optional={
                f.name: _values(typing.get_type_hints(Dialog)[f.name])
                for f in attrs.fields(Dialog)
                if f.name != "extra"
            },
        ),
    ),
)


def _outcome(run: Any) -> Any:
    try:
        return ("ok", deep(run()))
    except Exception as exc:
        return ("error", type(exc).__name__, describe_error(exc))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=_DIALOGS)
def test_both_paths_give_the_same_dialog_or_the_same_error(body: dict[str, Any]) -> None:
    fast = _outcome(lambda: structure(copy.deepcopy(body), Dialog))
    detailed = _outcome(lambda: converter.structure(copy.deepcopy(body), Dialog))
    assert fast == detailed


@settings(max_examples=100, deadline=None)
@given(block=_objects(TimeInfo))
def test_both_paths_give_the_same_time_block(block: dict[str, Any]) -> None:
    fast = _outcome(lambda: structure(copy.deepcopy(block), TimeInfo))
    assert fast == _outcome(lambda: converter.structure(copy.deepcopy(block), TimeInfo))


def test_the_comparison_sees_a_changed_extra_or_leaf_type() -> None:
    # The property above could not pass by accident: deep() tells these apart.
    dialog = structure(copy.deepcopy(CURRENT["result"]), Dialog)
    assert deep(dialog) != deep(attrs.evolve(dialog, extra={"a": 1}))
    wrong: dict[str, Any] = {"owner": 27.0, "extranet": 0}  # equal, not the same type
    for name, value in wrong.items():
        assert deep(dialog) != deep(attrs.evolve(dialog, **{name: value}))
    assert dialog.restrictions is not None
    nested = attrs.evolve(dialog.restrictions, extra={"path": ""})
    assert deep(dialog) != deep(attrs.evolve(dialog, restrictions=nested))


# -- the complete variant and the objects built inline ------------------------------------------


def _generated_calls(run: Any) -> list[str]:
    """The generated fast functions that ``run()`` calls, by their file names' classes
    (not their comprehensions; ``run`` is called once before, so none is generated then)."""
    calls: list[str] = []
    prefix = "<bitrix_openlines fast structure bitrix_openlines.types.dialog."

    def profile(frame: Any, event: str, _: Any) -> None:
        name = frame.f_code.co_filename
        if event == "call" and name.startswith(prefix) and frame.f_code.co_name == "fast":
            calls.append(name[len(prefix) : -1])

    run()
    sys.setprofile(profile)
    try:
        run()
    finally:
        sys.setprofile(None)
    return calls


def _same_both_ways(body: dict[str, Any]) -> Dialog:
    dialog = structure(copy.deepcopy(body), Dialog)
    assert deep(dialog) == deep(converter.structure(copy.deepcopy(body), Dialog))
    return dialog


@pytest.mark.parametrize("more", [{}, {"disappearing_time": 86400}])
def test_a_whole_chat_object_is_built_by_one_call(
    more: dict[str, Any], detailed: _Detailed
) -> None:
    # 38 fields (no disappearing_time, as the documented object) or all 39: the complete
    # function alone builds the dialog and every object in it, with no other call.
    body = {**copy.deepcopy(CURRENT["result"]), **more}
    calls = _generated_calls(lambda: structure(copy.deepcopy(body), Dialog))
    assert calls == ["Dialog"]
    dialog = _same_both_ways(body)
    assert dialog.disappearing_time == more.get("disappearing_time")
    assert dialog.extra == {}
    assert detailed.calls == []


def test_a_2024_chat_object_goes_straight_to_the_few_keys_function(
    docs_examples: Path, detailed: _Detailed
) -> None:
    body = load_example(docs_examples, CHAT_EXAMPLES[2])["result"]
    assert len(body) == 16
    calls = _generated_calls(lambda: structure(copy.deepcopy(body), Dialog))
    assert calls == ["Dialog", "Dialog (few)"]
    _same_both_ways(body)
    assert detailed.calls == []


@pytest.mark.parametrize(
    ("drop", "add", "expected"),
    [
        # A field missing, an unknown key in its place: the complete function's KeyError
        # hands the object to the counted one, which keeps the unknown key.
        ("role", {"ai": 1}, ["Dialog", "Dialog (counted)"]),
        ("id", {"ai": 1}, ["Dialog", "Dialog (counted)"]),  # required: the detailed path
        # disappearing_time is counted by the complete function itself.
        ("disappearing_time", {"ai": 1}, ["Dialog"]),
        # One field fewer than the complete function takes.
        ("role", {}, ["Dialog", "Dialog (counted)"]),
    ],
)
def test_a_chat_object_missing_a_field_takes_the_counted_function(
    drop: str, add: dict[str, Any], expected: list[str], detailed: _Detailed
) -> None:
    body = {**copy.deepcopy(CURRENT["result"]), "disappearing_time": 0}
    del body[drop]
    body.update(add)
    calls = _generated_calls(lambda: _outcome(lambda: structure(copy.deepcopy(body), Dialog)))
    assert calls == expected
    detailed.calls.clear()
    fast = _outcome(lambda: structure(copy.deepcopy(body), Dialog))
    assert fast == _outcome(lambda: converter.structure(copy.deepcopy(body), Dialog))
    if drop == "id":
        assert fast[0] == "error"
        assert detailed.calls == [Dialog]
    else:
        assert fast[0] == "ok"
        assert structure(copy.deepcopy(body), Dialog).extra == add
        assert detailed.calls == []


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        # As many keys as fields, one of them unknown: the whole dialog is counted.
        (
            "restrictions",
            {**dict.fromkeys(list(CURRENT["result"]["restrictions"])[1:], True), "path": "/"},
            ["Dialog", "Dialog (counted)"],
        ),
        ("entity_link", {"type": "LINES", "url": "", "ai": "x"}, ["Dialog", "Dialog (counted)"]),
        # Fewer keys: that object alone takes its class's counted (or few) function.
        (
            "restrictions",
            {"send": True, "call": False, "mute": True, "leave": False, "rename": 1},
            ["Dialog", "Restrictions (counted)"],
        ),
        (
            "permissions",
            {"can_post": "member"},
            ["Dialog", "Permissions (counted)", "Permissions (few)"],
        ),
        ("readed_list", [{"user_id": "5"}], ["Dialog", "ReadEntry (counted)", "ReadEntry (few)"]),
        (
            "last_message_views",
            {"message_id": 1, "first_viewers": [{"user_id": 3, "user_name": None}]},
            ["Dialog", "LastMessageViews (counted)"],  # its viewer built inline there
        ),
        # More keys: built inline, with an extra of its own.
        (
            "readed_list",
            [{"user_id": 5, "user_name": "G", "message_id": 1, "date": "", "seen": True}],
            ["Dialog"],
        ),
        ("readed_list", [], ["Dialog"]),
        (
            "readed_list",
            [{"user_id": 5, "user_name": "G", "message_id": 1, "date": None}] * 2,
            ["Dialog", "ReadEntry", "ReadEntry"],
        ),
    ],
)
def test_nested_objects_of_every_size(
    field: str, value: Any, expected: list[str], detailed: _Detailed
) -> None:
    body = {**copy.deepcopy(CURRENT["result"]), field: value}
    calls = _generated_calls(lambda: structure(copy.deepcopy(body), Dialog))
    assert calls == expected
    _same_both_ways(body)
    assert detailed.calls == []


@pytest.mark.parametrize(
    "patch",
    [
        # A bad value in each object built inline, with all its keys (the complete mode).
        {"restrictions": {**CURRENT["result"]["restrictions"], "call": 1.0}},
        {"restrictions": {**CURRENT["result"]["restrictions"], "call": "maybe"}},
        {"permissions": {**CURRENT["result"]["permissions"], "manage_ui": True}},
        {"entity_link": {"type": [], "url": "", "id": "x"}},
        {"readed_list": [{"user_id": True, "user_name": "G", "message_id": 1, "date": None}]},
        {"readed_list": [{"user_id": 5, "user_name": "G", "message_id": 1, "date": "soon"}]},
        {"readed_list": [5]},
        {"readed_list": [[]]},
        {"last_message_views": {"message_id": 1, "first_viewers": [7], "count_of_viewers": 0}},
        {
            "last_message_views": {
                "message_id": 1,
                "first_viewers": [{"user_id": 1, "user_name": "A", "date": 5}],
                "count_of_viewers": 0,
            }
        },
        {"last_message_views": {"message_id": 1, "first_viewers": [], "count_of_viewers": None}},
        {"disappearing_time": "soon"},
        {"id": 2.5, "disappearing_time": 0},
    ],
)
def test_a_bad_value_inside_an_inline_object_takes_the_detailed_path(
    patch: dict[str, Any], detailed: _Detailed
) -> None:
    body = {**copy.deepcopy(CURRENT["result"]), **patch}
    fast = _outcome(lambda: structure(copy.deepcopy(body), Dialog))
    assert fast[0] == "error"
    assert fast == _outcome(lambda: converter.structure(copy.deepcopy(body), Dialog))
    assert detailed.calls == [Dialog]


@pytest.mark.parametrize(("dialog_id", "expected"), [("", "chat1777"), ("chat5", "chat5")])
def test_dialog_id_is_derived_only_when_the_portal_sent_none(
    dialog_id: str, expected: str
) -> None:
    # The fast function calls Dialog's post-init only when dialog_id is empty: it does
    # nothing else, as the class itself shows.
    assert Dialog(id=1777, dialog_id=dialog_id).dialog_id == expected
    for size in (38, 16):  # the complete function and the few-keys one
        body = {**copy.deepcopy(CURRENT["result"]), "dialog_id": dialog_id}
        if size == 16:
            body = {key: body[key] for key in [*list(body)[:15], "dialog_id"]}
        assert _same_both_ways(body).dialog_id == expected


@attrs.frozen(slots=True)
class _Level:
    depth: int
    inner: _Level | None = None
    extra: Mapping[str, Any] = attrs.field(factory=dict, eq=False)


@attrs.frozen(slots=True)
class _Top:
    first: _Level
    items: tuple[_Level, ...] = ()
    extra: Mapping[str, Any] = attrs.field(factory=dict, eq=False)


def _levels(depth: int, last: Any = None) -> Any:
    return {"depth": depth, "inner": last if depth == 5 else _levels(depth + 1, last)}


@pytest.mark.parametrize("last", [None, {"depth": "6", "x": 1}, {"depth": []}, [], "x"])
def test_objects_deeper_than_the_inline_depth(last: Any) -> None:
    # _Top builds _Level objects inline down to _INLINE_DEPTH classes; deeper ones (and a
    # _Level inside a _Level) through a call. Either way the same object or error.
    body = {"first": _levels(1, last), "items": [_levels(1, last)], "other": 2}
    fast = _outcome(lambda: structure(copy.deepcopy(body), _Top))
    assert fast == _outcome(lambda: converter.structure(copy.deepcopy(body), _Top))


@attrs.frozen(slots=True)
class _Lazy:
    """A fresh class that keeps its extras: its variants are made here, not by others."""

    a: int
    b: int | None = None
    c: str | None = None
    d: str | None = None
    extra: Mapping[str, Any] = attrs.field(default=NO_EXTRA, eq=False, repr=False)


def test_fallback_variants_are_made_on_their_first_call_only() -> None:
    # Compiling every variant up front doubled the first structuring's cost; an object
    # with every field never needs the others.
    made = {mode for (cls, mode) in _convert._VARIANTS if cls is _Lazy}
    assert made == set()
    full = {"a": 1, "b": 2, "c": "x", "d": "y"}
    assert structure(full, _Lazy) == _Lazy(1, 2, "x", "y")
    assert {mode for (cls, mode) in _convert._VARIANTS if cls is _Lazy} == {"complete"}
    # One field missing, an unknown key in its place: the counted variant, made now.
    odd = {"a": 1, "b": 2, "c": "x", "z": 5}
    first = structure(odd, _Lazy)
    assert first == _Lazy(1, 2, "x")
    assert dict(first.extra) == {"z": 5}
    assert {mode for (cls, mode) in _convert._VARIANTS if cls is _Lazy} == {
        "complete",
        "counted",
    }
    # Later calls reach the same variant (now bound by name) and give the same objects.
    again = structure(odd, _Lazy)
    assert again == first
    assert dict(again.extra) == {"z": 5}
    # Few keys: the few-keys variant, made on its first call too.
    assert structure({"a": 3}, _Lazy) == _Lazy(3)
    assert {mode for (cls, mode) in _convert._VARIANTS if cls is _Lazy} == {
        "complete",
        "counted",
        "few",
    }
    # A bad value still gets the detailed path's error, through the new variant.
    with pytest.raises(DecodeError, match=r"\$\.b"):
        structure_result({"a": 1, "b": "not a number", "z": 1}, _Lazy, "x.get")


def test_each_class_has_one_builder_however_many_functions_build_it() -> None:
    # The variants and the inlined copies of a class share its builder: one subclass each
    # in __subclasses__(), not one per generated function.
    for cls in CHAT_CLASSES:
        assert _convert._builder(cls) is _convert._builder(cls)
        subclasses: list[type] = cls.__subclasses__()
        builders = [c for c in subclasses if c.__name__.startswith("_build_")]
        assert builders == [_convert._builder(cls)]
