"""``Dialog`` (the result of ``imopenlines.dialog.get``) and its nested types.

The chat object has 38 fields on current portals and 16 on portals of 2024
(``bitrix-docs-examples/imopenlines.dialog.get__*``), so every field that the 2024 object
lacks has a default. Fields the SDK does not know yet are kept, at every level: in
``Dialog.extra`` for the chat object's own keys, and in the ``extra`` of each nested object
(``Restrictions.extra``, ``ReadEntry.extra``...) for theirs. No value of an answer is
dropped: each is a typed attribute or sits in an ``extra``. ``docs/methods.md`` lists the
variants of the chat object that the SDK accepts.

``entity_id`` is the open line's user code and ``entity_data_1/2/3`` are pipe-separated
service fields whose layouts come from the ``imopenlines`` module (PROTOCOL.md section
7.3). They are kept raw and also parsed, defensively, into :class:`SessionData`,
:class:`CrmBindings` and ``silent_mode``: older portals wrote fewer fields, so every part
has a default.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final, NoReturn

import attrs

__all__ = [
    "NO_EXTRA",
    "CrmBindings",
    "Dialog",
    "EntityLink",
    "Extra",
    "LastMessageViews",
    "Permissions",
    "ReadEntry",
    "Restrictions",
    "SessionData",
    "UserCode",
    "Viewer",
    "chat_id_from_dialog_id",
]

# The server checks /^chat[0-9]+$/i (Im\\Common::isChatId): any case of "chat". Ids are
# signed 64-bit integers on the portal: at most 19 digits.
_DIALOG_ID = re.compile(r"chat([0-9]{1,19})", re.IGNORECASE)
_MAX_ID = 2**63 - 1
# ASCII digits only (str.isdigit() also accepts "²", which int() refuses), and few enough
# that int() never meets Python's limit on huge digit strings.
_INT = re.compile(r"-?[0-9]{1,19}")
_USER_CODE_PREFIX = "imol|"


def chat_id_from_dialog_id(dialog_id: str) -> int:
    """Return the chat id of a ``chatNNN`` dialog id.

    Raises:
        ValueError: ``dialog_id`` is not ``chat`` followed by digits.
    """
    match = _DIALOG_ID.fullmatch(dialog_id)
    # "chat0" names no chat, just as chat_id=0 does not.
    if match is None or not 0 < int(match.group(1)) <= _MAX_ID:
        raise ValueError(
            f"dialog_id must look like 'chat123' (the word 'chat' and the chat's number), "
            f"got {dialog_id!r}"
        )
    return int(match.group(1))


class Extra(dict[str, Any]):
    """The keys of an answer the SDK does not know (yet), as ``extra``: a read-only dict.

    It is a ``dict`` (``isinstance``, ``==``, ``json.dumps``, ``dict(extra)`` work as on any
    dict) that refuses changes, as the frozen object holding it does. Every object without
    unknown keys shares one empty ``Extra``, :data:`NO_EXTRA`: an empty dict of its own in
    each object of every answer (eight per ``Dialog``) cost memory and, in a job that
    keeps its dialogs, a seventh of the client's CPU in garbage collection.
    """

    __slots__ = ()

    def _refuse(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise TypeError("extra is read-only, as the object holding it; copy it: dict(extra)")

    __setitem__ = __delitem__ = _refuse
    setdefault = pop = popitem = clear = update = __ior__ = _refuse

    def __reduce__(self) -> tuple[type[Extra], tuple[dict[str, Any]]]:
        # Pickled, copied and deep-copied as a plain dict of the same items, read-only again.
        return (Extra, (dict(self),))


NO_EXTRA: Final = Extra()
"""The ``extra`` of every object that has no unknown keys (one shared empty ``Extra``)."""


@attrs.frozen(slots=True)
class UserCode:
    """An open line's user code: ``connector|line|chat|user``, e.g. ``livechat|1|1373|211``.

    It is the chat's ``entity_id`` (``CONNECTOR_ID|CONFIG_ID|EXTERNAL_CHAT_ID|USER_ID``,
    PROTOCOL.md section 7.3). ``imopenlines.dialog.get`` also accepts it with an ``imol|``
    prefix; :meth:`parse` strips that prefix.

    Attributes:
        connector: The connector id (``livechat``, ``telegrambot``, ...).
        line_id: The open line (configuration) id.
        chat_id: The chat id on the connector's side.
        user_id: The user id on the connector's side.
    """

    connector: str
    line_id: int
    chat_id: str
    user_id: str

    @classmethod
    def parse(cls, text: str, *, parameter: str = "user_code") -> UserCode:
        """Parse ``connector|line|chat|user``, with or without the ``imol|`` prefix.

        Args:
            text: The user code.
            parameter: The name to use in error messages.

        Raises:
            TypeError: ``text`` is not a string.
            ValueError: ``text`` does not have the four parts, or a part is empty, or the
                line is not a number.
        """
        if not isinstance(text, str):
            raise TypeError(f"{parameter} must be a str, got {type(text).__name__}")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            # A lone surrogate ("\ud800") cannot be sent in a UTF-8 body.
            raise ValueError(
                f"{parameter} must be valid Unicode text; it has a lone surrogate at "
                f"position {exc.start}"
            ) from None
        body = text[len(_USER_CODE_PREFIX) :] if text.startswith(_USER_CODE_PREFIX) else text
        parts = body.split("|")
        if len(parts) != 4:
            raise ValueError(
                f"{parameter} must be 'connector|line|chat|user' (4 parts separated by '|', "
                f"optionally prefixed with 'imol|'), got {text!r} with {len(parts)} part(s)"
            )
        names = ("connector", "line", "chat", "user")
        for name, part in zip(names, parts, strict=True):
            if not part.strip():
                raise ValueError(f"{parameter} has an empty {name} part: {text!r}")
        connector, line, chat, user = parts
        if not _INT.fullmatch(line) or line.startswith("-"):
            raise ValueError(
                f"{parameter} must have a numeric line part, got {line!r} in {text!r}"
            )
        return cls(connector=connector, line_id=int(line), chat_id=chat, user_id=user)

    def __str__(self) -> str:
        return f"{self.connector}|{self.line_id}|{self.chat_id}|{self.user_id}"


@attrs.frozen(slots=True)
class Restrictions:
    """What members may do in the chat (``restrictions``); ``True`` means allowed.

    Keys the SDK does not know are kept in ``extra``, as in :attr:`Dialog.extra` (the
    ``restrictions`` of ``im.dialog.get`` also have ``path`` and ``path_title``).
    """

    avatar: bool | None = None
    rename: bool | None = None
    extend: bool | None = None
    call: bool | None = None
    mute: bool | None = None
    leave: bool | None = None
    leave_owner: bool | None = None
    send: bool | None = None
    user_list: bool | None = None
    extra: Mapping[str, Any] = attrs.field(default=NO_EXTRA, eq=False, repr=False)


@attrs.frozen(slots=True)
class Permissions:
    """Who may do what in the chat: each value is ``member``, ``manager`` or ``owner``.

    Keys the SDK does not know are kept in ``extra``.
    """

    manage_users_add: str | None = None
    manage_users_delete: str | None = None
    manage_ui: str | None = None
    manage_settings: str | None = None
    manage_messages: str | None = None
    can_post: str | None = None
    extra: Mapping[str, Any] = attrs.field(default=NO_EXTRA, eq=False, repr=False)


@attrs.frozen(slots=True)
class EntityLink:
    """The link from the chat to its entity (``entity_link``); unknown keys in ``extra``."""

    type: str | None = None
    url: str | None = None
    id: str | None = None
    extra: Mapping[str, Any] = attrs.field(default=NO_EXTRA, eq=False, repr=False)


@attrs.frozen(slots=True)
class ReadEntry:
    """One member's read position (an item of ``readed_list``); unknown keys in ``extra``."""

    user_id: int
    user_name: str | None = None
    message_id: int | None = None
    date: datetime | None = None
    extra: Mapping[str, Any] = attrs.field(default=NO_EXTRA, eq=False, repr=False)


