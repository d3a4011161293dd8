"""Share small tools between the fake-portal tests: a fake clock, doc examples, shapes."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import aiohttp
import pytest

DIALOG_GET = "imopenlines.dialog.get"


class FakeClock:
    """A monotonic clock that moves only when told to."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def _examples_dir() -> Path | None:
    # The docs folder lives beside the repository: /work/shared locally, <checkout>/../shared
    # in CI. BITRIX_DOCS_EXAMPLES overrides both.
    repo_root = Path(__file__).resolve().parents[2]
    candidates: list[str | Path] = [
        os.environ.get("BITRIX_DOCS_EXAMPLES", ""),
        repo_root.parent / "shared" / "bitrix-docs-examples",
        Path.cwd().parent / "shared" / "bitrix-docs-examples",
    ]
    for candidate in candidates:
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    return None


def load_example(name: str) -> Any:
    """Return a documented response body from ``shared/bitrix-docs-examples``.

    Skips the test when the folder is absent (an sdist without the docs), but fails in CI,
    where a missing folder means a broken checkout rather than a missing optional file.
    """
    folder = _examples_dir()
    if folder is None:
        message = "shared/bitrix-docs-examples not found beside the repository"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return json.loads((folder / name).read_text(encoding="utf-8"))


def shape(value: Any) -> Any:
    """Return the JSON shape of ``value``: key order and JSON types, recursively.

    A list is described by its first element, so documented lists of one item and
    generated lists compare equal when their items have the same shape.
    """
    if isinstance(value, dict):
        return [(key, shape(item)) for key, item in value.items()]
    if isinstance(value, list):
        return ["list", shape(value[0]) if value else None]
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    return type(value).__name__


async def call(
    http: aiohttp.ClientSession, url: str, payload: Any = None, **kwargs: Any
) -> tuple[int, Any]:
    """POST ``payload`` as JSON (or ``kwargs`` as given) and return (status, decoded body)."""
    if payload is not None:
        kwargs["json"] = payload
    async with http.post(url, **kwargs) as response:
        text = await response.text()
        assert response.content_type == "application/json", (response.status, text)
        return response.status, json.loads(text)
