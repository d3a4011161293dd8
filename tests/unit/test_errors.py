"""The exception tree, the code table, and every error code through the client."""

from __future__ import annotations

import pickle
import time
from typing import Any

import pytest
from _unit_helpers import DIALOG_GET, FakeClock, error_body, make_client, recorded, webhook_url
from aioresponses import aioresponses

from bitrix_openlines import RateLimit, RetryPolicy
from bitrix_openlines.errors import (
    AccessError,
    ApiError,
    AuthError,
    BatchError,
    DecodeError,
    InvalidArgumentError,
    InvalidURLError,
    MethodNotFoundError,
    OpenLinesError,
    OperationTimeLimitError,
    OverloadError,
    PortalMovedError,
    PortalUnavailableError,
    RateLimitError,
    RequestTimeoutError,
    ServerError,
    TokenExpiredError,
    TransportError,
)
from bitrix_openlines.ratelimit import LeakyBucketLimiter, OperatingBudget
from bitrix_openlines.wire import _CODE_TABLE, error_class_for, error_from_payload

# PROTOCOL.md section 3.2 (common codes) and 7.2 (imopenlines.dialog.get), written out:
# code as the portal spells it -> (HTTP status the protocol gives, expected class).
PROTOCOL_CODES: dict[str, tuple[int, type[ApiError]]] = {
    "QUERY_LIMIT_EXCEEDED": (503, RateLimitError),
    "OPERATION_TIME_LIMIT": (429, OperationTimeLimitError),
    "OVERLOAD_LIMIT": (503, OverloadError),
    "INTERNAL_SERVER_ERROR": (500, ServerError),
    "ERROR_UNEXPECTED_ANSWER": (500, ServerError),
    "ERROR_CORE": (400, InvalidArgumentError),
    "ERROR_ARGUMENT": (400, InvalidArgumentError),
    "ERROR_METHOD_NOT_FOUND": (404, MethodNotFoundError),
    "NO_AUTH_FOUND": (401, AuthError),
    "INVALID_CREDENTIALS": (401, AuthError),
    "expired_token": (401, TokenExpiredError),
    "invalid_token": (401, TokenExpiredError),
    "insufficient_scope": (403, AccessError),
    "user_access_error": (403, AccessError),
    "authorization_error": (401, AuthError),
    "APPLICATION_NOT_FOUND": (401, AuthError),
    "ACCESS_DENIED": (403, AccessError),
    "INVALID_REQUEST": (400, InvalidArgumentError),
    # Docs say 500, the server 403, the PY SDK 410: the code must win over the status.
    "PORTAL_DELETED": (500, PortalUnavailableError),
    "ERROR_MANIFEST_IS_NOT_AVAILABLE": (404, MethodNotFoundError),
    "METHOD_CONFIRM_WAITING": (401, AuthError),
    "METHOD_CONFIRM_DENIED": (403, AccessError),
    "WRONG_LICENSE": (403, PortalUnavailableError),
    "ERROR_BATCH_LENGTH_EXCEEDED": (400, BatchError),
    "ERROR_BATCH_METHOD_NOT_ALLOWED": (405, BatchError),
    "PAYMENT_REQUIRED": (401, AuthError),
    "wrong_client": (200, AuthError),
    "CONNECTION_ERROR": (401, ServerError),
    "WRONG_ENCODING": (400, InvalidArgumentError),
    # Section 7.2.
    "IM_NOT_INSTALLED": (400, PortalUnavailableError),
    "ACCESS_ERROR": (400, AccessError),
    "DIALOG_ID_EMPTY": (400, InvalidArgumentError),
}

# The OAuth server's codes (PROTOCOL.md 6.1).
OAUTH_SERVER_CODES = [
    "invalid_request",
    "invalid_client",
    "insufficient_scope",
    "invalid_scope",
    "invalid_grant",
    "PAYMENT_REQUIRED",
    "wrong_client",
    "NOT_INSTALLED",
]

