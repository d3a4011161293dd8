"""The HTTP edge: redirects, timeouts, network errors, the session's lifecycle, headers."""

from __future__ import annotations

import json
import traceback
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from _unit_helpers import (
    DIALOG_GET,
    WEBHOOK_CODE,
    dialog_example,
    make_client,
    recorded,
    webhook_url,
)
from aioresponses import aioresponses
from yarl import URL as URL_OBJ

from bitrix_openlines import RetryPolicy, Timeouts, WebhookAuth, __version__
from bitrix_openlines._redact import Redactor
from bitrix_openlines.auth import Auth, Credentials
from bitrix_openlines.errors import (
    ClientClosedError,
    InvalidURLError,
    PortalMovedError,
    RequestTimeoutError,
    TransportError,
)
from bitrix_openlines.transport import Transport
from bitrix_openlines.wire import RawResponse

URL = webhook_url(DIALOG_GET)

# -- redirects ---------------------------------------------------------------------------


@pytest.mark.parametrize("status", [301, 302, 307, 308])
@pytest.mark.parametrize(
    ("location", "new_address"),
    [
        (
            f"https://renamed.bitrix24.com/rest/1/{WEBHOOK_CODE}/imopenlines.dialog.get.json",
            "https://renamed.bitrix24.com",
        ),
        ("https://renamed.bitrix24.com:8443/rest/", "https://renamed.bitrix24.com:8443"),
        ("https://renamed.bitrix24.com", "https://renamed.bitrix24.com"),
        (f"https://admin:{WEBHOOK_CODE}@renamed.bitrix24.com/x", "https://renamed.bitrix24.com"),
        (f"/rest/1/{WEBHOOK_CODE}/elsewhere.json", None),
        ("", None),
        # A network-path reference: a new host, on the request's scheme.
        (f"//renamed.bitrix24.com/rest/1/{WEBHOOK_CODE}/x.json", "https://renamed.bitrix24.com"),
        # Another path of the same address is no new address.
        (f"https://portal.bitrix24.com/rest/1/{WEBHOOK_CODE}/x.json", None),
        ("https://portal.bitrix24.com:443/x", None),
        # Only the origin: no query, fragment or user info; host lower-cased.
        (
            f"HTTPS://Renamed.Bitrix24.COM?auth={WEBHOOK_CODE}#{WEBHOOK_CODE}",
            "https://renamed.bitrix24.com",
        ),
        (f"https://{WEBHOOK_CODE}@renamed.bitrix24.com", "https://renamed.bitrix24.com"),
        ("https://renamed.bitrix24.com:443/rest/", "https://renamed.bitrix24.com"),
        ("https://[2001:DB8::1]:8443/rest/", "https://[2001:db8::1]:8443"),
        # Another scheme: plain http is the https form of its host (never a downgrade)...
        (f"http://renamed.bitrix24.com/rest/1/{WEBHOOK_CODE}/", "https://renamed.bitrix24.com"),
        ("http://renamed.bitrix24.com:80/", "https://renamed.bitrix24.com"),
        ("http://renamed.bitrix24.com:8080/", None),
        # ... and anything but http(s) is no address at all.
        ("ftp://renamed.bitrix24.com/rest/", None),
        ("javascript:alert(1)", None),
        ("mailto:admin@renamed.bitrix24.com", None),
        # Hosts that are no host names, ports that are no ports, a Location too long.
        ("https://bad_host!.bitrix24.com/", None),
        ("https://renamed.bitrix24.com:99999/", None),
        ("https://[portal/rest/", None),
        ("https://" + "a" * 3000 + ".com/", None),
        # A host that contains the webhook's code: not repeated.
        (f"https://{WEBHOOK_CODE}.example.com/", None),
    ],
)
async def test_redirect_is_portal_moved_and_not_followed(
    status: int, location: str, new_address: str | None
) -> None:
    with aioresponses() as mocked:
        mocked.post(URL, status=status, headers={"Location": location}, repeat=True)
        async with make_client() as client:
            with pytest.raises(PortalMovedError) as caught:
                await client.get_dialog(chat_id=13)
        # One request (not retried, not followed: no other URL was asked for).
        assert len(recorded(mocked, "POST", URL)) == 1
        assert len(mocked.requests) == 1
    error = caught.value
    assert error.new_address == new_address
    assert error.status == status
    assert error.method == DIALOG_GET
    assert WEBHOOK_CODE not in str(error)
    assert WEBHOOK_CODE not in repr(error)
    assert WEBHOOK_CODE not in repr(error.__dict__)
    assert "/rest/" not in str(error)
    if new_address:
        assert new_address in str(error)
    else:
        assert "not followed" in str(error)


