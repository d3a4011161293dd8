"""The one redactor: hides secrets (webhook codes, tokens, client secrets) in any text.

Each auth object owns a :class:`Redactor` holding its secrets, and updates it as tokens
change; everything that turns network text into an error message or a log line (the
session's decoding, the auth's token requests) passes it through the same object.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

__all__ = ["MASK", "Redactor", "mask", "redact"]

MASK = "***"

# Shorter strings are too likely to occur by chance (and no real secret is that short).
_MIN_SECRET_LENGTH = 4


def redact(text: str, secrets: Iterable[str]) -> str:
    """Return ``text`` with every occurrence of each secret replaced by ``***``."""
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        if len(secret) >= _MIN_SECRET_LENGTH:
            text = text.replace(secret, MASK)
    return text


def mask(secret: str | None) -> str:
    """Return a printable stand-in for a secret: ``***`` (or ``None`` when absent)."""
    return "None" if secret is None else MASK


class Redactor:
    """Replace the current secrets, and the last few retired ones, by ``***`` in a text.

    Calling it is the redaction: ``redactor(text)``. The secrets of the current
    credentials are set with :meth:`set_current`; the ones they replace are remembered
    (at most ``remember`` of them), since an answer to an old request may still quote
    them. Its repr shows only how many strings it hides.

    Args:
        secrets: The fixed secrets (a client secret, a webhook code).
        remember: How many retired secrets to keep hiding.
    """

    def __init__(self, secrets: Iterable[str] = (), *, remember: int = 32) -> None:
        self._fixed = tuple(s for s in secrets if s)
        self._current: tuple[str, ...] = ()
        self._retired: deque[str] = deque(maxlen=remember)
        self._ordered: tuple[str, ...] = ()
        self._rebuild()

    def set_current(self, secrets: Iterable[str]) -> None:
        """Make ``secrets`` the current ones; the previous current ones are retired."""
        fresh = tuple(s for s in secrets if s)
        for old in self._current:
            if old not in fresh and old not in self._retired:
                self._retired.append(old)
        self._current = fresh
        self._rebuild()

    def _rebuild(self) -> None:
        every = {*self._fixed, *self._current, *self._retired}
        self._ordered = tuple(
            sorted((s for s in every if len(s) >= _MIN_SECRET_LENGTH), key=len, reverse=True)
        )

    @property
    def secrets(self) -> tuple[str, ...]:
        """Every string hidden now (for tests and for passing to another redactor)."""
        return self._ordered

    def __call__(self, text: str) -> str:
        for secret in self._ordered:
            if secret in text:
                text = text.replace(secret, MASK)
        return text

    def __repr__(self) -> str:
        return f"Redactor(hides={len(self._ordered)})"