# Every code of the official docs, written out from the pages (bitrix24/b24restdocs at
# 5988ed13, 2026-08-21): code as the page spells it -> (HTTP status the page gives,
# expected class, retry verdict). Verdicts: "pace" (sent again when the limiter or the
# budget allows, within the deadline, using no attempt), "idempotent" (retried with
# backoff for idempotent methods only), "refresh" (OAuth refreshes the token and replays
# the call: not a retry), "final" (raised at once).
SYSTEM_ERRORS = "_includes/system-errors.md"  # the table of error-codes.md
DOCS_CODES: dict[str, tuple[str, int, type[ApiError], str]] = {
    "INTERNAL_SERVER_ERROR": (SYSTEM_ERRORS, 500, ServerError, "idempotent"),
    "ERROR_UNEXPECTED_ANSWER": (SYSTEM_ERRORS, 500, ServerError, "idempotent"),
    "QUERY_LIMIT_EXCEEDED": (SYSTEM_ERRORS, 503, RateLimitError, "pace"),
    "ERROR_BATCH_METHOD_NOT_ALLOWED": (SYSTEM_ERRORS, 405, BatchError, "final"),
    "ERROR_BATCH_LENGTH_EXCEEDED": (SYSTEM_ERRORS, 400, BatchError, "final"),
    "NO_AUTH_FOUND": (SYSTEM_ERRORS, 401, AuthError, "final"),
    "INVALID_REQUEST": (SYSTEM_ERRORS, 400, InvalidArgumentError, "final"),
    "OVERLOAD_LIMIT": (SYSTEM_ERRORS, 503, OverloadError, "final"),
    "ACCESS_DENIED": (SYSTEM_ERRORS, 403, AccessError, "final"),
    "INVALID_CREDENTIALS": (SYSTEM_ERRORS, 403, AuthError, "final"),
    "ERROR_MANIFEST_IS_NOT_AVAILABLE": (SYSTEM_ERRORS, 404, MethodNotFoundError, "final"),
    "insufficient_scope": (SYSTEM_ERRORS, 403, AccessError, "final"),
    "expired_token": (SYSTEM_ERRORS, 401, TokenExpiredError, "refresh"),
    "user_access_error": (SYSTEM_ERRORS, 403, AccessError, "final"),
    "PORTAL_DELETED": (SYSTEM_ERRORS, 500, PortalUnavailableError, "final"),
    # The OAuth server's codes: the page gives no status; these are the SDKs' (PROTOCOL 6.1).
    "invalid_request": ("settings/oauth/error-codes.md", 400, InvalidArgumentError, "final"),
    "invalid_client": ("settings/oauth/error-codes.md", 401, AuthError, "final"),
    "invalid_scope": ("settings/oauth/error-codes.md", 403, AccessError, "final"),
    "invalid_grant": ("settings/oauth/error-codes.md", 400, AuthError, "final"),
    "PAYMENT_REQUIRED": ("settings/oauth/error-codes.md", 401, AuthError, "final"),
    "OPERATION_TIME_LIMIT": ("limits.md", 429, OperationTimeLimitError, "pace"),
    "ERROR_METHOD_NOT_FOUND": ("api-reference/rest-v3.md", 404, MethodNotFoundError, "final"),
    "WRONG_AUTH_TYPE": (
        "api-reference/imopenlines/imconnector/imconnector-register.md",
        403,
        AuthError,
        "final",
    ),
    "ERROR_ARGUMENT": (
        "api-reference/entity/entities/entity-add.md",
        400,
        InvalidArgumentError,
        "final",
    ),
    "ACCESS_ERROR": (
        "api-reference/imopenlines/openlines/sessions/imopenlines-dialog-get.md",
        400,
        AccessError,
        "final",
    ),
    "IM_NOT_INSTALLED": (
        "api-reference/imopenlines/openlines/sessions/imopenlines-dialog-get.md",
        400,
        PortalUnavailableError,
        "final",
    ),
}


# -- the table ---------------------------------------------------------------------------


@pytest.mark.parametrize(("code", "cls"), sorted(_CODE_TABLE.items()))
def test_every_table_code_maps_to_its_class(code: str, cls: type[ApiError]) -> None:
    error = error_from_payload({"error": code}, status=None, method=DIALOG_GET)
    assert type(error) is cls
    assert error.code == code


@pytest.mark.parametrize(("code", "cls"), sorted(_CODE_TABLE.items()))
def test_table_lookup_ignores_case(code: str, cls: type[ApiError]) -> None:
    for spelling in (code.lower(), code.upper(), code.title()):
        error = error_from_payload({"error": spelling}, status=200, method=None)
        assert type(error) is cls, spelling
        assert error.code == spelling  # the portal's own spelling is kept


def test_table_keys_are_upper_case() -> None:
    assert all(code == code.upper() for code in _CODE_TABLE)


@pytest.mark.parametrize(("code", "expected"), sorted(PROTOCOL_CODES.items()))
def test_protocol_code_is_in_the_table_with_the_expected_class(
    code: str, expected: tuple[int, type[ApiError]]
) -> None:
    status, cls = expected
    assert code.upper() in _CODE_TABLE, f"{code} (PROTOCOL.md 3.2/7.2) missing from the table"
    assert _CODE_TABLE[code.upper()] is cls
    assert error_class_for(code, status) is cls


