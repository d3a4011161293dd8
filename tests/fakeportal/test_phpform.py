"""PHP value semantics: parse_str, http_build_query, casts and json_encode array rules."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bitrix_openlines.testing._phpform import (
    build_query,
    parse_query,
    php_bool,
    php_intval,
    php_strval,
    to_json,
    to_php_value,
)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("a=1&b=2", {"a": "1", "b": "2"}),
        ("a[b][0]=x&a[b][1]=y", {"a": {"b": {"0": "x", "1": "y"}}}),
        ("a[]=x&a[]=y", {"a": {"0": "x", "1": "y"}}),
        ("a[5]=x&a[]=y", {"a": {"5": "x", "6": "y"}}),
        ("a[][b]=1&a[][b]=2", {"a": {"0": {"b": "1"}, "1": {"b": "2"}}}),
        ("a[ ]=x", {"a": {"0": "x"}}),
        ("k=a+b%20c", {"k": "a b c"}),
        ("k=%26%3D%25%2B%3F%23", {"k": "&=%+?#"}),
        ("k=%zz%2", {"k": "%zz%2"}),
        ("k=%D0%AF%F0%9F%99%82", {"k": "Я🙂"}),
        ("a.b=1&c d=2", {"a_b": "1", "c_d": "2"}),
        ("a[b.c d]=1", {"a": {"b.c d": "1"}}),
        ("a[b=1", {"a_b": "1"}),
        ("a[b.c=1", {"a_b_c": "1"}),
        ("a[b][c=1", {"a": {"b": "1"}}),
        ("a[b]x[c]=1", {"a": {"b": "1"}}),
        ("=x&[a]=1&&", {}),
        ("   a=1", {"a": "1"}),
        ("a", {"a": ""}),
        ("a=1&a=2", {"a": "2"}),
        ("a[x]=1&a=2", {"a": "2"}),
        ("a=2&a[x]=1", {"a": {"x": "1"}}),
        ("FIELDS[%3E%3DPRICE]=15", {"FIELDS": {">=PRICE": "15"}}),
    ],
)
def test_parse_query_follows_php_parse_str(query: str, expected: dict[str, Any]) -> None:
    assert parse_query(query) == expected


def test_parse_query_keeps_key_order() -> None:
    assert list(parse_query("z=1&a=2&m=3")) == ["z", "a", "m"]
    assert list(parse_query("c[2]=a&c[0]=b")["c"]) == ["2", "0"]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"a": 1, "b": "x y"}, "a=1&b=x+y"),
        ({"f": {"T": "v", "P": [{"V": 1}]}}, "f%5BT%5D=v&f%5BP%5D%5B0%5D%5BV%5D=1"),
        ({"t": True, "f": False, "n": None, "e": [], "x": 1.5}, "t=1&f=0&x=1.5"),
        ({"k": "a&b=c%d+e~"}, "k=a%26b%3Dc%25d%2Be%7E"),
        ({"k": "Я"}, "k=%D0%AF"),
        (["a", "b"], "0=a&1=b"),
    ],
)
def test_build_query_follows_http_build_query(params: Any, expected: str) -> None:
    assert build_query(params) == expected


def test_build_query_round_trips_through_parse_query() -> None:
    params = {
        "USER_CODE": "livechat|1|a&b=c%d+e f|Юникод",
        "FILTER": {">=DATE": "2026-01-01T00:00:00+03:00", "ID": ["1", "2"]},
        "SELECT": ["ID", "NAME"],
    }
    assert parse_query(build_query(params)) == {
        "USER_CODE": "livechat|1|a&b=c%d+e f|Юникод",
        "FILTER": {">=DATE": "2026-01-01T00:00:00+03:00", "ID": {"0": "1", "1": "2"}},
        "SELECT": {"0": "ID", "1": "NAME"},
    }


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (13, 13),
        ("13", 13),
        ("13abc", 13),
        ("  42", 42),
        ("-7x", -7),
        ("+5", 5),
        ("12.9", 12),
        ("1e3", 1000),
        ("abc", 0),
        ("0x1A", 0),
        ("", 0),
        (None, 0),
        (True, 1),
        (False, 0),
        (7.99, 7),
        ([], 0),
        ([0], 1),
        ({}, 0),
        ("99999999999999999999", 2**63 - 1),
        (float("nan"), 0),
    ],
)
def test_php_intval(value: Any, expected: int) -> None:
    assert php_intval(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", False),
        ("0", False),
        ("0.0", True),
        ("false", True),
        ("1", True),
        (0, False),
        (0.0, False),
        (2, True),
        (None, False),
        ([], False),
        ({}, False),
        ({"a": 1}, True),
        (True, True),
    ],
)
def test_php_bool(value: Any, expected: bool) -> None:
    assert php_bool(value) is expected


def test_php_strval() -> None:
    assert [php_strval(v) for v in (True, False, None, 1.0, 1.5, 7, "x")] == [
        "1",
        "",
        "",
        "1",
        "1.5",
        "7",
        "x",
    ]


def test_json_encode_array_rules() -> None:
    value = {
        "empty": {},
        "sequential": {"0": "a", "1": "b"},
        "gap": {"1": "a"},
        "unordered": {"1": "a", "0": "b"},
        "named": {"x": {"0": {}}},
        "list": [{"0": 1}],
    }
    assert to_php_value(value) == {
        "empty": [],
        "sequential": ["a", "b"],
        "gap": {"1": "a"},
        "unordered": {"1": "a", "0": "b"},
        "named": {"x": [[]]},
        "list": [[1]],
    }
    assert json.loads(to_json({"u": "Я", "e": {}})) == {"u": "Я", "e": []}
    assert to_json({"u": "Я"}) == '{"u":"Я"}'.encode()
