"""The examples run on a fresh machine (against the fake portal) and do what they say."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from bitrix_openlines import (
    Dialog,
    OAuthAuth,
    OAuthTokens,
    OpenLinesApp,
    OpenLinesClient,
    RetryPolicy,
)
from bitrix_openlines.errors import MethodNotFoundError
from bitrix_openlines.testing import FakePortal
from bitrix_openlines.testing._phpform import build_query

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def run_example(name: str, *args: str, cwd: Path) -> str:
    """Run ``examples/<name>.py`` as a script in ``cwd`` (a test's tmp_path, so nothing
    lands in the repository) with no portal configured; return stdout."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BITRIX24_")}
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / f"{name}.py"), *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def load_example(name: str) -> Any:
    """Import ``examples/<name>.py`` as a module."""
    spec = importlib.util.spec_from_file_location(f"examples_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_every_example_has_a_main() -> None:
    for path in sorted(EXAMPLES.glob("*.py")):
        text = path.read_text(encoding="utf-8")
        assert "def main(" in text, path.name
        assert 'if __name__ == "__main__":' in text, path.name


def test_bot_script(tmp_path: Path) -> None:
    out = run_example("bot", cwd=tmp_path)
    assert out.count("-> HTTP 200") == 3
    assert "-> HTTP 403" in out
    assert "chat 1: " in out
    assert "wrote 'Hello!'" in out
    assert "wrote 'Is anyone there?'" in out
    assert "chat 2: system message skipped" in out
    # The fake portal has no imbot.message.add: said once, then replies are off.
    assert out.count("the portal has no imbot.message.add") == 1
    assert "done: 0 replies sent; replies possible: False" in out


def test_nightly_export_script(tmp_path: Path) -> None:
    output = tmp_path / "out" / "dialogs.jsonl"
    output.parent.mkdir()
    out = run_example(
        "nightly_export", "--first", "1", "--last", "250", "--output", str(output), cwd=tmp_path
    )
    # 240 dialogs, 3 forbidden, 10 unknown ids.
    assert "exported 237 dialogs, 13 failed" in out
    assert f"to {output.resolve()} " in out
    assert "the portal answered 5 batch calls" in out
    lines = output.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 250
    assert not (output.parent / "dialogs.jsonl.partial").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_nightly_export_writes_to_the_current_folder_by_default(tmp_path: Path) -> None:
    # The printed path is one the user can open after the script exits.
    out = run_example("nightly_export", "--last", "60", cwd=tmp_path)
    output = tmp_path / "dialogs-export.jsonl"
    assert f"to {output.resolve()} " in out
    assert len(output.read_text(encoding="utf-8").splitlines()) == 60
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dialogs-export.jsonl"]


# -- the web app, end to end, over real HTTP --------------------------------------------


class WebApp:
    """The example's web app on a real server: its URL and the ``OpenLinesApp`` it uses."""

    def __init__(self, url: str, openlines: OpenLinesApp) -> None:
        self.url = url
        self.openlines = openlines

    async def stored(self, member_id: str) -> tuple[OAuthTokens | None, str | None]:
        """The pair and the application token stored for ``member_id``."""
        store = self.openlines.store
        return await store.load(member_id), await self.openlines.application_token(member_id)


@pytest.fixture
async def webapp(portal: FakePortal) -> AsyncIterator[WebApp]:
    module = load_example("webapp")
    openlines = OpenLinesApp(
        client_id=portal.client_id,
        client_secret=portal.client_secret,
        rate_limit=None,
        retry=RetryPolicy.no_wait(),
    )
    server = TestServer(module.create_app(openlines))
    await server.start_server()
    try:
        yield WebApp(str(server.make_url("/events")), openlines)
    finally:
        await server.close()


INSTALL = {"VERSION": "1", "ACTIVE": "Y", "INSTALLED": "Y", "LANGUAGE_ID": "en"}


def event_body(portal: FakePortal, event: str, data: Any, **auth: Any) -> bytes:
    """An event as the portal would post it, with a chosen ``auth`` block."""
    block = {"member_id": portal.member_id, "application_token": portal.application_token}
    block.update(auth)
    return build_query({"event": event, "data": data, "ts": 1, "auth": block}).encode()


async def post(url: str, body: bytes) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http, http.post(url, data=body, headers=FORM) as r:
        return r.status, await r.json()


def test_webapp_script(tmp_path: Path) -> None:
    out = run_example("webapp", cwd=tmp_path)
    # Two portals installed: each checked with app.info, each stored.
    assert out.count("ONAPPINSTALL -> HTTP 200") == 2
    assert "installed on http://p0.localhost:" in out
    assert "installed on http://p1.localhost:" in out
    assert "stored for the first portal: pair True, token True" in out
    # The message was answered with its dialog, looked up at its own portal.
    assert "ONOPENLINEMESSAGEADD: chat 1 is " in out
    assert "ONOPENLINEMESSAGEADD -> HTTP 200" in out
    # The first portal's member_id with the second's token: refused, nothing looked up.
    assert "forged ONOPENLINEMESSAGEADD -> HTTP 403" in out
    assert out.count("ONOPENLINEMESSAGEADD: chat") == 1
    assert (
        "the portals answered [{'app.info': 1, 'imopenlines.dialog.get': 1}, {'app.info': 1}]"
        in out
    )


async def test_webapp_stores_the_install_answers_the_dialog_and_refuses_forgeries(
    portal: FakePortal, webapp: WebApp
) -> None:
    module = load_example("webapp")
    assert await webapp.stored(portal.member_id) == (None, None)
    assert await portal.send_event(webapp.url, "ONAPPINSTALL", INSTALL) == 200
    pair, token = await webapp.stored(portal.member_id)
    assert pair is not None
    assert pair.client_endpoint == portal.client_endpoint
    assert token == portal.application_token
    dialog = portal.dialogs[1]
    data = module.message_data(dialog.chat_id, "Hi")

    status, body = await post(webapp.url, event_body(portal, "ONOPENLINEMESSAGEADD", data))
    assert status == 200
    assert body["event"] == "ONOPENLINEMESSAGEADD"
    (found,) = body["dialogs"]
    assert found["chat_id"] == dialog.chat_id
    assert found["dialog_id"] == f"chat{dialog.chat_id}"
    assert found["session_id"] == dialog.session_id
    assert found["name"]

    forged = event_body(portal, "ONOPENLINEMESSAGEADD", data, application_token="0" * 32)
    status, body = await post(webapp.url, forged)
    assert status == 403
    assert body == {"ok": False, "error": "forbidden"}
    unknown = event_body(portal, "ONSESSIONSTART", data, member_id="f" * 32)
    assert (await post(webapp.url, unknown))[0] == 403
    assert (await post(webapp.url, b"not an event"))[0] == 400
    # Through the portal itself too.
    assert await portal.send_event(webapp.url, "ONSESSIONSTART", data) == 200
    assert (
        await portal.send_event(webapp.url, "ONSESSIONSTART", data, application_token="0" * 32)
        == 403
    )
    # Only the verified events reached the portal (dialog.get twice, app.info once).
    assert portal.stats.by_method == {"app.info": 1, "imopenlines.dialog.get": 2}
    # Another event of an installed portal is accepted and not acted on.
    status, body = await post(webapp.url, event_body(portal, "ONCRMDEALADD", {}))
    assert (status, body) == (200, {"ok": True, "event": "ONCRMDEALADD"})


async def test_webapp_answers_a_dialog_it_cannot_read_with_its_error(
    portal: FakePortal, webapp: WebApp
) -> None:
    module = load_example("webapp")
    assert await portal.send_event(webapp.url, "ONAPPINSTALL", INSTALL) == 200
    both = module.message_data(3, "Hi")  # chat 3 is forbidden on this portal
    both["DATA"].append(module.message_data(5, "Hi")["DATA"][0])
    status, body = await post(webapp.url, event_body(portal, "ONOPENLINEMESSAGEADD", both))
    assert status == 200
    forbidden, readable = body["dialogs"]
    assert forbidden == {"chat_id": 3, "error": "ACCESS_ERROR"}
    assert readable["chat_id"] == 5


async def test_webapp_uses_the_stored_tokens_and_refreshes_them(
    portal: FakePortal, webapp: WebApp
) -> None:
    module = load_example("webapp")
    assert await portal.send_event(webapp.url, "ONAPPINSTALL", INSTALL) == 200
    first, _ = await webapp.stored(portal.member_id)
    portal.expire_access_tokens()
    data = module.message_data(1, "Hi")
    status, body = await post(webapp.url, event_body(portal, "ONSESSIONSTART", data))
    assert status == 200
    assert body["dialogs"][0]["chat_id"] == 1
    assert portal.stats.refreshes == 1
    # The refreshed pair replaced the installed one in the store.
    refreshed, _ = await webapp.stored(portal.member_id)
    assert first is not None
    assert refreshed is not None
    assert refreshed.refresh_token != first.refresh_token


async def test_webapp_install_cannot_be_taken_over(portal: FakePortal, webapp: WebApp) -> None:
    assert await portal.send_event(webapp.url, "ONAPPINSTALL", INSTALL) == 200
    pair, _ = await webapp.stored(portal.member_id)
    # A second "install" of the same portal with another token is refused...
    status = await portal.send_event(webapp.url, "ONAPPINSTALL", INSTALL, application_token="x")
    assert status == 403
    assert await webapp.stored(portal.member_id) == (pair, portal.application_token)
    # ... a real reinstall is accepted (and stores its new pair).
    assert await portal.send_event(webapp.url, "ONAPPINSTALL", INSTALL) == 200
    again, token = await webapp.stored(portal.member_id)
    assert again != pair
    assert token == portal.application_token


async def test_webapp_install_needs_working_tokens(portal: FakePortal, webapp: WebApp) -> None:
    bogus = event_body(
        portal,
        "ONAPPINSTALL",
        INSTALL,
        access_token="a" * 32,
        refresh_token="r" * 32,
        client_endpoint=portal.client_endpoint,
    )
    status, body = await post(webapp.url, bogus)
    assert (status, body) == (403, {"ok": False, "error": "forbidden"})
    assert portal.stats.by_method == {"app.info": 1}  # tried, refused by the portal
    assert await webapp.stored(portal.member_id) == (None, None)
    # Without tokens there is nothing to keep.
    status = await portal.send_event(webapp.url, "ONAPPINSTALL", INSTALL, with_tokens=False)
    assert status == 400
    assert await webapp.stored(portal.member_id) == (None, None)
    # The real install still goes through.
    assert await portal.send_event(webapp.url, "ONAPPINSTALL", INSTALL) == 200
    assert (await webapp.stored(portal.member_id))[1] == portal.application_token


async def test_webapp_forgets_an_uninstalled_portal(portal: FakePortal, webapp: WebApp) -> None:
    module = load_example("webapp")
    assert await portal.send_event(webapp.url, "ONAPPINSTALL", INSTALL) == 200
    data = module.message_data(1, "Hi")
    assert await portal.send_event(webapp.url, "ONSESSIONSTART", data) == 200
    assert webapp.openlines.is_live(portal.member_id)
    status = await portal.send_event(webapp.url, "ONAPPUNINSTALL", {}, with_tokens=False)
    assert status == 200
    assert await webapp.stored(portal.member_id) == (None, None)
    assert not webapp.openlines.is_live(portal.member_id)
    assert await portal.send_event(webapp.url, "ONSESSIONSTART", data) == 403


async def test_webapp_closes_its_openlines_app_when_it_stops(portal: FakePortal) -> None:
    module = load_example("webapp")
    openlines = OpenLinesApp(client_id=portal.client_id, client_secret=portal.client_secret)
    server = TestServer(module.create_app(openlines))
    await server.start_server()
    assert openlines.portal(portal.member_id) is not None
    await server.close()
    with pytest.raises(RuntimeError, match="closed"):
        openlines.portal(portal.member_id)


# -- the bot's parts ---------------------------------------------------------------------


class StubClient:
    """Records ``call_raw`` calls; raises ``error`` when set."""

    def __init__(self, error: Exception | None = None) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.error = error

    async def call_raw(self, method: str, params: Any = None) -> Any:
        self.calls.append((method, params))
        if self.error is not None:
            raise self.error
        return 1


async def test_bot_replies_when_the_portal_has_the_method() -> None:
    module = load_example("bot")
    client = StubClient()
    bot = module.OpenLinesBot(client, application_token="t", bot_id=39)
    dialog = Dialog(id=7)
    assert await bot.reply(dialog, "hi") is True
    assert client.calls == [
        ("imbot.message.add", {"DIALOG_ID": "chat7", "MESSAGE": "hi", "BOT_ID": 39})
    ]
    assert bot.replies == 1


async def test_bot_stops_replying_without_the_method() -> None:
    module = load_example("bot")
    client = StubClient(MethodNotFoundError(code="ERROR_METHOD_NOT_FOUND", status=404))
    bot = module.OpenLinesBot(client, application_token="t")
    assert await bot.reply(Dialog(id=7), "hi") is False
    assert await bot.reply(Dialog(id=8), "hi") is False
    assert len(client.calls) == 1
    assert bot.can_reply is False


async def test_bot_token_file_store_survives_a_refresh(portal: FakePortal, tmp_path: Path) -> None:
    module = load_example("bot")
    path = tmp_path / "tokens.json"
    store = module.JsonFileTokenStore(path)
    assert await store.load("portal") is None
    first = OAuthTokens.from_response(portal.issue_tokens())
    await store.save("portal", first)
    auth = OAuthAuth(
        client_id=portal.client_id,
        client_secret=portal.client_secret,
        token_url=portal.token_url,
        store=store,
        key="portal",
    )
    portal.expire_access_tokens()
    async with OpenLinesClient(auth, rate_limit=None) as client:
        assert (await client.get_dialog(chat_id=1)).id == 1
    saved = json.loads(path.read_text(encoding="utf-8"))
    assert saved["refresh_token"] != first.refresh_token
    assert (await store.load("portal")).client_endpoint == portal.client_endpoint
    assert not path.with_suffix(".tmp").exists()