@pytest.mark.parametrize("code", OAUTH_SERVER_CODES)
def test_oauth_server_codes_are_in_the_table(code: str) -> None:
    assert code.upper() in _CODE_TABLE


def _verdict(error: ApiError) -> str:
    """What the retry policy does with ``error``, in the words of DOCS_CODES."""
    policy = RetryPolicy()
    for_idempotent = policy.reason(error, idempotent=True)
    for_others = policy.reason(error, idempotent=False)
    if policy.paces(error):
        assert for_idempotent is not None
        assert for_others is not None
        return "pace"
    if for_idempotent is not None:
        assert for_others is None  # a call that may have happened is never sent twice
        return "idempotent"
    assert for_others is None
    return "refresh" if isinstance(error, TokenExpiredError) else "final"


@pytest.mark.parametrize(("code", "expected"), sorted(DOCS_CODES.items()))
def test_docs_code_has_its_class_and_retry_verdict(
    code: str, expected: tuple[str, int, type[ApiError], str]
) -> None:
    page, status, cls, verdict = expected
    assert code.upper() in _CODE_TABLE, f"{code} ({page}) missing from the table"
    error = error_from_payload(
        {"error": code, "error_description": f"{code} description"}, status=status, method="m"
    )
    assert type(error) is cls, page
    assert error.code == code
    assert error.status == status
    assert _verdict(error) == verdict, page
    # Inside a batch (outer status 200) the code decides alike.
    in_batch = error_from_payload({"error": code}, status=200, method="m")
    assert type(in_batch) is cls
    assert _verdict(in_batch) == verdict


def test_wrong_auth_type_is_an_auth_error_never_retried() -> None:
    # The body of the imconnector.* pages (403).
    error = error_from_payload(
        {
            "error": "WRONG_AUTH_TYPE",
            "error_description": "Access for this method not allowed by session authorization.",
        },
        status=403,
        method="imconnector.register",
    )
    assert type(error) is AuthError
    assert RetryPolicy().reason(error, idempotent=True) is None


# -- ERROR_ARGUMENT's argument -------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "argument"),
    [
        # The entity.* pages' examples, as written there.
        (
            {
                "error": "ERROR_ARGUMENT",
                "error_description": "Argument 'ENTITY' is null or empty",
                "argument": "ENTITY",
            },
            "ENTITY",
        ),
        (
            {
                "error": "ERROR_ARGUMENT",
                "error_description": "Entity code is too long. Max length is 13 characters.",
                "argument": "",
            },
            None,
        ),
        ({"error": "ERROR_ARGUMENT", "error_description": "Bad value"}, None),
        ({"error": "ERROR_ARGUMENT", "argument": None}, None),
        ({"error": "ERROR_ARGUMENT", "argument": 7}, None),
        ({"error": "ERROR_ARGUMENT", "argument": ["CHAT_ID"]}, None),
        ({"error": "ERROR_ARGUMENT", "argument": "X" * 5000}, "X" * 200),
    ],
)
def test_error_argument_is_reachable_typed(body: dict[str, Any], argument: str | None) -> None:
    error = error_from_payload(body, status=400, method="entity.add")
    assert isinstance(error, InvalidArgumentError)
    assert error.argument == argument
    # What the portal sent stays in extra, as it sent it (but for redaction).
    assert error.extra.get("argument") == body.get("argument")


def test_error_argument_is_redacted_and_survives_pickling() -> None:
    secret = "s3cr3tw3bh00kc0de"
    error = error_from_payload(
        {"error": "ERROR_ARGUMENT", "error_description": f"bad {secret}", "argument": secret},
        status=400,
        method="m",
        redact=lambda text: text.replace(secret, "***"),
    )
    assert isinstance(error, InvalidArgumentError)
    assert error.argument == "***"
    assert secret not in repr(error.__dict__)
    clone = _pickled(error)
    assert isinstance(clone, InvalidArgumentError)
    assert clone.argument == "***"


async def test_error_argument_through_the_client() -> None:
    url = webhook_url(DIALOG_GET)
    body = {
        "error": "ERROR_ARGUMENT",
        "error_description": "Argument 'CHAT_ID' is null or empty",
        "argument": "CHAT_ID",
    }
    with aioresponses() as mocked:
        mocked.post(url, status=400, payload=body)
        async with make_client() as client:
            with pytest.raises(InvalidArgumentError) as caught:
                await client.get_dialog(chat_id=13)
        assert len(recorded(mocked, "POST", url)) == 1  # final
    assert caught.value.argument == "CHAT_ID"
    assert caught.value.code == "ERROR_ARGUMENT"


