"""Fuzz what the portal sends back: only the SDK's documented errors come out, bounded.

``imopenlines.dialog.get`` and ``batch`` answer, through aioresponses, with whatever a
broken portal, proxy or CDN might send: malformed or cut JSON, wrong types in every
``Dialog`` field, missing and extra fields, ``result`` of any JSON type, ``result_error``
entries that are not objects, ``[]`` for objects, HTML and empty bodies, random statuses
(2xx, 3xx, 4xx, 5xx). The OAuth server's answer to a refresh is fuzzed too.

What must hold: ``get_dialog`` returns a ``Dialog`` (whose properties all work) or raises
an ``OpenLinesError``; ``get_dialogs`` returns one outcome per query whose error, if any,
is an ``OpenLinesError``; nothing else escapes (no ``KeyError``, ``TypeError``,
``AttributeError``, ``IndexError``, bare ``ValueError``, cattrs ``ExceptionGroup``...);
no call hangs; retries are bounded by ``max_attempts`` (``QUERY_LIMIT_EXCEEDED`` answers
are bounded by the deadline instead, as documented).

Time blocks are fuzzed with ``operating`` kept below the pause threshold and no
``OPERATION_TIME_LIMIT`` code, so that no example waits for a method's reset: how that wait
meets the deadline is tested on its own at the end of this module.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
import string
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from aioresponses import aioresponses
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bitrix_openlines import (
    Dialog,
    DialogOutcome,
    OAuthAuth,
    OAuthTokens,
    OpenLinesClient,
    OpenLinesError,
    RetryPolicy,
    WebhookAuth,
)
from bitrix_openlines.errors import (
    DecodeError,
    InvalidQueryError,
    OperationTimeLimitError,
    PortalMovedError,
    RateLimitError,
    ServerError,
)
from bitrix_openlines.ratelimit import OperatingBudget

pytestmark = [pytest.mark.reliability, pytest.mark.integration]

WEBHOOK = "https://portal.bitrix24.com/rest/1/q8w7e6r5t4y3u2i1/"
DIALOG_URL = f"{WEBHOOK}imopenlines.dialog.get.json"
BATCH_URL = f"{WEBHOOK}batch.json"
OAUTH_ENDPOINT = "https://portal.bitrix24.com/rest/"
OAUTH_DIALOG_URL = f"{OAUTH_ENDPOINT}imopenlines.dialog.get.json"
TOKEN_URL = re.compile(r"^https://oauth\.bitrix\.info/oauth/token/.*$")
MAX_ATTEMPTS = 2
# QUERY_LIMIT_EXCEEDED is retried until the deadline whatever max_attempts says; a short
# deadline keeps an example that answers it forever short.
DEADLINE = 0.3
HANG = 10.0  # a call that takes longer than this is a hang
QUERIES: list[dict[str, Any]] = [{"chat_id": 1}, {"chat_id": 2}, {"dialog_id": "chat3"}]

FUZZ = settings(
    max_examples=150,
    deadline=None,
    derandomize=bool(os.environ.get("CI")),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# The documented 38-field answer (imopenlines.dialog.get__200_success.json).
DIALOG: dict[str, Any] = {
    "id": 1777,
    "parent_chat_id": 0,
    "parent_message_id": 0,
    "name": "Green Guest #17 - Bitrix24 Documentation",
    "description": None,
    "owner": 27,
    "extranet": False,
    "avatar": "",
    "color": "#58cc47",
    "type": "lines",
    "counter": 0,
    "user_counter": 2,
    "message_count": 104,
    "unread_id": 0,
    "restrictions": {"avatar": True, "rename": True, "send": True, "user_list": True},
    "last_message_id": 86313,
    "last_id": 86313,
    "marked_id": 0,
    "disk_folder_id": 0,
    "entity_type": "LINES",
    "entity_id": "livechat|22|1775|599",
    "entity_data_1": "Y|LEAD|1209|N|N|343|1773682918|0|0|0",
    "entity_data_2": "LEAD|1209|COMPANY|0|CONTACT|0|DEAL|0",
    "entity_data_3": "N",
    "mute_list": [],
    "date_create": "2026-03-13T16:50:15+01:00",
    "message_type": "L",
    "public": "",
    "role": "owner",
    "entity_link": {"type": "LINES", "url": "", "id": "livechat|22|1775|599"},
    "text_field_enabled": True,
    "background_id": None,
    "permissions": {"manage_users_add": "member", "can_post": "member"},
    "is_new": False,
    "readed_list": [{"user_id": 599, "user_name": "Guest", "message_id": 86101, "date": None}],
    "manager_list": [27],
    "last_message_views": {
        "message_id": 86313,
        "first_viewers": [
            {"user_id": 27, "user_name": "Samantha Johnson", "date": "2026-03-16T20:50:37+01:00"}
        ],
        "count_of_viewers": 0,
    },
    "dialog_id": "chat1777",
}
TIME_KEYS = (
    "start",
    "finish",
    "duration",
    "processing",
    "date_start",
    "date_finish",
    "operating",
    "operating_reset_at",
)
# Every code of the SDK's table but OPERATION_TIME_LIMIT (see the module docs), in both
# cases, plus unknown ones.
CODES = (
    "QUERY_LIMIT_EXCEEDED",
    "OVERLOAD_LIMIT",
    "INTERNAL_SERVER_ERROR",
    "ERROR_UNEXPECTED_ANSWER",
    "ERROR_CORE",
    "ERROR_ARGUMENT",
    "DIALOG_ID_EMPTY",
    "ERROR_METHOD_NOT_FOUND",
    "ERROR_BATCH_LENGTH_EXCEEDED",
    "NO_AUTH_FOUND",
    "INVALID_CREDENTIALS",
    "invalid_grant",
    "expired_token",
    "invalid_token",
    "ACCESS_ERROR",
    "insufficient_scope",
    "PORTAL_DELETED",
    "WRONG_LICENSE",
    "SOMETHING_NEW",
    "",
)
HTML_PAGES = (
    b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>",
    b"<!DOCTYPE html><html><body><h1>Portal is under maintenance</h1></body></html>",
    b"<?xml version='1.0'?><response><error>ACCESS_ERROR</error></response>",
)

# -- strategies ----------------------------------------------------------------------------

# Object keys of at most 6 characters can never be "operating" (see the module docs).
short_keys = st.one_of(
    st.text(alphabet=string.ascii_letters + "_", max_size=6),
    st.sampled_from(("id", "error", "result", "time", "", "0", "c0")),
)
scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from((0, -1, 2**63, 10**30, 10**400)),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(("", "Y", "N", "2026-13-45T99:00:00", "livechat|1|2|3", "chat5", "[]", "{}")),
)
any_json = st.recursive(
    scalar,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(short_keys, children, max_size=4)
    ),
    max_leaves=12,
)


def field_value(name: str) -> st.SearchStrategy[Any]:
    """The documented value of a Dialog field, or a wrong one of any type."""
    return st.one_of(
        st.just(DIALOG[name]), any_json, st.sampled_from(([], {}, "", None, "0", 0, False))
    )


def _one_field_changed(name: str, value: Any, drop: bool) -> dict[str, Any]:
    changed = {key: item for key, item in DIALOG.items() if key != name}
    if not drop:
        changed[name] = value
    return changed


# The documented object with one field wrong or missing (most often parses, or fails on
# exactly that field), or any subset of the fields each right or wrong ("id" included);
# plus unknown extra fields.
dialog_object = st.builds(
    lambda known, extra: {**extra, **known},
    st.one_of(
        st.just(DIALOG),
        st.builds(
            _one_field_changed,
            st.sampled_from(list(DIALOG)),
            st.one_of(any_json, st.sampled_from(([], {}, "", None, "0", 0, False))),
            st.booleans(),
        ),
        st.fixed_dictionaries({}, optional={name: field_value(name) for name in DIALOG}),
    ),
    st.dictionaries(short_keys, any_json, max_size=3),
)
safe_operating = st.one_of(
    st.none(),
    st.integers(max_value=400),
    st.floats(max_value=400.0),
    st.just(math.nan),
    st.text(alphabet=string.ascii_letters, max_size=5),
    st.lists(scalar, max_size=2),
)
time_block = st.fixed_dictionaries(
    {},
    optional={
        **{key: any_json for key in TIME_KEYS if key != "operating"},
        "operating": safe_operating,
    },
)
error_object = st.fixed_dictionaries(
    {"error": st.one_of(st.sampled_from(CODES), any_json)},
    optional={"error_description": any_json, "argument": any_json, "time": time_block},
)
command_keys = st.sampled_from(("c0", "c1", "c2", "c3", "0", "1", "", "C0"))


@st.composite
def command_parts(draw: st.DrawFn) -> dict[str, Any]:
    """A batch result that answers each command sent (c0..c2) somehow, or leaves it out."""
    results: dict[str, Any] = {}
    errors: dict[str, Any] = {}
    times: dict[str, Any] = {}
    for key in ("c0", "c1", "c2"):
        where = draw(st.sampled_from(("result", "result", "error", "missing")))
        if where == "result":
            results[key] = draw(dialog_object)
        elif where == "error":
            errors[key] = draw(st.one_of(error_object, any_json))
        if draw(st.booleans()):
            times[key] = draw(st.one_of(time_block, any_json))
    parts: dict[str, Any] = {
        "result": results or [],
        "result_error": errors or [],
        "result_time": times or [],
    }
    for name in draw(st.sets(st.sampled_from(list(parts)), max_size=3)):
        del parts[name]  # a part may be missing altogether
    return parts


batch_result = st.one_of(
    command_parts(),
    command_parts(),
    st.fixed_dictionaries(
        {},
        optional={
            "result": st.one_of(
                st.dictionaries(command_keys, st.one_of(dialog_object, any_json), max_size=4),
                st.lists(dialog_object, max_size=3),
                any_json,
            ),
            "result_error": st.one_of(
                st.dictionaries(command_keys, st.one_of(error_object, any_json), max_size=4),
                st.just([]),
                any_json,
            ),
            "result_time": st.one_of(
                st.dictionaries(command_keys, st.one_of(time_block, any_json), max_size=4),
                st.just([]),
            ),
            "result_total": any_json,
            "result_next": any_json,
        },
    ),
)


def envelope(result: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """A success envelope around ``result``, sometimes with a time block and extras."""
    return st.fixed_dictionaries(
        {"result": result},
        optional={
            "time": st.one_of(time_block, st.just([]), st.none()),
            "total": any_json,
            "next": any_json,
        },
    )


def to_bytes(value: Any) -> bytes:
    """JSON as the portal writes it (NaN and Infinity too, which json accepts)."""
    return json.dumps(value, ensure_ascii=False).encode()


def bodies(result: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes]:
    """Any body: a success envelope, an error, other JSON, cut JSON, HTML, junk, nothing."""
    json_bodies = st.one_of(envelope(result), error_object, any_json).map(to_bytes)
    cut = st.tuples(envelope(result).map(to_bytes), st.floats(0.0, 1.0)).map(
        lambda pair: pair[0][: int(len(pair[0]) * pair[1])]
    )
    return st.one_of(
        envelope(result).map(to_bytes),
        json_bodies,
        cut,
        st.sampled_from(HTML_PAGES),
        st.sampled_from((b"", b"   ", b"\n", b"null", b"[]", b"{}", b'{"result": []}')),
        st.binary(max_size=64),
    )


statuses = st.one_of(
    st.just(200),
    st.sampled_from((201, 204, 301, 302, 307, 400, 401, 403, 404, 429, 500, 502, 503)),
    st.integers(min_value=200, max_value=599),
)
content_types = st.sampled_from(("application/json", "text/html", "text/plain", ""))
locations = st.one_of(
    st.sampled_from(("https://new.bitrix24.com/rest/1/x/batch.json", "/rest/", "", "//h/x")),
    st.text(alphabet=string.ascii_letters + ":/.?#@", max_size=30),
)


@st.composite
def answers(
    draw: st.DrawFn, result: st.SearchStrategy[Any], plausible: st.SearchStrategy[Any]
) -> dict[str, Any]:
    """The keyword arguments of one aioresponses answer.

    Half are a 200 JSON envelope around a ``plausible`` result (so that the success path
    is fuzzed as hard as the failures), half anything at all.
    """
    if draw(st.booleans()):
        return {"status": 200, "body": draw(envelope(plausible).map(to_bytes))}
    status = draw(statuses)
    headers = {"Location": draw(locations)} if 300 <= status < 400 else {}
    return {
        "status": status,
        "body": draw(bodies(result)),
        "content_type": draw(content_types),
        "headers": headers,
    }


dialog_answers = answers(st.one_of(dialog_object, any_json, st.just([])), dialog_object)
batch_answers = answers(st.one_of(batch_result, any_json, st.just([])), command_parts())

# -- checks --------------------------------------------------------------------------------


def _client(auth: Any = None) -> OpenLinesClient:
    return OpenLinesClient(
        auth or WebhookAuth(WEBHOOK),
        rate_limit=None,
        retry=RetryPolicy.no_wait(max_attempts=MAX_ATTEMPTS, deadline=DEADLINE),
    )


def use_dialog(dialog: Dialog) -> None:
    """Read every property of a ``Dialog`` as a caller would; none may raise."""
    values = (
        dialog.chat_id,
        dialog.dialog_id,
        dialog.user_code,
        dialog.session,
        dialog.session_id,
        dialog.crm,
        dialog.silent_mode,
        dialog.line_id,
        dialog.extra,
    )
    assert len(values) == 9
    assert dialog.dialog_id
    repr(dialog)


def check_error(error: BaseException) -> None:
    """An error that came out of a call is one of the SDK's documented ones."""
    assert isinstance(error, OpenLinesError), f"{type(error).__name__} escaped the SDK: {error!r}"
    assert not isinstance(error, InvalidQueryError)  # no query here was malformed
    assert str(error)
    assert repr(error)