@attrs.frozen(slots=True)
class Viewer:
    """One of the first viewers of the last message; unknown keys in ``extra``."""

    user_id: int
    user_name: str | None = None
    date: datetime | None = None
    extra: Mapping[str, Any] = attrs.field(default=NO_EXTRA, eq=False, repr=False)


@attrs.frozen(slots=True)
class LastMessageViews:
    """Who saw the last message (``last_message_views``); unknown keys in ``extra``."""

    message_id: int | None = None
    first_viewers: tuple[Viewer, ...] = ()
    count_of_viewers: int = 0
    extra: Mapping[str, Any] = attrs.field(default=NO_EXTRA, eq=False, repr=False)


def _part(parts: list[str], index: int) -> str:
    return parts[index] if index < len(parts) else ""


def _int_part(parts: list[str], index: int) -> int:
    text = _part(parts, index).strip()
    return int(text) if _INT.fullmatch(text) else 0


def _flag_part(parts: list[str], index: int) -> bool:
    return _part(parts, index).strip().upper() == "Y"


def _time_part(parts: list[str], index: int) -> datetime | None:
    seconds = _int_part(parts, index)
    if seconds <= 0:
        return None
    try:
        return datetime.fromtimestamp(seconds, tz=UTC)
    except (OverflowError, OSError, ValueError):  # a garbage timestamp: no date
        return None


