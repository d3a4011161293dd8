"""Fixtures shared by every test suite."""

from __future__ import annotations

from pathlib import Path

import pytest
from _aioresponses_compat import install as _install_aioresponses_compat

_install_aioresponses_compat()

# Verbatim response bodies from the official docs, copied into the repository (their
# sources are named in the folder's README.md): a fresh clone runs every test alone.
DOCS_EXAMPLES = Path(__file__).resolve().parent / "data" / "docs-examples"


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
