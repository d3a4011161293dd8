"""batch: answer shape, PHP array rules, 50-command cap, halt, nesting, encoding, references."""

from __future__ import annotations

from typing import Any

import aiohttp

from bitrix_openlines.testing import FakePortal
from bitrix_openlines.testing._phpform import build_query

from ._helpers import DIALOG_GET, call, load_example, shape

PARTS = ["result", "result_error", "result_total", "result_next", "result_time"]


def dialog_cmd(**params: Any) -> str:
    return f"{DIALOG_GET}?{build_query(params)}"


async def batch(portal: FakePortal, http: aiohttp.ClientSession, **payload: Any) -> Any:
    status, body = await call(http, portal.webhook_url + "batch", payload)
    assert status == 200
    return body


async def test_batch_answer_has_the_documented_shape(
    portal: FakePortal, http: aiohttp.ClientSession
) -> None:
    linked = load_example("batch__200_success_linked.json")
    errors = load_example("batch__200_halt0_errors.json")
    body = await batch(
        portal, http, cmd={"one": dialog_cmd(CHAT_ID=1), "two": dialog_cmd(DIALOG_ID="chat2")}
    )
    assert list(body) == list(linked) == ["result", "time"]
    assert list(body["result"]) == list(linked["result"]) == PARTS
    result = body["result"]
    assert list(result["result"]) == ["one", "two"]
    assert [r["id"] for r in result["result"].values()] == [1, 2]
    # empty parts are PHP empty arrays: [] in JSON, exactly as documented
    assert result["result_error"] == result["result_total"] == result["result_next"] == []
    assert linked["result"]["result_error"] == []
    single = load_example("imopenlines.dialog.get__200_success.json")
    for time in result["result_time"].values():
        assert shape(time) == shape(single["time"])

    body = await batch(
        portal, http, cmd={"get_user": "user.get?ID=1", "x": dialog_cmd(CHAT_ID=9999)}
    )
    assert body["result"]["result"] == errors["result"]["result"] == []
    assert body["result"]["result_time"] == []
    assert body["result"]["result_error"] == {
        "get_user": {"error": "ERROR_METHOD_NOT_FOUND", "error_description": "Method not found!"},
        "x": {
            "error": "ACCESS_ERROR",
            "error_description": "You do not have access to the specified dialog",
        },
    }
    assert portal.stats.command_rejections == {"ERROR_METHOD_NOT_FOUND": 1, "ACCESS_ERROR": 1}


async def test_batch_itself_is_not_metered(
    portal: FakePortal, http: aiohttp.ClientSession
) -> None:
    body = await batch(portal, http, cmd=[dialog_cmd(CHAT_ID=1)])
    time = body["time"]
    assert time["operating"] == 0
    assert time["operating_reset_at"] == time["start"] + 600


async def test_list_cmd_gives_json_arrays(portal: FakePortal, http: aiohttp.ClientSession) -> None:
    body = await batch(
        portal, http, cmd=[dialog_cmd(CHAT_ID=1), "server.time", dialog_cmd(CHAT_ID=4)]
    )
    result = body["result"]
    assert isinstance(result["result"], list)
    assert [result["result"][0]["id"], result["result"][2]["id"]] == [1, 4]
    assert isinstance(result["result_time"], list)
    assert len(result["result_time"]) == 3
    # a failure in the middle leaves keys 0 and 2: not sequential, so an object
    body = await batch(
        portal, http, cmd=[dialog_cmd(CHAT_ID=1), dialog_cmd(CHAT_ID=3), "server.time"]
    )
    assert list(body["result"]["result"]) == ["0", "2"]
    assert list(body["result"]["result_error"]) == ["1"]
    # PHP json_encode rule: an error on command 0 alone is a one-element *list*
    body = await batch(portal, http, cmd=[dialog_cmd(CHAT_ID=3), "server.time"])
    assert body["result"]["result_error"] == [
        {
            "error": "ACCESS_ERROR",
            "error_description": "You do not have access to the specified dialog",
        }
    ]
    assert body["result"]["result"] == {"1": body["result"]["result"]["1"]}


async def test_51_commands_run_50_and_reject_the_rest(
    portal: FakePortal, http: aiohttp.ClientSession
) -> None:
    cmd = {f"c{i}": dialog_cmd(CHAT_ID=1 + i % 2) for i in range(52)}
    cmd["c2"] = dialog_cmd(CHAT_ID=3)  # forbidden: errors do not stop a batch without halt
    body = await batch(portal, http, cmd=cmd)
    result = body["result"]
    assert len(result["result"]) == 49
    assert list(result["result_error"]) == ["c2", "c50", "c51"]
    assert result["result_error"]["c50"] == {
        "error": "ERROR_BATCH_LENGTH_EXCEEDED",
        "error_description": "Max batch length exceeded",
    }
    assert sum(portal.stats.commands.values()) == 50
    assert portal.stats.by_method == {"batch": 1}


