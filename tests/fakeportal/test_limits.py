"""The leaky bucket (503) and the operating budget (429) over real sockets."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from bitrix_openlines.testing import FakePortal

from ._helpers import DIALOG_GET, FakeClock, call, load_example

QUERY_LIMIT = {"error": "QUERY_LIMIT_EXCEEDED", "error_description": "Too many requests"}
OPERATION_LIMIT = {
    "error": "OPERATION_TIME_LIMIT",
    "error_description": "Method is blocked due to operation time limit.",
}


async def test_60_rapid_requests_to_a_burst_50_portal_give_exactly_10_503s(
    http: aiohttp.ClientSession,
) -> None:
    async with FakePortal(dialogs=5, rate=2.0, burst=50, clock=FakeClock()) as portal:
        url = portal.webhook_url + DIALOG_GET
        answers = await asyncio.gather(*(call(http, url, {"CHAT_ID": 1}) for _ in range(60)))
        statuses = [status for status, _ in answers]
        assert statuses.count(200) == 50
        assert statuses.count(503) == 10
        assert all(body == QUERY_LIMIT for status, body in answers if status == 503)
        assert portal.stats.rejections == {"QUERY_LIMIT_EXCEEDED": 10}
        assert portal.stats.max_bucket_level == pytest.approx(50.0, abs=0.01)


async def test_the_bucket_drains_at_rate(http: aiohttp.ClientSession) -> None:
    clock = FakeClock()
    async with FakePortal(dialogs=5, rate=2.0, burst=4, clock=clock) as portal:
        url = portal.webhook_url + "server.time"
        statuses = [(await call(http, url, {}))[0] for _ in range(6)]
        assert statuses == [200] * 4 + [503] * 2
        clock.advance(0.5)  # one slot
        statuses = [(await call(http, url, {}))[0] for _ in range(2)]
        assert statuses == [200, 503]
        clock.advance(100.0)
        statuses = [(await call(http, url, {}))[0] for _ in range(5)]
        assert statuses == [200] * 4 + [503]


async def test_a_batch_takes_one_slot(http: aiohttp.ClientSession) -> None:
    async with FakePortal(dialogs=5, rate=2.0, burst=2, clock=FakeClock()) as portal:
        cmd = {f"c{i}": f"{DIALOG_GET}?CHAT_ID=1" for i in range(50)}
        for _ in range(2):
            status, body = await call(http, portal.webhook_url + "batch", {"cmd": cmd})
            assert status == 200
            assert len(body["result"]["result"]) == 50
        assert await call(http, portal.webhook_url + "batch", {"cmd": cmd}) == (503, QUERY_LIMIT)
        assert sum(portal.stats.commands.values()) == 100


async def test_no_bucket_when_rate_or_burst_is_none(http: aiohttp.ClientSession) -> None:
    for kwargs in ({"rate": None}, {"burst": None}):
        async with FakePortal(dialogs=1, **kwargs) as portal:  # type: ignore[arg-type]
            url = portal.webhook_url + "server.time"
            answers = await asyncio.gather(*(call(http, url, {}) for _ in range(80)))
            assert {status for status, _ in answers} == {200}
            assert portal.stats.max_bucket_level == 0.0


async def test_operating_budget_blocks_one_method_for_one_caller(
    http: aiohttp.ClientSession,
) -> None:
    clock = FakeClock()
    async with FakePortal(
        dialogs=5, operating_limit=0.5, operating_window=2.0, operating_cost=0.3, clock=clock
    ) as portal:
        url = portal.webhook_url + DIALOG_GET
        first = await call(http, url, {"CHAT_ID": 1})
        second = await call(http, url, {"CHAT_ID": 404})  # errors are metered too
        assert first[0] == 200
        assert first[1]["time"]["operating"] == pytest.approx(0.3)
        assert first[1]["time"]["operating_reset_at"] == int(first[1]["time"]["finish"]) + 2
        assert second[0] == 400
        assert await call(http, url, {"CHAT_ID": 1}) == (429, OPERATION_LIMIT)
        # another method of the same caller still works
        status, body = await call(http, portal.webhook_url + "server.time", {})
        assert status == 200
        assert body["time"]["operating"] == pytest.approx(0.3)
        # another caller (the OAuth app) has its own budget
        token = portal.issue_tokens()["access_token"]
        status, _ = await call(
            http, portal.client_endpoint + DIALOG_GET, {"CHAT_ID": 1, "auth": token}
        )
        assert status == 200
        # inside a batch the limit is a per-command error; the batch itself is 200
        status, body = await call(
            http,
            portal.webhook_url + "batch",
            {"cmd": {"d": f"{DIALOG_GET}?CHAT_ID=1", "t": "server.time"}},
        )
        capture = load_example("batch__200_OPERATION_TIME_LIMIT__live_capture.json")
        assert status == 200
        assert list(body["result"]) == list(capture["result"])
        assert body["result"]["result_error"] == {"d": OPERATION_LIMIT}
        assert list(body["result"]["result"]) == ["t"]
        assert body["time"]["operating"] == capture["time"]["operating"] == 0
        assert portal.stats.rejections["OPERATION_TIME_LIMIT"] == 1
        assert portal.stats.command_rejections == {"OPERATION_TIME_LIMIT": 1}
        # the window slides past the baskets: the method works again
        clock.advance(2.0)
        status, body = await call(http, url, {"CHAT_ID": 1})
        assert status == 200
        assert body["time"]["operating"] == pytest.approx(0.3)


async def test_batch_commands_are_metered_one_by_one(http: aiohttp.ClientSession) -> None:
    async with FakePortal(
        dialogs=5, operating_limit=1.0, operating_window=60.0, operating_cost=0.4
    ) as portal:
        cmd = [f"{DIALOG_GET}?CHAT_ID=1"] * 5
        status, body = await call(http, portal.webhook_url + "batch", {"cmd": cmd})
        assert status == 200
        result = body["result"]
        assert len(result["result"]) == 3  # keys 0..2: a JSON list (PHP json_encode)
        assert list(result["result_error"]) == ["3", "4"]
        assert [t["operating"] for t in result["result_time"]] == pytest.approx([0.4, 0.8, 1.2])


async def test_short_calls_are_not_recorded(http: aiohttp.ClientSession) -> None:
    async with FakePortal(
        dialogs=2, operating_limit=0.2, operating_window=60.0, operating_cost=0.1
    ) as portal:
        for _ in range(10):
            status, body = await call(http, portal.webhook_url + DIALOG_GET, {"CHAT_ID": 1})
            assert status == 200
            assert body["time"]["operating"] == 0


async def test_no_operating_fields_without_the_limiter(http: aiohttp.ClientSession) -> None:
    async with FakePortal(dialogs=2, operating_limit=None, operating_cost=5.0) as portal:
        for _ in range(3):
            status, body = await call(http, portal.webhook_url + DIALOG_GET, {"CHAT_ID": 1})
            assert status == 200
            assert list(body["time"]) == [
                "start",
                "finish",
                "duration",
                "processing",
                "date_start",
                "date_finish",
            ]


# -- operating time inside a batch: the two accounts (batch_billing) -----------------------


async def test_per_method_billing_bills_each_command_to_its_method(
    http: aiohttp.ClientSession,
) -> None:
    # The official limits page: "An external call to batch is not accounted for in
    # operating. Nested calls are executed as separate methods".
    async with FakePortal(
        dialogs=5, operating_limit=100.0, operating_window=60.0, operating_cost=0.5
    ) as portal:
        cmd = [f"{DIALOG_GET}?CHAT_ID=1", "server.time", f"{DIALOG_GET}?CHAT_ID=2"]
        status, body = await call(http, portal.webhook_url + "batch", {"cmd": cmd})
        assert status == 200
        times = body["result"]["result_time"]
        # Each command reports its own method's total; the batch itself is not billed.
        assert [t["operating"] for t in times] == pytest.approx([0.5, 0.5, 1.0])
        assert body["time"]["operating"] == 0
        # A single call afterwards sees what the commands of its method spent.
        status, body = await call(http, portal.webhook_url + DIALOG_GET, {"CHAT_ID": 1})
        assert body["time"]["operating"] == pytest.approx(1.5)


async def test_batch_billing_bills_the_commands_to_batch(http: aiohttp.ClientSession) -> None:
    # b24jssdk issue 459 / pull request 539: the batch is billed under "batch", and every
    # sub-result carries batch's running total, whatever its method.
    async with FakePortal(
        dialogs=5,
        operating_limit=100.0,
        operating_window=60.0,
        operating_cost=0.5,
        batch_billing="batch",
    ) as portal:
        cmd = [f"{DIALOG_GET}?CHAT_ID=1", "server.time", f"{DIALOG_GET}?CHAT_ID=2"]
        status, body = await call(http, portal.webhook_url + "batch", {"cmd": cmd})
        assert status == 200
        times = body["result"]["result_time"]
        assert [t["operating"] for t in times] == pytest.approx([0.5, 1.0, 1.5])
        assert body["time"]["operating"] == pytest.approx(1.5)
        assert body["time"]["operating_reset_at"] == times[0]["operating_reset_at"]
        # The second batch goes on from batch's total.
        status, body = await call(http, portal.webhook_url + "batch", {"cmd": cmd[:1]})
        assert body["result"]["result_time"][0]["operating"] == pytest.approx(2.0)
        assert body["time"]["operating"] == pytest.approx(2.0)
        # The commands' own methods were not billed: a single call starts from nothing.
        status, body = await call(http, portal.webhook_url + DIALOG_GET, {"CHAT_ID": 1})
        assert body["time"]["operating"] == pytest.approx(0.5)


async def test_batch_billing_blocks_the_whole_batch_past_the_limit(
    http: aiohttp.ClientSession,
) -> None:
    clock = FakeClock()
    async with FakePortal(
        dialogs=5,
        operating_limit=1.0,
        operating_window=60.0,
        operating_cost=0.4,
        batch_billing="batch",
        clock=clock,
    ) as portal:
        cmd = [f"{DIALOG_GET}?CHAT_ID=1"] * 5
        status, body = await call(http, portal.webhook_url + "batch", {"cmd": cmd})
        # The check is made before the batch, not per command: all five run (2.0 s).
        assert status == 200
        assert body["result"]["result_error"] == []
        assert body["time"]["operating"] == pytest.approx(2.0)
        assert await call(http, portal.webhook_url + "batch", {"cmd": cmd}) == (
            429,
            OPERATION_LIMIT,
        )
        assert portal.stats.rejections == {"OPERATION_TIME_LIMIT": 1}
        # Single calls of the commands' method are not blocked: it was not billed.
        status, _ = await call(http, portal.webhook_url + DIALOG_GET, {"CHAT_ID": 1})
        assert status == 200
        clock.advance(61.0)  # the window ran out
        status, body = await call(http, portal.webhook_url + "batch", {"cmd": cmd[:1]})
        assert status == 200
        assert body["time"]["operating"] == pytest.approx(0.4)


async def test_batch_billing_still_refuses_a_command_whose_method_is_blocked(
    http: aiohttp.ClientSession,
) -> None:
    async with FakePortal(
        dialogs=5,
        operating_limit=1.0,
        operating_window=60.0,
        operating_cost=0.6,
        batch_billing="batch",
    ) as portal:
        for _ in range(2):  # single calls spend dialog.get's budget: 1.2 s
            await call(http, portal.webhook_url + DIALOG_GET, {"CHAT_ID": 1})
        cmd = {"dialog": f"{DIALOG_GET}?CHAT_ID=1", "time": "server.time"}
        status, body = await call(http, portal.webhook_url + "batch", {"cmd": cmd})
        assert status == 200
        assert body["result"]["result_error"] == {"dialog": OPERATION_LIMIT}
        assert list(body["result"]["result"]) == ["time"]
        assert portal.stats.command_rejections == {"OPERATION_TIME_LIMIT": 1}


@pytest.mark.parametrize("value", ["batch ", "per-method", "", None, 1])
def test_batch_billing_is_checked(value: object) -> None:
    with pytest.raises(ValueError, match="batch_billing"):
        FakePortal(batch_billing=value)  # type: ignore[arg-type]
