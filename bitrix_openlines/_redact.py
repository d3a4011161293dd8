"""Hide secrets (webhook codes, tokens, client secrets) in any text before it is shown."""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["MASK", "mask", "redact"]

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
