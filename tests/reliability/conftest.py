"""Fixtures of the reliability suite."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _quiet_sdk_retry_logs() -> Iterator[None]:
    """Keep the SDK's per-retry WARNING lines out of pytest's log capture.

    These tests retry thousands of times on purpose; pytest would keep every record in
    memory (which the soak test measures) and print them all on a failure. Errors still
    get through.
    """
    logger = logging.getLogger("bitrix_openlines")
    previous = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(previous)
