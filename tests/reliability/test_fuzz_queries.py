"""Fuzz the query input: whatever a caller passes, only documented errors come out.

- ``DialogGet.from_query`` either builds a request or raises ``TypeError``/``ValueError``
  whose message names the parameter at fault.
- ``client.get_dialogs`` never raises for a bad query: it returns exactly one outcome per
  input, in order, and a failed outcome is ``InvalidQueryError`` (malformed query) or an
  ``OpenLinesError`` (here ``AccessError``: the portal has no such dialog).
- ``client.get_dialog`` raises ``TypeError``/``ValueError`` naming the parameter before
  any request, or returns the right dialog, or raises ``AccessError``.

Each test function serves one ``ThreadedFakePortal`` (its own thread and loop) to all of
its examples; each example runs its async part with ``asyncio.run``, so hypothesis never
shares an event loop or a fixture between examples.
"""

from __future__ import annotations

import asyncio
import math
import os
from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bitrix_openlines import (
    Dialog,
    DialogGet,
    DialogOutcome,
    OpenLinesClient,
    OpenLinesError,
    RetryPolicy,
    UserCode,
    WebhookAuth,
)
from bitrix_openlines.errors import AccessError, InvalidQueryError
from bitrix_openlines.testing import FakeDialog, ThreadedFakePortal
from bitrix_openlines.types.dialog import chat_id_from_dialog_id

pytestmark = [pytest.mark.reliability, pytest.mark.integration]

IDENTIFIERS = ("chat_id", "dialog_id", "session_id", "user_code")
CALL_TIMEOUT = 20.0  # one example's async part; a hang fails the example

# Examples are random locally (to explore) and fixed in CI (no flaky gate).
FUZZ = settings(
    max_examples=150,
    deadline=None,
    derandomize=bool(os.environ.get("CI")),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# The portal's dialogs: generated ones plus user codes that need escaping on the wire.
ODD_CODES = (
    "livechat|7|a&b=c|user",
    "viber|5|50%+off|x y",
    "telegrambot|2|Юникод|ß∂ƒ",
    "livechat|3|a#b?c|d;e",
    "livechat|4|[x]|{y}",
    "livechat|6|tab\there|end",
    # Batch references the portal would resolve inside a batch (sent alone instead).
    "livechat|8|$result[c0][id]|x",
    "livechat|9|$RESULT[c1][id]|$next[c0]",
)
ODD_DIALOGS = [
    FakeDialog(chat_id=500 + i, session_id=5500 + i, user_code=code)
    for i, code in enumerate(ODD_CODES)
]

EDGE_INTS = (0, -1, 1, 2**31, 2**53 + 1, 2**63 - 1, 2**63, 2**64, 10**30, 10**4000)
EDGE_STRINGS = (
    "",
    " ",
    "|",
    "||||",
    "imol|",
    "chat",
    "chat0",
    "CHAT12",
    "chat 12",
    "chat12\n",
    "chat-1",
    "chat" + "9" * 5000,
    "chat\ud800",
    "livechat|1|1001|501",
    "imol|livechat|1|1001|501",
    "livechat|\uff11|x|y",  # a fullwidth digit one as the line
    "livechat|" + "1" * 5000 + "|x|y",
    "a|1|b|\ud800",
    "a|1|\x00|b",
    "a\r\n|1|b|c",
    "💬|1|🙂|👤",
    "livechat|2|$result[c0][id]|201",
    "$result[c0]",
    "chat$result[c0][id]",
)

text_any = st.text(max_size=12)
pipe_text = st.lists(
    st.text(alphabet=st.sampled_from(["a", "1", " ", "é", "&", "=", "%", "+", "#", "\ud800"])),
    max_size=6,
).map("|".join)
user_code_like = st.one_of(pipe_text, pipe_text.map(lambda s: "imol|" + s))
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from(EDGE_INTS),
    st.floats(allow_nan=True, allow_infinity=True),
    text_any,
    st.sampled_from(EDGE_STRINGS),
    user_code_like,
)
json_like = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(IDENTIFIERS), text_any), children, max_size=4),
    ),
    max_leaves=10,
)
identifier_value = st.one_of(
    json_like,
    st.integers(min_value=1, max_value=10**6),
    st.integers(min_value=0, max_value=10**6).map(lambda n: f"chat{n}"),
    st.builds(
        UserCode,
        connector=text_any,
        line_id=st.integers(min_value=0, max_value=10),
        chat_id=text_any,
        user_id=text_any,
    ),
)
weird_keys = st.one_of(
    st.sampled_from(IDENTIFIERS),
    st.sampled_from(("CHAT_ID", "chat_id ", "chatId", "", "user_code|")),
    text_any,
    st.integers(),
)


