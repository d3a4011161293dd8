"""Fixtures shared by every test suite."""

from __future__ import annotations

from pathlib import Path

import pytest

# The verbatim response bodies from the official docs live beside the repository:
# /work/shared/bitrix-docs-examples here, <repo>/../shared/bitrix-docs-examples in CI.
DOCS_EXAMPLES = Path(__file__).resolve().parents[1].parent / "shared" / "bitrix-docs-examples"


@pytest.fixture(scope="session")
def docs_examples() -> Path:
    """Return the folder of the official docs' example bodies; fail loudly if it is missing."""
    if not (DOCS_EXAMPLES.is_dir() and any(DOCS_EXAMPLES.glob("*.json"))):
        pytest.fail(
            f"the docs examples folder is missing or empty: {DOCS_EXAMPLES} "
            "(expected <repo>/../shared/bitrix-docs-examples with the *.json bodies)",
            pytrace=False,
        )
    return DOCS_EXAMPLES
