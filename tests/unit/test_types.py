"""``Dialog`` and its parts from the official examples, and the defensive parsers."""

from __future__ import annotations

import copy
import math
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import attrs
import cattrs
import pytest
from _unit_helpers import DIALOG_GET, assert_exactly, load_example, make_client, webhook_url
from aioresponses import aioresponses
from hypothesis import given, settings
from hypothesis import strategies as st

from bitrix_openlines import Dialog, DialogGet, UserCode
from bitrix_openlines._convert import converter, describe_error, structure
from bitrix_openlines.types import TimeInfo
from bitrix_openlines.types.dialog import (
    CrmBindings,
    EntityLink,
    LastMessageViews,
    Permissions,
    ReadEntry,
    Restrictions,
    SessionData,
    Viewer,
)

CURRENT = "imopenlines.dialog.get__200_success.json"
CURRENT_RU = "imopenlines.dialog.get__200_success_ru.json"
LEGACY = "imopenlines.dialog.get__legacy2024_200_success.json"
ALL_EXAMPLES = [CURRENT, CURRENT_RU, LEGACY]

CET = timezone(timedelta(hours=1))
MSK = timezone(timedelta(hours=3))
CEST = timezone(timedelta(hours=2))


async def _through_client(body: dict[str, Any]) -> Dialog:
    with aioresponses() as mocked:
        mocked.post(webhook_url(DIALOG_GET), payload=body)
        async with make_client() as client:
            return await client.get_dialog(chat_id=13)


async def _both_ways(docs: Path, name: str) -> list[Dialog]:
    body = load_example(docs, name)
    direct = structure(copy.deepcopy(body["result"]), Dialog)
    via_client = await _through_client(body)
    assert via_client == direct
    return [direct, via_client]


# -- the three doc examples --------------------------------------------------------------


@pytest.mark.parametrize("name", [CURRENT, CURRENT_RU])
async def test_current_example(docs_examples: Path, name: str) -> None:
    offset = CET if name == CURRENT else MSK
    for dialog in await _both_ways(docs_examples, name):
        assert dialog.id == 1777
        assert dialog.chat_id == 1777
        assert dialog.dialog_id == "chat1777"  # given by the portal
        assert dialog.type == "lines"
        assert dialog.owner == 27
        assert dialog.extranet is False
        assert dialog.description is None
        assert dialog.background_id is None
        assert dialog.color == "#58cc47"
        assert dialog.message_count == 104
        assert dialog.user_counter == 2
        assert dialog.last_message_id == 86313
        assert dialog.mute_list == ()
        assert dialog.manager_list == (27,)
        assert dialog.public == ""
        assert dialog.role == "owner"
        assert dialog.text_field_enabled is True
        assert dialog.is_new is False
        assert dialog.restrictions == Restrictions(
            avatar=True,
            rename=True,
            extend=True,
            call=True,
            mute=True,
            leave=True,
            leave_owner=True,
            send=True,
            user_list=True,
        )
        assert dialog.permissions == Permissions(
            manage_users_add="member",
            manage_users_delete="manager",
            manage_ui="member",
            manage_settings="owner",
            manage_messages="member",
            can_post="member",
        )
        assert dialog.entity_link == EntityLink(type="LINES", url="", id="livechat|22|1775|599")
        assert len(dialog.readed_list) == 1
        read = dialog.readed_list[0]
        assert isinstance(read, ReadEntry)
        assert (read.user_id, read.message_id, read.date) == (599, 86101, None)
        assert read.user_name == ("Guest" if name == CURRENT else "Гость")
        views = dialog.last_message_views
        assert isinstance(views, LastMessageViews)
        assert views.message_id == 86313
        assert views.count_of_viewers == 0
        assert len(views.first_viewers) == 1
        viewer = views.first_viewers[0]
        assert isinstance(viewer, Viewer)
        assert viewer.user_id == 27
        assert viewer.date == datetime(2026, 3, 16, 20, 50, 37, tzinfo=offset)
        assert viewer.date is not None
        assert viewer.date.utcoffset() == offset.utcoffset(None)
        created = dialog.date_create
        assert created is not None
        assert created.tzinfo is not None
        assert created.utcoffset() == offset.utcoffset(None)
        assert created == datetime(2026, 3, 13, 16, 50, 15, tzinfo=offset)
        assert dialog.extra == {}  # all 38 fields are known
        # entity_id and entity_data_* parsed.
        assert dialog.user_code == UserCode("livechat", 22, "1775", "599")
        assert dialog.session == SessionData(
            crm=True,
            crm_entity_type="LEAD",
            crm_entity_id=1209,
            pause=False,
            wait_action=False,
            session_id=343,
            date_create=datetime.fromtimestamp(1773682918, tz=UTC),
            line_id=0,
            block_date=None,
            block_reason="",  # the portal wrote "0": no reason
        )
        assert dialog.session_id == 343
        assert dialog.line_id == 22  # the session says 0: the line of entity_id
        assert dialog.crm == CrmBindings(lead=1209, company=0, contact=0, deal=0)
        assert dialog.silent_mode is False


