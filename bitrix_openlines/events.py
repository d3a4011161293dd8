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

The Open Lines events get their own types (:class:`OpenLineMessageEvent`,
:class:`SessionEvent`), the install event too (:class:`AppInstallEvent`); any other
event is a :class:`GenericEvent` with its raw ``data``. Parsing is defensive: numbers as
strings, missing keys (default values) and unknown keys (kept in ``raw``) never fail;
only a body that is not an event at all raises :class:`EventError`.

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
from collections.abc import Mapping
from typing import Any, Final

import attrs

from bitrix_openlines.auth import OAuthTokens
from bitrix_openlines.errors import EventError, EventVerificationError
from bitrix_openlines.wire import parse_form, parse_form_pairs

__all__ = [
    "AppInstallEvent",
    "ChatInfo",
    "ConnectorInfo",
    "Event",
    "EventAuth",
    "EventError",
    "EventLimits",
    "EventVerificationError",
    "GenericEvent",
    "LineInfo",
    "MessageInfo",
    "MessageItem",
    "OpenLineMessageEvent",
    "SessionEvent",
    "SessionInfo",
    "SessionItem",
    "UserInfo",
    "APP_INSTALL",
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
# The types.


@attrs.frozen(slots=True, kw_only=True)
class EventAuth:
    """The ``auth`` block of an event (EN ``_includes/auth-params-in-events.md``).

    Tokens are present only when a user's action caused the event (robots, workflows and
    agents send none), and ``refresh_token`` only for some events such as
    ``ONAPPINSTALL``; an outgoing webhook's events carry only the addresses, the member
    id and the application token.

    Attributes:
        access_token: A token acting as the user whose action caused the event.
        refresh_token: Its refresh token, when sent.
        application_token: The application's token on this portal: compare it with
            :func:`verify_event`.
        expires_in: Seconds the access token lives (3600).
        scope: Comma-separated scopes of the application.
        domain: The portal's host as the event names it.
        server_endpoint: The OAuth server's REST base.
        client_endpoint: The portal's REST base (``https://portal/rest/``): use it, not
            ``domain``, as the portal's address (PROTOCOL.md 6.1).
        member_id: The portal's unique id: the key to store its tokens under.
        status: The application's plan letter (``F``, ``L``, ``P``...).
    """

    access_token: str | None = attrs.field(default=None, repr=False)
    refresh_token: str | None = attrs.field(default=None, repr=False)
    application_token: str | None = attrs.field(default=None, repr=False)
    expires_in: int | None = None
    scope: str | None = None
    domain: str | None = None
    server_endpoint: str | None = None
    client_endpoint: str | None = None
    member_id: str | None = None
    status: str | None = None

    @classmethod
    def from_mapping(cls, auth: Mapping[str, Any]) -> EventAuth:
        """Read an ``auth`` block as decoded from the body (strings or JSON values)."""
        return cls(
            access_token=_opt_str(auth.get("access_token")),
            refresh_token=_opt_str(auth.get("refresh_token")),
            application_token=_opt_str(auth.get("application_token")),
            expires_in=_opt_int(auth.get("expires_in"), "auth[expires_in]"),
            scope=_opt_str(auth.get("scope")),
            domain=_opt_str(auth.get("domain")),
            server_endpoint=_opt_str(auth.get("server_endpoint")),
            client_endpoint=_opt_str(auth.get("client_endpoint")),
            member_id=_opt_str(auth.get("member_id")),
            status=_opt_str(auth.get("status")),
        )

    @property
    def has_tokens(self) -> bool:
        """Whether an access and a refresh token (and the portal's address) came along."""
        return bool(self.access_token and self.refresh_token and self.client_endpoint)

    def tokens(self, *, now: float | None = None) -> OAuthTokens | None:
        """Return the token pair of this block, or ``None`` when it has none.

        Args:
            now: The Unix time the block was received (the current time by default);
                the access token expires ``expires_in`` seconds later.

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
        if self.expires_in is not None:
            body["expires_in"] = self.expires_in
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
            subclasses read both shapes.
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
    """Any event without a type of its own (``ONCRMDEALADD``, ``ONAPPUNINSTALL``...)."""


@attrs.frozen(slots=True, kw_only=True)
class AppInstallEvent(Event):
    """``ONAPPINSTALL``: the portal installed the application (EN ``on-app-install.md``).

    Its ``auth`` block carries the first token pair and the ``application_token`` to
    store for verifying every later event.

    Attributes:
        version: The installed version of the application.
        active: Whether the application is active.
        installed: Whether the installation is finished.
        language_id: The portal's language (``de``, ``en``...).
    """

    version: str | None = None
    active: bool = False
    installed: bool = False
    language_id: str | None = None


@attrs.frozen(slots=True, kw_only=True)
class ConnectorInfo:
    """The connector of an Open Lines item: where the client writes from.

    Attributes:
        connector_id: The connector (``livechat``, ``telegrambot``...).
        line_id: The open line's id.
        chat_id: The chat's id in the external system (a string: external ids need not
            be numbers).
        user_id: The client's id in the external system.
    """

    connector_id: str = ""
    line_id: int = 0
    chat_id: str = ""
    user_id: str = ""

    @property
    def user_code(self) -> str:
        """``connector|line|chat|user``: the dialog's ``USER_CODE`` for ``get_dialog``."""
        return f"{self.connector_id}|{self.line_id}|{self.chat_id}|{self.user_id}"


