"""``RetryPolicy`` as tables, and retries, deadlines, logs and hooks through the client."""

from __future__ import annotations

import asyncio
import logging
import random
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from _unit_helpers import (
    DIALOG_GET,
    TOKEN_URL_RE,
    FakeClock,
    body_of,
    dialog_example,
    error_body,
    load_example,
    make_client,
    oauth_auth,
    oauth_url,
    recorded,
    webhook_url,
)
from aioresponses import CallbackResult, aioresponses

from bitrix_openlines import Hooks, RateLimit, RetryPolicy
from bitrix_openlines.errors import (
    AccessError,
    ApiError,
    AuthError,
    BatchError,
    DecodeError,
    InvalidArgumentError,
    InvalidURLError,
    MethodNotFoundError,
    OpenLinesError,
    OperationTimeLimitError,
    OverloadError,
    PortalMovedError,
    PortalUnavailableError,
    RateLimitError,
    RequestTimeoutError,
    ServerError,
    TokenExpiredError,
    TransportError,
)
from bitrix_openlines.hooks import RefreshEvent, RequestEvent, RetryEvent
from bitrix_openlines.ratelimit import LeakyBucketLimiter, OperatingBudget

# -- reason: what is retried -------------------------------------------------------------

# (error, reason when idempotent, reason when not)
REASONS: list[tuple[BaseException, str | None, str | None]] = [
    (
        RateLimitError(code="QUERY_LIMIT_EXCEEDED", status=503),
        "query limit exceeded",
        "query limit exceeded",
    ),
    (
        OperationTimeLimitError(code="OPERATION_TIME_LIMIT", status=429),
        "operation time limit",
        "operation time limit",
    ),
    (OverloadError(code="OVERLOAD_LIMIT", status=503), None, None),
    (ServerError(code="INTERNAL_SERVER_ERROR", status=500), "server error 500", None),
    (ServerError(status=502), "server error 502", None),
    (DecodeError("html", status=502), "undecodable answer (status 502)", None),
    (TransportError("reset"), "connection failed", None),
    (RequestTimeoutError("slow"), "timeout", None),
    (PortalMovedError("moved", status=302), None, None),
    (InvalidURLError("the URL is invalid"), None, None),
    (AuthError(code="INVALID_CREDENTIALS", status=401), None, None),
    (TokenExpiredError(code="expired_token", status=401), None, None),
    (AccessError(code="ACCESS_ERROR", status=400), None, None),
    (InvalidArgumentError(code="ERROR_ARGUMENT", status=400), None, None),
    (MethodNotFoundError(code="ERROR_METHOD_NOT_FOUND", status=404), None, None),
    (BatchError(code="ERROR_BATCH_LENGTH_EXCEEDED", status=400), None, None),
    (PortalUnavailableError(code="PORTAL_DELETED", status=500), None, None),
    (ApiError(code="SOMETHING_NEW", status=400), None, None),
    (OpenLinesError("base"), None, None),
    (ValueError("not ours"), None, None),
    (asyncio.CancelledError(), None, None),
]


@pytest.mark.parametrize(
    ("error", "idempotent_reason", "other_reason"),
    REASONS,
    ids=[f"{type(e).__name__}-{getattr(e, 'status', '')}" for e, _, _ in REASONS],
)
def test_reason_table(
    error: BaseException, idempotent_reason: str | None, other_reason: str | None
) -> None:
    policy = RetryPolicy()
    assert policy.reason(error, idempotent=True) == idempotent_reason
    assert policy.reason(error, idempotent=False) == other_reason