def test_russian_example_keeps_cyrillic(docs_examples: Path) -> None:
    body = load_example(docs_examples, CURRENT_RU)
    dialog = structure(body["result"], Dialog)
    assert dialog.name == "Салатовый гость №17 - Документация Битрикс24"  # noqa: RUF001
    assert dialog.last_message_views is not None
    assert dialog.last_message_views.first_viewers[0].user_name == "Светлана Иванова"


async def test_legacy_2024_example(docs_examples: Path) -> None:
    for dialog in await _both_ways(docs_examples, LEGACY):
        assert dialog.id == 1364
        assert dialog.dialog_id == "chat1364"  # the portal said null: derived from id
        assert dialog.name == "Eugene Perekopsky - Priority Support"
        assert dialog.owner == 0
        assert dialog.manager_list == ()
        assert dialog.entity_id == "livechat|1|1363|203"
        assert dialog.user_code == UserCode("livechat", 1, "1363", "203")
        assert dialog.date_create == datetime(2020, 5, 12, 17, 40, 55, tzinfo=CEST)
        # The fields of the 38-field object are absent and default.
        assert dialog.restrictions is None
        assert dialog.permissions is None
        assert dialog.entity_link is None
        assert dialog.readed_list == ()
        assert dialog.last_message_views is None
        assert dialog.parent_chat_id is None
        assert dialog.extra == {}
        session = dialog.session
        assert session.crm is False
        assert session.crm_entity_type == "NONE"
        assert session.session_id == 0
        assert dialog.session_id is None
        assert session.date_create == datetime.fromtimestamp(1591872180, tz=UTC)
        assert session.line_id == 1
        assert session.block_reason == ""
        assert dialog.crm == CrmBindings()
        assert dialog.silent_mode is False


async def test_legacy_example_has_no_time_block(docs_examples: Path) -> None:
    with aioresponses() as mocked:
        mocked.post(webhook_url(DIALOG_GET), payload=load_example(docs_examples, LEGACY))
        async with make_client() as client:
            response = await client.call_response(DialogGet(chat_id=1364))
    assert response.time is None
    assert response.result.id == 1364


def test_extra_keeps_unknown_fields(docs_examples: Path) -> None:
    result = load_example(docs_examples, CURRENT)["result"]
    result["ai_provider"] = None
    result["new_field_2027"] = {"nested": [1, 2]}
    dialog = structure(result, Dialog)
    assert dialog.extra == {"ai_provider": None, "new_field_2027": {"nested": [1, 2]}}
    assert dialog.id == 1777


def test_dialog_id_given_vs_derived() -> None:
    assert structure({"id": 29, "dialog_id": "chat29"}, Dialog).dialog_id == "chat29"
    assert structure({"id": 29, "dialog_id": None}, Dialog).dialog_id == "chat29"
    assert structure({"id": 29, "dialog_id": ""}, Dialog).dialog_id == "chat29"
    assert structure({"id": 29}, Dialog).dialog_id == "chat29"
    assert Dialog(id=5).dialog_id == "chat5"


# -- the time block ----------------------------------------------------------------------


