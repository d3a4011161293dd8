"""Routing, transport suffixes, the order of checks, redirects and the small methods."""

from __future__ import annotations

import re

import aiohttp
import pytest

from bitrix_openlines.testing import FakePortal

from ._helpers import DIALOG_GET, call, load_example


@pytest.mark.parametrize(
    "path",
    [
        DIALOG_GET,
        f"{DIALOG_GET}.json",
        f"{DIALOG_GET}/",
        f"{DIALOG_GET}.json/",
        "IMOPENLINES.Dialog.GET",
        "imopenlines.dialog.get.JSON",
    ],
)
async def test_method_names_are_case_insensitive_with_optional_json_suffix(
    portal: FakePortal, http: aiohttp.ClientSession, path: str
) -> None:
    status, body = await call(http, portal.webhook_url + path, {"CHAT_ID": 1})
    assert status == 200
    assert body["result"]["id"] == 1
    assert portal.stats.by_method == {DIALOG_GET: 1}


@pytest.mark.parametrize("suffix", [".xml", ".XML", ".php", ".foo"])
async def test_other_transports_are_wrong_transport(
    portal: FakePortal, http: aiohttp.ClientSession, suffix: str
) -> None:
    status, body = await call(http, portal.webhook_url + DIALOG_GET + suffix, {"CHAT_ID": 1})
    assert (status, body) == (
        500,
        {"error": "INTERNAL_WRONG_TRANSPORT", "error_description": "Wrong transport!"},
    )


async def test_unknown_method_is_404_before_auth(
    portal: FakePortal, http: aiohttp.ClientSession
) -> None:
    expected = {"error": "ERROR_METHOD_NOT_FOUND", "error_description": "Method not found!"}
    for url in (
        portal.client_endpoint + "imopenlines.session.history.get",  # no auth at all
        portal.base_url + "/rest/1/wrong-code/crm.deal.list.json",
        portal.webhook_url + "foo.bar",
        portal.base_url + "/rest/",
        portal.base_url + "/rest/1/only-two/",
    ):
        assert await call(http, url, {}) == (404, expected)
    assert portal.stats.rejections == {"ERROR_METHOD_NOT_FOUND": 5}


async def test_error_bodies_have_no_time_block_and_json_content_type(
    portal: FakePortal, http: aiohttp.ClientSession
) -> None:
    async with http.post(portal.webhook_url + DIALOG_GET, json={"CHAT_ID": 999}) as response:
        assert response.status == 400
        assert response.headers["Content-Type"] == "application/json; charset=utf-8"
        assert await response.json() == load_example(
            "imopenlines.dialog.get__400_ACCESS_ERROR.json"
        )


async def test_get_with_query_string(portal: FakePortal, http: aiohttp.ClientSession) -> None:
    async with http.get(
        portal.webhook_url + DIALOG_GET, params={"DIALOG_ID": "chat4"}
    ) as response:
        assert response.status == 200
        assert (await response.json())["result"]["dialog_id"] == "chat4"


async def test_moved_portal_answers_302_to_the_same_path(http: aiohttp.ClientSession) -> None:
    async with (
        FakePortal(dialogs=3) as new_home,
        FakePortal(dialogs=3, moved_to=new_home.base_url + "/") as old_home,
    ):
        path = old_home.webhook_url.removeprefix(old_home.base_url) + DIALOG_GET
        for url in (old_home.base_url + path + "?x=1&y=%26", old_home.client_endpoint + "batch"):
            async with http.post(url, json={"CHAT_ID": 1}, allow_redirects=False) as response:
                assert response.status == 302
                location = response.headers["Location"]
                assert location == new_home.base_url + url.removeprefix(old_home.base_url)
        assert old_home.stats.requests == 2
        assert old_home.stats.by_method == {}


async def test_a_renamed_portal_serves_its_new_address_and_redirects_the_old(
    http: aiohttp.ClientSession,
) -> None:
    async with FakePortal(dialogs=3) as portal:
        path = portal.webhook_url.removeprefix(portal.base_url) + DIALOG_GET
        old = f"http://localhost:{portal.port}"
        # Renamed from "localhost" to "127.0.0.1": the old name answers 302 to the new.
        portal.move_to(portal.base_url)
        async with http.post(old + path, json={"CHAT_ID": 1}, allow_redirects=False) as answer:
            assert answer.status == 302
            assert answer.headers["Location"] == portal.base_url + path
        status, body = await call(http, portal.base_url + path, {"CHAT_ID": 1})
        assert status == 200
        assert body["result"]["id"] == 1
        portal.move_to(None)
        status, _ = await call(http, old + path, {"CHAT_ID": 1})
        assert status == 200
        assert portal.stats.by_method[DIALOG_GET] == 2  # the 302 is not a call
        with pytest.raises(ValueError, match="address"):
            portal.move_to("127.0.0.1")


async def test_server_time_and_revision_get(
    portal: FakePortal, http: aiohttp.ClientSession
) -> None:
    status, body = await call(http, portal.webhook_url + "server.time", {})
    assert status == 200
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d", body["result"])
    status, body = await call(http, portal.webhook_url + "imopenlines.revision.get", {})
    assert status == 200
    assert body["result"] == load_example("imopenlines.revision.get__200_success.json")["result"]


async def test_stats_count_requests_and_methods(
    portal: FakePortal, http: aiohttp.ClientSession
) -> None:
    for payload in ({"CHAT_ID": 1}, {"CHAT_ID": 3}, {"CHAT_ID": 404}):
        await call(http, portal.webhook_url + DIALOG_GET, payload)
    await call(http, portal.webhook_url + "server.time", {})
    snapshot = portal.stats.snapshot()
    assert snapshot["requests"] == 4
    assert snapshot["by_method"] == {DIALOG_GET: 3, "server.time": 1}
    assert snapshot["rejections"] == {"ACCESS_ERROR": 2}
    portal.reset_stats()
    assert portal.stats.snapshot()["requests"] == 0
    assert portal.stats.by_method == {}


def test_urls_need_a_started_portal() -> None:
    portal = FakePortal(dialogs=1)
    with pytest.raises(RuntimeError, match="not started"):
        _ = portal.webhook_url


async def test_close_is_idempotent_and_start_twice_fails() -> None:
    portal = FakePortal(dialogs=1)
    await portal.start()
    with pytest.raises(RuntimeError, match="already started"):
        await portal.start()
    await portal.close()
    await portal.close()


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"dialogs": -1}, "dialogs"),
        ({"dialogs": [1, 2]}, "dialogs"),
        ({"forbidden": [5000]}, "forbidden"),
        ({"rate": 0.0}, "rate"),
        ({"burst": 0}, "burst"),
        ({"operating_limit": -1.0}, "operating_limit"),
        ({"operating_window": 0}, "operating_window"),
        ({"operating_cost": -0.5}, "operating_cost"),
        ({"access_token_ttl": 0}, "access_token_ttl"),
        ({"webhook_user_id": 0}, "webhook_user_id"),
        ({"port": 70000}, "port"),
        ({"moved_to": "portal.example"}, "moved_to"),
        ({"moved_to": "https://portal.example/rest/"}, "moved_to"),
        ({"moved_to": "https://user@portal.example"}, "moved_to"),
        ({"batch_billing": "each"}, "batch_billing"),
        ({"faults": 0.5}, "faults"),
    ],
)
def test_bad_constructor_arguments_name_the_parameter(
    kwargs: dict[str, object], name: str
) -> None:
    with pytest.raises(ValueError, match=name):
        FakePortal(**kwargs)  # type: ignore[arg-type]
