"""Operating time inside a batch, against a fake portal billing it either way.

The official limits page bills each command of a ``batch`` to its own method; the official
JS SDK's maintainers measured the whole batch billed to ``batch``, its running total copied
into every command's ``result_time`` (b24jssdk issue 459, pull request 539). The fake
portal does either (``batch_billing``); the client's ``OperatingBudget`` must pause what
the portal bills, and nothing else.

Time is one fake clock, shared by the portal and the client and moved only by the
client's waits: every assertion is a decision (a pause, a 429 counted by the portal),
never a wall-clock duration.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from bitrix_openlines import OpenLinesClient, RetryPolicy, WebhookAuth
from bitrix_openlines.ratelimit import OperatingBudget
from bitrix_openlines.testing import FakePortal

pytestmark = pytest.mark.integration

DIALOG_GET = "imopenlines.dialog.get"
LIMIT = 480.0  # the documented cloud limit, seconds per 10 minutes
COST = 2.0  # what each dialog.get costs the fake portal
WINDOW = 600.0
# 241 commands cost 482 s: the last one starts at 480 (not past the limit, so it runs)
# and leaves the account just past the limit. The job ends near the limit, never past it
# before a call: a client that reads the answers right earns no 429.
NEAR_THE_LIMIT = 241


class Clock:
    """The portal's monotonic clock; the client's waits move it."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += max(0.0, seconds)
        await asyncio.sleep(0)


@asynccontextmanager
async def _setup(
    portal_billing: str, sdk_billing: str = "auto", dialogs: int = NEAR_THE_LIMIT
) -> AsyncIterator[tuple[FakePortal, OpenLinesClient, OperatingBudget, Clock]]:
    clock = Clock()
    async with FakePortal(
        dialogs=dialogs,
        rate=None,
        operating_limit=LIMIT,
        operating_window=WINDOW,
        operating_cost=COST,
        batch_billing=portal_billing,
        clock=clock,
    ) as portal:
        budget = OperatingBudget(
            limit=LIMIT, batch_billing=sdk_billing, clock=portal.unix_time, sleep=clock.sleep
        )
        retry = RetryPolicy(
            max_attempts=3,
            deadline=3 * WINDOW,
            base_delay=0.0,
            max_delay=0.0,
            rate_limit_pause=0.0,
            jitter=False,
            sleep=clock.sleep,
            clock=clock,
        )
        async with OpenLinesClient(
            WebhookAuth(portal.webhook_url), rate_limit=None, retry=retry, operating_budget=budget
        ) as client:
            yield portal, client, budget, clock


async def _job_near_the_limit(portal: FakePortal, client: OpenLinesClient, clock: Clock) -> None:
    started = clock.now
    outcomes = await client.get_dialogs(
        [{"chat_id": i} for i in range(1, NEAR_THE_LIMIT + 1)], concurrency=1
    )
    assert [o.dialog.id if o.dialog else o.error for o in outcomes] == list(
        range(1, NEAR_THE_LIMIT + 1)
    )
    assert clock.now == started  # the job itself never waited
    assert portal.stats.rejections.get("OPERATION_TIME_LIMIT", 0) == 0
    assert portal.stats.command_rejections.get("OPERATION_TIME_LIMIT", 0) == 0


def _429s(portal: FakePortal) -> int:
    stats = portal.stats
    return stats.rejections.get("OPERATION_TIME_LIMIT", 0) + stats.command_rejections.get(
        "OPERATION_TIME_LIMIT", 0
    )


# -- the default ("auto") against both portals --------------------------------------------


