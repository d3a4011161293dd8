"""The batch helper against the fake portal: every query gets exactly one right outcome."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import attrs
import pytest
from _virtual_time import PacedLimiter, VirtualTime

from bitrix_openlines import (
    DialogGet,
    DialogOutcome,
    OpenLinesClient,
    RateLimit,
    RetryPolicy,
    WebhookAuth,
)
from bitrix_openlines.errors import AccessError, InvalidQueryError, ServerError, TransportError
from bitrix_openlines.methods import Method, register_method
from bitrix_openlines.testing import FakeDialog, FakePortal, Faults, ThreadedFakePortal

pytestmark = pytest.mark.integration


@register_method
@attrs.frozen(kw_only=True)
class _ServerTime(Method[str]):
    __api_method__ = "server.time"
    __returns__ = str
    __idempotent__ = True


def _mixed_queries(portal: FakePortal, n: int, seed: int) -> tuple[list[Any], list[str]]:
    """Queries of every kind, and what each must end as: an id, 'access' or 'invalid'."""
    rng = random.Random(seed)
    queries: list[Any] = []
    expected: list[str] = []
    dialogs = portal.dialogs
    for _ in range(n):
        roll = rng.random()
        if roll < 0.03:
            bad = rng.choice(
                [
                    {"chat_id": 0},
                    {"chat_id": "x"},
                    {"dialog_id": "29"},
                    {"nope": 1},
                    "text",
                    {"chat_id": 1, "session_id": 2},
                    {"user_code": "a|b"},
                ]
            )
            queries.append(bad)
            expected.append("invalid")
            continue
        if roll < 0.06:
            queries.append({"chat_id": 5_000_000 + rng.randrange(10**6)})
            expected.append("access")
            continue
        dialog = rng.choice(dialogs)
        kind = rng.choice(["chat_id", "dialog_id", "session_id", "user_code", "object"])
        if kind == "object":
            queries.append(DialogGet(user_code="imol|" + dialog.user_code))
        else:
            value = {
                "chat_id": dialog.chat_id,
                "dialog_id": dialog.dialog_id,
                "session_id": dialog.session_id,
                "user_code": dialog.user_code,
            }[kind]
            queries.append({kind: value})
        expected.append("access" if dialog.forbidden else str(dialog.chat_id))
    return queries, expected


def _check(outcomes: list[DialogOutcome], queries: list[Any], expected: list[str]) -> None:
    assert len(outcomes) == len(queries)
    assert [o.index for o in outcomes] == list(range(len(queries)))
    for outcome, query, want in zip(outcomes, queries, expected, strict=True):
        assert outcome.query is query
        if want == "invalid":
            assert isinstance(outcome.error, InvalidQueryError), outcome
            assert isinstance(outcome.error, ValueError)
            assert outcome.request is None
        elif want == "access":
            assert isinstance(outcome.error, AccessError), outcome
            assert outcome.error.code == "ACCESS_ERROR"
        else:
            assert outcome.ok, outcome
            assert outcome.dialog is not None
            assert outcome.dialog.id == int(want)


async def test_5000_mixed_queries_give_5000_right_outcomes_in_order() -> None:
    # The limiter and the portal's bucket share a virtual clock: each batch reaches the
    # portal when the limiter let it go, so the bucket's verdict does not depend on load.
    clock = VirtualTime()
    limiter = PacedLimiter(RateLimit(requests_per_second=10.0), clock)
    async with FakePortal(
        dialogs=3000, forbidden=range(1, 3000, 37), rate=10.0, clock=clock
    ) as portal:
        queries, expected = _mixed_queries(portal, 5000, seed=1)
        seen: list[tuple[int, int, int | None]] = []
        async with OpenLinesClient(WebhookAuth(portal.webhook_url), limiter=limiter) as client:
            outcomes = await clock.run(
                client.get_dialogs(queries, progress=lambda d, f, t: seen.append((d, f, t))),
                limiter=limiter,
                arrived=lambda: portal.stats.requests,
            )
        _check(outcomes, queries, expected)
        assert portal.stats.rejections.get("QUERY_LIMIT_EXCEEDED", 0) == 0
        # Duplicates were sent once: commands == unique valid requests.
        unique = {
            (type(o.request), tuple(sorted(o.request.to_params().items())))
            for o in outcomes
            if o.request is not None
        }
        assert sum(portal.stats.commands.values()) == len(unique)
        batches = -(-len(unique) // 50)
        assert portal.stats.by_method["batch"] == batches == limiter.reserved
    # Paced: the batches past the usable burst (49) went one slot (0.1 s) apart.
    assert batches > 49
    assert limiter.offsets()[49:] == pytest.approx(
        [0.1 * k for k in range(1, batches - 48)], abs=1e-9
    )
    assert seen[-1] == (5000, sum(1 for o in outcomes if not o.ok), 5000)
    assert [d for d, _, _ in seen] == list(range(1, 5001))


async def test_5000_mixed_queries_with_10_percent_faults() -> None:
    faults = Faults(
        internal_error=0.02,
        bad_gateway=0.02,
        drop=0.02,
        truncate=0.02,
        command_internal_error=0.02,
        seed=5,
    )
    async with FakePortal(
        dialogs=3000, forbidden=range(2, 3000, 41), rate=50.0, faults=faults
    ) as portal:
        queries, expected = _mixed_queries(portal, 5000, seed=2)
        async with OpenLinesClient(
            WebhookAuth(portal.webhook_url),
            rate_limit=RateLimit(requests_per_second=50.0),
            retry=RetryPolicy.no_wait(max_attempts=8),
        ) as client:
            outcomes = await client.get_dialogs(queries)
        assert sum(portal.stats.faults.values()) > 5
    _check(outcomes, queries, expected)


async def test_persistent_failure_turns_every_command_into_a_failed_outcome() -> None:
    async with FakePortal(dialogs=200, rate=None, faults=Faults(drop=1.0)) as portal:
        async with OpenLinesClient(
            WebhookAuth(portal.webhook_url),
            rate_limit=None,
            retry=RetryPolicy.no_wait(max_attempts=2),
        ) as client:
            outcomes = await client.get_dialogs([{"chat_id": i} for i in range(1, 121)])
        assert portal.stats.by_method["batch"] == 3 * 2  # 3 batches, 2 attempts each
    assert len(outcomes) == 120
    assert all(isinstance(o.error, TransportError) for o in outcomes)


async def test_command_level_server_errors_are_requeued() -> None:
    faults = Faults(command_internal_error=0.3, seed=9)
    async with FakePortal(dialogs=300, rate=None, faults=faults) as portal:
        async with OpenLinesClient(
            WebhookAuth(portal.webhook_url),
            rate_limit=None,
            retry=RetryPolicy.no_wait(max_attempts=10),
        ) as client:
            outcomes = await client.get_dialogs([{"chat_id": i} for i in range(1, 301)])
        assert all(o.ok for o in outcomes), [o.error for o in outcomes if o.error][:3]
        assert [o.dialog.id for o in outcomes if o.dialog] == list(range(1, 301))
        executed = portal.stats.commands["imopenlines.dialog.get"]
        assert executed > 300  # some were sent again
        assert portal.stats.command_rejections["INTERNAL_SERVER_ERROR"] == executed - 300


async def test_command_level_server_errors_past_the_attempts_fail_alone() -> None:
    async with FakePortal(
        dialogs=100, rate=None, faults=Faults(command_internal_error=1.0)
    ) as portal:
        async with OpenLinesClient(
            WebhookAuth(portal.webhook_url),
            rate_limit=None,
            retry=RetryPolicy.no_wait(max_attempts=3),
        ) as client:
            outcomes = await client.get_dialogs([{"chat_id": i} for i in range(1, 61)])
        assert portal.stats.commands["imopenlines.dialog.get"] == 60 * 3
    assert all(isinstance(o.error, ServerError) for o in outcomes)
    assert all(o.error is not None and o.error.code == "INTERNAL_SERVER_ERROR" for o in outcomes)


async def test_operation_time_limit_inside_batch_is_requeued_after_the_reset() -> None:
    async with FakePortal(
        dialogs=120, rate=None, operating_limit=25.0, operating_window=1.0, operating_cost=1.0
    ) as portal:
        async with OpenLinesClient(
            WebhookAuth(portal.webhook_url),
            rate_limit=None,
            retry=RetryPolicy(max_attempts=4, deadline=20.0, base_delay=0.0, max_delay=0.0),
        ) as client:
            outcomes = await client.get_dialogs(
                [{"chat_id": i} for i in range(1, 61)], concurrency=1
            )
        assert portal.stats.command_rejections["OPERATION_TIME_LIMIT"] > 0
    assert all(o.ok for o in outcomes), [o.error for o in outcomes if o.error][:3]


async def test_values_that_need_escaping_round_trip_through_batch() -> None:
    odd = [
        "livechat|7|a&b=c|user",
        "livechat|7|50%+off|x y",
        "telegram|2|Юникод|ß∂ƒ",
        "livechat|3|a#b?c|d;e",
        "livechat|4|[x]|{y}",
    ]
    dialogs = [
        FakeDialog(chat_id=900 + i, session_id=9900 + i, user_code=code)
        for i, code in enumerate(odd)
    ]
    async with FakePortal(dialogs=dialogs, rate=None) as portal:
        async with OpenLinesClient(WebhookAuth(portal.webhook_url), rate_limit=None) as client:
            outcomes = await client.get_dialogs([{"user_code": code} for code in odd])
    assert [o.dialog.entity_id for o in outcomes if o.dialog] == odd


async def test_unordered_stream_gives_each_index_once() -> None:
    async with FakePortal(dialogs=500, rate=None) as portal:
        async with OpenLinesClient(WebhookAuth(portal.webhook_url), rate_limit=None) as client:
            indices = [
                o.index
                async for o in client.iter_dialogs(
                    ({"chat_id": i % 500 + 1} for i in range(2000)), ordered=False, window=300
                )
            ]
    assert sorted(indices) == list(range(2000))


async def test_cancelling_a_job_leaves_nothing_running() -> None:
    # The portal runs in its own thread and loop: every task in this loop is the client's.
    with ThreadedFakePortal(
        dialogs=500, rate=None, faults=Faults(slow=1.0, slow_seconds=5.0)
    ) as portal:
        async with OpenLinesClient(WebhookAuth(portal.webhook_url), rate_limit=None) as client:
            before = asyncio.all_tasks()
            job = asyncio.ensure_future(
                client.get_dialogs([{"chat_id": i} for i in range(1, 501)])
            )
            while portal.stats.faults["slow"] == 0:  # until a batch waits on the portal
                assert not job.done(), job
                await asyncio.sleep(0.01)
            assert len(asyncio.all_tasks() - before) > 1
            job.cancel()
            with pytest.raises(asyncio.CancelledError):
                await job
            await asyncio.sleep(0)
            assert asyncio.all_tasks() - before == set()


async def test_breaking_out_of_iter_dialogs_cancels_the_rest() -> None:
    with ThreadedFakePortal(
        dialogs=500, rate=None, faults=Faults(slow=0.5, slow_seconds=2.0)
    ) as portal:
        async with OpenLinesClient(WebhookAuth(portal.webhook_url), rate_limit=None) as client:
            before = asyncio.all_tasks()
            stream = client.iter_dialogs([{"chat_id": i} for i in range(1, 501)], window=100)
            got = 0
            async for _ in stream:
                got += 1
                if got == 10:
                    break
            await stream.aclose()  # type: ignore[attr-defined]
            assert asyncio.all_tasks() - before == set()


async def test_generic_batch_runs_any_registered_method() -> None:
    async with FakePortal(dialogs=5, forbidden=[2], rate=None) as portal:
        async with OpenLinesClient(WebhookAuth(portal.webhook_url), rate_limit=None) as client:
            outcomes = await client.batch(
                [_ServerTime(), DialogGet(chat_id=1), DialogGet(chat_id=2), _ServerTime()]
            )
    assert isinstance(outcomes[0].result, str)
    assert outcomes[3].result == outcomes[0].result  # the duplicate shares the outcome
    assert outcomes[1].ok
    assert isinstance(outcomes[2].error, AccessError)
    assert portal.stats.commands["server.time"] == 1


async def test_async_iterable_input() -> None:
    async def queries() -> Any:
        for i in range(1, 121):
            await asyncio.sleep(0)
            yield {"chat_id": i}

    async with FakePortal(dialogs=120, rate=None) as portal:
        async with OpenLinesClient(WebhookAuth(portal.webhook_url), rate_limit=None) as client:
            outcomes = await client.get_dialogs(queries())
    assert [o.dialog.id for o in outcomes if o.dialog] == list(range(1, 121))


@pytest.mark.parametrize("metered", [True, False], ids=["cloud (metered)", "unmetered"])
async def test_each_outcome_carries_its_command_s_time_block(metered: bool) -> None:
    # A command's time block comes with its outcome on both kinds of portal: read at once
    # where the budget needs its operating figures, on first access where it does not.
    limits: dict[str, Any] = {} if metered else {"operating_limit": None}
    async with FakePortal(dialogs=60, rate=None, **limits) as portal:
        async with OpenLinesClient(WebhookAuth(portal.webhook_url), rate_limit=None) as client:
            outcomes = await client.get_dialogs([{"chat_id": i} for i in range(1, 61)])
    assert all(o.ok for o in outcomes)
    times = [o.time for o in outcomes]
    assert all(t is not None and t.start is not None and t.date_start for t in times)
    assert all((t is not None and t.operating is not None) == metered for t in times)
    # Read once: the same object each time.
    assert all(o.time is t for o, t in zip(outcomes, times, strict=True))
