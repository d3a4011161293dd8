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
:func:`parse_batch_result` splits a ``batch`` answer into one entry per command
(:func:`split_batch_result` and :func:`take_command`, one command at a time).

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

from bitrix_openlines.errors import (
    AccessError,
    ApiError,
    AuthError,
    BatchError,
    DecodeError,
    EventError,
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
    "BatchParts",
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
    "split_batch_result",
    "take_command",
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
    if type(params) is not dict and not isinstance(params, Mapping):
        raise TypeError(f"params must be a mapping, got {type(params).__name__}")
    wire: WireParams = {}
    for key, value in params.items():
        encoded = _value(str(key), value)
        if encoded is not None:
            wire[str(key)] = encoded
    return wire


def _value(name: str, value: Any) -> WireValue | None:
    # The common kinds first, by exact type (a subclass takes the general checks below).
    kind = type(value)
    if kind is int:
        return int.__repr__(value)
    if kind is str:
        return _text(name, value)
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
    if text.isascii():  # ASCII text is valid Unicode: no copy to check it
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(
            f"parameter {name} cannot be sent: it is not valid Unicode text (a lone surrogate)"
        ) from None
    return text


# One encoder for every body (``json.dumps`` with options builds a new one per call):
# compact, UTF-8 as it is. Wire values are str, list and dict only, built afresh by
# to_wire, so no cycle can reach it: no circular-reference bookkeeping.
_ENCODER: Final = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), check_circular=False)


def _c_encoder() -> Callable[[WireParams, int], list[str]] | None:
    """The C encoder ``_ENCODER`` would build for each body, built once; ``None`` without C."""
    try:
        from _json import encode_basestring, make_encoder
    except ImportError:  # no C accelerator (PyPy, a stripped build)
        return None
    return make_encoder(
        None, _ENCODER.default, encode_basestring, None, ":", ",", False, False, True
    )


_encode: Callable[[WireParams, int], list[str]] | None = _c_encoder()


def json_body(wire: WireParams) -> bytes:
    """Encode a single call's parameters as its JSON body (compact, UTF-8 as it is).

    The same bytes as ``json.dumps(wire, ensure_ascii=False, separators=(",", ":"))``.
    """
    if _encode is None:
        return _ENCODER.encode(wire).encode("utf-8")
    return "".join(_encode(wire, 0)).encode("utf-8")


def _pairs(prefix: str, value: WireValue) -> Iterable[tuple[str, str]]:
    if isinstance(value, str):
        yield prefix, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _pairs(f"{prefix}[{key}]", item)
    else:
        for index, item in enumerate(value):
            yield from _pairs(f"{prefix}[{index}]", item)


# Characters quote_plus leaves as they are (with safe=""): a text made of these only is
# its own encoding, the common case of ids and codes (checked before quoting).
_UNRESERVED: Final = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~"
)


def _quoted(text: str) -> str:
    if _UNRESERVED.issuperset(text):
        return text
    return quote_plus(text, safe="")


def _quoted_name(name: str) -> str:
    if _UNRESERVED.issuperset(name):
        return name
    return quote_plus(name, safe="[]")


