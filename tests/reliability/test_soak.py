"""A soak: continuous mixed traffic, and nothing grows.

One client does ``get_dialog``, ``get_dialogs`` of 200 and ``call_raw`` at the same time,
without pause, against a portal in its own thread (so every task of this loop, and every
socket to the portal's port held by this process, is the client's) with a low rate of
every fault. The run is measured in requests, not seconds: every 50 requests the portal
has received, every access token is expired (the next call refreshes), and every 100 the
test samples the client's established connections (from ``/proc``), the tasks of its
loop and the memory in use (tracemalloc, and RSS). It then asserts that none of them grew
between the first samples after warm-up and the last ones, that traffic really flowed,
and that the client left no task and no connection behind once closed. On a loaded
machine the run takes longer; it samples and asserts the same.
"""

from __future__ import annotations

import asyncio
import gc
import random
import tracemalloc
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import pytest

from bitrix_openlines import OAuthAuth, OAuthTokens, OpenLinesClient, RateLimit, RetryPolicy
from bitrix_openlines.errors import AccessError
from bitrix_openlines.testing import FakePortal, Faults, ThreadedFakePortal

from ._support import established_connections_to, proc_available, rss_bytes

pytestmark = [pytest.mark.reliability, pytest.mark.integration]

SAMPLES = 12
SAMPLE_EVERY = 100  # requests the portal received between two samples
EXPIRE_EVERY = 50  # requests between two expiries of every access token
WARM_UP_SAMPLES = 2  # the first 200 requests: pools, caches and the first refreshes settle
COMPARED = 3  # samples compared at each end
RATE = 100.0
BURST = 40
DIALOGS = 2000
FORBIDDEN = frozenset(range(10, DIALOGS + 1, 100))
CONCURRENCY = 4  # batches in flight in get_dialogs
STEP_TIMEOUT = 30.0  # one call (or one get_dialogs of 200) taking longer is a hang
MEMORY_GROWTH = 3 * 2**20  # traced bytes
RSS_GROWTH = 24 * 2**20
# get_dialog + get_dialogs' batches + call_raw + a token refresh, and a little slack for
# connections the portal closed (drop faults) that the client has not reaped yet.
MAX_CONNECTIONS = 1 + CONCURRENCY + 1 + 1 + 4


@attrs.frozen
class Sample:
    at: int  # requests the portal had received
    connections: int
    tasks: int
    writers: int
    traced: int
    rss: int
    secrets: int


class Traffic:
    """Three workers sharing one client until ``stop`` is set; they count what they see."""

    def __init__(self, client: OpenLinesClient, seed: int) -> None:
        self.client = client
        self.rng = random.Random(seed)
        self.stop = asyncio.Event()
        self.counts: Counter[str] = Counter()
        self.problems: list[str] = []

    def _chat(self) -> int:
        return self.rng.randint(1, DIALOGS)

    async def _loop(self, name: str, step: Callable[[], Awaitable[None]]) -> None:
        while not self.stop.is_set():
            try:
                await asyncio.wait_for(step(), STEP_TIMEOUT)
            except Exception as exc:
                self.problems.append(f"{name}: {exc!r}"[:300])
            self.counts[f"{name} steps"] += 1

    async def single(self) -> None:
        chat = self._chat()
        try:
            dialog = await self.client.get_dialog(chat_id=chat)
        except AccessError:
            if chat not in FORBIDDEN:
                raise
            self.counts["get_dialog forbidden"] += 1
            return
        if dialog.id != chat or chat in FORBIDDEN:
            self.problems.append(f"get_dialog({chat}) gave chat {dialog.id}")
        self.counts["get_dialog ok"] += 1

    async def many(self) -> None:
        chats = [self._chat() for _ in range(200)]
        outcomes = await self.client.get_dialogs(
            [{"chat_id": chat} for chat in chats], concurrency=CONCURRENCY
        )
        if len(outcomes) != len(chats):
            self.problems.append(f"get_dialogs gave {len(outcomes)} outcomes for 200")
        for chat, outcome in zip(chats, outcomes, strict=False):
            if chat in FORBIDDEN:
                right = isinstance(outcome.error, AccessError)
            else:
                right = outcome.dialog is not None and outcome.dialog.id == chat
            if not right:
                self.problems.append(f"get_dialogs: chat {chat} gave {outcome.error!r}"[:300])
        self.counts["get_dialogs outcomes"] += len(outcomes)

    async def raw(self) -> None:
        if self.rng.random() < 0.5:
            result: Any = await self.client.call_raw("server.time", idempotent=True)
            ok = isinstance(result, str) and "T" in result
        else:
            result = await self.client.call_raw("imopenlines.revision.get", idempotent=True)
            ok = isinstance(result, dict) and "rest" in result
        if not ok:
            self.problems.append(f"call_raw gave {result!r}"[:300])
        self.counts["call_raw ok"] += 1

    def start(self) -> list[asyncio.Task[None]]:
        return [
            asyncio.ensure_future(self._loop("get_dialog", self.single)),
            asyncio.ensure_future(self._loop("get_dialogs", self.many)),
            asyncio.ensure_future(self._loop("call_raw", self.raw)),
        ]


