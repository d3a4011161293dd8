"""Use the SDK inside an aiohttp web application (an installed Bitrix24 app, a bot).

Two pieces:

* :func:`read_event`: turn a request the portal posted to the app into a parsed and
  verified :class:`~bitrix_openlines.events.Event`.
* :func:`client_session_ctx`: ONE ``aiohttp.ClientSession`` owned by the app's lifecycle
  (``app.cleanup_ctx``), stored in the app under :data:`CLIENT_SESSION`, to pass to every
  ``OpenLinesClient(auth, session=...)``. A client never closes a borrowed session, so
  creating a client per request costs no connection setup, and the pool is closed once,
  when the app stops::

    app = web.Application()
    app.cleanup_ctx.append(client_session_ctx)

    async def on_event(request: web.Request) -> web.Response:
        try:
            event = await read_event(request, token_for=stored_application_token)
        except EventVerificationError:
            raise web.HTTPForbidden() from None
        except EventError:
            raise web.HTTPBadRequest() from None
        session = request.app[CLIENT_SESSION]
        async with OpenLinesClient(auth_for(event.member_id), session=session) as client:
            ...
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import hdrs, web
from multidict import MultiDict

from bitrix_openlines.errors import OpenLinesError
from bitrix_openlines.events import (
    Event,
    EventError,
    EventLimits,
    EventVerificationError,
    parse_event,
    verify_event,
)

if TYPE_CHECKING:
    from bitrix_openlines.app import OpenLinesApp

# EventError, EventVerificationError and EventLimits are re-exported so a handler needs
# this module only.
__all__ = [
    "CLIENT_SESSION",
    "EventError",
    "EventLimits",
    "EventVerificationError",
    "EventCallback",
    "TokenLookup",
    "app_event_handler",
    "client_session_ctx",
    "read_app_event",
    "read_event",
]

#: Where :func:`client_session_ctx` stores the app's session: ``app[CLIENT_SESSION]``.
CLIENT_SESSION: web.AppKey[aiohttp.ClientSession] = web.AppKey(
    "bitrix_openlines_client_session", aiohttp.ClientSession
)

#: Looks up the stored application token of a portal by its ``member_id``.
TokenLookup = Callable[[str], Awaitable[str | None] | str | None]


async def read_event(
    request: web.Request,
    *,
    application_token: str | None = None,
    token_for: TokenLookup | None = None,
    verify: bool = True,
    limits: EventLimits | None = None,
) -> Event:
    """Read, parse and verify the event a portal posted to this handler.

    Give ``application_token`` for an app installed on one portal (or an outgoing
    webhook), or ``token_for`` for an app serving many: it is called with the event's
    ``member_id`` and returns that portal's stored token (or ``None`` when the portal is
    unknown), and may be a coroutine function.

    Args:
        request: The incoming request (form-encoded as Bitrix24 posts it, or JSON).
        application_token: The token to compare the event's with.
        token_for: Looks the token up by ``member_id`` instead.
        verify: ``False`` only parses: for ``ONAPPINSTALL`` of a portal not seen before,
            whose token is the one to store (check its tokens another way, for instance
            with a call to ``app.info``; see the web apps guide).
        limits: The caps on the body (``EventLimits()`` by default: 1 MiB, 10,000
            fields, 64 levels). A body that declares a larger ``Content-Length`` is
            refused unread; one without (chunked, or compressed) is read up to
            ``max_bytes`` and refused there. The app's own ``client_max_size``, when
            smaller, still applies (aiohttp answers 413).

    Returns:
        The parsed event (verified unless ``verify=False``).

    Raises:
        EventError: The body is not an event, or is past ``limits`` (answer 400).
        EventVerificationError: The event's token is missing, unknown for its portal, or
            wrong (answer 403).
        TypeError: Both or neither of ``application_token`` and ``token_for`` are given
            while ``verify`` is true, or ``limits`` is not an ``EventLimits``.
    """
    if verify and (application_token is None) == (token_for is None):
        raise TypeError(
            "give exactly one of application_token and token_for "
            "(or verify=False to read an event without verifying it)"
        )
    if limits is None:
        limits = EventLimits()
    elif not isinstance(limits, EventLimits):
        raise TypeError(f"limits must be an EventLimits, got {type(limits).__name__}")
    reader = _bounded(request, limits)
    try:
        if request.content_type.startswith("multipart/"):
            # Bitrix24 posts a urlencoded form; a multipart one (a test tool, a proxy) is
            # read field by field, with the same bracket nesting.
            form = await reader.post()
            fields = MultiDict(
                (name, value) for name, value in form.items() if isinstance(value, str)
            )
            event = parse_event(fields, limits=limits)
        else:
            event = parse_event(await reader.read(), request.content_type, limits=limits)
    except web.HTTPRequestEntityTooLarge:
        if reader is request:
            raise  # the app's own client_max_size, stricter than ours: its 413 stands
        raise EventError(
            f"the event body is larger than {limits.max_bytes:,} bytes (max_bytes)"
        ) from None
    if not verify:
        return event
    expected = application_token
    if token_for is not None:
        member_id = event.member_id
        if not member_id:
            raise EventVerificationError(
                "the event carries no auth[member_id]: its portal's token cannot be found"
            )
        found = token_for(member_id)
        expected = await found if inspect.isawaitable(found) else found
        if not expected:
            raise EventVerificationError(
                "no application token is stored for the event's portal (member_id): "
                "it was not installed, or the event is forged"
            )
    return verify_event(event, expected)


async def read_app_event(
    request: web.Request, app: OpenLinesApp, *, limits: EventLimits | None = None
) -> Event:
    """Read the event a portal posted and hand it to ``app.handle_event``.

    The body is read within ``limits`` (the app's ``event_limits`` by default) as
    :func:`read_event` reads it and parsed within the same limits; then the app stores an
    ``ONAPPINSTALL``, verifies every other event against its portal's stored token and
    forgets a portal on ``ONAPPUNINSTALL``
    (:meth:`~bitrix_openlines.OpenLinesApp.handle_event`).

    Raises:
        EventError: Not an event, past ``limits``, or an install without tokens (400).
        EventVerificationError: A forged or unknown portal's event (403).
        TokenStoreError: The store failed (503).
        OpenLinesError: An install's portal could not be reached while its tokens were
            checked (a transport, server or rate-limit failure; 503, nothing stored).
    """
    if limits is None:
        limits = app.event_limits
    elif not isinstance(limits, EventLimits):
        raise TypeError(f"limits must be an EventLimits, got {type(limits).__name__}")
    reader = _bounded(request, limits)
    body: bytes | MultiDict[str]
    try:
        if request.content_type.startswith("multipart/"):
            form = await reader.post()
            body = MultiDict((name, v) for name, v in form.items() if isinstance(v, str))
        else:
            body = await reader.read()
    except web.HTTPRequestEntityTooLarge:
        if reader is request:
            raise
        raise EventError(
            f"the event body is larger than {limits.max_bytes:,} bytes (max_bytes)"
        ) from None
    # Parsed within the same limits it was read within (before, the app's own applied).
    return await app.handle_event(body, request.content_type, limits=limits)


#: What :func:`app_event_handler` calls with each event the app accepted.
EventCallback = Callable[[Event, web.Request], Awaitable[web.StreamResponse | None]]


def app_event_handler(
    app: OpenLinesApp,
    on_event: EventCallback | None = None,
    *,
    limits: EventLimits | None = None,
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """An aiohttp handler for every event of an application installed on many portals.

    Each request goes through :func:`read_app_event`; the answer is 400 for a body that
    is not an event, 403 for one refused by verification, 503 when the store failed or an
    install's portal could not be reached to check its tokens (nothing is stored), and
    otherwise what ``on_event(event, request)`` returns,
    or ``{"ok": true, "event": NAME}``::

        app.router.add_post("/events", app_event_handler(openlines_app, on_event))

    Args:
        app: The application.
        on_event: Called with each accepted event (installs and uninstalls included,
            after the app has acted on them); may return the response.
        limits: The caps on the body, for reading and parsing it (the app's
            ``event_limits`` by default).
    """

    async def handler(request: web.Request) -> web.StreamResponse:
        try:
            event = await read_app_event(request, app, limits=limits)
        except EventVerificationError:
            return web.json_response({"ok": False, "error": "forbidden"}, status=403)
        except EventError as error:
            return web.json_response({"ok": False, "error": str(error)}, status=400)
        except OpenLinesError:
            return web.json_response({"ok": False, "error": "unavailable"}, status=503)
        if on_event is not None:
            response = await on_event(event, request)
            if response is not None:
                return response
        return web.json_response({"ok": True, "event": event.name})

    return handler


def _bounded(request: web.BaseRequest, limits: EventLimits) -> web.BaseRequest:
    """The request to read the body through, so that no more than ``max_bytes`` is read.

    A declared ``Content-Length`` past the cap is refused before reading. A body read
    already (by a middleware), one bounded by its ``Content-Length`` (and not compressed:
    aiohttp inflates a compressed body as it reads), or one the app caps lower with its
    ``client_max_size`` is read through the request itself, which keeps the body for a
    later ``request.read()``. Any other body (chunked, or compressed) is read through a
    clone whose ``client_max_size`` is ``max_bytes``: aiohttp stops there, mid-stream.
    """
    length = request.content_length
    if length is not None and length > limits.max_bytes:
        raise EventError(
            f"the event body is larger than {limits.max_bytes:,} bytes "
            f"({length:,} bytes declared) (max_bytes)"
        )
    app_cap = request.client_max_size
    if (
        not request.can_read_body
        or (length is not None and hdrs.CONTENT_ENCODING not in request.headers)
        or 0 < app_cap <= limits.max_bytes
    ):
        return request
    return request.clone(client_max_size=limits.max_bytes)


async def client_session_ctx(
    app: web.Application,
    *,
    key: web.AppKey[aiohttp.ClientSession] = CLIENT_SESSION,
    **session_options: Any,
) -> AsyncIterator[None]:
    """Own one ``aiohttp.ClientSession`` for the app's lifetime (for ``app.cleanup_ctx``).

    The session is created when the app starts, in its event loop, stored as
    ``app[key]``, and closed when the app stops, after every handler is done::

        app.cleanup_ctx.append(client_session_ctx)
        # another key, or session options:
        app.cleanup_ctx.append(functools.partial(client_session_ctx, key=MY_KEY))

    Pass ``request.app[key]`` to ``OpenLinesClient(auth, session=...)``: the client
    borrows it and never closes it.

    Args:
        app: The application (aiohttp passes it).
        key: The app key to store the session under.
        **session_options: Keyword arguments of ``aiohttp.ClientSession`` (a
            ``connector``, ``trust_env``...).
    """
    session = aiohttp.ClientSession(**session_options)
    app[key] = session
    try:
        yield
    finally:
        await session.close()