@pytest.mark.parametrize(
    ("error", "counts"),
    [
        (RateLimitError(), False),
        (OperationTimeLimitError(), False),
        (OverloadError(), True),
        (ServerError(), True),
        (TransportError(), True),
        (DecodeError(), True),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else str(v),
)
def test_paces(error: BaseException, counts: bool) -> None:
    # Pacing answers (the bucket, a method's budget) use up no attempt; failures do.
    assert RetryPolicy().paces(error) is not counts


# -- delay and backoff: how long to wait -------------------------------------------------


@pytest.mark.parametrize(
    ("failures", "ceiling"),
    [(0, 0.5), (1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 8.0), (6, 16.0), (7, 30.0), (50, 30.0)],
)
def test_backoff_without_jitter_is_the_capped_ceiling(failures: int, ceiling: float) -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=30.0, jitter=False)
    assert policy.backoff(failures) == ceiling
    assert policy.delay(ServerError(), failures) == ceiling
    assert policy.delay(TransportError(), failures) == ceiling


@pytest.mark.parametrize(
    ("failures", "ceiling"), [(1, 0.5), (2, 1.0), (3, 2.0), (6, 16.0), (7, 30.0), (20, 30.0)]
)
@pytest.mark.parametrize("seed", [0, 1, 42, 2026])
def test_backoff_full_jitter(failures: int, ceiling: float, seed: int) -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=30.0, jitter=True)
    waits = [policy.backoff(failures, random.Random(seed * 1000 + i)) for i in range(200)]
    assert all(0.0 <= wait <= ceiling for wait in waits)
    assert max(waits) > ceiling * 0.9  # full jitter spans the whole range...
    assert min(waits) < ceiling * 0.1  # ...down to zero
    # Reproducible with a seeded source.
    assert policy.backoff(failures, random.Random(seed)) == policy.backoff(
        failures, random.Random(seed)
    )


def test_backoff_respects_a_small_cap() -> None:
    policy = RetryPolicy(base_delay=2.0, max_delay=3.0, jitter=True)
    rng = random.Random(7)
    assert all(policy.backoff(n, rng) <= 3.0 for n in range(1, 30))
    assert RetryPolicy(base_delay=2.0, max_delay=3.0, jitter=False).backoff(10) == 3.0


@pytest.mark.parametrize("error", [RateLimitError(), OperationTimeLimitError()])
def test_rate_limit_delays_are_a_small_jitter(error: BaseException) -> None:
    policy = RetryPolicy(base_delay=5.0, max_delay=60.0, rate_limit_pause=0.25)
    rng = random.Random(3)
    waits = [policy.delay(error, failures=4, rng=rng) for _ in range(200)]
    assert all(0.0 <= wait <= 0.25 for wait in waits)
    assert max(waits) > 0.2
    no_jitter = RetryPolicy(base_delay=5.0, rate_limit_pause=0.25, jitter=False)
    assert no_jitter.delay(error, failures=4) == 0.0


def test_remaining() -> None:
    clock = FakeClock(100.0)
    policy = RetryPolicy(deadline=30.0, clock=clock)
    clock.now = 112.5
    assert policy.remaining(100.0) == 17.5
    assert RetryPolicy(deadline=None).remaining(0.0) is None


def test_presets() -> None:
    no_wait = RetryPolicy.no_wait(max_attempts=4, deadline=9.0)
    assert (no_wait.max_attempts, no_wait.deadline) == (4, 9.0)
    assert no_wait.backoff(10) == 0.0
    assert no_wait.delay(RateLimitError(), 1, rng=random.Random(1)) == 0.0
    never = RetryPolicy.never()
    assert never.max_attempts == 1
    assert never.deadline == 0.0


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"max_attempts": 0}, "max_attempts"),
        ({"max_attempts": True}, "max_attempts"),
        ({"max_attempts": 2.5}, "max_attempts"),
        ({"deadline": -1}, "deadline"),
        ({"deadline": "10"}, "deadline"),
        ({"deadline": float("nan")}, "deadline"),
        ({"base_delay": float("nan")}, "base_delay"),
        ({"base_delay": -0.1}, "base_delay"),
        ({"max_delay": -1}, "max_delay"),
        ({"max_delay": None}, "max_delay"),
        ({"rate_limit_pause": -1}, "rate_limit_pause"),
    ],
)
def test_policy_validation_names_the_parameter(kwargs: dict[str, Any], name: str) -> None:
    with pytest.raises(ValueError, match=f"RetryPolicy.{name}"):
        RetryPolicy(**kwargs)


