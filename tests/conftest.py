"""Fixtures shared by every test suite."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from _aioresponses_compat import install as _install_aioresponses_compat

from bitrix_openlines.ratelimit import _SHARED_BUDGETS

_install_aioresponses_compat()

# Verbatim response bodies from the official docs, copied into the repository (their
# sources are named in the folder's README.md): a fresh clone runs every test alone.
DOCS_EXAMPLES = Path(__file__).resolve().parent / "data" / "docs-examples"


@pytest.fixture(autouse=True)
def _fresh_operating_budgets() -> Iterator[None]:
    """Start each test with no shared operating-time budget (they are per portal, per
    process: a pause one test provoked must not reach the next test's calls)."""
    _SHARED_BUDGETS.clear()
    yield
    _SHARED_BUDGETS.clear()


@pytest.fixture(scope="session")
def docs_examples() -> Path:
    """Return the folder of the official docs' example bodies; fail loudly if it is missing."""
    if not (DOCS_EXAMPLES.is_dir() and any(DOCS_EXAMPLES.glob("*.json"))):
        pytest.fail(
            f"the docs examples folder is missing or empty: {DOCS_EXAMPLES} "
            "(expected tests/data/docs-examples with the *.json bodies)",
            pytrace=False,
        )
    return DOCS_EXAMPLES
