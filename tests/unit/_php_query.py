"""PHP ``http_build_query`` for the event tests: how Bitrix24 encodes the events it posts.

Written apart from the fake portal's encoder so that the SDK's decoder is checked against
an independent statement of the rules (PROTOCOL.md 6.2): nested keys as ``a[b][0]``
with the brackets percent-encoded, RFC 1738 escaping (a space is ``+``, only
``[A-Za-z0-9_.-]`` kept), ``null`` and empty arrays left out, ``true``/``false`` as
``1``/``0``, numbers as their PHP string form.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote


def _escape(text: str) -> str:
    return quote(text, safe="-_.", encoding="utf-8").replace("%20", "+")


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def http_build_query(value: Mapping[str, Any]) -> str:
    """Encode a decoded JSON object as PHP's ``http_build_query`` would."""
    pairs: list[str] = []

    def walk(node: Any, name: str) -> None:
        if isinstance(node, Mapping):
            children: list[tuple[Any, Any]] = list(node.items())
        elif isinstance(node, list):
            children = list(enumerate(node))
        else:
            if node is not None:
                pairs.append(f"{name}={_escape(_scalar(node))}")
            return
        for key, child in children:
            walk(child, f"{name}%5B{_escape(str(key))}%5D")

    for key, child in value.items():
        walk(child, _escape(str(key)))
    return "&".join(pairs)