# The ten parts of entity_data_1 that SessionData names; later parts go to its extra.
_SESSION_PARTS = 10


@attrs.frozen(slots=True)
class SessionData:
    """The operator chat's session fields, parsed from ``entity_data_1``.

    Layout (PROTOCOL.md 7.3): ``CRM|CRM_ENTITY_TYPE|CRM_ENTITY_ID|PAUSE|WAIT_ACTION|
    SESSION_ID|DATE_CREATE|LINE_ID|BLOCK_DATE|BLOCK_REASON``. Missing parts take the
    defaults below, so the shorter strings of older portals parse too.

    Two parts differ between portals, and are read so that both forms mean the same:

    - ``block_reason``: "no reason" is ``0`` on current portals and empty on older ones
      (``...|0|0`` and ``...|0|``); both give ``""``.
    - ``line_id``: the server writes the line only when it is positive, so current
      portals often have ``0`` here while ``entity_id`` names the line (``livechat|22|..``).
      ``line_id`` stays what the portal wrote; :attr:`Dialog.line_id` falls back to the
      line of ``entity_id``.

    Attributes:
        extra: Parts after the ten known ones, by their position in the string
            (``{10: "..."}``), should a portal write more; empty otherwise.
    """

    crm: bool = False
    crm_entity_type: str = "NONE"
    crm_entity_id: int = 0
    pause: bool = False
    wait_action: bool = False
    session_id: int = 0
    date_create: datetime | None = None
    line_id: int = 0
    block_date: datetime | None = None
    block_reason: str = ""
    extra: dict[int, str] = attrs.field(factory=dict, eq=False, repr=False)

    @classmethod
    def parse(cls, raw: str | None) -> SessionData:
        """Parse an ``entity_data_1`` string; an empty or ``None`` value gives the defaults."""
        parts = (raw or "").split("|")
        block_reason = _part(parts, 9).strip()
        return cls(
            crm=_flag_part(parts, 0),
            crm_entity_type=_part(parts, 1).strip() or "NONE",
            crm_entity_id=_int_part(parts, 2),
            pause=_flag_part(parts, 3),
            wait_action=_flag_part(parts, 4),
            session_id=_int_part(parts, 5),
            date_create=_time_part(parts, 6),
            line_id=_int_part(parts, 7),
            block_date=_time_part(parts, 8),
            # The server's default is the number 0 ("no reason"); older portals left it empty.
            block_reason="" if block_reason == "0" else block_reason,
            extra=dict(enumerate(parts[_SESSION_PARTS:], start=_SESSION_PARTS)),
        )


_CRM_KEYS = frozenset({"lead", "company", "contact", "deal"})


@attrs.frozen(slots=True)
class CrmBindings:
    """The CRM entities bound to the chat, parsed from ``entity_data_2``.

    Layout: pairs ``LEAD|<id>|COMPANY|<id>|CONTACT|<id>|DEAL|<id>``; ``0`` means none.

    Attributes:
        extra: Pairs of other names, as written (``{"ORDER": "7"}``), should a portal
            write them; a lone trailing part is kept under ``""``. Empty otherwise.
    """

    lead: int = 0
    company: int = 0
    contact: int = 0
    deal: int = 0
    extra: dict[str, str] = attrs.field(factory=dict, eq=False, repr=False)

    @classmethod
    def parse(cls, raw: str | None) -> CrmBindings:
        """Parse an ``entity_data_2`` string; pairs of other names go to ``extra``."""
        parts = (raw or "").split("|")
        found: dict[str, int] = {}
        extra: dict[str, str] = {}
        for index in range(0, len(parts) - 1, 2):
            name = parts[index]
            key = name.strip().lower()
            if key in _CRM_KEYS:
                found[key] = _int_part(parts, index + 1)
            elif name or parts[index + 1]:
                extra[name] = parts[index + 1]
        if len(parts) % 2 and parts[-1]:
            extra[""] = parts[-1]
        return cls(**found, extra=extra)


