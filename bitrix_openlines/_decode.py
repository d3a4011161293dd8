"""Decode a raw HTTP answer into the envelope dict, or the right exception (pure logic)."""

from __future__ import annotations

import json
import math
from typing import Any

from bitrix_openlines._redact import redact
from bitrix_openlines.errors import DecodeError, error_from_payload
from bitrix_openlines.transport import RawResponse

__all__ = ["decode_envelope", "decode_json", "reset_at_of"]

_EXCERPT = 120
_SLACK = 256  # more than any secret is long


def _excerpt(raw: RawResponse) -> str:
    # An error page may echo the request (the webhook path, the token query string):
    # redact before cutting, so that no secret is left half-shown at the cut either.
    text = raw.body[: _EXCERPT + _SLACK].decode("utf-8", errors="replace")
    text = redact(" ".join(text.split()), raw.secrets)
    return text[:_EXCERPT] + (
        "..." if len(text) > _EXCERPT or len(raw.body) > _EXCERPT + _SLACK else ""
    )


def _undecodable(what: str, raw: RawResponse, method: str | None) -> DecodeError:
    excerpt = _excerpt(raw)
    return DecodeError(f"{what}: {excerpt!r}", status=raw.status, method=method, excerpt=excerpt)


def decode_json(raw: RawResponse, method: str | None) -> dict[str, Any]:
    """Parse the body as a JSON object, or raise :class:`DecodeError` with an excerpt."""
    if not raw.body.strip():
        raise DecodeError(
            "the portal sent an empty body", status=raw.status, method=method, excerpt=""
        )
    try:
        value = json.loads(raw.body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        # RecursionError: a body nested deeper than the JSON parser goes (b"[" * 10**5).
        what = "an HTML page" if raw.body.lstrip()[:1] == b"<" else "a body that is not JSON"
        content_type = raw.content_type or "none"
        raise _undecodable(
            f"the portal sent {what} (Content-Type {content_type})", raw, method
        ) from None
    if not isinstance(value, dict):
        raise _undecodable(
            f"the portal sent JSON {type(value).__name__}, not an object", raw, method
        )
    return value


def reset_at_of(envelope: dict[str, Any]) -> float | None:
    """Return ``time.operating_reset_at`` of an envelope, when it is a number."""
    block = envelope.get("time")
    if isinstance(block, dict):
        value = block.get("operating_reset_at")
        if isinstance(value, int | float) and not isinstance(value, bool):
            try:
                number = float(value)
            except OverflowError:  # an int with hundreds of digits
                return None
            return number if math.isfinite(number) else None
    return None


def decode_envelope(raw: RawResponse, method: str | None) -> dict[str, Any]:
    """Return the decoded envelope of a successful answer.

    Raises:
        ApiError: The body is an error body (the subclass comes from the code table), or
            the status is not 2xx.
        DecodeError: The body is not a JSON object, or is a 2xx without ``result``.
    """
    if raw.status >= 400 and not raw.body.strip():
        raise error_from_payload(
            {"error_description": f"HTTP {raw.status} with an empty body"},
            status=raw.status,
            method=method,
        )
    envelope = decode_json(raw, method)
    if "error" in envelope:
        raise error_from_payload(
            envelope, status=raw.status, method=method, reset_at=reset_at_of(envelope)
        )
    if raw.status >= 300:
        raise error_from_payload(
            {"error_description": f"HTTP {raw.status} without an error code"},
            status=raw.status,
            method=method,
        )
    if "result" not in envelope:
        raise _undecodable("the answer has neither 'result' nor 'error'", raw, method)
    return envelope
