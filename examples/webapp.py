"""An installed Bitrix24 application serving many portals, as an aiohttp web app.

Two handlers:

* ``POST /install``: the portal posts ``ONAPPINSTALL`` here. The app keeps the token
  pair of the ``auth`` block in a ``TokenStore`` under the portal's ``member_id``, and
  the ``application_token`` that every later event of that portal must carry.
* ``POST /events``: every other event. It is verified against the stored
  ``application_token`` (a forged one is answered 403); for ``ONOPENLINEMESSAGEADD`` and
  ``ONSESSIONSTART`` the dialog is looked up with ``get_dialog(chat_id=...)`` and
  answered as JSON.

All clients borrow ONE ``aiohttp.ClientSession`` owned by the app's lifecycle, and there is
one client per portal, so each portal's rate limit is mirrored by one bucket.

Run it:

* without configuration, it starts a fake portal, serves the app on a free port, has the
  portal post an install event, a message event and a forged event, prints what
  happened, and stops;
* with ``BITRIX24_CLIENT_ID`` and ``BITRIX24_CLIENT_SECRET`` set (and optionally
  ``BITRIX24_TOKEN_URL``, ``PORT``), it serves the handlers for real portals until
  Ctrl-C. The tokens live in memory only: use a persistent ``TokenStore`` in production.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from typing import Any

import attrs
from aiohttp import web

from bitrix_openlines import (
    Dialog,
    InMemoryTokenStore,
    OAuthAuth,
    OpenLinesClient,
    OpenLinesError,
    TokenStore,
)
from bitrix_openlines.auth import DEFAULT_TOKEN_URL
from bitrix_openlines.contrib.aiohttp import (
    CLIENT_SESSION,
    EventError,
    EventVerificationError,
    client_session_ctx,
    read_event,
)
from bitrix_openlines.events import (
    AppInstallEvent,
    AppUninstallEvent,
    OpenLineMessageEvent,
    SessionEvent,
    verify_event,
)
from bitrix_openlines.testing import FakePortal


@attrs.frozen
class AppConfig:
    """The application's OAuth credentials (from its page in the portal or the Market)."""

    client_id: str
    client_secret: str = attrs.field(repr=False)
    token_url: str = DEFAULT_TOKEN_URL


class Portals:
    """What the app knows of each portal: tokens (in the store) and the application token.

    One ``OpenLinesClient`` per portal, created on first use; all of them borrow the app's
    one ``aiohttp.ClientSession``.
    """

    def __init__(self, config: AppConfig, store: TokenStore) -> None:
        self.config = config
        self.store = store
        self._application_tokens: dict[str, str] = {}
        self._clients: dict[str, OpenLinesClient] = {}

    def application_token(self, member_id: str) -> str | None:
        """The token the portal's events must carry (``read_event``'s ``token_for``)."""
        return self._application_tokens.get(member_id)

    def client(self, member_id: str, app: web.Application) -> OpenLinesClient:
        """The portal's client, borrowing the app's session; its tokens live in the store."""
        client = self._clients.get(member_id)
        if client is None:
            auth = OAuthAuth(
                client_id=self.config.client_id,
                client_secret=self.config.client_secret,
                token_url=self.config.token_url,
                store=self.store,
                key=member_id,
            )
            client = OpenLinesClient(auth, session=app[CLIENT_SESSION])
            self._clients[member_id] = client
        return client

    async def remember(self, member_id: str, application_token: str) -> None:
        """Keep the portal's application token (after its tokens were saved)."""
        self._application_tokens[member_id] = application_token

    async def forget(self, member_id: str) -> None:
        """Drop a portal that uninstalled the app."""
        self._application_tokens.pop(member_id, None)
        client = self._clients.pop(member_id, None)
        if client is not None:
            await client.close()

    async def close(self) -> None:
        """Close every client (the shared session is closed by its own context)."""
        for client in self._clients.values():
            await client.close()
        self._clients.clear()


PORTALS = web.AppKey("portals", Portals)


def _deny(status: int, reason: str) -> web.Response:
    return web.json_response({"ok": False, "error": reason}, status=status)


async def install(request: web.Request) -> web.Response:
    """Handle ``ONAPPINSTALL``: store the portal's tokens and its application token."""
    portals = request.app[PORTALS]
    try:
        # Not verified: for a new portal, this event brings the token to verify with.
        event = await read_event(request, verify=False)
    except EventError as error:
        return _deny(400, str(error))
    if not isinstance(event, AppInstallEvent) or event.auth is None:
        return _deny(400, "expected ONAPPINSTALL with an auth block")
    member_id = event.auth.member_id
    tokens = event.auth.tokens()
    application_token = event.auth.application_token
    if not (member_id and tokens and application_token):
        return _deny(400, "the install event lacks member_id, tokens or application_token")
    known = portals.application_token(member_id)
    if known is not None:
        # A reinstall must carry the token already trusted; else anyone could post an
        # "install" with this member_id and take the portal over.
        try:
            verify_event(event, known)
        except EventVerificationError as error:
            return _deny(403, str(error))
    else:
        # A new portal: check that the tokens work at the portal they name before keeping
        # anything (PROTOCOL.md 6.2 suggests app.info).
        check = OpenLinesClient(
            OAuthAuth(
                client_id=portals.config.client_id,
                client_secret=portals.config.client_secret,
                token_url=portals.config.token_url,
                tokens=tokens,
            ),
            session=request.app[CLIENT_SESSION],
        )
        try:
            info = await check.call_raw("app.info")
        except OpenLinesError as error:
            return _deny(403, f"the install tokens do not work: {error.code or error}")
        finally:
            await check.close()
        if not isinstance(info, dict) or not info.get("INSTALLED", True):
            return _deny(403, "app.info does not show the application installed")
    # The pair is saved before the application token: events are accepted only once the
    # app can act on them.
    await portals.store.save(member_id, tokens)
    await portals.remember(member_id, application_token)
    print(f"installed on {tokens.client_endpoint} (member_id {member_id})")
    return web.json_response({"ok": True, "member_id": member_id})