def _valid_queries(dialogs: list[FakeDialog]) -> st.SearchStrategy[Any]:
    """Well-formed queries of the portal's dialogs, in every accepted form."""
    dialog = st.sampled_from(dialogs)
    return st.one_of(
        dialog.map(lambda d: {"chat_id": d.chat_id}),
        dialog.map(lambda d: {"dialog_id": d.dialog_id}),
        dialog.map(lambda d: {"dialog_id": d.dialog_id.upper()}),
        dialog.map(lambda d: {"session_id": d.session_id}),
        dialog.map(lambda d: {"user_code": d.user_code}),
        dialog.map(lambda d: {"user_code": "imol|" + d.user_code}),
        dialog.map(lambda d: {"user_code": UserCode.parse(d.user_code)}),
        dialog.map(lambda d: {"chat_id": d.chat_id, "session_id": None}),
        dialog.map(lambda d: DialogGet(chat_id=d.chat_id)),
    )


# One part of a user code: any text without '|', including what needs escaping on the
# wire, non-ASCII text and (rarely valid, but a str all the same) lone surrogates.
code_part = st.text(
    alphabet=st.sampled_from(["a", "Z", "7", " ", "é", "Ж", "💬", "&", "=", "%", "+", "#", "?"])
    | st.sampled_from(["\x00", "\t", "\n", "\ud800", "\udfff"]),
    min_size=1,
    max_size=6,
)
well_formed = st.one_of(
    st.one_of(st.integers(min_value=1), st.sampled_from(EDGE_INTS[2:])).map(
        lambda n: {"chat_id": n}
    ),
    st.one_of(st.integers(min_value=1), st.sampled_from(EDGE_INTS[2:])).map(
        lambda n: {"session_id": n}
    ),
    st.tuples(st.sampled_from(["chat", "CHAT", "Chat"]), st.integers(min_value=1)).map(
        lambda t: {"dialog_id": f"{t[0]}{t[1]}"}
    ),
    st.tuples(
        st.sampled_from(["", "imol|"]),
        code_part,
        st.integers(min_value=0, max_value=10**6),
        code_part,
        code_part,
    ).map(lambda t: {"user_code": f"{t[0]}{t[1]}|{t[2]}|{t[3]}|{t[4]}"}),
)


def queries(dialogs: list[FakeDialog]) -> st.SearchStrategy[Any]:
    """Any query: JSON-like junk, near-misses, well-formed unknown ones and valid ones."""
    return st.one_of(
        json_like,
        st.dictionaries(weird_keys, identifier_value, max_size=3),
        st.dictionaries(st.sampled_from(IDENTIFIERS), identifier_value, min_size=1, max_size=2),
        well_formed,
        _valid_queries(dialogs),
    )


def names_the_parameter(query: Any, message: str) -> bool:
    """Whether an error message for ``query`` names what is wrong with it."""
    if not isinstance(query, Mapping):
        return "query" in message
    unknown = [str(key) for key in query if key not in IDENTIFIERS]
    if unknown:
        return "unknown key" in message and all(key in message for key in unknown)
    given_keys = [key for key in IDENTIFIERS if query.get(key) is not None]
    if len(given_keys) == 1:
        return given_keys[0] in message
    # Several or none: "exactly one of ...", or a key whose value is wrong by itself.
    return "exactly one" in message or any(key in message for key in given_keys)


def build(query: Any) -> DialogGet | BaseException:
    """``DialogGet.from_query(query)``, or the exception it raised."""
    try:
        return DialogGet.from_query(query)
    except Exception as exc:
        return exc


def check_rejection(query: Any, error: BaseException) -> None:
    """A refused query raised TypeError/ValueError naming the parameter, nothing else."""
    assert isinstance(error, TypeError | ValueError), (
        f"{type(error).__name__} from DialogGet for {query!r}: {error}"
    )
    assert names_the_parameter(query, str(error)), (
        f"the message does not name the parameter of {query!r}: {error}"
    )


