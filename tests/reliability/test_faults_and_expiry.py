"""10,000 dialog queries through 10% faults and access tokens that expire every 2 seconds.

Every query's outcome is known before the run: a valid query must give its own dialog,
a forbidden or unknown one ``AccessError``, a malformed one ``InvalidQueryError``, and a
duplicate the outcome of its original. With a retry policy of 8 attempts, the chance that
any fault survives all of them is about 1e-9 per request, so every failed outcome that is
not one of those three is a fault the SDK let through: the test fails and says which.

The client's limiter and the portal (its bucket and its tokens' lifetime) run on one
virtual clock (``tests/_virtual_time.py``): the batches are paced at 8/s and the tokens
expire every 2 s of that clock, so about 20 s of traffic and its expiries happen
whatever the machine's speed, in a few seconds of real time.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from typing import Any, Literal

import attrs
import pytest
from _virtual_time import PacedLimiter, VirtualTime

from bitrix_openlines import (
    DialogGet,
    DialogOutcome,
    Hooks,
    OAuthAuth,
    OAuthTokens,
    OpenLinesClient,
    RateLimit,
    RetryPolicy,
    UserCode,
)
from bitrix_openlines.errors import AccessError, InvalidQueryError
from bitrix_openlines.hooks import RefreshEvent, RetryEvent
from bitrix_openlines.testing import FakeDialog, FakePortal, Faults

pytestmark = [pytest.mark.reliability, pytest.mark.integration]

QUERIES = 10_000
DIALOGS = 3000
FORBIDDEN = range(7, DIALOGS + 1, 40)
TOKEN_TTL = 2.0
# ~8,000 unique requests are ~160 batches, plus ~10% retried after faults and a few
# replays after each expiry: at 8 requests/s past the burst of 50 that is 20-30 seconds
# of virtual time.
RATE = 8.0
BURST = 50

Kind = Literal["dialog", "access", "invalid"]


@attrs.frozen
class Expected:
    """What one query must end as."""

    kind: Kind
    dialog: FakeDialog | None = None


def _malformed() -> list[Callable[[], Any]]:
    # Factories: each call makes a new object, so malformed queries are not duplicates.
    return [
        lambda: {"chat_id": 0},
        lambda: {"chat_id": -5},
        lambda: {"chat_id": "12"},
        lambda: {"chat_id": 1.5},
        lambda: {"chat_id": True},
        lambda: {"session_id": float("nan")},
        lambda: {"dialog_id": "29"},
        lambda: {"dialog_id": "chat0"},
        lambda: {"dialog_id": 29},
        lambda: {"session_id": None},
        dict,
        lambda: {"nope": 1},
        lambda: {"CHAT_ID": 1},
        lambda: {"chat_id": 1, "session_id": 2},
        lambda: {"user_code": "livechat|1|2"},
        lambda: {"user_code": "livechat|x|1|2"},
        lambda: {"user_code": ""},
        lambda: {"user_code": 12},
        lambda: "chat_id=1",
        lambda: None,
        lambda: 42,
        lambda: ["chat_id", 1],
    ]


def _by_identifier(dialog: FakeDialog, rng: random.Random) -> Any:
    """A query naming ``dialog`` by one of its identifiers, in one of the accepted forms."""
    form = rng.randrange(8)
    if form == 0:
        return {"chat_id": dialog.chat_id}
    if form == 1:
        return {"dialog_id": dialog.dialog_id}
    if form == 2:
        return {"dialog_id": dialog.dialog_id.upper()}  # the portal ignores the case
    if form == 3:
        return {"session_id": dialog.session_id}
    if form == 4:
        return {"user_code": dialog.user_code}
    if form == 5:
        return {"user_code": "imol|" + dialog.user_code}
    if form == 6:
        return {"user_code": UserCode.parse(dialog.user_code)}
    return DialogGet(session_id=dialog.session_id)


def _unknown(rng: random.Random, serial: int) -> Any:
    """A well-formed query for a dialog the portal does not have."""
    form = rng.randrange(4)
    if form == 0:
        return {"chat_id": DIALOGS + 1 + serial}
    if form == 1:
        return {"dialog_id": f"chat{DIALOGS + 1 + serial}"}
    if form == 2:
        return {"session_id": 900_000_000 + serial}
    return {"user_code": f"livechat|9|nochat{serial}|{serial}"}


def build_queries(dialogs: list[FakeDialog], seed: int) -> tuple[list[Any], list[Expected]]:
    """About 10% duplicates, 4% malformed, 4% unknown, 4% forbidden and the rest valid."""
    rng = random.Random(seed)
    allowed = [d for d in dialogs if not d.forbidden]
    forbidden = [d for d in dialogs if d.forbidden]
    malformed = _malformed()
    queries: list[Any] = []
    expected: list[Expected] = []
    for position in range(QUERIES):
        roll = rng.random()
        if position and roll < 0.10:
            original = rng.randrange(position)
            query = queries[original]
            if isinstance(query, dict) and rng.random() < 0.5:
                query = dict(query)  # an equal copy, not the same object
            queries.append(query)
            expected.append(expected[original])
        elif roll < 0.14:
            queries.append(rng.choice(malformed)())
            expected.append(Expected("invalid"))
        elif roll < 0.18:
            queries.append(_unknown(rng, position))
            expected.append(Expected("access"))
        elif roll < 0.22:
            queries.append(_by_identifier(rng.choice(forbidden), rng))
            expected.append(Expected("access"))
        else:
            dialog = rng.choice(allowed)
            queries.append(_by_identifier(dialog, rng))
            expected.append(Expected("dialog", dialog))
    return queries, expected


def _mismatch(outcome: DialogOutcome, want: Expected) -> str | None:
    """Why ``outcome`` is not ``want``, or ``None`` when it is right."""
    if want.kind == "invalid":
        if not isinstance(outcome.error, InvalidQueryError) or outcome.request is not None:
            return f"expected InvalidQueryError, got {outcome.error!r}"
        return None
    if want.kind == "access":
        if not isinstance(outcome.error, AccessError) or outcome.error.code != "ACCESS_ERROR":
            return f"expected AccessError ACCESS_ERROR, got {outcome.error!r}"
        return None
    assert want.dialog is not None
    dialog = outcome.dialog
    if outcome.error is not None or dialog is None:
        return f"expected chat {want.dialog.chat_id}, got {outcome.error!r}"
    if (dialog.id, dialog.entity_id, dialog.session_id) != (
        want.dialog.chat_id,
        want.dialog.user_code,
        want.dialog.session_id,
    ):
        return f"expected chat {want.dialog.chat_id}, got chat {dialog.id} ({dialog.entity_id})"
    return None


@pytest.mark.slow
async def test_10000_queries_through_faults_and_expiring_tokens() -> None:
    faults = Faults(
        internal_error=0.02,
        bad_gateway=0.02,
        drop=0.02,
        truncate=0.02,
        command_internal_error=0.02,
        seed=20260101,
    )
    retries: Counter[str] = Counter()
    refreshes: list[RefreshEvent] = []

    def on_retry(event: RetryEvent) -> None:
        retries[event.reason] += 1

    clock = VirtualTime()
    limiter = PacedLimiter(RateLimit(requests_per_second=RATE, burst=BURST), clock)
    async with FakePortal(
        dialogs=DIALOGS,
        forbidden=FORBIDDEN,
        rate=RATE,
        burst=BURST,
        access_token_ttl=TOKEN_TTL,
        faults=faults,
        clock=clock,
    ) as portal:
        queries, expected = build_queries(portal.dialogs, seed=7)
        auth = OAuthAuth(
            client_id=portal.client_id,
            client_secret=portal.client_secret,
            tokens=OAuthTokens.from_response(portal.issue_tokens()),
            token_url=portal.token_url,
        )
        progress: list[int] = []
        async with OpenLinesClient(
            auth,
            limiter=limiter,
            retry=RetryPolicy(max_attempts=8, base_delay=0.01, max_delay=0.2),
            hooks=Hooks(on_retry=on_retry, on_refresh=refreshes.append),
        ) as client:
            outcomes = await clock.run(
                client.get_dialogs(queries, progress=lambda done, _f, _t: progress.append(done)),
                limiter=limiter,
                arrived=lambda: portal.stats.requests,
            )
        stats = portal.stats.copy()

    # Every query has exactly one outcome, in input order, carrying the query as given.
    assert len(outcomes) == QUERIES
    assert [o.index for o in outcomes] == list(range(QUERIES))
    assert all(o.query is q for o, q in zip(outcomes, queries, strict=True))
    assert progress == list(range(1, QUERIES + 1))

    # ... and it is the right one.
    wrong = [
        (o.index, why)
        for o, want in zip(outcomes, expected, strict=True)
        if (why := _mismatch(o, want)) is not None
    ]
    leaked = Counter(type(o.error).__name__ for o in outcomes if o.error is not None)
    assert not wrong, (
        f"{len(wrong)} wrong outcome(s), e.g. {wrong[:5]}; errors by class: {dict(leaked)}; "
        f"retries: {dict(retries)}; portal faults: {dict(stats.faults)}"
    )
    kinds = Counter(want.kind for want in expected)
    assert min(kinds.values()) > 300, kinds  # every kind was really exercised

    # The faults and the expiries really happened, and were absorbed.
    for kind in ("internal_error", "bad_gateway", "drop", "truncate", "command_internal_error"):
        assert stats.faults[kind] > 0, stats.faults
    request_faults = sum(stats.faults.values()) - stats.faults["command_internal_error"]
    assert sum(retries.values()) >= request_faults, (retries, stats.faults)
    assert stats.command_rejections["INTERNAL_SERVER_ERROR"] > 0
    assert stats.rejections["expired_token"] > 0
    assert stats.refreshes >= 5, stats.refreshes
    # Paced over long enough (on the shared clock) for the tokens to expire many times.
    assert limiter.offsets()[-1] > 4 * TOKEN_TTL, limiter.offsets()[-1]
    assert stats.rejections.get("QUERY_LIMIT_EXCEEDED", 0) == 0
    # Refresh tokens are single-use: one refresh per expiry, never a reused token.
    assert stats.rejections["invalid_grant"] == 0
    assert stats.refreshes == auth.refresh_count == len(refreshes)
    assert all(event.ok for event in refreshes)
    # Duplicates were not sent twice: each unique valid request was executed at least once
    # (faults make some run again), and never more often than the portal was asked.
    unique = {
        (tuple(sorted(o.request.to_params().items()))) for o in outcomes if o.request is not None
    }
    assert stats.commands["imopenlines.dialog.get"] >= len(unique)
    assert stats.by_method["batch"] >= -(-len(unique) // 50)
