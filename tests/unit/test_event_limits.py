"""Hostile event bodies: bounded, parsed in linear time, and only ever an ``EventError``.

Anyone who knows a handler's URL can post to it, and an event is parsed before it can be
verified. These tests assert the decisions: what is refused past each cap (and that the
message names the cap and never quotes the body), what just under the caps parses to,
and how much work a parse does (counted, never timed: the times are in
``benchmarks/hostile_input.py``).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from multidict import MultiDict

from bitrix_openlines import parse_event, verify_event, wire
from bitrix_openlines.errors import EventError, EventVerificationError
from bitrix_openlines.events import (
    EventAuth,
    EventLimits,
    GenericEvent,
    OpenLineMessageEvent,
    SessionEvent,
)
from bitrix_openlines.wire import parse_form, parse_form_pairs

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
TOKEN = "51856fefc120afa4b628cc82d3935cce"
# Planted in refused bodies: no error text may quote it.
SECRET = "s6p6eclrvim6da22ft9ch94ekreb52lv"


def refused(body: Any, content_type: str | None = None, **limits: int) -> str:
    """Parse ``body`` expecting an EventError (never a verification error); its text."""
    with pytest.raises(EventError) as caught:
        parse_event(body, content_type, limits=EventLimits(**limits) if limits else None)
    assert not isinstance(caught.value, EventVerificationError)
    text = str(caught.value)
    assert SECRET not in text
    assert SECRET not in repr(caught.value)
    return text


# -- EventLimits ---------------------------------------------------------------------------


def test_default_limits() -> None:
    assert EventLimits() == EventLimits(max_bytes=1024 * 1024, max_fields=10_000, max_depth=64)


@pytest.mark.parametrize("name", ["max_bytes", "max_fields", "max_depth"])
@pytest.mark.parametrize(
    ("value", "error"), [(0, ValueError), (-1, ValueError), (True, TypeError), (1.5, TypeError)]
)
def test_limits_are_checked_naming_the_parameter(
    name: str, value: Any, error: type[Exception]
) -> None:
    with pytest.raises(error, match=name):
        EventLimits(**{name: value})


def test_limits_of_another_type_are_a_type_error() -> None:
    with pytest.raises(TypeError, match="limits must be an EventLimits"):
        parse_event("event=X", limits={"max_bytes": 10})  # type: ignore[arg-type]


def test_limits_are_frozen() -> None:
    limits = EventLimits()
    with pytest.raises(AttributeError):
        limits.max_bytes = 5  # type: ignore[misc]


# -- body size -----------------------------------------------------------------------------


def test_body_past_max_bytes_is_refused_before_decoding() -> None:
    body = f"event=X&auth[application_token]={SECRET}&data[a]=".encode() + b"x" * 200
    assert parse_event(body, FORM, limits=EventLimits(max_bytes=len(body))).name == "X"
    text = refused(body + b"y", FORM, max_bytes=len(body))
    assert f"larger than {len(body):,} bytes" in text
    assert "max_bytes" in text
    # Bytes past the cap are not even decoded: an invalid tail does not matter.
    assert "max_bytes" in refused(body + b"\xff", FORM, max_bytes=len(body))
    for buffer in (bytearray(body + b"y"), memoryview(body + b"y")):
        assert f"({len(body) + 1:,} bytes)" in refused(buffer, FORM, max_bytes=len(body))


def test_default_max_bytes_is_one_mib() -> None:
    body = b"event=X&data[a]=" + b"x" * (1024 * 1024 - 16)
    assert len(body) == 1024 * 1024
    assert parse_event(body).data == {"a": "x" * (1024 * 1024 - 16)}
    assert "1,048,576 bytes" in refused(body + b"x")


def test_a_str_body_counts_its_utf8_bytes() -> None:
    body = "event=X&data[a]=" + "Ю" * 50  # 16 + 100 bytes
    assert parse_event(body, limits=EventLimits(max_bytes=116)).data == {"a": "Ю" * 50}
    assert "(117 bytes)" in refused(body + "x", max_bytes=116)
    assert "max_bytes" in refused("x" * 200, max_bytes=100)


def test_json_body_past_max_bytes_is_refused() -> None:
    body = json.dumps({"event": "X", "auth": {"application_token": SECRET}})
    assert "max_bytes" in refused(body, JSON, max_bytes=len(body) - 1)


# -- field count ---------------------------------------------------------------------------


def test_form_past_max_fields_is_refused() -> None:
    pairs = ["event=X", f"auth[application_token]={SECRET}"] + [f"data[k{i}]=v" for i in range(8)]
    body = "&".join(pairs)
    assert len(parse_event(body, limits=EventLimits(max_fields=10)).data) == 8
    text = refused(body + "&data[more]=1", max_fields=10)
    assert "more than 10 fields (max_fields)" in text
    # Empty pieces ("&&") are not fields.
    assert parse_event(body + "&&&", limits=EventLimits(max_fields=10)).name == "X"


def test_flat_form_mapping_past_max_fields_is_refused() -> None:
    flat = MultiDict([("event", "X"), ("data[a][]", "1"), ("data[a][]", "2")])
    assert parse_event(flat, limits=EventLimits(max_fields=3)).data == {"a": {"0": "1", "1": "2"}}
    flat.add("data[a][]", "3")
    assert "max_fields" in refused(flat, max_fields=3)


def test_json_and_mapping_past_max_fields_are_refused() -> None:
    event = {"event": "X", "data": {"list": list(range(7)), "empty": {}}, "ts": 5}
    # event + 7 numbers + ts: 9 values (an empty object is no value).
    assert parse_event(json.dumps(event), limits=EventLimits(max_fields=9)).ts == 5
    assert "more than 8 values (max_fields)" in refused(json.dumps(event), max_fields=8)
    assert parse_event(event, limits=EventLimits(max_fields=9)).ts == 5
    assert "max_fields" in refused(event, max_fields=8)


def test_default_max_fields_is_ten_thousand() -> None:
    body = "event=X&" + "&".join(f"data[]={i}" for i in range(9_999))
    data = parse_event(body).data
    assert len(data) == 9_999
    assert data["9998"] == "9998"
    assert "more than 10,000 fields" in refused(body + "&data[]=x")
    wide = {"event": "X", "data": [0] * 10_000}
    assert "more than 10,000 values" in refused(json.dumps(wide), JSON)


# -- nesting depth -------------------------------------------------------------------------


def nested_form(levels: int) -> str:
    return "event=X&data" + "".join(f"[k{i}]" for i in range(levels)) + "=leaf"


def nested_json(levels: int) -> str:
    """``levels`` objects below the top-level one (as deep as ``nested_form(levels)``)."""
    value: Any = "leaf"
    for i in reversed(range(levels)):
        value = {f"k{i}": value}
    return json.dumps({"event": "X", "data": value})


def test_form_depth_up_to_max_depth_parses() -> None:
    node: Any = parse_event(nested_form(64)).data
    for i in range(64):
        node = node[f"k{i}"]
    assert node == "leaf"
    text = refused(nested_form(65))
    assert "deeper than 64 levels (max_depth)" in text
    assert "k64" not in text


def test_json_and_mapping_depth_match_the_form_depth() -> None:
    for levels in (3, 64):
        as_form = parse_event(nested_form(levels))
        assert parse_event(nested_json(levels)) == as_form
        assert parse_event(json.loads(nested_json(levels))) == as_form
    assert "deeper than 64 levels (max_depth)" in refused(nested_json(65))
    assert "max_depth" in refused(json.loads(nested_json(65)))
    # Lists count as levels too.
    assert "max_depth" in refused('{"event": "X", "data": [[[1]]]}', max_depth=2)
    assert parse_event('{"event": "X", "data": [[1]]}', limits=EventLimits(max_depth=2))


def test_custom_max_depth() -> None:
    limits = EventLimits(max_depth=3)
    assert parse_event(nested_form(3), limits=limits).data == {"k0": {"k1": {"k2": "leaf"}}}
    assert "deeper than 3 levels" in refused(nested_form(4), max_depth=3)
    assert "deeper than 3 levels" in refused(nested_json(4), max_depth=3)


def test_json_nested_past_the_recursion_limit_is_an_event_error() -> None:
    body = '{"event": "X", "data": ' + "[" * 50_000 + "]" * 50_000 + "}"
    assert "max_depth" in refused(body)
    assert "max_depth" in refused(body, JSON, max_depth=100_000)


def test_a_deep_name_is_refused_at_the_cap() -> None:
    # A 300 KB name of brackets: refused at the 65th, whatever follows.
    name = "data" + "[x]" * 100_000
    with pytest.raises(EventError, match="max_depth"):
        parse_form_pairs([(name, "1")])
    with pytest.raises(EventError, match="max_depth"):
        parse_form_pairs([("data[a][b][c]", "1")], max_depth=2)
    assert parse_form_pairs([("data[a][b]", "1")], max_depth=2) == {"data": {"a": {"b": "1"}}}


def test_a_cyclic_mapping_is_refused_at_the_depth_cap() -> None:
    data: dict[str, Any] = {}
    data["self"] = data
    assert "max_depth" in refused({"event": "X", "data": data})


# -- linear time: counted --------------------------------------------------------------------


def count_key_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record every array key the form parser reads as a PHP integer."""
    reads: list[str] = []
    real = wire._php_int

    def counting(key: str) -> int | None:
        reads.append(key)
        return real(key)

    monkeypatch.setattr(wire, "_php_int", counting)
    return reads


