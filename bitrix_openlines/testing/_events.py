"""Build the events a portal posts to an application's handler, as the docs show them.

PROTOCOL.md section 6.2: an event is a POST of ``application/x-www-form-urlencoded`` built
with ``http_build_query``; its top-level keys are ``event`` (upper-case), the handler's id
(``event_handler_id``, or ``eventId`` on the Open Lines pages, none for ``ONAPPINSTALL``),
``data``, ``ts`` and ``auth``. The ``auth`` block of an application's event carries an
access token, the portal's addresses, ``member_id`` and ``application_token``, and a
refresh token for ``ONAPPINSTALL`` and (as their doc examples show) the Open Lines
events; an event not caused by a user carries no tokens at all.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

__all__ = ["auth_block", "event_payload", "handler_id_key"]

# The doc pages of these events show "eventId" (bitrix-docs-examples/event__ONSESSIONSTART,
# event__ONOPENLINEMESSAGEADD) and a refresh token in their auth block.
_OPEN_LINES_EVENTS: Final = frozenset(
    {
        "ONOPENLINEMESSAGEADD",
        "ONOPENLINEMESSAGEUPDATE",
        "ONOPENLINEMESSAGEDELETE",
        "ONSESSIONSTART",
        "ONSESSIONFINISH",
    }
)
_INSTALL: Final = "ONAPPINSTALL"


def handler_id_key(event: str) -> str | None:
    """Return the key naming the handler's id for ``event`` (None: no such key)."""
    if event == _INSTALL:
        return None  # event__ONAPPINSTALL.json has neither key
    return "eventId" if event in _OPEN_LINES_EVENTS else "event_handler_id"


def auth_block(
    event: str,
    *,
    tokens: tuple[str, str] | None,
    expires_in: int,
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
    block: dict[str, Any] = {
        "access_token": access_token,
        "expires_in": expires_in,
        "scope": scope,
        "domain": domain,
        "server_endpoint": server_endpoint,
        "status": status,
        "client_endpoint": client_endpoint,
        "member_id": member_id,
    }
    if event == _INSTALL or event in _OPEN_LINES_EVENTS:
        block["refresh_token"] = refresh_token
    block["application_token"] = application_token
    return block


def event_payload(
    event: str,
    data: Mapping[str, Any],
    *,
    handler_id: int,
    ts: int,
    auth: Mapping[str, Any],
) -> dict[str, Any]:
    """Return the whole event, ready for ``http_build_query``.

    Args:
        event: The upper-case event name.
        data: The ``data`` block.
        handler_id: The handler's id (left out for ``ONAPPINSTALL``).
        ts: The Unix time the event was queued.
        auth: The ``auth`` block.
    """
    payload: dict[str, Any] = {"event": event}
    key = handler_id_key(event)
    if key is not None:
        payload[key] = handler_id
    payload["data"] = dict(data)
    payload["ts"] = ts
    payload["auth"] = dict(auth)
    return payload
