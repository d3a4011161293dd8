"""Credentials: incoming webhooks and OAuth 2.0 tokens with a single-flight refresh.

An auth object hands the session the :class:`Credentials` of a call (where to send it,
and the token it carries) and, for OAuth, refreshes the access token when the portal
answers ``expired_token``. The refresh is the auth's own I/O: it asks the OAuth server
through its own HTTP session (borrowed, or opened for the refresh), so no refresh depends
on the client whose call started it. Refresh tokens are single-use (PROTOCOL.md 6.1):
two refreshes racing with the same token would lose the session, so every task that meets
the same stale token waits on ONE refresh, and all of them see its outcome.

Each auth owns the :class:`~bitrix_openlines._redact.Redactor` of its secrets (the
session passes every network text through it), and secrets never appear in a ``repr``,
an error text or a log line: reprs print ``***``.
"""

from __future__ import annotations

import abc
import asyncio
import inspect
import ipaddress
import json
import logging
import re
import time
import traceback
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any
from urllib.parse import SplitResult, urlencode, urlsplit

import aiohttp
import attrs

from bitrix_openlines._redact import MASK, Redactor, Secret, SecretBody, SecretURL, mask
from bitrix_openlines.errors import (
    AuthError,
    DecodeError,
    OpenLinesError,
    ServerError,
    TokenStoreError,
)
from bitrix_openlines.transport import Timeouts, Transport
from bitrix_openlines.wire import decode_json, error_from_payload

__all__ = [
    "DEFAULT_TOKEN_URL",
    "OAUTH_SERVERS",
    "Auth",
    "InMemoryTokenStore",
    "OAuthAuth",
    "OAuthTokens",
    "Credentials",
    "RefreshResult",
    "TokenStore",
    "WebhookAuth",
    "exchange_code",
]

logger = logging.getLogger("bitrix_openlines")

DEFAULT_TOKEN_URL = "https://oauth.bitrix.info/oauth/token/"

#: The OAuth servers a pair's ``server_endpoint`` may name (PROTOCOL.md 6.1: the west and
#: the east region). Without an explicit ``token_url``, a refresh goes to the pair's own
#: server when it is one of these (or a loopback host, as the fake portal is), and to
#: :data:`DEFAULT_TOKEN_URL` otherwise: a stored or received pair never sends the client
#: secret to a server of its choosing.
OAUTH_SERVERS = frozenset({"oauth.bitrix.info", "oauth.bitrix24.tech"})

_WEBHOOK_PATH = re.compile(r"/rest/(?P<user>[^/]+)/(?P<code>[^/]+)/?")


def _is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _split_url(parameter: str, url: str) -> SplitResult:
    """``urlsplit(url)``, refusing a host or port no request could be sent to.

    The message names ``parameter`` and never quotes ``url`` (a webhook's path holds its
    secret code): an invalid URL is bad input, not a network error to retry. A user name
    or password (``https://user:password@host/``) is refused: it would be sent to the
    server, and shown wherever the URL is.
    """
    try:
        parts = urlsplit(url)
    except ValueError:  # "https://[portal/": an unbalanced bracket, a bad IPv6 address
        raise ValueError(f"{parameter} is not a valid URL: its host cannot be parsed") from None
    if "@" in parts.netloc:
        raise ValueError(
            f"{parameter} must not contain a user name or password (user:password@host)"
        )
    try:
        port = parts.port  # raises for "host:99999" or "host:abc"
    except ValueError:
        port = 0
    if port == 0:
        raise ValueError(f"{parameter} has an invalid port: give a number from 1 to 65535")
    return parts


def _scheme_name(scheme: str) -> str:
    """Name a refused scheme: a short word as it is, anything else not quoted (it is a
    part of the URL, and a malformed URL may begin with its secret)."""
    if not scheme:
        return "no scheme"
    if len(scheme) <= 8 and scheme.isalpha():
        return f"a {scheme} scheme"
    return "an unknown scheme"


def _check_scheme(parameter: str, scheme: str, host: str, allow_http: bool) -> None:
    if scheme == "https":
        return
    if scheme != "http":
        raise ValueError(f"{parameter} must start with https://, got {_scheme_name(scheme)}")
    if not (allow_http or _is_loopback(host)):
        # The portal itself refuses webhooks over plain HTTP ("Https required.").
        raise ValueError(
            f"{parameter} must use https:// (plain http is allowed only for loopback hosts, "
            "or with allow_http=True)"
        )


_MAX_ENDPOINTS = 64