def requests_made(mocked: aioresponses, verb: str = "POST") -> int:
    return sum(len(calls) for (method, _), calls in mocked.requests.items() if method == verb)


@contextmanager
def answering(url: str | re.Pattern[str], answer: dict[str, Any]) -> Iterator[aioresponses]:
    with aioresponses() as mocked:
        mocked.post(url, repeat=True, **answer)
        yield mocked


async def get_dialog(answer: dict[str, Any]) -> tuple[Dialog | BaseException, int]:
    with answering(DIALOG_URL, answer) as mocked:
        async with _client() as client:
            try:
                got: Dialog | BaseException = await asyncio.wait_for(
                    client.get_dialog(chat_id=1), HANG
                )
            except Exception as exc:
                got = exc
        return got, requests_made(mocked)


async def get_dialogs(answer: dict[str, Any]) -> tuple[list[DialogOutcome], int]:
    with answering(BATCH_URL, answer) as mocked:
        async with _client() as client:
            outcomes = await asyncio.wait_for(client.get_dialogs(QUERIES), HANG)
        return outcomes, requests_made(mocked)


def check_get_dialog(got: Dialog | BaseException, requests: int) -> None:
    assert not isinstance(got, TimeoutError), "get_dialog hung"
    if isinstance(got, Dialog):
        use_dialog(got)
        assert requests <= MAX_ATTEMPTS
        return
    check_error(got)
    if type(got) is not RateLimitError:  # QUERY_LIMIT_EXCEEDED: bounded by the deadline
        assert requests <= MAX_ATTEMPTS, (requests, got)