def test_time_block_with_float_start(docs_examples: Path) -> None:
    block = load_example(docs_examples, "time_block__data-types.json")["time"]
    info = TimeInfo.from_wire(block)
    assert info == TimeInfo(
        start=1757424671.509725,
        finish=1757424672.203906,
        duration=0.694180965423584,
        processing=0.6726489067077637,
        date_start="2025-09-09T16:31:11+03:00",
        date_finish="2025-09-09T16:31:12+03:00",
        operating=0.6726338863372803,
        operating_reset_at=1757425271.0,
    )


def test_time_block_with_int_start(docs_examples: Path) -> None:
    info = TimeInfo.from_wire(load_example(docs_examples, CURRENT)["time"])
    assert info is not None
    assert info.start == 1773683678.0
    assert isinstance(info.start, float)
    assert info.processing == 0.0
    assert isinstance(info.processing, float)
    assert info.operating_reset_at == 1773684278.0
    assert info.operating == 0.0


@pytest.mark.parametrize("value", [None, [], "x", 5])
def test_time_block_that_is_not_an_object(value: Any) -> None:
    assert TimeInfo.from_wire(value) is None


def test_malformed_time_block_is_dropped_not_fatal() -> None:
    assert TimeInfo.from_wire({"start": "soon"}) is None


@pytest.mark.parametrize(
    ("time_source", "start"),
    [("time_block__data-types.json", 1757424671.509725), (CURRENT, 1773683678.0)],
)
async def test_time_reachable_through_client_call(
    docs_examples: Path, time_source: str, start: float
) -> None:
    body = load_example(docs_examples, CURRENT)
    body["time"] = load_example(docs_examples, time_source)["time"]
    with aioresponses() as mocked:
        mocked.post(webhook_url(DIALOG_GET), payload=body)
        async with make_client() as client:
            response = await client.call_response(DialogGet(chat_id=1777))
    assert response.time is not None
    assert response.time.start == start
    assert isinstance(response.time.start, float)
    assert response.result.id == 1777
    assert response.total is None
    assert response.next is None


# -- SessionData (entity_data_1) ---------------------------------------------------------


def test_session_data_ten_fields() -> None:
    data = SessionData.parse("Y|DEAL|77|Y|Y|343|1773682918|22|1773690000|SPAM")
    assert data == SessionData(
        crm=True,
        crm_entity_type="DEAL",
        crm_entity_id=77,
        pause=True,
        wait_action=True,
        session_id=343,
        date_create=datetime.fromtimestamp(1773682918, tz=UTC),
        line_id=22,
        block_date=datetime.fromtimestamp(1773690000, tz=UTC),
        block_reason="SPAM",
    )


def test_session_data_eight_fields() -> None:
    data = SessionData.parse("Y|LEAD|1209|N|N|343|1773682918|22")
    assert (data.crm_entity_id, data.session_id, data.line_id) == (1209, 343, 22)
    assert data.block_date is None
    assert data.block_reason == ""


def test_session_data_six_fields() -> None:
    data = SessionData.parse("N|NONE|0|N|Y|12")
    assert data.session_id == 12
    assert data.wait_action is True
    assert data.date_create is None
    assert data.line_id == 0


@pytest.mark.parametrize("raw", ["", None])
def test_session_data_empty(raw: str | None) -> None:
    assert SessionData.parse(raw) == SessionData()
    assert SessionData().crm_entity_type == "NONE"


@pytest.mark.parametrize(
    "raw",
    [
        "garbage",
        "|||||||||",
        "Y|LEAD|abc|X|?|no|never|-|x|",
        "Y|LEAD|--5|N|N|1|1|1|1|1",
        "Y|LEAD|5|N|N|²|1|1|1|1",
        "Y|LEAD|5|N|N|1|99999999999999999999|1|1|1",
        "Y|LEAD|5|N|N|1|1773682918|1|-99999999999999|1",
        "Y|LEAD|5|N|N|1|1773682918|1|0|0|extra|fields|here",
    ],
)
def test_session_data_garbage_never_raises(raw: str) -> None:
    data = SessionData.parse(raw)
    assert isinstance(data, SessionData)


