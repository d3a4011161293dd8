"""The core client against the fake portal over real sockets (webhook auth)."""

from __future__ import annotations

from datetime import datetime

import pytest

from bitrix_openlines import DialogGet, OpenLinesClient, RetryPolicy, Timeouts, WebhookAuth
from bitrix_openlines.errors import (
    AccessError,
    AuthError,
    DecodeError,
    InvalidArgumentError,
    MethodNotFoundError,
    PortalMovedError,
    RequestTimeoutError,
    ServerError,
    TransportError,
)
from bitrix_openlines.testing import FakePortal, Faults

pytestmark = pytest.mark.integration


async def test_all_four_identifiers_resolve_the_same_dialog(
    portal: FakePortal, client: OpenLinesClient
) -> None:
    fake = portal.dialogs[9]
    by_chat = await client.get_dialog(chat_id=fake.chat_id)
    by_dialog = await client.get_dialog(dialog_id=fake.dialog_id)
    by_session = await client.get_dialog(session_id=fake.session_id)
    by_code = await client.get_dialog(user_code=fake.user_code)
    by_prefixed = await client(DialogGet(user_code="imol|" + fake.user_code))
    for dialog in (by_chat, by_dialog, by_session, by_code, by_prefixed):
        assert dialog == by_chat
    assert by_chat.id == fake.chat_id
    assert by_chat.dialog_id == f"chat{fake.chat_id}"
    assert by_chat.entity_id == fake.user_code
    assert str(by_chat.user_code) == fake.user_code
    assert by_chat.session_id == fake.session_id
    assert isinstance(by_chat.date_create, datetime)
    assert by_chat.date_create.tzinfo is not None
    assert by_chat.restrictions is not None
    assert by_chat.permissions is not None
    assert by_chat.extra == {}


async def test_call_exposes_the_time_block(portal: FakePortal, client: OpenLinesClient) -> None:
    response = await client.call_response(DialogGet(chat_id=1))
    assert response.result.id == 1
    assert response.time is not None
    assert response.time.start is not None
    assert response.time.finish is not None
    assert response.time.operating is not None
    assert response.time.operating_reset_at is not None


@pytest.mark.parametrize("chat_id", [3, 4, 999_999])
async def test_forbidden_and_unknown_dialogs_raise_access_error(
    client: OpenLinesClient, chat_id: int
) -> None:
    with pytest.raises(AccessError) as info:
        await client.get_dialog(chat_id=chat_id)
    assert info.value.code == "ACCESS_ERROR"
    assert info.value.status == 400
    assert info.value.method == "imopenlines.dialog.get"


async def test_unknown_user_code_is_access_error(client: OpenLinesClient) -> None:
    with pytest.raises(AccessError):
        await client.get_dialog(user_code="livechat|1|nope|nobody")


async def test_legacy_2024_portal_parses_into_dialog() -> None:
    async with (
        FakePortal(dialogs=5, rate=None, legacy_2024=True) as portal,
        OpenLinesClient(WebhookAuth(portal.webhook_url), rate_limit=None) as client,
    ):
        response = await client.call_response(DialogGet(chat_id=2))
        assert response.time is None
        dialog = response.result
        assert dialog.id == 2
        assert dialog.dialog_id == "chat2"  # the portal said null
        assert dialog.restrictions is None
        assert dialog.readed_list == ()
        # A call with no identifier at all (only possible raw) answers the 2024 error.
        with pytest.raises(InvalidArgumentError) as info:
            await client.call_raw("imopenlines.dialog.get", {})
        assert info.value.code == "DIALOG_ID_EMPTY"


async def test_current_portal_answers_access_error_without_identifier(
    client: OpenLinesClient,
) -> None:
    with pytest.raises(AccessError):
        await client.call_raw("imopenlines.dialog.get", {})


