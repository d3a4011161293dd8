"""Credentials: incoming webhooks and OAuth 2.0 tokens with a single-flight refresh.

An auth object turns a method name and its parameters into the URL and body to send,
and, for OAuth, refreshes the access token when the portal answers ``expired_token``.
Refresh tokens are single-use (PROTOCOL.md 6.1): two refreshes racing with the same token
would lose the session, so every task that meets the same stale token waits on ONE
refresh, and all of them see its outcome, good or bad.

Secrets never appear in a ``repr``, an error text or a log line: reprs print ``***``.
"""

from __future__ import annotations

import abc
import asyncio
import inspect
import ipaddress
import logging
import re
import time
import traceback
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import attrs

from bitrix_openlines._decode import decode_json
from bitrix_openlines._redact import MASK, redact
from bitrix_openlines.errors import (
    AuthError,
    DecodeError,
    OpenLinesError,
    ServerError,
    TransportError,
    error_from_payload,
)
from bitrix_openlines.transport import Transport

__all__ = [
    "DEFAULT_TOKEN_URL",
    "Auth",
    "OAuthAuth",
    "OAuthTokens",
    "PreparedCall",
    "WebhookAuth",
]

logger = logging.getLogger("bitrix_openlines")

DEFAULT_TOKEN_URL = "https://oauth.bitrix.info/oauth/token/"

_WEBHOOK_PATH = re.compile(r"/rest/(?P<user>[^/]+)/(?P<code>[^/]+)/?")


def _is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _check_scheme(parameter: str, scheme: str, host: str, allow_http: bool) -> None:
    if scheme == "https":
        return
    if scheme != "http":
        raise ValueError(
            f"{parameter} must start with https://, got a {scheme or 'missing'} scheme"
        )
    if not (allow_http or _is_loopback(host)):
        # The portal itself refuses webhooks over plain HTTP ("Https required.").
        raise ValueError(
            f"{parameter} must use https:// (plain http is allowed only for loopback hosts, "
            "or with allow_http=True)"
        )


@attrs.frozen(slots=True)
class PreparedCall:
    """What to send for one call: the URL, the JSON body, and the token used (if any)."""

    url: str
    payload: dict[str, Any]
    token: str | None = attrs.field(default=None, repr=False)

    def __repr__(self) -> str:
        # The URL holds a webhook's code and the payload an OAuth token: show neither
        # (tracebacks with local variables print this object).
        parts = urlsplit(self.url)
        return (
            f"PreparedCall(portal='{parts.scheme}://{parts.netloc}', keys={sorted(self.payload)})"
        )


class Auth(abc.ABC):
    """Base class of the credentials a client uses."""

    def __init__(self) -> None:
        self._refresh_listeners: list[RefreshListener] = []

    @property
    @abc.abstractmethod
    def portal(self) -> str:
        """The portal's address (``https://host``): the key of its rate limit."""

    @abc.abstractmethod
    async def prepare(self, method: str, params: Mapping[str, Any]) -> PreparedCall:
        """Return the URL and body for a call of ``method`` with ``params``."""

    async def refresh(self, stale: PreparedCall, transport: Transport) -> bool:
        """Renew credentials after the portal refused ``stale``'s token as expired.

        Returns:
            Whether the call should be sent again with fresh credentials.
        """
        return False

    def secrets(self) -> tuple[str, ...]:
        """The strings that must never be shown (for redaction)."""
        return ()

    def add_refresh_listener(self, listener: RefreshListener) -> None:
        """Call ``listener(ok, seconds, error)`` once after each refresh attempt."""
        self._refresh_listeners.append(listener)

    def remove_refresh_listener(self, listener: RefreshListener) -> None:
        """Stop calling ``listener`` (no error if it was not added)."""
        if listener in self._refresh_listeners:
            self._refresh_listeners.remove(listener)

    def _refreshed(self, ok: bool, seconds: float, error: OpenLinesError | None) -> None:
        for listener in list(self._refresh_listeners):
            try:
                listener(ok, seconds, error)
            except Exception:
                logger.exception("a refresh listener raised; ignored")


RefreshListener = Callable[[bool, float, OpenLinesError | None], None]


