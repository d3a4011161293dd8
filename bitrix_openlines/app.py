"""One application installed on many portals: a client per portal, events routed to them.

A marketplace application is installed on hundreds or thousands of portals. Each has its
own leaky bucket, its own single-use refresh tokens, its own ``application_token`` and its
own operating-time budget. :class:`OpenLinesApp` keeps all of that per portal, keyed by
the portal's ``member_id``::

    app = OpenLinesApp(client_id=..., client_secret=..., store=RedisTokenStore(redis))
    event = await app.handle_event(body, content_type)   # install, verify, uninstall
    client = app.portal(event.member_id)                 # that portal's client
    dialog = await client.get_dialog(chat_id=13)

**State.** The token pairs and application tokens live in the :class:`TokenStore` (in
memory, or in Redis for a fleet of workers: it survives a restart). In memory the app
keeps only the *live* portals: for each, one :class:`OAuthAuth` (the portal's
single-flight refresh), its :class:`OperatingBudget` and its client. Every live client
shares the app's one ``aiohttp.ClientSession`` and one limiter keyed by portal (the
process's shared :class:`LeakyBucketLimiter`, or a ``RedisRateLimiter`` for a fleet).

**Eviction** (:class:`Eviction`). A portal not asked for during ``idle_seconds`` (300 by
default) is evicted, and so is the least recently used one when more than ``max_live``
(1,000 by default) are live. Evicting drops the app's reference only: it never closes the
client, so a call in flight (or a caller still holding the client) goes on. A portal is
never evicted while it has a call in flight, a refresh in flight or a refreshed pair not
saved yet (the only valid pair would be lost), or a method paused by its operating
budget. Its bucket stays in the limiter until it is empty (an empty bucket is forgotten
losslessly). Asked for again, the portal is rebuilt from the store: the pair there is the
newest, so no refresh is needed.
"""

from __future__ import annotations

import collections
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import Any, Final, TypeVar

import aiohttp
import attrs

from bitrix_openlines.auth import InMemoryTokenStore, OAuthAuth, OAuthTokens, TokenStore
from bitrix_openlines.client import OpenLinesClient
from bitrix_openlines.errors import (
    DecodeError,
    EventError,
    EventVerificationError,
    OpenLinesError,
    PortalMovedError,
    RateLimitError,
    ServerError,
    TokenStoreError,
    TransportError,
)
from bitrix_openlines.events import APP_INSTALL, Event, EventLimits, parse_event, verify_event
from bitrix_openlines.hooks import Hooks
from bitrix_openlines.ratelimit import LeakyBucketLimiter, Limiter, OperatingBudget, RateLimit
from bitrix_openlines.retry import RetryPolicy
from bitrix_openlines.transport import Timeouts

__all__ = ["APP_UNINSTALL", "Eviction", "OpenLinesApp"]

logger = logging.getLogger("bitrix_openlines")

# Failures that say nothing of an install's tokens: the portal could not answer now.
_UNREACHABLE = (TransportError, ServerError, RateLimitError, DecodeError)

T = TypeVar("T")

#: The event a portal posts when it uninstalls the application.
APP_UNINSTALL: Final = "ONAPPUNINSTALL"

# A member_id is 32 hex digits; keys are built from it (``<prefix><member_id>:app`` in
# Redis), so a key may hold no separator of ours.
_MEMBER_ID: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")
_DEFAULT_RATE: Final = RateLimit.standard()
_DEFAULT_EVENT_LIMITS: Final = EventLimits()


def _positive_number(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"Eviction.{name} must be a positive number, got {value!r}")


@attrs.frozen(slots=True)
class Eviction:
    """When :class:`OpenLinesApp` forgets a live portal (see the module docs).

    Attributes:
        max_live: The most portals kept live; past it, the least recently used idle ones
            are evicted (1,000). Portals with a call or a refresh in flight are not, so
            the bound is ``max(max_live, portals busy at once)``.
        idle_seconds: A portal not asked for this long is evicted (300 s: its bucket,
            at 2 requests/s, has long been empty).
        sweep_seconds: How often, at most, :meth:`OpenLinesApp.portal` looks for idle
            portals (``idle_seconds / 10``, at least 1 s, by default).
    """

    max_live: int = 1000
    idle_seconds: float = 300.0
    sweep_seconds: float | None = None

    def __attrs_post_init__(self) -> None:
        max_live = self.max_live
        if isinstance(max_live, bool) or not isinstance(max_live, int) or max_live < 1:
            raise ValueError(f"Eviction.max_live must be a positive integer, got {max_live!r}")
        _positive_number("idle_seconds", self.idle_seconds)
        if self.sweep_seconds is not None:
            _positive_number("sweep_seconds", self.sweep_seconds)

    @property
    def sweep_interval(self) -> float:
        """Seconds between two looks for idle portals."""
        if self.sweep_seconds is not None:
            return float(self.sweep_seconds)
        return max(1.0, self.idle_seconds / 10)


