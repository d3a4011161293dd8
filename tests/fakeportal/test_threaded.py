"""ThreadedFakePortal from sync code and the pytest plugin's fake_portal fixture."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bitrix_openlines.testing import FakeDialog, Faults, ThreadedFakePortal

from ._helpers import DIALOG_GET, call

THREAD_NAME = "fake-bitrix24-portal"


def post(url: str, payload: Any) -> tuple[int, Any]:
    """POST JSON with urllib; return (status, decoded body) for 2xx and HTTP errors alike."""
    request = urllib.request.Request(
        url,
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.loads(error.read())


def portal_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == THREAD_NAME]


def test_threaded_portal_serves_sync_code() -> None:
    with ThreadedFakePortal(dialogs=5, forbidden=[2]) as portal:
        assert len(portal_threads()) == 1
        url = portal.webhook_url + DIALOG_GET
        assert post(url, {"CHAT_ID": 1})[0] == 200
        assert post(url, {"CHAT_ID": 2})[1]["error"] == "ACCESS_ERROR"

        tokens = portal.issue_tokens()
        assert tokens["client_endpoint"] == portal.client_endpoint
        oauth = portal.client_endpoint + DIALOG_GET
        assert post(oauth, {"CHAT_ID": 1, "auth": tokens["access_token"]})[0] == 200
        portal.expire_access_tokens()
        assert post(oauth, {"CHAT_ID": 1, "auth": tokens["access_token"]})[1]["error"] == (
            "expired_token"
        )

        code = portal.create_authorization_code()
        query = urllib.parse.urlencode(
            {
                "grant_type": "authorization_code",
                "client_id": portal.client_id,
                "client_secret": portal.client_secret,
                "code": code,
            }
        )
        with urllib.request.urlopen(f"{portal.token_url}?{query}", timeout=10) as response:
            assert json.loads(response.read())["member_id"] == portal.member_id

        portal.set_faults(Faults(internal_error=1.0))
        assert post(url, {"CHAT_ID": 1})[0] == 500
        portal.set_faults(None)

        portal.add_dialog(FakeDialog(chat_id=99, session_id=990, user_code="viber|1|2|3"))
        assert [d.chat_id for d in portal.dialogs][-1] == 99
        assert post(url, {"USER_CODE": "viber|1|2|3"})[0] == 200

        stats = portal.stats
        assert stats.requests == 6
        assert stats.token_requests == 1
        assert stats.faults == {"internal_error": 1}
        portal.reset_stats()
        assert portal.stats.requests == 0
        assert stats.requests == 6  # `stats` is a copy taken on the portal's loop
        assert portal.application_token
        assert portal.base_url.startswith("http://127.0.0.1:")
    assert portal_threads() == []
    portal.close()  # twice is fine
    with pytest.raises(RuntimeError, match="not started"):
        portal.issue_tokens()


def test_start_failure_is_raised_in_the_callers_thread() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        portal = ThreadedFakePortal(dialogs=1, port=taken.getsockname()[1])
        with pytest.raises(OSError):
            portal.start()
    assert portal_threads() == []


def test_bad_arguments_are_raised_before_any_thread() -> None:
    with pytest.raises(ValueError, match="burst"):
        ThreadedFakePortal(burst=0)
    assert portal_threads() == []


async def test_threaded_portal_serves_async_code_on_another_loop(
    http: aiohttp.ClientSession,
) -> None:
    with ThreadedFakePortal(dialogs=2) as portal:
        status, body = await call(http, portal.webhook_url + DIALOG_GET, {"CHAT_ID": 2})
        assert (status, body["result"]["id"]) == (200, 2)


@pytest.mark.fake_portal(dialogs=3, forbidden=[2], webhook_user_id=5)
def test_fixture_takes_its_options_from_the_marker(fake_portal: ThreadedFakePortal) -> None:
    assert [d.chat_id for d in fake_portal.dialogs] == [1, 2, 3]
    assert "/rest/5/" in fake_portal.webhook_url
    assert post(fake_portal.webhook_url + DIALOG_GET, {"CHAT_ID": 2})[0] == 400


def test_fixture_defaults(fake_portal: ThreadedFakePortal) -> None:
    assert len(fake_portal.dialogs) == 100
    assert post(fake_portal.webhook_url + DIALOG_GET, {"CHAT_ID": 100})[0] == 200


@pytest.mark.fake_portal(dialogs=1)
async def test_fixture_in_an_async_test(
    fake_portal: ThreadedFakePortal, http: aiohttp.ClientSession
) -> None:
    status, _ = await call(http, fake_portal.webhook_url + DIALOG_GET, {"CHAT_ID": 1})
    assert status == 200


def test_plugin_alone_in_a_clean_pytest_run(tmp_path: Path) -> None:
    """The plugin loads without pytest-asyncio, registers its marker, starts nothing early."""
    (tmp_path / "test_uses_plugin.py").write_text(
        textwrap.dedent(
            """
            import sys
            import threading
            import urllib.request

            import pytest

            def test_nothing_runs_before_the_fixture_is_requested():
                assert "pytest_asyncio" not in sys.modules
                names = [t.name for t in threading.enumerate()]
                assert "fake-bitrix24-portal" not in names

            @pytest.mark.fake_portal(dialogs=2)
            def test_marker(fake_portal):
                assert len(fake_portal.dialogs) == 2
                url = fake_portal.webhook_url + "server.time"
                request = urllib.request.Request(url, data=b"", method="POST")
                with urllib.request.urlopen(request, timeout=10) as response:
                    assert response.status == 200

            @pytest.mark.fake_portal(5)
            def test_positional_marker_arguments_are_refused(fake_portal):
                pass
            """
        ),
        encoding="utf-8",
    )
    repo_root = Path(__file__).resolve().parents[2]
    env = {
        **os.environ,
        "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(repo_root), os.environ.get("PYTHONPATH")])
        ),
    }
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "bitrix_openlines.testing.pytest_plugin",
            "-p",
            "no:cacheprovider",
            "--strict-markers",
            "-q",
            str(tmp_path),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = completed.stdout + completed.stderr
    assert "2 passed, 1 error" in output, output
    assert "takes keyword arguments only" in output, output


def test_threaded_portal_moves_and_tells_its_unix_time() -> None:
    with ThreadedFakePortal(dialogs=2, rate=None) as portal:
        path = urllib.parse.urlsplit(portal.webhook_url).path + DIALOG_GET
        portal.move_to("https://renamed.example")
        connection = http.client.HTTPConnection(
            "127.0.0.1", urllib.parse.urlsplit(portal.base_url).port
        )
        try:
            connection.request(
                "POST", path, body=b"{}", headers={"Content-Type": "application/json"}
            )
            answer = connection.getresponse()
            answer.read()
        finally:
            connection.close()
        assert answer.status == 302
        assert answer.getheader("Location") == "https://renamed.example" + path
        portal.move_to(None)
        assert post(portal.webhook_url + DIALOG_GET, {"CHAT_ID": 1})[0] == 200
        first = portal.unix_time()
        assert portal.unix_time() >= first