# -- through the client ------------------------------------------------------------------

URL = webhook_url(DIALOG_GET)


async def test_5xx_is_retried_for_dialog_get(docs_examples: Path) -> None:
    with aioresponses() as mocked:
        mocked.post(URL, status=500, payload=error_body("INTERNAL_SERVER_ERROR"))
        mocked.post(URL, status=502, body="<html>bad gateway</html>")
        mocked.post(URL, payload=dialog_example(docs_examples))
        async with make_client(retry=RetryPolicy.no_wait(max_attempts=3)) as client:
            assert (await client.get_dialog(chat_id=13)).id == 1777
        assert len(recorded(mocked, "POST", URL)) == 3


async def test_5xx_stops_after_max_attempts() -> None:
    with aioresponses() as mocked:
        mocked.post(URL, status=500, payload=error_body("INTERNAL_SERVER_ERROR"), repeat=True)
        async with make_client(retry=RetryPolicy.no_wait(max_attempts=4)) as client:
            with pytest.raises(ServerError):
                await client.get_dialog(chat_id=13)
        assert len(recorded(mocked, "POST", URL)) == 4


async def test_call_raw_of_an_unregistered_method_is_not_retried_on_500() -> None:
    url = webhook_url("imopenlines.session.start")
    with aioresponses() as mocked:
        mocked.post(url, status=500, payload=error_body("INTERNAL_SERVER_ERROR"), repeat=True)
        async with make_client() as client:
            with pytest.raises(ServerError):
                await client.call_raw("imopenlines.session.start", {"CHAT_ID": 1})
        assert len(recorded(mocked, "POST", url)) == 1


async def test_call_raw_connection_error_not_retried_unless_idempotent() -> None:
    url = webhook_url("imopenlines.session.start")
    with aioresponses() as mocked:
        mocked.post(url, exception=aiohttp.ServerDisconnectedError(), repeat=True)
        async with make_client(retry=RetryPolicy.no_wait(max_attempts=3)) as client:
            with pytest.raises(TransportError):
                await client.call_raw("imopenlines.session.start")
            assert len(recorded(mocked, "POST", url)) == 1
            with pytest.raises(TransportError):
                await client.call_raw("imopenlines.session.start", idempotent=True)
        assert len(recorded(mocked, "POST", url)) == 1 + 3


async def test_call_raw_of_a_registered_method_takes_its_idempotency() -> None:
    upper = webhook_url("IMOPENLINES.DIALOG.GET")
    with aioresponses() as mocked:
        for url in (URL, upper):
            mocked.post(url, status=500, payload=error_body("INTERNAL_SERVER_ERROR"), repeat=True)
        async with make_client(retry=RetryPolicy.no_wait(max_attempts=2)) as client:
            with pytest.raises(ServerError):
                await client.call_raw("IMOPENLINES.DIALOG.GET", {"CHAT_ID": 13})
            with pytest.raises(ServerError):
                await client.call_raw(DIALOG_GET, {"CHAT_ID": 13}, idempotent=False)
        calls = recorded(mocked, "POST")
        assert len(calls) == 2 + 1


async def test_query_limit_is_retried_without_using_up_max_attempts(docs_examples: Path) -> None:
    limit = error_body("QUERY_LIMIT_EXCEEDED", "Too many requests")
    with aioresponses() as mocked:
        for _ in range(5):
            mocked.post(URL, status=503, payload=limit)
        mocked.post(URL, status=500, payload=error_body("INTERNAL_SERVER_ERROR"))
        mocked.post(URL, payload=dialog_example(docs_examples))
        async with make_client(retry=RetryPolicy.no_wait(max_attempts=2)) as client:
            assert (await client.get_dialog(chat_id=13)).id == 1777
        assert len(recorded(mocked, "POST", URL)) == 7


