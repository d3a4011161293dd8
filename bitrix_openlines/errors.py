"""The exception tree and the one table from Bitrix24 error code to exception class.

Every exception the SDK raises on purpose derives from :class:`OpenLinesError`::

    OpenLinesError                    anything this SDK raises on purpose
    ├── ApiError                      the portal (or its OAuth server) answered with an error
    │   ├── AccessError               ACCESS_ERROR, ACCESS_DENIED, insufficient_scope, ...
    │   ├── AuthError                 NO_AUTH_FOUND, INVALID_CREDENTIALS, invalid_grant, ...
    │   │   └── TokenExpiredError     expired_token, invalid_token (refreshed and replayed)
    │   ├── RateLimitError            QUERY_LIMIT_EXCEEDED (503): the portal's leaky bucket
    │   │   ├── OperationTimeLimitError  OPERATION_TIME_LIMIT (429): a method's time budget
    │   │   └── OverloadError         OVERLOAD_LIMIT (503): blocked by support, never retried
    │   ├── InvalidArgumentError      ERROR_ARGUMENT, DIALOG_ID_EMPTY, INVALID_REQUEST, ...
    │   ├── MethodNotFoundError       ERROR_METHOD_NOT_FOUND (404)
    │   ├── BatchError                ERROR_BATCH_LENGTH_EXCEEDED, ERROR_BATCH_METHOD_NOT_ALLOWED
    │   ├── PortalUnavailableError    PORTAL_DELETED, WRONG_LICENSE, IM_NOT_INSTALLED, ...
    │   └── ServerError               INTERNAL_SERVER_ERROR, ERROR_UNEXPECTED_ANSWER, other 5xx
    ├── TransportError                no usable HTTP answer: connection refused or dropped
    │   ├── RequestTimeoutError       the connect or total timeout ran out
    │   └── PortalMovedError          the portal answered 302: it was renamed
    ├── DecodeError                   an answer that is not the JSON we expect (an HTML page)
    ├── InvalidURLError               (a ValueError) a URL no request can be sent to; never retried
    └── EventError                    an incoming event POST that cannot be parsed (a ValueError)
        └── EventVerificationError    its auth[application_token] is missing or wrong

Every error carries ``code`` (the Bitrix ``error`` string, or ``None``), ``description``,
``status`` (the HTTP status, or ``None`` when there was no answer) and ``method`` (the REST
method called). Error texts are built from those fields only: no URL, token or webhook code
ever reaches them.

The codes and their statuses come from PROTOCOL.md section 3 (the official system-errors
table, the server's source and the official SDKs); lookups ignore case because the server
spells OAuth codes in lower case and the SDKs disagree on how to compare them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

__all__ = [
    "AccessError",
    "ApiError",
    "AuthError",
    "BatchError",
    "DecodeError",
    "EventError",
    "EventVerificationError",
    "InvalidArgumentError",
    "InvalidURLError",
    "MethodNotFoundError",
    "OpenLinesError",
    "OperationTimeLimitError",
    "OverloadError",
    "PortalMovedError",
    "PortalUnavailableError",
    "RateLimitError",
    "RequestTimeoutError",
    "ServerError",
    "TokenExpiredError",
    "TransportError",
    "error_class_for",
    "error_from_payload",
]


class OpenLinesError(Exception):
    """Base class of every error this SDK raises on purpose.

    Attributes:
        code: The Bitrix24 error code (``"ACCESS_ERROR"``), or ``None`` when there is none.
        description: A human-readable text (the portal's ``error_description`` when given).
        status: The HTTP status of the answer, or ``None`` when no answer arrived.
        method: The REST method that was called, when known.
    """

    def __init__(
        self,
        description: str = "",
        *,
        code: str | None = None,
        status: int | None = None,
        method: str | None = None,
    ) -> None:
        self.code = code
        self.description = description
        self.status = status
        self.method = method
        super().__init__(self._text())

    def _text(self) -> str:
        parts: list[str] = []
        if self.code:
            parts.append(self.code)
        if self.description:
            parts.append(self.description)
        text = ": ".join(parts) if parts else type(self).__name__
        context = []
        if self.method:
            context.append(f"method={self.method}")
        if self.status is not None:
            context.append(f"status={self.status}")
        return f"{text} ({', '.join(context)})" if context else text

    def __str__(self) -> str:
        return self._text()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(code={self.code!r}, description={self.description!r}, "
            f"status={self.status!r}, method={self.method!r})"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        # Keep the keyword-only fields across pickling (multiprocessing workers).
        return (_rebuild, (type(self), self.__dict__.copy()))


def _rebuild(cls: type[OpenLinesError], state: dict[str, Any]) -> OpenLinesError:
    error = cls.__new__(cls)
    error.__dict__.update(state)
    Exception.__init__(error, error._text())
    return error


class ApiError(OpenLinesError):
    """The portal, or its OAuth server, answered with an ``{"error": ...}`` body.

    Attributes:
        extra: Any other keys of the error body (``argument`` for ``ERROR_ARGUMENT``).
    """

    def __init__(
        self,
        description: str = "",
        *,
        code: str | None = None,
        status: int | None = None,
        method: str | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        self.extra: dict[str, Any] = dict(extra or {})
        super().__init__(description, code=code, status=status, method=method)


class AccessError(ApiError):
    """The caller may not see this object or use this method (not retried)."""


class AuthError(ApiError):
    """The credentials were refused, or a token refresh failed (not retried)."""


class TokenExpiredError(AuthError):
    """The OAuth access token expired or is unknown; ``OAuthAuth`` refreshes and replays."""


class RateLimitError(ApiError):
    """The portal's leaky bucket is full (``QUERY_LIMIT_EXCEEDED``, HTTP 503)."""


class OperationTimeLimitError(RateLimitError):
    """The method spent its execution-time budget (``OPERATION_TIME_LIMIT``, HTTP 429).

    Attributes:
        reset_at: Unix time when the method is available again, when the portal said so.
    """

    def __init__(
        self,
        description: str = "",
        *,
        code: str | None = None,
        status: int | None = None,
        method: str | None = None,
        extra: Mapping[str, Any] | None = None,
        reset_at: float | None = None,
    ) -> None:
        self.reset_at = reset_at
        super().__init__(description, code=code, status=status, method=method, extra=extra)


class OverloadError(RateLimitError):
    """REST was blocked for the portal by Bitrix24 support (``OVERLOAD_LIMIT``); never retried."""


class InvalidArgumentError(ApiError):
    """The portal refused the parameters (``ERROR_ARGUMENT``, ``DIALOG_ID_EMPTY``, ...)."""


class MethodNotFoundError(ApiError):
    """The portal does not know the method (``ERROR_METHOD_NOT_FOUND``, HTTP 404)."""


class BatchError(ApiError):
    """A ``batch`` call was malformed: too many commands or a method not allowed in it."""


class PortalUnavailableError(ApiError):
    """The portal cannot serve the call at all: deleted, wrong plan, module missing."""


class ServerError(ApiError):
    """The portal failed internally (HTTP 5xx); retried for idempotent methods only."""


class TransportError(OpenLinesError):
    """No usable HTTP answer arrived: the connection was refused, reset or dropped."""


class RequestTimeoutError(TransportError):
    """The connect or total timeout ran out before the answer was complete."""


class PortalMovedError(TransportError):
    """The portal answered with a redirect: it was renamed and lives at ``new_address``.

    A POST must not follow a redirect (its body would be lost), so the SDK stops and names
    the new address; build the client again with it. ``new_address`` holds the scheme and
    host only, never the path, which for a webhook would contain its secret code.
    """

    def __init__(
        self,
        description: str = "",
        *,
        code: str | None = None,
        status: int | None = None,
        method: str | None = None,
        new_address: str | None = None,
    ) -> None:
        self.new_address = new_address
        super().__init__(description, code=code, status=status, method=method)


class DecodeError(OpenLinesError):
    """The answer was not the JSON we expect: an HTML error page, an empty or cut body.

    Attributes:
        excerpt: The first characters of the body, for the log.
    """

    def __init__(
        self,
        description: str = "",
        *,
        code: str | None = None,
        status: int | None = None,
        method: str | None = None,
        excerpt: str = "",
    ) -> None:
        self.excerpt = excerpt
        super().__init__(description, code=code, status=status, method=method)


class InvalidURLError(OpenLinesError, ValueError):
    """A request could not be sent because its URL is invalid (a port past 65535, no host).

    Bad input, not a network failure: it is never retried, and it is a ``ValueError`` too,
    like the error ``WebhookAuth``/``OAuthAuth`` raise when they are given such a URL. The
    auth objects refuse those up front; this one comes from URLs that got past them (a
    custom :class:`~bitrix_openlines.auth.Auth`, say). Its text never quotes the URL.
    """


class EventError(OpenLinesError, ValueError):
    """An incoming event POST could not be parsed: not a Bitrix24 event body.

    It is a ``ValueError`` too: the input was bad, not the network or the portal. Its text
    never quotes the body (which carries tokens); answer such a request with HTTP 400.
    """


class EventVerificationError(EventError):
    """An event's ``auth[application_token]`` is missing or is not the stored one.

    The event may be forged (PROTOCOL.md 6.2): answer 403 and do not act on it. The text
    names neither the expected token nor the one received.
    """


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
) -> ApiError:
    """Build the exception for an error body ``{"error": ..., "error_description": ...}``.

    Args:
        payload: The decoded error body (or one ``result_error`` entry of a batch).
        status: The HTTP status of the answer (``200`` for a command inside a batch).
        method: The method that was called.
        reset_at: For ``OPERATION_TIME_LIMIT``, when the method is available again.
    """
    raw_code = payload.get("error")
    code = str(raw_code) if raw_code is not None else None
    raw_description = payload.get("error_description")
    description = str(raw_description) if raw_description is not None else ""
    extra = {k: v for k, v in payload.items() if k not in ("error", "error_description")}
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
