"""The sync facade: from plain code, from threads, and from inside a running event loop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest

from bitrix_openlines import DialogGet, RetryPolicy, SyncOpenLinesClient, WebhookAuth
from bitrix_openlines.errors import AccessError, ClientClosedError
from bitrix_openlines.testing import ThreadedFakePortal

pytestmark = pytest.mark.integration


@pytest.fixture
def portal() -> Iterator[ThreadedFakePortal]:
    with ThreadedFakePortal(dialogs=200, forbidden=[4], rate=None) as fake:
        yield fake


def test_plain_sync_code(portal: ThreadedFakePortal) -> None:
    with SyncOpenLinesClient(WebhookAuth(portal.webhook_url), rate_limit=None) as client:
        dialog = client.get_dialog(chat_id=3)
        assert dialog.id == 3
        assert client(DialogGet(dialog_id="chat5")).id == 5
        assert client.call_response(DialogGet(chat_id=6)).time is not None
        assert isinstance(client.call_raw("imopenlines.revision.get"), dict)
        with pytest.raises(AccessError):
            client.get_dialog(chat_id=4)
        outcomes = client.get_dialogs([{"chat_id": i} for i in range(1, 121)])
        assert [o.index for o in outcomes] == list(range(120))
        assert [o.ok for o in outcomes].count(False) == 1
        streamed = list(client.iter_dialogs({"chat_id": i} for i in range(1, 201)))
        assert [o.dialog.id for o in streamed if o.dialog] == [i for i in range(1, 201) if i != 4]
        batch = client.batch([DialogGet(chat_id=1), DialogGet(chat_id=2)])
        assert [o.ok for o in batch] == [True, True]
    assert client.closed
    with pytest.raises(ClientClosedError, match="closed"):
        client.get_dialog(chat_id=1)


async def test_called_from_inside_a_running_loop(portal: ThreadedFakePortal) -> None:
    # As in a Jupyter cell or an async handler calling sync library code: a loop runs
    # in this thread, and the sync client blocks it briefly without needing it.
    assert asyncio.get_running_loop().is_running()
    with SyncOpenLinesClient(
        WebhookAuth(portal.webhook_url), rate_limit=None, retry=RetryPolicy.no_wait()
    ) as client:
        dialog = client.get_dialog(chat_id=7)
        assert dialog.id == 7
        outcomes = client.get_dialogs([{"chat_id": 8}, {"chat_id": 9}])
        assert [o.dialog.id for o in outcomes if o.dialog] == [8, 9]


def test_shared_between_threads(portal: ThreadedFakePortal) -> None:
    results: dict[int, int] = {}
    with SyncOpenLinesClient(WebhookAuth(portal.webhook_url), rate_limit=None) as client:

        def work(chat_id: int) -> None:
            results[chat_id] = client.get_dialog(chat_id=chat_id).id

        threads = [threading.Thread(target=work, args=(i,)) for i in range(10, 30)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert results == {i: i for i in range(10, 30)}


def test_breaking_out_of_the_sync_stream_cancels_the_rest(portal: ThreadedFakePortal) -> None:
    with SyncOpenLinesClient(WebhookAuth(portal.webhook_url), rate_limit=None) as client:
        stream = client.iter_dialogs([{"chat_id": i} for i in range(1, 201)], window=60)
        first = [next(stream) for _ in range(5)]
        stream.close()  # type: ignore[attr-defined]
        assert [o.index for o in first] == [0, 1, 2, 3, 4]
        # The client still works afterwards.
        assert client.get_dialog(chat_id=1).id == 1


def test_callback_calling_back_into_the_same_client_raises(
    portal: ThreadedFakePortal,
) -> None:
    seen: list[Exception] = []
    with SyncOpenLinesClient(WebhookAuth(portal.webhook_url), rate_limit=None) as client:

        def progress(done: int, failed: int, total: int | None) -> None:
            try:
                client.get_dialog(chat_id=1)
            except RuntimeError as error:
                seen.append(error)

        client.get_dialogs([{"chat_id": 1}], progress=progress)
    assert len(seen) == 1
    assert "deadlock" in str(seen[0])


def test_session_is_refused(portal: ThreadedFakePortal) -> None:
    with pytest.raises(TypeError, match="session"):
        SyncOpenLinesClient(WebhookAuth(portal.webhook_url), session=object())  # type: ignore[call-arg]
