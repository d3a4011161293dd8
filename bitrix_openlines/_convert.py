"""The one cattrs converter: wire values to typed objects and back.

Bitrix24 is loose with types: numbers arrive as ints, floats or digit strings, flags as
``true``/``false`` or ``"Y"``/``"N"``, empty objects as ``[]`` (a PHP empty array), dates as
ATOM strings with an offset. The hooks below accept each of those and reject anything
else with a message, so that a body that does not fit becomes one clear ``DecodeError``
naming the path and the innermost cause (``$.mute_list[0]: expected an integer, got a
boolean``). The messages name the kind of value the portal sent, never the value itself:
a message must not carry network text (it could echo a secret).

Every attrs class with an ``extra`` field outside equality (``Dialog`` and its nested
objects) keeps the keys it does not know there, so that no value of an answer is dropped.
Each class's structuring function is generated once, with its fields' hooks resolved then.
``structure`` first runs a faster function generated per class (see "the fast path"
below); only a value that does not fit takes the detailed path, which words the error.
"""

from __future__ import annotations

import functools
import inspect
import linecache
import re
import types
import typing
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

import attrs
import cattrs
from cattrs.errors import (
    AttributeValidationNote,
    IterableValidationError,
    IterableValidationNote,
)
from cattrs.gen import make_dict_structure_fn, override

from bitrix_openlines.errors import DecodeError
from bitrix_openlines.types.dialog import NO_EXTRA, Dialog, Extra, Permissions, Restrictions

__all__ = ["converter", "describe_error", "structure", "structure_result"]

T = TypeVar("T")

converter = cattrs.Converter(detailed_validation=True, forbid_extra_keys=False)

# ASCII digits only: str.isdigit() also accepts "²", which int() refuses.
_INT = re.compile(r"-?[0-9]+")

_KINDS: dict[type, str] = {
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    str: "a string",
    list: "a list",
    tuple: "a list",
    dict: "an object",
    type(None): "null",
}


def _is_object(value: Any) -> bool:
    """Whether ``value`` is a JSON object: a dict (checked first, as it is cheap) or a Mapping."""
    return type(value) is dict or isinstance(value, Mapping)


def _kind(value: Any) -> str:
    """Name the kind of a wire value ("a boolean", "a string"...), never the value."""
    kind = _KINDS.get(type(value))
    if kind is not None:
        if kind == "a string" and not value.strip():
            return "an empty string"
        if kind == "a number" and not value.is_integer():
            return "a number with a fraction"
        return kind
    return "an object" if _is_object(value) else type(value).__name__


# A key shown in a path: keys from the network are shown only when they are plain ids (a
# user id, a PHP list index), so that a message never carries other network text.
_PLAIN_KEY = re.compile(r"-?[0-9]{1,19}")


def _index_label(index: Any) -> str:
    if isinstance(index, int) and not isinstance(index, bool):
        return str(index)
    if isinstance(index, str) and _PLAIN_KEY.fullmatch(index):
        return repr(index)
    return "<key>"


