"""Keep the fake portal's OAuth tokens, authorization codes and their rules.

Rules from PROTOCOL.md section 6.1: an access token lives ``access_token_ttl`` seconds
(3600 on real portals); refresh tokens are single-use and rotate both tokens, so after a
refresh the old refresh token is ``invalid_grant`` and the old access token is
``invalid_token``; an authorization code lives 30 seconds and works once.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Callable
from typing import Final

import attrs

__all__ = ["AUTH_CODE_TTL", "TokenStore"]

#: "the code lives 30 s" (PROTOCOL.md section 6.1).
AUTH_CODE_TTL: Final = 30.0


@attrs.define
class _AccessToken:
    expires_at: float  # on the monotonic clock
    refresh_token: str


class TokenStore:
    """Issue, check, rotate and expire tokens.

    Args:
        ttl: Access-token lifetime in seconds.
        clock: A monotonic clock in seconds.
    """

    def __init__(self, ttl: float, clock: Callable[[], float]) -> None:
        if not ttl > 0 or not math.isfinite(ttl):
            raise ValueError(f"access_token_ttl must be a positive number of seconds, got {ttl!r}")
        self._ttl = float(ttl)
        self._clock = clock
        self._access: dict[str, _AccessToken] = {}
        self._refresh: dict[str, str] = {}  # refresh token -> its access token
        self._codes: dict[str, float] = {}  # code -> expiry on the monotonic clock

    @property
    def ttl(self) -> float:
        """Return the access-token lifetime in seconds."""
        return self._ttl

    def issue(self) -> tuple[str, str]:
        """Create a new token pair.

        Returns:
            ``(access_token, refresh_token)``.
        """
        access = secrets.token_hex(16)
        refresh = secrets.token_hex(16)
        self._access[access] = _AccessToken(self._clock() + self._ttl, refresh)
        self._refresh[refresh] = access
        return access, refresh

    def check(self, access_token: str) -> str | None:
        """Return None for a valid token, else ``"expired_token"`` or ``"invalid_token"``."""
        token = self._access.get(access_token)
        if token is None:
            return "invalid_token"
        if self._clock() >= token.expires_at:
            return "expired_token"
        return None

    def use_refresh_token(self, refresh_token: str) -> bool:
        """Consume a refresh token and revoke the access token issued with it.

        Returns:
            True when the refresh token was valid (it is now spent).
        """
        access = self._refresh.pop(refresh_token, None)
        if access is None:
            return False
        self._access.pop(access, None)
        return True

    def create_code(self) -> str:
        """Return a new authorization code, valid for 30 seconds and one exchange."""
        code = secrets.token_hex(16)
        self._codes[code] = self._clock() + AUTH_CODE_TTL
        return code

    def use_code(self, code: str) -> bool:
        """Consume an authorization code; True when it existed and had not expired."""
        expires_at = self._codes.pop(code, None)
        return expires_at is not None and self._clock() < expires_at

    def expire_all(self) -> None:
        """Make every issued access token expired now (refresh tokens stay valid)."""
        now = self._clock()
        for token in self._access.values():
            token.expires_at = min(token.expires_at, now)