@pytest.mark.parametrize(
    ("location", "new_address"),
    [
        ("http://127.0.0.1:9000/rest/1/code/x.json", "http://127.0.0.1:9000"),
        ("https://renamed.example/rest/", "https://renamed.example"),
        ("/rest/1/code/x.json", None),
        ("//localhost:9000/rest/", "http://localhost:9000"),
    ],
)
async def test_redirect_of_a_plain_http_portal_keeps_its_scheme(
    location: str, new_address: str | None
) -> None:
    # A loopback portal served over http (a fake portal): http stays http.
    url = "http://127.0.0.1:8000/rest/1/code/imopenlines.dialog.get.json"
    with aioresponses() as mocked:
        mocked.post(url, status=302, headers={"Location": location})
        async with make_client(auth=WebhookAuth("http://127.0.0.1:8000/rest/1/code/")) as client:
            with pytest.raises(PortalMovedError) as caught:
                await client.get_dialog(chat_id=13)
    assert caught.value.new_address == new_address


# -- timeouts and network errors ---------------------------------------------------------


@pytest.mark.parametrize(
    "exception",
    [
        TimeoutError(),
        TimeoutError("read timed out"),
        aiohttp.ServerTimeoutError("Timeout on reading data from socket"),
        aiohttp.ConnectionTimeoutError("Connection timeout"),
        aiohttp.SocketTimeoutError("Timeout on reading data from socket"),
    ],
    ids=lambda e: type(e).__name__,
)
async def test_timeouts_become_request_timeout_error(exception: Exception) -> None:
    with aioresponses() as mocked:
        mocked.post(URL, exception=exception)
        async with make_client(
            retry=RetryPolicy.never(), timeouts=Timeouts(connect=3.0, total=20.0)
        ) as client:
            with pytest.raises(RequestTimeoutError) as caught:
                await client.get_dialog(chat_id=13)
    error = caught.value
    assert error.method == DIALOG_GET
    assert error.status is None
    assert "connect 3.0s" in str(error)
    assert "total 20.0s" in str(error)


async def test_timeouts_are_retried_for_dialog_get(docs_examples: Path) -> None:
    with aioresponses() as mocked:
        mocked.post(URL, exception=TimeoutError())
        mocked.post(URL, payload=dialog_example(docs_examples))
        async with make_client() as client:
            assert (await client.get_dialog(chat_id=13)).id == 1777
        assert len(recorded(mocked, "POST", URL)) == 2


@pytest.mark.parametrize(
    "exception",
    [
        aiohttp.ClientOSError(104, "Connection reset by peer"),
        aiohttp.ServerDisconnectedError(),
        aiohttp.ClientPayloadError("Response payload is not completed"),
        aiohttp.ClientConnectionError("Cannot connect"),
    ],
    ids=lambda e: type(e).__name__,
)
async def test_network_errors_become_transport_error(exception: Exception) -> None:
    with aioresponses() as mocked:
        mocked.post(URL, exception=exception)
        async with make_client(retry=RetryPolicy.never()) as client:
            with pytest.raises(TransportError) as caught:
                await client.get_dialog(chat_id=13)
    error = caught.value
    assert type(error) is TransportError
    assert error.method == DIALOG_GET
    assert error.status is None
    assert type(exception).__name__ in str(error)
    assert error.__cause__ is None
    assert error.__suppress_context__ is True


# -- invalid URLs: bad input, sent once, never retried -----------------------------------

# URLs no request can be sent to: yarl refuses the first two, aiohttp the last one.
BAD_URLS = [
    f"https://portal.bitrix24.com:99999/rest/1/{WEBHOOK_CODE}/",
    f"https://[portal.bitrix24.com/rest/1/{WEBHOOK_CODE}/",
    f"ftp://portal.bitrix24.com/rest/1/{WEBHOOK_CODE}/",
]


