"""Fuzz the incoming events: whatever a stranger posts, an ``Event`` or an ``EventError``.

An event is parsed before it can be verified, so its parser meets anything anyone sends
to the handler's URL. Bodies come as random bytes, as PHP forms of hostile shapes (deep
and unmatched brackets, appends, integer keys past 64 bits, invalid percent escapes,
NUL bytes, many fields) and as JSON of hostile shapes (deep nesting, lone surrogate
escapes, huge and non-finite numbers, wrong types where objects belong), under the
default limits and under small ones that the examples do cross.

What must hold, for every body and content type:

- ``parse_event`` returns an :class:`Event` or raises :class:`EventError`; nothing else
  (no ``RecursionError``, ``UnicodeEncodeError``, ``ValueError`` from ``int()``...);
- an error's text never quotes the body (a planted token never shows);
- a parsed event is within its limits: no more values than ``max_fields``, nested no
  deeper than ``max_depth`` below a top-level name, every number of 64 bits;
- everything on a parsed event works: ``repr``, its typed fields at every level (every
  number of 64 bits), ``tokens()`` of its ``auth`` and of each bot's block
  (``EventError`` at most) and ``verify_event`` (``EventVerificationError`` at most).

Event names are drawn from every event with a type of its own (Open Lines, connector,
bot and app events), so each type's reader meets hostile shapes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from multidict import MultiDict

from bitrix_openlines import parse_event, verify_event
from bitrix_openlines.errors import EventError, EventVerificationError
from bitrix_openlines.events import (
    APP_INSTALL,
    APP_UNINSTALL,
    BOT_DELETE,
    BOT_JOIN_CHAT,
    BOT_MESSAGE_EVENTS,
    CONNECTOR_DIALOG_EVENTS,
    CONNECTOR_LINE_DELETE,
    CONNECTOR_MESSAGE_EVENTS,
    CONNECTOR_STATUS_DELETE,
    MESSAGE_EVENTS,
    SESSION_EVENTS,
    ConnectorInfo,
    Event,
    EventAuth,
    EventLimits,
)

pytestmark = [pytest.mark.reliability]

FUZZ = settings(
    max_examples=200,
    deadline=None,
    derandomize=bool(os.environ.get("CI")),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Planted only where a secret goes (auth[application_token]): no error text, no repr
# may show it.
SECRET = "s6p6eclrvim6da22ft9ch94ekreb52lv"
FORM = "application/x-www-form-urlencoded"
CONTENT_TYPES = st.sampled_from(
    [None, None, FORM, FORM, FORM + "; charset=UTF-8", "application/json", "text/plain", ""]
)
SMALL = EventLimits(max_bytes=4_000, max_fields=40, max_depth=4)
LIMITS = st.sampled_from([None, None, SMALL, EventLimits(max_depth=1, max_fields=3)])
# Long digit strings, drawn lazily (a sampled_from would print them in the statistics).
HUGE_DIGITS = st.builds(lambda: "1" * 5000)
INT64 = (-(2**63), 2**63 - 1)
# Every event with a type of its own.
TYPED_NAMES = sorted(
    {
        *MESSAGE_EVENTS,
        *SESSION_EVENTS,
        *CONNECTOR_MESSAGE_EVENTS,
        *CONNECTOR_DIALOG_EVENTS,
        *BOT_MESSAGE_EVENTS,
        APP_INSTALL,
        APP_UNINSTALL,
        BOT_DELETE,
        BOT_JOIN_CHAT,
        CONNECTOR_LINE_DELETE,
        CONNECTOR_STATUS_DELETE,
    }
)


# -- what must hold --------------------------------------------------------------------------


def _measure(root: Any) -> tuple[int, int]:
    """(values, deepest container) of a decoded body; the top-level object is depth 0."""
    values, deepest = 0, 0
    stack: list[tuple[Any, int]] = [(root, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, Mapping):
            deepest = max(deepest, depth)
            stack.extend((value, depth + 1) for value in node.values())
        elif isinstance(node, list | tuple):
            deepest = max(deepest, depth)
            stack.extend((value, depth + 1) for value in node)
        else:
            values += 1
    return values, deepest


def _error_of(call: Callable[[], Any], expected: type[EventError]) -> EventError | None:
    """Run ``call``; the ``expected`` error it raised, or None (anything else escapes)."""
    try:
        call()
    except expected as error:
        return error
    return None


def check(body: Any, content_type: str | None, limits: EventLimits | None) -> Event | None:
    """Parse ``body`` and check the contract; the event, or None when it was refused."""
    parsed: list[Event] = []
    refusal = _error_of(
        lambda: parsed.append(parse_event(body, content_type, limits=limits)), EventError
    )
    if refusal is not None:
        # The statistics (--hypothesis-show-statistics) show which refusals were reached.
        event(f"refused: {str(refusal).split(' (')[0][:40]}")
        assert not isinstance(refusal, EventVerificationError)
        assert SECRET not in str(refusal) + repr(refusal)
        return None
    (parsed_event,) = parsed
    event(f"parsed: {type(parsed_event).__name__}")
    return _check_parsed(parsed_event, limits)


def _check_parsed(event: Event, limits: EventLimits | None) -> Event:
    assert isinstance(event, Event)
    bounds = limits or EventLimits()
    values, deepest = _measure(event.data)
    assert values <= bounds.max_fields
    # data is a top-level value: its containers are 1..max_depth deep from the top.
    assert deepest + 1 <= bounds.max_depth
    shown = repr(event) + str(event)
    for value in _typed_values(event):
        if isinstance(value, int) and not isinstance(value, bool):
            assert INT64[0] <= value <= INT64[1]
        elif isinstance(value, ConnectorInfo):
            shown += value.user_code
        elif isinstance(value, EventAuth):
            # The event's block, a bot's, or a bot's AUTH copy.
            shown += _tokens_shown(value)
    forged = _error_of(lambda: verify_event(event, SECRET), EventVerificationError)
    shown += str(forged)
    assert SECRET not in shown
    return event


def _tokens_shown(auth: EventAuth) -> str:
    """What ``auth.tokens()`` shows: the pair's repr, or the EventError's text."""
    tokens: list[Any] = []
    unusable = _error_of(lambda: tokens.append(auth.tokens(now=0.0)), EventError)
    return repr(auth) + str(unusable) + repr(tokens)


def _typed_values(event: Event) -> list[Any]:
    """Every typed value of ``event``: its fields, nested objects and their items."""
    values: list[Any] = []
    stack: list[Any] = [event]
    while stack:
        node = stack.pop()
        values.append(node)
        if attrs.has(type(node)):
            stack.extend(getattr(node, field.name) for field in attrs.fields(type(node)))
        elif isinstance(node, tuple):
            stack.extend(node)
    return values


# -- hostile forms ---------------------------------------------------------------------------

DIGITS = st.one_of(
    HUGE_DIGITS,
    st.integers(-(2**70), 2**70).map(str),
    st.sampled_from(["0", "-0", "05", "+1", str(2**63 - 1), str(2**63), "0" * 30 + "7"]),
)
SEGMENT = st.one_of(
    st.just("[]"),
    DIGITS.map(lambda d: f"[{d}]"),
    st.sampled_from(["[DATA]", "[0]", "[chat]", "[id]", "[message]", "[session]", "[auth]"]),
    st.sampled_from(["[BOT]", "[PARAMS]", "[USER]", "[AUTH]", "[BOT_ID]", "[MENTIONED_LIST]"]),
    st.sampled_from(["[MESSAGES]", "[im]", "[CONNECTOR]", "[LINE]", "[expires]", "[user_id]"]),
    st.text(max_size=4).map(lambda t: f"[{t}]"),
    st.sampled_from(["[", "]", "[[", "]]", "[a", "a]", "\x00", "%5B", "%5D", ".", " "]),
)
BASE = st.sampled_from(
    ["event", "data", "auth", "ts", "event_handler_id", "eventId", "", " data", "a.b", "%00"]
)
VALUE = st.one_of(
    st.text(max_size=12),
    DIGITS,
    st.sampled_from([*TYPED_NAMES, "Ю" * 3]),
    st.sampled_from(["%", "%F", "%FF", "%D0", "%ED%A0%80", "+", "%2B", "Y", "1e5", "nan"]),
)


@st.composite
def form_bodies(draw: st.DrawFn) -> str:
    pairs = []
    depths = draw(st.lists(st.integers(0, 5), max_size=30))
    if not draw(st.integers(0, 3)):
        # Now and then one deep name: just at PHP's cap, just past it, far past it.
        depths.append(draw(st.sampled_from([64, 65, 300])))
    for depth in depths:
        segments = draw(st.lists(SEGMENT, min_size=min(depth, 6), max_size=min(depth, 6)))
        # Past six, repeat a drawn segment: deep names without a huge draw.
        tail = (segments[-1] if segments else "[]") * max(0, depth - 6)
        name = draw(BASE) + "".join(segments) + tail
        pairs.append(f"{name}={draw(VALUE)}")
    if draw(st.integers(0, 4)):
        names = st.sampled_from(TYPED_NAMES)
        pairs.append(f"event={draw(st.one_of(names, names, names, VALUE))}")
    if not draw(st.integers(0, 2)):
        # A bot's block with a token pair: its tokens() and repr meet hostile shapes.
        bot = f"data[BOT][{draw(DIGITS)}]" + draw(st.sampled_from(["", "[AUTH]"]))
        endpoint = draw(st.sampled_from(["https://p.bitrix24.com/rest/", "x", ""]))
        pairs += [
            f"{bot}[access_token]=a{SECRET}",
            f"{bot}[refresh_token]=r{SECRET}",
            f"{bot}[client_endpoint]={endpoint}",
            f"{bot}[expires]={draw(DIGITS)}",
        ]
    pairs.append(f"auth[application_token]={draw(st.sampled_from([SECRET, '', 'x']))}")
    pairs = draw(st.permutations(pairs))
    # A block of appends to one array, somewhere: the shape that was quadratic.
    appends = draw(st.sampled_from([0, 0, 1, 50, 5_000, 12_000]))
    at = draw(st.integers(0, len(pairs)))
    pairs[at:at] = ["data[x][]=v"] * appends
    separator = draw(st.sampled_from(["&", "&&", "&;"]))
    return separator.join(pairs)


@FUZZ
@given(body=form_bodies(), content_type=CONTENT_TYPES, limits=LIMITS, as_bytes=st.booleans())
@example(
    body="event=X&" + "&".join(["data[]=x"] * 16_000),
    content_type=FORM,
    limits=None,
    as_bytes=True,
)
@example(
    body="event=X&data" + "[a]" * 100_000 + "=1", content_type=FORM, limits=None, as_bytes=True
)
@example(body="event=X&ts=" + "1" * 5000, content_type=None, limits=None, as_bytes=False)
def test_any_form_is_an_event_or_an_event_error(
    body: str, content_type: str | None, limits: EventLimits | None, as_bytes: bool
) -> None:
    check(body.encode("utf-8", "surrogatepass") if as_bytes else body, content_type, limits)


@FUZZ
@given(
    pairs=st.lists(st.tuples(st.text(max_size=20), st.text(max_size=10)), max_size=60),
    limits=LIMITS,
)
def test_any_flat_form_mapping_is_an_event_or_an_event_error(
    pairs: list[tuple[str, str]], limits: EventLimits | None
) -> None:
    flat = MultiDict([("event", "X"), ("data[a][]", "1"), *pairs])
    check(flat, None, limits)


# -- hostile JSON ----------------------------------------------------------------------------

PLAIN_SCALAR = st.one_of(
    st.sampled_from(["null", "true", "false", '"Y"', '"N"', "0.5", "-0"]),
    st.integers(-(2**40), 2**40).map(str),
    st.text(max_size=10).map(json.dumps),
)
_HOSTILE = st.sampled_from(
    [
        "1e300",
        "-1e300",
        "1e18",
        "NaN",
        "Infinity",
        str(2**63),
        str(2**63 - 1),
        '"\\ud800"',
        '"\\udfff\\ud800"',
        '"\\ud83d\\ude00"',
        '"' + "9" * 25 + '"',
        '"\\u0000"',
    ]
)
HOSTILE_SCALAR = st.one_of(_HOSTILE, _HOSTILE, _HOSTILE, HUGE_DIGITS)
# Mostly plain values, so that a body with a few hostile ones gets parsed as often.
JSON_SCALAR = st.one_of(PLAIN_SCALAR, PLAIN_SCALAR, PLAIN_SCALAR, HOSTILE_SCALAR)
KEYS = st.sampled_from(
    [
        "DATA",
        "0",
        "1",
        "chat",
        "id",
        "message",
        "session",
        "user",
        "line",
        "text",
        "BOT",
        "AUTH",
        "PARAMS",
        "USER",
        "MESSAGES",
        "im",
        "MENTIONED_LIST",
        "BOT_ID",
        "CONNECTOR",
        "LINE",
        "\\ud800",
        "1" * 30,
    ]
)


def json_values(max_leaves: int = 30) -> st.SearchStrategy[str]:
    """JSON text built by hand, so that raw escapes and huge numbers go in as they are."""
    return st.recursive(
        JSON_SCALAR,
        lambda children: st.one_of(
            st.lists(children, max_size=5).map(lambda items: "[" + ",".join(items) + "]"),
            st.lists(st.tuples(KEYS, children), max_size=5).map(
                lambda members: "{" + ",".join(f'"{k}":{v}' for k, v in members) + "}"
            ),
        ),
        max_leaves=max_leaves,
    )


@st.composite
def json_bodies(draw: st.DrawFn) -> str:
    names = [json.dumps(name) for name in (*TYPED_NAMES, "onAppInstall", "X")]
    odd_names = ["5", "null", '"\\ud800"', '"  "']
    members = ['"event":' + draw(st.sampled_from(names * 4 + odd_names))]
    for field in ("ts", "event_handler_id", "eventId"):
        if draw(st.booleans()):
            members.append(f'"{field}":{draw(JSON_SCALAR)}')
    data = draw(json_values())
    if draw(st.booleans()):
        # Shaped like a bot's or a connector's data, with hostile values inside, and a
        # bot's block with a token pair.
        bot = (
            f'{{"access_token":"a{SECRET}","refresh_token":"r{SECRET}",'
            f'"client_endpoint":"https://p.bitrix24.com/rest/","expires":{draw(JSON_SCALAR)},'
            f'"user_id":{draw(JSON_SCALAR)},"BOT_ID":{draw(JSON_SCALAR)},"AUTH":{draw(json_values(4))}}}'
        )
        key = draw(st.sampled_from(['"567"', '"0"', '"x"', '"' + "9" * 30 + '"']))
        data = (
            f'{{"BOT":{{{key}:{bot}}},"PARAMS":{data},"USER":{draw(json_values(6))},'
            f'"MESSAGES":{draw(json_values(6))},"LINE":{draw(JSON_SCALAR)}}}'
        )
    levels = draw(st.sampled_from([0, 0, 0, 0, 1, 3, 62, 63, 64, 2_000, 60_000]))
    members.append('"data":' + "[" * levels + data + "]" * levels)
    if draw(st.booleans()):
        token = draw(st.sampled_from(['"' + SECRET + '"', '"\\ud800"', "5", "[]", "null"]))
        extra = draw(json_values(6))
        auth = f'"application_token":{token},"member_id":"m","x":{extra}'
        if draw(st.booleans()):
            # A token pair, so that auth.tokens() builds OAuthTokens from hostile values.
            endpoint = draw(
                st.sampled_from(
                    [
                        '"https://p.bitrix24.com/rest/"',
                        '"http://[::1"',
                        '"https://p.bitrix24.com:0/rest/"',
                        '"javascript:alert(1)"',
                        '"https://p.bitrix24.com/rest/%ZZ"',
                        "5",
                    ]
                )
            )
            auth += (
                f',"access_token":"a{SECRET}","refresh_token":"r{SECRET}",'
                f'"client_endpoint":{endpoint},"expires_in":{draw(JSON_SCALAR)},'
                f'"expires":{draw(JSON_SCALAR)},"user_id":{draw(JSON_SCALAR)}'
            )
        members.append(f'"auth":{{{auth}}}')
    body = "{" + ",".join(draw(st.permutations(members))) + "}"
    cut = draw(st.sampled_from([None] * 18 + [1, 10]))
    return body if cut is None else body[:-cut]


@FUZZ
@given(body=json_bodies(), content_type=CONTENT_TYPES, limits=LIMITS, as_bytes=st.booleans())
@example(
    body='{"event":"X","auth":{"application_token":"\\ud800"}}',
    content_type="application/json",
    limits=None,
    as_bytes=True,
)
@example(
    body='{"event":"X","data":' + "[" * 50_000 + "]" * 50_000 + "}",
    content_type=None,
    limits=None,
    as_bytes=False,
)
def test_any_json_is_an_event_or_an_event_error(
    body: str, content_type: str | None, limits: EventLimits | None, as_bytes: bool
) -> None:
    check(body.encode() if as_bytes else body, content_type, limits)


@FUZZ
@given(body=json_bodies(), limits=LIMITS)
def test_any_decoded_mapping_is_an_event_or_an_event_error(
    body: str, limits: EventLimits | None
) -> None:
    """The same JSON as a framework hands it over, already decoded (when Python can)."""
    try:
        decoded = json.loads(body)
    except (ValueError, RecursionError):
        return
    if isinstance(decoded, Mapping):
        check(decoded, None, limits)


# -- any bytes -------------------------------------------------------------------------------


@FUZZ
@given(
    body=st.one_of(
        st.binary(max_size=300),
        st.binary(max_size=100).map(lambda b: b"event=X&" + b),
        st.binary(max_size=100).map(lambda b: b'{"event":"X","data":' + b),
    ),
    content_type=CONTENT_TYPES,
    limits=LIMITS,
)
def test_any_bytes_are_an_event_or_an_event_error(
    body: bytes, content_type: str | None, limits: EventLimits | None
) -> None:
    check(body, content_type, limits)
