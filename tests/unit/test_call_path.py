"""The single-call path's quick ways give what the plain ways give.

- ``json_body`` encodes with one C encoder built once: the bytes of
  ``json.dumps(wire, ensure_ascii=False, separators=(",", ":"))``, C or not;
- ``decode_json`` scans a usual body (an ASCII object) at once: the value and the
  failures of ``json.loads``, whatever the body;
- the session's bookkeeping of the calls in flight: a call made inside another on the same
  task, and a close() whose grace runs out before a call leaves.
"""

from __future__ import annotations

import asyncio
import codecs
import gc
import json
import sys
import types
import weakref
from typing import Any

import pytest
from _unit_helpers import DIALOG_GET, fake_budget, make_client, recorded, webhook_auth, webhook_url
from aioresponses import aioresponses
from hypothesis import example, given
from hypothesis import strategies as st

from bitrix_openlines import RetryPolicy, wire
from bitrix_openlines.errors import ClientClosedError, DecodeError
from bitrix_openlines.hooks import Hooks
from bitrix_openlines.session import Session
from bitrix_openlines.transport import Transport
from bitrix_openlines.wire import RawResponse, decode_json, json_body

# -- json_body ---------------------------------------------------------------------------

_TEXT = st.text(max_size=12)  # any code point, lone surrogates too (JSON escapes them)
_WIRE_VALUES = st.recursive(
    _TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_TEXT, inner, max_size=4),
    max_leaves=12,
)
_WIRE = st.dictionaries(_TEXT, _WIRE_VALUES, max_size=6)


def _dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode(
        "utf-8", "surrogatepass"
    )


@given(_WIRE)
@example({"MESSAGE": "Здравствуйте", "CHAT_ID": "13"})
@example({"A": '\u2028\u2029\x00\x1f"\\/', "B": ["", {}], "C": {"é": []}})
def test_json_body_is_json_dumps_compact_utf8(params: dict[str, Any]) -> None:
    _assert_json_body_is_dumps(params)


def _assert_json_body_is_dumps(params: dict[str, Any]) -> None:
    try:
        expected = _dumps(params)
    except UnicodeEncodeError:
        # A lone surrogate: to_wire refuses it before any body is built; the encoders
        # agree on the text, and UTF-8 cannot carry it.
        with pytest.raises(UnicodeEncodeError):
            json_body(params)
        return
    assert json_body(params) == expected


@given(_WIRE)
def test_json_body_without_the_c_encoder_gives_the_same_bytes(params: dict[str, Any]) -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(wire, "_encode", None)
        _assert_json_body_is_dumps(params)


def test_the_c_encoder_is_used_when_there_is_one(monkeypatch: pytest.MonkeyPatch) -> None:
    assert wire._c_encoder() is not None
    monkeypatch.setitem(sys.modules, "_json", None)  # import _json fails: no accelerator
    assert wire._c_encoder() is None


# -- decode_json -------------------------------------------------------------------------

_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | _TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_TEXT, inner, max_size=4),
    max_leaves=12,
)
_OBJECTS = st.dictionaries(_TEXT, _JSON_VALUES, max_size=5)
_AROUND = st.sampled_from(["", " ", "\n", "\r\n\t ", "x", "}", ",1", "\x00"])


def _outcome(call: Any) -> tuple[str, Any]:
    try:
        return "value", call()
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        return "error", type(exc).__name__


def _decoded(body: bytes) -> tuple[str, Any]:
    try:
        return "value", decode_json(RawResponse(200, body, "application/json"), DIALOG_GET)
    except DecodeError:
        return "error", None


def _loaded(body: bytes) -> tuple[str, Any]:
    # What decode_json made of json.loads before: an object, else a DecodeError.
    kind, value = _outcome(lambda: json.loads(body))
    if kind == "value" and isinstance(value, dict) and body.strip():
        return kind, value
    return "error", None