async def test_error_argument_inside_a_batch() -> None:
    url = webhook_url("batch")
    answer = {
        "result": {
            "result": [],
            "result_error": {
                "c0": {
                    "error": "ERROR_ARGUMENT",
                    "error_description": "Argument 'CHAT_ID' is null or empty",
                    "argument": "CHAT_ID",
                }
            },
            "result_total": [],
            "result_next": [],
            "result_time": [],
        },
        "time": {"start": 1773683678, "finish": 1773683678.5, "duration": 0.5},
    }
    with aioresponses() as mocked:
        mocked.post(url, payload=answer)
        async with make_client() as client:
            [outcome] = await client.get_dialogs([{"chat_id": 13}])
    assert isinstance(outcome.error, InvalidArgumentError)
    assert outcome.error.argument == "CHAT_ID"
    assert outcome.error.status == 200


def test_expired_token_case_insensitive() -> None:
    assert type(error_from_payload({"error": "expired_token"}, status=401, method="m")) is (
        TokenExpiredError
    )
    assert type(error_from_payload({"error": "EXPIRED_TOKEN"}, status=401, method="m")) is (
        TokenExpiredError
    )
    assert error_class_for("Expired_Token", None) is TokenExpiredError


# -- status fallback ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (401, AuthError),
        (403, AccessError),
        (404, MethodNotFoundError),
        (429, OperationTimeLimitError),
        (500, ServerError),
        (502, ServerError),
        (503, ServerError),
        (504, ServerError),
        (400, ApiError),
        (418, ApiError),
        (200, ApiError),
        (None, ApiError),
    ],
)
def test_status_fallback_for_unknown_or_missing_code(
    status: int | None, cls: type[ApiError]
) -> None:
    assert error_class_for(None, status) is cls
    assert error_class_for("", status) is cls
    assert error_class_for("SOMETHING_NEW_IN_2027", status) is cls
    error = error_from_payload({"error": "SOMETHING_NEW_IN_2027"}, status=status, method="m")
    assert type(error) is cls
    assert error.code == "SOMETHING_NEW_IN_2027"


def test_known_code_wins_over_status() -> None:
    assert error_class_for("ACCESS_DENIED", 500) is AccessError
    assert error_class_for("QUERY_LIMIT_EXCEEDED", 429) is RateLimitError
    assert error_class_for("OPERATION_TIME_LIMIT", 503) is OperationTimeLimitError


# -- attributes, text, pickling ----------------------------------------------------------


def test_attributes_are_set_and_extra_keeps_argument() -> None:
    error = error_from_payload(
        {"error": "ERROR_ARGUMENT", "error_description": "Bad value", "argument": "CHAT_ID"},
        status=400,
        method=DIALOG_GET,
    )
    assert isinstance(error, InvalidArgumentError)
    assert error.code == "ERROR_ARGUMENT"
    assert error.description == "Bad value"
    assert error.status == 400
    assert error.method == DIALOG_GET
    assert error.extra == {"argument": "CHAT_ID"}


def test_missing_description_and_non_string_code() -> None:
    error = error_from_payload({"error": 42}, status=400, method=None)
    assert error.code == "42"
    assert error.description == ""
    assert error.extra == {}


def test_operation_time_limit_carries_reset_at() -> None:
    error = error_from_payload(
        error_body("OPERATION_TIME_LIMIT"), status=429, method=DIALOG_GET, reset_at=1773684278.0
    )
    assert isinstance(error, OperationTimeLimitError)
    assert error.reset_at == 1773684278.0


def test_str_and_repr() -> None:
    error = AccessError(
        "You do not have access to the specified dialog",
        code="ACCESS_ERROR",
        status=400,
        method=DIALOG_GET,
    )
    assert str(error) == (
        "ACCESS_ERROR: You do not have access to the specified dialog "
        "(method=imopenlines.dialog.get, status=400)"
    )
    assert repr(error) == (
        "AccessError(code='ACCESS_ERROR', description='You do not have access to the "
        "specified dialog', status=400, method='imopenlines.dialog.get')"
    )
    assert str(OpenLinesError()) == "OpenLinesError"
    assert str(TransportError("reset", method="m")) == "reset (method=m)"
    assert str(ServerError(code="X", status=500)) == "X (status=500)"


def _pickled(error: OpenLinesError) -> OpenLinesError:
    clone = pickle.loads(pickle.dumps(error))
    assert isinstance(clone, OpenLinesError)
    return clone


