"""The wire module as tables: one encoding of values for single calls and batch commands."""

from __future__ import annotations

import enum
import json
import types
from typing import Any
from urllib.parse import quote_plus

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bitrix_openlines import UserCode
from bitrix_openlines.errors import ApiError, DecodeError
from bitrix_openlines.wire import (
    batch_command,
    http_build_query,
    json_body,
    parse_batch_result,
    parse_form,
    split_batch_result,
    take_command,
    to_wire,
)


class Chat(int, enum.Enum):
    SUPPORT = 5


class Flag(enum.Enum):
    ON = "Y"


@pytest.mark.parametrize(
    ("value", "wire"),
    [
        (13, "13"),
        (-2, "-2"),
        (2**63 - 1, "9223372036854775807"),
        (1.5, "1.5"),
        (1e20, "1e+20"),
        ("text", "text"),
        ("", ""),
        (True, "1"),
        (False, "0"),
        (Chat.SUPPORT, "5"),
        (Flag.ON, "Y"),
        (UserCode("livechat", 1, "1373", "211"), "livechat|1|1373|211"),
        ([1, "a", True], ["1", "a", "1"]),
        ((1, 2), ["1", "2"]),
        ({"a": 1, "b": [False]}, {"a": "1", "b": ["0"]}),
        ({">=ID": 5}, {">=ID": "5"}),
    ],
    ids=repr,
)
def test_to_wire_values(value: Any, wire: Any) -> None:
    assert to_wire({"X": value}) == {"X": wire}


@pytest.mark.parametrize("empty", [None, [], (), {}, {"a": None}, [None], {"a": []}])
def test_none_and_empty_containers_are_not_sent(empty: Any) -> None:
    # PHP's http_build_query sends nothing for them, so neither does a single call.
    assert to_wire({"X": empty, "Y": 1}) == {"Y": "1"}


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"MESSAGE": "a\ud800b"}, "parameter MESSAGE cannot be sent"),
        ({"FIELDS": {"TITLE": "\udfff"}}, "parameter FIELDS[TITLE] cannot be sent"),
        ({"IDS": [1, float("nan")]}, "parameter IDS[1] must be a finite number"),
        ({"X": float("inf")}, "parameter X must be a finite number"),
    ],
)
def test_unsendable_values_name_the_parameter(params: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        to_wire(params)


def test_bytes_are_refused_naming_the_parameter() -> None:
    with pytest.raises(TypeError, match="parameter BODY must be text"):
        to_wire({"BODY": b"x"})


def test_to_wire_needs_a_mapping() -> None:
    with pytest.raises(TypeError, match="params must be a mapping"):
        to_wire([("a", 1)])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("params", "query"),
    [
        ({"CHAT_ID": 13}, "CHAT_ID=13"),
        ({"USER_CODE": "livechat|1|1373|211"}, "USER_CODE=livechat%7C1%7C1373%7C211"),
        ({"A": "x y&z=1"}, "A=x+y%26z%3D1"),
        ({"FILTER": {">=ID": 5}}, "FILTER[%3E%3DID]=5"),
        ({"ID": [1, 2]}, "ID[0]=1&ID[1]=2"),
        ({"F": {"a": {"b": True}}}, "F[a][b]=1"),
        (
            {"T": "Здравствуйте"},
            "T=%D0%97%D0%B4%D1%80%D0%B0%D0%B2%D1%81%D1%82%D0%B2%D1%83%D0%B9%D1%82%D0%B5",
        ),
    ],
)
def test_http_build_query(params: dict[str, Any], query: str) -> None:
    assert http_build_query(to_wire(params)) == query


def test_batch_command_without_parameters_is_the_method_alone() -> None:
    assert batch_command("server.time", {}) == "server.time"
    assert batch_command("imopenlines.dialog.get", to_wire({"CHAT_ID": 5})) == (
        "imopenlines.dialog.get?CHAT_ID=5"
    )


@pytest.mark.parametrize(
    "params",
    [
        {"CHAT_ID": Chat.SUPPORT},
        {"A": True, "B": False, "C": 1.5, "D": "x y"},
        {"FIELDS": {"TITLE": "t", "IDS": [1, 2, 3], "NESTED": {"K": "v&w"}}},
        {"T": "Здравствуйте", "U": UserCode("telegrambot", 2, "chat|x", "7")},
    ],
    ids=repr,
)
def test_the_json_body_and_the_batch_command_carry_the_same_array(params: dict[str, Any]) -> None:
    wire = to_wire(params)
    from_json = json.loads(json_body(wire))
    from_query = parse_form(http_build_query(wire))

    def php_array(value: Any) -> Any:
        # parse_str gives lists as arrays keyed "0", "1"...; JSON as lists.
        if isinstance(value, list):
            return {str(i): php_array(v) for i, v in enumerate(value)}
        if isinstance(value, dict):
            return {k: php_array(v) for k, v in value.items()}
        return value

    assert php_array(from_json) == php_array(from_query)


