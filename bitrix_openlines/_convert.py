"""The one cattrs converter: wire values to typed objects and back.

Bitrix24 is loose with types: numbers arrive as ints, floats or digit strings, flags as
``true``/``false`` or ``"Y"``/``"N"``, empty objects as ``[]`` (a PHP empty array), dates as
ATOM strings with an offset. The hooks below accept each of those and reject anything
else with a message, so that a body that does not fit becomes one clear ``DecodeError``.
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn, override

from bitrix_openlines.errors import DecodeError
from bitrix_openlines.types.common import TimeInfo
from bitrix_openlines.types.dialog import Dialog

__all__ = ["converter", "describe_error", "structure", "structure_result", "structure_time"]

T = TypeVar("T")

converter = cattrs.Converter(detailed_validation=True, forbid_extra_keys=False)

# ASCII digits only: str.isdigit() also accepts "²", which int() refuses.
_INT = re.compile(r"-?[0-9]+")


def _int(value: Any, _: Any) -> int:
    if isinstance(value, bool):
        raise TypeError(f"expected an integer, got a boolean {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and _INT.fullmatch(value.strip()):
        return int(value)
    raise TypeError(f"expected an integer, got {type(value).__name__} {_short(value)}")


def _float(value: Any, _: Any) -> float:
    if isinstance(value, bool):
        raise TypeError(f"expected a number, got a boolean {value!r}")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    raise TypeError(f"expected a number, got {type(value).__name__} {_short(value)}")


def _str(value: Any, _: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise TypeError(f"expected a string, got {type(value).__name__} {_short(value)}")


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
    raise TypeError(f"expected a flag (true/false or Y/N), got {_short(value)}")


def _datetime(value: Any, _: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if not isinstance(value, str):
        raise TypeError(f"expected an ISO-8601 date, got {type(value).__name__}")
    parsed = datetime.fromisoformat(value)
    # An ATOM date always has an offset; a naive one can only be read as UTC.
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _optional_datetime(value: Any, _: Any) -> datetime | None:
    # The portal writes "no date" as null or as an empty string.
    if value is None or value == "" or value is False:
        return None
    return _datetime(value, None)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


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
        if not isinstance(value, Mapping):
            # cattrs would test `"field" in value`: a string like "all" would pass as an
            # object whose fields are all missing.
            raise TypeError(
                f"expected an object for {inner.__name__}, got {type(value).__name__} "
                f"{_short(value)}"
            )
        return inner_hook(value, inner)

    return hook


converter.register_structure_hook_factory(
    lambda tp: _optional_attrs_class(tp) is not None, _make_optional_attrs_hook
)


def _is_variadic_tuple(tp: Any) -> bool:
    args = typing.get_args(tp)
    return typing.get_origin(tp) is tuple and len(args) == 2 and args[1] is Ellipsis


def _make_tuple_hook(tp: Any) -> Callable[[Any, Any], Any]:
    item_type = typing.get_args(tp)[0]
    item_hook = converter.get_structure_hook(item_type)

    def hook(value: Any, _: Any) -> tuple[Any, ...]:
        if value is None:
            return ()
        if isinstance(value, Mapping):
            # A PHP array with non-sequential keys arrives as an object: take its values.
            value = list(value.values())
        if not isinstance(value, list | tuple):
            raise TypeError(f"expected a list, got {type(value).__name__} {_short(value)}")
        return tuple(item_hook(item, item_type) for item in value)

    return hook


converter.register_structure_hook_factory(_is_variadic_tuple, _make_tuple_hook)


def _make_extra_keeping_hook(cls: type[Dialog]) -> Callable[[Any, Any], Dialog]:
    known = frozenset(f.name for f in attrs.fields(cls) if f.name != "extra")
    base = make_dict_structure_fn(
        cls,
        converter,
        extra=override(omit=True),
        # Portals of 2024 answer "dialog_id": null; Dialog derives "chat<ID>" then.
        dialog_id=override(struct_hook=lambda v, _: "" if v is None else _str(v, None)),
    )

    def hook(value: Any, _: Any) -> Dialog:
        if not isinstance(value, Mapping):
            raise TypeError(f"expected a chat object, got {type(value).__name__}")
        dialog = base(value, cls)
        extra = {key: item for key, item in value.items() if key not in known}
        if extra:
            object.__setattr__(dialog, "extra", extra)
        return dialog

    return hook


converter.register_structure_hook(Dialog, _make_extra_keeping_hook(Dialog))


def _keep(text: str) -> str:
    return text


def structure(value: Any, cl: type[T]) -> T:
    """Structure ``value`` into ``cl`` with the SDK's converter."""
    return converter.structure(value, cl)


def structure_result(
    value: Any, returns: Any, method: str | None, redact: Callable[[str], str] = _keep
) -> Any:
    """Structure a call's ``result`` into ``returns``, or raise :class:`DecodeError`.

    The one place a result that does not fit its type becomes an error, for single calls
    and batch commands alike. ``redact`` hides secrets in the error's text (its paths
    name the answer's keys).
    """
    try:
        return converter.structure(value, returns)
    except Exception as exc:  # cattrs raises ExceptionGroups, TypeError, ValueError...
        raise DecodeError(
            f"the result does not fit {getattr(returns, '__name__', returns)}: "
            f"{redact(describe_error(exc))}",
            status=200,
            method=method,
        ) from None  # the original quotes values of the answer, unredacted


def structure_time(value: Any) -> TimeInfo | None:
    """Structure a ``time`` block; anything that is not an object gives ``None``."""
    if not isinstance(value, Mapping):
        return None
    try:
        return converter.structure(value, TimeInfo)
    except Exception:  # a malformed time block must never cost the result itself
        return None


def describe_error(error: BaseException) -> str:
    """Return a one-line summary of a structuring error (the paths that did not fit)."""
    if isinstance(error, cattrs.BaseValidationError):
        messages = cattrs.transform_error(error)
        summary = "; ".join(messages[:3])
        if len(messages) > 3:
            summary += f"; and {len(messages) - 3} more"
        return summary
    return f"{type(error).__name__}: {error}"
