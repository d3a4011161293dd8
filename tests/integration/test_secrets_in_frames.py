"""No SDK frame holds a secret in plain text during calls, batches and refreshes.

Error trackers record every local variable of every frame of a traceback (Sentry does
by default). These tests run webhook calls, batches, retried faults and OAuth refreshes
against the fake portal under a ``sys.settrace`` hook that reads the locals of every SDK
frame at each event (tests/_secret_frames.py), and find no webhook code, client secret
or token in a str, bytes, a container's item, or the repr of an SDK object.

The secrets checked are those the SDK knows at each moment: a new pair is checked from
the moment the auth adopts it (the frames that parse the token server's answer hold it
before, as any parser holds what it parses).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import pytest
from _secret_frames import FrameScan

from bitrix_openlines import (
    DialogGet,
    OAuthAuth,
    OAuthTokens,
    OpenLinesClient,
    RetryPolicy,
    WebhookAuth,
)
from bitrix_openlines.errors import AccessError
from bitrix_openlines.methods.base import Method
from bitrix_openlines.testing import FakePortal, Faults

pytestmark = pytest.mark.integration

DIALOGS = 70  # two batches: 50 commands, then the rest


def _webhook_code(portal: FakePortal) -> str:
    return portal.webhook_url.rstrip("/").rsplit("/", 1)[1]


async def _exercise(client: OpenLinesClient) -> None:
    """Single calls (one refused), a typed batch and a raw batch."""
    assert (await client.get_dialog(chat_id=1)).id == 1
    assert (await client.call_raw("imopenlines.dialog.get", {"CHAT_ID": 2}))["id"] == 2
    with pytest.raises(AccessError):
        await client.get_dialog(chat_id=3)
    outcomes = await client.get_dialogs([{"chat_id": i} for i in range(1, DIALOGS + 1)])
    assert sum(o.ok for o in outcomes) == DIALOGS - 1
    methods: list[Method[Any]] = [DialogGet(chat_id=i) for i in (5, 6)]
    assert all(o.ok for o in await client.batch(methods))


def _assert_clean(scan: FrameScan, expected: Iterable[str]) -> None:
    # The scan read the frames that handle the secrets (it cannot pass by seeing nothing).
    assert set(expected) <= scan.functions, set(expected) - scan.functions
    assert scan.findings == [], "\n".join(map(str, scan.findings))


_CALL_PATH = ("_send", "_attempt", "post", "_request", "credentials", "_send_batch")


async def test_webhook_calls_and_batches_hold_no_secret_in_frames() -> None:
    async with FakePortal(dialogs=DIALOGS, forbidden=[3], rate=None) as portal:
        code = _webhook_code(portal)
        async with OpenLinesClient(
            WebhookAuth(portal.webhook_url), retry=RetryPolicy.no_wait(), rate_limit=None
        ) as client:
            with FrameScan(lambda: (code,)) as scan:
                await _exercise(client)
    _assert_clean(scan, _CALL_PATH)


async def test_retried_faults_hold_no_secret_in_frames() -> None:
    faults = Faults(internal_error=0.2, drop=0.1, truncate=0.1, command_internal_error=0.1)
    async with FakePortal(dialogs=DIALOGS, forbidden=[3], rate=None, faults=faults) as portal:
        code = _webhook_code(portal)
        async with OpenLinesClient(
            WebhookAuth(portal.webhook_url),
            retry=RetryPolicy.no_wait(max_attempts=10),
            rate_limit=None,
        ) as client:
            with FrameScan(lambda: (code,)) as scan:
                await _exercise(client)
        assert portal.stats.faults["internal_error"] > 0
        assert portal.stats.faults["drop"] > 0
    _assert_clean(scan, _CALL_PATH)


def _oauth(portal: FakePortal) -> tuple[OAuthAuth, Callable[[], Iterable[str]]]:
    auth = OAuthAuth(
        client_id=portal.client_id,
        client_secret=portal.client_secret,
        tokens=OAuthTokens.from_response(portal.issue_tokens()),
        token_url=portal.token_url,
    )
    return auth, lambda: (portal.client_secret, *auth.redactor.secrets)


async def test_oauth_calls_and_refreshes_hold_no_secret_in_frames() -> None:
    async with FakePortal(dialogs=DIALOGS, forbidden=[3], rate=None) as portal:
        auth, secrets = _oauth(portal)
        async with OpenLinesClient(auth, retry=RetryPolicy.no_wait(), rate_limit=None) as client:
            with FrameScan(secrets) as scan:
                await _exercise(client)
                portal.expire_access_tokens()
                assert (await client.get_dialog(chat_id=7)).id == 7  # refreshed, replayed
                portal.expire_access_tokens()
                outcomes = await client.get_dialogs([{"chat_id": i} for i in range(8, 20)])
                assert all(o.ok for o in outcomes)  # the batch refreshed
        assert portal.stats.refreshes == 2
        # Two refreshes: the scan knew three pairs and the client secret.
        assert len(auth.redactor.secrets) == 7
    _assert_clean(scan, (*_CALL_PATH, "refresh", "_refresh", "_refresh_with", "_request_tokens"))
