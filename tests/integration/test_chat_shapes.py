"""Chat objects in the shapes of newer portals, decoded over real sockets (issue 16)."""

from __future__ import annotations

import pytest

from bitrix_openlines import OpenLinesClient, RetryPolicy, WebhookAuth
from bitrix_openlines.testing import FakeDialog, FakePortal

pytestmark = pytest.mark.integration


async def test_mute_list_as_a_map_decodes_in_single_and_batch_calls() -> None:
    # The fake portal writes mute_list as newer portals do: {"503": true}.
    dialogs = [
        FakeDialog(
            chat_id=chat_id,
            session_id=100 + chat_id,
            user_code=f"livechat|22|{chat_id}|{chat_id}",
            muted=(503, chat_id) if chat_id % 2 else (),
        )
        for chat_id in range(1, 7)
    ]
    async with FakePortal(dialogs=dialogs, rate=None) as portal:
        async with OpenLinesClient(
            WebhookAuth(portal.webhook_url), retry=RetryPolicy.no_wait(), rate_limit=None
        ) as client:
            single = await client.get_dialog(chat_id=3)
            outcomes = await client.get_dialogs([{"chat_id": i} for i in range(1, 7)])
        assert portal.stats.by_method["batch"] == 1
    assert single.mute_list == (503, 3)
    assert single.extra == {}
    assert single.restrictions is not None
    assert single.restrictions.extra == {}
    muted = {}
    for outcome in outcomes:
        assert outcome.dialog is not None, outcome.error
        muted[outcome.dialog.id] = outcome.dialog.mute_list
    assert muted == {1: (503, 1), 2: (), 3: (503, 3), 4: (), 5: (503, 5), 6: ()}


async def test_line_id_and_block_reason_of_both_portal_generations() -> None:
    # The fake portal writes the line into entity_data_1 and ends it with "|0" (current)
    # or "|" (legacy_2024): both read the same.
    dialog = FakeDialog(chat_id=9, session_id=90, user_code="telegrambot|22|9|9")
    for legacy in (False, True):
        async with FakePortal(dialogs=[dialog], rate=None, legacy_2024=legacy) as portal:
            async with OpenLinesClient(
                WebhookAuth(portal.webhook_url), retry=RetryPolicy.no_wait(), rate_limit=None
            ) as client:
                got = await client.get_dialog(chat_id=9)
        assert (got.entity_data_1 or "").endswith("|" if legacy else "|0")
        assert got.session.block_reason == ""
        assert got.line_id == 22
        assert got.mute_list == ()
