"""The wire format, as pure functions: parameters out, answers and events in. No I/O.

**Parameters.** The portal reads a single call's body and a ``batch`` command's query
string into the same PHP array, so :func:`to_wire` turns a call's parameters into exactly
that array, once, and both encoders serve it: :func:`json_body` for a single call and
:func:`batch_command` (PHP's ``http_build_query``) inside a ``batch``. A value therefore
means the same alone and in a batch (PROTOCOL.md 1 and 5):

- ``True``/``False`` are ``"1"``/``"0"`` (what ``http_build_query`` writes);
- an ``Enum`` member is its value (an ``int``-mixin member ``Chat.SUPPORT = 5`` is ``"5"``);
- numbers and strings are their text; value types (``UserCode``) their wire text;
- ``None``, and empty lists and mappings, are left out (PHP sends nothing for them);
- mappings and lists nest (``FILTER[>ID]=5``, ``ID[0]=1``).

**Answers.** :func:`decode_envelope` turns a :class:`RawResponse` into the envelope dict
or raises the exception the code table (:func:`error_class_for`) gives for an error body;
:func:`parse_batch_result` splits a ``batch`` answer into one entry per command.

**Events.** :func:`parse_form` reads a PHP form body (``data[FIELDS][ID]=5``) as PHP's
``parse_str`` does. It is the SDK's own: the fake portal keeps a separate decoder on
purpose (a test double that shares the client's code would hide its bugs).

Every text that comes from the network goes through the caller's ``redact`` before it
reaches an exception.
"""

from __future__ import annotations

import enum
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final, TypeAlias
from urllib.parse import quote_plus, unquote_plus

import attrs

from bitrix_openlines._convert import structure_time
from bitrix_openlines.errors import (
    AccessError,
    ApiError,
    AuthError,
    BatchError,
    DecodeError,
    InvalidArgumentError,
    MethodNotFoundError,
    OpenLinesError,
    OperationTimeLimitError,
    OverloadError,
    PortalUnavailableError,
    RateLimitError,
    ServerError,
    TokenExpiredError,
)
from bitrix_openlines.types.common import TimeInfo

__all__ = [
    "MAX_BATCH_COMMANDS",
    "CommandResult",
    "RawResponse",
    "WireParams",
    "WireValue",
    "batch_command",
    "decode_envelope",
    "decode_json",
    "error_class_for",
    "error_from_payload",
    "http_build_query",
    "json_body",
    "parse_batch_result",
    "parse_form",
    "parse_form_pairs",
    "reset_at_of",
    "to_wire",
]

WireValue: TypeAlias = "str | list[WireValue] | dict[str, WireValue]"
WireParams: TypeAlias = "dict[str, WireValue]"
Redact = Callable[[str], str]

MAX_BATCH_COMMANDS: Final = 50
"""The portal runs at most 50 commands per ``batch`` (PROTOCOL.md section 5)."""


def _keep(text: str) -> str:
    return text


# -- parameters ------------------------------------------------------------------------


def to_wire(params: Mapping[str, Any]) -> WireParams:
    """Return ``params`` as the PHP array the portal will read (see the module docs).

    Raises:
        TypeError: ``params`` is not a mapping.
        ValueError: A value cannot be sent (a string that is not valid Unicode, a number
            that is not finite); the message names the parameter.
    """
    if not isinstance(params, Mapping):
        raise TypeError(f"params must be a mapping, got {type(params).__name__}")
    wire: WireParams = {}
    for key, value in params.items():
        encoded = _value(str(key), value)
        if encoded is not None:
            wire[str(key)] = encoded
    return wire


def _value(name: str, value: Any) -> WireValue | None:
    if value is None:
        return None
    if isinstance(value, enum.Enum):
        return _value(name, value.value)
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return int.__repr__(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"parameter {name} must be a finite number, got {value!r}")
        return float.__repr__(value)
    if isinstance(value, str):
        return _text(name, str.__str__(value))
    if isinstance(value, Mapping):
        nested = {
            str(k): v
            for k, v in ((k, _value(f"{name}[{k}]", v)) for k, v in value.items())
            if v is not None
        }
        return nested or None
    if isinstance(value, list | tuple):
        items = [
            v for v in (_value(f"{name}[{i}]", v) for i, v in enumerate(value)) if v is not None
        ]
        return items or None
    if isinstance(value, bytes | bytearray):
        raise TypeError(f"parameter {name} must be text, not bytes")
    # Value types (UserCode, ...) print their wire form.
    return _text(name, str(value))