def http_build_query(wire: WireParams) -> str:
    """Encode parameters as PHP's ``http_build_query`` does (``a[b][0]=x``, ``+`` for space).

    The portal decodes a batch command with PHP's ``parse_str``, so nested values use
    bracket keys and every reserved character is percent-encoded (PROTOCOL.md 1 and 5).
    """
    if len(wire) == 1:  # one plain value, the common command ("CHAT_ID=13")
        for key, value in wire.items():
            if type(value) is str:
                return f"{_quoted_name(key)}={_quoted(value)}"
    return "&".join(
        f"{_quoted_name(key)}={_quoted(value)}"
        if type(value) is str
        else "&".join(f"{_quoted_name(name)}={_quoted(text)}" for name, text in _pairs(key, value))
        for key, value in wire.items()
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


def _blank(body: bytes) -> bool:
    # not body.strip(), without copying the body.
    return not body or body.isspace()


_DECODER: Final = json.JSONDecoder()
_scan: Final[Callable[[str, int], tuple[Any, int]]] = _DECODER.scan_once  # type: ignore[attr-defined]


def _loads(raw: RawResponse) -> Any:
    """``json.loads(raw.body)``: the same value, the same errors; quicker for the usual body.

    The usual body is an ASCII object (Bitrix24 escapes other characters), so its text is
    as long as its bytes: the object that starts at 0 is scanned at once, without the
    encoding detection and the whitespace checks around it. A ``NUL`` second byte would
    make it UTF-16 to ``json.loads``. Anything else, or text after the object, takes the
    long way. No variable holds the body or its text (an error page may echo a secret).
    """
    if raw.body[:1] == b"{" and raw.body[1:2] != b"\x00" and raw.body.isascii():
        try:
            value, end = _scan(raw.body.decode("ascii"), 0)
        except StopIteration:
            # No value where one must start (b'{"a":'): json.loads words the error.
            return json.loads(raw.body)
        if end == len(raw.body):
            return value
    return json.loads(raw.body)


def decode_json(raw: RawResponse, method: str | None, redact: Redact = _keep) -> dict[str, Any]:
    """Parse the body as a JSON object, or raise :class:`DecodeError` with an excerpt."""
    if _blank(raw.body):
        raise DecodeError(
            "the portal sent an empty body", status=raw.status, method=method, excerpt=""
        )
    try:
        value = _loads(raw)
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
    if raw.status >= 400 and _blank(raw.body):
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

# The one table: Bitrix24 error code (upper-cased) -> exception class; the retry verdict of
# each class is RetryPolicy.reason's (retry.py). Where each code comes from, in the
# official docs, bitrix24/b24restdocs at 5988ed13 (2026-08-21), else PROTOCOL.md:
#   [sys]    _includes/system-errors.md: the table of error-codes.md, any method
#   [oauth]  settings/oauth/error-codes.md: the OAuth server's codes
#   [limits] limits.md
#   [v3]     api-reference/rest-v3.md (ERROR_METHOD_NOT_FOUND, 404)
#   [page]   a method's own page: WRONG_AUTH_TYPE (403) on api-reference/imopenlines/
#            imconnector/*.md; ERROR_ARGUMENT and its "argument" on api-reference/entity/
#            entities/*.md; ACCESS_ERROR and IM_NOT_INSTALLED on imopenlines-dialog-get.md
#   [srv]    PROTOCOL.md 3.2: the server's code and the official SDKs, not the docs
# tests/unit/test_errors.py (DOCS_CODES) checks each one with its class and verdict.
_CODE_TABLE: Final[dict[str, type[ApiError]]] = {
    # Rate and load limits (PROTOCOL 3.2, 4.1, 4.2).
    "QUERY_LIMIT_EXCEEDED": RateLimitError,  # [sys] [limits] 503
    "OPERATION_TIME_LIMIT": OperationTimeLimitError,  # [limits] 429
    "OVERLOAD_LIMIT": OverloadError,  # [sys] 503, a manual block
    # Server faults.
    "INTERNAL_SERVER_ERROR": ServerError,  # [sys] 500
    "ERROR_UNEXPECTED_ANSWER": ServerError,  # [sys] 500
    "CONNECTION_ERROR": ServerError,  # [srv] the portal could not reach its OAuth server
    # Arguments.
    "ERROR_CORE": InvalidArgumentError,  # [srv]
    "ERROR_ARGUMENT": InvalidArgumentError,  # [page] 400, with "argument"
    "INVALID_REQUEST": InvalidArgumentError,  # [sys] 400 "Https required"; [oauth]
    "WRONG_ENCODING": InvalidArgumentError,  # [srv]
    "DIALOG_ID_EMPTY": InvalidArgumentError,  # [srv] the 2024 dialog.get page
    "INVALID_ARG_VALUE": InvalidArgumentError,  # [srv]
    # Method lookup and batch.
    "ERROR_METHOD_NOT_FOUND": MethodNotFoundError,  # [v3] 404
    "ERROR_MANIFEST_IS_NOT_AVAILABLE": MethodNotFoundError,  # [sys] 404
    "ERROR_BATCH_LENGTH_EXCEEDED": BatchError,  # [sys] 400
    "ERROR_BATCH_METHOD_NOT_ALLOWED": BatchError,  # [sys] 405
    # Authentication (PROTOCOL 3.2 and the OAuth server's codes, 6.1).
    "NO_AUTH_FOUND": AuthError,  # [sys] 401
    "INVALID_CREDENTIALS": AuthError,  # [sys] 403 (401 on method pages)
    "WRONG_AUTH_TYPE": AuthError,  # [page] 403: a kind of authorisation the method refuses
    "AUTHORIZATION_ERROR": AuthError,  # [srv]
    "APPLICATION_NOT_FOUND": AuthError,  # [srv]
    "PAYMENT_REQUIRED": AuthError,  # [oauth] the application's paid period ran out
    "WRONG_CLIENT": AuthError,  # [srv]
    "INVALID_GRANT": AuthError,  # [oauth]
    "INVALID_CLIENT": AuthError,  # [oauth]
    "NOT_INSTALLED": AuthError,  # [srv]
    "METHOD_CONFIRM_WAITING": AuthError,  # [srv]
    "EXPIRED_TOKEN": TokenExpiredError,  # [sys] 401
    "INVALID_TOKEN": TokenExpiredError,  # [srv]
    # Access.
    "ACCESS_ERROR": AccessError,  # [page] 400
    "ACCESS_DENIED": AccessError,  # [sys] 403
    "INSUFFICIENT_SCOPE": AccessError,  # [sys] 403; [oauth]
    "INVALID_SCOPE": AccessError,  # [oauth]
    "USER_ACCESS_ERROR": AccessError,  # [sys] 403
    "METHOD_CONFIRM_DENIED": AccessError,  # [srv]
    "ALLOWED_ONLY_INTRANET_USER": AccessError,  # [srv] the JS SDK's hard codes
    # The portal cannot serve REST at all.
    "PORTAL_DELETED": PortalUnavailableError,  # [sys] 500 (the server sends 403)
    "WRONG_LICENSE": PortalUnavailableError,  # [srv]
    "IM_NOT_INSTALLED": PortalUnavailableError,  # [page] 400
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


def _part(value: Any) -> dict[str, Any]:
    # Empty parts arrive as [] (a PHP empty array); list-style keys 0..n as a JSON list.
    # A decoded answer's part is a dict, taken as it is (its entries are moved out).
    if type(value) is dict:
        return value
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, list):
        return {str(index): item for index, item in enumerate(value)}
    return {}


BatchParts = tuple[dict[str, Any], dict[str, Any], dict[str, Any]]


def split_batch_result(result: Any) -> BatchParts:
    """The ``result``, ``result_error`` and ``result_time`` parts of a ``batch`` result.

    A decoded answer's parts are its own dicts (entries are moved out of them, see
    :func:`parse_batch_result`); a list-style part is keyed ``"0"``, ``"1"``...

    Raises:
        DecodeError: ``result`` is not a batch result at all.
    """
    if not isinstance(result, Mapping):
        raise DecodeError(
            f"a batch answer's result must be an object, got {type(result).__name__}",
            status=200,
            method="batch",
        )
    return (
        _part(result.get("result")),
        _part(result.get("result_error")),
        _part(result.get("result_time")),
    )


def take_command(
    key: str,
    method: str,
    parts: BatchParts,
    *,
    reset_at: float | None = None,
    redact: Redact = _keep,
) -> CommandResult:
    """Move what ``parts`` (:func:`split_batch_result`) say of command ``key`` out of them.

    ``method`` is the method the command called (for its error's ``method``), ``reset_at``
    the outer ``time.operating_reset_at`` (for ``OPERATION_TIME_LIMIT``), ``redact`` hides
    secrets in the error texts the server sent.
    """
    results, errors, times = parts
    time_info = TimeInfo.from_wire(times.pop(key, None))
    if key in errors:
        payload = errors[key]
        if not isinstance(payload, Mapping):
            payload = {"error": "ERROR_UNEXPECTED_ANSWER", "error_description": str(payload)}
        error = error_from_payload(
            payload, status=200, method=method, reset_at=reset_at, redact=redact
        )
        return CommandResult(True, None, error, time_info)
    if key in results:
        return CommandResult(True, results.pop(key), None, time_info)
    return CommandResult(False)


def parse_batch_result(
    result: Any,
    methods: Mapping[str, str],
    *,
    reset_at: float | None = None,
    redact: Redact = _keep,
) -> dict[str, CommandResult]:
    """Split a ``batch`` call's ``result`` into one entry per command key.

    Each command's result and ``time`` block are moved out of ``result`` into its entry,
    so that the caller, taking the entries out one by one, frees each raw result once
    it is done with it rather than holding all of them to the end of the batch (fewer
    objects kept alive across garbage collections in a job that keeps its results).

    Args:
        result: The outer answer's ``result``.
        methods: Command key -> the method it called (for the errors' ``method``).
        reset_at: The outer ``time.operating_reset_at``, for ``OPERATION_TIME_LIMIT``.
        redact: Hides secrets in the error texts the server sent.

    Raises:
        DecodeError: ``result`` is not a batch result at all.
    """
    parts = split_batch_result(result)
    return {
        key: take_command(key, method, parts, reset_at=reset_at, redact=redact)
        for key, method in methods.items()
    }


# -- PHP form bodies (events) ---------------------------------------------------------------

# PHP's max_input_nesting_level.
_MAX_DEPTH: Final = 64
_PHP_INT_MAX: Final = 2**63 - 1
# A key PHP stores as an integer: canonical decimal ("5", "-5"; not "05", "-0", "+5").
_PHP_INT: Final = re.compile(r"0|-?[1-9][0-9]{0,18}")


def _php_int(key: str) -> int | None:
    """The integer a PHP array key stands for, or ``None`` for a string key."""
    if _PHP_INT.fullmatch(key) is None:
        return None
    number = int(key)  # at most 19 digits: no str-to-int limit, no quadratic time
    return number if -_PHP_INT_MAX - 1 <= number <= _PHP_INT_MAX else None


def _php_base(text: str) -> str:
    # PHP turns dots and spaces of the base name into underscores.
    return text.replace(".", "_").replace(" ", "_")


def _split_name(name: str, max_depth: int) -> tuple[str, list[str | None]] | None:
    """Split ``a[b][]`` into ``("a", ["b", None])``, or ``None`` when PHP drops the name.

    One pass with ``str.find`` from a moving position: linear in the name's length, and
    it stops at the first index past ``max_depth``.
    """
    name = name.partition("\0")[0].lstrip(" ")
    bracket = name.find("[")
    if bracket == -1:
        base = _php_base(name)
        return (base, []) if base else None
    base = _php_base(name[:bracket])
    indices: list[str | None] = []
    position, end = bracket, len(name)
    while position < end and name[position] == "[":
        close = name.find("]", position + 1)
        if close == -1:
            if not indices:
                # An unmatched first '[' is part of a plain name ("a[b" -> "a_b").
                base += "_" + _php_base(name[position + 1 :].replace("[", "_"))
            break
        if not base:
            return None
        if len(indices) == max_depth:
            raise EventError(
                f"a name in the event body nests deeper than {max_depth} levels (max_depth)"
            )
        indices.append(name[position + 1 : close] or None)
        position = close + 1
    return (base, indices) if base else None


class _FormTable:
    """The nested dicts ``parse_str`` builds, in time linear in the input.

    ``a[]=x`` appends at one more than the largest integer key, as PHP does. Each array
    that is appended to keeps that next index (computed once, from its keys, at its first
    append, then kept up to date), so an append costs O(1) instead of a scan of the
    array's keys.
    """

    __slots__ = ("_max_depth", "_max_fields", "_next", "fields", "table")

    def __init__(self, max_fields: int | None, max_depth: int) -> None:
        self.table: dict[str, Any] = {}
        self.fields = 0
        self._max_fields = max_fields
        self._max_depth = max_depth
        # id(array) -> [array, next free index]; holding the array keeps its id unique
        # while the table is built, even after a later pair replaced it with a string.
        self._next: dict[int, list[Any]] = {}

    def put(self, name: str, value: str) -> None:
        """Store ``name=value`` with PHP bracket nesting (``a[b][]=x``)."""
        self.fields += 1
        if self._max_fields is not None and self.fields > self._max_fields:
            raise EventError(
                f"the event body has more than {self._max_fields:,} fields (max_fields)"
            )
        split = _split_name(name, self._max_depth)
        if split is None:
            return
        key, indices = split
        node = self.table
        for part in indices:
            child = node.get(key)
            if not isinstance(child, dict):
                child = {}
                self._set(node, key, child)
            node = child
            if part is not None:
                key = part
                continue
            appended = self._next_index(node)
            if appended is None:
                return  # the next index is past PHP_INT_MAX: PHP drops the value
            key = appended
        self._set(node, key, value)

    def _set(self, node: dict[str, Any], key: str, value: Any) -> None:
        node[key] = value
        tracked = self._next.get(id(node))
        if tracked is not None:
            number = _php_int(key)
            if number is not None and number >= tracked[1]:
                tracked[1] = number + 1

    def _next_index(self, array: dict[str, Any]) -> str | None:
        tracked = self._next.get(id(array))
        if tracked is None:
            numbers = [n for n in map(_php_int, array) if n is not None]
            tracked = [array, max(numbers) + 1 if numbers else 0]
            self._next[id(array)] = tracked
        return None if tracked[1] > _PHP_INT_MAX else str(tracked[1])


def parse_form(
    text: str, *, max_fields: int | None = None, max_depth: int = _MAX_DEPTH
) -> dict[str, Any]:
    """Decode a PHP form body (``a[b][]=x&c=1``) into nested dicts, as ``parse_str`` does.

    Linear in the length of ``text``. Where PHP drops a name nested deeper than its
    ``max_input_nesting_level`` (64), this refuses the body.

    Args:
        text: The body, still percent-encoded.
        max_fields: The most ``name=value`` pairs to read (``None``: no cap).
        max_depth: The most bracketed levels of a name (``data[DATA][0]`` has 2).

    Raises:
        EventError: More than ``max_fields`` pairs, or a name deeper than ``max_depth``.
            The message never quotes the body.
    """
    table = _FormTable(max_fields, max_depth)
    for piece in text.split("&"):
        if not piece:
            continue
        name, _, value = piece.partition("=")
        table.put(
            unquote_plus(name, encoding="utf-8", errors="replace"),
            unquote_plus(value, encoding="utf-8", errors="replace"),
        )
    return table.table


def parse_form_pairs(
    pairs: Iterable[tuple[str, Any]],
    *,
    max_fields: int | None = None,
    max_depth: int = _MAX_DEPTH,
) -> dict[str, Any]:
    """Nest already-decoded form pairs (``("auth[member_id]", "x")``) as :func:`parse_form`.

    Raises:
        EventError: As :func:`parse_form`.
    """
    table = _FormTable(max_fields, max_depth)
    for name, value in pairs:
        table.put(str(name), value if isinstance(value, str) else str(value))
    return table.table