def test_session_data_garbage_gets_defaults() -> None:
    data = SessionData.parse("Y|LEAD|abc|X|?|no|never|-|x|")
    assert data.crm is True
    assert data.crm_entity_id == 0
    assert data.pause is False
    assert data.session_id == 0
    assert data.date_create is None
    assert data.block_date is None


@given(st.text())
def test_session_data_parse_never_raises(raw: str) -> None:
    assert isinstance(SessionData.parse(raw), SessionData)


@given(st.lists(st.integers(min_value=-(10**25), max_value=10**25), max_size=12))
def test_session_data_parse_never_raises_on_numbers(numbers: list[int]) -> None:
    assert isinstance(SessionData.parse("|".join(map(str, numbers))), SessionData)


# -- CrmBindings (entity_data_2) ---------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("LEAD|1209|COMPANY|0|CONTACT|0|DEAL|0", CrmBindings(lead=1209)),
        ("LEAD|1|COMPANY|2|CONTACT|3|DEAL|4", CrmBindings(lead=1, company=2, contact=3, deal=4)),
        ("DEAL|7|LEAD|3", CrmBindings(lead=3, deal=7)),
        ("deal|7", CrmBindings(deal=7)),
        ("FOO|1|LEAD|2", CrmBindings(lead=2)),
        ("LEAD|1|COMPANY", CrmBindings(lead=1)),
        ("LEAD|x|DEAL|5", CrmBindings(deal=5)),
        ("", CrmBindings()),
        (None, CrmBindings()),
        ("garbage", CrmBindings()),
    ],
)
def test_crm_bindings(raw: str | None, expected: CrmBindings) -> None:
    assert CrmBindings.parse(raw) == expected


@given(st.text())
def test_crm_bindings_parse_never_raises(raw: str) -> None:
    assert isinstance(CrmBindings.parse(raw), CrmBindings)


# -- UserCode ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("livechat|1|1373|211", UserCode("livechat", 1, "1373", "211")),
        ("imol|livechat|1|1373|211", UserCode("livechat", 1, "1373", "211")),
        ("telegrambot|22|-100123|abc_def", UserCode("telegrambot", 22, "-100123", "abc_def")),
        ("livechat|22|1775|599", UserCode("livechat", 22, "1775", "599")),
    ],
)
def test_user_code_valid(text: str, expected: UserCode) -> None:
    assert UserCode.parse(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "livechat|1|1373|211",
        "telegrambot|22|-100123|abc_def",
        "openlines_whatsapp|3|79001234567|79001234567",
    ],
)
def test_user_code_str_round_trip(text: str) -> None:
    assert str(UserCode.parse(text)) == text
    assert str(UserCode.parse("imol|" + text)) == text  # the prefix is not part of the code
    assert UserCode.parse(str(UserCode.parse(text))) == UserCode.parse(text)


@pytest.mark.parametrize(
    "text",
    [
        "livechat|1|1373",
        "livechat|1|1373|211|9",
        "imol|livechat|1|1373",
        "imol|livechat|1|1373|211|9",
        "",
        "livechat",
        "|1|1373|211",
        "livechat||1373|211",
        "livechat|1||211",
        "livechat|1|1373|",
        "livechat| |1373|211",
        "livechat|one|1373|211",
        "livechat|-1|1373|211",
        "livechat|1.5|1373|211",
        "livechat|²|1373|211",
    ],
)
def test_user_code_invalid(text: str) -> None:
    with pytest.raises(ValueError, match="user_code"):
        UserCode.parse(text)


def test_user_code_names_the_given_parameter() -> None:
    with pytest.raises(ValueError, match="entity_id"):
        UserCode.parse("a|b", parameter="entity_id")


@pytest.mark.parametrize("value", [5, None, b"livechat|1|2|3", ["livechat", 1, 2, 3]])
def test_user_code_not_a_string(value: Any) -> None:
    with pytest.raises(TypeError, match="user_code"):
        UserCode.parse(value)


_PART = st.text(
    alphabet=st.characters(blacklist_characters="|", blacklist_categories=["Cs"]), min_size=1
).filter(lambda s: s.strip() != "")


