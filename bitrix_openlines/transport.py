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

An answer is read in chunks up to ``max_answer_bytes`` (after decompression); a larger
one is refused with :class:`~bitrix_openlines.errors.DecodeError` as soon as it passes
the cap (at once when its ``Content-Length`` says so), and its connection is closed.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from operator import attrgetter
from typing import Any, Final
from urllib.parse import SplitResult, urljoin, urlsplit

import aiohttp
import attrs
from yarl import URL

from bitrix_openlines._redact import SecretBody, SecretURL
from bitrix_openlines._version import __version__
from bitrix_openlines.errors import (
    ClientClosedError,
    DecodeError,
    InvalidURLError,
    PortalMovedError,
    RequestTimeoutError,
    TransportError,
)
from bitrix_openlines.wire import RawResponse

__all__ = ["DEFAULT_MAX_ANSWER_BYTES", "Timeouts", "Transport"]

_USER_AGENT = f"bitrix-openlines/{__version__}"

DEFAULT_MAX_ANSWER_BYTES: Final = 16 * 1024 * 1024
"""The default cap on one answer's body (16 MiB, decompressed). The largest legitimate
answer, a ``batch`` of 50 dialogs, is a few hundred KB: the cap leaves a margin of about
50 times that."""

_MIN_ANSWER_BYTES: Final = 1024  # any error body or token answer fits
_CHUNK: Final = 64 * 1024  # the most read past the cap