@pytest.mark.parametrize("appends", [1_000, 9_000])
def test_appends_read_each_key_once(monkeypatch: pytest.MonkeyPatch, appends: int) -> None:
    """``data[]=x`` n times: n key reads, not the n**2/2 of a scan per append."""
    reads = count_key_reads(monkeypatch)
    table = parse_form("&".join(["data[]=x"] * appends))
    assert list(table["data"]) == [str(i) for i in range(appends)]
    assert len(reads) == appends


def test_an_append_after_explicit_keys_scans_them_once(monkeypatch: pytest.MonkeyPatch) -> None:
    reads = count_key_reads(monkeypatch)
    explicit = [f"a[{i * 2}]=x" for i in range(500)]
    table = parse_form("&".join(explicit + ["a[]=y"] * 500))
    assert list(table["a"])[500:] == [str(i) for i in range(999, 1499)]
    # One scan of the 500 explicit keys at the first append, then one read per append.
    assert len(reads) == 500 + 500


def test_explicit_keys_after_appends_move_the_next_index() -> None:
    table = parse_form("a[]=0&a[10]=x&a[]=11&a[b]=s&a[3]=y&a[]=12&a[-20]=n&a[]=13")
    assert table == {
        "a": {
            "0": "0",
            "10": "x",
            "11": "11",
            "b": "s",
            "3": "y",
            "12": "12",
            "-20": "n",
            "13": "13",
        }
    }