def paces_commands(answer: dict[str, Any]) -> bool:
    """Whether ``answer`` may refuse a command with a pacing code (the codes' case varies)."""
    body = answer.get("body", b"")
    text = body.lower() if isinstance(body, bytes) else str(body).lower().encode()
    return b"query_limit_exceeded" in text or b"operation_time_limit" in text


def check_get_dialogs(outcomes: list[DialogOutcome], requests: int, *, paced: bool) -> None:
    assert len(outcomes) == len(QUERIES)
    assert [o.index for o in outcomes] == list(range(len(QUERIES)))
    for outcome in outcomes:
        if outcome.error is None:
            assert isinstance(outcome.dialog, Dialog), outcome
            use_dialog(outcome.dialog)
        else:
            check_error(outcome.error)
    if not any(type(o.error) is RateLimitError for o in outcomes):
        # Whole-batch retries times rounds of per-command re-queues. Without pacing, a
        # round holds every command still going, and uses an attempt of each: at most
        # max_attempts rounds. A paced command uses no attempt (only the deadline) and
        # goes in a later round, so its batch mates' rounds and its own no longer
        # coincide; a round of paced commands alone would be paced again and again (the
        # same answer each time) and end in RateLimitError, so each round still uses an
        # attempt of some query: at most len(QUERIES) * max_attempts rounds.
        rounds = len(QUERIES) * MAX_ATTEMPTS if paced else MAX_ATTEMPTS
        assert requests <= MAX_ATTEMPTS * rounds, (requests, paced)