def expected_chat(request: DialogGet, dialogs: list[FakeDialog]) -> int | None:
    """The chat the portal resolves ``request`` to, when it may be read; else ``None``."""
    name, value = request.identifier
    found: FakeDialog | None = None
    if name == "chat_id":
        found = next((d for d in dialogs if d.chat_id == value), None)
    elif name == "dialog_id":
        chat_id = chat_id_from_dialog_id(str(value))
        found = next((d for d in dialogs if d.chat_id == chat_id), None)
    elif name == "session_id":
        found = next((d for d in dialogs if d.session_id == value), None)
    else:
        code = str(value).removeprefix("imol|")
        found = next((d for d in dialogs if d.user_code == code), None)
    return None if found is None or found.forbidden else found.chat_id


def _portal() -> ThreadedFakePortal:
    return ThreadedFakePortal(dialogs=40, forbidden=[5, 9], rate=None)


def _all_dialogs(portal: ThreadedFakePortal) -> list[FakeDialog]:
    for dialog in ODD_DIALOGS:
        portal.add_dialog(dialog)
    return portal.dialogs


def _client(portal: ThreadedFakePortal) -> OpenLinesClient:
    return OpenLinesClient(
        WebhookAuth(portal.webhook_url), rate_limit=None, retry=RetryPolicy.no_wait(max_attempts=2)
    )


# -- DialogGet.from_query ------------------------------------------------------------------


@FUZZ
@given(query=st.one_of(json_like, st.dictionaries(weird_keys, identifier_value, max_size=3)))
def test_from_query_raises_only_type_or_value_errors_naming_the_parameter(query: Any) -> None:
    built = build(query)
    if isinstance(built, BaseException):
        check_rejection(query, built)
        return
    assert isinstance(built, DialogGet)
    name, value = built.identifier
    assert query[name] is value or str(query[name]) == value
    assert len(built.to_params()) == 1


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ({"dialog_id": "chat" + "9" * 5000}, "dialog_id"),
        ({"user_code": "livechat|" + "1" * 5000 + "|x|y"}, "user_code"),
    ],
    ids=["dialog_id-5000-digits", "user_code-line-5000-digits"],
)
def test_from_query_names_the_parameter_for_numbers_too_long_to_convert(
    query: dict[str, str], parameter: str
) -> None:
    # int() refuses more than 4300 digits (CPython's int_max_str_digits) with a ValueError
    # that names nothing; DialogGet must still say which parameter is wrong.
    with pytest.raises(ValueError, match=parameter):
        DialogGet.from_query(query)


# -- get_dialogs: one outcome per query ----------------------------------------------------


def check_outcomes(
    queries_: list[Any], outcomes: list[DialogOutcome], dialogs: list[FakeDialog]
) -> None:
    """One outcome per query, in order, each the one the query deserves."""
    assert len(outcomes) == len(queries_)
    for position, (query, outcome) in enumerate(zip(queries_, outcomes, strict=True)):
        assert outcome.index == position
        assert outcome.query is query
        built = build(query)
        if isinstance(built, BaseException):
            check_rejection(query, built)
            assert isinstance(outcome.error, InvalidQueryError), (query, outcome.error)
            assert outcome.request is None
            assert str(built) in outcome.error.description
            continue
        assert outcome.request == built
        chat = expected_chat(built, dialogs)
        if chat is None:
            assert isinstance(outcome.error, AccessError), (query, outcome.error)
        else:
            assert outcome.error is None, (query, outcome.error)
            assert outcome.dialog is not None
            assert outcome.dialog.id == chat


def test_get_dialogs_gives_one_documented_outcome_per_query() -> None:
    with _portal() as portal:
        dialogs = _all_dialogs(portal)

        async def resolve(items: list[Any]) -> list[DialogOutcome]:
            async with _client(portal) as client:
                return await client.get_dialogs(items)

        @FUZZ
        @given(items=st.lists(queries(dialogs), max_size=25))
        def run(items: list[Any]) -> None:
            outcomes = asyncio.run(asyncio.wait_for(resolve(items), CALL_TIMEOUT))
            check_outcomes(items, outcomes, dialogs)

        run()


def test_batch_references_get_the_outcome_they_get_alone() -> None:
    # A first command that succeeds gives "$result[c0][...]" something to resolve to;
    # the codes of ODD_DIALOGS that hold references exist as such, so a resolved one
    # would fail (or name another dialog) where the literal one is found.
    hostile = [{"user_code": code} for code in ODD_CODES if "$" in code]
    with _portal() as portal:
        dialogs = _all_dialogs(portal)
        plain = [d for d in dialogs if not d.forbidden and "$" not in d.user_code]

        async def resolve(items: list[Any]) -> list[DialogOutcome]:
            async with _client(portal) as client:
                return await client.get_dialogs(items)

        @FUZZ
        @given(
            first=st.sampled_from(plain).map(lambda d: {"chat_id": d.chat_id}),
            rest=st.lists(st.one_of(st.sampled_from(hostile), queries(dialogs)), max_size=25),
        )
        def run(first: dict[str, Any], rest: list[Any]) -> None:
            items = [first, *rest]
            outcomes = asyncio.run(asyncio.wait_for(resolve(items), CALL_TIMEOUT))
            check_outcomes(items, outcomes, dialogs)

        run()