@attrs.frozen(slots=True, repr=False)
class Credentials:
    """Where one call goes, and the token it carries: its repr shows neither.

    The session sends a call with :meth:`endpoint` and :meth:`body`, whose reprs mask
    the secrets too: no variable of the SDK's frames holds the URL or the token as text
    (error trackers record those variables).

    Attributes:
        base: The REST base URL (``https://portal/rest/1/<code>/`` for a webhook, the
            tokens' ``client_endpoint`` for OAuth), ending with ``/``.
        token: The OAuth access token sent as the body's ``auth``, or ``None``.
    """

    base: str
    token: str | None = None
    _base: Secret = attrs.field(init=False, eq=False)
    _auth: Secret | None = attrs.field(init=False, eq=False)
    # The endpoint of each method called, made once (the first _MAX_ENDPOINTS methods).
    _endpoints: dict[str, SecretURL] = attrs.field(init=False, eq=False, factory=dict)

    def __attrs_post_init__(self) -> None:
        # Built once per credentials: a call only wraps them.
        object.__setattr__(self, "_base", Secret(value=self.base))
        object.__setattr__(
            self,
            "_auth",
            None if self.token is None else Secret(value='"auth":' + json.dumps(self.token)),
        )

    def url(self, method: str) -> str:
        """Return the URL of ``method`` as plain text (the session uses :meth:`endpoint`)."""
        return f"{self.base}{method}.json"

    def endpoint(self, method: str) -> SecretURL:
        """Return the URL of ``method``, in a wrapper that masks it."""
        url = self._endpoints.get(method)
        if url is None:
            url = SecretURL(self._base, f"{method}.json")
            if len(self._endpoints) < _MAX_ENDPOINTS:
                self._endpoints[method] = url
        return url

    def body(self, body: bytes) -> bytes | SecretBody:
        """Return a call's JSON ``body`` with the token as ``auth`` (in a masking wrapper)."""
        return body if self._auth is None else SecretBody(body, self._auth)

    def same_token(self, other: Credentials | None) -> bool:
        """Whether ``other`` carries the same token (compared without reading it out)."""
        return other is not None and self.token == other.token

    def __repr__(self) -> str:
        # The base holds a webhook's code and the token is secret: show the portal only
        # (tracebacks with local variables print this object).
        return (
            f"Credentials(portal='{urlsplit(self.base).scheme}://"
            f"{urlsplit(self.base).netloc.rpartition('@')[2]}', token={mask(self.token)})"
        )


@attrs.frozen(slots=True)
class RefreshResult:
    """How a refresh ended, as each task that waited for it sees it.

    Attributes:
        flight: The refresh's number for this auth (1, 2, ...): tasks that waited for
            the same refresh see the same number, so a client reports it once.
        duration: Seconds the refresh took.
        error: Why it failed, or ``None`` when a new pair is in use.
        asked_server: Whether the OAuth server was asked (not when a pair refreshed
            elsewhere was found in the store).
    """

    flight: int
    duration: float
    error: OpenLinesError | None = None
    asked_server: bool = True


