"""Fixtures of the integration tests: the fake portal over real sockets."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bitrix_openlines import OpenLinesClient, RetryPolicy, WebhookAuth
from bitrix_openlines.testing import FakePortal

pytestmark = pytest.mark.integration


@pytest.fixture
async def portal() -> AsyncIterator[FakePortal]:
    """A portal with 30 dialogs (chats 3 and 4 forbidden) and no bucket."""
    async with FakePortal(dialogs=30, forbidden=[3, 4], rate=None) as fake:
        yield fake


@pytest.fixture
async def client(portal: FakePortal) -> AsyncIterator[OpenLinesClient]:
    """A webhook client of ``portal`` that retries without sleeping."""
    async with OpenLinesClient(
        WebhookAuth(portal.webhook_url), retry=RetryPolicy.no_wait(), rate_limit=None
    ) as c:
        yield c
