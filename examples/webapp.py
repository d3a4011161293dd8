"""An installed Bitrix24 application serving many portals, as an aiohttp web app.

One URL, ``POST /events``, takes the install event and every other event of every
portal (point the application's install handler and its event handlers at it).
``OpenLinesApp`` and ``app_event_handler`` do what an installed app must:

* ``ONAPPINSTALL``: the tokens are checked with ``app.info`` at the portal they name,
  then the pair and the ``application_token`` are stored under the portal's
  ``member_id`` (a reinstall must carry the token stored already);
* every other event is verified against its own portal's stored token: a forged one,
  or one from a portal that never installed the app, is answered 403;
* ``ONAPPUNINSTALL`` (verified) forgets the portal.

For ``ONOPENLINEMESSAGEADD`` and ``ONSESSIONSTART`` the handler asks the app for the
portal's client and answers the dialogs it looked up with ``get_dialog(chat_id=...)``.

Run it:

* without configuration, it starts two fake portals, serves the app on a free port, has
  them post their installs, a message event and a forged event, prints what happened,
  and stops;
* with ``BITRIX24_CLIENT_ID`` and ``BITRIX24_CLIENT_SECRET`` set (and optionally
  ``BITRIX24_TOKEN_URL``, ``PORT``), it serves real portals until Ctrl-C. The tokens
  live in memory only: give ``OpenLinesApp`` a persistent store (``RedisTokenStore``)
  in production.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

from aiohttp import web

from bitrix_openlines import OpenLinesApp, OpenLinesError
from bitrix_openlines.contrib.aiohttp import app_event_handler
from bitrix_openlines.events import AppInstallEvent, Event, OpenLineMessageEvent, SessionEvent
from bitrix_openlines.testing import FakePortalHost

OPENLINES = web.AppKey("openlines", OpenLinesApp)


async def on_event(event: Event, request: web.Request) -> web.StreamResponse | None:
    """Act on an accepted event (installs and uninstalls are already handled by the app)."""
    member_id = event.member_id
    assert member_id is not None  # the app found the event's portal by it
    if isinstance(event, AppInstallEvent):
        endpoint = event.auth.client_endpoint if event.auth else None
        print(f"installed on {endpoint} (member_id {member_id})")
    if not isinstance(event, OpenLineMessageEvent | SessionEvent):
        return None  # answered {"ok": true, "event": NAME}
    client = request.app[OPENLINES].portal(member_id)  # ask for it each time: see "Eviction"
    dialogs: list[dict[str, Any]] = []
    for item in event.items:
        try:
            dialog = await client.get_dialog(chat_id=item.chat.id)
        except OpenLinesError as error:
            dialogs.append({"chat_id": item.chat.id, "error": error.code})
            continue
        print(
            f"{event.name}: chat {dialog.chat_id} is {dialog.name!r}, session {dialog.session_id}"
        )
        dialogs.append(
            {
                "chat_id": dialog.chat_id,
                "dialog_id": dialog.dialog_id,
                "name": dialog.name,
                "session_id": dialog.session_id,
                "line_id": dialog.session.line_id,
            }
        )
    return web.json_response({"ok": True, "event": event.name, "dialogs": dialogs})


def create_app(openlines: OpenLinesApp) -> web.Application:
    """The web app: ``POST /events`` for every event; it closes ``openlines`` when it stops."""
    app = web.Application()
    app[OPENLINES] = openlines
    app.router.add_post("/events", app_event_handler(openlines, on_event))

    async def close(app: web.Application) -> None:
        await app[OPENLINES].close()

    app.on_cleanup.append(close)
    return app


def message_data(chat_id: int, text: str) -> dict[str, Any]:
    """The ``data`` block of an ``ONOPENLINEMESSAGEADD`` event (the docs' shape, trimmed)."""
    return {"DATA": [{"chat": {"id": chat_id}, "message": {"id": 1, "text": text}}]}


async def demo() -> None:
    """Two fake portals install the app and post events to it."""
    async with FakePortalHost(2, dialogs=3) as host, host.client_session() as http:
        # host.client_session() reaches the portals by their names (p0.localhost...).
        openlines = OpenLinesApp(
            client_id=host.client_id, client_secret=host.client_secret, session=http
        )
        runner = web.AppRunner(create_app(openlines), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        url = f"http://127.0.0.1:{runner.addresses[0][1]}/events"
        print(f"web app on {url}")
        first, second = host.portals
        try:
            for portal in host.portals:
                install = {"VERSION": "1", "ACTIVE": "Y", "INSTALLED": "Y", "LANGUAGE_ID": "en"}
                status = await portal.send_event(url, "ONAPPINSTALL", install)
                print(f"ONAPPINSTALL -> HTTP {status}")
            pair = await openlines.store.load(first.member_id)
            token = await openlines.application_token(first.member_id)
            print(
                f"stored for the first portal: pair {pair is not None}, token {token is not None}"
            )
            data = message_data(first.dialogs[0].chat_id, "Hello!")
            status = await first.send_event(url, "ONOPENLINEMESSAGEADD", data)
            print(f"ONOPENLINEMESSAGEADD -> HTTP {status}")
            # The first portal's member_id with the second's (valid, but not its) token.
            status = await first.send_event(
                url, "ONOPENLINEMESSAGEADD", data, application_token=second.application_token
            )
            print(f"forged ONOPENLINEMESSAGEADD -> HTTP {status}")
        finally:
            await runner.cleanup()
        calls = [dict(portal.stats.by_method) for portal in host.portals]
        print(f"the portals answered {calls}")


async def serve(client_id: str, client_secret: str) -> web.Application:
    """The web app for real portals (built in the server's event loop)."""
    openlines = OpenLinesApp(
        client_id=client_id,
        client_secret=client_secret,
        token_url=os.environ.get("BITRIX24_TOKEN_URL"),  # None: each pair's own server
    )
    return create_app(openlines)


def main() -> int:
    """Run the demo, or serve real portals when OAuth credentials are configured."""
    client_id = os.environ.get("BITRIX24_CLIENT_ID")
    client_secret = os.environ.get("BITRIX24_CLIENT_SECRET")
    if client_id and client_secret:
        web.run_app(serve(client_id, client_secret), port=int(os.environ.get("PORT", "8080")))
        return 0
    asyncio.run(demo())
    return 0


if __name__ == "__main__":
    sys.exit(main())