class WebhookAuth(Auth):
    """An incoming webhook: ``https://<portal>/rest/<user_id>/<code>/``.

    Args:
        url: The webhook URL as the portal shows it (a trailing method name such as
            ``profile.json`` is not allowed: give the base URL).
        allow_http: Allow ``http://`` for a non-loopback host (the portal refuses it
            unless configured otherwise); loopback hosts are always allowed.

    Raises:
        TypeError: ``url`` is not a string.
        ValueError: ``url`` is not a webhook URL; the message says what is wrong, with the
            secret code masked.
    """

    def __init__(self, url: str, *, allow_http: bool = False) -> None:
        super().__init__()
        if not isinstance(url, str):
            raise TypeError(f"url must be a str, got {type(url).__name__}")
        parts = urlsplit(url.strip())
        host = parts.hostname or ""
        if not host:
            raise ValueError("url must be a full webhook URL like https://portal/rest/1/code/")
        _check_scheme("url", parts.scheme, host, allow_http)
        match = _WEBHOOK_PATH.fullmatch(parts.path)
        if match is None:
            raise ValueError(
                "url must have the path /rest/<user_id>/<code>/ (the webhook URL as the "
                f"portal shows it, without a method name); got a path with "
                f"{len([p for p in parts.path.split('/') if p])} part(s)"
            )
        user, code = match.group("user"), match.group("code")
        if not user.isdigit():
            raise ValueError(f"url must have a numeric user id after /rest/, got {user!r}")
        if not re.fullmatch(r"[A-Za-z0-9_-]+", code):
            raise ValueError("url has a webhook code with characters other than letters/digits")
        if parts.query or parts.fragment:
            raise ValueError("url must not have a query string or a fragment")
        self._portal = f"{parts.scheme}://{parts.netloc}"
        self._user_id = int(user)
        self._code = code
        self._base = f"{self._portal}/rest/{user}/{code}/"

    @property
    def portal(self) -> str:
        """The portal's address (``https://host``)."""
        return self._portal

    @property
    def user_id(self) -> int:
        """The id of the user the webhook acts as."""
        return self._user_id

    async def prepare(self, method: str, params: Mapping[str, Any]) -> PreparedCall:
        """Return the webhook URL of ``method`` and the parameters as the body."""
        return PreparedCall(url=f"{self._base}{method}.json", payload=dict(params))

    def secrets(self) -> tuple[str, ...]:
        """The webhook code."""
        return (self._code,)

    def __repr__(self) -> str:
        return f"WebhookAuth('{self._portal}/rest/{self._user_id}/{MASK}/')"


