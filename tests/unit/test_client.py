"""``OpenLinesClient``: what it sends, what it returns, what it refuses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import pytest
from _unit_helpers import (
    DIALOG_GET,
    WEBHOOK,
    body_of,
    dialog_example,
    fake_budget,
    load_example,
    make_client,
    oauth_auth,
    recorded,
    webhook_auth,
    webhook_url,
)
from aioresponses import aioresponses

from bitrix_openlines import (
    Dialog,
    DialogGet,
    Hooks,
    OpenLinesClient,
    RateLimit,
    Response,
    RetryPolicy,
    Timeouts,
    UserCode,
)
from bitrix_openlines.methods import Method
from bitrix_openlines.ratelimit import LeakyBucketLimiter

URL = webhook_url(DIALOG_GET)


@pytest.mark.parametrize(
    ("kwargs", "body"),
    [
        ({"chat_id": 13}, {"CHAT_ID": "13"}),
        ({"dialog_id": "chat29"}, {"DIALOG_ID": "chat29"}),
        ({"session_id": 1743}, {"SESSION_ID": "1743"}),
        ({"user_code": "livechat|1|1373|211"}, {"USER_CODE": "livechat|1|1373|211"}),
        ({"user_code": "imol|livechat|1|1373|211"}, {"USER_CODE": "imol|livechat|1|1373|211"}),
        (
            {"user_code": UserCode("livechat", 1, "1373", "211")},
            {"USER_CODE": "livechat|1|1373|211"},
        ),
    ],
)
async def test_get_dialog_posts_the_identifier(
    docs_examples: Path, kwargs: dict[str, Any], body: dict[str, Any]
) -> None:
    with aioresponses() as mocked:
        mocked.post(URL, payload=dialog_example(docs_examples))
        async with make_client() as client:
            dialog = await client.get_dialog(**kwargs)
        (call,) = recorded(mocked, "POST")
    assert body_of(call.kwargs) == body
    assert isinstance(dialog, Dialog)
    assert dialog.id == 1777


async def test_calling_a_method_object(docs_examples: Path) -> None:
    with aioresponses() as mocked:
        mocked.post(URL, payload=dialog_example(docs_examples), repeat=True)
        async with make_client() as client:
            dialog = await client(DialogGet(dialog_id="chat1777"))
            response = await client.call_response(DialogGet(dialog_id="chat1777"))
        calls = recorded(mocked, "POST", URL)
    assert [body_of(c.kwargs) for c in calls] == [{"DIALOG_ID": "chat1777"}] * 2
    assert dialog.dialog_id == "chat1777"
    assert isinstance(response, Response)
    assert response.result == dialog
    assert response.time is not None
    assert response.time.operating_reset_at == 1773684278.0


async def test_call_refuses_what_is_not_a_method() -> None:
    with aioresponses() as mocked:
        async with make_client() as client:
            with pytest.raises(TypeError, match="method"):
                await client.call(DIALOG_GET)  # type: ignore[arg-type]
            with pytest.raises(TypeError, match="method"):
                await client({"chat_id": 13})  # type: ignore[arg-type]
        assert mocked.requests == {}


@attrs.frozen(kw_only=True)
class _PinAll(Method[list[int]]):
    __api_method__ = "imopenlines.session.mode.pinAll"
    __returns__ = list[int]


async def test_call_returns_total_and_next(docs_examples: Path) -> None:
    body = load_example(docs_examples, "imopenlines.session.mode.pinAll__200_success.json")
    body.update(total=120, next=50)
    with aioresponses() as mocked:
        mocked.post(webhook_url("imopenlines.session.mode.pinAll"), payload=body)
        async with make_client() as client:
            response = await client.call_response(_PinAll())
    assert response.result == [339, 337]
    assert (response.total, response.next) == (120, 50)
    assert response.time is not None
    assert response.time.start == 1773673238.0


# -- call_raw ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "example", "expected"),
    [
        (
            "imopenlines.crm.chat.getLastId",
            "imopenlines.crm.chat.getLastId__200_success.json",
            1763,
        ),
        (
            "imopenlines.session.mode.pinAll",
            "imopenlines.session.mode.pinAll__200_success.json",
            [339, 337],
        ),
        (
            "imopenlines.crm.chat.get",
            "imopenlines.crm.chat.get__200_success.json",
            [{"CHAT_ID": "1763", "CONNECTOR_ID": "livechat", "CONNECTOR_TITLE": "Live Chat"}],
        ),
        (
            "imopenlines.config.path.get",
            "imopenlines.config.path.get__200_success.json",
            {"SERVER_ADDRESS": "https://example.bitrix24.com", "PUBLIC_PATH": "/contact_center/"},
        ),
        (
            "imopenlines.session.open",
            "imopenlines.session.open__200_success.json",
            {"chatId": "1763"},
        ),
    ],
)
async def test_call_raw_returns_the_raw_result(
    docs_examples: Path, method: str, example: str, expected: Any
) -> None:
    with aioresponses() as mocked:
        mocked.post(webhook_url(method), payload=load_example(docs_examples, example))
        async with make_client() as client:
            result = await client.call_raw(method, {"CHAT_ID": 1763})
        (call,) = recorded(mocked, "POST")
    assert result == expected
    assert body_of(call.kwargs) == {"CHAT_ID": "1763"}


@pytest.mark.parametrize("result", [True, None, "text", 0, [], {}])
async def test_call_raw_returns_scalars_and_empties_as_is(result: Any) -> None:
    url = webhook_url("imopenlines.operator.answer")
    with aioresponses() as mocked:
        mocked.post(url, payload={"result": result})
        async with make_client() as client:
            assert await client.call_raw("imopenlines.operator.answer") == result
        (call,) = recorded(mocked, "POST")
    assert body_of(call.kwargs) == {}


async def test_call_raw_dialog_get_is_not_structured(docs_examples: Path) -> None:
    body = dialog_example(docs_examples)
    with aioresponses() as mocked:
        mocked.post(URL, payload=body)
        async with make_client() as client:
            assert await client.call_raw(DIALOG_GET, {"CHAT_ID": 1777}) == body["result"]


@pytest.mark.parametrize(
    "method",
    [
        "",
        "bad name",
        "imopenlines/dialog.get",
        "../imopenlines.dialog.get",
        "1imopenlines.dialog.get",
        ".dialog.get",
        "imopenlines.dialog.",
        "imopenlines..get",
        "imopenlines.dialog.get?auth=x",
        "imopenlines.dialog.get\n",
        None,
        5,
    ],
)
async def test_call_raw_refuses_bad_method_names(method: Any) -> None:
    with aioresponses() as mocked:
        async with make_client() as client:
            with pytest.raises(ValueError, match="method"):
                await client.call_raw(method)
        assert mocked.requests == {}


@pytest.mark.parametrize("params", [[("CHAT_ID", 13)], "CHAT_ID=13", 13])
async def test_call_raw_refuses_params_that_are_not_a_mapping(params: Any) -> None:
    with aioresponses() as mocked:
        async with make_client() as client:
            with pytest.raises(TypeError, match="params"):
                await client.call_raw(DIALOG_GET, params)
        assert mocked.requests == {}


# -- construction ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"rate_limit": 2}, "rate_limit"),
        ({"rate_limit": {"requests_per_second": 2}}, "rate_limit"),
        ({"limiter": "redis://localhost"}, "limiter"),
        ({"retry": 3}, "retry"),
        ({"timeouts": 30}, "timeouts"),
        ({"session": "session"}, "session"),
        ({"hooks": print}, "hooks"),
        ({"operating_budget": 480}, "operating_budget"),
    ],
)
def test_bad_constructor_arguments_name_the_parameter(kwargs: dict[str, Any], name: str) -> None:
    with pytest.raises(TypeError, match=name):
        OpenLinesClient(webhook_auth(), **kwargs)


@pytest.mark.parametrize("auth", [WEBHOOK, None, {"url": WEBHOOK}])
def test_auth_must_be_an_auth_object(auth: Any) -> None:
    with pytest.raises(TypeError, match="auth"):
        OpenLinesClient(auth)


def test_constructor_keeps_what_it_is_given() -> None:
    limiter = LeakyBucketLimiter(RateLimit.enterprise())
    budget = fake_budget()
    policy = RetryPolicy(max_attempts=2)
    auth = oauth_auth()
    client = OpenLinesClient(
        auth,
        limiter=limiter,
        rate_limit=RateLimit.standard(),  # ignored when a limiter is given
        retry=policy,
        operating_budget=budget,
        timeouts=Timeouts(connect=1.0, total=2.0),
        hooks=Hooks(),
    )
    assert client.auth is auth
    assert client.limiter is limiter
    assert client.retry_policy is policy
    assert client.operating_budget is budget
    assert repr(client) == f"OpenLinesClient({auth!r})"


async def test_webhook_posts_to_the_method_url(docs_examples: Path) -> None:
    with aioresponses() as mocked:
        mocked.post(f"{WEBHOOK}imopenlines.dialog.get.json", payload=dialog_example(docs_examples))
        async with make_client() as client:
            await client.get_dialog(chat_id=13)
        assert len(recorded(mocked, "POST", f"{WEBHOOK}imopenlines.dialog.get.json")) == 1
