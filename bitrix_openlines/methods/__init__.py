"""REST methods as typed classes, and the registry keyed by wire name."""

from bitrix_openlines.methods.base import Method, get_method, register_method, registered_methods
from bitrix_openlines.methods.dialog import DialogGet

__all__ = ["DialogGet", "Method", "get_method", "register_method", "registered_methods"]