async def test_query_limit_is_retried_for_non_idempotent_calls_too() -> None:
    url = webhook_url("imopenlines.session.start")
    with aioresponses() as mocked:
        mocked.post(url, status=503, payload=error_body("QUERY_LIMIT_EXCEEDED"))
        mocked.post(url, payload={"result": True})
        async with make_client() as client:
            assert await client.call_raw("imopenlines.session.start", {"CHAT_ID": 1}) is True
        assert len(recorded(mocked, "POST", url)) == 2


@pytest.mark.parametrize(
    ("status", "code", "cls"),
    [
        (503, "OVERLOAD_LIMIT", OverloadError),
        (400, "ACCESS_ERROR", AccessError),
        (403, "ACCESS_DENIED", AccessError),
        (401, "INVALID_CREDENTIALS", AuthError),
        (403, "INVALID_CREDENTIALS", AuthError),
        (400, "ERROR_ARGUMENT", InvalidArgumentError),
        (404, "ERROR_METHOD_NOT_FOUND", MethodNotFoundError),
    ],
)
async def test_final_errors_are_never_retried(status: int, code: str, cls: type[ApiError]) -> None:
    with aioresponses() as mocked:
        mocked.post(URL, status=status, payload=error_body(code), repeat=True)
        async with make_client(retry=RetryPolicy.no_wait(max_attempts=5)) as client:
            with pytest.raises(cls):
                await client.get_dialog(chat_id=13)
        assert len(recorded(mocked, "POST", URL)) == 1


async def test_overload_does_not_penalize_the_limiter() -> None:
    with aioresponses() as mocked:
        mocked.post(URL, status=503, payload=error_body("OVERLOAD_LIMIT"))
        mocked.post(URL, status=503, payload=error_body("QUERY_LIMIT_EXCEEDED"))
        clock = FakeClock()
        limiter = LeakyBucketLimiter(RateLimit(2.0, 10, 0), clock=clock, sleep=clock.sleep)
        async with make_client(limiter=limiter, retry=RetryPolicy.never()) as client:
            with pytest.raises(OverloadError):
                await client.get_dialog(chat_id=13)
            assert limiter.level("https://portal.bitrix24.com") == pytest.approx(1.0, abs=0.01)
            with pytest.raises(RateLimitError):
                await client.get_dialog(chat_id=13)
            assert limiter.level("https://portal.bitrix24.com") >= 10


def _deadline_policy(clock: FakeClock, deadline: float, **kwargs: Any) -> RetryPolicy:
    values: dict[str, Any] = {
        "max_attempts": 100,
        "deadline": deadline,
        "base_delay": 0.0,
        "max_delay": 0.0,
        "rate_limit_pause": 0.0,
        "jitter": False,
        "sleep": clock.sleep,
        "clock": clock,
        **kwargs,
    }
    return RetryPolicy(**values)


async def test_deadline_stops_backoff_retries() -> None:
    clock = FakeClock(1000.0)
    policy = _deadline_policy(clock, 10.0, base_delay=4.0, max_delay=4.0)
    with aioresponses() as mocked:
        mocked.post(URL, status=500, payload=error_body("INTERNAL_SERVER_ERROR"), repeat=True)
        async with make_client(retry=policy) as client:
            with pytest.raises(ServerError):
                await client.get_dialog(chat_id=13)
        # Sent at 0, 4 and 8 s; a wait of 4 s more would end past the 10 s deadline.
        assert len(recorded(mocked, "POST", URL)) == 3
    assert clock.sleeps == [4.0, 4.0]


async def test_deadline_counts_the_operating_pause_of_a_429() -> None:
    # One fake wall clock for the policy and the budget, far from the real time.
    clock = FakeClock(1000.0)
    sent_at: list[float] = []

    def portal(url: Any, **kwargs: Any) -> CallbackResult:
        sent_at.append(clock.now)
        return CallbackResult(status=429, payload=error_body("OPERATION_TIME_LIMIT"))

    policy = _deadline_policy(clock, 30.0)
    budget = OperatingBudget(clock=clock, sleep=clock.sleep)
    with aioresponses() as mocked:
        mocked.post(URL, callback=portal, repeat=True)
        async with make_client(retry=policy, operating_budget=budget) as client:
            with pytest.raises(OperationTimeLimitError):
                await client.get_dialog(chat_id=13)
    # Each 429 pauses the method 10 s (+1 s) with no reset time known: sent at 0, 11 and
    # 22 s; the next would be at 33 s, past the 30 s deadline, so it is not waited for.
    assert [t - 1000.0 for t in sent_at] == [0.0, 11.0, 22.0]