async def test_halt_stops_after_the_first_failure(
    portal: FakePortal, http: aiohttp.ClientSession
) -> None:
    cmd = {"a": dialog_cmd(CHAT_ID=1), "b": dialog_cmd(CHAT_ID=3), "c": dialog_cmd(CHAT_ID=2)}
    for halt in (1, True, "1", "Y"):
        result = (await batch(portal, http, cmd=cmd, halt=halt))["result"]
        assert list(result["result"]) == ["a"]
        assert list(result["result_error"]) == ["b"]
        assert list(result["result_time"]) == ["a"]
    for halt in (0, False, "0", ""):
        result = (await batch(portal, http, cmd=cmd, HALT=halt))["result"]
        assert list(result["result"]) == ["a", "c"]


async def test_halt_also_stops_at_the_length_limit(
    portal: FakePortal, http: aiohttp.ClientSession
) -> None:
    cmd = [dialog_cmd(CHAT_ID=1)] * 53
    result = (await batch(portal, http, cmd=cmd, halt=1))["result"]
    assert len(result["result"]) == 50
    assert list(result["result_error"]) == ["50"]


async def test_nested_batch_is_not_allowed(
    portal: FakePortal, http: aiohttp.ClientSession
) -> None:
    nested = "batch?" + build_query({"cmd": {"x": "server.time"}})
    result = (await batch(portal, http, cmd={"n": nested, "BATCH": "BATCH"}))["result"]
    expected = {
        "error": "ERROR_BATCH_METHOD_NOT_ALLOWED",
        "error_description": "Method is not allowed for batch usage",
    }
    assert result["result_error"] == {"n": expected, "BATCH": expected}


async def test_values_needing_escaping_round_trip(
    portal: FakePortal, http: aiohttp.ClientSession
) -> None:
    odd = portal.dialogs[-1].user_code
    assert all(c in odd for c in "&=%+ Ю")
    cmd = {"code": dialog_cmd(USER_CODE=odd), "imol": dialog_cmd(USER_CODE="imol|" + odd)}
    # JSON body: the command strings travel as they are
    result = (await batch(portal, http, cmd=cmd))["result"]
    assert [r["entity_id"] for r in result["result"].values()] == [odd, odd]
    # form body: the command strings are encoded a second time (%26 -> %2526)
    form = build_query({"cmd": cmd, "halt": 0})
    assert "%2526" in form
    status, body = await call(
        http,
        portal.webhook_url + "batch",
        data=form,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert status == 200
    assert [r["entity_id"] for r in body["result"]["result"].values()] == [odd, odd]


async def test_commands_accept_bracket_params_and_case_insensitive_names(
    portal: FakePortal, http: aiohttp.ClientSession
) -> None:
    cmd = {
        "a": "IMOPENLINES.DIALOG.GET?chat_id=5",
        "b": f"{DIALOG_GET}?x[y][]=1&dialog_id=chat6#frag",
    }
    result = (await batch(portal, http, cmd=cmd))["result"]
    assert [r["id"] for r in result["result"].values()] == [5, 6]
    assert dict(portal.stats.commands) == {DIALOG_GET: 2}


async def test_references_to_earlier_results(
    portal: FakePortal, http: aiohttp.ClientSession
) -> None:
    cmd = {
        "first": dialog_cmd(CHAT_ID=7),
        "by_ref": f"{DIALOG_GET}?DIALOG_ID=$result[first][dialog_id]",
        "by_session": f"{DIALOG_GET}?CHAT_ID=$result[by_ref][id]",
        "text": f"{DIALOG_GET}?DIALOG_ID=chat$result[first][id]",
        "missing": f"{DIALOG_GET}?CHAT_ID=$result[nothing][id]",
    }
    result = (await batch(portal, http, cmd=cmd))["result"]
    assert [r["id"] for r in result["result"].values()] == [7, 7, 7, 7, 1]
    # A missing path stops at the deepest existing node (PROTOCOL.md section 5): here the
    # whole $result array, and PHP's (int) of a non-empty array is 1, so chat 1 answers.
    assert result["result"]["missing"]["id"] == 1


async def test_batch_without_cmd_is_empty(portal: FakePortal, http: aiohttp.ClientSession) -> None:
    body = await batch(portal, http)
    assert body["result"] == {part: [] for part in PARTS}
    body = await batch(portal, http, cmd="not a map")
    assert body["result"] == {part: [] for part in PARTS}
