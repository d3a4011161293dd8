"""Building frozen slotted attrs instances on hot paths without their guarded stores.

A frozen attrs class refuses ``instance.field = value`` (its ``__setattr__`` raises), so
its ``__init__`` stores each field through ``object.__setattr__``: a call per field. A
subclass that adds no slot and takes ``object``'s ``__setattr__`` back stores as any
object does (CPython specialises such a store to one instruction). Both classes have the
same layout, so an instance filled in the subclass becomes exactly an instance of the
frozen class by ``instance.__class__ = cls``: from then on it is what ``cls(...)`` gives
(frozen, equal, the same hash, pickled as ``cls``).

Used where an object is built once per dialog of a job (the ``time`` block, the query, the
outcome): for a 6-field class about 0.6 -> 0.25 µs. Only for classes whose ``__init__``
does nothing but store its fields (no validator, converter or ``__attrs_post_init__``,
which the filler would skip); :func:`filler` checks that. The filler is the one trace:
``cls.__subclasses__()`` lists it.
"""

from __future__ import annotations

from typing import Any, Final

import attrs

__all__ = ["filler", "new"]

#: ``new(filler_class)``: an empty instance to fill (``object.__new__``, no ``__init__``).
new: Final = object.__new__


def filler(cls: type, *, checked: bool = True) -> type:
    """A subclass of the frozen slotted attrs class ``cls`` that takes plain stores.

    Fill every field of ``new(filler)`` (a field left unset reads as a missing
    attribute), then assign ``__class__ = cls``.

    With ``checked``, ``cls`` must build its instances by storing its fields alone;
    ``checked=False`` is for a class whose post-init checks the caller has done itself
    (it must say so where it fills).

    Raises:
        TypeError: ``cls`` is not a slotted attrs class, or (``checked``) its ``__init__``
            does more than store its fields, or the layouts differ.
    """
    if not attrs.has(cls) or "__slots__" not in cls.__dict__:
        raise TypeError(f"{cls.__qualname__} is not a slotted attrs class")
    if checked and (
        hasattr(cls, "__attrs_pre_init__")
        or hasattr(cls, "__attrs_post_init__")
        or any(f.validator is not None or f.converter is not None for f in attrs.fields(cls))
    ):
        raise TypeError(f"{cls.__qualname__}'s __init__ does more than store its fields")
    namespace: dict[str, Any] = {
        "__slots__": (),
        "__setattr__": object.__setattr__,
        "__delattr__": object.__delattr__,
        "__module__": cls.__module__,
        "__qualname__": f"_{cls.__name__}Fill",
        "__doc__": f"{cls.__qualname__}'s layout with plain stores (see bitrix_openlines._fill).",
    }
    fill = type(f"_{cls.__name__}Fill", (cls,), namespace)
    probe: Any = new(fill)
    probe.__class__ = cls  # TypeError "object layout differs" if it ever did
    return fill
