"""The HTTP edge: owns or borrows one ``aiohttp.ClientSession`` and sends requests.

It knows nothing of Bitrix24 errors: it returns the status and the raw body, and turns
network failures into :class:`~bitrix_openlines.errors.TransportError`, and a URL no
request can be sent to into :class:`~bitrix_openlines.errors.InvalidURLError` (bad input,
never retried). Redirects are not followed: a renamed portal answers 302 and a followed
POST would lose its body (PROTOCOL.md section 1), so a 3xx becomes
:class:`~bitrix_openlines.errors.PortalMovedError` naming the new address.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import attrs
from yarl import URL

from bitrix_openlines._redact import redact
from bitrix_openlines._version import __version__
from bitrix_openlines.errors import (
    InvalidURLError,
    PortalMovedError,
    RequestTimeoutError,
    TransportError,
)

__all__ = ["RawResponse", "Timeouts", "Transport"]

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


@attrs.frozen(slots=True)
class RawResponse:
    """An HTTP answer before any decoding.

    ``secrets`` are the strings the transport hides from error texts: a body quoted in an
    error (an HTML page that echoes the request path, say) must hide them too.
    """

    status: int
    body: bytes
    content_type: str
    elapsed: float
    secrets: tuple[str, ...] = attrs.field(default=(), repr=False, eq=False)


class Transport:
    """Send POST and GET requests through one ``aiohttp.ClientSession``.

    Args:
        session: A session to borrow; it is never closed here. ``None``: one is created
            lazily on the first request and closed by :meth:`close`.
        timeouts: Connect and total timeouts.
        secrets: A callable giving the strings to hide from error texts.
        limit: The connection pool size of an owned session.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession | None = None,
        *,
        timeouts: Timeouts | None = None,
        secrets: Iterable[str] = (),
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
        self._secrets = tuple(dict.fromkeys(secrets))
        self._limit = limit
        self._closed = False

    @property
    def owns_session(self) -> bool:
        """Whether the session is ours to close."""
        return self._owned

    def set_secrets(self, secrets: Iterable[str]) -> None:
        """Hide exactly these strings from error texts (tokens change after construction).

        Replaces the list: the caller hands its whole, bounded list each time.
        """
        self._secrets = tuple(dict.fromkeys(secrets))

    def _get_session(self) -> aiohttp.ClientSession:
        if self._closed:
            raise RuntimeError("the client is closed; create a new one")
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._limit),
                headers={"User-Agent": _USER_AGENT},
            )
        return self._session

    async def post_json(
        self, url: str, payload: Mapping[str, Any], *, method: str | None = None
    ) -> RawResponse:
        """POST ``payload`` as JSON to ``url`` and return the raw answer.

        Raises:
            TransportError: The connection failed or dropped.
            RequestTimeoutError: A timeout ran out.
            PortalMovedError: The portal answered with a redirect.
            InvalidURLError: ``url`` is not a URL a request can be sent to (nothing sent).
        """
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        return await self._request("POST", url, method=method, data=body, headers=headers)

    async def get(
        self, url: str, params: Mapping[str, str], *, method: str | None = None
    ) -> RawResponse:
        """GET ``url`` with a query string and return the raw answer (same errors)."""
        return await self._request("GET", url, method=method, params=dict(params))

    async def _request(
        self, verb: str, url: str, *, method: str | None, **kwargs: Any
    ) -> RawResponse:
        session = self._get_session()
        try:
            # Parsed here as aiohttp would, so that a bad URL is told apart from the
            # network; aiohttp takes the parsed URL as it is.
            target = URL(url)
        except ValueError as exc:  # "host:99999", "https://[host/"
            raise _invalid_url(redact(str(exc), self._secrets), method) from None
        if target.scheme not in ("http", "https") or not target.host:
            raise _invalid_url("not an http:// or https:// URL with a host", method)
        if "User-Agent" not in session.headers:
            # A borrowed session without its own User-Agent still names the SDK.
            headers = dict(kwargs.pop("headers", None) or {})
            headers.setdefault("User-Agent", _USER_AGENT)
            kwargs["headers"] = headers
        started = time.perf_counter()
        try:
            async with session.request(
                verb, target, allow_redirects=False, timeout=self._timeout, **kwargs
            ) as response:
                if 300 <= response.status < 400:
                    raise _moved(response, method)
                body = await response.read()
                return RawResponse(
                    status=response.status,
                    body=body,
                    content_type=response.headers.get("Content-Type", ""),
                    elapsed=time.perf_counter() - started,
                    secrets=self._secrets,
                )
        except TimeoutError:
            raise RequestTimeoutError(
                f"no complete answer within the timeout (connect {self._timeouts.connect}s, "
                f"total {self._timeouts.total}s)",
                method=method,
            ) from None
        except aiohttp.InvalidURL as exc:
            # No host, not http(s), ...: bad input, not a network failure (not retried).
            reason = getattr(exc, "description", None)  # not str(exc): that is the URL
            raise _invalid_url(reason and redact(reason, self._secrets), method) from None
        except aiohttp.ClientError as exc:
            # Build the text ourselves: aiohttp's may contain the URL, and so the secret
            # of a webhook; "from None" keeps that original out of tracebacks too.
            raise TransportError(
                f"{type(exc).__name__}: {redact(str(exc), self._secrets)}", method=method
            ) from None

    async def close(self) -> None:
        """Close the session if it is ours; a borrowed one is left open."""
        self._closed = True
        if self._owned and self._session is not None and not self._session.closed:
            await self._session.close()
            # Give the SSL transports a moment to close (aiohttp's documented advice).
            await asyncio.sleep(0)


def _invalid_url(reason: str | None, method: str | None) -> InvalidURLError:
    # Never the URL itself: a webhook's path holds its secret code.
    return InvalidURLError(
        f"the URL is invalid{f' ({reason})' if reason else ''}; nothing was sent",
        method=method,
    )


def _moved(response: aiohttp.ClientResponse, method: str | None) -> PortalMovedError:
    location = response.headers.get("Location", "")
    try:
        parts = urlsplit(location)
    except ValueError:  # "http://[portal/": not a URL at all
        new_address = None
    else:
        host = parts.netloc.rpartition("@")[2]  # never a user:password@ part
        new_address = f"{parts.scheme}://{host}" if parts.scheme and host else None
    where = f" to {new_address}" if new_address else ""
    return PortalMovedError(
        f"the portal answered {response.status} (moved{where}): it was renamed; "
        "create the client again with the new address",
        status=response.status,
        method=method,
        new_address=new_address,
    )
