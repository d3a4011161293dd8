"""Constants and helpers shared by the unit tests (a plain module, not collected)."""

from __future__ import annotations

import asyncio
import copy
import json
import pickle
import re
import time
from pathlib import Path
from typing import Any

from aioresponses import aioresponses

from bitrix_openlines import OAuthAuth, OAuthTokens, OpenLinesClient, RetryPolicy, WebhookAuth
from bitrix_openlines.auth import Auth
from bitrix_openlines.ratelimit import OperatingBudget

PORTAL = "https://portal.bitrix24.com"
WEBHOOK_CODE = "q8w7e6r5t4y3u2i1"
WEBHOOK = f"{PORTAL}/rest/1/{WEBHOOK_CODE}/"
DIALOG_GET = "imopenlines.dialog.get"

OAUTH_ENDPOINT = f"{PORTAL}/rest/"
TOKEN_URL = "https://oauth.bitrix.info/oauth/token/"
TOKEN_URL_RE = re.compile(r"^https://oauth\.bitrix\.info/oauth/token/\?.*$")
CLIENT_ID = "app.65f1a2b3c4d5e6.12345678"
CLIENT_SECRET = "Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2Jh1Gf0"
OLD_ACCESS = "oldaccess0a1b2c3d4e5f6a7b8c9d0e1f2"
OLD_REFRESH = "oldrefresh9z8y7x6w5v4u3t2s1r0q9p8"

# The new pair of the official refresh example (oauth__token_refresh__200.json).
NEW_ACCESS = "ydtj8pho532wydb5ixk78ol7uqlb7sch"
NEW_REFRESH = "3s6lr4kr3cv2od4v853gvrchb875bwxb"


def webhook_url(method: str) -> str:
    """Return the URL the client posts ``method`` to through the test webhook."""
    return f"{WEBHOOK}{method}.json"


def oauth_url(method: str) -> str:
    """Return the URL the client posts ``method`` to with OAuth tokens."""
    return f"{OAUTH_ENDPOINT}{method}.json"


def load_example(docs: Path, name: str) -> dict[str, Any]:
    """Load one of the official docs' example bodies."""
    value = json.loads((docs / name).read_text(encoding="utf-8"))
    assert isinstance(value, dict)
    return value


def dialog_example(docs: Path) -> dict[str, Any]:
    """The current (2026) ``imopenlines.dialog.get`` success body."""
    return load_example(docs, "imopenlines.dialog.get__200_success.json")


def error_body(code: str, description: str = "") -> dict[str, Any]:
    """An error body as the portal writes it."""
    return {"error": code, "error_description": description or f"{code} description"}


def body_of(call_kwargs: dict[str, Any]) -> dict[str, Any]:
    """Decode the JSON body of a request recorded by aioresponses."""
    data = call_kwargs["data"]
    value = json.loads(data.decode() if isinstance(data, bytes) else data)
    assert isinstance(value, dict)
    return value


def recorded(mocked: aioresponses, verb: str = "POST", prefix: str = "") -> list[Any]:
    """Every request ``verb`` to a URL starting with ``prefix`` that aioresponses saw."""
    calls: list[Any] = []
    for (method, url), items in mocked.requests.items():
        if method == verb and str(url).startswith(prefix):
            calls.extend(items)
    return calls


def recorded_queries(mocked: aioresponses, verb: str, prefix: str) -> list[dict[str, str]]:
    """The query string of every request ``verb`` to a URL starting with ``prefix``."""
    queries: list[dict[str, str]] = []
    for (method, url), items in mocked.requests.items():
        if method == verb and str(url).startswith(prefix):
            queries.extend({**url.query, **(item.kwargs.get("params") or {})} for item in items)
    return queries


class FakeClock:
    """A clock that only moves when its ``sleep`` is awaited (never sleeps for real)."""

    def __init__(self, start: float = 0.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += max(0.0, seconds)
        await asyncio.sleep(0)


def fake_budget(clock: FakeClock | None = None) -> OperatingBudget:
    """An ``OperatingBudget`` on a fake wall clock (starting at the real time)."""
    clock = clock or FakeClock(time.time())
    return OperatingBudget(clock=clock, sleep=clock.sleep)


def webhook_auth() -> WebhookAuth:
    return WebhookAuth(WEBHOOK)


def old_tokens() -> OAuthTokens:
    return OAuthTokens(
        access_token=OLD_ACCESS,
        refresh_token=OLD_REFRESH,
        client_endpoint=OAUTH_ENDPOINT,
        member_id="a223c6b3710f85df22e9377d6c4f7553",
    )


def oauth_auth(**kwargs: Any) -> OAuthAuth:
    kwargs.setdefault("tokens", old_tokens())
    return OAuthAuth(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, **kwargs)


def make_client(auth: Auth | None = None, **kwargs: Any) -> OpenLinesClient:
    """A client that never sleeps: no pacing, a no-wait retry policy, a fake-clock budget."""
    kwargs.setdefault("rate_limit", None)
    kwargs.setdefault("retry", RetryPolicy.no_wait())
    kwargs.setdefault("operating_budget", fake_budget())
    return OpenLinesClient(auth or webhook_auth(), **kwargs)


def assert_exactly(made: Any, expected: Any) -> None:
    """``made`` (filled without its class's ``__init__``, see ``bitrix_openlines._fill``)
    is exactly what the constructor gave as ``expected``: same class, equal, same hash
    and repr, and so after pickling and deep-copying."""
    assert type(made) is type(expected)
    assert made == expected
    assert hash(made) == hash(expected)
    assert repr(made) == repr(expected)
    assert pickle.loads(pickle.dumps(made)) == made
    assert copy.deepcopy(made) == made
