"""Parse and verify the events a Bitrix24 portal posts to an application's handler.

A portal delivers an event as a POST of ``application/x-www-form-urlencoded`` built with
PHP's ``http_build_query`` (PROTOCOL.md 6.2): ``event=ONSESSIONSTART``,
``data[DATA][0][chat][id]=10585``, ``auth[application_token]=...``. Every value arrives as
a string, empty arrays are left out, and a list arrives as a map keyed ``"0"``, ``"1"``...
:func:`parse_event` decodes such a body (or the same event as JSON, as the docs print it)
into a typed event::

    event = parse_event(body, content_type="application/x-www-form-urlencoded")
    verify_event(event, stored_application_token)   # raises EventVerificationError
    if isinstance(event, OpenLineMessageEvent):
        for item in event.items:
            print(item.chat.id, item.message.text)

The events Open Lines applications, connectors and bots live on get their own types:
the Open Lines messages and sessions (:class:`OpenLineMessageEvent`,
:class:`SessionEvent`), a connector's events (:class:`ConnectorMessageEvent`,
:class:`ConnectorDialogEvent`, :class:`ConnectorStatusDeleteEvent`,
:class:`ConnectorLineDeleteEvent`), a chat bot's (:class:`BotMessageEvent`,
:class:`BotJoinChatEvent`, :class:`BotDeleteEvent`), and the install and uninstall
(:class:`AppInstallEvent`, :class:`AppUninstallEvent`); any other event is a
:class:`GenericEvent` with its raw ``data``. Each type reads the keys its doc page
lists into typed fields and keeps any other key, as sent, in its ``extra``: every value
of ``data`` is reachable from the typed event. Parsing is defensive: numbers as
strings, missing keys (default values or ``None``) and unknown keys never fail; only a
body that is not an event at all raises :class:`EventError`.

Parsing is bounded too, since it runs before verification, on whatever a stranger posts:
it takes time linear in the body, and refuses with :class:`EventError` a body past the
:class:`EventLimits` (1 MiB, 10,000 fields, 64 levels by default), a lone surrogate in
a text, or a number past PHP's 64-bit integers.

Anyone can POST to a handler's URL, so an event is trusted only after
:func:`verify_event` has compared its ``auth[application_token]`` with the one stored
from the application's ``ONAPPINSTALL`` event (PROTOCOL.md 6.2). Tokens never appear in
a ``repr`` or an error text.
"""

from __future__ import annotations

import hmac
import json
import re
from collections.abc import Callable, Mapping
from typing import Any, Final, TypeVar

import attrs

from bitrix_openlines.auth import OAuthTokens
from bitrix_openlines.errors import EventError, EventVerificationError
from bitrix_openlines.wire import parse_form, parse_form_pairs

__all__ = [
    "AppInstallEvent",
    "AppUninstallEvent",
    "BotDeleteEvent",
    "BotJoinChatEvent",
    "BotJoinParams",
    "BotMessageEvent",
    "BotMessageParams",
    "BotUser",
    "ChatInfo",
    "ConnectorDialogEvent",
    "ConnectorInfo",
    "ConnectorLineDeleteEvent",
    "ConnectorMessage",
    "ConnectorMessageEvent",
    "ConnectorMessageItem",
    "ConnectorStatusDeleteEvent",
    "Event",
    "EventAuth",
    "EventBot",
    "EventError",
    "EventLimits",
    "EventVerificationError",
    "ExternalChat",
    "GenericEvent",
    "ImInfo",
    "LineInfo",
    "MessageInfo",
    "MessageItem",
    "OpenLineMessageEvent",
    "SessionEvent",
    "SessionInfo",
    "SessionItem",
    "UserInfo",
    "APP_INSTALL",
    "APP_UNINSTALL",
    "BOT_DELETE",
    "BOT_JOIN_CHAT",
    "BOT_MESSAGE_EVENTS",
    "CONNECTOR_DIALOG_EVENTS",
    "CONNECTOR_LINE_DELETE",
    "CONNECTOR_MESSAGE_EVENTS",
    "CONNECTOR_STATUS_DELETE",
    "MESSAGE_EVENTS",
    "SESSION_EVENTS",
    "parse_event",
    "verify_event",
]

#: The Open Lines message events (EN ``imopenlines/openlines/events``).
MESSAGE_EVENTS: Final = frozenset(
    {"ONOPENLINEMESSAGEADD", "ONOPENLINEMESSAGEUPDATE", "ONOPENLINEMESSAGEDELETE"}
)
#: The Open Lines session events.
SESSION_EVENTS: Final = frozenset({"ONSESSIONSTART", "ONSESSIONFINISH"})
#: The event a portal posts once when it installs the application.
APP_INSTALL: Final = "ONAPPINSTALL"
#: The event a portal posts when it removes the application.
APP_UNINSTALL: Final = "ONAPPUNINSTALL"
#: A connector's messages to relay (EN ``imopenlines/imconnector/events``).
CONNECTOR_MESSAGE_EVENTS: Final = frozenset(
    {"ONIMCONNECTORMESSAGEADD", "ONIMCONNECTORMESSAGEUPDATE", "ONIMCONNECTORMESSAGEDELETE"}
)
#: A connector's dialogs starting and finishing.
CONNECTOR_DIALOG_EVENTS: Final = frozenset(
    {"ONIMCONNECTORDIALOGSTART", "ONIMCONNECTORDIALOGFINISH"}
)
#: A connector switched off on an open line.
CONNECTOR_STATUS_DELETE: Final = "ONIMCONNECTORSTATUSDELETE"
#: An open line deleted (its ``data`` is the line's id alone).
CONNECTOR_LINE_DELETE: Final = "ONIMCONNECTORLINEDELETE"
#: A chat bot's messages (EN ``chat-bots/outdated/messages/events``).
BOT_MESSAGE_EVENTS: Final = frozenset(
    {"ONIMBOTMESSAGEADD", "ONIMBOTMESSAGEUPDATE", "ONIMBOTMESSAGEDELETE"}
)
#: A chat bot added to a chat.
BOT_JOIN_CHAT: Final = "ONIMBOTJOINCHAT"
#: A chat bot deleted.
BOT_DELETE: Final = "ONIMBOTDELETE"

_INT: Final = re.compile(r"[+-]?[0-9]+")
_FORM: Final = "application/x-www-form-urlencoded"
# PHP's integers, and so every id and time a portal sends, are 64-bit.
_INT_MIN: Final = -(2**63)
_INT_MAX: Final = 2**63 - 1
_SURROGATE: Final = re.compile("[\ud800-\udfff]")


