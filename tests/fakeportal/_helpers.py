"""Share small tools between the fake-portal tests: a fake clock, doc examples, shapes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp

DIALOG_GET = "imopenlines.dialog.get"

# The official docs' bodies, copied into the repository (sources in the folder's README).
DOCS_EXAMPLES = Path(__file__).resolve().parents[1] / "data" / "docs-examples"


class FakeClock:
    """A monotonic clock that moves only when told to."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def load_example(name: str) -> Any:
    """Return a documented response body from ``tests/data/docs-examples``."""
    return json.loads((DOCS_EXAMPLES / name).read_text(encoding="utf-8"))


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
