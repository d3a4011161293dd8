"""``Method[T]``: one REST method as a small typed class, and the registry of them.

Each method is a frozen attrs class that knows its wire name (``__api_method__``), the
type its ``result`` is structured into (``__returns__``) and whether it is safe to send
twice (``__idempotent__``, which decides whether 5xx answers and dropped connections are
retried). Its fields are the parameters; a field's ``metadata={"wire": "NAME"}`` gives the
wire name, and ``None`` values are not sent. Validation happens in the constructor, so a
bad parameter raises before any I/O. :meth:`Method.to_params` gives the parameters in wire
form (:func:`~bitrix_openlines.wire.to_wire`): the same for a single call and a batch.
"""

from __future__ import annotations

from typing import Any, ClassVar, Generic, TypeVar

import attrs

from bitrix_openlines.wire import WireParams, to_wire

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

    def to_params(self) -> WireParams:
        """Return the parameters in wire form: wire names as keys, ``None`` left out.

        Raises:
            ValueError: A value cannot be sent (see :func:`~bitrix_openlines.wire.to_wire`).
        """
        return to_wire({wire: getattr(self, name) for name, wire in _wire_names(type(self))})

    def _plain_command(self) -> str | None:
        """This call's ``batch`` command when it surely holds no batch reference, or ``None``.

        A shortcut for the batch engine's most common requests, which it would otherwise
        encode (:meth:`to_params`, :func:`~bitrix_openlines.wire.batch_command`) and scan
        for references: a class may give the same text directly (a test compares them).
        ``None`` takes the general way.
        """
        return None


_WIRE_NAMES: dict[type, tuple[tuple[str, str], ...]] = {}


def _wire_names(cls: type) -> tuple[tuple[str, str], ...]:
    """``(attribute, wire name)`` of each field of a method class, read once per class."""
    names = _WIRE_NAMES.get(cls)
    if names is None:
        names = _WIRE_NAMES[cls] = tuple(
            (field.name, field.metadata.get("wire", field.name.upper()))
            for field in attrs.fields(cls)
        )
    return names


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