class Auth(abc.ABC):
    """Base class of the credentials a client uses."""

    #: Hides this auth's secrets in any text (the session passes network texts through it).
    redactor: Redactor

    @property
    @abc.abstractmethod
    def portal(self) -> str:
        """The portal's address (``https://host``): the key of its rate limit."""

    @abc.abstractmethod
    async def credentials(self) -> Credentials:
        """Return the credentials to send the next call with."""

    async def refresh(self, stale: Credentials) -> RefreshResult | None:
        """Renew credentials after the portal refused ``stale``'s token as expired.

        Returns:
            How the refresh ended, or ``None`` when these credentials cannot be
            refreshed (a webhook).
        """
        return None


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
        if not isinstance(url, str):
            raise TypeError(f"url must be a str, got {type(url).__name__}")
        parts = _split_url("url", url.strip())
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
            # Never the part itself: with the two swapped, it is the secret code.
            raise ValueError(
                "url must have a numeric user id after /rest/ (the path is "
                "/rest/<user_id>/<code>/: are the user id and the code swapped?)"
            )
        if not re.fullmatch(r"[A-Za-z0-9_-]+", code):
            raise ValueError("url has a webhook code with characters other than letters/digits")
        if parts.query or parts.fragment:
            raise ValueError("url must not have a query string or a fragment")
        self._portal = f"{parts.scheme}://{parts.netloc}"
        self._user_id = int(user)
        self._credentials = Credentials(base=f"{self._portal}/rest/{user}/{code}/")
        self.redactor = Redactor((code,))

    @property
    def portal(self) -> str:
        """The portal's address (``https://host``)."""
        return self._portal

    @property
    def user_id(self) -> int:
        """The id of the user the webhook acts as."""
        return self._user_id

    async def credentials(self) -> Credentials:
        """Return the webhook's base URL (it holds the secret code)."""
        return self._credentials

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
            # No local variable holds a token (error trackers record them).
            if not _nonempty_str(getattr(self, name)):
                raise ValueError(f"OAuthTokens.{name} must be a non-empty string")
        parts = _split_url("OAuthTokens.client_endpoint", self.client_endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                "OAuthTokens.client_endpoint must be the portal's REST URL like "
                f"https://portal.bitrix24.com/rest/, got {_scheme_name(parts.scheme)}"
                f"{'' if parts.hostname else ' and no host'}"
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
        expires = _whole(body.get("expires"), "expires")
        if expires is not None:
            expires_at = float(expires)
        else:
            expires_in = _whole(body.get("expires_in"), "expires_in")
            if expires_in is not None:
                expires_at = (time.time() if now is None else now) + expires_in
        user_id = _whole(body.get("user_id"), "user_id")
        return cls(
            access_token=str(body["access_token"]),
            refresh_token=str(body["refresh_token"]),
            client_endpoint=str(body["client_endpoint"]),
            expires_at=expires_at,
            member_id=_opt_str(body.get("member_id")),
            scope=_opt_str(body.get("scope")),
            server_endpoint=_opt_str(body.get("server_endpoint")),
            user_id=user_id,
            status=_opt_str(body.get("status")),
        )

    def to_response(self) -> dict[str, Any]:
        """Return the pair as the OAuth server's answer shape (``from_response`` reads it)."""
        return {
            "access_token": self.access_token,
            "refresh_token": self.refresh_token,
            "client_endpoint": self.client_endpoint,
            "expires": int(self.expires_at) if self.expires_at else None,
            "member_id": self.member_id,
            "scope": self.scope,
            "server_endpoint": self.server_endpoint,
            "user_id": self.user_id,
            "status": self.status,
        }

    def __repr__(self) -> str:
        return (
            f"OAuthTokens(access_token={MASK}, refresh_token={MASK}, "
            f"client_endpoint={self.client_endpoint!r}, expires_at={self.expires_at!r}, "
            f"member_id={self.member_id!r}, user_id={self.user_id!r})"
        )


# A whole number as the OAuth server writes one: ASCII digits (str.isdigit() also takes
# "²", which int() refuses with a message quoting it), at most 19 of them (2**63 - 1).
_ASCII_DIGITS = re.compile(r"[0-9]+")
_MAX_DIGITS = 19


def _whole(value: Any, name: str) -> int | None:
    """``value`` as a non-negative int when it is one or its digits; ``None`` otherwise.

    Raises:
        ValueError: It has more digits than a 64-bit number (the message names ``name``,
            never the value).
    """
    if isinstance(value, bool) or not isinstance(value, int | str):
        return None
    text = str(value)
    if _ASCII_DIGITS.fullmatch(text) is None:
        return None
    if len(text) > _MAX_DIGITS:
        raise ValueError(f"the token answer's {name} is out of range")
    return int(text)


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _nonempty_str(value: object) -> bool:
    return isinstance(value, str) and bool(value)


RefreshCallback = Callable[[OAuthTokens], Awaitable[None] | None]


class TokenStore(abc.ABC):
    """Where an application keeps each portal's token pair, shared by all its clients.

    ``OAuthAuth(store=..., key=...)`` reads the pair from the store, and refreshes it
    under :meth:`lock` so that one refresh serves every client and every request of that
    portal: a waiter that gets the lock after someone else's refresh finds the new pair
    in the store and uses it instead of refreshing again (the old refresh token would be
    spent). The new pair is saved before any call is replayed with it. Keys are the
    caller's choice; the portal's ``member_id`` is a good one.
    """

    @abc.abstractmethod
    async def load(self, key: str) -> OAuthTokens | None:
        """Return the pair stored under ``key``, or ``None``."""

    @abc.abstractmethod
    async def save(self, key: str, tokens: OAuthTokens) -> None:
        """Store ``tokens`` under ``key``, replacing the previous pair."""

    @abc.abstractmethod
    def lock(self, key: str) -> AbstractAsyncContextManager[None]:
        """Return a lock to hold while refreshing ``key``'s pair: one holder at a time."""

    # The application-token part: optional, for an app serving many portals
    # (:class:`~bitrix_openlines.app.OpenLinesApp`). A store that keeps only pairs needs
    # none of it; ``OpenLinesApp`` refuses a store that does not implement the three.

    async def load_app_token(self, key: str) -> str | None:
        """Return the ``application_token`` stored under ``key``, or ``None``.

        The token a portal's events carry (from its ``ONAPPINSTALL``); optional: the base
        class raises ``NotImplementedError``.
        """
        raise NotImplementedError(f"{type(self).__name__} keeps no application tokens")

    async def save_app_token(self, key: str, application_token: str) -> None:
        """Store the portal's ``application_token`` under ``key`` (optional, see above)."""
        raise NotImplementedError(f"{type(self).__name__} keeps no application tokens")

    async def delete(self, key: str) -> None:
        """Remove everything stored under ``key``: the pair and the application token.

        For an uninstalled application (optional, see above).
        """
        raise NotImplementedError(f"{type(self).__name__} cannot delete a portal's state")

    @classmethod
    def keeps_app_tokens(cls) -> bool:
        """Whether this store implements the optional application-token methods."""
        return all(
            getattr(cls, name) is not getattr(TokenStore, name)
            for name in ("load_app_token", "save_app_token", "delete")
        )


class InMemoryTokenStore(TokenStore):
    """A :class:`TokenStore` in this process's memory, for one event loop.

    Good for one process (tests, a single-worker web app); several processes or hosts
    need a shared store (``contrib.redis.RedisTokenStore``). Its locks are
    ``asyncio.Lock``s, so use one store per event loop.
    """

    def __init__(self) -> None:
        self._pairs: dict[str, OAuthTokens] = {}
        self._app_tokens: dict[str, str] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def load(self, key: str) -> OAuthTokens | None:
        """Return the pair stored under ``key``, or ``None``."""
        return self._pairs.get(key)

    async def save(self, key: str, tokens: OAuthTokens) -> None:
        """Store ``tokens`` under ``key``."""
        if not isinstance(tokens, OAuthTokens):
            raise TypeError(f"tokens must be OAuthTokens, got {type(tokens).__name__}")
        self._pairs[key] = tokens

    def lock(self, key: str) -> asyncio.Lock:
        """Return the ``asyncio.Lock`` of ``key``."""
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        return lock

    async def load_app_token(self, key: str) -> str | None:
        """Return the ``application_token`` stored under ``key``, or ``None``."""
        return self._app_tokens.get(key)

    async def save_app_token(self, key: str, application_token: str) -> None:
        """Store the portal's ``application_token`` under ``key``."""
        if not isinstance(application_token, str) or not application_token:
            raise ValueError("application_token must be a non-empty string")
        self._app_tokens[key] = application_token

    async def delete(self, key: str) -> None:
        """Remove the pair and the application token under ``key`` (and an idle lock)."""
        self._pairs.pop(key, None)
        self._app_tokens.pop(key, None)
        lock = self._locks.get(key)
        if lock is not None and not lock.locked():
            del self._locks[key]

    def __repr__(self) -> str:
        return f"InMemoryTokenStore(keys={len(self._pairs)})"


# A token answer is under 1 KB; the OAuth server's answers are capped far lower than
# the portal's (OpenLinesClient's max_answer_bytes).
_MAX_TOKEN_ANSWER_BYTES = 64 * 1024


def _token_request(token_url: str, grant: str, query: Secret) -> SecretURL:
    """The URL of a token request: ``token_url?grant_type=...&`` and the secret ``query``."""
    return SecretURL(
        Secret(value=token_url), query=Secret(value=f"grant_type={grant}&{query.value}")
    )


async def _request_tokens(
    session: aiohttp.ClientSession | None,
    timeouts: Timeouts | None,
    url: SecretURL,
    redactor: Redactor,
) -> OAuthTokens:
    """Ask the OAuth server for a token pair (refresh or authorization code grant).

    Uses ``session`` when given (never closing it), else a session opened for this
    request alone: a refresh belongs to no client.
    """
    transport = Transport(session, timeouts=timeouts, max_answer_bytes=_MAX_TOKEN_ANSWER_BYTES)
    try:
        raw = await transport.get(url, method="oauth.token", redact=redactor)
    finally:
        await transport.close()
    body = decode_json(raw, "oauth.token", redactor)
    # The OAuth server may answer an error with status 200 (wrong_client, PROTOCOL 3.2).
    if "error" in body or raw.status >= 400:
        error = error_from_payload(body, status=raw.status, method="oauth.token", redact=redactor)
        # The body may echo the request's secrets: no frame of the traceback keeps it.
        del body
        if isinstance(error, ServerError):
            # The OAuth server failed (5xx): the refresh token may still be good.
            raise error
        if not isinstance(error, AuthError):
            error = AuthError(
                error.description,
                code=error.code,
                status=error.status,
                method="oauth.token",
                extra=error.extra,
            )
        raise error
    try:
        return OAuthTokens.from_response(body)
    except ValueError as exc:
        del body
        raise DecodeError(
            f"the OAuth server's answer is not a token pair: {exc}",
            status=raw.status,
            method="oauth.token",
        ) from None


def _rest_base(endpoint: str) -> str:
    return endpoint if endpoint.endswith("/") else endpoint + "/"


def _check_token_url(token_url: str, allow_http: bool) -> None:
    if not isinstance(token_url, str):
        raise TypeError(f"token_url must be a str, got {type(token_url).__name__}")
    parts = _split_url("token_url", token_url)
    if not parts.hostname:
        raise ValueError(
            "token_url must be a full URL like https://oauth.bitrix.info/oauth/token/"
        )
    _check_scheme("token_url", parts.scheme, parts.hostname, allow_http)


def token_url_of(tokens: OAuthTokens) -> str | None:
    """Return the token endpoint of the pair's own OAuth server, when it is a known one.

    ``server_endpoint`` is the server's REST base (``https://oauth.bitrix.info/rest/``);
    its token endpoint is ``/oauth/token/`` on the same host. ``None`` when the pair names
    no server, or one outside :data:`OAUTH_SERVERS` (loopback hosts aside).
    """
    if not tokens.server_endpoint:
        return None
    try:
        parts = _split_url("server_endpoint", tokens.server_endpoint)
    except ValueError:
        return None
    host = (parts.hostname or "").lower()
    if parts.scheme == "https" and host in OAUTH_SERVERS:
        return f"https://{parts.netloc}/oauth/token/"
    if parts.scheme in ("http", "https") and _is_loopback(host):
        return f"{parts.scheme}://{parts.netloc}/oauth/token/"
    return None


def _check_client(client_id: str, client_secret: str) -> None:
    for name, value in (("client_id", client_id), ("client_secret", client_secret)):
        if not isinstance(value, str) or not value:
            raise ValueError(f"{name} must be a non-empty string")


async def exchange_code(
    code: str,
    *,
    client_id: str,
    client_secret: str,
    token_url: str = DEFAULT_TOKEN_URL,
    session: aiohttp.ClientSession | None = None,
    timeouts: Timeouts | None = None,
    allow_http: bool = False,
) -> OAuthTokens:
    """Exchange an authorization code for a token pair (``grant_type=authorization_code``).

    The code comes back to the application's redirect URL after the user allows it, and
    lives 30 seconds (PROTOCOL.md 6.1).

    Args:
        code: The authorization code.
        client_id: The application's client id.
        client_secret: The application's client secret.
        token_url: The OAuth server.
        session: An ``aiohttp.ClientSession`` to borrow (never closed here).
        timeouts: Connect and total timeouts.
        allow_http: Allow ``http://`` for a non-loopback ``token_url``.

    Raises:
        AuthError: The code is wrong, used or expired (``invalid_grant``), or the client
            is wrong.
    """
    if not isinstance(code, str) or not code:
        raise ValueError("code must be a non-empty string")
    _check_client(client_id, client_secret)
    _check_token_url(token_url, allow_http)
    if session is not None and not isinstance(session, aiohttp.ClientSession):
        raise TypeError(f"session must be an aiohttp.ClientSession, got {type(session).__name__}")
    # The secrets go into masking wrappers, and the plain parameters are dropped: no
    # frame an error tracker records during the request holds them.
    query = Secret(
        value=urlencode({"client_id": client_id, "client_secret": client_secret, "code": code})
    )
    redactor = Redactor((Secret(value=client_secret), Secret(value=code)))
    del code, client_secret
    return await _request_tokens(
        session, timeouts, _token_request(token_url, "authorization_code", query), redactor
    )


class OAuthAuth(Auth):
    """OAuth 2.0 credentials of an installed application, refreshed when they expire.

    On ``expired_token`` or ``invalid_token`` the session calls :meth:`refresh`: the
    first task to arrive asks the OAuth server for a new pair, through the auth's own
    HTTP session (``session``, or one opened for the refresh), so the refresh goes on
    even if the client whose call started it is cancelled or closed. Every other task
    that met the same stale token waits for that one answer. The new pair is saved
    (``store``) and handed to ``on_refresh`` before any call is replayed. A refresh that
    the OAuth server refuses (``invalid_grant``: the refresh token is used or expired)
    raises the same :class:`AuthError` in every waiter and is not tried again for that
    token; any other failure (the network, a 5xx, a store that fails) is raised too, and
    a later call tries again.

    With a :class:`TokenStore`, many ``OAuthAuth`` objects (many clients) for one portal
    share one pair: the refresh runs under the store's lock, and one that finds a newer
    pair in the store than the one that failed uses it without refreshing.

    Args:
        client_id: The application's client id.
        client_secret: The application's client secret.
        tokens: The current token pair; optional with a ``store`` that holds it (it then
            seeds the store only if the store has nothing under ``key``).
        token_url: The OAuth server's token endpoint. ``None`` (the default): the pair's
            own server (its ``server_endpoint``, when it is one of
            :data:`OAUTH_SERVERS`: the east region's portals name
            ``oauth.bitrix24.tech``), else :data:`DEFAULT_TOKEN_URL`.
        on_refresh: Called (and awaited, if it is a coroutine function) with each new
            pair. If it raises, the error is logged and the new pair is still used.
        store: Where the portal's pair lives, shared with other clients.
        key: The pair's key in ``store`` (the portal's ``member_id`` by default, when the
            tokens give one).
        allow_http: Allow ``http://`` endpoints for non-loopback hosts.
        session: An ``aiohttp.ClientSession`` to ask the OAuth server through (never
            closed here); ``None`` opens one for each refresh (once an hour or so).
        timeouts: Connect and total timeouts of the token requests.
    """

    def __init__(
        self,
        *,
        client_id: str,
        client_secret: str,
        tokens: OAuthTokens | None = None,
        token_url: str | None = None,
        on_refresh: RefreshCallback | None = None,
        store: TokenStore | None = None,
        key: str | None = None,
        allow_http: bool = False,
        session: aiohttp.ClientSession | None = None,
        timeouts: Timeouts | None = None,
    ) -> None:
        _check_client(client_id, client_secret)
        if tokens is not None and not isinstance(tokens, OAuthTokens):
            raise TypeError(f"tokens must be OAuthTokens, got {type(tokens).__name__}")
        if store is not None and not isinstance(store, TokenStore):
            raise TypeError(f"store must be a TokenStore, got {type(store).__name__}")
        if store is None and tokens is None:
            raise ValueError("OAuthAuth needs tokens, or a store (and key) that holds them")
        if key is None and store is not None:
            key = tokens.member_id if tokens is not None else None
            if not key:
                raise ValueError("key is needed with a store (the portal's member_id, say)")
        if key is not None and (not isinstance(key, str) or not key):
            raise ValueError(f"key must be a non-empty string, got {key!r}")
        if on_refresh is not None and not callable(on_refresh):
            raise TypeError("on_refresh must be callable")
        if session is not None and not isinstance(session, aiohttp.ClientSession):
            raise TypeError(
                f"session must be an aiohttp.ClientSession, got {type(session).__name__}"
            )
        if timeouts is not None and not isinstance(timeouts, Timeouts):
            raise TypeError(f"timeouts must be Timeouts, got {type(timeouts).__name__}")
        if token_url is not None:
            _check_token_url(token_url, allow_http)
        self._allow_http = allow_http
        if tokens is not None:
            tokens = self._upgraded(tokens)
            self._check_endpoint(tokens)
        self._client_id = client_id
        self._client_secret = Secret(value=client_secret)
        self.redactor = Redactor((self._client_secret,))
        self._credentials: Credentials | None = None
        # With a store, the pair is read from it on the first call (``tokens`` only seeds
        # an empty store); without one, ``tokens`` is the pair.
        self._tokens: OAuthTokens | None = None
        if store is None:
            self._set_tokens(tokens)
        self._seed = tokens
        self._token_url = token_url
        self._on_refresh = on_refresh
        self._store = store
        self._key = key
        self._session = session
        self._timeouts = timeouts
        self._inflight: asyncio.Future[RefreshResult] | None = None
        self._inflight_for: str | None = None
        self._flight = 0
        self._last = RefreshResult(flight=0, duration=0.0, asked_server=False)
        # A refreshed pair the store refused to save: saved again before the next call.
        self._unsaved: OAuthTokens | None = None
        self.refresh_count = 0

    def _set_tokens(self, tokens: OAuthTokens | None) -> None:
        self._tokens = tokens
        if tokens is not None:
            self.redactor.set_current(
                (Secret(value=tokens.access_token), Secret(value=tokens.refresh_token))
            )
            parts = urlsplit(tokens.client_endpoint)
            self._portal = f"{parts.scheme}://{parts.netloc}"
            # Built once per pair, not per call.
            self._credentials = Credentials(
                base=_rest_base(tokens.client_endpoint), token=tokens.access_token
            )

    def _upgraded(self, tokens: OAuthTokens) -> OAuthTokens:
        """The pair with an ``http://`` endpoint of a non-loopback host made ``https://``.

        Older portals answer ``http://`` in ``client_endpoint`` though they serve (and
        demand) HTTPS; refusing such a pair after its refresh token was spent would lose
        the application's authorisation. ``allow_http=True`` keeps plain HTTP.
        """
        endpoint = urlsplit(tokens.client_endpoint)
        if (
            endpoint.scheme == "http"
            and not self._allow_http
            and not _is_loopback(endpoint.hostname or "")
        ):
            upgraded = "https" + tokens.client_endpoint[len("http") :]
            logger.info("the pair's client_endpoint is http://; using https:// for its host")
            return attrs.evolve(tokens, client_endpoint=upgraded)
        return tokens

    def _token_url_for(self, tokens: OAuthTokens) -> str:
        if self._token_url is not None:
            return self._token_url
        return token_url_of(tokens) or DEFAULT_TOKEN_URL

    def _usable(self, tokens: OAuthTokens, what: str) -> None:
        """Refuse a pair from the network or a store whose endpoint we would not call."""
        try:
            self._check_endpoint(tokens)
        except ValueError as exc:
            raise AuthError(
                f"{what} is unusable: {exc}", code="INVALID_CLIENT_ENDPOINT", method="oauth.token"
            ) from None

    def _check_endpoint(self, tokens: OAuthTokens) -> None:
        endpoint = _split_url("tokens.client_endpoint", tokens.client_endpoint)
        _check_scheme(
            "tokens.client_endpoint", endpoint.scheme, endpoint.hostname or "", self._allow_http
        )

    @property
    def tokens(self) -> OAuthTokens:
        """The current token pair.

        Raises:
            RuntimeError: It is to be loaded from the store and no call has done so yet.
        """
        if self._tokens is None:
            raise RuntimeError("the tokens are loaded from the store on the first call")
        return self._tokens

    @property
    def busy(self) -> bool:
        """Whether a refresh is in flight, or a refreshed pair still waits to be saved.

        Dropping such an auth could lose the only valid pair (``OpenLinesApp`` never
        evicts it).
        """
        return self._unsaved is not None or (
            self._inflight is not None and not self._inflight.done()
        )

    @property
    def store(self) -> TokenStore | None:
        """The token store, if any."""
        return self._store

    @property
    def key(self) -> str | None:
        """The pair's key in the store, if any."""
        return self._key

    @property
    def portal(self) -> str:
        """The portal's address, from the tokens' ``client_endpoint`` (or the store key)."""
        if self._tokens is None:
            return f"store:{self._key}"
        return self._portal

    async def _current(self) -> OAuthTokens:
        if self._tokens is not None:
            return self._tokens
        assert self._store is not None
        assert self._key is not None
        try:
            loaded = await self._store.load(self._key)
            if loaded is None and self._seed is not None:
                await self._store.save(self._key, self._seed)
                loaded = self._seed
        except OpenLinesError:
            raise
        except Exception as exc:
            # The application's own store failed (its text may quote a token).
            raise TokenStoreError(
                f"the token store failed: {type(exc).__name__}: {self.redactor(str(exc))}"
            ) from None
        if loaded is None:
            raise AuthError(
                f"no OAuth tokens stored under the key {self._key!r}; install the "
                "application (or save a pair) first",
                code="NO_TOKENS",
            )
        loaded = self._upgraded(loaded)
        self._usable(loaded, f"the pair stored under {self._key!r}")
        if self._tokens is None:
            self._set_tokens(loaded)
        return self._tokens or loaded

    async def credentials(self) -> Credentials:
        """Return ``client_endpoint`` as the base and the access token to send.

        A refreshed pair the store failed to save is saved again first; if that fails
        again, the pair is still used (it is the only valid one) and kept for the next try.
        """
        if self._unsaved is not None:
            await self._save_unsaved()
        await self._current()
        assert self._credentials is not None  # set with the tokens
        return self._credentials

    async def refresh(self, stale: Credentials) -> RefreshResult | None:
        """Refresh once for all tasks that met ``stale``'s expired token; see the class."""
        if stale.token is None:
            return None
        if self._tokens is not None and self._tokens.access_token != stale.token:
            # Someone already refreshed since this call was prepared: just replay.
            return self._last
        if (
            self._inflight is not None
            and self._inflight_for == stale.token
            and self._inflight.done()
            and self._store is not None
        ):
            # The OAuth server refused this refresh token for good; a pair another
            # client or process refreshed since, and saved, still saves the day.
            newer = await self._store.load(self._key or "")
            if newer is not None and newer.access_token != stale.token:
                self._adopt(newer)
                self._inflight = None
                self._last = RefreshResult(self._flight, 0.0, None, asked_server=False)
                return self._last
        if self._inflight is None or self._inflight_for != stale.token:
            self._flight += 1
            self._inflight_for = stale.token
            self._inflight = asyncio.ensure_future(self._refresh(stale, self._flight))
            self._inflight.add_done_callback(self._after_refresh)
        # shield: one waiter being cancelled must not cancel the refresh for the others.
        return await asyncio.shield(self._inflight)

    def _after_refresh(self, future: asyncio.Future[RefreshResult]) -> None:
        if future.cancelled() or future.exception() is not None:  # BaseException only
            self._inflight = None
            return
        if not isinstance(future.result().error, AuthError):
            # Only the OAuth server's verdict on this refresh token is final; a network
            # or server failure, or a store that failed, says nothing about it: a later
            # call may try again.
            self._inflight = None

    async def _refresh(self, stale: Credentials, flight: int) -> RefreshResult:
        started = time.perf_counter()
        asked = True
        try:
            if self._store is None:
                await self._refresh_with(await self._current())
            else:
                assert self._key is not None
                async with self._store.lock(self._key):
                    stored = await self._store.load(self._key)
                    if stored is not None and stored.access_token != stale.token:
                        # Another client (or process) refreshed while we waited for the lock.
                        asked = False
                        self._adopt(stored)
                    else:
                        await self._refresh_with(stored or await self._current())
        except OpenLinesError as error:
            result = RefreshResult(flight, time.perf_counter() - started, error, asked)
        except Exception as exc:
            # A store of the application's own that failed (its text may quote a token).
            store_error = TokenStoreError(
                f"the token store failed during the refresh: {type(exc).__name__}: "
                f"{self.redactor(str(exc))}"
            )
            result = RefreshResult(flight, time.perf_counter() - started, store_error, asked)
        else:
            result = RefreshResult(flight, time.perf_counter() - started, None, asked)
        self._last = result
        return result

    async def _refresh_with(self, pair: OAuthTokens) -> None:
        # The request's secrets stay in masking wrappers (Secret, SecretURL): no variable
        # of this frame, nor of the ones below it, holds them as text.
        url = _token_request(
            self._token_url_for(pair),
            "refresh_token",
            Secret(
                value=urlencode(
                    {
                        "client_id": self._client_id,
                        "client_secret": self._client_secret.value,
                        "refresh_token": pair.refresh_token,
                    }
                )
            ),
        )
        tokens = await _request_tokens(self._session, self._timeouts, url, self.redactor)
        # The old refresh token is spent now: from here on, nothing may lose this pair.
        # It is used in memory and handed to on_refresh at once; a store that fails to
        # save it gets it again before the next call (see credentials()).
        self._adopt(tokens)
        self.refresh_count += 1
        logger.info("oauth tokens refreshed (refresh #%d)", self.refresh_count)
        await self._notify(self.tokens)
        if self._store is not None:
            self._unsaved = self.tokens
            await self._save_unsaved(locked=True)

    def _adopt(self, tokens: OAuthTokens) -> None:
        tokens = self._upgraded(tokens)
        self._usable(tokens, "the refreshed pair")
        self._set_tokens(tokens)

    async def _save_unsaved(self, *, locked: bool = False) -> None:
        """Save the pair a refresh gave, if not saved yet; log (not raise) a failure.

        Args:
            locked: The caller holds the store's lock (the refresh itself).
        """
        pair = self._unsaved
        if pair is None or self._store is None or self._key is None:
            return
        try:
            if locked:
                await self._store.save(self._key, pair)
            else:
                async with self._store.lock(self._key):
                    await self._store.save(self._key, pair)
        except Exception as exc:
            # A Redis blip, a database timeout: the pair stays in memory (it is the only
            # valid one now) and is saved again before the next call.
            details = self.redactor(f"{type(exc).__name__}: {exc}")
            logger.error(
                "the token store failed to save the refreshed pair; it is used in memory "
                "and saved again before the next call (%s)",
                details,
            )
        else:
            if self._unsaved is pair:
                self._unsaved = None

    async def _notify(self, tokens: OAuthTokens) -> None:
        if self._on_refresh is None:
            return
        try:
            outcome = self._on_refresh(tokens)
            if inspect.isawaitable(outcome):
                await outcome
        except Exception as exc:
            # The callback's error may quote the tokens it failed to store: redact it.
            details = self.redactor("".join(traceback.format_exception(exc)))
            logger.error("on_refresh failed; the new tokens are still used in memory\n%s", details)

    def __repr__(self) -> str:
        return (
            f"OAuthAuth(client_id={self._client_id!r}, client_secret={MASK}, "
            f"portal={self.portal!r}, token_url={self._token_url or 'from the pair'!r})"
        )