def _connections(client: OpenLinesClient, port: int) -> int:
    if proc_available():
        return established_connections_to(port)
    # Elsewhere: the connections the client's pool holds (idle and in use).
    session = client._session.transport._session
    connector = session.connector if session is not None else None
    if connector is None:
        return 0
    idle = sum(len(conns) for conns in connector._conns.values())
    return idle + len(connector._acquired)


def _is_body_writer(task: asyncio.Task[Any]) -> bool:
    """aiohttp's task that writes one request's body (a task per request on 3.11)."""
    coro = task.get_coro()
    code = getattr(coro, "cr_code", None)
    return (
        getattr(coro, "__qualname__", "") == "ClientRequest.write_bytes"
        and code is not None
        and "aiohttp" in code.co_filename
    )


def _sample(client: OpenLinesClient, port: int, at: int) -> Sample:
    gc.collect()
    tasks = asyncio.all_tasks()
    writers = sum(_is_body_writer(task) for task in tasks)
    return Sample(
        at=at,
        connections=_connections(client, port),
        tasks=len(tasks) - writers,
        writers=writers,
        traced=tracemalloc.get_traced_memory()[0],
        rss=rss_bytes(),
        # Every secret the auth's redactor hides from error texts (grows on each refresh).
        secrets=len(client.auth.redactor.secrets),
    )


async def _until_requests(
    portal: ThreadedFakePortal, count: int, workers: list[asyncio.Task[None]]
) -> None:
    """Return once the portal has received ``count`` requests (the workers still run)."""
    while portal.stats.requests < count:
        assert not any(w.done() for w in workers), workers
        await asyncio.sleep(0.05)