def _int(value: Any, _: Any) -> int:
    if isinstance(value, bool):
        raise TypeError("expected an integer, got a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and _INT.fullmatch(value.strip()):
        try:
            return int(value)
        except ValueError:  # more digits than int() converts
            raise TypeError("expected an integer, got a string of too many digits") from None
    if isinstance(value, str) and value.strip():
        raise TypeError("expected an integer, got a string that is not a whole number")
    raise TypeError(f"expected an integer, got {_kind(value)}")


def _float(value: Any, _: Any) -> float:
    if isinstance(value, bool):
        raise TypeError("expected a number, got a boolean")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    raise TypeError(f"expected a number, got {_kind(value)}")


def _str(value: Any, _: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise TypeError(f"expected a string, got {_kind(value)}")


_TRUE = frozenset({"Y", "TRUE", "1"})
_FALSE = frozenset({"N", "FALSE", "0", ""})


def _bool(value: Any, _: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        upper = value.strip().upper()
        if upper in _TRUE:
            return True
        if upper in _FALSE:
            return False
    raise TypeError(f"expected a flag (true/false or Y/N), got {_kind(value)}")


def _datetime(value: Any, _: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if not isinstance(value, str):
        raise TypeError(f"expected an ISO-8601 date, got {_kind(value)}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:  # its message quotes the text
        raise TypeError("expected an ISO-8601 date, got a string that is not one") from None
    # An ATOM date always has an offset; a naive one can only be read as UTC.
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _optional_datetime(value: Any, _: Any) -> datetime | None:
    # The portal writes "no date" as null or as an empty string.
    if value is None or value == "" or value is False:
        return None
    return _datetime(value, None)


converter.register_structure_hook(int, _int)
converter.register_structure_hook(float, _float)
converter.register_structure_hook(str, _str)
converter.register_structure_hook(bool, _bool)
converter.register_structure_hook(datetime, _datetime)
converter.register_structure_hook(datetime | None, _optional_datetime)
converter.register_structure_hook(typing.Optional[datetime], _optional_datetime)  # noqa: UP045


def _optional_of(tp: Any) -> Any:
    """Return ``X`` when ``tp`` is ``X | None`` (one other member), else ``None``."""
    if typing.get_origin(tp) not in (typing.Union, types.UnionType):
        return None
    args = typing.get_args(tp)
    others = [a for a in args if a is not type(None)]
    return others[0] if len(args) == 2 and len(others) == 1 else None


def _make_optional_hook(tp: Any) -> Callable[[Any, Any], Any]:
    # cattrs' generic Optional hook looks the inner hook up on every value; a Dialog has
    # dozens of optional fields, so look it up once (measured: benchmarks per_call.py).
    inner = _optional_of(tp)
    inner_hook = converter.get_structure_hook(inner)

    def hook(value: Any, _: Any) -> Any:
        return None if value is None else inner_hook(value, inner)

    return hook


def _is_plain_optional(tp: Any) -> bool:
    # Optional attrs classes and dates have their own hooks ([] and "" mean None there).
    inner = _optional_of(tp)
    return inner is not None and inner is not datetime and not attrs.has(inner)


converter.register_structure_hook_factory(_is_plain_optional, _make_optional_hook)


def _optional_attrs_class(tp: Any) -> type | None:
    """Return ``C`` when ``tp`` is ``C | None`` for an attrs class ``C``."""
    origin = typing.get_origin(tp)
    if origin not in (typing.Union, types.UnionType):
        return None
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if len(args) == 1 and len(typing.get_args(tp)) == 2 and attrs.has(args[0]):
        return typing.cast(type, args[0])
    return None


def _make_optional_attrs_hook(tp: Any) -> Callable[[Any, Any], Any]:
    inner = _optional_attrs_class(tp)
    assert inner is not None
    inner_hook = converter.get_structure_hook(inner)

    def hook(value: Any, _: Any) -> Any:
        # PHP serialises an empty associative array as [], so "nothing" may be [] here.
        if value is None or value == [] or value == "":
            return None
        if not _is_object(value):
            # cattrs would test `"field" in value`: a string like "all" would pass as an
            # object whose fields are all missing.
            raise TypeError(f"expected an object ({inner.__name__}), got {_kind(value)}")
        return inner_hook(value, inner)

    return hook


converter.register_structure_hook_factory(
    lambda tp: _optional_attrs_class(tp) is not None, _make_optional_attrs_hook
)


def _is_variadic_tuple(tp: Any) -> bool:
    args = typing.get_args(tp)
    return typing.get_origin(tp) is tuple and len(args) == 2 and args[1] is Ellipsis


def _items_error(
    items: typing.Iterable[tuple[int | str, Any]],
    item_hook: Callable[[Any, Any], Any],
    item_type: Any,
    tp: Any,
) -> IterableValidationError:
    """Structure ``items`` again, one by one, and group each failure with its index or key.

    Only called once the fast path has failed, so a valid list costs nothing more.
    """
    errors: list[Exception] = []
    for index, item in items:
        try:
            item_hook(item, item_type)
        except Exception as exc:
            note = f"item {_index_label(index)}"
            exc.add_note(IterableValidationNote(note, index, item_type))
            errors.append(exc)
    return IterableValidationError(f"while structuring {tp!r}", errors, tp)


def _make_tuple_hook(tp: Any) -> Callable[[Any, Any], Any]:
    item_type = typing.get_args(tp)[0]
    item_hook = converter.get_structure_hook(item_type)

    def hook(value: Any, _: Any) -> tuple[Any, ...]:
        if value is None:
            return ()
        keyed = type(value) is not list and _is_object(value)
        # A PHP array with non-sequential keys arrives as an object: take its values.
        items = value.values() if keyed else value
        if not keyed and not isinstance(value, list | tuple):
            raise TypeError(f"expected a list, got {_kind(value)}")
        try:
            return tuple(item_hook(item, item_type) for item in items)
        except Exception:
            pairs = value.items() if keyed else enumerate(value)
            raise _items_error(pairs, item_hook, item_type, tp) from None

    return hook


converter.register_structure_hook_factory(_is_variadic_tuple, _make_tuple_hook)


_int_tuple_hook = converter.get_structure_hook(tuple[int, ...])


def _mute_list(value: Any, _: Any) -> tuple[int, ...]:
    """``mute_list``: a list of user ids, or a map of user id to flag (newer portals).

    ``{"503": true, "27": false}`` gives ``(503,)``: the muted users are the keys whose
    flag is true.
    """
    if type(value) is list or not _is_object(value):
        return typing.cast(tuple[int, ...], _int_tuple_hook(value, tuple[int, ...]))
    muted: list[int] = []
    errors: list[Exception] = []
    for key, flag in value.items():
        try:
            try:
                user_id = _int(key, None)
            except TypeError:
                raise TypeError("expected user ids as keys, got a key that is not one") from None
            if _bool(flag, None):
                muted.append(user_id)
        except TypeError as exc:
            exc.add_note(IterableValidationNote(f"key {_index_label(key)}", key, bool))
            errors.append(exc)
    if errors:
        raise IterableValidationError("while structuring mute_list", errors, tuple[int, ...])
    return tuple(muted)


#: Per-class overrides of the generated structuring functions.
_OVERRIDES: dict[type, dict[str, Any]] = {
    Dialog: {
        # Portals of 2024 answer "dialog_id": null; Dialog derives "chat<ID>" then.
        "dialog_id": override(struct_hook=lambda v, _: "" if v is None else _str(v, None)),
        "mute_list": override(struct_hook=_mute_list),
    },
}

#: For the fast path (below): the type whose fast check each override agrees with. A value
#: of exactly ``str`` is what the ``dialog_id`` override returns for it, and a list of
#: exact ints gives ``mute_list`` what ``tuple[int, ...]`` gives it.
_OVERRIDES_AS: dict[type, dict[str, Any]] = {
    Dialog: {"dialog_id": str, "mute_list": tuple[int, ...]},
}


def _name_from_title(dialog: Dialog) -> None:
    # Old portals (im.dialog.get of 2017) call the chat's name "title".
    title = dialog.extra.get("title")
    if dialog.name is None and isinstance(title, str):
        object.__setattr__(dialog, "name", title)


#: What to do once a class's ``extra`` is known (only when it has unknown keys).
_AFTER_EXTRA: dict[type, Callable[[Any], None]] = {Dialog: _name_from_title}

#: Nested objects whose few values repeat from chat to chat (the nine flags of
#: ``restrictions``, the six roles of ``permissions``): an object without unknown keys is
#: shared with every equal one the fast path made before, as Python shares small ints.
#: They are frozen and their empty ``extra`` is the read-only ``NO_EXTRA``, so sharing
#: is invisible but for ``is``; it saves an object (memory, garbage-collector work) per
#: chat. At most ``_SHARED_MAX`` of each are remembered: values from the network are not
#: trusted to repeat.
_SHARED: dict[type, dict[tuple[Any, ...], Any]] = {Restrictions: {}, Permissions: {}}
_SHARED_MAX = 256


def _keeps_extra(tp: Any) -> bool:
    """Whether ``tp`` keeps its unknown keys: an attrs class with an ``extra`` field
    outside equality (``attrs.field(factory=dict, eq=False)``, as ``Dialog.extra``)."""
    if not (isinstance(tp, type) and attrs.has(tp)):
        return False
    field = attrs.fields_dict(tp).get("extra")
    return field is not None and not field.eq


def _make_extra_keeping_hook(cls: type[Any]) -> Callable[[Any, Any], Any]:
    """Structure ``cls`` from an object, keeping the keys it does not know in ``extra``."""
    known = frozenset(f.name for f in attrs.fields(cls) if f.name != "extra")
    base = make_dict_structure_fn(
        cls, converter, extra=override(omit=True), **_OVERRIDES.get(cls, {})
    )
    what = "a chat object" if cls is Dialog else f"an object ({cls.__name__})"

    after = _AFTER_EXTRA.get(cls)

    def hook(value: Any, _: Any) -> Any:
        if not _is_object(value):
            raise TypeError(f"expected {what}, got {_kind(value)}")
        instance = base(value, cls)
        # Usually every key is known: one C-level pass over the keys says so.
        if not known.issuperset(value):
            extra = Extra({key: item for key, item in value.items() if key not in known})
            object.__setattr__(instance, "extra", extra)
            if after is not None:
                after(instance)
        return instance

    return hook


converter.register_structure_hook_factory(_keeps_extra, _make_extra_keeping_hook)


# -- the fast path ------------------------------------------------------------------------
#
# cattrs' generated functions with detailed validation call a hook per field and collect
# every failure with its path: what a bad answer needs, and twice the time of
# ``json.loads`` for a good one (without detailed validation it is barely faster: the time
# is in the calls). So each attrs class also gets a fast function, generated once as
# Python source (as cattrs does), with the checks of the common case inlined: a value
# whose type is exactly the field's (``type(v) is int`` for an ``int``, a ``str`` or
# ``None`` for a ``str | None``...) is kept as it is, which is what the hook would return;
# any other value goes to the field's hook, the one the detailed path calls. Any exception
# in a fast function (a missing field, a value a hook refuses, a date that
# ``fromisoformat`` cannot read) sends the whole value to the detailed path, which
# structures it again and words the error. A good answer gives the same object either way
# and a bad one the same error (``tests/unit/test_fast_structure.py`` checks both on random
# answers).
#
# A nested attrs object is built inline, in its parent's function, with locals of its own
# (no call per object), and an object that has every field is read with ``o[key]``, a
# cheaper dict lookup than a call of ``o.get`` (see ``_generate_fast``): together a
# fifth less time for the documented chat object.
#
# The generator mirrors the hooks registered above: exact types for the scalar hooks,
# dates, the optional and tuple factories, the overrides, and the classes that keep their
# extras. A hook registered above for an attrs class must be mirrored here too.

_MISSING: Any = object()
#: The fast function of each class, or ``None`` when the generator does not take it (a
#: field outside ``__init__`` or keyword-only, a factory that takes ``self``...).
_FAST: dict[Any, Callable[[Any], Any] | None] = {}
#: Types whose hook returns a value of exactly that type unchanged.
_EXACT: tuple[type, ...] = (int, str, bool, float)


def _exact_items(value: list[Any], item_type: type) -> tuple[Any, ...] | None:
    """``tuple(value)`` when every item is exactly of ``item_type``, else ``None``."""
    for item in value:
        if type(item) is not item_type:
            return None
    return tuple(value)


def _nested_fast(tp: Any) -> Callable[[Any], Any] | None:
    """The fast function of ``tp`` when it is an attrs class the generator takes."""
    if isinstance(tp, type) and attrs.has(tp):
        return _fast_function(tp)
    return None


class _Source:
    """The globals of one generated function, and fresh names for its locals.

    ``bind(prefix, value)`` binds a value to a new global name; ``fresh()`` gives a new
    prefix for the locals of an object built inline (see :func:`_object_lines`).
    """

    def __init__(self) -> None:
        self.names: dict[str, Any] = {
            "_M": _MISSING,
            "_new": object.__new__,
            "_setattr": object.__setattr__,
            "_exact_items": _exact_items,
            "_fromisoformat": datetime.fromisoformat,
            "_UTC": UTC,
            "_NO_EXTRA": NO_EXTRA,
            "_Extra": Extra,
        }
        self._objects = 0

    def bind(self, prefix: str, value: Any) -> str:
        name = f"_{prefix}{len(self.names)}"
        self.names[name] = value
        return name

    def fresh(self) -> str:
        self._objects += 1
        return f"n{self._objects}_"


#: How many attrs classes deep a fast function builds nested objects inline: a Dialog,
#: its ``last_message_views`` and their ``first_viewers``. Deeper ones (and a class
#: inside itself) are built by a call to their own fast function.
_INLINE_DEPTH = 3


def _indent(lines: list[str], by: str = "    ") -> list[str]:
    return [by + line for line in lines]


def _conversion(
    v: str,
    tp: Any,
    hook: str,
    tp_name: str,
    src: _Source,
    missing: list[str] | None = None,
    inlining: tuple[type, ...] = (),
    mode: str = "counted",
) -> list[str]:
    """The lines that turn the value in the variable ``v`` into ``tp``.

    ``hook`` and ``tp_name`` name the field's hook and type (the hook is called as
    ``hook(value, tp)``); ``src`` binds values to names of the generated function.
    ``missing``: the lines for an absent field, when ``v`` may be ``_M`` (the field's key
    is not in the object). ``_M`` is of no type the lines check for, so it only ever
    reaches the branch that calls the hook: the check for it sits there, and a present
    value of the field's type pays nothing for it. ``inlining``: the classes whose
    objects are being built around these lines, outermost first.
    """
    call = f"{hook}({v}, {tp_name})"

    def slow(indent: str = "    ") -> list[str]:
        if missing is None:
            return [f"{indent}{v} = {call}"]
        return [
            f"{indent}if {v} is _M:",
            *(f"{indent}    {line}" for line in missing),
            f"{indent}else:",
            f"{indent}    {v} = {call}",
        ]

    def inline(cls: Any) -> list[str] | None:
        # The lines that build the object of ``cls`` from the dict in ``v``, into ``v``:
        # no Python call per nested object (a call and the nested function's own checks
        # of its argument cost about as much as a handful of fields).
        if cls in inlining or len(inlining) >= _INLINE_DEPTH:
            return None
        # An object missing a field takes the slower modes inside them too (see
        # _generate_fast), as the whole object then does.
        inner_mode = "complete" if mode == "complete" else "counted"
        return _object_lines(
            cls, v, v, src, prefix=src.fresh(), mode=inner_mode, inlining=inlining
        )

    inner = _optional_of(tp)
    if tp is Any:  # cattrs passes Any through as it is
        return [] if missing is None else [f"if {v} is _M:", *(f"    {x}" for x in missing)]
    if tp in _EXACT:
        return [f"if type({v}) is not {tp.__name__}:", *slow()]
    if inner in _EXACT:
        return [f"if type({v}) is not {inner.__name__} and {v} is not None:", *slow()]
    if inner is datetime:  # _optional_datetime, inlined for text
        return [
            f"if type({v}) is str:",
            f"    {v} = _fromisoformat({v}) if {v} else None",  # "" is no date
            f"    if {v} is not None and not {v}.tzinfo:",
            f"        {v} = {v}.replace(tzinfo=_UTC)",  # a naive date is read as UTC
            f"elif {v} is not None:",
            *slow(),
        ]
    nested_cls = tp if inner is None else inner
    nested = _nested_fast(nested_cls)
    if nested is not None:
        built = inline(nested_cls)
        return [
            f"if type({v}) is dict:",
            *_indent(built if built is not None else [f"{v} = {src.bind('f', nested)}({v})"]),
            "else:" if inner is None else f"elif {v} is not None:",
            *slow(),
        ]
    if _is_variadic_tuple(tp):
        item = typing.get_args(tp)[0]
        if item in _EXACT:
            name = item.__name__
            # Lists of none or one item are the usual ones: no call for them.
            return [
                f"if type({v}) is not list:",
                *slow(),
                f"elif not {v}:",
                f"    {v} = ()",
                f"elif len({v}) == 1 and type({v}[0]) is {name}:",
                f"    {v} = ({v}[0],)",
                "else:",
                f"    w = _exact_items({v}, {name})",
                f"    {v} = {call} if w is None else w",
            ]
        nested = _nested_fast(item)
        if nested is not None:
            f = src.bind("f", nested)
            # One item is the usual list: its object is built inline (an item that is not
            # a dict fails here, as the item's fast function would). tuple(map(...)) of
            # longer lists sizes its tuple by guessing.
            built = inline(item)
            one = (
                [f"{v} = ({f}({v}[0]),)"]
                if built is None
                else [
                    f"{v} = {v}[0]",
                    f"if type({v}) is not dict:",
                    "    raise TypeError",
                    *built,
                    f"{v} = ({v},)",
                ]
            )
            return [
                f"if type({v}) is not list:",
                *slow(),
                f"elif not {v}:",
                f"    {v} = ()",
                f"elif len({v}) == 1:",
                *_indent(one),
                "else:",
                f"    {v} = tuple(map({f}, {v}))",
            ]
    return [line[4:] for line in slow()] if missing is None else slow("")


def _none_gives_none(tp: Any) -> bool:
    """Whether ``None`` structures to ``None`` (so an absent value reads as ``None``)."""
    inner = _optional_of(tp)
    return tp is Any or inner in _EXACT or inner is datetime or _nested_fast(inner) is not None


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    """``typing.get_type_hints(cls)``, read once per class (the string annotations are
    compiled each time: most of the first structuring's cost otherwise)."""
    return typing.get_type_hints(cls)


@functools.cache
def _slot_setters(cls: type) -> list[Callable[[Any, Any], None]] | None:
    """The slots' setters of ``cls``, in field order, when ``__init__`` only sets them.

    attrs' ``__init__`` of a slotted class with no validator, converter or
    ``__attrs_pre_init__`` sets each field's slot (``object.__setattr__``), then calls
    ``__attrs_post_init__``; the fast functions do the same, through a builder (below)
    or through each slot's descriptor. ``None`` for any other class: it is built through
    ``__init__``.
    """
    fields = attrs.fields(cls)
    if hasattr(cls, "__attrs_pre_init__") or any(
        f.validator is not None or f.converter is not None for f in fields
    ):
        return None
    init = cls.__dict__.get("__init__")
    if init is None or not init.__code__.co_filename.startswith("<attrs generated"):
        return None
    slots = {
        name
        for klass in cls.__mro__
        for name in klass.__dict__.get("__slots__", ())
        if name not in ("__weakref__", "__dict__")
    }
    if slots != {f.name for f in fields}:  # a hidden slot (cache_hash...) or a __dict__
        return None
    descriptors = [inspect.getattr_static(cls, f.name) for f in fields]
    if not all(type(d) is types.MemberDescriptorType for d in descriptors):
        return None
    return [d.__set__ for d in descriptors]


@functools.cache  # one builder per class, however many functions build it
def _builder(cls: type) -> type | None:
    """A subclass of ``cls`` to build its instances in, or ``None`` when there is none.

    A frozen class refuses ``instance.field = value``; its subclass with no slots of its
    own and ``object``'s ``__setattr__`` and ``__delattr__`` takes it, and CPython runs
    such a store as one specialised instruction (``STORE_ATTR_SLOT``), where a
    descriptor's ``__set__`` is a call (about five times slower per field on 3.11 and
    3.13; ``benchmarks/decode.py`` measures the whole). Both classes have the same
    layout, so the finished instance becomes a ``cls`` by ``instance.__class__ = cls``:
    from then on it is exactly what ``cls(...)`` gives. Only for a class whose fields
    are its slots (see :func:`_slot_setters`) and whose subclasses are plain (no
    ``__init_subclass__``). The builder is the one trace: ``cls.__subclasses__()``
    lists it.
    """
    if _slot_setters(cls) is None:
        return None
    if any("__init_subclass__" in klass.__dict__ for klass in cls.__mro__[:-1]):
        return None  # subclassing would run it
    if not all(f.name.isidentifier() and not f.name.startswith("__") for f in attrs.fields(cls)):
        return None  # a name that a store in the generated source would not reach as is
    namespace = {
        "__slots__": (),
        "__setattr__": object.__setattr__,
        "__delattr__": object.__delattr__,
        "__init__": object.__init__,  # the fast function calls it with no arguments
        "__module__": __name__,
        "__qualname__": f"_build_{cls.__qualname__}",
    }
    builder = type(f"_build_{cls.__name__}", (cls,), namespace)
    try:  # what the fast function does last, on an empty instance
        probe: Any = object.__new__(builder)
        probe.__class__ = cls
    except TypeError:  # "object layout differs"
        return None
    return builder


#: Classes whose ``__attrs_post_init__`` does nothing when the named field is true (so
#: the fast function calls it only when that field is false): ``Dialog``'s derives
#: ``dialog_id`` from ``id`` when the portal sent none.
_POST_INIT_UNLESS: dict[type, str] = {Dialog: "dialog_id"}


#: Fields that many objects lack (the 38-field chat object of the documentation and of
#: many portals has no ``disappearing_time``): the complete variant (see
#: :func:`_generate_fast`) reads them as the counted one does, so that such an object
#: still takes it.
_OFTEN_ABSENT: dict[type, frozenset[str]] = {Dialog: frozenset({"disappearing_time"})}


def _object_lines(
    cls: type,
    o: str,
    out: str,
    src: _Source,
    *,
    prefix: str = "",
    mode: str = "complete",
    inlining: tuple[type, ...] = (),
) -> list[str] | None:
    """The lines that build an instance of the attrs class ``cls`` from the dict in the
    variable ``o`` and put it in ``out``, or ``None`` when the generator does not take
    ``cls``.

    Any exception raised by the lines sends the whole value to the detailed path.
    ``prefix`` starts the names of their locals (a nested object built inline has its
    own, and the lines start by checking its size); ``mode``: see :func:`_generate_fast`;
    ``inlining``: see :func:`_conversion`.
    """
    fields = attrs.fields(cls)
    # A metaclass or a __new__ may change what calling the class does.
    plain = type(cls) is type and typing.cast(Any, cls).__new__ is object.__new__
    if not plain or any(not f.init or f.kw_only for f in fields):
        return None
    hints = _hints(cls)
    keeps_extra = _keeps_extra(cls)
    if not keeps_extra:
        mode = "few"  # unknown keys do not matter: no counting, no variants
    overrides = _OVERRIDES.get(cls, {})
    overrides_as = _OVERRIDES_AS.get(cls, {})
    bind = src.bind
    inlining = (*inlining, cls)
    m, get, instance = f"{prefix}m", f"{prefix}get", f"{prefix}instance"
    known = bind("known", frozenset(f.name for f in fields if f.name != "extra"))
    size = len(fields) - 1  # the fields but extra
    # In the complete mode, the fields an object often lacks are read as in the counted.
    absent = _OFTEN_ABSENT.get(cls, frozenset()) if mode == "complete" else frozenset()
    counting = mode == "counted" or bool(absent)
    lines: list[str] = []
    if counting:
        lines += [f"{m} = 0"]
    if mode != "complete":
        lines.append(f"{get} = {o}.get")
    else:
        get = f"{o}.get"  # for a field or two, no bound method to make
    args: list[str] = []
    for index, field in enumerate(fields):
        if keeps_extra and field.name == "extra":
            # The shared empty one; replaced below when the object has keys the class
            # does not know.
            args.append("_NO_EXTRA")
            continue
        v = f"{prefix}a{index}"
        args.append(v)
        tp = hints[field.name]
        tp_name = bind("t", tp)
        override_ = overrides.get(field.name)
        if override_ is not None and (
            override_.struct_hook is None or override_.rename or override_.omit
        ):
            return None
        key = repr(field.name)
        default = field.default
        missing: list[str] | None = None
        if default is attrs.NOTHING or (mode == "complete" and field.name not in absent):
            lines.append(f"{v} = {o}[{key}]")
        elif default is None and override_ is None and _none_gives_none(tp) and mode == "few":
            lines.append(f"{v} = {get}({key})")  # absent reads as None, which gives None
        else:
            if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
                if default.takes_self:
                    return None
                missing = [f"{v} = {bind('d', default.factory)}()"]
            else:
                missing = [f"{v} = {'None' if default is None else bind('d', default)}"]
            if counting:
                missing.append(f"{m} += 1")  # see "counted" in _generate_fast
            lines.append(f"{v} = {get}({key}, _M)")
        if override_ is None:
            hook = bind("h", converter.get_structure_hook(tp))
            lines += _conversion(v, tp, hook, tp_name, src, missing, inlining, mode)
        else:
            hook = bind("h", override_.struct_hook)
            as_ = overrides_as.get(field.name, object)  # object: no check, the hook decides
            lines += _conversion(v, as_, hook, tp_name, src, missing, inlining, mode)

    cls_name = bind("c", cls)
    builder = _builder(cls)
    setters = _slot_setters(cls)
    build: list[str] = []
    if builder is not None:
        build.append(f"{instance} = {bind('b', builder)}()")
        build += [f"{instance}.{f.name} = {arg}" for f, arg in zip(fields, args, strict=True)]
        build.append(f"{instance}.__class__ = {cls_name}")
    else:
        build.append(f"{instance} = _new({cls_name})")
    if setters is None:
        init = bind("i", typing.cast(Any, cls).__init__)
        build.append(f"{init}({instance}, {', '.join(args)})")
    else:
        if builder is None:
            build += [
                f"{bind('s', set_)}({instance}, {arg})"
                for set_, arg in zip(setters, args, strict=True)
            ]
        post_init = getattr(cls, "__attrs_post_init__", None)
        if post_init is not None:
            call = f"{bind('p', post_init)}({instance})"
            unless = _POST_INIT_UNLESS.get(cls)
            if unless is None:
                build.append(call)
            else:  # the call does nothing when the field is true
                arg = args[[f.name for f in fields].index(unless)]
                build += [f"if not {arg}:", f"    {call}"]
    if not keeps_extra:
        lines += build
    else:
        unknown = {
            "complete": f"len({o}) != {size} - {m}" if absent else f"len({o}) != {size}",
            "counted": f"len({o}) != {size} - {m}",
            "few": f"not {known}.issuperset({o})",
        }[mode]
        after = _AFTER_EXTRA.get(cls)
        set_extra = [
            f"{prefix}extra = _Extra({{key: item for key, item in {o}.items()"
            f" if key not in {known}}})",
            f"_setattr({instance}, 'extra', {prefix}extra)",
            *([f"{bind('after', after)}({instance})"] if after is not None else []),
        ]
        shared = _SHARED.get(cls)
        if shared is None:
            lines += [*build, f"if {unknown}:", *_indent(set_extra)]
        else:
            # An object without unknown keys is the one made before from the same values.
            values = f"{prefix}values"
            store = bind("shared", shared)
            lines += [
                f"if {unknown}:",
                *_indent(build + set_extra),
                "else:",
                f"    {values} = ({', '.join(a for a in args if a != '_NO_EXTRA')},)",
                f"    {instance} = {store}.get({values})",
                f"    if {instance} is None:",
                *_indent(build, " " * 8),
                f"        if len({store}) < {_SHARED_MAX}:",
                f"            {store}[{values}] = {instance}",
            ]
    if out != instance:
        lines.append(f"{out} = {instance}")
    if prefix and mode != "few":
        # Built inline: an object too small for this mode takes the next variant.
        fewer = _variant(cls, "counted" if mode == "complete" else "few")
        if fewer is None:
            return None
        too_small = _too_small(cls, o, mode)
        lines = [
            f"if {too_small}:",
            f"    {out} = {bind('g', fewer)}({o})",
            "else:",
            *_indent(lines),
        ]
    return lines


def _too_small(cls: type, o: str, mode: str) -> str:
    """The condition on the dict in ``o`` that hands it to the next mode's variant."""
    size = len(attrs.fields(cls)) - 1
    if mode == "complete":
        return f"len({o}) < {size - len(_OFTEN_ABSENT.get(cls, ()))}"
    return f"len({o}) * 2 < {size}"


#: The generated variants of each class that keeps its extras, by mode.
_VARIANTS: dict[tuple[type, str], Callable[[Any], Any] | None] = {}


def _variant(cls: type, mode: str) -> Callable[[Any], Any] | None:
    """The fast function of ``cls`` in ``mode`` (see :func:`_generate_fast`), made once."""
    if (cls, mode) not in _VARIANTS:
        _VARIANTS[cls, mode] = _generate_fast(cls, mode=mode)
    return _VARIANTS[cls, mode]


def _on_first_call(src: _Source, cls: type, mode: str) -> str:
    """The name, in ``src``'s function, of ``cls``'s variant ``mode``, made on first call.

    Most answers never need a class's fallback variants (an object missing a field, a
    2024 object): they are generated and compiled when one first does, not with the
    function that falls back to them (compiling all of them doubled the first
    structuring's cost, to about 30 ms). The first call puts the variant itself under
    the name, so later calls go straight to it.
    """
    name = src.bind("g", None)

    def first_call(o: Any) -> Any:
        function = _variant(cls, mode)
        if function is None:
            raise TypeError  # no such fast function: the detailed path decides
        src.names[name] = function
        return function(o)

    src.names[name] = first_call
    return name


def _generate_fast(cls: type, *, mode: str = "complete") -> Callable[[Any], Any] | None:
    """Generate the fast function of the attrs class ``cls`` (see above), or ``None``.

    A class that keeps its extras has three, by how many of its fields an object has
    (each passes an object that does not fit it on to the next):

    - ``complete`` (the one :func:`_fast_function` gives): every field, read with
      ``o[key]`` (a dict subscript costs less than a call of ``o.get``); the object has
      keys the class does not know exactly when it has more keys than fields. A missing
      field's ``KeyError`` hands the whole object to the next.
    - ``counted``: each field read with ``o.get(key, _M)``, ``m`` counting the fields the
      object lacks: it has unknown keys exactly when it has more than the others.
      Checking each key against the fields' names instead took a sixth of the time of a
      38-field Dialog, while counting costs a little for each missing field, so
    - ``few``: an object with fewer keys than half the fields (the 16 of a 2024 Dialog)
      has its keys checked against the fields' names.

    A class that does not keep its extras has one (``few``'s reads, no key checks).
    """
    src = _Source()
    body = _object_lines(cls, "o", "instance", src, mode=mode)
    if body is None:
        return None
    # Not a dict: the detailed path decides (any exception of a fast function sends the
    # value there; a TypeError is the plainest).
    lines = ["if type(o) is not dict:", "    raise TypeError"]
    if _keeps_extra(cls) and mode != "few":
        fallback = _on_first_call(src, cls, "counted" if mode == "complete" else "few")
        if mode == "complete":
            body = [
                "try:",
                *_indent(body),
                "except KeyError:",  # a field is missing, an unknown key in its place
                f"    return {fallback}(o)",
            ]
        too_small = _too_small(cls, "o", mode)
        lines += [f"if {too_small}:"]
        if mode == "complete":  # straight to the few-keys function when it is the one
            lines += [
                f"    if {_too_small(cls, 'o', 'counted')}:",
                f"        return {_on_first_call(src, cls, 'few')}(o)",
            ]
        lines += [f"    return {fallback}(o)"]
    lines += [*body, "return instance"]
    source = "def fast(o):\n" + "".join(f"    {line}\n" for line in lines)
    variant = "" if mode == "complete" or not _keeps_extra(cls) else f" ({mode})"
    filename = f"<bitrix_openlines fast structure {cls.__module__}.{cls.__qualname__}{variant}>"
    exec(compile(source, filename, "exec"), src.names)
    # Tracebacks and profilers show the generated lines.
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    return typing.cast(Callable[[Any], Any], src.names["fast"])


def _fast_function(cls: Any) -> Callable[[Any], Any] | None:
    """The fast function of ``cls``, generated on first use; ``None`` if it has none."""
    try:
        return _FAST[cls]
    except KeyError:
        pass
    except TypeError:  # an unhashable type (Annotated with a list...): no fast path
        return None
    # Until it is generated, a class that contains itself uses its hook there.
    _FAST[cls] = None
    if isinstance(cls, type) and attrs.has(cls):
        _FAST[cls] = _variant(cls, "complete")
    return _FAST[cls]


def structure(value: Any, cl: type[T]) -> T:
    """Structure ``value`` into ``cl`` with the SDK's converter.

    An attrs class goes through its fast function first; if that fails, the detailed
    path structures the value again and raises the error that names the path.
    """
    try:
        fast = _FAST[cl]
    except (KeyError, TypeError):  # not generated yet, or an unhashable type
        fast = _fast_function(cl)
    if fast is not None:
        try:
            result: T = fast(value)
        except Exception:
            pass  # the detailed path below structures it again and words the error
        else:
            return result
    # Outside the except: the detailed error is not chained to the fast path's.
    return converter.structure(value, cl)


def fast_structurer(cl: Any) -> Callable[[Any], Any] | None:
    """The fast function of ``cl`` (an attrs class), or ``None`` when it has none.

    For a caller that structures many values of one class: it may call this once, then
    the function for each value, and :func:`structure_result` for a value the function
    raises on (which then structures it again through the detailed path and words the
    error): the same results and errors as :func:`structure_result` alone, without its
    two calls and lookup per value.
    """
    return _fast_function(cl)


def _keep(text: str) -> str:
    return text


def structure_result(
    value: Any, returns: Any, method: str | None, redact: Callable[[str], str] = _keep
) -> Any:
    """Structure a call's ``result`` into ``returns``, or raise :class:`DecodeError`.

    The one place a result that does not fit its type becomes an error, for single calls
    and batch commands alike. ``redact`` hides secrets in the error's text (its paths
    name the answer's keys).
    """
    try:
        return structure(value, returns)
    except Exception as exc:  # cattrs raises ExceptionGroups, TypeError, ValueError...
        raise DecodeError(
            f"the result does not fit {getattr(returns, '__name__', returns)}: "
            f"{redact(describe_error(exc))}",
            status=200,
            method=method,
        ) from None  # the original quotes values of the answer, unredacted


_MAX_MESSAGES = 3


def _raised_here(error: BaseException) -> bool:
    """Whether ``error`` was raised by a hook of this module (so its words are ours)."""
    tb = error.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and tb.tb_frame.f_globals.get("__name__") == __name__


def _cause(error: BaseException) -> str:
    """The innermost cause of a leaf error, in words."""
    if isinstance(error, KeyError):
        return "required field missing"
    if isinstance(error, TypeError) and error.args and _raised_here(error):
        # The hooks above word these, naming kinds of values, never values.
        return str(error.args[0])[:200]
    # Another library's message may quote the value (network text): name the type only.
    return f"could not be read ({type(error).__name__})"


def _step(error: BaseException, path: str) -> str:
    """The path of a sub-error of a group: its field or item note extends ``path``."""
    for note in getattr(error, "__notes__", ()):
        if isinstance(note, AttributeValidationNote):
            return f"{path}.{note.name}"
        if isinstance(note, IterableValidationNote):
            return f"{path}[{_index_label(note.index)}]"
    return path


def _leaves(error: BaseException, path: str, out: list[str]) -> None:
    """Append ``path: cause`` for each leaf error under ``error``, depth first."""
    if isinstance(error, BaseExceptionGroup):  # cattrs' class and iterable errors
        for sub in error.exceptions:
            _leaves(sub, _step(sub, path), out)
    else:
        out.append(f"{path}: {_cause(error)}")


def describe_error(error: BaseException) -> str:
    """Return a one-line summary of a structuring error: each path and its innermost cause.

    ``$.mute_list[0]: expected an integer, got a boolean``; several are joined by ``; ``
    (the first three, then how many more).
    """
    messages: list[str] = []
    _leaves(error, "$", messages)
    summary = "; ".join(messages[:_MAX_MESSAGES])
    if len(messages) > _MAX_MESSAGES:
        summary += f"; and {len(messages) - _MAX_MESSAGES} more"
    return summary
