"""Look for secrets where error trackers look: the local variables of the SDK's frames.

Sentry (and others) record, for each frame of an error's traceback, every local
variable: strings as they are, containers item by item, other objects by their repr.
Two tools here (a plain module, not collected):

- :class:`FrameScan`, a ``sys.settrace`` hook that, while active, reads the locals of
  every frame whose code lives in the ``bitrix_openlines`` package (``testing/``
  excluded) at each call, line and return event, and records each variable that holds
  a known secret in plain text;
- :func:`traceback_findings`, which reads an error's traceback (and its cause chain, as
  Sentry walks it) the same way, after the fact.

"Plain text" is a ``str`` or ``bytes``, or one inside a dict, list, tuple or set (a few
levels deep), or the repr of an object of the SDK's own types (which promise a masked
repr); for :func:`traceback_findings`, the repr of any object, as a tracker prints it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from types import CodeType, FrameType, TracebackType
from typing import Any

import bitrix_openlines

__all__ = ["FrameScan", "sdk_frame", "traceback_findings"]

_PACKAGE = os.path.dirname(os.path.abspath(bitrix_openlines.__file__)) + os.sep
_TESTING = os.path.join(_PACKAGE, "testing") + os.sep
_DEPTH = 3


def sdk_frame(code: CodeType) -> bool:
    """Whether ``code`` is the SDK's own (a file of the package, the fake portal aside)."""
    filename = code.co_filename
    return filename.startswith(_PACKAGE) and not filename.startswith(_TESTING)


def _texts(value: Any, any_repr: bool, depth: int = 0) -> Iterator[str]:
    """The plain texts of ``value`` a tracker would show (see the module docs)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, bytes | bytearray):
        yield bytes(value).decode("utf-8", errors="replace")
    elif isinstance(value, Mapping):
        if depth < _DEPTH:
            for key, item in list(value.items()):
                yield from _texts(key, any_repr, depth + 1)
                yield from _texts(item, any_repr, depth + 1)
    elif isinstance(value, list | tuple | set | frozenset):
        if depth < _DEPTH:
            for item in list(value):
                yield from _texts(item, any_repr, depth + 1)
    elif any_repr or type(value).__module__.startswith("bitrix_openlines"):
        try:
            yield repr(value)
        except Exception:  # a half-built object: a tracker shows a placeholder
            return


def _where(frame: FrameType) -> str:
    code = frame.f_code
    return f"{os.path.relpath(code.co_filename, _PACKAGE)}:{frame.f_lineno} {code.co_name}"


def _hint(secret: str) -> str:
    return f"{secret[:4]}...({len(secret)} chars)"


def _findings(
    frame: FrameType, secrets: Iterable[str], any_repr: bool
) -> Iterator[tuple[str, str, str]]:
    known = [s for s in secrets if s]
    for name, value in list(frame.f_locals.items()):
        for text in _texts(value, any_repr):
            for secret in known:
                if secret in text:
                    yield _where(frame), name, _hint(secret)


class FrameScan:
    """Record every SDK frame variable holding a known secret, while active.

    Args:
        secrets: Called at each event: the secrets known at that moment (an auth's
            ``redactor.secrets``, say). Every secret it ever gave stays known.
    """

    def __init__(self, secrets: Callable[[], Iterable[str]]) -> None:
        self._secrets = secrets
        self._known: set[str] = set()
        self._sdk: dict[CodeType, bool] = {}
        self._previous: Any = None
        #: (where, variable, which secret) of each finding, once each.
        self.findings: list[tuple[str, str, str]] = []
        #: The names of the SDK functions whose frames were read.
        self.functions: set[str] = set()

    def __enter__(self) -> FrameScan:
        self._previous = sys.gettrace()
        sys.settrace(self._on_call)
        return self

    def __exit__(self, *exc_info: object) -> None:
        sys.settrace(self._previous)

    def _on_call(self, frame: FrameType, event: str, arg: Any) -> Any:
        code = frame.f_code
        sdk = self._sdk.get(code)
        if sdk is None:
            sdk = self._sdk[code] = sdk_frame(code)
        if not sdk:
            return None  # no line events for frames of others
        self.functions.add(code.co_name)
        self._check(frame)
        return self._on_event

    def _on_event(self, frame: FrameType, event: str, arg: Any) -> Any:
        self._check(frame)
        return self._on_event

    def _check(self, frame: FrameType) -> None:
        self._known.update(s for s in self._secrets() if s)
        for finding in _findings(frame, self._known, any_repr=False):
            if finding not in self.findings:
                self.findings.append(finding)


def traceback_findings(error: BaseException, secrets: Iterable[str]) -> list[tuple[str, str, str]]:
    """The variables of the SDK's frames in ``error``'s traceback that hold a secret.

    The chain is walked as Sentry walks it: the ``__cause__``, or the ``__context__``
    unless it is suppressed (``raise ... from None``). Every object is read by its repr.
    """
    known = [s for s in secrets if s]
    found: list[tuple[str, str, str]] = []
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        tb: TracebackType | None = current.__traceback__
        while tb is not None:
            if sdk_frame(tb.tb_frame.f_code):
                found.extend(_findings(tb.tb_frame, known, any_repr=True))
            tb = tb.tb_next
        current = current.__cause__ if current.__suppress_context__ else current.__context__
    return found