@pytest.mark.slow
async def test_soak_nothing_grows() -> None:
    faults = Faults(
        internal_error=0.003,
        bad_gateway=0.003,
        drop=0.003,
        truncate=0.003,
        command_internal_error=0.003,
        seed=60,
    )
    tracing_already = tracemalloc.is_tracing()  # e.g. python -X tracemalloc
    if not tracing_already:
        tracemalloc.start()
    try:
        with ThreadedFakePortal(
            dialogs=DIALOGS,
            forbidden=FORBIDDEN,
            rate=RATE,
            burst=BURST,
            faults=faults,
        ) as portal:
            before = asyncio.all_tasks()
            auth = OAuthAuth(
                client_id=portal.client_id,
                client_secret=portal.client_secret,
                tokens=OAuthTokens.from_response(portal.issue_tokens()),
                token_url=portal.token_url,
            )
            client = OpenLinesClient(
                auth,
                rate_limit=RateLimit(requests_per_second=RATE, burst=BURST),
                retry=RetryPolicy(max_attempts=8, base_delay=0.01, max_delay=0.2),
            )
            port = int(portal.base_url.rsplit(":", 1)[1])
            traffic = Traffic(client, seed=11)
            workers = traffic.start()
            samples: list[Sample] = []
            expiries = 0
            try:
                for step in range(1, SAMPLES * SAMPLE_EVERY // EXPIRE_EVERY + 1):
                    await _until_requests(portal, step * EXPIRE_EVERY, workers)
                    portal.expire_access_tokens()
                    expiries += 1
                    if step * EXPIRE_EVERY % SAMPLE_EVERY == 0:
                        samples.append(_sample(client, port, portal.stats.requests))
            finally:
                traffic.stop.set()
                await asyncio.wait_for(asyncio.gather(*workers), 2 * STEP_TIMEOUT)
            stats = portal.stats
            while_open = _connections(client, port)
            await client.close()
            await asyncio.sleep(0.2)
            leftover_tasks = asyncio.all_tasks() - before
            after_close = _connections(client, port)
    finally:
        if not tracing_already:
            tracemalloc.stop()

    table = "\n".join(str(s) for s in samples)
    # Traffic really flowed, all of it right.
    assert not traffic.problems, (len(traffic.problems), traffic.problems[:10])
    assert traffic.counts["get_dialog ok"] > 100, traffic.counts
    assert traffic.counts["get_dialogs outcomes"] >= 20 * 200, traffic.counts
    assert traffic.counts["call_raw ok"] > 100, traffic.counts
    assert stats.by_method["batch"] >= 80, stats.by_method
    assert stats.by_method["imopenlines.dialog.get"] > 100, stats.by_method
    # Every expiry but perhaps the last was followed by calls: each made one refresh.
    assert expiries - 1 <= stats.refreshes <= expiries, (stats.refreshes, expiries)
    assert sum(stats.faults.values()) > 0, stats.faults
    assert stats.rejections["invalid_grant"] == 0

    # Nothing grew.
    assert len(samples) == SAMPLES >= WARM_UP_SAMPLES + 2 * COMPARED, table
    first = samples[WARM_UP_SAMPLES : WARM_UP_SAMPLES + COMPARED]
    last = samples[-COMPARED:]
    # + each worker and the task wait_for wraps its step in, the batches in flight, a
    # refresh, and one to spare.
    tasks_allowed = len(before) + 2 * 3 + CONCURRENCY + 1 + 1
    assert max(s.tasks for s in samples) <= tasks_allowed, table
    # aiohttp writes each request's body in a task of its own (on Python 3.11, until the
    # body is written): at most one per request in flight (the batches, the two single
    # calls, a refresh), counted apart so that they cannot hide a task the SDK leaks.
    assert max(s.writers for s in samples) <= CONCURRENCY + 2 + 1, table
    assert max(s.connections for s in samples) <= MAX_CONNECTIONS, table
    # At the end, no more than at the start, or than the calls in flight can explain.
    in_flight = 1 + CONCURRENCY + 1 + 1
    assert max(s.connections for s in last) <= max(in_flight, *(s.connections for s in first)), (
        table
    )
    traced_growth = min(s.traced for s in last) - min(s.traced for s in first)
    assert traced_growth < MEMORY_GROWTH, f"traced memory grew {traced_growth} B\n{table}"
    rss_growth = min(s.rss for s in last) - min(s.rss for s in first)
    assert rss_growth < RSS_GROWTH, f"RSS grew {rss_growth} B\n{table}"

    # Closed, the client leaves nothing behind.
    assert while_open > 0, "no connection was open during the run: the count is broken"
    assert leftover_tasks == set(), leftover_tasks
    assert after_close == 0, after_close


async def test_token_refreshes_do_not_grow_what_the_client_keeps() -> None:
    # A long-lived client refreshes its token every hour, forever. The auth keeps a
    # bounded memory of old secrets (to redact them from error texts); the transport's
    # own redaction list must stay bounded too, not gain two strings per refresh.
    async with FakePortal(dialogs=3, rate=None) as portal:
        auth = OAuthAuth(
            client_id=portal.client_id,
            client_secret=portal.client_secret,
            tokens=OAuthTokens.from_response(portal.issue_tokens()),
            token_url=portal.token_url,
        )
        async with OpenLinesClient(auth, rate_limit=None, retry=RetryPolicy.no_wait()) as client:
            sizes = []
            for _ in range(100):
                portal.expire_access_tokens()
                assert (await client.get_dialog(chat_id=1)).id == 1
                sizes.append(len(auth.redactor.secrets))
        assert portal.stats.refreshes == 100
    # The client secret, the current pair and at most 32 retired secrets: bounded.
    assert max(sizes) <= 1 + 2 + 32, (
        f"the redactor holds {sizes[-1]} secrets after 100 refreshes; "
        f"sizes {sizes[:5]}...{sizes[-3:]}"
    )
    assert sizes[-1] == sizes[-2], sizes[-5:]