# -- the fuzz ------------------------------------------------------------------------------


@FUZZ
@given(answer=dialog_answers)
def test_any_dialog_get_answer_gives_a_dialog_or_a_documented_error(
    answer: dict[str, Any],
) -> None:
    got, requests = asyncio.run(get_dialog(answer))
    check_get_dialog(got, requests)


@FUZZ
@given(answer=batch_answers)
def test_any_batch_answer_gives_one_documented_outcome_per_query(answer: dict[str, Any]) -> None:
    outcomes, requests = asyncio.run(get_dialogs(answer))
    check_get_dialogs(outcomes, requests, paced=paces_commands(answer))


token_answers = st.fixed_dictionaries(
    {},
    optional={
        "access_token": st.one_of(st.just("newaccess0123456789"), any_json),
        "refresh_token": st.one_of(st.just("newrefresh0123456789"), any_json),
        "client_endpoint": st.one_of(
            st.just(OAUTH_ENDPOINT),
            st.sampled_from(("ftp://portal/rest/", "portal/rest/", "https:///rest/", "")),
            any_json,
        ),
        "expires": any_json,
        "expires_in": any_json,
        "user_id": any_json,
        "member_id": any_json,
        "error": st.sampled_from(("invalid_grant", "invalid_client", "expired_token", "x")),
        "error_description": any_json,
    },
)


