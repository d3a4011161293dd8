"""A value that looks like a batch reference (``$result[c0][id]``) reaches the portal intact.

Inside a ``batch`` the portal replaces ``$result[cmd][field]`` (and ``$next``, ``$total``,
``$time``, ``$error``) in command parameters with the answers of earlier commands
(PROTOCOL.md section 5); the fake portal does the same. A user code holding such a
pattern would then name another dialog inside a batch. The batch engine sends such a
request as a single call, so it gets the same outcome as alone.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bitrix_openlines import DialogGet, OpenLinesClient, RetryPolicy, WebhookAuth
from bitrix_openlines.errors import AccessError, OpenLinesError
from bitrix_openlines.testing import FakeDialog, FakePortal
from bitrix_openlines.wire import batch_command, to_wire

pytestmark = pytest.mark.integration

# No dialog has this code: ACCESS_ERROR alone.
UNKNOWN = "livechat|2|$result[c0][id]|201"
# Dialog 8 has this very code: found alone.
LITERAL = "livechat|3|$result[c0][id]|5"
# What the portal makes of them inside a batch whose command c0 answered chat 1: the
# reference runs to the next whitespace, so "$result[c0][id]|201" is replaced whole.
UNKNOWN_RESOLVED = "livechat|2|1"
LITERAL_RESOLVED = "livechat|3|1"


def _dialogs() -> list[FakeDialog]:
    plain = [
        FakeDialog(chat_id=n, session_id=1000 + n, user_code=f"livechat|1|{n}|{n}")
        for n in range(1, 6)
    ]
    return [
        *plain,
        # The dialogs a substituted reference would name.
        FakeDialog(chat_id=7, session_id=1007, user_code=UNKNOWN_RESOLVED),
        FakeDialog(chat_id=9, session_id=1009, user_code=LITERAL_RESOLVED),
        FakeDialog(chat_id=8, session_id=1008, user_code=LITERAL),
    ]


@pytest.fixture
async def ref_portal() -> AsyncIterator[FakePortal]:
    async with FakePortal(dialogs=_dialogs(), rate=None) as fake:
        yield fake


@pytest.fixture
async def ref_client(ref_portal: FakePortal) -> AsyncIterator[OpenLinesClient]:
    async with OpenLinesClient(
        WebhookAuth(ref_portal.webhook_url), retry=RetryPolicy.no_wait(), rate_limit=None
    ) as c:
        yield c


async def _alone(client: OpenLinesClient, user_code: str) -> int | str:
    try:
        return (await client.get_dialog(user_code=user_code)).chat_id
    except OpenLinesError as error:
        return error.code or type(error).__name__


@pytest.mark.parametrize(("code", "resolved"), [(UNKNOWN, 7), (LITERAL, 9)])
async def test_the_portal_resolves_the_pattern_inside_a_raw_batch(
    ref_client: OpenLinesClient, code: str, resolved: int
) -> None:
    # The hazard itself: sent inside a batch, the code names another dialog.
    command = batch_command("imopenlines.dialog.get", to_wire({"USER_CODE": code}))
    answer = await ref_client.call_raw(
        "batch", {"cmd": {"c0": "imopenlines.dialog.get?CHAT_ID=1", "c1": command}}
    )
    assert answer["result"]["c1"]["id"] == resolved


async def test_the_pattern_gives_the_same_outcome_alone_and_in_get_dialogs(
    ref_client: OpenLinesClient, ref_portal: FakePortal
) -> None:
    assert await _alone(ref_client, UNKNOWN) == "ACCESS_ERROR"
    assert await _alone(ref_client, LITERAL) == 8
    before = ref_portal.stats.copy()
    outcomes = await ref_client.get_dialogs(
        [
            {"chat_id": 1},
            {"user_code": UNKNOWN},
            {"chat_id": 2},
            {"user_code": LITERAL},
            {"user_code": UNKNOWN},  # a duplicate: sent once, same outcome
        ]
    )
    assert [o.index for o in outcomes] == [0, 1, 2, 3, 4]
    assert [o.dialog.chat_id if o.dialog else None for o in outcomes] == [1, None, 2, 8, None]
    for outcome in (outcomes[1], outcomes[4]):
        assert isinstance(outcome.error, AccessError)
        assert outcome.error.code == "ACCESS_ERROR"
    assert outcomes[3].time is not None  # the single call's time block
    # One batch for the plain queries, one single call per unique hostile one.
    stats = ref_portal.stats
    assert stats.by_method["batch"] - before.by_method["batch"] == 1
    single = stats.by_method["imopenlines.dialog.get"] - before.by_method["imopenlines.dialog.get"]
    assert single == 2
    assert (
        stats.commands["imopenlines.dialog.get"] - before.commands["imopenlines.dialog.get"] == 2
    )


async def test_the_pattern_in_client_batch_and_iter_dialogs_unordered(
    ref_client: OpenLinesClient,
) -> None:
    outcomes = await ref_client.batch(
        [DialogGet(chat_id=1), DialogGet(user_code=LITERAL), DialogGet(user_code=UNKNOWN)]
    )
    assert [o.result.chat_id if o.result else None for o in outcomes] == [1, 8, None]
    assert isinstance(outcomes[2].error, AccessError)
    queries = [{"chat_id": n % 5 + 1} if n % 7 else {"user_code": LITERAL} for n in range(120)]
    seen: dict[int, int | None] = {}
    async for outcome in ref_client.iter_dialogs(queries, ordered=False, window=50):
        assert outcome.index not in seen
        seen[outcome.index] = outcome.dialog.chat_id if outcome.dialog else None
    assert seen == {n: n % 5 + 1 if n % 7 else 8 for n in range(120)}
