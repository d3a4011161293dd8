"""imopenlines.dialog.get: answer shape, identifiers, precedence and request encodings."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from bitrix_openlines.testing import FakeDialog, FakePortal
from bitrix_openlines.testing._phpform import build_query

from ._helpers import DIALOG_GET, call, load_example, shape

ACCESS_ERROR = {
    "error": "ACCESS_ERROR",
    "error_description": "You do not have access to the specified dialog",
}


async def test_answer_has_the_documented_fields_order_and_types(
    portal: FakePortal, http: aiohttp.ClientSession
) -> None:
    example = load_example("imopenlines.dialog.get__200_success.json")
    for dialog in portal.dialogs:
        if dialog.forbidden:
            continue
        status, body = await call(
            http, portal.webhook_url + DIALOG_GET, {"CHAT_ID": dialog.chat_id}
        )
        assert status == 200
        assert list(body) == ["result", "time"]
        assert len(body["result"]) == 38
        assert shape(body["result"]) == shape(example["result"])
        assert shape(body["time"]) == shape(example["time"])


async def test_answer_values_come_from_the_dialog(
    portal: FakePortal, http: aiohttp.ClientSession
) -> None:
    dialog = portal.dialogs[6]
    _, body = await call(http, portal.webhook_url + DIALOG_GET, {"CHAT_ID": dialog.chat_id})
    result = body["result"]
    assert result["id"] == dialog.chat_id
    assert result["dialog_id"] == dialog.dialog_id == f"chat{dialog.chat_id}"
    assert result["entity_id"] == result["entity_link"]["id"] == dialog.user_code
    assert result["name"] == dialog.name
    assert result["type"] == "lines"
    assert result["entity_type"] == "LINES"
    fields = result["entity_data_1"].split("|")
    assert len(fields) == 10
    assert fields[5] == str(dialog.session_id)
    assert fields[7] == str(dialog.line_id)
    assert fields[0] == ("Y" if dialog.crm_lead_id else "N")
    assert result["manager_list"] == [dialog.owner]
    assert result["role"] == ("owner" if dialog.owner == 1 else "member")
    time = body["time"]
    assert time["operating"] == 0
    assert time["operating_reset_at"] == time["start"] + 600
    assert time["duration"] == pytest.approx(time["finish"] - time["start"])


async def test_legacy_2024_answer(http: aiohttp.ClientSession) -> None:
    example = load_example("imopenlines.dialog.get__legacy2024_200_success.json")
    async with FakePortal(dialogs=5, legacy_2024=True) as portal:
        status, body = await call(http, portal.webhook_url + DIALOG_GET, {"CHAT_ID": 2})
        assert status == 200
        assert list(body) == ["result"]
        assert len(body["result"]) == 16
        assert shape(body["result"]) == shape(example["result"])
        assert body["result"]["dialog_id"] is None
        assert body["result"]["entity_data_1"].endswith("|0|")
        status, body = await call(http, portal.webhook_url + DIALOG_GET, {})
        assert status == 400
        assert body == load_example("imopenlines.dialog.get__legacy2024_DIALOG_ID_EMPTY.json")
        assert await call(http, portal.webhook_url + DIALOG_GET, {"CHAT_ID": 77}) == (
            400,
            ACCESS_ERROR,
        )


def _identifiers(dialog: FakeDialog) -> list[dict[str, Any]]:
    return [
        {"CHAT_ID": dialog.chat_id},
        {"CHAT_ID": str(dialog.chat_id)},
        {"CHAT_ID": f"{dialog.chat_id}abc"},
        {"CHAT_ID": f" {dialog.chat_id}.9"},
        {"DIALOG_ID": dialog.dialog_id},
        {"DIALOG_ID": dialog.dialog_id.upper()},
        {"SESSION_ID": dialog.session_id},
        {"SESSION_ID": str(dialog.session_id)},
        {"USER_CODE": dialog.user_code},
        {"USER_CODE": "imol|" + dialog.user_code},
    ]


async def test_all_four_identifiers_find_the_dialog(
    portal: FakePortal, http: aiohttp.ClientSession
) -> None:
    for dialog in (portal.dialogs[0], portal.dialogs[-1]):  # the last one has an odd user code
        for params in _identifiers(dialog):
            status, body = await call(http, portal.webhook_url + DIALOG_GET, params)
            assert status == 200, params
            assert body["result"]["id"] == dialog.chat_id, params


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"CHAT_ID": 999},
        {"CHAT_ID": "abc"},
        {"CHAT_ID": 0},
        {"DIALOG_ID": "1"},
        {"DIALOG_ID": 1},
        {"DIALOG_ID": "chat"},
        {"DIALOG_ID": "sg1"},
        {"DIALOG_ID": "chat1 "},
        {"SESSION_ID": 1},
        {"USER_CODE": "livechat|1"},
        {"USER_CODE": ["x"]},
        {"USER_CODE": True},
        {"USER_CODE": "IMOL|whatever"},
        {"FOO": 1},
        {"CHAT_ID": 3},
        {"DIALOG_ID": "chat3"},
    ],
)
async def test_unknown_forbidden_or_missing_dialogs_are_access_error(
    portal: FakePortal, http: aiohttp.ClientSession, params: dict[str, Any]
) -> None:
    assert await call(http, portal.webhook_url + DIALOG_GET, params) == (400, ACCESS_ERROR)


async def test_user_code_must_match_exactly(
    portal: FakePortal, http: aiohttp.ClientSession
) -> None:
    code = portal.dialogs[0].user_code
    for variant in (code.upper(), code + "|", " " + code, code.replace("|", "|", 1) + " "):
        status, _ = await call(http, portal.webhook_url + DIALOG_GET, {"USER_CODE": variant})
        assert status == 400, variant


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"CHAT_ID": 0, "DIALOG_ID": "chat2"}, None),  # CHAT_ID is present: it decides
        ({"CHAT_ID": "x", "USER_CODE": "{code2}"}, None),
        ({"DIALOG_ID": "2", "SESSION_ID": "{session2}"}, None),
        ({"SESSION_ID": 5, "USER_CODE": "{code2}"}, None),
        ({"CHAT_ID": 2, "DIALOG_ID": "chat4"}, 2),
        ({"DIALOG_ID": "chat4", "SESSION_ID": "{session2}"}, 4),
        ({"SESSION_ID": "{session2}", "USER_CODE": "{code4}"}, 2),
        ({"CHAT_ID": None, "DIALOG_ID": "chat4"}, 4),  # null is not "set" (PHP isset)
        ({"CHAT_ID": None, "DIALOG_ID": None, "SESSION_ID": None, "USER_CODE": "{code4}"}, 4),
    ],
)
async def test_first_present_key_wins(
    portal: FakePortal,
    http: aiohttp.ClientSession,
    params: dict[str, Any],
    expected: int | None,
) -> None:
    by_id = {d.chat_id: d for d in portal.dialogs}
    values = {
        "{code2}": by_id[2].user_code,
        "{code4}": by_id[4].user_code,
        "{session2}": by_id[2].session_id,
    }
    params = {k: values.get(v, v) if isinstance(v, str) else v for k, v in params.items()}
    status, body = await call(http, portal.webhook_url + DIALOG_GET, params)
    if expected is None:
        assert (status, body) == (400, ACCESS_ERROR)
    else:
        assert status == 200
        assert body["result"]["id"] == expected


@pytest.mark.parametrize(
    "params",
    [{"chat_id": 5}, {"Chat_Id": 5}, {"dialog_id": "chat5"}, {"session_ID": 100005}],
)
async def test_param_names_are_case_insensitive(
    portal: FakePortal, http: aiohttp.ClientSession, params: dict[str, Any]
) -> None:
    status, body = await call(http, portal.webhook_url + DIALOG_GET, params)
    assert status == 200
    assert body["result"]["id"] == 5


async def test_dotless_i_does_not_upper_case_to_i(
    portal: FakePortal, http: aiohttp.ClientSession
) -> None:
    # PHP's array_change_key_case is ASCII-only; Python's str.upper() maps U+0131 to "I".
    params = {"chat_\u0131d": 5}
    assert await call(http, portal.webhook_url + DIALOG_GET, params) == (400, ACCESS_ERROR)


async def test_form_multipart_and_query_encodings(
    portal: FakePortal, http: aiohttp.ClientSession
) -> None:
    dialog = portal.dialogs[-1]  # user code with & = % + space and Cyrillic
    url = portal.webhook_url + DIALOG_GET
    form = build_query({"USER_CODE": dialog.user_code})
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    attempts: list[dict[str, Any]] = [
        {"data": form, "headers": headers},
        {"data": aiohttp.FormData({"USER_CODE": dialog.user_code})},
        {"data": _multipart(dialog.user_code)},
        {"params": {"USER_CODE": dialog.user_code}},
        {"json": {"USER_CODE": dialog.user_code}},
        # the body wins over the query string, like PHP's $_REQUEST
        {"params": {"CHAT_ID": "1"}, "json": {"CHAT_ID": dialog.chat_id}},
        {"params": {"CHAT_ID": "1"}, "data": f"CHAT_ID={dialog.chat_id}", "headers": headers},
        # different names are merged: CHAT_ID from the query wins over the body's USER_CODE
        {"params": {"CHAT_ID": str(dialog.chat_id)}, "json": {"USER_CODE": "nobody"}},
    ]
    for kwargs in attempts:
        status, body = await call(http, url, **kwargs)
        assert status == 200, kwargs
        assert body["result"]["entity_id"] == dialog.user_code


def _multipart(user_code: str) -> aiohttp.MultipartWriter:
    writer = aiohttp.MultipartWriter("form-data")
    part = writer.append(user_code)
    part.set_content_disposition("form-data", name="USER_CODE")
    return writer


async def test_bracket_params_in_forms_are_nested(
    portal: FakePortal, http: aiohttp.ClientSession
) -> None:
    # CHAT_ID[0]=2 makes CHAT_ID an array; PHP (int) of a non-empty array is 1.
    status, body = await call(
        http,
        portal.webhook_url + DIALOG_GET,
        data="CHAT_ID[0]=2",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert status == 200
    assert body["result"]["id"] == 1


async def test_a_broken_json_body_is_ignored(
    portal: FakePortal, http: aiohttp.ClientSession
) -> None:
    status, body = await call(
        http,
        portal.webhook_url + DIALOG_GET + "?CHAT_ID=2",
        data="{not json",
        headers={"Content-Type": "application/json"},
    )
    assert status == 200
    assert body["result"]["id"] == 2


async def test_role_depends_on_the_caller(http: aiohttp.ClientSession) -> None:
    dialogs = [
        FakeDialog(chat_id=1, session_id=1, user_code="livechat|1|1|1", owner=7),
        FakeDialog(chat_id=2, session_id=2, user_code="livechat|1|2|2", owner=8),
    ]
    async with FakePortal(dialogs=dialogs, webhook_user_id=7) as portal:
        assert portal.webhook_url.startswith(portal.base_url + "/rest/7/")
        roles = []
        for chat_id in (1, 2):
            _, body = await call(http, portal.webhook_url + DIALOG_GET, {"CHAT_ID": chat_id})
            roles.append(body["result"]["role"])
        assert roles == ["owner", "member"]


def test_fake_dialog_validation_and_defaults() -> None:
    dialog = FakeDialog(chat_id=13, session_id=1743, user_code="livechat|1|1373|211")
    assert dialog.dialog_id == "chat13"
    assert (dialog.connector_id, dialog.line_id, dialog.guest_user_id) == ("livechat", 1, 211)
    assert dialog.name == "Guest #13 - Open Line 1"
    assert FakeDialog(chat_id=1, session_id=1, user_code="odd").line_id == 0
    for kwargs, name in (
        ({"chat_id": 0}, "chat_id"),
        ({"session_id": True}, "session_id"),
        ({"user_code": ""}, "user_code"),
        ({"message_count": -1}, "message_count"),
    ):
        base: dict[str, Any] = {"chat_id": 1, "session_id": 1, "user_code": "a|1|1|1"}
        with pytest.raises(ValueError, match=name):
            FakeDialog(**{**base, **kwargs})


def test_generated_dialogs_are_deterministic_and_unique() -> None:
    first = FakePortal(dialogs=50, seed=3).dialogs
    assert first == FakePortal(dialogs=50, seed=3).dialogs
    assert first != FakePortal(dialogs=50, seed=4).dialogs
    assert [d.chat_id for d in first] == list(range(1, 51))
    assert len({d.session_id for d in first} | {d.user_code for d in first}) == 100
    assert not {d.session_id for d in first} & {d.chat_id for d in first}


async def test_add_dialog(portal: FakePortal, http: aiohttp.ClientSession) -> None:
    new = FakeDialog(chat_id=777, session_id=7777, user_code="telegrambot|9|1|2")
    portal.add_dialog(new)
    status, body = await call(http, portal.webhook_url + DIALOG_GET, {"SESSION_ID": 7777})
    assert (status, body["result"]["id"]) == (200, 777)
    with pytest.raises(ValueError, match="user_code"):
        portal.add_dialog(FakeDialog(chat_id=778, session_id=7778, user_code=new.user_code))


async def test_muted_users_are_written_as_a_map(http: aiohttp.ClientSession) -> None:
    # Newer portals write mute_list as {user id: true}; none is the documented [].
    dialogs = [
        FakeDialog(chat_id=1, session_id=1, user_code="livechat|1|1|1", muted=(503, 27)),
        FakeDialog(chat_id=2, session_id=2, user_code="livechat|1|2|2"),
    ]
    async with FakePortal(dialogs=dialogs) as portal:
        _, muted = await call(http, portal.webhook_url + DIALOG_GET, {"CHAT_ID": 1})
        _, none = await call(http, portal.webhook_url + DIALOG_GET, {"CHAT_ID": 2})
    assert muted["result"]["mute_list"] == {"503": True, "27": True}
    assert none["result"]["mute_list"] == []


@pytest.mark.parametrize("muted", [(0,), (True,), ("503",), (-1,)])
def test_fake_dialog_muted_must_be_user_ids(muted: tuple[Any, ...]) -> None:
    with pytest.raises(ValueError, match="muted"):
        FakeDialog(chat_id=1, session_id=1, user_code="a|1|1|1", muted=muted)
