"""Serve a fake Bitrix24 portal: a real aiohttp server on 127.0.0.1.

It is a test double of the *server*, built from PROTOCOL.md alone and sharing no code with
the SDK client, so that the SDK's bugs are not hidden by shared assumptions.

Routes:
    * ``GET|POST /rest/<user>/<code>/<method>[.json][/]``: a webhook call.
    * ``GET|POST /rest/<method>[.json][/]``: an OAuth call; the access token comes from
      the ``Authorization: Bearer`` header, else the ``auth`` param, else the
      ``access_token`` param (query or body), in that order (PROTOCOL.md section 1).
    * ``GET|POST /oauth/token/``: the OAuth server (``refresh_token`` and
      ``authorization_code`` grants, PROTOCOL.md section 6.1).

Params are the query string merged with the body (a body key replaces a query key, like
PHP's ``$_REQUEST``). Bodies may be JSON (``application/json``), form-encoded or multipart;
forms and queries are decoded with PHP ``parse_str`` rules (``a[b][0]=x``). A JSON body
that does not parse is ignored, as PHP ignores it. Method names are lower-cased.

Order of checks for ``/rest/`` (PROTOCOL.md section 3.1):
    1. transport suffix: none or ``.json`` is JSON; ``.xml`` (not emulated) or any other
       suffix after a known method name gives 500 ``INTERNAL_WRONG_TRANSPORT``;
    2. ``moved_to`` set (:meth:`FakePortal.move_to`) and the request's ``Host`` is not
       its host: 302 with ``Location: <moved_to><same path and query>`` (PROTOCOL.md
       section 1, portal domain change; the new address itself is served);
    3. unknown method: 404 ``ERROR_METHOD_NOT_FOUND`` (before auth);
    4. auth: 401 ``NO_AUTH_FOUND`` (no credentials), ``INVALID_CREDENTIALS`` (wrong
       webhook user or code), ``expired_token``, ``invalid_token``;
    5. leaky bucket: 503 ``QUERY_LIMIT_EXCEEDED``;
    6. injected faults (:class:`~bitrix_openlines.testing.Faults`);
    7. operating budget: 429 ``OPERATION_TIME_LIMIT``;
    8. the method itself.

Bucket accounting: the real bucket sits in front of the REST layer and counts every request
that reaches it, whatever its answer. Here every ``/rest/`` request that passes steps 1
and 2 takes a bucket slot if one is free -- so 404s and 401s count too. The answer is the
first failing check in the order above; a request the bucket rejects is not counted. A
``batch`` takes one slot however many commands it carries (PROTOCOL.md section 4.1).

``batch`` (PROTOCOL.md section 5): ``cmd`` is a map or a list of ``"method?query"``
strings and ``halt`` is cast like PHP ``(bool)``. Each command is parsed with
``parse_str``, ``$result[key][field]`` references are substituted in param values (not in
keys), and commands run one by one with the outer request's caller. Each is checked against
its own method's operating budget; where its execution time is billed depends on
``batch_billing`` (below). Past 50 commands each key gets ``ERROR_BATCH_LENGTH_EXCEEDED``,
a nested ``batch`` gets ``ERROR_BATCH_METHOD_NOT_ALLOWED``, an unknown method
``ERROR_METHOD_NOT_FOUND``; with ``halt`` the first failure ends the batch.

Operating time inside a ``batch`` (``batch_billing``), the two accounts of it:

- ``"per_method"`` (the default; the official limits page: "An external call to batch is
  not accounted for in operating. Nested calls are executed as separate methods"): each
  command is billed to its own method; its ``result_time`` reports that method's total,
  and the outer ``time.operating`` is 0;
- ``"batch"`` (measured by the official JS SDK's maintainers, b24jssdk issue 459 and pull
  request 539): the commands are billed to the method ``batch``; a blocked ``batch`` is
  answered 429 as a whole, each ``result_time`` carries ``batch``'s running total (copied
  into every sub-result, whatever the command's method) and the outer ``time`` the total
  after the last command. The commands' own methods are not billed (single calls alone
  spend them), though a command is still refused when its method is blocked.

Faults are drawn only for requests that passed steps 1-5 (so they took a bucket slot) and
never on the token endpoint. ``truncate`` cuts whatever body the call produced in half and
keeps its status; the HTTP framing stays valid, so the client reads the bytes and fails
when it decodes them. ``drop`` closes the connection before any byte of the answer.

Answers: success is ``{"result": ..., "time": {...}}``; errors are
``{"error": CODE, "error_description": TEXT}`` without ``time`` (PROTOCOL.md section 3.1).
The time block is typed as in the 2026 documentation: ``start`` and ``processing`` are
ints, ``finish`` and ``duration`` floats (``duration`` is ``finish - start`` with the
truncated ``start``, as the server computes it), dates ISO-8601 with the portal offset
(+03:00), then ``operating_reset_at`` (int) and ``operating`` (unless
``operating_limit=None``, like a self-hosted portal without the limiter). Floats are
written the way PHP's ``json_encode`` writes them, so an ``operating`` of 0.0 is ``0``, as
in the documented examples. Bodies are UTF-8 JSON with PHP array rules (an empty array is
``[]``, keys ``0..n-1`` in order make a list).

Unix times in answers are the wall clock at start plus the elapsed injected monotonic
clock, so reset times and token expiry stay consistent when a test drives a fake clock.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any, Final, TypeAlias

import aiohttp
import attrs
from aiohttp import web

from ._auth import TokenStore
from ._bucket import LeakyBucket, OperatingBudget
from ._data import PORTAL_TZ, FakeDialog, generate_dialogs, render_dialog, render_dialog_legacy
from ._events import auth_block, event_payload
from ._faults import FaultRoller, Faults
from ._phpform import (
    build_query,
    parse_pairs,
    parse_query,
    php_bool,
    php_intval,
    php_number,
    php_strval,
    to_json,
)
from ._stats import PortalStats

__all__ = ["FakePortal"]

_ErrorSpec: TypeAlias = tuple[int, str, str]

# Error codes and texts, from PROTOCOL.md sections 3.2, 4, 5 and 7.2.
_WRONG_TRANSPORT: Final[_ErrorSpec] = (500, "INTERNAL_WRONG_TRANSPORT", "Wrong transport!")
_METHOD_NOT_FOUND: Final[_ErrorSpec] = (404, "ERROR_METHOD_NOT_FOUND", "Method not found!")
_NO_AUTH: Final[_ErrorSpec] = (401, "NO_AUTH_FOUND", "Wrong authorization data")
_INVALID_CREDENTIALS: Final[_ErrorSpec] = (
    401,
    "INVALID_CREDENTIALS",
    "Invalid request credentials",
)
_EXPIRED_TOKEN: Final[_ErrorSpec] = (
    401,
    "expired_token",
    "The access token provided has expired",
)
_INVALID_TOKEN: Final[_ErrorSpec] = (401, "invalid_token", "The access token provided is invalid")
_QUERY_LIMIT: Final[_ErrorSpec] = (503, "QUERY_LIMIT_EXCEEDED", "Too many requests")
_OPERATION_LIMIT: Final[_ErrorSpec] = (
    429,
    "OPERATION_TIME_LIMIT",
    "Method is blocked due to operation time limit.",
)
_INTERNAL: Final[_ErrorSpec] = (500, "INTERNAL_SERVER_ERROR", "Internal server error")
_ACCESS_ERROR: Final[_ErrorSpec] = (
    400,
    "ACCESS_ERROR",
    "You do not have access to the specified dialog",
)
_DIALOG_ID_EMPTY: Final[_ErrorSpec] = (400, "DIALOG_ID_EMPTY", "Dialog ID can't be empty")
# error__ACCESS_DENIED__app.info.json: app.info called with a webhook (no application).
_NO_APP_CONTEXT: Final[_ErrorSpec] = (
    400,
    "ACCESS_DENIED",
    "Access denied! Application context required",
)
# Per-command only: the outer batch answer stays 200 (PROTOCOL.md section 5).
_BATCH_LENGTH: Final[_ErrorSpec] = (
    400,
    "ERROR_BATCH_LENGTH_EXCEEDED",
    "Max batch length exceeded",
)
_BATCH_NOT_ALLOWED: Final[_ErrorSpec] = (
    405,
    "ERROR_BATCH_METHOD_NOT_ALLOWED",
    "Method is not allowed for batch usage",
)

_BATCH: Final = "batch"
_BATCH_BILLINGS: Final = ("per_method", "batch")
_DIALOG_GET: Final = "imopenlines.dialog.get"
# CRestUtil::BATCH_MAX_LENGTH (PROTOCOL.md section 5).
_BATCH_MAX_LENGTH: Final = 50
_SCOPE: Final = "imopenlines,im,crm"
# How long the portal waits for an event handler's answer.
_EVENT_TIMEOUT: Final = 10.0
_IDENTIFIERS: Final = ("CHAT_ID", "DIALOG_ID", "SESSION_ID", "USER_CODE")
# Im\Common::isChatId: /^chat[0-9]{1,}$/i, where PHP's '$' also accepts one final newline.
_CHAT_DIALOG_ID: Final = re.compile(r"chat([0-9]+)\n?", re.IGNORECASE)
# CRestUtil::processBatchElement: references like $result[cmd][FIELD][0].
_REFERENCE: Final = re.compile(r"\$(result|next|total|time|error)(\S*)", re.IGNORECASE)
_REFERENCE_PATH: Final = re.compile(r"\[([^\]]+)\]")
_ASCII_UPPER: Final = str.maketrans("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_BAD_GATEWAY_HTML: Final = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    "</body>\r\n</html>\r\n"
)


class _ApiError(Exception):
    """An error answer: HTTP status, Bitrix code and description."""

    def __init__(self, status: int, code: str, description: str) -> None:
        super().__init__(code)
        self.status = status
        self.code = code
        self.description = description

    def body(self) -> dict[str, str]:
        """Return the documented error body (no ``time`` block, PROTOCOL.md 3.1)."""
        return {"error": self.code, "error_description": self.description}


@attrs.frozen
class _Caller:
    """Who is calling: the operating budget is kept per ``key`` (PROTOCOL.md 4.2)."""

    key: str
    user_id: int


_Handler: TypeAlias = Callable[[dict[str, Any], _Caller], Any]
_Outcome: TypeAlias = tuple[Any, dict[str, Any]] | _ApiError


def _upper_keys(params: Mapping[str, Any]) -> dict[str, Any]:
    # array_change_key_case(..., CASE_UPPER) is ASCII-only; str.upper() is not (the
    # dotless i, U+0131, upper-cases to "I"), so a translation table is used.
    return {str(k).translate(_ASCII_UPPER): v for k, v in params.items()}


def _split_path(tail: str) -> tuple[tuple[str, str] | None, str]:
    """Split what follows ``/rest/`` into (webhook user and code, method segment)."""
    segments = tail.split("/")
    if len(segments) > 1 and segments[-1] == "":
        segments.pop()  # CRestUtil::getWebhookEndpoint itself writes "<method>/"
    if len(segments) == 1:
        return None, segments[0]
    if len(segments) == 3:
        return (segments[0], segments[1]), segments[2]
    return None, ""


def _lookup(node: Any, key: str) -> Any:
    """Return ``node[key]`` like PHP's ``isset($node[$key]) ? $node[$key] : null``."""
    if isinstance(node, Mapping):
        return node.get(key)
    if isinstance(node, list) and re.fullmatch(r"0|[1-9][0-9]*", key) and int(key) < len(node):
        return node[int(key)]
    return None