async def test_429_waits_for_the_reset_time_known_from_earlier_answers(
    docs_examples: Path,
) -> None:
    clock = FakeClock(1773683678.0)
    body = dialog_example(docs_examples)  # time.operating_reset_at = 1773684278 (+600 s)
    sent_at: list[float] = []

    def portal(url: Any, **kwargs: Any) -> CallbackResult:
        sent_at.append(clock.now)
        if len(sent_at) == 2:
            return CallbackResult(status=429, payload=error_body("OPERATION_TIME_LIMIT"))
        return CallbackResult(payload=body)

    budget = OperatingBudget(clock=clock, sleep=clock.sleep)
    with aioresponses() as mocked:
        mocked.post(URL, callback=portal, repeat=True)
        async with make_client(
            retry=_deadline_policy(clock, 3600.0), operating_budget=budget
        ) as client:
            await client.get_dialog(chat_id=13)
            assert (await client.get_dialog(chat_id=13)).id == 1777
    assert sent_at == [1773683678.0, 1773683678.0, 1773684279.0]


async def test_warning_log_per_retry(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="bitrix_openlines")
    with aioresponses() as mocked:
        mocked.post(URL, status=500, payload=error_body("INTERNAL_SERVER_ERROR"), repeat=True)
        async with make_client(retry=RetryPolicy.no_wait(max_attempts=3)) as client:
            with pytest.raises(ServerError):
                await client.get_dialog(chat_id=13)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    for attempt, message in enumerate(warnings, start=1):
        assert f"after attempt {attempt}" in message
        assert "server error 500" in message
        assert "INTERNAL_SERVER_ERROR" in message
        assert DIALOG_GET in message
    debug = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert len(debug) == 3  # one per request
    assert all("status=500" in m and "error=INTERNAL_SERVER_ERROR" in m for m in debug)


async def test_hooks_receive_request_and_retry_events(docs_examples: Path) -> None:
    requests: list[RequestEvent] = []
    retries: list[RetryEvent] = []
    hooks = Hooks(on_request=requests.append, on_retry=retries.append)
    with aioresponses() as mocked:
        mocked.post(URL, status=503, payload=error_body("QUERY_LIMIT_EXCEEDED"))
        mocked.post(URL, status=500, payload=error_body("INTERNAL_SERVER_ERROR"))
        mocked.post(URL, payload=dialog_example(docs_examples))
        async with make_client(hooks=hooks) as client:
            await client.get_dialog(chat_id=13)
    assert [(e.attempt, e.status, e.error_code) for e in requests] == [
        (1, 503, "QUERY_LIMIT_EXCEEDED"),
        (2, 500, "INTERNAL_SERVER_ERROR"),
        (3, 200, None),
    ]
    assert all(e.method == DIALOG_GET for e in requests)
    assert all(e.portal == "https://portal.bitrix24.com" for e in requests)
    assert all(e.commands == 1 and e.duration >= 0 for e in requests)
    assert [(e.attempt, e.reason, e.error_code) for e in retries] == [
        (1, "query limit exceeded", "QUERY_LIMIT_EXCEEDED"),
        (2, "server error 500", "INTERNAL_SERVER_ERROR"),
    ]
    assert all(e.method == DIALOG_GET and e.delay == 0.0 for e in retries)


async def test_request_event_for_a_transport_error() -> None:
    requests: list[RequestEvent] = []
    with aioresponses() as mocked:
        mocked.post(URL, exception=aiohttp.ServerDisconnectedError())
        async with make_client(
            hooks=Hooks(on_request=requests.append), retry=RetryPolicy.never()
        ) as client:
            with pytest.raises(TransportError):
                await client.get_dialog(chat_id=13)
    assert [(e.status, e.error_code) for e in requests] == [(None, "TransportError")]


