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
from typing import Any

import aiohttp
from aiohttp import web
from multidict import MultiDict

from bitrix_openlines.events import (
    Event,
    EventError,
    EventVerificationError,
    parse_event,
    verify_event,
)

# EventError and EventVerificationError are re-exported so a handler needs this module only.
__all__ = [
    "CLIENT_SESSION",
    "EventError",
    "EventVerificationError",
    "TokenLookup",
    "client_session_ctx",
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

    Returns:
        The parsed event (verified unless ``verify=False``).

    Raises:
        EventError: The body is not an event (answer 400).
        EventVerificationError: The event's token is missing, unknown for its portal, or
            wrong (answer 403).
        TypeError: Both or neither of ``application_token`` and ``token_for`` are given
            while ``verify`` is true.
    """
    if verify and (application_token is None) == (token_for is None):
        raise TypeError(
            "give exactly one of application_token and token_for "
            "(or verify=False to read an event without verifying it)"
        )
    if request.content_type.startswith("multipart/"):
        # Bitrix24 posts a urlencoded form; a multipart one (a test tool, a proxy) is read
        # field by field, with the same bracket nesting.
        form = await request.post()
        fields = MultiDict((name, value) for name, value in form.items() if isinstance(value, str))
        event = parse_event(fields)
    else:
        event = parse_event(await request.read(), request.content_type)
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