def _substitute(value: Any, parts: Mapping[str, Any]) -> Any:
    """Replace batch references in param values like ``CRestUtil::processBatchElement``."""
    if isinstance(value, Mapping):
        return {k: _substitute(v, parts) for k, v in value.items()}
    if not isinstance(value, str):
        return value
    query: Any = value
    for match in _REFERENCE.finditer(value):
        path = _REFERENCE_PATH.findall(match.group(2))
        if not path:
            continue
        # PHP array keys are case-sensitive: "$RESULT[...]" matches the regex but finds null.
        node = parts.get(match.group(1))
        for key in path:
            child = _lookup(node, key)
            if child is None:
                break  # a missing path stops at the deepest existing node
            node = child
        if match.group(0) == query:
            query = node
            continue
        if isinstance(node, int | float) and not isinstance(node, bool):
            node = php_strval(node)
        if isinstance(node, str) and isinstance(query, str):
            query = query.replace(match.group(0), node)
    return query


class FakePortal:
    """A fake Bitrix24 portal on 127.0.0.1, for tests and demos.

    Use it as ``async with FakePortal(...) as portal:`` or call :meth:`start` and
    :meth:`close`. Secrets (webhook code, client secret, tokens) are random per portal.
    Methods: ``imopenlines.dialog.get``, ``batch``, ``imopenlines.revision.get``,
    ``server.time`` and ``app.info`` (OAuth only); any other method is
    ``ERROR_METHOD_NOT_FOUND``. :meth:`send_event` posts events to an app's handler.

    Attributes:
        client_id: The OAuth application's client id (``local.<hex>.<digits>``).
        client_secret: The OAuth application's client secret.
        application_token: The token events of this application would carry.
        member_id: The portal's member id (32 hex digits).
        stats: Counters of what the portal saw (:class:`PortalStats`).

    Args:
        dialogs: How many deterministic dialogs to generate (chat ids ``1..n``), or the
            dialogs themselves.
        forbidden: Chat ids the caller may not read (``ACCESS_ERROR``); each must be one
            of the dialogs.
        rate: Leaky-bucket drain in requests per second; None disables the bucket.
        burst: Leaky-bucket size; None disables the bucket.
        operating_limit: Operating seconds allowed per (caller, method) and window; None
            disables the limiter and the ``operating*`` fields of the time block.
        operating_window: The sliding window in seconds (10 baskets of a tenth each).
        operating_cost: Simulated seconds each executed call adds (<= 0.1 is not
            recorded, as on the server).
        legacy_2024: Answer ``imopenlines.dialog.get`` like the 2024 documentation
            (16 fields, ``dialog_id`` null, no ``time``, ``DIALOG_ID_EMPTY`` when no
            identifier is given).
        faults: Infrastructure faults to inject, or None.
        access_token_ttl: Access-token lifetime in seconds (floats allowed).
        webhook_user_id: The user id of the webhook and of issued tokens.
        host: Interface to listen on.
        port: Port to listen on; 0 picks a free one.
        seed: Seed of the generated dialogs.
        moved_to: When set (``http://host:port``), every REST call to another host answers
            302 to it; see :meth:`move_to`.
        batch_billing: Where a ``batch`` command's execution time is billed:
            ``"per_method"`` (to its own method, as the docs say) or ``"batch"`` (to the
            method ``batch``, as measured); see the module docs.
        clock: Monotonic clock for the limiters and token expiry; ``time.monotonic``
            by default. Unix times in answers follow this clock too.

    Raises:
        ValueError: A parameter is out of range; the message names it.
    """

    def __init__(
        self,
        *,
        dialogs: int | Iterable[FakeDialog] = 100,
        forbidden: Iterable[int] = (),
        rate: float | None = 2.0,
        burst: float | None = 50,
        operating_limit: float | None = 480.0,
        operating_window: float = 600.0,
        operating_cost: float = 0.0,
        legacy_2024: bool = False,
        faults: Faults | None = None,
        access_token_ttl: float = 3600.0,
        webhook_user_id: int = 1,
        host: str = "127.0.0.1",
        port: int = 0,
        seed: int = 0,
        moved_to: str | None = None,
        batch_billing: str = "per_method",
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._clock: Callable[[], float] = clock if clock is not None else time.monotonic
        self._mono0 = self._clock()
        self._wall0 = time.time()
        if isinstance(webhook_user_id, bool) or not isinstance(webhook_user_id, int):
            raise ValueError(f"webhook_user_id must be an int >= 1, got {webhook_user_id!r}")
        if webhook_user_id < 1:
            raise ValueError(f"webhook_user_id must be an int >= 1, got {webhook_user_id!r}")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ValueError(f"port must be an int in 0..65535, got {port!r}")
        if not isinstance(operating_cost, int | float) or not (
            math.isfinite(operating_cost) and operating_cost >= 0
        ):
            raise ValueError(
                f"operating_cost must be a number of seconds >= 0, got {operating_cost!r}"
            )
        if not isinstance(operating_window, int | float) or not (
            math.isfinite(operating_window) and operating_window > 0
        ):
            raise ValueError(
                f"operating_window must be a positive number of seconds, got {operating_window!r}"
            )
        if faults is not None and not isinstance(faults, Faults):
            raise ValueError(f"faults must be a Faults instance or None, got {faults!r}")
        if batch_billing not in _BATCH_BILLINGS:
            raise ValueError(
                f"batch_billing must be 'per_method' or 'batch', got {batch_billing!r}"
            )
        self._host = host
        self._port = port
        self._webhook_user_id = webhook_user_id
        self._legacy = bool(legacy_2024)
        self._moved_to: str | None = None
        self._moved_host = ""
        self._set_moved_to(moved_to, "moved_to")
        self._batch_billing = batch_billing
        self._operating_cost = float(operating_cost)
        self._operating_window = float(operating_window)
        self._bucket = (
            LeakyBucket(rate, burst, self._clock)
            if rate is not None and burst is not None
            else None
        )
        self._operating = (
            OperatingBudget(operating_limit, operating_window, self._clock, self._unix_now)
            if operating_limit is not None
            else None
        )
        self._tokens = TokenStore(access_token_ttl, self._clock)
        self._faults = FaultRoller(faults)

        self._webhook_code = secrets.token_hex(8)
        self.client_id: str = f"local.{secrets.token_hex(7)}.{secrets.randbelow(10**8):08d}"
        self.client_secret: str = secrets.token_urlsafe(32)
        self.application_token: str = secrets.token_hex(16)
        self.member_id: str = secrets.token_hex(16)
        self.stats = PortalStats()

        self._dialogs: list[FakeDialog] = []
        self._by_chat: dict[int, FakeDialog] = {}
        self._by_session: dict[int, FakeDialog] = {}
        self._by_code: dict[str, FakeDialog] = {}
        for dialog in self._initial_dialogs(dialogs, forbidden, seed):
            self.add_dialog(dialog)

        self._methods: dict[str, _Handler] = {
            _DIALOG_GET: self._dialog_get,
            "imopenlines.revision.get": self._revision_get,
            "server.time": self._server_time,
            "app.info": self._app_info,
        }
        self._handler_ids: dict[tuple[str, str], int] = {}
        self._runner: web.AppRunner | None = None
        self._bound_port: int | None = None
        self._sleepers: set[asyncio.Task[Any]] = set()

    @staticmethod
    def _initial_dialogs(
        dialogs: int | Iterable[FakeDialog], forbidden: Iterable[int], seed: int
    ) -> list[FakeDialog]:
        if isinstance(dialogs, bool):
            raise ValueError(f"dialogs must be an int >= 0 or FakeDialog objects, got {dialogs!r}")
        if isinstance(dialogs, int):
            if dialogs < 0:
                raise ValueError(f"dialogs must be an int >= 0, got {dialogs!r}")
            items = generate_dialogs(dialogs, seed)
        else:
            items = list(dialogs)
            for item in items:
                if not isinstance(item, FakeDialog):
                    raise ValueError(f"dialogs must contain FakeDialog objects, got {item!r}")
        denied = set(forbidden)
        unknown = denied - {d.chat_id for d in items}
        if unknown:
            raise ValueError(f"forbidden names chat ids that are not dialogs: {sorted(unknown)}")
        return [attrs.evolve(d, forbidden=True) if d.chat_id in denied else d for d in items]

    # ----------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Start listening; after this the URL properties are available.

        Raises:
            RuntimeError: The portal is already running.
        """
        if self._runner is not None:
            raise RuntimeError("FakePortal is already started")
        app = web.Application()
        for verb in ("GET", "POST"):
            app.router.add_route(verb, "/rest/{tail:.*}", self._handle_rest)
            app.router.add_route(verb, "/oauth/token/", self._handle_token)
            app.router.add_route(verb, "/oauth/token", self._handle_token)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self._host, self._port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._bound_port = int(runner.addresses[0][1])
        self._runner = runner

    async def close(self) -> None:
        """Stop listening; cancel slow-fault answers still waiting. Safe to call twice."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        self._cancel_slow_answers()
        await runner.cleanup()

    def _cancel_slow_answers(self) -> None:
        """Cancel the answers a slow fault keeps waiting (its server is closing)."""
        for task in list(self._sleepers):
            task.cancel()

    async def __aenter__(self) -> FakePortal:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # ----------------------------------------------------------------- public state

    @property
    def port(self) -> int:
        """Return the port the portal listens on (known once started)."""
        if self._bound_port is None:
            raise RuntimeError("FakePortal is not started: use 'async with' or await start()")
        return self._bound_port

    @property
    def base_url(self) -> str:
        """Return ``http://127.0.0.1:PORT``."""
        return f"http://{self._host}:{self.port}"

    @property
    def webhook_url(self) -> str:
        """Return the webhook base, ``http://127.0.0.1:PORT/rest/<user>/<code>/``."""
        return f"{self.base_url}/rest/{self._webhook_user_id}/{self._webhook_code}/"

    @property
    def client_endpoint(self) -> str:
        """Return the OAuth REST base, ``http://127.0.0.1:PORT/rest/``."""
        return f"{self.base_url}/rest/"

    @property
    def token_url(self) -> str:
        """Return the OAuth token endpoint, ``http://127.0.0.1:PORT/oauth/token/``."""
        return f"{self.base_url}/oauth/token/"

    @property
    def dialogs(self) -> list[FakeDialog]:
        """Return a copy of the portal's dialogs, in the order they were added."""
        return list(self._dialogs)

    def add_dialog(self, dialog: FakeDialog) -> None:
        """Add one dialog.

        Raises:
            ValueError: Its chat id, session id or user code is already taken.
        """
        if not isinstance(dialog, FakeDialog):
            raise ValueError(f"add_dialog expects a FakeDialog, got {dialog!r}")
        if dialog.chat_id in self._by_chat:
            raise ValueError(f"chat_id {dialog.chat_id} is already used by another dialog")
        if dialog.session_id in self._by_session:
            raise ValueError(f"session_id {dialog.session_id} is already used by another dialog")
        if dialog.user_code in self._by_code:
            raise ValueError(f"user_code {dialog.user_code!r} is already used by another dialog")
        self._dialogs.append(dialog)
        self._by_chat[dialog.chat_id] = dialog
        self._by_session[dialog.session_id] = dialog
        self._by_code[dialog.user_code] = dialog

    def _share_dialogs(self, other: FakePortal) -> None:
        """Serve ``other``'s dialogs (the same tables, read-only): many portals, one copy."""
        self._dialogs = other._dialogs
        self._by_chat = other._by_chat
        self._by_session = other._by_session
        self._by_code = other._by_code

    def issue_tokens(self) -> dict[str, Any]:
        """Return a fresh token pair, shaped like the token endpoint's answer.

        Returns:
            The same keys as ``oauth__token_refresh__200.json``, with ``client_endpoint``
            pointing at this portal.
        """
        return self._token_body(*self._tokens.issue())

    def create_authorization_code(self) -> str:
        """Return an authorization code, valid for 30 seconds and a single exchange."""
        return self._tokens.create_code()

    def expire_access_tokens(self) -> None:
        """Make every access token issued so far expired (``expired_token``)."""
        self._tokens.expire_all()

    def set_faults(self, faults: Faults | None) -> None:
        """Replace the injected faults; the generator restarts from ``faults.seed``."""
        if faults is not None and not isinstance(faults, Faults):
            raise ValueError(f"faults must be a Faults instance or None, got {faults!r}")
        self._faults = FaultRoller(faults)

    def move_to(self, address: str | None) -> None:
        """Rename the portal: from now on, REST calls to any other host answer 302.

        The ``Location`` is ``address`` plus the request's path and query (a webhook's
        code included, as a real portal writes it); requests whose ``Host`` is already
        ``address``'s are served. ``None`` stops redirecting.

        Raises:
            ValueError: ``address`` is not an ``http(s)://host[:port]`` URL.
        """
        self._set_moved_to(address, "address")

    def _set_moved_to(self, address: str | None, parameter: str) -> None:
        if address is None:
            self._moved_to, self._moved_host = None, ""
            return
        match = re.fullmatch(r"https?://([^/?#@\s]+)/?", str(address))
        if match is None:
            raise ValueError(f"{parameter} must be an http(s)://host[:port] URL, got {address!r}")
        self._moved_to = str(address).rstrip("/")
        self._moved_host = match.group(1).lower()

    def unix_time(self) -> float:
        """The Unix time of the portal's answers (``operating_reset_at``, token expiry).

        The wall clock when the portal was created plus what its clock counted since:
        a test that injects a clock gives the client's ``OperatingBudget`` this one.
        """
        return self._unix_now()

    def reset_stats(self) -> None:
        """Zero :attr:`stats` in place."""
        self.stats.reset()

    async def send_event(
        self,
        url: str,
        event: str,
        data: Mapping[str, Any] | int | str,
        *,
        with_tokens: bool = True,
        application_token: str | None = None,
    ) -> int:
        """POST an event to an application's handler, as a portal delivers it.

        The body is ``application/x-www-form-urlencoded`` built like PHP's
        ``http_build_query`` (``data[DATA][0][chat][id]=7``), with an ``auth`` block shaped
        like the documented ones (PROTOCOL.md section 6.2): a fresh token pair issued by
        this portal (valid for its REST calls and its token endpoint), its addresses,
        ``member_id`` and ``application_token``; for the connector (``ONIMCONNECTOR...``)
        and bot (``ONIMBOT...``) events also ``expires`` and ``user_id`` (this portal's
        user), as their pages show. Like a portal, it does not retry.

        Args:
            url: The handler's URL.
            event: The event name (upper-cased when sent), e.g. ``ONOPENLINEMESSAGEADD``.
            data: The ``data`` block, e.g. ``{"DATA": [{"chat": {"id": 7}, ...}]}``, or
                a lone value (``ONIMCONNECTORLINEDELETE`` sends the line's id as ``data``).
            with_tokens: False sends no tokens, like an event no user caused.
            application_token: The token to send instead of :attr:`application_token`
                (a forged event); ``""`` sends an empty one.

        Returns:
            The HTTP status the handler answered.

        Raises:
            ValueError: ``event`` is empty or ``data`` is not a mapping, int or str.
            aiohttp.ClientError: The handler could not be reached.
            asyncio.TimeoutError: It did not answer within 10 seconds.
        """
        if not isinstance(event, str) or not event.strip():
            raise ValueError(f"event must be a non-empty event name, got {event!r}")
        if not isinstance(data, Mapping | int | str) or isinstance(data, bool):
            raise ValueError(f"data must be a mapping, int or str, got {type(data).__name__}")
        name = event.strip().upper()
        now = self._unix_now()
        auth = auth_block(
            name,
            tokens=self._tokens.issue() if with_tokens else None,
            expires_in=math.ceil(self._tokens.ttl),
            expires=int(now) + math.ceil(self._tokens.ttl),  # ts + expires_in, as the pages
            user_id=self._webhook_user_id,
            scope=_SCOPE,
            domain=f"{self._host}:{self.port}",
            client_endpoint=self.client_endpoint,
            server_endpoint=self.client_endpoint,
            member_id=self.member_id,
            status="F",
            application_token=(
                self.application_token if application_token is None else application_token
            ),
        )
        handler_id = self._handler_ids.setdefault((name, url), len(self._handler_ids) + 1)
        body = build_query(
            event_payload(name, data, handler_id=handler_id, ts=int(now), auth=auth)
        )
        self.stats.events[name] += 1
        timeout = aiohttp.ClientTimeout(total=_EVENT_TIMEOUT)
        async with (
            aiohttp.ClientSession(timeout=timeout) as http,
            http.post(
                url,
                data=body.encode("ascii"),
                headers={"Content-Type": "application/x-www-form-urlencoded"},
                allow_redirects=False,
            ) as response,
        ):
            await response.read()
            return response.status

    # ----------------------------------------------------------------- helpers

    def _unix_now(self) -> float:
        # Unix time that follows the injected clock, so reset times and token expiry agree
        # with the limiters when a test drives a fake clock.
        return self._wall0 + (self._clock() - self._mono0)

    def _token_body(self, access_token: str, refresh_token: str) -> dict[str, Any]:
        ttl = self._tokens.ttl
        return {
            "access_token": access_token,
            "client_endpoint": self.client_endpoint,
            # The docs call this the OAuth server's domain; this portal is its own.
            "domain": f"{self._host}:{self.port}",
            "expires": math.ceil(self._unix_now() + ttl),
            "expires_in": math.ceil(ttl),
            "member_id": self.member_id,
            "refresh_token": refresh_token,
            "scope": _SCOPE,
            "server_endpoint": self.client_endpoint,
            "status": "F",
            "user_id": self._webhook_user_id,
        }

    def _error_response(self, error: _ApiError) -> web.Response:
        self.stats.rejections[error.code] += 1
        return self._json_response(error.status, error.body())

    @staticmethod
    def _json_response(status: int, payload: Any, *, truncate: bool = False) -> web.Response:
        body = to_json(payload)
        if truncate:
            # The framing stays valid (Content-Length is the cut length): the client reads
            # the bytes fine and fails only when it decodes the JSON.
            body = body[: len(body) // 2]
        return web.Response(
            status=status, body=body, content_type="application/json", charset="utf-8"
        )

    def _split_transport(self, segment: str) -> tuple[str, str]:
        """Return (lower-cased method, transport) for the last path segment."""
        method = segment.lower()
        if method in self._methods or method == _BATCH:
            return method, "json"
        head, dot, suffix = method.rpartition(".")
        if dot and (suffix in ("json", "xml") or head in self._methods or head == _BATCH):
            return head, suffix
        return method, "json"

    def _admit(self) -> bool:
        if self._bucket is None:
            return True
        admitted = self._bucket.try_admit()
        if admitted:
            level = self._bucket.level
            self.stats.max_bucket_level = max(self.stats.max_bucket_level, level)
        return admitted

    async def _read_params(self, request: web.Request) -> dict[str, Any]:
        params = parse_query(request.rel_url.raw_query_string)
        if not request.body_exists:
            return params
        content_type = request.content_type
        if content_type == "application/json":
            try:
                body = json.loads(await request.read())
            except ValueError:
                body = None  # PHP ignores a body it cannot decode
            if isinstance(body, dict):
                params.update(body)
            elif isinstance(body, list):
                params.update({str(i): v for i, v in enumerate(body)})
        elif content_type == "application/x-www-form-urlencoded":
            text = (await request.read()).decode("utf-8", errors="replace")
            params.update(parse_query(text))
        elif content_type.startswith("multipart/"):
            form = await request.post()
            fields = [
                (name, value if isinstance(value, str) else getattr(value, "filename", ""))
                for name, value in form.items()
            ]
            params.update(parse_pairs(fields))
        return params

    def _authenticate(
        self, request: web.Request, webhook: tuple[str, str] | None, params: Mapping[str, Any]
    ) -> _Caller:
        if webhook is not None:
            user, code = webhook
            if user == str(self._webhook_user_id) and code == self._webhook_code:
                return _Caller(key=f"webhook:{user}", user_id=self._webhook_user_id)
            raise _ApiError(*_INVALID_CREDENTIALS)
        token: Any = None
        header = request.headers.get("Authorization", "")
        if header[:7].lower() == "bearer ":
            token = header[7:].strip()
        if not token:
            token = params.get("auth") or params.get("access_token")
        if not isinstance(token, str) or not token:
            raise _ApiError(*_NO_AUTH)
        problem = self._tokens.check(token)
        if problem == "expired_token":
            raise _ApiError(*_EXPIRED_TOKEN)
        if problem == "invalid_token":
            raise _ApiError(*_INVALID_TOKEN)
        return _Caller(key=f"app:{self.client_id}", user_id=self._webhook_user_id)

    async def _sleep(self, seconds: float) -> None:
        # Tracked so close() can cancel a slow answer instead of waiting for it.
        task = asyncio.current_task()
        if task is not None:
            self._sleepers.add(task)
        try:
            await asyncio.sleep(seconds)
        finally:
            if task is not None:
                self._sleepers.discard(task)

    def _time_block(
        self, start: float, finish: float, key: tuple[str, str] | None
    ) -> dict[str, Any]:
        # CRestServer keeps $timeStart and the process times as ints, so start and
        # processing are ints while finish and duration are floats (PROTOCOL.md 2).
        start_int = int(start)
        block: dict[str, Any] = {
            "start": start_int,
            "finish": php_number(finish),
            "duration": php_number(finish - start_int),
            "processing": int(finish) - start_int,
            "date_start": datetime.fromtimestamp(start_int, PORTAL_TZ).isoformat(),
            "date_finish": datetime.fromtimestamp(int(finish), PORTAL_TZ).isoformat(),
        }
        if self._operating is not None:
            if key is None:  # batch itself is not metered: operating 0 (PROTOCOL.md 2)
                block["operating_reset_at"] = int(start + self._operating.window)
                block["operating"] = 0
            else:
                block["operating_reset_at"] = self._operating.reset_at(key, start)
                block["operating"] = php_number(self._operating.accumulated(key))
        return block

    # ----------------------------------------------------------------- HTTP handlers

    async def _handle_rest(self, request: web.Request) -> web.StreamResponse:
        self.stats.requests += 1
        webhook, segment = _split_path(request.match_info["tail"])
        method, transport = self._split_transport(segment)
        if transport != "json":
            return self._error_response(_ApiError(*_WRONG_TRANSPORT))
        if self._moved_to is not None and request.host.lower() != self._moved_host:
            return web.Response(
                status=302, headers={"Location": self._moved_to + request.raw_path}
            )
        self.stats.by_method[method] += 1
        admitted = self._admit()
        try:
            if method != _BATCH and method not in self._methods:
                raise _ApiError(*_METHOD_NOT_FOUND)
            params = await self._read_params(request)
            caller = self._authenticate(request, webhook, params)
            if not admitted:
                raise _ApiError(*_QUERY_LIMIT)
        except _ApiError as error:
            return self._error_response(error)

        fault = self._faults.roll_request()
        if fault is not None:
            self.stats.faults[fault] += 1
        if fault == "internal_error":
            return self._error_response(_ApiError(*_INTERNAL))
        if fault == "bad_gateway":
            return web.Response(status=502, text=_BAD_GATEWAY_HTML, content_type="text/html")
        if fault == "drop":
            if request.transport is not None:
                request.transport.close()
            return web.Response(status=500)  # never reaches the client
        if fault == "slow":
            await self._sleep(self._faults.slow_seconds)
        status, payload = self._answer(method, params, caller)
        return self._json_response(status, payload, truncate=fault == "truncate")

    def _answer(
        self, method: str, params: dict[str, Any], caller: _Caller
    ) -> tuple[int, dict[str, Any]]:
        """Run an admitted top-level call; return the HTTP status and the answer body."""
        if method == _BATCH:
            start = self._unix_now()
            # Billed to "batch" (its total in the outer time), or not at all (operating 0).
            billed = (caller.key, _BATCH) if self._batch_billing == "batch" else None
            operating = self._operating
            if billed is not None and operating is not None and operating.is_blocked(billed):
                blocked = _ApiError(*_OPERATION_LIMIT)
                self.stats.rejections[blocked.code] += 1
                return blocked.status, blocked.body()
            result = self._run_batch(params, caller)
            return 200, {
                "result": result,
                "time": self._time_block(start, self._unix_now(), billed),
            }
        outcome = self._execute(method, params, caller)
        if isinstance(outcome, _ApiError):
            self.stats.rejections[outcome.code] += 1
            return outcome.status, outcome.body()
        result, time_block = outcome
        if method == _DIALOG_GET and self._legacy:
            return 200, {"result": result}  # the 2024 answer had no time block
        return 200, {"result": result, "time": time_block}

    async def _handle_token(self, request: web.Request) -> web.StreamResponse:
        self.stats.token_requests += 1
        params = await self._read_params(request)
        try:
            body = self._exchange(params)
        except _ApiError as error:
            return self._error_response(error)
        if self._faults.token_delay > 0:
            # The pair is issued (the old refresh token spent) before the slow answer.
            await self._sleep(self._faults.token_delay)
        return self._json_response(200, body)

    def _exchange(self, params: Mapping[str, Any]) -> dict[str, Any]:
        grant = params.get("grant_type")
        if not isinstance(grant, str) or not grant:
            raise _ApiError(400, "invalid_request", 'No "grant_type" parameter found')
        if grant not in ("refresh_token", "authorization_code"):
            raise _ApiError(400, "invalid_request", f"Unsupported grant_type {grant!r}")
        secret_name = "refresh_token" if grant == "refresh_token" else "code"
        values: dict[str, str] = {}
        for name in ("client_id", "client_secret", secret_name):
            value = params.get(name)
            if not isinstance(value, str) or not value:
                raise _ApiError(400, "invalid_request", f'No "{name}" parameter found')
            values[name] = value
        if values["client_id"] != self.client_id or values["client_secret"] != self.client_secret:
            raise _ApiError(401, "invalid_client", "Invalid client credentials")
        if grant == "refresh_token":
            if not self._tokens.use_refresh_token(values[secret_name]):
                raise _ApiError(400, "invalid_grant", "Invalid refresh token")
            self.stats.refreshes += 1
        elif not self._tokens.use_code(values[secret_name]):
            raise _ApiError(400, "invalid_grant", "Invalid authorization code")
        return self._token_body(*self._tokens.issue())

    # ----------------------------------------------------------------- execution

    def _execute(
        self, method: str, params: dict[str, Any], caller: _Caller, *, bill_to: str | None = None
    ) -> _Outcome:
        """Run one method under the operating budget; return (result, time) or the error.

        It is refused when its own method is blocked; its time is billed to ``bill_to``
        (``batch`` for a command when the portal bills batches so), else to the method,
        and its time block reports that account's total.
        """
        key = (caller.key, method)
        billed = key if bill_to is None else (caller.key, bill_to)
        start = self._unix_now()
        if self._operating is not None and self._operating.is_blocked(key):
            return _ApiError(*_OPERATION_LIMIT)
        try:
            result = self._methods[method](params, caller)
        except _ApiError as error:
            return error
        finally:
            # The server meters the handler whatever it returns (PROTOCOL.md 4.2).
            if self._operating is not None:
                self._operating.record(billed, self._operating_cost)
        return result, self._time_block(start, self._unix_now(), billed)

    def _run_batch(self, params: Mapping[str, Any], caller: _Caller) -> dict[str, Any]:
        """Run ``cmd`` like ``CRestProvider::methodsBatch`` (PROTOCOL.md section 5)."""
        upper = _upper_keys(params)
        halt = php_bool(upper.get("HALT"))
        commands = upper.get("CMD")
        if isinstance(commands, list):
            commands = {str(i): call for i, call in enumerate(commands)}
        parts: dict[str, dict[str, Any]] = {
            "result": {},
            "next": {},
            "total": {},
            "time": {},
            "error": {},
        }
        if isinstance(commands, Mapping):
            for position, (key, call) in enumerate(commands.items()):
                if position < _BATCH_MAX_LENGTH:
                    outcome = self._run_command(call, caller, parts)
                else:
                    outcome = _ApiError(*_BATCH_LENGTH)
                if isinstance(outcome, _ApiError):
                    parts["error"][str(key)] = outcome.body()
                    self.stats.command_rejections[outcome.code] += 1
                    if halt:
                        break
                else:
                    parts["result"][str(key)], parts["time"][str(key)] = outcome
        return {
            "result": parts["result"],
            "result_error": parts["error"],
            "result_total": parts["total"],
            "result_next": parts["next"],
            "result_time": parts["time"],
        }

    def _run_command(
        self, call: Any, caller: _Caller, parts: Mapping[str, dict[str, Any]]
    ) -> _Outcome:
        text = call if isinstance(call, str) else php_strval(call)
        # parse_url: the path is the method, the query its params, a '#' starts a fragment.
        path, _, query = text.partition("?")
        method = path.split("#", 1)[0].lower()
        if method == _BATCH:
            return _ApiError(*_BATCH_NOT_ALLOWED)
        if method not in self._methods:
            return _ApiError(*_METHOD_NOT_FOUND)
        self.stats.commands[method] += 1
        params = _substitute(parse_query(query.split("#", 1)[0]), parts)
        if self._faults.roll_command():
            self.stats.faults["command_internal_error"] += 1
            return _ApiError(*_INTERNAL)
        if self._faults.roll_command_limit():
            self.stats.faults["command_query_limit"] += 1
            return _ApiError(*_QUERY_LIMIT)
        return self._execute(
            method, params, caller, bill_to=_BATCH if self._batch_billing == "batch" else None
        )

    # ----------------------------------------------------------------- methods

    def _dialog_get(self, params: dict[str, Any], caller: _Caller) -> dict[str, Any]:
        upper = _upper_keys(params)
        if self._legacy and all(upper.get(name) is None for name in _IDENTIFIERS):
            raise _ApiError(*_DIALOG_ID_EMPTY)
        chat_id = self._resolve_chat_id(upper)
        dialog = self._by_chat.get(chat_id) if chat_id else None
        if dialog is None or dialog.forbidden:
            raise _ApiError(*_ACCESS_ERROR)
        if self._legacy:
            return render_dialog_legacy(dialog)
        return render_dialog(dialog, user_id=caller.user_id)

    def _resolve_chat_id(self, params: Mapping[str, Any]) -> int | None:
        """Find the chat like ``Rest::getChatId``: the first key that is set wins.

        PHP's ``isset`` is false for null, so ``{"CHAT_ID": null}`` counts as absent;
        any other value, even an invalid one, decides (PROTOCOL.md section 7.2).
        """
        if params.get("CHAT_ID") is not None:
            return php_intval(params["CHAT_ID"])
        dialog_id = params.get("DIALOG_ID")
        if dialog_id is not None:
            match = _CHAT_DIALOG_ID.fullmatch(dialog_id) if isinstance(dialog_id, str) else None
            return int(match.group(1)) if match else None
        if params.get("SESSION_ID") is not None:
            found = self._by_session.get(php_intval(params["SESSION_ID"]))
            return found.chat_id if found else None
        user_code = params.get("USER_CODE")
        if user_code is not None:
            if isinstance(user_code, bool) or not isinstance(user_code, str | int | float):
                return None  # only strings and numbers are looked up
            code = php_strval(user_code)
            code = code.removeprefix("imol|")
            found = self._by_code.get(code)
            return found.chat_id if found else None
        return None

    def _revision_get(self, params: dict[str, Any], caller: _Caller) -> dict[str, Any]:
        # imopenlines.revision.get__200_success.json
        return {"rest": 2, "web": 1, "mobile": 1}

    def _app_info(self, params: dict[str, Any], caller: _Caller) -> dict[str, Any]:
        # The shape of app-info.md's example; a webhook has no application context.
        if not caller.key.startswith("app:"):
            raise _ApiError(*_NO_APP_CONTEXT)
        return {
            "ID": 1,
            "CODE": self.client_id,
            "VERSION": 1,
            "STATUS": "F",
            "INSTALLED": True,
            "PAYMENT_EXPIRED": "N",
            "DAYS": None,
            "LANGUAGE_ID": "en",
            "LICENSE": "en_ent10000",
            "LICENSE_TYPE": "ent10000",
            "LICENSE_FAMILY": "ent",
        }

    def _server_time(self, params: dict[str, Any], caller: _Caller) -> str:
        # CRestProvider::getServerTime answers date('c').
        return datetime.fromtimestamp(int(self._unix_now()), PORTAL_TZ).isoformat()