@FUZZ
@given(status=statuses, body=st.one_of(token_answers.map(to_bytes), bodies(any_json)))
def test_any_oauth_server_answer_to_a_refresh_gives_a_documented_error(
    status: int, body: bytes
) -> None:
    async def run() -> tuple[Dialog | BaseException, int, int]:
        tokens = OAuthTokens(
            access_token="oldaccess0123456789",
            refresh_token="oldrefresh0123456789",
            client_endpoint=OAUTH_ENDPOINT,
        )
        auth = OAuthAuth(client_id="app.1", client_secret="s3cr3t-s3cr3t", tokens=tokens)
        expired = {"error": "expired_token", "error_description": "The access token expired"}
        with aioresponses() as mocked:
            mocked.post(OAUTH_DIALOG_URL, status=401, payload=expired)
            mocked.get(TOKEN_URL, status=status, body=body, repeat=True)
            mocked.post(OAUTH_DIALOG_URL, status=200, payload={"result": DIALOG}, repeat=True)
            async with _client(auth) as client:
                try:
                    got: Dialog | BaseException = await asyncio.wait_for(
                        client.get_dialog(chat_id=1), HANG
                    )
                except Exception as exc:
                    got = exc
            return got, requests_made(mocked, "POST"), requests_made(mocked, "GET")

    got, posts, gets = asyncio.run(run())
    assert not isinstance(got, TimeoutError), "get_dialog hung on a refresh"
    if isinstance(got, Dialog):
        use_dialog(got)
    else:
        check_error(got)
    assert posts <= MAX_ATTEMPTS + 1, posts
    assert gets <= MAX_ATTEMPTS, gets


