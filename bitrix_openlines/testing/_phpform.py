"""Reproduce the PHP value semantics a Bitrix24 portal applies to requests and answers.

A Bitrix24 portal is PHP. What a client sends is decoded the way PHP decodes it and what it
answers is encoded the way PHP encodes it, so the fake portal copies those rules instead of
using Python's own:

* form and query strings are decoded like ``parse_str`` (bracket nesting ``a[b][0]=x``,
  ``a[]=x`` appends, ``+`` is a space, dots and spaces in the base name become ``_``);
  PROTOCOL.md section 1 (data-encoding) and section 5 (batch commands go through
  ``parse_str`` on the server).
* ``http_build_query`` is provided for tests that build batch commands the way the official
  PHP SDK does (PROTOCOL.md section 5).
* casts ``(int)``, ``(bool)`` and ``(string)`` follow PHP 8, because
  ``imopenlines.dialog.get`` casts ``CHAT_ID`` with ``(int)`` (PROTOCOL.md section 7.2) and
  ``batch`` casts ``halt`` with ``(bool)`` (section 5).
* PHP has one "array" type for lists and maps. Decoded values are kept as ``dict`` with
  ``str`` keys; :func:`to_json` turns them back into JSON exactly like ``json_encode``:
  an empty array is ``[]`` and an array whose keys are ``0..n-1`` in order is a JSON list
  (PROTOCOL.md section 5, "Empty parts serialize as []").
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote_plus, unquote_plus

__all__ = [
    "build_query",
    "next_index",
    "parse_pairs",
    "parse_query",
    "php_bool",
    "php_intval",
    "php_number",
    "php_strval",
    "to_json",
    "to_php_value",
]

_INT64_MAX = 2**63 - 1
_INT64_MIN = -(2**63)

# A key PHP stores as an integer: "0", "17", "-3"; not "017", "+1", "1.0" or " 1".
_CANONICAL_INT = re.compile(r"0|-?[1-9][0-9]*")

# The numeric prefix PHP 8 reads in (int)"13abc": leading whitespace, a sign, digits with an
# optional fraction and exponent.
_NUMERIC_PREFIX = re.compile(
    r"[ \t\n\r\v\f]*([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)"
)


def _canonical_int(key: str) -> int | None:
    """Return the integer PHP would store ``key`` as, or None when it stays a string."""
    if _CANONICAL_INT.fullmatch(key) is None:
        return None
    value = int(key)
    if value < _INT64_MIN or value > _INT64_MAX:
        return None
    return value


def next_index(array: Mapping[str, Any]) -> str:
    """Return the key PHP gives a value appended with ``$a[] = ...``.

    Args:
        array: A PHP array kept as a dict with ``str`` keys.

    Returns:
        One more than the largest integer key, or ``"0"`` when there is none.
    """
    ints = [i for i in (_canonical_int(k) for k in array) if i is not None]
    return str(max(ints) + 1) if ints else "0"


def _urldecode(text: str) -> str:
    # PHP urldecode: '+' is a space, %XX is a byte, a broken escape stays as it is.
    return unquote_plus(text, encoding="utf-8", errors="replace")


def _register(table: dict[str, Any], name: str, value: Any) -> None:
    """Store one ``name=value`` pair the way PHP's ``php_register_variable_ex`` does."""
    # PHP reads the variable name as a C string and skips leading spaces.
    name = name.split("\0", 1)[0].lstrip(" ")
    size = len(name)
    pos = 0
    base_chars: list[str] = []
    while pos < size and name[pos] != "[":
        base_chars.append("_" if name[pos] in " ." else name[pos])
        pos += 1
    if not base_chars:
        return  # an empty base name ("=x", "[a]=x") is dropped by PHP
    base = "".join(base_chars)
    indices: list[str | None] = []
    while pos < size:  # name[pos] == "[" here
        start = pos + 1
        probe = start + 1 if start < size and name[start] == " " else start
        if probe < size and name[probe] == "]":
            close = probe
            indices.append(None)
        else:
            close = name.find("]", probe)
            if close == -1:
                if not indices:
                    # An unmatched first '[' is not an index: it and the rest of the name
                    # become part of a plain variable name, with '[', '.', ' ' as '_'.
                    rest = re.sub(r"[ .\[]", "_", name[start:])
                    base = f"{base}_{rest}"
                break  # a nested unmatched '[' ends the name where it is
            indices.append(name[start:close])
        pos = close + 1
        if pos >= size or name[pos] != "[":
            break  # anything after the last ']' that is not '[' is ignored
    container = table
    key: str = base
    for index in indices:
        child = container.get(key)
        if not isinstance(child, dict):
            child = {}
            container[key] = child
        container = child
        key = next_index(container) if index is None else index
    container[key] = value


