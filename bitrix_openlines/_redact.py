"""The one redactor, and the wrappers that keep secrets out of reprs and frame locals.

Each auth object owns a :class:`Redactor` holding its secrets, and updates it as tokens
change; everything that turns network text into an error message or a log line (the
session's decoding, the batch engine, the auth's token requests) passes it through the
same object.

Error trackers (Sentry, for one) record the local variables of every frame of a
traceback, by their ``repr``. So the SDK keeps a secret only inside an object whose
repr masks it: a :class:`Secret`, a :class:`SecretURL` (a webhook URL, a token request),
a :class:`SecretBody` (a JSON body carrying an OAuth token), or an object of its own
with a masked repr (``Credentials``, ``OAuthTokens``). The plain text is built in the
argument of the library call that needs it (``aiohttp``'s request), so that no frame
of the SDK holds it in a variable.
"""

from __future__ import annotations

import types
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

__all__ = ["MASK", "Redactor", "Secret", "SecretBody", "SecretURL", "mask", "redact"]

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


class Secret(types.SimpleNamespace):
    """A secret string: ``Secret(value=text)``; its repr and ``str`` print ``***``.

    Its constructor is ``SimpleNamespace``'s, written in C: building one from an
    expression (``Secret(value=tokens.access_token)``) puts the plain text in no Python
    frame's variables, not even a constructor's parameter. Read it with ``.value``, in
    the expression that needs it.
    """

    __slots__ = ()

    if TYPE_CHECKING:
        value: str

        def __init__(self, *, value: str) -> None: ...

    def __repr__(self) -> str:
        return f"Secret({MASK})"

    __str__ = __repr__

    def __hash__(self) -> int:  # type: ignore[override]  # SimpleNamespace: unhashable
        return hash(self.value)


def _origin(url: Secret) -> str:
    # The scheme and host only: the path of a webhook URL holds its code (and no local
    # variable holds the split URL).
    return "{}://{}".format(
        urlsplit(url.value).scheme, urlsplit(url.value).netloc.rpartition("@")[2]
    )


class SecretURL:
    """A URL holding secrets (a webhook's code, a token request's query): masked repr.

    :meth:`reveal` gives the text to send, ``base + path`` and ``?query`` when given;
    call it in the argument of the request that sends it.

    Args:
        base: The start of the URL (``https://portal/rest/1/<code>/``).
        path: What follows the base (``imopenlines.dialog.get.json``); not secret.
        query: The query string, already encoded, or ``None``.
    """

    __slots__ = ("_base", "_path", "_query")

    def __init__(self, base: Secret, path: str = "", query: Secret | None = None) -> None:
        self._base = base
        self._path = path
        self._query = query

    def reveal(self) -> str:
        """Return the URL as text (to hand straight to the library call that sends it)."""
        if self._query is None:
            return self._base.value + self._path
        return self._base.value + self._path + "?" + self._query.value

    def __repr__(self) -> str:
        return f"SecretURL('{_origin(self._base)}/{MASK}')"


class SecretBody:
    """A JSON object body plus secret members (``"auth": "<token>"``): masked repr.

    Args:
        body: The compact JSON object without the secrets (``{"CHAT_ID":"13"}``, or
            ``{}``), as :func:`~bitrix_openlines.wire.json_body` writes it.
        members: The secret members, encoded as they go inside the object
            (``"auth":"<token>"``).
    """

    __slots__ = ("_body", "_members")

    def __init__(self, body: bytes, members: Secret) -> None:
        self._body = body
        self._members = members

    def reveal(self) -> bytes:
        """Return the whole body (to hand straight to the library call that sends it)."""
        if self._body == b"{}":
            return b"{" + self._members.value.encode() + b"}"
        return b"{" + self._members.value.encode() + b"," + self._body[1:]

    def __repr__(self) -> str:
        return f"SecretBody({len(self._body)} bytes + {MASK})"


def _as_secret(value: str | Secret) -> Secret:
    return value if isinstance(value, Secret) else Secret(value=value)


class Redactor:
    """Replace the current secrets, and the last few retired ones, by ``***`` in a text.

    Calling it is the redaction: ``redactor(text)``. The secrets of the current
    credentials are set with :meth:`set_current`; the ones they replace are remembered
    (at most ``remember`` of them), since an answer to an old request may still quote
    them. It keeps them as :class:`Secret` objects (pass those, and no frame holds the
    plain text); its repr shows only how many strings it hides.

    Args:
        secrets: The fixed secrets (a client secret, a webhook code).
        remember: How many retired secrets to keep hiding.
    """

    def __init__(self, secrets: Iterable[str | Secret] = (), *, remember: int = 32) -> None:
        self._fixed = tuple(_as_secret(s) for s in secrets)
        self._current: tuple[Secret, ...] = ()
        self._retired: deque[Secret] = deque(maxlen=remember)
        self._ordered: tuple[Secret, ...] = ()
        self._rebuild()

    def set_current(self, secrets: Iterable[str | Secret]) -> None:
        """Make ``secrets`` the current ones; the previous current ones are retired."""
        fresh = tuple(_as_secret(s) for s in secrets)
        for old in self._current:
            if old not in fresh and old not in self._retired:
                self._retired.append(old)
        self._current = fresh
        self._rebuild()

    def _rebuild(self) -> None:
        every = {*self._fixed, *self._current, *self._retired}
        self._ordered = tuple(
            sorted(
                (s for s in every if len(s.value) >= _MIN_SECRET_LENGTH),
                key=lambda s: len(s.value),
                reverse=True,
            )
        )

    @property
    def secrets(self) -> tuple[str, ...]:
        """Every string hidden now, as plain text (for tests)."""
        return tuple(s.value for s in self._ordered)

    def __call__(self, text: str) -> str:
        for secret in self._ordered:
            if secret.value in text:
                text = text.replace(secret.value, MASK)
        return text

    def __repr__(self) -> str:
        return f"Redactor(hides={len(self._ordered)})"