@given(
    value=_OBJECTS,
    ensure_ascii=st.booleans(),
    before=_AROUND,
    after=_AROUND,
    encoding=st.sampled_from(["utf-8", "utf-8-sig", "utf-16-le", "utf-16-be", "utf-32-le"]),
)
@example(value={"result": {"id": 1}}, ensure_ascii=True, before="", after="", encoding="utf-8")
@example(value={"a": "é"}, ensure_ascii=False, before="", after="", encoding="utf-16-le")
@example(value={}, ensure_ascii=True, before="", after="\n", encoding="utf-8")
@example(value={}, ensure_ascii=True, before="", after="x", encoding="utf-8")
def test_decode_json_agrees_with_json_loads(
    value: dict[str, Any], ensure_ascii: bool, before: str, after: str, encoding: str
) -> None:
    text = before + json.dumps(value, ensure_ascii=ensure_ascii) + after
    try:
        body = text.encode(encoding, "surrogatepass")
    except UnicodeEncodeError:
        return
    assert _decoded(body) == _loaded(body)


@pytest.mark.parametrize(
    "body",
    [
        b'{"result": {"id": 1}}',
        b'{"result":1}   ',
        b'{"result":1}{"result":2}',
        b'{"result":1',
        b"{",
        b'{"a":"\xff"}',
        b'{"a":"\xd0\x97"}',
        b'{"a":"\\ud800"}',
        b'{"a":NaN,"b":-Infinity}',
        b'{"a":1e400}',
        b'{"a":1,"a":2}',
        b'{"a":"\x01"}',
        codecs.BOM_UTF8 + b'{"a":1}',
        b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        b"[1]",
        b"  {}",
        b'{"a":',
        b'{"a":[',
        b'{"a":[1,',
        b'{"a":{"b":',
        b'{"a":1,"b":',
    ],
    ids=repr,
)
def test_decode_json_agrees_with_json_loads_on_edges(body: bytes) -> None:
    assert _decoded(body) == _loaded(body)


@given(value=_OBJECTS, ensure_ascii=st.booleans(), cut=st.integers(min_value=0))
@example(value={"a": [1, {"b": None}]}, ensure_ascii=True, cut=5)
def test_decode_json_agrees_with_json_loads_on_a_cut_body(
    value: dict[str, Any], ensure_ascii: bool, cut: int
) -> None:
    # A body cut anywhere (a dropped connection, a truncating proxy): a value may be
    # missing where one must start, or inside a string, a number, a keyword.
    try:
        body = json.dumps(value, ensure_ascii=ensure_ascii).encode()
    except UnicodeEncodeError:
        return
    body = body[: cut % (len(body) + 1)]
    assert _decoded(body) == _loaded(body)


# -- the calls in flight -----------------------------------------------------------------


def _session(transport: Transport) -> Session:
    return Session(
        webhook_auth(),
        transport=transport,
        limiter=None,
        budget=fake_budget(),
        retry=RetryPolicy.no_wait(),
        hooks=Hooks(),
    )


class _NestingTransport(Transport):
    """Calls the session again, from inside the first post, on the same task."""

    def __init__(self) -> None:
        super().__init__()
        self.session: Session | None = None
        self.seen_in_flight: list[int] = []

    async def post(self, url: Any, body: Any, **kwargs: Any) -> RawResponse:
        assert self.session is not None
        self.seen_in_flight.append(self.session.in_flight)
        if len(self.seen_in_flight) == 1:
            inner = await self.session.call(DIALOG_GET, {"CHAT_ID": "2"}, idempotent=True)
            assert inner.result == {"id": 2}
            self.seen_in_flight.append(self.session.in_flight)
            return RawResponse(200, b'{"result":{"id":1}}', "application/json")
        return RawResponse(200, b'{"result":{"id":2}}', "application/json")


async def test_a_call_inside_a_call_on_the_same_task_counts_once() -> None:
    transport = _NestingTransport()
    session = transport.session = _session(transport)
    answer = await session.call(DIALOG_GET, {"CHAT_ID": "1"}, idempotent=True)
    assert answer.result == {"id": 1}
    # One task, inside call() twice at once: one call in flight, and none after.
    assert transport.seen_in_flight == [1, 1, 1]
    assert session.in_flight == 0
    await session.close()