@pytest.mark.parametrize(
    "error",
    [
        OpenLinesError("plain", code="C", status=500, method="m"),
        InvalidArgumentError(
            "Bad value", code="ERROR_ARGUMENT", status=400, method="m", extra={"argument": "ID"}
        ),
        OperationTimeLimitError(
            "blocked", code="OPERATION_TIME_LIMIT", status=429, method="m", reset_at=17.5
        ),
        PortalMovedError("moved", status=302, method="m", new_address="https://new.example"),
        DecodeError("html", status=502, method="m", excerpt="<html>"),
        RequestTimeoutError("slow", method="m"),
        InvalidURLError("the URL is invalid", method="m"),
        TokenExpiredError("expired", code="expired_token", status=401, method="m"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_pickling_keeps_every_field(error: OpenLinesError) -> None:
    clone = _pickled(error)
    assert type(clone) is type(error)
    assert clone is not error
    for name in ("code", "description", "status", "method"):
        assert getattr(clone, name) == getattr(error, name), name
    for name in ("extra", "reset_at", "new_address", "excerpt"):
        if hasattr(error, name):
            assert getattr(clone, name) == getattr(error, name), name
    assert str(clone) == str(error)
    assert repr(clone) == repr(error)


def test_tree() -> None:
    assert issubclass(TokenExpiredError, AuthError)
    assert issubclass(OperationTimeLimitError, RateLimitError)
    assert issubclass(OverloadError, RateLimitError)
    assert issubclass(RequestTimeoutError, TransportError)
    assert issubclass(PortalMovedError, TransportError)
    for cls in (ApiError, TransportError, DecodeError):
        assert issubclass(cls, OpenLinesError)
    assert not issubclass(DecodeError, ApiError)
    # Bad input, not a network failure: a ValueError, and not a TransportError (retried).
    assert issubclass(InvalidURLError, OpenLinesError)
    assert issubclass(InvalidURLError, ValueError)
    assert not issubclass(InvalidURLError, TransportError)


# -- every code through the client -------------------------------------------------------

MAX_ATTEMPTS = 3
DEADLINE = 15.0


def _expected_requests(cls: type[ApiError]) -> int | None:
    """How many requests one get_dialog makes before raising (None: bounded by deadline)."""
    if cls is ServerError:
        return MAX_ATTEMPTS  # retried (dialog.get is idempotent) until max_attempts
    if cls is RateLimitError:
        return None  # retried without using up max_attempts, until the deadline
    if cls is OperationTimeLimitError:
        # A 429 without a reset time pauses the method 10 s (+1): one retry fits the 15 s
        # deadline, a second would not.
        return 2
    return 1  # final: auth, access, arguments, overload, ...


# PROTOCOL.md's codes, and the docs' codes with the status their page gives.
THROUGH_THE_CLIENT: dict[str, tuple[int, type[ApiError]]] = {
    **PROTOCOL_CODES,
    **{code: (status, cls) for code, (_, status, cls, _) in DOCS_CODES.items()},
}


@pytest.mark.parametrize(("code", "expected"), sorted(THROUGH_THE_CLIENT.items()))
async def test_every_code_through_the_client(
    code: str, expected: tuple[int, type[ApiError]]
) -> None:
    status, cls = expected
    clock = FakeClock(time.time())
    policy = RetryPolicy(
        max_attempts=MAX_ATTEMPTS,
        deadline=DEADLINE,
        base_delay=0.0,
        max_delay=0.0,
        rate_limit_pause=0.0,
        jitter=False,
        sleep=clock.sleep,
        clock=clock,
    )
    limiter = LeakyBucketLimiter(
        RateLimit(requests_per_second=1.0, burst=1, headroom=0), clock=clock, sleep=clock.sleep
    )
    budget = OperatingBudget(clock=clock, sleep=clock.sleep)
    url = webhook_url(DIALOG_GET)
    with aioresponses() as mocked:
        mocked.post(url, status=status, payload=error_body(code), repeat=True)
        async with make_client(retry=policy, limiter=limiter, operating_budget=budget) as client:
            with pytest.raises(ApiError) as caught:
                await client.get_dialog(chat_id=13)
        sent = len(recorded(mocked, "POST", url))

    error = caught.value
    assert type(error) is cls
    assert error.code == code
    assert error.status == status
    assert error.method == DIALOG_GET
    assert error.description == f"{code} description"
    wanted = _expected_requests(cls)
    if wanted is None:
        assert MAX_ATTEMPTS < sent <= DEADLINE + 2
    else:
        assert sent == wanted
