"""Requests the portal would rewrite inside a ``batch`` are sent alone (issue 15, item 6).

Inside a ``batch`` the portal replaces ``$result[cmd][field]`` and its kin in parameter
values and keys (PROTOCOL.md section 5). A batch job sends a request holding such a
pattern as a single call, with its value intact, and keeps its guarantees: one outcome
per query, duplicates sent once, input order, the window.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import attrs
import pytest
from _unit_helpers import (
    DIALOG_GET,
    body_of,
    dialog_example,
    error_body,
    fake_budget,
    make_client,
    recorded,
    webhook_url,
)
from aioresponses import CallbackResult, aioresponses
from hypothesis import given, settings
from hypothesis import strategies as st

from bitrix_openlines import Dialog, DialogGet, RetryPolicy
from bitrix_openlines.batch import BatchJob, holds_batch_reference
from bitrix_openlines.errors import AccessError, InvalidQueryError, ServerError
from bitrix_openlines.methods import Method
from bitrix_openlines.testing._portal import _substitute
from bitrix_openlines.wire import WireParams

BATCH = webhook_url("batch")
SINGLE = webhook_url(DIALOG_GET)
HOSTILE = "livechat|2|$result[c0][id]|201"


@pytest.mark.parametrize(
    "params",
    [
        {"USER_CODE": HOSTILE},
        {"USER_CODE": "$result[c0]"},
        {"USER_CODE": "x$RESULT[c0][id]"},  # any case
        {"DIALOG_ID": "chat$next[a]"},
        {"X": "$total[a]"},
        {"X": "$error[a]"},
        {"X": "$timestamp[1]"},  # the name runs on: "$time" + "stamp[1]"
        {"X": "$Time[0]"},
        {"FILTER": {"ID": ["1", "$result[c0][id]"]}},  # nested, in a list
        {"FILTER": {"$result[c0]": "1"}},  # a key
        {"$x": "1"},  # a key: the portal reads "$" + [...] in keys
    ],
)
def test_references_are_found(params: WireParams) -> None:
    assert holds_batch_reference(params)


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"USER_CODE": "livechat|1|1373|211"},
        {"USER_CODE": "livechat|1|$|2"},
        {"X": "$result"},  # no path: nothing to replace
        {"X": "$resul[c0]"},
        {"X": "result[c0]"},
        {"X": "price $5 [a]"},
        {"X": "[c0] $result"},  # the path must follow the name
        {"FILTER": {"ID": ["1", "2"]}},
    ],
)
def test_plain_values_are_not_references(params: WireParams) -> None:
    assert not holds_batch_reference(params)


_PIECE = st.lists(
    st.sampled_from(["", " ", "x", "|", "[", "]", "c0", "id", "$", "\t", "\u00a0"]), max_size=4
).map("".join)
_NAME = st.sampled_from(["result", "RESULT", "Result", "next", "time", "timestamp", "resul"])
_KEY = st.sampled_from(["c0", "id", "0", "", "c0][id", " "])
# Strings around a reference-like core, where the portal's rule has its edges.
_TEXT = st.builds(
    lambda before, name, gap, key, after: f"{before}${name}{gap}[{key}]{after}",
    _PIECE,
    _NAME,
    _PIECE,
    _KEY,
    _PIECE,
)


@settings(max_examples=1000, deadline=None)
@given(st.lists(st.one_of(_TEXT, _PIECE), min_size=1, max_size=3))
def test_every_value_the_portal_would_rewrite_is_found(texts: list[str]) -> None:
    # The fake portal's substitution follows the portal's source: whatever it changes,
    # the detector must have flagged (it may flag more).
    params: WireParams = {f"P{i}": text for i, text in enumerate(texts)}
    answers = {name: {"c0": {"id": 1, "0": "z"}} for name in ("result", "next", "time")}
    if _substitute(params, answers) != params:
        assert holds_batch_reference(params)


def test_the_oracle_rewrites_what_the_portal_rewrites() -> None:
    # The property above is only as good as its oracle: it must rewrite these.
    answers = {"result": {"c0": {"id": 1}}}
    for text in (HOSTILE, "$result[c0][id]", "$RESULT[c0]", "a$resultx[c0][id]b", "$next[c0]"):
        assert _substitute({"P": text}, answers) != {"P": text}


def test_detection_is_linear_on_a_long_hostile_value() -> None:
    # Many names and brackets but no closing one: still one pass.
    assert holds_batch_reference({"X": "$result" * 100_000 + "[" * 100_000})
    assert not holds_batch_reference({"X": "$resul" * 100_000 + "[" * 100_000})


# -- the job through a client, HTTP mocked ----------------------------------------------


def _dialog(chat_id: int, docs: Path) -> dict[str, Any]:
    result: dict[str, Any] = copy.deepcopy(dialog_example(docs)["result"])
    result["id"] = chat_id
    result["dialog_id"] = f"chat{chat_id}"
    return result


def _commands(kwargs: dict[str, Any]) -> dict[str, dict[str, str]]:
    cmd = body_of(kwargs)["cmd"]
    return {
        key: dict(parse_qsl(urlsplit(text).query, keep_blank_values=True))
        for key, text in cmd.items()
    }


class _Portal:
    """A mocked portal: batch commands by CHAT_ID; single calls answer ``single``."""

    def __init__(self, docs: Path) -> None:
        self.docs = docs
        self.batches: list[dict[str, dict[str, str]]] = []

    def batch(self, url: Any, **kwargs: Any) -> CallbackResult:
        commands = _commands(kwargs)
        self.batches.append(commands)
        result = {k: _dialog(int(p["CHAT_ID"]), self.docs) for k, p in commands.items()}
        return CallbackResult(
            payload={
                "result": {
                    "result": result,
                    "result_error": [],
                    "result_total": [],
                    "result_next": [],
                    "result_time": [],
                },
                "time": dialog_example(self.docs)["time"],
            }
        )


async def test_a_reference_goes_alone_with_its_value_intact(docs_examples: Path) -> None:
    portal = _Portal(docs_examples)
    with aioresponses() as mocked:
        mocked.post(BATCH, callback=portal.batch, repeat=True)
        mocked.post(SINGLE, payload=error_body("ACCESS_ERROR"), status=200)
        async with make_client() as client:
            outcomes = await client.get_dialogs(
                [{"chat_id": 1}, {"user_code": HOSTILE}, {"chat_id": 2}, {"user_code": HOSTILE}]
            )
        singles = recorded(mocked, "POST", SINGLE)
    # The duplicate was sent once; the value went out as given, in a JSON body.
    assert [body_of(call.kwargs) for call in singles] == [{"USER_CODE": HOSTILE}]
    # The batch carries the plain queries only, and no "$" at all.
    assert portal.batches == [{"c0": {"CHAT_ID": "1"}, "c1": {"CHAT_ID": "2"}}]
    assert [o.index for o in outcomes] == [0, 1, 2, 3]
    assert [o.dialog.chat_id if o.dialog else None for o in outcomes] == [1, None, 2, None]
    assert all(isinstance(outcomes[i].error, AccessError) for i in (1, 3))
    assert [o.query for o in outcomes][3] == {"user_code": HOSTILE}


async def test_a_single_call_result_is_structured_with_its_time(docs_examples: Path) -> None:
    with aioresponses() as mocked:
        mocked.post(SINGLE, payload=dialog_example(docs_examples))
        async with make_client() as client:
            (outcome,) = await client.get_dialogs([{"user_code": HOSTILE}])
        assert recorded(mocked, "POST", BATCH) == []
    assert isinstance(outcome.dialog, Dialog)
    assert outcome.dialog.id == 1777
    assert outcome.time is not None
    assert outcome.time.duration == pytest.approx(0.423382043838501)


async def test_a_single_call_is_retried_by_the_policy_then_fails_alone(
    docs_examples: Path,
) -> None:
    portal = _Portal(docs_examples)
    with aioresponses() as mocked:
        mocked.post(BATCH, callback=portal.batch, repeat=True)
        mocked.post(SINGLE, payload=error_body("INTERNAL_SERVER_ERROR"), status=500, repeat=True)
        async with make_client(retry=RetryPolicy.no_wait(max_attempts=3)) as client:
            outcomes = await client.get_dialogs([{"user_code": HOSTILE}, {"chat_id": 5}])
        singles = recorded(mocked, "POST", SINGLE)
    assert len(singles) == 3  # idempotent: the policy's attempts
    assert isinstance(outcomes[0].error, ServerError)
    assert outcomes[1].dialog is not None
    assert outcomes[1].dialog.chat_id == 5


@attrs.frozen(kw_only=True)
class _Write(Method[Any]):
    """A method that must not be repeated (not idempotent)."""

    __api_method__ = "imopenlines.dialog.get"
    __returns__ = Any
    __idempotent__ = False

    user_code: str = attrs.field(metadata={"wire": "USER_CODE"})


async def test_a_non_idempotent_single_call_is_sent_once() -> None:
    with aioresponses() as mocked:
        mocked.post(SINGLE, payload=error_body("INTERNAL_SERVER_ERROR"), status=500, repeat=True)
        async with make_client(retry=RetryPolicy.no_wait(max_attempts=3)) as client:
            (outcome,) = await client.batch([_Write(user_code=HOSTILE)])
        assert len(recorded(mocked, "POST", SINGLE)) == 1
    assert isinstance(outcome.error, ServerError)


async def test_the_window_bounds_what_is_held_with_single_calls(docs_examples: Path) -> None:
    read = 0
    window = 50

    def queries() -> Iterator[dict[str, Any]]:
        nonlocal read
        for n in range(400):
            read += 1
            yield {"user_code": f"livechat|1|$result[c{n}][id]|{n}"}

    held: list[int] = []
    with aioresponses() as mocked:
        mocked.post(SINGLE, payload=dialog_example(docs_examples), repeat=True)
        async with make_client() as client:
            count = 0
            async for outcome in client.iter_dialogs(queries(), window=window, concurrency=8):
                assert outcome.index == count
                count += 1
                held.append(read - count)
        assert len(recorded(mocked, "POST", SINGLE)) == 400
    assert count == 400
    assert max(held) < window


async def test_a_job_that_cannot_send_alone_refuses_the_request(docs_examples: Path) -> None:
    sent: list[WireParams] = []

    async def send_batch(params: WireParams, *, idempotent: bool, commands: int) -> Any:
        sent.append(params)
        raise AssertionError("nothing may go in a batch here")

    job = BatchJob(
        send_batch,
        [DialogGet(user_code=HOSTILE)],
        retry=RetryPolicy.no_wait(),
        budget=fake_budget(),
        to_request=lambda query: query,
    )
    (outcome,) = [o async for o in job]
    assert sent == []
    assert isinstance(outcome.error, InvalidQueryError)
    assert "batch reference" in str(outcome.error)
