"""The HTTP edge: owns or borrows one ``aiohttp.ClientSession``; posts bytes, returns bytes.

It knows nothing of Bitrix24 and holds no secret as text: a URL or a body carrying one
comes in a masking wrapper (:class:`~bitrix_openlines._redact.SecretURL`,
:class:`~bitrix_openlines._redact.SecretBody`), opened in the argument of aiohttp's call,
so that no variable of the SDK's frames holds it (error trackers record them). It
returns the status, the raw body and
its content type (:class:`~bitrix_openlines.wire.RawResponse`), turns network failures
into :class:`~bitrix_openlines.errors.TransportError`, and a URL no request can be sent
to into :class:`~bitrix_openlines.errors.InvalidURLError` (bad input, never retried). Its
error texts are built from the failure's kind and the host alone, never from the URL
(which, for a webhook, holds the secret code) nor from aiohttp's own text (which may
quote the URL). Redirects are not followed: a renamed portal answers 302 and a followed
POST would lose its body (PROTOCOL.md section 1), so a 3xx becomes
:class:`~bitrix_openlines.errors.PortalMovedError` naming the new address.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from operator import attrgetter
from urllib.parse import urlsplit

import aiohttp
import attrs
from yarl import URL

from bitrix_openlines._redact import SecretBody, SecretURL
from bitrix_openlines._version import __version__
from bitrix_openlines.errors import (
    ClientClosedError,
    InvalidURLError,
    PortalMovedError,
    RequestTimeoutError,
    TransportError,
)
from bitrix_openlines.wire import RawResponse

__all__ = ["Timeouts", "Transport"]

_USER_AGENT = f"bitrix-openlines/{__version__}"


@attrs.frozen(slots=True)
class Timeouts:
    """How long to wait for the network, in seconds.

    Attributes:
        connect: For a connection (including the TLS handshake) from the pool.
        total: For the whole request, answer included. The cloud stops a REST request
            after 60 s (PROTOCOL.md 4.1), so the default leaves room for that.
    """

    connect: float = 10.0
    total: float = 75.0

    def __attrs_post_init__(self) -> None:
        for name in ("connect", "total"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ValueError(f"Timeouts.{name} must be a positive number, got {value!r}")


class Transport:
    """Send POST and GET requests through one ``aiohttp.ClientSession``.

    Args:
        session: A session to borrow; it is never closed here. ``None``: one is created
            lazily on the first request and closed by :meth:`close`.
        timeouts: Connect and total timeouts.
        limit: The connection pool size of an owned session.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession | None = None,
        *,
        timeouts: Timeouts | None = None,
        limit: int = 100,
    ) -> None:
        if session is not None and not isinstance(session, aiohttp.ClientSession):
            raise TypeError(
                f"session must be an aiohttp.ClientSession, got {type(session).__name__}"
            )
        self._session = session
        self._owned = session is None
        self._timeouts = timeouts or Timeouts()
        self._timeout = aiohttp.ClientTimeout(
            total=self._timeouts.total, connect=self._timeouts.connect
        )
        self._limit = limit
        self._closed = False

    @property
    def owns_session(self) -> bool:
        """Whether the session is ours to close."""
        return self._owned

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def _get_session(self) -> aiohttp.ClientSession:
        if self._closed:
            raise ClientClosedError("the client is closed; create a new one")
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._limit),
                headers={"User-Agent": _USER_AGENT},
            )
        return self._session

    async def post(
        self, url: str | SecretURL, body: bytes | SecretBody, *, method: str | None = None
    ) -> RawResponse:
        """POST the JSON ``body`` to ``url`` and return the raw answer.

        Raises:
            TransportError: The connection failed or dropped.
            RequestTimeoutError: A timeout ran out.
            PortalMovedError: The portal answered with a redirect.
            InvalidURLError: ``url`` is not a URL a request can be sent to (nothing sent).
        """
        return await self._request("POST", url, method=method, data=body, headers=_JSON)

    async def get(
        self,
        url: str | SecretURL,
        params: Mapping[str, str] | None = None,
        *,
        method: str | None = None,
    ) -> RawResponse:
        """GET ``url`` (with ``params`` as its query string) and return the raw answer.

        The same errors as :meth:`post`. A query holding secrets comes inside ``url``.
        """
        return await self._request(
            "GET", url, method=method, params=None if params is None else dict(params)
        )

    async def _request(
        self,
        verb: str,
        url: str | SecretURL,
        *,
        method: str | None,
        data: bytes | SecretBody | None = None,
        params: dict[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> RawResponse:
        session = self._get_session()
        if "User-Agent" not in session.headers:
            # A borrowed session without its own User-Agent still names the SDK.
            headers = {**(headers or {})}
            headers.setdefault("User-Agent", _USER_AGENT)
        try:
            # The URL and the body are opened here, in the arguments: the plain texts
            # live in aiohttp's frames only. _read holds the response (whose repr shows
            # the URL); the errors below are raised here, from None, so no traceback an
            # error tracker records goes through it.
            answer = await _read(
                session.request(
                    verb,
                    url.reveal() if isinstance(url, SecretURL) else url,
                    data=data.reveal() if isinstance(data, SecretBody) else data,
                    params=params,
                    headers=headers,
                    allow_redirects=False,
                    timeout=self._timeout,
                )
            )
        except TimeoutError:
            raise RequestTimeoutError(
                f"no complete answer within the timeout (connect {self._timeouts.connect}s, "
                f"total {self._timeouts.total}s)",
                method=method,
            ) from None
        except _BAD_URL as exc:
            # No host, not http(s), ...: bad input, not a network failure (not retried).
            # Its description, not its text: that is the URL.
            raise _invalid_url(getattr(exc, "description", None), method) from None
        except ValueError:
            # yarl's refusal of the URL ("host:99999", "https://[host/"), when it escapes
            # aiohttp (a mocked session); anything else is not ours to rename.
            if _parses(url):
                raise
            raise _invalid_url("it cannot be parsed: a bad port or host", method) from None
        except aiohttp.ClientError as exc:
            # The text is ours: aiohttp's may contain the URL, and so the secret of a
            # webhook; "from None" keeps that original out of tracebacks too.
            raise TransportError(_describe(exc), method=method) from None
        if isinstance(answer, _Redirect):
            raise _moved(answer, method)
        return answer

    async def close(self) -> None:
        """Close the session if it is ours; a borrowed one is left open."""
        self._closed = True
        if self._owned and self._session is not None and not self._session.closed:
            await self._session.close()
            # Give the SSL transports a moment to close (aiohttp's documented advice).
            await asyncio.sleep(0)


# aiohttp's refusals of a URL; NonHttpUrlClientError (not http(s)) is no InvalidURL.
_BAD_URL: tuple[type[Exception], ...] = (
    aiohttp.InvalidURL,
    *((aiohttp.NonHttpUrlClientError,) if hasattr(aiohttp, "NonHttpUrlClientError") else ()),
)

_JSON = {"Content-Type": "application/json", "Accept": "application/json"}


@attrs.frozen(slots=True)
class _Redirect:
    """A 3xx answer: its status and ``Location`` (which may quote a webhook's code)."""

    status: int
    location: str = attrs.field(repr=False)


async def _read(
    request: AbstractAsyncContextManager[aiohttp.ClientResponse],
) -> RawResponse | _Redirect:
    """Send ``request`` and read its answer (a redirect is not followed)."""
    async with request as response:
        if 300 <= response.status < 400:
            return _Redirect(response.status, response.headers.get("Location", ""))
        return RawResponse(
            response.status, await response.read(), response.headers.get("Content-Type", "")
        )


def _describe(exc: aiohttp.ClientError) -> str:
    """Say what failed from the exception's kind and host only, never its text or URL."""
    kind = type(exc).__name__
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"{kind}: cannot connect to {exc.host}:{exc.port} ({_os_reason(exc.os_error)})"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return f"{kind}: the server closed the connection before answering"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return f"{kind}: the answer's body was cut or malformed"
    if isinstance(exc, aiohttp.ClientOSError):
        return f"{kind}: {_os_reason(exc)}"
    return f"{kind}: the request failed"


def _os_reason(error: OSError) -> str:
    # The system's text for the error number; the exception's own text may quote the URL.
    return os.strerror(error.errno) if isinstance(error.errno, int) else "a network error"


_PARTS = attrgetter("scheme", "host", "port")  # an out-of-range port raises when read


def _parses(url: str | SecretURL) -> bool:
    """Whether ``url`` is an http(s) URL with a host that yarl can parse (a port too)."""
    try:
        # The parts that hold no secret; no variable holds the URL (its repr shows it).
        scheme, host, _ = _PARTS(URL(url.reveal() if isinstance(url, SecretURL) else url))
    except ValueError:
        return False
    return scheme in ("http", "https") and bool(host)


def _invalid_url(reason: str | None, method: str | None) -> InvalidURLError:
    # Never the URL itself: a webhook's path holds its secret code.
    return InvalidURLError(
        f"the URL is invalid{f' ({reason})' if reason else ''}; nothing was sent",
        method=method,
    )


def _moved(redirect: _Redirect, method: str | None) -> PortalMovedError:
    try:
        parts = urlsplit(redirect.location)
    except ValueError:  # "http://[portal/": not a URL at all
        new_address = None
    else:
        host = parts.netloc.rpartition("@")[2]  # never a user:password@ part
        new_address = f"{parts.scheme}://{host}" if parts.scheme and host else None
    where = f" to {new_address}" if new_address else ""
    return PortalMovedError(
        f"the portal answered {redirect.status} (moved{where}): it was renamed; "
        "create the client again with the new address",
        status=redirect.status,
        method=method,
        new_address=new_address,
    )
