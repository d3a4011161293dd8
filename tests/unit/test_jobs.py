"""The pure pieces of ``dialog get-many``: query lines, records, resume scanning."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bitrix_openlines import DialogGet, DialogOutcome
from bitrix_openlines._convert import structure
from bitrix_openlines._jobs import (
    QueryLine,
    dialog_to_json,
    error_to_json,
    outcome_to_json,
    parse_query_line,
    read_queries,
    scan_output,
)
from bitrix_openlines.errors import AccessError
from bitrix_openlines.types.dialog import Dialog


@pytest.mark.parametrize(
    ("text", "query"),
    [
        ('{"chat_id": 13}', {"chat_id": 13}),
        ('  {"user_code": "livechat|1|2|3"}  ', {"user_code": "livechat|1|2|3"}),
        ("chat_id=13", {"chat_id": 13}),
        ("session_id = 1743", {"session_id": 1743}),
        ("chat_id=13x", {"chat_id": "13x"}),  # left for DialogGet to refuse, by name
        ("chat_id=²", {"chat_id": "²"}),
        ("dialog_id=chat29", {"dialog_id": "chat29"}),
        ("user_code=livechat|1|a=b|c", {"user_code": "livechat|1|a=b|c"}),
        ("{broken json", "{broken json"),
        ("just text", "just text"),
    ],
)
def test_parse_query_line(text: str, query: Any) -> None:
    assert parse_query_line(text) == query


def test_read_queries_skips_blank_comment_and_done_lines() -> None:
    stream = io.StringIO("chat_id=1\n\n# a comment\nchat_id=2\n  \nchat_id=3\n")
    lines = list(read_queries(stream, skip={4}))
    assert [(q.line, q.query) for q in lines] == [(1, {"chat_id": 1}), (6, {"chat_id": 3})]


def test_scan_output_missing_file(tmp_path: Path) -> None:
    assert scan_output(str(tmp_path / "nope.jsonl")) == set()


def test_scan_output_cuts_an_unfinished_last_line(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    complete = [json.dumps({"line": n, "ok": True}) + "\n" for n in (1, 2, 5)]
    path.write_text("".join(complete) + '{"line": 6, "ok": tr', encoding="utf-8")
    assert scan_output(str(path)) == {1, 2, 5}
    assert path.read_text(encoding="utf-8") == "".join(complete)


def test_scan_output_refuses_a_foreign_file(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    path.write_text('{"line": 1}\nnot json at all\n', encoding="utf-8")
    with pytest.raises(ValueError, match="not a get-many record"):
        scan_output(str(path))
    path.write_text('{"line": "1"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match="'line' is not a number"):
        scan_output(str(path))


def test_dialog_to_json_dates_nested_and_extra() -> None:
    dialog = Dialog(
        id=5,
        date_create=datetime(2026, 3, 13, 15, 50, 15, tzinfo=UTC),
        manager_list=(27,),
        extra={"future_field": {"x": 1}},
    )
    data = dialog_to_json(dialog)
    assert data["id"] == 5
    assert data["dialog_id"] == "chat5"
    assert data["date_create"] == "2026-03-13T15:50:15+00:00"
    assert data["manager_list"] == [27]
    assert data["future_field"] == {"x": 1}
    assert "extra" not in data
    json.dumps(data)  # JSON-ready


def test_dialog_to_json_merges_nested_extras() -> None:
    # A nested object's unknown keys sit beside its fields, as they came.
    dialog = structure(
        {
            "id": 5,
            "restrictions": {"avatar": True, "path": "/online/"},
            "readed_list": [{"user_id": 7, "avatar": {"url": ""}}],
            "last_message_views": {"first_viewers": [{"user_id": 7, "hint": 1}]},
        },
        Dialog,
    )
    data = dialog_to_json(dialog)
    assert data["restrictions"]["avatar"] is True
    assert data["restrictions"]["path"] == "/online/"
    assert "extra" not in data["restrictions"]
    assert data["readed_list"] == [
        {"user_id": 7, "user_name": None, "message_id": None, "date": None, "avatar": {"url": ""}}
    ]
    assert data["last_message_views"]["first_viewers"][0]["hint"] == 1
    json.dumps(data)


def test_outcome_records() -> None:
    line = QueryLine(line=7, text="chat_id=3", query={"chat_id": 3})
    good = DialogOutcome(
        index=0, query=line.query, request=DialogGet(chat_id=3), result=Dialog(id=3)
    )
    record = outcome_to_json(line, good)
    assert record["line"] == 7
    assert record["ok"] is True
    assert record["dialog"]["id"] == 3
    error = AccessError("no", code="ACCESS_ERROR", status=400, method="imopenlines.dialog.get")
    bad = DialogOutcome(index=0, query=line.query, request=DialogGet(chat_id=3), error=error)
    record = outcome_to_json(line, bad)
    assert record == {
        "line": 7,
        "query": {"chat_id": 3},
        "ok": False,
        "error": {
            "type": "AccessError",
            "code": "ACCESS_ERROR",
            "description": "no",
            "status": 400,
            "method": "imopenlines.dialog.get",
        },
    }
    assert error_to_json(KeyError("x"))["type"] == "KeyError"