def test_php_integer_keys() -> None:
    # "05", "-0", "+1" and numbers past 64 bits are string keys: they move no index.
    body = "a[05]=1&a[-0]=2&a[%2B1]=3&a[99999999999999999999]=4&a[]=5"
    assert parse_form(body) == {
        "a": {"05": "1", "-0": "2", "+1": "3", "99999999999999999999": "4", "0": "5"}
    }
    # Only negative keys: the next is one above the largest (PHP 8.3).
    assert parse_form("a[-5]=x&a[]=y") == {"a": {"-5": "x", "-4": "y"}}
    # PHP drops an append past PHP_INT_MAX.
    top = str(2**63 - 1)
    assert parse_form(f"a[{top}]=x&a[]=y") == {"a": {top: "x"}}


def test_an_array_replaced_by_a_string_starts_over() -> None:
    # The old array's next index must not leak into the new one.
    assert parse_form("a[]=1&a[]=2&a=s&a[]=3") == {"a": {"0": "3"}}


def test_a_long_unmatched_name_is_one_plain_name() -> None:
    name = "a" + "[" * 50_000
    assert parse_form(f"{name}=1") == {"a" + "_" * 50_000: "1"}


# -- item 2: nothing but EventError --------------------------------------------------------


def test_lone_surrogate_in_a_json_token_is_an_event_error() -> None:
    body = '{"event": "X", "auth": {"application_token": "\\ud800' + SECRET + '"}}'
    assert "lone surrogate" in refused(body)
    assert "lone surrogate" in refused(body, JSON)
    assert "lone surrogate" in refused(json.loads(body))
    # In a key, in data, in a str body.
    assert "lone surrogate" in refused('{"event": "X", "data": {"\\udfff": 1}}')
    assert "lone surrogate" in refused("event=X&data[a]=\ud800")
    # A pair is no lone surrogate: it is one character.
    event = parse_event('{"event": "X", "data": {"a": "\\ud83d\\ude00"}}')
    assert event.data == {"a": "\U0001f600"}