async def test_hooks_receive_refresh_events(docs_examples: Path) -> None:
    refreshes: list[RefreshEvent] = []
    refresh_body = load_example(docs_examples, "oauth__token_refresh__200.json")
    with aioresponses() as mocked:
        mocked.post(oauth_url(DIALOG_GET), status=401, payload=error_body("expired_token"))
        mocked.post(oauth_url(DIALOG_GET), payload=dialog_example(docs_examples))
        mocked.get(TOKEN_URL_RE, payload=refresh_body)
        async with make_client(oauth_auth(), hooks=Hooks(on_refresh=refreshes.append)) as client:
            await client.get_dialog(chat_id=13)
    assert len(refreshes) == 1
    assert refreshes[0].ok is True
    assert refreshes[0].portal == "https://portal.bitrix24.com"
    assert refreshes[0].error_code is None


async def test_hooks_receive_failed_refresh_events(docs_examples: Path) -> None:
    refreshes: list[RefreshEvent] = []
    with aioresponses() as mocked:
        mocked.post(oauth_url(DIALOG_GET), status=401, payload=error_body("expired_token"))
        mocked.get(TOKEN_URL_RE, status=400, payload=error_body("invalid_grant"))
        async with make_client(oauth_auth(), hooks=Hooks(on_refresh=refreshes.append)) as client:
            with pytest.raises(AuthError):
                await client.get_dialog(chat_id=13)
    assert [(e.ok, e.error_code) for e in refreshes] == [(False, "invalid_grant")]


async def test_one_refresh_event_per_refresh_however_many_waiters(docs_examples: Path) -> None:
    waiters = 20
    refreshes: list[RefreshEvent] = []
    refresh_body = load_example(docs_examples, "oauth__token_refresh__200.json")
    dialog_body = dialog_example(docs_examples)
    stale = asyncio.Event()
    seen_old = 0

    def portal(url: Any, **kwargs: Any) -> CallbackResult:
        nonlocal seen_old
        if body_of(kwargs)["auth"] == refresh_body["access_token"]:
            return CallbackResult(payload=dialog_body)
        seen_old += 1
        if seen_old == waiters:
            stale.set()
        return CallbackResult(status=401, payload=error_body("expired_token"))

    async def token_server(url: Any, **kwargs: Any) -> CallbackResult:
        await stale.wait()
        return CallbackResult(payload=refresh_body)

    with aioresponses() as mocked:
        mocked.post(oauth_url(DIALOG_GET), callback=portal, repeat=True)
        mocked.get(TOKEN_URL_RE, callback=token_server)
        async with make_client(oauth_auth(), hooks=Hooks(on_refresh=refreshes.append)) as client:
            await asyncio.wait_for(
                asyncio.gather(*(client.get_dialog(chat_id=i + 1) for i in range(waiters))),
                timeout=10,
            )
        assert len(recorded(mocked, "GET")) == 1
    # One refresh happened: metrics counting RefreshEvents must see one, not one per waiter.
    assert [e.ok for e in refreshes] == [True]


async def test_a_hook_that_raises_does_not_break_the_call(
    docs_examples: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(event: object) -> None:
        raise RuntimeError("metrics backend down")

    caplog.set_level(logging.DEBUG, logger="bitrix_openlines")
    with aioresponses() as mocked:
        mocked.post(URL, status=500, payload=error_body("INTERNAL_SERVER_ERROR"))
        mocked.post(URL, payload=dialog_example(docs_examples))
        hooks = Hooks(on_request=broken, on_retry=broken, on_refresh=broken)
        async with make_client(hooks=hooks) as client:
            assert (await client.get_dialog(chat_id=13)).id == 1777
    hook_errors = [r for r in caplog.records if "a hook raised" in r.getMessage()]
    assert len(hook_errors) == 3  # two requests, one retry
    assert {r.getMessage() for r in hook_errors} == {
        "a hook raised; ignored (RequestEvent)",
        "a hook raised; ignored (RetryEvent)",
    }