_TEXT = st.text(alphabet=st.characters(codec="utf-8"), max_size=8)
_PARAMS = st.dictionaries(
    _TEXT.filter(bool),
    st.one_of(_TEXT, st.lists(_TEXT, max_size=3), st.dictionaries(_TEXT, _TEXT, max_size=2)),
    min_size=1,
    max_size=4,
)


@given(_PARAMS)
@settings(max_examples=300, deadline=None)
def test_http_build_query_is_quote_plus_of_every_pair(params: dict[str, Any]) -> None:
    # The unreserved-text shortcut gives exactly what quote_plus gives.
    wire = to_wire(params)
    expected = "&".join(
        f"{quote_plus(name, safe='[]')}={quote_plus(text, safe='')}"
        for key, value in wire.items()
        for name, text in _reference_pairs(key, value)
    )
    assert http_build_query(wire) == expected


def _reference_pairs(prefix: str, value: Any) -> list[tuple[str, str]]:
    if isinstance(value, str):
        return [(prefix, value)]
    items = value.items() if isinstance(value, dict) else enumerate(value)
    return [pair for key, item in items for pair in _reference_pairs(f"{prefix}[{key}]", item)]


# -- batch answers -------------------------------------------------------------------------


def _batch_answer() -> dict[str, Any]:
    return {
        "result": {"c0": {"id": 1}, "c2": {"id": 3}},
        "result_error": {"c1": {"error": "ACCESS_ERROR", "error_description": "no"}},
        "result_total": [],
        "result_next": [],
        "result_time": {"c0": {"start": 1.0, "finish": 2.0}, "c1": {"start": 3.0}},
    }


def test_parse_batch_result_gives_each_command_its_result_error_or_absence() -> None:
    methods = {"c0": "a.get", "c1": "b.get", "c2": "c.get", "c3": "d.get"}
    parsed = parse_batch_result(_batch_answer(), methods)
    assert list(parsed) == ["c0", "c1", "c2", "c3"]
    assert parsed["c0"].found
    assert parsed["c0"].result == {"id": 1}
    assert parsed["c0"].error is None
    assert parsed["c0"].time is not None
    assert parsed["c0"].time.finish == 2.0
    error = parsed["c1"].error
    assert isinstance(error, ApiError)
    assert error.code == "ACCESS_ERROR"
    assert error.method == "b.get"
    assert parsed["c1"].time is not None
    assert parsed["c2"].result == {"id": 3}
    assert parsed["c2"].time is None
    assert not parsed["c3"].found
    assert parsed["c3"].result is None


def test_parse_batch_result_moves_the_results_out_of_a_decoded_answer() -> None:
    # A decoded answer (dicts) gives its entries away: each raw result is then held by
    # its entry alone, and freed with it.
    answer = _batch_answer()
    dialog = answer["result"]["c0"]
    parsed = parse_batch_result(answer, {"c0": "a.get", "c2": "c.get"})
    assert parsed["c0"].result is dialog
    assert answer["result"] == {}
    assert "c0" not in answer["result_time"]


def test_parse_batch_result_leaves_other_mappings_as_they_are() -> None:
    answer = _batch_answer()
    frozen = types.MappingProxyType({**answer, "result": types.MappingProxyType(answer["result"])})
    parsed = parse_batch_result(frozen, {"c0": "a.get", "c2": "c.get"})
    assert parsed["c0"].result == {"id": 1}
    assert dict(frozen["result"]) == {"c0": {"id": 1}, "c2": {"id": 3}}


def test_parse_batch_result_reads_list_style_parts() -> None:
    parsed = parse_batch_result({"result": [{"id": 1}, {"id": 2}]}, {"0": "a.get", "1": "a.get"})
    assert parsed["1"].result == {"id": 2}


def test_take_command_moves_one_command_out_of_the_split_parts() -> None:
    # The batch engine takes commands one at a time: each gives its result or error once.
    answer = _batch_answer()
    parts = split_batch_result(answer)
    first = take_command("c0", "a.get", parts)
    assert first.found
    assert first.result == {"id": 1}
    assert first.time is not None
    assert "c0" not in answer["result"]
    assert "c0" not in answer["result_time"]
    error = take_command("c1", "b.get", parts).error
    assert isinstance(error, ApiError)
    assert error.method == "b.get"
    assert not take_command("c3", "d.get", parts).found


@pytest.mark.parametrize("result", [None, [], "text", 5])
def test_split_batch_result_refuses_what_is_not_a_batch_result(result: Any) -> None:
    with pytest.raises(DecodeError, match="batch answer's result must be an object"):
        split_batch_result(result)
