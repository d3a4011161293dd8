"""An async bot that reacts to new messages in an open line (``ONOPENLINEMESSAGEADD``).

The handler verifies each event, puts it in a queue and answers at once (the portal does
not retry a failed delivery, and a slow handler holds its request); a consumer task takes
the events from the queue, looks the dialog up with ``get_dialog(chat_id=...)``, logs its
name and session, and replies with ``imbot.message.add``.

Replying needs a chat bot registered by the application (``imbot.register``, scope
``imbot``). A portal where the method is missing answers ``ERROR_METHOD_NOT_FOUND``: the
bot then logs that it cannot reply and stops trying. The fake portal is such a portal, so
the demo shows the lookup and that log line, not a sent reply.

Run it:

* without configuration, against a fake portal: the portal posts two client messages, a
  system message and a forged event; the bot logs what it did, and stops;
* with ``BITRIX24_CLIENT_ID``, ``BITRIX24_CLIENT_SECRET``, ``BITRIX24_TOKENS_FILE`` (the
  token pair stored at install time, rewritten after each refresh) and
  ``BITRIX24_APPLICATION_TOKEN`` set (and optionally ``BITRIX24_TOKEN_URL``,
  ``BITRIX24_BOT_ID``, ``PORT``), it serves ``POST /events`` until Ctrl-C.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiohttp import web

from bitrix_openlines import (
    Dialog,
    InMemoryTokenStore,
    OAuthAuth,
    OAuthTokens,
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
from bitrix_openlines.errors import MethodNotFoundError
from bitrix_openlines.events import OpenLineMessageEvent
from bitrix_openlines.testing import FakePortal

logger = logging.getLogger("openlines_bot")

PORTAL_KEY = "portal"  # the one portal this bot serves


class OpenLinesBot:
    """Answers the client messages of an open line.

    Args:
        client: The portal's client.
        application_token: The token the portal's events carry (stored at install).
        bot_id: The chat bot to reply as (``None``: the application's only bot).
    """

    def __init__(
        self, client: OpenLinesClient, *, application_token: str, bot_id: int | None = None
    ) -> None:
        self.client = client
        self.application_token = application_token
        self.bot_id = bot_id
        self.queue: asyncio.Queue[OpenLineMessageEvent] = asyncio.Queue(maxsize=1000)
        self.can_reply = True
        self.replies = 0

    async def handle(self, request: web.Request) -> web.Response:
        """``POST /events``: verify, queue, answer at once."""
        try:
            event = await read_event(request, application_token=self.application_token)
        except EventVerificationError as error:
            logger.warning("rejected an event: %s", error)
            return web.json_response({"ok": False}, status=403)
        except EventError as error:
            return web.json_response({"ok": False, "error": str(error)}, status=400)
        if not isinstance(event, OpenLineMessageEvent) or event.name != "ONOPENLINEMESSAGEADD":
            return web.json_response({"ok": True, "ignored": event.name})
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            return web.json_response({"ok": False, "error": "busy"}, status=503)
        return web.json_response({"ok": True, "queued": self.queue.qsize()})

    async def consume(self) -> None:
        """Answer queued events one by one, forever; one failure does not stop the bot."""
        while True:
            event = await self.queue.get()
            try:
                await self.answer(event)
            except Exception:
                logger.exception("could not answer an %s event", event.name)
            finally:
                self.queue.task_done()

    async def answer(self, event: OpenLineMessageEvent) -> None:
        """Look up the dialog of each new client message and reply to it."""
        for item in event.items:
            if item.message.system:
                logger.info("chat %d: system message skipped", item.chat.id)
                continue
            try:
                dialog = await self.client.get_dialog(chat_id=item.chat.id)
            except OpenLinesError as error:
                logger.warning("chat %d: no dialog (%s)", item.chat.id, error.code or error)
                continue
            logger.info(
                "chat %d: %r (session %s, line %s) wrote %r",
                dialog.chat_id,
                dialog.name,
                dialog.session_id,
                item.connector.line_id,
                item.message.text,
            )
            await self.reply(dialog, f"Thanks, we got your message: {item.message.text}")

    async def reply(self, dialog: Dialog, text: str) -> bool:
        """Send ``text`` to the dialog as the bot, if the portal lets us; True when sent."""
        if not self.can_reply:
            return False
        params: dict[str, Any] = {"DIALOG_ID": dialog.dialog_id, "MESSAGE": text}
        if self.bot_id is not None:
            params["BOT_ID"] = self.bot_id
        try:
            await self.client.call_raw("imbot.message.add", params)
        except MethodNotFoundError:
            self.can_reply = False
            logger.warning(
                "the portal has no imbot.message.add (no chat bot registered, or no imbot "
                "scope): replies are off; dialog %s was not answered",
                dialog.dialog_id,
            )
            return False
        self.replies += 1
        logger.info("replied in %s", dialog.dialog_id)
        return True


BOT = web.AppKey("bot", OpenLinesBot)


def create_app(
    auth: OAuthAuth, *, application_token: str, bot_id: int | None = None
) -> web.Application:
    """Build the bot's web app: ``POST /events``, the shared session, the consumer task."""
    app = web.Application()

    async def run_bot(app: web.Application) -> AsyncIterator[None]:
        client = OpenLinesClient(auth, session=app[CLIENT_SESSION])
        bot = OpenLinesBot(client, application_token=application_token, bot_id=bot_id)
        app[BOT] = bot
        consumer = asyncio.create_task(bot.consume())
        yield
        consumer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await consumer
        await client.close()

    async def handle(request: web.Request) -> web.Response:
        return await request.app[BOT].handle(request)

    app.cleanup_ctx.append(client_session_ctx)
    app.cleanup_ctx.append(run_bot)
    app.router.add_post("/events", handle)
    return app


class JsonFileTokenStore(TokenStore):
    """One portal's token pair in a JSON file, rewritten after each refresh.

    The file has the keys of an OAuth answer (``access_token``, ``refresh_token``,
    ``client_endpoint``, ``expires``...), like the CLI's ``BITRIX24_TOKENS_FILE``.
    """

    def __init__(self, path: str | Path) -> None:
        self._path = Path(path)
        self._lock = asyncio.Lock()

    async def load(self, key: str) -> OAuthTokens | None:
        if not self._path.exists():
            return None
        text = await asyncio.to_thread(self._path.read_text, encoding="utf-8")
        return OAuthTokens.from_response(json.loads(text))

    async def save(self, key: str, tokens: OAuthTokens) -> None:
        body = json.dumps(tokens.to_response())
        temporary = self._path.with_suffix(".tmp")
        # Written aside and renamed: a crash never leaves half a pair (the old refresh
        # token is already spent).
        await asyncio.to_thread(temporary.write_text, body, encoding="utf-8")
        await asyncio.to_thread(os.replace, temporary, self._path)

    def lock(self, key: str) -> asyncio.Lock:
        return self._lock


def message_event(chat_id: int, text: str, *, system: bool = False) -> dict[str, Any]:
    """The ``data`` block of an ``ONOPENLINEMESSAGEADD`` event, shaped like the docs'."""
    return {
        "DATA": [
            {
                "connector": {"connector_id": "livechat", "line_id": 1, "chat_id": chat_id},
                "chat": {"id": chat_id},
                "message": {"id": 1, "text": text, "system": "Y" if system else "N"},
            }
        ]
    }


async def demo() -> None:
    """Serve the bot, and let a fake portal post messages to it."""
    async with FakePortal(dialogs=3) as portal:
        # What the install handler stored (see examples/webapp.py).
        store = InMemoryTokenStore()
        await store.save(PORTAL_KEY, OAuthTokens.from_response(portal.issue_tokens()))
        auth = OAuthAuth(
            client_id=portal.client_id,
            client_secret=portal.client_secret,
            token_url=portal.token_url,
            store=store,
            key=PORTAL_KEY,
        )
        app = create_app(auth, application_token=portal.application_token)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        url = f"http://127.0.0.1:{runner.addresses[0][1]}/events"
        try:
            sent = [
                ("ONOPENLINEMESSAGEADD", message_event(1, "Hello!"), None),
                ("ONOPENLINEMESSAGEADD", message_event(2, "Is anyone there?"), None),
                ("ONOPENLINEMESSAGEADD", message_event(2, "joined", system=True), None),
                ("ONOPENLINEMESSAGEADD", message_event(3, "forged"), "0" * 32),
            ]
            for name, data, token in sent:
                status = await portal.send_event(url, name, data, application_token=token)
                logger.info("portal posted %s -> HTTP %d", name, status)
            bot = app[BOT]
            await bot.queue.join()
            logger.info("done: %d replies sent; replies possible: %s", bot.replies, bot.can_reply)
        finally:
            await runner.cleanup()


def main() -> int:
    """Run the demo, or serve a real portal when it is configured."""
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s", stream=sys.stdout)
    settings = {
        name: os.environ.get(f"BITRIX24_{name}")
        for name in ("CLIENT_ID", "CLIENT_SECRET", "TOKENS_FILE", "APPLICATION_TOKEN")
    }
    if not all(settings.values()):
        asyncio.run(demo())
        return 0
    bot_id = os.environ.get("BITRIX24_BOT_ID")
    auth = OAuthAuth(
        client_id=str(settings["CLIENT_ID"]),
        client_secret=str(settings["CLIENT_SECRET"]),
        token_url=os.environ.get("BITRIX24_TOKEN_URL", DEFAULT_TOKEN_URL),
        store=JsonFileTokenStore(str(settings["TOKENS_FILE"])),
        key=PORTAL_KEY,
    )
    app = create_app(
        auth,
        application_token=str(settings["APPLICATION_TOKEN"]),
        bot_id=int(bot_id) if bot_id else None,
    )
    web.run_app(app, port=int(os.environ.get("PORT", "8080")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