# -- bodies found or chosen by hand: huge, deep, odd -----------------------------------------

BIG = 3_000_000


def _odd_answers() -> list[Any]:
    return [
        pytest.param(
            {"status": 200, "body": to_bytes({"result": {**DIALOG, "name": "x" * BIG}})},
            Dialog,
            id="3MB-valid-dialog",
        ),
        pytest.param(
            {"status": 200, "body": bytes(range(256)) * (BIG // 256)},
            DecodeError,
            id="3MB-binary",
        ),
        pytest.param(
            {"status": 200, "body": to_bytes({"result": list(range(BIG // 8))})},
            DecodeError,
            id="3MB-result-list",
        ),
        pytest.param(
            {"status": 502, "body": b"<html>" + b"<p>busy</p>" * (BIG // 11) + b"</html>"},
            DecodeError,
            id="3MB-html-502",
        ),
        pytest.param(
            {"status": 200, "body": b'{"result": ' + b"[" * 100_000},
            DecodeError,
            id="deeply-nested-json",
        ),
        pytest.param(
            {"status": 200, "body": b"[" * 100_000 + b"]" * 100_000},
            DecodeError,
            id="deeply-nested-complete-json",
        ),
        pytest.param(
            {
                "status": 400,
                "body": to_bytes({"error": "ERROR_CORE", "time": {"operating_reset_at": 10**400}}),
            },
            OpenLinesError,
            id="error-with-a-401-digit-reset-time",
        ),
        pytest.param(
            {"status": 302, "body": b"", "headers": {"Location": "http://[portal/rest/"}},
            PortalMovedError,
            id="302-unparsable-location",
        ),
        pytest.param(
            {"status": 200, "body": b'{"result": {"id": ' + b"7" * 5000 + b"}}"},
            DecodeError,
            id="5000-digit-id",
        ),
        pytest.param(
            {"status": 200, "body": b'{"result": {"id": 1, "name": "\\ud800"}}'},
            Dialog,
            id="escaped-lone-surrogate",
        ),
        pytest.param({"status": 500, "body": b""}, ServerError, id="500-empty"),
    ]


@pytest.mark.parametrize(("answer", "expected"), _odd_answers())
async def test_odd_dialog_get_answers(answer: dict[str, Any], expected: type) -> None:
    got, requests = await get_dialog(answer)  # a hang would give a TimeoutError here
    assert isinstance(got, expected), f"expected {expected.__name__}, got {got!r}"[:500]
    check_get_dialog(got, requests)


@pytest.mark.parametrize(("answer", "expected"), _odd_answers())
async def test_odd_batch_answers(answer: dict[str, Any], expected: type) -> None:
    outcomes, requests = await get_dialogs(answer)
    check_get_dialogs(outcomes, requests, paced=paces_commands(answer))
    if expected is not Dialog:
        assert all(isinstance(o.error, OpenLinesError) for o in outcomes), outcomes


async def test_a_3mb_batch_answer_of_50_dialogs() -> None:
    queries = [{"chat_id": i} for i in range(1, 51)]
    result = {
        f"c{i}": {**DIALOG, "id": i + 1, "dialog_id": f"chat{i + 1}", "name": "n" * 60_000}
        for i in range(50)
    }
    body = to_bytes({"result": {"result": result, "result_error": []}})
    assert len(body) > BIG
    with answering(BATCH_URL, {"status": 200, "body": body}):
        async with _client() as client:
            outcomes = await asyncio.wait_for(client.get_dialogs(queries), HANG)
    assert [o.dialog.id for o in outcomes if o.dialog] == list(range(1, 51))


@pytest.mark.parametrize(
    "field",
    ["entity_data_1", "entity_data_2"],
)
async def test_dialog_properties_survive_numbers_too_long_to_convert(field: str) -> None:
    # A 5000-digit number inside the pipe-separated service fields: the Dialog is built,
    # and reading .session / .session_id / .crm must not raise (int() refuses > 4300
    # digits with a ValueError).
    digits = "9" * 5000
    value = f"Y|LEAD|{digits}|N|N|{digits}|{digits}|1|0|0"
    if field == "entity_data_2":
        value = f"LEAD|{digits}|COMPANY|0|CONTACT|0|DEAL|0"
    got, _ = await get_dialog(
        {"status": 200, "body": to_bytes({"result": {**DIALOG, field: value}})}
    )
    assert isinstance(got, Dialog), got
    use_dialog(got)


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param({"expires": 10**400}, id="401-digit-expires"),
        pytest.param({"expires_in": 10**400}, id="401-digit-expires_in"),
        pytest.param({"client_endpoint": "http://evil.example/rest/"}, id="plain-http-endpoint"),
        pytest.param({"client_endpoint": "http://[::1/rest/"}, id="unparsable-endpoint"),
        pytest.param(
            {"client_endpoint": "https://portal.bitrix24.com:99999/rest/"},
            id="out-of-range-port-endpoint",
        ),
    ],
)
async def test_odd_refresh_answers_give_documented_errors(answer: dict[str, Any]) -> None:
    pair = {
        "access_token": "newaccess0123456789",
        "refresh_token": "newrefresh0123456789",
        "client_endpoint": OAUTH_ENDPOINT,
    }
    body = to_bytes({**pair, **answer})
    tokens = OAuthTokens(
        access_token="oldaccess0123456789",
        refresh_token="oldrefresh0123456789",
        client_endpoint=OAUTH_ENDPOINT,
    )
    auth = OAuthAuth(client_id="app.1", client_secret="s3cr3t-s3cr3t", tokens=tokens)
    expired = {"error": "expired_token", "error_description": "The access token expired"}
    with aioresponses() as mocked:
        mocked.post(OAUTH_DIALOG_URL, status=401, payload=expired, repeat=True)
        mocked.get(TOKEN_URL, status=200, body=body, repeat=True)
        mocked.post(re.compile(r"^http://.*"), status=200, payload={"result": DIALOG})
        async with _client(auth) as client:
            try:
                got: Dialog | BaseException = await asyncio.wait_for(
                    client.get_dialog(chat_id=1), HANG
                )
            except Exception as exc:
                got = exc
    assert not isinstance(got, Dialog), "the call went on with a pair the SDK should refuse"
    check_error(got)


# -- the operating-time pause and the deadline ----------------------------------------------
#
# The budget and the retry policy run on a clock that moves only when they sleep, and
# record every wait: a call that waited for the reset would show a wait of an hour (and
# then be sent), not a slow test. (``HANG`` only turns a loop that never ends, waiting
# hour after hour on that clock, into a failure.)


class SteppedClock:
    """A clock (Unix time, from the real time at its creation) moved only by ``sleep``."""

    def __init__(self) -> None:
        self.now = time.time()
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += max(0.0, seconds)
        await asyncio.sleep(0)


def _paced_client(clock: SteppedClock) -> OpenLinesClient:
    return OpenLinesClient(
        WebhookAuth(WEBHOOK),
        rate_limit=None,
        operating_budget=OperatingBudget(clock=clock, sleep=clock.sleep),
        retry=RetryPolicy(
            max_attempts=2,
            deadline=1.0,
            base_delay=0.0,
            max_delay=0.0,
            rate_limit_pause=0.0,
            sleep=clock.sleep,
            clock=clock,
        ),
    )


async def test_a_far_operating_reset_does_not_hold_the_next_call_past_its_deadline() -> None:
    # The first answer says the method's budget is spent until an hour from now. The next
    # call may not be sent before then, but its deadline (1 s) bounds the whole call
    # (docs/limits.md): it must give up with an error, not sleep for an hour.
    clock = SteppedClock()
    spent = {"operating": 479.5, "operating_reset_at": int(clock.now) + 3600}
    answer = {"status": 200, "body": to_bytes({"result": DIALOG, "time": spent})}
    with answering(DIALOG_URL, answer) as mocked:
        async with _paced_client(clock) as client:
            assert (await client.get_dialog(chat_id=1)).id == DIALOG["id"]
            try:
                second = await asyncio.wait_for(client.get_dialog(chat_id=1), HANG)
            except Exception as exc:
                check_error(exc)
            else:
                pytest.fail(f"the call was sent while the method was paused: {second!r}")
        assert requests_made(mocked) == 1
    assert all(wait < 1.0 for wait in clock.sleeps), (
        f"the call waited for the method's reset, past its 1 s deadline: {clock.sleeps}"
    )


async def test_operation_time_limit_inside_a_batch_respects_the_deadline() -> None:
    # One command answers OPERATION_TIME_LIMIT and the batch's time block says the budget
    # resets in an hour. The command may be re-queued only "within its deadline"
    # (docs/batch.md): with a 1 s deadline the job must end with that error for it.
    clock = SteppedClock()
    result = {
        "result": {"c1": DIALOG, "c2": {**DIALOG, "id": 3, "dialog_id": "chat3"}},
        "result_error": {
            "c0": {
                "error": "OPERATION_TIME_LIMIT",
                "error_description": "Method is blocked due to operation time limit.",
            }
        },
    }
    reset = {"operating": 0, "operating_reset_at": int(clock.now) + 3600}
    answer = {"status": 200, "body": to_bytes({"result": result, "time": reset})}
    with answering(BATCH_URL, answer):
        async with _paced_client(clock) as client:
            outcomes = await asyncio.wait_for(client.get_dialogs(QUERIES), HANG)
    assert all(wait < 1.0 for wait in clock.sleeps), (
        f"get_dialogs waited for the method's reset, past its 1 s deadline: {clock.sleeps}"
    )
    assert isinstance(outcomes[0].error, OperationTimeLimitError), outcomes[0]
    assert [o.ok for o in outcomes[1:]] == [True, True]


async def test_paced_commands_take_later_rounds_without_using_attempts() -> None:
    # Found by the fuzz above: the command at c0 always fails transiently (a null error,
    # attempts used) while c1 and c2 are paced (no attempt used) and come back at other
    # positions. Every query ends with its transient error after max_attempts attempts
    # of its own, in 6 requests: more than max_attempts ** 2, fewer than the bound.
    answer = {
        "status": 200,
        "body": b'{"result": {"result": [], "result_error": {"c0": null, '
        b'"c1": {"error": "QUERY_LIMIT_EXCEEDED"}, "c2": {"error": "QUERY_LIMIT_EXCEEDED"}}, '
        b'"result_time": []}}',
    }
    outcomes, requests = await get_dialogs(answer)
    assert [type(o.error) for o in outcomes] == [ServerError] * len(QUERIES)
    assert requests == 6
    check_get_dialogs(outcomes, requests, paced=paces_commands(answer))
