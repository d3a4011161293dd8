"""``_fill.filler``: frozen slotted attrs instances filled with plain stores.

A filled instance must be exactly what calling the class gives: its class, equality,
hash, frozenness, pickling; and a class whose ``__init__`` does more than store its fields
must be refused (a filler would skip that work).
"""

from __future__ import annotations

from typing import Any

import attrs
import pytest
from _unit_helpers import assert_exactly

from bitrix_openlines._fill import filler, new


@attrs.frozen(slots=True)
class Point:
    x: int
    y: str | None = None


def _fill(cls: type, *, checked: bool = True, **values: Any) -> Any:
    made: Any = new(filler(cls, checked=checked))
    for name, value in values.items():
        setattr(made, name, value)
    made.__class__ = cls
    return made


def test_a_filled_instance_is_exactly_the_constructed_one() -> None:
    made = _fill(Point, x=1, y="a")
    assert_exactly(made, Point(1, "a"))
    assert attrs.evolve(made, x=2) == Point(2, "a")
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        made.x = 5


def test_the_filler_is_a_subclass_without_slots_of_its_own() -> None:
    fill = filler(Point)
    assert fill.__dict__["__slots__"] == ()
    assert fill in Point.__subclasses__()
    assert fill.__qualname__ == "_PointFill"


@attrs.frozen(slots=True)
class Checked:
    x: int = attrs.field(validator=attrs.validators.instance_of(int))


@attrs.frozen(slots=True)
class Converted:
    x: int = attrs.field(converter=int)


@attrs.frozen(slots=True)
class PostInit:
    x: int

    def __attrs_post_init__(self) -> None:
        if self.x < 0:
            raise ValueError("x must not be negative")


@attrs.frozen(slots=False)
class NotSlotted:
    x: int


class NotAttrs:
    __slots__ = ("x",)


@pytest.mark.parametrize("cls", [Checked, Converted, PostInit])
def test_a_class_whose_init_checks_is_refused_unless_the_caller_checks(cls: type) -> None:
    with pytest.raises(TypeError, match="does more than store"):
        filler(cls)
    # The caller who does the checks itself may fill it (and must say so).
    assert _fill(cls, checked=False, x=3) == cls(x=3)


@pytest.mark.parametrize("cls", [NotSlotted, NotAttrs])
def test_a_class_that_is_not_slotted_attrs_is_refused(cls: type) -> None:
    with pytest.raises(TypeError, match="not a slotted attrs class"):
        filler(cls)