@pytest.mark.parametrize(
    "bad",
    [
        {"chat_id": 10**5000},
        {"session_id": 10**5000},
        {"user_code": "a|1|b|\ud800"},
        {"user_code": "livechat|1|\udcff|x"},
    ],
    ids=["chat_id-10**5000", "session_id-10**5000", "user_code-lone-surrogate", "low-surrogate"],
)
def test_an_unsendable_query_fails_alone_in_get_dialogs(bad: dict[str, Any]) -> None:
    # DialogGet accepts these, but they cannot be written on the wire: a 5001-digit int
    # (str() refuses it) and a lone surrogate (UTF-8 refuses it). The job must still end
    # with one outcome per query, not raise out of the middle.
    with _portal() as portal:
        items: list[Any] = [{"chat_id": 1}, bad, {"chat_id": 2}]

        async def resolve() -> list[DialogOutcome]:
            async with _client(portal) as client:
                return await client.get_dialogs(items)

        outcomes = asyncio.run(asyncio.wait_for(resolve(), CALL_TIMEOUT))
    assert len(outcomes) == 3
    assert [o.dialog.id for o in (outcomes[0], outcomes[2]) if o.dialog] == [1, 2]
    assert isinstance(outcomes[1].error, OpenLinesError)


# -- get_dialog: errors before any request, or a right answer ------------------------------


def test_get_dialog_raises_only_documented_errors() -> None:
    with _portal() as portal:
        dialogs = _all_dialogs(portal)

        async def call(kwargs: dict[str, Any]) -> Dialog | BaseException:
            async with _client(portal) as client:
                try:
                    return await client.get_dialog(**kwargs)
                except Exception as exc:
                    return exc

        arguments = st.dictionaries(st.sampled_from(IDENTIFIERS), identifier_value, max_size=2)
        valid = _valid_queries(dialogs).filter(lambda q: isinstance(q, dict))

        @FUZZ
        @given(kwargs=st.one_of(arguments, well_formed, valid))
        def run(kwargs: dict[str, Any]) -> None:
            before = portal.stats.requests
            got = asyncio.run(asyncio.wait_for(call(kwargs), CALL_TIMEOUT))
            sent = portal.stats.requests - before
            built = build(kwargs)
            if isinstance(built, BaseException):
                check_rejection(kwargs, built)
                assert isinstance(got, TypeError | ValueError), got
                assert not isinstance(got, OpenLinesError)
                assert sent == 0, "a malformed query reached the portal"
                return
            chat = expected_chat(built, dialogs)
            if chat is None:
                assert isinstance(got, AccessError), (kwargs, got)
            else:
                assert isinstance(got, Dialog), (kwargs, got)
                assert got.id == chat
            assert sent == 1

        run()


@pytest.mark.parametrize(
    "kwargs",
    [{"chat_id": 10**5000}, {"user_code": "a|1|b|\ud800"}],
    ids=["chat_id-10**5000", "user_code-lone-surrogate"],
)
def test_get_dialog_refuses_an_unsendable_identifier_naming_it(kwargs: dict[str, Any]) -> None:
    # Today these pass DialogGet and blow up inside the transport (json.dumps / encode)
    # with a ValueError that names no parameter.
    with _portal() as portal:

        async def call() -> None:
            async with _client(portal) as client:
                await client.get_dialog(**kwargs)

        with pytest.raises((TypeError, ValueError, OpenLinesError)) as caught:
            asyncio.run(asyncio.wait_for(call(), CALL_TIMEOUT))
        assert portal.stats.requests == 0
    (name,) = kwargs
    assert isinstance(caught.value, OpenLinesError) or name in str(caught.value), caught.value


def test_nan_and_infinity_are_refused_with_the_parameter_named() -> None:
    for name in ("chat_id", "session_id"):
        for value in (math.nan, math.inf, -math.inf, 1.0):
            with pytest.raises(TypeError, match=name):
                DialogGet.from_query({name: value})