def _dialog_json(dialog: Dialog) -> dict[str, Any]:
    return {
        "chat_id": dialog.chat_id,
        "dialog_id": dialog.dialog_id,
        "name": dialog.name,
        "session_id": dialog.session_id,
        "line_id": dialog.session.line_id,
    }


async def on_event(request: web.Request) -> web.Response:
    """Handle every event but the install: verify it, then act on the Open Lines ones."""
    portals = request.app[PORTALS]
    try:
        event = await read_event(request, token_for=portals.application_token)
    except EventVerificationError as error:
        print(f"rejected an event: {error}")
        return _deny(403, "forbidden")
    except EventError as error:
        return _deny(400, str(error))
    member_id = event.member_id
    assert member_id is not None  # read_event found its token by member_id
    if isinstance(event, OpenLineMessageEvent | SessionEvent):
        client = portals.client(member_id, request.app)
        dialogs = []
        for item in event.items:
            try:
                dialog = await client.get_dialog(chat_id=item.chat.id)
            except OpenLinesError as error:
                dialogs.append({"chat_id": item.chat.id, "error": error.code})
                continue
            dialogs.append(_dialog_json(dialog))
            print(
                f"{event.name}: chat {dialog.chat_id} is {dialog.name!r}, "
                f"session {dialog.session_id}"
            )
        return web.json_response({"ok": True, "event": event.name, "dialogs": dialogs})
    if isinstance(event, AppUninstallEvent):
        # Verified above: forget the portal (event.clean: the admin asked to clear data).
        await portals.forget(member_id)
        return web.json_response({"ok": True, "event": event.name})
    return web.json_response({"ok": True, "event": event.name, "ignored": True})


def create_app(config: AppConfig, store: TokenStore | None = None) -> web.Application:
    """Build the web app: handlers, the shared session, the portals' clients."""
    app = web.Application()
    app[PORTALS] = Portals(config, store if store is not None else InMemoryTokenStore())

    async def close_clients(app: web.Application) -> AsyncIterator[None]:
        yield
        await app[PORTALS].close()

    # Cleanup contexts exit in reverse: the clients close before the session they borrow.
    app.cleanup_ctx.append(client_session_ctx)
    app.cleanup_ctx.append(close_clients)
    app.router.add_post("/install", install)
    app.router.add_post("/events", on_event)
    return app


def message_data(chat_id: int, user_code: str, text: str) -> dict[str, Any]:
    """The ``data`` block of an ``ONOPENLINEMESSAGEADD`` event, shaped like the docs'."""
    connector, line_id, chat, user = [*user_code.split("|"), "", "", "", ""][:4]
    return {
        "DATA": [
            {
                "connector": {
                    "connector_id": connector,
                    "line_id": line_id,
                    "chat_id": chat,
                    "user_id": user,
                },
                "chat": {"id": chat_id},
                "message": {"id": 1, "date": "", "text": text, "system": "N", "user_id": user},
                "extra": {"EXTRA_URL": ""},
            }
        ]
    }


async def demo() -> None:
    """Install the app on a fake portal and let the portal post events to it."""
    async with FakePortal(dialogs=3) as portal:
        config = AppConfig(portal.client_id, portal.client_secret, portal.token_url)
        runner = web.AppRunner(create_app(config), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        base = f"http://127.0.0.1:{port}"
        print(f"web app on {base}, fake portal on {portal.base_url}")
        try:
            install_data = {"VERSION": "1", "ACTIVE": "Y", "INSTALLED": "Y", "LANGUAGE_ID": "en"}
            status = await portal.send_event(f"{base}/install", "ONAPPINSTALL", install_data)
            print(f"ONAPPINSTALL -> HTTP {status}")
            dialog = portal.dialogs[0]
            data = message_data(dialog.chat_id, dialog.user_code, "Hello!")
            status = await portal.send_event(f"{base}/events", "ONOPENLINEMESSAGEADD", data)
            print(f"ONOPENLINEMESSAGEADD -> HTTP {status}")
            forged = "0" * 32
            status = await portal.send_event(
                f"{base}/events", "ONOPENLINEMESSAGEADD", data, application_token=forged
            )
            print(f"forged ONOPENLINEMESSAGEADD -> HTTP {status}")
        finally:
            await runner.cleanup()
        print(f"the portal answered {portal.stats.requests} REST calls")


def main() -> int:
    """Run the demo, or serve for real portals when OAuth credentials are configured."""
    client_id = os.environ.get("BITRIX24_CLIENT_ID")
    client_secret = os.environ.get("BITRIX24_CLIENT_SECRET")
    if client_id and client_secret:
        config = AppConfig(
            client_id, client_secret, os.environ.get("BITRIX24_TOKEN_URL", DEFAULT_TOKEN_URL)
        )
        web.run_app(create_app(config), port=int(os.environ.get("PORT", "8080")))
        return 0
    asyncio.run(demo())
    return 0


if __name__ == "__main__":
    sys.exit(main())