def _text(name: str, text: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(
            f"parameter {name} cannot be sent: it is not valid Unicode text (a lone surrogate)"
        ) from None
    return text


def json_body(wire: WireParams) -> bytes:
    """Encode a single call's parameters as its JSON body."""
    return json.dumps(wire, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _pairs(prefix: str, value: WireValue) -> Iterable[tuple[str, str]]:
    if isinstance(value, str):
        yield prefix, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _pairs(f"{prefix}[{key}]", item)
    else:
        for index, item in enumerate(value):
            yield from _pairs(f"{prefix}[{index}]", item)


def http_build_query(wire: WireParams) -> str:
    """Encode parameters as PHP's ``http_build_query`` does (``a[b][0]=x``, ``+`` for space).

    The portal decodes a batch command with PHP's ``parse_str``, so nested values use
    bracket keys and every reserved character is percent-encoded (PROTOCOL.md 1 and 5).
    """
    return "&".join(
        f"{quote_plus(name, safe='[]')}={quote_plus(text, safe='')}"
        for key, value in wire.items()
        for name, text in _pairs(key, value)
    )


def batch_command(method: str, wire: WireParams) -> str:
    """Return one ``cmd`` entry of a ``batch``: ``method?query`` (sent as is in the JSON)."""
    query = http_build_query(wire)
    return f"{method}?{query}" if query else method


# -- answers ---------------------------------------------------------------------------


@attrs.frozen(slots=True)
class RawResponse:
    """An HTTP answer before any decoding: the status, the body and its content type.

    Its repr leaves the body out: it may be a token pair, or echo the request's secrets.
    """

    status: int
    body: bytes = attrs.field(repr=False)
    content_type: str = ""


_EXCERPT = 120
_SLACK = 256  # more than any secret is long


def _excerpt(raw: RawResponse, redact: Redact) -> str:
    # An error page may echo the request (the webhook path, the token): redact before
    # cutting, so that no secret is left half-shown at the cut either.
    text = raw.body[: _EXCERPT + _SLACK].decode("utf-8", errors="replace")
    text = redact(" ".join(text.split()))
    return text[:_EXCERPT] + (
        "..." if len(text) > _EXCERPT or len(raw.body) > _EXCERPT + _SLACK else ""
    )


def _undecodable(what: str, raw: RawResponse, method: str | None, redact: Redact) -> DecodeError:
    excerpt = _excerpt(raw, redact)
    return DecodeError(f"{what}: {excerpt!r}", status=raw.status, method=method, excerpt=excerpt)


def decode_json(raw: RawResponse, method: str | None, redact: Redact = _keep) -> dict[str, Any]:
    """Parse the body as a JSON object, or raise :class:`DecodeError` with an excerpt."""
    if not raw.body.strip():
        raise DecodeError(
            "the portal sent an empty body", status=raw.status, method=method, excerpt=""
        )
    try:
        value = json.loads(raw.body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        # RecursionError: a body nested deeper than the JSON parser goes (b"[" * 10**5).
        what = "an HTML page" if raw.body.lstrip()[:1] == b"<" else "a body that is not JSON"
        content_type = raw.content_type or "none"
        raise _undecodable(
            f"the portal sent {what} (Content-Type {content_type})", raw, method, redact
        ) from None
    if not isinstance(value, dict):
        kind = type(value).__name__
        del value  # it may echo a secret: no frame of the traceback keeps it
        raise _undecodable(f"the portal sent JSON {kind}, not an object", raw, method, redact)
    return value


def reset_at_of(envelope: Mapping[str, Any]) -> float | None:
    """Return ``time.operating_reset_at`` of an envelope, when it is a finite number."""
    block = envelope.get("time")
    if isinstance(block, dict):
        value = block.get("operating_reset_at")
        if isinstance(value, int | float) and not isinstance(value, bool):
            try:
                number = float(value)
            except OverflowError:  # an int with hundreds of digits
                return None
            return number if math.isfinite(number) else None
    return None


def decode_envelope(
    raw: RawResponse, method: str | None, redact: Redact = _keep
) -> dict[str, Any]:
    """Return the decoded envelope of a successful answer.

    Raises:
        ApiError: The body is an error body (the subclass comes from the code table), or
            the status is not 2xx.
        DecodeError: The body is not a JSON object, or is a 2xx without ``result``.
    """
    if raw.status >= 400 and not raw.body.strip():
        raise error_from_payload(
            {"error_description": f"HTTP {raw.status} with an empty body"},
            status=raw.status,
            method=method,
        )
    envelope = decode_json(raw, method, redact)
    if "error" in envelope:
        error = error_from_payload(
            envelope,
            status=raw.status,
            method=method,
            reset_at=reset_at_of(envelope),
            redact=redact,
        )
        # The body may echo the request's secrets: no frame of the traceback (error
        # trackers record their variables) keeps it.
        del envelope
        raise error
    if raw.status >= 300:
        raise error_from_payload(
            {"error_description": f"HTTP {raw.status} without an error code"},
            status=raw.status,
            method=method,
        )
    if "result" not in envelope:
        del envelope  # as above
        raise _undecodable("the answer has neither 'result' nor 'error'", raw, method, redact)
    return envelope


# -- the error table ---------------------------------------------------------------------

# The one table: Bitrix24 error code (upper-cased) -> exception class. PROTOCOL.md section 3.2
# plus the method-specific codes of imopenlines.dialog.get (section 7.2) and the OAuth
# server's codes (section 6.1).
_CODE_TABLE: Final[dict[str, type[ApiError]]] = {
    # Rate and load limits (PROTOCOL 3.2, 4.1, 4.2).
    "QUERY_LIMIT_EXCEEDED": RateLimitError,
    "OPERATION_TIME_LIMIT": OperationTimeLimitError,
    "OVERLOAD_LIMIT": OverloadError,
    # Server faults.
    "INTERNAL_SERVER_ERROR": ServerError,
    "ERROR_UNEXPECTED_ANSWER": ServerError,
    "CONNECTION_ERROR": ServerError,
    # Arguments.
    "ERROR_CORE": InvalidArgumentError,
    "ERROR_ARGUMENT": InvalidArgumentError,
    "INVALID_REQUEST": InvalidArgumentError,
    "WRONG_ENCODING": InvalidArgumentError,
    "DIALOG_ID_EMPTY": InvalidArgumentError,
    "INVALID_ARG_VALUE": InvalidArgumentError,
    # Method lookup and batch.
    "ERROR_METHOD_NOT_FOUND": MethodNotFoundError,
    "ERROR_MANIFEST_IS_NOT_AVAILABLE": MethodNotFoundError,
    "ERROR_BATCH_LENGTH_EXCEEDED": BatchError,
    "ERROR_BATCH_METHOD_NOT_ALLOWED": BatchError,
    # Authentication (PROTOCOL 3.2 and the OAuth server's codes, 6.1).
    "NO_AUTH_FOUND": AuthError,
    "INVALID_CREDENTIALS": AuthError,
    "AUTHORIZATION_ERROR": AuthError,
    "APPLICATION_NOT_FOUND": AuthError,
    "PAYMENT_REQUIRED": AuthError,
    "WRONG_CLIENT": AuthError,
    "INVALID_GRANT": AuthError,
    "INVALID_CLIENT": AuthError,
    "NOT_INSTALLED": AuthError,
    "METHOD_CONFIRM_WAITING": AuthError,
    "EXPIRED_TOKEN": TokenExpiredError,
    "INVALID_TOKEN": TokenExpiredError,
    # Access.
    "ACCESS_ERROR": AccessError,
    "ACCESS_DENIED": AccessError,
    "INSUFFICIENT_SCOPE": AccessError,
    "INVALID_SCOPE": AccessError,
    "USER_ACCESS_ERROR": AccessError,
    "METHOD_CONFIRM_DENIED": AccessError,
    "ALLOWED_ONLY_INTRANET_USER": AccessError,
    # The portal cannot serve REST at all.
    "PORTAL_DELETED": PortalUnavailableError,
    "WRONG_LICENSE": PortalUnavailableError,
    "IM_NOT_INSTALLED": PortalUnavailableError,
}


def error_class_for(code: str | None, status: int | None) -> type[ApiError]:
    """Return the exception class for a Bitrix24 error code, falling back on the status.

    Args:
        code: The ``error`` string of the body; compared without regard to case.
        status: The HTTP status, used when the code is missing or unknown.
    """
    if code:
        known = _CODE_TABLE.get(code.upper())
        if known is not None:
            return known
    if status is None:
        return ApiError
    if status == 401:
        return AuthError
    if status == 403:
        return AccessError
    if status == 404:
        return MethodNotFoundError
    if status == 429:
        return OperationTimeLimitError
    if status >= 500:
        return ServerError
    return ApiError


def error_from_payload(
    payload: Mapping[str, Any],
    *,
    status: int | None,
    method: str | None,
    reset_at: float | None = None,
    redact: Redact = _keep,
) -> ApiError:
    """Build the exception for an error body ``{"error": ..., "error_description": ...}``.

    Args:
        payload: The decoded error body (or one ``result_error`` entry of a batch).
        status: The HTTP status of the answer (``200`` for a command inside a batch).
        method: The method that was called.
        reset_at: For ``OPERATION_TIME_LIMIT``, when the method is available again.
        redact: Hides secrets in the texts the server sent (it may echo the request): the
            code, the description, and every string of the other keys (``extra``).
    """
    code = redact(str(payload["error"])) if payload.get("error") is not None else None
    description = (
        redact(str(payload["error_description"]))
        if payload.get("error_description") is not None
        else ""
    )
    extra: dict[str, Any] = {}
    for key in payload:
        if key not in ("error", "error_description"):
            _put_redacted(extra, key, payload[key], redact, 0)
    cls = error_class_for(code, status)
    if issubclass(cls, OperationTimeLimitError):
        return cls(
            description,
            code=code,
            status=status,
            method=method,
            extra=extra,
            reset_at=reset_at,
        )
    return cls(description, code=code, status=status, method=method, extra=extra)


# How deep the other keys of an error body are kept in ``extra``; deeper values, and
# values that are not JSON, are dropped (they could not be redacted).
_EXTRA_DEPTH: Final = 4


def _put_redacted(
    target: dict[str, Any], key: Any, value: Any, redact: Redact, depth: int
) -> None:
    """Store ``value`` under ``key`` in ``target`` with every string redacted, or drop it."""
    kept = _redacted(value, redact, depth)
    if kept is not _DROP:
        target[redact(str(key))] = kept


_DROP: Final = object()


def _redacted(value: Any, redact: Redact, depth: int) -> Any:
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return redact(value)
    if depth >= _EXTRA_DEPTH:
        return _DROP
    if isinstance(value, Mapping):
        nested: dict[str, Any] = {}
        for key in value:
            _put_redacted(nested, key, value[key], redact, depth + 1)
        return nested
    if isinstance(value, list | tuple):
        items = (_redacted(item, redact, depth + 1) for item in value)
        return [item for item in items if item is not _DROP]
    return _DROP


# -- batch answers -----------------------------------------------------------------------


@attrs.frozen(slots=True)
class CommandResult:
    """What a ``batch`` answer says of one command: a raw result or an error, or nothing.

    Attributes:
        found: Whether the answer mentions the command at all.
        result: The command's raw ``result``.
        error: The command's error, from ``result_error``.
        time: The command's ``time`` block, from ``result_time``.
    """

    found: bool
    result: Any = None
    error: OpenLinesError | None = None
    time: TimeInfo | None = None


def _part(value: Any) -> Mapping[str, Any]:
    # Empty parts arrive as [] (a PHP empty array); list-style keys 0..n as a JSON list.
    if isinstance(value, Mapping):
        return value
    if isinstance(value, list):
        return {str(index): item for index, item in enumerate(value)}
    return {}


def parse_batch_result(
    result: Any,
    methods: Mapping[str, str],
    *,
    reset_at: float | None = None,
    redact: Redact = _keep,
) -> dict[str, CommandResult]:
    """Split a ``batch`` call's ``result`` into one entry per command key.

    Args:
        result: The outer answer's ``result``.
        methods: Command key -> the method it called (for the errors' ``method``).
        reset_at: The outer ``time.operating_reset_at``, for ``OPERATION_TIME_LIMIT``.
        redact: Hides secrets in the error texts the server sent.

    Raises:
        DecodeError: ``result`` is not a batch result at all.
    """
    if not isinstance(result, Mapping):
        raise DecodeError(
            f"a batch answer's result must be an object, got {type(result).__name__}",
            status=200,
            method="batch",
        )
    results = _part(result.get("result"))
    errors = _part(result.get("result_error"))
    times = _part(result.get("result_time"))
    parsed: dict[str, CommandResult] = {}
    for key, method in methods.items():
        time_info = structure_time(times.get(key))
        if key in errors:
            payload = errors[key]
            if not isinstance(payload, Mapping):
                payload = {"error": "ERROR_UNEXPECTED_ANSWER", "error_description": str(payload)}
            error = error_from_payload(
                payload, status=200, method=method, reset_at=reset_at, redact=redact
            )
            parsed[key] = CommandResult(found=True, error=error, time=time_info)
        elif key in results:
            parsed[key] = CommandResult(found=True, result=results[key], time=time_info)
        else:
            parsed[key] = CommandResult(found=False)
    return parsed


# -- PHP form bodies (events) ---------------------------------------------------------------

# PHP's max_input_nesting_level: a deeper variable is dropped, as PHP drops it.
_MAX_DEPTH: Final = 64


_INT: Final = re.compile(r"-?[0-9]+")


def _put(table: dict[str, Any], name: str, value: str) -> None:
    """Store ``name=value`` with PHP bracket nesting (``a[b][]=x``)."""
    name = name.split("\0", 1)[0].lstrip(" ")
    bracket = name.find("[")
    base = name if bracket == -1 else name[:bracket]
    # PHP turns dots and spaces of the base name into underscores.
    base = base.replace(".", "_").replace(" ", "_")
    indices: list[str | None] = []
    if bracket != -1:
        rest = name[bracket:]
        while rest.startswith("["):
            close = rest.find("]")
            if close == -1:
                if not indices:
                    # An unmatched first '[' is part of a plain name ("a[b" -> "a_b").
                    base += "_" + rest[1:].replace("[", "_").replace(".", "_").replace(" ", "_")
                break
            index = rest[1:close]
            indices.append(None if index == "" else index)
            rest = rest[close + 1 :]
    if not base or len(indices) > _MAX_DEPTH:
        return
    node = table
    key = base
    for part in indices:
        child = node.get(key)
        if not isinstance(child, dict):
            child = {}
            node[key] = child
        node = child
        key = _next_index(node) if part is None else part
    node[key] = value


def _next_index(array: Mapping[str, Any]) -> str:
    # "a[]=x" appends: one more than the largest integer key, as PHP does.
    ints = [int(k) for k in array if _INT.fullmatch(k)]
    return str(max(ints) + 1) if ints else "0"


def parse_form(text: str) -> dict[str, Any]:
    """Decode a PHP form body (``a[b][]=x&c=1``) into nested dicts, as ``parse_str`` does."""
    table: dict[str, Any] = {}
    for piece in text.split("&"):
        if not piece:
            continue
        name, _, value = piece.partition("=")
        _put(
            table,
            unquote_plus(name, encoding="utf-8", errors="replace"),
            unquote_plus(value, encoding="utf-8", errors="replace"),
        )
    return table


def parse_form_pairs(pairs: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    """Nest already-decoded form pairs (``("auth[member_id]", "x")``) as :func:`parse_form`."""
    table: dict[str, Any] = {}
    for name, value in pairs:
        _put(table, str(name), value if isinstance(value, str) else str(value))
    return table