def parse_pairs(
    pairs: Iterable[tuple[str, Any]], into: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Decode already percent-decoded ``(name, value)`` pairs with PHP bracket nesting.

    Used for multipart form fields, whose names and values arrive decoded.

    Args:
        pairs: Field names (possibly with ``[...]`` parts) and their values, in order.
        into: A table to add to; a new one when omitted.

    Returns:
        The table, with nested PHP arrays as dicts keyed by ``str``.
    """
    table: dict[str, Any] = {} if into is None else into
    for name, value in pairs:
        _register(table, name, value)
    return table


def parse_query(query: str) -> dict[str, Any]:
    """Decode a query or form body exactly like PHP ``parse_str``.

    Args:
        query: The raw, still percent-encoded ``a=1&b[c]=2`` text.

    Returns:
        The decoded table, with nested PHP arrays as dicts keyed by ``str``.
    """
    table: dict[str, Any] = {}
    for piece in query.split("&"):
        if not piece:
            continue
        name, _, value = piece.partition("=")
        _register(table, _urldecode(name), _urldecode(value))
    return table


def _urlencode(text: str) -> str:
    # PHP urlencode keeps only [A-Za-z0-9_.-] and writes spaces as '+'; Python also keeps '~'.
    return quote_plus(text, safe="", encoding="utf-8").replace("~", "%7E")


def build_query(params: Mapping[str, Any] | list[Any]) -> str:
    """Encode params like PHP ``http_build_query`` (RFC 1738, brackets percent-encoded).

    ``None`` values and empty arrays are left out, booleans become ``1``/``0``, as in PHP.

    Args:
        params: A mapping or list, nested arbitrarily.

    Returns:
        The query string, without a leading ``?``.
    """
    parts: list[str] = []
    _build(params, None, parts)
    return "&".join(parts)


def _build(value: Mapping[str, Any] | list[Any], prefix: str | None, parts: list[str]) -> None:
    items = value.items() if isinstance(value, Mapping) else enumerate(value)
    for key, item in items:
        encoded_key = _urlencode(php_strval(key))
        name = encoded_key if prefix is None else f"{prefix}%5B{encoded_key}%5D"
        if item is None:
            continue
        if isinstance(item, Mapping | list | tuple):
            _build(item if isinstance(item, Mapping) else list(item), name, parts)
        elif isinstance(item, bool):
            parts.append(f"{name}={int(item)}")  # http_build_query writes false as 0, not ""
        else:
            parts.append(f"{name}={_urlencode(php_strval(item))}")


def php_intval(value: Any) -> int:
    """Cast like PHP 8 ``(int)``: ``"13abc"`` is 13, ``"abc"`` is 0, ``[]`` is 0, ``[x]`` is 1.

    Args:
        value: Any decoded JSON or form value.

    Returns:
        The integer PHP would produce, saturated to the 64-bit range.
    """
    if value is None:
        return 0
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return max(_INT64_MIN, min(_INT64_MAX, value))
    if isinstance(value, float):
        if not math.isfinite(value) or not _INT64_MIN <= value <= _INT64_MAX:
            return 0
        return int(value)
    if isinstance(value, str):
        match = _NUMERIC_PREFIX.match(value)
        if match is None:
            return 0
        number = match.group(1)
        if any(c in number for c in ".eE"):
            return php_intval(float(number))
        return max(_INT64_MIN, min(_INT64_MAX, int(number)))
    if isinstance(value, Mapping | list | tuple):
        return 1 if value else 0
    return 0


def php_bool(value: Any) -> bool:
    """Cast like PHP ``(bool)``: ``""``, ``"0"``, 0, 0.0, null and empty arrays are false.

    Note that the string ``"false"`` is true in PHP, and so it is here.
    """
    if value is None:
        return False
    if isinstance(value, str):
        return value not in ("", "0")
    if isinstance(value, bool | int | float):
        return bool(value)
    if isinstance(value, Mapping | list | tuple):
        return bool(value)
    return True


def php_strval(value: Any) -> str:
    """Cast a scalar like PHP ``(string)``: ``true`` is ``"1"``, ``1.0`` is ``"1"``."""
    if isinstance(value, bool):
        return "1" if value else ""
    if value is None:
        return ""
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return repr(value)
    return str(value)


def php_number(value: float) -> int | float:
    """Return a float as PHP ``json_encode`` writes it: a whole float is written as an int.

    PHP's ``json_encode(0.0)`` gives ``0``, which is why the documented ``time.operating``
    of an unmetered call is ``0`` and not ``0.0`` (bitrix-docs-examples, dialog.get 200).
    """
    value = float(value)
    if math.isfinite(value) and value.is_integer():
        return int(value)
    return value


def to_php_value(value: Any) -> Any:
    """Convert PHP arrays (dicts) into what ``json_encode`` would write, recursively.

    Args:
        value: A result built from dicts, lists and scalars.

    Returns:
        The same data where every dict that is empty or keyed ``"0".."n-1"`` in order is a
        list, ready for :func:`json.dumps`.
    """
    if isinstance(value, Mapping):
        keys = list(value)
        if all(k == str(i) for i, k in enumerate(keys)):  # also true for an empty dict
            return [to_php_value(value[k]) for k in keys]
        return {str(k): to_php_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_php_value(v) for v in value]
    return value


def to_json(value: Any) -> bytes:
    """Serialize ``value`` as a portal answer body (UTF-8, PHP array rules).

    Args:
        value: The answer, built from dicts, lists and scalars.

    Returns:
        The UTF-8 JSON body.
    """
    return json.dumps(
        to_php_value(value), ensure_ascii=False, separators=(",", ":"), allow_nan=False
    ).encode("utf-8")
