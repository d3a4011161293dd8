"""A rate-limit answer for commands inside a batch slows the client before they go again."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from _unit_helpers import WEBHOOK, FakeClock, dialog_example, fake_budget, webhook_url
from aioresponses import CallbackResult, aioresponses

from bitrix_openlines import OpenLinesClient, RateLimit, RetryPolicy, WebhookAuth
from bitrix_openlines.ratelimit import LeakyBucketLimiter

BATCH = webhook_url("batch")


def _answers(docs: Path, timeline: list[str]) -> Any:
    dialog = dialog_example(docs)["result"]
    calls = {"n": 0}

    def answer(url: Any, **kwargs: Any) -> CallbackResult:
        calls["n"] += 1
        timeline.append(f"batch {calls['n']}")
        commands = json.loads(kwargs["data"])["cmd"]
        if calls["n"] == 1:
            # The first command is refused by the portal's bucket, the second runs.
            first, second = commands
            return CallbackResult(
                payload={
                    "result": {
                        "result": {second: dialog},
                        "result_error": {
                            first: {
                                "error": "QUERY_LIMIT_EXCEEDED",
                                "error_description": "Too many requests",
                            }
                        },
                    }
                }
            )
        return CallbackResult(
            payload={"result": {"result": dict.fromkeys(commands, dialog), "result_error": []}}
        )

    return answer


async def test_without_a_limiter_a_refused_command_waits_one_drain_before_it_goes_again(
    docs_examples: Path,
) -> None:
    timeline: list[str] = []

    async def sleep(seconds: float) -> None:
        timeline.append(f"wait {seconds}")
        await asyncio.sleep(0)

    policy = RetryPolicy(rate_limit_pause=0.0, jitter=False, sleep=sleep)
    with aioresponses() as mocked:
        mocked.post(BATCH, callback=_answers(docs_examples, timeline), repeat=True)
        async with OpenLinesClient(
            WebhookAuth(WEBHOOK), rate_limit=None, retry=policy, operating_budget=fake_budget()
        ) as client:
            outcomes = await client.get_dialogs([{"chat_id": 1}, {"chat_id": 2}])
    assert [o.ok for o in outcomes] == [True, True]
    assert timeline == ["batch 1", "wait 0.5", "batch 2"]


async def test_with_a_limiter_a_refused_command_marks_the_bucket_full(docs_examples: Path) -> None:
    timeline: list[str] = []
    clock = FakeClock()
    limiter = LeakyBucketLimiter(
        RateLimit(requests_per_second=2.0, burst=5), clock=clock, sleep=clock.sleep
    )
    with aioresponses() as mocked:
        mocked.post(BATCH, callback=_answers(docs_examples, timeline), repeat=True)
        async with OpenLinesClient(
            WebhookAuth(WEBHOOK),
            limiter=limiter,
            retry=RetryPolicy.no_wait(),
            operating_budget=fake_budget(),
        ) as client:
            outcomes = await client.get_dialogs([{"chat_id": 1}, {"chat_id": 2}])
    assert [o.ok for o in outcomes] == [True, True]
    assert timeline == ["batch 1", "batch 2"]
    # The second batch waited for one slot of a bucket the limiter took as full: the
    # usable bucket (5 - 1 free) drained by one slot, 0.5 s at 2/s.
    assert clock.sleeps == [0.5]