@given(
    connector=_PART.filter(lambda s: s != "imol"),
    line=st.integers(min_value=0, max_value=10**9),
    chat=_PART,
    user=_PART,
)
def test_user_code_round_trip_property(connector: str, line: int, chat: str, user: str) -> None:
    text = f"{connector}|{line}|{chat}|{user}"
    code = UserCode.parse(text)
    assert code == UserCode(connector, line, chat, user)
    assert str(code) == text


def test_dialog_user_code_is_none_when_entity_id_is_not_one() -> None:
    assert Dialog(id=1, entity_id="not a code").user_code is None
    assert Dialog(id=1, entity_id=None).user_code is None


# -- defensive structuring ---------------------------------------------------------------


def test_php_empty_arrays_stand_for_missing_objects() -> None:
    dialog = structure(
        {
            "id": 1,
            "last_message_views": [],
            "restrictions": [],
            "permissions": [],
            "entity_link": [],
            "readed_list": [],
            "manager_list": [],
            "mute_list": [],
        },
        Dialog,
    )
    assert dialog.last_message_views is None
    assert dialog.restrictions is None
    assert dialog.permissions is None
    assert dialog.entity_link is None
    assert dialog.readed_list == ()
    assert dialog.manager_list == ()


def test_null_objects_and_lists() -> None:
    dialog = structure(
        {"id": 1, "restrictions": None, "manager_list": None, "readed_list": None}, Dialog
    )
    assert dialog.restrictions is None
    assert dialog.manager_list == ()
    assert dialog.readed_list == ()


@pytest.mark.parametrize(
    ("wire", "expected"),
    [("Y", True), ("N", False), ("y", True), ("n", False), (1, True), (0, False), ("", False)],
)
def test_y_n_flags(wire: Any, expected: bool) -> None:
    dialog = structure(
        {
            "id": 1,
            "extranet": wire,
            "is_new": wire,
            "text_field_enabled": wire,
            "restrictions": {"avatar": wire, "send": wire},
        },
        Dialog,
    )
    assert dialog.extranet is expected
    assert dialog.is_new is expected
    assert dialog.text_field_enabled is expected
    assert dialog.restrictions == Restrictions(avatar=expected, send=expected)


def test_digit_strings_for_ints() -> None:
    dialog = structure(
        {
            "id": "1777",
            "owner": "27",
            "counter": " 3 ",
            "manager_list": ["27", 28],
            "readed_list": [{"user_id": "599", "message_id": "86101", "date": None}],
            "last_message_views": {
                "message_id": "86313",
                "first_viewers": [{"user_id": "27"}],
                "count_of_viewers": "1",
            },
        },
        Dialog,
    )
    assert dialog.id == 1777
    assert dialog.owner == 27
    assert dialog.counter == 3
    assert dialog.manager_list == (27, 28)
    assert dialog.readed_list == (ReadEntry(user_id=599, message_id=86101),)
    assert dialog.last_message_views == LastMessageViews(
        message_id=86313, first_viewers=(Viewer(user_id=27),), count_of_viewers=1
    )


@pytest.mark.parametrize("value", [29.5, "--5", "²", "1e3", "", "0x1F", True])
def test_ints_refuse_what_is_not_an_integer(value: Any) -> None:
    assert structure({"id": 29.0}, Dialog).id == 29
    with pytest.raises(cattrs.BaseValidationError) as caught:
        structure({"id": value}, Dialog)
    assert describe_error(caught.value).startswith("$.id: expected an integer, got ")
    with pytest.raises(TypeError, match="expected an integer"):
        structure(value, int)


@pytest.mark.parametrize("empty", ["", None, False])
def test_empty_dates(empty: Any) -> None:
    dialog = structure(
        {
            "id": 1,
            "date_create": empty,
            "readed_list": [{"user_id": 5, "date": empty}],
            "last_message_views": {"first_viewers": [{"user_id": 5, "date": empty}]},
        },
        Dialog,
    )
    assert dialog.date_create is None
    assert dialog.readed_list[0].date is None
    assert dialog.last_message_views is not None
    assert dialog.last_message_views.first_viewers[0].date is None


