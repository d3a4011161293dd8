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
    ├── ClientClosedError             the client was closed before the call ended
    ├── InvalidURLError               (a ValueError) a URL no request can be sent to; never retried
    ├── InvalidQueryError             a malformed query of a batch job (a ValueError too)
    ├── EventError                    an incoming event POST that cannot be parsed (a ValueError)
    │   └── EventVerificationError    its auth[application_token] is missing or wrong
    ├── TokenStoreError               a token store failed to load or save a pair
    │   └── RedisUnavailableError     Redis (extra ``redis``) could not be reached or failed
    ├── LockLostError                 a refresh lock's lease ran out before the pair was saved
    └── CommandLineError              a wrong flag or setting of the command line (exit code 2)

Every error carries ``code`` (the Bitrix ``error`` string, or ``None``), ``description``,
``status`` (the HTTP status, or ``None`` when there was no answer) and ``method`` (the REST
method called). Error texts are built from those fields only: no URL, token or webhook code
ever reaches them.

The table from Bitrix24 error code to class is in :mod:`bitrix_openlines.wire`
(:func:`~bitrix_openlines.wire.error_class_for`). Every exception class lives here, those
of the optional extras too: catching them needs no import of the extra.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = [
    "AccessError",
    "ApiError",
    "AuthError",
    "ClientClosedError",
    "CommandLineError",
    "BatchError",
    "DecodeError",
    "EventError",
    "EventVerificationError",
    "InvalidArgumentError",
    "InvalidQueryError",
    "InvalidURLError",
    "LockLostError",
    "MethodNotFoundError",
    "OpenLinesError",
    "OperationTimeLimitError",
    "OverloadError",
    "PortalMovedError",
    "PortalUnavailableError",
    "RateLimitError",
    "RedisUnavailableError",
    "RequestTimeoutError",
    "ServerError",
    "TokenExpiredError",
    "TokenStoreError",
    "TransportError",
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

    @property
    def argument(self) -> str | None:
        """The parameter the portal named (``ERROR_ARGUMENT``'s ``argument``), or ``None``.

        ``None`` when the body names none (or an empty one, as some pages show); at most
        200 characters of it.
        """
        value = self.extra.get("argument")
        if not isinstance(value, str):
            return None
        return value[:_MAX_ARGUMENT] or None


_MAX_ARGUMENT = 200


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


class ClientClosedError(OpenLinesError):
    """The client was closed before (or while) the call ran: it did not end, or not send.

    Every call in flight when ``close()`` runs ends with it, and so does every call
    after; a running ``get_dialogs`` gives it as the outcome of the unfinished queries.
    Not retried.
    """


class InvalidQueryError(OpenLinesError, ValueError):
    """A query of a batch job was malformed; it fails alone, before any request.

    It is a ``ValueError`` too, so ``except ValueError`` catches it like the error the
    same input raises from ``DialogGet(...)`` directly.
    """


class TokenStoreError(OpenLinesError):
    """A :class:`~bitrix_openlines.TokenStore` failed to load or save a pair.

    Never final: the next call asks the store again. A pair a refresh gave is never lost
    to it (it is used in memory and saved again before the next call).
    """


class RedisUnavailableError(TokenStoreError):
    """Redis could not be reached or failed; the operation did not happen (extra ``redis``)."""


class LockLostError(OpenLinesError):
    """The refresh lock's lease ran out before the new pair was saved (it was not saved)."""


class CommandLineError(OpenLinesError, ValueError):
    """A flag, the environment or an input file of the ``bitrix-openlines`` command is wrong.

    The command prints it and exits with code 2.
    """
