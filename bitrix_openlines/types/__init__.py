"""Typed results: ``Dialog`` and its parts, the ``time`` block, ``Response``."""

from bitrix_openlines.types.common import Response, TimeInfo
from bitrix_openlines.types.dialog import Dialog, UserCode

__all__ = ["Dialog", "Response", "TimeInfo", "UserCode"]
