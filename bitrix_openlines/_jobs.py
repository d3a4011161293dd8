"""The pieces of ``bitrix-openlines dialog get-many``: query lines in, JSON lines out.

Pure functions (parse a query line, render an outcome, scan an output file for resume)
beside :func:`run_get_many`, which drives :class:`~bitrix_openlines.SyncOpenLinesClient`.

Input: one query per line, a JSON object (``{"chat_id": 13}``) or ``key=value``
(``user_code=livechat|1|1373|211``); blank lines and lines starting with ``#`` are
skipped. Output: one JSON object per query, ``{"line": N, "query": ..., "ok": true,
"dialog": {...}}`` or ``{"line": N, "query": ..., "ok": false, "error": {...}}``, where
``line`` is the query's line number in the input (1-based).

Resume: the lines already in the output file are skipped. A job killed half-way may
have left its last line unfinished; that line is cut off before appending, so every
query appears in the output exactly once.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import IO, Any

import attrs

from bitrix_openlines.batch import DialogOutcome
from bitrix_openlines.errors import OpenLinesError
from bitrix_openlines.types.dialog import Dialog

__all__ = [
    "QueryLine",
    "dialog_to_json",
    "error_to_json",
    "outcome_to_json",
    "parse_query_line",
    "read_queries",
    "scan_output",
]

_INT_KEYS = frozenset({"chat_id", "session_id"})


@attrs.frozen(slots=True)
class QueryLine:
    """One query read from the input: its line number, raw text and parsed value."""

    line: int
    text: str
    query: Any


def parse_query_line(text: str) -> Any:
    """Parse one input line into a query mapping (or the raw value, to fail later).

    ``{"chat_id": 13}`` is taken as JSON; ``chat_id=13`` as one ``key=value`` pair whose
    value is an int for ``chat_id`` and ``session_id`` when it is all digits. A line that
    is neither is returned as a string, which the batch job reports as an invalid query.
    """
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            return json.loads(stripped)
        except ValueError:
            return stripped
    key, sep, value = stripped.partition("=")
    if not sep:
        return stripped
    key, value = key.strip(), value.strip()
    if key in _INT_KEYS and value.isascii() and value.isdigit():
        return {key: int(value)}
    return {key: value}


def read_queries(
    stream: IO[str], skip: set[int] | frozenset[int] = frozenset()
) -> Iterator[QueryLine]:
    """Yield the queries of ``stream`` lazily, leaving out blank, comment and ``skip`` lines."""
    for number, text in enumerate(stream, start=1):
        stripped = text.strip()
        if not stripped or stripped.startswith("#") or number in skip:
            continue
        yield QueryLine(line=number, text=stripped, query=parse_query_line(stripped))


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if attrs.has(type(value)):
        # An object's unknown keys (its ``extra``) sit beside its fields, as they came.
        data = {
            f.name: _plain(getattr(value, f.name))
            for f in attrs.fields(type(value))
            if f.name != "extra"
        }
        extra = getattr(value, "extra", None)
        if isinstance(extra, Mapping):
            data.update({str(k): _plain(v) for k, v in extra.items() if str(k) not in data})
        return data
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def dialog_to_json(dialog: Dialog) -> dict[str, Any]:
    """Render a dialog as a JSON-ready dict: its fields (dates as ISO text) and ``extra``.

    Each nested object's ``extra`` is merged into that object the same way.
    """
    data: dict[str, Any] = _plain(dialog)
    return data


def error_to_json(error: BaseException) -> dict[str, Any]:
    """Render an error as a JSON-ready dict (type, code, description, status, method)."""
    if isinstance(error, OpenLinesError):
        return {
            "type": type(error).__name__,
            "code": error.code,
            "description": error.description,
            "status": error.status,
            "method": error.method,
        }
    return {"type": type(error).__name__, "code": None, "description": str(error)}


def outcome_to_json(line: QueryLine, outcome: DialogOutcome) -> dict[str, Any]:
    """Render one outcome as the output line's object."""
    record: dict[str, Any] = {"line": line.line, "query": _jsonable_query(line.query)}
    if outcome.dialog is not None:
        record["ok"] = True
        record["dialog"] = dialog_to_json(outcome.dialog)
    else:
        record["ok"] = False
        assert outcome.error is not None
        record["error"] = error_to_json(outcome.error)
    return record


def _jsonable_query(query: Any) -> Any:
    try:
        json.dumps(query)
    except (TypeError, ValueError):
        return repr(query)
    return query


def scan_output(path: str) -> set[int]:
    """Return the input line numbers already in the output file, repairing a cut last line.

    A line that is not complete JSON (the job was killed while writing it) is removed
    from the file so that its query is done again, once.

    Raises:
        ValueError: A complete line of the file is not one of our records.
    """
    done: set[int] = set()
    if not os.path.exists(path):
        return done
    keep = 0
    with open(path, "rb") as stream:
        for raw in stream:
            if not raw.endswith(b"\n"):
                break  # an unfinished last line: cut it off below
            try:
                record = json.loads(raw)
                number = record["line"]
            except (ValueError, KeyError, TypeError):
                raise ValueError(
                    f"{path} has a line that is not a get-many record (after byte {keep}); "
                    "is it the output of another command?"
                ) from None
            if not isinstance(number, int):
                raise ValueError(f"{path} has a record whose 'line' is not a number")
            done.add(number)
            keep += len(raw)
    if keep != os.path.getsize(path):
        with open(path, "r+b") as stream:
            stream.truncate(keep)
    return done