def check_max_answer_bytes(value: Any, name: str = "max_answer_bytes") -> int:
    """Return ``value`` if it is a valid answer cap, else raise ``ValueError`` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < _MIN_ANSWER_BYTES:
        raise ValueError(
            f"{name} must be an int of at least {_MIN_ANSWER_BYTES} (bytes), got {value!r}"
        )
    return value


def _keep(text: str) -> str:
    return text


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
        max_answer_bytes: The largest answer body read (decompressed); a larger one
            raises ``DecodeError``.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession | None = None,
        *,
        timeouts: Timeouts | None = None,
        limit: int = 100,
        max_answer_bytes: int = DEFAULT_MAX_ANSWER_BYTES,
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
        self._max_answer_bytes = check_max_answer_bytes(max_answer_bytes)
        self._closed = False

    @property
    def max_answer_bytes(self) -> int:
        """The largest answer body read (decompressed)."""
        return self._max_answer_bytes

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
        self,
        url: str | SecretURL,
        body: bytes | SecretBody,
        *,
        method: str | None = None,
        redact: Callable[[str], str] = _keep,
    ) -> RawResponse:
        """POST the JSON ``body`` to ``url`` and return the raw answer.

        ``redact`` hides the caller's secrets in what the answer names (a redirect's new
        address); the transport itself holds none.

        Raises:
            TransportError: The connection failed or dropped.
            RequestTimeoutError: A timeout ran out.
            PortalMovedError: The portal answered with a redirect.
            InvalidURLError: ``url`` is not a URL a request can be sent to (nothing sent).
            DecodeError: The answer's body is larger than ``max_answer_bytes``.
        """
        return await self._request(
            "POST", url, method=method, redact=redact, data=body, headers=_JSON
        )

    async def get(
        self,
        url: str | SecretURL,
        params: Mapping[str, str] | None = None,
        *,
        method: str | None = None,
        redact: Callable[[str], str] = _keep,
    ) -> RawResponse:
        """GET ``url`` (with ``params`` as its query string) and return the raw answer.

        The same errors as :meth:`post`. A query holding secrets comes inside ``url``.
        """
        return await self._request(
            "GET",
            url,
            method=method,
            redact=redact,
            params=None if params is None else dict(params),
        )

    async def _request(
        self,
        verb: str,
        url: str | SecretURL,
        *,
        method: str | None,
        redact: Callable[[str], str],
        data: bytes | SecretBody | None = None,
        params: dict[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> RawResponse:
        session = self._get_session()
        if not self._owned and "User-Agent" not in session.headers:
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
                ),
                self._max_answer_bytes,
                redact,
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
        if isinstance(answer, _TooLarge):
            raise DecodeError(
                f"the answer is larger than max_answer_bytes ({answer.cap} bytes); it was "
                "not read further (raise the cap if the portal's answers are really this "
                "large)",
                status=answer.status,
                method=method,
            )
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
    """A 3xx answer: its status, and the new address it names (or why there is none)."""

    status: int
    new_address: str | None
    where: str


@attrs.frozen(slots=True)
class _TooLarge:
    """An answer whose body passed the cap (its connection is closed, not drained)."""

    status: int
    cap: int


async def _read(
    request: AbstractAsyncContextManager[aiohttp.ClientResponse],
    cap: int,
    redact: Callable[[str], str],
) -> RawResponse | _Redirect | _TooLarge:
    """Send ``request`` and read its answer, at most ``cap`` bytes (no redirect followed).

    The only frame that holds the response (whose repr shows the URL): what it hands
    back holds no secret.
    """
    async with request as response:
        status = response.status
        if 300 <= status < 400:
            # The request's origin only: its path would be a webhook's code.
            new_address, where = _new_address(
                str(response.url.origin()), response.headers.get("Location", ""), redact
            )
            return _Redirect(status, new_address, where)
        headers = response.headers
        content_type = headers.get("Content-Type", "")
        declared = response.content_length
        # A compressed body's length says nothing of what it decompresses to.
        if (
            declared is not None
            and headers.get("Content-Encoding", "identity").lower() == "identity"
        ):
            if declared > cap:
                response.close()
                return _TooLarge(status, cap)
            return RawResponse(status, await response.read(), content_type)
        chunks: list[bytes] = []
        size = 0
        while chunk := await response.content.read(_CHUNK):
            size += len(chunk)
            if size > cap:
                # The rest is not read: the connection is closed rather than drained.
                response.close()
                return _TooLarge(status, cap)
            chunks.append(chunk)
        return RawResponse(status, b"".join(chunks), content_type)


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


# A Location longer than this is not read (aiohttp already caps a header line at 8 KiB).
_MAX_LOCATION = 2048
_HOST_NAME = re.compile(r"[a-z0-9](?:[a-z0-9.-]{0,251}[a-z0-9])?")
_DEFAULT_PORTS = {"http": 80, "https": 443}


def _moved(redirect: _Redirect, method: str | None) -> PortalMovedError:
    status, new_address = redirect.status, redirect.new_address
    if new_address is not None:
        text = (
            f"the portal answered {status}: it moved to {new_address} (renamed); "
            "the redirect is not followed: build the client again with the new address"
        )
    else:
        text = f"the portal answered {status} {redirect.where}; the redirect is not followed"
    return PortalMovedError(text, status=status, method=method, new_address=new_address)


def _new_address(
    request_origin: str, location: str, redact: Callable[[str], str]
) -> tuple[str | None, str]:
    """The new scheme and host a redirect names, or ``None`` and why there is none.

    Only the origin of the ``Location`` is kept: never its path or query (a webhook's
    holds its code) nor a ``user:password@``. A relative ``Location`` is read against the
    request's origin, so it names the same address: nothing new. A plain ``http://`` answer
    to an ``https://`` request is taken as the ``https://`` form of its host (portals
    serve HTTPS; credentials are never offered a downgrade), unless it names a port.
    Anything else (another scheme, a host that is no host name, one that contains a
    secret) gives ``None``.
    """
    if not location:
        return None, "without a Location"
    if len(location) > _MAX_LOCATION:
        return None, "with a Location too long to read"
    try:
        origin = urlsplit(request_origin)
        parts = urlsplit(urljoin(request_origin + "/", location.strip()))
        port = parts.port
    except ValueError:  # "http://[portal/", "https://host:99999"
        return None, "with a Location that cannot be parsed"
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        return None, "with a Location that is not an http(s) address"
    host = parts.hostname or ""
    if not _HOST_NAME.fullmatch(host):
        try:
            host = f"[{ipaddress.IPv6Address(host).compressed}]"
        except ValueError:
            return None, "with a Location whose host is not a host name"
    if port == _DEFAULT_PORTS[scheme]:
        port = None
    if scheme == "http" and origin.scheme.lower() == "https":
        if port is not None:
            return None, "with a plain-http Location on another port"
        scheme = "https"  # no downgrade: the https:// form of the same host
    address = f"{scheme}://{host}" + (f":{port}" if port is not None else "")
    if address == _origin(origin):
        return None, "to a path of its own address"
    if redact(address) != address:
        return None, "to an address that contains a secret"
    return address, f"to {address}"


def _origin(parts: SplitResult) -> str:
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if port == _DEFAULT_PORTS.get(scheme):
        port = None
    return f"{scheme}://{host}" + (f":{port}" if port is not None else "")