@attrs.define(slots=True)
class _Live:
    """A live portal: its auth (single-flight refresh), budget and client."""

    auth: OAuthAuth
    budget: OperatingBudget
    client: OpenLinesClient
    last_used: float

    @property
    def quiescent(self) -> bool:
        """Whether evicting it loses nothing and breaks nothing (see the module docs)."""
        return not (self.client.calls_in_flight or self.auth.busy or self.budget.pausing)


class OpenLinesApp:
    """An application installed on many portals; see the module docs.

    Use it as an async context manager (or call :meth:`close`).

    Args:
        client_id: The application's client id.
        client_secret: The application's client secret.
        store: Where each portal's pair and ``application_token`` live, keyed by
            ``member_id``: a :class:`TokenStore` implementing the optional
            ``load_app_token``/``save_app_token``/``delete`` (``InMemoryTokenStore``,
            ``RedisTokenStore``). An ``InMemoryTokenStore`` by default.
        session: The ``aiohttp.ClientSession`` every portal's client and every refresh
            borrows (never closed by the app); ``None``: the app opens one when first
            needed and closes it in :meth:`close`.
        rate_limit: Every portal's bucket (``RateLimit.standard()``: 2/s, burst 50, which
            is safe for Enterprise portals too); the process's shared limiter for it
            keeps one bucket per portal.
        limiter: A limiter to use instead (``RedisRateLimiter`` for a fleet of workers).
        retry: The retry policy of every client.
        timeouts: Connect and total timeouts of every request.
        hooks: Callbacks observing every client's requests, retries and refreshes.
        token_url: The OAuth server; ``None``: each pair's own (see ``OAuthAuth``).
        allow_http: Allow ``http://`` endpoints for non-loopback hosts.
        eviction: When live portals are forgotten (``Eviction()``: 1,000 live, 300 s).
        verify_install: Before storing the pair of an ``ONAPPINSTALL`` from a portal not
            installed yet, call ``app.info`` with it: the event is refused unless the
            tokens work at the portal they name (one request of that portal's bucket).
        event_limits: The caps on an event body (``EventLimits()`` by default).
        clock: A monotonic clock in seconds, for eviction (injectable for tests).

    Raises:
        ValueError: ``client_id`` or ``client_secret`` is empty.
        TypeError: A parameter has the wrong type, or ``store`` keeps no application
            tokens.
    """

    def __init__(
        self,
        *,
        client_id: str,
        client_secret: str,
        store: TokenStore | None = None,
        session: aiohttp.ClientSession | None = None,
        rate_limit: RateLimit | None = _DEFAULT_RATE,
        limiter: Limiter | None = None,
        retry: RetryPolicy | None = None,
        timeouts: Timeouts | None = None,
        hooks: Hooks | None = None,
        token_url: str | None = None,
        allow_http: bool = False,
        eviction: Eviction | None = None,
        verify_install: bool = True,
        event_limits: EventLimits | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        for name, value in (("client_id", client_id), ("client_secret", client_secret)):
            if not isinstance(value, str) or not value:
                raise ValueError(f"{name} must be a non-empty string")
        if store is None:
            store = InMemoryTokenStore()
        if not isinstance(store, TokenStore):
            raise TypeError(f"store must be a TokenStore, got {type(store).__name__}")
        if not store.keeps_app_tokens():
            raise TypeError(
                f"store must implement load_app_token, save_app_token and delete "
                f"({type(store).__name__} does not): OpenLinesApp keeps each portal's "
                "application token there"
            )
        if session is not None and not isinstance(session, aiohttp.ClientSession):
            raise TypeError(
                f"session must be an aiohttp.ClientSession, got {type(session).__name__}"
            )
        if rate_limit is not None and not isinstance(rate_limit, RateLimit):
            raise TypeError(
                f"rate_limit must be a RateLimit or None, got {type(rate_limit).__name__}"
            )
        if limiter is not None and not isinstance(limiter, Limiter):
            raise TypeError(f"limiter must be a Limiter, got {type(limiter).__name__}")
        if eviction is not None and not isinstance(eviction, Eviction):
            raise TypeError(f"eviction must be an Eviction, got {type(eviction).__name__}")
        if event_limits is not None and not isinstance(event_limits, EventLimits):
            raise TypeError(
                f"event_limits must be an EventLimits, got {type(event_limits).__name__}"
            )
        if not callable(clock):
            raise TypeError("clock must be callable")
        if limiter is None and rate_limit is not None:
            limiter = LeakyBucketLimiter.shared(rate_limit)
        # Checked once here (the same checks as OAuthAuth's), not per portal.
        OAuthAuth(
            client_id=client_id,
            client_secret=client_secret,
            store=store,
            key="check",
            token_url=token_url,
            allow_http=allow_http,
            timeouts=timeouts,
        )
        self._client_id = client_id
        self._client_secret = client_secret
        self._store = store
        self._session = session
        self._own_session = False
        self._limiter = limiter
        self._retry = retry
        self._timeouts = timeouts
        self._hooks = hooks
        self._token_url = token_url
        self._allow_http = allow_http
        self._eviction = eviction or Eviction()
        self._verify_install = bool(verify_install)
        self._limits = event_limits
        self._clock = clock
        self._live: collections.OrderedDict[str, _Live] = collections.OrderedDict()
        self._next_sweep = clock() + self._eviction.sweep_interval
        self._closed = False
        #: Portals evicted so far (for metrics and tests).
        self.evictions = 0

    # -- lifecycle -------------------------------------------------------------------

    async def __aenter__(self) -> OpenLinesApp:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Forget every live portal; close the HTTP session if the app opened it."""
        self._closed = True
        self._live.clear()
        if self._own_session and self._session is not None:
            await self._session.close()

    @property
    def store(self) -> TokenStore:
        """Where the portals' pairs and application tokens live."""
        return self._store

    @property
    def limiter(self) -> Limiter | None:
        """The limiter every portal's client shares (one bucket per portal)."""
        return self._limiter

    @property
    def eviction(self) -> Eviction:
        """The eviction policy."""
        return self._eviction

    @property
    def live(self) -> int:
        """How many portals are live (have an auth and a client in memory) now."""
        return len(self._live)

    def is_live(self, member_id: str) -> bool:
        """Whether ``member_id``'s portal is live now."""
        return member_id in self._live

    def __repr__(self) -> str:
        return (
            f"OpenLinesApp(client_id={self._client_id!r}, client_secret=***, "
            f"store={self._store!r}, live={len(self._live)})"
        )

    # -- portals ---------------------------------------------------------------------

    def portal(self, member_id: str) -> OpenLinesClient:
        """Return the client of the portal ``member_id``, making it live if it is not.

        The pair is read from the store on the client's first call (an
        ``AuthError`` with code ``NO_TOKENS`` when the app is not installed there).
        Call it for each piece of work rather than keeping the client: it keeps the
        portal live. Needs a running event loop when the app opens its own session.

        Raises:
            ValueError: ``member_id`` is not a member id (1 to 64 letters, digits, ``_``
                or ``-``).
            RuntimeError: The app is closed.
        """
        _check_member_id(member_id)
        if self._closed:
            raise RuntimeError("the OpenLinesApp is closed")
        now = self._clock()
        live = self._live.get(member_id)
        if live is not None:
            live.last_used = now
            self._live.move_to_end(member_id)
        else:
            live = self._make_live(member_id, now)
            self._live[member_id] = live
            if len(self._live) > self._eviction.max_live:
                self._evict_over(self._eviction.max_live, keep=member_id)
        if now >= self._next_sweep:
            self.evict_idle()
        return live.client

    def _make_live(self, member_id: str, now: float) -> _Live:
        session = self._http()
        auth = OAuthAuth(
            client_id=self._client_id,
            client_secret=self._client_secret,
            store=self._store,
            key=member_id,
            token_url=self._token_url,
            allow_http=self._allow_http,
            session=session,
            timeouts=self._timeouts,
        )
        budget = OperatingBudget()
        client = OpenLinesClient(
            auth,
            rate_limit=None,
            limiter=self._limiter,
            retry=self._retry,
            operating_budget=budget,
            session=session,
            timeouts=self._timeouts,
            hooks=self._hooks,
        )
        return _Live(auth=auth, budget=budget, client=client, last_used=now)

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
            self._own_session = True
        return self._session

    def evict(self, member_id: str) -> bool:
        """Evict ``member_id``'s portal now if it is live and idle; return whether it was."""
        live = self._live.get(member_id)
        if live is None or not live.quiescent:
            return False
        del self._live[member_id]
        self.evictions += 1
        return True

    def evict_idle(self) -> int:
        """Evict the portals idle for ``idle_seconds``; prune empty buckets. Return how many.

        :meth:`portal` runs it every ``sweep_interval`` seconds; call it from a timer to
        sweep an app that is not asked for portals.
        """
        now = self._clock()
        self._next_sweep = now + self._eviction.sweep_interval
        cutoff = now - self._eviction.idle_seconds
        evicted = 0
        busy: list[str] = []
        for member_id, live in list(self._live.items()):
            if live.last_used > cutoff:
                break  # in order of last use: every later one is newer
            if live.quiescent:
                del self._live[member_id]
                evicted += 1
            else:
                busy.append(member_id)
        for member_id in busy:
            # Still working: counted as used now, so the next sweep does not scan it first.
            self._live[member_id].last_used = now
            self._live.move_to_end(member_id)
        self.evictions += evicted
        if isinstance(self._limiter, LeakyBucketLimiter):
            self._limiter.prune()
        return evicted

    def _evict_over(self, bound: int, *, keep: str) -> None:
        """Evict the least recently used idle portals until ``bound`` are live."""
        excess = len(self._live) - bound
        for member_id, live in list(self._live.items()):
            if excess <= 0:
                return
            if member_id != keep and live.quiescent:
                del self._live[member_id]
                self.evictions += 1
                excess -= 1

    # -- installs and events ---------------------------------------------------------

    async def register(self, member_id: str, tokens: OAuthTokens, application_token: str) -> None:
        """Store a portal's pair and ``application_token`` (an install known otherwise).

        The pair is saved first: events are accepted only once the app can act on them.

        Raises:
            ValueError: ``member_id`` or ``application_token`` is malformed.
            TypeError: ``tokens`` is not ``OAuthTokens``.
        """
        _check_member_id(member_id)
        if not isinstance(tokens, OAuthTokens):
            raise TypeError(f"tokens must be OAuthTokens, got {type(tokens).__name__}")
        if not isinstance(application_token, str) or not application_token:
            raise ValueError("application_token must be a non-empty string")
        await self._stored(self._store.save(member_id, tokens), "save the tokens")
        await self._stored(
            self._store.save_app_token(member_id, application_token), "save the application token"
        )
        # A live auth holds the previous pair in memory.
        self._live.pop(member_id, None)

    async def forget(self, member_id: str) -> None:
        """Remove everything of ``member_id``'s portal: stored state and live client."""
        _check_member_id(member_id)
        self._live.pop(member_id, None)
        await self._stored(self._store.delete(member_id), "delete the portal's state")

    async def application_token(self, member_id: str) -> str | None:
        """The stored ``application_token`` of ``member_id``'s portal, or ``None``."""
        _check_member_id(member_id)
        return await self._stored(
            self._store.load_app_token(member_id), "load the application token"
        )

    @property
    def event_limits(self) -> EventLimits:
        """The caps on an event body this app parses with (``EventLimits()`` by default)."""
        return self._limits if self._limits is not None else _DEFAULT_EVENT_LIMITS

    async def handle_event(
        self,
        body: bytes | str | Mapping[str, Any],
        content_type: str | None = None,
        *,
        limits: EventLimits | None = None,
    ) -> Event:
        """Parse an event the portal posted, act on it as an installed app must, return it.

        - ``ONAPPINSTALL``: the pair and the ``application_token`` of its ``auth`` block
          are stored under its ``member_id``. A portal installed already must send the
          stored token (else anyone could take it over); a new one must pass the
          ``app.info`` check (``verify_install``).
        - every other event is verified against its portal's stored token;
        - ``ONAPPUNINSTALL`` (verified) then removes the portal's state.

        Args:
            body: The raw body (form-encoded as Bitrix24 posts it, or JSON), or a mapping
                (see :func:`~bitrix_openlines.events.parse_event`).
            content_type: The request's ``Content-Type``.
            limits: The caps on the body for this event, in place of the app's
                ``event_limits`` (``app_event_handler(limits=...)`` passes its own).

        Returns:
            The event, verified (an install: stored).

        Raises:
            EventError: The body is not an event or is past the limits, or an install
                lacks its tokens (answer 400). An event whose ``member_id`` names no
                portal of this app is refused by verification (403, below).
            EventVerificationError: The event's token is missing, wrong, or its portal
                unknown; an install's tokens do not work, or name a portal that moved
                (answer 403).
            TransportError, ServerError, RateLimitError, DecodeError: An install's
                portal could not be reached, or answered with a failure of its own
                (an overload, a 5xx, a body that is not JSON), while its tokens were
                checked: nothing is stored (answer 503).
            TokenStoreError: The store failed (``RedisUnavailableError`` for Redis).
        """
        if limits is not None and not isinstance(limits, EventLimits):
            raise TypeError(f"limits must be an EventLimits, got {type(limits).__name__}")
        event = parse_event(
            body, content_type, limits=limits if limits is not None else self._limits
        )
        member_id = event.member_id
        if not member_id or not _MEMBER_ID.fullmatch(member_id):
            raise EventVerificationError(
                "the event carries no valid auth[member_id]: its portal cannot be found"
            )
        if event.name == APP_INSTALL:
            await self._install(event, member_id)
            return event
        expected = await self.application_token(member_id)
        if not expected:
            raise EventVerificationError(
                "no application token is stored for the event's portal (member_id): "
                "the application is not installed there, or the event is forged"
            )
        verify_event(event, expected)
        if event.name == APP_UNINSTALL:
            await self.forget(member_id)
        return event

    async def _install(self, event: Event, member_id: str) -> None:
        auth = event.auth
        tokens = auth.tokens() if auth is not None else None
        application_token = auth.application_token if auth is not None else None
        if tokens is None or not application_token:
            raise EventError("the ONAPPINSTALL event lacks its tokens or application_token")
        known = await self.application_token(member_id)
        if known:
            # A reinstall must carry the token already trusted.
            verify_event(event, known)
        elif self._verify_install:
            await self._check_tokens(tokens)
        await self.register(member_id, tokens, application_token)
        logger.info("installed on a portal (member_id %s)", member_id)

    async def _check_tokens(self, tokens: OAuthTokens) -> None:
        """Refuse an install whose tokens do not work at the portal they name."""
        try:
            auth = OAuthAuth(
                client_id=self._client_id,
                client_secret=self._client_secret,
                tokens=tokens,
                token_url=self._token_url,
                allow_http=self._allow_http,
                session=self._http(),
                timeouts=self._timeouts,
            )
        except ValueError as exc:
            raise EventVerificationError(f"the install tokens are unusable: {exc}") from None
        client = OpenLinesClient(
            auth,
            rate_limit=None,
            limiter=self._limiter,
            retry=self._retry,
            operating_budget=OperatingBudget(),
            session=self._http(),
            timeouts=self._timeouts,
        )
        try:
            info = await client.call_raw("app.info")
        except OpenLinesError as error:
            if (
                isinstance(error, _UNREACHABLE)
                and not isinstance(error, PortalMovedError)
                and error.method == "app.info"
            ):
                # Not a refusal: the portal itself could not answer now (the handler
                # answers 503, and nothing is stored). A failed refresh (method
                # oauth.token) comes after the portal refused the token: refused.
                raise
            raise EventVerificationError(
                f"the install tokens do not work at the portal they name ({error.code})"
            ) from None
        finally:
            await client.close()
        if not isinstance(info, dict) or info.get("INSTALLED") is False:
            raise EventVerificationError("app.info does not show the application installed")

    async def _stored(self, operation: Awaitable[T], what: str) -> T:
        try:
            return await operation
        except OpenLinesError:
            raise
        except Exception as exc:
            # The application's own store: its text may quote a token, so not shown.
            raise TokenStoreError(
                f"the token store failed to {what}: {type(exc).__name__}"
            ) from None


def _check_member_id(member_id: object) -> None:
    if not isinstance(member_id, str):
        raise TypeError(f"member_id must be a str, got {type(member_id).__name__}")
    if not _MEMBER_ID.fullmatch(member_id):
        raise ValueError(
            "member_id must be 1 to 64 letters, digits, '_' or '-' (the portal's "
            f"member_id), got {member_id[:70]!r}"
        )