@attrs.frozen(slots=True)
class Dialog:
    """An open line's operator chat, as ``imopenlines.dialog.get`` returns it.

    The first 16 attributes (through ``type``) exist on every portal; the rest came with
    the 38-field object of current portals and are ``None`` (or empty) on older ones.
    Date fields are timezone-aware. Unknown fields are kept in ``extra`` (and unknown keys
    of a nested object in that object's ``extra``).

    Shapes that differ between portals (``docs/methods.md`` has the full table):

    - ``mute_list`` is a list of user ids, or, on newer portals, a map of user id to flag
      (``{"503": true}``): either way it becomes the tuple of muted user ids (the keys
      whose flag is true).
    - Ids may come as digit strings on old portals (``"id": "21191"``): they become ints.
    - Old portals name the chat ``title`` instead of ``name``: it is kept in
      ``extra["title"]``, and ``name`` takes its value when the portal sent no ``name``.
    - ``disappearing_time`` (current portals): the chat's disappearing-messages setting,
      an integer as the portal writes it; ``None`` when not sent.
    """

    id: int
    name: str | None = None
    type: str | None = None
    owner: int | None = None
    extranet: bool | None = None
    avatar: str | None = None
    color: str | None = None
    date_create: datetime | None = None
    entity_type: str | None = None
    entity_id: str | None = None
    entity_data_1: str | None = None
    entity_data_2: str | None = None
    entity_data_3: str | None = None
    manager_list: tuple[int, ...] = ()
    message_type: str | None = None
    dialog_id: str = attrs.field(default="")
    # The fields of the current (38-field) chat object.
    parent_chat_id: int | None = None
    parent_message_id: int | None = None
    description: str | None = None
    counter: int | None = None
    user_counter: int | None = None
    message_count: int | None = None
    unread_id: int | None = None
    restrictions: Restrictions | None = None
    last_message_id: int | None = None
    last_id: int | None = None
    marked_id: int | None = None
    disk_folder_id: int | None = None
    mute_list: tuple[int, ...] = ()
    public: Any = None
    role: str | None = None
    entity_link: EntityLink | None = None
    text_field_enabled: bool | None = None
    background_id: str | None = None
    permissions: Permissions | None = None
    is_new: bool | None = None
    readed_list: tuple[ReadEntry, ...] = ()
    last_message_views: LastMessageViews | None = None
    # Seen on current portals only.
    disappearing_time: int | None = None
    extra: Mapping[str, Any] = attrs.field(default=NO_EXTRA, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        # Portals of 2024 answer "dialog_id": null; the id is always "chat<ID>".
        if not self.dialog_id:
            object.__setattr__(self, "dialog_id", f"chat{self.id}")

    @property
    def chat_id(self) -> int:
        """The chat id (the same as ``id``)."""
        return self.id

    @property
    def user_code(self) -> UserCode | None:
        """The open line's user code parsed from ``entity_id``, or ``None`` if it is not one."""
        if not self.entity_id:
            return None
        try:
            return UserCode.parse(self.entity_id, parameter="entity_id")
        except ValueError:
            return None

    @property
    def session(self) -> SessionData:
        """The session fields parsed from ``entity_data_1``."""
        return SessionData.parse(self.entity_data_1)

    @property
    def session_id(self) -> int | None:
        """The current open-line session id, or ``None`` when the portal did not say."""
        return self.session.session_id or None

    @property
    def line_id(self) -> int | None:
        """The open line's id: the session's line, else the line of ``entity_id``.

        The server writes the line into ``entity_data_1`` only when it is positive, so on
        current portals :attr:`SessionData.line_id` is often ``0`` while ``entity_id``
        (``livechat|22|1775|599``) names line 22: this gives 22 then. ``None`` when neither
        names a line.
        """
        line = self.session.line_id
        if line > 0:
            return line
        code = self.user_code
        return code.line_id if code is not None and code.line_id > 0 else None

    @property
    def crm(self) -> CrmBindings:
        """The CRM bindings parsed from ``entity_data_2``."""
        return CrmBindings.parse(self.entity_data_2)

    @property
    def silent_mode(self) -> bool:
        """Whether the operator's silent mode is on (``entity_data_3`` is ``Y``)."""
        return (self.entity_data_3 or "").strip().upper() == "Y"