class BadURLAuth(Auth):
    """Credentials whose URL gets past every check (a custom ``Auth``); counts attempts."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.prepared = 0
        self.redactor = Redactor((WEBHOOK_CODE,))

    @property
    def portal(self) -> str:
        return "https://portal.bitrix24.com"

    async def credentials(self) -> Credentials:
        self.prepared += 1
        return Credentials(base=self.base)


@pytest.mark.parametrize("base", BAD_URLS)
async def test_invalid_url_is_attempted_once_and_not_retried(base: str) -> None:
    auth = BadURLAuth(base)
    # A real session (nothing mocked): the URL is refused before any connection.
    async with make_client(auth, retry=RetryPolicy.no_wait(max_attempts=5)) as client:
        with pytest.raises(InvalidURLError) as caught:
            await client.get_dialog(chat_id=13)  # idempotent: a network error is retried
    assert auth.prepared == 1
    error = caught.value
    assert isinstance(error, ValueError)
    assert not isinstance(error, TransportError)
    assert error.method == DIALOG_GET
    assert error.status is None
    assert "invalid" in str(error)
    # Not in the text, the repr, nor a chained original quoting the URL.
    for text in (str(error), repr(error), "".join(traceback.format_exception(error))):
        assert WEBHOOK_CODE not in text
    assert RetryPolicy().reason(error, idempotent=True) is None


@pytest.mark.parametrize("base", BAD_URLS)
async def test_transport_refuses_an_invalid_url_without_the_secrets_known(base: str) -> None:
    transport = Transport()
    try:
        with pytest.raises(InvalidURLError) as caught:
            await transport.post(f"{base}{DIALOG_GET}.json", b"{}", method=DIALOG_GET)
        with pytest.raises(InvalidURLError):
            await transport.get(f"{base}x", {"a": "1"}, method="oauth.token")
    finally:
        await transport.close()
    assert WEBHOOK_CODE not in str(caught.value)
    assert WEBHOOK_CODE not in repr(caught.value)


async def test_aiohttp_invalid_url_is_not_a_transport_error() -> None:
    # aiohttp's own refusal (an InvalidURL is a ClientError too): not retried, and its
    # text, which is the URL, is not quoted.
    with aioresponses() as mocked:
        mocked.post(URL, exception=aiohttp.InvalidURL(URL, "bad host"), repeat=True)
        async with make_client() as client:
            with pytest.raises(InvalidURLError) as caught:
                await client.get_dialog(chat_id=13)
        assert len(recorded(mocked, "POST", URL)) == 1
    assert "bad host" in str(caught.value)
    assert WEBHOOK_CODE not in str(caught.value)
    assert WEBHOOK_CODE not in repr(caught.value)


async def test_invalid_url_under_a_mocked_session_is_not_retried() -> None:
    # aioresponses parses the URL itself (a bare ValueError from yarl); still not retried.
    auth = BadURLAuth(BAD_URLS[0])
    with aioresponses() as mocked:
        async with make_client(auth) as client:
            with pytest.raises(InvalidURLError):
                await client.get_dialog(chat_id=13)
        assert not mocked.requests
    assert auth.prepared == 1


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"connect": 0}, "connect"),
        ({"connect": -1.0}, "connect"),
        ({"total": 0}, "total"),
        ({"total": "75"}, "total"),
        ({"total": True}, "total"),
    ],
)
def test_timeouts_validation(kwargs: dict[str, Any], name: str) -> None:
    with pytest.raises(ValueError, match=f"Timeouts.{name}"):
        Timeouts(**kwargs)


def test_default_timeouts_leave_room_for_the_60s_cloud_limit() -> None:
    assert Timeouts().total > 60


# -- the session's lifecycle -------------------------------------------------------------


async def test_owned_session_is_closed_on_close(docs_examples: Path) -> None:
    with aioresponses() as mocked:
        mocked.post(URL, payload=dialog_example(docs_examples))
        async with make_client() as client:
            await client.get_dialog(chat_id=13)
            transport = client._session.transport
            assert transport.owns_session is True
            session = transport._session
            assert session is not None
            assert session.closed is False
    assert session.closed is True


async def test_closing_an_unused_client_is_harmless() -> None:
    client = make_client()
    await client.close()
    await client.close()
    assert client._session.transport._session is None


async def test_injected_session_is_never_closed(docs_examples: Path) -> None:
    with aioresponses() as mocked:
        mocked.post(URL, payload=dialog_example(docs_examples), repeat=True)
        async with aiohttp.ClientSession() as session:
            async with make_client(session=session) as client:
                assert client._session.transport.owns_session is False
                await client.get_dialog(chat_id=13)
            assert session.closed is False
            await client.close()
            assert session.closed is False
            # The session still works for its owner.
            async with session.post(URL, json={}) as response:
                assert response.status == 200


@pytest.mark.parametrize("injected", [False, True])
async def test_client_used_after_close_raises_a_clear_error(
    docs_examples: Path, injected: bool
) -> None:
    with aioresponses() as mocked:
        mocked.post(URL, payload=dialog_example(docs_examples), repeat=True)
        async with aiohttp.ClientSession() as session:
            client = make_client(session=session if injected else None)
            async with client:
                await client.get_dialog(chat_id=13)
            with pytest.raises(ClientClosedError, match="closed") as caught:
                await client.get_dialog(chat_id=13)
            assert caught.value.method == DIALOG_GET
            with pytest.raises(ClientClosedError, match="closed"):
                await client.call_raw(DIALOG_GET, {"CHAT_ID": 13})
            outcomes = await client.get_dialogs([{"chat_id": 13}, {"chat_id": 14}])
            assert [type(o.error) for o in outcomes] == [ClientClosedError] * 2
        assert len(recorded(mocked, "POST", URL)) == 1


def test_session_must_be_a_client_session() -> None:
    with pytest.raises(TypeError, match="session"):
        Transport("not a session")  # type: ignore[arg-type]


# -- what is sent ------------------------------------------------------------------------


async def test_headers_and_json_body(docs_examples: Path) -> None:
    url = webhook_url("imopenlines.crm.message.add")
    with aioresponses() as mocked:
        mocked.post(url, payload={"result": True})
        async with make_client() as client:
            await client.call_raw(
                "imopenlines.crm.message.add", {"MESSAGE": "Здравствуйте", "CHAT_ID": 13}
            )
        (call,) = recorded(mocked, "POST", url)
    headers = call.kwargs["headers"]
    assert headers["User-Agent"] == f"bitrix-openlines/{__version__}"
    assert headers["Content-Type"] == "application/json"
    assert headers["Accept"] == "application/json"
    assert call.kwargs["allow_redirects"] is False
    raw = call.kwargs["data"]
    assert isinstance(raw, bytes)
    assert "Здравствуйте".encode() in raw  # UTF-8, not \\u escapes
    assert json.loads(raw) == {"MESSAGE": "Здравствуйте", "CHAT_ID": "13"}


async def test_transport_get_sends_the_query_string() -> None:
    url = "https://oauth.bitrix.info/oauth/token/"
    with aioresponses() as mocked:
        mocked.get(f"{url}?a=1&b=two", payload={"ok": True})
        transport = Transport()
        try:
            raw = await transport.get(url, {"b": "two", "a": "1"}, method="oauth.token")
        finally:
            await transport.close()
    assert raw.status == 200
    assert json.loads(raw.body) == {"ok": True}
    assert raw.content_type.startswith("application/json")


async def test_post_sends_the_bytes_as_json_and_returns_bytes() -> None:
    with aioresponses() as mocked:
        mocked.post(URL, body=b'{"result":1}', content_type="application/json")
        transport = Transport()
        try:
            raw = await transport.post(URL, b'{"CHAT_ID":"13"}', method=DIALOG_GET)
        finally:
            await transport.close()
        (request,) = mocked.requests[("POST", URL_OBJ(URL))]
    assert request.kwargs["data"] == b'{"CHAT_ID":"13"}'
    assert request.kwargs["headers"]["Content-Type"] == "application/json"
    assert raw == RawResponse(200, b'{"result":1}', raw.content_type)


def test_redactor_retires_old_secrets_and_stays_bounded() -> None:
    redactor = Redactor(["fixed-secret"], remember=3)
    redactor.set_current(["alpha-secret", "alpha-secret"])
    assert redactor("x alpha-secret fixed-secret") == "x *** ***"
    for name in ("beta", "gamma", "delta", "epsilon"):
        redactor.set_current([f"{name}-secret"])
    # The current one, the fixed one and the last 3 retired ones; alpha is forgotten.
    assert set(redactor.secrets) == {
        "fixed-secret",
        "epsilon-secret",
        "delta-secret",
        "gamma-secret",
        "beta-secret",
    }
    for _ in range(100):
        redactor.set_current(["epsilon-secret"])
    assert len(redactor.secrets) == 5
    assert "secret" not in repr(redactor)


async def test_borrowed_session_without_user_agent_still_names_the_sdk() -> None:
    url = webhook_url("imopenlines.revision.get")
    with aioresponses() as mocked:
        mocked.post(url, payload={"result": {}})
        async with aiohttp.ClientSession() as session:
            async with make_client(session=session) as client:
                await client.call_raw("imopenlines.revision.get")
            assert not session.closed
        (call,) = recorded(mocked, "POST", url)
    assert call.kwargs["headers"]["User-Agent"] == f"bitrix-openlines/{__version__}"


async def test_borrowed_session_keeps_its_own_user_agent() -> None:
    url = webhook_url("imopenlines.revision.get")
    with aioresponses() as mocked:
        mocked.post(url, payload={"result": {}})
        async with aiohttp.ClientSession(headers={"User-Agent": "my-app/2"}) as session:
            async with make_client(session=session) as client:
                await client.call_raw("imopenlines.revision.get")
        (call,) = recorded(mocked, "POST", url)
    assert call.kwargs["headers"]["User-Agent"] == "my-app/2"
