"""Build the events a portal posts to an application's handler, as the docs show them.

PROTOCOL.md section 6.2: an event is a POST of ``application/x-www-form-urlencoded`` built
with ``http_build_query``; its top-level keys are ``event`` (upper-case), the handler's id
(``event_handler_id``, or ``eventId`` on the Open Lines pages, none for ``ONAPPINSTALL``),
``data``, ``ts`` and ``auth``. The ``auth`` block of an application's event carries an
access token, the portal's addresses, ``member_id`` and ``application_token``, and a
refresh token for ``ONAPPINSTALL`` and (as their doc examples show) the Open Lines
events; an event not caused by a user carries no tokens at all. The newer connector and
bot pages show two keys more, ``expires`` (the Unix time the access token expires) and
``user_id`` (the user the tokens act as); the bot message pages a refresh token too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

__all__ = ["auth_block", "event_payload", "handler_id_key"]

# The doc pages of these events show "eventId" (tests/data/docs-examples:
# event__ONSESSIONSTART, event__ONOPENLINEMESSAGEADD, event__ONIMCONNECTORDIALOGSTART...)
# and a refresh token in their auth block.
_OPEN_LINES_EVENTS: Final = frozenset(
    {
        "ONOPENLINEMESSAGEADD",
        "ONOPENLINEMESSAGEUPDATE",
        "ONOPENLINEMESSAGEDELETE",
        "ONSESSIONSTART",
        "ONSESSIONFINISH",
        "ONIMCONNECTORDIALOGSTART",
        "ONIMCONNECTORDIALOGFINISH",
    }
)
# These pages show "expires" and "user_id" in the auth block (event__ONIMCONNECTOR*,
# event__ONIMBOT*); only the bot's message events add a refresh token.
_CONNECTOR_EVENTS: Final = frozenset(
    {
        "ONIMCONNECTORMESSAGEADD",
        "ONIMCONNECTORMESSAGEUPDATE",
        "ONIMCONNECTORMESSAGEDELETE",
        "ONIMCONNECTORSTATUSDELETE",
        "ONIMCONNECTORLINEDELETE",
    }
)
_BOT_MESSAGE_EVENTS: Final = frozenset(
    {"ONIMBOTMESSAGEADD", "ONIMBOTMESSAGEUPDATE", "ONIMBOTMESSAGEDELETE"}
)
_BOT_EVENTS: Final = _BOT_MESSAGE_EVENTS | {"ONIMBOTJOINCHAT", "ONIMBOTDELETE"}
_INSTALL: Final = "ONAPPINSTALL"
_UNINSTALL: Final = "ONAPPUNINSTALL"


def handler_id_key(event: str) -> str | None:
    """Return the key naming the handler's id for ``event`` (None: no such key)."""
    if event in (_INSTALL, _UNINSTALL):
        return None  # event__ONAPPINSTALL.json and event__ONAPPUNINSTALL.json have neither
    return "eventId" if event in _OPEN_LINES_EVENTS else "event_handler_id"


def auth_block(
    event: str,
    *,
    tokens: tuple[str, str] | None,
    expires_in: int,
    expires: int,
    user_id: int,
    scope: str,
    domain: str,
    client_endpoint: str,
    server_endpoint: str,
    member_id: str,
    status: str,
    application_token: str,
) -> dict[str, Any]:
    """Return the ``auth`` block of ``event`` in the documented key order.

    Args:
        event: The upper-case event name.
        tokens: ``(access_token, refresh_token)``, or None for an event no user caused
            (only the addresses, ``member_id`` and ``application_token`` are sent).
        expires_in: Seconds the access token lives.
        expires: The Unix time it expires (sent with the connector and bot events).
        user_id: The user the tokens act as (sent with the connector and bot events).
        scope: The application's scopes.
        domain: The portal's host.
        client_endpoint: The portal's REST base.
        server_endpoint: The OAuth server's REST base.
        member_id: The portal's member id.
        status: The application's plan letter.
        application_token: The token the handler verifies.
    """
    if tokens is None:
        # event__ONCRMDEALADD_to_outgoing_webhook.json
        return {
            "domain": domain,
            "client_endpoint": client_endpoint,
            "server_endpoint": server_endpoint,
            "member_id": member_id,
            "application_token": application_token,
        }
    access_token, refresh_token = tokens
    newer = event in _CONNECTOR_EVENTS or event in _BOT_EVENTS
    block: dict[str, Any] = {"access_token": access_token}
    if newer:
        block["expires"] = expires
    block.update(
        expires_in=expires_in,
        scope=scope,
        domain=domain,
        server_endpoint=server_endpoint,
        status=status,
        client_endpoint=client_endpoint,
        member_id=member_id,
    )
    if newer:
        block["user_id"] = user_id
    if event in (_INSTALL, *_OPEN_LINES_EVENTS, *_BOT_MESSAGE_EVENTS):
        block["refresh_token"] = refresh_token
    block["application_token"] = application_token
    return block


def event_payload(
    event: str,
    data: Mapping[str, Any] | int | str,
    *,
    handler_id: int,
    ts: int,
    auth: Mapping[str, Any],
) -> dict[str, Any]:
    """Return the whole event, ready for ``http_build_query``.

    Args:
        event: The upper-case event name.
        data: The ``data`` block (a lone value for ``ONIMCONNECTORLINEDELETE``).
        handler_id: The handler's id (left out for ``ONAPPINSTALL``).
        ts: The Unix time the event was queued.
        auth: The ``auth`` block.
    """
    payload: dict[str, Any] = {"event": event}
    key = handler_id_key(event)
    if key is not None:
        payload[key] = handler_id
    payload["data"] = dict(data) if isinstance(data, Mapping) else data
    payload["ts"] = ts
    payload["auth"] = dict(auth)
    return payload