async def test_portal_billing_batch_single_calls_are_not_paused_by_the_copied_totals() -> None:
    async with _setup("batch") as (portal, client, budget, clock):
        await _job_near_the_limit(portal, client, clock)
        # The commands carried batch's running total (up to 482 s): it paused batch...
        assert budget.operating("batch") == pytest.approx(NEAR_THE_LIMIT * COST)
        assert budget.paused_until("batch") is not None
        # ... and not dialog.get, which the portal did not bill.
        assert budget.operating(DIALOG_GET) is None
        assert budget.paused_until(DIALOG_GET) is None
        before = clock.now
        dialog = await client.get_dialog(chat_id=1)
        assert dialog.id == 1
        assert clock.now == before  # not paused: it went at once
        assert budget.operating(DIALOG_GET) == pytest.approx(COST)  # its own account
        # The next batch waits for batch's reset instead of earning a 429.
        outcomes = await client.get_dialogs([{"chat_id": 2}, {"chat_id": 3}])
        assert all(o.ok for o in outcomes)
        assert clock.now - before >= WINDOW
        assert _429s(portal) == 0


async def test_portal_billing_per_method_single_calls_are_paused_by_the_commands() -> None:
    async with _setup("per_method") as (portal, client, budget, clock):
        await _job_near_the_limit(portal, client, clock)
        # Each command's block is dialog.get's own total: the job spent it.
        assert budget.operating(DIALOG_GET) == pytest.approx(NEAR_THE_LIMIT * COST)
        assert budget.paused_until(DIALOG_GET) is not None
        assert budget.paused_until("batch") is None  # batch itself is not billed
        before = clock.now
        dialog = await client.get_dialog(chat_id=1)
        assert dialog.id == 1
        assert clock.now - before >= WINDOW  # paused until the reset...
        assert _429s(portal) == 0  # ... so the portal refused nothing
        # Other methods were never paused.
        before = clock.now
        await client.call_raw("server.time")
        assert clock.now == before


# -- why neither fixed reading is the default -----------------------------------------------


async def test_reading_batch_billing_as_per_method_over_pauses_single_calls() -> None:
    async with _setup("batch", sdk_billing="per_method") as (portal, client, budget, clock):
        await _job_near_the_limit(portal, client, clock)
        assert budget.paused_until(DIALOG_GET) is not None  # from batch's copied totals
        before = clock.now
        await client.get_dialog(chat_id=1)
        assert clock.now - before >= WINDOW  # waited for nothing:
        assert _429s(portal) == 0
        # the portal had billed nothing to dialog.get before this call.
        assert budget.operating(DIALOG_GET) == pytest.approx(COST)


async def test_reading_per_method_billing_as_batch_earns_a_429() -> None:
    async with _setup("per_method", sdk_billing="batch") as (portal, client, budget, clock):
        await _job_near_the_limit(portal, client, clock)
        assert budget.paused_until(DIALOG_GET) is None  # the commands' blocks were ignored
        dialog = await client.get_dialog(chat_id=1)
        assert dialog.id == 1  # after the reset: the 429 is paced, not raised...
        assert portal.stats.rejections["OPERATION_TIME_LIMIT"] >= 1  # ... but it was earned


# -- past the limit, with batches in flight together ------------------------------------------


@pytest.mark.parametrize("portal_billing", ["per_method", "batch"])
async def test_a_job_past_the_limit_ends_with_no_429_reaching_the_user(
    portal_billing: str,
) -> None:
    # 600 commands cost 1200 s, 2.5 windows' worth, 4 batches in flight. The portal may
    # refuse what it admitted concurrently; the client pauses and sends again.
    async with _setup(portal_billing, dialogs=600) as (portal, client, _, clock):
        started = clock.now
        outcomes = await client.get_dialogs([{"chat_id": i} for i in range(1, 601)], concurrency=4)
        assert [o.dialog.id if o.dialog else o.error for o in outcomes] == list(range(1, 601))
        assert clock.now - started >= WINDOW  # it did wait for a reset
        # Each command ran once: none was lost or sent twice after a refusal.
        refused = portal.stats.command_rejections.get("OPERATION_TIME_LIMIT", 0)
        assert portal.stats.commands[DIALOG_GET] - refused == 600
