"""Fixtures of the fake-portal tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

import bitrix_openlines.testing.pytest_plugin as fake_portal_plugin
from bitrix_openlines.testing import FakeDialog, FakePortal


def pytest_configure(config: pytest.Config) -> None:
    # The plugin is a pytest11 entry point once the package is installed; in a plain
    # checkout it is registered here, the same module, so the fixture is tested as shipped.
    if not config.pluginmanager.is_registered(fake_portal_plugin):
        config.pluginmanager.register(fake_portal_plugin, "bitrix_openlines.testing.pytest_plugin")


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def portal() -> AsyncIterator[FakePortal]:
    """A portal with 20 generated dialogs (chat 3 forbidden), one odd user code, no bucket."""
    dialogs = [
        *FakePortal(dialogs=20, forbidden=[3]).dialogs,
        FakeDialog(chat_id=500, session_id=9500, user_code="livechat|7|a&b=c%d+e f|Юникод"),
    ]
    async with FakePortal(dialogs=dialogs, rate=None) as fake:
        yield fake
