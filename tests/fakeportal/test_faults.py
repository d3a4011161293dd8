"""Injected faults: each kind over sockets, seeded determinism, stats and validation."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from bitrix_openlines.testing import FakePortal, FakePortalHost, Faults, LocalhostResolver

from ._helpers import DIALOG_GET, FakeClock, call

INTERNAL = {"error": "INTERNAL_SERVER_ERROR", "error_description": "Internal server error"}


async def post(http: aiohttp.ClientSession, url: str) -> tuple[int, str, bytes]:
    async with http.post(url, json={"CHAT_ID": 1}) as response:
        return response.status, response.content_type, await response.read()


async def test_internal_error(http: aiohttp.ClientSession) -> None:
    async with FakePortal(dialogs=2, faults=Faults(internal_error=1.0)) as portal:
        assert await call(http, portal.webhook_url + DIALOG_GET, {"CHAT_ID": 1}) == (500, INTERNAL)
        assert portal.stats.faults == {"internal_error": 1}
        assert portal.stats.rejections == {"INTERNAL_SERVER_ERROR": 1}


async def test_bad_gateway_is_an_html_page(http: aiohttp.ClientSession) -> None:
    async with FakePortal(dialogs=2, faults=Faults(bad_gateway=1.0)) as portal:
        status, content_type, body = await post(http, portal.webhook_url + DIALOG_GET)
        assert (status, content_type) == (502, "text/html")
        assert b"<title>502 Bad Gateway</title>" in body
        assert b"nginx" in body


async def test_drop_closes_the_connection(http: aiohttp.ClientSession) -> None:
    async with FakePortal(dialogs=2, faults=Faults(drop=1.0)) as portal:
        with pytest.raises((aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError)):
            await post(http, portal.webhook_url + DIALOG_GET)
        assert portal.stats.faults == {"drop": 1}


async def test_truncate_cuts_the_body_in_half(http: aiohttp.ClientSession) -> None:
    async with FakePortal(dialogs=2, faults=Faults(truncate=1.0)) as portal:
        status, content_type, body = await post(http, portal.webhook_url + DIALOG_GET)
        assert (status, content_type) == (200, "application/json")
        assert body.startswith(b'{"result":{"id":1,')
        with pytest.raises(ValueError, match=r"Unterminated|Expecting"):
            json.loads(body)
        portal.set_faults(None)
        _, _, whole = await post(http, portal.webhook_url + DIALOG_GET)
        assert len(body) == len(whole) // 2 or abs(len(body) - len(whole) // 2) < 40


async def test_slow_answers_are_delayed(
    http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with FakePortal(dialogs=2, faults=Faults(slow=1.0, slow_seconds=0.3)) as portal:
        # The portal's wait is held open by the test instead of a clock: the answer must
        # not come before the wait ends, and the wait asked for is the configured delay.
        delays: list[float] = []
        release = asyncio.Event()

        async def hold(seconds: float) -> None:
            delays.append(seconds)
            await release.wait()

        monkeypatch.setattr(portal, "_sleep", hold)
        request = asyncio.create_task(call(http, portal.webhook_url + DIALOG_GET, {"CHAT_ID": 1}))
        while not delays:
            assert not request.done(), request
            await asyncio.sleep(0.01)
        assert delays == [0.3]
        assert portal.stats.faults == {"slow": 1}
        await asyncio.sleep(0.05)
        assert not request.done()  # held for as long as the wait lasts
        release.set()
        status, body = await request
        assert status == 200
        assert body["result"]["id"] == 1


def _cancelled_at_shutdown(monkeypatch: pytest.MonkeyPatch, held: list[Any]) -> list[bool]:
    """Record, when the server starts shutting down, whether every held answer is already
    cancelled (else its graceful wait would hold close() until their connections end)."""
    seen: list[bool] = []
    shut_down = web.AppRunner.cleanup

    async def cleanup(runner: web.AppRunner) -> None:
        seen.append(all(task.cancelling() for task in held))
        await shut_down(runner)

    monkeypatch.setattr(web.AppRunner, "cleanup", cleanup)
    return seen


async def test_close_cancels_slow_answers(
    http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    portal = FakePortal(dialogs=2, faults=Faults(slow=1.0, slow_seconds=60.0))
    await portal.start()
    request = asyncio.create_task(post(http, portal.webhook_url + DIALOG_GET))
    while portal.stats.faults["slow"] == 0:  # until the portal holds the answer
        assert not request.done(), request
        await asyncio.sleep(0.01)
    held = list(portal._sleepers)
    seen = _cancelled_at_shutdown(monkeypatch, held)
    await portal.close()
    assert len(held) == 1
    assert seen == [True]
    # The client sees the connection end, not the answer 60 s later.
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await request


async def test_a_host_s_close_cancels_every_portal_s_slow_answers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    host = FakePortalHost(2, dialogs=2, faults=Faults(slow=1.0, slow_seconds=60.0))
    await host.start()
    connector = aiohttp.TCPConnector(resolver=LocalhostResolver())
    async with aiohttp.ClientSession(connector=connector) as http:
        requests = [
            asyncio.create_task(post(http, portal.webhook_url + DIALOG_GET))
            for portal in host.portals
        ]
        while any(portal.stats.faults["slow"] == 0 for portal in host.portals):
            assert not any(request.done() for request in requests), requests
            await asyncio.sleep(0.01)
        held = [task for portal in host.portals for task in portal._sleepers]
        seen = _cancelled_at_shutdown(monkeypatch, held)
        await host.close()
        assert len(held) == 2
        assert seen == [True]
        for request in requests:
            with pytest.raises(aiohttp.ServerDisconnectedError):
                await request


async def test_command_internal_error(http: aiohttp.ClientSession) -> None:
    async with FakePortal(dialogs=2, faults=Faults(command_internal_error=1.0)) as portal:
        cmd = {"a": f"{DIALOG_GET}?CHAT_ID=1", "b": "server.time"}
        status, body = await call(http, portal.webhook_url + "batch", {"cmd": cmd})
        assert status == 200
        assert body["result"]["result_error"] == {"a": INTERNAL, "b": INTERNAL}
        assert portal.stats.faults == {"command_internal_error": 2}
        assert portal.stats.command_rejections == {"INTERNAL_SERVER_ERROR": 2}


async def test_faults_count_in_the_bucket_and_spare_the_token_endpoint(
    http: aiohttp.ClientSession,
) -> None:
    async with FakePortal(
        dialogs=2, rate=2.0, burst=2, faults=Faults(internal_error=1.0), clock=FakeClock()
    ) as portal:
        url = portal.webhook_url + DIALOG_GET
        statuses = [(await call(http, url, {"CHAT_ID": 1}))[0] for _ in range(3)]
        assert statuses == [500, 500, 503]
        tokens = portal.issue_tokens()
        params = {
            "grant_type": "refresh_token",
            "client_id": portal.client_id,
            "client_secret": portal.client_secret,
            "refresh_token": tokens["refresh_token"],
        }
        async with http.get(portal.token_url, params=params) as response:
            assert response.status == 200


async def fault_sequence(
    http: aiohttp.ClientSession, faults: Faults, count: int = 40
) -> list[int]:
    async with FakePortal(dialogs=2, rate=None, faults=faults) as portal:
        statuses = []
        for _ in range(count):
            statuses.append((await post(http, portal.webhook_url + DIALOG_GET))[0])
        assert portal.stats.faults["internal_error"] == statuses.count(500)
        assert portal.stats.faults["bad_gateway"] == statuses.count(502)
        return statuses


async def test_faults_are_seeded_and_reproducible(http: aiohttp.ClientSession) -> None:
    faults = Faults(internal_error=0.3, bad_gateway=0.2, seed=7)
    first = await fault_sequence(http, faults)
    assert first == await fault_sequence(http, faults)
    assert first != await fault_sequence(http, Faults(internal_error=0.3, bad_gateway=0.2, seed=8))
    assert {200, 500, 502} == set(first)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"drop": 1.5}, "drop"),
        ({"internal_error": -0.1}, "internal_error"),
        ({"slow": "0.5"}, "slow"),
        ({"truncate": True}, "truncate"),
        ({"command_internal_error": 2}, "command_internal_error"),
        ({"slow_seconds": -1.0}, "slow_seconds"),
        ({"drop": 0.6, "slow": 0.6}, "exceed 1"),
    ],
)
def test_bad_probabilities_name_the_field(kwargs: dict[str, object], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        Faults(**kwargs)  # type: ignore[arg-type]