async def test_call_raw_returns_the_raw_result(client: OpenLinesClient) -> None:
    revision = await client.call_raw("imopenlines.revision.get")
    assert isinstance(revision, dict)
    raw = await client.call_raw("imopenlines.dialog.get", {"CHAT_ID": 5})
    assert raw["id"] == 5
    assert raw["dialog_id"] == "chat5"


async def test_unknown_method_is_method_not_found(client: OpenLinesClient) -> None:
    with pytest.raises(MethodNotFoundError) as info:
        await client.call_raw("imopenlines.no.such.method")
    assert info.value.status == 404


async def test_wrong_webhook_code_is_auth_error(portal: FakePortal) -> None:
    wrong = portal.webhook_url.rstrip("/").rsplit("/", 1)[0] + "/wrongcode123/"
    async with OpenLinesClient(WebhookAuth(wrong), rate_limit=None) as client:
        with pytest.raises(AuthError) as info:
            await client.get_dialog(chat_id=1)
    assert info.value.code == "INVALID_CREDENTIALS"
    assert "wrongcode123" not in str(info.value)
    assert portal.stats.by_method["imopenlines.dialog.get"] == 1  # not retried


async def test_moved_portal_raises_portal_moved_error() -> None:
    async with (
        FakePortal(dialogs=3, rate=None, moved_to="https://new-name.bitrix24.com") as portal,
        OpenLinesClient(WebhookAuth(portal.webhook_url), rate_limit=None) as client,
    ):
        with pytest.raises(PortalMovedError) as info:
            await client.get_dialog(chat_id=1)
    assert info.value.new_address == "https://new-name.bitrix24.com"
    assert info.value.status == 302


@pytest.mark.parametrize(
    ("faults", "error"),
    [
        (Faults(internal_error=1.0), ServerError),
        (Faults(bad_gateway=1.0), DecodeError),
        (Faults(drop=1.0), TransportError),
        (Faults(truncate=1.0), DecodeError),
    ],
)
async def test_persistent_faults_are_retried_then_raised(
    portal: FakePortal, faults: Faults, error: type[Exception]
) -> None:
    portal.set_faults(faults)
    policy = RetryPolicy.no_wait(max_attempts=3)
    async with OpenLinesClient(
        WebhookAuth(portal.webhook_url), retry=policy, rate_limit=None
    ) as client:
        with pytest.raises(error):
            await client.get_dialog(chat_id=1)
    assert portal.stats.by_method["imopenlines.dialog.get"] == 3


async def test_faults_not_retried_for_non_idempotent_raw_calls(portal: FakePortal) -> None:
    portal.set_faults(Faults(internal_error=1.0))
    async with OpenLinesClient(
        WebhookAuth(portal.webhook_url), retry=RetryPolicy.no_wait(), rate_limit=None
    ) as client:
        with pytest.raises(ServerError):
            await client.call_raw("imopenlines.revision.get")
    assert portal.stats.requests == 1


async def test_intermittent_faults_are_absorbed(portal: FakePortal) -> None:
    portal.set_faults(Faults(internal_error=0.1, bad_gateway=0.1, drop=0.1, truncate=0.1, seed=3))
    async with OpenLinesClient(
        WebhookAuth(portal.webhook_url),
        retry=RetryPolicy.no_wait(max_attempts=10),
        rate_limit=None,
    ) as client:
        for chat_id in range(5, 30):
            dialog = await client.get_dialog(chat_id=chat_id)
            assert dialog.id == chat_id
    assert sum(portal.stats.faults.values()) > 0


async def test_slow_answer_hits_the_total_timeout(portal: FakePortal) -> None:
    portal.set_faults(Faults(slow=1.0, slow_seconds=2.0))
    async with OpenLinesClient(
        WebhookAuth(portal.webhook_url),
        retry=RetryPolicy.never(),
        rate_limit=None,
        timeouts=Timeouts(connect=1.0, total=0.3),
    ) as client:
        with pytest.raises(RequestTimeoutError):
            await client.get_dialog(chat_id=1)