def test_naive_date_is_read_as_utc() -> None:
    dialog = structure({"id": 1, "date_create": "2026-03-13T16:50:15"}, Dialog)
    assert dialog.date_create == datetime(2026, 3, 13, 16, 50, 15, tzinfo=UTC)


def test_php_list_as_object_takes_its_values() -> None:
    dialog = structure(
        {"id": 1, "manager_list": {"3": 27, "7": 28}, "readed_list": {"1": {"user_id": 5}}},
        Dialog,
    )
    assert dialog.manager_list == (27, 28)
    assert dialog.readed_list == (ReadEntry(user_id=5),)


def test_public_may_be_an_object() -> None:
    public = {"code": "abc", "link": "https://portal.bitrix24.com/online/abc"}
    assert structure({"id": 1, "public": public}, Dialog).public == public


def test_numbers_for_strings() -> None:
    dialog = structure({"id": 1, "name": 42, "background_id": 7}, Dialog)
    assert dialog.name == "42"
    assert dialog.background_id == "7"


@pytest.mark.parametrize(
    "patch",
    [
        {"restrictions": "all"},
        {"permissions": 5},
        {"entity_link": "LINES"},
        {"last_message_views": "none"},
        {"readed_list": ["599"]},
        {"extranet": "maybe"},
        {"id": True},
    ],
)
def test_garbage_is_refused(patch: dict[str, Any]) -> None:
    with pytest.raises(cattrs.BaseValidationError) as caught:
        structure({"id": 1, **patch}, Dialog)
    # The path that did not fit is named, then the cause.
    assert describe_error(caught.value).startswith(f"$.{next(iter(patch))}")


_WIRE_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    st.text(max_size=12),
    st.sampled_from(["1773683678", "0.25", "1e3", " 7 ", "inf", "", "x"]),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
_TIME_KEYS = (
    "start",
    "finish",
    "duration",
    "processing",
    "date_start",
    "date_finish",
    "operating",
    "operating_reset_at",
    "extra_key",
)


def _with_the_converter(block: Any) -> TimeInfo | None:
    # The reference: the one converter's own structuring of TimeInfo (its hooks).
    try:
        return converter.structure(block, TimeInfo)
    except Exception:
        return None


@given(st.dictionaries(st.sampled_from(_TIME_KEYS), _WIRE_VALUES, max_size=9))
@settings(max_examples=400, deadline=None)
def test_the_fast_time_reader_agrees_with_the_converter(block: dict[str, Any]) -> None:
    assert _comparable(TimeInfo.from_wire(block)) == _comparable(_with_the_converter(block))


def _comparable(info: TimeInfo | None) -> tuple[Any, ...] | None:
    # A text such as "NAN" reads as nan on both sides, and nan != nan: compared as a mark.
    if info is None:
        return None
    return tuple(
        "nan" if isinstance(v, float) and math.isnan(v) else v for v in attrs.astuple(info)
    )


def test_a_nan_text_in_a_time_block_reads_alike_on_both_readers() -> None:
    # Found by the property test above (CI, 2026-11-27): {"start": "NAN"}.
    block = {"start": "NAN"}
    fast, reference = TimeInfo.from_wire(block), _with_the_converter(block)
    assert fast is not None
    assert reference is not None
    assert math.isnan(fast.start or 0.0)
    assert math.isnan(reference.start or 0.0)
    assert _comparable(fast) == _comparable(reference)


def test_time_info_from_wire_is_exactly_a_frozen_time_info() -> None:
    block = {"start": 1795806457, "finish": 1795806457.5, "duration": 0.5, "processing": 0}
    info = TimeInfo.from_wire(block)
    expected = TimeInfo(start=1795806457.0, finish=1795806457.5, duration=0.5, processing=0.0)
    assert_exactly(info, expected)
    assert info is not None
    assert hash(info) == hash(copy.deepcopy(info))
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        info.start = 1.0  # type: ignore[misc]


def test_time_info_from_wire_of_a_subclass_builds_the_subclass() -> None:
    @attrs.frozen(slots=True)
    class Timed(TimeInfo):
        pass

    info = Timed.from_wire({"start": 1, "finish": 2})
    assert type(info) is Timed
    assert info == Timed(start=1.0, finish=2.0)
