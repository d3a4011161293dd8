"""``Method[T]``: one REST method as a small typed class, and the registry of them.

Each method is a frozen attrs class that knows its wire name (``__api_method__``), the
type its ``result`` is structured into (``__returns__``) and whether it is safe to send
twice (``__idempotent__``, which decides whether 5xx answers and dropped connections are
retried). Its fields are the parameters; a field's ``metadata={"wire": "NAME"}`` gives the
wire name, and ``None`` values are not sent. Validation happens in the constructor, so a
bad parameter raises before any I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Generic, TypeVar

import attrs

__all__ = ["Method", "get_method", "register_method", "registered_methods"]

T = TypeVar("T")
M = TypeVar("M", bound="type[Method[Any]]")


@attrs.frozen(kw_only=True)
class Method(Generic[T]):
    """Base class of every REST method.

    Subclasses set the three class variables and declare their parameters as attrs
    fields, then register themselves with :func:`register_method`.
    """

    __api_method__: ClassVar[str]
    __returns__: ClassVar[Any]
    __idempotent__: ClassVar[bool] = False

    def to_params(self) -> dict[str, Any]:
        """Return the wire parameters: wire names as keys, ``None`` values left out."""
        params: dict[str, Any] = {}
        for field in attrs.fields(type(self)):
            value = getattr(self, field.name)
            if value is None:
                continue
            wire = field.metadata.get("wire", field.name.upper())
            params[wire] = _wire_value(value)
        return params


def _wire_value(value: Any) -> Any:
    if isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, Mapping):
        return {str(k): _wire_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_wire_value(v) for v in value]
    # Value types (UserCode, ...) print their wire form.
    return str(value)


_REGISTRY: dict[str, type[Method[Any]]] = {}


def register_method(cls: M) -> M:
    """Register a method class under its wire name (a class decorator).

    Raises:
        ValueError: Another class is already registered under that name (names are
            compared case-insensitively, as the portal does).
        TypeError: The class does not declare ``__api_method__``.
    """
    name = getattr(cls, "__api_method__", None)
    if not isinstance(name, str) or not name:
        raise TypeError(f"{cls.__name__} must set __api_method__ to the REST method name")
    key = name.lower()
    existing = _REGISTRY.get(key)
    if existing is not None and existing is not cls:
        raise ValueError(
            f"method {name!r} is already registered by {existing.__module__}."
            f"{existing.__qualname__}"
        )
    _REGISTRY[key] = cls
    return cls


def get_method(name: str) -> type[Method[Any]]:
    """Return the method class registered under ``name`` (case-insensitive).

    Raises:
        KeyError: No method is registered under that name.
    """
    try:
        return _REGISTRY[name.lower()]
    except KeyError:
        raise KeyError(f"no method registered as {name!r}") from None


def registered_methods() -> dict[str, type[Method[Any]]]:
    """Return a copy of the registry: lower-cased wire name -> method class."""
    return dict(_REGISTRY)