@attrs.frozen(slots=True, kw_only=True)
class ChatInfo:
    """The Bitrix24 chat of an Open Lines item.

    Attributes:
        id: The chat id: ``get_dialog(chat_id=...)`` finds the dialog by it.
    """

    id: int = 0


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
    """

    id: int = 0
    date: str | None = None
    text: str = ""
    files: tuple[Any, ...] = ()
    attach: Any = None
    system: bool = False
    user_id: int = 0


@attrs.frozen(slots=True, kw_only=True)
class SessionInfo:
    """An Open Lines session.

    Attributes:
        id: The session id: ``get_dialog(session_id=...)`` finds the dialog by it.
        closed: Whether the session is closed.
        parent_id: The session this one continues, or 0.
        close_term: Minutes of silence after which the session closes.
    """

    id: int = 0
    closed: bool = False
    parent_id: int = 0
    close_term: int = 0


@attrs.frozen(slots=True, kw_only=True)
class UserInfo:
    """A user named by a session event.

    Attributes:
        id: The user's id.
        name: The name, when sent.
    """

    id: int = 0
    name: str | None = None


@attrs.frozen(slots=True, kw_only=True)
class LineInfo:
    """An open line named by a session event (the current docs describe a ``line`` key).

    Attributes:
        id: The open line's id.
        name: Its name.
    """

    id: int = 0
    name: str | None = None


@attrs.frozen(slots=True, kw_only=True)
class MessageItem:
    """One entry of a message event's ``data[DATA]``.

    Attributes:
        connector: Where the client writes from.
        chat: The Bitrix24 chat.
        message: The message.
        ref: The tracker codes linking the message to CRM, as sent (``None`` when empty).
        extra: Extra information (``EXTRA_URL``), as sent.
        raw: The whole entry as decoded (for keys this SDK does not know); not compared
            by ``==``, which looks at the typed fields only.
    """

    connector: ConnectorInfo
    chat: ChatInfo
    message: MessageInfo
    ref: Any = None
    extra: Mapping[str, Any] = attrs.field(factory=dict, repr=False)
    raw: Mapping[str, Any] = attrs.field(factory=dict, repr=False, eq=False)


@attrs.frozen(slots=True, kw_only=True)
class SessionItem:
    """One entry of a session event's ``data[DATA]``.

    Attributes:
        connector: Where the client writes from.
        session: The session (``id`` 0 when the portal sent none).
        chat: The Bitrix24 chat.
        user: The user, when sent.
        line: The open line, when sent.
        raw: The whole entry as decoded; not compared by ``==``.
    """

    connector: ConnectorInfo
    session: SessionInfo
    chat: ChatInfo
    user: UserInfo | None = None
    line: LineInfo | None = None
    raw: Mapping[str, Any] = attrs.field(factory=dict, repr=False, eq=False)


@attrs.frozen(slots=True, kw_only=True)
class OpenLineMessageEvent(Event):
    """``ONOPENLINEMESSAGEADD``, ``...UPDATE`` or ``...DELETE``: a message in an open line.

    EN ``api-reference/imopenlines/openlines/events/on-open-line-message-add.md``.

    Attributes:
        items: The entries of ``data[DATA]`` (the docs show one).
    """

    items: tuple[MessageItem, ...] = ()


@attrs.frozen(slots=True, kw_only=True)
class SessionEvent(Event):
    """``ONSESSIONSTART`` or ``ONSESSIONFINISH`` (EN ``on-session-start.md``).

    Attributes:
        items: The entries of ``data[DATA]`` (the docs show one).
    """

    items: tuple[SessionItem, ...] = ()


def _connector(value: Any) -> ConnectorInfo:
    block = _mapping(value)
    return ConnectorInfo(
        connector_id=_str(block.get("connector_id")),
        line_id=_int(block.get("line_id"), "connector[line_id]"),
        chat_id=_str(block.get("chat_id")),
        user_id=_str(block.get("user_id")),
    )


def _chat(value: Any) -> ChatInfo:
    return ChatInfo(id=_int(_mapping(value).get("id"), "chat[id]"))


def _message_item(entry: Mapping[str, Any]) -> MessageItem:
    message = _mapping(entry.get("message"))
    return MessageItem(
        connector=_connector(entry.get("connector")),
        chat=_chat(entry.get("chat")),
        message=MessageInfo(
            id=_int(message.get("id"), "message[id]"),
            date=_opt_str(message.get("date")),
            text=_str(message.get("text")),
            files=tuple(_list(message.get("files"))),
            attach=message.get("attach") or None,
            system=_flag(message.get("system")),
            user_id=_int(message.get("user_id"), "message[user_id]"),
        ),
        # An empty PHP array is left out of a form body and is [] in JSON: both are None.
        ref=entry.get("ref") or None,
        extra=_mapping(entry.get("extra")),
        raw=entry,
    )


def _session_item(entry: Mapping[str, Any]) -> SessionItem:
    session = _mapping(entry.get("session"))
    user = entry.get("user")
    line = entry.get("line")
    return SessionItem(
        connector=_connector(entry.get("connector")),
        session=SessionInfo(
            id=_int(session.get("id"), "session[id]"),
            closed=_flag(session.get("closed")),
            parent_id=_int(session.get("parent_id"), "session[parent_id]"),
            close_term=_int(session.get("close_term"), "session[close_term]"),
        ),
        chat=_chat(entry.get("chat")),
        user=(
            UserInfo(id=_int(user.get("id"), "user[id]"), name=_opt_str(user.get("name")))
            if isinstance(user, Mapping)
            else None
        ),
        line=(
            LineInfo(id=_int(line.get("id"), "line[id]"), name=_opt_str(line.get("name")))
            if isinstance(line, Mapping)
            else None
        ),
        raw=entry,
    )


def _entries(data: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [entry for entry in _list(data.get("DATA")) if isinstance(entry, Mapping)]


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
        An :class:`OpenLineMessageEvent`, :class:`SessionEvent`,
        :class:`AppInstallEvent` or :class:`GenericEvent`. It is not verified yet: call
        :func:`verify_event`.

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
        return OpenLineMessageEvent(
            **common, items=tuple(_message_item(e) for e in _entries(data))
        )
    if name in SESSION_EVENTS:
        return SessionEvent(**common, items=tuple(_session_item(e) for e in _entries(data)))
    if name == APP_INSTALL:
        return AppInstallEvent(
            **common,
            version=_opt_str(data.get("VERSION")),
            active=_flag(data.get("ACTIVE")),
            installed=_flag(data.get("INSTALLED")),
            language_id=_opt_str(data.get("LANGUAGE_ID")),
        )
    return GenericEvent(**common)


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