@attrs.frozen(slots=True)
class OAuthTokens:
    """An OAuth token pair and what the portal said with it.

    Attributes:
        access_token: Sent with every call; lives an hour.
        refresh_token: Single-use: every refresh returns a new pair.
        client_endpoint: The portal's REST base (``https://portal/rest/``). Use it, not
            ``domain``, as the portal's address (PROTOCOL.md 6.1).
        expires_at: Unix time the access token expires, when known.
        member_id: The portal's unique id.
        scope: Comma-separated scopes.
        server_endpoint: The OAuth server's REST base.
        user_id: The user the tokens act as, when known.
        status: The portal's plan letter (``F``, ``P``, ...).
    """

    access_token: str = attrs.field(repr=False)
    refresh_token: str = attrs.field(repr=False)
    client_endpoint: str
    expires_at: float | None = None
    member_id: str | None = None
    scope: str | None = None
    server_endpoint: str | None = None
    user_id: int | None = None
    status: str | None = None

    def __attrs_post_init__(self) -> None:
        for name in ("access_token", "refresh_token", "client_endpoint"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise ValueError(f"OAuthTokens.{name} must be a non-empty string")
        parts = urlsplit(self.client_endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                "OAuthTokens.client_endpoint must be the portal's REST URL like "
                f"https://portal.bitrix24.com/rest/, got {self.client_endpoint!r}"
            )

    @classmethod
    def from_response(cls, body: Mapping[str, Any], *, now: float | None = None) -> OAuthTokens:
        """Build tokens from the OAuth server's answer (or an event's ``auth`` block).

        ``expires`` (Unix time) wins over ``expires_in`` (seconds from ``now``).

        Raises:
            ValueError: A required key is missing or empty.
        """
        missing = [
            k for k in ("access_token", "refresh_token", "client_endpoint") if not body.get(k)
        ]
        if missing:
            raise ValueError(f"the token answer lacks {', '.join(missing)}")
        expires_at: float | None = None
        if isinstance(body.get("expires"), int | float | str) and str(body["expires"]).isdigit():
            expires_at = float(body["expires"])
        elif str(body.get("expires_in", "")).isdigit():
            expires_at = (time.time() if now is None else now) + float(body["expires_in"])
        user_id = body.get("user_id")
        return cls(
            access_token=str(body["access_token"]),
            refresh_token=str(body["refresh_token"]),
            client_endpoint=str(body["client_endpoint"]),
            expires_at=expires_at,
            member_id=_opt_str(body.get("member_id")),
            scope=_opt_str(body.get("scope")),
            server_endpoint=_opt_str(body.get("server_endpoint")),
            user_id=int(str(user_id)) if str(user_id or "").isdigit() else None,
            status=_opt_str(body.get("status")),
        )

    def __repr__(self) -> str:
        return (
            f"OAuthTokens(access_token={MASK}, refresh_token={MASK}, "
            f"client_endpoint={self.client_endpoint!r}, expires_at={self.expires_at!r}, "
            f"member_id={self.member_id!r}, user_id={self.user_id!r})"
        )


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


RefreshCallback = Callable[[OAuthTokens], Awaitable[None] | None]


class OAuthAuth(Auth):
    """OAuth 2.0 credentials of an installed application, refreshed when they expire.

    On ``expired_token`` or ``invalid_token`` the client calls :meth:`refresh`: the first
    task to arrive asks the OAuth server for a new pair; every other task that met the
    same stale token waits for that one answer. The new pair is handed to ``on_refresh``
    (store it: the old refresh token no longer works) before any call is replayed. A
    refresh that fails with an OAuth error (``invalid_grant``: the refresh token is used
    or expired) raises the same :class:`AuthError` in every waiter and is not tried again
    for that token; a network failure or a 5xx of the OAuth server is raised too, but a
    later call may try again.

    Args:
        client_id: The application's client id.
        client_secret: The application's client secret.
        tokens: The current token pair.
        token_url: The OAuth server (``https://oauth.bitrix.info/oauth/token/``; the
            east region uses ``https://oauth.bitrix24.tech/oauth/token/``).
        on_refresh: Called (and awaited, if it is a coroutine function) with each new
            pair. If it raises, the error is logged and the new pair is still used.
        allow_http: Allow ``http://`` endpoints for non-loopback hosts.
    """

    def __init__(
        self,
        *,
        client_id: str,
        client_secret: str,
        tokens: OAuthTokens,
        token_url: str = DEFAULT_TOKEN_URL,
        on_refresh: RefreshCallback | None = None,
        allow_http: bool = False,
    ) -> None:
        super().__init__()
        for name, value in (("client_id", client_id), ("client_secret", client_secret)):
            if not isinstance(value, str) or not value:
                raise ValueError(f"{name} must be a non-empty string")
        if not isinstance(tokens, OAuthTokens):
            raise TypeError(f"tokens must be OAuthTokens, got {type(tokens).__name__}")
        if on_refresh is not None and not callable(on_refresh):
            raise TypeError("on_refresh must be callable")
        token_parts = urlsplit(token_url)
        if not token_parts.hostname:
            raise ValueError(f"token_url must be a full URL, got {token_url!r}")
        _check_scheme("token_url", token_parts.scheme, token_parts.hostname, allow_http)
        endpoint = urlsplit(tokens.client_endpoint)
        _check_scheme(
            "tokens.client_endpoint", endpoint.scheme, endpoint.hostname or "", allow_http
        )
        self._client_id = client_id
        self._client_secret = client_secret
        self._tokens = tokens
        self._token_url = token_url
        self._on_refresh = on_refresh
        self._allow_http = allow_http
        self._inflight: asyncio.Future[OAuthTokens] | None = None
        self._inflight_for: str | None = None
        self._old_secrets: deque[str] = deque(maxlen=32)
        self.refresh_count = 0

    @property
    def tokens(self) -> OAuthTokens:
        """The current token pair."""
        return self._tokens

    @property
    def portal(self) -> str:
        """The portal's address, from the tokens' ``client_endpoint``."""
        parts = urlsplit(self._tokens.client_endpoint)
        return f"{parts.scheme}://{parts.netloc}"

    async def prepare(self, method: str, params: Mapping[str, Any]) -> PreparedCall:
        """Return ``client_endpoint + method`` and the parameters with ``auth`` added."""
        tokens = self._tokens
        base = (
            tokens.client_endpoint
            if tokens.client_endpoint.endswith("/")
            else tokens.client_endpoint + "/"
        )
        payload = dict(params)
        payload["auth"] = tokens.access_token
        return PreparedCall(url=f"{base}{method}.json", payload=payload, token=tokens.access_token)

    async def refresh(self, stale: PreparedCall, transport: Transport) -> bool:
        """Refresh once for all tasks that met ``stale``'s expired token; see the class."""
        if stale.token is None:
            return False
        if self._tokens.access_token != stale.token:
            # Someone already refreshed since this call was prepared: just replay.
            return True
        if self._inflight is None or self._inflight_for != stale.token:
            self._inflight_for = stale.token
            self._inflight = asyncio.ensure_future(self._refresh(transport))
            self._inflight.add_done_callback(self._after_refresh)
        # shield: one waiter being cancelled must not cancel the refresh for the others.
        await asyncio.shield(self._inflight)
        return True

    def _after_refresh(self, future: asyncio.Future[OAuthTokens]) -> None:
        if future.cancelled():
            self._inflight = None
            return
        error = future.exception()  # also marks the exception as retrieved
        if isinstance(error, TransportError | DecodeError | ServerError):
            # A network or server failure says nothing about the refresh token: allow a new
            # try.
            self._inflight = None

    async def _refresh(self, transport: Transport) -> OAuthTokens:
        params = {
            "grant_type": "refresh_token",
            "client_id": self._client_id,
            "client_secret": self._client_secret,
            "refresh_token": self._tokens.refresh_token,
        }
        started = time.perf_counter()
        try:
            tokens = await self._request_tokens(transport, params)
        except OpenLinesError as error:
            self._refreshed(False, time.perf_counter() - started, error)
            raise
        self._old_secrets.extend((self._tokens.access_token, self._tokens.refresh_token))
        self._tokens = tokens
        self.refresh_count += 1
        logger.info("oauth tokens refreshed (refresh #%d)", self.refresh_count)
        await self._notify(tokens)
        self._refreshed(True, time.perf_counter() - started, None)
        return tokens

    async def _request_tokens(self, transport: Transport, params: dict[str, str]) -> OAuthTokens:
        raw = await transport.get(self._token_url, params, method="oauth.token")
        body = decode_json(raw, "oauth.token")
        # The OAuth server may answer an error with status 200 (wrong_client, PROTOCOL 3.2).
        if "error" in body or raw.status >= 400:
            error = error_from_payload(body, status=raw.status, method="oauth.token")
            if isinstance(error, ServerError):
                # The OAuth server failed (5xx): the refresh token may still be good.
                raise error
            if not isinstance(error, AuthError):
                error = AuthError(
                    error.description, code=error.code, status=error.status, method="oauth.token"
                )
            raise error
        try:
            return OAuthTokens.from_response(body)
        except ValueError as exc:
            raise DecodeError(
                f"the OAuth server's answer is not a token pair: {exc}",
                status=raw.status,
                method="oauth.token",
            ) from None

    async def _notify(self, tokens: OAuthTokens) -> None:
        if self._on_refresh is None:
            return
        try:
            outcome = self._on_refresh(tokens)
            if inspect.isawaitable(outcome):
                await outcome
        except Exception as exc:
            # The callback's error may quote the tokens it failed to store: redact it.
            details = redact("".join(traceback.format_exception(exc)), self.secrets())
            logger.error("on_refresh failed; the new tokens are still used in memory\n%s", details)

    def secrets(self) -> tuple[str, ...]:
        """The client secret and every token pair seen."""
        return (
            self._client_secret,
            self._tokens.access_token,
            self._tokens.refresh_token,
            *self._old_secrets,
        )

    def __repr__(self) -> str:
        return (
            f"OAuthAuth(client_id={self._client_id!r}, client_secret={MASK}, "
            f"portal={self.portal!r}, token_url={self._token_url!r})"
        )
