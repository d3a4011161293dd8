"""Hold the fake portal's Open Lines dialogs and render them as the portal does.

A dialog here is the operator chat of an Open Lines session: ``imopenlines.dialog.get``
finds it by chat id, ``chat<id>``, session id or user code (PROTOCOL.md section 7.2) and
answers ``Im\\Chat::getById`` of it. The rendering copies the field order and JSON types of
the documented answers (``bitrix-docs-examples/imopenlines.dialog.get__200_success.json``
and, for ``legacy_2024``, ``imopenlines.dialog.get__legacy2024_200_success.json``).
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from datetime import datetime, timedelta, timezone
from typing import Any, Final

import attrs

__all__ = ["PORTAL_TZ", "FakeDialog", "generate_dialogs", "render_dialog", "render_dialog_legacy"]

#: The portal's time zone. ``date('c')`` on a portal writes its local offset; a non-UTC
#: offset keeps clients honest about parsing offsets (examples show +01:00 and +03:00).
PORTAL_TZ: Final = timezone(timedelta(hours=3))

_CONNECTORS: Final = ("livechat", "telegrambot", "whatsappbytwilio", "viber", "facebook")
_LINE_NAMES: Final = ("Support", "Sales", "Bitrix24 Documentation", "Priority Support", "Billing")
_GUEST_WORDS: Final = ("Green", "Blue", "Red", "Orange", "Purple", "Grey", "Yellow", "Brown")
_OPERATORS: Final = ((1, "Admin Adminov"), (27, "Samantha Johnson"), (31, "Eugene Perekopsky"))
# Chat colours seen in the documented answers and the IM palette.
_COLORS: Final = ("#58cc47", "#4ba984", "#ab7761", "#29619b", "#e8a441", "#df532d")
# 2026-01-01T00:00:00Z: generated dialogs are created after it.
_EPOCH: Final = 1767225600


def _positive_int(instance: Any, attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"FakeDialog.{attribute.name} must be an int >= 1, got {value!r}")


def _non_negative_int(instance: Any, attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"FakeDialog.{attribute.name} must be an int >= 0, got {value!r}")


def _as_tuple(value: Iterable[int]) -> tuple[int, ...]:
    return tuple(value)


def _user_ids(instance: Any, attribute: attrs.Attribute[tuple[int, ...]], value: Any) -> None:
    for item in value:
        if isinstance(item, bool) or not isinstance(item, int) or item < 1:
            raise ValueError(f"FakeDialog.{attribute.name} must hold ints >= 1, got {item!r}")


def _non_empty_str(instance: Any, attribute: attrs.Attribute[str], value: str) -> None:
    if not isinstance(value, str) or not value:
        raise ValueError(f"FakeDialog.{attribute.name} must be a non-empty str, got {value!r}")


def _code_part(user_code: str, index: int) -> str:
    parts = user_code.split("|")
    return parts[index] if len(parts) > index else ""


def _int_or_zero(text: str) -> int:
    return int(text) if text.isascii() and text.isdigit() else 0


def _default_name(dialog: FakeDialog) -> str:
    return f"Guest #{dialog.chat_id} - Open Line {dialog.line_id}"


@attrs.frozen
class FakeDialog:
    """One Open Lines operator chat of the fake portal.

    Attributes:
        chat_id: The chat id (``CHAT_ID``; ``DIALOG_ID`` is ``chat<chat_id>``).
        session_id: The Open Lines session id (``SESSION_ID``).
        user_code: ``connector|line|external chat|external user``, e.g.
            ``livechat|1|1373|211`` (``USER_CODE``, the chat's ``entity_id``). Any
            non-empty string is accepted, so tests can use codes that need escaping.
        forbidden: The caller has no access: ``ACCESS_ERROR`` like an unknown dialog.
        name: The chat title; defaults to ``Guest #<chat_id> - Open Line <line>``.
        owner: User id of the operator who owns the chat.
        operator_name: Display name of ``owner``.
        guest_name: Display name of the client.
        crm_lead_id: Bound CRM lead, or 0 for none (``entity_data_1``/``entity_data_2``).
        date_create: Creation time, Unix seconds.
        message_count: Number of messages.
        last_message_id: Id of the last message.
        color: Chat colour, ``#rrggbb``.
        muted: User ids who turned the chat's notifications off. Rendered as newer
            portals write ``mute_list``, a map of user id to ``true`` (``{"503": true}``);
            none gives ``[]``, as in the documented answer.
    """

    chat_id: int = attrs.field(validator=_positive_int)
    session_id: int = attrs.field(validator=_positive_int)
    user_code: str = attrs.field(validator=_non_empty_str)
    forbidden: bool = attrs.field(default=False, converter=bool)
    name: str = attrs.field(default=attrs.Factory(_default_name, takes_self=True))
    owner: int = attrs.field(default=1, validator=_non_negative_int)
    operator_name: str = "Admin Adminov"
    guest_name: str = "Guest"
    crm_lead_id: int = attrs.field(default=0, validator=_non_negative_int)
    date_create: int = attrs.field(default=_EPOCH, validator=_non_negative_int)
    message_count: int = attrs.field(default=1, validator=_non_negative_int)
    last_message_id: int = attrs.field(default=1, validator=_non_negative_int)
    color: str = "#58cc47"
    muted: tuple[int, ...] = attrs.field(default=(), converter=_as_tuple, validator=_user_ids)

    @property
    def dialog_id(self) -> str:
        """Return the ``DIALOG_ID`` form of the chat, ``chat<chat_id>``."""
        return f"chat{self.chat_id}"

    @property
    def connector_id(self) -> str:
        """Return the connector part of the user code (``livechat``...)."""
        return _code_part(self.user_code, 0)

    @property
    def line_id(self) -> int:
        """Return the Open Line id from the user code, 0 if it is not a number."""
        return _int_or_zero(_code_part(self.user_code, 1))

    @property
    def guest_user_id(self) -> int:
        """Return the client's user id from the user code, 0 if it is not a number."""
        return _int_or_zero(_code_part(self.user_code, 3))


def generate_dialogs(count: int, seed: int) -> list[FakeDialog]:
    """Return ``count`` deterministic dialogs with chat ids ``1..count``.

    Session ids are ``100000 + chat_id`` so that a client mixing up ``CHAT_ID`` and
    ``SESSION_ID`` gets an error, not a wrong dialog.

    Args:
        count: How many dialogs.
        seed: Seed for names, owners, CRM bindings and counters.

    Returns:
        The dialogs, ordered by chat id.
    """
    rng = random.Random(seed)
    dialogs = []
    for chat_id in range(1, count + 1):
        connector = rng.choice(_CONNECTORS)
        line = rng.randint(1, len(_LINE_NAMES))
        owner, operator_name = rng.choice(_OPERATORS)
        message_count = rng.randint(1, 200)
        dialogs.append(
            FakeDialog(
                chat_id=chat_id,
                session_id=100_000 + chat_id,
                user_code=f"{connector}|{line}|{1000 + chat_id}|{500 + chat_id}",
                name=f"{rng.choice(_GUEST_WORDS)} Guest #{chat_id} - {_LINE_NAMES[line - 1]}",
                owner=owner,
                operator_name=operator_name,
                crm_lead_id=rng.choice((0, rng.randint(1, 5000))),
                date_create=_EPOCH + chat_id * 3600 + rng.randint(0, 3599),
                message_count=message_count,
                last_message_id=10_000 + chat_id * 200 + message_count,
                color=rng.choice(_COLORS),
            )
        )
    return dialogs


def _atom(unix: int) -> str:
    return datetime.fromtimestamp(unix, PORTAL_TZ).isoformat()


def _entity_data_1(dialog: FakeDialog, *, legacy: bool) -> str:
    # CRM|CRM_ENTITY_TYPE|CRM_ENTITY_ID|PAUSE|WAIT_ACTION|SESSION_ID|DATE_CREATE|LINE_ID|
    # BLOCK_DATE|BLOCK_REASON (PROTOCOL.md section 7.3). The 2024 example left the last
    # field empty, so the legacy rendering does too.
    crm = f"Y|LEAD|{dialog.crm_lead_id}" if dialog.crm_lead_id else "N|NONE|0"
    tail = "0|" if legacy else "0|0"
    return f"{crm}|N|N|{dialog.session_id}|{dialog.date_create}|{dialog.line_id}|{tail}"


def render_dialog(dialog: FakeDialog, *, user_id: int) -> dict[str, Any]:
    """Render the 38-field chat object of the current ``imopenlines.dialog.get``.

    Args:
        dialog: The dialog.
        user_id: The calling user; they are ``role: "owner"`` of chats they own.

    Returns:
        The ``result`` object, keys in the documented order.
    """
    viewed_at = _atom(dialog.date_create + 600)
    return {
        "id": dialog.chat_id,
        "parent_chat_id": 0,
        "parent_message_id": 0,
        "name": dialog.name,
        "description": None,
        "owner": dialog.owner,
        "extranet": False,
        "avatar": "",
        "color": dialog.color,
        "type": "lines",
        "counter": 0,
        "user_counter": 2,
        "message_count": dialog.message_count,
        "unread_id": 0,
        "restrictions": {
            "avatar": True,
            "rename": True,
            "extend": True,
            "call": True,
            "mute": True,
            "leave": True,
            "leave_owner": True,
            "send": True,
            "user_list": True,
        },
        "last_message_id": dialog.last_message_id,
        "last_id": dialog.last_message_id,
        "marked_id": 0,
        "disk_folder_id": 0,
        "entity_type": "LINES",
        "entity_id": dialog.user_code,
        "entity_data_1": _entity_data_1(dialog, legacy=False),
        "entity_data_2": f"LEAD|{dialog.crm_lead_id}|COMPANY|0|CONTACT|0|DEAL|0",
        "entity_data_3": "N",
        "mute_list": {str(user): True for user in dialog.muted} if dialog.muted else [],
        "date_create": _atom(dialog.date_create),
        "message_type": "L",
        "public": "",
        "role": "owner" if dialog.owner == user_id else "member",
        "entity_link": {"type": "LINES", "url": "", "id": dialog.user_code},
        "text_field_enabled": True,
        "background_id": None,
        "permissions": {
            "manage_users_add": "member",
            "manage_users_delete": "manager",
            "manage_ui": "member",
            "manage_settings": "owner",
            "manage_messages": "member",
            "can_post": "member",
        },
        "is_new": False,
        "readed_list": [
            {
                "user_id": dialog.guest_user_id,
                "user_name": dialog.guest_name,
                "message_id": max(0, dialog.last_message_id - 1),
                "date": None,
            }
        ],
        "manager_list": [dialog.owner],
        "last_message_views": {
            "message_id": dialog.last_message_id,
            "first_viewers": [
                {"user_id": dialog.owner, "user_name": dialog.operator_name, "date": viewed_at}
            ],
            "count_of_viewers": 0,
        },
        "dialog_id": dialog.dialog_id,
    }


def render_dialog_legacy(dialog: FakeDialog) -> dict[str, Any]:
    """Render the 16-field chat object of the 2024 documentation (``dialog_id`` null).

    Args:
        dialog: The dialog.

    Returns:
        The ``result`` object, keys in the documented (alphabetical) order.
    """
    return {
        "avatar": "",
        "color": dialog.color,
        "date_create": _atom(dialog.date_create),
        "dialog_id": None,
        "entity_data_1": _entity_data_1(dialog, legacy=True),
        "entity_data_2": "",
        "entity_data_3": "",
        "entity_id": dialog.user_code,
        "entity_type": "LINES",
        "extranet": False,
        "id": dialog.chat_id,
        "manager_list": [],  # empty in the 2024 example
        "message_type": "L",
        "name": dialog.name,
        "owner": dialog.owner,
        "type": "lines",
    }
