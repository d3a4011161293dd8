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

from bitrix_openlines import Dialog, OAuthAuth, OAuthTokens, OpenLinesClient
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


def test_webapp_script(tmp_path: Path) -> None:
    out = run_example("webapp", cwd=tmp_path)
    assert "ONAPPINSTALL -> HTTP 200" in out
    assert "ONOPENLINEMESSAGEADD -> HTTP 200" in out
    assert "forged ONOPENLINEMESSAGEADD -> HTTP 403" in out
    assert "ONOPENLINEMESSAGEADD: chat 1 is " in out
    assert "installed on http://127.0.0.1:" in out


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


@pytest.fixture
async def webapp(portal: FakePortal) -> AsyncIterator[str]:
    module = load_example("webapp")
    config = module.AppConfig(portal.client_id, portal.client_secret, portal.token_url)
    server = TestServer(module.create_app(config))
    await server.start_server()
    try:
        yield str(server.make_url("/"))
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


async def test_webapp_answers_the_dialog_and_refuses_forgeries(
    portal: FakePortal, webapp: str
) -> None:
    module = load_example("webapp")
    assert await portal.send_event(webapp + "install", "ONAPPINSTALL", INSTALL) == 200
    dialog = portal.dialogs[1]
    data = module.message_data(dialog.chat_id, dialog.user_code, "Hi")

    status, body = await post(webapp + "events", event_body(portal, "ONOPENLINEMESSAGEADD", data))
    assert status == 200
    (found,) = body["dialogs"]
    assert found["chat_id"] == dialog.chat_id
    assert found["dialog_id"] == f"chat{dialog.chat_id}"
    assert found["session_id"] == dialog.session_id
    assert found["name"]

    forged = event_body(portal, "ONOPENLINEMESSAGEADD", data, application_token="0" * 32)
    status, body = await post(webapp + "events", forged)
    assert status == 403
    assert body == {"ok": False, "error": "forbidden"}
    unknown = event_body(portal, "ONSESSIONSTART", data, member_id="f" * 32)
    assert (await post(webapp + "events", unknown))[0] == 403
    assert (await post(webapp + "events", b"not an event"))[0] == 400
    # Through the portal itself too.
    assert await portal.send_event(webapp + "events", "ONSESSIONSTART", data) == 200
    assert (
        await portal.send_event(
            webapp + "events", "ONSESSIONSTART", data, application_token="0" * 32
        )
        == 403
    )
    # Only the verified events reached the portal (dialog.get twice, app.info once).
    assert portal.stats.by_method == {"app.info": 1, "imopenlines.dialog.get": 2}


async def test_webapp_uses_the_stored_tokens_and_refreshes_them(
    portal: FakePortal, webapp: str
) -> None:
    module = load_example("webapp")
    assert await portal.send_event(webapp + "install", "ONAPPINSTALL", INSTALL) == 200
    portal.expire_access_tokens()
    data = module.message_data(1, portal.dialogs[0].user_code, "Hi")
    status, body = await post(webapp + "events", event_body(portal, "ONSESSIONSTART", data))
    assert status == 200
    assert body["dialogs"][0]["chat_id"] == 1
    assert portal.stats.refreshes == 1


async def test_webapp_install_cannot_be_taken_over(portal: FakePortal, webapp: str) -> None:
    install = webapp + "install"
    assert await portal.send_event(install, "ONAPPINSTALL", INSTALL) == 200
    # A second "install" of the same portal with another token is refused...
    assert await portal.send_event(install, "ONAPPINSTALL", INSTALL, application_token="x") == 403
    # ... a real reinstall is accepted.
    assert await portal.send_event(install, "ONAPPINSTALL", INSTALL) == 200


async def test_webapp_install_needs_working_tokens(portal: FakePortal, webapp: str) -> None:
    bogus = event_body(
        portal,
        "ONAPPINSTALL",
        INSTALL,
        access_token="a" * 32,
        refresh_token="r" * 32,
        client_endpoint=portal.client_endpoint,
    )
    status, body = await post(webapp + "install", bogus)
    assert status == 403
    assert "invalid_grant" in body["error"]  # invalid_token, then the refresh fails
    assert "a" * 32 not in body["error"]
    # Without tokens there is nothing to keep.
    assert (
        await portal.send_event(webapp + "install", "ONAPPINSTALL", INSTALL, with_tokens=False)
        == 400
    )
    assert (await post(webapp + "install", event_body(portal, "ONCRMDEALADD", {})))[0] == 400


async def test_webapp_forgets_an_uninstalled_portal(portal: FakePortal, webapp: str) -> None:
    assert await portal.send_event(webapp + "install", "ONAPPINSTALL", INSTALL) == 200
    assert (
        await portal.send_event(webapp + "events", "ONAPPUNINSTALL", {}, with_tokens=False) == 200
    )
    assert await portal.send_event(webapp + "events", "ONSESSIONSTART", {}) == 403


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
