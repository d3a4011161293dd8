"""Typed results: ``Dialog`` and its parts, the ``time`` block, ``Response``."""

from bitrix_openlines.types.common import Response, TimeInfo
from bitrix_openlines.types.dialog import NO_EXTRA, Dialog, Extra, UserCode

__all__ = ["NO_EXTRA", "Dialog", "Extra", "Response", "TimeInfo", "UserCode"]