def test_verify_event_compares_any_token_without_error() -> None:
    # An event built by hand (not parsed) may hold anything; verifying it never raises
    # anything but EventVerificationError.
    event = GenericEvent(name="X", auth=EventAuth(application_token="\ud800"))
    with pytest.raises(EventVerificationError, match="does not match"):
        verify_event(event, TOKEN)
    assert verify_event(event, "\ud800") is event
    with pytest.raises(EventVerificationError):
        verify_event(GenericEvent(name="X", auth=EventAuth(application_token=TOKEN)), "\udc00")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ("event=X&ts=" + "1" * 5000, "ts"),
        ('{"event": "X", "ts": "' + "1" * 5000 + '"}', "ts"),
        ('{"event": "X", "ts": 1e300}', "ts"),
        (f'{{"event": "X", "ts": {2**63}}}', "ts"),
        (f"event=X&ts=-{2**63 + 1}", "ts"),
        ("event=X&event_handler_id=" + "9" * 30, "event_handler_id"),
        ("event=X&eventId=" + "9" * 30, "eventId"),
        ("event=X&auth[expires_in]=" + "9" * 30, "auth[expires_in]"),
        ("event=ONOPENLINEMESSAGEADD&data[DATA][0][chat][id]=" + "9" * 20, "chat[id]"),
        ("event=ONOPENLINEMESSAGEADD&data[DATA][0][message][id]=" + "9" * 20, "message[id]"),
        (
            "event=ONOPENLINEMESSAGEADD&data[DATA][0][message][user_id]=" + "9" * 20,
            "message[user_id]",
        ),
        ("event=ONSESSIONSTART&data[DATA][0][session][id]=" + "9" * 20, "session[id]"),
        ("event=ONSESSIONSTART&data[DATA][0][user][id]=" + "9" * 20, "user[id]"),
        ("event=ONSESSIONSTART&data[DATA][0][line][id]=" + "9" * 20, "line[id]"),
        (
            "event=ONSESSIONSTART&data[DATA][0][connector][line_id]=" + "9" * 20,
            "connector[line_id]",
        ),
    ],
)
def test_a_number_past_64_bits_is_an_event_error_naming_it(body: str, field: str) -> None:
    text = refused(body)
    assert f"the event's {field} is a number past the 64-bit integers" in text
    assert "99999" not in text
    assert "11111" not in text


def test_numbers_up_to_64_bits_are_read() -> None:
    top, bottom = 2**63 - 1, -(2**63)
    assert parse_event(f"event=X&ts={top}").ts == top
    assert parse_event(f"event=X&ts={bottom}").ts == bottom
    assert parse_event(f"event=X&ts=+{'0' * 5000}7").ts == 7  # leading zeros are no digits
    assert parse_event(f'{{"event": "X", "ts": {top}}}').ts == top
    assert parse_event('{"event": "X", "ts": 1e18}').ts == 10**18
    # A 5,000-digit JSON number is no JSON Python reads: still an EventError.
    assert "not valid JSON" in refused('{"event": "X", "ts": ' + "1" * 5000 + "}")
    # Junk is still junk: a default, not an error.
    assert parse_event('{"event": "X", "ts": NaN}').ts is None
    assert parse_event("event=X&ts=1e5").ts is None


def test_a_list_key_past_64_bits_makes_no_list() -> None:
    huge = "1" * 5000
    event = parse_event(f"event=ONOPENLINEMESSAGEADD&data[DATA][{huge}][chat][id]=5")
    assert isinstance(event, OpenLineMessageEvent)
    # Not a list keyed by position: one entry, the map itself (no chat at its top).
    assert [item.chat.id for item in event.items] == [0]
    event = parse_event("event=ONSESSIONSTART&data[DATA][1][chat][id]=6&data[DATA][0][chat][id]=5")
    assert isinstance(event, SessionEvent)
    assert [item.chat.id for item in event.items] == [5, 6]


def test_a_huge_int_in_a_mapping_is_no_text() -> None:
    event = parse_event(
        {"event": "ONSESSIONSTART", "data": {"DATA": [{"connector": {"chat_id": 10**5000}}]}}
    )
    assert isinstance(event, SessionEvent)
    assert event.items[0].connector.chat_id == ""


# -- just under the caps: the right structure ----------------------------------------------


def test_a_large_real_looking_message_parses() -> None:
    """An ONIMBOTMESSAGEADD-sized body: a 20,000-character message and 300 attach fields."""
    text = "Привет, мир! " * 1540  # 20,020 characters, 6 bytes each percent-encoded
    fields = [
        "event=ONOPENLINEMESSAGEADD",
        "data[DATA][0][chat][id]=10585",
        "data[DATA][0][message][id]=77",
        "data[DATA][0][message][text]=" + "".join(f"%{b:02X}" for b in text.encode()),
        f"auth[application_token]={TOKEN}",
    ]
    for block in range(100):
        prefix = f"data[DATA][0][message][attach][{block}][GRID][0]"
        fields += [
            f"{prefix}[NAME]=n{block}",
            f"{prefix}[VALUE]=v{block}",
            f"{prefix}[DISPLAY]=LINE",
        ]
    body = "&".join(fields).encode()
    assert 100_000 < len(body) < 1024 * 1024
    event = parse_event(body, FORM)
    assert isinstance(event, OpenLineMessageEvent)
    assert verify_event(event, TOKEN) is event
    (item,) = event.items
    assert (item.chat.id, item.message.id, item.message.text) == (10585, 77, text)
    attach = item.message.attach
    assert len(attach) == 100
    assert attach["99"] == {"GRID": {"0": {"NAME": "n99", "VALUE": "v99", "DISPLAY": "LINE"}}}
