"""``DialogGet``: ``imopenlines.dialog.get``, the operator chat of an open line.

The portal takes one of four identifiers and uses the first one present in the order
``CHAT_ID > DIALOG_ID > SESSION_ID > USER_CODE`` even when it is invalid (PROTOCOL.md
section 7.2), so sending two would silently ignore one: ``DialogGet`` demands exactly one.
"""

from __future__ import annotations

import typing
from collections.abc import Mapping
from typing import Any, Final

import attrs

from bitrix_openlines._fill import filler, new
from bitrix_openlines.methods.base import Method, register_method
from bitrix_openlines.types.dialog import Dialog, UserCode, chat_id_from_dialog_id
from bitrix_openlines.wire import WireParams

__all__ = ["DialogGet"]

_KEYS = ("chat_id", "dialog_id", "session_id", "user_code")


# The portal keeps ids in signed 64-bit integers.
_MAX_ID = 2**63 - 1


def _positive_int(name: str, value: Any) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r:.40}")
    if value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value}")
    if value > _MAX_ID:
        raise ValueError(f"{name} must be at most 2**63 - 1 (a 64-bit id), got a larger number")


def _dialog_id(value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, str):
        raise TypeError(f"dialog_id must be a str like 'chat123', got {type(value).__name__}")
    chat_id_from_dialog_id(value)


def _user_code(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, UserCode):
        return str(value)
    raise TypeError(f"user_code must be a str or UserCode, got {type(value).__name__}")


@register_method
@attrs.frozen(kw_only=True)
class DialogGet(Method[Dialog]):
    """Get an open line's operator chat by one of its four identifiers.

    Give exactly one of the attributes (they are the constructor's keyword arguments).

    Attributes:
        chat_id: The chat id (``13``).
        dialog_id: ``chat`` and the chat id (``"chat29"``).
        session_id: An open-line session id (``1743``).
        user_code: ``connector|line|chat|user`` (``"livechat|1|1373|211"``), with or
            without the ``imol|`` prefix, or a :class:`UserCode`.

    Raises:
        TypeError: An argument has the wrong type.
        ValueError: Not exactly one argument was given, or its value is malformed.
    """

    __api_method__ = "imopenlines.dialog.get"
    __returns__ = Dialog
    __idempotent__ = True

    chat_id: int | None = attrs.field(default=None, metadata={"wire": "CHAT_ID"})
    dialog_id: str | None = attrs.field(default=None, metadata={"wire": "DIALOG_ID"})
    session_id: int | None = attrs.field(default=None, metadata={"wire": "SESSION_ID"})
    user_code: str | None = attrs.field(
        default=None, converter=_user_code, metadata={"wire": "USER_CODE"}
    )

    def __attrs_post_init__(self) -> None:
        chat_id = self.chat_id
        dialog_id = self.dialog_id
        session_id = self.session_id
        user_code = self.user_code
        given = (
            (chat_id is not None)
            + (dialog_id is not None)
            + (session_id is not None)
            + (user_code is not None)
        )
        if given != 1:
            found = ", ".join(name for name in _KEYS if getattr(self, name) is not None)
            raise ValueError(
                "DialogGet needs exactly one of chat_id, dialog_id, session_id, user_code; "
                f"got {found or 'none'}"
            )
        # Exactly one is set: check only that one (a plain int in range needs no call).
        if chat_id is not None:
            if type(chat_id) is not int or not 0 < chat_id <= _MAX_ID:
                _positive_int("chat_id", chat_id)
        elif session_id is not None:
            if type(session_id) is not int or not 0 < session_id <= _MAX_ID:
                _positive_int("session_id", session_id)
        elif dialog_id is not None:
            _dialog_id(dialog_id)
        else:
            UserCode.parse(typing.cast(str, user_code))

    @classmethod
    def from_query(cls, query: DialogGet | Mapping[str, Any]) -> DialogGet:
        """Build a ``DialogGet`` from itself or a mapping with exactly one identifier key.

        Raises:
            TypeError: ``query`` is neither, or a value has the wrong type.
            ValueError: The mapping has unknown keys, or not exactly one identifier.
        """
        if type(query) is dict and len(query) == 1:
            # The common query, {"chat_id": 13}: one known key, passed as it is.
            for key, value in query.items():
                if (
                    key == "chat_id"
                    and type(value) is int
                    and 0 < value <= _MAX_ID
                    and cls is DialogGet
                ):
                    # What __attrs_post_init__ would check is checked: filled without
                    # the frozen class's guarded stores (one query per dialog of a job).
                    made: Any = new(_DialogGetFill)
                    made.chat_id = value
                    made.dialog_id = None
                    made.session_id = None
                    made.user_code = None
                    made.__class__ = DialogGet
                    typed: DialogGet = made  # without a call (typing.cast is one)
                    return typed
                if key in _KEYS:
                    return cls(**{key: value})
        if isinstance(query, DialogGet):
            return query
        if not isinstance(query, Mapping):
            raise TypeError(f"query must be a DialogGet or a mapping, got {type(query).__name__}")
        unknown = sorted(str(k) for k in query if k not in _KEYS)
        if unknown:
            raise ValueError(
                f"query has unknown key(s) {', '.join(unknown)}; "
                "use one of chat_id, dialog_id, session_id, user_code"
            )
        return cls(**{str(k): v for k, v in query.items()})

    def to_params(self) -> WireParams:
        """Return the one identifier in wire form (``{"CHAT_ID": "13"}``)."""
        chat_id = self.chat_id
        if type(chat_id) is int:  # the common case: its decimal text, as to_wire gives
            return {"CHAT_ID": int.__repr__(chat_id)}
        return super().to_params()

    def _plain_command(self) -> str | None:
        chat_id = self.chat_id
        if type(chat_id) is int:  # its digits: nothing the portal could rewrite
            return _CHAT_ID_COMMAND + int.__repr__(chat_id)
        return None

    @property
    def identifier(self) -> tuple[str, int | str]:
        """The one identifier given, as ``(name, value)``."""
        for name in _KEYS:
            value = getattr(self, name)
            if value is not None:
                return name, value
        raise AssertionError("unreachable: validated in __attrs_post_init__")


#: ``DialogGet``'s layout with plain stores, for ``from_query``'s common case (its checks
#: are done there; see :mod:`bitrix_openlines._fill`).
_DialogGetFill = filler(DialogGet, checked=False)
#: What batch_command gives for {"CHAT_ID": "<digits>"}, but the digits.
_CHAT_ID_COMMAND: Final = f"{DialogGet.__api_method__}?CHAT_ID="