class _StubbornTransport(Transport):
    """A post that outlives a cancellation until it is released, then answers."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def post(self, url: Any, body: Any, **kwargs: Any) -> RawResponse:
        self.entered.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            await self.release.wait()  # swallows the cancellation: the call goes on
        return RawResponse(200, b'{"result":{"id":1}}', "application/json")


async def test_a_call_that_outlives_close_s_grace_is_forgotten_when_it_leaves() -> None:
    transport = _StubbornTransport()
    session = _session(transport)
    task = asyncio.ensure_future(session.call(DIALOG_GET, {"CHAT_ID": "1"}, idempotent=True))
    await transport.entered.wait()
    await session.close(grace=0.01)  # the call does not end within the grace
    assert session.in_flight == 1
    transport.release.set()
    answer = await task  # it swallowed the cancellation, and answered
    assert answer.result == {"id": 1}
    assert session.in_flight == 0
    # The session keeps no reference to the task that left.
    ref = weakref.ref(task)
    del task
    for _ in range(3):  # the loop drops its own references (done callbacks) meanwhile
        await asyncio.sleep(0)
    gc.collect()
    assert ref() is None
    with pytest.raises(ClientClosedError):
        await session.call(DIALOG_GET, {"CHAT_ID": "1"}, idempotent=True)


async def test_calls_in_flight_are_counted_through_aiohttp() -> None:
    url = webhook_url(DIALOG_GET)
    with aioresponses() as mocked:
        mocked.post(url, payload={"result": {"id": 1}}, repeat=True)
        async with make_client() as client:
            results = await asyncio.gather(
                *(client.call_raw(DIALOG_GET, {"CHAT_ID": 1}) for _ in range(5))
            )
            assert client.calls_in_flight == 0
        assert len(recorded(mocked, "POST", url)) == 5
    assert results == [{"id": 1}] * 5


# -- call_raw's checks, and what is made once --------------------------------------------


class _Name(str):
    """A str subclass: checked every time (only plain str names are remembered)."""


@pytest.mark.parametrize(
    "method",
    [
        "",
        "1profile",
        "imopenlines..dialog",
        "imopenlines.dialog.get.json/x",
        "a b",
        "\u212aey",
        13,
        None,
    ],
    ids=repr,
)
async def test_call_raw_refuses_what_is_not_a_method_name(method: Any) -> None:
    with aioresponses() as mocked:
        async with make_client() as client:
            for _ in range(2):  # refused again: a refusal is not remembered
                with pytest.raises(ValueError, match="method must be a REST method name"):
                    await client.call_raw(method)
        assert not mocked.requests


async def test_call_raw_checks_its_params_before_any_request() -> None:
    with aioresponses() as mocked:
        async with make_client() as client:
            with pytest.raises(TypeError, match="params must be a mapping, got list"):
                await client.call_raw(DIALOG_GET, [("CHAT_ID", 1)])  # type: ignore[arg-type]
        assert not mocked.requests


async def test_call_raw_remembers_at_most_so_many_names(monkeypatch: pytest.MonkeyPatch) -> None:
    from bitrix_openlines import client as client_module

    monkeypatch.setattr(client_module, "_METHOD_NAMES", set())
    monkeypatch.setattr(client_module, "_MAX_METHOD_NAMES", 3)
    names = [f"x.method{i}" for i in range(6)]
    with aioresponses() as mocked:
        for name in names:
            mocked.post(webhook_url(name), payload={"result": name}, repeat=True)
        async with make_client() as client:
            for name in [*names, *names, _Name("x.method0")]:
                assert await client.call_raw(name, types.MappingProxyType({"A": 1})) == name
            with pytest.raises(ValueError, match="REST method name"):
                await client.call_raw(_Name("x..bad"))
    assert set(names[:3]) == client_module._METHOD_NAMES


def test_an_endpoint_is_made_once_per_method_for_the_first_methods() -> None:
    credentials = webhook_auth()._credentials
    first = credentials.endpoint(DIALOG_GET)
    assert credentials.endpoint(DIALOG_GET) is first
    assert first.reveal() == webhook_url(DIALOG_GET)
    # Past the bound, endpoints are still right, made afresh each time.
    names = [f"x.method{i}" for i in range(100)]
    urls = [credentials.endpoint(name) for name in names]
    assert [url.reveal() for url in urls] == [webhook_url(name) for name in names]
    assert credentials.endpoint(names[0]) is urls[0]
    assert credentials.endpoint(names[-1]) is not urls[-1]
    assert credentials.endpoint(names[-1]).reveal() == webhook_url(names[-1])
    assert "q8w7e6r5" not in repr(credentials)