def _positive_int(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{attribute.name} must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{attribute.name} must be at least 1, got {value}")


@attrs.frozen(slots=True, kw_only=True)
class EventLimits:
    """How much of an incoming event :func:`parse_event` reads before refusing it.

    An event is parsed before it can be verified, so these bound what anyone who knows
    the handler's URL can make the application do. A body past a limit raises
    :class:`EventError` naming the limit. The defaults are far above what a portal
    sends: an ``ONIMBOTMESSAGEADD`` with a long message and its attachments is at most a
    few hundred KB (a non-Latin letter takes 6 bytes percent-encoded), a few hundred
    fields, under 10 levels deep::

        parse_event(body, content_type, limits=EventLimits(max_bytes=4 * 1024 * 1024))

    Attributes:
        max_bytes: The largest body, in bytes (1 MiB; a ``str`` body counts its UTF-8
            bytes). ``read_event`` stops reading past it.
        max_fields: The most values: ``name=value`` pairs of a form body, or values
            (strings, numbers, ``null``...) of a JSON body or a mapping (10,000).
        max_depth: The deepest nesting below a top-level name: the brackets of a form
            name (``data[DATA][0][chat][id]`` has 4), or as many levels of JSON objects
            and lists below the top-level object (64, PHP's ``max_input_nesting_level``).
    """

    max_bytes: int = attrs.field(default=1024 * 1024, validator=_positive_int)
    max_fields: int = attrs.field(default=10_000, validator=_positive_int)
    max_depth: int = attrs.field(default=64, validator=_positive_int)


_DEFAULT_LIMITS: Final = EventLimits()


# ---------------------------------------------------------------------------------------
# Defensive field readers: the form encoding makes every value a string, and the docs do
# not promise every key.


def _int(value: Any, field: str, default: int = 0) -> int:
    number = _opt_int(value, field)
    return default if number is None else number


def _opt_int(value: Any, field: str) -> int | None:
    """Read a number, or ``None`` for junk; a number past 64 bits is an EventError.

    ``field`` names the value in that error (``ts``, ``chat[id]``...).
    """
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and _INT.fullmatch(text := value.strip()):
        # Leading zeros aside, more than 19 digits cannot fit: refuse before int(), which
        # is quadratic in the digits and refuses more than 4,300 of them (zeros count).
        digits = text.lstrip("+-").lstrip("0")
        if len(digits) > 19:
            raise _out_of_range(field)
        number = -int(digits or "0") if text.startswith("-") else int(digits or "0")
    else:
        return None
    if not _INT_MIN <= number <= _INT_MAX:
        raise _out_of_range(field)
    return number


def _out_of_range(field: str) -> EventError:
    return EventError(f"the event's {field} is a number past the 64-bit integers a portal sends")


def _str(value: Any) -> str:
    if value is None or isinstance(value, Mapping | list):
        return ""
    if isinstance(value, bool):
        return "Y" if value else "N"
    if isinstance(value, int) and not _INT_MIN <= value <= _INT_MAX:
        return ""  # not a value of a portal's (and str() of it may refuse)
    return str(value)


def _opt_str(value: Any) -> str | None:
    text = _str(value)
    return text or None


def _flag(value: Any) -> bool:
    # Bitrix flags are "Y"/"N"; JSON producers may send booleans or 1/0.
    if isinstance(value, str):
        return value.strip().upper() in ("Y", "1", "TRUE")
    if isinstance(value, bool | int):
        return bool(value)
    return False


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    """Read a PHP array meant as a list: a JSON list, or a map keyed "0", "1", ..."""
    if isinstance(value, list | tuple):
        return list(value)
    if isinstance(value, Mapping):
        if value and all(isinstance(k, str) and _list_key(k) for k in value):
            return [value[k] for k in sorted(value, key=int)]
        return [value] if value else []
    return []


def _list_key(key: str) -> bool:
    # Up to 19 digits: a key int() reads at once (a longer one makes the map no list).
    return len(key) <= 20 and _INT.fullmatch(key) is not None


# ---------------------------------------------------------------------------------------
# Reading a block into a type: each field names the key it reads (``metadata["key"]``) and
# how (``metadata["read"]``); keys no field names go to the type's ``extra``. One pass over
# the block's keys, so reading stays linear in the body.

_Reader = Callable[[Any, str], Any]
_T = TypeVar("_T")


def _key(key: str, read: _Reader | None) -> dict[str, Any]:
    """The metadata of a field read from ``key`` with ``read(value, name)`` (None: by hand)."""
    return {"key": key, "read": read}


def _at(key: str, read: _Reader | None, default: Any = None, **options: Any) -> Any:
    """A field of an immutable value read from ``key`` (a nested object: ``_key``)."""
    return attrs.field(default=default, metadata=_key(key, read), **options)


def _unknown() -> Any:
    """The ``extra`` field: the keys the doc pages do not list, as sent; not in ``==``."""
    return attrs.field(factory=dict, repr=False, eq=False, metadata={"unknown": True})


_Schema = tuple[dict[str, tuple[str, _Reader | None]], str | None]
_SCHEMAS: dict[type, _Schema] = {}


def _schema(cls: type) -> _Schema:
    """The keys ``cls`` reads (key -> field name, reader) and its ``extra`` field."""
    schema = _SCHEMAS.get(cls)
    if schema is None:
        keys: dict[str, tuple[str, _Reader | None]] = {}
        unknown = None
        for field in attrs.fields(cls):
            if "key" in field.metadata:
                keys[field.metadata["key"]] = (field.name, field.metadata["read"])
            elif field.metadata.get("unknown"):
                unknown = field.name
        schema = _SCHEMAS[cls] = (keys, unknown)
    return schema


def _read(cls: type[_T], block: Mapping[str, Any], where: str, **fixed: Any) -> _T:
    """Build ``cls`` from ``block``; ``where`` names the block in errors (``data[PARAMS]``)."""
    keys, unknown = _schema(cls)
    values: dict[str, Any] = {}
    extra: dict[Any, Any] = {}
    for key, value in block.items():
        spec = keys.get(key) if isinstance(key, str) else None
        if spec is None:
            extra[key] = value
        elif spec[1] is not None:
            # The name is built from the schema's key, never from the body's.
            values[spec[0]] = spec[1](value, f"{where}[{key}]" if where else key)
    if unknown is not None:
        values[unknown] = extra
    values.update(fixed)
    make: Callable[..., _T] = cls
    return make(**values)


def _read_int(value: Any, name: str) -> int | None:
    return _opt_int(value, name)


def _read_int0(value: Any, name: str) -> int:
    return _int(value, name)


def _read_text(value: Any, name: str) -> str | None:
    # A text as sent, "" included; None only for a JSON null.
    return None if value is None else _str(value)


def _read_str(value: Any, name: str) -> str:
    return _str(value)


def _read_opt_str(value: Any, name: str) -> str | None:
    return _opt_str(value)


def _read_flag(value: Any, name: str) -> bool:
    return _flag(value)


def _read_opt_flag(value: Any, name: str) -> bool | None:
    return None if value is None else _flag(value)


def _read_texts(value: Any, name: str) -> tuple[str, ...]:
    """A list of texts, or one text alone (the connector pages send either)."""
    if isinstance(value, Mapping | list | tuple):
        return tuple(_str(item) for item in _list(value) if not isinstance(item, Mapping | list))
    return () if value is None or value == "" else (_str(value),)


def _read_ints(value: Any, name: str) -> tuple[int, ...]:
    """The numbers of a list or of a map's values (``{"567": "567"}``); junk is skipped."""
    values = value.values() if isinstance(value, Mapping) else _list(value)
    numbers = (_opt_int(item, f"{name}[]") for item in values)
    return tuple(number for number in numbers if number is not None)


def _block(cls: type[Any], *, optional: bool = False, empty_is_none: bool = False) -> _Reader:
    """Read a nested object; a non-object is an empty one (or ``None`` when optional)."""

    def read(value: Any, name: str) -> Any:
        if not isinstance(value, Mapping) or (empty_is_none and not value):
            return None if optional else _read(cls, {}, name)
        return _read(cls, value, name)

    return read


def _entries(cls: type[Any]) -> _Reader:
    """Read a list of objects (a JSON list or a PHP map keyed "0", "1"...)."""

    def read(value: Any, name: str) -> tuple[Any, ...]:
        # An entry's fields are named from the entry (``chat[id]``), as the pages do.
        return tuple(_read(cls, entry, "") for entry in _list(value) if isinstance(entry, Mapping))

    return read


# ---------------------------------------------------------------------------------------
# The types.


@attrs.frozen(slots=True, kw_only=True)
class EventAuth:
    """The ``auth`` block of an event (EN ``_includes/auth-params-in-events.md``).

    Tokens are present only when a user's action caused the event (robots, workflows and
    agents send none), and ``refresh_token`` only for some events such as
    ``ONAPPINSTALL``; an outgoing webhook's events carry only the addresses, the member
    id and the application token. Every key is kept: the ones below as typed fields, any
    other one in ``extra``.

    Attributes:
        access_token: A token acting as the user whose action caused the event.
        refresh_token: Its refresh token, when sent.
        application_token: The application's token on this portal: compare it with
            :func:`verify_event`.
        expires_in: Seconds the access token lives (3600).
        expires: The Unix time the access token expires, when sent (the connector and
            bot pages show it).
        scope: Comma-separated scopes of the application.
        domain: The portal's host as the event names it.
        server_endpoint: The OAuth server's REST base.
        client_endpoint: The portal's REST base (``https://portal/rest/``): use it, not
            ``domain``, as the portal's address (PROTOCOL.md 6.1).
        member_id: The portal's unique id: the key to store its tokens under.
        user_id: The user the tokens act as, when sent.
        status: The application's plan letter (``F``, ``L``, ``P``...).
        client_id: The application's id, when sent (a bot's block has it).
        extra: Any other key, as sent (not shown by ``repr``: it may hold a token).
    """

    access_token: str | None = _at("access_token", _read_opt_str, repr=False)
    refresh_token: str | None = _at("refresh_token", _read_opt_str, repr=False)
    application_token: str | None = _at("application_token", _read_opt_str, repr=False)
    expires_in: int | None = _at("expires_in", _read_int)
    expires: int | None = _at("expires", _read_int)
    scope: str | None = _at("scope", _read_opt_str)
    domain: str | None = _at("domain", _read_opt_str)
    server_endpoint: str | None = _at("server_endpoint", _read_opt_str)
    client_endpoint: str | None = _at("client_endpoint", _read_opt_str)
    member_id: str | None = _at("member_id", _read_opt_str)
    user_id: int | None = _at("user_id", _read_int)
    status: str | None = _at("status", _read_opt_str)
    client_id: str | None = _at("client_id", _read_opt_str)
    extra: Mapping[str, Any] = _unknown()

    @classmethod
    def from_mapping(cls, auth: Mapping[str, Any]) -> EventAuth:
        """Read an ``auth`` block as decoded from the body (strings or JSON values)."""
        return _read(cls, auth, "auth")

    @property
    def has_tokens(self) -> bool:
        """Whether an access and a refresh token (and the portal's address) came along."""
        return bool(self.access_token and self.refresh_token and self.client_endpoint)

    def tokens(self, *, now: float | None = None) -> OAuthTokens | None:
        """Return the token pair of this block, or ``None`` when it has none.

        The pair carries the block's ``user_id``, and expires at ``expires`` when the
        block has it, else ``expires_in`` seconds after ``now``.

        Args:
            now: The Unix time the block was received (the current time by default).

        Raises:
            EventError: The block has tokens but ``client_endpoint`` is not a URL.
        """
        if not self.has_tokens:
            return None
        body: dict[str, Any] = {
            "access_token": self.access_token,
            "refresh_token": self.refresh_token,
            "client_endpoint": self.client_endpoint,
            "member_id": self.member_id,
            "scope": self.scope,
            "server_endpoint": self.server_endpoint,
            "status": self.status,
        }
        if self.expires is not None and self.expires >= 0:
            body["expires"] = self.expires
        if self.expires_in is not None:
            body["expires_in"] = self.expires_in
        if self.user_id is not None and self.user_id >= 0:
            body["user_id"] = self.user_id
        try:
            return OAuthTokens.from_response(body, now=now)
        except ValueError as exc:
            # OAuthTokens' messages name the field and, for a bad URL, the URL only.
            raise EventError(f"the event's auth block has unusable tokens: {exc}") from None


@attrs.frozen(slots=True, kw_only=True)
class Event:
    """An event as the portal posted it; see the subclasses for the typed ones.

    Attributes:
        name: The event's code, upper-cased (``ONOPENLINEMESSAGEADD``).
        handler_id: The handler's id (``event_handler_id``, or ``eventId`` as the Open
            Lines pages name it), when sent.
        ts: The Unix time the portal queued the event, when sent.
        data: The ``data`` block as decoded from the body. From a form body every value
            is a string and a list is a map keyed ``"0"``, ``"1"``...; the typed
            subclasses read both shapes, and keep the keys they do not know in ``extra``.
        auth: The ``auth`` block, or ``None`` when the body had none.
    """

    name: str
    handler_id: int | None = None
    ts: int | None = None
    data: Mapping[str, Any] = attrs.field(factory=dict, repr=False)
    auth: EventAuth | None = None

    @property
    def member_id(self) -> str | None:
        """The portal's member id from ``auth``, when present."""
        return None if self.auth is None else self.auth.member_id


@attrs.frozen(slots=True, kw_only=True)
class GenericEvent(Event):
    """Any event without a type of its own (``ONCRMDEALADD``...): its raw ``data`` only."""


@attrs.frozen(slots=True, kw_only=True)
class AppInstallEvent(Event):
    """``ONAPPINSTALL``: the portal installed the application (EN ``on-app-install.md``).

    Its ``auth`` block carries the first token pair and the ``application_token`` to
    store for verifying every later event.

    Attributes:
        version: The installed version of the application.
        active: Whether the application is active; ``None`` when the event does not say
            (older portals send neither ``ACTIVE`` nor ``INSTALLED``).
        installed: Whether the installation is finished; ``None`` when not sent.
        language_id: The portal's language (``de``, ``en``...).
        extra: Any other key of ``data``, as sent.
    """

    version: str | None = _at("VERSION", _read_opt_str)
    active: bool | None = _at("ACTIVE", _read_opt_flag)
    installed: bool | None = _at("INSTALLED", _read_opt_flag)
    language_id: str | None = _at("LANGUAGE_ID", _read_opt_str)
    extra: Mapping[str, Any] = _unknown()


@attrs.frozen(slots=True, kw_only=True)
class AppUninstallEvent(Event):
    """``ONAPPUNINSTALL``: the portal removed the application (EN ``on-app-uninstall.md``).

    Its ``auth`` block has no tokens (the application's access is revoked): only the
    addresses, ``member_id`` and ``application_token``. Verify it before forgetting the
    portal.

    Attributes:
        language_id: The portal's language.
        clean: Whether the administrator chose to clear the application's data
            (``CLEAN`` 1 or 0); ``None`` when not sent.
        extra: Any other key of ``data``, as sent.
    """

    language_id: str | None = _at("LANGUAGE_ID", _read_opt_str)
    clean: bool | None = _at("CLEAN", _read_opt_flag)
    extra: Mapping[str, Any] = _unknown()


# -- Open Lines: messages and sessions --------------------------------------------------


@attrs.frozen(slots=True, kw_only=True)
class ConnectorInfo:
    """The connector of an Open Lines item: where the client writes from.

    Attributes:
        connector_id: The connector (``livechat``, ``telegrambot``...).
        line_id: The open line's id.
        chat_id: The chat's id in the external system (a string: external ids need not
            be numbers).
        user_id: The client's id in the external system.
        extra: Any other key, as sent.
    """

    connector_id: str = _at("connector_id", _read_str, "")
    line_id: int = _at("line_id", _read_int0, 0)
    chat_id: str = _at("chat_id", _read_str, "")
    user_id: str = _at("user_id", _read_str, "")
    extra: Mapping[str, Any] = _unknown()

    @property
    def user_code(self) -> str:
        """``connector|line|chat|user``: the dialog's ``USER_CODE`` for ``get_dialog``.

        The newer update and delete events name the connector and the line only: their
        ``user_code`` ends in ``||``, so find their dialog by ``chat.id`` instead.
        """
        return f"{self.connector_id}|{self.line_id}|{self.chat_id}|{self.user_id}"


@attrs.frozen(slots=True, kw_only=True)
class ChatInfo:
    """The Bitrix24 chat of an Open Lines item.

    Attributes:
        id: The chat id: ``get_dialog(chat_id=...)`` finds the dialog by it.
        extra: Any other key, as sent.
    """

    id: int = _at("id", _read_int0, 0)
    extra: Mapping[str, Any] = _unknown()


@attrs.frozen(slots=True, kw_only=True)
class ImInfo:
    """The ``im`` block: where a message is in Bitrix24.

    The connector events and the newer ``ONOPENLINEMESSAGEUPDATE``/``...DELETE`` send it.

    Attributes:
        chat_id: The open line's chat in Bitrix24.
        message_id: The message in Bitrix24.
        extra: Any other key, as sent.
    """

    chat_id: int | None = _at("chat_id", _read_int)
    message_id: int | None = _at("message_id", _read_int)
    extra: Mapping[str, Any] = _unknown()


def _read_ref(value: Any, name: str) -> Any:
    return value or None  # PHP's empty array: left out of a form, [] in JSON


@attrs.frozen(slots=True, kw_only=True)
class MessageInfo:
    """A message of an Open Lines message event.

    Attributes:
        id: The message id.
        date: When it was added, as sent (the documented example sends ``""``: ``None``).
        text: The text.
        files: The files, as sent.
        attach: The attachment, as sent (``None`` when empty).
        system: Whether it is a system message (``system=Y``).
        user_id: The author's id.
        extra: Any other key, as sent.
    """

    id: int = _at("id", _read_int0, 0)
    date: str | None = _at("date", _read_opt_str)
    text: str = _at("text", _read_str, "")
    files: tuple[Any, ...] = _at("files", lambda value, name: tuple(_list(value)), ())
    attach: Any = attrs.field(default=None, metadata=_key("attach", _read_ref))
    system: bool = _at("system", _read_flag, False)
    user_id: int = _at("user_id", _read_int0, 0)
    extra: Mapping[str, Any] = _unknown()


@attrs.frozen(slots=True, kw_only=True)
class SessionInfo:
    """An Open Lines session.

    Attributes:
        id: The session id: ``get_dialog(session_id=...)`` finds the dialog by it.
        closed: Whether the session is closed.
        parent_id: The session this one continues, or 0.
        close_term: Minutes of silence after which the session closes.
        extra: Any other key, as sent.
    """

    id: int = _at("id", _read_int0, 0)
    closed: bool = _at("closed", _read_flag, False)
    parent_id: int = _at("parent_id", _read_int0, 0)
    close_term: int = _at("close_term", _read_int0, 0)
    extra: Mapping[str, Any] = _unknown()


@attrs.frozen(slots=True, kw_only=True)
class UserInfo:
    """A user named by a session event.

    Attributes:
        id: The user's id.
        name: The name, when sent.
        extra: Any other key, as sent.
    """

    id: int = _at("id", _read_int0, 0)
    name: str | None = _at("name", _read_opt_str)
    extra: Mapping[str, Any] = _unknown()


@attrs.frozen(slots=True, kw_only=True)
class LineInfo:
    """An open line named by a session event (the current docs describe a ``line`` key).

    Attributes:
        id: The open line's id.
        name: Its name.
        extra: Any other key, as sent.
    """

    id: int = _at("id", _read_int0, 0)
    name: str | None = _at("name", _read_opt_str)
    extra: Mapping[str, Any] = _unknown()


@attrs.frozen(slots=True, kw_only=True)
class MessageItem:
    """One entry of a message event's ``data[DATA]``.

    Two shapes arrive: each entry with its ``connector`` block (``ONOPENLINEMESSAGEADD``,
    older updates and deletes), or, in newer ``...UPDATE``/``...DELETE`` events, entries
    with an ``im`` block and the connector and line named once, in ``data[CONNECTOR]``
    and ``data[LINE]``: ``connector`` is then built from those (its ``chat_id`` and
    ``user_id`` stay ``""``), and ``chat.id``/``message.id`` fall back to the ``im`` ids.

    Attributes:
        connector: Where the client writes from.
        chat: The Bitrix24 chat.
        message: The message.
        im: The ``im`` block (``chat_id``, ``message_id``), when sent.
        ref: The tracker codes linking the message to CRM, as sent (``None`` when empty).
        extra: Extra information (``EXTRA_URL``), as sent: the entry's ``extra`` key.
        raw: The whole entry as decoded (for keys this SDK does not know); not compared
            by ``==``, which looks at the typed fields only.
    """

    connector: ConnectorInfo = attrs.field(
        factory=ConnectorInfo, metadata=_key("connector", _block(ConnectorInfo))
    )
    chat: ChatInfo = attrs.field(factory=ChatInfo, metadata=_key("chat", _block(ChatInfo)))
    message: MessageInfo = attrs.field(
        factory=MessageInfo, metadata=_key("message", _block(MessageInfo))
    )
    im: ImInfo | None = attrs.field(
        default=None, metadata=_key("im", _block(ImInfo, optional=True))
    )
    ref: Any = attrs.field(default=None, metadata=_key("ref", _read_ref))
    extra: Mapping[str, Any] = attrs.field(
        factory=dict, repr=False, metadata=_key("extra", lambda value, name: _mapping(value))
    )
    raw: Mapping[str, Any] = attrs.field(factory=dict, repr=False, eq=False)


@attrs.frozen(slots=True, kw_only=True)
class SessionItem:
    """One entry of a session event's ``data[DATA]`` (and of a connector dialog event's).

    Attributes:
        connector: Where the client writes from.
        session: The session (``id`` 0 when the portal sent none).
        chat: The Bitrix24 chat.
        user: The user, when sent.
        line: The open line, when sent.
        extra: Any other key of the entry, as sent.
        raw: The whole entry as decoded; not compared by ``==``.
    """

    connector: ConnectorInfo = attrs.field(
        factory=ConnectorInfo, metadata=_key("connector", _block(ConnectorInfo))
    )
    session: SessionInfo = attrs.field(
        factory=SessionInfo, metadata=_key("session", _block(SessionInfo))
    )
    chat: ChatInfo = attrs.field(factory=ChatInfo, metadata=_key("chat", _block(ChatInfo)))
    user: UserInfo | None = attrs.field(
        default=None, metadata=_key("user", _block(UserInfo, optional=True))
    )
    line: LineInfo | None = attrs.field(
        default=None, metadata=_key("line", _block(LineInfo, optional=True))
    )
    extra: Mapping[str, Any] = _unknown()
    raw: Mapping[str, Any] = attrs.field(factory=dict, repr=False, eq=False)


@attrs.frozen(slots=True, kw_only=True)
class OpenLineMessageEvent(Event):
    """``ONOPENLINEMESSAGEADD``, ``...UPDATE`` or ``...DELETE``: a message in an open line.

    EN ``api-reference/imopenlines/openlines/events/on-open-line-message-add.md``.

    Attributes:
        connector_id: ``data[CONNECTOR]``, sent by newer updates and deletes.
        line_id: ``data[LINE]``, sent with it.
        items: The entries of ``data[DATA]`` (the docs show one); see
            :class:`MessageItem` for their two shapes.
        extra: Any other key of ``data``, as sent.
    """

    connector_id: str | None = _at("CONNECTOR", _read_text)
    line_id: int | None = _at("LINE", _read_int)
    items: tuple[MessageItem, ...] = _at("DATA", None, ())
    extra: Mapping[str, Any] = _unknown()


@attrs.frozen(slots=True, kw_only=True)
class SessionEvent(Event):
    """``ONSESSIONSTART`` or ``ONSESSIONFINISH`` (EN ``on-session-start.md``).

    Attributes:
        items: The entries of ``data[DATA]`` (the docs show one).
        extra: Any other key of ``data``, as sent.
    """

    items: tuple[SessionItem, ...] = _at("DATA", None, ())
    extra: Mapping[str, Any] = _unknown()


# -- Open Lines connectors (imconnector) -------------------------------------------------


@attrs.frozen(slots=True, kw_only=True)
class ConnectorMessage:
    """The ``message`` block of a connector message event.

    Attributes:
        ids: The message's ids in the external system: ``ONIMCONNECTORMESSAGEUPDATE``
            sends a list, ``...DELETE`` one id (read as a list of one), ``...ADD`` none.
        user_id: The Bitrix24 user who wrote it (``...ADD``).
        text: The text, formatted for the external channel (``[b]Name:[/b] [br]...``).
        extra: Any other key, as sent.
    """

    ids: tuple[str, ...] = _at("id", _read_texts, ())
    user_id: int | None = _at("user_id", _read_int)
    text: str | None = _at("text", _read_text)
    extra: Mapping[str, Any] = _unknown()


@attrs.frozen(slots=True, kw_only=True)
class ExternalChat:
    """The ``chat`` block of a connector message event: the chat in the external system.

    Attributes:
        id: The chat's id in the external system (``channel-123``).
        extra: Any other key, as sent.
    """

    id: str | None = _at("id", _read_text)
    extra: Mapping[str, Any] = _unknown()


@attrs.frozen(slots=True, kw_only=True)
class ConnectorMessageItem:
    """One entry of a connector message event's ``data[MESSAGES]``.

    Attributes:
        im: Where the message is in Bitrix24 (``chat_id``, ``message_id``): the ids to
            confirm with ``imconnector.send.status.delivery``.
        message: The message for the external system.
        chat: The chat in the external system.
        extra: Any other key of the entry, as sent.
    """

    im: ImInfo = attrs.field(factory=ImInfo, metadata=_key("im", _block(ImInfo)))
    message: ConnectorMessage = attrs.field(
        factory=ConnectorMessage, metadata=_key("message", _block(ConnectorMessage))
    )
    chat: ExternalChat = attrs.field(
        factory=ExternalChat, metadata=_key("chat", _block(ExternalChat))
    )
    extra: Mapping[str, Any] = _unknown()


@attrs.frozen(slots=True, kw_only=True)
class ConnectorMessageEvent(Event):
    """``ONIMCONNECTORMESSAGEADD``, ``...UPDATE`` or ``...DELETE``: relay to the channel.

    An operator wrote, edited or deleted a message in an open line served by the
    application's own connector; the application relays it to the external channel
    (EN ``api-reference/imopenlines/imconnector/events/on-im-connector-message-add.md``).

    Attributes:
        connector_id: The connector (``data[CONNECTOR]``).
        line_id: The open line (``data[LINE]``).
        messages: The entries of ``data[MESSAGES]``.
        extra: Any other key of ``data``, as sent.
    """

    connector_id: str | None = _at("CONNECTOR", _read_text)
    line_id: int | None = _at("LINE", _read_int)
    messages: tuple[ConnectorMessageItem, ...] = _at(
        "MESSAGES", _entries(ConnectorMessageItem), ()
    )
    extra: Mapping[str, Any] = _unknown()


@attrs.frozen(slots=True, kw_only=True)
class ConnectorDialogEvent(Event):
    """``ONIMCONNECTORDIALOGSTART`` or ``ONIMCONNECTORDIALOGFINISH``: a dialog in a channel.

    EN ``api-reference/imopenlines/imconnector/events/on-im-connector-dialog-start.md``.

    Attributes:
        connector_id: The connector (``data[CONNECTOR]``).
        line_id: The open line (``data[LINE]``, a string on the page).
        items: The entries of ``data[DATA]``, shaped like a session event's.
        extra: Any other key of ``data``, as sent.
    """

    connector_id: str | None = _at("CONNECTOR", _read_text)
    line_id: int | None = _at("LINE", _read_int)
    items: tuple[SessionItem, ...] = _at("DATA", None, ())
    extra: Mapping[str, Any] = _unknown()


@attrs.frozen(slots=True, kw_only=True)
class ConnectorStatusDeleteEvent(Event):
    """``ONIMCONNECTORSTATUSDELETE``: the connector was switched off on an open line.

    EN ``api-reference/imopenlines/imconnector/events/on-im-connector-status-delete.md``.

    Attributes:
        connector_id: The connector (``data[connector]``).
        line_id: The open line (``data[line]``).
        extra: Any other key of ``data``, as sent.
    """

    connector_id: str | None = _at("connector", _read_text)
    line_id: int | None = _at("line", _read_int)
    extra: Mapping[str, Any] = _unknown()


@attrs.frozen(slots=True, kw_only=True)
class ConnectorLineDeleteEvent(Event):
    """``ONIMCONNECTORLINEDELETE``: an open line was deleted.

    Its ``data`` is the line's id alone (``data=107``), not an object: ``data`` is then
    empty and the id is ``line_id``
    (EN ``api-reference/imopenlines/imconnector/events/on-im-connector-line-delete.md``).

    Attributes:
        line_id: The deleted open line; ``None`` when ``data`` held no number.
        extra: The keys of ``data`` when a portal sends an object instead, as sent.
    """

    line_id: int | None = None
    extra: Mapping[str, Any] = _unknown()


# -- Chat bots (imbot) ------------------------------------------------------------------


@attrs.frozen(slots=True, kw_only=True)
class EventBot(EventAuth):
    """One entry of a bot event's ``data[BOT]``: a bot the event is for, with its tokens.

    The entry is an ``auth`` block acting as the bot (so :meth:`tokens` gives the bot's
    pair, ``user_id`` is the bot's user) plus the bot's id and code; ``auth`` is the
    same block again in ``auth`` format (``data[BOT][567][AUTH]``).

    Attributes:
        bot_id: The bot's id (``BOT_ID``; the entry's key when it lacks one).
        bot_code: The bot's code (``BOT_CODE``).
        auth: The ``AUTH`` copy, when sent.
    """

    bot_id: int | None = _at("BOT_ID", _read_int)
    bot_code: str | None = _at("BOT_CODE", _read_text)
    auth: EventAuth | None = attrs.field(
        default=None, metadata=_key("AUTH", _block(EventAuth, optional=True))
    )


def _read_bots(value: Any, name: str) -> tuple[EventBot, ...]:
    # A map keyed by the bot's id; in JSON a list is read too.
    pairs = value.items() if isinstance(value, Mapping) else enumerate(_list(value))
    bots = []
    for key, entry in pairs:
        if not isinstance(entry, Mapping):
            continue
        bot = _read(EventBot, entry, "BOT")
        if bot.bot_id is None and isinstance(key, str):
            bot = attrs.evolve(bot, bot_id=_opt_int(key, "BOT"))
        bots.append(bot)
    return tuple(bots)


@attrs.frozen(slots=True, kw_only=True)
class BotUser:
    """The ``USER`` block of a bot event: the message's author, or who added the bot.

    Attributes:
        id: The user's id.
        name: The full name.
        first_name: The first name.
        last_name: The last name.
        work_position: The job title.
        gender: ``M`` or ``F``.
        is_bot: Whether the user is a bot.
        is_connector: Whether the user is a connector's client (an open line's client).
        is_network: Whether the user is from the Bitrix24 network.
        is_extranet: Whether the user is an extranet user.
        extra: Any other key, as sent.
    """

    id: int | None = _at("ID", _read_int)
    name: str | None = _at("NAME", _read_text)
    first_name: str | None = _at("FIRST_NAME", _read_text)
    last_name: str | None = _at("LAST_NAME", _read_text)
    work_position: str | None = _at("WORK_POSITION", _read_text)
    gender: str | None = _at("GENDER", _read_text)
    is_bot: bool | None = _at("IS_BOT", _read_opt_flag)
    is_connector: bool | None = _at("IS_CONNECTOR", _read_opt_flag)
    is_network: bool | None = _at("IS_NETWORK", _read_opt_flag)
    is_extranet: bool | None = _at("IS_EXTRANET", _read_opt_flag)
    extra: Mapping[str, Any] = _unknown()


@attrs.frozen(slots=True, kw_only=True)
class BotMessageParams:
    """The ``PARAMS`` block of ``ONIMBOTMESSAGEADD``, ``...UPDATE`` and ``...DELETE``.

    Every key the three pages list; a key not sent is ``None`` (the group-chat keys are
    absent in a personal chat, the update and delete events send fewer). ``Y``/``N``
    flags are booleans.

    Attributes:
        id: The message's id (``ID``: update and delete).
        message_id: The message's id (``MESSAGE_ID``).
        message: The text (a deleted message: the notice that replaced it).
        message_original: The text with the bot's ``[USER=...]`` mention (group chats).
        message_type: ``P`` personal, ``C`` group, ``L`` open line, ``O``, ``S``...
        template_id: The message's template id.
        dialog_id: Where to answer: ``imbot.message.add(DIALOG_ID=...)`` (``27`` or
            ``chat1157``).
        chat_id: The chat's id (absent in a personal chat on some pages).
        to_chat_id: The chat's id (``TO_CHAT_ID``).
        from_user_id: The sender.
        author_id: The author.
        to_user_id: The recipient (0: every member).
        system: Whether it is a system message.
        chat_type: The chat's type (same letters as ``message_type``).
        chat_title: The chat's title.
        chat_author_id: The chat's owner.
        chat_avatar: The chat's avatar id (``"0"``: none).
        chat_color: The chat's color.
        chat_entity_type: What the chat is linked to (``LINES``, ``THREAD``...).
        chat_entity_id: The linked object's id.
        chat_entity_data_1: The linked object's data, field 1.
        chat_entity_data_2: Field 2.
        chat_entity_data_3: Field 3.
        chat_extranet: Whether it is an extranet chat.
        chat_prev_message_id: The chat's previous message.
        chat_can_post: Who may post in the chat.
        chat_user_count: The chat's member count.
        mentioned_list: The users and bots mentioned (``MENTIONED_LIST``).
        rid: The user's relation record with the chat.
        is_manager: Whether the sender manages the chat.
        push: Whether a push notification is sent.
        push_important: Whether the push is important.
        recent_skip_author: Whether the author is left out of "Recent".
        convert: Whether formatting is converted.
        skip_command: Whether commands are not processed.
        skip_counter_increments: Whether unread counters are left alone.
        silent_connector: Whether the connector is not notified.
        skip_connector: Whether the message is not sent to connectors.
        important_connector: Whether it is important for the connector.
        no_session_ol: Whether no open line session is created.
        fake_relation: A system value of the user's relation with the chat.
        skip_url_index: Whether links are not indexed.
        command_context: Where a command was typed (``TEXTAREA``).
        platform_context: The sender's platform (``web``, ``mobile``...).
        language: The portal's language.
        extra: Any other key, as sent.
    """

    id: int | None = _at("ID", _read_int)
    message_id: int | None = _at("MESSAGE_ID", _read_int)
    message: str | None = _at("MESSAGE", _read_text)
    message_original: str | None = _at("MESSAGE_ORIGINAL", _read_text)
    message_type: str | None = _at("MESSAGE_TYPE", _read_text)
    template_id: str | None = _at("TEMPLATE_ID", _read_text)
    dialog_id: str | None = _at("DIALOG_ID", _read_text)
    chat_id: int | None = _at("CHAT_ID", _read_int)
    to_chat_id: int | None = _at("TO_CHAT_ID", _read_int)
    from_user_id: int | None = _at("FROM_USER_ID", _read_int)
    author_id: int | None = _at("AUTHOR_ID", _read_int)
    to_user_id: int | None = _at("TO_USER_ID", _read_int)
    system: bool | None = _at("SYSTEM", _read_opt_flag)
    chat_type: str | None = _at("CHAT_TYPE", _read_text)
    chat_title: str | None = _at("CHAT_TITLE", _read_text)
    chat_author_id: int | None = _at("CHAT_AUTHOR_ID", _read_int)
    chat_avatar: str | None = _at("CHAT_AVATAR", _read_text)
    chat_color: str | None = _at("CHAT_COLOR", _read_text)
    chat_entity_type: str | None = _at("CHAT_ENTITY_TYPE", _read_text)
    chat_entity_id: str | None = _at("CHAT_ENTITY_ID", _read_text)
    chat_entity_data_1: str | None = _at("CHAT_ENTITY_DATA_1", _read_text)
    chat_entity_data_2: str | None = _at("CHAT_ENTITY_DATA_2", _read_text)
    chat_entity_data_3: str | None = _at("CHAT_ENTITY_DATA_3", _read_text)
    chat_extranet: bool | None = _at("CHAT_EXTRANET", _read_opt_flag)
    chat_prev_message_id: int | None = _at("CHAT_PREV_MESSAGE_ID", _read_int)
    chat_can_post: str | None = _at("CHAT_CAN_POST", _read_text)
    chat_user_count: int | None = _at("CHAT_USER_COUNT", _read_int)
    mentioned_list: tuple[int, ...] = _at("MENTIONED_LIST", _read_ints, ())
    rid: int | None = _at("RID", _read_int)
    is_manager: bool | None = _at("IS_MANAGER", _read_opt_flag)
    push: bool | None = _at("PUSH", _read_opt_flag)
    push_important: bool | None = _at("PUSH_IMPORTANT", _read_opt_flag)
    recent_skip_author: bool | None = _at("RECENT_SKIP_AUTHOR", _read_opt_flag)
    convert: bool | None = _at("CONVERT", _read_opt_flag)
    skip_command: bool | None = _at("SKIP_COMMAND", _read_opt_flag)
    skip_counter_increments: bool | None = _at("SKIP_COUNTER_INCREMENTS", _read_opt_flag)
    silent_connector: bool | None = _at("SILENT_CONNECTOR", _read_opt_flag)
    skip_connector: bool | None = _at("SKIP_CONNECTOR", _read_opt_flag)
    important_connector: bool | None = _at("IMPORTANT_CONNECTOR", _read_opt_flag)
    no_session_ol: bool | None = _at("NO_SESSION_OL", _read_opt_flag)
    fake_relation: int | None = _at("FAKE_RELATION", _read_int)
    skip_url_index: bool | None = _at("SKIP_URL_INDEX", _read_opt_flag)
    command_context: str | None = _at("COMMAND_CONTEXT", _read_text)
    platform_context: str | None = _at("PLATFORM_CONTEXT", _read_text)
    language: str | None = _at("LANGUAGE", _read_text)
    extra: Mapping[str, Any] = _unknown()


@attrs.frozen(slots=True, kw_only=True)
class BotJoinParams:
    """The ``PARAMS`` block of ``ONIMBOTJOINCHAT``.

    Attributes:
        chat_type: The chat's type (``P`` personal, ``C`` group, ``L`` open line...).
        message_type: The message type (same letters).
        bot_id: The bot that was added.
        user_id: The user who added it.
        to_user_id: The user of a personal chat.
        from_user_id: The bot, in a personal chat.
        chat_id: The group chat (group chats only).
        chat_author_id: The group chat's owner.
        chat_entity_type: What the chat is linked to.
        chat_entity_id: The linked object's id.
        access_history: Whether the bot may read the chat's history (``1``/``0``).
        silent_join: Whether the bot joined without a system message (Copilot chats).
        dialog_id: Where to answer (``27`` or ``chat1157``).
        language: The portal's language.
        extra: Any other key, as sent.
    """

    chat_type: str | None = _at("CHAT_TYPE", _read_text)
    message_type: str | None = _at("MESSAGE_TYPE", _read_text)
    bot_id: int | None = _at("BOT_ID", _read_int)
    user_id: int | None = _at("USER_ID", _read_int)
    to_user_id: int | None = _at("TO_USER_ID", _read_int)
    from_user_id: int | None = _at("FROM_USER_ID", _read_int)
    chat_id: int | None = _at("CHAT_ID", _read_int)
    chat_author_id: int | None = _at("CHAT_AUTHOR_ID", _read_int)
    chat_entity_type: str | None = _at("CHAT_ENTITY_TYPE", _read_text)
    chat_entity_id: str | None = _at("CHAT_ENTITY_ID", _read_text)
    access_history: bool | None = _at("ACCESS_HISTORY", _read_opt_flag)
    silent_join: bool | None = _at("SILENT_JOIN", _read_opt_flag)
    dialog_id: str | None = _at("DIALOG_ID", _read_text)
    language: str | None = _at("LANGUAGE", _read_text)
    extra: Mapping[str, Any] = _unknown()


@attrs.frozen(slots=True, kw_only=True)
class BotMessageEvent(Event):
    """``ONIMBOTMESSAGEADD``, ``...UPDATE`` or ``...DELETE``: a message to a chat bot.

    EN ``api-reference/chat-bots/outdated/messages/events/on-imbot-message-add.md``.

    Attributes:
        bots: The bots the message is for (``data[BOT]``), each with its own tokens.
        params: The message (``data[PARAMS]``).
        user: Its author (``data[USER]``); ``None`` when not sent or empty.
        extra: Any other key of ``data``, as sent.
    """

    bots: tuple[EventBot, ...] = _at("BOT", _read_bots, ())
    params: BotMessageParams = attrs.field(
        factory=BotMessageParams, metadata=_key("PARAMS", _block(BotMessageParams))
    )
    user: BotUser | None = attrs.field(
        default=None, metadata=_key("USER", _block(BotUser, optional=True, empty_is_none=True))
    )
    extra: Mapping[str, Any] = _unknown()


@attrs.frozen(slots=True, kw_only=True)
class BotJoinChatEvent(Event):
    """``ONIMBOTJOINCHAT``: a chat bot was added to a chat.

    EN ``api-reference/chat-bots/outdated/chats/events/on-imbot-join-chat.md``.

    Attributes:
        bots: The bots the event is for (``data[BOT]``), each with its own tokens.
        params: The chat and who added the bot (``data[PARAMS]``).
        user: The user who added it (``data[USER]``); ``None`` when not sent or empty.
        extra: Any other key of ``data``, as sent.
    """

    bots: tuple[EventBot, ...] = _at("BOT", _read_bots, ())
    params: BotJoinParams = attrs.field(
        factory=BotJoinParams, metadata=_key("PARAMS", _block(BotJoinParams))
    )
    user: BotUser | None = attrs.field(
        default=None, metadata=_key("USER", _block(BotUser, optional=True, empty_is_none=True))
    )
    extra: Mapping[str, Any] = _unknown()


@attrs.frozen(slots=True, kw_only=True)
class BotDeleteEvent(Event):
    """``ONIMBOTDELETE``: a chat bot was deleted (EN ``.../outdated/events/on-imbot-delete.md``).

    Attributes:
        bot_id: The deleted bot (``data[BOT_ID]``).
        bot_code: Its code (``data[BOT_CODE]``).
        extra: Any other key of ``data``, as sent.
    """

    bot_id: int | None = _at("BOT_ID", _read_int)
    bot_code: str | None = _at("BOT_CODE", _read_text)
    extra: Mapping[str, Any] = _unknown()


def _message_item(
    entry: Mapping[str, Any], connector: str | None, line: int | None
) -> MessageItem:
    item = _read(MessageItem, entry, "", raw=entry)
    changes: dict[str, Any] = {}
    block = entry.get("connector")
    if not (isinstance(block, Mapping) and block) and (connector or line):
        # The newer update and delete shape: the connector and line are named once.
        changes["connector"] = ConnectorInfo(connector_id=connector or "", line_id=line or 0)
    if item.im is not None:
        if not item.chat.id and item.im.chat_id:
            changes["chat"] = attrs.evolve(item.chat, id=item.im.chat_id)
        if not item.message.id and item.im.message_id:
            changes["message"] = attrs.evolve(item.message, id=item.im.message_id)
    return attrs.evolve(item, **changes) if changes else item


def _data_entries(data: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [entry for entry in _list(data.get("DATA")) if isinstance(entry, Mapping)]


def _session_items(data: Mapping[str, Any]) -> tuple[SessionItem, ...]:
    return tuple(_read(SessionItem, entry, "", raw=entry) for entry in _data_entries(data))


# ---------------------------------------------------------------------------------------
# Parsing and verifying.


def _check_tree(root: Any, limits: EventLimits) -> None:
    """Refuse decoded values nested too deep, too many, or with a lone surrogate.

    For a JSON body and a mapping (a form body is bounded as it is parsed). Iterative,
    one visit per value: the structure's size bounds the work, and no recursion.
    """
    fields = 0
    stack: list[tuple[Any, int]] = [(root, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, Mapping):
            children: Any = node.items()
        elif isinstance(node, list | tuple):
            children = enumerate(node)
        else:
            fields += 1
            if fields > limits.max_fields:
                raise EventError(
                    f"the event body has more than {limits.max_fields:,} values (max_fields)"
                )
            if isinstance(node, str):
                _check_text(node)
            continue
        # The top-level object is depth 0, its values 1: a form's data[a][b] is depth 2.
        if depth > limits.max_depth:
            raise EventError(
                f"the event body nests deeper than {limits.max_depth} levels (max_depth)"
            )
        for key, value in children:
            if isinstance(key, str):
                _check_text(key)
            stack.append((value, depth + 1))


def _check_text(text: str) -> None:
    # A lone surrogate (JSON's "\ud800") is no Unicode text: it cannot be encoded, compared
    # as bytes or sent back to the portal.
    if not text.isascii() and _SURROGATE.search(text):
        raise EventError("the event body has a lone surrogate (U+D800-U+DFFF) in a text")


def _too_large(limits: EventLimits, size: int | None = None) -> EventError:
    actual = "" if size is None else f" ({size:,} bytes)"
    return EventError(
        f"the event body is larger than {limits.max_bytes:,} bytes{actual} (max_bytes)"
    )


def _decode(
    body: bytes | str | Mapping[str, Any], content_type: str | None, limits: EventLimits
) -> Any:
    if isinstance(body, Mapping):
        if any(isinstance(key, str) and "[" in key for key in body):
            # A flat form as a web framework hands it over (``auth[member_id]`` keys):
            # nest it. ``items()`` of a multidict yields every pair, repeated names too.
            body = parse_form_pairs(
                body.items(), max_fields=limits.max_fields, max_depth=limits.max_depth
            )
        _check_tree(body, limits)
        return body
    if isinstance(body, bytes | bytearray | memoryview):
        size = body.nbytes if isinstance(body, memoryview) else len(body)
        if size > limits.max_bytes:
            raise _too_large(limits, size)  # before copying or decoding any of it
        try:
            text = bytes(body).decode("utf-8")
        except UnicodeDecodeError:
            raise EventError("the event body is not UTF-8 text") from None
    elif isinstance(body, str):
        text = body
        if len(text) > limits.max_bytes:  # each character is at least one byte
            raise _too_large(limits)
        if not text.isascii():
            _check_text(text)
            size = len(text.encode("utf-8"))
            if size > limits.max_bytes:
                raise _too_large(limits, size)
    else:
        raise TypeError(f"body must be bytes, str or a mapping, got {type(body).__name__}")
    if not text.strip():
        raise EventError("the event body is empty")
    kind = (content_type or "").split(";", 1)[0].strip().lower()
    if kind.endswith("json") or (not kind and text.lstrip().startswith("{")):
        try:
            decoded = json.loads(text)
        except RecursionError:
            # Nested deeper than the interpreter's recursion limit: far past max_depth.
            raise EventError(
                f"the event body nests deeper than {limits.max_depth} levels (max_depth)"
            ) from None
        except ValueError as exc:
            # The position only: the text would quote the body, and so its tokens.
            position = getattr(exc, "pos", None)
            raise EventError(
                "the event body is not valid JSON"
                + (f" (error at character {position})" if position is not None else "")
            ) from None
        _check_tree(decoded, limits)
        return decoded
    if kind and kind != _FORM:
        raise EventError(f"unsupported content type {kind!r} for an event: Bitrix24 posts {_FORM}")
    return parse_form(text, max_fields=limits.max_fields, max_depth=limits.max_depth)


def parse_event(
    body: bytes | str | Mapping[str, Any],
    content_type: str | None = None,
    *,
    limits: EventLimits | None = None,
) -> Event:
    """Parse an event POST body into a typed event.

    It takes time linear in the body's size, and nothing past ``limits`` is read.

    Args:
        body: The raw body (form-encoded as Bitrix24 sends it, or JSON), or a mapping:
            either the decoded event (``{"event": ..., "data": {...}}``) or a flat form
            with bracketed names as a web framework hands it over.
        content_type: The request's ``Content-Type``; without it, a body starting with
            ``{`` is read as JSON and anything else as a form.
        limits: The caps on the body (``EventLimits()`` by default: 1 MiB, 10,000
            fields, 64 levels).

    Returns:
        The event's type for the events listed in the module's docstring, else a
        :class:`GenericEvent`. It is not verified yet: call :func:`verify_event`.

    Raises:
        EventError: The body is empty, not UTF-8, not valid JSON, of another content
            type, or has no ``event`` name or a malformed ``data``/``auth`` block; it is
            past one of ``limits`` (the message names it); a text has a lone surrogate;
            a number (``ts``, an id) is past PHP's 64-bit integers. The message never
            quotes the body.
        TypeError: ``body`` or ``limits`` is of another type.
    """
    if limits is None:
        limits = _DEFAULT_LIMITS
    elif not isinstance(limits, EventLimits):
        raise TypeError(f"limits must be an EventLimits, got {type(limits).__name__}")
    decoded = _decode(body, content_type, limits)
    if not isinstance(decoded, Mapping):
        raise EventError(
            f"the event body must be an object with an 'event' field, "
            f"got a JSON {type(decoded).__name__}"
        )
    raw_name = decoded.get("event")
    if not isinstance(raw_name, str) or not raw_name.strip():
        raise EventError("the body has no 'event' name: it is not a Bitrix24 event")
    name = raw_name.strip().upper()
    data = decoded.get("data", {})
    line_deleted: int | None = None
    if (
        name == CONNECTOR_LINE_DELETE
        and isinstance(data, str | int | float)
        and not isinstance(data, bool)
    ):
        # Documented: the deleted line's id alone is the data (``data=107``).
        line_deleted, data = _opt_int(data, "data"), {}
    if isinstance(data, list | tuple):
        # An empty PHP array is [] in JSON; a non-empty list is kept by position.
        data = {str(i): value for i, value in enumerate(data)}
    if not isinstance(data, Mapping):
        raise EventError(f"the event's 'data' must be an object, got {type(data).__name__}")
    auth_block = decoded.get("auth")
    if auth_block is not None and not isinstance(auth_block, Mapping):
        raise EventError(f"the event's 'auth' must be an object, got {type(auth_block).__name__}")
    handler_field = "event_handler_id"
    raw_handler = decoded.get(handler_field)
    if raw_handler is None:
        handler_field = "eventId"
        raw_handler = decoded.get(handler_field)
    common: dict[str, Any] = {
        "name": name,
        "handler_id": _opt_int(raw_handler, handler_field),
        "ts": _opt_int(decoded.get("ts"), "ts"),
        "data": data,
        "auth": None if auth_block is None else EventAuth.from_mapping(auth_block),
    }
    if name in MESSAGE_EVENTS:
        connector = _read_text(data.get("CONNECTOR"), "data[CONNECTOR]")
        line = _read_int(data.get("LINE"), "data[LINE]")
        items = tuple(_message_item(e, connector, line) for e in _data_entries(data))
        return _read(OpenLineMessageEvent, data, "data", **common, items=items)
    if name in SESSION_EVENTS:
        return _read(SessionEvent, data, "data", **common, items=_session_items(data))
    if name in CONNECTOR_DIALOG_EVENTS:
        return _read(ConnectorDialogEvent, data, "data", **common, items=_session_items(data))
    if name == CONNECTOR_LINE_DELETE:
        return _read(ConnectorLineDeleteEvent, data, "data", **common, line_id=line_deleted)
    kind = _TYPED.get(name)
    if kind is not None:
        return _read(kind, data, "data", **common)
    return GenericEvent(**common)


# The events whose ``data`` a type reads whole (the others above need a step more).
_TYPED: Final[Mapping[str, type[Event]]] = {
    APP_INSTALL: AppInstallEvent,
    APP_UNINSTALL: AppUninstallEvent,
    CONNECTOR_STATUS_DELETE: ConnectorStatusDeleteEvent,
    BOT_JOIN_CHAT: BotJoinChatEvent,
    BOT_DELETE: BotDeleteEvent,
    **dict.fromkeys(CONNECTOR_MESSAGE_EVENTS, ConnectorMessageEvent),
    **dict.fromkeys(BOT_MESSAGE_EVENTS, BotMessageEvent),
}


def _printable(name: str) -> str:
    # The name comes from an unverified body: keep error texts (and so log lines) to the
    # characters of real event names, and short.
    cleaned = re.sub(r"[^A-Z0-9_.]", "?", name)
    return cleaned if len(cleaned) <= 64 else cleaned[:61] + "..."


def verify_event(event: Event, application_token: str | None) -> Event:
    """Check that ``event`` comes from the portal: its ``application_token`` is ours.

    The comparison takes the same time wherever the tokens differ
    (:func:`hmac.compare_digest`), so a forger cannot guess the token byte by byte.

    Args:
        event: A parsed event.
        application_token: The token stored from this portal's ``ONAPPINSTALL`` event
            (or shown in an outgoing webhook's settings).

    Returns:
        ``event``, for chaining.

    Raises:
        EventVerificationError: No token is stored to compare with, the event carries
            none, or they differ. The message names neither token.
    """
    if not application_token:
        raise EventVerificationError(
            "no application_token is stored for this portal: the event cannot be verified"
        )
    received = None if event.auth is None else event.auth.application_token
    name = _printable(event.name)
    if not received:
        raise EventVerificationError(f"the {name} event carries no auth[application_token]")
    # "surrogatepass": a token is compared as its code points, whatever they are; an
    # unencodable one is not an error (it cannot equal a real token anyway).
    if not hmac.compare_digest(
        received.encode("utf-8", "surrogatepass"),
        application_token.encode("utf-8", "surrogatepass"),
    ):
        raise EventVerificationError(
            f"the {name} event's auth[application_token] does not match the stored one: "
            "rejected as possibly forged"
        )
    return event
